/*
 * Signed client assertions: PEM private keys loaded through libcrypto,
 * and compact JWS (RFC 7515) signed with RS256, PS256, ES256, EdDSA or
 * HS256 (RFC 7518, RFC 8037), and Google-style service-account key files.
 * Pure: no I/O, no clock; the caller reads the files and builds the
 * claims.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "tokend.h"

/* a PEM private key is a few KiB; this is far above a 16384-bit RSA key */
#define JWS_PEM_MAX		(64 * 1024)
#define JWS_RSA_BITS_MIN	2048	/* RFC 7518 3.3 */
#define JWS_P256_LEN		32	/* a P-256 coordinate, r or s */
#define JWS_ED25519_LEN		32
#define JWS_PSS_SALT_LEN	32	/* RFC 7518 3.5: the hash's size */

struct jws_key {
	EVP_PKEY	*pkey;
};

static const char *const jws_alg_names[] = {
	[JWS_RS256] = "RS256",
	[JWS_PS256] = "PS256",
	[JWS_ES256] = "ES256",
	[JWS_EDDSA] = "EdDSA",
	[JWS_HS256] = "HS256",
};

const char *
jws_alg_name(enum jws_alg alg)
{
	if ((size_t)alg >= sizeof jws_alg_names / sizeof jws_alg_names[0])
		return "?";
	return jws_alg_names[alg];
}

/* JOSE's names are case-sensitive (RFC 7515 4.1.1): "rs256" is not one. */
int
jws_alg_parse(const char *s, enum jws_alg *out)
{
	size_t	 i;

	for (i = 0; i < sizeof jws_alg_names / sizeof jws_alg_names[0]; i++) {
		if (strcmp(s, jws_alg_names[i]) == 0) {
			*out = (enum jws_alg)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- keys ---- */

/*
 * Asked for a passphrase: the key is encrypted. Without a callback of
 * our own OpenSSL would prompt on the terminal.
 */
static int
jws_pass_cb(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)arg = 1;
	return -1;
}

/* An EC key's curve: P-256 only, the one ES256 names (RFC 7518 3.4). */
static int
jws_key_check_ec(EVP_PKEY *pkey, char **cause)
{
	char		 name[64];
	const char	*nist;
	size_t		 n;

	if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
	    name, sizeof name, &n) != 1) {
		xasprintf(cause, "is an EC key with explicit curve parameters; "
		    "only the named curve P-256 is supported (ES256)");
		return -1;
	}
	if (strcmp(name, SN_X9_62_prime256v1) == 0)
		return 0;
	nist = EC_curve_nid2nist(OBJ_sn2nid(name));
	xasprintf(cause, "is an EC key on curve %s%s%s%s; only P-256 is "
	    "supported (ES256)", name, nist != NULL ? " (" : "",
	    nist != NULL ? nist : "", nist != NULL ? ")" : "");
	return -1;
}

static int
jws_key_check(EVP_PKEY *pkey, char **cause)
{
	const char	*type;
	int		 bits;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		if ((bits = EVP_PKEY_get_bits(pkey)) < JWS_RSA_BITS_MIN) {
			xasprintf(cause, "is an RSA key of %d bits; at least "
			    "%d are required", bits, JWS_RSA_BITS_MIN);
			return -1;
		}
		return 0;
	case EVP_PKEY_EC:
		return jws_key_check_ec(pkey, cause);
	case EVP_PKEY_ED25519:
		return 0;
	default:
		type = EVP_PKEY_get0_type_name(pkey);
		xasprintf(cause, "is %s %s key; supported are RSA, EC P-256 and "
		    "Ed25519", type != NULL ? "an" : "another",
		    type != NULL ? type : "kind of");
		return -1;
	}
}

/*
 * A PEM private key from pem[0..len): PKCS#8 ("PRIVATE KEY") or
 * traditional ("RSA PRIVATE KEY", "EC PRIVATE KEY"), RSA of 2048 bits or
 * more, EC P-256 or Ed25519. The cause never quotes the text: a key
 * that is nearly right is still nearly a key.
 */
