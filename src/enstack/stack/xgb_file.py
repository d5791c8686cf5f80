"""An XGBoost model file from a bundle, checked before XGBoost reads it.

XGBoost's JSON loader trusts the tree arrays it is given: a child index past the end of its
tree makes prediction read outside the arrays (a segmentation fault, measured), and absurd
sizes make it allocate for them. Every tree is checked here against what XGBoost itself writes:
its arrays as long as `num_nodes`, children later in the tree than their parent (so no cycles)
and inside it, split features inside the model's features, finite thresholds and leaves.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from enstack.errors import UserError
from enstack.fsutil import read_untrusted_json

MAX_XGB_BYTES = 256 << 20  # 100 trees of depth 6 per class are a few MiB
NOT_OURS = "not an XGBoost model enstack wrote"
NODE_ARRAYS = ("left_children", "right_children", "parents", "split_indices",
               "split_conditions", "default_left", "loss_changes", "sum_hessian",
               "base_weights")  # fmt: skip


class _Refused(Exception):
    """What is wrong with the file, said once by `read_xgb_model`."""


def read_xgb_model(path: Path, classes: int) -> bytearray:
    """The file's bytes, for `XGBClassifier.load_model`, once every tree is known to be sound
    and the model answers for `classes` classes (as meta.json says)."""
    model = read_untrusted_json(path, MAX_XGB_BYTES, str(path), NOT_OURS)
    try:
        _check_model(model, classes)
    except _Refused as exc:
        raise UserError(f"{path}: {exc}; {NOT_OURS}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(f"{path}: not the layout XGBoost writes; refusing to load it") from None
    return bytearray(path.read_bytes())


def _check_model(model: Any, expected_classes: int) -> None:
    learner = model["learner"]
    params = learner["learner_model_param"]
    features = _count(params["num_feature"], "num_feature")
    classes = _count(params["num_class"], "num_class")
    if classes != (expected_classes if expected_classes > 2 else 0):  # binary: one output
        raise _Refused(f"{classes} classes where meta.json has {expected_classes}")
    trees = learner["gradient_booster"]["model"]["trees"]
    if not isinstance(trees, list):
        raise _Refused("`trees` is not a list")
    if classes > 1 and len(learner["gradient_booster"]["model"]["tree_info"]) != len(trees):
        raise _Refused("`tree_info` does not name a class for every tree")
    for tree in trees:
        _check_tree(tree, features)


def _check_tree(tree: dict, features: int) -> None:
    param = tree["tree_param"]
    nodes = _count(param["num_nodes"], "num_nodes")
    if _count(param["size_leaf_vector"], "size_leaf_vector") > 1:
        raise _Refused("a tree with vector leaves (enstack writes scalar ones)")
    for name in NODE_ARRAYS:
        if not isinstance(tree[name], list) or len(tree[name]) != nodes:
            raise _Refused(f"tree {tree.get('id')}: `{name}` is not {nodes} long")
    left, right = tree["left_children"], tree["right_children"]
    for node in range(nodes):
        children = (left[node], right[node])
        if children != (-1, -1) and not all(
            isinstance(c, int) and node < c < nodes for c in children
        ):
            raise _Refused(f"tree {tree.get('id')}: node {node} has children outside the tree")
        if children != (-1, -1) and not 0 <= tree["split_indices"][node] < features:
            raise _Refused(f"tree {tree.get('id')}: node {node} splits on a feature it lacks")
    for name in ("split_conditions", "base_weights"):
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in tree[name]):
            raise _Refused(f"tree {tree.get('id')}: `{name}` holds values that are not finite")


def _count(value: object, name: str) -> int:
    """XGBoost writes its sizes as decimal strings."""
    if not isinstance(value, str) or not value.isdigit() or len(value) > 9:
        raise _Refused(f"`{name}` is not a size ({value!r})")
    return int(value)
