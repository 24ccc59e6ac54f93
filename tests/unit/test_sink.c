/*
 * Unit tests for sink.c (token file formats), store.c (the state file)
 * and file.c (atomic replacement, stale temp files). Files go to a fresh
 * mkdtemp folder per test.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tokend.h"
#include "unit.h"

#define SEC		1000LL
#define T0		1700000000000LL		/* 2023-11-14T22:13:20Z */

/* ---- temp folders ---- */

static void
put_file(const char *path, const char *content, mode_t mode)
{
	FILE	*f;

	if ((f = fopen(path, "w")) == NULL)
		fail_msg("cannot create %s: %s", path, strerror(errno));
	fputs(content, f);
	fclose(f);
	chmod(path, mode);
}

static char *
get_file(const char *path, size_t *lenp)
{
	char	*buf;
	size_t	 len;

	if (read_file_capped(path, 1 << 20, &buf, &len) != 0)
		return NULL;
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

/* The names in dir, sorted, joined with '|' (dot files included). */
static char *
list_dir(const char *dir)
{
	struct dirent	**names;
	char		 *out = NULL, *next;
	int		  n, i;

	n = scandir(dir, &names, NULL, alphasort);
	if (n == -1)
		return strdup("(error)");
	for (i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") != 0 &&
		    strcmp(names[i]->d_name, "..") != 0) {
			if (asprintf(&next, "%s%s%s", out ? out : "",
			    out ? "|" : "", names[i]->d_name) == -1)
				fail_msg("asprintf");
			free(out);
			out = next;
		}
		free(names[i]);
	}
	free(names);
	return out != NULL ? out : strdup("");
}

static void
token_set(struct token *t, const char *access, const char *refresh,
    const char *type, int64_t expires_at, int64_t obtained_at)
{
	memset(t, 0, sizeof *t);
	t->access_token = access ? strdup(access) : NULL;
	t->refresh_token = refresh ? strdup(refresh) : NULL;
	t->token_type = type ? strdup(type) : NULL;
	t->expires_at = expires_at;
	t->obtained_at = obtained_at;
}

/* ---- sink_render: raw, header ---- */

static void
test_render_raw_header(void **state)
{
	static const struct {
		enum sink_format	 format;
		const char		*access;
		const char		*type;
		const char		*want;
	} cases[] = {
		{ SINK_RAW, "abc.DEF-123", "Bearer", "abc.DEF-123\n" },
		{ SINK_RAW, "a", NULL, "a\n" },
		{ SINK_RAW, "tok$'\"", "DPoP", "tok$'\"\n" },
		{ SINK_HEADER, "abc.DEF-123", "Bearer",
		    "Authorization: Bearer abc.DEF-123\n" },
		{ SINK_HEADER, "abc", NULL, "Authorization: Bearer abc\n" },
		{ SINK_HEADER, "abc", "DPoP", "Authorization: DPoP abc\n" },
	};
	struct token	 t;
	char		*out, what[64];
	size_t		 i, len;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		token_set(&t, cases[i].access, NULL, cases[i].type,
		    T0 + 3600 * SEC, T0);
		len = 12345;
		out = sink_render(cases[i].format, &t, T0, &len);
		snprintf(what, sizeof what, "render case %zu", i);
		CHECK_STR(what, out, cases[i].want);
		CHECK_I64(what, len, strlen(cases[i].want));
		free(out);
		oauth_token_clear(&t);
	}
}

/* ---- sink_render: env, checked through a real shell ---- */

