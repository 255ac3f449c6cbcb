"""The floor under ``tsg bench label``'s read_ratio: a bare loop that does only what any geometry labeller must.

Not a labeller (no synchronisation, tracking, validity, copy or table): an experiment that asks how close to reading a
bag a labeller doing next to nothing gets on this machine. The read is the bench's own (``time_read``: open the bag and
deserialise every message); the bare labeller reads the bag the same way, through rosbags, then, per camera frame, finds
one object's pixels in the instance image (one comparison of the image and one scan of it), takes the median of their
valid depth, back-projects their mean pixel, moves it into the graph frame with the camera's pose from the tf (the
bench's camera is fixed, so one lookup serves every frame) and measures its distance to the latest end-effector pose.
Reads and bare labellings alternate ``--repeats`` times after a warm-up; the fastest of each is kept, as in the bench.
It prints the median difference between its distances and ``tsg label``'s, so that a floor that went wrong shows (it
measures to the visible surface's median depth, where lifting completes a box behind it: millimetres to centimetres
apart).

    python scripts/label_floor.py [--bag DIR] [--instance-id N] [--repeats N]

Without ``--bag`` it records the bench's bag (FetchPush, 2 episodes at 320x240, seed 0) into a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from rosbags.rosbag2 import Reader

from trusted_scene_graph.bench.label import DEFAULT_EPISODES, DEFAULT_HEIGHT, DEFAULT_WIDTH, TASK, time_read
from trusted_scene_graph.config.nodes import TF_STATIC_TOPIC
from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.dataset.bag import storage_path
from trusted_scene_graph.dataset.typestore import deserialize, make_typestore
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer
from trusted_scene_graph.label.bags import REWARDS_FILE, label_bag
from trusted_scene_graph.perception.detector import sim_labels
from trusted_scene_graph.pipeline.messages import stamp_to_ns
from trusted_scene_graph.sim.record import RecordSettings, benchmark_config, record_sim_bag


def bare_label_s(bag: Path, config: Config, instance_id: int) -> tuple[float, int]:
    """Seconds of the bare labeller over ``bag``, and the number of distances it measured."""
    typestore = make_typestore()
    camera_topics = {config["topics.color"], config["topics.depth"], config["topics.camera_info"],
                     config["topics.instances"]}
    distances: dict[int, float] = {}  # frame stamp -> distance
    tf = TransformBuffer()
    camera_to_graph = None
    start_s = time.perf_counter()
    with Reader(storage_path(bag)) as reader:
        frame: dict[str, object] = {}
        ee_position_m = None
        for connection, _, raw in reader.messages():
            msg = deserialize(typestore, raw, connection.msgtype)  # without a copy, as time_read reads
            if connection.topic == TF_STATIC_TOPIC:
                tf.add(msg, static=True)
            elif connection.topic == config["topics.ee_pose"]:
                p = msg.pose.position
                ee_position_m = np.array((p.x, p.y, p.z))
            elif connection.topic in camera_topics:
                frame[connection.topic] = msg
                if len(frame) < len(camera_topics):
                    continue
                depth_msg, ids_msg = frame[config["topics.depth"]], frame[config["topics.instances"]]
                info = frame[config["topics.camera_info"]]
                k, frame = info.k, {}
                if camera_to_graph is None:
                    camera_to_graph = tf.lookup(config["graph_frame"], info.header.frame_id, 0)
                depth_m = np.frombuffer(depth_msg.data, np.float32)  # 32FC1, rows unpadded (the bench's bag)
                pixels = np.flatnonzero(np.frombuffer(ids_msg.data, np.uint16) == instance_id)
                depths_m = depth_m[pixels]
                depths_m = depths_m[(depths_m > 0) & (depths_m < np.inf)]
                if depths_m.size == 0 or ee_position_m is None or camera_to_graph is None:
                    continue
                z_m = float(np.median(depths_m))
                rows, cols = np.divmod(pixels, depth_msg.width)
                v, u = float(rows.mean()), float(cols.mean())
                point_m = camera_to_graph.apply(np.array([((u - k[2]) * z_m / k[0], (v - k[5]) * z_m / k[4], z_m)]))
                distances[stamp_to_ns(info.header.stamp)] = float(np.linalg.norm(point_m[0] - ee_position_m))
    return time.perf_counter() - start_s, distances


def labelled_distances(bag: Path, config: Config, scratch: Path) -> dict[int, float]:
    """``tsg label``'s valid gripper-cube distances by frame stamp (the labeller the floor is set against)."""
    out_dir = scratch / "labelled"
    out_dir.mkdir()
    label_bag(bag, out_dir, config, ["gripper:cube"])
    rows = pq.read_table(out_dir / REWARDS_FILE).to_pylist()
    return {row["stamp_ns"]: row["distance_m"] for row in rows if row["valid"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", type=Path, help="a bag recorded by tsg sim record (default: record the bench's)")
    parser.add_argument("--instance-id", type=int, help="the object's instance id (default: the cube's)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: must be at least 1")
    config = benchmark_config()
    instance_id = args.instance_id if args.instance_id is not None else next(
        i for i, label in sim_labels(config).items() if label == "cube")
    with tempfile.TemporaryDirectory() as scratch:
        bag = args.bag
        if bag is None:
            bag = Path(scratch) / "bench-bag"
            record_sim_bag(bag, RecordSettings(scene=TASK, episodes=DEFAULT_EPISODES, seed=0, width=DEFAULT_WIDTH,
                                               height=DEFAULT_HEIGHT), config)
        time_read(bag, config["topics.color"])  # warm-up: imports, page cache
        _, distances = bare_label_s(bag, config, instance_id)
        if not distances:  # a ratio of a loop that measured nothing says nothing
            parser.error(f"no frame of {bag} shows instance id {instance_id} with valid depth: give --instance-id of "
                         "an object in view")
        labelled = labelled_distances(bag, config, Path(scratch))
        reads, labels = [], []
        for _ in range(args.repeats):
            reads.append(time_read(bag, config["topics.color"])[0])
            labels.append(bare_label_s(bag, config, instance_id)[0])
    both = sorted(distances.keys() & labelled.keys())
    differences_m = np.abs([distances[stamp] - labelled[stamp] for stamp in both])
    result = {"read_s": min(reads), "bare_label_s": min(labels), "bare_read_ratio": min(reads) / min(labels),
              "distances": len(distances), "frames_compared": len(both),
              "median_abs_difference_from_tsg_label_m": float(np.median(differences_m)) if both else None}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
