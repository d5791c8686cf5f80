"""`enstack prepare`: sources in, `run_dir/data/{train,val,test}.parquet` and a manifest out.

Two passes, so memory does not grow with the source: pass 1 streams each source in chunks,
drops unlabelled and empty rows, and spills the kept rows to a staging Parquet file while
keeping only a class id and a 64-bit hash per row; the split plan is computed from those arrays;
pass 2 streams the staging files into the split files. Everything is written in a temporary
directory that replaces `run_dir/data` only when complete.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from enstack import log, versions
from enstack.config import Config, DataConfig
from enstack.data.chunks import MULTI_DROPPED, NO_LABEL, Chunk
from enstack.data.cwe import CweMapper
from enstack.data.readers import read_source
from enstack.data.record import MANIFEST_NAME, PreparedData, SplitRecord
from enstack.data.selection import SplitPlan, SplitRules, StagedSource, plan_splits
from enstack.data.synthetic import generate, synthetic_labels
from enstack.errors import UserError
from enstack.fsutil import sha256_file, sha256_json
from enstack.labels import PAPER_LABELS, SPLITS
from enstack.progress import progress_bar
from enstack.records import read_record, write_record
from enstack.stages import Stage, StageResult, run_stage

LOG = log.get(__name__)

SPLIT_SCHEMA = pa.schema([("id", pa.string()), ("code", pa.string()), ("label", pa.int16())])


def split_schema(data: DataConfig) -> pa.Schema:
    """The split files' columns: a `pair` id per row with pairs (data.pair_column, or synthetic
    data with a benign class), a `group` name per row with data.group_column."""
    schema = SPLIT_SCHEMA
    if data.has_pairs:
        schema = schema.append(pa.field("pair", pa.string()))
    if data.has_groups:
        schema = schema.append(pa.field("group", pa.string()))
    return schema


@dataclass(frozen=True)
class PrepareResult(StageResult[PreparedData]):
    """`directory` is `run_dir/data`, `record` its manifest (also as `data_dir`, `manifest`)."""

    @property
    def data_dir(self) -> Path:
        return self.directory

    @property
    def manifest(self) -> PreparedData:
        return self.record


@dataclass(frozen=True)
class PrepareInputs:
    sources: dict[str, Units | None]
    source_fingerprints: dict[str, dict]
    fingerprint: str


class Prepare(Stage[PrepareInputs, PreparedData]):
    """Sources in, `run_dir/data/{train,val,test}.parquet` and `manifest.json` out."""

    lock = "prepare"

    def __init__(self, config: Config, progress: bool | None) -> None:
        super().__init__(config.run_dir, config.layout.data)
        self.config = config
        self.progress = progress

    def inputs(self) -> PrepareInputs:
        data = self.config.data
        _check_rules(data)
        sources = _source_paths(data)
        fingerprints = {
            key: _source_fingerprint(data, units, self.config.seed)
            for key, units in sources.items()
        }
        return PrepareInputs(sources, fingerprints, _inputs_fingerprint(self.config, fingerprints))

    def reuse(self, inputs: PrepareInputs) -> PreparedData | None:
        path = self.output / MANIFEST_NAME
        existing = read_record(path, PreparedData)
        if existing is None and path.exists():
            LOG.warning(f"{path}: damaged (stale): preparing the data again")
        if existing is None or existing.fingerprint != inputs.fingerprint:
            return None
        return existing if _outputs_intact(self.output, existing) else None

    def build(self, inputs: PrepareInputs, tmp: Path) -> PreparedData:
        config, data = self.config, self.config.data
        staging = tmp / "staging"
        staging.mkdir()
        staged: dict[str, StagedSource] = {}
        counts: dict[str, dict[str, int]] = {}
        schema = split_schema(data)
        # one numbering across sources, so that a group in val and in train has one id
        ids = {name: DenseIds() for name in ("pair", "group") if name in schema.names}
        for key, units in inputs.sources.items():
            chunks = _chunks(data, units, config.seed)
            out = staging / f"{key}.parquet"
            staged[key], counts[key] = _stage(chunks, out, schema, ids, key, self.progress)
        _check_labelled(inputs.sources, staged, counts)
        rules = SplitRules(
            class_names=data.labels,
            downsample=_downsample_rule(data),
            seed=config.seed,
            benign_id=data.benign_id,
            benign_ratio=data.benign_ratio,
        )
        plan = plan_splits(staged, rules)
        split_files = _write_splits(plan, staging, tmp, schema)
        for path in staging.iterdir():
            path.unlink()
        staging.rmdir()
        manifest = _manifest(config, inputs, counts, plan, staged, split_files)
        _check_splits(manifest, data.labels)
        write_record(tmp / MANIFEST_NAME, manifest)
        return manifest


def prepare(config: Config, progress: bool | None = None) -> PrepareResult:
    done = run_stage(Prepare(config, progress))
    return PrepareResult(done.directory, done.record, done.skipped)


# --- sources and fingerprints ------------------------------------------------------------------


def _check_rules(data: DataConfig) -> None:
    if data.downsample == "paper" and list(data.labels) != list(PAPER_LABELS):
        raise UserError(
            "data.downsample: 'paper' uses Table I's counts, which exist only for the labels "
            f"{', '.join(PAPER_LABELS)}; use none or {{max_per_class: N}} for other labels"
        )
    synthetic = data.format == "synthetic" and data.sources is None
    if synthetic and sorted(data.labels) != sorted(synthetic_labels(data)):
        raise UserError(
            "data.labels: synthetic data has the five paper classes, and optionally the benign "
            f"class ({data.benign_label}): {', '.join(synthetic_labels(data))}"
        )


# One source's files: the config that reads them (its own format and columns), and each path.
Units = list[tuple[DataConfig, Path]]


def _source_paths(data: DataConfig) -> dict[str, Units | None]:
    """Split key (`all`, or train/val/test) -> the files to read into it, across sources."""
    if data.format == "synthetic" and data.sources is None:
        return {"all": None}
    units: dict[str, Units] = {}
    for reader in data.readers():
        for key, path in _split_paths(reader).items():
            units.setdefault(key, []).extend((reader, f) for f in source_files(path, reader.format))
    return units


def _split_paths(data: DataConfig) -> dict[str, Path]:
    if data.path is not None:
        return {"all": data.path}
    assert data.train is not None  # the config validator guarantees it
    if data.val is None:
        return {"all": data.train}
    named = {"train": data.train, "val": data.val, "test": data.test}
    return {key: path for key, path in named.items() if path is not None}


GLOB = re.compile(r"[*?\[]")


def source_files(path: Path, fmt: str) -> list[Path]:
    """The files one source names: a file; a directory (its files of the format, sorted, as
    datasets published one file per CWE come); or a glob pattern (`pairvul/train/*.json`)."""
    if path.is_dir():
        suffixes = {"jsonl": (".jsonl", ".json"), "draper-hdf5": (".hdf5", ".h5")}
        wanted = suffixes.get(fmt, (f".{fmt}",))
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in wanted)
        if not files:
            raise UserError(f"{path}: a directory with no {' or '.join(wanted)} files")
        return files
    if GLOB.search(path.name):
        files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
        if not files:
            raise UserError(f"{path}: no files match this pattern")
        return files
    return [path]


def _source_fingerprint(data: DataConfig, units: Units | None, seed: int) -> dict:
    if units is None:
        return {
            "synthetic": versions.SYNTHETIC_DATA,
            "n_per_class": data.synthetic.n_per_class,
            "seed": seed,
        }
    files = []
    for _, path in units:
        if not path.is_file():
            raise UserError(f"data file not found: {path}")
        files.append({"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    if len(files) == 1:
        return files[0]
    return {"files": files, "sha256": sha256_json([f["sha256"] for f in files])}


# data keys added after runs existed: absent from the fingerprint while they are unset
LATER_RULES = ("preset", "group_pattern", "cwe_column", "cwe_map", "target_column", "pair_columns")


def _inputs_fingerprint(config: Config, fingerprints: dict) -> str:
    rules = config.data.model_dump(
        mode="json", exclude={"train", "val", "test", "path", "chunk_rows", "cve_column"}
    )  # cve_column: read by `enstack known build` only, no training row depends on it
    for key in LATER_RULES:  # unset, they leave an older run's fingerprint as it was
        if not rules.get(key):
            rules.pop(key, None)
    return sha256_json(
        {
            "version": versions.PREPARED_DATA,
            "seed": config.seed,
            "rules": rules,
            "sources": {k: v.get("sha256", v) for k, v in fingerprints.items()},
        }
    )


def _chunks(data: DataConfig, units: Units | None, seed: int) -> Iterator[Chunk]:
    if units is None:
        return generate(data, seed)
    return itertools.chain.from_iterable(read_source(reader, path) for reader, path in units)


def _downsample_rule(data: DataConfig) -> str | int:
    if isinstance(data.downsample, str):
        return data.downsample
    return data.downsample.max_per_class


# --- pass 1: filter and spill -------------------------------------------------------------------


def normalised_hash(code: str) -> int:
    """64-bit hash of the code with all whitespace runs collapsed: the dedup key."""
    text = " ".join(code.split()).encode("utf-8", errors="surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


COUNTS = (
    "rows",
    "no_label",
    "multi_label",
    "empty_code",
    "multi_label_resolved",
    "undecodable",
    "unflagged_benign",
    "identical_pairs",
)


def _stage(
    chunks: Iterator[Chunk],
    out: Path,
    schema: pa.Schema,
    ids: dict[str, DenseIds],
    key: str,
    progress: bool | None,
) -> tuple[StagedSource, dict[str, int]]:
    counts = dict.fromkeys(COUNTS, 0)
    cwe_seen: Counter[str] = Counter()
    labels: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    dense: dict[str, list[np.ndarray]] = {name: [] for name in ids}
    bar = progress_bar(
        enabled=progress,
        desc=f"reading {key}",
        unit=" rows",
        leave=False,
    )
    with pq.ParquetWriter(out, schema) as writer:
        for chunk in chunks:
            bar.update(len(chunk))
            counts["rows"] += len(chunk)
            counts["undecodable"] += chunk.undecodable
            counts["unflagged_benign"] += chunk.unflagged_benign
            counts["identical_pairs"] += chunk.identical_pairs
            cwe_seen.update(chunk.cwe_seen or {})
            keep, chunk_hashes = _filter(chunk, counts)
            if not keep:
                continue
            kept_labels = chunk.labels[keep]
            columns = {
                "id": [chunk.ids[i] for i in keep],
                "code": [chunk.codes[i] for i in keep],
                "label": pa.array(kept_labels, pa.int16()),
            }
            for name, numbering in ids.items():
                values = chunk.pairs if name == "pair" else chunk.groups
                columns[name] = [values[i] if values is not None else None for i in keep]
                dense[name].append(numbering.of(columns[name]))
            writer.write_table(pa.table(columns, schema=schema))
            labels.append(kept_labels)
            hashes.append(np.asarray(chunk_hashes, np.uint64))
    bar.close()
    staged = StagedSource(
        labels=np.concatenate(labels) if labels else np.empty(0, np.int16),
        hashes=np.concatenate(hashes) if hashes else np.empty(0, np.uint64),
        pairs=_joined(dense["pair"]) if "pair" in dense else None,
        groups=_joined(dense["group"]) if "group" in dense else None,
    )
    return staged, {**counts, "cwe_seen": cwe_seen}


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


class DenseIds:
    """Pair or group names as dense integers, in order of first sight; a row without one is a
    unit of its own (a negative id)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.next_single = -1

    def of(self, names: list[str | None]) -> np.ndarray:
        out = np.empty(len(names), np.int64)
        for i, name in enumerate(names):
            if name is None:
                out[i] = self.next_single
                self.next_single -= 1
            else:
                out[i] = self.index.setdefault(name, len(self.index))
        return out


