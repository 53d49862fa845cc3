"""Generated protobuf and gRPC stubs for distillery.v1 (see docs/protos.md; do not edit)."""
