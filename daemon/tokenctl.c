/*
 * tokenctl: the client of tokend's socket. One request, one answer,
 * printed for a person (or as JSON with --json). HTTP goes through
 * libcurl's Unix socket support; nothing here speaks HTTP by hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "tokend.h"

#define EXIT_OK			0
#define EXIT_NO_TOKEN		1	/* no valid token, refresh failed */
#define EXIT_NO_ACCOUNT		2	/* no such account, or not allowed */
#define EXIT_UNREACHABLE	3	/* the daemon does not answer */
#define EXIT_USAGE		64

struct answer {
	long	 status;
	char	*body;
	size_t	 len;
};

static const char	*socket_path;
static int		 json_out;

static void __attribute__((noreturn))
tokenctl_usage(void)
{
	fprintf(stderr,
	    "usage: tokenctl [--socket PATH] [--json] COMMAND\n"
	    "  status [ACCOUNT]              accounts, expiry, next refresh\n"
	    "  token [--min-valid S] ACCOUNT print the access token\n"
	    "  refresh ACCOUNT               refresh now, wait for the outcome\n"
	    "  reload                        re-read the configuration\n");
	exit(EXIT_USAGE);
}

static size_t
tokenctl_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct answer	*a = arg;
	size_t		 n = size * nmemb;

	if (a->len + n > RESPONSE_MAX)
		return 0;
	a->body = xreallocarray(a->body, a->len + n + 1, 1);
	memcpy(a->body + a->len, data, n);
	a->len += n;
	a->body[a->len] = '\0';
	return n;
}

/* One request to the daemon; exits EXIT_UNREACHABLE when it is not there. */
static void
tokenctl_request(const char *method, const char *path, int want_json,
    struct answer *out)
{
	struct curl_slist	*headers = NULL;
	char			 url[512], err[CURL_ERROR_SIZE] = "";
	CURLcode		 rc;
	CURL			*c;

	memset(out, 0, sizeof *out);
	if ((c = curl_easy_init()) == NULL) {
		fprintf(stderr, "tokenctl: cannot initialise libcurl\n");
		exit(EXIT_UNREACHABLE);
	}
	snprintf(url, sizeof url, "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (!strcmp(method, "POST")) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	}
	if (want_json)
		headers = curl_slist_append(headers,
		    "Accept: application/json");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tokenctl_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 90L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK) {
		fprintf(stderr, "tokenctl: cannot reach tokend at %s: %s\n",
		    socket_path, err[0] ? err : curl_easy_strerror(rc));
		exit(EXIT_UNREACHABLE);
	}
	if (out->body == NULL)
		out->body = xstrdup("");
}

static void
tokenctl_answer_free(struct answer *a)
{
	if (a->body != NULL)
		explicit_bzero(a->body, a->len);
	free(a->body);
}

/* The "error" of an error answer, or a generic text. */
static char *
tokenctl_answer_error(const struct answer *a)
{
	struct json_object	*obj, *e;
	char			*out;

	obj = json_tokener_parse(a->body);
	if (obj != NULL && json_object_object_get_ex(obj, "error", &e) &&
	    json_object_is_type(e, json_type_string))
		out = xstrdup(json_object_get_string(e));
	else
		xasprintf(&out, "HTTP %ld", a->status);
	json_object_put(obj);
	return out;
}

static int
tokenctl_exit_for(const struct answer *a)
{
	if (a->status == 404 || a->status == 403)
		return EXIT_NO_ACCOUNT;
	return EXIT_NO_TOKEN;
}

static int
tokenctl_fail(const struct answer *a, const char *what)
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

