/*
 * Runs every kawrap benchmark side by side and prints one table (Markdown)
 * plus the same numbers as JSON.
 *
 *   driver --client PATH --shim PATH --json PATH [--rounds N] [--quick]
 *
 * The machine this runs on is small and noisy (2 shared cores), so:
 * - the variants are interleaved: round r runs A, B, C (order rotated each
 *   round), never all of A and then all of B, so drift hits all alike;
 * - results are medians with min-max over the rounds, and ratios of medians;
 * - instruction counts from callgrind (user space, deterministic) back up
 *   the wall-clock numbers.
 *
 * The client checks that each variant is what it claims (shim active or
 * absent) and fails otherwise; the driver fails if any run fails.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROFILE "300/30/5"
#define MAX_SAMPLES 4096

/* ---------- small helpers ---------- */

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("bench: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stats {
    double median, min, max;
    int n;
};

static struct stats summarize(const double *samples, int n) {
    struct stats s = {0, 0, 0, n};
    if (n == 0) return s;
    double *sorted = malloc(sizeof(double) * (size_t)n);
    if (!sorted) fail("out of memory");
    memcpy(sorted, samples, sizeof(double) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(double), compare_doubles);
    s.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    s.min = sorted[0];
    s.max = sorted[n - 1];
    free(sorted);
    return s;
}

/* The full path of `name` found in PATH, or NULL. */
static char *which(const char *name) {
    static char found[4096];
    if (strchr(name, '/')) return access(name, X_OK) == 0 ? strcpy(found, name) : NULL;
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t length = strcspn(path, ":");
        snprintf(found, sizeof found, "%.*s/%s", (int)length, path, name);
        if (length > 0 && access(found, X_OK) == 0) return found;
        path += length + (path[length] == ':');
    }
    return NULL;
}

/* ---------- environments ---------- */

static char **env_without;  /* the caller's environment minus LD_PRELOAD and KAWRAP_* */
static char **env_with;     /* plus LD_PRELOAD=shim and KAWRAP_PROFILE */
static char **env_empty_so; /* plus LD_PRELOAD=an empty .so (and KAWRAP_PROFILE, unused) */
static const char *shim_path, *empty_so_path;

/* The caller's environment minus LD_PRELOAD and KAWRAP_*, plus
 * LD_PRELOAD=`preload` and the profile if `preload` is not NULL. */
static char **environment(const char *preload) {
    size_t count = 0;
    for (char **e = environ; *e; e++) count++;
    char **env = calloc(count + 3, sizeof(char *));
    if (!env) fail("out of memory");
    size_t kept = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "KAWRAP_", 7)) env[kept++] = *e;
    if (preload) {
        size_t length = strlen(preload) + 12;
        char *variable = malloc(length);
        if (!variable) fail("out of memory");
        snprintf(variable, length, "LD_PRELOAD=%s", preload);
        env[kept++] = variable;
        env[kept++] = "KAWRAP_PROFILE=" PROFILE;
    }
    return env;
}

static void build_environments(void) {
    env_without = environment(NULL);
    env_with = environment(shim_path);
    env_empty_so = environment(empty_so_path);
}

/* ---------- running programs ---------- */

struct child {
    pid_t pid;
    FILE *out; /* its stdout, or NULL */
    int in;    /* write end of its stdin, or -1 */
};

/* Starts argv[0] (a full path) with `env`. stdout is captured if
 * `capture`, else discarded; stderr is inherited if `show_errors`, else
 * discarded; stdin is a pipe kept open if `hold_stdin`, else /dev/null. */
static struct child start(char *const argv[], char **env, int capture, int show_errors, int hold_stdin) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    int out[2] = {-1, -1}, in[2] = {-1, -1};
    if (capture && pipe2(out, O_CLOEXEC) != 0) fail("pipe: %s", strerror(errno));
    if (hold_stdin && pipe2(in, O_CLOEXEC) != 0) fail("pipe: %s", strerror(errno));
    if (hold_stdin) posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (capture) posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    else posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    if (!show_errors) posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    struct child c = {-1, NULL, -1};
    int error = posix_spawn(&c.pid, argv[0], &actions, NULL, argv, env);
    posix_spawn_file_actions_destroy(&actions);
    if (error) fail("cannot run %s: %s", argv[0], strerror(error));
    if (capture) {
        close(out[1]);
        c.out = fdopen(out[0], "r");
    }
    if (hold_stdin) {
        close(in[0]);
        c.in = in[1];
    }
    return c;
}

