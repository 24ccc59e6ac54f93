/*
 * Unit tests for account.c, the per-account state machine, in the manner
 * of chrony's test/unit/ntp_core.c: the real module, with its real
 * neighbours that do no I/O of their own accord (oauth.c, schedule.c,
 * config.c) and the real state and token files in a private folder, but
 * link-time stand-ins for what drives it from outside: the HTTP client
 * (http_post answers when the test says so), the timers and both clocks
 * (a fake time the test moves), and the hooks (counted, not run).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tokend.h"
#include "unit.h"

#define SEC		1000LL
#define T0		1700000000000LL		/* wall ms, 2023-11-14T22:13:20Z */

/* ---- the fake world ---- */

static int64_t	 fake_wall = T0;
static int64_t	 fake_boot = 5000 * SEC;

int64_t
clock_wall_ms(void)
{
	return fake_wall;
}

int64_t
clock_boot_ms(void)
{
	return fake_boot;
}

#define TIMERS_MAX	16
static struct timer	*timers[TIMERS_MAX];

void
timer_set(struct timer *t, int64_t when)
{
	size_t	 i, slot = TIMERS_MAX;

	t->when = when;
	for (i = 0; i < TIMERS_MAX; i++) {
		if (timers[i] == t)
			return;
		if (timers[i] == NULL && slot == TIMERS_MAX)
			slot = i;
	}
	if (slot == TIMERS_MAX)
		fail_msg("more than %d timers", TIMERS_MAX);
	timers[slot] = t;
	t->idx = slot + 1;
}

void
timer_clear(struct timer *t)
{
	size_t	 i;

	for (i = 0; i < TIMERS_MAX; i++)
		if (timers[i] == t)
			timers[i] = NULL;
	t->idx = 0;
}

int
timer_pending(const struct timer *t)
{
	return t->idx != 0;
}

/* Move both clocks by ms, firing every timer due on the way, in order. */
static void
advance(int64_t ms)
{
	int64_t		 end = fake_boot + ms;
	struct timer	*next;
	size_t		 i;

	for (;;) {
		next = NULL;
		for (i = 0; i < TIMERS_MAX; i++)
			if (timers[i] != NULL && timers[i]->when <= end &&
			    (next == NULL || timers[i]->when < next->when))
				next = timers[i];
		if (next == NULL)
			break;
		if (next->when > fake_boot) {
			fake_wall += next->when - fake_boot;
			fake_boot = next->when;
		}
		timer_clear(next);
		next->cb(next->arg);
	}
	fake_wall += end - fake_boot;
	fake_boot = end;
}

/* The one request in flight, as http_post saw it. */
struct http_request {
	http_done_cb	 cb;
	void		*arg;
	char		*url;
	char		*body;
	char		*authorization;
};
static struct http_request	*inflight;
static int			 posts, cancels;

struct http_request *
http_post(struct http *http, const struct http_post *p, http_done_cb cb,
    void *arg)
{
	struct http_request	*r;

	(void)http;
	if (inflight != NULL)
		fail_msg("a second request while one is in flight");
	r = xcalloc(1, sizeof *r);
	r->cb = cb;
	r->arg = arg;
	r->url = xstrdup(p->url);
	r->body = xstrdup(p->body);
	r->authorization = p->authorization != NULL ?
	    xstrdup(p->authorization) : NULL;
	inflight = r;
	posts++;
	return r;
}

static void
request_free(struct http_request *r)
{
	free(r->url);
	free(r->body);
	free(r->authorization);
	free(r);
}

void
http_cancel(struct http_request *r)
{
	if (r != inflight)
		fail_msg("cancel of a request not in flight");
	inflight = NULL;
	cancels++;
	request_free(r);
}

/* Answer the request in flight, as http.c does from the event loop. */
static void
answer_full(long status, const char *body, const char *retry_after,
    int curl_code, int sent)
{
	struct http_request	*r = inflight;
	struct http_result	 res;

	if (r == NULL)
		fail_msg("no request in flight to answer");
	memset(&res, 0, sizeof res);
	res.curl_code = curl_code;
	res.status = curl_code == 0 ? status : 0;
	res.body = body != NULL ? body : "";
	res.len = strlen(res.body);
	res.retry_after_raw = retry_after;
	res.sent = sent;
	res.error = curl_code != 0 ? "Operation timed out" : NULL;
	inflight = NULL;
	r->cb(&res, r->arg);
	request_free(r);
}

static void
answer(long status, const char *body)
{
	answer_full(status, body, NULL, 0, 1);
}

/* The form value of `name` in the request in flight ("" when absent). */
static const char *
form_value(const char *name)
{
	static char	 out[256];
	const char	*p;
	size_t		 n = strlen(name), len;

	if (inflight == NULL)
		fail_msg("no request in flight");
	for (p = inflight->body; p != NULL; p = strchr(p, '&')) {
		if (*p == '&')
			p++;
		if (!strncmp(p, name, n) && p[n] == '=') {
			len = strcspn(p + n + 1, "&");
			snprintf(out, sizeof out, "%.*s", (int)len, p + n + 1);
			return out;
		}
	}
	return "";
}

static int	 hook_runs[2];		/* on_refresh, on_failure */
static char	 hook_reason[32];	/* TOKEND_REASON of the last run */

void
hooks_run(char **argv, const char *account, int64_t expires_at,
    const char *reason)
{
	(void)account;
	(void)expires_at;
	hook_runs[strstr(argv[0], "failure") != NULL]++;
	snprintf(hook_reason, sizeof hook_reason, "%s", reason != NULL ?
	    reason : "");
}

/* ---- the account under test ---- */

struct fixture {
	char			*dir;
	char			*state_dir;
	struct account_env	 env;
	struct account		*a;
	int			 changes;
	int			 waited, waited_ok;
	char			 waited_error[192];
};

