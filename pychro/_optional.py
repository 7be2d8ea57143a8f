"""Import optional dependencies at the moment they are needed, with the pip command in the error.

Nothing is decided at import time: ``import pychro`` never imports pyarrow or pandas; the frames functions
call :func:`require` when they run (style.md §2.6).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType

__all__ = ["lazy_getattr", "require"]

# module -> the pip package that provides it, when the names differ
_PACKAGES = {"pyarrow": "pyarrow", "pandas": "pandas", "numpy": "numpy"}


def require(module: str, extra: str = "frames", purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise ImportError saying how to install it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"pyarrow"`` or ``"pyarrow.compute"``.
    extra : str
        The pychro extra that pulls it in (``pip install 'pychro[<extra>]'``).
    purpose : str, optional
        What needs it, for the message (default: "this pychro feature").

    Examples
    --------
    >>> require("json").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package = _PACKAGES.get(top, top)
        raise ImportError(
            f"{purpose or 'this pychro feature'} needs the '{package}' package, which could not be imported "
            f"({exc}); install it with: pip install 'pychro[{extra}]' (or: pip install {package})"
        ) from exc


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``table[name]`` (a module path) on first use of ``name``.

    Keeps heavy modules (pyarrow, pandas, numpy-based servers) out of ``import pychro``; the value is then
    cached on the package so later lookups are plain attribute reads.
    """

    def __getattr__(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
