/*
 * Configuration: the global file and one file per account, read into
 * struct config and struct account_conf. Every problem is collected as
 * "FILE:LINE: message" so that --check can show all of them at once.
 */
#define _GNU_SOURCE
#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tokend.h"

/* ---- diagnostics ---- */

static void
diag_add(char ***list, size_t *n, const char *file, int line,
    const char *prefix, const char *fmt, va_list ap)
{
	char	*msg, *full;

	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	if (line > 0)
		xasprintf(&full, "%s:%d: %s%s", file, line, prefix, msg);
	else
		xasprintf(&full, "%s: %s%s", file, prefix, msg);
	free(msg);
	*list = xreallocarray(*list, *n + 1, sizeof **list);
	(*list)[(*n)++] = full;
}

void
diag_error(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	diag_add(&d->errors, &d->nerrors, file, line, "", fmt, ap);
	va_end(ap);
}

void
diag_warning(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	diag_add(&d->warnings, &d->nwarnings, file, line, "warning: ", fmt,
	    ap);
	va_end(ap);
}

void
diag_clear(struct diag *d)
{
	size_t	 i;

	for (i = 0; i < d->nerrors; i++)
		free(d->errors[i]);
	for (i = 0; i < d->nwarnings; i++)
		free(d->warnings[i]);
	free(d->errors);
	free(d->warnings);
	memset(d, 0, sizeof *d);
}

/* ---- value parsers (pure; unit tested) ---- */

/* "90", "30s", "5m", "2h", "90d" to milliseconds. */
int
config_parse_duration(const char *s, int64_t *out)
{
	int64_t	 v = 0, mult;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX / 1000 / 86400 - 9) / 10)
			return -ERANGE;
		v = v * 10 + (*p - '0');
	}
	switch (*p) {
	case '\0':
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	case 'd':
		mult = 86400;
		break;
	default:
		return -EINVAL;
	}
	if (*p != '\0' && p[1] != '\0')
		return -EINVAL;
	*out = v * mult * 1000;
	return 0;
}

/* An octal file mode such as 0640; no set-id, sticky or execute bits. */
int
config_parse_mode(const char *s, mode_t *out)
{
	unsigned long	 v = 0;
	const char	*p;

	if (*s == '\0' || strlen(s) > 4)
		return -EINVAL;
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '7')
			return -EINVAL;
		v = v * 8 + (unsigned long)(*p - '0');
	}
	if (v & ~0666UL)
		return -EINVAL;
	*out = (mode_t)v;
	return 0;
}

static void
argv_free(char **argv)
{
	size_t	 i;

	if (argv == NULL)
		return;
	for (i = 0; argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

/*
 * Split a command line into argv without a shell: white space separates
 * words, '...' and "..." group, a backslash escapes the next character
 * outside single quotes.
 */
int
config_parse_argv(const char *s, char ***out)
{
	char	**argv = NULL, *word;
	size_t	  argc = 0, wl;
	char	  quote;
	int	  in_word;

	word = xcalloc(1, strlen(s) + 1);
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			break;
		wl = 0;
		quote = 0;
		in_word = 1;
		while (in_word && *s != '\0') {
			if (quote == 0 && (*s == ' ' || *s == '\t'))
				in_word = 0;
			else if (quote == 0 && (*s == '\'' || *s == '"'))
				quote = *s++;
			else if (quote != 0 && *s == quote) {
				quote = 0;
				s++;
			} else if (*s == '\\' && quote != '\'' && s[1] != '\0') {
				word[wl++] = s[1];
				s += 2;
			} else
				word[wl++] = *s++;
		}
		if (quote != 0) {
			free(word);
			argv_free(argv);
			return -EINVAL;
		}
		word[wl] = '\0';
		argv = xreallocarray(argv, argc + 2, sizeof *argv);
		argv[argc++] = xstrdup(word);
		argv[argc] = NULL;
	}
	free(word);
	if (argc == 0)
		return -EINVAL;
	*out = argv;
	return 0;
}

int
config_account_name_valid(const char *name)
{
	size_t	 len = strlen(name), i;

	if (len == 0 || len > ACCOUNT_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '.' &&
		    name[i] != '_' && name[i] != '-')
			return 0;
	return 1;
}

static int
parse_bool(const char *s, int *out)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") ||
	    !strcasecmp(s, "on") || !strcmp(s, "1"))
		*out = 1;
	else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") ||
	    !strcasecmp(s, "off") || !strcmp(s, "0"))
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

static int
parse_fraction(const char *s, double lo, double hi, double *out)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v) ||
	    v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int
parse_int(const char *s, int lo, int hi, int *out)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int
resolve_user(const char *s, uid_t *out)
{
	struct passwd	 pw, *res = NULL;
	char		 buf[4096], *end;
	unsigned long	 v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s != '\0' && *end == '\0' && errno == 0 && v < UINT_MAX) {
		*out = (uid_t)v;
		return 0;
	}
	if (getpwnam_r(s, &pw, buf, sizeof buf, &res) != 0 || res == NULL)
		return -ENOENT;
	*out = pw.pw_uid;
	return 0;
}

static int
resolve_group(const char *s, gid_t *out)
{
	struct group	 gr, *res = NULL;
	char		 buf[16384], *end;
	unsigned long	 v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s != '\0' && *end == '\0' && errno == 0 && v < UINT_MAX) {
		*out = (gid_t)v;
		return 0;
	}
	if (getgrnam_r(s, &gr, buf, sizeof buf, &res) != 0 || res == NULL)
		return -ENOENT;
	*out = gr.gr_gid;
	return 0;
}

