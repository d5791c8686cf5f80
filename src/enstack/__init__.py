"""enstack: stacking fine-tuned code language models to classify vulnerabilities in C/C++."""

import time

__version__ = "0.1.0"

# When enstack was first imported: "total time" counts from here, so it includes loading
# torch and friends, the wait a user sees, not only the stages' own work.
IMPORTED_AT = time.perf_counter()
