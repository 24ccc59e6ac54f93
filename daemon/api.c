/*
 * The socket API: a route table, its handlers, and refresh waiters. Every
 * answer is built from account views (account_view()); nothing here walks
 * an account's internals. Who may see what follows the caller's
 * credentials, as control.c found them.
 */
#define _GNU_SOURCE
#include <sys/queue.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "tokend.h"

#define API_WAIT_MAX_MS		(60 * MSEC_PER_SEC)

/* A request that waits for a refresh to finish. */
struct api_pending {
	struct evhttp_request		*req;
	struct evhttp_connection	*evcon;
	struct account			*account;
	struct event			*timeout;
	int64_t				 min_valid_ms;	/* -1: a refresh */
	int				 json;
	int				 logout;	/* waits for a logout */
	LIST_ENTRY(api_pending)		 entry;
};

/* A POST /v1/login caller: its answer streams the login's lines. */
struct api_login {
	struct evhttp_request		*req;
	struct evhttp_connection	*evcon;
	char				 name[ACCOUNT_NAME_MAX + 1];
	LIST_ENTRY(api_login)		 entry;
};

/* a login answer may last this long: the device code's life at most */
#define API_LOGIN_TIMEOUT_S	(24 * 3600 + 60)

static struct api_env			 api;
static LIST_HEAD(, api_pending)		 api_pendings =
    LIST_HEAD_INITIALIZER(api_pendings);
static LIST_HEAD(, api_login)		 api_logins =
    LIST_HEAD_INITIALIZER(api_logins);

/* answers by code, for /metrics */
static uint64_t	 api_answers_2xx, api_answers_4xx, api_answers_5xx;

static void	api_waited_cb(struct account *, int, const char *, void *);
static void	api_logged_out_cb(struct account *, int, const char *, void *);
static void	api_login_line_cb(const char *, int, void *);

/* ---- who may see what ---- */

/* Root, the daemon's user, or one of these users or groups. */
static int
api_peer_is_among(const struct control_peer *p, const uid_t *users,
    size_t nusers, const gid_t *groups, size_t ngroups)
{
	size_t	 i;
	int	 j;

	if (p->all)
		return 1;
	for (i = 0; i < nusers; i++)
		if (users[i] == p->uid)
			return 1;
	for (i = 0; i < ngroups; i++) {
		if (groups[i] == p->gid)
			return 1;
		for (j = 0; j < p->ngroups; j++)
			if (groups[i] == p->groups[j])
				return 1;
	}
	return 0;
}

static int
api_peer_may_see(const struct control_peer *p, const struct account_view *v)
{
	return api_peer_is_among(p, v->users, v->nusers, v->groups,
	    v->ngroups);
}

/* Who may log an account in or out: [access] login_users, login_groups. */
static int
api_peer_may_login(const struct control_peer *p, const struct account *a)
{
	const struct account_conf	*c = account_conf(a);

	return api_peer_is_among(p, c->login_users, c->nlogin_users,
	    c->login_groups, c->nlogin_groups);
}

/* ---- answers ---- */

static void
api_count(int code)
{
	if (code < 300)
		api_answers_2xx++;
	else if (code < 500)
		api_answers_4xx++;
	else
		api_answers_5xx++;
}

/* A buffer for an answer; NULL (out of memory) has been answered. */
static struct evbuffer *
api_buffer(struct evhttp_request *req)
{
	struct evbuffer	*b;

	if ((b = evbuffer_new()) == NULL) {
		api_count(503);
		evhttp_send_reply(req, 503, "Out of memory", NULL);
	}
	return b;
}

/* Send and free body. */
static void
api_reply(struct evhttp_request *req, int code, const char *type,
    struct evbuffer *body)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);

	if (type != NULL)
		evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	api_count(code);
	evhttp_send_reply(req, code, NULL, body);
	/* the evbuffer's copy of a token goes with it */
	evbuffer_free(body);
}

/*
 * An error answer: {"error": msg} for JSON callers, else msg as a line of
 * text (the token route's 503 reasons, for scripts and tokenctl). `msg`
 * must hold no secret.
 */
static void
api_reply_message(struct evhttp_request *req, int code, int json,
    const char *msg, int64_t retry_after_s)
{
	struct evbuffer	*b;
	char		*q, ra[32];

	if ((b = api_buffer(req)) == NULL)
		return;
	if (json) {
		q = json_quote(msg);
		evbuffer_add_printf(b, "{\"error\":%s}\n", q);
		free(q);
	} else
		evbuffer_add_printf(b, "%s\n", msg);
	if (retry_after_s > 0) {
		snprintf(ra, sizeof ra, "%lld", (long long)retry_after_s);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Retry-After", ra);
	}
	api_reply(req, code, json ? "application/json" : "text/plain", b);
}

static void
api_reply_error(struct evhttp_request *req, int code, const char *msg,
    int64_t retry_after_s)
{
	api_reply_message(req, code, 1, msg, retry_after_s);
}

