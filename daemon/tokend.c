/*
 * tokend: options, configuration, signals, systemd notification and the
 * event loop. It never forks; systemd (or whoever starts it) supervises.
 */
#define _GNU_SOURCE
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "tokend.h"

static struct daemon_ctx	 ctx;
static int			 ready_sent;
static struct event		*ready_ev;

/*
 * READY=1 waits for every account's first attempt, but no longer than
 * this: a hanging endpoint times out per request, and a queue of them
 * behind max_requests_per_host would otherwise hold start-up for long.
 */
#define READY_DEADLINE		90	/* seconds */
static struct event		*status_ev;
static struct event		*watchdog_ev;

static void
usage(FILE *f)
{
	fprintf(f, "usage: tokend [-c FILE] [-A DIR] [--check] [-v] "
	    "[--version]\n");
}

static int
account_cmp(const void *a, const void *b)
{
	const struct account *const *x = a, *const *y = b;

	return strcmp(account_name(*x), account_name(*y));
}

static int
account_key_cmp(const void *key, const void *elem)
{
	const struct account *const *a = elem;

	return strcmp(key, account_name(*a));
}

struct account *
daemon_find_account(struct daemon_ctx *c, const char *name)
{
	struct account	**found;

	if (c->naccounts == 0)
		return NULL;
	found = bsearch(name, c->accounts, c->naccounts, sizeof *c->accounts,
	    account_key_cmp);
	return found != NULL ? *found : NULL;
}

static void
print_diag(const struct diag *d)
{
	size_t	 i;

	for (i = 0; i < d->nwarnings; i++)
		fprintf(stderr, "%s\n", d->warnings[i]);
	for (i = 0; i < d->nerrors; i++)
		fprintf(stderr, "%s\n", d->errors[i]);
}

static void
log_diag(const struct diag *d)
{
	size_t	 i;

	for (i = 0; i < d->nwarnings; i++)
		log_warnx("%s", d->warnings[i]);
	for (i = 0; i < d->nerrors; i++)
		log_account(LOG_LEVEL_ERROR, NULL, "%s", d->errors[i]);
}

/* ---- systemd ---- */

static void
status_update_cb(evutil_socket_t fd, short events, void *arg)
{
	size_t	 counts[5] = { 0 }, i;
	int64_t	 now = clock_wall_ms(), next = 0, n;
	char	 nextbuf[48] = "";

	(void)fd;
	(void)events;
	(void)arg;
	for (i = 0; i < ctx.naccounts; i++) {
		counts[account_state(ctx.accounts[i], now)]++;
		n = account_next_refresh(ctx.accounts[i]);
		if (n != 0 && (next == 0 || n < next))
			next = n;
	}
	if (next != 0) {
		memcpy(nextbuf, ", next refresh ", 15);
		format_rfc3339(next, nextbuf + 15, sizeof nextbuf - 15);
	}
	sd_notifyf(0, "STATUS=%zu accounts: %zu fresh, %zu refreshing, "
	    "%zu backoff, %zu expired, %zu failed%s", ctx.naccounts,
	    counts[ACCOUNT_FRESH], counts[ACCOUNT_REFRESHING],
	    counts[ACCOUNT_BACKOFF], counts[ACCOUNT_EXPIRED],
	    counts[ACCOUNT_FAILED], nextbuf);
}

static void
daemon_send_ready(const char *how)
{
	ready_sent = 1;
	if (ready_ev != NULL)
		evtimer_del(ready_ev);
	log_info("ready: %zu accounts%s", ctx.naccounts, how);
	sd_notify(0, "READY=1");
}

/*
 * Every account has had its first attempt. An account never goes back to
 * not having had one, so a cursor past those that have keeps this linear
 * over a whole start-up, not quadratic in the number of accounts.
 */
static size_t	 ready_cursor;

static void
daemon_check_ready(void)
{
	if (ready_sent)
		return;
	while (ready_cursor < ctx.naccounts &&
	    account_has_attempted(ctx.accounts[ready_cursor]))
		ready_cursor++;
	if (ready_cursor == ctx.naccounts)
		daemon_send_ready("");
}

static void
ready_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	size_t	 i, waiting = 0;
	char	 how[80];

	(void)fd;
	(void)events;
	(void)arg;
	if (ready_sent)
		return;
	for (i = 0; i < ctx.naccounts; i++)
		if (!account_has_attempted(ctx.accounts[i]))
			waiting++;
	snprintf(how, sizeof how, " (%zu still waiting for a first answer "
	    "after %d s)", waiting, READY_DEADLINE);
	daemon_send_ready(how);
}

/* An account changed state: refresh STATUS= soon, once for many. */
void
daemon_account_changed(struct daemon_ctx *c, struct account *a)
{
	struct timeval	 tv = { 0, 250000 };

	(void)c;
	(void)a;
	if (status_ev != NULL && !evtimer_pending(status_ev, NULL))
		evtimer_add(status_ev, &tv);
	daemon_check_ready();
}

