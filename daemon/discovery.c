/*
 * An issuer's metadata: OpenID Connect Discovery 1.0 first, RFC 8414
 * (OAuth 2.0 Authorization Server Metadata) when the server has no
 * OpenID configuration. The parse is pure (time and I/O come from the
 * caller) so that a fuzzer and unit tests drive it; the fetch goes through
 * http.c with the account's limits and trust, one at a time, and backs off
 * like a token request when it fails.
 *
 * The document's "issuer" must equal the configured one to the letter
 * (OIDC Discovery 4.3, RFC 8414 3.3): a document served for someone else
 * (a mix-up, a proxy's answer) is refused, never used.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tokend.h"

#define DISCOVERY_URL_MAX	2048	/* one endpoint URL */
#define DISCOVERY_SHOWN_MAX	120	/* of a foreign issuer, in an error */
#define DISCOVERY_DEPTH		16	/* JSON nesting */

static const char *const discovery_paths[] = {
	"/.well-known/openid-configuration",
	"/.well-known/oauth-authorization-server",
};

/*
 * Where the document is: OIDC appends its path to the issuer; RFC 8414
 * 3.1 inserts its own between the host and the issuer's path, without
 * the issuer's trailing "/".
 */
char *
discovery_url(const char *issuer, int rfc8414)
{
	const char	*host, *path;
	char		*url;
	size_t		 n = strlen(issuer);

	while (n > 0 && issuer[n - 1] == '/')
		n--;
	if (!rfc8414) {
		xasprintf(&url, "%.*s%s", (int)n, issuer, discovery_paths[0]);
		return url;
	}
	host = strstr(issuer, "://");
	host = host != NULL ? host + 3 : issuer;
	path = memchr(host, '/', n - (size_t)(host - issuer));
	if (path == NULL)
		path = issuer + n;
	xasprintf(&url, "%.*s%s%.*s", (int)(path - issuer), issuer,
	    discovery_paths[1], (int)(issuer + n - path), path);
	return url;
}

void
discovery_doc_clear(struct discovery_doc *d)
{
	free(d->issuer);
	free(d->token_endpoint);
	free(d->mtls_token_endpoint);
	free(d->authorization_endpoint);
	free(d->device_authorization_endpoint);
	free(d->revocation_endpoint);
	memset(d, 0, sizeof *d);
}

/* A value from someone else, safe to put in an error: printable, capped. */
static void
discovery_shown(const char *s, char *buf, size_t len)
{
	size_t	 i, n = 0;

	for (i = 0; s[i] != '\0' && n + 4 < len && i < DISCOVERY_SHOWN_MAX;
	    i++)
		buf[n++] = s[i] > ' ' && s[i] < 0x7f ? s[i] : '?';
	if (s[i] != '\0' && n + 4 < len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
}

/*
 * The string member `key` of o, an http(s) URL, into *out; absent is
 * fine unless required. -1 with *cause when it is there but no URL.
 */
static int
discovery_endpoint(struct json_object *o, const char *key, int required,
    char **out, char **cause)
{
	struct json_object	*v;
	const char		*s;

	if (!json_object_object_get_ex(o, key, &v) ||
	    json_object_get_type(v) == json_type_null) {
		if (!required)
			return 0;
		xasprintf(cause, "the document has no %s", key);
		return -1;
	}
	if (json_object_get_type(v) != json_type_string) {
		xasprintf(cause, "%s is not a string", key);
		return -1;
	}
	s = json_object_get_string(v);
	if ((strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) ||
	    strlen(s) > DISCOVERY_URL_MAX || !str_is_printable(s)) {
		xasprintf(cause, "%s is not an http(s) URL", key);
		return -1;
	}
	*out = xstrdup(s);
	return 0;
}

/* A list of strings: each name in `names` found sets its bit. */
static int
discovery_list(struct json_object *o, const char *key,
    const char *const *names, int *bits, int *present, char **cause)
{
	struct json_object	*v, *e;
	size_t			 i, j, n;

	*bits = 0;
	*present = 0;
	if (!json_object_object_get_ex(o, key, &v) ||
	    json_object_get_type(v) == json_type_null)
		return 0;
	if (json_object_get_type(v) != json_type_array) {
		xasprintf(cause, "%s is not an array", key);
		return -1;
	}
	*present = 1;
	n = json_object_array_length(v);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(v, i);
		if (json_object_get_type(e) != json_type_string)
			continue;	/* tolerated: not ours to judge */
		for (j = 0; names[j] != NULL; j++)
			if (!strcmp(json_object_get_string(e), names[j]))
				*bits |= 1 << j;
	}
	return 0;
}

