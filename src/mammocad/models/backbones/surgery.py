"""Model surgery: dotted module paths, the two-class head, frozen layers, parameter counts."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Resolves a dotted module path such as ``"classifier.6"`` or ``"layer4"``.

    Integer parts index ``nn.Sequential`` / ``nn.ModuleList`` children; an empty path is
    the model itself.

    Raises:
        AttributeError: naming the part that is missing and the children that exist.
    """
    module = model
    if not path:
        return module
    done: list[str] = []
    for part in path.split("."):
        children = dict(module.named_children())
        if part not in children:
            here = ".".join(done) or type(model).__name__
            raise AttributeError(
                f"no module {path!r}: {here} has no child {part!r} "
                f"(children: {', '.join(children) or 'none'})"
            )
        module = children[part]
        done.append(part)
    return module


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    # Sequential children are attributes named "0", "1", ..., so setattr covers them too.
    setattr(get_module(model, parent_path), last, new)


def replace_head(model: nn.Module, classifier: str, num_classes: int) -> nn.Linear:
    """Replaces the final linear layer at ``classifier`` with a ``num_classes`` one.

    Paper §3: the pre-trained network "is altered to have two output classes".

    Returns:
        The new, freshly initialised head.
    """
    old = get_module(model, classifier)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{classifier!r} is a {type(old).__name__}, not nn.Linear")
    head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    _set_module(model, classifier, head)
    return head


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze_layers(
    model: nn.Module, prefixes: Iterable[str], keep_trainable: Iterable[str] = ()
) -> int:
    """Freezes the parameters under module-path prefixes (paper §3, frozen early layers).

    A prefix matches whole path components: ``"features.1"`` covers ``features.1.0.weight``
    but not ``features.10.weight``. Parameters under ``keep_trainable`` stay trainable even
    where a prefix covers them; all others keep their current ``requires_grad``.

    Args:
        model: the model to modify in place.
        prefixes: module paths whose parameters get ``requires_grad=False``.
        keep_trainable: module paths that are always trainable (the new head).

    Returns:
        The number of parameter elements frozen.

    Raises:
        ValueError: if a prefix matches no parameter (a typo would otherwise freeze
            nothing silently).
    """
    prefixes = tuple(prefixes)
    keep = tuple(keep_trainable)
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(_under(name, prefix) for name in names):
            top = ", ".join(name for name, _ in model.named_children())
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter (top level: {top})")
    frozen = 0
    for name, param in model.named_parameters():
        if any(_under(name, p) for p in keep):
            param.requires_grad_(True)
        elif any(_under(name, p) for p in prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Counts parameter elements, as in paper Table 1's "Number of parameters".

    Returns:
        ``(total, trainable)``.
    """
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return total, trainable
