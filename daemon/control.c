/*
 * The control socket: HTTP/1.1 over a Unix stream socket (evhttp), so that
 * `curl --unix-socket` and tokenctl both work. Who may see an account is
 * decided by the caller's credentials (SO_PEERCRED, SO_PEERGROUPS), never
 * by anything the caller says.
 *
 * Connections are capped. evhttp 2.1 has no such limit and tells nobody
 * when it closes a connection, so each connection's bufferevent is made
 * here (evhttp_set_bevcb) and kept alive by one extra reference; once
 * evhttp has let go of it (its callbacks are cleared) a sweep drops ours.
 * While the cap is reached the listener is paused, so a flood of clients
 * cannot take the descriptors that token requests need.
 */
#define _GNU_SOURCE
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "tokend.h"

#define CONTROL_MAX_CONNECTIONS	512
#define CONTROL_TIMEOUT		10	/* seconds: idle and per request */
#define CONTROL_MAX_HEADERS	8192
#define CONTROL_MAX_BODY	4096
#define CONTROL_WAIT_MAX	(60 * MSEC_PER_SEC)
#define PEER_GROUPS_MAX		256

struct peer {
	uid_t		 uid;
	gid_t		 gid;
	gid_t		 groups[PEER_GROUPS_MAX];
	int		 ngroups;
	int		 all;		/* root or the daemon's own user */
};

/* A request that waits for a refresh to finish. */
struct pending {
	struct evhttp_request		*req;
	struct evhttp_connection	*evcon;
	struct account			*account;
	struct event			*timeout;
	int64_t				 min_valid;	/* ms; -1: refresh */
	int				 json;
	LIST_ENTRY(pending)		 entry;
};

struct conn {
	struct bufferevent	*bev;
	LIST_ENTRY(conn)	 entry;
};

static struct daemon_ctx		*control_ctx;
static struct evhttp			*control_http;
static struct evhttp_bound_socket	*control_bound;
static struct event			*control_sweep_ev;
static char				*control_path;	/* NULL: not ours */
static LIST_HEAD(, pending)		 pendings =
    LIST_HEAD_INITIALIZER(pendings);
static LIST_HEAD(, conn)		 conns = LIST_HEAD_INITIALIZER(conns);
static int				 nconns;
static int				 paused;

/* answers by code, for /metrics */
static uint64_t	 answers_2xx, answers_4xx, answers_5xx;

static void	control_waited_cb(struct account *, int, const char *,
		    void *);

/* ---- connections ---- */

static void
control_sweep(void)
{
	struct conn		*c, *next;
	bufferevent_data_cb	 readcb;

	for (c = LIST_FIRST(&conns); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
		if (readcb != NULL)
			continue;
		/* evhttp freed it; ours is the last reference: close it */
		LIST_REMOVE(c, entry);
		bufferevent_decref(c->bev);
		free(c);
		nconns--;
	}
	if (paused && nconns < CONTROL_MAX_CONNECTIONS) {
		evconnlistener_enable(
		    evhttp_bound_socket_get_listener(control_bound));
		paused = 0;
		log_info("control socket: accepting connections again");
	}
}

/* Sweep once a second while connections are open; an idle daemon sleeps. */
static void
control_sweep_arm(void)
{
	struct timeval	 tv = { 1, 0 };

	if (nconns > 0 && !evtimer_pending(control_sweep_ev, NULL))
		evtimer_add(control_sweep_ev, &tv);
}

static void
control_sweep_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	control_sweep();
	control_sweep_arm();
}

static struct bufferevent *
control_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;
	struct conn		*c;

	(void)arg;
	if (nconns + 1 >= CONTROL_MAX_CONNECTIONS)
		control_sweep();
	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	bufferevent_incref(bev);
	c = xcalloc(1, sizeof *c);
	c->bev = bev;
	LIST_INSERT_HEAD(&conns, c, entry);
	nconns++;
	control_sweep_arm();
	if (nconns >= CONTROL_MAX_CONNECTIONS && !paused) {
		evconnlistener_disable(
		    evhttp_bound_socket_get_listener(control_bound));
		paused = 1;
		log_warnx("control socket: %d connections; not accepting more "
		    "until some close", nconns);
	}
	return bev;
}

/* ---- who is asking ---- */

static int
peer_get(struct evhttp_request *req, struct peer *p)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct ucred		 cred;
	socklen_t		 len = sizeof cred;
	evutil_socket_t		 fd;

	memset(p, 0, sizeof *p);
	if (evcon == NULL)
		return -1;
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return -1;
	p->uid = cred.uid;
	p->gid = cred.gid;
	p->all = cred.uid == 0 || cred.uid == control_ctx->uid;
	len = sizeof p->groups;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len) == 0)
		p->ngroups = (int)(len / sizeof(gid_t));
	return 0;
}