/*
 * Parse a metadata document for `issuer`. 0 and *doc filled, or -1 with
 * *cause (safe to show: no secret can be in a public document, and what
 * comes from it is made printable and capped).
 */
int
discovery_parse(const char *issuer, const char *body, size_t len,
    struct discovery_doc *doc, char **cause)
{
	static const char *const auths[] = { "client_secret_basic",
	    "client_secret_post", "none", "private_key_jwt",
	    "client_secret_jwt", "tls_client_auth",
	    "self_signed_tls_client_auth", NULL };
	static const char *const pkce[] = { "S256", NULL };
	struct json_tokener	*tok;
	struct json_object	*o, *v;
	struct discovery_doc	 d;
	char			 shown[DISCOVERY_SHOWN_MAX + 8];
	int			 present, bits;

	*cause = NULL;
	memset(&d, 0, sizeof d);
	if ((tok = json_tokener_new_ex(DISCOVERY_DEPTH)) == NULL)
		fatalx("json_tokener_new_ex");
	o = len <= RESPONSE_MAX && (int)len >= 0 ?
	    json_tokener_parse_ex(tok, body, (int)len) : NULL;
	/* the whole body, and nothing after the object but blanks */
	if (o != NULL && json_tokener_get_error(tok) == json_tokener_success)
		for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
			if (strchr(" \t\r\n", body[i]) == NULL) {
				json_object_put(o);
				o = NULL;
				break;
			}
	json_tokener_free(tok);
	if (o == NULL || json_object_get_type(o) != json_type_object) {
		json_object_put(o);
		*cause = xstrdup("the document is not a JSON object");
		return -1;
	}
	if (!json_object_object_get_ex(o, "issuer", &v) ||
	    json_object_get_type(v) != json_type_string) {
		*cause = xstrdup("the document has no issuer");
		goto fail;
	}
	if (strcmp(json_object_get_string(v), issuer) != 0) {
		discovery_shown(json_object_get_string(v), shown, sizeof shown);
		xasprintf(cause, "issuer mismatch: configured %s, document "
		    "says %s", issuer, shown);
		goto fail;
	}
	d.issuer = xstrdup(issuer);
	if (discovery_endpoint(o, "token_endpoint", 1, &d.token_endpoint,
	    cause) != 0 ||
	    discovery_endpoint(o, "authorization_endpoint", 0,
	    &d.authorization_endpoint, cause) != 0 ||
	    discovery_endpoint(o, "device_authorization_endpoint", 0,
	    &d.device_authorization_endpoint, cause) != 0 ||
	    discovery_endpoint(o, "revocation_endpoint", 0,
	    &d.revocation_endpoint, cause) != 0)
		goto fail;
	/* RFC 8705 5: where mutual TLS goes, when elsewhere */
	if (json_object_object_get_ex(o, "mtls_endpoint_aliases", &v) &&
	    json_object_get_type(v) == json_type_object &&
	    discovery_endpoint(v, "token_endpoint", 0, &d.mtls_token_endpoint,
	    cause) != 0)
		goto fail;
	if (discovery_list(o, "token_endpoint_auth_methods_supported", auths,
	    &bits, &present, cause) != 0)
		goto fail;
	/* RFC 8414 2: absent means client_secret_basic */
	d.auth_methods = present ? bits : DISCOVERY_AUTH_BASIC;
	if (discovery_list(o, "code_challenge_methods_supported", pkce, &bits,
	    &d.pkce_listed, cause) != 0)
		goto fail;
	d.s256 = bits != 0;
	json_object_put(o);
	*doc = d;
	return 0;
fail:
	json_object_put(o);
	discovery_doc_clear(&d);
	return -1;
}

