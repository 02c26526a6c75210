"""Imports torchvision (and timm, which imports it) next to a CPU-only torch.

The backbones of paper §4.3 (Table 1) come from torchvision and timm. The torchvision 0.28.0
wheel on PyPI is a CUDA build: next to the CPU build of torch its compiled extension
(``torchvision/_C``) cannot be loaded, so the ``torchvision::nms`` and ``torchvision::qnms``
operators are never defined, and ``import torchvision`` then fails while registering their
fake kernels with ``operator torchvision::nms does not exist`` (pytorch/vision#9085).

:func:`ensure_torchvision_ops` first tries to load the extension exactly as torchvision
would; only where the two operators are still missing afterwards does it define their
schemas through :mod:`torch.library`, with CPU kernels that fail with a clear message.
Classification models then work; ``torchvision.ops.nms`` and ``torchvision.io`` do not.
Every torchvision or timm import in this package goes through :func:`import_torchvision` or
:func:`import_timm`, so the order of imports never matters.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import threading
from types import ModuleType

import torch

logger = logging.getLogger(__name__)

_NAMESPACE = "torchvision"
# Schemas as torchvision's C++ extension defines them (torchvision/csrc/ops/nms.cpp).
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}

_lock = threading.Lock()
_done = False
# Held for the life of the process: a dropped Library object unregisters its definitions.
_library: torch.library.Library | None = None


def _op_exists(name: str) -> bool:
    """Whether ``torchvision::<name>`` has a schema in the dispatcher."""
    qualname = f"{_NAMESPACE}::{name}"
    find = getattr(torch._C, "_dispatch_find_schema_or_throw", None)
    if find is not None:
        try:
            find(qualname, "")
        except RuntimeError:
            return False
        return True
    # Older or newer torch without the private helper: the public namespace look-up.
    try:
        getattr(getattr(torch.ops, _NAMESPACE), name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _extension_path() -> str | None:
    """Path of torchvision's compiled ``_C`` extension, found without importing torchvision."""
    spec = importlib.util.find_spec(_NAMESPACE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        finder = importlib.machinery.FileFinder(
            folder,
            (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        )
        ext = finder.find_spec("_C")
        if ext is not None and ext.origin:
            return ext.origin
    return None


def _try_load_extension() -> bool:
    """Loads torchvision's ``_C`` as torchvision itself would; False where it cannot."""
    path = _extension_path()
    if path is None:
        return False
    try:
        torch.ops.load_library(path)
    except (OSError, RuntimeError) as err:
        logger.debug("torchvision extension %s not loadable: %s", path, err)
        return False
    return True


def _unavailable(name: str):
    def kernel(*args, **kwargs):
        raise RuntimeError(
            f"torchvision::{name} is unavailable: torchvision's compiled extension does not "
            "load next to this torch build (a CUDA torchvision wheel with a CPU torch). "
            "Classification models work; detection operators need a matching torchvision."
        )

    return kernel


def ensure_torchvision_ops() -> list[str]:
    """Makes ``import torchvision`` succeed by defining missing operator schemas.

    Does nothing once torchvision is imported or where its extension loads. Otherwise
    defines ``torchvision::nms`` and ``torchvision::qnms`` (only those missing), so that
    torchvision's fake-kernel registrations find them. Backbones of paper §4.3 only need the
    classification models, which do not use these operators.

    Returns:
        The operator names defined here (empty where nothing was missing).
    """
    global _done, _library
    with _lock:
        if _done:
            return []
        _done = True
        if _NAMESPACE in sys.modules:
            return []
        if all(_op_exists(name) for name in _SCHEMAS):
            return []
        _try_load_extension()
        missing = [name for name in _SCHEMAS if not _op_exists(name)]
        if not missing:
            return []
        _library = torch.library.Library(_NAMESPACE, "FRAGMENT")
        for name in missing:
            _library.define(_SCHEMAS[name])
            _library.impl(name, _unavailable(name), "CPU")
        logger.info(
            "torchvision's compiled extension does not load with torch %s; defined "
            "placeholder schemas for %s (classification models unaffected)",
            torch.__version__,
            ", ".join(f"{_NAMESPACE}::{name}" for name in missing),
        )
        return missing


# torchvision 0.28 imports ``torch._dynamo`` (2 s here: sympy, the compiler's rule tables)
# for one name, ``roi_align``'s ``is_compile_supported``, called only when that operator
# runs. A stage that builds a classifier never calls it.
_DYNAMO = "torch._dynamo"
_DYNAMO_UTILS = "torch._dynamo.utils"
_defer_lock = threading.Lock()


def _is_compile_supported(device_type: str) -> bool:
    """``torch._dynamo.utils.is_compile_supported``, imported when first called."""
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


def _stand_in(name: str, stand_ins: dict[str, ModuleType]) -> ModuleType:
    """A module named ``name`` whose unknown attributes come from the real module.

    The first such attribute takes every stand-in out of ``sys.modules``, imports the real
    ``name`` (and so the real ``torch._dynamo``) and returns the attribute from it: an
    import that needs more of ``torch._dynamo`` than :func:`_is_compile_supported` (as
    ``torchvision.tv_tensors`` does, through ``torch.compiler.disable``) gets the real
    thing, only without the saving.
    """
    module = ModuleType(name)

    def __getattr__(attr: str):
        if attr.startswith("__"):  # import-system probes (__path__, __spec__, ...)
            raise AttributeError(attr)
        for key, stand_in in stand_ins.items():
            if sys.modules.get(key) is stand_in:
                del sys.modules[key]
        return getattr(importlib.import_module(name), attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def _import_deferring_dynamo(name: str) -> ModuleType:
    """Imports ``name`` with stand-ins for ``torch._dynamo`` and ``torch._dynamo.utils``.

    The stand-ins live in ``sys.modules`` only during the import (another thread that
    imports ``torch._dynamo`` meanwhile gets a stand-in, which hands out the real
    module's attributes). The utils stand-in holds :func:`_is_compile_supported`; any other
    name is read from the real module (see :func:`_stand_in`). Where any part of
    ``torch._dynamo`` is already imported, or ``name`` is, this is a plain import.
    """
    with _defer_lock:
        if name in sys.modules or any(m in sys.modules for m in (_DYNAMO, _DYNAMO_UTILS)):
            return importlib.import_module(name)
        stand_ins: dict[str, ModuleType] = {}
        stand_ins[_DYNAMO] = _stand_in(_DYNAMO, stand_ins)
        stand_ins[_DYNAMO].__path__ = []
        stand_ins[_DYNAMO_UTILS] = _stand_in(_DYNAMO_UTILS, stand_ins)
        stand_ins[_DYNAMO_UTILS].is_compile_supported = _is_compile_supported
        sys.modules.update(stand_ins)
        try:
            return importlib.import_module(name)
        finally:
            for key, stand_in in stand_ins.items():
                if sys.modules.get(key) is stand_in:
                    del sys.modules[key]


def import_torchvision() -> ModuleType:
    """Imports and returns :mod:`torchvision`, defining missing operators first.

    ``torch._dynamo``, which torchvision imports for a detection operator, is left
    unimported (see :func:`_import_deferring_dynamo`); timm needs it at import time.

    Returns:
        The ``torchvision`` module.
    """
    ensure_torchvision_ops()
    return _import_deferring_dynamo(_NAMESPACE)


def import_timm() -> ModuleType:
    """Imports and returns :mod:`timm`, which imports torchvision on its own.

    Returns:
        The ``timm`` module.
    """
    ensure_torchvision_ops()
    return importlib.import_module("timm")
