/*
 * ring.c -- the shared-memory message ring under crew_queue (queue.c, one
 * ring) and crew_pipe (pipe.c, two rings in one memfd). Its interface is
 * ring.h; docs/queue.md tells the same story with the layout drawn.
 *
 * DESIGN
 *
 * Layout. One memfd mapping holds a ring header (one page) and a data area
 * of `cap` bytes (a multiple of 8). Messages are records laid end to end:
 * an 8-byte header (u32 length, u32 reserved) and the payload padded to 8.
 * A record never wraps: when one does not fit before the end of the area,
 * the producer writes a SKIP header there and puts the record at offset 0,
 * so every message is contiguous and can be handed out in place. `tail`
 * (where producers write) and `head` (where consumers read) are 64-bit byte
 * counters that only grow; offset = counter % cap, bytes used = tail - head.
 *
 * Who touches what. Producers serialise among themselves on prod_lock and
 * consumers on cons_lock (a two-lock queue): a producer holds prod_lock
 * while it copies its record in past `tail` and then publishes it with one
 * release store of `tail`; a consumer holds cons_lock while it copies the
 * record at `head` out and then frees it with one release store of `head`.
 * A producer and a consumer therefore copy at the same time, which is what
 * streaming needs. A producer reads `head` (acquire) only to compute free
 * space; a consumer reads `tail` (acquire) only to see data. Lock order:
 * prod_lock before cons_lock; only a producer that must wrap an empty ring
 * takes both (below). Nobody holds a lock while it sleeps for data or space.
 *
 * Wrapping an empty ring. A record of `need` bytes that does not fit in the
 * `room` left before the end needs used + room + need <= cap. When the ring
 * is empty that can still fail (a big record, offset mid-ring) and no
 * consumer may come by to move `head`; so the producer commits a SKIP record
 * (tail += room), then takes cons_lock and consumes it itself (head = tail).
 *
 * Wake-up protocol (no lost wake-up). Each direction has an event: a 32-bit
 * futex word `*_seq` and a count `*_waiters`. A waiter spins for
 * CREW__SPIN_NS on the condition (tail moved / head moved / closed); then it
 * increments *_waiters (seq_cst), loads *_seq, re-checks the condition and
 * only then sleeps on *_seq with the value it loaded.
 * A waker publishes its store (tail or head) and then reads *_waiters with
 * a read-modify-write (fetch_add 0, seq_cst); only if it is non-zero does it
 * bump *_seq and FUTEX_WAKE every sleeper. Both sides' RMWs on *_waiters
 * fall in that word's single modification order: either the waiter's
 * increment comes first (the waker reads >= 1, bumps and wakes: the sleeper
 * either already sleeps and is woken, or its futex_wait finds *_seq changed
 * and returns at once) or the waker's RMW comes first (then the waiter's
 * increment reads from it, synchronises with it, and its re-check sees the
 * published store, so it does not sleep). The fast path with nobody asleep
 * is one locked instruction: no system call. Waking every sleeper (not one)
 * keeps the argument simple with variable-size records and means a sleeper
 * killed just after being woken cannot swallow the wake-up others needed.
 *
 * Crash argument (a process SIGKILLed at any instruction). Shared state only
 * changes through single stores that move from one consistent state to the
 * next: a record becomes visible with the `tail` store, is freed with the
 * `head` store, and a wrap is two such steps (commit SKIP, then consume it).
 * So whatever a dead process had done, the ring is consistent; the only
 * thing it can leave behind is a lock it held. The locks are the words of
 * crew_lock's core (sync/lock.c): the owner's (pid << 32 | tid); a waiter
 * that finds the lock held checks between its sleep slices (4 ms doubling
 * to 50 ms) whether the owner is still alive (crew__thread_alive: the
 * thread exists and is not a zombie) and, if not, takes the lock over with
 * a CAS from the exact word it saw (counted in `recoveries`; the lock is
 * marked consistent at once). Nothing needs repairing: a producer that died mid-copy never published
 * its record (its bytes lie beyond `tail` and are overwritten); a consumer
 * that died mid-copy never freed its record (it stays at `head` and the next
 * consumer gets it), and one that died after the `head` store took its
 * message with it -- at most once for the message in flight. A waiter
 * killed while asleep leaves *_waiters one too high: correct, but every
 * later put/get on that side then makes one futex_wake system call.
 * Thread ids are recycled by the kernel (pid_max); a dead owner whose ids are
 * reused before anyone looks would look alive. That window is the time to
 * cycle through every pid on the machine, and is accepted.
 *
 * HOSTILE PEERS (a process that writes anything, anywhere, any time). The
 * crash argument assumes every process runs this code; a buggy or hostile
 * one can instead write garbage over the header and the data. The promise
 * then is smaller but still firm: no other process crashes, hangs past its
 * timeout or has memory outside the ring written; at worst the ring stops
 * working (denial of service on that one object). How:
 *  - The memfd is sealed (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) at
 *    creation and attach refuses an fd without those seals: its size is
 *    fixed, so no access to the mapping can SIGBUS.
 *  - Geometry (cap, max_msg, size) is checked once at create/attach and
 *    kept in the process's crew__ring_view; calls never divide by or bound
 *    anything with a value read from the header. A call finding the
 *    header's constants changed breaks the ring.
 *  - Values used are read once and checked first: tail and head multiples
 *    of 8, head <= tail <= head + cap; a record's length <= max_msg, and
 *    the record inside what was committed and before the end of the area;
 *    a SKIP never at offset 0 and inside what was committed. Offsets are
 *    counter % (local cap), so every access lies in the data area and is
 *    8-aligned. A violation breaks the ring: `broken` set in the header
 *    (every call checks it first) and in the handle (so a peer clearing
 *    the shared flag does not make it usable again for us), every waiter
 *    woken; that call and every later one return CREW_EPROTO.
 *  - Every loop is bounded by something local: the record loop by its two
 *    turns (a SKIP, then a record at offset 0), an empty-ring wrap by one
 *    per put, lock and event waits by the caller's deadline, which no
 *    flipping of a lock word or a counter can skip (crew__lw_acquire looks
 *    at it on every turn, or after at most 64 CASes lost on a word that
 *    looked free). A lock word naming no live thread, or no thread at all
 *    (pid 0: owners_only), is taken over (counted as a recovery); one
 *    naming a live thread that is not using the ring blocks like a held
 *    lock, up to the caller's timeout (close waits at most
 *    CREW__RING_CLOSE_WAIT, then closes without the lock). An unlock that
 *    finds someone else's id in the word breaks the ring (it was an
 *    assertion: one write could kill every process).
 *  - What a hostile peer can still do: make the ring broken, lose or forge
 *    messages, change the bytes of a message while a get_with callback reads
 *    them in place, and hold a lock (or never put) so that waiters time out.
 *
 * Joinable rings (ring_tasks.c has task_done and join; docs/queue.md the
 * whole story). unfinished = count << 1 | PENDING. A put counts its task
 * before its tail store, PENDING set around it and the tail to be published
 * in pending_tail (commit()); whoever takes prod_lock over from a producer
 * killed in between settles it (settle_pending): tail == pending_tail keeps
 * the count, anything else withdraws it. Only prod_lock's holder touches
 * the bit. A hostile peer can forge the count: join times out or returns
 * early, nothing else reads it.
 *
 * Message counts: `puts` / `gets`, written by each side's lock holder;
 * qsize is their difference clamped to what the bytes hold (0 when
 * tail == head). Close at once (crew__ring_close_drop): a close, then the
 * records are walked with the get's checks (head_record, bounded by the
 * committed bytes) and freed, their tasks counted done. Peek
 * (crew__ring_peek): a get that checks the head record and leaves it.
 *
 * Timeouts: deadlines are absolute (crew__deadline); a timeout of 0 never
 * sleeps and reports CREW_EAGAIN; a lock is "busy" for a poll only after a
 * spin, since a lock is held for one copy at most.
 */
