/*
 * Unit tests for config.c and ini.c: value parsers, the INI reader, account
 * files (valid ones of each grant, and every error with its FILE:LINE),
 * secret files, the global file, and what the key table drives (choices,
 * ranges, empty values, defaults). Files go to a fresh mkdtemp folder per
 * test.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend.h"
#include "unit.h"

#define SEC		1000LL
#define URL		"token_url = https://issuer.example/token\n"
/* grant = client_credentials (the default) needs a client_id */
#define URL_ID		URL "client_id = c\n"
/* login grants by discovery: the next line is line 5 */
#define CODE_ISSUER	"[account]\ngrant = authorization_code\nclient_id = c\n" \
			"issuer = https://op.example\n"
#define DEVICE		"[account]\ngrant = device_code\nclient_id = c\n"
/* a P-256 key made for these tests alone */
#define EC_KEY		"-----BEGIN PRIVATE KEY-----\n" \
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRGHDogod2yIT4b6A\n" \
	"sadT/HQSDy6YTXZx4V/JGK+GLCyhRANCAATqwWd0z485CMc7MhLLnk3eFzcVHCas\n" \
	"qT9S8PFxC+gKLzm+shofd/CWWwOkzEmrfDVkDCJZiOa6X5jPc49Q6b3p\n" \
	"-----END PRIVATE KEY-----\n"
/* ... and its self-signed certificate, good until 2126 */
#define EC_CERT	"-----BEGIN CERTIFICATE-----\n" \
	"MIIBdTCCARugAwIBAgIUaOArk0Zc6nP9yRIjCVzRBNr5aMswCgYIKoZIzj0EAwIw\n" \
	"DzENMAsGA1UEAwwEdW5pdDAgFw0yNjEyMDMxMDA4MzVaGA8yMTI2MTEwOTEwMDgz\n" \
	"NVowDzENMAsGA1UEAwwEdW5pdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABOrB\n" \
	"Z3TPjzkIxzsyEsueTd4XNxUcJqypP1Lw8XEL6AovOb6yGh938JZbA6TMSat8NWQM\n" \
	"IlmI5rpfmM9zj1DpvemjUzBRMB0GA1UdDgQWBBTlBzq1NmbWn3smWDUs9+6v38x0\n" \
	"DDAfBgNVHSMEGDAWgBTlBzq1NmbWn3smWDUs9+6v38x0DDAPBgNVHRMBAf8EBTAD\n" \
	"AQH/MAoGCCqGSM49BAMCA0gAMEUCIFLt/hfsre0wlRHlGG2ryiTM5aggbqM/FTJ5\n" \
	"ur+fWOwmAiEAqKatDyLxUdMeoswA45UtWx+gp9Sad+VfzRzQFjLMpO4=\n" \
	"-----END CERTIFICATE-----\n"
#define DEVICE_ISSUER	DEVICE "issuer = https://op.example\n"

/* ---- temp folders and files ---- */

/* Write dir/name with mode; returns the path. */
static char *
put_file(const char *dir, const char *name, const char *content,
    mode_t mode)
{
	char	*path = path_in(dir, name);
	FILE	*f;

	if ((f = fopen(path, "w")) == NULL)
		fail_msg("cannot create %s: %s", path, strerror(errno));
	fputs(content, f);
	fclose(f);
	if (chmod(path, mode) != 0)
		fail_msg("chmod %s: %s", path, strerror(errno));
	return path;
}

static void
dump_diag(const char *what, const struct diag *d)
{
	size_t	 i;

	for (i = 0; i < d->nerrors; i++)
		print_error("%s: error: %s\n", what, d->errors[i]);
	for (i = 0; i < d->nwarnings; i++)
		print_error("%s: warning: %s\n", what, d->warnings[i]);
}

/*
 * Write NAME.conf (0600) and load it; no error, and one warning that says
 * `warning` (NULL: no warning at all).
 */
static struct account_conf *
load_warned(const char *dir, const char *name, const char *content,
    const char *warning)
{
	struct account_conf	*ac;
	struct diag		 d;
	char			*file, *path;
	size_t			 want = warning != NULL;

	memset(&d, 0, sizeof d);
	if (asprintf(&file, "%s.conf", name) == -1)
		fail_msg("asprintf");
	path = put_file(dir, file, content, 0600);
	ac = config_account_load(path, name, &d);
	free(path);
	free(file);
	if (ac == NULL || d.nerrors != 0 || d.nwarnings != want ||
	    (want && strstr(d.warnings[0], warning) == NULL)) {
		dump_diag(name, &d);
		diag_clear(&d);
		config_account_free(ac);
		fail_msg("%s: expected a load with %s", name, warning != NULL ?
		    warning : "no warning");
	}
	diag_clear(&d);
	return ac;
}

/* Write NAME.conf (0600) and load it; the diag must be clean. */
static struct account_conf *
load_ok(const char *dir, const char *name, const char *content)
{
	return load_warned(dir, name, content, NULL);
}

/* ---- config_parse_duration ---- */

static void
test_parse_duration(void **state)
{
	static const struct {
		const char	*in;
		int		 rc;
		int64_t		 want;
	} cases[] = {
		{ "0", 0, 0 },
		{ "000", 0, 0 },
		{ "0s", 0, 0 },
		{ "0d", 0, 0 },
		{ "1", 0, 1 * SEC },
		{ "90", 0, 90 * SEC },
		{ "30s", 0, 30 * SEC },
		{ "5m", 0, 300 * SEC },
		{ "2h", 0, 7200 * SEC },
		{ "1d", 0, 86400 * SEC },
		{ "90d", 0, 90LL * 86400 * SEC },
		{ "0090m", 0, 90 * 60 * SEC },
		/* the longest: ten years of 366 days, in each unit */
		{ "3660d", 0, 3660LL * 86400 * SEC },
		{ "87840h", 0, 87840LL * 3600 * SEC },
		{ "5270400m", 0, 5270400LL * 60 * SEC },
		{ "316224000s", 0, 316224000LL * SEC },
		{ "316224000", 0, 316224000LL * SEC },
		{ "0000000000000000000000003660d", 0, 3660LL * 86400 * SEC },
		{ "3661d", -ERANGE, 0 },
		{ "87841h", -ERANGE, 0 },
		{ "5270401m", -ERANGE, 0 },
		{ "316224001s", -ERANGE, 0 },
		{ "316224001", -ERANGE, 0 },
		/* the issue's: its doubling overflowed the backoff */
		{ "60000000000d", -ERANGE, 0 },
		{ "106751991159d", -ERANGE, 0 },
		{ "99999999999999999999999999999x", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "s", -EINVAL, 0 },
		{ "m", -EINVAL, 0 },
		{ "5 m", -EINVAL, 0 },
		{ " 5m", -EINVAL, 0 },
		{ "5m ", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "-5m", -EINVAL, 0 },
		{ "+5", -EINVAL, 0 },
		{ "5x", -EINVAL, 0 },
		{ "5ms", -EINVAL, 0 },
		{ "5mm", -EINVAL, 0 },
		{ "5S", -EINVAL, 0 },
		{ "5M", -EINVAL, 0 },
		{ "1.5h", -EINVAL, 0 },
		{ "1e3", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "5d1", -EINVAL, 0 },
		{ "5m30s", -EINVAL, 0 },
		{ "abc", -EINVAL, 0 },
		{ "1067519911600", -ERANGE, 0 },
		{ "9223372036854775807", -ERANGE, 0 },
		{ "9223372036854775808", -ERANGE, 0 },
		{ "99999999999999999999999999999s", -ERANGE, 0 },
		{ "99999999999999999999999999999d", -ERANGE, 0 },
	};
	char	 what[96];
	int64_t	 v;
	size_t	 i;
	int	 rc;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "duration '%s'", cases[i].in);
		v = -12345;
		rc = config_parse_duration(cases[i].in, &v);
		CHECK_I64(what, rc, cases[i].rc);
		CHECK_I64(what, v, rc == 0 ? cases[i].want : -12345);
	}
}

/* ---- config_parse_mode ---- */

static void
test_parse_mode(void **state)
{
	static const struct {
		const char	*in;
		int		 rc;
		mode_t		 want;
	} cases[] = {
		{ "0640", 0, 0640 },
		{ "640", 0, 0640 },
		{ "600", 0, 0600 },
		{ "0600", 0, 0600 },
		{ "0644", 0, 0644 },
		{ "0666", 0, 0666 },
		{ "0400", 0, 0400 },
		{ "0", 0, 0 },
		{ "0000", 0, 0 },
		{ "66", 0, 066 },
		{ "0755", -EINVAL, 0 },	/* execute bits */
		{ "0700", -EINVAL, 0 },
		{ "0750", -EINVAL, 0 },
		{ "0601", -EINVAL, 0 },
		{ "0610", -EINVAL, 0 },
		{ "0100", -EINVAL, 0 },
		{ "0777", -EINVAL, 0 },
		{ "1640", -EINVAL, 0 },	/* sticky */
		{ "2640", -EINVAL, 0 },	/* set-gid */
		{ "4640", -EINVAL, 0 },	/* set-uid */
		{ "0680", -EINVAL, 0 },	/* not octal */
		{ "0690", -EINVAL, 0 },
		{ "8", -EINVAL, 0 },
		{ "9", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "00640", -EINVAL, 0 },	/* too long */
		{ "000000000640", -EINVAL, 0 },
		{ "-640", -EINVAL, 0 },
		{ "0o640", -EINVAL, 0 },
		{ "rw-r-----", -EINVAL, 0 },
		{ " 640", -EINVAL, 0 },
		{ "640 ", -EINVAL, 0 },
	};
	char	 what[64];
	mode_t	 m;
	size_t	 i;
	int	 rc;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "mode '%s'", cases[i].in);
		m = 01234;
		rc = config_parse_mode(cases[i].in, &m);
		CHECK_I64(what, rc, cases[i].rc);
		CHECK_I64(what, m, rc == 0 ? cases[i].want : 01234);
	}
}

/* ---- config_parse_argv ---- */

static void
test_parse_argv(void **state)
{
	static const struct {
		const char	*in;
		int		 rc;
		const char	*want;	/* words joined with '|' */
	} cases[] = {
		{ "/usr/bin/systemctl reload-or-restart myapp", 0,
		    "/usr/bin/systemctl|reload-or-restart|myapp" },
		{ "/bin/true", 0, "/bin/true" },
		{ "  /bin/echo \t a\t\tb  ", 0, "/bin/echo|a|b" },
		{ "/bin/echo 'a b' \"c d\"", 0, "/bin/echo|a b|c d" },
		{ "/bin/echo a\\ b", 0, "/bin/echo|a b" },
		{ "/bin/echo \"say \\\"hi\\\"\"", 0, "/bin/echo|say \"hi\"" },
		{ "/bin/echo \"a\\\\b\"", 0, "/bin/echo|a\\b" },
		{ "/bin/echo \\\\", 0, "/bin/echo|\\" },
		{ "/bin/echo 'it\\s'", 0, "/bin/echo|it\\s" },
		{ "/bin/echo 'a\\'", 0, "/bin/echo|a\\" },
		{ "/bin/echo \"it's\"", 0, "/bin/echo|it's" },
		{ "/bin/echo 'say \"x\"'", 0, "/bin/echo|say \"x\"" },
		{ "/bin/echo a\"b c\"d", 0, "/bin/echo|ab cd" },
		{ "/bin/echo '' x", 0, "/bin/echo||x" },
		{ "/bin/echo $HOME `id` ;", 0, "/bin/echo|$HOME|`id`|;" },
		{ "/bin/echo \"abc", -EINVAL, NULL },
		{ "/bin/echo 'abc", -EINVAL, NULL },
		{ "/bin/echo \"a\\\"", -EINVAL, NULL },
		{ "/bin/echo 'a' \"", -EINVAL, NULL },
		{ "'", -EINVAL, NULL },
		{ "", -EINVAL, NULL },
		{ "   \t ", -EINVAL, NULL },
	};
	char	**argv, *joined, *next, what[96];
	size_t	  i, j;
	int	  rc;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "argv '%s'", cases[i].in);
		argv = (char **)what;	/* a sentinel */
		rc = config_parse_argv(cases[i].in, &argv);
		CHECK_I64(what, rc, cases[i].rc);
		if (rc != 0) {
			if (argv != (char **)what)
				fail_msg("%s: argv set on failure", what);
			continue;
		}
		joined = NULL;
		for (j = 0; argv[j] != NULL; j++) {
			if (asprintf(&next, "%s%s%s", joined ? joined : "",
			    joined ? "|" : "", argv[j]) == -1)
				fail_msg("asprintf");
			free(joined);
			joined = next;
			free(argv[j]);
		}
		free(argv);
		CHECK_STR(what, joined, cases[i].want);
		free(joined);
	}
}

/* ---- config_account_name_valid ---- */

static void
test_account_name_valid(void **state)
{
	static const struct {
		const char	*name;
		int		 valid;
	} cases[] = {
		{ "a", 1 },
		{ "spotinst", 1 },
		{ "My-Acct_1.prod", 1 },
		{ "0", 1 },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		    1 },	/* 64 */
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		    0 },	/* 65 */
		{ "", 0 },
		{ "a/b", 0 },
		{ "../etc", 0 },
		{ "a b", 0 },
		{ "a:b", 0 },
		{ "a\n", 0 },
		{ "a\tb", 0 },
		{ "caf\xc3\xa9", 0 },
		{ "a*", 0 },
		{ "a@b", 0 },
		/* folders, in a path or a URL */
		{ ".", 0 },
		{ "..", 0 },
		{ "...", 1 },
		{ ".a", 1 },
		{ "a..", 1 },
	};
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if ((config_account_name_valid(cases[i].name) != 0) !=
		    cases[i].valid)
			fail_msg("name '%s': expected %s", cases[i].name,
			    cases[i].valid ? "valid" : "invalid");
}

/* ---- ini_parse_buffer ---- */

struct events {
	char	*log;
	int	 stop_at_key;	/* return -1 on the key "stop" */
};

