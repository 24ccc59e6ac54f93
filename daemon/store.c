/*
 * The state file, state_dir/NAME.json (0600): what a restart needs to go
 * on without a new grant, above all a rotating refresh token that exists
 * nowhere else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tokend.h"

#define STATE_VERSION	1

/*
 * What store_save writes: this skeleton with four JSON strings and four
 * numbers. The fields follow store_field_ok (at most TOKEN_MAX bytes for
 * each token, TOKEN_TYPE_MAX for the type).
 */
#define STORE_FORMAT	"{\"version\":%d,\"access_token\":%s," \
			"\"refresh_token\":%s,\"token_type\":%s," \
			"\"expires_at\":%lld,\"obtained_at\":%lld," \
			"\"refresh_at_ms\":%lld,\"refresh_token_seed\":%s}\n"

/* json_quote: a byte becomes at most six ("\u001f"), plus two quotes */
#define STORE_QUOTED_MAX(n)	(6 * (size_t)(n) + 2)
/* a number in decimal, sign included */
#define STORE_NUMBER_MAX	20

/*
 * The largest file store_save can write, so the most store_load reads:
 * the skeleton (its %-conversions counted as well, which only adds), the
 * worst-case quoting of each field at its largest, and the numbers. A
 * refresh token of 64 KiB of quotes, backslashes and control characters
 * must come back after a restart; fuzz_state checks that the two agree.
 */
#define STORE_FILE_MAX	(sizeof STORE_FORMAT + \
			2 * STORE_QUOTED_MAX(TOKEN_MAX) + \
			STORE_QUOTED_MAX(TOKEN_TYPE_MAX) + \
			STORE_QUOTED_MAX(SEED_HEX_LEN) + 4 * STORE_NUMBER_MAX)

/* a first refresh token from refresh_token_file fits a state file */
_Static_assert(SECRET_FILE_MAX <= TOKEN_MAX, "a secret file fits a token");

enum store_field {
	STORE_ACCESS_TOKEN,	/* served to readers: visible ASCII */
	STORE_REFRESH_TOKEN,	/* only ever sent form-encoded: any byte
				   but NUL (refresh_token_file is taken as
				   it is) */
	STORE_TOKEN_TYPE,	/* visible ASCII, as oauth.c takes it */
	STORE_SEED,		/* SEED_HEX_LEN lower-case hex digits */
};

/* Whether s (len bytes) is what a state file may hold for field f. */
static int
store_field_ok(enum store_field f, const char *s, size_t len)
{
	if (len == 0 || strlen(s) != len)
		return 0;
	switch (f) {
	case STORE_ACCESS_TOKEN:
		return len <= TOKEN_MAX && str_is_printable(s);
	case STORE_REFRESH_TOKEN:
		return len <= TOKEN_MAX;
	case STORE_TOKEN_TYPE:
		return len <= TOKEN_TYPE_MAX && str_is_printable(s);
	case STORE_SEED:
		return len == SEED_HEX_LEN &&
		    strspn(s, "0123456789abcdef") == len;
	}
	return 0;
}

char *
store_path(const char *state_dir, const char *name)
{
	char	*path;

	xasprintf(&path, "%s/%s.json", state_dir, name);
	return path;
}

static int
store_get_string(struct json_object *obj, const char *key,
    enum store_field f, char **out)
{
	struct json_object	*v;
	const char		*s;

