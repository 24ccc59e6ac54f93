/*
 * Unit tests for oauth.c: form encoding, base64, token requests for each
 * grant and client authentication, RFC 6901 pointers, and the parsing of
 * token endpoint answers (RFC 6749 5.1 / 5.2 and provider envelopes).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "tokend.h"
#include "unit.h"

#define SEC		1000LL
#define T0		1700000000000LL		/* 2023-11-14T22:13:20Z */
#define T0S		1700000000LL
#define LIFETIME_MAX_MS	(10LL * 366 * 86400 * 1000)
#define nitems(a)	(sizeof (a) / sizeof (a)[0])

static const char *const outcome_names[] = {
	"OAUTH_OK", "OAUTH_RETRY", "OAUTH_RATE_LIMITED", "OAUTH_INVALID_GRANT",
	"OAUTH_PERMANENT"
};

#define CHECK_OUTCOME(what, got, want) do {				\
	enum oauth_outcome got_ = (got), want_ = (want);		\
	if (got_ != want_)						\
		fail_msg("%s: outcome %s, expected %s", (what),		\
		    outcome_names[got_], outcome_names[want_]);		\
} while (0)

/* ---- oauth_form_encode ---- */

static void
test_form_encode(void **state)
{
	static const struct {
		const char	*in;
		const char	*want;
	} cases[] = {
		{ "", "" },
		{ "abcxyzABCXYZ0189", "abcxyzABCXYZ0189" },
		{ "-._*", "-._*" },		/* kept by WHATWG urlencoded */
		{ "~", "%7E" },			/* WHATWG encodes ~ */
		{ " ", "+" },
		{ "read write", "read+write" },
		{ "  a  ", "++a++" },
		{ ":", "%3A" },
		{ "&", "%26" },
		{ "+", "%2B" },
		{ "%", "%25" },
		{ "/", "%2F" },
		{ "=", "%3D" },
		{ "?#[]@!$'(),;", "%3F%23%5B%5D%40%21%24%27%28%29%2C%3B" },
		{ "\"<>\\^`{|}", "%22%3C%3E%5C%5E%60%7B%7C%7D" },
		{ "a:b&c+d%e/f=g", "a%3Ab%26c%2Bd%25e%2Ff%3Dg" },
		{ "%2B", "%252B" },		/* no double decoding later */
		{ "\t\r\n", "%09%0D%0A" },
		{ "\x01\x7f", "%01%7F" },
		{ "\xc3\xa9", "%C3%A9" },	/* é */
		{ "\xe2\x82\xac", "%E2%82%AC" },	/* € */
		{ "\xf0\x9f\x94\x91", "%F0%9F%94%91" },	/* 🔑 */
		{ "\xff\x80", "%FF%80" },
	};
	char	*out, what[64];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		out = oauth_form_encode(cases[i].in);
		snprintf(what, sizeof what, "form_encode case %zu", i);
		CHECK_STR(what, out, cases[i].want);
		free(out);
	}
}

/* ---- oauth_base64 ---- */

static void
test_base64(void **state)
{
	static const struct {
		const char	*in;
		size_t		 len;
		const char	*want;
	} cases[] = {
		/* RFC 4648 section 10 */
		{ "", 0, "" },
		{ "f", 1, "Zg==" },
		{ "fo", 2, "Zm8=" },
		{ "foo", 3, "Zm9v" },
		{ "foob", 4, "Zm9vYg==" },
		{ "fooba", 5, "Zm9vYmE=" },
		{ "foobar", 6, "Zm9vYmFy" },
		/* the whole alphabet, and bytes that are not text */
		{ "\xfb\xff", 2, "+/8=" },
		{ "\xff\xfe\x00", 3, "//4A" },
		{ "\x00", 1, "AA==" },
		{ "\x00\x00\x00\x00", 4, "AAAAAA==" },
		{ "Aladdin:open sesame", 19, "QWxhZGRpbjpvcGVuIHNlc2FtZQ==" },
	};
	char	*out, what[64];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		out = oauth_base64((const unsigned char *)cases[i].in,
		    cases[i].len);
		snprintf(what, sizeof what, "base64 case %zu", i);
		CHECK_STR(what, out, cases[i].want);
		free(out);
	}
}

/* ---- oauth_request_build ---- */

/* A strict standard base64 decoder of our own, to read the header back. */
static char *
b64_decode(const char *in)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t		 len = strlen(in), i, n = 0;
	uint32_t	 acc = 0;
	int		 bits = 0, pad = 0;
	char		*out, *p;

	if (len % 4 != 0)
		return NULL;
	out = calloc(1, len + 1);
	for (i = 0; i < len; i++) {
		if (in[i] == '=') {
			pad++;
			continue;
		}
		if (pad != 0 || (p = strchr(tab, in[i])) == NULL ||
		    in[i] == '\0') {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (pad > 2) {
		free(out);
		return NULL;
	}
	return out;
}

static void
account_init(struct account_conf *ac)
{
	memset(ac, 0, sizeof *ac);
	ac->name = (char *)"test";
	ac->grant = GRANT_CLIENT_CREDENTIALS;
	ac->token_url = (char *)"https://issuer.example/oauth/token";
	ac->refresh_url = (char *)"https://issuer.example/oauth/refresh";
	ac->client_auth = CLIENT_AUTH_NONE;
	ac->response.access_token = (char *)"/access_token";
	ac->response.refresh_token = (char *)"/refresh_token";
	ac->response.expires_in = (char *)"/expires_in";
	ac->response.token_type = (char *)"/token_type";
	ac->response.default_lifetime = 7200 * SEC;	/* not the 1h default */
	ac->refresh.margin = 300 * SEC;
	ac->refresh.ratio = 0.75;
	ac->refresh.jitter = 0.1;
	ac->refresh.min_backoff = SEC;
	ac->refresh.max_backoff = 300 * SEC;
}

static struct form_param extra_params[] = {
	{ (char *)"extra", (char *)"1" },
	{ (char *)"x_y", (char *)"a b&c" },
};

struct request_case {
	const char		*name;
	enum grant		 grant;
	enum client_auth	 auth;
	const char		*client_id;
	const char		*secret;
	const char		*username;
	const char		*password;
	const char		*refresh_token;
	const char		*scope;
	const char		*audience;
	const char		*resource;
	int			 params;
	int			 want_refresh_url;
	const char		*want_body;
	const char		*want_basic;	/* decoded; NULL: no header */
};

/*
 * id and secret with characters RFC 6749 2.3.1 makes us encode: all but
 * RFC 3986's unreserved ones, a space as %20 (never '+'), '~' as it is
 */
#define NASTY_ID	"my client:1~"
#define NASTY_SECRET	"p@ss: &+%/ w~"
#define NASTY_PAIR	"my%20client%3A1~:p%40ss%3A%20%26%2B%25%2F%20w~"

static const struct request_case request_cases[] = {
	{ "client_credentials, basic", GRANT_CLIENT_CREDENTIALS,
	    CLIENT_AUTH_BASIC, NASTY_ID, NASTY_SECRET, NULL, NULL, NULL,
	    "read write", NULL, NULL, 0, 0,
	    "grant_type=client_credentials&scope=read+write", NASTY_PAIR },
	{ "client_credentials, basic, plain id", GRANT_CLIENT_CREDENTIALS,
	    CLIENT_AUTH_BASIC, "Aladdin", "open sesame", NULL, NULL, NULL,
	    NULL, NULL, NULL, 0, 0,
	    "grant_type=client_credentials", "Aladdin:open%20sesame" },
	{ "client_credentials, post (Spotnana)", GRANT_CLIENT_CREDENTIALS,
	    CLIENT_AUTH_POST, "my-client", "s&cret=1", NULL, NULL, NULL,
	    "read write", "https://api.example", "https://res.example/x", 1,
	    0,
	    "grant_type=client_credentials&client_id=my-client"
	    "&client_secret=s%26cret%3D1&scope=read+write"
	    "&audience=https%3A%2F%2Fapi.example"
	    "&resource=https%3A%2F%2Fres.example%2Fx&extra=1&x_y=a+b%26c",
	    NULL },
	{ "client_credentials, none", GRANT_CLIENT_CREDENTIALS,
	    CLIENT_AUTH_NONE, "public", NULL, NULL, NULL, NULL, NULL, NULL,
	    NULL, 0, 0, "grant_type=client_credentials&client_id=public",
	    NULL },
	{ "client_credentials, none, no client_id", GRANT_CLIENT_CREDENTIALS,
	    CLIENT_AUTH_NONE, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	    0, 0, "grant_type=client_credentials", NULL },
	{ "password, basic (Particle)", GRANT_PASSWORD, CLIENT_AUTH_BASIC,
	    "particle", "particle", "dave@example.com", "pa ss&w=rd", NULL,
	    NULL, NULL, NULL, 0, 0,
	    "grant_type=password&username=dave%40example.com"
	    "&password=pa+ss%26w%3Drd", "particle:particle" },
	{ "password, post (Spotinst)", GRANT_PASSWORD, CLIENT_AUTH_POST,
	    "id", "sec", "u", "p", NULL, "all", NULL, NULL, 0, 0,
	    "grant_type=password&username=u&password=p&client_id=id"
	    "&client_secret=sec&scope=all", NULL },
	{ "password, none", GRANT_PASSWORD, CLIENT_AUTH_NONE, "cli", NULL,
	    "u", "p", NULL, NULL, "aud", NULL, 0, 0,
	    "grant_type=password&username=u&password=p&client_id=cli"
	    "&audience=aud", NULL },
	{ "refresh, post (Spotinst refresh URL)", GRANT_REFRESH_TOKEN,
	    CLIENT_AUTH_POST, "id", "sec", "u", "p", "rt/abc+=", "all", NULL,
	    NULL, 0, 1,
	    "grant_type=refresh_token&refresh_token=rt%2Fabc%2B%3D"
	    "&client_id=id&client_secret=sec", NULL },
	{ "refresh, basic, scope left out", GRANT_REFRESH_TOKEN,
	    CLIENT_AUTH_BASIC, NASTY_ID, NASTY_SECRET, NULL, NULL, "rt1",
	    "read write", "aud", "https://r.example", 1, 1,
	    "grant_type=refresh_token&refresh_token=rt1&audience=aud"
	    "&resource=https%3A%2F%2Fr.example&extra=1&x_y=a+b%26c",
	    NASTY_PAIR },
	{ "refresh, none", GRANT_REFRESH_TOKEN, CLIENT_AUTH_NONE, "cli",
	    NULL, NULL, NULL, "rt1", "s", NULL, NULL, 0, 1,
	    "grant_type=refresh_token&refresh_token=rt1&client_id=cli", NULL },
};

static void
test_request_build_table(void **state)
{
	const struct request_case	*c;
	struct account_conf		 ac;
	struct oauth_request		 req;
	char				*cause = NULL, *pair, what[128];
	size_t				 i;

	(void)state;
	for (i = 0; i < sizeof request_cases / sizeof request_cases[0]; i++) {
		c = &request_cases[i];
		account_init(&ac);
		ac.grant = c->grant == GRANT_REFRESH_TOKEN ? GRANT_PASSWORD :
		    c->grant;
		ac.client_auth = c->auth;
		ac.client_id = (char *)c->client_id;
		ac.client_secret = (char *)c->secret;
		ac.username = (char *)c->username;
		ac.password = (char *)c->password;
		ac.scope = (char *)c->scope;
		ac.audience = (char *)c->audience;
		ac.resource = (char *)c->resource;
		if (c->params) {
			ac.params = extra_params;
			ac.nparams = 2;
		}
		if (oauth_request_build(&ac, c->grant, c->refresh_token, 0, &req,
		    &cause) != 0)
			fail_msg("%s: failed: %s", c->name, cause);
		snprintf(what, sizeof what, "%s: body", c->name);
		CHECK_STR(what, req.body, c->want_body);
		snprintf(what, sizeof what, "%s: url", c->name);
		CHECK_STR(what, req.url, c->want_refresh_url ?
		    ac.refresh_url : ac.token_url);
		if (req.url != (c->want_refresh_url ? ac.refresh_url :
		    ac.token_url))
			fail_msg("%s: url is not the conf's own", c->name);
		snprintf(what, sizeof what, "%s: authorization", c->name);
		if (c->want_basic == NULL)
			CHECK_STR(what, req.authorization, NULL);
		else {
			if (req.authorization == NULL ||
			    strncmp(req.authorization, "Basic ", 6) != 0)
				fail_msg("%s: '%s' is not Basic", what,
				    req.authorization ? req.authorization :
				    "(null)");
			pair = b64_decode(req.authorization + 6);
			CHECK_STR(what, pair, c->want_basic);
			free(pair);
			/* the secret travels in the header only */
			if (strstr(req.body, "client_secret") != NULL ||
			    strstr(req.body, "client_id") != NULL)
				fail_msg("%s: client credentials in the body "
				    "too", c->name);
		}
		oauth_request_clear(&req);
		if (req.body != NULL || req.authorization != NULL ||
		    req.url != NULL)
			fail_msg("%s: oauth_request_clear left data", c->name);
	}
}

static void
test_request_build_errors(void **state)
{
	struct account_conf	 ac;
	struct oauth_request	 req;
	char			*cause = NULL;

	(void)state;
	account_init(&ac);
	ac.grant = GRANT_REFRESH_TOKEN;
	assert_int_equal(oauth_request_build(&ac, GRANT_REFRESH_TOKEN, NULL, 0,
	    &req, &cause), -1);
	assert_non_null(cause);
	assert_null(req.body);
	assert_null(req.authorization);
	free(cause);
	cause = NULL;

	ac.grant = GRANT_STATIC;
	ac.static_token = (char *)"tok";
	assert_int_equal(oauth_request_build(&ac, GRANT_STATIC, NULL, 0, &req,
	    &cause), -1);
	assert_non_null(cause);
	assert_null(req.body);
	free(cause);
}

/* ---- signed assertions (RFC 7523) ---- */

/* A key of `type` ("EC", "RSA", "ED25519") made now, loaded by jws.c. */
static struct jws_key *
assertion_key(const char *type, EVP_PKEY **pub)
{
	struct jws_key	*key = NULL;
	EVP_PKEY	*pkey;
	BIO		*bio;
	char		*pem, *cause = NULL;
	long		 len;

	if (!strcmp(type, "EC"))
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else if (!strcmp(type, "RSA"))
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(pkey);
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0,
	    NULL, NULL), 1);
	len = BIO_get_mem_data(bio, &pem);
	if (jws_key_load(pem, (size_t)len, &key, &cause) != 0)
		fail_msg("jws_key_load: %s", cause);
	BIO_free(bio);
	*pub = pkey;
	return key;
}