static void
ev_add(struct events *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
ev_add(struct events *ev, const char *fmt, ...)
{
	va_list	 ap;
	char	*s, *next;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		fail_msg("vasprintf");
	va_end(ap);
	if (asprintf(&next, "%s%s\n", ev->log ? ev->log : "", s) == -1)
		fail_msg("asprintf");
	free(ev->log);
	free(s);
	ev->log = next;
}

static int
ev_section(void *arg, const char *name, int line)
{
	ev_add(arg, "S%d [%s]", line, name);
	return 0;
}

static int
ev_value(void *arg, const char *section, const char *key, const char *value,
    int line)
{
	struct events	*ev = arg;

	ev_add(ev, "V%d %s.%s=<%s>", line, section, key, value);
	return ev->stop_at_key && !strcmp(key, "stop") ? -1 : 0;
}

static void
ev_error(void *arg, int line, const char *msg)
{
	ev_add(arg, "E%d %s", line, msg);
}

static const struct ini_handler ev_handler = {
	ev_section, ev_value, ev_error
};

/* Compare the event log, free it, and only then fail (no leak). */
static void
ev_check(const char *what, char *log, const char *want)
{
	int	 same = strcmp(log != NULL ? log : "", want) == 0;

	if (!same)
		print_error("%s: got '%s', expected '%s'\n", what,
		    log != NULL ? log : "", want);
	free(log);
	if (!same)
		fail_msg("%s: unexpected events", what);
}

struct ini_case {
	const char	*name;
	const char	*in;
	size_t		 len;		/* 0: strlen(in) */
	const char	*want;
};

static const struct ini_case ini_cases[] = {
	{ "empty", "", 0, "" },
	{ "blank lines only", "\n\n  \n\t\n", 0, "" },
	{ "comments and values",
	    "; comment\n"
	    "# hash comment\n"
	    "[s]\n"
	    "a = 1\n"
	    "  b=2\n"
	    "c = x ; inline comment\n"
	    "d = x;y\n"
	    "e = \"q ; \\\"w\\\" \\\\ e\"\n"
	    "f =\n"
	    "g = x #a comment too\n"
	    "h = x\t; after a tab\n"
	    "i = a=b\n"
	    "param.foo-bar_1 = v\n"
	    "j = \"\"\n"
	    "k = \"x\" ; comment after quotes\n"
	    "  ; indented comment\n"
	    "l = http://h/p;q ;c\n",
	    0,
	    "S3 [s]\n"
	    "V4 s.a=<1>\n"
	    "V5 s.b=<2>\n"
	    "V6 s.c=<x>\n"
	    "V7 s.d=<x;y>\n"
	    "V8 s.e=<q ; \"w\" \\ e>\n"
	    "V9 s.f=<>\n"
	    "V10 s.g=<x>\n"
	    "V11 s.h=<x>\n"
	    "V12 s.i=<a=b>\n"
	    "V13 s.param.foo-bar_1=<v>\n"
	    "V14 s.j=<>\n"
	    "V15 s.k=<x>\n"
	    "V17 s.l=<http://h/p;q>\n" },
	/* issue 11: " #" is an inline comment; a '#' inside a word is not */
	{ "hash comments",
	    "[s]\n"
	    "username = dave@example.com   # the owner\n"
	    "url = https://h/p#frag\n"
	    "password = pa#ss;wo#rd\n"
	    "q = \"keep # this ; too\" # but not this\n"
	    "t = x\t#after a tab\n"
	    "e = # nothing before it\n"
	    "h = #\n"
	    "x = a##b #c\n",
	    0,
	    "S1 [s]\n"
	    "V2 s.username=<dave@example.com>\n"
	    "V3 s.url=<https://h/p#frag>\n"
	    "V4 s.password=<pa#ss;wo#rd>\n"
	    "V5 s.q=<keep # this ; too>\n"
	    "V6 s.t=<x>\n"
	    "V7 s.e=<>\n"
	    "V8 s.h=<>\n"
	    "V9 s.x=<a##b>\n" },
	{ "sections", "[a]\nx = 1\n[ b ]\nx = 2\n[a]\n[file]\n[file]\n", 0,
	    "S1 [a]\nV2 a.x=<1>\nS3 [b]\nV4 b.x=<2>\nS5 [a]\nS6 [file]\n"
	    "S7 [file]\n" },
	{ "BOM and CRLF",
	    "\xef\xbb\xbf[s]\r\na = 1\r\n\r\nb = 2 ; c\r\nc = \"q\"\r\n", 0,
	    "S1 [s]\nV2 s.a=<1>\nV4 s.b=<2>\nV5 s.c=<q>\n" },
	{ "no newline at the end", "[s]\nk = v", 0, "S1 [s]\nV2 s.k=<v>\n" },
	{ "missing ]", "[s]\n[t\nk = v\n", 0,
	    "S1 [s]\nE2 section header without ']'\nV3 s.k=<v>\n" },
	{ "key outside a section", "k = v\n\n[s]\nk = w\n", 0,
	    "E1 key outside of any [section]\nS3 [s]\nV4 s.k=<w>\n" },
	{ "syntax errors, each on its line",
	    "[s]\nnovalue\n= v\n[bad name]\n[s] x\nk\"=v\n[]\nok = 1\n", 0,
	    "S1 [s]\nE2 expected 'key = value'\nE3 malformed key name\n"
	    "E4 malformed section header\nE5 malformed section header\n"
	    "E6 malformed key name\nE7 malformed section header\n"
	    "V8 s.ok=<1>\n" },
	{ "bad quotes",
	    "[s]\na = \"unterminated\nb = \"x\" y\nc = \"x\" ; ok\n"
	    "d = \"x\\\"\n", 0,
	    "S1 [s]\nE2 unterminated or malformed quoted value\n"
	    "E3 unterminated or malformed quoted value\nV4 s.c=<x>\n"
	    "E5 unterminated or malformed quoted value\n" },
	{ "line numbers after comments and blanks",
	    "; 1\n\n# 3\n[s]\n\n\n; 7\nk = v\n\n\n\n\n\n\nm = n\n", 0,
	    "S4 [s]\nV8 s.k=<v>\nV15 s.m=<n>\n" },
	{ "CRLF line numbers", "\r\n\r\n[s]\r\n\r\nk = v\r\n", 0,
	    "S3 [s]\nV5 s.k=<v>\n" },
};

static void
test_ini_table(void **state)
{
	struct events	 ev;
	size_t		 i, len;
	int		 rc;

	(void)state;
	for (i = 0; i < sizeof ini_cases / sizeof ini_cases[0]; i++) {
		memset(&ev, 0, sizeof ev);
		len = ini_cases[i].len ? ini_cases[i].len :
		    strlen(ini_cases[i].in);
		rc = ini_parse_buffer(ini_cases[i].in, len, &ev_handler, &ev);
		if (rc != 0)
			fail_msg("%s: rc %d", ini_cases[i].name, rc);
		ev_check(ini_cases[i].name, ev.log, ini_cases[i].want);
	}
}

/* No line-length limit: a 10,000-character value arrives whole. */
static void
test_ini_long_line(void **state)
{
	struct events	 ev;
	char		*buf, *want;
	size_t		 n = 10000;

	(void)state;
	buf = malloc(n + 64);
	want = malloc(n + 64);
	strcpy(buf, "[s]\nk = ");
	memset(buf + 8, 'A', n);
	strcpy(buf + 8 + n, "\nn = 1\n");
	strcpy(want, "S1 [s]\nV2 s.k=<");
	memset(want + 15, 'A', n);
	strcpy(want + 15 + n, ">\nV3 s.n=<1>\n");
	memset(&ev, 0, sizeof ev);
	assert_int_equal(ini_parse_buffer(buf, strlen(buf), &ev_handler, &ev),
	    0);
	free(buf);
	ev_check("10,000-character line", ev.log, want);
	free(want);
}

/* A NUL byte rejects the whole buffer: nothing else is delivered. */
static void
test_ini_nul_byte(void **state)
{
	static const char buf[] = "[s]\nk = v\nx\0y = z\nw = 1\n";
	struct events	 ev;

	(void)state;
	memset(&ev, 0, sizeof ev);
	assert_int_equal(ini_parse_buffer(buf, sizeof buf - 1, &ev_handler,
	    &ev), 0);
	assert_non_null(ev.log);
	if (strncmp(ev.log, "E", 1) != 0 || strstr(ev.log, "NUL") == NULL ||
	    strchr(ev.log, '\n') != ev.log + strlen(ev.log) - 1)
		fail_msg("expected one NUL error and nothing else, got %s",
		    ev.log);
	free(ev.log);
}

/* The NUL byte's message names the line it is on, like every other. */
static void
test_ini_nul_byte_line(void **state)
{
	static const char buf[] = "[s]\nk = v\nx\0y = z\nw = 1\n";
	struct events	 ev;

	(void)state;
	memset(&ev, 0, sizeof ev);
	ini_parse_buffer(buf, sizeof buf - 1, &ev_handler, &ev);
	ev_check("NUL on line 3", ev.log, "E3 file contains a NUL byte\n");
}

/*
 * "key =   ; comment": the ';' follows white space, so it starts a comment
 * and the value is empty. SPEC's own layout has such lines
 * ("refresh_url =                   ; where refresh_token requests go").
 */
static void
test_ini_empty_value_then_comment(void **state)
{
	static const char buf[] =
	    "[s]\n"
	    "a =   ; only a comment\n"
	    "b =\t; after a tab\n"
	    "c = ;\n"
	    "d =;x\n";
	struct events	 ev;

	(void)state;
	memset(&ev, 0, sizeof ev);
	assert_int_equal(ini_parse_buffer(buf, sizeof buf - 1, &ev_handler,
	    &ev), 0);
	ev_check("empty values with comments", ev.log,
	    "S1 [s]\nV2 s.a=<>\nV3 s.b=<>\nV4 s.c=<>\nV5 s.d=<;x>\n");
}

static void
test_ini_handler_stops(void **state)
{
	static const char buf[] = "[s]\na = 1\nstop = 1\nb = 2\n[t]\n";
	struct events	 ev;

	(void)state;
	memset(&ev, 0, sizeof ev);
	ev.stop_at_key = 1;
	assert_int_equal(ini_parse_buffer(buf, sizeof buf - 1, &ev_handler,
	    &ev), -1);
	ev_check("stopped", ev.log, "S1 [s]\nV2 s.a=<1>\nV3 s.stop=<1>\n");
}

/* ---- account files: valid ones ---- */

static void
test_account_client_credentials(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*secret;

	secret = put_file(dir, "client.secret", "s3cr3t:&+% /\n", 0600);
	/* a secret Basic sends percent-encoded: --check says so */
	ac = load_warned(dir, "cc",
	    "; Spotnana-style, every key set\n"
	    "[account]\n"
	    "grant = client_credentials\n"
	    "token_url = https://issuer.example/oauth/token\n"
	    "client_id = my-client\n"
	    "client_secret_file = client.secret\n"
	    "scope = \"read write\"\n"
	    "audience = https://api.example\n"
	    "resource = https://res.example/x\n"
	    "param.tenant = acme\n"
	    "param.x = \"a ; b\"\n"
	    "timeout = 10s\n"
	    "allow_http = no\n"
	    "\n"
	    "[response]\n"
	    "expires_in = /data/ttl\n"
	    "default_lifetime = 2h\n"
	    "[refresh]\n"
	    "margin = 1m\n"
	    "ratio = 0.5\n"
	    "jitter = 0.2\n"
	    "min_backoff = 2s\n"
	    "max_backoff = 10m\n"
	    "[file]\n"
	    "path = /run/tokend/cc.json\n"
	    "format = json\n"
	    "mode = 0600\n"
	    "owner = 0\n"
	    "group = 0\n"
	    "[access]\n"
	    "users = root, 1000 1001\n"
	    "groups = 0\n"
	    "[hooks]\n"
	    "on_refresh = /usr/bin/systemctl reload-or-restart 'my app'\n"
	    "on_failure = /usr/bin/logger -t tokend failed\n",
	    "the client secret holds characters that HTTP Basic sends "
	    "percent-encoded");
	CHECK_STR("name", ac->name, "cc");
	CHECK_I64("grant", ac->grant, GRANT_CLIENT_CREDENTIALS);
	CHECK_STR("token_url", ac->token_url,
	    "https://issuer.example/oauth/token");
	CHECK_STR("refresh_url", ac->refresh_url, ac->token_url);
	CHECK_STR("client_id", ac->client_id, "my-client");
	CHECK_STR("client_secret", ac->client_secret, "s3cr3t:&+% /");
	CHECK_I64("client_auth", ac->client_auth, CLIENT_AUTH_BASIC);
	CHECK_STR("scope", ac->scope, "read write");
	CHECK_STR("audience", ac->audience, "https://api.example");
	CHECK_STR("resource", ac->resource, "https://res.example/x");
	CHECK_I64("nparams", ac->nparams, 2);
	CHECK_STR("param 0 name", ac->params[0].name, "tenant");
	CHECK_STR("param 0 value", ac->params[0].value, "acme");
	CHECK_STR("param 1 name", ac->params[1].name, "x");
	CHECK_STR("param 1 value", ac->params[1].value, "a ; b");
	CHECK_I64("timeout", ac->timeout, 10 * SEC);
	CHECK_I64("allow_http", ac->allow_http, 0);
	CHECK_STR("response.access_token", ac->response.access_token,
	    "/access_token");
	CHECK_STR("response.expires_in", ac->response.expires_in, "/data/ttl");
	CHECK_I64("default_lifetime", ac->response.default_lifetime,
	    7200 * SEC);
	CHECK_I64("margin", ac->refresh.margin, 60 * SEC);
	assert_true(ac->refresh.ratio == 0.5);
	assert_true(ac->refresh.jitter == 0.2);
	CHECK_I64("min_backoff", ac->refresh.min_backoff, 2 * SEC);
	CHECK_I64("max_backoff", ac->refresh.max_backoff, 600 * SEC);
	CHECK_I64("nsinks", ac->nsinks, 1);
	CHECK_STR("sink path", ac->sinks[0].path, "/run/tokend/cc.json");
	CHECK_I64("sink format", ac->sinks[0].format, SINK_JSON);
	CHECK_I64("sink mode", ac->sinks[0].mode, 0600);
	CHECK_I64("sink uid", ac->sinks[0].uid, 0);
	CHECK_I64("sink gid", ac->sinks[0].gid, 0);
	CHECK_I64("sink line", ac->sinks[0].line, 24);
	CHECK_I64("nusers", ac->nusers, 3);
	CHECK_I64("user 0", ac->users[0], 0);
	CHECK_I64("user 1", ac->users[1], 1000);
	CHECK_I64("user 2", ac->users[2], 1001);
	CHECK_I64("ngroups", ac->ngroups, 1);
	CHECK_I64("group 0", ac->groups[0], 0);
	assert_non_null(ac->on_refresh);
	CHECK_STR("on_refresh 0", ac->on_refresh[0], "/usr/bin/systemctl");
	CHECK_STR("on_refresh 1", ac->on_refresh[1], "reload-or-restart");
	CHECK_STR("on_refresh 2", ac->on_refresh[2], "my app");
	assert_null(ac->on_refresh[3]);
	CHECK_STR("on_failure 3", ac->on_failure[3], "failed");
	assert_null(ac->on_failure[4]);
	config_account_free(ac);
	free(secret);
}

static void
test_account_password(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*pw;

	/* Spotinst-style: password at one URL, refresh at another */
	pw = put_file(dir, "dave.password", "pa ss\n", 0600);
	ac = load_ok(dir, "spotinst",
	    "[account]\n"
	    "grant = password\n"
	    "token_url = https://oauth.example/token\n"
	    "refresh_url = https://oauth.example/token/refresh\n"
	    "client_id = id\n"
	    "client_secret = sec\n"
	    "client_auth = post\n"
	    "username = dave@example.com\n"
	    "password_file = dave.password\n"
	    "[response]\n"
	    "access_token = /response/items/0/accessToken\n"
	    "refresh_token = /response/items/0/refreshToken\n"
	    "expires_in = /response/items/0/expiresIn\n"
	    "token_type =\n");
	CHECK_I64("grant", ac->grant, GRANT_PASSWORD);
	CHECK_STR("refresh_url", ac->refresh_url,
	    "https://oauth.example/token/refresh");
	CHECK_I64("client_auth", ac->client_auth, CLIENT_AUTH_POST);
	CHECK_STR("client_secret", ac->client_secret, "sec");
	CHECK_STR("username", ac->username, "dave@example.com");
	CHECK_STR("password", ac->password, "pa ss");
	CHECK_STR("access_token ptr", ac->response.access_token,
	    "/response/items/0/accessToken");
	CHECK_STR("refresh_token ptr", ac->response.refresh_token,
	    "/response/items/0/refreshToken");
	CHECK_STR("expires_in ptr", ac->response.expires_in,
	    "/response/items/0/expiresIn");
	CHECK_STR("token_type ptr (disabled)", ac->response.token_type, NULL);
	config_account_free(ac);
	free(pw);

	/* Particle-style: Basic auth, inline password */
	ac = load_ok(dir, "particle",
	    "[account]\n"
	    "grant = password\n"
	    "token_url = https://api.particle.example/oauth/token\n"
	    "client_id = particle\n"
	    "client_secret = particle\n"
	    "username = u\n"
	    "password = p w\n");
	CHECK_I64("particle client_auth", ac->client_auth, CLIENT_AUTH_BASIC);
	CHECK_STR("particle password", ac->password, "p w");
	config_account_free(ac);
}

static void
test_account_refresh_token(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*rt;

	rt = put_file(dir, "first.rt", "rt-0123456789\n", 0600);
	ac = load_ok(dir, "rotating",
	    "[account]\n"
	    "grant = refresh_token\n"
	    "token_url = https://issuer.example/token\n"
	    "client_id = public-client\n"
	    "refresh_token_file = first.rt\n");
	CHECK_I64("grant", ac->grant, GRANT_REFRESH_TOKEN);
	CHECK_STR("refresh_token", ac->refresh_token, "rt-0123456789");
	CHECK_I64("client_auth", ac->client_auth, CLIENT_AUTH_NONE);
	CHECK_STR("client_secret", ac->client_secret, NULL);
	config_account_free(ac);
	free(rt);
}

static void
test_account_static(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*tok;

	tok = put_file(dir, "perm.token", "permanent-token-xyz\n", 0600);
	ac = load_ok(dir, "perm",
	    "[account]\n"
	    "grant = static\n"
	    "token_file = perm.token\n"
	    "[file]\n"
	    "path = /run/tokend/perm.token\n");
	CHECK_I64("grant", ac->grant, GRANT_STATIC);
	CHECK_STR("static_token", ac->static_token, "permanent-token-xyz");
	CHECK_STR("token_url", ac->token_url, NULL);
	CHECK_I64("nsinks", ac->nsinks, 1);
	config_account_free(ac);
	free(tok);
}

static void
test_account_defaults(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;

	ac = load_ok(dir, "min",
	    "[account]\n"
	    "token_url = https://issuer.example/token\n"
	    "client_id = a\n"
	    "client_secret = b\n");
	CHECK_I64("grant", ac->grant, GRANT_CLIENT_CREDENTIALS);
	CHECK_I64("client_auth with a secret", ac->client_auth,
	    CLIENT_AUTH_BASIC);
	CHECK_STR("refresh_url", ac->refresh_url, ac->token_url);
	assert_ptr_not_equal(ac->refresh_url, ac->token_url);
	CHECK_STR("access_token ptr", ac->response.access_token,
	    "/access_token");
	CHECK_STR("refresh_token ptr", ac->response.refresh_token,
	    "/refresh_token");
	CHECK_STR("expires_in ptr", ac->response.expires_in, "/expires_in");
	CHECK_STR("expires_at ptr", ac->response.expires_at, NULL);
	CHECK_STR("token_type ptr", ac->response.token_type, "/token_type");
	CHECK_I64("default_lifetime", ac->response.default_lifetime,
	    3600 * SEC);
	CHECK_I64("margin", ac->refresh.margin, 300 * SEC);
	assert_true(ac->refresh.ratio == 0.75);
	assert_true(ac->refresh.jitter == 0.1);
	CHECK_I64("min_backoff", ac->refresh.min_backoff, 1 * SEC);
	CHECK_I64("max_backoff", ac->refresh.max_backoff, 300 * SEC);
	CHECK_I64("timeout", ac->timeout, 30 * SEC);
	CHECK_I64("allow_http", ac->allow_http, 0);
	CHECK_I64("nsinks", ac->nsinks, 0);
	CHECK_I64("nparams", ac->nparams, 0);
	assert_null(ac->on_refresh);
	assert_null(ac->on_failure);
	assert_null(ac->scope);
	config_account_free(ac);

	/* no secret: no client authentication */
	ac = load_ok(dir, "pub",
	    "[account]\n"
	    "token_url = https://issuer.example/token\n"
	    "client_id = a\n"
	    "[response]\n"
	    "expires_in =\n"
	    "expires_at = /exp\n");
	CHECK_I64("client_auth without a secret", ac->client_auth,
	    CLIENT_AUTH_NONE);
	CHECK_STR("expires_in disabled", ac->response.expires_in, NULL);
	CHECK_STR("expires_at", ac->response.expires_at, "/exp");
	config_account_free(ac);

	/* allow_http = yes lets an http:// URL through */
	ac = load_ok(dir, "plain",
	    "[account]\n"
	    "token_url = http://127.0.0.1:8080/token\n"
	    "allow_http = yes\nclient_id = c\n");
	CHECK_I64("allow_http", ac->allow_http, 1);
	CHECK_STR("http token_url", ac->token_url,
	    "http://127.0.0.1:8080/token");
	config_account_free(ac);
}

static void
test_account_files(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;

	ac = load_ok(dir, "multi",
	    "[account]\n"
	    "token_url = https://issuer.example/token\n"
	    "client_id = c\n"
	    "[file]\n"
	    "path = /run/tokend/a.token\n"
	    "\n"
	    "[file]\n"
	    "path = /run/tokend/a.env\n"
	    "format = env\n"
	    "mode = 0600\n"
	    "[file]\n"
	    "format = header\n"
	    "path = /run/tokend/a.header\n"
	    "group = 0\n");
	CHECK_I64("nsinks", ac->nsinks, 3);
	CHECK_STR("sink 0 path", ac->sinks[0].path, "/run/tokend/a.token");
	CHECK_I64("sink 0 format", ac->sinks[0].format, SINK_RAW);
	CHECK_I64("sink 0 mode", ac->sinks[0].mode, 0640);
	CHECK_I64("sink 0 uid", ac->sinks[0].uid, (uid_t)-1);
	CHECK_I64("sink 0 gid", ac->sinks[0].gid, (gid_t)-1);
	CHECK_I64("sink 0 line", ac->sinks[0].line, 4);
	CHECK_STR("sink 1 path", ac->sinks[1].path, "/run/tokend/a.env");
	CHECK_I64("sink 1 format", ac->sinks[1].format, SINK_ENV);
	CHECK_I64("sink 1 mode", ac->sinks[1].mode, 0600);
	CHECK_I64("sink 1 line", ac->sinks[1].line, 7);
	CHECK_STR("sink 2 path", ac->sinks[2].path, "/run/tokend/a.header");
	CHECK_I64("sink 2 format", ac->sinks[2].format, SINK_HEADER);
	CHECK_I64("sink 2 uid", ac->sinks[2].uid, (uid_t)-1);
	CHECK_I64("sink 2 gid", ac->sinks[2].gid, 0);
	CHECK_I64("sink 2 line", ac->sinks[2].line, 11);
	config_account_free(ac);
}

/*
 * SPEC's reference layout lists optional keys with empty values, some
 * followed by a comment. Copied as it is (with the secret files it names
 * present), it must load; an empty key means "the default".
 */
static const char spec_account[] =
    "[account]\n"
    "grant = client_credentials      ; client_credentials | password | "
    "refresh_token | static\n"
    "token_url = https://issuer.example/oauth/token\n"
    "refresh_url =                   ; where refresh_token requests go; "
    "default token_url\n"
    "client_id = my-client\n"
    "client_secret_file = client.secret   ; or client_secret = ... (warned "
    "about if the file is group/world readable)\n"
    "client_auth = basic             ; basic | post | none   (default basic "
    "when a secret is set)\n"
    "username = dave\n"
    "password_file = dave.password   ; or password = ...\n"
    "refresh_token_file =            ; the first refresh token, for grant = "
    "refresh_token\n"
    "token_file =                    ; grant = static: a permanent token, "
    "served as it is\n"
    "scope = read write\n"
    "audience =\n"
    "resource =\n"
    "param.NAME = VALUE              ; any extra form parameter\n"
    "ca_file =                       ; extra trust anchor for the token "
    "endpoint\n"
    "timeout = 30s\n"
    "allow_http = no                 ; http:// token URLs are refused unless "
    "yes\n"
    "\n"
    "[response]                      ; RFC 6901 JSON pointers into the token "
    "response\n"
    "access_token = /access_token\n"
    "refresh_token = /refresh_token\n"
    "expires_in = /expires_in        ; a number or a numeric string "
    "(\"3600\"; not \"3600abc\")\n"
    "expires_at =                    ; instead: absolute expiry, epoch "
    "seconds or RFC 3339\n"
    "token_type = /token_type        ; compared case-insensitively; absent "
    "means Bearer\n"
    "default_lifetime = 1h           ; when there is no expires_in and the "
    "token is not a JWT with exp\n"
    "\n"
    "[refresh]\n"
    "margin = 5m                     ; refresh when this little lifetime is "
    "left ...\n"
    "ratio = 0.75                    ; ... or when this share of it has "
    "passed, whichever comes first\n"
    "jitter = 0.1                    ; spread refreshes by up to this share "
    "of the lifetime\n"
    "min_backoff = 1s\n"
    "max_backoff = 5m\n"
    "\n"
    "[file]                          ; repeatable: one section per file to "
    "write\n"
    "path = /run/tokend/NAME.token\n"
    "format = raw                    ; raw | json | env | header\n"
    "mode = 0640\n"
    "owner =\n"
    "group =\n"
    "\n"
    "[access]                        ; who may read this account over the "
    "socket (root always may)\n"
    "users =\n"
    "groups =\n"
    "\n"
    "[hooks]                         ; run without a shell; TOKEND_ACCOUNT, "
    "TOKEND_EXPIRES_AT in the environment\n"
    "on_refresh =                    ; e.g. /usr/bin/systemctl "
    "reload-or-restart myapp\n"
    "on_failure =\n";

static void
test_account_spec_layout(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;

	free(put_file(dir, "client.secret", "s\n", 0600));
	free(put_file(dir, "dave.password", "p\n", 0600));
	ac = load_ok(dir, "spec", spec_account);
	CHECK_STR("refresh_url", ac->refresh_url, ac->token_url);
	CHECK_STR("scope", ac->scope, "read write");
	CHECK_STR("param", ac->params[0].name, "NAME");
	CHECK_I64("sink uid", ac->sinks[0].uid, (uid_t)-1);
	CHECK_I64("sink gid", ac->sinks[0].gid, (gid_t)-1);
	assert_null(ac->on_refresh);
	assert_null(ac->on_failure);
	config_account_free(ac);
}

/* The same, one key at a time, so that each cause shows on its own. */
static void
test_account_empty_keys(void **state)
{
	static const struct {
		const char	*name;
		const char	*content;
	} cases[] = {
		{ "refresh_url = then a comment",
		    "[account]\n" URL_ID "refresh_url =     ; default token_url\n" },
		{ "audience = then a comment",
		    "[account]\n" URL_ID "audience =     ; none\n" },
		{ "empty owner", "[account]\n" URL_ID "[file]\npath = /x\nowner =\n" },
		{ "empty group", "[account]\n" URL_ID "[file]\npath = /x\ngroup =\n" },
		{ "empty on_refresh", "[account]\n" URL_ID "[hooks]\non_refresh =\n" },
		{ "empty on_failure", "[account]\n" URL_ID "[hooks]\non_failure =\n" },
		{ "on_refresh = then a comment",
		    "[account]\n" URL_ID "[hooks]\non_refresh =   ; e.g. /bin/x\n" },
	};
	const char		*dir = *state;
	struct account_conf	*ac;
	struct diag		 d;
	char			*path;
	size_t			 i;
	int			 bad = 0;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		path = put_file(dir, "empty.conf", cases[i].content, 0600);
		memset(&d, 0, sizeof d);
		ac = config_account_load(path, "empty", &d);
		if (ac == NULL || d.nerrors != 0) {
			dump_diag(cases[i].name, &d);
			bad++;
		} else if (ac->refresh_url == NULL ||
		    strcmp(ac->refresh_url, ac->token_url) != 0 ||
		    ac->audience != NULL || ac->on_refresh != NULL ||
		    ac->on_failure != NULL) {
			print_error("%s: a comment was taken as a value\n",
			    cases[i].name);
			bad++;
		}
		diag_clear(&d);
		config_account_free(ac);
		free(path);
	}
	if (bad != 0)
		fail_msg("%d of %zu empty keys not taken as the default", bad,
		    sizeof cases / sizeof cases[0]);
}

