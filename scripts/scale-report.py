#!/usr/bin/env python3
"""Tables of a synthetic scale run (scripts/scale-run.sh) and its extrapolation to a larger N.

    scripts/scale-report.py [OUT] [--to N]     OUT: the run's folder (/dev/shm/squash-scale),
                                               N: vectors to extrapolate to (10000000)

Reads OUT/<size>/{steps.json, eval.json, cost.json, build.time} for every size measured and
prints Markdown: build and search per size, cost per phase per size, and a row per phase at N.

The extrapolation is a least-squares straight line in N through the measured sizes, fitted
separately to each per-query count (S3 GETs, bytes read) and each
per-query billed time (coordinator, workers), then priced with the prices and memory sizes
recorded in cost.json, by the same formula as `squash_cli::cost::cost_per_million_queries`.
Invocations per query follow the deployment rather than N (at most one per worker slot per
request): the largest size's count is kept, scaled up when the index at N needs more worker
slots for every partition to stay cached, as the warm rows assume. Straight lines hold while
the dimension, the partition size (the build's default of 50,000 vectors), the filters'
selectivities and the memory sizes stay as measured.
"""
import json
import math
import os
import sys


def load(folder):
    rows = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not (name.isdigit() and os.path.exists(os.path.join(path, "cost.json"))):
            continue
        with open(os.path.join(path, "steps.json")) as f:
            steps = json.load(f)
        with open(os.path.join(path, "eval.json")) as f:
            evaluation = json.load(f)
        with open(os.path.join(path, "cost.json")) as f:
            cost = json.load(f)
        peak_rss_kib = None
        time_path = os.path.join(path, "build.time")
        if os.path.exists(time_path):
            for line in open(time_path):
                if "Maximum resident set size" in line:
                    peak_rss_kib = int(line.rsplit(":", 1)[1])
        rows.append((int(name), steps, evaluation, cost, peak_rss_kib))
    rows.sort(key=lambda row: row[0])
    return rows


