/*
 * Fused Snake activation for onnxruntime's CPU execution provider.
 *
 *     y = x + inv_alpha * sin(alpha * x)^2        (per channel, as snac.layers.snake)
 *
 * Custom operators in the domain ``ai.snac_onnx``:
 *   Snake(x, alpha, inv_alpha) -> y: x float32 (batch, channels, time); alpha, inv_alpha
 *     float32 (1, channels, 1); y shaped like x.
 *   SnakeDepthwiseConv(x, alpha, inv_alpha, weight, bias) -> y: Snake, then a depthwise Conv
 *     (weight (channels, 1, taps), bias (channels,), stride 1, zero padding); int attributes
 *     ``dilation`` and ``padding``.
 *   SnakeDepthwiseConvSnake(x, alpha, inv_alpha, weight, bias, alpha_out, inv_alpha_out) -> y:
 *     SnakeDepthwiseConv, then a second Snake (alpha_out, inv_alpha_out) on its output: the first
 *     three layers of each SNAC residual unit in one pass.
 *   SnakeStream(state, x, alpha, inv_alpha) -> (y, new_state) and SnakeDepthwiseConvSnakeStream(state, x,
 *     alpha, inv_alpha, weight, bias, alpha_out, inv_alpha_out) -> (y, new_state, residual): the stream
 *     graph's forms (export.fuse). The layer runs over [state, x] joined in time (state (batch, channels, S)):
 *     SnakeStream gives y = [state, Snake(x)]; the other gives y = SnakeDepthwiseConvSnake([state, x]) with
 *     no padding (S = (taps - 1) * dilation, so y has x's length) and residual = [state, x][S/2, S/2 + n).
 *     Both give new_state = the last S samples of the buffer: no Concat or Slice nodes around them.
 *   PolyphaseInterleave(z, bias) -> y: the second half of a polyphase ConvTranspose1d (see
 *     export.graphs.PolyphaseConvTranspose1d): z float32 (batch, stride * channels, steps) holds one
 *     phase per block of channels; y (batch, channels, steps * stride - 2 * padding + output_padding)
 *     interleaves them in time, crops ``padding`` samples and adds bias (1, channels, 1); int
 *     attributes ``stride``, ``padding``, ``output_padding``. One pass instead of onnxruntime's
 *     Reshape, Transpose, Reshape, Slice and Add.
 * The exported graphs carry model-local ONNX functions of the same names whose bodies are the
 * plain Mul/Sin/Mul/Mul/Add chain (and Conv), so a session without this library runs the same
 * graph (onnxruntime inlines the functions); a session with it runs these kernels: one pass over
 * memory instead of five (six), and a vectorised sine instead of onnxruntime's single-threaded one.
 *
 * sin^2(z), z = alpha * x (a float product, as in torch): z = q * pi/2 + r with pi/2 split in
 * three floats (Cody-Waite); sin^2(z) = sin^2(r) for even q and 1 - sin^2(r) for odd q, with a
 * minimax polynomial for sin on [-pi/4, pi/4] (about 1 ulp). A row holding any |z| above 16384
 * (or a NaN) is redone with the reduction in double. The loops are branch-free and vectorise; on
 * GCC/x86-64 Linux they are compiled for AVX-512, AVX2+FMA and baseline x86-64, picked at load.
 * Rows are spread over the session's own intra-op threads (OrtApi KernelContext_ParallelFor), so the
 * kernels use the threads the session was given and never compete with another pool.
 *
 * The onnxruntime C API is used through the few entries declared below, by their fixed
 * positions in the (append-only) OrtApi table of API version 13; onnxruntime keeps these
 * positions in every later version.
 */
#ifdef SNAKE_PYTHON_MODULE
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first, as Python requires */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#ifdef _MSC_VER
#include <intrin.h>
#define SNAKE_RESTRICT __restrict
#else
#define SNAKE_RESTRICT restrict
#endif

#ifdef _WIN32
#define SNAKE_EXPORT __declspec(dllexport)
#define SNAKE_CALL __stdcall
#else
#define SNAKE_EXPORT __attribute__((visibility("default")))
#define SNAKE_CALL
#endif

/* ---- the slice of the onnxruntime C ABI this library needs ------------------------ */

typedef struct OrtStatus OrtStatus;
typedef struct OrtValue OrtValue;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef void (*SnakeApiFn)(void); /* an untyped slot of the OrtApi table */

enum { SNAKE_ORT_API_VERSION = 13, SNAKE_ELEMENT_FLOAT = 1, SNAKE_ORT_FAIL = 1 };

/* Positions in the OrtApi table (API version 13; the table only ever grows at the end). */
enum {
    API_CreateStatus = 0,
    API_CreateCustomOpDomain = 26,
    API_CustomOpDomain_Add = 27,
    API_AddCustomOpDomain = 28,
    API_GetTensorMutableData = 51,
    API_GetDimensionsCount = 61,
    API_GetDimensions = 62,
    API_GetTensorTypeAndShape = 65,
    API_KernelInfoGetAttribute_int64 = 86,
    API_KernelContext_GetInputCount = 88,
    API_KernelContext_GetInput = 90,
    API_KernelContext_GetOutput = 91,
    API_ReleaseStatus = 93,
    API_ReleaseTensorTypeAndShapeInfo = 99,
    API_ENTRIES_NEEDED = 100
};

