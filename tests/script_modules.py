"""The files of ``scripts/`` as modules, for the tests (the folder is not a package)."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _spec(name: str):
    return importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` executed as a module called ``name``."""
    spec = _spec(name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def registered_script(name: str) -> Iterator[ModuleType]:
    """:func:`load_script`, the module also in ``sys.modules`` while the context lasts (a script's
    dataclasses look their module up there)."""
    spec = _spec(name)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(name, None)
