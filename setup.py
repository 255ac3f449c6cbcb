"""ament_python glue for colcon on ROS installs; the package metadata lives in pyproject.toml."""

from glob import glob

from setuptools import setup

PACKAGE = "trusted_scene_graph"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
)