typedef struct OrtApiBase {
    const SnakeApiFn *(SNAKE_CALL *GetApi)(uint32_t version);
    const char *(SNAKE_CALL *GetVersionString)(void);
} OrtApiBase;

typedef OrtStatus *(SNAKE_CALL *CreateStatusFn)(int code, const char *msg);
typedef OrtStatus *(SNAKE_CALL *CreateCustomOpDomainFn)(const char *domain, OrtCustomOpDomain **out);
typedef OrtStatus *(SNAKE_CALL *CustomOpDomainAddFn)(OrtCustomOpDomain *domain, const void *op);
typedef OrtStatus *(SNAKE_CALL *AddCustomOpDomainFn)(OrtSessionOptions *options, OrtCustomOpDomain *domain);
typedef OrtStatus *(SNAKE_CALL *GetTensorMutableDataFn)(OrtValue *value, void **out);
typedef OrtStatus *(SNAKE_CALL *GetDimensionsCountFn)(const OrtTensorTypeAndShapeInfo *info, size_t *out);
typedef OrtStatus *(SNAKE_CALL *GetDimensionsFn)(const OrtTensorTypeAndShapeInfo *info, int64_t *dims, size_t n);
typedef OrtStatus *(SNAKE_CALL *GetTensorTypeAndShapeFn)(const OrtValue *value, OrtTensorTypeAndShapeInfo **out);
typedef OrtStatus *(SNAKE_CALL *KernelContextGetInputCountFn)(const OrtKernelContext *ctx, size_t *out);
typedef OrtStatus *(SNAKE_CALL *KernelContextGetInputFn)(const OrtKernelContext *ctx, size_t index, const OrtValue **out);
typedef OrtStatus *(SNAKE_CALL *KernelContextGetOutputFn)(OrtKernelContext *ctx, size_t index, const int64_t *dims,
                                                           size_t n, OrtValue **out);
typedef void (SNAKE_CALL *ReleaseTensorTypeAndShapeInfoFn)(OrtTensorTypeAndShapeInfo *info);
typedef OrtStatus *(SNAKE_CALL *KernelInfoGetAttributeInt64Fn)(const OrtKernelInfo *info, const char *name, int64_t *out);
typedef void (SNAKE_CALL *ReleaseStatusFn)(OrtStatus *status);

/* OrtCustomOp as of API version 13 (onnxruntime reads no further for version 13). */
typedef struct SnakeCustomOp {
    uint32_t version;
    void *(SNAKE_CALL *CreateKernel)(const struct SnakeCustomOp *op, const void *api, const OrtKernelInfo *info);
    const char *(SNAKE_CALL *GetName)(const struct SnakeCustomOp *op);
    const char *(SNAKE_CALL *GetExecutionProviderType)(const struct SnakeCustomOp *op);
    int (SNAKE_CALL *GetInputType)(const struct SnakeCustomOp *op, size_t index);
    size_t (SNAKE_CALL *GetInputTypeCount)(const struct SnakeCustomOp *op);
    int (SNAKE_CALL *GetOutputType)(const struct SnakeCustomOp *op, size_t index);
    size_t (SNAKE_CALL *GetOutputTypeCount)(const struct SnakeCustomOp *op);
    void (SNAKE_CALL *KernelCompute)(void *kernel, OrtKernelContext *context);
    void (SNAKE_CALL *KernelDestroy)(void *kernel);
    int (SNAKE_CALL *GetInputCharacteristic)(const struct SnakeCustomOp *op, size_t index);
    int (SNAKE_CALL *GetOutputCharacteristic)(const struct SnakeCustomOp *op, size_t index);
    int (SNAKE_CALL *GetInputMemoryType)(const struct SnakeCustomOp *op, size_t index);
} SnakeCustomOp;

static const SnakeApiFn *g_api;

/* KernelContext_ParallelFor (OrtApi entry 274, API version 17 = onnxruntime 1.17, the oldest snac_onnx
 * supports): runs a kernel's rows on the session's intra-op threads. NULL on an older onnxruntime: the
 * kernels then run on the calling thread. */
typedef OrtStatus *(SNAKE_CALL *KernelContextParallelForFn)(const OrtKernelContext *ctx, void (*fn)(void *, size_t),
                                                             size_t total, size_t num_batch, void *user_data);
enum { SNAKE_PARALLEL_FOR_API_VERSION = 17, API_KernelContext_ParallelFor = 274 };
static KernelContextParallelForFn g_parallel_for;
#define API(name, type) ((type)g_api[API_##name])

/* ---- the arithmetic ------------------------------------------------------------------ */

/* GCC on x86-64 Linux with glibc compiles the loops three times and picks one at load (an ifunc: musl has
 * none, so the musllinux build gets one baseline copy); -DSNAKE_NO_CLONES builds only the target the compiler
 * was given (for bench/kernel_builds.py, which measures what the clones bring). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && \
    !defined(SNAKE_NO_CLONES)
#define SNAKE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SNAKE_CLONES
#endif

/* sin(r)^2 for |r| <= pi/4 (about 1 ulp): a minimax polynomial for sin on [-pi/4, pi/4]. */
static inline float sin_squared_reduced(float r) {
    const float r2 = r * r;
    const float s = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
    return s * s;
}

/* Above this |alpha * x| the float reduction below stops being exact and a row is redone in double. */
#define SNAKE_FLOAT_REDUCTION_LIMIT 16384.0f

