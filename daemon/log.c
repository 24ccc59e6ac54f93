/*
 * Logging: the journal with structured fields when stderr is connected to
 * it (JOURNAL_STREAM), plain lines on stderr otherwise. Callers never pass
 * a secret or a token value; see STYLE.md.
 */
#define _GNU_SOURCE
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "tokend.h"

static enum log_level	 log_level = LOG_LEVEL_INFO;
static int		 log_journal;

static const char *const level_names[] = {
	"error", "warning", "info", "debug"
};
static const int level_priorities[] = {
	LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG
};

/* True when systemd connected our stderr to the journal. */
static int
stderr_is_journal(void)
{
	const char	*js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat	 st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(enum log_level level, int allow_journal)
{
	log_level = level;
	log_journal = allow_journal && stderr_is_journal();
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

static void
log_vwrite(enum log_level level, const char *account, const char *fmt,
    va_list ap)
{
	char	*msg;

	if (level > log_level)
		return;
	if (vasprintf(&msg, fmt, ap) == -1)
		return;
	if (log_journal) {
		if (account != NULL)
			sd_journal_send("MESSAGE=account %s: %s", account, msg,
			    "PRIORITY=%d", level_priorities[level],
			    "ACCOUNT=%s", account,
			    "SYSLOG_IDENTIFIER=tokend", NULL);
		else
			sd_journal_send("MESSAGE=%s", msg,
			    "PRIORITY=%d", level_priorities[level],
			    "SYSLOG_IDENTIFIER=tokend", NULL);
	} else if (account != NULL)
		fprintf(stderr, "tokend: %s: account %s: %s\n",
		    level_names[level], account, msg);
	else
		fprintf(stderr, "tokend: %s: %s\n", level_names[level], msg);
	free(msg);
}

static void
log_vwrite_errno(enum log_level level, const char *fmt, va_list ap)
{
	char	*f;
	int	 saved = errno;

	if (asprintf(&f, "%s: %s", fmt, strerror(saved)) == -1)
		return;
	log_vwrite(level, NULL, f, ap);
	free(f);
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite_errno(LOG_LEVEL_WARNING, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARNING, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
log_account(enum log_level level, const char *account, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(level, account, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite_errno(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
