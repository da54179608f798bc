"""Moved: the notebooks' profiles live in :mod:`quartznet_tutorial.tutorial.profiles`.

This module re-exports its names so that ``quartznet_tutorial.profiles`` keeps working.
"""

from .tutorial.profiles import *  # noqa: F403
from .tutorial.profiles import __all__  # noqa: F401