/* y[i] = x[i] + inv_alpha * sin(alpha * x[i])^2 for one row of n samples; returns nonzero if some
 * |alpha * x| exceeded SNAKE_FLOAT_REDUCTION_LIMIT (or was NaN), so the row must be redone.
 * z = q * pi/2 + r with pi/2 split in three floats (the first with 8 significant bits, so
 * q * part is exact for |q| < 2^16); sin^2(z) = sin^2(r) for even q and 1 - sin^2(r) for odd q. */
SNAKE_CLONES
static int snake_row_float(const float *SNAKE_RESTRICT x, float *SNAKE_RESTRICT y, size_t n, float alpha, float inv_alpha) {
    const float two_over_pi = 0.636619772367581343f;
    const float pio2_1 = 1.5703125f, pio2_2 = 4.837512969970703125e-4f, pio2_3 = 7.54978995489188216e-8f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to nearest */
    int out_of_range = 0;
    for (size_t i = 0; i < n; ++i) {
        const float z = alpha * x[i];
        const float q = (z * two_over_pi + round_magic) - round_magic;
        const float r = ((z - q * pio2_1) - q * pio2_2) - q * pio2_3;
        const float s2 = sin_squared_reduced(r);
        const float sin2 = ((int32_t)q & 1) ? 1.0f - s2 : s2;
        y[i] = x[i] + inv_alpha * sin2;
        out_of_range |= !(fabsf(z) <= SNAKE_FLOAT_REDUCTION_LIMIT);
    }
    return out_of_range;
}

/* The same with the reduction in double: exact enough for |alpha * x| < 2^40. */
static void snake_row_double(const float *SNAKE_RESTRICT x, float *SNAKE_RESTRICT y, size_t n, float alpha, float inv_alpha) {
    for (size_t i = 0; i < n; ++i) {
        const float z = alpha * x[i];
        const double q = nearbyint((double)z * 0.63661977236758134308);
        const float r = (float)((double)z - q * 1.57079632679489661923);
        const float s2 = sin_squared_reduced(r);
        const float sin2 = (fmod(q, 2.0) != 0.0) ? 1.0f - s2 : s2;
        y[i] = x[i] + inv_alpha * sin2;
    }
}

static void snake_row(const float *x, float *y, size_t n, float alpha, float inv_alpha) {
    if (snake_row_float(x, y, n, alpha, inv_alpha)) {
        snake_row_double(x, y, n, alpha, inv_alpha); /* also taken for NaN, which then propagates */
    }
}

/* y[t] = bias + sum_k w[k] * s[t + k * dilation - padding] for t < n_out, s zero outside [0, n_in):
 * one channel of a depthwise Conv (stride 1) over the row `padded` = [zeros(padding), s, zeros(padding)]. */
SNAKE_CLONES
static void depthwise_row7(const float *SNAKE_RESTRICT p, float *SNAKE_RESTRICT y, size_t n_out, const float *w,
                           size_t d, float bias) {
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6];
    for (size_t t = 0; t < n_out; ++t) {
        y[t] = bias + w0 * p[t] + w1 * p[t + d] + w2 * p[t + 2 * d] + w3 * p[t + 3 * d] + w4 * p[t + 4 * d] +
               w5 * p[t + 5 * d] + w6 * p[t + 6 * d];
    }
}

SNAKE_CLONES
static void depthwise_row(const float *SNAKE_RESTRICT padded, float *SNAKE_RESTRICT y, size_t n_out, const float *w,
                          size_t taps, size_t dilation, float bias) {
    if (taps == 7) { /* SNAC's kernel size: all taps in one pass */
        depthwise_row7(padded, y, n_out, w, dilation, bias);
        return;
    }
    for (size_t t = 0; t < n_out; ++t) y[t] = bias;
    for (size_t k = 0; k < taps; ++k) {
        const float wk = w[k];
        const float *src = padded + k * dilation;
        for (size_t t = 0; t < n_out; ++t) y[t] += wk * src[t];
    }
}

/* ---- rows, optionally spread over a small thread pool ----------------------------------- */

/* One activation: rows = batch * channels rows of `steps` samples; row r uses channel r % channels. */
typedef struct SnakeJob {
    const float *x;
    float *y;
    const float *alpha, *inv_alpha;
    int64_t channels, steps, rows;
    /* SnakeDepthwiseConv only (weight NULL for plain Snake): weight (channels, 1, taps), bias (channels) */
    const float *weight, *bias;
    /* SnakeDepthwiseConvSnake only (NULL otherwise): the Snake applied to the convolution's output */
    const float *alpha_out, *inv_alpha_out;
    int64_t taps, dilation, padding, steps_out;
    int64_t stride; /* PolyphaseInterleave only (0 otherwise): x is z, rows are (batch, channel) of the output */
    int64_t next_row; /* the next row to take, shared by the threads working on the job */
    int failed;       /* a thread could not get its scratch row */
    /* The stream graph's forms (state NULL otherwise): the layer runs over [state, x] along time
     * (state (rows, state_len)); new_state gets that buffer's last state_len samples, and (residual
     * units) residual gets its samples [state_len / 2, state_len / 2 + steps). */
    const float *state;
    int64_t state_len;
    float *new_state, *residual;
} SnakeJob;