/* base64url to bytes, NUL-terminated (no padding, as JWS has it). */
static unsigned char *
b64url_decode(const char *in, size_t n, size_t *outlen)
{
	char		*std = calloc(1, n + 4);
	unsigned char	*out = calloc(1, n + 4);
	size_t		 i, m;
	int		 r;

	assert_non_null(std);
	assert_non_null(out);
	for (i = 0; i < n; i++)
		std[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
	for (m = n; m % 4 != 0; m++)
		std[m] = '=';
	r = EVP_DecodeBlock(out, (unsigned char *)std, (int)m);
	assert_true(r >= 0);
	*outlen = (size_t)r - (m - n);
	out[*outlen] = '\0';
	free(std);
	return out;
}

/* The JWT's header and payload as JSON text, and its signature. */
struct jwt_parts {
	char		*header;
	char		*payload;
	unsigned char	*sig;
	size_t		 siglen;
	char		*input;		/* what was signed */
};

static void
jwt_split(const char *jwt, struct jwt_parts *p)
{
	const char	*d1, *d2;
	size_t		 n;

	assert_non_null(d1 = strchr(jwt, '.'));
	assert_non_null(d2 = strchr(d1 + 1, '.'));
	assert_null(strchr(d2 + 1, '.'));
	p->header = (char *)b64url_decode(jwt, (size_t)(d1 - jwt), &n);
	p->payload = (char *)b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &n);
	p->sig = b64url_decode(d2 + 1, strlen(d2 + 1), &p->siglen);
	p->input = strndup(jwt, (size_t)(d2 - jwt));
}

static void
jwt_parts_free(struct jwt_parts *p)
{
	free(p->header);
	free(p->payload);
	free(p->sig);
	free(p->input);
}

/* Verify p's signature with OpenSSL's EVP directly, not through jws.c. */
static int
jwt_verify(const struct jwt_parts *p, EVP_PKEY *pub, const char *alg)
{
	EVP_MD_CTX	*ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX	*pctx = NULL;
	ECDSA_SIG	*es;
	unsigned char	*der = NULL;
	const unsigned char *sig = p->sig;
	size_t		 siglen = p->siglen;
	int		 derlen, ok;

	if (!strcmp(alg, "ES256")) {
		/* JWS's r || s back to the DER that EVP checks */
		assert_int_equal(p->siglen, 64);
		es = ECDSA_SIG_new();
		ECDSA_SIG_set0(es, BN_bin2bn(p->sig, 32, NULL),
		    BN_bin2bn(p->sig + 32, 32, NULL));
		derlen = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		sig = der;
		siglen = (size_t)derlen;
	}
	ok = EVP_DigestVerifyInit(ctx, &pctx, !strcmp(alg, "EdDSA") ? NULL :
	    EVP_sha256(), NULL, pub) == 1;
	if (ok && !strcmp(alg, "PS256"))
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) ==
		    1 && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1;
	if (ok)
		ok = EVP_DigestVerify(ctx, sig, siglen,
		    (unsigned char *)p->input, strlen(p->input)) == 1;
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return ok;
}

static const unsigned char test_jti[ASSERTION_JTI_BYTES] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
};
#define TEST_JTI	"AAECAwQFBgcICQoLDA0ODw"

static void
assertion_conf(struct account_conf *ac, struct jws_key *key, enum jws_alg alg)
{
	account_init(ac);
	ac->client_id = (char *)"cid";
	ac->client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT;
	ac->client_key = key;
	ac->client_key_alg = (int)alg;
	ac->assertion_lifetime = 300 * SEC;
}

/* Each algorithm: the exact header and claims, and a signature OpenSSL
 * verifies with the public key. */
static void
test_assertion_client(void **state)
{
	static const struct {
		const char	*type, *alg;
		enum jws_alg	 jalg;
	} cases[] = {
		{ "EC", "ES256", JWS_ES256 },
		{ "RSA", "RS256", JWS_RS256 },
		{ "RSA", "PS256", JWS_PS256 },
		{ "ED25519", "EdDSA", JWS_EDDSA },
	};
	struct account_conf	 ac;
	struct jwt_parts	 p;
	struct jws_key		*key;
	EVP_PKEY		*pub;
	char			*jwt, *cause = NULL, want[256];
	size_t			 i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		key = assertion_key(cases[i].type, &pub);
		assertion_conf(&ac, key, cases[i].jalg);
		ac.client_key_id = (char *)"k1";
		jwt = oauth_assertion(&ac, GRANT_CLIENT_CREDENTIALS,
		    "https://op.example/token", T0S, test_jti, &cause);
		if (jwt == NULL)
			fail_msg("%s: %s", cases[i].alg, cause);
		jwt_split(jwt, &p);
		snprintf(want, sizeof want, "{\"alg\":\"%s\",\"typ\":\"JWT\","
		    "\"kid\":\"k1\"}", cases[i].alg);
		CHECK_STR(cases[i].alg, p.header, want);
		CHECK_STR(cases[i].alg, p.payload, "{\"iss\":\"cid\","
		    "\"sub\":\"cid\",\"aud\":\"https://op.example/token\","
		    "\"jti\":\"" TEST_JTI "\",\"iat\":1700000000,"
		    "\"exp\":1700000300}");
		if (!jwt_verify(&p, pub, cases[i].alg))
			fail_msg("%s: the signature does not verify",
			    cases[i].alg);
		/* one bit off: no longer verifies (the check can fail) */
		p.input[strlen(p.input) - 1] ^= 1;
		assert_false(jwt_verify(&p, pub, cases[i].alg));
		jwt_parts_free(&p);
		free(jwt);
		jws_key_free(key);
		EVP_PKEY_free(pub);
	}
}

