"""MetaDrive scenes as labelled camera frames in the stack's label space (ROS-free).

One MetaDrive env (created once, reset per episode: reset is the big cost) with an ego car driven by
MetaDrive's IDM policy and up to three ego-mounted cameras (front, front_left, front_right), each an RGB
and a semantic buffer rendered in the same pass. Per camera and frame: BGR image, label mask (MetaDrive's
Cityscapes-style palette mapped to config/labels.yaml; unknown colours -> 255 and counted), and boxes of the
*visible* extent of every car/truck/bus/pedestrian/cyclist/cone: each object's 3D box (its model's bounds,
down to the ground) is projected into the camera, and the object's visible pixels are the pixels of its
semantic colour inside that projection not already claimed by a nearer object. ``visibility`` is those
pixels over the projected area times a per-class fill ratio (how much of its projected box a fully visible
object covers), capped at 1 - an estimate, since MetaDrive cannot render an object alone cheaply.

MetaDrive is imported only when a scene is opened; the mapping and geometry live in ``metadrive_gt`` and are
tested without it. CPU rendering (Mesa llvmpipe) needs three fixes applied here: MSAA off
(``apply_headless_patches``), terrain anisotropic filtering off (``set_terrain_anisotropy``: 16x stalls side
views for minutes) and unused render passes dropped (``trim_render_passes``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mim_perception.core.config import load_config, rng
from mim_perception.core.errors import ConfigError, MimPerceptionError
from mim_perception.core.labels import LabelSpace
from mim_perception.sim.metadrive_gt import (
    FILL,
    Candidate,
    Palette,
    box_corners,
    detection_class,
    fov_for,
    intrinsics,
    project_box,
    visible_boxes,
)
from mim_perception.sim.metadrive_vru import vru_manager
from mim_perception.sim.synthetic import SynthFrame

PREFIX = "sim_bridge.sim."   # where MetaDriveConfig lives in config/sim_bridge.param.yaml
CAMERA_YAW = {"front": 0.0, "front_left": 1.0, "front_right": -1.0}   # × side_yaw; + = to the left


class SimulatorError(MimPerceptionError):
    """The simulator is missing, its assets are missing, or it failed."""


@dataclass(frozen=True)
class MetaDriveConfig:
    PARAM_FILE: ClassVar[str] = "sim_bridge.param.yaml"
    width: int = field(metadata=rng(32, 4096, unit="px"))
    height: int = field(metadata=rng(32, 4096, unit="px"))
    cameras: list[str]
    hfov: float = field(metadata=rng(10.0, 170.0, unit="deg"))
    side_yaw: float = field(metadata=rng(0.0, 90.0, unit="deg"))
    mount_forward: float = field(metadata=rng(-5.0, 5.0, unit="m"))
    mount_height: float = field(metadata=rng(0.0, 5.0, unit="m"))
    pitch: float = field(metadata=rng(-45.0, 45.0, unit="deg"))
    map: str
    traffic_density: float = field(metadata=rng(0.0, 1.0))
    accident_prob: float = field(metadata=rng(0.0, 1.0))
    pedestrians: int = field(metadata=rng(0, 100))
    cyclists: int = field(metadata=rng(0, 100))
    seed: int = field(metadata=rng(0, 2**31 - 1))
    num_scenarios: int = field(metadata=rng(1, 100000))
    physics_step: float = field(metadata=rng(0.005, 0.1, unit="s"))
    steps_per_frame: int = field(metadata=rng(1, 100))
    episode_frames: int = field(metadata=rng(1, 1_000_000))
    min_pixels: int = field(metadata=rng(1, 1_000_000, unit="px"))
    shadow_range: float = field(metadata=rng(1.0, 500.0, unit="m"))
    show_terrain: bool
    terrain_height: float = field(metadata=rng(0.1, 200.0, unit="m"))
    map_region: int = field(metadata=rng(choices=(128, 256, 512, 1024, 2048), unit="m"))
    show_skybox: bool
    anisotropy: int = field(metadata=rng(1, 16))
    shadows: bool
    render_threads: int = field(metadata=rng(0, 64))
    allow_asset_download: bool

    def __post_init__(self) -> None:
        bad = [c for c in self.cameras if c not in CAMERA_YAW]
        if not self.cameras or bad or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be distinct names from {list(CAMERA_YAW)}, got {self.cameras}")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> MetaDriveConfig:
        """Shipped defaults (sim_bridge.sim.* of config/sim_bridge.param.yaml), then ``path``, then ``overrides``
        given by field name (``{"width": 320}``)."""
        flat = {PREFIX + k: v for k, v in (overrides or {}).items()}
        return load_config(cls, path, flat, prefix=PREFIX)

    @property
    def frame_period(self) -> float:
        return self.physics_step * self.steps_per_frame


@dataclass
class MetaDriveFrame(SynthFrame):
    camera_name: str = ""
    episode: int = 0
    seed: int = 0
    unknown_pixels: int = 0           # semantic colours not in PALETTE (set to IGNORE)


# -- MetaDrive ------------------------------------------------------------------------------------------------
def assets_dir() -> Path | None:
    """MetaDrive's asset folder (inside the installed package), or None if metadrive is not installed."""
    spec = importlib.util.find_spec("metadrive")
    return Path(spec.origin).parent / "assets" if spec and spec.origin else None