/* out[0 .. len) = [a (la samples), b][start .. start + len): a window of two rows joined in time. */
static void joined_window(const float *a, size_t la, const float *b, size_t start, size_t len, float *out) {
    if (start < la) {
        size_t from_a = la - start < len ? la - start : len;
        memcpy(out, a + start, from_a * sizeof(float));
        memcpy(out + from_a, b, (len - from_a) * sizeof(float));
    } else {
        memcpy(out, b + (start - la), len * sizeof(float));
    }
}

/* y[t] = bias + phase[(t + padding) % stride][(t + padding) / stride] for t < n_out, where the
 * phases of this channel are rows `phase_step` floats apart starting at z: one pass per phase, each
 * reading its row in order and writing every stride-th output (the output row stays in cache). */
SNAKE_CLONES
static void interleave_row(const float *SNAKE_RESTRICT z, size_t phase_step, float *SNAKE_RESTRICT y, size_t n_out,
                           size_t stride, size_t padding, float bias) {
    for (size_t r = 0; r < stride; ++r) {
        const float *src = z + r * phase_step;
        size_t q = padding > r ? (padding - r + stride - 1) / stride : 0; /* the first q with q * stride + r >= padding */
        size_t t = q * stride + r - padding;
        const size_t count = t < n_out ? (n_out - t + stride - 1) / stride : 0;
        float *dst = y + t;
        src += q;
        for (size_t i = 0; i < count; ++i) dst[i * stride] = src[i] + bias;
    }
}

/* The next row of `job` for the calling thread to do (>= job->rows: none left). */
static int64_t next_row(SnakeJob *job) {
#if defined(_MSC_VER)
    return _InterlockedExchangeAdd64((volatile __int64 *)&job->next_row, 1);
#else
    return __atomic_fetch_add(&job->next_row, 1, __ATOMIC_RELAXED);
#endif
}

static void interleave_take_rows(SnakeJob *job) {
    for (;;) {
        int64_t r = next_row(job);
        if (r >= job->rows) break;
        int64_t b = r / job->channels, c = r % job->channels;
        const float *z = job->x + (size_t)((b * job->stride * job->channels + c) * job->steps);
        interleave_row(z, (size_t)(job->channels * job->steps), job->y + (size_t)(r * job->steps_out),
                       (size_t)job->steps_out, (size_t)job->stride, (size_t)job->padding, job->bias[c]);
    }
}

static void snake_take_rows(SnakeJob *job) {
    if (job->stride > 0) {
        interleave_take_rows(job);
        return;
    }
    float *scratch = NULL; /* SnakeDepthwiseConv: [zeros(padding), snake(x row), zeros(padding)] */
    float *conv_row = NULL; /* SnakeDepthwiseConvSnake: the convolution's output row, before its Snake */
    const size_t held = (size_t)job->state_len; /* 0 unless the stream form */
    if (job->weight != NULL) {
        size_t len = held + (size_t)(job->steps + 2 * job->padding);
        size_t out_len = job->alpha_out != NULL ? (size_t)job->steps_out : 0;
        scratch = (float *)malloc((len + out_len) * sizeof(float));
        if (scratch == NULL) {
            job->failed = 1;
            return;
        }
        if (out_len > 0) conv_row = scratch + len;
        memset(scratch, 0, (size_t)job->padding * sizeof(float));
        memset(scratch + held + job->padding + job->steps, 0, (size_t)job->padding * sizeof(float));
    }
    for (;;) {
        int64_t r = next_row(job);
        if (r >= job->rows) break;
        int64_t c = r % job->channels;
        const float *x = job->x + (size_t)(r * job->steps);
        const float *state = job->state != NULL ? job->state + r * held : NULL;
        const size_t steps = (size_t)job->steps;
        if (scratch == NULL && state != NULL) { /* SnakeStream: y = [state, snake(x)] */
            float *y = job->y + r * (held + steps);
            memcpy(y, state, held * sizeof(float));
            snake_row(x, y + held, steps, job->alpha[c], job->inv_alpha[c]);
            memcpy(job->new_state + r * held, y + steps, held * sizeof(float));
        } else if (scratch == NULL) {
            snake_row(x, job->y + (size_t)(r * job->steps), (size_t)job->steps, job->alpha[c], job->inv_alpha[c]);
        } else {
            float *y = job->y + (size_t)(r * job->steps_out);
            if (state != NULL) { /* SnakeDepthwiseConvSnakeStream: the buffer [state, x], no padding */
                snake_row(state, scratch, held, job->alpha[c], job->inv_alpha[c]);
                joined_window(state, held, x, steps, held, job->new_state + r * held);
                joined_window(state, held, x, held / 2, steps, job->residual + r * steps);
            }
            snake_row(x, scratch + held + job->padding, steps, job->alpha[c], job->inv_alpha[c]);
            depthwise_row(scratch, conv_row != NULL ? conv_row : y, (size_t)job->steps_out,
                          job->weight + (size_t)(c * job->taps), (size_t)job->taps, (size_t)job->dilation,
                          job->bias[c]);
            if (conv_row != NULL) {
                snake_row(conv_row, y, (size_t)job->steps_out, job->alpha_out[c], job->inv_alpha_out[c]);
            }
        }
    }
    free(scratch);
}

