/*
 * Unit tests for jws.c: PEM private keys, the RFC 7638 thumbprint, and
 * compact JWS against the RFCs' examples where the algorithm is
 * deterministic (RFC 7515 A.1 and A.2, RFC 8037 A.4); ES256 and PS256 are
 * randomized, so those are verified with OpenSSL against the public key.
 * Every key is the RFCs' published one or generated here: nothing secret
 * is committed.
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

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "tokend.h"
#include "unit.h"

/* RFC 7515 A.1 and A.2: the header and payload, CR LF and all */
#define A1_HEADER	"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}"
#define A_PAYLOAD	"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n " \
			"\"http://example.com/is_root\":true}"
#define A_PAYLOAD_B64	"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQog" \
			"Imh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"

/* RFC 7515 A.2's RSA key */
static const char a2_n[] =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qP"
    "CJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47s"
    "oMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2"
    "R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoud"
    "F8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
static const char a2_d[] =
    "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgv"
    "fTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f"
    "3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQl"
    "BjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuh"
    "LhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
static const char a2_p[] =
    "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3"
    "KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXq"
    "hJTBgIPgtldC-KDV5z-y2XDwGUc";
static const char a2_q[] =
    "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZS"
    "e7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ1"
    "1BKBBypeeF6689rjcJIDEz9RWdc";

/* RFC 7517 A.2's RSA key, whose thumbprint is RFC 7638 3.1's example */
static const char k7517_n[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aP"
    "FFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl9"
    "3lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdA"
    "ZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3"
    "XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
static const char k7517_d[] =
    "X4cTteJY_gn4FYPsXB8rdXix5vwsg1FLN5E3EaG6RJoVH-HLLKD9M7dx5oo7GURknchnrRwe"
    "UkC7hT5fJLM0WbFAKNLWY2vv7B6NqXSzUvxT0_YSfqijwp3RTzlBaCxWp4doFk5N2o8Gy_nH"
    "NKroADIkJ46pRUohsXywbReAdYaMwFs9tv8d_cPVY3i07a3t8MN6TNwm0dSawm9v47UiCl3S"
    "k5ZiG7xojPLu4sbg1U2jx4IBTNBznbJSzFHK66jT8bgkuqsk0GjskDJk19Z4qwjwbsnn4j2W"
    "Bii3RL-Us2lGVkY8fkFzme1z0HbIkfz0Y6mqnOYtqc0X4jfcKoAC8Q";
static const char k7517_p[] =
    "83i-7IvMGXoMXCskv73TKr8637FiO7Z27zv8oj6pbWUQyLPQBQxtPVnwD20R-60eTDmD2ujn"
    "Mt5PoqMrm8RfmNhVWDtjjMmCMjOpSXicFHj7XOuVIYQyqVWlWEh6dN36GVZYk93N8Bc9vY41"
    "xy8B9RzzOGVQzXvNEvn7O0nVbfs";
static const char k7517_q[] =
    "3dfOR9cuYq-0S-mkFLzgItgMEfFzB2q3hWehMuG0oCuqnb3vobLyumqjVZQO1dIrdwgTnCdp"
    "YzBcOfW5r370AFXjiWft_NGEiovonizhKpo9VVS78TzFgxkIdrecRezsZ-1kYd_s1qDbxtkD"
    "EgfAITAG9LUnADun4vIcb6yelxk";

/* RFC 7515 A.3's P-256 key */
static const char a3_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char a3_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
static const char a3_d[] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";

/* RFC 8037 A.1's Ed25519 key */
static const char ed_d[] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
static const char ed_x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

/* keys generated once for the whole run (RSA takes a while under ASan) */
static EVP_PKEY	*rsa_key, *ec_key, *ed_key;

/* ---- helpers ---- */

/* base64url (no padding) to bytes; *len set; fails the test if bad. */
static unsigned char *
b64url_decode(const char *s, size_t slen, size_t *len)
{
	unsigned char	*out;
	char		*std;
	size_t		 i, padded = (slen + 3) / 4 * 4;
	int		 n;

	std = calloc(1, padded + 1);
	out = calloc(1, padded / 4 * 3 + 1);
	assert_non_null(std);
	assert_non_null(out);
	for (i = 0; i < slen; i++)
		std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	for (; i < padded; i++)
		std[i] = '=';
	n = EVP_DecodeBlock(out, (unsigned char *)std, (int)padded);
	if (n < 0)
		fail_msg("not base64url: %.*s", (int)slen, s);
	*len = (size_t)n - (padded - slen);
	free(std);
	return out;
}

static BIGNUM *
b64url_bn(const char *s)
{
	unsigned char	*buf;
	BIGNUM		*bn;
	size_t		 len;

	buf = b64url_decode(s, strlen(s), &len);
	bn = BN_bin2bn(buf, (int)len, NULL);
	assert_non_null(bn);
	free(buf);
	return bn;
}

/* A key pair of type from the parameters in bld, which is freed. */
static EVP_PKEY *
pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM	*params;
	EVP_PKEY_CTX	*ctx;
	EVP_PKEY	*pkey = NULL;

	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	assert_true(params != NULL && ctx != NULL);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR,
	    params), 1);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

