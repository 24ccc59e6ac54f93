/*
 * What tokend puts in Redis, sealed: AES-256-GCM under the fleet's key,
 * with the Redis key's name as associated data so that a value copied to
 * another key (another account's) does not open there. And the record a
 * leader publishes, as compact JSON. Pure: no I/O, no clock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tokend.h"

/* the format's version; a v2 would change what follows the prefix */
#define SEAL_PREFIX		"v1."
#define SEAL_PREFIX_LEN		(sizeof SEAL_PREFIX - 1)
#define SEAL_NONCE_LEN		12	/* GCM's native IV: no GHASH of it */
#define SEAL_TAG_LEN		16
/*
 * Far above any record (two tokens of TOKEN_MAX and small change), far
 * below where EVP's int lengths or the base64 arithmetic could wrap.
 */
#define SEAL_PLAIN_MAX		(16 * 1024 * 1024)
/* the longest sealed value seal_decrypt reads: its allocation's cap */
#define SEAL_TEXT_MAX		(SEAL_PREFIX_LEN + \
				(SEAL_NONCE_LEN + SEAL_PLAIN_MAX + \
				SEAL_TAG_LEN + 2) / 3 * 4)

static const char seal_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- the key file ---- */

static int
seal_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	    c == '\v' || c == '\f';
}

static int
seal_hex(char c)
{
	static const char	 digits[] = "0123456789abcdef";
	const char		*p;

	if (c >= 'A' && c <= 'F')
		c += 'a' - 'A';
	if (c == '\0' || (p = strchr(digits, c)) == NULL)
		return -1;
	return (int)(p - digits);
}

/*
 * The contents of a key file: 64 hex digits, white space around them
 * allowed (an editor's newline). The cause gives counts and offsets only,
 * never the file's characters: a key that is nearly right is still
 * nearly a key.
 */
int
seal_key_parse(const char *buf, size_t len, unsigned char key[FLEET_KEY_LEN],
    char **cause)
{
	unsigned char	 k[FLEET_KEY_LEN];
	size_t		 start = 0, end = len, i;

	while (start < end && seal_space(buf[start]))
		start++;
	while (end > start && seal_space(buf[end - 1]))
		end--;
	for (i = start; i < end; i++) {
		if (seal_hex(buf[i]) == -1) {
			xasprintf(cause, "holds a character that is not a hex "
			    "digit at offset %zu", i);
			return -1;
		}
	}
	if (end - start != 2 * FLEET_KEY_LEN) {
		xasprintf(cause, "must hold %d hex digits (an AES-256 key), "
		    "found %zu characters", 2 * FLEET_KEY_LEN, end - start);
		return -1;
	}
	for (i = 0; i < FLEET_KEY_LEN; i++)
		k[i] = (unsigned char)(seal_hex(buf[start + 2 * i]) << 4 |
		    seal_hex(buf[start + 2 * i + 1]));
	memcpy(key, k, sizeof k);
	explicit_bzero(k, sizeof k);
	return 0;
}

/* ---- base64url, no padding (RFC 4648 5) ---- */

/* prefix, then in[0..len) encoded */
static char *
seal_b64_encode(const char *prefix, const unsigned char *in, size_t len)
{
	size_t		 plen = strlen(prefix), i;
	char		*out, *w;
	uint32_t	 acc = 0;
	int		 bits = 0;

	out = xcalloc(1, plen + (len * 4 + 2) / 3 + 1);
	memcpy(out, prefix, plen);
	w = out + plen;
	for (i = 0; i < len; i++) {
		acc = acc << 8 | in[i];
		for (bits += 8; bits >= 6; bits -= 6)
			*w++ = seal_b64url[(acc >> (bits - 6)) & 63];
	}
	if (bits > 0)
		*w++ = seal_b64url[(acc << (6 - bits)) & 63];
	*w = '\0';
	return out;
}

/*
 * Strict: the URL alphabet only, no padding, and the unused low bits of
 * the last character zero. Each byte string then has exactly one
 * spelling, so a changed character is always a changed message.
 */
