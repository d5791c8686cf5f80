"""The stage runner and the typed records stages hand each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from enstack.data.record import PreparedData, read_prepared
from enstack.errors import UserError
from enstack.records import Record, read_record, write_record
from enstack.stack.summary import StackSummary, read_summary
from enstack.stages import Stage, run_stage

from support import REPO


@dataclass(frozen=True)
class Given:
    text: str

    @property
    def fingerprint(self) -> str:
        return f"fp:{self.text}"


class Note(Record):
    fingerprint: str
    text: str
    added_later: int | None = None


class WriteNote(Stage[Given, Note]):
    """A stage that writes its input's text; `fail` raises halfway through the build."""

    lock = "note"

    def __init__(self, run_dir: Path, text: str, fail: bool = False) -> None:
        super().__init__(run_dir, run_dir / "notes")
        self.text, self.fail, self.builds = text, fail, 0

    def inputs(self) -> Given:
        return Given(self.text)

    def reuse(self, inputs: Given) -> Note | None:
        found = read_record(self.output / "note.json", Note)
        return found if found and found.fingerprint == inputs.fingerprint else None

    def build(self, inputs: Given, tmp: Path) -> Note:
        self.builds += 1
        (tmp / "half.txt").write_text("half")
        if self.fail:
            raise UserError("the build failed halfway")
        note = Note(fingerprint=inputs.fingerprint, text=self.text)
        write_record(tmp / "note.json", note)
        return note


def test_a_stage_builds_once_then_reuses_and_rebuilds_when_its_inputs_change(tmp_path) -> None:
    first = WriteNote(tmp_path, "a")
    built = run_stage(first)
    assert not built.skipped and built.record.text == "a" and first.builds == 1
    assert sorted(p.name for p in built.directory.iterdir()) == ["half.txt", "note.json"]
    again = WriteNote(tmp_path, "a")
    reused = run_stage(again)
    assert reused.skipped and again.builds == 0 and reused.record == built.record
    changed = run_stage(WriteNote(tmp_path, "b"))
    assert not changed.skipped and read_record(tmp_path / "notes" / "note.json", Note).text == "b"


def test_a_failed_build_leaves_the_published_output_and_no_debris(tmp_path) -> None:
    run_stage(WriteNote(tmp_path, "a"))
    before = (tmp_path / "notes" / "note.json").read_bytes()
    with pytest.raises(UserError, match="halfway"):
        run_stage(WriteNote(tmp_path, "b", fail=True))
    assert (tmp_path / "notes" / "note.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock-note") == ["notes"]


def test_what_a_killed_build_left_beside_the_output_is_removed(tmp_path) -> None:
    """A SIGKILL inside the build leaves the staged directory; the next run clears it."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from pathlib import Path
        from unit.test_stages import WriteNote
        from enstack.stages import run_stage

        class Killed(WriteNote):
            def build(self, inputs, tmp):
                (tmp / "half.txt").write_text("half")
                os.kill(os.getpid(), signal.SIGKILL)

        run_stage(Killed(Path({str(tmp_path)!r}), "a"))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    result = subprocess.run([sys.executable, "-c", script], env=env, check=False)
    assert result.returncode == -9
    debris = [p for p in tmp_path.iterdir() if p.name.startswith(".notes")]
    assert debris, "the kill should have left the staged directory"
    done = run_stage(WriteNote(tmp_path, "a"))
    assert not done.skipped and done.record.text == "a"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".notes")]


def test_a_stage_holds_its_lock_while_it_runs(tmp_path) -> None:
    from enstack.fsutil import stage_lock

    with stage_lock(tmp_path, "note"), pytest.raises(UserError, match="note"):
        run_stage(WriteNote(tmp_path, "a"))
    assert not (tmp_path / "notes").exists()


def test_a_record_is_written_back_byte_for_byte_with_the_keys_it_was_given(tmp_path) -> None:
    """An older file (a field unset) and a newer one (a key this enstack does not know) are
    read, and written again unchanged; a field of the wrong type makes the file unreadable."""
    older = tmp_path / "old.json"
    older.write_text(json.dumps({"fingerprint": "f", "text": "t"}, indent=2) + "\n")
    record = read_record(older, Note)
    assert record is not None and record.added_later is None and "added_later" not in record
    write_record(tmp_path / "again.json", record)
    assert (tmp_path / "again.json").read_bytes() == older.read_bytes()
    newer = tmp_path / "new.json"
    newer.write_text(json.dumps({"fingerprint": "f", "text": "t", "later_key": [1, 2]}) + "\n")
    kept = read_record(newer, Note)
    assert kept is not None and kept["later_key"] == [1, 2] and kept.get("absent", 7) == 7
    assert kept.as_json() == {"fingerprint": "f", "text": "t", "later_key": [1, 2]}
    with pytest.raises(KeyError):
        kept["absent"]
    (tmp_path / "bad.json").write_text('{"fingerprint": "f", "text": ["not", "text"]}')
    assert read_record(tmp_path / "bad.json", Note) is None
    (tmp_path / "torn.json").write_text('{"fingerprint": "f", "te')
    assert read_record(tmp_path / "torn.json", Note) is None


def test_a_real_runs_records_round_trip_unchanged(bundle: Path, tmp_path) -> None:
    """The prepared data's and the stack's records, as the pipeline wrote them, read into
    their types and written again: the same bytes (so no key is lost or renamed)."""
    demo_run = bundle.parents[1]
    for path, kind in [
        (demo_run / "data" / "manifest.json", PreparedData),
        (demo_run / "stack" / "ablation.json", StackSummary),
    ]:
        record = read_record(path, kind)
        assert record is not None, path
        write_record(tmp_path / path.name, record)
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path
    manifest = read_prepared(demo_run / "data")
    assert manifest.splits["train"].total == manifest.table["total"]["train"] > 0
    summary = read_summary(demo_run / "stack")
    assert summary is not None and summary.selected.models and summary.labels == manifest.labels


def test_a_damaged_manifest_is_one_error_naming_it(tmp_path) -> None:
    with pytest.raises(UserError, match="run `enstack prepare` first"):
        read_prepared(tmp_path)
    (tmp_path / "manifest.json").write_text('{"labels": "not a list"}')
    with pytest.raises(UserError, match=r"manifest\.json: damaged"):
        read_prepared(tmp_path)
