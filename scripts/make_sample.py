#!/usr/bin/env python3
"""Cuts the committed sample (tests/data/glove-20k) out of ../shared/data/glove-6b-50-angular.

The base of that set is already shuffled, so its first rows are a uniform sample. Ground
truth is recomputed exactly (float64 brute force, ties by the smaller id) over the slice.
Needs numpy. Usage: python3 scripts/make_sample.py [SOURCE_DIR] [OUT_DIR]
"""
import csv
import json
import os
import sys

import numpy as np

SOURCE = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/glove-6b-50-angular"
OUT = sys.argv[2] if len(sys.argv) > 2 else "tests/data/glove-20k"
NUM_BASE = 20_000
NUM_QUERIES = 200
TOP = 100
WORKLOADS = ["unfiltered", "freq_10", "initial_eq", "freq_len_conj", "freq_1"]
INITIAL_NAMES = [chr(ord("a") + i) for i in range(26)] + ["digit", "other", "nonascii"]


def read_fvecs(path, count):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    rows = raw.reshape(-1, dim + 1)[:count]
    return rows[:, 1:].copy().view(np.float32), dim


def write_vecs(path, array, dtype):
    array = np.asarray(array, dtype=dtype)
    dims = np.full((array.shape[0], 1), array.shape[1], dtype=np.int32)
    np.hstack([dims.view(dtype) if dtype == np.int32 else dims.view(np.float32), array]).tofile(path)


def holds(predicate, attrs):
    mask = np.ones(len(attrs["freq_rank"]), dtype=bool)
    for clause in predicate or []:
        column = attrs[clause["attr"]]
        op = clause["op"]
        if op == "between":
            mask &= (column >= clause["lo"]) & (column <= clause["hi"])
        elif op == "eq":
            mask &= column == clause["value"]
        elif op == "in":
            mask &= np.isin(column, clause["values"])
        elif op == "ge":
            mask &= column >= clause["value"]
        elif op == "le":
            mask &= column <= clause["value"]
        else:
            raise ValueError(op)
    return mask


def main():
    os.makedirs(os.path.join(OUT, "gt"), exist_ok=True)
    base, dim = read_fvecs(os.path.join(SOURCE, "base.fvecs"), NUM_BASE)
    queries, _ = read_fvecs(os.path.join(SOURCE, "queries.fvecs"), None)
    write_vecs(os.path.join(OUT, "base.fvecs"), base, np.float32)
    write_vecs(os.path.join(OUT, "queries.fvecs"), queries[:NUM_QUERIES], np.float32)
    with open(os.path.join(SOURCE, "base_attrs.csv")) as f:
        rows = list(csv.DictReader(f))[:NUM_BASE]
    attrs = {name: np.array([int(r[name]) for r in rows]) for name in ["freq_rank", "word_len", "initial"]}
    with open(os.path.join(OUT, "base_attrs.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "freq_rank", "word_len", "initial", "initial_class"])
        for i, r in enumerate(rows):
            writer.writerow([i, r["freq_rank"], r["word_len"], r["initial"], INITIAL_NAMES[int(r["initial"])]])
    source = json.load(open(os.path.join(SOURCE, "workloads.json")))
    base64 = base.astype(np.float64)
    out_workloads = []
    for workload in source["workloads"]:
        if workload["name"] not in WORKLOADS:
            continue
        positions = [i for i, q in enumerate(workload["query_ids"]) if q < NUM_QUERIES]
        ids, dists, counts = [], [], []
        for position in positions:
            query = queries[workload["query_ids"][position]].astype(np.float64)
            mask = holds(workload["predicates"][position], attrs)
            candidates = np.nonzero(mask)[0]
            scores = base64[candidates] @ query
            order = np.lexsort((candidates, -scores))[:TOP]
            top_ids = candidates[order]
            top_scores = scores[order]
            pad = TOP - len(top_ids)
            ids.append(np.concatenate([top_ids, np.full(pad, -1)]))
            dists.append(np.concatenate([top_scores, np.full(pad, -3.0e38)]))
            counts.append(int(mask.sum()))
        name = workload["name"]
        write_vecs(os.path.join(OUT, "gt", f"{name}.ivecs"), np.array(ids), np.int32)
        write_vecs(os.path.join(OUT, "gt", f"{name}.dist.fvecs"), np.array(dists), np.float32)
        out_workloads.append({
            "name": name,
            "description": workload["description"],
            "query_ids": [workload["query_ids"][p] for p in positions],
            "predicates": [workload["predicates"][p] for p in positions],
            "filters": [workload["filters"][p] for p in positions],
            "gt_ivecs": f"gt/{name}.ivecs",
            "gt_dist_fvecs": f"gt/{name}.dist.fvecs",
            "match_counts": counts,
            "min_matches": min(counts),
        })
    json.dump({
        "dataset": "glove-20k (slice of glove-6b-50-angular)",
        "metric": "ip",
        "k": TOP,
        "n_base": NUM_BASE,
        "dim": int(dim),
        "base_file": "base.fvecs",
        "queries_file": "queries.fvecs",
        "attributes": ["id", "freq_rank", "word_len", "initial", "initial_class"],
        "workloads": out_workloads,
    }, open(os.path.join(OUT, "workloads.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
