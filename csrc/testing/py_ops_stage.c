/* Host <-> device staging for the lyra2._testops glue (see py_ops_stage.h). */
#include "python/py_common.h"

#include <stdio.h>
#include <stdlib.h>

#include "nn/ops.h"
#include "py_ops_stage.h"

int ops_stage_add(ops_stage *s, lyra_tensor *t, ops_role role) {
    if (s->n == OPS_MAX_STAGED) return -1;
    s->t[s->n] = t;
    s->role[s->n] = role;
    s->host[s->n] = t->data;
    s->dev[s->n] = NULL;
    s->n++;
    return 0;
}

/* Byte range [lo, hi) that the strided tensor touches. */
static void extent(const lyra_tensor *t, char **lo, char **hi) {
    char *p = (char *)t->data, *a = p, *b = p;
    for (int i = 0; i < t->ndim; i++) {
        if (t->ne[i] == 0) {
            *lo = *hi = p;
            return;
        }
        int64_t d = (t->ne[i] - 1) * t->nb[i];
        if (d < 0) a += d;
        else b += d;
    }
    *lo = a;
    *hi = b + lyra_dtype_size(t->dtype);
}

static lyra_status upload_bytes(lyra_backend *be, void *dev, const void *host, size_t bytes) {
    if (!bytes) return LYRA_OK;
    int64_t n = (int64_t)bytes;
    lyra_tensor d = lyra_tensor_make(dev, LYRA_DTYPE_U8, 1, &n), h = lyra_tensor_make((void *)host, LYRA_DTYPE_U8, 1, &n);
    d.device = be->device;
    return lyra_op_upload(be, &d, &h);
}

static lyra_status download_bytes(lyra_backend *be, void *host, const void *dev, size_t bytes) {
    if (!bytes) return lyra_op_synchronize(be);
    int64_t n = (int64_t)bytes;
    lyra_tensor d = lyra_tensor_make((void *)dev, LYRA_DTYPE_U8, 1, &n), h = lyra_tensor_make(host, LYRA_DTYPE_U8, 1, &n);
    d.device = be->device;
    return lyra_op_download(be, &h, &d);
}

lyra_status ops_stage_in(lyra_backend *be, ops_stage *s, lyra_dtype act) {
    size_t aes = lyra_dtype_size(act);
    for (int i = 0; i < s->n; i++) {
        lyra_tensor *t = s->t[i];
        int convert = (s->role[i] == OPS_IN_ACT || s->role[i] == OPS_OUT) && t->dtype == LYRA_DTYPE_F32 &&
                      act != LYRA_DTYPE_F32;
        if (s->role[i] == OPS_OUT || s->role[i] == OPS_OUT_F32) {
            /* outputs are fresh contiguous NumPy arrays; on the device, contiguous or a column slice */
            lyra_dtype odt = convert && !s->out_f32 ? act : t->dtype;
            lyra_tensor d = lyra_tensor_make(NULL, odt, t->ndim, t->ne);
            size_t bytes = lyra_tensor_nbytes(&d);
            if (s->out_pad > 0 && t->ndim >= 1) {
                int64_t wide[LYRA_MAX_DIMS];
                memcpy(wide, t->ne, sizeof wide);
                wide[t->ndim - 1] += s->out_pad;
                lyra_tensor w = lyra_tensor_make(NULL, odt, t->ndim, wide);
                bytes = lyra_tensor_nbytes(&w);
                memcpy(d.nb, w.nb, sizeof d.nb);
            }
            s->dev[i] = be->ops->alloc(be, bytes ? bytes : 1);
            if (!s->dev[i]) return LYRA_ERR_OOM;
            d.data = s->dev[i];
            d.device = be->device;
            d.name = t->name;
            *t = d;
            continue;
        }
        char *lo, *hi;
        extent(t, &lo, &hi);
        size_t bytes = (size_t)(hi - lo), dbytes = convert ? bytes / 4 * aes : bytes;
        s->dev[i] = be->ops->alloc(be, dbytes ? dbytes : 1);
        if (!s->dev[i]) return LYRA_ERR_OOM;
        lyra_status st;
        if (convert) {
            /* the whole extent as floats (gaps between rows are converted too, and never read) */
            void *tmp = malloc(dbytes ? dbytes : 1);
            if (!tmp) return lyra_error(LYRA_ERR_OOM, "staging: cannot allocate %zu host bytes", dbytes);
            lyra_convert_from_f32(tmp, act, (const float *)lo, (int64_t)(bytes / 4));
            st = upload_bytes(be, s->dev[i], tmp, dbytes);
            free(tmp);
            for (int d = 0; d < t->ndim; d++) t->nb[d] = t->nb[d] / 4 * (int64_t)aes;
            t->data = (char *)s->dev[i] + ((char *)t->data - lo) / 4 * (int64_t)aes;
            t->dtype = act;
        } else {
            st = upload_bytes(be, s->dev[i], lo, bytes);
            t->data = (char *)s->dev[i] + ((char *)t->data - lo);
        }
        if (st != LYRA_OK) return st;
        t->device = be->device;
    }
    return LYRA_OK;
}

