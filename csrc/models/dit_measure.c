/* Sizes of the Lyra-2 DiT taken from running its forward on the measuring backend (nn/measure/measure.h):
 * the activation arena a forward needs (used by lyra_dit_forward instead of a hand-written bound) and the
 * full-size plan of lyra_dit_measure (weights of the real shapes that occupy no memory). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "models/dit_internal.h"
#include "nn/measure/measure.h"

/* Address space a measured forward may use: far above any real device, never committed. */
#define MEASURE_ARENA_SPACE ((size_t)1 << 40)

/* Runs dit_forward_run on a shallow copy of m whose backend measures and whose arena is reserved address space.
 * The weights, adapters and inputs are m's own descriptors (only their shapes are read). */
static lyra_status measure_forward(const lyra_dit *m, const lyra_dit_inputs *in, lyra_tensor *out, size_t *peak,
                                   lyra_measure_stats *stats) {
    lyra_dit mm = *m;
    lyra_status st = lyra_backend_measure_init(&mm.be, m->be.device);
    if (st != LYRA_OK) return st;
    st = lyra_measure_arena_init(&mm.arena, MEASURE_ARENA_SPACE, m->be.device);
    if (st == LYRA_OK) {
        st = dit_forward_run(&mm, in, out, NULL, NULL);
        *peak = mm.arena.peak;
        if (stats) *stats = *lyra_backend_measure_stats(&mm.be);
        lyra_measure_arena_free(&mm.arena);
    }
    lyra_backend_free(&mm.be);
    return st;
}

lyra_status dit_arena_need(lyra_dit *m, const lyra_dit_inputs *in, const lyra_tensor *out, size_t *need) {
    int max_rank = 0;
    for (int a = 0; a < m->n_adapters; a++) max_rank = m->adapters[a].rank > max_rank ? m->adapters[a].rank : max_rank;
    /* The geometry is all a forward's allocations depend on; a bad input is reported by the run itself. */
    int64_t key[8] = {in->x ? in->x->ne[3] : 0, in->x ? in->x->ne[4] : 0, in->clip ? in->clip->ne[1] : 0, max_rank,
                      m->n_adapters, m->act_dtype, m->fp8, m->be.device};
    if (m->arena_need && !memcmp(key, m->arena_key, sizeof key)) {
        *need = m->arena_need;
        return LYRA_OK;
    }
    LYRA_TRY(measure_forward(m, in, (lyra_tensor *)out, need, NULL));
    m->arena_need = *need;
    memcpy(m->arena_key, key, sizeof key);
    return LYRA_OK;
}

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
    lyra_tensor y = lyra_tensor_5d(NULL, LYRA_DTYPE_F32, 1, Cy, Tt, H, W);
    lyra_tensor buf = lyra_tensor_5d(NULL, LYRA_DTYPE_F32, 1, c->buffer_in_dim, Tt, H, W);
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
    m.be.device = device; /* measure_forward's backend presents itself as the device being planned for */
    /* the activation storage a placed model gets by default (lyra_dit_place: bf16 on a device backend) */
    m.act_dtype = device == LYRA_DEVICE_CPU ? LYRA_DTYPE_F32 : LYRA_DTYPE_BF16;
    lyra_measure_stats stats;
    st = measure_forward(&m, &in, &v, &out->arena_peak, &stats);
    lyra_backend_free(&io);
    if (st != LYRA_OK) goto done;
    out->flops = stats.flops;
    out->n_ops = stats.n_ops;
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
