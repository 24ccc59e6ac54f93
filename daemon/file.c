/*
 * Files that are never half-written: a temp file in the target's folder,
 * written whole, given its mode and owner, synced, renamed over the
 * target, and the folder synced. A reader sees the old file or the new
 * one; a crash or a full disk leaves the old one in place.
 */
#define _GNU_SOURCE
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend.h"

#define TEMP_MARK	".tokend-"

static int
file_write_all(int fd, const void *data, size_t len)
{
	const char	*p = data;
	ssize_t		 n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
file_sync_dir(const char *dir)
{
	int	 fd, rc = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -errno;
	if (fsync(fd) == -1 && errno != EINVAL)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * Replace `path` with `data`. Mode, owner and group are set before the
 * file appears under its name: uid -1 leaves the owner as the daemon's,
 * gid -1 gives the file the daemon's group (not a setgid folder's). 0 or a negative errno; on
 * failure the old file is untouched and no temp file is left.
 *
 * Readers always see the old file or the new one. FILE_DURABLE adds the
 * fsyncs (file, then folder) that make the new one survive a power loss;
 * they cost about a millisecond each here, so they are kept for what
 * cannot be had again: a state file holding a refresh token.
 */
int
file_write_atomic(const char *path, const void *data, size_t len,
    mode_t mode, uid_t uid, gid_t gid, int flags)
{
	const char	*slash = strrchr(path, '/');
	char		*dir, *tmp;
	int		 fd, rc;

	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, (size_t)(slash - path));
	xasprintf(&tmp, "%s/.%s" TEMP_MARK "XXXXXX", dir,
	    slash != NULL ? slash + 1 : path);

	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		rc = -errno;
		goto out;
	}
	/*
	 * The group first, and always: in a setgid folder the file would
	 * otherwise keep the folder's group, which a 0640 mode lets read.
	 */
	if (fchown(fd, uid, gid != (gid_t)-1 ? gid : getegid()) == -1 ||
	    fchmod(fd, mode) == -1) {
		rc = -errno;
		goto fail;
	}
	if ((rc = file_write_all(fd, data, len)) != 0)
		goto fail;
	if ((flags & FILE_DURABLE) && fsync(fd) == -1) {
		rc = -errno;
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		rc = -errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		rc = -errno;
		goto fail;
	}
	if (flags & FILE_DURABLE)
		(void)file_sync_dir(dir);	/* the rename is done: that stands */
	rc = 0;
	goto out;
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
out:
	free(tmp);
	free(dir);
	return rc;
}

/* Remove temp files a crash left behind in `dir`. */
void
file_remove_stale_temps(const char *dir)
{
	struct dirent	*de;
	DIR		*d;
	int		 dfd;

	if ((d = opendir(dir)) == NULL)
		return;
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' ||
		    fnmatch(".*" TEMP_MARK "??????", de->d_name, FNM_PERIOD) != 0)
			continue;
		if (unlinkat(dfd, de->d_name, 0) == 0)
			log_info("removed stale temp file %s/%s", dir,
			    de->d_name);
	}
	closedir(d);
}
