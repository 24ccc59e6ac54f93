/*
 * Unit tests for prompt.c, what tokenctl login shows: the QR code read
 * back from its half blocks (quiet zone, finder patterns, the modules
 * libqrencode made), the SSH hint from an authorization URL's
 * redirect_uri, the steps' text, and bytes that must not reach a terminal.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <qrencode.h>

#include "tokend.h"
#include "unit.h"

#define QUIET	4
#define SIDE_MAX 200

/* Unicode half blocks, read as a terminal shows them */
#define UPPER	"\xe2\x96\x80"	/* U+2580 UPPER HALF BLOCK */
#define LOWER	"\xe2\x96\x84"	/* U+2584 LOWER HALF BLOCK */
#define FULL	"\xe2\x96\x88"	/* U+2588 FULL BLOCK */
#define DARK_ON_LIGHT	"\033[30;47m"	/* black glyphs on white */
#define RESET	"\033[0m"

struct grid {
	int	 side;
	int	 rows;		/* module rows: two per line */
	char	 dark[SIDE_MAX][SIDE_MAX];
};

/* The modules a terminal shows for `text`; fails the test on bad bytes. */
static void
grid_read(const char *text, struct grid *g)
{
	const char	*p = text, *end;
	int		 x;

	memset(g, 0, sizeof *g);
	g->side = -1;
	while (*p != '\0') {
		if (strncmp(p, DARK_ON_LIGHT, strlen(DARK_ON_LIGHT)) != 0)
			fail_msg("line %d does not set black on white",
			    g->rows / 2);
		p += strlen(DARK_ON_LIGHT);
		end = strstr(p, RESET "\n");
		assert_non_null(end);
		for (x = 0; p < end; x++) {
			assert_true(x < SIDE_MAX && g->rows + 1 < SIDE_MAX);
			if (*p == ' ') {
				p++;
				continue;
			}
			if (!strncmp(p, UPPER, 3) || !strncmp(p, FULL, 3))
				g->dark[g->rows][x] = 1;
			if (!strncmp(p, LOWER, 3) || !strncmp(p, FULL, 3))
				g->dark[g->rows + 1][x] = 1;
			if (strncmp(p, UPPER, 3) && strncmp(p, LOWER, 3) &&
			    strncmp(p, FULL, 3))
				fail_msg("a byte 0x%02x that is no half block",
				    (unsigned char)*p);
			p += 3;
		}
		if (g->side == -1)
			g->side = x;
		CHECK_I64("columns of every line", x, g->side);
		g->rows += 2;
		p = end + strlen(RESET "\n");
	}
}

/* A finder pattern: a dark 7x7 ring, a light ring, a dark 3x3 core. */
static void
check_finder(const struct grid *g, int x0, int y0)
{
	int	 x, y, ring, want;

	for (y = 0; y < 7; y++)
		for (x = 0; x < 7; x++) {
			ring = abs(x - 3) > abs(y - 3) ? abs(x - 3) :
			    abs(y - 3);
			want = ring != 2;
			if (g->dark[y0 + y][x0 + x] != want)
				fail_msg("finder at %d,%d: module %d,%d is %s",
				    x0, y0, x, y, want ? "light" : "dark");
		}
}

static void
test_qr_reads_back(void **state)
{
	const char	*texts[] = {
		"https://op.example/device?user_code=WDJB-MJHT", "x",
		"https://login.microsoftonline.com/common/oauth2/deviceauth?"
		    "otc=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" };
	struct grid	 g;
	QRcode		*qr;
	char		*out, *cause;
	size_t		 i;
	int		 x, y, dark;

	(void)state;
	for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		out = prompt_qr(texts[i], 200, &cause);
		assert_non_null(out);
		assert_null(cause);
		grid_read(out, &g);
		qr = QRcode_encodeString(texts[i], 0, QR_ECLEVEL_L, QR_MODE_8,
		    1);
		assert_non_null(qr);
		CHECK_I64(texts[i], g.side, qr->width + 2 * QUIET);
		/* an odd side: the last line's lower half is quiet zone */
		CHECK_I64(texts[i], g.rows, g.side + 1);
		for (y = 0; y < g.rows; y++)
			for (x = 0; x < g.side; x++) {
				dark = x >= QUIET && y >= QUIET &&
				    x < QUIET + qr->width &&
				    y < QUIET + qr->width &&
				    (qr->data[(y - QUIET) * qr->width + x -
				    QUIET] & 1);
				if (g.dark[y][x] != dark)
					fail_msg("%s: module %d,%d", texts[i],
					    x, y);
			}
		check_finder(&g, QUIET, QUIET);
		check_finder(&g, QUIET + qr->width - 7, QUIET);
		check_finder(&g, QUIET, QUIET + qr->width - 7);
		QRcode_free(qr);
		free(out);
	}
}

static void
test_qr_refused(void **state)
{
	char	*big, *cause;

	(void)state;
	/* 21 modules and the quiet zone: 29 columns */
	assert_null(prompt_qr("x", 28, &cause));
	CHECK_STR("too narrow", cause, "a QR code of 29 columns does not "
	    "fit 28");
	free(cause);
	assert_non_null(big = prompt_qr("x", 29, &cause));
	free(big);
	big = xcalloc(1, 4000);
	memset(big, 'a', 3999);
	assert_null(prompt_qr(big, 1000, &cause));
	CHECK_STR("too long", cause, "too long for a QR code");
	free(cause);
	free(big);
}