/* ---- account files ---- */

enum key_type {
	K_STRING,	/* any non-empty text */
	K_SECRET,	/* an inline secret */
	K_FILE,		/* a path, resolved and read after the parse */
	K_URL,
	K_POINTER,
	K_DURATION,
	K_BOOL,
	K_RATIO,
	K_JITTER,
	K_GRANT,
	K_CLIENT_AUTH,
	K_FORMAT,
	K_MODE,
	K_OWNER,
	K_GROUP,
	K_USERS,
	K_GROUPS,
	K_ARGV,
};

enum section_id {
	S_ACCOUNT,
	S_RESPONSE,
	S_REFRESH,
	S_FILE,
	S_ACCESS,
	S_HOOKS,
	S_COUNT
};

static const char *const section_names[S_COUNT] = {
	"account", "response", "refresh", "file", "access", "hooks"
};

/* Paths read after the parse; their line numbers are kept for messages. */
enum file_key {
	F_CLIENT_SECRET,
	F_PASSWORD,
	F_REFRESH_TOKEN,
	F_TOKEN,
	F_CA,
	F_COUNT
};

struct key_def {
	enum section_id	 section;
	const char	*name;
	enum key_type	 type;
	size_t		 offset;	/* in account_conf, or sink_conf */
	int		 file_key;	/* K_FILE: which; else -1 */
};

#define AC(f)	offsetof(struct account_conf, f)
#define SC(f)	offsetof(struct sink_conf, f)

static const struct key_def key_defs[] = {
	{ S_ACCOUNT, "grant", K_GRANT, AC(grant), -1 },
	{ S_ACCOUNT, "token_url", K_URL, AC(token_url), -1 },
	{ S_ACCOUNT, "refresh_url", K_URL, AC(refresh_url), -1 },
	{ S_ACCOUNT, "client_id", K_STRING, AC(client_id), -1 },
	{ S_ACCOUNT, "client_secret", K_SECRET, AC(client_secret), -1 },
	{ S_ACCOUNT, "client_secret_file", K_FILE, 0, F_CLIENT_SECRET },
	{ S_ACCOUNT, "client_auth", K_CLIENT_AUTH, AC(client_auth), -1 },
	{ S_ACCOUNT, "username", K_STRING, AC(username), -1 },
	{ S_ACCOUNT, "password", K_SECRET, AC(password), -1 },
	{ S_ACCOUNT, "password_file", K_FILE, 0, F_PASSWORD },
	{ S_ACCOUNT, "refresh_token_file", K_FILE, 0, F_REFRESH_TOKEN },
	{ S_ACCOUNT, "token_file", K_FILE, 0, F_TOKEN },
	{ S_ACCOUNT, "scope", K_STRING, AC(scope), -1 },
	{ S_ACCOUNT, "audience", K_STRING, AC(audience), -1 },
	{ S_ACCOUNT, "resource", K_STRING, AC(resource), -1 },
	{ S_ACCOUNT, "ca_file", K_FILE, 0, F_CA },
	{ S_ACCOUNT, "timeout", K_DURATION, AC(timeout), -1 },
	{ S_ACCOUNT, "allow_http", K_BOOL, AC(allow_http), -1 },
	{ S_RESPONSE, "access_token", K_POINTER, AC(response.access_token), -1 },
	{ S_RESPONSE, "refresh_token", K_POINTER, AC(response.refresh_token), -1 },
	{ S_RESPONSE, "expires_in", K_POINTER, AC(response.expires_in), -1 },
	{ S_RESPONSE, "expires_at", K_POINTER, AC(response.expires_at), -1 },
	{ S_RESPONSE, "token_type", K_POINTER, AC(response.token_type), -1 },
	{ S_RESPONSE, "default_lifetime", K_DURATION,
	    AC(response.default_lifetime), -1 },
	{ S_REFRESH, "margin", K_DURATION, AC(refresh.margin), -1 },
	{ S_REFRESH, "ratio", K_RATIO, AC(refresh.ratio), -1 },
	{ S_REFRESH, "jitter", K_JITTER, AC(refresh.jitter), -1 },
	{ S_REFRESH, "min_backoff", K_DURATION, AC(refresh.min_backoff), -1 },
	{ S_REFRESH, "max_backoff", K_DURATION, AC(refresh.max_backoff), -1 },
	{ S_FILE, "path", K_STRING, SC(path), -1 },
	{ S_FILE, "format", K_FORMAT, SC(format), -1 },
	{ S_FILE, "mode", K_MODE, SC(mode), -1 },
	{ S_FILE, "owner", K_OWNER, SC(uid), -1 },
	{ S_FILE, "group", K_GROUP, SC(gid), -1 },
	{ S_ACCESS, "users", K_USERS, 0, -1 },
	{ S_ACCESS, "groups", K_GROUPS, 0, -1 },
	{ S_HOOKS, "on_refresh", K_ARGV, AC(on_refresh), -1 },
	{ S_HOOKS, "on_failure", K_ARGV, AC(on_failure), -1 },
};

/* Form parameters the request builder sets itself. */
static const char *const reserved_params[] = {
	"grant_type", "client_id", "client_secret", "username", "password",
	"refresh_token", "scope", "audience", "resource", NULL
};

struct seen_key {
	int		 instance;	/* section instance */
	char		*name;
	int		 line;
};

struct account_parse {
	const char		*file;
	char			*dir;		/* the account file's folder */
	struct diag		*diag;
	struct account_conf	*ac;

	enum section_id		 section;	/* S_COUNT: none or unknown */
	int			 instance;
	int			 section_line[S_COUNT];
	int			 account_line;