#include "ipc/ring_impl.h"

#include <string.h>

#define SKIP_LEN 0xffffffffu
/* A pipe waiter's sleep slices, between peer-liveness checks. */
#define PEER_SLICE_MIN_NS 1000000u
#define PEER_SLICE_MAX_NS 32000000u
#define DEFAULT_CAPACITY (1u << 20)
#define MAX_CAPACITY (1ull << 40)

static inline uint64_t round8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }
static inline uint8_t *ring_data(const crew__ring *r)
{
    return (uint8_t *)r + CREW__RING_DATA_OFF;
}

/* ------------------------------------------------------------ deadlines */

/* The earlier of `d` and now + ns. */
static void slice_deadline(crew__deadline *out, const crew__deadline *d, uint64_t ns)
{
    crew__deadline_init(out, (double)ns * 1e-9);
    if (!d->forever && (d->at.tv_sec < out->at.tv_sec ||
                        (d->at.tv_sec == out->at.tv_sec && d->at.tv_nsec < out->at.tv_nsec)))
        out->at = d->at;
}

/* The shared half of breaking: the flag every process checks, and a wake-up
 * of every waiter so that it sees the flag now rather than at its deadline. */
static void ring_mark_broken(crew__ring *r)
{
    atomic_store_explicit(&r->broken, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&r->data_seq, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&r->space_seq, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&r->done_seq, 1, memory_order_seq_cst);
    crew__futex_wake(&r->data_seq, INT32_MAX);
    crew__futex_wake(&r->space_seq, INT32_MAX);
    crew__futex_wake(&r->done_seq, INT32_MAX);
}

