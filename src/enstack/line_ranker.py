"""A line ranker learned from fix pairs: which statement of a flawed function is the flaw.

Attribution (attention, gradients, occlusion) asks which tokens moved the function-level
prediction; it spreads over declarations and boilerplate. Where the training data pairs each
flawed function with its fixed variants (a `pair` column and a benign class), the lines a fix
changed are line-level labels for free, the way LineVul's line labels are the lines a fix
commit deleted:
- a statement is one candidate however many lines it spans, named by its first line;
- a flawed function's positive statements are those a fixed variant of it does without, in
  whole or in part (a variant close enough to be an edit of it: difflib ratio >= `SIMILAR`),
  and those a fixed variant keeps but puts behind a check it inserts (a bounds or NULL
  test), over all its variants;
- every other statement of the function is a negative;
- each statement is hashed into token, token-bigram and length features, also crossed with
  the function's class (a CWE-476 flaw looks like a dereference, a CWE-120 one like a copy),
  and a logistic regression is fitted on them, each function's positives weighing one unit
  together.
At scan time a finding's statements are scored with the class it was given. The ranker is
fitted in `enstack stack` on the train split only, and kept in the bundle as plain arrays
(`lines/ranker.safetensors`, `lines/ranker.json`): nothing to unpickle.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from enstack.errors import UserError
from enstack.progress import progress_bar

RANKER_VERSION = 2  # bump when the stored arrays or the features change: others are not loaded
LABELS_VERSION = 3  # bump when the labelling changes: `enstack stack` then fits a new ranker
SIMILAR = 0.5  # a fixed variant this close (difflib ratio over lines) is an edit of the flaw
MAX_VARIANTS = 8  # fixed variants compared per flawed function
MAX_FUNCTIONS = 60_000  # flawed functions labelled at most (a fixed, seeded sample beyond)
MIN_FUNCTIONS = 20  # fewer labelled functions than this: no ranker
HASH_FEATURES = 2**18
MAX_LENGTH_FEATURE = 12  # statements of this many tokens or more share one length feature
C_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|==|!=|<=|>=|->|\+\+|--|&&|\|\||<<|>>|[^\s\w]")
NOT_A_STATEMENT = re.compile(r"[{};]*|#.*")  # braces alone, preprocessor directives
STRING_LITERAL = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'")
CONTROL_HEADER = re.compile(r"(?:\}\s*)?(?:else\s+)?(?:if|while|for|switch)\s*\(")
DECLARATION = re.compile(r"(?!(?:return|delete|goto|throw)\b)(?:\w+\s+)+[\w\s,*]+;")  # int i, j;
CONTINUATION_ENDS = tuple(",([|&+-*/%=?<>^!~")  # a line that ends so goes on on the next
KEYWORDS = frozenset(
    {"if", "else", "while", "for", "switch", "do", "return", "sizeof"}
    | {"int", "char", "long", "short", "unsigned"}
)


def _normal(line: str) -> str:
    return " ".join(line.split())


def statement_spans(code: str) -> dict[int, list[int]]:
    """The function's statements: 0-based first line -> every line the statement spans. Not
    blank lines, braces alone, preprocessor directives, nor the signature before the body's
    brace; all lines when that leaves none (a one-line function). A statement written over
    several lines (`if (LogonUserA(` then one argument per line) is one statement, reported at
    its first line, as a reader (and Juliet's flaw comments) would point at it."""
    lines = [_normal(line) for line in code.split("\n")]
    body = next((i for i, line in enumerate(lines) if "{" in line), 0)
    # the line that opens the body is still signature unless code follows its brace
    first = body + 1 if lines and lines[body].endswith("{") else body
    kept = [
        i for i in range(first, len(lines)) if lines[i] and not NOT_A_STATEMENT.fullmatch(lines[i])
    ]
    spans: dict[int, list[int]] = {}
    for i in kept:
        head = next(reversed(spans), None)
        if head is not None and _continues(lines[spans[head][-1]]):
            spans[head].append(i)
        else:
            spans[i] = [i]
    return spans or {i: [i] for i in range(len(lines))}


def _continues(line: str) -> bool:
    """Whether a statement line stops mid-expression, so that the next line carries it on."""
    return line.endswith(CONTINUATION_ENDS) and not line.endswith(("++", "--", "*/", "->"))


def _statement_text(lines: list[str], span: list[int]) -> str:
    return " ".join(lines[i] for i in span)


def _features(statement: str, class_name: str) -> str:
    tokens = C_TOKEN.findall(statement)
    # its length in tokens: each statement's features are scaled to unit length, so without
    # it a short line of common tokens (`fn0(&data);`) outscores a longer one holding the flaw
    length = f"LEN{min(len(tokens), MAX_LENGTH_FEATURE)}"
    plain = [*tokens, *(f"{a}_{b}" for a, b in pairwise(tokens)), length]
    return " ".join(plain + [f"{class_name}|{t}" for t in plain])


def _vectorizer():
    from sklearn.feature_extraction.text import HashingVectorizer

    # stateless: the same object is rebuilt at scan time from these settings alone
    return HashingVectorizer(
        n_features=HASH_FEATURES,
        token_pattern=r"\S+",
        lowercase=False,
        alternate_sign=False,
        norm="l2",
    )


def _edited_text(line: str) -> str:
    """A line as a fix compares it: rewording a message (a string literal) is not a fix."""
    return STRING_LITERAL.sub('""', _normal(line))


def _guards(lines: list[str], spans: dict[int, list[int]]) -> set[int]:
    """Control headers whose condition reads nothing the rest of the function touches
    (`if(1)`, `if(GLOBAL_CONST_TRUE)`, `for(j = 0; j < 1; j++)`, where `j` is otherwise only
    declared): a fix that flips one makes the flawed code unreachable, which says nothing
    about which line is the flaw. Each line is tokenised once for the whole function."""
    tokens = [C_TOKEN.findall(line) for line in lines]
    total = Counter(token for row in tokens for token in row)
    declared = {  # names in declarations (`int j;`): one mention there is not a use
        token
        for line, row in zip(lines, tokens, strict=True)
        if DECLARATION.fullmatch(line) and not CONTROL_HEADER.match(line)
        for token in row
    }
    guards = set()
    for index, span in spans.items():
        if not CONTROL_HEADER.match(lines[index]):
            continue
        own = Counter(token for line in span for token in tokens[line])  # the whole condition
        names = {t for t in own if t not in KEYWORDS and (t[0].isalpha() or t[0] == "_")}
        elsewhere = {n: total[n] - own[n] for n in names}  # mentions on the other lines
        if not any(n > 1 or (n == 1 and name not in declared) for name, n in elsewhere.items()):
            guards.add(index)
    return guards


def fixed_lines(flawed: str, fixes: Sequence[str]) -> set[int]:
    """Statements of `flawed` (their first lines, 0-based) that some close fixed variant does
    without, in whole or in part, or puts behind a check it adds; leaving out reworded messages
    and flipped guards."""
    lines = [_edited_text(line) for line in flawed.split("\n")]
    spans = statement_spans(flawed)
    guards = _guards(lines, spans)
    statements = [i for i in spans if i not in guards]
    changed: set[int] = set()
    for fix in fixes[:MAX_VARIANTS]:
        fix_lines = [_edited_text(line) for line in fix.split("\n")]
        matcher = difflib.SequenceMatcher(None, lines, fix_lines, autojunk=False)
        if matcher.ratio() < SIMILAR:
            continue
        kept = set(fix_lines)
        changed.update(i for i in statements if any(lines[j] not in kept for j in spans[i]))
        changed.update(_checked_statements(matcher, statements, fix_lines, kept, lines))
    return changed


def _checked_statements(
    matcher: difflib.SequenceMatcher,
    statements: list[int],
    fix_lines: list[str],
    kept: set[str],
    lines: list[str],
) -> set[int]:
    """Statements a fix keeps but puts behind a check it inserts (`if (data > INT_MIN)` before
    `int result = data - 1;`): the check points at the statement it protects. Without these a
    sink that its fix guards rather than rewrites would only ever be labelled safe."""
    checked = set()
    for tag, start, _, fix_start, fix_end in matcher.get_opcodes():
        if tag != "insert" or not any(
            CONTROL_HEADER.match(fix_lines[j]) for j in range(fix_start, fix_end)
        ):
            continue
        protected = next((i for i in statements if i >= start), None)
        if protected is not None and lines[protected] in kept:
            checked.add(protected)
    return checked


@dataclass
class LineRanker:
    coef: np.ndarray  # (HASH_FEATURES,) float32
    intercept: float
    info: dict  # what it was fitted on

    def rank(self, code: str, class_name: str) -> dict[int, float]:
        """0-based line index -> share of the function's flaw score (softmax; sums to 1)."""
        lines = code.split("\n")
        spans = statement_spans(code)
        candidates = list(spans)
        x = _vectorizer().transform(
            [_features(_statement_text(lines, spans[i]), class_name) for i in candidates]
        )
        logits = x @ self.coef + self.intercept
        shares = np.exp(logits - logits.max())
        shares /= shares.sum()
        return {i: float(s) for i, s in zip(candidates, shares, strict=True)}

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "coef": self.coef.astype(np.float32),
                "intercept": np.array([self.intercept], np.float32),
            },
            str(directory / "ranker.safetensors"),
        )
        header = {"version": RANKER_VERSION, "hash_features": HASH_FEATURES, **self.info}
        (directory / "ranker.json").write_text(json.dumps(header, indent=2) + "\n")


