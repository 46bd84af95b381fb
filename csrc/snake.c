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

/* ---- channels-last kernels (export/cl_ops.py) ------------------------------------------------------------
 *
 * Activations (batch, time, channels); alpha, inv_alpha (channels); a depthwise weight (taps, channels). Each
 * output row (one time step of all channels) is computed by the same code whatever rows are around it or how the
 * rows are shared among threads, so a stream that feeds a layer one step at a time gets bit for bit the rows of an
 * offline run over the whole sequence. The float ops:
 *   SnakeCL(x, alpha, inv_alpha) -> y;  SnakeStreamCL(state, x, alpha, inv_alpha) -> (y = [state, Snake(x)], new_state)
 *   SnakeTapsCL(x, ...) -> cols (B, T + 1, 2C), row q = [s[q - 1], s[q]] of s = [0, Snake(x), 0];
 *   SnakeTapsStreamCL(state (B, 1, C), x, ...) -> (cols (B, T, 2C) over [state, Snake(x)], new_state)
 *   DepthwiseConvCL(x, weight, bias) and DepthwiseConvStreamCL(state, x, weight, bias) -> (y, new_state)
 *   SnakeDepthwiseConvSnakeCL(x, alpha, inv_alpha, weight, bias, alpha_out, inv_alpha_out) -> y, and its stream form
 *     (state, x, ...) -> (y, new_state, residual = [state, x][S/2, S/2 + T))
 *   ConvCL(x, weight (taps, C, C_out), bias) -> y: a dense convolution with few output channels
 * and the int8 ones: QuantizeRowsCL(x) -> (q uint8, params (B, T, 2)); the forms "<op>Q" of the taps and depthwise
 * ops, whose first output is that pair instead of y; DequantizeCL(acc int32, params, weight_scale, weight_sum int32,
 * bias) -> y = (float)(acc - zero * weight_sum) * weight_scale * scale + bias (in that order) and DequantizeAddCL(...,
 * residual), which adds residual after. A row is quantized asymmetrically: lo = min(min v, 0), hi = max(max v, 0),
 * scale = max(hi - lo, 1e-30) / 255, inverse = 1 / scale, zero = rint(-lo * inverse), q = clamp(rint(v * inverse) +
 * zero, 0, 255), params = [scale, zero] (rint: round half to even), exactly the function bodies' ops.
 * Stream forms (state first): the layer runs over [state, x] joined in time without padding; new_state is the
 * joined rows' last S (S = state rows). Like the channels-first ops: NaN outputs on shapes the graphs never give.
 */

enum { SNAKE_ELEMENT_UINT8 = 2, SNAKE_ELEMENT_INT32 = 6 };
enum {
    CL_SNAKE, CL_SNAKE_STREAM, CL_TAPS, CL_TAPS_STREAM, CL_DEPTHWISE, CL_DEPTHWISE_STREAM, CL_UNIT, CL_UNIT_STREAM,
    CL_CONV, CL_QUANTIZE, CL_DEQUANTIZE, CL_DEQUANTIZE_ADD
};

#define CL_ROW_FLOOR 1e-30f
#define CL_LEVELS 255.0f
#define CL_BLOCK_ROWS 64 /* output rows a depthwise task computes between refills of its scratch */

/* Snake of one value with per-channel alpha (the reduction of snake_row_float); *bad is set when |alpha * x| is beyond
 * the float reduction. Inline: cloned callers compile it for their instruction set. */
static inline float cl_snake_one(float x, float alpha, float inv_alpha, int *bad) {
    const float two_over_pi = 0.636619772367581343f;
    const float pio2_1 = 1.5703125f, pio2_2 = 4.837512969970703125e-4f, pio2_3 = 7.54978995489188216e-8f;
    const float round_magic = 12582912.0f;
    const float z = alpha * x;
    const float q = (z * two_over_pi + round_magic) - round_magic;
    const float r = ((z - q * pio2_1) - q * pio2_2) - q * pio2_3;
    const float s2 = sin_squared_reduced(r);
    const float sin2 = ((int32_t)q & 1) ? 1.0f - s2 : s2;
    *bad |= !(fabsf(z) <= SNAKE_FLOAT_REDUCTION_LIMIT);
    return x + inv_alpha * sin2;
}

/* The values of one row (n channels) the float reduction could not take, redone in double (x and y may alias:
 * x is the input, y the output written by the float pass). */
static void cl_snake_fix(const float *x, float *y, size_t n, const float *alpha, const float *inv_alpha) {
    for (size_t i = 0; i < n; ++i) {
        if (!(fabsf(alpha[i] * x[i]) <= SNAKE_FLOAT_REDUCTION_LIMIT)) snake_row_double(x + i, y + i, 1, alpha[i], inv_alpha[i]);
    }
}

#define CL_LANES 16 /* values per group in the fixed-width inner loops below (one AVX-512 vector) */

/* y = Snake(x) over `rows` rows of n channels (row stride n). The out-of-range flags are kept per lane and looked
 * at once (a horizontal reduction per row would cost more than the row). */
