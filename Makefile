# The two commands a user needs first: `make demo` and `make test`. Both set everything up (idempotent).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mim-setup-stamp
export ROS_LOG_DIR ?= $(CURDIR)/build/ros_log
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo demo-bag test lint unit graph e2e bench clean sim-setup
setup: $(STAMP)

$(STAMP): requirements/ros-kilted.txt requirements/dev.txt setup.py scripts/setup_env.sh scripts/build_interfaces.sh $(wildcard interfaces/*/msg/*.msg interfaces/*/CMakeLists.txt)
	bash scripts/setup_env.sh $(VENV)
	touch $@

demo: setup
	$(PY) -m mim_perception.cli demo

lint: setup
	$(VENV)/bin/ruff check mim_perception test bench launch scripts
	$(VENV)/bin/mypy mim_perception
	$(PY) scripts/check_layers.py

test: setup lint
	@# Simulator tests run where MetaDrive's assets can be assembled offline (MIM_SIM_ASSETS, set by .ci/run);
	@# elsewhere, or if that setup fails, they skip with the reason.
	@if [ -n "$${MIM_SIM_ASSETS:-}" ]; then bash scripts/sim_setup.sh $(VENV) || echo "sim-setup failed: simulator tests will skip"; fi
	$(PY) -m pytest test

unit: setup
	$(PY) -m pytest test/unit

graph: setup
	$(PY) -m pytest test/graph

e2e: setup
	$(PY) -m pytest test/e2e

clean:
	rm -rf build $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate the bundled procedural drive with exact ground truth (deterministic; tests score against it). The real
# demo drive (demo/highway_front) is made from a video: demo/ATTRIBUTION.md has the command.
demo-bag: setup
	rm -rf demo/drive_front build/demo_gen
	$(PY) -m mim_perception.cli synth build/demo_gen --frames 90 --fps 15 --seed 1 --bag --no-gt-segmentation --quality 80
	mv build/demo_gen/bag demo/drive_front

# Optional simulator (Python < 3.12): MetaDrive + assets. Offline/CI: MIM_SIM_ASSETS=DIR (assemble_metadrive_assets.py
# + metadrive_extra_assets/); otherwise MetaDrive downloads its assets itself (allow_asset_download: true).
sim-setup: setup
	bash scripts/sim_setup.sh $(VENV)
