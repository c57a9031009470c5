/* A TCP client that reaches the kernel only through raw system calls and
 * is linked statically: LD_PRELOAD can never touch its sockets.
 *
 * usage: ka_client ADDR PORT [OPTION=VALUE | after:OPTION=VALUE]...
 *   OPTION: keepalive, idle, intvl, cnt, ut — the program's own setsockopt,
 *   before connect() or, with "after:", right after it.
 * Prints "connected fd=N" once connected, then blocks in read() and, when
 * that returns, prints "read rc=R errno=E ms=T" (T: milliseconds since the
 * connection was established) and exits 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void set_options(int fd, int argc, char **argv, int after)
{
	for (int i = 3; i < argc; i++) {
		char *arg = argv[i];
		int level = IPPROTO_TCP, name, value;

		if ((strncmp(arg, "after:", 6) == 0) != after)
			continue;
		if (after)
			arg += 6;
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
			fprintf(stderr, "ka_client: bad option %s\n", arg);
			exit(2);
		}
		value = atoi(strchr(arg, '=') + 1);
		if (syscall(SYS_setsockopt, fd, level, name, &value, sizeof(value)) < 0) {
			perror("ka_client: setsockopt");
			exit(1);
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int family, fd;
	long long start;
	long rc;
	char byte;

	if (argc < 3) {
		fprintf(stderr, "usage: ka_client ADDR PORT [OPTION=VALUE]...\n");
		return 2;
	}
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, argv[1], &in4->sin_addr) == 1) {
		family = in4->sin_family = AF_INET;
		in4->sin_port = htons(atoi(argv[2]));
		len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, argv[1], &in6->sin6_addr) == 1) {
		family = in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(atoi(argv[2]));
		len = sizeof(*in6);
	} else {
		fprintf(stderr, "ka_client: bad address %s\n", argv[1]);
		return 2;
	}
	fd = syscall(SYS_socket, family, SOCK_STREAM, 0);
	if (fd < 0) {
		perror("ka_client: socket");
		return 1;
	}
	set_options(fd, argc, argv, 0);
	if (syscall(SYS_connect, fd, &ss, len) < 0) {
		perror("ka_client: connect");
		return 1;
	}
	start = now_ms();
	set_options(fd, argc, argv, 1);
	printf("connected fd=%d\n", fd);
	fflush(stdout);
	rc = syscall(SYS_read, fd, &byte, 1);
	printf("read rc=%ld errno=%d ms=%lld\n", rc, rc < 0 ? errno : 0, now_ms() - start);
	return 0;
}