SNAKE_CLONES
static void cl_snake_rows(const float *SNAKE_RESTRICT x, float *SNAKE_RESTRICT y, size_t rows, size_t n,
                          const float *SNAKE_RESTRICT alpha, const float *SNAKE_RESTRICT inv_alpha) {
    int lanes[CL_LANES] = {0};
    for (size_t r = 0; r < rows; ++r) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        size_t c = 0;
        for (; c + CL_LANES <= n; c += CL_LANES) {
            for (size_t i = 0; i < CL_LANES; ++i) yr[c + i] = cl_snake_one(xr[c + i], alpha[c + i], inv_alpha[c + i], &lanes[i]);
        }
        for (; c < n; ++c) yr[c] = cl_snake_one(xr[c], alpha[c], inv_alpha[c], &lanes[0]);
    }
    int bad = 0;
    for (size_t i = 0; i < CL_LANES; ++i) bad |= lanes[i];
    if (bad) {
        for (size_t r = 0; r < rows; ++r) cl_snake_fix(x + r * n, y + r * n, n, alpha, inv_alpha);
    }
}

static void cl_snake_row(const float *x, float *y, size_t n, const float *alpha, const float *inv_alpha) {
    cl_snake_rows(x, y, 1, n, alpha, inv_alpha);
}

/* A float's bits as an int32 that orders like the float (for non-NaN values), and back. */
static inline int32_t cl_order_key(int32_t bits) { return bits ^ ((bits >> 31) & 0x7fffffff); }

/* Quantize `rows` rows of n values (row stride n; see the header): q gets n uint8 per row, params [scale, zero] per
 * row (scale NaN for a row with a NaN). */
SNAKE_CLONES
static void cl_quantize_rows(const float *SNAKE_RESTRICT v, size_t rows, size_t n, uint8_t *SNAKE_RESTRICT q,
                             float *SNAKE_RESTRICT params) {
    enum { BATCH = 64 }; /* rows whose per-row scalars are computed together (their dependency chains overlap) */
    for (size_t r0 = 0; r0 < rows; r0 += BATCH) {
        const size_t count = rows - r0 < BATCH ? rows - r0 : BATCH;
        int32_t lows[BATCH], highs[BATCH];
        uint32_t nans[BATCH];
        float inverses[BATCH], zeros[BATCH];
        for (size_t r = 0; r < count; ++r) {
            const float *vr = v + (r0 + r) * n;
            int32_t low_key = 0, high_key = 0; /* the key of +0: the range always holds zero */
            uint32_t nan = 0;
            for (size_t i = 0; i < n; ++i) { /* integer min/max: they vectorize where float ones need -ffast-math */
                int32_t bits;
                memcpy(&bits, vr + i, sizeof bits);
                const int32_t key = cl_order_key(bits);
                low_key = key < low_key ? key : low_key;
                high_key = key > high_key ? key : high_key;
                nan |= ((uint32_t)bits & 0x7fffffffu) > 0x7f800000u;
            }
            lows[r] = low_key, highs[r] = high_key, nans[r] = nan;
        }
        for (size_t r = 0; r < count; ++r) {
            const int32_t low_bits = cl_order_key(lows[r]), high_bits = cl_order_key(highs[r]);
            float low, high;
            memcpy(&low, &low_bits, sizeof low);
            memcpy(&high, &high_bits, sizeof high);
            const float span = high - low;
            const float scale = nans[r] ? NAN : (span > CL_ROW_FLOOR ? span : CL_ROW_FLOOR) / CL_LEVELS;
            inverses[r] = 1.0f / scale;
            zeros[r] = rintf(-low * inverses[r]);
            params[2 * (r0 + r)] = scale;
            params[2 * (r0 + r) + 1] = zeros[r];
        }
        for (size_t r = 0; r < count; ++r) { /* in int32: rint(v * inverse) + zero, clamped (the same values) */
            const float *vr = v + (r0 + r) * n;
            uint8_t *qr = q + (r0 + r) * n;
            const float inverse = inverses[r];
            const int32_t zero = zeros[r] == zeros[r] ? (int32_t)zeros[r] : 0;
            for (size_t i = 0; i < n; ++i) {
                const float scaled = rintf(vr[i] * inverse);
                int32_t k = (scaled > -65536.0f && scaled < 65536.0f ? (int32_t)scaled : 0) + zero; /* NaN rows: 0 */
                k = k < 0 ? 0 : k;
                k = k > 255 ? 255 : k;
                qr[i] = (uint8_t)k;
            }
        }
    }
}

/* One block of a depthwise layer: out[t][c] = bias[c] + sum_k w[k][c] * s[t + k * dilation][c] for t < rows (s:
 * `rows + (taps - 1) * dilation` rows of n channels; 7 taps: ((b + w0 s0 + w1 s1) + (w2 s2 + w3 s3)) + (w4 s4 + w5 s5
 * + w6 s6), three short chains; other counts in tap order), then (alpha_out given) Snake(alpha_out).
 * Channel groups of CL_LANES, each over all rows with its weights held in registers. Each value's arithmetic is
 * the same wherever it is. */
