/*
 * The control socket: HTTP/1.1 over a Unix stream socket (evhttp), so that
 * `curl --unix-socket` and tokenctl both work. This file owns listening
 * (or systemd's socket), the connections and who is on the other end of
 * each (SO_PEERCRED, SO_PEERGROUPS, never anything the caller says); what
 * a request means is the handler's business (api.c).
 *
 * Connections are capped. evhttp 2.1 has no such limit and tells nobody
 * when it closes a connection, so each connection's bufferevent is made
 * here (evhttp_set_bevcb) and kept alive by one extra reference; once
 * evhttp has let go of it (its event callback is cleared) a sweep drops
 * ours. While the cap is reached the listener is paused, so a flood of
 * clients cannot take the descriptors that token requests need.
 *
 * Nor can one user take the socket from the others: each new connection
 * is admitted just after evhttp has it (its peer is known by then), and
 * one from a user other than root and the daemon's own is refused when
 * that user already has CONTROL_MAX_PER_UID open, or when all but the
 * CONTROL_RESERVED slots kept for root and the daemon's user are taken.
 * A refused connection gets a 503 and is shut down: evhttp reads the end
 * of it and frees it itself.
 *
 * A request must arrive whole within CONTROL_DEADLINE_MS of the connect, or
 * of the end of the answer before it on a kept-alive connection: evhttp's
 * own timeout starts again with every byte, so a byte a second would hold
 * a connection for ever. The sweep answers a late one 408 and shuts it.
 *
 * And no client makes us buffer what it sends faster than we answer: no
 * more than CONTROL_READ_MAX is read ahead of evhttp.
 */
#define _GNU_SOURCE
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "tokend.h"

#define CONTROL_MAX_CONNECTIONS	512
#define CONTROL_RESERVED	16	/* of those, for root and our own user */
#define CONTROL_MAX_PER_UID	32	/* open at once by any other user */
#define CONTROL_TIMEOUT_S	10	/* idle, and writing an answer */
#define CONTROL_DEADLINE_MS	(10 * MSEC_PER_SEC)	/* for a whole request */
#define CONTROL_MAX_HEADERS	8192
#define CONTROL_MAX_BODY	4096
/* read ahead of evhttp: one whole request, and a line of the next */
#define CONTROL_READ_MAX	(CONTROL_MAX_HEADERS + CONTROL_MAX_BODY + 4096)
#define CONTROL_PEER_GROUPS_MAX	256	/* on the stack; more on the heap */
#define CONTROL_NOTES		32	/* (uid, reason) pairs remembered */
#define CONTROL_NOTE_EVERY_MS	(60 * MSEC_PER_SEC)

struct control_conn {
	struct bufferevent	*bev;
	uid_t			 uid;
	int			 admitted;	/* its peer has been looked at */
	int			 privileged;	/* root or our own user */
	int			 late;		/* past the deadline, shut */
	int64_t			 waiting_since;	/* boot ms; -1: answering */
	TAILQ_ENTRY(control_conn) entry;
};

/* Why a peer is written about in the log; one line a minute each. */
enum control_why {
	CONTROL_WHY_CREDENTIALS,
	CONTROL_WHY_PER_UID,
	CONTROL_WHY_RESERVED,
	CONTROL_WHY_DEADLINE,
	CONTROL_WHY_GROUPS,
};

struct control_note {
	uid_t			 uid;
	enum control_why	 why;
	int64_t			 at_ms;		/* boot clock */
	unsigned long		 unsaid;	/* since that line */
	int			 used;
};

static struct evhttp			*control_http;
static struct evhttp_bound_socket	*control_bound;
static struct event			*control_sweep_ev;
static struct event			*control_admit_ev;
static char				*control_path;	/* NULL: not ours */
static TAILQ_HEAD(, control_conn)	 control_conns =
    TAILQ_HEAD_INITIALIZER(control_conns);
static int				 control_nconns;
static int				 control_paused;
static uid_t				 control_uid;	/* the daemon's */
static control_handler			 control_handler_fn;
static void				*control_handler_arg;
static struct control_note		 control_notes[CONTROL_NOTES];
static char				 control_unsaid_text[64];

/* ---- notes in the log ---- */

/*
 * Whether to log this happening: once a minute for each uid and reason,
 * so that no client can flood the log. When it is to be logged,
 * control_unsaid_text tells how many went unlogged before it.
 */
