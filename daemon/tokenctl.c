/*
 * tokenctl: the client of tokend's socket. One request, one answer,
 * printed for a person (or as JSON with --json); a login's answer is shown
 * line by line as it comes. Scripts run it once per
 * API call, so it starts about as fast as cat: HTTP is client.c's few
 * lines over the Unix socket, and json-c is the only library besides libc.
 */
#define _GNU_SOURCE
#include <sys/ioctl.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tokend.h"

#define EXIT_OK			0
#define EXIT_NO_TOKEN		1	/* no valid token, refresh failed */
#define EXIT_NO_ACCOUNT		2	/* no such account, or not allowed */
#define EXIT_UNREACHABLE	3	/* the daemon does not answer */
#define EXIT_USAGE		64
#define EXIT_INTERRUPTED	130	/* a login ended with Ctrl-C */

/* the longest wait: a refresh the daemon bounds at 60 s, plus slack */
#define TOKENCTL_TIMEOUT_MS	(90 * MSEC_PER_SEC)
/* a status of many thousand accounts */
#define TOKENCTL_ANSWER_MAX	(64 * 1024 * 1024)
#define TOKENCTL_WIDTH		100	/* the status table fits this */
#define TOKENCTL_ERROR_MIN	16	/* LAST ERROR gets at least this */
#define TOKENCTL_LOGIN_MAX	(256 * 1024)	/* a login's few lines */
#define TOKENCTL_CANCEL_MS	(10 * MSEC_PER_SEC)
#define TOKENCTL_QR_COLUMNS	80	/* when the terminal does not say */

/* One row of the status table, for a person. */
struct tokenctl_row {
	const char	*name;
	const char	*leader;
	char		 state[16];
	char		 expires[96];
	char		 next[96];
	char		*error;		/* in full */
	struct json_object *obj;	/* its status, borrowed */
};

/* What a login's answer has brought so far. */
struct tokenctl_login {
	const char		*account;
	struct client_stream	 stream;
	size_t			 lines;
	int			 outcome;	/* an exit code; -1: none yet */
	int			 malformed;
};

static const char		*socket_path;
static int			 json_out;
static volatile sig_atomic_t	 tokenctl_interrupted;

/* util.c's x*() allocators end here when memory runs out. */
void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	int	 error = errno;

	fprintf(stderr, "tokenctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(error));
	exit(EXIT_NO_TOKEN);
}

static void __attribute__((noreturn))
tokenctl_usage(FILE *out, int code)
{
	fprintf(out,
	    "usage: tokenctl [--socket PATH | --user] [--json] COMMAND\n"
	    "  status [ACCOUNT]              accounts, expiry, next refresh; "
	    "exit 1 unless\n"
	    "                                every account has a valid token\n"
	    "  token [--min-valid S] ACCOUNT print the access token\n"
	    "  refresh ACCOUNT               refresh now, wait for the outcome\n"
	    "  login ACCOUNT                 log a person in: show what to do, "
	    "wait\n"
	    "  logout ACCOUNT                revoke and forget the account's "
	    "tokens\n"
	    "  reload                        re-read the configuration\n"
	    "  fleet                         fleet mode: Redis, members, "
	    "leases;\n"
	    "                                exit 1 when not connected, 2 "
	    "without one\n"
	    "  --user                        your own tokend (systemctl --user):"
	    "\n"
	    "                                $XDG_RUNTIME_DIR/tokend/tokend.sock"
	    "\n"
	    "  --help, --version\n");
	exit(code);
}

/* One request to the daemon; exits EXIT_UNREACHABLE when it is not there. */
static void
tokenctl_request(const char *method, const char *path, int want_json,
    struct client_answer *out)
{
	char	*cause;

	if (client_request(socket_path, method, path, want_json,
	    TOKENCTL_ANSWER_MAX, TOKENCTL_TIMEOUT_MS, out, &cause) != 0) {
		fprintf(stderr, "tokenctl: cannot reach tokend at %s: %s\n",
		    socket_path, cause);
		free(cause);
		exit(EXIT_UNREACHABLE);
	}
}

