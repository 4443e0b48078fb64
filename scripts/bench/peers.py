#!/usr/bin/env python3
"""Measures the peer engines (FAISS, hnswlib, LanceDB, numpy brute force) on squash's benchmark data,
and the `matching-rows` reference (numpy scoring only the rows that pass, gathered untimed).

For each data set and workload: recall@10 (scored by distance, as `squash eval` does) and queries
per second on one thread, per engine and search setting, plus each engine's build time and index
size. Writes a `squash-bench-points/1` JSON file that `squash bench --peers` reads.

Threads: builds use every allowed CPU (as `squash build` does); before the queries, every thread
of the process is pinned to one CPU, FAISS's OpenMP is set to 1 thread, hnswlib searches with
num_threads=1 and numpy's BLAS has 1 thread, so each query runs on one core. `cpu_per_wall` in
each point (process CPU time / wall time, at most 1 when pinned) shows it.

Timing: one query at a time. The timed work per query is building the engine's filter object
from that query's predicate (a FAISS IDSelectorBitmap from a numpy row mask, an hnswlib filter
callable over a row mask, a LanceDB SQL `where`, numpy row indices for brute force) plus the
search; for the matching-rows reference only the search is timed. When every query of a workload has the same predicate (unfiltered, `freq_top10k`) the
filter is built once, untimed, as a user with a fixed filter would. A setting's loop ends early
after `--point-seconds` (once `--min-queries` ran); `num_queries` says how many ran.

Usage: peers.py --data-dir DIR [--datasets a,b] [--quick] [--max-queries N] [--out FILE]
"""

import os

# Thread pools are sized when the libraries load, so this runs before numpy/faiss/lancedb import.
# numpy's BLAS serves only brute force's per-query products: one thread. FAISS (OpenMP), hnswlib
# and Lance size their pools to the machine, for the builds (squash builds on every core too);
# queries are then confined to one core by pinning every thread of the process (see pin_threads).
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"
BUILD_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
os.environ["OMP_NUM_THREADS"] = str(len(BUILD_CPUS))
os.environ["LANCE_CPU_THREADS"] = str(len(BUILD_CPUS))
# Lance's I/O scheduler deadlocks with one I/O thread (the index build never returns, lancedb
# 0.40), so LANCE_IO_THREADS is left at its default.
# LanceDB's Rust log warns hundreds of times per build (empty k-means clusters of pixel codes).
os.environ.setdefault("LANCEDB_LOG", "error")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from benchdata import load_dataset, predicate_mask, recall_at_k  # noqa: E402
from engines import ENGINES  # noqa: E402

SCHEMA = "squash-bench-points/1"
RECALL_TARGET = 0.95
STARTED = time.perf_counter()


def log(message):
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def pin_threads(cpus):
    """Sets the CPU affinity of every thread of the process (pools started by the builds included).

    Affinity is per thread on Linux, and threads created later inherit their creator's.
    """
    if not hasattr(os, "sched_setaffinity"):
        return
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:
            pass  # the thread ended meanwhile


def machine_description(query_cpu):
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for package in ("numpy", "faiss-cpu", "hnswlib", "lancedb", "pyarrow"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    pinned = "" if query_cpu is None else f"queries pinned to cpu {query_cpu}, "
    return (
        f"{model}, {os.cpu_count()} cores ({pinned}builds on {len(BUILD_CPUS)}); "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}; " + ", ".join(versions)
    )


class WorkloadFilters:
    """Row masks of a workload's queries for scoring, one per distinct predicate, stored as bits."""

    def __init__(self, dataset, workload):
        self.num_rows = dataset.num_base
        self.keys = []
        self.packed = {}
        for predicate in workload.predicates:
            key = json.dumps(predicate, sort_keys=True)
            self.keys.append(key)
            if key not in self.packed:
                mask = predicate_mask(dataset.attrs, predicate)
                self.packed[key] = None if mask is None else np.packbits(mask, bitorder="little")

    def mask(self, position):
        packed = self.packed[self.keys[position]]
        if packed is None:
            return None
        return np.unpackbits(packed, count=self.num_rows, bitorder="little").view(bool)


