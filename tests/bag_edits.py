"""Copies of recorded bags with one thing changed, for tests that need a robot's recording rather than a simulator's."""

from __future__ import annotations

from pathlib import Path

from trusted_scene_graph.dataset import BagReader, BagWriter
from trusted_scene_graph.dataset.messages import tf_message
from trusted_scene_graph.geometry.transform import RigidTransform

#: Where the copy's robot base sits in the recorded world frame: 1 m along x.
BASE_IN_WORLD = RigidTransform.from_xyzw([1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])


def ee_poses_in_base_frame(source: Path, target: Path, with_tf: bool = True) -> Path:
    """A copy of ``source`` whose ``/ee_pose`` messages are in ``base_link`` (the same points, seen from there), as a
    real robot publishes them; ``with_tf`` adds the ``/tf_static`` transform that places ``base_link`` in ``world``."""
    with BagReader(source) as reader, BagWriter(target) as writer:
        for topic, msgtype in reader.topics.items():
            writer.add_topic(topic, msgtype)
        for index, message in enumerate(reader.messages()):
            if message.topic == "/ee_pose":
                message.msg.header.frame_id = "base_link"
                message.msg.pose.position.x -= BASE_IN_WORLD.translation_m[0]
            writer.write(message.topic, message.msg, message.log_time_ns)
            if with_tf and index == 0:
                writer.write("/tf_static", tf_message(0, "world", "base_link", BASE_IN_WORLD), message.log_time_ns)
    return target


def clock_reset_at_each_episode_without_ground_truth(source: Path, target: Path) -> Path:
    """A copy of ``source`` (a ``tsg sim record`` bag) as a simulator without ``/ground_truth`` records it: every
    episode's header stamps start again from the first episode's (a reset to t = 0), log times still increasing."""
    with BagReader(source) as reader:
        episode_starts_ns: dict[int, int] = {}
        for message in reader.messages(["/ground_truth"]):
            stamp_ns = message.msg.header.stamp.sec * 1_000_000_000 + message.msg.header.stamp.nanosec
            episode_starts_ns.setdefault(message.msg.episode, stamp_ns)
    starts = sorted(episode_starts_ns.values())

    def shifted(stamp) -> None:
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        start_ns = max((s for s in starts if s <= stamp_ns), default=starts[0])
        stamp_ns -= start_ns - starts[0]
        stamp.sec, stamp.nanosec = divmod(stamp_ns, 1_000_000_000)

    with BagReader(source) as reader, BagWriter(target) as writer:
        for topic, msgtype in reader.topics.items():
            if topic != "/ground_truth":
                writer.add_topic(topic, msgtype)
        for message in reader.messages():
            if message.topic == "/ground_truth":
                continue
            if message.topic == "/tf":
                for transform in message.msg.transforms:
                    shifted(transform.header.stamp)
            elif message.topic != "/tf_static" and hasattr(message.msg, "header"):
                shifted(message.msg.header.stamp)
            writer.write(message.topic, message.msg, message.log_time_ns)
    return target



def played_twice(source: Path, target: Path) -> Path:
    """A copy of ``source`` holding it twice in a row, as a looped replay records it: the same stamps (the clock goes
    back at the second pass), ground truth included, log times increasing."""
    with BagReader(source) as reader:
        topics = dict(reader.topics)
        log_times_ns = [message.log_time_ns for message in reader.messages()]
    shift_ns = max(log_times_ns) - min(log_times_ns) + 1_000_000_000
    with BagWriter(target) as writer:
        for topic, msgtype in topics.items():
            writer.add_topic(topic, msgtype)
        for repeat in range(2):
            with BagReader(source) as reader:
                for message in reader.messages():
                    writer.write(message.topic, message.msg, message.log_time_ns + repeat * shift_ns)
    return target
