/*
 * The program being measured: a plain C client, the kind of host the shim
 * lives in. The driver (driver.c) runs it as three variants:
 *
 *   none    no keepalive at all                      (reference)
 *   inline  the client sets the profile's four options itself right after
 *           socket(): the floor, what the shim must not exceed
 *   kawrap  the client does nothing; LD_PRELOAD=libkawrap.so with
 *           KAWRAP_PROFILE=300/30/5 does it
 *
 * Usage:  client MODE VARIANT ITERATIONS [THREADS]
 *   conn   ITERATIONS x (socket, connect to a loopback listener, accept, close, close)
 *   sock   ITERATIONS x (socket, close)
 *   storm  like conn, THREADS threads at once, each with its own listener
 *   idle   like conn, then print "ready" and wait until stdin closes
 *          (the driver reads /proc/PID/status and smaps meanwhile)
 *
 * Prints one line, "ns_per_op=<float>", timing only the loop (not process
 * start or setup): for conn and sock the fastest of 10 equal batches (see
 * fastest_batch), for storm likewise with all threads running each batch.
 * Before timing it checks with getsockopt that the variant really is what
 * it claims (the shim loaded and active, or no keepalive),
 * and exits with status 3 otherwise, so a benchmark of a silently inactive
 * shim cannot pass.
 *
 * The loop functions are noinline with stable names so that callgrind can
 * count instructions for exactly one step (--toggle-collect=step_socket).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The profile every variant that has keepalive uses: 300/30/5. */
#define IDLE 300
#define INTERVAL 30
#define COUNT 5

/* Iterations before timing (first calls bind lazy symbols and fault pages
 * in); fixed so that callgrind runs of different lengths differ by exactly
 * their ITERATIONS. */
#define WARMUP 200

/* The timed loop is split into this many batches (see fastest_batch). */
#define BATCHES 10

enum variant { NONE, INLINE, KAWRAP };
static enum variant variant;

static void die(const char *what) {
    fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* What the shim does at socket(): the same four options, in its order. */
static void set_profile(int fd) {
    static const int one = 1, idle = IDLE, interval = INTERVAL, count = COUNT;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) != 0)
        die("setsockopt");
}

__attribute__((noinline)) int step_socket(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (variant == INLINE) set_profile(fd);
    return fd;
}

__attribute__((noinline)) void step_connect(int fd, const struct sockaddr_in *to) {
    if (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0) die("connect");
}

__attribute__((noinline)) int step_accept(int server) {
    int fd = accept4(server, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) die("accept");
    return fd;
}

__attribute__((noinline)) void step_close(int fd) {
    if (close(fd) != 0) die("close");
}

/* A loopback listener whose accepted sockets close with RST (SO_LINGER 0,
 * inherited from the listener): no TIME_WAIT is left behind, so a long run
 * never runs out of ephemeral ports and every iteration costs the same. The
 * listener carries the profile in the inline variant too, as the shim's
 * socket() hook gives it one under kawrap: the kernel's work on accepted
 * sockets (which inherit it) is then the same in both. */
static int listener(struct sockaddr_in *address) {
    static const int reuse = 1;
    static const struct linger abort_on_close = {.l_onoff = 1, .l_linger = 0};
    socklen_t length = sizeof *address;
    int fd = step_socket();
    memset(address, 0, sizeof *address);
    address->sin_family = AF_INET;
    address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) != 0)
        die("setsockopt listener");
    if (bind(fd, (struct sockaddr *)address, sizeof *address) != 0) die("bind");
    if (listen(fd, 128) != 0) die("listen");
    if (getsockname(fd, (struct sockaddr *)address, &length) != 0) die("getsockname");
    return fd;
}

__attribute__((noinline)) void conn_cycle(int server, const struct sockaddr_in *to) {
    int fd = step_socket();
    step_connect(fd, to);
    step_close(step_accept(server));
    step_close(fd);
}

__attribute__((noinline)) void sock_cycle(void) { step_close(step_socket()); }

static int option(int fd, int level, int name) {
    int value = -1;
    socklen_t length = sizeof value;
    if (getsockopt(fd, level, name, &value, &length) != 0) die("getsockopt");
    return value;
}

/* Exits with status 3 unless a fresh TCP socket has exactly the options
 * this variant promises. */
