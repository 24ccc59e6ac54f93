/*
 * libFuzzer target: the bytes of a client_key_file through jws_key_load,
 * and of a service_account_file through jws_service_account_parse and
 * then its private_key through jws_key_load, as config.c reads them. A
 * key that loads gives its RFC 7638 fingerprint and signs a small JWS
 * with every algorithm. Each outcome is a key or a printable cause, never
 * both, never neither; everything is freed (LeakSanitizer watches).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"
#include "fuzz.h"

#define FUZZ_HEADER	"{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define FUZZ_PAYLOAD	"{\"iss\":\"c\",\"jti\":\"j\",\"exp\":1}"
#define FUZZ_THUMB_LEN	43	/* base64url of a SHA-256, unpadded */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
cause_ok(const char *cause)
{
	return cause != NULL && text_is_ascii(cause) && strlen(cause) <= 1024;
}

static int
b64url_ok(const char *s)
{
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789-_") == strlen(s);
}

/* What a loaded key can be asked: its fingerprint, and a signature. */
static void
use_key(const struct jws_key *key, const char *input)
{
	enum jws_alg	 alg;
	char		*fp, *jws, *cause;
	size_t		 n = strlen(input);

	fp = jws_key_fingerprint(key);
	if (fp != NULL && (strlen(fp) != FUZZ_THUMB_LEN || !b64url_ok(fp)))
		__builtin_trap();
	free(fp);
	for (alg = JWS_RS256; alg <= JWS_HS256; alg++) {
		cause = NULL;
		jws = jws_sign(key, alg, FUZZ_HEADER, FUZZ_PAYLOAD);
		if (jws_key_alg_ok(key, alg, &cause) != 0) {
			/* a key never signs what it does not fit */
			if (!cause_ok(cause) || jws != NULL)
				__builtin_trap();
			free(cause);
		} else if (cause != NULL)
			__builtin_trap();
		/* OpenSSL may refuse a key that parsed but is not sound */
		if (jws == NULL)
			continue;
		if (strncmp(jws, input, n) != 0 || jws[n] != '.' ||
		    jws[n + 1] == '\0' || !b64url_ok(jws + n + 1))
			__builtin_trap();
		free(jws);
	}
}

static void
load_key(const char *pem, size_t len, const char *input)
{
	struct jws_key	*key = NULL;
	char		*cause = NULL;

	if (jws_key_load(pem, len, &key, &cause) == 0) {
		if (key == NULL || cause != NULL)
			__builtin_trap();
		use_key(key, input);
		jws_key_free(key);
	} else if (key != NULL || !cause_ok(cause))
		__builtin_trap();
	free(cause);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct service_account	 sa;
	char			*cause = NULL, *h, *p, *input;

	h = oauth_base64url((const unsigned char *)FUZZ_HEADER,
	    strlen(FUZZ_HEADER));
	p = oauth_base64url((const unsigned char *)FUZZ_PAYLOAD,
	    strlen(FUZZ_PAYLOAD));
	xasprintf(&input, "%s.%s", h, p);
	free(h);
	free(p);

	load_key((const char *)data, size, input);
	if (jws_service_account_parse((const char *)data, size, &sa,
	    &cause) == 0) {
		if (cause != NULL || sa.client_email == NULL ||
		    *sa.client_email == '\0' || sa.private_key == NULL ||
		    *sa.private_key == '\0')
			__builtin_trap();
		load_key(sa.private_key, strlen(sa.private_key), input);
		jws_service_account_clear(&sa);
	} else if (!cause_ok(cause) || sa.client_email != NULL ||
	    sa.private_key != NULL)
		__builtin_trap();
	free(cause);
	free(input);
	return 0;
}
