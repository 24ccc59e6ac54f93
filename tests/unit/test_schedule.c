/*
 * Unit tests for schedule.c: when to refresh, how long to back off, and
 * what a Retry-After header asks for. Everything is pure, so each case
 * gives the time and the random share itself.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tokend.h"
#include "unit.h"

#define SEC		1000LL
#define MIN		(60 * SEC)
#define HOUR		(60 * MIN)
#define DAY		(24 * HOUR)
#define T0		1700000000000LL		/* 2023-11-14T22:13:20Z */

/* 1 - 2^-53: the largest value rng_unit() can return */
#define RND_MAX		(1.0 - 0x1.0p-53)

#define CHECK_RANGE(what, got, lo, hi) do {				\
	long long got_ = (long long)(got), lo_ = (long long)(lo);	\
	long long hi_ = (long long)(hi);				\
	if (got_ < lo_ || got_ > hi_)					\
		fail_msg("%s: got %lld, expected within [%lld, %lld]",	\
		    (what), got_, lo_, hi_);				\
} while (0)

/* ---- schedule_refresh_at ---- */

struct refresh_case {
	const char	*name;
	int64_t		 margin;
	double		 ratio;
	double		 jitter;
	int64_t		 lifetime;	/* expires_at - obtained */
	double		 rnd;
	int64_t		 want;		/* offset from obtained */
	int64_t		 slack;		/* allowed float rounding, ms */
};

static const struct refresh_case refresh_cases[] = {
	/* L = 1h: 0.75 L = 45m comes before L - 5m = 55m */
	{ "ratio wins", 5 * MIN, 0.75, 0.0, HOUR, 0.0, 45 * MIN, 0 },
	/* L = 10m: L - 5m = 5m comes before 0.75 L = 7.5m */
	{ "margin wins", 5 * MIN, 0.75, 0.0, 10 * MIN, 0.0, 5 * MIN, 0 },
	{ "margin wins, 2h lifetime, 1h margin", HOUR, 0.9, 0.0, 2 * HOUR,
	    0.0, HOUR, 0 },
	{ "ratio 1.0, no margin: at expiry", 0, 1.0, 0.0, HOUR, 0.0, HOUR,
	    0 },
	{ "jitter 0 ignores rnd", 5 * MIN, 0.75, 0.0, HOUR, 0.999, 45 * MIN,
	    0 },
	{ "jitter 0.1, rnd 0: no shift", 5 * MIN, 0.75, 0.1, HOUR, 0.0,
	    45 * MIN, 0 },
	/* 45m - 0.999 * 0.1 * 1h = 2700000 - 359640 */
	{ "jitter 0.1, rnd 0.999", 5 * MIN, 0.75, 0.1, HOUR, 0.999,
	    2340360, 1 },
	{ "jitter 0.5, rnd 0.5", 5 * MIN, 0.75, 0.5, HOUR, 0.5,
	    45 * MIN - 15 * MIN, 1 },
	/* Spotinst: 7199 s; 0.75 L = 5399.25 s, L - 5m = 6899 s */
	{ "Spotinst 7199 s", 5 * MIN, 0.75, 0.0, 7199 * SEC, 0.0,
	    5399250, 0 },
	/* L = 10 s: L - 5m is negative, so the floor of half of L */
	{ "floor: margin longer than lifetime", 5 * MIN, 0.75, 0.0,
	    10 * SEC, 0.0, 5 * SEC, 0 },
	/* issue 11: a 2 m token (Keycloak) with the default [refresh] is
	   refreshed after 1 m, not every second; jitter cannot pull it
	   earlier */
	{ "default margin, 2 m token", 5 * MIN, 0.75, 0.1, 2 * MIN, RND_MAX,
	    MIN, 0 },
	{ "default margin, 5 m token", 5 * MIN, 0.75, 0.1, 5 * MIN, RND_MAX,
	    150 * SEC, 0 },
	/* a cut margin spreads after the floor: 150 s + 0.5 * 0.1 * 300 s */
	{ "default margin, 5 m token, rnd 0.5", 5 * MIN, 0.75, 0.1, 5 * MIN,
	    0.5, 165 * SEC, 0 },
	{ "default margin, 5 m token, rnd 0", 5 * MIN, 0.75, 0.1, 5 * MIN,
	    0.0, 180 * SEC, 0 },
	/* ... but never past ratio * L: 60 s + 0.5 * 120 s > 90 s */
	{ "cut margin, jitter 0.5 capped at ratio", 5 * MIN, 0.75, 0.5,
	    2 * MIN, 0.0, 90 * SEC, 0 },
	/* a margin of 40 % of L: 0.6 L, then jitter down to the half */
	{ "margin 40%, jitter to the floor", 4 * MIN, 0.75, 0.5, 10 * MIN,
	    RND_MAX, 5 * MIN, 0 },
	/* ratio below one half is asked for: its own floor */
	{ "ratio 0.1 asked for", 5 * MIN, 0.1, 0.0, 30 * SEC, 0.0, 3 * SEC,
	    0 },
	{ "ratio 0.1 with jitter stays at ratio", 0, 0.1, 0.5, 30 * SEC,
	    0.5, 3 * SEC, 0 },
	{ "ratio 0.3, margin 27 s", 27 * SEC, 0.3, 0.0, 30 * SEC, 0.0,
	    9 * SEC, 0 },
	{ "floor: jitter pulls before it", 0, 0.5, 0.5, 1500, RND_MAX, SEC,
	    0 },
	{ "just above floor", 0, 1.0, 0.0, 1001, 0.0, 1001, 0 },
	/* a lifetime at or under the floor: refresh when it expires */
	{ "lifetime == floor", 5 * MIN, 0.75, 0.1, SEC, 0.5, SEC, 0 },
	{ "lifetime 500 ms", 5 * MIN, 0.75, 0.1, 500, 0.5, 500, 0 },
	{ "lifetime 1 ms", 5 * MIN, 0.75, 0.1, 1, 0.5, 1, 0 },
	{ "lifetime 0: at once", 5 * MIN, 0.75, 0.1, 0, 0.5, 0, 0 },
	{ "already expired: at once", 5 * MIN, 0.75, 0.1, -HOUR, 0.5, 0, 0 },
	/* Particle: 90 days; 0.75 L = 67.5 d, minus 0.5 * 0.1 * L = 4.5 d */
	{ "90-day lifetime", 5 * MIN, 0.75, 0.1, 90 * DAY, 0.5,
	    63 * DAY, 1 },
	{ "90-day lifetime, rnd 0", 5 * MIN, 0.75, 0.1, 90 * DAY, 0.0,
	    (int64_t)(67.5 * DAY), 0 },
	{ "10-year lifetime", 5 * MIN, 0.75, 0.0, 3660 * DAY, 0.0,
	    2745 * DAY, 0 },
};