/* ---- account files: every error, with its line ---- */

struct error_case {
	const char	*name;
	const char	*content;
	int		 line;		/* 0: "FILE: " without a line */
	const char	*msg;		/* the message starts with this */
	const char	*aux_name;	/* another file to write first */
	const char	*aux_content;
};

static const struct error_case error_cases[] = {
	{ "unknown key",
	    "[account]\n" URL_ID "bogus = 1\n",
	    4, "unknown key 'bogus' in [account]", NULL, NULL },
	{ "unknown key in [refresh]",
	    "[account]\n" URL_ID "[refresh]\nmargin = 1m\nspeed = 3\n",
	    6, "unknown key 'speed' in [refresh]", NULL, NULL },
	{ "unknown section",
	    "[account]\n" URL_ID "[bogus]\nx = 1\n",
	    4, "unknown section [bogus]", NULL, NULL },
	{ "duplicate key",
	    "[account]\n" URL "client_id = a\n\nclient_id = b\n",
	    5, "duplicate key 'client_id' (first at line 3)", NULL, NULL },
	{ "duplicate key in one [file]",
	    "[account]\n" URL_ID "[file]\npath = /a\npath = /b\n",
	    6, "duplicate key 'path' (first at line 5)", NULL, NULL },
	{ "duplicate param",
	    "[account]\n" URL_ID "param.a = 1\nparam.a = 2\n",
	    5, "duplicate key 'param.a'", NULL, NULL },
	{ "reserved param",
	    "[account]\n" URL_ID "param.scope = x\n",
	    4, "param.scope is set by tokend itself", NULL, NULL },
	{ "repeated [account]",
	    "[account]\n" URL_ID "[account]\nclient_id = x\n",
	    4, "section [account] repeated (first at line 1)", NULL, NULL },
	{ "repeated [refresh]",
	    "[account]\n" URL_ID "[refresh]\n[response]\n[refresh]\n",
	    6, "section [refresh] repeated (first at line 4)", NULL, NULL },
	{ "bad grant",
	    "[account]\ngrant = implicit\n" URL,
	    2, "unknown grant 'implicit'", NULL, NULL },
	{ "bad client_auth",
	    "[account]\n" URL "client_id = a\nclient_secret = b\n"
	    "client_auth = jwt\n",
	    5, "unknown client_auth 'jwt'", NULL, NULL },
	{ "missing token_url",
	    "; comment\n\n[account]\nclient_id = a\n",
	    3, "token_url is missing", NULL, NULL },
	{ "http:// without allow_http",
	    "[account]\nclient_id = a\ntoken_url = http://issuer.example/t\n",
	    3, "token_url: http:// sends secrets in clear text", NULL, NULL },
	{ "http:// refresh_url without allow_http",
	    "[account]\n" URL_ID "refresh_url = http://issuer.example/r\n",
	    4, "refresh_url: http:// sends secrets in clear text", NULL,
	    NULL },
	{ "ftp:// token_url",
	    "[account]\ntoken_url = ftp://issuer.example/t\nclient_id = c\n",
	    2, "token_url: expected an https:// URL", NULL, NULL },
	{ "token_url without a host",
	    "[account]\ntoken_url = https:///t\nclient_id = c\n",
	    2, "token_url: malformed URL", NULL, NULL },
	{ "bad duration",
	    "[account]\n" URL_ID "timeout = 5 m\n",
	    4, "timeout: bad duration '5 m'", NULL, NULL },
	{ "bad duration in [refresh]",
	    "[account]\n" URL_ID "[refresh]\nmargin = -1\n",
	    5, "margin: bad duration '-1'", NULL, NULL },
	{ "bad ratio",
	    "[account]\n" URL_ID "[refresh]\nratio = 1.5\n",
	    5, "ratio: expected a number from 0.01 to 1", NULL, NULL },
	{ "bad jitter",
	    "[account]\n" URL_ID "[refresh]\njitter = x\n",
	    5, "jitter: expected a number from 0 to 0.5", NULL, NULL },
	{ "bad bool",
	    "[account]\n" URL_ID "allow_http = maybe\n",
	    4, "allow_http: expected yes or no", NULL, NULL },
	{ "bad mode",
	    "[account]\n" URL_ID "[file]\npath = /run/x\nmode = 0755\n",
	    6, "mode: expected octal permissions", NULL, NULL },
	{ "bad format",
	    "[account]\n" URL_ID "[file]\npath = /run/x\nformat = yaml\n",
	    6, "unknown format 'yaml'", NULL, NULL },
	{ "relative [file] path",
	    "[account]\n" URL_ID "\n[file]\npath = run/x\n",
	    5, "[file] path must be absolute", NULL, NULL },
	{ "[file] without a path",
	    "[account]\n" URL_ID "[file]\nformat = raw\n",
	    4, "[file] needs a path", NULL, NULL },
	{ "unknown owner",
	    "[account]\n" URL_ID "[file]\npath = /x\n"
	    "owner = no-such-user-xyz\n",
	    6, "unknown user 'no-such-user-xyz'", NULL, NULL },
	{ "pointer without /",
	    "[account]\n" URL_ID "[response]\nexpires_in = expires_in\n",
	    5, "expires_in: a JSON pointer starts with '/'", NULL, NULL },
	{ "hook with unbalanced quotes",
	    "[account]\n" URL_ID "[hooks]\non_refresh = /bin/echo \"x\n",
	    5, "on_refresh: unbalanced quotes", NULL, NULL },
	{ "hook with a relative program",
	    "[account]\n" URL_ID "[hooks]\non_failure = logger x\n",
	    5, "on_failure: the program needs an absolute path", NULL, NULL },
	{ "unreadable secret file",
	    "[account]\n" URL "client_id = a\nclient_secret_file = gone\n",
	    4, "client_secret_file: cannot read ", NULL, NULL },
	{ "empty secret file",
	    "[account]\n" URL "client_id = a\nclient_secret_file = empty\n",
	    4, "client_secret_file: ", "empty", "\n" },
	{ "both client_secret and client_secret_file",
	    "[account]\n" URL "client_id = a\nclient_secret = x\n"
	    "client_secret_file = s\n",
	    5, "set client_secret or client_secret_file, not both", "s",
	    "y\n" },
	{ "both password and password_file",
	    "[account]\ngrant = password\n" URL "username = u\n"
	    "password_file = p\npassword = x\n",
	    5, "set password or password_file, not both", "p", "y\n" },
	{ "password grant without username",
	    "[account]\n" URL "grant = password\npassword = pw\n",
	    3, "grant = password needs username", NULL, NULL },
	{ "password grant without password",
	    "[account]\n" URL "grant = password\nusername = u\n",
	    3, "grant = password needs password or password_file", NULL,
	    NULL },
	{ "refresh_token grant without refresh_token_file",
	    "[account]\n" URL "client_id = a\n\ngrant = refresh_token\n",
	    5, "grant = refresh_token needs refresh_token_file", NULL, NULL },
	{ "static without token_file",
	    "[account]\ngrant = static\n",
	    2, "grant = static needs token_file", NULL, NULL },
	{ "token_file without grant = static",
	    "[account]\n" URL_ID "token_file = t\n",
	    4, "token_file is for grant = static", "t", "tok\n" },
	{ "client_auth = basic without a secret",
	    "[account]\n" URL "client_id = a\nclient_auth = basic\n",
	    4, "client_auth = basic needs client_secret or client_secret_file",
	    NULL, NULL },
	{ "client_auth = post without a secret",
	    "[account]\n" URL "client_auth = post\nclient_id = a\n",
	    3, "client_auth = post needs client_secret", NULL, NULL },
	{ "min_backoff above max_backoff",
	    "[account]\n" URL_ID "[refresh]\nmin_backoff = 10m\n"
	    "max_backoff = 1m\n",
	    4, "min_backoff must be positive and not above max_backoff", NULL,
	    NULL },
	{ "timeout 0",
	    "[account]\n" URL_ID "timeout = 0\n",
	    4, "timeout must be positive", NULL, NULL },
	{ "missing ] in an account file",
	    "[account]\n" URL_ID "[file\n",
	    4, "section header without ']'", NULL, NULL },
	{ "key outside a section",
	    "grant = static\n[account]\n" URL_ID,
	    1, "key outside of any [section]", NULL, NULL },
	{ "no [account]",
	    "[response]\nexpires_in = /e\n",
	    0, "no [account] section", NULL, NULL },	{ "device_code without client_id",
	    "[account]\ngrant = device_code\nissuer = https://op.example\n",
	    2, "grant = device_code needs client_id", NULL, NULL },
	{ "device_code without issuer or its URL",
	    "[account]\ngrant = device_code\n" URL_ID,
	    2, "grant = device_code needs issuer (discovery), or token_url "
	    "and device_authorization_url", NULL, NULL },
	{ "authorization_code without authorization_url",
	    "[account]\ngrant = authorization_code\n" URL_ID,
	    2, "grant = authorization_code needs issuer (discovery), or "
	    "token_url and authorization_url", NULL, NULL },
	{ "login grant without issuer nor token_url",
	    DEVICE "device_authorization_url = https://op.example/device\n",
	    2, "grant = device_code needs issuer (discovery), or token_url "
	    "and device_authorization_url", NULL, NULL },
	{ "issuer over http",
	    DEVICE "issuer = http://op.example\n",
	    4, "issuer: http:// sends secrets in clear text", NULL, NULL },
	{ "issuer with a query",
	    DEVICE "issuer = https://op.example/?x=1\n",
	    4, "issuer: no query or fragment allowed", NULL, NULL },
	{ "issuer for a static token",
	    "[account]\ngrant = static\ntoken_file = t\n"
	    "issuer = https://op.example\n",
	    4, "issuer is not for grant = static", "t", "tok\n" },
	/* keys: a test-only EC P-256 key, made for these tests */
	{ "an EC key with client_key_alg = RS256",
	    "[account]\n" URL_ID "client_key_file = k\nclient_key_alg = RS256\n",
	    5, "client_key_alg: RS256 needs an RSA key", "k", EC_KEY },
	{ "client_key_alg unknown",
	    "[account]\n" URL_ID "client_key_file = k\nclient_key_alg = rs256\n",
	    5, "client_key_alg: expected RS256, PS256, ES256 or EdDSA", "k",
	    EC_KEY },
	{ "client_key_alg = HS256",
	    "[account]\n" URL_ID "client_key_file = k\nclient_key_alg = HS256\n",
	    5, "client_key_alg: HS256 signs with the client secret", "k",
	    EC_KEY },
	{ "a key file without a key",
	    "[account]\n" URL_ID "client_key_file = k\n",
	    4, "client_key_file: ", "k", "not a key\n" },
	{ "private_key_jwt without a key",
	    "[account]\n" URL_ID "client_auth = private_key_jwt\n",
	    4, "client_auth = private_key_jwt needs client_key_file", NULL,
	    NULL },
	{ "tls_client_auth without a certificate",
	    "[account]\n" URL_ID "client_auth = tls_client_auth\n"
	    "client_key_file = k\n",
	    4, "client_auth = tls_client_auth needs client_cert_file", "k",
	    EC_KEY },
	{ "client_cert_file without a certificate",
	    "[account]\n" URL_ID "client_key_file = k\nclient_cert_file = k\n",
	    5, "client_cert_file: ", "k", EC_KEY },
	{ "client_secret_jwt without a secret",
	    "[account]\n" URL_ID "client_auth = client_secret_jwt\n",
	    4, "client_auth = client_secret_jwt needs client_secret", NULL,
	    NULL },
	{ "assertion.jti",
	    "[account]\n" URL_ID "client_key_file = k\nassertion.jti = x\n",
	    5, "assertion.jti is set by tokend itself", "k", EC_KEY },
	{ "jwt_bearer without a key",
	    "[account]\n" URL_ID "grant = jwt_bearer\n",
	    4, "grant = jwt_bearer needs client_key_file or "
	    "service_account_file", NULL, NULL },
	{ "jwt_bearer without an issuer",
	    "[account]\n" URL "grant = jwt_bearer\nclient_key_file = k\n",
	    3, "grant = jwt_bearer needs client_id", "k", EC_KEY },
	{ "assertion_lifetime too long",
	    "[account]\n" URL_ID "client_key_file = k\n"
	    "assertion_lifetime = 2h\n",
	    5, "assertion_lifetime: expected 10s to 1h", "k", EC_KEY },
	{ "assertion_in = bearer over 9 minutes",
	    "[account]\n" URL_ID "grant = jwt_bearer\nassertion_in = bearer\n"
	    "client_key_file = k\nassertion_lifetime = 10m\n",
	    7, "assertion_lifetime: at most 9m with assertion_in = bearer",
	    "k", EC_KEY },
	{ "assertion_in = bearer with a scope",
	    "[account]\n" URL_ID "grant = jwt_bearer\nassertion_in = bearer\n"
	    "client_key_file = k\nscope = a\n",
	    5, "assertion_in = bearer sends an empty body", "k", EC_KEY },
	{ "assertion_in = bearer without jwt_bearer",
	    "[account]\n" URL_ID "client_key_file = k\nassertion_in = bearer\n",
	    5, "assertion_in = bearer is for grant = jwt_bearer", "k",
	    EC_KEY },
	{ "a user's credentials as a service account",
	    "[account]\nservice_account_file = sa.json\n",
	    2, "service_account_file: ", "sa.json",
	    "{\"type\":\"authorized_user\",\"client_id\":\"x\"}" },
	{ "a service account without client_email",
	    "[account]\nservice_account_file = sa.json\n",
	    2, "service_account_file: ", "sa.json",
	    "{\"type\":\"service_account\",\"private_key\":\"x\"}" },
	{ "a service account and a key",
	    "[account]\n" URL "client_key_file = k\n"
	    "service_account_file = sa.json\n",
	    4, "set client_key_file or service_account_file, not both", "k",
	    EC_KEY },
	{ "a certificate without its key",
	    "[account]\n" URL_ID "client_auth = tls_client_auth\n"
	    "client_cert_file = k\n",
	    5, "client_cert_file needs client_key_file", "k", EC_CERT },
	{ "a key without client_id",
	    "[account]\n" URL "client_key_file = k\n",
	    1, "client_auth = private_key_jwt (as client_key_file implies) "
	    "needs client_id", "k", EC_KEY },
	{ "a service account with client_credentials",
	    "[account]\n" URL "grant = client_credentials\n"
	    "service_account_file = sa.json\n",
	    4, "service_account_file is for grant = jwt_bearer", NULL, NULL },
	{ "a service account with another grant",
	    "[account]\n" URL "grant = password\nusername = u\npassword = p\n"
	    "service_account_file = sa.json\n",
	    6, "service_account_file is for grant = jwt_bearer", NULL, NULL },
	{ "redirect_uri for device_code",
	    DEVICE_ISSUER "redirect_uri = http://127.0.0.1:0/cb\n",
	    5, "redirect_uri is for grant = authorization_code", NULL, NULL },
	{ "authorize_param for device_code",
	    DEVICE_ISSUER "authorize_param.access_type = offline\n",
	    5, "authorize_param.* is for grant = authorization_code", NULL,
	    NULL },
	{ "reserved authorize_param",
	    CODE_ISSUER "authorize_param.state = x\n",
	    5, "authorize_param.state is set by tokend itself", NULL, NULL },
	{ "authorize_param without a name",
	    CODE_ISSUER "authorize_param. = x\n",
	    5, "authorize_param. needs a name", NULL, NULL },
	{ "password with a login grant",
	    DEVICE_ISSUER "password = x\n",
	    5, "a password is not used with grant = device_code", NULL, NULL },
	{ "refresh_token_file with a login grant",
	    CODE_ISSUER "refresh_token_file = rt\n",
	    5, "refresh_token_file is not used with grant = "
	    "authorization_code: use tokenctl login", "rt", "r1\n" },
};

