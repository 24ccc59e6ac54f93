/*
 * libFuzzer target: state files round-trip. What store_load takes,
 * store_save writes and store_load takes again, with the same values; and
 * what save writes, load reads, however large and however escaped (the
 * load cap follows from the save side: this keeps the two in step).
 *
 * The first byte picks the form of the rest:
 *   even  a state file: load -> save -> load
 *   odd   a token built from the bytes: save -> load. Bytes 1-2, 3-4 and 5
 *         give the lengths of the access token, the refresh token and the
 *         type (0 to TOKEN_MAX, scaled from 0 to 0xffff; 0 to
 *         TOKEN_TYPE_MAX; 0: none),
 *         6-13 and 14-21 expires_at and obtained_at; the rest is the
 *         alphabet each field repeats, of the bytes that field may hold.
 *
 * Files go to a private folder on /dev/shm (else /tmp), removed at exit.
 */
#define _GNU_SOURCE
#include <sys/stat.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend.h"

#define NAME		"fuzz"
#define HEAD		21	/* bytes of lengths and times, build form */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	 dir[64];

static void
state_cleanup(void)
{
	char	*path;

	path = store_path(dir, NAME);
	unlink(path);
	free(path);
	rmdir(dir);
}

static void
state_setup(void)
{
	if (dir[0] != '\0')
		return;
	snprintf(dir, sizeof dir, "/dev/shm/tokend-fuzz-state-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		snprintf(dir, sizeof dir, "/tmp/tokend-fuzz-state-XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
	}
	atexit(state_cleanup);
}

static int
state_str_equal(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static int
state_token_equal(const struct token *a, const struct token *b)
{
	return state_str_equal(a->access_token, b->access_token) &&
	    state_str_equal(a->refresh_token, b->refresh_token) &&
	    state_str_equal(a->token_type, b->token_type) &&
	    a->expires_at == b->expires_at && a->obtained_at == b->obtained_at;
}

/* Save t, load it back: both succeed, and the values are t's. */
static void
state_save_load(const struct token *t, const struct token *want)
{
	struct token	 got;

	if (store_save(dir, NAME, t) != 0)
		__builtin_trap();
	if (store_load(dir, NAME, &got) != 0)
		__builtin_trap();
	if (!state_token_equal(&got, want))
		__builtin_trap();
	oauth_token_clear(&got);
}

static void
state_from_file(const uint8_t *data, size_t size)
{
	struct token	 first;
	char		*path;
	int		 fd;

	path = store_path(dir, NAME);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	free(path);
	if (fd == -1 || (size > 0 && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
	if (store_load(dir, NAME, &first) != 0)
		return;
	state_save_load(&first, &first);
	oauth_token_clear(&first);
}

/* n bytes of the alphabet's bytes that `keep` takes, or of `dflt`. */
static char *
state_field(size_t n, const uint8_t *alpha, size_t alen, int (*keep)(int),
    const char *dflt)
{
	char	*pick, *s;
	size_t	 np = 0, i;

	if (n == 0)
		return NULL;
	pick = malloc(alen + strlen(dflt) + 1);
	for (i = 0; i < alen; i++)
		if (keep(alpha[i]))
			pick[np++] = (char)alpha[i];
	if (np == 0) {
		np = strlen(dflt);
		memcpy(pick, dflt, np);
	}
	s = malloc(n + 1);
	for (i = 0; i < n; i++)
		s[i] = pick[i % np];
	s[n] = '\0';
	free(pick);
	return s;
}

static int
state_keep_visible(int c)
{
	return c >= 0x21 && c <= 0x7e;
}

static int
state_keep_not_nul(int c)
{
	return c != 0;
}

/* Two bytes scaled to 0 .. TOKEN_MAX: 0xffff is the largest token. */
static size_t
state_len(const uint8_t *p)
{
	return (size_t)(p[0] | p[1] << 8) * TOKEN_MAX / 0xffff;
}

static int64_t
state_time(const uint8_t *p)
{
	uint64_t	 v = 0;
	int		 i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	/* whole seconds, as the file keeps them, within what ms hold */
	return (int64_t)(v % ((uint64_t)INT64_MAX / 1000 + 1)) * 1000;
}

static void
state_from_token(const uint8_t *data, size_t size)
{
	struct token	 t, want;
	const uint8_t	*alpha = data + HEAD;
	size_t		 alen = size - HEAD;

	if (size < HEAD)
		return;
	memset(&t, 0, sizeof t);
	/* the quotes and backslashes that make escaping longest, by default */
	t.access_token = state_field(state_len(data), alpha, alen,
	    state_keep_visible, "\"\\");
	t.refresh_token = state_field(state_len(data + 2), alpha, alen,
	    state_keep_not_nul, "\"\\\x01");
	t.token_type = state_field(data[4] % (TOKEN_TYPE_MAX + 1), alpha, alen,
	    state_keep_visible, "\"\\");
	t.expires_at = state_time(data + 5);
	t.obtained_at = state_time(data + 13);
	want = t;
	/* what load makes of what is not there */
	if (want.token_type == NULL)
		want.token_type = "Bearer";
	if (want.expires_at == 0)
		want.access_token = NULL;
	state_save_load(&t, &want);
	oauth_token_clear(&t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	state_setup();
	if (size == 0)
		return 0;
	if ((data[0] & 1) == 0)
		state_from_file(data + 1, size - 1);
	else
		state_from_token(data + 1, size - 1);
	return 0;
}
