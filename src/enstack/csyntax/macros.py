"""Macros that stand where C declares a function, read as what they are, for the parser.

tree-sitter parses C without a preprocessor, so `uLong ZEXPORT adler32(...)`, `LUA_API int
lua_gettop(...)`, `static void XMLCALL startElement(...)`, `local void f(...)` (zlib's
`#define local static`) and `void f OF((int a));` are not C to it: the function around them
becomes an error block, or is named after its return type. `blank_specifier_macros` returns the
source with each such macro replaced by spaces (an `OF((...))` wrapper by its inner
parentheses), byte for byte the same length, so every offset and line number still points into
the original text.

What counts as a macro in a declaration (no preprocessor, so this is a reading, not a proof):
- a name the file `#define`s as nothing, or as specifiers, calling conventions and attributes
  only (`#define XMLCALL __cdecl`, `#define local static`);
- an all-caps name after the return type has begun (`int ZEXPORT f`, `DWORD WINAPI f`);
- any name that is not a keyword, right before a type keyword (`LUA_API int f`);
- an all-caps name wrapping a parameter list in double parentheses (`f OF((int a))`).
Only the tokens between a statement boundary and a function's name are read, and nothing is
blanked where no type would remain before the name.
"""

from __future__ import annotations

import re

# comments, string and character literals and directives: read as blanks (newlines kept), so a
# directive inside a declaration (`#endif` before the name) is no end of it
_NOT_CODE = re.compile(
    rb"""//[^\n]*|/\*.*?(?:\*/|\Z)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?"""
    rb"""|^[ \t]*\#(?:\\\r?\n|[^\n])*""",
    re.DOTALL | re.MULTILINE,
)
# a line holding only an all-caps name, or an all-caps call, with no `;`: a statement macro
# (`END_TEST`, `UNUSED(x)`) that, to a parser, runs into the next line
_LONE_MACRO = re.compile(
    rb"^[ \t]*[A-Z_][A-Z0-9_]*(?P<call>[ \t]*\((?:[^()\n]|\([^()\n]*\))*\))?[ \t]*$", re.MULTILINE
)
# a run of operator characters is one token: only `;{}()*&,=[` are read one by one
_TOKENS = re.compile(
    rb"(?P<name>[A-Za-z_]\w*)|(?P<punct>\d[\w.]*|[;{}()*&,=\[]|[^\w\s;{}()*&,=\[]+)"
)
_BLANK = bytes(10 if byte == 10 else 32 for byte in range(256))  # every byte but `\n` to a space
_DEFINE = re.compile(rb"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)(?![\w(])[ \t]*(.*)$", re.MULTILINE)
_CAPS = re.compile(rb"^[A-Z_][A-Z0-9_]+$")

TYPE_KEYWORDS = frozenset(
    b"void int char short long float double signed unsigned _Bool bool struct union enum "
    b"static extern inline __inline __inline__ register".split()
)
QUALIFIERS = frozenset(b"const volatile restrict __restrict auto typedef".split())
TAGS = frozenset(b"struct union enum".split())
KEYWORDS = (
    TYPE_KEYWORDS
    | QUALIFIERS
    | frozenset(
        b"if else for while do switch case return sizeof goto break continue default".split()
    )
)
# what may stand in a specifier macro's definition: storage, qualifiers, calling conventions and
# attributes, never a type (`#define Rand64 unsigned long long` names a type)
SPECIFIER_WORDS = frozenset(
    b"static extern inline __inline __inline__ register const volatile restrict __restrict "
    b"__cdecl __stdcall __fastcall __declspec __attribute__ __attribute _cdecl WINAPI "
    b"__export __far __near far near FAR NEAR dllexport dllimport visibility default "
    b"hidden noinline always_inline unused used".split()
)
STORAGE = frozenset(b"static extern register inline __inline __inline__".split())
_BOUNDARY = frozenset((b";", b"{", b"}"))
ATTRIBUTES = frozenset(b"__attribute__ __attribute __declspec __asm__ __asm asm".split())
STARTS_DECLARATION = TYPE_KEYWORDS | QUALIFIERS | ATTRIBUTES
# what may follow a statement macro alone on its line (`PCRE2_FALLTHROUGH` before `case`)
STARTS_STATEMENT = STARTS_DECLARATION | frozenset(
    b"case default return break continue goto if for while do switch else".split()
)
_DECLARATOR_ENDS = frozenset((b";", b"=", b",", b"["))  # what may follow a variable's name


