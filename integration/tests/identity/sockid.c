/* sockid CASE [ARGS...]
 *
 * Small programs about what a socket IS, as opposed to the number it has
 * now: duplicates, numbers closed and refilled behind libc's back, Fast
 * Open, short IPv6 addresses, sandboxes, threads, plugins, inherited
 * listeners. Each case prints result lines (`name=rc errno=E`, the same
 * with and without libkawrap.so) and read-outs of the options the kernel
 * holds (`keepalive=K idle=I intvl=V cnt=C ut=U`), which differ by design.
 *
 * Cases (every one makes its own loopback listener unless said otherwise):
 *   dup METHOD            set SO_KEEPALIVE=0 and TCP_KEEPIDLE=60 on a socket, connect through
 *                         a duplicate made by METHOD: dup dup2 dup3 dupfd-cloexec scm-rights
 *                         dup-close (the original closed first) dup-close-reuse (and its number
 *                         taken by a new socket before the duplicate is used)
 *   dup-split             a duplicate on a number a closed socket had: set TCP_KEEPIDLE=60
 *                         through it, then SO_KEEPALIVE=0 through the original; connect
 *                         through the duplicate
 *   force-dup METHOD      connect, then set TCP_KEEPIDLE=99 through a duplicate
 *   vfork-close           connect, a vfork child closes the socket and exits, then set
 *                         TCP_KEEPIDLE=99
 *   stale CLOSER MARK     a number used by a socket of kind MARK (notcp: unix socket; applied: a
 *                         connected TCP socket), closed by CLOSER (close-range closefrom fclose
 *                         __close syscall dup2), then refilled behind libc's back: MARK-raw
 *                         variants connect a raw-syscall socket there, notcp-accept accepts a
 *                         connection into it and sets SO_KEEPALIVE=0
 *   tfo sendto|sendmsg    connect with MSG_FASTOPEN instead of connect()
 *   v6-len24              connect an IPv6 socket with the 24-byte (RFC 2133) address length
 *   efault                connect(fd, (void *)8, 16)
 *   seccomp-eperm         the same under a filter answering EPERM to process_vm_readv
 *   seccomp-kill          under an allow-list filter that kills on anything else: connect,
 *                         accept, set TCP_KEEPIDLE=61
 *   race TRIALS           connect in one thread while another sets TCP_KEEPIDLE=7: how many
 *                         trials lost the program's value
 *   dlclose-fork LIB      dlopen and dlclose LIB, then fork: how the child ended
 *   listen-exec [ka] -- PROGRAM...   make a listener at fd 3 (with SO_KEEPALIVE=1 and
 *                         TCP_KEEPIDLE=45 when `ka`), queue two connections on it, exec PROGRAM
 *   accept-inherited      accept twice from fd 3 and print each accepted socket's options
 *   listener-off [idle]   turn keepalive off on a listener, accept a connection from it (and
 *                         set TCP_KEEPIDLE=60 on that connection)
 *   listener-swap         accept from a listener the shim configured at listen(), then put a
 *                         listener made behind libc's back (raw syscalls) on its number and
 *                         accept from that */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern int __close(int);

static struct sockaddr_in server;
static struct sockaddr_in6 server6;

static int get(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -errno;
}

static void print(int fd) {
    printf("keepalive=%d idle=%d intvl=%d cnt=%d ut=%d\n", get(fd, SOL_SOCKET, SO_KEEPALIVE),
           get(fd, IPPROTO_TCP, TCP_KEEPIDLE), get(fd, IPPROTO_TCP, TCP_KEEPINTVL),
           get(fd, IPPROTO_TCP, TCP_KEEPCNT), get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
}

static void result(const char *name, long rc) {
    printf("%s=%ld errno=%d\n", name, rc, rc < 0 ? errno : 0);
}

static int set(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value);
}

static int tcp(void) { return socket(AF_INET, SOCK_STREAM, 0); }
static int raw_tcp(void) { return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); }

