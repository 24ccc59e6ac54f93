/*
 * Configuration: the global file and one file per account, read into
 * struct config and struct account_conf. Every problem is collected as
 * "FILE:LINE: message" so that --check can show all of them at once.
 *
 * What each key means (section, type, where it is stored, its choices or
 * range, its default) is written once, in config_keys[]; the parsers of
 * both kinds of file, the defaults and the messages come from there.
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
#include <search.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tokend.h"

#define nitems(a)	(sizeof (a) / sizeof (a)[0])

#define CA_FILE_MAX	(4 * 1024 * 1024)	/* a system bundle fits */

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

/*
 * "90", "30s", "5m", "2h", "90d" to milliseconds. -EINVAL when it is not
 * a duration, -ERANGE when it is longer than DURATION_MAX_MS.
 */
int
config_parse_duration(const char *s, int64_t *out)
{
	int64_t	 v = 0, mult;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	/* past the bound v stops growing: any number of digits is safe */
	for (; *p >= '0' && *p <= '9'; p++)
		if (v <= DURATION_MAX_MS / MSEC_PER_SEC)
			v = v * 10 + (*p - '0');
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
	if (v > DURATION_MAX_MS / MSEC_PER_SEC / mult)
		return -ERANGE;
	*out = v * mult * MSEC_PER_SEC;
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
			strv_free(argv);
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

/*
 * 1 to 64 of [A-Za-z0-9._-], but not "." or "..": the name goes into
 * paths (the state file, a [file] path) and into socket URLs, where those
 * two mean folders.
 */
int
config_account_name_valid(const char *name)
{
	size_t	 len = strlen(name), i;

	if (len == 0 || len > ACCOUNT_NAME_MAX || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '.' &&
		    name[i] != '_' && name[i] != '-')
			return 0;
	return 1;
}

/*
 * Whether the schedule will not apply margin in full to a token that
 * lives `lifetime` ms: it never refreshes sooner than half the lifetime
 * unless ratio was set (ratio_given) below 0.5, which asks for it.
 */
int
config_margin_is_cut(const struct refresh_conf *rc, int64_t lifetime,
    int ratio_given)
{
	if (lifetime <= 0 || (ratio_given && rc->ratio < 0.5))
		return 0;
	return rc->margin > lifetime / 2;
}

/* A duration as a person would write it: "90s", "5m", "2h", "7d". */
static void
config_format_duration(int64_t ms, char *buf, size_t len)
{
	static const struct {
		int64_t	 ms;
		char	 unit;
	} units[] = {
		{ 86400 * MSEC_PER_SEC, 'd' }, { 3600 * MSEC_PER_SEC, 'h' },
		{ 60 * MSEC_PER_SEC, 'm' }, { MSEC_PER_SEC, 's' },
	};
	size_t	 i;

	for (i = 0; i < nitems(units) - 1; i++)
		if (ms >= units[i].ms && ms % units[i].ms == 0)
			break;
	snprintf(buf, len, "%lld%c", (long long)(ms / units[i].ms),
	    units[i].unit);
}

static int
config_parse_bool(const char *s, int *out)
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
config_parse_fraction(const char *s, double lo, double hi, double *out)
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
config_parse_int(const char *s, int lo, int hi, int *out)
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
config_resolve_user(const char *s, uid_t *out)
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
config_resolve_group(const char *s, gid_t *out)
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

/* ---- the key table ---- */

enum config_key_type {
	KEY_STRING,	/* any text */
	KEY_SECRET,	/* an inline secret: wiped when replaced */
	KEY_URL,	/* checked after the parse, once allow_http is known */
	KEY_PATH,	/* an absolute path */
	KEY_POINTER,	/* an RFC 6901 JSON pointer; empty: not used */
	KEY_DURATION,	/* config_parse_duration, int64_t ms */
	KEY_BOOL,	/* int */
	KEY_NUMBER,	/* int, min to max */
	KEY_FRACTION,	/* double, min to max */
	KEY_CHOICE,	/* one of choices; an enum, the name's index */
	KEY_MODE,	/* config_parse_mode */
	KEY_OWNER,	/* a user; unset: (uid_t)-1 */
	KEY_GROUP,	/* a group; unset: (gid_t)-1 */
	KEY_ARGV,	/* a hook: an absolute program and its arguments */
	/* account files only: set by the account parser itself */
	KEY_FILE,	/* a path, resolved and read after the parse */
	KEY_USERS,	/* a list of users, added to [access] */
	KEY_GROUPS,	/* a list of groups, added to [access] */
	KEY_LOGIN_USERS,	/* the same, for login_users */
	KEY_LOGIN_GROUPS,	/* ... and login_groups */
};

enum config_section {
	S_ACCOUNT,	/* the sections of an account file ... */
	S_RESPONSE,
	S_REFRESH,
	S_FILE,		/* repeatable: each is one struct sink_conf */
	S_ACCESS,
	S_HOOKS,	/* ... end here */
	S_TOKEND,	/* the global file's sections */
	S_FLEET,
	S_COUNT		/* not a section: none, or an unknown one */
};

static const char *const config_section_names[S_COUNT] = {
	"account", "response", "refresh", "file", "access", "hooks", "tokend",
	"fleet"
};

/* Paths read after the parse; their line numbers are kept for messages. */
enum file_key {
	F_CLIENT_SECRET,
	F_PASSWORD,
	F_REFRESH_TOKEN,
	F_TOKEN,
	F_CA,
	F_CLIENT_KEY,
	F_CLIENT_CERT,
	F_SERVICE_ACCOUNT,
	F_COUNT
};

/*
 * One key. Its value is stored at offset in the section's struct: struct
 * config for [tokend], struct sink_conf for [file], struct account_conf
 * for the other sections of an account file. The default is text for the
 * same parser as a value from a file (NULL: unset, that is NULL, 0 or -1
 * for an owner or group).
 */
struct config_key {
	enum config_section	 section;
	const char		*name;
	enum config_key_type	 type;
	size_t			 offset;
	const char *const	*choices;	/* NULL-terminated */
	double			 min, max;	/* numbers, fractions */
	const char		*default_str;
	enum file_key		 file;		/* KEY_FILE: which */
};

/* The index of each name is its enum value. */
static const char *const config_grant_names[] = {
	"client_credentials", "password", "refresh_token", "static",
	"device_code", "authorization_code", "jwt_bearer", NULL
};
static const char *const config_client_auth_names[] = {
	"basic", "post", "none", "private_key_jwt", "client_secret_jwt",
	"tls_client_auth", "self_signed_tls_client_auth", NULL
};
static const char *const config_assertion_in_names[] = {
	"form", "bearer", NULL
};
static const char *const config_basic_encoding_names[] = {
	"rfc6749", "raw", NULL
};
static const char *const config_format_names[] = {
	"raw", "json", "env", "header", NULL
};
static const char *const config_log_level_names[] = {
	"error", "warning", "info", "debug", NULL
};

_Static_assert(nitems(config_grant_names) == GRANT_JWT_BEARER + 2,
    "a name for each enum grant");
_Static_assert(nitems(config_client_auth_names) ==
    CLIENT_AUTH_SELF_SIGNED_TLS + 2, "a name for each enum client_auth");
_Static_assert(nitems(config_assertion_in_names) == ASSERTION_IN_BEARER + 2,
    "a name for each enum assertion_in");
_Static_assert(nitems(config_basic_encoding_names) ==
    BASIC_ENCODING_RAW + 2, "a name for each enum basic_encoding");
_Static_assert(nitems(config_format_names) == SINK_HEADER + 2,
    "a name for each enum sink_format");
_Static_assert(nitems(config_log_level_names) == LOG_LEVEL_DEBUG + 2,
    "a name for each enum log_level");
/* KEY_CHOICE stores the index as an int */
_Static_assert(sizeof (enum grant) == sizeof (int) &&
    sizeof (enum client_auth) == sizeof (int) &&
    sizeof (enum basic_encoding) == sizeof (int) &&
    sizeof (enum assertion_in) == sizeof (int) &&
    sizeof (enum sink_format) == sizeof (int) &&
    sizeof (enum log_level) == sizeof (int), "enums are ints");

const char *
config_grant_name(enum grant g)
{
	return (size_t)g < nitems(config_grant_names) - 1 ?
	    config_grant_names[g] : "?";
}

const char *
config_client_auth_name(enum client_auth a)
{
	return (size_t)a < nitems(config_client_auth_names) - 1 ?
	    config_client_auth_names[a] : "?";
}

#define AC(f)	offsetof(struct account_conf, f)
#define SC(f)	offsetof(struct sink_conf, f)
#define GC(f)	offsetof(struct config, f)
#define FC(f)	offsetof(struct fleet_conf, f)

static const struct config_key config_keys[] = {
	{ S_ACCOUNT, "grant", KEY_CHOICE, AC(grant),
	    .choices = config_grant_names,
	    .default_str = "client_credentials" },
	{ S_ACCOUNT, "token_url", KEY_URL, AC(token_url),
	    .default_str = NULL },
	/* unset: token_url's value, after the parse */
	{ S_ACCOUNT, "refresh_url", KEY_URL, AC(refresh_url),
	    .default_str = NULL },
	{ S_ACCOUNT, "issuer", KEY_URL, AC(issuer),
	    .default_str = NULL },
	{ S_ACCOUNT, "authorization_url", KEY_URL, AC(authorization_url),
	    .default_str = NULL },
	{ S_ACCOUNT, "device_authorization_url", KEY_URL,
	    AC(device_authorization_url), .default_str = NULL },
	{ S_ACCOUNT, "revocation_url", KEY_URL, AC(revocation_url),
	    .default_str = NULL },
	/* authorization_code: checked and defaulted after the parse */
	{ S_ACCOUNT, "redirect_uri", KEY_STRING, AC(redirect_uri),
	    .default_str = NULL },
	{ S_ACCOUNT, "client_id", KEY_STRING, AC(client_id),
	    .default_str = NULL },
	{ S_ACCOUNT, "client_secret", KEY_SECRET, AC(client_secret),
	    .default_str = NULL },
	{ S_ACCOUNT, "client_secret_file", KEY_FILE, 0,
	    .file = F_CLIENT_SECRET, .default_str = NULL },
	/* unset: basic with a client secret, else none, after the parse */
	{ S_ACCOUNT, "client_auth", KEY_CHOICE, AC(client_auth),
	    .choices = config_client_auth_names, .default_str = "none" },
	{ S_ACCOUNT, "client_key_file", KEY_FILE, 0,
	    .file = F_CLIENT_KEY, .default_str = NULL },
	{ S_ACCOUNT, "client_key_id", KEY_STRING, AC(client_key_id),
	    .default_str = NULL },
	/* unset: from the key's type, after the parse */
	{ S_ACCOUNT, "client_key_alg", KEY_STRING, AC(client_key_alg_name),
	    .default_str = NULL },
	{ S_ACCOUNT, "client_cert_file", KEY_FILE, 0,
	    .file = F_CLIENT_CERT, .default_str = NULL },
	{ S_ACCOUNT, "service_account_file", KEY_FILE, 0,
	    .file = F_SERVICE_ACCOUNT, .default_str = NULL },
	{ S_ACCOUNT, "assertion_audience", KEY_STRING, AC(assertion_audience),
	    .default_str = NULL },
	{ S_ACCOUNT, "assertion_lifetime", KEY_DURATION,
	    AC(assertion_lifetime), .default_str = "5m" },
	{ S_ACCOUNT, "assertion_in", KEY_CHOICE, AC(assertion_in),
	    .choices = config_assertion_in_names, .default_str = "form" },
	{ S_ACCOUNT, "basic_encoding", KEY_CHOICE, AC(basic_encoding),
	    .choices = config_basic_encoding_names, .default_str = "rfc6749" },
	{ S_ACCOUNT, "username", KEY_STRING, AC(username),
	    .default_str = NULL },
	{ S_ACCOUNT, "password", KEY_SECRET, AC(password),
	    .default_str = NULL },
	{ S_ACCOUNT, "password_file", KEY_FILE, 0,
	    .file = F_PASSWORD, .default_str = NULL },
	{ S_ACCOUNT, "refresh_token_file", KEY_FILE, 0,
	    .file = F_REFRESH_TOKEN, .default_str = NULL },
	{ S_ACCOUNT, "token_file", KEY_FILE, 0,
	    .file = F_TOKEN, .default_str = NULL },
	{ S_ACCOUNT, "scope", KEY_STRING, AC(scope),
	    .default_str = NULL },
	{ S_ACCOUNT, "audience", KEY_STRING, AC(audience),
	    .default_str = NULL },
	{ S_ACCOUNT, "resource", KEY_STRING, AC(resource),
	    .default_str = NULL },
	{ S_ACCOUNT, "ca_file", KEY_FILE, 0,
	    .file = F_CA, .default_str = NULL },
	{ S_ACCOUNT, "timeout", KEY_DURATION, AC(timeout),
	    .default_str = "30s" },
	{ S_ACCOUNT, "allow_http", KEY_BOOL, AC(allow_http),
	    .default_str = "no" },
	{ S_ACCOUNT, "shared", KEY_BOOL, AC(shared),
	    .default_str = "no" },
	{ S_ACCOUNT, "proxy", KEY_STRING, AC(proxy),
	    .default_str = NULL },

	{ S_RESPONSE, "access_token", KEY_POINTER, AC(response.access_token),
	    .default_str = "/access_token" },
	{ S_RESPONSE, "refresh_token", KEY_POINTER, AC(response.refresh_token),
	    .default_str = "/refresh_token" },
	{ S_RESPONSE, "expires_in", KEY_POINTER, AC(response.expires_in),
	    .default_str = "/expires_in" },
	{ S_RESPONSE, "expires_at", KEY_POINTER, AC(response.expires_at),
	    .default_str = NULL },
	{ S_RESPONSE, "token_type", KEY_POINTER, AC(response.token_type),
	    .default_str = "/token_type" },
	{ S_RESPONSE, "default_lifetime", KEY_DURATION,
	    AC(response.default_lifetime), .default_str = "1h" },

	{ S_REFRESH, "margin", KEY_DURATION, AC(refresh.margin),
	    .default_str = "5m" },
	{ S_REFRESH, "ratio", KEY_FRACTION, AC(refresh.ratio),
	    .min = 0.01, .max = 1, .default_str = "0.75" },
	{ S_REFRESH, "jitter", KEY_FRACTION, AC(refresh.jitter),
	    .min = 0, .max = 0.5, .default_str = "0.1" },
	{ S_REFRESH, "min_backoff", KEY_DURATION, AC(refresh.min_backoff),
	    .default_str = "1s" },
	{ S_REFRESH, "max_backoff", KEY_DURATION, AC(refresh.max_backoff),
	    .default_str = "5m" },
	{ S_REFRESH, "min_interval", KEY_DURATION, AC(refresh.min_interval),
	    .default_str = "30s" },

	{ S_FILE, "path", KEY_STRING, SC(path),
	    .default_str = NULL },
	{ S_FILE, "format", KEY_CHOICE, SC(format),
	    .choices = config_format_names, .default_str = "raw" },
	{ S_FILE, "mode", KEY_MODE, SC(mode),
	    .default_str = "0640" },
	{ S_FILE, "owner", KEY_OWNER, SC(uid),
	    .default_str = NULL },
	{ S_FILE, "group", KEY_GROUP, SC(gid),
	    .default_str = NULL },

	{ S_ACCESS, "users", KEY_USERS, 0,
	    .default_str = NULL },
	{ S_ACCESS, "groups", KEY_GROUPS, 0,
	    .default_str = NULL },
	{ S_ACCESS, "login_users", KEY_LOGIN_USERS, 0,
	    .default_str = NULL },
	{ S_ACCESS, "login_groups", KEY_LOGIN_GROUPS, 0,
	    .default_str = NULL },

	{ S_HOOKS, "on_refresh", KEY_ARGV, AC(on_refresh),
	    .default_str = NULL },
	{ S_HOOKS, "on_failure", KEY_ARGV, AC(on_failure),
	    .default_str = NULL },

	/* $CONFIGURATION_DIRECTORY/accounts.d first: see config_global_defaults */
	{ S_TOKEND, "accounts_dir", KEY_PATH, GC(accounts_dir),
	    .default_str = DEFAULT_ACCOUNTS_DIR },
	/* $STATE_DIRECTORY first: see config_global_defaults */
	{ S_TOKEND, "state_dir", KEY_PATH, GC(state_dir),
	    .default_str = DEFAULT_STATE_DIR },
	/* $RUNTIME_DIRECTORY/tokend.sock first: see config_global_defaults */
	{ S_TOKEND, "socket", KEY_PATH, GC(socket_path),
	    .default_str = DEFAULT_SOCKET },
	{ S_TOKEND, "log_level", KEY_CHOICE, GC(log_level),
	    .choices = config_log_level_names, .default_str = "info" },
	{ S_TOKEND, "max_requests", KEY_NUMBER, GC(max_requests),
	    .min = 1, .max = 100000, .default_str = "64" },
	{ S_TOKEND, "max_requests_per_host", KEY_NUMBER,
	    GC(max_requests_per_host), .min = 1, .max = 100000,
	    .default_str = "4" },

	/* checked and read after the parse: see config_fleet_finish */
	{ S_FLEET, "redis", KEY_STRING, FC(redis),
	    .default_str = NULL },
	{ S_FLEET, "password_file", KEY_PATH, FC(password_path),
	    .default_str = NULL },
	{ S_FLEET, "key_file", KEY_PATH, FC(key_path),
	    .default_str = NULL },
	{ S_FLEET, "node", KEY_STRING, FC(node),
	    .default_str = NULL },
	{ S_FLEET, "key_prefix", KEY_STRING, FC(key_prefix),
	    .default_str = "tokend:" },
	{ S_FLEET, "lease", KEY_DURATION, FC(lease),
	    .min = 1000, .max = 600000, .default_str = "15s" },
	{ S_FLEET, "timeout", KEY_DURATION, FC(timeout),
	    .min = 100, .max = 60000, .default_str = "5s" },
};

#define CONFIG_NKEYS	nitems(config_keys)

/* ---- setting a key from the table ---- */

/* A section of first..last by name; S_COUNT if there is none. */
static enum config_section
config_section_find(const char *name, enum config_section first,
    enum config_section last)
{
	int	 i;

	for (i = first; i <= (int)last; i++)
		if (!strcmp(name, config_section_names[i]))
			return (enum config_section)i;
	return S_COUNT;
}

/* The index of a key in config_keys; -1 if the section has no such key. */
static int
config_key_find(enum config_section section, const char *name)
{
	size_t	 i;

	for (i = 0; i < CONFIG_NKEYS; i++)
		if (config_keys[i].section == section &&
		    !strcmp(config_keys[i].name, name))
			return (int)i;
	return -1;
}

/*
 * Whether a message about a bad value repeats it. Those about the global
 * file never have, and people grep for them as they are.
 */
static int
config_key_quotes_value(const struct config_key *key)
{
	return key->section != S_TOKEND && key->section != S_FLEET;
}

/* What follows a bad value in a message: ", not 'VALUE'", or nothing. */
static char *
config_key_not(const struct config_key *key, const char *value)
{
	char	*s;

	if (!config_key_quotes_value(key))
		return xstrdup("");
	xasprintf(&s, ", not '%s'", value);
	return s;
}

/* "a, b, c or d" */
static char *
config_key_choices_text(const struct config_key *key)
{
	char	*s = xstrdup(""), *next;
	size_t	 i;

	for (i = 0; key->choices[i] != NULL; i++) {
		xasprintf(&next, "%s%s%s", s, i == 0 ? "" :
		    key->choices[i + 1] == NULL ? " or " : ", ",
		    key->choices[i]);
		free(s);
		s = next;
	}
	return s;
}

static int
config_key_set_choice(const struct config_key *key, int *out,
    const char *value, char **cause)
{
	char	*list;
	int	 i;

	for (i = 0; key->choices[i] != NULL; i++)
		if (!strcmp(value, key->choices[i])) {
			*out = i;
			return 0;
		}
	list = config_key_choices_text(key);
	if (config_key_quotes_value(key))
		xasprintf(cause, "unknown %s '%s' (%s)", key->name, value,
		    list);
	else
		xasprintf(cause, "%s: expected %s", key->name, list);
	free(list);
	return -1;
}

static int
config_key_set_number(const struct config_key *key, void *out,
    const char *value, char **cause)
{
	char	*not;

	if (key->type == KEY_NUMBER &&
	    config_parse_int(value, (int)key->min, (int)key->max, out) == 0)
		return 0;
	if (key->type == KEY_FRACTION &&
	    config_parse_fraction(value, key->min, key->max, out) == 0)
		return 0;
	not = config_key_not(key, value);
	if (key->type == KEY_NUMBER)
		xasprintf(cause, "%s: expected a number from %d to %d%s",
		    key->name, (int)key->min, (int)key->max, not);
	else
		xasprintf(cause, "%s: expected a number from %g to %g%s",
		    key->name, key->min, key->max, not);
	free(not);
	return -1;
}

/* A hook runs without a shell, so its program is an absolute path. */
static int
config_key_set_argv(const struct config_key *key, char ***out,
    const char *value, char **cause)
{
	char	**argv;

	if (config_parse_argv(value, &argv) != 0) {
		xasprintf(cause, "%s: unbalanced quotes", key->name);
		return -1;
	}
	if (argv[0][0] != '/') {
		xasprintf(cause, "%s: the program needs an absolute path "
		    "(hooks run without a shell)", key->name);
		strv_free(argv);
		return -1;
	}
	strv_free(*out);
	*out = argv;
	return 0;
}

/* A bad pointer leaves none: "[response] access_token cannot be empty". */
static int
config_key_set_pointer(const struct config_key *key, char **out,
    const char *value, char **cause)
{
	free(*out);
	*out = NULL;
	if (*value == '\0')
		return 0;
	if (*value != '/') {
		xasprintf(cause, "%s: a JSON pointer starts with '/' "
		    "(RFC 6901)", key->name);
		return -1;
	}
	*out = xstrdup(value);
	return 0;
}

static void
config_key_set_string(const struct config_key *key, char **out,
    const char *value)
{
	if (key->type == KEY_SECRET)
		freezero_str(*out);
	else
		free(*out);
	*out = xstrdup(value);
}

/*
 * Parse value as key's type into base (the struct of key's section). On
 * failure, -1 with a message for "FILE:LINE: " in *cause.
 */
static int
config_key_set(const struct config_key *key, void *base, const char *value,
    char **cause)
{
	void	*p = (char *)base + key->offset;
	int64_t	 duration;
	mode_t	 mode;
	int	 b;

	switch (key->type) {
	case KEY_STRING:
	case KEY_SECRET:
	case KEY_URL:
		config_key_set_string(key, p, value);
		return 0;
	case KEY_PATH:
		if (*value != '/') {
			xasprintf(cause, "%s must be an absolute path",
			    key->name);
			return -1;
		}
		config_key_set_string(key, p, value);
		return 0;
	case KEY_POINTER:
		return config_key_set_pointer(key, p, value, cause);
	case KEY_DURATION:
		if ((b = config_parse_duration(value, &duration)) == -ERANGE) {
			xasprintf(cause, "%s: duration '%s' is longer than 10 "
			    "years (%dd), the most a duration may be", key->name,
			    value, DURATION_MAX_DAYS);
			return -1;
		}
		if (b != 0) {
			xasprintf(cause, "%s: bad duration '%s' (use e.g. 90, "
			    "30s, 5m, 2h, 7d)", key->name, value);
			return -1;
		}
		*(int64_t *)p = duration;
		return 0;
	case KEY_BOOL:
		if (config_parse_bool(value, &b) != 0) {
			xasprintf(cause, "%s: expected yes or no, not '%s'",
			    key->name, value);
			return -1;
		}
		*(int *)p = b;
		return 0;
	case KEY_NUMBER:
	case KEY_FRACTION:
		return config_key_set_number(key, p, value, cause);
	case KEY_CHOICE:
		return config_key_set_choice(key, p, value, cause);
	case KEY_MODE:
		if (config_parse_mode(value, &mode) != 0) {
			xasprintf(cause, "%s: expected octal permissions "
			    "without execute bits such as 0640, not '%s'",
			    key->name, value);
			return -1;
		}
		*(mode_t *)p = mode;
		return 0;
	case KEY_OWNER:
		if (config_resolve_user(value, p) != 0) {
			xasprintf(cause, "unknown user '%s'", value);
			return -1;
		}
		return 0;
	case KEY_GROUP:
		if (config_resolve_group(value, p) != 0) {
			xasprintf(cause, "unknown group '%s'", value);
			return -1;
		}
		return 0;
	case KEY_ARGV:
		return config_key_set_argv(key, p, value, cause);
	case KEY_FILE:
	case KEY_USERS:
	case KEY_GROUPS:
	case KEY_LOGIN_USERS:
	case KEY_LOGIN_GROUPS:
		break;
	}
	fatalx("%s: key %s is not stored in its section", __func__, key->name);
}

/* Set every key of one section in base to its default. */
static void
config_key_defaults(enum config_section section, void *base)
{
	const struct config_key	*key;
	char			*cause;
	size_t			 i;

	for (i = 0; i < CONFIG_NKEYS; i++) {
		key = &config_keys[i];
		if (key->section != section)
			continue;
		if (key->default_str != NULL) {
			if (config_key_set(key, base, key->default_str,
			    &cause) != 0)
				fatalx("default of %s: %s", key->name, cause);
		} else if (key->type == KEY_OWNER)
			*(uid_t *)((char *)base + key->offset) = (uid_t)-1;
		else if (key->type == KEY_GROUP)
			*(gid_t *)((char *)base + key->offset) = (gid_t)-1;
	}
}

/* ---- account files ---- */

/* Form parameters the request builder sets itself. */
static const char *const reserved_params[] = {
	"grant_type", "client_id", "client_secret", "username", "password",
	"refresh_token", "scope", "audience", "resource", "assertion",
	"client_assertion", "client_assertion_type", NULL
};

/* Claims every assertion gets from tokend alone. */
static const char *const reserved_claims[] = {
	"jti", "iat", "exp", "nbf", NULL
};

/* Authorization request parameters the login sets itself. */
static const char *const reserved_authorize_params[] = {
	"response_type", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method", NULL
};

/* A key of the current section instance, in a tree by name. */
struct seen_key {
	char		*name;
	int		 line;
};

struct account_parse {
	const char		*file;
	char			*dir;		/* the account file's folder */
	struct diag		*diag;
	struct account_conf	*ac;

	enum config_section	 section;	/* S_COUNT: none or unknown */
	int			 section_line[S_COUNT];
	int			 account_line;

	void			*seen;		/* tsearch tree of seen_key */

	char			*file_value[F_COUNT];
	int			 file_line[F_COUNT];
	/* by config_keys index: where each key is, and if it had a value */
	int			 key_line[CONFIG_NKEYS];
	int			 key_given[CONFIG_NKEYS];

	char			*identity;
	size_t			 identity_len;

	int			 on_machine;	/* hold it to this machine */
	int			 authorize_param_line;	/* the last one */
	int			 claim_line;	/* the last assertion.CLAIM */
	int			 sa_failed;	/* service_account_file said
						   what is wrong with it */
};

static void
config_identity_add(struct account_parse *ap, const char *s, size_t len)
{
	ap->identity = xreallocarray(ap->identity, ap->identity_len + len + 1,
	    1);
	memcpy(ap->identity + ap->identity_len, s, len);
	ap->identity[ap->identity_len + len] = '\0';
	ap->identity_len += len + 1;
}

/* Every section but [file], whose defaults each [file] gets on its own. */
static void
config_account_defaults(struct account_conf *ac)
{
	int	 i;

	for (i = S_ACCOUNT; i <= S_HOOKS; i++)
		if (i != S_FILE)
			config_key_defaults((enum config_section)i, ac);
}

static int
config_seen_cmp(const void *a, const void *b)
{
	return strcmp(((const struct seen_key *)a)->name,
	    ((const struct seen_key *)b)->name);
}

static void
config_seen_free(void *p)
{
	struct seen_key	*sk = p;

	free(sk->name);
	free(sk);
}

/* Forget the keys of the section instance that just ended. */
static void
config_seen_clear(struct account_parse *ap)
{
	tdestroy(ap->seen, config_seen_free);
	ap->seen = NULL;
}

static int
config_account_section_cb(void *arg, const char *name, int line)
{
	struct account_parse	*ap = arg;
	struct sink_conf	*sc;
	enum config_section	 i;

	config_seen_clear(ap);
	config_identity_add(ap, name, strlen(name));
	i = config_section_find(name, S_ACCOUNT, S_HOOKS);
	ap->section = i;
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
		config_key_defaults(S_FILE, sc);
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

/*
 * [access] users and groups. One that does not exist (yet: an example
 * installed before its consumer) is a warning and grants nothing; what
 * each name resolved to is part of the identity, so the reload after it
 * appears hands the account the new list.
 */
static void
config_add_ids(struct account_parse *ap, const char *value, int line,
    enum config_key_type type)
{
	struct account_conf	*ac = ap->ac;
	char			*copy, *word, *save = NULL, id[32];
	uid_t			 uid, **users = &ac->users;
	gid_t			 gid, **gids = &ac->groups;
	size_t			*nusers = &ac->nusers, *ngids = &ac->ngroups;
	int			 rc, groups;

	groups = type == KEY_GROUPS || type == KEY_LOGIN_GROUPS;
	if (type == KEY_LOGIN_USERS || type == KEY_LOGIN_GROUPS) {
		users = &ac->login_users;
		nusers = &ac->nlogin_users;
		gids = &ac->login_groups;
		ngids = &ac->nlogin_groups;
	}

	copy = xstrdup(value);
	for (word = strtok_r(copy, " \t,", &save); word != NULL;
	    word = strtok_r(NULL, " \t,", &save)) {
		rc = groups ? config_resolve_group(word, &gid) :
		    config_resolve_user(word, &uid);
		snprintf(id, sizeof id, "%lld", rc != 0 ? -1LL : groups ?
		    (long long)gid : (long long)uid);
		config_identity_add(ap, id, strlen(id));
		if (rc != 0) {
			diag_warning(ap->diag, ap->file, line, "unknown %s "
			    "'%s': it is given no access until it exists "
			    "(then reload)", groups ? "group" : "user", word);
			continue;
		}
		if (groups) {
			*gids = xreallocarray(*gids, *ngids + 1, sizeof **gids);
			(*gids)[(*ngids)++] = gid;
		} else {
			*users = xreallocarray(*users, *nusers + 1,
			    sizeof **users);
			(*users)[(*nusers)++] = uid;
		}
	}
	free(copy);
}

/*
 * param.NAME (token requests), authorize_param.NAME (the authorization
 * request of a login) or assertion.CLAIM (a signed assertion's claims):
 * prefix is the key's own, up to and with the dot.
 */
static int
config_account_param(struct account_parse *ap, const char *key,
    const char *value, int line)
{
	struct account_conf	*ac = ap->ac;
	int			 authorize = !strncmp(key, "authorize_param.",
				    strlen("authorize_param."));
	int			 claim = !strncmp(key, "assertion.",
				    strlen("assertion."));
	const char *const	*reserved = authorize ?
				    reserved_authorize_params : claim ?
				    reserved_claims : reserved_params;
	struct form_param     **params = authorize ? &ac->authorize_params :
				    claim ? &ac->claims : &ac->params;
	size_t			*n = authorize ? &ac->nauthorize_params :
				    claim ? &ac->nclaims : &ac->nparams;
	const char		*name = strchr(key, '.') + 1;
	size_t			 i;

	if (*name == '\0') {
		diag_error(ap->diag, ap->file, line, "%s needs a name", key);
		return 0;
	}
	for (i = 0; reserved[i] != NULL; i++)
		if (!strcmp(name, reserved[i])) {
			diag_error(ap->diag, ap->file, line, "%s is set by "
			    "tokend itself%s", key, claim ? " at each request "
			    "(assertion_lifetime sets exp)" : "; use its own "
			    "key");
			return 0;
		}
	/* a repeated key was refused by config_account_seen */
	*params = xreallocarray(*params, *n + 1, sizeof **params);
	(*params)[*n].name = xstrdup(name);
	(*params)[*n].value = xstrdup(value);
	(*n)++;
	if (authorize)
		ap->authorize_param_line = line;
	if (claim)
		ap->claim_line = line;
	return 0;
}

/*
 * Note key in this section instance; -1 if it was there before. A tree,
 * not a list: a file may hold a hundred thousand keys, and a reload
 * parses it inside the event loop.
 */
static int
config_account_seen(struct account_parse *ap, const char *key, int line)
{
	struct seen_key	  probe, *sk, **found;

	probe.name = (char *)key;
	if ((found = tfind(&probe, &ap->seen, config_seen_cmp)) != NULL) {
		diag_error(ap->diag, ap->file, line, "duplicate key '%s' "
		    "(first at line %d)", key, (*found)->line);
		return -1;
	}
	sk = xcalloc(1, sizeof *sk);
	sk->name = xstrdup(key);
	sk->line = line;
	if (tsearch(sk, &ap->seen, config_seen_cmp) == NULL)
		fatal("tsearch");
	return 0;
}

/*
 * An empty value keeps the default: unset for strings, paths, owners
 * and hooks; a JSON pointer is disabled; an empty list is no list.
 * Keys with no such default (durations, numbers, choices) need one.
 */
static int
config_account_empty_keeps_default(const struct config_key *key)
{
	switch (key->type) {
	case KEY_STRING:
	case KEY_URL:
	case KEY_SECRET:
	case KEY_FILE:
	case KEY_OWNER:
	case KEY_GROUP:
	case KEY_ARGV:
	case KEY_USERS:
	case KEY_GROUPS:
	case KEY_LOGIN_USERS:
	case KEY_LOGIN_GROUPS:
		return 1;
	default:
		return 0;
	}
}

/* Store the value of config_keys[i] in the current section. */
static void
config_account_set_value(struct account_parse *ap, int i, const char *value,
    int line)
{
	const struct config_key	*key = &config_keys[i];
	struct account_conf	*ac = ap->ac;
	void			*base;
	char			*cause;

	if (*value == '\0' && key->type != KEY_POINTER) {
		if (!config_account_empty_keeps_default(key))
			diag_error(ap->diag, ap->file, line, "%s needs a value",
			    key->name);
		return;
	}
	/* a bad value is not given: it leaves the default (and its checks) */
	ap->key_given[i] = 1;
	switch (key->type) {
	case KEY_FILE:
		ap->file_value[key->file] = xstrdup(value);
		ap->file_line[key->file] = line;
		return;
	case KEY_USERS:
	case KEY_GROUPS:
	case KEY_LOGIN_USERS:
	case KEY_LOGIN_GROUPS:
		config_add_ids(ap, value, line, key->type);
		return;
	default:
		break;
	}
	base = ap->section == S_FILE ? (void *)&ac->sinks[ac->nsinks - 1] :
	    (void *)ac;
	if (config_key_set(key, base, value, &cause) != 0) {
		diag_error(ap->diag, ap->file, line, "%s", cause);
		free(cause);
		ap->key_given[i] = 0;
	}
}

static int
config_account_value_cb(void *arg, const char *section, const char *key,
    const char *value, int line)
{
	struct account_parse	*ap = arg;
	int			 i;

	(void)section;
	config_identity_add(ap, key, strlen(key));
	config_identity_add(ap, value, strlen(value));
	if (ap->section == S_COUNT)
		return 0;	/* already reported */
	if (config_account_seen(ap, key, line) != 0)
		return 0;
	if (ap->section == S_ACCOUNT && (!strncmp(key, "param.", 6) ||
	    !strncmp(key, "authorize_param.", strlen("authorize_param.")) ||
	    !strncmp(key, "assertion.", strlen("assertion."))))
		return config_account_param(ap, key, value, line);
	if ((i = config_key_find(ap->section, key)) == -1) {
		diag_error(ap->diag, ap->file, line, "unknown key '%s' in "
		    "[%s]", key, config_section_names[ap->section]);
		return 0;
	}
	ap->key_line[i] = line;
	if (ap->section == S_FILE && !strcmp(config_keys[i].name, "path"))
		ap->ac->sinks[ap->ac->nsinks - 1].path_line = line;
	config_account_set_value(ap, i, value, line);
	return 0;
}

static void
config_account_error_cb(void *arg, int line, const char *msg)
{
	struct account_parse	*ap = arg;

	diag_error(ap->diag, ap->file, line, "%s", msg);
}

/* The line of a key, for messages; else its section's, or [account]'s. */
static int
config_key_line_in(struct account_parse *ap, enum config_section section,
    const char *name)
{
	int	 i;

	if ((i = config_key_find(section, name)) != -1 &&
	    ap->key_line[i] != 0)
		return ap->key_line[i];
	if (ap->section_line[section] != 0)
		return ap->section_line[section];
	return ap->account_line;
}

static int
config_key_line(struct account_parse *ap, const char *name)
{
	return config_key_line_in(ap, S_ACCOUNT, name);
}

/* Whether a key was given a value. */
static int
config_key_given_in(struct account_parse *ap, enum config_section section,
    const char *name)
{
	int	 i;

	return (i = config_key_find(section, name)) != -1 &&
	    ap->key_given[i];
}

static int
config_key_given(struct account_parse *ap, const char *name)
{
	return config_key_given_in(ap, S_ACCOUNT, name);
}

static char *
config_resolve_path(struct account_parse *ap, const char *path,
    int credential)
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

/* Whether a relative *_file path is looked for in $CREDENTIALS_DIRECTORY. */
static int
config_path_is_credential(const char *path)
{
	const char	*creds = getenv("CREDENTIALS_DIRECTORY");

	return path[0] != '/' && creds != NULL && *creds != '\0';
}

/*
 * A secret file's contents as the secret: one trailing newline (LF or
 * CRLF) is not part of it. -1 when nothing is left or a NUL is inside.
 */
static int
config_secret_trim(char *buf, size_t *len)
{
	if (*len > 0 && buf[*len - 1] == '\n')
		buf[--*len] = '\0';
	if (*len > 0 && buf[*len - 1] == '\r')
		buf[--*len] = '\0';
	return *len == 0 || strlen(buf) != *len ? -1 : 0;
}

/*
 * Read a credential file (a secret, a key, a certificate) whole into
 * *bufp and *lenp, its path resolved into *pathp: 0, or -1 once said.
 * Group- or world-readable is a warning; what it holds joins the
 * account's identity, so a reload sees a changed key.
 */
static int
config_read_credential(struct account_parse *ap, enum file_key fk,
    const char *key, char **bufp, size_t *lenp, char **pathp)
{
	struct stat	 st;
	unsigned char	 hash[32];
	char		*path;
	int		 rc;

	path = config_resolve_path(ap, ap->file_value[fk], 1);
	rc = read_file_capped(path, SECRET_FILE_MAX, bufp, lenp);
	if (rc != 0) {
		/*
		 * systemd 252 loads LoadCredential= files when the service
		 * starts, not at a reload: a secret added or changed since
		 * is not there (or is the old one) until a restart.
		 */
		diag_error(ap->diag, ap->file, ap->file_line[fk], "%s: cannot "
		    "read %s: %s%s", key, path, rc == -EFBIG ? "larger than 64 "
		    "KiB" : rc == -EINVAL ? "not a regular file" : rc ==
		    -EISDIR ? "a folder, not a file" : strerror(-rc), rc ==
		    -ENOENT && config_path_is_credential(ap->file_value[fk]) ?
		    " (systemd loads LoadCredential= files only when tokend "
		    "starts: run systemctl restart tokend; tokens and refresh "
		    "tokens survive a restart)" : "");
		free(path);
		return -1;
	}
	/* a certificate is public */
	if (fk != F_CLIENT_CERT && stat(path, &st) == 0 && (st.st_mode & 077))
		diag_warning(ap->diag, ap->file, ap->file_line[fk], "%s: %s is "
		    "readable by group or others (mode %04o)", key, path,
		    (unsigned)(st.st_mode & 07777));
	/*
	 * A hash, not the bytes: the identity is kept as long as the
	 * account, and grown by realloc, which would leave copies of a key
	 * behind unwiped.
	 */
	sha256(*bufp, *lenp, hash);
	config_identity_add(ap, (const char *)hash, sizeof hash);
	*pathp = path;
	return 0;
}

/*
 * Read a secret file into *out; one trailing newline is not part of it.
 * Its path, resolved, goes to *pathp when that is not NULL.
 */
static void
config_read_secret(struct account_parse *ap, enum file_key fk,
    const char *key, char **out, char **pathp)
{
	char		*path, *buf;
	size_t		 len;

	if (config_read_credential(ap, fk, key, &buf, &len, &path) != 0)
		return;
	if (config_secret_trim(buf, &len) != 0) {
		diag_error(ap->diag, ap->file, ap->file_line[fk], "%s: %s is "
		    "empty or holds a NUL byte", key, path);
		freezero_str(buf);
		free(path);
		return;
	}
	*out = buf;
	if (pathp != NULL) {
		free(*pathp);
		if ((*pathp = realpath(path, NULL)) == NULL)
			*pathp = path;
		else
			free(path);
	} else
		free(path);
}

/* The PEM private key pem[0..len) of `key` (at path) becomes the key. */
static void
config_load_key(struct account_parse *ap, enum file_key fk, const char *key,
    const char *path, const char *pem, size_t len)
{
	struct account_conf	*ac = ap->ac;
	char			*cause = NULL;

	if (jws_key_load(pem, len, &ac->client_key, &cause) != 0) {
		diag_error(ap->diag, ap->file, ap->file_line[fk], "%s: %s %s",
		    key, path, cause);
		free(cause);
		return;
	}
	ac->client_key_thumbprint = jws_key_fingerprint(ac->client_key);
	/* libcurl wants the PEM itself for mutual TLS */
	if (ap->file_value[F_CLIENT_CERT] != NULL) {
		ac->client_key_pem = xcalloc(1, len + 1);
		memcpy(ac->client_key_pem, pem, len);
		ac->client_key_pem_len = len;
	}
}

/*
 * service_account_file: a Google-style JSON key fills the assertion's
 * issuer, kid, key and token endpoint, and makes the grant jwt_bearer.
 */
static void
config_read_service_account(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	struct service_account	 sa;
	char			*buf, *path, *cause = NULL;
	size_t			 len;
	int			 line = ap->file_line[F_SERVICE_ACCOUNT];

	ap->sa_failed = 1;	/* until it is read */
	if (config_key_given(ap, "grant") && ac->grant != GRANT_JWT_BEARER) {
		diag_error(ap->diag, ap->file, line, "service_account_file is "
		    "for grant = jwt_bearer (the grant it implies)");
		return;
	}
	ac->grant = GRANT_JWT_BEARER;
	if (ap->file_value[F_CLIENT_KEY] != NULL) {
		diag_error(ap->diag, ap->file, line, "set client_key_file or "
		    "service_account_file, not both");
		return;
	}
	if (config_read_credential(ap, F_SERVICE_ACCOUNT,
	    "service_account_file", &buf, &len, &path) != 0)
		return;
	if (jws_service_account_parse(buf, len, &sa, &cause) != 0) {
		diag_error(ap->diag, ap->file, line, "service_account_file: %s "
		    "%s", path, cause);
		free(cause);
	} else {
		config_load_key(ap, F_SERVICE_ACCOUNT, "service_account_file: "
		    "its private_key in", path, sa.private_key,
		    strlen(sa.private_key));
		ac->assertion_iss = sa.client_email;
		sa.client_email = NULL;
		if (ac->client_key_id == NULL) {
			ac->client_key_id = sa.private_key_id;
			sa.private_key_id = NULL;
		}
		if (ac->token_url == NULL) {
			ac->token_url = sa.token_uri;
			sa.token_uri = NULL;
		}
		ac->scope_in_assertion = 1;
		ap->sa_failed = 0;
		if (ac->scope == NULL)
			diag_warning(ap->diag, ap->file, line, "service_account_"
			    "file without scope: Google gives an access token "
			    "only for the scopes asked for");
		jws_service_account_clear(&sa);
	}
	explicit_bzero(buf, len);
	free(buf);
	free(path);
}

/*
 * The certificate's "x5t" (SHA-1) and "x5t#S256" thumbprints (RFC 7515
 * 4.1.7, 4.1.8), base64url of its DER: how Microsoft Entra ID finds the
 * certificate credential a private_key_jwt assertion is signed with.
 */
static void
config_cert_thumbprints(struct account_conf *ac, X509 *x)
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 n;

	if (X509_digest(x, EVP_sha1(), md, &n) == 1)
		ac->client_cert_x5t = oauth_base64url(md, n);
	if (X509_digest(x, EVP_sha256(), md, &n) == 1)
		ac->client_cert_x5t256 = oauth_base64url(md, n);
}

/*
 * client_cert_file: PEM, the first certificate the client's (a chain may
 * follow). It must match the key; an expired one is a warning: the
 * server says no, and its CA may be lenient.
 */
static void
config_read_cert(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	const ASN1_TIME		*na;
	struct tm		 tm;
	X509			*x;
	BIO			*bio;
	char			*buf, *path;
	size_t			 len;
	int			 line = ap->file_line[F_CLIENT_CERT];

	if (config_read_credential(ap, F_CLIENT_CERT, "client_cert_file", &buf,
	    &len, &path) != 0)
		return;
	x = NULL;
	if (len <= INT_MAX && (bio = BIO_new_mem_buf(buf, (int)len)) != NULL) {
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	ERR_clear_error();
	if (x == NULL) {
		diag_error(ap->diag, ap->file, line, "client_cert_file: %s "
		    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
		    path);
		goto out;
	}
	if (ac->client_key == NULL) {
		if (ap->file_value[F_CLIENT_KEY] == NULL)
			diag_error(ap->diag, ap->file, line, "client_cert_file "
			    "needs client_key_file, the certificate's private "
			    "key");
	} else if (X509_check_private_key(x, jws_key_pkey(ac->client_key)) !=
	    1) {
		ERR_clear_error();
		diag_error(ap->diag, ap->file, line, "client_cert_file: %s is "
		    "not the certificate of the key in client_key_file", path);
		goto out;
	}
	if ((na = X509_get0_notAfter(x)) != NULL && ASN1_TIME_to_tm(na, &tm)) {
		ac->client_cert_not_after = (int64_t)timegm(&tm) *
		    MSEC_PER_SEC;
		if (ac->client_cert_not_after <= clock_wall_ms())
			diag_warning(ap->diag, ap->file, line, "client_cert_file: "
			    "%s expired on %04d-%02d-%02d %02d:%02d UTC; the "
			    "server will refuse it", path, tm.tm_year + 1900,
			    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
	}
	config_cert_thumbprints(ac, x);
	ac->client_cert = buf;
	ac->client_cert_len = len;
	buf = NULL;
out:
	X509_free(x);
	free(buf);
	free(path);
}

/* The keys: client_key_file or service_account_file, client_cert_file. */
static void
config_read_keys(struct account_parse *ap)
{
	char		*buf, *path;
	size_t		 len;

	if (ap->file_value[F_SERVICE_ACCOUNT] != NULL)
		config_read_service_account(ap);
	else if (ap->file_value[F_CLIENT_KEY] != NULL &&
	    config_read_credential(ap, F_CLIENT_KEY, "client_key_file", &buf,
	    &len, &path) == 0) {
		config_load_key(ap, F_CLIENT_KEY, "client_key_file", path, buf,
		    len);
		explicit_bzero(buf, len);
		free(buf);
		free(path);
	}
	if (ap->file_value[F_CLIENT_CERT] != NULL)
		config_read_cert(ap);
}

/*
 * proxy = URL: the only proxy the account's requests take (the
 * environment's https_proxy and kin are ignored). Its user:password, if
 * any, is not echoed.
 */
static void
config_proxy_check(struct account_parse *ap, const char *url)
{
	static const char *const schemes[] = { "http://", "https://",
	    "socks4://", "socks4a://", "socks5://", "socks5h://" };
	const char	*host = NULL;
	size_t		 i;
	int		 line = config_key_line(ap, "proxy");

	for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (!strncasecmp(url, schemes[i], strlen(schemes[i])))
			host = url + strlen(schemes[i]);
	if (host == NULL) {
		diag_error(ap->diag, ap->file, line, "proxy: expected a URL "
		    "that starts with http://, https://, socks4://, "
		    "socks4a://, socks5:// or socks5h://");
		return;
	}
	if (*host == '\0' || *host == '/' || strpbrk(url, " \t\r\n") != NULL)
		diag_error(ap->diag, ap->file, line, "proxy: malformed URL");
	else if (ap->ac->allow_http && !strncasecmp(ap->ac->token_url != NULL ?
	    ap->ac->token_url : "", "http://", 7))
		diag_warning(ap->diag, ap->file, line, "proxy: with an "
		    "http:// token_url the proxy sees the client secret and "
		    "every token");
}

static int
config_url_check(struct account_parse *ap, const char *key, const char *url)
{
	const char	*host;
	int		 line = config_key_line(ap, key);

	if (!strncasecmp(url, "https://", 8))
		host = url + 8;
	else if (!strncasecmp(url, "http://", 7)) {
		if (!ap->ac->allow_http) {
			diag_error(ap->diag, ap->file, line, "%s: http:// "
			    "sends secrets in clear text; use https:// or set "
			    "allow_http = yes", key);
			return -1;
		}
		host = url + 7;
	} else {
		diag_error(ap->diag, ap->file, line, "%s: expected an "
		    "https:// URL", key);
		return -1;
	}
	if (*host == '\0' || *host == '/' || strpbrk(url, " \t\r\n") != NULL) {
		diag_error(ap->diag, ap->file, line, "%s: malformed URL", key);
		return -1;
	}
	return 0;
}

/*
 * ca_file is handed to libcurl, which reads it only when a request goes
 * out: read it now, and want at least one certificate and no bad one.
 * Parsing costs some 100 us a certificate and accounts tend to share
 * one file, so the content last found good (by its hash) is not parsed
 * again: 10,000 accounts load in a fifth of the time.
 */
static void
config_check_ca(struct account_parse *ap, const char *path)
{
	static unsigned char	 good[32];
	static int		 have_good;
	unsigned char		 hash[32];
	BIO			*bio;
	X509			*x;
	char			*buf;
	const char		*why = NULL;
	size_t			 len;
	unsigned long		 err;
	int			 rc, n = 0;

	if ((rc = read_file_capped(path, CA_FILE_MAX, &buf, &len)) != 0) {
		diag_error(ap->diag, ap->file, ap->file_line[F_CA], "ca_file: "
		    "cannot read %s: %s", path, rc == -EFBIG ? "larger than 4 "
		    "MiB" : rc == -EINVAL ? "not a regular file" :
		    strerror(-rc));
		return;
	}
	sha256(buf, len, hash);
	if (have_good && memcmp(hash, good, sizeof hash) == 0) {
		free(buf);
		return;
	}
	if (len > INT_MAX || (bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
		fatalx("BIO_new_mem_buf failed");
	ERR_clear_error();
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		X509_free(x);
		n++;
	}
	/* the loop ends at the end of the text, or at a bad certificate */
	err = ERR_peek_last_error();
	if (err != 0 && (ERR_GET_LIB(err) != ERR_LIB_PEM ||
	    ERR_GET_REASON(err) != PEM_R_NO_START_LINE))
		why = "holds a PEM block that is not a valid certificate";
	else if (n == 0)
		why = "holds no PEM certificate (-----BEGIN CERTIFICATE-----)";
	ERR_clear_error();
	BIO_free(bio);
	free(buf);
	if (why != NULL) {
		diag_error(ap->diag, ap->file, ap->file_line[F_CA], "ca_file: "
		    "%s %s", path, why);
		return;
	}
	memcpy(good, hash, sizeof good);
	have_good = 1;
}

/* The *_file keys: secrets and the CA, read once the file is parsed. */
static void
config_account_read_files(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	struct stat		 st;

	if (ac->client_secret != NULL && ap->file_value[F_CLIENT_SECRET])
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "client_secret_file"), "set client_secret or "
		    "client_secret_file, not both");
	else if (ap->file_value[F_CLIENT_SECRET] != NULL)
		config_read_secret(ap, F_CLIENT_SECRET, "client_secret_file",
		    &ac->client_secret, NULL);
	if (ac->password != NULL && ap->file_value[F_PASSWORD])
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "password_file"), "set password or password_file, not "
		    "both");
	else if (ap->file_value[F_PASSWORD] != NULL)
		config_read_secret(ap, F_PASSWORD, "password_file",
		    &ac->password, NULL);
	if (ap->file_value[F_REFRESH_TOKEN] != NULL) {
		config_read_secret(ap, F_REFRESH_TOKEN, "refresh_token_file",
		    &ac->refresh_token, &ac->refresh_token_path);
		ac->refresh_token_line = ap->file_line[F_REFRESH_TOKEN];
	}
	if (ap->file_value[F_TOKEN] != NULL)
		config_read_secret(ap, F_TOKEN, "token_file",
		    &ac->static_token, NULL);
	if (ap->file_value[F_CA] != NULL) {
		ac->ca_file = config_resolve_path(ap, ap->file_value[F_CA], 0);
		config_check_ca(ap, ac->ca_file);
	}
	config_read_keys(ap);
	if ((ac->client_secret != NULL && ap->file_value[F_CLIENT_SECRET] ==
	    NULL) || (ac->password != NULL && ap->file_value[F_PASSWORD] ==
	    NULL)) {
		if (stat(ap->file, &st) == 0 && (st.st_mode & 077))
			diag_warning(ap->diag, ap->file, 0, "holds a secret "
			    "inline and is readable by group or others; use "
			    "client_secret_file / password_file or chmod 600");
	}
}

