"""Synthetic C functions for the five paper classes: demo data, not a benchmark.

Each function is a vulnerable core (several variants per class) wrapped in a random control-flow
construct and surrounded by benign noise statements, with random identifiers, types and buffer
sizes. The noise deliberately uses the same calls as the cores in their safe form (a guarded
strcpy, a checked pointer, a same-buffer pointer difference, a single free), so no single token
gives the class away: a model has to look at how the calls are used.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np

from enstack.config import DataConfig
from enstack.data.chunks import Chunk
from enstack.labels import PAPER_LABELS

NAMES = [
    "buf",
    "data",
    "dest",
    "src",
    "line",
    "input",
    "out",
    "tmp",
    "name",
    "msg",
    "path",
    "block",
    "record",
    "field",
    "text",
    "payload",
    "packet",
    "token",
    "key",
    "value",
]
INT_TYPES = ["int", "long", "short", "unsigned int", "size_t"]
CHAR_TYPES = ["char", "unsigned char"]
SIZES = [8, 10, 16, 20, 32, 50, 64, 100, 128, 256]


class Scope:
    """Random, non-colliding identifiers and sizes for one function."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def name(self) -> str:
        while True:
            base = self.rng.choice(NAMES)
            candidate = base if base not in self.used else f"{base}{self.rng.randint(1, 99)}"
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def size(self) -> int:
        return self.rng.choice(SIZES)

    def ctype(self) -> str:
        return self.rng.choice(CHAR_TYPES)

    def itype(self) -> str:
        return self.rng.choice(INT_TYPES)


# --- cores: each returns the statements of the flaw, or of its fix ---------------------------
# A core draws the same random values whether it writes the flaw or the fix, so a fixed twin
# generated from the same seed has the flawed function's shape, names and noise: the pair
# differs only where the flaw does (the bound checked, the pointer tested, the size computed).


def _cwe119(s: Scope, fixed: bool) -> list[str]:
    buf, i, n = s.name(), s.name(), s.size()
    t = s.rng.choice(["int", "char", "long"])
    variant = s.rng.randrange(4)
    if variant == 0:  # off-by-one loop bound
        return [
            f"{t} {buf}[{n}];",
            f"int {i};",
            f"for ({i} = 0; {i} {'<' if fixed else '<='} {n}; {i}++) {{",
            f"    {buf}[{i}] = 0;",
            "}",
        ]
    if variant == 1:  # index checked only from below
        check = f"{i} >= 0 && {i} < {n}" if fixed else f"{i} >= 0"
        return [
            f"{t} {buf}[{n}] = {{0}};",
            f'int {i} = atoi(getenv("{i.upper()}"));',
            f"if ({check}) {{",
            f"    {buf}[{i}] = 1;",
            "}",
        ]
    if variant == 2:  # memcpy larger than the destination
        src = s.name()
        m = n + s.rng.choice([4, 8, 16, 50])
        return [
            f"{t} {buf}[{n}];",
            f"{t} {src}[{m}];",
            f"memset({src}, 0, sizeof({src}));",
            f"memcpy({buf}, {src}, {n if fixed else m} * sizeof({t}));",
        ]
    return [
        f"{t} {buf}[{n}];",
        f"int {i};",
        f"for ({i} = 0; {i} < {n}; {i}++) {buf}[{i}] = {i};",
        f'printf("%d\\n", (int){buf}[{n - 1 if fixed else n}]);',
    ]  # read one past the end


def _cwe120(s: Scope, fixed: bool) -> list[str]:
    dst, src, n = s.name(), s.name(), s.size()
    c = s.ctype()
    m = n * s.rng.choice([2, 4])
    fill = s.rng.choice(
        [
            [f"char {src}[{m}];", f"fgets({src}, sizeof({src}), stdin);"],
            [f"char {src}[{m}];", f"memset({src}, 'A', {m} - 1);", f"{src}[{m} - 1] = '\\0';"],
            [f'const char *{src} = getenv("{src.upper()}");', f"if ({src} == NULL) return;"],
        ]
    )
    variant = s.rng.randrange(4)
    k = s.name()
    if variant == 0:
        copy = (
            [f"strncpy((char *){dst}, {src}, sizeof({dst}) - 1);", f"{dst}[{n} - 1] = '\\0';"]
            if fixed
            else [f"strcpy((char *){dst}, {src});"]
        )
        return [f"{c} {dst}[{n}];", *fill, *copy]
    if variant == 1:
        append = (
            f"strncat((char *){dst}, {src}, sizeof({dst}) - strlen((char *){dst}) - 1);"
            if fixed
            else f"strcat((char *){dst}, {src});"
        )
        return [f'{c} {dst}[{n}] = "";', *fill, append]
    if variant == 2:
        call = f"snprintf((char *){dst}, sizeof({dst}), " if fixed else f"sprintf((char *){dst}, "
        return [f"{c} {dst}[{n}];", *fill, call + f'"%s", {src});']
    bound = f"{k} < {n} - 1 && " if fixed else ""
    return [
        f"{c} {dst}[{n}];",
        *fill,
        f"size_t {k};",
        f"for ({k} = 0; {bound}{src}[{k}] != '\\0'; {k}++) {{",
        f"    {dst}[{k}] = {src}[{k}];",
        "}",
        *([f"{dst}[{k}] = '\\0';"] if fixed else []),
    ]