/* A listener on 127.0.0.1 (its address in `server`). */
static int listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    server = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof server;
    if (bind(fd, (struct sockaddr *)&server, sizeof server) || listen(fd, 4096) ||
        getsockname(fd, (struct sockaddr *)&server, &len)) {
        perror("listener");
        exit(3);
    }
    return fd;
}

static int connect_to_server(int fd) { return connect(fd, (struct sockaddr *)&server, sizeof server); }

/* Passes fd through a unix socket pair to ourselves: the received number
 * is a new descriptor of the same socket. */
static int pass_over_unix_socket(int fd) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
        return -1;
    char byte = 'x', control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    if (sendmsg(pair[0], &msg, 0) != 1 || recvmsg(pair[1], &msg, 0) != 1)
        return -1;
    int received;
    memcpy(&received, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof received);
    close(pair[0]);
    close(pair[1]);
    return received;
}

static int duplicate(int fd, const char *method) {
    if (!strcmp(method, "dup"))
        return dup(fd);
    if (!strcmp(method, "dup2"))
        return dup2(fd, fd + 10);
    if (!strcmp(method, "dup3"))
        return dup3(fd, fd + 11, O_CLOEXEC);
    if (!strcmp(method, "dupfd-cloexec"))
        return fcntl(fd, F_DUPFD_CLOEXEC, 20);
    if (!strcmp(method, "scm-rights"))
        return pass_over_unix_socket(fd);
    if (!strcmp(method, "dup-close") || !strcmp(method, "dup-close-reuse")) {
        int copy = dup(fd);
        close(fd);
        if (!strcmp(method, "dup-close-reuse"))
            printf("reused=%d\n", tcp() == fd);
        return copy;
    }
    fprintf(stderr, "unknown method %s\n", method);
    exit(2);
}

static int case_dup(const char *method) {
    listener();
    int fd = tcp();
    result("set_keepalive", set(fd, SOL_SOCKET, SO_KEEPALIVE, 0));
    result("set_idle", set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60));
    int copy = duplicate(fd, method);
    printf("duplicate=%d\n", copy >= 0 && copy != fd);
    result("connect", connect_to_server(copy));
    print(copy);
    return 0;
}

static int case_dup_split(void) {
    listener();
    int fd = tcp();
    int spare = tcp();
    close(spare);
    int copy = dup(fd);
    printf("landed=%d\n", copy == spare);
    result("set_idle", set(copy, IPPROTO_TCP, TCP_KEEPIDLE, 60));
    result("set_keepalive", set(fd, SOL_SOCKET, SO_KEEPALIVE, 0));
    result("connect", connect_to_server(copy));
    print(copy);
    return 0;
}

static int case_force_dup(const char *method) {
    listener();
    int fd = tcp();
    result("connect", connect_to_server(fd));
    int copy = duplicate(fd, method);
    printf("duplicate=%d\n", copy >= 0 && copy != fd);
    result("set_idle", set(copy, IPPROTO_TCP, TCP_KEEPIDLE, 99));
    print(copy);
    return 0;
}

static int case_vfork_close(void) {
    listener();
    int fd = tcp();
    result("connect", connect_to_server(fd));
    pid_t pid = vfork();
    if (pid == 0) {
        close(fd);
        _exit(0);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    printf("child_status=%d\n", status);
    result("set_idle", set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 99));
    print(fd);
    return 0;
}

/* Closes `fd` in a way libc's close() never sees; for dup2, by putting
 * `replacement` on its number (and closing the replacement's own). */
static void close_unseen(int fd, const char *closer, int replacement) {
    long rc;
    if (!strcmp(closer, "close-range"))
        rc = close_range(fd, fd, 0);
    else if (!strcmp(closer, "closefrom"))
        closefrom(fd), rc = 0;
    else if (!strcmp(closer, "fclose"))
        rc = fclose(fdopen(fd, "r+"));
    else if (!strcmp(closer, "__close"))
        rc = __close(fd);
    else if (!strcmp(closer, "syscall"))
        rc = syscall(SYS_close, fd);
    else if (!strcmp(closer, "dup2"))
        rc = dup2(replacement, fd) == fd ? close(replacement) : -1;
    else {
        fprintf(stderr, "unknown closer %s\n", closer);
        exit(2);
    }
    result("closed", rc);
}

