"""The report's figures (PNG): confusion matrices, ROC curves, t-SNE (Fig. 3), ablation (Fig. 4)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
from sklearn.manifold import TSNE
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from enstack.stack.meta import LABELS as META_LABELS


def confusion(path: Path, y: np.ndarray, probs: np.ndarray, labels: list[str], title: str):
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(
        y,
        probs.argmax(1),
        labels=range(len(labels)),
        display_labels=labels,
        ax=ax,
        colorbar=False,
        xticks_rotation=45,
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def roc(path: Path, y: np.ndarray, probs: np.ndarray, labels: list[str], title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, name in enumerate(labels):
        if (y == i).any() and (y != i).any():
            RocCurveDisplay.from_predictions(y == i, probs[:, i], name=name, ax=ax)
    ax.plot([0, 1], [0, 1], "k:", linewidth=1)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def precision_recall(
    path: Path, y: np.ndarray, curves: dict[str, np.ndarray], benign_id: int, title: str
) -> None:
    """Detection (vulnerable vs benign) precision-recall curves, scored by 1 - P(benign)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    truth = y != benign_id
    for name, probs in curves.items():
        PrecisionRecallDisplay.from_predictions(truth, 1.0 - probs[:, benign_id], name=name, ax=ax)
    ax.axhline(truth.mean(), color="k", linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tsne_pair(
    path: Path,
    y: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    titles: tuple[str, str],
    labels: list[str],
    seed: int,
    limit: int = 2000,
) -> None:
    """Fig. 3: a single model's embeddings beside the selected ensemble's meta-features."""
    rows = np.random.default_rng(seed).permutation(len(y))[:limit]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, data, title in zip(axes, (left, right), titles, strict=True):
        perplexity = max(2.0, min(30.0, (len(rows) - 1) / 3))
        points = TSNE(
            n_components=2, random_state=seed, perplexity=perplexity, init="pca"
        ).fit_transform(data[rows])
        for i, name in enumerate(labels):
            mask = y[rows] == i
            ax.scatter(points[mask, 0], points[mask, 1], s=6, label=name)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablation(path: Path, rows: list[dict], split: str = "test") -> None:
    """Fig. 4: F1 of every subset of base models under every meta-classifier."""
    stacked = [r for r in rows if r["meta"] and r["split"] == split]
    subsets = list(dict.fromkeys(" + ".join(r["models"]) for r in stacked))
    metas = list(dict.fromkeys(r["meta"] for r in stacked))
    width = 0.8 / max(len(metas), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(subsets)), 4.5))
    for j, meta in enumerate(metas):
        values = [  # NaN (no bar): soft voting over a single model is that model
            next(
                (r["f1"] for r in stacked if " + ".join(r["models"]) == s and r["meta"] == meta),
                np.nan,
            )
            for s in subsets
        ]
        ax.bar(np.arange(len(subsets)) + j * width, values, width, label=META_LABELS[meta])
    lows = [r["f1"] for r in stacked]
    ax.set_ylim(max(0.0, min(lows) - 0.05), min(1.0, max(lows) + 0.02))
    ax.set_xticks(
        np.arange(len(subsets)) + width * (len(metas) - 1) / 2, subsets, rotation=20, ha="right"
    )
    ax.set_ylabel(f"weighted F1 ({split})")
    ax.legend(ncol=len(metas), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
