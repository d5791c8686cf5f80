"""The corpus as masked-language rows: every window of every function, tokenised once.

Each split is written as it is tokenised (a flat int32 file of token ids and row offsets)
and read back memory-mapped, so a corpus larger than memory trains from disk. A function
longer than a row is read in windows cut at statement boundaries (`enstack.windows`), as
the scanner reads it. Masking happens per batch, from a generator seeded by the step
(`mask_tokens`): the same step masks the same tokens after a resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq
import torch

from enstack import log, versions
from enstack.encode import (
    ModelInputs,
    code_room,
    pad_id,
    padded_rows,
    special_ids,
    token_cache,
    tokenize,
    tokenizer_digest,
)
from enstack.fsutil import sha256_json
from enstack.progress import progress_bar
from enstack.registries.families import FAMILIES
from enstack.windows import expand

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

READ_BATCH = 2000  # functions tokenised at a time
SPLITS = ("train", "val")
IGNORED = -100  # the label of a position the loss skips (transformers' convention)

LOG = log.get(__name__)


@dataclass
class MaskedSplit:
    """Rows of token ids (each framed `<s> [prefix] code </s>`), flat, with row offsets."""

    tokens: torch.Tensor  # int32, all rows concatenated (memory-mapped)
    offsets: torch.Tensor  # int64, len(rows) + 1
    functions: int  # the functions the rows are windows of
    pad_id: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return (self.offsets[1:] - self.offsets[:-1]).numpy()

    @property
    def token_count(self) -> int:
        return int(self.offsets[-1])

    def collate(self, rows: np.ndarray) -> ModelInputs:
        """The rows padded to the longest of them."""
        return padded_rows(self.tokens, self.offsets, rows, self.pad_id)


@dataclass(frozen=True)
class Masking:
    """BERT's rule: `probability` of the code tokens are predicted; of those, 80% read as
    `<mask>`, 10% as a random token, 10% as themselves. Framing tokens are never masked."""

    probability: float
    mask_id: int
    vocab_size: int
    special: torch.Tensor  # ids never masked: <s>, </s>, padding, the family's prefix

    @classmethod
    def of(
        cls, tokenizer: PreTrainedTokenizerBase, family: str, probability: float, vocab_size: int
    ) -> Masking:
        head, tail = special_ids(tokenizer, family)
        special = torch.tensor(sorted({*head, *tail, pad_id(tokenizer)}), dtype=torch.long)
        return cls(probability, tokenizer.mask_token_id, vocab_size, special)


def mask_tokens(
    inputs: ModelInputs, masking: Masking, generator: torch.Generator
) -> tuple[ModelInputs, torch.Tensor]:
    """`inputs` with tokens masked, and the labels: the original id where a token is to be
    predicted, IGNORED elsewhere. A row too short to draw a token gets its first code token."""
    ids = inputs.input_ids
    eligible = ~torch.isin(ids, masking.special) & inputs.attention_mask.bool()
    draw = torch.rand(ids.shape, generator=generator)
    chosen = eligible & (draw < masking.probability)
    # every row predicts at least one token, so no batch has a loss over nothing
    empty = ~chosen.any(1) & eligible.any(1)
    if bool(empty.any()):
        first = eligible.float().argmax(1)
        chosen[empty, first[empty]] = True
    labels = torch.where(chosen, ids, IGNORED)
    how = torch.rand(ids.shape, generator=generator)
    masked = ids.clone()
    masked[chosen & (how < 0.8)] = masking.mask_id
    randomised = chosen & (how >= 0.8) & (how < 0.9)
    random_ids = torch.randint(masking.vocab_size, ids.shape, generator=generator)
    masked[randomised] = random_ids[randomised]
    return ModelInputs(masked, inputs.attention_mask), labels


def step_generator(seed: int, global_step: int, micro: int) -> torch.Generator:
    """The masking draws of one micro-batch: a pure function of the run's seed and where the
    batch is, so a resumed run masks exactly as the uninterrupted one did."""
    key = int(sha256_json({"seed": seed, "step": global_step, "micro": micro})[:15], 16)
    return torch.Generator().manual_seed(key)


def encode_corpus(
    data_dir: Path,
    data_fingerprint: str,
    base_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    family: str,
    max_length: int,
    cache_root: Path,
    progress: bool | None = None,
) -> dict[str, MaskedSplit]:
    """Each split's rows, from the cache when this tokenizer, corpus and length made them."""
    key = sha256_json(
        {
            "version": versions.PRETRAIN_TOKENS,
            "windows": versions.WINDOWS,
            "tokenizer": tokenizer_digest(base_dir),
            "data": data_fingerprint,
            "max_length": max_length,
            "prefix": FAMILIES[family].prefix,
        }
    )[:20]

    def write(tmp: Path) -> None:
        meta = {}
        for split in SPLITS:
            path = data_dir / f"{split}.parquet"
            meta[split] = _write_rows(path, tmp, split, tokenizer, family, max_length, progress)
        (tmp / "meta.json").write_text(json.dumps(meta) + "\n")

    pad = pad_id(tokenizer)
    return token_cache(cache_root / key, lambda cache: _read_cache(cache, pad), write)


