/* Run-time LoRA for the Lyra-2 DiT (upstream T2V:353-432, Z:525-530, T2V:379-380, MU:58-457).
 *
 * Upstream injects PEFT adapters with lora_alpha = rank, so an adapter with activation weight w_a adds
 * w_a·(B_a·(A_a·x) + bias_a) to every Linear it targets, after the per-module ".alpha" has been folded into A
 * and B (MU:73-82). We keep the terms unmerged (per-adapter weights stay settable) and can fold them into the
 * base weights on request (lyra_dit_lora_merge; the generate models fold a run's fixed set before a device
 * placement, docs/PRECISION.md). Accepted keys (after removing "diffusion_model." and a leading "net."):
 *     <module>.lora_A.weight | <module>.lora_down.weight   (r, in)
 *     <module>.lora_B.weight | <module>.lora_up.weight     (out, r)
 *     <module>.alpha                                       scalar: A·B scaled by alpha / r
 *     <module>.diff_b                                      (out): bias of the B branch, dropped when all zero or
 *                                                          max|x| − min|x| < 1.6e-2 (MU:84-100)
 *     <module>.diff                                        full-weight delta: ignored, as upstream (MU:386-397)
 * where <module> is any Linear of the DiT (upstream's converter lists every one of them). Musubi files
 * ("lora_unet_blocks_0_self_attn_q.lora_down.weight", MU:402-457) use underscores in the module path.
 * Differences from upstream, all in the direction of accepting more: ranks may differ between modules
 * (PEFT needs one rank per adapter), .alpha is optional in musubi files, and musubi keys may target any
 * Linear. A .diff_b on a module without A/B is ignored (upstream never targets such a module). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"

/* ---------------- parsing ---------------- */

enum { K_A, K_B, K_ALPHA, K_DIFF_B, K_DIFF, K_COUNT };
static const char *const SUFFIX[] = {".lora_A.weight", ".lora_down.weight", ".lora_B.weight", ".lora_up.weight",
                                     ".alpha", ".diff_b", ".diff"};
static const int SUFFIX_KIND[] = {K_A, K_A, K_B, K_B, K_ALPHA, K_DIFF_B, K_DIFF};

typedef struct module_keys {
    char module[96];
    const lyra_dit_named *key[K_COUNT];
    lyra_dit_linear *lin;
    int keep_bias;
} module_keys;

/* Upstream key normalisation (T2V:379-385): remove every "diffusion_model.", then one leading "net.". */
static void normalise(char *out, size_t size, const char *in) {
    size_t o = 0;
    static const char dm[] = "diffusion_model.";
    while (*in && o + 1 < size) {
        if (!strncmp(in, dm, sizeof dm - 1)) { in += sizeof dm - 1; continue; }
        out[o++] = *in++;
    }
    out[o] = 0;
    if (!strncmp(out, "net.", 4)) memmove(out, out + 4, strlen(out + 4) + 1);
}

/* Musubi module "blocks_0_self_attn_q" -> the Linear whose path, with '.' read as '_', matches. */
static const char *musubi_module(lyra_dit *m, const char *mus, size_t len) {
    for (int i = 0; i < m->n_params; i++) {
        const lyra_dit_param *p = &m->params[i];
        if (!p->linear) continue;
        size_t n = strlen(p->name) - strlen(".weight");
        if (n != len) continue;
        size_t j = 0;
        for (; j < n; j++) {
            char c = p->name[j] == '.' ? '_' : p->name[j];
            if (c != mus[j]) break;
        }
        if (j == n) return p->name;
    }
    return NULL;
}


/* Element i of a host float tensor of any float dtype (possibly unaligned). */
static float load_at(const lyra_tensor *t, int64_t i) {
    const unsigned char *s = t->data;
    if (t->dtype == LYRA_DTYPE_F32) {
        float v;
        memcpy(&v, s + 4 * i, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, s + 2 * i, 2);
    return t->dtype == LYRA_DTYPE_BF16 ? lyra_bf16_to_f32(h) : lyra_f16_to_f32(h);
}

/* Upstream's test for dropping a .diff / .diff_b tensor (MU:84-100). */
static int negligible(const lyra_tensor *t) {
    int64_t n = lyra_tensor_numel(t);
    float lo = INFINITY, hi = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float v = fabsf(load_at(t, i));
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    return n == 0 || hi == 0.0f || hi - lo < 1.6e-2f;
}

/* dst[i] = scale · src[i]. */
static void load_scaled(float *dst, const lyra_tensor *src, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) dst[i] = scale == 1.0f ? load_at(src, i) : load_at(src, i) * scale;
}