int
jws_key_load(const char *pem, size_t len, struct jws_key **out, char **cause)
{
	struct jws_key	*key;
	EVP_PKEY	*pkey;
	BIO		*bio;
	int		 asked = 0;

	if (len > JWS_PEM_MAX) {
		xasprintf(cause, "is larger than %d KiB: not a PEM private key",
		    JWS_PEM_MAX / 1024);
		return -1;
	}
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		xasprintf(cause, "cannot be read: out of memory");
		return -1;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, jws_pass_cb, &asked);
	BIO_free(bio);
	/* the queue would otherwise surface in an unrelated caller's check */
	ERR_clear_error();
	if (pkey == NULL && asked) {
		xasprintf(cause, "is encrypted with a passphrase; tokend reads "
		    "an unencrypted key (openssl pkey -in KEY -out NEW), kept "
		    "secret by its file's mode or systemd's credentials");
		return -1;
	}
	if (pkey == NULL && memmem(pem, len, "PRIVATE KEY-----", 16) != NULL) {
		xasprintf(cause, "holds a PEM private key that cannot be "
		    "read: its text is damaged");
		return -1;
	}
	if (pkey == NULL) {
		xasprintf(cause, "holds no PEM private key (\"PRIVATE KEY\", "
		    "\"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")");
		return -1;
	}
	if (jws_key_check(pkey, cause) != 0) {
		EVP_PKEY_free(pkey);
		return -1;
	}
	key = xcalloc(1, sizeof *key);
	key->pkey = pkey;
	*out = key;
	return 0;
}

/* The EVP_PKEY, for a caller that matches it to a certificate. */
void *
jws_key_pkey(const struct jws_key *key)
{
	return key->pkey;
}

/* OpenSSL clears a private key's numbers as it frees them. */
void
jws_key_free(struct jws_key *key)
{
	if (key == NULL)
		return;
	EVP_PKEY_free(key->pkey);
	free(key);
}

enum jws_alg
jws_key_default_alg(const struct jws_key *key)
{
	switch (EVP_PKEY_get_base_id(key->pkey)) {
	case EVP_PKEY_EC:
		return JWS_ES256;
	case EVP_PKEY_ED25519:
		return JWS_EDDSA;
	default:
		return JWS_RS256;
	}
}

static int
jws_key_fits(const struct jws_key *key, enum jws_alg alg)
{
	switch (EVP_PKEY_get_base_id(key->pkey)) {
	case EVP_PKEY_RSA:
		return alg == JWS_RS256 || alg == JWS_PS256;
	case EVP_PKEY_EC:
		return alg == JWS_ES256;
	case EVP_PKEY_ED25519:
		return alg == JWS_EDDSA;
	default:
		return 0;
	}
}

/* 0 when key can sign alg; -1 with a cause naming what would. */
int
jws_key_alg_ok(const struct jws_key *key, enum jws_alg alg, char **cause)
{
	static const char *const want[] = {
		[JWS_RS256] = "an RSA key", [JWS_PS256] = "an RSA key",
		[JWS_ES256] = "an EC P-256 key", [JWS_EDDSA] = "an Ed25519 key",
		[JWS_HS256] = "a client secret, not a key",
	};
	const char	*have;

	if (jws_key_fits(key, alg))
		return 0;
	switch (EVP_PKEY_get_base_id(key->pkey)) {
	case EVP_PKEY_RSA:
		have = "an RSA key (RS256 or PS256)";
		break;
	case EVP_PKEY_EC:
		have = "an EC P-256 key (ES256)";
		break;
	default:
		have = "an Ed25519 key (EdDSA)";
		break;
	}
	xasprintf(cause, "%s needs %s; this is %s", jws_alg_name(alg),
	    (size_t)alg < sizeof want / sizeof want[0] ? want[alg] : "?",
	    have);
	return -1;
}

/* ---- the RFC 7638 thumbprint ---- */

/* A BIGNUM parameter as base64url: minimal (pad 0) or pad bytes long. */
static char *
jws_bn_param(EVP_PKEY *pkey, const char *param, int pad)
{
	unsigned char	*buf;
	BIGNUM		*bn = NULL;
	char		*out = NULL;
	int		 n;

	if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
		return NULL;
	n = pad > 0 ? pad : BN_num_bytes(bn);
	buf = xcalloc(1, (size_t)n + 1);
	if (BN_bn2binpad(bn, buf, n) == n)
		out = oauth_base64url(buf, (size_t)n);
	free(buf);
	BN_free(bn);
	return out;
}

/*
 * The public key's canonical JWK (RFC 7638 3.2: the required members
 * only, in lexical order, no white space). Every value is base64url or
 * a fixed name: nothing to escape.
 */
static char *
jws_key_jwk(const struct jws_key *key)
{
	unsigned char	 raw[JWS_ED25519_LEN];
	size_t		 rawlen = sizeof raw;
	char		*a = NULL, *b = NULL, *jwk = NULL;

	switch (EVP_PKEY_get_base_id(key->pkey)) {
	case EVP_PKEY_RSA:
		a = jws_bn_param(key->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
		b = jws_bn_param(key->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
		if (a != NULL && b != NULL)
			xasprintf(&jwk, "{\"e\":\"%s\",\"kty\":\"RSA\","
			    "\"n\":\"%s\"}", a, b);
		break;
	case EVP_PKEY_EC:
		a = jws_bn_param(key->pkey, OSSL_PKEY_PARAM_EC_PUB_X,
		    JWS_P256_LEN);
		b = jws_bn_param(key->pkey, OSSL_PKEY_PARAM_EC_PUB_Y,
		    JWS_P256_LEN);
		if (a != NULL && b != NULL)
			xasprintf(&jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\","
			    "\"x\":\"%s\",\"y\":\"%s\"}", a, b);
		break;
	case EVP_PKEY_ED25519:
		if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &rawlen) == 1 &&
		    rawlen == sizeof raw) {
			a = oauth_base64url(raw, rawlen);
			xasprintf(&jwk, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\","
			    "\"x\":\"%s\"}", a);
		}
		break;
	}
	free(a);
	free(b);
	return jwk;
}

