/* The measure section of crew.h, which `crew compare` uses for its memory
 * figures: crew_mem_usage_get (RSS, PSS, private, from smaps_rollup) and
 * crew_proc_children (children and descendants). Checked against memory and
 * processes the test makes itself. */
#include "crew_test.h"

#include <stdbool.h>
#include <sys/mman.h>

#define MIB (1024u * 1024u)

static void test_mem_self(void)
{
    crew_mem_usage a, b;
    CHECK_OK(crew_mem_usage_get(0, &a));
    CHECK(a.rss > 0 && a.pss > 0);
    CHECK(a.private_bytes <= a.rss);
    CHECK(a.pss <= a.rss + 4096);
    /* 16 MiB touched: RSS and private grow by about that much */
    size_t len = 16 * MIB;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 1, len);
    CHECK_OK(crew_mem_usage_get(getpid(), &b));
    CHECK(b.rss >= a.rss + 15 * MIB);
    CHECK(b.private_bytes >= a.private_bytes + 15 * MIB);
    CHECK(b.pss >= a.pss + 15 * MIB);
    munmap(p, len);
}

static void test_mem_shared_pages(void)
{
    /* 16 MiB shared with a child: the parent's PSS counts half of it, its
     * RSS all of it -- what makes PSS the right sum for a process pool */
    size_t len = 16 * MIB;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 1, len);
    int go[2], ready[2];
    CHECK(pipe(go) == 0 && pipe(ready) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        volatile unsigned sum = 0;
        for (size_t i = 0; i < len; i += 4096)
            sum += p[i]; /* map every page in the child too */
        char c = sum == 0 ? 'r' : 'R'; /* uses sum: the reads are not optimised away */
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(1);
        _exit(0);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    crew_mem_usage self, child;
    CHECK_OK(crew_mem_usage_get(0, &self));
    CHECK_OK(crew_mem_usage_get(pid, &child));
    CHECK(child.rss >= len);
    CHECK(child.shared_bytes >= len);
    /* the child's share of the region is half of it (plus its own pages) */
    CHECK(child.pss < child.rss - len / 4);
    CHECK(self.shared_bytes >= len);
    /* The tree sum (this process and the child) counts the region once in
     * PSS, twice in RSS: what "memory per idle worker" is built on. */
    crew_mem_usage tree, child_tree;
    CHECK_OK(crew_mem_usage_tree(0, &tree));
    CHECK_OK(crew_mem_usage_tree(pid, &child_tree)); /* a leaf: just the child */
    CHECK(tree.rss >= 2 * len);
    CHECK(tree.pss >= len && tree.pss < tree.rss - len / 2);
    CHECK(tree.rss > self.rss && tree.pss > self.pss);
    CHECK(child_tree.rss >= len && child_tree.rss < tree.rss);
    CHECK(write(go[1], "g", 1) == 1);
    CHECK(WIFEXITED(test_wait(pid)));
    close(go[0]), close(go[1]), close(ready[0]), close(ready[1]);
    munmap(p, len);
}

static void test_mem_errors_and_zombie(void)
{
    crew_mem_usage u;
    CHECK_ERR(crew_mem_usage_get(0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_mem_usage_get(-1, &u), CREW_EINVAL);
    CHECK_ERR(crew_mem_usage_get(0x7ffffff0, &u), CREW_ESRCH);
    /* a zombie holds no memory any more */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    siginfo_t si;
    CHECK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0);
    memset(&u, 0xff, sizeof u);
    CHECK_OK(crew_mem_usage_get(pid, &u));
    CHECK_EQ(u.rss, 0);
    CHECK_EQ(u.pss, 0);
    test_wait(pid);
    CHECK_ERR(crew_mem_usage_get(pid, &u), CREW_ESRCH);
}
/* crew_mem_usage_tree's errors (its sums: test_mem_shared_pages). */
static void test_mem_tree_errors(void)
{
    crew_mem_usage u;
    CHECK_ERR(crew_mem_usage_tree(0, NULL), CREW_EINVAL);
    CHECK_ERR(crew_mem_usage_tree(-1, &u), CREW_EINVAL);
    CHECK_ERR(crew_mem_usage_tree(0x7ffffff0, &u), CREW_ESRCH);
}

/* Children block on the pipe until the test closes its write end. */
static pid_t child_holding(int hold_rd, int hold_wr, int ready_wr)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(hold_wr); /* else the pipe never reports EOF */
        bool extra_grandchild = ready_wr >= 0;
        if (extra_grandchild) {
            pid_t g = fork();
            if (g == 0) {
                char c;
                while (read(hold_rd, &c, 1) > 0) {
                }
                _exit(0);
            }
            /* the grandchild exists now: tell the test */
            if (g < 0 || write(ready_wr, "r", 1) != 1)
                _exit(1);
        }
        char c;
        while (read(hold_rd, &c, 1) > 0) {
        }
        if (extra_grandchild)
            while (wait(NULL) > 0) {
            }
        _exit(0);
    }
    return pid;
}

static bool listed(const pid_t *v, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == pid)
            return true;
    return false;
}

static void test_children(void)
{
    size_t n = 99;
    pid_t v[64];
    CHECK_ERR(crew_proc_children(0, 0, v, 4, NULL), CREW_EINVAL);
    CHECK_ERR(crew_proc_children(0, 0, NULL, 4, &n), CREW_EINVAL);
    CHECK_ERR(crew_proc_children(-1, 0, v, 4, &n), CREW_EINVAL);
    CHECK_OK(crew_proc_children(0, 1, v, 64, &n));
    CHECK_EQ(n, 0);
    int fds0 = test_count_fds();

    int hold[2], ready[2];
    CHECK(pipe(hold) == 0 && pipe(ready) == 0);
    pid_t a = child_holding(hold[0], hold[1], -1), b = child_holding(hold[0], hold[1], -1),
          c = child_holding(hold[0], hold[1], ready[1]);
    close(hold[0]);
    char r;
    CHECK(read(ready[0], &r, 1) == 1); /* c has forked its grandchild */
    close(ready[0]);
    close(ready[1]);
    size_t total = 0;
    CHECK_OK(crew_proc_children(0, 1, v, 64, &total));
    CHECK_EQ(total, 4);
    CHECK(listed(v, total, a) && listed(v, total, b) && listed(v, total, c));
    /* children only */
    CHECK_OK(crew_proc_children(0, 0, v, 64, &n));
    CHECK_EQ(n, 3);
    CHECK(listed(v, n, a) && listed(v, n, b) && listed(v, n, c));
    /* of one child: its one child */
    CHECK_OK(crew_proc_children(c, 0, v, 64, &n));
    CHECK_EQ(n, 1);
    CHECK(!listed(v, n, a) && !listed(v, n, c));
    /* a small array: the count is still the full one */
    CHECK_OK(crew_proc_children(0, 1, v, 2, &n));
    CHECK_EQ(n, 4);
    CHECK_OK(crew_proc_children(0, 1, NULL, 0, &n));
    CHECK_EQ(n, 4);

    close(hold[1]);
    test_wait(a), test_wait(b), test_wait(c);
    CHECK_OK(crew_proc_children(0, 1, v, 64, &n));
    CHECK_EQ(n, 0);
    CHECK_EQ(test_count_fds(), fds0 - 0);
}

static const test_case cases[] = {
    TEST_CASE(test_mem_self),
    TEST_CASE(test_mem_shared_pages),
    TEST_CASE(test_mem_errors_and_zombie),
    TEST_CASE(test_children),
    TEST_CASE(test_mem_tree_errors),
};
TEST_MAIN_NOHELPERS(cases)
