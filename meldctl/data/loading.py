"""DataLoader workers that behave: they ignore the signals meant for their parent and die with it.

Ctrl-C or `kill -TERM -PGID` reaches every process of the group. The parent turns it into a clean stop
(`GracefulStop`), so a worker must not die of it first (PyTorch would then raise "DataLoader worker killed by
signal" in the parent). A worker also must not outlive a parent killed outright: Linux's parent-death signal
ends it at once.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def worker_init(_worker_id: int) -> None:
    """`worker_init_fn` for every meldctl DataLoader."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no libc symbol: the workers' own parent watchdog still applies
            pass
