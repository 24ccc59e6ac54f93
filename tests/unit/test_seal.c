/*
 * Unit tests for seal.c: the fleet's key file, AES-256-GCM sealing of
 * what goes to Redis (bound to the Redis key's name), and the record a
 * leader publishes. Everything is pure; the only randomness is the nonce.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"
#include "unit.h"

#define T0		1700000000000LL		/* 2023-11-14T22:13:20Z */
#define AAD		"tokend:token:github"

static const char key_hex[] =
    "00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0";
static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
test_key(unsigned char key[FLEET_KEY_LEN])
{
	char	*cause = NULL;

	if (seal_key_parse(key_hex, strlen(key_hex), key, &cause) != 0)
		fail_msg("the test key does not parse: %s", cause);
}

/* Open sealed, expecting it to be refused, and *plain left alone. */
static void
check_refused(const char *what, const unsigned char key[FLEET_KEY_LEN],
    const char *aad, const char *sealed)
{
	char	 sentinel, *plain = &sentinel;
	size_t	 len = 12345;
	int	 rc;

	rc = seal_decrypt(key, aad, sealed, &plain, &len);
	if (rc != -EBADMSG)
		fail_msg("%s: got %d, expected -EBADMSG", what, rc);
	if (plain != &sentinel || len != 12345)
		fail_msg("%s: output set on failure", what);
}

/* ---- sealing ---- */

static void
test_round_trip(void **state)
{
	unsigned char	 key[FLEET_KEY_LEN], msg[200];
	char		*sealed, *plain, what[64];
	size_t		 len, n, i, want;

	(void)state;
	test_key(key);
	/* NUL bytes and high bytes too: the plaintext is bytes, not text */
	for (i = 0; i < sizeof msg; i++)
		msg[i] = (unsigned char)(i * 37 + 1);
	msg[5] = '\0';
	for (n = 0; n <= sizeof msg; n++) {
		snprintf(what, sizeof what, "%zu bytes", n);
		if ((sealed = seal_encrypt(key, AAD, msg, n)) == NULL)
			fail_msg("%s: seal_encrypt failed", what);
		/* "v1." and the base64url of 12 + n + 16 bytes, no padding */
		want = 3 + ((12 + n + 16) * 4 + 2) / 3;
		CHECK_I64(what, strlen(sealed), want);
		assert_memory_equal(sealed, "v1.", 3);
		CHECK_I64(what, strspn(sealed + 3, b64url), want - 3);
		plain = NULL;
		len = 0;
		CHECK_I64(what, seal_decrypt(key, AAD, sealed, &plain, &len),
		    0);
		CHECK_I64(what, len, n);
		assert_non_null(plain);
		assert_memory_equal(plain, msg, n);
		CHECK_I64(what, plain[len], '\0');
		explicit_bzero(plain, len);
		free(plain);
		free(sealed);
	}
}

static void
test_empty_plaintext(void **state)
{
	unsigned char	 key[FLEET_KEY_LEN];
	char		*sealed, *plain = NULL;
	size_t		 len = 99;

	(void)state;
	test_key(key);
	/* no plaintext at all: a NULL pointer is fine with no bytes */
	sealed = seal_encrypt(key, AAD, NULL, 0);
	assert_non_null(sealed);
	CHECK_I64("empty: length", strlen(sealed), 3 + 38);
	CHECK_I64("empty", seal_decrypt(key, AAD, sealed, &plain, &len), 0);
	CHECK_I64("empty: len", len, 0);
	CHECK_STR("empty: plain", plain, "");
	free(plain);
	/* the tag still guards it */
	check_refused("empty, other aad", key, "tokend:token:gitlab", sealed);
	free(sealed);
	sealed = seal_encrypt(key, "", "", 0);
	assert_non_null(sealed);
	plain = NULL;
	CHECK_I64("empty aad", seal_decrypt(key, "", sealed, &plain, &len), 0);
	CHECK_STR("empty aad: plain", plain, "");
	free(plain);
	check_refused("empty aad, then one", key, "x", sealed);
	free(sealed);
}