static void
test_refresh_at_table(void **state)
{
	const struct refresh_case	*c;
	struct refresh_conf		 rc;
	size_t				 i;
	int64_t				 due;

	(void)state;
	for (i = 0; i < sizeof refresh_cases / sizeof refresh_cases[0]; i++) {
		c = &refresh_cases[i];
		memset(&rc, 0, sizeof rc);
		rc.margin = c->margin;
		rc.ratio = c->ratio;
		rc.jitter = c->jitter;
		rc.min_backoff = SEC;
		rc.max_backoff = 5 * MIN;
		due = schedule_refresh_at(&rc, T0, T0 + c->lifetime, c->rnd);
		CHECK_RANGE(c->name, due - T0, c->want - c->slack,
		    c->want + c->slack);
	}
}

static void
test_refresh_at_never_expires(void **state)
{
	struct refresh_conf	 rc = { 5 * MIN, 0.75, 0.1, SEC, 5 * MIN, 0 };

	(void)state;
	CHECK_I64("expires_at 0", schedule_refresh_at(&rc, T0, 0, 0.0), 0);
	CHECK_I64("expires_at 0, rnd max", schedule_refresh_at(&rc, T0, 0,
	    RND_MAX), 0);
	CHECK_I64("expires_at 0, obtained 0", schedule_refresh_at(&rc, 0, 0,
	    0.5), 0);
}

/*
 * Properties over a sweep: due is never before the floor, never after the
 * unjittered point (the floor plus the jitter when the margin is cut), never at or past expiry when the lifetime allows, and
 * a larger rnd never gives a later due.
 */
