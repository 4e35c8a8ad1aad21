"""An external ONNX detector behind an adapter: camera frame -> detections in the stack's (or the model's) classes.

    det = ExternalDetector.open(Path("model.onnx"), "yolox", class_names=COCO, class_map=ClassMap.load(...))
    dets = det.detect(bgr_image)          # Detections in camera pixels, after threshold, NMS and class mapping

The same object serves the perception node (``ExternalBackend`` in ``external_backend.py``), ``pseudo-label`` and
the evaluation of teachers beside our model.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mim_perception.core.config import config_dir
from mim_perception.core.errors import ConfigError, ModelLoadError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.monitoring.drift import DriftReference
from mim_perception.core.pipeline import ModelOutputs
from mim_perception.core.postprocess import select_detections, to_camera
from mim_perception.core.types import Detections
from mim_perception.inference.adapters import Adapter, Candidates, InputContract, best_class, get_adapter, prepare
from mim_perception.inference.manifest import Manifest, load_manifest, sha256_file, write_manifest
from mim_perception.inference.ort_backend import cpu_session


def load_class_names(spec: str) -> list[str]:
    """``coco`` (config/class_maps/coco.yaml) or a YAML file with ``names: [...]`` -> class names in output order."""
    path = config_dir() / "class_maps" / f"{spec}.yaml" if "/" not in spec and not spec.endswith(".yaml") else Path(spec)
    try:
        names = yaml.safe_load(path.read_text())["names"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise ConfigError(f"class names {spec!r} ({path}): {e}") from e
    return [str(n) for n in names]


@dataclass(frozen=True)
class Riders:
    rider: str
    vehicles: tuple[str, ...]
    target: str
    min_overlap: float
    vehicle_threshold: float


@dataclass(frozen=True)
class ClassMap:
    """Model class name -> stack class name (others dropped), plus the optional rider fusion (person on a bicycle)."""

    map: dict[str, str]
    riders: Riders | None = None
    targets: tuple[str, ...] = field(default=())        # the output class space (stack detection classes)

    @classmethod
    def load(cls, path: Path | str, labels: LabelSpace | None = None) -> ClassMap:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"class map {path}: {e}") from e
        return cls.from_dict(doc, labels, str(path))

    @classmethod
    def from_dict(cls, doc: dict[str, Any], labels: LabelSpace | None = None, where: str = "class map") -> ClassMap:
        """The YAML form (``map``, optional ``riders``) onto the stack's detection classes."""
        space = labels or LabelSpace.load()
        try:
            mapping = {str(k): str(v) for k, v in (doc.get("map") or {}).items()}
            r = doc.get("riders")
            riders = Riders(str(r["rider"]), tuple(str(v) for v in r["vehicles"]), str(r["as"]), float(r["min_overlap"]),
                            float(r.get("vehicle_threshold", 0.0))) if r else None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{where}: {e!r}") from e
        if not mapping:
            raise ConfigError(f"{where}: empty `map`")
        for target in [*mapping.values(), *([riders.target] if riders else [])]:
            space.det_index(target)   # ConfigError naming the unknown class
        return cls(mapping, riders, tuple(space.detection))

    def to_dict(self) -> dict[str, Any]:
        r = self.riders
        return {"map": dict(self.map)} | ({"riders": {"rider": r.rider, "vehicles": list(r.vehicles), "as": r.target,
                                                       "min_overlap": r.min_overlap,
                                                       "vehicle_threshold": r.vehicle_threshold}} if r else {})

    @classmethod
    def identity(cls, names: list[str]) -> ClassMap:
        """Pass the model's own class names through unchanged."""
        return cls({n: n for n in names}, None, tuple(names))

    @property
    def produces(self) -> tuple[str, ...]:
        """The output classes this map can yield."""
        return tuple(dict.fromkeys([*self.map.values(), *([self.riders.target] if self.riders else [])]))

    def check(self, names: list[str]) -> None:
        """Every source class the map names must be a class of the model."""
        used = [*self.map, *([self.riders.rider, *self.riders.vehicles] if self.riders else [])]
        missing = sorted(set(used) - set(names))
        if missing:
            raise ModelLoadError(f"class map names {missing}, which the model does not output (its classes: "
                                 f"{names[:8]}{'…' if len(names) > 8 else ''})")

    def apply(self, c: Candidates, names: list[str]) -> Candidates:
        """Candidates in the model's classes -> candidates in ``targets`` (riders fused first)."""
        boxes, classes = c.boxes.copy(), np.full(len(c.classes), -1, np.int64)
        src = np.array(names, dtype=object)[c.classes] if len(c.classes) else np.zeros(0, dtype=object)
        for s, t in self.map.items():
            classes[src == s] = self.targets.index(t)
        if self.riders is not None:
            r = self.riders
            riders = np.flatnonzero(src == r.rider)
            vehicles = np.flatnonzero(np.isin(src, r.vehicles) & (c.scores >= r.vehicle_threshold))
            for i in riders:
                j = _best_ride(boxes[i], boxes[vehicles], r.min_overlap)
                if j is not None:
                    v = vehicles[j]
                    boxes[i] = np.concatenate([np.minimum(boxes[i, :2], boxes[v, :2]), np.maximum(boxes[i, 2:], boxes[v, 2:])])
                    classes[i] = self.targets.index(r.target)
        keep = classes >= 0
        return Candidates(boxes[keep], c.scores[keep], classes[keep])


