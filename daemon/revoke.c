/*
 * Token revocation (RFC 7009) for a logout: the refresh token first (a
 * server that ties the access tokens to it revokes them too, RFC 7009
 * 2.1), then the access token, one request after the other, with the
 * client's authentication as at the token endpoint. 200 is success,
 * whatever the token was (RFC 7009 2.2); anything else is an error the
 * caller reports, never a secret.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tokend.h"

#define REVOKE_CODE_MAX		64	/* of the server's error code shown */

struct revoke {
	struct http		*http;
	/*
	 * Both requests are built at the start: a reload may free the
	 * account's configuration while the first one is out.
	 */
	struct oauth_request	 reqs[2];	/* secret: refresh, access */
	char			*ca_file;
	char			*proxy;
	int64_t			 timeout_ms;
	int			 allow_http;
	char			*client_cert;	/* mutual TLS; NULL: none */
	size_t			 client_cert_len;
	char			*client_key;	/* secret */
	size_t			 client_key_len;
	char			*url;
	int			 next;		/* index into reqs */
	int			 ok;
	char			 error[320];
	int			 endpoint_failed;
	struct http_request	*req;
	revoke_done_cb		 cb;
	void			*arg;
};

static const char *const revoke_hints[] = { "refresh_token", "access_token" };

static void	revoke_next(struct revoke *);

void
revoke_cancel(struct revoke *r)
{
	if (r == NULL)
		return;
	if (r->req != NULL)
		http_cancel(r->req);
	oauth_request_clear(&r->reqs[0]);
	oauth_request_clear(&r->reqs[1]);
	free(r->ca_file);
	freezero_str(r->proxy);
	free(r->client_cert);
	if (r->client_key != NULL) {
		explicit_bzero(r->client_key, r->client_key_len);
		free(r->client_key);
	}
	free(r->url);
	free(r);
}

/* The "error" of an RFC 7009 2.2.1 answer, printable and short; "". */
static void
revoke_error_code(const char *body, size_t len, char *buf, size_t buflen)
{
	struct json_object	*o, *v;
	const char		*s;
	size_t			 i;

	buf[0] = '\0';
	if (len > 4096 || (o = json_tokener_parse(body)) == NULL)
		return;
	if (json_object_object_get_ex(o, "error", &v) &&
	    json_object_get_type(v) == json_type_string) {
		s = json_object_get_string(v);
		for (i = 0; s[i] != '\0' && i + 1 < buflen &&
		    i < REVOKE_CODE_MAX; i++)
			buf[i] = s[i] > ' ' && s[i] < 0x7f ? s[i] : '?';
		buf[i] = '\0';
	}
	json_object_put(o);
}

static void
revoke_http_done_cb(const struct http_result *res, void *arg)
{
	struct revoke	*r = arg;
	char		 code[REVOKE_CODE_MAX + 1];
	const char	*what = revoke_hints[r->next];

	r->req = NULL;
	if (res->curl_code == 0 && !res->truncated && res->status == 200) {
		r->next++;
		revoke_next(r);
		return;
	}
	if (res->curl_code != 0 || res->truncated || res->status >= 500 ||
	    res->status == 404)
		r->endpoint_failed = 1;
	if (r->ok) {
		r->ok = 0;
		if (res->curl_code != 0 || res->truncated)
			snprintf(r->error, sizeof r->error, "revocation of the "
			    "%s at %s failed: %s", what, r->url, res->error !=
			    NULL ? res->error : "request failed");
		else {
			revoke_error_code(res->body, res->len, code,
			    sizeof code);
			snprintf(r->error, sizeof r->error, "revocation of the "
			    "%s at %s failed: HTTP %ld%s%s", what, r->url,
			    res->status, code[0] != '\0' ? " " : "", code);
		}
	}
	r->next++;
	revoke_next(r);
}

