/* The Wan VAE layer list (upstream TOK:306-401, TOK:404-546) and its weights: binding the upstream names, carving one
 * f32 block. Configuration is read from two shapes (dim, z_dim); everything else is the fixed Wan 2.1 layout,
 * and a checkpoint that differs shows up as a missing, extra or mis-shaped tensor. */
#include <stdio.h>
#include <stdlib.h>

#include "models/vae_internal.h"

static vae_layer *add_layer(vae_layer *list, int *n, vae_kind kind, int cin, int cout, int *slot,
                            const char *fmt, int idx) {
    vae_layer *L = &list[(*n)++];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->cin = cin;
    L->cout = cout;
    snprintf(L->name, sizeof L->name, fmt, idx);
    /* Causal slots in upstream feat_idx order: one per 3×3×3 conv and per resample time conv (upstream TOK:605-630,
     * M:1007-1046, TOK:623-630). */
    int ns = kind == VAE_RES ? 2 : (kind == VAE_CONV || kind == VAE_HEAD || kind == VAE_DOWN3D || kind == VAE_UP3D);
    L->slot = ns ? *slot : -1;
    L->nslots = ns;
    *slot += ns;
    return L;
}

void vae_build_layers(lyra_vae *vae, int d, int z) {
    static const int mult[4] = {1, 2, 4, 4};
    static const int tdown[3] = {0, 1, 1}; /* temperal_downsample [False, True, True] */
    int slot = 0, n = 0, k = 0;
    vae->dim = d;
    vae->z_dim = z;

    /* Encoder (Encoder3d): stem, 4 stages of 2 residual blocks with a resample between stages, middle, head. */
    add_layer(vae->enc, &n, VAE_CONV, 3, d, &slot, "encoder.conv1", 0);
    int cin = d;
    for (int i = 0; i < 4; i++) {
        int cout = d * mult[i];
        for (int r = 0; r < 2; r++, cin = cout)
            add_layer(vae->enc, &n, VAE_RES, cin, cout, &slot, "encoder.downsamples.%d", k++);
        if (i < 3)
            add_layer(vae->enc, &n, tdown[i] ? VAE_DOWN3D : VAE_DOWN2D, cout, cout, &slot, "encoder.downsamples.%d",
                      k++);
    }
    add_layer(vae->enc, &n, VAE_RES, cin, cin, &slot, "encoder.middle.%d", 0);
    add_layer(vae->enc, &n, VAE_ATTN, cin, cin, &slot, "encoder.middle.%d", 1);
    add_layer(vae->enc, &n, VAE_RES, cin, cin, &slot, "encoder.middle.%d", 2);
    add_layer(vae->enc, &n, VAE_HEAD, cin, 2 * z, &slot, "encoder.head", 0);
    /* Top-level conv1 (2z -> 2z); only the mu rows [0, z) are computed, log-variance is discarded (upstream
     * TOK:306-401). */
    add_layer(vae->enc, &n, VAE_POINTWISE, 2 * z, z, &slot, "conv1", 0);
    vae->n_enc = n;
    vae->enc_slots = slot;

    /* Decoder (Decoder3d): conv2 (top level), stem, middle, 4 stages of 3 residual blocks with a resample
     * between stages (time upsampling [True, True, False]), head. After an upsample the next stage's input
     * is half the upsample's input width (the Conv2d halves channels). */
    slot = n = k = 0;
    add_layer(vae->dec, &n, VAE_POINTWISE, z, z, &slot, "conv2", 0);
    int top = d * mult[3];
    add_layer(vae->dec, &n, VAE_CONV, z, top, &slot, "decoder.conv1", 0);
    add_layer(vae->dec, &n, VAE_RES, top, top, &slot, "decoder.middle.%d", 0);
    add_layer(vae->dec, &n, VAE_ATTN, top, top, &slot, "decoder.middle.%d", 1);
    add_layer(vae->dec, &n, VAE_RES, top, top, &slot, "decoder.middle.%d", 2);
    static const int dmult[4] = {4, 4, 2, 1}; /* dim_mult reversed */
    static const int tup[3] = {1, 1, 0};
    cin = top;
    for (int i = 0; i < 4; i++) {
        int cout = d * dmult[i];
        if (i > 0) cin /= 2;
        for (int r = 0; r < 3; r++, cin = cout)
            add_layer(vae->dec, &n, VAE_RES, cin, cout, &slot, "decoder.upsamples.%d", k++);
        if (i < 3)
            add_layer(vae->dec, &n, tup[i] ? VAE_UP3D : VAE_UP2D, cout, cout / 2, &slot, "decoder.upsamples.%d", k++);
    }
    add_layer(vae->dec, &n, VAE_HEAD, cin, 3, &slot, "decoder.head", 0);
    vae->n_dec = n;
    vae->dec_slots = slot;
}

