/*
 * fnref.c -- naming a task function so that another image of the same
 * program can find it despite ASLR.
 *
 * DESIGN
 * A spawn child and a forkserver are fresh execs of /proc/self/exe, so every
 * module sits at a different base address there. The parent walks the loaded
 * modules (dl_iterate_phdr) for the one whose PT_LOAD segment holds the
 * function, and sends (module name, offset from the module's load base, GNU
 * build id). The child walks its own modules for the same name ("" is the
 * main executable, always the first entry) and adds the offset. A module the
 * child has not loaded -- one the parent dlopen'ed -- is dlopen'ed by path
 * (it stays loaded). The build id, when the module has one, must match: a
 * library replaced on disk since the parent loaded it is refused, never
 * jumped into. The final address must lie in an executable segment.
 * dladdr is not used to find the module because it names the main program
 * after argv[0], which the child cannot match reliably.
 *
 * Thread-safety: both functions may run in several threads (dl_iterate_phdr
 * takes the loader's lock). No state.
 */
#include "proc/process_internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <string.h>

typedef struct find_ctx {
    uintptr_t addr;           /* in: address to find (make) */
    const char *want;         /* in: module name to find (resolve) */
    bool found;               /* out */
    bool exec_ok;             /* out (resolve): addr in an executable segment */
    uintptr_t base;           /* out */
    crew__fnref *ref;         /* out (make) / in (resolve) */
    uint8_t build_id[CREW__BUILD_ID_MAX];
    uint32_t build_id_len;
    int index;
} find_ctx;

/* The GNU build id of a module, from its PT_NOTE segments. */
static void read_build_id(struct dl_phdr_info *info, uint8_t *out, uint32_t *out_len)
{
    *out_len = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            size_t namesz = (n->n_namesz + 3u) & ~3u, descsz = (n->n_descsz + 3u) & ~3u;
            const char *name = p + sizeof *n, *desc = name + namesz;
            if (desc + descsz > end)
                break;
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                uint32_t len = n->n_descsz < CREW__BUILD_ID_MAX ? n->n_descsz : CREW__BUILD_ID_MAX;
                memcpy(out, desc, len);
                *out_len = len;
                return;
            }
            p = desc + descsz;
        }
    }
}

static bool segment_holds(struct dl_phdr_info *info, uintptr_t addr, bool need_exec)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (addr >= lo && addr < lo + ph->p_memsz)
            return !need_exec || (ph->p_flags & PF_X);
    }
    return false;
}

static int make_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    find_ctx *c = data;
    int index = c->index++;
    if (!segment_holds(info, c->addr, true))
        return 0;
    /* The first entry is the main program whatever its dlpi_name says. */
    const char *name = index == 0 ? "" : (info->dlpi_name ? info->dlpi_name : "");
    size_t n = strlen(name);
    if (n >= sizeof c->ref->module)
        return 0;
    memcpy(c->ref->module, name, n + 1);
    c->ref->offset = c->addr - info->dlpi_addr;
    read_build_id(info, c->ref->build_id, &c->ref->build_id_len);
    c->found = true;
    return 1;
}

int crew__fnref_make(crew__fnref *ref, uintptr_t fn)
{
    if (!ref || !fn)
        return CREW_EINVAL;
    find_ctx c = {.addr = fn, .ref = ref};
    dl_iterate_phdr(make_cb, &c);
    return c.found ? 0 : CREW_ENOTFOUND;
}

static int resolve_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    find_ctx *c = data;
    int index = c->index++;
    const char *name = index == 0 ? "" : (info->dlpi_name ? info->dlpi_name : "");
    if (strcmp(name, c->want) != 0)
        return 0;
    c->found = true;
    c->base = info->dlpi_addr;
    read_build_id(info, c->build_id, &c->build_id_len);
    c->exec_ok = segment_holds(info, info->dlpi_addr + c->ref->offset, true);
    return 1;
}

int crew__fnref_resolve(const crew__fnref *ref, uintptr_t *fn)
{
    if (!ref || !fn)
        return CREW_EINVAL;
    find_ctx c = {.want = ref->module, .ref = (crew__fnref *)ref};
    dl_iterate_phdr(resolve_cb, &c);
    if (!c.found && ref->module[0] != '\0') {
        /* A module the parent loaded with dlopen: load it here too. The
         * handle is kept on purpose: the task's code must stay mapped. */
        if (!dlopen(ref->module, RTLD_NOW | RTLD_GLOBAL))
            return CREW_ENOTFOUND;
        c = (find_ctx){.want = ref->module, .ref = (crew__fnref *)ref};
        dl_iterate_phdr(resolve_cb, &c);
    }
    if (!c.found || !c.exec_ok)
        return CREW_ENOTFOUND;
    if (ref->build_id_len && c.build_id_len &&
        (ref->build_id_len != c.build_id_len ||
         memcmp(ref->build_id, c.build_id, c.build_id_len) != 0))
        return CREW_ENOTFOUND;
    *fn = c.base + (uintptr_t)ref->offset;
    return 0;
}