/* grant = device_code / authorization_code: keys, defaults, [access] */
static void
test_account_login(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;

	ac = load_ok(dir, "dev", "[account]\ngrant = device_code\n"
	    "issuer = https://op.example/tenant\nclient_id = c\n"
	    "scope = openid offline_access\n"
	    "[access]\nlogin_users = root\nlogin_groups = root\n");
	assert_int_equal(ac->grant, GRANT_DEVICE_CODE);
	assert_string_equal(ac->issuer, "https://op.example/tenant");
	assert_null(ac->token_url);
	assert_null(ac->refresh_url);
	assert_null(ac->redirect_uri);
	assert_int_equal(ac->client_auth, CLIENT_AUTH_NONE);
	assert_false(ac->client_auth_given);
	assert_int_equal(ac->nlogin_users, 1);
	assert_int_equal(ac->login_users[0], 0);
	assert_int_equal(ac->nlogin_groups, 1);
	assert_int_equal(ac->nusers, 0);
	config_account_free(ac);

	ac = load_ok(dir, "code",
	    "[account]\n"
	    "grant = authorization_code\n"
	    "token_url = https://op.example/token\n"
	    "authorization_url = https://op.example/auth\n"
	    "revocation_url = https://op.example/revoke\n"
	    "client_id = c\n"
	    "client_auth = none\n");
	assert_int_equal(ac->grant, GRANT_AUTHORIZATION_CODE);
	assert_string_equal(ac->redirect_uri, "http://127.0.0.1:0/callback");
	assert_string_equal(ac->refresh_url, "https://op.example/token");
	assert_string_equal(ac->revocation_url, "https://op.example/revoke");
	assert_true(ac->client_auth_given);
	config_account_free(ac);

	ac = load_ok(dir, "code6",
	    "[account]\n"
	    "grant = authorization_code\n"
	    "issuer = https://op.example\n"
	    "redirect_uri = http://[::1]:8976/cb/x\n"
	    "client_id = c\n");
	assert_string_equal(ac->redirect_uri, "http://[::1]:8976/cb/x");
	config_account_free(ac);

	/* logout also serves refresh_token accounts */
	free(put_file(dir, "rt", "r1\n", 0600));
	ac = load_ok(dir, "rt",
	    "[account]\n"
	    "grant = refresh_token\n" URL_ID
	    "refresh_token_file = rt\n"
	    "revocation_url = https://op.example/revoke\n");
	assert_string_equal(ac->revocation_url, "https://op.example/revoke");
	config_account_free(ac);
}

static void
test_account_errors(void **state)
{
	const char		*dir = *state;
	const struct error_case	*c;
	struct account_conf	*ac;
	struct diag		 d;
	char			*path, *aux, *prefix;
	size_t			 i;

	for (i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
		c = &error_cases[i];
		aux = c->aux_name ? put_file(dir, c->aux_name, c->aux_content,
		    0600) : NULL;
		path = put_file(dir, "acct.conf", c->content, 0600);
		memset(&d, 0, sizeof d);
		ac = config_account_load(path, "acct", &d);
		if (c->line > 0) {
			if (asprintf(&prefix, "%s:%d: %s", path, c->line,
			    c->msg) == -1)
				fail_msg("asprintf");
		} else if (asprintf(&prefix, "%s: %s", path, c->msg) == -1)
			fail_msg("asprintf");
		if (ac != NULL || d.nerrors != 1 ||
		    strncmp(d.errors[0], prefix, strlen(prefix)) != 0) {
			dump_diag(c->name, &d);
			fail_msg("%s: expected exactly one error starting "
			    "'%s'", c->name, prefix);
		}
		diag_clear(&d);
		free(prefix);
		if (aux != NULL) {
			unlink(aux);
			free(aux);
		}
		unlink(path);
		free(path);
	}
}

/* All errors of a file are reported at once, each with its own line. */
static void
test_account_many_errors(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	struct diag		 d;
	char			*path, *want;

	path = put_file(dir, "many.conf",
	    "[account]\n"
	    "grant = nope\n"
	    "token_url = https://issuer.example/token\n"
	    "bogus = 1\n"
	    "timeout = soon\n"
	    "[file]\n"
	    "path = /x\n"
	    "mode = 9\n", 0600);
	memset(&d, 0, sizeof d);
	ac = config_account_load(path, "many", &d);
	assert_null(ac);
	if (d.nerrors != 4) {
		dump_diag("many", &d);
		fail_msg("expected 4 errors, got %zu", d.nerrors);
	}
	assert_int_equal(asprintf(&want, "%s:2: ", path) > 0, 1);
	assert_int_equal(strncmp(d.errors[0], want, strlen(want)), 0);
	free(want);
	assert_int_equal(asprintf(&want, "%s:4: ", path) > 0, 1);
	assert_int_equal(strncmp(d.errors[1], want, strlen(want)), 0);
	free(want);
	assert_int_equal(asprintf(&want, "%s:5: ", path) > 0, 1);
	assert_int_equal(strncmp(d.errors[2], want, strlen(want)), 0);
	free(want);
	assert_int_equal(asprintf(&want, "%s:8: ", path) > 0, 1);
	assert_int_equal(strncmp(d.errors[3], want, strlen(want)), 0);
	free(want);
	diag_clear(&d);
	free(path);
}

/*
 * Duplicate keys in a big file: each repeat is found, with the line of
 * the first, and a key of one [file] is no repeat of another's. (The scan
 * was quadratic: such a file took minutes of CPU. Its cost is measured by
 * bench/check_keys.py, not asserted here.)
 */
#define MANY_KEYS	50000

static void
test_account_many_keys(void **state)
{
	struct account_conf	*ac;
	struct diag		 d;
	char			*buf, *w, want[128];
	size_t			 i, size = (size_t)MANY_KEYS * 32 + 4096;
	int			 line;

	(void)state;
	w = buf = malloc(size);
	assert_non_null(buf);
	/* 1 [account], 2 token_url, 3 client_id, param.k0 .. at 4 .. */
	w += sprintf(w, "[account]\n" URL_ID);
	for (i = 0; i < MANY_KEYS; i++)
		w += sprintf(w, "param.k%zu = v%zu\n", i, i);
	line = MANY_KEYS + 3;
	w += sprintf(w, "param.k0 = again\n");			/* +1 */
	w += sprintf(w, "param.k%d = again\n", MANY_KEYS / 2);	/* +2 */
	w += sprintf(w, "param.k%d = again\n", MANY_KEYS - 1);	/* +3 */
	w += sprintf(w, "token_url = https://other.example/\n");	/* +4 */
	w += sprintf(w, "param.new = 1\n");			/* +5 */
	/* +6 [file], +7 path, +8 format, +9 [file], +10 path, +11 path */
	w += sprintf(w, "[file]\npath = /run/a\nformat = raw\n");
	w += sprintf(w, "[file]\npath = /run/b\npath = /run/c\n");
	assert_true((size_t)(w - buf) < size);

	memset(&d, 0, sizeof d);
	ac = config_account_parse("/etc/tokend/accounts.d/many.conf", "many",
	    buf, (size_t)(w - buf), &d);
	assert_null(ac);
	if (d.nerrors != 5) {
		dump_diag("many keys", &d);
		fail_msg("expected 5 errors, got %zu", d.nerrors);
	}
#define WANT(n, l, k, first) do {					\
	snprintf(want, sizeof want, "/etc/tokend/accounts.d/many.conf:%d: "\
	    "duplicate key '%s' (first at line %d)", (l), (k), (first));	\
	CHECK_STR("error " #n, d.errors[(n)], want);			\
} while (0)
	WANT(0, line + 1, "param.k0", 4);
	{
		char	 key[32];

		snprintf(key, sizeof key, "param.k%d", MANY_KEYS / 2);
		WANT(1, line + 2, key, MANY_KEYS / 2 + 4);
		snprintf(key, sizeof key, "param.k%d", MANY_KEYS - 1);
		WANT(2, line + 3, key, MANY_KEYS + 3);
	}
	WANT(3, line + 4, "token_url", 2);
	WANT(4, line + 11, "path", line + 10);
#undef WANT
	diag_clear(&d);

	/* without the repeats: every key is there, in order */
	w = buf;
	w += sprintf(w, "[account]\n" URL_ID);
	for (i = 0; i < MANY_KEYS; i++)
		w += sprintf(w, "param.k%zu = v%zu\n", i, i);
	w += sprintf(w, "[file]\npath = /run/a\n[file]\npath = /run/b\n");
	memset(&d, 0, sizeof d);
	ac = config_account_parse("/etc/tokend/accounts.d/many.conf", "many",
	    buf, (size_t)(w - buf), &d);
	if (ac == NULL || d.nerrors != 0) {
		dump_diag("many keys", &d);
		fail_msg("expected a clean load");
	}
	CHECK_I64("params", ac->nparams, MANY_KEYS);
	CHECK_STR("first", ac->params[0].name, "k0");
	snprintf(want, sizeof want, "v%d", MANY_KEYS - 1);
	CHECK_STR("last", ac->params[MANY_KEYS - 1].value, want);
	CHECK_I64("sinks", ac->nsinks, 2);
	config_account_free(ac);
	diag_clear(&d);
	free(buf);
}

static void
test_account_bad_name(void **state)
{
	const char	*dir = *state;
	struct diag	 d;
	char		*path, *want;

	path = put_file(dir, "bad name.conf", "[account]\n" URL_ID, 0600);
	memset(&d, 0, sizeof d);
	assert_null(config_account_load(path, "bad name", &d));
	assert_int_equal(d.nerrors, 1);
	assert_int_equal(asprintf(&want, "%s: account name 'bad name'",
	    path) > 0, 1);
	CHECK_I64("bad name prefix", strncmp(d.errors[0], want,
	    strlen(want)), 0);
	free(want);
	diag_clear(&d);
	free(path);

	/* "..conf" and "...conf" name the accounts "." and ".." */
	path = put_file(dir, "...conf", "[account]\n" URL_ID, 0600);
	memset(&d, 0, sizeof d);
	assert_null(config_account_load(path, "..", &d));
	assert_int_equal(d.nerrors, 1);
	assert_int_equal(asprintf(&want, "%s: account name '..' is not 1 to "
	    "64 of A-Z a-z 0-9 . _ -, other than . and ..", path) > 0, 1);
	CHECK_STR("dot-dot", d.errors[0], want);
	free(want);
	diag_clear(&d);
	free(path);

	/* a missing file */
	path = path_in(dir, "absent.conf");
	memset(&d, 0, sizeof d);
	assert_null(config_account_load(path, "absent", &d));
	assert_int_equal(d.nerrors, 1);
	assert_int_equal(asprintf(&want, "%s: cannot read", path) > 0, 1);
	CHECK_I64("absent prefix", strncmp(d.errors[0], want, strlen(want)),
	    0);
	free(want);
	diag_clear(&d);
	free(path);
}

/* ---- secret files ---- */

static void
test_secret_newline(void **state)
{
	static const struct {
		const char	*content;
		const char	*want;
	} cases[] = {
		{ "s3cret\n", "s3cret" },
		{ "s3cret", "s3cret" },
		{ "s3cret\r\n", "s3cret" },
		{ "s3cret\n\n", "s3cret\n" },	/* one newline only */
		{ " spaced secret \n", " spaced secret " },
	};
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*secret;
	size_t			 i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		secret = put_file(dir, "c.secret", cases[i].content, 0600);
		ac = load_ok(dir, "nl",
		    "[account]\n" URL "client_id = a\n"
		    "client_secret_file = c.secret\nclient_auth = post\n");
		CHECK_STR("secret", ac->client_secret, cases[i].want);
		config_account_free(ac);
		free(secret);
	}
}

/*
 * A limit's message agrees with the limit: a file of exactly the limit is
 * read, one byte more is "larger than" it. (Regression: a secret file of
 * 65,536 bytes was refused as "larger than 64 KiB".)
 */
static void
test_file_size_limits(void **state)
{
	static const char head[] = "[account]\n" URL "client_id = a\n"
	    "client_auth = post\nclient_secret_file = c.secret\n";
	const char		*dir = *state;
	struct account_conf	*ac;
	struct diag		 d;
	char			*big, *path, *secret;
	size_t			 n;

	big = malloc(CONFIG_FILE_MAX + 2);
	assert_non_null(big);

	/* a secret of SECRET_FILE_MAX bytes, no newline */
	memset(big, 'x', SECRET_FILE_MAX);
	big[SECRET_FILE_MAX] = '\0';
	secret = put_file(dir, "c.secret", big, 0600);
	ac = load_ok(dir, "limit", head);
	CHECK_I64("secret length", strlen(ac->client_secret),
	    SECRET_FILE_MAX);
	config_account_free(ac);
	free(secret);

	/* and one byte more */
	memset(big, 'x', SECRET_FILE_MAX + 1);
	big[SECRET_FILE_MAX + 1] = '\0';
	secret = put_file(dir, "c.secret", big, 0600);
	path = put_file(dir, "limit.conf", head, 0600);
	memset(&d, 0, sizeof d);
	assert_null(config_account_load(path, "limit", &d));
	if (d.nerrors != 1 || strstr(d.errors[0], ":5: client_secret_file: "
	    "cannot read ") == NULL || strstr(d.errors[0],
	    "larger than 64 KiB") == NULL) {
		dump_diag("limit", &d);
		fail_msg("expected one 'larger than 64 KiB' error at line 5");
	}
	diag_clear(&d);
	free(path);
	free(secret);

	/* an account file of CONFIG_FILE_MAX bytes: padded with comments */
	secret = put_file(dir, "c.secret", "s3cret\n", 0600);
	n = strlen(head);
	memcpy(big, head, n);
	for (; n < CONFIG_FILE_MAX; n++)
		big[n] = big[n - 1] == '\n' ? ';' : n % 64 == 0 ||
		    n == CONFIG_FILE_MAX - 1 ? '\n' : 'c';
	big[n] = '\0';
	ac = load_ok(dir, "limit", big);
	config_account_free(ac);

	/* and one byte more */
	big[n++] = '\n';
	big[n] = '\0';
	path = put_file(dir, "limit.conf", big, 0600);
	memset(&d, 0, sizeof d);
	assert_null(config_account_load(path, "limit", &d));
	if (d.nerrors != 1 || strstr(d.errors[0], "cannot read: larger than "
	    "1 MiB") == NULL) {
		dump_diag("limit", &d);
		fail_msg("expected one 'larger than 1 MiB' error");
	}
	diag_clear(&d);
	free(path);
	free(secret);
	free(big);
}

