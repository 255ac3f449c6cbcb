"""The files around the code stay consistent: Dockerfile vs setup, launch file vs node list, config vs schema."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

from trusted_scene_graph.config import SCHEMA, ConfigError, load_config_file, render_parameter_file
from trusted_scene_graph.config.nodes import NODES, TOPIC_ARGUMENTS, subscribed_topic

ROOT = Path(__file__).resolve().parents[1]


def _pinned(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_every_ros_wheel_of_the_setup_has_its_apt_package_in_the_dockerfile_and_no_other():
    wheels = {name.removeprefix("ros-") for name in _pinned(ROOT / "requirements/ros.txt") if name.startswith("ros-")}
    apt = set(re.findall(r"ros-jazzy-([a-z0-9-]+)", (ROOT / "Dockerfile").read_text()))
    # Interfaces without a wheel are vendored in ros2_ws/vendor for the wheel setup; a ROS install gets them by apt.
    vendored = {path.parent.name.replace("_", "-") for path in (ROOT / "ros2_ws/vendor").glob("*/package.xml")}
    assert vendored == {"tf2-msgs"}
    # launch_ros is the one package a ROS install adds: `ros2 launch` has no wheel.
    assert apt - {"launch-ros"} == wheels | vendored
    # The vendored packages are skipped by the Docker colcon build: the apt ones are complete, the vendored not.
    assert all(f"--packages-skip {name.replace('-', '_')}" in (ROOT / "Dockerfile").read_text() for name in vendored)


def test_the_dockerfile_installs_the_same_pinned_ml_requirements_as_the_setup():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/ml.txt" in dockerfile and "COPY requirements/ requirements/" in dockerfile
    assert "python3-colcon-common-extensions" in dockerfile  # colcon-common-extensions of requirements/ros.txt
    assert "ros:jazzy" in dockerfile
    # PyPI's torch for Linux is the CUDA build; the pinned ==2.13.0 takes the CPU wheel where PyTorch's index is seen.
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in dockerfile
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (ROOT / "README.md").read_text()


def test_every_requirement_is_pinned_to_one_version():
    for path in (ROOT / "requirements").glob("*.txt"):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("setuptools"):
                assert "==" in line, f"{path.name}: {line!r} is not pinned"


def test_the_default_config_file_is_the_schema_rendered_with_its_defaults():
    assert (ROOT / "config/default.yaml").read_text() == render_parameter_file()
    assert dict(load_config_file(ROOT / "config/default.yaml")) == {name: spec.default for name, spec in
                                                                     SCHEMA.items()}


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", (ROOT / ".ci/run").read_text(), re.MULTILINE)


class _Recorder:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def _fake_launch_modules(share_dir: Path, arguments: dict[str, str]) -> dict[str, types.ModuleType]:
    """Minimal stand-ins for launch, launch_ros and ament_index_python (not installable from PyPI)."""

    class LaunchConfiguration(_Recorder):
        def perform(self, context):
            return context[self.args[0]]

    modules = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions",
        "ament_index_python", "ament_index_python.packages")}
    modules["launch"].LaunchDescription = _Recorder
    modules["launch.actions"].DeclareLaunchArgument = _Recorder
    modules["launch.actions"].OpaqueFunction = _Recorder
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].LifecycleNode = _Recorder
    modules["ament_index_python.packages"].get_package_share_directory = lambda package: str(share_dir)
    return modules


def _launch_description(monkeypatch, share_dir: Path):
    """The launch file's (declared arguments' defaults, OpaqueFunction) against the stand-in launch modules."""
    (share_dir / "config").mkdir()
    shutil.copy(ROOT / "config/default.yaml", share_dir / "config/default.yaml")
    monkeypatch.setattr(tempfile, "tempdir", str(share_dir))  # the validated parameter files the launch file writes
    for name, module in _fake_launch_modules(share_dir, {}).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("tsg_launch", ROOT / "launch/trusted_scene_graph.launch.py")
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)
    *declared, opaque = launch_file.generate_launch_description().args[0]
    return {arg.args[0]: arg.kwargs["default_value"] for arg in declared}, opaque


def test_the_launch_file_starts_every_bringup_node_by_an_existing_executable_with_validated_parameters(
        monkeypatch, tmp_path):
    defaults, opaque = _launch_description(monkeypatch, tmp_path)
    assert set(defaults) == {"config", "use_sim_time", *TOPIC_ARGUMENTS}
    # "on" is a valid relative topic name; given to launch_ros beside the file it would be read as YAML (a bool).
    context = {**defaults, "color_topic": "/robot/rgb", "depth_topic": "on"}
    nodes = opaque.kwargs["function"](context)

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert [node.kwargs["name"] for node in nodes] == [spec.name for spec in NODES]
    for node, node_spec in zip(nodes, NODES, strict=True):
        executable = node.kwargs["executable"]
        module, _, function = scripts[executable].partition(":")
        assert callable(getattr(importlib.import_module(module), function)), executable
        assert node_spec.load_class().__name__ == node_spec.node_class.rpartition(":")[2]
        assert node.kwargs["package"] == "trusted_scene_graph"
        (parameter_file,) = node.kwargs["parameters"]  # the topics are in the file, quoted, not beside it
        config = load_config_file(parameter_file)  # raises on any unknown or invalid parameter
        assert (config["topics.color"], config["topics.depth"]) == ("/robot/rgb", "on")
        assert "    topics.depth: 'on'" in Path(parameter_file).read_text().splitlines()
        assert "remappings" not in node.kwargs


@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon is installed by `make setup`")
def test_colcon_installs_the_python_package_where_ros2_launch_finds_its_executables_and_files(tmp_path):
    result = subprocess.run(
        ["colcon", "--log-base", str(tmp_path / "log"), "build", "--packages-select", "trusted_scene_graph",
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=ROOT / "ros2_ws", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install/trusted_scene_graph"
    for node_spec in NODES:
        assert (prefix / "lib/trusted_scene_graph" / node_spec.executable).is_file()
    share = prefix / "share/trusted_scene_graph"
    assert (share / "launch/trusted_scene_graph.launch.py").is_file()
    assert (share / "config/default.yaml").read_text() == render_parameter_file()
    assert (prefix / "share/ament_index/resource_index/packages/trusted_scene_graph").is_file()
    # The shipped trust model travels with the Python package, so the node works out of the box.
    installed_models = list(prefix.glob("lib/python3*/site-packages/trusted_scene_graph/trust/default_model"))
    assert installed_models, "the default trust model is not installed"
    assert sorted(p.name for p in installed_models[0].iterdir()) == ["model.json", "trust_model.json"]


def test_the_launch_file_gives_its_nodes_the_validated_values_of_the_parameter_file(monkeypatch, tmp_path):
    # The schema reads 1 for a float as 1.0, as tsg bringup --config does; rclpy would refuse the integer.
    defaults, opaque = _launch_description(monkeypatch, tmp_path)
    written = tmp_path / "written.yaml"
    written.write_text("/**:\n  ros__parameters:\n    reward:\n      shaping_scale_m: 1\n")
    [node] = opaque.kwargs["function"]({**defaults, "config": str(written)})
    [parameter_file] = node.kwargs["parameters"]
    parameters = yaml.safe_load(Path(parameter_file).read_text())["/**"]["ros__parameters"]
    assert parameters["reward.shaping_scale_m"] == 1.0 and isinstance(parameters["reward.shaping_scale_m"], float)
    assert dict(load_config_file(parameter_file)) == dict(load_config_file(written))
    # Named by content in a directory of this user's own: a second launch of the same config reuses the file.
    assert Path(parameter_file).parent.stat().st_mode & 0o777 == 0o700
    [again] = opaque.kwargs["function"]({**defaults, "config": str(written)})
    assert again.kwargs["parameters"] == [parameter_file]


def test_the_launch_file_keeps_a_configs_own_topics_unless_an_argument_sets_them(monkeypatch, tmp_path):
    # A config naming its camera's topics, launched without topic arguments, must subscribe to those topics.
    defaults, opaque = _launch_description(monkeypatch, tmp_path)
    assert {argument: defaults[argument] for argument in TOPIC_ARGUMENTS} == dict.fromkeys(TOPIC_ARGUMENTS, "")
    own = tmp_path / "own.yaml"
    own.write_text("/**:\n  ros__parameters:\n    topics:\n      color: /my_camera/color/image_raw\n")
    [node] = opaque.kwargs["function"]({**defaults, "config": str(own)})
    assert len(node.kwargs["parameters"]) == 1 and "remappings" not in node.kwargs
    assert load_config_file(node.kwargs["parameters"][0])["topics.color"] == "/my_camera/color/image_raw"
    [node] = opaque.kwargs["function"]({**defaults, "config": str(own), "depth_topic": "/my_camera/depth"})
    config = load_config_file(node.kwargs["parameters"][0])
    assert (config["topics.color"], config["topics.depth"]) == ("/my_camera/color/image_raw", "/my_camera/depth")


def test_the_launch_files_topic_arguments_are_parameters_so_compressed_topics_keep_their_suffix(monkeypatch,
                                                                                               tmp_path):
    # The node adds image_transport's suffix to the topic parameter itself (a remapping had to add it).
    defaults, opaque = _launch_description(monkeypatch, tmp_path)
    compressed = tmp_path / "compressed.yaml"
    compressed.write_text("/**:\n  ros__parameters:\n    topics:\n      color_transport: compressed\n"
                          "      depth_transport: compressedDepth\n")
    context = {**defaults, "config": str(compressed), "color_topic": "/robot/rgb", "depth_topic": "/robot/depth"}
    (parameter_file,) = opaque.kwargs["function"](context)[0].kwargs["parameters"]
    config = load_config_file(parameter_file)
    assert subscribed_topic(config, "topics.color") == "/robot/rgb/compressed"
    assert subscribed_topic(config, "topics.depth") == "/robot/depth/compressedDepth"


@pytest.mark.parametrize(("argument", "topic", "message"), [
    # A remapping took both; the rectified image the node then read as raw and undistorted a second time.
    ("color_topic", "/cam/color/image_rect", r"^topics\.color '/cam/color/image_rect' is a rectified image but "
                                             r"topics\.rectified is false"),
    ("depth_topic", "/cam//depth", r"^topics\.depth: '/cam//depth' is not a ROS 2 topic name: it has a repeated '/'"),
])
def test_the_launch_file_refuses_a_topic_argument_the_schema_refuses(monkeypatch, tmp_path, argument, topic, message):
    defaults, opaque = _launch_description(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match=message):
        opaque.kwargs["function"]({**defaults, argument: topic})


def _node_parameters(node) -> dict:
    [parameter_file] = node.kwargs["parameters"]
    return yaml.safe_load(Path(parameter_file).read_text())["/**"]["ros__parameters"]


def test_the_launch_file_keeps_rclpys_own_parameters_and_ignores_other_nodes_sections(monkeypatch, tmp_path):
    # A standard file shared by a whole launch: use_sim_time for every node, a section for another node, ours.
    defaults, opaque = _launch_description(monkeypatch, tmp_path)
    shared = tmp_path / "shared.yaml"
    shared.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n"
                      "camera:\n  ros__parameters:\n    fps: 30\n"
                      "scene_graph:\n  ros__parameters:\n    trust:\n      threshold: 0.7\n"
                      "    qos_overrides:\n      /tf:\n        subscription:\n          depth: 100\n")
    [node] = opaque.kwargs["function"]({**defaults, "config": str(shared)})
    parameters = _node_parameters(node)
    assert parameters["use_sim_time"] is True and parameters["trust.threshold"] == 0.7 and "fps" not in parameters
    assert parameters["qos_overrides"] == {"/tf": {"subscription": {"depth": 100}}}
    assert dict(load_config_file(node.kwargs["parameters"][0])) == dict(load_config_file(shared))


def test_the_launch_files_use_sim_time_argument_sets_the_parameter_for_every_node(monkeypatch, tmp_path):
    defaults, opaque = _launch_description(monkeypatch, tmp_path)
    assert defaults["use_sim_time"] == "false"
    assert "use_sim_time" not in _node_parameters(opaque.kwargs["function"](defaults)[0])  # rclpy's default: false
    nodes = opaque.kwargs["function"]({**defaults, "use_sim_time": "True"})
    assert [_node_parameters(node)["use_sim_time"] for node in nodes] == [True] * len(NODES)
    with pytest.raises(ConfigError, match=r"^launch argument use_sim_time: 'yes' is neither true nor false$"):
        opaque.kwargs["function"]({**defaults, "use_sim_time": "yes"})


def test_the_docker_image_builds_with_the_venvs_python_so_setuptools_and_the_nodes_are_the_venvs():
    # colcon runs setup.py with its own interpreter and writes it into the node scripts' #! line: apt's colcon under
    # /usr/bin/python3 would build with the distribution's setuptools (68: no PEP 639 license) and install nodes that
    # cannot import the venv's ML packages.
    dockerfile = (ROOT / "Dockerfile").read_text()
    builds = re.findall(r"^[^#]*\bcolcon build\b.*$", dockerfile, re.MULTILINE)
    assert builds and all("/opt/tsg/bin/python -m colcon build" in line for line in builds), builds
    assert "'#!/opt/tsg/bin/python'" in dockerfile  # the build checks the installed node's #! line
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [setuptools] = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    assert re.search(rf"/opt/tsg/bin/pip install [^\n]*(?:\\\n[^\n]*)*'{re.escape(setuptools)}'", dockerfile)
    assert pyproject["project"]["license"] == "Apache-2.0" and setuptools.startswith("setuptools>=77")


def test_the_docker_entrypoint_gives_every_process_the_venvs_packages(tmp_path):
    # `ros2 launch` runs under /usr/bin/python3; the launch file imports the schema, whose checks import scipy and
    # networkx, installed only in the venv. Run the entrypoint with its absolute paths pointed at this machine: the
    # venv's Python for /opt/tsg/bin/python, an empty ROS setup file, a workspace setup file that puts the package on
    # PYTHONPATH as colcon's does, and another Python (the venv's base interpreter) as the command, which must then
    # import the venv's packages (not whatever its own site-packages may hold).
    entrypoint = (ROOT / "docker/entrypoint.sh").read_text()
    (tmp_path / "ros.bash").write_text("")
    (tmp_path / "install.bash").write_text(f"export PYTHONPATH={ROOT / 'src'}${{PYTHONPATH:+:$PYTHONPATH}}\n")
    replacements = {"/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash": str(tmp_path / "ros.bash"),
                    "/ws/install/setup.bash": str(tmp_path / "install.bash"), "/opt/tsg/bin/python": sys.executable}
    for path, replacement in replacements.items():
        assert entrypoint.count(path) == 1, path
        entrypoint = entrypoint.replace(path, replacement)
    (tmp_path / "entrypoint.sh").write_text(entrypoint)
    bare_python = getattr(sys, "_base_executable", sys.executable)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(tmp_path)  # where validated_parameter_file writes
    code = ("import networkx, trusted_scene_graph.config.nodes as nodes; "
            f"nodes.validated_parameter_file({str(ROOT / 'config/default.yaml')!r}); print(networkx.__file__)")
    result = subprocess.run(["bash", str(tmp_path / "entrypoint.sh"), bare_python, "-c", code],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(sys.prefix), result.stdout


PYPROJECT_DEPENDENCY_ROSDEP_KEYS = {"numpy": "python3-numpy", "scipy": "python3-scipy", "pyyaml": "python3-yaml",
                                    "networkx": "python3-networkx", "matplotlib": "python3-matplotlib",
                                    "opencv-python-headless": "python3-opencv"}
PIP_ONLY_DEPENDENCIES = {"xgboost-cpu", "scikit-learn", "rich"}  # no rosdep key to rely on: requirements/ml.txt


def test_package_xml_declares_the_python_dependencies_with_a_rosdep_key_and_every_imported_interface():
    depends = {element.text for element in ElementTree.parse(ROOT / "package.xml").getroot().iter("exec_depend")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dependencies = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower() for d in pyproject["project"]["dependencies"]}
    assert dependencies == set(PYPROJECT_DEPENDENCY_ROSDEP_KEYS) | PIP_ONLY_DEPENDENCIES
    assert {d for d in depends if d.startswith("python3-")} == set(PYPROJECT_DEPENDENCY_ROSDEP_KEYS.values())
    assert dependencies <= set(_pinned(ROOT / "requirements/ml.txt"))  # what the Docker image's venv installs
    sources = [*(ROOT / "src").rglob("*.py"), *(ROOT / "launch").glob("*.py")]
    imported = {name for path in sources for name in re.findall(
        r"^\s*(?:from|import) (\w+(?:_msgs|_srvs|_interfaces))\b", path.read_text(), re.MULTILINE)}
    assert {"rcl_interfaces", "builtin_interfaces", "trusted_scene_graph_msgs"} <= imported <= depends


def test_rosbags_reads_bag_metadata_with_the_c_yaml_parser():
    # Without ruamel.yaml.clib, rosbags parses metadata.yaml and each topic's QoS in pure Python: opening a bag then
    # costs several times as long, for tsg eval, tsg label and every read alike.
    from ruamel.yaml import YAML

    assert YAML(typ="safe").Parser.__name__ == "CParser"


@pytest.mark.parametrize(("environment", "offline"), [({}, "1"), ({"HF_HUB_OFFLINE": "0"}, "0")])
def test_the_tsg_commands_keep_huggingface_hub_off_the_network_unless_the_user_says_otherwise(environment, offline):
    # local_files_only alone still lets huggingface_hub contact huggingface.co; a robot may have no network at all.
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"} | environment
    code = ("import os, trusted_scene_graph; assert 'HF_HUB_OFFLINE' not in os.environ or os.environ['HF_HUB_OFFLINE']"
            " == '0'; from trusted_scene_graph.cli import main; main(['config', '--out', os.devnull]); "
            "import huggingface_hub.constants as c; print(os.environ['HF_HUB_OFFLINE'], c.HF_HUB_OFFLINE)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.split() == [offline, str(offline == "1")], result.stderr
