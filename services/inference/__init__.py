"""The inference (scoring) service: promoted students behind gRPC and Kafka, with dynamic batching,
a per-filter cascade, calibrated scores with conformal intervals and an ``uncertain`` flag.

Folders by concern: ``config`` (settings), ``batcher`` (dynamic batching + backpressure), ``models``
(loading promoted models, hot reload), ``backends/`` (encoder runtimes: torch, onnx, vllm), ``engine``
(cascade, post-processing; knows nothing of gRPC or Kafka), ``servicer`` (gRPC), ``stage`` (Kafka).
"""
