"""Tokenise each split once per (tokenizer, data, max_length, input format), cached on disk.

Each split is stored as one flat int32 token array plus row offsets (safetensors), so a batch
is a slice and a pad, and nothing is tokenised twice: not across epochs, not on resume.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from enstack import log, versions
from enstack.csyntax.dataflow import parse_function, row_graph
from enstack.data.record import TrainingData
from enstack.errors import UserError
from enstack.fsutil import sha256_file, sha256_json, staged_dir
from enstack.labels import SPLITS
from enstack.progress import progress_bar
from enstack.registries.families import FAMILIES
from enstack.windows import scoring_rows, training_rows

LOG = log.get(__name__)
T = TypeVar("T")

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "vocab.txt",
)


class ModelInputs(NamedTuple):
    """What a classifier's forward takes. Without a graph: ids and a (batch, width) padding
    mask. With GraphCodeBERT's data-flow graph: a (batch, width, width) mask of who attends to
    whom, and position ids (graph nodes at 0, padding at 1, code from 2, as pre-training had)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None

    def to(self, device: torch.device, non_blocking: bool = False) -> ModelInputs:
        return ModelInputs(
            *(None if t is None else t.to(device, non_blocking=non_blocking) for t in self)
        )


GRAPH_KEYS = ("node_spans", "node_offsets", "edges", "edge_offsets")


@dataclass
class EncodedSplit:
    tokens: torch.Tensor  # int32, all rows concatenated
    offsets: torch.Tensor  # int64, len(rows) + 1
    labels: torch.Tensor  # int64
    pad_id: int
    # With a data-flow graph: each row's nodes (subword spans [start, end) in the row, int32
    # (n, 2)) and edges ((node, node it reads) by the row's node index, int32 (m, 2)), flat,
    # with per-row offsets like the tokens, and `code_start` (the tokens before the code:
    # <s> and any family prefix). None without one.
    graph: dict[str, torch.Tensor] | None = None
    # Rows that are windows of longer functions (`training.long_functions: windows`): the
    # function each row belongs to, int64, non-decreasing; None when a row is a function.
    owner: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def functions(self) -> int:
        """The functions its rows belong to: one per row, unless rows are windows."""
        if self.owner is None or not len(self.owner):
            return len(self)
        return int(self.owner[-1]) + 1

    @property
    def lengths(self) -> np.ndarray:
        """Each row's width in a batch: its code tokens, plus its graph nodes."""
        code = (self.offsets[1:] - self.offsets[:-1]).numpy()
        if self.graph is None:
            return code
        nodes = self.graph["node_offsets"]
        return code + (nodes[1:] - nodes[:-1]).numpy()

    def subset(self, rows: np.ndarray) -> EncodedSplit:
        """The given rows as a split of their own (for sharding evaluation across ranks)."""
        tokens, offsets = _take(self.tokens, self.offsets, rows)
        graph = None
        if self.graph is not None:
            g = self.graph
            spans, node_offsets = _take(g["node_spans"], g["node_offsets"], rows)
            edges, edge_offsets = _take(g["edges"], g["edge_offsets"], rows)
            graph = dict(zip(GRAPH_KEYS, (spans, node_offsets, edges, edge_offsets), strict=True))
            graph["code_start"] = g["code_start"]
        labels = self.labels[torch.as_tensor(rows)]
        owner = self.owner[torch.as_tensor(rows)] if self.owner is not None else None
        return EncodedSplit(tokens, offsets, labels, self.pad_id, graph, owner)

    def collate(self, rows: np.ndarray) -> tuple[ModelInputs, torch.Tensor]:
        """The rows' inputs, padded to the longest row of the batch, and their labels."""
        labels = self.labels[torch.as_tensor(rows)]
        if self.graph is not None:
            return self._collate_graph(rows), labels
        return padded_rows(self.tokens, self.offsets, rows, self.pad_id), labels

    def _collate_graph(self, rows: np.ndarray) -> ModelInputs:
        """GraphCodeBERT's input: each row's code, then one position per graph node, then
        padding; the graph-guided attention mask: code with code, `<s>` and `</s>` with
        everything, each node with its subwords both ways, each node with the nodes it reads.
        """
        g = self.graph
        index = torch.as_tensor(rows)
        code = self.offsets[index + 1] - self.offsets[index]
        nodes = g["node_offsets"][index + 1] - g["node_offsets"][index]
        width = int((code + nodes).max())  # these rows only: this runs for every batch
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        positions = torch.ones((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width, width), dtype=torch.bool)
        for i, row in enumerate(rows.tolist()):
            code = self.tokens[self.offsets[row] : self.offsets[row + 1]]
            spans = g["node_spans"][g["node_offsets"][row] : g["node_offsets"][row + 1]]
            edges = g["edges"][g["edge_offsets"][row] : g["edge_offsets"][row + 1]]
            n_code, n_nodes = len(code), len(spans)
            real = n_code + n_nodes
            ids[i, :n_code] = code
            positions[i, :n_code] = torch.arange(2, n_code + 2)
            positions[i, n_code:real] = 0
            mask[i, :n_code, :n_code] = True
            columns = torch.arange(n_code)
            own = (columns >= spans[:, :1]) & (columns < spans[:, 1:])  # (nodes, code)
            mask[i, n_code:real, :n_code] = own
            mask[i, :n_code, n_code:real] = own.T
            edges = edges.long()
            mask[i, n_code + edges[:, 0], n_code + edges[:, 1]] = True
            for special in (*range(int(g["code_start"])), n_code - 1):  # <s> [prefix], </s>
                mask[i, special, :real] = True
        return ModelInputs(ids, mask, positions)


