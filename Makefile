# dtq - see README.md. `make help` lists the targets.

BUILD    ?= build
PREFIX   ?= /usr/local
CC       ?= cc
PKG_CONFIG ?= pkg-config

VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || cat VERSION 2>/dev/null || echo 0.0.0)

PKGS      := libcurl libcjson libpq
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS  := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null || echo -lcurl -lcjson -lpq)
# mbedtls 2.x and libev ship no pkg-config files on Debian.
LIBS      ?= $(PKG_LIBS) -lmbedcrypto -lev -lm
TEST_LIBS ?= $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null || echo -lcmocka)

WARN     := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN     += -Werror
endif
OPT      ?= -O2 -g
SAN      ?=
CFLAGS   ?=
CPPFLAGS += -Iinclude -D_GNU_SOURCE -DDTQ_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
ALL_CFLAGS = -std=c11 $(OPT) $(WARN) $(SAN) $(CFLAGS) -MMD -MP
LDFLAGS  ?=

CORE_SRC    := $(filter-out src/main.c,$(wildcard src/*.c))
APPLET_SRC  := $(wildcard applets/*.c)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
ITEST_SRC   := $(wildcard tests/integration/*.c)
TESTLIB_SRC := $(wildcard tests/lib/*.c)
BENCH_SRC   := $(wildcard tests/bench/*.c)

CORE_OBJ    := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
APPLET_OBJ  := $(APPLET_SRC:%.c=$(BUILD)/obj/%.o)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
ITEST_BIN   := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/%)
BENCH_BIN   := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

APPLET_NAMES = $(shell awk -F'"' '/^APPLET/ {print $$2}' src/applets.def)

.PHONY: all test unit asan fuzz fuzz-build fuzz-coverage install uninstall static deps docs check-docs lint clean help \
        bench demo demo-down

all: $(BUILD)/dtq $(BUILD)/links

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libdtq.a: $(CORE_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libapplets.a: $(APPLET_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/dtq: $(BUILD)/obj/src/main.o $(BUILD)/libapplets.a $(BUILD)/libdtq.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libapplets.a $(BUILD)/libdtq.a \
		$(BUILD)/libapplets.a $(BUILD)/libdtq.a $(LIBS)

# Applet symlinks (dtq-config -> dtq), so argv[0] dispatch is tested in place.
$(BUILD)/links: $(BUILD)/dtq src/applets.def
	@for a in $(APPLET_NAMES); do ln -sf dtq $(BUILD)/dtq-$$a; done
	@touch $@

$(BUILD)/tests/%: tests/unit/%.c $(TESTLIB_OBJ) $(BUILD)/libapplets.a $(BUILD)/libdtq.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(TESTLIB_OBJ) $(BUILD)/libapplets.a \
		$(BUILD)/libdtq.a $(BUILD)/libapplets.a $(BUILD)/libdtq.a $(LIBS) $(TEST_LIBS)

$(BUILD)/tests/%: tests/integration/%.c $(TESTLIB_OBJ) $(BUILD)/libapplets.a $(BUILD)/libdtq.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(TESTLIB_OBJ) $(BUILD)/libapplets.a \
		$(BUILD)/libdtq.a $(BUILD)/libapplets.a $(BUILD)/libdtq.a $(LIBS) $(TEST_LIBS) -lpthread

unit-bins: $(UNIT_BIN) $(ITEST_BIN)

# Benchmark drivers (tests/bench/*.c), built on demand by their scripts.
$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libdtq.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdtq.a $(LIBS)

## bench: benchmarks against local emulators (tests/bench/*.sh; not part of make test)
bench: all $(BENCH_BIN)
	@for s in tests/bench/*.sh; do BUILD=$(BUILD) bash $$s || exit 1; done

## test: unit + integration tests against real PostgreSQL and moto_server
test: all unit-bins
	BUILD=$(BUILD) tests/run.sh

## unit: cmocka unit tests only (no services)
unit: all unit-bins
	BUILD=$(BUILD) tests/run.sh --unit

## asan: build under AddressSanitizer + UBSan and run the tests
asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" test

## fuzz: libFuzzer targets tests/fuzz/fuzz_*.c (clang, ASan+UBSan), FUZZ_SECONDS (60) each
# FUZZ_TARGETS="httpd sqs" picks some; `make fuzz-build` only builds them (docs/fuzzing.md).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 16384
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" $(FUZZ_BUILD)/libdtq.a
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz: building $(FUZZ_BUILD)/fuzz_$$t"; \
		$(FUZZ_CC) $(CPPFLAGS) -std=c11 -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) \
			-o $(FUZZ_BUILD)/fuzz_$$t tests/fuzz/fuzz_$$t.c $(FUZZ_BUILD)/libdtq.a $(LIBS); \
	done
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts; \
		echo "fuzz: fuzz_$$t for $(FUZZ_SECONDS) s (new inputs: $(FUZZ_BUILD)/corpus/$$t)"; \
		$(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) \
			-print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/fuzz_$$t- \
			$(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	done

## fuzz-coverage: line coverage of each fuzzed module reached by the corpora (after make fuzz)
fuzz-coverage:
	FUZZ_CC=$(FUZZ_CC) FUZZ_CPPFLAGS="-Iinclude -D_GNU_SOURCE $(PKG_CFLAGS)" \
		FUZZ_LIBS="$(LIBS)" tests/fuzz/coverage.sh $(FUZZ_TARGETS)

## install: dtq and its applet symlinks into $(PREFIX)/bin
install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/dtq $(DESTDIR)$(PREFIX)/bin/dtq
	@for a in $(APPLET_NAMES); do ln -sf dtq $(DESTDIR)$(PREFIX)/bin/dtq-$$a; done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dtq
	@for a in $(APPLET_NAMES); do rm -f $(DESTDIR)$(PREFIX)/bin/dtq-$$a; done

## static: the single static binary build/static/dtq (musl; deps built from source)
static:
	mk/static.sh

## deps: install the Debian packages and the Python virtualenv (.venv) that build and tests use
deps:
	mk/deps.sh

## docs: regenerate docs/configuration.md and deploy/dtq.conf.example from the settings table
docs: $(BUILD)/dtq
	$(BUILD)/dtq config --markdown > docs/configuration.md
	$(BUILD)/dtq config --example > deploy/dtq.conf.example

## lint: banned functions
lint:
	@! grep -nE '\b(sprintf|strcpy|strcat|strncpy|strtok|atoi|atol|gets|localtime|gmtime)\(' \
		src/*.c applets/*.c include/dtq/*.h || (echo "banned function used" && false)

DTQ_VENV ?= $(CURDIR)/.venv
## demo: install what is needed, start the local stack (compose/local/up.sh) and run the 20-op demo job
demo: deps all
	DTQ_VENV=$(DTQ_VENV) compose/local/up.sh
	$(DTQ_VENV)/bin/python python/examples/run_demo.py

## demo-down: stop the local stack (compose/local/down.sh --purge also deletes .demo/)
demo-down:
	DTQ_VENV=$(DTQ_VENV) compose/local/down.sh

clean:
	rm -rf $(BUILD) build

help:
	@grep -E '^## ' Makefile | sed 's/^## /  make /'

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)