/* HTTP Basic: which ids and secrets --check warns about, per encoding. */
static void
test_basic_encoding_checks(void **state)
{
	static const struct {
		const char	*id, *secret, *encoding, *auth;
		const char	*warning;	/* NULL: none */
		const char	*error;		/* NULL: none */
	} cases[] = {
		/* letters, digits and -._~ read right everywhere */
		{ "my-client", "Ab3~d.e_f-G", NULL, NULL, NULL, NULL },
		{ "my-client", "Ab3~d.e_f-G", "raw", NULL, NULL, NULL },
		{ "my-client", "se:c&r+t%/ x=y", NULL, NULL,
		    "basic_encoding = raw or client_auth = post", NULL },
		{ "my-client", "se:c&r+t%/ x=y", "rfc6749", NULL,
		    "servers that do not decode the pair", NULL },
		{ "id with space", "plain", NULL, NULL,
		    "client_id holds characters", NULL },
		/* raw: what RFC 6749 servers would read differently */
		{ "my-client", "a+b", "raw", NULL, "holds '%' or '+'", NULL },
		{ "my-client", "se:c&r t/x=y", "raw", NULL, NULL, NULL },
		{ "my:client", "plain", "raw", NULL, NULL,
		    "raw cannot send a client_id holding ':'" },
		/* post avoids the question; the key is for basic only */
		{ "my-client", "se:c&r+t%/ x=y", NULL, "post", NULL, NULL },
		{ "my-client", "plain", "raw", "post",
		    "basic_encoding is for client_auth = basic only", NULL },
	};
	const char		*dir = *state;
	struct account_conf	*ac;
	struct diag		 d;
	char			*text, *path, *secret;
	size_t			 i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		secret = put_file(dir, "b.secret", cases[i].secret, 0600);
		if (asprintf(&text, "[account]\n" URL "client_id = %s\n"
		    "client_secret_file = b.secret\n%s%s%s%s%s%s",
		    cases[i].id, cases[i].encoding ? "basic_encoding = " : "",
		    cases[i].encoding ? cases[i].encoding : "",
		    cases[i].encoding ? "\n" : "",
		    cases[i].auth ? "client_auth = " : "",
		    cases[i].auth ? cases[i].auth : "",
		    cases[i].auth ? "\n" : "") == -1)
			fail_msg("asprintf");
		if (cases[i].error == NULL) {
			ac = load_warned(dir, "basic", text, cases[i].warning);
			CHECK_I64("encoding", ac->basic_encoding,
			    cases[i].encoding != NULL &&
			    !strcmp(cases[i].encoding, "raw") ?
			    BASIC_ENCODING_RAW : BASIC_ENCODING_RFC6749);
			config_account_free(ac);
		} else {
			path = put_file(dir, "basic.conf", text, 0600);
			memset(&d, 0, sizeof d);
			ac = config_account_load(path, "basic", &d);
			if (ac != NULL || d.nerrors != 1 ||
			    strstr(d.errors[0], cases[i].error) == NULL) {
				dump_diag("basic", &d);
				fail_msg("case %zu: expected the error '%s'", i,
				    cases[i].error);
			}
			diag_clear(&d);
			free(path);
		}
		free(text);
		free(secret);
	}
}

/* A FIFO or a device as a secret file is an error, and does not hang. */
static void
test_secret_not_regular(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	struct diag		 d;
	char			*path, *fifo;
	size_t			 i;
	int			 found = 0;

	fifo = path_in(dir, "c.secret");
	assert_int_equal(mkfifo(fifo, 0600), 0);
	path = path_in(dir, "fifo.conf");
	{
		FILE	*f = fopen(path, "w");

		assert_non_null(f);
		fputs("[account]\n" URL "client_id = a\n"
		    "client_secret_file = c.secret\n", f);
		fclose(f);
	}
	memset(&d, 0, sizeof d);
	ac = config_account_load(path, "fifo", &d);
	assert_null(ac);
	for (i = 0; i < d.nerrors; i++)
		if (strstr(d.errors[i], ":4: client_secret_file: cannot read ")
		    != NULL && strstr(d.errors[i], "not a regular file") != NULL)
			found = 1;
	if (!found)
		fail_msg("no 'not a regular file' error at line 4 (%zu errors)",
		    d.nerrors);
	diag_clear(&d);
	free(path);
	free(fifo);
}

static void
test_secret_permissions(void **state)
{
	static const struct {
		mode_t		 mode;
		int		 warn;
	} cases[] = {
		{ 0600, 0 },
		{ 0400, 0 },
		{ 0640, 1 },
		{ 0604, 1 },
		{ 0644, 1 },
	};
	const char		*dir = *state;
	struct account_conf	*ac;
	struct diag		 d;
	char			*path, *secret, *want, what[64];
	size_t			 i;

	path = put_file(dir, "perm.conf",
	    "[account]\n" URL "client_id = a\n"
	    "client_secret_file = c.secret\n", 0600);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "secret file mode %04o",
		    cases[i].mode);
		secret = put_file(dir, "c.secret", "s\n", cases[i].mode);
		memset(&d, 0, sizeof d);
		ac = config_account_load(path, "perm", &d);
		if (ac == NULL)
			fail_msg("%s: not loaded", what);
		CHECK_I64(what, d.nerrors, 0);
		CHECK_I64(what, d.nwarnings, cases[i].warn);
		if (cases[i].warn) {
			assert_int_equal(asprintf(&want, "%s:4: warning: "
			    "client_secret_file: %s is readable by group or "
			    "others (mode %04o)", path, secret,
			    cases[i].mode) > 0, 1);
			CHECK_STR(what, d.warnings[0], want);
			free(want);
		}
		diag_clear(&d);
		config_account_free(ac);
		free(secret);
	}
	free(path);

	/* an inline secret in a group-readable account file */
	path = put_file(dir, "inline.conf",
	    "[account]\n" URL "client_id = a\nclient_secret = s\n", 0640);
	memset(&d, 0, sizeof d);
	ac = config_account_load(path, "inline", &d);
	assert_non_null(ac);
	assert_int_equal(d.nwarnings, 1);
	assert_non_null(strstr(d.warnings[0], "holds a secret inline"));
	diag_clear(&d);
	config_account_free(ac);
	free(path);
}

static void
test_credentials_directory(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*creds, *a, *b, *c, *conf;

	creds = path_in(dir, "creds");
	assert_int_equal(mkdir(creds, 0700), 0);
	a = put_file(dir, "client.secret", "from-account-folder\n", 0600);
	b = put_file(creds, "client.secret", "from-credentials\n", 0600);
	c = put_file(creds, "abs.secret", "absolute\n", 0600);
	if (asprintf(&conf, "[account]\n" URL "client_id = a\n"
	    "client_secret_file = client.secret\n") == -1)
		fail_msg("asprintf");

	unsetenv("CREDENTIALS_DIRECTORY");
	ac = load_ok(dir, "cred", conf);
	CHECK_STR("no $CREDENTIALS_DIRECTORY", ac->client_secret,
	    "from-account-folder");
	config_account_free(ac);

	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	ac = load_ok(dir, "cred", conf);
	CHECK_STR("$CREDENTIALS_DIRECTORY", ac->client_secret,
	    "from-credentials");
	config_account_free(ac);

	setenv("CREDENTIALS_DIRECTORY", "", 1);
	ac = load_ok(dir, "cred", conf);
	CHECK_STR("empty $CREDENTIALS_DIRECTORY", ac->client_secret,
	    "from-account-folder");
	config_account_free(ac);
	free(conf);

	/* an absolute path is taken as it is */
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	if (asprintf(&conf, "[account]\n" URL "client_id = a\n"
	    "client_secret_file = %s\n", c) == -1)
		fail_msg("asprintf");
	ac = load_ok(dir, "cred", conf);
	CHECK_STR("absolute path", ac->client_secret, "absolute");
	config_account_free(ac);
	unsetenv("CREDENTIALS_DIRECTORY");

	free(conf);
	free(a);
	free(b);
	free(c);
	free(creds);
}

/* ---- config_account_equal ---- */

static void
test_account_equal(void **state)
{
	static const char conf[] =
	    "[account]\n" URL "client_id = a\n"
	    "client_secret_file = c.secret\n"
	    "[file]\npath = /run/x\n";
	const char		*dir = *state;
	struct account_conf	*a, *b, *c, *e, *f;
	char			*secret;

	secret = put_file(dir, "c.secret", "one\n", 0600);
	a = load_ok(dir, "eq", conf);
	b = load_ok(dir, "eq", conf);
	assert_true(config_account_equal(a, b));
	assert_true(config_account_equal(b, a));
	assert_true(config_account_equal(a, a));

	/* the secret file's content changes: a different account */
	free(put_file(dir, "c.secret", "two\n", 0600));
	c = load_ok(dir, "eq", conf);
	assert_false(config_account_equal(a, c));

	/* a value changes */
	free(put_file(dir, "c.secret", "one\n", 0600));
	e = load_ok(dir, "eq",
	    "[account]\n" URL "client_id = b\n"
	    "client_secret_file = c.secret\n"
	    "[file]\npath = /run/x\n");
	assert_false(config_account_equal(a, e));

	/* a comment or blank line is not part of the account */
	f = load_ok(dir, "eq",
	    "; a comment\n[account]\n" URL "\nclient_id = a ; why\n"
	    "client_secret_file = c.secret\n"
	    "[file]\npath = /run/x\n");
	assert_true(config_account_equal(a, f));

	config_account_free(a);
	config_account_free(b);
	config_account_free(c);
	config_account_free(e);
	config_account_free(f);
	free(secret);
}

/* ---- config_load: the global file ---- */

/* confdir/tokend.conf with content, loaded as the default global file */
static struct config *
load_default_global(const char *confdir, const char *content, struct diag *d)
{
	struct config	*cfg;

	free(put_file(confdir, "tokend.conf", content, 0644));
	memset(d, 0, sizeof *d);
	cfg = config_load(NULL, NULL, d);
	if (cfg == NULL) {
		dump_diag("global file in $CONFIGURATION_DIRECTORY", d);
		fail_msg("config_load failed");
	}
	return cfg;
}

/*
 * $CONFIGURATION_DIRECTORY (a user unit's ~/.config/tokend, the system
 * unit's /etc/tokend; first of a list): the default global file, which
 * may be absent, and the default accounts_dir; -c, -A and the file's own
 * accounts_dir win.
 */
static void
test_config_load_configuration_directory(const char *dir)
{
	struct config	*cfg;
	struct diag	 d;
	char		*cd, *acc, *list, *content, *other, *path;

	cd = path_in(dir, "confdir");
	assert_int_equal(mkdir(cd, 0700), 0);
	acc = path_in(cd, "accounts.d");
	assert_int_equal(mkdir(acc, 0700), 0);
	free(put_file(acc, "mine.conf", "[account]\n" URL_ID, 0600));
	if (asprintf(&list, "%s:/elsewhere", cd) == -1)
		fail_msg("asprintf");
	setenv("CONFIGURATION_DIRECTORY", list, 1);

	/* no tokend.conf there: no error, accounts from confdir/accounts.d */
	memset(&d, 0, sizeof d);
	cfg = config_load(NULL, NULL, &d);
	if (cfg == NULL || d.nerrors != 0) {
		dump_diag("no global file", &d);
		fail_msg("config_load failed");
	}
	assert_null(cfg->file);
	CHECK_STR("accounts_dir from $CONFIGURATION_DIRECTORY",
	    cfg->accounts_dir, acc);
	CHECK_I64("naccounts", cfg->naccounts, 1);
	CHECK_STR("account", cfg->accounts[0]->name, "mine");
	diag_clear(&d);
	config_free(cfg);

	/* confdir/tokend.conf is the default global file */
	other = path_in(dir, "other.d");
	assert_int_equal(mkdir(other, 0700), 0);
	cfg = load_default_global(cd, "[tokend]\nlog_level = debug\n", &d);
	path = path_in(cd, "tokend.conf");
	CHECK_STR("file from $CONFIGURATION_DIRECTORY", cfg->file, path);
	CHECK_I64("its log_level", cfg->log_level, LOG_LEVEL_DEBUG);
	CHECK_STR("accounts_dir still from $CONFIGURATION_DIRECTORY",
	    cfg->accounts_dir, acc);
	diag_clear(&d);
	config_free(cfg);

	/* its accounts_dir wins over the variable, and -A over both */
	if (asprintf(&content, "[tokend]\naccounts_dir = %s\n", other) == -1)
		fail_msg("asprintf");
	cfg = load_default_global(cd, content, &d);
	free(content);
	CHECK_STR("accounts_dir from the file", cfg->accounts_dir, other);
	CHECK_I64("no accounts there", cfg->naccounts, 0);
	diag_clear(&d);
	config_free(cfg);
	memset(&d, 0, sizeof d);
	cfg = config_load(NULL, acc, &d);
	assert_non_null(cfg);
	CHECK_STR("accounts_dir from -A", cfg->accounts_dir, acc);
	diag_clear(&d);
	config_free(cfg);

	/* -c names the global file: a missing one is an error */
	unlink(path);
	memset(&d, 0, sizeof d);
	assert_null(config_load(path, NULL, &d));
	assert_true(d.nerrors > 0);
	diag_clear(&d);

	unsetenv("CONFIGURATION_DIRECTORY");
	free(other);
	free(path);
	free(list);
	free(acc);
	free(cd);
}

static void
test_config_load_global(void **state)
{
	const char	*dir = *state;
	struct config	*cfg;
	struct diag	 d;
	char		*acc, *global, *content;

	acc = path_in(dir, "accounts.d");
	assert_int_equal(mkdir(acc, 0700), 0);
	free(put_file(acc, "b.conf", "[account]\n" URL_ID, 0600));
	free(put_file(acc, "a.conf", "[account]\n" URL_ID, 0600));
	/* none of these is an account */
	free(put_file(acc, "c.conf.example", "junk", 0600));
	free(put_file(acc, "README", "junk", 0600));
	free(put_file(acc, "d.conf~", "junk", 0600));
	free(put_file(acc, "e.CONF", "junk", 0600));
	free(put_file(acc, ".conf", "junk", 0600));
	free(put_file(acc, "f.confx", "junk", 0600));

	if (asprintf(&content,
	    "; global\n"
	    "[tokend]\n"
	    "accounts_dir = %s\n"
	    "state_dir = /var/lib/tokend-test\n"
	    "socket = /run/tokend-test/t.sock   ; inline\n"
	    "log_level = debug\n"
	    "max_requests = 10\n"
	    "max_requests_per_host = 2\n", acc) == -1)
		fail_msg("asprintf");
	global = put_file(dir, "tokend.conf", content, 0644);
	free(content);

	memset(&d, 0, sizeof d);
	cfg = config_load(global, NULL, &d);
	if (cfg == NULL || d.nerrors != 0) {
		dump_diag("global", &d);
		fail_msg("config_load failed");
	}
	CHECK_STR("file", cfg->file, global);
	CHECK_STR("accounts_dir", cfg->accounts_dir, acc);
	CHECK_STR("state_dir", cfg->state_dir, "/var/lib/tokend-test");
	CHECK_STR("socket", cfg->socket_path, "/run/tokend-test/t.sock");
	CHECK_I64("log_level", cfg->log_level, LOG_LEVEL_DEBUG);
	CHECK_I64("max_requests", cfg->max_requests, 10);
	CHECK_I64("max_requests_per_host", cfg->max_requests_per_host, 2);
	CHECK_I64("naccounts", cfg->naccounts, 2);
	CHECK_STR("account 0", cfg->accounts[0]->name, "a");
	CHECK_STR("account 1", cfg->accounts[1]->name, "b");
	diag_clear(&d);
	config_free(cfg);

	/* -A overrides accounts_dir; an empty global file keeps defaults */
	free(put_file(dir, "empty.conf", "", 0644));
	free(global);
	global = path_in(dir, "empty.conf");
	setenv("STATE_DIRECTORY", "/state/one:/state/two", 1);
	setenv("RUNTIME_DIRECTORY", "/run/tokend-rt", 1);
	memset(&d, 0, sizeof d);
	cfg = config_load(global, acc, &d);
	assert_non_null(cfg);
	CHECK_STR("accounts_dir from -A", cfg->accounts_dir, acc);
	CHECK_STR("state_dir from $STATE_DIRECTORY", cfg->state_dir,
	    "/state/one");
	CHECK_STR("socket from $RUNTIME_DIRECTORY", cfg->socket_path,
	    "/run/tokend-rt/tokend.sock");
	CHECK_I64("default log_level", cfg->log_level, LOG_LEVEL_INFO);
	CHECK_I64("default max_requests", cfg->max_requests, 64);
	CHECK_I64("default max_requests_per_host",
	    cfg->max_requests_per_host, 4);
	diag_clear(&d);
	config_free(cfg);
	unsetenv("STATE_DIRECTORY");
	unsetenv("RUNTIME_DIRECTORY");

	memset(&d, 0, sizeof d);
	cfg = config_load(global, acc, &d);
	assert_non_null(cfg);
	CHECK_STR("default state_dir", cfg->state_dir, DEFAULT_STATE_DIR);
	CHECK_STR("default socket", cfg->socket_path, DEFAULT_SOCKET);
	diag_clear(&d);
	config_free(cfg);

	test_config_load_configuration_directory(dir);
	free(global);
	free(acc);
}

struct global_error_case {
	const char	*name;
	const char	*content;
	int		 line;
	const char	*msg;
};

static const struct global_error_case global_error_cases[] = {
	{ "unknown global key", "[tokend]\nlog_level = info\nbogus = 1\n", 3,
	    "unknown key 'bogus' in [tokend]" },
	{ "unknown global section", "[tokend]\n[daemon]\nx = 1\n", 2,
	    "unknown section [daemon]" },
	{ "duplicate global key",
	    "[tokend]\nmax_requests = 1\nmax_requests = 2\n", 3,
	    "duplicate key 'max_requests' (first at line 2)" },
	{ "bad log_level", "[tokend]\nlog_level = loud\n", 2,
	    "log_level: expected error, warning, info or debug" },
	{ "max_requests 0", "[tokend]\n\nmax_requests = 0\n", 3,
	    "max_requests: expected a number from 1 to 100000" },
	{ "max_requests_per_host junk",
	    "[tokend]\nmax_requests_per_host = 4x\n", 2,
	    "max_requests_per_host: expected a number" },
	{ "relative state_dir", "[tokend]\nstate_dir = var/lib\n", 2,
	    "state_dir must be an absolute path" },
	{ "global syntax error", "[tokend]\nlog_level\n", 2,
	    "expected 'key = value'" },
};