SNAKE_CLONES
static void cl_depthwise_block(const float *SNAKE_RESTRICT s, float *SNAKE_RESTRICT out, size_t rows, size_t n,
                               size_t taps, size_t dilation, const float *SNAKE_RESTRICT w, const float *SNAKE_RESTRICT bias,
                               const float *SNAKE_RESTRICT alpha_out, const float *SNAKE_RESTRICT inv_alpha_out) {
    const size_t d = dilation * n;
    size_t c0 = 0;
    if (taps == 7) {
        for (; c0 + CL_LANES <= n; c0 += CL_LANES) {
            float w0[CL_LANES], w1[CL_LANES], w2[CL_LANES], w3[CL_LANES], w4[CL_LANES], w5[CL_LANES], w6[CL_LANES];
            float bb[CL_LANES], ao[CL_LANES], iao[CL_LANES];
            int lanes[CL_LANES] = {0};
            for (size_t i = 0; i < CL_LANES; ++i) {
                w0[i] = w[c0 + i], w1[i] = w[n + c0 + i], w2[i] = w[2 * n + c0 + i], w3[i] = w[3 * n + c0 + i];
                w4[i] = w[4 * n + c0 + i], w5[i] = w[5 * n + c0 + i], w6[i] = w[6 * n + c0 + i], bb[i] = bias[c0 + i];
                ao[i] = alpha_out != NULL ? alpha_out[c0 + i] : 0.0f;
                iao[i] = alpha_out != NULL ? inv_alpha_out[c0 + i] : 0.0f;
            }
            for (size_t t = 0; t < rows; ++t) {
                const float *st = s + t * n + c0;
                float *y = out + t * n + c0;
                float v[CL_LANES];
                for (size_t i = 0; i < CL_LANES; ++i) { /* three short chains instead of one of seven: */
                    const float head = bb[i] + w0[i] * st[i] + w1[i] * st[d + i];
                    const float middle = w2[i] * st[2 * d + i] + w3[i] * st[3 * d + i];
                    const float tail = w4[i] * st[4 * d + i] + w5[i] * st[5 * d + i] + w6[i] * st[6 * d + i];
                    v[i] = (head + middle) + tail;
                }
                if (alpha_out != NULL) {
                    for (size_t i = 0; i < CL_LANES; ++i) y[i] = cl_snake_one(v[i], ao[i], iao[i], &lanes[i]);
                } else {
                    for (size_t i = 0; i < CL_LANES; ++i) y[i] = v[i];
                }
            }
            int bad = 0;
            for (size_t i = 0; i < CL_LANES; ++i) bad |= lanes[i];
            if (bad) { /* rare: the values beyond the float reduction, again with the same sums, then in double */
                for (size_t t = 0; t < rows; ++t) {
                    const float *st = s + t * n + c0;
                    float v[CL_LANES];
                    for (size_t i = 0; i < CL_LANES; ++i) {
                        const float head = bb[i] + w0[i] * st[i] + w1[i] * st[d + i];
                        const float middle = w2[i] * st[2 * d + i] + w3[i] * st[3 * d + i];
                        const float tail = w4[i] * st[4 * d + i] + w5[i] * st[5 * d + i] + w6[i] * st[6 * d + i];
                        v[i] = (head + middle) + tail;
                    }
                    cl_snake_fix(v, out + t * n + c0, CL_LANES, alpha_out + c0, inv_alpha_out + c0);
                }
            }
        }
    }
    if (c0 == n) return;
    for (size_t t = 0; t < rows; ++t) { /* the other channels (or tap counts): the same sums, a channel at a time */
        const float *st = s + t * n;
        float *y = out + t * n;
        for (size_t c = c0; c < n; ++c) {
            float v = bias[c];
            if (taps == 7) { /* the same sums as the groups above */
                const float head = bias[c] + w[c] * st[c] + w[n + c] * st[d + c];
                const float middle = w[2 * n + c] * st[2 * d + c] + w[3 * n + c] * st[3 * d + c];
                const float tail = w[4 * n + c] * st[4 * d + c] + w[5 * n + c] * st[5 * d + c] + w[6 * n + c] * st[6 * d + c];
                v = (head + middle) + tail;
            } else {
                for (size_t k = 0; k < taps; ++k) v += w[k * n + c] * st[k * d + c];
            }
            if (alpha_out != NULL) {
                int bad = 0;
                y[c] = cl_snake_one(v, alpha_out[c], inv_alpha_out[c], &bad);
                if (bad) cl_snake_fix(&v, y + c, 1, alpha_out + c, inv_alpha_out + c);
            } else {
                y[c] = v;
            }
        }
    }
}

#define CL_CONV_ROWS 256 /* output rows of a dense-convolution block */

/* A dense convolution's block of `rows` outputs from xt: the block's input rows transposed, xt[c][j] (row stride
 * `span`): y[j][o] = bias[o] + sum_k sum_c w[k][c][o] * xt[c][j + k], summed in that order. */
SNAKE_CLONES
static void cl_conv_block(const float *SNAKE_RESTRICT xt, size_t span, float *SNAKE_RESTRICT y, size_t rows, size_t n,
                          size_t taps, size_t m, const float *SNAKE_RESTRICT w, const float *SNAKE_RESTRICT bias,
                          float *SNAKE_RESTRICT acc) {
    for (size_t o = 0; o < m; ++o) {
        for (size_t j = 0; j < rows; ++j) acc[j] = bias[o];
        for (size_t k = 0; k < taps; ++k) {
            for (size_t c = 0; c < n; ++c) {
                const float wv = w[(k * n + c) * m + o];
                const float *x = xt + c * span + k;
                for (size_t j = 0; j < rows; ++j) acc[j] += wv * x[j];
            }
        }
        for (size_t j = 0; j < rows; ++j) y[j * m + o] = acc[j];
    }
}

