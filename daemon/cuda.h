/* The daemon's CUDA glue (slab_cuda.c): finding the GPUs once, and the
 * device slabs (slab_cuda.c: legacy IPC; slab_vmm.c: VMM fds). Every function exists in a build without CUDA and answers
 * HS_ENOCUDA there, so the core never needs an #if. The daemon touches
 * CUDA only when the first device tensor is asked for: a host-only user
 * never pays for (or depends on) a driver. */
#ifndef HS_DAEMON_CUDA_H
#define HS_DAEMON_CUDA_H

#include <stdbool.h>

#include "slab.h"

/* Most GPUs one daemon serves (ordinals 0..HS_CUDA_MAX_DEVICES-1). */
#define HS_CUDA_MAX_DEVICES 64

/* Device slabs are aligned far beyond this; blocks inside them at 256
 * (range.h), which is what DLPack and CUDA kernels expect. */
#define HS_CUDA_ALIGN 256

extern const struct hsd_slab_ops hsd_slab_cuda_ops; /* legacy IPC handles (slab_cuda.c) */
extern const struct hsd_slab_ops hsd_slab_cuda_vmm_ops; /* VMM fds (slab_vmm.c) */

/* The number of GPUs this process sees (> 0), probed once and logged
 * once: HS_ENOCUDA (built without CUDA), HS_ENODEV (no driver, no GPU). */
int hsd_cuda_device_count(void);

/* Makes dev the calling thread's current device: 0, HS_ENODEV, HS_ECUDA. */
int hsd_cuda_use_device(int dev);

#endif