/* For dup2 the replacement exists first (any number above fd); for every
 * other closer it is made after the close and must land on fd's number. */
static int refill(int fd, const char *closer, int (*make)(void)) {
    int replacement;
    if (!strcmp(closer, "dup2")) {
        replacement = make();
        close_unseen(fd, closer, replacement);
        return fd;
    }
    close_unseen(fd, closer, -1);
    replacement = make();
    printf("landed=%d\n", replacement == fd);
    return replacement;
}

static int accepting_listener = -1;
static int accept_one(void) { return accept(accepting_listener, NULL, NULL); }

static int case_stale(const char *closer, const char *mark) {
    accepting_listener = listener();
    if (!strcmp(mark, "notcp-accept")) {
        int client = tcp();
        int number = socket(AF_UNIX, SOCK_STREAM, 0);
        if (strcmp(closer, "dup2")) {
            close_unseen(number, closer, -1);
            result("connect", connect_to_server(client));
            int accepted = accept_one();
            printf("landed=%d\n", accepted == number);
        } else {
            result("connect", connect_to_server(client));
            refill(number, closer, accept_one);
        }
        result("set_keepalive", set(number, SOL_SOCKET, SO_KEEPALIVE, 0));
        print(number);
        return 0;
    }
    int number;
    if (!strcmp(mark, "notcp-raw")) {
        number = socket(AF_UNIX, SOCK_STREAM, 0);
    } else if (!strcmp(mark, "applied-raw")) {
        number = tcp();
        result("connect_first", connect_to_server(number));
    } else {
        fprintf(stderr, "unknown mark %s\n", mark);
        return 2;
    }
    int fd = refill(number, closer, raw_tcp);
    result("connect", connect_to_server(fd));
    print(fd);
    return 0;
}

static int case_tfo(const char *how) {
    listener();
    int fd = tcp();
    long rc;
    if (!strcmp(how, "sendto")) {
        rc = sendto(fd, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&server, sizeof server);
    } else {
        struct iovec iov = {.iov_base = "x", .iov_len = 1};
        struct msghdr msg = {.msg_name = &server, .msg_namelen = sizeof server, .msg_iov = &iov,
                             .msg_iovlen = 1};
        rc = sendmsg(fd, &msg, MSG_FASTOPEN);
    }
    result(how, rc);
    print(fd);
    return 0;
}

static int case_v6_len24(void) {
    int lst = socket(AF_INET6, SOCK_STREAM, 0);
    server6 = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof server6;
    if (bind(lst, (struct sockaddr *)&server6, sizeof server6) || listen(lst, 16) ||
        getsockname(lst, (struct sockaddr *)&server6, &len)) {
        perror("listener6");
        return 3;
    }
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    result("connect", connect(fd, (struct sockaddr *)&server6, 24));
    print(fd);
    return 0;
}

static void install(struct sock_filter *filter, unsigned short len) {
    struct sock_fprog program = {.len = len, .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program)) {
        perror("seccomp");
        exit(3);
    }
}

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

static int case_efault(void) {
    int fd = tcp();
    errno = 0;
    result("connect_bad_pointer", connect(fd, (struct sockaddr *)8, 16));
    return 0;
}

