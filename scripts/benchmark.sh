#!/usr/bin/env bash
# The simulated benchmark behind docs/benchmark.md: record the bags, evaluate each, and summarise.
#   bash scripts/benchmark.sh [OUT_DIR]     (default out/benchmark; about 10 minutes on 2 cores, ~2 GB of bags)
# Every bag is determined by its command line (task, seed, size, noise); rerunning gives the same numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT="${1:-out/benchmark}"
CONFIG=config/benchmark.yaml
FETCH_EPISODES="${FETCH_EPISODES:-5}"
TABLETOP_SCENES="${TABLETOP_SCENES:-50}"
mkdir -p "$OUT/bags" "$OUT/eval"

record() {  # name, then tsg sim record arguments
  local name="$1"; shift
  if [[ ! -d "$OUT/bags/$name" ]]; then
    tsg sim record --config "$CONFIG" --out "$OUT/bags/$name" "$@"
  fi
}

for task in FetchReach FetchPush FetchPickAndPlace FetchSlide; do
  record "$task" --task "$task" --episodes "$FETCH_EPISODES" --seed 0 --width 320 --height 240
done
record FetchPickAndPlace-kinect --task FetchPickAndPlace --episodes "$FETCH_EPISODES" --seed 0 --width 320 \
  --height 240 --depth-noise kinect --policy-noise 0.1
record tabletop --task tabletop --episodes "$TABLETOP_SCENES" --seed 0 --width 640 --height 480
record tabletop-kinect --task tabletop --episodes "$TABLETOP_SCENES" --seed 0 --width 640 --height 480 \
  --depth-noise kinect

for bag in "$OUT"/bags/*/; do
  name="$(basename "$bag")"
  tsg eval "$bag" --config "$CONFIG" --out "$OUT/eval/$name"
done
# The same noisy bags through a corrupted detector: jittered boxes, misses, false positives and label swaps.
CORRUPTION=(--set detector.corruption.box_jitter_px=3.0 --set detector.corruption.miss_rate=0.05
            --set detector.corruption.false_positive_rate=0.2 --set detector.corruption.label_swap_rate=0.03
            --set detector.corruption.score_noise=0.05)
for name in FetchPickAndPlace-kinect tabletop-kinect; do
  tsg eval "$OUT/bags/$name" --config "$CONFIG" "${CORRUPTION[@]}" --out "$OUT/eval/$name+corrupted-detector"
done
python scripts/benchmark_summary.py "$OUT/eval" > "$OUT/summary.md"
cat "$OUT/summary.md"