/* Below this many samples a job runs on the calling thread: sharing it costs more than it saves. */
#ifndef SNAKE_MIN_PARALLEL_SAMPLES
#define SNAKE_MIN_PARALLEL_SAMPLES (1 << 17)
#endif

/* ParallelFor's tasks: each takes rows until none are left (rows are shared through job->next_row), so
 * tasks beyond the session's thread count cost a look at the counter. */
#define SNAKE_PARALLEL_TASKS 16

static void snake_task(void *job, size_t index) {
    (void)index;
    snake_take_rows((SnakeJob *)job);
}

/* Run a job on the session's intra-op threads (the calling thread included). */
static void snake_run(SnakeJob *job, OrtKernelContext *context) {
    if (g_parallel_for != NULL && job->rows >= 2 &&
        job->rows * (job->steps + job->state_len) >= SNAKE_MIN_PARALLEL_SAMPLES) {
        OrtStatus *status = g_parallel_for(context, snake_task, SNAKE_PARALLEL_TASKS, 0, job);
        if (status == NULL) return;
        API(ReleaseStatus, ReleaseStatusFn)(status);
    }
    snake_take_rows(job); /* everything, or whatever a failed ParallelFor left (each row is taken once) */
}

/* ---- the kernel ---------------------------------------------------------------------- */

typedef struct SnakeKernel {
    int depthwise;            /* 0: Snake; 1: SnakeDepthwiseConv; 2: SnakeDepthwiseConvSnake */
    int64_t dilation, padding; /* SnakeDepthwiseConv attributes (padding also PolyphaseInterleave's) */
    int64_t stride, output_padding; /* PolyphaseInterleave attributes */
} SnakeKernel;

static SnakeKernel g_snake_kernel = {0, 1, 0, 0, 0};

static int64_t kernel_int_attribute(const OrtKernelInfo *info, const char *name, int64_t fallback) {
    int64_t value = fallback;
    OrtStatus *status = API(KernelInfoGetAttribute_int64, KernelInfoGetAttributeInt64Fn)(info, name, &value);
    if (status != NULL) {
        API(ReleaseStatus, ReleaseStatusFn)(status);
        return fallback;
    }
    return value;
}

static void *SNAKE_CALL snake_create_kernel(const SnakeCustomOp *op, const void *api, const OrtKernelInfo *info) {
    (void)op; (void)api; (void)info;
    return &g_snake_kernel;
}

/* Defined below: the ops that share depthwise_create_kernel. */
static const SnakeCustomOp g_depthwise_op, g_depthwise_snake_op, g_depthwise_snake_stream_op, g_snake_stream_op;

/* The kernel of SnakeDepthwiseConv(Snake) and of the stream forms (whose ``padding`` is 0). */
static void *SNAKE_CALL depthwise_create_kernel(const SnakeCustomOp *op, const void *api, const OrtKernelInfo *info) {
    (void)api;
    SnakeKernel *kernel = (SnakeKernel *)malloc(sizeof(SnakeKernel));
    if (kernel == NULL) return NULL;
    kernel->depthwise = op == &g_snake_stream_op ? 0 : (op == &g_depthwise_op ? 1 : 2);
    kernel->dilation = kernel_int_attribute(info, "dilation", -1);
    kernel->padding = kernel_int_attribute(info, "padding", -1);
    kernel->stride = 0;
    kernel->output_padding = 0;
    return kernel;
}

static void *SNAKE_CALL interleave_create_kernel(const SnakeCustomOp *op, const void *api, const OrtKernelInfo *info) {
    (void)op; (void)api;
    SnakeKernel *kernel = (SnakeKernel *)malloc(sizeof(SnakeKernel));
    if (kernel == NULL) return NULL;
    kernel->depthwise = 0;
    kernel->dilation = 1;
    kernel->stride = kernel_int_attribute(info, "stride", -1);
    kernel->padding = kernel_int_attribute(info, "padding", -1);
    kernel->output_padding = kernel_int_attribute(info, "output_padding", -1);
    return kernel;
}

static void SNAKE_CALL snake_destroy_kernel(void *kernel) {
    if (kernel != NULL && kernel != &g_snake_kernel) free(kernel);
}

/* Shape of an input; returns the rank (at most 8 stored) or -1 on failure. */
static int tensor_shape(const OrtValue *value, int64_t dims[8]) {
    OrtTensorTypeAndShapeInfo *info = NULL;
    size_t rank = 0;
    if (API(GetTensorTypeAndShape, GetTensorTypeAndShapeFn)(value, &info) != NULL) return -1;
    int ok = API(GetDimensionsCount, GetDimensionsCountFn)(info, &rank) == NULL && rank <= 8 &&
             API(GetDimensions, GetDimensionsFn)(info, dims, rank) == NULL;
    API(ReleaseTensorTypeAndShapeInfo, ReleaseTensorTypeAndShapeInfoFn)(info);
    return ok ? (int)rank : -1;
}

/* Shape (rank, dims) and data of a kernel's first n inputs (data NULL where it cannot be read); 0 if an input
 * cannot be had at all. */
static int read_inputs(OrtKernelContext *context, size_t n, void *data[], int64_t dims[][8], int ranks[]) {
    for (size_t k = 0; k < n; ++k) {
        const OrtValue *input = NULL;
        if (API(KernelContext_GetInput, KernelContextGetInputFn)(context, k, &input) != NULL) return 0;
        ranks[k] = tensor_shape(input, dims[k]);
        if (API(GetTensorMutableData, GetTensorMutableDataFn)((OrtValue *)input, &data[k]) != NULL) data[k] = NULL;
    }
    return 1;
}

