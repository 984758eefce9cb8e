/* Loading the generate-mode networks from a converted folder; text and image encoding for the driver. */
#include "pipeline/ar_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "models/text_clean.h"
#include "models/text_weights.h"
#include "nn/ops.h"

/* ---- a safetensors file as a named lyra_tensor table ---- */

typedef struct st_table {
    lyra_st_file *file;
    lyra_tensor *t;        /* one descriptor per file tensor, header order */
    const char **names;
    lyra_dit_named *named; /* the same, for the DiT loader */
    int n;
} st_table;

static void st_table_free(st_table *s) {
    free(s->t);
    free(s->names);
    free(s->named);
    if (s->file) lyra_st_close(s->file);
    memset(s, 0, sizeof *s);
}

static lyra_status st_table_open(st_table *s, const char *path, const char *what) {
    memset(s, 0, sizeof *s);
    LYRA_TRY(lyra_st_open(path, &s->file));
    const int n = (int)s->file->n_tensors;
    s->t = calloc((size_t)n + 1, sizeof *s->t);
    s->names = calloc((size_t)n + 1, sizeof *s->names);
    s->named = calloc((size_t)n + 1, sizeof *s->named);
    if (!s->t || !s->names || !s->named) {
        st_table_free(s);
        return lyra_error(LYRA_ERR_OOM, "%s: out of memory for the tensor table of %s", what, path);
    }
    for (int i = 0; i < n; i++) {
        const lyra_st_tensor *ft = &s->file->tensors[i];
        lyra_dtype dt = LYRA_DTYPE_COUNT;
        switch (ft->dtype) {
        case LYRA_ST_F32: dt = LYRA_DTYPE_F32; break;
        case LYRA_ST_BF16: dt = LYRA_DTYPE_BF16; break;
        case LYRA_ST_F16: dt = LYRA_DTYPE_F16; break;
        default: break;
        }
        if (dt == LYRA_DTYPE_COUNT || ft->ndim > LYRA_MAX_DIMS) {
            lyra_status st = lyra_error(LYRA_ERR_FORMAT, "%s: tensor '%s' in %s has dtype %s and %d dims; expected "
                                        "F32, BF16 or F16 with at most %d dims", what, ft->name, path,
                                        lyra_st_dtype_name(ft->dtype), ft->ndim, LYRA_MAX_DIMS);
            st_table_free(s);
            return st;
        }
        s->t[i] = lyra_tensor_make((void *)ft->data, dt, ft->ndim, ft->shape);
        s->t[i].name = ft->name;
        s->names[i] = ft->name;
        s->named[i].name = ft->name;
        s->named[i].t = s->t[i];
    }
    s->n = n;
    return LYRA_OK;
}

static const lyra_tensor *st_lookup(void *src, const char *name) {
    st_table *s = src;
    const lyra_st_tensor *ft = lyra_st_find(s->file, name);
    return ft ? &s->t[ft - s->file->tensors] : NULL;
}

/* ---- loading ---- */

lyra_status lyra_ar_umt5_load(lyra_umt5 *u, const char *path) {
    st_table s;
    LYRA_TRY(st_table_open(&s, path, "umT5"));
    lyra_text_wsource src = {st_lookup, &s, s.n, s.names, NULL};
    lyra_status st = lyra_umt5_load(u, &src);
    st_table_free(&s);
    return st;
}

/* ---- random umT5 weights: the models' copy of the spec ---- */

static void random_spec_free(lyra_ar_random_spec *s) {
    for (int i = 0; i < s->n && s->names; i++) free(s->names[i]);
    free(s->names);
    free(s->t);
    memset(s, 0, sizeof *s);
}

static lyra_status random_spec_copy(lyra_ar_random_spec *s, const lyra_dit_named *src, int n, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->names = calloc((size_t)n + 1, sizeof *s->names);
    s->t = calloc((size_t)n + 1, sizeof *s->t);
    if (!s->names || !s->t) {
        random_spec_free(s);
        return lyra_error(LYRA_ERR_OOM, "umT5: out of memory for the random weights' table");
    }
    s->n = n;
    s->seed = seed;
    for (int i = 0; i < n; i++) {
        if (!(s->names[i] = strdup(src[i].name))) {
            random_spec_free(s);
            return lyra_error(LYRA_ERR_OOM, "umT5: out of memory for the random weights' table");
        }
        s->t[i] = src[i].t;
        s->t[i].data = NULL;
        s->t[i].name = s->names[i];
    }
    return LYRA_OK;
}

