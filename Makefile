# Two commands for a fresh Debian 12 machine:
#   make run    install packages, build, run the gateway on 127.0.0.1:8787 with handlers/
#   make test   install packages, build (normal and ASan+UBSan), run every test
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 600
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test deps build build-asan build-fuzz fuzz fuzz-smoke test-normal test-asan check-layers \
  format clean bench install

run: deps build
	./$(BUILD)/chatgw run handlers/

deps:
	./scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DCHATGW_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)

test-normal: build
	cd $(BUILD) && ctest --output-on-failure -j 2

test-asan: build-asan
	cd $(BUILD_ASAN) && ctest --output-on-failure -j 2

test:
	./scripts/install-deps.sh --test
	$(MAKE) test-normal
	$(MAKE) test-asan

# libFuzzer harnesses (fuzz/, docs/fuzzing.md): clang, coverage, ASan + UBSan, a tree of their own.
build-fuzz:
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCHATGW_FUZZ=ON >/dev/null
	cmake --build $(BUILD_FUZZ) -j $(JOBS)

# Each harness 10 s (CI runs this once per run); any crash fails.
fuzz-smoke: build-fuzz
	./fuzz/run.sh $(BUILD_FUZZ) 10

# Each harness FUZZ_SECONDS (default 600); FUZZ_TARGETS="config policy" picks some.
fuzz: build-fuzz
	./fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# No module calls a higher layer, and the module graph has no cycle (scripts/check-layers.py).
check-layers: build
	python3 scripts/check-layers.py $(BUILD)

format:
	clang-format -i runtime/*.c runtime/*.h runtime/*/*.c runtime/*/*.h tests/unit/*.h \
	  tests/unit/*/*.c fuzz/*.c fuzz/*.h

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)

# make install [PREFIX=/usr/local] [DESTDIR=] (docs/operations.md, "Deployment"):
#   $(PREFIX)/bin/chatgw
#   $(PREFIX)/share/chatgw/lua, handlers  replaced whole, so no stale module survives an upgrade;
#                                        the binary finds lua/ at <its dir>/../share/chatgw/lua;
#                                        lua/chatgw/admin/static/ holds the admin page's files
#   $(PREFIX)/share/chatgw/env.example
#   /etc/chatgw/*                        from config/; an existing file that differs is kept and
#                                        the new one goes beside it as <name>.dist
#   $(UNITDIR)/chatgw.service            with its /usr/local paths changed to $(PREFIX)
# `make -o build install` installs the build as it is, without running cmake.
PREFIX  ?= /usr/local
UNITDIR ?= $(PREFIX)/lib/systemd/system
SHARE   := $(DESTDIR)$(PREFIX)/share/chatgw
ETC     := $(DESTDIR)/etc/chatgw

install: build
	install -D -m 0755 $(BUILD)/chatgw $(DESTDIR)$(PREFIX)/bin/chatgw
	rm -rf $(SHARE)/lua $(SHARE)/handlers
	cd lua && find . -type f \( -name '*.lua' -o -path './chatgw/admin/static/*' \) -printf '%P\n' | \
	  while read -r f; do install -D -m 0644 "$$f" "$(SHARE)/lua/$$f" || exit 1; done
	cd handlers && find . -type f -printf '%P\n' | \
	  while read -r f; do install -D -m 0644 "$$f" "$(SHARE)/handlers/$$f" || exit 1; done
	install -d -m 0755 $(ETC)
	for f in config/*; do \
	  [ -f "$$f" ] || continue; t="$(ETC)/$${f#config/}"; \
	  if [ ! -e "$$t" ]; then install -m 0644 "$$f" "$$t"; \
	  elif ! cmp -s "$$f" "$$t"; then install -m 0644 "$$f" "$$t.dist"; \
	    echo "kept $$t; the new one is $$t.dist"; fi || exit 1; \
	done
	install -D -m 0644 packaging/env.example $(SHARE)/env.example
	install -D -m 0644 packaging/chatgw.service $(DESTDIR)$(UNITDIR)/chatgw.service
	sed -i 's|/usr/local/|$(PREFIX)/|g' $(SHARE)/env.example $(DESTDIR)$(UNITDIR)/chatgw.service