static int
peer_may_see(const struct peer *p, const struct account *a)
{
	const struct account_conf *ac = account_conf(a);
	size_t	 i;
	int	 j;

	if (p->all)
		return 1;
	for (i = 0; i < ac->nusers; i++)
		if (ac->users[i] == p->uid)
			return 1;
	for (i = 0; i < ac->ngroups; i++) {
		if (ac->groups[i] == p->gid)
			return 1;
		for (j = 0; j < p->ngroups; j++)
			if (ac->groups[i] == p->groups[j])
				return 1;
	}
	return 0;
}

/* ---- answers ---- */

static void
reply(struct evhttp_request *req, int code, const char *type,
    struct evbuffer *body)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);

	if (type != NULL)
		evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (code < 300)
		answers_2xx++;
	else if (code < 500)
		answers_4xx++;
	else
		answers_5xx++;
	evhttp_send_reply(req, code, NULL, body);
}

/* A JSON error object; `msg` must hold no secret. */
static void
reply_error(struct evhttp_request *req, int code, const char *msg,
    int64_t retry_after)
{
	struct evbuffer	*b = evbuffer_new();
	char		*q = json_quote(msg), ra[32];

	evbuffer_add_printf(b, "{\"error\":%s}\n", q);
	free(q);
	if (retry_after > 0) {
		snprintf(ra, sizeof ra, "%lld", (long long)retry_after);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Retry-After", ra);
	}
	reply(req, code, "application/json", b);
	evbuffer_free(b);
}

/* Seconds until the account's next attempt, for Retry-After. */
static int64_t
retry_after(const struct account *a, int64_t now)
{
	int64_t	 next = account_next_refresh(a), s;

	if (next == 0 || next <= now)
		return 1;
	s = (next - now + 999) / 1000;
	return s < 1 ? 1 : s;
}

static void
reply_token(struct evhttp_request *req, struct account *a, int json,
    int64_t now)
{
	const struct token	*t = account_token(a, now);
	struct evbuffer		*b;
	char			*out;
	size_t			 len;

	if (t == NULL) {
		reply_error(req, 503, "no valid token", retry_after(a, now));
		return;
	}
	b = evbuffer_new();
	if (json) {
		out = sink_render(SINK_JSON, t, now, &len);
		evbuffer_add(b, out, len);
		explicit_bzero(out, len);
		free(out);
		reply(req, 200, "application/json", b);
	} else {
		evbuffer_add(b, t->access_token, strlen(t->access_token));
		reply(req, 200, "text/plain", b);
	}
	/* the evbuffer's copy of the token goes with it */
	evbuffer_free(b);
}

static void
format_time(int64_t wall, char *buf, size_t len)
{
	if (wall == 0)
		snprintf(buf, len, "null");
	else {
		buf[0] = '"';
		format_rfc3339(wall, buf + 1, len - 2);
		strcat(buf, "\"");
	}
}

static void
status_one(struct evbuffer *b, const struct account *a, int64_t now)
{
	const struct token	*t = account_current_token(a);
	const char		*err = account_last_error(a);
	char			 exp[40], next[40], *qerr, *qname;

	format_time(t->access_token != NULL ? t->expires_at : 0, exp,
	    sizeof exp);
	format_time(account_next_refresh(a), next, sizeof next);
	qname = json_quote(account_name(a));
	qerr = err[0] != '\0' ? json_quote(err) : xstrdup("null");
	evbuffer_add_printf(b, "{\"account\":%s,\"state\":\"%s\","
	    "\"expires_at\":%s,\"next_refresh_at\":%s,\"last_error\":%s,"
	    "\"refreshes\":%llu,\"failures\":%llu}", qname,
	    account_state_name(account_state(a, now)), exp, next, qerr,
	    (unsigned long long)account_refreshes(a),
	    (unsigned long long)account_failures(a));
	free(qname);
	free(qerr);
}

/* ---- waiting for a refresh ---- */

static void
pending_free(struct pending *p)
{
	LIST_REMOVE(p, entry);
	if (p->account != NULL)
		account_cancel_waiter(p->account, control_waited_cb, p);
	event_free(p->timeout);
	free(p);
}