	struct seen_key		*seen;
	size_t			 nseen;

	char			*file_value[F_COUNT];
	int			 file_line[F_COUNT];
	int			 key_line[64];	/* by key_defs index */
	int			 grant_set, client_auth_set;

	char			*identity;
	size_t			 identity_len;
};

static void
identity_add(struct account_parse *ap, const char *s, size_t len)
{
	ap->identity = xreallocarray(ap->identity, ap->identity_len + len + 1,
	    1);
	memcpy(ap->identity + ap->identity_len, s, len);
	ap->identity[ap->identity_len + len] = '\0';
	ap->identity_len += len + 1;
}

static void
account_defaults(struct account_conf *ac)
{
	ac->grant = GRANT_CLIENT_CREDENTIALS;
	ac->client_auth = CLIENT_AUTH_NONE;
	ac->timeout = 30 * MSEC_PER_SEC;
	ac->response.access_token = xstrdup("/access_token");
	ac->response.refresh_token = xstrdup("/refresh_token");
	ac->response.expires_in = xstrdup("/expires_in");
	ac->response.token_type = xstrdup("/token_type");
	ac->response.default_lifetime = 3600 * MSEC_PER_SEC;
	ac->refresh.margin = 300 * MSEC_PER_SEC;
	ac->refresh.ratio = 0.75;
	ac->refresh.jitter = 0.1;
	ac->refresh.min_backoff = 1 * MSEC_PER_SEC;
	ac->refresh.max_backoff = 300 * MSEC_PER_SEC;
}

static int
account_section_cb(void *arg, const char *name, int line)
{
	struct account_parse	*ap = arg;
	struct sink_conf	*sc;
	int			 i;

	ap->instance++;
	identity_add(ap, name, strlen(name));
	for (i = 0; i < S_COUNT; i++)
		if (!strcmp(name, section_names[i]))
			break;
	ap->section = (enum section_id)i;
	if (i == S_COUNT) {
		diag_error(ap->diag, ap->file, line, "unknown section [%s]",
		    name);
		return 0;
	}
	if (i == S_FILE) {
		ap->ac->sinks = xreallocarray(ap->ac->sinks, ap->ac->nsinks + 1,
		    sizeof *ap->ac->sinks);
		sc = &ap->ac->sinks[ap->ac->nsinks++];
		memset(sc, 0, sizeof *sc);
		sc->format = SINK_RAW;
		sc->mode = 0640;
		sc->uid = (uid_t)-1;
		sc->gid = (gid_t)-1;
		sc->line = line;
	} else if (ap->section_line[i] != 0) {
		diag_error(ap->diag, ap->file, line, "section [%s] repeated "
		    "(first at line %d)", name, ap->section_line[i]);
		ap->section = S_COUNT;
		return 0;
	}
	if (ap->section_line[i] == 0)
		ap->section_line[i] = line;
	return 0;
}

static void
add_ids(struct account_parse *ap, const char *value, int line, int groups)
{
	struct account_conf	*ac = ap->ac;
	char			*copy, *word, *save = NULL;
	uid_t			 uid;
	gid_t			 gid;

	copy = xstrdup(value);
	for (word = strtok_r(copy, " \t,", &save); word != NULL;
	    word = strtok_r(NULL, " \t,", &save)) {
		if (groups) {
			if (resolve_group(word, &gid) != 0) {
				diag_error(ap->diag, ap->file, line,
				    "unknown group '%s'", word);
				continue;
			}
			ac->groups = xreallocarray(ac->groups, ac->ngroups + 1,
			    sizeof *ac->groups);
			ac->groups[ac->ngroups++] = gid;
		} else {
			if (resolve_user(word, &uid) != 0) {
				diag_error(ap->diag, ap->file, line,
				    "unknown user '%s'", word);
				continue;
			}
			ac->users = xreallocarray(ac->users, ac->nusers + 1,
			    sizeof *ac->users);
			ac->users[ac->nusers++] = uid;
		}
	}
	free(copy);
}

static int
account_param(struct account_parse *ap, const char *key, const char *value,
    int line)
{
	struct account_conf	*ac = ap->ac;
	const char		*name = key + strlen("param.");
	size_t			 i;

	if (*name == '\0') {
		diag_error(ap->diag, ap->file, line, "param. needs a name");
		return 0;
	}
	for (i = 0; reserved_params[i] != NULL; i++)
		if (!strcmp(name, reserved_params[i])) {
			diag_error(ap->diag, ap->file, line, "param.%s is set "
			    "by tokend itself; use its own key", name);
			return 0;
		}
	for (i = 0; i < ac->nparams; i++)
		if (!strcmp(ac->params[i].name, name)) {
			diag_error(ap->diag, ap->file, line, "duplicate key "
			    "'%s'", key);
			return 0;
		}
	ac->params = xreallocarray(ac->params, ac->nparams + 1,
	    sizeof *ac->params);
	ac->params[ac->nparams].name = xstrdup(name);
	ac->params[ac->nparams].value = xstrdup(value);
	ac->nparams++;
	return 0;
}