/* An RSA private key from a JWK's n, e, d, p, q; the CRT numbers derived. */
static EVP_PKEY *
rsa_from_jwk(const char *n64, const char *d64, const char *p64,
    const char *q64)
{
	OSSL_PARAM_BLD	*bld;
	EVP_PKEY	*pkey;
	BN_CTX		*bnctx;
	BIGNUM		*n, *e, *d, *p, *q, *dp, *dq, *qi, *t;

	n = b64url_bn(n64);
	d = b64url_bn(d64);
	p = b64url_bn(p64);
	q = b64url_bn(q64);
	e = BN_new();
	dp = BN_new();
	dq = BN_new();
	qi = BN_new();
	t = BN_new();
	bnctx = BN_CTX_new();
	assert_true(e && dp && dq && qi && t && bnctx);
	assert_true(BN_set_word(e, 65537));	/* "AQAB" */
	/* a slip in copying the RFC's numbers shows here, not as a bad
	   signature */
	assert_true(BN_mul(t, p, q, bnctx));
	if (BN_cmp(t, n) != 0)
		fail_msg("the RFC key's p * q is not its n");
	assert_true(BN_sub(t, p, BN_value_one()) && BN_mod(dp, d, t, bnctx));
	assert_true(BN_sub(t, q, BN_value_one()) && BN_mod(dq, d, t, bnctx));
	assert_non_null(BN_mod_inverse(qi, q, p, bnctx));
	bld = OSSL_PARAM_BLD_new();
	assert_non_null(bld);
	assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qi));
	pkey = pkey_from_params("RSA", bld);
	BN_CTX_free(bnctx);
	BN_free(n);
	BN_free(e);
	BN_clear_free(d);
	BN_clear_free(p);
	BN_clear_free(q);
	BN_clear_free(dp);
	BN_clear_free(dq);
	BN_clear_free(qi);
	BN_free(t);
	return pkey;
}

/* A P-256 private key from a JWK's x, y, d. */
static EVP_PKEY *
ec_from_jwk(const char *x64, const char *y64, const char *d64)
{
	unsigned char	 pub[65], *x, *y;
	OSSL_PARAM_BLD	*bld;
	EVP_PKEY	*pkey;
	BIGNUM		*d;
	size_t		 xlen, ylen;

	x = b64url_decode(x64, strlen(x64), &xlen);
	y = b64url_decode(y64, strlen(y64), &ylen);
	assert_int_equal(xlen, 32);
	assert_int_equal(ylen, 32);
	pub[0] = 0x04;		/* uncompressed (SEC 1 2.3.3) */
	memcpy(pub + 1, x, 32);
	memcpy(pub + 33, y, 32);
	d = b64url_bn(d64);
	bld = OSSL_PARAM_BLD_new();
	assert_non_null(bld);
	assert_true(OSSL_PARAM_BLD_push_utf8_string(bld,
	    OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
	    pub, sizeof pub) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d));
	pkey = pkey_from_params("EC", bld);
	BN_clear_free(d);
	free(x);
	free(y);
	return pkey;
}

enum pem_form {
	PEM_PKCS8,		/* "PRIVATE KEY" */
	PEM_TRADITIONAL,	/* "RSA PRIVATE KEY", "EC PRIVATE KEY" */
	PEM_PKCS8_ENCRYPTED,	/* "ENCRYPTED PRIVATE KEY" */
	PEM_TRADITIONAL_ENCRYPTED, /* with Proc-Type: 4,ENCRYPTED */
	PEM_PUBLIC,		/* "PUBLIC KEY" */
};

