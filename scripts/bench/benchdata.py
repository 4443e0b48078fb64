"""Benchmark data sets: reading vectors, attributes and workloads, evaluating predicates, scoring recall.

A data set is a folder with a `workloads.json` (see `../shared/data/README.md`): base and query
vectors in fvecs/bvecs, `base_attrs.csv`, and per workload the query ids, one predicate per
query and the exact ground truth. Recall is scored by distance, as `squash eval` scores it: a
returned id counts when its true distance to the query is at most the k-th ground-truth
distance (plus a float32 slack), each id once, and only when it passes the query's predicate.
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np

# Same slack as squash_core::eval (RECALL_RELATIVE_SLACK, RECALL_ABSOLUTE_SLACK).
RECALL_RELATIVE_SLACK = 1e-5
RECALL_ABSOLUTE_SLACK = 1e-5

# Ground-truth rows of the committed sample with fewer matches than k are padded with this id.
GT_PADDING_ID = -1


def read_vecs(path):
    """Reads an fvecs, bvecs or ivecs file (TEXMEX layout) into a 2-D array.

    The element type comes from the extension; every row must have the dimension of the first.
    """
    ext = os.path.splitext(path)[1]
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 4:
        raise ValueError(f"{path}: empty vector file")
    dim = int(raw[:4].view("<i4")[0])
    if dim <= 0:
        raise ValueError(f"{path}: bad dimension {dim}")
    if ext == ".bvecs":
        row_bytes, dtype = 4 + dim, np.uint8
    elif ext in (".fvecs", ".ivecs"):
        row_bytes, dtype = 4 + 4 * dim, ("<f4" if ext == ".fvecs" else "<i4")
    else:
        raise ValueError(f"{path}: unknown vector file extension '{ext}'")
    if raw.size % row_bytes:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of the row size {row_bytes}")
    rows = raw.reshape(-1, row_bytes)
    if np.any(rows[:, :4].copy().view("<i4")[:, 0] != dim):
        raise ValueError(f"{path}: rows of different dimensions")
    return np.ascontiguousarray(rows[:, 4:]).view(dtype)


def read_attributes(path):
    """Reads an attribute CSV (header line) into {column: numpy array}; integer columns stay integers."""
    import pyarrow.csv

    table = pyarrow.csv.read_csv(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


@dataclass
class Workload:
    """One workload of a data set, cut to the queries the benchmark runs."""

    name: str
    query_ids: np.ndarray
    predicates: list
    gt_ids: np.ndarray
    gt_dist: np.ndarray
    shared_predicate: bool = field(default=False)
    """True when every query of the workload has the same predicate (built once, like a fixed filter)."""


@dataclass
class Dataset:
    """A data set's vectors (float32), attributes and workloads."""

    name: str
    metric: str  # "ip" or "l2"
    base: np.ndarray
    queries: np.ndarray
    attrs: dict
    workloads: list

    @property
    def num_base(self):
        return self.base.shape[0]

    @property
    def dim(self):
        return self.base.shape[1]


def load_dataset(folder, max_queries=None, only_workloads=None):
    """Loads a data set folder; each workload keeps at most `max_queries` queries (the first ones)."""
    with open(os.path.join(folder, "workloads.json")) as f:
        spec = json.load(f)
    metric = spec["metric"]
    if metric not in ("ip", "l2"):
        raise ValueError(f"{folder}: unsupported metric '{metric}'")
    base = read_vecs(os.path.join(folder, spec.get("base_file", "base.fvecs")))
    queries = read_vecs(os.path.join(folder, spec.get("queries_file", "queries.fvecs")))
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if base.shape[1] != queries.shape[1]:
        raise ValueError(f"{folder}: base and queries differ in dimension")
    attrs = read_attributes(os.path.join(folder, "base_attrs.csv"))
    for name, column in attrs.items():
        if len(column) != base.shape[0]:
            raise ValueError(f"{folder}: attribute {name} has {len(column)} rows, base has {base.shape[0]}")
    workloads = []
    for entry in spec["workloads"]:
        if only_workloads and entry["name"] not in only_workloads:
            continue
        count = len(entry["query_ids"])
        if max_queries is not None:
            count = min(count, max_queries)
        gt_ids = read_vecs(os.path.join(folder, entry["gt_ivecs"]))[:count]
        gt_dist = read_vecs(os.path.join(folder, entry["gt_dist_fvecs"]))[:count]
        predicates = entry["predicates"][:count]
        canonical = {json.dumps(p, sort_keys=True) for p in predicates}
        workloads.append(
            Workload(
                name=entry["name"],
                query_ids=np.asarray(entry["query_ids"][:count], dtype=np.int64),
                predicates=predicates,
                gt_ids=gt_ids,
                gt_dist=gt_dist,
                shared_predicate=len(canonical) == 1,
            )
        )
    return Dataset(
        name=os.path.basename(os.path.normpath(folder)),
        metric=metric,
        base=base,
        queries=queries,
        attrs=attrs,
        workloads=workloads,
    )


