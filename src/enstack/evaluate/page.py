"""`reports/report.html`: a run's evaluation as one page a researcher opens.

The tables of results.md (rendered from its Markdown, every cell escaped first: model names
come from the config, class names from the data) and each plot the run drew, embedded, so the
one file can be mailed or attached to a CI run without its directory.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import markdown

from enstack.htmlpage import page, png

# each plot evaluate may draw, with what it shows; a plot not drawn (the selection is the best
# single model, no benign class) is left out
PLOTS = (
    ("confusion_selected.png", "Confusion matrix of the selected model (test)"),
    ("confusion_best_single.png", "Confusion matrix of the best single model (test)"),
    ("roc_selected.png", "ROC, one-vs-rest, selected model (test)"),
    ("roc_best_single.png", "ROC, one-vs-rest, best single model (test)"),
    ("pr_detection.png", "Precision and recall, vulnerable vs benign (test)"),
    ("ablation.png", "Every candidate on test"),
    ("tsne.png", "t-SNE of embeddings and meta-features (test)"),
)
CSS = (
    "table { border-collapse: collapse; } td, th { border: 1px solid #d0d7de; padding: .2em .5em; }"
)


def evaluation_page(results_md: str, plots: Path, run_name: str) -> str:
    """The page for a run whose reports hold `results_md` and the pictures under `plots`."""
    # escaped before Markdown reads it: a name like <img onerror=...> or [x](javascript:..)
    # stays text (brackets too, so no cell becomes a link)
    safe = escape(results_md, quote=False).replace("[", "&#91;").replace("]", "&#93;")
    body = markdown.markdown(safe, extensions=["tables"], output_format="html")
    figures = [
        f"<figure>{png(plots / name, caption)}<figcaption>{escape(caption)}</figcaption></figure>"
        for name, caption in PLOTS
        if (plots / name).is_file()
    ]
    title = f"enstack evaluation: {run_name}"
    heading = f'<p class="muted">{escape(title)}</p>'
    return page(
        title, heading + body + ("<h2>Plots</h2>" + "".join(figures) if figures else ""), CSS
    )
