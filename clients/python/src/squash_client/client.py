"""The HTTP client: builds request bodies, checks what can be checked locally, sends with
``urllib.request`` and turns answers into results or typed errors.

It has no dependencies. Vectors may be lists, tuples, any iterable of numbers, or objects with
``tolist()`` (NumPy arrays); NumPy itself is never imported.
"""

from __future__ import annotations

import http.client
import json
import math
import operator
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import __version__
from .errors import ServerError, TransportError, Unavailable, error_from_response
from .models import BatchResult, FetchResult, IndexSummary, QueryResult, SearchOptions, WriteResult

Filter = Mapping[str, Any]
# What parsing a body of the wrong shape raises (a missing key, a string where a list belongs).
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)
Options = Union[SearchOptions, Mapping[str, Any]]
# The most rows one upsert may carry, and ids one delete or fetch may name (the service's limit).
MAX_WRITE_ROWS = 10_000
_ROW_KEYS = ("id", "vector", "attributes")


def _vector_to_list(vector: Any, where: str) -> List[float]:
    """Returns ``vector`` as a list of finite floats, or raises naming the bad position."""
    if isinstance(vector, (str, bytes, Mapping)):
        raise TypeError(f"{where} must be a sequence of numbers, got {type(vector).__name__}")
    if hasattr(vector, "tolist"):
        vector = vector.tolist()
    if not isinstance(vector, Iterable):
        raise TypeError(f"{where} must be a sequence of numbers, got {type(vector).__name__}")
    components: List[float] = []
    for position, value in enumerate(vector):
        if isinstance(value, bool) or isinstance(value, (str, bytes)):
            raise TypeError(f"{where}[{position}] must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{where}[{position}] must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(
                f"{where}[{position}] must be a finite number (NaN and infinity are not"
                f" allowed), got {number}"
            )
        components.append(number)
    if not components:
        raise ValueError(f"{where} must have at least one component")
    return components


def _check_k(k: Any) -> int:
    # operator.index accepts ints and NumPy integers, and refuses floats such as 10.0.
    try:
        if isinstance(k, bool):
            raise TypeError
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an integer, got {k!r}") from None
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    return k


def _check_id(value: Any, where: str) -> int:
    """Returns ``value`` as an id (an unsigned 64-bit integer), or raises naming ``where``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{where} must be an integer id, got {value!r}") from None
    if not 0 <= number < 2**64:
        raise ValueError(f"{where} must be between 0 and 2^64 - 1, got {number}")
    return number


def _check_ids(ids: Any, where: str, may_be_empty: bool) -> List[int]:
    """Returns ``ids`` as a list of distinct ids, at most :data:`MAX_WRITE_ROWS` of them."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Iterable):
        raise TypeError(f"{where} must be a sequence of integer ids, got {type(ids).__name__}")
    checked = [_check_id(value, f"{where}[{position}]") for position, value in enumerate(ids)]
    _check_count(where, len(checked), may_be_empty)
    first_of: Dict[int, int] = {}
    for position, value in enumerate(checked):
        first = first_of.setdefault(value, position)
        if first != position:
            raise ValueError(
                f"{where}[{position}]: id {value} appears twice (positions {first} and {position})"
            )
    return checked


def _check_count(where: str, count: int, may_be_empty: bool) -> None:
    if (count == 0 and not may_be_empty) or count > MAX_WRITE_ROWS:
        raise ValueError(
            f"{where} must hold between {0 if may_be_empty else 1} and {MAX_WRITE_ROWS} entries"
            f" per call, got {count}; split larger loads into several calls"
        )


def _check_min_token(min_token: Any, name: str = "min_token") -> Optional[int]:
    if min_token is None:
        return None
    try:
        if isinstance(min_token, bool):
            raise TypeError
        token = operator.index(min_token)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {min_token!r}") from None
    if token < 0:
        raise ValueError(f"{name} must be >= 0, got {token}")
    return token


