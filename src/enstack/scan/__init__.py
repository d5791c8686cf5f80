"""`enstack scan`: a trained ensemble on people's own C/C++ code.

scope.py decides what is in a scan (--include, --exclude, .enstackignore, --changed-since),
files.py finds and reads source files (functions are cut out by enstack.csyntax),
card.py says what a model is without loading it, model.py scores functions (a bundle or a
single export), cache.py remembers scores, localise.py ranks a finding's lines, suppress.py
reads enstack-ignore comments and baselines, formats/ writes text, JSON, CSV, SARIF 2.1.0
and HTML (one module each, one registry), and api.py ties them together for the CLI and
for notebooks.
"""

from enstack.registries.modes import LONG_FUNCTION_MODES  # noqa: F401 (the CLI reads it here)

# Line-ranking methods (localise.py); here so that the CLI can list them without importing torch.
# `learned` needs a bundle with a line ranker; `auto` is it when there is one, else attention.
LOCALISE_METHODS = ("learned", "attention", "gradient", "occlusion")
LOCALISE_CHOICES = ("auto", *LOCALISE_METHODS)
# `--precision`: int8 quantises the linear layers for CPU inference (scan/model.py)
PRECISIONS = ("fp32", "int8")

# `--threshold`: the P(vulnerable) that makes a finding, for the CLI and the Scanner alike
DEFAULT_THRESHOLD = 0.5
