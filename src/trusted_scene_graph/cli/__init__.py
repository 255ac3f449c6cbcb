"""``tsg``: the command line for offline work (demo, bringup, bench; eval, train and label as they land).

Each command is a typed function returning an exit code, testable by calling it. ROS-dependent modules are
imported inside the commands, so ``tsg --help`` works before the workspace is built.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from trusted_scene_graph.config.schema import Config, ConfigError, load_config_file, render_parameter_file
from trusted_scene_graph.errors import TsgError

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "config" / "default.yaml"

# Exit codes: 0 success, 1 the command ran but its result is a failure (e.g. no graph arrived), 2 bad input.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class MissingInterfacesError(TsgError):
    """The colcon-built message package is not importable."""


def require_interfaces() -> None:
    """Fail with instructions when ``trusted_scene_graph_msgs`` has not been built or sourced."""
    try:
        import trusted_scene_graph_msgs.msg  # noqa: F401
    except ImportError as exc:
        raise MissingInterfacesError(
            "trusted_scene_graph_msgs is not importable: run `make setup`, then `source scripts/env.sh` "
            f"(or source ros2_ws/install/setup.bash on a ROS install) ({exc})"
        ) from exc


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``name=value`` pairs, values parsed as YAML (``trust.threshold=0.7``, ``extrinsic.translation_m=[0,0,1]``)."""
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set expects name=value, got {pair!r}")
        overrides[name.strip()] = yaml.safe_load(value)
    return overrides


def load(config_path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """The config file (default: the repository's config/default.yaml, else the schema defaults) plus overrides."""
    if config_path is not None:
        config = load_config_file(config_path)
    else:
        config = load_config_file(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else Config()
    return config.with_overrides(parse_overrides(overrides)) if overrides else config


def cmd_bringup(
    config_path: Path | None, overrides: Sequence[str], autostart: bool | None, ros_args: Sequence[str]
) -> int:
    """Run the nodes in one process until Ctrl-C."""
    require_interfaces()
    from trusted_scene_graph.ros.bringup import run_bringup

    return run_bringup(load(config_path, overrides), autostart=autostart, ros_args=ros_args)


def cmd_config(config_path: Path | None, overrides: Sequence[str], out: Path | None) -> int:
    """Validate a config and print it (or write it to ``out``) as a commented ROS 2 parameter file."""
    text = render_parameter_file(load(config_path, overrides))
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
    return EXIT_OK


def cmd_demo(config_path: Path | None, overrides: Sequence[str], seconds: float, rate_hz: float, out: Path,
             width: int, height: int, seed: int, depth_encoding: str) -> int:
    """Publish a simulated Fetch pick-and-place into the bringup and report the graph and distances."""
    require_interfaces()
    from trusted_scene_graph.ros.demo import run_demo

    return run_demo(load(config_path, overrides), seconds=seconds, rate_hz=rate_hz, out_dir=out, width=width,
                    height=height, seed=seed, depth_encoding=depth_encoding)


def cmd_bench_service(config_path: Path | None, out: Path, calls: int, rate_hz: float) -> int:
    """QueryDistance latency against an echo service on the same executor, while frames flow."""
    require_interfaces()
    from trusted_scene_graph.bench.service import run_service_bench

    return run_service_bench(load(config_path), out_path=out, calls=calls, frame_rate_hz=rate_hz)


def cmd_bench_perception(config_path: Path | None, out: Path, repeats: int, detector_size: str,
                         detector_repeats: int) -> int:
    """Lifting + tracking + relations for 20 and 50 objects against one GroundingDINO forward pass."""
    from trusted_scene_graph.bench.perception import run_perception_bench

    return run_perception_bench(load(config_path), out_path=out, repeats=repeats, detector_size=detector_size,
                                detector_repeats=detector_repeats)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsg", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, default=None, help=f"parameter file (default: {DEFAULT_CONFIG})")
        sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                         help="override one parameter (repeatable)")

    bringup = commands.add_parser("bringup", help="run the scene-graph nodes in one process")
    with_config(bringup)
    bringup.add_argument("--no-autostart", dest="autostart", action="store_const", const=False, default=None,
                         help="leave lifecycle nodes unconfigured (drive them with a lifecycle manager)")
    bringup.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                         help="arguments passed to rclpy (remappings, log level)")

    config = commands.add_parser("config", help="validate a config and print it as a commented parameter file")
    with_config(config)
    config.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")

    demo = commands.add_parser("demo", help="simulated Fetch pick-and-place through the live ROS graph")
    with_config(demo)
    demo.add_argument("--seconds", type=float, default=10.0, help="how long to publish frames [s]")
    demo.add_argument("--rate", dest="rate_hz", type=float, default=8.0, help="frame rate [Hz]")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory")
    demo.add_argument("--width", type=int, default=640, help="image width [px]")
    demo.add_argument("--height", type=int, default=480, help="image height [px]")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed")
    demo.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1",
                      help="depth image encoding: 32FC1 metres or 16UC1 millimetres")

    bench = commands.add_parser("bench", help="benchmarks, each writing a JSON of side-by-side ratios")
    benches = bench.add_subparsers(dest="bench", required=True)
    service = benches.add_parser("service", help="QueryDistance latency vs an echo service")
    service.add_argument("--config", type=Path, default=None)
    service.add_argument("--out", type=Path, required=True, help="JSON output file")
    service.add_argument("--calls", type=int, default=2000, help="calls to each service")
    service.add_argument("--rate", dest="rate_hz", type=float, default=10.0, help="frame rate while measuring [Hz]")
    perception = benches.add_parser("perception", help="geometry after the detector vs one detector forward pass")
    perception.add_argument("--config", type=Path, default=None)
    perception.add_argument("--out", type=Path, required=True, help="JSON output file")
    perception.add_argument("--repeats", type=int, default=50, help="timed frames per object count")
    perception.add_argument("--detector-size", choices=("full", "tiny"), default="full",
                            help="'full': Swin-T + BERT-base GroundingDINO at 800x1066 (about 15 s per pass on 2 "
                                 "cores); 'tiny': a miniature one, to check the command quickly")
    perception.add_argument("--detector-repeats", type=int, default=1,
                            help="timed detector passes after one warm-up (the minimum is reported)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bringup":
            return cmd_bringup(args.config, args.overrides, args.autostart, args.ros_args)
        if args.command == "config":
            return cmd_config(args.config, args.overrides, args.out)
        if args.command == "demo":
            return cmd_demo(args.config, args.overrides, args.seconds, args.rate_hz, args.out, args.width,
                            args.height, args.seed, args.depth_encoding)
        if args.command == "bench" and args.bench == "service":
            return cmd_bench_service(args.config, args.out, args.calls, args.rate_hz)
        if args.command == "bench" and args.bench == "perception":
            return cmd_bench_perception(args.config, args.out, args.repeats, args.detector_size,
                                        args.detector_repeats)
    except TsgError as exc:
        print(f"tsg {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
