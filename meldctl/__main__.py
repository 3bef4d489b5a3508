"""`python -m meldctl` (and `torchrun -m meldctl`) runs the CLI."""

from meldctl.cli import main

if __name__ == "__main__":
    main()
