"""Where clips come from: Google Speech Commands (:mod:`.speech_commands`), its 12-class task,
subsets, the training pipeline, the bundled real clips and noisy copies of a test set. A new
corpus is one module here.
"""
