#!/usr/bin/env bash
# Re-measures the numbers of weights/cards/ with the toolkit itself (TypeScript, ONNX Runtime),
# after train_defaults.sh. Results go to out/cards/ (JSON + grids); the cards quote them.
#   weights/recipes/measure_defaults.sh [classifiers|ddpm|family|main|all]   (default all)
# THREADS (default 2): ONNX Runtime intra-op threads.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${THREADS:-2}
D=(./node_modules/.bin/deno run -A mod.ts)
O=out/cards
FAMILY=(cifar10-resnet16-l2-0 cifar10-resnet16-l2-0.25 cifar10-resnet16-l2-0.5 cifar10-resnet16-l2-1.0)
EVALUATOR=cifar10-vgg64-eval
DDPM=ddpm-cifar10-small
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
  # the same metrics for 1,000 real training images (the floor at n = 1,000) and for 1,000
  # samples of the exact Gaussian-mixture denoiser (the old default)
  "${D[@]}" evaluate --images train --limit 1000 --evaluator "$EVALUATOR" --threads "$T" \
    --out "$O/train-1000.json"
  "${D[@]}" sample --model mixture-cifar10 --n 1000 --batch 50 --threads "$T" --out "$O/mixture-1000"
  "${D[@]}" evaluate --images "$O/mixture-1000" --evaluator "$EVALUATOR" --threads "$T" \
    --out "$O/mixture-1000/evaluate.json"
fi

if [[ $what == family || $what == all ]]; then
  # the thesis's comparison: the same DDPM guided by each member of the robust family
  classifiers=$(IFS=,; echo "${FAMILY[*]}")
  "${D[@]}" sweep --model "$DDPM" --classifiers "$classifiers" --evaluator "$EVALUATOR" \
    --directions joint --scales 3,10,30 --schedules sqrt --seeds 0-7 --steps 50 --threads "$T" \
    --out "$O/sweep-family"
fi

if [[ $what == main || $what == all ]]; then
  # the README's main job, timed
  time "${D[@]}" guide --out "$O/guide-default"
fi