static void
watchdog_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

static void
watchdog_init(void)
{
	struct timeval	 tv;
	uint64_t	 usec;

	if (sd_watchdog_enabled(0, &usec) <= 0)
		return;
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	watchdog_ev = event_new(ctx.base, -1, EV_PERSIST, watchdog_cb, NULL);
	event_add(watchdog_ev, &tv);
	sd_notify(0, "WATCHDOG=1");
}

/* ---- accounts ---- */

static void
prepare_dirs(const struct config *cfg)
{
	size_t	 i, j;
	char	*dir, *slash;

	if (mkdir(cfg->state_dir, 0700) == -1 && errno != EEXIST)
		log_warn("cannot create state folder %s", cfg->state_dir);
	file_remove_stale_temps(cfg->state_dir);
	for (i = 0; i < cfg->naccounts; i++)
		for (j = 0; j < cfg->accounts[i]->nsinks; j++) {
			dir = xstrdup(cfg->accounts[i]->sinks[j].path);
			if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
				*slash = '\0';
				file_remove_stale_temps(dir);
			}
			free(dir);
		}
}

/* Give each account its conf; the config keeps only global settings. */
static void
adopt_accounts(struct config *cfg)
{
	free(cfg->accounts);
	cfg->accounts = NULL;
	cfg->naccounts = 0;
}

static void
clock_jumped_cb(void *arg)
{
	size_t	 i;

	(void)arg;
	for (i = 0; i < ctx.naccounts; i++)
		account_clock_jumped(ctx.accounts[i]);
}

static uint64_t
monotonic_usec(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * Re-read the configuration. Unchanged accounts keep everything; changed
 * ones keep their tokens and take the new settings; new ones start;
 * removed ones stop. A broken configuration changes nothing.
 */
int
daemon_reload(struct daemon_ctx *c, char **cause)
{
	struct diag		 d;
	struct config		*cfg;
	struct account	       **next, **start, *a;
	struct account_conf	*ac, **replace;
	size_t			 i, j, n, added = 0, changed = 0, removed = 0;
	int			 kept;

	memset(&d, 0, sizeof d);
	cfg = config_load(c->config_file, c->accounts_dir_arg, &d);
	log_diag(&d);
	if (cfg == NULL) {
		xasprintf(cause, "the new configuration has %zu error%s; the "
		    "running one stays", d.nerrors, d.nerrors == 1 ? "" : "s");
		log_warnx("reload failed: %s", *cause);
		diag_clear(&d);
		return -1;
	}
	diag_clear(&d);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)monotonic_usec());
	prepare_dirs(cfg);	/* while cfg still lists every account */

	n = cfg->naccounts;
	next = xcalloc(n ? n : 1, sizeof *next);
	start = xcalloc(n ? n : 1, sizeof *start);
	replace = xcalloc(n ? n : 1, sizeof *replace);
	for (i = 0; i < n; i++) {
		ac = cfg->accounts[i];
		a = daemon_find_account(c, ac->name);
		/* becoming or ceasing to be static starts over */
		if (a != NULL && ((account_conf(a)->grant == GRANT_STATIC) !=
		    (ac->grant == GRANT_STATIC)))
			a = NULL;
		if (a == NULL) {
			next[i] = start[i] = account_new(c, ac);
			added++;
		} else if (config_account_equal(account_conf(a), ac)) {
			config_account_free(ac);
			next[i] = a;
		} else {
			next[i] = a;
			replace[i] = ac;
			changed++;
		}
	}
	for (i = 0; i < c->naccounts; i++) {
		for (j = 0, kept = 0; j < n && !kept; j++)
			kept = next[j] == c->accounts[i];
		if (!kept) {
			log_account(LOG_LEVEL_INFO, account_name(c->accounts[i]),
			    "removed from the configuration");
			account_free(c->accounts[i]);
			removed++;
		}
	}
	free(c->accounts);
	c->accounts = next;
	c->naccounts = n;
	qsort(c->accounts, c->naccounts, sizeof *c->accounts, account_cmp);
	ready_cursor = 0;	/* the array changed */

	if (strcmp(cfg->socket_path, c->config->socket_path) != 0)
		log_warnx("the socket moves from %s to %s only on restart",
		    c->config->socket_path, cfg->socket_path);
	log_set_level(c->verbose ? LOG_LEVEL_DEBUG : cfg->log_level);
	http_set_limits(c->http, cfg->max_requests, cfg->max_requests_per_host);
	adopt_accounts(cfg);
	config_free(c->config);
	c->config = cfg;

	for (i = 0; i < n; i++) {
		if (replace[i] != NULL)
			account_replace_conf(next[i], replace[i]);
		else if (start[i] != NULL)
			account_start(start[i]);
	}
	free(start);
	free(replace);
	log_info("reloaded: %zu accounts (%zu added, %zu changed, %zu "
	    "removed)", n, added, changed, removed);
	sd_notify(0, "READY=1");
	daemon_account_changed(c, NULL);
	return 0;
}

