/*
 * What every cmocka unit test here shares: checks that print both values,
 * and private temp folders. Include after cmocka.h and tokend.h.
 */
#ifndef UNIT_H
#define UNIT_H

#include <sys/stat.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_STR(what, got, want) do {					\
	const char *got_ = (got), *want_ = (want);			\
	if (got_ == NULL || want_ == NULL ? got_ != want_ :		\
	    strcmp(got_, want_) != 0)					\
		fail_msg("%s: got '%s', expected '%s'", (what),		\
		    got_ ? got_ : "(null)", want_ ? want_ : "(null)");	\
} while (0)

#define CHECK_I64(what, got, want) do {					\
	long long got_ = (long long)(got), want_ = (long long)(want);	\
	if (got_ != want_)						\
		fail_msg("%s: got %lld, expected %lld", (what), got_,	\
		    want_);						\
} while (0)

static inline int
unit_rm_cb(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* cmocka setup: a fresh folder in *state, and no systemd folders set. */
static inline int
tmpdir_setup(void **state)
{
	char	*dir;

	unsetenv("CREDENTIALS_DIRECTORY");
	unsetenv("STATE_DIRECTORY");
	unsetenv("RUNTIME_DIRECTORY");
	dir = strdup("/tmp/tokend-unit-XXXXXX");
	if (dir == NULL || mkdtemp(dir) == NULL)
		return -1;
	*state = dir;
	return 0;
}

static inline int
tmpdir_teardown(void **state)
{
	char	*dir = *state;

	unsetenv("CREDENTIALS_DIRECTORY");
	nftw(dir, unit_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
	return 0;
}

static inline char *
path_in(const char *dir, const char *name)
{
	char	*p;

	if (asprintf(&p, "%s/%s", dir, name) == -1)
		fail_msg("asprintf");
	return p;
}

#endif /* UNIT_H */
