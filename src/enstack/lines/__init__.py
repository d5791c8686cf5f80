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

`enstack.versions.LINE_RANKING` is the one key for anything that stores what the ranker or
the statements produce (the stack stage's inputs, the scanner's cached line rankings); its
parts, LINE_RANKER_FORMAT, LINE_LABELS and STATEMENTS, live there too: bump the one that
changed.
"""

from __future__ import annotations
