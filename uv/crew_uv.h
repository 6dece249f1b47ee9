/*
 * crew_uv.h -- run CPU work on a crew pool from a libuv program.
 *
 * The shape is libuv's uv_queue_work(): the loop thread submits a task and
 * later receives one callback, on the loop thread, when the task is over.
 * The difference is where the task runs: on a crew pool of threads or of
 * processes. With a process pool a task that crashes its worker (a segfault,
 * abort, _exit) or overruns the pool's task_timeout reaches the callback as
 * CREW_ECRASHED or CREW_ETIMEDOUT; the loop and every other task live on.
 *
 *     crew_pool *pool;  crew_pool_options po = {.kind = CREW_PROCESSES};
 *     crew_pool_create(&pool, &po);
 *     crew_uv *cu;  crew_uv_create(&cu, loop, pool);
 *     crew_uv_submit(cu, my_task, &arg, sizeof arg, on_done, my_ctx, NULL);
 *     ...
 *     static void on_done(crew_uv *cu, crew_future *f, int status, void *ctx)
 *     { if (status == 0) { const void *r; size_t n; crew_future_result(f, &r, &n); ... } }
 *     ...
 *     crew_uv_close(cu, NULL, NULL);   // in-flight tasks: their callbacks run now
 *     uv_run(loop, UV_RUN_DEFAULT);    // lets libuv finish closing the handle
 *     crew_pool_destroy(pool);
 *
 * How it works: the adapter marks each of its futures with
 * crew_future_notify() and watches the pool's completion fd (crew_pool_fd)
 * with a uv_poll_t; when it is readable it pops the finished futures
 * (crew_pool_completions) and calls their callbacks. No extra thread, no
 * uv_async_t; the loop sleeps in epoll_wait while the pool works.
 *
 * Rules:
 *  - Every function here is for the loop thread only (like libuv itself).
 *  - One adapter per pool, and nothing else may call crew_pool_completions()
 *    on that pool: the adapter expects every completion it pops to be its own.
 *    Tasks submitted to the pool directly (crew_pool_submit) are fine as long
 *    as nobody marks them with crew_future_notify().
 *  - Close the adapter (crew_uv_close) before crew_pool_destroy() and before
 *    uv_loop_close(). Do not uv_close() the adapter's handle yourself (a
 *    uv_walk() that closes every handle must skip it: crew_uv_owns_handle()).
 *
 * Link with `pkg-config --libs crew_uv` (it pulls in crew and libuv).
 */
#ifndef CREW_UV_H
#define CREW_UV_H

#include <crew.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CREW_UV_BUILDING) && defined(__GNUC__)
#define CREW_UV_API __attribute__((visibility("default")))
#else
#define CREW_UV_API
#endif

typedef struct crew_uv crew_uv;

/* Called exactly once per task submitted with crew_uv_submit(), on the loop
 * thread, from inside uv_run() (or from inside crew_uv_close()).
 *
 * `status` is the task's final status: 0, the negative value the task
 * returned, CREW_ECRASHED (its worker process died), CREW_ETIMEDOUT (it
 * overran the pool's task_timeout), or CREW_ECANCELED (crew_future_cancel()
 * was called, the pool was shut down, or the adapter was closed while the
 * task was queued or running).
 *
 * `f` is borrowed: read it with crew_future_result() / crew_future_failure()
 * during the callback; the adapter destroys it when the callback returns.
 * When the adapter is closed while a task still runs, the callback gets
 * CREW_ECANCELED and `f` is not done yet (its result must not be read); the
 * task then finishes on its own and its result is dropped.
 *
 * The callback may call crew_uv_submit() (not while closing: CREW_ECLOSED)
 * and crew_uv_close(). */
typedef void (*crew_uv_done_cb)(crew_uv *cu, crew_future *f, int status, void *data);

/* Called once, from uv_run(), when the adapter's memory has been released. */
typedef void (*crew_uv_close_cb)(void *data);

/* Attach pool `pool` to libuv loop `loop`. The adapter does not own the pool.
 * Returns 0 and *out, or CREW_EINVAL (NULL argument), CREW_ENOMEM, CREW_EBUSY
 * (the pool's completion fd is already watched by this loop), or the error of
 * crew_pool_fd() / uv_poll_init() turned into a crew status. */
CREW_UV_API int crew_uv_create(crew_uv **out, uv_loop_t *loop, crew_pool *pool);

/* Submit `fn` with a copy of `arg` (arg_len bytes) to the pool; `cb(cu, f,
 * status, data)` runs later on the loop thread. If fut_out is not NULL it
 * receives the future, borrowed until the callback returns: use it to
 * crew_future_cancel() the task or read its progress; never destroy it.
 * Returns 0, or CREW_EINVAL (NULL cu/fn/cb), CREW_ECLOSED (the adapter is
 * closing), CREW_ENOMEM, or what crew_pool_submit() returned (CREW_E2BIG,
 * CREW_ESHUTDOWN, CREW_EBROKEN, ...); on failure the callback never runs. */
CREW_UV_API int crew_uv_submit(crew_uv *cu, crew_task_fn fn, const void *arg, size_t arg_len,
                               crew_uv_done_cb cb, void *data, crew_future **fut_out);

/* Tasks submitted whose callback has not run yet (0 for NULL). */
CREW_UV_API size_t crew_uv_pending(const crew_uv *cu);

/* The pool and loop given to crew_uv_create() (NULL for NULL). */
CREW_UV_API crew_pool *crew_uv_pool(const crew_uv *cu);
CREW_UV_API uv_loop_t *crew_uv_loop(const crew_uv *cu);

/* 1 if `h` is the uv handle inside some live crew_uv adapter of h's loop,
 * else 0: a uv_walk() callback that closes every handle calls crew_uv_close()
 * on those instead of uv_close(). */
CREW_UV_API int crew_uv_owns_handle(const uv_handle_t *h);

/* Close the adapter. Before it returns, every task not yet delivered gets its
 * callback exactly once: finished tasks with their real status; tasks still
 * queued or running are cancelled (crew_future_cancel: a queued task never
 * starts, a running process-pool task has its worker killed, a running
 * thread-pool task is asked to stop) and reported as CREW_ECANCELED unless
 * they finished in the meantime. Then the uv handle is closed; `close_cb(data)`
 * (may be NULL) runs from a later uv_run() once the memory is freed, and the
 * loop has no reference left from the adapter. Calling it from inside a done
 * callback is allowed. Returns 0, CREW_EINVAL (NULL), or CREW_ECLOSED (already
 * closing: nothing is done). */
CREW_UV_API int crew_uv_close(crew_uv *cu, crew_uv_close_cb close_cb, void *data);

#ifdef __cplusplus
}
#endif
#endif /* CREW_UV_H */
