/* seccomp PORT
 *
 * A sandboxed program: a seccomp filter makes every setsockopt(2) fail with
 * EPERM (as a container profile or a hardened daemon may), then the
 * program creates TCP sockets and connects to 127.0.0.1:PORT, or listens.
 * The shim's own setsockopt calls fail; the program must not notice. errno
 * is set to a sentinel before each call: success leaves it alone.
 * Three kinds of socket: blocking, non-blocking, and one made with a raw
 * syscall (the shim first meets it at connect or listen, and works there). */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SENTINEL EDOM

static int get(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -errno;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setsockopt, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program)) {
        perror("seccomp");
        return 3;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int kind = 0; kind < 4; kind++) {
        errno = SENTINEL;
        int fd = kind < 2 ? socket(AF_INET, SOCK_STREAM | (kind ? SOCK_NONBLOCK : 0), 0)
                          : syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
        printf("socket=%d errno=%d\n", fd >= 0, errno);
        if (kind == 3) {
            /* A listener the shim never saw created. */
            struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            bind(fd, (struct sockaddr *)&any, sizeof any);
            errno = SENTINEL;
            int rc = listen(fd, 1);
            printf("listen=%d errno=%d\n", rc, errno);
            printf("keepalive=%d idle=%d\n", get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE));
            continue;
        }
        errno = SENTINEL;
        int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
        printf("connect=%d errno=%d\n", rc, errno);
        int on = 1;
        errno = SENTINEL;
        rc = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
        printf("setsockopt=%d errno=%d\n", rc, errno);
        printf("keepalive=%d idle=%d intvl=%d cnt=%d\n", get(fd, SOL_SOCKET, SO_KEEPALIVE),
               get(fd, IPPROTO_TCP, TCP_KEEPIDLE), get(fd, IPPROTO_TCP, TCP_KEEPINTVL),
               get(fd, IPPROTO_TCP, TCP_KEEPCNT));
        errno = SENTINEL;
        rc = listen(fd, 1);
        printf("listen=%d errno=%d\n", rc, errno);
        errno = SENTINEL;
        rc = close(fd);
        printf("close=%d errno=%d\n", rc, errno);
    }
    return 0;
}
