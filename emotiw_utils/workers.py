"""Work spread over processes that fails loudly: :func:`process_map`.

A ``multiprocessing.Pool`` waits for ever when a worker dies (killed, out of memory, a crash in a native
library) or when a worker's exception cannot be rebuilt in the parent; its workers then outlive the run.
:func:`process_map` uses :class:`concurrent.futures.ProcessPoolExecutor` instead: a worker's exception is
raised again in the parent (with the item it failed on named), a dead worker raises
:class:`WorkerCrashed` naming the item it was working on, and the pool is shut down, its pending work
cancelled, whatever happens (``KeyboardInterrupt`` included).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["WorkerCrashed", "process_map", "resolve_workers"]


class WorkerCrashed(RuntimeError):
    """A worker process died while working on an item (killed, out of memory, a native crash)."""


def resolve_workers(workers: int | None, n_items: int) -> int:
    """Processes to use: ``workers`` (0 or None: all cores), at least 1 and at most ``n_items``."""
    return max(1, min(int(workers or 0) or (os.cpu_count() or 1), max(1, n_items)))


def _context(start_method: str | None = None):
    if start_method is not None:
        return mp.get_context(start_method)
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()


def process_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = 0, *,
                names: Sequence[str] | None = None, initializer: Callable | None = None,
                initargs: tuple = (), progress: bool = False, desc: str = "", unit: str = "clip",
                max_pending: int | None = None, start_method: str | None = None) -> Iterator[Any]:
    """``fn(item)`` of every item, yielded in the order of ``items``, computed in ``workers`` processes.

    Args:
        fn: a module-level function (it is sent to the workers).
        items: its arguments.
        workers: processes; 0 or None: all cores; 1: in this process, no pool.
        names: what to call each item in an error (e.g. the clip's path); default ``item <i>``.
        initializer, initargs: run once in each worker (and once here when ``workers`` is 1).
        progress, desc, unit: a tqdm bar.
        max_pending: items submitted ahead of the one being yielded (default ``4 * workers``), so that
            the results waiting to be consumed stay few.
        start_method: how worker processes start (default ``fork`` where available). ``spawn`` for work
            that runs torch in the workers when this process may have run multi-threaded torch already: a
            forked child can then wait for ever on a lock held by one of the parent's threads.

    Raises:
        WorkerCrashed: a worker process died; the message names the item(s) in flight.
        The worker's own exception, intact (its type and arguments cross the process boundary; a note
        names the item when its message does not).
    """
    items = list(items)
    label = (lambda i: str(names[i])) if names is not None else (lambda i: f"item {i}")
    n_workers = resolve_workers(workers, len(items))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc, unit=unit)
    try:
        if n_workers == 1:
            if initializer is not None:
                initializer(*initargs)
            for i, item in enumerate(items):
                yield _call(fn, item, label(i))
                if bar is not None:
                    bar.update(1)
            return
        ahead = max_pending or 4 * n_workers
        pool = ProcessPoolExecutor(n_workers, mp_context=_context(start_method), initializer=initializer, initargs=initargs)
        futures: dict[int, Any] = {}
        try:
            nxt = 0
            for i in range(len(items)):
                while nxt < len(items) and nxt < i + ahead:
                    futures[nxt] = pool.submit(fn, items[nxt])
                    nxt += 1
                fut = futures.pop(i)
                try:
                    result = fut.result()
                except BrokenProcessPool as e:
                    in_flight = [label(j) for j in sorted([i, *futures]) if j < nxt]
                    raise WorkerCrashed(f"a worker process died (killed, out of memory, a crash) or its result "
                                        f"could not be read back, while working on {', '.join(in_flight[:5])}"
                                        f"{' ...' if len(in_flight) > 5 else ''}") from e
                except Exception as e:  # noqa: BLE001 - re-raised with the item named
                    _name(e, label(i))
                    raise
                yield result
                if bar is not None:
                    bar.update(1)
        finally:
            for f in futures.values():
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()


def _call(fn, item, name: str):
    try:
        return fn(item)
    except Exception as e:  # noqa: BLE001 - re-raised with the item named
        _name(e, name)
        raise


def _name(e: Exception, name: str) -> None:
    """Add a note naming the item to ``e`` unless its message names it already."""
    if name not in str(e):
        e.add_note(f"while working on {name}")
