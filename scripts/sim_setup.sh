#!/usr/bin/env bash
# Install the MetaDrive simulator into a venv and make its assets available. Idempotent: a re-run with
# nothing to do takes about a second.
#
#   sim_setup.sh VENV [--assets DIR]
#
# Assets (MetaDrive 0.4.3's wheel ships none and downloads ~ 100 MB from GitHub at first use):
#   1. already present in <site-packages>/metadrive/assets          -> nothing to do
#   2. --assets DIR or MIM_SIM_ASSETS=DIR, where DIR holds assemble_metadrive_assets.py and
#      metadrive_extra_assets/ (offline machines, CI)               -> the metadrive-simulator 0.3.0.1 wheel
#      (which still bundled assets) is fetched with pip and assembled into place
#   3. neither                                                     -> MetaDrive downloads them itself at first use
set -euo pipefail
usage() { echo "usage: $0 VENV [--assets DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
VENV=$1; shift
ASSETS_SRC=${MIM_SIM_ASSETS:-}
while [ $# -gt 0 ]; do
  case $1 in
    --assets) [ $# -ge 2 ] || usage; ASSETS_SRC=$2; shift 2 ;;
    *) usage ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "sim-setup: no python in $VENV (run 'make setup' first)" >&2; exit 1; }
PIP=("$PY" -m pip --disable-pip-version-check)
REQ="$ROOT/requirements/sim.txt"
STAMP="$VENV/.mim-sim-stamp"
start=$(date +%s)

# -- 1. packages: reinstall only when requirements/sim.txt changed or metadrive is missing ------------------
if [ ! -f "$STAMP" ] || [ "$REQ" -nt "$STAMP" ] || ! "$PY" -c "import metadrive.version" 2>/dev/null; then
  "$PY" - <<'EOF' || { echo "sim-setup: MetaDrive 0.4.3 needs Python < 3.12 (panda3d 1.10.13)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info < (3, 12) else 1)
EOF
  "${PIP[@]}" install -q -r "$REQ" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import metadrive.version" || { echo "sim-setup: metadrive-simulator failed to install" >&2; exit 1; }
  touch "$STAMP"
fi

# -- 2. assets --------------------------------------------------------------------------------------------
# Locate the package without importing it (an import may start MetaDrive's own asset download).
DEST=$("$PY" -c "import importlib.util, os; s = importlib.util.find_spec('metadrive'); print(os.path.join(os.path.dirname(s.origin), 'assets'))")
if [ -f "$DEST/version.txt" ] && [ -d "$DEST/models" ] && [ -d "$DEST/textures" ]; then
  echo "sim-setup: MetaDrive assets present in $DEST ($(( $(date +%s) - start )) s)"
  exit 0
fi
if [ -z "$ASSETS_SRC" ]; then
  echo "sim-setup: MetaDrive installed; its assets are not present and will be downloaded by MetaDrive itself" \
       "(from GitHub, needs internet) at first use. Offline: pass --assets DIR or set MIM_SIM_ASSETS=DIR" \
       "(a folder with assemble_metadrive_assets.py and metadrive_extra_assets/)."
  exit 0
fi
[ -f "$ASSETS_SRC/assemble_metadrive_assets.py" ] && [ -d "$ASSETS_SRC/metadrive_extra_assets" ] || {
  echo "sim-setup: $ASSETS_SRC must contain assemble_metadrive_assets.py and metadrive_extra_assets/" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "sim-setup: fetching metadrive-simulator 0.3.0.1 (for its bundled assets) ..."
"${PIP[@]}" download -q --no-deps metadrive-simulator==0.3.0.1 -d "$TMP" 2>&1 | grep -v "^WARNING: Location" || true
WHL=$(ls "$TMP"/metadrive_simulator-0.3.0.1-*.whl 2>/dev/null | head -1)
[ -n "$WHL" ] || { echo "sim-setup: could not download metadrive-simulator==0.3.0.1" >&2; exit 1; }
# Assemble next to the destination and move it in at the end, so an interrupted run leaves no half folder
# that would pass the presence check above.
"$PY" "$ASSETS_SRC/assemble_metadrive_assets.py" "$WHL" "$DEST.partial"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "sim-setup: MetaDrive assets assembled in $DEST ($(du -sh "$DEST" | cut -f1), $(( $(date +%s) - start )) s)"
