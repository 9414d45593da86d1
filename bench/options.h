/* The command line every benchmark program takes (each uses a subset):
 *   --size BYTES      payload (K, M, G suffixes: powers of 1024)
 *   --iters N         measured iterations
 *   --warmup N        iterations before measuring
 *   --socket PATH     hsbrokerd's socket (else $HSBROKER_SOCKET ...)
 *   --daemon-pid PID  hsbrokerd's pid, for its CPU time
 *   --device cpu|cuda
 *   --subscribers N   throughput: consumers of one producer
 *   --depth N         subscription queue depth */
#ifndef BENCH_OPTIONS_H
#define BENCH_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct bench_options {
	uint64_t size;
	long iters, warmup;
	const char *socket;
	int daemon_pid;
	bool cuda;
	long subscribers;
	long depth;
} bench_options;

/* Fills o (defaults must be set by the caller); 0, or -1 after printing
 * what was wrong. */
int options_parse(bench_options *o, int argc, char **argv);

#endif
