/* hsb-rogue: a hostile peer for hsbridge's tests, speaking UCX active
 * messages with the bridge's ids but wrong contents. Each bad message goes
 * on a fresh connection; the bridge must end that connection (counted in
 * its protocol_errors) and go on.
 *   hsb-rogue serve HOST:PORT    plays serve to a `hsbridge connect`
 *   hsb-rogue connect HOST:PORT  plays connect to a `hsbridge serve`
 * Prints one line per bad message: whether the bridge closed the
 * connection. Exits 0 when it closed every one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsb.h"

static ucp_worker_h worker;
static ucp_ep_h ep;
static bool ep_failed, got_hello;
static ucp_conn_request_h pending_conn;

void hsb_log(const char *fmt, ...)
{
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_err(void *arg, ucp_ep_h e, ucs_status_t st)
{
	ep_failed = true;
}

static void on_conn(ucp_conn_request_h req, void *arg)
{
	pending_conn = req;
}

static ucs_status_t on_hello(void *arg, const void *h, size_t hl, void *d, size_t l,
			     const ucp_am_recv_param_t *p)
{
	got_hello = true;
	return UCS_OK;
}

static void sent(void *req, ucs_status_t st, void *user)
{
}

static void am(unsigned id, const void *hdr, size_t hl, const void *data, size_t n)
{
	ucp_request_param_t rp = { .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_FLAGS,
				   .cb.send = sent,
				   .flags = UCP_AM_SEND_FLAG_REPLY };
	void *r = ucp_am_send_nbx(ep, id, hdr, hl, data, n, &rp);
	uint64_t until = now_ms() + 3000;
	while (r && !UCS_PTR_IS_ERR(r) && ucp_request_check_status(r) == UCS_INPROGRESS &&
	       now_ms() < until && !ep_failed)
		ucp_worker_progress(worker);
	if (r && !UCS_PTR_IS_ERR(r))
		ucp_request_free(r);
}

static bool wait_until(bool *flag, int ms)
{
	uint64_t until = now_ms() + (uint64_t)ms;
	while (!*flag && now_ms() < until)
		ucp_worker_progress(worker);
	return *flag;
}

static void close_ep(void)
{
	ucp_request_param_t cp = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
				   .flags = UCP_EP_CLOSE_FLAG_FORCE };
	void *r = ucp_ep_close_nbx(ep, &cp);
	while (r && !UCS_PTR_IS_ERR(r) && ucp_request_check_status(r) == UCS_INPROGRESS)
		ucp_worker_progress(worker);
	if (r && !UCS_PTR_IS_ERR(r))
		ucp_request_free(r);
	ep = NULL;
}

static struct hsb_meta good_meta(const char *topic, uint64_t n)
{
	struct hsb_meta m = { .seq = 1, .nbytes = n, .dtype = { kDLUInt, 8, 1 },
			      .device = { kDLCPU, 0 }, .ndim = 1, .shape = { (int64_t)n } };
	snprintf(m.topic, sizeof(m.topic), "%s", topic);
	return m;
}

/* Bad tensor messages from a fake serve. */
static int play_serve(struct sockaddr_storage *ss, socklen_t len)
{
	ucp_listener_h l;
	ucp_listener_params_t lp = {
		.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
		.sockaddr = { .addr = (struct sockaddr *)ss, .addrlen = len },
		.conn_handler = { .cb = on_conn },
	};
	if (ucp_listener_create(worker, &lp, &l) != UCS_OK)
		return 1;
	static uint8_t big[128 << 10], hdr[4096];
	const char *names[] = { "bad magic", "length differs from header", "over --max-bytes",
				"topic not asked for", "oversized header" };
	int closed = 0, n = 5;
	for (int v = 0; v < n; v++) {
		pending_conn = NULL;
		got_hello = ep_failed = false;
		uint64_t until = now_ms() + 15000;
		while (!pending_conn && now_ms() < until)
			ucp_worker_progress(worker);
		if (!pending_conn)
			break;
		ucp_ep_params_t ep_p = {
			.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
				      UCP_EP_PARAM_FIELD_ERR_HANDLER,
			.conn_request = pending_conn,
			.err_mode = UCP_ERR_HANDLING_MODE_PEER,
			.err_handler = { .cb = on_err },
		};
		if (ucp_ep_create(worker, &ep_p, &ep) != UCS_OK)
			return 1;
		wait_until(&got_hello, 5000);
		struct hsb_meta m = good_meta("cam/0", 16);
		int hl;
		switch (v) {
		case 0:
			memset(hdr, 0xff, 64);
			am(HSB_AM_TENSOR, hdr, 64, big, 16);
			break;
		case 1:
			m.nbytes = 1 << 20;
			hl = hsb_wire_put_meta(&m, hdr, sizeof(hdr));
			am(HSB_AM_TENSOR, hdr, (size_t)hl, big, 16);
			break;
		case 2:
			m = good_meta("cam/0", sizeof(big));
			hl = hsb_wire_put_meta(&m, hdr, sizeof(hdr));
			am(HSB_AM_TENSOR, hdr, (size_t)hl, big, sizeof(big));
			break;
		case 3:
			m = good_meta("secret/x", 16);
			hl = hsb_wire_put_meta(&m, hdr, sizeof(hdr));
			am(HSB_AM_TENSOR, hdr, (size_t)hl, big, 16);
			break;
		default:
			hl = hsb_wire_put_meta(&m, hdr, sizeof(hdr));
			am(HSB_AM_TENSOR, hdr, 2000, big, 16);
			break;
		}
		bool c = wait_until(&ep_failed, 5000);
		printf("%s: %s\n", names[v], c ? "connection closed by the bridge" : "NOT closed");
		closed += c;
		close_ep();
	}
	ucp_listener_destroy(l);
	return closed == n ? 0 : 1;
}

