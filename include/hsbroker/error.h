/* hsbroker error codes: every hs_ function returns 0 or one of these.
 * Values are negative errno numbers where one fits (as libuv does), so a
 * caller may compare with -ENOENT; codes with no errno twin sit below -4000.
 * The same numbers travel on the wire in ErrorReply.code. */
#ifndef HSBROKER_ERROR_H
#define HSBROKER_ERROR_H

#include <errno.h>

#include "hsbroker/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HS_ERRNO_MAP(X)                                                        \
	X(EINVAL, -EINVAL, "invalid argument")                                 \
	X(ENOMEM, -ENOMEM, "out of memory")                                    \
	X(ENOENT, -ENOENT, "no such tensor, topic or subscription")            \
	X(EPERM, -EPERM, "permission denied")                                  \
	X(EACCES, -EACCES, "access to the broker socket denied")               \
	X(ETIMEDOUT, -ETIMEDOUT, "timed out")                                  \
	X(ECONNREFUSED, -ECONNREFUSED, "connection refused: the socket exists but no hsbrokerd listens on it") \
	X(EPIPE, -EPIPE, "connection to hsbrokerd lost")                       \
	X(EPROTO, -EPROTO, "protocol error")                                   \
	X(EMSGSIZE, -EMSGSIZE, "message too large")                            \
	X(ENOSPC, -ENOSPC, "pool exhausted: no free block large enough")       \
	X(EDQUOT, -EDQUOT, "client quota exceeded")                            \
	X(ENODEV, -ENODEV, "no such device, or no GPU available")              \
	X(EOVERFLOW, -EOVERFLOW, "size overflows 64 bits")                     \
	X(ERANGE, -ERANGE, "strides or offset reach outside the allocation")   \
	X(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                        \
	X(EBUSY, -EBUSY, "resource busy")                                      \
	X(ESHUTDOWN, -ESHUTDOWN, "hsbrokerd is shutting down")                 \
	X(EAGAIN, -EAGAIN, "resource temporarily unavailable")                 \
	X(ENOTSUP, -ENOTSUP, "operation not supported")                        \
	X(EBADF, -EBADF, "bad file descriptor")                                \
	X(EIO, -EIO, "I/O error")                                              \
	X(ELIMIT, -4001, "a limit on one client or uid was reached")   \
	X(EVERSION, -4002, "protocol version mismatch between client and hsbrokerd") \
	X(EDTYPE, -4003, "unsupported dtype")                                  \
	X(ENDIM, -4004, "too many dimensions")                                 \
	X(ESHAPE, -4005, "negative dimension in shape")                        \
	X(ETOPIC, -4006, "invalid topic name")                                 \
	X(ESTALE, -4007, "tensor id is stale: the tensor was released")        \
	X(ECUDA, -4008, "CUDA call failed")                                    \
	X(ENOCUDA, -4009, "built without CUDA support")                        \
	X(EIPC, -4010, "CUDA IPC unavailable (different PID namespace, MIG, WSL2 or Tegra?)") \
	X(ENOBROKER, -4011, "no broker socket at that path: is hsbrokerd running?")

enum hs_error {
#define HS__ERR_ENUM(name, val, text) HS_##name = (val),
	HS_ERRNO_MAP(HS__ERR_ENUM)
#undef HS__ERR_ENUM
};

/* A static English description of code; never NULL. */
HS_EXPORT const char *hs_strerror(int code);
/* The symbolic name ("HS_ENOSPC"); never NULL. */
HS_EXPORT const char *hs_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