/* A static token, or the endpoint URLs; refresh_url defaults here. */
static void
config_account_check_urls(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;

	if (ac->grant == GRANT_STATIC) {
		if (ac->shared)
			diag_error(ap->diag, ap->file, config_key_line(ap,
			    "shared"), "a static token cannot be shared: it is "
			    "the same everywhere already");
		if (ap->file_value[F_TOKEN] == NULL)
			diag_error(ap->diag, ap->file, config_key_line(ap,
			    "grant"), "grant = static needs token_file");
		else if (ac->static_token != NULL &&
		    !str_is_printable(ac->static_token))
			diag_error(ap->diag, ap->file, ap->file_line[F_TOKEN],
			    "token_file: a token is visible ASCII without "
			    "spaces");
	} else {
		/* a login grant's own check says what it lacks */
		if (ac->token_url == NULL && ac->issuer == NULL &&
		    !GRANT_IS_LOGIN(ac->grant) && !ap->sa_failed)
			diag_error(ap->diag, ap->file, ap->account_line,
			    "token_url is missing");
		else if (ac->token_url != NULL)
			config_url_check(ap, "token_url", ac->token_url);
		if (ac->refresh_url != NULL)
			config_url_check(ap, "refresh_url", ac->refresh_url);
		if (ac->proxy != NULL)
			config_proxy_check(ap, ac->proxy);
		if (ap->file_value[F_TOKEN] != NULL)
			diag_error(ap->diag, ap->file, ap->file_line[F_TOKEN],
			    "token_file is for grant = static");
	}
	if (ac->token_url != NULL && ac->refresh_url == NULL)
		ac->refresh_url = xstrdup(ac->token_url);
}

