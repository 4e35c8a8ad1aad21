#!/usr/bin/env bash
# The recipe of the shipped default model (models/mim_convnext_atto_cpu): MIM pretraining on an unlabelled pool,
# fine-tuning on labelled episodes, export + verification. Every step is the project's own CLI.
# Usage: scripts/train_default_model.sh [RUN_DIR]   (env: PRE_EPOCHS, FT_EPOCHS, SIZE_H, SIZE_W, ARCH to scale it)
set -euo pipefail
RUN=${1:-build/runs/default}
ARCH=${ARCH:-convnext_atto_cpu}
H=${SIZE_H:-192}; W=${SIZE_W:-320}            # training size (CPU budget); exported at EXPORT_H x EXPORT_W
EXPORT_H=${EXPORT_H:-256}; EXPORT_W=${EXPORT_W:-448}
PRE_EPOCHS=${PRE_EPOCHS:-3}; FT_EPOCHS=${FT_EPOCHS:-5}
PRE_STEPS=${PRE_STEPS:-0}; FT_STEPS=${FT_STEPS:-0}     # caps (0 = none); the cosine schedule spans the capped run
MP=(.venv/bin/python -m mim_perception.cli)
POOL=synthetic:100:40:1000:640x384      # unlabelled pool: 100 episodes x 40 frames (labels unused)
TRAIN=synthetic:60:40:1000:640x384      # labelled training episodes (a subset of the pool's scenes)
VAL=synthetic:12:40:5000:640x384        # validation episodes (disjoint seeds)
COMMON=(--set train.arch=$ARCH --set augment.height=$H --set augment.width=$W --set train.workers=1)
"${MP[@]}" pretrain --data $POOL --out "$RUN/pretrain" "${COMMON[@]}" \
  --set pretrain.epochs=$PRE_EPOCHS --set pretrain.max_steps=$PRE_STEPS --set pretrain.height=$H --set pretrain.width=$W
"${MP[@]}" finetune --data $TRAIN --val-data $VAL --init "$RUN/pretrain/mim.pt" --out "$RUN/finetune" "${COMMON[@]}" \
  --set finetune.epochs=$FT_EPOCHS --set finetune.max_steps=$FT_STEPS
"${MP[@]}" export --checkpoint "$RUN/finetune/best.pt" --mim "$RUN/pretrain/mim.pt" --data $VAL \
  --out "$RUN/bundle" --name mim_${ARCH} --height $EXPORT_H --width $EXPORT_W
echo "bundle ready in $RUN/bundle (copy to models/ to ship)"