static void finish(struct child *c, const char *what) {
    int status;
    if (c->in >= 0) close(c->in);
    if (c->out) fclose(c->out);
    while (waitpid(c->pid, &status, 0) < 0)
        if (errno != EINTR) fail("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("%s failed (status %d)", what, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* ---------- the client's loops ---------- */

enum variant { NONE, INLINE, KAWRAP, VARIANTS };
static const char *variant_names[VARIANTS] = {"none", "inline", "kawrap"};
static const char *client_path;

/* Runs the client once and returns its ns per operation. */
static double run_client(const char *mode, enum variant v, long iterations, int threads) {
    char n[32], t[16];
    snprintf(n, sizeof n, "%ld", iterations);
    snprintf(t, sizeof t, "%d", threads);
    char *argv[] = {(char *)client_path, (char *)mode, (char *)variant_names[v], n, t, NULL};
    struct child c = start(argv, v == KAWRAP ? env_with : env_without, 1, 1, 0);
    double value = -1;
    char line[256];
    while (fgets(line, sizeof line, c.out))
        if (sscanf(line, "ns_per_op=%lf", &value) == 1) break;
    char what[128];
    snprintf(what, sizeof what, "client %s %s", mode, variant_names[v]);
    finish(&c, what);
    if (value < 0) fail("%s printed no ns_per_op", what);
    return value;
}

struct loop_result {
    const char *name, *key, *unit;
    double samples[VARIANTS][MAX_SAMPLES];
    struct stats stats[VARIANTS];
    double paired_ratio[MAX_SAMPLES]; /* kawrap / inline, same round */
    struct stats ratio_stats;
    long iterations;
    int threads, rounds;
};

/* `rounds` rounds, each running every variant once, in an order rotated
 * each round so that no variant always runs first (or right after the
 * noisiest one). */
static void run_loop(struct loop_result *r, const char *mode, long iterations, int threads, int rounds) {
    r->iterations = iterations;
    r->threads = threads;
    r->rounds = rounds;
    fprintf(stderr, "  %-44s", r->name);
    for (int round = 0; round < rounds; round++) {
        double this_round[VARIANTS];
        for (int k = 0; k < VARIANTS; k++) {
            enum variant v = (enum variant)((round + k) % VARIANTS);
            this_round[v] = run_client(mode, v, iterations, threads) / 1000.0; /* µs */
            r->samples[v][round] = this_round[v];
        }
        r->paired_ratio[round] = this_round[KAWRAP] / this_round[INLINE];
        fputc('.', stderr);
    }
    fputc('\n', stderr);
    for (int v = 0; v < VARIANTS; v++) r->stats[v] = summarize(r->samples[v], rounds);
    r->ratio_stats = summarize(r->paired_ratio, rounds);
}

/* ---------- process start ---------- */

/* Process start is compared three ways: no preload, an empty .so
 * preloaded (what loading any library costs: the floor), and kawrap. */
enum preload { WITHOUT, EMPTY_SO, SHIM, PRELOADS };
static const char *preload_names[PRELOADS] = {"without", "empty_so", "kawrap"};
static char **env_empty_so;

struct start_result {
    char command[256];
    int available;
    char why_not[128];
    double samples[PRELOADS][MAX_SAMPLES]; /* ms */
    double faults[PRELOADS][MAX_SAMPLES];  /* minor page faults */
    struct stats stats[PRELOADS], fault_stats[PRELOADS];
    double paired_added[MAX_SAMPLES]; /* kawrap - no preload, same run, ms */
    double paired_ratio[MAX_SAMPLES]; /* kawrap / no preload, same run */
    struct stats added_stats, ratio_stats;
    int runs;
};

static char **preload_env(enum preload p) {
    return p == WITHOUT ? env_without : p == EMPTY_SO ? env_empty_so : env_with;
}

/* Wall time from spawn to exit, in ms; `faults` gets the child's minor
 * page faults. */
static double time_once(char *const argv[], char **env, double *faults) {
    double begin = now_ns();
    struct child c = start(argv, env, 0, 0, 0);
    int status;
    struct rusage usage;
    while (wait4(c.pid, &status, 0, &usage) < 0)
        if (errno != EINTR) fail("wait4: %s", strerror(errno));
    double elapsed = now_ns() - begin;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("%s exited with status %d", argv[0], status);
    if (faults) *faults = (double)usage.ru_minflt;
    return elapsed / 1e6;
}

/* Interleaves the three (order rotated run by run); the number of runs
 * fits the command's duration into `budget_s` seconds. */
static void run_start(struct start_result *r, const char *program, const char *arg, double budget_s,
                      int max_runs) {
    snprintf(r->command, sizeof r->command, "%s%s%s", program, arg ? " " : "", arg ? arg : "");
    char *path = which(program);
    fprintf(stderr, "  start: %-37s", r->command);
    if (!path) {
        snprintf(r->why_not, sizeof r->why_not, "%s not installed", program);
        fprintf(stderr, "skipped (%s)\n", r->why_not);
        return;
    }
    char full[4096];
    snprintf(full, sizeof full, "%s", path);
    char *argv[] = {full, (char *)arg, NULL};
    double probe = 0;
    for (int i = 0; i < 2; i++)
        for (int p = 0; p < PRELOADS; p++) probe += time_once(argv, preload_env((enum preload)p), NULL);
    probe /= 2 * PRELOADS;
    int runs = (int)(budget_s * 1000 / (PRELOADS * probe));
    if (runs < 30) runs = 30;
    if (runs > max_runs) runs = max_runs;
    for (int i = 0; i < runs; i++) {
        for (int k = 0; k < PRELOADS; k++) {
            enum preload p = (enum preload)((i + k) % PRELOADS);
            r->samples[p][i] = time_once(argv, preload_env(p), &r->faults[p][i]);
        }
        r->paired_added[i] = r->samples[SHIM][i] - r->samples[WITHOUT][i];
        r->paired_ratio[i] = r->samples[SHIM][i] / r->samples[WITHOUT][i];
        if (i % (runs / 10 + 1) == 0) fputc('.', stderr);
    }
    fputc('\n', stderr);
    r->runs = runs;
    r->available = 1;
    for (int p = 0; p < PRELOADS; p++) {
        r->stats[p] = summarize(r->samples[p], runs);
        r->fault_stats[p] = summarize(r->faults[p], runs);
    }
    r->added_stats = summarize(r->paired_added, runs);
    r->ratio_stats = summarize(r->paired_ratio, runs);
}

/* ---------- memory ---------- */

/* The idle client's memory, in four hosts: no keepalive, the same with an
 * empty .so preloaded (the floor), inline options, and under kawrap. */
enum host { HOST_NONE, HOST_EMPTY_SO, HOST_INLINE, HOST_KAWRAP, HOSTS };
static const char *host_names[HOSTS] = {"none", "empty_so", "inline", "kawrap"};

struct memory {
    long vm_rss_kb[HOSTS];   /* includes shared page cache (varies with fault-around) */
    long rss_anon_kb[HOSTS]; /* the process's own pages */
    long shim_rss_kb;        /* Rss of libkawrap.so's file-backed mappings */
    long shim_private_kb;    /* of which written by this process (Private_Dirty: relocations, .data) */
    long table_size_kb;      /* size of the anonymous mapping holding its .bss */
    long table_rss_kb;       /* what of it is resident */
};

static long status_field(pid_t pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) fail("open %s: %s", path, strerror(errno));
    long value = -1;
    size_t length = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, length) && line[length] == ':') value = strtol(line + length + 1, NULL, 10);
    fclose(f);
    return value;
}

