"""`python -m meldctl.training.torchrun ARGS`: torchrun (same arguments) that ends as a signal asks it to.

A SageMaker job stopped, or a spot instance reclaimed, gets a SIGTERM. torchrun's agent answers it well (it
passes SIGTERM to its workers, which save `last.pt`, and waits for them) and then lets its own `SignalException`
escape: a traceback and exit code 1, as if the job had failed. Under this launcher the agent ends the way one
`meldctl train` process does: exit 128 + the signal's number (143 for SIGTERM, 130 for Ctrl-C), no traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run torchrun's own entry point with `argv`; a signal that stopped it becomes the exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv)
    except SignalException as exc:
        print(f"torchrun: stopped by {exc.sigval.name}; its workers were stopped first", file=sys.stderr, flush=True)
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