/* client_secret_jwt: HS256 with the secret, checked by OpenSSL's HMAC. */
static void
test_assertion_hmac(void **state)
{
	struct account_conf	 ac;
	struct jwt_parts	 p;
	unsigned char		 mac[32];
	unsigned int		 maclen = sizeof mac;
	char			*jwt, *cause = NULL;
	const char		*secret = "0123456789abcdef0123456789abcdef";

	(void)state;
	assertion_conf(&ac, NULL, JWS_RS256);
	ac.client_auth = CLIENT_AUTH_CLIENT_SECRET_JWT;
	ac.client_secret = (char *)secret;
	assert_non_null(jwt = oauth_assertion(&ac, GRANT_CLIENT_CREDENTIALS,
	    "https://op.example/token", T0S, test_jti, &cause));
	jwt_split(jwt, &p);
	CHECK_STR("hs256 header", p.header, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
	assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
	    (unsigned char *)p.input, strlen(p.input), mac, &maclen));
	assert_int_equal(p.siglen, 32);
	assert_memory_equal(p.sig, mac, 32);
	jwt_parts_free(&p);
	free(jwt);

	/* no secret, no key: a cause, no JWT */
	ac.client_secret = NULL;
	assert_null(oauth_assertion(&ac, GRANT_CLIENT_CREDENTIALS, "u", T0S,
	    test_jti, &cause));
	assert_non_null(cause);
	free(cause);
}

/* The grant's assertions: a service account's, a GitHub App's Bearer JWT,
 * claims from assertion.*, the certificate's thumbprints. */
static void
test_assertion_grant(void **state)
{
	static struct form_param claims[] = {
		{ (char *)"aud", (char *)"https://login.example" },
		{ (char *)"sub", (char *)"robot@example.com" },
	};
	struct account_conf	 ac;
	struct jwt_parts	 p;
	struct jws_key		*key;
	EVP_PKEY		*pub;
	char			*jwt, *cause = NULL;

	(void)state;
	key = assertion_key("RSA", &pub);

	/* Google: iss the client_email, scope a claim, no sub of its own */
	assertion_conf(&ac, key, JWS_RS256);
	ac.grant = GRANT_JWT_BEARER;
	ac.client_auth = CLIENT_AUTH_NONE;
	ac.client_id = NULL;
	ac.assertion_iss = (char *)"sa@p.iam.gserviceaccount.com";
	ac.scope_in_assertion = 1;
	ac.scope = (char *)"https://www.googleapis.com/auth/cloud-platform";
	assert_non_null(jwt = oauth_assertion(&ac, GRANT_JWT_BEARER,
	    "https://oauth2.googleapis.com/token", T0S, test_jti, &cause));
	jwt_split(jwt, &p);
	CHECK_STR("google", p.payload, "{\"iss\":\"sa@p.iam.gserviceaccount."
	    "com\",\"aud\":\"https://oauth2.googleapis.com/token\",\"jti\":\""
	    TEST_JTI "\",\"iat\":1700000000,\"exp\":1700000300,\"scope\":"
	    "\"https://www.googleapis.com/auth/cloud-platform\"}");
	assert_true(jwt_verify(&p, pub, "RS256"));
	jwt_parts_free(&p);
	free(jwt);

	/* assertion.*: aud replaced in place, sub added */
	ac.claims = claims;
	ac.nclaims = nitems(claims);
	assert_non_null(jwt = oauth_assertion(&ac, GRANT_JWT_BEARER,
	    "https://oauth2.googleapis.com/token", T0S, test_jti, &cause));
	jwt_split(jwt, &p);
	CHECK_STR("claims", p.payload, "{\"iss\":\"sa@p.iam.gserviceaccount."
	    "com\",\"aud\":\"https://login.example\",\"jti\":\"" TEST_JTI
	    "\",\"iat\":1700000000,\"exp\":1700000300,\"scope\":"
	    "\"https://www.googleapis.com/auth/cloud-platform\",\"sub\":"
	    "\"robot@example.com\"}");
	jwt_parts_free(&p);
	free(jwt);

	/* GitHub: iss, iat a minute back, exp; nothing else */
	assertion_conf(&ac, key, JWS_RS256);
	ac.grant = GRANT_JWT_BEARER;
	ac.client_auth = CLIENT_AUTH_NONE;
	ac.client_id = (char *)"Iv1.abc";
	ac.assertion_in = ASSERTION_IN_BEARER;
	ac.assertion_lifetime = 540 * SEC;
	assert_non_null(jwt = oauth_assertion(&ac, GRANT_JWT_BEARER,
	    "https://api.github.com/app/installations/1/access_tokens", T0S,
	    test_jti, &cause));
	jwt_split(jwt, &p);
	CHECK_STR("github header", p.header, "{\"alg\":\"RS256\",\"typ\":"
	    "\"JWT\"}");
	CHECK_STR("github", p.payload, "{\"iss\":\"Iv1.abc\",\"iat\":"
	    "1699999940,\"exp\":1700000540}");
	jwt_parts_free(&p);
	free(jwt);

	/* Entra ID: the certificate named by its thumbprints */
	assertion_conf(&ac, key, JWS_RS256);
	ac.client_cert_x5t = (char *)"x5t-sha1";
	ac.client_cert_x5t256 = (char *)"x5t-sha256";
	assert_non_null(jwt = oauth_assertion(&ac, GRANT_CLIENT_CREDENTIALS,
	    "https://login.example/token", T0S, test_jti, &cause));
	jwt_split(jwt, &p);
	CHECK_STR("x5t", p.header, "{\"alg\":\"RS256\",\"typ\":\"JWT\","
	    "\"x5t\":\"x5t-sha1\",\"x5t#S256\":\"x5t-sha256\"}");
	jwt_parts_free(&p);
	free(jwt);

	jws_key_free(key);
	EVP_PKEY_free(pub);
}

/* The requests that carry them: the form, the Bearer header, a new jti
 * at each build. */
static void
test_assertion_requests(void **state)
{
	struct account_conf	 ac;
	struct oauth_request	 r1, r2;
	struct jws_key		*key;
	EVP_PKEY		*pub;
	char			*cause = NULL;
	const char		*pfx;

	(void)state;
	key = assertion_key("EC", &pub);
	assertion_conf(&ac, key, JWS_ES256);
	ac.scope = (char *)"read";
	assert_int_equal(oauth_request_build(&ac, GRANT_CLIENT_CREDENTIALS,
	    NULL, T0S, &r1, &cause), 0);
	assert_int_equal(oauth_request_build(&ac, GRANT_CLIENT_CREDENTIALS,
	    NULL, T0S, &r2, &cause), 0);
	pfx = "grant_type=client_credentials&client_id=cid&"
	    "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
	    "client-assertion-type%3Ajwt-bearer&client_assertion=eyJ";
	assert_true(!strncmp(r1.body, pfx, strlen(pfx)));
	assert_non_null(strstr(r1.body, "&scope=read"));
	assert_null(r1.authorization);
	/* the same second, yet a new jti: the bodies differ */
	assert_string_not_equal(r1.body, r2.body);
	oauth_request_clear(&r1);
	oauth_request_clear(&r2);

	/* a refresh authenticates the same way, with aud its own URL */
	assert_int_equal(oauth_request_build(&ac, GRANT_REFRESH_TOKEN, "rt",
	    T0S, &r1, &cause), 0);
	assert_true(!strncmp(r1.body, "grant_type=refresh_token&"
	    "refresh_token=rt&client_id=cid&client_assertion_type=", 52));
	oauth_request_clear(&r1);

	/* grant = jwt_bearer: the assertion in the form, no client_id */
	ac.grant = GRANT_JWT_BEARER;
	ac.client_auth = CLIENT_AUTH_NONE;
	assert_int_equal(oauth_request_build(&ac, GRANT_JWT_BEARER, NULL, T0S,
	    &r1, &cause), 0);
	pfx = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3A"
	    "jwt-bearer&assertion=eyJ";
	assert_true(!strncmp(r1.body, pfx, strlen(pfx)));
	assert_null(strstr(r1.body, "client_id"));
	assert_non_null(strstr(r1.body, "&scope=read"));
	oauth_request_clear(&r1);

	/* ... a service account's scope is in the assertion, not the form */
	ac.scope_in_assertion = 1;
	assert_int_equal(oauth_request_build(&ac, GRANT_JWT_BEARER, NULL, T0S,
	    &r1, &cause), 0);
	assert_null(strstr(r1.body, "scope="));
	oauth_request_clear(&r1);
	ac.scope_in_assertion = 0;

	/* ... and as a Bearer header: an empty body */
	ac.scope = NULL;
	ac.assertion_in = ASSERTION_IN_BEARER;
	assert_int_equal(oauth_request_build(&ac, GRANT_JWT_BEARER, NULL, T0S,
	    &r1, &cause), 0);
	CHECK_STR("bearer body", r1.body, "");
	assert_non_null(r1.authorization);
	assert_true(!strncmp(r1.authorization, "Bearer eyJ", 10));
	oauth_request_clear(&r1);

	/* no key: an error with a cause, nothing half-built */
	ac.client_key = NULL;
	assert_int_equal(oauth_request_build(&ac, GRANT_JWT_BEARER, NULL, T0S,
	    &r1, &cause), -1);
	assert_non_null(cause);
	assert_null(r1.body);
	assert_null(r1.authorization);
	free(cause);
	jws_key_free(key);
	EVP_PKEY_free(pub);
}

/* Which refusals say the client (or its assertion) was refused: those an
 * assertion is made anew for; GitHub's "message" kept in the error. */