/* Sums the shim's mappings in /proc/PID/smaps: its file-backed ones, and
 * the anonymous one that directly follows them (the .bss beyond the file:
 * the shim's table of socket records, 8 MiB). */
static void shim_mappings(pid_t pid, struct memory *m) {
    char path[64], line[4608];
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) fail("open %s: %s", path, strerror(errno));
    const char *base = strrchr(shim_path, '/') ? strrchr(shim_path, '/') + 1 : shim_path;
    enum { OTHER, SHIM, TABLE } current = OTHER;
    unsigned long previous_end = 0;
    int previous_was_shim = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long from, to;
        char name[4096] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %4095[^\n]", &from, &to, name) >= 2 && strchr(line, '-') &&
            line[0] != ' ' && strchr("0123456789abcdef", line[0])) {
            int is_shim = strstr(name, base) != NULL;
            if (is_shim) current = SHIM;
            else if (previous_was_shim && name[0] == '\0' && from == previous_end) {
                current = TABLE;
                m->table_size_kb += (long)((to - from) / 1024);
            } else current = OTHER;
            previous_was_shim = is_shim;
            previous_end = to;
            continue;
        }
        long kb;
        if (sscanf(line, "Rss: %ld kB", &kb) == 1) {
            if (current == SHIM) m->shim_rss_kb += kb;
            if (current == TABLE) m->table_rss_kb += kb;
        }
        if (current == SHIM &&
            sscanf(line, "Private_Dirty: %ld kB", &kb) == 1)
            m->shim_private_kb += kb;
    }
    fclose(f);
}

/* Starts the client in idle mode (it has made `iterations` connections and
 * waits), reads its memory, lets it go. Median of `runs` interleaved runs. */
static void measure_memory(struct memory *m, long iterations, int runs) {
    long rss[HOSTS][64], anon[HOSTS][64];
    fprintf(stderr, "  %-44s", "memory (RSS of an idle client)");
    for (int i = 0; i < runs; i++) {
        for (int h = 0; h < HOSTS; h++) {
            enum variant v = h == HOST_INLINE ? INLINE : h == HOST_KAWRAP ? KAWRAP : NONE;
            char **env = h == HOST_KAWRAP ? env_with : h == HOST_EMPTY_SO ? env_empty_so : env_without;
            char n[32];
            snprintf(n, sizeof n, "%ld", iterations);
            char *argv[] = {(char *)client_path, "idle", (char *)variant_names[v], n, NULL};
            struct child c = start(argv, env, 1, 1, 1);
            char line[64];
            if (!fgets(line, sizeof line, c.out) || strncmp(line, "ready", 5))
                fail("client idle %s did not get ready", host_names[h]);
            rss[h][i] = status_field(c.pid, "VmRSS");
            anon[h][i] = status_field(c.pid, "RssAnon");
            if (h == HOST_KAWRAP && i == runs - 1) shim_mappings(c.pid, m);
            finish(&c, "client idle");
        }
        fputc('.', stderr);
    }
    fputc('\n', stderr);
    for (int h = 0; h < HOSTS; h++) {
        double samples[64];
        for (int i = 0; i < runs; i++) samples[i] = (double)rss[h][i];
        m->vm_rss_kb[h] = (long)summarize(samples, runs).median;
        for (int i = 0; i < runs; i++) samples[i] = (double)anon[h][i];
        m->rss_anon_kb[h] = (long)summarize(samples, runs).median;
    }
}

/* ---------- size ---------- */

struct size {
    long file_bytes, stripped_bytes;
    int stripped_measured;
};

static long file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) fail("stat %s: %s", path, strerror(errno));
    return (long)st.st_size;
}

static void measure_size(struct size *s, const char *scratch) {
    s->file_bytes = file_size(shim_path);
    char *strip = which("strip");
    if (!strip) return;
    char strip_path[4096], out[4200];
    snprintf(strip_path, sizeof strip_path, "%s", strip);
    snprintf(out, sizeof out, "%s/libkawrap.stripped.so", scratch);
    char *argv[] = {strip_path, "--strip-all", "-o", out, (char *)shim_path, NULL};
    struct child c = start(argv, env_without, 0, 1, 0);
    finish(&c, "strip");
    s->stripped_bytes = file_size(out);
    s->stripped_measured = 1;
    unlink(out);
}

