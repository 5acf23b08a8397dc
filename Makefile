# The five commands users and scripts rely on: run, test, build, stop, bench.
PRESET ?= default
CTEST_ARGS ?=

.PHONY: run test build stop bench deps test-asan format

run:
	@scripts/run.sh

test: build
	ctest --preset $(PRESET) $(CTEST_ARGS)

build: deps
	cmake --preset $(PRESET)
	cmake --build --preset $(PRESET)

stop:
	@scripts/stop.sh

bench: deps
	@scripts/bench.sh

deps:
	@scripts/deps.sh

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan:
	$(MAKE) test PRESET=asan

format:
	find libs services tools tests bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format -i
