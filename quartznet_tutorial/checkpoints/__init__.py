"""Trained models on disk: our checkpoints, NeMo ``.nemo`` archives, the shipped models, and
:func:`~quartznet_tutorial.checkpoints.loading.load_classifier` above them all.
"""
