#!/usr/bin/env bash
# Source ROS and the workspace, then run the command (default: the launch file).
set -e
# shellcheck disable=SC1090,SC1091
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
# shellcheck disable=SC1091
source /ws/install/setup.bash
# The node scripts run under the /opt/tsg venv's Python (their #! line), but `ros2` and so `ros2 launch` run under
# the distribution's /usr/bin/python3, and the launch file validates the parameter file with the package's schema,
# which imports the ML packages installed only in the venv (scipy, networkx...). So every process started here also
# sees the venv's packages: appended, so that ROS's own paths (set in PYTHONPATH by setup.bash) keep precedence.
# The venv's still come before the distribution's dist-packages, so ros2 processes use the venv's numpy 2 as the
# nodes do. Asked of the venv's Python, not written as python3.X, which is the image's to choose.
TSG_SITE_PACKAGES=$(/opt/tsg/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}${TSG_SITE_PACKAGES}"
exec "$@"