static void
test_response_client_refused(void **state)
{
	static const struct {
		enum grant	 grant;
		long		 status;
		const char	*body;
		int		 refused;
		const char	*error;
	} cases[] = {
		{ GRANT_CLIENT_CREDENTIALS, 401, "{\"error\":\"invalid_client\"}",
		  1, "HTTP 401 invalid_client" },
		{ GRANT_CLIENT_CREDENTIALS, 400, "{\"error\":\"invalid_scope\"}",
		  0, "HTTP 400 invalid_scope" },
		{ GRANT_CLIENT_CREDENTIALS, 400, "{\"error\":\"invalid_grant\"}",
		  0, "HTTP 400 invalid_grant" },
		{ GRANT_JWT_BEARER, 400, "{\"error\":\"invalid_grant\","
		  "\"error_description\":\"iat in the future\"}",
		  1, "HTTP 400 invalid_grant: iat in the future" },
		{ GRANT_JWT_BEARER, 400, "{\"error\":\"unauthorized_client\"}",
		  0, "HTTP 400 unauthorized_client" },
		{ GRANT_JWT_BEARER, 401, "{\"message\":\"A JSON web token could "
		  "not be decoded\",\"documentation_url\":\"https://docs.github."
		  "com/rest\"}", 1, "HTTP 401 without an OAuth error, taken as "
		  "refused credentials: A JSON web token could not be decoded" },
		{ GRANT_JWT_BEARER, 500, "{\"message\":\"boom\"}", 0,
		  "HTTP 500" },
		{ GRANT_JWT_BEARER, 404, "{\"message\":\"Not Found\"}", 0,
		  "HTTP 404 without an OAuth error: Not Found" },
		/* a refresh whose client assertion was refused: made anew
		   before the refresh token is given up (client_auth below) */
		{ GRANT_REFRESH_TOKEN, 401, "", 1, "HTTP 401 without an OAuth "
		  "error, taken as a refused refresh token" },
		{ GRANT_REFRESH_TOKEN, 400, "", 0, "HTTP 400 without an OAuth "
		  "error, taken as a refused refresh token" },
	};
	struct account_conf	 ac;
	struct oauth_result	 res;
	struct token		 tok;
	size_t			 i;

	(void)state;
	account_init(&ac);
	ac.client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT;
	for (i = 0; i < nitems(cases); i++) {
		ac.grant = cases[i].grant;
		assert_int_equal(oauth_response_parse(&ac, cases[i].grant, NULL,
		    cases[i].status, cases[i].body, strlen(cases[i].body), T0,
		    &tok, &res), -1);
		CHECK_STR(cases[i].body, res.error, cases[i].error);
		if (res.client_refused != cases[i].refused)
			fail_msg("%s: client_refused %d", cases[i].body,
			    res.client_refused);
	}
}

/* ---- oauth_json_pointer ---- */

/* RFC 6901 section 5, plus an array of objects and a "~1" key */
static const char pointer_doc[] =
    "{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"c%d\":2,\"e^f\":3,"
    "\"g|h\":4,\"i\\\\j\":5,\"k\\\"l\":6,\" \":7,\"m~n\":8,\"~1\":9,"
    "\"n\":null,\"deep\":{\"list\":[{\"k\":\"v0\"},{\"k\":\"v1\"}]},"
    "\"big\":[0,1,2,3,4,5,6,7,8,9,10,11]}";

static void
test_json_pointer(void **state)
{
	static const struct {
		const char	*ptr;
		int		 rc;
		const char	*want;	/* JSON text; NULL: JSON null */
	} cases[] = {
		{ "/foo", 0, "[\"bar\",\"baz\"]" },
		{ "/foo/0", 0, "\"bar\"" },
		{ "/foo/1", 0, "\"baz\"" },
		{ "/", 0, "0" },
		{ "/a~1b", 0, "1" },
		{ "/c%d", 0, "2" },
		{ "/e^f", 0, "3" },
		{ "/g|h", 0, "4" },
		{ "/i\\j", 0, "5" },
		{ "/k\"l", 0, "6" },
		{ "/ ", 0, "7" },
		{ "/m~0n", 0, "8" },
		{ "/~01", 0, "9" },	/* ~01 is "~1", not "/" */
		{ "/n", 0, NULL },
		{ "/deep/list/1/k", 0, "\"v1\"" },
		{ "/deep/list/0", 0, "{\"k\":\"v0\"}" },
		{ "/big/10", 0, "10" },
		{ "/big/11", 0, "11" },
		{ "/foo/01", -ENOENT, NULL },	/* leading zero */
		{ "/foo/00", -ENOENT, NULL },
		{ "/big/010", -ENOENT, NULL },
		{ "/foo/2", -ENOENT, NULL },	/* out of range */
		{ "/big/12", -ENOENT, NULL },
		{ "/foo/-", -ENOENT, NULL },	/* past the end */
		{ "/foo/-1", -ENOENT, NULL },
		{ "/foo/+1", -ENOENT, NULL },
		{ "/foo/1a", -ENOENT, NULL },
		{ "/foo/", -ENOENT, NULL },
		{ "/foo/99999999999999999999999999", -ENOENT, NULL },
		{ "/foo/0/x", -ENOENT, NULL },	/* into a string */
		{ "/n/x", -ENOENT, NULL },	/* into null */
		{ "/nope", -ENOENT, NULL },
		{ "/a/b", -ENOENT, NULL },	/* not "a/b" */
		{ "/m~n", -EINVAL, NULL },	/* ~ must be ~0 or ~1 */
		{ "/a~2b", -EINVAL, NULL },
		{ "/a~", -EINVAL, NULL },
		{ "/~", -EINVAL, NULL },
		{ "foo", -EINVAL, NULL },
		{ "#/foo", -EINVAL, NULL },
	};
	struct json_object	*doc, *want;
	const void		*got;
	char			 what[128];
	size_t			 i;
	int			 rc;

	(void)state;
	doc = json_tokener_parse(pointer_doc);
	assert_non_null(doc);

	/* "" is the whole document */
	got = NULL;
	assert_int_equal(oauth_json_pointer("", doc, &got), 0);
	assert_ptr_equal(got, doc);

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		got = (const void *)&got;	/* a sentinel */
		rc = oauth_json_pointer(cases[i].ptr, doc, &got);
		snprintf(what, sizeof what, "pointer '%s'", cases[i].ptr);
		CHECK_I64(what, rc, cases[i].rc);
		if (rc != 0)
			continue;
		if (cases[i].want == NULL) {
			if (got != NULL)
				fail_msg("%s: expected JSON null", what);
			continue;
		}
		want = json_tokener_parse(cases[i].want);
		assert_non_null(want);
		if (got == NULL || !json_object_equal((struct json_object *)got,
		    want))
			fail_msg("%s: got %s, expected %s", what, got ?
			    json_object_to_json_string((struct json_object *)
			    got) : "null", cases[i].want);
		json_object_put(want);
	}
	json_object_put(doc);
}

/* ---- oauth_response_parse ---- */

static char *
b64url(const char *s)
{
	char	*out, *p, *w;

	out = oauth_base64((const unsigned char *)s, strlen(s));
	for (p = w = out; *p != '\0'; p++) {
		if (*p == '=')
			continue;
		*w++ = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	}
	*w = '\0';
	return out;
}