/* One checkpoint tensor: its key, the layer role it fills, the upstream shape and the shape it is used with. */
typedef struct wentry {
    char key[72];
    lyra_tensor *dst;
    int ndim, use_ndim;
    int64_t ne[LYRA_MAX_DIMS], use_ne[LYRA_MAX_DIMS];
} wentry;

#define MAX_ENTRIES 256

static void entry(wentry *e, int *n, lyra_tensor *dst, const char *prefix, const char *suffix, int ndim,
                  const int64_t *ne, int use_ndim, const int64_t *use_ne) {
    wentry *w = &e[(*n)++];
    snprintf(w->key, sizeof w->key, "%s%s", prefix, suffix);
    w->dst = dst;
    w->ndim = ndim;
    w->use_ndim = use_ndim;
    memcpy(w->ne, ne, sizeof(int64_t) * (size_t)ndim);
    memcpy(w->use_ne, use_ne, sizeof(int64_t) * (size_t)use_ndim);
}
#define E(dst, suf, nd, ...) entry(e, &n, dst, L->name, suf, nd, (int64_t[]){__VA_ARGS__}, nd, (int64_t[]){__VA_ARGS__})
#define EU(dst, suf, nd, ne_, und, ...) entry(e, &n, dst, L->name, suf, nd, (int64_t[])ne_, und, (int64_t[]){__VA_ARGS__})
#define SHAPE(...) {__VA_ARGS__}

