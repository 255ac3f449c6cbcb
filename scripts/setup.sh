#!/usr/bin/env bash
# One-command setup: .venv (Python 3.11) with the pinned ROS 2 Kilted wheels and ML stack, then the colcon build of
# trusted_scene_graph_msgs (and of the vendored tf2_msgs where no tf2_msgs is installed). Idempotent: each step is
# skipped when the stamp of its inputs has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3.11}
WITH_RAY=${WITH_RAY:-0}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# This machine's pip config lists local index folders that may not exist; pip warns for each package. Drop those lines.
pip_quiet() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

if ! command -v "$PY" >/dev/null; then
  if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then PY=python3
  else echo "setup: Python 3.11 is required (the ROS 2 Kilted wheels are built for cp311); none found" >&2; exit 1; fi
fi
# A .venv is reused only when it is a working 3.11 one: a venv made without python3.11-venv has a python but no pip
# (ensurepip failed), and one made by another Python cannot take the cp311 ROS wheels. Anything else is made again.
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys, pip; sys.exit(sys.version_info[:2] != (3, 11))' \
    2>/dev/null; then
  log "$VENV is not a working Python 3.11 venv with pip: making it again"
  rm -f "$VENV/.setup-stamp-pip"
  "$PY" -m venv --clear "$VENV"
fi
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "setup: $VENV has no pip (Debian/Ubuntu: apt install python3.11-venv, then run this again)" >&2; exit 1
fi

# 1. Python packages. A Ray install has every package of one without Ray, so its stamp also satisfies a setup
#    without Ray: otherwise `make demo` (no Ray) and `make test` (Ray) in turn reinstalled everything each time.
req_files=(requirements/ros.txt requirements/ml.txt pyproject.toml)
with_ray_stamp=$(stamp_of "${req_files[@]}" requirements/ray.txt)
if [ "$WITH_RAY" = 1 ]; then want=$with_ray_stamp; else want=$(stamp_of "${req_files[@]}"); fi
have=$(cat "$VENV/.setup-stamp-pip" 2>/dev/null || true)
if [ "$have" != "$want" ] && [ "$have" != "$with_ray_stamp" ]; then
  log "installing pinned packages (first run takes a few minutes)"
  pip_quiet install --quiet --upgrade "pip>=24"
  args=(-r requirements/ros.txt -r requirements/ml.txt)
  [ "$WITH_RAY" = 1 ] && args+=(-r requirements/ray.txt)
  pip_quiet install --quiet "${args[@]}"
  pip_quiet install --quiet --no-deps --no-build-isolation -e .
  echo "$want" > "$VENV/.setup-stamp-pip"
else
  log "python packages up to date"
fi

# 2. The ROS wheels' CMake exports hard-code the build machine's Python (/opt/python/cp311-cp311/...);
#    point them at this venv's include and numpy directories.
py_include=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
mapfile -t stale < <(grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" "$VENV/lib" 2>/dev/null || true)
if [ "${#stale[@]}" -gt 0 ]; then
  log "rewriting hard-coded Python paths in ${#stale[@]} CMake files"
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" "${stale[@]}"
fi

# 3. Interfaces: colcon build of ros2_ws (only when an interface or build file changed).
#    tf2_msgs (the type of /tf and /tf_static) has no PyPI wheel: build the vendored copy in ros2_ws/vendor unless
#    the venv already imports one. The check leaves out this workspace's own install, which a sourced env.sh puts on
#    PYTHONPATH, so a rebuild does not drop the vendored package it built before.
packages=(trusted_scene_graph_msgs)
pythonpath_without_ws=$(tr ':' '\n' <<<"${PYTHONPATH:-}" | grep -v "^$ROOT/ros2_ws/" | paste -sd: - || true)
if ! PYTHONPATH=$pythonpath_without_ws "$VENV/bin/python" -c 'import tf2_msgs' 2>/dev/null; then
  packages+=(tf2_msgs)
fi
want=$( { cat msg/*.msg srv/*.srv ros2_ws/src/*/CMakeLists.txt ros2_ws/src/*/package.xml requirements/ros.txt \
            ros2_ws/vendor/*/CMakeLists.txt ros2_ws/vendor/*/package.xml ros2_ws/vendor/*/msg/*.msg
          echo "packages: ${packages[*]}"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat ros2_ws/install/.setup-stamp-colcon 2>/dev/null)" != "$want" ]; then
  log "building ros2_ws with colcon: ${packages[*]}"
  (
    cd ros2_ws
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    export CMAKE_PREFIX_PATH=$VENV AMENT_PREFIX_PATH=$VENV
    rm -rf build install log
    # Only the interfaces: the Python package is the editable pip install (tests/test_packaging.py builds it
    # with colcon too, to check the layout a ROS install gets).
    colcon --log-base log build --packages-select "${packages[@]}" --event-handlers console_direct- \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF > /tmp/tsg-colcon-build.log 2>&1 \
      || { tail -50 /tmp/tsg-colcon-build.log >&2; echo "setup: colcon build failed (log: /tmp/tsg-colcon-build.log)" >&2; exit 1; }
  )
  echo "$want" > ros2_ws/install/.setup-stamp-colcon
else
  log "ros2_ws up to date"
fi
log "done: source scripts/env.sh to use tsg"