static void
control_waited_cb(struct account *a, int ok, const char *error, void *arg)
{
	struct pending	*p = arg;
	struct evbuffer	*b;
	int64_t		 now = clock_wall_ms();
	const struct token *t;

	p->account = NULL;	/* the account dropped its waiter already */
	if (p->min_valid >= 0) {
		t = account_token(a, now);
		if (t != NULL && (t->expires_at == 0 ||
		    t->expires_at >= now + p->min_valid))
			reply_token(p->req, a, p->json, now);
		else
			reply_error(p->req, 503, ok ? "no token valid that "
			    "long could be had" : error, retry_after(a, now));
	} else if (ok) {
		b = evbuffer_new();
		status_one(b, a, now);
		evbuffer_add(b, "\n", 1);
		reply(p->req, 200, "application/json", b);
		evbuffer_free(b);
	} else
		reply_error(p->req, 502, error != NULL ? error : "refresh "
		    "failed", retry_after(a, now));
	pending_free(p);
}

static void
pending_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct pending	*p = arg;

	(void)fd;
	(void)events;
	reply_error(p->req, 503, "the refresh did not finish in time", 5);
	pending_free(p);
}

/* evhttp frees a connection's requests when it closes: forget ours. */
static void
control_conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct pending	*p, *next;

	(void)arg;
	for (p = LIST_FIRST(&pendings); p != NULL; p = next) {
		next = LIST_NEXT(p, entry);
		if (p->evcon == evcon)
			pending_free(p);
	}
}

static void
wait_for_refresh(struct evhttp_request *req, struct account *a,
    int64_t min_valid, int json)
{
	struct pending	*p;
	struct timeval	 tv;
	char		*cause = NULL;
	int64_t		 wait;

	p = xcalloc(1, sizeof *p);
	p->req = req;
	p->evcon = evhttp_request_get_connection(req);
	p->account = a;
	p->min_valid = min_valid;
	p->json = json;
	if (account_refresh_now(a, control_waited_cb, p, &cause) != 0) {
		reply_error(req, 503, cause, retry_after(a, clock_wall_ms()));
		free(cause);
		free(p);
		return;
	}
	wait = account_conf(a)->timeout + 5 * MSEC_PER_SEC;
	if (wait > CONTROL_WAIT_MAX)
		wait = CONTROL_WAIT_MAX;
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	p->timeout = evtimer_new(control_ctx->base, pending_timeout_cb, p);
	evtimer_add(p->timeout, &tv);
	LIST_INSERT_HEAD(&pendings, p, entry);
	evhttp_connection_set_closecb(p->evcon, control_conn_close_cb, NULL);
}

/* ---- endpoints ---- */

static int
wants_json(struct evhttp_request *req)
{
	const char	*accept = evhttp_find_header(
			    evhttp_request_get_input_headers(req), "Accept");

	return accept != NULL && strstr(accept, "application/json") != NULL;
}

/* The account named by the rest of the path, if the caller may see it. */
static struct account *
lookup(struct evhttp_request *req, const struct peer *p, const char *name)
{
	struct account	*a;

	if (!config_account_name_valid(name) ||
	    (a = daemon_find_account(control_ctx, name)) == NULL ||
	    !peer_may_see(p, a)) {
		reply_error(req, 404, "no such account", 0);
		return NULL;
	}
	return a;
}

static void
handle_token(struct evhttp_request *req, const struct peer *p,
    const char *name, const char *query)
{
	struct evkeyvalq	 params;
	struct account		*a;
	const struct token	*t;
	const char		*mv;
	char			*end;
	long long		 min_valid = -1;
	int64_t			 now = clock_wall_ms();

	if (query != NULL) {
		TAILQ_INIT(&params);
		if (evhttp_parse_query_str(query, &params) != 0) {
			reply_error(req, 400, "malformed query", 0);
			return;
		}
		if ((mv = evhttp_find_header(&params, "min_valid")) != NULL) {
			errno = 0;
			min_valid = strtoll(mv, &end, 10);
			if (*mv == '\0' || *end != '\0' || errno != 0 ||
			    min_valid < 0 || min_valid > 366LL * 86400) {
				evhttp_clear_headers(&params);
				reply_error(req, 400, "min_valid takes seconds",
				    0);
				return;
			}
		}
		evhttp_clear_headers(&params);
	}
	if ((a = lookup(req, p, name)) == NULL)
		return;
	t = account_token(a, now);
	if (min_valid > 0 && (t == NULL || (t->expires_at != 0 &&
	    t->expires_at < now + min_valid * 1000))) {
		wait_for_refresh(req, a, min_valid * 1000, wants_json(req));
		return;
	}
	reply_token(req, a, wants_json(req), now);
}