def _filter(chunk: Chunk, counts: dict[str, int]) -> tuple[list[int], list[int]]:
    """Rows to keep and their hashes. Each drop is counted once, under the first rule hit."""
    counts["no_label"] += int((chunk.labels == NO_LABEL).sum())
    counts["multi_label"] += int((chunk.labels == MULTI_DROPPED).sum())
    resolved = chunk.multi_label - int((chunk.labels == MULTI_DROPPED).sum())
    counts["multi_label_resolved"] += max(resolved, 0)
    keep, hashes = [], []
    for i in np.flatnonzero(chunk.labels >= 0):
        code = chunk.codes[i]
        if not code.strip():
            counts["empty_code"] += 1
            continue
        keep.append(int(i))
        hashes.append(normalised_hash(code))
    return keep, hashes


def _check_labelled(
    sources: dict[str, Units | None], staged: dict[str, StagedSource], counts: dict
) -> None:
    for key, source in staged.items():
        if len(source.labels) == 0:
            c = counts[key]
            where = ", ".join(str(path) for _, path in sources[key] or []) or "synthetic data"
            raise UserError(
                f"{where}: no usable rows ({c['rows']} read: {c['no_label']} without a "
                f"label, {c['multi_label']} with several, {c['empty_code']} with empty code)"
            )


