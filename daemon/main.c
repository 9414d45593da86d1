/* hsbrokerd: command line, configuration file, signals, the loop. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ini.h>
#include <uv.h>

#include "hs-config.h"
#include "broker.h"
#include "log.h"
#include "server.h"
#include "wire.h"

/* From meson: /etc/hsbroker/hsbrokerd.conf for a /usr install. */
#define DEFAULT_CONFIG HS_CONFIG_FILE

struct daemon_config {
	struct hsd_broker_config broker;
	struct hsd_server_config server;
	char socket[PATH_MAX];
	int log_level;
	bool cpu_cap_set;    /* else the default: DEFAULT_HOST_CAP_PERCENT of RAM */
	unsigned unknown;    /* unknown keys seen (--check-config fails on them) */
};

/* The host pool's cap when none is configured: half of the machine's
 * RAM, so one client cannot make the daemon take all of it (a 4 TiB
 * tensor on a 23 GiB machine, issue 14). */
#define DEFAULT_HOST_CAP_PERCENT 50
#define DEFAULT_IDLE_RELEASE_MS 60000u

/* "64M", "1G", "512KiB", "4096": bytes, powers of 1024. -1 when invalid. */
static int parse_size(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && (!strcasecmp(end, "ib") || !strcasecmp(end, "b")))
		end += strlen(end);
	if (*end)
		return -1;
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

/* [pool.cuda] export / --cuda-export: "ipc" or "vmm". -1 when neither. */
static int parse_cuda_export(const char *s, bool *vmm)
{
	if (!strcmp(s, "ipc"))
		*vmm = false;
	else if (!strcmp(s, "vmm"))
		*vmm = true;
	else
		return -1;
	return 0;
}

static uint64_t ram_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

/* A cap: a size, "N%" of RAM, or "none" (= 0, no cap). */
static int parse_cap(const char *s, uint64_t *out)
{
	if (s && !strcasecmp(s, "none")) {
		*out = 0;
		return 0;
	}
	size_t n = s ? strlen(s) : 0;
	if (n >= 2 && s[n - 1] == '%') {
		char *end;
		errno = 0;
		unsigned long pct = strtoul(s, &end, 10);
		if (errno || end != s + n - 1 || *s == '-' || pct == 0 || pct > 100)
			return -1;
		*out = ram_bytes() / 100 * pct;
		return 0;
	}
	return parse_size(s, out);
}

