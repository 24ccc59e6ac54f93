/*
 * Unit tests for login.c's pure half: PKCE (RFC 7636 appendix B), the
 * random verifier and state, the device authorization answer (RFC 8628
 * 3.2), and the redirect's query (RFC 6749 4.1.2).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "tokend.h"
#include "unit.h"

static void
test_pkce_rfc7636_vector(void **state)
{
	/* appendix B: the octets, their base64url, and its S256 challenge */
	static const unsigned char octets[32] = {
		116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216,
		173, 187, 186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5,
		88, 83, 132, 141, 121
	};
	char	*v, *c;

	(void)state;
	v = oauth_base64url(octets, sizeof octets);
	CHECK_STR("verifier", v, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
	c = login_pkce_challenge(v);
	CHECK_STR("challenge", c, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	free(v);
	free(c);
}

static void
test_base64url_padding(void **state)
{
	static const struct {
		const char	*in, *out;
	} cases[] = {
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "\xfb\xff", "-_8" }, { "\xff\xfe\xfd", "__79" },
	};
	size_t	 i;
	char	*s;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		s = oauth_base64url((const unsigned char *)cases[i].in,
		    strlen(cases[i].in));
		CHECK_STR(cases[i].in, s, cases[i].out);
		free(s);
	}
}

/* 32 random bytes: 43 unreserved characters, different each time */
static void
test_random_verifier(void **state)
{
	char	*a, *b;
	size_t	 i;

	(void)state;
	assert_int_equal(login_random(32, &a), 0);
	assert_int_equal(login_random(32, &b), 0);
	CHECK_I64("length", strlen(a), 43);
	for (i = 0; a[i] != '\0'; i++)
		if (!((a[i] >= 'A' && a[i] <= 'Z') || (a[i] >= 'a' &&
		    a[i] <= 'z') || (a[i] >= '0' && a[i] <= '9') ||
		    a[i] == '-' || a[i] == '_'))
			fail_msg("not unreserved: %c", a[i]);
	if (!strcmp(a, b))
		fail_msg("two random verifiers are equal");
	free(a);
	free(b);
	assert_int_equal(login_random(65, &a), -EINVAL);
}

static void
test_device_parse_ok(void **state)
{
	static const char body[] = "{\"device_code\":\"GmRhmhcxhwAzkoEqiMEg_"
	    "DnyEysNkuNhszIySk9eS\",\"user_code\":\"WDJB-MJHT\","
	    "\"verification_uri\":\"https://example.com/device\","
	    "\"verification_uri_complete\":\"https://example.com/device?"
	    "user_code=WDJB-MJHT\",\"expires_in\":1800,\"interval\":7}";
	struct login_device	 d;
	char			*cause = NULL;

	(void)state;
	assert_int_equal(login_device_parse(body, strlen(body), &d, &cause),
	    0);
	CHECK_STR("device_code", d.device_code,
	    "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS");
	CHECK_STR("user_code", d.user_code, "WDJB-MJHT");
	CHECK_STR("uri", d.verification_uri, "https://example.com/device");
	CHECK_STR("complete", d.verification_uri_complete,
	    "https://example.com/device?user_code=WDJB-MJHT");
	CHECK_I64("expires_in", d.expires_in_s, 1800);
	CHECK_I64("interval", d.interval_s, 7);
	login_device_clear(&d);
}

/* no interval: 5 s (RFC 8628 3.2); Google's verification_url */
static void
test_device_parse_defaults(void **state)
{
	static const char body[] = "{\"device_code\":\"dc\",\"user_code\":"
	    "\"AB\",\"verification_url\":\"https://www.google.com/device\","
	    "\"expires_in\":\"600\"}";
	struct login_device	 d;
	char			*cause = NULL;

	(void)state;
	assert_int_equal(login_device_parse(body, strlen(body), &d, &cause),
	    0);
	CHECK_STR("uri", d.verification_uri, "https://www.google.com/device");
	CHECK_STR("complete", d.verification_uri_complete, NULL);
	CHECK_I64("expires_in", d.expires_in_s, 600);
	CHECK_I64("interval", d.interval_s, 5);
	login_device_clear(&d);
}

