"""The pretraining corpus: C/C++ functions from files, trees, globs and datasets, on disk.

Streamed: files are read one at a time and functions written in batches to
`run_dir/pretrain/data/{train,val}.parquet`, so a corpus larger than memory passes through
(only one 8-byte hash per kept function stays in memory, for deduplication).
- Functions are cut with the scanner's C syntax (`csyntax.extract_functions`), so the model
  learns code as the scanner will read it.
- Deduplicated by `normalised_hash` (whitespace runs collapsed), the key `prepare` uses.
- Decontaminated: a function whose normalised form is one of the val or test functions of a
  config to be fine-tuned (`pretrain.decontaminate`, and this config's own data) is dropped,
  and counted, so pretraining never sees what fine-tuning will be measured on.
- Split by hash: `val_fraction` of the functions are held out for the MLM loss that picks the
  best epoch, the same functions whatever order the files are read in.

`manifest.json` records the sources' key (paths, sizes, modification times, settings): the
same key reuses the corpus; `data_fingerprint` is its content's, which checkpoints compare.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from enstack import log, versions
from enstack.config import Config, DataConfig, load_config
from enstack.errors import UserError
from enstack.fsutil import read_json_object, sha256_json
from enstack.progress import progress_bar
from enstack.stages import Stage, run_stage

LOG = log.get(__name__)

SPLITS = ("train", "val")
SCHEMA = pa.schema([("code", pa.string())])
WRITE_BATCH = 4096  # functions buffered per split before a parquet row group is written
VAL_BUCKETS = 10_000  # a function is held out when its hash falls in the first buckets
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Corpus:
    data_dir: Path
    manifest: dict

    def split(self, name: str) -> Path:
        return self.data_dir / f"{name}.parquet"


def build_corpus(config: Config, out: Path, progress: bool | None = None) -> Corpus:
    """The corpus of `config.pretrain` in `out`, reused when its sources have not changed."""
    done = run_stage(CorpusStage(config, out, progress))
    if not done.skipped:
        _report(done.record.manifest)
    return done.record


@dataclass(frozen=True)
class CorpusInputs:
    paths: list[str]  # pretrain.corpus, resolved
    datasets: list[tuple[DataConfig, Path]]  # pretrain.datasets' files and their readers
    contaminated: set[int]  # hashes of the functions fine-tuning will hold out
    decontaminated_from: list[str]
    fingerprint: str  # the sources key: files' sizes and times, settings, held-out hashes


class CorpusStage(Stage[CorpusInputs, Corpus]):
    """C/C++ sources and datasets in, `run_dir/pretrain/data/` out."""

    lock = "pretrain"

    def __init__(self, config: Config, out: Path, progress: bool | None) -> None:
        super().__init__(config.run_dir, out)
        self.config, self.progress = config, progress

    def inputs(self) -> CorpusInputs:
        config = self.config
        paths = corpus_paths(config.pretrain.corpus)
        if not paths and not config.pretrain.datasets:
            raise UserError(
                "pretrain.corpus: empty; name C/C++ files, directories or globs (or "
                "pretrain.datasets) to pretrain on"
            )
        datasets = _dataset_files(config)
        contaminated, decontaminated_from = _held_out_hashes(config)
        key = sha256_json(
            {
                "version": versions.PRETRAIN_CORPUS,
                "files": _file_stamps(paths),
                "datasets": config.pretrain.datasets,
                "dataset_files": _file_stamps([str(path) for _, path in datasets]),
                "val_fraction": config.pretrain.val_fraction,
                "max_functions": config.pretrain.max_functions,
                "held_out": hashlib.sha256(
                    b"".join(h.to_bytes(8, "little") for h in sorted(contaminated))
                ).hexdigest(),
            }
        )
        return CorpusInputs(paths, datasets, contaminated, decontaminated_from, key)

    def reuse(self, inputs: CorpusInputs) -> Corpus | None:
        existing = read_json_object(self.output / "manifest.json")
        if existing and existing.get("sources_key") == inputs.fingerprint:
            return Corpus(self.output, existing) if _complete(self.output) else None
        return None

    def build(self, inputs: CorpusInputs, tmp: Path) -> Corpus:
        config = self.config
        counts = _write_splits(
            config, inputs.paths, inputs.datasets, inputs.contaminated, tmp, self.progress
        )
        named = ", ".join(config.pretrain.corpus) or "pretrain.datasets"
        if counts["kept"] == 0:
            read = f"{counts['files']} file(s) read" if counts["files"] else "no C/C++ file read"
            raise UserError(f"pretrain.corpus: no C or C++ function in {named} ({read})")
        if counts["val"] == 0:
            raise UserError(
                f"pretrain.corpus: {counts['kept']} function(s) in {named}, none of them held "
                "out for validation; give more code or raise pretrain.val_fraction"
            )
        manifest = {
            "sources_key": inputs.fingerprint,
            "data_fingerprint": counts.pop("fingerprint"),
            "rows": {split: counts[split] for split in SPLITS},
            "decontaminated_against": inputs.decontaminated_from,
            **{k: v for k, v in counts.items() if k not in SPLITS},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return Corpus(self.output, manifest)


def iter_codes(path: Path, batch: int = WRITE_BATCH) -> Iterator[str]:
    """A corpus split's functions, read a batch at a time."""
    for record in pq.ParquetFile(path).iter_batches(batch_size=batch, columns=["code"]):
        yield from record.column(0).to_pylist()