def fit_line(xs, ys):
    """Least-squares slope and intercept (a flat line through one point)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var_x = sum((x - mean_x) ** 2 for x in xs)
    if var_x == 0:
        return 0.0, mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var_x
    return slope, mean_y - slope * mean_x


def price(per_query, requests_per_query, through_api_gateway, memory, prices):
    """Dollars per 1M queries; the formula of squash_cli::cost::cost_per_million_queries."""
    gb_seconds = (per_query["coordinator_billed_ms"] / 1e3 * memory["coordinator_mb"] / 1024
                  + per_query["worker_billed_ms"] / 1e3 * memory["worker_mb"] / 1024)
    compute = gb_seconds * prices["lambda_per_gb_second"] * 1e6
    requests = ((requests_per_query + per_query["invocations"])
                * prices["lambda_per_request"] * 1e6)
    gets = per_query["s3_gets"] * prices["s3_per_get"] * 1e6
    gateway = (requests_per_query * prices["api_gateway_per_request"] * 1e6
               if through_api_gateway else 0.0)
    return compute + requests + gets + gateway


def main():
    args = sys.argv[1:]
    target = 10_000_000
    if "--to" in args:
        at = args.index("--to")
        target = int(args[at + 1])
        del args[at:at + 2]
    folder = args[0] if args else "/dev/shm/squash-scale"
    rows = load(folder)
    if not rows:
        sys.exit(f"scale-report: no measured sizes under {folder}")

    print("| vectors | dim | partitions | synth s | build s | build peak RSS MiB | index MiB "
          "| S3 $/month | recall@10 (mean of workloads) | QPS, 1 thread (mean) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, steps, evaluation, cost, rss in rows:
        index = cost["index"]
        workloads = evaluation["workloads"]
        recall = sum(w["recall"] for w in workloads) / len(workloads)
        qps = sum(w["qps"] for w in workloads) / len(workloads)
        print(f"| {size:,} | {index['dim']} | {index['num_partitions']} | {steps['synth_s']} "
              f"| {steps['build_s']} | {rss / 1024 if rss else float('nan'):.0f} "
              f"| {index['total_bytes'] / 2**20:.1f} | {cost['storage_per_month']:.4f} "
              f"| {recall:.3f} | {qps:.0f} |")

    print()
    print("| vectors | phase | invocations/q | S3 GETs/q | KiB read/q | coordinator ms/q "
          "| worker ms/q | request p50 ms | request p95 ms | $ per 1M queries | $ per 1M, CPU-only |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, _, _, cost, _ in rows:
        for phase in cost["phases"]:
            q = phase["per_query"]
            cpu = phase.get("cpu_only_cost_per_million") or {}
            print(f"| {size:,} | {phase['cache']} {phase['mode']} | {q['invocations']:.2f} "
                  f"| {q['s3_gets']:.2f} | {q['s3_bytes'] / 1024:.0f} "
                  f"| {q['coordinator_billed_ms']:.1f} | {q['worker_billed_ms']:.1f} "
                  f"| {phase['request_latency_ms']['p50']:.1f} "
                  f"| {phase['request_latency_ms']['p95']:.1f} "
                  f"| {phase['cost_per_million']['total']:.2f} "
                  f"| {cpu.get('total', float('nan')):.2f} |")

    sizes = [float(size) for size, *_ in rows]
    last = rows[-1][3]
    memory, prices = last["memory"], last["prices"]
    bytes_per_vector = fit_line(sizes, [float(r[3]["index"]["total_bytes"]) for r in rows])
    index_bytes_at_target = bytes_per_vector[0] * target + bytes_per_vector[1]
    cache_bytes_per_slot = memory["worker_mb"] * 2**20 / 2
    cache_bytes = last["worker_slots"] * cache_bytes_per_slot
    slots_needed = max(last["worker_slots"], math.ceil(index_bytes_at_target / cache_bytes_per_slot))
    slot_factor = slots_needed / last["worker_slots"]
    print()
    print(f"Extrapolated to {target:,} vectors (least-squares lines in N through "
          f"{', '.join(f'{int(s):,}' for s in sizes)}; same dimension, partition size, "
          f"selectivities and deployment: {last['worker_slots']} worker slots, branching "
          f"{last['branching']}, {memory['coordinator_mb']}/{memory['worker_mb']} MB):")
    print()
    print(f"- index {index_bytes_at_target / 2**30:.2f} GiB in S3, "
          f"${index_bytes_at_target / 1e9 * prices['s3_per_gb_month']:.2f} per month; "
          f"{last['worker_slots']} workers cache {cache_bytes / 2**30:.1f} GiB in all "
          f"(half of each worker's memory). The warm rows assume every partition stays "
          f"cached, which takes {slots_needed} worker slots at {memory['worker_mb']} MB; "
          f"invocations per query are the largest measured size's"
          f"{f' x {slot_factor:.2f} for those slots' if slot_factor > 1 else ''}, and the "
          f"other columns are the fitted lines.")
    print()
    print("| phase | invocations/q | S3 GETs/q | KiB read/q | coordinator ms/q | worker ms/q "
          "| $ per 1M queries |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    keys = ["s3_gets", "s3_bytes", "coordinator_billed_ms", "worker_billed_ms"]
    for position, phase in enumerate(last["phases"]):
        same = [r[3]["phases"][position] for r in rows]
        per_query = {}
        for key in keys:
            slope, intercept = fit_line(sizes, [p["per_query"][key] for p in same])
            per_query[key] = max(0.0, slope * target + intercept)
        # Invocations follow the deployment, not N (at most one per slot per request): the
        # largest size's count, scaled by the slots the index at N needs.
        per_query["invocations"] = same[-1]["per_query"]["invocations"] * slot_factor
        requests_per_query = phase["num_requests"] / max(phase["num_queries"], 1)
        dollars = price(per_query, requests_per_query, phase["mode"] == "single", memory, prices)
        print(f"| {phase['cache']} {phase['mode']} | {per_query['invocations']:.2f} "
              f"| {per_query['s3_gets']:.2f} | {per_query['s3_bytes'] / 1024:.0f} "
              f"| {per_query['coordinator_billed_ms']:.1f} "
              f"| {per_query['worker_billed_ms']:.1f} | {dollars:.2f} |")


if __name__ == "__main__":
    main()
