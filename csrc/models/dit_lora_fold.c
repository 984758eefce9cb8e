/* The LoRA fold at placement (models/dit.h lyra_dit_lora_fold_at_placement): a device run's fixed adapters are
 * folded into the weights where the weights land, with the ops of the backend that holds them, instead of on the
 * host before the upload (lyra_dit_lora_merge). A random DiT (lyra_dit_load_random, deferred) is then never written
 * in host memory, and the ~2 TFLOP of a rank-64 adapter's B·A products at full size run on the GPU.
 *
 * Per folded Linear (one at a time, so the device's transient is one f32 weight-sized delta plus the packed factors):
 *     delta = [w_1·B_1 | w_2·B_2 | …] · [A_1; A_2; …]        one GEMM, K = Σ ranks, f32 accumulation and output
 *     W     = round_to_W's_dtype(f32(W) + delta)             one rounding (lyra_op_add with W's dtype as output)
 *     b     = b + w_a·diff_b_a, per adapter, in f32          the same ops as lyra_dit_lora_merge
 * The host merge sums w_a·(B_a·A_a) adapter by adapter, so the two differ by the f32 summation order of delta only;
 * after W's bf16 rounding they agree except for rare 1-ulp elements (tests/test_lora_fold.py measures it). */
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"

static int active(const lyra_dit *m, const lyra_dit_linear *lin, int a) {
    return lin->lora[a].a.data && m->adapters[a].weight != 0.0f;
}

lyra_status dit_lora_check_foldable(const lyra_dit *m, const char *what) {
    for (int i = 0; i < m->n_params; i++) {
        const lyra_dit_linear *lin = m->params[i].linear;
        if (!lin || m->params[i].dst != &lin->w) continue;
        for (int a = 0; a < m->n_adapters; a++)
            if (lin->lora[a].bias.data && !lin->b.data && m->adapters[a].weight != 0.0f)
                return lyra_error(LYRA_ERR_UNSUPPORTED, "%s: '%s' has no bias but adapter '%s' adds one (.diff_b); "
                                  "keep the adapters unmerged", what, lin->w.name, m->adapters[a].name);
    }
    return LYRA_OK;
}

int dit_lora_folds(const lyra_dit *m, const lyra_dit_linear *lin) {
    for (int a = 0; a < m->n_adapters; a++)
        if (active(m, lin, a)) return 1;
    return 0;
}

/* A tensor of `bytes` in be's memory (device pool or host), described as dtype/shape; NULL data on failure. */
static lyra_tensor be_tensor(lyra_backend *be, lyra_dtype dt, int ndim, const int64_t *ne, const char *name) {
    lyra_tensor t = lyra_tensor_make(NULL, dt, ndim, ne);
    size_t bytes = lyra_tensor_nbytes(&t);
    t.data = be->ops->alloc(be, bytes ? bytes : 1);
    t.device = be->device;
    t.name = name;
    return t;
}

static void be_free(lyra_backend *be, lyra_tensor *t) {
    if (t->data) be->ops->release(be, t->data);
    t->data = NULL;
}

/* host f32 (numel) -> t on be (t allocated there). */
static lyra_status put(lyra_backend *be, lyra_tensor *t, const float *host) {
    if (be->device == LYRA_DEVICE_CPU) {
        memcpy(t->data, host, lyra_tensor_nbytes(t));
        return LYRA_OK;
    }
    lyra_tensor h = *t;
    h.data = (void *)host;
    h.device = LYRA_DEVICE_CPU;
    return lyra_op_upload(be, t, &h);
}

/* t = round_to_t's_dtype(f32(t) + delta). The device backends compute 16-bit operands in f32 and round the output
 * once; the CPU backend's kernels take f32 only, so a 16-bit t goes through an f32 copy (rounded once on the way
 * back), as lyra_dit_lora_merge does. */
static lyra_status add_into(lyra_backend *be, lyra_tensor *t, const lyra_tensor *delta) {
    if (be->device != LYRA_DEVICE_CPU || t->dtype == LYRA_DTYPE_F32) return lyra_op_add(be, t, t, delta);
    lyra_tensor f = be_tensor(be, LYRA_DTYPE_F32, t->ndim, t->ne, "LoRA fold: f32 weight");
    if (!f.data) return lyra_error(LYRA_ERR_OOM, "LoRA fold: cannot allocate an f32 copy of '%s'", t->name);
    lyra_status st = lyra_op_copy(be, &f, t);
    if (st == LYRA_OK) st = lyra_op_add(be, &f, &f, delta);
    if (st == LYRA_OK) st = lyra_op_copy(be, t, &f);
    be_free(be, &f);
    return st;
}

