"""One validated parameter schema shared by the ROS nodes, the launch files and the CLI."""

from trusted_scene_graph.config.schema import (
    SCHEMA,
    Config,
    ConfigError,
    ParamSpec,
    load_config,
    load_config_file,
    render_parameter_file,
)

__all__ = ["SCHEMA", "Config", "ConfigError", "ParamSpec", "load_config", "load_config_file", "render_parameter_file"]