static int
seal_b64_decode(const char *in, size_t len, unsigned char **out,
    size_t *outlen)
{
	unsigned char	*buf;
	const char	*p;
	size_t		 i, n = 0;
	uint32_t	 acc = 0;
	int		 bits = 0;

	if (len % 4 == 1)
		return -EBADMSG;
	buf = xcalloc(1, len / 4 * 3 + 2);
	for (i = 0; i < len; i++) {
		if (in[i] == '\0' || (p = strchr(seal_b64url, in[i])) == NULL)
			break;
		acc = acc << 6 | (uint32_t)(p - seal_b64url);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (i < len || (acc & ((1U << bits) - 1)) != 0) {
		free(buf);
		return -EBADMSG;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

/* ---- sealing ---- */

/*
 * "v1." and base64url of nonce || ciphertext || tag, with aad (the Redis
 * key's name) authenticated too. A fresh random nonce each time: 2^32
 * seals under one key keep GCM's collision odds below 2^-32 (NIST SP
 * 800-38D 8.3), and a fleet seals once per refresh. NULL: OpenSSL
 * failed, or plain is beyond any record.
 */
char *
seal_encrypt(const unsigned char key[FLEET_KEY_LEN], const char *aad,
    const void *plain, size_t len)
{
	EVP_CIPHER_CTX	*ctx;
	unsigned char	*buf, *ct, *tag;
	char		*out = NULL;
	size_t		 aadlen = strlen(aad);
	int		 n, ok;

	if (len > SEAL_PLAIN_MAX || aadlen > INT_MAX)
		return NULL;
	buf = xcalloc(1, SEAL_NONCE_LEN + len + SEAL_TAG_LEN);
	ct = buf + SEAL_NONCE_LEN;
	tag = ct + len;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL) {
		free(buf);
		return NULL;
	}
	/* a zero length update is skipped: plain may be NULL then */
	ok = RAND_bytes(buf, SEAL_NONCE_LEN) == 1 &&
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, buf) == 1 &&
	    EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad,
	    (int)aadlen) == 1 &&
	    (len == 0 ||
	    EVP_EncryptUpdate(ctx, ct, &n, plain, (int)len) == 1) &&
	    EVP_EncryptFinal_ex(ctx, tag, &n) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
	    tag) == 1;
	/* frees the key schedule wiped (OPENSSL_clear_free) */
	EVP_CIPHER_CTX_free(ctx);
	if (ok)
		out = seal_b64_encode(SEAL_PREFIX, buf, SEAL_NONCE_LEN + len +
		    SEAL_TAG_LEN);
	free(buf);
	return out;
}

/*
 * Open what seal_encrypt made under key for aad: 0 with *plain (len
 * bytes, NUL after them) allocated; -EBADMSG for anything else: another
 * format, a damaged or cut value, another key or another aad (GCM cannot
 * tell these apart, and neither can the caller's operator: "the key
 * differs" is the usual cause). -ENOMEM when OpenSSL has no memory.
 */
int
seal_decrypt(const unsigned char key[FLEET_KEY_LEN], const char *aad,
    const char *sealed, char **plain, size_t *len)
{
	EVP_CIPHER_CTX	*ctx;
	unsigned char	*buf, *tag;
	char		*out;
	size_t		 aadlen = strlen(aad), textlen, n, ctlen;
	int		 outl, rc = -EBADMSG;

	textlen = strnlen(sealed, SEAL_TEXT_MAX + 1);
	if (textlen > SEAL_TEXT_MAX || aadlen > INT_MAX ||
	    strncmp(sealed, SEAL_PREFIX, SEAL_PREFIX_LEN) != 0)
		return -EBADMSG;
	if (seal_b64_decode(sealed + SEAL_PREFIX_LEN,
	    textlen - SEAL_PREFIX_LEN, &buf, &n) != 0)
		return -EBADMSG;
	if (n < SEAL_NONCE_LEN + SEAL_TAG_LEN) {
		free(buf);
		return -EBADMSG;
	}
	ctlen = n - SEAL_NONCE_LEN - SEAL_TAG_LEN;
	tag = buf + SEAL_NONCE_LEN + ctlen;
	out = xcalloc(1, ctlen + 1);
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL) {
		free(out);
		free(buf);
		return -ENOMEM;
	}
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, buf) == 1 &&
	    EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad,
	    (int)aadlen) == 1 &&
	    (ctlen == 0 || EVP_DecryptUpdate(ctx, (unsigned char *)out, &outl,
	    buf + SEAL_NONCE_LEN, (int)ctlen) == 1) &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
	    tag) == 1 &&
	    EVP_DecryptFinal_ex(ctx, (unsigned char *)out + ctlen, &outl) == 1)
		rc = 0;
	EVP_CIPHER_CTX_free(ctx);
	free(buf);
	if (rc != 0) {
		/* GCM decrypts before it checks the tag: out holds what an
		   unauthenticated (or the right but refused) value said */
		explicit_bzero(out, ctlen + 1);
		free(out);
		return rc;
	}
	*plain = out;
	*len = ctlen;
	return 0;
}

