"""The field's datasets as they are published: `data.preset` fills in the column layout, the
pair and group keys, so that a user points `data.train` at the files and nothing else.

Each entry holds `data` keys, written from the dataset's own field names; keys the user sets
win over the preset's. Where a dataset publishes several files per split (one per CWE), give
`data.train` a directory or a glob.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # Vul-RAG's PairVul (KnowledgeRAG4LLMVulD): one JSON array per CWE; a row is a pair. The
    # same pair appears in each CWE file its CVE lists (deduplicated by text in prepare).
    "pairvul": {
        "format": "json",
        "pair_columns": {"vulnerable": "code_before_change", "fixed": "code_after_change"},
        "cwe_column": "cwe",
        "group_column": "cve_id",
        "id_column": "id",
    },
    # SVEN (eth-sri/sven) data_train_val: JSON lines per CWE; the project is the commit's repo.
    "sven": {
        "format": "jsonl",
        "pair_columns": {"vulnerable": "func_src_before", "fixed": "func_src_after"},
        "cwe_column": "vul_type",
        "group_column": "commit_link",
        "group_pattern": r"github\.com/([^/]+/[^/]+)/",
    },
    # PrimeVul (DLVulDet/PrimeVul): JSON lines, one function per row, `target` 1 = vulnerable.
    "primevul": {
        "format": "jsonl",
        "code_column": "func",
        "target_column": "target",
        "cwe_column": "cwe",
        "group_column": "project",
        "id_column": "idx",
    },
    # Big-Vul (MSR 2020, MSR_data_cleaned.csv): a row per function, `vul` 1 = changed by a
    # CVE fix (func_before vulnerable, func_after fixed); `vul` 0 rows are unchanged functions.
    "bigvul": {
        "format": "csv",
        "pair_columns": {"vulnerable": "func_before", "fixed": "func_after"},
        "target_column": "vul",
        "cwe_column": "CWE ID",
        "group_column": "project",
    },
    # DiverseVul (wagner-group/diversevul): JSON lines, `target` 1 = vulnerable.
    "diversevul": {
        "format": "jsonl",
        "code_column": "func",
        "target_column": "target",
        "cwe_column": "cwe",
        "group_column": "project",
    },
}
