/* A TCP server that reaches the kernel only through raw system calls and
 * is linked statically: LD_PRELOAD can never touch its sockets.
 *
 * usage: ka_server ADDR PORT [OPTION=VALUE]...   (PORT 0: any free port)
 *   OPTION: keepalive, idle, intvl, cnt, ut — the program's own setsockopt
 *   on the listening socket, which accepted connections inherit.
 * Prints "port N" once listening and "accepted fd=N" per connection, then
 * holds every connection open, silent, until killed. */
#include <unistd.h>

#include "ka_common.h"

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family, fd, one = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: ka_server ADDR PORT [OPTION=VALUE]...\n");
		return 2;
	}
	family = fill_address("ka_server", argv[1], atoi(argv[2]), &ss, &len);
	fd = syscall(SYS_socket, family, SOCK_STREAM, 0);
	for (int i = 3; fd >= 0 && i < argc; i++)
		set_option("ka_server", fd, argv[i]);
	if (fd < 0 || syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    syscall(SYS_bind, fd, &ss, len) < 0 || syscall(SYS_listen, fd, 16) < 0) {
		perror("ka_server: socket/bind/listen");
		return 1;
	}
	len = sizeof(ss);
	if (syscall(SYS_getsockname, fd, &ss, &len) < 0) {
		perror("ka_server: getsockname");
		return 1;
	}
	printf("port %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);
	for (;;) {
		int conn = syscall(SYS_accept4, fd, NULL, NULL, 0);

		if (conn < 0) {
			perror("ka_server: accept");
			return 1;
		}
		printf("accepted fd=%d\n", conn);
		fflush(stdout);
	}
}
