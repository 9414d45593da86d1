/* The I/O layer: the listening socket and one uv_poll_t per session,
 * feeding datagrams to the broker core and flushing its outboxes. */
#ifndef HS_DAEMON_SERVER_H
#define HS_DAEMON_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

#include <uv.h>

#include "broker.h"

struct hsd_server_config {
	const char *socket_path;  /* NULL: $HSBROKER_SOCKET, $XDG_RUNTIME_DIR/..., /run/... */
	int socket_mode;          /* -1: 0660 with a group, else 0666 */
	gid_t socket_group;
	bool has_group;
	/* After handling channel traffic, keep polling the channels this
	 * long before sleeping, so a client sending then needs no wake-up
	 * (costs CPU while traffic flows; 0: always sleep). */
	uint32_t spin_us;
	/* A connection that has not said hello this long after it was
	 * accepted is closed ([limits] hello_timeout; 0: the default,
	 * SERVER_HELLO_TIMEOUT_MS). */
	uint32_t hello_timeout_ms;
};

#define SERVER_HELLO_TIMEOUT_MS 5000u

struct hsd_server;

/* Creates the broker, takes the listening socket (from systemd, or makes
 * it: parent directory, lock file, stale socket removed), and reports
 * readiness. 0 or a negative hs code, with the reason logged. */
int hsd_server_start(uv_loop_t *loop, const struct hsd_broker_config *bcfg,
		     const struct hsd_server_config *cfg, struct hsd_server **out);

/* Applies a re-read configuration (hsd_broker_reload, plus the hello
 * timeout and spin_us); the socket's path, mode and group are not looked
 * at (the caller says they need a restart). Returns the number of keys
 * kept for want of a restart. */
int hsd_server_reload(struct hsd_server *srv, const struct hsd_broker_config *bcfg,
		      const struct hsd_server_config *cfg);

/* Tells every session (ShutdownNotice{reason}), closes them and the
 * listener, removes the socket (unless socket-activated). The server
 * is freed once its handles are closed (the loop then ends). */
void hsd_server_stop(struct hsd_server *srv, const char *reason);

#endif