/* header.payload.signature, payload as given */
static char *
make_jwt(const char *payload)
{
	char	*h, *p, *jwt;

	h = b64url("{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
	p = b64url(payload);
	if (asprintf(&jwt, "%s.%s.c2lnbmF0dXJl", h, p) == -1)
		jwt = NULL;
	free(h);
	free(p);
	return jwt;
}

static int
parse_grant(const struct account_conf *ac, enum grant grant, long status,
    const char *body, struct token *t, struct oauth_result *res)
{
	return oauth_response_parse(ac, grant, NULL, status, body,
	    strlen(body), T0, t, res);
}

static int
parse(const struct account_conf *ac, long status, const char *body,
    struct token *t, struct oauth_result *res)
{
	return parse_grant(ac, GRANT_CLIENT_CREDENTIALS, status, body, t, res);
}

enum pointer_set {
	P_RFC,		/* the defaults */
	P_SPOTINST,	/* response.items[0] envelope */
	P_EXPIRES_AT,	/* expires_at = /expires_at */
	P_NO_EXPIRY,	/* expires_in disabled */
};

static void
account_pointers(struct account_conf *ac, enum pointer_set ps)
{
	account_init(ac);
	switch (ps) {
	case P_RFC:
		break;
	case P_SPOTINST:
		ac->response.access_token =
		    (char *)"/response/items/0/accessToken";
		ac->response.refresh_token =
		    (char *)"/response/items/0/refreshToken";
		ac->response.expires_in = (char *)"/response/items/0/expiresIn";
		ac->response.token_type = (char *)"/response/items/0/tokenType";
		break;
	case P_EXPIRES_AT:
		ac->response.expires_at = (char *)"/expires_at";
		break;
	case P_NO_EXPIRY:
		ac->response.expires_in = NULL;
		break;
	}
}

struct ok_case {
	const char	*name;
	enum pointer_set ps;
	const char	*body;
	const char	*access;
	const char	*refresh;
	const char	*type;
	int64_t		 lifetime;
};

#define SPOTINST_BODY \
	"{\"request\":{\"id\":\"9a1f\",\"url\":\"/token\",\"method\":\"POST\"}," \
	"\"response\":{\"status\":{\"code\":200,\"message\":\"OK\"}," \
	"\"kind\":\"spotinst:oauth2:token\",\"items\":[{\"accessToken\":" \
	"\"sp-AT-1\",\"refreshToken\":\"sp-RT-1\",\"tokenType\":\"bearer\"," \
	"\"expiresIn\":7199}],\"count\":1}}"

static const struct ok_case ok_cases[] = {
	{ "RFC 6749 5.1 example", P_RFC,
	    "{\"access_token\":\"2YotnFZFEjr1zCsicMWpAA\","
	    "\"token_type\":\"example\",\"expires_in\":3600,"
	    "\"refresh_token\":\"tGzv3JOkF0XG5Qx2TlKWIA\","
	    "\"example_parameter\":\"example_value\"}",
	    "2YotnFZFEjr1zCsicMWpAA", "tGzv3JOkF0XG5Qx2TlKWIA", "example",
	    3600 * SEC },
	{ "Bearer", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":\"Bearer\","
	    "\"expires_in\":3600}", "a", NULL, "Bearer", 3600 * SEC },
	{ "bearer lower case", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":\"bearer\","
	    "\"expires_in\":60}", "a", NULL, "Bearer", 60 * SEC },
	{ "BEARER upper case", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":\"BEARER\","
	    "\"expires_in\":60}", "a", NULL, "Bearer", 60 * SEC },
	{ "bEaReR", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":\"bEaReR\","
	    "\"expires_in\":60}", "a", NULL, "Bearer", 60 * SEC },
	{ "DPoP kept as it is", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":\"DPoP\","
	    "\"expires_in\":60}", "a", NULL, "DPoP", 60 * SEC },
	{ "token_type absent", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":60}", "a", NULL, "Bearer",
	    60 * SEC },
	{ "token_type null", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":null,\"expires_in\":60}",
	    "a", NULL, "Bearer", 60 * SEC },
	{ "expires_in as a string", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":\"3600\"}", "a", NULL,
	    "Bearer", 3600 * SEC },
	{ "expires_in as a whole double", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":3600.0}", "a", NULL,
	    "Bearer", 3600 * SEC },
	{ "expires_in 1", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":1}", "a", NULL,
	    "Bearer", 1 * SEC },
	{ "expires_in 90 days (Particle)", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":7776000}", "a", NULL,
	    "Bearer", 7776000 * SEC },
	{ "expires_in at the 10-year cap", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":316224000}", "a", NULL,
	    "Bearer", LIFETIME_MAX_MS },
	{ "expires_in null: absent, default lifetime", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":null}", "a", NULL,
	    "Bearer", 7200 * SEC },
	{ "expires_in absent: default lifetime", P_RFC,
	    "{\"access_token\":\"a\"}", "a", NULL, "Bearer", 7200 * SEC },
	{ "refresh_token null", P_RFC,
	    "{\"access_token\":\"a\",\"refresh_token\":null,"
	    "\"expires_in\":5}", "a", NULL, "Bearer", 5 * SEC },
	{ "b64token characters", P_RFC,
	    "{\"access_token\":\"aZ09-._~+/==\",\"expires_in\":5}",
	    "aZ09-._~+/==", NULL, "Bearer", 5 * SEC },
	{ "escaped slash in JSON", P_RFC,
	    "{\"access_token\":\"a\\/b\",\"expires_in\":5}", "a/b", NULL,
	    "Bearer", 5 * SEC },
	{ "whitespace around the document", P_RFC,
	    " \r\n\t{\"access_token\":\"a\",\"expires_in\":5} \r\n", "a",
	    NULL, "Bearer", 5 * SEC },
	{ "Spotinst envelope", P_SPOTINST, SPOTINST_BODY, "sp-AT-1",
	    "sp-RT-1", "Bearer", 7199 * SEC },
	{ "expires_at epoch seconds", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":1700000600}", "a", NULL,
	    "Bearer", 600 * SEC },
	{ "expires_at epoch as a string", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":\"1700000600\"}", "a",
	    NULL, "Bearer", 600 * SEC },
	{ "expires_at RFC 3339 Z", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":\"2023-11-14T22:23:20Z\"}",
	    "a", NULL, "Bearer", 600 * SEC },
	{ "expires_at RFC 3339 offset", P_EXPIRES_AT,
	    "{\"access_token\":\"a\","
	    "\"expires_at\":\"2023-11-14T23:23:20+01:00\"}",
	    "a", NULL, "Bearer", 600 * SEC },
	{ "expires_at RFC 3339 fraction", P_EXPIRES_AT,
	    "{\"access_token\":\"a\","
	    "\"expires_at\":\"2023-11-14T22:23:20.250Z\"}",
	    "a", NULL, "Bearer", 600 * SEC },
	{ "expires_in wins over expires_at", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_in\":60,"
	    "\"expires_at\":1700000600}", "a", NULL, "Bearer", 60 * SEC },
	{ "expires_in disabled: default", P_NO_EXPIRY,
	    "{\"access_token\":\"a\",\"expires_in\":60}", "a", NULL,
	    "Bearer", 7200 * SEC },
	/* the same key in different objects is no duplicate */
	{ "same key in sibling and nested objects", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":60,\"m\":[{\"k\":1},"
	    "{\"k\":2,\"access_token\":{\"k\":3}}],\"k\":4}", "a", NULL,
	    "Bearer", 60 * SEC },
	/* escapes that decode to different keys are different keys */
	{ "escaped keys that differ", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":60,\"k\\u0041\":1,"
	    "\"k\\u0061\":2,\"k\\ud83d\\ude00\":3,\"k\\ud83d\\ude01\":4,"
	    "\"k\\n\":5,\"k\\t\":6,\"k\\\\\":7,\"k\\\"\":8,\"k\":9}", "a", NULL,
	    "Bearer", 60 * SEC },
	{ "an escaped key spelt like another's escape", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":60,\"\\\\u0041\":1,"
	    "\"\\u0041\":2}", "a", NULL, "Bearer", 60 * SEC },
	{ "a value equal to a key", P_RFC,
	    "{\"access_token\":\"access_token\",\"expires_in\":60,"
	    "\"note\":\"expires_in\"}", "access_token", NULL, "Bearer",
	    60 * SEC },
};

static void
check_ok(const char *name, const struct account_conf *ac, const char *body,
    const char *access, const char *refresh, const char *type,
    int64_t lifetime)
{
	struct token		 t;
	struct oauth_result	 res;
	char			 what[160];

	memset(&t, 0, sizeof t);
	memset(&res, 0xa5, sizeof res);
	if (parse(ac, 200, body, &t, &res) != 0)
		fail_msg("%s: rejected: %s", name, res.error);
	CHECK_OUTCOME(name, res.outcome, OAUTH_OK);
	snprintf(what, sizeof what, "%s: access_token", name);
	CHECK_STR(what, t.access_token, access);
	snprintf(what, sizeof what, "%s: refresh_token", name);
	CHECK_STR(what, t.refresh_token, refresh);
	snprintf(what, sizeof what, "%s: token_type", name);
	CHECK_STR(what, t.token_type, type);
	snprintf(what, sizeof what, "%s: obtained_at", name);
	CHECK_I64(what, t.obtained_at, T0);
	snprintf(what, sizeof what, "%s: lifetime", name);
	CHECK_I64(what, t.expires_at - T0, lifetime);
	oauth_token_clear(&t);
}

static void
test_response_ok_table(void **state)
{
	struct account_conf	 ac;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
		account_pointers(&ac, ok_cases[i].ps);
		check_ok(ok_cases[i].name, &ac, ok_cases[i].body,
		    ok_cases[i].access, ok_cases[i].refresh, ok_cases[i].type,
		    ok_cases[i].lifetime);
	}
}

/* Other 2xx codes are successes too (RFC 6749 says 200; some say 201). */
static void
test_response_2xx(void **state)
{
	struct account_conf	 ac;
	struct token		 t;
	struct oauth_result	 res;
	const char		*body = "{\"access_token\":\"a\",\"expires_in\":9}";

	(void)state;
	account_init(&ac);
	memset(&t, 0, sizeof t);
	assert_int_equal(parse(&ac, 201, body, &t, &res), 0);
	CHECK_OUTCOME("201", res.outcome, OAUTH_OK);
	oauth_token_clear(&t);
}

/* The JWT exp claim when there is no expires_in (and no expires_at). */
static void
test_response_jwt(void **state)
{
	static const struct {
		const char	*name;
		const char	*payload;
		const char	*extra;		/* more JSON members */
		int		 ok;
		int64_t		 lifetime;
	} cases[] = {
		{ "exp in 30 minutes", "{\"sub\":\"svc\",\"exp\":1700001800}",
		    "", 1, 1800 * SEC },
		{ "exp as a double", "{\"exp\":1700001800.0}", "", 1,
		    1800 * SEC },
		{ "expires_in wins over exp", "{\"exp\":1700001800}",
		    ",\"expires_in\":60", 1, 60 * SEC },
		{ "exp far away: capped at 10 years", "{\"exp\":2400000000}",
		    "", 1, LIFETIME_MAX_MS },
		{ "exp in the past", "{\"exp\":1600000000}", "", 0, 0 },
		{ "exp now", "{\"exp\":1700000000}", "", 0, 0 },
		{ "no exp: default lifetime", "{\"sub\":\"svc\"}", "", 1,
		    7200 * SEC },
		{ "exp a string: default lifetime", "{\"exp\":\"1700001800\"}",
		    "", 1, 7200 * SEC },
		{ "exp negative: default lifetime", "{\"exp\":-5}", "", 1,
		    7200 * SEC },
		{ "payload not JSON: default lifetime", "not json", "", 1,
		    7200 * SEC },
	};
	struct account_conf	 ac;
	struct token		 t;
	struct oauth_result	 res;
	char			*jwt, *body;
	size_t			 i;
	int			 rc;

	(void)state;
	account_init(&ac);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		jwt = make_jwt(cases[i].payload);
		assert_non_null(jwt);
		assert_int_equal(asprintf(&body, "{\"access_token\":\"%s\"%s}",
		    jwt, cases[i].extra) > 0, 1);
		if (cases[i].ok)
			check_ok(cases[i].name, &ac, body, jwt, NULL, "Bearer",
			    cases[i].lifetime);
		else {
			memset(&t, 0, sizeof t);
			rc = parse(&ac, 200, body, &t, &res);
			if (rc != -1 || t.access_token != NULL)
				fail_msg("%s: accepted", cases[i].name);
			CHECK_OUTCOME(cases[i].name, res.outcome, OAUTH_RETRY);
		}
		free(body);
		free(jwt);
	}

	/* oauth_jwt_exp on its own */
	jwt = make_jwt("{\"exp\":1700001800}");
	CHECK_I64("oauth_jwt_exp", oauth_jwt_exp(jwt), 1700001800 * SEC);
	free(jwt);
	CHECK_I64("oauth_jwt_exp opaque", oauth_jwt_exp("opaque-token"), 0);
	CHECK_I64("oauth_jwt_exp one dot", oauth_jwt_exp("a.b"), 0);
	CHECK_I64("oauth_jwt_exp four dots", oauth_jwt_exp("a.b.c.d.e"), 0);
	CHECK_I64("oauth_jwt_exp bad base64", oauth_jwt_exp("a.!!!.c"), 0);
	/* an exp whose milliseconds overflow (found by fuzz_response) */
	jwt = make_jwt("{\"exp\":1795453221795453200}");
	CHECK_I64("oauth_jwt_exp huge", oauth_jwt_exp(jwt),
	    INT64_MAX / 1000 * 1000);
	free(jwt);
	/* INT64_MAX is no number of seconds at all: no exp */
	jwt = make_jwt("{\"exp\":9223372036854775807}");
	CHECK_I64("oauth_jwt_exp INT64_MAX", oauth_jwt_exp(jwt), 0);
	free(jwt);
}

struct bad_case {
	const char	*name;
	enum pointer_set ps;
	const char	*body;
};