static void check_variant(void) {
    int fd = step_socket();
    int keepalive = option(fd, SOL_SOCKET, SO_KEEPALIVE);
    int idle = option(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    int interval = option(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    int count = option(fd, IPPROTO_TCP, TCP_KEEPCNT);
    step_close(fd);
    int want_profile = variant != NONE;
    int has_profile = keepalive == 1 && idle == IDLE && interval == INTERVAL && count == COUNT;
    if (want_profile ? !has_profile : keepalive != 0) {
        fprintf(stderr,
                "client: variant %s but a new socket has SO_KEEPALIVE=%d TCP_KEEPIDLE=%d "
                "TCP_KEEPINTVL=%d TCP_KEEPCNT=%d (is the shim %s?)\n",
                variant == NONE ? "none" : variant == INLINE ? "inline" : "kawrap", keepalive, idle,
                interval, count, want_profile ? "loaded" : "unexpectedly loaded");
        exit(3);
    }
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void conn_batch(long n, int server, const struct sockaddr_in *to) {
    for (long i = 0; i < n; i++) conn_cycle(server, to);
}

static void sock_batch(long n, int server, const struct sockaddr_in *to) {
    (void)server;
    (void)to;
    for (long i = 0; i < n; i++) sock_cycle();
}

/* Runs `iterations` in BATCHES equal batches and returns the fastest
 * batch's ns per iteration: on a shared machine a batch during which
 * another process ran is slower, never faster, so the fastest one is the
 * closest to the cost itself (the driver then takes medians across
 * processes). */
static double fastest_batch(long iterations, void (*batch)(long, int, const struct sockaddr_in *), int server,
                            const struct sockaddr_in *to) {
    long per_batch = iterations / BATCHES > 0 ? iterations / BATCHES : 1;
    double best = 0;
    for (int b = 0; b < BATCHES; b++) {
        double begin = now_ns();
        batch(per_batch, server, to);
        double ns = (now_ns() - begin) / (double)per_batch;
        if (b == 0 || ns < best) best = ns;
    }
    return best;
}

struct storm_thread {
    pthread_t thread;
    pthread_barrier_t *start, *end;
    long per_batch;
    double began[BATCHES], ended[BATCHES];
};

static void *storm_run(void *argument) {
    struct storm_thread *self = argument;
    struct sockaddr_in to;
    int server = listener(&to);
    for (int i = 0; i < WARMUP; i++) conn_cycle(server, &to);
    for (int b = 0; b < BATCHES; b++) {
        pthread_barrier_wait(self->start);
        self->began[b] = now_ns();
        for (long i = 0; i < self->per_batch; i++) conn_cycle(server, &to);
        self->ended[b] = now_ns();
        pthread_barrier_wait(self->end);
    }
    step_close(server);
    return NULL;
}

/* All threads run each batch together (barriers around it); a batch lasts
 * from the first thread's start to the last thread's end, as each thread
 * records (with more threads than cores, the main thread may run late).
 * As for one thread, the fastest batch is the figure. */
static double storm(long iterations, int threads) {
    pthread_barrier_t start, end;
    struct storm_thread *all = calloc((size_t)threads, sizeof *all);
    if (!all) die("calloc");
    long per_batch = iterations / threads / BATCHES > 0 ? iterations / threads / BATCHES : 1;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&end, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        all[i].start = &start;
        all[i].end = &end;
        all[i].per_batch = per_batch;
        if (pthread_create(&all[i].thread, NULL, storm_run, &all[i]) != 0) die("pthread_create");
    }
    for (int b = 0; b < BATCHES; b++) {
        pthread_barrier_wait(&start);
        pthread_barrier_wait(&end);
    }
    for (int i = 0; i < threads; i++) pthread_join(all[i].thread, NULL);
    double best = 0;
    for (int b = 0; b < BATCHES; b++) {
        double first = all[0].began[b], last = all[0].ended[b];
        for (int i = 1; i < threads; i++) {
            if (all[i].began[b] < first) first = all[i].began[b];
            if (all[i].ended[b] > last) last = all[i].ended[b];
        }
        double ns = (last - first) / (double)(per_batch * threads);
        if (b == 0 || ns < best) best = ns;
    }
    free(all);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: client conn|sock|storm|idle none|inline|kawrap ITERATIONS [THREADS]\n");
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(argv[2], "none")) variant = NONE;
    else if (!strcmp(argv[2], "inline")) variant = INLINE;
    else if (!strcmp(argv[2], "kawrap")) variant = KAWRAP;
    else {
        fprintf(stderr, "client: variant %s: expected none, inline or kawrap\n", argv[2]);
        return 2;
    }
    long iterations = strtol(argv[3], NULL, 10);
    if (iterations < 1) {
        fprintf(stderr, "client: iterations %s: expected an integer >= 1\n", argv[3]);
        return 2;
    }
    check_variant();

    double ns_per_op;
    if (!strcmp(mode, "storm")) {
        int threads = argc > 4 ? atoi(argv[4]) : 8;
        if (threads < 1 || threads > 64) {
            fprintf(stderr, "client: threads %s: expected 1..=64\n", argv[4]);
            return 2;
        }
        ns_per_op = storm(iterations, threads);
    } else if (!strcmp(mode, "conn") || !strcmp(mode, "idle")) {
        struct sockaddr_in to;
        int server = listener(&to);
        for (long i = 0; i < WARMUP; i++) conn_cycle(server, &to);
        ns_per_op = fastest_batch(iterations, conn_batch, server, &to);
        if (!strcmp(mode, "idle")) {
            char byte;
            printf("ready\n");
            fflush(stdout);
            while (read(0, &byte, 1) > 0) {
            }
            return 0;
        }
        step_close(server);
    } else if (!strcmp(mode, "sock")) {
        for (long i = 0; i < WARMUP; i++) sock_cycle();
        ns_per_op = fastest_batch(iterations, sock_batch, -1, NULL);
    } else {
        fprintf(stderr, "client: mode %s: expected conn, sock, storm or idle\n", mode);
        return 2;
    }
    printf("ns_per_op=%.1f\n", ns_per_op);
    return 0;
}
