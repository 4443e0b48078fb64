#!/usr/bin/env python3
"""Writes a unit-norm copy of a `squash synth` data set with exact filtered top-100 truth.

On unit vectors cosine order is L2 order, so the copy checks cosine builds on data of the
same shape: `scripts/unit-norm-copy.py SRC DST` (numpy; the bench venv has it). The truth
distances are cosine distances (1 - cos = |q - x|^2 / 2), as `squash eval` compares them.
"""
import json, os, shutil, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
def read_fvecs(p):
    a = np.fromfile(p, dtype=np.int32); d = a[0]; return a.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()
def write_fvecs(p, x):
    n, d = x.shape; out = np.empty((n, d + 1), dtype=np.int32); out[:, 0] = d; out[:, 1:] = x.astype(np.float32).view(np.int32); out.tofile(p)
def write_ivecs(p, x):
    n, d = x.shape; out = np.empty((n, d + 1), dtype=np.int32); out[:, 0] = d; out[:, 1:] = x; out.tofile(p)
base = read_fvecs(f"{src}/base.fvecs"); queries = read_fvecs(f"{src}/queries.fvecs")
base /= np.linalg.norm(base, axis=1, keepdims=True); queries /= np.linalg.norm(queries, axis=1, keepdims=True)
write_fvecs(f"{dst}/base.fvecs", base); write_fvecs(f"{dst}/queries.fvecs", queries)
shutil.copy(f"{src}/base_attrs.csv", dst)
import csv
rows = list(csv.DictReader(open(f"{src}/base_attrs.csv")))
year = np.array([float(r["year"]) for r in rows]); price = np.array([float(r["price"]) for r in rows]); cat = np.array([r["category"] for r in rows])
cols = {"year": year, "price": price, "category": cat}
w = json.load(open(f"{src}/workloads.json"))
os.makedirs(f"{dst}/gt", exist_ok=True)
K = 100
for wl in w["workloads"]:
    ids = np.full((len(wl["query_ids"]), K), -1, dtype=np.int32); dists = np.full((len(wl["query_ids"]), K), 1e15, dtype=np.float32)
    for i, (qid, f) in enumerate(zip(wl["query_ids"], wl["filters"])):
        mask = np.ones(len(base), dtype=bool)
        for attr, ops in (f or {}).items():
            c = cols[attr]
            for op, v in ops.items():
                if op == "$gte": mask &= c >= v
                elif op == "$lte": mask &= c <= v
                elif op == "$eq": mask &= c == v
                else: raise SystemExit(f"op {op}")
        rows_ok = np.flatnonzero(mask)
        d = ((base[rows_ok].astype(np.float64) - queries[qid].astype(np.float64)) ** 2).sum(1)
        order = np.lexsort((rows_ok, d))[:K]
        ids[i, :len(order)] = rows_ok[order]; dists[i, :len(order)] = d[order] / 2.0  # cosine distance 1 - cos = |q - x|^2 / 2
    write_ivecs(f"{dst}/{wl['gt_ivecs']}", ids); write_fvecs(f"{dst}/{wl['gt_dist_fvecs']}", dists)
json.dump(w, open(f"{dst}/workloads.json", "w"))
print("ok")