static void
test_wrong_key(void **state)
{
	unsigned char	 key[FLEET_KEY_LEN], other[FLEET_KEY_LEN];
	char		*sealed, what[64];
	size_t		 i;

	(void)state;
	test_key(key);
	sealed = seal_encrypt(key, AAD, "gho_secret", 10);
	assert_non_null(sealed);
	/* a key that differs in a single bit, wherever that bit is */
	for (i = 0; i < FLEET_KEY_LEN * 8; i++) {
		memcpy(other, key, sizeof other);
		other[i / 8] ^= (unsigned char)(1 << (i % 8));
		snprintf(what, sizeof what, "key bit %zu flipped", i);
		check_refused(what, other, AAD, sealed);
	}
	memset(other, 0, sizeof other);
	check_refused("all-zero key", other, AAD, sealed);
	free(sealed);
}

static void
test_wrong_aad(void **state)
{
	static const char *const others[] = {
		"tokend:token:githuB", "tokend:token:githu",
		"tokend:token:github ", "tokend:token:gitlab", "", "t",
	};
	unsigned char	 key[FLEET_KEY_LEN];
	char		*sealed;
	size_t		 i;

	(void)state;
	test_key(key);
	sealed = seal_encrypt(key, AAD, "gho_secret", 10);
	assert_non_null(sealed);
	for (i = 0; i < sizeof others / sizeof others[0]; i++)
		check_refused(others[i], key, others[i], sealed);
	free(sealed);
}

/*
 * Any change to a sealed value is refused: each character replaced by
 * each other byte, the value cut at each length, a character added.
 * base64url that a lenient decoder would read as the same bytes (unused
 * low bits set in the last character, '+' for '-', padding) is a change
 * too.
 */
static void
test_every_change_refused(void **state)
{
	static const size_t lens[] = { 0, 1, 2, 3, 10 };
	unsigned char	 key[FLEET_KEY_LEN];
	char		*sealed, *copy, what[80];
	size_t		 i, k, n;
	int		 c;

	(void)state;
	test_key(key);
	for (k = 0; k < sizeof lens / sizeof lens[0]; k++) {
		sealed = seal_encrypt(key, AAD, "0123456789", lens[k]);
		assert_non_null(sealed);
		n = strlen(sealed);
		copy = calloc(1, n + 2);
		assert_non_null(copy);
		for (i = 0; i < n; i++) {
			for (c = 1; c < 256; c++) {
				if (c == (unsigned char)sealed[i])
					continue;
				memcpy(copy, sealed, n + 1);
				copy[i] = (char)c;
				snprintf(what, sizeof what, "plain %zu: char "
				    "%zu set to 0x%02x", lens[k], i, c);
				check_refused(what, key, AAD, copy);
			}
			memcpy(copy, sealed, i);
			copy[i] = '\0';
			snprintf(what, sizeof what, "plain %zu: cut to %zu",
			    lens[k], i);
			check_refused(what, key, AAD, copy);
		}
		for (c = 1; c < 256; c++) {
			memcpy(copy, sealed, n + 1);
			copy[n] = (char)c;
			copy[n + 1] = '\0';
			snprintf(what, sizeof what, "plain %zu: 0x%02x added",
			    lens[k], c);
			check_refused(what, key, AAD, copy);
		}
		free(copy);
		free(sealed);
	}
}

/* prefix, n characters c, then suffix */
static char *
sealed_of(const char *prefix, size_t n, char c, const char *suffix)
{
	char	*s;
	size_t	 plen = strlen(prefix);

	if ((s = calloc(1, plen + n + strlen(suffix) + 1)) == NULL)
		fail_msg("calloc");
	memcpy(s, prefix, plen);
	memset(s + plen, c, n);
	strcpy(s + plen + n, suffix);
	return s;
}

