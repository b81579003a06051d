/* The opposition list in memory: the serials of the cards the insurers
 * put in opposition (lost, stolen, replaced; docs/upload.md "The
 * opposition list"), for the check of every physical card read.
 *
 * The list is stored durably in the queue (storage/queue.h
 * queue_apply_opposition), whose handle lives on the queue's worker
 * thread: a card read must not wait for that thread (a commit's fsync may
 * hold it) nor touch the disk on the loop. So the daemon keeps this copy
 * on the loop thread: the upload module (daemon/upload/upload.c) has the
 * stored list built into a set on the queue's thread at start-up
 * (opposition_new, opposition_set_add: a set not yet installed belongs to
 * the thread that builds it), installs it on the loop (a pointer swap), and
 * applies each increment after the queue committed it; the reader sessions
 * (readers.c, through cardio.c) look a serial up in constant time when a
 * card was read.
 *
 * A set is an open-addressing hash table (linear probing, backward-shift
 * deletion) of fixed 33-byte slots, at most 3/4 full: 44 to 88 bytes per
 * card in opposition. The installed set: one per process, loop thread only.
 */
#ifndef VITALED_CARDS_OPPOSITION_H
#define VITALED_CARDS_OPPOSITION_H

#include <stdbool.h>
#include <stddef.h>

/* A serial: 1 to 32 bytes (INSURER.md; protocol/insurer.h's bound). */
#define OPPOSITION_SERIAL_MAX 32

struct opposition;

/* An empty set with room for n serials without growing; NULL when out of
 * memory. Any thread (the set is its caller's until installed). */
struct opposition *opposition_new(size_t n);
/* Put serial in o: 0 (also when it was there), -EINVAL (empty or longer
 * than OPPOSITION_SERIAL_MAX), -ENOMEM. */
int opposition_set_add(struct opposition *o, const char *serial);
void opposition_set_remove(struct opposition *o, const char *serial);
bool opposition_set_has(const struct opposition *o, const char *serial);
size_t opposition_set_count(const struct opposition *o);
/* NULL is fine. */
void opposition_free(struct opposition *o);

/* Make o the daemon's set (owned from now on; the one before is freed)
 * and mark the stored list loaded. Loop thread. */
void opposition_install(struct opposition *o);

/* The installed set (an empty one until something is installed or
 * added). Loop thread. */
int opposition_add(const char *serial);
void opposition_remove(const char *serial);
/* Whether serial is in the set (false for NULL or ""). */
bool opposition_has(const char *serial);
size_t opposition_count(void);
/* Whether the stored list was loaded (opposition_install; false again
 * after an add failed for want of memory); GetStatus shows it. */
bool opposition_loaded(void);
void opposition_set_loaded(bool loaded);
/* Free the installed set (loaded goes false). */
void opposition_clear(void);

#endif
