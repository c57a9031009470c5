/* spawnhost MODE PORT [PROGRAM ARGS...]
 *
 * A program that sets its own TCP_KEEPIDLE (like curl), then starts a child
 * in one of the ways that share memory with the parent until exec, then
 * connects to 127.0.0.1:PORT and prints the options the kernel holds.
 * MODE:
 *   plain        no child (the reference)
 *   vfork-close  vfork(); the child closes the parent's socket number in its
 *                own descriptor table (as code cleaning up before exec does)
 *                and exits
 *   vfork-exec   vfork(); the child execs PROGRAM ARGS
 *   spawn-close  posix_spawn(/bin/true) with a close file action on the socket
 *   spawn        posix_spawn(PROGRAM ARGS), inheriting the environment
 * Output lines starting `keepalive=` differ by design under the shim. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int get(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -errno;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int idle = 60;
    int rc = setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    printf("socket=%d setsockopt=%d\n", fd >= 0, rc);
    fflush(stdout);

    int status = -1, spawned = -1;
    pid_t pid = -1;
    if (strcmp(mode, "vfork-close") == 0 || strcmp(mode, "vfork-exec") == 0) {
        pid = vfork();
        if (pid == 0) {
            if (strcmp(mode, "vfork-close") == 0) {
                close(fd);
                _exit(0);
            }
            execv(argv[3], &argv[3]);
            _exit(127);
        }
    } else if (strcmp(mode, "spawn-close") == 0) {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addclose(&actions, fd);
        char *args[] = {"true", NULL};
        spawned = posix_spawn(&pid, "/bin/true", &actions, NULL, args, environ);
    } else if (strcmp(mode, "spawn") == 0) {
        spawned = posix_spawn(&pid, argv[3], NULL, NULL, &argv[3], environ);
    } else if (strcmp(mode, "plain") != 0) {
        return 2;
    }
    /* Printed after the child is gone: its output comes first, always. */
    if (pid > 0)
        waitpid(pid, &status, 0);
    printf("posix_spawn=%d child_status=%d\n", spawned, pid > 0 ? status : -1);

    errno = 0;
    rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    printf("connect=%d errno=%d\n", rc, errno);
    printf("keepalive=%d idle=%d intvl=%d cnt=%d\n", get(fd, SOL_SOCKET, SO_KEEPALIVE),
           get(fd, IPPROTO_TCP, TCP_KEEPIDLE), get(fd, IPPROTO_TCP, TCP_KEEPINTVL),
           get(fd, IPPROTO_TCP, TCP_KEEPCNT));
    return 0;
}
