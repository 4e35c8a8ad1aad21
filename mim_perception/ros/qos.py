"""Named QoS profiles and loud reporting of QoS mismatches.

Cameras: best effort, keep last 1 (a late frame is worthless; a reliable queue only adds latency).
Results: reliable, keep last 10. Static info (label maps): reliable + transient local.
A subscriber whose QoS cannot match our publisher gets *nothing*; rclpy reports that only through
event callbacks, so every publisher/subscription made here registers one and counts it.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
STATIC = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

PROFILES = {"sensor": SENSOR, "reliable": RELIABLE, "static": STATIC}


def profile(name: str) -> QoSProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown QoS profile {name!r}; use one of {sorted(PROFILES)}") from None


def _policy_name(event: object) -> str:
    policy = getattr(event, "last_policy_kind", None)
    return str(getattr(policy, "name", policy))


def publisher_events(topic: str, report: Callable[[str], None]) -> PublisherEventCallbacks:
    """Callbacks that call ``report`` when a subscriber's QoS is incompatible with our publisher on ``topic``."""
    return PublisherEventCallbacks(
        incompatible_qos=lambda ev: report(
            f"QoS mismatch on {topic}: a subscriber requests an incompatible {_policy_name(ev)} policy "
            f"(total {ev.total_count}); it receives nothing"),
    )


def subscription_events(topic: str, report: Callable[[str], None]) -> SubscriptionEventCallbacks:
    """Callbacks that call ``report`` when a publisher's QoS is incompatible with our subscription on ``topic``."""
    return SubscriptionEventCallbacks(
        incompatible_qos=lambda ev: report(
            f"QoS mismatch on {topic}: a publisher offers an incompatible {_policy_name(ev)} policy "
            f"(total {ev.total_count}); nothing is received from it"),
    )
