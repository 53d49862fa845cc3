"""The prefilter service: a declarative rule engine (engine.py) behind gRPC (servicer.py) and Kafka (stage.py)."""
