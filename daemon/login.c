/*
 * A human logs in once: the device flow (RFC 8628) and the authorization
 * code flow with PKCE S256 (RFC 7636) and a loopback redirect (RFC 8252
 * 7.3). The token it ends with goes to the account (account_login_done),
 * which refreshes unattended from then on.
 *
 * One login at most per account; the socket API's callers join it and
 * hear, one JSON line at a time, what the human must do and then how it
 * ended. The login outlives its callers (the human may still be at the
 * browser) until it ends, expires or is cancelled.
 *
 * The account is looked up by name whenever it is needed: a reload may
 * replace or remove it while the human takes their time.
 *
 * The first half is pure (PKCE, the device answer, the redirect's query)
 * for the unit tests and the fuzzer.
 */
#define _GNU_SOURCE
#include <sys/queue.h>
#include <sys/random.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "tokend.h"

#define LOGIN_DEVICE_INTERVAL_S	5	/* RFC 8628 3.2: when none is given */
#define LOGIN_SLOW_DOWN_S	5	/* RFC 8628 3.5: added on slow_down */
#define LOGIN_INTERVAL_MAX_S	300
#define LOGIN_EXPIRES_MAX_S	(24 * 3600)
#define LOGIN_CODE_TIMEOUT_MS	(10 * 60 * MSEC_PER_SEC)
#define LOGIN_FIELD_MAX		2048	/* a user code, a URI, a code */
#define LOGIN_QUERY_MAX		(16 * 1024)
#define LOGIN_REDIRECT_URI_DEFAULT "http://127.0.0.1:0/callback"

/* ---- pure parts ---- */

