"""MetaDrive ground truth without MetaDrive: palette -> label space, intrinsics from FOV, projection, visible boxes."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from mim_perception.core.config import load_config
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import IGNORE, LabelSpace
from mim_perception.sim import metadrive_gt as gt
from mim_perception.sim.metadrive_env import MetaDriveConfig


@pytest.fixture(scope="module")
def labels() -> LabelSpace:
    return LabelSpace.load()


@pytest.fixture(scope="module")
def palette(labels) -> gt.Palette:
    return gt.Palette.build(labels)


def _bgr(rgb):
    return rgb[2], rgb[1], rgb[0]


def test_palette_maps_metadrive_colours_to_stack_classes(labels, palette):
    names = ["ROAD", "SKY", "CAR", "TRUCK", "PEDESTRIAN", "LANE_LINE", "TERRAIN", "UNLABELED"]
    img = np.array([[_bgr(gt.PALETTE[n][0]) for n in names] + [(1, 2, 250)]], np.uint8)   # last: unknown colour
    raw, seg, unknown = palette.lookup(img)
    expect = [labels.seg_index(s) for s in ("road", "sky", "vehicle", "vehicle", "person", "lane_marking", "vegetation")]
    assert seg[0].tolist() == expect + [IGNORE, IGNORE]
    assert [palette.names[i] for i in raw[0, :-1]] == names
    assert raw[0, -1] == len(palette.keys) and unknown == 1


def test_near_colours_match_within_tolerance_only(labels, palette):
    # MetaDrive's shaded pedestrians: (220, 20, 60) renders as (211, 19, 58).
    img = np.array([[_bgr((211, 19, 58)), _bgr((220 - gt.TOLERANCE - 1, 20, 60))]], np.uint8)
    raw, seg, unknown = palette.lookup(img)
    assert palette.names[raw[0, 0]] == "PEDESTRIAN" and seg[0, 0] == labels.seg_index("person")
    assert seg[0, 1] == IGNORE and unknown == 1


def test_every_palette_class_exists_in_the_label_space(labels):
    for name, (_, seg_class) in gt.PALETTE.items():
        if seg_class is not None:
            labels.seg_index(seg_class)   # raises ConfigError if missing
    assert set(gt.FILL) == set(labels.detection)


@pytest.mark.skipif(importlib.util.find_spec("metadrive") is None, reason="metadrive not installed (make sim-setup)")
def test_palette_matches_installed_metadrive():
    from metadrive.constants import Semantics

    theirs = {v[0]: tuple(v[1]) for k, v in vars(Semantics).items() if not k.startswith("_") and isinstance(v, tuple)}
    assert theirs == {k: rgb for k, (rgb, _) in gt.PALETTE.items()}


def test_detection_classes():
    assert gt.detection_class("vehicle", "CAR") == "car"
    assert gt.detection_class("vehicle", "TRUCK") == "truck"
    assert gt.detection_class("vehicle", "BUS") == "bus"
    assert gt.detection_class("pedestrian", "PEDESTRIAN") == "pedestrian"
    assert gt.detection_class("cyclist", "BIKE") == "cyclist"
    assert gt.detection_class("cone", "FENCE") == "traffic_cone"
    assert gt.detection_class("other", "FENCE") is None


def test_intrinsics_from_fov():
    hfov, vfov = gt.fov_for(640, 384, 90.0)
    cam = gt.intrinsics(640, 384, hfov, vfov)
    assert cam["fx"] == pytest.approx(320.0) and cam["fy"] == pytest.approx(320.0)   # square pixels
    assert vfov == pytest.approx(2 * math.degrees(math.atan(384 / 640)))
    assert (cam["cx"], cam["cy"], cam["width"], cam["height"]) == (320.0, 192.0, 640.0, 384.0)
    assert gt.intrinsics(320, 192, *gt.fov_for(320, 192, 90.0))["fx"] == pytest.approx(160.0)


def test_box_corners_and_edges():
    c = gt.box_corners([-1, 2, 0], [1, 6, 1.5])
    assert c.shape == (8, 3) and {tuple(r) for r in c} == {(x, y, z) for x in (-1, 1) for y in (2, 6) for z in (0, 1.5)}
    for a, b in gt._EDGES:   # every edge changes exactly one coordinate
        assert np.count_nonzero(c[a] != c[b]) == 1


def test_project_box_in_front_behind_and_across_near_plane():
    cam = gt.intrinsics(640, 384, *gt.fov_for(640, 384, 90.0))   # f = 320
    # 2 m wide, 1 m tall box 10 m ahead, bottom 1 m below the camera, centred.
    pts = gt.project_box(gt.box_corners([-1, 10, -1], [1, 12, 0]), cam, near=0.1)
    assert pts is not None
    assert pts[:, 0].min() == pytest.approx(320 - 32) and pts[:, 0].max() == pytest.approx(320 + 32)
    assert pts[:, 1].max() == pytest.approx(192 + 32) and pts[:, 1].min() == pytest.approx(192)
    assert gt.project_box(gt.box_corners([-1, -5, -1], [1, -1, 0]), cam, near=0.1) is None
    across = gt.project_box(gt.box_corners([0.5, -2, -1], [1.5, 4, 0]), cam, near=0.5)
    assert across is not None and np.isfinite(across).all()
    # The crossing points lie on the near plane: x = 0.5..1.5 m at y = 0.5 m -> u up to 320 + 320 * 3.
    assert across[:, 0].max() == pytest.approx(320 + 320 * 1.5 / 0.5)


def _square(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def test_visible_boxes_near_object_claims_shared_pixels():
    raw = np.zeros((100, 200), np.uint8)
    car = 3
    raw[20:60, 20:80] = car          # near car: 60×40 px
    raw[30:70, 70:150] = car         # far car, its left part hidden behind the near one
    raw[80:90, 150:160] = 5          # something else in another colour
    cands = [
        gt.Candidate(track_id=7, label=0, raw=car, depth=30.0, hull=_square(60, 30, 150, 70), fill=1.0),
        gt.Candidate(track_id=4, label=0, raw=car, depth=10.0, hull=_square(20, 20, 80, 60), fill=1.0),
        gt.Candidate(track_id=9, label=3, raw=4, depth=5.0, hull=_square(150, 80, 160, 90), fill=1.0),   # wrong colour
    ]
    boxes, labels, ids, vis = gt.visible_boxes(raw, cands, min_pixels=10)
    assert ids.tolist() == [4, 7] and labels.tolist() == [0, 0]
    np.testing.assert_array_equal(boxes[0], [20, 20, 80, 60])
    np.testing.assert_array_equal(boxes[1], [70, 30, 150, 70])    # visible extent, not the hull's 60..150
    assert vis[0] == pytest.approx(1.0)
    far_visible = 40 * 80 - 30 * 10                                # rows 30..59 of columns 70..79 are the near car's
    assert vis[1] == pytest.approx(far_visible / (90 * 40))        # over its whole hull (fill 1)
    assert boxes.dtype == np.float32 and ids.dtype == np.int32 and vis.dtype == np.float32


def test_convex_mask_uses_pixel_centres():
    m = gt.convex_mask(_square(2, 3, 6, 5), 0, 0, 10, 10)
    assert m.sum() == 4 * 2 and m[3:5, 2:6].all()
    tri = gt.convex_mask(np.array([[0, 0], [10, 0], [0, 10]], float), 0, 0, 10, 10)   # centres with x + y < 10
    assert tri.sum() == sum(1 for y in range(10) for x in range(10) if x + y + 1 <= 10)
    assert not gt.convex_mask(np.array([[0, 0], [5, 5], [9, 9]], float), 0, 0, 10, 10).any()   # degenerate


def test_visible_boxes_min_pixels_and_out_of_image():
    raw = np.zeros((50, 50), np.uint8)
    raw[10:14, 10:14] = 2
    small = gt.Candidate(1, 0, 2, 5.0, _square(10, 10, 14, 14), 1.0)
    outside = gt.Candidate(2, 0, 2, 5.0, _square(60, 10, 90, 40), 1.0)
    boxes, _, ids, _ = gt.visible_boxes(raw, [small, outside], min_pixels=17)
    assert len(boxes) == 0 and boxes.shape == (0, 4)
    boxes, _, ids, _ = gt.visible_boxes(raw, [small, outside], min_pixels=16)
    assert ids.tolist() == [1]


def test_config_loads_from_shipped_yaml_and_validates_cameras():
    cfg = load_config(MetaDriveConfig, prefix="sim_bridge.sim.")
    assert cfg.frame_period == pytest.approx(cfg.physics_step * cfg.steps_per_frame)
    assert set(cfg.cameras) <= {"front", "front_left", "front_right"}
    with pytest.raises(ConfigError, match="cameras"):
        load_config(MetaDriveConfig, overrides={"sim_bridge.sim.cameras": ["rear"]}, prefix="sim_bridge.sim.")
    with pytest.raises(ConfigError, match="shadow_range"):
        load_config(MetaDriveConfig, overrides={"sim_bridge.sim.shadow_range": 0.0}, prefix="sim_bridge.sim.")
    short = MetaDriveConfig.load(overrides={"width": 320, "seed": 7})
    assert (short.width, short.seed, short.height) == (320, 7, cfg.height)


@pytest.mark.parametrize("preset,camera,topic", [
    ("carla", "front", "/carla/ego_vehicle/rgb_front/image"),
    ("awsim", "traffic_light", "/sensing/camera/traffic_light/image_raw"),
])
def test_simulator_presets_describe_a_sim_time_graph(preset, camera, topic):
    from mim_perception.core.config import config_dir
    from mim_perception.ros.graph import GraphConfig, describe

    path = config_dir() / "sim_presets" / f"{preset}.param.yaml"
    cfg = load_config(GraphConfig, path, prefix="graph.")
    nodes = describe(cfg, user_params=str(path))
    assert cfg.use_sim_time and nodes[0].namespace == f"/{camera}"
    assert ("~/in/image", topic) in nodes[0].remaps and ("use_sim_time", True) in nodes[0].overrides
