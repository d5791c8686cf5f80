"""The paper's five classes and Table I (per-class counts after the paper's preprocessing)."""

PAPER_LABELS: tuple[str, ...] = ("CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other")

# Table I of the paper: rows kept per class and split by `downsample: paper`.
TABLE_I: dict[str, dict[str, int]] = {
    "train": {"CWE-119": 5942, "CWE-120": 5777, "CWE-469": 249, "CWE-476": 2755, "CWE-other": 5582},
    "val": {"CWE-119": 1142, "CWE-120": 1099, "CWE-469": 53, "CWE-476": 535, "CWE-other": 1071},
    "test": {"CWE-119": 1142, "CWE-120": 1099, "CWE-469": 53, "CWE-476": 535, "CWE-other": 1071},
}

SPLITS: tuple[str, ...] = ("train", "val", "test")
