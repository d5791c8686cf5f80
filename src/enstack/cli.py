"""The `enstack` command: a thin layer that parses arguments and calls one stage.

Every UserError becomes one `error:` line on stderr and exit code 2; `--debug` shows the
traceback instead. Stage modules are imported lazily so `enstack --help` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from enstack import __version__
from enstack.errors import UserError
from enstack.scan import DEFAULT_THRESHOLD, LOCALISE_CHOICES, LONG_FUNCTION_MODES, PRECISIONS
from enstack.scan.formats import FORMATS
from enstack.scan.formats import names as format_names

if TYPE_CHECKING:
    from enstack.config import Config

EXIT_OK = 0
# storage that refuses a write (full, read-only, over quota, no permission): the machine's
# state, not a bug; reported in one line like bad input
DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM}
EXIT_FINDINGS = 1  # enstack scan --fail-on: a finding reached the level
EXIT_USER = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as the contract's one `error:` line and exit code 2; a
    mistyped option is named (with the nearest real one) before any complaint about a
    required option it was meant to be."""

    _given: tuple[str, ...] = ()  # what this parser was given: set on each parse

    def parse_known_args(self, args=None, namespace=None):
        self._given = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        typo = "required" in message or message.startswith("unrecognized arguments")
        unknown = self._unknown_options() if typo else []
        if unknown:  # `--bundel x`: name the typo, not the required --bundle it stood for
            near = difflib.get_close_matches(unknown[0], self._options(), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            message = f"unrecognized option {unknown[0]}{hint}"
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USER)

    def _options(self) -> list[str]:
        """This parser's options and those of the command given (`enstack scan --bundel`:
        argparse reports the typo from the top parser, which has no --bundle)."""
        options = list(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if name in self._given and isinstance(sub, Parser):
                        sub._given = self._given
                        options += sub._options()
        return options

    def _unknown_options(self) -> list[str]:
        """Options given that this parser has not, nor abbreviates (`--bundel`)."""
        known = self._options()
        unknown = []
        for token in self._given:
            if token == "--":
                break
            if not token.startswith("-") or token == "-" or token[1:2].isdigit():
                continue  # a value, standard input, a negative number
            name = token.split("=", 1)[0]
            if name not in known and not any(k.startswith(name) for k in known):
                unknown.append(name)
        return unknown


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="enstack",
        description="Stack fine-tuned code language models to classify C/C++ vulnerabilities.",
    )
    parser.add_argument("--version", action="version", version=f"enstack {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    verbs = parser.add_subparsers(
        dest="verb", required=True, metavar="COMMAND", parser_class=Parser
    )

    demo = verbs.add_parser("demo", help="the whole pipeline on synthetic data, on CPU, in minutes")
    demo.add_argument(
        "--run-dir",
        type=Path,
        default=Path("enstack-demo"),
        help="where the demo writes (default: ./enstack-demo)",
    )
    demo.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a demo config key, e.g. --set training.epochs=1 (repeatable)",
    )

    for verb, text in (
        ("prepare", "read, filter, dedup, split and downsample the data into run_dir/data"),
        ("stack", "extract base-model features, fit meta-classifiers, run the ablation"),
        ("evaluate", "write the tables and plots under run_dir/reports"),
    ):
        _with_config(verbs.add_parser(verb, help=text))
    run = _with_config(
        verbs.add_parser(
            "run",
            help="prepare, train every model, stack, evaluate; skips or resumes finished work",
        )
    )
    run.add_argument(
        "--force-resume",
        action="store_true",
        help="resume every model even if training settings changed since its checkpoint "
        "(e.g. more epochs: training goes on from there under the new schedule)",
    )

    train = _with_config(verbs.add_parser("train", help="fine-tune one base model"))
    train.add_argument("--model", required=True, help="the name of a model in the config")
    _with_resume(train, "the config or prepared data")

    distill = _with_config(
        verbs.add_parser(
            "distill",
            help="train one compact student on the selected bundle's probabilities: "
            "run_dir/distill/bundle, for fast scans",
        )
    )
    _with_resume(distill, "the config or the teacher's targets")

    pretrain = _with_config(
        verbs.add_parser(
            "pretrain",
            help="masked-language pretraining of an encoder on C/C++ source (pretrain: "
            "section): run_dir/pretrain/models/encoder/best, to fine-tune from",
        )
    )
    _with_resume(pretrain, "the config or the corpus")

    _scan_parser(verbs.add_parser("scan", help="find likely vulnerable functions in C/C++ code"))

    _known_parser(
        verbs.add_parser("known", help="build or inspect a base of known vulnerable functions")
    )

    quantise = verbs.add_parser(
        "quantise",
        help="an int8 copy of a bundle or export, for CPU scans: smaller, and quick to load",
        description="Writes a copy of BUNDLE whose base models' linear layers are stored "
        "already quantised to int8 (what `scan --precision int8` does at every start): a scan "
        "with it loads no fp32 weights and quantises nothing, and gives the same scores as "
        "`--precision int8` on the original. CPU only.",
    )
    quantise.add_argument("bundle", type=Path, help="a bundle (run_dir/stack/bundle) or export")
    quantise.add_argument(
        "--out", type=Path, required=True, help="the new directory to write (must not exist)"
    )

    ckpt = verbs.add_parser("ckpt", help="inspect, verify or clean training checkpoints")
    ckpt_verbs = ckpt.add_subparsers(
        dest="ckpt_verb", required=True, metavar="ACTION", parser_class=Parser
    )
    ckpt_verbs.add_parser("inspect", help="what a checkpoint holds").add_argument(
        "path", type=Path, help="a checkpoint directory (ckpt-g<step>)"
    )
    ckpt_verbs.add_parser("verify", help="exit 0 if intact, 2 if not").add_argument(
        "path", type=Path, help="a checkpoint directory (ckpt-g<step>)"
    )
    clean = ckpt_verbs.add_parser("clean", help="remove partial saves and old checkpoints")
    clean.add_argument("path", type=Path, help="a checkpoints directory (models/NAME/checkpoints)")
    clean.add_argument(
        "--keep",
        type=int,
        default=None,
        metavar="N",
        help="also remove all but the newest N valid checkpoints (default: keep every valid one)",
    )
    clean.add_argument(
        "--old",
        action="store_true",
        help="also remove the PATH.old-* directories that --resume never set aside beside it",
    )
    return parser