static int layer_entries(vae_layer *L, wentry *e, int n) {
    int64_t ci = L->cin, co = L->cout;
    switch (L->kind) {
    case VAE_CONV:
        E(&L->w[VW_W], ".weight", 5, co, ci, 3, 3, 3);
        E(&L->w[VW_B], ".bias", 1, co);
        break;
    case VAE_POINTWISE: /* conv1 keeps all 2z rows; the forward uses rows [0, cout) */
        E(&L->w[VW_W], ".weight", 5, ci, ci, 1, 1, 1);
        E(&L->w[VW_B], ".bias", 1, ci);
        break;
    case VAE_RES:
        EU(&L->w[VW_G0], ".residual.0.gamma", 4, SHAPE(ci, 1, 1, 1), 1, ci);
        E(&L->w[VW_W2], ".residual.2.weight", 5, co, ci, 3, 3, 3);
        E(&L->w[VW_B2], ".residual.2.bias", 1, co);
        EU(&L->w[VW_G3], ".residual.3.gamma", 4, SHAPE(co, 1, 1, 1), 1, co);
        E(&L->w[VW_W6], ".residual.6.weight", 5, co, co, 3, 3, 3);
        E(&L->w[VW_B6], ".residual.6.bias", 1, co);
        if (ci != co) {
            E(&L->w[VW_SCW], ".shortcut.weight", 5, co, ci, 1, 1, 1);
            E(&L->w[VW_SCB], ".shortcut.bias", 1, co);
        }
        break;
    case VAE_ATTN:
        EU(&L->w[VW_G0], ".norm.gamma", 3, SHAPE(ci, 1, 1), 1, ci);
        EU(&L->w[VW_QKV], ".to_qkv.weight", 4, SHAPE(3 * ci, ci, 1, 1), 2, 3 * ci, ci);
        E(&L->w[VW_QKVB], ".to_qkv.bias", 1, 3 * ci);
        EU(&L->w[VW_PROJ], ".proj.weight", 4, SHAPE(ci, ci, 1, 1), 2, ci, ci);
        E(&L->w[VW_PROJB], ".proj.bias", 1, ci);
        break;
    case VAE_DOWN2D: case VAE_DOWN3D: case VAE_UP2D: case VAE_UP3D:
        EU(&L->w[VW_W], ".resample.1.weight", 4, SHAPE(co, ci, 3, 3), 5, co, ci, 1, 3, 3);
        E(&L->w[VW_B], ".resample.1.bias", 1, co);
        if (L->kind == VAE_DOWN3D || L->kind == VAE_UP3D) {
            int64_t tc = L->kind == VAE_UP3D ? 2 * ci : ci; /* upsample: C -> 2C, interleaved in time */
            E(&L->w[VW_TW], ".time_conv.weight", 5, tc, ci, 3, 1, 1);
            E(&L->w[VW_TB], ".time_conv.bias", 1, tc);
        }
        break;
    case VAE_HEAD:
        EU(&L->w[VW_G0], ".0.gamma", 4, SHAPE(ci, 1, 1, 1), 1, ci);
        E(&L->w[VW_HW], ".2.weight", 5, co, ci, 3, 3, 3);
        E(&L->w[VW_HB], ".2.bias", 1, co);
        break;
    default:
        break;
    }
    return n;
}

static int all_entries(lyra_vae *vae, wentry *e) {
    int n = 0;
    for (int i = 0; i < vae->n_enc; i++) n = layer_entries(&vae->enc[i], e, n);
    for (int i = 0; i < vae->n_dec; i++) n = layer_entries(&vae->dec[i], e, n);
    return n;
}

/* Two carving passes over the entries (measure, then fill); base NULL keeps descriptors without data. */
static lyra_status carve_all(lyra_vae *vae, wentry *e, int n, void *base, size_t cap, size_t *used) {
    lyra_carver cv;
    lyra_carver_init(&cv, base, cap, LYRA_DEVICE_CPU);
    for (int i = 0; i < n; i++) LYRA_TRY(lyra_carve(&cv, e[i].dst, NULL, vae->act, e[i].use_ndim, e[i].use_ne));
    *used = cv.used;
    return LYRA_OK;
}

static lyra_status dim_from(lyra_tensor_lookup_fn lookup, void *source, const char *key, int ndim, int *out) {
    const lyra_tensor *t = lookup(source, key);
    if (!t) return lyra_error(LYRA_ERR_FORMAT, "vae weights: tensor '%s' is missing (needed to detect the width)", key);
    if (t->ndim != ndim || t->ne[0] < 1 || t->ne[0] > 4096)
        return lyra_error(LYRA_ERR_FORMAT, "vae weights: tensor '%s' must be %d-d with 1..4096 output channels", key,
                          ndim);
    *out = (int)t->ne[0];
    return LYRA_OK;
}

static lyra_vae *vae_alloc(void) {
    lyra_vae *vae = calloc(1, sizeof *vae);
    if (!vae) lyra_error(LYRA_ERR_OOM, "vae: out of host memory");
    return vae;
}

static lyra_status check_precision(lyra_dtype act) {
    if (act != LYRA_DTYPE_F32 && act != LYRA_DTYPE_BF16)
        return lyra_error(LYRA_ERR_ARG, "vae: precision %s is not allowed; expected f32 or bf16", lyra_dtype_name(act));
    return LYRA_OK;
}