/*
 * HTTP Basic: servers disagree on whether the pair is percent-decoded
 * (RFC 6749 2.3.1 says it is; authlib and glewlwyd do not), so say when
 * the id or secret holds a character one kind of server will misread.
 * Letters, digits and "-._~" are read right by all of them.
 */
static void
config_account_check_basic(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	const char		*what = NULL;
	int			 line = config_key_line(ap, "basic_encoding");

	/* without basic_encoding, point at the value that needs it */
	if (ac->client_id != NULL && !oauth_basic_safe(ac->client_id)) {
		what = "client_id";
		if (!config_key_given(ap, "basic_encoding"))
			line = config_key_line(ap, "client_id");
	} else if (ac->client_secret != NULL &&
	    !oauth_basic_safe(ac->client_secret)) {
		what = "the client secret";
		if (!config_key_given(ap, "basic_encoding"))
			line = ap->file_line[F_CLIENT_SECRET] != 0 ?
			    ap->file_line[F_CLIENT_SECRET] :
			    config_key_line(ap, "client_secret");
	}
	if (what == NULL)
		return;
	if (ac->basic_encoding == BASIC_ENCODING_RAW) {
		if (ac->client_id != NULL && strchr(ac->client_id, ':') != NULL)
			diag_error(ap->diag, ap->file, line, "basic_encoding = "
			    "raw cannot send a client_id holding ':' (the "
			    "server splits the pair at the first one); use "
			    "basic_encoding = rfc6749 or client_auth = post");
		else if (strpbrk(ac->client_id != NULL ? ac->client_id : "",
		    "%+") != NULL || (ac->client_secret != NULL &&
		    strpbrk(ac->client_secret, "%+") != NULL))
			diag_warning(ap->diag, ap->file, line, "%s holds '%%' or "
			    "'+', sent as they are with basic_encoding = raw; "
			    "a server that decodes the pair as RFC 6749 says "
			    "reads them differently (client_auth = post avoids "
			    "the question)", what);
		return;
	}
	diag_warning(ap->diag, ap->file, line, "%s holds characters that HTTP "
	    "Basic sends percent-encoded (RFC 6749 2.3.1); servers that do not "
	    "decode the pair (authlib, glewlwyd) refuse the client: if this "
	    "one does, set basic_encoding = raw or client_auth = post", what);
}