/* pkey as PEM in form, NUL-terminated, *len its length. */
static char *
pem_of(EVP_PKEY *pkey, enum pem_form form, size_t *len)
{
	static unsigned char	 pass[] = "correct horse";
	BIO			*bio;
	char			*data, *out;
	long			 n;
	int			 ok = 0;

	bio = BIO_new(BIO_s_mem());
	assert_non_null(bio);
	switch (form) {
	case PEM_PKCS8:
		ok = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
		    NULL);
		break;
	case PEM_TRADITIONAL:
		ok = PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL,
		    NULL, 0, NULL, NULL);
		break;
	case PEM_PKCS8_ENCRYPTED:
		ok = PEM_write_bio_PKCS8PrivateKey(bio, pkey,
		    EVP_aes_256_cbc(), (char *)pass, sizeof pass - 1, NULL,
		    NULL);
		break;
	case PEM_TRADITIONAL_ENCRYPTED:
		ok = PEM_write_bio_PrivateKey_traditional(bio, pkey,
		    EVP_aes_256_cbc(), pass, sizeof pass - 1, NULL, NULL);
		break;
	case PEM_PUBLIC:
		ok = PEM_write_bio_PUBKEY(bio, pkey);
		break;
	}
	if (ok != 1)
		fail_msg("cannot write PEM form %d", (int)form);
	n = BIO_get_mem_data(bio, &data);
	assert_true(n > 0);
	out = calloc(1, (size_t)n + 1);
	assert_non_null(out);
	memcpy(out, data, (size_t)n);
	*len = (size_t)n;
	BIO_free(bio);
	return out;
}

static struct jws_key *
load_ok(const char *what, EVP_PKEY *pkey, enum pem_form form)
{
	struct jws_key	*key = NULL;
	char		*pem, *cause = NULL;
	size_t		 len;

	pem = pem_of(pkey, form, &len);
	if (jws_key_load(pem, len, &key, &cause) != 0)
		fail_msg("%s: refused: %s", what, cause);
	assert_non_null(key);
	freezero_str(pem);
	return key;
}

/* Load text and expect a refusal whose cause holds want. */
static void
check_refused(const char *what, const char *text, size_t len,
    const char *want)
{
	static char	 sentinel;
	struct jws_key	*key = (struct jws_key *)&sentinel;
	char		*cause = NULL;

	if (jws_key_load(text, len, &key, &cause) != -1)
		fail_msg("%s: accepted", what);
	if (key != (struct jws_key *)&sentinel)
		fail_msg("%s: output set on failure", what);
	assert_non_null(cause);
	if (strstr(cause, want) == NULL)
		fail_msg("%s: cause '%s' lacks '%s'", what, cause, want);
	/* the cause never quotes the key: no line of its base64 body */
	if (strstr(cause, "MII") != NULL || strstr(cause, "-----") != NULL)
		fail_msg("%s: cause quotes the key: %s", what, cause);
	free(cause);
}

static void
check_refused_key(const char *what, EVP_PKEY *pkey, enum pem_form form,
    const char *want)
{
	char	*pem;
	size_t	 len;

	pem = pem_of(pkey, form, &len);
	check_refused(what, pem, len, want);
	freezero_str(pem);
}

/*
 * Verify a compact JWS with OpenSSL and pkey's public half: 1 good, 0
 * bad. ES256's raw r || s goes back to DER, which EVP wants.
 */
static int
verify(EVP_PKEY *pkey, enum jws_alg alg, const char *jws)
{
	const char	*dot;
	unsigned char	*sig, *der = NULL;
	ECDSA_SIG	*es;
	EVP_MD_CTX	*ctx;
	EVP_PKEY_CTX	*pctx;
	size_t		 siglen;
	int		 rc, derlen;

	dot = strrchr(jws, '.');
	assert_non_null(dot);
	sig = b64url_decode(dot + 1, strlen(dot + 1), &siglen);
	if (alg == JWS_ES256) {
		CHECK_I64("ES256 signature length", siglen, 64);
		es = ECDSA_SIG_new();
		assert_non_null(es);
		assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
		    BN_bin2bn(sig + 32, 32, NULL)), 1);
		derlen = i2d_ECDSA_SIG(es, &der);
		assert_true(derlen > 0);
		ECDSA_SIG_free(es);
		free(sig);
		sig = der;
		siglen = (size_t)derlen;
	}
	ctx = EVP_MD_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_DigestVerifyInit(ctx, &pctx, alg == JWS_EDDSA ?
	    NULL : EVP_sha256(), NULL, pkey), 1);
	if (alg == JWS_PS256) {
		/* a fixed salt length: one of any other length fails */
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx,
		    EVP_sha256()), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
	}
	rc = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)jws,
	    (size_t)(dot - jws));
	EVP_MD_CTX_free(ctx);
	if (der != NULL)
		OPENSSL_free(der);
	else
		free(sig);
	return rc == 1;
}