/*
 * The RFC 7638 JWK thumbprint (base64url of the SHA-256 of the public
 * key's canonical JWK): what providers show beside a registered key, and
 * safe to log. NULL if OpenSSL cannot give the public key's numbers.
 */
char *
jws_key_fingerprint(const struct jws_key *key)
{
	unsigned char	 md[32];
	char		*jwk;

	if ((jwk = jws_key_jwk(key)) == NULL)
		return NULL;
	sha256(jwk, strlen(jwk), md);
	free(jwk);
	return oauth_base64url(md, sizeof md);
}

/* ---- signing ---- */

/* base64url(header) "." base64url(payload): what is signed. */
static char *
jws_signing_input(const char *header, const char *payload)
{
	char	*h, *p, *out;

	h = oauth_base64url((const unsigned char *)header, strlen(header));
	p = oauth_base64url((const unsigned char *)payload, strlen(payload));
	xasprintf(&out, "%s.%s", h, p);
	free(h);
	free(p);
	return out;
}

/* input "." base64url(sig); input is consumed. */
static char *
jws_finish(char *input, const unsigned char *sig, size_t len)
{
	char	*s, *out;

	s = oauth_base64url(sig, len);
	xasprintf(&out, "%s.%s", input, s);
	free(s);
	free(input);
	return out;
}

/*
 * ECDSA as EVP gives it (DER, RFC 3279) to JWS's r || s, each left-padded
 * to 32 bytes (RFC 7518 3.4).
 */
static int
jws_ecdsa_raw(const unsigned char *der, size_t len,
    unsigned char raw[2 * JWS_P256_LEN])
{
	const unsigned char	*p = der;
	const BIGNUM		*r, *s;
	ECDSA_SIG		*sig;
	int			 ok;

	if (len > LONG_MAX ||
	    (sig = d2i_ECDSA_SIG(NULL, &p, (long)len)) == NULL)
		return -1;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = p == der + len &&
	    BN_bn2binpad(r, raw, JWS_P256_LEN) == JWS_P256_LEN &&
	    BN_bn2binpad(s, raw + JWS_P256_LEN, JWS_P256_LEN) == JWS_P256_LEN;
	ECDSA_SIG_free(sig);
	return ok ? 0 : -1;
}

/* The EVP set-up for alg: the digest, and RSA's padding. */
static int
jws_sign_init(EVP_MD_CTX *ctx, EVP_PKEY *pkey, enum jws_alg alg)
{
	EVP_PKEY_CTX	*pctx;

	/* Ed25519 hashes inside the algorithm: no digest of ours */
	if (EVP_DigestSignInit(ctx, &pctx, alg == JWS_EDDSA ? NULL :
	    EVP_sha256(), NULL, pkey) != 1)
		return -1;
	switch (alg) {
	case JWS_RS256:
		return EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PADDING) == 1 ? 0 : -1;
	case JWS_PS256:
		return EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PSS_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
		    JWS_PSS_SALT_LEN) == 1 ? 0 : -1;
	default:
		return 0;
	}
}

/*
 * The compact JWS of header and payload (JSON texts, used as given)
 * signed by key with alg. NULL: the key cannot sign alg
 * (jws_key_alg_ok tells why), or OpenSSL failed.
 */
char *
jws_sign(const struct jws_key *key, enum jws_alg alg, const char *header,
    const char *payload)
{
	unsigned char	*sig = NULL, raw[2 * JWS_P256_LEN];
	EVP_MD_CTX	*ctx;
	char		*input, *out = NULL;
	size_t		 siglen = 0;

	if (!jws_key_fits(key, alg))
		return NULL;
	input = jws_signing_input(header, payload);
	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		free(input);
		return NULL;
	}
	/* one-shot EVP_DigestSign: the only form Ed25519 takes */
	if (jws_sign_init(ctx, key->pkey, alg) == 0 &&
	    EVP_DigestSign(ctx, NULL, &siglen, (unsigned char *)input,
	    strlen(input)) == 1) {
		sig = xcalloc(1, siglen);
		if (EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)input,
		    strlen(input)) != 1)
			siglen = 0;
	}
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (siglen > 0 && alg == JWS_ES256) {
		if (jws_ecdsa_raw(sig, siglen, raw) == 0)
			out = jws_finish(input, raw, sizeof raw);
	} else if (siglen > 0)
		out = jws_finish(input, sig, siglen);
	if (out == NULL)
		free(input);
	free(sig);
	return out;
}

