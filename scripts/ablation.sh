#!/usr/bin/env bash
# MIM-pretrained vs scratch at several label fractions: same data, schedule, seed; writes docs/ablation.md.
# Usage: scripts/ablation.sh MIM_CHECKPOINT [RUN_DIR]   (env: FRACTIONS="0.01 0.1", SEEDS="0", FT_EPOCHS=5)
set -euo pipefail
MIM=$1
RUN=${2:-build/runs/ablation}
FRACTIONS=${FRACTIONS:-"0.01 0.1"}; SEEDS=${SEEDS:-0}; FT_EPOCHS=${FT_EPOCHS:-5}
ARCH=${ARCH:-convnext_atto_cpu}; H=${SIZE_H:-192}; W=${SIZE_W:-320}
TRAIN=synthetic:60:40:1000:640x384
VAL=synthetic:12:40:5000:640x384
MP=(.venv/bin/python -m mim_perception.cli)
mkdir -p "$RUN"
for seed in $SEEDS; do for f in $FRACTIONS; do for init in mim scratch; do
  out="$RUN/${init}_f${f}_s${seed}"
  [ -f "$out/summary.json" ] && continue   # resumable
  extra=(); [ "$init" = mim ] && extra=(--init "$MIM")
  "${MP[@]}" finetune --data $TRAIN --val-data $VAL --out "$out" "${extra[@]}" --set train.arch=$ARCH \
    --set augment.height=$H --set augment.width=$W --set train.workers=1 --set train.seed=$seed --set train.threads=${THREADS:-2} \
    --set finetune.label_fraction=$f --set finetune.epochs=$FT_EPOCHS --set train.log_every=50 > "$out.log" 2>&1 \
    || { echo "run $out failed, see $out.log"; exit 1; }
  echo "done $out"
done; done; done
.venv/bin/python - "$RUN" <<'PY'
import json, sys
from pathlib import Path
rows = {}
for s in sorted(Path(sys.argv[1]).glob("*/summary.json")):
    init, f, seed = s.parent.name.split("_")
    m = json.loads(s.read_text())["best"].get("metrics", {})
    rows.setdefault(f[1:], {}).setdefault(init, []).append((m.get("AP50", float("nan")), m.get("mIoU", float("nan"))))
print("| labels | scratch AP50 | MIM AP50 | Δ AP50 | scratch mIoU | MIM mIoU | Δ mIoU | seeds |")
print("|---|---|---|---|---|---|---|---|")
for f, r in sorted(rows.items(), key=lambda kv: float(kv[0])):
    def mean(k, i):
        v = [x[i] for x in r.get(k, [])]
        return sum(v) / len(v) if v else float("nan")
    sa, ma, sm, mm = mean("scratch", 0), mean("mim", 0), mean("scratch", 1), mean("mim", 1)
    print(f"| {float(f):.0%} | {100*sa:.1f} | {100*ma:.1f} | {100*(ma-sa):+.1f} | {100*sm:.1f} | {100*mm:.1f} | "
          f"{100*(mm-sm):+.1f} | {len(r.get('mim', []))} |")
PY
