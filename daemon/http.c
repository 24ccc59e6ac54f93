/*
 * HTTPS POSTs (and the GETs of discovery) on libcurl's multi interface driven by libevent, as in
 * curl's hiperfifo example: one CURLM, a persistent event per curl socket,
 * one libevent timer for curl's timeouts. Nothing here knows OAuth.
 *
 * Requests wait in a FIFO per host until both the global limit and the
 * limit per host allow them to start, so a start-up storm of thousands of
 * accounts never has more than max_requests in flight, nor more than
 * max_requests_per_host against one endpoint. Hosts with waiting requests
 * take turns, so one busy endpoint does not starve the others, and
 * starting a request never walks past requests that cannot start. An easy
 * handle is only made when its request starts, which keeps queued requests
 * small; the one multi handle keeps connections alive between requests.
 *
 * A request's callback runs from the event loop only, never from inside
 * http_post(), http_cancel() or http_set_limits(): a request that cannot
 * start (curl_multi_add_handle fails, say) is put on a list that an
 * activated event drains, as curl's hiperfifo reports every completion
 * from check_multi_info. Callers may therefore keep the handle http_post()
 * returns until their callback runs.
 */
#define _GNU_SOURCE
#include <sys/queue.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "tokend.h"

struct http_request;

enum http_request_state {
	HTTP_REQUEST_QUEUED,	/* on its host's queue */
	HTTP_REQUEST_RUNNING,	/* in the multi handle */
	HTTP_REQUEST_DONE,	/* could not start; on http->done */
};

struct http_host {
	char			*key;		/* scheme://host:port */
	int			 running;
	TAILQ_HEAD(, http_request) queue;
	int			 ready;		/* on http->ready */
	TAILQ_ENTRY(http_host)	 entry;
	TAILQ_ENTRY(http_host)	 ready_entry;
};

struct http_request {
	struct http		*http;
	CURL			*easy;
	struct curl_slist	*headers;
	char			*url;
	char			*body;		/* secret */
	size_t			 body_len;
	char			*authorization;	/* secret */
	char			*ca_file;
	char			*proxy;		/* may hold a password */
	int64_t			 timeout_ms;
	int			 allow_http;
	int			 fresh_connect;
	int			 get;
	char			*client_cert;	/* PEM; NULL: none */
	size_t			 client_cert_len;
	char			*client_key;	/* secret */
	size_t			 client_key_len;
	struct http_host	*host;
	enum http_request_state	 state;

	char			*buf;
	size_t			 len;
	size_t			 cap;
	int			 truncated;
	char			 errbuf[CURL_ERROR_SIZE];

	http_done_cb		 cb;
	void			*arg;
	TAILQ_ENTRY(http_request) entry;
};

struct http {
	struct event_base	*base;
	CURLM			*multi;
	struct event		*timer_ev;
	int			 max_requests;
	int			 max_per_host;
	size_t			 running;
	size_t			 queued;
	TAILQ_HEAD(, http_host)	 hosts;
	/* hosts with waiting requests and room to start one, in turn */
	TAILQ_HEAD(, http_host)	 ready;
	/* requests that could not start, reported from done_ev */
	TAILQ_HEAD(, http_request) done;
	struct event		*done_ev;
};

struct http_sock {
	struct event		*ev;
	struct http		*http;
};

static void	http_pump(struct http *);
static void	http_host_update(struct http *, struct http_host *);
static void	http_check_done(struct http *);
static void	http_unstarted_cb(evutil_socket_t, short, void *);

static void
http_event_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct http	*http = arg;
	int		 action = 0, still;

	if (kind & EV_READ)
		action |= CURL_CSELECT_IN;
	if (kind & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	if (curl_multi_socket_action(http->multi, fd, action, &still) !=
	    CURLM_OK)
		log_warnx("curl_multi_socket_action failed");
	http_check_done(http);
}

static void
http_timer_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct http	*http = arg;
	int		 still;

	(void)fd;
	(void)kind;
	if (curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0,
	    &still) != CURLM_OK)
		log_warnx("curl_multi_socket_action failed");
	http_check_done(http);
}

/* CURLMOPT_TIMERFUNCTION: re-arm our one timer; never call into curl. */
static int
http_multi_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct http	*http = arg;
	struct timeval	 tv;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(http->timer_ev);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(http->timer_ev, &tv);
	return 0;
}

