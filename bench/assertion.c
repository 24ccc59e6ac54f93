/*
 * The cost of the signed client assertion a refresh makes: the real
 * oauth_assertion() (claims, a fresh random jti, JSON, base64url, the
 * signature) for a private_key_jwt client with a key of each kind, RS256
 * and PS256 (RSA 2048), ES256 (P-256) and EdDSA (Ed25519), and for a
 * client_secret_jwt client (HS256). The keys are made at start-up through
 * libcrypto and read back through jws_key_load, as a key file is.
 *
 * usage: assertion [ROUNDS [MS]]
 * Each round times every algorithm once, for about MS ms (default 200)
 * of CPU each, in an order that moves on by one from round to round; a
 * busy machine slows the algorithms of one round alike. Prints, a line
 * per algorithm,
 *   ALG CPU_US WALL_US N CPU_US_ROUND1 ... CPU_US_ROUNDn
 * CPU_US and WALL_US: the medians over ROUNDS (default 9) rounds of the
 * process CPU time and the wall time per assertion, in microseconds; N:
 * assertions per round. Every assertion is checked (three parts, a
 * signature of the algorithm's size), so a failing one cannot look fast.
 */
#define _GNU_SOURCE
#include <err.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "tokend.h"

#define ASSERTION_ROUNDS	9
#define ASSERTION_ROUNDS_MAX	99
#define ASSERTION_MS		200
#define ASSERTION_MS_MAX	10000
#define ASSERTION_WARM_US	20000.0	/* a warm-up batch lasts this long */
#define ASSERTION_RSA_BITS	2048
#define ASSERTION_RSA_SIG	(ASSERTION_RSA_BITS / 8)	/* bytes */
#define ASSERTION_LIFETIME_MS	300000
#define ASSERTION_URL		"https://login.example.com/oauth2/token"
#define ASSERTION_SECRET_LEN	32

struct assertion_case {
	enum jws_alg		 alg;
	const char		*key_type;	/* EVP_PKEY_Q_keygen's; NULL:
						   HS256's client secret */
	size_t			 sig_len;	/* bytes */
	struct account_conf	 ac;
	long			 n;		/* assertions per round */
	double			 cpu[ASSERTION_ROUNDS_MAX];	/* us each */
	double			 wall[ASSERTION_ROUNDS_MAX];
};

static struct assertion_case cases[] = {
	{ .alg = JWS_RS256, .key_type = "RSA", .sig_len = ASSERTION_RSA_SIG },
	{ .alg = JWS_PS256, .key_type = "RSA", .sig_len = ASSERTION_RSA_SIG },
	{ .alg = JWS_ES256, .key_type = "EC", .sig_len = 64 },	/* r || s */
	{ .alg = JWS_EDDSA, .key_type = "ED25519", .sig_len = 64 },
	{ .alg = JWS_HS256, .sig_len = 32 },
};
#define NCASES	(sizeof cases / sizeof cases[0])

static double
assertion_us(clockid_t id)
{
	struct timespec	 ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* A new key of type, through PEM (PKCS#8) and jws_key_load. */
static struct jws_key *
assertion_key(const char *type)
{
	struct jws_key	*key;
	EVP_PKEY	*pkey;
	BIO		*bio;
	char		*pem, *cause;
	long		 len;

	if (strcmp(type, "RSA") == 0)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, type,
		    (size_t)ASSERTION_RSA_BITS);
	else if (strcmp(type, "EC") == 0)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, type, "P-256");
	else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, type);
	if (pkey == NULL || (bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
	    NULL) != 1 || (len = BIO_get_mem_data(bio, &pem)) <= 0)
		errx(1, "cannot make the %s key", type);
	if (jws_key_load(pem, (size_t)len, &key, &cause) != 0)
		errx(1, "the %s key %s", type, cause);
	OPENSSL_cleanse(pem, (size_t)len);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	return key;
}

/* The account a refresh signs for, filled as config.c would. */
static void
assertion_setup(struct assertion_case *c)
{
	struct account_conf	*ac = &c->ac;
	unsigned char		 secret[ASSERTION_SECRET_LEN];

	ac->client_id = "0oa1b2c3d4e5f6g7h8i9";
	ac->assertion_lifetime = ASSERTION_LIFETIME_MS;
	ac->client_key_alg = (int)c->alg;
	if (c->key_type == NULL) {
		if (RAND_bytes(secret, sizeof secret) != 1)
			errx(1, "no random bytes for the client secret");
		ac->client_auth = CLIENT_AUTH_CLIENT_SECRET_JWT;
		ac->client_secret = oauth_base64url(secret, sizeof secret);
		explicit_bzero(secret, sizeof secret);
	} else {
		ac->client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT;
		ac->client_key = assertion_key(c->key_type);
	}
}