static void
changed_cb(struct account *a, void *arg)
{
	struct fixture	*f = arg;

	(void)a;
	f->changes++;
}

static void
wait_cb(struct account *a, int ok, const char *error, void *arg)
{
	struct fixture	*f = arg;

	(void)a;
	f->waited++;
	f->waited_ok = ok;
	snprintf(f->waited_error, sizeof f->waited_error, "%s",
	    error != NULL ? error : "");
}

static struct account_conf *
conf_from(struct fixture *f, const char *text)
{
	struct account_conf	*ac;
	struct diag		 d;
	char			*path, *full;
	size_t			 i;

	path = path_in(f->dir, "acct.conf");
	xasprintf(&full, "%s\n[file]\npath = %s/acct.token\n", text, f->dir);
	memset(&d, 0, sizeof d);
	ac = config_account_parse(path, "acct", full, strlen(full), &d);
	for (i = 0; i < d.nerrors; i++)
		print_error("config: %s\n", d.errors[i]);
	diag_clear(&d);
	free(full);
	free(path);
	if (ac == NULL)
		fail_msg("the test's account file does not parse");
	return ac;
}

#define CLIENT_CREDENTIALS						\
	"[account]\ngrant = client_credentials\n"			\
	"token_url = https://issuer.test/token\n"			\
	"client_id = cid\nclient_secret = csecret\n"			\
	"[refresh]\nmargin = 60s\nratio = 0.75\njitter = 0\n"		\
	"min_backoff = 1s\nmax_backoff = 8s\n"

#define PASSWORD							\
	"[account]\ngrant = password\n"					\
	"token_url = https://issuer.test/token\n"			\
	"client_id = cid\nclient_secret = csecret\n"			\
	"username = alice\npassword = pw\n"				\
	"[refresh]\nmargin = 60s\nratio = 0.75\njitter = 0\n"		\
	"min_backoff = 1s\nmax_backoff = 8s\n"				\
	"[hooks]\non_refresh = /bin/on-refresh\n"			\
	"on_failure = /bin/on-failure\n"

static int
setup(void **state)
{
	struct fixture	*f;
	size_t		 i;

	f = xcalloc(1, sizeof *f);
	if (tmpdir_setup((void **)&f->dir) != 0)
		return -1;
	f->state_dir = path_in(f->dir, "state");
	if (mkdir(f->state_dir, 0700) != 0)
		return -1;
	f->env.state_dir = f->state_dir;
	f->env.changed = changed_cb;
	f->env.arg = f;
	for (i = 0; i < TIMERS_MAX; i++)
		timers[i] = NULL;
	inflight = NULL;
	posts = cancels = 0;
	hook_runs[0] = hook_runs[1] = 0;
	hook_reason[0] = '\0';
	fake_wall = T0;
	fake_boot = 5000 * SEC;
	rng_seed(42);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;
	void		*dir = f->dir;

	account_free(f->a);
	if (inflight != NULL)
		fail_msg("a request outlived its account");
	free(f->state_dir);
	free(f);
	return tmpdir_teardown(&dir);
}

static void
start(struct fixture *f, const char *conf)
{
	f->a = account_new(&f->env, conf_from(f, conf));
	account_start(f->a);
}

static struct account_view
view(struct fixture *f)
{
	struct account_view	 v;

	account_view(f->a, clock_wall_ms(), &v);
	return v;
}

#define CHECK_STATE(f, want)						\
	CHECK_STR("state", account_state_name(view(f).state),		\
	    account_state_name(want))

static char *
slurp(const char *path)
{
	char	*buf;
	size_t	 len;

	if (read_file_capped(path, 1 << 20, &buf, &len) != 0)
		return NULL;
	return buf;
}

/* The state file's refresh token; NULL when there is none. */
static char *
saved_refresh_token(struct fixture *f)
{
	struct json_object	*o, *rt;
	char			*path, *text, *out = NULL;

	path = path_in(f->state_dir, "acct.json");
	text = slurp(path);
	free(path);
	if (text == NULL)
		return NULL;
	o = json_tokener_parse(text);
	if (o != NULL && json_object_object_get_ex(o, "refresh_token", &rt) &&
	    json_object_is_type(rt, json_type_string))
		out = xstrdup(json_object_get_string(rt));
	json_object_put(o);
	free(text);
	return out;
}

/* A 0600 file in the test's folder; returns its path. */
static char *
put_secret(struct fixture *f, const char *name, const char *content)
{
	char	*path = path_in(f->dir, name);
	FILE	*fp;

	if ((fp = fopen(path, "w")) == NULL)
		fail_msg("cannot write %s", path);
	fprintf(fp, "%s\n", content);
	fclose(fp);
	chmod(path, 0600);
	return path;
}

static void
check_token_file(struct fixture *f, const char *want)
{
	char	*path = path_in(f->dir, "acct.token"), *text = slurp(path);
	char	*line;

	xasprintf(&line, "%s\n", want);
	CHECK_STR("token file", text, line);
	free(line);
	free(text);
	free(path);
}

/* ---- the transitions ---- */

/* First token: one request, fresh, state file, token file, schedule. */
static void
test_success_and_schedule(void **state)
{
	struct fixture		*f = *state;
	struct account_view	 v;

	start(f, CLIENT_CREDENTIALS);
	CHECK_STATE(f, ACCOUNT_REFRESHING);
	CHECK_I64("posts", posts, 1);
	CHECK_STR("grant_type", form_value("grant_type"), "client_credentials");
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
	v = view(f);
	CHECK_STR("token", v.token->access_token, "tok-1");
	CHECK_I64("expires_at", v.token->expires_at, T0 + 600 * SEC);
	/* min(0.75 * 600 s, 600 s - 60 s) = 450 s, no jitter */
	CHECK_I64("next refresh", v.next_refresh, T0 + 450 * SEC);
	CHECK_I64("refreshes", v.refreshes, 1);
	CHECK_STR("last error", v.last_error, "");
	check_token_file(f, "tok-1");
	assert_true(f->changes >= 2);

	advance(449 * SEC);
	CHECK_I64("no request before it is due", posts, 1);
	advance(1 * SEC);
	CHECK_I64("a request when it is due", posts, 2);
	CHECK_STATE(f, ACCOUNT_REFRESHING);
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
	check_token_file(f, "tok-2");
	CHECK_I64("refreshes", view(f).refreshes, 2);
}