static int
account_value_cb(void *arg, const char *section, const char *key,
    const char *value, int line)
{
	struct account_parse	*ap = arg;
	struct account_conf	*ac = ap->ac;
	const struct key_def	*kd = NULL;
	void			*base;
	size_t			 i;
	int64_t			 dur;
	int			 b;
	mode_t			 mode;
	char		       **argv;

	(void)section;
	identity_add(ap, key, strlen(key));
	identity_add(ap, value, strlen(value));
	if (ap->section == S_COUNT)
		return 0;	/* already reported */

	for (i = 0; i < ap->nseen; i++)
		if (ap->seen[i].instance == ap->instance &&
		    !strcmp(ap->seen[i].name, key)) {
			diag_error(ap->diag, ap->file, line, "duplicate key "
			    "'%s' (first at line %d)", key, ap->seen[i].line);
			return 0;
		}
	ap->seen = xreallocarray(ap->seen, ap->nseen + 1, sizeof *ap->seen);
	ap->seen[ap->nseen].instance = ap->instance;
	ap->seen[ap->nseen].name = xstrdup(key);
	ap->seen[ap->nseen].line = line;
	ap->nseen++;

	if (ap->section == S_ACCOUNT && !strncmp(key, "param.", 6))
		return account_param(ap, key, value, line);
	for (i = 0; i < sizeof key_defs / sizeof key_defs[0]; i++)
		if (key_defs[i].section == ap->section &&
		    !strcmp(key_defs[i].name, key)) {
			kd = &key_defs[i];
			break;
		}
	if (kd == NULL) {
		diag_error(ap->diag, ap->file, line, "unknown key '%s' in "
		    "[%s]", key, section_names[ap->section]);
		return 0;
	}
	ap->key_line[i] = line;

	base = ap->section == S_FILE ? (void *)&ac->sinks[ac->nsinks - 1] :
	    (void *)ac;
	base = (char *)base + kd->offset;

	/*
	 * An empty value keeps the default: unset for strings, paths, owners
	 * and hooks; a JSON pointer is disabled; an empty list is no list.
	 * Keys with no such default (durations, numbers, choices) need one.
	 */
	if (*value == '\0') {
		switch (kd->type) {
		case K_STRING:
		case K_URL:
		case K_SECRET:
		case K_FILE:
		case K_OWNER:
		case K_GROUP:
		case K_ARGV:
		case K_USERS:
		case K_GROUPS:
			return 0;
		case K_POINTER:
			break;
		default:
			diag_error(ap->diag, ap->file, line, "%s needs a value",
			    key);
			return 0;
		}
	}

	switch (kd->type) {
	case K_STRING:
	case K_URL:
		*(char **)base = xstrdup(value);
		break;
	case K_SECRET:
		*(char **)base = xstrdup(value);
		break;
	case K_FILE:
		ap->file_value[kd->file_key] = xstrdup(value);
		ap->file_line[kd->file_key] = line;
		break;
	case K_POINTER:
		free(*(char **)base);
		*(char **)base = NULL;
		if (*value == '\0')
			break;
		if (*value != '/') {
			diag_error(ap->diag, ap->file, line, "%s: a JSON "
			    "pointer starts with '/' (RFC 6901)", key);
			break;
		}
		*(char **)base = xstrdup(value);
		break;
	case K_DURATION:
		if (config_parse_duration(value, &dur) != 0) {
			diag_error(ap->diag, ap->file, line, "%s: bad duration "
			    "'%s' (use e.g. 90, 30s, 5m, 2h, 7d)", key, value);
			break;
		}
		*(int64_t *)base = dur;
		break;
	case K_BOOL:
		if (parse_bool(value, &b) != 0) {
			diag_error(ap->diag, ap->file, line, "%s: expected yes "
			    "or no, not '%s'", key, value);
			break;
		}
		*(int *)base = b;
		break;
	case K_RATIO:
		if (parse_fraction(value, 0.01, 1.0, (double *)base) != 0)
			diag_error(ap->diag, ap->file, line, "%s: expected a "
			    "number from 0.01 to 1, not '%s'", key, value);
		break;
	case K_JITTER:
		if (parse_fraction(value, 0.0, 0.5, (double *)base) != 0)
			diag_error(ap->diag, ap->file, line, "%s: expected a "
			    "number from 0 to 0.5, not '%s'", key, value);
		break;
	case K_GRANT:
		ap->grant_set = 1;
		if (!strcmp(value, "client_credentials"))
			ac->grant = GRANT_CLIENT_CREDENTIALS;
		else if (!strcmp(value, "password"))
			ac->grant = GRANT_PASSWORD;
		else if (!strcmp(value, "refresh_token"))
			ac->grant = GRANT_REFRESH_TOKEN;
		else if (!strcmp(value, "static"))
			ac->grant = GRANT_STATIC;
		else
			diag_error(ap->diag, ap->file, line, "unknown grant "
			    "'%s' (client_credentials, password, "
			    "refresh_token or static)", value);
		break;
	case K_CLIENT_AUTH:
		ap->client_auth_set = 1;
		if (!strcmp(value, "basic"))
			ac->client_auth = CLIENT_AUTH_BASIC;
		else if (!strcmp(value, "post"))
			ac->client_auth = CLIENT_AUTH_POST;
		else if (!strcmp(value, "none"))
			ac->client_auth = CLIENT_AUTH_NONE;
		else
			diag_error(ap->diag, ap->file, line, "unknown "
			    "client_auth '%s' (basic, post or none)", value);
		break;
	case K_FORMAT:
		if (!strcmp(value, "raw"))
			*(enum sink_format *)base = SINK_RAW;
		else if (!strcmp(value, "json"))
			*(enum sink_format *)base = SINK_JSON;
		else if (!strcmp(value, "env"))
			*(enum sink_format *)base = SINK_ENV;
		else if (!strcmp(value, "header"))
			*(enum sink_format *)base = SINK_HEADER;
		else
			diag_error(ap->diag, ap->file, line, "unknown format "
			    "'%s' (raw, json, env or header)", value);
		break;
	case K_MODE:
		if (config_parse_mode(value, &mode) != 0) {
			diag_error(ap->diag, ap->file, line, "mode: expected "
			    "octal permissions without execute bits such as "
			    "0640, not '%s'", value);
			break;
		}
		*(mode_t *)base = mode;
		break;
	case K_OWNER:
		if (resolve_user(value, (uid_t *)base) != 0)
			diag_error(ap->diag, ap->file, line, "unknown user "
			    "'%s'", value);
		break;
	case K_GROUP:
		if (resolve_group(value, (gid_t *)base) != 0)
			diag_error(ap->diag, ap->file, line, "unknown group "
			    "'%s'", value);
		break;
	case K_USERS:
		add_ids(ap, value, line, 0);
		break;
	case K_GROUPS:
		add_ids(ap, value, line, 1);
		break;
	case K_ARGV:
		if (config_parse_argv(value, &argv) != 0) {
			diag_error(ap->diag, ap->file, line, "%s: unbalanced "
			    "quotes", key);
			break;
		}
		if (argv[0][0] != '/') {
			diag_error(ap->diag, ap->file, line, "%s: the program "
			    "needs an absolute path (hooks run without a "
			    "shell)", key);
			argv_free(argv);
			break;
		}
		argv_free(*(char ***)base);
		*(char ***)base = argv;
		break;
	}
	return 0;
}

