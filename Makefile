# vitaled — one GNU Makefile for the daemon, the CLI, the client library,
# the unit tests, the fuzz targets and the benchmarks.
#
#   make                 build build/vitaled, build/vitalectl, build/libvitaled-client.{a,so}
#   make check           install missing Debian packages, build, run every test
#   make demo            install missing Debian packages, build, run the end-to-end demo
#   make bench           print the benchmark table
#   make fuzz            build the libFuzzer targets with clang
#   make fuzz-run        run each fuzz target for FUZZ_SECONDS (make check: FUZZ_CHECK_SECONDS each)
#   make fuzz-campaign   the long campaign: each target FUZZ_SECONDS (default 600), a table (docs/fuzzing.md)
#   make SANITIZE=address,undefined     build with sanitizers
#   make check TEST_WRAPPER=valgrind    run unit tests (and the daemon in integration tests) under a wrapper
#   make soak            every fault at once for SOAK_SECONDS (default 180), then a calm phase and the checks (tests/soak.py)
#   make memcheck        the integration suite (MEMCHECK_TESTS: a name filter) with every daemon under valgrind memcheck
#   make install DESTDIR=... PREFIX=...
#
# Sources are found by wildcard: a new module is a new .c/.h pair in its
# directory; a new unit suite is tests/unit/check_<module>.c; a new fuzz target
# is tests/fuzz/fuzz_<name>.c; a new integration test is tests/integration/test_*.{sh,py}.

VERSION     := 0.1.0
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
SYSCONFDIR  ?= /etc
DOCDIR      ?= $(DATADIR)/doc/vitaled
# bash completion: where the bash-completion package loads completions from
BASHCOMPDIR ?= $(shell pkg-config --variable=completionsdir bash-completion 2>/dev/null || echo $(DATADIR)/bash-completion/completions)
# systemd's own directories, as `pkg-config systemd` names them (Debian 12:
# /lib/systemd/system, /usr/lib/sysusers.d, /usr/lib/tmpfiles.d); the
# fallbacks where pkg-config or systemd.pc lacks them.
systemd_var  = $(or $(shell pkg-config --variable=$(1) systemd 2>/dev/null),$(2))
ifeq ($(origin UNITDIR),undefined)
UNITDIR     := $(call systemd_var,systemdsystemunitdir,/lib/systemd/system)
endif
ifeq ($(origin SYSUSERSDIR),undefined)
SYSUSERSDIR := $(call systemd_var,sysusersdir,/usr/lib/sysusers.d)
endif
ifeq ($(origin TMPFILESDIR),undefined)
TMPFILESDIR := $(call systemd_var,tmpfilesdir,/usr/lib/tmpfiles.d)
endif
DESTDIR     ?=

B           ?= build
CC          ?= gcc
FUZZ_CC     ?= clang
FUZZ_SECONDS ?= 20
FUZZ_CHECK_SECONDS ?= 3
TEST_WRAPPER ?=
PYTHON      := /usr/bin/python3

# libnfc is optional: `make WITH_NFC=0` builds without it (the driver then says "not compiled in").
WITH_NFC    ?= $(shell pkg-config --exists libnfc 2>/dev/null && echo 1 || echo 0)

PKGS        := libpcsclite openssl libcurl sqlite3 jansson inih libsystemd
# the paper duplicata (daemon/sheets/sheetprint.c): cairo's PDF surface, libqrencode
PKGS        += cairo libqrencode
# the digital card's QR code (protocol/qr.c): zlib's inflate
PKGS        += zlib
ifeq ($(WITH_NFC),1)
PKGS        += libnfc
endif
PKG_CFLAGS  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS  := $(shell pkg-config --libs check 2>/dev/null)

WARN        := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
               -Wpointer-arith -Wcast-qual -Wwrite-strings -Wundef \
               -Wformat=2 -Wno-unused-parameter -Wno-sign-conversion
ifneq ($(CI),)
WARN        += -Werror
endif
HARDEN      := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
HARDEN_LD   := -pie -Wl,-z,relro,-z,now
OPT         ?= -O2 -g

# Includes name their folder ("lib/log.h", "daemon/core/loop.h"), so a layer
# crossing shows on the include line; the only search roots are the top of
# the tree and the generated sources.
CPPFLAGS    += -D_GNU_SOURCE -DVITALED_VERSION=\"$(VERSION)\" -DWITH_NFC=$(WITH_NFC) \
               -DVITALED_DATADIR=\"$(DATADIR)/vitaled\" -DVITALED_SYSCONFDIR=\"$(SYSCONFDIR)\" \
               -I. -I$(B)/gen
