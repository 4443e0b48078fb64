"""Errors raised by the client.

Every error the service reports becomes a :class:`SquashError` subclass chosen by HTTP status;
failures to reach the service at all become :class:`TransportError`. Mistakes the client can
see before sending (a NaN in a vector, ``k`` below 1) raise ``ValueError`` or ``TypeError``
instead, so they never cost a request.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional


class SquashError(Exception):
    """An error reported by the service, or met while talking to it.

    Attributes:
        status: HTTP status code, or ``None`` when no response arrived.
        code: machine-readable code from the error body (``invalid_request``, ``not_found``,
            ``conflict``, ``incomplete``, ...), or one made up by the client when the body had
            none.
        message: human-readable explanation.
        field: the request field at fault (``vector``, ``k``, ``queries[2].filter``,
            ``rows[1].id``, ``min_token``, ...), when the service named one.
        request_id: the ``x-request-id`` response header, for matching server logs.
        body: the decoded error body (``None`` when it was not JSON).
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: str = "error",
        field: Optional[str] = None,
        request_id: Optional[str] = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        prefix = f"{self.status} {self.code}" if self.status is not None else self.code
        return f"{prefix}: {self.message}"


class InvalidRequest(SquashError):
    """The request was refused as malformed (HTTP 400, 405 or 413); retrying will not help."""


class NotFound(SquashError):
    """The index (or route) does not exist (HTTP 404)."""


class Conflict(SquashError):
    """A write lost to a concurrent change of the index, such as a build or compaction switching
    its manifest (HTTP 409); nothing was written, and sending the write again may succeed."""


class Unavailable(SquashError):
    """The service could not answer completely in time (HTTP 503); retrying later may succeed.

    Attributes:
        retry_after_s: seconds the service suggests waiting before a retry, when given.
        missing_partitions: partitions that could not be searched (for ``code == "incomplete"``).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: Optional[float] = None,
        missing_partitions: Optional[List[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s
        self.missing_partitions = list(missing_partitions or [])


class ServerError(SquashError):
    """The service failed (HTTP 500), or answered with a status or body the client cannot use."""


class TransportError(SquashError):
    """The service could not be reached, or the connection failed or timed out mid-request."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("code", "transport")
        super().__init__(message, **kwargs)


def _number_or_none(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def error_from_response(
    status: int,
    body: Any,
    raw_text: str,
    headers: Mapping[str, str],
) -> SquashError:
    """Returns the error for a non-2xx response.

    ``body`` is the decoded JSON body, or ``None`` when it was not JSON (a proxy's or load
    balancer's own error page, for instance); ``raw_text`` is then used as the message.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    if not isinstance(code, str) or not code:
        code = f"http_{status}"
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = raw_text.strip()[:500] or f"HTTP {status} with an empty body"
    field = error.get("field") if isinstance(error.get("field"), str) else None
    common = {
        "status": status,
        "code": code,
        "field": field,
        "request_id": headers.get("x-request-id"),
        "body": body,
    }
    if status in (400, 405, 413):
        return InvalidRequest(message, **common)
    if status == 404:
        return NotFound(message, **common)
    if status == 409:
        return Conflict(message, **common)
    if status == 503:
        retry_after_s = _number_or_none(error.get("retry_after_s"))
        if retry_after_s is None:
            try:
                retry_after_s = float(headers.get("retry-after", ""))
            except ValueError:
                retry_after_s = None
        missing = error.get("missing_partitions")
        missing_partitions = (
            [p for p in missing if isinstance(p, int)] if isinstance(missing, list) else []
        )
        return Unavailable(
            message,
            retry_after_s=retry_after_s,
            missing_partitions=missing_partitions,
            **common,
        )
    return ServerError(message, **common)
