/* The event loop: one poll() on the main thread for file descriptors,
 * monotonic timers, and work posted from other threads.
 *
 * Everything registered here runs on the loop's thread. Worker threads
 * (pcsc, nfc, signer) hand results to the main thread with loop_post(),
 * which is the only thread-safe entry point; it wakes poll() through an
 * eventfd, so idle costs no CPU.
 */
#ifndef VITALED_LOOP_H
#define VITALED_LOOP_H

#include <stdint.h>

struct loop;

typedef void (*loop_fd_cb)(struct loop *l, int fd, short revents, void *arg);
typedef void (*loop_timer_cb)(struct loop *l, void *arg);
typedef void (*loop_post_cb)(void *arg);

/* Create a loop. Returns 0 or a negative errno. */
int loop_new(struct loop **out);
/* Free the loop; posted work that never ran is dropped (its arg is not freed). */
void loop_free(struct loop *l);

/* Watch fd for events (POLLIN/POLLOUT). One registration per fd; returns
 * -EEXIST if already watched. The callback may add/remove any fd, itself included. */
int loop_add_fd(struct loop *l, int fd, short events, loop_fd_cb cb, void *arg);
/* Change the events of a watched fd; -ENOENT if not watched. */
int loop_mod_fd(struct loop *l, int fd, short events);
/* Stop watching fd (no-op if not watched). Does not close it. */
void loop_del_fd(struct loop *l, int fd);

/* One-shot timer after delay_ms (monotonic). Returns an id > 0, or 0 on
 * allocation failure. Timers with the same deadline run in creation order. */
uint64_t loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_cb cb, void *arg);
/* Cancel a pending timer; ids that already ran or are unknown are ignored. */
void loop_timer_cancel(struct loop *l, uint64_t id);
/* Number of pending timers (for tests and status). */
unsigned loop_timer_count(const struct loop *l);

/* Thread-safe: run cb(arg) on the loop thread soon. Returns 0 or -ENOMEM. */
int loop_post(struct loop *l, loop_post_cb cb, void *arg);

/* Run until loop_stop(). Returns 0, or a negative errno if poll() failed. */
int loop_run(struct loop *l);
/* Run at most one poll round waiting up to max_wait_ms (tests). */
int loop_run_once(struct loop *l, int max_wait_ms);
/* Ask loop_run to return after the current round (loop thread only). */
void loop_stop(struct loop *l);

/* Monotonic milliseconds. */
uint64_t loop_now_ms(void);

#endif