int crew__ring_break(crew__ring_view *v)
{
    atomic_store_explicit(v->broken, true, memory_order_relaxed);
    ring_mark_broken(v->hdr);
    return CREW_EPROTO;
}

int crew__ring_check(crew__ring_view *v) { return ring_enter(v); }

/* ------------------------------------------------------------ locks */

/* A producer died holding prod_lock between counting its message as an
 * unfinished task and clearing PENDING (see "Joinable" in DESIGN): if its
 * tail store landed, the message is queued and only the bit is left to
 * clear; if not, the count is taken back. We hold prod_lock now, so nobody
 * else sets or clears the bit meanwhile (task_done moves only the count). */
static void settle_pending(crew__ring *r)
{
    uint64_t u = atomic_load_explicit(&r->unfinished, memory_order_relaxed);
    if (!(u & CREW__RING_PENDING))
        return;
    bool published = atomic_load_explicit(&r->tail, memory_order_relaxed) == rd64(&r->pending_tail);
    if (published || u < CREW__RING_ONE_TASK + CREW__RING_PENDING)
        atomic_fetch_and_explicit(&r->unfinished, ~(uint64_t)CREW__RING_PENDING,
                                  memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&r->unfinished, CREW__RING_ONE_TASK + CREW__RING_PENDING,
                                  memory_order_relaxed);
}

/* The slow half of taking a ring lock: crew_lock's core, with the ring's
 * rules (sync/lock.c, "Other users"): the caller's deadline, a spin even on
 * a poll, the ring's `broken` flag, any word naming no live thread taken
 * over. A lock held for one copy needs no repair after its owner's death
 * (the crash argument above): it is marked consistent at once. */
static int lock_slow(crew__ring_view *v, _Atomic uint64_t *w, uint64_t me, uint64_t seen,
                     lazy_deadline *ld)
{
    crew__lw_wait how = {.deadline = dl(ld), .broken = &v->hdr->broken,
                         .check_first = ld->timeout == 0, .spin = true, .owners_only = true};
    int rc = crew__lw_acquire(w, me, seen, &how);
    if (rc == CREW_EOWNERDEAD) {
        atomic_fetch_add_explicit(&v->hdr->recoveries, 1, memory_order_relaxed);
        (void)crew__lw_consistent(w, me); /* a peer's rewrite shows at unlock */
        if (w == &v->hdr->prod_lock && (v->flags & CREW__RING_JOINABLE))
            settle_pending(v->hdr);
        return 0;
    }
    if (rc == CREW_EPROTO)
        return ring_seen_broken(v);
    return rc; /* 0, CREW_ETIMEDOUT, CREW_EDEADLK (from a fill/read callback) */
}

static inline int lock_take(crew__ring_view *v, _Atomic uint64_t *w, lazy_deadline *d)
{
    uint64_t me = crew__lw_self(), seen = 0;
    if (CREW__LIKELY(atomic_compare_exchange_strong_explicit(w, &seen, me, memory_order_acquire,
                                                            memory_order_relaxed)))
        return 0;
    return lock_slow(v, w, me, seen, d);
}

/* Releases a lock this thread holds. false when the word no longer held our
 * id: someone else wrote it while we held it -- a false "owner is dead"
 * verdict, or a peer writing garbage. Either way two threads may have
 * shared the ring, so the caller breaks it (it used to be an assertion,
 * which let a peer kill us by writing one word). */
static inline bool lock_drop(_Atomic uint64_t *w)
{
    uint64_t me = crew__lw_self(), seen = me;
    if (CREW__LIKELY(atomic_compare_exchange_strong_explicit(w, &seen, 0, memory_order_release,
                                                            memory_order_relaxed)))
        return true;
    return crew__lw_release_slow(w, me, seen) == 0;
}

/* ------------------------------------------------------------ events */

