"""Typed, validated configuration loaded from ``config/*.param.yaml``.

The YAML files are the single source of defaults: dataclasses here declare names, types and ranges
but no default values, so a default can never be written twice. The same loader serves the ROS
parameter helper (``mim_perception.ros.params``) and ROS-free CLIs/tests.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mim_perception.core.errors import ConfigError

T = TypeVar("T")

_ENV_CONFIG_DIR = "MIM_PERCEPTION_CONFIG_DIR"
# Parameters every rclpy node owns; they may sit in any params file and are not ours to validate.
_ROS_BUILTIN_PREFIXES = ("use_sim_time", "qos_overrides.", "start_type_description_service")


def rng(lo: float | None = None, hi: float | None = None, *, choices: tuple[Any, ...] = (), unit: str = "") -> dict[str, Any]:
    """Field metadata: inclusive range, allowed values and unit (for generated docs)."""
    return {"lo": lo, "hi": hi, "choices": choices, "unit": unit}


def config_dir() -> Path:
    """Where the shipped ``*.param.yaml`` live: env override, source tree, then install prefixes."""
    env = os.environ.get(_ENV_CONFIG_DIR)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "config")
    candidates.append(Path(sys.prefix) / "share" / "mim_perception" / "config")
    try:  # apt/colcon installs: the ament index knows the share directory
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415 -- present only on apt/colcon ROS installs

        candidates.append(Path(get_package_share_directory("mim_perception")) / "config")
    except Exception:  # noqa: BLE001, S110 - ament index absent or package not indexed: other candidates apply
        pass
    for c in candidates:
        if (c / "monitor.param.yaml").is_file():
            return c
    looked = [str(c) for c in candidates]
    raise ConfigError(f"cannot find the mim_perception config directory (looked in {looked}); set {_ENV_CONFIG_DIR}")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (ROS parameter naming)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def read_param_file(path: str | Path, node_name: str | None = None) -> dict[str, Any]:
    """Flat parameters of a ROS 2 params file: the ``/**`` section, then the node's own section on top."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"parameters file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"parameters file {p} is not valid YAML: {e}") from e
    if not isinstance(doc, Mapping):
        raise ConfigError(f"parameters file {p}: top level must be a mapping of node names")
    params: dict[str, Any] = {}
    keys = ["/**"] + ([node_name, "/" + node_name.lstrip("/")] if node_name else [])
    for key in keys:
        section = doc.get(key)
        if section is None:
            continue
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ConfigError(f"parameters file {p}: section {key!r} lacks 'ros__parameters'")
        params.update(flatten(section["ros__parameters"] or {}))
    return params


def _check_value(name: str, value: Any, typ: Any, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(typ)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(typ) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter '{name}' must be a list, got {value!r}")
        items = [_check_value(f"{name}[{i}]", v, inner, {}) for i, v in enumerate(value)]
        value = tuple(items) if origin is tuple else items
    elif typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"parameter '{name}' must be true or false, got {value!r}")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"parameter '{name}' must be an integer, got {value!r}")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"parameter '{name}' must be a number, got {value!r}")
        value = float(value)
    elif typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"parameter '{name}' must be a string, got {value!r}")
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices") or ()
    if lo is not None and value < lo:
        raise ConfigError(f"parameter '{name}' = {value!r} is below its minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"parameter '{name}' = {value!r} is above its maximum {hi}")
    if choices and value not in choices:
        raise ConfigError(f"parameter '{name}' = {value!r} is not one of {list(choices)}")
    return value


def from_params(cls: type[T], params: Mapping[str, Any], prefix: str = "", *, strict: bool = True) -> T:
    """Build and validate dataclass ``cls`` from flat dotted parameters.

    Nested dataclass fields read ``prefix + field + '.'``. With ``strict`` an unknown name under the
    prefix is an error (catches typos in YAML that would otherwise be silently ignored).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known: set[str] = set()
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = prefix + f.name
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = from_params(typ, params, name + ".", strict=False)  # type: ignore[arg-type]
            known.update(k for k in params if k.startswith(name + "."))
            continue
        known.add(name)
        if name not in params:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ConfigError(f"parameter '{name}' is missing")
        kwargs[f.name] = _check_value(name, params[name], typ, f.metadata)
    if strict:
        unknown = sorted(k for k in params if k.startswith(prefix) and k not in known
                         and not k.startswith(_ROS_BUILTIN_PREFIXES))
        if unknown:
            raise ConfigError(f"unknown parameter(s) for {cls.__name__}: {unknown}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # __post_init__ cross-field checks
        raise ConfigError(f"{cls.__name__}: {e}") from e


def default_params(param_file: str) -> dict[str, Any]:
    """Flat defaults from a shipped params file (``/**`` section)."""
    return read_param_file(config_dir() / param_file)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                *, prefix: str = "", node_name: str | None = None) -> T:
    """Defaults from the shipped file named by ``cls.PARAM_FILE``, then ``path``, then ``overrides``."""
    param_file: str = getattr(cls, "PARAM_FILE")
    params = default_params(param_file)
    if node_name:
        params.update(read_param_file(config_dir() / param_file, node_name))
    if path is not None:
        params.update(read_param_file(path, node_name))
    if overrides:
        params.update(overrides)
    section = {k: v for k, v in params.items() if k.startswith(prefix)}
    return from_params(cls, section, prefix)


def override_params_file(out: Path, model: str | None, params: list[str]) -> Path | None:
    """``--param key.sub=value`` (+ ``--model``) as OUT/params.yaml, a ROS parameter file applied after config/
    (values parsed as YAML); None when there is nothing to override."""
    flat: dict[str, Any] = {}
    if model:
        flat["backend.model"] = str(Path(model).resolve())
    for p in params:
        key, sep, value = p.partition("=")
        if not sep or not key or "." not in key:
            raise ConfigError(f"--param {p!r} must look like section.name=value, e.g. perception.score_threshold=0.1")
        flat[key] = yaml.safe_load(value)
    if not flat:
        return None
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": nested}}))
    return path
