"""core.monitoring verdicts -> diagnostic_msgs (published directly: diagnostic_updater has no wheel)."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mim_perception.core.monitoring.health import Level, Verdict

_LEVELS = {
    Level.OK: DiagnosticStatus.OK,
    Level.WARN: DiagnosticStatus.WARN,
    Level.ERROR: DiagnosticStatus.ERROR,
    Level.STALE: DiagnosticStatus.STALE,
}


def to_status(verdict: Verdict, name: str, hardware_id: str) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=_LEVELS[verdict.level],  # a `byte` field: must be the class constant, not an int
        name=name,
        message=verdict.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in verdict.values.items()],
    )


def to_array(statuses: list[DiagnosticStatus], stamp: object) -> DiagnosticArray:
    msg = DiagnosticArray(status=statuses)
    msg.header.stamp = stamp
    return msg