/* The next token held, or the end: tell the caller and go. */
static void
revoke_next(struct revoke *r)
{
	struct http_post	 p;

	while (r->next < 2 && r->reqs[r->next].body == NULL)
		r->next++;
	if (r->next == 2) {
		r->cb(r->ok, r->ok ? NULL : r->error, r->endpoint_failed,
		    r->arg);
		revoke_cancel(r);
		return;
	}
	memset(&p, 0, sizeof p);
	p.url = r->url;
	p.body = r->reqs[r->next].body;
	p.authorization = r->reqs[r->next].authorization;
	p.ca_file = r->ca_file;
	p.proxy = r->proxy;
	p.timeout_ms = r->timeout_ms;
	p.allow_http = r->allow_http;
	p.client_cert = r->client_cert;
	p.client_cert_len = r->client_cert_len;
	p.client_key = r->client_key;
	p.client_key_len = r->client_key_len;
	/* the callback runs from the event loop, never in here */
	r->req = http_post(r->http, &p, revoke_http_done_cb, r);
}

/*
 * Revoke refresh_token, then access_token (either may be NULL) at url,
 * assertions dated at wall second now.
 * What is needed of conf is copied (a reload may free it meanwhile);
 * cb runs once, from the event loop, with 1 when every token was
 * revoked, else 0 and the first error, and whether the endpoint itself
 * failed (a network error, a 5xx, a 404). The tokens are copied.
 * NULL, and no callback, when both are NULL, or (with *errp) when no
 * request could be made.
 */
struct revoke *
revoke_start(struct http *http, const struct account_conf *conf,
    enum client_auth client_auth, const char *url, const char *refresh_token,
    const char *access_token, int64_t now, revoke_done_cb cb, void *arg,
    char **errp)
{
	struct account_conf	 c = *conf;
	struct revoke		*r;
	const char		*tokens[2] = { refresh_token, access_token };
	char			*cause = NULL;
	int			 i;

	if (refresh_token == NULL && access_token == NULL)
		return NULL;	/* nothing to revoke: no callback either */
	r = xcalloc(1, sizeof *r);
	r->http = http;
	c.client_auth = client_auth;
	r->url = xstrdup(url);
	r->ok = 1;
	*errp = NULL;
	for (i = 0; i < 2; i++) {
		if (tokens[i] == NULL)
			continue;
		if (oauth_revoke_build(&c, r->url, tokens[i], revoke_hints[i],
		    now, &r->reqs[i], &cause) != 0) {
			/* the token stays unrevoked: say so, try the other */
			if (r->ok)
				snprintf(r->error, sizeof r->error, "%s", cause);
			r->ok = 0;
			free(cause);
			cause = NULL;
			continue;
		}
		/* the URL is borrowed: r->url outlives the request */
		r->reqs[i].url = r->url;
	}
	r->ca_file = conf->ca_file != NULL ? xstrdup(conf->ca_file) : NULL;
	r->proxy = conf->proxy != NULL ? xstrdup(conf->proxy) : NULL;
	r->timeout_ms = conf->timeout;
	r->allow_http = conf->allow_http;
	if (conf->client_cert != NULL && conf->client_key_pem != NULL) {
		r->client_cert = xcalloc(1, conf->client_cert_len);
		memcpy(r->client_cert, conf->client_cert, conf->client_cert_len);
		r->client_cert_len = conf->client_cert_len;
		r->client_key = xcalloc(1, conf->client_key_pem_len);
		memcpy(r->client_key, conf->client_key_pem,
		    conf->client_key_pem_len);
		r->client_key_len = conf->client_key_pem_len;
	}
	r->cb = cb;
	r->arg = arg;
	/* nothing could be built: say so to the caller, never from here */
	if (r->reqs[0].body == NULL && r->reqs[1].body == NULL) {
		*errp = xstrdup(r->error);
		revoke_cancel(r);
		return NULL;
	}
	revoke_next(r);
	return r;
}