	if (!json_object_object_get_ex(obj, key, &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	s = json_object_get_string(v);
	if (!store_field_ok(f, s, (size_t)json_object_get_string_len(v)))
		return -EINVAL;
	*out = xstrdup(s);
	return 0;
}

/* A non-negative integer `key` in units of `unit` ms, as ms. */
static int
store_get_time(struct json_object *obj, const char *key, int64_t unit,
    int64_t *out)
{
	struct json_object	*v;
	int64_t			 n;

	if (!json_object_object_get_ex(obj, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	n = json_object_get_int64(v);
	if (n < 0 || n > INT64_MAX / unit)
		return -EINVAL;
	*out = n * unit;
	return 0;
}

static int
store_get_seconds(struct json_object *obj, const char *key, int64_t *out)
{
	return store_get_time(obj, key, 1000, out);
}

/* the refresh time is kept to the ms: a restart keeps it exactly */
static int
store_get_ms(struct json_object *obj, const char *key, int64_t *out)
{
	return store_get_time(obj, key, 1, out);
}

/*
 * Which refresh_token_file seeded the refresh token: its hash, "" when
 * the file says none did, NULL when it predates the key.
 */
static int
store_get_seed(struct json_object *obj, char **out)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(obj, "refresh_token_seed", &v))
		return 0;
	if (json_object_is_type(v, json_type_null)) {
		*out = xstrdup("");
		return 0;
	}
	return store_get_string(obj, "refresh_token_seed", STORE_SEED, out);
}

/*
 * Load NAME's state into t. 0: loaded (t->access_token or
 * t->refresh_token may be NULL); -ENOENT: no state yet; another negative
 * errno: unreadable or corrupt (the file is left alone for a human).
 */
int
store_load(const char *state_dir, const char *name, struct token *t)
{
	struct json_object	*obj;
	struct json_tokener	*tok;
	char			*path, *buf;
	size_t			 len, end;
	int			 rc;

	memset(t, 0, sizeof *t);
	path = store_path(state_dir, name);
	rc = read_file_capped(path, STORE_FILE_MAX, &buf, &len);
	free(path);
	if (rc != 0)
		return rc;
	tok = json_tokener_new_ex(8);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	/* json-c stops after the value: what follows must be white space */
	end = obj != NULL ? json_tokener_get_parse_end(tok) : 0;
	while (end < len && strchr(" \t\r\n", buf[end]) != NULL)
		end++;
	json_tokener_free(tok);
	explicit_bzero(buf, len);
	free(buf);
	if (obj == NULL || end != len ||
	    !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return -EBADMSG;
	}
	if (store_get_string(obj, "access_token", STORE_ACCESS_TOKEN,
	    &t->access_token) != 0 ||
	    store_get_string(obj, "refresh_token", STORE_REFRESH_TOKEN,
	    &t->refresh_token) != 0 ||
	    store_get_string(obj, "token_type", STORE_TOKEN_TYPE,
	    &t->token_type) != 0 ||
	    store_get_seconds(obj, "expires_at", &t->expires_at) != 0 ||
	    store_get_seconds(obj, "obtained_at", &t->obtained_at) != 0 ||
	    store_get_ms(obj, "refresh_at_ms", &t->refresh_at) != 0 ||
	    store_get_seed(obj, &t->refresh_seed) != 0) {
		json_object_put(obj);
		oauth_token_clear(t);
		return -EBADMSG;
	}
	json_object_put(obj);
	if (t->token_type == NULL)
		t->token_type = xstrdup("Bearer");
	if (t->access_token != NULL && t->expires_at == 0) {
		/* an access token without an expiry is not trusted */
		freezero_str(t->access_token);
		t->access_token = NULL;
	}
	/* a file from before refresh_at_ms, or one out of the token's life
	   (obtained_at is whole seconds) */
	if (t->refresh_at != 0 && (t->refresh_at < t->obtained_at ||
	    t->refresh_at > t->expires_at + MSEC_PER_SEC))
		t->refresh_at = 0;
	return 0;
}

/*
 * Save t atomically with mode 0600. 0 or a negative errno: -EINVAL, and
 * the file left as it was, for a token that store_load would refuse.
 */
int
store_save(const char *state_dir, const char *name, const struct token *t)
{
	char	*path, *at = NULL, *rt = NULL, *tt, *buf, *seed = NULL;
	int	 n, rc;

	if ((t->access_token != NULL && !store_field_ok(STORE_ACCESS_TOKEN,
	    t->access_token, strlen(t->access_token))) ||
	    (t->refresh_token != NULL && !store_field_ok(STORE_REFRESH_TOKEN,
	    t->refresh_token, strlen(t->refresh_token))) ||
	    (t->token_type != NULL && !store_field_ok(STORE_TOKEN_TYPE,
	    t->token_type, strlen(t->token_type))) ||
	    (t->refresh_seed != NULL && t->refresh_seed[0] != '\0' &&
	    !store_field_ok(STORE_SEED, t->refresh_seed,
	    strlen(t->refresh_seed))) ||
	    t->expires_at < 0 || t->obtained_at < 0 || t->refresh_at < 0)
		return -EINVAL;
	if (t->access_token != NULL)
		at = json_quote(t->access_token);
	if (t->refresh_token != NULL)
		rt = json_quote(t->refresh_token);
	tt = json_quote(t->token_type != NULL ? t->token_type : "Bearer");
	if (t->refresh_seed != NULL && t->refresh_seed[0] != '\0')
		seed = json_quote(t->refresh_seed);
	n = xasprintf(&buf, STORE_FORMAT, STATE_VERSION, at ? at : "null",
	    rt ? rt : "null", tt, (long long)(t->expires_at / 1000),
	    (long long)(t->obtained_at / 1000),
	    (long long)t->refresh_at, seed ? seed : "null");
	free(seed);
	freezero_str(at);
	freezero_str(rt);
	free(tt);
	path = store_path(state_dir, name);
	/* a refresh token may exist nowhere else: make it survive a crash */
	/*
	 * The state folder may be a link (systemd's DynamicUser= makes
	 * /var/lib/tokend one): no FILE_SAFE_PATH. It is tokend's own, 0700.
	 */
	rc = file_write_atomic(path, buf, (size_t)n, 0600, (uid_t)-1,
	    (gid_t)-1, t->refresh_token != NULL ? FILE_DURABLE : 0, NULL);
	free(path);
	freezero_str(buf);
	return rc;
}