SNAKE_CLONES
static void cl_dequantize_row(const int32_t *SNAKE_RESTRICT acc, const float *params, const float *SNAKE_RESTRICT col_scale,
                              const int32_t *SNAKE_RESTRICT col_sum, const float *SNAKE_RESTRICT bias,
                              const float *SNAKE_RESTRICT residual, float *SNAKE_RESTRICT y, size_t n) {
    const float row_scale = params[0];
    const int32_t zero = (int32_t)params[1];
    if (residual != NULL) {
        for (size_t c = 0; c < n; ++c) {
            y[c] = ((float)(acc[c] - zero * col_sum[c]) * col_scale[c] * row_scale + bias[c]) + residual[c];
        }
    } else {
        for (size_t c = 0; c < n; ++c) y[c] = (float)(acc[c] - zero * col_sum[c]) * col_scale[c] * row_scale + bias[c];
    }
}

typedef struct ClOpDesc {
    SnakeCustomOp op; /* first: onnxruntime hands this pointer back */
    const char *name;
    int kind, quantize;
    size_t inputs, outputs;
} ClOpDesc;

typedef struct ClKernel {
    int kind, quantize;
    int64_t dilation, padding;
} ClKernel;

typedef struct ClJob {
    const ClKernel *kernel;
    int64_t batch, steps, channels; /* x (batch, steps, channels) */
    int64_t held;                   /* stream forms: the state's rows S (0 otherwise) */
    int64_t pad;                    /* zero rows around x (offline forms) */
    int64_t rows_out, width_out;    /* output 0 per batch row: rows, values per row */
    const float *x, *state, *alpha, *inv_alpha, *weight, *bias, *alpha_out, *inv_alpha_out;
    int64_t taps, dilation, conv_out;
    float *y;
    uint8_t *q;
    float *params; /* [scale, zero] per quantized row */
    const int32_t *acc, *col_sum;
    const float *row_params, *col_scale, *residual;
    int64_t spans, span_rows; /* work items: batch * spans, each span_rows output rows */
    int64_t next;
    int failed;
} ClJob;

/* Row i of the buffer a layer runs over: [zeros(pad), x, zeros(pad)] (offline) or [state, x] (stream); NULL: zeros. */
static const float *cl_source_row(const ClJob *job, int64_t b, int64_t i) {
    const int64_t c = job->channels;
    if (job->held > 0) {
        return i < job->held ? job->state + (b * job->held + i) * c : job->x + (b * job->steps + i - job->held) * c;
    }
    i -= job->pad;
    return i < 0 || i >= job->steps ? NULL : job->x + (b * job->steps + i) * c;
}

/* Fill dst with the layer's source rows [first, first + count) of batch b (Snake'd when the layer has alpha): runs of
 * x rows in one call each, state rows likewise, zero rows zeroed. */
static void cl_fill(const ClJob *job, int64_t b, int64_t first, int64_t count, float *dst) {
    const size_t c = (size_t)job->channels;
    int64_t i = 0;
    while (i < count) {
        const float *row = cl_source_row(job, b, first + i);
        int64_t run = 1; /* rows of the same source that follow in memory */
        while (i + run < count) {
            const float *next = cl_source_row(job, b, first + i + run);
            if ((row == NULL) != (next == NULL) || (row != NULL && next != row + run * (int64_t)c)) break;
            ++run;
        }
        float *out = dst + (size_t)i * c;
        if (row == NULL) memset(out, 0, (size_t)run * c * sizeof(float));
        else if (job->alpha != NULL) cl_snake_rows(row, out, (size_t)run, c, job->alpha, job->inv_alpha);
        else memcpy(out, row, (size_t)run * c * sizeof(float));
        i += run;
    }
}

/* Output rows [r0, r1) of batch b of a depthwise layer, in blocks of CL_BLOCK_ROWS: the block's source rows (and the
 * halo shared with the last block, kept) in `scratch`, its outputs in `out` (or straight into y). */
static int cl_depthwise_span(ClJob *job, int64_t b, int64_t r0, int64_t r1, float *scratch, float *out) {
    const int64_t c = job->channels, halo = (job->taps - 1) * job->dilation;
    int64_t have = 0; /* scratch holds source rows [next - have, next) */
    int64_t next = r0;
    for (int64_t r = r0; r < r1; r += CL_BLOCK_ROWS) {
        const int64_t rows = r1 - r < CL_BLOCK_ROWS ? r1 - r : CL_BLOCK_ROWS;
        const int64_t keep = have > 0 && next > r ? next - r : 0; /* rows [r, next) are already there, at the end */
        if (keep > 0) memmove(scratch, scratch + (have - keep) * c, (size_t)(keep * c) * sizeof(float));
        cl_fill(job, b, r + keep, rows + halo - keep, scratch + keep * c);
        have = rows + halo;
        next = r + have;
        const size_t at = (size_t)(b * job->rows_out + r);
        float *dst = job->q == NULL ? job->y + at * (size_t)c : out;
        cl_depthwise_block(scratch, dst, (size_t)rows, (size_t)c, (size_t)job->taps, (size_t)job->dilation, job->weight,
                           job->bias, job->alpha_out, job->inv_alpha_out);
        if (job->q != NULL) cl_quantize_rows(out, (size_t)rows, (size_t)c, job->q + at * (size_t)c, job->params + 2 * at);
    }
    return 1;
}

