"""perception: camera in -> detections, segmentation, tracks, latency, drift out. A thin shell around Perceiver.

configure loads and verifies the model bundle (sha256) and warms the backend up (a failure fails configure
with the reason, and diagnostics say ERROR); activate subscribes and starts the node's worker thread. The
subscription callback only registers a frame and puts it in a depth-1 slot (core/frame_slot.py); the worker takes
the newest frame as soon as the model is free. A frame replaced in the slot before the model could take it is
counted as dropped (busy); nothing is queued (a late frame is worthless). The same under any executor.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from mim_perception_msgs.msg import DriftStatus, FrameLatency, TrackArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from mim_perception.core.errors import BadImageError, MimPerceptionError, ModelLoadError
from mim_perception.core.frame_slot import SlotWorker
from mim_perception.core.inputs import InputConfig
from mim_perception.core.monitoring.drift import DriftDetector, DriftReference
from mim_perception.core.monitoring.health import Level, MonitorConfig, drift_alarm, judge, ood_alarm
from mim_perception.core.monitoring.image_stats import FEATURES as IMAGE_FEATURES
from mim_perception.core.monitoring.ood import OodMonitor
from mim_perception.core.overlay import draw_overlay
from mim_perception.core.pipeline import Perceiver, PerceptionConfig, PerceptionResult
from mim_perception.core.tracking.tracker import Tracker, TrackerConfig
from mim_perception.inference.backends import BackendConfig, SharedBackends, default_model_dir, load_backend
from mim_perception.inference.ood_model import load_ood
from mim_perception.ros import qos
from mim_perception.ros.detection_msgs import arrays_to_detections
from mim_perception.ros.diagnostics import to_array, to_status
from mim_perception.ros.image_msgs import compressed_to_bgr8, image_to_bgr8, numpy_to_image
from mim_perception.ros.lifecycle import MimLifecycleNode, standalone_main
from mim_perception.ros.params import declare_and_load
from mim_perception.ros.stamps import stamp_seconds
from mim_perception.ros.track_msgs import ClassVocabulary, tracks_to_msg

NAN = math.nan


class PerceptionNode(MimLifecycleNode):
    accepts_shared_backends = True   # the in-process runner hands every camera the same SharedBackends

    def __init__(self, node_name: str = "perception", shared_backends: SharedBackends | None = None,
                 **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self.shared_backends = shared_backends
        self._arrival = threading.Lock()
        self.worker: SlotWorker | None = None
        self._faults: Counter[str] = Counter()   # malformed-input reasons since the last diagnostics message
        self._fault_totals: Counter[str] = Counter()
        self.warnings: deque[str] = deque(maxlen=3)
        self.invalid_outputs = 0
        self._invalid_reported = 0   # invalid_outputs at the last diagnostics message
        self._last_drift = (NAN, NAN)   # p-values of the embedding and image-statistics channels, last window
        self.ood: OodMonitor | None = None

    def configure(self) -> None:
        self.input = declare_and_load(self, InputConfig, prefix="input.")
        self.monitor = declare_and_load(self, MonitorConfig, prefix="monitor.")
        self.pcfg = declare_and_load(self, PerceptionConfig, prefix="perception.")
        self.bcfg = declare_and_load(self, BackendConfig, prefix="backend.")
        tcfg = declare_and_load(self, TrackerConfig, prefix="tracker.")
        self.stats = self.monitor.new_stats()
        self.hardware_id = self.input.hardware_id or self.get_namespace().strip("/") or "camera"
        try:
            backend, self.manifest, reason = (self.shared_backends.get(self.bcfg) if self.shared_backends is not None
                                              else load_backend(self.bcfg))
        except MimPerceptionError as e:
            self.errors.append(f"model load failed: {e}")
            raise
        bundle = Path(self.bcfg.model) if self.bcfg.model else default_model_dir()
        self.model_id = f"{self.manifest.name}@{self.manifest.sha256.get(self.manifest.files['onnx'], '')[:12]}"
        self.get_logger().info(f"backend {backend.name} ({reason}); model {self.model_id} input {backend.input_hw}")
        self.drift = self._load_drift(bundle)
        self.drift_alarm, self.ood_alarm = drift_alarm(self.monitor), ood_alarm(self.monitor)
        self.ood = self._load_ood(bundle)
        self._resets = 0
        self.vocab = ClassVocabulary()
        self.vocab.labels(list(self.manifest.detection_classes))   # label i <-> the model's class i
        self.perceiver = Perceiver(backend, self.pcfg, Tracker(tcfg), self.drift, self.ood)
        self.det_pub = self.lifecycle_publisher(Detection2DArray, "~/out/detections", qos.RELIABLE)
        # a detector without a segmentation output (external model) publishes no segmentation topic at all
        self.seg_pub = self.lifecycle_publisher(Image, "~/out/segmentation", qos.RELIABLE) \
            if self.manifest.segmentation_classes else None
        self.overlay_pub = self.lifecycle_publisher(Image, "~/out/overlay", qos.SENSOR)
        self.track_pub = self.lifecycle_publisher(TrackArray, "~/out/tracks", qos.RELIABLE)
        self.latency_pub = self.lifecycle_publisher(FrameLatency, "~/out/latency", qos.RELIABLE)
        self.drift_pub = self.lifecycle_publisher(DriftStatus, "~/out/drift", qos.RELIABLE)
        self.diag_pub = self.plain_publisher(DiagnosticArray, "/diagnostics", qos.RELIABLE)

    def _load_reference(self, bundle: Path, role: str, disabled: str) -> DriftReference | None:
        """The bundle's ``role`` reference, or None with the reason on the warnings (``disabled`` names what stops)."""
        name = self.manifest.files.get(role)
        if not name:
            return None
        try:
            return DriftReference.load(bundle / name)
        except ModelLoadError as e:
            self.warnings.append(f"{disabled} disabled: {e}")
            return None

    def _load_drift(self, bundle: Path) -> DriftDetector | None:
        if self.manifest.embed_dim == 0:   # no embedding output (external detector): image statistics only
            image_ref = self._load_reference(bundle, "image_reference", "image-statistics drift")
            if image_ref is None:
                self.warnings.append("model bundle has neither an embedding output nor an image reference: "
                                     "drift monitoring disabled")
                return None
            return DriftDetector(None, every=self.pcfg.drift_every, image_reference=image_ref)
        if "drift_reference" not in self.manifest.files:
            self.warnings.append("model bundle has no drift reference: drift monitoring disabled")
            return None
        ref = self._load_reference(bundle, "drift_reference", "drift monitoring")
        if ref is None:
            return None
        if ref.mean.shape[0] != self.manifest.embed_dim:
            self.warnings.append(f"drift reference is for {ref.mean.shape[0]}-d embeddings, model gives "
                                 f"{self.manifest.embed_dim}: drift monitoring disabled")
            return None
        return DriftDetector(ref, every=self.pcfg.drift_every, image_reference=self._load_image_reference(bundle, ref))

    def _load_image_reference(self, bundle: Path, ref: DriftReference) -> DriftReference | None:
        # older bundles have none: the embedding alone (blur / compression are then barely seen)
        image_ref = self._load_reference(bundle, "image_reference", "image-statistics drift")
        if image_ref is not None and (image_ref.mean.shape[0] != len(IMAGE_FEATURES) or image_ref.window != ref.window):
            self.warnings.append(f"image reference is for {image_ref.mean.shape[0]} statistics / window "
                                 f"{image_ref.window}, expected {len(IMAGE_FEATURES)} / {ref.window}: "
                                 "image-statistics drift disabled")
            return None
        return image_ref

    def _restart_monitors(self) -> None:
        if self.drift is not None:
            self.drift.reset()
        self.drift_alarm.reset()
        self.ood_alarm.reset()
        if self.ood is not None:
            self.ood.reset()

    def cleanup(self) -> None:
        super().cleanup()
        if self.ood is not None:
            self.ood.close()
            self.ood = None

    def _load_ood(self, bundle: Path) -> OodMonitor | None:

        if "ood" not in self.manifest.files or self.pcfg.ood_every == 0:   # not a fault: said in the values
            return None
        try:
            error_fn, ref = load_ood(bundle, self.manifest)
        except ModelLoadError as e:
            self.warnings.append(f"OOD monitoring disabled: {e}")
            return None
        return OodMonitor(error_fn, ref, every=self.pcfg.ood_every)

    def activate(self) -> None:
        if self.input.transport == "compressed":
            topic, typ, cb = "~/in/image/compressed", CompressedImage, self._on_compressed
        else:
            topic, typ, cb = "~/in/image", Image, self._on_raw
        # The callback only registers the frame and hands it to the worker thread (never blocks on the model).
        self.worker = SlotWorker(self._process, f"perception-{self.hardware_id}", self._worker_error).start()
        self._sub = self.create_subscription(typ, topic, cb, qos.SENSOR, callback_group=MutuallyExclusiveCallbackGroup(),
                                             event_callbacks=qos.subscription_events(topic, self._report))
        self._timer = self.create_timer(self.monitor.diagnostics_period, self._publish_diagnostics,
                                        callback_group=MutuallyExclusiveCallbackGroup())

    def deactivate(self) -> None:
        super().deactivate()
        if self.worker is not None:
            if self.worker.stop() is not None:   # a frame still waiting will never run: counted
                self.stats.drops.busy += 1
            self.worker = None

    def destroy_node(self) -> None:
        if self.worker is not None:   # the worker must not publish on destroyed publishers
            self.worker.stop()
            self.worker = None
        super().destroy_node()

    def _worker_error(self, e: BaseException) -> None:
        self.stats.on_failed()
        self._report(f"frame processing failed: {type(e).__name__}: {e}")

    def _on_raw(self, msg: Image) -> None:
        self._frame(msg, image_to_bgr8)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._frame(msg, compressed_to_bgr8)

    def _input_fault(self, reason: str) -> None:
        """A dropped malformed frame: counted by reason, WARN with the reason on the next /diagnostics."""
        with self._arrival:
            self._faults[reason] += 1
            self._fault_totals[reason] += 1
        self.get_logger().warning(f"malformed frame dropped: {reason}", throttle_duration_sec=2.0)

    def _frame(self, msg: Any, decode: Any) -> None:
        receive = self._now()
        stamp = stamp_seconds(msg.header)
        if stamp <= 0.0:   # an unset stamp: no latency, no tracker dt, no drop accounting can use it
            with self._arrival:
                self.stats.on_malformed(receive)
            self._input_fault("header.stamp is zero (not set by the camera driver)")
            return
        # Register every frame in arrival order (stamp-gap drop counting relies on that order), then offer it to the
        # worker; the frame it replaces never ran and is counted as dropped (busy).
        with self._arrival:
            self.stats.on_frame(stamp, receive)
            if self.stats.resets != self._resets:   # clock jumped back (bag loop, sim reset): windows restart
                self._resets = self.stats.resets
                self._restart_monitors()
            if self.worker is None or self.worker.slot.put((msg, decode, stamp)) is not None:
                self.stats.drops.busy += 1

    def _process(self, item: tuple[Any, Any, float]) -> None:
        """Worker thread: decode, run the pipeline, publish."""
        msg, decode, stamp = item
        t0 = time.perf_counter()
        try:
            image = decode(msg)
        except BadImageError as e:
            self.stats.on_failed()
            self._input_fault(f"undecodable image: {e}")
            return
        decode_ms = (time.perf_counter() - t0) * 1e3
        if min(image.shape[:2]) < self.input.min_side:
            self.stats.on_failed()
            self._input_fault(f"image {image.shape[1]}×{image.shape[0]} is below input.min_side {self.input.min_side} px")
            return
        try:
            result = self.perceiver.process(image, stamp)
        except (BadImageError, ValueError) as e:
            self.stats.on_failed()
            self.get_logger().warning(f"frame skipped: {e}", throttle_duration_sec=2.0)
            return
        self._publish(msg.header, image, result, decode_ms, stamp)

    def _publish(self, header: Any, image: np.ndarray, r: PerceptionResult, decode_ms: float, stamp: float) -> None:
        t0 = time.perf_counter()
        self.invalid_outputs += r.invalid_outputs
        names = [self.manifest.detection_classes[int(c)] for c in r.detections.labels]
        self.det_pub.publish(arrays_to_detections(header, r.detections.boxes, r.detections.scores, names))
        if self.seg_pub is not None and r.seg is not None:
            self.seg_pub.publish(numpy_to_image(r.seg, "mono8", header))
        if r.tracks is not None:
            self.track_pub.publish(tracks_to_msg(header, r.tracks, self.vocab))
        if self.overlay_pub.get_subscription_count() > 0:   # only drawn while someone looks

            palette = np.asarray(self.manifest.segmentation_palette_bgr, np.uint8)
            self.overlay_pub.publish(numpy_to_image(draw_overlay(image, r, palette, self.manifest.detection_classes),
                                                    "bgr8", header))
        fresh = self.ood.take_fresh() if self.ood is not None else None
        if fresh is not None:
            self.ood_alarm.update(fresh)
        if r.drift is not None:
            self._last_drift = (r.drift.p_embedding, r.drift.p_image)
            level = max(self.drift_alarm.update(r.drift.p_value), self.ood_alarm.level)
            self.drift_pub.publish(DriftStatus(header=header, camera=self.hardware_id, model_id=self.model_id,
                                               reference_loaded=True, window_size=r.drift.samples,
                                               drift_score=r.drift.score, drift_p_value=r.drift.p_value,
                                               ood_score=r.ood, level=int(level)))
        publish_ms = (time.perf_counter() - t0) * 1e3
        t = r.timings_ms
        out = FrameLatency(header=header, camera=self.hardware_id, decode_ms=decode_ms, preprocess_ms=t["preprocess"],
                           inference_ms=t["inference"], postprocess_ms=t["postprocess"], tracking_ms=t["tracking"],
                           publish_ms=publish_ms)
        out.pipeline_ms = self.stats.on_done(stamp, self._now(), {"decode": decode_ms, **t, "publish": publish_ms})
        d = self.stats.drops
        out.frames_received, out.dropped_superseded = d.received, d.superseded
        out.dropped_busy, out.dropped_malformed = d.busy, d.malformed
        self.latency_pub.publish(out)

    def _publish_diagnostics(self) -> None:
        findings = [(Level.WARN, w) for w in self.warnings]
        with self._arrival:
            faults, self._faults = self._faults, Counter()
        if faults:
            findings.append((Level.WARN, f"{sum(faults.values())} malformed frame(s) dropped since the last report: "
                             + "; ".join(f"{r} (×{n})" for r, n in faults.most_common(3))))
        ood = self.ood.latest() if self.ood is not None else NAN
        findings += [self.drift_alarm.finding(), self.ood_alarm.finding()]
        if self.ood is not None and self.ood.last_error:
            findings.append((Level.WARN, f"OOD scorer failing: {self.ood.last_error}"))
        new_invalid, self._invalid_reported = self.invalid_outputs - self._invalid_reported, self.invalid_outputs
        if new_invalid:   # the model produced NaN/inf since the last report: a fault now, not a past one
            findings.append((Level.ERROR, f"{new_invalid} non-finite model outputs dropped since the last report"))
        elif self.invalid_outputs:
            findings.append((Level.WARN, f"{self.invalid_outputs} non-finite model outputs dropped (none recently)"))
        verdict = judge(self.stats, self.monitor, self._now(), tuple(self.errors), tuple(findings))
        verdict.values |= {"model": self.model_id, "backend": self.perceiver.backend.name,
                           "monitors": self._monitors(),
                           "drift_p_value": f"{self.drift_alarm.p_value:.3g}",
                           "drift_p_embedding": f"{self._last_drift[0]:.3g}", "drift_p_image": f"{self._last_drift[1]:.3g}",
                           "drift_low_p_run": str(self.drift_alarm.run), "invalid_outputs": str(self.invalid_outputs),
                           "malformed_by_reason": "; ".join(f"{r}: {n}" for r, n in self._fault_totals.most_common(5))
                           or "none",
                           "drift_rejected_embeddings": str(self.drift.rejected if self.drift is not None else 0),
                           "ood_score": f"{ood:.5f}" if self.ood is not None else
                           "off (perception.ood_every 0)" if self.pcfg.ood_every == 0 else "off (no OOD model in bundle)"}
        if self.ood is not None:
            verdict.values |= {"ood_scored": str(self.ood.scored), "ood_skipped_busy": str(self.ood.skipped_busy),
                               "ood_rejected": str(self.ood.rejected)}
        status = to_status(verdict, f"{self.get_fully_qualified_name()}: perception", self.hardware_id)
        self.diag_pub.publish(to_array([status], Time(seconds=self._now()).to_msg()))


    def _monitors(self) -> str:
        """Which monitors run, for /diagnostics (external detectors have no embedding or OOD model)."""
        d = self.drift
        drift = "drift off" if d is None else "drift: image statistics only" if d.ref is None else \
            "drift: embedding + image statistics" if d.image_ref is not None else "drift: embedding"
        return f"{drift}; OOD {'on' if self.ood is not None else 'off'}; latency, drops, input on"


def main(argv: list[str] | None = None) -> int:
    return standalone_main(PerceptionNode, "perception", argv)