def _plain_value(value: Any) -> Any:
    """Returns an attribute value JSON can encode: NumPy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _row_to_json(row: Any, where: str) -> Dict[str, Any]:
    """Returns one upsert row as the request body carries it.

    A row is a mapping with ``id``, ``vector`` and ``attributes`` (which may be left out when
    the index has no attribute columns), or a tuple ``(id, vector)`` or
    ``(id, vector, attributes)``.
    """
    if isinstance(row, Mapping):
        unknown = [key for key in row if key not in _ROW_KEYS]
        if unknown:
            raise ValueError(
                f"{where} has the unknown key {unknown[0]!r} (a row has id, vector, attributes)"
            )
        for key in ("id", "vector"):
            if key not in row:
                raise ValueError(f"{where} has no {key!r}")
        row_id, vector, attributes = row["id"], row["vector"], row.get("attributes")
    elif isinstance(row, (tuple, list)) and len(row) in (2, 3):
        row_id, vector = row[0], row[1]
        attributes = row[2] if len(row) == 3 else None
    else:
        raise TypeError(
            f"{where} must be a mapping with id, vector and attributes, or a tuple"
            f" (id, vector[, attributes]), got {type(row).__name__}"
        )
    body: Dict[str, Any] = {
        "id": _check_id(row_id, f"{where}.id"),
        "vector": _vector_to_list(vector, f"{where}.vector"),
    }
    if attributes is not None:
        if not isinstance(attributes, Mapping):
            raise TypeError(
                f"{where}.attributes must be a mapping of column names to values, got"
                f" {type(attributes).__name__}"
            )
        body["attributes"] = {str(name): _plain_value(v) for name, v in attributes.items()}
    return body


def _options_to_json(options: Optional[Options]) -> Optional[Dict[str, Any]]:
    if options is None:
        return None
    if isinstance(options, SearchOptions):
        return options.to_json()
    if isinstance(options, Mapping):
        return dict(options)
    raise TypeError(f"options must be a SearchOptions or a mapping, got {type(options).__name__}")


def _check_filter(filter: Any, where: str) -> Optional[Dict[str, Any]]:
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise TypeError(f"{where} must be a mapping (a JSON object), got {type(filter).__name__}")
    return dict(filter)


class Client:
    """A client of one squash deployment.

    Args:
        base_url: the API's root, e.g. ``https://abc.lambda-url.eu-west-1.on.aws`` or
            ``http://127.0.0.1:9000/lambda-url/coordinator``; routes are appended to it.
        timeout: seconds to wait for each HTTP exchange.
        headers: extra headers sent with every request (an API key, a bearer token).
        retries: how many times to retry a request answered with 503 (``Unavailable``);
            0 turns retrying off.
        max_retry_wait_s: the longest wait before one retry, whatever the service suggests.

    The client holds no connection, so one instance may be shared between threads.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        headers: Optional[Mapping[str, str]] = None,
        retries: int = 0,
        max_retry_wait_s: float = 10.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    # Routes.

    def health(self) -> Dict[str, Any]:
        """Returns the health document (``{"status": "ok"}``) or raises."""
        return self._request("GET", "/health")

    def list_indexes(self) -> List[str]:
        """Returns the names of the indexes the deployment serves, sorted."""
        body = self._request("GET", "/v1/indexes")
        try:
            return [str(name) for name in body["indexes"]]
        except _SHAPE_ERRORS as error:
            raise self._bad_response(body, error) from None

    def describe(self, index: str) -> IndexSummary:
        """Returns the summary of ``index``: metric, dimension, sizes, attribute columns."""
        body = self._request("GET", f"/v1/indexes/{self._quote(index)}")
        try:
            return IndexSummary.from_json(body)
        except _SHAPE_ERRORS as error:
            raise self._bad_response(body, error) from None

    def query(
        self,
        index: str,
        vector: Any,
        k: int = 10,
        filter: Optional[Filter] = None,
        include_attributes: bool = False,
        options: Optional[Options] = None,
        require_complete: bool = False,
        branching: Optional[int] = None,
        min_token: Optional[int] = None,
        as_of: Optional[int] = None,
    ) -> QueryResult:
        """Returns the ``k`` nearest neighbours of ``vector`` in ``index``.

        Args:
            vector: the query vector (list, tuple, 1-d NumPy array, any iterable of numbers).
            k: hits wanted (1 to 10,000).
            filter: a Mongo-style filter on attributes, e.g.
                ``{"freq_rank": {"$lt": 5000}, "initial_class": {"$in": ["a", "b"]}}``.
            include_attributes: return each hit's attributes.
            options: a :class:`SearchOptions` or the equivalent mapping.
            require_complete: raise :class:`Unavailable` rather than answer with partitions
                missing.
            branching: children per node of the worker tree for this request (tuning only).
            min_token: read at least this write's token (:attr:`WriteResult.token`): the
                answer then reflects that write. A token the index's write log has not
                reached raises :class:`InvalidRequest` with ``field == "min_token"``.
            as_of: answer as the index stood at this write's token (time travel): back to
                the oldest version the index still keeps (a day by default). A token out of
                reach raises :class:`InvalidRequest` with ``field == "as_of"``.
        """
        token = _check_min_token(min_token)
        as_of_token = _check_min_token(as_of, "as_of")
        body = self._query_body(
            _vector_to_list(vector, "vector"),
            _check_k(k),
            _check_filter(filter, "filter"),
            include_attributes,
            _options_to_json(options),
        )
        if require_complete:
            body["require_complete"] = True
        if branching is not None:
            body["branching"] = branching
        if token is not None:
            body["min_token"] = token
        if as_of_token is not None:
            body["as_of"] = as_of_token
        answer = self._request("POST", f"/v1/indexes/{self._quote(index)}/query", body)
        try:
            return QueryResult.from_json(answer)
        except _SHAPE_ERRORS as error:
            raise self._bad_response(answer, error) from None

    def query_batch(
        self,
        index: str,
        vectors: Any,
        k: int = 10,
        filters: Union[None, Filter, Sequence[Optional[Filter]]] = None,
        include_attributes: bool = False,
        options: Optional[Options] = None,
        require_complete: bool = False,
        branching: Optional[int] = None,
        min_token: Optional[int] = None,
        as_of: Optional[int] = None,
    ) -> BatchResult:
        """Runs several queries in one request (the workers load each partition once).

        Args:
            vectors: the query vectors: a 2-d NumPy array, or a sequence of vectors.
            k: hits wanted per query.
            filters: ``None``; one mapping applied to every query; or a sequence with one
                filter (or ``None``) per vector.
            include_attributes, options, require_complete, branching, min_token, as_of: as
                for :meth:`query`, applied to every query.
        """
        token = _check_min_token(min_token)
        as_of_token = _check_min_token(as_of, "as_of")
        rows = vectors.tolist() if hasattr(vectors, "tolist") else vectors
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
            kind = type(vectors).__name__
            raise TypeError(f"vectors must be a sequence of vectors or a 2-d array, got {kind}")
        rows = list(rows)
        if not rows:
            raise ValueError("vectors must hold at least one vector")
        parsed = []
        for position, row in enumerate(rows):
            if isinstance(row, (int, float)):
                raise TypeError(
                    "vectors must be a sequence of vectors or a 2-d array, not a single vector"
                    " (use query() for one vector)"
                )
            parsed.append(_vector_to_list(row, f"vectors[{position}]"))
        for position, row in enumerate(parsed):
            if len(row) != len(parsed[0]):
                raise ValueError(
                    f"vectors[{position}] has {len(row)} components, vectors[0] has"
                    f" {len(parsed[0])}"
                )
        if filters is None or isinstance(filters, Mapping):
            shared_filter = _check_filter(filters, "filters")
            per_query = [shared_filter] * len(parsed)
        elif isinstance(filters, (str, bytes)) or not isinstance(filters, Iterable):
            raise TypeError(
                "filters must be None, a mapping, or a sequence of mappings, got"
                f" {type(filters).__name__}"
            )
        else:
            per_query = [
                _check_filter(one, f"filters[{position}]") for position, one in enumerate(filters)
            ]
            if len(per_query) != len(parsed):
                raise ValueError(f"filters has {len(per_query)} entries for {len(parsed)} vectors")
        k = _check_k(k)
        options_json = _options_to_json(options)
        body: Dict[str, Any] = {
            "queries": [
                self._query_body(vector, k, one_filter, include_attributes, options_json)
                for vector, one_filter in zip(parsed, per_query)
            ]
        }
        if require_complete:
            body["require_complete"] = True
        if branching is not None:
            body["branching"] = branching
        if token is not None:
            body["min_token"] = token
        if as_of_token is not None:
            body["as_of"] = as_of_token
        answer = self._request("POST", f"/v1/indexes/{self._quote(index)}/query-batch", body)
        try:
            return BatchResult.from_json(answer)
        except _SHAPE_ERRORS as error:
            raise self._bad_response(answer, error) from None

    def upsert(self, index: str, rows: Iterable[Any]) -> WriteResult:
        """Inserts rows into ``index``, or replaces the rows with their ids.

        Returns once the write is committed to the index's write log; from then on every query
        and fetch sees it, and one that passes ``min_token=result.token`` is sure to. Sending
        the same upsert again (as ``retries`` does after a 503) is safe: it leaves the same
        rows.

        Args:
            rows: 1 to 10,000 rows, each id at most once. A row is a mapping
                ``{"id": int, "vector": [...], "attributes": {"column": value, ...}}`` with a
                value for every attribute column of the index (``attributes`` may be left out
                when it has none), or a tuple ``(id, vector)`` or ``(id, vector, attributes)``.
                Vectors are as for :meth:`query`.
        """
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
            raise TypeError(f"rows must be a sequence of rows, got {type(rows).__name__}")
        body_rows = [_row_to_json(row, f"rows[{position}]") for position, row in enumerate(rows)]
        _check_count("rows", len(body_rows), may_be_empty=False)
        first_of: Dict[int, int] = {}
        for position, row in enumerate(body_rows):
            first = first_of.setdefault(row["id"], position)
            if first != position:
                raise ValueError(
                    f"rows[{position}].id: id {row['id']} appears twice (rows {first} and"
                    f" {position}); send each id once"
                )
        return self._write(index, "upsert", {"rows": body_rows})

    def delete(
        self,
        index: str,
        ids: Optional[Iterable[int]] = None,
        filter: Optional[Filter] = None,
    ) -> WriteResult:
        """Deletes rows of ``index`` by id, by filter, or both.

        Returns once the write is committed, as :meth:`upsert` does.

        Args:
            ids: ids to delete, at most 10,000 (ids no row has are no error).
            filter: delete every row that matches this filter (as for :meth:`query`) when the
                delete commits; rows written later are not affected. A filter that matches
                every row (``{}``) is refused: to empty an index, build it again.
        """
        body: Dict[str, Any] = {}
        if ids is not None:
            checked = _check_ids(ids, "ids", may_be_empty=True)
            if checked:
                body["ids"] = checked
        checked_filter = _check_filter(filter, "filter")
        if checked_filter is not None:
            body["filter"] = checked_filter
        if not body:
            raise ValueError("name ids to delete, a filter, or both")
        return self._write(index, "delete", body)

    def fetch(
        self,
        index: str,
        ids: Iterable[int],
        include_vectors: bool = True,
        min_token: Optional[int] = None,
    ) -> FetchResult:
        """Returns the live rows of ``index`` with these ids, in the order asked for.

        Ids no live row has (never written, or deleted) are listed in ``missing``.

        Args:
            ids: 1 to 10,000 ids, each at most once.
            include_vectors: return each row's vector.
            min_token: read at least this write's token, as for :meth:`query`.
        """
        body: Dict[str, Any] = {"ids": _check_ids(ids, "ids", may_be_empty=False)}
        if not include_vectors:
            body["include_vectors"] = False
        token = _check_min_token(min_token)
        if token is not None:
            body["min_token"] = token
        answer = self._request("POST", f"/v1/indexes/{self._quote(index)}/fetch", body)
        try:
            return FetchResult.from_json(answer)
        except _SHAPE_ERRORS as error:
            raise self._bad_response(answer, error) from None

    # Plumbing.

    def _write(self, index: str, operation: str, body: Dict[str, Any]) -> WriteResult:
        answer = self._request("POST", f"/v1/indexes/{self._quote(index)}/{operation}", body)
        try:
            return WriteResult.from_json(answer)
        except _SHAPE_ERRORS as error:
            raise self._bad_response(answer, error) from None

    @staticmethod
    def _query_body(
        vector: List[float],
        k: int,
        filter: Optional[Dict[str, Any]],
        include_attributes: bool,
        options: Optional[Dict[str, Any]],
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {"vector": vector, "k": k}
        if filter is not None:
            body["filter"] = filter
        if include_attributes:
            body["include_attributes"] = True
        if options:
            body["options"] = options
        return body

    @staticmethod
    def _quote(index: str) -> str:
        if not isinstance(index, str) or not index:
            raise ValueError(f"index must be a non-empty string, got {index!r}")
        return urllib.parse.quote(index, safe="")

    @staticmethod
    def _bad_response(body: Any, error: Exception) -> ServerError:
        return ServerError(
            f"the response does not have the expected shape ({error!r})",
            status=200,
            code="bad_response",
            body=body,
        )

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None
        if body is not None:
            # allow_nan=False: the vectors were checked, but a filter may still hold a NaN.
            try:
                data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
            except ValueError as error:
                raise ValueError(f"the request cannot be encoded as JSON: {error}") from None
        attempt = 0
        while True:
            try:
                return self._send_once(method, path, data)
            except Unavailable as error:
                if attempt >= self.retries:
                    raise
                wait_s = error.retry_after_s if error.retry_after_s is not None else 1.0
                time.sleep(max(0.0, min(wait_s, self.max_retry_wait_s)))
                attempt += 1

    def _send_once(self, method: str, path: str, data: Optional[bytes]) -> Any:
        headers = {
            "accept": "application/json",
            "user-agent": f"squash-client/{__version__}",
        }
        if data is not None:
            headers["content-type"] = "application/json"
        headers.update(self.headers)
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method=method
        )
        url = f"{method} {self.base_url}{path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
                raw = response.read()
                response_headers = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            status = error.code
            try:
                raw = error.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            response_headers = {k.lower(): v for k, v in (error.headers or {}).items()}
            error.close()
        except urllib.error.URLError as error:
            code = "timeout" if isinstance(error.reason, socket.timeout) else "transport"
            raise TransportError(f"{url}: {error.reason}", code=code) from error
        except (socket.timeout, TimeoutError) as error:
            raise TransportError(
                f"{url}: timed out after {self.timeout} s", code="timeout"
            ) from error
        except (OSError, http.client.HTTPException) as error:
            raise TransportError(f"{url}: {error!r}") from error
        text = raw.decode("utf-8", errors="replace")
        try:
            decoded = json.loads(text) if text.strip() else None
        except ValueError:
            decoded = None
        if 200 <= status < 300:
            if decoded is None:
                raise ServerError(
                    f"{url}: the response is not JSON: {text[:200]!r}",
                    status=status,
                    code="bad_response",
                    request_id=response_headers.get("x-request-id"),
                )
            return decoded
        raise error_from_response(status, decoded, text, response_headers)
