"""`enstack quantise`: a bundle stored as int8 scores exactly as `--precision int8` does on the
original, loads no fp32 weights, and a crafted int8 file is one error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file

from enstack.cli import main
from enstack.manifest import MANIFEST, describe_files, manifest_bytes
from enstack.models.contract import INT8_WEIGHTS
from enstack.scan.api import Scanner

from support import assert_user_error, run_cli


def _quantised(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "int8"
    assert main(["quantise", str(bundle), "--out", str(out)]) == 0
    return out


def test_an_int8_bundle_scores_as_int8_at_load_does_and_is_smaller(
    bundle: Path, tmp_path: Path, capsys
) -> None:
    out = _quantised(bundle, tmp_path)
    said = capsys.readouterr().out
    assert "int8 weights" in said and str(out) in said
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["precision"] == "int8" and manifest["models"] == ["m"]
    model_dir = out / "models" / "m"
    assert (model_dir / INT8_WEIGHTS).is_file() and not (model_dir / "model.safetensors").exists()
    fp32 = (bundle / "models" / "m" / "model.safetensors").stat().st_size
    assert (model_dir / INT8_WEIGHTS).stat().st_size < fp32
    assert (out / "meta").is_dir() and sorted(p.name for p in (out / "meta").iterdir()) == sorted(
        p.name for p in (bundle / "meta").iterdir()
    )

    codes = pq.read_table(bundle.parents[1] / "data" / "test.parquet").column("code").to_pylist()
    at_load = Scanner(bundle, precision="int8")
    stored = Scanner(out)  # int8 without being asked: the bundle says so
    assert stored.precision == "int8" and stored.card.stored_precision == "int8"
    expected, got = at_load.predict_proba(codes), stored.predict_proba(codes)
    assert got.shape == expected.shape and (got == expected).all()  # bit for bit
    assert stored.cache_key != at_load.cache_key  # another bundle: its own cached scores


@pytest.mark.slow  # four CLI processes
def test_quantise_refuses_what_it_cannot_do_and_touches_nothing(
    bundle: Path, tmp_path: Path
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert_user_error(run_cli("quantise", str(bundle), "--out", str(taken)), "already exists")
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    out = _quantised(bundle, tmp_path)
    (tmp_path / "a.c").write_text("int f(int x) { return x + 1; }\n")
    scanned = run_cli("scan", "--bundle", str(out), str(tmp_path / "a.c"))
    assert "; int8 weights)" in scanned.stderr  # the model line says what it runs
    again = tmp_path / "again"
    assert_user_error(run_cli("quantise", str(out), "--out", str(again)), "already int8")
    assert not again.exists()
    assert_user_error(
        run_cli("quantise", str(tmp_path / "none"), "--out", str(again)), "no such directory"
    )
    # a copy written inside the bundle would add a file its manifest does not list
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    inside = bundle / "int8"
    assert_user_error(run_cli("quantise", str(bundle), "--out", str(inside)), "inside")
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before


def _key(tensors: dict, suffix: str) -> str:
    return next(k for k in tensors if k.endswith(suffix))


def _nan_scale(tensors: dict) -> None:
    tensors[_key(tensors, ".weight.scale")] = torch.tensor([float("nan")], dtype=torch.float64)


def _wild_zero_point(tensors: dict) -> None:
    tensors[_key(tensors, ".weight.zero_point")] = torch.tensor([4096])


def _narrow_weight(tensors: dict) -> None:
    key = _key(tensors, ".weight.int8")
    tensors[key] = tensors[key][:, :-1].contiguous()


def _no_embeddings(tensors: dict) -> None:
    del tensors[next(k for k in tensors if "embeddings" in k)]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_nan_scale, "out of range"),
        (_wild_zero_point, "out of range"),
        (_narrow_weight, "no int8 weight of shape"),
        (_no_embeddings, "do not match config.json"),
    ],
    ids=["nan-scale", "zero-point", "shape", "missing"],
)
@pytest.mark.slow  # a CLI scan process each
def test_a_crafted_int8_file_is_one_error(
    bundle: Path, tmp_path: Path, tamper, message: str
) -> None:
    """An attacker who rewrites the weights and the manifest's hashes to match: the scan
    ends in one error naming the file, never a traceback or a NaN score."""
    out = _quantised(bundle, tmp_path)
    weights = out / "models" / "m" / INT8_WEIGHTS
    tensors = load_file(str(weights))
    tamper(tensors)
    save_file(tensors, str(weights))
    manifest = json.loads((out / MANIFEST).read_text())
    fields = {k: v for k, v in manifest.items() if k not in ("format_version", "files")}
    (out / MANIFEST).write_bytes(
        manifest_bytes(manifest["format_version"], describe_files(out), **fields)
    )
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.c").write_text("int f(int x) { return x + 1; }\n")
    result = run_cli("scan", "--bundle", str(out), str(source))
    assert_user_error(result, INT8_WEIGHTS, message)


def test_an_int8_export_alone_scans_like_its_bundle(bundle: Path, tmp_path: Path) -> None:
    export = bundle / "models" / "m"
    single = tmp_path / "export"
    shutil.copytree(export, single)
    out = tmp_path / "export-int8"
    assert main(["quantise", str(single), "--out", str(out)]) == 0
    assert (out / INT8_WEIGHTS).is_file() and not (out / "model.safetensors").exists()
    codes = ["int f(int x) { return x + 1; }", "void g(char *s) { char b[4]; strcpy(b, s); }"]
    expected = Scanner(single, precision="int8").predict_proba(codes)
    got = Scanner(out).predict_proba(codes)
    assert (got == expected).all()


def test_a_loaded_export_is_mapped_copy_on_write(bundle: Path, tmp_path: Path) -> None:
    """Weights are the file's own pages (no second copy), but writing to them never reaches
    the file: a bundle stays intact under whatever a caller does to a loaded model."""
    import hashlib

    from enstack.models.loading import load_classifier

    export = tmp_path / "export"
    shutil.copytree(bundle / "models" / "m", export)
    weights = export / "model.safetensors"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    model, _ = load_classifier(export, "cpu")
    on_disk = load_file(str(weights))
    loaded = dict(model.named_parameters())
    assert all(torch.equal(loaded[name], on_disk[name]) for name in loaded if name in on_disk)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    del model
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before


def test_weights_of_another_precision_load_as_the_model_s_own(bundle: Path, tmp_path: Path) -> None:
    """Loading assigns the file's tensors: an fp16 or float64 file (handed over, or crafted)
    is cast to the model's dtypes, never left as a model of mixed types that fails mid-scan."""
    from enstack.models.loading import load_classifier

    export = tmp_path / "export"
    shutil.copytree(bundle / "models" / "m", export)
    weights = export / "model.safetensors"
    original = load_file(str(weights))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in original.items()},
              str(weights))  # fmt: skip
    model, _ = load_classifier(export, "cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    codes = ["int f(int x) { return x + 1; }"]
    assert Scanner(export).predict_proba(codes).shape == (1, len(Scanner(export).card.labels))
