// Example firmware main for a model exported by edgecnn for TensorFlow Lite Micro:
//
//   edgecnn export micro model_int8.tflite --out DIR [--name NAME] [--firmware]
//
// It builds against whatever --name produced: it includes edgecnn_model.h, which every export writes and which gives
// the exported model's symbols fixed names (edgecnn_model::kData, edgecnn_model::OpResolver...). Build it with the
// exported files and TensorFlow Lite Micro: `--firmware` writes a Makefile that does (targets/micro/README.md).
//
// It makes the calls every TFLite Micro firmware makes, in order: map the model, check its schema version,
// register its operations, build the interpreter over a static arena, allocate the tensors, fill the input,
// invoke, read the output. The image is a stand-in: replace it with your camera's frame.

#include <cmath>
#include <cstdint>
#include <limits>

#include "edgecnn_model.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef EDGECNN_MODEL_HAS_IMAGE
#error "main.cc classifies an image: export a model with its edgecnn sidecar (model.json), which gives its labels and preprocessing"
#endif

namespace {

namespace model = edgecnn_model;

// Inputs, outputs and intermediate tensors live in this arena. It is static (too large for most stacks) and
// 16-byte aligned, as TFLite Micro's allocator expects; its size was measured when the model was exported.
alignas(16) uint8_t tensor_arena[model::kTensorArenaSize];

// Stand-in for one camera frame after step 1 of the preprocessing (NAME_model_settings.h): resized to the
// model's input size, 8-bit pixels, rows first, channels last.
uint8_t image[model::kImageHeight * model::kImageWidth * model::kImageChannels];

// Step 3 of the preprocessing: q = round(value / scale) + zero_point, half away from zero (std::round), clamped
// to the tensor type, as edgecnn quantized the images it validated the model on. Float inputs pass through.
template <typename T>
T Quantize(float value) {
  if (!model::kInputQuantized) return static_cast<T>(value);
  const float q = std::round(value / model::kInputScale) + static_cast<float>(model::kInputZeroPoint);
  const float low = static_cast<float>(std::numeric_limits<T>::lowest());
  const float high = static_cast<float>(std::numeric_limits<T>::max());
  return static_cast<T>(q < low ? low : (q > high ? high : q));
}

// Steps 2 and 3: scale each pixel with its channel's mean and std, then quantize it into the input tensor. The
// input's element i is channel c of pixel p in the model's own layout (channels last, or first for a PyTorch-style
// NCHW model) and channel order (BGR for some models); the camera image is RGB, rows first, channels last.
void FillInput(model::InputType* input) {
  const int pixels = model::kImageHeight * model::kImageWidth;
  for (int i = 0; i < model::kInputElements; ++i) {
    const int c = model::kInputChannelsFirst ? (i / pixels) % model::kInputChannels : i % model::kInputChannels;
    const int p = model::kInputChannelsFirst ? i % pixels : (i / model::kInputChannels) % pixels;
    const int source = model::kImageBgr ? model::kInputChannels - 1 - c : c;
    const float value = (image[p * model::kImageChannels + source] / 255.0f - model::kMean[c]) / model::kStd[c];
    input[i] = Quantize<model::InputType>(value);
  }
}

// A score as a real number: scale * (q - zero_point); float outputs pass through.
float Dequantize(model::OutputType q) {
  if (!model::kOutputQuantized) return static_cast<float>(q);
  return model::kOutputScale * static_cast<float>(static_cast<int32_t>(q) - model::kOutputZeroPoint);
}

}  // namespace

int main() {
  tflite::InitializeTarget();  // the board's own setup (UART for MicroPrintf...), a no-op on a host build

  // Map the model in place: no copy, no parsing.
  const tflite::Model* tflite_model = tflite::GetModel(model::kData);
  if (tflite_model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema version %d, this TFLite Micro reads %d", static_cast<int>(tflite_model->version()),
                TFLITE_SCHEMA_VERSION);
    return 1;
  }

  // Only the model's operations, so the linker leaves the other kernels out. In an Arduino-style setup()/loop()
  // firmware, make the resolver and the interpreter static: they must outlive every Invoke().
  model::OpResolver resolver;
  if (model::RegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("registering the model's operations failed");
    return 1;
  }

  tflite::MicroInterpreter interpreter(tflite_model, resolver, tensor_arena, model::kTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors() failed: is the tensor arena (%d bytes) too small for this build?",
                model::kTensorArenaSize);
    return 1;
  }
  // What this build's kernels really use: compare it with the exported size to tune the arena.
  MicroPrintf("tensor arena: %d of %d bytes used", static_cast<int>(interpreter.arena_used_bytes()),
              model::kTensorArenaSize);

  // typed_input_tensor returns nullptr when the tensor's type is not model::InputType.
  model::InputType* input = interpreter.typed_input_tensor<model::InputType>(0);
  if (input == nullptr || interpreter.input(0)->bytes != model::kInputElements * sizeof(model::InputType)) {
    MicroPrintf("the input tensor does not match the exported settings: export the model again");
    return 1;
  }
  FillInput(input);

  if (interpreter.Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke() failed");
    return 1;
  }

  const model::OutputType* scores = interpreter.typed_output_tensor<model::OutputType>(0);
  if (scores == nullptr) {
    MicroPrintf("the output tensor does not match the exported settings: export the model again");
    return 1;
  }
  int best = 0;
  for (int i = 1; i < model::kNumClasses; ++i) {
    if (Dequantize(scores[i]) > Dequantize(scores[best])) best = i;
  }
  // Integer thousandths: many embedded printf builds leave out %f.
  MicroPrintf("%s %d/1000", model::kLabels[best], static_cast<int>(Dequantize(scores[best]) * 1000.0f + 0.5f));
  return 0;
}
