/*
 * Small helpers every file uses: allocation that cannot fail quietly,
 * clocks, capped file reads, a random source for jitter, time formats.
 */
#define _GNU_SOURCE
#include <sys/random.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tokend.h"

void *
xcalloc(size_t n, size_t size)
{
	void	*p;

	if (n == 0 || size == 0)
		n = size = 1;
	if ((p = calloc(n, size)) == NULL)
		fatal("calloc");
	return p;
}

void *
xreallocarray(void *old, size_t n, size_t size)
{
	void	*p;

	if (n == 0 || size == 0)
		n = size = 1;
	if ((p = reallocarray(old, n, size)) == NULL)
		fatal("reallocarray");
	return p;
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatal("strndup");
	return p;
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n == -1)
		fatal("vasprintf");
	return n;
}

/* Wipe a secret string, then free it. */
void
freezero_str(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* Wipe len bytes of a secret, then free it. */
void
freezero(void *p, size_t len)
{
	if (p == NULL)
		return;
	explicit_bzero(p, len);
	free(p);
}

/*
 * Read a whole regular file of at most cap bytes, NUL-terminated: a file
 * of exactly cap bytes is read. Returns 0 or a negative errno: -EFBIG
 * when it is larger than cap, -EINVAL when it is not a regular file (a
 * FIFO, a device).
 */
int
read_file_capped(const char *path, size_t cap, char **out, size_t *outlen)
{
	struct stat	 st;
	char		*buf;
	size_t		 len = 0, size, grown;
	ssize_t		 n;
	int		 fd, saved;

	/* O_NONBLOCK: opening a FIFO must not hang start-up or a reload */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1)
		return -errno;
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		return -saved;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	size = (st.st_size > 0 && (size_t)st.st_size <= cap) ?
	    (size_t)st.st_size + 1 : 4096;
	buf = xcalloc(1, size);
	for (;;) {
		if (len + 1 >= size) {
			/* full: only a read of one byte past cap says EOF */
			if (len > cap) {
				explicit_bzero(buf, len);
				free(buf);
				close(fd);
				return -EFBIG;
			}
			grown = size <= cap / 2 ? size * 2 : cap + 2;
			buf = xreallocarray(buf, grown, 1);
			memset(buf + size, 0, grown - size);
			size = grown;
		}
		n = read(fd, buf + len, size - len - 1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			saved = errno;
			explicit_bzero(buf, len);
			free(buf);
			close(fd);
			return -saved;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > cap) {
		explicit_bzero(buf, len);
		free(buf);
		return -EFBIG;
	}
	buf[len] = '\0';
	*out = buf;
	if (outlen != NULL)
		*outlen = len;
	return 0;
}

/* Visible ASCII only: what a token or an error code may contain. */
int
str_is_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/* xoshiro256**: jitter needs spread, not secrecy. */
static uint64_t rng_s[4];

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next(void)
{
	uint64_t	 result, t;

	result = rotl(rng_s[1] * 5, 7) * 9;
	t = rng_s[1] << 17;
	rng_s[2] ^= rng_s[0];
	rng_s[3] ^= rng_s[1];
	rng_s[1] ^= rng_s[2];
	rng_s[0] ^= rng_s[3];
	rng_s[2] ^= t;
	rng_s[3] = rotl(rng_s[3], 45);
	return result;
}

void
rng_seed(uint64_t seed)
{
	uint64_t	 z;
	int		 i;

	if (seed == 0 && getrandom(&seed, sizeof seed, GRND_NONBLOCK) !=
	    (ssize_t)sizeof seed)
		seed = (uint64_t)clock_boot_ms() ^ ((uint64_t)getpid() << 32);
	/* splitmix64 spreads one seed over the whole state */
	for (i = 0; i < 4; i++) {
		z = (seed += 0x9e3779b97f4a7c15ULL);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		rng_s[i] = z ^ (z >> 31);
	}
}

/* Uniform in [0, 1). */
double
rng_unit(void)
{
	return (double)(rng_next() >> 11) * 0x1.0p-53;
}

/* SHA-256 (FIPS 180-4), for fingerprints only. */
static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

static uint32_t
ror32(uint32_t x, int n)
{
	return (x >> n) | (x << (32 - n));
}

static void
sha256_block(uint32_t h[8], const unsigned char *p)
{
	uint32_t	 w[64], a, b, c, d, e, f, g, hh, t1, t2;
	int		 i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[i * 4] << 24 | (uint32_t)p[i * 4 + 1] << 16 |
		    (uint32_t)p[i * 4 + 2] << 8 | p[i * 4 + 3];
	for (i = 16; i < 64; i++)
		w[i] = w[i - 16] + (ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^
		    (w[i - 15] >> 3)) + w[i - 7] + (ror32(w[i - 2], 17) ^
		    ror32(w[i - 2], 19) ^ (w[i - 2] >> 10));
	a = h[0]; b = h[1]; c = h[2]; d = h[3];
	e = h[4]; f = h[5]; g = h[6]; hh = h[7];
	for (i = 0; i < 64; i++) {
		t1 = hh + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) +
		    ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
		t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) +
		    ((a & b) ^ (a & c) ^ (b & c));
		hh = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
	explicit_bzero(w, sizeof w);
}