/* Whole seconds, at least 1, from now until wall ms `at` (0: unknown). */
static int64_t
api_seconds_until(int64_t at, int64_t now)
{
	return at > now ? (at - now + 999) / 1000 : 1;
}

/* Seconds until the account's next attempt, for Retry-After. */
static int64_t
api_retry_after_s(const struct account_view *v, int64_t now)
{
	return api_seconds_until(v->next_refresh, now);
}

static void
api_wipe_cb(const void *data, size_t len, void *arg)
{
	(void)arg;
	explicit_bzero((void *)data, len);
	free((void *)data);
}

/*
 * Why there is no valid token, in one line: the last error says it best
 * (the resolver's or the endpoint's answer); never a secret.
 */
static char *
api_no_token_reason(const struct account_view *v)
{
	char	 at[40], *s;

	if (v->state == ACCOUNT_LOGIN && v->last_error[0] != '\0')
		return xstrdup(v->last_error);
	if (v->token != NULL && v->token->expires_at != 0) {
		format_rfc3339(v->token->expires_at, at, sizeof at);
		xasprintf(&s, "token expired at %s%s%s", at,
		    v->last_error[0] != '\0' ? ": " : "", v->last_error);
		return s;
	}
	if (v->last_error[0] != '\0')
		return xstrdup(v->last_error);
	if (v->in_flight)
		return xstrdup("first request in flight");
	return xstrdup("no token yet");
}

static void
api_reply_token(struct evhttp_request *req, const struct account_view *v,
    int json, int64_t now)
{
	struct evbuffer		*b;
	char			*out, *reason;
	size_t			 len;

	if (!v->valid) {
		reason = api_no_token_reason(v);
		api_reply_message(req, 503, json, reason,
		    api_retry_after_s(v, now));
		free(reason);
		return;
	}
	if ((b = api_buffer(req)) == NULL)
		return;
	/*
	 * The answer is a reference to our own copy, which is wiped once
	 * written: libevent frees its chains without clearing them.
	 */
	if (json)
		out = sink_render(SINK_JSON, v->token, now, &len);
	else {
		out = xstrdup(v->token->access_token);
		len = strlen(out);
	}
	if (evbuffer_add_reference(b, out, len, api_wipe_cb, NULL) != 0) {
		api_wipe_cb(out, len, NULL);
		evbuffer_free(b);
		api_reply_error(req, 503, "out of memory", 5);
		return;
	}
	api_reply(req, 200, json ? "application/json" : "text/plain", b);
}

static void
api_format_time(int64_t wall, char *buf, size_t len)
{
	if (wall == 0)
		snprintf(buf, len, "null");
	else {
		buf[0] = '"';
		format_rfc3339(wall, buf + 1, len - 2);
		strcat(buf, "\"");
	}
}

/* A JSON string, or null for "" */
static char *
api_quote_or_null(const char *s)
{
	return s[0] != '\0' ? json_quote(s) : xstrdup("null");
}

/* Whole seconds of life left (0 once over), for a token that expires. */
static int64_t
api_expires_in_s(const struct account_view *v)
{
	return v->remaining_ms > 0 ? v->remaining_ms / 1000 : 0;
}

static void
api_status_one(struct evbuffer *b, const struct account_view *v)
{
	char	 exp[40], next[40], last[40], in[24], *qerr, *qname, *qfile;
	char	*qleader, *qalg, *qthumb, cert[40];

	api_format_time(v->token != NULL ? v->token->expires_at : 0, exp,
	    sizeof exp);
	api_format_time(v->next_refresh, next, sizeof next);
	api_format_time(v->last_success, last, sizeof last);
	if (v->token != NULL && v->token->expires_at != 0)
		snprintf(in, sizeof in, "%lld", (long long)api_expires_in_s(v));
	else
		snprintf(in, sizeof in, "null");
	qname = json_quote(v->name);
	qerr = api_quote_or_null(v->last_error);
	qfile = api_quote_or_null(v->file_error);
	evbuffer_add_printf(b, "{\"account\":%s,\"state\":\"%s\","
	    "\"expires_at\":%s,\"next_refresh_at\":%s,\"last_error\":%s,"
	    "\"refreshes\":%llu,\"failures\":%llu,\"last_success_at\":%s,"
	    "\"expires_in\":%s,\"file_error\":%s,\"file_failures\":%llu,"
	    "\"in_flight\":%s,\"shared\":%s", qname,
	    account_state_name(v->state), exp, next, qerr,
	    (unsigned long long)v->refreshes, (unsigned long long)v->failures,
	    last, in, qfile, (unsigned long long)v->file_failures,
	    v->in_flight ? "true" : "false", v->shared ? "true" : "false");
	if (v->shared) {
		qleader = api_quote_or_null(v->leader != NULL ? v->leader :
		    "");
		evbuffer_add_printf(b, ",\"leader\":%s,\"leading\":%s",
		    qleader, v->leading ? "true" : "false");
		free(qleader);
	}
	/* how it proves who it is: never the key, only its thumbprint */
	qalg = api_quote_or_null(v->key_alg != NULL ? v->key_alg : "");
	qthumb = api_quote_or_null(v->key_thumbprint != NULL ?
	    v->key_thumbprint : "");
	api_format_time(v->cert_not_after, cert, sizeof cert);
	evbuffer_add_printf(b, ",\"grant\":\"%s\",\"client_auth\":\"%s\","
	    "\"key_alg\":%s,\"key_thumbprint\":%s,\"cert_expires_at\":%s",
	    v->grant, v->client_auth, qalg, qthumb, cert);
	free(qalg);
	free(qthumb);
	evbuffer_add(b, "}", 1);
	free(qname);
	free(qerr);
	free(qfile);
}

