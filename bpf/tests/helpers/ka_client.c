/* A TCP client that reaches the kernel only through raw system calls and
 * is linked statically: LD_PRELOAD can never touch its sockets.
 *
 * usage: ka_client ADDR PORT [OPTION=VALUE | after:OPTION=VALUE | refused:PORT]...
 *   OPTION: keepalive, idle, intvl, cnt, ut — the program's own setsockopt,
 *   before connect() or, with "after:", right after it (see set_option for
 *   "rejected:"). refused:PORT — first connect the same socket to ADDR:PORT,
 *   where nothing listens, and go on once that failed.
 * Prints "connected fd=N" once connected, then blocks in read() and, when
 * that returns, prints "read rc=R errno=E ms=T" (T: milliseconds since the
 * connection was established) and exits 0. */
#include <time.h>
#include <unistd.h>

#include "ka_common.h"

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* The OPTION=VALUE arguments for before connect(), or (`after`) those
 * given as after:OPTION=VALUE. */
static void set_options(int fd, int argc, char **argv, int after)
{
	for (int i = 3; i < argc; i++) {
		const char *arg = argv[i];

		if (strncmp(arg, "refused:", 8) == 0 || (strncmp(arg, "after:", 6) == 0) != after)
			continue;
		set_option("ka_client", fd, after ? arg + 6 : arg);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family, fd;
	long long start;
	long rc;
	char byte;

	if (argc < 3) {
		fprintf(stderr, "usage: ka_client ADDR PORT [OPTION=VALUE]...\n");
		return 2;
	}
	family = fill_address("ka_client", argv[1], atoi(argv[2]), &ss, &len);
	fd = syscall(SYS_socket, family, SOCK_STREAM, 0);
	if (fd < 0) {
		perror("ka_client: socket");
		return 1;
	}
	set_options(fd, argc, argv, 0);
	for (int i = 3; i < argc; i++) {
		struct sockaddr_storage refused;
		socklen_t refused_len;

		if (strncmp(argv[i], "refused:", 8) != 0)
			continue;
		fill_address("ka_client", argv[1], atoi(argv[i] + 8), &refused, &refused_len);
		if (syscall(SYS_connect, fd, &refused, refused_len) == 0 || errno != ECONNREFUSED) {
			fprintf(stderr, "ka_client: connect to port %s did not fail with ECONNREFUSED\n", argv[i] + 8);
			return 1;
		}
	}
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
