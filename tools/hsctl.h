/* hsctl's parts: commands (ls.c, top.c) and formatting (format.c). */
#ifndef HSCTL_H
#define HSCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "hsbroker/hsbroker.h"

struct hsctl {
	hs_client *client;
	const char *socket;  /* the path connected to, for messages */
	bool json;
	long iterations;     /* top: refreshes before exiting; 0 = forever */
	bool prometheus;     /* stats: the Prometheus text format */
};

/* Commands: return the process exit code. */
int hsctl_ls(struct hsctl *ctl, const char *section);
int hsctl_status(struct hsctl *ctl);
int hsctl_top(struct hsctl *ctl);
int hsctl_stats(struct hsctl *ctl);
/* Connects by itself (an unreachable daemon is one of its findings). */
int hsctl_doctor(struct hsctl *ctl);

/* Why a connect failed and what a person can do about it (hint may be
 * NULL). */
void hsctl_connect_hint(int err, const char **why, const char **hint);

/* Prints "hsctl: what: <reason>" to stderr; returns 1. */
int hsctl_fail(const char *what, int err);

/* ---- ls.c: the JSON form of a snapshot (docs/hsctl.md lists its keys) */
json_t *hsctl_json_info(const hs_info *info, enum hs_info_what what);
/* Dumps obj to stdout with a newline and drops the reference; 0 or 1. */
int hsctl_json_print(json_t *obj, size_t flags);

/* ---- format.c ---- */
const char *fmt_dtype(DLDataType t, char *buf, size_t size);
const char *fmt_shape(int32_t ndim, const int64_t *shape, char *buf, size_t size);
const char *fmt_bytes(uint64_t n, char *buf, size_t size);
const char *fmt_device(DLDevice d, char *buf, size_t size);
const char *fmt_age(uint64_t us, char *buf, size_t size);
const char *fmt_policy(enum hs_policy p);
const char *fmt_rate(double per_s, char *buf, size_t size);
/* Monotonic seconds, for rates between two snapshots. */
double hsctl_now_s(void);

/* A table for people: columns sized to their widest cell. */
struct table;
struct table *table_new(int ncols, const char *const *headers, const bool *right);
/* Adds a row of ncols strings (copied); false when out of memory. */
bool table_row(struct table *t, const char *const *cells);
void table_print(const struct table *t);
void table_free(struct table *t);

#endif
