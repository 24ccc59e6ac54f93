/*
 * Time arithmetic for refreshes and retries. No I/O and no clock of its
 * own: the time and the random share are parameters, so tests can drive
 * every case.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tokend.h"

/* A token is never refreshed sooner than this after it was obtained. */
#define SCHEDULE_FLOOR_MS	(1 * MSEC_PER_SEC)
#define SCHEDULE_RND_MAX	(1.0 - 0x1.0p-53)	/* rng_unit()'s largest */

/* Retry-After values beyond this many seconds (three years) are cut. */
#define RETRY_AFTER_CLAMP_S	100000000

/*
 * How early a token of `lifetime` ms may be refreshed: half its life, so
 * that no value a user did not choose for it asks more often than once
 * per half lifetime. A ratio below one half is such a choice: then
 * ratio * lifetime. Never under SCHEDULE_FLOOR_MS.
 */
static int64_t
schedule_floor(const struct refresh_conf *rc, int64_t lifetime)
{
	int64_t	 floor;

	floor = rc->ratio < 0.5 ? (int64_t)(rc->ratio * (double)lifetime) :
	    lifetime / 2;
	return floor > SCHEDULE_FLOOR_MS ? floor : SCHEDULE_FLOOR_MS;
}

/*
 * When to refresh a token obtained at `obtained` (wall ms) that expires at
 * `expires_at`: at min(ratio * L, L - margin) into its lifetime L, moved
 * earlier by rnd * jitter * L, never before the floor (schedule_floor:
 * jitter included). When the margin alone falls before the floor, the
 * jitter spreads after the floor instead. A larger rnd never gives a later
 * time. 0: never.
 */
int64_t
schedule_refresh_at(const struct refresh_conf *rc, int64_t obtained,
    int64_t expires_at, double rnd)
{
	int64_t	 lifetime, by_ratio, by_margin, due, floor;

	if (expires_at == 0)
		return 0;
	lifetime = expires_at - obtained;
	if (lifetime <= SCHEDULE_FLOOR_MS)
		return obtained + (lifetime > 0 ? lifetime : 0);
	by_ratio = (int64_t)(rc->ratio * (double)lifetime);
	by_margin = lifetime - rc->margin;
	floor = schedule_floor(rc, lifetime);
	if (by_margin < floor && by_ratio > floor) {
		/*
		 * The margin is cut: spread after the floor instead, up to
		 * jitter * L later but no later than ratio * L, so that
		 * accounts whose short tokens arrived together do not all
		 * come back together at exactly half their life.
		 */
		due = obtained + floor +
		    (int64_t)((1.0 - rnd) * rc->jitter * (double)lifetime);
		return due < obtained + by_ratio ? due : obtained + by_ratio;
	}
	due = obtained + (by_ratio < by_margin ? by_ratio : by_margin);
	due -= (int64_t)(rnd * rc->jitter * (double)lifetime);
	if (due < obtained + floor)
		due = obtained + floor;
	return due;
}

/*
 * Whether `due` is a refresh time schedule_refresh_at could have drawn for
 * this token with these [refresh] values (with any rnd in [0, 1)).
 */
int
schedule_refresh_at_allowed(const struct refresh_conf *rc, int64_t obtained,
    int64_t expires_at, int64_t due)
{
	if (expires_at == 0)
		return due == 0;
	/*
	 * A larger rnd never gives a later time. The state file keeps
	 * obtained_at and expires_at to the second: a second either way.
	 */
	return due >= schedule_refresh_at(rc, obtained, expires_at,
	    SCHEDULE_RND_MAX) - MSEC_PER_SEC &&
	    due <= schedule_refresh_at(rc, obtained, expires_at, 0.0) +
	    MSEC_PER_SEC;
}

/*
 * Whether `margin` is cut for a token of `lifetime` ms: L - margin falls
 * before the floor, so the refresh comes later than the margin asks.
 * The delay after which the token is refreshed instead (ms), or 0 when
 * the margin applies as set.
 */
int64_t
schedule_margin_cut(const struct refresh_conf *rc, int64_t lifetime)
{
	int64_t	 floor;

	if (lifetime <= SCHEDULE_FLOOR_MS)
		return 0;
	floor = schedule_floor(rc, lifetime);
	return lifetime - rc->margin < floor ? floor : 0;
}

/*
 * The delay before retry after the n-th failure in a row (n >= 1): uniform
 * in [lo, hi] where hi = min(max_backoff, min_backoff * 2^n) and
 * lo = max(min_backoff, hi / 2). The first retry comes between one and two
 * min_backoff, each later one about twice as late, spread so that accounts
 * that failed together do not retry together.
 */
int64_t
schedule_backoff(const struct refresh_conf *rc, int n, double rnd)
{
	int64_t	 hi = rc->min_backoff, lo, span;
	int	 i;

	/* doubling saturates at max_backoff: never past INT64_MAX */
	for (i = 0; i < n && hi < rc->max_backoff; i++)
		hi = hi > rc->max_backoff / 2 ? rc->max_backoff : hi * 2;
	if (hi > rc->max_backoff)
		hi = rc->max_backoff;
	lo = hi / 2;
	if (lo < rc->min_backoff)
		lo = rc->min_backoff;
	if (lo > hi)
		lo = hi;
	/* the double may round up past hi - lo (which is at most hi / 2) */
	span = (int64_t)(rnd * (double)(hi - lo));
	return lo + (span < hi - lo ? span : hi - lo);
}

static int
schedule_parse_http_date(const char *s, time_t *out)
{
	static const char *const formats[] = {
		"%a, %d %b %Y %H:%M:%S GMT",	/* IMF-fixdate */
		"%A, %d-%b-%y %H:%M:%S GMT",	/* obsolete RFC 850 */
		"%a %b %e %H:%M:%S %Y",		/* asctime */
		NULL
	};
	struct tm	 tm;
	const char	*end;
	int		 i;

	for (i = 0; formats[i] != NULL; i++) {
		memset(&tm, 0, sizeof tm);
		end = strptime(s, formats[i], &tm);
		/* strptime takes "31 Feb" and timegm makes it 3 March */
		if (end != NULL && *end == '\0' && date_valid(tm.tm_year +
		    1900, tm.tm_mon + 1, tm.tm_mday)) {
			*out = timegm(&tm);
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * A Retry-After value (RFC 9110 10.2.3: delay-seconds or HTTP-date) as a
 * delay in milliseconds from `now` (wall ms); past dates give 0, and nothing
 * is longer than RETRY_AFTER_CLAMP_S. -1 when the value is absent or
 * malformed, so that plain backoff applies.
 */
int64_t
schedule_retry_after(const char *value, int64_t now)
{
	const char	*p;
	int64_t		 v = 0;
	time_t		 t;

	if (value == NULL)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value >= '0' && *value <= '9') {
		/* clamp at years, without overflow */
		for (p = value; *p >= '0' && *p <= '9'; p++)
			if (v <= RETRY_AFTER_CLAMP_S)
				v = v * 10 + (*p - '0');
		if (v > RETRY_AFTER_CLAMP_S)
			v = RETRY_AFTER_CLAMP_S;
		while (*p == ' ' || *p == '\t')
			p++;
		return *p == '\0' ? v * MSEC_PER_SEC : -1;
	}
	if (schedule_parse_http_date(value, &t) != 0)
		return -1;
	v = (int64_t)t - now / 1000;
	if (v > RETRY_AFTER_CLAMP_S)
		v = RETRY_AFTER_CLAMP_S;
	return v > 0 ? v * MSEC_PER_SEC : 0;
}
