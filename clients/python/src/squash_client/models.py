"""Typed views of the service's JSON answers, and the search options a request may carry.

Parsing is lenient about additions: fields the client does not know are ignored (and kept in
the ``stats`` dictionaries), so a newer service does not break an older client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class SearchOptions:
    """Tuning knobs of a query; ``None`` leaves a knob at the service's default.

    Attributes:
        exact: return the exact top-k (scan every row of every partition with matches).
        centroid_factor: the query's neighbourhood: the rows of the fine clusters whose
            centroid distance is within this factor of the nearest cluster's (>= 1).
        probe_rows: probe at least this many rows that may match the filter (>= 1).
        min_partitions: probe at least this many partitions.
        max_partitions: probe at most this many partitions.
        rerank_factor: candidates re-ranked exactly per partition = ``k * rerank_factor``.
        hamming_keep: share of candidates kept by the sign-code pre-filter, in (0, 1].
    """

    exact: bool = False
    centroid_factor: Optional[float] = None
    probe_rows: Optional[int] = None
    min_partitions: Optional[int] = None
    max_partitions: Optional[int] = None
    rerank_factor: Optional[int] = None
    hamming_keep: Optional[float] = None

    def to_json(self) -> Dict[str, Any]:
        """Returns the options as the request body carries them (unset knobs left out)."""
        body: Dict[str, Any] = {}
        if self.exact:
            body["exact"] = True
        for name in (
            "centroid_factor",
            "probe_rows",
            "min_partitions",
            "max_partitions",
            "rerank_factor",
            "hamming_keep",
        ):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


@dataclass(frozen=True)
class Hit:
    """One neighbour: its external id, its distance (smaller is closer) and, when asked for,
    its attributes (categorical values as strings)."""

    id: int
    distance: float
    attributes: Optional[Dict[str, Any]] = None

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "Hit":
        """Returns the hit described by one element of a response's ``hits``."""
        attributes = body.get("attributes")
        return cls(
            id=int(body["id"]),
            distance=float(body["distance"]),
            attributes=dict(attributes) if isinstance(attributes, dict) else None,
        )


@dataclass
class QueryResult:
    """The answer to one query.

    Attributes:
        hits: neighbours, best first.
        partial: true when some partitions the query needed could not be searched (only
            possible without ``require_complete``).
        missing_partitions: those partitions.
        stats: the service's statistics as a dictionary (``partitions_probed``,
            ``partitions_total``, ``estimated_matches``, ``scan`` and, for a single query,
            ``execution`` with timings, invocation counts and the write-log position the
            answer reflects, ``token``).
    """

    hits: List[Hit]
    partial: bool = False
    missing_partitions: List[int] = field(default_factory=list)
    stats: Dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> List[int]:
        """The ids of the hits, best first."""
        return [hit.id for hit in self.hits]

    @property
    def distances(self) -> List[float]:
        """The distances of the hits, best first."""
        return [hit.distance for hit in self.hits]

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "QueryResult":
        """Returns the result described by a query response body."""
        return cls(
            hits=[Hit.from_json(hit) for hit in body["hits"]],
            partial=bool(body.get("partial", False)),
            missing_partitions=[int(p) for p in body.get("missing_partitions") or []],
            stats=dict(body.get("stats") or {}),
        )


@dataclass
class BatchResult:
    """The answer to a batch of queries.

    Attributes:
        results: one :class:`QueryResult` per query, in request order.
        partial: true when any query's answer is partial.
        stats: how the batch was executed, as a dictionary (``request_id``, ``invocations``,
            ``total_ms``, ``token``, ``workers``, ...).
    """

    results: List[QueryResult]
    partial: bool = False
    stats: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, position: int) -> QueryResult:
        return self.results[position]

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "BatchResult":
        """Returns the result described by a batch response body."""
        results = [QueryResult.from_json(result) for result in body["results"]]
        return cls(
            results=results,
            partial=bool(body.get("partial", any(r.partial for r in results))),
            stats=dict(body.get("stats") or {}),
        )


