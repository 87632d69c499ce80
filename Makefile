# Spanhost: `make run` and `make test` do all the set-up on a fresh Debian machine.

BUILD       := build
# -enable-testing: the test build then reuses the release build of `make build` instead of building
# every module again with testability (no change in instructions per span, by callgrind).
SWIFT_FLAGS := -c release -Xswiftc -enable-testing
SWIFT_BIN    = $(shell swift build $(SWIFT_FLAGS) --show-bin-path)
CC          ?= cc
PLUGIN_CFLAGS := -std=c99 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -pedantic -shared -fPIC -Iinclude -Iplugins/common
VENV        := $(BUILD)/venv
PY          := $(VENV)/bin/python
APT_PACKAGES := openssl libssl-dev zlib1g-dev libcurl4 librdkafka-dev libffi-dev python3-venv wrk
APT_TEST_PACKAGES := chromium
PY_PACKAGES := opentelemetry-sdk==1.* opentelemetry-exporter-otlp-proto-http==1.* opentelemetry-exporter-zipkin-json==1.* pytest pytest-xdist requests
# The Omegi Python agent pins its own OpenTelemetry versions, so it gets a venv of its own.
OMEGI_VENV  := $(BUILD)/omegi-venv
OMEGI_PACKAGES := omegi-instrumentation-python==0.0.8 flask==3.0.3
# Jaeger and Zipkin clients that pin older OpenTelemetry (the Jaeger exporter's last release)
# or protobuf 3 get a venv of their own too.
CLIENTS_VENV := $(BUILD)/clients-venv
CLIENTS_PACKAGES := opentelemetry-sdk==1.21.0 opentelemetry-exporter-jaeger-thrift==1.21.0 \
	opentelemetry-exporter-zipkin-proto-http==1.21.0 jaeger-client==4.8.0 py-zipkin[protobuf]==1.2.8 six deprecated
# The three venvs, each installed once (a stamp file in it says so).
TEST_VENVS := $(VENV)/.installed $(OMEGI_VENV)/.installed $(CLIENTS_VENV)/.installed