static void
test_not_sealed(void **state)
{
	static const char *const bad[] = {
		"", "v1", "v1.", "v1.AAAA=", "v1.AAA", "v1.A", "plain text",
		"{\"a\":\"x\"}",
	};
	static const struct {
		const char	*name, *prefix;
		size_t		 n;
		char		 c;
		const char	*suffix;
	} made[] = {
		{ "another version", "v2.", 38, 'A', "" },
		{ "upper case V", "V1.", 38, 'A', "" },
		/* 27 bytes: one short of a nonce and a tag */
		{ "27 bytes", "v1.", 36, 'A', "" },
		/* the right length for an empty plaintext, not a seal */
		{ "28 zero bytes", "v1.", 38, 'A', "" },
		{ "28 bytes, padded", "v1.", 38, 'A', "==" },
		{ "standard alphabet", "v1.", 40, '+', "" },
		{ "a dot inside", "v1.", 20, 'A', ".AAAAAAAAAAAAAAAAAAA" },
		{ "white space after", "v1.", 40, 'A', "\n" },
	};
	unsigned char	 key[FLEET_KEY_LEN];
	char		*s;
	size_t		 i;

	(void)state;
	test_key(key);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		check_refused(bad[i], key, AAD, bad[i]);
	for (i = 0; i < sizeof made / sizeof made[0]; i++) {
		s = sealed_of(made[i].prefix, made[i].n, made[i].c,
		    made[i].suffix);
		check_refused(made[i].name, key, AAD, s);
		free(s);
	}
}

static void
test_nonce_fresh(void **state)
{
	unsigned char	 key[FLEET_KEY_LEN];
	char		*a, *b;

	(void)state;
	test_key(key);
	a = seal_encrypt(key, AAD, "same", 4);
	b = seal_encrypt(key, AAD, "same", 4);
	assert_non_null(a);
	assert_non_null(b);
	if (strcmp(a, b) == 0)
		fail_msg("two seals of the same plaintext are the same");
	/* the first 16 characters after "v1." are the 12-byte nonce */
	if (memcmp(a + 3, b + 3, 16) == 0)
		fail_msg("two seals share a nonce");
	free(a);
	free(b);
}

/* ---- the key file ---- */

static void
test_key_parse_good(void **state)
{
	/* white space before and after the digits */
	static const char *const frames[][2] = {
		{ "", "" }, { "", "\n" }, { "", "\r\n" }, { "  \t", " \n\n" },
		{ "\n", "" }, { "\v\f", "\t" },
	};
	unsigned char	 key[FLEET_KEY_LEN], want[FLEET_KEY_LEN];
	char		*buf, *cause, upper[sizeof key_hex];
	size_t		 i;

	(void)state;
	for (i = 0; i < FLEET_KEY_LEN; i++)
		sscanf(key_hex + 2 * i, "%2hhx", &want[i]);
	for (i = 0; i < sizeof frames / sizeof frames[0]; i++) {
		if (asprintf(&buf, "%s%s%s", frames[i][0], key_hex,
		    frames[i][1]) == -1)
			fail_msg("asprintf");
		memset(key, 0, sizeof key);
		cause = NULL;
		if (seal_key_parse(buf, strlen(buf), key, &cause) != 0)
			fail_msg("frame %zu: refused: %s", i, cause);
		assert_null(cause);
		assert_memory_equal(key, want, sizeof key);
		free(buf);
	}
	for (i = 0; i < sizeof key_hex; i++)
		upper[i] = (key_hex[i] >= 'a' && key_hex[i] <= 'f') ?
		    (char)(key_hex[i] - 'a' + 'A') : key_hex[i];
	memset(key, 0, sizeof key);
	cause = NULL;
	CHECK_I64("upper case", seal_key_parse(upper, strlen(upper), key,
	    &cause), 0);
	assert_memory_equal(key, want, sizeof key);
	/* len, not a NUL, ends the file: what follows is not read */
	if (asprintf(&buf, "%s zz", key_hex) == -1)
		fail_msg("asprintf");
	memset(key, 0, sizeof key);
	CHECK_I64("len bounds it", seal_key_parse(buf, 64, key, &cause), 0);
	assert_memory_equal(key, want, sizeof key);
	CHECK_I64("past len", seal_key_parse(buf, strlen(buf), key, &cause),
	    -1);
	CHECK_STR("past len", cause,
	    "holds a character that is not a hex digit at offset 64");
	free(cause);
	free(buf);
}