def _scan_parser(scan: argparse.ArgumentParser) -> None:
    scan.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files, directories, or - (stdin); with --changed-since, default: .",
    )
    source = scan.add_mutually_exclusive_group()
    source.add_argument("--bundle", type=Path, help="a bundle (run_dir/stack/bundle) or an export")
    source.add_argument("--config", type=Path, help="use the selected bundle of this run")
    scan.add_argument(
        "--known",
        type=Path,
        metavar="KB",
        help="also (or, without --bundle and --config, only) check every function against this "
        "knowledge base of known vulnerable functions (enstack known build): no model needed",
    )
    scan.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --config: override a config key, e.g. --set run_dir=runs/other",
    )
    scan.add_argument(
        "--format",
        choices=format_names(),
        help="default: the one --output's suffix names (.json, .csv, .sarif, .html), else "
        "text; " + "; ".join(f"{f.name}: {f.about}" for f in FORMATS.values()),
    )
    scan.add_argument("-o", "--output", type=Path, help="write there instead of standard output")
    scan.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="P(vulnerable) that makes a finding",
    )
    scan.add_argument(
        "--fail-on",
        choices=("none", "note", "warning", "error"),
        default="none",
        help="exit 1 when a finding reaches this level (default: never)",
    )
    scan.add_argument("--top-lines", type=int, default=3, help="lines ranked per finding")
    scan.add_argument(
        "--localise",
        choices=LOCALISE_CHOICES,
        default="auto",
        help="line ranking (default auto: the bundle's learned ranker if it has one, else "
        "attention)",
    )
    scan.add_argument("--no-cache", action="store_true", help="score every function afresh")
    scan.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="the report, warnings and errors only: no progress, model line or summary",
    )
    scan.add_argument("--cache-dir", type=Path, help="default: ~/.cache/enstack/scan")
    scan.add_argument(
        "--changed-since",
        metavar="REV",
        help="only functions with lines added or modified since git revision REV "
        "(e.g. origin/main in a pull request's CI job)",
    )
    scan.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out matching paths (gitignore syntax; repeatable); the tree's "
        ".enstackignore is read too",
    )
    scan.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="SUFFIX",
        help="scan files with these suffixes (repeatable, e.g. --include .c --include .h; "
        "default: every C and C++ suffix)",
    )
    scan.add_argument(
        "--baseline",
        type=Path,
        metavar="SARIF",
        help="findings whose fingerprint is in this earlier SARIF report are suppressed",
    )
    scan.add_argument(
        "--compile-commands",
        type=Path,
        metavar="FILE",
        help="a JSON compilation database (compile_commands.json): each file's -D/-U macros "
        "decide its #if branches, as its build does (nothing in it is run)",
    )
    scan.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="int8: linear layers quantised for CPU inference (faster; a little different)",
    )
    scan.add_argument(
        "--long-functions",
        choices=LONG_FUNCTION_MODES,
        help="a function longer than the model's window: scored whole in overlapping windows "
        "cut at statement boundaries, or truncated to its first window (default: as the "
        "bundle's models were trained; windows where it does not say)",
    )