def load_line_ranker(directory: Path) -> LineRanker | None:
    """The bundle's ranker; None when it has none, or one from another ranker version.

    The bundle's manifest has vouched for these files' bytes, but a manifest can be rewritten
    along with them: anything but the two files `save` writes is refused in one line."""
    header_path = directory / "ranker.json"
    if not header_path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        header = json.loads(header_path.read_text())
        arrays = load_file(str(directory / "ranker.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise UserError(f"{directory}: line ranker unreadable ({exc})") from None
    if not isinstance(header, dict):
        raise UserError(f"{header_path}: not a JSON object; not a ranker enstack wrote")
    if header.get("version") != RANKER_VERSION or header.get("hash_features") != HASH_FEATURES:
        return None
    coef, intercept = arrays.get("coef"), arrays.get("intercept")
    shapes = {"coef": (HASH_FEATURES,), "intercept": (1,)}
    for name, array in (("coef", coef), ("intercept", intercept)):
        if array is None or array.dtype != np.float32 or array.shape != shapes[name]:
            raise UserError(
                f"{directory / 'ranker.safetensors'}: `{name}` is not float32 of shape "
                f"{shapes[name]}; not a ranker enstack wrote"
            )
    if not np.isfinite(coef).all() or not np.isfinite(intercept).all():
        raise UserError(f"{directory / 'ranker.safetensors'}: weights that are not finite")
    info = {k: v for k, v in header.items() if k not in ("version", "hash_features")}
    return LineRanker(coef, float(intercept[0]), info)


def fit_line_ranker(
    codes: Sequence[str],
    labels: Sequence[int],
    pairs: Sequence[str | None],
    label_names: Sequence[str],
    benign_id: int,
    seed: int,
    progress: bool | None = None,
) -> LineRanker | None:
    """Fit on the fix pairs of a training split; None when too few flawed functions have a
    fixed variant to learn from."""
    variants: dict[str, list[int]] = defaultdict(list)
    for row, pair in enumerate(pairs):
        if pair is not None:
            variants[str(pair)].append(row)
    flawed = [
        (row, [codes[r] for r in rows if labels[r] == benign_id])
        for rows in variants.values()
        for row in rows
        if labels[row] != benign_id
    ]
    rng = np.random.default_rng(seed)
    if len(flawed) > MAX_FUNCTIONS:
        flawed = [flawed[i] for i in sorted(rng.choice(len(flawed), MAX_FUNCTIONS, replace=False))]
    texts: list[str] = []
    targets: list[int] = []
    weights: list[float] = []
    functions = 0
    for row, fixes in progress_bar(flawed, enabled=progress, desc="line labels", leave=False):
        positives = fixed_lines(codes[row], fixes) if fixes else set()
        if not positives:
            continue
        functions += 1
        lines = codes[row].split("\n")
        name = label_names[labels[row]]
        for i, span in statement_spans(codes[row]).items():
            texts.append(_features(_statement_text(lines, span), name))
            targets.append(int(i in positives))
            # each function's flaw is one unit of evidence, however many lines its fix
            # touched: a fix that replaces a whole block (a socket source) says less about
            # each of its lines than a one-line fix says about its one line
            weights.append(1.0 / len(positives) if i in positives else 1.0)
    if functions < MIN_FUNCTIONS:
        return None
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    weight = np.asarray(weights)
    classifier.fit(
        _vectorizer().transform(texts), np.asarray(targets), sample_weight=weight / weight.mean()
    )
    info = {
        "labels_version": LABELS_VERSION,
        "functions": functions,
        "lines": len(texts),
        "flaw_lines": int(sum(targets)),
    }
    # float32 as stored: a loaded ranker scores exactly as the fitted one
    coef = classifier.coef_[0].astype(np.float32)
    return LineRanker(coef, float(np.float32(classifier.intercept_[0])), info)
