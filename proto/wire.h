/* Internal to hsbroker: framing of one protobuf Message per SOCK_SEQPACKET
 * datagram with its fds, DLPack metadata checks shared by daemon and client,
 * and the error table. Neither side's types appear here. */
#ifndef HS_PROTO_WIRE_H
#define HS_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "hsbroker.pb-c.h"

/* Largest datagram either side sends or accepts. A ListReply of many
 * tensors is the largest message; the daemon trims it to fit. */
#define HS__WIRE_MAX_MSG (256 * 1024)
/* Most fds one datagram may carry; more is a protocol error. */
#define HS__WIRE_MAX_FDS 4

#define HS__MAX_NDIM 32
#define HS__MAX_TOPIC 255
#define HS__MAX_NAME 63

/* Packs msg and sends it with fds (nfds may be 0). Never raises SIGPIPE.
 * Returns 0, -EAGAIN (socket full, nothing sent), -EPIPE (peer gone),
 * -EMSGSIZE (msg larger than HS__WIRE_MAX_MSG) or another -errno. */
int hs__wire_send(int sock, const Hs__Message *msg, const int *fds, int nfds);

/* Receives one datagram into buf (HS__WIRE_MAX_MSG bytes). fds receives at
 * most HS__WIRE_MAX_FDS descriptors, close-on-exec. Returns the datagram's
 * length (> 0), -EAGAIN, -EPIPE on orderly close, -EMSGSIZE when the
 * datagram was truncated, -EPROTO when fds were truncated; on error no fd
 * is left open. */
int hs__wire_recv(int sock, uint8_t *buf, int *fds, int *nfds);

/* Decodes a datagram. Returns 0 with *out set (free with
 * hs__wire_free), -EPROTO for bytes that are not a Message or a Message
 * with no body. */
int hs__wire_decode(const uint8_t *buf, size_t len, Hs__Message **out);
void hs__wire_free(Hs__Message *msg);

/* Closes fds[0..nfds) that are >= 0. */
void hs__wire_close_fds(const int *fds, int nfds);

/* The name of a message body ("alloc", "deliver"), for logs. */
const char *hs__wire_body_name(const Hs__Message *msg);

/* HS_DEBUG=1 on either side prints every message: who ("daemon",
 * "client"), the direction ("->" sent, "<-" received) and the fields. */
bool hs__wire_debug_enabled(void);
void hs__wire_debug(const char *who, const char *dir, const Hs__Message *msg,
		    int nfds);

/* ---- DLPack metadata ---- */

/* Bytes of one element, or 0 for a dtype hsbroker does not carry. */
uint64_t hs__dtype_size(DLDataType dtype);

/* Checks device type, dtype, ndim, shape and strides (NULL = compact) and
 * computes the bytes from the block start that the tensor reaches:
 * *need = byte_offset + (highest element offset + 1) * element size, or
 * byte_offset for a tensor with no elements. Exact: nothing wraps, at
 * any width. Returns 0, HS_EDTYPE, HS_ENDIM, HS_ESHAPE (a negative
 * dimension), HS_EOVERFLOW (the element count, the bytes it spans or the
 * extent past 2^64 - 1), HS_ERANGE (a negative stride reaching below the
 * block start) or HS_EINVAL (device type). The checks run in that order
 * (device type first); a tensor with a zero dimension skips the count
 * and strides. */
int hs__meta_extent(DLDevice device, DLDataType dtype, int32_t ndim,
		    const int64_t *shape, const int64_t *strides,
		    uint64_t byte_offset, uint64_t *need);

/* The same for a Meta from the wire (untrusted). */
int hs__meta_extent_pb(const Hs__Meta *meta, uint64_t *need);

/* 1..255 bytes of [A-Za-z0-9_./:-]: 0, HS_ETOPIC or HS_ENAMETOOLONG. */
int hs__topic_check(const char *topic);

/* hs_strerror's table, shared so the daemon can log the same words. */
const char *hs__strerror(int code);
const char *hs__err_name(int code);

#endif