/* ---- waiting for a refresh ---- */

static void
api_pending_free(struct api_pending *p)
{
	LIST_REMOVE(p, entry);
	if (p->account != NULL && p->logout)
		account_logout_cancel(p->account, api_logged_out_cb, p);
	else if (p->account != NULL)
		account_cancel_waiter(p->account, api_waited_cb, p);
	event_free(p->timeout);
	free(p);
}

static void
api_waited_cb(struct account *a, int ok, const char *error, void *arg)
{
	struct api_pending	*p = arg;
	struct account_view	 v;
	struct evbuffer		*b;
	int64_t			 now = clock_wall_ms();

	p->account = NULL;	/* the account dropped its waiter already */
	account_view(a, now, &v);
	if (p->min_valid_ms >= 0) {
		if (v.valid && (v.token->expires_at == 0 ||
		    v.token->expires_at >= now + p->min_valid_ms))
			api_reply_token(p->req, &v, p->json, now);
		else
			api_reply_message(p->req, 503, p->json, ok ? "no token "
			    "valid that long could be had" : error != NULL ?
			    error : "refresh failed", api_retry_after_s(&v, now));
	} else if (ok) {
		if ((b = api_buffer(p->req)) != NULL) {
			api_status_one(b, &v);
			evbuffer_add(b, "\n", 1);
			api_reply(p->req, 200, "application/json", b);
		}
	} else
		api_reply_error(p->req, 502, error != NULL ? error : "refresh "
		    "failed", api_retry_after_s(&v, now));
	api_pending_free(p);
}

static void
api_pending_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct api_pending	*p = arg;

	(void)fd;
	(void)events;
	api_reply_message(p->req, 503, p->json, p->logout ? "the logout did "
	    "not finish in time; the tokens are forgotten here" : "the refresh "
	    "did not finish in time", 5);
	api_pending_free(p);
}

/* evhttp frees a connection's requests when it closes: forget ours. */
static void
api_conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct api_pending	*p, *next;
	struct api_login	*l, *lnext;

	(void)arg;
	for (p = LIST_FIRST(&api_pendings); p != NULL; p = next) {
		next = LIST_NEXT(p, entry);
		if (p->evcon == evcon)
			api_pending_free(p);
	}
	for (l = LIST_FIRST(&api_logins); l != NULL; l = lnext) {
		lnext = LIST_NEXT(l, entry);
		if (l->evcon != evcon)
			continue;
		/* the login goes on: the human may still be at it */
		login_leave(l->name, api_login_line_cb, l);
		LIST_REMOVE(l, entry);
		/* a streamed answer cut off is left to us to free */
		evhttp_send_reply_end(l->req);
		free(l);
	}
}

static void
api_wait_for_refresh(struct evhttp_request *req, struct account *a,
    int64_t min_valid_ms, int json)
{
	struct api_pending	*p;
	struct account_view	 v;
	struct timeval		 tv;
	char			*cause = NULL;
	int64_t			 wait, retry_at, now = clock_wall_ms();
	int			 rc;

	account_view(a, now, &v);
	wait = v.timeout_ms + 5 * MSEC_PER_SEC;
	if (wait > API_WAIT_MAX_MS)
		wait = API_WAIT_MAX_MS;
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;

	p = xcalloc(1, sizeof *p);
	p->req = req;
	p->evcon = evhttp_request_get_connection(req);
	p->min_valid_ms = min_valid_ms;
	p->json = json;
	if ((p->timeout = evtimer_new(api.base, api_pending_timeout_cb, p)) ==
	    NULL || evtimer_add(p->timeout, &tv) != 0) {
		if (p->timeout != NULL)
			event_free(p->timeout);
		free(p);
		api_reply_error(req, 503, "out of memory", 5);
		return;
	}
	/*
	 * Linked, and the connection watched, before the account may call
	 * back: it can answer at once (a request that cannot be built fails
	 * the account there and then), and p is gone after that.
	 */
	LIST_INSERT_HEAD(&api_pendings, p, entry);
	evhttp_connection_set_closecb(p->evcon, api_conn_close_cb, NULL);
	p->account = a;
	rc = account_refresh_now(a, min_valid_ms, api_waited_cb, p, &cause,
	    &retry_at);
	if (rc == 1) {
		/* the token stands: answer as if the refresh had just ended */
		api_waited_cb(a, 1, NULL, p);
	} else if (rc != 0) {
		p->account = NULL;
		api_reply_message(req, 503, json, cause,
		    api_seconds_until(retry_at, now));
		free(cause);
		api_pending_free(p);
	}
}