/*
 * client_auth when the file leaves it to discovery: the first the server
 * lists and the account can do. A certificate: tls_client_auth, then
 * self_signed_tls_client_auth; a key: private_key_jwt; a secret:
 * client_secret_basic, client_secret_post, client_secret_jwt; else none.
 * The file's default when the server lists none of them.
 */
enum client_auth
discovery_client_auth(const struct account_conf *ac,
    const struct discovery_doc *doc)
{
	int	 secret = ac->client_secret != NULL;

	if (ac->client_auth_given || doc == NULL)
		return ac->client_auth;
	if (ac->client_cert != NULL) {
		if (doc->auth_methods & DISCOVERY_AUTH_TLS)
			return CLIENT_AUTH_TLS;
		if (doc->auth_methods & DISCOVERY_AUTH_SELF_SIGNED_TLS)
			return CLIENT_AUTH_SELF_SIGNED_TLS;
	}
	if (ac->client_key != NULL && ac->grant != GRANT_JWT_BEARER) {
		if (doc->auth_methods & DISCOVERY_AUTH_PRIVATE_KEY_JWT)
			return CLIENT_AUTH_PRIVATE_KEY_JWT;
		return ac->client_auth;	/* a key is not traded for less */
	}
	if (secret && (doc->auth_methods & DISCOVERY_AUTH_BASIC))
		return CLIENT_AUTH_BASIC;
	if (secret && (doc->auth_methods & DISCOVERY_AUTH_POST))
		return CLIENT_AUTH_POST;
	if (secret && (doc->auth_methods & DISCOVERY_AUTH_CLIENT_SECRET_JWT))
		return CLIENT_AUTH_CLIENT_SECRET_JWT;
	if (doc->auth_methods & DISCOVERY_AUTH_NONE)
		return CLIENT_AUTH_NONE;
	return ac->client_auth;
}

/* ---- the fetch ---- */

struct discovery {
	struct http		*http;
	struct discovery_doc	 doc;		/* issuer NULL: none held */
	int64_t			 fetched_boot;

	struct http_request	*req;
	int			 rfc8414;	/* the URL being tried */
	char			*issuer;	/* of the fetch */
	struct refresh_conf	 refresh;	/* its backoff */
	struct http_post	 post;		/* its options, borrowed from
						   the conf of the fetch */
	char			*ca_file;
	char			*proxy;
	discovery_done_cb	 cb;
	void			*arg;

	int			 failures;
	int64_t			 not_before_boot;
	char			 error[384];
};

struct discovery *
discovery_new(struct http *http)
{
	struct discovery	*d;

	d = xcalloc(1, sizeof *d);
	d->http = http;
	return d;
}

void
discovery_cancel(struct discovery *d)
{
	if (d->req != NULL)
		http_cancel(d->req);
	d->req = NULL;
	d->cb = NULL;
}

void
discovery_free(struct discovery *d)
{
	if (d == NULL)
		return;
	discovery_cancel(d);
	discovery_doc_clear(&d->doc);
	free(d->issuer);
	free(d->ca_file);
	freezero_str(d->proxy);
	free(d);
}

/* An endpoint of the document failed, or a reload: fetch it anew, now. */
void
discovery_forget(struct discovery *d)
{
	discovery_doc_clear(&d->doc);
	d->failures = 0;
	d->not_before_boot = 0;
}

/* The document for issuer, if one no older than a day is held. */
const struct discovery_doc *
discovery_cached(const struct discovery *d, const char *issuer,
    int64_t now_boot)
{
	if (d->doc.issuer == NULL || strcmp(d->doc.issuer, issuer) != 0 ||
	    now_boot - d->fetched_boot >= DISCOVERY_MAX_AGE_MS)
		return NULL;
	return &d->doc;
}

static void	discovery_http_done_cb(const struct http_result *, void *);

