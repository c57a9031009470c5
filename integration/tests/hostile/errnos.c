/* errnos [CASE...]
 *
 * Calls every hooked function in ways that fail (and some that succeed),
 * each with errno set to a sentinel first, and prints `CASE rc=R errno=E`:
 * the shim must leave both exactly as libc and the kernel made them. With
 * no arguments runs every case that works in any network namespace; the
 * `unreachable` cases need one without routes (`unshare -n`);
 * `efault-connect` and `efault-setsockopt` pass invalid pointers. Results are
 * normalised (a new descriptor prints as rc=fd) so runs compare equal. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SENTINEL EDOM

static struct sockaddr_in listening, closed_port;

static void report(const char *name, long rc, int error) {
    if (rc >= 0 && strncmp(name, "socket", 6) == 0)
        printf("%s rc=fd errno=%d\n", name, error);
    else
        printf("%s rc=%ld errno=%d\n", name, rc, error);
}

/* Runs CALL with errno = SENTINEL and reports its result and errno. */
#define CASE(name, call)                 \
    do {                                 \
        errno = SENTINEL;                \
        long rc_ = (call);               \
        report(name, rc_, errno);        \
    } while (0)

static int tcp(int flags) { return socket(AF_INET, SOCK_STREAM | flags, 0); }
static int closed_fd(void) {
    int fd = tcp(0);
    close(fd);
    return fd;
}
static int set_int(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value);
}
static int connect_in(int fd, const struct sockaddr_in *addr) {
    return connect(fd, (const struct sockaddr *)addr, sizeof *addr);
}

static void sockets(void) {
    CASE("socket_tcp", tcp(0));
    CASE("socket_tcp_cloexec_nonblock", tcp(SOCK_CLOEXEC | SOCK_NONBLOCK));
    CASE("socket_tcp6", socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP));
    CASE("socket_udp", socket(AF_INET, SOCK_DGRAM, 0));
    CASE("socket_unix", socket(AF_UNIX, SOCK_STREAM, 0));
    CASE("socket_eafnosupport", socket(9999, SOCK_STREAM, 0));
    CASE("socket_eprotonosupport", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
    CASE("socket_einval_type", socket(AF_INET, 0x7f, 0));
    CASE("socket_sctp", socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP));
    CASE("socket_mptcp", socket(AF_INET, SOCK_STREAM, 262));
}

static void connects(void) {
    CASE("connect_ok", connect_in(tcp(0), &listening));
    CASE("connect_refused", connect_in(tcp(0), &closed_port));
    struct sockaddr_in any = closed_port;
    any.sin_addr.s_addr = htonl(INADDR_ANY);
    CASE("connect_any_refused", connect_in(tcp(0), &any));
    int fd = tcp(SOCK_NONBLOCK);
    CASE("connect_einprogress", connect_in(fd, &listening));
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    poll(&p, 1, 2000);
    /* Linux reports a completed non-blocking connect as success, once. */
    CASE("connect_again_completed", connect_in(fd, &listening));
    CASE("connect_eisconn", connect_in(fd, &listening));
    struct sockaddr_in6 six = {.sin6_family = AF_INET6, .sin6_port = listening.sin_port,
                               .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    CASE("connect_eafnosupport", connect(tcp(0), (struct sockaddr *)&six, sizeof six));
    CASE("connect_einval_short", connect(tcp(0), (struct sockaddr *)&listening, 8));
    CASE("connect_einval_len0", connect(tcp(0), (struct sockaddr *)&listening, 0));
    CASE("connect_efault_null", connect(tcp(0), NULL, sizeof listening));
    CASE("connect_ebadf", connect_in(-1, &listening));
    CASE("connect_ebadf_closed", connect_in(closed_fd(), &listening));
    CASE("connect_enotsock", connect_in(open("/dev/null", O_RDONLY | O_CLOEXEC), &listening));
    struct sockaddr_un path = {.sun_family = AF_UNIX, .sun_path = "/nonexistent/kawrap.sock"};
    CASE("connect_unix_enoent", connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&path, sizeof path));
    CASE("connect_udp_ok", connect_in(socket(AF_INET, SOCK_DGRAM, 0), &closed_port));
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    CASE("connect_unspec", connect(tcp(0), &unspec, sizeof unspec));
}

static void listens(void) {
    int fd = tcp(0);
    CASE("listen_ok", listen(fd, 1));
    CASE("listen_again", listen(fd, 2));
    int connected = tcp(0);
    connect_in(connected, &listening);
    CASE("listen_connected_einval", listen(connected, 1));
    CASE("listen_ebadf", listen(-1, 1));
    CASE("listen_ebadf_closed", listen(closed_fd(), 1));
    CASE("listen_enotsock", listen(open("/dev/null", O_RDONLY | O_CLOEXEC), 1));
    CASE("listen_udp_eopnotsupp", listen(socket(AF_INET, SOCK_DGRAM, 0), 1));
}