/* Output rows [r0, r1) of batch b of the dense convolution, in blocks of CL_CONV_ROWS (scratch: the transposed
 * input block, then the accumulators). */
static void cl_conv_span(ClJob *job, int64_t b, int64_t r0, int64_t r1, float *scratch) {
    const int64_t c = job->channels, m = job->conv_out;
    const size_t span = (size_t)(CL_CONV_ROWS + job->taps - 1);
    float *xt = scratch, *acc = scratch + (size_t)c * span;
    for (int64_t r = r0; r < r1; r += CL_CONV_ROWS) {
        const int64_t rows = r1 - r < CL_CONV_ROWS ? r1 - r : CL_CONV_ROWS;
        for (int64_t j = 0; j < rows + job->taps - 1; ++j) {
            const float *row = cl_source_row(job, b, r + j);
            for (int64_t ch = 0; ch < c; ++ch) xt[(size_t)ch * span + (size_t)j] = row == NULL ? 0.0f : row[ch];
        }
        cl_conv_block(xt, span, job->y + (size_t)(b * job->rows_out + r) * (size_t)m, (size_t)rows, (size_t)c,
                      (size_t)job->taps, (size_t)m, job->weight, job->bias, acc);
    }
}

/* Rows of the row-wise ops (Snake, taps, quantize, dequantize) of batch b. */
static void cl_rows_span(ClJob *job, int64_t b, int64_t r0, int64_t r1, float *row) {
    const int64_t c = job->channels;
    const int kind = job->kernel->kind;
    for (int64_t r = r0; r < r1; ++r) {
        const size_t at = (size_t)(b * job->rows_out + r);
        if (kind == CL_DEQUANTIZE || kind == CL_DEQUANTIZE_ADD) {
            const size_t n = (size_t)job->width_out;
            cl_dequantize_row(job->acc + at * n, job->row_params + 2 * at, job->col_scale, job->col_sum, job->bias,
                              job->residual != NULL ? job->residual + at * n : NULL, job->y + at * n, n);
        } else if (kind == CL_QUANTIZE) {
            cl_quantize_rows(job->x + at * (size_t)c, 1, (size_t)c, job->q + at * (size_t)c, job->params + 2 * at);
        } else if (kind == CL_SNAKE) {
            cl_snake_row(job->x + at * (size_t)c, job->y + at * (size_t)c, (size_t)c, job->alpha, job->inv_alpha);
        } else if (kind == CL_SNAKE_STREAM) { /* y = [state, Snake(x)] */
            float *y = job->y + at * (size_t)c;
            if (r < job->held) memcpy(y, job->state + (b * job->held + r) * c, (size_t)c * sizeof(float));
            else cl_snake_row(job->x + (b * job->steps + r - job->held) * c, y, (size_t)c, job->alpha, job->inv_alpha);
        } else { /* taps: row r = [v[r], v[r + 1]] of v = [zero or state row, Snake(x), (offline) zero row] */
            for (int64_t half = 0; half < 2; ++half) {
                const int64_t i = r + half; /* in v */
                float *dst = row + half * c;
                if (half == 0 && r > r0) {
                    memcpy(dst, row + c, (size_t)c * sizeof(float)); /* the last row's second half */
                } else if (i == 0 && job->held > 0) {
                    memcpy(dst, job->state + b * c, (size_t)c * sizeof(float));
                } else if (i == 0 || i > job->steps) {
                    memset(dst, 0, (size_t)c * sizeof(float));
                } else {
                    cl_snake_row(job->x + (b * job->steps + i - 1) * c, dst, (size_t)c, job->alpha, job->inv_alpha);
                }
            }
            if (job->q != NULL) cl_quantize_rows(row, 1, (size_t)(2 * c), job->q + at * (size_t)(2 * c), job->params + 2 * at);
            else memcpy(job->y + at * (size_t)(2 * c), row, (size_t)(2 * c) * sizeof(float));
        }
    }
}

static void cl_take(ClJob *job) {
    const int kind = job->kernel->kind;
    const int depthwise = kind == CL_DEPTHWISE || kind == CL_DEPTHWISE_STREAM || kind == CL_UNIT || kind == CL_UNIT_STREAM;
    const int64_t c = job->channels;
    size_t floats = (size_t)(2 * c + 2 * job->width_out + 16);
    if (depthwise) floats += (size_t)((2 * CL_BLOCK_ROWS + (job->taps - 1) * job->dilation) * c);
    if (kind == CL_CONV) floats += (size_t)((c + 1) * (CL_CONV_ROWS + job->taps)) + CL_CONV_ROWS;
    float *scratch = (float *)malloc(floats * sizeof(float));
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    for (;;) {
#if defined(_MSC_VER)
        const int64_t item = _InterlockedExchangeAdd64((volatile __int64 *)&job->next, 1);
#else
        const int64_t item = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
#endif
        if (item >= job->batch * job->spans) break;
        const int64_t b = item / job->spans, s = item % job->spans;
        const int64_t r0 = s * job->span_rows;
        const int64_t r1 = r0 + job->span_rows < job->rows_out ? r0 + job->span_rows : job->rows_out;
        if (r0 >= r1) continue;
        if (depthwise) {
            float *out = scratch + 2 * c + 2 * job->width_out + 16;
            if (!cl_depthwise_span(job, b, r0, r1, out + CL_BLOCK_ROWS * c, out)) job->failed = 1;
        } else if (kind == CL_CONV) {
            cl_conv_span(job, b, r0, r1, scratch);
        } else {
            cl_rows_span(job, b, r0, r1, scratch);
        }
    }
    free(scratch);
}

