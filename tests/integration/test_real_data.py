"""Real datasets as they are published: CWE ids through MITRE's hierarchy, binary targets,
pairs stored in one row, the presets (PairVul and SVEN on the real files in shared/data, the
others on fixtures in their exact layouts), labels as people write them, and bad input in
each new form ending in one `error:` line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from enstack.cli import main
from enstack.config import load_config_dict
from enstack.data.cwe import CweMapper
from enstack.errors import UserError
from enstack.registries.cwe_ids import cwe_ids

from support import shared_file

LABELS = ["CWE-119", "CWE-120", "CWE-469", "CWE-476", "CWE-other", "none"]


def _class(mapper: CweMapper, value: object) -> str | None:
    cls = mapper(value)
    return None if cls is None else mapper.labels[cls]


def test_cwe_ids_in_the_forms_datasets_write_them() -> None:
    assert cwe_ids("CWE-787") == ["CWE-787"]
    assert cwe_ids("cwe-476") == ["CWE-476"]
    assert cwe_ids("['CWE-362', 'CWE-476']") == ["CWE-362", "CWE-476"]
    assert cwe_ids(["CWE-20", "CWE-125"]) == ["CWE-20", "CWE-125"]
    assert cwe_ids(787) == ["CWE-787"] and cwe_ids("787") == ["CWE-787"]
    assert cwe_ids("NVD-CWE-Other") == ["NVD-CWE-Other"]
    assert cwe_ids("nvd-cwe-noinfo") == ["NVD-CWE-Noinfo"]
    assert cwe_ids(None) == [] and cwe_ids("") == [] and cwe_ids(True) == []


def test_cwe_ids_go_to_the_nearest_configured_class_up_the_hierarchy() -> None:
    mapper = CweMapper(LABELS, {})
    assert _class(mapper, "CWE-476") == "CWE-476"  # itself
    assert _class(mapper, "CWE-787") == "CWE-119"  # out-of-bounds write, a child of 119
    assert _class(mapper, "CWE-125") == "CWE-119"
    assert mapper.one("CWE-416").why == "ancestor CWE-119 (2 steps)"  # via CWE-825
    assert _class(mapper, "CWE-362") == "CWE-other"  # a race: nothing configured above it
    assert _class(mapper, "CWE-264") == "CWE-other"  # a category, not in the catalogue
    assert mapper.one("CWE-264").why == "not a weakness in the CWE catalogue"
    assert _class(mapper, "CWE-99999") == "CWE-other"
    assert _class(mapper, "NVD-CWE-Other") == "CWE-other"
    # a list takes the first id that reaches a named class
    assert _class(mapper, "['CWE-362', 'CWE-476']") == "CWE-476"
    assert _class(mapper, ["CWE-20", "CWE-787", "CWE-476"]) == "CWE-119"
    assert _class(mapper, None) == "CWE-other"  # a vulnerable row without an id


def test_overrides_and_a_label_set_without_a_catch_all() -> None:
    mapper = CweMapper(LABELS, {"CWE-362": "CWE-476"})
    assert _class(mapper, "CWE-362") == "CWE-476" and mapper.one("CWE-362").why == "data.cwe_map"
    narrow = CweMapper(["CWE-119", "none"], {})
    assert _class(narrow, "CWE-787") == "CWE-119"
    assert narrow("CWE-362") is None  # no class takes it: the row is dropped, and counted
    table = narrow.table(narrow.take_seen())
    assert table["CWE-362"] == {
        "rows": 1,
        "class": None,
        "why": "no configured class among its ancestors",
    }


def test_cwe_map_is_checked_with_the_config() -> None:
    base = {"format": "csv", "path": "x.csv", "labels": LABELS, "cwe_column": "cwe"}
    config = load_config_dict({"data": {**base, "cwe_map": {"cwe-362": "CWE-476"}}}, "t")
    assert config.data.cwe_map == {"CWE-362": "CWE-476"}  # normalised
    with pytest.raises(UserError, match=r"not one of data\.labels"):
        load_config_dict({"data": {**base, "cwe_map": {"CWE-362": "CWE-999"}}}, "t")
    with pytest.raises(UserError, match="not one CWE id"):
        load_config_dict({"data": {**base, "cwe_map": {"race": "CWE-476"}}}, "t")
    with pytest.raises(UserError, match="needs 'none'"):
        load_config_dict({"data": {**base, "labels": LABELS[:5], "target_column": "target"}}, "t")


def test_a_presets_keys_yield_to_the_users() -> None:
    config = load_config_dict(
        {"data": {"preset": "sven", "train": "x", "labels": LABELS, "cwe_column": "mine"}}, "t"
    )
    assert config.data.format == "jsonl" and config.data.cwe_column == "mine"
    assert config.data.pair_columns.fixed == "func_src_after"


# --- prepare on files ----------------------------------------------------------------------------


def _prepare(tmp_path: Path, capsys, data: dict) -> tuple[int, str, dict | None]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "data": data}))
    code = main(["prepare", "--config", str(config)])
    out, err = capsys.readouterr()
    manifest = tmp_path / "run" / "data" / "manifest.json"
    return code, out + err, json.loads(manifest.read_text()) if manifest.is_file() else None


def _rows(tmp_path: Path) -> list[dict]:
    out = []
    for split in ("train", "val", "test"):
        out += pq.read_table(tmp_path / "run" / "data" / f"{split}.parquet").to_pylist()
    return out


def _fn(i: int, fixed: bool = False) -> str:
    check = "    if (n > 8) return -1;\n" if fixed else ""
    return f"int f{i}(char *p, int n)\n{{\n{check}    p[n] = {i};\n    return {i};\n}}\n"


def test_pairs_in_one_row_become_two_rows_of_one_pair(tmp_path: Path, capsys) -> None:
    rows = [
        {"before": _fn(i), "after": _fn(i, fixed=True), "cwe": f"['CWE-{c}']", "cve": f"C{i}"}
        for i, c in zip(range(40), [787, 476, 362, 125] * 10, strict=True)
    ]
    rows.append({"before": _fn(99), "after": _fn(99) + "\n", "cwe": "CWE-787", "cve": "C99"})
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = ["CWE-119", "CWE-476", "CWE-other", "none"]
    code, out, manifest = _prepare(
        tmp_path,
        capsys,
        {
            "format": "jsonl",
            "path": str(path),
            "labels": labels,
            "pair_columns": {"vulnerable": "before", "fixed": "after"},
            "cwe_column": "cwe",
            "group_column": "cve",
        },
    )
    assert code == 0, out
    assert manifest["dropped"]["identical_pairs"] == 1  # C99: the fix changed nothing
    assert "1 pair(s) whose fixed text is the vulnerable one" in out
    assert manifest["cwe_mapping"]["CWE-787"]["class"] == "CWE-119"
    assert "CWE-416" not in manifest["cwe_mapping"] and "CWE-362" in out
    written = _rows(tmp_path)
    assert len(written) == 80
    by_pair: dict[int, list[dict]] = {}
    for row in written:
        by_pair.setdefault(row["pair"], []).append(row)
    assert all(len(members) == 2 for members in by_pair.values())
    for members in by_pair.values():
        flawed, fixed = sorted(members, key=lambda r: r["label"] == labels.index("none"))
        assert fixed["label"] == labels.index("none") and "if (n > 8)" in fixed["code"]
        assert flawed["label"] != labels.index("none") and flawed["group"] == fixed["group"]
    assert sum(s["pairs"] for s in manifest["splits"].values()) == 40


def test_labels_in_any_case_and_every_unknown_one_listed_at_once(tmp_path: Path, capsys) -> None:
    path = tmp_path / "d.csv"
    good = [[_fn(i), ["cwe-119", "Cwe-476", "CWE-OTHER"][i % 3]] for i in range(30)]
    bad = [[_fn(100 + i), label] for i, label in enumerate(["buffer", "uaf", "buffer", "race"])]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["code", "label"], *good, *bad])
    labels = ["CWE-119", "CWE-476", "CWE-other"]
    code, out, manifest = _prepare(
        tmp_path, capsys, {"format": "csv", "path": str(path), "labels": labels}
    )
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and manifest is None
    assert "3 unknown label(s)" in errors[0]
    assert "'buffer' (2 rows, first row 31)" in errors[0] and "'uaf'" in errors[0]
    assert "'race'" in errors[0]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["code", "label"], *good])
    code, out, manifest = _prepare(
        tmp_path, capsys, {"format": "csv", "path": str(path), "labels": labels}
    )
    assert code == 0, out
    assert manifest["table"]["total"]["train"] + manifest["table"]["total"]["val"] > 20


PRESET_FIXTURES = {
    # field names as each dataset publishes them, with the fields enstack does not read
    "primevul": (
        "primevul_train.jsonl",
        lambda i, vul: {
            "idx": 1000 + i,
            "project": f"proj{i % 5}",
            "commit_id": f"{i:040x}",
            "project_url": "https://github.com/x/y",
            "commit_url": "https://github.com/x/y/commit/z",
            "commit_message": "fix",
            "target": int(vul),
            "func": _fn(i, fixed=not vul),
            "func_hash": str(i),
            "file_name": "a.c",
            "file_hash": str(i),
            "cwe": ["CWE-787"] if vul else [],
            "cve": f"CVE-2020-{i}" if vul else "None",
            "cve_desc": "",
            "nvd_url": "",
        },
    ),
    "diversevul": (
        "diversevul_20230702.json",
        lambda i, vul: {
            "func": _fn(i, fixed=not vul),
            "target": int(vul),
            "cwe": ["CWE-476"] if vul else [],
            "project": f"proj{i % 5}",
            "commit_id": f"{i:040x}",
            "hash": i,
            "size": 5,
            "message": "fix",
        },
    ),
}


@pytest.mark.parametrize("preset", sorted(PRESET_FIXTURES))
def test_json_lines_presets(tmp_path: Path, capsys, preset: str) -> None:
    name, make = PRESET_FIXTURES[preset]
    path = tmp_path / name
    path.write_text("".join(json.dumps(make(i, i % 2 == 0)) + "\n" for i in range(60)))
    flawed = "CWE-119" if preset == "primevul" else "CWE-476"
    labels = [flawed, "none"]
    code, out, manifest = _prepare(
        tmp_path, capsys, {"preset": preset, "path": str(path), "labels": labels}
    )
    assert code == 0, out
    total = {n: sum(manifest["table"][n].values()) for n in labels}
    assert total[flawed] == 30 and total["none"] == 30
    assert manifest["splits"]["train"]["groups"] >= 1  # the project is the group


def test_bigvul_preset(tmp_path: Path, capsys) -> None:
    """Big-Vul's CSV: `vul` 1 rows are pairs (func_before, func_after); `vul` 0 rows are
    functions the fix did not touch, kept once as benign."""
    path = tmp_path / "MSR_data_cleaned.csv"
    header = ["", "Access Gained", "CVE ID", "CWE ID", "commit_id", "project", "func_before",
              "func_after", "lines_before", "lines_after", "vul", "vul_func_with_fix"]  # fmt: skip
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, header, restval="")
        writer.writeheader()
        for i in range(60):
            vul = i % 3 == 0
            writer.writerow(
                {
                    "": i,
                    "CVE ID": f"CVE-2019-{i}",
                    "CWE ID": "CWE-125" if vul else "",
                    "commit_id": f"{i:x}",
                    "project": f"p{i % 20}",
                    "func_before": _fn(i),
                    "func_after": _fn(i, fixed=True) if vul else _fn(i),
                    "vul": int(vul),
                }
            )
    labels = ["CWE-119", "none"]
    code, out, manifest = _prepare(
        tmp_path, capsys, {"preset": "bigvul", "path": str(path), "labels": labels}
    )
    assert code == 0, out
    total = {n: sum(manifest["table"][n].values()) for n in labels}
    assert total == {"CWE-119": 20, "none": 60}  # 20 pairs' two rows, 40 untouched functions


def test_pairvul_and_sven_as_published(tmp_path: Path, capsys) -> None:
    """The real files: PairVul's JSON arrays (one per CWE, a pair in each CWE file its CVE
    lists) and SVEN's JSON lines (the project cut out of the commit link)."""
    pairvul = shared_file("realvul", "pairvul", "train", "linux_kernel_CWE-416_data.json").parent
    sven = shared_file("realvul", "sven", "train", "cwe-476.jsonl").parent
    labels = ["CWE-119", "CWE-476", "CWE-other", "none"]
    code, out, manifest = _prepare(
        tmp_path / "pv", capsys, {"preset": "pairvul", "path": str(pairvul), "labels": labels}
    )
    assert code == 0, out
    assert len(manifest["sources"]["all"]["files"]) == 10
    # two rows per published pair (2,317 in the README), but for pairs that change nothing
    assert manifest["sources"]["all"]["rows_read"] == 2 * (
        2317 - manifest["dropped"]["identical_pairs"]
    )
    assert manifest["dropped"]["duplicates"] > 0  # a pair under two CWEs is kept once
    assert manifest["cwe_mapping"]["CWE-416"]["class"] == "CWE-119"
    pairs = sum(s["pairs"] for s in manifest["splits"].values())
    assert 2000 < pairs <= 2317
    assert all(s.get("groups_also_in_train", 0) == 0 for s in manifest["splits"].values())
    code, out, manifest = _prepare(
        tmp_path / "sv",
        capsys,
        {"preset": "sven", "train": str(sven), "val": str(sven.parent / "val"), "labels": labels},
    )
    assert code == 0, out
    assert manifest["splits"]["train"]["groups"] > 50  # projects, not commit links
    groups = {r["group"] for r in _rows(tmp_path / "sv")}
    assert len(groups) < 200  # ids dense-coded per project


