/* The full-size plan of the DiT without weights (lyra_dit_measure, models/dit.h): a model of the real shapes whose
 * weights are reserved, never-committed address space, on a measuring backend (nn/measure/measure.h), run through
 * the public forward, so the plan's arena, FLOPs and parameter bytes are those of the code that runs. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "models/dit_internal.h"
#include "nn/measure/measure.h"

/* Address space of the plan's arena: far above any device, never committed. */
#define PLAN_ARENA_SPACE ((size_t)1 << 40)

/* Bytes the loader's carver gives the parameters whose name starts with prefix ("" = all), and their counts. */
static lyra_status carve_count(const lyra_dit *m, const char *prefix, lyra_dtype mdt, size_t *bytes, int64_t *melems,
                               int64_t *mrows, int64_t *velems) {
    lyra_carver cv;
    lyra_carver_init(&cv, NULL, 0, LYRA_DEVICE_CPU);
    size_t pl = strlen(prefix);
    *melems = *mrows = *velems = 0;
    for (int i = 0; i < m->n_params; i++) {
        const lyra_dit_param *p = &m->params[i];
        if (strncmp(p->name, prefix, pl)) continue;
        lyra_tensor t;
        LYRA_TRY(lyra_carve(&cv, &t, p->name, p->matrix ? mdt : LYRA_DTYPE_F32, p->ndim, p->ne));
        if (p->matrix) {
            *melems += lyra_tensor_numel(&t);
            *mrows += t.ne[0];
        } else {
            *velems += lyra_tensor_numel(&t);
        }
    }
    *bytes = cv.used;
    return LYRA_OK;
}

/* cfg's derived fields from its detected ones and the layout, as lyra_dit_config_detect derives them. */
static lyra_status derive_config(lyra_dit_config *c, const lyra_framepack *fp) {
    if (c->dim <= 0 || c->num_heads <= 0 || c->dim % c->num_heads || c->num_layers <= 0 || c->in_dim <= 0 ||
        c->out_dim <= 0 || c->cam_dim % 4 || c->buffer_embed_dim % (8 * LYRA_DIT_BUFFER_MULTIRES))
        return lyra_error(LYRA_ERR_ARG, "dit measure: inconsistent configuration (dim %d, heads %d, layers %d, "
                          "cam_dim %d, buffer_embed_dim %d)", c->dim, c->num_heads, c->num_layers, c->cam_dim,
                          c->buffer_embed_dim);
    c->head_dim = c->dim / c->num_heads;
    c->cam_channels = c->cam_dim / 4;
    c->buffer_in_dim = c->buffer_embed_dim / (8 * LYRA_DIT_BUFFER_MULTIRES);
    c->n_clean = fp->n_segments;
    for (int k = 0; k < fp->n_segments; k++) c->clean_in[k] = dit_clean_in_features(c->in_dim, &fp->seg[k]);
    if (c->eps == 0.0f) c->eps = 1e-6f;
    return LYRA_OK;
}