def _known_parser(known: argparse.ArgumentParser) -> None:
    actions = known.add_subparsers(
        dest="known_verb", required=True, metavar="ACTION", parser_class=Parser
    )
    build = actions.add_parser(
        "build",
        help="a knowledge base from fix pairs: a dataset, or a repository's fixing commits",
        description="Each source adds the functions its fixes changed (vulnerable before, "
        "fixed after), with their CVE id. Give one or more of --config, --preset, --from-git.",
    )
    build.add_argument("--out", type=Path, required=True, metavar="KB", help="the base's directory")
    build.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        metavar="CFG",
        help="every file of this config's data (its pairs: pair_columns or pair_column)",
    )
    build.add_argument(
        "--preset",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "PATH"),
        help="a published dataset as it comes, e.g. --preset pairvul data/pairvul/train",
    )
    build.add_argument(
        "--from-git",
        type=Path,
        metavar="REPO",
        help="a clone or bare repository; with --fixes, each fixing commit against its parent",
    )
    build.add_argument(
        "--fixes",
        type=Path,
        metavar="FIXES.csv",
        help="the fixing commits: columns cve_id,commit (and optionally cwe)",
    )
    build.add_argument(
        "--append", action="store_true", help="add to the existing base at --out instead"
    )
    actions.add_parser("inspect", help="what a knowledge base holds").add_argument(
        "path", type=Path, metavar="KB", help="a knowledge base's directory"
    )


def _with_resume(sub: argparse.ArgumentParser, inputs: str) -> None:
    """--resume and --force-resume, for the commands that train a model."""
    sub.add_argument(
        "--resume",
        default="auto",
        metavar="auto|never|PATH",
        help="auto: newest valid checkpoint (default); never: start over; PATH: that checkpoint",
    )
    sub.add_argument(
        "--force-resume",
        action="store_true",
        help=f"resume even if {inputs} changed since the checkpoint",
    )


