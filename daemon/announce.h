/* Announcements of memory and fence events to a session (announce.c):
 * each slab and event once per session, before the first message that
 * names it. */
#ifndef HS_DAEMON_ANNOUNCE_H
#define HS_DAEMON_ANNOUNCE_H

struct hsd_session;
struct hsd_tensor;

/* Both announcements a TensorRef of t needs: its slab and its ready fence
 * event (to the subscribers of s's pair rings first, when they are s's).
 * 0 or a negative hs code (the memory could not be announced to s). */
int hsd_announce_tensor(struct hsd_session *s, struct hsd_tensor *t);

/* For pair rings (pair.c): every slab of s's uid and every fence event
 * that from was told of is announced to s. 0 or a negative hs code. */
int hsd_announce_memory_of(struct hsd_session *s, struct hsd_session *from);

#endif