static int
control_note(uid_t uid, enum control_why why)
{
	struct control_note	*n, *slot = NULL, *oldest = NULL;
	int64_t			 now = clock_boot_ms();
	size_t			 i;

	for (i = 0; i < CONTROL_NOTES; i++) {
		n = &control_notes[i];
		if (n->used && n->uid == uid && n->why == why) {
			slot = n;
			break;
		}
		if (oldest == NULL || !n->used ||
		    (oldest->used && n->at_ms < oldest->at_ms))
			oldest = n;
	}
	if (slot == NULL) {
		/* all remembered pairs were logged within the minute */
		if (oldest->used && now - oldest->at_ms < CONTROL_NOTE_EVERY_MS)
			return 0;
		slot = oldest;
		slot->used = 1;
		slot->uid = uid;
		slot->why = why;
		slot->unsaid = 0;
	} else if (now - slot->at_ms < CONTROL_NOTE_EVERY_MS) {
		slot->unsaid++;
		return 0;
	}
	if (slot->unsaid > 0)
		snprintf(control_unsaid_text, sizeof control_unsaid_text,
		    " (%lu more since the last such line)", slot->unsaid);
	else
		control_unsaid_text[0] = '\0';
	slot->at_ms = now;
	slot->unsaid = 0;
	return 1;
}

/* ---- connections ---- */

static void
control_listen_update(void)
{
	struct evconnlistener	*l;

	l = evhttp_bound_socket_get_listener(control_bound);
	if (control_paused && control_nconns < CONTROL_MAX_CONNECTIONS) {
		evconnlistener_enable(l);
		control_paused = 0;
		log_info("control socket: accepting connections again");
	} else if (!control_paused &&
	    control_nconns >= CONTROL_MAX_CONNECTIONS) {
		evconnlistener_disable(l);
		control_paused = 1;
		log_warnx("control socket: %d connections; not accepting more "
		    "until some close", control_nconns);
	}
}

/* Let go of a connection: at once if evhttp has, else when it does. */
static void
control_conn_drop(struct control_conn *c)
{
	TAILQ_REMOVE(&control_conns, c, entry);
	bufferevent_decref(c->bev);
	free(c);
	control_nconns--;
}

/* Whether evhttp has freed the connection (bufferevent_free clears all). */
static int
control_conn_gone(struct control_conn *c)
{
	bufferevent_event_cb	 eventcb;

	/* not the read callback: evhttp clears that while it answers */
	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
	return eventcb == NULL;
}

/*
 * Answer a connection and shut it down, behind evhttp's back but while
 * evhttp has nothing to write on it: it reads the end and frees it.
 */
static void
control_conn_end(evutil_socket_t fd, int code, const char *status,
    const char *headers, const char *error)
{
	char	 buf[512];
	int	 n;

	n = snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n%s"
	    "Connection: close\r\n\r\n{\"error\":\"%s\"}\n", code, status,
	    strlen(error) + 13, headers, error);
	if (n > 0 && (size_t)n < sizeof buf && write(fd, buf, n) == -1) {
		/* the shutdown says it all */
	}
	shutdown(fd, SHUT_RDWR);
}

static void
control_conn_late(struct control_conn *c)
{
	evutil_socket_t	 fd = bufferevent_getfd(c->bev);

	c->late = 1;
	if (fd == -1)
		return;
	if (control_note(c->uid, CONTROL_WHY_DEADLINE))
		log_info("control socket: closed a connection of uid %u that "
		    "sent no whole request in %lld s%s", (unsigned)c->uid,
		    (long long)(CONTROL_DEADLINE_MS / MSEC_PER_SEC),
		    control_unsaid_text);
	control_conn_end(fd, 408, "Request Timeout", "",
	    "no whole request in time");
}

