/*
 * Fleet mode: the tokend instances of many hosts share accounts through
 * Redis, so that one of them (the account's leader, which holds a lease)
 * asks the endpoint for each token and the others take it from Redis.
 *
 * Everything tokend puts in Redis is sealed with the fleet key (seal.c):
 * hiredis 0.14 has no TLS, and Redis must see only ciphertext.
 *
 * Layout, P being key_prefix and A an account:
 *	P members	ZSET node -> Redis TIME (ms) of its last heartbeat
 *	P keycheck	a sealed constant: a key that cannot open it differs
 *	P lease:A	"NODE/INSTANCE", PX the lease plus the request timeout
 *	P fence:A	INCR at every new lease: the fencing token
 *	P token:A	HASH v (sealed record) f (fence) o (obtained_at) r (1:
 *			it holds a refresh token)
 *	P tokens	channel: "A SEALED" at every publish
 * Every read-check-write is one Lua script, so nothing races in Redis.
 *
 * Three links, each a hiredis context in the event loop: cmd (commands),
 * sub (SUBSCRIBE P tokens) and, with Sentinel, sen (asks for the master,
 * then follows +switch-master). Any failure of any of them tears all of
 * them down and reconnects after a backoff (100 ms doubling to 30 s,
 * jittered): one state, no half-connected cases. hiredis 0.14 has no
 * command timeouts: a command unanswered for `timeout` is a dead link.
 */
#define _GNU_SOURCE
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wshadow"
#include <hiredis/adapters/libevent.h>
#pragma GCC diagnostic pop

#include "tokend.h"

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		(30 * MSEC_PER_SEC)
#define KEYCHECK_PLAIN		"tokend fleet key check v1"
#define SHUTDOWN_MAX_MS		2000

enum fleet_state {
	FS_DOWN,		/* waiting out the backoff */
	FS_CONNECTING,		/* links being made, checks under way */
	FS_READY,
};

enum link_kind { L_CMD, L_SUB, L_SEN };

struct fleet;

struct link {
	struct fleet		*f;
	enum link_kind		 kind;
	redisAsyncContext	*ac;	/* NULL: none (hiredis freed it) */
};

/* One command in flight on cmd, oldest first: replies come in order. */
enum cmd_kind {
	C_SETUP,		/* AUTH, SELECT, ROLE: checked, no more */
	C_ROLE,
	C_KEYCHECK,
	C_KEYSET,
	C_BEAT,			/* the heartbeat, with the lease renewals */
	C_ACQUIRE,
	C_PUBLISH,
	C_SYNC,
	C_RELEASE,
};
struct cmd {
	struct fleet		*f;
	unsigned		 gen;
	enum cmd_kind		 kind;
	uint64_t		 member;	/* id; 0: none */
	uint64_t		 fence;		/* C_PUBLISH: ours */
	int64_t			 sent;		/* boot ms */
	uint64_t		*renewed;	/* C_BEAT: the ids it renews */
	size_t			 nrenewed;
	TAILQ_ENTRY(cmd)	 entry;
};
TAILQ_HEAD(cmd_list, cmd);

struct fleet_member {
	struct fleet		*f;
	uint64_t		 id;
	char			*account;
	int64_t			 px;		/* the lease's life in Redis */
	const struct fleet_member_ops *ops;
	void			*arg;
	char			*k_lease, *k_fence, *k_token;

	int			 leading;	/* holds the lease, as known */
	uint64_t		 fence;		/* of the lease held */
	char			*leader;	/* node, as last seen */

	/* what this instance holds, for a sync at (re)connect */
	struct fleet_record	 mine;
	int			 have_mine;
	/* the newest record known here */
	uint64_t		 seen_fence;
	int64_t			 seen_obtained;

	int			 owned;		/* the hash picks this instance,
						   as last told; -1: not yet */
	int			 asking;	/* a fleet_lead() waits */
	int			 publishing;	/* a publish awaits its reply */
	int			 urgent;
	enum fleet_lead		 answer;	/* for answer_timer */
	struct timer		 answer_timer;
	TAILQ_ENTRY(fleet_member) entry;
};

struct fleet {
	struct event_base	*base;
	const struct fleet_conf	*conf;
	char			*holder;	/* "NODE/INSTANCE" */
	char			*k_members, *k_keycheck, *channel;

	enum fleet_state	 state;
	unsigned		 gen;		/* of the current links */
	struct link		 cmd, sub, sen;
	int			 sub_ready, beat_ready;
	struct cmd_list		 pending;	/* on cmd, oldest first */
	struct timer		 deadline;	/* of the oldest pending */
	struct timer		 retry;		/* reconnect; also a deferred
						   teardown */
	struct timer		 beat;		/* every lease/3 */
	int			 failures;	/* attempts in a row */
	int			 failed_once;	/* since start */
	int			 key_differs;
	int			 sen_next;	/* the sentinel to ask next */
	char			 master[300];	/* "HOST:PORT" or the path */
	char			 master_host[256];
	int			 master_port;
	char			 last_error[256];

	char		       **nodes;		/* live members, sorted */
	size_t			 nnodes;

	TAILQ_HEAD(, fleet_member) members;
	uint64_t		 next_id;
	size_t			 nmembers;

	uint64_t		 lease_losses, publish_failures, published;
	uint64_t		 received, reconnects;

	/* shutdown */
	void			(*stopped)(void *);
	void			*stopped_arg;
	size_t			 releasing;
	struct timer		 stop_timer;
};

/* ---- the scripts ---- */

/* KEYS members, lease...; ARGV node, holder, lease, px... */
static const char beat_lua[] =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))\n"
"local r = {}\n"
"for i = 2, #KEYS do\n"
"  if redis.call('GET', KEYS[i]) == ARGV[2] then\n"
"    redis.call('PEXPIRE', KEYS[i], ARGV[i + 2]); r[i - 1] = 1\n"
"  else r[i - 1] = 0 end\n"
"end\n"
"return {redis.call('ZRANGE', KEYS[1], 0, -1), r}\n";

/* KEYS lease, fence, token; ARGV holder, px, obtained, has_rt, take */
static const char acquire_lua[] =
"local h = redis.call('GET', KEYS[1])\n"
"local won, f = 0, 0\n"
"if h == ARGV[1] then\n"
"  redis.call('PEXPIRE', KEYS[1], ARGV[2]); won = 1\n"
"  f = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
"elseif not h and ARGV[5] == '1' then\n"
"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
"  f = redis.call('INCR', KEYS[2]); won = 1; h = ARGV[1]\n"
"end\n"
"local v = false\n"
"local o = tonumber(redis.call('HGET', KEYS[3], 'o') or '-1')\n"
"local r = redis.call('HGET', KEYS[3], 'r')\n"
"if o > tonumber(ARGV[3]) or (won == 1 and ARGV[4] == '0' and r == '1') then\n"
"  v = redis.call('HGET', KEYS[3], 'v') or false\n"
"end\n"
"return {won, f, h or false, v}\n";

/* KEYS lease, fence, token; ARGV holder, fence, v, o, r, channel, account,
 * px */
