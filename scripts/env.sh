# Source me: activates .venv and overlays the colcon workspace (trusted_scene_graph_msgs).
_tsg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
source "$_tsg_root/.venv/bin/activate"
# local_setup.bash reads unset variables; relax nounset while sourcing it.
_tsg_nounset=$(set +o | grep nounset); set +u
# shellcheck disable=SC1091
source "$_tsg_root/ros2_ws/install/local_setup.bash"
eval "$_tsg_nounset"
export MUJOCO_GL=${MUJOCO_GL:-egl}
unset _tsg_root _tsg_nounset
# Camera-sized messages between processes need a larger shared-memory segment (see config/fastdds.xml).
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/config/fastdds.xml}
