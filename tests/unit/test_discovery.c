/*
 * Unit tests for discovery.c: where the documents are (OIDC appends,
 * RFC 8414 3.1 inserts), the parse of a document with its issuer check,
 * and the client_auth a document leads to.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"
#include "unit.h"

static void
test_discovery_url(void **state)
{
	static const struct {
		const char	*issuer;
		const char	*oidc;
		const char	*rfc8414;
	} cases[] = {
		{ "https://op.example",
		    "https://op.example/.well-known/openid-configuration",
		    "https://op.example/.well-known/oauth-authorization-server" },
		{ "https://op.example/",
		    "https://op.example/.well-known/openid-configuration",
		    "https://op.example/.well-known/oauth-authorization-server" },
		{ "https://op.example:8443/tenant/v2.0",
		    "https://op.example:8443/tenant/v2.0/.well-known/"
		    "openid-configuration",
		    "https://op.example:8443/.well-known/"
		    "oauth-authorization-server/tenant/v2.0" },
		{ "https://op.example/realms/x/",
		    "https://op.example/realms/x/.well-known/"
		    "openid-configuration",
		    "https://op.example/.well-known/"
		    "oauth-authorization-server/realms/x" },
	};
	size_t	 i;
	char	*u;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		u = discovery_url(cases[i].issuer, 0);
		CHECK_STR(cases[i].issuer, u, cases[i].oidc);
		free(u);
		u = discovery_url(cases[i].issuer, 1);
		CHECK_STR(cases[i].issuer, u, cases[i].rfc8414);
		free(u);
	}
}

#define ISS	"https://op.example"
#define TOKEN	"\"token_endpoint\":\"https://op.example/token\""

static void
test_discovery_parse(void **state)
{
	struct discovery_doc	 d;
	char			*cause;
	const char		*body = "{\"issuer\":\"" ISS "\"," TOKEN ","
	    "\"authorization_endpoint\":\"https://op.example/auth\","
	    "\"device_authorization_endpoint\":\"https://op.example/dev\","
	    "\"revocation_endpoint\":\"https://op.example/revoke\","
	    "\"mtls_endpoint_aliases\":{\"token_endpoint\":"
	    "\"https://mtls.op.example/token\"},"
	    "\"token_endpoint_auth_methods_supported\":[\"private_key_jwt\","
	    "\"client_secret_post\",\"none\"],"
	    "\"code_challenge_methods_supported\":[\"plain\",\"S256\"]}\n";

	(void)state;
	assert_int_equal(discovery_parse(ISS, body, strlen(body), &d, &cause),
	    0);
	CHECK_STR("issuer", d.issuer, ISS);
	CHECK_STR("token", d.token_endpoint, "https://op.example/token");
	CHECK_STR("auth", d.authorization_endpoint, "https://op.example/auth");
	CHECK_STR("device", d.device_authorization_endpoint,
	    "https://op.example/dev");
	CHECK_STR("revoke", d.revocation_endpoint, "https://op.example/revoke");
	CHECK_STR("mtls token", d.mtls_token_endpoint,
	    "https://mtls.op.example/token");
	CHECK_I64("auth methods", d.auth_methods, DISCOVERY_AUTH_POST |
	    DISCOVERY_AUTH_NONE | DISCOVERY_AUTH_PRIVATE_KEY_JWT);
	assert_true(d.pkce_listed);
	assert_true(d.s256);
	discovery_doc_clear(&d);

	/* the least a document may be: RFC 8414 defaults */
	body = "{\"issuer\":\"" ISS "\"," TOKEN "}";
	assert_int_equal(discovery_parse(ISS, body, strlen(body), &d, &cause),
	    0);
	assert_null(d.authorization_endpoint);
	assert_null(d.revocation_endpoint);
	CHECK_I64("absent methods", d.auth_methods, DISCOVERY_AUTH_BASIC);
	assert_false(d.pkce_listed);
	discovery_doc_clear(&d);
}

