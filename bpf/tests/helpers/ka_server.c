/* A TCP server that reaches the kernel only through raw system calls and
 * is linked statically: LD_PRELOAD can never touch its sockets.
 *
 * usage: ka_server ADDR PORT [OPTION=VALUE]...   (PORT 0: any free port)
 *   OPTION: keepalive, idle, intvl, cnt, ut — the program's own setsockopt
 *   on the listening socket, which accepted connections inherit.
 * Prints "port N" once listening and "accepted fd=N" per connection, then
 * holds every connection open, silent, until killed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fill(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof(*in4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return AF_INET6;
	}
	fprintf(stderr, "ka_server: bad address %s\n", addr);
	exit(2);
}

static void set_options(int fd, int argc, char **argv)
{
	for (int i = 3; i < argc; i++) {
		const char *arg = argv[i];
		int level = IPPROTO_TCP, name, value;

		if (strncmp(arg, "keepalive=", 10) == 0)
			level = SOL_SOCKET, name = SO_KEEPALIVE;
		else if (strncmp(arg, "idle=", 5) == 0)
			name = TCP_KEEPIDLE;
		else if (strncmp(arg, "intvl=", 6) == 0)
			name = TCP_KEEPINTVL;
		else if (strncmp(arg, "cnt=", 4) == 0)
			name = TCP_KEEPCNT;
		else if (strncmp(arg, "ut=", 3) == 0)
			name = TCP_USER_TIMEOUT;
		else {
			fprintf(stderr, "ka_server: bad option %s\n", arg);
			exit(2);
		}
		value = atoi(strchr(arg, '=') + 1);
		if (syscall(SYS_setsockopt, fd, level, name, &value, sizeof(value)) < 0) {
			perror("ka_server: setsockopt");
			exit(1);
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family, fd, one = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: ka_server ADDR PORT [OPTION=VALUE]...\n");
		return 2;
	}
	family = fill(argv[1], atoi(argv[2]), &ss, &len);
	fd = syscall(SYS_socket, family, SOCK_STREAM, 0);
	if (fd >= 0)
		set_options(fd, argc, argv);
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
