"""Trust: per-edge features, the fused and calibrated trust model, and the pruning threshold with a guarantee.

Every error of this subpackage is a :class:`TrustError`.
"""

from __future__ import annotations

from trusted_scene_graph.errors import TsgError


class TrustError(TsgError):
    """A trust model, feature table or threshold request that cannot be used as given."""


__all__ = ["TrustError"]
