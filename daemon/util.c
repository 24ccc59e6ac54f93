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

static int64_t
clock_ms(clockid_t id)
{
	struct timespec	 ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int64_t
clock_boot_ms(void)
{
	return clock_ms(CLOCK_BOOTTIME);
}

/*
 * Read a whole regular file of at most cap bytes, NUL-terminated.
 * Returns 0 or a negative errno (-EFBIG when it is larger than cap).
 */
int
read_file_capped(const char *path, size_t cap, char **out, size_t *outlen)
{
	struct stat	 st;
	char		*buf;
	size_t		 len = 0, size;
	ssize_t		 n;
	int		 fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return -errno;
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		return -saved;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return -EISDIR;
	}
	size = (st.st_size > 0 && (size_t)st.st_size <= cap) ?
	    (size_t)st.st_size + 1 : 4096;
	buf = xcalloc(1, size);
	for (;;) {
		if (len + 1 >= size) {
			if (size > cap) {
				explicit_bzero(buf, len);
				free(buf);
				close(fd);
				return -EFBIG;
			}
			buf = xreallocarray(buf, 2, size);
			memset(buf + size, 0, size);
			size *= 2;
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

/*
 * A short tag to tell tokens apart in logs: 32 bits of FNV-1a, which says
 * nothing useful about a token with more entropy than that.
 */
char *
fingerprint(const char *s)
{
	uint64_t	 h = 0xcbf29ce484222325ULL;
	char		*out;

	if (s == NULL)
		return xstrdup("none");
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	xasprintf(&out, "fp:%08x", (unsigned)(h ^ (h >> 32)));
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
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
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
