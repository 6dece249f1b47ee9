/*
 * main.c -- the `crew` command: dispatch to a subcommand.
 *
 *   crew compare [OPTIONS]   measure threads vs processes (compare.c)
 *   crew help [COMMAND]      usage of crew or of one command
 *   crew version             the library version actually linked
 *
 * Exit statuses are shared by all commands (cli.h, crew(1)).
 */
#include "cli.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: crew COMMAND [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  compare   measure threads vs processes on this machine, for built-in\n"
            "            workloads or your own task, and recommend one (crew compare --help)\n"
            "  help      show this text, or `crew help compare`\n"
            "  version   print the crew library version\n"
            "\n"
            "exit status: 0 ok, 1 internal error, 2 usage, 3 task not loadable,\n"
            "             4 task failed, 5 measurement failed, 6 output not writable\n"
            "see crew(1) and crew-compare(1).\n");
}

/* -------------------------------------------------------------- progress
 * On a terminal the progress line is rewritten in place; otherwise (a log, a
 * pipe in a test) each step is one line. Never on stdout. */
static bool progress_quiet, progress_tty, progress_open;
static double progress_t0;

void cli_progress_init(bool quiet)
{
    progress_quiet = quiet;
    progress_tty = isatty(STDERR_FILENO) == 1;
    progress_t0 = crew_now();
}

void cli_progress(const char *fmt, ...)
{
    if (progress_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (progress_tty)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "crew compare: [%5.1f s] ", crew_now() - progress_t0);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (!progress_tty)
        fputc('\n', stderr);
    progress_open = progress_tty;
    fflush(stderr);
}

void cli_progress_done(void)
{
    if (progress_open) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    progress_open = false;
}

void cli_error(const char *fmt, ...)
{
    cli_progress_done();
    va_list ap;
    va_start(ap, fmt);
    fputs("crew compare: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "compare") == 0)
        return cmd_compare(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc >= 3 && strcmp(argv[2], "compare") == 0) {
            compare_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (argc >= 3) {
            fprintf(stderr, "crew: no command '%s' (try: crew help)\n", argv[2]);
            return CLI_EXIT_USAGE;
        }
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("crew %d.%d.%d (library %s)\n", CREW_VERSION_MAJOR, CREW_VERSION_MINOR,
               CREW_VERSION_PATCH, crew_version_string());
        return CLI_EXIT_OK;
    }
    fprintf(stderr, "crew: no command '%s' (try: crew help)\n", cmd);
    return CLI_EXIT_USAGE;
}
