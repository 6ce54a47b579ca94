#!/usr/bin/env bash
# Re-measures the numbers of weights/cards/ with the toolkit itself (TypeScript, ONNX Runtime),
# after train_defaults.sh. Results go to out/cards/ (JSON + grids); the cards quote them.
#   weights/recipes/measure_defaults.sh [classifiers|ddpm|family|main|all]   (default all)
#   weights/recipes/measure_defaults.sh ddpm-curve   # FD of every EMA snapshot of a DDPM run
# THREADS (default 2): ONNX Runtime intra-op threads. FAMILY (space-separated ids), EVALUATOR,
# DDPM override the models measured; OLD_FEATURES (default cifar10-vgg64-eval) is the feature
# network of the FD that stays comparable with the first cards (issue 17 keeps it);
# DDPM_RUN (default runs/ddpm-minsnr) and CURVE_N (default 1000) for ddpm-curve; OUT (default
# out/cards) the results folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${THREADS:-2}
D=(./node_modules/.bin/deno run -A mod.ts)
O=${OUT:-out/cards}
read -r -a FAMILY <<<"${FAMILY:-cifar10-resnet16-l2-0 cifar10-resnet16-l2-0.25 cifar10-resnet16-l2-0.5 cifar10-resnet16-l2-1.0 cifar10-wresnet-l2-0.5 cifar10-wresnet-l2-1.0}"
EVALUATOR=${EVALUATOR:-cifar10-airbench64-eval}
OLD_FEATURES=${OLD_FEATURES:-cifar10-vgg64-eval}
DDPM=${DDPM:-ddpm-cifar10-minsnr}
mkdir -p "$O"
what=${1:-all}

if [[ $what == classifiers || $what == all ]]; then
  args=()
  for c in "${FAMILY[@]}" "$EVALUATOR"; do args+=(--classifier "$c"); done
  # clean accuracy on the whole test split (10,000 images)
  "${D[@]}" robust-accuracy "${args[@]}" --eps 0 --threads "$T" --out "$O/clean.json"
  # L2 PGD, 20 steps of 2.5 eps/20, largest-loss iterate, first 2,000 test images
  "${D[@]}" robust-accuracy "${args[@]}" --eps 0,0.25,0.5,1.0 --limit 2000 --threads "$T" \
    --out "$O/pgd_l2.json"
fi

if [[ $what == ddpm || $what == all ]]; then
  # 1,000 unguided DDIM-100 samples (seeds 0-999), FD in evaluator features vs the test split,
  # the evaluator's class histogram
  "${D[@]}" sample --model "$DDPM" --n 1000 --batch 50 --threads "$T" --out "$O/ddpm-1000"
  "${D[@]}" evaluate --images "$O/ddpm-1000" --evaluator "$EVALUATOR" --threads "$T" \
    --out "$O/ddpm-1000/evaluate.json"
  if [[ $OLD_FEATURES != "$EVALUATOR" ]]; then # the FD comparable with the first cards
    "${D[@]}" evaluate --images "$O/ddpm-1000" --evaluator "$EVALUATOR" --features "$OLD_FEATURES" \
      --threads "$T" --out "$O/ddpm-1000/evaluate.old-features.json"
  fi
  # the same metrics for 1,000 real training images (the floor at n = 1,000) and for 1,000
  # samples of the exact Gaussian-mixture denoiser (the old default)
  "${D[@]}" evaluate --images train --limit 1000 --evaluator "$EVALUATOR" --threads "$T" \
    --out "$O/train-1000.json"
  "${D[@]}" sample --model mixture-cifar10 --n 1000 --batch 50 --threads "$T" --out "$O/mixture-1000"
  "${D[@]}" evaluate --images "$O/mixture-1000" --evaluator "$EVALUATOR" --threads "$T" \
    --out "$O/mixture-1000/evaluate.json"
fi

if [[ $what == family || $what == all ]]; then
  # the thesis's comparison: the same DDPM guided by each member of the robust family, with the
  # thesis's Alg 6 (joint at x_t) and with guide's default setting (logp at x0_hat, issue 17)
  classifiers=$(IFS=,; echo "${FAMILY[*]}")
  "${D[@]}" sweep --model "$DDPM" --classifiers "$classifiers" --evaluator "$EVALUATOR" \
    --directions joint --point xt --scales 3,10,30 --schedules sqrt --seeds 0-7 --steps 50 --threads "$T" \
    --out "$O/sweep-family"
  "${D[@]}" sweep --model "$DDPM" --classifiers "$classifiers" --evaluator "$EVALUATOR" \
    --directions logp --point x0 --scales 30,100,300 --schedules sqrt --seeds 0-7 --steps 50 --threads "$T" \
    --out "$O/sweep-family-x0"
fi

if [[ $what == ddpm-curve ]]; then
  # FD against training minutes: every EMA snapshot of a train_ddpm.py --snapshot-minutes run,
  # exported, CURVE_N unguided DDIM-100 samples (seeds 0..CURVE_N-1), FD in OLD_FEATURES
  PY=${PY:-.venv/bin/python}
  RUN=${DDPM_RUN:-runs/ddpm-minsnr}
  N=${CURVE_N:-1000}
  for snap in "$RUN"/snapshots/ema_*.pt; do
    name=$(basename "$snap" .pt)
    C="$O/ddpm-curve/$name"
    if [[ -f $C/evaluate.json ]]; then echo "skip $name (done)" >&2; continue; fi
    mkdir -p "$C"
    "$PY" weights/recipes/train_ddpm.py --finalize --from-snapshot "$snap" --out "$C/run" \
      --width "${DDPM_WIDTH:-32}" --layers-per-block "${DDPM_LPB:-1}"
    "$PY" weights/recipes/export_diffusers_unet.py "$C/run/pipeline" --out "$C/model.onnx"
    "${D[@]}" sample --model "$C/model.onnx" --scheduler-config "$C/run/pipeline/scheduler/scheduler_config.json" \
      --n "$N" --batch 50 --threads "$T" --out "$C/samples"
    "${D[@]}" evaluate --images "$C/samples" --evaluator "$EVALUATOR" --features "$OLD_FEATURES" \
      --threads "$T" --out "$C/evaluate.json"
  done
fi

if [[ $what == main || $what == all ]]; then
  # the README's main job, timed
  time "${D[@]}" guide --out "$O/guide-default"
fi