/* client_auth: its default depends on the credentials; what it needs. */
static void
config_account_check_auth(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	const char		*name;
	int			 has_secret, has_key, has_cert, line;

	has_secret = ac->client_secret != NULL ||
	    ap->file_value[F_CLIENT_SECRET] != NULL;
	/* a service account's key signs its grant, not the client */
	has_key = ap->file_value[F_CLIENT_KEY] != NULL;
	has_cert = ap->file_value[F_CLIENT_CERT] != NULL;
	ac->client_auth_given = config_key_given(ap, "client_auth");
	line = config_key_line(ap, "client_auth");
	name = config_client_auth_names[ac->client_auth];
	/*
	 * Unset: the strongest credential the file has, as discovery
	 * picks (a certificate, a key, a secret); a static token and a
	 * GitHub-style Bearer JWT authenticate no client.
	 */
	if (!ac->client_auth_given) {
		if (ac->grant == GRANT_STATIC || (ac->grant ==
		    GRANT_JWT_BEARER && ac->assertion_in == ASSERTION_IN_BEARER))
			ac->client_auth = CLIENT_AUTH_NONE;
		else if (has_cert)
			ac->client_auth = CLIENT_AUTH_TLS;
		else if (has_key && ac->grant != GRANT_JWT_BEARER)
			ac->client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT;
		else
			ac->client_auth = has_secret ? CLIENT_AUTH_BASIC :
			    CLIENT_AUTH_NONE;
		if (has_secret && ac->client_auth != CLIENT_AUTH_BASIC &&
		    ac->grant != GRANT_STATIC)
			diag_warning(ap->diag, ap->file, config_key_line(ap,
			    ap->file_value[F_CLIENT_SECRET] != NULL ?
			    "client_secret_file" : "client_secret"), "the client "
			    "secret is unused: with %s, client_auth is %s (set "
			    "client_auth to choose)", has_cert ?
			    "client_cert_file" : "client_key_file",
			    config_client_auth_names[ac->client_auth]);
	} else switch (ac->client_auth) {
	case CLIENT_AUTH_BASIC:
	case CLIENT_AUTH_POST:
	case CLIENT_AUTH_CLIENT_SECRET_JWT:
		if (!has_secret)
			diag_error(ap->diag, ap->file, line, "client_auth = %s "
			    "needs client_secret or client_secret_file", name);
		break;
	case CLIENT_AUTH_PRIVATE_KEY_JWT:
		if (!has_key)
			diag_error(ap->diag, ap->file, line, "client_auth = "
			    "private_key_jwt needs client_key_file");
		break;
	case CLIENT_AUTH_TLS:
	case CLIENT_AUTH_SELF_SIGNED_TLS:
		/* a certificate without its key: client_cert_file's error */
		if (!has_cert)
			diag_error(ap->diag, ap->file, line, "client_auth = %s "
			    "needs client_cert_file (and its key in "
			    "client_key_file)", name);
		break;
	case CLIENT_AUTH_NONE:
		break;
	}
	if (ac->client_auth != CLIENT_AUTH_NONE && ac->client_id == NULL) {
		if (ac->client_auth_given)
			diag_error(ap->diag, ap->file, line, "client "
			    "authentication needs client_id");
		else
			diag_error(ap->diag, ap->file, ap->account_line,
			    "client_auth = %s (as %s implies) needs client_id",
			    config_client_auth_names[ac->client_auth],
			    ac->client_auth == CLIENT_AUTH_BASIC ? "a client "
			    "secret" : CLIENT_AUTH_IS_TLS(ac->client_auth) ?
			    "client_cert_file" : "client_key_file");
	}
	/* RFC 7518 3.2: an HS256 key of at least 256 bits */
	if (ac->client_auth == CLIENT_AUTH_CLIENT_SECRET_JWT &&
	    ac->client_secret != NULL && strlen(ac->client_secret) < 32)
		diag_warning(ap->diag, ap->file, line, "client_secret_jwt signs "
		    "with the client secret, which is shorter than the 32 "
		    "bytes RFC 7518 asks of an HS256 key");
	if (ac->client_auth == CLIENT_AUTH_BASIC)
		config_account_check_basic(ap);
	else if (config_key_given(ap, "basic_encoding"))
		diag_warning(ap->diag, ap->file, config_key_line(ap,
		    "basic_encoding"), "basic_encoding is for client_auth = "
		    "basic only");
}