def _bad(tmp_path: Path, capsys, data: dict, *fragments: str) -> None:
    code, out, manifest = _prepare(tmp_path, capsys, data)
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in out, out
    assert manifest is None and not (tmp_path / "run" / "data").exists()
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def test_bad_input_in_the_new_forms(tmp_path: Path, capsys) -> None:
    labels = ["CWE-119", "CWE-other", "none"]
    target = tmp_path / "t.jsonl"
    target.write_text(
        "".join(json.dumps({"func": _fn(i), "target": i % 2, "cwe": []}) + "\n" for i in range(9))
        + json.dumps({"func": _fn(9), "target": "maybe", "cwe": []})
        + "\n"
    )
    _bad(
        tmp_path / "a",
        capsys,
        {"preset": "primevul", "path": str(target), "labels": labels, "group_column": None},
        str(target),
        "row 10",
        "'maybe'",
        "target",
    )
    cut = tmp_path / "cut.json"
    cut.write_text('[{"code_before_change": "int f() {}", ')
    _bad(tmp_path / "b", capsys, {"preset": "pairvul", "path": str(cut), "labels": labels},
         str(cut))  # fmt: skip
    not_array = tmp_path / "obj.json"
    not_array.write_text('{"rows": []}')
    _bad(tmp_path / "c", capsys, {"preset": "pairvul", "path": str(not_array), "labels": labels},
         "not a JSON array")  # fmt: skip
    missing_key = tmp_path / "mk.json"
    missing_key.write_text(
        json.dumps([{"code_before_change": "int f() {}", "cwe": [], "cve_id": "CVE-1"}])
    )
    _bad(tmp_path / "d", capsys, {"preset": "pairvul", "path": str(missing_key), "labels": labels},
         "row 1", "code_after_change", "pair_columns.fixed")  # fmt: skip
    _bad(tmp_path / "e", capsys,
         {"preset": "pairvul", "path": str(tmp_path / "none" / "*.json"), "labels": labels},
         "no files match")  # fmt: skip


