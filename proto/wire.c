/* One Message per SOCK_SEQPACKET datagram, fds beside it with SCM_RIGHTS.
 * Nothing else in the tree touches bytes on the socket. */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int hs__wire_send(int sock, const Hs__Message *msg, const int *fds, int nfds)
{
	size_t len = hs__message__get_packed_size(msg);
	if (len > HS__WIRE_MAX_MSG)
		return -EMSGSIZE;
	if (nfds < 0 || nfds > HS__WIRE_MAX_FDS)
		return -EINVAL;

	/* Small messages (every per-tensor one) are packed on the stack. */
	uint8_t stackbuf[1024];
	uint8_t *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	if (!buf)
		return -ENOMEM;
	hs__message__pack(msg, buf);

	struct iovec iov = { .iov_base = buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int) * HS__WIRE_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}

	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	int err = n < 0 ? -errno : 0;
	if (buf != stackbuf)
		free(buf);
	if (err == -EWOULDBLOCK)
		err = -EAGAIN;
	if (err == -ECONNRESET || err == -ENOTCONN)
		err = -EPIPE;
	if (!err && (size_t)n != len)
		err = -EIO; /* SEQPACKET sends whole datagrams; never expected */
	return err;
}

void hs__wire_close_fds(const int *fds, int nfds)
{
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int hs__wire_recv(int sock, uint8_t *buf, int *fds, int *nfds)
{
	struct iovec iov = { .iov_base = buf, .iov_len = HS__WIRE_MAX_MSG };
	/* Room for more fds than we accept, so an over-sized batch is seen
	 * (and closed) rather than silently cut. */
	union {
		char b[CMSG_SPACE(sizeof(int) * HS__WIRE_MAX_FDS * 4)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.b,
		.msg_controllen = sizeof(ctl.b),
	};
	*nfds = 0;

	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EWOULDBLOCK || errno == EAGAIN)
			return -EAGAIN;
		if (errno == ECONNRESET || errno == ENOTCONN)
			return -EPIPE;
		return -errno;
	}

	int got[HS__WIRE_MAX_FDS * 4];
	int ngot = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && ngot < (int)(sizeof(got) / sizeof(got[0])); i++)
			memcpy(&got[ngot++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}

	int err = 0;
	if (mh.msg_flags & MSG_TRUNC)
		err = -EMSGSIZE;
	else if ((mh.msg_flags & MSG_CTRUNC) || ngot > HS__WIRE_MAX_FDS)
		err = -EPROTO;
	else if (n == 0 && ngot == 0)
		err = -EPIPE; /* orderly shutdown; an empty datagram has no use */
	else if (n == 0)
		err = -EPROTO;
	if (err) {
		hs__wire_close_fds(got, ngot);
		return err;
	}
	memcpy(fds, got, sizeof(int) * (size_t)ngot);
	*nfds = ngot;
	return (int)n;
}

int hs__wire_decode(const uint8_t *buf, size_t len, Hs__Message **out)
{
	Hs__Message *m = hs__message__unpack(NULL, len, buf);
	if (!m)
		return -EPROTO;
	if (m->body_case == HS__MESSAGE__BODY__NOT_SET) {
		hs__message__free_unpacked(m, NULL);
		return -EPROTO;
	}
	*out = m;
	return 0;
}

void hs__wire_free(Hs__Message *msg)
{
	if (msg)
		hs__message__free_unpacked(msg, NULL);
}

const char *hs__wire_body_name(const Hs__Message *msg)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
		&hs__message__descriptor, (unsigned)msg->body_case);
	return f ? f->name : "none";
}

bool hs__wire_debug_enabled(void)
{
	static int on = -1;
	if (on < 0) {
		const char *e = getenv("HS_DEBUG");
		on = e && *e && strcmp(e, "0") != 0;
	}
	return on;
}

/* Prints a message's fields from its descriptor, one level of nesting
 * per brace; repeated fields as lists. Handles and secrets (bytes) are
 * shown by length only: an IPC handle is a capability and is never logged. */
static void print_msg(FILE *f, const ProtobufCMessage *m);

static void print_scalar(FILE *f, const ProtobufCFieldDescriptor *fd, const void *p)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(f, "%d", *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(f, "%u", *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(f, "%lld", (long long)*(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fprintf(f, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			fd->descriptor, *(const int *)p);
		if (v)
			fprintf(f, "%s", v->name);
		else
			fprintf(f, "%d", *(const int *)p);
		break;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		fprintf(f, "\"%.64s\"", s ? s : "");
		break;
	}
	case PROTOBUF_C_TYPE_BYTES:
		fprintf(f, "<%zu bytes>", ((const ProtobufCBinaryData *)p)->len);
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		print_msg(f, *(ProtobufCMessage *const *)p);
		break;
	default:
		fprintf(f, "?");
	}
}

static size_t type_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	default:
		return 4;
	}
}

static void print_msg(FILE *f, const ProtobufCMessage *m)
{
	if (!m) {
		fprintf(f, "{}");
		return;
	}
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	fprintf(f, "{");
	bool first = true;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t c = *(const uint32_t *)(base + fd->quantifier_offset);
			if (c != fd->id)
				continue;
		}
		const void *p = base + fd->offset;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + fd->quantifier_offset);
			if (n == 0)
				continue;
			fprintf(f, "%s%s=[", first ? "" : " ", fd->name);
			const char *arr = *(char *const *)p;
			for (size_t k = 0; k < n && k < 16; k++) {
				if (k)
					fprintf(f, ",");
				print_scalar(f, fd, arr + k * type_size(fd->type));
			}
			fprintf(f, n > 16 ? ",...]" : "]");
		} else {
			if (fd->type == PROTOBUF_C_TYPE_MESSAGE && !*(void *const *)p)
				continue;
			fprintf(f, "%s%s=", first ? "" : " ", fd->name);
			print_scalar(f, fd, p);
		}
		first = false;
	}
	fprintf(f, "}");
}

void hs__wire_debug(const char *who, const char *dir, const Hs__Message *msg,
		    int nfds)
{
	flockfile(stderr);
	fprintf(stderr, "[hs %s %d] %s ", who, (int)getpid(), dir);
	print_msg(stderr, &msg->base);
	if (nfds)
		fprintf(stderr, " +%d fd", nfds);
	fputc('\n', stderr);
	funlockfile(stderr);
}
