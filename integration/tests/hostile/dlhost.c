/* dlhost PLUGIN ROUNDS
 *
 * dlopen()s PLUGIN (dlsock.so), connects through it to its own listener,
 * and dlclose()s it again, ROUNDS times. Prints what the program saw; the
 * `keepalive` line differs by design under the shim. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof server;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&server, sizeof server) || listen(listener, 128) ||
        getsockname(listener, (struct sockaddr *)&server, &len))
        return 3;
    int rounds = atoi(argv[2]), loaded = 0, connected = 0, keepalive = 0, unloaded = 0;
    for (int i = 0; i < rounds; i++) {
        void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!plugin)
            continue;
        loaded++;
        int (*connect_via)(const struct sockaddr_in *) = (int (*)(const struct sockaddr_in *))dlsym(plugin, "dlsock_connect");
        int r = connect_via ? connect_via(&server) : 0;
        connected += r & 1;
        keepalive += (r >> 1) & 1;
        int accepted = accept(listener, NULL, NULL);
        if (accepted >= 0)
            close(accepted);
        unloaded += dlclose(plugin) == 0;
    }
    printf("loaded=%d connected=%d unloaded=%d\n", loaded, connected, unloaded);
    printf("keepalive=%d\n", keepalive);
    return 0;
}