/* KernelCompute cannot return an error at API version 13: on inputs that do not have the
 * graph's shapes (which the exported graphs never produce) the output is filled with NaN,
 * which SnacOnnx.decode's finiteness check on the audio then reports as an error. */
static void SNAKE_CALL snake_compute(void *kernel_state, OrtKernelContext *context) {
    const SnakeKernel *kernel = (const SnakeKernel *)kernel_state;
    const int depthwise = kernel != NULL && kernel->depthwise;
    const int snake_after = depthwise && kernel->depthwise == 2;
    const size_t n_inputs = snake_after ? 7 : depthwise ? 5 : 3;
    void *data[7];
    int64_t dims[7][8];
    int ranks[7];
    if (!read_inputs(context, n_inputs, data, dims, ranks)) return;
    const int64_t *x = dims[0];
    if (ranks[0] != 3) return;
    const int64_t channels = x[1];
    int valid = kernel != NULL;
    for (size_t k = 1; k < n_inputs; k = (k == 2 ? 5 : k + 1)) { /* the alphas: inputs 1, 2 (and 5, 6) */
        valid = valid && ranks[k] == 3 && dims[k][0] == 1 && dims[k][1] == channels && dims[k][2] == 1;
    }
    int64_t taps = 0, steps_out = x[2];
    if (depthwise && valid) {
        taps = dims[3][2];
        valid = ranks[3] == 3 && dims[3][0] == channels && dims[3][1] == 1 && taps >= 1 && ranks[4] == 1 &&
                dims[4][0] == channels && kernel->dilation >= 1 && kernel->padding >= 0;
        steps_out = x[2] + 2 * (valid ? kernel->padding : 0) - (valid ? kernel->dilation * (taps - 1) : 0);
        valid = valid && steps_out >= 0;
    }
    int64_t out_dims[3] = {x[0], channels, steps_out < 0 ? 0 : steps_out};
    OrtValue *output = NULL;
    if (API(KernelContext_GetOutput, KernelContextGetOutputFn)(context, 0, out_dims, 3, &output) != NULL) return;
    float *y = NULL;
    if (API(GetTensorMutableData, GetTensorMutableDataFn)(output, (void **)&y) != NULL) return;
    const size_t total = (size_t)(out_dims[0] * out_dims[1] * out_dims[2]);
    for (size_t k = 0; k < n_inputs; ++k) valid = valid && data[k] != NULL;
    if (valid) {
        SnakeJob job = {(const float *)data[0], y, (const float *)data[1], (const float *)data[2], channels, x[2],
                        x[0] * channels, NULL, NULL, NULL, NULL, 0, 1, 0, x[2], 0, 0, 0};
        if (depthwise) {
            job.weight = (const float *)data[3];
            job.bias = (const float *)data[4];
            job.taps = taps;
            job.dilation = kernel->dilation;
            job.padding = kernel->padding;
            job.steps_out = steps_out;
            if (snake_after) {
                job.alpha_out = (const float *)data[5];
                job.inv_alpha_out = (const float *)data[6];
            }
        }
        snake_run(&job, context);
        valid = !job.failed;
    }
    if (!valid) {
        for (size_t i = 0; i < total; ++i) y[i] = NAN;
    }
}

/* PolyphaseInterleave; like snake_compute, NaN output on shapes the exported graphs never produce. */
static void SNAKE_CALL interleave_compute(void *kernel_state, OrtKernelContext *context) {
    const SnakeKernel *kernel = (const SnakeKernel *)kernel_state;
    void *data[2];
    int64_t dims[2][8];
    int ranks[2];
    if (!read_inputs(context, 2, data, dims, ranks)) return;
    if (ranks[0] != 3 || kernel == NULL) return;
    const int64_t *z = dims[0];
    const int64_t stride = kernel->stride, padding = kernel->padding, output_padding = kernel->output_padding;
    int valid = stride >= 1 && padding >= 0 && output_padding >= 0 && output_padding <= padding && z[1] % stride == 0;
    const int64_t channels = valid ? z[1] / stride : 0;
    int64_t steps_out = z[2] * stride - 2 * padding + output_padding;
    valid = valid && steps_out >= 0 && ranks[1] == 3 && dims[1][0] == 1 && dims[1][1] == channels && dims[1][2] == 1 &&
            data[0] != NULL && data[1] != NULL;
    int64_t out_dims[3] = {z[0], channels, steps_out < 0 ? 0 : steps_out};
    OrtValue *output = NULL;
    if (API(KernelContext_GetOutput, KernelContextGetOutputFn)(context, 0, out_dims, 3, &output) != NULL) return;
    float *y = NULL;
    if (API(GetTensorMutableData, GetTensorMutableDataFn)(output, (void **)&y) != NULL) return;
    if (!valid) {
        const size_t total = (size_t)(out_dims[0] * out_dims[1] * out_dims[2]);
        for (size_t i = 0; i < total; ++i) y[i] = NAN;
        return;
    }
    SnakeJob job = {(const float *)data[0], y, NULL, NULL, channels, z[2], z[0] * channels, NULL, (const float *)data[1],
                    NULL, NULL, 0, 1, padding, steps_out, stride, 0, 0};
    snake_run(&job, context);
}