static void
discovery_get(struct discovery *d)
{
	char	*url = discovery_url(d->issuer, d->rfc8414);

	d->post.url = url;
	d->req = http_post(d->http, &d->post, discovery_http_done_cb, d);
	free(url);
}

static void
discovery_finish(struct discovery *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The fetch is over: a document (fmt NULL) or an error; tell the caller. */
static void
discovery_finish(struct discovery *d, const char *fmt, ...)
{
	discovery_done_cb	 cb = d->cb;
	va_list			 ap;
	int64_t			 delay;

	d->cb = NULL;
	if (fmt == NULL) {
		d->failures = 0;
		d->not_before_boot = 0;
		d->error[0] = '\0';
		cb(&d->doc, NULL, d->arg);
		return;
	}
	memcpy(d->error, "discovery: ", 11);
	va_start(ap, fmt);
	vsnprintf(d->error + 11, sizeof d->error - 11, fmt, ap);
	va_end(ap);
	d->failures++;
	delay = schedule_backoff(&d->refresh, d->failures, rng_unit());
	d->not_before_boot = clock_boot_ms() + delay;
	cb(NULL, d->error, d->arg);
}

static void
discovery_http_done_cb(const struct http_result *res, void *arg)
{
	struct discovery	*d = arg;
	struct discovery_doc	 doc;
	char			*cause, *url;

	d->req = NULL;
	url = discovery_url(d->issuer, d->rfc8414);
	if (res->curl_code != 0 || res->truncated) {
		discovery_finish(d, "%s: %s", url, res->error != NULL ?
		    res->error : "request failed");
		free(url);
		return;
	}
	/* no OpenID configuration: RFC 8414 metadata, then */
	if (!d->rfc8414 && res->status >= 400 && res->status < 500) {
		free(url);
		d->rfc8414 = 1;
		discovery_get(d);
		return;
	}
	if (res->status != 200) {
		discovery_finish(d, "%s: HTTP %ld", url, res->status);
		free(url);
		return;
	}
	if (discovery_parse(d->issuer, res->body, res->len, &doc, &cause) !=
	    0) {
		discovery_finish(d, "%s: %s", url, cause);
		free(cause);
		free(url);
		return;
	}
	free(url);
	discovery_doc_clear(&d->doc);
	d->doc = doc;
	d->fetched_boot = clock_boot_ms();
	discovery_finish(d, NULL);
}

/*
 * Fetch ac's issuer's document; cb runs once from the event loop with it
 * or with an error "discovery: ...". One fetch at a time (the caller
 * gathers its own waiters): -EBUSY while one runs. While the last
 * failure's backoff lasts, -1 with *cause, so nothing hammers the server.
 */
int
discovery_fetch(struct discovery *d, const struct account_conf *ac,
    discovery_done_cb cb, void *arg, char **cause)
{
	int64_t	 now = clock_boot_ms();

	*cause = NULL;
	if (d->req != NULL)
		return -EBUSY;
	if (d->failures > 0 && now < d->not_before_boot && d->issuer != NULL &&
	    !strcmp(d->issuer, ac->issuer)) {
		xasprintf(cause, "%s (next try in %llds)", d->error,
		    (long long)((d->not_before_boot - now + 999) / 1000));
		return -1;
	}
	if (d->issuer == NULL || strcmp(d->issuer, ac->issuer) != 0) {
		d->failures = 0;
		free(d->issuer);
		d->issuer = xstrdup(ac->issuer);
	}
	free(d->ca_file);
	freezero_str(d->proxy);
	d->ca_file = ac->ca_file != NULL ? xstrdup(ac->ca_file) : NULL;
	d->proxy = ac->proxy != NULL ? xstrdup(ac->proxy) : NULL;
	memset(&d->post, 0, sizeof d->post);
	d->post.get = 1;
	d->post.ca_file = d->ca_file;
	d->post.proxy = d->proxy;
	d->post.timeout_ms = ac->timeout;
	d->post.allow_http = ac->allow_http;
	d->refresh = ac->refresh;
	d->cb = cb;
	d->arg = arg;
	d->rfc8414 = 0;
	discovery_get(d);
	return 0;
}
