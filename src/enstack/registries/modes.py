"""Settings shared by the config's schema, the CLI and the stages that act on them."""

from __future__ import annotations

# `training.long_functions` and `enstack scan --long-functions` (enstack.windows): a function
# longer than a model's window is read whole in windows, or truncated to its first one
LONG_FUNCTION_MODES = ("windows", "truncate")