static const char publish_lua[] =
"local h = redis.call('GET', KEYS[1])\n"
"local cur = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
"local f = tonumber(ARGV[2])\n"
"if (h and h ~= ARGV[1]) or cur > f then\n"
"  return {0, redis.call('HGET', KEYS[3], 'v') or false}\n"
"end\n"
"if not h then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[8]) end\n"
"if cur < f then redis.call('SET', KEYS[2], ARGV[2]) end\n"
"redis.call('HSET', KEYS[3], 'v', ARGV[3], 'f', ARGV[2], 'o', ARGV[4], "
"'r', ARGV[5])\n"
"redis.call('PUBLISH', ARGV[6], ARGV[7] .. ' ' .. ARGV[3])\n"
"return {1}\n";

/* KEYS fence, token; ARGV fence, o, r, v, channel, account */
static const char sync_lua[] =
"local f = tonumber(ARGV[1])\n"
"local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
"if cur < f then redis.call('SET', KEYS[1], ARGV[1]) end\n"
"local sf = tonumber(redis.call('HGET', KEYS[2], 'f') or '-1')\n"
"local so = tonumber(redis.call('HGET', KEYS[2], 'o') or '-1')\n"
"local sr = tonumber(redis.call('HGET', KEYS[2], 'r') or '0')\n"
"local o, r = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
"if ARGV[4] ~= '' and (sf < f or (sf == f and (so < o or "
"(so == o and sr < r)))) then\n"
"  redis.call('HSET', KEYS[2], 'v', ARGV[4], 'f', ARGV[1], 'o', ARGV[2], "
"'r', ARGV[3])\n"
"  redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' ' .. ARGV[4])\n"
"  return {1}\n"
"end\n"
"return {0, redis.call('HGET', KEYS[2], 'v') or false}\n";

/* KEYS lease; ARGV holder */
static const char release_lua[] =
"if redis.call('GET', KEYS[1]) == ARGV[1] then "
"return redis.call('DEL', KEYS[1]) end return 0\n";