/*
 * HS256 (client_secret_jwt, RFC 7523 2.2 with RFC 7518 3.2) keyed by
 * secret[0..len). NULL for an empty secret or when OpenSSL fails. RFC
 * 7518 wants 32 bytes or more; which secrets to accept is the caller's
 * (a provider's secret is what it is).
 */
char *
jws_sign_hmac(const void *secret, size_t len, const char *header,
    const char *payload)
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0;
	char		*input, *out;

	if (len == 0 || len > INT_MAX)
		return NULL;
	input = jws_signing_input(header, payload);
	if (HMAC(EVP_sha256(), secret, (int)len, (unsigned char *)input,
	    strlen(input), md, &mdlen) == NULL) {
		ERR_clear_error();
		free(input);
		return NULL;
	}
	out = jws_finish(input, md, mdlen);
	explicit_bzero(md, sizeof md);
	return out;
}

/* ---- service-account key files ---- */

/* json-c frees without wiping: clear the private key's text first. */
static void
jws_sa_wipe(struct json_object *obj)
{
	struct json_object	*v;

	if (json_object_is_type(obj, json_type_object) &&
	    json_object_object_get_ex(obj, "private_key", &v) &&
	    json_object_is_type(v, json_type_string))
		explicit_bzero((char *)json_object_get_string(v),
		    (size_t)json_object_get_string_len(v));
}

/* A string member of obj, copied; NULL if absent. -1 if not a string. */
static int
jws_sa_member(struct json_object *obj, const char *name, char **out)
{
	struct json_object	*v;

	*out = NULL;
	if (!json_object_object_get_ex(obj, name, &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	*out = xstrdup(json_object_get_string(v));
	return 0;
}

/*
 * A Google-style service-account key (the JSON a console downloads):
 * "type": "service_account", client_email, private_key (PEM), and
 * private_key_id and token_uri when present. The private key is only
 * copied here; jws_key_load judges it. Causes never quote a value.
 */
int
jws_service_account_parse(const char *buf, size_t len,
    struct service_account *sa, char **cause)
{
	static const char *const members[] = { "client_email",
	    "private_key_id", "private_key", "token_uri" };
	struct json_object	*obj, *v;
	const char		*why, *type;
	char		       **out[4];
	size_t			 i;

	memset(sa, 0, sizeof *sa);
	out[0] = &sa->client_email;
	out[1] = &sa->private_key_id;
	out[2] = &sa->private_key;
	out[3] = &sa->token_uri;
	if ((obj = oauth_parse_json(buf, len, &why)) == NULL) {
		xasprintf(cause, "is not a service-account key: %s", why);
		return -1;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		xasprintf(cause, "is not a service-account key: not a JSON "
		    "object");
		return -1;
	}
	type = json_object_object_get_ex(obj, "type", &v) &&
	    json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
	if (type == NULL || strcmp(type, "service_account") != 0) {
		xasprintf(cause, "is not a service-account key (its \"type\" "
		    "is %s, not \"service_account\")", type == NULL ?
		    "missing" : !strcmp(type, "authorized_user") ? "a user's "
		    "\"authorized_user\"" : "another");
		goto fail;
	}
	for (i = 0; i < sizeof members / sizeof members[0]; i++)
		if (jws_sa_member(obj, members[i], out[i]) != 0) {
			xasprintf(cause, "has a \"%s\" that is not a string",
			    members[i]);
			goto fail;
		}
	if (sa->client_email == NULL || *sa->client_email == '\0' ||
	    sa->private_key == NULL || *sa->private_key == '\0') {
		xasprintf(cause, "lacks \"%s\"", sa->client_email == NULL ||
		    *sa->client_email == '\0' ? "client_email" : "private_key");
		goto fail;
	}
	if (!str_is_printable(sa->client_email) || (sa->private_key_id !=
	    NULL && !str_is_printable(sa->private_key_id)) ||
	    (sa->token_uri != NULL && !str_is_printable(sa->token_uri))) {
		xasprintf(cause, "has a client_email, private_key_id or "
		    "token_uri with spaces or control characters");
		goto fail;
	}
	jws_sa_wipe(obj);
	json_object_put(obj);
	return 0;
fail:
	jws_sa_wipe(obj);
	json_object_put(obj);
	jws_service_account_clear(sa);
	return -1;
}

void
jws_service_account_clear(struct service_account *sa)
{
	free(sa->client_email);
	free(sa->private_key_id);
	freezero_str(sa->private_key);
	free(sa->token_uri);
	memset(sa, 0, sizeof *sa);
}