static void
handle_status(struct evhttp_request *req, const struct peer *p)
{
	struct evbuffer	*b = evbuffer_new();
	int64_t		 now = clock_wall_ms();
	size_t		 i;
	int		 first = 1;

	evbuffer_add(b, "[", 1);
	for (i = 0; i < control_ctx->naccounts; i++) {
		if (!peer_may_see(p, control_ctx->accounts[i]))
			continue;
		if (!first)
			evbuffer_add(b, ",", 1);
		first = 0;
		status_one(b, control_ctx->accounts[i], now);
	}
	evbuffer_add(b, "]\n", 2);
	reply(req, 200, "application/json", b);
	evbuffer_free(b);
}

/* One per-account counter, for the accounts the caller may see. */
static void
metric_counter(struct evbuffer *b, const struct peer *p, const char *name,
    const char *help, uint64_t (*get)(const struct account *))
{
	struct account	*a;
	size_t		 i;

	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help,
	    name);
	for (i = 0; i < control_ctx->naccounts; i++) {
		a = control_ctx->accounts[i];
		if (peer_may_see(p, a))
			evbuffer_add_printf(b, "%s{account=\"%s\"} %llu\n",
			    name, account_name(a),
			    (unsigned long long)get(a));
	}
}

static void
handle_metrics(struct evhttp_request *req, const struct peer *p)
{
	struct evbuffer		*b = evbuffer_new();
	const struct token	*t;
	struct account		*a;
	int64_t			 now = clock_wall_ms();
	enum account_state	 st;
	size_t			 i;
	int			 s;

	evbuffer_add_printf(b,
	    "# HELP tokend_token_expiry_timestamp_seconds When the current "
	    "token expires (0: never).\n"
	    "# TYPE tokend_token_expiry_timestamp_seconds gauge\n");
	for (i = 0; i < control_ctx->naccounts; i++) {
		a = control_ctx->accounts[i];
		t = account_current_token(a);
		if (peer_may_see(p, a) && t->access_token != NULL)
			evbuffer_add_printf(b, "tokend_token_expiry_timestamp_"
			    "seconds{account=\"%s\"} %lld\n", account_name(a),
			    (long long)(t->expires_at / 1000));
	}
	metric_counter(b, p, "tokend_refreshes_total", "Tokens obtained.",
	    account_refreshes);
	metric_counter(b, p, "tokend_refresh_failures_total",
	    "Failed token requests.", account_failures);
	evbuffer_add_printf(b,
	    "# HELP tokend_account_state 1 for the state the account is in.\n"
	    "# TYPE tokend_account_state gauge\n");
	for (i = 0; i < control_ctx->naccounts; i++) {
		a = control_ctx->accounts[i];
		if (!peer_may_see(p, a))
			continue;
		st = account_state(a, now);
		for (s = ACCOUNT_FRESH; s <= ACCOUNT_FAILED; s++)
			evbuffer_add_printf(b, "tokend_account_state{account="
			    "\"%s\",state=\"%s\"} %d\n", account_name(a),
			    account_state_name((enum account_state)s),
			    (int)st == s);
	}
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
	    http_in_flight(control_ctx->http), http_queued(control_ctx->http),
	    (unsigned long long)answers_2xx, (unsigned long long)answers_4xx,
	    (unsigned long long)answers_5xx, nconns);
	reply(req, 200, "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

static void
handle_reload(struct evhttp_request *req, const struct peer *p)
{
	struct evbuffer	*b;
	char		*cause = NULL;

	if (!p->all) {
		reply_error(req, 403, "reload is for root and the daemon's "
		    "user", 0);
		return;
	}
	log_info("reload requested over the socket (uid %u)",
	    (unsigned)p->uid);
	if (daemon_reload(control_ctx, &cause) != 0) {
		reply_error(req, 422, cause, 0);
		free(cause);
		return;
	}
	b = evbuffer_new();
	evbuffer_add_printf(b, "{\"reloaded\":true,\"accounts\":%zu}\n",
	    control_ctx->naccounts);
	reply(req, 200, "application/json", b);
	evbuffer_free(b);
}

static void
control_request_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);
	const char		*path = uri != NULL ? evhttp_uri_get_path(uri) :
				    NULL;
	struct account		*a;
	struct peer		 p;
	int			 get = cmd == EVHTTP_REQ_GET ||
				    cmd == EVHTTP_REQ_HEAD;

	(void)arg;
	if (path == NULL) {
		reply_error(req, 400, "malformed request", 0);
		return;
	}
	if (peer_get(req, &p) != 0) {
		reply_error(req, 403, "cannot tell who is asking", 0);
		return;
	}
	if (!strncmp(path, "/v1/token/", 10)) {
		if (!get)
			reply_error(req, 405, "use GET", 0);
		else
			handle_token(req, &p, path + 10,
			    evhttp_uri_get_query(uri));
	} else if (!strcmp(path, "/v1/status")) {
		if (!get)
			reply_error(req, 405, "use GET", 0);
		else
			handle_status(req, &p);
	} else if (!strncmp(path, "/v1/refresh/", 12)) {
		if (cmd != EVHTTP_REQ_POST)
			reply_error(req, 405, "use POST", 0);
		else if ((a = lookup(req, &p, path + 12)) != NULL)
			wait_for_refresh(req, a, -1, 1);
	} else if (!strcmp(path, "/v1/reload")) {
		if (cmd != EVHTTP_REQ_POST)
			reply_error(req, 405, "use POST", 0);
		else
			handle_reload(req, &p);
	} else if (!strcmp(path, "/metrics")) {
		if (!get)
			reply_error(req, 405, "use GET", 0);
		else
			handle_metrics(req, &p);
	} else
		reply_error(req, 404, "no such endpoint", 0);
}

