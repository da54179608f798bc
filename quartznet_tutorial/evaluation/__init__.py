"""Scoring classifiers: accuracy and confusion (:mod:`.accuracy`), the real clips with their
confidence intervals (:mod:`.real`), accuracy against noise (:mod:`.snr`) and the plots of
these results.
"""