# C plugins are built with cc; Swift plugins (plugins/<name>/*.swift) are SwiftPM dynamic libraries.
C_PLUGINS     := $(filter-out common,$(notdir $(patsubst %/,%,$(dir $(wildcard plugins/*/*.c)))))
PLUGIN_SOS    := $(C_PLUGINS:%=$(BUILD)/plugins/%.so)
SWIFT_PLUGINS := otlphttp zipkin webhook
FIXTURE_SRCS := $(wildcard Tests/fixtures/plugins/*.c)
FIXTURE_SOS  := $(FIXTURE_SRCS:Tests/fixtures/plugins/%.c=$(BUILD)/test-plugins/%.so)
# C++ fixtures: the header must work from C++ with no extern "C" of the plugin's own.
CXX         ?= c++
FIXTURE_CXX_SOS := $(patsubst Tests/fixtures/plugins/%.cpp,$(BUILD)/test-plugins/%.so,$(wildcard Tests/fixtures/plugins/*.cpp))
# The header of each earlier minor, from the repository's history (the last commit before the
# next minor), <minor>:<commit>; a fixture built against each must load into this host.
ABI_HISTORY := 0:3308ec6^ 1:7ff4c65^ 2:1923d2f^ 3:2c2f12c^ 4:16061d1^ 5:f26da28^ 6:2e97b95^ 7:94fcf13^
ABI_HISTORY_SOS := $(foreach v,$(ABI_HISTORY),$(BUILD)/test-plugins/abi_1_$(firstword $(subst :, ,$(v))).so)
abi_commit = $(word 2,$(subst :, ,$(filter $(1):%,$(ABI_HISTORY))))

.PHONY: all deps test-deps install build examples run test test-setup test-c test-swift test-e2e test-fuzz fuzz fuzz-binaries chaos test-chaos bench header-check docs docs-check clean

all: build

# Debian packages, installed only when missing.
define apt-install-cmd
SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(1)
endef

define apt-install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(call apt-install-cmd,$$missing); fi
endef

deps:
	$(call apt-install,$(APT_PACKAGES))

# What only the tests need: headless Chromium to check the admin page, and rustc (any rustc on
# the PATH, else Debian's) to build examples-rust.
test-deps: deps
	$(call apt-install,$(APT_TEST_PACKAGES))
	@command -v rustc >/dev/null 2>&1 || { $(call apt-install-cmd,rustc); }

$(VENV)/.installed: Makefile | deps
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check $(PY_PACKAGES)
	touch $@

$(OMEGI_VENV)/.installed: Makefile | deps
	python3 -m venv $(OMEGI_VENV)
	$(OMEGI_VENV)/bin/pip install -q --disable-pip-version-check $(OMEGI_PACKAGES)
	touch $@

$(CLIENTS_VENV)/.installed: Makefile | deps
	python3 -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install -q --disable-pip-version-check $(CLIENTS_PACKAGES)
	touch $@

build: deps $(PLUGIN_SOS) examples $(FIXTURE_SOS) $(FIXTURE_CXX_SOS) $(ABI_HISTORY_SOS) $(BUILD)/test-bin/kafka-mock
	swift build $(SWIFT_FLAGS) --product spanhostd
	swift build $(SWIFT_FLAGS) --product spanhost
	swift build $(SWIFT_FLAGS) --product spanhost-baseline
	swift build $(SWIFT_FLAGS) --product spanhost-bench-path
	mkdir -p $(BUILD)/bin
	cp "$(SWIFT_BIN)/spanhostd" "$(SWIFT_BIN)/spanhost" "$(SWIFT_BIN)/spanhost-baseline" "$(SWIFT_BIN)/spanhost-bench-path" $(BUILD)/bin/
	for p in $(SWIFT_PLUGINS); do \
		swift build $(SWIFT_FLAGS) --product spanhost-$$p && cp "$(SWIFT_BIN)/libspanhost-$$p.so" $(BUILD)/plugins/$$p.so; \
	done

# Libraries a C plugin links against, by plugin name.
LDLIBS_kafka := -lrdkafka
LDLIBS_kafka_events := -lrdkafka
LDLIBS_attributes := -lcrypto
LDLIBS_probabilistic_sampler := -lm
LDLIBS_span := -lm
LDLIBS_resource := -lcrypto
LDLIBS_redaction := -lcrypto
LDLIBS_tail_sampling := -lpthread
LDLIBS_error_flow := -lpthread
LDLIBS_groupbytrace := -lpthread
$(BUILD)/plugins/groupbytrace.so: plugins/tail_sampling/tail_sampling.c
# The resource processor is the attributes processor's code built another way.
$(BUILD)/plugins/resource.so: plugins/attributes/attributes.c

$(BUILD)/plugins/%.so: plugins/%/*.c include/spanhost/spanhost.h plugins/common/*.h
	@mkdir -p $(BUILD)/plugins
	$(CC) $(PLUGIN_CFLAGS) -o $@ $(wildcard plugins/$*/*.c) $(LDLIBS_$*)

# kafka_events is the kafka exporter's source built as a notifier.
$(BUILD)/plugins/kafka_events.so: plugins/kafka/kafka.c

examples:
	@mkdir -p $(BUILD)/plugins
	$(MAKE) -s -C examples-c OUT=$(abspath $(BUILD)/plugins)

$(BUILD)/test-plugins/%.so: Tests/fixtures/plugins/%.c include/spanhost/spanhost.h
	@mkdir -p $(BUILD)/test-plugins
	$(CC) $(PLUGIN_CFLAGS) -o $@ $<

# Plugins built by older headers keep loading (see ABI_HISTORY above).
.SECONDARY: $(foreach v,$(ABI_HISTORY),$(BUILD)/abi-history/1.$(firstword $(subst :, ,$(v)))/spanhost/spanhost.h)

$(BUILD)/abi-history/1.%/spanhost/spanhost.h:
	@mkdir -p $(dir $@)
	git show '$(call abi_commit,$*):include/spanhost/spanhost.h' > $@

$(BUILD)/test-plugins/abi_1_%.so: Tests/fixtures/abi-history/historical.c $(BUILD)/abi-history/1.%/spanhost/spanhost.h
	@mkdir -p $(BUILD)/test-plugins
	$(CC) $(subst -Iinclude,-I$(BUILD)/abi-history/1.$*,$(PLUGIN_CFLAGS)) -DPLUGIN_NAME='"abi_1_$*"' -o $@ $<

# old_minor declares ABI 1.0 with the descriptor as long as 1.1 made it.
$(BUILD)/test-plugins/old_minor.so: Tests/fixtures/plugins/old_minor.c $(BUILD)/abi-history/1.1/spanhost/spanhost.h
	@mkdir -p $(BUILD)/test-plugins
	$(CC) $(subst -Iinclude,-I$(BUILD)/abi-history/1.1,$(PLUGIN_CFLAGS)) -o $@ $<

$(BUILD)/test-plugins/%.so: Tests/fixtures/plugins/%.cpp include/spanhost/spanhost.h
	@mkdir -p $(BUILD)/test-plugins
	$(CXX) -std=c++17 -O2 -Wall -Wextra -Werror -shared -fPIC -Iinclude -o $@ $<

# A librdkafka mock cluster for tests and benchmarks.
$(BUILD)/test-bin/kafka-mock: Tests/fixtures/kafka/kafka_mock.c
	@mkdir -p $(BUILD)/test-bin
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -o $@ $< -lrdkafka

run: build
	$(BUILD)/bin/spanhostd

# The header must stand alone as C99 and as C++.
# Installs the executables, the shipped plugins, a default config and the systemd unit:
#   sudo make install            (PREFIX=/usr/local)
#   make install DESTDIR=/tmp/pkg PREFIX=/usr
# then `systemctl daemon-reload && systemctl enable --now spanhost`.
PREFIX  ?= /usr/local
DESTDIR ?=
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/spanhost/plugins $(DESTDIR)$(PREFIX)/share/doc/spanhost \
		$(DESTDIR)/etc/spanhost $(DESTDIR)/etc/systemd/system
	install -m 0755 $(BUILD)/bin/spanhostd $(BUILD)/bin/spanhost $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(BUILD)/plugins/*.so $(DESTDIR)$(PREFIX)/lib/spanhost/plugins/
	install -m 0644 README.md examples-c/AUTHORING.md include/spanhost/spanhost.h $(DESTDIR)$(PREFIX)/share/doc/spanhost/
	[ -e $(DESTDIR)/etc/spanhost/config.yaml ] || install -m 0644 packaging/config.yaml $(DESTDIR)/etc/spanhost/config.yaml
	sed 's|@PREFIX@|$(PREFIX)|g' packaging/spanhost.service > $(DESTDIR)/etc/systemd/system/spanhost.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/spanhost.service

header-check:
	@cmp include/spanhost/spanhost.h PluginKit/Sources/CSpanhostABI/include/spanhost/spanhost.h || \
		{ echo "PluginKit's copy of spanhost.h differs: cp include/spanhost/spanhost.h PluginKit/Sources/CSpanhostABI/include/spanhost/"; exit 1; }
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c include/spanhost/spanhost.h
	c++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ include/spanhost/spanhost.h

test: test-setup header-check docs-check test-c test-fuzz test-swift test-e2e test-chaos

# The build beside what only the tests need: apt and pip mostly wait on the network while the
# Swift build keeps the cores busy. (deps comes first for all of them: one apt at a time.)
test-setup:
	$(MAKE) -j3 build test-deps $(TEST_VENVS)

# docs/plugins/: one reference page per shipped plugin, from what the plugin itself declares
# (`spanhost plugins describe --markdown`). `make docs` writes them; `make test` fails when one differs.
plugin-pages = for so in $(BUILD)/plugins/*.so; do name=$$(basename $$so .so); \
	$(BUILD)/bin/spanhost plugins describe $$name --dir $(BUILD)/plugins --markdown > $(1)/$$name.md || exit 1; done

docs: build
	mkdir -p docs/plugins && rm -f docs/plugins/*.md
	$(call plugin-pages,docs/plugins)

docs-check: build
	@pages=$$(mktemp -d) && $(call plugin-pages,$$pages) && \
		{ diff -ru docs/plugins $$pages || { echo "docs/plugins/ is not what the plugins declare: run make docs"; rm -rf $$pages; exit 1; }; } && rm -rf $$pages

# Built by `swift build` (which reuses the release build of `make build`), then run: `swift test`
# alone plans a build of its own and compiles every module again.
test-swift:
	swift build $(SWIFT_FLAGS) --build-tests
	swift test $(SWIFT_FLAGS) --skip-build

test-e2e: build test-deps $(TEST_VENVS)
	$(MAKE) -s -C examples-rust OUT=$(abspath $(BUILD)/rust-examples)
	SPANHOST_BUILD=$(abspath $(BUILD)) SPANHOST_OUTAGE_SECONDS=$${SPANHOST_OUTAGE_SECONDS:-20} $(PY) -m pytest -q -n 2 --dist loadfile Tests/e2e

# The C decoders and the expression engine under libFuzzer with ASan and UBSan (the Swift toolchain's clang ships
# libFuzzer). `make fuzz` runs each for FUZZ_SECONDS; `make test` runs a short pass.
FUZZ_DECODERS := otlp_proto otlp_json zipkin zipkin_proto zipkin_v1 omegi jaeger ottl
FUZZ_SECONDS  ?= 120
FUZZ_CC        = $(dir $(shell readlink -f $(shell which swift)))clang
# The C core is compiled once with the sanitizers and coverage, then linked into every decoder's
# fuzzer and into the C unit tests.
C_CORE_SRCS   := $(filter-out Sources/CSpanhost/crash.c Sources/CSpanhost/process.c,$(wildcard Sources/CSpanhost/*.c))
C_CORE_OBJS   := $(C_CORE_SRCS:Sources/CSpanhost/%.c=$(BUILD)/sanitized/%.o)
# Kept between builds (make would delete them as intermediate files).
.SECONDARY: $(C_CORE_OBJS)
SANITIZE      := -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -ISources/CSpanhost/include -ISources/CSpanhost -Iinclude

$(BUILD)/sanitized/%.o: Sources/CSpanhost/%.c Sources/CSpanhost/*.h Sources/CSpanhost/include/*.h include/spanhost/spanhost.h
	@mkdir -p $(BUILD)/sanitized
	$(FUZZ_CC) $(SANITIZE) -fsanitize=fuzzer-no-link -c -o $@ $<

$(BUILD)/fuzz/%: Tests/fuzz/fuzz_decoder.c Tests/fuzz/proto_mutator.c $(C_CORE_OBJS)
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) -fuse-ld=lld $(SANITIZE) -fsanitize=fuzzer -DDECODER_$* -o $@ Tests/fuzz/fuzz_decoder.c $(C_CORE_OBJS) -lz -lcrypto -lffi

# One decoder's run, in a scratch copy of its corpus so new inputs stay out of the repository.
fuzz-run-%:
	@rm -rf $(BUILD)/fuzz/corpus-$* && mkdir -p $(BUILD)/fuzz/corpus-$* && cp Tests/fuzz/corpus/$*/* $(BUILD)/fuzz/corpus-$*/
	@echo "fuzz $*: $(FUZZ_RUN_SECONDS)s"
	@$(BUILD)/fuzz/$* -max_total_time=$(FUZZ_RUN_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/crash-$*- \
		-dict=Tests/fuzz/dict/$*.dict $(BUILD)/fuzz/corpus-$* 2>$(BUILD)/fuzz/$*.log || { tail -40 $(BUILD)/fuzz/$*.log; exit 1; }
	@grep -h "stat::number_of_executed_units" $(BUILD)/fuzz/$*.log || true

# The fuzz binaries are built, and run, two at a time (a fuzzer keeps one core busy).
fuzz-binaries:
	$(MAKE) -j2 $(FUZZ_DECODERS:%=$(BUILD)/fuzz/%)

test-fuzz: fuzz-binaries
	$(MAKE) -s -j2 --output-sync=target FUZZ_RUN_SECONDS=10 $(FUZZ_DECODERS:%=fuzz-run-%)

fuzz: fuzz-binaries
	$(MAKE) -s -j2 --output-sync=target FUZZ_RUN_SECONDS=$(FUZZ_SECONDS) $(FUZZ_DECODERS:%=fuzz-run-%)

# Unit tests of the C core (the expression engine), under ASan and UBSan.
$(BUILD)/c-tests/%: Tests/c/%.c $(C_CORE_OBJS)
	@mkdir -p $(BUILD)/c-tests
	$(FUZZ_CC) -fuse-ld=lld $(SANITIZE) -fsanitize=fuzzer-no-link -o $@ $< $(C_CORE_OBJS) -lz -lcrypto -lffi

test-c: $(patsubst Tests/c/%.c,$(BUILD)/c-tests/%,$(wildcard Tests/c/*.c))
	@for t in $^; do $$t || exit 1; done

# The fault campaign (Tests/chaos/chaos.py): random fault schedules against a real server with a
# ledger of every span answered 200. `make chaos CHAOS_MINUTES=30` runs long; CHAOS_SEED replays.
# `make test` runs a short one (2 schedules, under 3 minutes).
CHAOS_MINUTES ?= 10
CHAOS_SEED    ?=
CHAOS_ARGS     = $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

chaos: build $(VENV)/.installed
	SPANHOST_BUILD=$(abspath $(BUILD)) $(PY) Tests/chaos/chaos.py --minutes $(CHAOS_MINUTES) $(CHAOS_ARGS)

test-chaos: build $(VENV)/.installed
	SPANHOST_BUILD=$(abspath $(BUILD)) $(PY) Tests/chaos/chaos.py --schedules 2 --seconds 10 --faults 5 $(CHAOS_ARGS)

bench: build $(VENV)/.installed
	$(call apt-install,valgrind)
	SPANHOST_BUILD=$(abspath $(BUILD)) $(PY) Tests/bench/bench.py
	SPANHOST_BUILD=$(abspath $(BUILD)) $(PY) Tests/bench/callgrind.py

clean:
	rm -rf $(BUILD) .build