def _cwe469(s: Scope, fixed: bool) -> list[str]:
    a, b, p, n = s.name(), s.name(), s.name(), s.size()
    size = s.name()
    variant = s.rng.randrange(3)
    q = s.name()
    if variant == 0:  # pointers into two different buffers
        return [
            f"char {a}[{n}];",
            f"char {b}[{n}];",
            f"char *{p} = strchr({a}, '/');",
            f"if ({p} == NULL) return;" if fixed else "",
            f"size_t {size} = {p} - {a if fixed else b};",
            f"memset({b}, 0, {size});",
        ]
    if variant == 1:
        return [
            f"int {a}[{n}];",
            f"int {b}[{n}];",
            f"int *{p} = {a} + {n // 2};",
            f"int *{q} = {a if fixed else b};",
            f"long {size} = {p} - {q};",
            f'printf("%ld\\n", {size});',
        ]
    return [
        f"char *{a} = malloc({n});",
        f"char *{b} = malloc({n});",
        f"char *{p} = {a} + strlen({a});",
        f"int {size} = (int)({p} - {a if fixed else b});",
        f"memcpy({b}, {a}, {size});",
        f"free({a});",
        f"free({b});",
    ]


def _cwe476(s: Scope, fixed: bool) -> list[str]:
    p, n = s.name(), s.size()
    t = s.rng.choice(["int", "char", "long"])
    variant = s.rng.randrange(3)
    x, flag = s.name(), s.name()
    guard = [f"if ({p} == NULL) return;"] if fixed else []
    if variant == 0:  # unchecked allocation
        return [
            f"{t} *{p} = ({t} *)malloc({n} * sizeof({t}));",
            *guard,
            f"{p}[0] = 5;",
            f"free({p});",
        ]
    if variant == 1:  # conditionally assigned pointer
        return [
            f"{t} {x} = 3;",
            f"{t} *{p} = NULL;",
            f"int {flag} = rand() % 2;",
            f"if ({flag}) {{",
            f"    {p} = &{x};",
            "}",
            *guard,
            f"*{p} = 7;",
        ]
    return [
        f'char *{p} = getenv("{p.upper()}");',
        *guard,
        f"size_t {x} = strlen({p});",
        f'printf("%zu\\n", {x});',
    ]


def _cwe_other(s: Scope, fixed: bool) -> list[str]:
    p, a, b = s.name(), s.name(), s.name()
    variant = s.rng.randrange(5)
    n = s.size()
    if variant == 0:  # integer overflow in an allocation size
        limit = [f"if ({a} <= 0 || {a} > INT_MAX / {n}) return;"] if fixed else []
        return [
            f'int {a} = atoi(getenv("{a.upper()}"));',
            *limit,
            f"int {b} = {a} * {n};",
            f"char *{p} = malloc({b});",
            f"if ({p} != NULL) {{",
            f"    free({p});",
            "}",
        ]
    if variant == 1:  # format string
        call = f'printf("%s", {a});' if fixed else f"printf({a});"
        return [f"char {a}[{n}];", f"fgets({a}, sizeof({a}), stdin);", call]
    if variant == 2:  # double free
        return [
            f"char *{p} = malloc({n});",
            f"if ({p} == NULL) return;",
            f"free({p});",
            f"{p} = NULL;" if fixed else f"free({p});",
        ]
    if variant == 3:  # use after free
        use = [f"{p}[0] = 1;", f"free({p});"]
        return [
            f"int *{p} = malloc({n} * sizeof(int));",
            f"if ({p} == NULL) return;",
            *(use if fixed else use[::-1]),
        ]
    guard = [f"if ({a} == 0) return;"] if fixed else []
    return [
        f'int {a} = atoi(getenv("{a.upper()}"));',
        *guard,
        f"int {b} = 100 / {a};",
        f'printf("%d\\n", {b});',
    ]  # divide by an unchecked input


CORES: dict[str, Callable[[Scope, bool], list[str]]] = dict(
    zip(PAPER_LABELS, [_cwe119, _cwe120, _cwe469, _cwe476, _cwe_other], strict=True)
)


# --- benign noise: the same calls, used safely ------------------------------------------------