static void	fleet_fail(struct fleet *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	fleet_connect(struct fleet *);
static void	fleet_send_acquire(struct fleet_member *);

/* ---- members ---- */

static struct fleet_member *
fleet_member_by_id(struct fleet *f, uint64_t id)
{
	struct fleet_member	*m;

	TAILQ_FOREACH(m, &f->members, entry)
		if (m->id == id)
			return m;
	return NULL;
}

static struct fleet_member *
fleet_member_by_name(struct fleet *f, const char *name, size_t len)
{
	struct fleet_member	*m;

	TAILQ_FOREACH(m, &f->members, entry)
		if (strlen(m->account) == len && !memcmp(m->account, name, len))
			return m;
	return NULL;
}

static void
fleet_set_leader(struct fleet_member *m, const char *holder, size_t len)
{
	const char	*slash = memchr(holder, '/', len);

	if (slash != NULL)
		len = (size_t)(slash - holder);
	if (m->leader != NULL && strlen(m->leader) == len &&
	    !memcmp(m->leader, holder, len))
		return;
	free(m->leader);
	m->leader = xstrndup(holder, len);
}

/* 64-bit FNV-1a, then a finalizer that spreads it (splitmix64). */
static uint64_t
fleet_hash(const char *a, const char *b)
{
	uint64_t	 h = 0xcbf29ce484222325ULL;
	const char	*p;

	for (p = a; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	h = (h ^ 0xff) * 0x100000001b3ULL;	/* a separator no name has */
	for (p = b; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

/*
 * Rendezvous hashing: the node with the highest hash of (node, account)
 * owns the account. Every instance that sees the same members agrees,
 * and a member leaving moves only its own accounts. NULL: no nodes.
 */
const char *
fleet_owner(const char *account, char *const *nodes, size_t n)
{
	const char	*best = NULL;
	uint64_t	 h, top = 0;
	size_t		 i;

	for (i = 0; i < n; i++) {
		h = fleet_hash(nodes[i], account);
		if (best == NULL || h > top || (h == top &&
		    strcmp(nodes[i], best) < 0)) {
			best = nodes[i];
			top = h;
		}
	}
	return best;
}

static int
fleet_owns(const struct fleet_member *m)
{
	const char	*o = fleet_owner(m->account, m->f->nodes,
			    m->f->nnodes);

	return o == NULL || !strcmp(o, m->f->conf->node);
}

/* Open a sealed record of account m; 0 or -1 (logged). */
static int
fleet_open(struct fleet_member *m, const char *sealed, size_t len,
    struct fleet_record *rec)
{
	char	*plain = NULL, *s;
	size_t	 plen = 0;
	int	 rc;

	memset(rec, 0, sizeof *rec);
	s = xstrndup(sealed, len);
	rc = seal_decrypt(m->f->conf->key, m->k_token, s, &plain, &plen);
	free(s);
	if (rc != 0) {
		log_account(LOG_LEVEL_ERROR, m->account, "fleet: the token in "
		    "Redis does not open with the fleet key; it is ignored");
		return -1;
	}
	rc = seal_record_decode(plain, plen, rec);
	freezero(plain, plen);
	if (rc != 0) {
		log_account(LOG_LEVEL_ERROR, m->account, "fleet: the token in "
		    "Redis is not a record tokend wrote; it is ignored");
		return -1;
	}
	return 0;
}

/* Whether rec is newer than anything this member has seen. */
static int
fleet_newer(const struct fleet_member *m, const struct fleet_record *rec)
{
	if (rec->fence != m->seen_fence)
		return rec->fence > m->seen_fence;
	return rec->token.obtained_at > m->seen_obtained;
}

static void
fleet_saw(struct fleet_member *m, const struct fleet_record *rec)
{
	if (fleet_newer(m, rec)) {
		m->seen_fence = rec->fence;
		m->seen_obtained = rec->token.obtained_at;
	}
	if (rec->leader != NULL)
		fleet_set_leader(m, rec->leader, strlen(rec->leader));
}

/* A newer record than the member's: handed over (ops->token). */
static void
fleet_deliver(struct fleet_member *m, struct fleet_record *rec)
{
	if (!fleet_newer(m, rec)) {
		seal_record_clear(rec);
		return;
	}
	fleet_saw(m, rec);
	m->f->received++;
	if (m->leading && rec->leader != NULL &&
	    strcmp(rec->leader, m->f->conf->node) != 0) {
		/* another one published: our lease is gone */
		m->leading = 0;
		m->f->lease_losses++;
	}
	m->ops->token(m->arg, rec);
	seal_record_clear(rec);
}

/* ---- commands ---- */

static void	fleet_cmd_cb(redisAsyncContext *, void *, void *);

static void
fleet_arm_deadline(struct fleet *f)
{
	struct cmd	*c = TAILQ_FIRST(&f->pending);

	if (c == NULL)
		timer_clear(&f->deadline);
	else
		timer_set(&f->deadline, c->sent + f->conf->timeout);
}

/* Send argv on cmd; the reply reaches fleet_cmd_cb. */
static struct cmd *
fleet_send(struct fleet *f, enum cmd_kind kind, uint64_t member, int argc,
    const char **argv, const size_t *lens)
{
	struct cmd	*c;
	size_t		*l = NULL;
	int		 i;

	if (f->cmd.ac == NULL)
		return NULL;
	if (lens == NULL) {
		l = xreallocarray(NULL, (size_t)argc, sizeof *l);
		for (i = 0; i < argc; i++)
			l[i] = strlen(argv[i]);
		lens = l;
	}
	c = xcalloc(1, sizeof *c);
	c->f = f;
	c->gen = f->gen;
	c->kind = kind;
	c->member = member;
	c->sent = clock_boot_ms();
	if (redisAsyncCommandArgv(f->cmd.ac, fleet_cmd_cb, c, argc, argv,
	    lens) != REDIS_OK) {
		free(l);
		free(c);
		fleet_fail(f, "cannot send a command");
		return NULL;
	}
	free(l);
	TAILQ_INSERT_TAIL(&f->pending, c, entry);
	if (TAILQ_FIRST(&f->pending) == c)
		fleet_arm_deadline(f);
	return c;
}

static int
fleet_reply_is(const redisReply *r, int type, size_t n)
{
	return r != NULL && r->type == type && (type != REDIS_REPLY_ARRAY ||
	    r->elements >= n);
}

static void	fleet_ready(struct fleet *);
static void	fleet_beat_reply(struct fleet *, struct cmd *,
		    const redisReply *);
static void	fleet_acquire_reply(struct fleet *, struct fleet_member *,
		    const redisReply *);
static void	fleet_publish_reply(struct fleet *, struct fleet_member *,
		    struct cmd *, const redisReply *);
static void	fleet_sync_reply(struct fleet *, struct fleet_member *,
		    const redisReply *);
static void	fleet_released(struct fleet *);

/* An error reply: Redis's own words (never holding the password). */
static void
fleet_fail_reply(struct fleet *f, const redisReply *r)
{
	if (!strncmp(r->str, "WRONGPASS", 9) || !strncmp(r->str, "NOAUTH", 6) ||
	    !strncmp(r->str, "ERR invalid password", 20) ||
	    !strncmp(r->str, "ERR AUTH", 8))
		fleet_fail(f, "Redis refused the password %s%s: %.120s",
		    f->conf->password_path != NULL ? "in " : "(none is set in "
		    "password_file)", f->conf->password_path != NULL ?
		    f->conf->password_path : "", r->str);
	else
		fleet_fail(f, "Redis: %.160s", r->str);
}

static void
fleet_keyset(struct fleet *f)
{
	const char	*argv[5];
	char		*sealed;

	sealed = seal_encrypt(f->conf->key, f->k_keycheck, KEYCHECK_PLAIN,
	    strlen(KEYCHECK_PLAIN));
	if (sealed == NULL) {
		fleet_fail(f, "cannot seal the key check");
		return;
	}
	argv[0] = "SET";
	argv[1] = f->k_keycheck;
	argv[2] = sealed;
	argv[3] = "NX";
	fleet_send(f, C_KEYSET, 0, 4, argv, NULL);
	free(sealed);
}

static void
fleet_keycheck_reply(struct fleet *f, const redisReply *r)
{
	char	*plain = NULL;
	size_t	 len = 0;

	if (r->type == REDIS_REPLY_NIL) {
		fleet_keyset(f);
		return;
	}
	if (r->type != REDIS_REPLY_STRING) {
		fleet_fail(f, "GET %s: an unexpected reply", f->k_keycheck);
		return;
	}
	if (seal_decrypt(f->conf->key, f->k_keycheck, r->str, &plain,
	    &len) != 0 || len != strlen(KEYCHECK_PLAIN) ||
	    memcmp(plain, KEYCHECK_PLAIN, len) != 0) {
		if (plain != NULL)
			freezero(plain, len);
		f->key_differs = 1;
		fleet_fail(f, "the fleet key differs from the fleet's (%s does "
		    "not open with key_file %s); not joining", f->k_keycheck,
		    f->conf->key_path);
		return;
	}
	freezero(plain, len);
	f->key_differs = 0;
	f->beat_ready = 0;
	timer_set(&f->beat, clock_boot_ms());	/* the first heartbeat */
}

static void
fleet_cmd_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct cmd		*c = privdata;
	struct fleet		*f = c->f;
	const redisReply	*r = reply;
	struct fleet_member	*m;

	(void)ac;
	if (c->gen != f->gen || r == NULL) {
		/* a torn-down link's: its pending list went with it */
		free(c->renewed);
		free(c);
		return;
	}
	TAILQ_REMOVE(&f->pending, c, entry);
	fleet_arm_deadline(f);
	m = c->member != 0 ? fleet_member_by_id(f, c->member) : NULL;
	if (r->type == REDIS_REPLY_ERROR) {
		fleet_fail_reply(f, r);
		goto out;
	}
	switch (c->kind) {
	case C_SETUP:
		break;
	case C_ROLE:
		if (!fleet_reply_is(r, REDIS_REPLY_ARRAY, 1) ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    strcmp(r->element[0]->str, "master") != 0) {
			fleet_fail(f, "%s is not a master (ROLE says %s)",
			    f->master, fleet_reply_is(r, REDIS_REPLY_ARRAY, 1) &&
			    r->element[0]->type == REDIS_REPLY_STRING ?
			    r->element[0]->str : "?");
			goto out;
		}
		break;
	case C_KEYCHECK:
		fleet_keycheck_reply(f, r);
		break;
	case C_KEYSET:
		if (r->type == REDIS_REPLY_NIL) {
			/* another instance set it meanwhile: read it */
			const char *argv[] = { "GET", f->k_keycheck };

			fleet_send(f, C_KEYCHECK, 0, 2, argv, NULL);
		} else
			timer_set(&f->beat, clock_boot_ms());
		break;
	case C_BEAT:
		fleet_beat_reply(f, c, r);
		break;
	case C_ACQUIRE:
		if (m != NULL)
			fleet_acquire_reply(f, m, r);
		break;
	case C_PUBLISH:
		if (m != NULL)
			fleet_publish_reply(f, m, c, r);
		break;
	case C_SYNC:
		if (m != NULL)
			fleet_sync_reply(f, m, r);
		break;
	case C_RELEASE:
		if (f->releasing > 0 && --f->releasing == 0)
			fleet_released(f);
		break;
	}
out:
	free(c->renewed);
	free(c);
}

/* ---- the heartbeat: membership and lease renewals ---- */

static int
fleet_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
fleet_beat_cb(void *arg)
{
	struct fleet		*f = arg;
	struct fleet_member	*m;
	struct cmd		*c;
	const char		**argv;
	char			 nk[32], lease[32], **pxs;
	uint64_t		*ids;
	size_t			 n = 0, i, argc;

	if (f->state == FS_DOWN || f->cmd.ac == NULL)
		return;
	timer_set(&f->beat, clock_boot_ms() + f->conf->lease / 3);
	TAILQ_FOREACH(m, &f->members, entry)
		n += m->leading;
	argc = 4 + 2 * n + 4;
	argv = xcalloc(argc, sizeof *argv);
	pxs = xcalloc(n + 1, sizeof *pxs);
	ids = xcalloc(n + 1, sizeof *ids);
	snprintf(nk, sizeof nk, "%zu", n + 1);
	snprintf(lease, sizeof lease, "%lld", (long long)f->conf->lease);
	argv[0] = "EVAL";
	argv[1] = beat_lua;
	argv[2] = nk;
	argv[3] = f->k_members;
	i = 0;
	TAILQ_FOREACH(m, &f->members, entry) {
		if (!m->leading)
			continue;
		argv[4 + i] = m->k_lease;
		xasprintf(&pxs[i], "%lld", (long long)m->px);
		ids[i] = m->id;
		i++;
	}
	argv[4 + n] = f->conf->node;
	argv[5 + n] = f->holder;
	argv[6 + n] = lease;
	for (i = 0; i < n; i++)
		argv[7 + n + i] = pxs[i];
	c = fleet_send(f, C_BEAT, 0, (int)(7 + 2 * n), argv, NULL);
	if (c != NULL) {
		c->renewed = ids;
		c->nrenewed = n;
	} else
		free(ids);
	for (i = 0; i < n; i++)
		free(pxs[i]);
	free(pxs);
	free(argv);
}

static void
fleet_beat_reply(struct fleet *f, struct cmd *c, const redisReply *r)
{
	const redisReply	*nodes, *flags;
	struct fleet_member	*m;
	size_t			 i;

	if (!fleet_reply_is(r, REDIS_REPLY_ARRAY, 2) ||
	    r->element[0]->type != REDIS_REPLY_ARRAY ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		fleet_fail(f, "the heartbeat script: an unexpected reply");
		return;
	}
	nodes = r->element[0];
	flags = r->element[1];
	for (i = 0; i < f->nnodes; i++)
		free(f->nodes[i]);
	f->nnodes = 0;
	f->nodes = xreallocarray(f->nodes, nodes->elements + 1,
	    sizeof *f->nodes);
	for (i = 0; i < nodes->elements; i++)
		if (nodes->element[i]->type == REDIS_REPLY_STRING)
			f->nodes[f->nnodes++] = xstrdup(nodes->element[i]->str);
	qsort(f->nodes, f->nnodes, sizeof *f->nodes, fleet_cmp_str);
	for (i = 0; i < c->nrenewed && i < flags->elements; i++) {
		if (flags->element[i]->type != REDIS_REPLY_INTEGER ||
		    flags->element[i]->integer == 1)
			continue;
		if ((m = fleet_member_by_id(f, c->renewed[i])) == NULL ||
		    !m->leading)
			continue;
		m->leading = 0;
		f->lease_losses++;
		log_account(LOG_LEVEL_WARNING, m->account, "fleet: lost the "
		    "lease (another instance leads now)");
		m->ops->changed(m->arg);
	}
	if (!f->beat_ready) {
		f->beat_ready = 1;
		TAILQ_FOREACH(m, &f->members, entry)
			m->owned = fleet_owns(m);
		if (f->sub_ready)
			fleet_ready(f);
		return;
	}
	/* an instance came or went: the accounts it moves look again (a
	   new owner then watches the refresh time of a dead one's) */
	TAILQ_FOREACH(m, &f->members, entry)
		if (fleet_owns(m) != m->owned) {
			m->owned = fleet_owns(m);
			if (!m->asking)
				m->ops->changed(m->arg);
		}
}

/* ---- leadership ---- */

static void
fleet_answer_cb(void *arg)
{
	struct fleet_member	*m = arg;

	m->asking = 0;
	m->ops->lead(m->arg, m->answer, NULL);
}

/* Answer a fleet_lead() from the loop, without a record. */
static void
fleet_answer_later(struct fleet_member *m, enum fleet_lead answer)
{
	m->answer = answer;
	timer_set(&m->answer_timer, clock_boot_ms());
}

static void
fleet_send_acquire(struct fleet_member *m)
{
	const char	*argv[11];
	char		 px[32], obtained[32];

	snprintf(px, sizeof px, "%lld", (long long)m->px);
	snprintf(obtained, sizeof obtained, "%lld", (long long)
	    (m->have_mine ? m->mine.token.obtained_at : -1));
	argv[0] = "EVAL";
	argv[1] = acquire_lua;
	argv[2] = "3";
	argv[3] = m->k_lease;
	argv[4] = m->k_fence;
	argv[5] = m->k_token;
	argv[6] = m->f->holder;
	argv[7] = px;
	argv[8] = obtained;
	argv[9] = m->have_mine && m->mine.token.refresh_token != NULL ? "1" :
	    "0";
	argv[10] = m->urgent || fleet_owns(m) ? "1" : "0";
	if (fleet_send(m->f, C_ACQUIRE, m->id, 11, argv, NULL) == NULL &&
	    m->asking)
		fleet_answer_later(m, FLEET_DOWN);
}

static void
fleet_acquire_reply(struct fleet *f, struct fleet_member *m,
    const redisReply *r)
{
	struct fleet_record	 rec, *recp = NULL;
	int			 won;

	if (!fleet_reply_is(r, REDIS_REPLY_ARRAY, 4) ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		fleet_fail(f, "the lease script: an unexpected reply");
		return;
	}
	won = r->element[0]->integer == 1;
	if (r->element[2]->type == REDIS_REPLY_STRING)
		fleet_set_leader(m, r->element[2]->str, r->element[2]->len);
	if (r->element[3]->type == REDIS_REPLY_STRING &&
	    fleet_open(m, r->element[3]->str, r->element[3]->len, &rec) == 0) {
		/* newer, or the refresh token a new leader needs */
		if (fleet_newer(m, &rec) || (won && rec.token.refresh_token !=
		    NULL && (!m->have_mine ||
		    m->mine.token.refresh_token == NULL))) {
			fleet_saw(m, &rec);
			recp = &rec;
		} else
			seal_record_clear(&rec);
	}
	if (won) {
		if (!m->leading)
			log_account(LOG_LEVEL_INFO, m->account, "fleet: leading "
			    "(lease %llu)", (unsigned long long)
			    r->element[1]->integer);
		m->leading = 1;
		m->fence = (uint64_t)r->element[1]->integer;
	} else if (m->leading) {
		m->leading = 0;
		f->lease_losses++;
	}
	if (!m->asking) {
		if (recp != NULL) {
			f->received++;
			m->ops->token(m->arg, recp);
			seal_record_clear(recp);
		}
		return;
	}
	m->asking = 0;
	timer_clear(&m->answer_timer);
	if (recp != NULL)
		f->received++;
	m->ops->lead(m->arg, won ? FLEET_LEAD : FLEET_FOLLOW, recp);
	if (recp != NULL)
		seal_record_clear(recp);
}

int
fleet_lead(struct fleet_member *m, int urgent)
{
	struct fleet	*f = m->f;

	if (m->asking)
		return 0;
	m->asking = 1;
	m->urgent = urgent;
	if (f->state != FS_READY) {
		/* the first attempt since start is waited for */
		if (f->failed_once || f->key_differs)
			fleet_answer_later(m, FLEET_DOWN);
		return 0;
	}
	if (!urgent && !m->leading && !fleet_owns(m)) {
		fleet_answer_later(m, FLEET_FOLLOW);
		return 0;
	}
	fleet_send_acquire(m);
	return 0;
}

void
fleet_cancel_lead(struct fleet_member *m)
{
	m->asking = 0;
	timer_clear(&m->answer_timer);
}

static void
fleet_send_release(struct fleet_member *m)
{
	const char	*argv[] = { "EVAL", release_lua, "1", m->k_lease,
			    m->f->holder };

	m->leading = 0;
	if (fleet_send(m->f, C_RELEASE, 0, 5, argv, NULL) != NULL)
		m->f->releasing += m->f->stopped != NULL;
}

/* ---- publishing ---- */

static void
fleet_keep(struct fleet_member *m, const struct token *t, const char *rt)
{
	seal_record_clear(&m->mine);
	m->mine.token.access_token = xstrdup(t->access_token);
	m->mine.token.token_type = xstrdup(t->token_type != NULL ?
	    t->token_type : "Bearer");
	m->mine.token.expires_at = t->expires_at;
	m->mine.token.obtained_at = t->obtained_at;
	m->mine.token.refresh_at = t->refresh_at;
	m->mine.token.refresh_token = rt != NULL ? xstrdup(rt) : NULL;
	m->mine.leader = xstrdup(m->f->conf->node);
	m->have_mine = 1;
}

/* The member's record, sealed for its token key; NULL on failure. */
static char *
fleet_seal_mine(struct fleet_member *m)
{
	char	*json, *sealed;

	if ((json = seal_record_encode(&m->mine)) == NULL)
		return NULL;
	sealed = seal_encrypt(m->f->conf->key, m->k_token, json,
	    strlen(json));
	freezero_str(json);
	return sealed;
}

int
fleet_publish(struct fleet_member *m, const struct token *t, const char *rt)
{
	const char	*argv[14];
	char		*sealed, fence[32], o[32], px[32];
	struct cmd	*c;

	fleet_keep(m, t, rt);
	m->mine.fence = m->fence;
	m->seen_fence = m->mine.fence;
	m->seen_obtained = m->mine.token.obtained_at;
	fleet_set_leader(m, m->f->conf->node, strlen(m->f->conf->node));
	/* even a leader that lost its lease meanwhile: the fence decides */
	if (m->f->state != FS_READY)
		return 0;	/* synced at the next connect */
	if ((sealed = fleet_seal_mine(m)) == NULL) {
		log_account(LOG_LEVEL_ERROR, m->account, "fleet: cannot seal "
		    "the token; it is not published");
		return 0;
	}
	snprintf(fence, sizeof fence, "%llu", (unsigned long long)m->fence);
	snprintf(o, sizeof o, "%lld", (long long)t->obtained_at);
	snprintf(px, sizeof px, "%lld", (long long)m->px);
	argv[0] = "EVAL";
	argv[1] = publish_lua;
	argv[2] = "3";
	argv[3] = m->k_lease;
	argv[4] = m->k_fence;
	argv[5] = m->k_token;
	argv[6] = m->f->holder;
	argv[7] = fence;
	argv[8] = sealed;
	argv[9] = o;
	argv[10] = rt != NULL ? "1" : "0";
	argv[11] = m->f->channel;
	argv[12] = m->account;
	argv[13] = px;
	if ((c = fleet_send(m->f, C_PUBLISH, m->id, 14, argv, NULL)) != NULL) {
		c->fence = m->fence;
		m->publishing = 1;
	}
	freezero_str(sealed);
	return c != NULL;
}

static void
fleet_publish_reply(struct fleet *f, struct fleet_member *m, struct cmd *c,
    const redisReply *r)
{
	struct fleet_record	 rec;

	if (!fleet_reply_is(r, REDIS_REPLY_ARRAY, 1) ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		fleet_fail(f, "the publish script: an unexpected reply");
		return;
	}
	if (r->element[0]->integer == 1) {
		f->published++;
		/* a leader the hash does not pick hands the lease back, so
		   that leadership spreads over the fleet */
		if (m->leading && !fleet_owns(m) && f->stopped == NULL)
			fleet_send_release(m);
		m->publishing = 0;
		m->ops->published(m->arg, 1);
		return;
	}
	f->publish_failures++;
	if (m->leading)
		f->lease_losses++;
	m->leading = 0;
	log_account(LOG_LEVEL_WARNING, m->account, "fleet: publishing was "
	    "refused by the fence (lease %llu): another instance leads now",
	    (unsigned long long)c->fence);
	/* the fleet's token wins over ours */
	m->seen_fence = 0;
	m->seen_obtained = -1;
	if (r->elements >= 2 && r->element[1]->type == REDIS_REPLY_STRING &&
	    fleet_open(m, r->element[1]->str, r->element[1]->len, &rec) == 0) {
		fleet_saw(m, &rec);
		f->received++;
		m->ops->token(m->arg, &rec);
		seal_record_clear(&rec);
	}
	m->publishing = 0;
	m->ops->published(m->arg, 0);
}

void
fleet_offer(struct fleet_member *m, const struct token *t, const char *rt)
{
	uint64_t	 fence = m->seen_fence;

	fleet_keep(m, t, rt);
	m->mine.fence = fence;
	if (m->mine.token.obtained_at > m->seen_obtained &&
	    m->mine.fence >= m->seen_fence)
		m->seen_obtained = m->mine.token.obtained_at;
}

/* At every (re)connect: the stronger of ours and the fleet's wins. */
static void
fleet_send_sync(struct fleet_member *m)
{
	const char	*argv[11];
	char		*sealed = NULL, fence[32], o[32];

	if (m->have_mine)
		sealed = fleet_seal_mine(m);
	snprintf(fence, sizeof fence, "%llu", (unsigned long long)
	    (m->have_mine ? m->mine.fence : 0));
	snprintf(o, sizeof o, "%lld", (long long)(m->have_mine ?
	    m->mine.token.obtained_at : -1));
	argv[0] = "EVAL";
	argv[1] = sync_lua;
	argv[2] = "2";
	argv[3] = m->k_fence;
	argv[4] = m->k_token;
	argv[5] = fence;
	argv[6] = o;
	argv[7] = m->have_mine && m->mine.token.refresh_token != NULL ? "1" :
	    "0";
	argv[8] = sealed != NULL ? sealed : "";
	argv[9] = m->f->channel;
	argv[10] = m->account;
	fleet_send(m->f, C_SYNC, m->id, 11, argv, NULL);
	freezero_str(sealed);
}

static void
fleet_sync_reply(struct fleet *f, struct fleet_member *m, const redisReply *r)
{
	struct fleet_record	 rec;

	if (!fleet_reply_is(r, REDIS_REPLY_ARRAY, 1) ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		fleet_fail(f, "the sync script: an unexpected reply");
		return;
	}
	if (r->element[0]->integer == 1) {
		log_account(LOG_LEVEL_INFO, m->account, "fleet: the fleet "
		    "takes this instance's token");
		return;
	}
	if (r->elements >= 2 && r->element[1]->type == REDIS_REPLY_STRING &&
	    fleet_open(m, r->element[1]->str, r->element[1]->len, &rec) == 0)
		fleet_deliver(m, &rec);
}

/* ---- pub/sub ---- */

static void
fleet_sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fleet		*f = privdata;
	const redisReply	*r = reply;
	struct fleet_member	*m;
	struct fleet_record	 rec;
	const char		*sp;

	(void)ac;
	if (r == NULL || ac != f->sub.ac)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		fleet_fail_reply(f, r);
		return;
	}
	if (!fleet_reply_is(r, REDIS_REPLY_ARRAY, 3) ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (!strcmp(r->element[0]->str, "subscribe")) {
		if (!f->sub_ready) {
			f->sub_ready = 1;
			if (f->beat_ready)
				fleet_ready(f);
		}
		return;
	}
	if (strcmp(r->element[0]->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	if ((sp = memchr(r->element[2]->str, ' ', r->element[2]->len)) ==
	    NULL || (m = fleet_member_by_name(f, r->element[2]->str,
	    (size_t)(sp - r->element[2]->str))) == NULL)
		return;		/* not an account of this instance */
	if (fleet_open(m, sp + 1, r->element[2]->len -
	    (size_t)(sp + 1 - r->element[2]->str), &rec) == 0)
		fleet_deliver(m, &rec);
}

/* ---- links ---- */

static void
fleet_connect_cb(const redisAsyncContext *ac, int status)
{
	struct link	*l = ac->data;

	if (status != REDIS_OK) {
		l->ac = NULL;	/* hiredis frees it */
		fleet_fail(l->f, "cannot connect to %s: %s", l->kind == L_SEN ?
		    "a sentinel" : l->f->master, ac->errstr);
	}
}

static void
fleet_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct link	*l = ac->data;

	(void)status;
	if (l->ac != ac)
		return;
	l->ac = NULL;	/* hiredis frees it */
	fleet_fail(l->f, "%s closed the connection%s%s", l->kind == L_SEN ?
	    "the sentinel" : l->f->master, ac->errstr[0] != '\0' ? ": " : "",
	    ac->errstr);
}

static int
fleet_link_open(struct fleet *f, struct link *l, enum link_kind kind,
    const char *host, int port, const char *path)
{
	redisAsyncContext	*ac;

	l->f = f;
	l->kind = kind;
	ac = path != NULL ? redisAsyncConnectUnix(path) :
	    redisAsyncConnect(host, port);
	if (ac == NULL || ac->err) {
		fleet_fail(f, "cannot connect to %s: %s", path != NULL ? path :
		    host, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		return -1;
	}
	ac->data = l;
	l->ac = ac;
	redisLibeventAttach(ac, f->base);
	redisAsyncSetConnectCallback(ac, fleet_connect_cb);
	redisAsyncSetDisconnectCallback(ac, fleet_disconnect_cb);
	return 0;
}

static void
fleet_link_close(struct link *l)
{
	redisAsyncContext	*ac = l->ac;

	if (ac == NULL)
		return;
	l->ac = NULL;
	ac->data = l;
	redisAsyncFree(ac);
}

/* AUTH (and SELECT) on a fresh link to the master. */
static void
fleet_auth(struct fleet *f, struct link *l)
{
	const char	*argv[2];
	char		 db[16];

	if (f->conf->password != NULL) {
		argv[0] = "AUTH";
		argv[1] = f->conf->password;
		if (l->kind == L_CMD)
			fleet_send(f, C_SETUP, 0, 2, argv, NULL);
		else
			redisAsyncCommandArgv(l->ac, fleet_sub_cb, f, 2, argv,
			    NULL);
	}
	if (l->kind == L_CMD && f->conf->db != 0) {
		snprintf(db, sizeof db, "%d", f->conf->db);
		argv[0] = "SELECT";
		argv[1] = db;
		fleet_send(f, C_SETUP, 0, 2, argv, NULL);
	}
}

/* The master is known: open cmd and sub, check, subscribe. */
static void
fleet_open_master(struct fleet *f)
{
	const char	*role[] = { "ROLE" }, *get[2], *subv[2];
	const char	*path = f->conf->kind == FLEET_UNIX ? f->conf->path :
			    NULL;

	if (fleet_link_open(f, &f->cmd, L_CMD, f->master_host, f->master_port,
	    path) != 0 || fleet_link_open(f, &f->sub, L_SUB, f->master_host,
	    f->master_port, path) != 0)
		return;
	fleet_auth(f, &f->cmd);
	if (f->conf->kind == FLEET_SENTINEL)
		fleet_send(f, C_ROLE, 0, 1, role, NULL);
	get[0] = "GET";
	get[1] = f->k_keycheck;
	fleet_send(f, C_KEYCHECK, 0, 2, get, NULL);
	fleet_auth(f, &f->sub);
	subv[0] = "SUBSCRIBE";
	subv[1] = f->channel;
	if (f->sub.ac != NULL)
		redisAsyncCommandArgv(f->sub.ac, fleet_sub_cb, f, 2, subv,
		    NULL);
}

static void
fleet_switch_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fleet		*f = privdata;
	const redisReply	*r = reply;

	if (r == NULL || ac != f->sen.ac)
		return;
	if (fleet_reply_is(r, REDIS_REPLY_ARRAY, 3) &&
	    r->element[0]->type == REDIS_REPLY_STRING &&
	    !strcmp(r->element[0]->str, "message") &&
	    r->element[2]->type == REDIS_REPLY_STRING &&
	    !strncmp(r->element[2]->str, f->conf->master,
	    strlen(f->conf->master)) &&
	    r->element[2]->str[strlen(f->conf->master)] == ' ') {
		f->failures = 0;
		fleet_fail(f, "the sentinels moved the master: %.200s",
		    r->element[2]->str);
	}
}

static void
fleet_master_addr_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fleet		*f = privdata;
	const redisReply	*r = reply;
	const char		*subv[] = { "SUBSCRIBE", "+switch-master" };

	if (r == NULL || ac != f->sen.ac)
		return;
	if (!fleet_reply_is(r, REDIS_REPLY_ARRAY, 2) ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING) {
		fleet_fail(f, "the sentinel does not know master '%s'%s%.120s",
		    f->conf->master, r->type == REDIS_REPLY_ERROR ? ": " : "",
		    r->type == REDIS_REPLY_ERROR ? r->str : "");
		return;
	}
	snprintf(f->master_host, sizeof f->master_host, "%s",
	    r->element[0]->str);
	f->master_port = atoi(r->element[1]->str);
	snprintf(f->master, sizeof f->master, strchr(f->master_host, ':') ?
	    "[%s]:%d" : "%s:%d", f->master_host, f->master_port);
	redisAsyncCommandArgv(f->sen.ac, fleet_switch_cb, f, 2, subv, NULL);
	fleet_open_master(f);
}

static void
fleet_connect(struct fleet *f)
{
	const struct fleet_hostport	*hp;
	const char			*argv[3];

	f->state = FS_CONNECTING;
	f->gen++;
	f->sub_ready = f->beat_ready = 0;
	switch (f->conf->kind) {
	case FLEET_UNIX:
		snprintf(f->master, sizeof f->master, "%s", f->conf->path);
		fleet_open_master(f);
		break;
	case FLEET_TCP:
		hp = &f->conf->hosts[0];
		snprintf(f->master_host, sizeof f->master_host, "%s", hp->host);
		f->master_port = hp->port;
		snprintf(f->master, sizeof f->master, strchr(hp->host, ':') ?
		    "[%s]:%d" : "%s:%d", hp->host, hp->port);
		fleet_open_master(f);
		break;
	case FLEET_SENTINEL:
		hp = &f->conf->hosts[f->sen_next++ % f->conf->nhosts];
		f->master[0] = '\0';
		if (fleet_link_open(f, &f->sen, L_SEN, hp->host, hp->port,
		    NULL) != 0)
			return;
		argv[0] = "SENTINEL";
		argv[1] = "get-master-addr-by-name";
		argv[2] = f->conf->master;
		redisAsyncCommandArgv(f->sen.ac, fleet_master_addr_cb, f, 3,
		    argv, NULL);
		/* a sentinel that does not answer: the deadline */
		timer_set(&f->deadline, clock_boot_ms() + f->conf->timeout);
		break;
	}
}

static void
fleet_ready(struct fleet *f)
{
	struct fleet_member	*m, *next;

	f->state = FS_READY;
	f->failures = 0;
	f->last_error[0] = '\0';
	log_info("fleet: connected to %s as %s (%zu member%s)", f->master,
	    f->conf->node, f->nnodes, f->nnodes == 1 ? "" : "s");
	TAILQ_FOREACH(m, &f->members, entry)
		fleet_send_sync(m);
	for (m = TAILQ_FIRST(&f->members); m != NULL; m = next) {
		next = TAILQ_NEXT(m, entry);
		if (m->asking) {
			timer_clear(&m->answer_timer);
			m->asking = 0;
			if (fleet_lead(m, m->urgent) != 0)
				continue;
		} else
			m->ops->changed(m->arg);
	}
}

/* Tear every link down now; nothing of them is called after. */
static void
fleet_teardown(struct fleet *f)
{
	struct cmd		*c;
	struct fleet_member	*m;

	f->gen++;
	while ((c = TAILQ_FIRST(&f->pending)) != NULL) {
		TAILQ_REMOVE(&f->pending, c, entry);
		/* freed by its callback, which hiredis calls with NULL */
	}
	timer_clear(&f->deadline);
	timer_clear(&f->beat);
	fleet_link_close(&f->cmd);
	fleet_link_close(&f->sub);
	fleet_link_close(&f->sen);
	TAILQ_FOREACH(m, &f->members, entry)
		m->leading = 0;
}

static void
fleet_retry_cb(void *arg)
{
	struct fleet	*f = arg;

	if (f->state == FS_DOWN) {
		f->reconnects++;
		fleet_connect(f);
	}
}

/*
 * Something went wrong with a link: tear them all down (from the loop,
 * since this may run inside a hiredis callback) and reconnect later.
 */
static void
fleet_fail(struct fleet *f, const char *fmt, ...)
{
	struct fleet_member	*m, *next;
	va_list			 ap;
	int64_t			 delay = BACKOFF_MIN_MS;
	int			 i, was = f->state;

	if (f->state == FS_DOWN)
		return;
	va_start(ap, fmt);
	vsnprintf(f->last_error, sizeof f->last_error, fmt, ap);
	va_end(ap);
	f->state = FS_DOWN;
	f->failed_once = 1;
	for (i = 0; i < f->failures && delay < BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (f->key_differs)
		delay = BACKOFF_MAX_MS;
	if (delay > BACKOFF_MAX_MS)
		delay = BACKOFF_MAX_MS;
	delay = delay / 2 + (int64_t)(rng_unit() * (double)(delay / 2));
	f->failures++;
	/* a wrong key or password needs a person: an error, every time */
	if (f->key_differs || strstr(f->last_error, "refused the password"))
		log_account(LOG_LEVEL_ERROR, NULL, "fleet: %s; trying again in "
		    "%lld ms", f->last_error, (long long)delay);
	else if (f->failures == 1 || was == FS_READY)
		log_warnx("fleet: %s; %s in %lld ms", f->last_error, was ==
		    FS_READY ? "reconnecting" : "trying again",
		    (long long)delay);
	else
		log_debug("fleet: %s; trying again in %lld ms", f->last_error,
		    (long long)delay);
	/* hiredis may be inside a callback: it frees those contexts when
	   the callback returns */
	fleet_teardown(f);
	timer_set(&f->retry, clock_boot_ms() + delay);
	for (m = TAILQ_FIRST(&f->members); m != NULL; m = next) {
		next = TAILQ_NEXT(m, entry);
		if (m->publishing) {
			/* the token is kept, and offered at the next connect */
			m->publishing = 0;
			m->ops->published(m->arg, -1);
		}
	}
	if (f->stopped != NULL) {
		timer_set(&f->stop_timer, clock_boot_ms());
		return;
	}
	for (m = TAILQ_FIRST(&f->members); m != NULL; m = next) {
		next = TAILQ_NEXT(m, entry);
		if (m->asking)
			fleet_answer_later(m, FLEET_DOWN);
		else if (was == FS_READY)
			m->ops->changed(m->arg);	/* followers wait no
							   more for a leader */
	}
}

static void
fleet_deadline_cb(void *arg)
{
	struct fleet	*f = arg;

	fleet_fail(f, "%s did not answer within %lld ms", f->master[0] != '\0' ?
	    f->master : "the sentinel", (long long)f->conf->timeout);
}

/* ---- life ---- */

/*
 * Host names are resolved once, here, before the loop runs: hiredis 0.14
 * would resolve them in the loop, blocking it.
 */
static void
fleet_resolve(struct fleet_conf *fc)
{
	struct addrinfo		 hints, *res;
	char			 buf[INET6_ADDRSTRLEN];
	size_t			 i;

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	for (i = 0; i < fc->nhosts; i++) {
		hints.ai_flags = AI_NUMERICHOST;
		if (getaddrinfo(fc->hosts[i].host, NULL, &hints, &res) == 0) {
			freeaddrinfo(res);
			continue;
		}
		hints.ai_flags = 0;
		if (getaddrinfo(fc->hosts[i].host, NULL, &hints, &res) != 0)
			continue;	/* hiredis says why, at connect */
		if (getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof buf,
		    NULL, 0, NI_NUMERICHOST) == 0) {
			free(fc->hosts[i].host);
			fc->hosts[i].host = xstrdup(buf);
		}
		freeaddrinfo(res);
	}
}

struct fleet *
fleet_new(struct event_base *base, struct fleet_conf *conf)
{
	struct fleet	*f;
	unsigned char	 inst[8];
	char		 hex[17];
	size_t		 i;

	fleet_resolve(conf);
	f = xcalloc(1, sizeof *f);
	f->base = base;
	f->conf = conf;
	for (i = 0; i < sizeof inst; i++)
		inst[i] = (unsigned char)(rng_unit() * 256.0);
	for (i = 0; i < sizeof inst; i++)
		snprintf(hex + 2 * i, 3, "%02x", inst[i]);
	xasprintf(&f->holder, "%s/%s", conf->node, hex);
	xasprintf(&f->k_members, "%smembers", conf->key_prefix);
	xasprintf(&f->k_keycheck, "%skeycheck", conf->key_prefix);
	xasprintf(&f->channel, "%stokens", conf->key_prefix);
	TAILQ_INIT(&f->pending);
	TAILQ_INIT(&f->members);
	f->deadline.cb = fleet_deadline_cb;
	f->deadline.arg = f;
	f->retry.cb = fleet_retry_cb;
	f->retry.arg = f;
	f->beat.cb = fleet_beat_cb;
	f->beat.arg = f;
	f->next_id = 1;
	fleet_connect(f);
	return f;
}

static void
fleet_released(struct fleet *f)
{
	void	(*cb)(void *) = f->stopped;

	timer_clear(&f->stop_timer);
	if (cb == NULL)
		return;
	f->stopped = NULL;
	cb(f->stopped_arg);
}

static void
fleet_stop_timer_cb(void *arg)
{
	fleet_released(arg);
}

/*
 * Hand every lease back before tokend stops, so that the others take
 * over at once rather than after the lease. cb runs from the loop when
 * Redis answered, or after 2 s. 0: nothing to wait for (cb not called).
 */
int
fleet_shutdown(struct fleet *f, void (*cb)(void *), void *arg)
{
	struct fleet_member	*m;

	if (f == NULL || f->state != FS_READY)
		return 0;
	f->stopped = cb;
	f->stopped_arg = arg;
	f->stop_timer.cb = fleet_stop_timer_cb;
	f->stop_timer.arg = f;
	TAILQ_FOREACH(m, &f->members, entry)
		if (m->leading)
			fleet_send_release(m);
	if (f->releasing == 0) {
		f->stopped = NULL;
		return 0;
	}
	timer_set(&f->stop_timer, clock_boot_ms() + SHUTDOWN_MAX_MS);
	log_info("fleet: handing back %zu lease%s", f->releasing,
	    f->releasing == 1 ? "" : "s");
	return 1;
}

void
fleet_free(struct fleet *f)
{
	struct fleet_member	*m;
	size_t			 i;

	if (f == NULL)
		return;
	while ((m = TAILQ_FIRST(&f->members)) != NULL)
		fleet_leave(m);
	f->state = FS_DOWN;
	fleet_teardown(f);
	timer_clear(&f->retry);
	timer_clear(&f->stop_timer);
	for (i = 0; i < f->nnodes; i++)
		free(f->nodes[i]);
	free(f->nodes);
	free(f->holder);
	free(f->k_members);
	free(f->k_keycheck);
	free(f->channel);
	free(f);
}

struct fleet_member *
fleet_join(struct fleet *f, const char *account, int64_t timeout,
    const struct fleet_member_ops *ops, void *arg)
{
	struct fleet_member	*m;

	m = xcalloc(1, sizeof *m);
	m->f = f;
	m->id = f->next_id++;
	m->account = xstrdup(account);
	m->px = f->conf->lease + timeout;
	m->ops = ops;
	m->arg = arg;
	m->seen_obtained = -1;
	m->owned = -1;
	xasprintf(&m->k_lease, "%slease:%s", f->conf->key_prefix, account);
	xasprintf(&m->k_fence, "%sfence:%s", f->conf->key_prefix, account);
	xasprintf(&m->k_token, "%stoken:%s", f->conf->key_prefix, account);
	m->answer_timer.cb = fleet_answer_cb;
	m->answer_timer.arg = m;
	TAILQ_INSERT_TAIL(&f->members, m, entry);
	f->nmembers++;
	if (f->state == FS_READY)
		fleet_send_sync(m);
	return m;
}

void
fleet_leave(struct fleet_member *m)
{
	struct fleet	*f;

	if (m == NULL)
		return;
	f = m->f;
	if (m->leading && f->state == FS_READY)
		fleet_send_release(m);
	timer_clear(&m->answer_timer);
	TAILQ_REMOVE(&f->members, m, entry);
	f->nmembers--;
	seal_record_clear(&m->mine);
	free(m->account);
	free(m->leader);
	free(m->k_lease);
	free(m->k_fence);
	free(m->k_token);
	free(m);
}

int
fleet_leading(const struct fleet_member *m)
{
	return m->leading;
}

const char *
fleet_leader(const struct fleet_member *m)
{
	return m->leading ? m->f->conf->node : m->leader;
}

/*
 * When a follower looks again, at the latest, for a token due at
 * refresh_at: the owner at refresh_at, the others a grace later (the
 * leader presumed dead then); past that, every lease/3.
 */
int64_t
fleet_follow_at(const struct fleet_member *m, int64_t refresh_at, int64_t now)
{
	int64_t	 lease = m->f->conf->lease, due;

	due = refresh_at;
	if (m->f->state != FS_READY) {
		/* no leader can publish: everyone looks at the refresh time */
		if (refresh_at == 0 || due <= now)
			due = now + lease / 3;
		return due;
	}
	/* a leader refreshes on time, even one the hash does not pick (it
	   hands the lease back after publishing) */
	if (!m->leading && !fleet_owns(m))
		due += m->px + lease / 3;
	if (refresh_at == 0 || due <= now)
		due = now + lease / 3;
	return due;
}

/* Whether a token due at refresh_at is so late that its leader is
   presumed dead: anyone may take the lease then. */
int
fleet_overdue(const struct fleet_member *m, int64_t refresh_at, int64_t now)
{
	int64_t	 lease = m->f->conf->lease;

	return refresh_at != 0 && now >= refresh_at + m->px + lease / 3;
}

void
fleet_view(const struct fleet *f, struct fleet_view *v)
{
	const struct fleet_member	*m;

	memset(v, 0, sizeof *v);
	v->node = f->conf->node;
	v->redis = f->conf->redis;
	v->master = f->master[0] != '\0' ? f->master : NULL;
	v->connected = f->state == FS_READY;
	v->last_error = f->last_error;
	v->members = f->state == FS_READY ? f->nnodes : 0;
	v->shared = f->nmembers;
	TAILQ_FOREACH(m, &f->members, entry)
		v->leading += m->leading;
	v->lease_losses = f->lease_losses;
	v->publish_failures = f->publish_failures;
	v->published = f->published;
	v->received = f->received;
	v->reconnects = f->reconnects;
}
