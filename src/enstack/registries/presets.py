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
        "cve_column": "cve_id",
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
        "cve_column": "CVE ID",
    },
    # DiverseVul (wagner-group/diversevul): JSON lines, `target` 1 = vulnerable.
    "diversevul": {
        "format": "jsonl",
        "code_column": "func",
        "target_column": "target",
        "cwe_column": "cwe",
        "group_column": "project",
    },
    # MegaVul (Icyrockton/MegaVul, megavul.json or megavul_simple.json): one JSON array; a
    # row per function of a fix commit, `is_vul` true for the ones the fix changed
    # (`func_before` vulnerable, `func` fixed), false for the commit's other functions
    # (`func` alone, benign).
    "megavul": {
        "format": "json",
        "pair_columns": {"vulnerable": "func_before", "fixed": "func"},
        "target_column": "is_vul",
        "cwe_column": "cwe_ids",
        "group_column": "cve_id",
        "cve_column": "cve_id",
    },
    # CVEfixes (secureIT-project/CVEfixes, CVEfixes.db): a SQLite database. A row per C/C++
    # method a fix changed, before (`before_change` 'True': vulnerable) and after; a method's
    # two versions share a pair id (its file change and signature); grouped by CVE, each
    # commit counted once under its first CVE, the CWE ids of that CVE joined.
    "cvefixes": {
        "format": "sqlite",
        "sqlite_query": (
            "SELECT m.method_change_id AS id, m.code AS code, "
            "CASE m.before_change WHEN 'True' THEN 1 ELSE 0 END AS vulnerable, "
            "m.file_change_id || ':' || m.signature AS pair, fx.cve_id AS cve_id, "
            "(SELECT group_concat(cc.cwe_id, ',') FROM cwe_classification cc "
            "WHERE cc.cve_id = fx.cve_id) AS cwe_id "
            "FROM method_change m "
            "JOIN file_change f ON f.file_change_id = m.file_change_id "
            "JOIN (SELECT hash, min(cve_id) AS cve_id FROM fixes GROUP BY hash) fx "
            "ON fx.hash = f.hash "
            "WHERE f.programming_language IN ('C', 'C++') "
            "ORDER BY m.method_change_id"
        ),
        "code_column": "code",
        "target_column": "vulnerable",
        "pair_column": "pair",
        "cwe_column": "cwe_id",
        "group_column": "cve_id",
        "cve_column": "cve_id",
        "id_column": "id",
    },
}