/* ---- routes ---- */

static int
api_wants_json(struct evhttp_request *req)
{
	const char	*accept = evhttp_find_header(
			    evhttp_request_get_input_headers(req), "Accept");

	return accept != NULL && strstr(accept, "application/json") != NULL;
}

/* The account named by the rest of the path, if the caller may see it. */
static struct account *
api_lookup(struct evhttp_request *req, const struct control_peer *p,
    const char *name)
{
	struct account		*a;
	struct account_view	 v;

	if (config_account_name_valid(name) &&
	    (a = registry_find(api.registry, name)) != NULL) {
		account_view(a, clock_wall_ms(), &v);
		if (api_peer_may_see(p, &v))
			return a;
	}
	/* the same answer for unknown and forbidden */
	api_reply_error(req, 404, "no such account", 0);
	return NULL;
}

/* ?min_valid=SECONDS; -1 when absent, -2 when malformed (answered). */
static long long
api_min_valid(struct evhttp_request *req, const char *query)
{
	struct evkeyvalq	 params;
	const char		*mv;
	char			*end;
	long long		 min_valid = -1;

	if (query == NULL)
		return -1;
	TAILQ_INIT(&params);
	if (evhttp_parse_query_str(query, &params) != 0) {
		api_reply_error(req, 400, "malformed query", 0);
		return -2;
	}
	if ((mv = evhttp_find_header(&params, "min_valid")) != NULL) {
		errno = 0;
		min_valid = strtoll(mv, &end, 10);
		if (*mv == '\0' || *end != '\0' || errno != 0 ||
		    min_valid < 0 || min_valid > 366LL * 86400) {
			evhttp_clear_headers(&params);
			api_reply_error(req, 400, "min_valid takes seconds", 0);
			return -2;
		}
	}
	evhttp_clear_headers(&params);
	return min_valid;
}

static void
api_token(struct evhttp_request *req, const struct control_peer *p,
    const char *name, const char *query)
{
	struct account		*a;
	struct account_view	 v;
	long long		 min_valid;
	int64_t			 now = clock_wall_ms();

	if ((min_valid = api_min_valid(req, query)) == -2)
		return;
	if ((a = api_lookup(req, p, name)) == NULL)
		return;
	account_view(a, now, &v);
	if (min_valid > 0 && (!v.valid || (v.token->expires_at != 0 &&
	    v.token->expires_at < now + min_valid * 1000))) {
		api_wait_for_refresh(req, a, min_valid * 1000,
		    api_wants_json(req));
		return;
	}
	api_reply_token(req, &v, api_wants_json(req), now);
}

static void
api_status(struct evhttp_request *req, const struct control_peer *p,
    const char *rest, const char *query)
{
	struct account_view	 v;
	struct evbuffer		*b;
	int64_t			 now = clock_wall_ms();
	size_t			 i;
	int			 first = 1;

	(void)rest;
	(void)query;
	if ((b = api_buffer(req)) == NULL)
		return;
	evbuffer_add(b, "[", 1);
	for (i = 0; i < registry_count(api.registry); i++) {
		account_view(registry_get(api.registry, i), now, &v);
		if (!api_peer_may_see(p, &v))
			continue;
		if (!first)
			evbuffer_add(b, ",", 1);
		first = 0;
		api_status_one(b, &v);
	}
	evbuffer_add(b, "]\n", 2);
	api_reply(req, 200, "application/json", b);
}

static void
api_refresh(struct evhttp_request *req, const struct control_peer *p,
    const char *name, const char *query)
{
	struct account	*a;

	(void)query;
	if ((a = api_lookup(req, p, name)) != NULL)
		api_wait_for_refresh(req, a, -1, 1);
}

/* ---- logins ---- */

/* The login account named, if the caller may log it in; else answered. */
static struct account *
api_login_lookup(struct evhttp_request *req, const struct control_peer *p,
    const char *name)
{
	struct account	*a;

	if (!config_account_name_valid(name) ||
	    (a = registry_find(api.registry, name)) == NULL ||
	    !api_peer_may_login(p, a)) {
		/* the same answer for unknown and forbidden */
		api_reply_error(req, 404, "no such account", 0);
		return NULL;
	}
	if (!GRANT_IS_LOGIN(account_conf(a)->grant)) {
		api_reply_error(req, 409, "not a login account (grant is "
		    "neither device_code nor authorization_code)", 0);
		return NULL;
	}
	return a;
}

static void
api_login_line_cb_error(struct api_login *l, const char *error)
{
	char	*qn = json_quote(l->name), *qe = json_quote(error), *line;

	xasprintf(&line, "{\"account\":%s,\"error\":%s}\n", qn, qe);
	api_login_line_cb(line, 1, l);
	free(line);
	free(qn);
	free(qe);
}