lyra_status lyra_dit_measure(const lyra_dit_config *cfg, const char *layout, int64_t H, int64_t W, int64_t Lc,
                             lyra_dtype matrix_dtype, lyra_device device, lyra_dit_measurement *out) {
    memset(out, 0, sizeof *out);
    lyra_dit m;
    memset(&m, 0, sizeof m);
    void *wmem = NULL;
    size_t wspace = 0;
    lyra_status st;
#define T(call) do { if ((st = (call)) != LYRA_OK) goto done; } while (0)
    T(lyra_framepack_parse(&m.fp, layout));
    m.cfg = *cfg;
    T(derive_config(&m.cfg, &m.fp));
    T(dit_params_build(&m));
    T(carve_count(&m, "", matrix_dtype, &out->weight_bytes, &out->matrix_elems, &out->matrix_rows,
                  &out->vector_elems));
    T(carve_count(&m, "blocks.0.", matrix_dtype, &out->block_bytes, &out->block_matrix_elems,
                  &out->block_matrix_rows, &out->block_vector_elems));

    /* The weights: descriptors of the real shapes over reserved, never-touched address space. */
    wspace = out->weight_bytes + LYRA_CARVE_ALIGN;
    wmem = mmap(NULL, wspace, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (wmem == MAP_FAILED) {
        wmem = NULL;
        T(lyra_error(LYRA_ERR_OOM, "dit measure: cannot reserve %zu bytes of address space", wspace));
    }
    lyra_carver cv;
    lyra_carver_init(&cv, wmem, wspace, device);
    for (int i = 0; i < m.n_params; i++) {
        const lyra_dit_param *p = &m.params[i];
        T(lyra_carve(&cv, p->dst, p->name, p->matrix ? matrix_dtype : LYRA_DTYPE_F32, p->ndim, p->ne));
        p->dst->device = device;
    }

    /* Inputs and output, from a measuring backend of their own (their bytes are the forward's I/O). */
    lyra_backend io;
    T(lyra_backend_measure_init(&io, device));
    const lyra_dit_config *c = &m.cfg;
    int64_t Tt = m.fp.n_total, Cy = c->in_dim - c->out_dim + c->cam_channels;
    lyra_tensor x = lyra_tensor_5d(NULL, LYRA_DTYPE_F32, 1, c->out_dim, Tt, H, W);
    lyra_tensor text = lyra_tensor_3d(NULL, LYRA_DTYPE_F32, 1, LYRA_DIT_TEXT_TOKENS, c->text_dim);
    lyra_tensor clip = lyra_tensor_3d(NULL, LYRA_DTYPE_F32, 1, Lc, c->clip_dim);
    /* the condition and the buffer as the generate driver stores them: bf16 on a device (upstream's bf16 inputs),
     * f32 on the CPU */
    const lyra_dtype cond = device == LYRA_DEVICE_CPU ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16;
    lyra_tensor y = lyra_tensor_5d(NULL, cond, 1, Cy, Tt, H, W);
    lyra_tensor buf = lyra_tensor_5d(NULL, cond, 1, c->buffer_in_dim, Tt, H, W);
    lyra_tensor v = lyra_tensor_5d(NULL, LYRA_DTYPE_F32, 1, c->out_dim, m.fp.n_new, H, W);
    lyra_tensor *all[] = {&x, &text, &clip, &y, &buf, &v};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        all[i]->data = io.ops->alloc(&io, lyra_tensor_nbytes(all[i]));
        all[i]->device = device;
        if (!all[i]->data) {
            lyra_backend_free(&io);
            T(LYRA_ERR_OOM);
        }
    }
    out->io_bytes = lyra_backend_measure_stats(&io)->alloc_live;
    lyra_dit_inputs in = {.x = &x, .t = 500.0, .text = &text, .clip = &clip, .y = &y, .buffer = &buf};
    /* the activation storage a placed model gets by default (lyra_dit_place: bf16 on a device backend) */
    m.act_dtype = device == LYRA_DEVICE_CPU ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16;
    /* the public forward on a measuring backend: it measures itself (the arena), reserves address space, runs */
    /* (its arena: reserved address space large enough that the forward's reserve keeps it) */
    st = lyra_backend_measure_init(&m.be, device);
    if (st == LYRA_OK) {
        st = lyra_measure_arena_init(&m.arena, PLAN_ARENA_SPACE, device);
        if (st == LYRA_OK) {
            st = lyra_dit_forward(&m, &in, &v, NULL, NULL);
            out->arena_peak = m.arena_need;
            out->flops = lyra_backend_measure_stats(&m.be)->flops;
            out->n_ops = lyra_backend_measure_stats(&m.be)->n_ops;
            lyra_measure_arena_free(&m.arena);
        }
        lyra_backend_free(&m.be);
    }
    lyra_backend_free(&io);
    if (st != LYRA_OK) goto done;
    {
        lyra_fp_chunk ch[LYRA_FP_MAX_SEGMENTS + 1];
        int64_t gs;
        T(lyra_framepack_chunks(&m.fp, H, W, ch, &out->tokens, &gs));
    }
#undef T
done:
    if (wmem) munmap(wmem, wspace);
    free(m.w.blocks);
    free(m.params);
    return st;
}
