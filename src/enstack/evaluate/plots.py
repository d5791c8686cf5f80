"""The report's figures (PNG): confusion matrices, ROC curves, t-SNE (Fig. 3), ablation (Fig. 4)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
from sklearn.manifold import TSNE
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from enstack.evaluate.tables import candidate_name


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
    # one curve per class against the rest (sklearn's default labels say "Positive label: 1")
    ax.set_xlabel("false-positive rate (the other classes taken for this one)")
    ax.set_ylabel("true-positive rate (this class found)")
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
    ax.set_xlabel("recall: vulnerable functions flagged")
    ax.set_ylabel("precision: flagged functions that are vulnerable")
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
    split: str = "test",
    limit: int = 2000,
) -> None:
    """Fig. 3: a single model's embeddings beside the selected ensemble's meta-features."""
    rows = np.random.default_rng(seed).permutation(len(y))[:limit]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    shown = f"{len(rows)} of {len(y)}" if len(rows) < len(y) else f"all {len(y)}"
    fig.suptitle(f"t-SNE of the {split} split ({shown} functions)")
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


def ablation(path: Path, rows: list[dict], selected: dict, split: str = "test") -> None:
    """Fig. 4: weighted F1 of every candidate (each model alone, every subset of models with
    every meta-classifier), best first, on an axis from 0 so that bar lengths compare."""
    shown = sorted((r for r in rows if r["split"] == split), key=lambda r: r["f1"])
    names = [candidate_name(r) for r in shown]
    chosen = [r["models"] == selected["models"] and r["meta"] == selected["meta"] for r in shown]
    alone = [r["meta"] is None for r in shown]
    colours = [
        "tab:red" if c else "tab:grey" if a else "tab:blue"
        for c, a in zip(chosen, alone, strict=True)
    ]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.24 * len(shown)))
    scores = [100 * r["f1"] for r in shown]  # percent, as the bar labels and the tables
    bars = ax.barh(np.arange(len(shown)), scores, color=colours)
    for bar, score in zip(bars, scores, strict=True):
        ax.text(
            bar.get_width() + 0.5,
            bar.get_y() + bar.get_height() / 2,
            f"{score:.2f}",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(np.arange(len(shown)), names, fontsize=7)
    ax.set_xlim(0, 108)
    ax.set_xlabel(f"weighted F1 ({split}, %)")
    ax.set_title(
        f"Ablation on {split}\nred: the selection (chosen on val)\n"
        "grey: a base model alone; blue: with a meta-classifier",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
