#!/usr/bin/env python3
"""bench/anchors.py -- Python's pools, measured in the same run as crew.

bench/bench_pool_procs.c runs this script with python3 (path from
$CREW_BENCH_PY, else beside the bench source) and reads its output: one
figure per line, "name value unit", e.g.

    ppe_roundtrip_us 231.4 us

Lines starting with '#' are comments. Every figure is the median of several
repetitions. Worker count: 2 (as in ANCHORS.md), or $CREW_BENCH_WORKERS.
$CREW_BENCH_SCALE (e.g. 0.1) scales the iteration counts like the C harness.

Figures (all with `workers` processes or threads):
  ppe_roundtrip_us      ProcessPoolExecutor: submit(f).result() of one tiny task
  mp_apply_us           multiprocessing.Pool.apply round trip
  tpe_roundtrip_us      ThreadPoolExecutor round trip
  ppe_submit_tps        ProcessPoolExecutor: submit N no-op tasks, then result() each
  tpe_submit_tps        ThreadPoolExecutor: the same
  ppe_map_tps           ProcessPoolExecutor.map, chunksize 256, no-op items
  mp_map_tps            multiprocessing.Pool.map, default chunks, no-op items
  ppe_start_ms          ProcessPoolExecutor: create + first task + shutdown
"""
import concurrent.futures as cf
import multiprocessing as mp
import os
import statistics
import sys
import time


def noop(x=None):
    return x


def scale(n):
    try:
        f = float(os.environ.get("CREW_BENCH_SCALE", "1"))
    except ValueError:
        f = 1.0
    if f <= 0:
        f = 1.0
    return max(1, int(n * f))


def reps(dflt):
    try:
        r = int(os.environ.get("CREW_BENCH_REPS", str(dflt)))
    except ValueError:
        r = dflt
    return r if r > 0 else dflt


def emit(name, value, unit):
    print(f"{name} {value:.6g} {unit}", flush=True)


def roundtrip_us(call, n, r):
    for _ in range(max(1, n // 10)):
        call()
    samples = []
    for _ in range(r):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def submit_tps(ex, n, r):
    samples = []
    for _ in range(r):
        t0 = time.perf_counter()
        futs = [ex.submit(noop, i) for i in range(n)]
        for f in futs:
            f.result()
        samples.append(n / (time.perf_counter() - t0))
    return statistics.median(samples)


def map_tps(fn, n, r):
    items = list(range(n))
    samples = []
    for _ in range(r):
        t0 = time.perf_counter()
        out = fn(items)
        dt = time.perf_counter() - t0
        assert len(out) == n
        samples.append(n / dt)
    return statistics.median(samples)


def main():
    workers = int(os.environ.get("CREW_BENCH_WORKERS", "2"))
    # Python 3.11 on Linux defaults to fork; name it so the figure is honest.
    ctx = mp.get_context("fork")
    print(f"# python {sys.version.split()[0]}, {workers} workers, start method fork", flush=True)
    r = reps(5)

    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        ex.submit(noop).result()
        emit("ppe_roundtrip_us", roundtrip_us(lambda: ex.submit(noop, 1).result(), scale(2000), r), "us")
        emit("ppe_submit_tps", submit_tps(ex, scale(20000), r), "tasks/s")
        emit("ppe_map_tps", map_tps(lambda xs: list(ex.map(noop, xs, chunksize=256)), scale(200000), r),
             "tasks/s")

    with ctx.Pool(workers) as pool:
        pool.apply(noop, (1,))
        emit("mp_apply_us", roundtrip_us(lambda: pool.apply(noop, (1,)), scale(2000), r), "us")
        emit("mp_map_tps", map_tps(lambda xs: pool.map(noop, xs), scale(200000), r), "tasks/s")

    with cf.ThreadPoolExecutor(max_workers=workers) as ex:
        ex.submit(noop).result()
        emit("tpe_roundtrip_us", roundtrip_us(lambda: ex.submit(noop, 1).result(), scale(20000), r), "us")
        emit("tpe_submit_tps", submit_tps(ex, scale(50000), r), "tasks/s")

    starts = []
    for _ in range(r):
        t0 = time.perf_counter()
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            ex.submit(noop).result()
        starts.append((time.perf_counter() - t0) * 1e3)
    emit("ppe_start_ms", statistics.median(starts), "ms")


if __name__ == "__main__":
    main()
