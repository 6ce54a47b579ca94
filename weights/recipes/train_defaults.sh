#!/usr/bin/env bash
# The exact commands that trained the project's default model family (issue 6; model cards in
# weights/cards/). CPU-sized: every run fits a 2-core machine in minutes to ~2 hours. Each step
# checkpoints and resumes when rerun; finished steps (their ONNX present) are skipped.
#   weights/recipes/train_defaults.sh classifiers   # robust family + evaluator (one thread)
#   weights/recipes/train_defaults.sh ddpm          # DDPM, then export to ONNX
# Issue 17 (stronger defaults; run niced in the background, one thread each):
#   weights/recipes/train_defaults.sh evaluator     # airbench-style evaluator, flip TTA in the graph
#   weights/recipes/train_defaults.sh evaluator-e32 # the same with a 32-epoch schedule (measured only)
#   weights/recipes/train_defaults.sh evaluator-ensemble # both as one TTA ensemble (measured only)
#   weights/recipes/train_defaults.sh evaluator-w96 # a 1.5x wider evaluator (measured only)
#   weights/recipes/train_defaults.sh evaluator-ensemble3 # all three as one TTA ensemble (measured only)
#   weights/recipes/train_defaults.sh guides        # wider ResNet family, L2 FGSM-RS, eps 0.5 first
#   weights/recipes/train_defaults.sh ddpm-minsnr   # DDPM continued from ddpm-cifar10-small, Min-SNR
#   weights/recipes/train_defaults.sh ddpm-minsnr-snapshot # its 450-minute snapshot: ddpm-cifar10-minsnr
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
  evaluator)
    id=cifar10-airbench64-eval
    if [[ -f weights/classifiers/$id.onnx ]]; then echo "skip $id (exists)" >&2; exit 0; fi
    "$PY" $R/train_evaluator_fast.py --epochs 16 --threads "$THREADS" --out "runs/evaluator-airbench" \
      --onnx "weights/classifiers/$id.onnx" --id "$id"
    ;;
  evaluator-e32)
    # measured, not registered (91.45%, +0.25 over the 16-epoch default; cards/cifar10-airbench64-eval.md)
    "$PY" $R/train_evaluator_fast.py --epochs 32 --threads "$THREADS" --out "runs/evaluator-airbench-e32" \
      --onnx runs/evaluator-airbench-e32/cifar10-airbench64-e32-eval.onnx
    ;;
  evaluator-ensemble)
    # after evaluator and evaluator-e32: both in one graph with flip + translate TTA (92.19%, not
    # registered: 6x the evaluation cost for +1 point)
    "$PY" $R/export_evaluator_ensemble.py --ckpt runs/evaluator-airbench/ckpt.pt \
      --ckpt runs/evaluator-airbench-e32/ckpt.pt --translate --threads "$THREADS" \
      --onnx runs/evaluator-airbench-e32/cifar10-airbench64x2-eval.onnx
    ;;
  evaluator-w96)
    # measured, not registered (91.73% flip TTA, 92 CPU min; cards/cifar10-airbench64-eval.md)
    "$PY" $R/train_evaluator_fast.py --width 96 --epochs 16 --threads "$THREADS" --out runs/evaluator-airbench-w96 \
      --onnx runs/evaluator-airbench-w96/cifar10-airbench96-eval.onnx
    ;;
  evaluator-ensemble3)
    # after evaluator, evaluator-e32 and evaluator-w96: 92.41% with flip + translate TTA, not registered
    "$PY" $R/export_evaluator_ensemble.py --ckpt runs/evaluator-airbench/ckpt.pt \
      --ckpt runs/evaluator-airbench-e32/ckpt.pt --ckpt runs/evaluator-airbench-w96/ckpt.pt --translate \
      --threads "$THREADS" --onnx runs/evaluator-airbench-w96/ens3-translate.onnx
    ;;
  guides)
    for eps in 0.5 1.0 0 0.25; do
      classifier "cifar10-wresnet-l2-$eps" wresnet 32 "$eps" 15 --widths 32,64,192 --attack fgsm-rs \
        --pgd-check 500 --card cards/cifar10-wresnet-l2.md
    done
    ;;
  ddpm-minsnr)
    # continues the 120-minute ddpm-cifar10-small (weights recovered from its ONNX), budget in CPU
    # minutes so pauses do not count, EMA snapshots every 30 min for the FD curve
    "$PY" $R/train_ddpm.py --out runs/ddpm-minsnr --init-onnx weights/denoisers/ddpm-cifar10-small.onnx \
      --minutes-offset 120 --minutes "${DDPM_MINUTES:-480}" --clock cpu --snapshot-minutes 30 \
      --loss-weight min-snr --snr-gamma 5 --lr 2e-4 --lr-schedule cosine --lr-min 1e-5 --ema 0.9995 \
      --threads "$THREADS"
    # at the end of the budget: exported for measurement, not registered (the registered
    # ddpm-cifar10-minsnr is the 450-minute snapshot: see ddpm-minsnr-snapshot)
    "$PY" $R/export_diffusers_unet.py runs/ddpm-minsnr/pipeline --out runs/ddpm-minsnr/ddpm-cifar10-minsnr-final.onnx
    ;;
  ddpm-minsnr-snapshot)
    # the registered default denoiser ddpm-cifar10-minsnr: the run's EMA snapshot at 450 minutes
    # (the first with FD <= 6 on the curve; cards/ddpm-cifar10-minsnr.md)
    id=ddpm-cifar10-minsnr
    if [[ -f weights/denoisers/$id.onnx ]]; then echo "skip $id (exists)" >&2; exit 0; fi
    "$PY" $R/train_ddpm.py --finalize --from-snapshot runs/ddpm-minsnr/snapshots/ema_0450.0min.pt \
      --out runs/ddpm-minsnr-450
    "$PY" $R/export_diffusers_unet.py runs/ddpm-minsnr-450/pipeline --out weights/denoisers/$id.onnx --id $id \
      --source "weights/recipes/train_defaults.sh ddpm-minsnr then ddpm-minsnr-snapshot (train_ddpm.py min-SNR-5 continuation of ddpm-cifar10-small, EMA snapshot at 450 training minutes; export_diffusers_unet.py)" \
      --description "project-trained unconditional CIFAR-10 DDPM (diffusers UNet2DModel, 2,736,099 params, eps prediction, linear betas, T = 1000, EMA): ddpm-cifar10-small trained on with min-SNR-5 loss weighting, 450 CPU minutes in all"
    ;;
  ddpm)
    "$PY" $R/train_ddpm.py --out runs/ddpm --minutes "${DDPM_MINUTES:-100}" --threads "$THREADS"
    "$PY" $R/export_diffusers_unet.py runs/ddpm/pipeline --out weights/denoisers/ddpm-cifar10-small.onnx \
      --id ddpm-cifar10-small
    ;;
  *)
    echo "usage: $0 classifiers|ddpm|evaluator|evaluator-e32|evaluator-ensemble|evaluator-w96|evaluator-ensemble3|guides|ddpm-minsnr|ddpm-minsnr-snapshot" >&2
    exit 2
    ;;
esac