/* Source `file` in /bin/sh and print $var: what a script would see. */
static char *
sh_value(const char *file, const char *var)
{
	char	 script[128], buf[4096];
	size_t	 len = 0;
	ssize_t	 n;
	pid_t	 pid;
	int	 fds[2], status;

	snprintf(script, sizeof script, ". \"$1\"; printf %%s \"$%s\"", var);
	if (pipe(fds) == -1)
		fail_msg("pipe: %s", strerror(errno));
	if ((pid = fork()) == -1)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execl("/bin/sh", "sh", "-c", script, "sh", file, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	close(fds[0]);
	buf[len] = '\0';
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		return NULL;
	return strdup(buf);
}

static void
test_render_env_exact(void **state)
{
	struct token	 t;
	char		*out;
	size_t		 len;

	(void)state;
	token_set(&t, "abc.DEF-123_+/=:,@%", NULL, "Bearer",
	    T0 + 3600 * SEC + 999, T0);
	out = sink_render(SINK_ENV, &t, T0, &len);
	CHECK_STR("env bare", out, "ACCESS_TOKEN=abc.DEF-123_+/=:,@%\n"
	    "TOKEN_TYPE=Bearer\nEXPIRES_AT=1700003600\n");
	CHECK_I64("env bare len", len, strlen(out));
	free(out);
	oauth_token_clear(&t);

	/* a static token never expires */
	token_set(&t, "perm", NULL, NULL, 0, T0);
	out = sink_render(SINK_ENV, &t, T0, &len);
	CHECK_STR("env static", out, "ACCESS_TOKEN=perm\nTOKEN_TYPE=Bearer\n"
	    "EXPIRES_AT=0\n");
	free(out);
	oauth_token_clear(&t);
}

/*
 * Render each token as env, write it, source it in /bin/sh and compare
 * what the shell sees. Returns how many came back changed.
 */
static int
env_round_trip(const char *dir, const char *const *tokens, size_t n)
{
	struct token	 t;
	char		*out, *file, *got;
	size_t		 i, len;
	int		 bad = 0;

	file = path_in(dir, "token.env");
	for (i = 0; i < n; i++) {
		token_set(&t, tokens[i], NULL, "Bearer", T0 + 60 * SEC, T0);
		out = sink_render(SINK_ENV, &t, T0, &len);
		if (strncmp(out, "ACCESS_TOKEN=", 13) != 0)
			fail_msg("token [%s]: bad env layout: %s", tokens[i],
			    out);
		put_file(file, out, 0600);
		got = sh_value(file, "ACCESS_TOKEN");
		if (got == NULL || strcmp(got, tokens[i]) != 0) {
			print_error("token [%s]: sh reads [%s] from %s",
			    tokens[i], got ? got : "(sh failed)", out);
			bad++;
		}
		free(got);
		got = sh_value(file, "TOKEN_TYPE");
		CHECK_STR("TOKEN_TYPE through sh", got, "Bearer");
		free(got);
		got = sh_value(file, "EXPIRES_AT");
		CHECK_STR("EXPIRES_AT through sh", got, "1700000060");
		free(got);
		free(out);
		oauth_token_clear(&t);
	}
	free(file);
	return bad;
}

static void
test_render_env_shell(void **state)
{
	static const char *const tokens[] = {
		"plain.token-123",
		"a$b",
		"$HOME",
		"${HOME}",
		"a'b",
		"a\"b",
		"$HOME'x\"y",
		"it's\"$PATH\"",
		"`id`",
		"$(id)",
		"a\\b",
		"a\\'b\\",
		"\\$HOME'",
		"'",
		"\"",
		"!x",
		"#x",
		"a#b",
		"a;b",
		"a&b|c<d>e",
		"{a,b}",
		"*",
		"?",
		"[a]",
		"a=b==",
		"--x",
		"%s%n",
		"@x,y:z",
		"x+y/z",
		"a~b",
		/* every visible ASCII character */
		"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~",
	};
	int	 bad;

	bad = env_round_trip(*state, tokens, sizeof tokens / sizeof tokens[0]);
	if (bad != 0)
		fail_msg("%d token(s) not read back intact by /bin/sh", bad);
}

/*
 * RFC 6750 b64token allows '~', and sh expands an unquoted ~ at the start
 * of an assignment's value or after a ':' in it, so such tokens need
 * quotes too.
 */
static void
test_render_env_shell_tilde(void **state)
{
	static const char *const tokens[] = {
		"~",
		"~/tok",
		"~root",
		"x:~/y",
		"x:~",
	};
	int	 bad;

	bad = env_round_trip(*state, tokens, sizeof tokens / sizeof tokens[0]);
	if (bad != 0)
		fail_msg("%d token(s) with '~' not read back intact by /bin/sh",
		    bad);
}

/* ---- sink_render: json ---- */

static struct json_object *
render_json(const struct token *t, int64_t now)
{
	struct json_object	*obj;
	char			*out;
	size_t			 len;

	out = sink_render(SINK_JSON, t, now, &len);
	assert_non_null(out);
	assert_int_equal(len, strlen(out));
	assert_true(len > 0 && out[len - 1] == '\n');
	obj = json_tokener_parse(out);
	if (obj == NULL || !json_object_is_type(obj, json_type_object))
		fail_msg("not a JSON object: %s", out);
	assert_int_equal(json_object_object_length(obj), 4);
	free(out);
	return obj;
}

static struct json_object *
member(struct json_object *obj, const char *key, enum json_type type)
{
	struct json_object	*v = NULL;

	if (!json_object_object_get_ex(obj, key, &v))
		fail_msg("no member '%s'", key);
	if (json_object_get_type(v) != type)
		fail_msg("member '%s' is %s, expected %s", key,
		    json_type_to_name(json_object_get_type(v)),
		    json_type_to_name(type));
	return v;
}

static void
test_render_json(void **state)
{
	static const struct {
		const char	*access;
		const char	*type;
		int64_t		 expires_at;
		int64_t		 now;
		const char	*want_at;	/* NULL: JSON null */
		int64_t		 want_in;
	} cases[] = {
		{ "tok", "Bearer", T0 + 3600 * SEC, T0,
		    "2023-11-14T23:13:20Z", 3600 },
		{ "tok", NULL, T0 + 3600 * SEC, T0 + 600 * SEC,
		    "2023-11-14T23:13:20Z", 3000 },
		{ "tok", "DPoP", T0 + 3600 * SEC + 999, T0 + 1,
		    "2023-11-14T23:13:20Z", 3600 },
		{ "tok", "Bearer", T0 + 90LL * 86400 * SEC, T0,
		    "2024-02-12T22:13:20Z", 90LL * 86400 },
		{ "tok", "Bearer", T0 + 10 * SEC, T0 + 10 * SEC,
		    "2023-11-14T22:13:30Z", 0 },
		{ "tok", "Bearer", T0, T0 + 3600 * SEC,	/* expired */
		    "2023-11-14T22:13:20Z", 0 },
		{ "q\"uo\\te/</script>", "Bearer", T0 + 5 * SEC, T0,
		    "2023-11-14T22:13:25Z", 5 },
		{ "perm-token", NULL, 0, T0, NULL, 0 },	/* static */
	};
	struct json_object	*obj, *v;
	struct token		 t;
	char			 what[64];
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "json case %zu", i);
		token_set(&t, cases[i].access, "refresh-never-shown",
		    cases[i].type, cases[i].expires_at, T0);
		obj = render_json(&t, cases[i].now);
		v = member(obj, "access_token", json_type_string);
		CHECK_STR(what, json_object_get_string(v), cases[i].access);
		v = member(obj, "token_type", json_type_string);
		CHECK_STR(what, json_object_get_string(v),
		    cases[i].type ? cases[i].type : "Bearer");
		if (cases[i].want_at == NULL) {
			member(obj, "expires_at", json_type_null);
			member(obj, "expires_in", json_type_null);
		} else {
			v = member(obj, "expires_at", json_type_string);
			CHECK_STR(what, json_object_get_string(v),
			    cases[i].want_at);
			v = member(obj, "expires_in", json_type_int);
			CHECK_I64(what, json_object_get_int64(v),
			    cases[i].want_in);
		}
		json_object_put(obj);
		oauth_token_clear(&t);
	}
}

