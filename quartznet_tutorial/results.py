"""Moved: the results tables live in :mod:`quartznet_tutorial.tutorial.results`.

This module re-exports its names so that ``quartznet_tutorial.results`` keeps working.
"""

from .tutorial.results import *  # noqa: F403
from .tutorial.results import __all__  # noqa: F401
