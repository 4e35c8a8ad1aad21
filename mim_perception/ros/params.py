"""Declare typed ROS parameters from the shipped YAML defaults and load them into a frozen dataclass.

The shipped ``config/*.param.yaml`` is the only place a default is written: each leaf becomes a
declared parameter whose default is the file's value, so ``--params-file`` / ``-p`` overrides apply
as usual, and the resulting values go through the same validation as the ROS-free loader. Parameters are
declared read-only: nodes read them once, so a run-time change is refused rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.node import Node

from mim_perception.core.config import default_params, from_params
from mim_perception.core.errors import ConfigError

T = TypeVar("T")


def _leaf_types(cls: type, prefix: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Dotted parameter name -> (python type, field metadata) for every leaf field of ``cls``."""
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            out.update(_leaf_types(typ, f"{prefix}{f.name}."))  # type: ignore[arg-type]
        else:
            out[prefix + f.name] = (typ, dict(f.metadata))
    return out


def _coerce(value: Any, typ: Any) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(typ) in (list, tuple):
        return list(value)
    return value


def declare_and_load(node: Node, cls: type[T], *, prefix: str = "") -> T:
    """Declare ``cls``'s parameters on ``node`` (defaults from ``cls.PARAM_FILE``) and return the validated config."""
    defaults = default_params(getattr(cls, "PARAM_FILE"))
    values: dict[str, Any] = {}
    for name, (typ, meta) in _leaf_types(cls, prefix).items():
        if name not in defaults:
            raise ConfigError(f"parameter '{name}' has no default in {getattr(cls, 'PARAM_FILE')}")
        unit = meta.get("unit") or ""
        lo, hi = meta.get("lo"), meta.get("hi")
        # read only: values are read once at configure; `ros2 param set` is refused instead of silently ignored
        desc = ParameterDescriptor(
            description=f"{name}" + (f" [{unit}]" if unit else "") + (f" range [{lo}, {hi}]" if lo is not None else "")
            + " (set at start-up; reconfigure the node to change it)", read_only=True,
        )
        try:
            param = node.declare_parameter(name, _coerce(defaults[name], typ), desc)
        except (InvalidParameterTypeException, ParameterException) as e:
            raise ConfigError(f"parameter '{name}': {e}") from e
        values[name] = param.value
    return from_params(cls, values, prefix)


def unknown_overrides(node: Node, known_prefixes: tuple[str, ...]) -> list[str]:
    """Parameter overrides given to the node (params file / -p) that nothing declared: likely typos."""
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps CLI/file overrides here
    declared = set(node._parameters.keys())
    return sorted(
        n for n in overrides
        if n not in declared and n != "use_sim_time" and not n.startswith("qos_overrides.")
        and any(n.startswith(p) for p in known_prefixes)
    )
