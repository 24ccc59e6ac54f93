/*
 * Unit tests for timer.c: the shared CLOCK_BOOTTIME timerfd under
 * deadlines no caller should make but an overflow can (negative, in the
 * past, near INT64_MAX). A real event loop, with a guard that ends it
 * should nothing fire.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <event2/event.h>

#include "tokend.h"
#include "unit.h"

#define GUARD_S		5	/* a hang, not a measure: nothing is timed */

struct fired {
	struct event_base	*base;
	int			 order[8];
	int			 n;
	int			 want;	/* break the loop after this many */
};

struct probe {
	struct timer		 t;
	struct fired		*f;
	int			 id;
};

static void
probe_cb(void *arg)
{
	struct probe	*p = arg;

	p->f->order[p->f->n++] = p->id;
	if (p->f->n == p->f->want)
		event_base_loopbreak(p->f->base);
}

static void
probe_init(struct probe *p, struct fired *f, int id)
{
	memset(p, 0, sizeof *p);
	p->t.cb = probe_cb;
	p->t.arg = p;
	p->f = f;
	p->id = id;
}

/* Run the loop until f->want timers fired, or the guard ends it. */
static void
run_until_fired(struct fired *f)
{
	struct timeval	 guard = { GUARD_S, 0 };

	event_base_loopexit(f->base, &guard);
	event_base_dispatch(f->base);
}

static int
timer_setup(void **state)
{
	struct fired	*f;

	f = calloc(1, sizeof *f);
	if (f == NULL || (f->base = event_base_new()) == NULL)
		return -1;
	if (timer_init(f->base, NULL, NULL) != 0)
		return -1;
	*state = f;
	return 0;
}

static int
timer_teardown(void **state)
{
	struct fired	*f = *state;

	timer_shutdown();
	event_base_free(f->base);
	free(f);
	return 0;
}

/*
 * A negative deadline fires at once, and the account beside it still
 * fires on time. (Regression: a negative deadline on top of the heap
 * disarmed the timerfd, and no account was refreshed again.)
 */
static void
test_negative_deadline(void **state)
{
	static const int64_t past[] = { INT64_MIN, -5000000000000000000LL,
	    -1, 0 };
	struct fired	*f = *state;
	struct probe	 healthy, bad;
	size_t		 i;

	for (i = 0; i < sizeof past / sizeof past[0]; i++) {
		f->n = 0;
		f->want = 2;
		probe_init(&healthy, f, 1);
		probe_init(&bad, f, 2);
		timer_set(&healthy.t, clock_boot_ms() + 20);
		timer_set(&bad.t, past[i]);
		run_until_fired(f);
		if (f->n != 2)
			fail_msg("deadline %lld: %d of 2 timers fired",
			    (long long)past[i], f->n);
		CHECK_I64("past first", f->order[0], 2);
		CHECK_I64("then the other", f->order[1], 1);
		assert_false(timer_pending(&healthy.t));
		assert_false(timer_pending(&bad.t));
	}
}

/* A deadline in the past, set after a later one, fires first. */
static void
test_past_deadline(void **state)
{
	struct fired	*f = *state;
	struct probe	 later, past;

	f->want = 2;
	probe_init(&later, f, 1);
	probe_init(&past, f, 2);
	timer_set(&later.t, clock_boot_ms() + 20);
	timer_set(&past.t, clock_boot_ms() - 1000);
	run_until_fired(f);
	CHECK_I64("fired", f->n, 2);
	CHECK_I64("past first", f->order[0], 2);
}

/*
 * A deadline near INT64_MAX is clamped to one the timerfd holds, stays
 * pending, and does not keep a sooner one from firing.
 */
static void
test_far_deadline(void **state)
{
	static const int64_t far[] = { INT64_MAX, INT64_MAX / 1000 * 1000,
	    (int64_t)INT32_MAX * 1000 + 1 };
	struct fired	*f = *state;
	struct probe	 soon, never[3];
	size_t		 i;

	f->want = 1;
	probe_init(&soon, f, 1);
	for (i = 0; i < sizeof far / sizeof far[0]; i++) {
		probe_init(&never[i], f, 2 + (int)i);
		timer_set(&never[i].t, far[i]);
		CHECK_I64("clamped", never[i].t.when, (int64_t)INT32_MAX * 1000);
	}
	timer_set(&soon.t, clock_boot_ms() + 20);
	run_until_fired(f);
	CHECK_I64("fired", f->n, 1);
	CHECK_I64("the sooner one", f->order[0], 1);
	for (i = 0; i < sizeof far / sizeof far[0]; i++) {
		assert_true(timer_pending(&never[i].t));
		timer_clear(&never[i].t);
	}
}

int
main(void)
{
#define T(f)	cmocka_unit_test_setup_teardown(f, timer_setup, \
		    timer_teardown)
	const struct CMUnitTest tests[] = {
		T(test_negative_deadline),
		T(test_past_deadline),
		T(test_far_deadline),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