static void
test_config_load_errors(void **state)
{
	const struct global_error_case	*c;
	const char			*dir = *state;
	struct config			*cfg;
	struct diag			 d;
	char				*acc, *global, *want, *missing;
	size_t				 i;

	acc = path_in(dir, "accounts.d");
	assert_int_equal(mkdir(acc, 0700), 0);
	free(put_file(acc, "ok.conf", "[account]\n" URL_ID, 0600));
	for (i = 0; i < sizeof global_error_cases /
	    sizeof global_error_cases[0]; i++) {
		c = &global_error_cases[i];
		global = put_file(dir, "tokend.conf", c->content, 0644);
		memset(&d, 0, sizeof d);
		cfg = config_load(global, acc, &d);
		if (asprintf(&want, "%s:%d: %s", global, c->line, c->msg) == -1)
			fail_msg("asprintf");
		if (cfg != NULL || d.nerrors != 1 ||
		    strncmp(d.errors[0], want, strlen(want)) != 0) {
			dump_diag(c->name, &d);
			fail_msg("%s: expected exactly one error starting "
			    "'%s'", c->name, want);
		}
		free(want);
		diag_clear(&d);
		free(global);
	}

	/* a missing accounts folder */
	global = put_file(dir, "tokend.conf", "[tokend]\n", 0644);
	missing = path_in(dir, "no-such-folder");
	memset(&d, 0, sizeof d);
	assert_null(config_load(global, missing, &d));
	assert_int_equal(d.nerrors, 1);
	if (asprintf(&want, "%s: cannot read accounts folder", missing) == -1)
		fail_msg("asprintf");
	CHECK_I64("missing folder", strncmp(d.errors[0], want, strlen(want)),
	    0);
	free(want);
	diag_clear(&d);

	/* a global file named with -c must exist */
	free(global);
	global = path_in(dir, "absent.conf");
	memset(&d, 0, sizeof d);
	assert_null(config_load(global, acc, &d));
	assert_int_equal(d.nerrors, 1);
	if (asprintf(&want, "%s: cannot read", global) == -1)
		fail_msg("asprintf");
	CHECK_I64("absent global", strncmp(d.errors[0], want, strlen(want)),
	    0);
	free(want);
	diag_clear(&d);

	/* one broken account fails the whole load, and says where */
	free(global);
	global = put_file(dir, "tokend.conf", "[tokend]\n", 0644);
	free(put_file(acc, "broken.conf", "[account]\n" URL_ID "x = 1\n",
	    0600));
	memset(&d, 0, sizeof d);
	assert_null(config_load(global, acc, &d));
	assert_int_equal(d.nerrors, 1);
	if (asprintf(&want, "%s/broken.conf:4: unknown key 'x'", acc) == -1)
		fail_msg("asprintf");
	CHECK_I64("broken account", strncmp(d.errors[0], want, strlen(want)),
	    0);
	free(want);
	diag_clear(&d);

	free(missing);
	free(global);
	free(acc);
}

/* ---- the key table: choices, ranges, empty values, defaults ---- */

/* Load an account file that must fail with exactly this one message. */
static void
load_one_error(const char *dir, const char *what, const char *content,
    int line, const char *msg)
{
	struct account_conf	*ac;
	struct diag		 d;
	char			*path, *want;

	path = put_file(dir, "one.conf", content, 0600);
	memset(&d, 0, sizeof d);
	ac = config_account_load(path, "one", &d);
	if (asprintf(&want, "%s:%d: %s", path, line, msg) == -1)
		fail_msg("asprintf");
	if (ac != NULL || d.nerrors != 1 || strcmp(d.errors[0], want) != 0) {
		dump_diag(what, &d);
		fail_msg("%s: expected exactly the error '%s'", what, want);
	}
	free(want);
	diag_clear(&d);
	free(path);
}

/* redirect_uri: a loopback IP literal over http, a port, a path */
static void
test_account_redirect_uri(void **state)
{
	static const char *const bad[] = {
		"http://localhost:8976/callback",	/* RFC 8252 8.3 */
		"https://127.0.0.1:8976/callback",
		"http://127.0.0.1:8976",
		"http://127.0.0.1/callback",
		"http://[::1]:65536/cb",
		"http://127.0.0.2:80/cb",
		"http://127.0.0.1:80/cb?x=1",
		"http://127.0.0.1:-1/cb",
	};
	const char	*dir = *state;
	char		*content;
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (asprintf(&content, CODE_ISSUER "redirect_uri = %s\n",
		    bad[i]) == -1)
			fail_msg("asprintf");
		load_one_error(dir, bad[i], content, 5, "redirect_uri: "
		    "expected http://127.0.0.1:PORT/PATH or "
		    "http://[::1]:PORT/PATH (a loopback address, RFC 8252 7.3; "
		    "PORT 0: any free port)");
		free(content);
	}
}

/*
 * Load a global file into *cfg, with dir/accounts.d (which holds a valid
 * account) as -A unless the file is to name it.
 */
static void
global_load(const char *dir, const char *content, int dash_a,
    struct config **cfg, struct diag *d)
{
	char	*acc, *global;

	acc = path_in(dir, "accounts.d");
	mkdir(acc, 0700);
	free(put_file(acc, "ok.conf", "[account]\n" URL_ID, 0600));
	global = put_file(dir, "tokend.conf", content, 0644);
	memset(d, 0, sizeof *d);
	*cfg = config_load(global, dash_a ? acc : NULL, d);
	free(global);
	free(acc);
}

/* Every choice of every choice key is taken, as its enum value. */
static void
test_table_choices(void **state)
{
#define FILE_T	"[account]\n" URL_ID "[file]\npath = /x\n"
#define AUTH_T	"[account]\n" URL "client_id = a\n" \
	    "client_secret_file = t\n"
	static const struct {
		const char	*before;	/* then "key = value" */
		const char	*key;
		const char	*value;
		const char	*after;
		int		 want;
	} cases[] = {
		{ "[account]\n", "grant", "client_credentials", URL_ID,
		    GRANT_CLIENT_CREDENTIALS },
		{ "[account]\n", "grant", "password",
		    URL "username = u\npassword_file = t\n", GRANT_PASSWORD },
		{ "[account]\n", "grant", "refresh_token",
		    URL "refresh_token_file = t\n", GRANT_REFRESH_TOKEN },
		{ "[account]\n", "grant", "static", "token_file = t\n",
		    GRANT_STATIC },
		{ AUTH_T, "client_auth", "basic", "", CLIENT_AUTH_BASIC },
		{ AUTH_T, "client_auth", "post", "", CLIENT_AUTH_POST },
		{ AUTH_T, "client_auth", "none", "", CLIENT_AUTH_NONE },
		{ FILE_T, "format", "raw", "", SINK_RAW },
		{ FILE_T, "format", "json", "", SINK_JSON },
		{ FILE_T, "format", "env", "", SINK_ENV },
		{ FILE_T, "format", "header", "", SINK_HEADER },
		{ "[tokend]\n", "log_level", "error", "", LOG_LEVEL_ERROR },
		{ "[tokend]\n", "log_level", "warning", "", LOG_LEVEL_WARNING },
		{ "[tokend]\n", "log_level", "info", "", LOG_LEVEL_INFO },
		{ "[tokend]\n", "log_level", "debug", "", LOG_LEVEL_DEBUG },
	};
#undef FILE_T
#undef AUTH_T
	const char		*dir = *state;
	struct account_conf	*ac;
	struct config		*cfg;
	struct diag		 d;
	char			*content, what[64];
	size_t			 i;
	int			 got;

	free(put_file(dir, "t", "tok\n", 0600));
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "%s = %s", cases[i].key,
		    cases[i].value);
		if (asprintf(&content, "%s%s = %s\n%s", cases[i].before,
		    cases[i].key, cases[i].value, cases[i].after) == -1)
			fail_msg("asprintf");
		if (!strcmp(cases[i].key, "log_level")) {
			global_load(dir, content, 1, &cfg, &d);
			if (cfg == NULL) {
				dump_diag(what, &d);
				fail_msg("%s: not loaded", what);
			}
			got = cfg->log_level;
			config_free(cfg);
			diag_clear(&d);
		} else {
			ac = load_ok(dir, "choice", content);
			if (!strcmp(cases[i].key, "grant"))
				got = ac->grant;
			else if (!strcmp(cases[i].key, "client_auth"))
				got = ac->client_auth;
			else
				got = ac->sinks[0].format;
			config_account_free(ac);
		}
		CHECK_I64(what, got, cases[i].want);
		free(content);
	}
}

/* A wrong choice is refused with a message that lists them all. */
static void
test_table_bad_choices(void **state)
{
	static const struct {
		const char	*content;
		int		 line;
		const char	*msg;
	} cases[] = {
		{ "[account]\n" URL_ID "grant = implicit\n", 4,
		    "unknown grant 'implicit' (client_credentials, password, "
		    "refresh_token, static, device_code, authorization_code or "
		    "jwt_bearer)" },
		{ "[account]\n" URL_ID "grant = Static\n", 4,
		    "unknown grant 'Static' (client_credentials, password, "
		    "refresh_token, static, device_code, authorization_code or "
		    "jwt_bearer)" },
		{ "[account]\n" URL "client_id = a\nclient_secret_file = t\n"
		    "client_auth = jwt\n", 5,
		    "unknown client_auth 'jwt' (basic, post, none, "
		    "private_key_jwt, client_secret_jwt, tls_client_auth or "
		    "self_signed_tls_client_auth)" },
		{ "[account]\n" URL_ID "[file]\npath = /x\nformat = yaml\n",
		    6,
		    "unknown format 'yaml' (raw, json, env or header)" },
	};
	const char	*dir = *state;
	struct config	*cfg;
	struct diag	 d;
	char		*want;
	size_t		 i;

	free(put_file(dir, "t", "tok\n", 0600));
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		load_one_error(dir, cases[i].msg, cases[i].content,
		    cases[i].line, cases[i].msg);

	/* the global file's message names no value */
	global_load(dir, "[tokend]\nlog_level = Info\n", 1, &cfg, &d);
	assert_null(cfg);
	assert_int_equal(d.nerrors, 1);
	if (asprintf(&want, "%s/tokend.conf:2: log_level: expected error, "
	    "warning, info or debug", dir) == -1)
		fail_msg("asprintf");
	CHECK_STR("log_level = Info", d.errors[0], want);
	free(want);
	diag_clear(&d);
}

/* The ends of each range are in it; just outside is refused. */
static void
test_table_ranges(void **state)
{
	static const struct {
		const char	*line;
		const char	*msg;		/* NULL: taken */
		double		 want;
	} cases[] = {
		{ "ratio = 0.01", NULL, 0.01 },
		{ "ratio = 1", NULL, 1 },
		{ "ratio = 0.009", "ratio: expected a number from 0.01 to 1, "
		    "not '0.009'", 0 },
		{ "ratio = 1.01", "ratio: expected a number from 0.01 to 1, "
		    "not '1.01'", 0 },
		{ "jitter = 0", NULL, 0 },
		{ "jitter = 0.5", NULL, 0.5 },
		{ "jitter = -0.01", "jitter: expected a number from 0 to 0.5, "
		    "not '-0.01'", 0 },
		{ "jitter = 0.51", "jitter: expected a number from 0 to 0.5, "
		    "not '0.51'", 0 },
		{ "max_requests = 1", NULL, 1 },
		{ "max_requests = 100000", NULL, 100000 },
		{ "max_requests = 0", "max_requests: expected a number from 1 "
		    "to 100000", 0 },
		{ "max_requests = 100001", "max_requests: expected a number "
		    "from 1 to 100000", 0 },
		{ "max_requests_per_host = 1", NULL, 1 },
		{ "max_requests_per_host = 100000", NULL, 100000 },
		{ "max_requests_per_host = 0", "max_requests_per_host: "
		    "expected a number from 1 to 100000", 0 },
		{ "max_requests_per_host = 100001", "max_requests_per_host: "
		    "expected a number from 1 to 100000", 0 },
	};
	const char		*dir = *state;
	struct account_conf	*ac;
	struct config		*cfg;
	struct diag		 d;
	char			*content, *want;
	size_t			 i;
	double			 got;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (!strncmp(cases[i].line, "max_requests", 12)) {
			if (asprintf(&content, "[tokend]\n%s\n",
			    cases[i].line) == -1)
				fail_msg("asprintf");
			global_load(dir, content, 1, &cfg, &d);
			if (cases[i].msg == NULL) {
				if (cfg == NULL) {
					dump_diag(cases[i].line, &d);
					fail_msg("%s: refused", cases[i].line);
				}
				got = strstr(cases[i].line, "per_host") ?
				    cfg->max_requests_per_host :
				    cfg->max_requests;
				assert_true(got == cases[i].want);
			} else {
				if (asprintf(&want, "%s/tokend.conf:2: %s", dir,
				    cases[i].msg) == -1)
					fail_msg("asprintf");
				assert_null(cfg);
				assert_int_equal(d.nerrors, 1);
				CHECK_STR(cases[i].line, d.errors[0], want);
				free(want);
			}
			config_free(cfg);
			diag_clear(&d);
		} else {
			if (asprintf(&content, "[account]\n" URL_ID "[refresh]\n"
			    "%s\n", cases[i].line) == -1)
				fail_msg("asprintf");
			if (cases[i].msg != NULL)
				load_one_error(dir, cases[i].line, content, 5,
				    cases[i].msg);
			else {
				ac = load_ok(dir, "range", content);
				got = cases[i].line[0] == 'r' ?
				    ac->refresh.ratio : ac->refresh.jitter;
				config_account_free(ac);
				assert_true(got == cases[i].want);
			}
		}
		free(content);
	}
}

/*
 * Every duration key takes up to ten years and refuses more, naming the
 * key and the bound. (Regression: min_backoff = 60000000000d overflowed
 * the backoff doubling, and the negative deadline stopped every timer.)
 */
static void
test_table_duration_bound(void **state)
{
	static const struct {
		const char	*section, *key;
		size_t		 offset;
	} keys[] = {
		{ "account", "timeout", offsetof(struct account_conf, timeout) },
		{ "response", "default_lifetime",
		    offsetof(struct account_conf, response.default_lifetime) },
		{ "refresh", "margin",
		    offsetof(struct account_conf, refresh.margin) },
		{ "refresh", "min_backoff",
		    offsetof(struct account_conf, refresh.min_backoff) },
		{ "refresh", "max_backoff",
		    offsetof(struct account_conf, refresh.max_backoff) },
	};
	static const char *const too_long[] = {
		"3661d", "316224001", "60000000000d",
		"99999999999999999999999999999d",
	};
	const char		*dir = *state, *head;
	struct account_conf	*ac;
	char			*content, *msg;
	size_t			 i, j;

	for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		/* ten years is taken (max_backoff too, or min_backoff's
		 * check against it would speak) */
		head = strcmp(keys[i].section, "account") ? keys[i].section :
		    NULL;
		if (asprintf(&content, "[account]\n" URL_ID "%s%s%s%s = 3660d\n"
		    "%s", head ? "[" : "", head ? head : "", head ? "]\n" : "",
		    keys[i].key, strcmp(keys[i].key, "min_backoff") ? "" :
		    "max_backoff = 3660d\n") == -1)
			fail_msg("asprintf");
		/* a ten-year margin is cut, and says so */
		ac = load_warned(dir, "bound", content, strcmp(keys[i].key,
		    "margin") ? NULL : "more than half of default_lifetime");
		CHECK_I64(keys[i].key, *(int64_t *)((char *)ac +
		    keys[i].offset), DURATION_MAX_MS);
		config_account_free(ac);
		free(content);
		for (j = 0; j < sizeof too_long / sizeof too_long[0]; j++) {
			if (asprintf(&content, "[account]\n" URL_ID "%s%s%s"
			    "%s = %s\n", head ? "[" : "", head ? head : "",
			    head ? "]\n" : "", keys[i].key,
			    too_long[j]) == -1 || asprintf(&msg, "%s: duration "
			    "'%s' is longer than 10 years (3660d), the most a "
			    "duration may be", keys[i].key, too_long[j]) == -1)
				fail_msg("asprintf");
			load_one_error(dir, keys[i].key, content,
			    head == NULL ? 4 : 5, msg);
			free(msg);
			free(content);
		}
	}
}

/* Keys with no empty default refuse an empty value; the others keep it. */
static void
test_table_empty_values(void **state)
{
	static const struct {
		const char	*section;
		const char	*key;
		int		 needs_value;
	} cases[] = {
		{ "account", "grant", 1 },
		{ "account", "client_auth", 1 },
		{ "account", "timeout", 1 },
		{ "account", "allow_http", 1 },
		{ "account", "refresh_url", 0 },
		{ "account", "client_id", 0 },
		{ "account", "client_secret", 0 },
		{ "account", "client_secret_file", 0 },
		{ "account", "ca_file", 0 },
		{ "response", "default_lifetime", 1 },
		{ "response", "expires_in", 0 },
		{ "refresh", "margin", 1 },
		{ "refresh", "ratio", 1 },
		{ "refresh", "jitter", 1 },
		{ "refresh", "min_backoff", 1 },
		{ "refresh", "max_backoff", 1 },
		{ "file", "format", 1 },
		{ "file", "mode", 1 },
		{ "file", "owner", 0 },
		{ "file", "group", 0 },
		{ "access", "users", 0 },
		{ "access", "groups", 0 },
		{ "hooks", "on_refresh", 0 },
	};
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*content, *msg;
	size_t			 i;
	int			 line, rc;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (!strcmp(cases[i].key, "client_id")) {
			/* a grant that can do without one */
			rc = asprintf(&content, "[account]\n" URL "grant = "
			    "password\nusername = u\npassword = p\n%s =\n",
			    cases[i].key);
			line = 6;
		} else if (!strcmp(cases[i].section, "account")) {
			rc = asprintf(&content, "[account]\n" URL_ID "%s =\n",
			    cases[i].key);
			line = 4;
		} else if (!strcmp(cases[i].section, "file")) {
			rc = asprintf(&content, "[account]\n" URL_ID "[file]\n"
			    "path = /x\n%s =\n", cases[i].key);
			line = 6;
		} else {
			rc = asprintf(&content, "[account]\n" URL_ID "[%s]\n"
			    "%s =\n", cases[i].section, cases[i].key);
			line = 5;
		}
		if (rc == -1)
			fail_msg("asprintf");
		if (cases[i].needs_value) {
			if (asprintf(&msg, "%s needs a value",
			    cases[i].key) == -1)
				fail_msg("asprintf");
			load_one_error(dir, msg, content, line, msg);
			free(msg);
		} else {
			ac = load_ok(dir, "empty", content);
			config_account_free(ac);
		}
		free(content);
	}
}