/* CURLMOPT_SOCKETFUNCTION: one persistent event per curl socket. */
static int
http_multi_sock_cb(CURL *easy, curl_socket_t s, int what, void *arg,
    void *sockp)
{
	struct http	 *http = arg;
	struct http_sock *hs = sockp;
	short		  kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (hs != NULL) {
			event_free(hs->ev);
			free(hs);
			curl_multi_assign(http->multi, s, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (hs == NULL) {
		hs = xcalloc(1, sizeof *hs);
		hs->http = http;
		if (curl_multi_assign(http->multi, s, hs) != CURLM_OK) {
			free(hs);
			return -1;
		}
	} else
		event_free(hs->ev);
	/* -1 makes libcurl fail the transfer, reported as any other error */
	if ((hs->ev = event_new(http->base, s, kind, http_event_cb, http)) ==
	    NULL || event_add(hs->ev, NULL) != 0) {
		log_warnx("cannot watch a token request's socket");
		return -1;
	}
	return 0;
}

static size_t
http_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_request	*req = arg;
	size_t			 n = size * nmemb;

	/* CURLOPT_MAXFILESIZE does not stop a chunked body; this does */
	if (req->len + n > RESPONSE_MAX) {
		req->truncated = 1;
		return 0;
	}
	if (req->len + n + 1 > req->cap) {
		while (req->len + n + 1 > req->cap)
			req->cap = req->cap ? req->cap * 2 : 4096;
		req->buf = xreallocarray(req->buf, req->cap, 1);
	}
	memcpy(req->buf + req->len, data, n);
	req->len += n;
	req->buf[req->len] = '\0';
	return n;
}

struct http *
http_new(struct event_base *base, int max_requests, int max_per_host)
{
	struct http	*http;

	http = xcalloc(1, sizeof *http);
	http->base = base;
	TAILQ_INIT(&http->hosts);
	TAILQ_INIT(&http->ready);
	TAILQ_INIT(&http->done);
	http->max_requests = max_requests;
	http->max_per_host = max_per_host;
	if ((http->multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	if ((http->timer_ev = evtimer_new(base, http_timer_cb, http)) == NULL ||
	    (http->done_ev = event_new(base, -1, 0, http_unstarted_cb, http)) ==
	    NULL)
		fatalx("event_new failed");
	if (curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION,
	    http_multi_sock_cb) != CURLM_OK ||
	    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http) !=
	    CURLM_OK ||
	    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION,
	    http_multi_timer_cb) != CURLM_OK ||
	    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http) !=
	    CURLM_OK ||
	    curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS,
	    (long)max_requests) != CURLM_OK)
		fatalx("curl_multi_setopt failed");
	return http;
}

void
http_set_limits(struct http *http, int max_requests, int max_per_host)
{
	struct http_host	*h;

	http->max_requests = max_requests;
	http->max_per_host = max_per_host;
	TAILQ_FOREACH(h, &http->hosts, entry)
		http_host_update(http, h);
	if (curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS,
	    (long)max_requests) != CURLM_OK)
		log_warnx("cannot change the number of kept connections");
	http_pump(http);
}

static void
http_wipe_slist(struct curl_slist *l)
{
	for (; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
}

static void
http_request_free(struct http_request *req)
{
	if (req->easy != NULL) {
		curl_multi_remove_handle(req->http->multi, req->easy);
		curl_easy_cleanup(req->easy);
	}
	http_wipe_slist(req->headers);
	curl_slist_free_all(req->headers);
	free(req->url);
	freezero_str(req->body);
	freezero_str(req->authorization);
	free(req->ca_file);
	freezero_str(req->proxy);
	free(req->client_cert);
	if (req->client_key != NULL) {
		explicit_bzero(req->client_key, req->client_key_len);
		free(req->client_key);
	}
	if (req->buf != NULL) {
		explicit_bzero(req->buf, req->len);
		free(req->buf);
	}
	free(req);
}

static char *
http_host_key(const char *url)
{
	CURLU	*u;
	char	*scheme = NULL, *host = NULL, *port = NULL, *key;

	if ((u = curl_url()) == NULL)
		fatalx("curl_url");
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) ==
	    CURLUE_OK) {
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
		curl_url_get(u, CURLUPART_HOST, &host, 0);
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	}
	xasprintf(&key, "%s://%s:%s", scheme ? scheme : "?",
	    host ? host : "?", port ? port : "?");
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return key;
}

static struct http_host *
http_host_get(struct http *http, const char *url)
{
	struct http_host	*h;
	char			*key = http_host_key(url);

	TAILQ_FOREACH(h, &http->hosts, entry)
		if (!strcasecmp(h->key, key)) {
			free(key);
			return h;
		}
	h = xcalloc(1, sizeof *h);
	h->key = key;
	TAILQ_INIT(&h->queue);
	TAILQ_INSERT_TAIL(&http->hosts, h, entry);
	return h;
}