static void
account_error_cb(void *arg, int line, const char *msg)
{
	struct account_parse	*ap = arg;

	diag_error(ap->diag, ap->file, line, "%s", msg);
}

static int
key_line(struct account_parse *ap, const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof key_defs / sizeof key_defs[0]; i++)
		if (key_defs[i].section == S_ACCOUNT &&
		    !strcmp(key_defs[i].name, name))
			return ap->key_line[i] ? ap->key_line[i] :
			    ap->account_line;
	return ap->account_line;
}

static char *
resolve_path(struct account_parse *ap, const char *path, int credential)
{
	const char	*creds = getenv("CREDENTIALS_DIRECTORY");
	char		*out, *prefixed;

	if (path[0] == '/')
		return xstrdup(path);
	if (!credential || creds == NULL || *creds == '\0') {
		xasprintf(&out, "%s/%s", ap->dir, path);
		return out;
	}
	xasprintf(&out, "%s/%s", creds, path);
	/*
	 * The shipped unit loads a whole folder (LoadCredential=tokend:DIR),
	 * which systemd names tokend_FILENAME; either name finds it.
	 */
	if (access(out, F_OK) != 0 && strchr(path, '/') == NULL) {
		xasprintf(&prefixed, "%s/" CREDENTIAL_PREFIX "%s", creds, path);
		if (access(prefixed, F_OK) == 0) {
			free(out);
			return prefixed;
		}
		free(prefixed);
	}
	return out;
}