def learned_specifiers(source: bytes) -> frozenset[bytes]:
    """Names `source` defines as nothing, or as specifiers and attributes only."""
    learned = set()
    for match in _DEFINE.finditer(source):
        body = re.sub(rb"/\*.*?\*/|//.*", b"", match.group(2)).strip()
        words = set(re.findall(rb"[A-Za-z_]\w*", body))
        if not body or (words and words <= SPECIFIER_WORDS and b"=" not in body):
            learned.add(match.group(1))
    return frozenset(learned)


def blank_specifier_macros(
    source: bytes,
    learned: frozenset[bytes] = frozenset(),
    regions: list[tuple[int, int]] | None = None,
) -> bytes:
    """`source` with the macros in function declarations blanked (see the module docstring);
    the same length, newlines kept. With `regions` (byte ranges that begin and end between
    top-level declarations), only those are read: the rest of the file parsed as it is."""
    learned = learned | learned_specifiers(source)
    out = bytearray(source)
    code = bytearray(_NOT_CODE.sub(_spaces, source))
    for start, end in _lone_macros(bytes(code)):  # the whole file: a regex, and cheap
        out[start:end] = code[start:end] = b" " * (end - start)
    for start, end in regions if regions is not None else [(0, len(source))]:
        _blank_declarations(out, bytes(code[start:end]), start, learned)
    return bytes(out)


def _blank_declarations(
    out: bytearray, code: bytes, offset: int, learned: frozenset[bytes]
) -> None:
    """Blank, in `out`, the macros of the declarations in `code` (comments, literals and
    directives already blanked), which begins at `offset` of the file."""
    run: list[tuple[bytes, int, int]] = []  # names and `*`/`&` since the last boundary
    tokens = [
        (m.lastgroup, m.group(), m.start() + offset, m.end() + offset)
        for m in _TOKENS.finditer(code)
    ]
    if any(word in code for word in (b"__attribute", b"__declspec", b"asm")):
        tokens = _without_attributes(tokens)
    tokens = _without_macro_calls(out, tokens)
    lists: list[bool] = []  # per open parenthesis: True where it holds parameters
    for i, (kind, text, start, end) in enumerate(tokens):
        if kind == "name":
            if _cast_macro(tokens, i, lists):
                out[start:end] = b" " * (end - start)
                continue
            run.append((text, start, end))
            continue
        if text == b"(":
            lists.append(run[:1] != [(b"", -1, -1)] and sum(t[0] not in b"*&" for t in run) > 1)
        elif text == b")" and lists:
            lists.pop()
        elif text in _BOUNDARY:
            lists.clear()
        before = tokens[i - 1] if i else ("punct", b"", 0, 0)
        if text == b"(" and (before[0] != "name" or before[1] in KEYWORDS):
            _blank_cast(out, tokens, i, learned)  # not a parameter list: `f(Rand64 x)`
        if text == b"(" and before[0] == "name" and before[1] not in KEYWORDS:
            _blank_type_arguments(out, tokens, i)
        if text == b"(" and run:
            _blank_declaration(out, run, tokens, i, learned)
        elif text in _DECLARATOR_ENDS and len(run) > 2 and run[0][1] >= 0 and run[-1][0]:
            _blank_prefix(out, run[:-1], learned)  # `struct state FAR *s;`: a variable
        if kind == "punct" and text in (b"*", b"&") and run:
            run.append((text, start, end))
            continue
        run = []
        if kind == "punct" and text not in _BOUNDARY:
            run = [(b"", -1, -1)]  # poisoned until the next boundary: not a declaration


