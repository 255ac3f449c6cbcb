"""The executable the launch file starts: one node, parameters from a ROS parameter file, autostarted."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dds_helpers import call, spin_until
from trusted_scene_graph_msgs.srv import QueryDistance

from trusted_scene_graph.ros.scene_graph_node import QUERY_SERVICE

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dds


def test_the_node_executable_reads_a_parameter_file_activates_itself_and_serves_queries(test_node, tmp_path):
    params = tmp_path / "params.yaml"
    default = (ROOT / "config/default.yaml").read_text()
    assert "trust.threshold: -1.0" in default
    params.write_text(default.replace("trust.threshold: -1.0", "trust.threshold: 0.75"))
    process = subprocess.Popen(["scene_graph_node", "--ros-args", "--params-file", str(params)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = test_node.create_client(QueryDistance, QUERY_SERVICE)
        assert client.wait_for_service(timeout_sec=30.0), "the node did not come up"
        answer = call(test_node, client, QueryDistance.Request(subject="gripper", object="cube"))
        assert not answer.valid and answer.message == "no scene graph has been computed yet"
        # The parameter file's value is what the node runs with.
        from rcl_interfaces.srv import GetParameters

        get = test_node.create_client(GetParameters, "/scene_graph/get_parameters")
        assert get.wait_for_service(timeout_sec=10.0)
        values = call(test_node, get, GetParameters.Request(names=["trust.threshold"])).values
        assert values[0].double_value == 0.75
        assert spin_until(test_node, lambda: process.poll() is None, timeout_s=0.1)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "configured: detector 'sim'" in output


def test_the_node_executable_exits_non_zero_with_the_reason_when_autostart_cannot_configure(tmp_path):
    # Spinning on unconfigured would look alive to ros2 launch while the node does nothing.
    missing = tmp_path / "no-such-model"
    result = subprocess.run(["scene_graph_node", "--ros-args", "-p", "detector.backend:=grounding_dino",
                             "-p", f"detector.model_path:={missing}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "node 'scene_graph': trigger_configure returned FAILURE" in output and str(missing) in output


@pytest.mark.parametrize(("override", "named"), [("trust.threshold:=5.0", "trust.threshold"),
                                               ("use_sim_time:=5", "use_sim_time"),
                                               ("trust.treshold:=0.7", "did you mean trust.threshold"),
                                               ("reward.pairs:=[gripper:cube]", "rclpy refused the arguments")])
def test_the_node_executable_refuses_a_bad_parameter_with_one_line_not_a_traceback(override, named):
    result = subprocess.run(["scene_graph_node", "--ros-args", "-p", override], capture_output=True, text=True,
                            timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "[FATAL]" in output and named in output and "Traceback" not in output


def test_the_node_executable_shortens_the_gil_switch_interval_as_tsg_bringup_does(monkeypatch):
    # Under `ros2 launch` (this executable) a query would otherwise wait behind perception several times as long.
    import rclpy

    from trusted_scene_graph.ros.bringup import GIL_SWITCH_INTERVAL_S
    from trusted_scene_graph.ros.scene_graph_node import main

    class Stop(Exception):
        pass

    def init(*args, **kwargs):
        raise Stop("rclpy.init")  # the interval is set before rclpy starts: stop there, without a node

    monkeypatch.setattr(rclpy, "init", init)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # CPython's default
    try:
        with pytest.raises(Stop, match=r"^rclpy\.init$"):
            main([])
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
    finally:
        sys.setswitchinterval(previous)


CRASHING_BRINGUP = """
import sys
from trusted_scene_graph.config import Config
from trusted_scene_graph.ros import bringup, scene_graph_node

def crash(self):
    raise RuntimeError("an error no callback handles, raised by the test")

scene_graph_node.SceneGraphNode._publish_diagnostics = crash  # a timer callback: it runs without any input
sys.exit(bringup.run_bringup(Config()))
"""


def test_tsg_bringup_exits_non_zero_when_an_unhandled_error_stops_its_executor():
    result = subprocess.run([sys.executable, "-c", CRASHING_BRINGUP], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("the executor stopped on an error no callback handled: RuntimeError: an error no callback handles, "
            "raised by the test") in result.stdout + result.stderr


SHUTDOWN_ORDER = """
import sys
from trusted_scene_graph.ros import bringup, scene_graph_node

events = []

class RecordingExecutor(bringup.BringupExecutor):
    def spin(self):
        events.append("spin")
        raise KeyboardInterrupt  # Ctrl-C while spinning

    def shutdown(self, *args, **kwargs):
        events.append("executor shutdown")
        return super().shutdown(*args, **kwargs)

destroy_node = scene_graph_node.SceneGraphNode.destroy_node

def recording_destroy_node(self):
    events.append("destroy node")
    return destroy_node(self)

bringup.BringupExecutor = RecordingExecutor
scene_graph_node.SceneGraphNode.destroy_node = recording_destroy_node
code = scene_graph_node.main([])
print(code, events)
"""


def test_the_node_executable_joins_its_executor_before_destroying_the_node():
    # A callback still running on a worker thread must not find the node's publishers destroyed under it.
    result = subprocess.run([sys.executable, "-c", SHUTDOWN_ORDER], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 ['spin', 'executor shutdown', 'destroy node']"