struct key_bad_case {
	const char	*name;
	const char	*buf;
	size_t		 len;		/* 0: strlen(buf) */
	const char	*want;		/* the whole cause */
};

/* 64 digits, from the test key, with the one a case breaks spelt out */
#define K32	"00112233445566778899aabbccddeeff"
#define K32B	"0f1e2d3c4b5a69788796a5b4c3d2e1f0"

static const struct key_bad_case key_bad_cases[] = {
	{ "empty", "", 0,
	    "must hold 64 hex digits (an AES-256 key), found 0 characters" },
	{ "white space only", " \n\t\n", 0,
	    "must hold 64 hex digits (an AES-256 key), found 0 characters" },
	{ "12 digits", "0123456789ab\n", 0,
	    "must hold 64 hex digits (an AES-256 key), found 12 characters" },
	{ "63 digits", K32 "0f1e2d3c4b5a69788796a5b4c3d2e1f", 0,
	    "must hold 64 hex digits (an AES-256 key), found 63 characters" },
	{ "65 digits", K32 K32B "7\n", 0,
	    "must hold 64 hex digits (an AES-256 key), found 65 characters" },
	{ "two keys on one line", K32 K32B K32 K32B, 0,
	    "must hold 64 hex digits (an AES-256 key), found 128 characters" },
	{ "g in it", "  " K32 "0f1e2d3c4b5a6978g796a5b4c3d2e1f0", 0,
	    "holds a character that is not a hex digit at offset 50" },
	{ "a space inside", K32 " " K32B, 0,
	    "holds a character that is not a hex digit at offset 32" },
	{ "two keys on two lines", K32 K32B "\n" K32 K32B "\n", 0,
	    "holds a character that is not a hex digit at offset 64" },
	{ "0x prefix", "0x" K32 K32B, 0,
	    "holds a character that is not a hex digit at offset 1" },
	{ "NUL inside", K32 "\0" K32B, 65,
	    "holds a character that is not a hex digit at offset 32" },
	{ "base64 of a key", "ABEiM0RVZneImaq7zN3u/w8eLTxLWml4h5altMPS4fA=",
	    0, "holds a character that is not a hex digit at offset 3" },
	{ "a high byte", K32 "\xc3\xa9" K32B, 0,
	    "holds a character that is not a hex digit at offset 32" },
};

static void
test_key_parse_bad(void **state)
{
	const struct key_bad_case	*c;
	unsigned char			 key[FLEET_KEY_LEN];
	char				*cause, run[9];
	size_t				 i, j, len;

	(void)state;
	for (i = 0; i < sizeof key_bad_cases / sizeof key_bad_cases[0]; i++) {
		c = &key_bad_cases[i];
		len = c->len != 0 ? c->len : strlen(c->buf);
		memset(key, 0xa5, sizeof key);
		cause = NULL;
		if (seal_key_parse(c->buf, len, key, &cause) != -1)
			fail_msg("%s: accepted", c->name);
		CHECK_STR(c->name, cause, c->want);
		/* the key is not written on failure */
		for (j = 0; j < sizeof key; j++)
			if (key[j] != 0xa5)
				fail_msg("%s: key written", c->name);
		/* no run of eight of the file's characters in the cause */
		for (j = 0; j + 8 <= len; j++) {
			memcpy(run, c->buf + j, 8);
			run[8] = '\0';
			if (strlen(run) == 8 && strstr(cause, run) != NULL)
				fail_msg("%s: cause '%s' holds '%s'", c->name,
				    cause, run);
		}
		free(cause);
	}
}

/* ---- the record ---- */

static void
record_fill(struct fleet_record *r, const char *rt, const char *leader)
{
	memset(r, 0, sizeof *r);
	r->token.access_token = xstrdup("eyJhbGciOi.payload.sig");
	r->token.refresh_token = rt != NULL ? xstrdup(rt) : NULL;
	r->token.token_type = xstrdup("DPoP");
	r->token.expires_at = T0 + 3600 * 1000 + 123;
	r->token.obtained_at = T0 + 7;
	r->token.refresh_at = T0 + 2700 * 1000 + 5;
	r->fence = 42;
	r->leader = leader != NULL ? xstrdup(leader) : NULL;
}

