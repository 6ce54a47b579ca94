#!/usr/bin/env bash
# The exact commands that trained the project's default model family (issue 6; model cards in
# weights/cards/). CPU-sized: every run fits a 2-core machine in minutes to ~2 hours. Each step
# checkpoints and resumes when rerun; finished steps (their ONNX present) are skipped.
#   weights/recipes/train_defaults.sh classifiers   # robust family + evaluator (one thread)
#   weights/recipes/train_defaults.sh ddpm          # DDPM, then export to ONNX
# THREADS (default 1) sets the torch threads; PY the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-1}
R=weights/recipes

classifier() { # id arch width eps epochs [extra...]
  local id=$1 arch=$2 width=$3 eps=$4 epochs=$5
  shift 5
  if [[ -f weights/classifiers/$id.onnx ]]; then echo "skip $id (weights/classifiers/$id.onnx exists)" >&2; return; fi
  "$PY" $R/train_classifier.py --arch "$arch" --width "$width" --eps "$eps" --epochs "$epochs" \
    --threads "$THREADS" --out "runs/$id" --onnx "weights/classifiers/$id.onnx" --id "$id" "$@"
}

case "${1:-}" in
  classifiers)
    classifier cifar10-resnet16-l2-0 resnet 16 0 10 --card cards/cifar10-resnet16-l2.md
    classifier cifar10-vgg64-eval vgg 64 0 12 --lr 0.1 --label-smoothing 0.1
    classifier cifar10-resnet16-l2-0.5 resnet 16 0.5 6 --card cards/cifar10-resnet16-l2.md
    classifier cifar10-resnet16-l2-1.0 resnet 16 1.0 6 --card cards/cifar10-resnet16-l2.md
    classifier cifar10-resnet16-l2-0.25 resnet 16 0.25 6 --card cards/cifar10-resnet16-l2.md
    ;;
  ddpm)
    "$PY" $R/train_ddpm.py --out runs/ddpm --minutes "${DDPM_MINUTES:-100}" --threads "$THREADS"
    "$PY" $R/export_diffusers_unet.py runs/ddpm/pipeline --out weights/denoisers/ddpm-cifar10-small.onnx \
      --id ddpm-cifar10-small
    ;;
  *)
    echo "usage: $0 classifiers|ddpm" >&2
    exit 2
    ;;
esac
