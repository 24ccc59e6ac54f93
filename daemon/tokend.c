/*
 * tokend: options, configuration, signals, systemd notification and the
 * event loop. It never forks; systemd (or whoever starts it) supervises.
 */
#define _GNU_SOURCE
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
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

/*
 * READY=1 waits for every account's first attempt, but no longer than
 * this: a hanging endpoint times out per request, and a queue of them
 * behind max_requests_per_host would otherwise hold start-up for long.
 */
#define READY_DEADLINE_S	90

/* The daemon's own state: what main() made, for the callbacks. */
static struct event_base	*tokend_base;
static struct http		*tokend_http;
static struct registry		*tokend_registry;
static struct fleet		*tokend_fleet;
static struct fleet_conf	*tokend_fleet_conf;
static struct config		*tokend_config;	/* global settings only */
static const char		*tokend_config_file;
static const char		*tokend_accounts_dir;	/* -A */
static int			 tokend_verbose;
static int			 tokend_ready_sent;
static struct event		*tokend_ready_ev;
static struct event		*tokend_status_ev;
static struct event		*tokend_watchdog_ev;

static void
tokend_usage(FILE *f)
{
	fprintf(f, "usage: tokend [-c FILE] [-A DIR] [--check] [-v] "
	    "[--version]\n");
}

static void
tokend_print_diag(const struct diag *d)
{
	size_t	 i;

	for (i = 0; i < d->nwarnings; i++)
		fprintf(stderr, "%s\n", d->warnings[i]);
	for (i = 0; i < d->nerrors; i++)
		fprintf(stderr, "%s\n", d->errors[i]);
}

static void
tokend_log_diag(const struct diag *d)
{
	size_t	 i;

	for (i = 0; i < d->nwarnings; i++)
		log_warnx("%s", d->warnings[i]);
	for (i = 0; i < d->nerrors; i++)
		log_account(LOG_LEVEL_ERROR, NULL, "%s", d->errors[i]);
}

/* ---- systemd ---- */

static void
tokend_status_cb(evutil_socket_t fd, short events, void *arg)
{
	struct account_view	 v;
	size_t			 counts[ACCOUNT_STATE_COUNT] = { 0 }, i, n;
	int64_t			 now = clock_wall_ms(), next = 0;
	char			 nextbuf[48] = "";

	(void)fd;
	(void)events;
	(void)arg;
	n = registry_count(tokend_registry);
	for (i = 0; i < n; i++) {
		account_view(registry_get(tokend_registry, i), now, &v);
		counts[v.state]++;
		if (v.next_refresh != 0 && (next == 0 || v.next_refresh < next))
			next = v.next_refresh;
	}
	if (next != 0) {
		memcpy(nextbuf, ", next refresh ", 15);
		format_rfc3339(next, nextbuf + 15, sizeof nextbuf - 15);
	}
	sd_notifyf(0, "STATUS=%zu accounts: %zu fresh, %zu refreshing, "
	    "%zu backoff, %zu expired, %zu failed, %zu login%s", n,
	    counts[ACCOUNT_FRESH], counts[ACCOUNT_REFRESHING],
	    counts[ACCOUNT_BACKOFF], counts[ACCOUNT_EXPIRED],
	    counts[ACCOUNT_FAILED], counts[ACCOUNT_LOGIN], nextbuf);
}

static void
tokend_send_ready(const char *how)
{
	tokend_ready_sent = 1;
	if (tokend_ready_ev != NULL)
		evtimer_del(tokend_ready_ev);
	log_info("ready: %zu accounts%s", registry_count(tokend_registry),
	    how);
	sd_notify(0, "READY=1");
}

static void
tokend_ready_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	struct account_view	 v;
	size_t			 i, waiting = 0;
	int64_t			 now = clock_wall_ms();
	char			 how[80];

	(void)fd;
	(void)events;
	(void)arg;
	if (tokend_ready_sent)
		return;
	for (i = 0; i < registry_count(tokend_registry); i++) {
		account_view(registry_get(tokend_registry, i), now, &v);
		if (!v.attempted)
			waiting++;
	}
	snprintf(how, sizeof how, " (%zu still waiting for a first answer "
	    "after %d s)", waiting, READY_DEADLINE_S);
	tokend_send_ready(how);
}

/* Something changed: refresh STATUS= soon, once for many; READY=1. */
static void
tokend_changed_cb(void *arg)
{
	struct timeval	 tv = { 0, 250000 };

	(void)arg;
	if (tokend_status_ev != NULL &&
	    !evtimer_pending(tokend_status_ev, NULL))
		evtimer_add(tokend_status_ev, &tv);
	if (!tokend_ready_sent && tokend_registry != NULL &&
	    registry_all_attempted(tokend_registry))
		tokend_send_ready("");
}

