"""The root of the package's error classes.

Every subpackage defines one error class derived from :class:`TsgError`, so callers (ROS callbacks, the CLI)
can report any expected failure with one ``except TsgError`` and let programming errors surface.
"""


class TsgError(Exception):
    """An expected failure caused by bad input, configuration or environment, with a message naming the value."""
