# tokend: build, check, demo, install. Flags come from pkg-config.
#
#   make            build build/tokend and build/tokenctl
#   make check      install missing dependencies, build, run every test
#   make check SANITIZE=1   the same under AddressSanitizer + UBSan
#   make demo       install what the demo needs (not the test tools), run it
#   make demo-login a device login against the local test provider, with
#                   the QR code (installs node's packages and chromium)
#   make bench      benchmarks at 10,000 accounts against nginx (minutes),
#                   tokenctl against cat (BENCH_ONLY=tokenctl: that alone)
#                   and a signed assertion's cost (BENCH_ONLY=assertion)
#   make install    PREFIX=/usr/local DESTDIR=  (also make uninstall)
#   make deb        the Debian package, in build/ (debian/)
#   make check-system   (root) the package under a real systemd in a
#                   Debian 12 container (systemd-nspawn), and lintian
#   make deps       install what make check needs; deps-build, deps-demo less
#   V=1             show the compiler's command lines

PREFIX		?= /usr/local
BINDIR		?= $(PREFIX)/bin
MANDIR		?= $(PREFIX)/share/man
UNITDIR		?= $(PREFIX)/lib/systemd/system
EXAMPLEDIR	?= $(PREFIX)/share/doc/tokend/examples
# files tokend's users load from where they are installed (not docs, which
# a minimal system may leave out): the Prometheus alert rules
DATADIR		?= $(PREFIX)/share/tokend
SYSUSERSDIR	?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR	?= /etc
DESTDIR		?=

SANITIZE	?= 0
V		?= 0
ifeq ($(V),1)
Q		:=
else
Q		:= @
endif
ifeq ($(SANITIZE),1)
BUILD		:= build-san
SANFLAGS	:= -fsanitize=address,undefined -fno-omit-frame-pointer \
		   -fno-sanitize-recover=all
else
BUILD		:= build
SANFLAGS	:=
endif

CC		?= cc
CFLAGS		?= -O2 -g
WARNFLAGS	:= -Wall -Wextra -Werror -Wshadow -Wpointer-arith \
		   -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
# libcrypto: config.c reads each ca_file's certificates (libcurl's own
# OpenSSL, linked by name)
# hiredis: fleet mode's Redis client, in the event loop (its libevent
# adapter is a header)
PKGS		:= libcurl libevent json-c libsystemd libcrypto hiredis
# recursive (=): evaluated when a recipe runs, after `deps` installed them
PKG_CFLAGS	= $(shell pkg-config --cflags $(PKGS))
PKG_LIBS	= $(shell pkg-config --libs $(PKGS))
ALL_CFLAGS	= -std=gnu11 $(WARNFLAGS) $(CPPFLAGS) $(CFLAGS) $(SANFLAGS) $(PKG_CFLAGS) \
		  -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
ALL_LDFLAGS	= $(SANFLAGS) -pie -Wl,-z,relro,-z,now $(LDFLAGS)

# Debian packages: to build tokend and tokenctl (and ca-certificates, the
# trust anchors real endpoints need at run time); for tests/demo.sh (the
# openssl CLI for its certificates, python3 for the test issuer, curl to
# read a token over the socket); for make check (cmocka, mandoc, systemd's
# tools, valgrind, clang and its fuzzer runtime, prometheus for promtool's
# lint of /metrics). make deps installs
# DEB_PKGS, by default all three.
BUILD_PKGS	:= gcc make pkg-config libc6-dev libcurl4-openssl-dev libssl-dev \
		   libevent-dev libjson-c-dev libsystemd-dev libqrencode-dev \
		   libhiredis-dev ca-certificates
DEMO_PKGS	:= $(BUILD_PKGS) openssl python3 curl
# chromium: the browser the login tests drive (tests/oidc/browser.js);
# python3-authlib: the JWT-bearer grant server, run with Debian's
# /usr/bin/python3
CHECK_PKGS	:= $(DEMO_PKGS) libcmocka-dev mandoc systemd valgrind \
		   clang libclang-rt-dev prometheus chromium redis-server \
		   redis-sentinel python3-authlib
