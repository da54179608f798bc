"""Moved: the ablation table lives in :mod:`quartznet_tutorial.tutorial.ablation`.

This module re-exports its names so that ``quartznet_tutorial.ablation`` keeps working.
"""

from .tutorial.ablation import *  # noqa: F403
from .tutorial.ablation import __all__  # noqa: F401
