/*
 * tokenctl's HTTP/1.1 client: one request over tokend's Unix socket, one
 * answer read back. libcurl costs some 40 shared libraries and 10 ms of
 * start-up for this, and libevent 2.1's evhttp client cannot use an
 * AF_UNIX socket (it closes a connected one and dials TCP). The daemon is
 * evhttp: it answers with Content-Length (chunked is read too), and closes
 * after the answer because we ask it to.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "tokend.h"

#define CLIENT_HEAD_MAX		(16 * 1024)	/* status line and headers */
#define CLIENT_CHUNK_LINE_MAX	64		/* "1f3a;ext\r\n" */

enum client_framing {
	CLIENT_LENGTH,		/* Content-Length */
	CLIENT_CHUNKED,
	CLIENT_UNTIL_EOF,
};

enum client_chunk_state {
	CLIENT_CHUNK_SIZE,	/* at a chunk-size line */
	CLIENT_CHUNK_DATA,
	CLIENT_CHUNK_CRLF,	/* the CRLF after a chunk's data */
	CLIENT_CHUNK_TRAILER,	/* trailer lines up to an empty one */
};

struct client_reader {
	char			*buf;		/* what came, NUL-terminated */
	size_t			 len;
	size_t			 cap;		/* the body's cap */
	int			 status;
	char			 content_type[64];
	size_t			 body;		/* where the body starts; 0:
						   the head is not complete */
	enum client_framing	 framing;
	size_t			 length;	/* Content-Length */
	/* chunked: the next raw byte to read, the decoded body's end */
	size_t			 pos;
	size_t			 out;
	size_t			 chunk_left;
	enum client_chunk_state	 chunk;
	int			 done;
	/* a 200 application/x-ndjson answer: each line as it comes */
	int			(*line_cb)(const char *, void *);
	void			*line_arg;
	int			 streaming;
	size_t			 delivered;	/* where the next line starts */
	size_t			 lines;		/* handed to line_cb so far */
};

struct client_reader *
client_reader_new(size_t cap)
{
	struct client_reader	*r = xcalloc(1, sizeof *r);

	r->cap = cap;
	r->buf = xcalloc(1, 1);
	return r;
}

/*
 * Hand each line of a 200 application/x-ndjson answer to cb as it comes
 * (without its newline; empty lines skipped); cb returns non-zero when
 * the answer is complete for it. Other answers are read whole.
 */
void
client_reader_stream(struct client_reader *r,
    int (*cb)(const char *, void *), void *arg)
{
	r->line_cb = cb;
	r->line_arg = arg;
}

size_t
client_reader_lines(const struct client_reader *r)
{
	return r->lines;
}

void
client_reader_free(struct client_reader *r)
{
	if (r == NULL)
		return;
	/* an answer may hold a token */
	explicit_bzero(r->buf, r->len);
	free(r->buf);
	free(r);
}

static int
client_fail(char **cause, const char *what)
{
	*cause = xstrdup(what);
	return -1;
}

/* A header's value with its spaces trimmed, or NULL when `line` is not it. */
static const char *
client_header_value(char *line, const char *name)
{
	size_t	 namelen = strlen(name);
	char	*v, *end;

	if (strncasecmp(line, name, namelen) != 0 || line[namelen] != ':')
		return NULL;
	for (v = line + namelen + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (end = v + strlen(v); end > v && (end[-1] == ' ' ||
	    end[-1] == '\t'); end--)
		;
	*end = '\0';
	return v;
}

static int
client_parse_length(const char *v, size_t cap, size_t *out)
{
	size_t	 n = 0;

	if (*v == '\0')
		return -1;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || n > cap / 10)
			return -1;
		n = n * 10 + (size_t)(*v - '0');
	}
	if (n > cap)
		return -1;
	*out = n;
	return 0;
}