static void
sighup_cb(evutil_socket_t sig, short events, void *arg)
{
	char	*cause = NULL;

	(void)sig;
	(void)events;
	(void)arg;
	log_info("SIGHUP: reloading the configuration");
	if (daemon_reload(&ctx, &cause) != 0)
		free(cause);
}

static void
sigterm_cb(evutil_socket_t sig, short events, void *arg)
{
	(void)events;
	(void)arg;
	log_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	sd_notify(0, "STOPPING=1");
	event_base_loopbreak(ctx.base);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'n' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct event	*ev_hup, *ev_term, *ev_int;
	struct diag	 d;
	struct config	*cfg;
	const char	*file = NULL, *accounts_dir = NULL;
	size_t		 i;
	int		 ch, check = 0, verbose = 0;

	while ((ch = getopt_long(argc, argv, "c:A:nvVh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'A':
			accounts_dir = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'V':
			printf("tokend %s\n", TOKEND_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_init(verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, !check);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
	if (!(curl_version_info(CURLVERSION_NOW)->features &
	    CURL_VERSION_ASYNCHDNS))
		log_warnx("libcurl resolves names synchronously; a slow DNS "
		    "server can stall every account");

	memset(&d, 0, sizeof d);
	cfg = config_load(file, accounts_dir, &d);
	if (check) {
		print_diag(&d);
		if (cfg != NULL)
			printf("%s: %zu account%s OK\n", cfg->file != NULL ?
			    cfg->file : "(defaults)", cfg->naccounts,
			    cfg->naccounts == 1 ? "" : "s");
		diag_clear(&d);
		config_free(cfg);
		curl_global_cleanup();
		return cfg != NULL ? 0 : 1;
	}
	if (cfg == NULL) {
		log_diag(&d);
		diag_clear(&d);
		fatalx("configuration has errors; nothing started");
	}
	log_diag(&d);
	diag_clear(&d);
	if (!verbose)
		log_set_level(cfg->log_level);

	signal(SIGPIPE, SIG_IGN);
	rng_seed(0);
	prepare_dirs(cfg);

	memset(&ctx, 0, sizeof ctx);
	ctx.config = cfg;
	ctx.config_file = file;
	ctx.accounts_dir_arg = accounts_dir;
	ctx.uid = geteuid();
	ctx.verbose = verbose;
	if ((ctx.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (timer_init(ctx.base, clock_jumped_cb, NULL) != 0)
		fatal("timerfd");
	ctx.http = http_new(ctx.base, cfg->max_requests,
	    cfg->max_requests_per_host);
	hooks_init(ctx.base);
	status_ev = evtimer_new(ctx.base, status_update_cb, NULL);

	ev_hup = evsignal_new(ctx.base, SIGHUP, sighup_cb, NULL);
	ev_term = evsignal_new(ctx.base, SIGTERM, sigterm_cb, NULL);
	ev_int = evsignal_new(ctx.base, SIGINT, sigterm_cb, NULL);
	event_add(ev_hup, NULL);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);

	if (control_init(&ctx, cfg->socket_path) != 0)
		fatalx("cannot serve the control socket");

	ctx.naccounts = cfg->naccounts;
	ctx.accounts = xcalloc(ctx.naccounts ? ctx.naccounts : 1,
	    sizeof *ctx.accounts);
	for (i = 0; i < cfg->naccounts; i++)
		ctx.accounts[i] = account_new(&ctx, cfg->accounts[i]);
	qsort(ctx.accounts, ctx.naccounts, sizeof *ctx.accounts, account_cmp);
	adopt_accounts(cfg);
	log_info("tokend %s starting: %zu accounts", TOKEND_VERSION,
	    ctx.naccounts);
	if (ctx.naccounts == 0)
		log_warnx("no accounts in %s", cfg->accounts_dir);
	for (i = 0; i < ctx.naccounts; i++)
		account_start(ctx.accounts[i]);
	ready_ev = evtimer_new(ctx.base, ready_deadline_cb, NULL);
	{
		struct timeval	 tv = { READY_DEADLINE, 0 };

		evtimer_add(ready_ev, &tv);
	}
	daemon_check_ready();
	watchdog_init();

	event_base_dispatch(ctx.base);

	for (i = 0; i < ctx.naccounts; i++)
		account_free(ctx.accounts[i]);
	free(ctx.accounts);
	control_shutdown();
	hooks_shutdown();
	http_free(ctx.http);
	timer_shutdown();
	event_free(ev_hup);
	event_free(ev_term);
	event_free(ev_int);
	event_free(status_ev);
	event_free(ready_ev);
	if (watchdog_ev != NULL)
		event_free(watchdog_ev);
	event_base_free(ctx.base);
	config_free(ctx.config);
	curl_global_cleanup();
	log_info("stopped");
	return 0;
}