def check_installation(allow_download: bool) -> None:
    """Raise SimulatorError naming the fix when MetaDrive or (unless downloads are allowed) its assets are missing."""
    d = assets_dir()
    if d is None:
        raise SimulatorError("MetaDrive is not installed: run `make sim-setup` (installs requirements/sim.txt; Python < 3.12)")
    # What MetaDrive itself checks before deciding to download (engine/asset_loader.py).
    ready = (d / "version.txt").is_file() and (d / "textures" / "grass1" / "GroundGrassGreen002_COL_1K.jpg").is_file()
    if not ready and not allow_download:
        raise SimulatorError(
            f"MetaDrive assets are missing in {d}: run `make sim-setup` (offline: with MIM_SIM_ASSETS=DIR holding "
            "assemble_metadrive_assets.py + metadrive_extra_assets/), or allow MetaDrive's own download from GitHub "
            "with allow_asset_download: true")


def apply_headless_patches() -> None:
    """Make MetaDrive run headless and off the main thread (idempotent; before the first env is created).

    MSAA goes off in every buffer MetaDrive creates: it asks for 16 samples, Mesa llvmpipe allows at most 4
    and then fails with "'NoneType' object has no attribute 'set_shader'". Without MSAA the semantic colours
    are also exact.
    """
    from direct.filter.FilterManager import FilterManager
    from metadrive.component.sensors.rgb_camera import RGBCamera
    from metadrive.engine.core import engine_core  # noqa: F401 - sets its prc defaults (multisamples 8) at import
    from metadrive.engine.core.image_buffer import ImageBuffer
    from panda3d.core import loadPrcFileData

    def no_msaa(fn: Any, fb_arg: int | None, fb_kw: str) -> Any:
        if getattr(fn, "_mim_no_msaa", False):
            return fn

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            fb = args[fb_arg] if fb_arg is not None and len(args) > fb_arg else kwargs.get(fb_kw)
            if fb is not None:
                fb.set_multisamples(0)
            return fn(*args, **kwargs)

        wrapped._mim_no_msaa = True  # type: ignore[attr-defined]
        return wrapped

    FilterManager.renderSceneInto = no_msaa(FilterManager.renderSceneInto, None, "fbprops")
    FilterManager.render_scene_into = no_msaa(FilterManager.render_scene_into, None, "fbprops")  # simplepbr's alias
    ImageBuffer._create_buffer = no_msaa(ImageBuffer._create_buffer, 3, "frame_buffer_property")
    RGBCamera._create_buffer = no_msaa(RGBCamera._create_buffer, 3, "frame_buffer_property")
    # Panda's task manager swaps the SIGINT handler around every frame, which raises off the main thread; the
    # ROS bridge steps the simulator on a worker thread (Ctrl-C then reaches Python's own handler directly).
    import direct.task.Task as panda_task

    panda_task.signal = None
    loadPrcFileData("", "framebuffer-multisample 0")
    loadPrcFileData("", "multisamples 0")


