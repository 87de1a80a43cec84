"""Builders: turn a Phi checkpoint into quantized artifacts with manifests.

May import ``phi_get.manifests``; never ``phi_get.resolver`` or
``phi_get.registry``.  Model libraries (torch, transformers, onnx,
llama_cpp, ...) are imported inside the functions that need them.
"""
