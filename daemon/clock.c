/*
 * The two clocks tokend reads: the wall clock (token expiry, files, the
 * state file) and CLOCK_BOOTTIME (deadlines, which must count suspend).
 * Their own file, so that unit tests can link a fake clock in its place.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <time.h>

#include "tokend.h"

static int64_t
clock_ms(clockid_t id)
{
	struct timespec	 ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int64_t
clock_boot_ms(void)
{
	return clock_ms(CLOCK_BOOTTIME);
}