/* ---- the socket ---- */

/* A socket file someone still listens on is not stale. */
static int
socket_in_use(const struct sockaddr_un *sun)
{
	int	 fd, rc;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0;
	close(fd);
	return rc;
}

/*
 * Create the socket's missing folders 0755 whatever the umask (systemd
 * units set UMask=0077): every local user must reach the socket.
 */
static int
mkdir_parents(const char *path)
{
	char	*dir = xstrdup(path), *p;
	int	 saved;

	for (p = dir + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(dir, 0755) == 0)
			chmod(dir, 0755);
		else if (errno != EEXIST) {
			saved = errno;
			free(dir);
			return -saved;
		}
		*p = '/';
	}
	free(dir);
	return 0;
}

static int
control_listen(const char *path)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	mode_t			 old;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		log_warnx("socket path %s is too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	if (mkdir_parents(path) != 0) {
		log_warn("cannot create the folder of %s", path);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("%s exists and is not a socket", path);
			return -1;
		}
		if (socket_in_use(&sun)) {
			log_warnx("%s is in use: is another tokend running?",
			    path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket");
		return -1;
	}
	/* every local user may connect; the daemon decides what they see */
	old = umask(0111);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		umask(old);
		log_warn("bind %s", path);
		close(fd);
		return -1;
	}
	umask(old);
	if (listen(fd, SOMAXCONN) == -1) {
		log_warn("listen %s", path);
		close(fd);
		return -1;
	}
	control_path = xstrdup(path);
	return fd;
}

int
control_init(struct daemon_ctx *ctx, const char *path)
{
	int		 fd = -1, n;

	control_ctx = ctx;
	n = sd_listen_fds(1);
	if (n > 0) {
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			log_warnx("the socket systemd passed is not a "
			    "listening Unix stream socket");
			return -1;
		}
		evutil_make_socket_nonblocking(fd);
		evutil_make_socket_closeonexec(fd);
		log_info("control socket: passed by systemd");
	} else if ((fd = control_listen(path)) == -1)
		return -1;
	else
		log_info("control socket: %s", path);

	if ((control_http = evhttp_new(ctx->base)) == NULL)
		return -1;
	evhttp_set_max_headers_size(control_http, CONTROL_MAX_HEADERS);
	evhttp_set_max_body_size(control_http, CONTROL_MAX_BODY);
	evhttp_set_timeout(control_http, CONTROL_TIMEOUT);
	evhttp_set_allowed_methods(control_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_gencb(control_http, control_request_cb, NULL);
	evhttp_set_bevcb(control_http, control_bev_cb, NULL);
	if ((control_bound = evhttp_accept_socket_with_handle(control_http,
	    fd)) == NULL) {
		log_warnx("cannot serve the control socket");
		return -1;
	}
	control_sweep_ev = evtimer_new(ctx->base, control_sweep_cb, NULL);
	return 0;
}

void
control_shutdown(void)
{
	struct pending	*p;
	struct conn	*c;

	while ((p = LIST_FIRST(&pendings)) != NULL) {
		reply_error(p->req, 503, "tokend is stopping", 5);
		pending_free(p);
	}
	if (control_http != NULL)
		evhttp_free(control_http);
	control_http = NULL;
	while ((c = LIST_FIRST(&conns)) != NULL) {
		LIST_REMOVE(c, entry);
		bufferevent_decref(c->bev);
		free(c);
	}
	nconns = 0;
	if (control_sweep_ev != NULL)
		event_free(control_sweep_ev);
	control_sweep_ev = NULL;
	if (control_path != NULL) {
		unlink(control_path);
		free(control_path);
		control_path = NULL;
	}
}