CFLAGS      ?=
CFLAGS      += -std=c17 $(OPT) $(WARN) $(HARDEN) -pthread $(PKG_CFLAGS)
LDFLAGS     += $(HARDEN_LD) -pthread
LDLIBS      += $(PKG_LIBS) -lm

ifneq ($(SANITIZE),)
CFLAGS      += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS     += -fsanitize=$(SANITIZE)
HARDEN      := -fPIE
endif

# ---------------------------------------------------------------------------
# sources

# Layers, bottom first. Each is one archive; a program links them top
# first, so a call from a lower layer to a higher one has nothing to resolve
# against and fails to link (`make lint` also checks it symbol by symbol,
# tests/lint/layers.py). See README "Layout".
LAYERS      := lib protocol conf storage drivers daemon/core daemon/cards daemon/pin daemon/sheets daemon/upload
layer_name   = $(subst /,-,$(1))
layer_srcs   = $(wildcard $(1)/*.c)
layer_lib    = $(B)/layers/libvl-$(call layer_name,$(1)).a
LAYER_LIBS  := $(foreach l,$(LAYERS),$(call layer_lib,$(l)))
# link order: top layer first
LINK_LIBS   := $(foreach l,$(shell echo $(LAYERS) | tr ' ' '\n' | tac),$(call layer_lib,$(l)))
CORE_SRCS   := $(foreach l,$(LAYERS),$(call layer_srcs,$(l)))
CORE_OBJS   := $(CORE_SRCS:%.c=$(B)/obj/%.o) $(B)/obj/gen/iface.o
DAEMON_TOP  := daemon/main.c daemon/modules.c
CLIENT_SRCS := client/client.c
CLIENT_OBJS := $(CLIENT_SRCS:%.c=$(B)/obj/%.o)
CLIENT_PIC  := $(CLIENT_SRCS:%.c=$(B)/pic/%.o)
UNIT_SRCS   := $(wildcard tests/unit/check_*.c)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
UNIT_SUPPORT_SRCS := $(wildcard tests/unit/support/*.c)
UNIT_SUPPORT_OBJS := $(UNIT_SUPPORT_SRCS:%.c=$(B)/obj/%.o)
# kept between runs (make would delete them as intermediates and relink every suite)
.SECONDARY: $(UNIT_SUPPORT_OBJS)
FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/%.c=$(B)/fuzz/%)
TOOL_SRCS   := $(wildcard tests/tools/*.c)
TOOL_BINS   := $(TOOL_SRCS:tests/tools/%.c=$(B)/tools/%)
IFACE_FILES := $(wildcard docs/*.varlink)

LIBCLIENT   := $(B)/libvitaled-client.a
# the shared library: SONAME libvitaled-client.so.0 (the ABI), the file
# named by the full version, the usual two links
# (the library's version is its own: the major changes with an ABI break only)
SO_VERSION  := 0.1.0
SO_MAJOR    := $(firstword $(subst ., ,$(SO_VERSION)))
LIBCLIENT_SONAME := libvitaled-client.so.$(SO_MAJOR)
LIBCLIENT_SOFILE := libvitaled-client.so.$(SO_VERSION)
LIBCLIENT_SO := $(B)/$(LIBCLIENT_SOFILE)
PCFILE      := $(B)/vitaled-client.pc
# the units, with the real paths of this build
UNITS       := $(B)/systemd/vitaled.service $(B)/systemd/vitaled.socket

.PHONY: all check unit integration demo bench fuzz fuzz-run fuzz-campaign memcheck soak deps install clean tools torture lint web-mutations

all: $(B)/vitaled $(B)/vitalectl $(LIBCLIENT) $(LIBCLIENT_SO) $(PCFILE) $(UNITS) $(TOOL_BINS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(B)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -MMD -MP -c -o $@ $<

# The varlink interface descriptions are embedded in the daemon for
# org.varlink.service.GetInterfaceDescription (part of daemon/core).
$(B)/gen/iface.c: $(IFACE_FILES) packaging/embed.sh
	@mkdir -p $(dir $@)
	sh packaging/embed.sh $(IFACE_FILES) > $@.tmp && mv $@.tmp $@

$(B)/obj/gen/iface.o: $(B)/gen/iface.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# one archive per layer
define layer_rule
$(call layer_lib,$(1)): $(patsubst %.c,$(B)/obj/%.o,$(call layer_srcs,$(1))) $(if $(filter daemon/core,$(1)),$(B)/obj/gen/iface.o)
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rule,$(l))))

$(B)/vitaled: $(DAEMON_TOP:%.c=$(B)/obj/%.o) $(LAYER_LIBS)
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_TOP:%.c=$(B)/obj/%.o) $(LINK_LIBS) $(LDLIBS)

$(LIBCLIENT): $(CLIENT_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(LIBCLIENT_SO): $(CLIENT_PIC)
	$(CC) -shared -Wl,-soname,$(LIBCLIENT_SONAME) $(filter-out -pie,$(LDFLAGS)) -o $@ $^ $(shell pkg-config --libs jansson)
	ln -sf $(LIBCLIENT_SOFILE) $(B)/$(LIBCLIENT_SONAME)
	ln -sf $(LIBCLIENT_SONAME) $(B)/libvitaled-client.so

# rewritten when an install path changes, so that the files naming them are
# made again (`make` then `make install PREFIX=/usr`)
PATHS_SIG   := $(PREFIX):$(LIBDIR):$(INCLUDEDIR):$(SBINDIR):$(SYSCONFDIR)
$(B)/paths: FORCE
	@mkdir -p $(B)
	@echo '$(PATHS_SIG)' | cmp -s - $@ || echo '$(PATHS_SIG)' > $@
FORCE:

$(PCFILE): client/vitaled-client.pc.in Makefile $(B)/paths
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# the units name the installed paths: ExecStart is $(SBINDIR)/vitaled
$(B)/systemd/%: packaging/systemd/%.in Makefile $(B)/paths
	@mkdir -p $(dir $@)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@

# vitalectl links the protocol and base layers only, for the pure code of
# the offline `sheet verify` (protocol/sheetsig and what it needs) and
# OpenSSL's libcrypto.
VITALECTL_LIBS := $(call layer_lib,protocol) $(call layer_lib,lib)
$(B)/vitalectl: $(B)/obj/client/vitalectl.o $(B)/obj/client/vitalectl_sheet.o $(B)/obj/client/vitalectl_common.o $(B)/obj/client/vitalectl_rights.o $(B)/obj/client/vitalectl_web.o $(B)/obj/client/vitalectl_doctor.o $(LIBCLIENT) $(VITALECTL_LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs jansson libcrypto) -lm

# examples/c/till.c, built as an integrator builds it: against the public
# header (<vitaled-client.h>, from client/ only) and the client library,
# nothing else of the tree (docs/till-integration.md).
EXAMPLE_BINS := $(B)/examples/till-c
all: $(EXAMPLE_BINS)
$(B)/examples/till-c: examples/c/till.c client/vitaled-client.h $(LIBCLIENT)
	@mkdir -p $(dir $@)
	$(CC) -std=c17 $(OPT) $(WARN) $(HARDEN) -Iclient $(shell pkg-config --cflags jansson) $(LDFLAGS) \
	    -o $@ $< $(LIBCLIENT) $(shell pkg-config --libs jansson)

# The local web bridge, build/vitaled-web (web/, docs/web-bridge.md): a layer
# of its own above lib, protocol, conf and client (tests/lint/lint.py), an
# ordinary varlink client of the daemon on libmicrohttpd. Its pages are
# embedded (build/gen/web_assets.c). The daemon links none of it.
WEB_UNITS   := $(B)/systemd/vitaled-web.service $(B)/systemd/vitaled-web.socket
UNITS       += $(WEB_UNITS)
all: $(B)/vitaled-web $(WEB_UNITS)
WEB_SRCS    := $(wildcard web/*.c)
WEB_OBJS    := $(WEB_SRCS:%.c=$(B)/obj/%.o)
WEB_LIB     := $(B)/layers/libvl-web.a
MHD_CFLAGS  := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS    := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
WEB_ASSETS  := web/kiosk.html
$(WEB_OBJS): CFLAGS += $(MHD_CFLAGS)

$(B)/gen/web_assets.c: $(WEB_ASSETS) packaging/embed_text.sh
	@mkdir -p $(dir $@)
	sh packaging/embed_text.sh web_kiosk_html web/kiosk.html > $@.tmp && mv $@.tmp $@

$(B)/obj/gen/web_assets.o: $(B)/gen/web_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(WEB_LIB): $(filter-out $(B)/obj/web/main.o,$(WEB_OBJS)) $(B)/obj/gen/web_assets.o
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(B)/vitaled-web: $(B)/obj/web/main.o $(WEB_LIB) $(LIBCLIENT) $(call layer_lib,conf) $(call layer_lib,lib)
	$(CC) $(LDFLAGS) -o $@ $^ $(MHD_LIBS) $(shell pkg-config --libs jansson libcrypto inih libsystemd)

# the web bridge's suites link its layer too
$(B)/tests/check_web%: tests/unit/check_web%.c $(UNIT_SUPPORT_OBJS) $(LAYER_LIBS) $(WEB_LIB) $(LIBCLIENT)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -MMD -MP -o $@ $< $(WEB_LIB) $(LIBCLIENT) $(UNIT_SUPPORT_OBJS) $(LINK_LIBS) $(LDLIBS) $(CHECK_LIBS)

# Unit suites link every layer (the linker takes the members they use) and
# the shared helpers of tests/unit/support/.
$(B)/tests/%: tests/unit/%.c $(UNIT_SUPPORT_OBJS) $(LAYER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -MMD -MP -o $@ $< $(UNIT_SUPPORT_OBJS) $(LINK_LIBS) $(LDLIBS) $(CHECK_LIBS)

# Tools link the layer archives like the daemon; none includes a .c file
# of the project (bench_queue includes the baseline tool's own source).
$(B)/tools/%: tests/tools/%.c $(LAYER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -MMD -MP -o $@ $< $(LINK_LIBS) $(LDLIBS)

tools: $(TOOL_BINS)

# check_journal records what sd_journal_sendv receives instead of sending it
$(B)/tests/check_journal: LDFLAGS += -Wl,--wrap=sd_journal_sendv

-include $(shell find $(B) \( -path $(B)/deb -o -path $(B)/deb-test \) -prune -o -name '*.d' -type f -print 2>/dev/null)

# ---------------------------------------------------------------------------
# set-up, tests, demo, bench

deps:
	@sh packaging/deps.sh

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
	  echo "== $$t"; CK_FORK=yes CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-20} CK_TIMEOUT_MULTIPLIER=$(if $(TEST_WRAPPER),20,1) $(TEST_WRAPPER) $$t || fail=1; \
	done; exit $$fail

integration: all
	@TEST_WRAPPER="$(TEST_WRAPPER)" B="$(B)" sh tests/integration/run.sh

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=$(FUZZ_CHECK_SECONDS)

demo: deps
	@$(MAKE) --no-print-directory all
	@B="$(B)" sh tests/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@B="$(B)" sh tests/bench/run.sh

# Structure checks (tests/lint/lint.py): include direction between layers,
# no function over 150 lines, include guards, every header compiling on its
# own, no call up a layer and no cycle in the object graph; the checker's own
# selftest plants each fault and expects it caught.
HEADERS     := $(foreach l,$(LAYERS) client web,$(wildcard $(l)/*.h))
lint: all
	@fail=0; \
	$(PYTHON) tests/lint/lint.py selftest || fail=1; \
	$(PYTHON) tests/lint/lint.py includes . || fail=1; \
	$(PYTHON) tests/lint/lint.py funclen . 150 || fail=1; \
	$(PYTHON) tests/lint/lint.py guards . || fail=1; \
	$(PYTHON) tests/lint/lint.py symbols . $(B)/obj || fail=1; \
	$(PYTHON) tests/lint/mancheck.py $(B) || fail=1; \
	hfail=0; for h in $(HEADERS); do \
	  printf '#include "%s"\n#include "%s"\n' $$h $$h | \
	    $(CC) $(CPPFLAGS) $(CFLAGS) -fsyntax-only -x c - 2>$(B)/lint-hdr.err || \
	    { echo "lint header: $$h does not compile on its own (or twice):"; cat $(B)/lint-hdr.err; hfail=1; }; \
	done; [ $$hfail -eq 0 ] && echo "lint headers: ok ($(words $(HEADERS)) compile alone)" || fail=1; \
	exit $$fail

# Every daemon the integration tests start runs under valgrind memcheck, one
# log per process; tests/memcheck_report.sh fails on any invalid access,
# uninitialised value or definite leak. The harness scales its deadlines when
# a wrapper is set.
MEMCHECK_TESTS ?=
VALGRIND_MEMCHECK = valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
	--errors-for-leak-kinds=definite --log-file=$(abspath $(B))/memcheck/%p.log \
	--suppressions=$(abspath tests/valgrind.supp)
memcheck: deps
	@$(MAKE) --no-print-directory all
	@rm -rf $(B)/memcheck && mkdir -p $(B)/memcheck
	@TEST_WRAPPER="$(VALGRIND_MEMCHECK)" B="$(B)" sh tests/integration/run.sh $(MEMCHECK_TESTS); rc=$$?; \
	sh tests/memcheck_report.sh $(B)/memcheck && exit $$rc

SOAK_SECONDS ?= 180
soak: deps
	@$(MAKE) --no-print-directory all
	@SOAK_SECONDS=$(SOAK_SECONDS) B="$(B)" $(PYTHON) tests/soak.py

# Remove each security check of the web bridge in turn and expect its
# browser test to fail (tests/integration/web_mutations.py, about 4 minutes).
web-mutations: all
	@B="$(B)" $(PYTHON) tests/integration/web_mutations.py

torture: deps
	@$(MAKE) --no-print-directory all
	@B="$(B)" TORTURE=long sh tests/integration/run.sh torture

# ---------------------------------------------------------------------------
# fuzzing (clang + libFuzzer); core sources are rebuilt with clang

FUZZ_CFLAGS := -std=c17 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -pthread $(PKG_CFLAGS)
FUZZ_OBJS   := $(CORE_SRCS:%.c=$(B)/fuzzobj/%.o) $(B)/fuzzobj/gen/iface.o

$(B)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c -o $@ $<

$(B)/fuzzobj/gen/iface.o: $(B)/gen/iface.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c -o $@ $<

$(B)/libvitaled-fuzzcore.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/fuzz/%: tests/fuzz/%.c $(B)/libvitaled-fuzzcore.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libvitaled-fuzzcore.a $(PKG_LIBS) -lm

# the web bridge's control socket handler (web/ is not in the fuzz core)
WEB_FUZZ_OBJS := $(patsubst %.c,$(B)/fuzzobj/%.o,web/ctl.c web/tokens.c web/policy.c)
$(WEB_FUZZ_OBJS): $(B)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c -o $@ $<
$(B)/fuzz/fuzz_web%: tests/fuzz/fuzz_web%.c $(WEB_FUZZ_OBJS) $(B)/libvitaled-fuzzcore.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(WEB_FUZZ_OBJS) $(B)/libvitaled-fuzzcore.a $(PKG_LIBS) -lm

fuzz: $(FUZZ_BINS)

fuzz-run: fuzz
	@fail=0; for f in $(FUZZ_BINS); do \
	  n=$$(basename $$f); corpus=tests/fuzz/corpus/$${n#fuzz_}; \
	  work=$(B)/fuzz-corpus/$$n; mkdir -p $$work; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -print_final_stats=1 \
	      -artifact_prefix=$(B)/fuzz-corpus/$$n- \
	      $$work $$( [ -d $$corpus ] && echo $$corpus ) > $$work.log 2>&1; rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$work.log); \
	  cov=$$(grep -E '^#[0-9]+' $$work.log | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p'); \
	  if [ $$rc -eq 0 ]; then echo "fuzz $$n: $(FUZZ_SECONDS) s, $$execs runs, $$cov edges, no crash"; \
	  else grep -E 'ERROR|SUMMARY' $$work.log; echo "!! fuzz $$n failed (exit $$rc): see $$work.log"; fail=1; fi; \
	done; exit $$fail

fuzz-campaign: fuzz
	@B="$(abspath $(B))" FUZZ_SECONDS=$(if $(filter command line,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),600) sh tests/fuzz/campaign.sh

# ---------------------------------------------------------------------------
# install

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	           $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1 \
	           $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)/vitaled/profiles.d \
	           $(DESTDIR)$(DOCDIR)/profiles $(DESTDIR)$(DATADIR)/vitaled/varlink
	install -m 0755 $(B)/vitaled $(DESTDIR)$(SBINDIR)/vitaled
	install -m 0755 $(B)/vitalectl $(DESTDIR)$(BINDIR)/vitalectl
	install -m 0644 $(LIBCLIENT) $(DESTDIR)$(LIBDIR)/
	install -m 0644 $(LIBCLIENT_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf $(LIBCLIENT_SOFILE) $(DESTDIR)$(LIBDIR)/$(LIBCLIENT_SONAME)
	ln -sf $(LIBCLIENT_SONAME) $(DESTDIR)$(LIBDIR)/libvitaled-client.so
	install -m 0644 client/vitaled-client.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 $(PCFILE) $(DESTDIR)$(LIBDIR)/pkgconfig/vitaled-client.pc
	install -m 0644 docs/vitaled.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 docs/vitalectl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 docs/vitaled.conf.5 $(DESTDIR)$(MANDIR)/man5/
	# the configuration: the annotated example in the docs; /etc gets a copy
	# only where there is none (an administrator's file is never overwritten)
	install -m 0644 conf/vitaled.conf $(DESTDIR)$(DOCDIR)/vitaled.conf.example
	[ -e $(DESTDIR)$(SYSCONFDIR)/vitaled/vitaled.conf ] || \
	    install -m 0644 conf/vitaled.conf $(DESTDIR)$(SYSCONFDIR)/vitaled/vitaled.conf
	install -m 0644 README.md LICENSE $(wildcard docs/*.md) $(DESTDIR)$(DOCDIR)/
	# the built-in card profiles are compiled in; their source is documentation
	# (and a starting point for a site's own in $(SYSCONFDIR)/vitaled/profiles.d,
	# the default [profiles] dir)
	for f in $(wildcard conf/profiles/*.profile); do install -m 0644 $$f $(DESTDIR)$(DOCDIR)/profiles/; done
	# the till examples (docs/till-integration.md), where an integrator starts from them
	install -d $(DESTDIR)$(DOCDIR)/examples
	install -m 0644 examples/c/till.c examples/python/till.py $(DESTDIR)$(DOCDIR)/examples/
	for f in $(IFACE_FILES); do install -m 0644 $$f $(DESTDIR)$(DATADIR)/vitaled/varlink/; done
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	install -m 0644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	install -m 0644 packaging/systemd/vitaled.sysusers $(DESTDIR)$(SYSUSERSDIR)/vitaled.conf
	install -m 0644 packaging/systemd/vitaled.tmpfiles $(DESTDIR)$(TMPFILESDIR)/vitaled.conf
	install -m 0755 $(B)/vitaled-web $(DESTDIR)$(SBINDIR)/vitaled-web
	install -m 0644 docs/vitaled-web.8 $(DESTDIR)$(MANDIR)/man8/
	install -D -m 0644 packaging/bash-completion/vitalectl $(DESTDIR)$(BASHCOMPDIR)/vitalectl

clean:
	rm -rf $(B)

# ---------------------------------------------------------------------------
# the Debian package (packaging/debian, debhelper): built from a copy of the
# tree in $(B)/deb, so the tree stays clean; lintian must show no error and no
# warning that packaging/debian/*.lintian-overrides does not justify.
# `make deb-test` installs it with apt into a clean Debian 12 it bootstraps
# (packaging/deb-test.sh).
DEB_DIR     := $(B)/deb
.PHONY: deb deb-test
deb: deps
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/vitaled-$(VERSION)
	if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git ls-files -z --cached --others --exclude-standard | \
	    tar --null -T - --ignore-failed-read -cf - | tar -C $(DEB_DIR)/vitaled-$(VERSION) -xf -; \
	else \
	  tar --exclude='./build*' --exclude=./$(B) -cf - . | tar -C $(DEB_DIR)/vitaled-$(VERSION) -xf -; \
	fi
	cp -r packaging/debian $(DEB_DIR)/vitaled-$(VERSION)/debian
	cd $(DEB_DIR)/vitaled-$(VERSION) && DEB_BUILD_OPTIONS="parallel=2 $$DEB_BUILD_OPTIONS" dpkg-buildpackage -us -uc -b > ../build.log 2>&1 || \
	  { tail -40 ../build.log; echo "deb: dpkg-buildpackage failed: $(DEB_DIR)/build.log"; exit 1; }
	lintian --fail-on error,warning --display-info $(DEB_DIR)/*.changes
	@ls $(DEB_DIR)/*.deb

deb-test: deb
	@B="$(B)" sh packaging/deb-test.sh
