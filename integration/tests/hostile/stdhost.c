/* stdhost REPORT
 *
 * Runs with descriptors 0, 1 and 2 closed (see closestd.c), so its own
 * sockets take those numbers: a listener (0), a client (1) and the accepted
 * end (2). Anything a preloaded library wrote to "stdin/stdout/stderr"
 * would arrive on this connection, and is counted. The report goes to the
 * file REPORT, opened last. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char report[4096];
static size_t used;
#define OUT(...) (used += snprintf(report + used, sizeof report - used, __VA_ARGS__))

/* Bytes waiting on fd within 200 ms: nobody should have written any. */
static long pending(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0)
        return 0;
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    return n < 0 ? -errno : n;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    for (int fd = 0; fd < 3; fd++)
        OUT("fd%d_open=%d\n", fd, fcntl(fd, F_GETFD) != -1);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    OUT("listener=%d\n", listener);
    OUT("bind=%d\n", bind(listener, (struct sockaddr *)&addr, sizeof addr));
    OUT("listen=%d\n", listen(listener, 4));
    getsockname(listener, (struct sockaddr *)&addr, &len);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    OUT("client=%d\n", client);
    errno = 0;
    OUT("connect=%d errno=%d\n", connect(client, (struct sockaddr *)&addr, sizeof addr), errno);
    int accepted = accept(listener, NULL, NULL);
    OUT("accepted=%d\n", accepted);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    OUT("udp=%d\n", udp);
    OUT("send=%zd\n", send(client, "ping", 4, 0));
    char buf[16] = {0};
    OUT("recv=%zd %.4s\n", recv(accepted, buf, 4, 0), buf);
    OUT("extra_at_accepted=%ld extra_at_client=%ld\n", pending(accepted), pending(client));
    int keepalive = -1;
    len = sizeof keepalive;
    getsockopt(client, SOL_SOCKET, SO_KEEPALIVE, &keepalive, &len);
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        return 3;
    write(out, report, used);
    /* Separate line: differs by design (the shim's profile), compared apart. */
    dprintf(out, "keepalive=%d\n", keepalive);
    return 0;
}
