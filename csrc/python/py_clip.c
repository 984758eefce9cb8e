/* Python glue for the CLIP vision tower (private functions of lyra2._core; the public class is
 * lyra2/models/clip.py).
 *
 * A loaded network is a capsule owning the weights, a CPU backend and an activation arena. Weights come from a
 * safetensors path (read by the C reader over an mmap and copied once into the carved allocation, keeping the
 * file's bf16/f16 storage) or from a mapping name -> array (float32/float16; float64 is narrowed to float32). Calls on one capsule are serialised by a lock because the
 * arena and the backend scratch are per network. */
#include "py_netcap.h"

#include "models/clip.h"
#include "nn/ops.h"

/* ---------------------------------------------------------------- loaded network */

static const char *CAPSULE = "lyra2._core.clip";

typedef struct clipnet {
    lyra_py_netcap net; /* first: the capsule glue (lock, backend, arena), see py_netcap.h */
    lyra_clip clip;
} clipnet;

static void clipnet_free_model(lyra_py_netcap *net) { lyra_clip_free(&((clipnet *)net)->clip); }

static clipnet *get_net(PyObject *cap) { return lyra_py_netcap_get(cap, CAPSULE, "CLIP"); }

/* arg: the long long head count (0: detected). */
static lyra_status clip_load(lyra_py_netcap *net, const lyra_text_wsource *src, const void *arg) {
    return lyra_clip_load(&((clipnet *)net)->clip, src, *(const long long *)arg);
}

/* lyra_py_netcap_place's callback: the weights to net->be. */
static lyra_status clip_place(lyra_py_netcap *net, lyra_dtype act) {
    clipnet *t = (clipnet *)net;
    return lyra_clip_place(&t->clip, &t->net.be, act);
}

/* clip_load(weights, heads=0, device="cpu", precision=None): "cuda" moves the network to the device backend and
 * uploads its weights once (lyra_clip_place) as precision ("f16", the default there, or "f32"). */
static PyObject *py_clip_load(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *weights;
    long long heads = 0;
    const char *device = "cpu", *precision = NULL;
    if (!PyArg_ParseTuple(args, "O|Lsz:clip_load", &weights, &heads, &device, &precision)) return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    lyra_dtype act;
    if (lyra_py_precision(precision, !strcmp(device, "cuda"), LYRA_DTYPE_F16, &act) < 0) return NULL;
    PyObject *cap = lyra_py_netcap_load_random(weights, sizeof(clipnet), clipnet_free_model, clip_load, &heads, CAPSULE,
                                               !strcmp(device, "cuda")); /* random weights: filled on the device */
    return lyra_py_netcap_place(cap, CAPSULE, device, clip_place, act);
}

static PyObject *clip_config_dict(const lyra_clip_config *c) {
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "width", (long long)c->width, "heads",
                         (long long)c->heads, "layers", (long long)c->layers, "used_layers",
                         (long long)c->used_layers, "mlp", (long long)c->mlp, "patch", (long long)c->patch, "grid",
                         (long long)c->grid, "image_size", (long long)c->image_size, "tokens", (long long)c->tokens);
}

static PyObject *py_clip_config(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:clip_config", &cap)) return NULL;
    clipnet *t = get_net(cap);
    return t ? clip_config_dict(&t->clip.cfg) : NULL;
}

