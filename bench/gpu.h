/* CUDA for the GPU rows, through the runtime API only (cudart_static;
 * libcuda is never linked, so these binaries start on a machine without
 * a driver and report "no GPU"). Built only where CUDA is (HS_HAVE_CUDA). */
#ifndef BENCH_GPU_H
#define BENCH_GPU_H

#include <stddef.h>
#include <stdio.h>

#ifdef HS_HAVE_CUDA
#include <cuda_runtime_api.h>

/* Evaluates a CUDA call; on failure prints where and returns rc from the
 * enclosing function. */
#define GPU_TRY(call, rc)                                                      \
	do {                                                                   \
		cudaError_t gpu__e = (call);                                   \
		if (gpu__e != cudaSuccess) {                                   \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, \
				#call, cudaGetErrorString(gpu__e));            \
			return rc;                                             \
		}                                                              \
	} while (0)
#endif

/* Whether a GPU can be used, asked in a forked child so that this process
 * has not touched CUDA when it forks its peers. 0 when one can; else -1
 * with the reason in why ("built without CUDA", "no GPU: ..."). */
int gpu_probe(char *why, size_t len);

#endif
