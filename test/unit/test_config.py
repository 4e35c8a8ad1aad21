"""Typed configuration: YAML is the single source of defaults; every bad value names its parameter."""

from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from mim_perception.core.config import config_dir, from_params, load_config, read_param_file, rng
from mim_perception.core.errors import ConfigError
from mim_perception.core.monitoring.health import MonitorConfig
from mim_perception.ros.graph import GraphConfig


@dataclass(frozen=True)
class Inner:
    gain: float = field(metadata=rng(0.0, 1.0))


@dataclass(frozen=True)
class Outer:
    PARAM_FILE: ClassVar[str] = "none.yaml"
    mode: str = field(metadata=rng(choices=("a", "b")))
    count: int = field(metadata=rng(1, 10))
    names: list[str]
    inner: Inner


GOOD = {"mode": "a", "count": 3, "names": ["x"], "inner.gain": 0.5}


def test_from_params_builds_nested_and_coerces_int_to_float():
    cfg = from_params(Outer, {**GOOD, "inner.gain": 1})
    assert cfg.inner.gain == 1.0 and isinstance(cfg.inner.gain, float)
    assert cfg.names == ["x"]


@pytest.mark.parametrize(("key", "value", "words"), [
    ("count", 0, "below its minimum"),
    ("count", 11, "above its maximum"),
    ("count", 2.5, "must be an integer"),
    ("count", True, "must be an integer"),
    ("mode", "c", "not one of"),
    ("inner.gain", "high", "must be a number"),
    ("names", "x", "must be a list"),
])
def test_bad_values_name_the_parameter(key, value, words):
    with pytest.raises(ConfigError) as e:
        from_params(Outer, {**GOOD, key: value})
    assert key.split(".")[-1] in str(e.value) and words in str(e.value)


def test_missing_and_unknown_parameters_are_errors():
    with pytest.raises(ConfigError, match="'count' is missing"):
        from_params(Outer, {k: v for k, v in GOOD.items() if k != "count"})
    with pytest.raises(ConfigError, match="unknown parameter"):
        from_params(Outer, {**GOOD, "cuont": 3})


def test_ros_builtin_parameters_are_not_unknown():
    assert from_params(Outer, {**GOOD, "use_sim_time": True}).count == 3


def test_param_file_sections_and_errors(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    a: 1\n    g:\n      b: 2\nme:\n  ros__parameters:\n    a: 5\n")
    assert read_param_file(f) == {"a": 1, "g.b": 2}
    assert read_param_file(f, "me") == {"a": 5, "g.b": 2}
    with pytest.raises(ConfigError, match="not found"):
        read_param_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("/**: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_param_file(tmp_path / "bad.yaml")
    (tmp_path / "nop.yaml").write_text("/**:\n  params: {}\n")
    with pytest.raises(ConfigError, match="ros__parameters"):
        read_param_file(tmp_path / "nop.yaml")


def test_every_shipped_param_file_loads():
    assert load_config(MonitorConfig, prefix="monitor.").silence_warn == 0.5
    assert load_config(GraphConfig, prefix="graph.").cameras
    for f in config_dir().glob("*.param.yaml"):
        assert read_param_file(f), f


def test_user_file_overrides_defaults_and_cross_field_check(tmp_path):
    f = tmp_path / "user.yaml"
    f.write_text("/**:\n  ros__parameters:\n    monitor:\n      silence_warn: 2.0\n")
    with pytest.raises(ConfigError, match="silence_warn must not exceed"):
        load_config(MonitorConfig, f, prefix="monitor.")
    cfg = load_config(MonitorConfig, f, {"monitor.silence_error": 3.0}, prefix="monitor.")
    assert (cfg.silence_warn, cfg.silence_error) == (2.0, 3.0)