static void
test_refresh_at_sweep(void **state)
{
	static const int64_t lifetimes[] = {
		2 * SEC, 30 * SEC, 5 * MIN, 10 * MIN, HOUR, 7199 * SEC, DAY,
		90 * DAY
	};
	static const double jitters[] = { 0.0, 0.1, 0.25, 0.5 };
	struct refresh_conf	 rc = { 5 * MIN, 0.75, 0.1, SEC, 5 * MIN, 0 };
	char			 what[128];
	int64_t			 L, due, prev, top;
	size_t			 i, j;
	int			 k;

	(void)state;
	for (i = 0; i < sizeof lifetimes / sizeof lifetimes[0]; i++) {
		for (j = 0; j < sizeof jitters / sizeof jitters[0]; j++) {
			L = lifetimes[i];
			rc.jitter = jitters[j];
			top = (int64_t)(0.75 * (double)L);
			if (L - rc.margin < top)
				top = L - rc.margin;
			if (top < L / 2) {
				/* cut: spread after the floor, to 0.75 L */
				top = L / 2 + (int64_t)(jitters[j] *
				    (double)L);
				if (top > (int64_t)(0.75 * (double)L))
					top = (int64_t)(0.75 * (double)L);
			}
			if (top < SEC)
				top = SEC;
			prev = INT64_MAX;
			for (k = 0; k <= 1000; k++) {
				double rnd = k == 1000 ? RND_MAX : k / 1000.0;

				due = schedule_refresh_at(&rc, T0, T0 + L, rnd);
				snprintf(what, sizeof what, "L=%lld jitter=%g "
				    "rnd=%g", (long long)L, jitters[j], rnd);
				CHECK_RANGE(what, due, T0 + (L / 2 > SEC ?
				    L / 2 : SEC), T0 + top);
				if (due >= T0 + L)
					fail_msg("%s: due at or after expiry",
					    what);
				if (due > prev)
					fail_msg("%s: larger rnd, later due",
					    what);
				prev = due;
			}
		}
	}
}

/* ---- schedule_margin_cut ---- */

static void
test_margin_cut(void **state)
{
	static const struct {
		const char	*name;
		int64_t		 margin;
		double		 ratio;
		int64_t		 lifetime;
		int64_t		 want;		/* 0: not cut */
	} cases[] = {
		{ "1 h token, 5 m margin", 5 * MIN, 0.75, HOUR, 0 },
		{ "10 m token, 5 m margin: exactly half", 5 * MIN, 0.75,
		    10 * MIN, 0 },
		{ "5 m token, 5 m margin", 5 * MIN, 0.75, 5 * MIN, 150 * SEC },
		{ "2 m token, 5 m margin", 5 * MIN, 0.75, 2 * MIN, MIN },
		{ "30 s token, 27 s margin", 27 * SEC, 0.75, 30 * SEC,
		    15 * SEC },
		{ "ratio 0.3 asked for, 27 s margin", 27 * SEC, 0.3, 30 * SEC,
		    9 * SEC },
		{ "ratio 0.1 asked for, 27 s margin", 27 * SEC, 0.1, 30 * SEC,
		    0 },
		{ "lifetime under the floor", 5 * MIN, 0.75, SEC, 0 },
		{ "no lifetime", 5 * MIN, 0.75, 0, 0 },
	};
	struct refresh_conf	 rc = { 0, 0, 0.1, SEC, 5 * MIN, 0 };
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rc.margin = cases[i].margin;
		rc.ratio = cases[i].ratio;
		CHECK_I64(cases[i].name, schedule_margin_cut(&rc,
		    cases[i].lifetime), cases[i].want);
		/* where it is cut, that is the earliest the refresh comes */
		if (cases[i].want != 0)
			CHECK_I64(cases[i].name, schedule_refresh_at(&rc, T0,
			    T0 + cases[i].lifetime, RND_MAX) - T0,
			    cases[i].want);
	}
}

/* ---- schedule_refresh_at_allowed ---- */

static void
test_refresh_at_allowed(void **state)
{
	struct refresh_conf	 rc = { 5 * MIN, 0.75, 0.1, SEC, 5 * MIN, 0 };
	double			 rnd;

	(void)state;
	/* every time drawn is allowed, at either end and between */
	for (rnd = 0.0; rnd < 1.0; rnd += 0.125)
		assert_true(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR,
		    schedule_refresh_at(&rc, T0, T0 + HOUR, rnd)));
	assert_true(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR,
	    schedule_refresh_at(&rc, T0, T0 + HOUR, RND_MAX)));
	/* 39-45 min for an hour, a second of slack for the state file */
	assert_true(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR,
	    T0 + 39 * MIN - SEC / 2));
	assert_false(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR,
	    T0 + 39 * MIN - 2 * SEC));
	assert_false(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR,
	    T0 + 45 * MIN + SEC + 1));
	assert_false(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR, 0));
	/* other values, other times: jitter 0.5 drew 30 min; 0.1 does not */
	rc.jitter = 0.5;
	assert_true(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR,
	    T0 + 30 * MIN));
	rc.jitter = 0.1;
	assert_false(schedule_refresh_at_allowed(&rc, T0, T0 + HOUR,
	    T0 + 30 * MIN));
	/* a token that never expires has no refresh time */
	assert_true(schedule_refresh_at_allowed(&rc, T0, 0, 0));
	assert_false(schedule_refresh_at_allowed(&rc, T0, 0, T0));
}

