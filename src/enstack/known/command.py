"""`enstack known build` and `enstack known inspect`: sources read, entries written, said."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from enstack.errors import UserError
from enstack.known.base import BuildTally, KnownBase, describe, writing
from enstack.known.build import (
    DEFAULT_LABELS,
    EntryMaker,
    FixPair,
    dataset_pairs,
    git_pairs,
    preset_config,
)
from enstack.progress import progress_bar
from enstack.registries.presets import PRESETS


def build_base(args: argparse.Namespace) -> str:
    """Every source's fix pairs into the base at `args.out`; a summary line per source."""
    sources = _sources(args)
    lines = []
    with writing(args.out, args.append) as (writer, staged):
        described = []
        for what, labels, pairs in sources:
            tally = BuildTally()
            maker = EntryMaker(labels)
            bar = progress_bar(pairs(tally), enabled=None, desc=f"known {what}", unit=" pairs")
            for pair in bar:
                entry = maker(pair, tally)
                if entry is not None:
                    writer.add(entry, tally)
            bar.close()
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(tally.skipped.items()))
            lines.append(
                f"{what}: {tally.taken} entries added"
                + (f"; skipped {sum(tally.skipped.values())} ({skipped})" if skipped else "")
            )
            described.append({"what": what, "taken": tally.taken, "skipped": tally.skipped})
        total = writer.finish(staged, described)
    lines.append(f"wrote {args.out}: {total} known vulnerable functions")
    return "\n".join(lines)


def _sources(args: argparse.Namespace) -> list[tuple[str, list[str], object]]:
    """(name, labels, pairs(tally)) for each source named; all checked before any is read."""
    from enstack.config import load_config

    out: list[tuple[str, list[str], object]] = []
    for config_path in args.config:
        data = load_config(config_path).data
        out.append((str(config_path), data.labels, _dataset(data, str(config_path))))
    for name, path in args.preset:
        if name not in PRESETS:
            raise UserError(f"--preset {name}: not one of {', '.join(sorted(PRESETS))}")
        data = preset_config(name, Path(path))
        out.append((f"{name} {path}", DEFAULT_LABELS, _dataset(data, f"--preset {name}")))
    if (args.from_git is None) != (args.fixes is None):
        raise UserError("--from-git and --fixes go together (the repository and its fixes)")
    if args.from_git is not None:
        repo, fixes = args.from_git, args.fixes
        out.append(
            (f"{repo.resolve().name} {fixes.name}", DEFAULT_LABELS, _git(repo, fixes))
        )  # fmt: skip
    if not out:
        raise UserError("known build: name a source (--config, --preset or --from-git)")
    return out


def _dataset(data, what: str):
    def pairs(tally: BuildTally) -> Iterator[FixPair]:
        return dataset_pairs(data, what, tally)

    return pairs


def _git(repo: Path, fixes: Path):
    def pairs(tally: BuildTally) -> Iterator[FixPair]:
        return git_pairs(repo, fixes, tally)

    return pairs


def inspect_base(path: Path) -> str:
    """What a base holds, verified: its entries, sources and format."""
    base = KnownBase(path)
    try:
        manifest = base.manifest
        (cves,) = base.db.execute("SELECT count(DISTINCT vuln_id) FROM entries").fetchone()
    finally:
        base.close()
    lines = [f"{path}: {describe(manifest)}", f"  vulnerabilities: {cves}"]
    for source in manifest.get("sources") or []:
        if isinstance(source, dict):
            lines.append(f"  {source.get('what')}: {source.get('taken')} entries")
    lines.append(
        f"  format {manifest.get('version')}, level {manifest.get('level')}, written by "
        f"{manifest.get('written_by')} at {manifest.get('written_at')}"
    )
    return "\n".join(str(line) for line in lines)
