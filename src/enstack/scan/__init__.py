"""`enstack scan`: a trained ensemble on people's own C/C++ code.

files.py finds and reads source files, functions.py cuts functions out with tree-sitter,
model.py scores them (a bundle or a single export, with a cache), localise.py ranks a
finding's lines, report.py writes text, JSON, CSV and SARIF 2.1.0, and api.py ties them
together for the CLI and for notebooks.
"""

# Line-ranking methods (localise.py); here so that the CLI can list them without importing torch.
# `learned` needs a bundle with a line ranker; `auto` is it when there is one, else attention.
LOCALISE_METHODS = ("learned", "attention", "gradient", "occlusion")
LOCALISE_CHOICES = ("auto", *LOCALISE_METHODS)