def _read_cache(cache: Path, pad: int) -> dict[str, MaskedSplit] | None:
    """Both splits' rows, or None where a file is missing, damaged, or does not fit the
    others (a cache is derived data: damage means redo it, never a traceback)."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        return {split: _read_rows(cache, split, int(meta[split]["functions"]), pad)
                for split in SPLITS}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_rows(
    path: Path,
    out: Path,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    family: str,
    max_length: int,
    progress: bool | None,
) -> dict:
    """Tokenise `path`'s functions batch by batch, appending to `SPLIT.tokens`; the offsets
    (one int64 per row) are kept until the end."""
    room = code_room(tokenizer, family, max_length)
    parquet = pq.ParquetFile(path)
    lengths: list[np.ndarray] = []
    functions = 0
    bar = progress_bar(
        enabled=progress, total=parquet.metadata.num_rows, desc=f"tokenising {split}",
        unit=" functions", leave=False,
    )  # fmt: skip
    with open(out / f"{split}.tokens", "wb") as sink:
        for batch in parquet.iter_batches(batch_size=READ_BATCH, columns=["code"]):
            codes = batch.column(0).to_pylist()
            windows = [w.text for w in expand(codes, tokenizer, room, "windows").windows]
            flat, row_offsets, _ = tokenize(windows, tokenizer, family, max_length)
            sink.write(flat.numpy().astype(np.int32).tobytes())
            lengths.append(np.diff(row_offsets.numpy()))
            functions += len(codes)
            bar.update(len(codes))
    bar.close()
    sizes = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    np.save(out / f"{split}.offsets.npy", offsets)
    return {"functions": functions, "rows": len(sizes), "tokens": int(offsets[-1])}


def _read_rows(cache: Path, split: str, functions: int, pad: int) -> MaskedSplit:
    """One split's rows; ValueError where its files do not fit together."""
    offsets = torch.from_numpy(np.load(cache / f"{split}.offsets.npy", allow_pickle=False))
    n_tokens = int(offsets[-1])
    rows = offsets[1:] - offsets[:-1]
    if offsets.ndim != 1 or int(offsets[0]) != 0 or bool((rows < 0).any()):
        raise ValueError(f"{split}: offsets out of order")
    if (cache / f"{split}.tokens").stat().st_size != 4 * n_tokens:
        raise ValueError(f"{split}: tokens and offsets disagree")
    if n_tokens:
        # copy-on-write: pages are read from disk as batches touch them, never written back
        flat = np.memmap(cache / f"{split}.tokens", dtype=np.int32, mode="c", shape=(n_tokens,))
        tokens = torch.from_numpy(flat)
    else:
        tokens = torch.zeros(0, dtype=torch.int32)
    return MaskedSplit(tokens, offsets, functions, pad)
