/*
 * The loopback redirect listener of the authorization code flow (RFC 8252
 * 7.3): an HTTP server on redirect_uri's IP literal and port (0: any free
 * one), open only while a login waits for the browser. Only GET of the
 * redirect URI's path is taken; the browser gets a short page.
 *
 * The login may close and free the listener from inside its own callback:
 * the free waits until evhttp is done with the request (and the page had
 * a moment to reach the browser).
 */
#define _GNU_SOURCE
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "tokend.h"

#define REDIRECT_MAX_HEADERS	16384
#define REDIRECT_LINGER_MS	2000	/* for the last page to go out */

struct redirect {
	struct event_base		*base;
	struct evhttp			*http;
	struct evhttp_bound_socket	*bound;
	struct event			*linger;
	char				*path;
	redirect_cb			 cb;
	void				*arg;
	int				 in_cb;
	int				 closed;	/* takes nothing more */
	int				 doomed;	/* free once out of cb */
	LIST_ENTRY(redirect)		 entry;		/* lingering */
};

static LIST_HEAD(, redirect)	 redirect_lingering =
    LIST_HEAD_INITIALIZER(redirect_lingering);

static const char redirect_page_ok[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
    "<title>tokend</title></head>\n<body><p>tokend has the answer. "
    "You can close this window.</p></body></html>\n";
static const char redirect_page_bad[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
    "<title>tokend</title></head>\n<body><p>This is not the answer "
    "tokend waits for (wrong or missing state). Start again with "
    "tokenctl login.</p></body></html>\n";

/*
 * Split "http://127.0.0.1:PORT/PATH" or "http://[::1]:PORT/PATH": host as
 * evhttp binds it, port (0: any), path. 0, or -1 with a cause.
 */
int
redirect_uri_parse(const char *uri, char **host, int *port, char **path,
    char **cause)
{
	struct evhttp_uri	*u;
	const char		*h, *p;

	if ((u = evhttp_uri_parse(uri)) == NULL ||
	    evhttp_uri_get_scheme(u) == NULL ||
	    strcmp(evhttp_uri_get_scheme(u), "http") != 0 ||
	    (h = evhttp_uri_get_host(u)) == NULL) {
		if (u != NULL)
			evhttp_uri_free(u);
		xasprintf(cause, "redirect_uri %s is not an http URL", uri);
		return -1;
	}
	if (strcmp(h, "127.0.0.1") != 0 && strcmp(h, "[::1]") != 0) {
		evhttp_uri_free(u);
		xasprintf(cause, "redirect_uri %s is not on 127.0.0.1 or [::1]",
		    uri);
		return -1;
	}
	*host = !strcmp(h, "[::1]") ? xstrdup("::1") : xstrdup(h);
	*port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 0;
	p = evhttp_uri_get_path(u);
	*path = xstrdup(p != NULL && p[0] != '\0' ? p : "/");
	evhttp_uri_free(u);
	return 0;
}

static void
redirect_destroy(struct redirect *r)
{
	if (r->linger != NULL)
		event_free(r->linger);
	if (r->http != NULL)
		evhttp_free(r->http);
	free(r->path);
	free(r);
}

static void
redirect_linger_cb(evutil_socket_t fd, short events, void *arg)
{
	struct redirect	*r = arg;

	(void)fd;
	(void)events;
	LIST_REMOVE(r, entry);
	redirect_destroy(r);
}

static void
redirect_reply(struct evhttp_request *req, int code, const char *page)
{
	struct evbuffer	*b = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "Connection", "close");
	if (b != NULL)
		evbuffer_add(b, page, strlen(page));
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Bad Request", b);
	if (b != NULL)
		evbuffer_free(b);
}

static void
redirect_request_cb(struct evhttp_request *req, void *arg)
{
	struct redirect		*r = arg;
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*path = uri != NULL ? evhttp_uri_get_path(uri) :
				    NULL;
	int			 ok;

	if (r->closed || evhttp_request_get_command(req) != EVHTTP_REQ_GET ||
	    path == NULL || strcmp(path, r->path) != 0) {
		/* favicon.ico and the like */
		evhttp_send_error(req, 404, NULL);
		return;
	}
	r->in_cb = 1;
	ok = r->cb(evhttp_uri_get_query(uri), r->arg) == 0;
	r->in_cb = 0;
	redirect_reply(req, ok ? 200 : 400, ok ? redirect_page_ok :
	    redirect_page_bad);
	if (r->doomed)
		redirect_free(r);
}

/*
 * Listen for the redirect of `uri`. The redirect URI to send (with the
 * port bound when it said 0) in *actual. NULL with a cause when the
 * address cannot be had (the port taken, say).
 */
struct redirect *
redirect_open(struct event_base *base, const char *uri, redirect_cb cb,
    void *arg, char **actual, char **cause)
{
	struct redirect		*r;
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof ss;
	char			*host, *path;
	int			 port, fd;

	if (redirect_uri_parse(uri, &host, &port, &path, cause) != 0)
		return NULL;
	r = xcalloc(1, sizeof *r);
	r->base = base;
	r->path = path;
	r->cb = cb;
	r->arg = arg;
	if ((r->http = evhttp_new(base)) == NULL) {
		xasprintf(cause, "redirect listener: out of memory");
		goto fail;
	}
	evhttp_set_max_headers_size(r->http, REDIRECT_MAX_HEADERS);
	evhttp_set_max_body_size(r->http, 0);
	evhttp_set_timeout(r->http, 10);
	evhttp_set_allowed_methods(r->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(r->http, redirect_request_cb, r);
	if ((r->bound = evhttp_bind_socket_with_handle(r->http, host,
	    (ev_uint16_t)port)) == NULL) {
		xasprintf(cause, "cannot listen on %s port %d for the "
		    "redirect: %s", host, port, strerror(errno));
		goto fail;
	}
	fd = evhttp_bound_socket_get_fd(r->bound);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		xasprintf(cause, "redirect listener: getsockname: %s",
		    strerror(errno));
		goto fail;
	}
	port = ntohs(ss.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	xasprintf(actual, "http://%s%s%s:%d%s", strchr(host, ':') != NULL ?
	    "[" : "", host, strchr(host, ':') != NULL ? "]" : "", port, path);
	free(host);
	return r;
fail:
	free(host);
	redirect_destroy(r);
	return NULL;
}

/* Take no more redirects (the listening socket closes at once). */
void
redirect_close(struct redirect *r)
{
	if (r == NULL || r->closed)
		return;
	r->closed = 1;
	if (r->bound != NULL)
		evhttp_del_accept_socket(r->http, r->bound);
	r->bound = NULL;
}

void
redirect_free(struct redirect *r)
{
	struct timeval	 tv = { REDIRECT_LINGER_MS / 1000,
			    (REDIRECT_LINGER_MS % 1000) * 1000 };

	if (r == NULL)
		return;
	redirect_close(r);
	if (r->in_cb) {
		r->doomed = 1;
		return;
	}
	/* a page just sent gets a moment to leave */
	if ((r->linger = evtimer_new(r->base, redirect_linger_cb, r)) !=
	    NULL && evtimer_add(r->linger, &tv) == 0) {
		LIST_INSERT_HEAD(&redirect_lingering, r, entry);
		return;
	}
	redirect_destroy(r);
}

/* At shutdown, after login_shutdown(): the lingering ones go now. */
void
redirect_shutdown(void)
{
	struct redirect	*r;

	while ((r = LIST_FIRST(&redirect_lingering)) != NULL) {
		LIST_REMOVE(r, entry);
		redirect_destroy(r);
	}
}
