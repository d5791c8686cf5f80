"""The data formats enstack reads, by their `data.format` names: the config validates against
this list, and `data.readers` has one reader for each. Adding a format is an entry here and a
reader there.
"""

from __future__ import annotations

# Files of rows whose code, label, id, pair and group come from named columns: JSON lines, or
# (`json`) one JSON array of row objects, as PairVul and MegaVul publish theirs; or (`sqlite`)
# the rows of a query (data.sqlite_query) over a SQLite database, as CVEfixes publishes it.
TABULAR = ("csv", "jsonl", "json", "parquet", "sqlite")
# Draper VDISC's HDF5 (a code dataset and one flag dataset per class), and generated data.
FORMATS = ("draper-hdf5", *TABULAR, "synthetic")
