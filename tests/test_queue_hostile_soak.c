/* Soak: the random hostile peer of hostile_peer.h against crew_queue and
 * crew_pipe for thousands of rounds. Each round a fresh queue (or pipe) is
 * used by this process and a forked child while the corrupter process
 * writes random bytes over its headers and data at random moments; neither
 * user may crash, hang, see an undocumented code, overrun a call's timeout
 * beyond slack, write outside its buffers, or see a broken object work
 * again. The seed is printed (CREW_HOSTILE_SEED to replay it);
 * CREW_HOSTILE_ROUNDS and CREW_HOSTILE_SECONDS bound the run per kind
 * (default 3000 rounds -- 300 under a sanitizer -- or 90 s, whichever ends
 * first). The short version runs in test_queue_hostile.c. */
// CREW_TEST_LABEL stress
// CREW_TEST_TIMEOUT 300
#include "hostile_peer.h"

static void test_random_peer_queue(void)
{
    hp_run run;
    hp_start(&run, 3000, 90);
    hp_tally t = {0};
    hp_queue_rounds(&run, &t);
    hp_report("queue", &run, &t);
    hp_finish(&run);
    CHECK(t.rounds > 0);
    CHECK_EQ(test_count_children(), 0); /* every round's child and the corrupter reaped */
}

static void test_random_peer_pipe(void)
{
    hp_run run;
    hp_start(&run, 3000, 90);
    hp_tally t = {0};
    hp_pipe_rounds(&run, &t);
    hp_report("pipe", &run, &t);
    hp_finish(&run);
    CHECK(t.rounds > 0);
    CHECK_EQ(test_count_children(), 0); /* every round's child and the corrupter reaped */
}

static const test_case cases[] = {
    TEST_CASE(test_random_peer_queue),
    TEST_CASE(test_random_peer_pipe),
};
static const test_helper helpers[] = {
    TEST_HELPER(helper_hostile_corrupter),
};
TEST_MAIN(cases, helpers)
