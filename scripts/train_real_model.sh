#!/usr/bin/env bash
# The real-camera model's whole recipe, CPU only, resumable (a finished stage is skipped; training stages resume from
# WORK/<stage>/last.pt). Usage: scripts/train_real_model.sh DATA [WORK]
#   DATA: the real data folder (camvid/, kitti/, video/, teachers/; see docs/real_data.md)
#   WORK: where everything generated goes (default ~/.cache/mim_real)
# Stages: import the two COCO teachers -> pseudo-label CamVid train/val and the videos -> MIM adaptation of the
# YOLOX-nano backbone on every real frame except the held-back ones (it feeds the OOD monitor) -> fine-tune from the
# COCO weights (CamVid masks, KITTI 0-59 boxes, pseudo-boxes) -> segmentation head without the never-labelled classes
# -> export the bundle (BUNDLE, default models/yolox_nano_real; drift, image and OOD references from the same real
# frames) -> evaluate-real beside both teachers. KITTI 60-74 and CamVid test are never used before the evaluation.
# The detector does not start from the MIM-adapted backbone: in the ablation on real frames (scripts/ablate_real.sh,
# docs/results/ablation_real.json) the adaptation cost 37 AP50 points at 10 % of the labels and 8 at 100 %.
set -euo pipefail
DATA=$(cd "${1:?usage: scripts/train_real_model.sh DATA [WORK]}" && pwd)
WORK=${2:-$HOME/.cache/mim_real}
PY=${PY:-.venv/bin/python}
M="$PY -m mim_perception.cli"
P="--params-file config/training_real.param.yaml"
mkdir -p "$WORK/pseudo"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

for t in "yolox_nano yolox_nano_coco.onnx yolox" "nanodet_m nanodet_m_416_coco.onnx nanodet"; do
  set -- $t
  [ -f "$WORK/teachers/$1/manifest.json" ] || $M import-model "$DATA/teachers/$2" --adapter "$3" --classes coco \
    --class-map config/class_maps/coco_to_driving.yaml --out "$WORK/teachers/$1" >/dev/null
done
TEACH="--teacher $WORK/teachers/yolox_nano --teacher $WORK/teachers/nanodet_m"
for s in "camvid:$DATA/camvid:train camvid_train" "camvid:$DATA/camvid:val camvid_val" \
         "video:$DATA/video/highway_solid_white_right.mp4:2 video_swr" "video:$DATA/video/highway_udacity_test.mp4:1 video_udacity"; do
  set -- $s
  [ -f "$WORK/pseudo/$2.json" ] || { log "pseudo-label $2"; $M pseudo-label $TEACH --data "$1" --out "$WORK/pseudo/$2.json"; }
done

UNLABELLED=(--data "camvid:$DATA/camvid:train" --data "camvid:$DATA/camvid:val" --data "kitti:$DATA/kitti:0-59"
            --data "video:$DATA/video/highway_solid_white_right.mp4:2" --data "video:$DATA/video/highway_udacity_test.mp4:1")
LABELLED=(--data "boxes:$WORK/pseudo/camvid_train.json" --data "kitti:$DATA/kitti:0-59"
          --data "boxes:$WORK/pseudo/video_swr.json" --data "boxes:$WORK/pseudo/video_udacity.json")
VAL=(--val-data "boxes:$WORK/pseudo/camvid_val.json")
TEACHER_ONNX="$DATA/teachers/yolox_nano_coco.onnx"

if [ ! -f "$WORK/mim/mim.pt" ]; then
  log "MIM adaptation"
  $M pretrain $P "${UNLABELLED[@]}" --init "$TEACHER_ONNX" --out "$WORK/mim"
fi
if [ ! -f "$WORK/ft_coco/summary.json" ]; then   # the same run as the ablation's coco_f1.0_s0 (train.seed 0)
  log "fine-tune (COCO init)"
  $M finetune $P "${LABELLED[@]}" "${VAL[@]}" --init "$TEACHER_ONNX" --out "$WORK/ft_coco"
fi
# Lane markings and crosswalks are never labelled in the real data (CamVid folds them into road, so its road pixels
# train "one of road / lane_marking / crosswalk"): a short second stage trains the segmentation head alone (backbone
# and detector frozen: lr scale 0) with those two classes out of the softmax, so road pixels teach road.
if [ ! -f "$WORK/ft_coco_seg/summary.json" ]; then
  log "segmentation head without the never-labelled classes"
  $M finetune $P "${LABELLED[@]}" "${VAL[@]}" --init "$WORK/ft_coco/best.pt" --out "$WORK/ft_coco_seg" \
    --set "finetune.seg_exclude=[lane_marking, crosswalk]" --set finetune.backbone_lr_scale=0 \
    --set finetune.detector_lr_scale=0 --set finetune.lr=0.001 --set finetune.ema_decay=0.99
fi
BUNDLE=${BUNDLE:-models/yolox_nano_real}
if [ ! -f "$BUNDLE/manifest.json" ]; then
  log "export $BUNDLE"
  # int8: static QDQ breaks this model (seg agreement 0.29) and is slower on this CPU; lane markings and crosswalks
  # are never labelled in the real data (CamVid folds them into road), so they are left out of the segmentation
  $M export --checkpoint "$WORK/ft_coco_seg/best.pt" --mim "$WORK/mim/mim.pt" --out "$BUNDLE" --height 288 --width 512 \
    --frames 640 "${UNLABELLED[@]}" --no-int8 --seg-untrained lane_marking --seg-untrained crosswalk
fi
log "evaluate-real"
$M evaluate-real --model "$BUNDLE" --model "$WORK/teachers/yolox_nano" --model "$WORK/teachers/nanodet_m" \
  --kitti "$DATA/kitti:60-74" --camvid "$DATA/camvid:test" --json docs/results/real_frames.json
log "done: $BUNDLE"
