/*
 * libFuzzer target: a token endpoint's answer through the JSON pointers of
 * an RFC 6749 account and of a Spotinst-style envelope, and the JWT exp
 * fallback. The first byte picks the HTTP status.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"
#include "fuzz.h"

#define NOW	1795449600000LL		/* 2026-11-23, wall ms */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct account_conf	 rfc, spot;

static void
setup(void)
{
	static int	 done;

	if (done)
		return;
	done = 1;
	rfc.name = "rfc";
	rfc.response.access_token = "/access_token";
	rfc.response.refresh_token = "/refresh_token";
	rfc.response.expires_in = "/expires_in";
	rfc.response.token_type = "/token_type";
	rfc.response.default_lifetime = 3600 * 1000;
	spot.name = "spot";
	spot.response.access_token = "/response/items/0/accessToken";
	spot.response.refresh_token = "/response/items/0/refreshToken";
	spot.response.expires_in = "/response/items/0/expiresIn";
	spot.response.expires_at = "/response/items/0/expiresAt";
	spot.response.default_lifetime = 7199 * 1000;
}

static void
check(const struct account_conf *ac, long status, const char *body,
    size_t len)
{
	struct oauth_result	 res;
	struct token		 t;

	/* the grant changes how errors read, never what a token is */
	if (oauth_response_parse(ac, len > 0 && (body[0] & 1) ?
	    GRANT_REFRESH_TOKEN : GRANT_CLIENT_CREDENTIALS, "fuzz-rt", status,
	    body, len, NOW, &t, &res) == 0) {
		/* a usable token, or nothing at all */
		if (res.outcome != OAUTH_OK || t.access_token == NULL ||
		    !str_is_printable(t.access_token) ||
		    t.expires_at <= NOW || t.token_type == NULL)
			__builtin_trap();
		oauth_token_clear(&t);
	} else if (res.outcome == OAUTH_OK ||
	    memchr(res.error, '\0', sizeof res.error) == NULL ||
	    !text_is_ascii(res.error) || strstr(res.error, "fuzz-rt"))
		/* an error is a C string of printable ASCII without the
		   refresh token sent */
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 200, 201, 400, 401, 403, 429,
	    500, 503, 302 };
	char	*body;
	long	 status;

	setup();
	if (size == 0)
		return 0;
	status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
	body = malloc(size);
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	check(&rfc, status, body, size - 1);
	check(&spot, status, body, size - 1);
	(void)oauth_jwt_exp(body);
	free(body);
	return 0;
}