/* ---- the record ---- */

/*
 * One letter a key: the record is sealed and sent on every refresh to
 * every instance, and nobody reads it by eye (tokenctl shows the
 * account). Strings are quoted by json_quote, not json-c's printer, so
 * the tokens live only in buffers that are wiped.
 */
#define SEAL_RECORD_FORMAT	"{\"a\":%s,\"t\":%s,\"e\":%lld,\"o\":%lld," \
				"\"n\":%lld%s%s,\"f\":%lld%s%s}"

/* What a record's string may be: what store.c and oauth.c take. */
struct seal_string_rule {
	const char	*key;
	size_t		 max;
	int		 printable;	/* visible ASCII only */
};

static const struct seal_string_rule seal_rule_a = { "a", TOKEN_MAX, 1 };
/* only ever sent form-encoded: any byte but NUL, as refresh_token_file */
static const struct seal_string_rule seal_rule_r = { "r", TOKEN_MAX, 0 };
static const struct seal_string_rule seal_rule_t = { "t", TOKEN_TYPE_MAX, 1 };
static const struct seal_string_rule seal_rule_l = { "l", FLEET_NODE_MAX, 1 };

/* len: the string's length as JSON said it; a \u0000 makes it differ */
static int
seal_string_ok(const struct seal_string_rule *r, const char *s, size_t len)
{
	return len > 0 && len <= r->max && strlen(s) == len &&
	    (!r->printable || str_is_printable(s));
}

static int
seal_record_ok(const struct fleet_record *rec)
{
	const struct token	*t = &rec->token;

	return t->access_token != NULL && seal_string_ok(&seal_rule_a,
	    t->access_token, strlen(t->access_token)) &&
	    (t->refresh_token == NULL || seal_string_ok(&seal_rule_r,
	    t->refresh_token, strlen(t->refresh_token))) &&
	    (t->token_type == NULL || seal_string_ok(&seal_rule_t,
	    t->token_type, strlen(t->token_type))) &&
	    (rec->leader == NULL || seal_string_ok(&seal_rule_l,
	    rec->leader, strlen(rec->leader))) &&
	    t->expires_at >= 0 && t->obtained_at >= 0 && t->refresh_at >= 0 &&
	    rec->fence <= INT64_MAX;
}

/*
 * The record as compact JSON, for seal_encrypt; the caller wipes it
 * (freezero_str). NULL for a record seal_record_decode would refuse (no
 * access token, a negative time, a fence beyond int64).
 */
char *
seal_record_encode(const struct fleet_record *rec)
{
	const struct token	*t = &rec->token;
	char			*at, *rt = NULL, *tt, *leader = NULL, *out;

	if (!seal_record_ok(rec))
		return NULL;
	at = json_quote(t->access_token);
	if (t->refresh_token != NULL)
		rt = json_quote(t->refresh_token);
	tt = json_quote(t->token_type != NULL ? t->token_type : "Bearer");
	if (rec->leader != NULL)
		leader = json_quote(rec->leader);
	xasprintf(&out, SEAL_RECORD_FORMAT, at, tt, (long long)t->expires_at,
	    (long long)t->obtained_at, (long long)t->refresh_at,
	    rt != NULL ? ",\"r\":" : "", rt != NULL ? rt : "",
	    (long long)rec->fence, leader != NULL ? ",\"l\":" : "",
	    leader != NULL ? leader : "");
	freezero_str(at);
	freezero_str(rt);
	free(tt);
	free(leader);
	return out;
}

/* obj's member key, of type: 0, 1 when absent, or -EBADMSG. */
static int
seal_member(struct json_object *obj, const char *key, enum json_type type,
    struct json_object **v)
{
	if (!json_object_object_get_ex(obj, key, v))
		return 1;
	return json_object_is_type(*v, type) ? 0 : -EBADMSG;
}

