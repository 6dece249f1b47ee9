/*
 * error.c -- the one table of status codes (crew.h: CREW_ERRNO_MAP and
 * CREW_ERRLIB_MAP) turned into crew_strerror() and crew_err_name().
 * Both return static strings and never allocate, even for unknown codes.
 */
#include "core/internal.h"

#include <string.h>

const char *crew_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define CREW__ERR_MSG(name, value, msg)                                        \
    case value:                                                                \
        return msg;
        CREW_ERRNO_MAP(CREW__ERR_MSG)
        CREW_ERRLIB_MAP(CREW__ERR_MSG)
#undef CREW__ERR_MSG
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        /* strerrordesc_np returns a static string, or NULL if unknown. */
        const char *s = strerrordesc_np(-err);
        if (s)
            return s;
    }
    return "unknown error";
}

const char *crew_err_name(int err)
{
    switch (err) {
    case 0:
        return "CREW_OK";
#define CREW__ERR_NAME(name, value, msg)                                       \
    case value:                                                                \
        return "CREW_" #name;
        CREW_ERRNO_MAP(CREW__ERR_NAME)
        CREW_ERRLIB_MAP(CREW__ERR_NAME)
#undef CREW__ERR_NAME
    default:
        return "CREW_EUNKNOWN";
    }
}