DEB_PKGS	:= $(CHECK_PKGS)

CORE		:= util clock log ini config schedule oauth timer http file store \
		   sink seal jws discovery revoke account registry hooks control \
		   login redirect api fleet
DAEMON_OBJS	:= $(addprefix $(BUILD)/,$(addsuffix .o,$(CORE) tokend))
# tokenctl starts as fast as cat: libc and json-c, nothing else; prompt.c
# loads libqrencode (built against libqrencode-dev's header) only to show
# a login's QR code
CTL_OBJS	:= $(addprefix $(BUILD)/,tokenctl.o client.o prompt.o util.o \
		   clock.o)
QR_CFLAGS	= $(shell pkg-config --cflags libqrencode)
CTL_LIBS	= $(shell pkg-config --libs json-c)
HEADERS		:= daemon/tokend.h

UNIT_TESTS	:= config schedule oauth sink timer discovery seal jws fleet
UNIT_BINS	:= $(addprefix $(BUILD)/test_,$(UNIT_TESTS))
UNIT_OBJS	:= $(addprefix $(BUILD)/,util.o clock.o log.o ini.o config.o \
		   schedule.o oauth.o sink.o file.o store.o timer.o discovery.o \
		   revoke.o http.o seal.o jws.o fleet.o)

# libFuzzer targets (clang): every daemon file but main, ASan + UBSan
FUZZ_TARGETS	:= config response retry_after socket jwt state discovery device \
		   key
FUZZ_BUILD	:= build-fuzz
FUZZ_SECONDS	?= 60
FUZZ_CC		?= clang
FUZZ_SAN	:= -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS	= -std=gnu11 -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) \
		  $(PKG_CFLAGS) -Idaemon
FUZZ_OBJS	:= $(addprefix $(FUZZ_BUILD)/,$(addsuffix .o,$(CORE)))
FUZZ_BINS	:= $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))

.PHONY: deb check-system all check demo demo-login install uninstall deps deps-build \
	deps-demo deps-oidc clean unit fuzz fuzz-build bench shims
all: $(BUILD)/tokend $(BUILD)/tokenctl

$(BUILD):
	mkdir -p $@

$(BUILD)/%.o: daemon/%.c $(HEADERS) | $(BUILD)
	@echo "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Idaemon -c -o $@ $<