struct redirect_case {
	const char	*url;
	int		 rc;
	const char	*host;
	unsigned	 port;
};

/* an authorization URL whose redirect_uri is http://REST, encoded */
#define AUTH(rest)	\
	"https://op.example/auth?redirect_uri=http%3A%2F%2F" rest

static const struct redirect_case redirects[] = {
	{ "https://op.example/auth?client_id=c&redirect_uri=http%3A%2F%2F"
	    "127.0.0.1%3A8976%2Fcallback&state=s", 0, "127.0.0.1", 8976 },
	{ "https://op.example/auth?redirect_uri=http://127.0.0.1:41000/cb",
	    0, "127.0.0.1", 41000 },
	{ AUTH("%5B%3A%3A1%5D%3A9000%2F"), 0, "[::1]", 9000 },
	{ AUTH("127.0.0.1%2Fcb"), 0, "127.0.0.1", 80 },
	/* a parameter whose name ends in redirect_uri is another one */
	{ "https://op.example/auth?x_redirect_uri=http%3A%2F%2F127.0.0.1%3A1"
	    "%2F", -1, NULL, 0 },
	{ "https://op.example/auth?redirect_uri=https%3A%2F%2F127.0.0.1%3A1"
	    "%2F", -1, NULL, 0 },
	{ AUTH("127.0.0.10%3A1%2F"), -1, NULL, 0 },
	{ AUTH("127.0.0.1%3A0%2F"), -1, NULL, 0 },
	{ AUTH("127.0.0.1%3A65536%2F"), -1, NULL, 0 },
	{ AUTH("127.0.0.1%3A%2F"), -1, NULL, 0 },
	{ AUTH("127.0.0.1%3"), -1, NULL, 0 },
	{ "https://op.example/auth?client_id=c", -1, NULL, 0 },
	{ "https://op.example/auth", -1, NULL, 0 },
	{ "https://op.example/auth#redirect_uri=http://127.0.0.1:5/", -1,
	    NULL, 0 },
};

static void
test_redirect_table(void **state)
{
	char		 host[16];
	unsigned	 port;
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof redirects / sizeof redirects[0]; i++) {
		host[0] = '\0';
		port = 0;
		CHECK_I64(redirects[i].url, prompt_redirect(redirects[i].url,
		    host, sizeof host, &port), redirects[i].rc);
		if (redirects[i].rc != 0)
			continue;
		CHECK_STR(redirects[i].url, host, redirects[i].host);
		CHECK_I64(redirects[i].url, port, redirects[i].port);
	}
}

static void
test_browser_steps(void **state)
{
	char	*s;

	(void)state;
	s = prompt_browser("mail", redirects[0].url, "board7");
	assert_non_null(strstr(s, "To log in account mail, open this URL in a "
	    "browser:\n\n    https://op.example/auth?client_id=c&"));
	assert_non_null(strstr(s, "\n    ssh -L 8976:127.0.0.1:8976 board7\n"));
	free(s);
	s = prompt_browser("mail", redirects[2].url, "board7");
	assert_non_null(strstr(s, "ssh -L 9000:[::1]:9000 board7"));
	free(s);
	/* no loopback redirect, no hint */
	s = prompt_browser("mail", "https://op.example/auth?a=b", "board7");
	assert_null(strstr(s, "ssh"));
	free(s);
}

static void
test_device_steps(void **state)
{
	char	*s;

	(void)state;
	s = prompt_device("tv", "https://op.example/device", "WDJB-MJHT",
	    "https://op.example/device?user_code=WDJB-MJHT", 900, NULL);
	CHECK_STR("device, no QR", s, "To log in account tv, open this URL on "
	    "any device:\n\n    https://op.example/device\n\nand enter the "
	    "code WDJB-MJHT (valid for 15 minutes).\n\nOr open this URL, which "
	    "holds the code:\n\n    https://op.example/device?user_code="
	    "WDJB-MJHT\n\n");
	free(s);
	s = prompt_device("tv", "https://op.example/device", "WDJB-MJHT",
	    "https://op.example/device?user_code=WDJB-MJHT", 90, "QR\n");
	assert_non_null(strstr(s, "(valid for 90 seconds).\n\nOr scan this QR "
	    "code with a phone:\n\nQR\n\n"));
	free(s);
	s = prompt_device("tv", "https://op.example/device", "WDJB-MJHT", NULL,
	    0, NULL);
	CHECK_STR("device, nothing more", s, "To log in account tv, open this "
	    "URL on any device:\n\n    https://op.example/device\n\nand enter "
	    "the code WDJB-MJHT.\n\n");
	free(s);
}

static void
test_ascii(void **state)
{
	char	*s;

	(void)state;
	/* ESC, a C1 CSI in UTF-8, a newline, DEL */
	s = prompt_ascii("a\033[2Jb\xc2\x9b" "c\nd\x7f");
	CHECK_STR("control bytes", s, "a?[2Jb??c?d?");
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qr_reads_back),
		cmocka_unit_test(test_qr_refused),
		cmocka_unit_test(test_redirect_table),
		cmocka_unit_test(test_browser_steps),
		cmocka_unit_test(test_device_steps),
		cmocka_unit_test(test_ascii),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
