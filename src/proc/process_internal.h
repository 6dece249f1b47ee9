/*
 * process_internal.h -- what the process files share (process.c,
 * forkserver.c, child.c, request.c, spawn.c, fnref.c; from the top down:
 * none calls a file above it). Never installed.
 *
 * A child that is not a plain fork (spawn, forkserver worker) receives one
 * "start request": the task function as (module, offset), the argument bytes,
 * its name, signal mask and the fd numbers it must hold. The request travels
 * as one SOCK_SEQPACKET message (fds ride along as SCM_RIGHTS); an argument
 * larger than CREW__INLINE_ARG travels in a sealed-off memfd instead.
 */
#ifndef CREW__PROCESS_INTERNAL_H
#define CREW__PROCESS_INTERNAL_H

#include "core/internal.h"

#include <limits.h>
#include <signal.h>

/* The environment variable that marks an exec'd crew child:
 * "s:<fd>:<ppid>" for a spawn child, "f:<fd>:<ppid>" for a forkserver. */
#define CREW__CHILD_ENV "CREW_CHILD"

#define CREW__REQ_MAGIC 0x43524557u /* "CREW" */
#define CREW__INLINE_ARG (64u * 1024u)
#define CREW__MAX_PASS_FDS 240 /* SCM_MAX_FD is 253; stdio and the arg memfd ride too */
#define CREW__BUILD_ID_MAX 32
/* The largest handle blob: CREW_MAX_HANDLES entries of a 12-byte header and
 * a name of CREW_HANDLE_NAME_MAX bytes, its NUL and padding. */
#define CREW__HANDLES_MAX_BYTES (CREW_MAX_HANDLES * (12 + CREW_HANDLE_NAME_MAX + 4))

/* A function pointer as something another process image can resolve. */
typedef struct crew__fnref {
    uint64_t offset;                  /* from the module's load base */
    uint32_t build_id_len;            /* 0: the module has no GNU build id */
    uint8_t build_id[CREW__BUILD_ID_MAX];
    char module[PATH_MAX];            /* "" is the main executable */
} crew__fnref;

/* Parent side: the module holding fn and fn's offset in it. CREW_ENOTFOUND
 * if fn is in no loaded module (e.g. on the heap or stack). */
int crew__fnref_make(crew__fnref *ref, uintptr_t fn);
/* Child side: back to an address in this image. Loads a module that is not
 * loaded yet (a dlopen'ed module of the parent) with dlopen. CREW_ENOTFOUND
 * when the module is missing, has another build id, or the address is not
 * in an executable segment. */
int crew__fnref_resolve(const crew__fnref *ref, uintptr_t *fn);

/* The wire format of a start request (host byte order: both ends are the
 * same program on the same machine). Followed by int32 target[n_fds],
 * module[module_len], name[name_len], handles[handles_len] (the handle
 * blob of handles.c), then -- 16-byte aligned, so a task may
 * read any type straight from its argument pointer -- the argument bytes
 * when they are inline. fds[i] sent with SCM_RIGHTS goes to target[i] in the
 * child; target -1 marks the memfd holding the argument. */
typedef struct crew__req {
    uint32_t magic;
    uint32_t flags;
    uint64_t fn_offset;
    uint64_t arg_len;
    uint32_t module_len, name_len, n_fds, build_id_len;
    int32_t parent_pid; /* the crew parent: the child dies if it is gone */
    uint32_t handles_len; /* bytes of the handle blob after the name (handles.c) */
    uint64_t sigmask[2]; /* the starting thread's blocked signals (1..128) */
    uint8_t build_id[CREW__BUILD_ID_MAX];
} crew__req;
_Static_assert(sizeof(crew__req) % 8 == 0, "targets follow the header aligned");
#define CREW__REQ_ARG_MEMFD 1u
#define CREW__REQ_FDS_ATTACHED 2u /* fds ride along (forkserver); else in place (spawn) */

static inline int32_t *crew__req_targets(crew__req *r) { return (int32_t *)(void *)(r + 1); }
static inline char *crew__req_module(crew__req *r) { return (char *)(crew__req_targets(r) + r->n_fds); }
static inline char *crew__req_name(crew__req *r) { return crew__req_module(r) + r->module_len; }
static inline char *crew__req_handles(crew__req *r) { return crew__req_name(r) + r->name_len; }
static inline size_t crew__req_arg_offset(const crew__req *r)
{
    size_t s = sizeof *r + (size_t)r->n_fds * sizeof(int32_t) + r->module_len + r->name_len +
               r->handles_len;
    return (s + 15) & ~(size_t)15;
}
static inline char *crew__req_arg(crew__req *r) { return (char *)r + crew__req_arg_offset(r); }
/* Bytes of the message (with_arg: including an inline argument). */
static inline size_t crew__req_size(const crew__req *r, bool with_arg)
{
    size_t s = crew__req_arg_offset(r);
    if (with_arg && !(r->flags & CREW__REQ_ARG_MEMFD))
        s += (size_t)r->arg_len;
    return s;
}

typedef struct crew__reply {
    int32_t status; /* 0 or a CREW_E* code */
    int32_t pid;
} crew__reply;