lyra_status ops_stage_out(lyra_backend *be, ops_stage *s) {
    for (int i = 0; i < s->n; i++) {
        if (s->role[i] != OPS_OUT && s->role[i] != OPS_OUT_F32) continue;
        lyra_tensor *t = s->t[i];
        size_t bytes = (size_t)lyra_tensor_numel(t) * lyra_dtype_size(t->dtype);
        /* f32 as it is; codes (u8: the FP8 ops) byte for byte into their uint8 array */
        if ((t->dtype == LYRA_DTYPE_F32 || !lyra_dtype_is_float(t->dtype)) && lyra_tensor_is_contiguous(t)) {
            LYRA_TRY(download_bytes(be, s->host[i], t->data, bytes));
            continue;
        }
        void *tmp = t->dtype == LYRA_DTYPE_F32 ? s->host[i] : malloc(bytes ? bytes : 1);
        if (!tmp) return lyra_error(LYRA_ERR_OOM, "staging: cannot allocate %zu host bytes", bytes);
        /* a column slice: the backend's download packs its rows */
        lyra_tensor h = lyra_tensor_make(tmp, t->dtype, t->ndim, t->ne);
        lyra_status st = lyra_op_download(be, &h, t);
        if (t->dtype == LYRA_DTYPE_F32) {
            if (st != LYRA_OK) return st;
            continue;
        }
        if (st == LYRA_OK) lyra_convert_to_f32((float *)s->host[i], tmp, t->dtype, lyra_tensor_numel(t));
        free(tmp);
        if (st != LYRA_OK) return st;
    }
    return LYRA_OK;
}

void ops_stage_free(lyra_backend *be, ops_stage *s) {
    for (int i = 0; i < s->n; i++)
        if (s->dev[i]) be->ops->release(be, s->dev[i]);
    s->n = 0;
}

static lyra_backend *g_cuda;
static PyThread_type_lock g_cuda_lock;

lyra_backend *ops_cuda_backend(void) {
    if (g_cuda) return g_cuda;
    if (!g_cuda_lock && !(g_cuda_lock = PyThread_allocate_lock())) {
        PyErr_NoMemory();
        return NULL;
    }
    /* lyra_backend_init picks the real GPU, or the emulated device under LYRA2_EMULATED_CUDA=1 (nn/emu), so the
     * device half of the op harness runs on machines without a GPU too. */
    lyra_backend *be = calloc(1, sizeof *be);
    if (!be) {
        PyErr_NoMemory();
        return NULL;
    }
    lyra_status st = lyra_backend_init(be, LYRA_DEVICE_CUDA, 0);
    if (st != LYRA_OK) {
        free(be);
        char why[512];
        snprintf(why, sizeof why, "%s", lyra_error_message());
        lyra_py_raise(lyra_error(st, "backend='cuda': %s", why));
        return NULL;
    }
    g_cuda = be;
    return be;
}

void ops_cuda_lock(void) {
    if (g_cuda_lock) PyThread_acquire_lock(g_cuda_lock, WAIT_LOCK);
}

void ops_cuda_unlock(void) {
    if (g_cuda_lock) PyThread_release_lock(g_cuda_lock);
}
