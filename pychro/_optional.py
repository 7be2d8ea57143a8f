"""Import optional dependencies at the moment they are needed, with the pip command in the error.

Nothing is decided at import time: ``import pychro`` never imports pyarrow or pandas; the frames functions
call :func:`require` when they run (style.md §2.6).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

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
