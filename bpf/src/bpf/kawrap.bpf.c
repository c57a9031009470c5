// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * kawrap's eBPF mode: keepalive settings for every TCP socket of a cgroup v2,
 * without LD_PRELOAD, so static binaries, Go programs, raw syscall(SYS_socket)
 * and setuid programs are covered too.
 *
 * Two programs share one configuration:
 * - kawrap_sockops (sock_ops) applies the profile with bpf_setsockopt() when
 *   a connection starts (TCP_CONNECT_CB: the destination is known, so
 *   per-destination rules can match) and when a server accepts one
 *   (PASSIVE_ESTABLISHED_CB: the default profile, like a listener under the
 *   shim).
 * - kawrap_setsockopt (cgroup/setsockopt) sees the program's own setsockopt()
 *   calls, so the policy means what it means under the shim: `respect`
 *   remembers which keepalive options the program chose itself and leaves
 *   them alone at connect; `force` rewrites the program's value to the
 *   profile's before the kernel sees it.
 *
 * The programs are loaded once and reused by every attachment (kawrap pins
 * them for the next run), so the configuration is not baked in: each cgroup
 * they are attached to has its own copy in cgroup local storage
 * (kawrap_cgroup), written by the loader right after attaching. Built with
 * KAWRAP_PINNED_COPY, the same source is the copy `kawrap bpf pin` loads
 * for systemd's BPFProgram=, which attaches it and writes nothing: its one
 * configuration sits in kawrap_pinned, filled at pin time. (One map or the
 * other, never a choice between both at run time: the verifier refuses
 * indexing into a pointer that may come from either map to programs loaded
 * without CAP_PERFMON.)
 *
 * The layout of struct kawrap_config is mirrored in src/maps.rs; change both
 * together and bump KAWRAP_CONFIG_VERSION.
 *
 * GPL: bpf_sk_storage_get() and friends are GPL-only helpers.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* From <sys/socket.h>, <netinet/in.h>, <netinet/tcp.h>, which do not build
 * for the bpf target. */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_SOCKET 1
#define SO_KEEPALIVE 9
#define SOL_TCP 6
#define TCP_KEEPIDLE 4
#define TCP_KEEPINTVL 5
#define TCP_KEEPCNT 6
#define TCP_USER_TIMEOUT 18
/* The kernel's limits (include/net/tcp.h): it refuses anything outside. */
#define MAX_TCP_KEEPIDLE 32767
#define MAX_TCP_KEEPINTVL 32767
#define MAX_TCP_KEEPCNT 127

#define KAWRAP_CONFIG_VERSION 2
#define KAWRAP_MAX_RULES 32 /* kawrap_core::MAX_RULES; a power of two (see kawrap_sockops) */

#define KAWRAP_HAS_USER_TIMEOUT 1u

#define KAWRAP_POLICY_RESPECT 0
#define KAWRAP_POLICY_FORCE 1

/* One bit per option the program may set itself. */
#define OWN_KEEPALIVE (1u << 0)
#define OWN_IDLE (1u << 1)
#define OWN_INTERVAL (1u << 2)
#define OWN_COUNT (1u << 3)
#define OWN_USER_TIMEOUT (1u << 4)


struct kawrap_values {
	__u32 idle_secs;
	__u32 interval_secs;
	__u32 count;
	__u32 user_timeout_ms;
	__u32 flags; /* KAWRAP_HAS_USER_TIMEOUT */
};

struct kawrap_rule {
	__u32 family; /* 0: any address; 4: IPv4 network; 6: IPv6 network */
	__u32 port;   /* host byte order; 0: any port */
	__u32 addr[4]; /* network byte order, already masked; IPv4 in addr[0] */
	__u32 mask[4]; /* network byte order */
	struct kawrap_values values;
};

struct kawrap_config {
	__u32 version; /* KAWRAP_CONFIG_VERSION; anything else: do nothing */
	__u32 rule_count;
	__u32 policy;
	__u32 kind; /* who attached it, for `kawrap bpf status` only */
	/* Nonzero, different for every attachment (the loader uses the cgroup
	 * id): which kawrap attachment a socket belongs to. */
	__u64 owner;
	struct kawrap_values profile;
	struct kawrap_rule rules[KAWRAP_MAX_RULES];
	__u32 reserved;
};

