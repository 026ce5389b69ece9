// edgecnn's firmware harness: runs the exported model on raw input tensors read from a file and writes the raw
// output tensors and the instructions each inference took. edgecnn builds it for `run`, `validate` and `bench`
// with `--target micro --board mps2-an386|mps2-an500` and runs it under qemu-system-arm; on a board, the files come
// from the host through semihosting (a debugger probe, or qemu's emulated one), as do stdout and the exit status.
//
// edgecnn_in.bin:  "ECI1", u32 examples, u32 bytes per example, then the examples: each the input tensors' bytes
//                  in input order, already quantized by the host with the bundle's parameters.
// edgecnn_out.bin: "ECO1", u32 examples, u32 bytes per example, u32 arena bytes used, then per example the output
//                  tensors' bytes in output order and u64 instructions for Invoke(), then u32 stack bytes and u32
//                  heap bytes used (the peaks of the whole run; 0 on the host).
// Every integer is little-endian (all Cortex-M and x86 are). The exit status: 0 done, 1 the model or files do not
// match (the line on stdout says why), 70 a fault.

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "edgecnn_model.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#if defined(__arm__)
extern "C" void edgecnn_start_counting(void);
extern "C" uint64_t edgecnn_instructions(void);
extern "C" uint32_t edgecnn_stack_used(void);
extern "C" uint32_t edgecnn_heap_used(void);
#else  // a host build counts nothing
static void edgecnn_start_counting() {}
static uint64_t edgecnn_instructions() { return 0; }
static uint32_t edgecnn_stack_used() { return 0; }
static uint32_t edgecnn_heap_used() { return 0; }
#endif

namespace {

alignas(16) uint8_t tensor_arena[edgecnn_model::kTensorArenaSize];

int Fail(const char* message) {
  std::printf("edgecnn-harness: %s\n", message);
  return 1;
}

bool ReadU32(std::FILE* file, uint32_t* value) {
  uint8_t b[4];
  if (std::fread(b, 1, 4, file) != 4) return false;
  *value = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  return true;
}

bool WriteU64(std::FILE* file, uint64_t value) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
  return std::fwrite(b, 1, 8, file) == 8;
}

bool WriteU32(std::FILE* file, uint32_t value) {
  uint8_t b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
  return std::fwrite(b, 1, 4, file) == 4;
}

}  // namespace

int main() {
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(edgecnn_model::kData);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail("the model's schema version is not this TFLM's");
  static edgecnn_model::OpResolver resolver;
  if (edgecnn_model::RegisterOps(resolver) != kTfLiteOk) return Fail("registering the model's operations failed");
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, edgecnn_model::kTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors() failed: the arena is too small");

  uint32_t in_bytes = 0, out_bytes = 0;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) in_bytes += interpreter.input(i)->bytes;
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) out_bytes += interpreter.output(i)->bytes;

  std::FILE* in = std::fopen("edgecnn_in.bin", "rb");
  if (in == nullptr) return Fail("cannot open edgecnn_in.bin");
  char magic[4];
  uint32_t examples = 0, example_bytes = 0;
  if (std::fread(magic, 1, 4, in) != 4 || std::memcmp(magic, "ECI1", 4) != 0 || !ReadU32(in, &examples) ||
      !ReadU32(in, &example_bytes)) {
    return Fail("edgecnn_in.bin has no valid header");
  }
  if (example_bytes != in_bytes) return Fail("edgecnn_in.bin's examples do not have the model's input size");
  std::FILE* out = std::fopen("edgecnn_out.bin", "wb");
  if (out == nullptr) return Fail("cannot create edgecnn_out.bin");
  std::fwrite("ECO1", 1, 4, out);
  WriteU32(out, examples);
  WriteU32(out, out_bytes);
  WriteU32(out, static_cast<uint32_t>(interpreter.arena_used_bytes()));

  for (uint32_t n = 0; n < examples; ++n) {
    for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
      TfLiteTensor* tensor = interpreter.input(i);
      if (std::fread(tensor->data.raw, 1, tensor->bytes, in) != tensor->bytes) {
        return Fail("edgecnn_in.bin ends before its last example");
      }
    }
    edgecnn_start_counting();
    const TfLiteStatus status = interpreter.Invoke();
    const uint64_t instructions = edgecnn_instructions();
    if (status != kTfLiteOk) return Fail("Invoke() failed");
    for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
      const TfLiteTensor* tensor = interpreter.output(i);
      if (std::fwrite(tensor->data.raw, 1, tensor->bytes, out) != tensor->bytes) {
        return Fail("cannot write edgecnn_out.bin");
      }
    }
    if (!WriteU64(out, instructions)) return Fail("cannot write edgecnn_out.bin");
  }
  std::fclose(in);
  // The stack's and heap's peaks, known once every example ran.
  if (!WriteU32(out, edgecnn_stack_used()) || !WriteU32(out, edgecnn_heap_used())) {
    return Fail("cannot write edgecnn_out.bin");
  }
  if (std::fclose(out) != 0) return Fail("cannot write edgecnn_out.bin");
  std::printf("edgecnn-harness: %u examples\n", static_cast<unsigned>(examples));
  return 0;
}
