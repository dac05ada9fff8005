"""Fixtures shared by several test modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emotiw_utils import book_pages, paths, pipeline


def _fresh_process_threads() -> int:
    import torch

    return torch.get_num_threads()


#: torch's thread count in a fresh process, which is what the notebook kernels run with; read when this file is
#: imported, before any test module's fixture pins it to one thread for speed.
KERNEL_THREADS = _fresh_process_threads()


@pytest.fixture
def kernel_threads():
    """Run the test with the notebook kernels' torch thread count, then put back what was set: a matrix product
    split over another number of threads rounds differently, so comparing a model's probabilities with those a
    kernel wrote is exact only with the same count."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(KERNEL_THREADS)
    yield KERNEL_THREADS
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke profile run once per session, and its book built with ``jupyter-book build -W -n``.

    The executed notebooks and the book go to a temporary copy of the book sources, so the tests never touch
    the developer's ``book/executed`` or ``_build``; the pages ``emotiw book`` generates (execution statistics,
    the landing page's headline, the MyST sources) are generated the same way. ``test_smoke.py`` checks the run
    and the build, ``test_book_browser.py`` opens the built book in a browser.
    """
    tmp = tmp_path_factory.mktemp("smoke")
    site = tmp / "site"
    (site / "book").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(paths.REPO_ROOT / name, site / name)
    for page in (paths.REPO_ROOT / "book").glob("*.md"):
        shutil.copy(page, site / "book" / page.name)
    # literalinclude paths in the chapters are relative to the repository root.
    (site / "emotiw_utils").symlink_to(paths.REPO_ROOT / "emotiw_utils")
    results = pipeline.run_pipeline("smoke", run_dir=tmp / "run", executed_dir=site / "book" / "executed",
                                    device="cpu", progress=False)
    book_pages.prepare_book(site)
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(site), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True)
    return dict(results=results, run=tmp / "run", site=site, build=build)
