/*
 * A small INI reader that knows the line of everything it reports.
 *
 * Debian's libinih is built with a 200-byte line cap (the rest of a long
 * line is read as a new line), hands its handler no line number, does not
 * announce a repeated section and reads indented lines as continuations.
 * tokend needs FILE:LINE in every message, repeatable [file] sections and
 * long scope lists, so it reads its own files:
 *
 *   [section]            names: letters, digits, '.', '_', '-'
 *   key = value          value trimmed; " ;" or " #" starts an inline comment
 *   key = "a ; b # c"    double quotes keep everything; \" and \\ escape
 *   ; comment, # comment whole-line comments
 *
 * A ';' or '#' with no white space before it is part of the value
 * (https://host/a#frag, pass#word), as most INI readers have it.
 */
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

static int
ini_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static int
ini_is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static int
ini_name_valid(const char *s, size_t len)
{
	size_t	 i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!ini_is_name_char(s[i]))
			return 0;
	return 1;
}

/* Only white space or a comment may follow a closing bracket or quote. */
static int
ini_rest_is_empty(const char *p, const char *end)
{
	while (p < end && ini_is_space(*p))
		p++;
	return p == end || *p == ';' || *p == '#';
}

/* Unquote a double-quoted value; *out is allocated. */
static int
ini_unquote(const char *p, const char *end, char **out)
{
	char	*buf, *w;

	w = buf = xcalloc(1, (size_t)(end - p) + 1);
	for (p++; p < end; p++) {
		if (*p == '"') {
			if (!ini_rest_is_empty(p + 1, end))
				break;
			*w = '\0';
			*out = buf;
			return 0;
		}
		if (*p == '\\' && p + 1 < end && (p[1] == '"' || p[1] == '\\'))
			p++;
		*w++ = *p;
	}
	explicit_bzero(buf, (size_t)(w - buf));
	free(buf);
	return -1;
}

static int
ini_parse_line(const char *p, const char *end, int line,
    const struct ini_handler *h, void *user, char **section)
{
	const char	*eq, *k_end, *v, *v_end, *close;
	char		*key, *value;
	int		 rc;

	while (p < end && ini_is_space(*p))
		p++;
	while (end > p && ini_is_space(end[-1]))
		end--;
	if (p == end || *p == ';' || *p == '#')
		return 0;

	if (*p == '[') {
		close = memchr(p, ']', (size_t)(end - p));
		if (close == NULL) {
			h->error(user, line, "section header without ']'");
			return 0;
		}
		v = p + 1;
		v_end = close;
		while (v < v_end && ini_is_space(*v))
			v++;
		while (v_end > v && ini_is_space(v_end[-1]))
			v_end--;
		if (!ini_name_valid(v, (size_t)(v_end - v)) ||
		    !ini_rest_is_empty(close + 1, end)) {
			h->error(user, line, "malformed section header");
			return 0;
		}
		free(*section);
		*section = xstrndup(v, (size_t)(v_end - v));
		return h->section(user, *section, line);
	}

	if ((eq = memchr(p, '=', (size_t)(end - p))) == NULL) {
		h->error(user, line, "expected 'key = value'");
		return 0;
	}
	k_end = eq;
	while (k_end > p && ini_is_space(k_end[-1]))
		k_end--;
	if (!ini_name_valid(p, (size_t)(k_end - p))) {
		h->error(user, line, "malformed key name");
		return 0;
	}
	if (*section == NULL) {
		h->error(user, line, "key outside of any [section]");
		return 0;
	}

	v = eq + 1;
	while (v < end && ini_is_space(*v))
		v++;
	if (v < end && *v == '"') {
		if (ini_unquote(v, end, &value) == -1) {
			h->error(user, line, "unterminated or malformed quoted "
			    "value");
			return 0;
		}
	} else {
		/*
		 * An inline comment is a ';' or '#' after white space, also
		 * as the first thing after "key = " (which leaves the value
		 * empty).
		 */
		for (v_end = v; v_end < end; v_end++)
			if ((*v_end == ';' || *v_end == '#') &&
			    ini_is_space(v_end[-1]))
				break;
		while (v_end > v && ini_is_space(v_end[-1]))
			v_end--;
		value = xstrndup(v, (size_t)(v_end - v));
	}
	key = xstrndup(p, (size_t)(k_end - p));
	rc = h->value(user, *section, key, value, line);
	free(key);
	freezero_str(value);
	return rc;
}

/*
 * Parse buf, calling h for each section, value and syntax error. Syntax
 * errors do not stop the parse, so every problem of a file is reported at
 * once; a handler returning -1 does. Returns 0, or -1 when stopped.
 */
int
ini_parse_buffer(const char *buf, size_t len, const struct ini_handler *h,
    void *user)
{
	const char	*p = buf, *end = buf + len, *nl;
	char		*section = NULL;
	int		 line = 0, rc = 0;

	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	if ((nl = memchr(buf, '\0', len)) != NULL) {
		for (p = buf, line = 1; p < nl; p++)
			if (*p == '\n')
				line++;
		h->error(user, line, "file contains a NUL byte");
		return 0;
	}
	while (p < end) {
		line++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (ini_parse_line(p, nl, line, h, user, &section) == -1) {
			rc = -1;
			break;
		}
		p = nl + 1;
	}
	free(section);
	return rc;
}
