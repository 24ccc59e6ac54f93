/*
 * libFuzzer target: the control socket's request path. Each input is sent
 * as raw bytes over a real Unix socket to evhttp and control.c, serving
 * two accounts with static tokens (no network), and the loop runs until
 * the daemon has answered and closed or a bounded number of passes is
 * over. Everything but main() of tokend links in: the real registry,
 * API routes and socket server, wired as tokend.c wires them.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tokend.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct event_base	*base;
static char			 sockpath[108];

static int
fuzz_reload_cb(struct diag *d, char **cause, void *arg)
{
	(void)d;
	(void)arg;
	*cause = xstrdup("reload is not available while fuzzing");
	return -1;
}

static struct account_conf *
static_account(const char *dir, const char *name, const char *token)
{
	struct account_conf	*ac;
	struct diag		 d;
	char			*conf, *tokfile, *text;
	FILE			*f;

	xasprintf(&tokfile, "%s/%s.token", dir, name);
	xasprintf(&conf, "%s/%s.conf", dir, name);
	if ((f = fopen(tokfile, "w")) == NULL)
		abort();
	fprintf(f, "%s\n", token);
	fclose(f);
	xasprintf(&text, "[account]\ngrant = static\ntoken_file = %s\n",
	    tokfile);
	memset(&d, 0, sizeof d);
	if ((ac = config_account_parse(conf, name, text, strlen(text), &d)) ==
	    NULL)
		abort();
	diag_clear(&d);
	free(text);
	free(conf);
	free(tokfile);
	return ac;
}

static void
setup(void)
{
	static struct config	 cfg;
	static struct registry	*reg;
	static struct http	*http;
	struct account_conf	*acs[2];
	struct registry_diff	 diff;
	struct api_env		 env;
	char			 dir[] = "/tmp/tokend-fuzz-XXXXXX";

	if (base != NULL)
		return;
	signal(SIGPIPE, SIG_IGN);
	log_init(LOG_LEVEL_ERROR, 0);
	if (mkdtemp(dir) == NULL)
		abort();
	base = event_base_new();
	http = http_new(base, 4, 2);
	timer_init(base, NULL, NULL);
	cfg.state_dir = xstrdup(dir);
	acs[0] = static_account(dir, "alpha", "tok-alpha");
	acs[1] = static_account(dir, "beta", "tok-beta");
	cfg.accounts = acs;
	cfg.naccounts = 2;
	reg = registry_new(http, NULL, NULL, NULL);
	registry_apply(reg, &cfg, &diff);
	memset(&env, 0, sizeof env);
	env.base = base;
	env.registry = reg;
	env.http = http;
	env.reload = fuzz_reload_cb;
	api_init(&env);
	snprintf(sockpath, sizeof sockpath, "%s/s", dir);
	if (control_init(base, sockpath, api_handle, NULL) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un	 sun;
	char			 buf[65536];
	ssize_t			 n;
	size_t			 off = 0;
	int			 fd, pass, closed = 0;

	setup();
	if (size > 16384)
		return 0;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		abort();
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, sockpath);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		close(fd);
		return 0;
	}
	for (pass = 0; pass < 200 && !closed; pass++) {
		if (off < size) {
			n = write(fd, data + off, size - off);
			if (n > 0)
				off += (size_t)n;
			if (off == size)
				shutdown(fd, SHUT_WR);
		} else if (size == 0 && pass == 0)
			shutdown(fd, SHUT_WR);
		event_base_loop(base, EVLOOP_NONBLOCK);
		while ((n = read(fd, buf, sizeof buf)) > 0)
			;
		if (n == 0)
			closed = 1;
		else if (errno != EAGAIN && errno != EWOULDBLOCK)
			closed = 1;
	}
	close(fd);
	/* let the daemon see the close */
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