/* The first line of s, control characters shown as '?'. */
static char *
tokenctl_one_line(const char *s)
{
	char	*out = xstrndup(s, strcspn(s, "\r\n"));
	char	*p;

	for (p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return out;
}

/* Why an answer is not a success: its "error", its text, or its code. */
static char *
tokenctl_answer_error(const struct client_answer *a)
{
	struct json_object	*obj, *e;
	char			*out = NULL;

	if (strncmp(a->content_type, "text/plain", 10) == 0 && a->len > 0)
		return tokenctl_one_line(a->body);
	obj = json_tokener_parse(a->body);
	if (obj != NULL && json_object_object_get_ex(obj, "error", &e) &&
	    json_object_is_type(e, json_type_string))
		out = tokenctl_one_line(json_object_get_string(e));
	json_object_put(obj);
	if (out == NULL)
		xasprintf(&out, "HTTP %d", a->status);
	return out;
}

static int
tokenctl_exit_for(const struct client_answer *a)
{
	if (a->status == 404 || a->status == 403)
		return EXIT_NO_ACCOUNT;
	return EXIT_NO_TOKEN;
}

/* "tokenctl: WHAT: REASON" on stderr; the exit code for the answer. */
static int
tokenctl_fail(const struct client_answer *a, const char *what)
{
	char	*err = tokenctl_answer_error(a);
	int	 code = tokenctl_exit_for(a);

	fprintf(stderr, "tokenctl: %s: %s\n", what, err);
	free(err);
	return code;
}

/* "in 1h 59m", "3m ago": a distance in time, rounded for people. */
static void
tokenctl_relative(int64_t secs, char *buf, size_t len)
{
	int64_t	 s = secs < 0 ? -secs : secs;
	char	 d[32];

	if (s >= 86400)
		snprintf(d, sizeof d, "%lldd %lldh", (long long)(s / 86400),
		    (long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(d, sizeof d, "%lldh %lldm", (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(d, sizeof d, "%lldm %llds", (long long)(s / 60),
		    (long long)(s % 60));
	else
		snprintf(d, sizeof d, "%llds", (long long)s);
	if (secs >= 0)
		snprintf(buf, len, "in %s", d);
	else
		snprintf(buf, len, "%s ago", d);
}

/* The local zone's name now, such as "CET"; the table's header names it. */
static void
tokenctl_zone(time_t t, char *buf, size_t len)
{
	struct tm	 tm;

	localtime_r(&t, &tm);
	if (strftime(buf, len, "%Z", &tm) == 0 || buf[0] == '\0')
		strftime(buf, len, "%z", &tm);
}

/* A time string of the answer, or -1. */
static int
tokenctl_time_ms(struct json_object *o, const char *key, int64_t *ms)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    parse_rfc3339(json_object_get_string(v), ms) != 0)
		return -1;
	return 0;
}

/*
 * "2026-11-23 17:04 (in 1h 59m)" in local time, the zone added when it is
 * not the header's (a time across a daylight saving change); "-" without
 * a time.
 */
static void
tokenctl_when(struct json_object *o, const char *key, const char *zone,
    char *buf, size_t len)
{
	struct tm	 tm;
	int64_t		 ms;
	time_t		 t;
	char		 abs[32], z[16], rel[40];

	if (tokenctl_time_ms(o, key, &ms) != 0) {
		snprintf(buf, len, "-");
		return;
	}
	t = (time_t)(ms / 1000);
	localtime_r(&t, &tm);
	strftime(abs, sizeof abs, "%Y-%m-%d %H:%M", &tm);
	tokenctl_zone(t, z, sizeof z);
	tokenctl_relative(ms / 1000 - (int64_t)time(NULL), rel, sizeof rel);
	snprintf(buf, len, "%s%s%s (%s)", abs, strcmp(z, zone) ? " " : "",
	    strcmp(z, zone) ? z : "", rel);
}

/* When something is due, from now: "in 44m 50s"; "now" once it is; "-". */
static void
tokenctl_due(struct json_object *o, const char *key, char *buf, size_t len)
{
	int64_t		 ms, secs;

	if (tokenctl_time_ms(o, key, &ms) != 0)
		snprintf(buf, len, "-");
	else if ((secs = ms / 1000 - (int64_t)time(NULL)) <= 0)
		snprintf(buf, len, "now");
	else
		tokenctl_relative(secs, buf, len);
}

static const char *
tokenctl_field(struct json_object *o, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* A true boolean key; a missing one (an older tokend) is false. */
static int
tokenctl_flag(struct json_object *o, const char *key)
{
	struct json_object	*v;

	return json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_boolean) &&
	    json_object_get_boolean(v);
}

/*
 * Whether the account holds a valid token now: what `status` exits on. A
 * failed account needs a person even while its last token lasts.
 */
static int
tokenctl_account_ok(struct json_object *o)
{
	struct json_object	*v;
	const char		*state = tokenctl_field(o, "state");
	int64_t			 exp;

	if (state == NULL || !strcmp(state, "failed") ||
	    !strcmp(state, "expired") || !strcmp(state, "login"))
		return 0;
	if (!strcmp(state, "fresh"))
		return 1;
	/* refreshing or backoff: with a token that has life left */
	if (tokenctl_time_ms(o, "expires_at", &exp) != 0)
		return 0;
	/* counted by the daemon on a clock that wall-clock jumps miss */
	if (json_object_object_get_ex(o, "expires_in", &v) &&
	    json_object_is_type(v, json_type_int))
		return json_object_get_int64(v) > 0;
	return exp > (int64_t)time(NULL) * 1000;
}

/* The last token file write error; NULL when the writes succeed. */
static const char *
tokenctl_file_error(struct json_object *o)
{
	const char	*ferr = tokenctl_field(o, "file_error");

	return ferr != NULL && *ferr != '\0' ? ferr : NULL;
}

/* The state as shown: "!" when a token file cannot be written. */
static void
tokenctl_row_state(struct json_object *o, char *buf, size_t len)
{
	const char	*state = tokenctl_field(o, "state");
	int64_t		 exp;

	if (state == NULL)
		state = "?";
	/* an older tokend calls an account that never had a token expired */
	if (!strcmp(state, "expired") &&
	    tokenctl_time_ms(o, "expires_at", &exp) != 0)
		state = "backoff";
	snprintf(buf, len, "%s%s", state, tokenctl_file_error(o) ? "!" : "");
}

/*
 * LAST ERROR: the last error, what to do for an account in state login,
 * and a token file's write error.
 */
static char *
tokenctl_row_error(struct json_object *o)
{
	const char	*err = tokenctl_field(o, "last_error");
	const char	*ferr = tokenctl_file_error(o);
	const char	*state = tokenctl_field(o, "state");
	char		*joined, *out, *hint = NULL;

	/* the write error may be the last error too: say it once */
	if (err != NULL && ferr != NULL && strcmp(err, ferr) == 0)
		err = NULL;
	if (err != NULL && *err == '\0')
		err = NULL;
	if (state != NULL && !strcmp(state, "login") &&
	    (err == NULL || strstr(err, "tokenctl login") == NULL))
		xasprintf(&hint, "%srun tokenctl login %s", err != NULL ?
		    "; " : "", tokenctl_field(o, "account"));
	if (err == NULL && ferr == NULL && hint == NULL)
		return xstrdup("-");
	xasprintf(&joined, "%s%s%s%s%s", err != NULL ? err : "",
	    hint != NULL ? hint : "", (err != NULL || hint != NULL) &&
	    ferr != NULL ? "; " : "", ferr != NULL ? "file: " : "",
	    ferr != NULL ? ferr : "");
	free(hint);
	out = tokenctl_one_line(joined);
	free(joined);
	return out;
}

static void
tokenctl_row_fill(struct tokenctl_row *r, struct json_object *o,
    const char *zone)
{
	r->name = tokenctl_field(o, "account");
	r->leader = tokenctl_flag(o, "shared") && tokenctl_field(o, "leader") !=
	    NULL ? tokenctl_field(o, "leader") : "-";
	tokenctl_row_state(o, r->state, sizeof r->state);
	tokenctl_when(o, "expires_at", zone, r->expires, sizeof r->expires);
	if (tokenctl_flag(o, "in_flight"))
		snprintf(r->next, sizeof r->next, "in flight");
	else
		tokenctl_due(o, "next_refresh_at", r->next, sizeof r->next);
	r->error = tokenctl_row_error(o);
}

/* Columns on a terminal: UTF-8 continuation bytes take none. */
static size_t
tokenctl_columns(const char *s)
{
	size_t	 n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* Print s in at most `max` columns, cut with an ellipsis. */
static void
tokenctl_print_cut(const char *s, size_t max)
{
	size_t	 cols = 0, i;

	if (tokenctl_columns(s) <= max) {
		fputs(s, stdout);
		return;
	}
	for (i = 0; s[i] != '\0'; i++) {
		if (((unsigned char)s[i] & 0xc0) != 0x80 && ++cols == max)
			break;
		putchar(s[i]);
	}
	fputs("\xe2\x80\xa6", stdout);	/* … */
}

static size_t
tokenctl_max(size_t a, size_t b)
{
	return a > b ? a : b;
}

/*
 * The table: every column as wide as its widest cell, and LAST ERROR cut
 * to what is left of TOKENCTL_WIDTH unless one account is asked for.
 */
static void
tokenctl_print_table(struct tokenctl_row *rows, size_t n, const char *zone,
    int full, int fleet)
{
	char	 hexp[32];
	size_t	 i, wn = 7, ws = 5, we, wx = 12, wl = 0, left;

	snprintf(hexp, sizeof hexp, "EXPIRES (%s)", zone);
	we = strlen(hexp);
	for (i = 0; i < n; i++) {
		if (fleet)
			wl = tokenctl_max(tokenctl_max(wl, 6),
			    strlen(rows[i].leader));
		wn = tokenctl_max(wn, strlen(rows[i].name));
		ws = tokenctl_max(ws, strlen(rows[i].state));
		we = tokenctl_max(we, strlen(rows[i].expires));
		wx = tokenctl_max(wx, strlen(rows[i].next));
	}
	if (wl > 0)
		wl += 2;
	left = wn + wl + ws + we + wx + 8 < TOKENCTL_WIDTH - TOKENCTL_ERROR_MIN ?
	    TOKENCTL_WIDTH - (wn + wl + ws + we + wx + 8) : TOKENCTL_ERROR_MIN;
	printf("%-*s  %-*s%-*s  %-*s  %-*s  LAST ERROR\n", (int)wn, "ACCOUNT",
	    (int)wl, wl > 0 ? "LEADER" : "", (int)ws, "STATE", (int)we, hexp,
	    (int)wx, "NEXT REFRESH");
	for (i = 0; i < n; i++) {
		printf("%-*s  %-*s%-*s  %-*s  %-*s  ", (int)wn, rows[i].name,
		    (int)wl, wl > 0 ? rows[i].leader : "", (int)ws, rows[i].state, (int)we, rows[i].expires, (int)wx,
		    rows[i].next);
		if (full)
			fputs(rows[i].error, stdout);
		else
			tokenctl_print_cut(rows[i].error, left);
		putchar('\n');
	}
}

/*
 * Below one account's row: how it proves who it is, and the key's RFC
 * 7638 thumbprint (what a provider's console shows beside the key),
 * never the key. An older tokend says none of it: nothing is printed.
 */
static void
tokenctl_print_auth(struct json_object *o, const char *zone)
{
	const char	*grant = tokenctl_field(o, "grant");
	const char	*auth = tokenctl_field(o, "client_auth");
	const char	*alg = tokenctl_field(o, "key_alg");
	const char	*thumb = tokenctl_field(o, "key_thumbprint");
	char		 cert[96];

	if (grant == NULL || auth == NULL)
		return;
	if (!strcmp(grant, "jwt_bearer"))
		printf("auth: a signed assertion as the grant (jwt_bearer)%s%s\n",
		    strcmp(auth, "none") ? ", client_auth " : "",
		    strcmp(auth, "none") ? auth : "");
	else
		printf("auth: %s\n", auth);
	if (alg != NULL && thumb != NULL)
		printf("key: %s, thumbprint %s (RFC 7638, SHA-256)\n", alg,
		    thumb);
	else if (alg != NULL)
		printf("key: %s with the client secret\n", alg);
	else if (thumb != NULL)
		printf("key: the certificate's, thumbprint %s (RFC 7638, "
		    "SHA-256)\n", thumb);
	if (tokenctl_field(o, "cert_expires_at") != NULL) {
		tokenctl_when(o, "cert_expires_at", zone, cert, sizeof cert);
		printf("client certificate: expires %s\n", cert);
	}
}

static void
tokenctl_no_accounts_hint(void)
{
	if (getuid() == 0)
		fprintf(stderr, "tokenctl: tokend has no accounts; add NAME.conf "
		    "files to its accounts_dir and reload\n");
	else
		fprintf(stderr, "tokenctl: no accounts visible to uid %u; "
		    "accounts list their readers in [access], or run as "
		    "root\n", (unsigned)getuid());
}

/*
 * The fleet's line above the table, as tokend(8) has it; 1 when tokend
 * has a fleet. The socket may be an older tokend's: a 404 is no fleet.
 */
static int
tokenctl_fleet_line(void)
{
	struct client_answer	 a;
	struct json_object	*o, *v;
	const char		*node, *master, *err;
	long long		 members = 0, shared = 0, leading = 0;

	tokenctl_request("GET", "/v1/fleet", 1, &a);
	if (a.status != 200 || (o = json_tokener_parse(a.body)) == NULL) {
		client_answer_clear(&a);
		return 0;
	}
	node = tokenctl_field(o, "node");
	master = tokenctl_field(o, "master");
	err = tokenctl_field(o, "last_error");
	if (json_object_object_get_ex(o, "members", &v))
		members = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "shared", &v))
		shared = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "leading", &v))
		leading = json_object_get_int64(v);
	if (tokenctl_flag(o, "connected"))
		printf("fleet: %s, connected to %s, %lld member%s, leading %lld "
		    "of %lld shared\n", node != NULL ? node : "?", master != NULL ?
		    master : "?", members, members == 1 ? "" : "s", leading,
		    shared);
	else
		printf("fleet: %s, not connected: %s\n", node != NULL ? node :
		    "?", err != NULL && *err != '\0' ? err : "connecting");
	json_object_put(o);
	client_answer_clear(&a);
	return 1;
}

