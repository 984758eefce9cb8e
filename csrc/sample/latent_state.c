/* The sampler state in a backend's memory (see latent_state.h). */
#include "sample/latent_state.h"

#include <string.h>

#include "nn/ops.h"

static lyra_tensor on(lyra_backend *be, lyra_tensor t, const char *name) {
    t.device = be->device;
    t.name = name;
    return t;
}

lyra_tensor lyra_state_tensor(lyra_backend *be, const lyra_latent_shape *s, float *p, const char *name) {
    return on(be, lyra_tensor_4d(p, LYRA_DTYPE_F32, s->c, s->t_hist + s->t_new, s->h, s->w), name);
}

lyra_tensor lyra_gen_tensor(lyra_backend *be, const lyra_latent_shape *s, float *p, const char *name) {
    return on(be, lyra_tensor_4d(p, LYRA_DTYPE_F32, s->c, s->t_new, s->h, s->w), name);
}

lyra_tensor lyra_state_gen(const lyra_latent_shape *s, const lyra_tensor *state) {
    lyra_tensor g = *state; /* the slice [t_hist, t_hist + t_new) of dim 1 */
    g.data = (char *)state->data + s->t_hist * state->nb[1];
    g.ne[1] = s->t_new;
    return g;
}

lyra_status lyra_state_set_noise(lyra_backend *be, const lyra_latent_shape *s, lyra_tensor *x, lyra_tensor *staging,
                                 const char *name, const float *noise) {
    lyra_tensor h = lyra_tensor_4d((void *)noise, LYRA_DTYPE_F32, s->c, s->t_new, s->h, s->w), up = *staging;
    h.name = up.name = name;
    LYRA_TRY(lyra_op_upload(be, &up, &h));
    lyra_tensor g = lyra_state_gen(s, x);
    return lyra_op_copy(be, &g, staging);
}

lyra_status lyra_state_x0(lyra_backend *be, const lyra_latent_shape *s, lyra_latent_kind kind, float sigma,
                          lyra_tensor *m, const lyra_tensor *x, const lyra_tensor *v) {
    if (m->data != x->data && s->t_hist > 0) {
        lyra_tensor mh, xh;
        LYRA_TRY(lyra_tensor_slice(&mh, m, 1, 0, s->t_hist));
        LYRA_TRY(lyra_tensor_slice(&xh, x, 1, 0, s->t_hist));
        LYRA_TRY(lyra_op_copy(be, &mh, &xh));
    }
    lyra_tensor mg = lyra_state_gen(s, m), xg = lyra_state_gen(s, x);
    const lyra_latent_update p = {.kind = kind, .sigma = sigma};
    const lyra_tensor *in[2] = {&xg, v};
    return lyra_op_latent_update(be, &mg, in, 2, &p);
}

lyra_status lyra_state_trace(lyra_backend *be, const lyra_tensor *t, float *host) {
    lyra_tensor h = lyra_tensor_make(host, LYRA_DTYPE_F32, t->ndim, t->ne);
    h.name = t->name;
    return lyra_op_download(be, &h, t);
}

lyra_status lyra_state_trace_v(lyra_backend *be, const lyra_latent_shape *s, const lyra_tensor *v, float *host) {
    memset(host, 0, sizeof(float) * (size_t)lyra_latent_numel(s));
    lyra_tensor full = lyra_tensor_4d(host, LYRA_DTYPE_F32, s->c, s->t_hist + s->t_new, s->h, s->w);
    lyra_tensor g = lyra_state_gen(s, &full);
    g.name = v->name;
    return lyra_op_download(be, &g, v);
}