/* Waits until *pos != seen or the ring is closed. Returns 0 (the condition
 * may hold: callers re-check under their lock), CREW_ETIMEDOUT, CREW_EPIPE
 * when the peer probe says the other side is gone, or CREW_EPROTO when the
 * ring was broken meanwhile. */
static int event_wait(crew__ring_view *v, _Atomic uint64_t *pos, uint64_t seen,
                      _Atomic uint32_t *seq, _Atomic uint32_t *waiters, const crew__deadline *d,
                      const crew__ring_peer *peer)
{
    crew__ring *r = v->hdr;
    uint64_t start = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(pos, memory_order_acquire) != seen ||
            atomic_load_explicit(&r->closed, memory_order_acquire))
            return 0;
        if (atomic_load_explicit(&r->broken, memory_order_acquire))
            return ring_seen_broken(v);
        crew__cpu_relax();
        if ((i & 63) == 0) {
            uint64_t now = crew__now_ns();
            if (start == 0)
                start = now;
            else if (now - start >= CREW__SPIN_NS)
                break;
        }
    }
    uint64_t slice_ns = PEER_SLICE_MIN_NS;
    for (;;) {
        if (crew__deadline_expired(d))
            return CREW_ETIMEDOUT;
        if (peer && peer->gone(peer->ctx))
            return CREW_EPIPE;
        atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
        uint32_t s = atomic_load_explicit(seq, memory_order_seq_cst);
        if (atomic_load_explicit(pos, memory_order_seq_cst) != seen ||
            atomic_load_explicit(&r->closed, memory_order_seq_cst) ||
            atomic_load_explicit(&r->broken, memory_order_seq_cst)) {
            atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
            return atomic_load_explicit(&r->broken, memory_order_relaxed) ? ring_seen_broken(v)
                                                                          : 0;
        }
        int rc;
        if (peer) {
            crew__deadline slice;
            slice_deadline(&slice, d, slice_ns);
            if (slice_ns < PEER_SLICE_MAX_NS)
                slice_ns *= 2;
            rc = crew__futex_wait(seq, s, &slice);
        } else {
            rc = crew__futex_wait(seq, s, d);
        }
        atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
        if (rc == 0)
            return 0;
        /* ETIMEDOUT (of a slice or of the caller) or EINTR: look again. */
    }
}

/* ------------------------------------------------------------ geometry */

int crew__ring_geometry(size_t capacity, size_t max_message, uint64_t *cap_out, uint64_t *max_out)
{
    uint64_t cap = capacity ? (uint64_t)capacity : DEFAULT_CAPACITY;
    if (cap > MAX_CAPACITY)
        return CREW_EINVAL;
    if (cap < 64)
        cap = 64;
    cap = round8(cap);
    uint64_t largest = cap - CREW__RING_HDR;
    if (largest > SKIP_LEN - 1)
        largest = SKIP_LEN - 1;
    if (max_message > largest)
        return CREW_EINVAL;
    *cap_out = cap;
    *max_out = max_message ? (uint64_t)max_message : largest;
    return 0;
}

size_t crew__ring_bytes(uint64_t cap)
{
    uint64_t page = 4096;
    return (size_t)((CREW__RING_DATA_OFF + cap + page - 1) & ~(page - 1));
}


void crew__ring_init(crew__ring_view *v, crew__ring *r, uint64_t cap, uint64_t max_msg,
                     uint32_t flags, _Atomic bool *broken)
{
    /* Fresh memfd pages are zero: only the constants need writing. */
    uint64_t bytes = crew__ring_bytes(cap);
    r->version = CREW__RING_VERSION;
    r->cap = cap;
    r->max_msg = max_msg;
    r->ring_size_lo = (uint32_t)bytes;
    r->ring_size_hi = (uint32_t)(bytes >> 32);
    r->flags = flags;
    atomic_store_explicit(&r->tail, 0, memory_order_relaxed);
    atomic_store_explicit(&r->head, 0, memory_order_relaxed);
    r->head_seen = 0;
    atomic_store_explicit(&r->closed, 0, memory_order_relaxed);
    r->magic = CREW__RING_MAGIC; /* last: a ring is valid once this reads right */
    *v = (crew__ring_view){
        .hdr = r, .cap = cap, .max_msg = max_msg, .flags = flags, .broken = broken};
}