/* 5xx: back off inside the envelope, keep the token, reset on success. */
static void
test_backoff_then_success(void **state)
{
	struct fixture		*f = *state;
	struct account_view	 v;
	int64_t			 delay;

	start(f, CLIENT_CREDENTIALS);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	advance(450 * SEC);
	answer(503, "busy");
	CHECK_STATE(f, ACCOUNT_BACKOFF);
	v = view(f);
	CHECK_STR("the token is still served", v.token->access_token, "tok-1");
	assert_true(v.valid);
	assert_non_null(strstr(v.last_error, "503"));
	delay = v.next_refresh - clock_wall_ms();
	/* after failure 1: [max(1 s, 2 s / 2), 2 s] */
	assert_true(delay >= 1 * SEC && delay <= 2 * SEC);
	advance(delay);
	CHECK_I64("the retry", posts, 3);
	answer(500, "oops");
	delay = view(f).next_refresh - clock_wall_ms();
	/* after failure 2: [2 s, 4 s] */
	assert_true(delay >= 2 * SEC && delay <= 4 * SEC);
	advance(delay);
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
	v = view(f);
	CHECK_STR("last error cleared", v.last_error, "");
	CHECK_I64("failures counted", v.failures, 2);
	CHECK_I64("back on the schedule", v.next_refresh,
	    clock_wall_ms() + 450 * SEC);
	check_token_file(f, "tok-2");
}

/* 429 with Retry-After: no attempt before it, local refreshes refused. */
static void
test_429_retry_after(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;
	int64_t		 at;

	start(f, CLIENT_CREDENTIALS);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	advance(450 * SEC);
	answer_full(429, "{\"error\":\"slow_down\"}", "120", 0, 1);
	CHECK_STATE(f, ACCOUNT_BACKOFF);
	CHECK_I64("next attempt after Retry-After", view(f).next_refresh,
	    clock_wall_ms() + 120 * SEC);
	assert_int_equal(account_refresh_now(f->a, -1, NULL, NULL, &cause, &at), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "Retry-After"));
	free(cause);
	advance(119 * SEC);
	CHECK_I64("nothing before Retry-After", posts, 2);
	advance(1 * SEC);
	CHECK_I64("the retry at Retry-After", posts, 3);
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
}

/* An unknown outcome is retried once, at once, with the same token. */
static void
test_unknown_outcome_retried_once(void **state)
{
	struct fixture	*f = *state;
	char		*rt;

	start(f, PASSWORD);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600,"
	    "\"refresh_token\":\"rt-1\"}");
	advance(450 * SEC);
	CHECK_STR("grant_type", form_value("grant_type"), "refresh_token");
	CHECK_STR("refresh token", form_value("refresh_token"), "rt-1");
	answer_full(0, NULL, NULL, 28, 1);	/* timed out after sending */
	CHECK_I64("retried at once", posts, 3);
	CHECK_STR("the same refresh token", form_value("refresh_token"),
	    "rt-1");
	answer_full(0, NULL, NULL, 28, 1);
	CHECK_I64("not a third time at once", posts, 3);
	CHECK_STATE(f, ACCOUNT_BACKOFF);
	rt = saved_refresh_token(f);
	CHECK_STR("sent twice unanswered: gone from disk", rt, NULL);
	free(rt);
	advance(view(f).next_refresh - clock_wall_ms());
	CHECK_STR("never a third time: the own grant", form_value(
	    "grant_type"), "password");
	CHECK_STR("no refresh token", form_value("refresh_token"), "");
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600,"
	    "\"refresh_token\":\"rt-2\"}");
	rt = saved_refresh_token(f);
	CHECK_STR("the new refresh token is saved", rt, "rt-2");
	free(rt);
}

/* Unknown twice where the refresh token is all there is: it is kept. */
static void
test_unknown_outcome_refresh_token_only(void **state)
{
	struct fixture	*f = *state;
	char		*rtfile = put_secret(f, "rt", "rt-0"), *conf;

	xasprintf(&conf, "[account]\ngrant = refresh_token\n"
	    "token_url = https://issuer.test/token\nclient_id = cid\n"
	    "refresh_token_file = %s\n[refresh]\nmin_backoff = 1s\n"
	    "max_backoff = 4s\n", rtfile);
	start(f, conf);
	answer_full(0, NULL, NULL, 28, 1);
	answer_full(0, NULL, NULL, 28, 1);
	CHECK_I64("two sends", posts, 2);
	advance(view(f).next_refresh - clock_wall_ms());
	CHECK_STR("kept: nothing else could carry the account",
	    form_value("refresh_token"), "rt-0");
	/* still no answer since the retry: no second retry at once */
	answer_full(0, NULL, NULL, 28, 1);
	CHECK_I64("no immediate retry after backoff", posts, 3);
	advance(view(f).next_refresh - clock_wall_ms());
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
	free(conf);
	free(rtfile);
}

/* A request that never left is not an unknown outcome: plain backoff. */
static void
test_unsent_failure_is_not_retried_at_once(void **state)
{
	struct fixture	*f = *state;

	start(f, PASSWORD);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600,"
	    "\"refresh_token\":\"rt-1\"}");
	advance(450 * SEC);
	answer_full(0, NULL, NULL, 7, 0);	/* could not connect */
	CHECK_I64("no immediate retry", posts, 2);
	CHECK_STATE(f, ACCOUNT_BACKOFF);
}