static void cl_task(void *job, size_t index) {
    (void)index;
    cl_take((ClJob *)job);
}

/* Split each batch row's output rows into spans (work items) and run them on the session's threads. */
static void cl_run(ClJob *job, OrtKernelContext *context) {
    const int64_t halo = job->taps > 0 ? (job->taps - 1) * job->dilation : 0;
    const int64_t least = 4 * halo > 64 ? 4 * halo : 64; /* a span's rows: its halo is at most a quarter of its work */
    const int64_t values = job->batch * job->rows_out * (job->width_out > job->channels ? job->width_out : job->channels);
    int64_t spans = 1;
    if (g_parallel_for != NULL && values >= SNAKE_MIN_PARALLEL_SAMPLES) {
        spans = job->rows_out / least;
        spans = spans < 1 ? 1 : (spans > SNAKE_PARALLEL_TASKS ? SNAKE_PARALLEL_TASKS : spans);
    }
    job->spans = spans;
    job->span_rows = (job->rows_out + spans - 1) / spans;
    job->next = 0;
    if (g_parallel_for != NULL && job->batch * spans >= 2) {
        OrtStatus *status = g_parallel_for(context, cl_task, SNAKE_PARALLEL_TASKS, 0, job);
        if (status == NULL) return;
        API(ReleaseStatus, ReleaseStatusFn)(status);
    }
    cl_take(job); /* everything, or whatever a failed ParallelFor left */
}

static int cl_is_stream(int kind) {
    return kind == CL_SNAKE_STREAM || kind == CL_TAPS_STREAM || kind == CL_DEPTHWISE_STREAM || kind == CL_UNIT_STREAM;
}

/* Fill every output with NaN (uint8 outputs with zeros, their scales NaN): shapes the graphs never give. */
static void cl_poison(int n, void *out[], const int is_u8[], const int64_t dims[][3]) {
    for (int k = 0; k < n; ++k) {
        if (out[k] == NULL) continue;
        const size_t total = (size_t)(dims[k][0] * dims[k][1] * dims[k][2]);
        if (is_u8[k]) memset(out[k], 0, total);
        else for (size_t i = 0; i < total; ++i) ((float *)out[k])[i] = NAN;
    }
}

