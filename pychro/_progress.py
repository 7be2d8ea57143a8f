"""progress_bar: tqdm.auto when wanted and installed, else a no-op (tqdm is an optional extra)."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, unit: str, enabled: bool | None, *, big: int, desc: str | None = None) -> Any:
    """A tqdm bar, or None. ``enabled=None``: automatic, for work of at least ``big`` units on a terminal
    or in a notebook (tqdm.auto picks the widget); ``False`` never; ``True`` whenever tqdm is installed."""
    if enabled is False or (enabled is None and (total < big or not interactive())):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, leave=False)


def interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
