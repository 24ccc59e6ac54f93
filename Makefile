# tokend: build, check, demo, install. Flags come from pkg-config.
#
#   make            build build/tokend and build/tokenctl
#   make check      install missing dependencies, build, run every test
#   make check SANITIZE=1   the same under AddressSanitizer + UBSan
#   make demo       install missing dependencies, run the end-to-end demo
#   make install    PREFIX=/usr/local DESTDIR=
#   V=1             show the compiler's command lines

PREFIX		?= /usr/local
BINDIR		?= $(PREFIX)/bin
MANDIR		?= $(PREFIX)/share/man
UNITDIR		?= $(PREFIX)/lib/systemd/system
EXAMPLEDIR	?= $(PREFIX)/share/doc/tokend/examples
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
PKGS		:= libcurl libevent json-c libsystemd
# recursive (=): evaluated when a recipe runs, after `deps` installed them
PKG_CFLAGS	= $(shell pkg-config --cflags $(PKGS))
PKG_LIBS	= $(shell pkg-config --libs $(PKGS))
ALL_CFLAGS	= -std=gnu11 $(WARNFLAGS) $(CFLAGS) $(SANFLAGS) $(PKG_CFLAGS) \
		  -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
ALL_LDFLAGS	= $(SANFLAGS) -pie -Wl,-z,relro,-z,now $(LDFLAGS)

# Debian packages that building, testing and the demo need
DEB_PKGS	:= gcc make pkg-config libc6-dev libcurl4-openssl-dev \
		   libevent-dev libjson-c-dev libsystemd-dev libcmocka-dev \
		   openssl ca-certificates python3 curl mandoc systemd

CORE		:= util log ini config schedule oauth timer http file store \
		   sink account hooks control
DAEMON_OBJS	:= $(addprefix $(BUILD)/,$(addsuffix .o,$(CORE) tokend))
CTL_OBJS	:= $(addprefix $(BUILD)/,tokenctl.o util.o log.o)
HEADERS		:= daemon/tokend.h

UNIT_TESTS	:= config schedule oauth sink
UNIT_BINS	:= $(addprefix $(BUILD)/test_,$(UNIT_TESTS))
UNIT_OBJS	:= $(addprefix $(BUILD)/,util.o log.o ini.o config.o \
		   schedule.o oauth.o sink.o file.o store.o)

.PHONY: all check demo install uninstall deps clean unit
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
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/test_%: tests/unit/test_%.c tests/unit/unit.h $(UNIT_OBJS) $(HEADERS)
	@echo "  CC/LD   $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Idaemon -o $@ $< $(UNIT_OBJS) $(ALL_LDFLAGS) \
	    $(PKG_LIBS) $$(pkg-config --libs cmocka)

unit: $(UNIT_BINS)

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

check: deps
	@$(MAKE) --no-print-directory all unit SANITIZE=$(SANITIZE)
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) sh tests/check.sh

demo: deps
	@$(MAKE) --no-print-directory all SANITIZE=$(SANITIZE)
	@bash tests/demo.sh $(BUILD)/tokend $(BUILD)/tokenctl

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(EXAMPLEDIR)/accounts.d
	install -m 0755 $(BUILD)/tokend $(BUILD)/tokenctl $(DESTDIR)$(BINDIR)
	install -m 0644 man/tokenctl.1 $(DESTDIR)$(MANDIR)/man1
	install -m 0644 man/tokend.conf.5 $(DESTDIR)$(MANDIR)/man5
	install -m 0644 man/tokend.8 $(DESTDIR)$(MANDIR)/man8
	sed 's|/usr/bin/tokend|$(BINDIR)/tokend|g' systemd/tokend.service \
	    > $(DESTDIR)$(UNITDIR)/tokend.service
	install -m 0644 systemd/tokend.socket $(DESTDIR)$(UNITDIR)
	install -m 0644 conf/tokend.conf $(DESTDIR)$(EXAMPLEDIR)
	install -m 0644 conf/accounts.d/*.example \
	    $(DESTDIR)$(EXAMPLEDIR)/accounts.d

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tokend $(DESTDIR)$(BINDIR)/tokenctl \
	    $(DESTDIR)$(MANDIR)/man1/tokenctl.1 \
	    $(DESTDIR)$(MANDIR)/man5/tokend.conf.5 \
	    $(DESTDIR)$(MANDIR)/man8/tokend.8 \
	    $(DESTDIR)$(UNITDIR)/tokend.service \
	    $(DESTDIR)$(UNITDIR)/tokend.socket
	rm -rf $(DESTDIR)$(EXAMPLEDIR)

clean:
	rm -rf build build-san
