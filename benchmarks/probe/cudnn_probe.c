/* cudnn_probe: what cuDNN itself offers for each operation of the seed step, timed on the GPU.
 *
 * Two parts, both at the seed shape (4 x 16 x 1024 x 1024 hidden activations):
 *   legacy  cudnnFind*AlgorithmEx for every convolution of the step, in NCHW and NHWC, in TF32,
 *           strict FP32 and BF16 (FP32 accumulation); the fastest algorithm of each, and whether
 *           cudnnTransformTensor, cudnnActivationBackward and cudnnAddTensor take BF16.
 *   graph   the graph (backend) API: single convolutions and the fusions the step could use
 *           (conv + bias + ReLU, dgrad + ReLU backward [+ bias-gradient reduction], wgrad + bias
 *           gradient), every engine configuration that heuristics mode A and the fallback list
 *           offer, finalized and timed; tensor-core engines (TF32 for float data) and the others
 *           reported apart.
 * It answers "is there a faster cuDNN call for this op?" before any of it enters the package.
 * Build and run on the GPU machine: benchmarks/probe/run.sh. Results: docs/performance.md.
 */
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 4
#define H 1024
#define W 1024
#define C 16
#define WS_LIMIT ((size_t)2 << 30)
#define TIMED 10

static void die(const char *what, long status, int line) {
    char msg[512] = "";
    cudnnGetLastErrorString(msg, sizeof msg);
    fprintf(stderr, "line %d: %s failed: %ld %s\n", line, what, status, msg);
    exit(1);
}
#define CK(x) do { cudnnStatus_t s_ = (x); if (s_ != CUDNN_STATUS_SUCCESS) die(#x, s_, __LINE__); } while (0)
#define CU(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) die(#x, e_, __LINE__); } while (0)

static cudnnHandle_t handle;
static void *workspace;
static cudaEvent_t ev0, ev1;

static const char *status_text(cudnnStatus_t s) {
    static char msg[600];
    char last[512] = "";
    cudnnGetLastErrorString(last, sizeof last);
    snprintf(msg, sizeof msg, "%s (%.200s)", cudnnGetErrorString(s), last);
    for (char *p = msg; *p; p++) if (*p == '\n') *p = ' ';
    return msg;
}

/* ---- device buffers, filled with uniform [-1, 1) data (never zeros) ------------------------- */

static void *device_random(size_t count, cudnnDataType_t type) {
    size_t elem = type == CUDNN_DATA_BFLOAT16 ? 2 : 4;
    float *host = malloc(count * sizeof(float));
    uint16_t *host16 = (uint16_t *)host;
    uint32_t state = 12345u + (uint32_t)count;
    for (size_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        host[i] = (float)(state >> 8) / (float)(1u << 23) - 1.0f;
    }
    if (elem == 2)
        for (size_t i = 0; i < count; i++) { uint32_t b; memcpy(&b, &host[i], 4); host16[i] = (uint16_t)(b >> 16); }
    void *dev;
    CU(cudaMalloc(&dev, count * elem));
    CU(cudaMemcpy(dev, host, count * elem, cudaMemcpyHostToDevice));
    free(host);
    return dev;
}

typedef struct { void *x1, *h1, *h2, *g1, *g2, *dy1, *w2, *w3, *w1, *b16, *b1; } Buffers;

static Buffers buffers(cudnnDataType_t type) {
    size_t hidden = (size_t)N * C * H * W, single = (size_t)N * H * W;
    Buffers b = {device_random(single, type), device_random(hidden, type), device_random(hidden, type),
                 device_random(hidden, type), device_random(hidden, type), device_random(single, type),
                 device_random(C * C * 9, type), device_random(C * 9, type), device_random(C * 9, type),
                 device_random(C, type), device_random(1, type)};
    return b;
}

static void free_buffers(Buffers *b) {
    void **p = (void **)b;
    for (size_t i = 0; i < sizeof *b / sizeof(void *); i++) cudaFree(p[i]);
}

static float elapsed_ms(void) {
    float ms;
    CU(cudaEventSynchronize(ev1));
    CU(cudaEventElapsedTime(&ms, ev0, ev1));
    return ms;
}