static void SNAKE_CALL cl_compute(void *kernel_state, OrtKernelContext *context) {
    const ClKernel *kernel = (const ClKernel *)kernel_state;
    if (kernel == NULL) return;
    const int kind = kernel->kind, quantize = kernel->quantize, stream = cl_is_stream(kind);
    const int depthwise = kind == CL_DEPTHWISE || kind == CL_DEPTHWISE_STREAM || kind == CL_UNIT || kind == CL_UNIT_STREAM;
    const int unit = kind == CL_UNIT || kind == CL_UNIT_STREAM;
    static const size_t input_counts[] = {3, 4, 3, 4, 3, 4, 7, 8, 3, 1, 5, 6};
    const size_t n_inputs = input_counts[kind];
    void *data[8];
    int64_t dims[8][8];
    int ranks[8];
    if (!read_inputs(context, n_inputs, data, dims, ranks)) return;
    int valid = 1;
    for (size_t k = 0; k < n_inputs; ++k) valid = valid && data[k] != NULL;
    const size_t xi = stream ? 1 : 0;
    if (ranks[xi] != 3) return;
    const int64_t batch = dims[xi][0], steps = dims[xi][1], channels = dims[xi][2];
    const int64_t held = stream ? dims[0][1] : 0;
    if (stream) valid = valid && ranks[0] == 3 && dims[0][0] == batch && dims[0][2] == channels;
    ClJob job;
    memset(&job, 0, sizeof job);
    job.kernel = kernel;
    job.batch = batch;
    job.steps = steps;
    job.channels = channels;
    job.held = held;
    job.x = (const float *)data[xi];
    job.state = stream ? (const float *)data[0] : NULL;
    job.width_out = channels;
    const int snake = kind == CL_SNAKE || kind == CL_SNAKE_STREAM || kind == CL_TAPS || kind == CL_TAPS_STREAM || unit;
    if (snake) {
        for (size_t k = xi + 1; k < xi + 3; ++k) valid = valid && ranks[k] == 1 && dims[k][0] == channels;
        job.alpha = (const float *)data[xi + 1];
        job.inv_alpha = (const float *)data[xi + 2];
    }
    int64_t rows_out = steps;
    if (depthwise) {
        const size_t wi = xi + (unit ? 3 : 1);
        valid = valid && ranks[wi] == 2 && dims[wi][1] == channels && dims[wi][0] >= 1 && dims[wi][0] <= 64 &&
                ranks[wi + 1] == 1 && dims[wi + 1][0] == channels && kernel->dilation >= 1;
        job.taps = valid ? dims[wi][0] : 1;
        job.dilation = kernel->dilation >= 1 ? kernel->dilation : 1;
        job.weight = (const float *)data[wi];
        job.bias = (const float *)data[wi + 1];
        if (unit) {
            valid = valid && ranks[wi + 2] == 1 && dims[wi + 2][0] == channels && ranks[wi + 3] == 1 && dims[wi + 3][0] == channels;
            job.alpha_out = (const float *)data[wi + 2];
            job.inv_alpha_out = (const float *)data[wi + 3];
        }
        const int64_t halo = (job.taps - 1) * job.dilation;
        if (stream) valid = valid && held == halo && held % 2 == 0;
        else {
            valid = valid && kernel->padding >= 0;
            job.pad = kernel->padding >= 0 ? kernel->padding : 0;
        }
        rows_out = stream ? steps : steps + 2 * job.pad - halo;
    } else if (kind == CL_CONV) {
        valid = valid && ranks[1] == 3 && dims[1][1] == channels && dims[1][0] >= 1 && dims[1][0] <= 64 && ranks[2] == 1 &&
                dims[2][0] == dims[1][2] && kernel->padding >= 0;
        job.taps = valid ? dims[1][0] : 1;
        job.dilation = 1;
        job.conv_out = ranks[1] == 3 ? dims[1][2] : 1;
        job.weight = (const float *)data[1];
        job.bias = (const float *)data[2];
        job.pad = kernel->padding >= 0 ? kernel->padding : 0;
        job.width_out = job.conv_out;
        rows_out = steps + 2 * job.pad - job.taps + 1;
    } else if (kind == CL_TAPS || kind == CL_TAPS_STREAM) {
        if (kind == CL_TAPS_STREAM) valid = valid && held == 1;
        rows_out = kind == CL_TAPS ? steps + 1 : steps;
        job.width_out = 2 * channels;
    } else if (kind == CL_SNAKE_STREAM) {
        rows_out = held + steps;
    } else if (kind == CL_DEQUANTIZE || kind == CL_DEQUANTIZE_ADD) {
        valid = valid && ranks[1] == 3 && dims[1][0] == batch && dims[1][1] == steps && dims[1][2] == 2 && ranks[2] == 1 &&
                dims[2][0] == channels && ranks[3] == 1 && dims[3][0] == channels && ranks[4] == 1 && dims[4][0] == channels;
        if (kind == CL_DEQUANTIZE_ADD) {
            valid = valid && ranks[5] == 3 && dims[5][0] == batch && dims[5][1] == steps && dims[5][2] == channels;
            job.residual = (const float *)data[5];
        }
        job.acc = (const int32_t *)data[0];
        job.row_params = (const float *)data[1];
        job.col_scale = (const float *)data[2];
        job.col_sum = (const int32_t *)data[3];
        job.bias = (const float *)data[4];
    }
    valid = valid && rows_out >= 0;
    if (rows_out < 0) rows_out = 0;
    job.rows_out = rows_out;
    /* the outputs: 0 (y, or q and scale), then the stream forms' new_state and residual */
    int64_t out_dims[4][3];
    int is_u8[4] = {0, 0, 0, 0};
    int n_out = 0;
    if (quantize) {
        out_dims[0][0] = batch, out_dims[0][1] = rows_out, out_dims[0][2] = job.width_out;
        out_dims[1][0] = batch, out_dims[1][1] = rows_out, out_dims[1][2] = 2;
        is_u8[0] = 1;
        n_out = 2;
    } else {
        out_dims[0][0] = batch, out_dims[0][1] = rows_out, out_dims[0][2] = job.width_out;
        n_out = 1;
    }
    if (stream) {
        out_dims[n_out][0] = batch, out_dims[n_out][1] = held, out_dims[n_out][2] = channels;
        ++n_out;
        if (unit) {
            out_dims[n_out][0] = batch, out_dims[n_out][1] = steps, out_dims[n_out][2] = channels;
            ++n_out;
        }
    }
    void *out[4] = {NULL, NULL, NULL, NULL};
    for (int k = 0; k < n_out; ++k) {
        OrtValue *value = NULL;
        if (API(KernelContext_GetOutput, KernelContextGetOutputFn)(context, (size_t)k, out_dims[k], 3, &value) != NULL) return;
        if (API(GetTensorMutableData, GetTensorMutableDataFn)(value, &out[k]) != NULL) return;
    }
    if (!valid) {
        cl_poison(n_out, out, is_u8, (const int64_t(*)[3])out_dims);
        return;
    }
    if (quantize) {
        job.q = (uint8_t *)out[0];
        job.params = (float *)out[1];
    } else {
        job.y = (float *)out[0];
    }
    const int first_extra = quantize ? 2 : 1;
    cl_run(&job, context);
    if (job.failed) {
        cl_poison(n_out, out, is_u8, (const int64_t(*)[3])out_dims);
        return;
    }
    if (!stream) return;
    float *new_state = (float *)out[first_extra];
    const size_t row = (size_t)channels * sizeof(float);
    for (int64_t b = 0; b < batch; ++b) {
        float *ns = new_state + b * held * channels;
        if (kind == CL_SNAKE_STREAM) { /* the last `held` rows of y */
            memcpy(ns, job.y + (b * rows_out + steps) * channels, (size_t)held * row);
        } else if (kind == CL_TAPS_STREAM) { /* Snake of the last input (the state when there is none) */
            if (steps > 0) cl_snake_row(job.x + (b * steps + steps - 1) * channels, ns, (size_t)channels, job.alpha, job.inv_alpha);
            else memcpy(ns, job.state + b * channels, row);
        } else { /* depthwise forms: the joined inputs' last `held` rows, and (units) rows [held / 2, held / 2 + steps) */
            for (int64_t i = 0; i < held; ++i) memcpy(ns + i * channels, cl_source_row(&job, b, steps + i), row);
            if (unit) {
                float *residual = (float *)out[first_extra + 1] + b * steps * channels;
                for (int64_t i = 0; i < steps; ++i) memcpy(residual + i * channels, cl_source_row(&job, b, held / 2 + i), row);
            }
        }
    }
}

