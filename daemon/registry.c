/*
 * The set of accounts, sorted by name: lookup, iteration, the reload diff
 * and the READY cursor. The registry owns its accounts and the
 * environment they share, and tells its owner of every change through
 * one callback.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

struct registry {
	struct account_env	 env;		/* shared by every account */
	char			*state_dir;	/* env.state_dir points here */
	struct account	       **accounts;	/* sorted by name */
	size_t			 naccounts;
	size_t			 ready_cursor;	/* accounts before it have had
						   their first attempt */
	void			(*changed)(void *);
	void			*arg;
};

static void
registry_account_changed_cb(struct account *a, void *arg)
{
	struct registry	*r = arg;

	(void)a;
	if (r->changed != NULL)
		r->changed(r->arg);
}

struct registry *
registry_new(struct http *http, struct fleet *fleet, void (*changed)(void *),
    void *arg)
{
	struct registry	*r;

	r = xcalloc(1, sizeof *r);
	r->env.http = http;
	r->env.fleet = fleet;
	r->env.changed = registry_account_changed_cb;
	r->env.arg = r;
	r->state_dir = xstrdup("");
	r->env.state_dir = r->state_dir;
	r->changed = changed;
	r->arg = arg;
	return r;
}

void
registry_free(struct registry *r)
{
	size_t	 i;

	if (r == NULL)
		return;
	/* no news from accounts on their way out */
	r->changed = NULL;
	for (i = 0; i < r->naccounts; i++)
		account_free(r->accounts[i]);
	free(r->accounts);
	free(r->state_dir);
	free(r);
}

static int
registry_account_cmp(const void *a, const void *b)
{
	const struct account *const *x = a, *const *y = b;

	return strcmp(account_name(*x), account_name(*y));
}

static int
registry_key_cmp(const void *key, const void *elem)
{
	const struct account *const *a = elem;

	return strcmp(key, account_name(*a));
}

/* Accounts by address, to tell which running ones a reload keeps. */
static int
registry_ptr_cmp(const void *a, const void *b)
{
	const struct account *const *x = a, *const *y = b;

	uintptr_t	 px = (uintptr_t)*x, py = (uintptr_t)*y;

	return px < py ? -1 : px > py;
}

struct account *
registry_find(const struct registry *r, const char *name)
{
	struct account	**found;

	if (r->naccounts == 0)
		return NULL;
	found = bsearch(name, r->accounts, r->naccounts, sizeof *r->accounts,
	    registry_key_cmp);
	return found != NULL ? *found : NULL;
}

size_t
registry_count(const struct registry *r)
{
	return r->naccounts;
}

struct account *
registry_get(const struct registry *r, size_t i)
{
	return i < r->naccounts ? r->accounts[i] : NULL;
}

/* What becomes of the running account `a` given its new conf `ac`. */
enum registry_fate {
	REGISTRY_NEW,		/* start an account for ac */
	REGISTRY_SAME,		/* keep a, drop ac */
	REGISTRY_REPLACE,	/* a takes ac */
};

static enum registry_fate
registry_fate(const struct account *a, const struct account_conf *ac)
{
	/* becoming or ceasing to be static starts over */
	if (a == NULL || (account_conf(a)->grant == GRANT_STATIC) !=
	    (ac->grant == GRANT_STATIC))
		return REGISTRY_NEW;
	if (config_account_equal(account_conf(a), ac))
		return REGISTRY_SAME;
	return REGISTRY_REPLACE;
}

/*
 * Whether an account of the new configuration writes the file `path`:
 * next[i] with its settings, or replace[i]'s where it takes new ones.
 */
static int
registry_writes(struct account *const *next,
    struct account_conf *const *replace, size_t n, const char *path)
{
	const struct account_conf	*ac;
	size_t				 i, j;

	for (i = 0; i < n; i++) {
		ac = replace[i] != NULL ? replace[i] : account_conf(next[i]);
		for (j = 0; j < ac->nsinks; j++)
			if (!strcmp(ac->sinks[j].path, path))
				return 1;
	}
	return 0;
}

/*
 * A removed account's token files hold a live token that nobody keeps
 * fresh any more: they go with it, and so does a file a changed account
 * no longer writes, but for one that an account of the new configuration
 * writes. Only the configured paths are touched; the state file stays (it
 * may hold the only refresh token).
 */
