"""CWE ids as datasets write them (`"CWE-787"`, `"cwe-476"`, `787`, a list, the string of a
list, `NVD-CWE-Other`), read into one form: what `data.cwe_map`'s keys are validated as, and
what enstack.data.cwe maps onto the configured classes."""

from __future__ import annotations

import re

# ASCII digits, at most nine: `CWE-` and 5,000 digits, or a superscript two, is no CWE id
CWE_ID = re.compile(r"(?i)\b(?:CWE-([0-9]{1,9})|NVD-CWE-[a-z]+)\b")
NUMBER = re.compile(r"[0-9]{1,9}")


def cwe_ids(value: object) -> list[str]:
    """Every CWE id in a dataset's value, normalised (`CWE-787`, `NVD-CWE-Other`)."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [f"CWE-{value}"] if value >= 0 else []
    if isinstance(value, float):
        return [f"CWE-{int(value)}"] if value.is_integer() and value >= 0 else []
    if isinstance(value, list | tuple):  # flattened without recursion: a list 900 deep is data
        found, stack = [], [value]
        while stack:
            item = stack.pop()
            if isinstance(item, list | tuple):
                stack.extend(reversed(item))
            else:
                found += cwe_ids(item)
        return found
    text = str(value).strip()
    if NUMBER.fullmatch(text):
        return [f"CWE-{int(text)}"]
    found = []
    for match in CWE_ID.finditer(text):
        number = match.group(1)
        found.append(f"CWE-{int(number)}" if number else _nvd(match.group(0)))
    return found


def _nvd(text: str) -> str:
    return "NVD-CWE-" + text.split("-", 2)[2].capitalize()