def _blank_declaration(out: bytearray, run: list, tokens: list, at: int, learned) -> None:
    """`run` ends in a name followed by `(` at `tokens[at]`: blank its specifier macros."""
    if run[0][1] < 0:
        return
    name = run[-1][0]
    if _CAPS.match(name) and len(run) > 1 and _next_punct(tokens, at) == b"(":
        _blank_wrapper(out, run[-1], tokens, at)
        run = run[:-1]
        name = run[-1][0]
    if name in KEYWORDS or not name or name in (b"*", b"&"):
        return
    _blank_prefix(out, run[:-1], learned)
    for parameter in _parameters(tokens, at):
        names = [t for t in parameter if t[0] not in (b"*", b"&")]
        if len(names) > 2 and _CAPS.match(names[-1][0]) and parameter[-2][0] not in b"*&":
            _, start, end = parameter.pop()  # `void *ctx ATTRIBUTE_UNUSED`: after the name
            out[start:end] = b" " * (end - start)
        _blank_prefix(out, parameter[:-1], learned)


def _blank_prefix(out: bytearray, run: list, learned: frozenset[bytes]) -> None:
    """Blank the macros among the names before a declared name (or the names of a type in a
    cast), where a type remains."""
    prefix = [t for t in run if t[0] not in (b"*", b"&")]
    if len(prefix) < 2:
        return  # one name is the type itself
    doomed = _specifier_macros(prefix, learned)
    kept = [t for t in prefix if t not in doomed and t[0] not in QUALIFIERS]
    if not doomed or not kept:
        return
    for _, start, end in doomed:
        out[start:end] = b" " * (end - start)


def _parameters(tokens: list, at: int) -> list[list]:
    """The parameters of the list opening at `tokens[at]` that are names and `*` only
    (`unsigned FAR *have`); others (function pointers, arrays, defaults) are left alone."""
    parameters: list[list] = []
    current: list | None = []
    for index in range(at + 1, len(tokens)):
        kind, text, start, end = tokens[index]
        if kind == "name" or text in (b"*", b"&"):
            if current is not None:
                current.append((text, start, end))
            continue
        if text in (b",", b")"):
            if current and len(current) > 2:
                parameters.append(current)
            if text == b")":
                break
            current = []
            continue
        if text in _BOUNDARY:
            break
        current = None  # `(`, `[`, `=`: not a plain parameter; skip to the next comma
        if text == b"(":
            break  # a nested list: parameters past it are not read (rare, and safe)
    return parameters


def _specifier_macros(prefix: list, learned: frozenset[bytes]) -> list:
    """The tokens of a declaration's prefix that are macros: one type must remain."""
    doomed = [t for t in prefix if t[0] in learned]
    plain: list = []  # names that are neither keywords nor a struct/enum/union's tag
    keyword_typed = False  # `int`, `struct tag`: the type is spelt in keywords
    after_tag = False
    for token in prefix:
        text = token[0]
        if after_tag:
            after_tag, keyword_typed = False, True
        elif text in TAGS:
            after_tag = True
        elif text in KEYWORDS:
            keyword_typed = keyword_typed or text in TYPE_KEYWORDS - STORAGE
        elif token not in doomed:
            plain.append((token, keyword_typed))
    if keyword_typed:  # `LUA_API int`, `local void`, `int ZEXPORT`, `void XMLCALL`
        return doomed + [t for t, typed in plain if not typed or _CAPS.match(t[0])]
    if len(plain) < 2:
        return doomed
    # the type is one of the names: the last that is not all caps (`local gzFile`, `LUA_API
    # lua_Number`), else the first (`DWORD WINAPI`, `uLong ZEXPORT`)
    names = [t for t, _ in plain]
    lower = [t for t in names if not _CAPS.match(t[0])]
    keep = lower[-1] if lower else names[0]
    return doomed + [t for t in names if t is not keep]