static void
registry_remove_files(const struct account_conf *ac,
    struct account *const *next, struct account_conf *const *replace,
    size_t n)
{
	char				*cause = NULL;
	size_t				 i;
	int				 rc;

	for (i = 0; i < ac->nsinks; i++) {
		if (registry_writes(next, replace, n, ac->sinks[i].path))
			continue;
		rc = file_remove(ac->sinks[i].path, FILE_SAFE_PATH, &cause);
		if (rc == 0)
			log_account(LOG_LEVEL_INFO, ac->name, "removed its token "
			    "file %s", ac->sinks[i].path);
		else if (rc != -ENOENT)
			log_account(LOG_LEVEL_WARNING, ac->name, "cannot remove "
			    "its token file %s: %s", ac->sinks[i].path,
			    cause != NULL ? cause : strerror(-rc));
		free(cause);
		cause = NULL;
	}
}

/*
 * Take every account out of cfg and make the registry match it.
 * Unchanged accounts keep everything; changed ones keep their tokens and
 * take the new settings; new ones start; removed ones stop. The accounts
 * see cfg's state folder from now on. cfg keeps only its global settings.
 */
void
registry_apply(struct registry *r, struct config *cfg,
    struct registry_diff *diff)
{
	struct account	       **next, **start, **kept, *a;
	struct account_conf	*ac, **replace;
	size_t			 i, n = cfg->naccounts;
	void			(*changed)(void *) = r->changed;

	memset(diff, 0, sizeof *diff);
	next = xcalloc(n ? n : 1, sizeof *next);
	start = xcalloc(n ? n : 1, sizeof *start);
	replace = xcalloc(n ? n : 1, sizeof *replace);
	for (i = 0; i < n; i++) {
		ac = config_take_account(cfg, i);
		a = registry_find(r, ac->name);
		switch (registry_fate(a, ac)) {
		case REGISTRY_NEW:
			next[i] = start[i] = account_new(&r->env, ac);
			diff->added++;
			break;
		case REGISTRY_SAME:
			config_account_free(ac);
			next[i] = a;
			break;
		case REGISTRY_REPLACE:
			next[i] = a;
			replace[i] = ac;
			diff->changed++;
			break;
		}
	}

	/* running accounts that next[] does not hold stop */
	r->changed = NULL;	/* no news while the array is half made */
	kept = xcalloc(n ? n : 1, sizeof *kept);
	memcpy(kept, next, n * sizeof *next);
	qsort(kept, n, sizeof *kept, registry_ptr_cmp);
	for (i = 0; i < r->naccounts; i++) {
		a = r->accounts[i];
		if (bsearch(&a, kept, n, sizeof *kept, registry_ptr_cmp) != NULL)
			continue;
		log_account(LOG_LEVEL_INFO, account_name(a), "removed from the "
		    "configuration");
		registry_remove_files(account_conf(a), next, replace, n);
		account_free(a);
		diff->removed++;
	}
	/*
	 * kept becomes the registry's array, sorted by name; next[] stays in
	 * the configuration's order (file names, where "a-b.conf" comes
	 * before "a.conf" but "a" before "a-b"), which start[] and replace[]
	 * share with it.
	 */
	free(r->accounts);
	qsort(kept, n, sizeof *kept, registry_account_cmp);
	r->accounts = kept;
	r->naccounts = n;
	r->ready_cursor = 0;	/* the array changed */

	free(r->state_dir);
	r->state_dir = xstrdup(cfg->state_dir);
	r->env.state_dir = r->state_dir;
	r->changed = changed;

	for (i = 0; i < n; i++) {
		if (replace[i] != NULL) {
			registry_remove_files(account_conf(next[i]), next,
			    replace, n);
			account_replace_conf(next[i], replace[i]);
		}
		else if (start[i] != NULL)
			account_start(start[i]);
		else	/* unchanged: a reload is still a "try again" */
			account_reloaded(next[i]);
	}
	free(next);
	free(start);
	free(replace);
	if (r->changed != NULL)
		r->changed(r->arg);
}

/*
 * Every account has had its first attempt. An account never goes back to
 * not having had one, so a cursor past those that have keeps this linear
 * over a whole start-up, not quadratic in the number of accounts.
 */
int
registry_all_attempted(struct registry *r)
{
	struct account_view	 v;
	int64_t			 now = clock_wall_ms();

	while (r->ready_cursor < r->naccounts) {
		account_view(r->accounts[r->ready_cursor], now, &v);
		if (!v.attempted)
			return 0;
		r->ready_cursor++;
	}
	return 1;
}

void
registry_clock_jumped(struct registry *r)
{
	size_t	 i;

	for (i = 0; i < r->naccounts; i++)
		account_clock_jumped(r->accounts[i]);
}