static void
tokend_watchdog_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

static void
tokend_watchdog_init(void)
{
	struct timeval	 tv;
	uint64_t	 usec;

	if (sd_watchdog_enabled(0, &usec) <= 0)
		return;
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	tokend_watchdog_ev = event_new(tokend_base, -1, EV_PERSIST,
	    tokend_watchdog_cb, NULL);
	if (tokend_watchdog_ev == NULL ||
	    event_add(tokend_watchdog_ev, &tv) != 0)
		fatalx("cannot arm the watchdog timer");
	sd_notify(0, "WATCHDOG=1");
}

/* ---- the state folder ---- */

#define STATE_LOCK_FILE	".lock"

static int	 tokend_lock_fd = -1;	/* held for the process's life */

/*
 * One daemon per state folder: two would use, and so kill, each other's
 * rotating refresh tokens. flock(2) on STATE_DIR/.lock, which the kernel
 * drops when the process ends however it ends. The descriptor kept is
 * read-only, so the folder can still be remounted read-only under a
 * running daemon; the file holds the holder's pid, for the message.
 *
 * The lock's descriptor, or -1 when there is none to take (a folder
 * tokend cannot write is not fatal: state is kept in memory and saving
 * retried, nor then is a lock it cannot take); -2 with *cause when
 * another process holds it.
 */
static int
tokend_lock_take(const char *state_dir, char **cause)
{
	char	*path, pid[24];
	ssize_t	 n;
	int	 fd, wfd;

	*cause = NULL;
	(void)mkdir(state_dir, 0700);	/* tokend_prepare_dirs says why not */
	xasprintf(&path, "%s/" STATE_LOCK_FILE, state_dir);
	if ((fd = open(path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0600)) == -1) {
		log_warn("cannot open %s; a second tokend on this state "
		    "folder would not be refused", path);
		free(path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK) {
			log_warn("cannot lock %s; a second tokend on this "
			    "state folder would not be refused", path);
			close(fd);
			free(path);
			return -1;
		}
		n = pread(fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strspn(pid, "0123456789")] = '\0';
		xasprintf(cause, "another tokend%s%s%s uses the state folder "
		    "%s; only one may, or they would spend each other's "
		    "refresh tokens", pid[0] != '\0' ? " (pid " : "", pid,
		    pid[0] != '\0' ? ")" : "", state_dir);
		close(fd);
		free(path);
		return -2;
	}
	if ((wfd = open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC)) !=
	    -1) {
		dprintf(wfd, "%ld\n", (long)getpid());
		close(wfd);
	}
	free(path);
	return fd;
}

static void
tokend_lock_state(const char *state_dir)
{
	char	*cause;

	if ((tokend_lock_fd = tokend_lock_take(state_dir, &cause)) == -2)
		fatalx("%s", cause);
}

/* Whether the lock held is state_dir's (by another name, maybe). */
static int
tokend_lock_is(const char *state_dir)
{
	struct stat	 held, st;
	char		*path;
	int		 rc;

	if (tokend_lock_fd < 0 || fstat(tokend_lock_fd, &held) == -1)
		return 0;
	xasprintf(&path, "%s/" STATE_LOCK_FILE, state_dir);
	rc = lstat(path, &st) == 0 && st.st_dev == held.st_dev &&
	    st.st_ino == held.st_ino;
	free(path);
	return rc;
}

/*
 * A reload that moves state_dir moves the lock with it, or is refused
 * when another tokend holds the new folder's. 0, or -1 with *cause.
 */
static int
tokend_lock_move(const char *state_dir, char **cause)
{
	int	 fd;

	if (tokend_lock_is(state_dir))
		return 0;
	if ((fd = tokend_lock_take(state_dir, cause)) == -2)
		return -1;
	if (tokend_lock_fd >= 0)
		close(tokend_lock_fd);
	tokend_lock_fd = fd;
	return 0;
}

/* ---- accounts ---- */

static void
tokend_prepare_dirs(const struct config *cfg)
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

static void
tokend_clock_jumped_cb(void *arg)
{
	(void)arg;
	registry_clock_jumped(tokend_registry);
}