/* sink_write: the rendered content, with the mode asked for. */
static void
test_sink_write(void **state)
{
	const char		*dir = *state;
	struct sink_conf	 sc;
	struct token		 t;
	struct stat		 st;
	char			*got;

	memset(&sc, 0, sizeof sc);
	sc.path = path_in(dir, "acct.header");
	sc.format = SINK_HEADER;
	sc.mode = 0640;
	sc.uid = (uid_t)-1;
	sc.gid = (gid_t)-1;
	token_set(&t, "tok123", NULL, "Bearer", T0 + 60 * SEC, T0);
	assert_int_equal(sink_write(&sc, &t, T0), 0);
	got = get_file(sc.path, NULL);
	CHECK_STR("sink_write", got, "Authorization: Bearer tok123\n");
	free(got);
	assert_int_equal(stat(sc.path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	oauth_token_clear(&t);

	/* a missing folder: an error, nothing written */
	free(sc.path);
	sc.path = path_in(dir, "missing/acct.header");
	token_set(&t, "tok123", NULL, "Bearer", T0 + 60 * SEC, T0);
	assert_int_equal(sink_write(&sc, &t, T0), -ENOENT);
	oauth_token_clear(&t);
	free(sc.path);
}

/* ---- store ---- */

static void
test_store_round_trip(void **state)
{
	static const struct {
		const char	*access;
		const char	*refresh;
		const char	*type;
		int64_t		 expires_at;
		int64_t		 obtained_at;
	} cases[] = {
		{ "at-1", "rt-1", "Bearer", T0 + 3600 * SEC, T0 },
		{ "at-2", NULL, "Bearer", T0 + 7199 * SEC, T0 },
		{ "at-3", "rt/with+odd=chars~", "DPoP", T0 + 60 * SEC, T0 },
		{ "q\"uo\\te", "r\"t\\", "Bearer", T0 + 60 * SEC, T0 },
		{ NULL, "rt-only", "Bearer", 0, T0 },
	};
	const char	*dir = *state;
	struct token	 t, got;
	struct stat	 st;
	char		*path, what[64], *listing;
	size_t		 i;

	path = store_path(dir, "acct");
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "store case %zu", i);
		token_set(&t, cases[i].access, cases[i].refresh, cases[i].type,
		    cases[i].expires_at, cases[i].obtained_at);
		assert_int_equal(store_save(dir, "acct", &t), 0);
		assert_int_equal(stat(path, &st), 0);
		if ((st.st_mode & 07777) != 0600)
			fail_msg("%s: mode %04o", what, st.st_mode & 07777);
		memset(&got, 0xa5, sizeof got);
		assert_int_equal(store_load(dir, "acct", &got), 0);
		CHECK_STR(what, got.access_token, cases[i].access);
		CHECK_STR(what, got.refresh_token, cases[i].refresh);
		CHECK_STR(what, got.token_type, cases[i].type);
		CHECK_I64(what, got.expires_at, cases[i].expires_at);
		CHECK_I64(what, got.obtained_at, cases[i].obtained_at);
		oauth_token_clear(&got);
		oauth_token_clear(&t);
	}
	/* saving replaced the file: no temp file was left */
	listing = list_dir(dir);
	CHECK_STR("after saves", listing, "acct.json");
	free(listing);
	free(path);

	/* times are whole seconds on disk */
	token_set(&t, "a", "r", "Bearer", T0 + 1999, T0 + 999);
	assert_int_equal(store_save(dir, "ms", &t), 0);
	assert_int_equal(store_load(dir, "ms", &got), 0);
	CHECK_I64("expires_at in seconds", got.expires_at, T0 + SEC);
	CHECK_I64("obtained_at in seconds", got.obtained_at, T0);
	oauth_token_clear(&got);
	oauth_token_clear(&t);
}

/* A string of n bytes cycling through `alphabet`. */
static char *
fill(size_t n, const char *alphabet, size_t alen)
{
	char	*s = malloc(n + 1);
	size_t	 i;

	assert_non_null(s);
	for (i = 0; i < n; i++)
		s[i] = alphabet[i % alen];
	s[n] = '\0';
	return s;
}