/* A string by rule r: 0 (absent: *out untouched) or -EBADMSG. */
static int
seal_get_string(struct json_object *obj, const struct seal_string_rule *r,
    char **out)
{
	struct json_object	*v;
	int			 rc;

	if ((rc = seal_member(obj, r->key, json_type_string, &v)) != 0)
		return rc == 1 ? 0 : rc;
	if (!seal_string_ok(r, json_object_get_string(v),
	    (size_t)json_object_get_string_len(v)))
		return -EBADMSG;
	*out = xstrdup(json_object_get_string(v));
	return 0;
}

/*
 * A whole number from 0 to INT64_MAX: 0 (absent: *out untouched unless
 * required) or -EBADMSG. json-c keeps one above INT64_MAX as a uint64,
 * which json_object_get_int64 would clamp to INT64_MAX.
 */
static int
seal_get_int(struct json_object *obj, const char *key, int required,
    int64_t *out)
{
	struct json_object	*v;
	int64_t			 n;
	int			 rc;

	if ((rc = seal_member(obj, key, json_type_int, &v)) != 0)
		return rc == 1 && !required ? 0 : -EBADMSG;
	n = json_object_get_int64(v);
	if (n < 0 || (n == INT64_MAX &&
	    json_object_get_uint64(v) != (uint64_t)INT64_MAX))
		return -EBADMSG;
	*out = n;
	return 0;
}

/*
 * Wipe a token inside json-c's tree before it is freed: its strings are
 * its own allocations, and json-c frees them as they are.
 */
static void
seal_wipe_string(struct json_object *obj, const char *key)
{
	struct json_object	*v;

	if (seal_member(obj, key, json_type_string, &v) == 0)
		explicit_bzero((char *)json_object_get_string(v),
		    (size_t)json_object_get_string_len(v));
}

/*
 * What seal_record_encode wrote (json[0..len), after seal_decrypt) into
 * out: 0, or -EBADMSG (-ENOMEM: json-c had no memory) with out zeroed.
 * Keys it does not know are passed over, so a newer tokend may add some.
 */
int
seal_record_decode(const char *json, size_t len, struct fleet_record *out)
{
	struct json_object	*obj = NULL;
	struct json_tokener	*tok;
	struct token		*t = &out->token;
	int64_t			 fence = 0;
	size_t			 end = 0;
	int			 rc;

	memset(out, 0, sizeof *out);
	if (len > SEAL_PLAIN_MAX)
		return -EBADMSG;
	/* a record is one flat object; some room for what a newer tokend
	   may nest under a key of its own */
	if ((tok = json_tokener_new_ex(4)) == NULL)
		return -ENOMEM;
	obj = json_tokener_parse_ex(tok, json, (int)len);
	/* json-c stops after the value: what follows must be white space */
	if (obj != NULL)
		end = json_tokener_get_parse_end(tok);
	while (end < len && json[end] != '\0' &&
	    strchr(" \t\r\n", json[end]) != NULL)
		end++;
	json_tokener_free(tok);
	if (obj == NULL || end != len ||
	    !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return -EBADMSG;
	}
	rc = seal_get_string(obj, &seal_rule_a, &t->access_token) != 0 ||
	    t->access_token == NULL ||
	    seal_get_string(obj, &seal_rule_r, &t->refresh_token) != 0 ||
	    seal_get_string(obj, &seal_rule_t, &t->token_type) != 0 ||
	    seal_get_string(obj, &seal_rule_l, &out->leader) != 0 ||
	    seal_get_int(obj, "e", 1, &t->expires_at) != 0 ||
	    seal_get_int(obj, "o", 1, &t->obtained_at) != 0 ||
	    seal_get_int(obj, "n", 0, &t->refresh_at) != 0 ||
	    seal_get_int(obj, "f", 1, &fence) != 0 ? -EBADMSG : 0;
	seal_wipe_string(obj, "a");
	seal_wipe_string(obj, "r");
	json_object_put(obj);
	if (rc != 0) {
		seal_record_clear(out);
		return rc;
	}
	out->fence = (uint64_t)fence;
	if (t->token_type == NULL)
		t->token_type = xstrdup("Bearer");
	return 0;
}

/* Free what a record holds, the tokens wiped, and zero it; NULL is fine. */
void
seal_record_clear(struct fleet_record *rec)
{
	if (rec == NULL)
		return;
	oauth_token_clear(&rec->token);
	free(rec->leader);
	memset(rec, 0, sizeof *rec);
}
