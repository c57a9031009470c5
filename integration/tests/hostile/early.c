/* early.so: a preloaded library whose constructor uses sockets before the
 * program's main, as some logging/monitoring libraries do.
 *
 * Listed AFTER libkawrap.so in LD_PRELOAD, its constructor runs BEFORE the
 * shim's (ld.so runs initializers in reverse load order; the test checks
 * this with LD_DEBUG=files), so the shim must load its configuration and
 * resolve the real functions lazily, from inside a hook.
 *
 * errno is set to a sentinel before every call: a successful call must
 * leave it alone, exactly as libc does. The shim's lazy loading happens in
 * whichever hook comes first, so EARLY_FIRST picks which one that is.
 * Writes its lines to fd 1 with write(2) (stdio is not ours to touch). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SENTINEL EDOM

static void say(const char *format, int a, int b) {
    char line[128];
    int n = snprintf(line, sizeof line, format, a, b);
    write(1, line, n);
}

static int get(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -errno;
}

__attribute__((constructor)) static void early(void) {
    const char *first = getenv("EARLY_FIRST");
    const char *port = getenv("EARLY_PORT");
    int on = 1, rc, fd;
    if (first && strcmp(first, "setsockopt") == 0) {
        /* A socket the shim never saw created, then setsockopt as the first hooked call. */
        fd = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
        errno = SENTINEL;
        rc = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
        say("early setsockopt=%d errno=%d\n", rc, errno);
        close(fd);
    } else if (first && strcmp(first, "connect") == 0) {
        fd = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port ? atoi(port) : 1),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        errno = SENTINEL;
        rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
        say("early connect=%d errno=%d\n", rc, errno);
        say("early keepalive=%d idle=%d\n", get(fd, SOL_SOCKET, SO_KEEPALIVE),
            get(fd, IPPROTO_TCP, TCP_KEEPIDLE));
        close(fd);
    } else if (first && strcmp(first, "close") == 0) {
        errno = SENTINEL;
        rc = close(-1);
        say("early close=%d errno=%d\n", rc, errno);
    }
    errno = SENTINEL;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    say("early socket=%d errno=%d\n", fd >= 0, errno);
    say("early keepalive=%d idle=%d\n", get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE));
    close(fd);
}