static void
api_login_line_cb(const char *line, int last, void *arg)
{
	struct api_login	*l = arg;
	struct evbuffer		*b;

	if ((b = evbuffer_new()) != NULL) {
		evbuffer_add(b, line, strlen(line));
		evhttp_send_reply_chunk(l->req, b);
		evbuffer_free(b);
	}
	if (last) {
		LIST_REMOVE(l, entry);
		evhttp_send_reply_end(l->req);
		free(l);
	}
}

/*
 * POST /v1/login/NAME: start the login or join the pending one; the
 * answer is NDJSON, streamed: what the human must do, then the outcome.
 */
static void
api_login(struct evhttp_request *req, const struct control_peer *p,
    const char *name, const char *query)
{
	struct api_login	*l;
	char			*cause = NULL;

	(void)query;
	if (api_login_lookup(req, p, name) == NULL)
		return;
	l = xcalloc(1, sizeof *l);
	l->req = req;
	l->evcon = evhttp_request_get_connection(req);
	snprintf(l->name, sizeof l->name, "%s", name);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/x-ndjson");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	/* linked, and the connection watched, before the first line */
	LIST_INSERT_HEAD(&api_logins, l, entry);
	evhttp_connection_set_closecb(l->evcon, api_conn_close_cb, NULL);
	evhttp_connection_set_timeout(l->evcon, API_LOGIN_TIMEOUT_S);
	api_count(200);
	evhttp_send_reply_start(req, 200, "OK");
	if (login_join(name, api_login_line_cb, l, &cause) != 0) {
		api_login_line_cb_error(l, cause);
		free(cause);
	}
}

/* DELETE /v1/login/NAME: cancel the pending login. */
static void
api_login_cancel(struct evhttp_request *req, const struct control_peer *p,
    const char *name, const char *query)
{
	struct evbuffer	*b;
	char		*q;

	(void)query;
	if (api_login_lookup(req, p, name) == NULL)
		return;
	if (login_cancel(name) != 0) {
		api_reply_error(req, 404, "no login is pending", 0);
		return;
	}
	log_info("login of %s cancelled over the socket (uid %u)", name,
	    (unsigned)p->uid);
	if ((b = api_buffer(req)) == NULL)
		return;
	q = json_quote(name);
	evbuffer_add_printf(b, "{\"account\":%s,\"cancelled\":true}\n", q);
	free(q);
	api_reply(req, 200, "application/json", b);
}

static void
api_logged_out_cb(struct account *a, int revoked, const char *error,
    void *arg)
{
	struct api_pending	*p = arg;
	struct evbuffer		*b;
	char			*q;

	p->account = NULL;	/* the account dropped its waiter already */
	if ((b = api_buffer(p->req)) != NULL) {
		evbuffer_add_printf(b, "{\"account\":\"%s\",\"revoked\":%s",
		    account_name(a), revoked ? "true" : "false");
		if (!revoked) {
			q = json_quote(error != NULL ? error : "revocation "
			    "failed");
			evbuffer_add_printf(b, ",\"error\":%s", q);
			free(q);
		}
		evbuffer_add(b, "}\n", 2);
		api_reply(p->req, 200, "application/json", b);
	}
	api_pending_free(p);
}

/*
 * POST /v1/logout/NAME: root, the daemon's user, [access] login_users and
 * login_groups; anyone else is told there is no such account. The
 * answer waits for the revocation; the tokens are forgotten either way.
 */
static void
api_logout(struct evhttp_request *req, const struct control_peer *p,
    const char *name, const char *query)
{
	struct api_pending	*pd;
	struct account		*a;
	struct timeval		 tv;
	char			*cause = NULL;
	int64_t			 wait;

	(void)query;
	if (!config_account_name_valid(name) ||
	    (a = registry_find(api.registry, name)) == NULL ||
	    !api_peer_may_login(p, a)) {
		api_reply_error(req, 404, "no such account", 0);
		return;
	}
	/* discovery, then two revocations, each up to the timeout */
	wait = 3 * account_conf(a)->timeout + 5 * MSEC_PER_SEC;
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	pd = xcalloc(1, sizeof *pd);
	pd->req = req;
	pd->evcon = evhttp_request_get_connection(req);
	pd->min_valid_ms = -1;
	pd->json = 1;
	pd->logout = 1;
	if ((pd->timeout = evtimer_new(api.base, api_pending_timeout_cb,
	    pd)) == NULL || evtimer_add(pd->timeout, &tv) != 0) {
		if (pd->timeout != NULL)
			event_free(pd->timeout);
		free(pd);
		api_reply_error(req, 503, "out of memory", 5);
		return;
	}
	if (account_logout(a, api_logged_out_cb, pd, &cause) != 0) {
		event_free(pd->timeout);
		free(pd);
		api_reply_error(req, 409, cause, 0);
		free(cause);
		return;
	}
	LIST_INSERT_HEAD(&api_pendings, pd, entry);
	evhttp_connection_set_closecb(pd->evcon, api_conn_close_cb, NULL);
	pd->account = a;
}