/* The same sizes are asserted on the Rust side (maps.rs). */
_Static_assert((KAWRAP_MAX_RULES & (KAWRAP_MAX_RULES - 1)) == 0, "KAWRAP_MAX_RULES is a power of two");
_Static_assert(sizeof(struct kawrap_values) == 20, "struct kawrap_values layout");
_Static_assert(sizeof(struct kawrap_rule) == 60, "struct kawrap_rule layout");
_Static_assert(sizeof(struct kawrap_config) == 1968, "struct kawrap_config layout");

/* Counters, per cgroup, for `kawrap bpf status` and the tests (in this
 * order: maps.rs reads them as five u64s). */
struct kawrap_counters {
	__u64 connect;   /* outgoing connections given a profile */
	__u64 passive;   /* accepted connections given a profile */
	__u64 failed;    /* bpf_setsockopt() calls the kernel refused */
	__u64 forced;    /* program setsockopt() values replaced (force) */
	__u64 respected; /* program setsockopt() calls remembered (respect) */
};

/* What kawrap knows about one socket. */
struct kawrap_sk {
	/* The attachment (kawrap_config.owner) that configures this socket:
	 * the first kawrap program to see it. Nested cgroups run the innermost
	 * cgroup's programs first, so the most specific scope owns the socket
	 * and the outer ones leave it alone, in every hook. */
	__u64 owner;
	__u32 own;        /* OWN_* bits the program set itself */
	__u32 has_chosen; /* `chosen` is valid (set at connect / accept) */
	struct kawrap_values chosen;
	__u32 rule; /* the rule chosen at the last connect; KAWRAP_MAX_RULES: none */
};

_Static_assert(sizeof(struct kawrap_sk) == 40, "struct kawrap_sk layout");

#ifndef KAWRAP_PINNED_COPY
/* The configuration of the cgroup the program runs for: one value per
 * cgroup it is attached to, shared by both programs (the key is the cgroup
 * id alone, not the attach type). Created zeroed at attach time. */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, struct kawrap_config);
} kawrap_cgroup SEC(".maps");
#else
/* The one configuration of a pinned copy (entry 0), wherever it runs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kawrap_config);
} kawrap_pinned SEC(".maps");
#endif

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, struct kawrap_counters);
} kawrap_stats SEC(".maps");

/* BPF_F_CLONE: an accepted socket inherits what the program set on its
 * listener, as it inherits the options themselves.
 *
 * Shared by every kawrap program, whatever copy or build: the loader pins it
 * as <bpffs>/kawrap/sockets-v2 and reuses the pin, so that nested
 * attachments agree on a socket's owner. Changing struct kawrap_sk means a
 * new pin name (SOCKETS_PIN in program.rs). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct kawrap_sk);
} kawrap_sockets SEC(".maps");

/* One function per counter, each adding at a constant offset: a single
 * function taking the counter's index would, once inlined and merged by the
 * compiler, index the map value with a different constant on each path,
 * which the verifier refuses to programs loaded without CAP_PERFMON
 * (Spectre v1 hardening). Per-CPU storage and programs that do not
 * migrate: no atomics. */
#define COUNTER(field)                                                                    \
	static __noinline int count_##field(void)                                         \
	{                                                                                 \
		struct kawrap_counters *counters = bpf_get_local_storage(&kawrap_stats, 0); \
		counters->field++;                                                        \
		return 0;                                                                 \
	}
COUNTER(connect)
COUNTER(passive)
COUNTER(failed)
COUNTER(forced)
COUNTER(respected)

static __always_inline struct kawrap_config *config(void)
{
#ifndef KAWRAP_PINNED_COPY
	struct kawrap_config *cfg = bpf_get_local_storage(&kawrap_cgroup, 0);
#else
	__u32 zero = 0;
	struct kawrap_config *cfg = bpf_map_lookup_elem(&kawrap_pinned, &zero);
#endif

	if (cfg && cfg->version == KAWRAP_CONFIG_VERSION && cfg->owner)
		return cfg;
	return 0;
}

/* The socket's state, claimed for this attachment; 0 when another (inner)
 * kawrap attachment owns it, or when there is no room for state. */
