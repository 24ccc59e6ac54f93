/*
 * Deadlines for every account, on one timerfd.
 *
 * libevent's timers run on CLOCK_MONOTONIC, which stops during suspend: a
 * refresh due an hour after a laptop or gateway went to sleep for two
 * would come an hour late, after the token died. Deadlines here are on
 * CLOCK_BOOTTIME, which counts suspend, kept in a binary heap, with one
 * timerfd armed at the earliest; the kernel wakes us as soon as we resume
 * past it. A second timerfd on CLOCK_REALTIME with TFD_TIMER_CANCEL_ON_SET
 * tells us when the wall clock was set, since token expiry is wall time.
 */
#define _GNU_SOURCE
#include <sys/timerfd.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tokend.h"

/*
 * The latest deadline armed: some 68 years of uptime, so tv_sec fits any
 * time_t and nothing near INT64_MAX reaches the arithmetic. A later one
 * waits there, which is as good as never.
 */
#define TIMER_WHEN_MAX_MS	((int64_t)INT32_MAX * MSEC_PER_SEC)

static struct timer	**heap;		/* 1-based */
static size_t		  heap_len;
static size_t		  heap_cap;
static int		  boot_fd = -1;
static int		  wall_fd = -1;
static struct event	 *boot_ev;
static struct event	 *wall_ev;
static int64_t		  armed = -1;
static void		(*jump_cb)(void *);
static void		 *jump_arg;

static void
timer_heap_swap(size_t a, size_t b)
{
	struct timer	*t = heap[a];

	heap[a] = heap[b];
	heap[b] = t;
	heap[a]->idx = a;
	heap[b]->idx = b;
}

static void
timer_heap_up(size_t i)
{
	while (i > 1 && heap[i]->when < heap[i / 2]->when) {
		timer_heap_swap(i, i / 2);
		i /= 2;
	}
}

static void
timer_heap_down(size_t i)
{
	size_t	 c;

	for (;;) {
		c = i * 2;
		if (c > heap_len)
			break;
		if (c + 1 <= heap_len && heap[c + 1]->when < heap[c]->when)
			c++;
		if (heap[i]->when <= heap[c]->when)
			break;
		timer_heap_swap(i, c);
		i = c;
	}
}

static void
timer_heap_remove(struct timer *t)
{
	size_t	 i = t->idx;

	timer_heap_swap(i, heap_len);
	heap_len--;
	t->idx = 0;
	if (i <= heap_len) {
		timer_heap_up(i);
		timer_heap_down(i);
	}
}

/* Arm the timerfd at the earliest deadline, if that changed. */
static void
timer_rearm(void)
{
	struct itimerspec	 its;
	int64_t			 when;

	when = heap_len > 0 ? heap[1]->when : -1;
	if (when == armed || boot_fd == -1)
		return;
	memset(&its, 0, sizeof its);
	if (when >= 0) {
		/* timer_set keeps every deadline in [1, TIMER_WHEN_MAX_MS] */
		its.it_value.tv_sec = (time_t)(when / 1000);
		its.it_value.tv_nsec = (long)(when % 1000) * 1000000;
	}
	if (timerfd_settime(boot_fd, TFD_TIMER_ABSTIME, &its, NULL) == -1)
		log_warn("timerfd_settime");
	armed = heap_len > 0 ? heap[1]->when : -1;
}

static void
timer_fire_cb(evutil_socket_t fd, short events, void *arg)
{
	struct timer	*t;
	uint64_t	 n;
	int64_t		 now;

	(void)events;
	(void)arg;
	if (read(fd, &n, sizeof n) == -1 && errno != EAGAIN)
		log_warn("timerfd read");
	armed = -1;
	now = clock_boot_ms();
	while (heap_len > 0 && heap[1]->when <= now) {
		t = heap[1];
		timer_heap_remove(t);
		t->cb(t->arg);	/* may set timers again */
	}
	timer_rearm();
}

static void
timer_wall_arm(void)
{
	struct itimerspec	 its;

	/* far in the future: it only exists to be cancelled by a clock set */
	memset(&its, 0, sizeof its);
	its.it_value.tv_sec = INT32_MAX;
	if (timerfd_settime(wall_fd, TFD_TIMER_ABSTIME |
	    TFD_TIMER_CANCEL_ON_SET, &its, NULL) == -1)
		log_warn("timerfd_settime (realtime)");
}

static void
timer_wall_cb(evutil_socket_t fd, short events, void *arg)
{
	uint64_t	 n;

	(void)events;
	(void)arg;
	if (read(fd, &n, sizeof n) == -1 && errno == ECANCELED) {
		log_info("the wall clock was set; re-checking every token");
		timer_wall_arm();
		if (jump_cb != NULL)
			jump_cb(jump_arg);
	}
}

int
timer_init(struct event_base *base, void (*on_jump)(void *), void *arg)
{
	jump_cb = on_jump;
	jump_arg = arg;
	boot_fd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	wall_fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	if (boot_fd == -1 || wall_fd == -1)
		return -errno;
	boot_ev = event_new(base, boot_fd, EV_READ | EV_PERSIST,
	    timer_fire_cb, NULL);
	wall_ev = event_new(base, wall_fd, EV_READ | EV_PERSIST,
	    timer_wall_cb, NULL);
	if (boot_ev == NULL || wall_ev == NULL)
		return -ENOMEM;
	event_add(boot_ev, NULL);
	event_add(wall_ev, NULL);
	timer_wall_arm();
	return 0;
}

void
timer_shutdown(void)
{
	if (boot_ev != NULL)
		event_free(boot_ev);
	if (wall_ev != NULL)
		event_free(wall_ev);
	if (boot_fd != -1)
		close(boot_fd);
	if (wall_fd != -1)
		close(wall_fd);
	boot_ev = wall_ev = NULL;
	boot_fd = wall_fd = -1;
	free(heap);
	heap = NULL;
	heap_len = heap_cap = 0;
	armed = -1;
}

/*
 * (Re)arm t at `when` (boot ms). A deadline in the past (even a negative
 * one, from a caller's overflow) fires at once; one past
 * TIMER_WHEN_MAX_MS waits there. Either way the one timerfd stays armed
 * for every other deadline.
 */
void
timer_set(struct timer *t, int64_t when)
{
	if (when < 1)
		when = 1;	/* 0 or less would disarm the timerfd */
	if (when > TIMER_WHEN_MAX_MS)
		when = TIMER_WHEN_MAX_MS;
	if (t->idx != 0) {
		t->when = when;
		timer_heap_up(t->idx);
		timer_heap_down(t->idx);
	} else {
		if (heap_len + 2 > heap_cap) {
			heap_cap = heap_cap ? heap_cap * 2 : 64;
			heap = xreallocarray(heap, heap_cap, sizeof *heap);
		}
		t->when = when;
		heap[++heap_len] = t;
		t->idx = heap_len;
		timer_heap_up(heap_len);
	}
	timer_rearm();
}

void
timer_clear(struct timer *t)
{
	if (t->idx == 0)
		return;
	timer_heap_remove(t);
	timer_rearm();
}

int
timer_pending(const struct timer *t)
{
	return t->idx != 0;
}
