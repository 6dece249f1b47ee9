/*
 * ring.h -- the shared-memory message ring under crew_queue and crew_pipe
 * (implemented in ring.c; see the DESIGN comment there and docs/queue.md).
 * Private to the library, never installed.
 */
#ifndef CREW__RING_H
#define CREW__RING_H

#include "core/internal.h"

#include <stdalign.h>

#define CREW__RING_MAGIC 0x3167726e77657263ull /* "crewrng1" */
/* 2: the memfd is sealed (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) and the
 * header has a `broken` flag. 3: the lock words are crew_lock's (64 bits:
 * pid << 32 | tid | flags, sync/sync.h) where they held a 32-bit tid. An
 * older ring is not attached. 4: `flags` (joinable), the message counters
 * `puts` / `gets`, and the joinable line (unfinished, done_seq,
 * done_waiters). */
#define CREW__RING_VERSION 4u
/* flags: the ring counts unfinished tasks (crew_queue_options.joinable). */
#define CREW__RING_JOINABLE 1u
/* unfinished = count << 1 | PENDING; PENDING: a put has counted its message
 * but may not have published it yet (pending_tail says where it would). */
#define CREW__RING_PENDING 1u
#define CREW__RING_ONE_TASK 2u
/* Every record starts with an 8-byte header; payloads are padded to 8. */
#define CREW__RING_HDR 8u
/* Where the data area starts, from the ring header (one page). */
#define CREW__RING_DATA_OFF 4096u

/* The ring header, at the start of a page of shared memory, followed by the
 * data area at CREW__RING_DATA_OFF. Each group of fields that one side writes
 * sits on its own cache line, so producers and consumers do not false-share. */
typedef struct crew__ring {
    /* Constant after init. */
    uint64_t magic;
    uint32_t version;
    uint32_t ring_size_lo; /* total bytes of header + data, split for alignment */
    uint64_t cap;          /* data bytes, a multiple of 8 */
    uint64_t max_msg;      /* largest accepted payload */
    uint32_t ring_size_hi;
    uint32_t flags; /* CREW__RING_JOINABLE */

    /* Published positions: each has a line of its own, written by one side
     * and polled by the other, so a poll sees one change per message. */
    alignas(CREW__CACHELINE) _Atomic uint64_t tail; /* written under prod_lock */
    alignas(CREW__CACHELINE) _Atomic uint64_t head; /* written under cons_lock */

    /* Producers' private line: their lock, and the last `head` they read
     * (head only grows, so a stale copy under-states the free space and is
     * safe; it is re-read only when it says there is no room). */
    alignas(CREW__CACHELINE) _Atomic uint64_t prod_lock; /* a lock word (sync/sync.h) */
    uint64_t head_seen;
    _Atomic uint64_t puts; /* messages committed, ever (written under prod_lock) */
    uint64_t pending_tail; /* joinable: the tail the counted put publishes */

    /* Consumers' private line. */
    alignas(CREW__CACHELINE) _Atomic uint64_t cons_lock;
    _Atomic uint64_t gets; /* messages taken or dropped, ever (written under cons_lock) */

    /* "Data arrived" event: bumped by producers when data_waiters > 0. */
    alignas(CREW__CACHELINE) _Atomic uint32_t data_seq;
    _Atomic uint32_t data_waiters;

    /* "Space freed" event: bumped by consumers when space_waiters > 0. */
    alignas(CREW__CACHELINE) _Atomic uint32_t space_seq;
    _Atomic uint32_t space_waiters;

    /* Rarely written. */
    alignas(CREW__CACHELINE) _Atomic uint32_t closed;
    _Atomic uint32_t recoveries; /* locks taken over from dead owners */
    _Atomic uint32_t broken;     /* non-zero: someone found the ring corrupted */

    /* Joinable rings: tasks put and not yet done (count << 1 | PENDING),
     * and the "all done" event join waits on. */
    alignas(CREW__CACHELINE) _Atomic uint64_t unfinished;
    _Atomic uint32_t done_seq;
    _Atomic uint32_t done_waiters;
} crew__ring;

/* One process's view of a ring. Everything in shared memory may be rewritten
 * at any moment by any process that maps it, a buggy or hostile one
 * included, so the geometry is checked once (at create or attach) and kept
 * here, and every call uses these copies, never the header's. `broken`
 * points at the handle's own flag: once this process has seen the ring
 * broken it stays broken for it, whatever a peer writes into the header. */
typedef struct crew__ring_view {
    crew__ring *hdr;
    uint64_t cap;     /* data bytes, a multiple of 8, >= 64 */
    uint64_t max_msg; /* <= cap - CREW__RING_HDR */
    uint32_t flags;   /* CREW__RING_JOINABLE, as at create/attach */
    _Atomic bool *broken;
} crew__ring_view;

/* A peer-liveness probe for crew_pipe: gone(ctx) returns true once the other
 * side can never act again. Waits that have a peer sleep in short slices and
 * ask it between slices. NULL for a queue (no peer to watch). */
typedef struct crew__ring_peer {
    bool (*gone)(void *ctx);
    void *ctx;
} crew__ring_peer;

typedef void (*crew__fill_fn)(void *dst, size_t len, void *arg);
typedef void (*crew__read_fn)(const void *msg, size_t len, void *arg);

