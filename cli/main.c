/*
 * main.c -- the `crew` command: dispatch to a subcommand.
 *
 *   crew compare [OPTIONS]   measure threads vs processes (compare.c)
 *   crew help [COMMAND]      usage of crew or of one command
 *   crew version             the library version actually linked
 *
 * Exit statuses are shared by all commands (cli.h, crew(1)). Everything but
 * this dispatch lives in crew_cli_core (the rest of cli/), which main()
 * calls and which never calls back here.
 */
#include "cli.h"

#include <string.h>

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
