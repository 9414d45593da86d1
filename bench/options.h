/* The command line every benchmark program takes (each uses a subset):
 *   --size BYTES      payload (K, M, G suffixes: powers of 1024)
 *   --iters N         measured iterations
 *   --warmup N        iterations before measuring
 *   --socket PATH     hsbrokerd's socket (else $HSBROKER_SOCKET ...)
 *   --daemon-pid PID  hsbrokerd's pid, for its CPU time
 *   --device cpu|cuda
 *   --gpus P,Q        hs-bench-handoff: the producer's GPU and the
 *                     consumer's (default 0,0): the consumer reads a
 *                     tensor of GPU P on a stream of GPU Q
 *   --subscribers N   throughput: consumers of one producer
 *   --depth N         subscription queue depth
 * Experiments (bench/NOTES.md); in hs-bench-handoff both are timed as
 * part of the write, so they stay out of the hand-off column:
 *   --spin-us N       the producer busy-waits N us after writing (floor:
 *                     before each note, untimed)
 *   --scratch BYTES   hs-bench-handoff: the producer memsets a private
 *                     buffer that large after writing (evicts caches
 *                     like a big write)
 *   --alloc-ahead 1   hs-bench-handoff: the producer allocates the next
 *                     tensor while it waits for the ack (its alloc round
 *                     trip leaves the measured path)
 *   --late-release 1  hs-bench-handoff: the consumer acks first and then
 *                     releases (its notes to the daemon leave the path)
 *   --control 1       hs-bench-handoff: after each hand-off, one of a 4 KiB
 *                     tensor whose producer idles as long as the big write
 *                     took ("ctl": idle without bytes, same run) */
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
	int producer_gpu, consumer_gpu;
	long subscribers;
	long depth;
	long spin_us;
	uint64_t scratch;
	long alloc_ahead, late_release, control;
} bench_options;

/* Fills o (defaults must be set by the caller); 0, or -1 after printing
 * what was wrong. */
int options_parse(bench_options *o, int argc, char **argv);

#endif