/* The status line and headers, once all of them are in. */
static int
client_parse_head(struct client_reader *r, char *head, char **cause)
{
	char		*line, *next, *end;
	const char	*v;
	int		 have_length = 0;
	long		 code;

	if ((next = strstr(head, "\r\n")) == NULL)
		return client_fail(cause, "malformed answer");
	*next = '\0';
	next += 2;
	if (strncmp(head, "HTTP/1.", 7) != 0 || (head[7] != '0' &&
	    head[7] != '1') || head[8] != ' ')
		return client_fail(cause, "not an HTTP/1 answer");
	code = strtol(head + 9, &end, 10);
	if (end != head + 12 || (*end != ' ' && *end != '\0') ||
	    code < 200 || code > 599)
		return client_fail(cause, "malformed status line");
	r->status = (int)code;
	r->framing = CLIENT_UNTIL_EOF;
	for (line = next; *line != '\0'; line = next) {
		if ((next = strstr(line, "\r\n")) == NULL)
			return client_fail(cause, "malformed header");
		*next = '\0';
		next += 2;
		if ((v = client_header_value(line, "Content-Length")) != NULL) {
			if (have_length || client_parse_length(v, r->cap,
			    &r->length) != 0)
				return client_fail(cause, "bad or too large "
				    "Content-Length");
			have_length = 1;
			if (r->framing != CLIENT_CHUNKED)
				r->framing = CLIENT_LENGTH;
		} else if ((v = client_header_value(line, "Transfer-Encoding"))
		    != NULL) {
			if (strcasecmp(v, "chunked") != 0)
				return client_fail(cause, "unknown "
				    "Transfer-Encoding");
			r->framing = CLIENT_CHUNKED;
		} else if ((v = client_header_value(line, "Content-Type")) !=
		    NULL)
			snprintf(r->content_type, sizeof r->content_type, "%s",
			    v);
		else if (strchr(line, ':') == NULL)
			return client_fail(cause, "malformed header");
	}
	return 0;
}

/* Decode what has come of a chunked body, in place. 1: the whole body. */
static int
client_dechunk(struct client_reader *r, char **cause)
{
	char		*crlf, *end;
	size_t		 n;
	unsigned long	 size;

	for (;;) {
		switch (r->chunk) {
		case CLIENT_CHUNK_SIZE:
		case CLIENT_CHUNK_TRAILER:
			crlf = memmem(r->buf + r->pos, r->len - r->pos, "\r\n",
			    2);
			if (crlf == NULL) {
				if (r->len - r->pos > CLIENT_CHUNK_LINE_MAX &&
				    r->chunk == CLIENT_CHUNK_SIZE)
					return client_fail(cause, "malformed "
					    "chunk");
				if (r->len - r->pos > CLIENT_HEAD_MAX)
					return client_fail(cause, "trailer too "
					    "long");
				return 0;
			}
			if (r->chunk == CLIENT_CHUNK_TRAILER) {
				n = (size_t)(crlf - (r->buf + r->pos));
				r->pos += n + 2;
				if (n == 0)
					return 1;
				continue;
			}
			errno = 0;
			size = strtoul(r->buf + r->pos, &end, 16);
			if (end == r->buf + r->pos || errno != 0 ||
			    (end != crlf && *end != ';') ||
			    size > r->cap - (r->out - r->body))
				return client_fail(cause, "malformed or too "
				    "large chunk");
			r->pos = (size_t)(crlf - r->buf) + 2;
			r->chunk_left = size;
			r->chunk = size == 0 ? CLIENT_CHUNK_TRAILER :
			    CLIENT_CHUNK_DATA;
			break;
		case CLIENT_CHUNK_DATA:
			n = r->len - r->pos;
			if (n > r->chunk_left)
				n = r->chunk_left;
			if (n == 0)
				return 0;
			memmove(r->buf + r->out, r->buf + r->pos, n);
			r->out += n;
			r->pos += n;
			r->chunk_left -= n;
			if (r->chunk_left == 0)
				r->chunk = CLIENT_CHUNK_CRLF;
			break;
		case CLIENT_CHUNK_CRLF:
			if (r->len - r->pos < 2)
				return 0;
			if (memcmp(r->buf + r->pos, "\r\n", 2) != 0)
				return client_fail(cause, "malformed chunk");
			r->pos += 2;
			r->chunk = CLIENT_CHUNK_SIZE;
			break;
		}
	}
}

static int
client_is_ndjson(const char *type)
{
	size_t	 n = strlen("application/x-ndjson");

	return strncasecmp(type, "application/x-ndjson", n) == 0 &&
	    (type[n] == '\0' || type[n] == ';' || type[n] == ' ');
}

/* The complete lines of the body so far; all of it at the end. */
static int
client_deliver_lines(struct client_reader *r)
{
	char	*start, *nl, *line;
	size_t	 n;
	int	 stop = 0;

	while (!stop && r->delivered < r->out) {
		start = r->buf + r->delivered;
		nl = memchr(start, '\n', r->out - r->delivered);
		if (nl == NULL && !r->done)
			break;
		n = nl != NULL ? (size_t)(nl - start) : r->out - r->delivered;
		r->delivered += n + (nl != NULL);
		if (n > 0 && start[n - 1] == '\r')
			n--;
		if (n == 0)
			continue;
		line = xstrndup(start, n);
		r->lines++;
		stop = r->line_cb(line, r->line_arg);
		freezero_str(line);
	}
	return stop;
}

/*
 * Take the next bytes of the answer; len 0 is the end of the stream.
 * 1: the answer is complete; 0: more is needed; -1: malformed, *cause set.
 */
