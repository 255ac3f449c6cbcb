"""The node's callbacks run on several threads: a lifecycle transition or a parameter change that arrives while a
frame is processed waits for that frame, so the frame sees one configuration and publishes on what configure made.

Each interleaving is forced with events around a step of the frame (no timing luck), calling the node's callbacks
directly in the threads the executor would use."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from rclpy.parameter import Parameter
from test_node_dds import OBJECTS, SMALL

from trusted_scene_graph.config import Config
from trusted_scene_graph.pipeline import scene
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode
from trusted_scene_graph.sim.synthetic import SyntheticFrame

WAIT_S = 20.0


@pytest.fixture
def node(ros_context) -> Iterator[SceneGraphNode]:
    node = SceneGraphNode(Config({"qos.sensor_reliability": "reliable", "trust.threshold": 0.0}))
    assert node.trigger_configure().name == "SUCCESS", node.configure_error
    assert node.trigger_activate().name == "SUCCESS", node.activate_error
    yield node
    node.destroy_node()


def sensor_callbacks(node: SceneGraphNode) -> dict:
    """The node's buffering callback of each input, as the sensor group holds them."""
    return {name: node._buffer_callback(name, topic) for name, _, topic in node._inputs()}


def feed(node: SceneGraphNode, stamp_ns: int, callbacks: dict | None = None) -> None:
    """One synthetic frame through the node's own buffering callbacks."""
    frame = SyntheticFrame(*SMALL, objects=OBJECTS)
    msgs = {"color": convert.image_msg(frame.rgb, "rgb8", stamp_ns, "cam"),
            "depth": convert.image_msg(frame.depth_m, "32FC1", stamp_ns, "cam"),
            "camera_info": convert.camera_info_msg(frame.intrinsics, stamp_ns, "cam"),
            "instances": convert.image_msg(frame.instance_ids, "16UC1", stamp_ns, "cam")}
    for name, callback in (callbacks or sensor_callbacks(node)).items():
        callback(msgs[name])


class PausedFrame:
    """Runs the node's perception callback in a thread that stops inside ``module.name`` until released."""

    def __init__(self, node: SceneGraphNode, monkeypatch, module, name: str) -> None:
        self.inside, self.release, self.errors = threading.Event(), threading.Event(), []
        real = getattr(module, name)

        def paused(*args, **kwargs):
            result = real(*args, **kwargs)
            self.inside.set()
            self.release.wait(WAIT_S)
            return result

        monkeypatch.setattr(module, name, paused)
        self.thread = threading.Thread(target=self._run, args=(node,))

    def _run(self, node: SceneGraphNode) -> None:
        try:
            node._on_frame_ready()
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever the callback raised
            self.errors.append(exc)

    def __enter__(self) -> PausedFrame:
        self.thread.start()
        assert self.inside.wait(WAIT_S), "the frame never reached the paused step"
        return self

    def __exit__(self, *exc_info) -> None:
        self.release.set()
        self.thread.join(WAIT_S)


def in_thread(function) -> tuple[threading.Thread, list]:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(function()))
    thread.start()
    return thread, results


def test_a_cleanup_during_a_frame_waits_for_it_and_leaves_no_graph_behind(node, monkeypatch):
    feed(node, 1_000_000_000)
    with PausedFrame(node, monkeypatch, scene, "relations_from_grid") as frame:
        assert node.trigger_deactivate().name == "SUCCESS"
        cleanup, results = in_thread(node.trigger_cleanup)
        cleanup.join(0.5)
        assert cleanup.is_alive(), "cleanup did not wait for the frame in progress"
    cleanup.join(WAIT_S)
    assert [result.name for result in results] == ["SUCCESS"]
    assert frame.errors == []  # the frame published on publishers cleanup had not destroyed yet
    assert node.latest_graph is None and node.pipeline is None and node._graph_pub is None
    # A configure after it starts clean: no frame of the old configuration counted, no graph answered.
    assert node.trigger_configure().name == "SUCCESS"
    assert node.latest_graph is None and node.stats.processed == 0


def test_a_parameter_change_during_a_frame_applies_from_the_next_frame_whole(node, monkeypatch):
    # The frame's edges are pruned at 0.0; a change to 0.9 arriving before its graph is built must not make the
    # graph claim 0.9 while it holds edges below it.
    feed(node, 1_000_000_000)
    with PausedFrame(node, monkeypatch, scene, "relations_from_grid") as frame:
        change, results = in_thread(lambda: node.set_parameters([Parameter("trust.threshold", value=0.9)]))
        change.join(0.5)
        assert change.is_alive(), "the parameter change did not wait for the frame in progress"
    change.join(WAIT_S)
    assert results[0][0].successful and frame.errors == []
    graph = node.latest_graph
    assert graph.trust_threshold == 0.0 and graph.relations
    feed(node, 1_100_000_000)
    node._on_frame_ready()
    graph = node.latest_graph
    assert graph.trust_threshold == pytest.approx(0.9)
    assert all(relation.trust >= 0.9 for relation in graph.relations)


def test_a_sensor_callback_running_when_cleanup_released_the_frame_trigger_buffers_without_error(node):
    callbacks = sensor_callbacks(node)  # in flight: taken before the transition
    assert node.trigger_deactivate().name == "SUCCESS"
    assert node.trigger_cleanup().name == "SUCCESS"
    assert node._frame_ready is None
    feed(node, 2_000_000_000, callbacks)  # completes a frame: it raised AttributeError on the released trigger