/* invalid_grant on a refresh: drop it (memory and disk), own grant now. */
static void
test_invalid_grant_falls_back_to_own_grant(void **state)
{
	struct fixture	*f = *state;
	char		*rt;

	start(f, PASSWORD);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600,"
	    "\"refresh_token\":\"rt-1\"}");
	advance(450 * SEC);
	answer(400, "{\"error\":\"invalid_grant\"}");
	CHECK_I64("the own grant at once", posts, 3);
	CHECK_STR("grant_type", form_value("grant_type"), "password");
	CHECK_STR("no refresh token sent", form_value("refresh_token"), "");
	rt = saved_refresh_token(f);
	CHECK_STR("the refused refresh token is gone from disk", rt, NULL);
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600,"
	    "\"refresh_token\":\"rt-2\"}");
	CHECK_STATE(f, ACCOUNT_FRESH);
	CHECK_I64("on_failure did not run", hook_runs[1], 0);
	CHECK_I64("on_refresh ran for each token", hook_runs[0], 2);
}

/* invalid_client on the own grant: failed, hook once, max_backoff. */
static void
test_refused_credentials_fail(void **state)
{
	struct fixture		*f = *state;
	struct account_view	 v;

	start(f, PASSWORD);
	answer(401, "{\"error\":\"invalid_client\","
	    "\"error_description\":\"bad secret\"}");
	CHECK_STATE(f, ACCOUNT_FAILED);
	v = view(f);
	assert_non_null(strstr(v.last_error, "invalid_client"));
	CHECK_I64("retried at max_backoff", v.next_refresh,
	    clock_wall_ms() + 8 * SEC);
	CHECK_I64("on_failure ran", hook_runs[1], 1);
	advance(8 * SEC);
	CHECK_I64("the retry", posts, 2);
	answer(401, "{\"error\":\"invalid_client\"}");
	CHECK_STATE(f, ACCOUNT_FAILED);
	CHECK_I64("on_failure once per episode", hook_runs[1], 1);
}

/* Refreshes fail until the token dies: expired, the files keep it. */
static void
test_expired(void **state)
{
	struct fixture		*f = *state;
	struct account_view	 v;

	start(f, CLIENT_CREDENTIALS);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":20}");
	while (clock_wall_ms() < T0 + 20 * SEC) {
		advance(view(f).next_refresh - clock_wall_ms());
		answer(503, "down");
	}
	CHECK_STATE(f, ACCOUNT_EXPIRED);
	v = view(f);
	assert_false(v.valid);
	CHECK_STR("the last token is still known", v.token->access_token,
	    "tok-1");
	check_token_file(f, "tok-1");
	advance(v.next_refresh - clock_wall_ms());
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":20}");
	CHECK_STATE(f, ACCOUNT_FRESH);
}

/*
 * Nothing expires silently: with 5xx answers past the token's life, the
 * expiry timer fires while the account backs off, on_failure runs once
 * with TOKEND_REASON=expired, and a new token re-arms it.
 */
static void
test_expiry_runs_on_failure(void **state)
{
	struct fixture	*f = *state;
	int		 i;

	start(f, PASSWORD);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":20}");
	/* retries never line up with the expiry: the timer alone does it */
	while (clock_wall_ms() < T0 + 20 * SEC) {
		CHECK_I64("no hook while the token lives", hook_runs[1], 0);
		advance(view(f).next_refresh - clock_wall_ms());
		answer(503, "down");
	}
	CHECK_I64("on_failure at expiry", hook_runs[1], 1);
	CHECK_STR("its reason", hook_reason, "expired");
	CHECK_STATE(f, ACCOUNT_EXPIRED);
	advance(8 * SEC);
	answer(503, "down");
	CHECK_I64("once per token", hook_runs[1], 1);
	advance(view(f).next_refresh - clock_wall_ms());
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":20}");
	CHECK_STR("on_refresh has no reason", hook_reason, "");
	for (i = 0; i < 5; i++) {	/* refreshes, each a success */
		advance(view(f).next_refresh - clock_wall_ms());
		answer(200, "{\"access_token\":\"tok-3\",\"expires_in\":20}");
	}
	CHECK_I64("no expiry while refreshes succeed", hook_runs[1], 1);
}

/* Refused credentials: on_failure with TOKEND_REASON=refused. */
static void
test_refused_reason(void **state)
{
	struct fixture	*f = *state;

	start(f, PASSWORD);
	answer(400, "{\"error\":\"invalid_grant\"}");
	CHECK_I64("on_failure ran", hook_runs[1], 1);
	CHECK_STR("its reason", hook_reason, "refused");
}

/*
 * An account that never had a token: refreshing while its request is in
 * flight, backoff while it waits (never expired); no next refresh shown
 * while a request is in flight.
 */
static void
test_states_without_a_token(void **state)
{
	struct fixture		*f = *state;
	struct account_view	 v;

	start(f, CLIENT_CREDENTIALS);
	v = view(f);
	CHECK_STATE(f, ACCOUNT_REFRESHING);
	assert_true(v.in_flight);
	CHECK_I64("no next refresh while in flight", v.next_refresh, 0);
	CHECK_I64("no success yet", v.last_success, 0);
	answer(503, "down");
	CHECK_STATE(f, ACCOUNT_BACKOFF);
	v = view(f);
	assert_false(v.in_flight);
	assert_true(v.next_refresh > clock_wall_ms());
	advance(v.next_refresh - clock_wall_ms());
	CHECK_STATE(f, ACCOUNT_REFRESHING);
	answer_full(0, NULL, NULL, 28, 1);	/* a timeout */
	CHECK_STATE(f, ACCOUNT_BACKOFF);
	advance(view(f).next_refresh - clock_wall_ms());
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	v = view(f);
	CHECK_STATE(f, ACCOUNT_FRESH);
	CHECK_I64("last success", v.last_success, clock_wall_ms());
	CHECK_I64("remaining", v.remaining_ms, 600 * SEC);
}