def _without_attributes(tokens: list) -> list:
    """The tokens without `__attribute__((...))`, `__declspec(...)` and their arguments: the
    parser reads these annotations itself, but to the declaration reader they would be a
    call that ends the declaration."""
    kept: list = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token[1] in ATTRIBUTES and index + 1 < len(tokens) and tokens[index + 1][1] == b"(":
            close = _matching(tokens, index + 1)
            if close is not None:
                index = close + 1
                continue
        kept.append(token)
        index += 1
    return kept


def _without_macro_calls(out: bytearray, tokens: list) -> list:
    """All-caps calls inside a declaration, read as the parser cannot:
    - between names (`static void LIBXML_ATTR_FORMAT(3,0) f(`, `void ATTR_MALLOC *g(`):
      an attribute, blanked with its arguments (`x * F(y) * z` is a product: not touched);
    - first in a declaration and around its type (`XMLPARSEAPI(XML_Parser) create(`): the
      type, unwrapped (the name and its parentheses blanked)."""
    kept: list = []
    index = 0
    while index < len(tokens):
        kind, text, start, _ = tokens[index]
        call = kind == "name" and _CAPS.match(text) and index + 1 < len(tokens)
        close = _matching(tokens, index + 1) if call and tokens[index + 1][1] == b"(" else None
        if close is None or close + 1 >= len(tokens):
            kept.append(tokens[index])
            index += 1
            continue
        previous = kept[-1] if kept else ("punct", b";", 0, 0)
        after = tokens[close + 1]
        between = previous[0] == "name" and previous[1] not in KEYWORDS - TYPE_KEYWORDS
        if between and (after[0] == "name" or after[1] == b"*"):
            out[start : tokens[close][3]] = bytes(out[start : tokens[close][3]]).translate(_BLANK)
            index = close + 1
            continue
        first = previous[1] in _BOUNDARY
        if (
            first
            and after[0] == "name"
            and close + 2 < len(tokens)
            and tokens[close + 2][1] == b"("
        ):
            for blank_start, blank_end in ((start, tokens[index + 1][3]), tokens[close][2:4]):
                out[blank_start:blank_end] = b" " * (blank_end - blank_start)
            kept.extend(tokens[index + 2 : close])
            index = close + 1
            continue
        kept.append(tokens[index])
        index += 1
    return kept


def _matching(tokens: list, at: int) -> int | None:
    """The index of the `)` that closes the `(` at `tokens[at]`; None if it is never closed."""
    depth = 0
    for index in range(at, len(tokens)):
        text = tokens[index][1]
        if text == b"(":
            depth += 1
        elif text == b")":
            depth -= 1
            if depth == 0:
                return index
    return None


def _blank_cast(out: bytearray, tokens: list, at: int, learned: frozenset[bytes]) -> None:
    """A type name in parentheses (a cast, `sizeof`): names and `*` only, two names at least,
    ending in `*` or with no `*` at all (`(a * b)` is a product): `(z_const Bytef *)`."""
    names = []
    stars = 0
    for index in range(at + 1, min(at + 12, len(tokens))):
        kind, text, start, end = tokens[index]
        if kind == "name":
            names.append((text, start, end))
        elif text in (b"*", b"&"):
            stars += 1
        elif text == b")":
            ends_in_star = tokens[index - 1][1] in (b"*", b"&")
            if len(names) > 1 and (ends_in_star or not stars):
                _blank_prefix(out, names, learned)
            return
        else:
            return


OPERATORS = frozenset(
    b"< > <= >= == != + - * / % & | ^ << >> && || = += -= *= /=".split()
)  # one of these alone as an argument: a macro compares or computes with it
_EXPRESSION_STARTS = frozenset((b"=", b"return", b"?", b"!", b"&&", b"||"))


