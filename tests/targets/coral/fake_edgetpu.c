/* A stand-in for libedgetpu in tests: a real shared library behind TFLite's external-delegate API.
 *
 * The interpreter loads it exactly as it loads libedgetpu.so.1 (dlopen, then tflite_plugin_create_delegate
 * with the options), applies the delegate it returns, and asks it which nodes it takes. This one takes
 * none, so the model runs on the CPU kernels and the results are the CPU's.
 *
 * Environment (read when a delegate is created):
 *   FAKE_EDGETPU_FAIL=create   create returns NULL, as libedgetpu does when no Edge TPU is found
 *   FAKE_EDGETPU_FAIL=prepare  the delegate's Prepare fails, as when the device fails to initialise
 *   FAKE_EDGETPU_FAIL=crash    the delegate's Prepare dies of SIGSEGV (a write through a null pointer), as native
 *                              code given a model it cannot handle may
 *   FAKE_EDGETPU_LOG=PATH      append "key=value" for every option received, one per line
 *
 * Built by the tests: gcc -shared -fPIC -o libedgetpu.so.1 fake_edgetpu.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TfLiteDelegate's layout from tensorflow/lite/core/c/common.h, with opaque pointers: the runtime reads
 * these fields and nothing here needs the TFLite headers. Later runtimes append fields, so the allocation
 * below is larger than this struct and zeroed. */
typedef struct FakeDelegate {
    void *data_;
    int (*Prepare)(void *context, struct FakeDelegate *delegate);
    int (*CopyFromBufferHandle)(void *context, struct FakeDelegate *delegate, int handle, void *tensor);
    int (*CopyToBufferHandle)(void *context, struct FakeDelegate *delegate, int handle, void *tensor);
    void (*FreeBufferHandle)(void *context, struct FakeDelegate *delegate, int *handle);
    int64_t flags;
    void *opaque_delegate_builder;
} FakeDelegate;

enum { kTfLiteOk = 0, kTfLiteError = 1 };

static int prepare_nothing(void *context, FakeDelegate *delegate) {
    (void)context;
    (void)delegate;
    return kTfLiteOk; /* claims no node: everything stays on the CPU kernels */
}

static int prepare_fails(void *context, FakeDelegate *delegate) {
    (void)context;
    (void)delegate;
    return kTfLiteError;
}

static int prepare_crashes(void *context, FakeDelegate *delegate) {
    (void)context;
    (void)delegate;
    volatile int *nowhere = NULL;
    *nowhere = 1; /* a real segmentation fault, not a simulated one */
    return kTfLiteOk;
}

FakeDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t count,
                                            void (*report_error)(const char *)) {
    const char *log = getenv("FAKE_EDGETPU_LOG");
    if (log != NULL) {
        FILE *f = fopen(log, "a");
        if (f != NULL) {
            for (size_t i = 0; i < count; i++) fprintf(f, "%s=%s\n", keys[i], values[i]);
            fclose(f);
        }
    }
    const char *fail = getenv("FAKE_EDGETPU_FAIL");
    if (fail != NULL && strcmp(fail, "create") == 0) {
        if (report_error != NULL) report_error("fake libedgetpu: no Edge TPU device found");
        return NULL;
    }
    FakeDelegate *delegate = calloc(1, 256);
    if (delegate == NULL) return NULL;
    delegate->Prepare = prepare_nothing;
    if (fail != NULL && strcmp(fail, "prepare") == 0) delegate->Prepare = prepare_fails;
    if (fail != NULL && strcmp(fail, "crash") == 0) delegate->Prepare = prepare_crashes;
    return delegate;
}

void tflite_plugin_destroy_delegate(FakeDelegate *delegate) { free(delegate); }
