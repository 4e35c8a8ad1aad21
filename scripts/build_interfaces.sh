#!/usr/bin/env bash
# Build the interface packages under interfaces/ into a venv made from the ROS 2 PyPI wheels.
# (On an apt ROS 2 install, colcon builds them instead; see README.) Usage: build_interfaces.sh VENV
set -euo pipefail
VENV=$(cd "${1:-.venv}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$VENV/bin/python"
# The wheels' exported CMake files hard-code their build machine's Python paths: rewrite them once.
PYV=$("$PY" -c 'import sys;print(f"{sys.version_info[0]}.{sys.version_info[1]}")'); TAG=cp${PYV/./}
PYINC=$("$PY" -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy;print(numpy.get_include())')
files=$(grep -rl "/opt/python/$TAG-$TAG/" "$VENV"/share/*/cmake/ 2>/dev/null || true)
[ -z "$files" ] || echo "$files" | xargs sed -i \
  "s#/opt/python/$TAG-$TAG/include/python$PYV#$PYINC#g; s#/opt/python/$TAG-$TAG/lib/python$PYV/site-packages/numpy/_core/include#$NPINC#g"
export AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
# vision_msgs first: mim_perception_msgs depends on it.
mkdir -p "$ROOT/build/interfaces"
for pkg in vision_msgs mim_perception_msgs; do
  build="$ROOT/build/interfaces/$pkg"
  cmake -S "$ROOT/interfaces/$pkg" -B "$build" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" >"$build.log" 2>&1 \
    || { cat "$build.log"; exit 1; }
  cmake --build "$build" -j"$(nproc)" >>"$build.log" 2>&1 || { tail -50 "$build.log"; exit 1; }
  cmake --install "$build" >>"$build.log" 2>&1 || { tail -50 "$build.log"; exit 1; }
  echo "built $pkg"
done