static const lyra_tensor *random_lookup(void *ctx, const char *name) {
    const lyra_ar_random_spec *s = ctx;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) return &s->t[i];
    return NULL;
}

lyra_status lyra_ar_umt5_load_models(const lyra_ar_models *m, lyra_umt5 *u, int defer) {
    if (!m->umt5_random.n) {
        if (!m->umt5_path) return lyra_error(LYRA_ERR_INTERNAL, "umT5: the models have no umT5 file to load");
        return lyra_ar_umt5_load(u, m->umt5_path);
    }
    lyra_text_random r = {defer, m->umt5_random.seed, 0};
    lyra_text_wsource src = {random_lookup, (void *)&m->umt5_random, m->umt5_random.n,
                             (const char *const *)m->umt5_random.names, &r};
    return lyra_umt5_load(u, &src);
}

#define LOADED_DIT 1
#define LOADED_BACKEND 2
#define LOADED_PLACED 4 /* the encoders, their arena and the negative embedding live on the DiT's device backend */

lyra_backend *lyra_ar_backend(lyra_ar_models *m) { return (m->loaded & LOADED_PLACED) ? &m->dit.be : &m->be; }

void lyra_ar_models_free(lyra_ar_models *m) {
    /* the placed encoders and buffers belong to the DiT's backend: released before it */
    lyra_umt5_free(&m->umt5);
    lyra_clip_free(&m->clip);
    if (m->loaded & LOADED_PLACED) {
        if (m->negative) m->dit.be.ops->release(&m->dit.be, m->negative);
        lyra_backend_arena_free(&m->dit.be, &m->arena);
    } else {
        free(m->negative);
        lyra_arena_free(&m->arena);
    }
    if (m->loaded & LOADED_DIT) lyra_dit_free(&m->dit);
    if (m->vae) lyra_vae_free(m->vae);
    if (m->tok) lyra_tokenizer_free(m->tok);
    if (m->loaded & LOADED_BACKEND) lyra_backend_free(&m->be);
    free(m->umt5_path);
    random_spec_free(&m->umt5_random);
    for (int i = 0; i < LYRA_AR_TEXT_CACHE; i++) {
        free(m->text_cache[i].caption);
        free(m->text_cache[i].emb);
    }
    memset(m, 0, sizeof *m);
}

static lyra_status load_negative(lyra_ar_models *m, const char *path) {
    st_table s;
    LYRA_TRY(st_table_open(&s, path, "negative prompt"));
    lyra_status st = LYRA_OK;
    const lyra_st_tensor *t = lyra_st_find(s.file, "t5_text_embeddings");
    if (!t) {
        st = lyra_error(LYRA_ERR_FORMAT, "%s: tensor 't5_text_embeddings' (the negative-prompt embedding) is missing",
                        path);
        goto done;
    }
    int64_t lead = 1;
    for (int d = 0; d + 2 < t->ndim; d++) lead *= t->shape[d];
    if (t->ndim < 2 || lead != 1 || t->shape[t->ndim - 2] != LYRA_AR_TEXT_LEN ||
        t->shape[t->ndim - 1] != m->text_dim) {
        st = lyra_error(LYRA_ERR_FORMAT, "%s: tensor 't5_text_embeddings' must be (1, %d, %d) (the DiT's text width)",
                        path, LYRA_AR_TEXT_LEN, m->text_dim);
        goto done;
    }
    m->negative = malloc(sizeof(float) * LYRA_AR_TEXT_LEN * (size_t)m->text_dim);
    if (!m->negative) {
        st = lyra_error(LYRA_ERR_OOM, "negative prompt: out of memory");
        goto done;
    }
    st = lyra_st_read_f32(s.file, t, m->negative);
done:
    st_table_free(&s);
    return st;
}