/* ,"KEY":["FILE:LINE: message",...] */
static void
api_add_diag(struct evbuffer *b, const char *key, char *const *v, size_t n)
{
	size_t	 i;
	char	*q;

	evbuffer_add_printf(b, ",\"%s\":[", key);
	for (i = 0; i < n; i++) {
		q = json_quote(v[i]);
		evbuffer_add_printf(b, "%s%s", i > 0 ? "," : "", q);
		free(q);
	}
	evbuffer_add(b, "]", 1);
}

/* The answer carries every problem the new configuration has. */
static void
api_reload(struct evhttp_request *req, const struct control_peer *p,
    const char *rest, const char *query)
{
	struct evbuffer	*b;
	struct diag	 d;
	char		*cause = NULL, *q;
	int		 rc;

	(void)rest;
	(void)query;
	if (!p->all) {
		api_reply_error(req, 403, "reload is for root and the daemon's "
		    "user", 0);
		return;
	}
	log_info("reload requested over the socket (uid %u)",
	    (unsigned)p->uid);
	memset(&d, 0, sizeof d);
	rc = api.reload(&d, &cause, api.arg);
	if ((b = api_buffer(req)) != NULL) {
		if (rc != 0) {
			q = json_quote(cause);
			evbuffer_add_printf(b, "{\"error\":%s", q);
			free(q);
		} else
			evbuffer_add_printf(b, "{\"reloaded\":true,"
			    "\"accounts\":%zu", registry_count(api.registry));
		api_add_diag(b, "errors", d.errors, d.nerrors);
		api_add_diag(b, "warnings", d.warnings, d.nwarnings);
		evbuffer_add(b, "}\n", 2);
		api_reply(req, rc != 0 ? 422 : 200, "application/json", b);
	}
	free(cause);
	diag_clear(&d);
}

/* One gauge or counter per account the caller may see. */
enum api_metric {
	API_METRIC_EXPIRY,
	API_METRIC_REFRESHES,
	API_METRIC_FAILURES,
	API_METRIC_STATE,
	API_METRIC_LAST_SUCCESS,
	API_METRIC_FILE_FAILURES,
	API_METRIC_EXPIRES_IN,
	API_METRIC_CERT_EXPIRY,
};

static void
api_metric(struct evbuffer *b, const struct control_peer *p,
    enum api_metric m, int64_t now)
{
	static const struct {
		const char	*name, *type, *help;
	} defs[] = {
		{ "tokend_token_expiry_timestamp_seconds", "gauge",
		    "When the current token expires (0: never)." },
		{ "tokend_refreshes_total", "counter", "Tokens obtained." },
		{ "tokend_refresh_failures_total", "counter",
		    "Failed token requests." },
		{ "tokend_account_state", "gauge",
		    "1 for the state the account is in." },
		{ "tokend_last_success_timestamp_seconds", "gauge",
		    "When the last token was obtained (0: none yet)." },
		{ "tokend_file_write_failures_total", "counter",
		    "Token file writes that failed." },
		{ "tokend_token_expires_in_seconds", "gauge",
		    "Seconds of the current token's life left (0: over)." },
		{ "tokend_client_cert_expiry_timestamp_seconds", "gauge",
		    "When the account's client certificate expires." },
	};
	struct account_view	 v;
	const char		*name = defs[m].name;
	size_t			 i;
	int			 s;

	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name,
	    defs[m].help, name, defs[m].type);
	for (i = 0; i < registry_count(api.registry); i++) {
		account_view(registry_get(api.registry, i), now, &v);
		if (!api_peer_may_see(p, &v))
			continue;
		switch (m) {
		case API_METRIC_EXPIRY:
			if (v.token != NULL)
				evbuffer_add_printf(b, "%s{account=\"%s\"} "
				    "%lld\n", name, v.name,
				    (long long)(v.token->expires_at / 1000));
			break;
		case API_METRIC_REFRESHES:
		case API_METRIC_FAILURES:
		case API_METRIC_FILE_FAILURES:
			evbuffer_add_printf(b, "%s{account=\"%s\"} %llu\n",
			    name, v.name, (unsigned long long)(m ==
			    API_METRIC_REFRESHES ? v.refreshes : m ==
			    API_METRIC_FAILURES ? v.failures : v.file_failures));
			break;
		case API_METRIC_LAST_SUCCESS:
			evbuffer_add_printf(b, "%s{account=\"%s\"} %lld\n",
			    name, v.name, (long long)(v.last_success / 1000));
			break;
		case API_METRIC_EXPIRES_IN:
			/* none for a token that never expires */
			if (v.token != NULL && v.token->expires_at != 0)
				evbuffer_add_printf(b, "%s{account=\"%s\"} "
				    "%lld\n", name, v.name,
				    (long long)api_expires_in_s(&v));
			break;
		case API_METRIC_CERT_EXPIRY:
			/* only accounts with a client_cert_file */
			if (v.cert_not_after != 0)
				evbuffer_add_printf(b, "%s{account=\"%s\"} "
				    "%lld\n", name, v.name,
				    (long long)(v.cert_not_after / 1000));
			break;
		case API_METRIC_STATE:
			for (s = 0; s < ACCOUNT_STATE_COUNT; s++)
				evbuffer_add_printf(b, "%s{account=\"%s\","
				    "state=\"%s\"} %d\n", name, v.name,
				    account_state_name((enum account_state)s),
				    (int)v.state == s);
			break;
		}
	}
}