static void
record_check(const char *what, const struct fleet_record *got,
    const struct fleet_record *want)
{
	CHECK_STR(what, got->token.access_token, want->token.access_token);
	CHECK_STR(what, got->token.refresh_token, want->token.refresh_token);
	/* a record without a type is read as Bearer's */
	CHECK_STR(what, got->token.token_type, want->token.token_type != NULL ?
	    want->token.token_type : "Bearer");
	CHECK_I64(what, got->token.expires_at, want->token.expires_at);
	CHECK_I64(what, got->token.obtained_at, want->token.obtained_at);
	CHECK_I64(what, got->token.refresh_at, want->token.refresh_at);
	CHECK_I64(what, got->fence, want->fence);
	CHECK_STR(what, got->leader, want->leader);
	assert_null(got->token.refresh_seed);
}

/*
 * Encode in (to want_json unless NULL), decode it back, compare, and
 * free both records.
 */
static void
record_round_trip(const char *what, struct fleet_record *in,
    const char *want_json)
{
	struct fleet_record	 out;
	char			*json;

	if ((json = seal_record_encode(in)) == NULL)
		fail_msg("%s: not encoded", what);
	if (want_json != NULL)
		CHECK_STR(what, json, want_json);
	CHECK_I64(what, seal_record_decode(json, strlen(json), &out), 0);
	record_check(what, &out, in);
	freezero_str(json);
	seal_record_clear(&out);
	seal_record_clear(in);
}

static void
test_record_round_trip(void **state)
{
	struct fleet_record	 in;

	(void)state;
	record_fill(&in, "rt-1", "node-a");
	record_round_trip("full", &in, "{\"a\":\"eyJhbGciOi.payload.sig\","
	    "\"t\":\"DPoP\",\"e\":1700003600123,\"o\":1700000000007,"
	    "\"n\":1700002700005,\"r\":\"rt-1\",\"f\":42,\"l\":\"node-a\"}");

	/* no refresh token, no leader: the keys are left out */
	record_fill(&in, NULL, NULL);
	record_round_trip("bare", &in, "{\"a\":\"eyJhbGciOi.payload.sig\","
	    "\"t\":\"DPoP\",\"e\":1700003600123,\"o\":1700000000007,"
	    "\"n\":1700002700005,\"f\":42}");

	/* what JSON must escape, and bytes a refresh token may hold */
	record_fill(&in, "q\"b\\s/\x01\x1f\x7f\xc3\xa9\xff", "n\"\\x");
	in.token.access_token[3] = '"';
	in.fence = INT64_MAX;
	in.token.expires_at = 0;
	in.token.obtained_at = 0;
	in.token.refresh_at = 0;
	record_round_trip("escapes", &in, NULL);

	/* no token_type: written and read back as Bearer */
	record_fill(&in, NULL, NULL);
	free(in.token.token_type);
	in.token.token_type = NULL;
	record_round_trip("no type", &in, "{\"a\":\"eyJhbGciOi.payload.sig\","
	    "\"t\":\"Bearer\",\"e\":1700003600123,\"o\":1700000000007,"
	    "\"n\":1700002700005,\"f\":42}");
}

/* What a fleet does with it: encode, seal, open, decode. */
static void
test_record_sealed(void **state)
{
	unsigned char		 key[FLEET_KEY_LEN];
	struct fleet_record	 in, out;
	char			*json, *sealed, *plain;
	size_t			 len;

	(void)state;
	test_key(key);
	record_fill(&in, "rt-2", "node-b");
	json = seal_record_encode(&in);
	assert_non_null(json);
	sealed = seal_encrypt(key, AAD, json, strlen(json));
	assert_non_null(sealed);
	if (strstr(sealed, "payload") != NULL ||
	    strstr(sealed, "rt-2") != NULL)
		fail_msg("the sealed value shows the token");
	CHECK_I64("open", seal_decrypt(key, AAD, sealed, &plain, &len), 0);
	CHECK_I64("decode", seal_record_decode(plain, len, &out), 0);
	record_check("sealed", &out, &in);
	freezero_str(plain);
	freezero_str(json);
	free(sealed);
	seal_record_clear(&out);
	seal_record_clear(&in);
}

