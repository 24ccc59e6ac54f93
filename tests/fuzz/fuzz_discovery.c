/*
 * libFuzzer target: an issuer's metadata document (OpenID Connect
 * Discovery / RFC 8414) through discovery_parse, for an issuer with a
 * path and one without, and the client_auth it leads to. What comes back
 * is a usable document or a printable error, never both, never neither.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"
#include "fuzz.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
url_ok(const char *s)
{
	return s == NULL || ((!strncmp(s, "https://", 8) ||
	    !strncmp(s, "http://", 7)) && str_is_printable(s));
}

static void
check(const char *issuer, const char *body, size_t len, int secret)
{
	struct account_conf	 ac;
	struct discovery_doc	 doc;
	char			*cause = NULL;
	enum client_auth	 auth;

	if (discovery_parse(issuer, body, len, &doc, &cause) == 0) {
		if (cause != NULL || doc.issuer == NULL ||
		    strcmp(doc.issuer, issuer) != 0 ||
		    doc.token_endpoint == NULL || !url_ok(doc.token_endpoint) ||
		    !url_ok(doc.authorization_endpoint) ||
		    !url_ok(doc.device_authorization_endpoint) ||
		    !url_ok(doc.revocation_endpoint) ||
		    (doc.s256 && !doc.pkce_listed))
			__builtin_trap();
		memset(&ac, 0, sizeof ac);
		ac.client_secret = secret ? "s" : NULL;
		ac.client_auth = secret ? CLIENT_AUTH_BASIC : CLIENT_AUTH_NONE;
		auth = discovery_client_auth(&ac, &doc);
		/* never a secret-based method without a secret */
		if (!secret && auth != CLIENT_AUTH_NONE)
			__builtin_trap();
		discovery_doc_clear(&doc);
	} else if (cause == NULL || !text_is_ascii(cause) ||
	    strlen(cause) > 1024)
		__builtin_trap();
	free(cause);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*body;

	if (size == 0)
		return 0;
	body = malloc(size);
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	check("https://op.example", body, size - 1, data[0] & 1);
	check("https://op.example/tenant/v2.0", body, size - 1, data[0] & 2);
	free(body);
	return 0;
}