static const struct bad_case bad_cases[] = {
	{ "missing access_token", P_RFC,
	    "{\"token_type\":\"Bearer\",\"expires_in\":60}" },
	{ "access_token a number", P_RFC, "{\"access_token\":12345}" },
	{ "access_token true", P_RFC, "{\"access_token\":true}" },
	{ "access_token null", P_RFC, "{\"access_token\":null}" },
	{ "access_token an object", P_RFC, "{\"access_token\":{\"a\":1}}" },
	{ "access_token an array", P_RFC, "{\"access_token\":[\"a\"]}" },
	{ "access_token empty", P_RFC, "{\"access_token\":\"\"}" },
	{ "access_token with a space", P_RFC, "{\"access_token\":\"ab cd\"}" },
	{ "access_token with a tab", P_RFC, "{\"access_token\":\"ab\\tcd\"}" },
	{ "access_token with a newline", P_RFC,
	    "{\"access_token\":\"ab\\ncd\"}" },
	{ "access_token with a control char", P_RFC,
	    "{\"access_token\":\"ab\\u0001cd\"}" },
	{ "access_token with DEL", P_RFC,
	    "{\"access_token\":\"ab\\u007fcd\"}" },
	{ "access_token with a NUL", P_RFC,
	    "{\"access_token\":\"ab\\u0000cd\"}" },
	{ "access_token not ASCII", P_RFC,
	    "{\"access_token\":\"ab\xc3\xa9\"}" },
	{ "refresh_token a number", P_RFC,
	    "{\"access_token\":\"a\",\"refresh_token\":5}" },
	{ "refresh_token with a space", P_RFC,
	    "{\"access_token\":\"a\",\"refresh_token\":\"r t\"}" },
	{ "refresh_token empty", P_RFC,
	    "{\"access_token\":\"a\",\"refresh_token\":\"\"}" },
	{ "token_type a number", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":1}" },
	{ "token_type empty", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":\"\"}" },
	{ "token_type with a space", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":\"Bea rer\"}" },
	{ "token_type too long", P_RFC,
	    "{\"access_token\":\"a\",\"token_type\":"
	    "\"BearerBearerBearerBearerBearerBea\"}" },
	{ "expires_in \"3600abc\"", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":\"3600abc\"}" },
	{ "expires_in \"36 00\"", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":\"36 00\"}" },
	{ "expires_in \"\"", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":\"\"}" },
	{ "expires_in \"-1\"", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":\"-1\"}" },
	{ "expires_in \"0\"", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":\"0\"}" },
	{ "expires_in -1", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":-1}" },
	{ "expires_in 0", P_RFC, "{\"access_token\":\"a\",\"expires_in\":0}" },
	{ "expires_in 0.5", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":0.5}" },
	{ "expires_in 1e309", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":1e309}" },
	{ "expires_in -1e309", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":-1e309}" },
	{ "expires_in 9223372036854775807", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":9223372036854775807}" },
	{ "expires_in 9223372036854775808", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":9223372036854775808}" },
	{ "expires_in -9223372036854775809", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":-9223372036854775809}" },
	{ "expires_in \"9223372036854775808\"", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":\"9223372036854775808\"}" },
	{ "expires_in over 10 years", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":316224001}" },
	{ "expires_in true", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":true}" },
	{ "expires_in an object", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":{}}" },
	{ "expires_in an array", P_RFC,
	    "{\"access_token\":\"a\",\"expires_in\":[3600]}" },
	{ "expires_at in the past", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":1600000000}" },
	{ "expires_at now", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":1700000000}" },
	{ "expires_at RFC 3339 in the past", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":\"2020-01-01T00:00:00Z\"}" },
	{ "expires_at junk", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":\"tomorrow\"}" },
	{ "expires_at 31 February", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":\"2030-02-31T00:00:00Z\"}" },
	{ "expires_at 29 February of a common year", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":\"2030-02-29T00:00:00Z\"}" },
	{ "expires_at date without zone", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":\"2030-01-01T00:00:00\"}" },
	{ "expires_at a century away", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":4800000000}" },
	{ "expires_at true", P_EXPIRES_AT,
	    "{\"access_token\":\"a\",\"expires_at\":true}" },
	{ "Spotinst pointers, RFC body", P_SPOTINST,
	    "{\"access_token\":\"a\",\"expires_in\":60}" },
	{ "Spotinst, empty items", P_SPOTINST,
	    "{\"response\":{\"items\":[],\"count\":0}}" },
	{ "not JSON", P_RFC, "not json" },
	{ "empty body", P_RFC, "" },
	{ "truncated JSON", P_RFC, "{\"access_token\":\"a\"" },
	{ "single quotes", P_RFC, "{'access_token':'a'}" },
	{ "trailing comma", P_RFC, "{\"access_token\":\"a\",}" },
	{ "trailing garbage", P_RFC, "{\"access_token\":\"a\"} x" },
	{ "two documents", P_RFC, "{\"access_token\":\"a\"}{}" },
	{ "trailing NUL-free junk", P_RFC, "{\"access_token\":\"a\"}]" },
	{ "top level array", P_RFC, "[{\"access_token\":\"a\"}]" },
	{ "top level string", P_RFC, "\"a\"" },
	{ "non-UTF-8 value", P_RFC,
	    "{\"access_token\":\"a\",\"x\":\"\xff\xfe\"}" },
	{ "non-UTF-8 lone continuation byte", P_RFC,
	    "{\"access_token\":\"a\",\"x\":\"\x80\"}" },
	{ "non-UTF-8 truncated sequence", P_RFC,
	    "{\"access_token\":\"a\",\"x\":\"\xe2\x82\"}" },
	{ "non-UTF-8 in a key", P_RFC,
	    "{\"access_token\":\"a\",\"\xfe\":1}" },
	{ "RFC 6749 error with 200", P_RFC,
	    "{\"error\":\"invalid_grant\"}" },
	/* a key twice in one object: json-c keeps the last, others the first */
	{ "duplicate access_token", P_RFC,
	    "{\"access_token\":\"A1\",\"access_token\":\"A2\"}" },
	{ "duplicate refresh_token", P_RFC,
	    "{\"access_token\":\"a\",\"refresh_token\":\"R1\","
	    "\"expires_in\":60,\"refresh_token\":\"R2\"}" },
	{ "duplicate key in a nested object", P_SPOTINST,
	    "{\"response\":{\"items\":[{\"accessToken\":\"a\","
	    "\"expiresIn\":60,\"accessToken\":\"b\"}]}}" },
	{ "duplicate after a string holding braces and quotes", P_RFC,
	    "{\"x\":\"{\\\"access_token\\\":1}\",\"access_token\":\"a\","
	    "\"x\":2}" },
	/* the same key spelt with escapes: json-c decodes them */
	{ "duplicate access_token, one \\u-escaped", P_RFC,
	    "{\"access_token\":\"A1\",\"acc\\u0065ss_token\":\"A2\"}" },
	{ "duplicate access_token, upper-case hex", P_RFC,
	    "{\"\\u0061ccess_token\":\"A1\",\"access\\u005Ftoken\":\"A2\"}" },
	{ "duplicate access_token, the first escaped", P_RFC,
	    "{\"acc\\u0065ss_token\":\"A1\",\"access_token\":\"A2\","
	    "\"expires_in\":60}" },
	{ "duplicate key, \\/ and /", P_RFC,
	    "{\"access_token\":\"a\",\"a/b\":1,\"a\\/b\":2}" },
	{ "duplicate key, \\u00e9 and UTF-8", P_RFC,
	    "{\"access_token\":\"a\",\"caf\\u00e9\":1,\"caf\xc3\xa9\":2}" },
	{ "duplicate key, a surrogate pair and UTF-8", P_RFC,
	    "{\"access_token\":\"a\",\"\\ud83d\\ude00\":1,"
	    "\"\xf0\x9f\x98\x80\":2}" },
	/* json-c reads a lone surrogate as U+FFFD, and cuts a key at NUL */
	{ "duplicate key, two lone surrogates", P_RFC,
	    "{\"access_token\":\"a\",\"\\ud800\":1,\"\\udc00\":2}" },
	{ "duplicate key, cut at \\u0000", P_RFC,
	    "{\"access_token\":\"a\",\"k\\u0000x\":1,\"k\\u0000y\":2}" },
	{ "duplicate access_token, cut at \\u0000", P_RFC,
	    "{\"access_token\":\"A1\",\"access_token\\u0000\":\"A2\"}" },
	{ "duplicate escaped key in a nested object", P_SPOTINST,
	    "{\"response\":{\"items\":[{\"accessToken\":\"a\","
	    "\"expiresIn\":60,\"\\u0061ccessToken\":\"b\"}]}}" },
};

static void
check_rejected_grant(const char *name, const struct account_conf *ac,
    enum grant grant, long status, const char *body, size_t len,
    enum oauth_outcome want)
{
	struct token		 t, keep;
	struct oauth_result	 res;
	int			 rc;

	/* out must be left exactly as it was */
	memset(&t, 0, sizeof t);
	t.access_token = (char *)"untouched";
	t.expires_at = 42;
	keep = t;
	memset(&res, 0, sizeof res);
	rc = oauth_response_parse(ac, grant, NULL, status, body, len, T0, &t,
	    &res);
	if (rc != -1)
		fail_msg("%s: accepted (rc %d)", name, rc);
	CHECK_OUTCOME(name, res.outcome, want);
	if (memcmp(&t, &keep, sizeof t) != 0)
		fail_msg("%s: the output token was changed", name);
	if (res.error[0] == '\0')
		fail_msg("%s: no error text", name);
	if (strlen(res.error) >= sizeof res.error)
		fail_msg("%s: error text not terminated", name);
}

static void
check_rejected(const char *name, const struct account_conf *ac,
    long status, const char *body, size_t len, enum oauth_outcome want)
{
	check_rejected_grant(name, ac, GRANT_CLIENT_CREDENTIALS, status, body,
	    len, want);
}

static void
test_response_bad_table(void **state)
{
	struct account_conf	 ac;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		account_pointers(&ac, bad_cases[i].ps);
		check_rejected(bad_cases[i].name, &ac, 200, bad_cases[i].body,
		    strlen(bad_cases[i].body), OAUTH_RETRY);
	}
}

static char *
nested(int depth)
{
	char	*s, *w;
	int	 i;

	w = s = malloc((size_t)depth * 2 + 64);
	w += sprintf(w, "{\"access_token\":\"a\",\"x\":");
	for (i = 0; i < depth; i++)
		*w++ = '[';
	for (i = 0; i < depth; i++)
		*w++ = ']';
	strcpy(w, "}");
	return s;
}