static void	api_metrics_fleet(struct evbuffer *,
		    const struct control_peer *, int64_t);

static void
api_metrics(struct evhttp_request *req, const struct control_peer *p,
    const char *rest, const char *query)
{
	struct evbuffer		*b;
	int64_t			 now = clock_wall_ms();

	(void)rest;
	(void)query;
	if ((b = api_buffer(req)) == NULL)
		return;
	api_metric(b, p, API_METRIC_EXPIRY, now);
	api_metric(b, p, API_METRIC_REFRESHES, now);
	api_metric(b, p, API_METRIC_FAILURES, now);
	api_metric(b, p, API_METRIC_STATE, now);
	api_metric(b, p, API_METRIC_LAST_SUCCESS, now);
	api_metric(b, p, API_METRIC_FILE_FAILURES, now);
	api_metric(b, p, API_METRIC_EXPIRES_IN, now);
	api_metric(b, p, API_METRIC_CERT_EXPIRY, now);
	evbuffer_add_printf(b,
	    "# HELP tokend_token_requests_in_flight Token requests running.\n"
	    "# TYPE tokend_token_requests_in_flight gauge\n"
	    "tokend_token_requests_in_flight %zu\n"
	    "# HELP tokend_token_requests_queued Token requests waiting for a "
	    "slot.\n"
	    "# TYPE tokend_token_requests_queued gauge\n"
	    "tokend_token_requests_queued %zu\n"
	    "# HELP tokend_socket_answers_total Answers on the socket by class."
	    "\n# TYPE tokend_socket_answers_total counter\n"
	    "tokend_socket_answers_total{code=\"2xx\"} %llu\n"
	    "tokend_socket_answers_total{code=\"4xx\"} %llu\n"
	    "tokend_socket_answers_total{code=\"5xx\"} %llu\n"
	    "# HELP tokend_socket_connections Open socket connections.\n"
	    "# TYPE tokend_socket_connections gauge\n"
	    "tokend_socket_connections %d\n",
	    http_in_flight(api.http), http_queued(api.http),
	    (unsigned long long)api_answers_2xx,
	    (unsigned long long)api_answers_4xx,
	    (unsigned long long)api_answers_5xx, control_connections());
	if (api.fleet != NULL)
		api_metrics_fleet(b, p, now);
	api_reply(req, 200, "text/plain; version=0.0.4", b);
}

/* GET /v1/fleet: the fleet's health, as this instance sees it. */
static void
api_fleet(struct evhttp_request *req, const struct control_peer *p,
    const char *rest, const char *query)
{
	struct fleet_view	 fv;
	struct evbuffer		*b;
	char			*qnode, *qredis, *qmaster, *qerr;

	(void)p;
	(void)rest;
	(void)query;
	if (api.fleet == NULL) {
		api_reply_error(req, 404, "no [fleet] in the configuration", 0);
		return;
	}
	if ((b = api_buffer(req)) == NULL)
		return;
	fleet_view(api.fleet, &fv);
	qnode = json_quote(fv.node);
	qredis = json_quote(fv.redis);
	qmaster = api_quote_or_null(fv.master != NULL ? fv.master : "");
	qerr = json_quote(fv.last_error);
	evbuffer_add_printf(b, "{\"node\":%s,\"redis\":%s,\"master\":%s,"
	    "\"connected\":%s,\"last_error\":%s,\"members\":%zu,"
	    "\"shared\":%zu,\"leading\":%zu,\"lease_losses\":%llu,"
	    "\"publish_failures\":%llu,\"published\":%llu,\"received\":%llu,"
	    "\"reconnects\":%llu}\n", qnode, qredis, qmaster,
	    fv.connected ? "true" : "false", qerr, fv.members, fv.shared,
	    fv.leading, (unsigned long long)fv.lease_losses,
	    (unsigned long long)fv.publish_failures,
	    (unsigned long long)fv.published, (unsigned long long)fv.received,
	    (unsigned long long)fv.reconnects);
	free(qnode);
	free(qredis);
	free(qmaster);
	free(qerr);
	api_reply(req, 200, "application/json", b);
}