/* header.payload.signature, the signature of the algorithm's size */
static void
assertion_check(const struct assertion_case *c, const char *jwt)
{
	const char	*dot = strchr(jwt, '.'), *sig = strrchr(jwt, '.');

	if (dot == NULL || dot == sig || strlen(sig + 1) !=
	    (4 * c->sig_len + 2) / 3)
		errx(1, "%s: not a compact JWS with a signature of %zu bytes",
		    jws_alg_name(c->alg), c->sig_len);
}

/* n assertions at wall second now; the CPU and wall us of each. */
static void
assertion_batch(struct assertion_case *c, long n, int64_t now, double *cpu,
    double *wall)
{
	double	 cpu0, wall0;
	char	*jwt, *cause;
	long	 i;

	cpu0 = assertion_us(CLOCK_PROCESS_CPUTIME_ID);
	wall0 = assertion_us(CLOCK_MONOTONIC);
	for (i = 0; i < n; i++) {
		if ((jwt = oauth_assertion(&c->ac, GRANT_CLIENT_CREDENTIALS,
		    ASSERTION_URL, now, NULL, &cause)) == NULL)
			errx(1, "%s: %s", jws_alg_name(c->alg), cause);
		assertion_check(c, jwt);
		freezero_str(jwt);
	}
	*cpu = (assertion_us(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / (double)n;
	*wall = (assertion_us(CLOCK_MONOTONIC) - wall0) / (double)n;
}

/*
 * Warms the case up (OpenSSL's first use of a key, the caches) in
 * batches twice as long each time, and sets n to what takes ms.
 */
static void
assertion_calibrate(struct assertion_case *c, int ms, int64_t now)
{
	double	 cpu, wall;
	long	 n;

	for (n = 1;; n *= 2) {
		assertion_batch(c, n, now, &cpu, &wall);
		if (cpu * (double)n >= ASSERTION_WARM_US)
			break;
	}
	c->n = (long)(ms * 1000.0 / cpu);
	if (c->n < 1)
		c->n = 1;
}

static int
assertion_cmp(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
assertion_median(const double *v, int n)
{
	double	 s[ASSERTION_ROUNDS_MAX];

	memcpy(s, v, (size_t)n * sizeof s[0]);
	qsort(s, (size_t)n, sizeof s[0], assertion_cmp);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static int
assertion_arg(const char *s, int max)
{
	char	*end;
	long	 v;

	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 1 || v > max)
		errx(64, "%s: not a number from 1 to %d", s, max);
	return (int)v;
}

int
main(int argc, char *argv[])
{
	struct assertion_case	*c;
	int64_t			 now = (int64_t)time(NULL);
	int			 rounds = ASSERTION_ROUNDS, ms = ASSERTION_MS;
	int			 r, i;

	if (argc > 3) {
		fprintf(stderr, "usage: assertion [ROUNDS [MS]]\n");
		return 64;
	}
	if (argc > 1)
		rounds = assertion_arg(argv[1], ASSERTION_ROUNDS_MAX);
	if (argc > 2)
		ms = assertion_arg(argv[2], ASSERTION_MS_MAX);

	for (i = 0; i < (int)NCASES; i++) {
		assertion_setup(&cases[i]);
		assertion_calibrate(&cases[i], ms, now);
	}
	for (r = 0; r < rounds; r++)
		for (i = 0; i < (int)NCASES; i++) {
			c = &cases[(r + i) % NCASES];
			assertion_batch(c, c->n, now, &c->cpu[r], &c->wall[r]);
		}

	for (i = 0; i < (int)NCASES; i++) {
		c = &cases[i];
		printf("%s %.2f %.2f %ld", jws_alg_name(c->alg),
		    assertion_median(c->cpu, rounds),
		    assertion_median(c->wall, rounds), c->n);
		for (r = 0; r < rounds; r++)
			printf(" %.2f", c->cpu[r]);
		printf("\n");
		jws_key_free(c->ac.client_key);
		freezero_str(c->ac.client_secret);
	}
	return 0;
}