/* yes/no, true/false, on/off, 1/0: 0 with *out, or -1. */
static int parse_flag(const char *v, bool *out)
{
	static const char *const on[] = { "1", "yes", "true", "on" };
	static const char *const off[] = { "0", "no", "false", "off" };
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(v, on[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, off[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	errno = 0;
	char *end;
	if (!s || !*s || *s == '-')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_uid(const char *s, uint32_t *out)
{
	if (parse_u32(s, out) == 0)
		return 0;
	struct passwd *pw = getpwnam(s);
	if (!pw)
		return -1;
	*out = pw->pw_uid;
	return 0;
}

static int parse_gid(const char *s, uint32_t *out)
{
	if (parse_u32(s, out) == 0)
		return 0;
	struct group *gr = getgrnam(s);
	if (!gr)
		return -1;
	*out = gr->gr_gid;
	return 0;
}

/* A list of names or numbers separated by commas or spaces. */
static int parse_ids(const char *value, uint32_t *ids, uint32_t *n, bool gid)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", value);
	*n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		if (*n >= BROKER_MAX_ALLOW)
			return -1;
		if ((gid ? parse_gid : parse_uid)(tok, &ids[*n]) < 0)
			return -1;
		(*n)++;
	}
	return 0;
}

/* An [acl] line: "GLOB: ids", ids being uids, user names and @groups. */
static int parse_acl(struct hsd_acl *acl, enum hsd_acl_action action, const char *value)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", value);
	char *colon = strrchr(buf, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	char *glob = buf;
	while (*glob == ' ' || *glob == '\t')
		glob++;
	for (char *e = colon; e > glob && (e[-1] == ' ' || e[-1] == '\t'); e--)
		e[-1] = '\0';
	uint32_t uids[ACL_MAX_IDS], gids[ACL_MAX_IDS], nu = 0, ng = 0;
	char *save = NULL;
	for (char *tok = strtok_r(colon + 1, ", \t", &save); tok;
	     tok = strtok_r(NULL, ", \t", &save)) {
		if (tok[0] == '@') {
			if (ng >= ACL_MAX_IDS || parse_gid(tok + 1, &gids[ng++]) < 0)
				return -1;
		} else if (nu >= ACL_MAX_IDS || parse_uid(tok, &uids[nu++]) < 0) {
			return -1;
		}
	}
	return hsd_acl_add(acl, action, glob, uids, nu, gids, ng);
}

/* [limits] against hostile local clients (issue 11, docs/daemon.md):
 * true when the key is one of them, with *ok false for a bad value. */
static bool on_ini_hostile(struct daemon_config *c, const char *section, const char *name,
			   const char *value, bool *ok)
{
	struct hsd_broker_config *b = &c->broker;
	uint64_t size;
	*ok = true;
	if (strcmp(section, "limits"))
		return false;
	if (!strcmp(name, "hello_max_bytes")) {
		*ok = parse_size(value, &size) == 0 && size >= 256 && size <= HS__WIRE_MAX_MSG;
		b->hello_max_bytes = (uint32_t)size;
	} else if (!strcmp(name, "hello_timeout_ms")) {
		*ok = parse_u32(value, &c->server.hello_timeout_ms) == 0 &&
		      c->server.hello_timeout_ms > 0;
	} else if (!strcmp(name, "max_connections_per_uid")) {
		*ok = parse_u32(value, &b->uid_max_connections) == 0 && b->uid_max_connections;
	} else if (!strcmp(name, "max_subscriptions_per_uid")) {
		*ok = parse_u32(value, &b->uid_max_subscriptions) == 0 && b->uid_max_subscriptions;
	} else if (!strcmp(name, "max_topics_per_uid")) {
		*ok = parse_u32(value, &b->uid_max_topics) == 0 && b->uid_max_topics;
	} else if (!strcmp(name, "outbox_max_bytes")) {
		*ok = parse_size(value, &b->outbox_max_bytes) == 0 && b->outbox_max_bytes;
	} else if (!strcmp(name, "outbox_total_bytes")) {
		*ok = parse_size(value, &b->outbox_total_bytes) == 0 && b->outbox_total_bytes;
	} else if (!strcmp(name, "exempt_uids")) {
		b->exempt_set = true;
		b->n_exempt_uids = 0;
		if (strcmp(value, "none"))
			*ok = parse_ids(value, b->exempt_uids, &b->n_exempt_uids, false) == 0;
	} else {
		return false;
	}
	return true;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct daemon_config *c = user;
	struct hsd_broker_config *b = &c->broker;
	uint32_t u32;
	bool ok;
#define IS(sec, key) (!strcmp(section, sec) && !strcmp(name, key))
	if (IS("daemon", "socket")) {
		snprintf(c->socket, sizeof(c->socket), "%s", value);
		c->server.socket_path = c->socket;
	} else if (IS("daemon", "log_level")) {
		if ((c->log_level = hsd_log_level_parse(value)) < 0)
			goto bad;
	} else if (IS("daemon", "spin_us")) {
		if (parse_u32(value, &c->server.spin_us) < 0 || c->server.spin_us > 1000000)
			goto bad;
	} else if (IS("pool.cpu", "slab_size")) {
		if (parse_size(value, &b->cpu_slab_size) < 0)
			goto bad;
	} else if (IS("pool.cpu", "cap")) {
		if (parse_cap(value, &b->cpu_cap) < 0)
			goto bad;
		c->cpu_cap_set = true;
	} else if (IS("pool.cpu", "idle_release_ms")) {
		if (parse_u32(value, &b->idle_release_ms) < 0)
			goto bad;
	} else if (IS("pool.cuda", "slab_size")) {
		if (parse_size(value, &b->cuda_slab_size) < 0)
			goto bad;
	} else if (IS("pool.cuda", "cap")) {
		if (parse_size(value, &b->cuda_cap) < 0)
			goto bad;
	} else if (IS("pool.cuda", "export")) {
		if (parse_cuda_export(value, &b->cuda_vmm) < 0)
			goto bad;
	} else if (IS("access", "socket_mode")) {
		char *end;
		errno = 0;
		long m = strtol(value, &end, 8);
		if (errno || *end || m < 0 || m > 0777)
			goto bad;
		c->server.socket_mode = (int)m;
	} else if (IS("access", "socket_group")) {
		if (parse_gid(value, &u32) < 0)
			goto bad;
		c->server.socket_group = u32;
		c->server.has_group = true;
	} else if (IS("access", "allow_uids")) {
		if (parse_ids(value, b->allow_uids, &b->n_allow_uids, false) < 0)
			goto bad;
	} else if (IS("access", "allow_gids")) {
		if (parse_ids(value, b->allow_gids, &b->n_allow_gids, true) < 0)
			goto bad;
	} else if (IS("limits", "max_subscriptions")) {
		if (parse_u32(value, &b->max_subscriptions) < 0 || !b->max_subscriptions)
			goto bad;
	} else if (IS("limits", "max_tensors")) {
		if (parse_u32(value, &b->max_tensors) < 0 || !b->max_tensors)
			goto bad;
	} else if (IS("limits", "quota_bytes")) {
		if (parse_size(value, &b->quota_bytes) < 0)
			goto bad;
	} else if (IS("limits", "quota_tensors")) {
		if (parse_u32(value, &b->quota_tensors) < 0)
			goto bad;
	} else if (IS("limits", "max_topics")) {
		if (parse_u32(value, &b->max_topics) < 0 || !b->max_topics)
			goto bad;
	} else if (IS("limits", "max_pending_emits")) {
		if (parse_u32(value, &b->max_pending_emits) < 0 || !b->max_pending_emits)
			goto bad;
	} else if (IS("subscribe", "block_timeout_ms")) {
		if (parse_u32(value, &b->block_timeout_ms) < 0)
			goto bad;
	} else if (IS("subscribe", "block_timeout_other_uid_ms")) {
		if (parse_u32(value, &b->block_timeout_other_uid_ms) < 0)
			goto bad;
	} else if (IS("subscribe", "direct_rings")) {
		if (parse_flag(value, &b->direct_rings) < 0)
			goto bad;
	} else if (IS("acl", "publish") || IS("acl", "subscribe")) {
		if (parse_acl(&b->acl, !strcmp(name, "publish") ? ACL_PUBLISH : ACL_SUBSCRIBE,
			      value) < 0)
			goto bad;
	} else if (on_ini_hostile(c, section, name, value, &ok)) {
		if (!ok)
			goto bad;
	} else {
		log_warn("config: unknown key [%s] %s (ignored)", section, name);
		c->unknown++;
	}
	return 1;
#undef IS
bad:
	log_error("config: bad value for [%s] %s: '%s'", section, name, value);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: hsbrokerd [OPTIONS]\n"
		"The hsbroker daemon: shares tensors between processes with no copy.\n\n"
		"  --socket PATH        listen on PATH (default: $HSBROKER_SOCKET, else\n"
		"                       $XDG_RUNTIME_DIR/hsbroker/hsbroker.sock, else\n"
		"                       /run/hsbroker/hsbroker.sock)\n"
		"  --config FILE        configuration file (default: " DEFAULT_CONFIG
		" if it exists)\n"
		"  --check-config       read the configuration (and options), report\n"
		"                       problems, exit 0 if it is good, 1 if not\n"
		"  --slab-size SIZE     host slab size (K/M/G suffixes; default 64M)\n"
		"  --host-cap SIZE      cap on host pool bytes: a size, N%% of RAM, or\n"
		"                       none (default 50%%)\n"
		"  --cuda-slab-size SIZE  device slab size (default 64M)\n"
		"  --cuda-cap SIZE      cap on each GPU's pool bytes (0 = none)\n"
		"  --cuda-export MODE   how device slabs reach clients: ipc (legacy\n"
		"                       CUDA IPC handles, the default) or vmm (VMM\n"
		"                       allocations passed as file descriptors)\n"
		"  --log-level LEVEL    error, warn, info (default) or debug\n"
		"  --spin-us N          poll the clients' channels N us after traffic\n"
		"                       before sleeping (default 0: sleep at once)\n"
		"  -h, --help           this text\n"
		"  -V, --version        print the version\n"
		"\nSIGHUP re-reads the configuration. HS_DEBUG=1 prints every message.\n"
		"See hsbrokerd(8) and hsbroker.conf(5).\n");
}

static const struct option opts[] = {
	{ "socket", required_argument, NULL, 's' },
	{ "config", required_argument, NULL, 'c' },
	{ "check-config", no_argument, NULL, 'k' },
	{ "slab-size", required_argument, NULL, 'S' },
	{ "host-cap", required_argument, NULL, 'C' },
	{ "cuda-slab-size", required_argument, NULL, 'D' },
	{ "cuda-cap", required_argument, NULL, 'G' },
	{ "cuda-export", required_argument, NULL, 'X' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "spin-us", required_argument, NULL, 'P' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ 0 },
};

/* The options that set configuration, over what the file said (the
 * command line wins, at start and at every reload). 0 or 2 (bad). */
static int apply_options(int argc, char **argv, struct daemon_config *cfg)
{
	int o;
	optind = 0;
	opterr = 0; /* the first pass reported them */
	while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			snprintf(cfg->socket, sizeof(cfg->socket), "%s", optarg);
			cfg->server.socket_path = cfg->socket;
			break;
		case 'S':
			if (parse_size(optarg, &cfg->broker.cpu_slab_size) < 0 ||
			    !cfg->broker.cpu_slab_size) {
				fprintf(stderr, "hsbrokerd: bad --slab-size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'C':
			if (parse_cap(optarg, &cfg->broker.cpu_cap) < 0) {
				fprintf(stderr, "hsbrokerd: bad --host-cap '%s'\n", optarg);
				return 2;
			}
			cfg->cpu_cap_set = true;
			break;
		case 'D':
			if (parse_size(optarg, &cfg->broker.cuda_slab_size) < 0 ||
			    !cfg->broker.cuda_slab_size) {
				fprintf(stderr, "hsbrokerd: bad --cuda-slab-size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'G':
			if (parse_size(optarg, &cfg->broker.cuda_cap) < 0) {
				fprintf(stderr, "hsbrokerd: bad --cuda-cap '%s'\n", optarg);
				return 2;
			}
			break;
		case 'X':
			if (parse_cuda_export(optarg, &cfg->broker.cuda_vmm) < 0) {
				fprintf(stderr, "hsbrokerd: bad --cuda-export '%s' (ipc or vmm)\n",
					optarg);
				return 2;
			}
			break;
		case 'P':
			if (parse_u32(optarg, &cfg->server.spin_us) < 0 ||
			    cfg->server.spin_us > 1000000) {
				fprintf(stderr, "hsbrokerd: bad --spin-us '%s' (0..1000000)\n",
					optarg);
				return 2;
			}
			break;
		case 'l':
			if ((cfg->log_level = hsd_log_level_parse(optarg)) < 0) {
				fprintf(stderr, "hsbrokerd: bad --log-level '%s'\n", optarg);
				return 2;
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

/* A whole configuration: defaults, then the file (when there is one),
 * then the command line. 0, 1 (the file is bad or unreadable, logged) or
 * 2 (a bad option). */
static int load_config(const char *path, int argc, char **argv, struct daemon_config *cfg)
{
	*cfg = (struct daemon_config){ 0 };
	hsd_broker_config_defaults(&cfg->broker);
	cfg->broker.idle_release_ms = DEFAULT_IDLE_RELEASE_MS;
	cfg->server.socket_mode = -1;
	cfg->log_level = -1;
	if (path) {
		int r = ini_parse(path, on_ini, cfg);
		if (r < 0) {
			log_error("cannot read config %s: %s", path, strerror(errno));
			return 1;
		}
		if (r > 0) {
			log_error("config %s: error on line %d", path, r);
			return 1;
		}
	}
	int r = apply_options(argc, argv, cfg);
	if (r)
		return r;
	/* HSBROKER_RINGS, as the clients read it, overrides the file. */
	const char *rings = getenv("HSBROKER_RINGS");
	if (rings && *rings && parse_flag(rings, &cfg->broker.direct_rings) < 0) {
		log_error("HSBROKER_RINGS='%s': not a yes/no", rings);
		return 2;
	}
	if (!cfg->broker.cpu_slab_size || !cfg->broker.cuda_slab_size) {
		log_error("slab_size must not be 0");
		return 2;
	}
	if (!cfg->cpu_cap_set)
		cfg->broker.cpu_cap = ram_bytes() / 100 * DEFAULT_HOST_CAP_PERCENT;
	return 0;
}

/* What runs now, for SIGHUP to compare the re-read file with. */
static struct {
	struct daemon_config cfg;
	const char *path;
	int argc;
	char **argv;
	struct hsd_server *srv;
} the;

/* The keys only a restart applies: the listening socket is made once. */
static int restart_only(const struct daemon_config *now, const struct daemon_config *next)
{
	int n = 0;
	if (strcmp(now->socket, next->socket)) {
		log_warn("reload: [daemon] socket changed: needs a restart (still on the old one)");
		n++;
	}
	if (now->server.socket_mode != next->server.socket_mode ||
	    now->server.has_group != next->server.has_group ||
	    (next->server.has_group && now->server.socket_group != next->server.socket_group)) {
		log_warn("reload: [access] socket_mode/socket_group changed: needs a restart");
		n++;
	}
	return n;
}

/* SIGHUP: re-read the file; a bad one is refused whole and the running
 * configuration stays. */
static void on_hup(uv_signal_t *h, int signum)
{
	(void)h;
	(void)signum;
	if (!the.srv)
		return;
	/* Without --config, the default file is read if it exists now:
	 * an operator may have written it after the start. */
	const char *path = the.path;
	if (!path && access(DEFAULT_CONFIG, F_OK) == 0)
		path = the.path = DEFAULT_CONFIG;
	log_info("SIGHUP: reloading %s", path ? path : "(no configuration file)");
	struct daemon_config *next = malloc(sizeof(*next));
	if (!next) {
		log_error("reload: out of memory; the configuration is unchanged");
		return;
	}
	if (load_config(path, the.argc, the.argv, next) != 0) {
		log_error("reload refused: the configuration is unchanged");
		free(next);
		return;
	}
	int kept = restart_only(&the.cfg, next);
	hsd_log_set_level(next->log_level >= 0 ? (enum hsd_log_level)next->log_level : LOG_LEVEL_INFO);
	kept += hsd_server_reload(the.srv, &next->broker, &next->server);
	/* What was kept stays as it ran, so the next reload compares with
	 * what is in force. */
	snprintf(next->socket, sizeof(next->socket), "%s", the.cfg.socket);
	next->server = (struct hsd_server_config){
		.socket_path = the.cfg.server.socket_path ? next->socket : NULL,
		.socket_mode = the.cfg.server.socket_mode,
		.socket_group = the.cfg.server.socket_group,
		.has_group = the.cfg.server.has_group,
		.spin_us = next->server.spin_us,
		.hello_timeout_ms = next->server.hello_timeout_ms,
	};
	next->broker.cpu_slab_size = the.cfg.broker.cpu_slab_size;
	next->broker.cuda_slab_size = the.cfg.broker.cuda_slab_size;
	the.cfg = *next;
	free(next);
	log_info("reload done: host cap %llu bytes, log level %s%s",
		 (unsigned long long)the.cfg.broker.cpu_cap,
		 hsd_log_level_name(hsd_log_get_level()),
		 kept ? "; some changes need a restart (above)" : "");
}

static void on_signal(uv_signal_t *h, int signum)
{
	char reason[64];
	snprintf(reason, sizeof(reason), "hsbrokerd received %s", strsignal(signum));
	log_info("%s", reason);
	if (!the.srv)
		return; /* a second signal while the loop winds down */
	hsd_server_stop(the.srv, reason);
	the.srv = NULL;
	uv_signal_t *sigs = h->data;
	for (int i = 0; i < 3; i++)
		uv_close((uv_handle_t *)&sigs[i], NULL);
}

int main(int argc, char **argv)
{
	/* First pass: --config, --check-config, --help, --version; the file
	 * is read before the other options so that the command line wins. */
	const char *config = NULL;
	bool check = false;
	int o;
	while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("hsbrokerd %s\n", HS_VERSION);
			return 0;
		case '?':
			usage(stderr);
			return 2;
		default:
			break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hsbrokerd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!config && access(DEFAULT_CONFIG, F_OK) == 0)
		config = DEFAULT_CONFIG;
	the.path = config;
	the.argc = argc;
	the.argv = argv;
	struct daemon_config *cfg = &the.cfg;
	int r = load_config(config, argc, argv, cfg);
	if (check) {
		if (r == 0 && cfg->unknown)
			fprintf(stderr, "hsbrokerd: %s: %u unknown key%s\n", config, cfg->unknown,
				cfg->unknown == 1 ? "" : "s");
		else if (r == 0)
			printf("hsbrokerd: %s: configuration is valid\n",
			       config ? config : "(no configuration file)");
		return r ? r : cfg->unknown ? 1 : 0;
	}
	if (r)
		return r;
	if (cfg->log_level >= 0)
		hsd_log_set_level((enum hsd_log_level)cfg->log_level);

	/* A peer that hangs up must not kill the daemon; sends use
	 * MSG_NOSIGNAL, this covers everything else. */
	signal(SIGPIPE, SIG_IGN);
	/* Every connection costs an fd (two with a channel): take every fd
	 * the hard limit allows, so max_connections_per_uid, not the soft
	 * limit, is what one uid runs into. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
			log_warn("setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	}

	uv_loop_t *loop = uv_default_loop();
	/* Signals first: a supervisor may send SIGTERM as soon as it reads
	 * READY=1, which hsd_server_start reports. */
	uv_signal_t sigs[3];
	int signums[3] = { SIGINT, SIGTERM, SIGHUP };
	for (int i = 0; i < 3; i++) {
		r = uv_signal_init(loop, &sigs[i]);
		if (r == 0) {
			sigs[i].data = sigs;
			r = uv_signal_start(&sigs[i], signums[i] == SIGHUP ? on_hup : on_signal,
					    signums[i]);
		}
		if (r < 0) {
			log_error("uv_signal: %s", uv_strerror(r));
			return 1;
		}
	}

	struct hsd_server *srv;
	r = hsd_server_start(loop, &cfg->broker, &cfg->server, &srv);
	if (r < 0)
		return 1;
	the.srv = srv;

	r = uv_run(loop, UV_RUN_DEFAULT);
	r = uv_loop_close(loop);
	if (r < 0)
		log_warn("uv_loop_close: %s", uv_strerror(r));
	log_info("exited cleanly");
	return 0;
}
