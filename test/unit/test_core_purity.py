"""Architecture rule: the ROS-free core never imports rclpy (directly or through ROS message packages)."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "mim_perception" / "core"
ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "vision_msgs", "mim_perception_msgs", "diagnostic_msgs",
               "builtin_interfaces", "rosgraph_msgs", "mim_perception.ros")


def test_no_core_module_imports_ros_statically():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ROS_MODULES or n.startswith(ROS_MODULES)]
    assert CORE.is_dir() and any(CORE.rglob("*.py"))
    assert offenders == []


def test_importing_all_of_core_does_not_load_rclpy():
    mods = sorted({".".join(p.relative_to(CORE.parents[1]).with_suffix("").parts) for p in CORE.rglob("*.py")})
    mods = [m.removesuffix(".__init__") for m in mods]
    check = "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'vision_msgs')]\nassert not bad, bad\n"
    code = "import sys, importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in mods) + check
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