def padded_rows(
    tokens: torch.Tensor, offsets: torch.Tensor, rows: np.ndarray, pad: int
) -> ModelInputs:
    """Rows `rows` of a flat token array with row offsets, padded to the longest of them."""
    index = torch.as_tensor(rows)
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    # one gather for the whole batch rather than a copy per row: 3.5 ms against 18 ms for
    # the 22 batches of the Juliet scan fixture's 1,647 functions (a small share of a scan)
    columns = torch.arange(int(lengths.max()))
    mask = columns < lengths[:, None]
    where = (starts[:, None] + columns).clamp(max=max(len(tokens) - 1, 0))
    ids = torch.where(mask, tokens[where].long(), pad)
    return ModelInputs(ids, mask.long())


def _take(flat: torch.Tensor, offsets: torch.Tensor, rows: np.ndarray):
    """Rows `rows` of a flat array with row offsets, as a flat array and offsets of their own."""
    pieces = [flat[offsets[r] : offsets[r + 1]] for r in rows.tolist()]
    lengths = torch.tensor([len(p) for p in pieces], dtype=torch.long)
    out_offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
    out_offsets[1:] = torch.cumsum(lengths, 0)
    return (torch.cat(pieces) if pieces else flat[:0]), out_offsets


def tokenizer_digest(base_dir: Path) -> dict[str, str]:
    """The sha256 of each tokenizer file in `base_dir`: part of every token cache's key."""
    return {n: sha256_file(base_dir / n) for n in TOKENIZER_FILES if (base_dir / n).is_file()}


def token_cache(cache: Path, read: Callable[[Path], T | None], write: Callable[[Path], None]) -> T:
    """What `cache` holds (`read`), where it is whole; else written afresh by `write` into a
    staged directory that replaces it, then read. A cache is derived data: a damaged one is
    said so and redone, never a traceback."""
    if (cache / "meta.json").is_file():
        cached = read(cache)
        if cached is not None:
            return cached
        LOG.warning(f"{cache}: token cache damaged (stale): redone")
    with staged_dir(cache) as tmp:
        write(tmp)
    cached = read(cache)
    assert cached is not None, f"{cache}: just written, unreadable"
    return cached