static void
test_record_encode_refused(void **state)
{
	struct fleet_record	 r;
	char			*saved;

	(void)state;
	record_fill(&r, "rt", "node");
	saved = r.token.access_token;
	r.token.access_token = NULL;
	assert_null(seal_record_encode(&r));
	r.token.access_token = (char *)"";
	assert_null(seal_record_encode(&r));
	r.token.access_token = (char *)"has space";
	assert_null(seal_record_encode(&r));
	r.token.access_token = saved;
	assert_non_null(saved = seal_record_encode(&r));
	free(saved);
	r.token.expires_at = -1;
	assert_null(seal_record_encode(&r));
	r.token.expires_at = T0;
	r.token.obtained_at = -1;
	assert_null(seal_record_encode(&r));
	r.token.obtained_at = T0;
	r.token.refresh_at = -5;
	assert_null(seal_record_encode(&r));
	r.token.refresh_at = 0;
	r.fence = (uint64_t)INT64_MAX + 1;
	assert_null(seal_record_encode(&r));
	r.fence = 1;
	free(r.leader);
	r.leader = xstrdup("");
	assert_null(seal_record_encode(&r));
	seal_record_clear(&r);
}

struct decode_case {
	const char	*name;
	const char	*json;
	size_t		 len;		/* 0: strlen(json) */
};

#define REST	"\"o\":1,\"e\":2,\"f\":3"
#define WITH_NUL	"{\"a\":\"x\"," REST "}\0"

static const struct decode_case decode_bad[] = {
	{ "empty", "", 0 },
	{ "not JSON", "hello", 0 },
	{ "cut short", "{\"a\":\"x\"," REST, 0 },
	{ "an array", "[\"a\"]", 0 },
	{ "null", "null", 0 },
	{ "a string", "\"a\"", 0 },
	{ "after the object", "{\"a\":\"x\"," REST "}x", 0 },
	{ "a second object", "{\"a\":\"x\"," REST "}{}", 0 },
	{ "NUL after the object", WITH_NUL, sizeof WITH_NUL - 1 },
	{ "no a", "{" REST "}", 0 },
	{ "a null", "{\"a\":null," REST "}", 0 },
	{ "a empty", "{\"a\":\"\"," REST "}", 0 },
	{ "a a number", "{\"a\":5," REST "}", 0 },
	{ "a an object", "{\"a\":{}," REST "}", 0 },
	{ "a with a space", "{\"a\":\"x y\"," REST "}", 0 },
	{ "a with \\u0000", "{\"a\":\"x\\u0000y\"," REST "}", 0 },
	{ "no o", "{\"a\":\"x\",\"e\":2,\"f\":3}", 0 },
	{ "no e", "{\"a\":\"x\",\"o\":1,\"f\":3}", 0 },
	{ "no f", "{\"a\":\"x\",\"o\":1,\"e\":2}", 0 },
	{ "o negative", "{\"a\":\"x\",\"o\":-1,\"e\":2,\"f\":3}", 0 },
	{ "e negative", "{\"a\":\"x\",\"o\":1,\"e\":-2,\"f\":3}", 0 },
	{ "f negative", "{\"a\":\"x\",\"o\":1,\"e\":2,\"f\":-3}", 0 },
	{ "n negative", "{\"a\":\"x\"," REST ",\"n\":-4}", 0 },
	{ "e below int64", "{\"a\":\"x\",\"o\":1,"
	    "\"e\":-99999999999999999999,\"f\":3}", 0 },
	{ "f above int64", "{\"a\":\"x\",\"o\":1,\"e\":2,"
	    "\"f\":9223372036854775808}", 0 },
	{ "f above uint64", "{\"a\":\"x\",\"o\":1,\"e\":2,"
	    "\"f\":99999999999999999999}", 0 },
	{ "e a string", "{\"a\":\"x\",\"o\":1,\"e\":\"2\",\"f\":3}", 0 },
	{ "e a fraction", "{\"a\":\"x\",\"o\":1,\"e\":2.5,\"f\":3}", 0 },
	{ "e with an exponent", "{\"a\":\"x\",\"o\":1,\"e\":2e3,\"f\":3}", 0 },
	{ "o true", "{\"a\":\"x\",\"o\":true,\"e\":2,\"f\":3}", 0 },
	{ "f null", "{\"a\":\"x\",\"o\":1,\"e\":2,\"f\":null}", 0 },
	{ "t a number", "{\"a\":\"x\"," REST ",\"t\":1}", 0 },
	{ "t empty", "{\"a\":\"x\"," REST ",\"t\":\"\"}", 0 },
	{ "t too long", "{\"a\":\"x\"," REST ",\"t\":"
	    "\"Bearer-Bearer-Bearer-Bearer-Beare\"}", 0 },
	{ "r a number", "{\"a\":\"x\"," REST ",\"r\":1}", 0 },
	{ "r empty", "{\"a\":\"x\"," REST ",\"r\":\"\"}", 0 },
	{ "r an array", "{\"a\":\"x\"," REST ",\"r\":[\"y\"]}", 0 },
	{ "l a number", "{\"a\":\"x\"," REST ",\"l\":7}", 0 },
	{ "l empty", "{\"a\":\"x\"," REST ",\"l\":\"\"}", 0 },
};