static __always_inline struct kawrap_sk *claim(struct bpf_sock *sk, const struct kawrap_config *cfg)
{
	struct kawrap_sk *state = bpf_sk_storage_get(&kawrap_sockets, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!state)
		return 0;
	if (state->owner && state->owner != cfg->owner)
		return 0;
	state->owner = cfg->owner;
	return state;
}

static __always_inline int set_int(struct bpf_sock_ops *skops, int level, int name, __u32 value)
{
	int val = (int)value;

	return bpf_setsockopt(skops, level, name, &val, sizeof(val));
}

static __always_inline void apply(struct bpf_sock_ops *skops, const struct kawrap_values *v, __u32 skip)
{
	int failed = 0;

	if (!(skip & OWN_KEEPALIVE))
		failed |= set_int(skops, SOL_SOCKET, SO_KEEPALIVE, 1);
	if (!(skip & OWN_IDLE))
		failed |= set_int(skops, SOL_TCP, TCP_KEEPIDLE, v->idle_secs);
	if (!(skip & OWN_INTERVAL))
		failed |= set_int(skops, SOL_TCP, TCP_KEEPINTVL, v->interval_secs);
	if (!(skip & OWN_COUNT))
		failed |= set_int(skops, SOL_TCP, TCP_KEEPCNT, v->count);
	if ((v->flags & KAWRAP_HAS_USER_TIMEOUT) && !(skip & OWN_USER_TIMEOUT))
		failed |= set_int(skops, SOL_TCP, TCP_USER_TIMEOUT, v->user_timeout_ms);
	if (failed)
		count_failed();
}

/* The index of the first rule covering the destination (KAWRAP_MAX_RULES:
 * none), exactly as kawrap_core::Rules::first_match: a port (if the rule has
 * one) must be equal, a network (if it has one) must contain the address;
 * IPv4-mapped IPv6 destinations (::ffff:a.b.c.d) are IPv4. */
static __always_inline __u32 choose_rule(const struct kawrap_config *cfg, struct bpf_sock_ops *skops)
{
	__u32 family = skops->family;
	__u32 port = bpf_ntohl(skops->remote_port); /* network order, in the high half */
	__u32 kind, a0, a1 = 0, a2 = 0, a3 = 0;
	__u32 n = cfg->rule_count;

	if (family == AF_INET) {
		kind = 4;
		a0 = skops->remote_ip4;
	} else if (family == AF_INET6) {
		a0 = skops->remote_ip6[0];
		a1 = skops->remote_ip6[1];
		a2 = skops->remote_ip6[2];
		a3 = skops->remote_ip6[3];
		if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff)) {
			kind = 4;
			a0 = a3;
		} else {
			kind = 6;
		}
	} else {
		return KAWRAP_MAX_RULES;
	}

	/* Unrolled, so that every rule is read at a constant offset. */
#pragma clang loop unroll(full)
	for (__u32 i = 0; i < KAWRAP_MAX_RULES; i++) {
		const struct kawrap_rule *r = &cfg->rules[i];

		if (i >= n)
			break;
		if (r->port && r->port != port)
			continue;
		if (r->family == 0)
			return i;
		if (r->family != kind)
			continue;
		if ((a0 & r->mask[0]) != r->addr[0])
			continue;
		if (kind == 6 && ((a1 & r->mask[1]) != r->addr[1] || (a2 & r->mask[2]) != r->addr[2] ||
				  (a3 & r->mask[3]) != r->addr[3]))
			continue;
		return i;
	}
	return KAWRAP_MAX_RULES;
}