def _with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub.add_argument("--config", type=Path, required=True, help="the YAML config")
    sub.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.epochs=3 (repeatable)",
    )
    return sub


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = _stop_on_sigterm()
    try:
        return COMMANDS[_command_name(args)](args)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER
    except BrokenPipeError:
        # `enstack ... | head`: the reader left; stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise  # not the machine's storage: a bug, shown as one
        if args.debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"error: {where}{exc.strerror}; nothing half-written was kept (free space or "
            "permissions, then run the same command again)",
            file=sys.stderr,
        )
        return EXIT_USER
    except KeyboardInterrupt:
        print(
            "interrupted: nothing half-written was kept; the same command goes on from the "
            "last finished stage",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """SIGTERM (`kill`, `timeout`, a scheduler) stops any command as Ctrl-C does: staged output
    is removed and the exit is 130 with one line. Training installs its own handlers while it
    runs (a checkpoint first). Returns the handler to restore (None off the main thread)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _command_name(args: argparse.Namespace) -> str:
    if args.verb == "ckpt":
        return f"ckpt {args.ckpt_verb}"
    if args.verb == "known":
        return f"known {args.known_verb}"
    return args.verb


def _load(args: argparse.Namespace):  # -> Config
    from enstack.config import load_config

    return load_config(args.config, args.overrides)


def cmd_prepare(args: argparse.Namespace) -> int:
    from enstack.data.prepare import format_table, prepare

    config = _load(args)
    result = prepare(config)
    state = "unchanged, nothing to do" if result.skipped else "prepared"
    print(f"{result.data_dir}: {state}")
    print(format_table(result.manifest))
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from enstack.train.signals import Interrupted
    from enstack.train.status import train_unless_done

    config = _load(args)
    try:
        result = train_unless_done(config, args.model, args.resume, force_resume=args.force_resume)
    except Interrupted as stop:
        return _stopped(args, stop)
    if os.environ.get("RANK", "0") != "0":
        return EXIT_OK  # under torchrun, rank 0 reports for all
    state = result.state
    best = "none" if state.best_f1 is None else f"{state.best_f1:.4f}"
    print(
        f"{args.model}: done after {state.epoch} epochs, global step {state.global_step}; "
        f"best val weighted F1 {best}; exports in {result.paths.best} and {result.paths.final}"
    )
    return EXIT_OK


def cmd_distill(args: argparse.Namespace) -> int:
    from enstack.distill.stage import run_distill
    from enstack.train.signals import Interrupted

    try:
        result = run_distill(_load(args), resume=args.resume, force_resume=args.force_resume)
    except Interrupted as stop:
        return _stopped(args, stop)
    state = result.train.state
    best = "none" if state.best_f1 is None else f"{state.best_f1:.4f}"
    print(f"student: done after {state.epoch} epochs; best val weighted F1 {best}")
    for split, agree in result.agreement.items():
        print(
            f"student vs teacher on {split} ({agree['functions']} functions): the same finding "
            f"for {agree['decisions_agree']:.1%}, the same class for {agree['classes_agree']:.1%}"
        )
    print(f"bundle: {result.bundle} (enstack scan --bundle {result.bundle})")
    return EXIT_OK


def cmd_pretrain(args: argparse.Namespace) -> int:
    from enstack.pretrain.stage import run_pretrain
    from enstack.train.signals import Interrupted

    try:
        result = run_pretrain(_load(args), resume=args.resume, force_resume=args.force_resume)
    except Interrupted as stop:
        return _stopped(args, stop)
    if os.environ.get("RANK", "0") != "0":
        return EXIT_OK  # under torchrun, rank 0 reports for all
    state, rows = result.train.state, result.corpus.manifest["rows"]
    # the best epoch's score is 1 / perplexity: its loss is minus its log
    best = "none" if not state.best_f1 else f"{-math.log(state.best_f1):.4f}"
    print(
        f"encoder: done after {state.epoch} epochs, global step {state.global_step}; best val "
        f"MLM loss {best} ({rows['train']} train, {rows['val']} val functions)"
    )
    print(f"model: {result.model} (fine-tune from it: --set models.N.pretrained={result.model})")
    return EXIT_OK


def _stopped(args: argparse.Namespace, stop: Exception) -> int:
    """A training stopped by a signal, its checkpoint saved: the command that resumes it."""
    again = _resume_command(args)
    print(f"stopped at {stop}; checkpoint saved, resume with: {again}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _resume_command(args: argparse.Namespace) -> str:
    """The command that resumes this training: the same one, except that `--resume never`
    (which moves checkpoints aside and starts over) becomes `--resume auto`."""
    import shlex

    words = [os.path.basename(sys.argv[0]) or "enstack", *sys.argv[1:]]
    if words[0].endswith("__main__.py"):
        words[0:1] = ["python", "-m", "enstack"]
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word == "--resume":
            skip = True
            continue
        if word.startswith("--resume="):
            continue
        out.append(word)
    if args.resume not in ("auto", "never"):  # a path: resume from it again
        out += ["--resume", args.resume]
    return shlex.join(out)


def cmd_ckpt_inspect(args: argparse.Namespace) -> int:
    from enstack.ckpt.tools import inspect_text

    print(inspect_text(args.path))
    return EXIT_OK


def cmd_ckpt_verify(args: argparse.Namespace) -> int:
    from enstack.ckpt.layout import verify

    ckpt = verify(args.path)
    print(f"{ckpt.path}: intact (global step {ckpt.global_step})")
    return EXIT_OK


def cmd_ckpt_clean(args: argparse.Namespace) -> int:
    from enstack.ckpt.tools import clean, clean_set_aside

    if args.keep is not None and args.keep < 1:
        raise UserError("--keep must be at least 1")
    if not args.path.is_dir():
        raise UserError(f"{args.path}: no such directory")
    removed, left = clean(args.path, args.keep)
    if args.old:
        old_removed, old_left = clean_set_aside(args.path)
        removed, left = removed + old_removed, left + old_left
    for path in removed:
        print(f"removed {path}")
    for reason in left:
        print(f"left alone {reason}", file=sys.stderr)
    print(f"{args.path}: {len(removed)} removed")
    return EXIT_OK


def cmd_stack(args: argparse.Namespace) -> int:
    from enstack.evaluate.tables import candidate_name, long_functions_text
    from enstack.stack.stage import line_ranker_text, run_stack

    config = _load(args)
    result = run_stack(config)
    state = "unchanged, nothing to do" if result.skipped else "done"
    print(
        f"{result.stack_dir}: {state}; selected on validation: "
        f"{candidate_name(result.summary.selected.as_json())}; "
        f"{line_ranker_text(result.summary)}"
    )
    long = long_functions_text(result.summary.as_json())
    if long:
        print(long)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from enstack.evaluate.stage import run_evaluate
    from enstack.evaluate.tables import plain_table

    reports, summary, skipped = run_evaluate(_load(args))
    print(plain_table(summary.as_json()))
    print(f"{reports}: {'unchanged' if skipped else 'written'}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    return _run_pipeline(_load(args), args.force_resume)


def _run_pipeline(config: Config, force_resume: bool = False) -> int:
    from enstack.pipeline import run_pipeline
    from enstack.train.signals import Interrupted

    try:
        run_pipeline(config, force_resume=force_resume)
    except Interrupted as stop:
        print(f"stopped at {stop}; run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from enstack.pipeline import demo_config

    config = demo_config(args.run_dir.resolve(), args.overrides)
    print(
        f"enstack demo: synthetic C functions (demo data, not a benchmark), three tiny "
        f"models trained from scratch on CPU, into {config.run_dir}",
        file=sys.stderr,
    )
    return _run_pipeline(config)


def cmd_scan(args: argparse.Namespace) -> int:
    from enstack.scan.api import LEVELS, Scanner
    from enstack.scan.cache import default_cache_dir
    from enstack.scan.formats import for_path, render

    if args.overrides and args.config is None:
        raise UserError("--set: only with --config (a bundle's settings are fixed)")
    if args.bundle is None and args.config is None and args.known is None:
        raise UserError("scan: give a model (--bundle or --config), a --known base, or both")
    paths = _scan_paths(args)
    selection = _scan_selection(args, paths)
    baseline = _scan_baseline(args)
    bundle = args.bundle
    if args.config is not None:
        from enstack.stack.stage import selected_bundle

        bundle = selected_bundle(_load(args))
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    scanner = Scanner(
        bundle,
        threshold=args.threshold,
        top_lines=args.top_lines,
        localise=args.localise,
        cache_dir=cache_dir,
        precision=args.precision,
        long_functions=args.long_functions,
        compile_commands=args.compile_commands,
        known=args.known,
    )
    progress = False if args.quiet else None
    report = scanner.scan(paths, progress=progress, selection=selection, baseline=baseline)
    fmt = args.format or (for_path(args.output) if args.output else "text")
    _write_scan_output(args.output, render(report, fmt), report)
    # after the scan: a scan that fails says one `error:` line and nothing else
    if scanner.card is not None:
        if not args.quiet:
            print(scanner.card.headline(), file=sys.stderr)
        for warning in scanner.card.warnings():  # kept with --quiet: they change the reading
            print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(report.summary(), file=sys.stderr)
        print(report.timing(), file=sys.stderr)
    if args.fail_on != "none":
        bar = LEVELS.index(args.fail_on)
        if any(LEVELS.index(level) >= bar for level in report.fails_at):
            return EXIT_FINDINGS
    return EXIT_OK


def _scan_paths(args: argparse.Namespace) -> list[str]:
    if args.paths:
        return list(args.paths)
    if args.changed_since is not None:
        return ["."]  # a pull request's changes anywhere in the tree
    raise UserError("scan: name the files or directories to scan (or - for standard input)")


def _scan_selection(args: argparse.Namespace, paths: list[str]):  # -> Selection
    from enstack.csyntax.parser import SOURCE_SUFFIXES
    from enstack.scan.files import selection_for
    from enstack.scan.scope import changed_since

    suffixes = SOURCE_SUFFIXES
    if args.include:
        suffixes = {s if s.startswith(".") else f".{s}" for s in args.include}
    changes = None
    if args.changed_since is not None:
        roots = [Path(p) for p in paths if p != "-"]
        changes = changed_since(args.changed_since, suffixes=suffixes, roots=roots)
    return selection_for(paths, suffixes, args.exclude, changes)


def _scan_baseline(args: argparse.Namespace):  # -> Baseline | None
    if args.baseline is None:
        return None
    from enstack.scan.suppress import load_baseline

    return load_baseline(args.baseline)


def _write_scan_output(output: Path | None, text: str, report) -> None:
    """Standard output for none or `-`; never over one of the files just scanned; a regular
    file (or a new one) replaced atomically, anything else (a pipe, a device) written to."""
    from enstack.fsutil import atomic_write_text

    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        stat = output.stat()
    except OSError:
        stat = None
    if stat is not None and (stat.st_dev, stat.st_ino) in report.tally.inodes:
        raise UserError(f"--output {output}: is one of the files scanned; refusing to replace it")
    if not output.parent.is_dir():
        raise UserError(f"--output {output}: its directory {output.parent} does not exist")
    try:
        if stat is not None and (output.is_symlink() or not output.is_file()):
            with output.open("w", encoding="utf-8") as handle:  # a FIFO or device: write through
                handle.write(text)
        else:
            atomic_write_text(output, text)
    except OSError as exc:
        raise UserError(f"--output {output}: cannot write it ({exc.strerror})") from None


def cmd_known_build(args: argparse.Namespace) -> int:
    from enstack.known.command import build_base

    print(build_base(args), file=sys.stderr)
    return EXIT_OK


def cmd_quantise(args: argparse.Namespace) -> int:
    from enstack.scan.card import read_card

    source, out = args.bundle, args.out
    if out.exists() or out.is_symlink():
        raise UserError(f"--out {out}: already exists (give a new directory)")
    card = read_card(source)
    if out.resolve().is_relative_to(source.resolve()):  # it would change what it copies
        raise UserError(f"--out {out}: inside {source} (give a directory outside it)")
    if card.stored_precision == "int8":
        raise UserError(f"{source}: already int8")
    from enstack.scan.model import untrusted_files
    from enstack.stack.bundle import write_int8_bundle, write_int8_export

    with untrusted_files(source):
        if card.kind == "bundle":
            sizes = write_int8_bundle(source, out)
        else:
            from enstack.fsutil import staged_dir

            with staged_dir(out) as tmp:
                sizes = write_int8_export(source, tmp)
    mb = {k: v / 1e6 for k, v in sizes.items()}
    print(
        f"{out}: int8 weights, {mb['int8']:.1f} MB (fp32 {mb['fp32']:.1f} MB); scan with "
        f"`enstack scan --bundle {out}` (CPU)"
    )
    return EXIT_OK


def cmd_known_inspect(args: argparse.Namespace) -> int:
    from enstack.known.command import inspect_base

    print(inspect_base(args.path))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "scan": cmd_scan,
    "prepare": cmd_prepare,
    "demo": cmd_demo,
    "train": cmd_train,
    "distill": cmd_distill,
    "pretrain": cmd_pretrain,
    "stack": cmd_stack,
    "evaluate": cmd_evaluate,
    "run": cmd_run,
    "quantise": cmd_quantise,
    "known build": cmd_known_build,
    "known inspect": cmd_known_inspect,
    "ckpt inspect": cmd_ckpt_inspect,
    "ckpt verify": cmd_ckpt_verify,
    "ckpt clean": cmd_ckpt_clean,
}