def corpus_paths(entries: list[str]) -> list[str]:
    """Files and directories, globs expanded (sorted); an entry that names nothing is an
    error, not an empty corpus."""
    paths: list[str] = []
    for entry in entries:
        if GLOB_CHARACTERS & set(entry):
            found = sorted(glob.glob(entry, recursive=True))
            if not found:
                raise UserError(f"pretrain.corpus: {entry}: no file matches this pattern")
            paths.extend(found)
        elif not os.path.lexists(entry):
            raise UserError(f"pretrain.corpus: {entry}: no such file or directory")
        else:
            paths.append(entry)
    return paths


def _complete(out: Path) -> bool:
    return all((out / f"{split}.parquet").is_file() for split in SPLITS)


def _file_stamps(paths: list[str]) -> list[tuple[str, int, int]]:
    """Every file under `paths` by name, size and modification time: a cheap key that
    changes when a file does (the contents are read only to rebuild)."""
    stamps = []
    for root in paths:
        walked = (
            [(root, [], [""])]
            if not os.path.isdir(root)
            else sorted(os.walk(root, followlinks=False))
        )
        for current, _, files in walked:
            for name in sorted(files):
                path = os.path.join(current, name) if name else current
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                stamps.append((path, stat.st_size, stat.st_mtime_ns))
    return stamps


def _held_out_hashes(config: Config) -> tuple[set[int], list[str]]:
    """The normalised hashes of the val and test functions of every config to be fine-tuned:
    those named in `pretrain.decontaminate`, and this one when it names real data."""
    from enstack.data.prepare import normalised_hash, prepare
    from enstack.encode import read_split

    targets: list[tuple[str, Config]] = []
    if config.data.sources is not None or config.data.format != "synthetic":
        targets.append(("this config", config))  # real data named: it will be fine-tuned
    for path in config.pretrain.decontaminate:
        targets.append((str(path), load_config(path)))
    hashes: set[int] = set()
    for name, target in targets:
        LOG.info(f"pretrain: reading the val and test functions of {name} (decontamination)")
        data_dir = prepare(target, progress=False).data_dir
        for split in ("val", "test"):
            codes, _ = read_split(data_dir / f"{split}.parquet")
            hashes.update(normalised_hash(code) for code in codes)
    return hashes, [name for name, _ in targets]