static void
test_device_parse_bad(void **state)
{
	static const struct {
		const char	*body, *why;
	} cases[] = {
		{ "", "not valid JSON" },
		{ "[]", "not a JSON object" },
		{ "{\"user_code\":\"A\",\"verification_uri\":\"https://x\","
		    "\"expires_in\":5}", "no usable device_code" },
		{ "{\"device_code\":7,\"user_code\":\"A\",\"verification_uri\":"
		    "\"https://x\",\"expires_in\":5}", "no usable device_code" },
		{ "{\"device_code\":\"d\",\"verification_uri\":\"https://x\","
		    "\"expires_in\":5}", "no usable user_code" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\\u001b[2J\","
		    "\"verification_uri\":\"https://x\",\"expires_in\":5}",
		    "no usable user_code" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\","
		    "\"expires_in\":5}", "no usable verification_uri" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":"
		    "\"javascript:alert(1)\",\"expires_in\":5}",
		    "no usable verification_uri" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":"
		    "\"https://x\",\"verification_uri_complete\":\"file:///etc\","
		    "\"expires_in\":5}", "verification_uri_complete is not an "
		    "http(s) URI" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":"
		    "\"https://x\"}", "expires_in is not a positive number of "
		    "seconds" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":"
		    "\"https://x\",\"expires_in\":0}", "expires_in is not a "
		    "positive number of seconds" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":"
		    "\"https://x\",\"expires_in\":\"60s\"}", "expires_in is not "
		    "a positive number of seconds" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":"
		    "\"https://x\",\"expires_in\":60,\"interval\":-1}",
		    "interval is not a number of seconds" },
		{ "{\"device_code\":\"d\",\"user_code\":\"A\",\"verification_uri\":"
		    "\"https://x\",\"expires_in\":60,\"interval\":\"x\"}",
		    "interval is not a number of seconds" },
		{ "{\"device_code\":\"d\"} x", "not valid JSON" },
	};
	struct login_device	 d;
	char			*cause, want[256];
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cause = NULL;
		memset(&d, 0, sizeof d);
		if (login_device_parse(cases[i].body, strlen(cases[i].body), &d,
		    &cause) != -1)
			fail_msg("accepted: %s", cases[i].body);
		snprintf(want, sizeof want, "malformed device authorization "
		    "answer: %s", cases[i].why);
		CHECK_STR(cases[i].body, cause, want);
		/* the device code never shows in an error */
		if (strstr(cause, "\"d\"") != NULL)
			fail_msg("value in the error: %s", cause);
		CHECK_STR("cleared", d.device_code, NULL);
		free(cause);
	}
}