@dataclass(frozen=True)
class AttributeColumn:
    """One attribute column of an index: name, kind (``integer``, ``float`` or
    ``categorical``) and, for a categorical column, its number of distinct values."""

    name: str
    kind: str
    num_categories: Optional[int] = None


@dataclass
class IndexSummary:
    """What ``GET /v1/indexes/{index}`` answers.

    Attributes:
        name: index name.
        index_version: the version being served.
        created_unix_s: build time, seconds since the Unix epoch.
        metric: ``l2``, ``cosine`` or ``ip``.
        dim: vector dimension.
        num_vectors: vectors indexed.
        num_partitions: partitions.
        total_bytes: bytes of all the index's objects.
        bits_per_dim: quantization bits per dimension.
        attributes: the attribute columns filters may use.
        raw: the whole response body, fields unknown to this client included.
    """

    name: str
    index_version: str
    created_unix_s: int
    metric: str
    dim: int
    num_vectors: int
    num_partitions: int
    total_bytes: int
    bits_per_dim: float
    attributes: List[AttributeColumn]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "IndexSummary":
        """Returns the summary described by a describe response body."""
        return cls(
            name=str(body["name"]),
            index_version=str(body.get("index_version", "")),
            created_unix_s=int(body.get("created_unix_s", 0)),
            metric=str(body["metric"]),
            dim=int(body["dim"]),
            num_vectors=int(body.get("num_vectors", 0)),
            num_partitions=int(body.get("num_partitions", 0)),
            total_bytes=int(body.get("total_bytes", 0)),
            bits_per_dim=float(body.get("bits_per_dim", 0.0)),
            attributes=[
                AttributeColumn(
                    name=str(column["name"]),
                    kind=str(column["kind"]),
                    num_categories=column.get("num_categories"),
                )
                for column in body.get("attributes") or []
            ],
            raw=dict(body),
        )


@dataclass(frozen=True)
class WriteResult:
    """The answer to an upsert or delete: where in the index's write log the write landed.

    Attributes:
        token: the write's position in the log. A query or fetch that passes
            ``min_token=token`` sees the write; later writes have larger tokens.
        upserted: rows inserted or replaced.
        deleted_ids: ids named for deletion.
        deleted_by_filter: whether the write deletes by filter.
    """

    token: int
    upserted: int = 0
    deleted_ids: int = 0
    deleted_by_filter: bool = False

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "WriteResult":
        """Returns the result described by an upsert or delete response body."""
        return cls(
            token=int(body["token"]),
            upserted=int(body.get("upserted", 0)),
            deleted_ids=int(body.get("deleted_ids", 0)),
            deleted_by_filter=bool(body.get("deleted_by_filter", False)),
        )


@dataclass(frozen=True)
class FetchedRow:
    """One fetched row: its id, its attribute values by column name (categorical values as
    strings) and, when asked for, its vector as stored (unit length for cosine indexes)."""

    id: int
    attributes: Dict[str, Any]
    vector: Optional[List[float]] = None

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "FetchedRow":
        """Returns the row described by one element of a fetch response's ``rows``."""
        vector = body.get("vector")
        attributes = body.get("attributes")
        return cls(
            id=int(body["id"]),
            attributes=dict(attributes) if isinstance(attributes, dict) else {},
            vector=[float(v) for v in vector] if vector is not None else None,
        )


@dataclass
class FetchResult:
    """The answer to a fetch.

    Attributes:
        rows: the rows found, in the order their ids were asked for.
        missing: the ids that name no live row (never written, or deleted).
        token: the write-log position the answer reflects.
    """

    rows: List[FetchedRow]
    missing: List[int] = field(default_factory=list)
    token: int = 0

    @property
    def ids(self) -> List[int]:
        """The ids of the rows found, in request order."""
        return [row.id for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> FetchedRow:
        return self.rows[position]

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "FetchResult":
        """Returns the result described by a fetch response body."""
        return cls(
            rows=[FetchedRow.from_json(row) for row in body["rows"]],
            missing=[int(i) for i in body.get("missing") or []],
            token=int(body.get("token", 0)),
        )