int crew__ring_attach(crew__ring_view *v, crew__ring *r, size_t avail, _Atomic bool *broken)
{
    if (avail < CREW__RING_DATA_OFF || rd64(&r->magic) != CREW__RING_MAGIC ||
        rd32(&r->version) != CREW__RING_VERSION)
        return CREW_EINVAL;
    /* A crew ring from here on: what is wrong with it is a protocol error,
     * and every process that uses it must hear of it. */
    uint64_t cap = rd64(&r->cap), max = rd64(&r->max_msg);
    uint32_t flags = rd32(&r->flags);
    uint64_t bytes = (uint64_t)rd32(&r->ring_size_lo) | (uint64_t)rd32(&r->ring_size_hi) << 32;
    if (cap < 64 || cap % 8 != 0 || cap > MAX_CAPACITY || bytes != crew__ring_bytes(cap) ||
        bytes > avail || max > cap - CREW__RING_HDR || max > SKIP_LEN - 1 ||
        (flags & ~CREW__RING_JOINABLE) != 0) {
        ring_mark_broken(r);
        return CREW_EPROTO;
    }
    if (atomic_load_explicit(&r->broken, memory_order_acquire))
        return CREW_EPROTO;
    *v = (crew__ring_view){.hdr = r, .cap = cap, .max_msg = max, .flags = flags, .broken = broken};
    return 0;
}

int crew__ring_status(crew__ring_view *v, uint64_t *used, bool *closed, unsigned *recoveries)
{
    int rc = ring_enter(v);
    if (rc != 0)
        return rc;
    crew__ring *r = v->hdr;
    /* head first: it only grows and never passes tail, so a tail read after
     * it is never below it -- unless someone wrote garbage. Without the
     * locks, tail - head may legitimately exceed cap (both moved between
     * the two reads): clamp. */
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (t < h)
        return crew__ring_break(v);
    *used = t - h < v->cap ? t - h : v->cap;
    *closed = atomic_load_explicit(&r->closed, memory_order_acquire) != 0;
    *recoveries = atomic_load_explicit(&r->recoveries, memory_order_relaxed);
    return 0;
}

/* ------------------------------------------------------------ put */

/* One more message in a counter only the lock holder writes (others read
 * it for qsize): no RMW needed. */
static inline void count_one(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Publishes a record ending at `next` (prod_lock held). A joinable ring
 * counts the task before the tail store, so no consumer can task_done a
 * message not yet counted, with PENDING set around the store so that the
 * next holder of prod_lock can settle a put that died in between
 * (settle_pending). The counter of puts is the producers' own: a plain
 * store under the lock. */
static inline void commit(crew__ring_view *v, uint64_t next)
{
    crew__ring *r = v->hdr;
    bool joinable = v->flags & CREW__RING_JOINABLE;
    if (joinable) {
        r->pending_tail = next;
        atomic_fetch_add_explicit(&r->unfinished, CREW__RING_ONE_TASK + CREW__RING_PENDING,
                                  memory_order_relaxed);
    }
    atomic_store_explicit(&r->tail, next, memory_order_release);
    count_one(&r->puts);
    if (joinable)
        atomic_fetch_and_explicit(&r->unfinished, ~(uint64_t)CREW__RING_PENDING,
                                  memory_order_release);
}

static inline void write_header(uint8_t *at, uint32_t len)
{
    uint32_t h[2] = {len, 0};
    memcpy(at, h, sizeof h);
}

/* The ring is empty (tail == head) at an offset where `need` does not fit
 * before the end: commit a SKIP record over the rest, then consume it
 * ourselves. Called and returns with prod_lock held. */
static int wrap_empty(crew__ring_view *v, uint64_t t, uint64_t room, lazy_deadline *d)
{
    crew__ring *r = v->hdr;
    write_header(ring_data(r) + t % v->cap, SKIP_LEN);
    atomic_store_explicit(&r->tail, t + room, memory_order_release);
    int rc = lock_take(v, &r->cons_lock, d);
    if (rc != 0)
        return rc; /* the SKIP record stays queued; any consumer eats it */
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == t)
        atomic_store_explicit(&r->head, t + room, memory_order_release);
    if (!lock_drop(&r->cons_lock))
        return crew__ring_break(v);
    event_signal(&r->space_seq, &r->space_waiters);
    return 0;
}