lyra_status lyra_ar_models_load(lyra_ar_models *m, const lyra_ar_paths *p) {
    memset(m, 0, sizeof *m);
    m->dmd_adapter = -1;
    m->folded_dmd = -1;
    m->n_threads = p->n_threads;
    st_table s;
    lyra_status st;

    if (p->dit_random) {
        st = lyra_dit_load_random(&m->dit, p->dit_random, p->dit_random_n, p->layout, 0, p->n_threads,
                                  p->dit_random_seed, p->random_defer);
    } else {
        if ((st = st_table_open(&s, p->dit, "DiT")) != LYRA_OK) goto fail;
        st = lyra_dit_load(&m->dit, s.named, s.n, p->layout, 0, p->n_threads);
        st_table_free(&s); /* the loader copied every tensor */
    }
    if (st != LYRA_OK) goto fail;
    m->loaded |= LOADED_DIT;
    m->text_dim = m->dit.cfg.text_dim;
    if (p->n_style < 0 || p->n_style > LYRA_AR_MAX_STYLE_LORAS) {
        st = lyra_error(LYRA_ERR_ARG, "style LoRAs: %d given, at most %d", p->n_style, LYRA_AR_MAX_STYLE_LORAS);
        goto fail;
    }
    for (int i = 0; i < p->n_style; i++) {
        int ignored = 0;
        if ((st = st_table_open(&s, p->style[i].path, "style LoRA")) != LYRA_OK) goto fail;
        st = lyra_dit_lora_add(&m->dit, s.named, s.n, p->style[i].name, p->style[i].weight, &ignored);
        st_table_free(&s);
        if (st != LYRA_OK) goto fail;
        snprintf(m->style[i].name, sizeof m->style[i].name, "%s", p->style[i].name);
        m->style[i].weight = p->style[i].weight;
        m->n_style = i + 1;
    }
    if (p->lora_dmd) {
        int ignored = 0;
        if ((st = st_table_open(&s, p->lora_dmd, "DMD LoRA")) != LYRA_OK) goto fail;
        st = lyra_dit_lora_add(&m->dit, s.named, s.n, "dmd", 0.0f, &ignored);
        st_table_free(&s);
        if (st != LYRA_OK) goto fail;
        m->dmd_adapter = m->dit.n_adapters - 1;
    }

    if ((st = st_table_open(&s, p->vae, "VAE")) != LYRA_OK) goto fail;
    st = lyra_vae_load(&m->vae, st_lookup, &s, s.names, s.n);
    st_table_free(&s);
    if (st != LYRA_OK) goto fail;
    if (lyra_vae_z_dim(m->vae) != m->dit.cfg.out_dim) {
        st = lyra_error(LYRA_ERR_FORMAT, "%s: the VAE has %d latent channels, the DiT %d", p->vae,
                        lyra_vae_z_dim(m->vae), m->dit.cfg.out_dim);
        goto fail;
    }

    if (p->umt5_random) { /* a device run fills it on the device, each time it loads it (ar_text.c) */
        if ((st = random_spec_copy(&m->umt5_random, p->umt5_random, p->umt5_random_n, p->umt5_random_seed)) != LYRA_OK)
            goto fail;
    } else if (!(m->umt5_path = strdup(p->umt5))) {
        st = lyra_error(LYRA_ERR_OOM, "umT5: out of memory");
        goto fail;
    }
    if ((st = lyra_ar_umt5_load_models(m, &m->umt5, p->random_defer)) != LYRA_OK) goto fail;
    if (m->umt5.cfg.dim != m->text_dim) {
        st = lyra_error(LYRA_ERR_FORMAT, "%s: umT5 width %lld differs from the DiT's text width %d",
                        p->umt5_random ? "random umT5 weights" : p->umt5,
                        (long long)m->umt5.cfg.dim, m->text_dim);
        goto fail;
    }

    if ((st = st_table_open(&s, p->clip, "CLIP")) != LYRA_OK) goto fail;
    {
        lyra_text_wsource src = {st_lookup, &s, s.n, s.names, NULL};
        st = lyra_clip_load(&m->clip, &src, 0);
    }
    st_table_free(&s);
    if (st != LYRA_OK) goto fail;
    if (m->clip.cfg.width != m->dit.cfg.clip_dim) {
        st = lyra_error(LYRA_ERR_FORMAT, "%s: CLIP width %lld differs from the DiT's image width %d", p->clip,
                        (long long)m->clip.cfg.width, m->dit.cfg.clip_dim);
        goto fail;
    }

    lyra_tokenizer_options opt = {300, 0}; /* umT5: 300 <extra_id_N>, no byte fallback (HF's conversion) */
    if ((st = lyra_tokenizer_load(p->tokenizer, &opt, &m->tok)) != LYRA_OK) goto fail;
    if (lyra_tokenizer_vocab_size(m->tok) > m->umt5.cfg.vocab) {
        st = lyra_error(LYRA_ERR_FORMAT, "%s: the tokenizer has %d ids but the umT5 embedding only %lld rows",
                        p->tokenizer, lyra_tokenizer_vocab_size(m->tok), (long long)m->umt5.cfg.vocab);
        goto fail;
    }
    if ((st = load_negative(m, p->negative_prompt)) != LYRA_OK) goto fail;

    if ((st = lyra_backend_cpu_init(&m->be, p->n_threads)) != LYRA_OK) goto fail;
    m->loaded |= LOADED_BACKEND;
    size_t a = lyra_umt5_arena_bytes(&m->umt5.cfg, 1, LYRA_AR_TEXT_LEN), b = lyra_clip_arena_bytes(&m->clip.cfg, 1);
    if ((st = lyra_arena_init(&m->arena, a > b ? a : b)) != LYRA_OK) goto fail;
    return LYRA_OK;
fail:
    lyra_ar_models_free(m);
    return st;
}

