"""Deployment: the ONNX export with the front end inside (:mod:`.onnx_export`), int8
quantisation (:mod:`.quantize`) and the ONNX Runtime wrapper both use (:mod:`.session`).
"""
