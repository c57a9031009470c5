/* forkstorm FORKS
 *
 * A threaded program that forks a lot: while three threads of the parent
 * connect in a loop, the main thread forks FORKS children, each of which
 * starts a thread and connects from both. A shim that took a lock, or kept
 * state that a fork can catch half-written, deadlocks or crashes here.
 * Prints what the program saw; `keepalive` lines differ by design (the
 * shim's profile) and are compared apart. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PARENT_THREADS 3
#define PARENT_CONNECTS 100
#define IN_FLIGHT 16

static struct sockaddr_in server;

static void *acceptor(void *arg) {
    int listener = *(int *)arg;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

/* Connects once: bit 0 = connected, bit 1 = SO_KEEPALIVE was on. */
static int connect_once(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int result = connect(fd, (struct sockaddr *)&server, sizeof server) == 0;
    int on = 0;
    socklen_t len = sizeof on;
    if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len) == 0 && on)
        result |= 2;
    close(fd);
    return result;
}

static void *child_thread(void *arg) {
    *(int *)arg = connect_once();
    return NULL;
}

struct tally {
    int connected, keepalive;
};

static void *parent_thread(void *arg) {
    struct tally *t = arg;
    for (int i = 0; i < PARENT_CONNECTS; i++) {
        int r = connect_once();
        t->connected += r & 1;
        t->keepalive += (r >> 1) & 1;
    }
    return NULL;
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 1000;
    alarm(50); /* bounded: a deadlock kills the program instead of the test run */
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    server.sin_family = AF_INET;
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof server;
    if (bind(listener, (struct sockaddr *)&server, sizeof server) || listen(listener, 4096) ||
        getsockname(listener, (struct sockaddr *)&server, &len))
        return 3;
    pthread_t accepting, workers[PARENT_THREADS];
    struct tally tallies[PARENT_THREADS] = {0};
    pthread_create(&accepting, NULL, acceptor, &listener);
    for (int i = 0; i < PARENT_THREADS; i++)
        pthread_create(&workers[i], NULL, parent_thread, &tallies[i]);

    int children_ok = 0, children_keepalive = 0, in_flight = 0, status;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int from_thread = 0;
            pthread_t t;
            pthread_create(&t, NULL, child_thread, &from_thread);
            int from_main = connect_once();
            pthread_join(t, NULL);
            _exit(from_main & from_thread & 3);
        }
        if (pid < 0)
            return 4;
        if (++in_flight == IN_FLIGHT) {
            wait(&status);
            in_flight--;
            children_ok += WIFEXITED(status) && (WEXITSTATUS(status) & 1);
            children_keepalive += WIFEXITED(status) && (WEXITSTATUS(status) & 2);
        }
    }
    while (in_flight-- > 0 && wait(&status) > 0) {
        children_ok += WIFEXITED(status) && (WEXITSTATUS(status) & 1);
        children_keepalive += WIFEXITED(status) && (WEXITSTATUS(status) & 2);
    }
    int parent_ok = 0, parent_keepalive = 0;
    for (int i = 0; i < PARENT_THREADS; i++) {
        pthread_join(workers[i], NULL);
        parent_ok += tallies[i].connected;
        parent_keepalive += tallies[i].keepalive;
    }
    printf("forks=%d children_connected=%d parent_connected=%d\n", forks, children_ok, parent_ok);
    printf("keepalive children=%d parent=%d\n", children_keepalive, parent_keepalive);
    return 0;
}
