"""C and C++ syntax, in one place: every stage that reads C reads it through here.

- parser.py: tree-sitter's C and C++ grammars, and which files are C or C++ (suffixes).
- preprocessor.py: the branches of `#if` groups, for files that do not parse whole.
- functions.py: function definitions cut out of a file (the scanner's unit), recovering
  functions that `#if` branches or macros hid from the parse, and counting what could not be.
- statements.py: a function's statements and the lines each spans (what the line ranker and
  localisation rank), and the line breaks a window over a long function may end at.
- dataflow.py: GraphCodeBERT's data-flow graph of a function.

Nothing here imports torch or a model: the CLI, prepare and the scanner all read it cheaply.
"""