def encode_splits(
    data_dir: Path,
    manifest: TrainingData,
    base_dir: Path,
    tokenizer,
    family: str,
    max_length: int,
    cache_root: Path,
    progress: bool | None = None,
    dfg_length: int = 0,
    long_functions: str = "truncate",
    benign_id: int | None = None,
) -> dict[str, EncodedSplit]:
    """Every split encoded (with its data-flow graphs when `dfg_length` > 0), from the cache
    when this tokenizer, data, length, input format and graph extractor made it before.
    `long_functions: windows`: a long function's rows are its windows (enstack.windows:
    `training_rows` for train, `scoring_rows` for val and test), each split with its owners."""
    windows = long_functions == "windows"
    key = sha256_json(
        {
            "version": versions.TOKEN_ROWS,
            "tokenizer": tokenizer_digest(base_dir),
            "data": manifest.data_fingerprint,
            "max_length": max_length,
            "prefix": FAMILIES[family].prefix,
            # added later, only when on: caches without a graph keep their key
            **({"dfg": [dfg_length, versions.DATAFLOW_GRAPHS]} if dfg_length else {}),
            # added later, only when on: truncated caches keep their key
            **(
                {"windows": [versions.WINDOWS, versions.LINE_RANKING, benign_id]} if windows else {}
            ),
        }
    )[:20]

    def write(tmp: Path) -> None:
        for split in SPLITS:
            codes, labels = read_split(data_dir / f"{split}.parquet")
            owner = None
            if windows:
                room = code_room(tokenizer, family, max_length)
                rows = _window_rows(data_dir, split, codes, labels, tokenizer, room, benign_id)
                codes, labels, owner = rows.texts, rows.labels, torch.from_numpy(rows.owner)
            tokens, offsets, graph = tokenize(
                codes, tokenizer, family, max_length, split, progress, dfg_length=dfg_length
            )
            arrays = {
                "tokens": tokens,
                "offsets": offsets,
                "labels": torch.as_tensor(labels, dtype=torch.long),
                **{f"graph.{k}": v for k, v in (graph or {}).items()},
                **({"owner": owner} if owner is not None else {}),
            }
            save_file(arrays, str(tmp / f"{split}.safetensors"))
        (tmp / "meta.json").write_text(json.dumps({"max_length": max_length}) + "\n")

    pad = pad_id(tokenizer)
    return token_cache(cache_root / key, lambda cache: _read_cache(cache, pad), write)


def _read_cache(cache: Path, pad: int) -> dict[str, EncodedSplit] | None:
    """The cached splits, or None where a file is damaged or its arrays do not fit together
    (a cache is derived data: damage means redo it, never a traceback)."""
    out = {}
    for split in SPLITS:
        try:
            t = load_file(str(cache / f"{split}.safetensors"))
            tokens, offsets, labels = t["tokens"], t["offsets"], t["labels"]
        except (OSError, KeyError, SafetensorError):
            return None
        rows = len(labels)
        if offsets.ndim != 1 or len(offsets) != rows + 1 or int(offsets[-1]) != len(tokens):
            return None
        if rows and bool((offsets[1:] < offsets[:-1]).any()):
            return None
        graph = {k.removeprefix("graph."): v for k, v in t.items() if k.startswith("graph.")}
        owner = t.get("owner")
        if owner is not None and not _owners_fit(owner, rows):
            return None
        out[split] = EncodedSplit(tokens, offsets, labels, pad, graph or None, owner)
    return out


def _owners_fit(owner: torch.Tensor, rows: int) -> bool:
    """One owner per row, from function 0, each the same as the last row's or the next."""
    if owner.ndim != 1 or len(owner) != rows or owner.dtype != torch.long:
        return False
    if not rows:
        return True
    steps = owner[1:] - owner[:-1]
    return int(owner[0]) == 0 and bool(((steps == 0) | (steps == 1)).all())


def _window_rows(data_dir: Path, split: str, codes, labels, tokenizer, room, benign_id):
    """The split's rows over windows: training's choice of windows for train (with its pairs,
    where the data has them), every window for val and test."""
    if split != "train":
        return scoring_rows(codes, labels, tokenizer, room)
    path = data_dir / f"{split}.parquet"
    has_pairs = "pair" in pq.read_schema(path).names
    pairs = pq.read_table(path, columns=["pair"]).column("pair").to_pylist() if has_pairs else None
    rows = training_rows(codes, labels, pairs, tokenizer, room, benign_id)
    if rows.placed or rows.first_window:
        LOG.info(
            f"train: long functions of fix pairs trained on the windows where the pair differs: "
            f"{rows.placed}; on their first window (no difference to place, or no fix): "
            f"{rows.first_window}"
        )
    return rows


