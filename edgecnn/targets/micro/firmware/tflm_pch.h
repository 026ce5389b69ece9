// Headers nearly every TensorFlow Lite Micro kernel includes, precompiled once per build (the Makefile's PCH): the
// flatbuffer schema alone is most of a kernel's compile time.
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/kernels/internal/types.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"