/* tokenctl fleet: the facts one a line; exit 0 connected, 1 not, 2 none. */
static int
tokenctl_fleet(void)
{
	static const char *const keys[] = {
		"node", "redis", "master", "connected", "last_error", "members",
		"shared", "leading", "lease_losses", "publish_failures",
		"published", "received", "reconnects"
	};
	struct client_answer	 a;
	struct json_object	*o, *v;
	size_t			 i;
	int			 rc;

	tokenctl_request("GET", "/v1/fleet", 1, &a);
	if (a.status == 404) {
		fprintf(stderr, "tokenctl: fleet: tokend has no [fleet] in "
		    "its configuration\n");
		client_answer_clear(&a);
		return EXIT_NO_ACCOUNT;
	}
	if (a.status != 200) {
		rc = tokenctl_fail(&a, "fleet");
		client_answer_clear(&a);
		return rc;
	}
	if ((o = json_tokener_parse(a.body)) == NULL) {
		fprintf(stderr, "tokenctl: fleet: malformed answer\n");
		client_answer_clear(&a);
		return EXIT_NO_TOKEN;
	}
	rc = tokenctl_flag(o, "connected") ? EXIT_OK : EXIT_NO_TOKEN;
	if (json_out)
		printf("%s", a.body);
	else
		for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			if (!json_object_object_get_ex(o, keys[i], &v))
				continue;
			printf("%s: %s\n", keys[i], v == NULL ? "-" :
			    json_object_is_type(v, json_type_string) ?
			    (*json_object_get_string(v) != '\0' ?
			    json_object_get_string(v) : "-") :
			    json_object_to_json_string(v));
		}
	json_object_put(o);
	client_answer_clear(&a);
	return rc;
}