lyra_status lyra_vae_shapes(lyra_vae **out, int dim, int z_dim, lyra_dtype act) {
    *out = NULL;
    if (dim < 1 || dim > 4096 || z_dim < 1 || z_dim > 4096)
        return lyra_error(LYRA_ERR_ARG, "vae: dim and z_dim must be in 1..4096, got %d and %d", dim, z_dim);
    LYRA_TRY(check_precision(act));
    lyra_vae *vae = vae_alloc();
    if (!vae) return LYRA_ERR_OOM;
    vae->act = act;
    vae_build_layers(vae, dim, z_dim);
    wentry *e = malloc(sizeof(wentry) * MAX_ENTRIES);
    if (!e) { free(vae); return lyra_error(LYRA_ERR_OOM, "vae: out of host memory"); }
    size_t used;
    lyra_status st = carve_all(vae, e, all_entries(vae, e), NULL, 0, &used);
    free(e);
    if (st != LYRA_OK) { free(vae); return st; }
    *out = vae;
    return LYRA_OK;
}

lyra_status lyra_vae_load(lyra_vae **out, lyra_tensor_lookup_fn lookup, void *source, const char *const *names,
                          int n_names) {
    *out = NULL;
    int dim = 0, z = 0;
    LYRA_TRY(dim_from(lookup, source, "encoder.conv1.weight", 5, &dim));
    LYRA_TRY(dim_from(lookup, source, "conv2.weight", 5, &z));
    lyra_vae *vae = vae_alloc();
    wentry *e = malloc(sizeof(wentry) * MAX_ENTRIES);
    lyra_weight_slot *slots = malloc(sizeof(lyra_weight_slot) * MAX_ENTRIES);
    lyra_tensor *src = malloc(sizeof(lyra_tensor) * MAX_ENTRIES);
    float *tmp = NULL;
    lyra_status st = LYRA_OK;
    if (!vae || !e || !slots || !src) { st = lyra_error(LYRA_ERR_OOM, "vae: out of host memory"); goto done; }
    vae_build_layers(vae, dim, z);
    int n = all_entries(vae, e);

    /* Presence and upstream shapes (the runtime's binder names the first offender). */
    for (int i = 0; i < n; i++) {
        memset(&slots[i], 0, sizeof slots[i]);
        slots[i].name = e[i].key;
        slots[i].dst = &src[i];
        slots[i].ndim = e[i].ndim;
        memcpy(slots[i].ne, e[i].ne, sizeof e[i].ne);
    }
    st = lyra_weights_bind(slots, n, lookup, source);
    if (st != LYRA_OK) goto done;
    for (int i = 0; i < n; i++) {
        lyra_dtype dt = src[i].dtype;
        if (dt != LYRA_DTYPE_F32 && dt != LYRA_DTYPE_BF16 && dt != LYRA_DTYPE_F16) {
            st = lyra_error(LYRA_ERR_FORMAT, "vae weights: tensor '%s' has dtype %s, expected f32, bf16 or f16",
                            e[i].key, lyra_dtype_name(dt));
            goto done;
        }
        if (!lyra_tensor_is_contiguous(&src[i])) {
            st = lyra_error(LYRA_ERR_FORMAT, "vae weights: tensor '%s' must be contiguous", e[i].key);
            goto done;
        }
    }
    /* Nothing unexpected: a different architecture must not load silently with some tensors ignored. */
    for (int j = 0; j < n_names; j++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++) found = !strcmp(names[j], e[i].key);
        if (!found) {
            st = lyra_error(LYRA_ERR_FORMAT,
                            "vae weights: unexpected tensor '%s' (not part of the Wan 2.1 VAE with dim %d, z_dim %d)",
                            names[j], dim, z);
            goto done;
        }
    }

    size_t bytes;
    st = lyra_backend_cpu_init(&vae->be, 0);
    if (st != LYRA_OK) goto done;
    st = carve_all(vae, e, n, NULL, 0, &bytes);
    if (st != LYRA_OK) goto done;
    vae->block = vae->be.ops->alloc(&vae->be, bytes);
    if (!vae->block) { st = LYRA_ERR_OOM; goto done; }
    st = carve_all(vae, e, n, vae->block, bytes, &bytes);
    if (st != LYRA_OK) goto done;
    size_t tmp_n = 0;
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)lyra_tensor_numel(&src[i]);
        if (k > tmp_n) tmp_n = k;
    }
    tmp = malloc(tmp_n * sizeof(float) + 16);
    if (!tmp) { st = lyra_error(LYRA_ERR_OOM, "vae: out of host memory"); goto done; }
    for (int i = 0; i < n; i++) {
        /* Convert on the host, then hand the f32 values to the backend in the carved (use) shape. */
        lyra_tensor *dst = e[i].dst;
        lyra_convert_to_f32(tmp, src[i].data, src[i].dtype, lyra_tensor_numel(&src[i]));
        lyra_tensor host = lyra_tensor_make(tmp, LYRA_DTYPE_F32, dst->ndim, dst->ne);
        st = lyra_op_upload(&vae->be, dst, &host);
        if (st != LYRA_OK) goto done;
        dst->name = NULL;
    }
