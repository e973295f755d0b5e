"""Why the GCS refuses a request, as exceptions its tables raise and its server maps to gRPC codes.

These never leave the GCS process: the server turns each into a gRPC status (the class says
which) with the message as details, and clients raise their own errors from that status. They
live here rather than in `rayops.exceptions` because user code never sees them.
"""

from __future__ import annotations

__all__ = ["AlreadyExists", "FailedPrecondition", "GcsRequestError", "InvalidArgument"]


class GcsRequestError(ValueError):
    """A request the GCS refuses; `status_name` is the gRPC status code's name."""

    status_name = "INVALID_ARGUMENT"


class InvalidArgument(GcsRequestError):
    """A field of the request is malformed (e.g. a node id that is not hex)."""

    status_name = "INVALID_ARGUMENT"


class AlreadyExists(GcsRequestError):
    """The request would create a record that already exists."""

    status_name = "ALREADY_EXISTS"


class FailedPrecondition(GcsRequestError):
    """The record is in a state that forbids the request (e.g. re-registering a DEAD node)."""

    status_name = "FAILED_PRECONDITION"
