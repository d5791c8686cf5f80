"""Stage 3, stack: base-model features, meta-classifiers over every subset, the selection."""
