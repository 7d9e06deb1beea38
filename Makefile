# Two commands for a fresh Debian 12 machine:
#   make run    install packages, build, run the gateway on 127.0.0.1:8787 with handlers/
#   make test   install packages, build (normal and ASan+UBSan), run every test
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test deps build build-asan test-normal test-asan check-layers format clean bench

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

# No module calls a higher layer, and the module graph has no cycle (scripts/check-layers.py).
check-layers: build
	python3 scripts/check-layers.py $(BUILD)

format:
	clang-format -i runtime/*.c runtime/*.h runtime/*/*.c runtime/*/*.h tests/unit/*.h \
	  tests/unit/*/*.c

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