def _write_splits(
    config: Config,
    paths: list[str],
    datasets: list[tuple[DataConfig, Path]],
    contaminated: set[int],
    out: Path,
    progress: bool | None,
) -> Counter:
    """Stream every function into train/val parquet files; the counts, and the content's
    fingerprint (every kept function's hash and split, in order)."""
    from enstack.data.prepare import normalised_hash

    spec = config.pretrain
    held_out = round(spec.val_fraction * VAL_BUCKETS)
    counts: Counter = Counter()
    seen: set[int] = set()
    digest = hashlib.sha256()
    writers = {split: pq.ParquetWriter(out / f"{split}.parquet", SCHEMA) for split in SPLITS}
    buffers: dict[str, list[str]] = {split: [] for split in SPLITS}
    try:
        for code in _functions(paths, datasets, counts, progress):
            if not code.strip():
                continue
            h = normalised_hash(code)
            if h in contaminated:
                counts["contaminated"] += 1
                continue
            if h in seen:
                counts["duplicates"] += 1
                continue
            seen.add(h)
            split = "val" if h % VAL_BUCKETS < held_out else "train"
            digest.update(h.to_bytes(8, "little") + split.encode())
            counts[split] += 1
            counts["kept"] += 1
            buffers[split].append(code)
            if len(buffers[split]) >= WRITE_BATCH:
                _flush(writers[split], buffers[split])
            if spec.max_functions and counts["kept"] >= spec.max_functions:
                break
        for split in SPLITS:
            _flush(writers[split], buffers[split])
    finally:
        for writer in writers.values():
            writer.close()
    counts["fingerprint"] = digest.hexdigest()  # type: ignore[assignment]
    return counts


def _flush(writer: pq.ParquetWriter, codes: list[str]) -> None:
    if codes:
        writer.write_table(pa.table({"code": codes}, schema=SCHEMA))
        codes.clear()


def _functions(
    paths: list[str],
    datasets: list[tuple[DataConfig, Path]],
    counts: Counter,
    progress: bool | None,
) -> Iterator[str]:
    """Every function's text: the files' (in walk order), then the datasets' code columns."""
    from enstack.csyntax.functions import extract_functions
    from enstack.csyntax.parser import language_of
    from enstack.scan.files import FileTally, selection_for, source_files

    if paths:
        tally = FileTally()
        bar = progress_bar(enabled=progress, desc="reading corpus", unit=" files")
        for source in source_files(paths, tally, selection_for(paths)):
            language = language_of(source.language_path)
            found = extract_functions(source.data, source.display, language)
            bar.update(1)
            for function in found.functions:
                counts["functions_read"] += 1
                yield function.code
        bar.close()
        counts["files"] = tally.files
        for reason, n in tally.skipped.items():
            counts[f"files skipped ({reason})"] = n
    from enstack.data.readers import read_source

    for data, path in datasets:
        for chunk in read_source(data, path):
            counts["functions_read"] += len(chunk.codes)
            yield from chunk.codes


def _dataset_files(config: Config) -> list[tuple[DataConfig, Path]]:
    """Each file of `pretrain.datasets`, with the reader config that reads it: a dataset is
    written as one of `data.sources` (a file, a directory of the format's files, a glob)."""
    from pydantic import ValidationError

    from enstack.data.prepare import source_files

    out = []
    for index, source in enumerate(config.pretrain.datasets):
        try:
            data = DataConfig.model_validate({"labels": config.data.labels, **source})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UserError(f"pretrain.datasets[{index}]: {first['msg']}") from None
        for path in (data.path, data.train, data.val, data.test):
            if path is not None:
                out += [(data, file) for file in source_files(Path(path), data.format)]
    return out


def _report(manifest: dict) -> None:
    rows = manifest["rows"]
    LOG.info(
        f"pretrain corpus: {rows['train']} train and {rows['val']} val functions from "
        f"{manifest.get('files', 0)} files; dropped {manifest.get('duplicates', 0)} duplicates "
        f"and {manifest.get('contaminated', 0)} functions of the fine-tuning val/test splits"
    )
