/* hsbridge: carries broker topics between hosts over UCX.
 *   hsbridge serve   --socket PATH --listen HOST:PORT --topic GLOB...
 *   hsbridge connect --socket PATH --to HOST:PORT --topic GLOB...
 *   hsbridge stats   --control PATH [--json]
 * This file parses the command line; docs/bridge.md is the manual. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsb.h"

static void usage(FILE *f)
{
	fputs("usage: hsbridge serve   [--socket PATH] --listen HOST:PORT --topic GLOB... [options]\n"
	      "       hsbridge connect [--socket PATH] --to HOST:PORT --topic GLOB... [options]\n"
	      "       hsbridge stats   --control PATH [--json]\n"
	      "options:\n"
	      "  --socket PATH          the local broker (default: as libhsclient resolves NULL)\n"
	      "  --topic GLOB           topics to carry (fnmatch); repeatable, at least one\n"
	      "  --allow ADDR[/BITS]    serve: accept peers from here only; repeatable\n"
	      "                         (default: every peer; see docs/bridge.md, Security)\n"
	      "  --depth N              serve: local subscription depth per peer (default 8)\n"
	      "  --policy P             serve: block, drop-oldest or drop-newest (default block)\n"
	      "  --max-peers N          serve: peers at once (default 16)\n"
	      "  --window N             connect: tensors per topic in flight (default 4)\n"
	      "  --backoff-max SECONDS  connect: longest wait between attempts (default 5)\n"
	      "  --max-bytes SIZE       largest tensor accepted or sent (default 4G)\n"
	      "  --keepalive INTERVAL   UCX keepalive, e.g. 2s (default 2s)\n"
	      "  --heartbeat SECONDS    ping the peer this often; 5 silent: gone (default 2)\n"
	      "  --control PATH         answer `hsbridge stats` on this Unix socket\n"
	      "  --stats-interval SEC   log per-topic counters this often (default: never)\n"
	      "  --busy-poll US         while traffic flows, look this long before sleeping\n"
	      "                         (default 0: off)\n",
	      f);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	uint64_t mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	default: break;
	}
	if (end == s || *end || v == 0 || __builtin_mul_overflow((uint64_t)v, mul, out))
		return -1;
	return 0;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (end == s || *end || v < lo || v > hi)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	bool serve = !strcmp(cmd, "serve"), conn = !strcmp(cmd, "connect"),
	     stats = !strcmp(cmd, "stats");
	if (!serve && !conn && !stats) {
		fprintf(stderr, "hsbridge: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	static struct hsb_bridge b;
	b.serve = serve;
	b.window = 4;
	b.depth = 8;
	b.max_peers = 16;
	b.policy = HS_POLICY_BLOCK;
	b.max_bytes = 4ull << 30;
	b.keepalive = "2s";
	b.heartbeat_ms = 2000;
	b.backoff_min_ms = 100;
	b.backoff_max_ms = 5000;
	const char *socket = NULL, *where = NULL;
	bool as_json = false;
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "to", required_argument, NULL, 't' },
		{ "topic", required_argument, NULL, 'T' },
		{ "allow", required_argument, NULL, 'a' },
		{ "depth", required_argument, NULL, 'd' },
		{ "policy", required_argument, NULL, 'p' },
		{ "max-peers", required_argument, NULL, 'P' },
		{ "window", required_argument, NULL, 'w' },
		{ "backoff-max", required_argument, NULL, 'B' },
		{ "max-bytes", required_argument, NULL, 'm' },
		{ "keepalive", required_argument, NULL, 'k' },
		{ "heartbeat", required_argument, NULL, 'H' },
		{ "control", required_argument, NULL, 'c' },
		{ "stats-interval", required_argument, NULL, 'i' },
		{ "busy-poll", required_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	uint32_t u;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool bad = false;
		switch (c) {
		case 's': socket = optarg; break;
		case 'l': bad = !serve; where = optarg; break;
		case 't': bad = !conn; where = optarg; break;
		case 'T':
			bad = b.nglobs >= HSB_MAX_GLOBS || strlen(optarg) > HS_MAX_TOPIC || !*optarg;
			if (!bad)
				strcpy(b.globs[b.nglobs++], optarg);
			break;
		case 'a': bad = !serve || hsb_allow_add(&b.allow, optarg) < 0; break;
		case 'd': bad = parse_u32(optarg, 1, 4096, &b.depth) < 0; break;
		case 'p':
			if (!strcmp(optarg, "block"))
				b.policy = HS_POLICY_BLOCK;
			else if (!strcmp(optarg, "drop-oldest"))
				b.policy = HS_POLICY_DROP_OLDEST;
			else if (!strcmp(optarg, "drop-newest"))
				b.policy = HS_POLICY_DROP_NEWEST;
			else
				bad = true;
			break;
		case 'P': bad = parse_u32(optarg, 1, 1024, &b.max_peers) < 0; break;
		case 'w': bad = parse_u32(optarg, 1, 4096, &b.window) < 0; break;
		case 'B':
			bad = parse_u32(optarg, 1, 3600, &u) < 0;
			b.backoff_max_ms = u * 1000;
			break;
		case 'm': bad = parse_size(optarg, &b.max_bytes) < 0; break;
		case 'k': b.keepalive = optarg; break;
		case 'H':
			bad = parse_u32(optarg, 1, 3600, &u) < 0;
			b.heartbeat_ms = u * 1000;
			break;
		case 'c':
			bad = strlen(optarg) >= sizeof(b.ctl_path);
			snprintf(b.ctl_path, sizeof(b.ctl_path), "%s", optarg);
			break;
		case 'i':
			bad = parse_u32(optarg, 1, 86400, &u) < 0;
			b.stats_every_ms = (uint64_t)u * 1000;
			break;
		case 'b': bad = parse_u32(optarg, 0, 1000000, &b.busy_poll_us) < 0; break;
		case 'j': as_json = true; break;
		case 'h': usage(stdout); return 0;
		default: bad = true; break;
		}
		if (bad) {
			if (c != '?')
				fprintf(stderr, "hsbridge %s: bad value or option not for %s: %s\n",
					cmd, cmd, argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hsbridge %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return 2;
	}
	if (stats) {
		if (!b.ctl_path[0]) {
			fprintf(stderr, "hsbridge stats: --control PATH is required\n");
			return 2;
		}
		return hsb_stats_print(b.ctl_path, as_json);
	}
	if (!where || !b.nglobs) {
		fprintf(stderr, "hsbridge %s: %s and at least one --topic are required\n", cmd,
			serve ? "--listen" : "--to");
		return 2;
	}
	if (hsb_addr_parse(where, &b.addr, &b.addrlen) < 0) {
		fprintf(stderr, "hsbridge %s: '%s' is not HOST:PORT (a numeric address)\n", cmd, where);
		return 2;
	}
	snprintf(b.addr_str, sizeof(b.addr_str), "%s", where);
	int err = hs_client_connect(socket, serve ? "hsbridge-serve" : "hsbridge-connect", &b.client);
	if (err < 0) {
		fprintf(stderr, "hsbridge %s: broker: %s\n", cmd, hs_strerror(err));
		return 1;
	}
	b.socket = socket;
	int rc = hsb_bridge_run(&b);
	hs_client_disconnect(b.client);
	return rc;
}