/* ---- placement ---- */

lyra_status lyra_ar_models_fold_loras(lyra_ar_models *m, int use_dmd, int on_device) {
    if (m->folded_dmd >= 0) {
        if (m->folded_dmd == !!use_dmd) return LYRA_OK;
        return lyra_error(LYRA_ERR_ARG, "use_dmd=%s: these models' LoRAs were folded into the DiT's weights for "
                          "use_dmd=%s (at placement, or for fp8); load them again", use_dmd ? "True" : "False",
                          m->folded_dmd ? "True" : "False");
    }
    if (use_dmd && m->dmd_adapter < 0)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "use_dmd: the checkpoint folder has no DMD LoRA "
                          "(lora_dmd.safetensors); pass use_dmd=False or convert the LoRA");
    if (m->dit.be.device != LYRA_DEVICE_CPU)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "LoRA fold: the DiT is placed already; fold before placement");
    if (m->dmd_adapter >= 0) m->dit.adapters[m->dmd_adapter].weight = use_dmd ? 1.0f : 0.0f;
    /* the DMD LoRA at 0 is dropped, its weight untouched */
    lyra_status st = on_device ? lyra_dit_lora_fold_at_placement(&m->dit) : lyra_dit_lora_merge(&m->dit);
    if (st != LYRA_OK) {
        if (m->dmd_adapter >= 0) m->dit.adapters[m->dmd_adapter].weight = 0.0f; /* refused: nothing changed */
        if (st != LYRA_ERR_UNSUPPORTED) return st;
        char why[512];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        return lyra_error(st, "%s (a device run or dit_dtype='fp8' folds the LoRAs into the DiT's weights; "
                          "device='cpu' evaluates them unfolded)", why);
    }
    m->dmd_adapter = -1;
    m->folded_dmd = !!use_dmd;
    return LYRA_OK;
}

lyra_status lyra_ar_models_dit_fp8(lyra_ar_models *m, int use_dmd) {
    /* the codes are of the folded weights: a deferred random DiT is filled, folded and quantized on the device at
     * placement (it has no host copy to fold); a loaded one is folded and quantized here, on the host */
    LYRA_TRY(lyra_ar_models_fold_loras(m, use_dmd, m->dit.random.pending));
    return lyra_dit_quantize_fp8(&m->dit);           /* a second call does nothing */
}