int crew__ring_put(crew__ring_view *v, const void *src, size_t len, crew__fill_fn fill,
                   void *arg, double timeout, const crew__ring_peer *peer)
{
    int rc = ring_enter(v);
    if (rc != 0)
        return rc;
    if (len > v->max_msg)
        return CREW_E2BIG;
    crew__ring *r = v->hdr;
    const uint64_t cap = v->cap;
    const uint64_t need = CREW__RING_HDR + round8(len);
    const bool poll = timeout == 0;
    lazy_deadline d = {.timeout = timeout};

    for (;;) {
        rc = lock_take(v, &r->prod_lock, &d);
        if (rc != 0)
            return rc == CREW_ETIMEDOUT && poll ? CREW_EAGAIN : rc;
        uint64_t t, h;
        bool wrapped = false;
        for (;;) {
            if (atomic_load_explicit(&r->closed, memory_order_relaxed)) {
                if (!lock_drop(&r->prod_lock))
                    return crew__ring_break(v);
                return CREW_ECLOSED;
            }
            t = atomic_load_explicit(&r->tail, memory_order_relaxed);
            if (t % 8 != 0)
                goto corrupt; /* every record is a multiple of 8 long */
            h = rd64(&r->head_seen);
            uint64_t off = t % cap, room = cap - off;
            uint64_t want = need <= room ? need : room + need;
            /* head_seen is only a hint (a stale head: it under-states the
             * free space); one out of range is treated as "no room". */
            if (h > t || t - h > cap || t - h + want > cap) {
                /* Not enough room by the old reading: read `head` again
                 * (acquire: consumers are done with what it frees). A
                 * producer that died holding the lock leaves head_seen
                 * stale, never ahead, which is harmless. Consumers never
                 * pass tail, and tail never gets more than cap ahead. */
                h = atomic_load_explicit(&r->head, memory_order_acquire);
                if (h > t || t - h > cap)
                    goto corrupt;
                r->head_seen = h;
            }
            uint64_t used = t - h;
            uint64_t at, next;
            if (need <= room && used + need <= cap) {
                at = off;
                next = t + need;
            } else if (need > room && used + room + need <= cap) {
                write_header(ring_data(r) + off, SKIP_LEN);
                at = 0;
                next = t + room + need;
            } else if (need > room && used == 0) {
                /* Once wrapped, tail sits at offset 0 where any record fits;
                 * we hold prod_lock, so only a peer writing tail could make
                 * us wrap again. */
                if (wrapped)
                    goto corrupt;
                wrapped = true;
                rc = wrap_empty(v, t, room, &d);
                if (rc == CREW_EPROTO)
                    goto corrupt;
                if (rc != 0) {
                    if (!lock_drop(&r->prod_lock))
                        return crew__ring_break(v);
                    return rc == CREW_ETIMEDOUT && poll ? CREW_EAGAIN : rc;
                }
                continue;
            } else {
                break; /* full: wait for space below */
            }
            uint8_t *rec = ring_data(r) + at;
            write_header(rec, (uint32_t)len);
            if (fill)
                fill(rec + CREW__RING_HDR, len, arg);
            else if (len)
                memcpy(rec + CREW__RING_HDR, src, len);
            commit(v, next);
            if (!lock_drop(&r->prod_lock))
                return crew__ring_break(v);
            event_signal(&r->data_seq, &r->data_waiters);
            return 0;
        }
        if (!lock_drop(&r->prod_lock))
            return crew__ring_break(v);
        if (poll)
            return CREW_EAGAIN;
        /* Every turn waits first, and a peer moving head back and forth
         * could end every wait at once: the deadline bounds the turns. */
        if (crew__deadline_expired(dl(&d)))
            return CREW_ETIMEDOUT;
        rc = event_wait(v, &r->head, h, &r->space_seq, &r->space_waiters, dl(&d), peer);
        if (rc != 0)
            return rc;
    }
corrupt:
    (void)lock_drop(&r->prod_lock);
    return crew__ring_break(v);
}

/* ------------------------------------------------------------ get */

/* Under cons_lock, with t the tail read after `closed`: moves *h past a
 * SKIP record if one lies at the head (*freed then), and finds the record
 * there. Returns 1 (*rec, *mlen: the record at *h), 0 (empty: *h == t) or
 * -1 (corrupted: the caller breaks the ring). At most two turns: a SKIP,
 * then a record at offset 0. */