/* ---- schedule_backoff ---- */

/* DESIGN.md: hi = min(max, min * 2^n), lo = max(min, hi / 2). */
static void
design_bounds(const struct refresh_conf *rc, int n, int64_t *lo, int64_t *hi)
{
	int64_t	 h = rc->min_backoff;
	int	 i;

	/* no libm here: double by hand, stopping at the cap */
	for (i = 0; i < n && h < rc->max_backoff; i++)
		h *= 2;
	*hi = h >= rc->max_backoff ? rc->max_backoff : h;
	*lo = *hi / 2 > rc->min_backoff ? *hi / 2 : rc->min_backoff;
	if (*lo > *hi)
		*lo = *hi;
}

struct backoff_conf_case {
	const char	*name;
	int64_t		 min_backoff;
	int64_t		 max_backoff;
};

static const struct backoff_conf_case backoff_confs[] = {
	{ "defaults 1s..5m", SEC, 5 * MIN },
	{ "250ms..10s", 250, 10 * SEC },
	{ "3s..1h", 3 * SEC, HOUR },
	{ "min == max", 5 * SEC, 5 * SEC },
	{ "max < 2 min", SEC, 1500 },
	{ "not a power of two apart", 7 * SEC, 100 * SEC },
	{ "1 ms..1 d", 1, DAY },
};

static void
test_backoff_bounds(void **state)
{
	static const double rnds[] = { 0.0, 0.25, 0.5, 0.75, 0.999, RND_MAX };
	struct refresh_conf	 rc = { 5 * MIN, 0.75, 0.1, 0, 0, 0 };
	char			 what[128];
	int64_t			 lo, hi, d;
	size_t			 i, j;
	int			 n;

	(void)state;
	for (i = 0; i < sizeof backoff_confs / sizeof backoff_confs[0]; i++) {
		rc.min_backoff = backoff_confs[i].min_backoff;
		rc.max_backoff = backoff_confs[i].max_backoff;
		for (n = 1; n <= 20; n++) {
			design_bounds(&rc, n, &lo, &hi);
			for (j = 0; j < sizeof rnds / sizeof rnds[0]; j++) {
				d = schedule_backoff(&rc, n, rnds[j]);
				snprintf(what, sizeof what, "%s n=%d rnd=%g",
				    backoff_confs[i].name, n, rnds[j]);
				CHECK_RANGE(what, d, lo, hi);
				CHECK_RANGE(what, d, rc.min_backoff,
				    rc.max_backoff);
			}
			/* rnd 0 is the bottom of the range, rnd ~1 the top */
			snprintf(what, sizeof what, "%s n=%d rnd=0",
			    backoff_confs[i].name, n);
			CHECK_I64(what, schedule_backoff(&rc, n, 0.0), lo);
			snprintf(what, sizeof what, "%s n=%d rnd=max",
			    backoff_confs[i].name, n);
			CHECK_RANGE(what, schedule_backoff(&rc, n, RND_MAX),
			    hi - 1, hi);
		}
	}
}

/* Exact values for the defaults: doubling from 1-2 s up to the 5 m cap. */
static void
test_backoff_doubling(void **state)
{
	static const struct {
		int	 n;
		int64_t	 lo, hi;
	} want[] = {
		{ 1, 1000, 2000 },
		{ 2, 2000, 4000 },
		{ 3, 4000, 8000 },
		{ 4, 8000, 16000 },
		{ 5, 16000, 32000 },
		{ 6, 32000, 64000 },
		{ 7, 64000, 128000 },
		{ 8, 128000, 256000 },
		{ 9, 150000, 300000 },		/* capped */
		{ 10, 150000, 300000 },
		{ 20, 150000, 300000 },
		{ 64, 150000, 300000 },		/* 2^64 must not overflow */
		{ 1000, 150000, 300000 },
	};
	struct refresh_conf	 rc = { 5 * MIN, 0.75, 0.1, SEC, 5 * MIN, 0 };
	char			 what[64];
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof want / sizeof want[0]; i++) {
		snprintf(what, sizeof what, "n=%d rnd=0", want[i].n);
		CHECK_I64(what, schedule_backoff(&rc, want[i].n, 0.0),
		    want[i].lo);
		snprintf(what, sizeof what, "n=%d rnd=0.5", want[i].n);
		CHECK_RANGE(what, schedule_backoff(&rc, want[i].n, 0.5),
		    (want[i].lo + want[i].hi) / 2 - 1,
		    (want[i].lo + want[i].hi) / 2);
		snprintf(what, sizeof what, "n=%d rnd=max", want[i].n);
		CHECK_RANGE(what, schedule_backoff(&rc, want[i].n, RND_MAX),
		    want[i].hi - 1, want[i].hi);
	}
	/* each step's floor is twice the last one's until the cap */
	for (i = 1; i < 8; i++)
		CHECK_I64("doubling", schedule_backoff(&rc, (int)i + 1, 0.0),
		    2 * schedule_backoff(&rc, (int)i, 0.0));
}