/* ---------- instruction counts (callgrind) ---------- */

struct count {
    const char *name, *mode, *function;
    int calls_per_iteration;
    double per_call[VARIANTS];
};

static int have_valgrind;

/* Instructions callgrind counts in a run of `program` (with `env`): only
 * inside `function` (inclusive of what it calls) if not NULL, else the
 * whole process and every program it execs (a wrapper script's exec of the
 * real binary loads the shim again). User space only. */
static double callgrind(char *const program[], char **env, const char *function, const char *scratch) {
    char valgrind[4096], out_option[4300], toggle[160];
    snprintf(valgrind, sizeof valgrind, "%s", which("valgrind"));
    /* One file per process (%p), all summed. */
    snprintf(out_option, sizeof out_option, "--callgrind-out-file=%s/callgrind.out.%%p", scratch);
    snprintf(toggle, sizeof toggle, "--toggle-collect=%s", function ? function : "");
    char *argv[32] = {valgrind, "--tool=callgrind", out_option};
    int n = 3;
    if (function) {
        argv[n++] = "--collect-atstart=no";
        argv[n++] = toggle;
    } else argv[n++] = "--trace-children=yes";
    for (int i = 0; program[i] && n < 31; i++) argv[n++] = program[i];
    argv[n] = NULL;
    struct child c = start(argv, env, 0, 0, 0);
    finish(&c, "valgrind --tool=callgrind");
    DIR *dir = opendir(scratch);
    if (!dir) fail("opendir %s: %s", scratch, strerror(errno));
    double total = 0;
    int files = 0;
    for (struct dirent *entry; (entry = readdir(dir));) {
        if (strncmp(entry->d_name, "callgrind.out.", 14)) continue;
        char path[4400], line[512];
        snprintf(path, sizeof path, "%s/%s", scratch, entry->d_name);
        FILE *f = fopen(path, "r");
        if (!f) fail("open %s: %s", path, strerror(errno));
        double this_one = -1;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "totals: %lf", &this_one) == 1 || sscanf(line, "summary: %lf", &this_one) == 1)
                break;
        fclose(f);
        unlink(path);
        if (this_one < 0) fail("no totals in %s", path);
        total += this_one;
        files++;
    }
    closedir(dir);
    if (!files) fail("callgrind wrote nothing for %s %s", program[0], function ? function : "");
    return total;
}

static double callgrind_total(const char *mode, enum variant v, const char *function, long iterations,
                              const char *scratch) {
    char n[32];
    snprintf(n, sizeof n, "%ld", iterations);
    char *program[] = {(char *)client_path, (char *)mode, (char *)variant_names[v], n, NULL};
    return callgrind(program, v == KAWRAP ? env_with : env_without, function, scratch);
}

/* Two runs of different lengths: their difference is exactly the extra
 * iterations, without start-up work or first-call symbol binding. */
static void measure_count(struct count *c, const char *scratch) {
    const long short_run = 1000, long_run = 3000;
    fprintf(stderr, "  callgrind: %-33s", c->name);
    for (int v = 0; v < VARIANTS; v++) {
        double a = callgrind_total(c->mode, (enum variant)v, c->function, short_run, scratch);
        double b = callgrind_total(c->mode, (enum variant)v, c->function, long_run, scratch);
        c->per_call[v] = (b - a) / (double)((long_run - short_run) * c->calls_per_iteration);
        fputc('.', stderr);
    }
    fputc('\n', stderr);
}

/* Whole-command instructions per preload: the loader's and the
 * constructor's work, which wall-clock numbers cannot separate from noise. */
struct exec_count {
    const char *program, *arg;
    int available;
    double counts[PRELOADS];
};

static void measure_exec(struct exec_count *e, const char *scratch) {
    char *path = which(e->program);
    if (!path) return;
    char full[4096];
    snprintf(full, sizeof full, "%s", path);
    char *program[] = {full, (char *)e->arg, NULL};
    fprintf(stderr, "  callgrind: exec %-28s", e->program);
    for (int p = 0; p < PRELOADS; p++) {
        e->counts[p] = callgrind(program, preload_env((enum preload)p), NULL, scratch);
        fputc('.', stderr);
    }
    fputc('\n', stderr);
    e->available = 1;
}

/* ---------- syscalls (strace) ---------- */

#define MAX_SYSCALLS 64

/* Syscalls per iteration of one loop, by name, for each variant. */
struct syscalls {
    const char *mode;
    int names;
    char name[MAX_SYSCALLS][64];
    double per_iteration[VARIANTS][MAX_SYSCALLS];
    double total[VARIANTS];
};

static int have_strace;

static int syscall_index(struct syscalls *s, const char *name) {
    for (int i = 0; i < s->names; i++)
        if (!strcmp(s->name[i], name)) return i;
    if (s->names == MAX_SYSCALLS) fail("more than %d distinct syscalls", MAX_SYSCALLS);
    snprintf(s->name[s->names], sizeof s->name[0], "%s", name);
    return s->names++;
}

/* Adds `sign` x the calls of each syscall in a `strace -c` run of the
 * client to `counts` (indexed like s->name). */
