/* A plain C TCP client, compiled at test time in several forms (musl-gcc,
 * -static, setuid…): connects to ADDR PORT, prints its socket's keepalive
 * options as the kernel reports them, then holds the connection until the
 * peer closes it. It never asks for keepalive itself. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int option(int fd, int level, int name) {
    int value = -1;
    socklen_t length = sizeof value;
    if (getsockopt(fd, level, name, &value, &length) != 0) {
        perror("getsockopt");
        exit(2);
    }
    return value;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ADDR PORT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &peer.sin_addr) != 1) {
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&peer, sizeof peer) != 0) {
        perror("connect");
        return 1;
    }
    printf("keepalive=%d idle=%d intvl=%d cnt=%d ut=%d\n", option(fd, SOL_SOCKET, SO_KEEPALIVE),
           option(fd, IPPROTO_TCP, TCP_KEEPIDLE), option(fd, IPPROTO_TCP, TCP_KEEPINTVL),
           option(fd, IPPROTO_TCP, TCP_KEEPCNT), option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
    fflush(stdout);
    char byte;
    while (read(fd, &byte, 1) > 0) {
    }
    return 0;
}
