"""Moved: the tables and plots of ``benchmarks/results/*.json`` live in
:mod:`quartznet_tutorial.tutorial.performance`, which the Performance page imports.

This module re-exports its names for the scripts here, e.g.
``python -c "import report; print(report.train_table(report.latest(report.load(), 'cpu')))"``.
"""

from quartznet_tutorial.tutorial.performance import *  # noqa: F403
from quartznet_tutorial.tutorial.performance import __all__  # noqa: F401
