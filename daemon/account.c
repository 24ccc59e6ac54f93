/*
 * One account's life: obtain a token, keep it on disk and in its files,
 * refresh it ahead of expiry, back off when the endpoint fails, and never
 * lose a refresh token.
 *
 * The state shown to users (fresh, refreshing, backoff, expired, failed)
 * is derived from the facts kept here, never stored beside them. Every
 * change of those facts ends in account_transition(), which traces the
 * state it leads to, answers the waiters once an outcome is known, and
 * tells the owner (STATUS=, READY=1) through the `changed` callback: no
 * path can forget one of them.
 *
 * Everything an account needs from outside (the HTTP client, the state
 * folder, the callback) comes in struct account_env at account_new();
 * readers see an account only through account_view().
 */
#define _GNU_SOURCE
#include <sys/queue.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

/* Retry-After is honoured up to this or max_backoff, whichever is longer */
#define RETRY_AFTER_MAX_MS	(3600 * MSEC_PER_SEC)
#define PERSIST_RETRY_MIN_MS	(2 * MSEC_PER_SEC)
#define PERSIST_RETRY_MAX_MS	(60 * MSEC_PER_SEC)

struct waiter {
	account_wait_cb		 cb;
	void			*arg;
	TAILQ_ENTRY(waiter)	 entry;
};

/* Someone waiting for the issuer's document (account_endpoints). */
struct ep_waiter {
	account_endpoints_cb	 cb;
	void			*arg;
	TAILQ_ENTRY(ep_waiter)	 entry;
};

/* A logout under way: the tokens it revokes, who waits for it. */
struct logout_waiter {
	account_logout_cb	 cb;
	void			*arg;
	TAILQ_ENTRY(logout_waiter) entry;
};
struct logout {
	char			*refresh_token;	/* secret */
	char			*access_token;	/* secret */
	struct revoke		*revoke;
	int			 waiting_endpoints;
	struct timer		 done_timer;	/* answers from the loop */
	int			 ok;
	char			 error[384];
	TAILQ_HEAD(, logout_waiter) waiters;
};

/* What an attempt came to, for account_transition(). */
enum account_outcome {
	ACCOUNT_UNDECIDED,	/* no outcome yet: waiters keep waiting */
	ACCOUNT_SUCCEEDED,
	ACCOUNT_FAILED_NOW,	/* this attempt failed; waiters hear why */
};

struct account {
	const struct account_env *env;
	struct account_conf	*conf;
	enum account_state	 shown;		/* as last traced */

	struct token		 token;		/* the access token served */
	int64_t			 obtained_boot;	/* boot ms the token arrived
						   (from the wall clock for
						   one loaded at start) */
	struct timer		 expiry_timer;	/* when the token's life ends */
	int64_t			 cut_lifetime_s;	/* lifetime of the last
						   "margin cut" log line */
	int64_t			 last_success;	/* wall ms */
	char			 file_error[192];	/* "": all written */
	uint64_t		 file_failures;
	char			*refresh_token;	/* secret; NULL: none held */
	char			 refresh_seed[SEED_HEX_LEN + 1];	/* SHA-256
					   of the refresh_token_file that
					   seeded it; "": none did */
	int			 state_unsaved;	/* retry store_save */
	int			 sinks_unwritten;	/* retry sink_write */
	struct timer		 persist_timer;	/* for both retries */
	int			 persist_failures;

	struct timer		 timer;
	int64_t			 due_wall;	/* wall ms of a refresh-ahead
						   deadline; 0: a relative one */
	int64_t			 next_wall;	/* next attempt, for status */

	struct http_request	*req;
	enum grant		 req_grant;
	char			*req_refresh_token;	/* secret */
	int			 unknown_retried;
	int			 req_assertion;	/* it carries a signed JWT */
	int			 assertion_retried;	/* a refused one was
						   made anew once */
	int			 skew_ignored_said;
	int64_t			 clock_offset;	/* s: the endpoint's Date
						   minus our clock; what
						   assertions are dated by */

	int			 failures;	/* in a row */
	int			 failed;	/* permanent until reload */
	int			 attempted;	/* first attempt is over */
	int64_t			 not_before;	/* wall ms; Retry-After */
	char			 last_error[512];
	uint64_t		 refreshes;
	uint64_t		 nfailures;

	TAILQ_HEAD(, waiter)	 waiters;

	/* login grants */
	int			 needs_login;	/* state login */
	int			 login_hooked;	/* on_failure ran for it */
	struct discovery	*discovery;	/* NULL: none asked yet */
	struct endpoints	 endpoints;	/* as last filled */
	int			 discovery_wait;	/* a token request waits
						   for the document */
	int			 req_discovered;	/* its URL came from it */
	TAILQ_HEAD(, ep_waiter)	 ep_waiters;
	struct logout		*logout;

	/* fleet mode (shared = yes) */
	struct fleet_member	*member;	/* NULL: not shared */
	int			 fleet_go;	/* the fleet said: lead */
	int			 fleet_alone;	/* Redis is down: own grant */
	int			 fleet_alone_said;
	int			 fleet_waiting;	/* for Redis to come back */
	int			 fleet_force;	/* tokenctl refresh */
	int			 fleet_led;	/* the request goes out under
						   a lease: publish its token */
	int			 fleet_publishing;	/* held, till Redis
						   has it */
	struct token		 held;		/* that token (secret) */
};

static void	account_request(struct account *);
static int	account_retry_at_reload(struct account *);
static void	account_enter_login(struct account *, const char *);
static void	account_login_free(struct account *);
static void	account_request_endpoints_cb(struct account *,
		    const struct endpoints *, const char *, void *);
static enum account_state account_state_at(const struct account *, int64_t);
static int	account_token_valid(const struct account *);
static void	account_schedule_refresh(struct account *);
static void	account_fleet_join(struct account *);
static void	account_fleet_published_cb(void *, int);

static const char *
account_grant_name(enum grant g)
{
	switch (g) {
	case GRANT_CLIENT_CREDENTIALS:
		return "client_credentials";
	case GRANT_PASSWORD:
		return "password";
	case GRANT_REFRESH_TOKEN:
		return "refresh_token";
	case GRANT_STATIC:
		return "static";
	case GRANT_DEVICE_CODE:
		return "device_code";
	case GRANT_AUTHORIZATION_CODE:
		return "authorization_code";
	case GRANT_JWT_BEARER:
		return "jwt_bearer";
	}
	return "?";
}