def _cast_macro(tokens: list, at: int, lists: list[bool]) -> bool:
    """An all-caps name that begins an operand and is followed by another operand
    (`f(BAD_CAST url)`, `x = CUS name(...)`): two names in a row are C nowhere in an
    expression, so it is a macro that expands to a cast. Not inside a parameter list, where
    `f(DWORD x)` is a type and a name."""
    text = tokens[at][1]
    if at == 0 or at + 1 >= len(tokens) or not _CAPS.match(text):
        return False
    after = tokens[at + 1]
    if after[0] != "name" or after[1] in KEYWORDS:
        return False
    previous = tokens[at - 1][1]
    if previous in (b"(", b","):
        return bool(lists) and not lists[-1]
    return previous in _EXPRESSION_STARTS


def _blank_type_arguments(out: bytearray, tokens: list, at: int) -> None:
    """What only a macro takes as an argument: a type (`png_voidcast(png_byte *, p)`,
    `va_arg(ap, char *)`: names and `*`, ending in `*`) or an operator alone
    (`ND_ICHECK_U(length, <, 4)`). It becomes `0` and spaces, an expression the parser reads,
    the commas kept."""
    first = at + 1
    for index in range(at + 1, min(at + 40, len(tokens))):
        text = tokens[index][1]
        if text in (b",", b")"):
            argument = tokens[first:index]
            operator = len(argument) == 1 and argument[0][1] in OPERATORS
            if operator or (
                len(argument) > 1
                and argument[-1][1] == b"*"
                and all(t[0] == "name" or t[1] == b"*" for t in argument)
            ):
                start, end = argument[0][2], argument[-1][3]
                out[start:end] = b"0" + b" " * (end - start - 1)
            if text == b")":
                return
            first = index + 1
        elif text in (b"(", b";", b"{", b"}"):
            return  # a nested call or the end of a statement: not read further


def _lone_macros(code: bytes) -> list[tuple[int, int]]:
    """Statement macros standing alone on their line: after the end of a statement or a block
    (`;`, `{`, `}`), before a statement, a block's end or another such macro, never before
    `{` (`FOO(x)\n{` is a function's header) or an operator (`FOO(x)\n  = 1;`). A bare name
    is one only before another macro, a keyword that begins a declaration or a statement, an
    attribute, or a block's end: `BOOL\nmain(void)` is a type."""
    spans = []
    work = bytearray(code)  # accepted macros blanked, so `A(x)\nB(y)` are both seen
    for match in _LONE_MACRO.finditer(code):
        start, end = match.span()
        before = bytes(work[max(0, start - LOOK) : start]).rstrip()[-1:]
        after = code[end : end + LOOK].lstrip()[:1]
        if before not in (b"", b";", b"{", b"}"):
            continue
        if match.group("call"):
            fits = after in (b"", b"}") or after.isalpha() or after == b"_"
        else:
            following = re.match(rb"\s*([A-Za-z_]\w*)", code[end : end + LOOK])
            word = following.group(1) if following else b""
            fits = after in (b"", b"}") or bool(_CAPS.match(word)) or word in STARTS_STATEMENT
        if fits:
            spans.append((start, end))
            work[start:end] = b" " * (end - start)
    return spans


LOOK = 4096  # bytes looked at around a line: blank runs longer than this read as a boundary


def _spaces(match: re.Match) -> bytes:
    return match.group().translate(_BLANK)


def _next_punct(tokens: list, at: int) -> bytes:
    return tokens[at + 1][1] if at + 1 < len(tokens) else b""


def _blank_wrapper(out: bytearray, macro: tuple, tokens: list, at: int) -> None:
    """`OF((a, b))`: blank `OF`, its `(` and the matching `)`, keeping `(a, b)`."""
    depth = 0
    for index in range(at, len(tokens)):
        kind, text, start, end = tokens[index]
        if kind != "punct":
            continue
        depth += text == b"("
        depth -= text == b")"
        if depth == 0:
            out[start:end] = b" "
            break
    else:
        return  # unbalanced: leave it as it is
    _, macro_start, macro_end = macro
    out[macro_start:macro_end] = b" " * (macro_end - macro_start)
    start = tokens[at][2]
    out[start : start + 1] = b" "