/* Append to a header list; a failed append keeps the list. */
static int
http_header_add(struct curl_slist **list, const char *header)
{
	struct curl_slist	*l;

	if ((l = curl_slist_append(*list, header)) == NULL)
		return -1;
	*list = l;
	return 0;
}

/*
 * Every option that decides where a secret may go (protocols, redirects,
 * trust), how long a request may take, or how much of an answer is kept
 * must take: a request whose options do not all stick is not sent.
 */
static int
http_setopts(struct http_request *req)
{
	CURL	*e = req->easy;

#define HTTP_OPT(opt, val)	(curl_easy_setopt(e, (opt), (val)) == CURLE_OK)
	if (!(HTTP_OPT(CURLOPT_URL, req->url) &&
	    (req->get ? HTTP_OPT(CURLOPT_HTTPGET, 1L) :
	    HTTP_OPT(CURLOPT_POSTFIELDS, req->body) &&
	    HTTP_OPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len)) &&
	    HTTP_OPT(CURLOPT_HTTPHEADER, req->headers) &&
	    HTTP_OPT(CURLOPT_PROTOCOLS_STR, req->allow_http ? "https,http" :
	    "https") &&
	    HTTP_OPT(CURLOPT_REDIR_PROTOCOLS_STR, "https") &&
	    HTTP_OPT(CURLOPT_FOLLOWLOCATION, 0L) &&
	    HTTP_OPT(CURLOPT_CONNECTTIMEOUT_MS, (long)req->timeout_ms) &&
	    HTTP_OPT(CURLOPT_TIMEOUT_MS, (long)req->timeout_ms) &&
	    HTTP_OPT(CURLOPT_NOSIGNAL, 1L) &&
	    HTTP_OPT(CURLOPT_WRITEFUNCTION, http_write_cb) &&
	    HTTP_OPT(CURLOPT_WRITEDATA, req) &&
	    HTTP_OPT(CURLOPT_ERRORBUFFER, req->errbuf) &&
	    HTTP_OPT(CURLOPT_PRIVATE, req) &&
	    HTTP_OPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)RESPONSE_MAX)))
		return -1;
	/*
	 * HTTP/1.1 with kept-alive connections, at most max_requests_per_host
	 * to an endpoint. Debian 12's libcurl 7.88.1 failed 1 and then 3 of
	 * 500 multiplexed HTTP/2 token requests to nginx with "Stream error
	 * in the HTTP/2 framing layer" (0 of 10,000 over HTTP/1.1); a token
	 * request is a few hundred bytes, so multiplexing buys little.
	 */
	if (!HTTP_OPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1))
		return -1;
	/*
	 * ca_file is the only trust anchor: without CAPATH cleared, Debian's
	 * libcurl keeps trusting /etc/ssl/certs beside it.
	 */
	if (req->ca_file != NULL && !(HTTP_OPT(CURLOPT_CAINFO, req->ca_file) &&
	    HTTP_OPT(CURLOPT_CAPATH, NULL)))
		return -1;
	/*
	 * The configured proxy or none: "" makes libcurl ignore https_proxy,
	 * ALL_PROXY and kin, which would otherwise redirect requests (and,
	 * with allow_http, the secret) silently.
	 */
	if (!HTTP_OPT(CURLOPT_PROXY, req->proxy != NULL ? req->proxy : ""))
		return -1;
	if (req->fresh_connect && !HTTP_OPT(CURLOPT_FRESH_CONNECT, 1L))
		return -1;
	/*
	 * Mutual TLS: the certificate and key from memory, not copied
	 * (libcurl would free its copy of the key without wiping it); they
	 * live as long as the request and are wiped at its end.
	 */
	if (req->client_cert != NULL) {
		struct curl_blob cert = { req->client_cert,
		    req->client_cert_len, CURL_BLOB_NOCOPY };
		struct curl_blob key = { req->client_key, req->client_key_len,
		    CURL_BLOB_NOCOPY };

		if (!(HTTP_OPT(CURLOPT_SSLCERT_BLOB, &cert) &&
		    HTTP_OPT(CURLOPT_SSLCERTTYPE, "PEM") &&
		    HTTP_OPT(CURLOPT_SSLKEY_BLOB, &key) &&
		    HTTP_OPT(CURLOPT_SSLKEYTYPE, "PEM")))
			return -1;
	}
	/* nice to have: a failure here changes neither safety nor outcome */
	(void)curl_easy_setopt(e, CURLOPT_USERAGENT, "tokend/" TOKEND_VERSION);
	(void)curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
