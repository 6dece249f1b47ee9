/*
 * progress.c -- what the `crew` command says on stderr while it works: the
 * progress line and the one-line errors.
 *
 * DESIGN
 *  Results go to stdout and nothing else does (cli.h); everything here
 *  writes to stderr. On a terminal the progress line is rewritten in place
 *  ("\r", clear to the end of the line); otherwise (a log, a pipe in a test)
 *  each step is one line. An error first clears a progress line still open,
 *  so it never ends up glued to one. The state is one set of statics: the
 *  command is single-threaded where it reports (probes call these between
 *  measurements, never from a task).
 */
#include "cli.h"

#include <stdarg.h>
#include <unistd.h>

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
