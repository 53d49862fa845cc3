"""gRPC plumbing shared by every service: server builder, interceptors, error mapping."""

from distillery.rpc.errors import handle_errors, item_error, status_for
from distillery.rpc.server import GrpcServer, ServiceBinding, run_until_signalled, write_ready_file

__all__ = ["GrpcServer", "ServiceBinding", "handle_errors", "item_error", "run_until_signalled", "status_for",
           "write_ready_file"]