def read_split(path: Path) -> tuple[list[str], list[int]]:
    """A prepared split's code and class ids, in row order."""
    table = pq.read_table(path, columns=["code", "label"])
    return table.column("code").to_pylist(), table.column("label").to_pylist()


def pad_id(tokenizer) -> int:
    """The id batches are padded with (0 for a tokenizer that names none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def special_ids(tokenizer, family: str) -> tuple[list[int], list[int]]:
    """Ids that go before and after the code: `<s> [prefix]` and `</s>`."""
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls is None or sep is None:
        raise UserError("the tokenizer has no <s>/<cls> or </s>/<sep> token")
    prefix = []
    for token in FAMILIES[family].prefix:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise UserError(f"the tokenizer has no {token!r} token, which {family} input needs")
        prefix.append(token_id)
    return [cls, *prefix], [sep]


def code_room(tokenizer, family: str, max_length: int) -> int:
    """Tokens of code one row holds: `max_length` less the family's framing tokens."""
    head, tail = special_ids(tokenizer, family)
    return max_length - len(head) - len(tail)


def encode_texts(
    texts: list[str],
    tokenizer,
    family: str,
    max_length: int,
    dfg_length: int = 0,
    labels: torch.Tensor | None = None,
) -> EncodedSplit:
    """Texts encoded as a model reads them (no cache, no progress): a scan's functions, the
    windows of long ones. `labels`: one per text, zeros when there are none."""
    tokens, offsets, graph = tokenize(
        texts, tokenizer, family, max_length, progress=False, dfg_length=dfg_length
    )
    if labels is None:
        labels = torch.zeros(len(texts), dtype=torch.long)
    return EncodedSplit(tokens, offsets, labels, pad_id(tokenizer), graph)


def tokenize(
    codes: list[str],
    tokenizer,
    family: str,
    max_length: int,
    split: str = "",
    progress: bool | None = None,
    batch: int = 2000,
    dfg_length: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
    """Flat token ids and row offsets; with `dfg_length` > 0, each row's data-flow graph (at
    most that many nodes) tied to its subwords, as `EncodedSplit.graph` holds it."""
    head, tail = special_ids(tokenizer, family)
    room = code_room(tokenizer, family, max_length)
    if dfg_length and not getattr(tokenizer, "is_fast", False):
        raise UserError("a data-flow graph needs a fast tokenizer (tokenizer.json), for offsets")
    pieces: list[np.ndarray] = []
    graphs: list = []
    lengths = np.zeros(len(codes), dtype=np.int64)
    bar = progress_bar(
        enabled=progress,
        total=len(codes),
        desc=f"tokenising {split}" + (" and graphs" if dfg_length else ""),
        unit=" rows",
        leave=False,
    )
    for start in range(0, len(codes), batch):
        chunk = codes[start : start + batch]
        encoded = tokenizer(
            chunk,
            add_special_tokens=False,
            truncation=True,
            max_length=room,
            return_offsets_mapping=bool(dfg_length),
        )
        for i, ids in enumerate(encoded["input_ids"]):
            row = np.asarray(head + ids + tail, dtype=np.int32)
            pieces.append(row)
            lengths[start + i] = len(row)
            if dfg_length:
                flow = parse_function(chunk[i])
                offsets = encoded["offset_mapping"][i]
                graphs.append(row_graph(flow, chunk[i], offsets, len(head), dfg_length))
        bar.update(len(chunk))
    bar.close()
    offsets = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    graph = _graph_arrays(graphs, len(head)) if dfg_length else None
    return torch.from_numpy(flat), torch.from_numpy(offsets), graph


def _graph_arrays(graphs: list, code_start: int) -> dict[str, torch.Tensor]:
    def flat(items: list[list[tuple[int, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = np.array([len(x) for x in items], dtype=np.int64)
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        pairs = [pair for x in items for pair in x]
        array = np.asarray(pairs, dtype=np.int32).reshape(-1, 2)
        return torch.from_numpy(array), torch.from_numpy(offsets)

    spans, node_offsets = flat([g.spans for g in graphs])
    edges, edge_offsets = flat([g.edges for g in graphs])
    values = (spans, node_offsets, edges, edge_offsets)
    return {**dict(zip(GRAPH_KEYS, values, strict=True)), "code_start": torch.tensor(code_start)}