static lyra_status check_float(const lyra_dit_named *k) {
    lyra_dtype d = k->t.dtype;
    if (d != LYRA_DTYPE_F32 && d != LYRA_DTYPE_BF16 && d != LYRA_DTYPE_F16)
        return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': dtype %s, expected f32, bf16 or f16", k->name,
                          lyra_dtype_name(d));
    return LYRA_OK;
}

/* Groups the keys by module and resolves each module to a Linear of the model. */
static lyra_status group(lyra_dit *m, const lyra_dit_named *src, int n, module_keys *mods, int *n_mods) {
    int musubi = 0;
    for (int i = 0; i < n; i++) musubi |= !strncmp(src[i].name, "lora_unet_", 10);
    *n_mods = 0;
    for (int i = 0; i < n; i++) {
        char key[256];
        if (musubi) {
            if (strncmp(src[i].name, "lora_unet_", 10))
                return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': a musubi file (lora_unet_*) must use that prefix for "
                                  "every key", src[i].name);
            snprintf(key, sizeof key, "%s", src[i].name + 10);
        } else {
            normalise(key, sizeof key, src[i].name);
        }
        size_t kl = strlen(key);
        int kind = -1;
        size_t ml = 0;
        for (size_t s = 0; s < sizeof SUFFIX / sizeof SUFFIX[0]; s++) {
            size_t sl = strlen(SUFFIX[s]);
            if (kl > sl && !strcmp(key + kl - sl, SUFFIX[s])) {
                kind = SUFFIX_KIND[s];
                ml = kl - sl;
                break;
            }
        }
        if (kind < 0)
            return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': expected <module>.lora_A.weight / .lora_B.weight / "
                              ".lora_down.weight / .lora_up.weight / .alpha / .diff_b / .diff", src[i].name);
        char module[96];
        if (musubi) {
            const char *path = musubi_module(m, key, ml);
            if (!path)
                return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': no Linear of the DiT is called '%.*s'", src[i].name,
                                  (int)ml, key);
            snprintf(module, sizeof module, "%.*s", (int)(strlen(path) - strlen(".weight")), path);
        } else {
            if (ml >= sizeof module)
                return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': module name too long", src[i].name);
            memcpy(module, key, ml);
            module[ml] = 0;
        }
        int j = 0;
        while (j < *n_mods && strcmp(mods[j].module, module)) j++;
        if (j == *n_mods) {
            memset(&mods[j], 0, sizeof mods[j]);
            snprintf(mods[j].module, sizeof mods[j].module, "%s", module);
            (*n_mods)++;
        }
        if (mods[j].key[kind])
            return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': module '%s' already has a %s tensor ('%s')", src[i].name,
                              module, kind == K_A ? "down (A)" : kind == K_B ? "up (B)" : "matching",
                              mods[j].key[kind]->name);
        LYRA_TRY(check_float(&src[i]));
        mods[j].key[kind] = &src[i];
    }
    return LYRA_OK;
}

/* Checks one module's tensors against its Linear; fills mod->lin. */
static lyra_status validate(lyra_dit *m, module_keys *mod, int *n_ignored) {
    const lyra_dit_named *A = mod->key[K_A], *B = mod->key[K_B], *al = mod->key[K_ALPHA], *db = mod->key[K_DIFF_B];
    if (mod->key[K_DIFF]) (*n_ignored)++;
    if (!A && !B) {
        if (al) return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': alpha without lora_A/lora_B weights", al->name);
        if (db) (*n_ignored)++;
        return LYRA_OK;
    }
    if (!A || !B)
        return lyra_error(LYRA_ERR_FORMAT, "LoRA module '%s': has %s but no %s", mod->module, A ? "a down (A) weight" :
                          "an up (B) weight", A ? "up (B) weight" : "down (A) weight");
    const lyra_dit_param *p;
    mod->lin = dit_find_linear(m, mod->module, &p);
    if (!mod->lin)
        return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': the DiT has no Linear '%s'", A->name, mod->module);
    int64_t out = mod->lin->w.ne[0], in = mod->lin->w.ne[1];
    if (A->t.ndim != 2 || A->t.ne[1] != in || A->t.ne[0] < 1)
        return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': expected shape (rank, %lld) for %s (%lld, %lld)", A->name,
                          (long long)in, p->name, (long long)out, (long long)in);
    int64_t r = A->t.ne[0];
    if (B->t.ndim != 2 || B->t.ne[0] != out || B->t.ne[1] != r)
        return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': expected shape (%lld, %lld) to match %s and rank %lld",
                          B->name, (long long)out, (long long)r, p->name, (long long)r);
    if (al && lyra_tensor_numel(&al->t) != 1)
        return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': alpha must be a single number", al->name);
    if (db) {
        if (db->t.ndim != 1 || db->t.ne[0] != out)
            return lyra_error(LYRA_ERR_FORMAT, "LoRA key '%s': expected shape (%lld,)", db->name, (long long)out);
        mod->keep_bias = !negligible(&db->t);
        if (!mod->keep_bias) (*n_ignored)++;
    }
    return LYRA_OK;
}