$(BUILD)/tokend: $(DAEMON_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tokenctl: $(CTL_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -Wl,--as-needed -o $@ $^ $(CTL_LIBS)

# client.c's answer reader: framing, caps, malformed answers
CLIENT_TEST_OBJS := $(addprefix $(BUILD)/,client.o util.o clock.o log.o)

$(BUILD)/test_client: tests/unit/test_client.c tests/unit/unit.h \
    $(CLIENT_TEST_OBJS) $(HEADERS)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Idaemon -o $@ $< $(CLIENT_TEST_OBJS) \
	    $(ALL_LDFLAGS) $(PKG_LIBS) $$(pkg-config --libs cmocka)

unit: $(BUILD)/test_client

$(BUILD)/prompt.o: ALL_CFLAGS += $(QR_CFLAGS)

# prompt.c: what tokenctl login shows, the QR code
PROMPT_TEST_OBJS := $(addprefix $(BUILD)/,prompt.o util.o clock.o log.o)

$(BUILD)/test_prompt: tests/unit/test_prompt.c tests/unit/unit.h \
    $(PROMPT_TEST_OBJS) $(HEADERS)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(QR_CFLAGS) -Idaemon -o $@ $< \
	    $(PROMPT_TEST_OBJS) $(ALL_LDFLAGS) $(PKG_LIBS) \
	    $$(pkg-config --libs libqrencode cmocka)

unit: $(BUILD)/test_prompt

$(BUILD)/test_%: tests/unit/test_%.c tests/unit/unit.h $(UNIT_OBJS) $(HEADERS)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Idaemon -o $@ $< $(UNIT_OBJS) $(ALL_LDFLAGS) \
	    $(PKG_LIBS) $$(pkg-config --libs cmocka)

# account.c with the real oauth, schedule, config, state and token files,
# and link-time stand-ins for http, timers, hooks and the clock
ACCOUNT_TEST_OBJS := $(addprefix $(BUILD)/,account.o util.o log.o ini.o \
		   config.o schedule.o oauth.o sink.o file.o store.o discovery.o \
		   revoke.o seal.o jws.o fleet.o)

$(BUILD)/test_account: tests/unit/test_account.c tests/unit/unit.h \
    $(ACCOUNT_TEST_OBJS) $(HEADERS)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Idaemon -o $@ $< $(ACCOUNT_TEST_OBJS) \
	    $(ALL_LDFLAGS) $(PKG_LIBS) $$(pkg-config --libs cmocka)

unit: $(UNIT_BINS) $(BUILD)/test_account

# login.c's pure half and redirect.c's URI parsing, linked with the rest
# of the daemon they sit on (nothing of it runs)
LOGIN_TEST_OBJS := $(addprefix $(BUILD)/,$(addsuffix .o,$(filter-out api \
		   control,$(CORE))))

$(BUILD)/test_login: tests/unit/test_login.c tests/unit/unit.h \
    $(LOGIN_TEST_OBJS) $(HEADERS)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Idaemon -o $@ $< $(LOGIN_TEST_OBJS) \
	    $(ALL_LDFLAGS) $(PKG_LIBS) $$(pkg-config --libs cmocka)

unit: $(BUILD)/test_login

# LD_PRELOAD shims for regression tests (faults no real server can cause)
SHIMS		:= $(BUILD)/fail_multi_add.so

$(BUILD)/%.so: tests/shim/%.c | $(BUILD)
	@echo "  CC/LD   $@"
	$(Q)$(CC) -std=gnu11 $(WARNFLAGS) -O2 -g -fPIC -shared \
	    $(PKG_CFLAGS) -o $@ $< -ldl

shims: $(SHIMS)

$(FUZZ_BUILD):
	mkdir -p $@

$(FUZZ_BUILD)/%.o: daemon/%.c $(HEADERS) | $(FUZZ_BUILD)
	@echo "  CC      $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

# an archive: each target pulls in only the files it needs
$(FUZZ_BUILD)/libtokend.a: $(FUZZ_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h \
    $(FUZZ_BUILD)/libtokend.a
	@echo "  CC/LD   $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	    $(FUZZ_BUILD)/libtokend.a $(PKG_LIBS)

fuzz-build: $(FUZZ_BINS)

# Each target for FUZZ_SECONDS from its seeds in tests/fuzz/corpus/NAME;
# what it learns stays in build-fuzz/corpus/NAME for the next run. A unit
# that hangs for a minute fails; a slow one (a loaded machine stalls the
# fuzzer too) is kept in build-fuzz/ but is not a failure.
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	    echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	    $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	        -timeout=60 -report_slow_units=60 -rss_limit_mb=2048 \
	        -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- \
	        $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t \
	        2>&1 | grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss)|ERROR|SUMMARY|runtime error|crash-|Test unit written" || true; \
	    test -z "$$(ls $(FUZZ_BUILD)/crash-$$t-* 2>/dev/null | \
	        grep -v -- '-slow-unit-')" || \
	        { echo "fuzz_$$t: crash saved in $(FUZZ_BUILD)/"; exit 1; }; \
	done

# Install what is missing, as root or through sudo; skip on non-Debian.
deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	    echo "deps: not a Debian system; install by hand: $(DEB_PKGS)"; \
	    exit 0; fi; \
	missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	        grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing$$missing"; \
	    if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	        --no-install-recommends $$missing; \
	fi

deps-build:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BUILD_PKGS)"

deps-demo:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEMO_PKGS)"