static int
tokenctl_status(const char *account)
{
	struct client_answer	 a;
	struct json_object	*arr, *o;
	struct tokenctl_row	*rows;
	const char		*name;
	char			 zone[16];
	size_t			 i, n, shown = 0;
	int			 rc = EXIT_OK, fleet = 0;

	if (!json_out)
		fleet = tokenctl_fleet_line();
	tokenctl_request("GET", "/v1/status", 1, &a);
	if (a.status != 200) {
		rc = tokenctl_fail(&a, "status");
		client_answer_clear(&a);
		return rc;
	}
	arr = json_tokener_parse(a.body);
	if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
		fprintf(stderr, "tokenctl: status: malformed answer\n");
		json_object_put(arr);
		client_answer_clear(&a);
		return EXIT_NO_TOKEN;
	}
	n = json_object_array_length(arr);
	rows = xcalloc(n + 1, sizeof *rows);
	tokenctl_zone(time(NULL), zone, sizeof zone);
	for (i = 0; i < n; i++) {
		o = json_object_array_get_idx(arr, i);
		name = tokenctl_field(o, "account");
		if (name == NULL || (account != NULL && strcmp(name, account)))
			continue;
		if (!tokenctl_account_ok(o))
			rc = EXIT_NO_TOKEN;
		if (json_out && account != NULL)
			printf("%s\n", json_object_to_json_string_ext(o,
			    JSON_C_TO_STRING_PLAIN));
		else if (!json_out) {
			tokenctl_row_fill(&rows[shown], o, zone);
			rows[shown].obj = o;
		}
		shown++;
	}
	if (json_out && account == NULL)
		printf("%s", a.body);
	if (account != NULL && shown == 0) {
		fprintf(stderr, "tokenctl: status: no such account: %s\n",
		    account);
		rc = EXIT_NO_ACCOUNT;
	} else if (shown == 0) {
		tokenctl_no_accounts_hint();
		rc = EXIT_NO_TOKEN;
	} else if (!json_out)
		tokenctl_print_table(rows, shown, zone, account != NULL,
		    fleet);
	if (!json_out && account != NULL && shown > 0)
		tokenctl_print_auth(rows[0].obj, zone);
	for (i = 0; i < shown; i++)
		free(rows[i].error);
	free(rows);
	json_object_put(arr);
	client_answer_clear(&a);
	return rc;
}

