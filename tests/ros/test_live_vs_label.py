"""The live node's rewards are the rewards ``tsg label`` writes for the same recorded frames.

A recorded Fetch bag is replayed (``tsg replay``'s player, at quarter speed, with the recorded QoS) into the
scene-graph node, and labelled offline with the same configuration and pairs; every frame the node processed must
carry the labelled distance, reward, validity and source of each side. The per-frame distance is what the two paths
could disagree on (pose timing, lifting, side resolution); shaping here has no state across frames.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("mujoco")

from dds_helpers import replay_into_node  # noqa: E402
from trusted_scene_graph_msgs.msg import DenseReward  # noqa: E402

from trusted_scene_graph.label.bags import label_bag  # noqa: E402
from trusted_scene_graph.pipeline.messages import stamp_to_ns  # noqa: E402
from trusted_scene_graph.ros.scene_graph_node import REWARD_TOPIC, reward_qos  # noqa: E402
from trusted_scene_graph.sim.record import RecordSettings, benchmark_config, record_sim_bag  # noqa: E402

pytestmark = [pytest.mark.dds, pytest.mark.sim]
PAIRS = ["gripper:cube", "cube:goal"]


def test_every_frame_the_node_rewards_has_the_distances_tsg_label_writes(tmp_path: Path, ros_context) -> None:
    config = benchmark_config().with_overrides({"reward.pairs": PAIRS})
    record_sim_bag(tmp_path / "bag", RecordSettings(scene="FetchPush", episodes=1, seed=3, width=160, height=120),
                   config)
    (tmp_path / "labelled").mkdir()
    label_bag(tmp_path / "bag", tmp_path / "labelled", config, PAIRS)
    labelled = {(row["stamp_ns"], row["pair"]): row
                for row in pq.read_table(tmp_path / "labelled" / "rewards.parquet").to_pylist()}

    live: list[DenseReward] = []
    replay_into_node(tmp_path / "bag", config,
                     lambda listener: listener.create_subscription(DenseReward, REWARD_TOPIC, live.append,
                                                                   reward_qos(len(PAIRS))),
                     lambda: len(live) >= len(labelled), rate=0.25)

    # The node takes the newest frame, so frames that arrive together are replaced. On the 2-core test VM the
    # replayed frames sometimes arrive in bursts: every thread of this process (the player, the executor, a 10 ms
    # heartbeat) idle and not woken for up to ~0.8 s, while a sleeper in another process saw no gap; not seen in a
    # bringup process alone, and not the garbage collector (freezing the start-up objects as tsg bringup does shortened
    # its pauses and left the drops). So a fixed share is not guaranteed: half the frames must be rewarded, and each
    # one rewarded is compared below.
    assert len(live) >= 0.5 * len(labelled)
    compared = 0
    for sample in live:
        row = labelled[(stamp_to_ns(sample.header.stamp), sample.pair)]
        assert sample.valid == row["valid"], (sample, row)
        assert (sample.subject_source, sample.object_source) == (row["subject_source"], row["object_source"])
        if sample.valid:
            assert sample.distance_m == pytest.approx(row["distance_m"], abs=1e-6), (sample, row)
            assert sample.reward == pytest.approx(row["reward"], abs=1e-6)
            compared += 1
    assert compared >= 0.8 * len(live)
    assert np.isfinite([s.reward for s in live if s.valid]).all()
