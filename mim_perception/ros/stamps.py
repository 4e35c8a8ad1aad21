"""ROS header stamps as float seconds (the unit the ROS-free core works in)."""

from __future__ import annotations


def stamp_seconds(header: object) -> float:
    s = header.stamp  # type: ignore[attr-defined]
    return float(s.sec) + float(s.nanosec) * 1e-9
