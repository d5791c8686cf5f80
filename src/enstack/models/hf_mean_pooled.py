"""Hugging Face code for a mean-pooled (UniXcoder) enstack export, copied into the export as
`modeling_enstack_mean.py`; it imports only torch and transformers.

Why it exists: `AutoModelForSequenceClassification` would read a RoBERTa export as CLS-pooled
and give other answers without a word. So a mean-pooled export declares its own model type,
which transformers refuses to load unless asked to run this file
(`trust_remote_code=True`); then it loads these classes and answers as enstack does. enstack
itself never runs this file: its loader maps the type back to the encoder's
(`enstack.models.loading.read_hf_config`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "enstack-mean-pooled"


class EnstackMeanPooledConfig(PretrainedConfig):
    """The encoder's own settings plus `encoder_model_type` (e.g. "roberta")."""

    model_type = MODEL_TYPE

    def __init__(self, encoder_model_type: str = "roberta", **kwargs) -> None:
        self.encoder_model_type = encoder_model_type
        super().__init__(**kwargs)

    def encoder_config(self) -> PretrainedConfig:
        settings = self.to_dict()
        for key in ("model_type", "encoder_model_type", "auto_map", "architectures"):
            settings.pop(key, None)
        return AutoConfig.for_model(self.encoder_model_type, **settings)


class EnstackMeanPooledForSequenceClassification(PreTrainedModel):
    """Encoder, mask-weighted mean of the last hidden states, RoBERTa-style head; weights
    named as enstack writes them (`<encoder prefix>.*`, `classifier.dense`, `.out_proj`)."""

    config_class = EnstackMeanPooledConfig

    def __init__(self, config: EnstackMeanPooledConfig) -> None:
        super().__init__(config)
        inner = config.encoder_config()
        kwargs = {"add_pooling_layer": False} if inner.model_type in {"roberta", "bert"} else {}
        encoder = AutoModel.from_config(inner, **kwargs)
        self.prefix = encoder.base_model_prefix or "encoder"
        setattr(self, self.prefix, encoder)
        dropout = getattr(inner, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(inner, "hidden_dropout_prob", 0.1)
        self.classifier = nn.Module()
        self.classifier.dense = nn.Linear(inner.hidden_size, inner.hidden_size)
        self.classifier.dropout = nn.Dropout(dropout)
        self.classifier.out_proj = nn.Linear(inner.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoder = getattr(self, self.prefix)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        head = self.classifier
        x = torch.tanh(head.dense(head.dropout(pooled)))
        logits = head.out_proj(head.dropout(x))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
