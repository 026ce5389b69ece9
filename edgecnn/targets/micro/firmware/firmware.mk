# Firmware for a model exported by `edgecnn export micro --firmware`, built with TensorFlow Lite Micro (TFLM).
#
# The project's Makefile sets MODEL (the export's --name) and OPS (the model's operations) and includes this file;
# run make in the project's folder:
#
#   make TFLM_DIR=/path/to/tflm [BOARD=host] [KERNELS=reference] [PROGRAM=main]
#
# TFLM_DIR (or $EDGECNN_TFLM_DIR) holds TFLM's pinned trees side by side: tflite-micro/, flatbuffers/ (exactly
# v25.9.23), gemmlowp/, ruy/ and cmsis-nn/ (targets/micro/README.md says how to fetch them). BOARD: host (this
# machine's gcc), mps2-an386 (Cortex-M4F) or mps2-an500 (Cortex-M7), which qemu-system-arm runs, or a board edgecnn
# budgets for (nano33ble, stm32f746g-disco, pico, nrf5340dk: linked with the emulated boards' memory map, to measure
# its size). KERNELS: reference (TFLM's portable kernels, bit-exact with its Python interpreter) or cmsis-nn (Arm's
# optimized kernels, Cortex-M only). PROGRAM: main (main.cc, the example firmware) or harness (edgecnn's harness:
# input tensors in and output tensors out over semihosting, for edgecnn run/validate/bench).
#
# TFLM is compiled into LIB_DIR, which depends only on the board's core, the kernels, the toolchain and the TFLM
# trees, so firmware for several models can share it; the program and the model go to OUT_DIR. The source lists are
# TFLM's own (its sources.inc), so another TFLM commit brings its own.

TFLM_DIR ?= $(EDGECNN_TFLM_DIR)
BOARD ?= host
KERNELS ?= reference
PROGRAM ?= main
ifeq ($(MODEL),)
  $(error set MODEL=NAME, the --name of edgecnn export micro)
endif
BUILD_DIR ?= build
LIB_DIR ?= $(BUILD_DIR)/tflm-$(BOARD)-$(KERNELS)
OUT_DIR ?= $(BUILD_DIR)/$(BOARD)-$(KERNELS)
HERE := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

ifeq ($(TFLM_DIR),)
  $(error give TFLM_DIR (or set EDGECNN_TFLM_DIR): the folder with tflite-micro/, flatbuffers/, gemmlowp/, ruy/ and cmsis-nn/)
endif
ifeq ($(wildcard $(TFLM_DIR)/tflite-micro/tensorflow/lite/micro/micro_interpreter.h),)
  $(error TFLM_DIR=$(TFLM_DIR) has no tflite-micro/ tree)
endif

TFLM := $(TFLM_DIR)/tflite-micro
CMSIS_NN := $(TFLM_DIR)/cmsis-nn
TENSORFLOW_ROOT := $(TFLM)/
include $(TFLM)/tensorflow/lite/micro/tools/make/sources.inc

# ---- the board ------------------------------------------------------------------------------------------------
# The emulated boards run under qemu; the others (the same cores as real boards edgecnn budgets for) are linked with
# the same memory map only to measure the firmware's flash and RAM.
CPU_mps2-an386 := cortex-m4f
CPU_mps2-an500 := cortex-m7
CPU_nano33ble := cortex-m4f
CPU_stm32f746g-disco := cortex-m7
CPU_pico := cortex-m0plus
CPU_nrf5340dk := cortex-m33
ARCH_cortex-m4f := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
ARCH_cortex-m7 := -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16
ARCH_cortex-m33 := -mcpu=cortex-m33 -mthumb -mfloat-abi=hard -mfpu=fpv5-sp-d16
ARCH_cortex-m0plus := -mcpu=cortex-m0plus -mthumb -mfloat-abi=soft

ifeq ($(BOARD),host)
  CC := gcc
  CXX := g++
  AR := ar
  ARCH_FLAGS :=
  LDFLAGS :=
  BOARD_SRCS :=
else ifneq ($(CPU_$(BOARD)),)
  CC := arm-none-eabi-gcc
  CXX := arm-none-eabi-g++
  AR := arm-none-eabi-ar
  ARCH_FLAGS := $(ARCH_$(CPU_$(BOARD)))
  # newlib with semihosting (rdimon): stdio and files go to the host through the debugger interface qemu emulates.
  LDFLAGS := --specs=rdimon.specs -T $(HERE)/boards/mps2.ld -Wl,--gc-sections -Wl,-Map=$(OUT_DIR)/$(PROGRAM).map
  BOARD_SRCS := $(HERE)/boards/mps2_startup.c
else
  $(error BOARD=$(BOARD): give host, mps2-an386, mps2-an500, nano33ble, stm32f746g-disco, pico or nrf5340dk)
endif

# ---- TFLM's sources -------------------------------------------------------------------------------------------
CORE_SRCS := $(filter-out $(MICROLITE_TEST_SRCS) $(MICROLITE_BENCHMARK_SRCS),$(MICROLITE_CC_BASE_SRCS))
# The audio front end's kernels (signal/) need kissfft, which no image model uses: left out.
KERNEL_SRCS := $(filter-out $(TFLM)/signal/%,$(MICROLITE_CC_KERNEL_SRCS))
THIRD_PARTY_SRCS :=
DEFINES := -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON -DNDEBUG
INCLUDES := -I$(TFLM) -I$(TFLM_DIR)/flatbuffers/include -I$(TFLM_DIR)/gemmlowp -I$(TFLM_DIR)/ruy