def _noise(s: Scope) -> list[str]:
    a, b, n = s.name(), s.name(), s.size()
    choice = s.rng.randrange(10)
    if choice == 0:
        return [
            f"char {a}[{n}];",
            f'if (strlen("hello") < sizeof({a})) {{',
            f'    strcpy({a}, "hello");',
            "}",
        ]
    if choice == 1:
        return [
            f"int *{a} = malloc({n} * sizeof(int));",
            f"if ({a} != NULL) {{",
            f"    {a}[0] = 0;",
            f"    free({a});",
            "}",
        ]
    if choice == 2:
        return [
            f"char {a}[{n}];",
            f"char *{b} = {a} + {n // 2};",
            f"size_t {s.name()} = {b} - {a};",
        ]
    if choice == 3:
        return [
            f"int {a}[{n}];",
            f"int {b};",
            f"for ({b} = 0; {b} < {n}; {b}++) {{",
            f"    {a}[{b}] = {b};",
            "}",
        ]
    if choice == 4:
        return [
            f"{s.itype()} {a} = {s.rng.randint(0, 9)};",
            f"{a} = {a} + 1;",
            f'printf("%d\\n", (int){a});',
        ]
    if choice == 5:
        return [
            f"char {a}[{n}];",
            f"memset({a}, 0, sizeof({a}));",
            f'strncpy({a}, "data", sizeof({a}) - 1);',
        ]
    if choice == 6:
        return [
            f"char {a}[{n}];",
            f'snprintf({a}, sizeof({a}), "%s", "ok");',
            f'printf("%s\\n", {a});',
        ]
    if choice == 7:
        return [
            f'char *{a} = getenv("HOME");',
            f"if ({a} != NULL) {{",
            f'    printf("%zu\\n", strlen({a}));',
            "}",
        ]
    if choice == 8:
        return [
            f"char {a}[{n}];",
            f"if (fgets({a}, sizeof({a}), stdin) != NULL) {{",
            f'    printf("%s", {a});',
            "}",
        ]
    return [f"int {a} = rand();", f"if ({a} != 0) {{", f"    {a} = 100 / {a};", "}"]


def _wrap(s: Scope, body: list[str]) -> list[str]:
    inner = ["    " + line for line in body]
    kind = s.rng.randrange(6)
    if kind == 0:
        return body
    if kind == 1:
        return ["if (GLOBAL_CONST_TRUE) {", *inner, "}"]
    if kind == 2:
        return ["while (1) {", *inner, "    break;", "}"]
    if kind == 3:
        k = s.name()
        return [f"int {k};", f"for ({k} = 0; {k} < 1; {k}++) {{", *inner, "}"]
    if kind == 4:
        return [
            "switch (rand() % 3) {",
            "case 0:",
            "{",
            *inner,
            "}",
            "break;",
            "default:",
            "break;",
            "}",
        ]
    return ["do {", *inner, "} while (0);"]


def synthetic_function(label: str, rng: random.Random, fixed: bool = False) -> str:
    """A function whose core is `label`'s flaw, or with `fixed`, the same flaw repaired."""
    s = Scope(rng)
    body: list[str] = []
    for _ in range(rng.randint(0, 2)):
        body += _noise(s)
    core = [line for line in CORES[label](s, fixed) if line]
    body += ["{", *("    " + line for line in _wrap(s, core)), "}"]
    for _ in range(rng.randint(0, 2)):
        body += _noise(s)
    ret, tail = rng.choice([("void", []), ("int", ["return 0;"])])
    name = f"{rng.choice(['process', 'handle', 'run', 'parse', 'load', 'copy'])}_{s.name()}"
    args = rng.choice(["void", "int argc, char **argv", "const char *arg", "int mode"])
    lines = [f"{ret} {name}({args})", "{", *("    " + line for line in body + tail), "}"]
    return "\n".join(lines)


def synthetic_labels(data: DataConfig) -> list[str]:
    """The classes synthetic data has under `data`: the paper's five, and the benign one when
    `data.labels` asks for it."""
    benign = [data.benign_label] if data.benign_label in data.labels else []
    return [*PAPER_LABELS, *benign]


def generate(data: DataConfig, seed: int) -> Iterator[Chunk]:
    """`n_per_class` distinct flawed functions per class, interleaved, identical for a seed.

    With a benign class, each flawed function comes with its fixed twin, and both carry the
    pair id `synthetic-pair:N`.
    """
    rng = random.Random(seed)
    class_id = {name: i for i, name in enumerate(data.labels)}
    benign = data.benign_id
    seen: set[str] = set()
    rows: list[tuple[str, int, str | None]] = []
    for label in PAPER_LABELS:
        made = 0
        while made < data.synthetic.n_per_class:
            twin_seed = rng.getrandbits(64)
            code = synthetic_function(label, random.Random(twin_seed))
            key = " ".join(code.split())
            if key in seen:
                continue
            seen.add(key)
            made += 1
            if benign is None:
                rows.append((code, class_id[label], None))
                continue
            pair = f"synthetic-pair:{len(rows) // 2}"
            fix = synthetic_function(label, random.Random(twin_seed), fixed=True)
            seen.add(" ".join(fix.split()))
            rows += [(code, class_id[label], pair), (fix, benign, pair)]
    rng.shuffle(rows)
    for start in range(0, len(rows), data.chunk_rows):
        part = rows[start : start + data.chunk_rows]
        ids = [f"synthetic:{start + i}" for i in range(len(part))]
        labels = np.asarray([label for _, label, _ in part], np.int16)
        pairs = [pair for _, _, pair in part] if benign is not None else None
        yield Chunk(ids, [code for code, _, _ in part], labels, pairs=pairs)
