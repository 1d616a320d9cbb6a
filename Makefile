# ocd — build, test, sanitize. `make help` lists the targets.
CC      ?= cc
BLASDIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
OPT     ?= -O2 -march=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-format-truncation -fopenmp -Iinclude -Isrc \
           $(shell pkg-config --cflags jansson libpng libutf8proc 2>/dev/null)
LDLIBS  += -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -lopenblas \
           $(shell pkg-config --libs jansson libpng libutf8proc) -ljpeg \
           $(shell pkg-config --libs libavformat libavcodec libswscale libavutil 2>/dev/null) -lm
LDFLAGS += -fopenmp

BUILD   ?= build
SRC     := $(shell find src -name '*.c' ! -path 'src/app/*' | sort)
OBJ     := $(SRC:%.c=$(BUILD)/%.o)
APP_SRC := $(shell find src/app -name '*.c' | sort)
APP_OBJ := $(APP_SRC:%.c=$(BUILD)/%.o)
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
TEST_LIB:= $(BUILD)/tests/testlib.o

.PHONY: all test test-asan check clean deps help example
all: $(BUILD)/ocd $(TESTS)

help:
	@echo "make            build build/ocd and the test programs"
	@echo "make test       run the whole test suite (conformance + unit + CLI), < 10 min"
	@echo "make test-asan  the same suite under AddressSanitizer + UBSan (build-asan/)"
	@echo "make check      test + test-asan (what CI runs)"
	@echo "make example    the bundled toy edit (README's first command)"
	@echo "make deps       install the Debian packages the build needs (root), else list them"

deps:
	@sh scripts/deps

$(BUILD)/libocd.a: $(OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BUILD)/ocd: $(APP_OBJ) $(BUILD)/libocd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_LIB) $(BUILD)/libocd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test: all
	@sh tests/run.sh $(BUILD)

test-asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fopenmp -fsanitize=address,undefined" all
	@ASAN_OPTIONS=detect_leaks=1 OCD_TEST_QUICK=1 sh tests/run.sh build-asan

# Sequential on purpose: the two suites would otherwise share the cores and their output.
check:
	$(MAKE) test
	$(MAKE) test-asan

# The README's main job: the bundled toy clip, red circle -> blue circle.
example: $(BUILD)/ocd
	@mkdir -p out
	$(BUILD)/ocd edit --model models/toy-sd --video examples/toy-clip/clip.mp4 \
	    --source "a red circle on green grass" --target "a blue circle on green grass" \
	    --self-replace 0.9 --least-sc-channel 64 --steps 20 --cfg 5 \
	    --out out/toy-edit.mp4 --side-by-side out/toy-side-by-side.mp4

clean:
	rm -rf build build-asan

# The tokenizer's merges table is assembled into the binary (.incbin).
$(BUILD)/src/nn/clip_merges.o: data/clip/merges.txt

-include $(OBJ:.o=.d) $(APP_OBJ:.o=.d) $(TESTS:=.d) $(TEST_LIB:.o=.d)