/*
 * The token's life counts on the boot clock: a wall clock set back two
 * hours after the token arrived neither lengthens it nor moves the
 * refresh; once the jump is seen, the wall times follow the clock.
 */
static void
test_boot_clock_life(void **state)
{
	struct fixture		*f = *state;
	struct account_view	 v;
	int64_t			 boot0 = fake_boot;

	fake_wall += 2 * 3600 * SEC;	/* the clock is 2 h ahead */
	start(f, CLIENT_CREDENTIALS);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	fake_wall -= 2 * 3600 * SEC;	/* and is set right */
	v = view(f);
	CHECK_I64("remaining from the boot clock", v.remaining_ms, 600 * SEC);
	account_clock_jumped(f->a);
	v = view(f);
	CHECK_I64("expires_at follows the clock", v.token->expires_at,
	    T0 + 600 * SEC);
	CHECK_I64("next refresh follows the clock", v.next_refresh,
	    T0 + 450 * SEC);
	advance(449 * SEC);
	CHECK_I64("no request before it is due", posts, 1);
	advance(1 * SEC);
	CHECK_I64("the refresh when due on the boot clock", posts, 2);
	CHECK_I64("at boot + 450 s", fake_boot - boot0, 450 * SEC);
	answer(503, "down");
	/* a wall clock set far ahead, not yet seen: life stays as it is */
	fake_wall += 3600 * SEC;
	v = view(f);
	assert_true(v.valid);
	CHECK_I64("remaining", v.remaining_ms, 150 * SEC);
	fake_wall -= 3600 * SEC;
	while (fake_boot - boot0 < 600 * SEC) {
		advance(view(f).next_refresh - clock_wall_ms());
		answer(503, "down");
	}
	CHECK_STATE(f, ACCOUNT_EXPIRED);
	assert_true(view(f).remaining_ms <= 0);
}

/* The drawn refresh time is saved with the token and kept at restart. */
static void
test_refresh_at_saved(void **state)
{
	struct fixture	*f = *state;
	/* jitter: a redraw would almost surely differ */
	const char	*conf = "[account]\ngrant = password\n"
			    "token_url = https://issuer.test/token\n"
			    "client_id = cid\nclient_secret = csecret\n"
			    "username = alice\npassword = pw\n"
			    "[refresh]\nmargin = 60s\nratio = 0.75\n"
			    "jitter = 0.5\n";
	int64_t		 due;

	start(f, conf);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":6000,"
	    "\"refresh_token\":\"rt-1\"}");
	due = view(f).next_refresh;
	account_free(f->a);
	f->a = NULL;
	advance(100 * SEC);
	rng_seed(4711);
	start(f, conf);
	CHECK_I64("no request at restart", posts, 1);
	CHECK_I64("the same refresh time", view(f).next_refresh, due);
	advance(due - clock_wall_ms() - 1);
	CHECK_I64("not before it", posts, 1);
	advance(1);
	CHECK_I64("at it", posts, 2);
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
}

/* A token file that cannot be written shows in file_error. */
static void
test_file_error_in_view(void **state)
{
	struct fixture		*f = *state;
	struct account_view	 v;
	char			*conf, *gone;

	gone = path_in(f->dir, "gone");
	xasprintf(&conf, "%s[file]\npath = %s/t\n", CLIENT_CREDENTIALS, gone);
	start(f, conf);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	v = view(f);
	assert_non_null(strstr(v.file_error, "cannot write"));
	CHECK_I64("file failures", v.file_failures, 1);
	assert_int_equal(mkdir(gone, 0700), 0);
	advance(2 * SEC);	/* the write retry */
	v = view(f);
	CHECK_STR("written again", v.file_error, "");
	CHECK_I64("file failures stay counted", v.file_failures, 1);
	free(conf);
	free(gone);
}

/* A reload of a failed account tries again at once, counters reset. */
static void
test_reload_of_failed_account(void **state)
{
	struct fixture	*f = *state;

	start(f, PASSWORD);
	answer(400, "{\"error\":\"invalid_grant\"}");	/* wrong password */
	CHECK_STATE(f, ACCOUNT_FAILED);
	account_replace_conf(f->a, conf_from(f, PASSWORD
	    "[access]\nusers = root\n"));
	CHECK_I64("a request at once", posts, 2);
	CHECK_STATE(f, ACCOUNT_REFRESHING);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
}

/* A reload of a healthy account keeps its token and its request. */
static void
test_reload_keeps_request_in_flight(void **state)
{
	struct fixture	*f = *state;

	start(f, CLIENT_CREDENTIALS);
	account_replace_conf(f->a, conf_from(f, CLIENT_CREDENTIALS
	    "[access]\nusers = root\n"));
	CHECK_I64("no second request", posts, 1);
	CHECK_I64("no cancel", cancels, 0);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
}

/* State folder unwritable: kept in memory, saved again once it can be. */
static void
test_persistence_retried(void **state)
{
	struct fixture	*f = *state;
	char		*rt, *later;

	/* a state folder that does not exist yet */
	later = path_in(f->dir, "later");
	f->env.state_dir = later;
	start(f, PASSWORD);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600,"
	    "\"refresh_token\":\"rt-1\"}");
	assert_non_null(strstr(view(f).last_error, "cannot save state"));
	CHECK_STATE(f, ACCOUNT_FRESH);
	check_token_file(f, "tok-1");
	assert_int_equal(mkdir(later, 0700), 0);
	advance(2 * SEC);		/* the first save retry */
	CHECK_STR("the error clears", view(f).last_error, "");
	free(f->state_dir);
	f->state_dir = later;		/* where saved_refresh_token looks */
	rt = saved_refresh_token(f);
	CHECK_STR("the refresh token reached disk", rt, "rt-1");
	free(rt);
	advance(view(f).next_refresh - clock_wall_ms());
	CHECK_STR("and is used", form_value("refresh_token"), "rt-1");
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
}