def measure(engine, dataset, workload, filters, params, args):
    """Runs a workload's queries through one engine setting.

    Returns (recall@10, QPS, queries run, process CPU seconds per wall second). The timed loop
    stops early once it has run `args.min_queries` queries and `args.point_seconds` seconds.
    """
    queries = dataset.queries[workload.query_ids]
    count = len(workload.query_ids)
    shared_filter = engine.make_filter(workload.predicates[0]) if workload.shared_predicate else None
    for position in range(min(args.warmup, count)):
        filt = shared_filter if workload.shared_predicate else engine.make_filter(workload.predicates[position])
        engine.search(queries[position : position + 1], filt, params)
    answers = []
    untimed_seconds = 0.0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for position in range(count):
        if workload.shared_predicate:
            filt = shared_filter
        else:
            filter_started = time.perf_counter()
            filt = engine.make_filter(workload.predicates[position])
            if engine.untimed_filters:
                untimed_seconds += time.perf_counter() - filter_started
        answers.append(engine.search(queries[position : position + 1], filt, params))
        if (
            args.point_seconds
            and position + 1 >= args.min_queries
            and time.perf_counter() - started > args.point_seconds
        ):
            break
    seconds = max(time.perf_counter() - started - untimed_seconds, 1e-9)
    cpu_seconds = time.process_time() - cpu_started
    done = len(answers)
    recall_sum = 0.0
    for position, ids in enumerate(answers):
        recall_sum += recall_at_k(
            dataset.metric, dataset.base, queries[position], ids, workload.gt_dist[position], filters.mask(position)
        )
    return recall_sum / done, done / seconds, done, cpu_seconds / seconds


def build_engines(dataset, engine_names, workdir, faiss):
    """Builds every engine's index over the data set on all of BUILD_CPUS."""
    pin_threads(set(BUILD_CPUS))
    faiss.omp_set_num_threads(len(BUILD_CPUS))
    engines = []
    for name in engine_names:
        engine = ENGINES[name]()
        log(f"{dataset.name}: building {name}")
        cpu_started = time.process_time()
        engine.build(dataset, workdir, len(BUILD_CPUS))
        built = "-" if engine.build_seconds is None else f"{engine.build_seconds:.1f}s"
        log(
            f"{dataset.name}: built {name} in {built} ({time.process_time() - cpu_started:.1f} CPU-s), "
            f"{engine.index_bytes / 2**20:.1f} MiB"
        )
        engines.append(engine)
    return engines


def run_dataset(folder, engine_names, args, faiss, points):
    log(f"loading {folder}")
    dataset = load_dataset(folder, max_queries=args.max_queries, only_workloads=args.workloads)
    log(
        f"{dataset.name}: {dataset.num_base} x {dataset.dim} ({dataset.metric}), "
        f"workloads {', '.join(w.name for w in dataset.workloads)}"
    )
    workdir = tempfile.mkdtemp(prefix="squash-peers-", dir=args.workdir)
    engines = []
    try:
        engines = build_engines(dataset, engine_names, workdir, faiss)
        if args.query_cpu is not None:
            pin_threads({args.query_cpu})
        faiss.omp_set_num_threads(1)
        for workload in dataset.workloads:
            filters = WorkloadFilters(dataset, workload)
            for engine in engines:
                for label, params in engine.settings(args.quick):
                    failed_before = getattr(engine, "failed_queries", 0)
                    recall, qps, done, cpu_share = measure(engine, dataset, workload, filters, params, args)
                    failed = getattr(engine, "failed_queries", 0) - failed_before
                    point = {
                        "engine": engine.name,
                        "dataset": dataset.name,
                        "workload": workload.name,
                        "setting": label,
                        "recall_at_10": round(recall, 6),
                        "qps": round(qps, 2),
                        "threads": 1,
                        "num_queries": done,
                        "build_seconds": None if engine.build_seconds is None else round(engine.build_seconds, 3),
                        "index_bytes": engine.index_bytes,
                        "build_threads": len(BUILD_CPUS),
                        "filter_per_query": not workload.shared_predicate,
                        "cpu_per_wall": round(cpu_share, 3),
                    }
                    if failed:
                        point["failed_queries"] = failed
                    points.append(point)
                    log(
                        f"{dataset.name} / {workload.name} / {engine.name} {label}: recall {recall:.4f}, "
                        f"{qps:.1f} qps ({done} queries{f', {failed} failed' if failed else ''})"
                    )
    finally:
        for engine in engines:
            engine.close()
        shutil.rmtree(workdir, ignore_errors=True)


