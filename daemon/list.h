/* An intrusive doubly linked list (wl_list / spa_list): an element links
 * itself, so removal is O(1) and needs no allocation. */
#ifndef HS_DAEMON_LIST_H
#define HS_DAEMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct hsd_list {
	struct hsd_list *prev, *next;
};

static inline void list_init(struct hsd_list *l)
{
	l->prev = l->next = l;
}

static inline bool list_empty(const struct hsd_list *l)
{
	return l->next == l;
}

static inline void list_insert_tail(struct hsd_list *head, struct hsd_list *e)
{
	e->prev = head->prev;
	e->next = head;
	head->prev->next = e;
	head->prev = e;
}

/* Unlinks e and leaves it self-linked, so a second removal is harmless. */
static inline void list_remove(struct hsd_list *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}

#define list_entry(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define list_first(head, type, member) list_entry((head)->next, type, member)

#define list_for_each(pos, head, member)                                        \
	for (pos = list_entry((head)->next, __typeof__(*pos), member);          \
	     &pos->member != (head);                                            \
	     pos = list_entry(pos->member.next, __typeof__(*pos), member))

/* Safe against removal of pos. */
#define list_for_each_safe(pos, tmp, head, member)                              \
	for (pos = list_entry((head)->next, __typeof__(*pos), member),          \
	    tmp = list_entry(pos->member.next, __typeof__(*pos), member);       \
	     &pos->member != (head);                                            \
	     pos = tmp, tmp = list_entry(pos->member.next, __typeof__(*pos), member))

#endif
