/* Formatting for people: dtype names, shapes, sizes, ages, and aligned
 * tables. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsctl.h"

#define DL_BOOL 6 /* kDLBool (DLPack >= 0.8); the 0.6 header lacks it */

const char *fmt_dtype(DLDataType t, char *buf, size_t size)
{
	const char *base = NULL;
	switch (t.code) {
	case kDLInt:
		base = "int";
		break;
	case kDLUInt:
		base = "uint";
		break;
	case kDLFloat:
		base = "float";
		break;
	case kDLBfloat:
		base = "bfloat";
		break;
	case kDLComplex:
		base = "complex";
		break;
	case DL_BOOL:
		base = "bool";
		break;
	}
	int n;
	if (!base)
		n = snprintf(buf, size, "%u:%u", t.code, t.bits);
	else if (t.code == DL_BOOL && t.bits == 8)
		n = snprintf(buf, size, "bool");
	else
		n = snprintf(buf, size, "%s%u", base, t.bits);
	if (t.lanes > 1 && n >= 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, "x%u", t.lanes);
	return buf;
}

const char *fmt_shape(int32_t ndim, const int64_t *shape, char *buf, size_t size)
{
	if (ndim <= 0) {
		snprintf(buf, size, "scalar");
		return buf;
	}
	size_t off = 0;
	buf[0] = '\0';
	for (int32_t i = 0; i < ndim && off < size; i++) {
		int n = snprintf(buf + off, size - off, "%s%" PRId64, i ? "x" : "", shape[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}

const char *fmt_bytes(uint64_t n, char *buf, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	if (n < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", n);
		return buf;
	}
	double v = (double)n / 1024;
	int u = 0;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, "%.1f %s", v, units[u]);
	return buf;
}

const char *fmt_device(DLDevice d, char *buf, size_t size)
{
	if (d.device_type == kDLCPU)
		snprintf(buf, size, "cpu");
	else if (d.device_type == kDLCUDA)
		snprintf(buf, size, "cuda:%d", d.device_id);
	else
		snprintf(buf, size, "dev%d:%d", (int)d.device_type, d.device_id);
	return buf;
}

const char *fmt_age(uint64_t us, char *buf, size_t size)
{
	uint64_t s = us / 1000000;
	if (us < 1000)
		snprintf(buf, size, "%" PRIu64 "us", us);
	else if (us < 1000000)
		snprintf(buf, size, "%" PRIu64 "ms", us / 1000);
	else if (s < 60)
		snprintf(buf, size, "%.1fs", (double)us / 1e6);
	else if (s < 3600)
		snprintf(buf, size, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(buf, size, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
	return buf;
}

const char *fmt_policy(enum hs_policy p)
{
	switch (p) {
	case HS_POLICY_BLOCK:
		return "block";
	case HS_POLICY_DROP_OLDEST:
		return "drop-oldest";
	case HS_POLICY_DROP_NEWEST:
		return "drop-newest";
	}
	return "unknown";
}

const char *fmt_rate(double per_s, char *buf, size_t size)
{
	if (per_s < 0)
		snprintf(buf, size, "-");
	else if (per_s >= 1e6)
		snprintf(buf, size, "%.2fM", per_s / 1e6);
	else if (per_s >= 1e4)
		snprintf(buf, size, "%.1fk", per_s / 1e3);
	else
		snprintf(buf, size, "%.1f", per_s);
	return buf;
}

struct table {
	int ncols;
	char **headers;
	bool *right;
	char **cells; /* nrows * ncols */
	size_t nrows, cap;
};

struct table *table_new(int ncols, const char *const *headers, const bool *right)
{
	struct table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ncols = ncols;
	t->headers = calloc((size_t)ncols, sizeof(char *));
	t->right = calloc((size_t)ncols, sizeof(bool));
	if (!t->headers || !t->right) {
		table_free(t);
		return NULL;
	}
	for (int i = 0; i < ncols; i++) {
		t->headers[i] = strdup(headers[i]);
		if (!t->headers[i]) {
			table_free(t);
			return NULL;
		}
		t->right[i] = right ? right[i] : false;
	}
	return t;
}

bool table_row(struct table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **c = realloc(t->cells, cap * (size_t)t->ncols * sizeof(char *));
		if (!c)
			return false;
		t->cells = c;
		t->cap = cap;
	}
	char **row = t->cells + t->nrows * (size_t)t->ncols;
	for (int i = 0; i < t->ncols; i++) {
		row[i] = strdup(cells[i] ? cells[i] : "");
		if (!row[i]) {
			while (i-- > 0)
				free(row[i]);
			return false;
		}
	}
	t->nrows++;
	return true;
}

void table_print(const struct table *t)
{
	int width[64] = { 0 };
	int nc = t->ncols < 64 ? t->ncols : 64;
	for (int i = 0; i < nc; i++)
		width[i] = (int)strlen(t->headers[i]);
	for (size_t r = 0; r < t->nrows; r++)
		for (int i = 0; i < nc; i++) {
			int w = (int)strlen(t->cells[r * (size_t)t->ncols + (size_t)i]);
			if (w > width[i])
				width[i] = w;
		}
	for (size_t r = 0; r <= t->nrows; r++) {
		char *const *row = r == 0 ? t->headers : t->cells + (r - 1) * (size_t)t->ncols;
		for (int i = 0; i < nc; i++) {
			bool last = i == nc - 1;
			if (t->right[i])
				printf("%*s%s", width[i], row[i], last ? "" : "  ");
			else if (last)
				printf("%s", row[i]);
			else
				printf("%-*s  ", width[i], row[i]);
		}
		putchar('\n');
	}
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	if (t->headers)
		for (int i = 0; i < t->ncols; i++)
			free(t->headers[i]);
	free(t->headers);
	free(t->right);
	free(t);
}

double hsctl_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