lyra_status lyra_dit_lora_add(lyra_dit *m, const lyra_dit_named *src, int n, const char *name, float weight,
                              int *n_ignored) {
    *n_ignored = 0;
    if (m->n_adapters == LYRA_DIT_MAX_ADAPTERS)
        return lyra_error(LYRA_ERR_ARG, "LoRA '%s': at most %d adapters can be active", name, LYRA_DIT_MAX_ADAPTERS);
    if (!isfinite(weight)) return lyra_error(LYRA_ERR_ARG, "LoRA '%s': weight must be finite", name);
    if (m->fp8)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "LoRA '%s': the model's blocks are fp8 already; add and merge "
                          "adapters before quantize_fp8()", name);
    if (n < 1) return lyra_error(LYRA_ERR_FORMAT, "LoRA '%s': no tensors", name);
    module_keys *mods = calloc((size_t)n, sizeof *mods);
    if (!mods) return lyra_error(LYRA_ERR_OOM, "LoRA: out of memory");
    lyra_status st = LYRA_OK;
    int n_mods = 0, n_used = 0, rank = 0;
    size_t bytes = 0;
    void *mem = NULL;
#define T(call) do { if ((st = (call)) != LYRA_OK) goto done; } while (0)
    T(group(m, src, n, mods, &n_mods));
    for (int j = 0; j < n_mods; j++) T(validate(m, &mods[j], n_ignored));
    for (int j = 0; j < n_mods; j++) n_used += mods[j].lin != NULL;
    if (!n_used) T(lyra_error(LYRA_ERR_FORMAT, "LoRA '%s': no lora_A/lora_B (lora_down/lora_up) weights", name));

    int slot = m->n_adapters;
    for (int pass = 0; pass < 2; pass++) {
        lyra_carver cv;
        lyra_carver_init(&cv, mem, bytes, LYRA_DEVICE_CPU);
        for (int j = 0; j < n_mods; j++) {
            module_keys *mod = &mods[j];
            if (!mod->lin) continue;
            const lyra_tensor *A = &mod->key[K_A]->t, *B = &mod->key[K_B]->t;
            int64_t r = A->ne[0], out = B->ne[0], in = A->ne[1];
            lyra_dit_lora_term t;
            memset(&t, 0, sizeof t);
            T(lyra_carve(&cv, &t.a, mod->key[K_A]->name, LYRA_DTYPE_F32, 2, A->ne));
            T(lyra_carve(&cv, &t.b, mod->key[K_B]->name, LYRA_DTYPE_F32, 2, B->ne));
            if (mod->keep_bias) T(lyra_carve(&cv, &t.bias, mod->key[K_DIFF_B]->name, LYRA_DTYPE_F32, 1, &out));
            if (!pass) continue;
            /* alpha/r split between A and B as upstream does, keeping the factors balanced (MU:73-82). */
            double down = 1.0, up = 1.0;
            if (mod->key[K_ALPHA]) {
                down = (double)load_at(&mod->key[K_ALPHA]->t, 0) / (double)r;
                while (down * 2.0 < up) {
                    down *= 2.0;
                    up /= 2.0;
                }
            }
            load_scaled(t.a.data, A, r * in, (float)down);
            load_scaled(t.b.data, B, out * r, (float)up);
            if (mod->keep_bias) load_scaled(t.bias.data, &mod->key[K_DIFF_B]->t, out, 1.0f);
            mod->lin->lora[slot] = t;
            if (r > rank) rank = (int)r;
        }
        if (!pass) {
            bytes = (cv.used + LYRA_CARVE_ALIGN - 1) / LYRA_CARVE_ALIGN * LYRA_CARVE_ALIGN;
            mem = aligned_alloc(LYRA_CARVE_ALIGN, bytes);
            if (!mem) T(lyra_error(LYRA_ERR_OOM, "LoRA '%s': cannot allocate %zu bytes", name, bytes));
        }
    }
    lyra_dit_adapter *ad = &m->adapters[slot];
    memset(ad, 0, sizeof *ad);
    snprintf(ad->name, sizeof ad->name, "%s", name);
    ad->weight = weight;
    ad->rank = rank;
    ad->n_modules = n_used;
    ad->mem = mem;
    ad->bytes = bytes;
    mem = NULL;
    m->n_adapters++;
    T(dit_adapter_place(m, slot)); /* on a device model: upload it (a failure drops it again) */
