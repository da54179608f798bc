"""What the documentation site uses and the library does not: tables, diagrams, plots, the
notebooks' run profiles, and the results and benchmark files rendered as tables.

``import quartznet_tutorial`` never imports this subpackage; import its modules by name, e.g.
``from quartznet_tutorial.tutorial.plots import plot_learning_curves``.

- :mod:`~quartznet_tutorial.tutorial.tables`: parameter arithmetic and pipe tables.
- :mod:`~quartznet_tutorial.tutorial.diagrams`: the architecture and SE diagrams.
- :mod:`~quartznet_tutorial.tutorial.plots`: clips, features, learning curves, confusion.
- :mod:`~quartznet_tutorial.tutorial.profiles`: the ``smoke`` and ``full`` profiles.
- :mod:`~quartznet_tutorial.tutorial.training_pages`: the training notebooks' sections.
- :mod:`~quartznet_tutorial.tutorial.results`: the result files of ``results/``.
- :mod:`~quartznet_tutorial.tutorial.ablation`: the synthetic-to-real ablation table.
- :mod:`~quartznet_tutorial.tutorial.performance`: the benchmark files of
  ``benchmarks/results/``.
"""