# --- pass 2: write the splits -------------------------------------------------------------------


def _write_splits(
    plan: SplitPlan, staging: Path, out_dir: Path, schema: pa.Schema
) -> dict[str, Path]:
    files = {}
    for split in SPLITS:
        path = out_dir / f"{split}.parquet"
        with pq.ParquetWriter(path, schema) as writer:
            for key, positions in plan.parts[split]:
                _copy_rows(staging / f"{key}.parquet", positions, writer)
        files[split] = path
    return files


def _copy_rows(staged: Path, positions: np.ndarray, writer: pq.ParquetWriter) -> None:
    # Row group by row group: iter_batches reads ahead across the many small row groups that
    # pass 1 writes, and its memory then grows with the file (measured in benchmarks/).
    source = pq.ParquetFile(staged)
    wanted = np.zeros(source.metadata.num_rows, dtype=bool)
    wanted[positions] = True
    offset = 0
    for group in range(source.num_row_groups):
        table = source.read_row_group(group)
        mask = wanted[offset : offset + table.num_rows]
        offset += table.num_rows
        if mask.any():
            writer.write_table(table.filter(pa.array(mask)))


# --- manifest -----------------------------------------------------------------------------------


def _manifest(
    config: Config,
    inputs: PrepareInputs,
    counts: dict,
    plan: SplitPlan,
    staged: dict[str, StagedSource],
    files: dict[str, Path],
) -> PreparedData:
    names = config.data.labels
    splits = {}
    for split in SPLITS:
        labels = (
            np.concatenate([staged[key].labels[pos] for key, pos in plan.parts[split]])
            if plan.parts[split]
            else np.empty(0, np.int16)
        )
        per_class = {name: int((labels == i).sum()) for i, name in enumerate(names)}
        splits[split] = {
            "total": len(labels),
            "per_class": per_class,
            "file": files[split].name,
            "sha256": sha256_file(files[split]),
        }
        if config.data.has_pairs:
            splits[split]["pairs"] = _pairs_in(plan.parts[split], staged, config.data.benign_id)
        if config.data.has_groups:
            splits[split]["groups"] = len(_groups_in(plan.parts[split], staged))
    if config.data.has_groups:
        seen = _groups_in(plan.parts["train"], staged)
        for split in ("val", "test"):
            shared = _groups_in(plan.parts[split], staged) & seen
            splits[split]["groups_also_in_train"] = len(shared)
    dropped = {
        "no_label": sum(c["no_label"] for c in counts.values()),
        "multi_label": sum(c["multi_label"] for c in counts.values()),
        "empty_code": sum(c["empty_code"] for c in counts.values()),
        "identical_pairs": sum(c["identical_pairs"] for c in counts.values()),
        "duplicates": sum(plan.duplicates.values()),
        "cross_split_duplicates": sum(plan.cross_split_duplicates.values()),
        "downsampled": sum(plan.downsampled.values()),
    }
    fingerprints = inputs.source_fingerprints
    record = {
        "format_version": versions.PREPARED_DATA,
        "fingerprint": inputs.fingerprint,
        "data_fingerprint": sha256_json({s: splits[s]["sha256"] for s in SPLITS}),
        "labels": list(names),
        "benign_label": config.data.benign_label if config.data.benign_id is not None else None,
        "format": "+".join(dict.fromkeys(r.format for r in config.data.readers())),
        "sources": {
            key: {**fingerprints[key], "rows_read": counts[key]["rows"]} for key in fingerprints
        },
        "splits": splits,
        "table": {
            **{name: {s: splits[s]["per_class"][name] for s in SPLITS} for name in names},
            "total": {s: splits[s]["total"] for s in SPLITS},
        },
        "dropped": dropped,
        "dropped_by": {
            "duplicates": plan.duplicates,
            "cross_split_duplicates": plan.cross_split_duplicates,
            "downsampled": plan.downsampled,
        },
        "notes": {
            "multi_label_rule": config.data.multi_label,
            "multi_label_resolved": sum(c["multi_label_resolved"] for c in counts.values()),
            "undecodable_replaced": sum(c["undecodable"] for c in counts.values()),
            "unflagged_kept_as_benign": sum(c["unflagged_benign"] for c in counts.values()),
            "downsample": _downsample_rule(config.data),
            "texts_with_conflicting_labels": sum(plan.conflicting_labels.values()),
        },
        **_cwe_mapping(config.data, counts),
    }
    return PreparedData.model_validate(record)