/*
 * The signing key's algorithm, and what the assertion keys need: a key
 * the algorithm fits, an issuer, a lifetime providers take, and (for
 * assertion_in = bearer) nothing in the body.
 */
static void
config_account_check_assertion(struct account_parse *ap)
{
	static const char *const keys[] = { "assertion_audience",
	    "assertion_lifetime", "assertion_in", "client_key_id" };
	struct account_conf	*ac = ap->ac;
	enum jws_alg		 alg;
	char			*cause = NULL;
	size_t			 i;
	int			 uses, line, has_iss = 0;

	uses = ac->grant == GRANT_JWT_BEARER ||
	    CLIENT_AUTH_IS_JWT(ac->client_auth);
	line = config_key_line(ap, "client_key_alg");
	if (ac->client_key_alg_name != NULL) {
		if (jws_alg_parse(ac->client_key_alg_name, &alg) != 0)
			diag_error(ap->diag, ap->file, line, "client_key_alg: "
			    "expected RS256, PS256, ES256 or EdDSA");
		else if (alg == JWS_HS256)
			diag_error(ap->diag, ap->file, line, "client_key_alg: "
			    "HS256 signs with the client secret: that is "
			    "client_auth = client_secret_jwt");
		else if (ac->client_key != NULL &&
		    jws_key_alg_ok(ac->client_key, alg, &cause) != 0) {
			diag_error(ap->diag, ap->file, line, "client_key_alg: "
			    "%s", cause);
			free(cause);
		} else
			ac->client_key_alg = (int)alg;
		if (ac->client_auth == CLIENT_AUTH_CLIENT_SECRET_JWT &&
		    ac->grant != GRANT_JWT_BEARER)
			diag_warning(ap->diag, ap->file, line, "client_key_alg "
			    "is unused: client_secret_jwt signs with HS256");
	} else if (ac->client_key != NULL)
		ac->client_key_alg = (int)jws_key_default_alg(ac->client_key);
	if (ac->client_key_id != NULL && !str_is_printable(ac->client_key_id))
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "client_key_id"), "client_key_id: visible ASCII without "
		    "spaces");

	if (!uses) {
		for (i = 0; i < nitems(keys); i++)
			if (config_key_given(ap, keys[i]) && (i < 3 ||
			    !CLIENT_AUTH_IS_TLS(ac->client_auth)))
				diag_warning(ap->diag, ap->file,
				    config_key_line(ap, keys[i]), "%s is for "
				    "signed assertions (client_auth = "
				    "private_key_jwt or client_secret_jwt, grant "
				    "= jwt_bearer)", keys[i]);
		if (ac->nclaims > 0)
			diag_warning(ap->diag, ap->file, ap->claim_line,
			    "assertion.* is for signed assertions (client_auth "
			    "= private_key_jwt or client_secret_jwt, grant = "
			    "jwt_bearer)");
		/* mutual TLS without a certificate said so already */
		if (ap->file_value[F_CLIENT_KEY] != NULL &&
		    ap->file_value[F_CLIENT_CERT] == NULL &&
		    !CLIENT_AUTH_IS_TLS(ac->client_auth))
			diag_warning(ap->diag, ap->file,
			    ap->file_line[F_CLIENT_KEY], "client_key_file is "
			    "unused with client_auth = %s",
			    config_client_auth_names[ac->client_auth]);
		return;
	}
	for (i = 0; i < ac->nclaims; i++)
		if (!strcmp(ac->claims[i].name, "iss"))
			has_iss = 1;
	if (ac->grant == GRANT_JWT_BEARER) {
		line = config_key_line(ap, "grant");
		if (ap->file_value[F_CLIENT_KEY] == NULL &&
		    ap->file_value[F_SERVICE_ACCOUNT] == NULL)
			diag_error(ap->diag, ap->file, line, "grant = jwt_bearer "
			    "needs client_key_file or service_account_file");
		else if (ac->client_id == NULL && ac->assertion_iss == NULL &&
		    !has_iss && !ap->sa_failed)
			diag_error(ap->diag, ap->file, line, "grant = jwt_bearer "
			    "needs client_id (the assertion's iss) or "
			    "assertion.iss");
	}
	line = config_key_line(ap, "assertion_lifetime");
	if (ac->assertion_lifetime < 10 * MSEC_PER_SEC ||
	    ac->assertion_lifetime > 3600 * MSEC_PER_SEC)
		diag_error(ap->diag, ap->file, line, "assertion_lifetime: "
		    "expected 10s to 1h (providers refuse longer-lived "
		    "assertions; a few minutes is usual)");
	if (ac->assertion_in != ASSERTION_IN_BEARER)
		return;
	if (ac->grant != GRANT_JWT_BEARER) {
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "assertion_in"), "assertion_in = bearer is for grant = "
		    "jwt_bearer");
		return;
	}
	if (ac->assertion_lifetime > ASSERTION_BEARER_MAX_MS)
		diag_error(ap->diag, ap->file, line, "assertion_lifetime: at "
		    "most 9m with assertion_in = bearer (GitHub refuses an "
		    "app JWT that expires more than 10 minutes on; the rest is "
		    "for clocks that differ)");
	if (ac->client_auth != CLIENT_AUTH_NONE)
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "client_auth"), "assertion_in = bearer sends the JWT alone: "
		    "client_auth must be none");
	if (ac->nparams > 0 || ac->scope != NULL || ac->audience != NULL ||
	    ac->resource != NULL)
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "assertion_in"), "assertion_in = bearer sends an empty "
		    "body: scope, audience, resource and param.* cannot be "
		    "sent (put what the JWT needs in assertion.*)");
}

