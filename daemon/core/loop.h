/* The event loop: one poll() on the main thread for file descriptors,
 * monotonic timers, and work posted from other threads.
 *
 * Everything registered here runs on the loop's thread, and every
 * function but loop_post() and loop_on_thread() must be called from it
 * (asserted). Blocking work goes to a worker (daemon/core/worker.h), whose
 * done callbacks run here; loop_post() is the one thread-safe entry point
 * for threads that are not workers (the drivers' watch threads); it wakes
 * poll() through an eventfd, so idle costs no CPU.
 */
#ifndef VITALED_LOOP_H
#define VITALED_LOOP_H

#include <assert.h>
#include <stdbool.h>
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
/* The same, for a message the callback owns: if the loop is freed before
 * cb ran (a driver thread's last event at shutdown), loop_free() calls
 * free_arg(arg) instead. */
int loop_post_owned(struct loop *l, loop_post_cb cb, void (*free_arg)(void *arg), void *arg);

/* Run until loop_stop(). Returns 0, or a negative errno if poll() failed. */
int loop_run(struct loop *l);
/* Run at most one poll round waiting up to max_wait_ms (tests). */
int loop_run_once(struct loop *l, int max_wait_ms);
/* Ask loop_run to return after the current round (loop thread only). */
void loop_stop(struct loop *l);

/* True on the thread that runs l (loop_new's thread until loop_run or
 * loop_run_once is called, then that one). Any thread. */
bool loop_on_thread(const struct loop *l);
/* Loop-only functions start with this: a call from a worker thread is a
 * bug that would race with the loop, caught at once in every build. */
#define LOOP_ASSERT_THREAD(l) assert(loop_on_thread(l))

/* Monotonic milliseconds (lib/clock's, for the loop's users). */
uint64_t loop_now_ms(void);

#endif
