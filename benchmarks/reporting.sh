#!/usr/bin/env bash
# The reporting part's tables of docs/benchmarks.md, one `python -m clustercam bench` run each
# (docs/protocol.md). Every run reads only the reporting part (the bench default) and prints the
# command it is. Run all of them, or name some:
#
#     bash benchmarks/reporting.sh                         # every table (~50 min on a 2-core CPU)
#     bash benchmarks/reporting.sh lite0-bn2 lite1-bn2     # some of them
#
# DATA (the labelled folders) and OUT (where the tables go) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a DATA <<< "${DATA:-../shared/eval/ilsvrc-val-650}"
OUT="${OUT:-docs/benchmarks/reporting}"
COMMON=(--channels-last --batch-size 8 --forward-batch-size 8 --steps 8 --no-progress)
# The tables below lite0-bn2-eq22 were measured when the default was `faithful` (now `gated`): they
# name it explicitly, so that rerunning them reproduces them.
CLUSTER="clustercam:gated,clustercam:discriminative,clustercam:weighted,clustercam:paper,clustercam:legacy"
GRADIENT="gradcam,gradcam++,xgradcam"
SMALL="--methods clustercam:gated,clustercam:discriminative,$GRADIENT --limit 40 --pairs 20"

declare -A RUNS=(
  # amendment 2 of docs/protocol.md: the eq.-22 default at its β and at β = 1, spectral, against Grad-CAM
  [lite0-bn2-eq22]="--model efficientnet_lite0 --layer bn2 --methods clustercam,clustercam@beta=1,clustercam:spectral,gradcam --reference gradcam --pairs -1"
  [lite0-bn2]="--model efficientnet_lite0 --layer bn2 --methods $CLUSTER,gradcam,gradcam++,groupcam --pairs -1"
  [lite0-bn2-slow]="--model efficientnet_lite0 --layer bn2 --methods clustercam:gated,gradcam,ablationcam,scorecam --limit 24 --pairs 0"
  # amendment 3: Recipro-CAM beside the default (and at β = 1) and the gradient methods, with ADCC
  [lite0-bn2-reciprocam]="--model efficientnet_lite0 --layer bn2 --methods clustercam,clustercam@beta=1,reciprocam,gradcam,gradcam++ --pairs -1"
  [lite0-bn2-reciprocam-slow]="--model efficientnet_lite0 --layer bn2 --methods clustercam,reciprocam,gradcam,scorecam --limit 24 --pairs 0"
  [lite0-blocks.4]="--model efficientnet_lite0 --layer blocks.4 $SMALL"
  [lite1-bn2]="--model efficientnet_lite1 --layer bn2 $SMALL"
  [lite1-blocks.4]="--model efficientnet_lite1 --layer blocks.4 $SMALL"
  [lite2-bn2]="--model efficientnet_lite2 --layer bn2 $SMALL"
  [lite2-blocks.4]="--model efficientnet_lite2 --layer blocks.4 $SMALL"
)
ORDER=(lite0-bn2-eq22 lite0-bn2 lite0-blocks.4 lite1-bn2 lite1-blocks.4 lite2-bn2 lite2-blocks.4 lite0-bn2-slow
       lite0-bn2-reciprocam lite0-bn2-reciprocam-slow)

names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
for name in "${names[@]}"; do
  [ -n "${RUNS[$name]:-}" ] || { echo "unknown table '$name'; choose from: ${ORDER[*]}" >&2; exit 2; }
  read -r -a options <<< "${RUNS[$name]}"
  command=(python -m clustercam bench "${DATA[@]}" "${options[@]}" "${COMMON[@]}" --out "$OUT/$name")
  echo "${command[*]}"
  "${command[@]}"
  echo "${command[*]}" > "$OUT/$name/command.txt"
done