/* SnakeStream (state, x, alpha, inv_alpha) -> (y, new_state) and SnakeDepthwiseConvSnakeStream (state, x,
 * alpha, inv_alpha, weight, bias, alpha_out, inv_alpha_out) -> (y, new_state, residual): the stream graph's
 * layers over [state, x] (see the header). Like snake_compute, NaN outputs on shapes the graphs never produce. */
static void SNAKE_CALL stream_compute(void *kernel_state, OrtKernelContext *context) {
    const SnakeKernel *kernel = (const SnakeKernel *)kernel_state;
    const int depthwise = kernel != NULL && kernel->depthwise;
    const size_t n_inputs = depthwise ? 8 : 4, n_outputs = depthwise ? 3 : 2;
    void *data[8];
    int64_t dims[8][8];
    int ranks[8];
    if (!read_inputs(context, n_inputs, data, dims, ranks)) return;
    if (ranks[0] != 3 || ranks[1] != 3 || kernel == NULL) return;
    const int64_t *st = dims[0], *x = dims[1];
    const int64_t batch = x[0], channels = x[1], steps = x[2], held = st[2];
    int valid = st[0] == batch && st[1] == channels;
    for (size_t k = 2; k < n_inputs; k = (k == 3 ? 6 : k + 1)) { /* the alphas: inputs 2, 3 (and 6, 7) */
        valid = valid && ranks[k] == 3 && dims[k][0] == 1 && dims[k][1] == channels && dims[k][2] == 1;
    }
    int64_t taps = 0;
    if (depthwise && valid) {
        taps = dims[4][2];
        valid = ranks[4] == 3 && dims[4][0] == channels && dims[4][1] == 1 && taps >= 1 && ranks[5] == 1 &&
                dims[5][0] == channels && kernel->dilation >= 1 && held == kernel->dilation * (taps - 1) &&
                held % 2 == 0;
    }
    const int64_t y_steps = depthwise ? steps : held + steps;
    int64_t out_dims[3][3] = {{batch, channels, y_steps}, {batch, channels, held}, {batch, channels, steps}};
    float *out[3] = {NULL, NULL, NULL};
    for (size_t k = 0; k < n_outputs; ++k) {
        OrtValue *value = NULL;
        if (API(KernelContext_GetOutput, KernelContextGetOutputFn)(context, k, out_dims[k], 3, &value) != NULL) return;
        if (API(GetTensorMutableData, GetTensorMutableDataFn)(value, (void **)&out[k]) != NULL) return;
    }
    for (size_t k = 0; k < n_inputs; ++k) valid = valid && data[k] != NULL;
    if (valid) {
        SnakeJob job = {(const float *)data[1], out[0], (const float *)data[2], (const float *)data[3], channels,
                        steps, batch * channels, NULL, NULL, NULL, NULL, 0, 1, 0, y_steps, 0, 0, 0,
                        (const float *)data[0], held, out[1], out[2]};
        if (depthwise) {
            job.weight = (const float *)data[4];
            job.bias = (const float *)data[5];
            job.alpha_out = (const float *)data[6];
            job.inv_alpha_out = (const float *)data[7];
            job.taps = taps;
            job.dilation = kernel->dilation;
        }
        snake_run(&job, context);
        valid = !job.failed;
    }
    if (!valid) {
        for (size_t k = 0; k < n_outputs; ++k) {
            const size_t total = (size_t)(out_dims[k][0] * out_dims[k][1] * out_dims[k][2]);
            for (size_t i = 0; i < total; ++i) out[k][i] = NAN;
        }
    }
}

static const char *SNAKE_CALL snake_stream_name(const SnakeCustomOp *op) { (void)op; return "SnakeStream"; }
static const char *SNAKE_CALL depthwise_snake_stream_name(const SnakeCustomOp *op) {
    (void)op;
    return "SnakeDepthwiseConvSnakeStream";
}
static size_t SNAKE_CALL snake_stream_input_count(const SnakeCustomOp *op) { (void)op; return 4; }
static size_t SNAKE_CALL snake_stream_output_count(const SnakeCustomOp *op) { (void)op; return 2; }
static size_t SNAKE_CALL depthwise_snake_stream_input_count(const SnakeCustomOp *op) { (void)op; return 8; }
static size_t SNAKE_CALL depthwise_snake_stream_output_count(const SnakeCustomOp *op) { (void)op; return 3; }