/*
 * Durations near INT64_MAX (what a config file could once give): the
 * doubling saturates at max_backoff, never wraps negative. (Regression:
 * min_backoff = 60000000000d doubled past INT64_MAX.)
 */
static void
test_backoff_huge(void **state)
{
	static const struct {
		int64_t	 min, max;
	} confs[] = {
		{ 60000000000LL * DAY, INT64_MAX },
		{ 60000000000LL * DAY, 100000000000LL * DAY },
		{ INT64_MAX / 2 + 1, INT64_MAX },
		{ INT64_MAX - 1, INT64_MAX },
		{ INT64_MAX, INT64_MAX },
		{ 1, INT64_MAX },
		{ SEC, DURATION_MAX_MS },
		{ DURATION_MAX_MS, DURATION_MAX_MS },
	};
	static const double rnds[] = { 0.0, 0.5, RND_MAX };
	struct refresh_conf	 rc = { 5 * MIN, 0.75, 0.1, 0, 0, 0 };
	char			 what[128];
	int64_t			 d;
	size_t			 i, j;
	int			 n;

	(void)state;
	for (i = 0; i < sizeof confs / sizeof confs[0]; i++) {
		rc.min_backoff = confs[i].min;
		rc.max_backoff = confs[i].max;
		for (n = 1; n <= 70; n++)
			for (j = 0; j < sizeof rnds / sizeof rnds[0]; j++) {
				d = schedule_backoff(&rc, n, rnds[j]);
				snprintf(what, sizeof what, "min %lld max %lld "
				    "n=%d rnd=%g", (long long)rc.min_backoff,
				    (long long)rc.max_backoff, n, rnds[j]);
				CHECK_RANGE(what, d, rc.min_backoff,
				    rc.max_backoff);
			}
		/* enough failures reach the cap */
		snprintf(what, sizeof what, "min %lld max %lld n=70 rnd=max",
		    (long long)rc.min_backoff, (long long)rc.max_backoff);
		CHECK_RANGE(what, schedule_backoff(&rc, 70, RND_MAX),
		    rc.max_backoff / 2, rc.max_backoff);
	}
}

/* ---- schedule_retry_after ---- */

struct retry_case {
	const char	*value;
	int64_t		 now;
	int64_t		 want_s;	/* -1: none; the answer is in ms */
};

/* Sun, 06 Nov 1994 08:49:37 GMT, the RFC 9110 example date */
#define RFC_DATE	784111777LL