/* A character changed in the signature, then in the payload: refused. */
static void
check_tampered(EVP_PKEY *pkey, enum jws_alg alg, const char *jws)
{
	static const char *const where[] = { "signature", "payload" };
	char	*bad, *c;
	int	 i;

	for (i = 0; i < 2; i++) {
		bad = strdup(jws);
		assert_non_null(bad);
		c = (i == 0 ? strrchr(bad, '.') : strchr(bad, '.')) + 1;
		*c = *c == 'A' ? 'B' : 'A';
		if (verify(pkey, alg, bad))
			fail_msg("%s: a changed %s verifies", jws_alg_name(alg),
			    where[i]);
		free(bad);
	}
}

static int
keys_setup(void **state)
{
	(void)state;
	rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	return rsa_key != NULL && ec_key != NULL && ed_key != NULL ? 0 : -1;
}

static int
keys_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(ed_key);
	return 0;
}

/* ---- algorithms ---- */

static void
test_alg_names(void **state)
{
	static const char *const bad[] = {
		"", "rs256", "RS384", "none", "EDDSA", "Ed25519", "HS256 ",
	};
	enum jws_alg	 a, got;
	size_t		 i;

	(void)state;
	for (a = JWS_RS256; a <= JWS_HS256; a++) {
		got = (enum jws_alg)99;
		CHECK_I64(jws_alg_name(a), jws_alg_parse(jws_alg_name(a), &got),
		    0);
		CHECK_I64(jws_alg_name(a), got, a);
	}
	CHECK_STR("EdDSA", jws_alg_name(JWS_EDDSA), "EdDSA");
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		got = (enum jws_alg)99;
		CHECK_I64(bad[i], jws_alg_parse(bad[i], &got), -EINVAL);
		CHECK_I64(bad[i], got, 99);
	}
}

/* ---- the RFCs' deterministic examples ---- */