static int case_seccomp_eperm(void) {
    struct sock_filter filter[] = {
        LOAD_NR,
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    install(filter, sizeof filter / sizeof filter[0]);
    return case_efault();
}

/* What a hardened networking client may do (like a systemd unit with
 * SystemCallFilter=@system-service minus @debug): anything else kills it. */
static int case_seccomp_kill(void) {
    int lst = listener();
    fflush(stdout);
    struct sock_filter filter[] = {
        LOAD_NR,
        ALLOW(__NR_read), ALLOW(__NR_write), ALLOW(__NR_close), ALLOW(__NR_fstat),
        ALLOW(__NR_newfstatat), ALLOW(__NR_lseek), ALLOW(__NR_brk), ALLOW(__NR_mprotect),
        ALLOW(__NR_getrandom), ALLOW(__NR_rt_sigprocmask), ALLOW(__NR_mmap), ALLOW(__NR_munmap),
        ALLOW(__NR_futex), ALLOW(__NR_exit), ALLOW(__NR_exit_group), ALLOW(__NR_rt_sigreturn),
        ALLOW(__NR_clock_gettime), ALLOW(__NR_sched_yield), ALLOW(__NR_getpid), ALLOW(__NR_fcntl),
        ALLOW(__NR_poll), ALLOW(__NR_socket), ALLOW(__NR_connect), ALLOW(__NR_accept),
        ALLOW(__NR_accept4), ALLOW(__NR_bind), ALLOW(__NR_listen), ALLOW(__NR_getsockname),
        ALLOW(__NR_getpeername), ALLOW(__NR_getsockopt), ALLOW(__NR_setsockopt),
        ALLOW(__NR_sendto), ALLOW(__NR_recvfrom), ALLOW(__NR_sendmsg), ALLOW(__NR_recvmsg),
        ALLOW(__NR_shutdown),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    install(filter, sizeof filter / sizeof filter[0]);
    int fd = tcp();
    result("connect", connect_to_server(fd));
    int accepted = accept(lst, NULL, NULL);
    printf("accepted=%d\n", accepted >= 0);
    result("set_idle", set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 61));
    print(fd);
    fflush(stdout);
    return 0;
}

/* Two threads meet at every trial: one connects, the other sets
 * TCP_KEEPIDLE=7 — in odd trials after a varying delay (anywhere in the
 * connect), in even ones as soon as the connection is established plus a
 * short varying delay (right where the shim works after the kernel's
 * connect returns). Both wait for each other spinning (the other thread
 * runs on the other core), yielding only after a while (it does not: the
 * machine is busy). */
static volatile int trial_fd, generation, done_count;

static void spin(unsigned n) {
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static void wait_for(volatile int *counter, int value) {
    for (unsigned spins = 0; __atomic_load_n(counter, __ATOMIC_ACQUIRE) < value; spins++)
        if (spins > 20000)
            sched_yield();
}

static void until_established(int fd) {
    struct tcp_info info;
    socklen_t len = sizeof info;
    for (int polls = 0; polls < 100000; polls++)
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state == TCP_ESTABLISHED)
            return;
}

static void *setter(void *arg) {
    long trials = (long)arg;
    for (int g = 1; g <= trials; g++) {
        wait_for(&generation, g);
        if (g % 2) {
            spin((g * 7919u) % 30000);
        } else {
            until_established(trial_fd);
            spin((g * 31u) % 1500);
        }
        set(trial_fd, IPPROTO_TCP, TCP_KEEPIDLE, 7);
        __atomic_add_fetch(&done_count, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static int case_race(long trials) {
    int lst = listener();
    pthread_t thread;
    pthread_create(&thread, NULL, setter, (void *)trials);
    int lost = 0, failed = 0;
    for (int g = 1; g <= trials; g++) {
        trial_fd = tcp();
        __atomic_store_n(&generation, g, __ATOMIC_RELEASE);
        spin((g * 104729u) % 3000);
        failed += connect_to_server(trial_fd) != 0;
        wait_for(&done_count, g);
        lost += get(trial_fd, IPPROTO_TCP, TCP_KEEPIDLE) != 7;
        int accepted = accept(lst, NULL, NULL);
        close(accepted);
        close(trial_fd);
    }
    pthread_join(thread, NULL);
    printf("trials=%ld failed=%d\n", trials, failed);
    printf("keepalive lost=%d\n", lost);
    return 0;
}

static int case_dlclose_fork(const char *library) {
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    printf("loaded=%d\n", handle != NULL);
    if (handle)
        printf("unloaded=%d\n", dlclose(handle) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int status = -1;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status))
        printf("child=exit %d\n", WEXITSTATUS(status));
    else
        printf("child=signal %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    return 0;
}

static int case_listen_exec(int argc, char **argv) {
    int configured = argc > 0 && !strcmp(argv[0], "ka");
    while (argc > 0 && strcmp(argv[0], "--"))
        argc--, argv++;
    if (argc < 2)
        return 2;
    int lst = listener();
    if (configured) {
        set(lst, SOL_SOCKET, SO_KEEPALIVE, 1);
        set(lst, IPPROTO_TCP, TCP_KEEPIDLE, 45);
    }
    if (dup2(lst, 3) != 3)
        return 3;
    for (int i = 0; i < 2; i++)
        if (connect_to_server(tcp()))
            return 3;
    execvp(argv[1], &argv[1]);
    perror("exec");
    return 127;
}

static int case_accept_inherited(void) {
    for (int i = 0; i < 2; i++) {
        int fd = accept(3, NULL, NULL);
        printf("accepted=%d\n", fd >= 0);
        print(fd);
    }
    return 0;
}

static int case_listener_off(int set_idle) {
    int lst = listener();
    result("set_keepalive", set(lst, SOL_SOCKET, SO_KEEPALIVE, 0));
    int client = tcp();
    result("connect", connect_to_server(client));
    int fd = accept(lst, NULL, NULL);
    printf("accepted=%d\n", fd >= 0);
    if (set_idle)
        result("set_idle", set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60));
    print(fd);
    return 0;
}

static int case_listener_swap(void) {
    int lst = listener();
    int client = tcp();
    result("connect", connect_to_server(client));
    int first = accept(lst, NULL, NULL);
    printf("accepted=%d\n", first >= 0);
    print(first);
    /* An unconfigured listener, moved onto the configured one's number
     * without libc seeing it (which closes the configured one). */
    int raw = raw_tcp();
    server = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof server;
    if (syscall(SYS_bind, raw, &server, sizeof server) || syscall(SYS_listen, raw, 16) ||
        getsockname(raw, (struct sockaddr *)&server, &len) || syscall(SYS_dup3, raw, lst, 0) != lst ||
        syscall(SYS_close, raw)) {
        perror("swap");
        return 3;
    }
    result("connect", connect_to_server(tcp()));
    int second = accept(lst, NULL, NULL);
    printf("accepted=%d\n", second >= 0);
    print(second);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return 2;
    const char *name = argv[1];
    if (!strcmp(name, "dup") && argc == 3)
        return case_dup(argv[2]);
    if (!strcmp(name, "dup-split"))
        return case_dup_split();
    if (!strcmp(name, "force-dup") && argc == 3)
        return case_force_dup(argv[2]);
    if (!strcmp(name, "vfork-close"))
        return case_vfork_close();
    if (!strcmp(name, "stale") && argc == 4)
        return case_stale(argv[2], argv[3]);
    if (!strcmp(name, "tfo") && argc == 3)
        return case_tfo(argv[2]);
    if (!strcmp(name, "v6-len24"))
        return case_v6_len24();
    if (!strcmp(name, "efault"))
        return case_efault();
    if (!strcmp(name, "seccomp-eperm"))
        return case_seccomp_eperm();
    if (!strcmp(name, "seccomp-kill"))
        return case_seccomp_kill();
    if (!strcmp(name, "race") && argc == 3)
        return case_race(atol(argv[2]));
    if (!strcmp(name, "dlclose-fork") && argc == 3)
        return case_dlclose_fork(argv[2]);
    if (!strcmp(name, "listen-exec"))
        return case_listen_exec(argc - 2, argv + 2);
    if (!strcmp(name, "accept-inherited"))
        return case_accept_inherited();
    if (!strcmp(name, "listener-off"))
        return case_listener_off(argc == 3 && !strcmp(argv[2], "idle"));
    if (!strcmp(name, "listener-swap"))
        return case_listener_swap();
    fprintf(stderr, "sockid: unknown case\n");
    return 2;
}