/*
 * A Retry-After in year 9999 is honoured for an hour at most (max_backoff
 * is 8 s here), and a reload of the unchanged account asks at once.
 */
static void
test_retry_after_far_future(void **state)
{
	struct fixture	*f = *state;

	start(f, CLIENT_CREDENTIALS);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	advance(450 * SEC);
	answer_full(429, "{\"error\":\"slow_down\"}",
	    "Fri, 31 Dec 9999 23:59:59 GMT", 0, 1);
	CHECK_STATE(f, ACCOUNT_BACKOFF);
	CHECK_I64("Retry-After capped at an hour", view(f).next_refresh,
	    clock_wall_ms() + 3600 * SEC);
	CHECK_I64("and so is the wait", view(f).not_before,
	    clock_wall_ms() + 3600 * SEC);
	account_reloaded(f->a);
	CHECK_I64("a reload asks at once", posts, 3);
	CHECK_I64("the wait is over", view(f).not_before, 0);
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
	account_reloaded(f->a);
	CHECK_I64("a reload of a healthy account asks nothing", posts, 3);
}

/* A reload of an unchanged failed account tries again at once. */
static void
test_reload_unchanged_failed_account(void **state)
{
	struct fixture	*f = *state;

	start(f, PASSWORD);
	answer(401, "{\"error\":\"invalid_client\"}");
	CHECK_STATE(f, ACCOUNT_FAILED);
	account_reloaded(f->a);
	CHECK_I64("asked again at once", posts, 2);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
}

/* Waiters hear the outcome once; a request is never doubled. */
static void
test_waiters_and_coalescing(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;
	int64_t		 at;

	start(f, CLIENT_CREDENTIALS);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	advance(30 * SEC);	/* min_interval */
	assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f, &cause, &at), 0);
	assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f, &cause, &at), 0);
	CHECK_I64("one request for two asks", posts, 2);
	CHECK_I64("nobody answered yet", f->waited, 0);
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
	CHECK_I64("both waiters answered", f->waited, 2);
	assert_true(f->waited_ok);
	advance(30 * SEC);
	assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f, &cause, &at), 0);
	answer(500, "no");
	CHECK_I64("a failure is an answer too", f->waited, 3);
	assert_false(f->waited_ok);
	assert_non_null(strstr(f->waited_error, "500"));
	/* a waiter cancelled before the outcome hears nothing */
	advance(view(f).next_refresh - clock_wall_ms());
	assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f, &cause, &at), 0);
	account_cancel_waiter(f->a, wait_cb, f);
	answer(200, "{\"access_token\":\"tok-3\",\"expires_in\":600}");
	CHECK_I64("no answer for a cancelled waiter", f->waited, 3);
}

/*
 * Refreshes that readers ask for cannot make the account hammer the
 * endpoint: not while failed, backing off or told to wait, not for a
 * token younger than min_interval, not for a min_valid no token meets.
 */
static void
test_asked_refreshes_guarded(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;
	int64_t		 at;
	int		 i;

	start(f, PASSWORD);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600}");
	/* a young token stands: no request, however often asked */
	for (i = 0; i < 100; i++)
		assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f,
		    &cause, &at), 1);
	CHECK_I64("no request for a young token", posts, 1);
	CHECK_I64("nobody waits", f->waited, 0);
	/* a min_valid longer than any token lives: refused, no request */
	advance(60 * SEC);
	assert_int_equal(account_refresh_now(f->a, 601 * SEC, wait_cb, f,
	    &cause, &at), -1);
	assert_non_null(strstr(cause, "valid that long"));
	free(cause);
	CHECK_I64("the next refresh is when to come back", at,
	    view(f).next_refresh);
	CHECK_I64("no request for an impossible min_valid", posts, 1);
	/* older than min_interval: one request, joined by every asker */
	for (i = 0; i < 100; i++)
		assert_int_equal(account_refresh_now(f->a, 500 * SEC, wait_cb,
		    f, &cause, &at), 0);
	CHECK_I64("one request for a hundred asks", posts, 2);
	answer(503, "busy");
	CHECK_I64("all hundred heard", f->waited, 100);
	/* backing off: refused with the time of the next attempt */
	for (i = 0; i < 100; i++) {
		assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f,
		    &cause, &at), -1);
		free(cause);
	}
	CHECK_I64("no request while backing off", posts, 2);
	CHECK_I64("retry_at is the backoff's", at, view(f).next_refresh);
	advance(view(f).next_refresh - clock_wall_ms());
	CHECK_I64("the backoff's own retry", posts, 3);
	/* refused credentials: failed; asking sends no password */
	answer(401, "{\"error\":\"invalid_client\"}");
	CHECK_STATE(f, ACCOUNT_FAILED);
	for (i = 0; i < 100; i++) {
		assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f,
		    &cause, &at), -1);
		assert_non_null(strstr(cause, "failed"));
		free(cause);
	}
	CHECK_I64("no password sent for the asking", posts, 3);
	CHECK_I64("the waiters of refused asks were never linked",
	    f->waited, 100);
}

/* grant = refresh_token and it is refused: failed, the token is kept. */
static void
test_refresh_token_grant_refused(void **state)
{
	struct fixture	*f = *state;
	char		*rtfile = put_secret(f, "rt", "rt-0"), *conf, *rt;

	xasprintf(&conf, "[account]\ngrant = refresh_token\n"
	    "token_url = https://issuer.test/token\nclient_id = cid\n"
	    "refresh_token_file = %s\n", rtfile);
	start(f, conf);
	CHECK_STR("refresh token", form_value("refresh_token"), "rt-0");
	answer(400, "{\"error\":\"invalid_grant\"}");
	CHECK_STATE(f, ACCOUNT_FAILED);
	assert_non_null(strstr(view(f).last_error, "refresh_token_file"));
	CHECK_I64("no second request", posts, 1);
	rt = saved_refresh_token(f);
	CHECK_STR("no refused token saved", rt, NULL);
	free(rt);
	free(conf);
	free(rtfile);
}