static void
test_hs256_rfc7515_a1(void **state)
{
	static const char k[] = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1q"
	    "S0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
	unsigned char	*key;
	size_t		 len;
	char		*jws;

	(void)state;
	key = b64url_decode(k, strlen(k), &len);
	CHECK_I64("A.1 key length", len, 64);
	jws = jws_sign_hmac(key, len, A1_HEADER, A_PAYLOAD);
	CHECK_STR("A.1", jws, "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
	    A_PAYLOAD_B64 ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
	free(jws);
	/* no secret, no MAC */
	assert_null(jws_sign_hmac(key, 0, A1_HEADER, A_PAYLOAD));
	free(key);
}

static void
test_rs256_rfc7515_a2(void **state)
{
	static const char want[] = "eyJhbGciOiJSUzI1NiJ9." A_PAYLOAD_B64 "."
	    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
	    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4"
	    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
	    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv"
	    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB"
	    "p0igcN_IoypGlUPQGe77Rw";
	static const enum pem_form forms[] = { PEM_PKCS8, PEM_TRADITIONAL };
	struct jws_key	*key;
	EVP_PKEY	*pkey;
	char		*jws;
	size_t		 i;

	(void)state;
	pkey = rsa_from_jwk(a2_n, a2_d, a2_p, a2_q);
	for (i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		key = load_ok("A.2", pkey, forms[i]);
		CHECK_I64("A.2 default", jws_key_default_alg(key), JWS_RS256);
		jws = jws_sign(key, JWS_RS256, "{\"alg\":\"RS256\"}",
		    A_PAYLOAD);
		CHECK_STR("A.2", jws, want);
		assert_true(verify(pkey, JWS_RS256, jws));
		check_tampered(pkey, JWS_RS256, jws);
		free(jws);
		jws_key_free(key);
	}
	EVP_PKEY_free(pkey);
}

static void
test_eddsa_rfc8037_a4(void **state)
{
	unsigned char	*d, pub[32];
	struct jws_key	*key;
	EVP_PKEY	*pkey;
	size_t		 dlen, publen = sizeof pub;
	char		*jws, *x, *fp;

	(void)state;
	d = b64url_decode(ed_d, strlen(ed_d), &dlen);
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, d, dlen);
	assert_non_null(pkey);
	free(d);
	/* the RFC's x is the public half of its d */
	assert_int_equal(EVP_PKEY_get_raw_public_key(pkey, pub, &publen), 1);
	x = oauth_base64url(pub, publen);
	CHECK_STR("A.1 x", x, ed_x);
	free(x);
	key = load_ok("Ed25519", pkey, PEM_PKCS8);
	CHECK_I64("Ed25519 default", jws_key_default_alg(key), JWS_EDDSA);
	jws = jws_sign(key, JWS_EDDSA, "{\"alg\":\"EdDSA\"}",
	    "Example of Ed25519 signing");
	CHECK_STR("A.4", jws, "eyJhbGciOiJFZERTQSJ9."
	    "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
	    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5B"
	    "hVsPt9g7sVvpAr_MuM0KAg");
	assert_true(verify(pkey, JWS_EDDSA, jws));
	check_tampered(pkey, JWS_EDDSA, jws);
	free(jws);
	/* RFC 8037 A.3: the key's thumbprint */
	fp = jws_key_fingerprint(key);
	CHECK_STR("A.3", fp, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
	free(fp);
	jws_key_free(key);
	EVP_PKEY_free(pkey);
}

/* ---- the randomized ones ---- */

static void
test_es256(void **state)
{
	unsigned char	*sig;
	struct jws_key	*key;
	EVP_PKEY	*pkey;
	char		*jws, *first = NULL;
	size_t		 siglen;
	int		 i, padded = 0;

	(void)state;
	key = load_ok("P-256", ec_key, PEM_PKCS8);
	CHECK_I64("P-256 default", jws_key_default_alg(key), JWS_ES256);
	/*
	 * Enough signatures that some r or s is below 2^248 (each is, one
	 * time in 256; none in 4000 values: odds of 1 in 10^7): DER gives
	 * it in 31 bytes or fewer, JWS left-padded to 32.
	 */
	for (i = 0; i < 2000; i++) {
		jws = jws_sign(key, JWS_ES256, "{\"alg\":\"ES256\"}", A_PAYLOAD);
		assert_non_null(jws);
		if (!verify(ec_key, JWS_ES256, jws))
			fail_msg("ES256 signature %d does not verify: %s", i,
			    jws);
		sig = b64url_decode(strrchr(jws, '.') + 1,
		    strlen(strrchr(jws, '.') + 1), &siglen);
		CHECK_I64("ES256 length", siglen, 64);
		if (sig[0] == 0 || sig[32] == 0)
			padded++;
		free(sig);
		if (first == NULL)
			first = jws;
		else {
			if (strcmp(first, jws) == 0)
				fail_msg("ES256 gave one signature twice");
			free(jws);
		}
	}
	if (padded == 0)
		fail_msg("no r or s needed padding in 2000 signatures");
	check_tampered(ec_key, JWS_ES256, first);
	free(first);
	jws_key_free(key);
	/* RFC 7515 A.3's key, through the traditional form */
	pkey = ec_from_jwk(a3_x, a3_y, a3_d);
	key = load_ok("A.3", pkey, PEM_TRADITIONAL);
	jws = jws_sign(key, JWS_ES256, "{\"alg\":\"ES256\"}", A_PAYLOAD);
	assert_non_null(jws);
	assert_memory_equal(jws, "eyJhbGciOiJFUzI1NiJ9." A_PAYLOAD_B64 ".",
	    sizeof("eyJhbGciOiJFUzI1NiJ9." A_PAYLOAD_B64 ".") - 1);
	assert_true(verify(pkey, JWS_ES256, jws));
	free(jws);
	jws_key_free(key);
	EVP_PKEY_free(pkey);
}

static void
test_ps256(void **state)
{
	struct jws_key	*key;
	char		*a, *b;

	(void)state;
	key = load_ok("RSA", rsa_key, PEM_TRADITIONAL);
	a = jws_sign(key, JWS_PS256, "{\"alg\":\"PS256\"}", A_PAYLOAD);
	b = jws_sign(key, JWS_PS256, "{\"alg\":\"PS256\"}", A_PAYLOAD);
	assert_non_null(a);
	assert_non_null(b);
	/* a random salt each time */
	if (strcmp(a, b) == 0)
		fail_msg("PS256 gave one signature twice");
	assert_true(verify(rsa_key, JWS_PS256, a));
	assert_true(verify(rsa_key, JWS_PS256, b));
	/* PSS, not PKCS #1 v1.5 */
	assert_false(verify(rsa_key, JWS_RS256, a));
	check_tampered(rsa_key, JWS_PS256, a);
	free(a);
	free(b);
	/* and RS256 with the same key is PKCS #1 v1.5 */
	a = jws_sign(key, JWS_RS256, "{\"alg\":\"RS256\"}", A_PAYLOAD);
	assert_true(verify(rsa_key, JWS_RS256, a));
	assert_false(verify(rsa_key, JWS_PS256, a));
	free(a);
	jws_key_free(key);
}

/* ---- thumbprints ---- */

static void
test_thumbprint_rfc7638(void **state)
{
	unsigned char	 md[32];
	struct jws_key	*key, *key2;
	EVP_PKEY	*pkey;
	char		*fp, *fp2, *jwk, *want;

	(void)state;
	pkey = rsa_from_jwk(k7517_n, k7517_d, k7517_p, k7517_q);
	key = load_ok("RFC 7517 A.2", pkey, PEM_PKCS8);
	fp = jws_key_fingerprint(key);
	CHECK_STR("RFC 7638 3.1", fp,
	    "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	free(fp);
	jws_key_free(key);
	EVP_PKEY_free(pkey);

	/* EC: the canonical JWK from RFC 7515 A.3's own x and y */
	pkey = ec_from_jwk(a3_x, a3_y, a3_d);
	key = load_ok("A.3", pkey, PEM_PKCS8);
	if (asprintf(&jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\","
	    "\"y\":\"%s\"}", a3_x, a3_y) == -1)
		fail_msg("asprintf");
	sha256(jwk, strlen(jwk), md);
	want = oauth_base64url(md, sizeof md);
	fp = jws_key_fingerprint(key);
	CHECK_STR("EC thumbprint", fp, want);
	CHECK_I64("thumbprint length", strlen(fp), 43);
	free(fp);
	free(want);
	free(jwk);
	jws_key_free(key);
	EVP_PKEY_free(pkey);

	/* one key, one thumbprint, whatever its file's form */
	key = load_ok("RSA PKCS#8", rsa_key, PEM_PKCS8);
	key2 = load_ok("RSA traditional", rsa_key, PEM_TRADITIONAL);
	fp = jws_key_fingerprint(key);
	fp2 = jws_key_fingerprint(key2);
	CHECK_STR("RSA forms", fp, fp2);
	free(fp);
	free(fp2);
	jws_key_free(key);
	jws_key_free(key2);
}

/* ---- loading ---- */

static void
test_key_load_forms(void **state)
{
	static const struct {
		const char	*what;
		EVP_PKEY	**pkey;
		enum pem_form	 form;
		enum jws_alg	 alg;
	} cases[] = {
		{ "RSA PKCS#8", &rsa_key, PEM_PKCS8, JWS_RS256 },
		{ "RSA traditional", &rsa_key, PEM_TRADITIONAL, JWS_RS256 },
		{ "EC PKCS#8", &ec_key, PEM_PKCS8, JWS_ES256 },
		{ "EC traditional", &ec_key, PEM_TRADITIONAL, JWS_ES256 },
		{ "Ed25519 PKCS#8", &ed_key, PEM_PKCS8, JWS_EDDSA },
	};
	struct jws_key	*key;
	char		*pem, *text, *jws;
	size_t		 i, len;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		key = load_ok(cases[i].what, *cases[i].pkey, cases[i].form);
		CHECK_I64(cases[i].what, jws_key_default_alg(key),
		    cases[i].alg);
		CHECK_I64(cases[i].what, jws_key_alg_ok(key, cases[i].alg,
		    NULL), 0);
		jws = jws_sign(key, cases[i].alg, "{}", "{}");
		assert_non_null(jws);
		if (!verify(*cases[i].pkey, cases[i].alg, jws))
			fail_msg("%s: does not verify", cases[i].what);
		free(jws);
		jws_key_free(key);
	}
	/* text before the PEM block (a comment, openssl's Bag Attributes) */
	pem = pem_of(ec_key, PEM_PKCS8, &len);
	if (asprintf(&text, "client key for example.com\n%s", pem) == -1)
		fail_msg("asprintf");
	key = NULL;
	CHECK_I64("leading text", jws_key_load(text, strlen(text), &key, NULL),
	    0);
	jws_key_free(key);
	freezero_str(text);
	freezero_str(pem);
	jws_key_free(NULL);
}

static void
test_key_load_refused(void **state)
{
	static const char fake[] = "-----BEGIN PRIVATE KEY-----\n"
	    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
	    "-----END PRIVATE KEY-----\n";
	EVP_PKEY	*pkey;
	char		*big;

	(void)state;
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(pkey);
	check_refused_key("RSA 1024", pkey, PEM_PKCS8, "RSA key of 1024 bits");
	check_refused_key("RSA 1024 traditional", pkey, PEM_TRADITIONAL,
	    "at least 2048");
	EVP_PKEY_free(pkey);
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	assert_non_null(pkey);
	check_refused_key("P-384", pkey, PEM_PKCS8, "curve secp384r1 (P-384)");
	check_refused_key("P-384 traditional", pkey, PEM_TRADITIONAL,
	    "only P-256");
	EVP_PKEY_free(pkey);
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
	assert_non_null(pkey);
	check_refused_key("secp256k1", pkey, PEM_PKCS8, "curve secp256k1");
	EVP_PKEY_free(pkey);
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	assert_non_null(pkey);
	check_refused_key("Ed448", pkey, PEM_PKCS8, "ED448 key");
	EVP_PKEY_free(pkey);

	check_refused_key("encrypted PKCS#8", rsa_key, PEM_PKCS8_ENCRYPTED,
	    "encrypted");
	check_refused_key("encrypted traditional", ec_key,
	    PEM_TRADITIONAL_ENCRYPTED, "encrypted");
	check_refused_key("public key", rsa_key, PEM_PUBLIC,
	    "no PEM private key");

	check_refused("empty", "", 0, "no PEM private key");
	check_refused("garbage", "hello, world\n", 13, "no PEM private key");
	check_refused("a damaged key", fake, sizeof fake - 1,
	    "a PEM private key that cannot be read: its text is damaged");
	big = calloc(1, 65 * 1024);
	assert_non_null(big);
	memset(big, 'A', 65 * 1024);
	check_refused("huge", big, 65 * 1024, "larger than 64 KiB");
	free(big);
}

static void
test_alg_mismatch(void **state)
{
	static const struct {
		EVP_PKEY	**pkey;
		enum jws_alg	 alg;
		const char	*cause;		/* NULL: it fits */
	} cases[] = {
		{ &rsa_key, JWS_RS256, NULL },
		{ &rsa_key, JWS_PS256, NULL },
		{ &rsa_key, JWS_ES256, "ES256 needs an EC P-256 key; this is an "
		    "RSA key (RS256 or PS256)" },
		{ &rsa_key, JWS_EDDSA, "EdDSA needs an Ed25519 key; this is an "
		    "RSA key (RS256 or PS256)" },
		{ &rsa_key, JWS_HS256, "HS256 needs a client secret, not a "
		    "key; this is an RSA key (RS256 or PS256)" },
		{ &ec_key, JWS_ES256, NULL },
		{ &ec_key, JWS_RS256, "RS256 needs an RSA key; this is an EC "
		    "P-256 key (ES256)" },
		{ &ec_key, JWS_PS256, "PS256 needs an RSA key; this is an EC "
		    "P-256 key (ES256)" },
		{ &ed_key, JWS_EDDSA, NULL },
		{ &ed_key, JWS_ES256, "ES256 needs an EC P-256 key; this is an "
		    "Ed25519 key (EdDSA)" },
	};
	struct jws_key	*key;
	char		*cause, *jws, what[32];
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "case %zu", i);
		key = load_ok(what, *cases[i].pkey, PEM_PKCS8);
		cause = NULL;
		CHECK_I64(what, jws_key_alg_ok(key, cases[i].alg, &cause),
		    cases[i].cause == NULL ? 0 : -1);
		CHECK_STR(what, cause, cases[i].cause);
		free(cause);
		jws = jws_sign(key, cases[i].alg, "{}", "{}");
		if ((jws == NULL) != (cases[i].cause != NULL))
			fail_msg("%s: jws_sign %s", what, jws == NULL ?
			    "failed" : "signed with a key that does not fit");
		free(jws);
		jws_key_free(key);
	}
}

