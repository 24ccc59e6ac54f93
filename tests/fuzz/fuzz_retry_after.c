/*
 * libFuzzer target: Retry-After values (delay-seconds and the three
 * HTTP-date forms) and RFC 3339 times.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

#define NOW	1795449600000LL		/* 2026-11-23, wall ms */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;
	int64_t	 v, t;

	s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	v = schedule_retry_after(s, NOW);
	/* -1 (use backoff) or a delay in ms within the clamp, never negative */
	if (v < -1 || v > 100000000LL * 1000 || (v > 0 && v % 1000 != 0))
		__builtin_trap();
	if (parse_rfc3339(s, &t) == 0 && (t % 1000) != 0)
		__builtin_trap();
	free(s);
	return 0;
}
