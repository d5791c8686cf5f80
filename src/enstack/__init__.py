"""enstack: stacking fine-tuned code language models to classify vulnerabilities in C/C++."""

__version__ = "0.1.0"