/* "1h 59m", "12s": how long a delay is, for logs. */
static void
account_fmt_delay(int64_t ms, char *buf, size_t len)
{
	int64_t	 s = ms / 1000;

	if (s < 0)
		s = 0;
	if (s >= 86400)
		snprintf(buf, len, "%lldd %lldh", (long long)(s / 86400),
		    (long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, len, "%lldh %lldm", (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%lldm %llds", (long long)(s / 60),
		    (long long)(s % 60));
	else
		snprintf(buf, len, "%llds", (long long)s);
}

/* "5m", "2m 30s": account_fmt_delay without a zero last part. */
static void
account_fmt_short(int64_t ms, char *buf, size_t len)
{
	size_t	 n;

	account_fmt_delay(ms, buf, len);
	n = strlen(buf);
	if (n > 3 && buf[n - 3] == ' ' && buf[n - 2] == '0')
		buf[n - 3] = '\0';
}

static void
account_notify(struct account *a, int ok, const char *error)
{
	struct waiter	*w;

	while ((w = TAILQ_FIRST(&a->waiters)) != NULL) {
		TAILQ_REMOVE(&a->waiters, w, entry);
		w->cb(a, ok, error, w->arg);
		free(w);
	}
}

/*
 * Every change ends here: trace the state it leads to, answer waiters
 * when the attempt has an outcome, and tell the owner.
 */
static void
account_transition(struct account *a, enum account_outcome outcome,
    const char *event)
{
	enum account_state	 s = account_state_at(a, clock_wall_ms());

	if (s != a->shown)
		log_account(LOG_LEVEL_DEBUG, a->conf->name, "%s -> %s (%s)",
		    account_state_name(a->shown), account_state_name(s), event);
	a->shown = s;
	if (outcome == ACCOUNT_SUCCEEDED)
		account_notify(a, 1, NULL);
	else if (outcome == ACCOUNT_FAILED_NOW)
		account_notify(a, 0, a->last_error);
	if (a->env->changed != NULL)
		a->env->changed(a, a->env->arg);
}

/*
 * Run at `wall`, a refresh-ahead deadline of the current token, or after
 * `delay` ms. The deadline counts on the boot clock from when the token
 * arrived, so a wall clock that is set moves neither it nor the expiry.
 */
static void
account_schedule_wall(struct account *a, int64_t wall)
{
	a->due_wall = wall;
	a->next_wall = wall;
	timer_set(&a->timer, a->obtained_boot + (wall - a->token.obtained_at));
}

static void
account_schedule_delay(struct account *a, int64_t delay)
{
	a->due_wall = 0;
	a->next_wall = clock_wall_ms() + delay;
	timer_set(&a->timer, clock_boot_ms() + delay);
}

static void	account_persist_later(struct account *);

static void
account_save_state(struct account *a)
{
	struct token	 t = a->token;
	int		 rc;

	t.refresh_token = a->refresh_token;
	t.refresh_seed = a->refresh_seed;
	rc = store_save(a->env->state_dir, a->conf->name, &t);
	if (rc != 0) {
		log_account(LOG_LEVEL_ERROR, a->conf->name, "cannot save state "
		    "in %s: %s; it is kept in memory and saving is retried",
		    a->env->state_dir, strerror(-rc));
		snprintf(a->last_error, sizeof a->last_error, "cannot save "
		    "state: %s", strerror(-rc));
		a->state_unsaved = 1;
	} else
		a->state_unsaved = 0;
	account_persist_later(a);
}

static void
account_write_sinks(struct account *a)
{
	size_t	 i;
	int	 rc;

	a->sinks_unwritten = 0;
	a->file_error[0] = '\0';
	for (i = 0; i < a->conf->nsinks; i++) {
		rc = sink_write(&a->conf->sinks[i], &a->token, clock_wall_ms());
		if (rc != 0) {
			log_account(LOG_LEVEL_ERROR, a->conf->name, "cannot "
			    "write %s: %s; the previous file is left as it was "
			    "and writing is retried", a->conf->sinks[i].path,
			    strerror(-rc));
			snprintf(a->file_error, sizeof a->file_error, "cannot "
			    "write %s: %s", a->conf->sinks[i].path,
			    strerror(-rc));
			snprintf(a->last_error, sizeof a->last_error, "%s",
			    a->file_error);
			a->file_failures++;
			a->sinks_unwritten = 1;
		}
	}
	account_persist_later(a);
}

/*
 * A full disk, a read-only or missing folder: what could not be written
 * is tried again from 2 s to a minute apart, not only at the next refresh
 * (an hour away, maybe, while the file holds a token about to expire).
 */
static void
account_persist_later(struct account *a)
{
	int64_t	 delay = PERSIST_RETRY_MIN_MS;
	int	 i;

	if (!a->state_unsaved && !a->sinks_unwritten) {
		a->persist_failures = 0;
		timer_clear(&a->persist_timer);
		return;
	}
	if (timer_pending(&a->persist_timer))
		return;
	for (i = 0; i < a->persist_failures && delay < PERSIST_RETRY_MAX_MS; i++)
		delay *= 2;
	if (delay > PERSIST_RETRY_MAX_MS)
		delay = PERSIST_RETRY_MAX_MS;
	timer_set(&a->persist_timer, clock_boot_ms() + delay);
}

static void
account_persist_cb(void *arg)
{
	struct account	*a = arg;

	a->persist_failures++;
	if (a->state_unsaved)
		account_save_state(a);
	if (a->sinks_unwritten) {
		if (account_token_valid(a))
			account_write_sinks(a);
		else
			a->sinks_unwritten = 0;	/* nothing worth writing */
	}
	if (!a->state_unsaved && !a->sinks_unwritten) {
		log_account(LOG_LEVEL_INFO, a->conf->name, "state and token "
		    "files are written again");
		if (a->failures == 0 && !a->failed)
			a->last_error[0] = '\0';
	}
	account_persist_later(a);
	account_transition(a, ACCOUNT_UNDECIDED, "files retried");
}

/*
 * Draw the refresh time of a new token (or of one whose [refresh] changed)
 * into token.refresh_at, which the state file keeps, so a restart finds
 * the same time. Says once per lifetime when the margin is cut.
 */
static void
account_plan_refresh(struct account *a)
{
	const struct refresh_conf	*rc = &a->conf->refresh;
	int64_t				 due, life, after;
	char				 m[32], l[32], r[32];

	due = schedule_refresh_at(rc, a->token.obtained_at,
	    a->token.expires_at, rng_unit());
	a->token.refresh_at = due;
	life = a->token.expires_at - a->token.obtained_at;
	if (due == 0 || (after = schedule_margin_cut(rc, life)) == 0 ||
	    life / MSEC_PER_SEC == a->cut_lifetime_s)
		return;
	a->cut_lifetime_s = life / MSEC_PER_SEC;
	account_fmt_short(rc->margin, m, sizeof m);
	account_fmt_short(life, l, sizeof l);
	account_fmt_short(after, r, sizeof r);
	if (rc->ratio < 0.5)
		log_account(LOG_LEVEL_INFO, a->conf->name, "margin %s leaves "
		    "less than ratio %g of a %s lifetime; refreshing no sooner than %s",
		    m, rc->ratio, l, r);
	else
		log_account(LOG_LEVEL_INFO, a->conf->name, "margin %s leaves "
		    "less than half of a %s lifetime; refreshing no sooner than %s",
		    m, l, r);
}

/* The token's life left, on the boot clock from when it arrived. */
static int64_t
account_remaining(const struct account *a)
{
	if (a->token.access_token == NULL)
		return 0;
	if (a->token.expires_at == 0)
		return INT64_MAX;
	return a->token.expires_at - a->token.obtained_at -
	    (clock_boot_ms() - a->obtained_boot);
}

static int
account_token_valid(const struct account *a)
{
	return account_remaining(a) > 0;
}

/*
 * A token arrived (or was loaded from the state file, obtained_at being
 * wall time): anchor it on the boot clock, and time the end of its life.
 */
static void
account_token_arrived(struct account *a)
{
	a->obtained_boot = clock_boot_ms() - (clock_wall_ms() -
	    a->token.obtained_at);
	if (a->token.expires_at == 0) {
		timer_clear(&a->expiry_timer);
		return;
	}
	timer_set(&a->expiry_timer, a->obtained_boot +
	    (a->token.expires_at - a->token.obtained_at));
}

/* The token's life is over with no new one: say so, loudly, once. */
static void
account_expiry_cb(void *arg)
{
	struct account	*a = arg;
	char		 when[32];

	if (account_token_valid(a))
		return;		/* replaced meanwhile; re-armed with it */
	format_rfc3339(a->token.expires_at, when, sizeof when);
	log_account(LOG_LEVEL_ERROR, a->conf->name, "token expired at %s; "
	    "last error: %s", when, a->last_error[0] != '\0' ? a->last_error :
	    a->req != NULL ? "none, a request is in flight" : "none");
	if (a->conf->on_failure != NULL)
		hooks_run(a->conf->on_failure, a->conf->name,
		    a->token.expires_at, "expired");
	account_transition(a, ACCOUNT_UNDECIDED, "token expired");
}

/* Arm the refresh timer at token.refresh_at, drawn if not yet. */
static void
account_schedule_refresh(struct account *a)
{
	char	 in[32];
	int64_t	 due;

	if (a->token.refresh_at == 0)
		account_plan_refresh(a);
	due = a->token.refresh_at;
	if (due == 0) {
		timer_clear(&a->timer);
		a->due_wall = a->next_wall = 0;
		return;
	}
	/* shared: the owner looks at the refresh time, the others later */
	if (a->member != NULL)
		due = fleet_follow_at(a->member, due, clock_wall_ms());
	account_fmt_delay(due - clock_wall_ms(), in, sizeof in);
	log_account(LOG_LEVEL_DEBUG, a->conf->name, "next refresh in %s", in);
	account_schedule_wall(a, due);
}

static void
account_failed(struct account *a, const char *why)
{
	char	 in[32];
	int	 was_failed = a->failed;

	a->failed = 1;
	a->failures++;
	a->nfailures++;
	a->attempted = 1;
	snprintf(a->last_error, sizeof a->last_error, "%s", why);
	account_fmt_delay(a->conf->refresh.max_backoff, in, sizeof in);
	log_account(LOG_LEVEL_ERROR, a->conf->name, "failed: %s; retrying "
	    "every %s, or at once after a reload", why, in);
	account_schedule_delay(a, a->conf->refresh.max_backoff);
	/* once when the account fails, not at every retry after */
	if (!was_failed && a->conf->on_failure != NULL)
		hooks_run(a->conf->on_failure, a->conf->name,
		    a->token.expires_at, "refused");
	account_transition(a, ACCOUNT_FAILED_NOW, "credentials refused");
}

/* A transient failure: back off, at least `min_delay_ms` (-1: none). */
static void
account_backoff(struct account *a, const char *why, int64_t min_delay_ms)
{
	int64_t	 delay, cap, now = clock_wall_ms();
	char	 in[32];

	a->failures++;
	a->nfailures++;
	a->attempted = 1;
	snprintf(a->last_error, sizeof a->last_error, "%s", why);
	delay = schedule_backoff(&a->conf->refresh, a->failures, rng_unit());
	if (min_delay_ms >= 0) {
		cap = a->conf->refresh.max_backoff > RETRY_AFTER_MAX_MS ?
		    a->conf->refresh.max_backoff : RETRY_AFTER_MAX_MS;
		if (min_delay_ms > cap)
			min_delay_ms = cap;
		a->not_before = now + min_delay_ms;
		if (min_delay_ms > delay)
			delay = min_delay_ms;
	}
	account_fmt_delay(delay, in, sizeof in);
	log_account(LOG_LEVEL_WARNING, a->conf->name, "%s; retrying in %s%s",
	    why, in, account_token_valid(a) ? " (the current token is "
	    "still served)" : "");
	account_schedule_delay(a, delay);
	account_transition(a, ACCOUNT_FAILED_NOW, "transient failure");
}

static void
account_success_apply(struct account *a, struct token *t, int published)
{
	int64_t	 now = clock_wall_ms();
	char	*fp, in[32], when[32];

	/* no refresh token in the answer: the one held stays valid */
	if (t->refresh_token == NULL && a->refresh_token != NULL)
		t->refresh_token = xstrdup(a->refresh_token);

	oauth_token_clear(&a->token);
	a->token = *t;
	freezero_str(a->refresh_token);
	a->refresh_token = a->token.refresh_token;
	a->token.refresh_token = NULL;
	memset(t, 0, sizeof *t);
	account_token_arrived(a);
	if (!published) {
		a->token.refresh_at = 0;
		account_plan_refresh(a);	/* saved with it */
	}
	a->last_success = now;
	a->fleet_alone = 0;
	a->fleet_led = 0;
	/* shared, not published (Redis is down, or it was fetched alone):
	   offered to the fleet at the next connect */
	if (a->member != NULL && !published)
		fleet_offer(a->member, &a->token, a->refresh_token);

	/* the refresh token may exist nowhere else: disk comes first */
	account_save_state(a);

	a->failures = 0;
	a->failed = 0;
	a->unknown_retried = 0;
	a->attempted = 1;
	a->not_before = 0;
	a->refreshes++;
	if (!a->state_unsaved)
		a->last_error[0] = '\0';
	account_write_sinks(a);

	fp = fingerprint(a->token.access_token);
	account_fmt_delay(a->token.expires_at - now, in, sizeof in);
	format_rfc3339(a->token.expires_at, when, sizeof when);
	log_account(LOG_LEVEL_INFO, a->conf->name, "new token %s (grant %s), "
	    "expires %s (in %s)", fp, account_grant_name(a->req_grant), when, in);
	free(fp);

	account_schedule_refresh(a);
	if (a->conf->on_refresh != NULL)
		hooks_run(a->conf->on_refresh, a->conf->name,
		    a->token.expires_at, NULL);
	account_transition(a, ACCOUNT_SUCCEEDED, "new token");
}

/*
 * A new token. A shared account's leader publishes it first and holds it
 * till Redis has it (account_fleet_published_cb): a stale leader's token,
 * refused by the fence, never reaches its files, state or hooks.
 */
static void
account_success(struct account *a, struct token *t)
{
	if (a->member != NULL && (a->fleet_led || fleet_leading(a->member))) {
		if (t->refresh_token == NULL && a->refresh_token != NULL)
			t->refresh_token = xstrdup(a->refresh_token);
		t->refresh_at = schedule_refresh_at(&a->conf->refresh,
		    t->obtained_at, t->expires_at, rng_unit());
		oauth_token_clear(&a->held);
		a->held = *t;
		memset(t, 0, sizeof *t);
		a->fleet_led = 0;
		if (fleet_publish(a->member, &a->held,
		    a->held.refresh_token)) {
			a->fleet_publishing = 1;
			account_transition(a, ACCOUNT_UNDECIDED, "publishing");
			return;
		}
		*t = a->held;
		memset(&a->held, 0, sizeof a->held);
		account_success_apply(a, t, 1);
		return;
	}
	account_success_apply(a, t, 0);
}

/* Redis has the token (1), refused it (0), or the link failed (-1). */
static void
account_fleet_published_cb(void *arg, int rc)
{
	struct account	*a = arg;
	struct token	 t;

	if (!a->fleet_publishing)
		return;
	a->fleet_publishing = 0;
	t = a->held;
	memset(&a->held, 0, sizeof a->held);
	if (rc == 0) {
		/* the fleet's token, newer, came in by account_fleet_token_cb */
		oauth_token_clear(&t);
		if (a->req == NULL) {
			if (account_token_valid(a) && a->token.refresh_at != 0)
				account_schedule_refresh(a);
			else
				account_schedule_wall(a, fleet_follow_at(
				    a->member, 0, clock_wall_ms()));
		}
		account_transition(a, ACCOUNT_UNDECIDED, "fenced out");
		return;
	}
	account_success_apply(a, &t, rc == 1);
}

/*
 * The refresh token `used` was refused: drop it, from memory and from the
 * state file, so that it is never sent again, not even after a restart;
 * then the own grant, or, without one, failed until a new refresh token
 * comes in refresh_token_file.
 */
static void
account_refresh_refused(struct account *a, const char *used, const char *why)
{
	char	 msg[sizeof a->last_error];

	if (a->refresh_token != NULL && used != NULL &&
	    strcmp(a->refresh_token, used) != 0) {
		/* a reload brought a new one while this one was out */
		log_account(LOG_LEVEL_WARNING, a->conf->name, "%s: the refresh "
		    "token sent was refused; trying the one newly put in "
		    "refresh_token_file", why);
		account_request(a);
		return;
	}
	if (a->refresh_token != NULL && used != NULL) {
		freezero_str(a->refresh_token);
		a->refresh_token = NULL;
		account_save_state(a);
	}
	if (a->conf->grant == GRANT_REFRESH_TOKEN) {
		snprintf(msg, sizeof msg, "the refresh token was refused (%s); "
		    "a new refresh token is needed in refresh_token_file", why);
		account_failed(a, msg);
		return;
	}
	if (GRANT_IS_LOGIN(a->conf->grant)) {
		/* a human, not a loop: nothing else could carry it on */
		snprintf(msg, sizeof msg, "the refresh token was refused (%s)",
		    why);
		account_enter_login(a, msg);
		return;
	}
	log_account(LOG_LEVEL_WARNING, a->conf->name, "%s: the refresh token "
	    "was refused; using the %s grant now", why,
	    account_grant_name(a->conf->grant));
	snprintf(a->last_error, sizeof a->last_error, "refresh token refused "
	    "(%s)", why);
	account_request(a);
}

/*
 * The refresh token `used` went out twice with no answer either time. A
 * server with reuse detection (authlib, glewlwyd, panva's) revokes the
 * whole chain when a rotated-out token comes back, so it is not sent a
 * third time: an account with a grant of its own drops it (memory and
 * disk) and uses that grant next. An account whose only credential it is
 * keeps it, since nothing else could carry it on.
 */
static void
account_refresh_spent(struct account *a, const char *used)
{
	if (a->conf->grant == GRANT_REFRESH_TOKEN ||
	    GRANT_IS_LOGIN(a->conf->grant) || a->refresh_token == NULL ||
	    used == NULL || strcmp(a->refresh_token, used) != 0)
		return;
	freezero_str(a->refresh_token);
	a->refresh_token = NULL;
	account_save_state(a);
	log_account(LOG_LEVEL_WARNING, a->conf->name, "the refresh token went "
	    "out twice without an answer; it is not sent again, the %s grant "
	    "is used next", account_grant_name(a->conf->grant));
}

/*
 * The endpoint's clock, from its answer's Date: assertions are dated by
 * it (their iat and exp must fit the server's window, RFC 7523 3). Date
 * has whole seconds and the answer took a while: a few seconds apart is
 * taken as agreement.
 */
#define ACCOUNT_SKEW_MIN_S	5
#define ACCOUNT_SKEW_MAX_S	(15 * 60)

/*
 * A refusal or a failed handshake of an account whose client certificate
 * has expired: say so, since the server rarely does.
 */
static void
account_cert_context(const struct account *a, char *buf, size_t len,
    int64_t now)
{
	char	 when[40];
	size_t	 n = strlen(buf);

	if (a->conf->client_cert == NULL || a->conf->client_cert_not_after == 0 ||
	    a->conf->client_cert_not_after > now || n >= len)
		return;
	format_rfc3339(a->conf->client_cert_not_after, when, sizeof when);
	snprintf(buf + n, len - n, " (the client certificate in "
	    "client_cert_file expired at %s)", when);
}

static void
account_clock_offset(struct account *a, const struct http_result *res,
    int64_t now)
{
	int64_t	 off;

	if (res->date == 0)
		return;
	off = res->date - now / MSEC_PER_SEC;
	/*
	 * Providers allow minutes of skew, not hours: a Date further off is
	 * the server's mistake (or a way to get assertions good tomorrow),
	 * not a clock to follow.
	 */
	if (off <= -ACCOUNT_SKEW_MAX_S || off >= ACCOUNT_SKEW_MAX_S) {
		if (!a->skew_ignored_said)
			log_account(LOG_LEVEL_WARNING, a->conf->name, "the token "
			    "endpoint's Date is %lld s from this machine's "
			    "clock, more than the 15 minutes followed: "
			    "ignored; check both clocks", (long long)(off < 0 ?
			    -off : off));
		a->skew_ignored_said = 1;
		return;
	}
	if (off > -ACCOUNT_SKEW_MIN_S && off < ACCOUNT_SKEW_MIN_S)
		off = 0;
	if (off != 0 && (a->clock_offset - off > ACCOUNT_SKEW_MIN_S ||
	    off - a->clock_offset > ACCOUNT_SKEW_MIN_S))
		log_account(LOG_LEVEL_WARNING, a->conf->name, "the token "
		    "endpoint's clock is %lld s %s this machine's; assertions "
		    "are dated by the endpoint's", (long long)(off < 0 ? -off :
		    off), off < 0 ? "behind" : "ahead of");
	a->clock_offset = off;
}

static void
account_http_done_cb(const struct http_result *res, void *arg)
{
	struct account		*a = arg;
	struct oauth_result	 or;
	struct token		 t;
	enum grant		 grant = a->req_grant;
	char			 why[192], *used;
	int64_t			 now = clock_wall_ms(), ra_ms;

	/* this answer's refresh token is ours; a retry takes its own copy */
	a->req = NULL;
	used = a->req_refresh_token;
	a->req_refresh_token = NULL;
	/* a discovered endpoint that fails: the document may be stale */
	if (a->req_discovered && (res->curl_code != 0 || res->status >= 500 ||
	    res->status == 404))
		account_endpoint_failed(a);

	if (res->curl_code != 0 || res->truncated) {
		snprintf(why, sizeof why, "%s", res->error != NULL ?
		    res->error : "request failed");
		account_cert_context(a, why, sizeof why, now);
		a->assertion_retried = 0;	/* the retry's outcome: unknown */
		if (res->sent && !res->truncated &&
		    grant == GRANT_REFRESH_TOKEN && !a->unknown_retried) {
			/* the server may have rotated it: ask once more */
			a->unknown_retried = 1;
			log_account(LOG_LEVEL_WARNING, a->conf->name, "refresh "
			    "outcome unknown (%s); retrying once with the same "
			    "refresh token", why);
			account_request(a);
		} else {
			if (res->sent && !res->truncated &&
			    grant == GRANT_REFRESH_TOKEN)
				account_refresh_spent(a, used);
			account_backoff(a, why, -1);
		}
		freezero_str(used);
		return;
	}
	a->unknown_retried = 0;	/* an answer came: the outcome is known */
	if (a->req_assertion)
		account_clock_offset(a, res, now);

	if (oauth_response_parse(a->conf, grant, used, res->status, res->body,
	    res->len, now, &t, &or) == 0) {
		a->assertion_retried = 0;
		account_success(a, &t);
		freezero_str(used);
		return;
	}

	/*
	 * A 401 or 403 that says when to come back is a rate limit (GitHub's
	 * secondary and primary ones), not refused credentials.
	 */
	if ((res->status == 401 || res->status == 403) &&
	    (res->retry_after_raw != NULL || res->ratelimit_reset != 0)) {
		or.outcome = OAUTH_RATE_LIMITED;
		or.client_refused = 0;
	}

	/*
	 * A refused assertion may be one the provider thinks replayed, or
	 * dated by a clock it disagrees with: one more, new, made at its
	 * time, before the refusal counts.
	 */
	if (a->req_assertion && !a->assertion_retried && or.client_refused) {
		a->assertion_retried = 1;
		log_account(LOG_LEVEL_WARNING, a->conf->name, "the signed "
		    "assertion was refused (%s); retrying once with a new one%s",
		    or.error, a->clock_offset != 0 ? ", dated by the "
		    "endpoint's clock" : "");
		freezero_str(used);
		account_request(a);
		return;
	}
	a->assertion_retried = 0;
	account_cert_context(a, or.error, sizeof or.error, now);

	switch (or.outcome) {
	case OAUTH_INVALID_GRANT:
		if (grant == GRANT_REFRESH_TOKEN) {
			account_refresh_refused(a, used, or.error);
			break;
		}
		/* FALLTHROUGH */
	case OAUTH_PERMANENT:
		account_failed(a, or.error);
		break;
	case OAUTH_RATE_LIMITED:
		ra_ms = schedule_retry_after(res->retry_after_raw, now);
		/* X-RateLimit-Reset: the later of the two */
		if (res->ratelimit_reset != 0 && res->ratelimit_reset * 1000 >
		    now + (ra_ms > 0 ? ra_ms : 0))
			ra_ms = res->ratelimit_reset * 1000 - now;
		account_backoff(a, or.error, ra_ms);
		break;
	default:
		account_backoff(a, or.error, -1);
		break;
	}
	freezero_str(used);
}

/* ---- fleet mode ---- */

/* Whether the account can do without a refresh token (and a human). */
static int
account_own_grant(const struct account *a)
{
	return !GRANT_IS_LOGIN(a->conf->grant) &&
	    a->conf->grant != GRANT_REFRESH_TOKEN &&
	    a->conf->grant != GRANT_STATIC;
}

/*
 * Before a shared account asks the endpoint, the fleet says who does:
 * urgent when there is no valid token or its refresh is overdue (the
 * leader presumed dead), or a human asked.
 */
static void
account_fleet_ask(struct account *a)
{
	int64_t	 now = clock_wall_ms();
	int	 urgent;

	urgent = a->fleet_force || !account_token_valid(a) ||
	    fleet_overdue(a->member, a->token.refresh_at, now);
	timer_clear(&a->timer);
	a->due_wall = 0;
	a->next_wall = now;
	fleet_lead(a->member, urgent);
}

/* A token the fleet has: served, written, and followed. */
static void
account_adopt(struct account *a, struct fleet_record *rec, int leading)
{
	char	*rt = rec->token.refresh_token, *fp;

	rec->token.refresh_token = NULL;
	if (rec->token.expires_at != 0 &&
	    rec->token.expires_at <= clock_wall_ms()) {
		/* nothing to serve; a new leader still needs the refresh
		   token */
		if (leading && rt != NULL) {
			freezero_str(a->refresh_token);
			a->refresh_token = rt;
			account_save_state(a);
		} else
			freezero_str(rt);
		return;
	}
	if (leading) {
		if (rt != NULL) {
			freezero_str(a->refresh_token);
			a->refresh_token = rt;
		}
	} else {
		/* followers keep no refresh token: the leader has it */
		freezero_str(rt);
		freezero_str(a->refresh_token);
		a->refresh_token = NULL;
	}
	oauth_token_clear(&a->token);
	a->token = rec->token;
	memset(&rec->token, 0, sizeof rec->token);
	if (a->token.token_type == NULL)
		a->token.token_type = xstrdup("Bearer");
	account_token_arrived(a);
	a->last_success = a->token.obtained_at;
	a->failures = 0;
	a->failed = 0;
	a->attempted = 1;
	a->not_before = 0;
	a->fleet_waiting = 0;
	a->last_error[0] = '\0';
	fleet_offer(a->member, &a->token, a->refresh_token);
	account_save_state(a);
	account_write_sinks(a);
	fp = fingerprint(a->token.access_token);
	log_account(LOG_LEVEL_INFO, a->conf->name, "token %s from the fleet "
	    "(leader %s)", fp, rec->leader != NULL ? rec->leader : "unknown");
	free(fp);
	if (a->conf->on_refresh != NULL)
		hooks_run(a->conf->on_refresh, a->conf->name,
		    a->token.expires_at, NULL);
	if (a->req == NULL)
		account_schedule_refresh(a);
	account_transition(a, ACCOUNT_SUCCEEDED, "token from the fleet");
}

/* Redis cannot be had: fetch alone if no refresh token is needed. */
static void
account_fleet_down(struct account *a)
{
	if (account_own_grant(a)) {
		if (!a->fleet_alone_said)
			log_account(LOG_LEVEL_WARNING, a->conf->name, "the fleet "
			    "is unreachable; refreshing on its own (no refresh "
			    "token is used)");
		a->fleet_alone_said = 1;
		a->fleet_alone = 1;
		a->fleet_go = 1;
		account_request(a);
		return;
	}
	a->fleet_waiting = 1;
	account_backoff(a, "the fleet is unreachable; a shared refresh token "
	    "is used by one instance only, so refreshing waits for Redis", -1);
}

static void
account_fleet_lead_cb(void *arg, enum fleet_lead res, struct fleet_record *rec)
{
	struct account	*a = arg;
	int		 force = a->fleet_force;

	a->fleet_force = 0;
	if (rec != NULL)
		account_adopt(a, rec, res == FLEET_LEAD);
	if (a->req != NULL)
		return;
	switch (res) {
	case FLEET_LEAD:
		a->fleet_alone_said = 0;
		if (!force && account_token_valid(a) && a->failures == 0 &&
		    a->token.refresh_at > clock_wall_ms()) {
			/* another instance refreshed it meanwhile */
			account_schedule_refresh(a);
			account_transition(a, ACCOUNT_UNDECIDED, "leading");
			return;
		}
		a->fleet_go = 1;
		a->fleet_led = 1;
		account_request(a);
		return;
	case FLEET_FOLLOW:
		a->fleet_alone_said = 0;
		a->fleet_led = 0;
		if (account_token_valid(a) && a->token.refresh_at != 0)
			account_schedule_refresh(a);
		else
			account_schedule_wall(a, fleet_follow_at(a->member, 0,
			    clock_wall_ms()));
		account_transition(a, force && account_token_valid(a) ?
		    ACCOUNT_SUCCEEDED : ACCOUNT_UNDECIDED, "following");
		return;
	case FLEET_DOWN:
		a->fleet_led = 0;
		account_fleet_down(a);
		return;
	}
}

static void
account_fleet_token_cb(void *arg, struct fleet_record *rec)
{
	struct account	*a = arg;

	account_adopt(a, rec, fleet_leading(a->member));
}

/* Redis came back, or the lease was lost. */
static void
account_fleet_changed_cb(void *arg)
{
	struct account	*a = arg;

	if (a->req != NULL || a->discovery_wait || a->logout != NULL)
		return;
	if (a->fleet_waiting || !account_token_valid(a)) {
		a->fleet_waiting = 0;
		account_request(a);
		return;
	}
	if (a->failures == 0 && a->token.refresh_at != 0)
		account_schedule_refresh(a);
	account_transition(a, ACCOUNT_UNDECIDED, "fleet");
}

static const struct fleet_member_ops account_fleet_ops = {
	account_fleet_lead_cb, account_fleet_token_cb, account_fleet_changed_cb,
	account_fleet_published_cb
};

static void
account_fleet_join(struct account *a)
{
	if (a->member != NULL || !a->conf->shared || a->env->fleet == NULL)
		return;
	a->member = fleet_join(a->env->fleet, a->conf->name, a->conf->timeout,
	    &account_fleet_ops, a);
	if (account_token_valid(a))
		fleet_offer(a->member, &a->token, a->refresh_token);
}

static void
account_request(struct account *a)
{
	struct oauth_request	 or;
	struct http_post	 p;
	struct account_conf	 c;
	struct endpoints	 ep;
	char			*cause = NULL;
	enum grant		 grant;
	int			 rc;

	if (a->req != NULL || a->discovery_wait ||
	    a->conf->grant == GRANT_STATIC)
		return;
	if (a->fleet_publishing)
		return;		/* the last one is not settled yet */
	if (a->member != NULL && !a->fleet_go) {
		account_fleet_ask(a);
		return;
	}
	a->fleet_go = 0;
	if (a->fleet_alone)
		a->fleet_led = 0;
	if (a->refresh_token != NULL && !a->fleet_alone)
		grant = GRANT_REFRESH_TOKEN;
	else if (GRANT_IS_LOGIN(a->conf->grant)) {
		account_enter_login(a, NULL);
		return;
	} else if (a->conf->grant == GRANT_REFRESH_TOKEN) {
		account_failed(a, "no refresh token is held; a new refresh "
		    "token is needed in refresh_token_file");
		return;
	} else
		grant = a->conf->grant;
	if (a->state_unsaved)
		account_save_state(a);

	/* the token endpoint and client_auth may come from discovery */
	c = *a->conf;
	a->req_discovered = 0;
	if (a->conf->issuer != NULL) {
		rc = account_endpoints(a, &ep, account_request_endpoints_cb, a,
		    &cause);
		if (rc == 0) {
			a->discovery_wait = 1;
			timer_clear(&a->timer);
			a->due_wall = 0;
			a->next_wall = clock_wall_ms();
			account_transition(a, ACCOUNT_UNDECIDED, "discovery");
			return;
		}
		if (rc < 0) {
			account_backoff(a, cause, -1);
			free(cause);
			return;
		}
		c.token_url = (char *)ep.token_url;
		c.refresh_url = (char *)ep.refresh_url;
		c.client_auth = ep.client_auth;
		a->req_discovered = a->conf->token_url == NULL;
	}
	/* RFC 8705 5: mutual TLS goes to the mTLS alias, if one is known */
	if (a->conf->issuer != NULL && CLIENT_AUTH_IS_TLS(c.client_auth) &&
	    ep.mtls_token_url != NULL && a->conf->token_url == NULL) {
		/* only what discovery gave: a URL the file sets stands */
		c.token_url = (char *)ep.mtls_token_url;
		if (a->conf->refresh_url == NULL)
			c.refresh_url = (char *)ep.mtls_token_url;
	}
	if (oauth_request_build(&c, grant, a->refresh_token,
	    account_assertion_now(a), &or, &cause) != 0) {
		account_failed(a, cause);
		free(cause);
		return;
	}
	oauth_http_post(a->conf, &or, &p);
	a->req_assertion = oauth_uses_assertion(&c, grant);
	/*
	 * A refresh token is sent at most twice (once more when the outcome
	 * is unknown): a fresh connection each time, since libcurl re-sends
	 * a POST by itself on a reused one that closes unanswered.
	 */
	p.fresh_connect = grant == GRANT_REFRESH_TOKEN;

	a->req_grant = grant;
	freezero_str(a->req_refresh_token);
	a->req_refresh_token = a->refresh_token != NULL ?
	    xstrdup(a->refresh_token) : NULL;
	log_account(LOG_LEVEL_DEBUG, a->conf->name, "requesting a token "
	    "(grant %s)", account_grant_name(grant));
	timer_clear(&a->timer);
	a->due_wall = 0;
	a->next_wall = clock_wall_ms();
	/* the callback runs from the event loop, never inside http_post */
	a->req = http_post(a->env->http, &p, account_http_done_cb, a);
	oauth_request_clear(&or);
	account_transition(a, ACCOUNT_UNDECIDED, "request");
}

static void
account_timer_cb(void *arg)
{
	struct account	*a = arg;

	a->due_wall = 0;
	account_request(a);
}

/* The account owns conf from here on; env must outlive it. */
struct account *
account_new(const struct account_env *env, struct account_conf *conf)
{
	struct account	*a;

	a = xcalloc(1, sizeof *a);
	a->env = env;
	a->conf = conf;
	a->shown = ACCOUNT_REFRESHING;	/* what a new account shows */
	a->timer.cb = account_timer_cb;
	a->timer.arg = a;
	a->persist_timer.cb = account_persist_cb;
	a->persist_timer.arg = a;
	a->expiry_timer.cb = account_expiry_cb;
	a->expiry_timer.arg = a;
	TAILQ_INIT(&a->waiters);
	TAILQ_INIT(&a->ep_waiters);
	return a;
}

static void
account_start_static(struct account *a)
{
	oauth_token_clear(&a->token);
	a->token.access_token = xstrdup(a->conf->static_token);
	a->token.token_type = xstrdup("Bearer");
	a->token.obtained_at = clock_wall_ms();
	a->token.expires_at = 0;
	account_token_arrived(a);
	a->attempted = 1;
	a->refreshes++;
	account_write_sinks(a);
	log_account(LOG_LEVEL_INFO, a->conf->name, "serving a static token "
	    "that does not expire");
	account_transition(a, ACCOUNT_SUCCEEDED, "static token");
}

/* The hash that tells one refresh_token_file's contents from another. */
static void
account_seed_of(const char *refresh_token, char out[SEED_HEX_LEN + 1])
{
	unsigned char	 d[32];
	size_t		 i;

	sha256(refresh_token, strlen(refresh_token), d);
	for (i = 0; i < sizeof d; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/*
 * A refresh token newly put in refresh_token_file wins over the one held
 * (or the lack of one); the one the file held when it last seeded the
 * account is not taken again, since it was used, rotated or refused
 * since.
 */
static void
account_seed_refresh_token(struct account *a)
{
	char	 seed[SEED_HEX_LEN + 1];

	if (a->conf->refresh_token == NULL)
		return;
	account_seed_of(a->conf->refresh_token, seed);
	if (!strcmp(seed, a->refresh_seed))
		return;
	log_account(LOG_LEVEL_INFO, a->conf->name, "using the refresh token "
	    "newly put in refresh_token_file%s", a->refresh_token != NULL ?
	    ", not the one held" : "");
	freezero_str(a->refresh_token);
	a->refresh_token = xstrdup(a->conf->refresh_token);
	memcpy(a->refresh_seed, seed, sizeof seed);
	account_save_state(a);
}

/* Pick up where the state file left off, or ask for a first token. */
void
account_start(struct account *a)
{
	struct token	 t;
	char		*path, *aside, in[32];
	int64_t		 now = clock_wall_ms();
	int		 rc;

	if (a->conf->grant == GRANT_STATIC) {
		account_start_static(a);
		return;
	}
	rc = store_load(a->env->state_dir, a->conf->name, &t);
	if (rc == -EBADMSG) {
		/* keep it for a human: it may hold the only refresh token */
		path = store_path(a->env->state_dir, a->conf->name);
		xasprintf(&aside, "%s.corrupt", path);
		if (rename(path, aside) == 0)
			log_account(LOG_LEVEL_ERROR, a->conf->name, "state file "
			    "%s is corrupt; kept as %s", path, aside);
		free(aside);
		free(path);
	} else if (rc != 0 && rc != -ENOENT)
		log_account(LOG_LEVEL_ERROR, a->conf->name, "cannot read "
		    "state: %s", strerror(-rc));
	if (rc == 0) {
		a->refresh_token = t.refresh_token;
		t.refresh_token = NULL;
		if (t.refresh_seed != NULL)
			snprintf(a->refresh_seed, sizeof a->refresh_seed, "%s",
			    t.refresh_seed);
		else if (a->refresh_token != NULL &&
		    a->conf->refresh_token != NULL)
			/* saved before seeds were: the file's token is where
			   the chain began, as far as anyone can tell */
			account_seed_of(a->conf->refresh_token,
			    a->refresh_seed);
		free(t.refresh_seed);
		t.refresh_seed = NULL;
		if (oauth_token_valid(&t, now + 1000)) {
			a->token = t;
			memset(&t, 0, sizeof t);
			/*
			 * A saved refresh_at is kept, not drawn again, while
			 * the [refresh] values allow it: they may have
			 * changed while tokend was down.
			 */
			if (!schedule_refresh_at_allowed(&a->conf->refresh,
			    a->token.obtained_at, a->token.expires_at,
			    a->token.refresh_at))
				a->token.refresh_at = 0;
			account_token_arrived(a);
			a->last_success = a->token.obtained_at;
			a->attempted = 1;
			account_fmt_delay(a->token.expires_at - now, in, sizeof in);
			log_account(LOG_LEVEL_INFO, a->conf->name, "resuming "
			    "with the saved token (expires in %s)", in);
			account_write_sinks(a);
			account_schedule_refresh(a);
			account_transition(a, ACCOUNT_SUCCEEDED, "saved token");
		}
		oauth_token_clear(&t);
	}
	account_seed_refresh_token(a);
	account_fleet_join(a);
	if (!timer_pending(&a->timer))
		account_request(a);
}

/*
 * A reload changed this account's file. Its tokens, refresh token and any
 * request in flight carry over; a failed account tries again at once.
 */
void
account_replace_conf(struct account *a, struct account_conf *conf)
{
	struct account_conf	*old = a->conf;
	int			 replan;

	/* new [refresh] values: a new refresh time (refresh_conf has no
	   padding) */
	replan = memcmp(&old->refresh, &conf->refresh, sizeof conf->refresh);
	a->conf = conf;
	if (!GRANT_IS_LOGIN(conf->grant))
		a->needs_login = 0;
	if (a->discovery != NULL)
		discovery_forget(a->discovery);	/* read again, as configured */
	account_seed_refresh_token(a);
	config_account_free(old);
	if (!conf->shared && a->member != NULL) {
		fleet_leave(a->member);
		a->member = NULL;
		timer_clear(&a->timer);
	} else if (conf->shared)
		account_fleet_join(a);
	if (account_token_valid(a))
		account_write_sinks(a);
	if (replan)
		a->token.refresh_at = 0;
	if (!account_retry_at_reload(a) && a->req == NULL) {
		account_schedule_refresh(a);
		if (replan)
			account_save_state(a);
	}
	account_transition(a, ACCOUNT_UNDECIDED, "configuration changed");
}

/*
 * A reload is a human saying "try again": a failed account, one backing
 * off or waiting out a Retry-After, or one without a valid token asks at
 * once, counters reset. 1 when it did.
 */
static int
account_retry_at_reload(struct account *a)
{
	if (a->conf->grant == GRANT_STATIC || a->req != NULL ||
	    a->discovery_wait || a->logout != NULL)
		return 0;
	/* a reload cannot log a human in */
	if (a->needs_login && a->refresh_token == NULL)
		return 0;
	a->needs_login = 0;
	if (a->discovery != NULL)
		discovery_forget(a->discovery);
	if (!a->failed && a->failures == 0 && a->not_before == 0 &&
	    account_token_valid(a))
		return 0;
	a->failed = 0;
	a->failures = 0;
	a->not_before = 0;
	account_request(a);
	return 1;
}

/* A reload left this account's file as it was. */
void
account_reloaded(struct account *a)
{
	if (account_retry_at_reload(a))
		account_transition(a, ACCOUNT_UNDECIDED, "reload");
}

void
account_free(struct account *a)
{
	if (a == NULL)
		return;
	if (a->req != NULL)
		http_cancel(a->req);
	timer_clear(&a->timer);
	timer_clear(&a->persist_timer);
	timer_clear(&a->expiry_timer);
	if (a->fleet_publishing) {
		/* Redis never answered: the token and its refresh token go to
		   the state file, as any new one does */
		a->held.refresh_seed = a->refresh_seed;
		(void)store_save(a->env->state_dir, a->conf->name, &a->held);
		a->held.refresh_seed = NULL;
	}
	fleet_leave(a->member);
	oauth_token_clear(&a->held);
	account_notify(a, 0, "the account was removed");
	account_login_free(a);
	oauth_token_clear(&a->token);
	freezero_str(a->refresh_token);
	freezero_str(a->req_refresh_token);
	config_account_free(a->conf);
	free(a);
}

const char *
account_name(const struct account *a)
{
	return a->conf->name;
}

/* For the registry's reload diff; readers use account_view(). */
const struct account_conf *
account_conf(const struct account *a)
{
	return a->conf;
}

/* Wall seconds by the token endpoint's clock: what assertions are dated by. */
int64_t
account_assertion_now(const struct account *a)
{
	return clock_wall_ms() / MSEC_PER_SEC + a->clock_offset;
}

static enum account_state
account_state_at(const struct account *a, int64_t now)
{
	if (a->needs_login && a->req == NULL)
		return ACCOUNT_LOGIN;
	if (a->failed)
		return ACCOUNT_FAILED;
	(void)now;	/* a token's life counts on the boot clock */
	if (a->req != NULL || a->discovery_wait || !a->attempted)
		return ACCOUNT_REFRESHING;
	/* never had a token: retrying, not expired */
	if (a->token.access_token == NULL)
		return ACCOUNT_BACKOFF;
	if (!account_token_valid(a))
		return ACCOUNT_EXPIRED;
	if (a->failures > 0)
		return ACCOUNT_BACKOFF;
	return ACCOUNT_FRESH;
}

const char *
account_state_name(enum account_state s)
{
	static const char *const names[ACCOUNT_STATE_COUNT] = {
		"fresh", "refreshing", "backoff", "expired", "failed",
		"login"
	};

	return (unsigned)s < ACCOUNT_STATE_COUNT ? names[s] : "?";
}

/*
 * What readers may know of an account at `now`. The pointers in it stay
 * valid until the account next changes: take what you need before
 * returning to the event loop.
 */
void
account_view(const struct account *a, int64_t now, struct account_view *v)
{
	memset(v, 0, sizeof *v);
	v->name = a->conf->name;
	v->state = account_state_at(a, now);
	v->token = a->token.access_token != NULL ? &a->token : NULL;
	v->remaining_ms = account_remaining(a);
	v->shared = a->member != NULL;
	v->leading = a->member != NULL && fleet_leading(a->member);
	v->leader = a->member != NULL ? fleet_leader(a->member) : NULL;
	v->grant = config_grant_name(a->conf->grant);
	v->client_auth = config_client_auth_name(a->conf->issuer != NULL &&
	    a->endpoints.token_url != NULL ? a->endpoints.client_auth :
	    a->conf->client_auth);
	if (a->conf->client_key != NULL) {
		/* an algorithm only where the key signs (not mutual TLS) */
		if (a->conf->grant == GRANT_JWT_BEARER ||
		    a->conf->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT ||
		    !strcmp(v->client_auth, "private_key_jwt"))
			v->key_alg = jws_alg_name((enum jws_alg)
			    a->conf->client_key_alg);
		v->key_thumbprint = a->conf->client_key_thumbprint;
	} else if (a->conf->client_auth == CLIENT_AUTH_CLIENT_SECRET_JWT)
		v->key_alg = "HS256";
	v->cert_not_after = a->conf->client_cert != NULL ?
	    a->conf->client_cert_not_after : 0;
	/*
	 * An account that needs a login serves no token, even one still
	 * in its life: its refresh token was refused or logged out, so the
	 * grant behind the access token is most likely gone too.
	 */
	v->valid = v->remaining_ms > 0 && v->state != ACCOUNT_LOGIN;
	/* none while a request is in flight: it is now */
	v->next_refresh = timer_pending(&a->timer) ? a->next_wall : 0;
	v->in_flight = a->req != NULL;
	v->last_success = a->last_success;
	v->file_error = a->file_error;
	v->file_failures = a->file_failures;
	v->not_before = a->not_before;
	v->last_error = a->last_error;
	v->refreshes = a->refreshes;
	v->failures = a->nfailures;
	v->attempted = a->attempted;
	v->refreshable = a->conf->grant != GRANT_STATIC;
	v->timeout_ms = a->conf->timeout;
	v->users = a->conf->users;
	v->nusers = a->conf->nusers;
	v->groups = a->conf->groups;
	v->ngroups = a->conf->ngroups;
}

/*
 * A refresh a local program asked for (POST /v1/refresh, ?min_valid=). It
 * never bypasses what protects the endpoint and the credentials: the
 * failed state, backoff and Retry-After are honoured, a request in flight
 * is joined, a token younger than min_interval stands, and a min_valid no
 * token of this account can meet is refused without a request.
 *
 * 0: cb will be called with the outcome. 1: nothing to do, the current
 * token is the freshest there may be (cb is not called). -1: refused now,
 * with *cause and *retry_at (wall ms of the next attempt, 0: unknown).
 */
int
account_refresh_now(struct account *a, int64_t min_valid_ms,
    account_wait_cb cb, void *arg, char **cause, int64_t *retry_at)
{
	struct waiter	*w;
	int64_t		 now = clock_wall_ms(), life;
	char		 in[32];

	*cause = NULL;
	*retry_at = timer_pending(&a->timer) ? a->next_wall : 0;
	if (a->conf->grant == GRANT_STATIC) {
		*cause = xstrdup("a static token is not refreshed");
		return -1;
	}
	if (a->needs_login) {
		xasprintf(cause, "needs a login: run tokenctl login %s",
		    a->conf->name);
		return -1;
	}
	if (a->failed) {
		xasprintf(cause, "the account failed (%s); tokend tries again "
		    "by itself, or at once after a reload", a->last_error);
		return -1;
	}
	if (a->not_before > now) {
		account_fmt_delay(a->not_before - now, in, sizeof in);
		xasprintf(cause, "the token endpoint asked to wait %s more "
		    "(Retry-After)", in);
		*retry_at = a->not_before;
		return -1;
	}
	if (a->req == NULL) {
		if (a->failures > 0) {
			xasprintf(cause, "backing off after %d failure%s (%s)",
			    a->failures, a->failures == 1 ? "" : "s",
			    a->last_error);
			return -1;
		}
		life = a->token.expires_at - a->token.obtained_at;
		if (min_valid_ms > 0 && a->token.expires_at != 0 &&
		    a->token.obtained_at != 0 && life < min_valid_ms) {
			account_fmt_delay(life, in, sizeof in);
			xasprintf(cause, "no token of this account is valid "
			    "that long (the last one was issued for %s)", in);
			return -1;
		}
		if (a->token.access_token != NULL &&
		    account_token_valid(a) &&
		    now - a->token.obtained_at < a->conf->refresh.min_interval) {
			log_account(LOG_LEVEL_DEBUG, a->conf->name, "refresh "
			    "asked for; the token is younger than min_interval, "
			    "it stands");
			return 1;
		}
	}
	/* a request in flight is joined, never repeated */
	if (cb != NULL) {
		w = xcalloc(1, sizeof *w);
		w->cb = cb;
		w->arg = arg;
		TAILQ_INSERT_TAIL(&a->waiters, w, entry);
	}
	if (a->req == NULL) {
		a->fleet_force = 1;
		account_request(a);
	}
	return 0;
}

void
account_cancel_waiter(struct account *a, account_wait_cb cb, void *arg)
{
	struct waiter	*w, *next;

	for (w = TAILQ_FIRST(&a->waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->cb == cb && w->arg == arg) {
			TAILQ_REMOVE(&a->waiters, w, entry);
			free(w);
		}
	}
}

/*
 * The wall clock was set. The token's life and its refresh count on the
 * boot clock and stay as they were; its wall times (for display, files
 * and the state file) move by the jump, so that they tell the truth
 * again.
 */
void
account_clock_jumped(struct account *a)
{
	int64_t	 jump;

	if (a->token.access_token == NULL || a->token.expires_at == 0)
		return;
	jump = clock_wall_ms() - clock_boot_ms() -
	    (a->token.obtained_at - a->obtained_boot);
	if (jump > -MSEC_PER_SEC && jump < MSEC_PER_SEC)
		return;
	if (a->token.obtained_at + jump < 0)
		return;		/* before 1970: leave it */
	a->token.obtained_at += jump;
	a->token.expires_at += jump;
	if (a->token.refresh_at != 0)
		a->token.refresh_at += jump;
	if (a->due_wall != 0)
		a->due_wall += jump;
	if (timer_pending(&a->timer))
		a->next_wall += jump;
	log_account(LOG_LEVEL_DEBUG, a->conf->name, "token times moved by "
	    "%lld s with the wall clock", (long long)(jump / MSEC_PER_SEC));
	account_save_state(a);
	if (account_token_valid(a))
		account_write_sinks(a);
	account_transition(a, ACCOUNT_UNDECIDED, "wall clock set");
}

/* ---- login grants: endpoints, the login state, logout ---- */

/* Discovery is asked only for what the file does not say. */
static int
account_needs_discovery(const struct account_conf *c)
{
	if (c->issuer == NULL)
		return 0;
	return c->token_url == NULL || !c->client_auth_given ||
	    c->revocation_url == NULL ||
	    (c->grant == GRANT_AUTHORIZATION_CODE &&
	    c->authorization_url == NULL) ||
	    (c->grant == GRANT_DEVICE_CODE &&
	    c->device_authorization_url == NULL);
}

/* The file's URLs, else the document's (doc NULL: none). */
static void
account_fill_endpoints(struct account *a, const struct discovery_doc *doc)
{
	const struct account_conf	*c = a->conf;
	struct endpoints		*e = &a->endpoints;

	memset(e, 0, sizeof *e);
	e->token_url = c->token_url != NULL ? c->token_url :
	    doc != NULL ? doc->token_endpoint : NULL;
	e->refresh_url = c->refresh_url != NULL ? c->refresh_url :
	    e->token_url;
	e->authorization_url = c->authorization_url != NULL ?
	    c->authorization_url : doc != NULL ? doc->authorization_endpoint :
	    NULL;
	e->device_authorization_url = c->device_authorization_url != NULL ?
	    c->device_authorization_url : doc != NULL ?
	    doc->device_authorization_endpoint : NULL;
	e->revocation_url = c->revocation_url != NULL ? c->revocation_url :
	    doc != NULL ? doc->revocation_endpoint : NULL;
	e->client_auth = discovery_client_auth(c, doc);
	e->mtls_token_url = doc != NULL ? doc->mtls_token_endpoint : NULL;
	e->s256_unlisted = doc != NULL && doc->pkce_listed && !doc->s256;
}

static void
account_discovered_cb(const struct discovery_doc *doc, const char *error,
    void *arg)
{
	struct account		*a = arg;
	struct ep_waiter	*w;

	/* a reload changed the issuer while the old one's was coming */
	if (doc != NULL && (a->conf->issuer == NULL ||
	    strcmp(doc->issuer, a->conf->issuer) != 0)) {
		discovery_forget(a->discovery);
		doc = NULL;
		error = "discovery: the issuer changed during the fetch; "
		    "fetching again";
	}
	if (doc != NULL) {
		account_fill_endpoints(a, doc);
		log_account(LOG_LEVEL_INFO, a->conf->name, "discovery: read "
		    "the endpoints of %s", a->conf->issuer);
		if (a->endpoints.s256_unlisted &&
		    a->conf->grant == GRANT_AUTHORIZATION_CODE)
			log_account(LOG_LEVEL_WARNING, a->conf->name,
			    "discovery: code_challenge_methods_supported does "
			    "not list S256; PKCE S256 is used anyway");
	} else
		log_account(LOG_LEVEL_WARNING, a->conf->name, "%s", error);
	while ((w = TAILQ_FIRST(&a->ep_waiters)) != NULL) {
		TAILQ_REMOVE(&a->ep_waiters, w, entry);
		w->cb(a, doc != NULL ? &a->endpoints : NULL, error, w->arg);
		free(w);
	}
}

int
account_endpoints(struct account *a, struct endpoints *out,
    account_endpoints_cb cb, void *arg, char **cause)
{
	const struct discovery_doc	*doc;
	struct ep_waiter		*w;
	int				 rc;

	*cause = NULL;
	if (!account_needs_discovery(a->conf)) {
		account_fill_endpoints(a, NULL);
		*out = a->endpoints;
		return 1;
	}
	if (a->discovery == NULL)
		a->discovery = discovery_new(a->env->http);
	doc = discovery_cached(a->discovery, a->conf->issuer, clock_boot_ms());
	if (doc != NULL) {
		account_fill_endpoints(a, doc);
		*out = a->endpoints;
		return 1;
	}
	rc = discovery_fetch(a->discovery, a->conf, account_discovered_cb, a,
	    cause);
	if (rc != 0 && rc != -EBUSY)	/* -EBUSY: one runs, joined */
		return -1;
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&a->ep_waiters, w, entry);
	return 0;
}

void
account_endpoints_cancel(struct account *a, account_endpoints_cb cb,
    void *arg)
{
	struct ep_waiter	*w, *next;

	for (w = TAILQ_FIRST(&a->ep_waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->cb == cb && w->arg == arg) {
			TAILQ_REMOVE(&a->ep_waiters, w, entry);
			free(w);
		}
	}
}

void
account_endpoint_failed(struct account *a)
{
	if (a->discovery != NULL && a->conf->issuer != NULL) {
		log_account(LOG_LEVEL_DEBUG, a->conf->name, "discovery: an "
		    "endpoint failed; the document is read again next time");
		discovery_forget(a->discovery);
	}
}

/* The document a token request waited for came, or did not. */
static void
account_request_endpoints_cb(struct account *a, const struct endpoints *ep,
    const char *error, void *arg)
{
	(void)arg;
	a->discovery_wait = 0;
	if (ep == NULL)
		account_backoff(a, error, -1);
	else
		account_request(a);
}

/*
 * No refresh token, and a grant only a human can use: say so once, run
 * on_failure once for it (TOKEND_REASON=login), and ask for nothing until
 * a login succeeds. A token still valid is served until it expires.
 */
static void
account_enter_login(struct account *a, const char *why)
{
	int	 entering = !a->needs_login;

	a->needs_login = 1;
	a->attempted = 1;
	a->failed = 0;
	a->failures = 0;
	a->not_before = 0;
	timer_clear(&a->timer);
	a->due_wall = a->next_wall = 0;
	snprintf(a->last_error, sizeof a->last_error, "%s%sneeds a login: run "
	    "tokenctl login %s", why != NULL ? why : "", why != NULL ? "; " :
	    "", a->conf->name);
	if (entering)
		log_account(LOG_LEVEL_WARNING, a->conf->name, "%s",
		    a->last_error);
	if (!a->login_hooked && a->conf->on_failure != NULL)
		hooks_run(a->conf->on_failure, a->conf->name,
		    a->token.expires_at, "login");
	a->login_hooked = 1;
	account_transition(a, ACCOUNT_FAILED_NOW, "needs a login");
}

/* Drop the token request in flight, or waiting for the document. */
static void
account_stop_request(struct account *a)
{
	if (a->req != NULL) {
		http_cancel(a->req);
		a->req = NULL;
	}
	freezero_str(a->req_refresh_token);
	a->req_refresh_token = NULL;
	a->unknown_retried = 0;
	if (a->discovery_wait) {
		account_endpoints_cancel(a, account_request_endpoints_cb, a);
		a->discovery_wait = 0;
	}
}

/* A login's token replaces whatever was held or under way. */
void
account_login_succeeded(struct account *a, struct token *t)
{
	account_stop_request(a);
	/* the login's refresh token replaces whatever was held */
	freezero_str(a->refresh_token);
	a->refresh_token = NULL;
	a->needs_login = 0;
	a->login_hooked = 0;
	a->req_grant = a->conf->grant;
	account_success(a, t);
}

/* Forget every token, in memory, in the state file and in the files. */
static void
account_forget(struct account *a)
{
	char	*cause = NULL;
	size_t	 i;
	int	 rc;

	account_stop_request(a);
	timer_clear(&a->timer);
	timer_clear(&a->expiry_timer);
	a->due_wall = a->next_wall = 0;
	oauth_token_clear(&a->token);
	freezero_str(a->refresh_token);
	a->refresh_token = NULL;
	account_save_state(a);
	a->sinks_unwritten = 0;
	a->file_error[0] = '\0';
	for (i = 0; i < a->conf->nsinks; i++) {
		rc = file_remove(a->conf->sinks[i].path, FILE_SAFE_PATH, &cause);
		if (rc != 0 && rc != -ENOENT)
			log_account(LOG_LEVEL_WARNING, a->conf->name, "cannot "
			    "remove its token file %s: %s",
			    a->conf->sinks[i].path, cause != NULL ? cause :
			    strerror(-rc));
		free(cause);
		cause = NULL;
	}
	account_persist_later(a);
}

/* The logout is over: answer everyone, then go. */
static void
account_logout_finish(struct account *a)
{
	struct logout		*l = a->logout;
	struct logout_waiter	*w;

	a->logout = NULL;
	timer_clear(&l->done_timer);
	if (l->ok)
		log_account(LOG_LEVEL_INFO, a->conf->name, "logged out: the "
		    "tokens are revoked and forgotten");
	else
		log_account(LOG_LEVEL_WARNING, a->conf->name, "logged out: %s; "
		    "the tokens are forgotten here anyway", l->error);
	while ((w = TAILQ_FIRST(&l->waiters)) != NULL) {
		TAILQ_REMOVE(&l->waiters, w, entry);
		w->cb(a, l->ok, l->ok ? NULL : l->error, w->arg);
		free(w);
	}
	freezero_str(l->refresh_token);
	freezero_str(l->access_token);
	free(l);
}

static void
account_logout_done_cb(void *arg)
{
	account_logout_finish(arg);
}

/* Answer from the event loop, never inside account_logout(). */
static void
account_logout_later(struct account *a, int ok, const char *error)
{
	a->logout->ok = ok;
	if (error != NULL)
		snprintf(a->logout->error, sizeof a->logout->error, "%s", error);
	timer_set(&a->logout->done_timer, clock_boot_ms());
}

static void
account_revoked_cb(int ok, const char *error, int endpoint_failed, void *arg)
{
	struct account	*a = arg;

	a->logout->revoke = NULL;
	a->logout->ok = ok;
	if (!ok)
		snprintf(a->logout->error, sizeof a->logout->error, "%s", error);
	if (endpoint_failed && a->conf->revocation_url == NULL)
		account_endpoint_failed(a);
	account_logout_finish(a);
}

static void
account_logout_revoke(struct account *a, const struct endpoints *ep)
{
	struct logout	*l = a->logout;
	char		*why = NULL;

	if (ep->revocation_url == NULL) {
		account_logout_later(a, 0, "no revocation endpoint is known "
		    "(set revocation_url, or use an issuer whose discovery "
		    "names one)");
		return;
	}
	l->revoke = revoke_start(a->env->http, a->conf, ep->client_auth,
	    ep->revocation_url, l->refresh_token, l->access_token,
	    account_assertion_now(a), account_revoked_cb, a, &why);
	if (l->revoke == NULL && why != NULL) {
		account_logout_later(a, 0, why);
		free(why);
	}
}

static void
account_logout_endpoints_cb(struct account *a, const struct endpoints *ep,
    const char *error, void *arg)
{
	(void)arg;
	a->logout->waiting_endpoints = 0;
	if (ep == NULL) {
		a->logout->ok = 0;
		snprintf(a->logout->error, sizeof a->logout->error, "%s", error);
		account_logout_finish(a);
	} else
		account_logout_revoke(a, ep);
}

/*
 * Forget the tokens at once, whatever the account's state, then revoke
 * them (refresh token first) where the account's revocation endpoint
 * is. Joins a logout under way. cb runs from the event loop.
 */
int
account_logout(struct account *a, account_logout_cb cb, void *arg,
    char **cause)
{
	struct logout		*l;
	struct logout_waiter	*w;
	struct endpoints	 ep;
	char			*why = NULL;
	int			 rc;

	*cause = NULL;
	if (!GRANT_IS_LOGIN(a->conf->grant) &&
	    a->conf->grant != GRANT_REFRESH_TOKEN) {
		*cause = xstrdup("logout is for accounts with grant "
		    "device_code, authorization_code or refresh_token");
		return -1;
	}
	w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	if (a->logout != NULL) {
		TAILQ_INSERT_TAIL(&a->logout->waiters, w, entry);
		return 0;
	}
	l = a->logout = xcalloc(1, sizeof *l);
	TAILQ_INIT(&l->waiters);
	TAILQ_INSERT_TAIL(&l->waiters, w, entry);
	l->done_timer.cb = account_logout_done_cb;
	l->done_timer.arg = a;
	l->ok = 1;
	if (a->refresh_token != NULL)
		l->refresh_token = xstrdup(a->refresh_token);
	if (account_token_valid(a))
		l->access_token = xstrdup(a->token.access_token);
	account_forget(a);
	if (GRANT_IS_LOGIN(a->conf->grant))
		account_enter_login(a, "logged out");
	else {
		a->failed = 1;
		a->attempted = 1;
		snprintf(a->last_error, sizeof a->last_error, "logged out; a "
		    "new refresh token is needed in refresh_token_file");
		account_transition(a, ACCOUNT_FAILED_NOW, "logged out");
	}
	if (l->refresh_token == NULL && l->access_token == NULL) {
		account_logout_later(a, 1, NULL);	/* nothing to revoke */
		return 0;
	}
	rc = account_endpoints(a, &ep, account_logout_endpoints_cb, a, &why);
	if (rc == 1)
		account_logout_revoke(a, &ep);
	else if (rc == 0)
		l->waiting_endpoints = 1;
	else {
		account_logout_later(a, 0, why);
		free(why);
	}
	return 0;
}

void
account_logout_cancel(struct account *a, account_logout_cb cb, void *arg)
{
	struct logout_waiter	*w, *next;

	if (a->logout == NULL)
		return;
	for (w = TAILQ_FIRST(&a->logout->waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->cb == cb && w->arg == arg) {
			TAILQ_REMOVE(&a->logout->waiters, w, entry);
			free(w);
		}
	}
}

/* account_free: a logout and discovery under way end with it. */
static void
account_login_free(struct account *a)
{
	struct ep_waiter	*w;

	/* the account's own waiters would act on it: not called */
	account_endpoints_cancel(a, account_request_endpoints_cb, a);
	account_endpoints_cancel(a, account_logout_endpoints_cb, a);
	if (a->logout != NULL) {
		revoke_cancel(a->logout->revoke);
		a->logout->revoke = NULL;
		a->logout->ok = 0;
		snprintf(a->logout->error, sizeof a->logout->error, "the "
		    "account was removed");
		account_logout_finish(a);
	}
	while ((w = TAILQ_FIRST(&a->ep_waiters)) != NULL) {
		TAILQ_REMOVE(&a->ep_waiters, w, entry);
		w->cb(a, NULL, "the account was removed", w->arg);
		free(w);
	}
	discovery_free(a->discovery);
	a->discovery = NULL;
}
