/* The one place the library reads its environment, and the kernel-way
 * overrides that replaced the debugging variables. A context reads the
 * environment once, when it is created: a variable set later changes
 * nothing for that context (doc/opencl.md lists them all). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void copy_var(char *out, const char *name)
{
    const char *v = getenv(name);
    snprintf(out, EPLB_ENV_MAX, "%s", v ? v : "");
}

/* EPLB_CL_CACHE_DIR, else $XDG_CACHE_HOME/eplb-cl, else
 * $HOME/.cache/eplb-cl (made if missing); "" when none can be named or
 * the variable says "off". */
static void cache_dir(char *out)
{
    const char *d = getenv("EPLB_CL_CACHE_DIR");
    out[0] = '\0';
    if (d && strcmp(d, "off") == 0)
        return;
    if (d && *d) {
        snprintf(out, EPLB_ENV_MAX, "%s", d);
    } else if ((d = getenv("XDG_CACHE_HOME")) && *d) {
        snprintf(out, EPLB_ENV_MAX, "%s/eplb-cl", d);
    } else if ((d = getenv("HOME")) && *d) {
        char parent[EPLB_ENV_MAX];
        snprintf(parent, sizeof parent, "%s/.cache", d);
        mkdir(parent, 0755);
        snprintf(out, EPLB_ENV_MAX, "%s/.cache/eplb-cl", d);
    } else {
        return;
    }
    mkdir(out, 0755);
}

void env_read(eplb_env *env)
{
    memset(env, 0, sizeof *env);
    copy_var(env->platform, "EPLB_CL_PLATFORM");
    copy_var(env->device, "EPLB_CL_DEVICE");
    copy_var(env->device_type, "EPLB_CL_DEVICE_TYPE");
    cache_dir(env->cache_dir);
    copy_var(env->kernel_dir, "EPLB_CL_KERNEL_DIR");
    copy_var(env->build_options, "EPLB_CL_BUILD_OPTIONS");
    const char *log = getenv("EPLB_CL_BUILD_LOG");
    env->build_log = log && strcmp(log, "1") == 0;
}

void tuning_default(eplb_tuning *t)
{
    t->lanes = t->parts = t->split = t->finish_in_slots = t->loads_in_place =
        t->wg = t->global_scratch = EPLB_TUNE_AUTO;
}

/* What each key takes besides EPLB_TUNE_AUTO: a list of values, or (WG)
 * any power of two from 1 to 1024. */
static const struct tune_key {
    int key;
    const char *name;
    size_t field;
    int values[5];
    int nvalues;
} keys[] = {
    {EPLB_TUNE_LANES, "EPLB_TUNE_LANES", offsetof(eplb_tuning, lanes),
     {1, 4, 8, 16}, 4},
    {EPLB_TUNE_PARTS, "EPLB_TUNE_PARTS", offsetof(eplb_tuning, parts),
     {1, 2, 4, 8}, 4},
    {EPLB_TUNE_SPLIT, "EPLB_TUNE_SPLIT", offsetof(eplb_tuning, split),
     {0, 1}, 2},
    {EPLB_TUNE_FINISH_IN_SLOTS, "EPLB_TUNE_FINISH_IN_SLOTS",
     offsetof(eplb_tuning, finish_in_slots), {0, 1}, 2},
    {EPLB_TUNE_LOADS_IN_PLACE, "EPLB_TUNE_LOADS_IN_PLACE",
     offsetof(eplb_tuning, loads_in_place), {0, 1}, 2},
    {EPLB_TUNE_WG, "EPLB_TUNE_WG", offsetof(eplb_tuning, wg), {0}, 0},
    {EPLB_TUNE_GLOBAL_SCRATCH, "EPLB_TUNE_GLOBAL_SCRATCH",
     offsetof(eplb_tuning, global_scratch), {0, 1}, 2},
};

int tuning_set(eplb_tuning *t, int key, int value)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const struct tune_key *k = &keys[i];
        if (k->key != key)
            continue;
        int ok = value == EPLB_TUNE_AUTO;
        for (int j = 0; j < k->nvalues; j++)
            ok |= value == k->values[j];
        if (k->nvalues == 0) /* a power of two, 1..1024 */
            ok |= value >= 1 && value <= 1024 && (value & (value - 1)) == 0;
        if (!ok) {
            char list[64] = "";
            for (int j = 0; j < k->nvalues; j++)
                snprintf(list + strlen(list), sizeof list - strlen(list),
                         "%d, ", k->values[j]);
            return eplbi_fail(EPLB_ERR_BAD_OPTION,
                              "%s takes %s%s, not %d", k->name,
                              k->nvalues ? list : "a power of two 1..1024, ",
                              "or EPLB_TUNE_AUTO (-1)", value);
        }
        *(int *)((char *)t + k->field) = value;
        return EPLB_OK;
    }
    return eplbi_fail(EPLB_ERR_BAD_OPTION,
                      "tuning key %d is not one of eplb_tune's", key);
}