/* clip_run(net, image float32 (B, 3, H, W), preprocess_only) -> (B, 3, S, S) or (B, T, W) */
static PyObject *py_clip_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *img_obj;
    int pre_only;
    if (!PyArg_ParseTuple(args, "OOp:clip_run", &cap, &img_obj, &pre_only)) return NULL;
    clipnet *t = get_net(cap);
    if (!t) return NULL;
    PyArrayObject *img = lyra_py_array(img_obj, NPY_FLOAT32, 4, "image");
    if (!img) return NULL;
    PyObject *out = NULL;
    const lyra_clip_config *c = &t->clip.cfg;
    npy_intp B = PyArray_DIMS(img)[0];
    if (B < 1 || PyArray_DIMS(img)[1] != 3 || PyArray_DIMS(img)[2] < 1 || PyArray_DIMS(img)[3] < 1) {
        PyErr_Format(PyExc_ValueError, "image: expected (B, 3, H, W) with B, H, W >= 1, got (%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)B, (Py_ssize_t)PyArray_DIMS(img)[1], (Py_ssize_t)PyArray_DIMS(img)[2],
                     (Py_ssize_t)PyArray_DIMS(img)[3]);
        goto finally;
    }
    npy_intp pdims[4] = {B, 3, c->image_size, c->image_size}, tdims[3] = {B, c->tokens, c->width};
    out = pre_only ? PyArray_SimpleNew(4, pdims, NPY_FLOAT32) : PyArray_SimpleNew(3, tdims, NPY_FLOAT32);
    if (!out) goto finally;
    lyra_tensor x = lyra_py_host_tensor(img, LYRA_DTYPE_F32), y = lyra_py_host_tensor((PyArrayObject *)out, LYRA_DTYPE_F32);
    lyra_status s = LYRA_OK;
    /* on a device: the image is uploaded into a device block and the result downloaded from another */
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        lyra_backend *be = &t->net.be;
        lyra_tensor dx = x;
        lyra_tensor dy = y;
        void *bx = NULL;
        void *by = NULL;
        if (be->device != LYRA_DEVICE_CPU) {
            bx = be->ops->alloc(be, lyra_tensor_nbytes(&x));
            by = be->ops->alloc(be, lyra_tensor_nbytes(&y));
            dx = lyra_tensor_make(bx, LYRA_DTYPE_F32, x.ndim, x.ne);
            dy = lyra_tensor_make(by, LYRA_DTYPE_F32, y.ndim, y.ne);
            dx.device = dy.device = be->device;
            dx.name = "CLIP image";
            dy.name = "CLIP output";
            s = bx && by ? lyra_op_upload(be, &dx, &x)
                         : lyra_error(LYRA_ERR_OOM, "CLIP: cannot allocate %zu bytes on the device for the image and "
                                      "output", lyra_tensor_nbytes(&x) + lyra_tensor_nbytes(&y));
        }
        if (s == LYRA_OK && pre_only) {
            s = lyra_clip_preprocess(&t->clip, be, &dy, &dx);
        } else if (s == LYRA_OK) {
            size_t need = 0;
            s = lyra_clip_arena_measure(&t->clip, be->device, &dx, &need);
            if (s == LYRA_OK) s = lyra_py_netcap_arena(&t->net, need);
            if (s == LYRA_OK) s = lyra_clip_encode(&t->clip, be, &t->net.arena, &dy, &dx);
        }
        if (s == LYRA_OK && by) s = lyra_op_download(be, &y, &dy);
        if (bx) be->ops->release(be, bx);
        if (by) be->ops->release(be, by);
    });
    if (s != LYRA_OK) {
        Py_CLEAR(out);
        lyra_py_raise(s);
    }
finally:
    Py_DECREF(img);
    return out;
}

/* clip_plan(config dict with width, heads, layers, mlp, patch, image_size; batch, precision="f32") -> {params,
 * flops, arena_bytes} */
static PyObject *py_clip_plan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d;
    long long B;
    const char *precision = "f32";
    if (!PyArg_ParseTuple(args, "O!L|s:clip_plan", &PyDict_Type, &d, &B, &precision)) return NULL;
    lyra_dtype act;
    if (lyra_py_precision(precision, 1, LYRA_DTYPE_F16, &act) < 0) return NULL;
    lyra_clip_config c = {0};
    if (lyra_py_cfg_int(d, "width", &c.width) || lyra_py_cfg_int(d, "heads", &c.heads) ||
        lyra_py_cfg_int(d, "layers", &c.layers) || lyra_py_cfg_int(d, "mlp", &c.mlp) ||
        lyra_py_cfg_int(d, "patch", &c.patch) || lyra_py_cfg_int(d, "image_size", &c.image_size))
        return NULL;
    if (c.patch < 1 || c.layers < 2) {
        PyErr_SetString(PyExc_ValueError, "config: patch must be >= 1 and layers >= 2");
        return NULL;
    }
    c.used_layers = c.layers - 1;
    c.grid = c.image_size / c.patch;
    c.tokens = 1 + c.grid * c.grid;
    return Py_BuildValue("{s:L,s:d,s:n}", "params", (long long)lyra_clip_params(&c), "flops",
                         lyra_clip_flops(&c, B), "arena_bytes", (Py_ssize_t)lyra_clip_arena_bytes_as(&c, B, act));
}

/* clip_arena(net) -> (capacity, peak): the activation arena (sized by measuring each encode) and its real
 * high-water mark. */
static PyObject *py_clip_arena(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:clip_arena", &cap)) return NULL;
    clipnet *t = get_net(cap);
    if (!t) return NULL;
    size_t c, p;
    LYRA_PY_NETCAP_LOCKED(&t->net, {
        c = t->net.arena.capacity;
        p = t->net.arena.peak;
    });
    return Py_BuildValue("(nn)", (Py_ssize_t)c, (Py_ssize_t)p);
}

static PyMethodDef clip_methods[] = {
    {"clip_load", py_clip_load, METH_VARARGS, "clip_load(weights, heads=0) -> network (private; lyra2.models.clip)"},
    {"clip_config", py_clip_config, METH_VARARGS, "clip_config(net) -> dict"},
    {"clip_run", py_clip_run, METH_VARARGS, "clip_run(net, image, preprocess_only) -> float32 array"},
    {"clip_arena", py_clip_arena, METH_VARARGS, "clip_arena(net) -> (capacity, peak) of the activation arena"},
    {"clip_plan", py_clip_plan, METH_VARARGS, "clip_plan(config, batch) -> {params, flops, arena_bytes}"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_clip(PyObject *m) { return PyModule_AddFunctions(m, clip_methods); }