int
client_reader_feed(struct client_reader *r, const void *data, size_t len,
    char **cause)
{
	char	*head, *sep;
	int	 rc;

	*cause = NULL;
	if (r->done)
		return 1;
	if (len > 0) {
		/* the head, the body, and room for chunk lines and trailers */
		if (len > CLIENT_HEAD_MAX + r->cap + CLIENT_HEAD_MAX - r->len)
			return client_fail(cause, "answer too large");
		r->buf = xreallocarray(r->buf, r->len + len + 1, 1);
		memcpy(r->buf + r->len, data, len);
		r->len += len;
		r->buf[r->len] = '\0';
	}
	if (r->body == 0) {
		sep = memmem(r->buf, r->len, "\r\n\r\n", 4);
		if ((sep == NULL && r->len > CLIENT_HEAD_MAX) || (sep != NULL &&
		    (size_t)(sep - r->buf) + 4 > CLIENT_HEAD_MAX))
			return client_fail(cause, "answer headers too long");
		if (sep == NULL) {
			if (len == 0)
				return client_fail(cause, "the connection "
				    "closed before the answer");
			return 0;
		}
		r->body = (size_t)(sep - r->buf) + 4;
		head = xstrndup(r->buf, r->body - 2);
		rc = client_parse_head(r, head, cause);
		free(head);
		if (rc != 0)
			return -1;
		r->pos = r->out = r->delivered = r->body;
		r->streaming = r->line_cb != NULL && r->status == 200 &&
		    client_is_ndjson(r->content_type);
	}
	switch (r->framing) {
	case CLIENT_LENGTH:
		if (r->len - r->body >= r->length) {
			r->out = r->body + r->length;
			r->done = 1;
		} else
			r->out = r->len;
		break;
	case CLIENT_CHUNKED:
		if ((rc = client_dechunk(r, cause)) < 0)
			return -1;
		r->done = rc;
		break;
	case CLIENT_UNTIL_EOF:
		if (r->len - r->body > r->cap)
			return client_fail(cause, "answer too large");
		r->out = r->len;
		r->done = len == 0;
		break;
	}
	if (r->streaming && client_deliver_lines(r))
		r->done = 1;
	if (!r->done && len == 0)
		return client_fail(cause, "the connection closed before the "
		    "whole answer");
	return r->done;
}

/* The complete answer; its body moves to `a`. */
void
client_reader_answer(struct client_reader *r, struct client_answer *a)
{
	memset(a, 0, sizeof *a);
	a->status = r->status;
	snprintf(a->content_type, sizeof a->content_type, "%s",
	    r->content_type);
	a->len = r->out - r->body;
	a->body = xcalloc(1, a->len + 1);
	memcpy(a->body, r->buf + r->body, a->len);
}

void
client_answer_clear(struct client_answer *a)
{
	if (a->body != NULL)
		explicit_bzero(a->body, a->len);
	free(a->body);
	a->body = NULL;
	a->len = 0;
}

static int64_t
client_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Wait until fd is ready for `events` or the deadline passes (-1: no
 * deadline). With a stream, its signal mask holds while waiting, and a
 * signal that sets its stop flag ends the wait.
 */
