"""The learned line ranker: which statement of a flawed function is the flaw.

Attribution (attention, gradients, occlusion) asks which tokens moved the function-level
prediction; it spreads over declarations and boilerplate. Where the training data pairs each
flawed function with its fixed variants, the lines a fix changed are line-level labels for
free, the way LineVul's line labels are the lines a fix commit deleted. Four concerns:
- labels.py: which statements of a flawed function its fixes changed (the labels);
- features.py: a statement as hashed token features, crossed with the finding's class;
- fit.py: the logistic regression fitted on the train split's pairs in `enstack stack`;
- ranker.py: the fitted ranker, how it ranks a function, and its file in the bundle
  (`lines/ranker.safetensors` + `lines/ranker.json`: plain arrays, nothing to unpickle).
Statements themselves are C syntax: `enstack.csyntax.statements`.

VERSION is the one key for anything that stores what the ranker or the statements produce
(the stack stage's inputs, the scanner's cached line rankings): bump the part that changed.
"""

from __future__ import annotations

from enstack.csyntax.statements import STATEMENTS_VERSION

RANKER_FORMAT = 2  # the stored arrays and the features: a ranker of another format is not loaded
LABELS_VERSION = 4  # the labelling (4: statements from tree-sitter, named Juliet heuristics)
VERSION = f"{RANKER_FORMAT}.{LABELS_VERSION}.{STATEMENTS_VERSION}"