static int head_record(crew__ring_view *v, uint64_t *h, uint64_t t, const uint8_t **rec,
                       uint32_t *mlen, bool *freed)
{
    crew__ring *r = v->hdr;
    const uint64_t cap = v->cap;
    while (t != *h) {
        uint64_t off = *h % cap;
        const uint8_t *at = ring_data(r) + off;
        uint32_t len = rd32(at);
        if (len == SKIP_LEN) {
            /* Only a record that does not fit before the end is skipped: a
             * SKIP never lies at offset 0 (so two never follow each other),
             * and it was committed whole. */
            if (off == 0 || cap - off > t - *h)
                return -1;
            *h += cap - off;
            atomic_store_explicit(&r->head, *h, memory_order_release);
            *freed = true;
            continue;
        }
        /* Committed whole, and never wrapping past the end. */
        uint64_t size = CREW__RING_HDR + round8(len);
        if (len > v->max_msg || size > t - *h || size > cap - off)
            return -1;
        *rec = at;
        *mlen = len;
        return 1;
    }
    return 0;
}

/* Takes cons_lock and reads the head and tail (checked). 0 with the lock
 * held, the lock's status, or CREW_EPROTO (corrupted; lock dropped). */
static int cons_enter(crew__ring_view *v, lazy_deadline *d, uint64_t *h, uint64_t *t,
                      bool *closed)
{
    crew__ring *r = v->hdr;
    int rc = lock_take(v, &r->cons_lock, d);
    if (rc != 0)
        return rc;
    *h = atomic_load_explicit(&r->head, memory_order_relaxed);
    /* `closed` before `tail`: close() takes prod_lock, so every put that
     * will ever commit has committed before closed reads 1. */
    *closed = atomic_load_explicit(&r->closed, memory_order_acquire);
    *t = atomic_load_explicit(&r->tail, memory_order_acquire);
    /* Records are multiples of 8; consumers never pass tail; producers
     * never get more than cap ahead of head. */
    if ((*h | *t) % 8 != 0 || *t < *h || *t - *h > v->cap) {
        (void)lock_drop(&r->cons_lock);
        return crew__ring_break(v);
    }
    return 0;
}

/* Get, or (peek) only look: a found message is left queued and the call
 * returns 1. An empty ring at the deadline is CREW_EAGAIN / CREW_ETIMEDOUT
 * for a get and 0 for a peek. */
static int ring_get(crew__ring_view *v, void *buf, size_t bufcap, size_t *len_out,
                    crew__read_fn fn, void *arg, double timeout, const crew__ring_peer *peer,
                    bool peek)
{
    int rc = ring_enter(v);
    if (rc != 0)
        return rc;
    crew__ring *r = v->hdr;
    const bool poll = timeout == 0;
    bool peer_gone = false;
    lazy_deadline d = {.timeout = timeout};

    for (;;) {
        uint64_t h, t;
        bool closed, freed = false;
        rc = cons_enter(v, &d, &h, &t, &closed);
        if (rc != 0)
            return rc == CREW_ETIMEDOUT && poll ? (peek ? 0 : CREW_EAGAIN) : rc;
        const uint8_t *rec;
        uint32_t mlen;
        int found = head_record(v, &h, t, &rec, &mlen, &freed);
        if (found < 0)
            goto corrupt;
        if (found) {
            if (len_out)
                *len_out = mlen;
            bool take = !peek && (fn || mlen <= bufcap);
            if (take) {
                if (fn)
                    fn(rec + CREW__RING_HDR, mlen, arg);
                else if (mlen)
                    memcpy(buf, rec + CREW__RING_HDR, mlen);
                atomic_store_explicit(&r->head, h + CREW__RING_HDR + round8(mlen),
                                      memory_order_release);
                count_one(&r->gets);
                freed = true;
            }
            if (!lock_drop(&r->cons_lock))
                return crew__ring_break(v);
            if (freed)
                event_signal(&r->space_seq, &r->space_waiters);
            return peek ? 1 : take ? 0 : CREW_E2BIG;
        }
        if (!lock_drop(&r->cons_lock))
            return crew__ring_break(v);
        if (freed)
            event_signal(&r->space_seq, &r->space_waiters);
        if (closed)
            return CREW_EOF;
        if (peer_gone)
            return CREW_EPIPE;
        if (poll)
            return peek ? 0 : CREW_EAGAIN;
        /* As in put: the deadline bounds the turns, however tail moves. */
        if (crew__deadline_expired(dl(&d)))
            return peek ? 0 : CREW_ETIMEDOUT;
        rc = event_wait(v, &r->tail, t, &r->data_seq, &r->data_waiters, dl(&d), peer);
        if (rc == CREW_EPIPE)
            peer_gone = true; /* look once more: it may have sent before dying */
        else if (rc == CREW_ETIMEDOUT && peek)
            return 0;
        else if (rc != 0)
            return rc;
    }
corrupt:
    (void)lock_drop(&r->cons_lock);
    return crew__ring_break(v);
}

