# Shared by scripts/benchmark.sh and scripts/train_trust.sh (sourced, not run): record one simulated bag, or reuse it.
# Needs OUT (output directory), CONFIG (parameter file) and the NAMES array in the caller.

record() {  # name, then tsg sim record arguments
  local name="$1"; shift
  local bag="$OUT/bags/$name" sidecar="$OUT/bags/$name.args" wanted
  # One argument a line, then the config's checksum (its topics and frames are written into the bag). --out is
  # left out: where the bag lies does not change its content.
  wanted="$(printf '%s\n' tsg sim record --config "$CONFIG" "$@"
            echo "config-sha256 $(sha256sum < "$CONFIG" | cut -d" " -f1)")"
  NAMES+=("$name")
  if [[ -d "$bag" && -f "$sidecar" && "$(cat "$sidecar")" == "$wanted" ]]; then
    echo "reusing $bag: recorded with the same arguments ($sidecar)"
    return
  fi
  rm -rf "$bag" "$sidecar"  # a bag from other arguments, an interrupted recording, or one with no sidecar
  tsg sim record --config "$CONFIG" --out "$bag" "$@"
  printf '%s\n' "$wanted" > "$sidecar"
}