/* Bad hellos and credits from a fake connect. */
static int play_connect(struct sockaddr_storage *ss, socklen_t len)
{
	static uint8_t hdr[4096];
	const char *names[] = { "garbage hello", "credit never owed", "second hello" };
	int closed = 0, n = 3;
	for (int v = 0; v < n; v++) {
		ep_failed = false;
		ucp_ep_params_t ep_p = {
			.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
				      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER,
			.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
			.sockaddr = { .addr = (struct sockaddr *)ss, .addrlen = len },
			.err_mode = UCP_ERR_HANDLING_MODE_PEER,
			.err_handler = { .cb = on_err },
		};
		if (ucp_ep_create(worker, &ep_p, &ep) != UCS_OK)
			return 1;
		struct hsb_hello h = { .window = 4, .nglobs = 1 };
		strcpy(h.globs[0], "cam/*");
		int hl = hsb_wire_put_hello(&h, hdr, sizeof(hdr));
		if (v == 0) {
			memset(hdr, 0x5a, 40);
			am(HSB_AM_HELLO, hdr, 40, NULL, 0);
		} else {
			am(HSB_AM_HELLO, hdr, (size_t)hl, NULL, 0);
			if (v == 1)
				hl = hsb_wire_put_credit("cam/0", 3, hdr, sizeof(hdr));
			am(v == 1 ? HSB_AM_CREDIT : HSB_AM_HELLO, hdr, (size_t)hl, NULL, 0);
		}
		bool c = wait_until(&ep_failed, 5000);
		printf("%s: %s\n", names[v], c ? "connection closed by the bridge" : "NOT closed");
		closed += c;
		close_ep();
	}
	return closed == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (argc != 3 || hsb_addr_parse(argv[2], &ss, &len) < 0) {
		fprintf(stderr, "usage: hsb-rogue serve|connect HOST:PORT\n");
		return 2;
	}
	setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
	ucp_context_h ctx;
	ucp_params_t up = { .field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM };
	ucp_worker_params_t wp = { .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
				   .thread_mode = UCS_THREAD_MODE_SINGLE };
	if (ucp_init(&up, NULL, &ctx) != UCS_OK || ucp_worker_create(ctx, &wp, &worker) != UCS_OK)
		return 1;
	ucp_am_handler_param_t hp = {
		.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB,
		.id = HSB_AM_HELLO,
		.cb = on_hello,
	};
	ucp_worker_set_am_recv_handler(worker, &hp);
	int rc = !strcmp(argv[1], "serve") ? play_serve(&ss, len) : play_connect(&ss, len);
	fflush(stdout);
	ucp_worker_destroy(worker);
	ucp_cleanup(ctx);
	return rc;
}
