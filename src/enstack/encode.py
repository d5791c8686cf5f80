"""Tokenise each split once per (tokenizer, data, max_length, input format), cached on disk.

Each split is stored as one flat int32 token array plus row offsets (safetensors), so a batch
is a slice and a pad, and nothing is tokenised twice: not across epochs, not on resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from enstack.errors import UserError
from enstack.fsutil import sha256_file, sha256_json, staged_dir
from enstack.labels import SPLITS
from enstack.models.families import FAMILIES
from enstack.progress import progress_bar

ENCODE_VERSION = 1
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "vocab.txt",
)


@dataclass
class EncodedSplit:
    tokens: torch.Tensor  # int32, all rows concatenated
    offsets: torch.Tensor  # int64, len(rows) + 1
    labels: torch.Tensor  # int64
    pad_id: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return (self.offsets[1:] - self.offsets[:-1]).numpy()

    def subset(self, rows: np.ndarray) -> EncodedSplit:
        """The given rows as a split of their own (for sharding evaluation across ranks)."""
        pieces = [self.tokens[self.offsets[r] : self.offsets[r + 1]] for r in rows.tolist()]
        lengths = torch.tensor([len(p) for p in pieces], dtype=torch.long)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        tokens = torch.cat(pieces) if pieces else self.tokens[:0]
        return EncodedSplit(tokens, offsets, self.labels[torch.as_tensor(rows)], self.pad_id)

    def collate(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids padded to the longest row of the batch, the attention mask, the labels."""
        starts = self.offsets[rows].tolist()
        ends = self.offsets[rows + 1].tolist()
        width = max(e - s for s, e in zip(starts, ends, strict=True))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
            ids[i, : e - s] = self.tokens[s:e]
            mask[i, : e - s] = 1
        return ids, mask, self.labels[torch.as_tensor(rows)]


def encode_splits(
    data_dir: Path,
    manifest: dict,
    base_dir: Path,
    tokenizer,
    family: str,
    max_length: int,
    cache_root: Path,
    progress: bool | None = None,
) -> dict[str, EncodedSplit]:
    key = sha256_json(
        {
            "version": ENCODE_VERSION,
            "tokenizer": {
                n: sha256_file(base_dir / n) for n in TOKENIZER_FILES if (base_dir / n).is_file()
            },
            "data": manifest["data_fingerprint"],
            "max_length": max_length,
            "prefix": FAMILIES[family].prefix,
        }
    )[:20]
    cache = cache_root / key
    if not (cache / "meta.json").is_file():
        with staged_dir(cache) as tmp:
            for split in SPLITS:
                codes, labels = _read_split(data_dir / f"{split}.parquet")
                tokens, offsets = tokenize(codes, tokenizer, family, max_length, split, progress)
                save_file(
                    {
                        "tokens": tokens,
                        "offsets": offsets,
                        "labels": torch.as_tensor(labels, dtype=torch.long),
                    },
                    str(tmp / f"{split}.safetensors"),
                )
            (tmp / "meta.json").write_text(json.dumps({"max_length": max_length}) + "\n")
    out = {}
    for split in SPLITS:
        t = load_file(str(cache / f"{split}.safetensors"))
        out[split] = EncodedSplit(t["tokens"], t["offsets"], t["labels"], pad_id(tokenizer))
    return out


def _read_split(path: Path) -> tuple[list[str], list[int]]:
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


def tokenize(
    codes: list[str],
    tokenizer,
    family: str,
    max_length: int,
    split: str = "",
    progress: bool | None = None,
    batch: int = 2000,
) -> tuple[torch.Tensor, torch.Tensor]:
    head, tail = special_ids(tokenizer, family)
    room = max_length - len(head) - len(tail)
    pieces: list[np.ndarray] = []
    lengths = np.zeros(len(codes), dtype=np.int64)
    bar = progress_bar(
        enabled=progress,
        total=len(codes),
        desc=f"tokenising {split}",
        unit=" rows",
        leave=False,
    )
    for start in range(0, len(codes), batch):
        encoded = tokenizer(
            codes[start : start + batch], add_special_tokens=False, truncation=True, max_length=room
        )["input_ids"]
        for i, ids in enumerate(encoded):
            row = np.asarray(head + ids + tail, dtype=np.int32)
            pieces.append(row)
            lengths[start + i] = len(row)
        bar.update(len(encoded))
    bar.close()
    offsets = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    return torch.from_numpy(flat), torch.from_numpy(offsets)
