# trusted_scene_graph on a ROS 2 Jazzy (LTS) install: apt ROS packages, pip ML packages, colcon build.
#   docker build -t trusted_scene_graph .
#   docker run --rm -it --net=host trusted_scene_graph ros2 launch trusted_scene_graph trusted_scene_graph.launch.py
# The apt list mirrors requirements/ros.txt (ros-<name> wheel -> ros-jazzy-<name>) plus the packages vendored in
# ros2_ws/vendor for want of a wheel (tf2_msgs); tests/test_packaging.py fails when they drift apart. Not
# buildable in the development environment (no Docker engine there).
FROM ros:jazzy-ros-base

ARG ROS_DISTRO=jazzy
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update && apt-get install -y --no-install-recommends \
      python3-pip python3-venv python3-colcon-common-extensions \
      libegl1 libgl1 libosmesa6 \
      ros-jazzy-rclpy \
      ros-jazzy-rmw-fastrtps-cpp \
      ros-jazzy-std-msgs \
      ros-jazzy-std-srvs \
      ros-jazzy-sensor-msgs \
      ros-jazzy-geometry-msgs \
      ros-jazzy-tf2-msgs \
      ros-jazzy-visualization-msgs \
      ros-jazzy-diagnostic-msgs \
      ros-jazzy-lifecycle-msgs \
      ros-jazzy-rcl-lifecycle \
      ros-jazzy-ament-package \
      ros-jazzy-ament-cmake \
      ros-jazzy-ament-cmake-core \
      ros-jazzy-ament-cmake-include-directories \
      ros-jazzy-ament-cmake-test \
      ros-jazzy-ament-cmake-python \
      ros-jazzy-ament-cmake-ros-core \
      ros-jazzy-python-cmake-module \
      ros-jazzy-rosidl-default-generators \
      ros-jazzy-rosidl-core-generators \
      ros-jazzy-rosidl-default-runtime \
      ros-jazzy-launch-ros \
    && rm -rf /var/lib/apt/lists/*

# ML packages in a venv that also sees the apt ROS Python packages. The venv gets the pinned numpy 2, not the
# distribution's 1.26: the pinned OpenCV and datasets (pandas) need numpy >= 2. ROS's generated message extensions
# read arrays through numpy's struct macros only (no import_array), which numpy 2 keeps. PyTorch's CPU index gives
# torch's CPU wheel (2.13.0+cpu satisfies ==2.13.0 and sorts above it); PyPI's own is the CUDA build (gigabytes).
# The venv also gets the setuptools that pyproject.toml's build-system requires: the distribution's (68) cannot read
# its license (a PEP 639 string).
WORKDIR /ws/src/trusted_scene_graph
COPY requirements/ requirements/
RUN python3 -m venv --system-site-packages /opt/tsg \
    && /opt/tsg/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
       -r requirements/ml.txt 'setuptools>=77,<80'
ENV PATH=/opt/tsg/bin:$PATH MUJOCO_GL=egl

COPY . .
# Both packages: the interfaces (ament_cmake) and the Python package (ament_python, scripts in lib/<pkg>). Not the
# vendored tf2_msgs: apt's ros-jazzy-tf2-msgs is the complete package, which tf2_ros needs.
# The workspace is the repository's ros2_ws/ (its src/ links the package and its interfaces), not a src/ holding the
# repository: colcon stops at the repository root's package.xml and would not find trusted_scene_graph_msgs.
# colcon runs setup.py with the interpreter colcon itself runs under, and the node scripts it installs start with
# that interpreter's #! line: so colcon runs under the venv's Python (apt's colcon, seen through the venv's system
# site packages), for the venv's setuptools and for nodes that import the venv's ML packages.
RUN source /opt/ros/${ROS_DISTRO}/setup.bash \
    && cd /ws/src/trusted_scene_graph/ros2_ws \
    && /opt/tsg/bin/python -m colcon build --install-base /ws/install --build-base /ws/build \
       --packages-skip tf2_msgs --cmake-args -DBUILD_TESTING=OFF \
    && head -n 1 /ws/install/trusted_scene_graph/lib/trusted_scene_graph/scene_graph_node \
       | grep -qx '#!/opt/tsg/bin/python' \
    && /opt/tsg/bin/pip install --no-cache-dir --no-deps /ws/src/trusted_scene_graph

ENV FASTDDS_DEFAULT_PROFILES_FILE=/ws/install/trusted_scene_graph/share/trusted_scene_graph/config/fastdds.xml
COPY docker/entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["ros2", "launch", "trusted_scene_graph", "trusted_scene_graph.launch.py"]
