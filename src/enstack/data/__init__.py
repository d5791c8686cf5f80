"""Stage 1, prepare: read a source, normalise, label, filter, dedup, split, downsample."""