static int
client_wait(int fd, short events, int64_t deadline,
    const struct client_stream *s, char **cause)
{
	struct pollfd	 pfd = { .fd = fd, .events = events };
	struct timespec	 ts, *tsp = NULL;
	int64_t		 left;
	int		 n;

	for (;;) {
		if (s != NULL && s->stop != NULL && *s->stop)
			return client_fail(cause, "interrupted");
		if (deadline >= 0) {
			if ((left = deadline - client_now_ms()) < 0)
				left = 0;
			ts.tv_sec = left / 1000;
			ts.tv_nsec = left % 1000 * 1000000;
			tsp = &ts;
		}
		n = ppoll(&pfd, 1, tsp, s != NULL ? s->sigmask : NULL);
		if (n > 0)
			return 0;
		if (n == 0)
			return client_fail(cause, "tokend did not answer in "
			    "time");
		if (errno != EINTR) {
			xasprintf(cause, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

/* Why connect() failed, in words for whoever runs tokenctl. */
static char *
client_connect_error(int error)
{
	char	*s;

	switch (error) {
	case ENOENT:
		return xstrdup("no such socket; is tokend running?");
	case ECONNREFUSED:
		return xstrdup("connection refused: nothing listens there; "
		    "tokend is not running, or it left a stale socket");
	case EACCES:
	case EPERM:
		xasprintf(&s, "permission denied: uid %u may not open the "
		    "socket or its folder", (unsigned)getuid());
		return s;
	case ENOTDIR:
		return xstrdup("no such socket (a part of the path is not a "
		    "folder)");
	case EAGAIN:
		return xstrdup("tokend is too busy to take the connection");
	default:
		return xstrdup(strerror(error));
	}
}

static int
client_connect(const char *path, char **cause)
{
	struct sockaddr_un	 sun;
	int			 fd, error;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		return client_fail(cause, "the socket path is too long");
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		xasprintf(cause, "socket: %s", strerror(errno));
		return -1;
	}
	/* a Unix socket connects at once or fails: no wait to bound */
	while (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		if (errno == EINTR)
			continue;
		error = errno;
		close(fd);
		*cause = client_connect_error(error);
		return -1;
	}
	return fd;
}

static int
client_send(int fd, const char *req, size_t len, int64_t deadline,
    const struct client_stream *s, char **cause)
{
	ssize_t	 n;

	while (len > 0) {
		n = send(fd, req, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (client_wait(fd, POLLOUT, deadline, s, cause) != 0)
				return -1;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			xasprintf(cause, "cannot send the request: %s",
			    strerror(errno));
			return -1;
		}
		req += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The deadline for the next line of a stream; -1: none. */
static int64_t
client_line_deadline(const struct client_stream *s)
{
	return s->line_timeout_ms < 0 ? -1 : client_now_ms() +
	    s->line_timeout_ms;
}

static int
client_receive(int fd, size_t cap, int64_t deadline,
    const struct client_stream *s, struct client_answer *a, char **cause)
{
	struct client_reader	*r = client_reader_new(cap);
	char			 buf[64 * 1024];
	ssize_t			 n;
	size_t			 lines = 0;
	int			 rc;

	if (s != NULL)
		client_reader_stream(r, s->line_cb, s->arg);
	do {
		if (client_wait(fd, POLLIN, deadline, s, cause) != 0) {
			rc = -1;
			break;
		}
		if ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) == -1) {
			if (errno == EINTR || errno == EAGAIN)
				rc = 0;
			else {
				xasprintf(cause, "cannot read the answer: %s",
				    strerror(errno));
				rc = -1;
			}
			continue;
		}
		rc = client_reader_feed(r, buf, (size_t)n, cause);
		/* each line of a stream has its own time */
		if (s != NULL && client_reader_lines(r) != lines) {
			lines = client_reader_lines(r);
			deadline = client_line_deadline(s);
		}
	} while (rc == 0);
	explicit_bzero(buf, sizeof buf);
	if (rc == 1)
		client_reader_answer(r, a);
	client_reader_free(r);
	return rc == 1 ? 0 : -1;
}

static int
client_exchange(const char *socket_path, const char *method, const char *path,
    const char *accept, size_t cap, int64_t deadline,
    const struct client_stream *s, struct client_answer *a, char **cause)
{
	char	*req;
	int	 fd, rc, len;

	*cause = NULL;
	if ((fd = client_connect(socket_path, cause)) == -1)
		return -1;
	len = xasprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\n"
	    "Connection: close\r\n%s%s%s%s\r\n", method, path,
	    accept != NULL ? "Accept: " : "", accept != NULL ? accept : "",
	    accept != NULL ? "\r\n" : "",
	    strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 ?
	    "Content-Length: 0\r\n" : "");
	rc = client_send(fd, req, (size_t)len, deadline, s, cause);
	free(req);
	if (rc == 0)
		rc = client_receive(fd, cap, deadline, s, a, cause);
	close(fd);
	return rc;
}

/*
 * METHOD PATH to the daemon at socket_path, the answer in `a` (a body of
 * at most `cap` bytes), all within timeout_ms. -1 with *cause when there
 * is no answer.
 */
int
client_request(const char *socket_path, const char *method, const char *path,
    int json, size_t cap, int64_t timeout_ms, struct client_answer *a,
    char **cause)
{
	return client_exchange(socket_path, method, path, json ?
	    "application/json" : NULL, cap, client_now_ms() + timeout_ms, NULL,
	    a, cause);
}

/*
 * METHOD PATH, its answer read as a stream: a 200 application/x-ndjson
 * answer goes to s->line_cb line by line, each line within
 * s->line_timeout_ms of the one before (the first of the request), and
 * `a` gets the rest; any other answer comes whole in `a`. -1 with *cause
 * when the answer is cut short ("interrupted" once *s->stop is set).
 */
int
client_stream(const char *socket_path, const char *method, const char *path,
    size_t cap, const struct client_stream *s, struct client_answer *a,
    char **cause)
{
	return client_exchange(socket_path, method, path,
	    "application/x-ndjson, application/json", cap,
	    client_line_deadline(s), s, a, cause);
}