void
sha256(const void *data, size_t len, unsigned char out[32])
{
	uint32_t		 h[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
	};
	const unsigned char	*p = data;
	unsigned char		 tail[128];
	size_t			 rest, n, i;
	uint64_t		 bits = (uint64_t)len * 8;

	for (n = len; n >= 64; n -= 64, p += 64)
		sha256_block(h, p);
	rest = n;
	memset(tail, 0, sizeof tail);
	memcpy(tail, p, rest);
	tail[rest] = 0x80;
	n = rest + 1 + 8 <= 64 ? 64 : 128;
	for (i = 0; i < 8; i++)
		tail[n - 1 - i] = (unsigned char)(bits >> (i * 8));
	sha256_block(h, tail);
	if (n == 128)
		sha256_block(h, tail + 64);
	explicit_bzero(tail, sizeof tail);
	for (i = 0; i < 8; i++) {
		out[i * 4] = (unsigned char)(h[i] >> 24);
		out[i * 4 + 1] = (unsigned char)(h[i] >> 16);
		out[i * 4 + 2] = (unsigned char)(h[i] >> 8);
		out[i * 4 + 3] = (unsigned char)h[i];
	}
}

/*
 * A short tag to tell tokens apart in logs: "fp:" and the first 8 hex
 * digits of the token's SHA-256, so an operator can match it with
 * `printf %s "$TOKEN" | sha256sum`. 32 bits of a hash say nothing useful
 * about a token with far more entropy.
 */
char *
fingerprint(const char *s)
{
	unsigned char	 d[32];
	char		*out;

	if (s == NULL)
		return xstrdup("none");
	sha256(s, strlen(s), d);
	xasprintf(&out, "fp:%02x%02x%02x%02x", d[0], d[1], d[2], d[3]);
	return out;
}

/* "2026-11-23T17:04:00Z" from wall milliseconds. */
int
format_rfc3339(int64_t wall_ms, char *buf, size_t len)
{
	struct tm	 tm;
	time_t		 t = (time_t)(wall_ms / 1000);

	if (gmtime_r(&t, &tm) == NULL)
		return -EINVAL;
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return -ENOSPC;
	return 0;
}

static int
parse_digits(const char **p, int n, int *out)
{
	int	 v = 0, i;

	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

/*
 * Whether year-month-day names a day of the proleptic Gregorian calendar
 * (month 1 to 12). timegm() would read 2030-02-31 as 2030-03-03.
 */
int
date_valid(int year, int month, int day)
{
	static const int mdays[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	int	 leap;

	if (month < 1 || month > 12 || day < 1)
		return 0;
	leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	return day <= mdays[month - 1] + (month == 2 && leap);
}

/* RFC 3339 date-time, e.g. 2026-11-23T17:04:00.5+01:00, to wall ms. */
int
parse_rfc3339(const char *s, int64_t *out)
{
	struct tm	 tm;
	const char	*p = s;
	int		 y, mo, d, h, mi, sec, oh, om, sign;
	int64_t		 t;

	if (parse_digits(&p, 4, &y) || *p++ != '-' ||
	    parse_digits(&p, 2, &mo) || *p++ != '-' ||
	    parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -EINVAL;
	p++;
	if (parse_digits(&p, 2, &h) || *p++ != ':' ||
	    parse_digits(&p, 2, &mi) || *p++ != ':' ||
	    parse_digits(&p, 2, &sec))
		return -EINVAL;
	if (!date_valid(y, mo, d) || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		oh = om = 0;
		sign = 1;
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (parse_digits(&p, 2, &oh) || *p++ != ':' ||
		    parse_digits(&p, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
	} else
		return -EINVAL;
	if (*p != '\0')
		return -EINVAL;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = (int64_t)timegm(&tm);
	t -= sign * (oh * 3600 + om * 60);
	*out = t * 1000;
	return 0;
}

/*
 * A JSON string literal for visible ASCII text (what tokens are made of),
 * with quotes. Built by hand so that a secret lives only in buffers we
 * wipe, not in a JSON library's print buffer.
 */
char *
json_quote(const char *s)
{
	char	*out, *w;

	w = out = xcalloc(1, strlen(s) * 6 + 3);
	*w++ = '"';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			*w++ = '\\';
			*w++ = (char)c;
		} else if (c < 0x20 || c == 0x7f)
			w += sprintf(w, "\\u%04x", c);
		else
			*w++ = (char)c;
	}
	*w++ = '"';
	*w = '\0';
	return out;
}

static int
hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode s[0..len), '+' as a space (as forms and queries do), into
 * a new string, and its length (a %00 may come before its end) in *outlen
 * unless NULL. A '%' without two hex digits after it is NULL (the decoded
 * bytes wiped), or with `lenient` kept as it is.
 */
char *
percent_decode(const char *s, size_t len, int lenient, size_t *outlen)
{
	char	*out = xcalloc(1, len + 1);
	size_t	 i, j = 0;
	int	 hi, lo;

	for (i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len &&
		    (hi = hex_digit((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hex_digit((unsigned char)s[i + 2])) >= 0) {
			out[j++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (s[i] == '%' && !lenient) {
			explicit_bzero(out, len + 1);
			free(out);
			return NULL;
		} else
			out[j++] = s[i] == '+' ? ' ' : s[i];
	}
	if (outlen != NULL)
		*outlen = j;
	return out;
}

/* A copy of a NULL-terminated string vector (an argv). */
char **
strv_dup(char *const *v)
{
	char	**copy;
	size_t	  n, i;

	for (n = 0; v[n] != NULL; n++)
		;
	copy = xcalloc(n + 1, sizeof *copy);
	for (i = 0; i < n; i++)
		copy[i] = xstrdup(v[i]);
	return copy;
}

/* Whether two string vectors hold the same strings in the same order. */
int
strv_equal(char *const *a, char *const *b)
{
	size_t	 i;

	for (i = 0; a[i] != NULL && b[i] != NULL; i++)
		if (strcmp(a[i], b[i]) != 0)
			return 0;
	return a[i] == NULL && b[i] == NULL;
}

void
strv_free(char **v)
{
	size_t	 i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}