static const char *SNAKE_CALL snake_name(const SnakeCustomOp *op) { (void)op; return "Snake"; }
static const char *SNAKE_CALL interleave_name(const SnakeCustomOp *op) { (void)op; return "PolyphaseInterleave"; }
static size_t SNAKE_CALL interleave_input_count(const SnakeCustomOp *op) { (void)op; return 2; }
static const char *SNAKE_CALL depthwise_name(const SnakeCustomOp *op) { (void)op; return "SnakeDepthwiseConv"; }
static const char *SNAKE_CALL depthwise_snake_name(const SnakeCustomOp *op) { (void)op; return "SnakeDepthwiseConvSnake"; }
static const char *SNAKE_CALL snake_provider(const SnakeCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int SNAKE_CALL snake_float_type(const SnakeCustomOp *op, size_t index) { (void)op; (void)index; return SNAKE_ELEMENT_FLOAT; }
static size_t SNAKE_CALL snake_input_count(const SnakeCustomOp *op) { (void)op; return 3; }
static size_t SNAKE_CALL depthwise_input_count(const SnakeCustomOp *op) { (void)op; return 5; }
static size_t SNAKE_CALL depthwise_snake_input_count(const SnakeCustomOp *op) { (void)op; return 7; }
static size_t SNAKE_CALL snake_output_count(const SnakeCustomOp *op) { (void)op; return 1; }
static int SNAKE_CALL snake_required(const SnakeCustomOp *op, size_t index) { (void)op; (void)index; return 0; }
static int SNAKE_CALL snake_memory_type(const SnakeCustomOp *op, size_t index) { (void)op; (void)index; return 0; }

static const SnakeCustomOp g_snake_op = {
    SNAKE_ORT_API_VERSION, snake_create_kernel, snake_name, snake_provider, snake_float_type, snake_input_count,
    snake_float_type, snake_output_count, snake_compute, snake_destroy_kernel, snake_required, snake_required,
    snake_memory_type,
};

/* Snake followed by a depthwise Conv (stride 1, zero padding, bias), as in each SNAC residual unit. */
static const SnakeCustomOp g_depthwise_op = {
    SNAKE_ORT_API_VERSION, depthwise_create_kernel, depthwise_name, snake_provider, snake_float_type,
    depthwise_input_count, snake_float_type, snake_output_count, snake_compute, snake_destroy_kernel,
    snake_required, snake_required, snake_memory_type,
};

/* SnakeDepthwiseConv followed by a Snake: Snake -> depthwise Conv -> Snake of a SNAC residual unit. */
static const SnakeCustomOp g_depthwise_snake_op = {
    SNAKE_ORT_API_VERSION, depthwise_create_kernel, depthwise_snake_name, snake_provider, snake_float_type,
    depthwise_snake_input_count, snake_float_type, snake_output_count, snake_compute, snake_destroy_kernel,
    snake_required, snake_required, snake_memory_type,
};

/* The interleave half of a polyphase ConvTranspose1d. */
static const SnakeCustomOp g_interleave_op = {
    SNAKE_ORT_API_VERSION, interleave_create_kernel, interleave_name, snake_provider, snake_float_type,
    interleave_input_count, snake_float_type, snake_output_count, interleave_compute, snake_destroy_kernel,
    snake_required, snake_required, snake_memory_type,
};

/* Snake whose output is joined to the layer's state: the stream graph's upsamplers and last convolution. */
static const SnakeCustomOp g_snake_stream_op = {
    SNAKE_ORT_API_VERSION, depthwise_create_kernel, snake_stream_name, snake_provider, snake_float_type,
    snake_stream_input_count, snake_float_type, snake_stream_output_count, stream_compute, snake_destroy_kernel,
    snake_required, snake_required, snake_memory_type,
};

/* SnakeDepthwiseConvSnake over [state, x]: the stream graph's residual units. */
static const SnakeCustomOp g_depthwise_snake_stream_op = {
    SNAKE_ORT_API_VERSION, depthwise_create_kernel, depthwise_snake_stream_name, snake_provider, snake_float_type,
    depthwise_snake_stream_input_count, snake_float_type, depthwise_snake_stream_output_count, stream_compute,
    snake_destroy_kernel, snake_required, snake_required, snake_memory_type,
};

/* Called by onnxruntime's SessionOptions.register_custom_ops_library. */
SNAKE_EXPORT OrtStatus *SNAKE_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *api_base) {
    const SnakeApiFn *api = api_base->GetApi(SNAKE_ORT_API_VERSION);
    if (api == NULL) return NULL; /* cannot even report: an onnxruntime older than 1.13 */
    g_api = api;
    const SnakeApiFn *api17 = api_base->GetApi(SNAKE_PARALLEL_FOR_API_VERSION);
    g_parallel_for = api17 != NULL ? (KernelContextParallelForFn)api17[API_KernelContext_ParallelFor] : NULL;
    OrtCustomOpDomain *domain = NULL;
    OrtStatus *status = API(CreateCustomOpDomain, CreateCustomOpDomainFn)("ai.snac_onnx", &domain);
    if (status != NULL) return status;
    status = API(CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &g_snake_op);
    if (status != NULL) return status;
    status = API(CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &g_depthwise_op);
    if (status != NULL) return status;
    status = API(CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &g_depthwise_snake_op);
    if (status != NULL) return status;
    status = API(CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &g_interleave_op);
    if (status != NULL) return status;
    status = API(CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &g_snake_stream_op);
    if (status != NULL) return status;
    status = API(CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &g_depthwise_snake_stream_op);
    if (status != NULL) return status;
    /* The domain is deliberately never released: it must outlive every session using it. */
    return API(AddCustomOpDomain, AddCustomOpDomainFn)(options, domain);
}

/* The library is also a (trivial) Python extension module, so that pip builds and installs
 * it next to the package; snac_onnx loads it only through onnxruntime, by path. */
#ifdef SNAKE_PYTHON_MODULE
static struct PyModuleDef snake_module = {
    PyModuleDef_HEAD_INIT, .m_name = "_snake", .m_doc = "Fused Snake kernel for onnxruntime.", .m_size = -1};
PyMODINIT_FUNC PyInit__snake(void) { return PyModule_Create(&snake_module); }
#endif
