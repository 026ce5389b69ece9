// Example firmware main for a model exported by edgecnn for TensorFlow Lite Micro:
//
//   edgecnn export micro model_int8.tflite --out DIR --name model
//
// It assumes --name model: the symbols it uses are model_model_data, model_OpResolver, model_RegisterOps,
// model_labels and the kmodel... constants. For another name, replace that prefix. Build it together with the
// three exported files and TensorFlow Lite Micro (targets/micro/README.md).
//
// It makes the calls every TFLite Micro firmware makes, in order: map the model, check its schema version,
// register its operations, build the interpreter over a static arena, allocate the tensors, fill the input,
// invoke, read the output. The image is a stand-in: replace it with your camera's frame.

#include <cmath>
#include <cstdint>
#include <limits>

#include "model_model_data.h"
#include "model_model_settings.h"
#include "model_op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// Inputs, outputs and intermediate tensors live in this arena. It is static (too large for most stacks) and
// 16-byte aligned, as TFLite Micro's allocator expects; its size was measured when the model was exported.
alignas(16) uint8_t tensor_arena[kmodelTensorArenaSize];

// Stand-in for one camera frame after step 1 of the preprocessing (model_model_settings.h): resized to the
// model's input size, 8-bit pixels, rows first, channels last.
uint8_t image[kmodelImageHeight * kmodelImageWidth * kmodelImageChannels];

// Step 3 of the preprocessing: q = round(value / scale) + zero_point, half away from zero (std::round), clamped
// to the tensor type, as edgecnn quantized the images it validated the model on. Float inputs pass through.
template <typename T>
T Quantize(float value) {
  if (!kmodelInputQuantized) return static_cast<T>(value);
  const float q = std::round(value / kmodelInputScale) + static_cast<float>(kmodelInputZeroPoint);
  const float low = static_cast<float>(std::numeric_limits<T>::lowest());
  const float high = static_cast<float>(std::numeric_limits<T>::max());
  return static_cast<T>(q < low ? low : (q > high ? high : q));
}

// Steps 2 and 3: scale each pixel with its channel's mean and std, then quantize it into the input tensor. The
// input's element i is channel c of pixel p in the model's own layout (channels last, or first for a PyTorch-style
// NCHW model) and channel order (BGR for some models); the camera image is RGB, rows first, channels last.
void FillInput(model_InputType* input) {
  const int pixels = kmodelImageHeight * kmodelImageWidth;
  for (int i = 0; i < kmodelInputElements; ++i) {
    const int c = kmodelInputChannelsFirst ? (i / pixels) % kmodelInputChannels : i % kmodelInputChannels;
    const int p = kmodelInputChannelsFirst ? i % pixels : (i / kmodelInputChannels) % pixels;
    const int source = kmodelImageBgr ? kmodelInputChannels - 1 - c : c;
    const float value = (image[p * kmodelImageChannels + source] / 255.0f - kmodelMean[c]) / kmodelStd[c];
    input[i] = Quantize<model_InputType>(value);
  }
}

// A score as a real number: scale * (q - zero_point); float outputs pass through.
float Dequantize(model_OutputType q) {
  if (!kmodelOutputQuantized) return static_cast<float>(q);
  return kmodelOutputScale * static_cast<float>(static_cast<int32_t>(q) - kmodelOutputZeroPoint);
}

}  // namespace

int main() {
  tflite::InitializeTarget();  // the board's own setup (UART for MicroPrintf...), a no-op on a host build

  // Map the model in place: no copy, no parsing.
  const tflite::Model* model = tflite::GetModel(model_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema version %d, this TFLite Micro reads %d", static_cast<int>(model->version()),
                TFLITE_SCHEMA_VERSION);
    return 1;
  }

  // Only the model's operations, so the linker leaves the other kernels out. In an Arduino-style setup()/loop()
  // firmware, make the resolver and the interpreter static: they must outlive every Invoke().
  model_OpResolver resolver;
  if (model_RegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("registering the model's operations failed");
    return 1;
  }

  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kmodelTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors() failed: is kmodelTensorArenaSize (%d bytes) too small for this build?",
                kmodelTensorArenaSize);
    return 1;
  }
  // What this build's kernels really use: compare it with the exported size to tune the arena.
  MicroPrintf("tensor arena: %d of %d bytes used", static_cast<int>(interpreter.arena_used_bytes()),
              kmodelTensorArenaSize);

  // typed_input_tensor returns nullptr when the tensor's type is not model_InputType.
  model_InputType* input = interpreter.typed_input_tensor<model_InputType>(0);
  if (input == nullptr || interpreter.input(0)->bytes != kmodelInputElements * sizeof(model_InputType)) {
    MicroPrintf("the input tensor does not match model_model_settings.h: export the model again");
    return 1;
  }
  FillInput(input);

  if (interpreter.Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke() failed");
    return 1;
  }

  const model_OutputType* scores = interpreter.typed_output_tensor<model_OutputType>(0);
  if (scores == nullptr) {
    MicroPrintf("the output tensor does not match model_model_settings.h: export the model again");
    return 1;
  }
  int best = 0;
  for (int i = 1; i < kmodelNumClasses; ++i) {
    if (Dequantize(scores[i]) > Dequantize(scores[best])) best = i;
  }
  // Integer thousandths: many embedded printf builds leave out %f.
  MicroPrintf("%s %d/1000", model_labels[best], static_cast<int>(Dequantize(scores[best]) * 1000.0f + 0.5f));
  return 0;
}