def summary(points):
    """Returns a text table: per data set, workload and engine, the best QPS at recall >= 0.95."""
    rows = {}
    for point in points:
        key = (point["dataset"], point["workload"], point["engine"])
        best = rows.setdefault(key, {"max_recall": 0.0, "qps": None, "setting": "-"})
        best["max_recall"] = max(best["max_recall"], point["recall_at_10"])
        if point["recall_at_10"] >= RECALL_TARGET and (best["qps"] is None or point["qps"] > best["qps"]):
            best["qps"] = point["qps"]
            best["setting"] = point["setting"]
    lines = [
        f"{'dataset':<28} {'workload':<19} {'engine':<15} {'max recall':>10} "
        f"{'QPS@0.95':>10}  setting"
    ]
    for (dataset, workload, engine), best in rows.items():
        qps = "-" if best["qps"] is None else f"{best['qps']:.1f}"
        lines.append(
            f"{dataset:<28} {workload:<19} {engine:<15} {best['max_recall']:>10.4f} {qps:>10}  {best['setting']}"
        )
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder of data sets (each with a workloads.json)")
    parser.add_argument("--datasets", help="comma-separated data set folder names (default: all in --data-dir)")
    parser.add_argument("--workloads", help="comma-separated workload names (default: all)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines (default: all)")
    parser.add_argument("--quick", action="store_true", help="2 settings per engine, at most 100 queries")
    parser.add_argument("--max-queries", type=int, help="queries per workload (default 1000, quick 100)")
    parser.add_argument("--warmup", type=int, help="untimed queries before each setting (default 20, quick 5)")
    parser.add_argument(
        "--point-seconds",
        type=float,
        help="end a setting's timed loop after this many seconds, once --min-queries ran "
        "(default 4, quick: never; 0 = never)",
    )
    parser.add_argument("--min-queries", type=int, default=100, help="queries a setting runs at least (100)")
    parser.add_argument("--cpu", type=int, help="CPU the queries are pinned to (default: the last allowed one)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the queries to one CPU")
    parser.add_argument("--workdir", help="where indexes are written to measure their size (default: temp dir)")
    parser.add_argument("--out", default="peers.json", help="output file (default peers.json)")
    args = parser.parse_args(argv)
    if args.max_queries is None:
        args.max_queries = 100 if args.quick else 1000
    if args.warmup is None:
        args.warmup = 5 if args.quick else 20
    if args.point_seconds is None:
        args.point_seconds = 0 if args.quick else 4
    args.workloads = set(args.workloads.split(",")) if args.workloads else None
    if args.no_pin or not hasattr(os, "sched_setaffinity"):
        args.query_cpu = None
    else:
        args.query_cpu = BUILD_CPUS[-1] if args.cpu is None else args.cpu
    return args


def main(argv):
    args = parse_args(argv)
    engine_names = [name for name in args.engines.split(",") if name]
    unknown = [name for name in engine_names if name not in ENGINES]
    if unknown:
        sys.exit(f"peers.py: unknown engine(s) {', '.join(unknown)} (known: {', '.join(ENGINES)})")
    if args.datasets:
        names = args.datasets.split(",")
    else:
        names = sorted(
            entry
            for entry in os.listdir(args.data_dir)
            if os.path.isfile(os.path.join(args.data_dir, entry, "workloads.json"))
        )
    if not names:
        sys.exit(f"peers.py: no data set (a folder with workloads.json) in {args.data_dir}")
    import faiss

    points = []
    for name in names:
        run_dataset(os.path.join(args.data_dir, name), engine_names, args, faiss, points)
    document = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(args.query_cpu),
        "points": points,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    partial = args.out + ".partial"
    with open(partial, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    os.replace(partial, args.out)
    print(summary(points), file=sys.stderr)
    log(f"wrote {len(points)} points to {args.out} ({time.process_time():.0f} CPU-s in all)")


if __name__ == "__main__":
    main(sys.argv[1:])
