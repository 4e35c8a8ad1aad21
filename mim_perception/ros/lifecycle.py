"""Lifecycle base for our nodes: configure loads + verifies, activate starts publishing.

A failed configure leaves the node unconfigured with ``config_error`` set and starts a fault beacon: ERROR with the
reason on /diagnostics every second, so a vehicle's monitoring sees why the node does nothing. ``mim-perception run``
and the console scripts (launch files) keep such a node alive; tests and `evaluate` fail fast instead.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from mim_perception.core.errors import MimPerceptionError
from mim_perception.ros import qos


class MimLifecycleNode(LifecycleNode):
    """Subclasses implement ``configure()``, ``activate()``, ``deactivate()`` and ``cleanup()`` (plain methods)."""

    def __init__(self, node_name: str, **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)  # type: ignore[arg-type]
        self.config_error: str | None = None
        self._sub: Any = None          # the input subscription (activate creates it)
        self._timer: Any = None        # the diagnostics timer (activate creates it)
        self.errors: deque[str] = deque(maxlen=3)   # recent errors, shown as ERROR on /diagnostics

    def _report(self, message: str) -> None:
        """Log an error and keep it for diagnostics (QoS incompatibility, failed inputs)."""
        self.get_logger().error(message)
        self.errors.append(message)

    def lifecycle_publisher(self, msg_type: Any, topic: str, profile: Any) -> Any:
        """A lifecycle publisher whose incompatible-QoS events are reported (logged, ERROR on /diagnostics)."""
        return self.create_lifecycle_publisher(msg_type, topic, profile,
                                               event_callbacks=qos.publisher_events(topic, self._report))

    def plain_publisher(self, msg_type: Any, topic: str, profile: Any) -> Any:
        """An always-on publisher (diagnostics, /clock) with the same QoS-event reporting."""
        return self.create_publisher(msg_type, topic, profile, event_callbacks=qos.publisher_events(topic, self._report))

    def _now(self) -> float:
        """Node clock in seconds (sim time when use_sim_time)."""
        return float(self.get_clock().now().nanoseconds) * 1e-9

    # -- subclass hooks -------------------------------------------------------------------------
    def configure(self) -> None:
        """Declare parameters, load and verify resources; raise MimPerceptionError on failure."""

    def activate(self) -> None:
        """Create subscriptions/timers; publishers are created in configure."""

    def deactivate(self) -> None:
        """Stop receiving input: destroys the subscription and timer that activate created."""
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def cleanup(self) -> None:
        """Release what configure acquired (subclasses extend it)."""
        self.deactivate()

    # -- rclpy transitions ----------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure()
        except MimPerceptionError as e:
            self.config_error = str(e)
            self.get_logger().error(f"configure failed: {e}")
            self._start_fault_beacon()
            return TransitionCallbackReturn.FAILURE
        self.config_error = None
        return TransitionCallbackReturn.SUCCESS

    def _start_fault_beacon(self, period: float = 1.0) -> None:
        if getattr(self, "_beacon", None) is not None:
            return
        pub = self.plain_publisher(DiagnosticArray, "/diagnostics", qos.RELIABLE)

        def beat() -> None:
            status = DiagnosticStatus(level=DiagnosticStatus.ERROR, name=f"{self.get_fully_qualified_name()}: configure",
                                      message=f"configure failed: {self.config_error}",
                                      hardware_id=self.get_namespace().strip("/") or self.get_name())
            arr = DiagnosticArray(status=[status])
            arr.header.stamp = self.get_clock().now().to_msg()
            pub.publish(arr)

        self._beacon = self.create_timer(period, beat)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def bring_up(self) -> None:
        """configure -> activate, raising MimPerceptionError with the reason if configure fails."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise MimPerceptionError(f"node {self.get_fully_qualified_name()}: {self.config_error or 'configure failed'}")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise MimPerceptionError(f"node {self.get_fully_qualified_name()}: activate failed")


def standalone_main(factory: Callable[..., MimLifecycleNode], name: str, argv: list[str] | None = None) -> int:
    """Entry point of a node's console script (what launch files start): init, bring up, spin."""
    args = sys.argv if argv is None else argv
    rclpy.init(args=args)
    node = factory(name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        try:
            node.bring_up()
        except MimPerceptionError as e:   # stay up: the fault beacon reports the reason on /diagnostics
            print(f"{name}: {e}", file=sys.stderr)
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