/* A request being built (parent side) or received (child side). */
typedef struct crew__msg {
    crew__req *req; /* heap buffer, req->... then the tail */
    size_t size;    /* bytes of the whole buffer */
    int fds[CREW__MAX_PASS_FDS + 4];
    int n_fds;     /* fds attached */
    int arg_fd;    /* sender: the memfd holding a large argument, or -1 */
    bool owns_fds; /* receiver: fds[] are ours to close */
} crew__msg;

/* request.c. Parent side: build the request for fn/arg/opts. It always
 * carries the caller's fds 0..2 (when open); with_fds: they and
 * opts->pass_fds ride along as SCM_RIGHTS (forkserver), else the child has
 * them in place already (spawn). */
int crew__msg_build(crew__msg *m, crew_process_fn fn, const void *arg, size_t len,
                    const crew_process_options *opts, bool with_fds, const void *handles,
                    size_t handles_len);
void crew__msg_free(crew__msg *m); /* frees the buffer, closes owned fds */
int crew__msg_send(int sock, const crew__msg *m);
/* Receive one request; CREW_EOF on orderly end of the channel. */
int crew__msg_recv(int sock, crew__msg *m);
/* The address of a received request's function in this image
 * (crew__fnref_resolve: may dlopen the module it names). */
int crew__req_resolve(crew__req *r, uintptr_t *fn);

/* child.c. The CREW_CHILD hand-shake, run before main() (docs/security.md):
 * 0 when this process is no crew child (no CREW_CHILD, or not of the crew
 * form); 's' (a spawn child) or 'f' (the forkserver) once the channel the
 * variable names is checked to come from our parent (SOCK_SEQPACKET,
 * SO_PEERCRED: our parent with our euid and egid), with the channel in
 * *fd and the parent in *parent. Exits 127 when the check fails. */
char crew__child_accept(int *fd, pid_t *parent);
/* A spawn child after the hand-shake: receive the request, resolve its
 * function, answer, run it (crew__child_run). Never returns. */
__attribute__((noreturn)) void crew__child_serve(int channel);

/* In a fresh child (spawn after exec, or forkserver worker after clone):
 * place the fds, set name/mask, map the argument, run fn and _exit with its
 * result. `channel` is closed before fn runs. Never returns. */
__attribute__((noreturn)) void crew__child_run(crew__msg *m, crew_process_fn fn, int channel);

/* Checks, in a fresh child, that the crew parent is still there, with
 * PR_SET_PDEATHSIG(SIGKILL) set first so there is no window. Exits at once
 * if the parent is gone. (child.h has the inline form, for the fork path.) */
void crew__child_tie_to_parent(pid_t parent);

/* Closes every fd but those in keep[0..n) (negative entries ignored). */
void crew__close_all_except(const int *keep, int n);

/* The common child epilogue: flush stdio, _exit(code). */
__attribute__((noreturn)) void crew__child_exit(int code);

/* spawn.c: exec /proc/self/exe as a crew child of kind 's' or 'f' with
 * `channel` (a socket end the child keeps at the same number) and keep_fds
 * (kept at the same numbers, close-on-exec cleared). Other inheritable fds
 * of the parent get through the exec too: the child closes them first thing
 * (crew__close_all_except). The child starts with every signal blocked and
 * restores the intended mask itself. Returns the pid, or -errno of the exec
 * (the failed child is already reaped). */
pid_t crew__spawn_exec(char kind, int channel, const int *keep_fds, size_t n_keep);

/* forkserver.c: crew__spawn_exec run on crew's keeper thread, which lives
 * as long as the process, so the child's death signal (tied by Linux to the
 * parent *thread*) follows the process, not the calling thread. */
pid_t crew__keeper_spawn_exec(char kind, int channel, const int *keep_fds, size_t n_keep);

/* forkserver.c: start a child through the forkserver (starting it first if
 * needed). Returns the pid of a child of *this* process (CLONE_PARENT). */
pid_t crew__forkserver_fork(crew_process_fn fn, const void *arg, size_t len,
                            const crew_process_options *opts, const void *handles,
                            size_t handles_len, int *err);
/* The forkserver main loop, entered from the child dispatch (process.c).
 * Never returns. */
__attribute__((noreturn)) void crew__forkserver_main(int sock, pid_t parent);

/* handles.c. Parent side: the caller's options with one new fd per handle
 * appended to pass_fds (opts), those fds (closed by release, after the
 * start) and the blob that names them for the child. prepare: 0,
 * CREW_EINVAL (bad handles), CREW_E2BIG (too many, with pass_fds),
 * CREW_ENOMEM, or a dup_fd error (CREW_EPROTO: a broken queue or pipe). */
typedef struct crew__handles {
    crew_process_options opts;
    int *pass;
    int fds[CREW_MAX_HANDLES];
    size_t n_fds;
    uint8_t *blob;
    size_t blob_len;
} crew__handles;
int crew__handles_prepare(crew__handles *hd, const crew_process_options *in);
void crew__handles_release(crew__handles *hd);
/* Child side: the blob the crew_child_handle_* calls read (it must live as
 * long as the process: the request buffer or the fork child's copy). */
void crew__child_handles_set(void *blob, size_t len);

#endif /* CREW__PROCESS_INTERNAL_H */