/* Every key of the global file, set and then empty (the default). */
static void
test_table_global_every_key(void **state)
{
	static const struct {
		const char	*key;
		const char	*value;
	} keys[] = {
		{ "accounts_dir", NULL },	/* dir/accounts.d */
		{ "state_dir", "/srv/tokend/state" },
		{ "socket", "/srv/tokend/t.sock" },
		{ "log_level", "warning" },
		{ "max_requests", "100" },
		{ "max_requests_per_host", "7" },
	};
	const char	*dir = *state;
	struct config	*cfg;
	struct diag	 d;
	char		*set = NULL, *empty = NULL, *next, *acc;
	size_t		 i;

	acc = path_in(dir, "accounts.d");

	for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (asprintf(&next, "%s%s = %s\n", set ? set : "[tokend]\n",
		    keys[i].key, keys[i].value ? keys[i].value : acc) == -1)
			fail_msg("asprintf");
		free(set);
		set = next;
		if (asprintf(&next, "%s%s =\n", empty ? empty : "[tokend]\n",
		    keys[i].key) == -1)
			fail_msg("asprintf");
		free(empty);
		empty = next;
	}

	global_load(dir, set, 0, &cfg, &d);
	if (cfg == NULL || d.nerrors != 0 || d.nwarnings != 0) {
		dump_diag("every key", &d);
		fail_msg("a global file with every key set: not loaded");
	}
	CHECK_STR("accounts_dir", cfg->accounts_dir, acc);
	CHECK_I64("accounts", cfg->naccounts, 1);
	CHECK_STR("state_dir", cfg->state_dir, "/srv/tokend/state");
	CHECK_STR("socket", cfg->socket_path, "/srv/tokend/t.sock");
	CHECK_I64("log_level", cfg->log_level, LOG_LEVEL_WARNING);
	CHECK_I64("max_requests", cfg->max_requests, 100);
	CHECK_I64("max_requests_per_host", cfg->max_requests_per_host, 7);
	config_free(cfg);
	diag_clear(&d);

	global_load(dir, empty, 1, &cfg, &d);
	if (cfg == NULL || d.nerrors != 0 || d.nwarnings != 0) {
		dump_diag("every key empty", &d);
		fail_msg("a global file with every key empty: not loaded");
	}
	CHECK_STR("empty state_dir", cfg->state_dir, "/var/lib/tokend");
	CHECK_STR("empty socket", cfg->socket_path, "/run/tokend/tokend.sock");
	CHECK_I64("empty log_level", cfg->log_level, LOG_LEVEL_INFO);
	CHECK_I64("empty max_requests", cfg->max_requests, 64);
	CHECK_I64("empty max_requests_per_host", cfg->max_requests_per_host,
	    4);
	config_free(cfg);
	diag_clear(&d);
	free(set);
	free(empty);
	free(acc);
}

/* The defaults are the documented values (tokend.conf(5)). */
static void
test_table_defaults(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	struct config		*cfg;
	struct diag		 d;
	char			*global;

	ac = load_ok(dir, "defaults", "[account]\n" URL_ID "[file]\npath = /x\n");
	CHECK_I64("grant", ac->grant, GRANT_CLIENT_CREDENTIALS);
	CHECK_I64("client_auth without a secret", ac->client_auth,
	    CLIENT_AUTH_NONE);
	CHECK_I64("timeout", ac->timeout, 30 * SEC);
	CHECK_I64("allow_http", ac->allow_http, 0);
	CHECK_STR("access_token", ac->response.access_token, "/access_token");
	CHECK_STR("refresh_token", ac->response.refresh_token,
	    "/refresh_token");
	CHECK_STR("expires_in", ac->response.expires_in, "/expires_in");
	CHECK_STR("expires_at", ac->response.expires_at, NULL);
	CHECK_STR("token_type", ac->response.token_type, "/token_type");
	CHECK_I64("default_lifetime", ac->response.default_lifetime,
	    3600 * SEC);
	CHECK_I64("margin", ac->refresh.margin, 5 * 60 * SEC);
	assert_true(ac->refresh.ratio == 0.75);
	assert_true(ac->refresh.jitter == 0.1);
	CHECK_I64("min_backoff", ac->refresh.min_backoff, 1 * SEC);
	CHECK_I64("max_backoff", ac->refresh.max_backoff, 5 * 60 * SEC);
	CHECK_I64("[file] format", ac->sinks[0].format, SINK_RAW);
	CHECK_I64("[file] mode", ac->sinks[0].mode, 0640);
	CHECK_I64("[file] owner", ac->sinks[0].uid, (uid_t)-1);
	CHECK_I64("[file] group", ac->sinks[0].gid, (gid_t)-1);
	assert_null(ac->on_refresh);
	assert_null(ac->on_failure);
	CHECK_I64("users", ac->nusers, 0);
	CHECK_I64("groups", ac->ngroups, 0);
	config_account_free(ac);

	global_load(dir, "", 1, &cfg, &d);
	assert_non_null(cfg);
	CHECK_STR("state_dir", cfg->state_dir, "/var/lib/tokend");
	CHECK_STR("socket", cfg->socket_path, "/run/tokend/tokend.sock");
	CHECK_I64("log_level", cfg->log_level, LOG_LEVEL_INFO);
	CHECK_I64("max_requests", cfg->max_requests, 64);
	CHECK_I64("max_requests_per_host", cfg->max_requests_per_host, 4);
	config_free(cfg);
	diag_clear(&d);

	/*
	 * accounts_dir: without -A, config_load reads the default folder,
	 * which names itself when it is missing.
	 */
	global = put_file(dir, "plain.conf", "", 0644);
	memset(&d, 0, sizeof d);
	cfg = config_load(global, NULL, &d);
	if (cfg != NULL)
		CHECK_STR("accounts_dir", cfg->accounts_dir,
		    "/etc/tokend/accounts.d");
	else {
		assert_int_equal(d.nerrors >= 1, 1);
		CHECK_I64("accounts_dir", strncmp(d.errors[0],
		    "/etc/tokend/accounts.d", 22), 0);
	}
	config_free(cfg);
	diag_clear(&d);
	free(global);
}

/* ---- issue 11: what --check used to let through ---- */

/* A self-signed P-256 certificate (openssl req -x509), valid to 2126. */
static const char test_cert[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBjjCCATOgAwIBAgIUTzK/BD0+a1H7lagWOucaF14FDQ4wCgYIKoZIzj0EAwIw\n"
	"GzEZMBcGA1UEAwwQdG9rZW5kIHVuaXQgdGVzdDAgFw0yNjEyMDIwNTU5MTBaGA8y\n"
	"MTI2MTEwODA1NTkxMFowGzEZMBcGA1UEAwwQdG9rZW5kIHVuaXQgdGVzdDBZMBMG\n"
	"ByqGSM49AgEGCCqGSM49AwEHA0IABKEokBKEsMTNhYs+TSKcZGQDuZ2AD+H0RYpS\n"
	"EDUUpVpefIQMgH8rV7zK9QT/CSedTnlRML2KhN1YMQbNl0orDCGjUzBRMB0GA1Ud\n"
	"DgQWBBQPAUk9D/1GKgVY4H3CkAfqZ9RNmzAfBgNVHSMEGDAWgBQPAUk9D/1GKgVY\n"
	"4H3CkAfqZ9RNmzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCY\n"
	"nFEcpnmuLaJ3JuhTbviW0ck0qspWqfD2MO+nfvUxKAIhALSHyyjd6xBysOHoluLj\n"
	"3xi0JxrFqgzTKKczP8ol2VRL\n"
	"-----END CERTIFICATE-----\n";

/* The rule the schedule applies, which --check states. */
static void
test_margin_is_cut(void **state)
{
	static const struct {
		int64_t		 margin, lifetime;
		double		 ratio;
		int		 ratio_given, want;
	} cases[] = {
		{ 300 * SEC, 3600 * SEC, 0.75, 0, 0 },	/* the defaults */
		{ 300 * SEC, 600 * SEC, 0.75, 0, 0 },	/* exactly half */
		{ 300 * SEC, 599 * SEC, 0.75, 0, 1 },
		{ 300 * SEC, 300 * SEC, 0.75, 0, 1 },	/* Keycloak's 5m */
		{ 300 * SEC, 120 * SEC, 0.75, 1, 1 },	/* ratio >= 0.5 set */
		{ 300 * SEC, 120 * SEC, 0.5, 1, 1 },
		{ 300 * SEC, 120 * SEC, 0.4, 1, 0 },	/* asked for it */
		{ 300 * SEC, 120 * SEC, 0.4, 0, 1 },	/* not set: a default */
		{ 0, 2 * SEC, 0.75, 0, 0 },
		{ 300 * SEC, 0, 0.75, 0, 0 },		/* never expires */
	};
	struct refresh_conf	 rc;
	size_t			 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&rc, 0, sizeof rc);
		rc.margin = cases[i].margin;
		rc.ratio = cases[i].ratio;
		if (config_margin_is_cut(&rc, cases[i].lifetime,
		    cases[i].ratio_given) != cases[i].want)
			fail_msg("case %zu: margin %lld, lifetime %lld, ratio "
			    "%g (%s): expected %s", i,
			    (long long)cases[i].margin,
			    (long long)cases[i].lifetime, cases[i].ratio,
			    cases[i].ratio_given ? "set" : "default",
			    cases[i].want ? "cut" : "not cut");
	}
}

/* Warnings that --check prints, each at the line to change. */
static void
test_account_warnings(void **state)
{
	static const struct {
		const char	*content;
		const char	*want;	/* after "FILE:"; NULL: none */
	} cases[] = {
		{ "[account]\n" URL_ID "[response]\ndefault_lifetime = 8m\n"
		    "[refresh]\nmargin = 5m\n",
		    "7: warning: margin 5m is more than half of "
		    "default_lifetime 8m; tokens that come without a lifetime "
		    "will be refreshed after half their lifetime" },
		/* the default margin, cut by a lifetime that was set */
		{ "[account]\n" URL_ID "[response]\nexpires_in =\n"
		    "default_lifetime = 300\n",
		    "6: warning: margin 5m is more than half of "
		    "default_lifetime 5m; tokens will be refreshed after half "
		    "their lifetime" },
		{ "[account]\n" URL_ID "[response]\ndefault_lifetime = 90s\n"
		    "[refresh]\nratio = 0.9\nmargin = 1m\n",
		    "8: warning: margin 1m is more than half of "
		    "default_lifetime 90s; tokens that come without a lifetime "
		    "will be refreshed after half their lifetime" },
		/* ratio below 0.5 asks for early refreshes: nothing is cut */
		{ "[account]\n" URL_ID "[response]\ndefault_lifetime = 8m\n"
		    "[refresh]\nmargin = 5m\nratio = 0.4\njitter = 0.1\n", NULL },
		{ "[account]\n" URL_ID "[access]\nusers = 0 no-such-user-xyz\n",
		    "5: warning: unknown user 'no-such-user-xyz': it is given "
		    "no access until it exists (then reload)" },
		{ "[account]\n" URL_ID "[access]\n"
		    "groups = 0, no-such-group-xyz\n",
		    "5: warning: unknown group 'no-such-group-xyz': it is given "
		    "no access until it exists (then reload)" },
		/* basic_encoding's warning points at the value that needs it */
		{ "[account]\n" URL "\nclient_id = a b\nclient_secret = s\n",
		    "4: warning: client_id holds characters that HTTP Basic "
		    "sends percent-encoded" },
		{ "[account]\n" URL "client_id = a\n\nclient_secret = s:t\n",
		    "5: warning: the client secret holds characters that HTTP "
		    "Basic sends percent-encoded" },
	};
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*want;
	size_t			 i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		/* the one warning, from FILE: on */
		if (cases[i].want != NULL && asprintf(&want, "/warn.conf:%s",
		    cases[i].want) == -1)
			fail_msg("asprintf");
		ac = load_warned(dir, "warn", cases[i].content,
		    cases[i].want != NULL ? want : NULL);
		config_account_free(ac);
		if (cases[i].want != NULL)
			free(want);
	}
	/* an unknown user grants nothing, a known one still counts */
	ac = load_warned(dir, "acl", "[account]\n" URL_ID "[access]\n"
	    "users = no-such-user-xyz 4711\n", "unknown user");
	CHECK_I64("nusers", ac->nusers, 1);
	CHECK_I64("users[0]", ac->users[0], 4711);
	config_account_free(ac);
	ac = load_warned(dir, "acl", "[account]\n" URL_ID "[access]\n"
	    "groups = no-such-group-xyz\n", "unknown group");
	CHECK_I64("ngroups", ac->ngroups, 0);
	config_account_free(ac);
}

/* tmpl with each "%s" replaced by dir. */
static char *
with_dir(const char *tmpl, const char *dir)
{
	char		*out, *w;
	const char	*p;
	size_t		 n = 1;

	for (p = tmpl; *p != '\0'; p++)
		n += p[0] == '%' && p[1] == 's' ? strlen(dir) : 1;
	if ((w = out = malloc(n)) == NULL)
		fail_msg("malloc");
	for (p = tmpl; *p != '\0'; p++) {
		if (p[0] == '%' && p[1] == 's') {
			w = stpcpy(w, dir);
			p++;
		} else
			*w++ = *p;
	}
	*w = '\0';
	return out;
}

/* Errors that used to show only at run time. */
static void
test_account_run_time_errors(void **state)
{
	static const struct {
		const char	*name;
		const char	*content;	/* %s: the test's folder */
		int		 line;
		const char	*msg;		/* %s: the test's folder */
	} cases[] = {
		{ "client_credentials without client_id",
		    "[account]\ngrant = client_credentials\n" URL,
		    2, "grant = client_credentials needs client_id" },
		{ "the default grant without client_id",
		    "[account]\n" URL "scope = x\n",
		    1, "grant = client_credentials needs client_id" },
		{ "ca_file that is not PEM",
		    "[account]\n" URL_ID "ca_file = %s/notpem\n",
		    4, "ca_file: %s/notpem holds no PEM certificate "
		    "(-----BEGIN CERTIFICATE-----)" },
		{ "ca_file with a key only",
		    "[account]\n" URL_ID "ca_file = key.pem\n",
		    4, "ca_file: %s/key.pem holds no PEM certificate "
		    "(-----BEGIN CERTIFICATE-----)" },
		{ "ca_file with a broken certificate",
		    "[account]\n" URL_ID "ca_file = broken.pem\n",
		    4, "ca_file: %s/broken.pem holds a PEM block that is not a "
		    "valid certificate" },
		{ "ca_file that is empty",
		    "[account]\n" URL_ID "ca_file = empty.pem\n",
		    4, "ca_file: %s/empty.pem holds no PEM certificate "
		    "(-----BEGIN CERTIFICATE-----)" },
		{ "ca_file that is missing",
		    "[account]\n" URL_ID "ca_file = gone.pem\n",
		    4, "ca_file: cannot read %s/gone.pem: No such file or "
		    "directory" },
		{ "ca_file that is a folder",
		    "[account]\n" URL_ID "ca_file = %s\n",
		    4, "ca_file: cannot read %s: Is a directory" },
		{ "on_refresh that is missing",
		    "[account]\n" URL_ID "[hooks]\n"
		    "on_refresh = %s/gone --flag\n",
		    5, "on_refresh: cannot run %s/gone: No such file or "
		    "directory" },
		{ "on_failure that is a folder",
		    "[account]\n" URL_ID "[hooks]\n\non_failure = %s\n",
		    6, "on_failure: cannot run %s: not a regular file" },
		{ "on_failure that is not executable",
		    "[account]\n" URL_ID "[hooks]\non_failure = %s/notpem\n",
		    5, "on_failure: cannot run %s/notpem: not executable" },
	};
	const char	*dir = *state;
	char		*content, *msg, *bad;
	size_t		 i;

	free(put_file(dir, "notpem", "just text\n", 0644));
	free(put_file(dir, "empty.pem", "", 0644));
	free(put_file(dir, "key.pem", "-----BEGIN PRIVATE KEY-----\n"
	    "MC4CAQAwBQYDK2VwBCIEIBx9ZGNAyK1QxkZBYVh1bHZVZb2h/wfxZX2SVR9XPeVZ\n"
	    "-----END PRIVATE KEY-----\n", 0600));
	/* a good certificate, then one with its body cut short */
	if (asprintf(&bad, "%s-----BEGIN CERTIFICATE-----\nMIIBjjCCATOg\n"
	    "-----END CERTIFICATE-----\n", test_cert) == -1)
		fail_msg("asprintf");
	free(put_file(dir, "broken.pem", bad, 0644));
	free(bad);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		content = with_dir(cases[i].content, dir);
		msg = with_dir(cases[i].msg, dir);
		load_one_error(dir, cases[i].name, content, cases[i].line, msg);
		free(content);
		free(msg);
	}
}

/* A good ca_file, and hooks that can run, pass. */
static void
test_account_run_time_ok(void **state)
{
	const char		*dir = *state;
	struct account_conf	*ac;
	char			*bundle, *content, *msg;

	if (asprintf(&bundle, "# a comment\n%s\n%s", test_cert,
	    test_cert) == -1)
		fail_msg("asprintf");
	free(put_file(dir, "ca.pem", bundle, 0644));
	free(bundle);
	free(put_file(dir, "hook", "#!/bin/sh\nexit 0\n", 0755));
	if (asprintf(&content, "[account]\n" URL_ID "ca_file = ca.pem\n"
	    "[hooks]\non_refresh = %s/hook \"a b\"\non_failure = %s/hook\n",
	    dir, dir) == -1)
		fail_msg("asprintf");
	ac = load_ok(dir, "good", content);
	free(content);
	config_account_free(ac);

	/* good content is not parsed twice, but a change is seen */
	if (asprintf(&content, "[account]\n" URL_ID "ca_file = ca.pem\n") ==
	    -1)
		fail_msg("asprintf");
	config_account_free(load_ok(dir, "again", content));
	free(put_file(dir, "ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n"
	    "-----END CERTIFICATE-----\n", 0644));
	bundle = path_in(dir, "ca.pem");
	if (asprintf(&msg, "ca_file: %s holds a PEM block that is not a valid "
	    "certificate", bundle) == -1)
		fail_msg("asprintf");
	load_one_error(dir, "changed ca_file", content, 4, msg);
	free(msg);
	free(bundle);
	free(content);

	/*
	 * config_account_parse takes the text alone: a hook that is not on
	 * this machine is not its business (account tests stub hooks).
	 */
	{
		static const char text[] = "[account]\n" URL_ID "[hooks]\n"
		    "on_refresh = /nonexistent/hook\n";
		struct diag	 d;

		memset(&d, 0, sizeof d);
		ac = config_account_parse("/nonexistent/x.conf", "x", text,
		    sizeof text - 1, &d);
		assert_non_null(ac);
		CHECK_I64("errors", d.nerrors, 0);
		config_account_free(ac);
		diag_clear(&d);
	}
}

/*
 * A relative *_file from $CREDENTIALS_DIRECTORY that is missing: systemd
 * loads them only at start, so the message says to restart.
 */
