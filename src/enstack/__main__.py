"""`python -m enstack` (and `torchrun -m enstack`) enter the same CLI as the `enstack` script."""

from enstack.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
