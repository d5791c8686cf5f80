"""MkDocs hook: the CLI reference page, written at build time from enstack's own argparse
parsers, so it cannot drift from the code. `docs/cli.md` holds the marker it replaces."""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs calls it so
    if MARKER not in markdown:
        return markdown
    from enstack.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help at this width: the same on every build
    return markdown.replace(MARKER, reference(build_parser()))


def reference(parser: argparse.ArgumentParser) -> str:
    """Each command's usage and options, in the order `enstack --help` lists them."""
    out: list[str] = []
    for name, sub in _commands(parser, "enstack"):
        out += [f"## `{name}`", ""]
        if sub.description:
            out += [sub.description, ""]
        out += ["```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _commands(parser: argparse.ArgumentParser, prefix: str):
    """(name, parser) for every command and subcommand, depth first."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix, parser
        return
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from _commands(sub, f"{prefix} {name}")