static void
control_sweep(void)
{
	struct control_conn	*c, *next;
	int64_t			 now = clock_boot_ms();

	for (c = TAILQ_FIRST(&control_conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		/* evhttp freed it; ours is the last reference: close it */
		if (control_conn_gone(c))
			control_conn_drop(c);
		else if (!c->late && c->waiting_since != -1 &&
		    now - c->waiting_since >= CONTROL_DEADLINE_MS)
			control_conn_late(c);
	}
	control_listen_update();
}

/* Sweep once a second while connections are open; an idle daemon sleeps. */
static void
control_sweep_arm(void)
{
	struct timeval	 tv = { 1, 0 };

	if (control_nconns > 0 && !evtimer_pending(control_sweep_ev, NULL))
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

static void
control_refuse(struct control_conn *c, evutil_socket_t fd)
{
	if (fd != -1)
		control_conn_end(fd, 503, "Service Unavailable",
		    "Retry-After: 1\r\n", "too many connections");
	control_conn_drop(c);
}

/* Look at a new connection's peer; refuse it when its user has enough. */
static void
control_admit(struct control_conn *c)
{
	struct control_conn	*o;
	struct ucred		 cred;
	socklen_t		 len = sizeof cred;
	evutil_socket_t		 fd;
	int			 open = 0, mine = 0, saved;

	c->admitted = 1;
	if (control_conn_gone(c))
		return;
	fd = bufferevent_getfd(c->bev);
	if (fd == -1 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		saved = fd == -1 ? EBADF : errno;
		if (control_note((uid_t)-1, CONTROL_WHY_CREDENTIALS))
			log_warnx("control socket: refused a connection whose "
			    "peer is unknown: %s%s", strerror(saved),
			    control_unsaid_text);
		control_refuse(c, fd);
		return;
	}
	c->uid = cred.uid;
	c->privileged = cred.uid == 0 || cred.uid == control_uid;
	if (c->privileged)
		return;
	TAILQ_FOREACH(o, &control_conns, entry) {
		if (o == c || !o->admitted)
			continue;
		open++;
		if (!o->privileged && o->uid == c->uid)
			mine++;
	}
	if (mine >= CONTROL_MAX_PER_UID) {
		if (control_note(c->uid, CONTROL_WHY_PER_UID))
			log_warnx("control socket: uid %u has %d connections "
			    "open, the most one user may; refusing more%s",
			    (unsigned)c->uid, mine, control_unsaid_text);
		control_refuse(c, fd);
	} else if (open >= CONTROL_MAX_CONNECTIONS - CONTROL_RESERVED) {
		if (control_note(c->uid, CONTROL_WHY_RESERVED))
			log_warnx("control socket: %d connections open, the "
			    "rest kept for root and uid %u; refusing uid %u%s",
			    open, (unsigned)control_uid, (unsigned)c->uid,
			    control_unsaid_text);
		control_refuse(c, fd);
	}
}

static void
control_admit_cb(evutil_socket_t fd, short events, void *arg)
{
	struct control_conn	*c, *next;

	(void)fd;
	(void)events;
	(void)arg;
	/* the connections evhttp has closed count no more */
	control_sweep();
	for (c = TAILQ_FIRST(&control_conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (!c->admitted)
			control_admit(c);
	}
	control_listen_update();
}

/*
 * evhttp sets the descriptor only after this returns: the peer is looked
 * at by control_admit_cb, which runs before the loop next polls.
 */
static struct bufferevent *
control_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;
	struct control_conn	*c;

	(void)arg;
	if (control_nconns + 1 >= CONTROL_MAX_CONNECTIONS)
		control_sweep();
	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	/*
	 * evhttp parses one request at a time and leaves the socket readable
	 * while it answers, so a client that pipelines requests and reads no
	 * answer would have us buffer all it sends. The high-water mark stops
	 * reading until evhttp has taken what is buffered.
	 */
	bufferevent_setwatermark(bev, EV_READ, 0, CONTROL_READ_MAX);
	bufferevent_incref(bev);
	c = xcalloc(1, sizeof *c);
	c->bev = bev;
	c->waiting_since = clock_boot_ms();
	TAILQ_INSERT_TAIL(&control_conns, c, entry);
	control_nconns++;
	control_sweep_arm();
	event_active(control_admit_ev, EV_TIMEOUT, 1);
	control_listen_update();
	return bev;
}

/* ---- who is asking ---- */

/*
 * The peer's supplementary groups: into the caller's buffer, or when they
 * are more (ERANGE, with the length they need) into *heap, which the
 * caller frees. 0 or a negative errno.
 */
static int
control_peer_groups(evutil_socket_t fd, struct control_peer *p, gid_t *groups,
    gid_t **heap)
{
	socklen_t	 len = CONTROL_PEER_GROUPS_MAX * sizeof(gid_t);
	gid_t		*more;
	int		 saved;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
		p->groups = groups;
		p->ngroups = (int)(len / sizeof(gid_t));
		return 0;
	}
	if (errno != ERANGE)
		return -errno;
	if (len == 0 || len > NGROUPS_MAX * sizeof(gid_t))
		return -ERANGE;
	more = xcalloc(1, len);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, more, &len) == -1) {
		saved = errno;
		free(more);
		return -saved;
	}
	*heap = more;
	p->groups = more;
	p->ngroups = (int)(len / sizeof(gid_t));
	return 0;
}

