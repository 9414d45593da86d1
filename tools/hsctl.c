/* hsctl: look inside a running hsbrokerd. Command line and connection;
 * the commands live in ls.c, top.c, stats.c and doctor.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "hs-config.h"
#include "hsctl.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: hsctl [--socket PATH] [--json] COMMAND\n"
		"\n"
		"Commands:\n"
		"  ls [tensors|topics|clients|pools]  what the broker holds now (all sections by default)\n"
		"  status                             daemon version, epoch, uptime and counts\n"
		"  top [--iterations N]               live rates per topic and subscriber, every second\n"
		"                                     (keys: q quits, s sorts, p or space pauses)\n"
		"  stats [--prometheus]               counters, rates and daemon CPU per tensor\n"
		"  doctor                             check the setup: one line per check, exit 1 on a failure\n"
		"  help                               this text\n"
		"\n"
		"Options:\n"
		"  --socket PATH   the broker's socket (default: $HSBROKER_SOCKET, else\n"
		"                  $XDG_RUNTIME_DIR/hsbroker/hsbroker.sock, else /run/hsbroker/hsbroker.sock)\n"
		"  --json          JSON for programs instead of tables (keys in docs/hsctl.md)\n"
		"  --iterations N  top: stop after N refreshes; stats: N samples a second apart\n"
		"  --prometheus    stats: the Prometheus text exposition format\n"
		"  -h, --help      this text\n"
		"  -V, --version   print hsctl's version\n"
		"\nSee hsctl(1).\n");
}

int hsctl_fail(const char *what, int err)
{
	fprintf(stderr, "hsctl: %s: %s\n", what, hs_strerror(err));
	return 1;
}

void hsctl_connect_hint(int err, const char **why_out, const char **hint_out)
{
	const char *why, *hint;
	switch (err) {
	case HS_ENOBROKER:
		why = "no such socket";
		hint = "is hsbrokerd running? (use --socket or HSBROKER_SOCKET)";
		break;
	case HS_ECONNREFUSED:
		why = "connection refused";
		hint = "the socket exists but no hsbrokerd listens on it (a stale socket?); start hsbrokerd";
		break;
	case HS_EACCES:
		why = "permission denied";
		hint = "run as a user the broker allows, or ask to join the socket's group";
		break;
	case HS_EPERM:
		why = "not allowed";
		hint = "the broker's allow_uids/allow_gids (hsbrokerd's config) do not list your uid or primary gid";
		break;
	case HS_EVERSION:
		why = "protocol version mismatch";
		hint = "hsctl and hsbrokerd come from different releases";
		break;
	case HS_ENAMETOOLONG:
		why = "path too long";
		hint = "a Unix socket path has at most 107 bytes";
		break;
	case HS_ETIMEDOUT:
		why = "no handshake";
		hint = "whatever listens there is not answering as hsbrokerd would";
		break;
	default:
		why = hs_strerror(err);
		hint = NULL;
	}
	*why_out = why;
	*hint_out = hint;
}

/* What a person can do about a failed connect. */
static int connect_fail(const char *path, int err)
{
	const char *why, *hint;
	hsctl_connect_hint(err, &why, &hint);
	fprintf(stderr, "hsctl: cannot connect to %s: %s%s%s\n", path, why, hint ? " — " : "",
		hint ? hint : "");
	return 1;
}

static bool parse_count(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	struct hsctl ctl = { 0 };
	const char *socket = NULL;
	const char *pos[3];
	int npos = 0;

	/* Options may come before or after the command ("hsctl ls pools
	 * --json" reads naturally). */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--json") == 0 || strcmp(a, "-j") == 0) {
			ctl.json = true;
		} else if (strcmp(a, "--socket") == 0 || strcmp(a, "-s") == 0) {
			if (++i == argc) {
				fprintf(stderr, "hsctl: %s needs a path\n", a);
				return 1;
			}
			socket = argv[i];
		} else if (strncmp(a, "--socket=", 9) == 0) {
			socket = a + 9;
		} else if (strcmp(a, "--iterations") == 0 || strcmp(a, "-n") == 0 ||
			   strncmp(a, "--iterations=", 13) == 0) {
			const char *v = a[1] == '-' && a[12] == '=' ? a + 13 : (++i < argc ? argv[i] : NULL);
			if (!v || !parse_count(v, &ctl.iterations)) {
				fprintf(stderr, "hsctl: --iterations needs a positive number\n");
				return 1;
			}
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--prometheus") == 0) {
			ctl.prometheus = true;
		} else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
			printf("hsctl %s\n", HS_VERSION);
			return 0;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "hsctl: unknown option '%s'\n\n", a);
			usage(stderr);
			return 1;
		} else if (npos < 3) {
			pos[npos++] = a;
		} else {
			fprintf(stderr, "hsctl: too many arguments\n\n");
			usage(stderr);
			return 1;
		}
	}

	if (npos == 0) {
		usage(stderr);
		return 1;
	}
	const char *cmd = pos[0];
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	bool is_ls = strcmp(cmd, "ls") == 0 || strcmp(cmd, "list") == 0;
	static const char *const single[] = { "status", "top", "stats", "doctor" };
	bool ok = is_ls && npos <= 2;
	for (size_t i = 0; !ok && i < sizeof(single) / sizeof(single[0]); i++)
		ok = strcmp(cmd, single[i]) == 0 && npos == 1;
	if (!ok) {
		fprintf(stderr, "hsctl: unknown command '%s'%s\n\n", cmd,
			npos > 1 && !is_ls ? " (with extra arguments)" : "");
		usage(stderr);
		return 1;
	}

	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
	if (socket) {
		snprintf(path, sizeof(path), "%s", socket);
	} else {
		int err = hs_default_socket_path(path, sizeof(path));
		if (err)
			return hsctl_fail("socket path", err);
	}
	ctl.socket = path;
	if (strcmp(cmd, "doctor") == 0) {
		int rc = hsctl_doctor(&ctl);
		if (ctl.client)
			hs_client_disconnect(ctl.client);
		return rc;
	}
	int err = hs_client_connect(path, "hsctl", &ctl.client);
	if (err)
		return connect_fail(path, err);

	int rc;
	if (is_ls)
		rc = hsctl_ls(&ctl, npos > 1 ? pos[1] : NULL);
	else if (strcmp(cmd, "status") == 0)
		rc = hsctl_status(&ctl);
	else if (strcmp(cmd, "stats") == 0)
		rc = hsctl_stats(&ctl);
	else
		rc = hsctl_top(&ctl);
	hs_client_disconnect(ctl.client);
	return rc;
}
