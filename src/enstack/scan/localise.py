"""Which lines of a flagged function hold its flaw.

`learned` (the default when the bundle has one): the line ranker `enstack stack` fitted on the
training data's fix pairs (see enstack.lines), given the finding's class.
Three attribution methods, for any model:
- `attention` (as LineVul does): the attention each token receives, summed over the layers,
  heads and query positions of the encoder, then summed per line.
- `gradient`: integrated gradients of the model's target probability with respect to the
  token embeddings (a straight path from an all-padding input, `steps` points), summed over
  the embedding dimensions and per line; only positive contributions count toward a line.
- `occlusion`: how much the target probability falls when one line's tokens are masked out,
  every line at once in batched forward passes. It asks the model the question localisation
  asks (would it still call this vulnerable without the line?) rather than reading internals.
The target is P(vulnerable) = 1 - P(benign) with a benign class, else the predicted class.
For an ensemble, each base model's line scores are normalised to sum to 1 and averaged.
Every method ranks statement lines only: not the signature, braces or preprocessor lines.
"""

from __future__ import annotations

import numpy as np
import torch

from enstack.csyntax.statements import statement_spans
from enstack.encode import pad_id, special_ids
from enstack.infer import predict
from enstack.scan.model import BaseModel, ScanModel
from enstack.windows import Window, expand

OCCLUSION_BATCH = 32


def rank_lines(
    scan_model: ScanModel,
    code: str,
    first_line: int,
    target_class: int,
    method: str,
    steps: int = 16,
) -> list[tuple[int, float]]:
    """(line number in the file, score) for the function's lines, best first; scores sum to 1."""
    if method == "learned":
        shares = scan_model.line_ranker.rank(code, scan_model.labels[target_class])
        return _best_first({first_line + line: value for line, value in shares.items()})
    # each line of a statement counts toward the statement's first line
    statement_of = {
        first_line + line: first_line + head
        for head, span in statement_spans(code).items()
        for line in span
    }
    total: dict[int, float] = {}
    for model in scan_model.models:
        window = _driving_window(scan_model, model, code, target_class)
        ids, lines = _encode_with_lines(model, window.text, first_line + window.first_line)
        # tokens of other lines (signature, braces, directives) still feed the model, but are
        # neither summed nor occluded
        lines = np.asarray([statement_of.get(line, -1) for line in lines.tolist()])
        if not len(lines):
            continue
        if method == "occlusion":
            per_line = _occlusion(model, ids, lines, scan_model, target_class)
        elif method == "attention":
            per_line = _sum_by_line(_attention(model, ids, scan_model.device), lines)
        else:
            scores = _integrated_gradients(
                model, ids, scan_model.device, scan_model.benign_id, target_class, steps
            )
            per_line = _sum_by_line(scores, lines)
        norm = sum(per_line.values())
        for line, value in per_line.items():
            total[line] = total.get(line, 0.0) + (value / norm if norm > 0 else 0.0)
    count = max(len(scan_model.models), 1)
    return _best_first({line: value / count for line, value in total.items()})


def _driving_window(scan_model: ScanModel, model: BaseModel, code: str, target: int) -> Window:
    """The window of a long function this model finds most vulnerable (or most the target
    class, without a benign one): the lines of a finding are ranked where its score came
    from. A function of one window is that window."""
    windows = expand([code], model.tokenizer, model.room, scan_model.long_functions).windows
    if len(windows) == 1:
        return windows[0]
    split = model.encode([w.text for w in windows])
    probs = predict(
        model.model, split, scan_model.batch_size, scan_model.device, "off", progress=False
    )["probs"]
    benign = scan_model.benign_id
    score = 1.0 - probs[:, benign] if benign is not None else probs[:, target]
    return windows[int(np.argmax(score))]