static void *SNAKE_CALL cl_create_kernel(const SnakeCustomOp *op, const void *api, const OrtKernelInfo *info) {
    (void)api;
    const ClOpDesc *desc = (const ClOpDesc *)op;
    ClKernel *kernel = (ClKernel *)malloc(sizeof(ClKernel));
    if (kernel == NULL) return NULL;
    kernel->kind = desc->kind;
    kernel->quantize = desc->quantize;
    kernel->dilation = kernel_int_attribute(info, "dilation", 1);
    kernel->padding = kernel_int_attribute(info, "padding", 0);
    return kernel;
}

static void SNAKE_CALL cl_destroy_kernel(void *kernel) { free(kernel); }
static const char *SNAKE_CALL cl_name(const SnakeCustomOp *op) { return ((const ClOpDesc *)op)->name; }
static size_t SNAKE_CALL cl_input_count(const SnakeCustomOp *op) { return ((const ClOpDesc *)op)->inputs; }
static size_t SNAKE_CALL cl_output_count(const SnakeCustomOp *op) { return ((const ClOpDesc *)op)->outputs; }
static int SNAKE_CALL cl_input_type(const SnakeCustomOp *op, size_t index) {
    const int kind = ((const ClOpDesc *)op)->kind;
    return (kind == CL_DEQUANTIZE || kind == CL_DEQUANTIZE_ADD) && (index == 0 || index == 3) ? SNAKE_ELEMENT_INT32
                                                                                                : SNAKE_ELEMENT_FLOAT;
}
static int SNAKE_CALL cl_output_type(const SnakeCustomOp *op, size_t index) {
    return ((const ClOpDesc *)op)->quantize && index == 0 ? SNAKE_ELEMENT_UINT8 : SNAKE_ELEMENT_FLOAT;
}

#define CL_OP(name, kind, quantize, inputs, outputs)                                                                 \
    {{SNAKE_ORT_API_VERSION, cl_create_kernel, cl_name, snake_provider, cl_input_type, cl_input_count, cl_output_type, \
      cl_output_count, cl_compute, cl_destroy_kernel, snake_required, snake_required, snake_memory_type},             \
     name, kind, quantize, inputs, outputs}

static const ClOpDesc g_cl_ops[] = {
    CL_OP("SnakeCL", CL_SNAKE, 0, 3, 1),
    CL_OP("SnakeStreamCL", CL_SNAKE_STREAM, 0, 4, 2),
    CL_OP("SnakeTapsCL", CL_TAPS, 0, 3, 1),
    CL_OP("SnakeTapsCLQ", CL_TAPS, 1, 3, 2),
    CL_OP("SnakeTapsStreamCL", CL_TAPS_STREAM, 0, 4, 2),
    CL_OP("SnakeTapsStreamCLQ", CL_TAPS_STREAM, 1, 4, 3),
    CL_OP("DepthwiseConvCL", CL_DEPTHWISE, 0, 3, 1),
    CL_OP("DepthwiseConvCLQ", CL_DEPTHWISE, 1, 3, 2),
    CL_OP("DepthwiseConvStreamCL", CL_DEPTHWISE_STREAM, 0, 4, 2),
    CL_OP("DepthwiseConvStreamCLQ", CL_DEPTHWISE_STREAM, 1, 4, 3),
    CL_OP("SnakeDepthwiseConvSnakeCL", CL_UNIT, 0, 7, 1),
    CL_OP("SnakeDepthwiseConvSnakeCLQ", CL_UNIT, 1, 7, 2),
    CL_OP("SnakeDepthwiseConvSnakeStreamCL", CL_UNIT_STREAM, 0, 8, 3),
    CL_OP("SnakeDepthwiseConvSnakeStreamCLQ", CL_UNIT_STREAM, 1, 8, 4),
    CL_OP("ConvCL", CL_CONV, 0, 3, 1),
    CL_OP("QuantizeRowsCL", CL_QUANTIZE, 1, 1, 2),
    CL_OP("DequantizeCL", CL_DEQUANTIZE, 0, 5, 1),
    CL_OP("DequantizeAddCL", CL_DEQUANTIZE_ADD, 0, 6, 1),
};

/* Add the channels-last ops to the domain (RegisterCustomOps). */
static OrtStatus *register_cl_ops(OrtCustomOpDomain *domain) {
    for (size_t k = 0; k < sizeof g_cl_ops / sizeof g_cl_ops[0]; ++k) {
        OrtStatus *status = API(CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &g_cl_ops[k].op);
        if (status != NULL) return status;
    }
    return NULL;
}

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
    status = register_cl_ops(domain);
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
