"""Plumbing every wing uses: atomic file writes and the cache folder (:mod:`.files`), progress
bars, precision and devices, and the process runtime (devices, DDP, versions).
"""
