/* dlsock.so: a plugin the host loads and unloads at run time (dlhost.c);
 * its socket calls are bound when it is loaded, after the shim's setup. */
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connects to *server: bit 0 = connected, bit 1 = SO_KEEPALIVE was on. */
int dlsock_connect(const struct sockaddr_in *server) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    int result = connect(fd, (const struct sockaddr *)server, sizeof *server) == 0;
    int on = 0;
    socklen_t len = sizeof on;
    if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len) == 0 && on)
        result |= 2;
    close(fd);
    return result;
}