def _env_class(cfg: MetaDriveConfig) -> Any:
    """MetaDriveEnv that also registers the pedestrian/cyclist manager (MetaDrive's PG maps spawn only vehicles)."""
    from metadrive.envs.metadrive_env import MetaDriveEnv

    class Env(MetaDriveEnv):
        def setup_engine(self) -> None:
            super().setup_engine()
            if cfg.pedestrians or cfg.cyclists:
                self.engine.register_manager("mim_vru_manager", vru_manager(cfg.pedestrians, cfg.cyclists, cfg.frame_period))

    return Env


def set_terrain_anisotropy(engine: Any, degree: int) -> None:
    """Anisotropic filtering degree of the terrain textures (MetaDrive: 16).

    On Mesa llvmpipe 16x anisotropy makes a frame that sees the ground at a grazing angle (the side cameras)
    take minutes instead of about a second; 1 turns it off.
    """
    from panda3d.core import Texture

    terrain = getattr(engine, "terrain", None)
    for tex in vars(terrain).values() if terrain is not None else ():
        if isinstance(tex, Texture):
            tex.setAnisotropicDegree(degree)


def trim_render_passes(engine: Any, shadows: bool) -> None:
    """Drop render passes nobody reads (measured at 320x192 on 2 busy cores: 1.46 -> 0.79 s per frame).

    MetaDrive shrinks and deactivates its main window when no ``main_camera`` sensor exists, but the PBR
    pipeline it set up on that window still renders the whole scene into a 1x1 buffer every frame. Without
    ``shadows`` the two 1024x1024 PSSM shadow cameras see nothing, so their atlas is only cleared (no shadows
    rather than stale ones).
    """
    from panda3d.core import BitMask32

    ge = engine.graphicsEngine
    for i in range(ge.getNumWindows()):
        buf = ge.getWindow(i)
        if buf.getName() == "filter-base" and buf.getXSize() <= 1 and buf.getYSize() <= 1:
            buf.setActive(False)
    pssm = getattr(engine, "pssm", None)
    if not shadows and pssm is not None and getattr(pssm, "camera_rig", None) is not None:
        for i in range(pssm.num_splits):
            pssm.camera_rig.get_camera(i).node().setCameraMask(BitMask32.allOff())


