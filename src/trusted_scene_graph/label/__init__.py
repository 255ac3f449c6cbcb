"""Dense-reward labelling of recorded datasets (``tsg label``), one work item (a bag, an episode) at a time.

:mod:`trusted_scene_graph.label.engine` runs the items resumably on local processes or a Ray cluster and commits
each item's output atomically, so an interrupted run is finished by running it again.
"""

from trusted_scene_graph.errors import TsgError


class LabelError(TsgError):
    """A labelling run cannot proceed as asked (bad work item, unknown engine, an item that failed to label)."""


from trusted_scene_graph.label.engine import (  # noqa: E402  (engine.py imports LabelError from here)
    ENGINES,
    ItemDone,
    RunSummary,
    WorkItem,
    run_items,
)

__all__ = ["ENGINES", "ItemDone", "LabelError", "RunSummary", "WorkItem", "run_items"]
