/* secure: installed setuid root by the test, run as `nobody`, with the
 * shim preloaded through /etc/ld.so.preload (the loader ignores LD_PRELOAD
 * paths in a setuid process, but not that file).
 *
 * Prints whether the loader marked it AT_SECURE, whether libkawrap.so is
 * really mapped (otherwise the test proves nothing), and the options of a
 * fresh TCP socket: a shim honouring KAWRAP_PROFILE here would let any
 * user steer a privileged program. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <unistd.h>

static int get(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -errno;
}

int main(void) {
    int mapped = 0;
    char line[4096];
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps))
        mapped |= strstr(line, "libkawrap.so") != NULL;
    if (maps)
        fclose(maps);
    errno = EDOM;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    printf("secure=%lu euid=%d shim_mapped=%d socket=%d errno=%d\n", getauxval(AT_SECURE), (int)geteuid(),
           mapped, fd >= 0, errno);
    printf("keepalive=%d idle=%d intvl=%d cnt=%d\n", get(fd, SOL_SOCKET, SO_KEEPALIVE),
           get(fd, IPPROTO_TCP, TCP_KEEPIDLE), get(fd, IPPROTO_TCP, TCP_KEEPINTVL),
           get(fd, IPPROTO_TCP, TCP_KEEPCNT));
    return 0;
}
