/*
 * Token files: the [file] sections of an account, each in one format,
 * replaced atomically with their mode and owner set before they appear,
 * in a folder reached without links that only root and tokend can change.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

/*
 * Safe bare in a shell and in systemd's EnvironmentFile=. Not '~': sh
 * expands it at the start of an assignment's value and after a ':'.
 */
static int
sink_env_bare_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("-._+/=:,@%", *s)))
			return 0;
	return 1;
}

/*
 * Quote for both sh and systemd: single quotes when the value has none
 * (nothing inside is special then), else double quotes with \ escapes.
 */
static char *
sink_env_quote(const char *s)
{
	char	*out, *w;

	if (sink_env_bare_ok(s))
		return xstrdup(s);
	w = out = xcalloc(1, strlen(s) * 2 + 3);
	if (strchr(s, '\'') == NULL) {
		*w++ = '\'';
		while (*s != '\0')
			*w++ = *s++;
		*w++ = '\'';
	} else {
		*w++ = '"';
		for (; *s != '\0'; s++) {
			if (strchr("\"\\$`", *s) != NULL)
				*w++ = '\\';
			*w++ = *s;
		}
		*w++ = '"';
	}
	*w = '\0';
	return out;
}

/* A file's content for t at `now` (wall ms); the caller wipes it. */
char *
sink_render(enum sink_format format, const struct token *t, int64_t now,
    size_t *len)
{
	const char	*type = t->token_type != NULL ? t->token_type : "Bearer";
	char		*out = NULL, *q, *tq, at[32] = "null";
	long long	 left;
	int		 n = 0;

	switch (format) {
	case SINK_RAW:
		n = xasprintf(&out, "%s\n", t->access_token);
		break;
	case SINK_HEADER:
		n = xasprintf(&out, "Authorization: %s %s\n", type,
		    t->access_token);
		break;
	case SINK_ENV:
		q = sink_env_quote(t->access_token);
		tq = sink_env_quote(type);
		n = xasprintf(&out, "ACCESS_TOKEN=%s\nTOKEN_TYPE=%s\n"
		    "EXPIRES_AT=%lld\n", q, tq, (long long)(t->expires_at /
		    1000));
		freezero_str(q);
		free(tq);
		break;
	case SINK_JSON:
		q = json_quote(t->access_token);
		tq = json_quote(type);
		if (t->expires_at != 0) {
			at[0] = '"';
			format_rfc3339(t->expires_at, at + 1, sizeof at - 2);
			strcat(at, "\"");
			left = (long long)((t->expires_at - now) / 1000);
			if (left < 0)
				left = 0;
			n = xasprintf(&out, "{\"access_token\":%s,"
			    "\"token_type\":%s,\"expires_at\":%s,"
			    "\"expires_in\":%lld}\n", q, tq, at, left);
		} else
			n = xasprintf(&out, "{\"access_token\":%s,"
			    "\"token_type\":%s,\"expires_at\":null,"
			    "\"expires_in\":null}\n", q, tq);
		freezero_str(q);
		free(tq);
		break;
	}
	*len = (size_t)n;
	return out;
}

/*
 * Write one sink. 0 or a negative errno; the old file stays on failure.
 * A folder that is not safe to write in is refused (-ELOOP, -EPERM), and
 * why is logged here, where it is known; the caller logs the outcome.
 */
int
sink_write(const struct sink_conf *sc, const struct token *t, int64_t now)
{
	char	*buf, *cause = NULL;
	size_t	 len;
	int	 rc;

	buf = sink_render(sc->format, t, now, &len);
	/* not durable: a lost token file is written again at start-up */
	rc = file_write_atomic(sc->path, buf, len, sc->mode, sc->uid,
	    sc->gid, FILE_SAFE_PATH, &cause);
	explicit_bzero(buf, len);
	free(buf);
	if (cause != NULL) {
		log_warnx("refusing to write %s: %s", sc->path, cause);
		free(cause);
	}
	return rc;
}