def _best_first(scores: dict[int, float]) -> list[tuple[int, float]]:
    """Highest score first; ties by line number, so a ranking is the same on every run."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _encode_with_lines(
    model: BaseModel, code: str, first_line: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Input ids as scoring builds them, and the file line of each code token (-1: special)."""
    head, tail = special_ids(model.tokenizer, model.family)
    encoded = model.tokenizer(
        code,
        add_special_tokens=False,
        truncation=True,
        max_length=model.room,
        return_offsets_mapping=True,
    )
    newlines = np.cumsum([ch == "\n" for ch in code]) if code else np.zeros(0, int)
    token_lines = [
        first_line + (int(newlines[start - 1]) if start > 0 else 0)
        for start, _ in encoded["offset_mapping"]
    ]
    ids = torch.tensor([head + encoded["input_ids"] + tail])
    lines = np.asarray([-1] * len(head) + token_lines + [-1] * len(tail))
    return ids, lines


def _sum_by_line(scores: np.ndarray, lines: np.ndarray) -> dict[int, float]:
    out: dict[int, float] = {}
    for score, line in zip(scores.tolist(), lines.tolist(), strict=True):
        if line >= 0:
            out[line] = out.get(line, 0.0) + max(score, 0.0)
    return out


def _target(probs: torch.Tensor, benign_id: int | None, target_class: int) -> torch.Tensor:
    return 1.0 - probs[:, benign_id] if benign_id is not None else probs[:, target_class]


def _occlusion(
    model: BaseModel, ids: torch.Tensor, lines: np.ndarray, scan_model: ScanModel, target: int
) -> dict[int, float]:
    """Per line: the fall in the target's log-odds when its tokens are masked (>= 0).

    Log-odds rather than probability: a confident model (P = 0.99) barely moves in probability
    whichever line goes, while its log-odds still say which line mattered most."""
    distinct = sorted({int(line) for line in lines.tolist() if line >= 0})
    masks = torch.ones((len(distinct) + 1, ids.shape[1]), dtype=torch.long)
    for row, line in enumerate(distinct, start=1):
        masks[row, torch.from_numpy(lines == line)] = 0  # row 0 is the whole function
    device = scan_model.device
    falls: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(masks), OCCLUSION_BATCH):
            chunk = masks[start : start + OCCLUSION_BATCH].to(device)
            batch = ids.to(device).expand(len(chunk), -1)
            logits = model.model(input_ids=batch, attention_mask=chunk)
            probs = torch.softmax(logits.float(), dim=1)
            p = _target(probs, scan_model.benign_id, target).clamp(1e-6, 1 - 1e-6)
            falls.extend(torch.logit(p).cpu().tolist())
    whole = falls[0]
    return {line: max(whole - value, 0.0) for line, value in zip(distinct, falls[1:], strict=True)}


def _attention(model: BaseModel, ids: torch.Tensor, device: torch.device) -> np.ndarray:
    encoder = model.model.encoder_module
    previous = encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")  # SDPA kernels do not return attention weights
    try:
        with torch.inference_mode():
            out = encoder(
                input_ids=ids.to(device),
                attention_mask=torch.ones_like(ids).to(device),
                output_attentions=True,
            )
    finally:
        encoder.set_attn_implementation(previous)
    # each layer: (1, heads, query, key); the attention a token receives is a column sum
    received = sum(layer[0].float().sum(dim=(0, 1)) for layer in out.attentions)
    return received.cpu().numpy()


def _integrated_gradients(
    model: BaseModel,
    ids: torch.Tensor,
    device: torch.device,
    benign_id: int | None,
    target_class: int,
    steps: int,
) -> np.ndarray:
    classifier = model.model
    embeddings = classifier.encoder_module.get_input_embeddings()
    ids = ids.to(device)
    with torch.no_grad():
        actual = embeddings(ids)[0]
        baseline = embeddings(torch.full_like(ids, pad_id(model.tokenizer)))[0]
    alphas = torch.linspace(1.0 / steps, 1.0, steps, device=device).view(-1, 1, 1)
    path = (baseline + alphas * (actual - baseline)).detach().requires_grad_(True)
    mask = torch.ones(path.shape[:2], dtype=torch.long, device=device)
    hidden = classifier.encoder_module(inputs_embeds=path, attention_mask=mask)[0]
    probs = torch.softmax(classifier.classifier(classifier.pool(hidden, mask)).float(), dim=1)
    target = _target(probs, benign_id, target_class)
    (grads,) = torch.autograd.grad(target.sum(), path)
    attribution = ((actual - baseline) * grads.mean(dim=0)).sum(dim=1)
    return attribution.detach().float().cpu().numpy()
