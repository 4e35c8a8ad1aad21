"""Procedural driving scenes with exact labels: the simulator-free data source.

A pinhole camera 1.5 m above a straight road (3 lanes, sidewalks, verge, building facades, sky)
while the ego drives forward. Vehicles, pedestrians, cyclists and traffic cones move in the world;
each frame is rendered far-to-near so occlusion is exact, and the labels come from the rendered
instance map: a box is the extent of the object's *visible* pixels and ``visibility`` is visible /
unoccluded pixels. Deterministic per seed. Fast (a few ms per 640×384 frame), so tests, the demo bag
and the tracking fixture need no simulator; MetaDrive (sim/metadrive_*) gives realistic frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from mim_perception.core.labels import LabelSpace

CAM_HEIGHT = 1.5          # m
LANE = 3.5                # m
ROAD_HALF = 1.5 * LANE    # m, three lanes
WALK_OUT = ROAD_HALF + 2.5
FACADE_X = WALK_OUT + 3.0
NEAR, FAR = 2.0, 160.0    # m, rendered depth range
# class: (width m, height m, length m, speed m/s)
SHAPES = {"car": (1.8, 1.5, 4.3, 11.0), "truck": (2.5, 3.2, 8.0, 9.0), "bus": (2.6, 3.1, 11.0, 8.0),
          "pedestrian": (0.6, 1.75, 0.5, 1.4), "cyclist": (0.7, 1.8, 1.7, 4.5), "traffic_cone": (0.4, 0.7, 0.4, 0.0)}


@dataclass(frozen=True)
class SceneConfig:
    width: int = 640
    height: int = 384
    fps: float = 15.0
    frames: int = 90
    seed: int = 0
    n_objects: int = 10
    ego_speed: float = 10.0           # m/s
    stamp_jitter: float = 0.0         # s, uniform ± on each frame's stamp
    start_time: float = 1_700_000_000.0
    min_pixels: int = 60              # visible pixels below which an object is not labelled
    focal_ratio: float = 0.8          # fx = fy = focal_ratio * width


@dataclass
class SynthFrame:
    index: int
    stamp: float
    image: np.ndarray                 # H×W×3 uint8 BGR
    seg: np.ndarray                   # H×W uint8, stack label space
    boxes: np.ndarray                 # N×4 float32 xyxy, visible extent
    labels: np.ndarray                # N int32 detection class index
    track_ids: np.ndarray             # N int32, persistent per object
    visibility: np.ndarray            # N float32 in (0, 1]
    camera: dict[str, float] = field(default_factory=dict)


@dataclass
class _Obj:
    oid: int
    cls: str
    x: float
    z: float
    vx: float
    vz: float                         # world velocity (m/s), z forward
    color: tuple[int, int, int]
    target_x: float


class SyntheticScene:
    """Iterate ``frames()``; state is per instance (no globals), randomness from one seeded Generator."""

    def __init__(self, cfg: SceneConfig, labels: LabelSpace | None = None) -> None:
        self.cfg = cfg
        self.labels = labels or LabelSpace.load()
        self.rng = np.random.default_rng(cfg.seed)
        r = self.rng
        self.f = cfg.focal_ratio * cfg.width
        self.cx, self.cy = cfg.width / 2, cfg.height / 2
        self.camera = {"fx": self.f, "fy": self.f, "cx": self.cx, "cy": self.cy,
                       "width": float(cfg.width), "height": float(cfg.height)}
        self.s = 0.0                   # ego odometry, m
        self.next_id = 1
        # Per-episode look: time of day and haze.
        self.light = float(r.uniform(0.55, 1.15))
        self.haze = float(r.uniform(0.0, 0.35))
        self.sky = np.array(r.uniform([150, 110, 60], [255, 200, 140]), np.float32)
        self.facades = [(side, float(z0), float(z0 + r.uniform(8, 25)), float(r.uniform(4, 18)), _color(r, 60, 200))
                        for side in (-1, 1) for z0 in np.cumsum(r.uniform(10, 30, 40))]
        self.crosswalks = [float(z) for z in np.cumsum(r.uniform(60, 140, 8))]
        self.objs: list[_Obj] = []
        for _ in range(cfg.n_objects):
            self.objs.append(self._spawn(float(r.uniform(8, 70))))
        self._shake = 0.0

    # -- world ----------------------------------------------------------------------------------
    def _spawn(self, z: float) -> _Obj:
        r = self.rng
        cls = str(r.choice(list(SHAPES), p=[0.45, 0.1, 0.05, 0.2, 0.1, 0.1]))
        speed = SHAPES[cls][3] * float(r.uniform(0.7, 1.3))
        if cls in ("car", "truck", "bus"):
            lane = int(r.integers(-1, 2))
            x = lane * LANE
            vz = -speed if lane < 0 else speed          # left lane is oncoming traffic
        elif cls == "traffic_cone":
            x, vz = float(r.choice([-1, 1])) * (ROAD_HALF - 0.4), 0.0
        else:
            side = float(r.choice([-1, 1]))
            x = side * float(r.uniform(ROAD_HALF + 0.5, WALK_OUT - 0.3)) if cls == "pedestrian" else side * (ROAD_HALF - 0.6)
            vz = speed * float(r.choice([-1, 1]))
        vx = 0.0
        if cls == "pedestrian" and r.random() < 0.3:   # crossing the road
            vx, vz = -np.sign(x) * speed, 0.0
        o = _Obj(self.next_id, cls, x, z, vx, vz, _color(r, 20, 235), x)
        self.next_id += 1
        return o

    def _step(self, dt: float) -> None:
        r = self.rng
        self.s += self.cfg.ego_speed * dt
        self._shake = float(np.clip(0.7 * self._shake + r.normal(0, 1.2), -4, 4))
        keep: list[_Obj] = []
        for o in self.objs:
            if o.cls in ("car", "truck", "bus") and o.vz > 0 and r.random() < 0.01:
                o.target_x = float(r.choice([0.0, LANE]))   # lane change in our direction's lanes
            o.x += float(np.clip(o.target_x - o.x, -1.2 * dt, 1.2 * dt)) + o.vx * dt
            o.z += (o.vz - self.cfg.ego_speed) * dt
            if o.vx and abs(o.x) > WALK_OUT:
                o.vx = 0.0
            if NEAR < o.z < 90:
                keep.append(o)
        while len(keep) < self.cfg.n_objects:
            faster = r.random() < 0.15   # occasionally something overtakes from behind
            keep.append(self._spawn(float(r.uniform(3, 6)) if faster else float(r.uniform(60, 85))))
            if faster:
                keep[-1].vz = abs(keep[-1].vz) + self.cfg.ego_speed + 3.0
                if keep[-1].cls not in ("car", "truck", "bus"):
                    keep[-1] = self._spawn(float(r.uniform(60, 85)))
        self.objs = keep

    # -- projection -----------------------------------------------------------------------------
    def _uv(self, x: float, y: float, z: float) -> tuple[float, float]:
        """World point (x right, y up from the ground, z forward; metres) -> pixel."""
        return self.cx + self.f * x / z, self.cy + self._shake + self.f * (CAM_HEIGHT - y) / z

    def _quad(self, x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> np.ndarray | None:
        z0, z1 = max(z0, NEAR), min(z1, FAR)
        if z1 <= z0:
            return None
        pts = [self._uv(x0, y, z0), self._uv(x1, y, z0), self._uv(x1, y, z1), self._uv(x0, y, z1)]
        return np.round(np.array(pts) * 16).astype(np.int32)   # 4 fractional bits for cv2 shift

    def _wall(self, x: float, z0: float, z1: float, h: float) -> np.ndarray | None:
        z0, z1 = max(z0, NEAR), min(z1, FAR)
        if z1 <= z0:
            return None
        pts = [self._uv(x, 0, z0), self._uv(x, h, z0), self._uv(x, h, z1), self._uv(x, 0, z1)]
        return np.round(np.array(pts) * 16).astype(np.int32)

    # -- rendering ------------------------------------------------------------------------------
    def _background(self, img: np.ndarray, seg: np.ndarray) -> None:
        L = self.labels
        horizon = int(self.cy + self._shake)
        grad = np.linspace(0.75, 1.0, max(horizon, 1))[:, None, None]
        img[:horizon] = (self.sky * grad).astype(np.uint8)[: max(horizon, 0)]
        seg[:horizon] = L.seg_index("sky")
        img[horizon:] = (70, 110, 85)
        seg[horizon:] = L.seg_index("vegetation")

        def fill(poly: np.ndarray | None, color: tuple[int, int, int], label: str) -> None:
            if poly is None:
                return
            cv2.fillPoly(img, [poly], color, cv2.LINE_AA, shift=4)
            cv2.fillPoly(seg, [poly], L.seg_index(label), cv2.LINE_8, shift=4)

        for side, z0, z1, height, color in self.facades:
            if z1 - self.s > NEAR and z0 - self.s < FAR:
                fill(self._wall(side * FACADE_X, z0 - self.s, z1 - self.s, height), color, "building")
        fill(self._quad(-WALK_OUT, WALK_OUT, NEAR, FAR), (150, 150, 155), "sidewalk")
        fill(self._quad(-ROAD_HALF, ROAD_HALF, NEAR, FAR), (85, 85, 90), "road")
        for zc in self.crosswalks:
            z = zc - self.s
            if NEAR < z + 3 and z < FAR:
                for k in range(-5, 6):
                    fill(self._quad(k * 0.9 - 0.25, k * 0.9 + 0.25, z, z + 3), (215, 215, 215), "crosswalk")
        for x in (-ROAD_HALF + 0.1, ROAD_HALF - 0.1):
            fill(self._quad(x - 0.08, x + 0.08, NEAR, FAR), (230, 230, 230), "lane_marking")
        first = (self.s // 9) * 9
        for k in range(int(FAR // 9) + 1):
            z = first + 9 * k - self.s
            for x in (-LANE / 2, LANE / 2):
                fill(self._quad(x - 0.07, x + 0.07, z, z + 3), (230, 230, 230), "lane_marking")

    def _object_polys(self, o: _Obj) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
        """The object's coloured polygons (pixel coordinates × 16), back to front."""
        w, hgt, length, _ = SHAPES[o.cls]
        polys: list[tuple[np.ndarray, tuple[int, int, int]]] = []
        dark = (int(o.color[0] * 0.55), int(o.color[1] * 0.55), int(o.color[2] * 0.55))
        if o.cls in ("car", "truck", "bus"):
            near_side = o.x - w / 2 if o.x > 0 else o.x + w / 2   # side face the camera sees
            side = self._wall(near_side, o.z, o.z + length, hgt) if abs(o.x) > w / 2 else None
            if side is not None:
                polys.append((side, dark))
            back = self._box(o.x, o.z, w, hgt)
            polys.append((back, o.color))
            x0, y0, x1, y1 = _bounds(back)
            bw, bh = x1 - x0, y1 - y0
            glass = (0.15, 0.1, 0.85, 0.45) if o.cls != "car" else (0.15, 0.08, 0.85, 0.4)
            polys.append((_rect16(x0 + glass[0] * bw, y0 + glass[1] * bh, x0 + glass[2] * bw, y0 + glass[3] * bh), (60, 45, 35)))
            for lx in (0.05, 0.82):
                polys.append((_rect16(x0 + lx * bw, y0 + 0.55 * bh, x0 + (lx + 0.13) * bw, y0 + 0.66 * bh), (30, 30, 210)))
            polys.append((_rect16(x0 + 0.05 * bw, y0 + 0.9 * bh, x0 + 0.95 * bw, y1), (25, 25, 25)))
        elif o.cls == "traffic_cone":
            b = self._box(o.x, o.z, w, hgt)
            x0, y0, x1, y1 = _bounds(b)
            tri = np.array([[(x0 + x1) / 2, y0], [x1, y1], [x0, y1]]) * 16
            polys.append((tri.astype(np.int32), (0, 120, 255)))
            polys.append((_rect16(x0 + 0.3 * (x1 - x0), y0 + 0.4 * (y1 - y0), x0 + 0.7 * (x1 - x0), y0 + 0.55 * (y1 - y0)),
                          (240, 240, 240)))
        else:   # pedestrian / cyclist: head, torso, legs (+ wheels)
            b = self._box(o.x, o.z, w, hgt)
            x0, y0, x1, y1 = _bounds(b)
            bw, bh = x1 - x0, y1 - y0
            polys.append((_rect16(x0 + 0.3 * bw, y0, x0 + 0.7 * bw, y0 + 0.14 * bh), (120, 160, 200)))
            polys.append((_rect16(x0, y0 + 0.14 * bh, x1, y0 + 0.55 * bh), o.color))
            polys.append((_rect16(x0 + 0.15 * bw, y0 + 0.55 * bh, x0 + 0.85 * bw, y1), dark))
            if o.cls == "cyclist":
                for cxr in (0.0, 1.0):
                    polys.append((_rect16(x0 - 0.3 * bw + cxr * 0.6 * bw, y0 + 0.7 * bh, x0 + 0.7 * bw + cxr * 0.6 * bw, y1),
                                  (20, 20, 20)))
        return polys

    def _box(self, x: float, z: float, w: float, h: float) -> np.ndarray:
        z = max(z, NEAR)
        pts = [self._uv(x - w / 2, 0, z), self._uv(x - w / 2, h, z), self._uv(x + w / 2, h, z), self._uv(x + w / 2, 0, z)]
        return np.round(np.array(pts) * 16).astype(np.int32)

    def render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cfg, L = self.cfg, self.labels
        img = np.empty((cfg.height, cfg.width, 3), np.uint8)
        seg = np.empty((cfg.height, cfg.width), np.uint8)
        inst = np.zeros((cfg.height, cfg.width), np.int32)
        self._background(img, seg)
        alone: dict[int, int] = {}
        for o in sorted(self.objs, key=lambda o: -o.z):
            polys = self._object_polys(o)
            seg_label = L.det_to_seg[L.det_index(o.cls)]
            for poly, color in polys:
                cv2.fillPoly(img, [poly], color, cv2.LINE_AA, shift=4)
                cv2.fillPoly(seg, [poly], seg_label, cv2.LINE_8, shift=4)
                cv2.fillPoly(inst, [poly], o.oid, cv2.LINE_8, shift=4)
            alone[o.oid] = _unoccluded_pixels([p for p, _ in polys], cfg.width, cfg.height)
        boxes, labels, ids, vis = [], [], [], []
        by_id = {o.oid: o for o in self.objs}
        for oid, total in alone.items():
            ys, xs = np.nonzero(inst == oid)
            if len(xs) < cfg.min_pixels or total == 0:
                continue
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
            labels.append(L.det_index(by_id[oid].cls))
            ids.append(oid)
            vis.append(len(xs) / total)
        img = self._look(img)
        return (img, seg, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int32),
                np.array(ids, np.int32), np.array(vis, np.float32))

    def _look(self, img: np.ndarray) -> np.ndarray:
        f = img.astype(np.float32) * self.light
        f = f * (1 - self.haze) + 200.0 * self.haze
        f += self.rng.normal(0, 3.0, f.shape[:2])[..., None]
        return np.clip(f, 0, 255).astype(np.uint8)

    def frames(self) -> Iterator[SynthFrame]:
        cfg = self.cfg
        dt = 1.0 / cfg.fps
        for i in range(cfg.frames):
            if i:
                self._step(dt)
            img, seg, boxes, labels, ids, vis = self.render()
            jitter = float(self.rng.uniform(-cfg.stamp_jitter, cfg.stamp_jitter)) if cfg.stamp_jitter else 0.0
            yield SynthFrame(i, cfg.start_time + i * dt + jitter, img, seg, boxes, labels, ids, vis, dict(self.camera))


def _bounds(poly16: np.ndarray) -> tuple[float, float, float, float]:
    p = poly16.reshape(-1, 2) / 16.0
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def _rect16(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.round(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) * 16).astype(np.int32)


def _unoccluded_pixels(polys16: list[np.ndarray], width: int, height: int) -> int:
    """Pixels the polygons cover inside the image, drawn alone on a canvas the size of their extent."""
    pts = np.concatenate([p.reshape(-1, 2) for p in polys16]) // 16
    x0, y0 = np.clip(pts.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(pts.max(axis=0) + 2, 0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return 0
    canvas = np.zeros((int(y1 - y0), int(x1 - x0)), np.uint8)
    offset = np.array([x0, y0], np.int32) * 16
    for p in polys16:   # one call per polygon: a multi-contour fillPoly fills even-odd
        cv2.fillPoly(canvas, [p.reshape(-1, 2) - offset], 1, cv2.LINE_8, shift=4)
    return int(np.count_nonzero(canvas))


def _color(r: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    c = r.integers(lo, hi, 3)
    return int(c[0]), int(c[1]), int(c[2])
