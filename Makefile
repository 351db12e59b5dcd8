# One entry point: make, make test, make demo (see README.md).
#
# Builds go out of tree: build/release (optimised) and build/asan (with
# AddressSanitizer and UndefinedBehaviorSanitizer, used by the tests).
#
# The build folder says which kind of build it holds, so that one folder
# never mixes objects of both: a folder whose name ends in "asan"
# (build/asan) is a sanitizer build, any other is not. SAN=1 asks for a
# sanitizer build and SAN=0 for a plain one; either may be left out:
# BUILD alone decides SAN (`make BUILD=build/asan` builds with the
# sanitizers), SAN=1 alone builds into build/asan, neither builds into
# build/release. A SAN that contradicts BUILD (SAN=1 into build/release,
# SAN=0 into build/asan) stops make with an error.

ifeq ($(origin BUILD),undefined)
BUILD := $(if $(filter 1,$(SAN)),build/asan,build/release)
endif
BUILD_SAN := $(if $(filter %asan,$(notdir $(patsubst %/,%,$(BUILD)))),1,0)
ifeq ($(origin SAN),undefined)
SAN := $(BUILD_SAN)
endif
ifneq ($(if $(filter 1,$(SAN)),1,0),$(BUILD_SAN))
$(error SAN=$(SAN) does not fit BUILD=$(BUILD): a folder named *asan holds the \
	sanitizer build (SAN=1), any other folder a plain one (SAN=0))
endif

CC ?= cc
CSTD := -std=c17 -D_GNU_SOURCE
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
PKGS := libmicrohttpd jansson librabbitmq sqlite3 uuid nettle
# Headers only, loaded when first needed rather than linked: libpq by the
# first PostgreSQL connection (src/lib/db_postgres.c), libcurl by the first
# rebuild (src/lib/fetch.c). A service on SQLite maps neither.
PKGS_LOADED := libpq libcurl
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
else
OPT := -O2 -g
LDSAN :=
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) $(PKGS_LOADED) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS_ALL = $(CSTD) $(WARN) $(OPT) -Isrc/lib -DVERSION='"$(VERSION)"' $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(LDSAN) $(PKG_LIBS) -lpthread -lm $(LDFLAGS)