def test_the_pairs_example_prepares_the_layout_it_documents(tmp_path: Path) -> None:
    from support import REPO, run_cli

    (tmp_path / "data").mkdir()
    cwes = ["['CWE-476']", "CWE-787", "cwe-125", "['CWE-362', 'CWE-416']", "NVD-CWE-Other"]
    with (tmp_path / "data" / "my_fixes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["before", "after", "cwe", "project"])
        for i in range(100):
            writer.writerow([_fn(i), _fn(i, fixed=True), cwes[i % 5], f"project{i % 25}"])
    result = run_cli("prepare", "--config", str(REPO / "configs" / "pairs-example.yaml"),
                     cwd=tmp_path)  # fmt: skip
    assert result.code == 0, result.stderr
    manifest = json.loads((tmp_path / "runs/my-fixes/data/manifest.json").read_text())
    total = {n: sum(v.values()) for n, v in manifest["table"].items()}
    assert total["none"] == 100 and total["CWE-476"] == 20
    assert total["CWE-119"] == 60  # 787, 125 and the list whose 416 reaches CWE-119
    assert total["CWE-other"] == 20


def test_sources_of_different_formats_in_one_training_set(tmp_path: Path, capsys) -> None:
    """PairVul's JSON arrays beside SVEN's JSON lines, each read by its own preset, under one
    set of labels; pairs and groups (CVEs, projects) from both."""
    pairvul = shared_file("realvul", "pairvul", "train", "linux_kernel_CWE-476_data.json")
    sven = shared_file("realvul", "sven", "train", "cwe-476.jsonl")
    data = {
        "labels": ["CWE-119", "CWE-476", "none"],  # every id here reaches one of them
        "sources": [
            {"preset": "pairvul", "path": str(pairvul)},
            {"preset": "sven", "path": str(sven)},
        ],
    }
    code, out, manifest = _prepare(tmp_path, capsys, data)
    assert code == 0, out
    assert manifest["format"] == "json+jsonl"
    assert len(manifest["sources"]["all"]["files"]) == 2
    rows = _rows(tmp_path)
    ids = {row["id"] for row in rows}
    assert any(i.startswith("cwe-476:") for i in ids)  # SVEN's rows (no id column)
    assert any(i.isdigit() for i in ids)  # PairVul's ids
    pairs: dict[int, int] = {}
    for row in rows:
        pairs[row["pair"]] = pairs.get(row["pair"], 0) + 1
    assert max(pairs.values()) == 2  # a pair's two rows, never two sources' rows in one pair
    assert manifest["cwe_mapping"]["CWE-476"]["rows"] > 300


@pytest.mark.parametrize(
    ("sources", "fragment"),
    [
        ([{"preset": "sven", "path": "a", "labels": ["x", "y"]}], "'labels' is shared"),
        (
            [{"preset": "sven", "path": "a"}, {"preset": "sven", "train": "b", "val": "c"}],
            "every source gives the same paths",
        ),
        ([{"path": "a"}], "needs a format or a preset"),
        ([{"preset": "nope", "path": "a"}], "sources[0]"),
        ([], "an empty list"),
    ],
)
def test_bad_sources_are_one_config_error(sources: list, fragment: str) -> None:
    data = {"labels": ["CWE-119", "none"], "sources": sources}
    with pytest.raises(UserError) as info:
        load_config_dict({"data": data}, "c.yaml")
    assert fragment in str(info.value)


def test_megavul_preset(tmp_path: Path, capsys) -> None:
    """MegaVul's JSON array: an `is_vul` row holds a pair (func_before, func); the commit's
    other functions have `func` alone (megavul_simple.json leaves func_before out)."""
    rows = []
    for i in range(60):
        vul = i % 3 == 0
        row = {
            "cve_id": f"CVE-2022-{i // 3}",
            "cwe_ids": ["CWE-787"] if vul else [],
            "cvss_vector": "AV:N/AC:L/Au:N/C:P/I:P/A:P",
            "is_vul": vul,
            "func": _fn(i, fixed=True) if vul else _fn(i),
            "abstract_func": "",
            "git_url": f"https://github.com/x/y/commit/{i:x}",
            "repo_name": "x/y",
        }
        if vul:
            row["func_before"] = _fn(i)
            row["diff_line_info"] = {"deleted_lines": [], "added_lines": []}
        rows.append(row)
    path = tmp_path / "megavul_simple.json"
    path.write_text(json.dumps(rows))
    labels = ["CWE-119", "none"]
    code, out, manifest = _prepare(
        tmp_path, capsys, {"preset": "megavul", "path": str(path), "labels": labels}
    )
    assert code == 0, out
    total = {n: sum(manifest["table"][n].values()) for n in labels}
    assert total == {"CWE-119": 20, "none": 60}  # CWE-787 is a child of CWE-119
    assert manifest["splits"]["train"]["groups"] >= 1  # the CVE is the group


def _cvefixes_db(path: Path) -> None:
    """CVEfixes' tables, with the columns the preset's query reads and some it does not."""
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE fixes (cve_id TEXT, hash TEXT, repo_url TEXT);
        CREATE TABLE cwe_classification (cve_id TEXT, cwe_id TEXT);
        CREATE TABLE file_change (file_change_id TEXT, hash TEXT, filename TEXT,
            programming_language TEXT, diff TEXT);
        CREATE TABLE method_change (method_change_id TEXT, file_change_id TEXT, name TEXT,
            signature TEXT, parameters TEXT, start_line INT, end_line INT, code TEXT,
            nloc INT, complexity INT, token_count INT, top_nesting_level INT,
            before_change TEXT);
        """
    )
    for i in range(30):
        cve, commit, change = f"CVE-2021-{i}", f"{i:040x}", f"fc{i}"
        db.execute("INSERT INTO fixes VALUES (?, ?, ?)", (cve, commit, "https://github.com/x/y"))
        db.execute("INSERT INTO cwe_classification VALUES (?, ?)", (cve, "CWE-476"))
        language = "C" if i < 25 else "Python"  # only C and C++ are read
        db.execute(
            "INSERT INTO file_change VALUES (?, ?, 'a.c', ?, '')", (change, commit, language)
        )
        for j, before in enumerate(("True", "False")):
            code = _fn(i, fixed=before == "False")
            db.execute(
                "INSERT INTO method_change VALUES (?, ?, 'f', 'int f(int)', '', 1, 5, ?, 5, 1,"
                " 10, 1, ?)",
                (f"m{i}-{j}", change, code, before),
            )
    db.commit()
    db.close()


def test_cvefixes_preset(tmp_path: Path, capsys) -> None:
    """CVEfixes' SQLite database: each C/C++ method a fix changed, before (vulnerable) and
    after (fixed), paired by file change and signature, grouped by CVE, read-only."""
    path = tmp_path / "CVEfixes.db"
    _cvefixes_db(path)
    before = path.read_bytes()
    labels = ["CWE-476", "none"]
    code, out, manifest = _prepare(
        tmp_path, capsys, {"preset": "cvefixes", "path": str(path), "labels": labels}
    )
    assert code == 0, out
    total = {n: sum(manifest["table"][n].values()) for n in labels}
    assert total == {"CWE-476": 25, "none": 25}
    assert manifest["splits"]["train"]["groups"] >= 1
    assert path.read_bytes() == before  # opened read-only


@pytest.mark.parametrize(
    ("query", "culprit"),
    [
        ("SELECT code FROM no_such_table", "no such table"),
        ("DELETE FROM method_change", "not authorized"),
        ("ATTACH DATABASE 'other.db' AS other", "not authorized"),
        ("SELECT 1 AS one", "no column 'code'"),
    ],
)
def test_a_sqlite_query_only_reads(tmp_path: Path, capsys, query: str, culprit: str) -> None:
    path = tmp_path / "CVEfixes.db"
    _cvefixes_db(path)
    before = path.read_bytes()
    code, out, _ = _prepare(
        tmp_path, capsys,
        {"preset": "cvefixes", "path": str(path), "labels": ["CWE-476", "none"],
         "sqlite_query": query},
    )  # fmt: skip
    assert code == 2 and out.count("error:") == 1 and culprit in out and str(path) in out
    assert path.read_bytes() == before and not (tmp_path / "other.db").exists()


def test_a_file_that_is_not_sqlite_is_one_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "CVEfixes.db"
    path.write_bytes(b"not a database at all" * 100)
    code, out, _ = _prepare(
        tmp_path, capsys, {"preset": "cvefixes", "path": str(path), "labels": ["CWE-476", "none"]}
    )
    assert code == 2 and out.count("error:") == 1 and str(path) in out


def test_a_wal_database_is_read_without_files_left_beside_it(tmp_path: Path, capsys) -> None:
    import sqlite3

    path = tmp_path / "data" / "CVEfixes.db"
    path.parent.mkdir()
    _cvefixes_db(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.close()  # the last connection checkpoints: no -wal file now, the header says WAL
    before = sorted(p.name for p in path.parent.iterdir())
    code, out, manifest = _prepare(
        tmp_path, capsys, {"preset": "cvefixes", "path": str(path), "labels": ["CWE-476", "none"]}
    )
    assert code == 0, out
    assert sum(manifest["table"]["none"].values()) == 25
    assert sorted(p.name for p in path.parent.iterdir()) == before  # no -wal, no -shm


ENDLESS = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
    "SELECT 'x' AS code, 'f' AS name FROM r WHERE n < 0"
)


def test_an_endless_or_oversized_query_is_stopped(tmp_path: Path, capsys, monkeypatch) -> None:
    import sqlite3

    import enstack.data.tabular as tabular

    monkeypatch.setattr(tabular, "SQLITE_STALL_S", 1.0)
    path = tmp_path / "CVEfixes.db"
    _cvefixes_db(path)
    data = {"preset": "cvefixes", "path": str(path), "labels": ["CWE-476", "none"]}
    code, out, _ = _prepare(tmp_path / "a", capsys, {**data, "sqlite_query": ENDLESS})
    assert code == 2 and out.count("error:") == 1 and "gave no row in 1 s" in out
    db = sqlite3.connect(path)
    db.execute("UPDATE method_change SET code = ? WHERE method_change_id = 'm3-0'",
               ("x" * (17 << 20),))  # fmt: skip
    db.commit()
    db.close()
    code, out, _ = _prepare(tmp_path / "b", capsys, data)
    assert code == 2 and out.count("error:") == 1 and "too big" in out and str(path) in out


def test_sigterm_stops_an_endless_query_and_leaves_nothing(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "CVEfixes.db"
    _cvefixes_db(path)
    config = tmp_path / "c.yaml"
    data = {"preset": "cvefixes", "path": str(path), "labels": ["CWE-476", "none"],
            "sqlite_query": ENDLESS}  # fmt: skip
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "data": data}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "enstack", "prepare", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(4)  # inside the query by now
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("SIGTERM was not honoured during the query")
    assert proc.returncode == 130, err
    left = [p.name for p in (tmp_path / "run").iterdir()] if (tmp_path / "run").exists() else []
    assert not [n for n in left if n.startswith((".data.tmp-", ".lock"))], left


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ('"cwe": "\u00b2"', None),  # a superscript two: a digit to str.isdigit, no CWE id
        ('"cwe": "CWE-' + "9" * 5000 + '"', None),
        ('"n": ' + "9" * 5000, "number too long"),  # past Python's 4,300-digit limit
    ],
)
def test_hostile_values_in_rows(tmp_path: Path, capsys, extra: str, fragment) -> None:
    """Rows as an attacker writes them: a value that looks like a number and is none, a CWE
    id of 5,000 digits, an integer too long to convert. One error line, or the value read as
    no CWE id; never a traceback."""
    rows = [{"before": _fn(i), "after": _fn(i, fixed=True), "cwe": "CWE-787"} for i in range(30)]
    lines = [json.dumps(r) for r in rows]
    lines[3] = lines[3][:-1] + ", " + extra + "}"  # spliced as text: Python would not write it
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = _prepare(
        tmp_path, capsys,
        {"format": "jsonl", "path": str(path), "labels": ["CWE-119", "CWE-other", "none"],
         "pair_columns": {"vulnerable": "before", "fixed": "after"}, "cwe_column": "cwe"},
    )  # fmt: skip
    assert "Traceback" not in out
    if fragment:
        assert code == 2 and out.count("error:") == 1 and fragment in out and "line 4" in out
    else:
        assert code == 0, out


def test_a_deeply_nested_cwe_list_and_an_oversized_line(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import enstack.data.tabular as tabular

    nested: object = "CWE-787"
    for _ in range(900):
        nested = [nested]
    cwes = [nested if i == 3 else ("CWE-787" if i % 2 else "CWE-476") for i in range(30)]
    rows = [{"before": _fn(i), "after": _fn(i, fixed=True), "cwe": c} for i, c in enumerate(cwes)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {
        "format": "jsonl",
        "path": str(path),
        "labels": ["CWE-119", "CWE-other", "none"],
        "pair_columns": {"vulnerable": "before", "fixed": "after"},
        "cwe_column": "cwe",
    }
    code, out, _ = _prepare(tmp_path / "a", capsys, data)
    assert code == 0 and "Traceback" not in out, out
    monkeypatch.setattr(tabular, "MAX_ROW_BYTES", 4096)  # a row longer than rows may be
    with path.open("a") as handle:
        handle.write(json.dumps({"before": "x" * 10_000, "after": "y", "cwe": "CWE-787"}) + "\n")
    code, out, _ = _prepare(tmp_path / "b", capsys, data)
    assert code == 2 and out.count("error:") == 1 and "line 31 is over" in out