#undef HTTP_OPT
	return 0;
}

static int
http_start(struct http *http, struct http_request *req)
{
	char	*auth;
	int	 rc;

	if ((req->easy = curl_easy_init()) == NULL)
		return -ENOMEM;
	if ((!req->get && http_header_add(&req->headers,
	    "Content-Type: application/x-www-form-urlencoded") != 0) ||
	    http_header_add(&req->headers, "Accept: application/json") != 0 ||
	    http_header_add(&req->headers, "Expect:") != 0)
		return -ENOMEM;
	if (req->authorization != NULL) {
		xasprintf(&auth, "Authorization: %s", req->authorization);
		rc = http_header_add(&req->headers, auth);
		freezero_str(auth);
		if (rc != 0)
			return -ENOMEM;
	}
	if (http_setopts(req) != 0)
		return -EINVAL;
	if (curl_multi_add_handle(http->multi, req->easy) != CURLM_OK) {
		/* not in the multi handle: nothing to remove at free */
		curl_easy_cleanup(req->easy);
		req->easy = NULL;
		return -EIO;
	}
	req->state = HTTP_REQUEST_RUNNING;
	req->host->running++;
	http->running++;
	return 0;
}

/* Put a host in line to start a request, if it has one and room for it. */
static void
http_host_update(struct http *http, struct http_host *h)
{
	int	 ready = !TAILQ_EMPTY(&h->queue) &&
		    h->running < http->max_per_host;

	if (ready && !h->ready)
		TAILQ_INSERT_TAIL(&http->ready, h, ready_entry);
	else if (!ready && h->ready)
		TAILQ_REMOVE(&http->ready, h, ready_entry);
	h->ready = ready;
}

/* Report the requests that could not start; from the event loop only. */
static void
http_unstarted_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct http		*http = arg;
	struct http_request	*req;
	struct http_result	 res;

	(void)fd;
	(void)kind;
	while ((req = TAILQ_FIRST(&http->done)) != NULL) {
		TAILQ_REMOVE(&http->done, req, entry);
		memset(&res, 0, sizeof res);
		res.curl_code = CURLE_FAILED_INIT;
		res.error = req->errbuf;
		req->cb(&res, req->arg);
		http_request_free(req);
	}
}

/* Start waiting requests while the limits allow, hosts taking turns. */
static void
http_pump(struct http *http)
{
	struct http_request	*req;
	struct http_host	*h;
	int			 rc;

	while (http->running < (size_t)http->max_requests &&
	    (h = TAILQ_FIRST(&http->ready)) != NULL) {
		req = TAILQ_FIRST(&h->queue);
		TAILQ_REMOVE(&h->queue, req, entry);
		http->queued--;
		/* to the back of the line: the next host's turn */
		TAILQ_REMOVE(&http->ready, h, ready_entry);
		h->ready = 0;
		if ((rc = http_start(http, req)) != 0) {
			snprintf(req->errbuf, sizeof req->errbuf, "cannot start "
			    "the request: %s", rc == -EINVAL ? "libcurl refused "
			    "an option" : rc == -EIO ? "libcurl refused the "
			    "transfer" : strerror(-rc));
			req->state = HTTP_REQUEST_DONE;
			TAILQ_INSERT_TAIL(&http->done, req, entry);
			event_active(http->done_ev, EV_TIMEOUT, 0);
		}
		http_host_update(http, h);
	}
}