def predicate_mask(attrs, predicate):
    """Returns the boolean row mask of a predicate (a list of clauses, all must hold), or None when empty."""
    mask = None
    for clause in predicate:
        column = attrs[clause["attr"]]
        op = clause["op"]
        if op == "between":
            passed = (column >= clause["lo"]) & (column <= clause["hi"])
        elif op == "eq":
            passed = column == clause["value"]
        elif op == "in":
            passed = np.isin(column, clause["values"])
        elif op == "ge":
            passed = column >= clause["value"]
        elif op == "le":
            passed = column <= clause["value"]
        else:
            raise ValueError(f"unknown predicate op '{op}'")
        mask = passed if mask is None else (mask & passed)
    return mask


def _sql_value(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"unsupported predicate value {value!r}")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def predicate_sql(predicate):
    """Returns a predicate as an SQL boolean expression (LanceDB's `where`), or None when empty."""
    parts = []
    for clause in predicate:
        column = clause["attr"]
        if not column.replace("_", "").isalnum():
            raise ValueError(f"unsupported attribute name '{column}'")
        op = clause["op"]
        if op == "between":
            parts.append(f"{column} BETWEEN {_sql_value(clause['lo'])} AND {_sql_value(clause['hi'])}")
        elif op == "eq":
            parts.append(f"{column} = {_sql_value(clause['value'])}")
        elif op == "in":
            values = ", ".join(_sql_value(v) for v in clause["values"])
            parts.append(f"{column} IN ({values})")
        elif op == "ge":
            parts.append(f"{column} >= {_sql_value(clause['value'])}")
        elif op == "le":
            parts.append(f"{column} <= {_sql_value(clause['value'])}")
        else:
            raise ValueError(f"unknown predicate op '{op}'")
    return " AND ".join(parts) if parts else None


def true_distances(metric, base, query, ids):
    """Distances of base rows `ids` to `query` in float64: 1 - dot for ip, squared L2 for l2."""
    rows = base[ids].astype(np.float64)
    q = query.astype(np.float64)
    if metric == "ip":
        return 1.0 - rows @ q
    diff = rows - q
    return np.einsum("ij,ij->i", diff, diff)


def gt_distance(metric, value):
    """Converts a ground-truth file value (inner product or squared L2) into a distance."""
    return 1.0 - float(value) if metric == "ip" else float(value)


def recall_at_k(metric, base, query, ids, gt_dist_row, mask, k=10):
    """Recall@k of the returned `ids` (best first) for one query, scored by distance.

    `gt_dist_row` is the query's ground-truth row (best first), `mask` its filter (None =
    unfiltered). A returned id counts when it is a real row, passes the filter, is not a
    repeat and is at most as far as the k-th ground-truth neighbour (plus slack). When fewer
    than k rows pass, k drops to that number (and the last real ground-truth entry is the bar,
    as padded rows hold no distance).
    """
    num_matches = base.shape[0] if mask is None else int(np.count_nonzero(mask))
    wanted = min(k, num_matches, len(gt_dist_row))
    if wanted == 0:
        return 1.0
    kth = gt_distance(metric, gt_dist_row[wanted - 1])
    threshold = kth + RECALL_RELATIVE_SLACK * abs(kth) + RECALL_ABSOLUTE_SLACK
    seen = set()
    candidates = []
    for raw in list(ids)[:k]:
        row = int(raw)
        if row < 0 or row >= base.shape[0] or row in seen:
            continue
        seen.add(row)
        if mask is not None and not mask[row]:
            continue
        candidates.append(row)
    if not candidates:
        return 0.0
    distances = true_distances(metric, base, query, np.asarray(candidates, dtype=np.int64))
    good = int(np.count_nonzero(distances <= threshold))
    return min(good, wanted) / wanted
