/* A setuid-root program linked to libcrew, started by an unprivileged user
 * who forges CREW_CHILD (naming a socket of his own on fd 3) and sends a
 * well-formed crew start request naming a library: the program must run
 * nothing -- not the request (which would dlopen the library as root), not
 * main() -- and exit 127. The control: the same forged request against a
 * plain (not setuid) copy run by the same user is served, as that user --
 * so the forged request is a real one and the test can fail.
 * Needs root (to make the setuid copy); skipped otherwise, with a message. */
#include "crew_test.h"

#include "../src/proc/process_internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define NOBODY 65534

/* The program under attack must hold crew's child dispatch (the constructor
 * in src/proc/process.c), as every program that starts crew children does
 * through crew_process_start or a pool. With a static libcrew only the
 * objects a program references are linked, and this test calls only the
 * request builder (src/proc/request.c), which needs nothing of process.c:
 * keep the dispatch in by naming it. */
__attribute__((used)) static int (*const keep_dispatch)(int, char **) = crew_child_main;

static void copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY);
    CHECK(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0700);
    CHECK(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        CHECK(write(out, buf, (size_t)n) == n);
    CHECK(n == 0);
    close(in);
    CHECK(fchown(out, 0, 0) == 0);
    CHECK(fchmod(out, mode) == 0); /* after chown, which clears set-id bits */
    close(out);
}

/* As `nobody`: exec `target` with a forged CREW_CHILD naming our socket on
 * fd 3 and send it a real start request for mod_marker_task in `module`.
 * Returns the target's exit code (100 + signal if it was killed). */
static int attack(const char *target, const char *module, const char *marker)
{
    pid_t a = fork();
    CHECK(a >= 0);
    if (a == 0) {
        if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) != 0)
            _exit(90);
        unsetenv("CREW_TEST_MARKER"); /* (our own dlopen marks nothing) */
        void *h = dlopen(module, RTLD_NOW);
        void *sym = h ? dlsym(h, "mod_marker_task") : NULL;
        if (!sym)
            _exit(91);
        crew_process_fn fn;
        memcpy(&fn, &sym, sizeof fn);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
            _exit(92);
        pid_t b = fork();
        if (b == 0) {
            char env[64];
            snprintf(env, sizeof env, "s:3:%d", (int)getppid());
            if (dup2(sv[1], 3) != 3)
                _exit(93);
            setenv("CREW_CHILD", env, 1);
            setenv("CREW_TEST_MARKER", marker, 1);
            execl(target, target, (char *)NULL);
            _exit(94);
        }
        close(sv[1]);
        crew__msg m;
        int x = 1;
        if (crew__msg_build(&m, fn, &x, sizeof x, NULL, false, NULL, 0) != 0)
            _exit(95);
        (void)crew__msg_send(sv[0], &m); /* a refusing child never reads it */
        crew__msg_free(&m);
        int st = 0;
        while (waitpid(b, &st, 0) < 0)
            ;
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
    }
    int st = test_wait(a);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_forged_child_request(void)
{
    if (geteuid() != 0) {
        printf("# skipped: making a setuid copy needs root\n");
        return;
    }
    char dir[] = "/tmp/crew-setuid-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chmod(dir, 01777) == 0);
    char suid[PATH_MAX], plain[PATH_MAX], module[PATH_MAX], marker[PATH_MAX];
    snprintf(suid, sizeof suid, "%s/suid", dir);
    snprintf(plain, sizeof plain, "%s/plain", dir);
    snprintf(module, sizeof module, "%s/libmod_marker.so", dir);
    snprintf(marker, sizeof marker, "%s/mark", dir);
    copy_file("/proc/self/exe", suid, 04755);
    copy_file("/proc/self/exe", plain, 0755);
    copy_file(CREW_TEST_MODULE_DIR "/libmod_marker.so", module, 0755);

    /* control: a plain copy serves the request, as nobody */
    int st = attack(plain, module, marker);
    CHECK_EQ(st, 7);
    char buf[32] = {0};
    int fd = open(marker, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(read(fd, buf, sizeof buf - 1) > 0);
    close(fd);
    CHECK_EQ(atoi(buf), NOBODY);
    CHECK(unlink(marker) == 0);

    /* the setuid copy runs nothing */
    st = attack(suid, module, marker);
    CHECK_EQ(st, 127);
    CHECK(access(marker, F_OK) != 0); /* the module was never loaded */

    unlink(suid);
    unlink(plain);
    unlink(module);
    rmdir(dir);
}

static const test_case cases[] = {TEST_CASE(test_forged_child_request)};
TEST_MAIN_NOHELPERS(cases)