class MetaDriveScene:
    """A MetaDrive env producing labelled frames for every configured camera. Not thread-safe; one per process."""

    def __init__(self, cfg: MetaDriveConfig, labels: LabelSpace | None = None) -> None:
        self.cfg = cfg
        self.labels = labels or LabelSpace.load()
        self.palette = Palette.build(self.labels)
        hfov, vfov = fov_for(cfg.width, cfg.height, cfg.hfov)
        self.fov = (hfov, vfov)
        self.camera = intrinsics(cfg.width, cfg.height, hfov, vfov)
        self.env: Any = None
        self.time = 0.0                    # s, sim time of the last frame (monotonic across episodes)
        self.index = -1                    # frame counter (across episodes)
        self.episode = -1
        self.episode_seed = cfg.seed
        self.episode_frames = 0
        self.resets = 0
        self.last_reset_s = math.nan       # s, wall time of the last reset
        self._need_reset = True
        self._ids: dict[str, int] = {}
        self._next_id = 1
        self._local_boxes: dict[str, np.ndarray] = {}

    # -- lifecycle ------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the env (fast; the first reset does the heavy lifting). Raises SimulatorError when not installed."""
        if self.env is not None:
            return
        cfg = self.cfg
        check_installation(cfg.allow_asset_download)
        if cfg.render_threads:   # Mesa llvmpipe reads it when the GL context is created
            os.environ["LP_NUM_THREADS"] = str(cfg.render_threads)
        try:
            apply_headless_patches()
            from metadrive.component.sensors.rgb_camera import RGBCamera
            from metadrive.component.sensors.semantic_camera import SemanticCamera
            from metadrive.policy.idm_policy import IDMPolicy
        except ImportError as e:
            raise SimulatorError(f"MetaDrive cannot be imported ({e}): run `make sim-setup`") from e
        sensors: dict[str, tuple[Any, int, int]] = {}
        for name in cfg.cameras:
            sensors[f"rgb_{name}"] = (RGBCamera, cfg.width, cfg.height)
            sensors[f"seg_{name}"] = (SemanticCamera, cfg.width, cfg.height)
        map_spec: int | str = int(cfg.map) if cfg.map.isdigit() else cfg.map
        env_cfg = {
            "use_render": False, "image_observation": True, "norm_pixel": False, "stack_size": 1,
            "sensors": sensors, "multi_thread_render": False, "agent_policy": IDMPolicy,
            "vehicle_config": {"image_source": f"rgb_{cfg.cameras[0]}", "show_navi_mark": False,
                               "show_dest_mark": False, "show_line_to_dest": False, "show_navigation_arrow": False},
            "map": map_spec, "traffic_density": cfg.traffic_density, "accident_prob": cfg.accident_prob,
            "start_seed": cfg.seed, "num_scenarios": cfg.num_scenarios,
            "physics_world_step_size": cfg.physics_step, "decision_repeat": cfg.steps_per_frame,
            "horizon": None, "shadow_range": cfg.shadow_range, "show_terrain": cfg.show_terrain,
            "height_scale": cfg.terrain_height, "map_region_size": cfg.map_region,
            "show_skybox": cfg.show_skybox, "show_interface": False, "show_logo": False, "show_fps": False,
            "interface_panel": [], "preload_models": cfg.pedestrians > 0, "log_level": 40,
        }
        utf8 = os.environ.get("PYTHONUTF8")
        try:
            self.env = _env_class(cfg)(env_cfg)
            self.env.lazy_init()   # builds the engine and terrain now, so their textures can be adjusted
        except Exception as e:
            self.close()
            raise SimulatorError(f"MetaDrive env creation failed: {type(e).__name__}: {e}") from e
        finally:   # MetaDrive's asset loader sets PYTHONUTF8=on, which every later Python child process rejects
            if utf8 is None:
                os.environ.pop("PYTHONUTF8", None)
            else:
                os.environ["PYTHONUTF8"] = utf8
        set_terrain_anisotropy(self.env.engine, cfg.anisotropy)
        trim_render_passes(self.env.engine, cfg.shadows)
        from metadrive.component.static_object.traffic_object import TrafficCone
        from metadrive.component.traffic_participants.cyclist import Cyclist
        from metadrive.component.traffic_participants.pedestrian import Pedestrian
        from metadrive.component.vehicle.base_vehicle import BaseVehicle
        self._kinds = ((BaseVehicle, "vehicle"), (Pedestrian, "pedestrian"), (Cyclist, "cyclist"), (TrafficCone, "cone"))

    def close(self) -> None:
        """Close the env (and its engine); the next reset or step creates a new one."""
        if self.env is not None:
            env, self.env = self.env, None
            try:
                env.close()
            except Exception:  # noqa: BLE001, S110 - a half-built env may fail to close; it is dropped either way
                pass
        self._need_reset = True

    def __enter__(self) -> MetaDriveScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self, seed: int | None = None) -> None:
        """New episode on ``seed`` (default: the next of seed .. seed + num_scenarios - 1), reusing the env."""
        self.open()
        cfg = self.cfg
        self.episode += 1
        self.episode_seed = seed if seed is not None else cfg.seed + self.episode % cfg.num_scenarios
        if not cfg.seed <= self.episode_seed < cfg.seed + cfg.num_scenarios:
            raise ConfigError(f"seed {self.episode_seed} outside [{cfg.seed}, {cfg.seed + cfg.num_scenarios})")
        t0 = time.perf_counter()
        self.env.reset(seed=self.episode_seed)
        self.last_reset_s = time.perf_counter() - t0
        self.resets += 1
        x0, x1, y0, y1 = self.env.engine.current_map.road_network.get_bounding_box()
        reach = max(abs(x0), abs(x1), abs(y0), abs(y1))
        if reach > cfg.map_region / 2:   # the terrain (which draws the road) covers only +-map_region/2 around 0
            raise ConfigError(f"map {cfg.map!r} (seed {self.episode_seed}) reaches {reach:.0f} m from its origin but "
                              f"map_region {cfg.map_region} m covers only +-{cfg.map_region // 2} m: raise map_region")
        ego = self.env.agent
        for name in cfg.cameras:   # env.reset mounted every sensor at MetaDrive's default pose
            hpr = (CAMERA_YAW[name] * cfg.side_yaw, cfg.pitch, 0.0)
            for kind in ("rgb", "seg"):
                sensor = self.env.engine.get_sensor(f"{kind}_{name}")
                sensor.lens.setFov(*self.fov)
                sensor.track(ego.origin, (0.0, cfg.mount_forward, cfg.mount_height), hpr)
        self._ids.clear()          # objects are new; ids keep counting so they stay unique across episodes
        self.episode_frames = 0
        self._need_reset = False

    def request_reset(self) -> None:
        """Start a new episode at the next step (after a simulator error the current one may be broken)."""
        self._need_reset = True

    # -- frames ---------------------------------------------------------------------------------------------
    def step(self) -> dict[str, MetaDriveFrame]:
        """Advance one frame (resetting first when the episode ended) -> frame per camera name."""
        if self._need_reset or self.env is None:
            self.reset()
        _, _, terminated, truncated, _ = self.env.step([0.0, 0.0])   # the IDM policy drives; the action is unused
        self.index += 1
        self.episode_frames += 1
        self.time += self.cfg.frame_period
        if terminated or truncated or self.episode_frames >= self.cfg.episode_frames:
            self._need_reset = True
        return {name: self._frame(name) for name in self.cfg.cameras}

    def frames(self, n_frames: int) -> Iterator[MetaDriveFrame]:
        """``n_frames`` frames for every camera, in frame order (cameras of one frame are consecutive)."""
        for _ in range(n_frames):
            yield from self.step().values()

    def _frame(self, name: str) -> MetaDriveFrame:
        engine = self.env.engine
        rgb, sem = engine.get_sensor(f"rgb_{name}"), engine.get_sensor(f"seg_{name}")
        image = np.ascontiguousarray(rgb.perceive(to_float=False))
        raw, seg, unknown = self.palette.lookup(sem.perceive(to_float=False))
        boxes, labels, ids, vis = visible_boxes(raw, self._candidates(sem), self.cfg.min_pixels)
        return MetaDriveFrame(self.index, self.time, image, seg, boxes, labels, ids, vis, dict(self.camera),
                              camera_name=name, episode=self.episode, seed=self.episode_seed, unknown_pixels=unknown)

    def _candidates(self, sensor: Any) -> list[Candidate]:
        cam, near = sensor.cam, float(sensor.lens.getNear())
        ego = self.env.agent
        out = []
        for oid, obj in self.env.engine.get_objects().items():
            kind = next((k for cls, k in self._kinds if isinstance(obj, cls)), None)
            det = detection_class(kind, str(getattr(obj, "SEMANTIC_LABEL", ""))) if kind and obj is not ego else None
            if det is None or obj.SEMANTIC_LABEL not in self.palette.names:
                continue
            m = obj.origin.getMat(cam)   # object frame -> camera frame, row-vector convention
            mat = np.array([list(m.getRow(i)) for i in range(4)])
            pts = self._local_box(obj) @ mat[:3, :3] + mat[3, :3]
            hull = project_box(pts, self.camera, near)
            if hull is None:
                continue
            if oid not in self._ids:
                self._ids[oid], self._next_id = self._next_id, self._next_id + 1
            out.append(Candidate(self._ids[oid], self.labels.det_index(det), self.palette.index(obj.SEMANTIC_LABEL),
                                 float(pts[:, 1].mean()), hull, FILL[det]))
        return out

    def _local_box(self, obj: Any) -> np.ndarray:
        """8×3 corners of the object's visual model in its own frame, down to the ground (cached per class)."""
        key = type(obj).__name__
        if key not in self._local_boxes:
            from panda3d.core import Camera

            lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
            for child in obj.origin.getChildren():
                # Wheels are skipped: some models report wheel bounds metres off; the ground bound covers them.
                if isinstance(child.node(), Camera) or child.getName() == "wheel":
                    continue
                b = child.getTightBounds(obj.origin)
                if b:
                    lo, hi = np.minimum(lo, np.array(b[0])), np.maximum(hi, np.array(b[1]))
            ground = -float(obj.origin.getZ(self.env.engine.render))
            if not np.isfinite(lo).all():   # no model geometry found: the physical size
                lo = np.array([-obj.WIDTH / 2, -obj.LENGTH / 2, ground])
                hi = np.array([obj.WIDTH / 2, obj.LENGTH / 2, ground + obj.HEIGHT])
            lo[2] = min(lo[2], ground)
            self._local_boxes[key] = box_corners(lo, hi)
        return self._local_boxes[key]