/* A saved valid token is resumed without a request. */
static void
test_restart_resumes_saved_token(void **state)
{
	struct fixture	*f = *state;

	start(f, PASSWORD);
	answer(200, "{\"access_token\":\"tok-1\",\"expires_in\":600,"
	    "\"refresh_token\":\"rt-1\"}");
	account_free(f->a);
	f->a = NULL;
	advance(100 * SEC);
	start(f, PASSWORD);
	CHECK_I64("no request at restart", posts, 1);
	CHECK_STATE(f, ACCOUNT_FRESH);
	CHECK_STR("the saved token", view(f).token->access_token, "tok-1");
	advance(view(f).next_refresh - clock_wall_ms());
	CHECK_STR("the saved refresh token is used", form_value(
	    "refresh_token"), "rt-1");
	answer(200, "{\"access_token\":\"tok-2\",\"expires_in\":600}");
}

/* Freeing an account with a request in flight cancels it, tells waiters. */
static void
test_free_with_request_in_flight(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;
	int64_t		 at;

	start(f, CLIENT_CREDENTIALS);
	assert_int_equal(account_refresh_now(f->a, -1, wait_cb, f, &cause, &at), 0);
	account_free(f->a);
	f->a = NULL;
	CHECK_I64("cancelled", cancels, 1);
	CHECK_I64("the waiter heard", f->waited, 1);
	CHECK_STR("why", f->waited_error, "the account was removed");
}

/* A static token: served at once, never refreshed. */
static void
test_static_token(void **state)
{
	struct fixture	*f = *state;
	char		*tokfile = put_secret(f, "static", "perm-token");
	char		*conf, *cause = NULL;
	int64_t		 at;

	xasprintf(&conf, "[account]\ngrant = static\ntoken_file = %s\n",
	    tokfile);
	start(f, conf);
	CHECK_I64("no request", posts, 0);
	CHECK_STATE(f, ACCOUNT_FRESH);
	assert_true(view(f).valid);
	CHECK_I64("no refresh planned", view(f).next_refresh, 0);
	assert_int_equal(account_refresh_now(f->a, -1, NULL, NULL, &cause, &at), -1);
	free(cause);
	check_token_file(f, "perm-token");
	free(conf);
	free(tokfile);
}

/* ---- login grants ---- */

#define DEVICE_CODE							\
	"[account]\ngrant = device_code\n"				\
	"token_url = https://issuer.test/token\n"			\
	"device_authorization_url = https://issuer.test/device\n"	\
	"revocation_url = https://issuer.test/revoke\n"			\
	"client_id = cid\n"						\
	"[hooks]\non_failure = /bin/on-failure\n"

/* A refresh token as a login leaves it, in the state file only. */
static void
logged_in(struct fixture *f, const char *rt)
{
	struct token	 t;

	memset(&t, 0, sizeof t);
	t.refresh_token = (char *)rt;
	if (store_save(f->state_dir, "acct", &t) != 0)
		fail_msg("cannot write the state file");
}

/* Never logged in: login, no request, on_failure once, not at reload. */
static void
test_login_never_logged_in(void **state)
{
	struct fixture	*f = *state;
	char		*cause;
	int64_t		 retry_at;

	start(f, DEVICE_CODE);
	CHECK_STATE(f, ACCOUNT_LOGIN);
	CHECK_I64("requests", posts, 0);
	CHECK_STR("last error", view(f).last_error,
	    "needs a login: run tokenctl login acct");
	assert_true(view(f).attempted);
	CHECK_I64("on_failure runs", hook_runs[1], 1);
	CHECK_STR("reason", hook_reason, "login");
	assert_int_equal(account_refresh_now(f->a, 0, wait_cb, f, &cause,
	    &retry_at), -1);
	CHECK_STR("refused", cause, "needs a login: run tokenctl login acct");
	free(cause);
	account_reloaded(f->a);
	advance(60 * SEC);
	CHECK_STATE(f, ACCOUNT_LOGIN);
	CHECK_I64("requests after a reload", posts, 0);
	CHECK_I64("on_failure once", hook_runs[1], 1);
}

/* A refused refresh token: dropped, login, and nothing more is sent. */
static void
test_login_refresh_token_refused(void **state)
{
	struct fixture	*f = *state;
	char		*rt;

	logged_in(f, "rt-human");
	start(f, DEVICE_CODE);
	CHECK_STR("refresh token", form_value("refresh_token"), "rt-human");
	answer(400, "{\"error\":\"invalid_grant\"}");
	CHECK_STATE(f, ACCOUNT_LOGIN);
	assert_non_null(strstr(view(f).last_error, "the refresh token was "
	    "refused"));
	rt = saved_refresh_token(f);
	CHECK_STR("the refused token is gone", rt, NULL);
	free(rt);
	CHECK_STR("reason", hook_reason, "login");
	advance(3600 * SEC);
	CHECK_I64("no loop", posts, 1);
}

/* A login's token: fresh, its refresh token saved, refreshed after. */
static void
test_login_succeeded(void **state)
{
	struct fixture	*f = *state;
	struct token	 t;
	char		*rt;

	start(f, DEVICE_CODE);
	memset(&t, 0, sizeof t);
	t.access_token = xstrdup("at-1");
	t.refresh_token = xstrdup("rt-1");
	t.token_type = xstrdup("Bearer");
	t.obtained_at = clock_wall_ms();
	t.expires_at = t.obtained_at + 3600 * SEC;
	account_login_succeeded(f->a, &t);
	CHECK_STATE(f, ACCOUNT_FRESH);
	rt = saved_refresh_token(f);
	CHECK_STR("saved", rt, "rt-1");
	free(rt);
	check_token_file(f, "at-1");
	advance(3000 * SEC);	/* past 0.75 of its life, not its end */
	CHECK_STR("refreshed with it", form_value("refresh_token"), "rt-1");
	answer(200, "{\"access_token\":\"at-2\",\"expires_in\":3600}");
	CHECK_STATE(f, ACCOUNT_FRESH);
}