static void
test_response_limits(void **state)
{
	struct account_conf	 ac;
	struct token		 t;
	struct oauth_result	 res;
	const char		*prefix = "{\"access_token\":\"big\",\"pad\":\"";
	char			*body;
	size_t			 len, plen;

	(void)state;
	account_init(&ac);

	/* moderate nesting is fine, 100 deep is refused */
	body = nested(20);
	memset(&t, 0, sizeof t);
	if (parse(&ac, 200, body, &t, &res) != 0)
		fail_msg("20 deep: rejected: %s", res.error);
	oauth_token_clear(&t);
	free(body);
	body = nested(100);
	check_rejected("100 deep", &ac, 200, body, strlen(body), OAUTH_RETRY);
	free(body);
	body = nested(100000);
	check_rejected("100000 deep", &ac, 200, body, strlen(body),
	    OAUTH_RETRY);
	free(body);

	/* a valid document of exactly 1 MiB is read; one byte more is not */
	len = RESPONSE_MAX;
	body = malloc(len + 2);
	memset(body, ' ', len + 1);
	plen = strlen(prefix);
	memcpy(body, prefix, plen);
	memset(body + plen, 'x', len - plen - 2);
	memcpy(body + len - 2, "\"}", 2);
	body[len] = '\0';
	memset(&t, 0, sizeof t);
	if (oauth_response_parse(&ac, GRANT_CLIENT_CREDENTIALS, NULL, 200, body,
	    len, T0, &t, &res) != 0)
		fail_msg("1 MiB body: rejected: %s", res.error);
	CHECK_STR("1 MiB body", t.access_token, "big");
	oauth_token_clear(&t);
	body[len] = ' ';
	body[len + 1] = '\0';
	check_rejected("1 MiB + 1 body", &ac, 200, body, len + 1, OAUTH_RETRY);
	free(body);

	/* bytes after the document, even behind a NUL, are refused */
	check_rejected("NUL then junk after the document", &ac, 200,
	    "{\"access_token\":\"a\"}\0junk", 24, OAUTH_RETRY);
	check_rejected("space, NUL after the document", &ac, 200,
	    "{\"access_token\":\"a\"} \0", 22, OAUTH_RETRY);

	/* an access token of 64 KiB is taken, one byte more is not */
	len = TOKEN_MAX;
	body = malloc(len + 64);
	strcpy(body, "{\"access_token\":\"");
	memset(body + 17, 'A', len);
	strcpy(body + 17 + len, "\"}");
	memset(&t, 0, sizeof t);
	if (parse(&ac, 200, body, &t, &res) != 0)
		fail_msg("64 KiB token: rejected: %s", res.error);
	assert_int_equal(strlen(t.access_token), TOKEN_MAX);
	oauth_token_clear(&t);
	memset(body + 17, 'A', len + 1);
	strcpy(body + 17 + len + 1, "\"}");
	check_rejected("64 KiB + 1 token", &ac, 200, body, strlen(body),
	    OAUTH_RETRY);
	free(body);
}

struct error_case {
	long			 status;
	const char		*body;
	enum oauth_outcome	 want;
	const char		*in_error;	/* expected in res.error */
	enum grant		 grant;		/* of the request answered */
};

#define OWN	GRANT_CLIENT_CREDENTIALS
#define REFRESH	GRANT_REFRESH_TOKEN

static const struct error_case error_cases[] = {
	{ 400, "{\"error\":\"invalid_grant\","
	    "\"error_description\":\"The refresh token expired\"}",
	    OAUTH_INVALID_GRANT, "invalid_grant", OWN },
	{ 401, "{\"error\":\"invalid_grant\"}", OAUTH_INVALID_GRANT,
	    "invalid_grant", OWN },
	{ 401, "{\"error\":\"invalid_client\"}", OAUTH_PERMANENT,
	    "invalid_client", OWN },
	{ 400, "{\"error\":\"invalid_client\"}", OAUTH_PERMANENT,
	    "invalid_client", OWN },
	{ 400, "{\"error\":\"unauthorized_client\"}", OAUTH_PERMANENT,
	    "unauthorized_client", OWN },
	{ 400, "{\"error\":\"unsupported_grant_type\"}", OAUTH_PERMANENT,
	    "unsupported_grant_type", OWN },
	{ 400, "{\"error\":\"invalid_scope\"}", OAUTH_PERMANENT,
	    "invalid_scope", OWN },
	{ 400, "{\"error\":\"invalid_request\"}", OAUTH_PERMANENT,
	    "invalid_request", OWN },
	{ 400, "{\"error\":\"temporarily_unavailable\"}", OAUTH_RETRY,
	    "temporarily_unavailable", OWN },
	{ 400, "{\"error\":\"INVALID_GRANT\"}", OAUTH_RETRY, "INVALID_GRANT", OWN },
	{ 400, "{\"error\":\"invalid grant\"}", OAUTH_RETRY, "invalid?grant", OWN },
	{ 400, "{\"error\":5}", OAUTH_RETRY, "400", OWN },
	{ 400, "{\"message\":\"bad\"}", OAUTH_RETRY, "400", OWN },
	{ 400, "[\"invalid_grant\"]", OAUTH_RETRY, "400", OWN },
	{ 400, "<html><body>Bad Request</body></html>", OAUTH_RETRY, "400", OWN },
	{ 400, "", OAUTH_RETRY, "400", OWN },
	{ 400, "{\"error\":\"invalid_grant\"} trailing", OAUTH_RETRY, "400", OWN },
	/* 401/403 on the own grant: refused, whatever the body (glewlwyd) */
	{ 401, "Unauthorized", OAUTH_PERMANENT, "refused credentials", OWN },
	{ 403, "", OAUTH_PERMANENT, "refused credentials", OWN },
	{ 403, "{\"error\":\"temporarily_unavailable\"}", OAUTH_PERMANENT,
	    "403 temporarily_unavailable", OWN },
	{ 401, "{\"error\":\"invalid_token\"}", OAUTH_PERMANENT,
	    "401 invalid_token", OWN },
	{ 400, "", OAUTH_RETRY, "without an OAuth error", OWN },
	/* a refresh: refused refresh tokens in several dialects */
	{ 400, "", OAUTH_INVALID_GRANT, "refused refresh token", REFRESH },
	{ 401, "", OAUTH_INVALID_GRANT, "refused refresh token", REFRESH },
	{ 403, "Forbidden", OAUTH_INVALID_GRANT, "refused refresh token",
	    REFRESH },
	{ 400, "{\"error\":\"invalid_request\"}", OAUTH_INVALID_GRANT,
	    "invalid_request, taken as a refused refresh token", REFRESH },
	{ 400, "{\"error\":\"invalid_grant\"}", OAUTH_INVALID_GRANT,
	    "invalid_grant", REFRESH },
	{ 401, "{\"error\":\"invalid_client\"}", OAUTH_PERMANENT,
	    "invalid_client", REFRESH },
	{ 400, "{\"error\":\"temporarily_unavailable\"}", OAUTH_RETRY,
	    "temporarily_unavailable", REFRESH },
	{ 404, "", OAUTH_RETRY, "404", REFRESH },
	{ 500, "", OAUTH_RETRY, "500", REFRESH },
	{ 429, "", OAUTH_RATE_LIMITED, "429", REFRESH },
	{ 429, "", OAUTH_RATE_LIMITED, "429", OWN },
	{ 429, "{\"error\":\"invalid_grant\"}", OAUTH_RATE_LIMITED, "429", OWN },
	{ 503, "<html>down</html>", OAUTH_RATE_LIMITED, "503", OWN },
	{ 500, "{\"error\":\"server_error\"}", OAUTH_RETRY, "500", OWN },
	{ 500, "", OAUTH_RETRY, "500", OWN },
	{ 502, "Bad Gateway", OAUTH_RETRY, "502", OWN },
	{ 504, "", OAUTH_RETRY, "504", OWN },
	{ 403, "{\"error\":\"invalid_client\"}", OAUTH_PERMANENT,
	    "403 invalid_client", OWN },
	{ 404, "{\"error\":\"invalid_client\"}", OAUTH_PERMANENT,
	    "404 invalid_client", OWN },
	{ 404, "not found", OAUTH_RETRY, "404", OWN },
	{ 302, "", OAUTH_RETRY, "302", OWN },
	{ 100, "", OAUTH_RETRY, "100", OWN },
};

static void
test_response_errors(void **state)
{
	struct account_conf	 ac;
	struct oauth_result	 res;
	struct token		 t;
	enum grant		 grant;
	char			 what[160];
	size_t			 i;

	(void)state;
	account_init(&ac);
	for (i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
		grant = error_cases[i].grant;
		snprintf(what, sizeof what, "HTTP %ld %s (%s)",
		    error_cases[i].status, error_cases[i].body,
		    grant == REFRESH ? "refresh" : "own grant");
		check_rejected_grant(what, &ac, grant, error_cases[i].status,
		    error_cases[i].body, strlen(error_cases[i].body),
		    error_cases[i].want);
		memset(&t, 0, sizeof t);
		(void)parse_grant(&ac, grant, error_cases[i].status,
		    error_cases[i].body, &t, &res);
		if (strstr(res.error, error_cases[i].in_error) == NULL)
			fail_msg("%s: error '%s' does not say '%s'", what,
			    res.error, error_cases[i].in_error);
	}
}

/*
 * No error text ever carries a token or a secret; of a server's prose
 * only an error_description, in an OAuth error answer.
 */
#define AT	"AT-SECRET-1a2b3c"
#define RT	"RT-SECRET-4d5e6f"
#define DESC	"DESC-PROSE-7g8h9i"

