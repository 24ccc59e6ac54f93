/*
 * Unit tests for client.c's answer reader: Content-Length, chunked and
 * read-to-the-end bodies, caps, and answers that are cut short or
 * malformed. Each case is fed whole, a byte at a time, and in two halves:
 * the outcome must not depend on how the bytes arrive.
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

#include "tokend.h"
#include "unit.h"

#define CAP	64

struct answer_case {
	const char	*what;
	const char	*raw;
	int		 eof;		/* the stream ends after raw */
	int		 rc;		/* 1 complete, 0 wants more, -1 bad */
	int		 status;
	const char	*type;
	const char	*body;
};

static const struct answer_case cases[] = {
	{ "length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 5\r\n\r\nhello", 0, 1, 200, "text/plain",
	    "hello" },
	{ "length, more bytes than told", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 2\r\n\r\nhello", 0, 1, 200, "", "he" },
	{ "length 0", "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Length: 0\r\n\r\n", 0, 1, 503, "", "" },
	{ "header case and spaces", "HTTP/1.0 404 Not Found\r\n"
	    "content-length:   3  \r\nCONTENT-TYPE:application/json\r\n\r\n"
	    "{}\n", 0, 1, 404, "application/json", "{}\n" },
	{ "length, body still coming", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 10\r\n\r\nhello", 0, 0, 0, NULL, NULL },
	{ "length, stream ends early", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 10\r\n\r\nhello", 1, -1, 0, NULL, NULL },
	{ "chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n", 0, 1, 200, "",
	    "hello!" },
	{ "chunked wins over length", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", 0, 1, 200, "", "abc" },
	{ "chunked, not ended", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 1, -1, 0, NULL,
	    NULL },
	{ "chunked, bad size", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 0, -1,
	    0, NULL, NULL },
	{ "chunked, no CRLF after data", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 0, -1,
	    0, NULL, NULL },
	{ "chunked over the cap", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n41\r\n", 0, -1, 0, NULL, NULL },
	/* the cap counts the body, not the head before it */
	{ "chunked, exactly the cap", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n40\r\n"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n0\r\n\r\n", 0, 1, 200, "",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
	{ "chunked, the cap spent over two chunks", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n20\r\n"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n21\r\n", 0, -1, 0, NULL, NULL },
	{ "chunked over the cap, a head longer than the cap",
	    "HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n41\r\n", 0, -1, 0, NULL,
	    NULL },
	{ "unknown transfer coding", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: gzip\r\n\r\n", 0, -1, 0, NULL, NULL },
	{ "until the end", "HTTP/1.1 200 OK\r\n\r\nto the end", 1, 1, 200,
	    "", "to the end" },
	{ "until the end, still open", "HTTP/1.1 200 OK\r\n\r\nto the",
	    0, 0, 0, NULL, NULL },
	{ "length over the cap", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 65\r\n\r\n", 0, -1, 0, NULL, NULL },
	{ "two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
	    "Content-Length: 1\r\n\r\nx", 0, -1, 0, NULL, NULL },
	{ "length not a number", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 1x\r\n\r\nx", 0, -1, 0, NULL, NULL },
	{ "length negative", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: -1\r\n\r\nx", 0, -1, 0, NULL, NULL },
	{ "length huge", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 99999999999999999999999\r\n\r\n", 0, -1, 0, NULL,
	    NULL },
	{ "not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, -1, 0, NULL, NULL },
	{ "HTTP/2", "HTTP/2 200\r\n\r\n", 0, -1, 0, NULL, NULL },
	{ "status not 3 digits", "HTTP/1.1 20 OK\r\n\r\n", 0, -1, 0, NULL,
	    NULL },
	{ "status 1xx", "HTTP/1.1 100 Continue\r\n\r\n", 0, -1, 0, NULL,
	    NULL },
	{ "status with sign", "HTTP/1.1 +200 OK\r\n\r\n", 0, -1, 0, NULL,
	    NULL },
	{ "header without colon", "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", 0, -1,
	    0, NULL, NULL },
	{ "nothing at all", "", 1, -1, 0, NULL, NULL },
	{ "headers cut short", "HTTP/1.1 200 OK\r\nContent-", 1, -1, 0,
	    NULL, NULL },
};

/* Feed raw in pieces of `step` bytes (0: whole). */
static int
feed(const struct answer_case *c, size_t step, struct client_answer *a)
{
	struct client_reader	*r = client_reader_new(CAP);
	size_t			 len = strlen(c->raw), off = 0, n;
	char			*cause = NULL;
	int			 rc = 0;

	while (off < len && rc == 0) {
		n = step == 0 || step > len - off ? len - off : step;
		rc = client_reader_feed(r, c->raw + off, n, &cause);
		off += n;
		if (rc < 0)
			assert_non_null(cause);
		free(cause);
	}
	if (rc == 0 && c->eof) {
		rc = client_reader_feed(r, "", 0, &cause);
		if (rc < 0)
			assert_non_null(cause);
		free(cause);
	}
	if (rc == 1)
		client_reader_answer(r, a);
	client_reader_free(r);
	return rc;
}

static void
test_answer_table(void **state)
{
	struct client_answer	 a;
	size_t			 i, s, steps[] = { 0, 1, 7 };
	char			 what[128];

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		for (s = 0; s < sizeof steps / sizeof steps[0]; s++) {
			snprintf(what, sizeof what, "%s (pieces of %zu)",
			    cases[i].what, steps[s]);
			memset(&a, 0, sizeof a);
			CHECK_I64(what, feed(&cases[i], steps[s], &a),
			    cases[i].rc);
			if (cases[i].rc != 1)
				continue;
			CHECK_I64(what, a.status, cases[i].status);
			CHECK_STR(what, a.content_type, cases[i].type);
			CHECK_STR(what, a.body, cases[i].body);
			CHECK_I64(what, a.len, strlen(cases[i].body));
			client_answer_clear(&a);
		}
}

/* Headers without end are refused once they pass the cap. */
static void
test_endless_headers(void **state)
{
	struct client_reader	*r = client_reader_new(CAP);
	char			 line[] = "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
	char			*cause = NULL;
	int			 rc, i;

	(void)state;
	rc = client_reader_feed(r, "HTTP/1.1 200 OK\r\n", 17, &cause);
	for (i = 0; rc == 0 && i < 10000; i++)
		rc = client_reader_feed(r, line, strlen(line), &cause);
	CHECK_I64("endless headers", rc, -1);
	assert_true(i < 10000);
	assert_non_null(cause);
	free(cause);
	client_reader_free(r);
}

/* A body that never ends is refused at the cap. */
static void
test_endless_body(void **state)
{
	struct client_reader	*r = client_reader_new(CAP);
	char			*cause = NULL;
	int			 rc, i;

	(void)state;
	rc = client_reader_feed(r, "HTTP/1.1 200 OK\r\n\r\n", 19, &cause);
	for (i = 0; rc == 0 && i < 1000; i++)
		rc = client_reader_feed(r, "0123456789", 10, &cause);
	CHECK_I64("endless body", rc, -1);
	assert_true(i <= CAP / 10 + 1);
	free(cause);
	client_reader_free(r);
}

/* A big answer in one piece: the head with much of the body after it. */
static void
test_big_answer_in_one_piece(void **state)
{
	struct client_reader	*r = client_reader_new(1024 * 1024);
	struct client_answer	 a;
	size_t			 body = 200 * 1024, head;
	char			*raw, *cause = NULL;

	(void)state;
	raw = xcalloc(1, body + 64);
	head = (size_t)snprintf(raw, 64, "HTTP/1.1 200 OK\r\n"
	    "Content-Length: %zu\r\n\r\n", body);
	memset(raw + head, 'x', body);
	CHECK_I64("big answer", client_reader_feed(r, raw, head + body,
	    &cause), 1);
	client_reader_answer(r, &a);
	CHECK_I64("big answer length", a.len, body);
	assert_true(a.body[0] == 'x' && a.body[body - 1] == 'x');
	client_answer_clear(&a);
	client_reader_free(r);
	free(raw);
}

/* What a stream's line callback saw. */
struct lines_seen {
	char	 text[512];	/* the lines, each ended in '|' */
	size_t	 n;
	size_t	 stop_after;	/* 0: never stop */
};

static int
lines_cb(const char *line, void *arg)
{
	struct lines_seen	*l = arg;
	size_t			 len = strlen(l->text);

	snprintf(l->text + len, sizeof l->text - len, "%s|", line);
	l->n++;
	return l->stop_after != 0 && l->n == l->stop_after;
}

struct stream_case {
	const char	*what;
	const char	*raw;
	int		 eof;
	size_t		 stop_after;
	int		 rc;
	const char	*lines;		/* what the callback saw */
	const char	*body;		/* of the answer, when complete */
};

#define NDJSON_HEAD	"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson" \
			"\r\nTransfer-Encoding: chunked\r\n\r\n"

static const struct stream_case stream_cases[] = {
	{ "two lines in chunks", NDJSON_HEAD "4\r\n{\"a\"\r\n3\r\n:1}\r\n"
	    "1\r\n\n\r\n9\r\n{\"b\":2}\r\n\r\n0\r\n\r\n", 0, 0, 1,
	    "{\"a\":1}|{\"b\":2}|", NULL },
	{ "the last line without newline", NDJSON_HEAD "3\r\nx\ny\r\n"
	    "0\r\n\r\n", 0, 0, 1, "x|y|", NULL },
	{ "empty lines and CRLF", NDJSON_HEAD "8\r\n\n\r\nx\r\n\ny\r\n"
	    "0\r\n\r\n", 0, 0, 1, "x|y|", NULL },
	{ "stopped by the callback", NDJSON_HEAD "4\r\nx\ny\n\r\n", 0, 1, 1,
	    "x|", NULL },
	{ "a line still coming", NDJSON_HEAD "4\r\nx\nyz\r\n", 0, 0, 0,
	    "x|", NULL },
	{ "cut short", NDJSON_HEAD "4\r\nx\nyz\r\n", 1, 0, -1, "x|", NULL },
	{ "with a parameter, read to the end", "HTTP/1.1 200 OK\r\n"
	    "Content-Type: application/x-ndjson; charset=utf-8\r\n\r\n"
	    "x\ny\n", 1, 0, 1, "x|y|", NULL },
	{ "with a length", "HTTP/1.1 200 OK\r\n"
	    "Content-Type: application/x-ndjson\r\nContent-Length: 4\r\n\r\n"
	    "x\ny\n", 0, 0, 1, "x|y|", NULL },
	{ "an error answer is read whole", "HTTP/1.1 404 Not Found\r\n"
	    "Content-Type: application/x-ndjson\r\nContent-Length: 4\r\n\r\n"
	    "x\ny\n", 0, 0, 1, "", "x\ny\n" },
	{ "JSON is read whole", "HTTP/1.1 200 OK\r\n"
	    "Content-Type: application/json\r\nContent-Length: 4\r\n\r\n"
	    "x\ny\n", 0, 0, 1, "", "x\ny\n" },
	{ "not ndjson but a prefix of it", "HTTP/1.1 200 OK\r\n"
	    "Content-Type: application/x-ndjsonx\r\nContent-Length: 2\r\n\r\n"
	    "x\n", 0, 0, 1, "", "x\n" },
	/* the cap is the whole body's, lines or not */
	{ "a stream over the cap", NDJSON_HEAD "40\r\n"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	    "\r\n1\r\n", 0, 0, -1, NULL, NULL },
};

static void
test_stream_table(void **state)
{
	const struct stream_case	*c;
	struct client_reader		*r;
	struct client_answer		 a;
	struct lines_seen		 seen;
	size_t				 i, s, off, len, n, steps[] = { 0, 1, 5 };
	char				 what[128], *cause = NULL;
	int				 rc;

	(void)state;
	for (i = 0; i < sizeof stream_cases / sizeof stream_cases[0]; i++)
		for (s = 0; s < sizeof steps / sizeof steps[0]; s++) {
			c = &stream_cases[i];
			snprintf(what, sizeof what, "%s (pieces of %zu)",
			    c->what, steps[s]);
			memset(&seen, 0, sizeof seen);
			seen.stop_after = c->stop_after;
			r = client_reader_new(CAP);
			client_reader_stream(r, lines_cb, &seen);
			len = strlen(c->raw);
			rc = 0;
			for (off = 0; off < len && rc == 0; off += n) {
				n = steps[s] == 0 || steps[s] > len - off ?
				    len - off : steps[s];
				rc = client_reader_feed(r, c->raw + off, n,
				    &cause);
				free(cause);
			}
			if (rc == 0 && c->eof) {
				rc = client_reader_feed(r, "", 0, &cause);
				free(cause);
			}
			CHECK_I64(what, rc, c->rc);
			if (c->lines != NULL) {
				CHECK_STR(what, seen.text, c->lines);
				CHECK_I64(what, client_reader_lines(r),
				    seen.n);
			}
			if (rc == 1 && c->body != NULL) {
				client_reader_answer(r, &a);
				CHECK_STR(what, a.body, c->body);
				client_answer_clear(&a);
			}
			client_reader_free(r);
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answer_table),
		cmocka_unit_test(test_endless_headers),
		cmocka_unit_test(test_endless_body),
		cmocka_unit_test(test_big_answer_in_one_piece),
		cmocka_unit_test(test_stream_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