def _best_ride(person: np.ndarray, vehicles: np.ndarray, min_overlap: float) -> int | None:
    """Index of the vehicle overlapping the person's lower half most (>= ``min_overlap`` of that half), else None."""
    if len(vehicles) == 0:
        return None
    x0, y0, x1, y1 = person
    half = np.array([x0, (y0 + y1) / 2, x1, y1], np.float32)
    area = max((half[2] - half[0]) * (half[3] - half[1]), 1e-6)
    iw = np.clip(np.minimum(half[2], vehicles[:, 2]) - np.maximum(half[0], vehicles[:, 0]), 0, None)
    ih = np.clip(np.minimum(half[3], vehicles[:, 3]) - np.maximum(half[1], vehicles[:, 1]), 0, None)
    frac = iw * ih / area
    j = int(frac.argmax())
    return j if frac[j] >= min_overlap else None


@dataclass(frozen=True)
class CandidateDecoder:
    """Raw outputs of an external model -> mapped candidates (model pixels), for one image or as the fixed-size
    ``ModelOutputs`` the perception pipeline takes (top ``topk`` by score; thresholds and NMS come after)."""

    adapter: Adapter
    contract: InputContract
    class_names: list[str]
    class_map: ClassMap
    topk: int = 300

    def candidates(self, raw: dict[str, np.ndarray], threshold: float) -> Candidates:
        boxes, scores = self.adapter.decode(raw, self.contract)
        floor = min(threshold, self.class_map.riders.vehicle_threshold) if self.class_map.riders else threshold
        c = self.class_map.apply(best_class(boxes, scores, floor), self.class_names)
        ok = c.scores >= threshold
        return Candidates(c.boxes[ok], c.scores[ok], c.classes[ok])

    def batch(self, raw: dict[str, np.ndarray], floor: float = 1e-3) -> ModelOutputs:
        """Batched raw outputs (leading dimension B) -> ModelOutputs with K = ``topk`` slots per image (unused
        slots: score 0, an empty box), no segmentation, no embedding."""
        n = len(next(iter(raw.values())))
        boxes = np.zeros((n, self.topk, 4), np.float32)
        scores = np.zeros((n, self.topk), np.float32)
        classes = np.zeros((n, self.topk), np.int64)
        for i in range(n):
            c = self.candidates({k: v[i:i + 1] for k, v in raw.items()}, floor)
            order = np.argsort(-c.scores, kind="stable")[: self.topk]
            k = len(order)
            boxes[i, :k], scores[i, :k], classes[i, :k] = c.boxes[order], c.scores[order], c.classes[order]
        return ModelOutputs(boxes, scores, classes, None, None)