static void
test_redirect_parse(void **state)
{
	static const struct {
		const char			*query;
		enum login_redirect_verdict	 verdict;
		const char			*code, *error;
	} cases[] = {
		{ "code=SplxlOBeZQQYbYS6WxSbIA&state=xyz",
		    LOGIN_REDIRECT_CODE, "SplxlOBeZQQYbYS6WxSbIA", NULL },
		{ "state=xyz&code=a%2Fb%3D&iss=https%3A%2F%2Fop",
		    LOGIN_REDIRECT_CODE, "a/b=", NULL },
		{ "code=a+b&state=xyz", LOGIN_REDIRECT_CODE, "a b", NULL },
		{ "&&code=c&state=xyz&", LOGIN_REDIRECT_CODE, "c", NULL },
		{ "error=access_denied&error_description=no+way&state=xyz",
		    LOGIN_REDIRECT_ERROR, NULL, "access_denied" },
		{ "error=access_denied&code=c&state=xyz",
		    LOGIN_REDIRECT_ERROR, NULL, "access_denied" },
		{ "code=c&state=xyy", LOGIN_REDIRECT_BAD_STATE, NULL, NULL },
		{ "code=c&state=xy", LOGIN_REDIRECT_BAD_STATE, NULL, NULL },
		{ "code=c&state=xyzz", LOGIN_REDIRECT_BAD_STATE, NULL, NULL },
		{ "code=c", LOGIN_REDIRECT_BAD_STATE, NULL, NULL },
		{ "code=c&state=", LOGIN_REDIRECT_BAD_STATE, NULL, NULL },
		{ "error=access_denied", LOGIN_REDIRECT_BAD_STATE, NULL, NULL },
		{ "state=xyz", LOGIN_REDIRECT_MALFORMED, NULL, NULL },
		{ "code=&state=xyz", LOGIN_REDIRECT_MALFORMED, NULL, NULL },
		{ "code=a&code=b&state=xyz", LOGIN_REDIRECT_MALFORMED, NULL,
		    NULL },
		{ "code=a&state=xyz&state=xyz", LOGIN_REDIRECT_MALFORMED, NULL,
		    NULL },
		{ "code=a%2&state=xyz", LOGIN_REDIRECT_MALFORMED, NULL, NULL },
		{ "code=a%zz&state=xyz", LOGIN_REDIRECT_MALFORMED, NULL, NULL },
		{ "code=a%00b&state=xyz", LOGIN_REDIRECT_MALFORMED, NULL, NULL },
		{ "code=a%0a&state=xyz", LOGIN_REDIRECT_MALFORMED, NULL, NULL },
		{ "code=c&state=xyz%", LOGIN_REDIRECT_MALFORMED, NULL, NULL },
	};
	struct login_redirect	 r;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK_I64(cases[i].query, login_redirect_parse(cases[i].query,
		    "xyz", &r), cases[i].verdict);
		CHECK_STR(cases[i].query, r.code, cases[i].code);
		CHECK_STR(cases[i].query, r.error, cases[i].error);
		login_redirect_clear(&r);
	}
	CHECK_I64("NULL query", login_redirect_parse(NULL, "xyz", &r),
	    LOGIN_REDIRECT_MALFORMED);
	assert_int_equal(login_redirect_parse("error=x&error_description="
	    "said+so&state=xyz", "xyz", &r), LOGIN_REDIRECT_ERROR);
	CHECK_STR("description", r.error_description, "said so");
	login_redirect_clear(&r);
}

static void
test_redirect_uri_parse(void **state)
{
	static const struct {
		const char	*uri, *host, *path;
		int		 port;
	} ok[] = {
		{ "http://127.0.0.1:8976/callback", "127.0.0.1", "/callback",
		    8976 },
		{ "http://127.0.0.1:0/cb", "127.0.0.1", "/cb", 0 },
		{ "http://127.0.0.1/", "127.0.0.1", "/", 0 },
		{ "http://127.0.0.1:9", "127.0.0.1", "/", 9 },
		{ "http://[::1]:8080/x/y", "::1", "/x/y", 8080 },
	};
	static const char *const bad[] = {
		"https://127.0.0.1:1/cb", "http://localhost:1/cb",
		"http://10.0.0.1:1/cb", "127.0.0.1:1", "",
	};
	char	*host, *path, *cause;
	int	 port;
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		assert_int_equal(redirect_uri_parse(ok[i].uri, &host, &port,
		    &path, &cause), 0);
		CHECK_STR(ok[i].uri, host, ok[i].host);
		CHECK_STR(ok[i].uri, path, ok[i].path);
		CHECK_I64(ok[i].uri, port, ok[i].port);
		free(host);
		free(path);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = NULL;
		if (redirect_uri_parse(bad[i], &host, &port, &path,
		    &cause) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(cause);
		free(cause);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkce_rfc7636_vector),
		cmocka_unit_test(test_base64url_padding),
		cmocka_unit_test(test_random_verifier),
		cmocka_unit_test(test_device_parse_ok),
		cmocka_unit_test(test_device_parse_defaults),
		cmocka_unit_test(test_device_parse_bad),
		cmocka_unit_test(test_redirect_parse),
		cmocka_unit_test(test_redirect_uri_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