def _cwe_mapping(data: DataConfig, counts: dict) -> dict:
    """Where each CWE id in the data went, and why (data.cwe_column only)."""
    if not any(reader.cwe_column for reader in data.readers()):
        return {}
    seen: Counter[str] = Counter()
    for source in counts.values():
        seen.update(source["cwe_seen"])
    return {"cwe_mapping": CweMapper(data.labels, data.cwe_map).table(seen)}


def _pairs_in(
    parts: list[tuple[str, np.ndarray]], staged: dict[str, StagedSource], benign_id: int | None
) -> int:
    """Pairs in a split that hold a flawed row and a benign one (the ones pair metrics score)."""
    total = 0
    for key, positions in parts:
        source = staged[key]
        if source.pairs is None or benign_id is None:
            continue
        pairs = source.pairs[positions]
        benign = source.labels[positions] == benign_id
        total += len(np.intersect1d(pairs[benign], pairs[~benign]))
    return total


def _groups_in(parts: list[tuple[str, np.ndarray]], staged: dict[str, StagedSource]) -> set[int]:
    """The named groups (ids >= 0) a split's rows come from."""
    out: set[int] = set()
    for key, positions in parts:
        groups = staged[key].groups
        if groups is not None:
            out.update(int(g) for g in np.unique(groups[positions]) if g >= 0)
    return out


