"""Checkpoints: tensors only (``weights_only=True`` on load), strict key checks, run config beside the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mim_perception.nets.checkpoint import load_into, load_state  # noqa: F401 - re-exported for the training code


def save_checkpoint(path: Path, model: nn.Module, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """``path`` gets the state dict; ``path.with_suffix('.json')`` the run config and metrics (readable without torch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)   # never a half-written checkpoint
    path.with_suffix(".json").write_text(json.dumps({"config": config, **(extra or {})}, indent=1, default=str))