static const struct retry_case retry_cases[] = {
	{ "120", T0, 120 },
	{ "0", T0, 0 },
	{ "1", T0, 1 },
	{ "3600", T0, 3600 },
	{ "  120", T0, 120 },
	{ "\t120\t", T0, 120 },
	{ "120  ", T0, 120 },
	{ "0000120", T0, 120 },
	{ "120abc", T0, -1 },
	{ "12 0", T0, -1 },
	{ "1.5", T0, -1 },
	{ "-5", T0, -1 },
	{ "+5", T0, -1 },
	{ "0x10", T0, -1 },
	{ "", T0, -1 },
	{ "   ", T0, -1 },
	{ "soon", T0, -1 },
	{ "garbage, 06 Nov 1994 08:49:37 GMT", T0, -1 },
	/* HTTP-dates (RFC 9110 5.6.7), relative to now */
	{ "Sun, 06 Nov 1994 08:49:37 GMT", (RFC_DATE - 100) * 1000, 100 },
	{ "Sun, 06 Nov 1994 08:49:37 GMT", (RFC_DATE - 100) * 1000 + 999,
	    100 },
	{ "Sun, 06 Nov 1994 08:49:37 GMT", (RFC_DATE - 86400) * 1000,
	    86400 },
	{ "Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE * 1000, 0 },
	{ "Sun, 06 Nov 1994 08:49:37 GMT", T0, 0 },		/* past */
	{ "Sunday, 06-Nov-94 08:49:37 GMT", (RFC_DATE - 60) * 1000, 60 },
	{ "Sunday, 06-Nov-94 08:49:37 GMT", T0, 0 },
	{ "Sun Nov  6 08:49:37 1994", (RFC_DATE - 7) * 1000, 7 },
	{ "Sun Nov  6 08:49:37 1994", T0, 0 },
	/* 2023-11-14T22:13:20Z is T0: a date 2 minutes later */
	{ "Tue, 14 Nov 2023 22:15:20 GMT", T0, 120 },
	{ "Tue, 14 Nov 2023 22:15:20 GMT", T0 + 120 * SEC, 0 },
	{ "Tue, 14 Nov 2023 22:15:20 GMT", T0 + 180 * SEC, 0 },
	{ "Tue, 14 Nov 2023 22:15:20 GMT junk", T0, -1 },
	{ "Tue, 14 Nov 2023 22:15:20", T0, -1 },
	{ "Tue, 32 Nov 2023 22:15:20 GMT", T0, -1 },
	/* a day its month does not have is no date (not 2 or 3 March) */
	{ "Thu, 31 Feb 2024 00:00:00 GMT", T0, -1 },
	{ "Fri, 29 Feb 2030 00:00:00 GMT", T0, -1 },
	{ "Thu, 31 Apr 2025 00:00:00 GMT", T0, -1 },
	{ "Thu, 29 Feb 2024 00:00:00 GMT", T0, 1709164800 - T0 / SEC },
	{ "Thu Feb 30 00:00:00 2024", T0, -1 },
	{ "Thursday, 30-Feb-24 00:00:00 GMT", T0, -1 },
};

static void
test_retry_after_table(void **state)
{
	char	 what[128];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof retry_cases / sizeof retry_cases[0]; i++) {
		snprintf(what, sizeof what, "Retry-After '%s' at %lld",
		    retry_cases[i].value, (long long)retry_cases[i].now);
		CHECK_I64(what, schedule_retry_after(retry_cases[i].value,
		    retry_cases[i].now), retry_cases[i].want_s < 0 ? -1 :
		    retry_cases[i].want_s * SEC);
	}
	CHECK_I64("NULL", schedule_retry_after(NULL, T0), -1);
}

/* Huge delay-seconds clamp to a large positive value, never wrap. */
static void
test_retry_after_huge(void **state)
{
	static const char *const huge[] = {
		"9223372036854775807",
		"9223372036854775808",
		"18446744073709551616",
		"99999999999999999999999999999999999999999999999999",
		"100000000000",
	};
	char	 what[128];
	int64_t	 v;
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof huge / sizeof huge[0]; i++) {
		v = schedule_retry_after(huge[i], T0);
		snprintf(what, sizeof what, "Retry-After '%s'", huge[i]);
		/* at least three years, and far from wrapping */
		CHECK_RANGE(what, v, 100000000LL * SEC, INT64_MAX / 1000);
	}
	CHECK_I64("100000000", schedule_retry_after("100000000", T0),
	    100000000 * SEC);
	CHECK_I64("99999999", schedule_retry_after("99999999", T0),
	    99999999 * SEC);
	/* a date in the far future clamps like a huge delay */
	CHECK_I64("year 9999", schedule_retry_after(
	    "Fri, 31 Dec 9999 23:59:59 GMT", T0), 100000000 * SEC);
	/* the clamp is monotonic: nine digits above it clamp too */
	CHECK_I64("999999999", schedule_retry_after("999999999", T0),
	    100000000 * SEC);
	CHECK_I64("100000001", schedule_retry_after("100000001", T0),
	    100000000 * SEC);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refresh_at_table),
		cmocka_unit_test(test_refresh_at_never_expires),
		cmocka_unit_test(test_refresh_at_sweep),
		cmocka_unit_test(test_margin_cut),
		cmocka_unit_test(test_refresh_at_allowed),
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_backoff_doubling),
		cmocka_unit_test(test_backoff_huge),
		cmocka_unit_test(test_retry_after_table),
		cmocka_unit_test(test_retry_after_huge),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
