"""Every version key in one place, each named for what a bump redoes.

enstack keeps derived data (prepared splits, token caches, features, a scan's cached
functions, scores and line rankings) and refuses files of a format it cannot read. Each key
below is part of the fingerprint of exactly the data it names: bump it when the code that
makes that data would now make something different from the same inputs, and that data,
and only that, is made again. The values are the ones the keys had in their own modules, so
no cache, run or bundle changes by their move here. `tests/unit/test_versions.py` checks that each
key reaches the fingerprints it names and no others.
"""

from __future__ import annotations

# --- derived data: a bump redoes it --------------------------------------------------------------

# What the data stage writes from the same sources (rules, columns): runs are re-prepared.
PREPARED_DATA = 1
# The synthetic functions a seed generates: synthetic runs are re-prepared.
SYNTHETIC_DATA = 2
# Which functions are cut out of a C/C++ file, and how (names, spans, `#if` branches): the
# scan cache's per-file functions are cut again.
FUNCTION_CUTS = 3
# How a compilation database's macros decide a file's `#if` groups: that file's functions.
BUILD_MACROS = 1
# What counts as a statement: the line labels, the line ranker, windows' cut points.
STATEMENTS = 1
# Where a long function's windows cut: the scan's scores in windows mode, token caches and
# stack features read in windows.
WINDOWS = 2
# GraphCodeBERT's data-flow graph (2: bounded nesting): token caches that hold graphs.
DATAFLOW_GRAPHS = 2
# How code becomes token rows: every token cache.
TOKEN_ROWS = 1
# Which statements a fix changed, as the line ranker learns them (4: statements from
# tree-sitter, named Juliet heuristics): the ranker is refitted, cached rankings redone.
LINE_LABELS = 4
# A scan's line rankings for a given method (3: a statement's lines as one): cached
# rankings are redone.
LOCALISE = 3
# What a model's stack features hold (2: val and test only): features are extracted again.
STACK_FEATURES = 2
# The ablation and selection (2: detection and pair metrics, select_on; 3: grouped folds,
# the one-standard-error rule): the stack stage runs again.
STACK_RESULTS = 3
# A knowledge base's verdicts (2: near statements weighed against the fix's other side; the
# fix held near): the scan cache's known verdicts are redone.
KNOWN_MATCHER = 2
# What `enstack distill` asks the teacher for: its targets are made again.
DISTILL_TARGETS = 1
# How `enstack pretrain` cuts, deduplicates and splits its corpus: the corpus is read again.
PRETRAIN_CORPUS = 1
# How the corpus becomes masked-language rows (windows, framing): its token cache is redone.
PRETRAIN_TOKENS = 1

# --- file formats: a file of another format is refused (or, for caches, redone) ----------------

CHECKPOINT_FORMAT = 2  # a checkpoint directory's files and state.json
BUNDLE_FORMAT = 1  # a bundle's manifest and layout
STACK_SUMMARY_FORMAT = 1  # the stack stage's record, stack/ablation.json
LINE_RANKER_FORMAT = 2  # the line ranker's stored arrays and features
KNOWN_BASE_FORMAT = 2  # a knowledge base (2: the fix's added statements' texts kept)

# The line ranker's whole key, as the stack stage, the token cache and the scanner read it.
LINE_RANKING = f"{LINE_RANKER_FORMAT}.{LINE_LABELS}.{STATEMENTS}"