/* ---- service-account key files ---- */

static void
test_service_account(void **state)
{
	static const struct {
		const char	*json;
		const char	*cause;		/* NULL: parsed */
	} cases[] = {
		{ "{\"type\":\"service_account\",\"project_id\":\"p\","
		  "\"private_key_id\":\"abc123\",\"private_key\":\"-----BEGIN "
		  "PRIVATE KEY-----\\nMII\\n-----END PRIVATE KEY-----\\n\","
		  "\"client_email\":\"sa@p.iam.gserviceaccount.com\","
		  "\"token_uri\":\"https://oauth2.googleapis.com/token\"}", NULL },
		{ "{\"type\":\"service_account\",\"private_key\":\"k\","
		  "\"client_email\":\"e@x\"}", NULL },
		{ "{\"type\":\"authorized_user\",\"client_id\":\"x\"}",
		  "is not a service-account key (its \"type\" is a user's" },
		{ "{\"private_key\":\"k\",\"client_email\":\"e\"}",
		  "is not a service-account key (its \"type\" is missing" },
		{ "{\"type\":\"service_account\",\"private_key\":\"k\"}",
		  "lacks \"client_email\"" },
		{ "{\"type\":\"service_account\",\"client_email\":\"e\"}",
		  "lacks \"private_key\"" },
		{ "{\"type\":\"service_account\",\"client_email\":7,"
		  "\"private_key\":\"k\"}",
		  "has a \"client_email\" that is not a string" },
		{ "{\"type\":\"service_account\",\"client_email\":\"a b\","
		  "\"private_key\":\"k\"}", "has a client_email, private_key_id" },
		{ "[1]", "is not a service-account key: not a JSON object" },
		{ "{\"type\":", "is not a service-account key: not valid JSON" },
	};
	struct service_account	 sa;
	char			*cause;
	size_t			 i;
	int			 rc;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cause = NULL;
		rc = jws_service_account_parse(cases[i].json,
		    strlen(cases[i].json), &sa, &cause);
		if (cases[i].cause == NULL) {
			if (rc != 0)
				fail_msg("case %zu: %s", i, cause);
			assert_non_null(sa.client_email);
			assert_non_null(sa.private_key);
			jws_service_account_clear(&sa);
			continue;
		}
		if (rc == 0)
			fail_msg("case %zu: parsed, expected '%s'", i,
			    cases[i].cause);
		if (strncmp(cause, cases[i].cause, strlen(cases[i].cause)))
			fail_msg("case %zu: '%s', expected '%s...'", i, cause,
			    cases[i].cause);
		/* the causes never quote a value */
		assert_null(strstr(cause, "sa@"));
		assert_null(sa.client_email);
		free(cause);
	}
	/* the members of the full one */
	assert_int_equal(jws_service_account_parse(cases[0].json,
	    strlen(cases[0].json), &sa, &cause), 0);
	CHECK_STR("email", sa.client_email, "sa@p.iam.gserviceaccount.com");
	CHECK_STR("kid", sa.private_key_id, "abc123");
	CHECK_STR("token_uri", sa.token_uri,
	    "https://oauth2.googleapis.com/token");
	assert_true(!strncmp(sa.private_key, "-----BEGIN PRIVATE KEY-----\n",
	    28));
	jws_service_account_clear(&sa);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alg_names),
		cmocka_unit_test(test_hs256_rfc7515_a1),
		cmocka_unit_test(test_rs256_rfc7515_a2),
		cmocka_unit_test(test_eddsa_rfc8037_a4),
		cmocka_unit_test(test_es256),
		cmocka_unit_test(test_ps256),
		cmocka_unit_test(test_thumbprint_rfc7638),
		cmocka_unit_test(test_key_load_forms),
		cmocka_unit_test(test_key_load_refused),
		cmocka_unit_test(test_alg_mismatch),
		cmocka_unit_test(test_service_account),
	};

	return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
