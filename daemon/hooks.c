/*
 * on_refresh / on_failure programs: spawned without a shell, with
 * TOKEND_ACCOUNT, TOKEND_EXPIRES_AT and (for on_failure) TOKEND_REASON in
 * a small clean environment,
 * reaped from the event loop, killed when they outlive their time limit.
 * The loop never waits for them.
 */
#define _GNU_SOURCE
#include <sys/queue.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tokend.h"

#define HOOKS_TIME_LIMIT_S	30
#define HOOKS_MAX		64	/* running at once */

struct hook {
	pid_t			 pid;
	char			*account;
	char			*program;
	char		       **argv;		/* as it was started */
	char			*reason;	/* TOKEND_REASON; NULL: none */
	struct event		*timeout;
	int			 killed;
	char		       **again;		/* run once more when it exits */
	int64_t			 again_expires_at;
	LIST_ENTRY(hook)	 entry;
};

static struct event_base	*hooks_base;
static struct event		*hooks_sigchld;
static LIST_HEAD(, hook)	 hooks = LIST_HEAD_INITIALIZER(hooks);
static int			 hooks_running;

static void
hooks_forget(struct hook *h)
{
	LIST_REMOVE(h, entry);
	hooks_running--;
	event_free(h->timeout);
	free(h->account);
	free(h->program);
	strv_free(h->argv);
	free(h->reason);
	strv_free(h->again);
	free(h);
}

/* A hook exited: forget it, and run it once more if that was asked. */
static void
hooks_finish(struct hook *h)
{
	char	**again = h->again, *account = h->account;
	char	 *reason = h->reason;
	int64_t	  expires_at = h->again_expires_at;

	h->again = NULL;
	h->account = NULL;
	h->reason = NULL;
	hooks_forget(h);
	if (again != NULL)
		hooks_run(again, account, expires_at, reason);
	strv_free(again);
	free(account);
	free(reason);
}

static void
hooks_sigchld_cb(evutil_socket_t sig, short events, void *arg)
{
	struct hook	*h, *next;
	pid_t		 pid;
	int		 status;

	(void)sig;
	(void)events;
	(void)arg;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (h = LIST_FIRST(&hooks); h != NULL; h = next) {
			next = LIST_NEXT(h, entry);
			if (h->pid != pid)
				continue;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				log_account(LOG_LEVEL_DEBUG, h->account, "hook "
				    "%s exited 0", h->program);
			else if (WIFEXITED(status))
				log_account(LOG_LEVEL_WARNING, h->account,
				    "hook %s exited %d", h->program,
				    WEXITSTATUS(status));
			else
				log_account(LOG_LEVEL_WARNING, h->account,
				    "hook %s killed by signal %d%s", h->program,
				    WTERMSIG(status), h->killed ? " after its "
				    "time limit" : "");
			hooks_finish(h);
		}
	}
}

static void
hooks_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct hook	*h = arg;

	(void)fd;
	(void)events;
	h->killed = 1;
	kill(h->pid, SIGKILL);
}

void
hooks_init(struct event_base *base)
{
	hooks_base = base;
	hooks_sigchld = evsignal_new(base, SIGCHLD, hooks_sigchld_cb, NULL);
	event_add(hooks_sigchld, NULL);
}

void
hooks_shutdown(void)
{
	struct hook	*h;

	while ((h = LIST_FIRST(&hooks)) != NULL) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
		hooks_forget(h);
	}
	if (hooks_sigchld != NULL)
		event_free(hooks_sigchld);
	hooks_sigchld = NULL;
}

/* reason: TOKEND_REASON (expired, refused, login); NULL: none */
void
hooks_run(char **argv, const char *account, int64_t expires_at,
    const char *reason)
{
	posix_spawn_file_actions_t	 fa;
	posix_spawnattr_t		 attr;
	sigset_t			 none;
	struct timeval			 tv = { HOOKS_TIME_LIMIT_S, 0 };
	struct hook			*h;
	char				*env[5], *path_env;
	int				 i;
	pid_t				 pid;
	int				 rc;

	if (hooks_base == NULL)
		return;
	/*
	 * The same hook of the same account still runs: it runs once more
	 * when it exits, however often it was asked meanwhile, so refreshes
	 * can never pile hooks up and the last run sees the newest token.
	 * The same hook is the same command line with the same reason: an
	 * on_failure that runs the on_refresh program with other arguments
	 * is another hook, and never loses its arguments or its reason.
	 */
	LIST_FOREACH(h, &hooks, entry) {
		if (strcmp(h->account, account) != 0 ||
		    !strv_equal(h->argv, argv) ||
		    (h->reason == NULL) != (reason == NULL) ||
		    (reason != NULL && strcmp(h->reason, reason) != 0))
			continue;
		if (h->again == NULL) {
			h->again = strv_dup(argv);
			log_account(LOG_LEVEL_DEBUG, account, "hook %s still "
			    "runs; it runs again when it exits", argv[0]);
		}
		h->again_expires_at = expires_at;
		return;
	}
	if (hooks_running >= HOOKS_MAX) {
		log_account(LOG_LEVEL_WARNING, account, "hook %s not run: %d "
		    "hooks are still running", argv[0], hooks_running);
		return;
	}
	xasprintf(&env[0], "TOKEND_ACCOUNT=%s", account);
	xasprintf(&env[1], "TOKEND_EXPIRES_AT=%lld",
	    (long long)(expires_at / 1000));
	path_env = getenv("PATH");
	xasprintf(&env[2], "PATH=%s", path_env != NULL ? path_env :
	    "/usr/local/bin:/usr/bin:/bin");
	env[3] = NULL;
	if (reason != NULL)
		xasprintf(&env[3], "TOKEND_REASON=%s", reason);
	env[4] = NULL;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null",
	    O_RDONLY, 0);
	/*
	 * Nothing but stdio: libcurl opens its sockets (a keep-alive TLS
	 * connection to the token endpoint, its wakeup pair) without
	 * close-on-exec, and a hook must not hold or write into them.
	 */
	posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	{
		sigset_t	 def;

		sigemptyset(&def);
		sigaddset(&def, SIGPIPE);
		sigaddset(&def, SIGCHLD);
		sigaddset(&def, SIGHUP);
		sigaddset(&def, SIGTERM);
		sigaddset(&def, SIGINT);
		posix_spawnattr_setsigdefault(&attr, &def);
	}
	rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	for (i = 0; env[i] != NULL; i++)
		free(env[i]);
	if (rc != 0) {
		log_account(LOG_LEVEL_WARNING, account, "cannot run hook %s: "
		    "%s", argv[0], strerror(rc));
		return;
	}
	h = xcalloc(1, sizeof *h);
	h->pid = pid;
	h->account = xstrdup(account);
	h->program = xstrdup(argv[0]);
	h->argv = strv_dup(argv);
	h->reason = reason != NULL ? xstrdup(reason) : NULL;
	h->timeout = evtimer_new(hooks_base, hooks_timeout_cb, h);
	evtimer_add(h->timeout, &tv);
	LIST_INSERT_HEAD(&hooks, h, entry);
	hooks_running++;
	log_account(LOG_LEVEL_DEBUG, account, "hook %s started (pid %d)",
	    argv[0], (int)pid);
}