/* nbytes random bytes, base64url: a PKCE verifier or a state. */
int
login_random(size_t nbytes, char **out)
{
	unsigned char	 buf[64];
	size_t		 got = 0;
	ssize_t		 n;

	if (nbytes > sizeof buf)
		return -EINVAL;
	while (got < nbytes) {
		if ((n = getrandom(buf + got, nbytes - got, 0)) == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	*out = oauth_base64url(buf, nbytes);
	explicit_bzero(buf, sizeof buf);
	return 0;
}

/* RFC 7636 4.2: BASE64URL(SHA256(ASCII(code_verifier))). */
char *
login_pkce_challenge(const char *verifier)
{
	unsigned char	 md[32];

	sha256(verifier, strlen(verifier), md);
	return oauth_base64url(md, sizeof md);
}

void
login_device_clear(struct login_device *d)
{
	freezero_str(d->device_code);
	free(d->user_code);
	free(d->verification_uri);
	free(d->verification_uri_complete);
	memset(d, 0, sizeof *d);
}

/* A string member: 0 and *out, -ENOENT when absent, -EINVAL when bad. */
static int
login_json_string(struct json_object *obj, const char *key, char **out)
{
	struct json_object	*v;
	const char		*s;

	if (!json_object_object_get_ex(obj, key, &v) ||
	    json_object_is_type(v, json_type_null))
		return -ENOENT;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	s = json_object_get_string(v);
	if (s[0] == '\0' || strlen(s) > LOGIN_FIELD_MAX || !str_is_printable(s))
		return -EINVAL;
	*out = xstrdup(s);
	return 0;
}

/* What a human may be sent to: http(s), nothing a terminal would act on. */
static int
login_uri_ok(const char *s)
{
	return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

static int
login_device_fail(struct login_device *d, char **cause, const char *what)
{
	login_device_clear(d);
	xasprintf(cause, "malformed device authorization answer: %s", what);
	return -1;
}

/*
 * A 2xx device authorization answer (RFC 8628 3.2). Google still names
 * verification_uri verification_url: both are read. 0 and *out, or -1
 * with a cause that holds no value of the answer.
 */
int
login_device_parse(const char *body, size_t len, struct login_device *out,
    char **cause)
{
	struct login_device	 d;
	struct json_object	*obj, *v;
	const char		*why;
	int64_t			 n;
	int			 rc;

	memset(&d, 0, sizeof d);
	if ((obj = oauth_parse_json(body, len, &why)) == NULL)
		return login_device_fail(&d, cause, why);
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return login_device_fail(&d, cause, "not a JSON object");
	}
	if (login_json_string(obj, "device_code", &d.device_code) != 0)
		why = "no usable device_code";
	else if (login_json_string(obj, "user_code", &d.user_code) != 0)
		why = "no usable user_code";
	else if ((rc = login_json_string(obj, "verification_uri",
	    &d.verification_uri)) == -EINVAL || (rc == -ENOENT &&
	    login_json_string(obj, "verification_url",
	    &d.verification_uri) != 0) || !login_uri_ok(d.verification_uri))
		why = "no usable verification_uri";
	else if ((rc = login_json_string(obj, "verification_uri_complete",
	    &d.verification_uri_complete)) == -EINVAL || (rc == 0 &&
	    !login_uri_ok(d.verification_uri_complete)))
		why = "verification_uri_complete is not an http(s) URI";
	else if (!json_object_object_get_ex(obj, "expires_in", &v) ||
	    oauth_json_seconds(v, &n) != 0 || n <= 0 || n > LOGIN_EXPIRES_MAX_S)
		why = "expires_in is not a positive number of seconds";
	else
		why = NULL;
	if (why != NULL) {
		json_object_put(obj);
		return login_device_fail(&d, cause, why);
	}
	d.expires_in_s = n;
	d.interval_s = LOGIN_DEVICE_INTERVAL_S;
	if (json_object_object_get_ex(obj, "interval", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (oauth_json_seconds(v, &n) != 0 || n < 0 ||
		    n > LOGIN_INTERVAL_MAX_S) {
			json_object_put(obj);
			return login_device_fail(&d, cause, "interval is not a "
			    "number of seconds");
		}
		/* 0 would poll as fast as we can: the default instead */
		if (n > 0)
			d.interval_s = n;
	}
	json_object_put(obj);
	*out = d;
	return 0;
}

/*
 * Percent-decode s[0..len) (and '+' as a space, as forms do); NULL: a bad
 * escape, or a decoded byte that is not printable ASCII.
 */
static char *
login_query_decode(const char *s, size_t len)
{
	char	*out;
	size_t	 i, n;

	if ((out = percent_decode(s, len, 0, &n)) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e) {
			explicit_bzero(out, n);
			free(out);
			return NULL;
		}
	return out;
}

void
login_redirect_clear(struct login_redirect *r)
{
	freezero_str(r->code);
	freezero_str(r->state);
	free(r->error);
	free(r->error_description);
	memset(r, 0, sizeof *r);
}

/* Whether two strings are equal, in a time that does not tell where not. */
static int
login_equal(const char *a, const char *b)
{
	size_t		 la = strlen(a), lb = strlen(b), i;
	unsigned char	 d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return d == 0;
}

/*
 * The query of a request to the redirect URI (RFC 6749 4.1.2, 4.1.2.1):
 * code or error, and state, which must equal `state`. A parameter given
 * twice, an undecodable one, or one too long is malformed.
 */
enum login_redirect_verdict
login_redirect_parse(const char *query, const char *state,
    struct login_redirect *out)
{
	struct login_redirect	 r;
	const char		*p, *end, *eq, *amp;
	char			*name, *value, **slot;

	memset(&r, 0, sizeof r);
	memset(out, 0, sizeof *out);
	if (query == NULL || strlen(query) > LOGIN_QUERY_MAX)
		return LOGIN_REDIRECT_MALFORMED;
	for (p = query, end = query + strlen(query); p < end; p = amp + 1) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if (amp == p)
			continue;
		if ((eq = memchr(p, '=', (size_t)(amp - p))) == NULL)
			eq = amp;
		if ((name = login_query_decode(p, (size_t)(eq - p))) == NULL)
			goto malformed;
		slot = !strcmp(name, "code") ? &r.code :
		    !strcmp(name, "state") ? &r.state :
		    !strcmp(name, "error") ? &r.error :
		    !strcmp(name, "error_description") ? &r.error_description :
		    NULL;
		free(name);
		if (slot == NULL)
			continue;	/* iss, session_state, scope, ... */
		if (*slot != NULL)
			goto malformed;
		value = eq < amp ? login_query_decode(eq + 1,
		    (size_t)(amp - eq - 1)) : xstrdup("");
		if (value == NULL || strlen(value) > LOGIN_FIELD_MAX) {
			freezero_str(value);
			goto malformed;
		}
		*slot = value;
	}
	if (r.state == NULL || !login_equal(r.state, state)) {
		login_redirect_clear(&r);
		return LOGIN_REDIRECT_BAD_STATE;
	}
	if (r.error != NULL && r.error[0] != '\0') {
		freezero_str(r.code);
		r.code = NULL;
		*out = r;
		return LOGIN_REDIRECT_ERROR;
	}
	if (r.code == NULL || r.code[0] == '\0')
		goto malformed;
	*out = r;
	return LOGIN_REDIRECT_CODE;
malformed:
	login_redirect_clear(&r);
	return LOGIN_REDIRECT_MALFORMED;
}

/* ---- the flows ---- */

struct login_waiter {
	login_line_cb			 cb;
	void				*arg;
	TAILQ_ENTRY(login_waiter)	 entry;
};

struct login {
	char			 name[ACCOUNT_NAME_MAX + 1];
	int			 device;	/* else authorization code */
	struct http_request	*req;
	struct timer		 poll;		/* the next device poll */
	struct timer		 deadline;
	int64_t			 deadline_wall;
	int64_t			 interval_ms;
	struct login_device	 dev;
	char			*verifier;	/* secret */
	char			*state;		/* secret */
	char			*code;		/* secret: being exchanged */
	char			*redirect_uri;	/* with the port bound */
	char			*token_url;	/* as the endpoints were */
	enum client_auth	 client_auth;
	int			 endpoints_wait;	/* discovery runs */
	char			*authorization_url;
	struct redirect		*listener;
	TAILQ_HEAD(, login_waiter) waiters;
	LIST_ENTRY(login)	 entry;
	int			 unlisted;	/* ending: off the list */
	int			 strays_logged;	/* a wrong redirect was */
};

static struct login_env		 login_env;
static LIST_HEAD(, login)	 logins = LIST_HEAD_INITIALIZER(logins);

static void	login_poll_cb(void *);
static void	login_endpoints_cb(struct account *, const struct endpoints *,
		    const char *, void *);

static struct login *
login_find(const char *name)
{
	struct login	*l;

	LIST_FOREACH(l, &logins, entry) {
		if (!strcmp(l->name, name))
			return l;
	}
	return NULL;
}

int
login_pending(const char *name)
{
	return login_find(name) != NULL;
}

/* The account, if it still is a login account; NULL: gone. */
static struct account *
login_account(const struct login *l)
{
	struct account	*a = registry_find(login_env.registry, l->name);

	if (a == NULL || !GRANT_IS_LOGIN(account_conf(a)->grant))
		return NULL;
	return a;
}

/* What the human must do, as a line; NULL before it is known. */
static char *
login_instructions(const struct login *l)
{
	char	*qn, *qu, *qc, *qk, *line;
	int64_t	 left;

	if (l->device ? l->dev.device_code == NULL :
	    l->authorization_url == NULL)
		return NULL;
	qn = json_quote(l->name);
	if (!l->device) {
		qu = json_quote(l->authorization_url);
		xasprintf(&line, "{\"account\":%s,\"authorization_url\":%s}\n",
		    qn, qu);
		free(qu);
	} else {
		left = (l->deadline_wall - clock_wall_ms()) / 1000;
		qu = json_quote(l->dev.verification_uri);
		qk = json_quote(l->dev.user_code);
		qc = l->dev.verification_uri_complete != NULL ?
		    json_quote(l->dev.verification_uri_complete) : NULL;
		xasprintf(&line, "{\"account\":%s,\"verification_uri\":%s%s%s,"
		    "\"user_code\":%s,\"expires_in\":%lld}\n", qn, qu,
		    qc != NULL ? ",\"verification_uri_complete\":" : "",
		    qc != NULL ? qc : "", qk, (long long)(left > 0 ? left : 0));
		free(qu);
		free(qk);
		free(qc);
	}
	free(qn);
	return line;
}

static void
login_tell(struct login *l, const char *line, int last)
{
	struct login_waiter	*w, *next;

	for (w = TAILQ_FIRST(&l->waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (last)
			TAILQ_REMOVE(&l->waiters, w, entry);
		w->cb(line, last, w->arg);
		if (last)
			free(w);
	}
}

static void
login_free(struct login *l)
{
	struct login_waiter	*w;
	struct account		*a;

	if (!l->unlisted)
		LIST_REMOVE(l, entry);
	while ((w = TAILQ_FIRST(&l->waiters)) != NULL) {
		TAILQ_REMOVE(&l->waiters, w, entry);
		free(w);
	}
	if (l->req != NULL)
		http_cancel(l->req);
	if (l->endpoints_wait && (a = registry_find(login_env.registry,
	    l->name)) != NULL)
		account_endpoints_cancel(a, login_endpoints_cb, l);
	timer_clear(&l->poll);
	timer_clear(&l->deadline);
	login_device_clear(&l->dev);
	freezero_str(l->verifier);
	freezero_str(l->state);
	freezero_str(l->code);
	free(l->redirect_uri);
	free(l->token_url);
	free(l->authorization_url);
	redirect_free(l->listener);
	free(l);
}

/* The end: the last line to everyone waiting, and the login is gone. */
static void
login_end(struct login *l, const char *error)
{
	struct account_view	 v;
	struct account		*a;
	char			*qn, *qe, *line, at[40];

	qn = json_quote(l->name);
	if (error != NULL) {
		log_account(LOG_LEVEL_WARNING, l->name, "login failed: %s",
		    error);
		qe = json_quote(error);
		xasprintf(&line, "{\"account\":%s,\"error\":%s}\n", qn, qe);
		free(qe);
	} else {
		a = registry_find(login_env.registry, l->name);
		account_view(a, clock_wall_ms(), &v);
		format_rfc3339(v.token != NULL ? v.token->expires_at : 0, at,
		    sizeof at);
		xasprintf(&line, "{\"account\":%s,\"state\":\"%s\","
		    "\"expires_at\":\"%s\"}\n", qn, account_state_name(v.state),
		    at);
	}
	free(qn);
	/* off the list first: a waiter's callback may start a new one */
	LIST_REMOVE(l, entry);
	l->unlisted = 1;
	login_tell(l, line, 1);
	free(line);
	login_free(l);
}

static void
login_deadline_cb(void *arg)
{
	struct login	*l = arg;

	login_end(l, l->device ? "the device code expired before the login "
	    "was approved" : "the login timed out: no answer came to the "
	    "redirect URI");
}

/*
 * POST to the account's endpoint; the callback gets l. -1 with *cause
 * when it cannot be sent (the account went, or no assertion was made).
 */
static int
login_post(struct login *l, const char *url, const struct form_param *fp,
    size_t n, http_done_cb cb, char **cause)
{
	const struct account_conf *ac;
	struct oauth_request	 or;
	struct http_post	 p;
	struct account		*a;

	if ((a = login_account(l)) == NULL) {
		*cause = xstrdup("the account was removed or changed its "
		    "grant");
		return -1;
	}
	ac = account_conf(a);
	if (oauth_login_request_build(ac, l->client_auth, url, fp, n,
	    account_assertion_now(a), &or, cause) != 0)
		return -1;
	oauth_http_post(ac, &or, &p);
	/* a code is good for one use: never re-sent on a reused connection */
	p.fresh_connect = 1;
	l->req = http_post(login_env.http, &p, cb, l);
	oauth_request_clear(&or);
	return 0;
}

/* A token answer: the login is over, one way or the other. */
static void
login_token_answer(struct login *l, const struct http_result *res)
{
	struct oauth_result	 or;
	struct token		 t;
	struct account		*a;
	char			 why[400];

	if ((a = login_account(l)) == NULL) {
		login_end(l, "the account was removed or changed its grant");
		return;
	}
	/* the code or device_code sent is a secret an answer may echo */
	if (oauth_response_parse(account_conf(a), account_conf(a)->grant,
	    l->device ? l->dev.device_code : l->code, res->status, res->body,
	    res->len, clock_wall_ms(), &t, &or) != 0) {
		snprintf(why, sizeof why, "token endpoint: %s", or.error);
		login_end(l, why);
		return;
	}
	if (t.refresh_token == NULL)
		log_account(LOG_LEVEL_WARNING, l->name, "the login brought no "
		    "refresh token: another login is needed once this token "
		    "expires (ask for scope offline_access?)");
	account_login_succeeded(a, &t);
	oauth_token_clear(&t);
	log_account(LOG_LEVEL_INFO, l->name, "login succeeded");
	login_end(l, NULL);
}

/* A transport failure as an error text; NULL when there is an answer. */
static const char *
login_transport_error(const struct http_result *res)
{
	if (res->curl_code != 0)
		return res->error != NULL ? res->error : "request failed";
	if (res->truncated)
		return "answer larger than 1 MiB";
	return NULL;
}

/* A discovered endpoint that fails so has maybe moved: discover anew. */
static void
login_endpoint_check(struct login *l, const struct http_result *res)
{
	struct account	*a;

	if ((res->curl_code != 0 || res->status >= 500 || res->status == 404) &&
	    (a = login_account(l)) != NULL)
		account_endpoint_failed(a);
}

static void
login_schedule_poll(struct login *l)
{
	timer_set(&l->poll, clock_boot_ms() + l->interval_ms);
}

/* RFC 8628 3.5: one answer to a poll of the token endpoint. */
static void
login_poll_done_cb(const struct http_result *res, void *arg)
{
	struct login	*l = arg;
	struct account	*a;
	char		 code[72], desc[OAUTH_DESCRIPTION_MAX + 1], why[400];
	const char	*terr;

	l->req = NULL;
	login_endpoint_check(l, res);
	if ((terr = login_transport_error(res)) != NULL || res->status >= 500 ||
	    res->status == 429) {
		/*
		 * transient: the device code is still good, ask again; after
		 * no answer at all, less often (RFC 8628 3.5: "MUST reduce
		 * its polling frequency", exponentially)
		 */
		if (res->curl_code != 0 && l->interval_ms <
		    LOGIN_INTERVAL_MAX_S * MSEC_PER_SEC)
			l->interval_ms = l->interval_ms * 2 >
			    LOGIN_INTERVAL_MAX_S * MSEC_PER_SEC ?
			    LOGIN_INTERVAL_MAX_S * MSEC_PER_SEC :
			    l->interval_ms * 2;
		log_account(LOG_LEVEL_WARNING, l->name, "device flow poll: %s; "
		    "polling on every %llds", terr != NULL ? terr :
		    res->status == 429 ? "HTTP 429" : "server error",
		    (long long)(l->interval_ms / 1000));
		login_schedule_poll(l);
		return;
	}
	if ((a = login_account(l)) == NULL) {
		login_end(l, "the account was removed or changed its grant");
		return;
	}
	if (res->status >= 400 && res->status < 500 &&
	    oauth_error_of(account_conf(a), l->dev.device_code, res->body,
	    res->len, code, sizeof code, desc, sizeof desc) == 0) {
		if (!strcmp(code, "authorization_pending")) {
			login_schedule_poll(l);
			return;
		}
		if (!strcmp(code, "slow_down")) {
			l->interval_ms += LOGIN_SLOW_DOWN_S * MSEC_PER_SEC;
			log_account(LOG_LEVEL_INFO, l->name, "device flow: "
			    "slow_down; polling every %llds now",
			    (long long)(l->interval_ms / 1000));
			login_schedule_poll(l);
			return;
		}
		if (!strcmp(code, "expired_token")) {
			login_end(l, "the device code expired before the login "
			    "was approved (expired_token)");
			return;
		}
		if (!strcmp(code, "access_denied")) {
			snprintf(why, sizeof why, "the login was denied "
			    "(access_denied)%s%s", desc[0] != '\0' ? ": " : "",
			    desc);
			login_end(l, why);
			return;
		}
	}
	login_token_answer(l, res);
}

static void
login_poll_cb(void *arg)
{
	struct login		*l = arg;
	struct form_param	 fp[] = {
		{ "grant_type", "urn:ietf:params:oauth:grant-type:device_code" },
		{ "device_code", l->dev.device_code },
	};
	char			*cause = NULL;

	if (login_post(l, l->token_url, fp, 2, login_poll_done_cb,
	    &cause) != 0) {
		login_end(l, cause);
		free(cause);
	}
}

/* RFC 8628 3.2: the device authorization answer. */
static void
login_device_done_cb(const struct http_result *res, void *arg)
{
	struct login	*l = arg;
	struct account	*a;
	char		 code[72], desc[OAUTH_DESCRIPTION_MAX + 1], why[400];
	char		*cause = NULL, *line;
	const char	*terr;

	l->req = NULL;
	login_endpoint_check(l, res);
	if ((terr = login_transport_error(res)) != NULL) {
		snprintf(why, sizeof why, "device authorization endpoint: %s",
		    terr);
		login_end(l, why);
		return;
	}
	if ((a = login_account(l)) == NULL) {
		login_end(l, "the account was removed or changed its grant");
		return;
	}
	if (res->status < 200 || res->status > 299) {
		if (oauth_error_of(account_conf(a), NULL, res->body, res->len,
		    code, sizeof code, desc, sizeof desc) == 0)
			snprintf(why, sizeof why, "device authorization "
			    "endpoint: HTTP %ld %s%s%s", res->status, code,
			    desc[0] != '\0' ? ": " : "", desc);
		else
			snprintf(why, sizeof why, "device authorization "
			    "endpoint: HTTP %ld", res->status);
		login_end(l, why);
		return;
	}
	if (login_device_parse(res->body, res->len, &l->dev, &cause) != 0) {
		snprintf(why, sizeof why, "device authorization endpoint: %s",
		    cause);
		free(cause);
		login_end(l, why);
		return;
	}
	l->interval_ms = l->dev.interval_s * MSEC_PER_SEC;
	l->deadline_wall = clock_wall_ms() + l->dev.expires_in_s * MSEC_PER_SEC;
	timer_set(&l->deadline, clock_boot_ms() +
	    l->dev.expires_in_s * MSEC_PER_SEC);
	login_schedule_poll(l);
	log_account(LOG_LEVEL_INFO, l->name, "device flow: waiting for the "
	    "user to approve at %s (for %llds)", l->dev.verification_uri,
	    (long long)l->dev.expires_in_s);
	line = login_instructions(l);
	login_tell(l, line, 0);
	free(line);
}

static void
login_code_done_cb(const struct http_result *res, void *arg)
{
	struct login	*l = arg;
	char		 why[400];
	const char	*terr;

	l->req = NULL;
	login_endpoint_check(l, res);
	if ((terr = login_transport_error(res)) != NULL) {
		snprintf(why, sizeof why, "token endpoint: %s", terr);
		login_end(l, why);
		return;
	}
	login_token_answer(l, res);
}

/*
 * A request came to the redirect URI. 0: it was the one awaited (the
 * browser is told it may close the window); -1: not ours (a wrong state),
 * the login waits on.
 */
static int
login_redirect_cb(const char *query, void *arg)
{
	struct login		*l = arg;
	struct login_redirect	 r;
	enum login_redirect_verdict verdict;
	struct form_param	 fp[5];
	struct account		*a;
	char			 why[400], *cause;

	if (l->code != NULL)
		return -1;	/* a code is being exchanged already */
	switch ((verdict = login_redirect_parse(query, l->state, &r))) {
	case LOGIN_REDIRECT_BAD_STATE:
	case LOGIN_REDIRECT_MALFORMED:
		/* any local user can send these: a warning once, not a flood */
		log_account(l->strays_logged++ ? LOG_LEVEL_DEBUG :
		    LOG_LEVEL_WARNING, l->name, "%s: ignored", verdict ==
		    LOGIN_REDIRECT_BAD_STATE ? "redirect with a wrong or no "
		    "state" : "malformed redirect");
		return -1;
	case LOGIN_REDIRECT_ERROR:
		snprintf(why, sizeof why, "the authorization server answered "
		    "%.72s%s%.200s", r.error, r.error_description != NULL ?
		    ": " : "", r.error_description != NULL ?
		    r.error_description : "");
		login_redirect_clear(&r);
		redirect_close(l->listener);
		login_end(l, why);
		return 0;
	case LOGIN_REDIRECT_CODE:
		break;
	}
	l->code = r.code;
	r.code = NULL;
	login_redirect_clear(&r);
	redirect_close(l->listener);
	/* RFC 6749 4.1.3 and RFC 7636 4.5 */
	fp[0] = (struct form_param){ "grant_type", "authorization_code" };
	fp[1] = (struct form_param){ "code", l->code };
	fp[2] = (struct form_param){ "redirect_uri", l->redirect_uri };
	fp[3] = (struct form_param){ "code_verifier", l->verifier };
	fp[4] = (struct form_param){ "client_id", NULL };
	cause = NULL;
	if ((a = login_account(l)) == NULL)
		login_end(l, "the account was removed or changed its grant");
	else {
		/* client_id goes in once: client auth none and post add it */
		if (l->client_auth == CLIENT_AUTH_BASIC)
			fp[4].value = account_conf(a)->client_id;
		if (login_post(l, l->token_url, fp, 5, login_code_done_cb,
		    &cause) != 0) {
			login_end(l, cause);
			free(cause);
		}
	}
	return 0;
}

/* Whether the space-separated scope holds the word `word`. */
static int
login_scope_has(const char *scope, const char *word)
{
	size_t	 n = strlen(word), len;

	while (scope != NULL && *scope != '\0') {
		scope += strspn(scope, " ");
		len = strcspn(scope, " ");
		if (len == n && strncmp(scope, word, n) == 0)
			return 1;
		scope += len;
	}
	return 0;
}

/* url with "?name=value" or "&name=value" added, both form-encoded. */
static char *
login_url_add(char *url, int *first, const char *name, const char *value)
{
	char	*en, *ev, *next;

	en = oauth_form_encode(name);
	ev = oauth_form_encode(value);
	xasprintf(&next, "%s%c%s=%s", url, *first ? '?' : '&', en, ev);
	*first = 0;
	free(en);
	free(ev);
	free(url);
	return next;
}

/* The value of authorize_param.NAME; NULL: not set. */
static const char *
login_authorize_param(const struct account_conf *ac, const char *name)
{
	size_t	 i;

	for (i = 0; i < ac->nauthorize_params; i++)
		if (!strcmp(ac->authorize_params[i].name, name))
			return ac->authorize_params[i].value;
	return NULL;
}

/*
 * "URL?response_type=code&...": RFC 6749 4.1.1, RFC 7636 4.3. With
 * offline_access in the scope, prompt=consent too: OpenID Connect Core
 * 1.0 section 11 has a provider ignore offline_access without it, and the
 * login would bring no refresh token.
 */
static char *
login_authorization_url(const struct account_conf *ac, const char *base,
    struct login *l, const char *challenge)
{
	const char	*names[] = { "response_type", "client_id",
			    "redirect_uri", "scope", "state", "code_challenge",
			    "code_challenge_method", "prompt" };
	const char	*values[] = { "code", ac->client_id, l->redirect_uri,
			    ac->scope, l->state, challenge, "S256",
			    login_scope_has(ac->scope, "offline_access") ?
			    "consent" : NULL };
	char		*url;
	size_t		 i;
	int		 first = strchr(base, '?') == NULL;

	url = xstrdup(base);
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		/* a prompt the file sets wins over ours */
		if (values[i] == NULL || (!strcmp(names[i], "prompt") &&
		    login_authorize_param(ac, "prompt") != NULL))
			continue;
		url = login_url_add(url, &first, names[i], values[i]);
	}
	for (i = 0; i < ac->nauthorize_params; i++)
		url = login_url_add(url, &first, ac->authorize_params[i].name,
		    ac->authorize_params[i].value);
	return url;
}

static int
login_start_code(struct login *l, const struct account_conf *ac,
    const struct endpoints *e, char **cause)
{
	char	*challenge;
	int	 rc;

	if (e->authorization_url == NULL) {
		*cause = xstrdup("no authorization endpoint is known (set "
		    "authorization_url, or an issuer that has one)");
		return -1;
	}
	/* as the file's URLs: a discovered one sends the human over http */
	if (!ac->allow_http && strncasecmp(e->authorization_url, "https://",
	    8) != 0) {
		*cause = xstrdup("the authorization endpoint is not an https "
		    "URL (allow_http = yes allows it)");
		return -1;
	}
	/* RFC 7636 4.1: 32 octets make a 43-character verifier */
	if ((rc = login_random(32, &l->verifier)) != 0 ||
	    (rc = login_random(32, &l->state)) != 0) {
		xasprintf(cause, "no random bytes: %s", strerror(-rc));
		return -1;
	}
	if ((l->listener = redirect_open(login_env.base, ac->redirect_uri !=
	    NULL ? ac->redirect_uri : LOGIN_REDIRECT_URI_DEFAULT,
	    login_redirect_cb, l, &l->redirect_uri, cause)) == NULL)
		return -1;
	challenge = login_pkce_challenge(l->verifier);
	l->authorization_url = login_authorization_url(ac,
	    e->authorization_url, l, challenge);
	free(challenge);
	l->deadline_wall = clock_wall_ms() + LOGIN_CODE_TIMEOUT_MS;
	timer_set(&l->deadline, clock_boot_ms() + LOGIN_CODE_TIMEOUT_MS);
	log_account(LOG_LEVEL_INFO, l->name, "authorization code flow: "
	    "waiting for the browser at %s", l->redirect_uri);
	return 0;
}

static int
login_start_device(struct login *l, const struct account_conf *ac,
    const struct endpoints *e, char **cause)
{
	struct form_param	 fp[] = {
		{ "scope", ac->scope },
		{ "client_id", NULL },
	};

	if (e->device_authorization_url == NULL) {
		*cause = xstrdup("no device authorization endpoint is known "
		    "(set device_authorization_url, or an issuer that has one)");
		return -1;
	}
	if (l->client_auth == CLIENT_AUTH_BASIC)
		fp[1].value = ac->client_id;
	if (login_post(l, e->device_authorization_url, fp, 2,
	    login_device_done_cb, cause) != 0)
		return -1;
	return 0;
}

/* With the endpoints known: the flow proper. */
static int
login_go(struct login *l, struct account *a, const struct endpoints *e,
    char **cause)
{
	const struct account_conf *ac = account_conf(a);
	char	*line;
	int	 rc;

	l->token_url = xstrdup(e->token_url);
	l->client_auth = e->client_auth;
	if (e->s256_unlisted)
		log_account(LOG_LEVEL_WARNING, l->name, "the issuer does not "
		    "list S256 among its PKCE methods; trying it anyway");
	rc = l->device ? login_start_device(l, ac, e, cause) :
	    login_start_code(l, ac, e, cause);
	if (rc == 0 && (line = login_instructions(l)) != NULL) {
		login_tell(l, line, 0);
		free(line);
	}
	return rc;
}

static void
login_endpoints_cb(struct account *a, const struct endpoints *e,
    const char *error, void *arg)
{
	struct login	*l = arg;
	char		*cause = NULL;

	l->endpoints_wait = 0;
	if (e == NULL) {
		login_end(l, error != NULL ? error : "discovery failed");
		return;
	}
	if (login_go(l, a, e, &cause) != 0) {
		login_end(l, cause);
		free(cause);
	}
}

/*
 * Join the account's login, starting it if none is pending: cb hears each
 * line (last set on the outcome, after which it is not called again). The
 * caller has checked that the account exists and is a login account.
 * 0, or -1 with a cause (nothing joined).
 */
int
login_join(const char *name, login_line_cb cb, void *arg, char **cause)
{
	struct login_waiter	*w;
	struct endpoints	 e;
	struct account		*a;
	struct login		*l;
	char			*line;
	int			 rc;

	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	if ((l = login_find(name)) != NULL) {
		if ((line = login_instructions(l)) != NULL) {
			cb(line, 0, arg);
			free(line);
		}
		TAILQ_INSERT_TAIL(&l->waiters, w, entry);
		return 0;
	}
	if ((a = registry_find(login_env.registry, name)) == NULL ||
	    !GRANT_IS_LOGIN(account_conf(a)->grant)) {
		free(w);
		*cause = xstrdup("not a login account");
		return -1;
	}
	l = xcalloc(1, sizeof *l);
	snprintf(l->name, sizeof l->name, "%s", name);
	l->device = account_conf(a)->grant == GRANT_DEVICE_CODE;
	TAILQ_INIT(&l->waiters);
	l->poll.cb = login_poll_cb;
	l->poll.arg = l;
	l->deadline.cb = login_deadline_cb;
	l->deadline.arg = l;
	LIST_INSERT_HEAD(&logins, l, entry);
	/* the first waiter is in before the flow can say anything */
	TAILQ_INSERT_TAIL(&l->waiters, w, entry);
	log_account(LOG_LEVEL_INFO, name, "login started (%s)", l->device ?
	    "device flow" : "authorization code with PKCE");
	rc = account_endpoints(a, &e, login_endpoints_cb, l, cause);
	if (rc == 0)
		l->endpoints_wait = 1;
	else if (rc < 0 || login_go(l, a, &e, cause) != 0) {
		log_account(LOG_LEVEL_WARNING, name, "login failed: %s",
		    *cause);
		login_free(l);
		return -1;
	}
	return 0;
}

/* A waiter went away; the login goes on without it. */
void
login_leave(const char *name, login_line_cb cb, void *arg)
{
	struct login_waiter	*w;
	struct login		*l;

	if ((l = login_find(name)) == NULL)
		return;
	TAILQ_FOREACH(w, &l->waiters, entry) {
		if (w->cb == cb && w->arg == arg) {
			TAILQ_REMOVE(&l->waiters, w, entry);
			free(w);
			return;
		}
	}
}

/* DELETE /v1/login/NAME: 0, or -ENOENT when none is pending. */
int
login_cancel(const char *name)
{
	struct login	*l;

	if ((l = login_find(name)) == NULL)
		return -ENOENT;
	login_end(l, "the login was cancelled");
	return 0;
}

/*
 * After a reload: a login whose account is gone, or whose grant changed,
 * ends now, its listener closed, rather than at its next step.
 */
void
login_reloaded(void)
{
	struct login	*l, *next;
	struct account	*a;

	for (l = LIST_FIRST(&logins); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if ((a = login_account(l)) == NULL ||
		    (account_conf(a)->grant == GRANT_DEVICE_CODE) != l->device)
			login_end(l, "the account was removed or changed its "
			    "grant");
	}
}

void
login_init(const struct login_env *env)
{
	login_env = *env;
}

/* Tell everyone waiting, and drop every login; before api_shutdown(). */
void
login_shutdown(void)
{
	struct login	*l;

	while ((l = LIST_FIRST(&logins)) != NULL)
		login_end(l, "tokend is stopping");
}