SEC("sockops")
int kawrap_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	const struct kawrap_values *chosen;
	struct kawrap_config *cfg;
	struct kawrap_sk *state;
	struct bpf_sock *sk;
	__u32 skip = 0, rule;

	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	cfg = config();
	if (!cfg)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	state = claim(sk, cfg);
	if (!state)
		return 1;
	/* Chosen at every connect, not only the first: a socket whose connect
	 * failed may connect again, elsewhere, and the rules then are those of
	 * the new destination. */
	rule = op == BPF_SOCK_OPS_TCP_CONNECT_CB ? choose_rule(cfg, skops) : KAWRAP_MAX_RULES;
	/* Read back from the socket's storage, the index is to the verifier
	 * one unknown value on every path, not a different constant on each:
	 * only then may a program loaded without CAP_PERFMON index the map
	 * value with it (Spectre v1 hardening). */
	*(volatile __u32 *)&state->rule = rule;
	rule = *(volatile __u32 *)&state->rule;
	/* Masked as well as compared: the compiler may compute the address
	 * before the comparison, the verifier wants it bounded first. */
	chosen = rule < KAWRAP_MAX_RULES ? &cfg->rules[rule & (KAWRAP_MAX_RULES - 1)].values : &cfg->profile;
	if (cfg->policy == KAWRAP_POLICY_RESPECT)
		skip = state->own;
	state->chosen = *chosen;
	state->has_chosen = 1;
	apply(skops, chosen, skip);
	if (op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		count_connect();
	else
		count_passive();
	return 1;
}

static __always_inline __u32 option_bit(int level, int name)
{
	if (level == SOL_SOCKET && name == SO_KEEPALIVE)
		return OWN_KEEPALIVE;
	if (level != SOL_TCP)
		return 0;
	switch (name) {
	case TCP_KEEPIDLE:
		return OWN_IDLE;
	case TCP_KEEPINTVL:
		return OWN_INTERVAL;
	case TCP_KEEPCNT:
		return OWN_COUNT;
	case TCP_USER_TIMEOUT:
		return OWN_USER_TIMEOUT;
	}
	return 0;
}

/* Whether the kernel will accept `value` for the option: a call it refuses
 * (EINVAL) changes nothing, so it is not the program's choice, and it must
 * fail as it would without kawrap. */
static __always_inline int accepted(__u32 bit, int value)
{
	switch (bit) {
	case OWN_IDLE:
		return value >= 1 && value <= MAX_TCP_KEEPIDLE;
	case OWN_INTERVAL:
		return value >= 1 && value <= MAX_TCP_KEEPINTVL;
	case OWN_COUNT:
		return value >= 1 && value <= MAX_TCP_KEEPCNT;
	case OWN_USER_TIMEOUT:
		return value >= 0;
	}
	return 1; /* SO_KEEPALIVE: any int */
}

SEC("cgroup/setsockopt")
int kawrap_setsockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct kawrap_config *cfg;
	struct kawrap_sk *state;
	const struct kawrap_values *v;
	__u32 bit, value;
	void *optval, *optval_end;

	/* Every setsockopt of the cgroup's processes passes here. A value over
	 * a page is never one of ours; the program sees only its first page,
	 * and before Linux 6.4 the kernel fails the program's call with EFAULT
	 * unless optlen is set to 0 ("use the original buffer, untouched"). */
	if (ctx->optlen > 4096) {
		ctx->optlen = 0;
		return 1;
	}
	if (!sk || sk->type != SOCK_STREAM || sk->protocol != IPPROTO_TCP ||
	    (sk->family != AF_INET && sk->family != AF_INET6))
		return 1;
	bit = option_bit(ctx->level, ctx->optname);
	if (!bit)
		return 1;
	cfg = config();
	if (!cfg)
		return 1;
	/* Shorter than an int: the kernel refuses it (EINVAL). */
	optval = ctx->optval;
	optval_end = ctx->optval_end;
	if (optval + sizeof(int) > optval_end)
		return 1;
	if (!accepted(bit, *(int *)optval))
		return 1;
	state = claim(sk, cfg);
	if (!state)
		return 1;

	if (cfg->policy != KAWRAP_POLICY_FORCE) {
		state->own |= bit;
		count_respected();
		return 1;
	}

	v = state->has_chosen ? &state->chosen : &cfg->profile;
	switch (bit) {
	case OWN_KEEPALIVE:
		value = 1;
		break;
	case OWN_IDLE:
		value = v->idle_secs;
		break;
	case OWN_INTERVAL:
		value = v->interval_secs;
		break;
	case OWN_COUNT:
		value = v->count;
		break;
	default:
		/* The profile has no user timeout: the program's own stands. */
		if (!(v->flags & KAWRAP_HAS_USER_TIMEOUT))
			return 1;
		value = v->user_timeout_ms;
	}
	*(int *)optval = (int)value;
	count_forced();
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
