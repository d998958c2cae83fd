"""State-dict keys that a module renamed: old chanformer checkpoints keep loading.

A module whose parameter names changed subclasses :class:`RenamedKeys` and lists
``old -> new`` names relative to itself in ``renamed_keys`` (an entry ending in ``"."`` renames
every key under that prefix). Two paths apply the renames:

* ``module.load_state_dict(...)`` (Lightning checkpoints, ``Task.load_state_dict``, plain torch):
  :meth:`RenamedKeys._load_from_state_dict` renames the keys under the module's prefix before
  the module and its children read them;
* :func:`upgrade_state_dict` renames a whole state dict against a model before anything compares
  its keys (``chanformer.hub.load_pretrained`` checks keys and shapes first).

Keys already in the new layout are left alone, so both paths are no-ops on new checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn

__all__ = ["RenamedKeys", "rename_keys", "upgrade_state_dict"]

V = TypeVar("V")


def _renamed(local: str, renames: Mapping[str, str]) -> str | None:
    for old, new in renames.items():
        if local == old:
            return new
        if old.endswith(".") and local.startswith(old):
            return new + local[len(old) :]
    return None


def rename_keys(state: MutableMapping[str, V], prefix: str, renames: Mapping[str, str]) -> list[tuple[str, str]]:
    """Rename, in place, the keys of ``state`` under ``prefix`` whose local part ``renames`` lists.

    A key is renamed only when its new name is not in ``state`` already. Returns the
    ``(old, new)`` pairs renamed.
    """
    done: list[tuple[str, str]] = []
    if not renames:
        return done
    for key in [k for k in state if k.startswith(prefix)]:
        new = _renamed(key[len(prefix) :], renames)
        if new is not None and prefix + new not in state:
            state[prefix + new] = state.pop(key)
            done.append((key, prefix + new))
    return done


class RenamedKeys(nn.Module):
    """Mixin for modules whose state-dict keys changed; ``renamed_keys`` maps old -> new local names."""

    #: Old local key (or prefix ending in ``"."``) -> its new name.
    renamed_keys: ClassVar[dict[str, str]] = {}

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        rename_keys(state_dict, prefix, self.renamed_keys)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def upgrade_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of ``state`` with the renames of every :class:`RenamedKeys` module in ``model`` applied."""
    out = dict(state)
    for name, module in model.named_modules():
        if isinstance(module, RenamedKeys):
            rename_keys(out, f"{name}." if name else "", module.renamed_keys)
    return out