static int
control_peer_get(struct evhttp_request *req, struct control_peer *p,
    gid_t *groups, gid_t **heap)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct ucred		 cred;
	socklen_t		 len = sizeof cred;
	evutil_socket_t		 fd;
	int			 error;

	memset(p, 0, sizeof *p);
	if (evcon == NULL)
		return -1;
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return -1;
	p->uid = cred.uid;
	p->gid = cred.gid;
	p->all = cred.uid == 0 || cred.uid == control_uid;
	/* without them only the user and the primary group grant access */
	if ((error = control_peer_groups(fd, p, groups, heap)) != 0 &&
	    control_note(cred.uid, CONTROL_WHY_GROUPS))
		log_warnx("control socket: cannot read the groups of uid %u "
		    "(%s); only its user and primary group count%s",
		    (unsigned)cred.uid, strerror(-error), control_unsaid_text);
	return 0;
}

/* Ours for the connection a request came on; NULL once we let go. */
static struct control_conn *
control_conn_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent	*bev;
	struct control_conn	*c;

	if (evcon == NULL)
		return NULL;
	bev = evhttp_connection_get_bufferevent(evcon);
	TAILQ_FOREACH(c, &control_conns, entry) {
		if (c->bev == bev)
			return c;
	}
	return NULL;
}

/* The answer is written: the next request's deadline starts now. */
static void
control_answered_cb(struct evhttp_request *req, void *arg)
{
	struct control_conn	*c;

	(void)arg;
	if ((c = control_conn_of(req)) != NULL)
		c->waiting_since = clock_boot_ms();
}

static void
control_request_cb(struct evhttp_request *req, void *arg)
{
	struct control_peer	 p;
	struct control_conn	*c;
	gid_t			 groups[CONTROL_PEER_GROUPS_MAX], *heap = NULL;

	(void)arg;
	/* no deadline while we answer: a refresh may take its time */
	if ((c = control_conn_of(req)) != NULL)
		c->waiting_since = -1;
	evhttp_request_set_on_complete_cb(req, control_answered_cb, NULL);
	/* the handler keeps nothing of the peer once it returns */
	control_handler_fn(req, control_peer_get(req, &p, groups, &heap) == 0 ?
	    &p : NULL, control_handler_arg);
	free(heap);
}

int
control_connections(void)
{
	return control_nconns;
}

/* ---- the socket ---- */

/* A socket file someone still listens on is not stale. */
static int
control_socket_in_use(const struct sockaddr_un *sun)
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
control_mkdir_parents(const char *path)
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
	if (control_mkdir_parents(path) != 0) {
		log_warn("cannot create the folder of %s", path);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("%s exists and is not a socket", path);
			return -1;
		}
		if (control_socket_in_use(&sun)) {
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
control_init(struct event_base *base, const char *path, control_handler fn,
    void *arg)
{
	int		 fd = -1, n;

	control_uid = geteuid();
	control_handler_fn = fn;
	control_handler_arg = arg;
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

	if ((control_http = evhttp_new(base)) == NULL)
		return -1;
	evhttp_set_max_headers_size(control_http, CONTROL_MAX_HEADERS);
	evhttp_set_max_body_size(control_http, CONTROL_MAX_BODY);
	evhttp_set_timeout(control_http, CONTROL_TIMEOUT_S);
	evhttp_set_allowed_methods(control_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
	evhttp_set_gencb(control_http, control_request_cb, NULL);
	evhttp_set_bevcb(control_http, control_bev_cb, NULL);
	if ((control_admit_ev = event_new(base, -1, 0, control_admit_cb,
	    NULL)) == NULL)
		return -1;
	if ((control_bound = evhttp_accept_socket_with_handle(control_http,
	    fd)) == NULL) {
		log_warnx("cannot serve the control socket");
		return -1;
	}
	if ((control_sweep_ev = evtimer_new(base, control_sweep_cb, NULL)) ==
	    NULL)
		return -1;
	return 0;
}

void
control_shutdown(void)
{
	struct control_conn	*c;

	if (control_http != NULL)
		evhttp_free(control_http);
	control_http = NULL;
	while ((c = TAILQ_FIRST(&control_conns)) != NULL)
		control_conn_drop(c);
	if (control_sweep_ev != NULL)
		event_free(control_sweep_ev);
	control_sweep_ev = NULL;
	if (control_admit_ev != NULL)
		event_free(control_admit_ev);
	control_admit_ev = NULL;
	if (control_path != NULL) {
		unlink(control_path);
		free(control_path);
		control_path = NULL;
	}
}
