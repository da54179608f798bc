"""Compiled CPU kernels (``csrc/``) that the models' CPU fast paths and the augmentation call,
with an ATen fallback everywhere.
"""
