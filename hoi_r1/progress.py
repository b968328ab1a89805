"""Progress bars of the long commands (``hoi-r1 synth``, ``eval``, ``distill``, ``cold-start``,
``detections``): one ``tqdm`` bar on standard error, shown only when standard error is a
terminal, so logs, pipes and tests stay clean. ``HOI_R1_PROGRESS=0`` turns bars off, ``1`` forces
them on (e.g. under a job scheduler that keeps a terminal log).

>>> sum(progress(range(3), "counting"))
3
>>> with progress_bar(2, "stages", unit="stage") as bar:
...     for stage in ("read", "score"):
...         _ = bar.update(1)
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")

ENV = "HOI_R1_PROGRESS"
"""Environment variable: ``0`` never shows bars, ``1`` always does; unset: only on a terminal."""


def _disabled() -> bool | None:
    setting = os.environ.get(ENV, "")
    if setting == "0":
        return True
    if setting == "1":
        return False
    return None  # tqdm: off when standard error is not a terminal


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "image") -> Iterable[T]:
    """``items`` with a bar counting them (``total``: ``len(items)`` when it has one)."""
    return tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, disable=_disabled(), dynamic_ncols=True)


def progress_bar(total: int, desc: str, unit: str = "image") -> tqdm:
    """A bar the caller advances with ``update(n)`` (a context manager: closed on exit)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=_disabled(), dynamic_ncols=True)
