"""mim_perception: ament_python package (colcon on apt ROS 2) and a pip-installable package (PyPI ROS wheels)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mim_perception"


def share(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{folder}", [f for f in glob(f"{folder}/{pattern}") if "." in f.rsplit("/", 1)[-1]])


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config", "*.yaml"),
        share("config", "*.xml"),
        share("config/sim_presets", "*.yaml"),
        share("config/class_maps", "*.yaml"),
        share("models", "*"),
        # each model bundle is a folder (manifest.json + files it lists)
        *[(f"share/{PACKAGE}/{d.rstrip('/')}", glob(f"{d}*")) for d in glob("models/*/")],
        (f"share/{PACKAGE}/demo/drive_front", glob("demo/drive_front/*")),
        (f"share/{PACKAGE}/demo/highway_front", glob("demo/highway_front/*")),
        (f"share/{PACKAGE}/demo", ["demo/ATTRIBUTION.md"]),
    ],
    python_requires=">=3.10",
    # ROS packages (rclpy, msgs) come from the distro (apt) or the ros-kilted-* wheels (Makefile):
    # they are not pip dependencies here. Versions used in CI are pinned in requirements/*.txt.
    install_requires=[
        "numpy>=1.24",
        "opencv-python>=4.8",
        "PyYAML>=6",
        "scipy>=1.10",
        "threadpoolctl>=3.1",
        "lap>=0.5",
        "filterpy>=1.4",
        "rosbags>=0.10",
        "mcap>=1.1",
        "tqdm>=4.60",
    ],
    extras_require={
        "eval": ["trackeval>=1.3", "motmetrics>=1.4", "faster-coco-eval>=1.6", "matplotlib>=3.7"],
        "model": ["torch>=2.3", "onnx>=1.16", "onnxscript>=0.1", "onnxruntime>=1.18"],
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "hypothesis>=6.100"],
        "lint": ["ruff>=0.5", "mypy>=1.10", "types-PyYAML"],
        "sim": ["metadrive-simulator==0.4.3; python_version < '3.12'"],   # assets: `make sim-setup` (offline: MIM_SIM_ASSETS)
    },
    zip_safe=True,
    maintainer="mim_perception maintainers",
    maintainer_email="mim-perception@example.com",
    description="Camera detection + segmentation (MIM pretraining tools), Kalman tracking and drift monitoring as ROS 2 nodes.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "mim-perception = mim_perception.cli:main",
            # one executable per node, for launch_ros (installed to lib/mim_perception by colcon)
            "camera_monitor = mim_perception.ros.nodes.camera_monitor:main",
            "tracker_node = mim_perception.ros.nodes.tracker_node:main",
            "perception = mim_perception.ros.nodes.perception:main",
            "sim_bridge = mim_perception.ros.nodes.sim_bridge:main",
        ],
    },
)
