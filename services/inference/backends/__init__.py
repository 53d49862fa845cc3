"""Encoder runtimes behind one interface: ``torch`` (CPU/CUDA), ``onnx`` (ONNX Runtime CPU, optional int8)
and ``vllm`` (decoder students on GPU). Heavy libraries are imported only by the backend in use."""

from distillery_services.inference.backends.base import EncoderBackend, make_encoder

__all__ = ["EncoderBackend", "make_encoder"]
