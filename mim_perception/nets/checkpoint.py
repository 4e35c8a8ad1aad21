"""Reading a state dict from disk: tensors only (``weights_only=True``), typed errors. Shared by training (resume,
init) and the torch inference backend."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from mim_perception.core.errors import ModelLoadError


def load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # any unpickling failure means a corrupt or foreign file, for the user
        raise ModelLoadError(f"checkpoint {path} cannot be read as tensors: {e}") from e
    if not isinstance(state, dict):
        raise ModelLoadError(f"checkpoint {path} does not hold a state dict")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], *, prefix: str = "",
              allow_missing: Iterable[str] = (), source: str = "checkpoint") -> None:
    """Load ``state`` (keys under ``prefix``, stripped) strictly: every key missing from or unexpected in
    ``module`` is an error unless it starts with one of ``allow_missing`` (e.g. the new heads of a fine-tune)."""
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} if prefix else dict(state)
    result = module.load_state_dict(sub, strict=False)
    allowed = tuple(allow_missing)
    missing = [k for k in result.missing_keys if not k.startswith(allowed)] if allowed else list(result.missing_keys)
    if missing or result.unexpected_keys:
        raise ModelLoadError(f"{source} does not match the model: missing {missing[:8]}{'…' if len(missing) > 8 else ''}, "
                             f"unexpected {result.unexpected_keys[:8]}")
