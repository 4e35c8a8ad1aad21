"""Camera-input settings shared by every node that subscribes to a camera."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mim_perception.core.config import rng


@dataclass(frozen=True)
class InputConfig:
    PARAM_FILE: ClassVar[str] = "input.param.yaml"
    transport: str = field(metadata=rng(choices=("raw", "compressed")))
    decode: bool
    hardware_id: str
    min_side: int = field(metadata=rng(1, 100000, unit="px"))