lyra_status lyra_ar_models_place(lyra_ar_models *m, lyra_device device, lyra_dtype policy, int use_dmd) {
    if (device == LYRA_DEVICE_CPU) {
        if (m->loaded & LOADED_PLACED)
            return lyra_error(LYRA_ERR_UNSUPPORTED, "generate models: placed on the %s device, their host weights "
                              "are gone; load them again for the CPU", m->dit.be.ops->name);
        return LYRA_OK;
    }
    if (m->loaded & LOADED_PLACED) return LYRA_OK;
    const int f32 = policy == LYRA_DTYPE_F32; /* the parity mode: every network in f32 */
    /* The run's LoRAs are fixed: folded once, as the weights are placed, on the device (lyra_dit_place with
     * lyra_dit_lora_fold_at_placement: the adapters' factors go up one Linear at a time and are freed), so no adapter
     * stays on the device (its memory is the weights' alone, lyra2.memory plans none) and the bf16 GEMMs skip the
     * adapters' two extra ones per Linear. Upstream evaluates them unfolded in bf16; the drift is measured in
     * docs/PRECISION.md. The parity mode keeps the adapters, as the CPU runs them, so that its frames stay the
     * CPU's. */
    if (!f32) LYRA_TRY(lyra_ar_models_fold_loras(m, use_dmd, 1));
    LYRA_TRY(lyra_dit_place(&m->dit, device));
    LYRA_TRY(lyra_dit_set_precision(&m->dit, f32 ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16));
    lyra_backend *be = &m->dit.be;
    /* From here the encoders' arena and the negative embedding move to the device: mark first so that a failure
     * below releases what was placed through the right backend. */
    float *neg_host = m->negative;
    m->negative = NULL;
    lyra_arena_free(&m->arena);
    m->loaded |= LOADED_PLACED;
    lyra_umt5_free(&m->umt5); /* device runs load it per new caption (ar_text.c) */
    lyra_status st = lyra_clip_place(&m->clip, be, f32 ? LYRA_DTYPE_F32 : LYRA_DTYPE_F16);
    if (st == LYRA_OK) {
        const size_t bytes = sizeof(float) * LYRA_AR_TEXT_LEN * (size_t)m->text_dim;
        m->negative = be->ops->alloc(be, bytes);
        if (!m->negative)
            st = lyra_error(LYRA_ERR_OOM, "negative prompt: cannot place %zu bytes on the %s device", bytes,
                            be->ops->name);
    }
    if (st == LYRA_OK) {
        lyra_tensor h = lyra_tensor_2d(neg_host, LYRA_DTYPE_F32, LYRA_AR_TEXT_LEN, m->text_dim), d = h;
        h.name = d.name = "negative prompt embedding";
        d.data = m->negative;
        d.device = be->device;
        st = lyra_op_upload(be, &d, &h);
    }
    free(neg_host);
    if (st == LYRA_OK) st = lyra_vae_place(m->vae, device, f32 ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16);
    return st;
}

/* Grows the encoders' arena to the bytes an encode measured (device) or the load sized (CPU: the cost model). */
static lyra_status encoder_arena(lyra_ar_models *m, size_t need) {
    if (!(m->loaded & LOADED_PLACED)) return LYRA_OK;
    return lyra_backend_arena_reserve(&m->dit.be, &m->arena, need, "text/image encoder activations");
}

/* ---- encoders ---- */

lyra_status lyra_ar_encode_image(lyra_ar_models *m, const lyra_tensor *frame, lyra_tensor *out) {
    lyra_backend *be = lyra_ar_backend(m);
    if (m->loaded & LOADED_PLACED) {
        size_t need = 0;
        LYRA_TRY(lyra_clip_arena_measure(&m->clip, be->device, frame, &need));
        LYRA_TRY(encoder_arena(m, need));
    }
    size_t mark = lyra_arena_mark(&m->arena);
    lyra_status st = lyra_clip_encode(&m->clip, be, &m->arena, out, frame);
    lyra_arena_reset(&m->arena, mark);
    return st;
}