#undef T
done:
    if (st != LYRA_OK && mem) {
        /* Terms written in pass 2 point into mem: clear them before freeing. */
        for (int j = 0; j < n_mods; j++)
            if (mods[j].lin) memset(&mods[j].lin->lora[m->n_adapters], 0, sizeof(lyra_dit_lora_term));
    }
    free(mem);
    free(mods);
    return st;
}

/* ---------------- merge ---------------- */

static lyra_status merge_linear(lyra_dit *m, lyra_arena *ar, lyra_dit_linear *lin) {
    lyra_backend *be = &m->be;
    int any = 0, bias = 0;
    for (int a = 0; a < m->n_adapters; a++) {
        if (m->adapters[a].weight == 0.0f) continue; /* adds nothing: the weight stays as it is */
        any |= lin->lora[a].a.data != NULL;
        bias |= lin->lora[a].bias.data != NULL;
    }
    if (!any) return LYRA_OK;
    LYRA_ASSERT(!bias || lin->b.data); /* checked by lyra_dit_lora_merge before any weight changes */
    /* W + Σ w_a·B_a·A_a accumulated in f32 and rounded once to W's dtype (the placement dtype), so a bf16 weight
     * takes one rounding for all adapters together */
    int64_t out = lin->w.ne[0], in = lin->w.ne[1];
    lyra_tensor wf, delta, db;
    int own = lin->w.dtype != LYRA_DTYPE_F32;
    if (own) {
        LYRA_TRY(lyra_arena_tensor(ar, &wf, LYRA_DTYPE_F32, 2, (int64_t[]){out, in}, "merge weight"));
        LYRA_TRY(lyra_op_copy(be, &wf, &lin->w));
    } else {
        wf = lin->w;
    }
    LYRA_TRY(lyra_arena_tensor(ar, &delta, LYRA_DTYPE_F32, 2, (int64_t[]){out, in}, "merge delta"));
    LYRA_TRY(lyra_arena_tensor(ar, &db, LYRA_DTYPE_F32, 1, &out, "merge bias"));
    for (int a = 0; a < m->n_adapters; a++) {
        const lyra_dit_lora_term *t = &lin->lora[a];
        float wa = m->adapters[a].weight;
        if (!t->a.data || wa == 0.0f) continue;
        LYRA_TRY(lyra_op_matmul(be, &delta, &t->b, &t->a, 0, wa));
        LYRA_TRY(lyra_op_add(be, &wf, &wf, &delta));
        if (t->bias.data) {
            LYRA_TRY(lyra_op_scale(be, &db, &t->bias, wa, 0.0f));
            LYRA_TRY(lyra_op_add(be, &lin->b, &lin->b, &db));
        }
    }
    if (own) LYRA_TRY(lyra_op_copy(be, &lin->w, &wf));
    return LYRA_OK;
}

lyra_status lyra_dit_lora_merge(lyra_dit *m) {
    if (!m->n_adapters) return LYRA_OK;
    if (m->lora_fold)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "LoRA merge: the adapters are folded at placement already "
                          "(lyra_dit_lora_fold_at_placement)");
    /* Check everything before touching a weight, so a refused merge leaves the model unchanged. */
    LYRA_TRY(dit_lora_check_foldable(m, "LoRA merge"));
    LYRA_TRY(lyra_dit_random_materialize(m)); /* deferred random weights: merging reads the host copy */
    size_t need = 0;
    for (int i = 0; i < m->n_params; i++) {
        lyra_dit_linear *lin = m->params[i].linear;
        if (!lin || m->params[i].dst != &lin->w) continue;
        size_t bytes = (size_t)lyra_tensor_numel(&lin->w) * 8 + (size_t)lin->w.ne[0] * 4 + 3 * LYRA_ARENA_ALIGN;
        if (bytes > need) need = bytes;
    }
    lyra_arena ar;
    memset(&ar, 0, sizeof ar);
    LYRA_TRY(lyra_backend_arena_reserve(&m->be, &ar, need, "LoRA merge")); /* where the weights are */
    lyra_status st = LYRA_OK;
    for (int i = 0; i < m->n_params && st == LYRA_OK; i++) {
        lyra_dit_linear *lin = m->params[i].linear;
        if (!lin || m->params[i].dst != &lin->w) continue;
        lyra_arena_reset(&ar, 0);
        st = merge_linear(m, &ar, lin);
    }
    lyra_backend_arena_free(&m->be, &ar);
    if (st != LYRA_OK) return st;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].linear) memset(m->params[i].linear->lora, 0, sizeof m->params[i].linear->lora);
    for (int a = 0; a < m->n_adapters; a++) dit_adapter_free(m, a);
    memset(m->adapters, 0, sizeof m->adapters);
    m->n_adapters = 0;
    return LYRA_OK;
}
