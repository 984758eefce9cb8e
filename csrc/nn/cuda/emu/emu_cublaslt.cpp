// cuBLASLt for the CPU emulation build: see emu_cublaslt.h. The support rules follow the cuBLASLt documentation
// (cuBLAS Library User Guide, cublasLtMatmul(): "Datatypes Supported" and the FP8 requirements): A and B of one
// type, C = D of that type or f32 (FP8: bf16, f16 or f32 out), FP8 only as "TN" (op(A) = T, op(B) = N, i.e. both
// operands k-contiguous) with 16-byte aligned operands and leading dimensions a multiple of 16, scale pointers
// only with FP8, the bias vector of D's type (bf16 for FP8 with an f32 D).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_emu.h"

struct lyra_cuemu_lt {
    int unused;
};

struct lyra_cuemu_lt_desc {
    cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    int32_t bias_type = -1; /* -1: D's type */
    const float *a_scale = nullptr, *b_scale = nullptr;
};

struct lyra_cuemu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch = 1;
    int64_t stride = 0;
};

struct lyra_cuemu_lt_pref {
    uint64_t workspace = 0;
    uint32_t align[4] = {256, 256, 256, 256}; /* A, B, C, D: the library's defaults */
};

namespace {

int type_size(cudaDataType_t t) {
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F: case CUDA_R_16BF: return 2;
    case CUDA_R_8F_E4M3: return 1;
    }
    return 0;
}

float load(const void *base, int64_t idx, cudaDataType_t t) {
    switch (t) {
    case CUDA_R_32F: return ((const float *)base)[idx];
    case CUDA_R_16F: return __half2float(((const __half *)base)[idx]);
    case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)base)[idx]);
    case CUDA_R_8F_E4M3: return lyra_cuemu_e4m3_to_float(((const uint8_t *)base)[idx]);
    }
    return 0.0f;
}

void store(void *base, int64_t idx, cudaDataType_t t, float v) {
    switch (t) {
    case CUDA_R_32F: ((float *)base)[idx] = v; break;
    case CUDA_R_16F: ((__half *)base)[idx] = __float2half_rn(v); break;
    case CUDA_R_16BF: ((__nv_bfloat16 *)base)[idx] = __float2bfloat16_rn(v); break;
    case CUDA_R_8F_E4M3: ((uint8_t *)base)[idx] = lyra_cuemu_float_to_e4m3(v, __NV_SATFINITE); break;
    }
}

int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 1;
    while (al < 256 && !(a & (uintptr_t)al)) al <<= 1;
    return al;
}

bool has_bias(uint32_t epi) { return epi == CUBLASLT_EPILOGUE_BIAS || epi == CUBLASLT_EPILOGUE_GELU_BIAS; }
bool has_gelu(uint32_t epi) { return epi == CUBLASLT_EPILOGUE_GELU || epi == CUBLASLT_EPILOGUE_GELU_BIAS; }

/* Shapes that do not fit together are the caller's error (INVALID_VALUE); valid problems the library has no
 * kernel for are NOT_SUPPORTED. */
