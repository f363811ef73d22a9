"""profiles: a local, event-driven computed-trait and prediction engine for Segment events.

The Python API: :class:`engine.project.Project` does everything the CLI does.
"""

__version__ = "0.1.0"
