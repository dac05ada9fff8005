"""Helpers shared by the test modules that start runs or can hang: a time limit, child processes that die
with the test session, and the parts of a throwaway stage notebook."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def fail_after(seconds: int, what: str) -> Iterator[None]:
    """Raise ``TimeoutError`` in the main thread after ``seconds`` (SIGALRM) instead of hanging."""
    def _timeout(*_):
        raise TimeoutError(f"{what}: hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()


def die_with_the_test() -> None:
    """``preexec_fn`` of a run the tests start: SIGKILL when the test process dies (Linux ``PR_SET_PDEATHSIG``),
    so a test session killed half-way leaves no run behind (the run's kernel follows it, ipykernel's parent
    poller)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


#: Front matter of a throwaway MyST stage notebook (jupytext), and its parameters cell (``extra``: more lines).
HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

PARAMS_CELL = """```{{code-cell}} ipython3
:tags: [parameters]

profile = "smoke"
seed = 0
device = "cpu"
stage = "x"
run_dir = "runs/x"
afew_dir = None
fer2013_path = None
tfd_path = None
synthetic = True
{extra}
```
"""