static uint64_t
tokend_monotonic_usec(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * Re-read the configuration and let the registry match it. A broken
 * configuration changes nothing.
 */
static int
tokend_reload(struct diag *d, char **cause)
{
	struct registry_diff	 diff;
	struct config		*cfg;

	cfg = config_load(tokend_config_file, tokend_accounts_dir, d);
	tokend_log_diag(d);
	if (cfg == NULL) {
		xasprintf(cause, "the new configuration has %zu error%s; the "
		    "running one stays", d->nerrors, d->nerrors == 1 ? "" : "s");
		log_warnx("reload failed: %s", *cause);
		return -1;
	}
	if (tokend_lock_move(cfg->state_dir, cause) != 0) {
		log_warnx("reload failed: %s; the running configuration "
		    "stays", *cause);
		config_free(cfg);
		return -1;
	}
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)tokend_monotonic_usec());
	tokend_prepare_dirs(cfg);	/* while cfg still lists every account */

	if (!config_fleet_equal(cfg->fleet, tokend_fleet_conf))
		log_warnx("[fleet] changes take effect only on restart");
	if (strcmp(cfg->socket_path, tokend_config->socket_path) != 0)
		log_warnx("the socket moves from %s to %s only on restart",
		    tokend_config->socket_path, cfg->socket_path);
	log_set_level(tokend_verbose ? LOG_LEVEL_DEBUG : cfg->log_level);
	http_set_limits(tokend_http, cfg->max_requests,
	    cfg->max_requests_per_host);
	registry_apply(tokend_registry, cfg, &diff);
	login_reloaded();
	config_free(tokend_config);
	tokend_config = cfg;
	log_info("reloaded: %zu accounts (%zu added, %zu changed, %zu "
	    "removed)", registry_count(tokend_registry), diff.added,
	    diff.changed, diff.removed);
	sd_notify(0, "READY=1");
	return 0;
}

static int
tokend_reload_cb(struct diag *d, char **cause, void *arg)
{
	(void)arg;
	return tokend_reload(d, cause);
}

static void
tokend_sighup_cb(evutil_socket_t sig, short events, void *arg)
{
	struct diag	 d;
	char		*cause = NULL;

	(void)sig;
	(void)events;
	(void)arg;
	log_info("SIGHUP: reloading the configuration");
	memset(&d, 0, sizeof d);
	if (tokend_reload(&d, &cause) != 0)
		free(cause);
	diag_clear(&d);
}

static void
tokend_released_cb(void *arg)
{
	(void)arg;
	event_base_loopbreak(tokend_base);
}

static void
tokend_sigterm_cb(evutil_socket_t sig, short events, void *arg)
{
	(void)events;
	(void)arg;
	log_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	sd_notify(0, "STOPPING=1");
	/* the fleet takes over at once if the leases are handed back */
	if (tokend_fleet == NULL || fleet_shutdown(tokend_fleet,
	    tokend_released_cb, NULL) == 0)
		event_base_loopbreak(tokend_base);
}

/* --check: print every problem; 0 when the configuration is valid. */
static int
tokend_check(struct config *cfg, struct diag *d)
{
	tokend_print_diag(d);
	if (cfg != NULL)
		printf("%s: %zu account%s OK\n", cfg->file != NULL ? cfg->file :
		    "(defaults)", cfg->naccounts, cfg->naccounts == 1 ? "" : "s");
	diag_clear(d);
	config_free(cfg);
	curl_global_cleanup();
	return cfg != NULL ? 0 : 1;
}

static struct event	*tokend_signal_evs[3];