/* The fleet's part of /metrics. */
static void
api_metrics_fleet(struct evbuffer *b, const struct control_peer *p,
    int64_t now)
{
	static const char *const gauges[][2] = {
		{ "tokend_fleet_connected", "1 while this instance is in the "
		    "fleet (Redis answers, the key matches)." },
		{ "tokend_fleet_members", "Live instances in the fleet." },
		{ "tokend_fleet_shared_accounts", "Shared accounts here." },
		{ "tokend_fleet_leader_accounts", "Shared accounts this "
		    "instance leads." },
	}, *const counters[][2] = {
		{ "tokend_fleet_lease_losses_total", "Leases lost while "
		    "leading." },
		{ "tokend_fleet_publish_failures_total", "Publishes the fence "
		    "refused." },
		{ "tokend_fleet_published_total", "Tokens published." },
		{ "tokend_fleet_received_total", "Tokens taken from other "
		    "instances." },
		{ "tokend_fleet_reconnects_total", "Reconnections to Redis." },
	};
	struct fleet_view	 fv;
	struct account_view	 v;
	unsigned long long	 gv[4], cv[5];
	size_t			 i;

	fleet_view(api.fleet, &fv);
	gv[0] = (unsigned long long)fv.connected;
	gv[1] = fv.members;
	gv[2] = fv.shared;
	gv[3] = fv.leading;
	cv[0] = fv.lease_losses;
	cv[1] = fv.publish_failures;
	cv[2] = fv.published;
	cv[3] = fv.received;
	cv[4] = fv.reconnects;
	for (i = 0; i < sizeof gauges / sizeof gauges[0]; i++)
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %llu"
		    "\n", gauges[i][0], gauges[i][1], gauges[i][0],
		    gauges[i][0], gv[i]);
	for (i = 0; i < sizeof counters / sizeof counters[0]; i++)
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s "
		    "%llu\n", counters[i][0], counters[i][1], counters[i][0],
		    counters[i][0], cv[i]);
	evbuffer_add_printf(b, "# HELP tokend_account_leading 1 while this "
	    "instance leads the shared account.\n# TYPE tokend_account_leading "
	    "gauge\n");
	for (i = 0; i < registry_count(api.registry); i++) {
		account_view(registry_get(api.registry, i), now, &v);
		if (v.shared && api_peer_may_see(p, &v))
			evbuffer_add_printf(b, "tokend_account_leading{account="
			    "\"%s\"} %d\n", v.name, v.leading);
	}
}

typedef void	(*api_route_fn)(struct evhttp_request *,
		    const struct control_peer *, const char *, const char *);

static const struct api_route {
	const char	*path;
	int		 prefix;	/* the rest of the path is a name */
	int		 post;		/* POST; else GET or HEAD */
	api_route_fn	 fn;
	api_route_fn	 del;		/* DELETE; NULL: none */
} api_routes[] = {
	{ "/v1/token/", 1, 0, api_token, NULL },
	{ "/v1/status", 0, 0, api_status, NULL },
	{ "/v1/refresh/", 1, 1, api_refresh, NULL },
	{ "/v1/login/", 1, 1, api_login, api_login_cancel },
	{ "/v1/logout/", 1, 1, api_logout, NULL },
	{ "/v1/reload", 0, 1, api_reload, NULL },
	{ "/v1/fleet", 0, 0, api_fleet, NULL },
	{ "/metrics", 0, 0, api_metrics, NULL },
};

void
api_handle(struct evhttp_request *req, const struct control_peer *p,
    void *arg)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);
	const char		*path = uri != NULL ? evhttp_uri_get_path(uri) :
				    NULL;
	const struct api_route	*r;
	size_t			 i, len;
	int			 post = cmd == EVHTTP_REQ_POST;

	(void)arg;
	if (path == NULL) {
		api_reply_error(req, 400, "malformed request", 0);
		return;
	}
	if (p == NULL) {
		api_reply_error(req, 403, "cannot tell who is asking", 0);
		return;
	}
	for (i = 0; i < sizeof api_routes / sizeof api_routes[0]; i++) {
		r = &api_routes[i];
		len = strlen(r->path);
		if (r->prefix ? strncmp(path, r->path, len) != 0 :
		    strcmp(path, r->path) != 0)
			continue;
		if (cmd == EVHTTP_REQ_DELETE && r->del != NULL)
			r->del(req, p, path + len, evhttp_uri_get_query(uri));
		else if (r->post != post)
			api_reply_error(req, 405, r->post ? "use POST" :
			    "use GET", 0);
		else
			r->fn(req, p, path + len, evhttp_uri_get_query(uri));
		return;
	}
	api_reply_error(req, 404, "no such endpoint", 0);
}

void
api_init(const struct api_env *env)
{
	api = *env;
}

/* Answer everyone still waiting; before control_shutdown(). */
void
api_shutdown(void)
{
	struct api_pending	*p;

	while ((p = LIST_FIRST(&api_pendings)) != NULL) {
		api_reply_message(p->req, 503, p->json, "tokend is stopping",
		    5);
		api_pending_free(p);
	}
}