static void
test_response_error_text_is_safe(void **state)
{
	static const struct {
		long		 status;
		const char	*body;
		int		 desc_kept;
	} cases[] = {
		{ 400, "{\"error\":\"invalid_grant\",\"error_description\":\""
		    DESC "\",\"refresh_token\":\"" RT "\"}", 1 },
		{ 401, "{\"error\":\"invalid_client\",\"error_description\":\""
		    DESC "\",\"error_uri\":\"https://x/" AT "\"}", 1 },
		{ 400, "{\"error\":\"odd_error\",\"error_description\":\""
		    DESC "\"}", 1 },
		{ 400, "{\"error_description\":\"" DESC "\"}", 0 },
		{ 400, DESC, 0 },
		{ 429, "{\"error_description\":\"" DESC "\"}", 0 },
		{ 500, DESC " " AT " " RT, 0 },
		{ 200, "{\"access_token\":\"" AT " x\",\"refresh_token\":\""
		    RT "\"}", 0 },
		{ 200, "{\"access_token\":\"" AT "\",\"refresh_token\":\""
		    RT " x\"}", 0 },
		{ 200, "{\"access_token\":\"" AT "\",\"refresh_token\":\""
		    RT "\",\"expires_in\":\"" DESC "\"}", 0 },
		{ 200, "{\"access_token\":\"" AT "\",\"refresh_token\":\""
		    RT "\",\"token_type\":\"" DESC " x\"}", 0 },
		{ 200, "{\"access_token\":\"" AT "\",\"refresh_token\":\""
		    RT "\",\"error_description\":\"" DESC "\"} " DESC, 0 },
		{ 200, "{\"access_token\":\"" AT "\",\"expires_in\":-1,"
		    "\"error_description\":\"" DESC "\"}", 0 },
		{ 200, "{\"token\":\"" AT "\",\"error_description\":\"" DESC
		    "\"}", 0 },
	};
	struct account_conf	 ac;
	struct oauth_result	 res;
	struct token		 t;
	size_t			 i;

	(void)state;
	account_init(&ac);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&t, 0, sizeof t);
		memset(&res, 0, sizeof res);
		if (parse(&ac, cases[i].status, cases[i].body, &t, &res) != -1)
			fail_msg("case %zu: accepted", i);
		if (strstr(res.error, "SECRET") != NULL)
			fail_msg("case %zu: error text '%s' holds a value from "
			    "the body", i, res.error);
		if ((strstr(res.error, DESC) != NULL) != cases[i].desc_kept)
			fail_msg("case %zu: error text '%s' %s the description",
			    i, res.error, cases[i].desc_kept ? "lacks" :
			    "holds");
	}
}

/*
 * error_description is kept after the error, sanitised and capped, and
 * dropped whole when it repeats a secret the request sent.
 */
static void
test_response_error_description(void **state)
{
	static const struct {
		enum grant	 grant;
		long		 status;
		const char	*body;
		const char	*want;
	} cases[] = {
		{ GRANT_PASSWORD, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":\"bad username or password\"}",
		    "HTTP 400 invalid_grant: bad username or password" },
		{ GRANT_PASSWORD, 401, "{\"error\":\"invalid_client\","
		    "\"error_description\":\"bad client credentials\"}",
		    "HTTP 401 invalid_client: bad client credentials" },
		{ GRANT_REFRESH_TOKEN, 400, "{\"error\":\"invalid_request\","
		    "\"error_description\":\"unknown token\"}",
		    "HTTP 400 invalid_request, taken as a refused refresh token: "
		    "unknown token" },
		/* control characters and non-ASCII bytes become '?' */
		{ GRANT_PASSWORD, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":\"a\\nb\\tc\\u00e9\\u001b[1m\"}",
		    "HTTP 400 invalid_grant: a?b?c???[1m" },
		/* nothing to add: empty, absent, not a string */
		{ GRANT_PASSWORD, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":\"\"}", "HTTP 400 invalid_grant" },
		{ GRANT_PASSWORD, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":5}", "HTTP 400 invalid_grant" },
		{ GRANT_PASSWORD, 400, "{\"error\":\"invalid_grant\"}",
		    "HTTP 400 invalid_grant" },
		/* a secret sent, verbatim: the whole description goes */
		{ GRANT_PASSWORD, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":\"password pw-0815-secret is wrong\"}",
		    "HTTP 400 invalid_grant" },
		{ GRANT_PASSWORD, 401, "{\"error\":\"invalid_client\","
		    "\"error_description\":\"secret cs-4711-secret?\"}",
		    "HTTP 401 invalid_client" },
		{ GRANT_REFRESH_TOKEN, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":\"rt-sent-42 is dead\"}",
		    "HTTP 400 invalid_grant" },
		{ GRANT_REFRESH_TOKEN, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":\"first rt-first-1 reused\"}",
		    "HTTP 400 invalid_grant" },
		/* an error code that echoes one: it still decides, unseen */
		{ GRANT_REFRESH_TOKEN, 400, "{\"error\":\"x-rt-sent-42\"}",
		    "HTTP 400 (an error code that repeats a secret sent)" },
		{ GRANT_PASSWORD, 401, "{\"error\":\"pw-0815-secret\"}",
		    "HTTP 401 (an error code that repeats a secret sent)" },
		/* behind a NUL, where a plain search would not look */
		{ GRANT_PASSWORD, 400, "{\"error\":\"invalid_grant\","
		    "\"error_description\":\"x\\u0000pw-0815-secret\"}",
		    "HTTP 400 invalid_grant" },
	};
	struct account_conf	 ac;
	struct oauth_result	 res;
	struct token		 t;
	char			 body[600], want[320];
	size_t			 i;

	(void)state;
	account_init(&ac);
	ac.grant = GRANT_PASSWORD;
	ac.client_secret = (char *)"cs-4711-secret";
	ac.password = (char *)"pw-0815-secret";
	ac.refresh_token = (char *)"rt-first-1";
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&res, 0, sizeof res);
		if (oauth_response_parse(&ac, cases[i].grant, "rt-sent-42",
		    cases[i].status, cases[i].body, strlen(cases[i].body), T0,
		    &t, &res) != -1)
			fail_msg("case %zu: accepted", i);
		CHECK_STR(cases[i].body, res.error, cases[i].want);
	}

	/* a long one is cut at OAUTH_DESCRIPTION_MAX bytes */
	snprintf(body, sizeof body, "{\"error\":\"invalid_grant\","
	    "\"error_description\":\"%0500d\"}", 0);
	snprintf(want, sizeof want, "HTTP 400 invalid_grant: %0*d",
	    OAUTH_DESCRIPTION_MAX, 0);
	(void)oauth_response_parse(&ac, GRANT_PASSWORD, NULL, 400, body,
	    strlen(body), T0, &t, &res);
	CHECK_STR("500 bytes of description", res.error, want);

	/* echoed as the request encoded it, form body or Basic pair */
	ac.password = (char *)"p@ss w0rd!";
	ac.client_secret = (char *)"c~s/1 2";
	snprintf(body, sizeof body, "{\"error\":\"invalid_grant\","
	    "\"error_description\":\"password=p%%40ss+w0rd%%21 is wrong\"}");
	(void)oauth_response_parse(&ac, GRANT_PASSWORD, NULL, 400, body,
	    strlen(body), T0, &t, &res);
	CHECK_STR("a form-encoded password", res.error,
	    "HTTP 400 invalid_grant");
	snprintf(body, sizeof body, "{\"error\":\"invalid_client\","
	    "\"error_description\":\"bad pair id:c~s%%2F1%%202\"}");
	(void)oauth_response_parse(&ac, GRANT_PASSWORD, NULL, 401, body,
	    strlen(body), T0, &t, &res);
	CHECK_STR("a Basic-encoded secret", res.error,
	    "HTTP 401 invalid_client");
}

/* ---- tokens ---- */

static void
test_token_helpers(void **state)
{
	struct token	 a, b;

	(void)state;
	memset(&a, 0, sizeof a);
	assert_false(oauth_token_valid(&a, T0));
	a.access_token = strdup("tok");
	a.refresh_token = strdup("rt");
	a.token_type = strdup("Bearer");
	a.expires_at = T0 + SEC;
	a.obtained_at = T0 - SEC;
	assert_true(oauth_token_valid(&a, T0));
	assert_false(oauth_token_valid(&a, T0 + SEC));
	oauth_token_clear(&a);
	assert_null(a.access_token);
	assert_null(a.refresh_token);
	assert_true(a.expires_at == 0);
	memset(&b, 0, sizeof b);
	b.access_token = strdup("static");
	b.expires_at = 0;		/* never expires */
	assert_true(oauth_token_valid(&b, INT64_MAX));
	oauth_token_clear(&b);
}

/* RFC 3339 dates: the day must exist in its month (leap years too). */
static void
test_parse_rfc3339_dates(void **state)
{
	static const struct {
		const char	*in;
		int64_t		 want_s;	/* -1: refused */
	} cases[] = {
		{ "2023-11-14T22:13:20Z", 1700000000 },
		{ "2024-02-29T00:00:00Z", 1709164800 },	/* leap year */
		{ "2000-02-29T00:00:00Z", 951782400 },	/* 400: leap */
		{ "2030-01-31T00:00:00Z", 1896048000 },
		{ "2030-12-31T23:59:59Z", 1924991999 },
		{ "2030-02-31T00:00:00Z", -1 },
		{ "2030-02-30T00:00:00Z", -1 },
		{ "2030-02-29T00:00:00Z", -1 },		/* not a leap year */
		{ "2100-02-29T00:00:00Z", -1 },		/* 100: not leap */
		{ "2030-04-31T00:00:00Z", -1 },
		{ "2030-06-31T00:00:00Z", -1 },
		{ "2030-09-31T00:00:00Z", -1 },
		{ "2030-11-31T00:00:00Z", -1 },
		{ "2030-01-32T00:00:00Z", -1 },
		{ "2030-01-00T00:00:00Z", -1 },
		{ "2030-00-10T00:00:00Z", -1 },
		{ "2030-13-10T00:00:00Z", -1 },
	};
	char	 what[64];
	int64_t	 got;
	size_t	 i;
	int	 rc;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		got = -1;
		rc = parse_rfc3339(cases[i].in, &got);
		snprintf(what, sizeof what, "%s", cases[i].in);
		if (cases[i].want_s < 0)
			CHECK_I64(what, rc, -EINVAL);
		else {
			CHECK_I64(what, rc, 0);
			CHECK_I64(what, got, cases[i].want_s * SEC);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_form_encode),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_request_build_table),
		cmocka_unit_test(test_request_build_errors),
		cmocka_unit_test(test_assertion_client),
		cmocka_unit_test(test_assertion_hmac),
		cmocka_unit_test(test_assertion_grant),
		cmocka_unit_test(test_assertion_requests),
		cmocka_unit_test(test_response_client_refused),
		cmocka_unit_test(test_json_pointer),
		cmocka_unit_test(test_response_ok_table),
		cmocka_unit_test(test_response_2xx),
		cmocka_unit_test(test_response_jwt),
		cmocka_unit_test(test_response_bad_table),
		cmocka_unit_test(test_response_limits),
		cmocka_unit_test(test_response_errors),
		cmocka_unit_test(test_response_error_text_is_safe),
		cmocka_unit_test(test_response_error_description),
		cmocka_unit_test(test_token_helpers),
		cmocka_unit_test(test_parse_rfc3339_dates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