static int
tokenctl_token(const char *account, long min_valid)
{
	struct client_answer	 a;
	char			 path[256], *err;
	int			 rc = EXIT_OK;

	if (min_valid > 0)
		snprintf(path, sizeof path, "/v1/token/%s?min_valid=%ld",
		    account, min_valid);
	else
		snprintf(path, sizeof path, "/v1/token/%s", account);
	tokenctl_request("GET", path, json_out, &a);
	if (a.status == 200) {
		fwrite(a.body, 1, a.len, stdout);
		if (a.len > 0 && a.body[a.len - 1] != '\n')
			putchar('\n');
	} else if (a.status == 503) {
		err = tokenctl_answer_error(&a);
		fprintf(stderr, "tokenctl: no valid token for %s: %s\n",
		    account, err);
		free(err);
		rc = EXIT_NO_TOKEN;
	} else
		rc = tokenctl_fail(&a, account);
	client_answer_clear(&a);
	return rc;
}

static int
tokenctl_refresh(const char *account)
{
	struct client_answer	 a;
	struct json_object	*o;
	char			 path[256], exp[96], zone[16];
	int			 rc = EXIT_OK;

	snprintf(path, sizeof path, "/v1/refresh/%s", account);
	tokenctl_request("POST", path, 1, &a);
	if (a.status != 200)
		rc = tokenctl_fail(&a, account);
	else if (json_out)
		printf("%s", a.body);
	else if ((o = json_tokener_parse(a.body)) != NULL) {
		tokenctl_zone(time(NULL), zone, sizeof zone);
		tokenctl_when(o, "expires_at", zone, exp, sizeof exp);
		printf("%s: refreshed; expires %s\n", account, exp);
		json_object_put(o);
	}
	client_answer_clear(&a);
	return rc;
}

