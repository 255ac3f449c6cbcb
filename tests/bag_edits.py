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
    return clock_reset_at_each_episode(source, target, keep_ground_truth=False)


def clock_reset_at_each_episode(source: Path, target: Path, keep_ground_truth: bool = True) -> Path:
    """A copy of ``source`` (a ``tsg sim record`` bag) whose every episode's header stamps (``/tf`` and the ground
    truth's included) start again from the first episode's, as a simulator whose clock resets with each episode
    records it; log times still increase. ``keep_ground_truth=False`` leaves ``/ground_truth`` out."""
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
            if topic != "/ground_truth" or keep_ground_truth:
                writer.add_topic(topic, msgtype)
        for message in reader.messages():
            if message.topic == "/ground_truth" and not keep_ground_truth:
                continue
            if message.topic == "/tf":
                for transform in message.msg.transforms:
                    shifted(transform.header.stamp)
            elif message.topic != "/tf_static" and hasattr(message.msg, "header"):
                shifted(message.msg.header.stamp)
            writer.write(message.topic, message.msg, message.log_time_ns)
    return target


def static_tf_as_tf(source: Path, target: Path) -> Path:
    """A copy of ``source`` whose ``/tf_static`` transforms are published on ``/tf`` instead, stamped like each colour
    image and logged just before it (a camera on a moving robot: its pose comes with every frame)."""
    with BagReader(source) as reader:
        statics = list({transform.child_frame_id: transform for message in reader.messages(["/tf_static"])
                        for transform in message.msg.transforms}.values())
    with BagReader(source) as reader, BagWriter(target) as writer:
        for topic, msgtype in reader.topics.items():
            writer.add_topic("/tf" if topic == "/tf_static" else topic, msgtype)
        for message in reader.messages():
            if message.topic == "/tf_static":
                continue
            if message.topic == "/camera/color/image_raw":
                stamp = message.msg.header.stamp
                for transform in statics:
                    transform.header.stamp.sec, transform.header.stamp.nanosec = stamp.sec, stamp.nanosec
                writer.write("/tf", reader.typestore.types["tf2_msgs/msg/TFMessage"](transforms=statics),
                             message.log_time_ns)
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


def passes(source: Path, target: Path, *lengths_s: tuple[float, float, float], gap_s: float = 0.2) -> Path:
    """A copy of ``source`` played once per item of ``lengths_s``, one pass after the other with the same header
    stamps (the clock goes back at each new pass: a simulator reset, a looped replay), ``gap_s`` of log time apart.

    Each pass is ``(length_s, truth_from_s, truth_until_s)``: the messages of ``source`` logged in its first
    ``length_s`` seconds (``math.inf``: all of them), of which ``/ground_truth`` and ``/ee_pose`` (the streams stamped
    like the frames they describe) only from ``truth_from_s`` to ``truth_until_s`` (seconds from the first message).
    A pass whose truth stops early or starts late makes those streams jump back by less than the camera does, or not
    at all. ``/tf_static`` is written once, with the first pass."""
    with BagReader(source) as reader:
        topics = dict(reader.topics)
        start_ns = min(message.log_time_ns for message in reader.messages())
    with BagWriter(target) as writer:
        for topic, msgtype in topics.items():
            writer.add_topic(topic, msgtype)
        pass_start_ns = start_ns
        for index, (length_s, truth_from_s, truth_until_s) in enumerate(lengths_s):
            last_ns = pass_start_ns
            with BagReader(source) as reader:
                for message in reader.messages():
                    offset_s = (message.log_time_ns - start_ns) / 1e9
                    if offset_s > length_s or (message.topic == "/tf_static" and index > 0):
                        continue
                    if message.topic in ("/ground_truth", "/ee_pose") and not truth_from_s <= offset_s <= truth_until_s:
                        continue
                    last_ns = message.log_time_ns - start_ns + pass_start_ns
                    writer.write(message.topic, message.msg, last_ns)
            pass_start_ns = last_ns + int(gap_s * 1e9)
    return target


def bytes_removed_inside_chunk(mcap_file: Path, chunk: int, count: int = 1000) -> int:
    """Remove ``count`` bytes of ``mcap_file`` 100 bytes into its chunk number ``chunk`` (a copy that lost a block):
    every offset its index holds past them then points too far. Returns how many messages the chunks before it hold,
    the most a reader can trust."""
    import io

    from mcap.records import Chunk, Message
    from mcap.stream_reader import StreamReader, breakup_chunk

    data = mcap_file.read_bytes()
    stream = io.BytesIO(data)
    starts, messages_before = [], []
    position, messages = 8, 0  # past the magic
    for record in StreamReader(stream, emit_chunks=True).records:
        if isinstance(record, Chunk):
            starts.append(position)
            messages_before.append(messages)
            messages += sum(isinstance(r, Message) for r in breakup_chunk(record))
        position = stream.tell()
    cut = starts[chunk] + 100
    mcap_file.write_bytes(data[:cut] + data[cut + count:])
    return messages_before[chunk]


def without_topic(source: Path, target: Path, topic: str, edit=lambda message: message) -> Path:
    """A copy of ``source`` without ``topic`` (neither its messages nor its entry), every other message passed through
    ``edit``."""
    with BagReader(source) as reader, BagWriter(target) as writer:
        for name, msgtype in reader.topics.items():
            if name != topic:
                writer.add_topic(name, msgtype)
        for message in reader.messages():
            if message.topic != topic:
                edited = edit(message)
                writer.write(edited.topic, edited.msg, edited.log_time_ns)
    return target
