"""Base models: the families, loading from the hub or a local directory, and scratch builds."""