/* The loop, the HTTP client, the socket and the accounts, started. */
static void
tokend_start(struct config *cfg)
{
	static const int	 sigs[] = { SIGHUP, SIGTERM, SIGINT };
	struct api_env		 api_env;
	struct login_env	 login_env;
	struct registry_diff	 diff;
	struct timeval		 ready_tv = { READY_DEADLINE_S, 0 };
	size_t			 i;

	signal(SIGPIPE, SIG_IGN);
	rng_seed(0);
	/* before anything in the folder or the socket is touched */
	tokend_lock_state(cfg->state_dir);
	tokend_prepare_dirs(cfg);
	tokend_config = cfg;
	if ((tokend_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (timer_init(tokend_base, tokend_clock_jumped_cb, NULL) != 0)
		fatal("timerfd");
	tokend_http = http_new(tokend_base, cfg->max_requests,
	    cfg->max_requests_per_host);
	hooks_init(tokend_base);
	if ((tokend_status_ev = evtimer_new(tokend_base, tokend_status_cb,
	    NULL)) == NULL)
		fatalx("event_new failed");
	for (i = 0; i < 3; i++)
		if ((tokend_signal_evs[i] = evsignal_new(tokend_base, sigs[i],
		    sigs[i] == SIGHUP ? tokend_sighup_cb : tokend_sigterm_cb,
		    NULL)) == NULL || event_add(tokend_signal_evs[i], NULL) != 0)
			fatalx("cannot watch signals");

	/* the fleet keeps the [fleet] it started with: a reload cannot
	   change it */
	if (cfg->fleet != NULL) {
		tokend_fleet_conf = cfg->fleet;
		cfg->fleet = NULL;
		tokend_fleet = fleet_new(tokend_base, tokend_fleet_conf);
	}
	tokend_registry = registry_new(tokend_http, tokend_fleet,
	    tokend_changed_cb, NULL);
	memset(&api_env, 0, sizeof api_env);
	api_env.base = tokend_base;
	api_env.registry = tokend_registry;
	api_env.http = tokend_http;
	api_env.fleet = tokend_fleet;
	api_env.reload = tokend_reload_cb;
	api_init(&api_env);
	memset(&login_env, 0, sizeof login_env);
	login_env.base = tokend_base;
	login_env.registry = tokend_registry;
	login_env.http = tokend_http;
	login_init(&login_env);
	if (control_init(tokend_base, cfg->socket_path, api_handle, NULL) != 0)
		fatalx("cannot serve the control socket");

	log_info("tokend %s starting: %zu accounts", TOKEND_VERSION,
	    cfg->naccounts);
	if (cfg->naccounts == 0)
		log_warnx("no accounts in %s", cfg->accounts_dir);
	if ((tokend_ready_ev = evtimer_new(tokend_base,
	    tokend_ready_deadline_cb, NULL)) == NULL ||
	    evtimer_add(tokend_ready_ev, &ready_tv) != 0)
		fatalx("event_new failed");
	/* the accounts start here; READY=1 follows their first attempts */
	registry_apply(tokend_registry, cfg, &diff);
	tokend_watchdog_init();
}

/* Everything tokend_start() made, freed: a clean exit leaks nothing. */
static void
tokend_stop(void)
{
	size_t	 i;

	/* logins tell their callers first: those are api answers */
	login_shutdown();
	redirect_shutdown();
	api_shutdown();
	registry_free(tokend_registry);
	fleet_free(tokend_fleet);
	config_fleet_free(tokend_fleet_conf);
	control_shutdown();
	hooks_shutdown();
	http_free(tokend_http);
	timer_shutdown();
	for (i = 0; i < 3; i++)
		event_free(tokend_signal_evs[i]);
	event_free(tokend_status_ev);
	event_free(tokend_ready_ev);
	if (tokend_watchdog_ev != NULL)
		event_free(tokend_watchdog_ev);
	event_base_free(tokend_base);
	config_free(tokend_config);
	curl_global_cleanup();
	if (tokend_lock_fd != -1)
		close(tokend_lock_fd);
}

/*
 * Before anything holds a secret: no core dump (it would hold the client
 * secrets, passwords and tokens), no ptrace or /proc/PID/mem by the same
 * user, and no TLS key log (SSLKEYLOGFILE makes libcurl write the session
 * secrets to a file readable by others).
 */
static void
tokend_harden(void)
{
	struct rlimit	 none = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &none) == -1)
		log_warn("setrlimit RLIMIT_CORE");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn("prctl PR_SET_DUMPABLE");
	unsetenv("SSLKEYLOGFILE");
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
	struct diag	 d;
	struct config	*cfg;
	int		 ch, check = 0;

	while ((ch = getopt_long(argc, argv, "c:A:nvVh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'c':
			tokend_config_file = optarg;
			break;
		case 'A':
			tokend_accounts_dir = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'v':
			tokend_verbose = 1;
			break;
		case 'V':
			printf("tokend %s\n", TOKEND_VERSION);
			return 0;
		case 'h':
			tokend_usage(stdout);
			return 0;
		default:
			tokend_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		tokend_usage(stderr);
		return 2;
	}
	log_init(tokend_verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, !check);
	tokend_harden();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
	if (!(curl_version_info(CURLVERSION_NOW)->features &
	    CURL_VERSION_ASYNCHDNS))
		log_warnx("libcurl resolves names synchronously; a slow DNS "
		    "server can stall every account");

	memset(&d, 0, sizeof d);
	cfg = config_load(tokend_config_file, tokend_accounts_dir, &d);
	if (check)
		return tokend_check(cfg, &d);
	tokend_log_diag(&d);
	diag_clear(&d);
	if (cfg == NULL)
		fatalx("configuration has errors; nothing started");
	if (!tokend_verbose)
		log_set_level(cfg->log_level);

	tokend_start(cfg);
	event_base_dispatch(tokend_base);
	tokend_stop();
	log_info("stopped");
	return 0;
}
