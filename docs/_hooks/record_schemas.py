"""MkDocs hook: the Records page's field tables and JSON schemas, generated at build time from
the pydantic models the stages write and read, so the page cannot drift from the code.
`docs/records.md` holds the marker it replaces."""

from __future__ import annotations

import json

MARKER = "<!-- record-schemas -->"


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs calls it so
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())


def records() -> list[tuple[str, str, type]]:
    """(title, where it is written, model) for every record a stage hands on."""
    from enstack.ckpt.schema import CheckpointState
    from enstack.data.record import PreparedData
    from enstack.scan.formats.document import ScanDocument
    from enstack.stack.summary import StackSummary

    return [
        ("Prepared data", "run_dir/data/manifest.json", PreparedData),
        ("Training state", "a checkpoint's state.json", CheckpointState),
        ("Stack summary", "run_dir/stack/ablation.json", StackSummary),
        ("Scan report", "enstack scan --format json", ScanDocument),
    ]


def reference() -> str:
    out: list[str] = []
    for title, where, model in records():
        schema = model.model_json_schema(by_alias=True)
        out += [f"## {title}", "", f"`{model.__module__}.{model.__name__}`: `{where}`.", ""]
        out += [" ".join((model.__doc__ or "").split()), ""]
        out += field_table(schema)
        for name, part in schema.get("$defs", {}).items():
            out += [f"### {title}: `{name}`", "", " ".join(part.get("description", "").split())]
            out += ["", *field_table(part)]
        out += [
            f'??? note "JSON schema of {title.lower()}"',
            "",
            "    ```json",
            *("    " + line for line in json.dumps(schema, indent=2).splitlines()),
            "    ```",
            "",
        ]
    return "\n".join(out)


def field_table(schema: dict) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | present | what it holds |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        need = "required" if name in required else "optional"
        about = " ".join(prop.get("description", "").split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {type_text(prop)} | {need} | {about} |")
    return [*rows, ""]


def type_text(prop: dict) -> str:
    """A property's JSON type in a few words: `integer`, `array of string`, `Candidate`."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(type_text(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {type_text(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"object of {type_text(prop['additionalProperties'])}"
    return kind