static void
test_credentials_missing_at_reload(void **state)
{
	const char	*dir = *state;
	char		*creds, *msg;

	creds = path_in(dir, "creds");
	assert_int_equal(mkdir(creds, 0700), 0);
	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	if (asprintf(&msg, "client_secret_file: cannot read %s/x.secret: No "
	    "such file or directory (systemd loads LoadCredential= files only "
	    "when tokend starts: run systemctl restart tokend; tokens and "
	    "refresh tokens survive a restart)", creds) == -1)
		fail_msg("asprintf");
	load_one_error(dir, "missing credential", "[account]\n" URL_ID
	    "client_secret_file = x.secret\n", 4, msg);
	free(msg);
	/* an absolute path, or no credentials folder: no such advice */
	if (asprintf(&msg, "client_secret_file: cannot read %s/x.secret: No "
	    "such file or directory", dir) == -1)
		fail_msg("asprintf");
	unsetenv("CREDENTIALS_DIRECTORY");
	load_one_error(dir, "missing file", "[account]\n" URL_ID
	    "client_secret_file = x.secret\n", 4, msg);
	free(msg);
	free(creds);
}

/* config_load of accounts.d with these files; the diag in *d. */
static struct config *
accounts_load(const char *dir, const char *global, const char *const *files,
    struct diag *d)
{
	struct config	*cfg;
	char		*acc, *g, *name;
	size_t		 i;

	acc = path_in(dir, "accounts.d");
	mkdir(acc, 0700);
	for (i = 0; files[i] != NULL; i += 2) {
		if (asprintf(&name, "%s.conf", files[i]) == -1)
			fail_msg("asprintf");
		free(put_file(acc, name, files[i + 1], 0600));
		free(name);
	}
	g = put_file(dir, "tokend.conf", global, 0644);
	memset(d, 0, sizeof *d);
	cfg = config_load(g, acc, d);
	free(g);
	free(acc);
	return cfg;
}

/* d holds an error that is exactly want; fail (after freeing) if not. */
static void
want_error(struct diag *d, const char *want)
{
	size_t	 i;

	for (i = 0; i < d->nerrors; i++)
		if (!strcmp(d->errors[i], want))
			return;
	dump_diag("want", d);
	fail_msg("no error '%s'", want);
}

/* One writer per token file, one account per refresh token file. */
static void
test_config_shared_paths(void **state)
{
	const char	*dir = *state;
	struct config	*cfg;
	struct diag	 d;
	char		*a, *b, *c, *want, *out;

	out = path_in(dir, "out");
	assert_int_equal(mkdir(out, 0755), 0);
	if (asprintf(&a, "[account]\n" URL_ID "[file]\npath = %s/a.token\n"
	    "[file]\nformat = json\npath = %s/a.json\n[file]\nformat = env\n"
	    "path = %s/./a.token\n", out, out, out) == -1 ||
	    asprintf(&b, "[account]\n" URL_ID "[file]\npath = %s/a.json\n",
	    out) == -1 ||
	    asprintf(&c, "[account]\n" URL_ID "grant = refresh_token\n"
	    "refresh_token_file = ../rt\n") == -1)
		fail_msg("asprintf");
	{
		const char *const files[] = { "a", a, "b", b, "c", c, "d", c,
		    NULL };
		char	*rt = path_in(dir, "rt");

		free(put_file(dir, "rt", "first-refresh-token\n", 0600));
		cfg = accounts_load(dir, "", files, &d);
		assert_null(cfg);
		CHECK_I64("errors", d.nerrors, 3);
		if (asprintf(&want, "%s/accounts.d/a.conf:11: path %s/a.token "
		    "is written by the [file] at line 5 already", dir,
		    out) == -1)
			fail_msg("asprintf");
		want_error(&d, want);
		free(want);
		if (asprintf(&want, "%s/accounts.d/b.conf:5: path %s/a.json is "
		    "written by account a (%s/accounts.d/a.conf:8) already; two "
		    "accounts cannot share a token file", dir, out, dir) == -1)
			fail_msg("asprintf");
		want_error(&d, want);
		free(want);
		if (asprintf(&want, "%s/accounts.d/d.conf:5: refresh_token_file "
		    "%s is account c's too (%s/accounts.d/c.conf:5): each "
		    "refresh token is spent by the first account to use it, so "
		    "give each account its own", dir, rt, dir) == -1)
			fail_msg("asprintf");
		want_error(&d, want);
		free(want);
		free(rt);
		diag_clear(&d);
	}
	free(a);
	free(b);
	free(c);
	free(out);
}

/* A token file's folder that is missing or not writable: a warning. */
static void
test_config_file_folders(void **state)
{
	const char	*dir = *state;
	struct config	*cfg;
	struct diag	 d;
	char		*a, *ro, *state_dir, *global, *want;
	const char	*files[] = { "a", NULL, NULL };

	ro = path_in(dir, "ro");
	assert_int_equal(mkdir(ro, 0555), 0);
	if (asprintf(&a, "[account]\n" URL_ID "[file]\n"
	    "path = %s/missing/a.token\n[file]\npath = %s/a.token\n", dir,
	    ro) == -1)
		fail_msg("asprintf");
	files[1] = a;
	/*
	 * As root the folder is writable for this process: tokend's user is
	 * then the owner of a private state_dir, as with DynamicUser=.
	 */
	state_dir = path_in(dir, "state");
	assert_int_equal(mkdir(state_dir, 0700), 0);
	if (geteuid() == 0)
		assert_int_equal(chown(state_dir, 65534, 65534), 0);
	if (asprintf(&global, "[tokend]\nstate_dir = %s\n", state_dir) == -1)
		fail_msg("asprintf");
	cfg = accounts_load(dir, global, files, &d);
	if (cfg == NULL || d.nwarnings != 2) {
		dump_diag("folders", &d);
		fail_msg("expected a load with two warnings");
	}
	if (asprintf(&want, "%s/accounts.d/a.conf:5: warning: path "
	    "%s/missing/a.token: folder %s/missing does not exist, and tokend "
	    "does not make it: the token is not written until it does", dir,
	    dir, dir) == -1)
		fail_msg("asprintf");
	CHECK_STR("missing folder", d.warnings[0], want);
	free(want);
	if (asprintf(&want, "%s/accounts.d/a.conf:7: warning: path %s/a.token: "
	    "tokend (uid %u) cannot write in folder %s", dir, ro,
	    geteuid() == 0 ? 65534U : (unsigned)geteuid(), ro) == -1)
		fail_msg("asprintf");
	if (strncmp(d.warnings[1], want, strlen(want)) != 0)
		fail_msg("got '%s', want '%s...'", d.warnings[1], want);
	free(want);
	config_free(cfg);
	diag_clear(&d);
	free(global);
	free(state_dir);
	free(ro);
	free(a);
}

/* Load a global file with a [fleet] body; the config, or NULL. */
static struct config *
load_fleet(const char *dir, const char *acc, const char *body,
    struct diag *d)
{
	char	*content, *global;
	struct config *cfg;

	if (asprintf(&content, "[tokend]\naccounts_dir = %s\n[fleet]\n%s", acc,
	    body) == -1)
		fail_msg("asprintf");
	global = put_file(dir, "tokend.conf", content, 0644);
	free(content);
	memset(d, 0, sizeof *d);
	cfg = config_load(global, NULL, d);
	free(global);
	return cfg;
}

/* d has an error at tokend.conf:LINE that contains `what`. */
static void
check_fleet_error(const struct diag *d, int line, const char *what)
{
	char	 at[32];
	size_t	 i;

	snprintf(at, sizeof at, "tokend.conf:%d:", line);
	for (i = 0; i < d->nerrors; i++)
		if (strstr(d->errors[i], at) != NULL &&
		    strstr(d->errors[i], what) != NULL)
			return;
	dump_diag("fleet", d);
	fail_msg("no error at line %d with '%s'", line, what);
}

static void
test_config_fleet(void **state)
{
	const char	*dir = *state;
	struct diag	 d;
	struct config	*cfg;
	char		*acc, *key, *pass, *body, *shortkey, *a;
	size_t		 i;

	acc = path_in(dir, "acc");
	if (mkdir(acc, 0700) != 0)
		fail_msg("mkdir");
	key = put_file(dir, "fleet.key", "00112233445566778899aabbccddeeff"
	    "00112233445566778899aabbccddeeff\n", 0600);
	shortkey = put_file(dir, "short.key", "0011223344\n", 0600);
	pass = put_file(dir, "redis.pass", "s3cret-pass\n", 0600);

	/* sentinel://, every key */
	if (asprintf(&body, "redis = sentinel://10.0.0.1:26379,[::1]:26380/"
	    "mymaster/2\npassword_file = %s\nkey_file = %s\nnode = web1\n"
	    "key_prefix = t:\nlease = 20s\ntimeout = 2s\n", pass, key) == -1)
		fail_msg("asprintf");
	cfg = load_fleet(dir, acc, body, &d);
	free(body);
	if (cfg == NULL || d.nerrors != 0) {
		dump_diag("fleet", &d);
		fail_msg("a good [fleet] failed");
	}
	assert_non_null(cfg->fleet);
	CHECK_I64("kind", cfg->fleet->kind, FLEET_SENTINEL);
	CHECK_I64("nhosts", cfg->fleet->nhosts, 2);
	CHECK_STR("host 0", cfg->fleet->hosts[0].host, "10.0.0.1");
	CHECK_I64("port 0", cfg->fleet->hosts[0].port, 26379);
	CHECK_STR("host 1", cfg->fleet->hosts[1].host, "::1");
	CHECK_I64("port 1", cfg->fleet->hosts[1].port, 26380);
	CHECK_STR("master", cfg->fleet->master, "mymaster");
	CHECK_I64("db", cfg->fleet->db, 2);
	CHECK_STR("password", cfg->fleet->password, "s3cret-pass");
	CHECK_I64("key[0]", cfg->fleet->key[0], 0x00);
	CHECK_I64("key[1]", cfg->fleet->key[1], 0x11);
	CHECK_I64("key[31]", cfg->fleet->key[31], 0xff);
	CHECK_STR("node", cfg->fleet->node, "web1");
	CHECK_STR("key_prefix", cfg->fleet->key_prefix, "t:");
	CHECK_I64("lease", cfg->fleet->lease, 20000);
	CHECK_I64("timeout", cfg->fleet->timeout, 2000);
	diag_clear(&d);
	config_free(cfg);

	/* redis:// and unix:, with the defaults */
	if (asprintf(&body, "redis = redis://127.0.0.1:6379/3\nkey_file = "
	    "%s\n", key) == -1)
		fail_msg("asprintf");
	cfg = load_fleet(dir, acc, body, &d);
	free(body);
	assert_non_null(cfg);
	CHECK_I64("tcp kind", cfg->fleet->kind, FLEET_TCP);
	CHECK_I64("tcp db", cfg->fleet->db, 3);
	CHECK_STR("default prefix", cfg->fleet->key_prefix, "tokend:");
	CHECK_I64("default lease", cfg->fleet->lease, 15000);
	CHECK_I64("default timeout", cfg->fleet->timeout, 5000);
	assert_null(cfg->fleet->password);
	assert_non_null(cfg->fleet->node);
	diag_clear(&d);
	config_free(cfg);

	/* the errors, each at its line: [fleet] is line 3 */
	static const struct {
		const char	*body;
		int		 line;
		const char	*what;
	} bad[] = {
		{ "key_file = KEY\n", 3, "needs redis" },
		{ "redis = redis://h:1\n", 3, "needs key_file" },
		{ "redis = http://h:1\nkey_file = KEY\n", 4, "expected redis://" },
		{ "redis = redis://h\nkey_file = KEY\n", 4, "not HOST:PORT" },
		{ "redis = redis://h:0\nkey_file = KEY\n", 4, "not HOST:PORT" },
		{ "redis = redis://u:pw@h:1\nkey_file = KEY\n", 4,
		    "password_file" },
		{ "redis = redis://a:1,b:2\nkey_file = KEY\n", 4, "one HOST:PORT" },
		{ "redis = redis://h:1/x\nkey_file = KEY\n", 4, "a number" },
		{ "redis = sentinel://h:1\nkey_file = KEY\n", 4, "master's name" },
		{ "redis = unix:relative\nkey_file = KEY\n", 4, "absolute" },
		{ "redis = redis://h:1\nkey_file = SHORT\n", 5, "64 hex digits" },
		{ "redis = redis://h:1\nkey_file = /nonexistent/k\n", 5,
		    "cannot read" },
		{ "redis = redis://h:1\nkey_file = KEY\nnode = a b\n", 6,
		    "node:" },
		{ "redis = redis://h:1\nkey_file = KEY\nlease = 0\n", 6,
		    "lease" },
		{ "redis = redis://h:1\nkey_file = KEY\nbogus = 1\n", 6,
		    "unknown key 'bogus' in [fleet]" },
	};
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *k, *b2 = strdup(bad[i].body);

		if ((k = strstr(b2, "SHORT")) != NULL) {
			*k = '\0';
			if (asprintf(&body, "%s%s%s", b2, shortkey, k + 5) == -1)
				fail_msg("asprintf");
		} else if ((k = strstr(b2, "KEY")) != NULL) {
			*k = '\0';
			if (asprintf(&body, "%s%s%s", b2, key, k + 3) == -1)
				fail_msg("asprintf");
		} else
			body = strdup(b2);
		free(b2);
		cfg = load_fleet(dir, acc, body, &d);
		free(body);
		if (cfg != NULL)
			fail_msg("bad [fleet] %zu loaded", i);
		check_fleet_error(&d, bad[i].line, bad[i].what);
		/* no secret in any message */
		for (size_t j = 0; j < d.nerrors; j++)
			if (strstr(d.errors[j], "00112233") != NULL ||
			    strstr(d.errors[j], "s3cret") != NULL)
				fail_msg("a secret in: %s", d.errors[j]);
		diag_clear(&d);
	}

	/* shared = yes needs [fleet] */
	a = put_file(acc, "x.conf", "[account]\ngrant = client_credentials\n"
	    "token_url = https://h/t\nclient_id = c\nshared = yes\n", 0600);
	free(put_file(dir, "plain.conf", "[tokend]\n", 0644));
	{
		char *g = path_in(dir, "plain.conf");

		memset(&d, 0, sizeof d);
		assert_null(config_load(g, acc, &d));
		if (d.nerrors != 1 || strstr(d.errors[0], "x.conf:5:") == NULL ||
		    strstr(d.errors[0], "needs [fleet]") == NULL) {
			dump_diag("shared", &d);
			fail_msg("shared = yes without [fleet] not refused");
		}
		diag_clear(&d);
		free(g);
	}
	/* ... and with it, the account is shared */
	if (asprintf(&body, "redis = redis://h:1\nkey_file = %s\n", key) == -1)
		fail_msg("asprintf");
	cfg = load_fleet(dir, acc, body, &d);
	free(body);
	if (cfg == NULL) {
		dump_diag("shared", &d);
		fail_msg("shared account with [fleet] refused");
	}
	CHECK_I64("shared", cfg->accounts[0]->shared, 1);
	diag_clear(&d);
	config_free(cfg);
	unlink(a);
	free(a);
	free(acc);
	free(key);
	free(shortkey);
	free(pass);
}

static void
test_config_fleet_equal(void **state)
{
	const char	*dir = *state;
	struct diag	 d;
	struct config	*c1, *c2, *c3;
	char		*acc, *key, *body;

	acc = path_in(dir, "acc");
	if (mkdir(acc, 0700) != 0)
		fail_msg("mkdir");
	key = put_file(dir, "fleet.key", "00112233445566778899aabbccddeeff"
	    "00112233445566778899aabbccddeeff\n", 0600);
	if (asprintf(&body, "redis = redis://h:1\nkey_file = %s\n", key) == -1)
		fail_msg("asprintf");
	c1 = load_fleet(dir, acc, body, &d);
	diag_clear(&d);
	c2 = load_fleet(dir, acc, body, &d);
	diag_clear(&d);
	free(body);
	free(put_file(dir, "fleet.key", "ff112233445566778899aabbccddeeff"
	    "00112233445566778899aabbccddeeff\n", 0600));
	if (asprintf(&body, "redis = redis://h:1\nkey_file = %s\n", key) == -1)
		fail_msg("asprintf");
	c3 = load_fleet(dir, acc, body, &d);
	diag_clear(&d);
	free(body);
	assert_non_null(c1);
	assert_non_null(c2);
	assert_non_null(c3);
	assert_true(config_fleet_equal(c1->fleet, c2->fleet));
	assert_false(config_fleet_equal(c1->fleet, c3->fleet));
	assert_false(config_fleet_equal(c1->fleet, NULL));
	assert_true(config_fleet_equal(NULL, NULL));
	config_free(c1);
	config_free(c2);
	config_free(c3);
	free(acc);
	free(key);
}

int
main(void)
{
#define T(f)	cmocka_unit_test_setup_teardown(f, tmpdir_setup, \
		    tmpdir_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_mode),
		cmocka_unit_test(test_parse_argv),
		cmocka_unit_test(test_account_name_valid),
		T(test_account_login),
		T(test_account_redirect_uri),
		cmocka_unit_test(test_ini_table),
		cmocka_unit_test(test_ini_long_line),
		cmocka_unit_test(test_ini_nul_byte),
		cmocka_unit_test(test_ini_nul_byte_line),
		cmocka_unit_test(test_ini_empty_value_then_comment),
		cmocka_unit_test(test_ini_handler_stops),
		T(test_account_client_credentials),
		T(test_account_password),
		T(test_account_refresh_token),
		T(test_account_static),
		T(test_account_defaults),
		T(test_account_files),
		T(test_account_spec_layout),
		T(test_account_empty_keys),
		T(test_account_errors),
		T(test_account_many_errors),
		T(test_account_many_keys),
		T(test_account_bad_name),
		T(test_secret_newline),
		T(test_file_size_limits),
		T(test_basic_encoding_checks),
		T(test_secret_permissions),
		T(test_secret_not_regular),
		T(test_credentials_directory),
		T(test_account_equal),
		T(test_config_load_global),
		T(test_config_fleet),
		T(test_config_fleet_equal),
		T(test_config_load_errors),
		T(test_table_choices),
		T(test_table_bad_choices),
		T(test_table_ranges),
		T(test_table_duration_bound),
		T(test_table_empty_values),
		T(test_table_global_every_key),
		T(test_table_defaults),
		cmocka_unit_test(test_margin_is_cut),
		T(test_account_warnings),
		T(test_account_run_time_errors),
		T(test_account_run_time_ok),
		T(test_credentials_missing_at_reload),
		T(test_config_shared_paths),
		T(test_config_file_folders),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