static void strace_counts(struct syscalls *s, enum variant v, long iterations, double sign, double *counts,
                          const char *scratch) {
    char strace[4096], out[4200], n[32];
    snprintf(strace, sizeof strace, "%s", which("strace"));
    snprintf(out, sizeof out, "%s/strace.out", scratch);
    snprintf(n, sizeof n, "%ld", iterations);
    char *argv[] = {strace, "-f", "-c", "-U", "calls,name", "-o", out, (char *)client_path, (char *)s->mode,
                    (char *)variant_names[v], n, NULL};
    struct child c = start(argv, v == KAWRAP ? env_with : env_without, 0, 1, 0);
    finish(&c, "strace -c");
    FILE *f = fopen(out, "r");
    if (!f) fail("strace wrote no %s", out);
    char line[256], name[64];
    double calls;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, " %lf %63s", &calls, name) == 2 && strcmp(name, "total"))
            counts[syscall_index(s, name)] += sign * calls;
    fclose(f);
    unlink(out);
}

/* Two runs of different lengths: the difference is the loop's own calls. */
static void measure_syscalls(struct syscalls *s, const char *scratch) {
    const long short_run = 1000, long_run = 3000;
    fprintf(stderr, "  strace: %-36s", s->mode);
    for (int v = 0; v < VARIANTS; v++) {
        double counts[MAX_SYSCALLS] = {0};
        strace_counts(s, (enum variant)v, long_run, 1, counts, scratch);
        strace_counts(s, (enum variant)v, short_run, -1, counts, scratch);
        s->total[v] = 0;
        for (int i = 0; i < MAX_SYSCALLS; i++) {
            s->per_iteration[v][i] = counts[i] / (double)(long_run - short_run);
            s->total[v] += s->per_iteration[v][i];
        }
        fputc('.', stderr);
    }
    fputc('\n', stderr);
}

/* "socket 1, setsockopt 4, close 1" for the calls of variant `v` (only
 * those made at least once per 10 iterations). */
static void syscall_list(const struct syscalls *s, enum variant v, char *buffer, size_t size) {
    buffer[0] = '\0';
    for (int i = 0; i < s->names; i++) {
        double count = s->per_iteration[v][i];
        if (count < 0.1) continue;
        size_t used = strlen(buffer);
        snprintf(buffer + used, size - used, "%s%s %.3g", used ? ", " : "", s->name[i], count);
    }
}

/* ---------- output ---------- */

static void machine_line(char *buffer, size_t size) {
    struct utsname u;
    uname(&u);
    char model[256] = "unknown CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "model name : %255[^\n]", model) == 1) break;
        fclose(f);
    }
    snprintf(buffer, size, "%ld x %s, Linux %s, glibc %s", sysconf(_SC_NPROCESSORS_ONLN), model, u.release,
             gnu_get_libc_version());
}

/* The 1-minute load average: how busy the machine was (other work on it
 * is the main source of noise). */
static double load_average(void) {
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = -1;
        fclose(f);
    }
    return load;
}

static void json_stats(FILE *f, const char *key, struct stats s, const char *after) {
    fprintf(f, "\"%s\": {\"median\": %.4f, \"min\": %.4f, \"max\": %.4f, \"n\": %d}%s", key, s.median, s.min,
            s.max, s.n, after);
}

static const char *verdict(int holds) { return holds ? "holds" : "MISSED"; }

