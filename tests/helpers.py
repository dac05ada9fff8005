"""Helpers shared by the test modules that start runs or can hang: a time limit, child processes that die
with the test session, a tiny synthetic dataset, and the parts of a throwaway stage notebook."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

from emotiw_utils.synth import generate


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


def tiny_synth(root: Path, afew=(14, 7, 7)) -> dict[str, Path]:
    """SynthFER, SynthTFD and SynthAFEW far smaller than the smoke profile's (about 5 s on one core): the
    ``--afew``, ``--fer2013`` and ``--tfd`` paths of ``emotiw run``."""
    sizes = generate.SynthSizes(afew=afew, fer=(210, 35, 35), tfd=70, tfd_unlabelled=0)
    out = {"afew": root / "afew", "fer2013": root / "fer" / "fer2013.csv", "tfd": root / "tfd" / "TFD_48x48.mat"}
    for p in out.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    generate.generate_fer(out["fer2013"], sizes, 0, 1, False)
    generate.generate_tfd(out["tfd"], sizes, 0, 1, False)
    generate.generate_afew(out["afew"], sizes, 0, 1, False)
    return out
