"""Heavy packages the command line rarely needs, loaded on first use instead of at import.

Every module that reads or writes tables imports pandas at the top, and pydicom imports
requests (for its test-data downloads); on two cores the two cost about 0.5 s of the
start-up of ``mammocad predict``, which uses neither. Importing this module puts a lazy
module for each of :data:`DEFERRED` into ``sys.modules`` (:class:`importlib.util.LazyLoader`):
``import pandas as pd`` still succeeds at once, and the package is executed on the first
access to one of its attributes, so every other command works unchanged. (Python 3.11's own
lazy module loads on *any* attribute, and each later ``import pandas`` reads ``__spec__``,
as ``inspect.getmodule`` (which torch runs at import) reads every module's ``__file__``:
:class:`_LazyModule` answers such metadata without loading.)

Only :mod:`mammocad.cli` imports this, before anything else of the package; the
pipeline's stages never do.
"""

from __future__ import annotations

import importlib.util
import sys
import types

#: Top-level packages deferred.
DEFERRED = ("pandas", "requests")


#: Module metadata, set before loading, that reading does not load the module for
#: (``__path__`` is not among them: importing a submodule loads the package).
_METADATA = frozenset(
    {
        "__spec__",
        "__name__",
        "__file__",
        "__cached__",
        "__loader__",
        "__package__",
        "__dict__",
        "__class__",
    }
)


class _LazyModule(types.ModuleType):
    """A module executed on first access to an attribute other than its metadata."""

    def __getattribute__(self, attr: str):
        if attr in _METADATA:
            return object.__getattribute__(self, attr)
        object.__setattr__(self, "__class__", types.ModuleType)  # stop intercepting
        spec = self.__spec__
        spec.loader.exec_module(self)
        return getattr(self, attr)


class _LazyLoader(importlib.util.LazyLoader):
    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__.loader = self.loader
        module.__loader__ = self.loader
        module.__class__ = _LazyModule


def defer(name: str) -> bool:
    """Makes ``name`` load on first attribute access; False where it is loaded or absent."""
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return False
    loader = _LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return True


for _name in DEFERRED:
    defer(_name)
