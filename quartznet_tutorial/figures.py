"""Moved: the docs' figures and tables now live in :mod:`quartznet_tutorial.tutorial`.

Tables in :mod:`~quartznet_tutorial.tutorial.tables`, diagrams in
:mod:`~quartznet_tutorial.tutorial.diagrams`, plots in :mod:`~quartznet_tutorial.tutorial.plots`.
This module re-exports their names so that ``quartznet_tutorial.figures`` keeps working.
"""

from .tutorial.diagrams import COLORS, draw_architecture, draw_squeeze_excite
from .tutorial.plots import audio_table, plot_features, plot_learning_curves, plot_waveforms
from .tutorial.tables import (
    ParamRow,
    block_names,
    markdown_table,
    parameter_markdown,
    parameter_table,
    reported_params,
    reported_rounding,
    summary,
)

__all__ = [
    "COLORS",
    "ParamRow",
    "audio_table",
    "block_names",
    "draw_architecture",
    "draw_squeeze_excite",
    "markdown_table",
    "parameter_markdown",
    "parameter_table",
    "plot_features",
    "plot_learning_curves",
    "plot_waveforms",
    "reported_params",
    "reported_rounding",
    "summary",
]
