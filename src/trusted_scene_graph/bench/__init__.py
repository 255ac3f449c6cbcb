"""Benchmarks: each writes a JSON of ratios measured side by side in one run (`tsg bench ...`)."""

from trusted_scene_graph.errors import TsgError


class BenchError(TsgError):
    """A bench that cannot run as asked (refused before any timing) or could not measure."""