cublasStatus_t check_problem(const lyra_cuemu_lt_desc *d, const lyra_cuemu_lt_layout *a, const lyra_cuemu_lt_layout *b,
                             const lyra_cuemu_lt_layout *c, const lyra_cuemu_lt_layout *dl, uint64_t *k_out) {
    uint64_t m = dl->rows, n = dl->cols;
    uint64_t am = d->transa == CUBLAS_OP_N ? a->rows : a->cols, ak = d->transa == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t bk = d->transb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->transb == CUBLAS_OP_N ? b->cols : b->rows;
    if (am != m || bn != n || ak != bk || c->rows != m || c->cols != n) return CUBLAS_STATUS_INVALID_VALUE;
    if (a->ld < (int64_t)a->rows || b->ld < (int64_t)b->rows || c->ld < (int64_t)c->rows || dl->ld < (int64_t)dl->rows)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (a->batch != dl->batch || b->batch != dl->batch || c->batch != dl->batch || dl->batch < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (d->transa == CUBLAS_OP_C || d->transb == CUBLAS_OP_C) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (c->type != dl->type || a->type != b->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    bool fp8 = a->type == CUDA_R_8F_E4M3;
    switch (a->type) {
    case CUDA_R_32F: if (dl->type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED; break;
    case CUDA_R_16F: case CUDA_R_16BF:
        if (dl->type != a->type && dl->type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
        break;
    case CUDA_R_8F_E4M3:
        if (dl->type != CUDA_R_16BF && dl->type != CUDA_R_16F && dl->type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
        if (d->transa != CUBLAS_OP_T || d->transb != CUBLAS_OP_N) return CUBLAS_STATUS_NOT_SUPPORTED;
        if (a->ld % 16 || b->ld % 16) return CUBLAS_STATUS_NOT_SUPPORTED;
        break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (!fp8 && (d->a_scale || d->b_scale)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (has_bias(d->epilogue)) {
        int32_t want = fp8 && dl->type == CUDA_R_32F ? CUDA_R_16BF : dl->type;
        int32_t bt = d->bias_type < 0 ? dl->type : d->bias_type;
        if (bt != want) return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    *k_out = ak;
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new lyra_cuemu_lt{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    *d = nullptr;
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new lyra_cuemu_lt_desc();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

/* Each attribute has one size, as in the library (a wrong size is INVALID_VALUE). */
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: case CUBLASLT_MATMUL_DESC_TRANSB: {
        int32_t v;
        if (size != sizeof v) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&v, buf, sizeof v);
        if (v < CUBLAS_OP_N || v > CUBLAS_OP_C) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->transa : d->transb) = (cublasOperation_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof d->epilogue) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->epilogue, buf, size);
        if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && !has_bias(d->epilogue) && !has_gelu(d->epilogue))
            return CUBLAS_STATUS_NOT_SUPPORTED;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof d->bias) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (size != sizeof d->bias_type) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias_type, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_A_SCALE_POINTER:
        if (size != sizeof d->a_scale) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->a_scale, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_B_SCALE_POINTER:
        if (size != sizeof d->b_scale) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->b_scale, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    *l = nullptr;
    if (!type_size(type) || ld < 1) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new lyra_cuemu_lt_layout();
    (*l)->type = type;
    (*l)->rows = rows;
    (*l)->cols = cols;
    (*l)->ld = ld;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
        if (size != sizeof l->batch) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&l->batch, buf, size);
        return l->batch >= 1 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
        if (size != sizeof l->stride) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&l->stride, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new lyra_cuemu_lt_pref();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (size != sizeof p->workspace) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->workspace, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    int i = attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES;
    if (i < 0 || i > 3 || size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->align[i], buf, size);
    return CUBLAS_STATUS_SUCCESS;
}

/* One algorithm when the problem is supported and the promised alignments allow it (at least the element size;
 * 16 bytes for FP8). The algorithm remembers the alignments it may assume (vector loads of up to 16 bytes). */
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t la,
                                              cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc,
                                              cublasLtMatrixLayout_t ld, cublasLtMatmulPreference_t pref,
                                              int requested, cublasLtMatmulHeuristicResult_t *results, int *count) {
    *count = 0;
    if (!h || !d || !la || !lb || !lc || !ld || !pref || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    const char *env = getenv("LYRA2_EMU_CUBLASLT");
    if (env && !strcmp(env, "0")) return CUBLAS_STATUS_NOT_SUPPORTED;
    uint64_t k;
    cublasStatus_t s = check_problem(d, la, lb, lc, ld, &k);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    const lyra_cuemu_lt_layout *ls[4] = {la, lb, lc, ld};
    cublasLtMatmulHeuristicResult_t r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 4; i++) {
        uint32_t need = la->type == CUDA_R_8F_E4M3 && i < 2 ? 16u : (uint32_t)type_size(ls[i]->type);
        if (pref->align[i] < need) return CUBLAS_STATUS_NOT_SUPPORTED;
        r.algo.data[i] = pref->align[i] < 16 ? pref->align[i] : 16;
    }
    results[0] = r;
    *count = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_size,
                              cudaStream_t stream) {
    (void)workspace;
    (void)workspace_size;
    (void)stream;
    if (!h || !d || !la || !lb || !lc || !ld || !algo || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    uint64_t K;
    cublasStatus_t s = check_problem(d, la, lb, lc, ld, &K);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    const void *ptrs[4] = {A, B, C, D};
    const lyra_cuemu_lt_layout *ls[4] = {la, lb, lc, ld};
    int64_t M = (int64_t)ld->rows, N = (int64_t)ld->cols;
    for (int bi = 0; bi < ld->batch; bi++)
        for (int i = 0; i < 4; i++) {
            const char *p = (const char *)ptrs[i] + (int64_t)bi * ls[i]->stride * type_size(ls[i]->type);
            if ((uint64_t)align_of(p) < algo->data[i]) {
                char msg[200];
                snprintf(msg, sizeof msg,
                         "cublasLtMatmul: operand %c of batch %d at %p is less aligned than the %llu bytes the "
                         "algorithm was chosen for (a misaligned-address fault on the GPU)",
                         "ABCD"[i], bi, (const void *)p, (unsigned long long)algo->data[i]);
                lyra_cuemu_set_error(cudaErrorLaunchFailure, msg);
                return CUBLAS_STATUS_EXECUTION_FAILED;
            }
        }
    float al = *(const float *)alpha, be = *(const float *)beta;
    /* an unset scale pointer is the library's default scale 1 */
    float sab = (d->a_scale ? *d->a_scale : 1.0f) * (d->b_scale ? *d->b_scale : 1.0f);
    cudaDataType_t bias_t = (cudaDataType_t)(d->bias_type < 0 ? ld->type : d->bias_type);
    for (int bi = 0; bi < ld->batch; bi++) {
        const char *a = (const char *)A + (int64_t)bi * la->stride * type_size(la->type);
        const char *b = (const char *)B + (int64_t)bi * lb->stride * type_size(lb->type);
        const char *c = (const char *)C + (int64_t)bi * lc->stride * type_size(lc->type);
        char *dd = (char *)D + (int64_t)bi * ld->stride * type_size(ld->type);
        for (int64_t j = 0; j < N; j++)
            for (int64_t i = 0; i < M; i++) {
                float acc = 0.0f;
                for (int64_t kk = 0; kk < (int64_t)K; kk++) {
                    float x = load(a, d->transa == CUBLAS_OP_N ? i + kk * la->ld : kk + i * la->ld, la->type);
                    float y = load(b, d->transb == CUBLAS_OP_N ? kk + j * lb->ld : j + kk * lb->ld, lb->type);
                    acc += x * y;
                }
                float v = al * sab * acc;
                if (be != 0.0f) v += be * load(c, i + j * lc->ld, lc->type); /* beta = 0: C is not read */
                if (has_bias(d->epilogue)) v += load(d->bias, i, bias_t);
                if (has_gelu(d->epilogue))
                    v = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
                store(dd, i + j * ld->ld, ld->type, v);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}