/* Read a secret file into *out; one trailing newline is not part of it. */
static void
read_secret(struct account_parse *ap, enum file_key fk, const char *key,
    char **out)
{
	struct stat	 st;
	char		*path, *buf;
	size_t		 len;
	int		 rc;

	path = resolve_path(ap, ap->file_value[fk], 1);
	rc = read_file_capped(path, SECRET_FILE_MAX, &buf, &len);
	if (rc != 0) {
		diag_error(ap->diag, ap->file, ap->file_line[fk], "%s: cannot "
		    "read %s: %s", key, path, rc == -EFBIG ? "larger than 64 "
		    "KiB" : rc == -EINVAL ? "not a regular file" :
		    strerror(-rc));
		free(path);
		return;
	}
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	if (len == 0 || strlen(buf) != len) {
		diag_error(ap->diag, ap->file, ap->file_line[fk], "%s: %s is "
		    "empty or holds a NUL byte", key, path);
		freezero_str(buf);
		free(path);
		return;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		diag_warning(ap->diag, ap->file, ap->file_line[fk], "%s: %s is "
		    "readable by group or others (mode %04o)", key, path,
		    (unsigned)(st.st_mode & 07777));
	identity_add(ap, buf, len);
	*out = buf;
	free(path);
}

static int
url_check(struct account_parse *ap, const char *key, const char *url)
{
	const char	*host;

	if (!strncasecmp(url, "https://", 8))
		host = url + 8;
	else if (!strncasecmp(url, "http://", 7)) {
		if (!ap->ac->allow_http) {
			diag_error(ap->diag, ap->file, key_line(ap, key), "%s: "
			    "http:// sends secrets in clear text; use https:// "
			    "or set allow_http = yes", key);
			return -1;
		}
		host = url + 7;
	} else {
		diag_error(ap->diag, ap->file, key_line(ap, key), "%s: expected "
		    "an https:// URL", key);
		return -1;
	}
	if (*host == '\0' || *host == '/' || strpbrk(url, " \t\r\n") != NULL) {
		diag_error(ap->diag, ap->file, key_line(ap, key), "%s: malformed "
		    "URL", key);
		return -1;
	}
	return 0;
}

/* Cross-key checks and secret files, once the whole file is read. */
static void
account_finish(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	struct stat		 st;
	size_t			 i;
	int			 has_secret;

	if (ap->section_line[S_ACCOUNT] == 0) {
		diag_error(ap->diag, ap->file, 0, "no [account] section");
		return;
	}
	ap->account_line = ap->section_line[S_ACCOUNT];

	if (ac->client_secret != NULL && ap->file_value[F_CLIENT_SECRET])
		diag_error(ap->diag, ap->file, key_line(ap,
		    "client_secret_file"), "set client_secret or "
		    "client_secret_file, not both");
	else if (ap->file_value[F_CLIENT_SECRET] != NULL)
		read_secret(ap, F_CLIENT_SECRET, "client_secret_file",
		    &ac->client_secret);
	if (ac->password != NULL && ap->file_value[F_PASSWORD])
		diag_error(ap->diag, ap->file, key_line(ap, "password_file"),
		    "set password or password_file, not both");
	else if (ap->file_value[F_PASSWORD] != NULL)
		read_secret(ap, F_PASSWORD, "password_file", &ac->password);
	if (ap->file_value[F_REFRESH_TOKEN] != NULL)
		read_secret(ap, F_REFRESH_TOKEN, "refresh_token_file",
		    &ac->refresh_token);
	if (ap->file_value[F_TOKEN] != NULL)
		read_secret(ap, F_TOKEN, "token_file", &ac->static_token);
	if (ap->file_value[F_CA] != NULL) {
		ac->ca_file = resolve_path(ap, ap->file_value[F_CA], 0);
		if (access(ac->ca_file, R_OK) != 0)
			diag_error(ap->diag, ap->file, ap->file_line[F_CA],
			    "ca_file: cannot read %s: %s", ac->ca_file,
			    strerror(errno));
	}
	if ((ac->client_secret != NULL && ap->file_value[F_CLIENT_SECRET] ==
	    NULL) || (ac->password != NULL && ap->file_value[F_PASSWORD] ==
	    NULL)) {
		if (stat(ap->file, &st) == 0 && (st.st_mode & 077))
			diag_warning(ap->diag, ap->file, 0, "holds a secret "
			    "inline and is readable by group or others; use "
			    "client_secret_file / password_file or chmod 600");
	}

	if (ac->grant == GRANT_STATIC) {
		if (ap->file_value[F_TOKEN] == NULL)
			diag_error(ap->diag, ap->file, key_line(ap, "grant"),
			    "grant = static needs token_file");
		else if (ac->static_token != NULL &&
		    !str_is_printable(ac->static_token))
			diag_error(ap->diag, ap->file, ap->file_line[F_TOKEN],
			    "token_file: a token is visible ASCII without "
			    "spaces");
	} else {
		if (ac->token_url == NULL)
			diag_error(ap->diag, ap->file, ap->account_line,
			    "token_url is missing");
		else
			url_check(ap, "token_url", ac->token_url);
		if (ac->refresh_url != NULL)
			url_check(ap, "refresh_url", ac->refresh_url);
		if (ap->file_value[F_TOKEN] != NULL)
			diag_error(ap->diag, ap->file, ap->file_line[F_TOKEN],
			    "token_file is for grant = static");
	}
	if (ac->token_url != NULL && ac->refresh_url == NULL)
		ac->refresh_url = xstrdup(ac->token_url);

	has_secret = ac->client_secret != NULL ||
	    ap->file_value[F_CLIENT_SECRET] != NULL;
	if (!ap->client_auth_set)
		ac->client_auth = has_secret ? CLIENT_AUTH_BASIC :
		    CLIENT_AUTH_NONE;
	else if (ac->client_auth != CLIENT_AUTH_NONE && !has_secret)
		diag_error(ap->diag, ap->file, key_line(ap, "client_auth"),
		    "client_auth = %s needs client_secret or "
		    "client_secret_file", ac->client_auth == CLIENT_AUTH_BASIC ?
		    "basic" : "post");
	if (ac->client_auth != CLIENT_AUTH_NONE && ac->client_id == NULL)
		diag_error(ap->diag, ap->file, key_line(ap, "client_auth"),
		    "client authentication needs client_id");

	switch (ac->grant) {
	case GRANT_PASSWORD:
		if (ac->username == NULL)
			diag_error(ap->diag, ap->file, key_line(ap, "grant"),
			    "grant = password needs username");
		if (ac->password == NULL && ap->file_value[F_PASSWORD] == NULL)
			diag_error(ap->diag, ap->file, key_line(ap, "grant"),
			    "grant = password needs password or password_file");
		break;
	case GRANT_REFRESH_TOKEN:
		if (ap->file_value[F_REFRESH_TOKEN] == NULL)
			diag_error(ap->diag, ap->file, key_line(ap, "grant"),
			    "grant = refresh_token needs refresh_token_file");
		break;
	default:
		break;
	}
	if (ac->response.access_token == NULL)
		diag_error(ap->diag, ap->file, ap->section_line[S_RESPONSE] ?
		    ap->section_line[S_RESPONSE] : ap->account_line,
		    "[response] access_token cannot be empty");
	if (ac->response.default_lifetime <= 0)
		diag_error(ap->diag, ap->file, ap->section_line[S_RESPONSE],
		    "default_lifetime must be positive");
	if (ac->timeout <= 0)
		diag_error(ap->diag, ap->file, key_line(ap, "timeout"),
		    "timeout must be positive");
	if (ac->refresh.min_backoff <= 0 ||
	    ac->refresh.min_backoff > ac->refresh.max_backoff)
		diag_error(ap->diag, ap->file, ap->section_line[S_REFRESH],
		    "min_backoff must be positive and not above max_backoff");
	for (i = 0; i < ac->nsinks; i++) {
		if (ac->sinks[i].path == NULL)
			diag_error(ap->diag, ap->file, ac->sinks[i].line,
			    "[file] needs a path");
		else if (ac->sinks[i].path[0] != '/')
			diag_error(ap->diag, ap->file, ac->sinks[i].line,
			    "[file] path must be absolute");
	}
}

void
config_account_free(struct account_conf *ac)
{
	size_t	 i;

	if (ac == NULL)
		return;
	free(ac->name);
	free(ac->file);
	free(ac->token_url);
	free(ac->refresh_url);
	free(ac->client_id);
	freezero_str(ac->client_secret);
	freezero_str(ac->username);
	freezero_str(ac->password);
	freezero_str(ac->refresh_token);
	freezero_str(ac->static_token);
	free(ac->scope);
	free(ac->audience);
	free(ac->resource);
	for (i = 0; i < ac->nparams; i++) {
		free(ac->params[i].name);
		free(ac->params[i].value);
	}
	free(ac->params);
	free(ac->ca_file);
	free(ac->response.access_token);
	free(ac->response.refresh_token);
	free(ac->response.expires_in);
	free(ac->response.expires_at);
	free(ac->response.token_type);
	for (i = 0; i < ac->nsinks; i++)
		free(ac->sinks[i].path);
	free(ac->sinks);
	free(ac->users);
	free(ac->groups);
	argv_free(ac->on_refresh);
	argv_free(ac->on_failure);
	if (ac->identity != NULL) {
		explicit_bzero(ac->identity, ac->identity_len);
		free(ac->identity);
	}
	free(ac);
}

/*
 * Parse one account from buf, as if read from `path` (which names it in
 * messages and anchors relative paths). Returns NULL when it has errors
 * (all of them added to diag); warnings are added either way.
 */
struct account_conf *
config_account_parse(const char *path, const char *name, const char *buf,
    size_t len, struct diag *diag)
{
	static const struct ini_handler handler = {
		account_section_cb, account_value_cb, account_error_cb
	};
	struct account_parse	 ap;
	struct account_conf	*ac;
	char			*slash;
	size_t			 i, errors_before = diag->nerrors;

	if (!config_account_name_valid(name)) {
		diag_error(diag, path, 0, "account name '%s' is not 1 to 64 "
		    "of A-Z a-z 0-9 . _ -", name);
		return NULL;
	}
	ac = xcalloc(1, sizeof *ac);
	ac->name = xstrdup(name);
	ac->file = xstrdup(path);
	account_defaults(ac);

	memset(&ap, 0, sizeof ap);
	ap.file = path;
	ap.diag = diag;
	ap.ac = ac;
	ap.section = S_COUNT;
	ap.dir = xstrdup(path);
	if ((slash = strrchr(ap.dir, '/')) != NULL)
		*(slash == ap.dir ? slash + 1 : slash) = '\0';
	else {
		free(ap.dir);
		ap.dir = xstrdup(".");
	}
	identity_add(&ap, path, strlen(path));

	ini_parse_buffer(buf, len, &handler, &ap);
	account_finish(&ap);

	free(ap.dir);
	for (i = 0; i < ap.nseen; i++)
		free(ap.seen[i].name);
	free(ap.seen);
	for (i = 0; i < F_COUNT; i++)
		free(ap.file_value[i]);
	ac->identity = ap.identity;
	ac->identity_len = ap.identity_len;

	if (diag->nerrors > errors_before) {
		config_account_free(ac);
		return NULL;
	}
	return ac;
}

/* Load one account file; see config_account_parse. */
struct account_conf *
config_account_load(const char *path, const char *name, struct diag *diag)
{
	struct account_conf	*ac;
	char			*buf;
	size_t			 len;
	int			 rc;

	if ((rc = read_file_capped(path, CONFIG_FILE_MAX, &buf, &len)) != 0) {
		diag_error(diag, path, 0, "cannot read: %s", rc == -EFBIG ?
		    "larger than 1 MiB" : strerror(-rc));
		return NULL;
	}
	ac = config_account_parse(path, name, buf, len, diag);
	explicit_bzero(buf, len);
	free(buf);
	return ac;
}

int
config_account_equal(const struct account_conf *a,
    const struct account_conf *b)
{
	return a->identity_len == b->identity_len &&
	    memcmp(a->identity, b->identity, a->identity_len) == 0;
}

/* ---- the global file ---- */

struct global_parse {
	const char	*file;
	struct diag	*diag;
	struct config	*cfg;
	int		 in_tokend;
	int		 seen_line[6];
};

static const char *const global_keys[] = {
	"accounts_dir", "state_dir", "socket", "log_level", "max_requests",
	"max_requests_per_host", NULL
};

static int
global_section_cb(void *arg, const char *name, int line)
{
	struct global_parse	*gp = arg;

	gp->in_tokend = !strcmp(name, "tokend");
	if (!gp->in_tokend)
		diag_error(gp->diag, gp->file, line, "unknown section [%s]",
		    name);
	return 0;
}

static int
global_value_cb(void *arg, const char *section, const char *key,
    const char *value, int line)
{
	struct global_parse	*gp = arg;
	struct config		*cfg = gp->cfg;
	int			 i;

	(void)section;
	if (!gp->in_tokend)
		return 0;
	for (i = 0; global_keys[i] != NULL; i++)
		if (!strcmp(global_keys[i], key))
			break;
	if (global_keys[i] == NULL) {
		diag_error(gp->diag, gp->file, line, "unknown key '%s' in "
		    "[tokend]", key);
		return 0;
	}
	if (gp->seen_line[i] != 0) {
		diag_error(gp->diag, gp->file, line, "duplicate key '%s' "
		    "(first at line %d)", key, gp->seen_line[i]);
		return 0;
	}
	gp->seen_line[i] = line;
	if (*value == '\0')
		return 0;	/* keep the default */

	switch (i) {
	case 0:
	case 1:
	case 2:
		if (value[0] != '/') {
			diag_error(gp->diag, gp->file, line, "%s must be an "
			    "absolute path", key);
			break;
		}
		if (i == 0) {
			free(cfg->accounts_dir);
			cfg->accounts_dir = xstrdup(value);
		} else if (i == 1) {
			free(cfg->state_dir);
			cfg->state_dir = xstrdup(value);
		} else {
			free(cfg->socket_path);
			cfg->socket_path = xstrdup(value);
		}
		break;
	case 3:
		if (!strcmp(value, "error"))
			cfg->log_level = LOG_LEVEL_ERROR;
		else if (!strcmp(value, "warning"))
			cfg->log_level = LOG_LEVEL_WARNING;
		else if (!strcmp(value, "info"))
			cfg->log_level = LOG_LEVEL_INFO;
		else if (!strcmp(value, "debug"))
			cfg->log_level = LOG_LEVEL_DEBUG;
		else
			diag_error(gp->diag, gp->file, line, "log_level: "
			    "expected error, warning, info or debug");
		break;
	case 4:
		if (parse_int(value, 1, 100000, &cfg->max_requests) != 0)
			diag_error(gp->diag, gp->file, line, "max_requests: "
			    "expected a number from 1 to 100000");
		break;
	case 5:
		if (parse_int(value, 1, 100000, &cfg->max_requests_per_host)
		    != 0)
			diag_error(gp->diag, gp->file, line,
			    "max_requests_per_host: expected a number from 1 "
			    "to 100000");
		break;
	}
	return 0;
}

static void
global_error_cb(void *arg, int line, const char *msg)
{
	struct global_parse	*gp = arg;

	diag_error(gp->diag, gp->file, line, "%s", msg);
}

/* $STATE_DIRECTORY may list several folders; the first is ours. */
static char *
env_dir(const char *var, const char *suffix, const char *fallback)
{
	const char	*v = getenv(var);
	char		*out;
	size_t		 n;

	if (v == NULL || *v != '/')
		return xstrdup(fallback);
	n = strcspn(v, ":");
	if (suffix != NULL)
		xasprintf(&out, "%.*s/%s", (int)n, v, suffix);
	else
		out = xstrndup(v, n);
	return out;
}

static int
account_file_filter(const struct dirent *de)
{
	size_t	 len = strlen(de->d_name);

	return len > 5 && !strcmp(de->d_name + len - 5, ".conf");
}

/*
 * Load the global file (NULL: the default, which may be absent) and every
 * account. Returns NULL when anything has an error; diag has them all.
 */
struct config *
config_load(const char *file, const char *accounts_dir, struct diag *diag)
{
	static const struct ini_handler handler = {
		global_section_cb, global_value_cb, global_error_cb
	};
	struct global_parse	 gp;
	struct config		*cfg;
	struct dirent	       **names = NULL;
	struct account_conf	*ac;
	char			*buf, *path, *name;
	size_t			 len, errors_before = diag->nerrors;
	int			 n, i, rc;

	cfg = xcalloc(1, sizeof *cfg);
	cfg->accounts_dir = xstrdup(DEFAULT_ACCOUNTS_DIR);
	cfg->state_dir = env_dir("STATE_DIRECTORY", NULL, DEFAULT_STATE_DIR);
	cfg->socket_path = env_dir("RUNTIME_DIRECTORY", "tokend.sock",
	    DEFAULT_SOCKET);
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->max_requests = 64;
	cfg->max_requests_per_host = 4;

	rc = read_file_capped(file != NULL ? file : DEFAULT_CONFIG_FILE,
	    CONFIG_FILE_MAX, &buf, &len);
	if (rc == 0) {
		cfg->file = xstrdup(file != NULL ? file : DEFAULT_CONFIG_FILE);
		memset(&gp, 0, sizeof gp);
		gp.file = cfg->file;
		gp.diag = diag;
		gp.cfg = cfg;
		ini_parse_buffer(buf, len, &handler, &gp);
		free(buf);
	} else if (file != NULL || rc != -ENOENT)
		diag_error(diag, file != NULL ? file : DEFAULT_CONFIG_FILE, 0,
		    "cannot read: %s", strerror(-rc));

	if (accounts_dir != NULL) {
		free(cfg->accounts_dir);
		cfg->accounts_dir = xstrdup(accounts_dir);
	}

	n = scandir(cfg->accounts_dir, &names, account_file_filter,
	    alphasort);
	if (n == -1)
		diag_error(diag, cfg->accounts_dir, 0, "cannot read accounts "
		    "folder: %s", strerror(errno));
	for (i = 0; i < n; i++) {
		xasprintf(&path, "%s/%s", cfg->accounts_dir, names[i]->d_name);
		name = xstrndup(names[i]->d_name,
		    strlen(names[i]->d_name) - 5);
		if ((ac = config_account_load(path, name, diag)) != NULL) {
			cfg->accounts = xreallocarray(cfg->accounts,
			    cfg->naccounts + 1, sizeof *cfg->accounts);
			cfg->accounts[cfg->naccounts++] = ac;
		}
		free(name);
		free(path);
		free(names[i]);
	}
	free(names);

	if (diag->nerrors > errors_before) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

void
config_free(struct config *cfg)
{
	size_t	 i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->naccounts; i++)
		config_account_free(cfg->accounts[i]);
	free(cfg->accounts);
	free(cfg->file);
	free(cfg->accounts_dir);
	free(cfg->state_dir);
	free(cfg->socket_path);
	free(cfg);
}

/*
 * Move account i out of the configuration: the caller owns it now, and
 * config_free() frees only what is left.
 */
struct account_conf *
config_take_account(struct config *cfg, size_t i)
{
	struct account_conf	*ac = cfg->accounts[i];

	cfg->accounts[i] = NULL;
	return ac;
}