class ExternalDetector:
    """ONNX Runtime session + adapter + contract + class map. ``detect`` returns camera-pixel Detections."""

    def __init__(self, session: Any, adapter: Adapter, contract: InputContract, class_names: list[str],
                 class_map: ClassMap) -> None:
        self.session, self.adapter, self.contract = session, adapter, contract
        self.class_names, self.class_map = class_names, class_map
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"external models must have one image input, this one has {len(inputs)}")
        shape = list(inputs[0].shape)
        if inputs[0].type != "tensor(float)":
            raise ModelLoadError(f"input {inputs[0].name} is {inputs[0].type}; external adapters feed float32")
        if len(shape) != 4 or shape[1] != 3 or (isinstance(shape[2], int) and shape[2:] != [contract.height, contract.width]):
            raise ModelLoadError(f"input {inputs[0].name} is {shape}, the contract says 1×3×{contract.height}×{contract.width}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        adapter.check_outputs([(o.name, o.shape) for o in session.get_outputs()], len(class_names), contract)
        class_map.check(class_names)
        self.decoder = CandidateDecoder(adapter, contract, class_names, class_map)

    @classmethod
    def open(cls, onnx_path: Path, adapter: str, *, class_names: list[str], class_map: ClassMap | None = None,
             contract: InputContract | None = None, threads: int = 2) -> ExternalDetector:

        a = get_adapter(adapter)
        sess = cpu_session(onnx_path, threads)
        if contract is None:
            shape = sess.get_inputs()[0].shape
            if len(shape) != 4 or not all(isinstance(v, int) for v in shape[2:]):
                raise ModelLoadError(f"{onnx_path}: dynamic input size {shape}; give the size in the contract")
            contract = a.default_contract(int(shape[2]), int(shape[3]))
        return cls(sess, a, contract, class_names, class_map or ClassMap.identity(class_names))

    @property
    def targets(self) -> tuple[str, ...]:
        return self.class_map.targets

    def candidates(self, image: np.ndarray, threshold: float) -> tuple[Candidates, Any]:
        """Mapped candidates (model pixels, before NMS) and the frame geometry."""
        x, geom = prepare(image, self.contract)
        return self.decoder.candidates(self.run(x), threshold), geom

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs by name for a prepared float32 batch."""
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: x}), strict=True))

    def detect(self, image: np.ndarray, threshold: float = 0.3, nms_iou: float = 0.6, max_detections: int = 100
               ) -> Detections:
        c, geom = self.candidates(image, threshold)
        # as the perception pipeline: set-prediction models are final (IoU > 1 never suppresses)
        d = select_detections(c.boxes, c.scores, c.classes, score_threshold=threshold,
                              nms_iou=nms_iou if self.adapter.nms else 1.0, max_detections=max_detections)
        return to_camera(d, geom, image.shape[:2])


def import_model(onnx_path: Path, out: Path, adapter: str, *, classes: str, class_map: Path | None = None,
                 name: str = "", contract: InputContract | None = None, image_reference: Path | None = None) -> Manifest:
    """Copy an external ONNX detector into a verified bundle ``out`` (model.onnx + manifest.json): the adapter must
    match the outputs, the input the contract, the class map the model's classes; fails with ModelLoadError or
    ConfigError naming the problem, before anything is written."""

    names = load_class_names(classes)
    cmap = ClassMap.load(class_map) if class_map else ClassMap.identity(names)
    det = ExternalDetector.open(onnx_path, adapter, class_names=names, class_map=cmap, contract=contract)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, out / "model.onnx")
    files = {"onnx": "model.onnx"}
    if image_reference is not None:   # image statistics do not depend on the model: any bundle's reference serves

        DriftReference.load(image_reference)   # ModelLoadError if it is not one
        shutil.copyfile(image_reference, out / "image_reference.npz")
        files["image_reference"] = "image_reference.npz"
    c = det.contract
    manifest = Manifest(
        name=name or out.name, architecture=f"external:{adapter}", input_height=c.height, input_width=c.width,
        input_format=f"float32 NCHW {c.color.upper()} ×{c.scale:g}, mean {list(c.mean)}, std {list(c.std)}, "
                     f"letterbox {c.placement} pad {c.pad_value:g}",
        detection_classes=list(cmap.targets), segmentation_classes=[], segmentation_palette_bgr=[], seg_stride=0,
        topk=0, embed_dim=0, files=files, sha256={},
        training={"imported_from": onnx_path.name, "source_sha256": sha256_file(onnx_path),
                  "image_reference": str(image_reference) if image_reference else None},
        adapter=adapter, input_contract=c.to_dict(), source_classes=names,
        class_map={} if class_map is None else cmap.to_dict())
    write_manifest(out, manifest)
    return load_manifest(out)


def decoder_from_manifest(m: Manifest, where: str = "bundle") -> CandidateDecoder:
    """The adapter, contract and class map an external bundle's manifest records (any runtime: ORT, TensorRT)."""
    if not m.external:
        raise ModelLoadError(f"{where} is not an external-detector bundle (no adapter in its manifest)")
    cmap = ClassMap.from_dict(m.class_map, where=f"{where} class map") if m.class_map else ClassMap.identity(m.source_classes)
    cmap.check(m.source_classes)
    return CandidateDecoder(get_adapter(m.adapter), InputContract.from_dict(m.input_contract), m.source_classes, cmap)


def open_external(bundle: Path, threads: int = 2) -> tuple[ExternalDetector, Manifest]:
    """The verified (sha256) external detector of a bundle written by :func:`import_model`."""
    m = load_manifest(bundle, roles=("onnx",))
    d = decoder_from_manifest(m, str(bundle))
    det = ExternalDetector.open(m.path(bundle, "onnx"), m.adapter, class_names=m.source_classes, class_map=d.class_map,
                                contract=d.contract, threads=threads)
    return det, m
