#!/usr/bin/env bash
# MIM ablation on real data, CPU only, resumable: fine-tune from the COCO weights with (`mim`) vs without (`coco`)
# the MIM adaptation of scripts/train_real_model.sh — and, with INITS="mim coco scratch", from random weights —
# at 10 % and 100 % of the real labels, seeds 0 and 1, a fixed number of steps (STEPS; default: finetune.max_steps of
# config/training_real.param.yaml); each run exported (fp32) and scored on the held-back frames (KITTI 60-74, CamVid
# test) with evaluate-real.
# Usage: [INITS="mim coco scratch"] [FRACS="0.1 1.0"] [SEEDS="0 1"] scripts/ablate_real.sh DATA [WORK]
# (run train_real_model.sh first: it makes the pseudo-labels and MIM; finished runs are skipped, a stopped one resumes)
set -euo pipefail
DATA=$(cd "${1:?usage: scripts/ablate_real.sh DATA [WORK]}" && pwd)
WORK=${2:-$HOME/.cache/mim_real}
STEPS_SET=(); [ -n "${STEPS:-}" ] && STEPS_SET=(--set "finetune.max_steps=$STEPS")
PY=${PY:-.venv/bin/python}
M="$PY -m mim_perception.cli"
P="--params-file config/training_real.param.yaml"
LABELLED=(--data "boxes:$WORK/pseudo/camvid_train.json" --data "kitti:$DATA/kitti:0-59"
          --data "boxes:$WORK/pseudo/video_swr.json" --data "boxes:$WORK/pseudo/video_udacity.json")
VAL=(--val-data "boxes:$WORK/pseudo/camvid_val.json")
TEACHER_ONNX="$DATA/teachers/yolox_nano_coco.onnx"
[ -f "$WORK/mim/mim.pt" ] || { echo "run scripts/train_real_model.sh first (no $WORK/mim/mim.pt)" >&2; exit 1; }
for frac in ${FRACS:-0.1 1.0}; do
  for seed in ${SEEDS:-0 1}; do
    for init in ${INITS:-mim coco}; do
      run="$WORK/ablation/${init}_f${frac}_s${seed}"
      INIT=()
      [ "$init" != scratch ] && INIT+=(--init "$TEACHER_ONNX")
      [ "$init" = mim ] && INIT+=(--init "$WORK/mim/mim.pt")
      # from random weights nothing is worth protecting: every part learns at the full rate
      [ "$init" = scratch ] && INIT+=(--set finetune.backbone_lr_scale=1 --set finetune.detector_lr_scale=1)
      if [ ! -f "$run/summary.json" ]; then
        echo "[$(date -u +%H:%M:%S)] fine-tune $run"
        $M finetune $P "${LABELLED[@]}" "${VAL[@]}" "${INIT[@]}" --out "$run" --set finetune.label_fraction=$frac \
          --set train.seed=$seed "${STEPS_SET[@]}"
      fi
      if [ ! -f "$run/real.json" ]; then
        $M export --checkpoint "$run/best.pt" --out "$run/bundle" --data "camvid:$DATA/camvid:val" --frames 64 \
          --no-int8 --height 288 --width 512 >/dev/null
        $M evaluate-real --model "$run/bundle" --kitti "$DATA/kitti:60-74" --camvid "$DATA/camvid:test" --json "$run/real.json"
      fi
    done
  done
done
$PY scripts/ablation_table.py "$WORK/ablation"
