#!/usr/bin/env python3
"""bench/anchors.py -- Python's pools, one figure per fresh interpreter.

bench/bench_pool_procs.c runs this script with python3 (path from
$CREW_BENCH_PY, else beside the bench source) once per figure, start method
and round, alternating with crew's own measurement, and reads one line back:

    python3 anchors.py FIGURE [METHOD] WORKERS N
        prints "# python 3.11.7, 2 workers, start method fork" and
        "value 231.4" (the figure, in the unit listed below)
    python3 anchors.py --default-method
        prints the interpreter's default start method as "value I", I an
        index into METHODS (fork, forkserver, spawn)

Why a fresh interpreter per figure: an interpreter that already ran other
pools (threads, a forkserver, a grown heap) forks and starts slower than a
program that makes one pool, which is what users of these pools write. Each
run builds its pool, warms it up (a tenth of the work, and one task per
worker at least) and then measures once; a pool's start is measured after
one warm-up start (the imports and, with forkserver, the server are then in
place, as they are in a program that has run before).

METHOD (for the process pools) is a multiprocessing start method, "fork",
"forkserver" or "spawn", or "default" (the interpreter's). N is the work
per measurement (tasks, round trips or items); WORKERS the pool size.

Figures:
  ppe_roundtrip_us   ProcessPoolExecutor: submit(f).result() of one tiny task, us
  mp_apply_us        multiprocessing.Pool.apply round trip, us
  tpe_roundtrip_us   ThreadPoolExecutor round trip, us (no METHOD)
  ppe_submit_tps     ProcessPoolExecutor: submit N no-op tasks, then result()
                     each, tasks/s
  tpe_submit_tps     ThreadPoolExecutor: the same, tasks/s (no METHOD)
  ppe_map_tps        ProcessPoolExecutor.map, chunksize 256, N no-op items,
                     items/s
  mp_map_tps         multiprocessing.Pool.map, default chunks, items/s
  ppe_start_ms       ProcessPoolExecutor: create + first result, ms (the
                     shutdown is not timed; crew's figure is create + first
                     result too)
"""
import concurrent.futures as cf
import multiprocessing as mp
import sys
import time

METHODS = ["fork", "forkserver", "spawn"]


def noop(x=None):
    return x


def emit(value):
    print(f"value {value:.17g}", flush=True)


def roundtrip_us(call, n):
    for _ in range(max(2, n // 10)):
        call()
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) / n * 1e6


def submit_tps(ex, n):
    def once(k):
        t0 = time.perf_counter()
        futs = [ex.submit(noop, i) for i in range(k)]
        for f in futs:
            f.result()
        return k / (time.perf_counter() - t0)

    once(max(2, n // 10))
    return once(n)


def map_tps(fn, n):
    fn(list(range(max(2, n // 10))))
    items = list(range(n))
    t0 = time.perf_counter()
    out = fn(items)
    dt = time.perf_counter() - t0
    assert len(out) == n
    return n / dt


def ppe_start_ms(ctx, workers):
    def once():
        t0 = time.perf_counter()
        ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        ex.submit(noop).result()
        t = time.perf_counter() - t0
        ex.shutdown(wait=True)
        return t * 1e3

    once()
    return once()


def measure(fig, ctx, workers, n):
    if fig == "ppe_roundtrip_us":
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            return roundtrip_us(lambda: ex.submit(noop, 1).result(), n)
    if fig == "mp_apply_us":
        with ctx.Pool(workers) as pool:
            return roundtrip_us(lambda: pool.apply(noop, (1,)), n)
    if fig == "tpe_roundtrip_us":
        with cf.ThreadPoolExecutor(max_workers=workers) as ex:
            return roundtrip_us(lambda: ex.submit(noop, 1).result(), n)
    if fig == "ppe_submit_tps":
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            return submit_tps(ex, n)
    if fig == "tpe_submit_tps":
        with cf.ThreadPoolExecutor(max_workers=workers) as ex:
            return submit_tps(ex, n)
    if fig == "ppe_map_tps":
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            return map_tps(lambda xs: list(ex.map(noop, xs, chunksize=256)), n)
    if fig == "mp_map_tps":
        with ctx.Pool(workers) as pool:
            return map_tps(lambda xs: pool.map(noop, xs), n)
    if fig == "ppe_start_ms":
        return ppe_start_ms(ctx, workers)
    raise SystemExit(f"anchors.py: unknown figure {fig}")


def main(argv):
    if argv[1:] == ["--default-method"]:
        m = mp.get_start_method()
        print(f"# python {sys.version.split()[0]}: default start method {m}", flush=True)
        emit(METHODS.index(m) if m in METHODS else -1)
        return 0
    if len(argv) not in (4, 5):
        raise SystemExit(__doc__)
    fig = argv[1]
    method = argv[2] if len(argv) == 5 else None
    workers, n = int(argv[-2]), max(1, int(argv[-1]))
    ctx = None
    if method is not None:
        ctx = mp.get_context(None if method == "default" else method)
    how = f"start method {ctx.get_start_method()}" if ctx else "threads"
    print(f"# python {sys.version.split()[0]}, {fig}: {workers} workers, {how}", flush=True)
    emit(measure(fig, ctx, workers, n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
