/*
 * Token reads per second three ways, side by side in one process:
 *   file       open, read, close the token file
 *   keepalive  GET /v1/token/NAME on one kept HTTP/1.1 connection
 *   connect    a new connection per read (Connection: close)
 *
 * usage: sockread SOCKET NAME FILE SECONDS
 * Prints "MODE READS_PER_SECOND" for each, in the order run. Every answer
 * is checked (status 200, a token as long as the file's), so a failing
 * socket cannot look fast.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void __attribute__((noreturn))
die(const char *what)
{
	fprintf(stderr, "sockread: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int
dial(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		die("connect");
	return fd;
}

/* Read one answer; returns the body length, checks status 200. */
static size_t
read_answer(int fd, char *buf, size_t cap)
{
	size_t	 have = 0, need = 0, clen;
	char	*hdr_end, *cl;
	ssize_t	 n;

	for (;;) {
		if ((n = read(fd, buf + have, cap - have - 1)) <= 0)
			die("read");
		have += (size_t)n;
		buf[have] = '\0';
		if ((hdr_end = strstr(buf, "\r\n\r\n")) == NULL)
			continue;
		if (strncmp(buf, "HTTP/1.1 200", 12) != 0) {
			fprintf(stderr, "sockread: answer: %.40s\n", buf);
			exit(1);
		}
		if ((cl = strcasestr(buf, "Content-Length:")) == NULL ||
		    cl > hdr_end) {
			fprintf(stderr, "sockread: no Content-Length\n");
			exit(1);
		}
		clen = strtoul(cl + 15, NULL, 10);
		need = (size_t)(hdr_end + 4 - buf) + clen;
		if (have >= need)
			return clen;
	}
}

int
main(int argc, char *argv[])
{
	char		 req[256], reqc[256], buf[65536];
	const char	*sock, *name, *file;
	double		 secs, t0, t;
	size_t		 tok_len, reads;
	ssize_t		 n;
	int		 fd, c;

	if (argc != 5) {
		fprintf(stderr, "usage: sockread SOCKET NAME FILE SECONDS\n");
		return 64;
	}
	sock = argv[1];
	name = argv[2];
	file = argv[3];
	secs = atof(argv[4]);
	snprintf(req, sizeof req, "GET /v1/token/%s HTTP/1.1\r\nHost: x\r\n\r\n",
	    name);
	snprintf(reqc, sizeof reqc, "GET /v1/token/%s HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n", name);

	/* the file: what a program that reads it each time does */
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) == -1)
		die(file);
	if ((n = read(fd, buf, sizeof buf)) <= 0)
		die("read file");
	close(fd);
	tok_len = (size_t)n - 1;	/* the raw format ends in a newline */
	t0 = now();
	for (reads = 0; (t = now()) - t0 < secs; reads++) {
		if ((fd = open(file, O_RDONLY | O_CLOEXEC)) == -1)
			die(file);
		if (read(fd, buf, sizeof buf) != (ssize_t)tok_len + 1)
			die("read file");
		close(fd);
	}
	printf("file %.0f\n", (double)reads / (t - t0));

	/* keep-alive: one connection, request after request */
	c = dial(sock);
	t0 = now();
	for (reads = 0; (t = now()) - t0 < secs; reads++) {
		if (write(c, req, strlen(req)) != (ssize_t)strlen(req))
			die("write");
		if (read_answer(c, buf, sizeof buf) != tok_len) {
			fprintf(stderr, "sockread: wrong token length\n");
			return 1;
		}
	}
	close(c);
	printf("keepalive %.0f\n", (double)reads / (t - t0));

	/* a connection per read */
	t0 = now();
	for (reads = 0; (t = now()) - t0 < secs; reads++) {
		c = dial(sock);
		if (write(c, reqc, strlen(reqc)) != (ssize_t)strlen(reqc))
			die("write");
		if (read_answer(c, buf, sizeof buf) != tok_len) {
			fprintf(stderr, "sockread: wrong token length\n");
			return 1;
		}
		close(c);
	}
	printf("connect %.0f\n", (double)reads / (t - t0));
	return 0;
}