# The login tests' OpenID Provider and browser driver come from npm
# (oidc-provider, playwright-core: tests/oidc/package-lock.json), for Node
# 20.12 or later; Debian 12's own nodejs is older, so node is not installed
# here.  npm ci runs when node_modules is missing or older than the lock.
OIDC_DIR	:= tests/oidc
OIDC_STAMP	:= $(OIDC_DIR)/node_modules/.package-lock.json

$(OIDC_STAMP): $(OIDC_DIR)/package-lock.json $(OIDC_DIR)/package.json
	@if ! command -v npm >/dev/null 2>&1; then \
	    echo "deps: no npm (Node.js >= 20.12): the login tests will be skipped"; \
	else \
	    echo "deps: npm ci in $(OIDC_DIR)"; \
	    npm ci --prefix $(OIDC_DIR) --no-audit --no-fund --loglevel=error && \
	    touch $@; \
	fi

deps-oidc: $(OIDC_STAMP)

# make bench: nginx is the issuer, h2load measures nginx's own ceiling,
# redis-server is the fleet's store
BENCH_PKGS	:= nginx-light nghttp2-client redis-server
FLEET_PKGS	:= nginx-light redis-server

$(BUILD)/sockread: bench/sockread.c | $(BUILD)
	@echo "  CC/LD   $@"
	$(Q)$(CC) -std=gnu11 -O2 $(WARNFLAGS) -o $@ $<

# the signed assertion a refresh makes, on the daemon's own objects
ASSERTION_BENCH_OBJS := $(addprefix $(BUILD)/,jws.o oauth.o util.o clock.o \
		   log.o)

$(BUILD)/assertion: bench/assertion.c $(ASSERTION_BENCH_OBJS) $(HEADERS)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Idaemon -o $@ $< $(ASSERTION_BENCH_OBJS) \
	    $(ALL_LDFLAGS) $(PKG_LIBS)

# BENCH_ONLY=tokenctl: only tokenctl against cat (seconds, no nginx)
# BENCH_ONLY=assertion: only the cost of a signed assertion (seconds)
# BENCH_ONLY=fleet: only fleet mode, 1 against 10 instances (minutes)
# BENCH_RESULTS=bench/RESULTS.md: put the fleet figures in its section
BENCH_ONLY	?=
BENCH_RESULTS	?=

bench: deps
	$(if $(BENCH_ONLY),,@$(MAKE) --no-print-directory deps \
	    DEB_PKGS="$(BENCH_PKGS)")
	$(if $(filter fleet,$(BENCH_ONLY)),@$(MAKE) --no-print-directory deps \
	    DEB_PKGS="$(FLEET_PKGS)")
	@$(MAKE) --no-print-directory all $(BUILD)/sockread $(BUILD)/assertion
	python3 bench/bench.py --tokend $(BUILD)/tokend \
	    --sockread $(BUILD)/sockread --tokenctl $(BUILD)/tokenctl \
	    --assertion $(BUILD)/assertion \
	    $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) --out bench/last-run.md \
	    $(if $(BENCH_RESULTS),--results $(BENCH_RESULTS))

check: deps deps-oidc
	@$(MAKE) --no-print-directory all unit shims SANITIZE=$(SANITIZE)
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) FUZZ_TARGETS="$(FUZZ_TARGETS)" \
	    sh tests/check.sh

demo: deps-demo
	@$(MAKE) --no-print-directory all SANITIZE=$(SANITIZE)
	@bash tests/demo.sh $(BUILD)/tokend $(BUILD)/tokenctl

