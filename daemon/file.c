/*
 * Files that are never half-written: a temp file in the target's folder,
 * written whole, given its mode and owner, synced, renamed over the
 * target, and the folder synced. A reader sees the old file or the new
 * one; a crash or a full disk leaves the old one in place.
 *
 * Token files are written by root, often into folders other users can
 * reach, so their folder is also held to a rule: every folder from / down
 * to it must be one that only root or tokend's own user can change
 * (file_folder_check), and no symbolic link is followed on the way while
 * tokend writes. A link that is there when the configuration is read is
 * resolved then, if root or tokend owns it (file_resolve_path).
 */
#define _GNU_SOURCE
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include "tokend.h"

#define TEMP_MARK	".tokend-"
#define TEMP_RANDOM	6		/* characters after TEMP_MARK */
#define TEMP_TRIES	100
#define LINKS_MAX	40		/* as the kernel's MAXSYMLINKS */
#define DEPTH_MAX	(PATH_MAX / 2)	/* folders from one up to / */

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
file_sync_dir(int dfd)
{
	int	 fd, rc = 0;

	/* the folder's own fd is O_PATH, which cannot be synced */
	if ((fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		return -errno;
	if (fsync(fd) == -1 && errno != EINVAL)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * May a folder owned by `owner` with `mode` lie on the way to a token
 * file? Only if nobody but root and tokend's user (self, and `also` unless
 * it is (uid_t)-1) can rename, replace or add what is in it: whoever can
 * could swap the next folder for a link or a folder of their own. A
 * sticky folder (/tmp) lets others add names but not move ours.
 */
enum file_folder_verdict
file_folder_check(uid_t owner, mode_t mode, uid_t self, uid_t also)
{
	if (owner != 0 && owner != self && (also == (uid_t)-1 ||
	    owner != also))
		return FILE_FOLDER_OWNER;
	if ((mode & (S_IWGRP | S_IWOTH)) && !(mode & S_ISVTX))
		return FILE_FOLDER_WRITABLE;
	return FILE_FOLDER_OK;
}

/* Why the folder `name` with st fails file_folder_check. */
static char *
file_folder_cause(enum file_folder_verdict v, const char *name,
    const struct stat *st, uid_t self)
{
	char	*cause;

	if (v == FILE_FOLDER_OWNER)
		xasprintf(&cause, "folder %s belongs to uid %u, who is neither "
		    "root nor the user tokend runs as (uid %u), and could "
		    "swap what is in it", name, (unsigned)st->st_uid,
		    (unsigned)self);
	else if (st->st_mode & S_IWOTH)
		xasprintf(&cause, "folder %s is writable by others (mode %04o) "
		    "and not sticky: they could swap what is in it", name,
		    (unsigned)(st->st_mode & 07777));
	else
		xasprintf(&cause, "folder %s is writable by its group (gid %u, "
		    "mode %04o) and not sticky: its members could swap what is "
		    "in it", name, (unsigned)st->st_gid,
		    (unsigned)(st->st_mode & 07777));
	return cause;
}

/*
 * The folder `levels` above dir, by name: dir with that many parts cut.
 * Deeper than its name (a folder moved meanwhile), it has none.
 */
static char *
file_dir_ancestor(const char *dir, int levels)
{
	char	*out;
	size_t	 len = strlen(dir);

	for (; levels > 0; levels--) {
		while (len > 1 && dir[len - 1] == '/')
			len--;
		if (len <= 1)
			break;
		while (len > 0 && dir[len - 1] != '/')
			len--;
	}
	while (len > 1 && dir[len - 1] == '/')
		len--;
	if (levels > 0 || len == 0) {
		xasprintf(&out, "a folder above %s", dir);
		return out;
	}
	return xstrndup(dir, len);
}

/*
 * Hold every folder from dfd up to / to file_folder_check. Going up
 * through ".." sees the folders the file will really be in, whatever
 * their names are now. 0, or -EPERM with *cause, or another -errno.
 */
static int
file_check_chain(int dfd, const char *dir, char **cause)
{
	struct stat	 st, up;
	enum file_folder_verdict v;
	uid_t		 self = geteuid();
	char		*name;
	int		 fd = dfd, parent, depth, rc = -ELOOP;

	if (fstat(fd, &st) == -1)
		return -errno;
	for (depth = 0; depth < DEPTH_MAX; depth++) {
		if ((v = file_folder_check(st.st_uid, st.st_mode, self,
		    (uid_t)-1)) != FILE_FOLDER_OK) {
			name = file_dir_ancestor(dir, depth);
			*cause = file_folder_cause(v, name, &st, self);
			free(name);
			rc = -EPERM;
			break;
		}
		parent = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (parent == -1 || fstat(parent, &up) == -1) {
			rc = -errno;
			if (parent != -1)
				close(parent);
			break;
		}
		if (fd != dfd)
			close(fd);
		fd = parent;
		if (up.st_dev == st.st_dev && up.st_ino == st.st_ino) {
			rc = 0;		/* "/" is its own parent */
			break;
		}
		st = up;
	}
	if (fd != dfd)
		close(fd);
	return rc;
}

/* The first symbolic link on dir, by name, for a message; NULL: none. */
static char *
file_find_link(const char *dir)
{
	struct stat	 st;
	char		*prefix;
	size_t		 i, len = strlen(dir);

	for (i = 1; i <= len; i++) {
		if (i < len && dir[i] != '/')
			continue;
		prefix = xstrndup(dir, i);
		if (lstat(prefix, &st) == 0 && S_ISLNK(st.st_mode))
			return prefix;
		free(prefix);
	}
	return NULL;
}

/* Open dir one component at a time, never following a link. */
static int
file_walk_dir(const char *dir)
{
	struct stat	 st;
	char		*copy, *part, *save = NULL;
	int		 fd, next, rc;

	fd = open(dir[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY |
	    O_CLOEXEC);
	if (fd == -1)
		return -errno;
	copy = xstrdup(dir);
	for (part = strtok_r(copy, "/", &save); part != NULL;
	    part = strtok_r(NULL, "/", &save)) {
		next = openat(fd, part, O_PATH | O_NOFOLLOW | O_DIRECTORY |
		    O_CLOEXEC);
		if (next == -1) {
			rc = -errno;
			/* O_PATH|O_NOFOLLOW says ENOTDIR for a link */
			if (rc == -ENOTDIR && fstatat(fd, part, &st,
			    AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
				rc = -ELOOP;
			close(fd);
			free(copy);
			return rc;
		}
		close(fd);
		fd = next;
	}
	free(copy);
	return fd;
}

/*
 * An O_PATH fd of dir, opened without following any symbolic link:
 * openat2(RESOLVE_NO_SYMLINKS), or, where the kernel lacks it (ENOSYS)
 * or a seccomp filter refuses it (EPERM), one component at a time.
 */
static int
file_open_dir_nofollow(const char *dir, int flags)
{
#ifdef SYS_openat2
	struct open_how	 how;
	int		 fd;

	if (!(flags & FILE_WALK)) {
		memset(&how, 0, sizeof how);
		how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
		how.resolve = RESOLVE_NO_SYMLINKS;
		fd = (int)syscall(SYS_openat2, AT_FDCWD, dir, &how, sizeof how);
		if (fd != -1)
			return fd;
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
	}
#else
	(void)flags;
#endif
	return file_walk_dir(dir);
}

/*
 * The folder that path's file goes in, as an O_PATH fd. With
 * FILE_SAFE_PATH, reached through no symbolic link and on a chain of
 * folders that file_folder_check accepts; a refusal is -ELOOP or -EPERM
 * with *cause.
 */
static int
file_open_dir(const char *dir, int flags, char **cause)
{
	char	*link;
	int	 fd, rc;

	if (!(flags & FILE_SAFE_PATH)) {
		fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		return fd == -1 ? -errno : fd;
	}
	if ((fd = file_open_dir_nofollow(dir, flags)) < 0) {
		if (fd == -ELOOP) {
			link = file_find_link(dir);
			xasprintf(cause, "%s is a symbolic link, and tokend "
			    "follows none while it writes; the path is resolved "
			    "when the configuration is read", link != NULL ?
			    link : "a folder on the way");
			free(link);
		}
		return fd;
	}
	if ((rc = file_check_chain(fd, dir, cause)) != 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* A new temp file for name in dfd, 0600; its name in tmp. */
static int
file_create_temp(int dfd, const char *name, char **tmp)
{
	static const char	 chars[] = "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	unsigned char		 rnd[TEMP_RANDOM];
	char			*p;
	size_t			 i;
	int			 fd, tries, err;

	for (tries = 0; tries < TEMP_TRIES; tries++) {
		if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) !=
		    (ssize_t)sizeof rnd)
			for (i = 0; i < sizeof rnd; i++)
				rnd[i] = (unsigned char)(rng_unit() * 256);
		xasprintf(tmp, ".%s" TEMP_MARK "%*s", name, TEMP_RANDOM, "");
		p = *tmp + strlen(*tmp) - TEMP_RANDOM;
		for (i = 0; i < sizeof rnd; i++)
			p[i] = chars[rnd[i] % (sizeof chars - 1)];
		/* O_NOFOLLOW: a link planted under this name is not opened */
		fd = openat(dfd, *tmp, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd != -1)
			return fd;
		err = errno;
		free(*tmp);
		*tmp = NULL;
		if (err != EEXIST)
			return -err;
	}
	return -EEXIST;
}

/*
 * Replace `path` with `data`. Mode, owner and group are set before the
 * file appears under its name: uid -1 leaves the owner as the daemon's,
 * gid -1 gives the file the daemon's group (not a setgid folder's). 0 or
 * a negative errno; on failure the old file is untouched and no temp file
 * is left. A refusal under FILE_SAFE_PATH also says why in *cause (when
 * cause is not NULL; the caller frees it).
 *
 * Everything happens relative to one fd of the folder, so the temp file
 * and the rename are in the same folder whatever its name points to later.
 * Readers always see the old file or the new one. FILE_DURABLE adds the
 * fsyncs (file, then folder) that make the new one survive a power loss;
 * they cost about a millisecond each here, so they are kept for what
 * cannot be had again: a state file holding a refresh token.
 */
int
file_write_atomic(const char *path, const void *data, size_t len,
    mode_t mode, uid_t uid, gid_t gid, int flags, char **cause)
{
	const char	*slash = strrchr(path, '/'), *name;
	char		*dir, *tmp = NULL, *why = NULL;
	int		 dfd, fd, rc;

	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, (size_t)(slash - path));
	name = slash != NULL ? slash + 1 : path;
	if (*name == '\0') {
		free(dir);
		return -EISDIR;
	}
	if ((dfd = file_open_dir(dir, flags, &why)) < 0) {
		rc = dfd;
		goto out;
	}
	if ((fd = file_create_temp(dfd, name, &tmp)) < 0) {
		rc = fd;
		goto out;
	}
	/* the group first: a setgid folder's group must never read it */
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
	if (renameat(dfd, tmp, dfd, name) == -1) {
		rc = -errno;
		goto fail;
	}
	if (flags & FILE_DURABLE)
		(void)file_sync_dir(dfd);	/* the rename is done: that stands */
	rc = 0;
	goto out;
fail:
	if (fd != -1)
		close(fd);
	unlinkat(dfd, tmp, 0);
out:
	if (dfd >= 0)
		close(dfd);
	if (cause != NULL)
		*cause = why;
	else
		free(why);
	free(tmp);
	free(dir);
	return rc;
}

/*
 * Remove `path`, through the same folder rules as file_write_atomic (a
 * link planted on the way is not followed). 0, or a negative errno
 * (-ENOENT when it is already gone); a refusal also says why in *cause
 * (NULL otherwise; the caller frees it).
 */
int
file_remove(const char *path, int flags, char **cause)
{
	const char	*slash = strrchr(path, '/');
	char		*dir;
	int		 dfd, rc = 0;

	*cause = NULL;
	if (slash == NULL || slash[1] == '\0')
		return -EINVAL;
	dir = slash == path ? xstrdup("/") :
	    xstrndup(path, (size_t)(slash - path));
	if ((dfd = file_open_dir(dir, flags, cause)) < 0)
		rc = dfd;
	else {
		if (unlinkat(dfd, slash + 1, 0) == -1)
			rc = -errno;
		close(dfd);
	}
	free(dir);
	return rc;
}

/*
 * Resolve the folder of `path` (absolute) through the symbolic links it
 * has now, holding each folder and link met on the way to
 * file_folder_check (a link's owner alone counts: its mode is always
 * 0777). A folder that does not exist yet, or that this process may not
 * look into, is kept as written, and checked when tokend writes. 0 with
 * *resolved; -1 with *cause.
 *
 * Why resolve rather than refuse links: many systems have root's own
 * links on such paths (/var/run -> /run on Debian), and refusing them
 * would break working setups for no gain. A link root or tokend owns, in
 * a folder nobody else can change, is as trustworthy as the folders
 * themselves; resolving it once, when the configuration is read, leaves
 * nothing to follow when tokend writes, so a link that appears later is
 * refused there.
 */
int
file_resolve_path(const char *path, uid_t also, char **resolved,
    char **cause)
{
	struct stat	 st;
	enum file_folder_verdict v;
	uid_t		 self = geteuid();
	const char	*slash = strrchr(path, '/');
	char		*cur, *rest, *part, *next, *target, *tmp;
	size_t		 len, n;
	ssize_t		 tlen;
	int		 links = 0, missing = 0;

	*cause = NULL;
	if (path[0] != '/' || slash == NULL) {
		xasprintf(cause, "%s is not an absolute path", path);
		return -1;
	}
	if (stat("/", &st) == -1) {
		xasprintf(cause, "cannot look at /: %s", strerror(errno));
		return -1;
	}
	if ((v = file_folder_check(st.st_uid, st.st_mode, self, also)) !=
	    FILE_FOLDER_OK) {
		*cause = file_folder_cause(v, "/", &st, self);
		return -1;
	}
	cur = xstrdup("");		/* "" stands for "/" */
	rest = xstrndup(path, (size_t)(slash - path));
	part = rest;
	while (*cause == NULL) {
		while (*part == '/')
			part++;
		if (*part == '\0')
			break;
		n = strcspn(part, "/");
		if (n == 1 && part[0] == '.') {
			part += n;
			continue;
		}
		if (n == 2 && part[0] == '.' && part[1] == '.') {
			/* cur has no links: its parent is the one by name */
			if ((tmp = strrchr(cur, '/')) != NULL)
				*tmp = '\0';
			part += n;
			continue;
		}
		xasprintf(&next, "%s/%.*s", cur, (int)n, part);
		part += n;
		if (missing || lstat(next, &st) == -1) {
			/*
			 * Not there yet, or not for us to see (ProtectHome=):
			 * checked when tokend writes, which fails as before.
			 */
			if (!missing && errno != ENOENT && errno != EACCES)
				xasprintf(cause, "cannot look at %s: %s", next,
				    strerror(errno));
			missing = 1;
			free(cur);
			cur = next;
			continue;
		}
		if (S_ISLNK(st.st_mode)) {
			if (file_folder_check(st.st_uid, 0, self, also) !=
			    FILE_FOLDER_OK)
				xasprintf(cause, "%s is a symbolic link owned by "
				    "uid %u, who is neither root nor the user "
				    "tokend runs as (uid %u)", next,
				    (unsigned)st.st_uid, (unsigned)self);
			else if (++links > LINKS_MAX)
				xasprintf(cause, "%s: too many symbolic links",
				    next);
			else {
				target = xcalloc(1, PATH_MAX);
				tlen = readlink(next, target, PATH_MAX - 1);
				if (tlen <= 0)
					xasprintf(cause, "cannot read the link "
					    "%s: %s", next, tlen == 0 ?
					    "empty" : strerror(errno));
				else {
					/* the link's target, then the rest */
					xasprintf(&tmp, "%s/%s", target, part);
					free(rest);
					part = rest = tmp;
					if (target[0] == '/')
						cur[0] = '\0';
				}
				free(target);
			}
			free(next);
			continue;
		}
		if (!S_ISDIR(st.st_mode))
			xasprintf(cause, "%s is not a folder", next);
		else if ((v = file_folder_check(st.st_uid, st.st_mode, self,
		    also)) != FILE_FOLDER_OK)
			*cause = file_folder_cause(v, next, &st, self);
		free(cur);
		cur = next;
	}
	free(rest);
	if (*cause != NULL) {
		free(cur);
		return -1;
	}
	len = strlen(cur);
	xasprintf(resolved, "%s/%s", len > 0 ? cur : "", slash + 1);
	free(cur);
	return 0;
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