/* Each string of the answer's array `key`, a line on stderr. */
static size_t
tokenctl_print_diag(struct json_object *o, const char *key)
{
	struct json_object	*arr, *v;
	char			*line;
	size_t			 i, n = 0;

	if (o == NULL || !json_object_object_get_ex(o, key, &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return 0;
	for (i = 0; i < json_object_array_length(arr); i++) {
		v = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(v, json_type_string))
			continue;
		line = tokenctl_one_line(json_object_get_string(v));
		fprintf(stderr, "%s\n", line);
		free(line);
		n++;
	}
	return n;
}

static int
tokenctl_reload(void)
{
	struct client_answer	 a;
	struct json_object	*o;
	size_t			 errors;
	int			 rc = EXIT_OK;

	tokenctl_request("POST", "/v1/reload", 1, &a);
	o = json_tokener_parse(a.body);
	tokenctl_print_diag(o, "warnings");
	errors = tokenctl_print_diag(o, "errors");
	if (a.status != 200)
		rc = tokenctl_fail(&a, "reload");
	else if (errors > 0)
		rc = EXIT_NO_TOKEN;
	if (json_out)
		printf("%s", a.body);
	else if (rc == EXIT_OK)
		printf("reloaded\n");
	json_object_put(o);
	client_answer_clear(&a);
	return rc;
}

static void
tokenctl_interrupt_cb(int sig)
{
	(void)sig;
	tokenctl_interrupted = 1;
}

/* The terminal's width when stdout is one that can show a QR code; 0. */
static int
tokenctl_qr_columns(void)
{
	struct winsize	 ws;
	const char	*term = getenv("TERM");

	if (!isatty(STDOUT_FILENO) || term == NULL || *term == '\0' ||
	    !strcmp(term, "dumb"))
		return 0;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return TOKENCTL_QR_COLUMNS;
}

/* What the person must do: the first line of a login's answer. */
static void
tokenctl_login_steps(struct tokenctl_login *l, struct json_object *o)
{
	struct json_object	*v;
	const char		*url = tokenctl_field(o, "authorization_url");
	const char		*uri = tokenctl_field(o, "verification_uri");
	const char		*code = tokenctl_field(o, "user_code");
	const char		*full = tokenctl_field(o,
				    "verification_uri_complete");
	char			*text, *curl, *ccode, *cfull = NULL, *qr = NULL;
	char			 host[256], *cause;
	int64_t			 expires_in = 0;
	int			 cols;

	if (json_object_object_get_ex(o, "expires_in", &v) &&
	    json_object_is_type(v, json_type_int))
		expires_in = json_object_get_int64(v);
	if (url == NULL && (uri == NULL || code == NULL))
		return;		/* a line a newer tokend may send */
	/*
	 * A browser login lasts as long as the daemon lets it; a device
	 * code, its life and time for the daemon's last answer.
	 */
	l->stream.line_timeout_ms = url == NULL && expires_in > 0 &&
	    expires_in <= 86400 ? expires_in * MSEC_PER_SEC +
	    TOKENCTL_TIMEOUT_MS : -1;
	if (json_out)
		return;
	if (url != NULL) {
		if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
			snprintf(host, sizeof host, "HOST");
		host[sizeof host - 1] = '\0';
		curl = prompt_ascii(url);
		text = prompt_browser(l->account, curl, host);
	} else {
		curl = prompt_ascii(uri);
		ccode = prompt_ascii(code);
		if (full != NULL)
			cfull = prompt_ascii(full);
		if (cfull != NULL && (cols = tokenctl_qr_columns()) > 0 &&
		    (qr = prompt_qr(cfull, cols, &cause)) == NULL)
			free(cause);	/* the URL is shown instead */
		text = prompt_device(l->account, curl, ccode, cfull, expires_in,
		    qr);
		free(ccode);
		free(cfull);
		free(qr);
	}
	free(curl);
	printf("%sWaiting for the login to end (Ctrl-C cancels it)...\n",
	    text);
	fflush(stdout);
	free(text);
}

/* The outcome: the last line of a login's answer. */
static void
tokenctl_login_outcome(struct tokenctl_login *l, struct json_object *o)
{
	const char	*err = tokenctl_field(o, "error");
	char		 exp[96], zone[16], *line;

	if (tokenctl_field(o, "state") != NULL) {
		l->outcome = EXIT_OK;
		if (json_out)
			return;
		tokenctl_zone(time(NULL), zone, sizeof zone);
		tokenctl_when(o, "expires_at", zone, exp, sizeof exp);
		printf("%s: logged in; the token expires %s\n", l->account,
		    exp);
		return;
	}
	l->outcome = EXIT_NO_TOKEN;
	line = tokenctl_one_line(err);
	fprintf(stderr, "tokenctl: login failed: %s\n", line);
	free(line);
}

static int
tokenctl_login_line_cb(const char *line, void *arg)
{
	struct tokenctl_login	*l = arg;
	struct json_object	*o = json_tokener_parse(line);

	l->lines++;
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		l->malformed = 1;
		json_object_put(o);
		return 1;
	}
	if (json_out) {
		printf("%s\n", json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
	}
	if (tokenctl_field(o, "state") != NULL ||
	    tokenctl_field(o, "error") != NULL)
		tokenctl_login_outcome(l, o);
	else
		tokenctl_login_steps(l, o);
	json_object_put(o);
	return l->outcome >= 0;
}

/* Ctrl-C: the daemon drops the pending login too. */
static int
tokenctl_login_cancel(const char *account)
{
	struct client_answer	 a;
	sigset_t		 set;
	char			 path[256], *cause, *err;

	/* a second Ctrl-C ends tokenctl at once */
	signal(SIGINT, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	snprintf(path, sizeof path, "/v1/login/%s", account);
	if (client_request(socket_path, "DELETE", path, 1, TOKENCTL_LOGIN_MAX,
	    TOKENCTL_CANCEL_MS, &a, &cause) != 0) {
		fprintf(stderr, "tokenctl: cannot cancel the login in tokend: "
		    "%s\n", cause);
		free(cause);
	} else {
		if (a.status != 200 && a.status != 204 && a.status != 404) {
			err = tokenctl_answer_error(&a);
			fprintf(stderr, "tokenctl: cannot cancel the login in "
			    "tokend: %s\n", err);
			free(err);
		}
		client_answer_clear(&a);
	}
	fprintf(stderr, "tokenctl: login cancelled\n");
	return EXIT_INTERRUPTED;
}

/* A 200 answer read whole (not as a stream): its lines, one by one. */
static void
tokenctl_login_body(struct tokenctl_login *l, char *body)
{
	char	*line, *save = NULL;

	for (line = strtok_r(body, "\r\n", &save); line != NULL &&
	    !tokenctl_login_line_cb(line, l); line = strtok_r(NULL, "\r\n",
	    &save))
		;
}

static int
tokenctl_login(const char *account)
{
	struct tokenctl_login	 l = { .account = account, .outcome = -1 };
	struct client_answer	 a;
	struct sigaction	 sa;
	sigset_t		 block, waitmask;
	char			 path[256], *cause;
	int			 rc;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = tokenctl_interrupt_cb;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	/* blocked but while waiting, so no Ctrl-C slips past the wait */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGINT);
	l.stream.line_cb = tokenctl_login_line_cb;
	l.stream.arg = &l;
	l.stream.line_timeout_ms = TOKENCTL_TIMEOUT_MS;
	l.stream.sigmask = &waitmask;
	l.stream.stop = &tokenctl_interrupted;
	snprintf(path, sizeof path, "/v1/login/%s", account);
	if (client_stream(socket_path, "POST", path, TOKENCTL_LOGIN_MAX,
	    &l.stream, &a, &cause) != 0) {
		if (tokenctl_interrupted) {
			free(cause);
			return tokenctl_login_cancel(account);
		}
		if (l.outcome >= 0 || l.malformed)
			;	/* said what it brought; the rest is moot */
		else if (l.lines == 0)
			fprintf(stderr, "tokenctl: cannot reach tokend at %s: "
			    "%s\n", socket_path, cause);
		else
			fprintf(stderr, "tokenctl: login failed: %s\n", cause);
		free(cause);
		if (l.malformed)
			fprintf(stderr, "tokenctl: login: malformed answer\n");
		if (l.outcome >= 0)
			return l.outcome;
		return l.lines == 0 && !l.malformed ? EXIT_UNREACHABLE :
		    EXIT_NO_TOKEN;
	}
	if (a.status != 200) {
		rc = tokenctl_fail(&a, "login failed");
		client_answer_clear(&a);
		return rc;
	}
	if (l.lines == 0)
		tokenctl_login_body(&l, a.body);
	client_answer_clear(&a);
	if (l.malformed) {
		fprintf(stderr, "tokenctl: login: malformed answer\n");
		return EXIT_NO_TOKEN;
	}
	if (l.outcome < 0) {
		fprintf(stderr, "tokenctl: login failed: tokend ended the "
		    "answer without an outcome\n");
		return EXIT_NO_TOKEN;
	}
	return l.outcome;
}

static int
tokenctl_logout(const char *account)
{
	struct client_answer	 a;
	struct json_object	*o, *v;
	const char		*err;
	char			 path[256], *line;
	int			 rc = EXIT_OK;

	snprintf(path, sizeof path, "/v1/logout/%s", account);
	tokenctl_request("POST", path, 1, &a);
	if (a.status != 200) {
		rc = tokenctl_fail(&a, "logout failed");
		client_answer_clear(&a);
		return rc;
	}
	o = json_tokener_parse(a.body);
	if (o == NULL || !json_object_object_get_ex(o, "revoked", &v) ||
	    !json_object_is_type(v, json_type_boolean)) {
		fprintf(stderr, "tokenctl: logout: malformed answer\n");
		rc = EXIT_NO_TOKEN;
	} else if (json_object_get_boolean(v)) {
		if (!json_out)
			printf("%s: logged out; its tokens were revoked and "
			    "forgotten\n", account);
	} else {
		err = tokenctl_field(o, "error");
		line = tokenctl_one_line(err != NULL ? err : "no reason given");
		fprintf(stderr, "tokenctl: logout %s: revoking the tokens "
		    "failed: %s; tokend has forgotten them all the same\n",
		    account, line);
		free(line);
		rc = EXIT_NO_TOKEN;
	}
	if (json_out)
		printf("%s", a.body);
	json_object_put(o);
	client_answer_clear(&a);
	return rc;
}

static int
tokenctl_name_ok(const char *name)
{
	size_t	 i;

	if (*name == '\0' || strlen(name) > ACCOUNT_NAME_MAX)
		return 0;
	for (i = 0; name[i] != '\0'; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789._-", name[i]))
			return 0;
	return 1;
}

static const struct option longopts[] = {
	{ "socket", required_argument, NULL, 's' },
	{ "json", no_argument, NULL, 'j' },
	{ "min-valid", required_argument, NULL, 'm' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "user", no_argument, NULL, 'u' },
	{ NULL, 0, NULL, 0 }
};

/* Set by the options; tokenctl_socket() picks one. */
static const char		*socket_option;	/* --socket */
static int			 user_option;	/* --user */

/* Options up to the next word that is not one ("+"). */
static void
tokenctl_parse_options(int argc, char *argv[], long *min_valid)
{
	char	*end;
	int	 ch;

	while ((ch = getopt_long(argc, argv, "+s:jm:hV", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 's':
			socket_option = optarg;
			break;
		case 'u':
			user_option = 1;
			break;
		case 'j':
			json_out = 1;
			break;
		case 'm':
			errno = 0;
			*min_valid = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || errno != 0 ||
			    *min_valid < 0)
				tokenctl_usage(stderr, EXIT_USAGE);
			break;
		case 'h':
			tokenctl_usage(stdout, EXIT_OK);
		case 'V':
			printf("tokenctl %s\n", TOKEND_VERSION);
			exit(EXIT_OK);
		default:
			tokenctl_usage(stderr, EXIT_USAGE);
		}
	}
}

/*
 * --socket, else --user (a user manager's tokend.socket, ListenStream=
 * %t/tokend/tokend.sock, as systemctl --user finds its manager), else
 * $TOKEND_SOCKET, else the system daemon's.
 */
static const char *
tokenctl_socket(void)
{
	const char	*v;
	char		*path;

	if (socket_option != NULL)
		return socket_option;
	if (user_option) {
		v = getenv("XDG_RUNTIME_DIR");
		if (v == NULL || *v != '/') {
			fprintf(stderr, "tokenctl: --user: XDG_RUNTIME_DIR is "
			    "%s; it names your runtime folder (/run/user/UID), "
			    "where your tokend listens; or use --socket PATH\n",
			    v == NULL || *v == '\0' ? "not set" :
			    "not an absolute path");
			exit(EXIT_USAGE);
		}
		xasprintf(&path, "%s/tokend/tokend.sock", v);
		return path;
	}
	v = getenv("TOKEND_SOCKET");
	return v != NULL && *v != '\0' ? v : DEFAULT_SOCKET;
}

int
main(int argc, char *argv[])
{
	const char	*cmd;
	long		 min_valid = 0;
	int		 rc;

	tokenctl_parse_options(argc, argv, &min_valid);
	if (optind >= argc)
		tokenctl_usage(stderr, EXIT_USAGE);
	cmd = argv[optind++];
	/* options may follow the command: token --min-valid 300 NAME */
	tokenctl_parse_options(argc, argv, &min_valid);
	if (strcmp(cmd, "help") != 0)
		socket_path = tokenctl_socket();

	if (!strcmp(cmd, "status") && argc - optind <= 1)
		rc = tokenctl_status(optind < argc ? argv[optind] : NULL);
	else if (!strcmp(cmd, "token") && argc - optind == 1 &&
	    tokenctl_name_ok(argv[optind]))
		rc = tokenctl_token(argv[optind], min_valid);
	else if (!strcmp(cmd, "refresh") && argc - optind == 1 &&
	    tokenctl_name_ok(argv[optind]))
		rc = tokenctl_refresh(argv[optind]);
	else if (!strcmp(cmd, "login") && argc - optind == 1 &&
	    tokenctl_name_ok(argv[optind]))
		rc = tokenctl_login(argv[optind]);
	else if (!strcmp(cmd, "logout") && argc - optind == 1 &&
	    tokenctl_name_ok(argv[optind]))
		rc = tokenctl_logout(argv[optind]);
	else if (!strcmp(cmd, "reload") && argc == optind)
		rc = tokenctl_reload();
	else if (!strcmp(cmd, "fleet") && argc == optind)
		rc = tokenctl_fleet();
	else if ((!strcmp(cmd, "token") || !strcmp(cmd, "refresh") ||
	    !strcmp(cmd, "login") || !strcmp(cmd, "logout")) &&
	    argc - optind == 1) {
		fprintf(stderr, "tokenctl: no such account: %s\n",
		    argv[optind]);
		rc = EXIT_NO_ACCOUNT;
	} else if (!strcmp(cmd, "help"))
		tokenctl_usage(stdout, EXIT_OK);
	else
		tokenctl_usage(stderr, EXIT_USAGE);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "tokenctl: cannot write the answer: %s\n",
		    strerror(errno));
		rc = rc == EXIT_OK ? EXIT_NO_TOKEN : rc;
	}
	return rc;
}