/*
 * redirect_uri: RFC 8252 7.3, a loopback IP literal over http, a port
 * (0: any free one, chosen at each login) and a path. "localhost" is
 * refused, as RFC 8252 8.3 advises: it may resolve elsewhere.
 */
static int
config_redirect_uri_valid(const char *uri)
{
	const char	*p, *end;
	char		*num_end;
	long		 port;

	if (!strncmp(uri, "http://127.0.0.1:", 17))
		p = uri + 17;
	else if (!strncmp(uri, "http://[::1]:", 13))
		p = uri + 13;
	else
		return 0;
	if (*p < '0' || *p > '9')
		return 0;
	errno = 0;
	port = strtol(p, &num_end, 10);
	if (errno != 0 || port < 0 || port > 65535 || num_end - p > 5)
		return 0;
	if (*num_end != '/')
		return 0;
	for (end = num_end; *end != '\0'; end++)
		if (*end <= ' ' || *end >= 0x7f || *end == '#' || *end == '?')
			return 0;
	return 1;
}

/* What grant = device_code and authorization_code need. */
static void
config_account_check_login(struct account_parse *ap, int line)
{
	struct account_conf	*ac = ap->ac;
	int			 code = ac->grant == GRANT_AUTHORIZATION_CODE;
	const char		*grant = code ? "authorization_code" :
				    "device_code";

	if (ac->client_id == NULL)
		diag_error(ap->diag, ap->file, line, "grant = %s needs "
		    "client_id", grant);
	if (ac->issuer == NULL && (ac->token_url == NULL || (code ?
	    ac->authorization_url == NULL :
	    ac->device_authorization_url == NULL)))
		diag_error(ap->diag, ap->file, line, "grant = %s needs issuer "
		    "(discovery), or token_url and %s", grant, code ?
		    "authorization_url" : "device_authorization_url");
	if (ac->username != NULL)
		diag_error(ap->diag, ap->file, config_key_line(ap, "username"),
		    "username is not used with grant = %s: a human logs in "
		    "(tokenctl login)", grant);
	if (ac->password != NULL || ap->file_value[F_PASSWORD] != NULL)
		diag_error(ap->diag, ap->file, ap->file_line[F_PASSWORD] != 0 ?
		    ap->file_line[F_PASSWORD] : config_key_line(ap, "password"),
		    "a password is not used with grant = %s: a human logs in "
		    "(tokenctl login)", grant);
	if (ap->file_value[F_REFRESH_TOKEN] != NULL)
		diag_error(ap->diag, ap->file, ap->file_line[F_REFRESH_TOKEN],
		    "refresh_token_file is not used with grant = %s: use "
		    "tokenctl login", grant);
	if (code && ac->redirect_uri == NULL)
		ac->redirect_uri = xstrdup("http://127.0.0.1:0/callback");
	if (ac->redirect_uri != NULL && !config_redirect_uri_valid(
	    ac->redirect_uri))
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "redirect_uri"), "redirect_uri: expected "
		    "http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH "
		    "(a loopback address, RFC 8252 7.3; PORT 0: any free port)");
}

/* The login keys' URLs; each of them only where it is used. */
static void
config_account_check_login_keys(struct account_parse *ap)
{
	static const char *const keys[] = { "issuer", "authorization_url",
	    "device_authorization_url", "revocation_url" };
	struct account_conf	*ac = ap->ac;
	const char		*urls[nitems(keys)];
	size_t			 i;
	int			 login = GRANT_IS_LOGIN(ac->grant);

	urls[0] = ac->issuer;
	urls[1] = ac->authorization_url;
	urls[2] = ac->device_authorization_url;
	urls[3] = ac->revocation_url;
	for (i = 0; i < nitems(keys); i++) {
		if (urls[i] == NULL)
			continue;
		if (config_url_check(ap, keys[i], urls[i]) != 0)
			continue;
		/* RFC 8414 2: an issuer has no query or fragment */
		if (i == 0 && strpbrk(urls[i], "?#") != NULL)
			diag_error(ap->diag, ap->file, config_key_line(ap,
			    keys[i]), "issuer: no query or fragment allowed "
			    "(RFC 8414 2)");
		/* discovery finds any grant's token endpoint */
		if (i == 0 && ac->grant == GRANT_STATIC)
			diag_error(ap->diag, ap->file, config_key_line(ap,
			    keys[i]), "issuer is not for grant = static");
		/* logout works for refresh_token accounts too */
		else if (i != 0 && !login && !(i == 3 &&
		    ac->grant == GRANT_REFRESH_TOKEN))
			diag_error(ap->diag, ap->file, config_key_line(ap,
			    keys[i]), "%s is for grant = device_code or "
			    "authorization_code%s", keys[i], i == 3 ?
			    " or refresh_token" : "");
	}
	if (ac->redirect_uri != NULL && ac->grant != GRANT_AUTHORIZATION_CODE)
		diag_error(ap->diag, ap->file, config_key_line(ap,
		    "redirect_uri"), "redirect_uri is for grant = "
		    "authorization_code");
	if (ac->nauthorize_params > 0 && ac->grant != GRANT_AUTHORIZATION_CODE)
		diag_error(ap->diag, ap->file, ap->authorize_param_line,
		    "authorize_param.* is for grant = authorization_code");
	if ((ac->nlogin_users > 0 || ac->nlogin_groups > 0) && !login &&
	    ac->grant != GRANT_REFRESH_TOKEN)
		diag_warning(ap->diag, ap->file, ap->section_line[S_ACCESS],
		    "login_users and login_groups are for accounts that log "
		    "in or out (device_code, authorization_code, "
		    "refresh_token)");
}

/* What each grant needs. */
static void
config_account_check_grant(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	int			 line = config_key_line(ap, "grant");

	if (line != ap->account_line && !config_key_given(ap, "grant"))
		return;		/* a bad grant, already reported */
	switch (ac->grant) {
	case GRANT_CLIENT_CREDENTIALS:
		/* client_auth's own check said so already, or the
		   service account's that it needs jwt_bearer */
		if (ac->client_id == NULL && ac->client_auth ==
		    CLIENT_AUTH_NONE && ap->file_value[F_SERVICE_ACCOUNT] == NULL)
			diag_error(ap->diag, ap->file, line, "grant = "
			    "client_credentials needs client_id");
		break;
	case GRANT_PASSWORD:
		if (ac->username == NULL)
			diag_error(ap->diag, ap->file, line,
			    "grant = password needs username");
		if (ac->password == NULL && ap->file_value[F_PASSWORD] == NULL)
			diag_error(ap->diag, ap->file, line,
			    "grant = password needs password or password_file");
		break;
	case GRANT_REFRESH_TOKEN:
		if (ap->file_value[F_REFRESH_TOKEN] == NULL)
			diag_error(ap->diag, ap->file, line,
			    "grant = refresh_token needs refresh_token_file");
		break;
	case GRANT_DEVICE_CODE:
	case GRANT_AUTHORIZATION_CODE:
		config_account_check_login(ap, line);
		break;
	case GRANT_JWT_BEARER:
		/* config_account_check_assertion says what it needs */
		break;
	default:
		break;
	}
	config_account_check_login_keys(ap);
}

/*
 * A hook's program must be there to run: an executable regular file,
 * checked now rather than found missing when the token changes.
 */
static void
config_account_check_hooks(struct account_parse *ap)
{
	static const char *const names[] = { "on_refresh", "on_failure" };
	struct stat	 st;
	char	       **argv;
	const char	*why;
	size_t		 i;

	for (i = 0; i < nitems(names); i++) {
		argv = i == 0 ? ap->ac->on_refresh : ap->ac->on_failure;
		if (argv == NULL)
			continue;
		why = NULL;
		if (stat(argv[0], &st) == -1)
			why = strerror(errno);
		else if (!S_ISREG(st.st_mode))
			why = "not a regular file";
		else if (access(argv[0], X_OK) == -1)
			why = "not executable";
		if (why != NULL)
			diag_error(ap->diag, ap->file, config_key_line_in(ap,
			    S_HOOKS, names[i]), "%s: cannot run %s: %s",
			    names[i], argv[0], why);
	}
}

/*
 * A margin above half the lifetime is cut (config_margin_is_cut); say so
 * where the lifetime is known from the file, that is default_lifetime.
 */
static void
config_account_check_margin(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	char			 m[32], l[32];
	int			 line;

	if (!config_margin_is_cut(&ac->refresh, ac->response.default_lifetime,
	    config_key_given_in(ap, S_REFRESH, "ratio")))
		return;
	line = config_key_given_in(ap, S_REFRESH, "margin") ?
	    config_key_line_in(ap, S_REFRESH, "margin") :
	    config_key_line_in(ap, S_RESPONSE, "default_lifetime");
	config_format_duration(ac->refresh.margin, m, sizeof m);
	config_format_duration(ac->response.default_lifetime, l, sizeof l);
	diag_warning(ap->diag, ap->file, line, "margin %s is more than half of "
	    "default_lifetime %s; tokens%s will be refreshed after half their "
	    "lifetime", m, l, ac->response.expires_in != NULL ||
	    ac->response.expires_at != NULL ? " that come without a lifetime" :
	    "");
}

