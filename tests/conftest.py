"""Test-wide environment: DDS traffic isolated per run, headless MuJoCo, Fast DDS profile for large images."""

from __future__ import annotations

import os
import signal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Set before anything imports rclpy or mujoco. A per-run domain (from the pid) and localhost-only discovery keep
# parallel test runs on one machine from seeing each other's topics.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds.xml"))
os.environ.setdefault("MUJOCO_GL", "egl")
# Tests never hit the network: huggingface_hub reads this when imported, so it is set before any test imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# A run started in the background by a non-interactive shell (`nohup make test &`, cron) inherits SIGINT ignored, and
# so would every process the tests start: the tests of Ctrl-C (SIGINT to a child) would then time out. Restored to
# Python's own handler, as in a foreground run; children then start with the default action.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
