"""Stage 4, evaluate: results.json / .md / .csv in the Table III layout, and the plots."""