/*
 * The worst a state file can be round-trips: each field at its largest,
 * of the characters JSON escaping makes longest. (Regression: a refresh
 * token of quotes and backslashes near TOKEN_MAX was saved as a file
 * above the load cap, and lost at restart; one with control characters,
 * which refresh_token_file may hold, was refused as corrupt.)
 */
static void
test_store_round_trip_worst(void **state)
{
	static const char quotes[] = "\"\\";
	static const char controls[] = "\"\\\x01\x1f\t\n\r\x7f";
	char		 high[128 + 1];
	const char	*dir = *state;
	struct token	 t, got;
	struct stat	 st;
	char		*path, *rts[3];
	size_t		 i;

	for (i = 0; i < 128; i++)
		high[i] = (char)(0x80 + i);
	high[128] = '\0';
	rts[0] = fill(TOKEN_MAX, quotes, 2);
	rts[1] = fill(TOKEN_MAX, controls, sizeof controls - 1);
	rts[2] = fill(TOKEN_MAX, high, 128);
	path = store_path(dir, "worst");
	for (i = 0; i < 3; i++) {
		memset(&t, 0, sizeof t);
		t.access_token = fill(TOKEN_MAX, quotes, 2);
		t.refresh_token = strdup(rts[i]);
		t.token_type = fill(TOKEN_TYPE_MAX, quotes, 2);
		t.expires_at = INT64_MAX / 1000 * 1000;
		t.obtained_at = INT64_MAX / 1000 * 1000;
		assert_int_equal(store_save(dir, "worst", &t), 0);
		assert_int_equal(stat(path, &st), 0);
		/* more than the old cap of 4 * TOKEN_MAX for the first two */
		if (i < 2 && st.st_size <= 4 * TOKEN_MAX)
			fail_msg("case %zu: only %lld bytes", i,
			    (long long)st.st_size);
		memset(&got, 0, sizeof got);
		CHECK_I64("load", store_load(dir, "worst", &got), 0);
		assert_non_null(got.refresh_token);
		if (strcmp(got.refresh_token, rts[i]) != 0)
			fail_msg("case %zu: the refresh token came back "
			    "changed", i);
		CHECK_STR("access token", got.access_token, t.access_token);
		CHECK_STR("token type", got.token_type, t.token_type);
		CHECK_I64("expires_at", got.expires_at, t.expires_at);
		CHECK_I64("obtained_at", got.obtained_at, t.obtained_at);
		oauth_token_clear(&got);
		oauth_token_clear(&t);
	}

	/* what load would refuse is not saved, and the file stays */
	token_set(&t, "a", NULL, "Bearer", T0, T0);
	t.refresh_token = fill(TOKEN_MAX + 1, quotes, 2);
	CHECK_I64("refresh token too long", store_save(dir, "worst", &t),
	    -EINVAL);
	oauth_token_clear(&t);
	token_set(&t, "a b", "r", "Bearer", T0, T0);
	CHECK_I64("access token with a space", store_save(dir, "worst", &t),
	    -EINVAL);
	oauth_token_clear(&t);
	token_set(&t, "a", "r", NULL, T0, T0);
	t.token_type = fill(TOKEN_TYPE_MAX + 1, "x", 1);
	CHECK_I64("token type too long", store_save(dir, "worst", &t),
	    -EINVAL);
	oauth_token_clear(&t);
	memset(&got, 0, sizeof got);
	CHECK_I64("the last good file", store_load(dir, "worst", &got), 0);
	assert_non_null(got.refresh_token);
	assert_true(strcmp(got.refresh_token, rts[2]) == 0);
	oauth_token_clear(&got);

	for (i = 0; i < 3; i++)
		free(rts[i]);
	free(path);
}

static void
test_store_load_files(void **state)
{
	static const struct {
		const char	*content;
		int		 rc;
		const char	*access;	/* when rc == 0 */
		const char	*refresh;
	} cases[] = {
		{ "{\"version\":1,\"access_token\":\"a\",\"refresh_token\":"
		    "\"r\",\"token_type\":\"Bearer\",\"expires_at\":1700003600,"
		    "\"obtained_at\":1700000000}\n", 0, "a", "r" },
		/* an access token without expiry is not trusted */
		{ "{\"access_token\":\"a\",\"refresh_token\":\"r\"}", 0, NULL,
		    "r" },
		{ "{}", 0, NULL, NULL },
		{ "", -EBADMSG, NULL, NULL },
		{ "not json", -EBADMSG, NULL, NULL },
		/* json-c stops after the object; trailing bytes are corrupt */
		{ "{\"access_token\":\"a\",\"expires_at\":1700003600}xyz",
		    -EBADMSG, NULL, NULL },
		{ "{}{}", -EBADMSG, NULL, NULL },
		{ "{\"access_token\":\"a\",\"expires_at\":17", -EBADMSG, NULL,
		    NULL },
		{ "[]", -EBADMSG, NULL, NULL },
		{ "\"a\"", -EBADMSG, NULL, NULL },
		{ "{\"access_token\":5,\"expires_at\":1700003600}", -EBADMSG,
		    NULL, NULL },
		{ "{\"access_token\":\"\",\"expires_at\":1700003600}",
		    -EBADMSG, NULL, NULL },
		{ "{\"access_token\":\"a b\",\"expires_at\":1700003600}",
		    -EBADMSG, NULL, NULL },
		{ "{\"refresh_token\":[],\"expires_at\":1700003600}",
		    -EBADMSG, NULL, NULL },
		{ "{\"access_token\":\"a\",\"expires_at\":\"1700003600\"}",
		    -EBADMSG, NULL, NULL },
		{ "{\"access_token\":\"a\",\"expires_at\":-1}", -EBADMSG,
		    NULL, NULL },
		{ "{\"access_token\":\"a\",\"expires_at\":1.5}", -EBADMSG,
		    NULL, NULL },
		{ "{\"access_token\":\"a\",\"expires_at\":"
		    "9223372036854775807}", -EBADMSG, NULL, NULL },
	};
	const char	*dir = *state;
	struct token	 t;
	char		*path, what[64];
	size_t		 i;
	int		 rc;

	memset(&t, 0, sizeof t);
	assert_int_equal(store_load(dir, "none", &t), -ENOENT);
	path = store_path(dir, "acct");
	CHECK_STR("store_path", strrchr(path, '/'), "/acct.json");
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "state file case %zu", i);
		put_file(path, cases[i].content, 0600);
		rc = store_load(dir, "acct", &t);
		CHECK_I64(what, rc, cases[i].rc);
		if (rc == 0) {
			CHECK_STR(what, t.access_token, cases[i].access);
			CHECK_STR(what, t.refresh_token, cases[i].refresh);
			CHECK_STR(what, t.token_type, "Bearer");
		} else if (t.access_token != NULL || t.refresh_token != NULL)
			fail_msg("%s: token left set on failure", what);
		oauth_token_clear(&t);
	}
	free(path);
}