def _check_splits(manifest: PreparedData, names: list[str]) -> None:
    for split in SPLITS:
        if manifest.splits[split].total == 0:
            raise UserError(
                f"the {split} split is empty after filtering and dedup; "
                f"dropped: {json.dumps(manifest.dropped)}"
            )
    missing = [n for n in names if manifest.splits["train"].per_class[n] == 0]
    if missing:
        raise UserError(
            f"class {missing[0]} has no train rows after filtering (data.labels lists it); "
            "remove it from data.labels or add data for it"
        )


def _outputs_intact(data_dir: Path, manifest: PreparedData) -> bool:
    try:
        return all(
            sha256_file(data_dir / info.file) == info.sha256 for info in manifest.splits.values()
        )
    except OSError:
        return False


def format_table(manifest: PreparedData) -> str:
    """The Table I layout: per-class counts per split, then what was dropped."""
    names = manifest.labels
    width = max(len(n) for n in [*names, "total"]) + 2
    lines = [f"{'class':<{width}}{'train':>9}{'val':>9}{'test':>9}"]
    for name in [*names, "total"]:
        row = manifest.table[name]
        lines.append(f"{name:<{width}}{row['train']:>9}{row['val']:>9}{row['test']:>9}")
    dropped = ", ".join(f"{k} {v}" for k, v in manifest.dropped.items())
    notes = manifest.notes
    lines.append(f"dropped: {dropped}")
    lines.append(
        f"multi-label rows resolved ({notes['multi_label_rule']}): "
        f"{notes['multi_label_resolved']}; undecodable code replaced: "
        f"{notes['undecodable_replaced']}"
    )
    if notes.get("unflagged_kept_as_benign"):
        lines.append(
            f"unflagged rows kept as {manifest.benign_label}: {notes['unflagged_kept_as_benign']}"
        )
    conflicting = notes.get("texts_with_conflicting_labels")
    if conflicting:
        lines.append(
            f"warning: {conflicting} text(s) occur with different labels (kept once, with the "
            "first row's label)"
        )
    if manifest.dropped.get("identical_pairs"):
        lines.append(
            f"warning: {manifest.dropped['identical_pairs']} pair(s) whose fixed text is the "
            "vulnerable one (up to whitespace) dropped: flawed and fixed at once"
        )
    lines += _cwe_lines(manifest.cwe_mapping)
    splits = manifest.splits
    if splits["train"].pairs is not None:
        pairs = ", ".join(f"{s} {splits[s].pairs}" for s in SPLITS)
        lines.append(f"pairs (a flawed row and a fixed one): {pairs}")
    lines += [f"warning: {w}" for w in split_warnings(manifest)]
    if splits["train"].groups is not None:
        lines.append("groups: " + ", ".join(_group_counts(splits[s], s) for s in SPLITS))
    return "\n".join(lines)