done:
    free(tmp);
    free(e);
    free(slots);
    free(src);
    if (st != LYRA_OK) {
        lyra_vae_free(vae);
        return st;
    }
    *out = vae;
    return LYRA_OK;
}

lyra_status lyra_vae_place(lyra_vae *vae, lyra_device device, lyra_dtype precision) {
    LYRA_TRY(check_precision(precision));
    if (device == LYRA_DEVICE_CPU) {
        if (precision != LYRA_DTYPE_F32)
            return lyra_error(LYRA_ERR_UNSUPPORTED, "vae: %s activations need a device (the CPU backend computes f32)",
                              lyra_dtype_name(precision));
        return LYRA_OK;
    }
    if (vae->be.device == device) return LYRA_OK;
    if (!vae->block) return lyra_error(LYRA_ERR_ARG, "vae: a shapes-only model has no weights to place");
    lyra_tensor *ts[2 * LYRA_VAE_MAX_LAYERS * VAE_W_MAX];
    lyra_dtype dt[2 * LYRA_VAE_MAX_LAYERS * VAE_W_MAX];
    int k = 0;
    for (int d = 0; d < 2; d++) {
        vae_layer *layers = d ? vae->dec : vae->enc;
        int n = d ? vae->n_dec : vae->n_enc;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < VAE_W_MAX; j++) {
                lyra_tensor *t = &layers[i].w[j];
                if (!t->data) continue;
                dt[k] = precision; /* every parameter, gammas and biases included: upstream TOK:864 */
                ts[k++] = t;
            }
    }
    lyra_backend dev;
    LYRA_TRY(lyra_backend_init(&dev, device, 0));
    /* The host block came from the CPU backend's aligned_alloc, which place_weights may free(). */
    lyra_status st = lyra_backend_place_weights_as(&dev, &vae->block, ts, dt, k, "Wan VAE weights");
    if (st != LYRA_OK) {
        lyra_backend_free(&dev);
        return st;
    }
    vae->act = precision;
    lyra_backend_free(&vae->be);
    vae->be = dev;
    return LYRA_OK;
}

void lyra_vae_free(lyra_vae *vae) {
    if (!vae) return;
    if (vae->block) vae->be.ops->release(&vae->be, vae->block);
    if (vae->be.ops) lyra_backend_free(&vae->be);
    free(vae);
}

int lyra_vae_dim(const lyra_vae *vae) { return vae->dim; }
int lyra_vae_z_dim(const lyra_vae *vae) { return vae->z_dim; }
lyra_dtype lyra_vae_precision(const lyra_vae *vae) { return vae->act; }
