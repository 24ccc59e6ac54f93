/*
 * libFuzzer target: a device authorization answer (RFC 8628 3.2), and
 * the query of a request to the redirect URI against a fixed state.
 * The first byte picks which.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

#define DEVICE_CAUSE	"malformed device authorization answer: "

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_printable(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct login_device	 d;
	struct login_redirect	 r;
	char			*s, *cause = NULL;

	if (len == 0)
		return 0;
	if ((s = malloc(len)) == NULL)
		return 0;
	memcpy(s, data + 1, len - 1);
	s[len - 1] = '\0';
	if (data[0] & 1) {
		switch (login_redirect_parse(s, "fuzz-state", &r)) {
		case LOGIN_REDIRECT_CODE:
			if (r.code == NULL || r.code[0] == '\0' ||
			    strcmp(r.state, "fuzz-state") != 0)
				abort();
			break;
		case LOGIN_REDIRECT_ERROR:
			if (r.error == NULL || r.code != NULL)
				abort();
			break;
		default:
			if (r.code != NULL || r.error != NULL)
				abort();
			break;
		}
		check_printable(r.code);
		check_printable(r.error);
		check_printable(r.error_description);
		login_redirect_clear(&r);
	} else if (login_device_parse(s, len - 1, &d, &cause) == 0) {
		if (d.device_code == NULL || d.user_code == NULL ||
		    d.verification_uri == NULL || d.expires_in_s <= 0 ||
		    d.interval_s <= 0)
			abort();
		check_printable(d.user_code);
		check_printable(d.verification_uri);
		check_printable(d.verification_uri_complete);
		login_device_clear(&d);
	} else {
		if (cause == NULL || strncmp(cause, DEVICE_CAUSE,
		    sizeof DEVICE_CAUSE - 1) != 0)
			abort();
		free(cause);
	}
	free(s);
	return 0;
}
