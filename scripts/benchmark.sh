#!/usr/bin/env bash
# The simulated benchmark behind docs/benchmark.md: record the bags, evaluate each, and summarise.
#   bash scripts/benchmark.sh [OUT_DIR]     (default out/benchmark)
# Environment (the sizes in docs/benchmark.md are the defaults):
#   FETCH_EPISODES=5    episodes in each of the five Fetch bags (an episode is 51 frames at 320x240)
#   TABLETOP_SCENES=50  scenes in each of the two tabletop bags (a scene is one frame at 640x480)
# Measured: FETCH_EPISODES=1 TABLETOP_SCENES=3 took 1 min 13 s of wall time (recording and evaluation) on
# 2 cores from empty, and wrote 185 MB of bags.
# Measured 2026-11-26 from an empty OUT_DIR: the default sizes took 3 min 0 s on 2 cores and wrote 1.1 GB of bags.
# Every bag is determined by its command line (task, seed, size, noise) and the config; rerunning gives the same
# numbers. A bag is reused only when $OUT/bags/NAME.args, written once it is complete, holds the same `tsg sim
# record` arguments and config checksum; otherwise it is deleted and recorded again. The simulator's code is not
# part of that check: after changing it, delete $OUT/bags.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT="${1:-out/benchmark}"
CONFIG=config/benchmark.yaml
FETCH_EPISODES="${FETCH_EPISODES:-5}"
TABLETOP_SCENES="${TABLETOP_SCENES:-50}"
mkdir -p "$OUT/bags" "$OUT/eval"
NAMES=()  # the bags of this run, in order: only these are evaluated

source scripts/record_lib.sh  # record NAME ARGS...: records $OUT/bags/NAME, or reuses it (see there)

for task in FetchReach FetchPush FetchPickAndPlace FetchSlide; do
  record "$task" --task "$task" --episodes "$FETCH_EPISODES" --seed 0 --width 320 --height 240
done
record FetchPickAndPlace-kinect --task FetchPickAndPlace --episodes "$FETCH_EPISODES" --seed 0 --width 320 \
  --height 240 --depth-noise kinect --policy-noise 0.1
record tabletop --task tabletop --episodes "$TABLETOP_SCENES" --seed 0 --width 640 --height 480
record tabletop-kinect --task tabletop --episodes "$TABLETOP_SCENES" --seed 0 --width 640 --height 480 \
  --depth-noise kinect

for name in "${NAMES[@]}"; do
  tsg eval "$OUT/bags/$name" --config "$CONFIG" --out "$OUT/eval/$name"
done
# The same noisy bags through a corrupted detector: jittered boxes, misses, false positives and label swaps.
CORRUPTION=(--set detector.corruption.box_jitter_px=3.0 --set detector.corruption.miss_rate=0.05
            --set detector.corruption.false_positive_rate=0.2 --set detector.corruption.label_swap_rate=0.03
            --set detector.corruption.score_noise=0.05)
EVALS=("${NAMES[@]}")
for name in FetchPickAndPlace-kinect tabletop-kinect; do
  tsg eval "$OUT/bags/$name" --config "$CONFIG" "${CORRUPTION[@]}" --out "$OUT/eval/$name+corrupted-detector"
  EVALS+=("$name+corrupted-detector")
done
# The same noisy bags with boxes only (no masks), as a box detector such as GroundingDINO gives them: lifting takes
# each object's pixels from depth (lifting.box_silhouette).
for name in FetchPickAndPlace-kinect tabletop-kinect; do
  tsg eval "$OUT/bags/$name" --config "$CONFIG" --set detector.sim_masks=false --out "$OUT/eval/$name+boxes-only"
  EVALS+=("$name+boxes-only")
done
# Only this run's evaluations: a folder left in $OUT/eval by an earlier run with other bags is not summarised.
python scripts/benchmark_summary.py "$OUT/eval" "${EVALS[@]}" > "$OUT/summary.md"
cat "$OUT/summary.md"
# The trust model the evaluations used (config/benchmark.yaml: trust.model default), against its two baselines on
# these held-out edges (the model was trained on other bags: scripts/train_trust.sh).
tsg trust report src/trusted_scene_graph/trust/default_model --data "${EVALS[@]/#/$OUT/eval/}" \
  --out "$OUT/trust-report"
