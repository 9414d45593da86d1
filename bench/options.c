#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end || v == 0 || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_long(const char *s, long min, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min)
		return -1;
	*out = v;
	return 0;
}

int options_parse(bench_options *o, int argc, char **argv)
{
	for (int i = 1; i < argc; i += 2) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		long l = 0;
		int bad = 0;
		if (!v) {
			bad = 1;
		} else if (!strcmp(k, "--size")) {
			bad = parse_size(v, &o->size);
		} else if (!strcmp(k, "--iters")) {
			bad = parse_long(v, 1, &o->iters);
		} else if (!strcmp(k, "--warmup")) {
			bad = parse_long(v, 0, &o->warmup);
		} else if (!strcmp(k, "--socket")) {
			o->socket = v;
		} else if (!strcmp(k, "--daemon-pid")) {
			bad = parse_long(v, 1, &l);
			o->daemon_pid = (int)l;
		} else if (!strcmp(k, "--device")) {
			bad = strcmp(v, "cpu") && strcmp(v, "cuda");
			o->cuda = !strcmp(v, "cuda");
		} else if (!strcmp(k, "--gpus")) {
			char *end;
			long a = strtol(v, &end, 10), b2 = -1;
			if (*end == ',')
				b2 = strtol(end + 1, &end, 10);
			bad = *end || a < 0 || b2 < 0 || a > 63 || b2 > 63;
			o->producer_gpu = (int)a;
			o->consumer_gpu = (int)b2;
		} else if (!strcmp(k, "--subscribers")) {
			bad = parse_long(v, 1, &o->subscribers);
		} else if (!strcmp(k, "--spin-us")) {
			bad = parse_long(v, 0, &o->spin_us);
		} else if (!strcmp(k, "--alloc-ahead")) {
			bad = parse_long(v, 0, &o->alloc_ahead);
		} else if (!strcmp(k, "--control")) {
			bad = parse_long(v, 0, &o->control);
		} else if (!strcmp(k, "--late-release")) {
			bad = parse_long(v, 0, &o->late_release);
		} else if (!strcmp(k, "--scratch")) {
			bad = parse_size(v, &o->scratch);
		} else if (!strcmp(k, "--depth")) {
			bad = parse_long(v, 1, &o->depth);
		} else {
			bad = 1;
		}
		if (bad) {
			fprintf(stderr, "%s: bad option %s %s\n", argv[0], k, v ? v : "(missing value)");
			return -1;
		}
	}
	return 0;
}