LIB_SRC := $(wildcard src/lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
SERVICES := user order invoice
SERVICE_BINS := $(SERVICES:%=$(BUILD)/bin/%-service)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test unit e2e demo demo-cluster clean release asan fmt fmt-check bench fuzz \
	fuzz-bins check-routes
.DEFAULT_GOAL := all

all: $(SERVICE_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libcqrs.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Each service's OpenAPI document (README, "Describing itself"): written by
# openapi/generate.py (rerun when it changes; the files are committed) and
# built into the service's binary by embed_openapi.S, so the binary is
# relinked whenever its document changes.
OPENAPI_DOCS := $(SERVICES:%=openapi/%-service.json)
$(OPENAPI_DOCS) &: openapi/generate.py VERSION
	/usr/bin/python3 openapi/generate.py

$(BUILD)/openapi/%.o: openapi/%.json src/lib/embed_openapi.S
	@mkdir -p $(dir $@)
	$(CC) -c -DOPENAPI_FILE='"$<"' -o $@ src/lib/embed_openapi.S

# What the services agree on (topology, event types, field limits) is in
# src/contract, which only they see: src/lib gets it as parameters.
CONTRACT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/contract/*.c))
$(BUILD)/src/contract/%.o $(foreach s,$(SERVICES),$(BUILD)/src/$(s)/%.o): CFLAGS_ALL += -Isrc/contract

# Each service links its own folder's objects, the contract, its OpenAPI
# document and the shared library.
define service_rule
$(BUILD)/bin/$(1)-service: $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/$(1)/*.c)) \
		$(CONTRACT_OBJ) $(BUILD)/openapi/$(1)-service.o $(BUILD)/libcqrs.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(OPT) -o $$@ $$^ $$(LDLIBS_ALL)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))

# Unit tests link the shared library; a test of a service's own module
# also links that module's objects, and a test that uses helpers shared
# between tests (tests/unit/*.c not named test_*, compiled once by the
# %.o rule above) links theirs: both named in UNIT_EXTRA_<test>.
# dbtest.o holds the db tests that run on both backends: test_db runs them
# on SQLite, test_db_pg on PostgreSQL (with the services' real schemas).
UNIT_EXTRA_test_event := $(BUILD)/src/invoice/event.o $(CONTRACT_OBJ)
UNIT_EXTRA_test_outbox := $(BUILD)/tests/unit/testutil.o $(CONTRACT_OBJ)
UNIT_EXTRA_test_mq := $(CONTRACT_OBJ)
UNIT_EXTRA_test_field := $(CONTRACT_OBJ)
UNIT_EXTRA_test_db := $(BUILD)/tests/unit/dbtest.o $(BUILD)/tests/unit/testutil.o
UNIT_EXTRA_test_idempotency := $(UNIT_EXTRA_test_db)
UNIT_EXTRA_test_db_pg := $(UNIT_EXTRA_test_db) \
	$(SERVICES:%=$(BUILD)/src/%/schema.o)
# test_users: the user insert's error answers, on both backends.
UNIT_EXTRA_test_users := $(UNIT_EXTRA_test_db) $(BUILD)/src/user/users.o \
	$(BUILD)/src/user/schema.o $(CONTRACT_OBJ)
# test_groupcommit: the committer on both backends; test_config: parsing
# in-process and, for what exits, in a child; test_create: the create path
# over HTTP with the user service's real spec and schema.
UNIT_EXTRA_test_groupcommit := $(UNIT_EXTRA_test_db)
UNIT_EXTRA_test_config := $(BUILD)/tests/unit/testutil.o
UNIT_EXTRA_test_create := $(UNIT_EXTRA_test_users)
# Tests that call libcurl or libpq themselves link them (the services load
# them): test_create's HTTP client, test_db_pg's reading of the URL.
UNIT_LIBS_test_create := $(shell pkg-config --libs libcurl 2>/dev/null)
UNIT_LIBS_test_db_pg := $(shell pkg-config --libs libpq 2>/dev/null)
$(foreach t,$(UNIT_BINS),$(eval $(t): $(UNIT_EXTRA_$(notdir $(t)))))

# Each test's .d file records the headers it includes (dbtest.h too).
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libcqrs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc -MMD -MP -MT $@ -MF $@.d -o $@ $< $(UNIT_EXTRA_$*) \
		$(BUILD)/libcqrs.a $(LDLIBS_ALL) $(UNIT_LIBS_$*) -lcmocka

unit-bins: $(UNIT_BINS)

deps:
	@scripts/install-deps.sh

release: deps
	@$(MAKE) --no-print-directory BUILD=build/release all

asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 all unit-bins

# The test command of README.md and .ci/run. The release build too: -O2
# finds warnings (-Werror) that the sanitizer build's -O1 does not.
test: asan release
	@$(MAKE) --no-print-directory fmt-check
	@$(MAKE) --no-print-directory check-routes
	@scripts/run-tests.sh build/asan

unit: asan
	@$(MAKE) --no-print-directory check-routes
	@scripts/run-tests.sh build/asan unit

# Route tables the compiler must refuse (src/lib/route.h, ROUTE): each
# MISTAKE of tests/compile/route_mistakes.c must fail to compile, and the
# correct table (MISTAKE=0) must compile, so that a failure is the check's.
ROUTE_MISTAKES := 1 2 3 4 5
check-routes:
	@$(CC) $(CFLAGS_ALL) -DMISTAKE=0 -fsyntax-only tests/compile/route_mistakes.c
	@for m in $(ROUTE_MISTAKES); do \
		if $(CC) $(CFLAGS_ALL) -DMISTAKE=$$m -fsyntax-only tests/compile/route_mistakes.c \
			2>/dev/null; then \
			echo "check-routes: mistake $$m in tests/compile/route_mistakes.c compiled"; \
			exit 1; \
		fi; \
	done
	@echo "check-routes: the $(words $(ROUTE_MISTAKES)) mistaken route tables do not compile"

e2e: asan
	@scripts/run-tests.sh build/asan e2e

demo: release
	@scripts/demo.sh build/release

# Two replicas of every service on PostgreSQL and a three-node RabbitMQ
# cluster with quorum queues (README, "PostgreSQL and scale-out").
demo-cluster: release
	@scripts/demo-cluster.sh build/release

# Fault injection (tests/e2e/chaos.py, docs/reliability.md): load and random
# faults (kill -9, SIGTERM, broker restart, SIGSTOP past the heartbeat) for
# DURATION seconds, then a check that every accepted order is on exactly one
# invoice line; SEED=N replays a run. Then the resource test with its long
# counts (100 broker reconnects, 20 broker restarts). `make test` runs short
# versions of both.
DURATION ?= 600
.PHONY: chaos
chaos: asan
	BIN_DIR=build/asan/bin /usr/bin/python3 tests/e2e/chaos.py --duration $(DURATION) \
		$(if $(SEED),--seed $(SEED))
	cd tests/e2e && BIN_DIR=$(CURDIR)/build/asan/bin E2E_BROKER_RESTARTS=20 \
		PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest test_resources.py -q -p no:cacheprovider

# Speed against the machine's own limits (bench/run.py); QUICK=1: < 2 min.
# DB=postgres: the services on a private PostgreSQL cluster. SCALE=1: the
# scale curve instead (SCALE_SIZES=10000,100000,1000000 orders by default).
# docs/performance.md says what each prints and records.
bench: release
	@$(MAKE) --no-print-directory -C bench OUT=../build/release/bench
	@/usr/bin/python3 bench/run.py --build build/release $(if $(filter 1,$(QUICK)),--quick) \
		$(if $(DB),--db $(DB)) $(if $(filter 1,$(SCALE)),--scale) \
		$(if $(SCALE_SIZES),--scale-sizes $(SCALE_SIZES))

# Fuzzing (tests/fuzz): libFuzzer harnesses built by clang with ASan and
# UBSan into build/fuzz. `make fuzz FUZZ_SECONDS=N` runs each for N seconds
# (scripts/run-fuzz.sh, which `make test` also runs for a few seconds).
FUZZ_BUILD := build/fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
FUZZ_CFLAGS = $(CSTD) $(WARN) $(FUZZ_OPT) -Isrc -Isrc/lib -Isrc/contract -Isrc/invoice \
	-DVERSION='"$(VERSION)"' $(PKG_CFLAGS)
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(LIB_SRC) $(wildcard src/contract/*.c) \
	src/invoice/event.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/bin/%,$(wildcard tests/fuzz/fuzz_*.c))

# A harness that reaches a service's code (its create_spec or rows_list,
# declared in the service's header) links that code's objects, named in
# FUZZ_EXTRA_<harness>, built like the library's.
FUZZ_EXTRA_fuzz_create_user := $(FUZZ_BUILD)/src/user/users.o
FUZZ_EXTRA_fuzz_create_account := $(FUZZ_BUILD)/src/user/accounts.o
FUZZ_EXTRA_fuzz_create_order := $(FUZZ_BUILD)/src/order/orders.o
FUZZ_EXTRA_fuzz_listq := $(FUZZ_EXTRA_fuzz_create_user) $(FUZZ_EXTRA_fuzz_create_account) \
	$(FUZZ_EXTRA_fuzz_create_order) $(FUZZ_BUILD)/src/invoice/invoices.o
$(foreach h,$(FUZZ_BINS),$(eval $(h): $(FUZZ_EXTRA_$(notdir $(h)))))

$(FUZZ_BUILD)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libcqrs.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Each harness's .d file records the headers it includes.
$(FUZZ_BUILD)/bin/%: tests/fuzz/%.c $(FUZZ_BUILD)/libcqrs.a
	@mkdir -p $(dir $@) $(FUZZ_BUILD)/dep
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MT $@ -MF $(FUZZ_BUILD)/dep/$*.d \
		-o $@ $< $(FUZZ_EXTRA_$*) $(FUZZ_BUILD)/libcqrs.a $(PKG_LIBS) -lpthread -lm

fuzz-bins: $(FUZZ_BINS)

fuzz: deps
	@scripts/run-fuzz.sh $(FUZZ_SECONDS)

# Installation (README.md, "Installing"): the services of BUILD (the
# release build unless BUILD says otherwise; `make install BUILD=build/asan
# SAN=1` installs the sanitizer build) into BINDIR, a hardened systemd unit
# per service, generated from dist/systemd/service.in with the paths below,
# into UNITDIR, the share/ tree and an example settings file per service
# into DATADIR, the docs into DOCDIR. DESTDIR stages it all under another
# root (packaging, tests). Nothing outside these folders is touched: the
# settings files in SYSCONFDIR/cqrs-c and the databases under /var/lib are
# the administrator's, and so is `systemctl daemon-reload`.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/cqrs-c
DOCDIR ?= $(PREFIX)/share/doc/cqrs-c
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
INSTALL ?= install
ROLE_user := users and accounts, write side
ROLE_order := orders, write side
ROLE_invoice := invoices, read side
PORT_user := 8081
PORT_order := 8082
PORT_invoice := 8083
# The share/ tree, folders deepest first (for uninstall's rmdir); names
# without spaces.
SHARE_DIRS = $(shell find share -depth -type d 2>/dev/null)
SHARE_FILES = $(shell find share -type f 2>/dev/null)
DOC_FILES := $(wildcard docs/*.md)
# @NAME@ and the rest in dist/: one sed program per service ($(1)).
install_subst = sed -e 's|@NAME@|$(1)-service|g' -e 's|@ROLE@|$(ROLE_$(1))|g' \
	-e 's|@PORT@|$(PORT_$(1))|g' -e 's|@STATEDIR@|cqrs-c-$(1)|g' \
	-e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' \
	-e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

# The unit and the example settings of service $(1), each on its own line.
define install_service
	$(call install_subst,$(1)) dist/systemd/service.in >$(DESTDIR)$(UNITDIR)/$(1)-service.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/$(1)-service.service
	$(call install_subst,$(1)) dist/service.env.in >$(DESTDIR)$(DATADIR)/examples/$(1)-service.env
	chmod 0644 $(DESTDIR)$(DATADIR)/examples/$(1)-service.env

endef

.PHONY: install uninstall
install: $(SERVICE_BINS)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(DATADIR)/examples $(DESTDIR)$(DOCDIR)/docs \
		$(SHARE_DIRS:share%=$(DESTDIR)$(DATADIR)%)
	$(INSTALL) -m 0755 $(SERVICE_BINS) $(DESTDIR)$(BINDIR)/
	$(foreach s,$(SERVICES),$(call install_service,$(s)))
	for f in $(SHARE_FILES:share/%=%); do \
		$(INSTALL) -m 0644 "share/$$f" "$(DESTDIR)$(DATADIR)/$$f" || exit 1; done
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 $(DOC_FILES) $(DESTDIR)$(DOCDIR)/docs/

# Removes the files install puts there (those of the share/ tree as it is
# now), then the folders of DATADIR and DOCDIR that are left empty. Stop
# and disable the services first.
uninstall:
	rm -f $(SERVICES:%=$(DESTDIR)$(BINDIR)/%-service) \
		$(SERVICES:%=$(DESTDIR)$(UNITDIR)/%-service.service) \
		$(SERVICES:%=$(DESTDIR)$(DATADIR)/examples/%-service.env) \
		$(SHARE_FILES:share%=$(DESTDIR)$(DATADIR)%) \
		$(DESTDIR)$(DOCDIR)/README.md $(DOC_FILES:%=$(DESTDIR)$(DOCDIR)/%)
	for d in $(DESTDIR)$(DATADIR)/examples $(SHARE_DIRS:share%=$(DESTDIR)$(DATADIR)%) \
		$(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR); do \
		[ ! -d "$$d" ] || rmdir --ignore-fail-on-non-empty "$$d"; done

# Formats every C file of the tree with the root's .clang-format (Debian's
# clang-format); `make test` checks that nothing is left to change.
fmt:
	$(CLANG_FORMAT) -i $(FMT_FILES)

# Fails when a C file of the tree is not as clang-format, with the root's
# .clang-format, would write it (--dry-run: it changes nothing, and says
# where; docs/testing.md, "Formatting"). `make test` runs it first.
CLANG_FORMAT ?= clang-format
FMT_FILES = $(wildcard src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c \
	tests/fuzz/*.h tests/compile/*.c bench/*.c)
fmt-check:
	$(CLANG_FORMAT) --dry-run --Werror $(FMT_FILES)

clean:
	rm -rf build var

-include $(shell find build -name '*.d' 2>/dev/null)