int crew__ring_get(crew__ring_view *v, void *buf, size_t bufcap, size_t *len_out,
                   crew__read_fn fn, void *arg, double timeout, const crew__ring_peer *peer)
{
    return ring_get(v, buf, bufcap, len_out, fn, arg, timeout, peer, false);
}

int crew__ring_peek(crew__ring_view *v, size_t *len_out, double timeout,
                    const crew__ring_peer *peer)
{
    return ring_get(v, NULL, 0, len_out, NULL, NULL, timeout, peer, true);
}

/* Dropped messages will never be task_done'd: count them done (Python's
 * shutdown(immediate=True) does the same), waking join when none is left.
 * Clamped at 0: consumers may have done some already. */
static void tasks_dropped(crew__ring *r, uint64_t n)
{
    uint64_t u = atomic_load_explicit(&r->unfinished, memory_order_relaxed), nu;
    do {
        uint64_t count = u >> 1;
        nu = (count > n ? count - n : 0) << 1 | (u & CREW__RING_PENDING);
    } while (!atomic_compare_exchange_weak_explicit(&r->unfinished, &u, nu, memory_order_seq_cst,
                                                    memory_order_relaxed));
    if (nu >> 1 == 0 && u >> 1 != 0)
        event_signal(&r->done_seq, &r->done_waiters);
}

/* Under cons_lock: frees every queued record. 0 and *n the messages
 * dropped, or -1 (corrupted). Bounded: each record is at least 8 bytes of
 * what was committed. */
static int drop_all(crew__ring_view *v, uint64_t h, uint64_t t, uint64_t *n)
{
    crew__ring *r = v->hdr;
    bool freed = false;
    *n = 0;
    for (;;) {
        const uint8_t *rec;
        uint32_t mlen;
        int found = head_record(v, &h, t, &rec, &mlen, &freed);
        if (found <= 0)
            return found;
        h += CREW__RING_HDR + round8(mlen);
        atomic_store_explicit(&r->head, h, memory_order_release);
        count_one(&r->gets);
        ++*n;
    }
}

int crew__ring_close_drop(crew__ring_view *v, double lock_wait, uint64_t *dropped)
{
    if (dropped)
        *dropped = 0;
    int rc = crew__ring_close(v, lock_wait);
    if (rc != 0)
        return rc;
    crew__ring *r = v->hdr;
    lazy_deadline bounded = {.timeout = lock_wait};
    uint64_t h, t, n = 0;
    bool closed;
    rc = cons_enter(v, &bounded, &h, &t, &closed);
    if (rc == CREW_ETIMEDOUT || rc == CREW_EDEADLK)
        return 0; /* a get holds the lock past lock_wait: gets drain the rest */
    if (rc != 0)
        return rc;
    if (drop_all(v, h, t, &n) < 0) {
        (void)lock_drop(&r->cons_lock);
        return crew__ring_break(v);
    }
    if (!lock_drop(&r->cons_lock))
        return crew__ring_break(v);
    event_signal(&r->space_seq, &r->space_waiters);
    if (dropped)
        *dropped = n;
    if (n && (v->flags & CREW__RING_JOINABLE))
        tasks_dropped(v->hdr, n);
    return 0;
}

int crew__ring_close(crew__ring_view *v, double lock_wait)
{
    int rc = ring_enter(v);
    if (rc != 0)
        return rc;
    crew__ring *r = v->hdr;
    /* Under prod_lock so that a put either committed before the close or
     * sees it: consumers that read `closed` then `tail` see the final tail.
     * But not at any price: a lock held past lock_wait (a stalled put_with
     * callback, or a peer that wrote a live thread's id into the word) does
     * not stop the close, and that one put may then commit after consumers
     * have seen EOF. */
    lazy_deadline bounded = {.timeout = lock_wait};
    rc = lock_take(v, &r->prod_lock, &bounded);
    if (rc == CREW_EPROTO)
        return rc;
    atomic_store_explicit(&r->closed, 1, memory_order_seq_cst);
    bool lock_ok = rc != 0 || lock_drop(&r->prod_lock);
    atomic_fetch_add_explicit(&r->data_seq, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&r->space_seq, 1, memory_order_seq_cst);
    crew__futex_wake(&r->data_seq, INT32_MAX);
    crew__futex_wake(&r->space_seq, INT32_MAX);
    return lock_ok ? 0 : crew__ring_break(v);
}
