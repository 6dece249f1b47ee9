/* The status table: names, messages, ranges, and the allocation hook. */
#include "crew_test.h"

#include <errno.h>

static void test_known_codes(void)
{
    CHECK(strcmp(crew_err_name(0), "CREW_OK") == 0);
    CHECK(strcmp(crew_err_name(CREW_ETIMEDOUT), "CREW_ETIMEDOUT") == 0);
    CHECK(strcmp(crew_err_name(CREW_EOF), "CREW_EOF") == 0);
    CHECK(strcmp(crew_err_name(CREW_EINVAL), "CREW_EINVAL") == 0);
    CHECK_EQ(CREW_EINVAL, -EINVAL);
    CHECK_EQ(CREW_ENOMEM, -ENOMEM);
    CHECK_EQ(CREW_E2BIG, -E2BIG);
    CHECK(strcmp(crew_strerror(CREW_ECRASHED), "worker crashed (killed by a signal or exited)") == 0);
    CHECK(strcmp(crew_strerror(0), "success") == 0);
}

static void test_library_range(void)
{
    /* Library codes never collide with -errno. */
    int lib[] = {CREW_ETIMEDOUT, CREW_ECANCELED, CREW_ECRASHED, CREW_EOWNERDEAD,
                 CREW_EBROKEN,   CREW_EOF,       CREW_ECLOSED,  CREW_ESHUTDOWN};
    for (size_t i = 0; i < sizeof lib / sizeof lib[0]; i++) {
        CHECK(lib[i] <= -5000);
        CHECK(strcmp(crew_err_name(lib[i]), "CREW_EUNKNOWN") != 0);
        CHECK(strcmp(crew_strerror(lib[i]), "unknown error") != 0);
    }
}

static void test_unknown_codes(void)
{
    /* An errno crew does not list still gets the system's text. */
    CHECK(strcmp(crew_strerror(-ENOTDIR), "unknown error") != 0);
    CHECK(strcmp(crew_err_name(-ENOTDIR), "CREW_EUNKNOWN") == 0);
    CHECK(strcmp(crew_strerror(-4999), "unknown error") == 0);
    CHECK(strcmp(crew_strerror(12345), "unknown error") == 0);
    CHECK(strcmp(crew_err_name(-99999), "CREW_EUNKNOWN") == 0);
}

static void test_allocator_hook(void)
{
    CHECK_ERR(crew_set_allocator(malloc, NULL, free), CREW_EINVAL);
    CHECK_OK(crew_set_allocator(malloc, realloc, free));
    CHECK_OK(crew_set_allocator(NULL, NULL, NULL));
}

static void test_machine(void)
{
    CHECK(crew_cpu_count() >= 1);
    double a = crew_now(), b = crew_now();
    CHECK(b >= a);
    CHECK(crew_version() == CREW_VERSION_HEX);
    CHECK(strcmp(crew_version_string(), "0.1.0") == 0);
}

static const test_case cases[] = {
    TEST_CASE(test_known_codes),   TEST_CASE(test_library_range), TEST_CASE(test_unknown_codes),
    TEST_CASE(test_allocator_hook), TEST_CASE(test_machine),
};
TEST_MAIN_NOHELPERS(cases)