/* "2026-11-23 17:04 (in 1h 59m)" in local time, or "-". */
static void
tokenctl_when(struct json_object *v, char *buf, size_t len)
{
	struct tm	 tm;
	int64_t		 ms;
	time_t		 t;
	char		 abs[32], rel[40];

	if (v == NULL || !json_object_is_type(v, json_type_string) ||
	    parse_rfc3339(json_object_get_string(v), &ms) != 0) {
		snprintf(buf, len, "-");
		return;
	}
	t = (time_t)(ms / 1000);
	localtime_r(&t, &tm);
	strftime(abs, sizeof abs, "%Y-%m-%d %H:%M", &tm);
	tokenctl_relative(ms / 1000 - (int64_t)time(NULL), rel, sizeof rel);
	snprintf(buf, len, "%s (%s)", abs, rel);
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

static int
tokenctl_status(const char *account)
{
	struct answer		 a;
	struct json_object	*arr, *o, *v;
	char			 exp[96], next[96];
	const char		*name, *err;
	size_t			 i, n, w = 7, shown = 0;
	int			 rc;

	tokenctl_request("GET", "/v1/status", 1, &a);
	if (a.status != 200) {
		rc = tokenctl_fail(&a, "status");
		tokenctl_answer_free(&a);
		return rc;
	}
	arr = json_tokener_parse(a.body);
	if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
		fprintf(stderr, "tokenctl: status: malformed answer\n");
		tokenctl_answer_free(&a);
		return EXIT_NO_TOKEN;
	}
	n = json_object_array_length(arr);
	if (json_out && account == NULL) {
		printf("%s", a.body);
		json_object_put(arr);
		tokenctl_answer_free(&a);
		return EXIT_OK;
	}
	for (i = 0; i < n; i++) {
		name = tokenctl_field(json_object_array_get_idx(arr, i), "account");
		if (name != NULL && strlen(name) > w)
			w = strlen(name);
		if (name != NULL && account != NULL && !strcmp(name, account))
			shown++;
	}
	if (account != NULL && shown == 0) {
		fprintf(stderr, "tokenctl: status: no such account: %s\n",
		    account);
		json_object_put(arr);
		tokenctl_answer_free(&a);
		return EXIT_NO_ACCOUNT;
	}
	shown = 0;
	if (!json_out)
		printf("%-*s  %-10s  %-30s  %-30s  %s\n", (int)w, "ACCOUNT",
		    "STATE", "EXPIRES", "NEXT REFRESH", "LAST ERROR");
	for (i = 0; i < n; i++) {
		o = json_object_array_get_idx(arr, i);
		name = tokenctl_field(o, "account");
		if (name == NULL || (account != NULL && strcmp(name, account)))
			continue;
		shown++;
		if (json_out) {
			printf("%s\n", json_object_to_json_string_ext(o,
			    JSON_C_TO_STRING_PLAIN));
			continue;
		}
		json_object_object_get_ex(o, "expires_at", &v);
		tokenctl_when(v, exp, sizeof exp);
		v = NULL;
		json_object_object_get_ex(o, "next_refresh_at", &v);
		tokenctl_when(v, next, sizeof next);
		err = tokenctl_field(o, "last_error");
		printf("%-*s  %-10s  %-30s  %-30s  %s\n", (int)w, name,
		    tokenctl_field(o, "state") ? tokenctl_field(o, "state") : "?", exp, next,
		    err != NULL ? err : "-");
	}
	json_object_put(arr);
	tokenctl_answer_free(&a);
	return EXIT_OK;
}

static int
tokenctl_token(const char *account, long min_valid)
{
	struct answer	 a;
	char		 path[256];
	int		 rc = EXIT_OK;

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
	} else
		rc = tokenctl_fail(&a, account);
	tokenctl_answer_free(&a);
	return rc;
}

static int
tokenctl_refresh(const char *account)
{
	struct answer		 a;
	struct json_object	*o, *v = NULL;
	char			 path[256], exp[96];
	int			 rc = EXIT_OK;

	snprintf(path, sizeof path, "/v1/refresh/%s", account);
	tokenctl_request("POST", path, 1, &a);
	if (a.status != 200)
		rc = tokenctl_fail(&a, account);
	else if (json_out)
		printf("%s", a.body);
	else if ((o = json_tokener_parse(a.body)) != NULL) {
		json_object_object_get_ex(o, "expires_at", &v);
		tokenctl_when(v, exp, sizeof exp);
		printf("%s: refreshed; expires %s\n", account, exp);
		json_object_put(o);
	}
	tokenctl_answer_free(&a);
	return rc;
}

static int
tokenctl_reload(void)
{
	struct answer	 a;
	int		 rc = EXIT_OK;

	tokenctl_request("POST", "/v1/reload", 1, &a);
	if (a.status != 200)
		rc = tokenctl_fail(&a, "reload");
	else if (json_out)
		printf("%s", a.body);
	else
		printf("reloaded\n");
	tokenctl_answer_free(&a);
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
	{ NULL, 0, NULL, 0 }
};

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
			socket_path = optarg;
			break;
		case 'j':
			json_out = 1;
			break;
		case 'm':
			errno = 0;
			*min_valid = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || errno != 0 ||
			    *min_valid < 0)
				tokenctl_usage();
			break;
		case 'V':
			printf("tokenctl %s\n", TOKEND_VERSION);
			exit(EXIT_OK);
		default:
			tokenctl_usage();
		}
	}
}

int
main(int argc, char *argv[])
{
	const char	*cmd;
	long		 min_valid = 0;
	int		 rc;

	socket_path = getenv("TOKEND_SOCKET");
	if (socket_path == NULL || *socket_path == '\0')
		socket_path = DEFAULT_SOCKET;
	tokenctl_parse_options(argc, argv, &min_valid);
	if (optind >= argc)
		tokenctl_usage();
	cmd = argv[optind++];
	/* options may follow the command: token --min-valid 300 NAME */
	tokenctl_parse_options(argc, argv, &min_valid);

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(cmd, "status") && argc - optind <= 1)
		rc = tokenctl_status(optind < argc ? argv[optind] : NULL);
	else if (!strcmp(cmd, "token") && argc - optind == 1 &&
	    tokenctl_name_ok(argv[optind]))
		rc = tokenctl_token(argv[optind], min_valid);
	else if (!strcmp(cmd, "refresh") && argc - optind == 1 &&
	    tokenctl_name_ok(argv[optind]))
		rc = tokenctl_refresh(argv[optind]);
	else if (!strcmp(cmd, "reload") && argc == optind)
		rc = tokenctl_reload();
	else if ((!strcmp(cmd, "token") || !strcmp(cmd, "refresh")) &&
	    argc - optind == 1) {
		fprintf(stderr, "tokenctl: no such account: %s\n",
		    argv[optind]);
		rc = EXIT_NO_ACCOUNT;
	} else
		tokenctl_usage();
	curl_global_cleanup();
	return rc;
}