lyra_status dit_lora_fold_linear(lyra_dit *m, lyra_backend *be, lyra_dit_linear *lin, lyra_tensor *w,
                                 lyra_tensor *bias) {
    int64_t out = lin->w.ne[0], in = lin->w.ne[1], R = 0;
    int any_bias = 0;
    for (int a = 0; a < m->n_adapters; a++) {
        if (!active(m, lin, a)) continue;
        R += lin->lora[a].a.ne[0];
        any_bias |= lin->lora[a].bias.data != NULL;
    }
    if (!R) return LYRA_OK;
    if (!bias) any_bias = 0;
    if (!w) R = 0; /* the bias only */
    LYRA_ASSERT(!any_bias || bias->data); /* dit_lora_check_foldable ran first */
    /* the factors packed on the host (the adapters' tensors stay there): columns of adapter a in B scaled by w_a */
    float *hb = malloc(sizeof(float) * (size_t)(out * R + 1)), *ha = malloc(sizeof(float) * (size_t)(R * in + 1));
    lyra_tensor B = {0}, A = {0}, delta = {0}, db = {0}, hbias = {0};
    lyra_status st = hb && ha ? LYRA_OK
                              : lyra_error(LYRA_ERR_OOM, "LoRA fold: out of host memory for '%s'", lin->w.name);
    for (int a = 0, r0 = 0; a < m->n_adapters && st == LYRA_OK && R; a++) {
        if (!active(m, lin, a)) continue;
        const lyra_dit_lora_term *t = &lin->lora[a];
        const float *tb = t->b.data, wa = m->adapters[a].weight;
        int64_t r = t->a.ne[0];
        for (int64_t o = 0; o < out; o++)
            for (int64_t k = 0; k < r; k++) hb[o * R + r0 + k] = wa == 1.0f ? tb[o * r + k] : wa * tb[o * r + k];
        memcpy(ha + (size_t)(r0 * in), t->a.data, sizeof(float) * (size_t)(r * in));
        r0 += (int)r;
    }
    if (st == LYRA_OK && R) {
        B = be_tensor(be, LYRA_DTYPE_F32, 2, (int64_t[]){out, R}, "LoRA fold: B");
        A = be_tensor(be, LYRA_DTYPE_F32, 2, (int64_t[]){R, in}, "LoRA fold: A");
        delta = be_tensor(be, LYRA_DTYPE_F32, 2, (int64_t[]){out, in}, "LoRA fold: delta");
        if (!B.data || !A.data || !delta.data)
            st = lyra_error(LYRA_ERR_OOM, "LoRA fold: cannot allocate the %lld x %lld f32 delta of '%s' on the %s "
                            "device", (long long)out, (long long)in, lin->w.name, be->ops->name);
        if (st == LYRA_OK) st = put(be, &B, hb);
        if (st == LYRA_OK) st = put(be, &A, ha);
        if (st == LYRA_OK) st = lyra_op_matmul(be, &delta, &B, &A, 0, 1.0f);
        if (st == LYRA_OK) st = add_into(be, w, &delta);
    }
    if (st == LYRA_OK && any_bias) {
        db = be_tensor(be, LYRA_DTYPE_F32, 1, &out, "LoRA fold: bias delta");
        if (!db.data) st = lyra_error(LYRA_ERR_OOM, "LoRA fold: cannot allocate the bias of '%s'", lin->w.name);
    }
    for (int a = 0; a < m->n_adapters && st == LYRA_OK && any_bias; a++) {
        const lyra_dit_lora_term *t = &lin->lora[a];
        if (!active(m, lin, a) || !t->bias.data) continue;
        /* the same ops as the host merge: db = w_a·diff_b, b += db (f32) */
        hbias = be_tensor(be, LYRA_DTYPE_F32, 1, &out, "LoRA fold: diff_b");
        if (!hbias.data) st = lyra_error(LYRA_ERR_OOM, "LoRA fold: cannot allocate the bias of '%s'", lin->w.name);
        if (st == LYRA_OK) st = put(be, &hbias, t->bias.data);
        if (st == LYRA_OK) st = lyra_op_scale(be, &db, &hbias, m->adapters[a].weight, 0.0f);
        if (st == LYRA_OK) st = lyra_op_add(be, bias, bias, &db);
        lyra_op_synchronize(be); /* hbias is read by the queued ops */
        be_free(be, &hbias);
    }
    lyra_op_synchronize(be); /* the queued GEMM and add read the temporaries */
    be_free(be, &B);
    be_free(be, &A);
    be_free(be, &delta);
    be_free(be, &db);
    free(hb);
    free(ha);
    return st;
}

lyra_status lyra_dit_lora_fold_at_placement(lyra_dit *m) {
    if (m->be.device != LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "LoRA fold: the DiT is placed already; fold before placement");
    LYRA_TRY(dit_lora_check_foldable(m, "LoRA merge"));
    m->lora_fold = m->n_adapters > 0;
    return LYRA_OK;
}

/* Which backend holds a placed weight: the device block, or (streamed blocks) the pinned host copy. */
static lyra_backend *holder(lyra_tensor *t, lyra_backend *cpu, lyra_backend *dev) {
    return t->device == LYRA_DEVICE_CPU ? cpu : dev;
}

lyra_status dit_lora_fold_placed(lyra_dit *m, lyra_backend *cpu, lyra_backend *dev, int fp8_done) {
    lyra_status st = LYRA_OK;
    for (int i = 0; i < m->n_params && st == LYRA_OK; i++) {
        lyra_dit_linear *lin = m->params[i].linear;
        if (!lin || m->params[i].dst != &lin->w || !dit_lora_folds(m, lin)) continue;
        /* an fp8 weight's codes were made from the folded weight as it was filled (dit_random_fill_at): its bias
         * (filled in table order, possibly after it) is folded here */
        LYRA_ASSERT(!lin->fp8 || fp8_done);
        st = dit_lora_fold_linear(m, holder(&lin->w, cpu, dev), lin, lin->fp8 ? NULL : &lin->w, &lin->b);
    }
    /* the adapters go also after a failure (the model is unusable then): their memory is the host's, which the
     * placed model's backend could not release */
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].linear) memset(m->params[i].linear->lora, 0, sizeof m->params[i].linear->lora);
    for (int a = 0; a < m->n_adapters; a++) free(m->adapters[a].mem); /* host memory: never uploaded */
    memset(m->adapters, 0, sizeof m->adapters);
    m->n_adapters = 0;
    m->lora_fold = 0;
    return st;
}