# Not part of make demo: it needs node's packages (and chromium to play the
# human, unless DEMO_APPROVE=no and you open the URL yourself).
demo-login: deps-demo deps-oidc
	@$(MAKE) --no-print-directory deps DEB_PKGS="chromium"
	@$(MAKE) --no-print-directory all SANITIZE=$(SANITIZE)
	@bash tests/demo_login.sh $(BUILD)/tokend $(BUILD)/tokenctl

# The user units (systemctl --user, a person's own accounts) and bash's
# completion for tokenctl.
USERUNITDIR	?= $(PREFIX)/lib/systemd/user
BASHCOMPDIR	?= $(PREFIX)/share/bash-completion/completions

# The system user tokend comes from sysusers.d; with DESTDIR (a staging
# tree, a package) systemd-sysusers is left to the target machine.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(BASHCOMPDIR) \
	    $(DESTDIR)$(EXAMPLEDIR)/accounts.d $(DESTDIR)$(EXAMPLEDIR)/polkit \
	    $(DESTDIR)$(DATADIR)/prometheus
	install -m 0755 $(BUILD)/tokend $(BUILD)/tokenctl $(DESTDIR)$(BINDIR)
	install -m 0644 man/tokenctl.1 $(DESTDIR)$(MANDIR)/man1
	install -m 0644 man/tokend.conf.5 $(DESTDIR)$(MANDIR)/man5
	install -m 0644 man/tokend.8 $(DESTDIR)$(MANDIR)/man8
	sed 's|/usr/bin/tok|$(BINDIR)/tok|g' systemd/tokend.service \
	    > $(DESTDIR)$(UNITDIR)/tokend.service
	install -m 0644 systemd/tokend.socket $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/tok|$(BINDIR)/tok|g' systemd/user/tokend.service \
	    > $(DESTDIR)$(USERUNITDIR)/tokend.service
	install -m 0644 systemd/user/tokend.socket $(DESTDIR)$(USERUNITDIR)
	install -m 0644 completions/tokenctl.bash \
	    $(DESTDIR)$(BASHCOMPDIR)/tokenctl
	install -m 0644 systemd/tokend.sysusers.conf \
	    $(DESTDIR)$(SYSUSERSDIR)/tokend.conf
	install -m 0644 conf/tokend.conf $(DESTDIR)$(EXAMPLEDIR)
	install -m 0644 conf/accounts.d/*.example \
	    $(DESTDIR)$(EXAMPLEDIR)/accounts.d
	install -m 0644 conf/polkit/50-tokend-restart.rules \
	    $(DESTDIR)$(EXAMPLEDIR)/polkit
	install -m 0644 conf/prometheus/tokend-rules.yml \
	    $(DESTDIR)$(DATADIR)/prometheus
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/tokend/accounts.d
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/tokend/credentials
	@if [ -n "$(DESTDIR)" ]; then \
	    echo "install: run systemd-sysusers on the target to add user tokend"; \
	elif command -v systemd-sysusers >/dev/null 2>&1; then \
	    echo "systemd-sysusers $(SYSUSERSDIR)/tokend.conf"; \
	    systemd-sysusers $(SYSUSERSDIR)/tokend.conf; \
	else \
	    echo "install: no systemd-sysusers: add the system user tokend" \
	        "(group tokend) by hand"; \
	fi

# Removes what install put there, then each folder it may have made, and
# the empty ones above it up to DESTDIR; a folder that still holds
# something (account files, secrets, others' files) stays. The user
# tokend and /var/lib/tokend (the refresh tokens) are never removed.
# Folders of the system's own hierarchy (hier(7)) that an uninstall into the
# live system leaves even when empty: other packages expect them. Into a
# DESTDIR stage, everything install made goes.
KEEP_DIRS	= $(PREFIX) $(PREFIX)/bin $(PREFIX)/sbin $(PREFIX)/lib \
		  $(PREFIX)/share $(PREFIX)/share/doc $(MANDIR) $(MANDIR)/man1 \
		  $(MANDIR)/man5 $(MANDIR)/man8 $(SYSCONFDIR)
INSTALL_DIRS	= $(BINDIR) $(MANDIR)/man1 $(MANDIR)/man5 $(MANDIR)/man8 \
		  $(UNITDIR) $(USERUNITDIR) $(SYSUSERSDIR) $(BASHCOMPDIR) \
		  $(EXAMPLEDIR)/accounts.d \
		  $(EXAMPLEDIR)/polkit $(DATADIR)/prometheus \
		  $(SYSCONFDIR)/tokend/accounts.d \
		  $(SYSCONFDIR)/tokend/credentials

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tokend $(DESTDIR)$(BINDIR)/tokenctl \
	    $(DESTDIR)$(MANDIR)/man1/tokenctl.1 \
	    $(DESTDIR)$(MANDIR)/man5/tokend.conf.5 \
	    $(DESTDIR)$(MANDIR)/man8/tokend.8 \
	    $(DESTDIR)$(UNITDIR)/tokend.service \
	    $(DESTDIR)$(UNITDIR)/tokend.socket \
	    $(DESTDIR)$(USERUNITDIR)/tokend.service \
	    $(DESTDIR)$(USERUNITDIR)/tokend.socket \
	    $(DESTDIR)$(BASHCOMPDIR)/tokenctl \
	    $(DESTDIR)$(SYSUSERSDIR)/tokend.conf \
	    $(DESTDIR)$(EXAMPLEDIR)/tokend.conf \
	    $(DESTDIR)$(EXAMPLEDIR)/polkit/50-tokend-restart.rules \
	    $(DESTDIR)$(DATADIR)/prometheus/tokend-rules.yml
	rm -f $(addprefix $(DESTDIR)$(EXAMPLEDIR)/accounts.d/,\
	    $(notdir $(wildcard conf/accounts.d/*.example)))
	@keep=" $(if $(DESTDIR),,$(KEEP_DIRS)) "; \
	for d in $(addprefix $(DESTDIR),$(INSTALL_DIRS)); do \
	    while [ "$$d" != "$(patsubst %/,%,$(DESTDIR))" ] && [ "$$d" != / ] && \
	        case "$$keep" in *" $$d "*) false;; *) true;; esac && \
	        rmdir "$$d" 2>/dev/null; do \
	        d=$$(dirname "$$d"); \
	    done; \
	done

# make deb: the Debian package (debian/), left in build/ with its -dbgsym,
# .buildinfo and .changes. dpkg-buildpackage writes them beside the source
# tree, from where they are moved.
DEB_TOOL_PKGS	:= build-essential debhelper dpkg-dev fakeroot libcmocka-dev
DEB_VERSION	= $(shell dpkg-parsechangelog -S Version)
DEB_ARCH	= $(shell dpkg-architecture -qDEB_HOST_ARCH)

deb:
	@$(MAKE) --no-print-directory deps \
	    DEB_PKGS="$(BUILD_PKGS) $(DEB_TOOL_PKGS)"
	dpkg-buildpackage -us -uc -b
	@mkdir -p build
	@set -e; for f in tokend_$(DEB_VERSION)_$(DEB_ARCH).deb \
	    tokend-dbgsym_$(DEB_VERSION)_$(DEB_ARCH).deb \
	    tokend_$(DEB_VERSION)_$(DEB_ARCH).buildinfo \
	    tokend_$(DEB_VERSION)_$(DEB_ARCH).changes; do \
	    mv -f ../$$f build/ && echo "  DEB     build/$$f"; done

# make check-system (root): the package under a real systemd 252, booted
# with systemd-nspawn in Debian 12 (tests/system/run.sh); and lintian.
SYSTEM_PKGS	:= debootstrap systemd-container lintian openssl

check-system: deb
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(SYSTEM_PKGS)"
	@sh tests/system/check.sh build/tokend_$(DEB_VERSION)_$(DEB_ARCH)

clean:
	rm -rf build build-san build-fuzz build-deb
