#!/usr/bin/env bash
# Source ROS and the workspace, then run the command (default: the launch file).
set -e
# shellcheck disable=SC1090,SC1091
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
# shellcheck disable=SC1091
source /ws/install/setup.bash
exec "$@"
