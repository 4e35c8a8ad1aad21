#!/usr/bin/env bash
# Create the pip-only environment: ROS 2 Kilted wheels + pinned Python deps + our interface packages + this package.
# Idempotent: re-running only installs what changed. Usage: setup_env.sh [VENV]
set -euo pipefail
VENV=${1:-.venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
start=$(date +%s)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
EXTRA=()
# This machine family keeps the CPU torch wheel in /opt/wheels; elsewhere pip takes it from PyPI.
[ -d /opt/wheels ] && EXTRA+=(--find-links /opt/wheels)
"${PIP[@]}" install -q "${EXTRA[@]}" -r requirements/ros-kilted.txt -r requirements/dev.txt 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" check >/dev/null 2>&1 || true
# Fail early and clearly if the ROS wheels did not land.
"$VENV/bin/python" -c "import rclpy, sensor_msgs.msg" || { echo "setup: ROS 2 wheels failed to install" >&2; exit 1; }
if ! "$VENV/bin/python" -c "import vision_msgs.msg, mim_perception_msgs.msg" 2>/dev/null \
   || [ -n "$(find interfaces -newer "$VENV/.mim-interfaces-stamp" -type f 2>/dev/null | head -1)" ] \
   || [ ! -f "$VENV/.mim-interfaces-stamp" ]; then
  bash scripts/build_interfaces.sh "$VENV"
  touch "$VENV/.mim-interfaces-stamp"
fi
"${PIP[@]}" install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import mim_perception, vision_msgs.msg, mim_perception_msgs.msg" || { echo "setup: package import failed" >&2; exit 1; }
echo "setup: environment ready in $VENV ($(( $(date +%s) - start )) s)"