/* Validates and normalises options (0 = defaults). */
int crew__ring_geometry(size_t capacity, size_t max_message, uint64_t *cap_out,
                        uint64_t *max_out);
/* Bytes of shared memory a ring of `cap` data bytes needs (page multiple). */
size_t crew__ring_bytes(uint64_t cap);
/* A ring's memfd is made by crew__memfd_map (sealed against growing and
 * shrinking: internal.h) and attach refuses an fd without those seals
 * (crew__fd_sealed). */
/* Writes a new ring into fresh (zeroed) memory and binds v to it. */
void crew__ring_init(crew__ring_view *v, crew__ring *r, uint64_t cap, uint64_t max_msg,
                     uint32_t flags, _Atomic bool *broken);
/* Checks a ring found in `avail` mapped bytes someone else made, reading
 * each field once, and binds v to the checked values. 0; CREW_EINVAL when
 * it is not a crew ring (magic, version); CREW_EPROTO when it is one but
 * its geometry is impossible (the ring is then marked broken) or it is
 * marked broken. */
int crew__ring_attach(crew__ring_view *v, crew__ring *r, size_t avail, _Atomic bool *broken);

/* Every call below starts with the broken check and returns CREW_EPROTO on
 * a ring that is broken, or that it finds corrupted (it then marks it
 * broken for every process, and wakes every waiter). A call that returns
 * CREW_EPROTO may or may not have done its work. */

/* Put one message: copied from src, or written in place by fill(dst, len,
 * arg) when fill is non-NULL. Returns 0, CREW_E2BIG, CREW_ECLOSED,
 * CREW_EAGAIN (timeout 0 and no room), CREW_ETIMEDOUT, CREW_EPIPE (peer
 * gone), CREW_EDEADLK (called from inside a fill callback), CREW_EPROTO. */
int crew__ring_put(crew__ring_view *v, const void *src, size_t len, crew__fill_fn fill,
                   void *arg, double timeout, const crew__ring_peer *peer);

/* Get one message: copied into buf (cap bytes), or handed in place to
 * fn(msg, len, arg) when fn is non-NULL. *len_out (may be NULL) gets the
 * message's size, also on CREW_E2BIG. Returns 0, CREW_EOF (closed and
 * drained), CREW_E2BIG (buf too small; the message stays queued),
 * CREW_EAGAIN, CREW_ETIMEDOUT, CREW_EPIPE (peer gone and drained),
 * CREW_EDEADLK, CREW_EPROTO. */
int crew__ring_get(crew__ring_view *v, void *buf, size_t cap, size_t *len_out,
                   crew__read_fn fn, void *arg, double timeout, const crew__ring_peer *peer);

/* Marks the ring closed and wakes every waiter. Idempotent. It waits up to
 * lock_wait seconds for producers to leave prod_lock (so that every put
 * commits before the close or sees it), then closes regardless: a lock
 * held longer (a stalled put_with callback, a peer that wrote a live
 * thread's id into the word) cannot hold it up for ever. 0 or CREW_EPROTO. */
#define CREW__RING_CLOSE_WAIT 1.0 /* seconds: crew_queue_close, crew_pipe_close */
int crew__ring_close(crew__ring_view *v, double lock_wait);
/* crew__ring_close, then drops every queued message (waiting up to
 * lock_wait for cons_lock too; past that nothing is dropped and gets drain
 * as after a plain close). Dropped messages count as done for join.
 * *dropped (may be NULL) receives how many. 0 or CREW_EPROTO. */
int crew__ring_close_drop(crew__ring_view *v, double lock_wait, uint64_t *dropped);

/* Joinable rings. task_done: 0, CREW_ESTATE (no unfinished task),
 * CREW_EPROTO. join: waits until no task is unfinished: 0, CREW_ETIMEDOUT,
 * CREW_EPROTO. Both CREW_ENOTSUP on a ring that is not joinable. */
int crew__ring_task_done(crew__ring_view *v);
int crew__ring_join(crew__ring_view *v, double timeout);
/* Snapshot counts: messages queued (puts - gets, 0 when no bytes are
 * queued, never more than fit) and unfinished tasks (0 if not joinable). */
int crew__ring_counts(crew__ring_view *v, uint64_t *messages, uint64_t *unfinished);
/* Whether a message is ready at the head, without taking it: waits up to
 * timeout. 1 (ready; *len_out, may be NULL, gets its length), 0 (none by
 * the deadline, or a poll found none), CREW_EOF (closed and drained),
 * CREW_EPIPE (peer gone and drained), CREW_EPROTO. */
int crew__ring_peek(crew__ring_view *v, size_t *len_out, double timeout,
                    const crew__ring_peer *peer);

/* 0, or CREW_EPROTO when the ring is (or is now found) broken. */
int crew__ring_check(crew__ring_view *v);

/* Marks the ring broken for every process (and for v's handle), wakes every
 * waiter; returns CREW_EPROTO. */
int crew__ring_break(crew__ring_view *v);

/* A snapshot: bytes queued (payload, headers, padding), closed, lock
 * recoveries. 0 or CREW_EPROTO. */
int crew__ring_status(crew__ring_view *v, uint64_t *used, bool *closed, unsigned *recoveries);

#endif /* CREW__RING_H */