ifeq ($(KERNELS),cmsis-nn)
  ifeq ($(BOARD),host)
    $(error KERNELS=cmsis-nn needs a Cortex-M board: BOARD=mps2-an386 or mps2-an500)
  endif
  # A kernel with a CMSIS-NN version replaces the reference one of the same file name.
  CMSIS_KERNELS := $(wildcard $(TFLM)/tensorflow/lite/micro/kernels/cmsis_nn/*.cc)
  KERNEL_SRCS := $(filter-out $(addprefix $(TFLM)/tensorflow/lite/micro/kernels/,$(notdir $(CMSIS_KERNELS))),$(KERNEL_SRCS)) $(CMSIS_KERNELS)
  THIRD_PARTY_SRCS := $(filter-out %_f16.c %_f32.c,$(shell find $(CMSIS_NN)/Source -name '*.c'))
  DEFINES += -DCMSIS_NN
  INCLUDES += -I$(CMSIS_NN) -I$(CMSIS_NN)/Include
else ifneq ($(KERNELS),reference)
  $(error KERNELS=$(KERNELS): give reference or cmsis-nn)
endif

# OPS (the model's operations, as the export's Makefile lists them) narrows the kernels to the files that register
# them, plus every kernel file that registers nothing (the helpers they share); empty, every kernel is built.
REGISTERS := ^TFLMRegistration\*? ?Register_
ifneq ($(strip $(OPS)),)
  empty :=
  space := $(empty) $(empty)
  open := (
  close := )
  REGISTERING := $(shell grep -lE '$(REGISTERS)' $(KERNEL_SRCS))
  NEEDED := $(shell grep -lE '$(REGISTERS)$(open)$(subst $(space),|,$(strip $(OPS)))$(close)[$(open)]' $(KERNEL_SRCS))
  KERNEL_SRCS := $(filter-out $(REGISTERING),$(KERNEL_SRCS)) $(NEEDED)
endif

# One optimisation level for TFLM, CMSIS-NN and the program (the precompiled header must match it). TFLM's own make
# files build kernels with -O2 and its core with -Os; OPT=-Os trades speed for flash.
OPT ?= -O2
COMMON := $(ARCH_FLAGS) $(OPT) $(DEFINES) -ffunction-sections -fdata-sections -fno-unwind-tables \
  -fno-asynchronous-unwind-tables -fmessage-length=0
CXXFLAGS := -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics $(COMMON)
CFLAGS := -std=c17 $(COMMON)

# TFLM's C++ files spend most of their compile time parsing the same headers (the flatbuffer schema above all): they
# are parsed once into a precompiled header, which cuts a library build by two thirds.
PCH := $(LIB_DIR)/pch/tflm_pch.h
PCH_FLAGS := -I$(LIB_DIR)/pch -include tflm_pch.h -Winvalid-pch

obj = $(patsubst /%,$(1)/%.o,$(abspath $(2)))
LIB_OBJS := $(call obj,$(LIB_DIR)/core,$(CORE_SRCS)) $(call obj,$(LIB_DIR)/kernels,$(KERNEL_SRCS)) \
  $(call obj,$(LIB_DIR)/third_party,$(THIRD_PARTY_SRCS))
# The archive the program links is this model's: the objects its OPS need, named by a digest of their list. LIB_DIR's
# objects are shared by every model, but an archive there would keep the first model's kernels and miss the next's.
LIB := $(OUT_DIR)/libtflm-$(firstword $(shell echo '$(LIB_OBJS)' | cksum)).a

ifeq ($(PROGRAM),main)
  PROGRAM_SRC := $(abspath main.cc)
else ifeq ($(PROGRAM),harness)
  PROGRAM_SRC := $(HERE)/harness.cc
else
  $(error PROGRAM=$(PROGRAM): give main or harness)
endif
APP_SRCS := $(PROGRAM_SRC) $(abspath $(MODEL)_model_data.cc) $(BOARD_SRCS)
APP_OBJS := $(call obj,$(OUT_DIR)/obj,$(APP_SRCS))
ELF := $(OUT_DIR)/$(PROGRAM)$(if $(filter host,$(BOARD)),,.elf)

.PHONY: all lib clean
all: $(ELF)
lib: $(LIB)

$(PCH).gch: $(HERE)/tflm_pch.h
	@mkdir -p $(dir $@)
	cp $< $(PCH)
	$(CXX) $(CXXFLAGS) $(INCLUDES) -x c++-header $(PCH) -o $@.tmp
	@mv $@.tmp $@

$(LIB_DIR)/core/%.cc.o: /%.cc | $(PCH).gch
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(PCH_FLAGS) $(INCLUDES) -c $< -o $@
$(LIB_DIR)/core/%.c.o: /%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INCLUDES) -c $< -o $@
$(LIB_DIR)/kernels/%.cc.o: /%.cc | $(PCH).gch
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(PCH_FLAGS) $(INCLUDES) -c $< -o $@
$(LIB_DIR)/third_party/%.c.o: /%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INCLUDES) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@.tmp
	$(AR) rcs $@.tmp $^
	@mv $@.tmp $@

$(OUT_DIR)/obj/%.cc.o: /%.cc $(wildcard $(MODEL)_*.h edgecnn_model.h)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(INCLUDES) -I. -c $< -o $@
$(OUT_DIR)/obj/%.c.o: /%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(ELF): $(APP_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(ARCH_FLAGS) $(APP_OBJS) $(LIB) $(LDFLAGS) -lm -o $@.tmp
	@mv $@.tmp $@

clean:
	rm -rf $(OUT_DIR)
