"""Each version key in `enstack.versions` redoes exactly the derived data it names.

From a warm scan cache (every function cut, scored and its lines ranked), a bump of one key
must redo its own work and no other: FUNCTION_CUTS the cutting, WINDOWS the scores read in
windows, LOCALISE and LINE_RANKING the line rankings; STACK_FEATURES a model's stack
features. Counting the calls of the function that does each piece of work tells which ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from enstack import versions
from enstack.scan import api as scan_api
from enstack.scan import localise
from enstack.scan.api import Scanner

C_FILE = "int copy(char *d, const char *s, int n)\n{\n  for (int i = 0; i <= n; i++)\n    d[i] = s[i];\n  return n;\n}\n"  # noqa: E501


class Calls:
    """Wraps `owner.name`, counting its calls."""

    def __init__(self, monkeypatch, owner: object, name: str) -> None:
        self.count = 0
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


@pytest.fixture
def warm(bundle: Path, tmp_path: Path):
    """A scan that has cut, scored and ranked everything once, and counters for the next."""
    source = tmp_path / "a.c"
    source.write_text(C_FILE)

    def scan(long_functions: str = "windows"):
        scanner = Scanner(bundle, threshold=0.0, top_lines=2, cache_dir=tmp_path / "cache",
                          localise="attention", long_functions=long_functions)  # fmt: skip
        return scanner.scan([str(source)], progress=False)

    scan()
    return scan


def _counters(monkeypatch) -> dict[str, Calls]:
    from enstack.scan.model import ScanModel

    return {
        "cut": Calls(monkeypatch, scan_api, "extract_functions"),
        "score": Calls(monkeypatch, ScanModel, "predict_proba"),
        "rank": Calls(monkeypatch, localise, "rank_lines"),
    }


@pytest.mark.parametrize(
    ("key", "redone"),
    [
        (None, set()),  # the control: a warm cache answers everything
        ("FUNCTION_CUTS", {"cut"}),
        ("WINDOWS", {"score", "rank"}),  # scores in windows are their own rows, lines with them
        ("LOCALISE", {"rank"}),
        ("LINE_RANKING", {"rank"}),
        ("STACK_FEATURES", set()),  # not the scanner's
        ("DISTILL_TARGETS", set()),
        ("PRETRAIN_CORPUS", set()),  # pretraining's (tests/integration/test_pretrain.py)
        ("PRETRAIN_TOKENS", set()),
    ],
)
def test_a_bump_redoes_what_its_key_names_in_a_scan(
    warm, monkeypatch, key: str | None, redone: set[str]
) -> None:
    counters = _counters(monkeypatch)
    if key is not None:
        value = getattr(versions, key)
        monkeypatch.setattr(versions, key, f"{value}+1" if isinstance(value, str) else value + 1)
    warm()
    ran = {name for name, calls in counters.items() if calls.count}
    assert ran == redone, (key, ran)


def test_truncated_scores_do_not_hang_on_the_windows_key(warm, monkeypatch) -> None:
    warm("truncate")  # warm in truncate mode too
    counters = _counters(monkeypatch)
    monkeypatch.setattr(versions, "WINDOWS", versions.WINDOWS + 1)
    warm("truncate")
    assert not any(calls.count for calls in counters.values())


def test_stack_features_are_extracted_again_only_for_their_own_key(
    bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    from enstack.api import load_config
    from enstack.data.record import read_prepared
    from enstack.stack import features

    shutil.copytree(bundle.parents[1], tmp_path / "run")
    settings = yaml.safe_load((bundle.parents[2] / "c.yaml").read_text())
    settings["run_dir"] = str(tmp_path / "run")
    config = load_config(settings)
    manifest = read_prepared(config.layout.data)
    before = features.extract_model(config, "m", manifest, progress=False).fingerprint
    extracted = Calls(monkeypatch, features, "_extract_to")
    for key in ("FUNCTION_CUTS", "LOCALISE", "KNOWN_MATCHER"):
        monkeypatch.setattr(versions, key, getattr(versions, key) + 1)
    assert features.extract_model(config, "m", manifest, progress=False).fingerprint == before
    assert extracted.count == 0
    monkeypatch.setattr(versions, "STACK_FEATURES", versions.STACK_FEATURES + 1)
    assert features.extract_model(config, "m", manifest, progress=False).fingerprint != before
    assert extracted.count == 1