static void setsockopts(void) {
    CASE("setsockopt_keepalive_ok", set_int(tcp(0), SOL_SOCKET, SO_KEEPALIVE, 1));
    CASE("setsockopt_idle_ok", set_int(tcp(0), IPPROTO_TCP, TCP_KEEPIDLE, 60));
    CASE("setsockopt_other_ok", set_int(tcp(0), IPPROTO_TCP, TCP_NODELAY, 1));
    CASE("setsockopt_idle_einval", set_int(tcp(0), IPPROTO_TCP, TCP_KEEPIDLE, 0));
    CASE("setsockopt_cnt_einval", set_int(tcp(0), IPPROTO_TCP, TCP_KEEPCNT, 128));
    CASE("setsockopt_ut_einval", set_int(tcp(0), IPPROTO_TCP, TCP_USER_TIMEOUT, -1));
    int one = 1;
    CASE("setsockopt_short", setsockopt(tcp(0), SOL_SOCKET, SO_KEEPALIVE, &one, 2));
    CASE("setsockopt_efault_null", setsockopt(tcp(0), SOL_SOCKET, SO_KEEPALIVE, NULL, sizeof one));
    CASE("setsockopt_ebadf", set_int(-1, SOL_SOCKET, SO_KEEPALIVE, 1));
    CASE("setsockopt_ebadf_closed", set_int(closed_fd(), IPPROTO_TCP, TCP_KEEPIDLE, 60));
    CASE("setsockopt_enotsock", set_int(open("/dev/null", O_RDONLY | O_CLOEXEC), SOL_SOCKET, SO_KEEPALIVE, 1));
    CASE("setsockopt_unix_keepidle", set_int(socket(AF_UNIX, SOCK_STREAM, 0), IPPROTO_TCP, TCP_KEEPIDLE, 60));
    CASE("setsockopt_udp_keepidle", set_int(socket(AF_INET, SOCK_DGRAM, 0), IPPROTO_TCP, TCP_KEEPIDLE, 60));
    CASE("setsockopt_udp_keepalive", set_int(socket(AF_INET, SOCK_DGRAM, 0), SOL_SOCKET, SO_KEEPALIVE, 1));
}

static void closes(void) {
    CASE("close_ok", close(tcp(0)));
    CASE("close_ebadf", close(-1));
    CASE("close_ebadf_closed", close(closed_fd()));
    CASE("close_ebadf_huge", close(1 << 30));
}

/* EMFILE: the limit set to exactly the descriptors open (none free), then
 * to one more (the program's socket takes the last one; anything the shim
 * opens for itself must fail quietly). */
static void emfile(void) {
    struct rlimit saved;
    getrlimit(RLIMIT_NOFILE, &saved);
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC); /* lowest free number */
    close(probe);
    int used = 0;
    for (int fd = 0; fd < probe + 64; fd++)
        used = fcntl(fd, F_GETFD) != -1 ? fd + 1 : used;
    if (used > probe) {
        printf("emfile skipped: descriptors are not contiguous\n");
        return;
    }
    struct rlimit none_free = {.rlim_cur = probe, .rlim_max = saved.rlim_max};
    setrlimit(RLIMIT_NOFILE, &none_free);
    CASE("socket_emfile", tcp(0));
    CASE("close_ebadf_over_limit", close(probe));
    struct rlimit one_free = {.rlim_cur = probe + 1, .rlim_max = saved.rlim_max};
    setrlimit(RLIMIT_NOFILE, &one_free);
    int fd;
    CASE("socket_last_fd", fd = tcp(0));
    CASE("connect_last_fd", connect_in(fd, &listening));
    CASE("setsockopt_last_fd", set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60));
    CASE("socket_emfile_again", tcp(0));
    CASE("close_last_fd", close(fd));
    setrlimit(RLIMIT_NOFILE, &saved);
}

static void unreachable(void) {
    struct sockaddr_in far = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "192.0.2.1", &far.sin_addr);
    CASE("connect_enetunreach", connect_in(tcp(0), &far));
    CASE("connect_enetunreach_nonblock", connect_in(tcp(SOCK_NONBLOCK), &far));
    CASE("connect_loopback_down", connect_in(tcp(0), &closed_port));
    struct sockaddr_in6 six = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
    inet_pton(AF_INET6, "2001:db8::1", &six.sin6_addr);
    CASE("connect6_enetunreach", connect(socket(AF_INET6, SOCK_STREAM, 0), (struct sockaddr *)&six, sizeof six));
}

/* Pointers the kernel refuses with EFAULT (a buggy program, or one probing
 * on purpose): the result must be the kernel's, not a crash. */
static const void *const bad = (const void *)16;

static void efault_connect(void) {
    CASE("connect_efault_pointer", connect(tcp(0), bad, sizeof(struct sockaddr_in)));
    CASE("connect6_efault_pointer", connect(socket(AF_INET6, SOCK_STREAM, 0), bad, sizeof(struct sockaddr_in6)));
}

static void efault_setsockopt(void) {
    CASE("setsockopt_efault_pointer", setsockopt(tcp(0), SOL_SOCKET, SO_KEEPALIVE, bad, sizeof(int)));
    CASE("setsockopt_idle_efault_pointer", setsockopt(tcp(0), IPPROTO_TCP, TCP_KEEPIDLE, bad, sizeof(int)));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    closed_port.sin_family = listening.sin_family = AF_INET;
    closed_port.sin_addr.s_addr = listening.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    closed_port.sin_port = htons(1); /* nothing listens on port 1 */
    if (argc > 1 && strcmp(argv[1], "unreachable") == 0) {
        unreachable();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "efault-connect") == 0) {
        efault_connect();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "efault-setsockopt") == 0) {
        efault_setsockopt();
        return 0;
    }
    socklen_t len = sizeof listening;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&listening, sizeof listening) || listen(listener, 64) ||
        getsockname(listener, (struct sockaddr *)&listening, &len))
        return 3;
    sockets();
    connects();
    listens();
    setsockopts();
    closes();
    emfile();
    return 0;
}
