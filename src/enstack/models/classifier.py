"""The sequence classifier: a Hugging Face encoder, a pooling step, and a RoBERTa-style head.

Weights are named as in `RobertaForSequenceClassification` (`<base prefix>.*` for the encoder,
`classifier.dense` / `classifier.out_proj` for the head), so an export of a RoBERTa-family model
with CLS pooling loads unchanged with `AutoModelForSequenceClassification`, and any export
loads its encoder with `AutoModel`. Mean pooling (UniXcoder) needs `load_classifier`.
"""

from __future__ import annotations

import pickle
import warnings

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel, PretrainedConfig

from enstack.errors import UserError


class ClassificationHead(nn.Module):
    def __init__(self, hidden: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden, n_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.dropout(pooled)
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, config: PretrainedConfig, pooling: str) -> None:
        super().__init__()
        self.base_prefix = encoder.base_model_prefix or "encoder"
        setattr(self, self.base_prefix, encoder)
        self.config = config
        self.pooling = pooling
        dropout = getattr(config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(config, "hidden_dropout_prob", 0.1)
        self.classifier = ClassificationHead(config.hidden_size, config.num_labels, dropout)

    @property
    def encoder_module(self) -> nn.Module:
        return getattr(self, self.base_prefix)

    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pooled sequence embedding: the first token, or the mask-weighted mean. With a
        (batch, width, width) mask, the input carries a data-flow graph (`encode.ModelInputs`)."""
        if attention_mask.dim() == 3:
            return self._embed_graph(input_ids, attention_mask, position_ids)
        hidden = self.encoder_module(input_ids=input_ids, attention_mask=attention_mask)[0]
        return self.pool(hidden, attention_mask)

    def _embed_graph(
        self, input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """GraphCodeBERT's reading: a graph node's input embedding is the mean of its
        subwords' embeddings; positions as given (nodes 0); attention only where `mask`
        allows, passed to the encoder as a 4D additive mask."""
        assert position_ids is not None, "a graph input needs its position ids"
        embeddings = self.encoder_module.get_input_embeddings()(input_ids)
        nodes, code = position_ids.eq(0), position_ids.ge(2)
        node_to_code = (nodes[:, :, None] & code[:, None, :] & mask).to(embeddings.dtype)
        node_to_code = node_to_code / (node_to_code.sum(-1, keepdim=True) + 1e-10)
        means = torch.einsum("bnt,btd->bnd", node_to_code, embeddings)
        embeddings = torch.where(nodes[:, :, None], means, embeddings)
        # a large negative, not -inf: a padding row that sees nothing gets a uniform softmax
        blocked = torch.finfo(embeddings.dtype).min
        additive = (~mask)[:, None].to(embeddings.dtype) * blocked
        hidden = self.encoder_module(
            inputs_embeds=embeddings, attention_mask=additive, position_ids=position_ids
        )[0]
        return self.pool(hidden, code.long())

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per sequence from the encoder's last hidden states."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.classifier(self.embed(input_ids, attention_mask, position_ids))


def build_encoder(config: PretrainedConfig, weights_dir: str | None) -> nn.Module:
    """The encoder without its pooler (unused by the head, and it would get no gradient)."""
    kwargs = {"add_pooling_layer": False} if config.model_type in {"roberta", "bert"} else {}
    if weights_dir is None:
        return AutoModel.from_config(config, **kwargs)
    try:
        with warnings.catch_warnings():  # its notes on pickle protocols, before a refusal
            warnings.filterwarnings("ignore", module="torch._weights_only_unpickler")
            encoder, info = AutoModel.from_pretrained(
                weights_dir, config=config, output_loading_info=True, **kwargs
            )
    except pickle.UnpicklingError:
        # torch's weights-only loader refused a pytorch_model.bin (no code ran): its advice
        # to load it with weights_only=False is exactly what must not be done here
        raise UserError(
            f"{weights_dir}: its pytorch_model.bin is a pickle holding more than tensors; "
            "refused by torch's weights-only loader (nothing in it ran). Use a "
            "model.safetensors of the weights instead"
        ) from None
    except (OSError, ValueError, RuntimeError, EOFError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__  # a truncated file
        raise UserError(f"{weights_dir}: cannot read its weights ({reason})") from None
    # strict: a tensor the architecture expects but the file lacks (a damaged or renamed
    # entry) would silently start from random weights. Extra tensors are fine: an MLM or
    # classification head, or a pooler, that the encoder does not use.
    missing = list(info.get("missing_keys") or []) + list(info.get("mismatched_keys") or [])
    if missing:
        raise UserError(
            f"{weights_dir}: the weights lack {len(missing)} tensor(s) the {config.model_type} "
            f"encoder needs (first: {missing[0]}); the file is damaged or for another model"
        )
    return encoder
