/* What ka_client.c and ka_server.c share: reading an address and setting
 * one of the program's own keepalive options, through raw system calls. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>

/* Fills `ss` with ADDR (IPv4 or IPv6) and PORT; returns the family. */
static int fill_address(const char *who, const char *addr, int port, struct sockaddr_storage *ss,
			socklen_t *len)
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
	fprintf(stderr, "%s: bad address %s\n", who, addr);
	exit(2);
}

/* Sets OPTION=VALUE on `fd` (OPTION: keepalive, idle, intvl, cnt, ut),
 * as the program itself would. With the prefix "rejected:", the value is one
 * the kernel refuses: the call must fail with EINVAL, and the program goes
 * on, as a program that ignores the error would. */
static void set_option(const char *who, int fd, const char *arg)
{
	int level = IPPROTO_TCP, name, value, rejected = 0;

	if (strncmp(arg, "rejected:", 9) == 0) {
		rejected = 1;
		arg += 9;
	}
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
		fprintf(stderr, "%s: bad option %s\n", who, arg);
		exit(2);
	}
	value = atoi(strchr(arg, '=') + 1);
	if (syscall(SYS_setsockopt, fd, level, name, &value, sizeof(value)) < 0) {
		if (rejected && errno == EINVAL)
			return;
		fprintf(stderr, "%s: setsockopt %s: %s\n", who, arg, strerror(errno));
		exit(1);
	}
	if (rejected) {
		fprintf(stderr, "%s: setsockopt %s succeeded, expected EINVAL\n", who, arg);
		exit(1);
	}
}