/* ---- legacy API: cudnnFind*AlgorithmEx ------------------------------------------------------- */

typedef struct { const char *name; int in_c, out_c; } Conv;
static const Conv CONVS[3] = {{"conv1", 1, 16}, {"conv2", 16, 16}, {"conv3", 16, 1}};

static void legacy_find(const char *mode, cudnnDataType_t type, cudnnMathType_t math, int nhwc) {
    cudnnTensorFormat_t fmt = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    Buffers b = buffers(type);
    for (int i = 0; i < 3; i++) {
        const Conv *cv = &CONVS[i];
        cudnnTensorDescriptor_t xd, yd;
        cudnnFilterDescriptor_t wd;
        cudnnConvolutionDescriptor_t cd;
        CK(cudnnCreateTensorDescriptor(&xd));
        CK(cudnnCreateTensorDescriptor(&yd));
        CK(cudnnCreateFilterDescriptor(&wd));
        CK(cudnnCreateConvolutionDescriptor(&cd));
        CK(cudnnSetTensor4dDescriptor(xd, fmt, type, N, cv->in_c, H, W));
        CK(cudnnSetTensor4dDescriptor(yd, fmt, type, N, cv->out_c, H, W));
        CK(cudnnSetFilter4dDescriptor(wd, type, fmt, cv->out_c, cv->in_c, 3, 3));
        CK(cudnnSetConvolution2dDescriptor(cd, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        CK(cudnnSetConvolutionMathType(cd, math));
        void *x = cv->in_c == 1 ? b.x1 : b.h1, *y = cv->out_c == 1 ? b.dy1 : b.h2;
        void *w = i == 1 ? b.w2 : (i == 0 ? b.w1 : b.w3);
        int count;
        cudnnConvolutionFwdAlgoPerf_t fwd[16];
        cudnnConvolutionBwdDataAlgoPerf_t bwd[16];
        cudnnConvolutionBwdFilterAlgoPerf_t flt[16];
        cudnnStatus_t s = cudnnFindConvolutionForwardAlgorithmEx(handle, xd, x, wd, w, cd, yd, y, 16, &count, fwd,
                                                                  workspace, WS_LIMIT);
        if (s == CUDNN_STATUS_SUCCESS && count > 0 && fwd[0].status == CUDNN_STATUS_SUCCESS)
            printf("legacy %-4s %-5s %s fwd    algo %d  %.3f ms  ws %zu MiB  math %d\n", nhwc ? "NHWC" : "NCHW",
                   mode, cv->name, fwd[0].algo, fwd[0].time, fwd[0].memory >> 20, fwd[0].mathType);
        else
            printf("legacy %-4s %-5s %s fwd    none: %s\n", nhwc ? "NHWC" : "NCHW", mode, cv->name, status_text(s));
        if (cv->in_c > 1) {
            s = cudnnFindConvolutionBackwardDataAlgorithmEx(handle, wd, w, yd, y, cd, xd, b.g1, 16, &count, bwd,
                                                            workspace, WS_LIMIT);
            if (s == CUDNN_STATUS_SUCCESS && count > 0 && bwd[0].status == CUDNN_STATUS_SUCCESS)
                printf("legacy %-4s %-5s %s dgrad  algo %d  %.3f ms  ws %zu MiB  math %d\n", nhwc ? "NHWC" : "NCHW",
                       mode, cv->name, bwd[0].algo, bwd[0].time, bwd[0].memory >> 20, bwd[0].mathType);
            else
                printf("legacy %-4s %-5s %s dgrad  none: %s\n", nhwc ? "NHWC" : "NCHW", mode, cv->name, status_text(s));
        }
        void *dw;
        CU(cudaMalloc(&dw, (size_t)cv->in_c * cv->out_c * 9 * 4));
        s = cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, xd, x, yd, y, cd, wd, dw, 16, &count, flt,
                                                          workspace, WS_LIMIT);
        if (s == CUDNN_STATUS_SUCCESS && count > 0 && flt[0].status == CUDNN_STATUS_SUCCESS)
            printf("legacy %-4s %-5s %s wgrad  algo %d  %.3f ms  ws %zu MiB  math %d\n", nhwc ? "NHWC" : "NCHW",
                   mode, cv->name, flt[0].algo, flt[0].time, flt[0].memory >> 20, flt[0].mathType);
        else
            printf("legacy %-4s %-5s %s wgrad  none: %s\n", nhwc ? "NHWC" : "NCHW", mode, cv->name, status_text(s));
        cudaFree(dw);
        cudnnDestroyTensorDescriptor(xd);
        cudnnDestroyTensorDescriptor(yd);
        cudnnDestroyFilterDescriptor(wd);
        cudnnDestroyConvolutionDescriptor(cd);
    }
    free_buffers(&b);
}

/* Whether the element-wise calls a BF16 step needs take BF16, and what they cost. */
static void legacy_bf16_ops(void) {
    Buffers f = buffers(CUDNN_DATA_FLOAT), h = buffers(CUDNN_DATA_BFLOAT16);
    cudnnTensorDescriptor_t f32, b16, bias16;
    cudnnActivationDescriptor_t relu;
    CK(cudnnCreateTensorDescriptor(&f32));
    CK(cudnnCreateTensorDescriptor(&b16));
    CK(cudnnCreateTensorDescriptor(&bias16));
    CK(cudnnSetTensor4dDescriptor(f32, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, W));
    CK(cudnnSetTensor4dDescriptor(b16, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, N, C, H, W));
    CK(cudnnSetTensor4dDescriptor(bias16, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, 1, C, 1, 1));
    CK(cudnnCreateActivationDescriptor(&relu));
    CK(cudnnSetActivationDescriptor(relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    float one = 1.0f, zero = 0.0f;
    const char *names[4] = {"TransformTensor f32->bf16", "TransformTensor bf16->f32", "ActivationBackward bf16",
                            "AddTensor bf16 bias"};
    for (int k = 0; k < 4; k++) {
        cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
        CU(cudaEventRecord(ev0, 0));
        for (int r = 0; r < TIMED && s == CUDNN_STATUS_SUCCESS; r++) {
            if (k == 0) s = cudnnTransformTensor(handle, &one, f32, f.h1, &zero, b16, h.h2);
            if (k == 1) s = cudnnTransformTensor(handle, &one, b16, h.h1, &zero, f32, f.h2);
            if (k == 2) s = cudnnActivationBackward(handle, relu, &one, b16, h.h1, b16, h.g1, b16, h.h1, &zero,
                                                    b16, h.g2);
            if (k == 3) s = cudnnAddTensor(handle, &one, bias16, h.b16, &one, b16, h.h2);
        }
        CU(cudaEventRecord(ev1, 0));
        float ms = elapsed_ms() / TIMED;
        if (s == CUDNN_STATUS_SUCCESS) printf("legacy bf16 %-28s %.3f ms\n", names[k], ms);
        else printf("legacy bf16 %-28s unsupported: %s\n", names[k], status_text(s));
    }
    cudnnDestroyTensorDescriptor(f32);
    cudnnDestroyTensorDescriptor(b16);
    cudnnDestroyTensorDescriptor(bias16);
    cudnnDestroyActivationDescriptor(relu);
    free_buffers(&f);
    free_buffers(&h);
}

/* ---- graph API --------------------------------------------------------------------------------- */

typedef cudnnBackendDescriptor_t Desc;

static Desc create(cudnnBackendDescriptorType_t type) {
    Desc d;
    CK(cudnnBackendCreateDescriptor(type, &d));
    return d;
}
#define SET(d, name, type, count, ptr) CK(cudnnBackendSetAttribute((d), (name), (type), (count), (ptr)))

/* A 4-D tensor, NCHW or NHWC strides; virtual tensors live only inside a fused kernel. */
static Desc tensor4(int64_t uid, cudnnDataType_t type, const int64_t dims[4], int nhwc, int is_virtual) {
    int64_t strides[4];
    if (nhwc) {
        strides[1] = 1; strides[3] = dims[1]; strides[2] = dims[1] * dims[3]; strides[0] = dims[1] * dims[2] * dims[3];
    } else {
        strides[3] = 1; strides[2] = dims[3]; strides[1] = dims[2] * dims[3]; strides[0] = dims[1] * dims[2] * dims[3];
    }
    int64_t align = 16;
    bool v = is_virtual;
    Desc d = create(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    SET(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    SET(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    SET(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
    SET(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    SET(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    SET(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v);
    CK(cudnnBackendFinalize(d));
    return d;
}

static Desc convolution(void) {
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    int64_t dims = 2, one[2] = {1, 1}, pad[2] = {1, 1};
    Desc d = create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
    SET(d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    SET(d, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    SET(d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
    SET(d, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, one);
    SET(d, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, one);
    SET(d, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
    SET(d, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
    CK(cudnnBackendFinalize(d));
    return d;
}

enum { FWD, DGRAD, WGRAD };

/* One convolution operation: fwd (a=x, b=w, out=y), dgrad (a=dy, b=w, out=dx), wgrad (a=x, b=dy, out=dw). */
static Desc conv_op(int kind, Desc a, Desc b, Desc out) {
    static const cudnnBackendDescriptorType_t types[3] = {
        CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
        CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
        CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
    static const cudnnBackendAttributeName_t attrs[3][6] = {
        {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y},
        {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX},
        {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW}};
    float alpha = 1.0f, beta = 0.0f;
    Desc conv = convolution();
    Desc d = create(types[kind]);
    SET(d, attrs[kind][0], CUDNN_TYPE_FLOAT, 1, &alpha);
    SET(d, attrs[kind][1], CUDNN_TYPE_FLOAT, 1, &beta);
    SET(d, attrs[kind][2], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv);
    SET(d, attrs[kind][3], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    SET(d, attrs[kind][4], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    SET(d, attrs[kind][5], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &out);
    CK(cudnnBackendFinalize(d));
    return d;
}

/* A pointwise operation on FLOAT math: forward modes read x [and b] and write y; RELU_BWD reads
 * dy and x and writes dx = dy * (x > 0). Unused tensors are NULL. */
static Desc pointwise_op(cudnnPointwiseMode_t mode, Desc x, Desc b, Desc y, Desc dy, Desc dx) {
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    Desc pw = create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    SET(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    SET(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    CK(cudnnBackendFinalize(pw));
    Desc d = create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    SET(d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    const cudnnBackendAttributeName_t names[5] = {
        CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_ATTR_OPERATION_POINTWISE_YDESC,
        CUDNN_ATTR_OPERATION_POINTWISE_DYDESC, CUDNN_ATTR_OPERATION_POINTWISE_DXDESC};
    Desc tensors[5] = {x, b, y, dy, dx};
    for (int i = 0; i < 5; i++)
        if (tensors[i]) SET(d, names[i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tensors[i]);
    CK(cudnnBackendFinalize(d));
    return d;
}

static Desc pointwise(cudnnPointwiseMode_t mode, Desc x, Desc b, Desc y) {
    return pointwise_op(mode, x, b, y, NULL, NULL);
}

static Desc relu_backward(Desc dy, Desc x, Desc dx) {
    return pointwise_op(CUDNN_POINTWISE_RELU_BWD, x, NULL, NULL, dy, dx);
}

static Desc reduce_add(Desc x, Desc y) {
    cudnnReduceTensorOp_t op = CUDNN_REDUCE_TENSOR_ADD;
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    Desc r = create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    SET(r, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &op);
    SET(r, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    CK(cudnnBackendFinalize(r));
    Desc d = create(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    SET(d, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &r);
    SET(d, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    SET(d, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    CK(cudnnBackendFinalize(d));
    return d;
}

typedef struct { int64_t uid; void *ptr; } Binding;

/* Every engine configuration that heuristics offer for the graph: finalize a plan, time it. */
static void run_graph(const char *name, Desc *ops, int nops, const Binding *io, int nio) {
    Desc graph = create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    SET(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops);
    SET(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    cudnnStatus_t s = cudnnBackendFinalize(graph);
    if (s != CUDNN_STATUS_SUCCESS) {
        printf("graph %-34s graph refused: %s\n", name, status_text(s));
        return;
    }
    int64_t uids[8];
    void *ptrs[8];
    for (int i = 0; i < nio; i++) { uids[i] = io[i].uid; ptrs[i] = io[i].ptr; }
    float best[2] = {1e9f, 1e9f};  /* [tensor core, no tensor core] */
    int tried = 0, ran = 0;
    cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    for (int m = 0; m < 2; m++) {
        Desc heur = create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
        SET(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
        SET(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[m]);
        s = cudnnBackendFinalize(heur);
        if (s != CUDNN_STATUS_SUCCESS) {
            printf("graph %-34s heuristics %d refused: %s\n", name, m, status_text(s));
            continue;
        }
        int64_t count = 0;
        CK(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL));
        if (count > 24) count = 24;
        Desc cfgs[24];
        for (int i = 0; i < count; i++) cfgs[i] = create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        int64_t got = 0;
        CK(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfgs));
        for (int i = 0; i < got; i++) {
            Desc engine = create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
            int64_t n1 = 0, index = -1, nnotes = 0, nbeh = 0;
            CK(cudnnBackendGetAttribute(cfgs[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n1, &engine));
            CK(cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n1, &index));
            cudnnBackendNumericalNote_t notes[16];
            cudnnBackendBehaviorNote_t beh[16];
            CK(cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, 16, &nnotes, notes));
            CK(cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE, 16, &nbeh, beh));
            int tensor_core = 0, runtime = 0;
            char note_text[64] = "";
            for (int k = 0; k < nnotes; k++) {
                tensor_core |= notes[k] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE;
                snprintf(note_text + strlen(note_text), sizeof note_text - strlen(note_text), "n%d", (int)notes[k]);
            }
            for (int k = 0; k < nbeh; k++) runtime |= beh[k] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
            Desc plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
            SET(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
            SET(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
            tried++;
            s = cudnnBackendFinalize(plan);
            if (s != CUDNN_STATUS_SUCCESS) {
                printf("graph %-34s h%d engine %3ld %s%s plan refused: %.80s\n", name, m, (long)index,
                       tensor_core ? "TC " : "", runtime ? "RTC " : "", status_text(s));
                cudnnBackendDestroyDescriptor(plan);
                cudnnBackendDestroyDescriptor(engine);
                continue;
            }
            int64_t ws = 0;
            CK(cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n1, &ws));
            if ((size_t)ws > WS_LIMIT) {
                printf("graph %-34s h%d engine %3ld workspace %ld MiB: over the limit\n", name, m, (long)index, (long)(ws >> 20));
                continue;
            }
            Desc pack = create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
            SET(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, nio, uids);
            SET(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, nio, ptrs);
            SET(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
            CK(cudnnBackendFinalize(pack));
            s = cudnnBackendExecute(handle, plan, pack);
            if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendExecute(handle, plan, pack);
            if (s != CUDNN_STATUS_SUCCESS || cudaDeviceSynchronize() != cudaSuccess) {
                printf("graph %-34s h%d engine %3ld execute failed: %s\n", name, m, (long)index, status_text(s));
                continue;
            }
            CU(cudaEventRecord(ev0, 0));
            for (int r = 0; r < TIMED; r++) CK(cudnnBackendExecute(handle, plan, pack));
            CU(cudaEventRecord(ev1, 0));
            float ms = elapsed_ms() / TIMED;
            ran++;
            if (ms < best[!tensor_core]) best[!tensor_core] = ms;
            printf("graph %-34s h%d engine %3ld %-3s%-4s notes %-10s ws %5ld MiB  %.3f ms\n", name, m, (long)index,
                   tensor_core ? "TC" : "", runtime ? "RTC" : "", note_text, (long)(ws >> 20), ms);
            cudnnBackendDestroyDescriptor(pack);
            cudnnBackendDestroyDescriptor(plan);
            cudnnBackendDestroyDescriptor(engine);
        }
    }
    printf("BEST graph %-34s tensor-core %8.3f ms   no-tensor-core %8.3f ms   (%d configs, %d ran)\n", name,
           best[0], best[1], tried, ran);
    fflush(stdout);
}

/* The graphs of one layer. Tensors are (n, c, h, w) with NCHW or NHWC strides; uids: inputs and
 * outputs 1-5, virtual intermediates 10 and 11 (FLOAT, never in memory). */
static const char *const FWD_SUFFIX[3] = {"", "+bias", "+bias+relu"};

/* y = conv(x, w) [+ b [then ReLU]]: epilogue 0 none, 1 bias, 2 bias and ReLU. */
static void probe_forward(const char *tag, int nhwc, const Conv *cv, int epilogue, cudnnDataType_t type,
                          void *x, void *w, void *b, void *y) {
    const int64_t xd[4] = {N, cv->in_c, H, W}, yd[4] = {N, cv->out_c, H, W}, wd[4] = {cv->out_c, cv->in_c, 3, 3},
                  bd[4] = {1, cv->out_c, 1, 1};
    Desc tx = tensor4(1, type, xd, nhwc, 0), tw = tensor4(2, type, wd, nhwc, 0), ty = tensor4(3, type, yd, nhwc, 0);
    Desc ops[3];
    int nops = 0;
    if (epilogue == 0) {
        ops[nops++] = conv_op(FWD, tx, tw, ty);
    } else {
        Desc t = tensor4(10, CUDNN_DATA_FLOAT, yd, nhwc, 1), tb = tensor4(4, type, bd, nhwc, 0);
        Desc u = epilogue == 2 ? tensor4(11, CUDNN_DATA_FLOAT, yd, nhwc, 1) : ty;
        ops[nops++] = conv_op(FWD, tx, tw, t);
        ops[nops++] = pointwise(CUDNN_POINTWISE_ADD, t, tb, u);
        if (epilogue == 2) ops[nops++] = pointwise(CUDNN_POINTWISE_RELU_FWD, u, NULL, ty);
    }
    Binding io[4] = {{1, x}, {2, w}, {3, y}, {4, b}};
    char name[64];
    snprintf(name, sizeof name, "%s %s %s fwd%s", tag, nhwc ? "NHWC" : "NCHW", cv->name, FWD_SUFFIX[epilogue]);
    run_graph(name, ops, nops, io, epilogue ? 4 : 3);
}

/* dx = conv_transpose(dy, w) [* (h > 0) [and db = sum of dx over n, h, w]]. */
static void probe_dgrad(const char *tag, int nhwc, const Conv *cv, int relu, int bias, cudnnDataType_t type,
                        void *dy, void *w, void *h, void *dx, void *db) {
    const int64_t xd[4] = {N, cv->in_c, H, W}, yd[4] = {N, cv->out_c, H, W}, wd[4] = {cv->out_c, cv->in_c, 3, 3},
                  bd[4] = {1, cv->in_c, 1, 1};
    Desc tdy = tensor4(1, type, yd, nhwc, 0), tw = tensor4(2, type, wd, nhwc, 0), tdx = tensor4(3, type, xd, nhwc, 0);
    Desc ops[3];
    int nops = 0;
    if (!relu) {
        ops[nops++] = conv_op(DGRAD, tdy, tw, tdx);
    } else {
        Desc t = tensor4(10, CUDNN_DATA_FLOAT, xd, nhwc, 1), th = tensor4(4, type, xd, nhwc, 0);
        ops[nops++] = conv_op(DGRAD, tdy, tw, t);
        ops[nops++] = relu_backward(t, th, tdx);
        if (bias) ops[nops++] = reduce_add(tdx, tensor4(5, CUDNN_DATA_FLOAT, bd, nhwc, 0));
    }
    Binding io[5] = {{1, dy}, {2, w}, {3, dx}, {4, h}, {5, db}};
    char name[64];
    snprintf(name, sizeof name, "%s %s %s dgrad%s%s", tag, nhwc ? "NHWC" : "NCHW", cv->name, relu ? "+drelu" : "",
             bias ? "+dbias" : "");
    run_graph(name, ops, nops, io, relu ? 4 + bias : 3);
}

/* dw = sum of x (shifted) * dy [and db = sum of dy over n, h, w beside it]. */
static void probe_wgrad(const char *tag, int nhwc, const Conv *cv, int bias, cudnnDataType_t type,
                        void *x, void *dy, void *dw, void *db) {
    const int64_t xd[4] = {N, cv->in_c, H, W}, yd[4] = {N, cv->out_c, H, W}, wd[4] = {cv->out_c, cv->in_c, 3, 3},
                  bd[4] = {1, cv->out_c, 1, 1};
    Desc tx = tensor4(1, type, xd, nhwc, 0), tdy = tensor4(2, type, yd, nhwc, 0);
    Desc ops[2] = {conv_op(WGRAD, tx, tdy, tensor4(3, CUDNN_DATA_FLOAT, wd, nhwc, 0))};
    if (bias) ops[1] = reduce_add(tdy, tensor4(4, CUDNN_DATA_FLOAT, bd, nhwc, 0));
    Binding io[4] = {{1, x}, {2, dy}, {3, dw}, {4, db}};
    char name[64];
    snprintf(name, sizeof name, "%s %s %s wgrad%s", tag, nhwc ? "NHWC" : "NCHW", cv->name, bias ? "+dbias" : "");
    run_graph(name, ops, 1 + bias, io, 3 + bias);
}

static void graph_probes(cudnnDataType_t type, const char *tag) {
    Buffers b = buffers(type);
    void *db, *dw;
    CU(cudaMalloc(&db, 64));
    CU(cudaMalloc(&dw, C * C * 9 * 4));
    const Conv *conv1 = &CONVS[0], *conv2 = &CONVS[1], *conv3 = &CONVS[2];
    for (int nhwc = 1; nhwc >= 0; nhwc--) {
        probe_forward(tag, nhwc, conv2, 0, type, b.h1, b.w2, b.b16, b.h2);
        probe_forward(tag, nhwc, conv2, 2, type, b.h1, b.w2, b.b16, b.h2);
        probe_dgrad(tag, nhwc, conv2, 0, 0, type, b.g2, b.w2, b.h1, b.g1, db);
        probe_dgrad(tag, nhwc, conv2, 1, 0, type, b.g2, b.w2, b.h1, b.g1, db);
        probe_dgrad(tag, nhwc, conv2, 1, 1, type, b.g2, b.w2, b.h1, b.g1, db);
        probe_wgrad(tag, nhwc, conv2, 0, type, b.h1, b.g2, dw, db);
        probe_wgrad(tag, nhwc, conv2, 1, type, b.h1, b.g2, dw, db);
        probe_forward(tag, nhwc, conv3, 1, type, b.h2, b.w3, b.b1, b.dy1);
        probe_forward(tag, nhwc, conv3, 0, type, b.h2, b.w3, b.b1, b.dy1);
        probe_dgrad(tag, nhwc, conv3, 1, 0, type, b.dy1, b.w3, b.h2, b.g2, db);
        probe_wgrad(tag, nhwc, conv3, 0, type, b.h2, b.dy1, dw, db);
        probe_forward(tag, nhwc, conv1, 2, type, b.x1, b.w1, b.b16, b.h1);
        probe_wgrad(tag, nhwc, conv1, 0, type, b.x1, b.g1, dw, db);
    }
    cudaFree(db);
    cudaFree(dw);
    free_buffers(&b);
}

int main(int argc, char **argv) {
    const char *parts = argc > 1 ? argv[1] : "legacy,graph";
    setvbuf(stdout, NULL, _IOLBF, 0);  /* a run cut short still leaves its lines */
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    printf("GPU %s, cuDNN %zu, batch %d x %d x %d, %d hidden channels\n", prop.name, cudnnGetVersion(), N, H, W, C);
    CK(cudnnCreate(&handle));
    CU(cudaMalloc(&workspace, WS_LIMIT));
    CU(cudaEventCreate(&ev0));
    CU(cudaEventCreate(&ev1));
    if (strstr(parts, "legacy")) {
        for (int nhwc = 0; nhwc < 2; nhwc++) {
            legacy_find("tf32", CUDNN_DATA_FLOAT, CUDNN_DEFAULT_MATH, nhwc);
            legacy_find("fp32", CUDNN_DATA_FLOAT, CUDNN_FMA_MATH, nhwc);
            legacy_find("bf16", CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_OP_MATH, nhwc);
        }
        legacy_bf16_ops();
    }
    if (strstr(parts, "graph")) {
        graph_probes(CUDNN_DATA_FLOAT, "f32");
        graph_probes(CUDNN_DATA_BFLOAT16, "bf16");
    }
    cudnnDestroy(handle);
    return 0;
}
