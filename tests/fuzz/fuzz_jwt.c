/*
 * libFuzzer target: the exp claim of a JWT access token (oauth_jwt_exp),
 * the lifetime of last resort. The first byte picks the form of the rest:
 * even, it is the token as the endpoint sent it; odd, it is the payload's
 * JSON, which the target base64-encodes between a header and a signature,
 * so that the fuzzer reaches the JSON and the number conversion at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int64_t
check(const char *token)
{
	int64_t	 exp = oauth_jwt_exp(token);

	/* 0 (no usable exp) or whole seconds in ms, never negative or
	 * wrapped: past what ms hold it stops at the largest */
	if (exp < 0 || exp % 1000 != 0 || exp > INT64_MAX / 1000 * 1000)
		__builtin_trap();
	/* a token with no dot is no JWT */
	if (exp != 0 && strchr(token, '.') == NULL)
		__builtin_trap();
	return exp;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s, *b64, *token;
	size_t	 n;
	int64_t	 padded;

	if (size == 0)
		return 0;
	s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if ((data[0] & 1) == 0)
		check(s);
	else {
		/* the payload as it is, NUL bytes and all */
		b64 = oauth_base64((const unsigned char *)data + 1, size - 1);
		xasprintf(&token, "eyJhbGciOiJub25lIn0.%s.c2ln", b64);
		padded = check(token);
		free(token);
		/* without the padding, as JWTs are sent, it reads the same */
		for (n = strlen(b64); n > 0 && b64[n - 1] == '='; n--)
			b64[n - 1] = '\0';
		xasprintf(&token, "eyJhbGciOiJub25lIn0.%s.c2ln", b64);
		if (check(token) != padded)
			__builtin_trap();
		free(token);
		free(b64);
	}
	free(s);
	return 0;
}