static void
http_finish(struct http *http, struct http_request *req, CURLcode code)
{
	struct http_result	 res;
	struct curl_header	*h = NULL;
	curl_off_t		 up = 0;
	long			 status = 0, reqsize = 0;

	memset(&res, 0, sizeof res);
	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(req->easy, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(req->easy, CURLINFO_REQUEST_SIZE, &reqsize);
	res.curl_code = code;
	res.status = code == CURLE_OK ? status : 0;
	res.body = req->buf != NULL ? req->buf : "";
	res.len = req->len;
	res.truncated = req->truncated;
	if (curl_easy_header(req->easy, "Retry-After", 0, CURLH_HEADER, -1,
	    &h) == CURLHE_OK && h != NULL && h->value != NULL)
		res.retry_after_raw = h->value;
	/* GitHub's primary rate limit: none left until the reset */
	if (curl_easy_header(req->easy, "X-RateLimit-Remaining", 0,
	    CURLH_HEADER, -1, &h) == CURLHE_OK && h != NULL &&
	    h->value != NULL && !strcmp(h->value, "0") &&
	    curl_easy_header(req->easy, "X-RateLimit-Reset", 0, CURLH_HEADER,
	    -1, &h) == CURLHE_OK && h != NULL && h->value != NULL) {
		char	*end;
		long long v;

		errno = 0;
		v = strtoll(h->value, &end, 10);
		res.ratelimit_reset = errno == 0 && *end == '\0' && v > 0 ?
		    (int64_t)v : 0;
	}
	if (curl_easy_header(req->easy, "Date", 0, CURLH_HEADER, -1,
	    &h) == CURLHE_OK && h != NULL && h->value != NULL) {
		time_t	 t = curl_getdate(h->value, NULL);

		res.date = t > 0 ? (int64_t)t : 0;
	}
	/* the whole request left us: its outcome is unknown if no answer */
	res.sent = reqsize > 0 && up >= (curl_off_t)req->body_len;
	if (req->truncated)
		res.error = "response larger than 1 MiB";
	else if (code != CURLE_OK)
		res.error = req->errbuf[0] != '\0' ? req->errbuf :
		    curl_easy_strerror(code);

	req->host->running--;
	http->running--;
	http_host_update(http, req->host);
	req->cb(&res, req->arg);
	http_request_free(req);
}

static void
http_check_done(struct http *http)
{
	struct http_request	*req;
	CURLMsg			*msg;
	int			 left;

	while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		req = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &req);
		if (req != NULL)
			http_finish(http, req, msg->data.result);
	}
	http_pump(http);
}

/*
 * Queue a POST (a GET with p->get). The callback runs exactly once, from the event loop (never
 * before this returns), unless the request is cancelled first.
 */
struct http_request *
http_post(struct http *http, const struct http_post *p, http_done_cb cb,
    void *arg)
{
	struct http_request	*req;

	req = xcalloc(1, sizeof *req);
	req->http = http;
	req->url = xstrdup(p->url);
	req->get = p->get;
	req->body = xstrdup(p->get ? "" : p->body);
	req->body_len = strlen(req->body);
	if (p->authorization != NULL)
		req->authorization = xstrdup(p->authorization);
	if (p->ca_file != NULL)
		req->ca_file = xstrdup(p->ca_file);
	if (p->proxy != NULL)
		req->proxy = xstrdup(p->proxy);
	req->timeout_ms = p->timeout_ms;
	req->allow_http = p->allow_http;
	req->fresh_connect = p->fresh_connect;
	if (p->client_cert != NULL && p->client_key != NULL) {
		req->client_cert = xcalloc(1, p->client_cert_len);
		memcpy(req->client_cert, p->client_cert, p->client_cert_len);
		req->client_cert_len = p->client_cert_len;
		req->client_key = xcalloc(1, p->client_key_len);
		memcpy(req->client_key, p->client_key, p->client_key_len);
		req->client_key_len = p->client_key_len;
	}
	req->host = http_host_get(http, p->url);
	req->cb = cb;
	req->arg = arg;
	TAILQ_INSERT_TAIL(&req->host->queue, req, entry);
	http->queued++;
	http_host_update(http, req->host);
	http_pump(http);
	return req;
}

/* Not from inside the request's own callback: http.c frees it after that. */
void
http_cancel(struct http_request *req)
{
	struct http	*http = req->http;

	switch (req->state) {
	case HTTP_REQUEST_RUNNING:
		req->host->running--;
		http->running--;
		break;
	case HTTP_REQUEST_QUEUED:
		TAILQ_REMOVE(&req->host->queue, req, entry);
		http->queued--;
		break;
	case HTTP_REQUEST_DONE:
		TAILQ_REMOVE(&http->done, req, entry);
		break;
	}
	http_host_update(http, req->host);
	http_request_free(req);
	http_pump(http);
}

size_t
http_in_flight(const struct http *http)
{
	return http->running;
}

size_t
http_queued(const struct http *http)
{
	return http->queued;
}

void
http_free(struct http *http)
{
	struct http_request	*req;
	struct http_host	*h;

	if (http == NULL)
		return;
	TAILQ_FOREACH(h, &http->hosts, entry)
		while ((req = TAILQ_FIRST(&h->queue)) != NULL) {
			TAILQ_REMOVE(&h->queue, req, entry);
			http_request_free(req);
		}
	while ((req = TAILQ_FIRST(&http->done)) != NULL) {
		TAILQ_REMOVE(&http->done, req, entry);
		http_request_free(req);
	}
	curl_multi_cleanup(http->multi);
	event_free(http->timer_ev);
	event_free(http->done_ev);
	while ((h = TAILQ_FIRST(&http->hosts)) != NULL) {
		TAILQ_REMOVE(&http->hosts, h, entry);
		free(h->key);
		free(h);
	}
	free(http);
}