static void
test_record_decode_bad(void **state)
{
	static const struct fleet_record	 zero;
	const struct decode_case		*c;
	struct fleet_record			 out;
	size_t					 i;

	(void)state;
	for (i = 0; i < sizeof decode_bad / sizeof decode_bad[0]; i++) {
		c = &decode_bad[i];
		/* junk first: decode zeroes out before anything else */
		memset(&out, 0x5a, sizeof out);
		CHECK_I64(c->name, seal_record_decode(c->json,
		    c->len != 0 ? c->len : strlen(c->json), &out), -EBADMSG);
		if (memcmp(&out, &zero, sizeof out) != 0)
			fail_msg("%s: out not zeroed", c->name);
	}
}

static void
test_record_decode_good(void **state)
{
	struct fleet_record	 out;
	const char		*json;

	(void)state;
	/* the least a record holds; white space and keys of a newer tokend */
	json = " {\"a\":\"x\",\"o\":1,\"e\":0,\"f\":0,\"zz\":{\"k\":[1]}}\n";
	CHECK_I64("least", seal_record_decode(json, strlen(json), &out), 0);
	CHECK_STR("least: a", out.token.access_token, "x");
	CHECK_STR("least: t", out.token.token_type, "Bearer");
	CHECK_I64("least: e", out.token.expires_at, 0);
	CHECK_I64("least: o", out.token.obtained_at, 1);
	CHECK_I64("least: n", out.token.refresh_at, 0);
	CHECK_I64("least: f", out.fence, 0);
	assert_null(out.token.refresh_token);
	assert_null(out.leader);
	seal_record_clear(&out);
	/* len, not a NUL, ends it */
	json = "{\"a\":\"x\",\"o\":1,\"e\":2,\"f\":9223372036854775807}junk";
	CHECK_I64("len bounds it", seal_record_decode(json, strlen(json) - 4,
	    &out), 0);
	CHECK_I64("int64 max fence", out.fence, INT64_MAX);
	seal_record_clear(&out);
	/* clear takes NULL and a zeroed record */
	seal_record_clear(NULL);
	seal_record_clear(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_empty_plaintext),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_wrong_aad),
		cmocka_unit_test(test_every_change_refused),
		cmocka_unit_test(test_not_sealed),
		cmocka_unit_test(test_nonce_fresh),
		cmocka_unit_test(test_key_parse_good),
		cmocka_unit_test(test_key_parse_bad),
		cmocka_unit_test(test_record_round_trip),
		cmocka_unit_test(test_record_sealed),
		cmocka_unit_test(test_record_encode_refused),
		cmocka_unit_test(test_record_decode_bad),
		cmocka_unit_test(test_record_decode_good),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