/* A login while a refresh is out: the login's token wins, the refresh
   is dropped (its answer can never overwrite the new refresh token). */
static void
test_login_over_a_refresh_in_flight(void **state)
{
	struct fixture	*f = *state;
	struct token	 t;
	char		*rt;

	logged_in(f, "rt-old");
	start(f, DEVICE_CODE);
	assert_non_null(inflight);
	memset(&t, 0, sizeof t);
	t.access_token = xstrdup("at-login");
	t.refresh_token = xstrdup("rt-login");
	t.obtained_at = clock_wall_ms();
	t.expires_at = t.obtained_at + 3600 * SEC;
	account_login_succeeded(f->a, &t);
	CHECK_I64("the refresh dropped", cancels, 1);
	assert_null(inflight);
	CHECK_STATE(f, ACCOUNT_FRESH);
	rt = saved_refresh_token(f);
	CHECK_STR("the login's refresh token", rt, "rt-login");
	free(rt);
}

static int	 logout_done, logout_revoked;

static void
logout_cb(struct account *a, int revoked, const char *error, void *arg)
{
	(void)a;
	(void)error;
	(void)arg;
	logout_done++;
	logout_revoked = revoked;
}

/* Logout: forgotten at once, then the refresh and the access token. */
static void
test_logout(void **state)
{
	struct fixture	*f = *state;
	char		*cause, *rt, *path;

	logged_in(f, "rt-human");
	start(f, DEVICE_CODE);
	answer(200, "{\"access_token\":\"at-1\",\"expires_in\":3600,"
	    "\"refresh_token\":\"rt-2\"}");
	CHECK_STATE(f, ACCOUNT_FRESH);
	logout_done = 0;
	assert_int_equal(account_logout(f->a, logout_cb, NULL, &cause), 0);
	CHECK_STATE(f, ACCOUNT_LOGIN);
	rt = saved_refresh_token(f);
	CHECK_STR("forgotten on disk", rt, NULL);
	free(rt);
	path = path_in(f->dir, "acct.token");
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	assert_false(view(f).valid);
	CHECK_STR("to", inflight->url, "https://issuer.test/revoke");
	CHECK_STR("first", form_value("token_type_hint"), "refresh_token");
	CHECK_STR("token", form_value("token"), "rt-2");
	answer(200, "");
	CHECK_STR("then", form_value("token_type_hint"), "access_token");
	CHECK_STR("token", form_value("token"), "at-1");
	assert_int_equal(logout_done, 0);
	answer(503, "");
	CHECK_I64("answered", logout_done, 1);
	assert_false(logout_revoked);
	CHECK_STR("reason", hook_reason, "login");
}

#define DEVICE_CODE_POST						\
	"[account]\ngrant = device_code\n"				\
	"token_url = https://issuer.test/token\n"			\
	"device_authorization_url = https://issuer.test/device\n"	\
	"revocation_url = https://issuer.test/revoke\n"			\
	"client_id = cid\nclient_secret = s3cret\nclient_auth = post\n"

/* A reload during a logout: the access token's revocation, built after
   the old configuration is freed, still has the credentials. */
static void
test_logout_across_reload(void **state)
{
	struct fixture	*f = *state;
	char		*cause;

	logged_in(f, "rt-human");
	start(f, DEVICE_CODE_POST);
	answer(200, "{\"access_token\":\"at-1\",\"expires_in\":3600,"
	    "\"refresh_token\":\"rt-2\"}");
	logout_done = 0;
	assert_int_equal(account_logout(f->a, logout_cb, NULL, &cause), 0);
	CHECK_STR("first", form_value("token_type_hint"), "refresh_token");
	account_replace_conf(f->a, conf_from(f, DEVICE_CODE_POST
	    "[access]\nusers = root\n"));
	answer(200, "");
	CHECK_STR("then", form_value("token_type_hint"), "access_token");
	CHECK_STR("client_id", form_value("client_id"), "cid");
	CHECK_STR("client_secret", form_value("client_secret"), "s3cret");
	answer(200, "");
	CHECK_I64("answered", logout_done, 1);
	assert_true(logout_revoked);
}

/* ---- the table ---- */

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn)	cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_success_and_schedule),
		T(test_backoff_then_success),
		T(test_429_retry_after),
		T(test_retry_after_far_future),
		T(test_reload_unchanged_failed_account),
		T(test_unknown_outcome_retried_once),
		T(test_unknown_outcome_refresh_token_only),
		T(test_unsent_failure_is_not_retried_at_once),
		T(test_invalid_grant_falls_back_to_own_grant),
		T(test_refused_credentials_fail),
		T(test_expired),
		T(test_expiry_runs_on_failure),
		T(test_refused_reason),
		T(test_states_without_a_token),
		T(test_boot_clock_life),
		T(test_refresh_at_saved),
		T(test_file_error_in_view),
		T(test_reload_of_failed_account),
		T(test_reload_keeps_request_in_flight),
		T(test_persistence_retried),
		T(test_waiters_and_coalescing),
		T(test_asked_refreshes_guarded),
		T(test_refresh_token_grant_refused),
		T(test_restart_resumes_saved_token),
		T(test_free_with_request_in_flight),
		T(test_static_token),
		T(test_login_never_logged_in),
		T(test_login_refresh_token_refused),
		T(test_login_succeeded),
		T(test_login_over_a_refresh_in_flight),
		T(test_logout),
		T(test_logout_across_reload),
#undef T
	};

	log_init(LOG_LEVEL_ERROR, 0);
	return cmocka_run_group_tests_name("account", tests, NULL, NULL);
}
