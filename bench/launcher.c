/* How long kawrap takes to start a program, by mode: `kawrap --bpf -- true`
 * the first time (cold: the kernel loads and verifies the BPF programs) and
 * later (warm: they are reused from their pins), against `kawrap -- true`
 * (the LD_PRELOAD mode, which execs) and `true` alone.
 *
 *   launcher --kawrap PATH [--rounds N] [--json PATH]
 *
 * Each round runs the four in a rotated order; before each round the pinned
 * programs are removed (`kawrap bpf unpin --cache`, not timed) so that the
 * round's cold run really loads. Run it as root in a mount namespace with a
 * BPF filesystem of its own (scripts/bench.sh does), so that removing the
 * pins touches nothing else. Prints a Markdown table: medians (min-max),
 * and ratios of the medians. Exit status 1 if the warm start misses its
 * target (≤ 20 ms) and --strict is given. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 1000
#define TARGET_WARM_MS 20.0

extern char **environ;

enum { COLD, WARM, PRELOAD, BARE, KINDS };
static const char *names[KINDS] = {"kawrap --bpf -- true, first run (cold)", "kawrap --bpf -- true, later (warm)",
                                   "kawrap -- true (LD_PRELOAD)", "true"};
static const char *keys[KINDS] = {"bpf_cold", "bpf_warm", "ld_preload", "true"};

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("launcher: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(2);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs argv to completion, output discarded; its wall time in ms. */
static double run(char *const argv[]) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    double begin = now_ms();
    int error = posix_spawn(&pid, argv[0], &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error) fail("spawn %s: %s", argv[0], strerror(error));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) fail("waitpid: %s", strerror(errno));
    double elapsed = now_ms() - begin;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("%s %s: status %d", argv[0], argv[1], status);
    return elapsed;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stats {
    double median, min, max;
};

static struct stats summarize(double *samples, int n) {
    qsort(samples, n, sizeof *samples, compare);
    struct stats s = {n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2, samples[0], samples[n - 1]};
    return s;
}

int main(int argc, char **argv) {
    const char *kawrap = NULL, *json_path = NULL;
    int rounds = 30, strict = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--kawrap") && i + 1 < argc) kawrap = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--strict")) strict = 1;
        else fail("unknown argument %s (usage: launcher --kawrap PATH [--rounds N] [--json PATH] [--strict])", argv[i]);
    }
    if (!kawrap) fail("--kawrap is required");
    if (rounds < 3 || rounds > MAX_ROUNDS) fail("--rounds %d: expected 3..=%d", rounds, MAX_ROUNDS);
    char *true_path = "/bin/true";
    char *k = (char *)kawrap;
    char *commands[KINDS][6] = {
        {k, "--bpf", "--", true_path, NULL},
        {k, "--bpf", "--", true_path, NULL},
        {k, "--", true_path, NULL},
        {true_path, NULL},
    };
    char *unpin[] = {k, "bpf", "unpin", "--cache", NULL};
    static double samples[KINDS][MAX_ROUNDS];
    /* Warm-up: page cache, and the first cgroup and pins. */
    for (int kind = 0; kind < KINDS; kind++) run(commands[kind]);
    fprintf(stderr, "  launcher start, %d rounds: ", rounds);
    for (int i = 0; i < rounds; i++) {
        run(unpin);
        /* The cold run comes first (nothing is pinned before it); the
         * three others rotate after it. */
        samples[COLD][i] = run(commands[COLD]);
        for (int j = 0; j < KINDS - 1; j++) {
            int kind = 1 + (i + j) % (KINDS - 1);
            samples[kind][i] = run(commands[kind]);
        }
        if (i % (rounds / 10 + 1) == 0) fputc('.', stderr);
    }
    fputc('\n', stderr);
    struct stats s[KINDS];
    for (int kind = 0; kind < KINDS; kind++) s[kind] = summarize(samples[kind], rounds);

    int holds = s[WARM].median <= TARGET_WARM_MS;
    printf("\nProcess start of `true` through kawrap, wall time from spawn to exit, ms: median (min–max) over %d "
           "interleaved rounds; ratios of the medians.\n\n",
           rounds);
    printf("| command | ms | / `kawrap -- true` | / `true` |\n|---|---|---|---|\n");
    for (int kind = 0; kind < KINDS; kind++)
        printf("| `%s` | %.2f (%.2f–%.2f) | %.2f | %.2f |\n", names[kind], s[kind].median, s[kind].min, s[kind].max,
               s[kind].median / s[PRELOAD].median, s[kind].median / s[BARE].median);
    printf("\nTarget: warm `kawrap --bpf -- true` ≤ %.0f ms: %.2f ms, %s.\n", TARGET_WARM_MS, s[WARM].median,
           holds ? "holds" : "MISSED");
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) fail("%s: %s", json_path, strerror(errno));
        fprintf(f, "{\"rounds\": %d, \"target_warm_ms\": %.1f, \"warm_holds\": %s", rounds, TARGET_WARM_MS,
                holds ? "true" : "false");
        for (int kind = 0; kind < KINDS; kind++)
            fprintf(f, ", \"%s\": {\"median_ms\": %.3f, \"min_ms\": %.3f, \"max_ms\": %.3f}", keys[kind],
                    s[kind].median, s[kind].min, s[kind].max);
        fprintf(f, "}\n");
        fclose(f);
    }
    return strict && !holds ? 1 : 0;
}
