/*
 * OAuth 2.0 without I/O: build a token request (RFC 6749 sections 4.3, 4.4
 * and 6, client authentication per 2.3.1), and turn a token endpoint's
 * answer into a struct token through the account's JSON pointers
 * (RFC 6901). Time is a parameter.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/rand.h>

#include "tokend.h"

#define JSON_DEPTH_MAX		32
#define LIFETIME_MAX		(10LL * 366 * 86400)	/* seconds */

/* ---- encodings ---- */

/* RFC 3986 2.3: the characters no encoding ever changes. */
static int
oauth_unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~';
}

/* Percent-encode s; `form`: the WHATWG form rules, else RFC 3986's. */
static char *
oauth_percent_encode(const char *s, int form)
{
	static const char hex[] = "0123456789ABCDEF";
	char		*out, *w;
	unsigned char	 c;

	w = out = xcalloc(1, strlen(s) * 3 + 1);
	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (form ? (oauth_unreserved(c) && c != '~') || c == '*' :
		    oauth_unreserved(c))
			*w++ = (char)c;
		else if (form && c == ' ')
			*w++ = '+';
		else {
			*w++ = '%';
			*w++ = hex[c >> 4];
			*w++ = hex[c & 15];
		}
	}
	*w = '\0';
	return out;
}

/* application/x-www-form-urlencoded, as the WHATWG URL standard has it. */
char *
oauth_form_encode(const char *s)
{
	return oauth_percent_encode(s, 1);
}

/*
 * One half of an HTTP Basic pair for client_secret_basic (RFC 6749
 * 2.3.1). Only what RFC 3986 does not leave unreserved is encoded, and a
 * space is %20: a server that decodes the pair (as 2.3.1 says) reads the
 * same as from the WHATWG form encoding, and one that does not (authlib,
 * glewlwyd) still reads letters, digits and "-._~" right, so a secret
 * such as Microsoft Entra ID's with "~" works with both.
 */
char *
oauth_basic_encode(const char *s)
{
	return oauth_percent_encode(s, 0);
}

/* 1 when s is the same in every Basic encoding: nothing to mishandle. */
int
oauth_basic_safe(const char *s)
{
	for (; *s != '\0'; s++)
		if (!oauth_unreserved((unsigned char)*s))
			return 0;
	return 1;
}

char *
oauth_base64(const unsigned char *in, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char		*out, *w;
	size_t		 i;
	uint32_t	 v;

	w = out = xcalloc(1, (len + 2) / 3 * 4 + 1);
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*w++ = tab[v >> 18];
		*w++ = tab[(v >> 12) & 63];
		*w++ = tab[(v >> 6) & 63];
		*w++ = tab[v & 63];
	}
	if (i < len) {
		v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		*w++ = tab[v >> 18];
		*w++ = tab[(v >> 12) & 63];
		*w++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*w++ = '=';
	}
	*w = '\0';
	return out;
}

/* base64url without padding (RFC 4648 5): PKCE (RFC 7636 appendix A), JWS. */
char *
oauth_base64url(const unsigned char *in, size_t len)
{
	char	*s = oauth_base64(in, len), *p;

	for (p = s; *p != '\0'; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
		else if (*p == '=') {
			*p = '\0';
			break;
		}
	}
	return s;
}

/* base64url without padding (JWT), into a NUL-terminated buffer. */
static int
oauth_base64url_decode(const char *in, size_t len, char **out, size_t *outlen)
{
	unsigned char	*buf;
	uint32_t	 acc = 0;
	size_t		 i, n = 0;
	int		 bits = 0, v;
	char		 c;

	buf = xcalloc(1, len * 3 / 4 + 2);
	for (i = 0; i < len; i++) {
		c = in[i];
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-' || c == '+')
			v = 62;
		else if (c == '_' || c == '/')
			v = 63;
		else if (c == '=')
			break;
		else {
			free(buf);
			return -EINVAL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (unsigned char)(acc >> bits);
		}
	}
	buf[n] = '\0';
	*out = (char *)buf;
	*outlen = n;
	return 0;
}

/* ---- requests ---- */

struct form {
	char	*buf;
	size_t	 len;
};

static void
oauth_form_add(struct form *f, const char *name, const char *value)
{
	char	*ev, *next;

	if (value == NULL)
		return;
	ev = oauth_form_encode(value);
	xasprintf(&next, "%s%s%s=%s", f->buf != NULL ? f->buf : "",
	    f->buf != NULL ? "&" : "", name, ev);
	freezero_str(ev);
	freezero_str(f->buf);
	f->buf = next;
}

/* ---- signed assertions (RFC 7523) ---- */

/* Whether a request of `grant` carries a freshly signed assertion. */
int
oauth_uses_assertion(const struct account_conf *ac, enum grant grant)
{
	return grant == GRANT_JWT_BEARER || CLIENT_AUTH_IS_JWT(ac->client_auth);
}

static void
oauth_claim_str(struct json_object *o, const char *name, const char *value)
{
	json_object_object_add(o, name, json_object_new_string(value));
}

/*
 * A signed JWT for a request to url at wall second now: the grant itself
 * (grant = jwt_bearer, RFC 7523 2.1) or the client's authentication
 * (private_key_jwt and client_secret_jwt, RFC 7523 2.2 and OIDC Core 9).
 * jti is ASSERTION_JTI_BYTES random bytes, drawn here when NULL. NULL
 * with a cause when it cannot be made; the cause holds no key material.
 */