int main(int argc, char **argv) {
    const char *json_path = NULL;
    int rounds = 15, quick = 0, strict = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--client") && i + 1 < argc) client_path = argv[++i];
        else if (!strcmp(argv[i], "--shim") && i + 1 < argc) shim_path = argv[++i];
        else if (!strcmp(argv[i], "--empty-so") && i + 1 < argc) empty_so_path = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--strict")) strict = 1;
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else
            fail("unknown argument %s (usage: driver --client P --shim P --empty-so P --json P "
                 "[--rounds N] [--quick] [--strict])",
                 argv[i]);
    }
    if (!client_path || !shim_path || !empty_so_path || !json_path)
        fail("--client, --shim, --empty-so and --json are required");
    if (rounds < 3 || rounds > MAX_SAMPLES) fail("--rounds %d: expected 3..=%d", rounds, MAX_SAMPLES);
    if (access(shim_path, R_OK) != 0) fail("shim %s: %s", shim_path, strerror(errno));
    if (quick) rounds = 5;
    build_environments();
    have_valgrind = which("valgrind") != NULL;
    char scratch[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/kawrap-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) fail("mkdtemp in %s: %s", tmp && *tmp ? tmp : "/tmp", strerror(errno));

    char machine[512];
    machine_line(machine, sizeof machine);
    double load_before = load_average();
    fprintf(stderr, "kawrap benchmarks on %s (load average %.2f)\n", machine, load_before);

    /* 1, 2, 4: the client's loops. */
    static struct loop_result loops[3] = {
        {.name = "socket+connect+accept+close x2 (1 thread)", .key = "connect", .unit = "µs/conn"},
        {.name = "socket+close", .key = "socket", .unit = "µs/socket"},
        {.name = "connect storm, 8 threads", .key = "storm_8_threads", .unit = "µs/conn"},
    };
    long scale = quick ? 4 : 1;
    run_loop(&loops[0], "conn", 20000 / scale, 1, rounds);
    run_loop(&loops[1], "sock", 50000 / scale, 1, rounds);
    run_loop(&loops[2], "storm", 24000 / scale, 8, rounds);

    /* 3: process start. */
    static struct start_result starts[3];
    double budget = quick ? 2 : 8;
    run_start(&starts[0], "true", NULL, budget, quick ? 200 : 1000);
    run_start(&starts[1], "curl", "--version", budget, quick ? 200 : 1000);
    run_start(&starts[2], "psql", "--version", budget, quick ? 200 : 1000);

    /* 5: size and memory. */
    struct size size = {0};
    measure_size(&size, scratch);
    struct memory memory = {0};
    measure_memory(&memory, 1000, quick ? 3 : 5);

    /* Instruction counts. */
    static struct syscalls syscalls[2] = {{.mode = "sock"}, {.mode = "conn"}};
    have_strace = which("strace") != NULL;
    if (have_strace)
        for (int i = 0; i < 2; i++) measure_syscalls(&syscalls[i], scratch);
    else fprintf(stderr, "  strace: skipped (strace not installed)\n");

    enum { COUNTS = 5 };
    static struct count counts[COUNTS] = {
        {.name = "socket()", .mode = "sock", .function = "step_socket", .calls_per_iteration = 1},
        {.name = "close()", .mode = "sock", .function = "step_close", .calls_per_iteration = 1},
        {.name = "connect()", .mode = "conn", .function = "step_connect", .calls_per_iteration = 1},
        {.name = "accept4()", .mode = "conn", .function = "step_accept", .calls_per_iteration = 1},
        {.name = "whole connect cycle", .mode = "conn", .function = "conn_cycle", .calls_per_iteration = 1},
    };
    static struct exec_count execs[3] = {
        {.program = "true"}, {.program = "curl", .arg = "--version"}, {.program = "psql", .arg = "--version"}};
    if (have_valgrind) {
        for (int i = 0; i < COUNTS; i++) measure_count(&counts[i], scratch);
        for (int i = 0; i < 3; i++) measure_exec(&execs[i], scratch);
    }
    else fprintf(stderr, "  callgrind: skipped (valgrind not installed)\n");
    rmdir(scratch);
    double load_after = load_average();

    /* Targets. */
    double target_ratio = 1.05, target_added_ms = 0.2;
    long target_size = 64 * 1024;
    int all_hold = 1;

    /* ---- table ---- */
    FILE *out = stdout;
    fprintf(out, "\nMachine: %s; 1-min load average %.2f before, %.2f after. "
                 "Profile %s (4 options per socket).\n",
            machine, load_before, load_after, PROFILE);
    fprintf(out, "Wall time per iteration: median (min–max) over %d interleaved rounds, one process per "
                 "variant per round (each process's figure: its fastest of 10 batches). Ratio: of the medians; "
                 "paired: median and range of the per-round ratios. Verdicts use the paired medians (robust "
                 "to the machine's load changing between rounds).\n\n",
            rounds);
    fprintf(out, "| loop | no keepalive | inline setsockopt (floor) | kawrap (LD_PRELOAD) | kawrap / inline "
                 "| target |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (int i = 0; i < 3; i++) {
        struct loop_result *r = &loops[i];
        double ratio = r->stats[KAWRAP].median / r->stats[INLINE].median;
        int holds = r->ratio_stats.median <= target_ratio;
        all_hold &= holds;
        fprintf(out, "| %s, %s, %ld iterations |", r->name, r->unit, r->iterations);
        for (int v = 0; v < VARIANTS; v++)
            fprintf(out, " %.2f (%.2f–%.2f) |", r->stats[v].median, r->stats[v].min, r->stats[v].max);
        fprintf(out, " %.3f (paired %.3f, %.2f–%.2f) | ≤ %.2f: %s |\n", ratio, r->ratio_stats.median,
                r->ratio_stats.min, r->ratio_stats.max, target_ratio, verdict(holds));
    }
    fprintf(out, "\nProcess start, spawn to exit, ms: median (min–max), the three interleaved run by run; "
                 "paired: median of the per-run ratio or difference. The empty .so is the floor: what "
                 "preloading any library costs. Minor faults: medians, no preload / empty .so / kawrap.\n\n");
    fprintf(out, "| command | no preload | empty .so preloaded | kawrap | kawrap / no preload | added | "
                 "added vs empty .so | minor faults | target |\n");
    fprintf(out, "|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < 3; i++) {
        struct start_result *r = &starts[i];
        if (!r->available) {
            fprintf(out, "| `%s` | – | – | – | – | – | – | – | skipped: %s |\n", r->command, r->why_not);
            continue;
        }
        double ratio = r->stats[SHIM].median / r->stats[WITHOUT].median;
        double added = r->stats[SHIM].median - r->stats[WITHOUT].median;
        double over_empty = r->stats[SHIM].median - r->stats[EMPTY_SO].median;
        double floor_ratio = r->stats[EMPTY_SO].median / r->stats[WITHOUT].median;
        int holds = r->ratio_stats.median <= target_ratio && r->added_stats.median < target_added_ms;
        all_hold &= holds;
        char why[160] = "";
        if (!holds && r->added_stats.median < target_added_ms && floor_ratio > target_ratio)
            snprintf(why, sizeof why, " (the ratio: an empty .so alone is %.3f; the absolute target holds)",
                     floor_ratio);
        fprintf(out, "| `%s` (%d runs each) |", r->command, r->runs);
        for (int p = 0; p < PRELOADS; p++)
            fprintf(out, " %.3f (%.3f–%.3f) |", r->stats[p].median, r->stats[p].min, r->stats[p].max);
        fprintf(out,
                " %.3f (paired %.3f) | %+.3f ms (paired %+.3f) | %+.3f ms | %.0f / %.0f / %.0f "
                "| ≤ %.2f and < %.1f ms: %s%s |\n",
                ratio, r->ratio_stats.median, added, r->added_stats.median, over_empty, r->fault_stats[WITHOUT].median,
                r->fault_stats[EMPTY_SO].median,
                r->fault_stats[SHIM].median, target_ratio, target_added_ms, verdict(holds), why);
    }
    if (have_valgrind) {
        fprintf(out, "\nUser-space instructions of the whole command (callgrind, following execs): the loader "
                     "and the constructor (reads KAWRAP_*, resolves the 8 hooked functions).\n\n");
        fprintf(out, "| command | no preload | empty .so preloaded | kawrap | kawrap − empty .so |\n");
        fprintf(out, "|---|---|---|---|---|\n");
        for (int i = 0; i < 3; i++)
            if (execs[i].available)
                fprintf(out, "| `%s%s%s` | %.0f | %.0f | %.0f | %+.0f (%+.2f%%) |\n", execs[i].program,
                        execs[i].arg ? " " : "", execs[i].arg ? execs[i].arg : "", execs[i].counts[WITHOUT],
                        execs[i].counts[EMPTY_SO], execs[i].counts[SHIM],
                        execs[i].counts[SHIM] - execs[i].counts[EMPTY_SO],
                        100 * (execs[i].counts[SHIM] - execs[i].counts[EMPTY_SO]) / execs[i].counts[WITHOUT]);
    }
    if (have_strace) {
        fprintf(out, "\nSyscalls per iteration (strace -c, difference of a 3000- and a 1000-iteration run).\n\n");
        fprintf(out, "| loop | no keepalive | inline setsockopt | kawrap |\n|---|---|---|---|\n");
        for (int i = 0; i < 2; i++) {
            char list[512];
            fprintf(out, "| %s |", syscalls[i].mode);
            for (int v = 0; v < VARIANTS; v++) {
                syscall_list(&syscalls[i], (enum variant)v, list, sizeof list);
                fprintf(out, " %.3g: %s |", syscalls[i].total[v], list);
            }
            fputc('\n', out);
        }
    }
    if (have_valgrind) {
        fprintf(out, "\nUser-space instructions per call (callgrind, inclusive; kernel work not "
                     "counted).\n\n");
        fprintf(out, "| call | no keepalive | inline setsockopt | kawrap | kawrap − inline |\n");
        fprintf(out, "|---|---|---|---|---|\n");
        for (int i = 0; i < COUNTS; i++)
            fprintf(out, "| %s | %.0f | %.0f | %.0f | %+.0f |\n", counts[i].name, counts[i].per_call[NONE],
                    counts[i].per_call[INLINE], counts[i].per_call[KAWRAP],
                    counts[i].per_call[KAWRAP] - counts[i].per_call[INLINE]);
    }
    fprintf(out, "\nSize and memory.\n\n| what | value | target |\n|---|---|---|\n");
    {
        long size_checked = size.stripped_measured ? size.stripped_bytes : size.file_bytes;
        int holds = size_checked <= target_size;
        all_hold &= holds;
        fprintf(out, "| libkawrap.so as built | %ld bytes | |\n", size.file_bytes);
        if (size.stripped_measured)
            fprintf(out, "| libkawrap.so, strip --strip-all | %ld bytes (%.1f KiB) | ≤ 64 KiB: %s |\n",
                    size.stripped_bytes, size.stripped_bytes / 1024.0, verdict(holds));
        fprintf(out, "| RssAnon of an idle client (its own pages), no keepalive / empty .so preloaded / inline / "
                     "kawrap | %ld / %ld / %ld / %ld KiB (kawrap %+ld KiB vs none, %+ld KiB vs empty .so) | |\n",
                memory.rss_anon_kb[HOST_NONE], memory.rss_anon_kb[HOST_EMPTY_SO], memory.rss_anon_kb[HOST_INLINE],
                memory.rss_anon_kb[HOST_KAWRAP], memory.rss_anon_kb[HOST_KAWRAP] - memory.rss_anon_kb[HOST_NONE],
                memory.rss_anon_kb[HOST_KAWRAP] - memory.rss_anon_kb[HOST_EMPTY_SO]);
        fprintf(out, "| VmRSS, same four (adds shared page cache, which varies run to run) "
                     "| %ld / %ld / %ld / %ld KiB | |\n",
                memory.vm_rss_kb[HOST_NONE], memory.vm_rss_kb[HOST_EMPTY_SO], memory.vm_rss_kb[HOST_INLINE],
                memory.vm_rss_kb[HOST_KAWRAP]);
        fprintf(out, "| libkawrap.so's file mappings: resident / private dirty | %ld KiB / %ld KiB | |\n",
                memory.shim_rss_kb, memory.shim_private_kb);
        fprintf(out, "| socket-record table (.bss): mapped / resident | %ld KiB / %ld KiB | |\n", memory.table_size_kb,
                memory.table_rss_kb);
    }
    fprintf(out, "\nAll targets: %s\n", all_hold ? "hold" : "NOT all hold (see MISSED)");

    /* ---- JSON ---- */
    FILE *j = fopen(json_path, "w");
    if (!j) fail("cannot write %s: %s", json_path, strerror(errno));
    time_t t = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    fprintf(j, "{\n  \"date\": \"%s\",\n  \"machine\": \"%s\",\n  \"profile\": \"%s\",\n",
            date, machine, PROFILE);
    fprintf(j, "  \"rounds\": %d,\n", rounds);
    fprintf(j, "  \"load_average\": {\"before\": %.2f, \"after\": %.2f},\n", load_before, load_after);
    fprintf(j, "  \"loops\": {\n");
    for (int i = 0; i < 3; i++) {
        struct loop_result *r = &loops[i];
        fprintf(j, "    \"%s\": {\"unit\": \"%s\", \"iterations\": %ld, \"threads\": %d, ", r->key, r->unit,
                r->iterations, r->threads);
        for (int v = 0; v < VARIANTS; v++) json_stats(j, variant_names[v], r->stats[v], ", ");
        fprintf(j, "\"ratio_kawrap_inline\": %.4f, ", r->stats[KAWRAP].median / r->stats[INLINE].median);
        json_stats(j, "paired_ratio_kawrap_inline", r->ratio_stats, ", ");
        fprintf(j, "\"target\": %.2f}%s\n", target_ratio, i < 2 ? "," : "");
    }
    fprintf(j, "  },\n  \"process_start_ms\": [\n");
    for (int i = 0; i < 3; i++) {
        struct start_result *r = &starts[i];
        fprintf(j, "    {\"command\": \"%s\", ", r->command);
        if (!r->available) fprintf(j, "\"skipped\": \"%s\"}", r->why_not);
        else {
            fprintf(j, "\"runs\": %d, ", r->runs);
            for (int p = 0; p < PRELOADS; p++) json_stats(j, preload_names[p], r->stats[p], ", ");
            fprintf(j, "\"minor_faults\": {\"without\": %.0f, \"empty_so\": %.0f, \"kawrap\": %.0f}, ",
                    r->fault_stats[WITHOUT].median, r->fault_stats[EMPTY_SO].median,
                    r->fault_stats[SHIM].median);
            json_stats(j, "paired_added_ms", r->added_stats, ", ");
            json_stats(j, "paired_ratio", r->ratio_stats, ", ");
            fprintf(j, "\"ratio\": %.4f, \"added_ms\": %.4f, \"added_vs_empty_so_ms\": %.4f}",
                    r->stats[SHIM].median / r->stats[WITHOUT].median,
                    r->stats[SHIM].median - r->stats[WITHOUT].median,
                    r->stats[SHIM].median - r->stats[EMPTY_SO].median);
        }
        fprintf(j, "%s\n", i < 2 ? "," : "");
    }
    fprintf(j, "  ],\n  \"instructions_per_call\": ");
    if (!have_valgrind) fprintf(j, "null,\n");
    else {
        fprintf(j, "{\n");
        for (int i = 0; i < COUNTS; i++)
            fprintf(j, "    \"%s\": {\"none\": %.1f, \"inline\": %.1f, \"kawrap\": %.1f}%s\n", counts[i].name,
                    counts[i].per_call[NONE], counts[i].per_call[INLINE], counts[i].per_call[KAWRAP],
                    i < COUNTS - 1 ? "," : "");
        fprintf(j, "  },\n");
    }
    fprintf(j, "  \"syscalls_per_iteration\": ");
    if (!have_strace) fprintf(j, "null,\n");
    else {
        fprintf(j, "{");
        for (int i = 0; i < 2; i++) {
            fprintf(j, "%s\"%s\": {", i ? ", " : "", syscalls[i].mode);
            for (int v = 0; v < VARIANTS; v++) {
                fprintf(j, "%s\"%s\": {", v ? ", " : "", variant_names[v]);
                for (int k = 0, first = 1; k < syscalls[i].names; k++)
                    if (syscalls[i].per_iteration[v][k] >= 0.1) {
                        fprintf(j, "%s\"%s\": %.3f", first ? "" : ", ", syscalls[i].name[k],
                                syscalls[i].per_iteration[v][k]);
                        first = 0;
                    }
                fprintf(j, "}");
            }
            fprintf(j, "}");
        }
        fprintf(j, "},\n");
    }
    fprintf(j, "  \"instructions_exec\": {");
    for (int i = 0, first = 1; i < 3; i++)
        if (execs[i].available) {
            fprintf(j, "%s\"%s\": {\"without\": %.0f, \"empty_so\": %.0f, \"kawrap\": %.0f}", first ? "" : ", ",
                    execs[i].program, execs[i].counts[WITHOUT], execs[i].counts[EMPTY_SO], execs[i].counts[SHIM]);
            first = 0;
        }
    fprintf(j, "},\n");
    fprintf(j, "  \"size\": {\"file_bytes\": %ld, \"stripped_bytes\": %s%ld, \"target_bytes\": %ld},\n",
            size.file_bytes, "", size.stripped_measured ? size.stripped_bytes : -1, target_size);
    fprintf(j, "  \"memory_kb\": {");
    for (int h = 0; h < HOSTS; h++)
        fprintf(j, "\"%s\": {\"rss_anon\": %ld, \"vm_rss\": %ld}, ", host_names[h], memory.rss_anon_kb[h],
                memory.vm_rss_kb[h]);
    fprintf(j, "\"shim_file_rss\": %ld, \"shim_file_private_dirty\": %ld, \"fd_table_size\": %ld, "
               "\"fd_table_rss\": %ld},\n",
            memory.shim_rss_kb, memory.shim_private_kb, memory.table_size_kb, memory.table_rss_kb);
    fprintf(j, "  \"all_targets_hold\": %s\n}\n", all_hold ? "true" : "false");
    fclose(j);
    return strict && !all_hold ? 1 : 0;
}