/* ---- file_write_atomic ---- */

static void
test_file_write_atomic(void **state)
{
	static const mode_t modes[] = { 0600, 0640, 0644, 0400, 0660 };
	const char	*dir = *state;
	struct stat	 st, st2;
	char		*path, *got, *listing, what[64];
	mode_t		 old_umask;
	size_t		 i, len;

	path = path_in(dir, "target");
	old_umask = umask(077);	/* the mode must not come from the umask */
	for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		snprintf(what, sizeof what, "mode %04o", modes[i]);
		assert_int_equal(file_write_atomic(path, what, strlen(what),
		    modes[i], (uid_t)-1, (gid_t)-1, i % 2 ? FILE_DURABLE : 0, NULL), 0);
		got = get_file(path, &len);
		CHECK_STR(what, got, what);
		free(got);
		assert_int_equal(stat(path, &st), 0);
		if ((st.st_mode & 07777) != modes[i])
			fail_msg("%s: file has mode %04o", what,
			    st.st_mode & 07777);
	}
	umask(old_umask);

	/* binary data with NUL bytes, written whole */
	assert_int_equal(file_write_atomic(path, "a\0b\0", 4, 0600, (uid_t)-1,
	    (gid_t)-1, FILE_DURABLE, NULL), 0);
	got = get_file(path, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(got, "a\0b\0", 4);
	free(got);

	/* replaced by rename: a new inode, the old one never rewritten */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(file_write_atomic(path, "new", 3, 0600, (uid_t)-1,
	    (gid_t)-1, FILE_DURABLE, NULL), 0);
	assert_int_equal(stat(path, &st2), 0);
	assert_true(st.st_ino != st2.st_ino);

	/* an empty file is a file */
	assert_int_equal(file_write_atomic(path, "", 0, 0600, (uid_t)-1,
	    (gid_t)-1, FILE_DURABLE, NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);

	listing = list_dir(dir);
	CHECK_STR("no temp file left", listing, "target");
	free(listing);
	free(path);
}

static void
test_file_write_atomic_owner(void **state)
{
	const char	*dir = *state;
	struct stat	 st;
	char		*path;

	if (geteuid() != 0)
		skip();
	path = path_in(dir, "owned");
	assert_int_equal(file_write_atomic(path, "x", 1, 0640, 4242, 4343,
	    FILE_DURABLE, NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 4242);
	assert_int_equal(st.st_gid, 4343);
	assert_int_equal(st.st_mode & 07777, 0640);
	/* -1 leaves the owner as the creating process */
	assert_int_equal(file_write_atomic(path, "y", 1, 0600, (uid_t)-1,
	    4343, FILE_DURABLE, NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, 4343);
	free(path);
}

static void
test_file_write_atomic_failures(void **state)
{
	const char	*dir = *state;
	char		*path, *sub, *inner, *listing;
	int		 rc;

	/* the target's folder does not exist */
	path = path_in(dir, "no/such/dir/target");
	rc = file_write_atomic(path, "x", 1, 0600, (uid_t)-1, (gid_t)-1,
	    FILE_DURABLE, NULL);
	CHECK_I64("missing folder", rc, -ENOENT);
	free(path);

	/* the target is a non-empty folder: rename fails, temp removed */
	sub = path_in(dir, "occupied");
	assert_int_equal(mkdir(sub, 0700), 0);
	inner = path_in(sub, "keep");
	put_file(inner, "keep", 0600);
	rc = file_write_atomic(sub, "x", 1, 0600, (uid_t)-1, (gid_t)-1,
	    FILE_DURABLE, NULL);
	if (rc >= 0)
		fail_msg("writing over a folder returned %d", rc);
	listing = list_dir(dir);
	CHECK_STR("after a failed rename", listing, "occupied");
	free(listing);
	listing = list_dir(sub);
	CHECK_STR("folder untouched", listing, "keep");
	free(listing);
	free(inner);
	free(sub);
}

/* A bare name is written in the current folder. */
static void
test_file_write_atomic_relative(void **state)
{
	const char	*dir = *state;
	char		 cwd[4096], *listing, *got;

	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(file_write_atomic("rel.token", "r", 1, 0600,
	    (uid_t)-1, (gid_t)-1, FILE_DURABLE, NULL), 0);
	assert_int_equal(chdir(cwd), 0);
	listing = list_dir(dir);
	CHECK_STR("relative", listing, "rel.token");
	free(listing);
	listing = path_in(dir, "rel.token");
	got = get_file(listing, NULL);
	CHECK_STR("relative content", got, "r");
	free(got);
	free(listing);
}

/* ---- the folder rule, links, the group ---- */

/* Who may own, and how a folder may be open, on the way to a token file. */
static void
test_folder_check(void **state)
{
	static const struct {
		uid_t			 owner;
		mode_t			 mode;
		uid_t			 self, also;
		enum file_folder_verdict want;
	} cases[] = {
		{ 0, 040755, 0, (uid_t)-1, FILE_FOLDER_OK },
		{ 0, 040700, 500, (uid_t)-1, FILE_FOLDER_OK },
		{ 500, 040755, 500, (uid_t)-1, FILE_FOLDER_OK },
		{ 500, 040755, 0, (uid_t)-1, FILE_FOLDER_OWNER },
		{ 500, 040755, 0, 500, FILE_FOLDER_OK },
		{ 501, 040755, 0, 500, FILE_FOLDER_OWNER },
		{ 0, 040777, 0, (uid_t)-1, FILE_FOLDER_WRITABLE },
		{ 0, 040775, 0, (uid_t)-1, FILE_FOLDER_WRITABLE },
		{ 0, 040757, 0, (uid_t)-1, FILE_FOLDER_WRITABLE },
		{ 0, 042775, 0, (uid_t)-1, FILE_FOLDER_WRITABLE },	/* setgid */
		{ 0, 041777, 0, (uid_t)-1, FILE_FOLDER_OK },		/* /tmp */
		{ 500, 041777, 500, (uid_t)-1, FILE_FOLDER_OK },
		{ 500, 041777, 0, (uid_t)-1, FILE_FOLDER_OWNER },
		{ 500, 040700, 0, (uid_t)-1, FILE_FOLDER_OWNER },
		{ 0, 040555, 500, (uid_t)-1, FILE_FOLDER_OK },
	};
	char	 what[64];
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "uid %u mode %06o", (unsigned)
		    cases[i].owner, (unsigned)cases[i].mode);
		CHECK_I64(what, file_folder_check(cases[i].owner,
		    cases[i].mode, cases[i].self, cases[i].also),
		    cases[i].want);
	}
}

static char *
mkdir_in(const char *dir, const char *name, mode_t mode)
{
	char	*p = path_in(dir, name);

	if (mkdir(p, mode) == -1 || chmod(p, mode) == -1)
		fail_msg("mkdir %s: %s", p, strerror(errno));
	return p;
}

static void
symlink_in(const char *dir, const char *name, const char *target)
{
	char	*p = path_in(dir, name);

	if (symlink(target, p) == -1)
		fail_msg("symlink %s: %s", p, strerror(errno));
	free(p);
}

/* One FILE_SAFE_PATH write: its result, and the cause must name `word`. */
static void
safe_write(const char *path, int flags, int want, const char *word)
{
	char	*cause = NULL;
	int	 rc;

	rc = file_write_atomic(path, "tok\n", 4, 0640, (uid_t)-1, (gid_t)-1,
	    FILE_SAFE_PATH | flags, &cause);
	if (rc != want)
		fail_msg("%s: got %d (%s), expected %d", path, rc,
		    cause ? cause : "no cause", want);
	if (word == NULL && cause != NULL)
		fail_msg("%s: a cause without a refusal: %s", path, cause);
	if (word != NULL && (cause == NULL || strstr(cause, word) == NULL))
		fail_msg("%s: cause '%s' does not say '%s'", path,
		    cause ? cause : "(none)", word);
	free(cause);
}

/*
 * FILE_SAFE_PATH, through openat2 and through the walk: no link on the
 * way to the folder, and no folder up to / that others can change.
 */
static void
test_file_safe_path(void **state)
{
	static const int	 how[] = { 0, FILE_WALK };
	const char		*dir = *state;
	char			*base, *real, *wide, *sticky, *grp, *p, *listing;
	char			*want;
	size_t			 i;

	for (i = 0; i < sizeof how / sizeof how[0]; i++) {
		base = mkdir_in(dir, how[i] ? "walk" : "openat2", 0755);
		real = mkdir_in(base, "real", 0755);
		symlink_in(base, "link", "real");
		wide = mkdir_in(base, "wide", 0777);
		free(mkdir_in(wide, "sub", 0755));
		sticky = mkdir_in(base, "sticky", 01777);
		grp = mkdir_in(base, "grp", 0775);

		p = path_in(real, "x.token");
		safe_write(p, how[i], 0, NULL);
		free(p);

		/* a link to the folder, or above it: refused, named */
		p = path_in(base, "link/x.token");
		want = path_in(base, "link");
		safe_write(p, how[i], -ELOOP, want);
		free(want);
		free(p);
		symlink_in(base, "uplink", ".");
		p = path_in(base, "uplink/real/y.token");
		want = path_in(base, "uplink");
		safe_write(p, how[i], -ELOOP, want);
		free(want);
		free(p);
		listing = list_dir(real);
		CHECK_STR("nothing through a link", listing, "x.token");
		free(listing);

		/* writable by others, the folder itself or one above it */
		p = path_in(wide, "x.token");
		safe_write(p, how[i], -EPERM, "writable by others (mode 0777)");
		free(p);
		p = path_in(wide, "sub/x.token");
		safe_write(p, how[i], -EPERM, wide);
		free(p);
		p = path_in(grp, "x.token");
		safe_write(p, how[i], -EPERM, "writable by its group");
		free(p);
		listing = list_dir(wide);
		CHECK_STR("nothing in a folder others can change", listing,
		    "sub");
		free(listing);

		/* sticky and ours (like /tmp): written */
		p = path_in(sticky, "x.token");
		safe_write(p, how[i], 0, NULL);
		free(p);

		/* without FILE_SAFE_PATH (the state file) a link is fine */
		p = path_in(base, "link/z.json");
		assert_int_equal(file_write_atomic(p, "{}", 2, 0600, (uid_t)-1,
		    (gid_t)-1, FILE_DURABLE, NULL), 0);
		free(p);
		free(grp);
		free(sticky);
		free(wide);
		free(real);
		free(base);
	}
}

static void
resolve_ok(const char *path, uid_t also, const char *want)
{
	char	*got = NULL, *cause = NULL;

	if (file_resolve_path(path, also, &got, &cause) != 0)
		fail_msg("%s: %s", path, cause);
	CHECK_STR(path, got, want);
	free(got);
}

static void
resolve_fails(const char *path, uid_t also, const char *word)
{
	char	*got = NULL, *cause = NULL;

	if (file_resolve_path(path, also, &got, &cause) == 0)
		fail_msg("%s: resolved to %s", path, got);
	if (cause == NULL || strstr(cause, word) == NULL)
		fail_msg("%s: cause '%s' does not say '%s'", path,
		    cause ? cause : "(none)", word);
	free(cause);
}

/* The links a path has at load time: resolved if root's or ours. */
static void
test_file_resolve_path(void **state)
{
	static const char *const to_real[] = { "rel/x.token", "abs/x.token",
	    "chain/x.token", "./real/deep/.././/x.token" };
	const char	*dir = *state;
	char		*real, *wide, *p, *want, *file, *lnk;
	size_t		 i;

	real = mkdir_in(dir, "real", 0755);
	free(mkdir_in(real, "deep", 0755));
	wide = mkdir_in(dir, "wide", 0777);
	symlink_in(dir, "rel", "real");
	symlink_in(dir, "abs", real);
	symlink_in(dir, "chain", "rel/deep/..");
	symlink_in(dir, "loop", "loop");
	symlink_in(dir, "towide", "wide");
	file = path_in(dir, "file");
	put_file(file, "x", 0600);

	/* a relative link, an absolute one, a chain, . and .. and // */
	want = path_in(real, "x.token");
	for (i = 0; i < sizeof to_real / sizeof to_real[0]; i++) {
		p = path_in(dir, to_real[i]);
		resolve_ok(p, (uid_t)-1, want);
		free(p);
	}
	free(want);
	/* the link in the last place is the file's, not a folder: kept */
	p = path_in(dir, "rel");
	resolve_ok(p, (uid_t)-1, p);
	free(p);

	/* what does not exist yet is kept as written, after the links */
	p = path_in(dir, "rel/not/yet/x.token");
	want = path_in(real, "not/yet/x.token");
	resolve_ok(p, (uid_t)-1, want);
	free(want);
	free(p);
	resolve_ok("/x.token", (uid_t)-1, "/x.token");

	p = path_in(wide, "x.token");
	resolve_fails(p, (uid_t)-1, "writable by others (mode 0777)");
	free(p);
	p = path_in(dir, "towide/x.token");
	resolve_fails(p, (uid_t)-1, wide);
	free(p);
	p = path_in(dir, "loop/x.token");
	resolve_fails(p, (uid_t)-1, "too many symbolic links");
	free(p);
	p = path_in(dir, "file/x.token");
	resolve_fails(p, (uid_t)-1, "is not a folder");
	free(p);
	resolve_fails("relative/x.token", (uid_t)-1, "not an absolute path");

	/* a folder we may not look into: left for the write to find */
	if (geteuid() != 0) {
		free(mkdir_in(dir, "closed", 0));
		p = path_in(dir, "closed/sub/x.token");
		resolve_ok(p, (uid_t)-1, p);
		free(p);
		p = path_in(dir, "closed");
		assert_int_equal(chmod(p, 0700), 0);
		free(p);
	}

	/* somebody else's link or folder: only root can make one here */
	if (geteuid() == 0) {
		lnk = path_in(dir, "abs");
		assert_int_equal(lchown(lnk, 4242, 4242), 0);
		p = path_in(dir, "abs/x.token");
		resolve_fails(p, (uid_t)-1, "symbolic link owned by uid 4242");
		want = path_in(real, "x.token");
		resolve_ok(p, 4242, want);	/* the state folder's owner */
		free(want);
		free(p);
		free(lnk);
		assert_int_equal(chown(real, 4242, 4242), 0);
		p = path_in(real, "x.token");
		resolve_fails(p, (uid_t)-1, "belongs to uid 4242");
		free(p);
	}
	free(file);
	free(wide);
	free(real);
}

/*
 * A setgid folder hands its group to what is made in it; a token file
 * gets tokend's group, or the one configured, instead.
 */
static void
test_file_group_in_setgid_folder(void **state)
{
	const char	*dir = *state;
	struct stat	 st;
	char		*sgid, *p;

	if (geteuid() != 0)
		skip();		/* a folder of a group not ours needs root */
	sgid = path_in(dir, "sgid");
	assert_int_equal(mkdir(sgid, 0755), 0);
	assert_int_equal(chown(sgid, 0, 4343), 0);
	assert_int_equal(chmod(sgid, 02755), 0);
	p = path_in(sgid, "x.token");
	assert_int_equal(file_write_atomic(p, "t", 1, 0640, (uid_t)-1,
	    (gid_t)-1, 0, NULL), 0);
	assert_int_equal(stat(p, &st), 0);
	CHECK_I64("group without group =", st.st_gid, getegid());
	assert_int_equal(file_write_atomic(p, "t", 1, 0640, (uid_t)-1, 4444,
	    FILE_SAFE_PATH, NULL), 0);
	assert_int_equal(stat(p, &st), 0);
	CHECK_I64("group = 4444", st.st_gid, 4444);
	free(p);
	free(sgid);
}

/* ---- file_remove_stale_temps ---- */

static void
test_remove_stale_temps(void **state)
{
	static const char *const stale[] = {
		".x.tokend-AbC123",
		".acct.token.tokend-zZ09aB",
		".acct.json.tokend-XXXXXX",
	};
	static const char *const keep[] = {
		"x.tokend-AbC123",		/* no leading dot */
		".x.tokend-AbC12",		/* 5 characters */
		".x.tokend-AbC1234",		/* 7 characters */
		".x.tokend-AbC123.bak",
		".x.tokend-",
		".x.tokenD-AbC123",
		".hidden",
		"acct.token",
		"acct.json",
	};
	const char	*dir = *state;
	char		*path, *listing, *p;
	size_t		 i, n;

	for (i = 0; i < sizeof stale / sizeof stale[0]; i++) {
		path = path_in(dir, stale[i]);
		put_file(path, "stale", 0600);
		free(path);
	}
	for (i = 0; i < sizeof keep / sizeof keep[0]; i++) {
		path = path_in(dir, keep[i]);
		put_file(path, "keep", 0600);
		free(path);
	}
	log_init(LOG_LEVEL_ERROR, 0);	/* its info lines are not for us */
	file_remove_stale_temps(dir);
	log_init(LOG_LEVEL_INFO, 0);

	for (i = 0; i < sizeof keep / sizeof keep[0]; i++) {
		path = path_in(dir, keep[i]);
		if (access(path, F_OK) != 0)
			fail_msg("%s was removed", keep[i]);
		free(path);
	}
	for (i = 0; i < sizeof stale / sizeof stale[0]; i++) {
		path = path_in(dir, stale[i]);
		if (access(path, F_OK) == 0)
			fail_msg("%s was not removed", stale[i]);
		free(path);
	}
	/* nothing else was there, and nothing else is left */
	listing = list_dir(dir);
	for (n = 1, p = listing; *p != '\0'; p++)
		n += *p == '|';
	if (n != sizeof keep / sizeof keep[0])
		fail_msg("left: %s", listing);
	free(listing);

	/* a missing folder is not an error */
	path = path_in(dir, "absent");
	file_remove_stale_temps(path);
	free(path);
}

/* FIPS 180-4 / NIST test vectors, and the log fingerprint built on them. */
static void
test_sha256_fingerprint(void **state)
{
	static const struct {
		const char	*in;
		const char	*hex;
	} vec[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		/* 55, 56 and 64 bytes: the padding edges */
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		    "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		    "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		    "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
	};
	unsigned char	 d[32];
	char		 hex[65], *fp;
	size_t		 i;
	int		 j;

	(void)state;
	for (i = 0; i < sizeof vec / sizeof vec[0]; i++) {
		sha256(vec[i].in, strlen(vec[i].in), d);
		for (j = 0; j < 32; j++)
			snprintf(hex + j * 2, 3, "%02x", d[j]);
		assert_string_equal(hex, vec[i].hex);
	}
	fp = fingerprint("abc");
	assert_string_equal(fp, "fp:ba7816bf");
	free(fp);
	fp = fingerprint(NULL);
	assert_string_equal(fp, "none");
	free(fp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_raw_header),
		cmocka_unit_test(test_render_env_exact),
		cmocka_unit_test_setup_teardown(test_render_env_shell,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_render_env_shell_tilde,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test(test_render_json),
		cmocka_unit_test_setup_teardown(test_sink_write,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_store_round_trip,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_store_round_trip_worst,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_store_load_files,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_file_write_atomic,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_file_write_atomic_owner,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_file_write_atomic_failures,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_file_write_atomic_relative,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test(test_folder_check),
		cmocka_unit_test_setup_teardown(test_file_safe_path,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_file_resolve_path,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_file_group_in_setgid_folder,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test(test_sha256_fingerprint),
		cmocka_unit_test_setup_teardown(test_remove_stale_temps,
		    tmpdir_setup, tmpdir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