char *
oauth_assertion(const struct account_conf *ac, enum grant grant,
    const char *url, int64_t now, const unsigned char *jti, char **cause)
{
	struct json_object	*hdr, *cl;
	unsigned char		 rnd[ASSERTION_JTI_BYTES];
	const char		*iss, *h, *p;
	char			*id, *jwt;
	int64_t			 life = ac->assertion_lifetime / MSEC_PER_SEC;
	int			 bearer, hmac;
	size_t			 i;

	bearer = grant == GRANT_JWT_BEARER &&
	    ac->assertion_in == ASSERTION_IN_BEARER;
	hmac = grant != GRANT_JWT_BEARER &&
	    ac->client_auth == CLIENT_AUTH_CLIENT_SECRET_JWT;
	iss = grant == GRANT_JWT_BEARER && ac->assertion_iss != NULL ?
	    ac->assertion_iss : ac->client_id;
	if (hmac ? ac->client_secret == NULL : ac->client_key == NULL) {
		*cause = xstrdup(hmac ? "client_secret_jwt needs the client "
		    "secret" : "a signed assertion needs client_key_file");
		return NULL;
	}
	if (jti == NULL) {
		if (RAND_bytes(rnd, sizeof rnd) != 1) {
			*cause = xstrdup("no random bytes for the jti");
			return NULL;
		}
		jti = rnd;
	}

	hdr = json_object_new_object();
	oauth_claim_str(hdr, "alg", hmac ? "HS256" :
	    jws_alg_name((enum jws_alg)ac->client_key_alg));
	oauth_claim_str(hdr, "typ", "JWT");
	if (ac->client_key_id != NULL)
		oauth_claim_str(hdr, "kid", ac->client_key_id);
	/* the certificate a client's key is registered as (Entra ID) */
	if (!hmac && grant != GRANT_JWT_BEARER && ac->client_cert_x5t != NULL)
		oauth_claim_str(hdr, "x5t", ac->client_cert_x5t);
	if (!hmac && grant != GRANT_JWT_BEARER &&
	    ac->client_cert_x5t256 != NULL)
		oauth_claim_str(hdr, "x5t#S256", ac->client_cert_x5t256);

	cl = json_object_new_object();
	if (iss != NULL)
		oauth_claim_str(cl, "iss", iss);
	if (bearer) {
		/* GitHub: iat a minute back for drift, exp within 10 min */
		json_object_object_add(cl, "iat",
		    json_object_new_int64(now - ASSERTION_BACKDATE_S));
		json_object_object_add(cl, "exp",
		    json_object_new_int64(now + life));
	} else {
		/* a service account's sub would name a user to act as */
		if (iss != NULL && !ac->scope_in_assertion)
			oauth_claim_str(cl, "sub", iss);
		oauth_claim_str(cl, "aud", ac->assertion_audience != NULL ?
		    ac->assertion_audience : url);
		id = oauth_base64url(jti, ASSERTION_JTI_BYTES);
		oauth_claim_str(cl, "jti", id);
		free(id);
		json_object_object_add(cl, "iat", json_object_new_int64(now));
		json_object_object_add(cl, "exp",
		    json_object_new_int64(now + life));
		if (grant == GRANT_JWT_BEARER && ac->scope_in_assertion &&
		    ac->scope != NULL)
			oauth_claim_str(cl, "scope", ac->scope);
	}
	/* assertion.CLAIM: added last, so iss, sub or aud may be replaced */
	for (i = 0; i < ac->nclaims; i++)
		oauth_claim_str(cl, ac->claims[i].name, ac->claims[i].value);

	h = json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	p = json_object_to_json_string_ext(cl, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	jwt = hmac ? jws_sign_hmac(ac->client_secret, strlen(ac->client_secret),
	    h, p) : jws_sign(ac->client_key, (enum jws_alg)ac->client_key_alg,
	    h, p);
	json_object_put(hdr);
	json_object_put(cl);
	if (jwt == NULL)
		*cause = xstrdup("signing the assertion failed");
	return jwt;
}

/*
 * The client's credentials, in the form or an Authorization header;
 * url and now are what a signed client assertion names.
 */
static int
oauth_client_auth(const struct account_conf *ac, enum client_auth auth,
    const char *url, int64_t now, struct form *f, struct oauth_request *out,
    char **cause)
{
	char	*id, *secret, *pair, *jwt;

	switch (auth) {
	case CLIENT_AUTH_BASIC:
		/* RFC 6749 2.3.1: each half encoded before base64, or raw */
		id = ac->client_id != NULL ? ac->client_id : "";
		secret = ac->client_secret != NULL ? ac->client_secret : "";
		if (ac->basic_encoding == BASIC_ENCODING_RAW) {
			id = xstrdup(id);
			secret = xstrdup(secret);
		} else {
			id = oauth_basic_encode(id);
			secret = oauth_basic_encode(secret);
		}
		xasprintf(&pair, "%s:%s", id, secret);
		freezero_str(id);
		freezero_str(secret);
		secret = oauth_base64((unsigned char *)pair, strlen(pair));
		freezero_str(pair);
		xasprintf(&out->authorization, "Basic %s", secret);
		freezero_str(secret);
		break;
	case CLIENT_AUTH_POST:
		oauth_form_add(f, "client_id", ac->client_id);
		oauth_form_add(f, "client_secret", ac->client_secret);
		break;
	case CLIENT_AUTH_PRIVATE_KEY_JWT:
	case CLIENT_AUTH_CLIENT_SECRET_JWT:
		/* a fresh jti at every request, retries included */
		if ((jwt = oauth_assertion(ac, GRANT_CLIENT_CREDENTIALS, url,
		    now, NULL, cause)) == NULL)
			return -1;
		oauth_form_add(f, "client_id", ac->client_id);
		oauth_form_add(f, "client_assertion_type",
		    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
		oauth_form_add(f, "client_assertion", jwt);
		freezero_str(jwt);
		break;
	case CLIENT_AUTH_NONE:
	case CLIENT_AUTH_TLS:
	case CLIENT_AUTH_SELF_SIGNED_TLS:
		/* mutual TLS: the certificate is the credential (http.c) */
		oauth_form_add(f, "client_id", ac->client_id);
		break;
	}
	return 0;
}

/*
 * Build the request for `grant` (GRANT_REFRESH_TOKEN uses refresh_token,
 * which must then be set) at wall second now (what assertions are dated
 * by). The body and the Authorization header hold secrets:
 * oauth_request_clear wipes them.
 */
int
oauth_request_build(const struct account_conf *ac, enum grant grant,
    const char *refresh_token, int64_t now, struct oauth_request *out,
    char **cause)
{
	struct form	 f = { NULL, 0 };
	char		*jwt;
	size_t		 i;

	memset(out, 0, sizeof *out);
	out->url = grant == GRANT_REFRESH_TOKEN ? ac->refresh_url :
	    ac->token_url;
	switch (grant) {
	case GRANT_CLIENT_CREDENTIALS:
		oauth_form_add(&f, "grant_type", "client_credentials");
		break;
	case GRANT_PASSWORD:
		oauth_form_add(&f, "grant_type", "password");
		oauth_form_add(&f, "username", ac->username);
		oauth_form_add(&f, "password", ac->password);
		break;
	case GRANT_REFRESH_TOKEN:
		if (refresh_token == NULL) {
			*cause = xstrdup("no refresh token is held");
			return -1;
		}
		oauth_form_add(&f, "grant_type", "refresh_token");
		oauth_form_add(&f, "refresh_token", refresh_token);
		break;
	case GRANT_JWT_BEARER:
		if ((jwt = oauth_assertion(ac, grant, out->url, now, NULL,
		    cause)) == NULL)
			return -1;
		if (ac->assertion_in == ASSERTION_IN_BEARER) {
			/* the JWT is the whole request: nothing in the body */
			xasprintf(&out->authorization, "Bearer %s", jwt);
			freezero_str(jwt);
			out->body = xstrdup("");
			return 0;
		}
		oauth_form_add(&f, "grant_type",
		    "urn:ietf:params:oauth:grant-type:jwt-bearer");
		oauth_form_add(&f, "assertion", jwt);
		freezero_str(jwt);
		break;
	case GRANT_STATIC:
		*cause = xstrdup("a static token is never requested");
		return -1;
	case GRANT_DEVICE_CODE:
	case GRANT_AUTHORIZATION_CODE:
		/* login.c builds these; here only their refreshes */
		*cause = xstrdup("needs a login: run tokenctl login");
		return -1;
	}

	/* the assertion names the client: client_id only if asked for */
	if ((grant != GRANT_JWT_BEARER || ac->client_auth != CLIENT_AUTH_NONE) &&
	    oauth_client_auth(ac, ac->client_auth, out->url, now, &f, out,
	    cause) != 0) {
		freezero_str(f.buf);
		freezero_str(out->authorization);
		out->authorization = NULL;
		return -1;
	}

	/* a refresh keeps the scope it was granted (RFC 6749 section 6) */
	if (grant != GRANT_REFRESH_TOKEN && !ac->scope_in_assertion)
		oauth_form_add(&f, "scope", ac->scope);
	oauth_form_add(&f, "audience", ac->audience);
	oauth_form_add(&f, "resource", ac->resource);
	for (i = 0; i < ac->nparams; i++)
		oauth_form_add(&f, ac->params[i].name, ac->params[i].value);

	out->body = f.buf != NULL ? f.buf : xstrdup("");
	return 0;
}

/*
 * A request of a login flow (RFC 8628 device authorization and polling,
 * RFC 6749 4.1.3 code exchange) to `url`: the given parameters, the
 * client's credentials, and the account's audience, resource and
 * param.NAME. Secrets as for oauth_request_build.
 */
int
oauth_login_request_build(const struct account_conf *ac,
    enum client_auth auth, const char *url, const struct form_param *params,
    size_t nparams, int64_t now, struct oauth_request *out, char **cause)
{
	struct form	 f = { NULL, 0 };
	size_t		 i;

	memset(out, 0, sizeof *out);
	for (i = 0; i < nparams; i++)
		oauth_form_add(&f, params[i].name, params[i].value);
	if (oauth_client_auth(ac, auth, url, now, &f, out, cause) != 0) {
		freezero_str(f.buf);
		return -1;
	}
	oauth_form_add(&f, "audience", ac->audience);
	oauth_form_add(&f, "resource", ac->resource);
	for (i = 0; i < ac->nparams; i++)
		oauth_form_add(&f, ac->params[i].name, ac->params[i].value);
	out->url = (char *)url;
	out->body = f.buf != NULL ? f.buf : xstrdup("");
	return 0;
}

/*
 * A revocation request (RFC 7009 2.1) for `token` at `url`, hint
 * "refresh_token" or "access_token", with the client's authentication as
 * at the token endpoint. The body and header hold secrets.
 */
int
oauth_revoke_build(const struct account_conf *ac, const char *url,
    const char *token, const char *hint, int64_t now,
    struct oauth_request *out, char **cause)
{
	struct form	 f = { NULL, 0 };

	memset(out, 0, sizeof *out);
	oauth_form_add(&f, "token", token);
	oauth_form_add(&f, "token_type_hint", hint);
	if (oauth_client_auth(ac, ac->client_auth, url, now, &f, out,
	    cause) != 0) {
		freezero_str(f.buf);
		return -1;
	}
	out->url = (char *)url;
	out->body = f.buf != NULL ? f.buf : xstrdup("");
	return 0;
}

/*
 * The POST of request r as the account sends it: its trust anchor,
 * proxy, timeout and client certificate. Everything is borrowed from r
 * and ac; the caller sets what is its own (fresh_connect).
 */
void
oauth_http_post(const struct account_conf *ac, const struct oauth_request *r,
    struct http_post *p)
{
	memset(p, 0, sizeof *p);
	p->url = r->url;
	p->body = r->body;
	p->authorization = r->authorization;
	p->ca_file = ac->ca_file;
	p->proxy = ac->proxy;
	p->timeout_ms = ac->timeout;
	p->allow_http = ac->allow_http;
	p->client_cert = ac->client_cert;
	p->client_cert_len = ac->client_cert_len;
	p->client_key = ac->client_key_pem;
	p->client_key_len = ac->client_key_pem_len;
}

void
oauth_request_clear(struct oauth_request *r)
{
	freezero_str(r->body);
	freezero_str(r->authorization);
	memset(r, 0, sizeof *r);
}

/* ---- responses ---- */

/*
 * Resolve an RFC 6901 pointer in a json-c document. 0 and *out set, or
 * -ENOENT when it leads nowhere, -EINVAL when the pointer is malformed.
 */
int
oauth_json_pointer(const char *ptr, const void *root, const void **out)
{
	struct json_object	*cur = (struct json_object *)root, *next;
	char			 tok[256];
	const char		*p = ptr, *end;
	size_t			 n, i;
	unsigned long		 idx;
	char			*e;

	if (*p == '\0') {
		*out = cur;
		return 0;
	}
	if (*p != '/')
		return -EINVAL;
	while (*p == '/') {
		p++;
		end = p + strcspn(p, "/");
		for (n = 0; p < end; p++) {
			if (n + 1 >= sizeof tok)
				return -EINVAL;
			if (*p == '~') {
				if (p + 1 >= end || (p[1] != '0' && p[1] != '1'))
					return -EINVAL;
				tok[n++] = p[1] == '0' ? '~' : '/';
				p++;
			} else
				tok[n++] = *p;
		}
		tok[n] = '\0';
		if (json_object_is_type(cur, json_type_object)) {
			if (!json_object_object_get_ex(cur, tok, &next))
				return -ENOENT;
		} else if (json_object_is_type(cur, json_type_array)) {
			if (n == 0 || (n > 1 && tok[0] == '0'))
				return -ENOENT;
			for (i = 0; i < n; i++)
				if (tok[i] < '0' || tok[i] > '9')
					return -ENOENT;
			errno = 0;
			idx = strtoul(tok, &e, 10);
			if (errno != 0 || idx >= json_object_array_length(cur))
				return -ENOENT;
			next = json_object_array_get_idx(cur, idx);
		} else
			return -ENOENT;
		cur = next;
	}
	*out = cur;
	return 0;
}

/* Look a pointer up; NULL when unset, absent or JSON null. */
static struct json_object *
oauth_lookup(const char *ptr, struct json_object *root)
{
	const void	*v;

	if (ptr == NULL || oauth_json_pointer(ptr, root, &v) != 0)
		return NULL;
	return (struct json_object *)v;
}

/* An error code safe to log: [A-Za-z0-9_.-], at most 64 characters. */
static void
oauth_sanitize_code(const char *in, char *out, size_t len)
{
	size_t	 i;

	for (i = 0; in[i] != '\0' && i + 1 < len && i < 64; i++) {
		char c = in[i];
		out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		    c == '-') ? c : '?';
	}
	out[i] = '\0';
}

struct json_object *
oauth_parse_json(const char *body, size_t len, const char **why)
{
	struct json_tokener	*tok;
	struct json_object	*obj;
	size_t			 end;

	if (len > RESPONSE_MAX) {
		*why = "body larger than 1 MiB";
		return NULL;
	}
	if ((tok = json_tokener_new_ex(JSON_DEPTH_MAX)) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, body, (int)len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		*why = json_tokener_get_error(tok) == json_tokener_error_depth ?
		    "JSON nested too deeply" : "not valid JSON";
		json_object_put(obj);
		json_tokener_free(tok);
		return NULL;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (end < len && (body[end] == ' ' || body[end] == '\t' ||
	    body[end] == '\r' || body[end] == '\n'))
		end++;
	if (end != len) {
		*why = "trailing bytes after the JSON value";
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

/*
 * Does any object in this (already valid) JSON text name a key twice?
 * json-c keeps the last value, another parser may keep the first: in a
 * token answer that ambiguity is refused, never resolved. Keys compare as
 * json-c reads them, escapes decoded ("acc\u0065ss_token" is access_token)
 * and cut at a \u0000, where json-c cuts them; so a pair that either
 * json-c or a stricter reader takes for one key is refused. Objects with
 * more than JSON_KEYS_MAX keys are refused too.
 */
#define JSON_KEYS_MAX		1024

struct json_key {
	const char	*at;
	size_t		 len;
};

/* Four hex digits at p, or -1. */
static long
oauth_json_hex4(const char *p, const char *end)
{
	long	 v = 0;
	int	 i;

	if (end - p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		v <<= 4;
		if (p[i] >= '0' && p[i] <= '9')
			v |= p[i] - '0';
		else if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f')
			v |= (p[i] | 0x20) - 'a' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * Decode the JSON string that starts at p (past its quote) into out, as
 * json-c does: UTF-16 surrogate pairs joined, a lone surrogate U+FFFD,
 * the rest cut at a NUL. Never longer than what it decodes, so out needs
 * no more room than the text. Returns the decoded length.
 */
static size_t
oauth_json_key_decode(const char *p, const char *end, char *out)
{
	char	*w = out;
	long	 cp, lo;

	while (p < end && *p != '"') {
		if (*p != '\\') {
			*w++ = *p++;
			continue;
		}
		if (end - p < 2)
			break;
		if (p[1] != 'u') {
			switch (p[1]) {
			case 'b': *w++ = '\b'; break;
			case 'f': *w++ = '\f'; break;
			case 'n': *w++ = '\n'; break;
			case 'r': *w++ = '\r'; break;
			case 't': *w++ = '\t'; break;
			default: *w++ = p[1]; break;	/* " \ / */
			}
			p += 2;
			continue;
		}
		if ((cp = oauth_json_hex4(p + 2, end)) == -1)
			break;
		p += 6;
		if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 &&
		    p[0] == '\\' && p[1] == 'u' &&
		    (lo = oauth_json_hex4(p + 2, end)) >= 0xdc00 && lo <= 0xdfff) {
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			p += 6;
		} else if (cp >= 0xd800 && cp <= 0xdfff)
			cp = 0xfffd;
		if (cp == 0)
			break;
		if (cp < 0x80)
			*w++ = (char)cp;
		else if (cp < 0x800) {
			*w++ = (char)(0xc0 | cp >> 6);
			*w++ = (char)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			*w++ = (char)(0xe0 | cp >> 12);
			*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
			*w++ = (char)(0x80 | (cp & 0x3f));
		} else {
			*w++ = (char)(0xf0 | cp >> 18);
			*w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
			*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
			*w++ = (char)(0x80 | (cp & 0x3f));
		}
	}
	/* a raw NUL cannot be in valid JSON, but cut there all the same */
	return strnlen(out, (size_t)(w - out));
}

static int
oauth_json_key_cmp(const void *a, const void *b)
{
	const struct json_key	*ka = a, *kb = b;

	if (ka->len != kb->len)
		return ka->len < kb->len ? -1 : 1;
	return memcmp(ka->at, kb->at, ka->len);
}

/* Whether two of the n keys are the same; sorts them. */
static int
oauth_json_keys_repeat(struct json_key *keys, size_t n)
{
	size_t	 i;

	qsort(keys, n, sizeof *keys, oauth_json_key_cmp);
	for (i = 1; i < n; i++)
		if (oauth_json_key_cmp(&keys[i - 1], &keys[i]) == 0)
			return 1;
	return 0;
}

static int
oauth_json_duplicate_keys(const char *p, size_t len)
{
	/* per open container: is it an object, does a key come next, and
	 * where its keys start in the one list of keys seen */
	unsigned char	 object[JSON_DEPTH_MAX + 2], want_key[JSON_DEPTH_MAX + 2];
	size_t		 first[JSON_DEPTH_MAX + 2];
	struct json_key	*keys = NULL;
	const char	*end = p + len, *str;
	char		*decoded, *w;
	size_t		 depth = 0, nkeys = 0, cap = 0;
	int		 rc = 0;

	/* every decoded key, side by side, fits in the text's length */
	w = decoded = xcalloc(1, len + 1);
	for (; p < end && rc == 0; p++) {
		switch (*p) {
		case '{':
		case '[':
			if (depth > JSON_DEPTH_MAX) {
				rc = 1;
				break;
			}
			object[depth] = *p == '{';
			want_key[depth] = object[depth];
			first[depth++] = nkeys;
			break;
		case '}':
		case ']':
			if (depth == 0)
				break;
			depth--;
			/* keys is NULL until a first key: no pointer sum then */
			if (object[depth] && nkeys > first[depth])
				rc = oauth_json_keys_repeat(keys + first[depth],
				    nkeys - first[depth]);
			nkeys = first[depth];
			break;
		case ',':
			if (depth > 0 && object[depth - 1])
				want_key[depth - 1] = 1;
			break;
		case '"':
			str = ++p;
			while (p < end && *p != '"')
				p += *p == '\\' ? 2 : 1;
			if (depth == 0 || !want_key[depth - 1])
				break;
			want_key[depth - 1] = 0;
			if (nkeys - first[depth - 1] >= JSON_KEYS_MAX) {
				rc = 1;
				break;
			}
			if (nkeys == cap) {
				cap = cap ? cap * 2 : 16;
				keys = xreallocarray(keys, cap, sizeof *keys);
			}
			keys[nkeys].at = w;
			keys[nkeys].len = oauth_json_key_decode(str, p, w);
			w += keys[nkeys++].len;
			break;
		}
	}
	free(keys);
	free(decoded);
	return rc;
}

/*
 * A whole number of seconds from a JSON number or a string of digits.
 * json_object_get_int64 would read "3600abc" as 3600 and null as 0.
 */
int
oauth_json_seconds(struct json_object *v, int64_t *out)
{
	const char	*s;
	double		 d;
	int64_t		 n = 0;

	switch (json_object_get_type(v)) {
	case json_type_int:
		errno = 0;
		n = json_object_get_int64(v);
		if (errno != 0 || n == INT64_MAX)
			return -ERANGE;
		break;
	case json_type_double:
		d = json_object_get_double(v);
		if (!isfinite(d) || d < -1e15 || d > 1e15)
			return -ERANGE;
		n = (int64_t)d;
		break;
	case json_type_string:
		s = json_object_get_string(v);
		if (*s == '\0' || strlen(s) > 15)
			return -EINVAL;
		for (; *s != '\0'; s++) {
			if (*s < '0' || *s > '9')
				return -EINVAL;
			n = n * 10 + (*s - '0');
		}
		break;
	default:
		return -EINVAL;
	}
	*out = n;
	return 0;
}

/* The exp claim of a JWT, in wall ms; 0 when it is not a JWT with one. */
int64_t
oauth_jwt_exp(const char *token)
{
	const char		*dot1, *dot2, *why;
	struct json_object	*obj, *exp;
	char			*payload;
	size_t			 len;
	int64_t			 secs = 0;

	if ((dot1 = strchr(token, '.')) == NULL ||
	    (dot2 = strchr(dot1 + 1, '.')) == NULL || strchr(dot2 + 1, '.'))
		return 0;
	if (oauth_base64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload,
	    &len) != 0)
		return 0;
	if ((obj = oauth_parse_json(payload, len, &why)) != NULL) {
		if (json_object_is_type(obj, json_type_object) &&
		    json_object_object_get_ex(obj, "exp", &exp) &&
		    (json_object_is_type(exp, json_type_int) ||
		    json_object_is_type(exp, json_type_double)) &&
		    oauth_json_seconds(exp, &secs) != 0)
			secs = 0;
		json_object_put(obj);
	}
	free(payload);
	/* an exp past what milliseconds can hold is as good as forever */
	if (secs > INT64_MAX / 1000)
		secs = INT64_MAX / 1000;
	return secs > 0 ? secs * 1000 : 0;
}

static int
oauth_take_token(struct json_object *v, char **out)
{
	const char	*s;

	if (v == NULL || !json_object_is_type(v, json_type_string))
		return -EINVAL;
	s = json_object_get_string(v);
	if (*s == '\0' || (size_t)json_object_get_string_len(v) > TOKEN_MAX ||
	    strlen(s) != (size_t)json_object_get_string_len(v) ||
	    !str_is_printable(s))
		return -EINVAL;
	*out = xstrdup(s);
	return 0;
}

static int
oauth_fail(struct oauth_result *res, enum oauth_outcome outcome, const char *fmt,
    ...)
{
	va_list	 ap;

	res->outcome = outcome;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof res->error, fmt, ap);
	va_end(ap);
	return -1;
}

/* The secrets a request may have sent: what an error text must not hold. */
#define OAUTH_SENT_SECRETS	5

static void
oauth_sent_secrets(const struct account_conf *ac, const char *refresh_token,
    const char *out[OAUTH_SENT_SECRETS])
{
	out[0] = ac->client_secret;
	out[1] = ac->password;
	out[2] = ac->refresh_token;
	out[3] = ac->static_token;
	out[4] = refresh_token;
}

/* Whether s holds secret as it is or as the request encoded it. */
static int
oauth_holds_one(const char *s, const char *secret)
{
	char	*enc[2];
	size_t	 i;
	int	 found = 0;

	if (strstr(s, secret) != NULL)
		return 1;
	/* a server that echoes the form body or the Basic pair undecoded */
	enc[0] = oauth_form_encode(secret);
	enc[1] = oauth_basic_encode(secret);
	for (i = 0; i < 2; i++) {
		if (!found && strstr(s, enc[i]) != NULL)
			found = 1;
		freezero_str(enc[i]);
	}
	return found;
}

/* Whether s holds one of the secrets (empty ones hold nothing). */
static int
oauth_holds_secret(const char *s, const char *const *secrets)
{
	size_t	 i;

	for (i = 0; i < OAUTH_SENT_SECRETS; i++)
		if (secrets[i] != NULL && secrets[i][0] != '\0' &&
		    oauth_holds_one(s, secrets[i]))
			return 1;
	return 0;
}

/*
 * An error_description (RFC 6749 5.2) fit for a log and for readers:
 * printable ASCII only, anything else '?', cut at OAUTH_DESCRIPTION_MAX
 * bytes. Empty when there is none, or when it repeats a secret of the
 * request (a server that echoes what it was sent must not put the
 * password or the refresh token into tokend's log).
 */
static void
oauth_sanitize_description(struct json_object *obj, const char *member,
    const char *const *secrets, char *out, size_t size)
{
	struct json_object	*v;
	const char		*s;
	size_t			 i;

	out[0] = '\0';
	if (!json_object_object_get_ex(obj, member, &v) ||
	    !json_object_is_type(v, json_type_string))
		return;
	s = json_object_get_string(v);
	/* json-c cuts nothing at a \u0000: compare the whole string */
	if ((size_t)json_object_get_string_len(v) != strlen(s) ||
	    oauth_holds_secret(s, secrets))
		return;
	for (i = 0; s[i] != '\0' && i + 1 < size && i < OAUTH_DESCRIPTION_MAX;
	    i++)
		out[i] = s[i] >= 0x20 && s[i] <= 0x7e ? s[i] : '?';
	out[i] = '\0';
}

/*
 * The OAuth error code of a body, sanitised, and its description; 0, or
 * -1 when it has no code. *withheld: the code repeats a secret sent, so
 * it may decide what the answer means but is not to be shown.
 */
static int
oauth_error_code(const char *body, size_t len, const struct account_conf *ac,
    const char *refresh_token, char *code, size_t size, int *withheld,
    char *desc, size_t desc_size)
{
	struct json_object	*obj, *err;
	const char		*why, *secrets[OAUTH_SENT_SECRETS];

	desc[0] = '\0';
	if ((obj = oauth_parse_json(body, len, &why)) == NULL)
		return -1;
	oauth_sent_secrets(ac, refresh_token, secrets);
	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "error", &err) ||
	    !json_object_is_type(err, json_type_string)) {
		/* no OAuth error, but GitHub's and kin's {"message": ...} */
		if (json_object_is_type(obj, json_type_object))
			oauth_sanitize_description(obj, "message", secrets,
			    desc, desc_size);
		json_object_put(obj);
		return -1;
	}
	oauth_sanitize_code(json_object_get_string(err), code, size);
	*withheld = oauth_holds_secret(json_object_get_string(err), secrets);
	oauth_sanitize_description(obj, "error_description", secrets, desc,
	    desc_size);
	json_object_put(obj);
	return 0;
}

/*
 * The OAuth error code of an answer (sanitised) and its description (as
 * for a token answer: none that repeats a secret, nor `sent`, the code a
 * login flow sent); 0, or -1 without one.
 */
int
oauth_error_of(const struct account_conf *ac, const char *sent,
    const char *body, size_t len, char *code, size_t size, char *desc,
    size_t desc_size)
{
	int	 withheld;

	if (oauth_error_code(body, len, ac, sent, code, size, &withheld, desc,
	    desc_size) != 0)
		return -1;
	if (withheld)
		snprintf(code, size, "(an error code that repeats a secret)");
	return 0;
}

/* ": description" after an error text, when there is one */
static void
oauth_add_description(struct oauth_result *res, const char *desc)
{
	size_t	 n = strlen(res->error);

	if (desc[0] != '\0' && n < sizeof res->error)
		snprintf(res->error + n, sizeof res->error - n, ": %s", desc);
}

/*
 * What an error answer to a `grant` request means. An OAuth error body is
 * read on any 4xx. Servers do not all say it with RFC 6749's words:
 * glewlwyd refuses a wrong secret or password with an empty 403, and a
 * dead refresh token with an empty 400; LemonLDAP::NG calls an unknown
 * refresh token invalid_request. So, on a refresh, invalid_request and a
 * 400/401/403 without an OAuth error are a refused refresh token; on the
 * account's own grant, 401 and 403 are refused credentials whatever the
 * body says.
 */
static int
oauth_parse_error(const struct account_conf *ac, enum grant grant,
    const char *refresh_token, long status, const char *body, size_t len,
    struct oauth_result *res)
{
	static const char *const permanent[] = {
		"invalid_client", "unauthorized_client",
		"unsupported_grant_type", "invalid_scope", "invalid_request",
		NULL
	};
	char	 code[72], desc[OAUTH_DESCRIPTION_MAX + 1];
	int	 i, rc, withheld, refresh = grant == GRANT_REFRESH_TOKEN;
	int	 refused = status == 400 || status == 401 || status == 403;

	if (status == 429 || status == 503)
		return oauth_fail(res, OAUTH_RATE_LIMITED, "HTTP %ld", status);
	if (status >= 300 && status < 400)
		return oauth_fail(res, OAUTH_RETRY, "HTTP %ld: redirects are not "
		    "followed", status);
	if (status < 400 || status > 499)
		return oauth_fail(res, OAUTH_RETRY, "HTTP %ld", status);
	if (oauth_error_code(body, len, ac, refresh_token, code, sizeof code,
	    &withheld, desc, sizeof desc) != 0) {
		if (refresh && refused) {
			rc = oauth_fail(res, OAUTH_INVALID_GRANT, "HTTP %ld "
			    "without an OAuth error, taken as a refused "
			    "refresh token", status);
			/* ... or its assertion: made anew before the token
			   is given up */
			res->client_refused = status != 400 &&
			    CLIENT_AUTH_IS_JWT(ac->client_auth);
		}
		else if (status == 401 || status == 403) {
			rc = oauth_fail(res, OAUTH_PERMANENT, "HTTP %ld "
			    "without an OAuth error, taken as refused "
			    "credentials", status);
			res->client_refused = 1;
		} else
			rc = oauth_fail(res, OAUTH_RETRY, "HTTP %ld without an "
			    "OAuth error", status);
		oauth_add_description(res, desc);
		return rc;
	}
	/* what a refused client, or assertion, is told (RFC 6749 5.2) */
	res->client_refused = !strcmp(code, "invalid_client") ||
	    (grant == GRANT_JWT_BEARER && !strcmp(code, "invalid_grant"));
	if (!strcmp(code, "invalid_grant"))
		rc = oauth_fail(res, OAUTH_INVALID_GRANT, "HTTP %ld "
		    "invalid_grant", status);
	else if (refresh && !strcmp(code, "invalid_request"))
		rc = oauth_fail(res, OAUTH_INVALID_GRANT, "HTTP %ld "
		    "invalid_request, taken as a refused refresh token", status);
	else {
		for (i = 0; permanent[i] != NULL; i++)
			if (!strcmp(code, permanent[i]))
				break;
		rc = oauth_fail(res, permanent[i] != NULL || (!refresh &&
		    (status == 401 || status == 403)) ? OAUTH_PERMANENT :
		    OAUTH_RETRY, "HTTP %ld %s", status, withheld ? "(an error "
		    "code that repeats a secret sent)" : code);
	}
	oauth_add_description(res, desc);
	return rc;
}

/*
 * Turn an answer into a token. 0: *out holds a usable token (its
 * refresh_token NULL when the answer carried none). -1: res says why and
 * what to do; out is untouched. Error texts hold no response value but
 * an error_description, and that only when it repeats none of the
 * secrets sent (refresh_token: the one a refresh sent, or NULL).
 */
int
oauth_response_parse(const struct account_conf *ac, enum grant grant,
    const char *refresh_token, long status, const char *body, size_t len,
    int64_t now, struct token *out, struct oauth_result *res)
{
	const struct response_conf *rc = &ac->response;
	struct json_object	*obj, *v;
	struct token		 t;
	const char		*why, *s;
	int64_t			 secs, lifetime = 0, at;

	memset(res, 0, sizeof *res);
	if (status < 200 || status > 299)
		return oauth_parse_error(ac, grant, refresh_token, status, body,
		    len, res);
	if ((obj = oauth_parse_json(body, len, &why)) == NULL)
		return oauth_fail(res, OAUTH_RETRY, "malformed response: %s", why);
	if (oauth_json_duplicate_keys(body, len)) {
		json_object_put(obj);
		return oauth_fail(res, OAUTH_RETRY, "malformed response: a key appears "
		    "twice in one object (or an object has over %d keys)",
		    JSON_KEYS_MAX);
	}

	memset(&t, 0, sizeof t);
	if (oauth_take_token(oauth_lookup(rc->access_token, obj), &t.access_token) != 0) {
		json_object_put(obj);
		return oauth_fail(res, OAUTH_RETRY, "malformed response: no usable "
		    "access token at %s", rc->access_token);
	}
	if ((v = oauth_lookup(rc->refresh_token, obj)) != NULL &&
	    oauth_take_token(v, &t.refresh_token) != 0) {
		oauth_token_clear(&t);
		json_object_put(obj);
		return oauth_fail(res, OAUTH_RETRY, "malformed response: refresh "
		    "token at %s is not a token", rc->refresh_token);
	}

	if ((v = oauth_lookup(rc->token_type, obj)) != NULL) {
		if (!json_object_is_type(v, json_type_string) ||
		    (s = json_object_get_string(v))[0] == '\0' ||
		    strlen(s) > TOKEN_TYPE_MAX || !str_is_printable(s)) {
			oauth_token_clear(&t);
			json_object_put(obj);
			return oauth_fail(res, OAUTH_RETRY, "malformed response: "
			    "bad token_type");
		}
		t.token_type = xstrdup(strcasecmp(s, "bearer") ? s : "Bearer");
	} else
		t.token_type = xstrdup("Bearer");

	if ((v = oauth_lookup(rc->expires_in, obj)) != NULL) {
		if (oauth_json_seconds(v, &secs) != 0 || secs <= 0 ||
		    secs > LIFETIME_MAX) {
			oauth_token_clear(&t);
			json_object_put(obj);
			return oauth_fail(res, OAUTH_RETRY, "malformed response: "
			    "expires_in is not a positive number of seconds");
		}
		lifetime = secs * 1000;
	} else if ((v = oauth_lookup(rc->expires_at, obj)) != NULL) {
		if (json_object_is_type(v, json_type_string) &&
		    parse_rfc3339(json_object_get_string(v), &at) == 0)
			;
		else if (oauth_json_seconds(v, &secs) == 0 && secs > 0 &&
		    secs < INT64_MAX / 1000)
			at = secs * 1000;
		else {
			oauth_token_clear(&t);
			json_object_put(obj);
			return oauth_fail(res, OAUTH_RETRY, "malformed response: "
			    "expires_at is neither epoch seconds nor RFC 3339");
		}
		lifetime = at - now;
		if (lifetime <= 0 || lifetime > LIFETIME_MAX * 1000) {
			oauth_token_clear(&t);
			json_object_put(obj);
			return oauth_fail(res, OAUTH_RETRY, "malformed response: "
			    "expires_at is in the past or absurdly far");
		}
	} else if ((at = oauth_jwt_exp(t.access_token)) != 0) {
		lifetime = at - now;
		if (lifetime <= 0) {
			oauth_token_clear(&t);
			json_object_put(obj);
			return oauth_fail(res, OAUTH_RETRY, "malformed response: the "
			    "token's JWT exp is in the past");
		}
		if (lifetime > LIFETIME_MAX * 1000)
			lifetime = LIFETIME_MAX * 1000;
	} else
		lifetime = rc->default_lifetime;
	json_object_put(obj);

	t.obtained_at = now;
	t.expires_at = now + lifetime;
	*out = t;
	res->outcome = OAUTH_OK;
	return 0;
}

/* ---- tokens ---- */

void
oauth_token_clear(struct token *t)
{
	freezero_str(t->access_token);
	freezero_str(t->refresh_token);
	free(t->token_type);
	free(t->refresh_seed);
	memset(t, 0, sizeof *t);
}

/* Usable at `now`: present and not expired (expires_at 0: never). */
int
oauth_token_valid(const struct token *t, int64_t now)
{
	return t->access_token != NULL &&
	    (t->expires_at == 0 || t->expires_at > now);
}