def _cwe_lines(mapping: dict | None, shown: int = 12) -> list[str]:
    """Where the data's CWE ids went, most rows first (the whole table is in the manifest)."""
    if not mapping:
        return []
    lines = ["CWE ids -> classes (rows; why):"]
    for cwe, info in list(mapping.items())[:shown]:
        lines.append(f"  {cwe:<14} -> {info['class'] or 'dropped'} ({info['rows']}; {info['why']})")
    if len(mapping) > shown:
        lines.append(f"  ... {len(mapping) - shown} more in the manifest's cwe_mapping")
    return lines


def split_warnings(manifest: PreparedData | dict[str, Any]) -> list[str]:
    """Classes that val or test lack: their scores there are undefined (say so once). Reads
    `labels` and `table` (a manifest, or any mapping with those two)."""
    out = []
    for split in ("val", "test"):
        table = manifest["table"]
        missing = [name for name in manifest["labels"] if table[name][split] == 0]
        if missing:
            out.append(
                f"no {split} rows of {', '.join(missing)}: no {split} scores for "
                f"{'it' if len(missing) == 1 else 'them'}; macro averages leave "
                f"{'it' if len(missing) == 1 else 'them'} out"
            )
    return out


def _group_counts(split: SplitRecord, name: str) -> str:
    shared = split.groups_also_in_train
    return f"{name} {split.groups}" + (f" ({shared} also in train)" if shared else "")
