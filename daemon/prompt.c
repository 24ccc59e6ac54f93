/*
 * What `tokenctl login` shows a person: the URL to open and how to reach
 * the loopback redirect over SSH, or the verification URI and user code
 * with a QR code of the complete URI for a phone. Pure: each function
 * returns the text, tokenctl prints it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qrencode.h>

#include "tokend.h"

#define PROMPT_QUIET	4	/* the QR code's quiet zone, in modules */
#define PROMPT_URL_MAX	(8 * 1024)
/* the ABI of the qrencode.h we are built with (Debian's libqrencode4) */
#define PROMPT_QRENCODE	"libqrencode.so.4"

/*
 * libqrencode, loaded when a QR code is to be shown (as systemd does):
 * linked, it would cost every `tokenctl token` some 0.08 ms of loading,
 * a tenth of its run, for a code shown once per login.
 */
static QRcode	*(*prompt_qr_encode)(const char *, int, QRecLevel,
		    QRencodeMode, int);
static void	 (*prompt_qr_free)(QRcode *);

/* s with every byte that is not printable ASCII shown as '?'. */
char *
prompt_ascii(const char *s)
{
	char	*out = xstrdup(s);
	char	*p;

	for (p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	return out;
}

/* The query parameter `name` of url, percent-decoded; NULL without it. */
static char *
prompt_query_param(const char *url, const char *name)
{
	const char	*q = strchr(url, '?'), *end;
	size_t		 n = strlen(name);

	if (q == NULL || strlen(url) > PROMPT_URL_MAX)
		return NULL;
	for (q++; *q != '\0' && *q != '#'; q = *end == '&' ? end + 1 : end) {
		end = q + strcspn(q, "&#");
		if ((size_t)(end - q) <= n || strncmp(q, name, n) != 0 ||
		    q[n] != '=')
			continue;
		q += n + 1;
		return percent_decode(q, (size_t)(end - q), 1, NULL);
	}
	return NULL;
}

/*
 * The loopback address and port the browser is sent back to, from the
 * redirect_uri of an authorization URL: "127.0.0.1" or "[::1]". -1 when
 * there is none, or it is not a loopback http one.
 */
int
prompt_redirect(const char *url, char *host, size_t hostlen,
    unsigned *port)
{
	static const char *const loopback[] = { "127.0.0.1", "[::1]" };
	char		*uri = prompt_query_param(url, "redirect_uri");
	const char	*p;
	unsigned long	 n = 80;
	size_t		 i, len;
	int		 rc = -1;

	for (i = 0; uri != NULL && i < sizeof loopback / sizeof loopback[0];
	    i++) {
		len = strlen(loopback[i]);
		if (strncmp(uri, "http://", 7) != 0 ||
		    strncmp(uri + 7, loopback[i], len) != 0)
			continue;
		p = uri + 7 + len;
		if (*p == ':') {
			for (n = 0, p++; *p >= '0' && *p <= '9' && n <= 65535;
			    p++)
				n = n * 10 + (unsigned long)(*p - '0');
			if (p == uri + 8 + len || n == 0 || n > 65535)
				break;
		}
		if (*p != '\0' && *p != '/' && *p != '?')
			break;
		snprintf(host, hostlen, "%s", loopback[i]);
		*port = (unsigned)n;
		rc = 0;
		break;
	}
	free(uri);
	return rc;
}

/* What to do for an authorization code login; host: this machine's name. */
char *
prompt_browser(const char *account, const char *url, const char *host)
{
	char		*out, *hint = NULL, addr[16];
	unsigned	 port;

	if (prompt_redirect(url, addr, sizeof addr, &port) == 0)
		xasprintf(&hint, "The browser is sent back to %s:%u on this "
		    "machine. With a browser\non another machine, first run "
		    "this there (it forwards the port over SSH):\n\n"
		    "    ssh -L %u:%s:%u %s\n\n", addr, port, port, addr, port,
		    host);
	xasprintf(&out, "To log in account %s, open this URL in a browser:\n"
	    "\n    %s\n\n%s", account, url, hint != NULL ? hint : "");
	free(hint);
	return out;
}

/*
 * What to do for a device login: the URI and the code, and the complete
 * URI (NULL: none) as the QR code `qr` (NULL: none) or as text.
 */
char *
prompt_device(const char *account, const char *uri, const char *code,
    const char *complete, int64_t expires_in_s, const char *qr)
{
	char	*out, *valid = NULL, *more = NULL;

	if (expires_in_s >= 120)
		xasprintf(&valid, " (valid for %lld minutes)",
		    (long long)(expires_in_s / 60));
	else if (expires_in_s > 0)
		xasprintf(&valid, " (valid for %lld seconds)",
		    (long long)expires_in_s);
	if (complete != NULL && qr != NULL)
		xasprintf(&more, "Or scan this QR code with a phone:\n\n%s\n",
		    qr);
	else if (complete != NULL)
		xasprintf(&more, "Or open this URL, which holds the code:\n"
		    "\n    %s\n\n", complete);
	xasprintf(&out, "To log in account %s, open this URL on any device:\n"
	    "\n    %s\n\nand enter the code %s%s.\n\n%s", account, uri, code,
	    valid != NULL ? valid : "", more != NULL ? more : "");
	free(valid);
	free(more);
	return out;
}

static int
prompt_qr_load(char **cause)
{
	static void	*lib;
	const char	*err;

	if (lib != NULL)
		return 0;
	if ((lib = dlopen(PROMPT_QRENCODE, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		err = dlerror();
		xasprintf(cause, "cannot load %s: %s", PROMPT_QRENCODE,
		    err != NULL ? err : "unknown error");
		return -1;
	}
	prompt_qr_encode = dlsym(lib, "QRcode_encodeString");
	prompt_qr_free = dlsym(lib, "QRcode_free");
	if (prompt_qr_encode == NULL || prompt_qr_free == NULL) {
		xasprintf(cause, "%s lacks QRcode_encodeString",
		    PROMPT_QRENCODE);
		dlclose(lib);
		lib = NULL;
		return -1;
	}
	return 0;
}

static int
prompt_dark(const QRcode *qr, int x, int y)
{
	x -= PROMPT_QUIET;
	y -= PROMPT_QUIET;
	if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
		return 0;
	return qr->data[y * qr->width + x] & 1;
}

/*
 * text as a QR code for a terminal: black on white whatever its colours,
 * two rows of modules per line in Unicode half blocks, a quiet zone of
 * PROMPT_QUIET modules around. NULL with *cause when it cannot be made
 * (no libqrencode) or would be wider than max_cols columns.
 */
char *
prompt_qr(const char *text, int max_cols, char **cause)
{
	/* [top dark][bottom dark]: space, lower half, upper half, full */
	static const char *const glyph[2][2] = {
		{ " ", "\xe2\x96\x84" }, { "\xe2\x96\x80", "\xe2\x96\x88" } };
	QRcode		*qr;
	FILE		*f;
	char		*out = NULL;
	size_t		 len;
	int		 side, x, y;

	*cause = NULL;
	if (prompt_qr_load(cause) != 0)
		return NULL;
	if ((qr = prompt_qr_encode(text, 0, QR_ECLEVEL_L, QR_MODE_8, 1)) ==
	    NULL) {
		*cause = xstrdup("too long for a QR code");
		return NULL;
	}
	side = qr->width + 2 * PROMPT_QUIET;
	if (side > max_cols) {
		xasprintf(cause, "a QR code of %d columns does not fit %d",
		    side, max_cols);
		prompt_qr_free(qr);
		return NULL;
	}
	if ((f = open_memstream(&out, &len)) == NULL)
		fatal("open_memstream");
	for (y = 0; y < side; y += 2) {
		fputs("\033[30;47m", f);
		for (x = 0; x < side; x++)
			fputs(glyph[prompt_dark(qr, x, y)][prompt_dark(qr, x,
			    y + 1)], f);
		fputs("\033[0m\n", f);
	}
	if (fclose(f) != 0)
		fatal("open_memstream");
	prompt_qr_free(qr);
	return out;
}