/* Values that must agree with each other, and each [file]. */
static void
config_account_check_values(struct account_parse *ap)
{
	struct account_conf	*ac = ap->ac;
	size_t			 i;

	if (ac->response.access_token == NULL)
		diag_error(ap->diag, ap->file, ap->section_line[S_RESPONSE] ?
		    ap->section_line[S_RESPONSE] : ap->account_line,
		    "[response] access_token cannot be empty");
	if (ac->response.default_lifetime <= 0)
		diag_error(ap->diag, ap->file, ap->section_line[S_RESPONSE],
		    "default_lifetime must be positive");
	if (ac->timeout <= 0)
		diag_error(ap->diag, ap->file, config_key_line(ap, "timeout"),
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

/* Cross-key checks and secret files, once the whole file is read. */
static void
config_account_finish(struct account_parse *ap)
{
	if (ap->section_line[S_ACCOUNT] == 0) {
		diag_error(ap->diag, ap->file, 0, "no [account] section");
		return;
	}
	ap->account_line = ap->section_line[S_ACCOUNT];
	config_account_read_files(ap);
	config_account_check_urls(ap);
	ap->ac->shared_line = config_key_line(ap, "shared");
	config_account_check_auth(ap);
	config_account_check_grant(ap);
	config_account_check_assertion(ap);
	config_account_check_values(ap);
	config_account_check_margin(ap);
	if (ap->on_machine)
		config_account_check_hooks(ap);
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
	free(ac->refresh_token_path);
	free(ac->scope);
	free(ac->audience);
	free(ac->resource);
	for (i = 0; i < ac->nparams; i++) {
		free(ac->params[i].name);
		free(ac->params[i].value);
	}
	free(ac->params);
	for (i = 0; i < ac->nauthorize_params; i++) {
		free(ac->authorize_params[i].name);
		free(ac->authorize_params[i].value);
	}
	free(ac->authorize_params);
	for (i = 0; i < ac->nclaims; i++) {
		free(ac->claims[i].name);
		free(ac->claims[i].value);
	}
	free(ac->claims);
	jws_key_free(ac->client_key);
	if (ac->client_key_pem != NULL) {
		explicit_bzero(ac->client_key_pem, ac->client_key_pem_len);
		free(ac->client_key_pem);
	}
	free(ac->client_key_id);
	free(ac->client_key_alg_name);
	free(ac->client_key_thumbprint);
	free(ac->client_cert);
	free(ac->client_cert_x5t);
	free(ac->client_cert_x5t256);
	free(ac->assertion_iss);
	free(ac->assertion_audience);
	free(ac->ca_file);
	freezero_str(ac->proxy);
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
	free(ac->login_users);
	free(ac->login_groups);
	free(ac->issuer);
	free(ac->authorization_url);
	free(ac->device_authorization_url);
	free(ac->revocation_url);
	free(ac->redirect_uri);
	strv_free(ac->on_refresh);
	strv_free(ac->on_failure);
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
 * on_machine: also hold it to the machine it is to run on (its hooks'
 * programs are there), as config_account_load does.
 */
static struct account_conf *
config_account_parse_on(const char *path, const char *name, const char *buf,
    size_t len, struct diag *diag, int on_machine)
{
	static const struct ini_handler handler = {
		config_account_section_cb, config_account_value_cb,
		config_account_error_cb
	};
	struct account_parse	 ap;
	struct account_conf	*ac;
	char			*slash;
	size_t			 i, errors_before = diag->nerrors;

	if (!config_account_name_valid(name)) {
		diag_error(diag, path, 0, "account name '%s' is not 1 to 64 "
		    "of A-Z a-z 0-9 . _ -, other than . and ..", name);
		return NULL;
	}
	ac = xcalloc(1, sizeof *ac);
	ac->name = xstrdup(name);
	ac->file = xstrdup(path);
	config_account_defaults(ac);

	memset(&ap, 0, sizeof ap);
	ap.file = path;
	ap.diag = diag;
	ap.ac = ac;
	ap.section = S_COUNT;
	ap.on_machine = on_machine;
	ap.dir = xstrdup(path);
	if ((slash = strrchr(ap.dir, '/')) != NULL)
		*(slash == ap.dir ? slash + 1 : slash) = '\0';
	else {
		free(ap.dir);
		ap.dir = xstrdup(".");
	}
	config_identity_add(&ap, path, strlen(path));

	ini_parse_buffer(buf, len, &handler, &ap);
	config_account_finish(&ap);

	free(ap.dir);
	config_seen_clear(&ap);
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

/* The text alone, with secret files (tests and fuzzing use it). */
struct account_conf *
config_account_parse(const char *path, const char *name, const char *buf,
    size_t len, struct diag *diag)
{
	return config_account_parse_on(path, name, buf, len, diag, 0);
}

/* Load one account file; see config_account_parse_on. */
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
	ac = config_account_parse_on(path, name, buf, len, diag, 1);
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
	enum config_section section;	/* S_COUNT: an unknown one */
	int		 seen_line[CONFIG_NKEYS];	/* by key index */
};

static int
config_global_section_cb(void *arg, const char *name, int line)
{
	struct global_parse	*gp = arg;

	gp->section = config_section_find(name, S_TOKEND, S_FLEET);
	if (gp->section == S_COUNT)
		diag_error(gp->diag, gp->file, line, "unknown section [%s]",
		    name);
	else if (gp->section == S_FLEET && gp->cfg->fleet != NULL) {
		diag_error(gp->diag, gp->file, line, "duplicate section "
		    "[fleet] (first at line %d)", gp->cfg->fleet->line);
		gp->section = S_COUNT;
	} else if (gp->section == S_FLEET) {
		gp->cfg->fleet = xcalloc(1, sizeof *gp->cfg->fleet);
		gp->cfg->fleet->line = line;
		config_key_defaults(S_FLEET, gp->cfg->fleet);
	}
	return 0;
}

static int
config_global_value_cb(void *arg, const char *section, const char *key,
    const char *value, int line)
{
	struct global_parse	*gp = arg;
	char			*cause;
	void			*base;
	int			 i;

	(void)section;
	if (gp->section == S_COUNT)
		return 0;
	if ((i = config_key_find(gp->section, key)) == -1) {
		diag_error(gp->diag, gp->file, line, "unknown key '%s' in "
		    "[%s]", key, config_section_names[gp->section]);
		return 0;
	}
	if (gp->seen_line[i] != 0) {
		diag_error(gp->diag, gp->file, line, "duplicate key '%s' "
		    "(first at line %d)", key, gp->seen_line[i]);
		return 0;
	}
	gp->seen_line[i] = line;
	if (*value == '\0')
		return 0;	/* keep the default, whatever the key */
	base = gp->section == S_FLEET ? (void *)gp->cfg->fleet :
	    (void *)gp->cfg;
	if (config_key_set(&config_keys[i], base, value, &cause) != 0) {
		diag_error(gp->diag, gp->file, line, "%s", cause);
		free(cause);
	}
	return 0;
}

/* The line of a [fleet] key, else the section's. */
static int
config_fleet_line(const struct global_parse *gp, const char *name)
{
	int	 i = config_key_find(S_FLEET, name);

	return i != -1 && gp->seen_line[i] != 0 ? gp->seen_line[i] :
	    gp->cfg->fleet->line;
}

/* HOST:PORT into hp; -1 with a cause. IPv6 goes in brackets. */
static int
config_fleet_hostport(const char *s, size_t n, struct fleet_hostport *hp,
    char **cause)
{
	const char	*colon;
	char		*port, *end;
	long		 v;

	if (n > 0 && s[0] == '[') {
		if ((colon = memchr(s, ']', n)) == NULL ||
		    (size_t)(colon + 1 - s) >= n || colon[1] != ':')
			goto bad;
		hp->host = xstrndup(s + 1, colon - s - 1);
		colon++;
	} else {
		if ((colon = memrchr(s, ':', n)) == NULL || colon == s)
			goto bad;
		hp->host = xstrndup(s, colon - s);
	}
	port = xstrndup(colon + 1, n - (colon + 1 - s));
	errno = 0;
	v = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || v < 1 || v > 65535) {
		free(port);
		free(hp->host);
		hp->host = NULL;
		goto bad;
	}
	free(port);
	hp->port = (int)v;
	return 0;
bad:
	xasprintf(cause, "'%.*s' is not HOST:PORT", (int)n, s);
	return -1;
}

/* A database number after a '/'; -1 if it is not one. */
static int
config_fleet_db(const char *s, int *db)
{
	char	*end;
	long	 v;

	if (*s == '\0') {
		*db = 0;
		return 0;
	}
	v = strtol(s, &end, 10);
	if (*end != '\0' || v < 0 || v > 100000)
		return -1;
	*db = (int)v;
	return 0;
}

/*
 * redis = redis://HOST:PORT[/DB] | unix:PATH | sentinel://H:P[,H:P...]/
 * MASTER[/DB]. A password in the URL is refused: the file is shared.
 */
static int
config_fleet_parse_redis(struct fleet_conf *fc, char **cause)
{
	const char	*u = fc->redis, *p, *slash, *comma, *end;
	size_t		 n;

	if (!strncmp(u, "unix:", 5)) {
		fc->kind = FLEET_UNIX;
		p = u + 5;
		if (!strncmp(p, "//", 2))
			p += 2;
		if (*p != '/') {
			xasprintf(cause, "redis: unix: needs an absolute "
			    "path, as in unix:/run/redis/redis.sock");
			return -1;
		}
		fc->path = xstrdup(p);
		return 0;
	}
	if (!strncmp(u, "redis://", 8))
		fc->kind = FLEET_TCP;
	else if (!strncmp(u, "sentinel://", 11))
		fc->kind = FLEET_SENTINEL;
	else {
		xasprintf(cause, "redis: expected redis://HOST:PORT/DB, "
		    "unix:PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER");
		return -1;
	}
	p = strchr(u, '/') + 2;
	if (strchr(p, '@') != NULL) {
		xasprintf(cause, "redis: a password does not go in the URL "
		    "(the file may be shared); use password_file");
		return -1;
	}
	slash = strchr(p, '/');
	end = slash != NULL ? slash : p + strlen(p);
	while (p < end) {
		comma = memchr(p, ',', end - p);
		n = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);
		if (fc->kind == FLEET_TCP && fc->nhosts == 1) {
			xasprintf(cause, "redis: redis:// takes one HOST:PORT; "
			    "several are for sentinel://");
			return -1;
		}
		fc->hosts = xreallocarray(fc->hosts, fc->nhosts + 1,
		    sizeof *fc->hosts);
		if (config_fleet_hostport(p, n, &fc->hosts[fc->nhosts],
		    cause) != 0) {
			char *c = *cause;

			xasprintf(cause, "redis: %s", c);
			free(c);
			return -1;
		}
		fc->nhosts++;
		p += n + (comma != NULL);
	}
	if (fc->nhosts == 0) {
		xasprintf(cause, "redis: no HOST:PORT");
		return -1;
	}
	if (fc->kind == FLEET_TCP) {
		if (config_fleet_db(slash != NULL ? slash + 1 : "",
		    &fc->db) != 0) {
			xasprintf(cause, "redis: the database after the '/' "
			    "is a number");
			return -1;
		}
		return 0;
	}
	if (slash == NULL || slash[1] == '\0' || slash[1] == '/') {
		xasprintf(cause, "redis: sentinel:// needs the master's name, "
		    "as in sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster");
		return -1;
	}
	p = slash + 1;
	slash = strchr(p, '/');
	fc->master = slash != NULL ? xstrndup(p, slash - p) : xstrdup(p);
	if (config_fleet_db(slash != NULL ? slash + 1 : "", &fc->db) != 0) {
		xasprintf(cause, "redis: the database after the master's name "
		    "is a number");
		return -1;
	}
	return 0;
}

/* A secret file of [fleet]: read whole, one trailing newline dropped. */
static int
config_fleet_read(struct global_parse *gp, const char *key, const char *path,
    char **out, size_t *lenp)
{
	struct stat	 st;
	char		*buf;
	size_t		 len;
	int		 rc, line = config_fleet_line(gp, key);

	if ((rc = read_file_capped(path, SECRET_FILE_MAX, &buf, &len)) != 0) {
		diag_error(gp->diag, gp->file, line, "%s: cannot read %s: %s",
		    key, path, rc == -EFBIG ? "larger than 64 KiB" :
		    rc == -EINVAL ? "not a regular file" : strerror(-rc));
		return -1;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		diag_warning(gp->diag, gp->file, line, "%s: %s is readable by "
		    "group or others (mode %04o)", key, path,
		    (unsigned)(st.st_mode & 07777));
	*out = buf;
	*lenp = len;
	return 0;
}

static int
config_fleet_node_ok(const char *s)
{
	size_t	 n = strlen(s);

	return n > 0 && n <= FLEET_NODE_MAX && strspn(s, "ABCDEFGHIJKLMNOPQRS"
	    "TUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/*
 * What a reload compares: every value, and hashes of the secrets (a
 * changed password or key counts as a change too).
 */
static void
config_fleet_identity(struct fleet_conf *fc)
{
	unsigned char	 kh[32], ph[32];
	char		*s;
	int		 n;

	sha256(fc->key, sizeof fc->key, kh);
	sha256(fc->password != NULL ? fc->password : "",
	    fc->password != NULL ? strlen(fc->password) : 0, ph);
	n = xasprintf(&s, "%s|%s|%s|%s|%lld|%lld|", fc->redis != NULL ?
	    fc->redis : "", fc->node != NULL ? fc->node : "", fc->key_prefix,
	    fc->password != NULL ? "p" : "", (long long)fc->lease,
	    (long long)fc->timeout);
	fc->identity_len = (size_t)n + sizeof kh + sizeof ph;
	fc->identity = xreallocarray(s, fc->identity_len, 1);
	memcpy(fc->identity + n, kh, sizeof kh);
	memcpy(fc->identity + n + sizeof kh, ph, sizeof ph);
}

int
config_fleet_equal(const struct fleet_conf *a, const struct fleet_conf *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return a->identity_len == b->identity_len &&
	    memcmp(a->identity, b->identity, a->identity_len) == 0;
}

/* After the parse: what [fleet] says must hold together. */
static void
config_fleet_finish(struct global_parse *gp)
{
	struct fleet_conf	*fc = gp->cfg->fleet;
	char			*cause, *buf, host[256];
	size_t			 len;

	if (fc == NULL)
		return;
	if (fc->redis == NULL)
		diag_error(gp->diag, gp->file, fc->line, "[fleet] needs redis "
		    "(redis://HOST:PORT/DB, unix:PATH or sentinel://...)");
	else if (config_fleet_parse_redis(fc, &cause) != 0) {
		diag_error(gp->diag, gp->file, config_fleet_line(gp, "redis"),
		    "%s", cause);
		free(cause);
	}
	if (fc->key_path == NULL)
		diag_error(gp->diag, gp->file, fc->line, "[fleet] needs "
		    "key_file, the fleet's AES-256 key (make one with: openssl "
		    "rand -hex 32 > FILE; chmod 600 FILE), the same on every "
		    "host");
	else if (config_fleet_read(gp, "key_file", fc->key_path, &buf,
	    &len) == 0) {
		if (seal_key_parse(buf, len, fc->key, &cause) != 0) {
			diag_error(gp->diag, gp->file, config_fleet_line(gp,
			    "key_file"), "key_file %s %s", fc->key_path,
			    cause);
			free(cause);
		}
		freezero(buf, len);
	}
	if (fc->password_path != NULL && config_fleet_read(gp,
	    "password_file", fc->password_path, &buf, &len) == 0) {
		if (config_secret_trim(buf, &len) != 0) {
			diag_error(gp->diag, gp->file, config_fleet_line(gp,
			    "password_file"), "password_file: %s is empty or "
			    "holds a NUL byte", fc->password_path);
			freezero(buf, len);
		} else
			fc->password = buf;
	}
	if (fc->node == NULL) {
		if (gethostname(host, sizeof host) != 0)
			snprintf(host, sizeof host, "localhost");
		host[sizeof host - 1] = '\0';
		host[strcspn(host, ".")] = '\0';
		if (!config_fleet_node_ok(host))
			diag_error(gp->diag, gp->file, fc->line, "node: the "
			    "host name '%s' is not a node name; set node", host);
		fc->node = xstrdup(host);
	} else if (!config_fleet_node_ok(fc->node))
		diag_error(gp->diag, gp->file, config_fleet_line(gp, "node"),
		    "node: 1 to %d letters, digits, '.', '_' or '-'",
		    FLEET_NODE_MAX);
	if (strlen(fc->key_prefix) > 64 || strpbrk(fc->key_prefix, " \t") !=
	    NULL)
		diag_error(gp->diag, gp->file, config_fleet_line(gp,
		    "key_prefix"), "key_prefix: at most 64 characters, no "
		    "spaces");
	if (fc->lease < 1000 || fc->lease > 600000)
		diag_error(gp->diag, gp->file, config_fleet_line(gp, "lease"),
		    "lease: from 1s to 10m");
	if (fc->timeout < 100 || fc->timeout > 60000)
		diag_error(gp->diag, gp->file, config_fleet_line(gp, "timeout"),
		    "timeout: from 100ms to 1m");
	/* what a reload compares: every value, the secrets' hashes */
	config_fleet_identity(fc);
}

static void
config_global_error_cb(void *arg, int line, const char *msg)
{
	struct global_parse	*gp = arg;

	diag_error(gp->diag, gp->file, line, "%s", msg);
}

/*
 * A folder systemd hands us in $var, with suffix; NULL if it does not.
 * $STATE_DIRECTORY (and the others) may list several folders; the first
 * is ours.
 */
static char *
config_env_dir(const char *var, const char *suffix)
{
	const char	*v = getenv(var);
	char		*out;
	size_t		 n;

	if (v == NULL || *v != '/')
		return NULL;
	n = strcspn(v, ":");
	if (suffix != NULL)
		xasprintf(&out, "%.*s/%s", (int)n, v, suffix);
	else
		out = xstrndup(v, n);
	return out;
}

/*
 * The table's defaults; the folders systemd names come first. In a user
 * unit they are the only way to find ~/.config/tokend and the rest; in the
 * system unit they name the table's own defaults.
 */
static void
config_global_defaults(struct config *cfg)
{
	char	*dir;

	config_key_defaults(S_TOKEND, cfg);
	if ((dir = config_env_dir("CONFIGURATION_DIRECTORY", "accounts.d")) !=
	    NULL) {
		free(cfg->accounts_dir);
		cfg->accounts_dir = dir;
	}
	if ((dir = config_env_dir("STATE_DIRECTORY", NULL)) != NULL) {
		free(cfg->state_dir);
		cfg->state_dir = dir;
	}
	if ((dir = config_env_dir("RUNTIME_DIRECTORY", "tokend.sock")) !=
	    NULL) {
		free(cfg->socket_path);
		cfg->socket_path = dir;
	}
}

static int
config_account_file_filter(const struct dirent *de)
{
	size_t	 len = strlen(de->d_name);

	return len > 5 && !strcmp(de->d_name + len - 5, ".conf");
}

/*
 * Whether uid may make files in the folder st describes, by its mode
 * bits: what --check, run as root, can tell about another user.
 */
static int
config_folder_mode_allows(const struct stat *st, uid_t uid)
{
	struct passwd	 pw, *res = NULL;
	gid_t		 groups[256];
	char		 buf[4096];
	int		 n = (int)nitems(groups), i;

	if (st->st_uid == uid)
		return (st->st_mode & (S_IWUSR | S_IXUSR)) ==
		    (S_IWUSR | S_IXUSR);
	if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res != NULL &&
	    getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) != -1)
		for (i = 0; i < n; i++)
			if (groups[i] == st->st_gid)
				return (st->st_mode & (S_IWGRP | S_IXGRP)) ==
				    (S_IWGRP | S_IXGRP);
	return (st->st_mode & (S_IWOTH | S_IXOTH)) == (S_IWOTH | S_IXOTH);
}

/*
 * A [file]'s folder must be there and writable by tokend's user, else
 * the token is never written: a warning, since it may appear later
 * (a RuntimeDirectory=, a mount). `daemon` is that user when this
 * process is root and knows better (see config_check_file_paths).
 */
static void
config_check_file_folder(const struct account_conf *ac,
    const struct sink_conf *sc, uid_t daemon, struct diag *diag)
{
	struct stat	 st;
	char		*dir, *slash;

	dir = xstrdup(sc->path);
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (stat(dir, &st) == -1) {
		if (errno == ENOENT)
			diag_warning(diag, ac->file, sc->path_line, "path %s: "
			    "folder %s does not exist, and tokend does not "
			    "make it: the token is not written until it does",
			    sc->path, dir);
		else
			diag_warning(diag, ac->file, sc->path_line, "path %s: "
			    "cannot look at folder %s: %s", sc->path, dir,
			    strerror(errno));
	} else if (!S_ISDIR(st.st_mode))
		diag_warning(diag, ac->file, sc->path_line, "path %s: %s is "
		    "not a folder", sc->path, dir);
	else if (daemon == (uid_t)-1 ? access(dir, W_OK | X_OK) == -1 :
	    !config_folder_mode_allows(&st, daemon))
		diag_warning(diag, ac->file, sc->path_line, "path %s: tokend "
		    "(uid %u) cannot write in folder %s%s%s", sc->path,
		    (unsigned)(daemon == (uid_t)-1 ? geteuid() : daemon), dir,
		    daemon == (uid_t)-1 ? ": " : "", daemon == (uid_t)-1 ?
		    strerror(errno) : "");
	free(dir);
}

/*
 * Each [file] path resolved through the links it has now, every folder
 * and link on the way held to file_folder_check; the path is replaced by
 * the resolved one, which tokend then writes without following links.
 * Run as root (--check), this process cannot know the daemon's user: the
 * owner of a private state_dir (systemd's DynamicUser=) counts as it too.
 */
static void
config_check_file_paths(struct config *cfg, struct diag *diag)
{
	struct account_conf	*ac;
	struct sink_conf	*sc;
	struct stat		 st;
	uid_t			 also = (uid_t)-1;
	char			*resolved, *cause;
	size_t			 i, j;

	if (stat(cfg->state_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 022) == 0)
		also = st.st_uid;
	for (i = 0; i < cfg->naccounts; i++) {
		ac = cfg->accounts[i];
		for (j = 0; j < ac->nsinks; j++) {
			sc = &ac->sinks[j];
			if (sc->path == NULL || sc->path[0] != '/')
				continue;	/* already reported */
			if (file_resolve_path(sc->path, also, &resolved,
			    &cause) != 0) {
				diag_error(diag, ac->file, sc->path_line,
				    "path %s: %s", sc->path, cause);
				free(cause);
				continue;
			}
			free(sc->path);
			sc->path = resolved;
			config_check_file_folder(ac, sc, geteuid() == 0 &&
			    also != 0 ? also : (uid_t)-1, diag);
		}
	}
}

/* Where a path is used first, in a tree by path. */
struct path_use {
	const char		*path;
	const struct account_conf *ac;
	int			 line;
};

static int
config_path_use_cmp(const void *a, const void *b)
{
	return strcmp(((const struct path_use *)a)->path,
	    ((const struct path_use *)b)->path);
}

/*
 * Note that ac uses path at line; the first user of the same path if
 * there was one (the new use is not kept), else NULL.
 */
static const struct path_use *
config_path_use_add(void **tree, const char *path,
    const struct account_conf *ac, int line)
{
	struct path_use	 *pu, **found;

	pu = xcalloc(1, sizeof *pu);
	pu->path = path;
	pu->ac = ac;
	pu->line = line;
	if ((found = tsearch(pu, tree, config_path_use_cmp)) == NULL)
		fatal("tsearch");
	if (*found != pu) {
		free(pu);
		return *found;
	}
	return NULL;
}

/*
 * Files that only one writer may have: a token file written by two
 * [file] sections, or two accounts, holds whichever came last; a
 * rotating refresh token read by two accounts is spent by the first to
 * refresh, and the other one's is dead.
 */
static void
config_check_shared_paths(struct config *cfg, struct diag *diag)
{
	const struct path_use	*first;
	struct account_conf	*ac;
	struct sink_conf	*sc;
	void			*sinks = NULL, *rts = NULL;
	size_t			 i, j;

	for (i = 0; i < cfg->naccounts; i++) {
		ac = cfg->accounts[i];
		for (j = 0; j < ac->nsinks; j++) {
			sc = &ac->sinks[j];
			if (sc->path == NULL || (first = config_path_use_add(
			    &sinks, sc->path, ac, sc->path_line)) == NULL)
				continue;
			if (first->ac == ac)
				diag_error(diag, ac->file, sc->path_line, "path %s "
				    "is written by the [file] at line %d already",
				    sc->path, first->line);
			else
				diag_error(diag, ac->file, sc->path_line, "path %s "
				    "is written by account %s (%s:%d) already; "
				    "two accounts cannot share a token file",
				    sc->path, first->ac->name, first->ac->file,
				    first->line);
		}
		if (ac->refresh_token_path != NULL && (first =
		    config_path_use_add(&rts, ac->refresh_token_path, ac,
		    ac->refresh_token_line)) != NULL)
			diag_error(diag, ac->file, ac->refresh_token_line,
			    "refresh_token_file %s is account %s's too (%s:%d): "
			    "each refresh token is spent by the first account "
			    "to use it, so give each account its own",
			    ac->refresh_token_path, first->ac->name,
			    first->ac->file, first->line);
	}
	tdestroy(sinks, free);
	tdestroy(rts, free);
}

/*
 * Load the global file (NULL: the default, $CONFIGURATION_DIRECTORY/
 * tokend.conf or DEFAULT_CONFIG_FILE, which may be absent) and every
 * account. Returns NULL when anything has an error; diag has them all.
 */
struct config *
config_load(const char *file, const char *accounts_dir, struct diag *diag)
{
	static const struct ini_handler handler = {
		config_global_section_cb, config_global_value_cb,
		config_global_error_cb
	};
	struct global_parse	 gp;
	struct config		*cfg;
	struct dirent	       **names = NULL;
	struct account_conf	*ac;
	char			*buf, *path, *name, *env_file = NULL;
	const char		*global = file;
	size_t			 len, errors_before = diag->nerrors;
	int			 n, i, rc;

	cfg = xcalloc(1, sizeof *cfg);
	config_global_defaults(cfg);

	if (global == NULL) {
		env_file = config_env_dir("CONFIGURATION_DIRECTORY",
		    "tokend.conf");
		global = env_file != NULL ? env_file : DEFAULT_CONFIG_FILE;
	}
	rc = read_file_capped(global, CONFIG_FILE_MAX, &buf, &len);
	if (rc == 0) {
		cfg->file = xstrdup(global);
		memset(&gp, 0, sizeof gp);
		gp.file = cfg->file;
		gp.diag = diag;
		gp.cfg = cfg;
		gp.section = S_COUNT;
		ini_parse_buffer(buf, len, &handler, &gp);
		free(buf);
		config_fleet_finish(&gp);
	} else if (file != NULL || rc != -ENOENT)
		diag_error(diag, global, 0, "cannot read: %s", strerror(-rc));
	free(env_file);

	if (accounts_dir != NULL) {
		free(cfg->accounts_dir);
		cfg->accounts_dir = xstrdup(accounts_dir);
	}

	n = scandir(cfg->accounts_dir, &names, config_account_file_filter,
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
	config_check_file_paths(cfg, diag);
	config_check_shared_paths(cfg, diag);
	for (i = 0; i < (int)cfg->naccounts; i++)
		if (cfg->accounts[i]->shared && cfg->fleet == NULL)
			diag_error(diag, cfg->accounts[i]->file,
			    cfg->accounts[i]->shared_line, "shared = yes needs "
			    "[fleet] in the global file%s%s", cfg->file != NULL ?
			    " " : "", cfg->file != NULL ? cfg->file : "");

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
	config_fleet_free(cfg->fleet);
	free(cfg);
}

void
config_fleet_free(struct fleet_conf *fc)
{
	size_t	 i;

	if (fc == NULL)
		return;
	free(fc->redis);
	for (i = 0; i < fc->nhosts; i++)
		free(fc->hosts[i].host);
	free(fc->hosts);
	free(fc->path);
	free(fc->master);
	freezero_str(fc->password);
	free(fc->password_path);
	free(fc->key_path);
	free(fc->node);
	free(fc->key_prefix);
	freezero(fc->identity, fc->identity_len);
	explicit_bzero(fc->key, sizeof fc->key);
	free(fc);
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