static void
test_discovery_parse_errors(void **state)
{
	static const struct {
		const char	*body;
		const char	*cause;
	} cases[] = {
		{ "", "the document is not a JSON object" },
		{ "[]", "the document is not a JSON object" },
		{ "{\"issuer\":\"" ISS "\"," TOKEN "} x",
		    "the document is not a JSON object" },
		{ "{" TOKEN "}", "the document has no issuer" },
		{ "{\"issuer\":\"https://op.example/\"," TOKEN "}",
		    "issuer mismatch: configured https://op.example, document "
		    "says https://op.example/" },
		{ "{\"issuer\":\"https://evil.example\\n\"," TOKEN "}",
		    "issuer mismatch: configured https://op.example, document "
		    "says https://evil.example?" },
		{ "{\"issuer\":\"" ISS "\"}", "the document has no "
		    "token_endpoint" },
		{ "{\"issuer\":\"" ISS "\",\"token_endpoint\":1}",
		    "token_endpoint is not a string" },
		{ "{\"issuer\":\"" ISS "\",\"token_endpoint\":\"ftp://x\"}",
		    "token_endpoint is not an http(s) URL" },
		{ "{\"issuer\":\"" ISS "\"," TOKEN ",\"revocation_endpoint\":"
		    "\"https://a b\"}", "revocation_endpoint is not an http(s) "
		    "URL" },
		{ "{\"issuer\":\"" ISS "\"," TOKEN ","
		    "\"token_endpoint_auth_methods_supported\":\"none\"}",
		    "token_endpoint_auth_methods_supported is not an array" },
	};
	struct discovery_doc	 d;
	char			*cause;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cause = NULL;
		if (discovery_parse(ISS, cases[i].body, strlen(cases[i].body),
		    &d, &cause) == 0) {
			discovery_doc_clear(&d);
			fail_msg("%s: parsed", cases[i].body);
		}
		CHECK_STR(cases[i].body, cause, cases[i].cause);
		free(cause);
	}
}

/* The default client_auth from token_endpoint_auth_methods_supported. */
static void
test_discovery_client_auth(void **state)
{
	static const struct {
		int		 secret;
		int		 given;
		int		 methods;
		enum client_auth want;
	} cases[] = {
		{ 0, 0, DISCOVERY_AUTH_BASIC | DISCOVERY_AUTH_NONE,
		    CLIENT_AUTH_NONE },
		{ 0, 0, DISCOVERY_AUTH_BASIC, CLIENT_AUTH_NONE },
		{ 1, 0, DISCOVERY_AUTH_BASIC | DISCOVERY_AUTH_POST,
		    CLIENT_AUTH_BASIC },
		{ 1, 0, DISCOVERY_AUTH_POST | DISCOVERY_AUTH_NONE,
		    CLIENT_AUTH_POST },
		{ 1, 0, DISCOVERY_AUTH_NONE, CLIENT_AUTH_NONE },
		{ 1, 0, 0, CLIENT_AUTH_BASIC },		/* the file's default */
		{ 1, 1, DISCOVERY_AUTH_BASIC, CLIENT_AUTH_POST },	/* given */
	};
	struct account_conf	 ac;
	struct discovery_doc	 d;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&ac, 0, sizeof ac);
		memset(&d, 0, sizeof d);
		ac.client_secret = cases[i].secret ? "s" : NULL;
		ac.client_auth_given = cases[i].given;
		ac.client_auth = cases[i].given ? CLIENT_AUTH_POST :
		    cases[i].secret ? CLIENT_AUTH_BASIC : CLIENT_AUTH_NONE;
		d.auth_methods = cases[i].methods;
		CHECK_I64("client_auth", discovery_client_auth(&ac, &d),
		    cases[i].want);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_discovery_url),
		cmocka_unit_test(test_discovery_parse),
		cmocka_unit_test(test_discovery_parse_errors),
		cmocka_unit_test(test_discovery_client_auth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
