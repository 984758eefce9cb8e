/* Python glue for the Gaussian-splat rasterizer (csrc/render/gs_raster.h); the public API is lyra2/render.py. */
#include "py_common.h"

#include <string.h>

#include "render/gs_raster.h"
#include "render/video_read.h"

/* gs_render(means (N,3), scales (N,3), rotations (N,4) wxyz, harmonics (N,3,d_sh), opacities (N), w2c (T,4,4),
 *           K (T,3,3), height, width, background (3 floats), near, threads, device "cpu" | "cuda")
 *   -> (rgb (T,H,W,3) f32, alpha (T,H,W) f32, depth (T,H,W) f32)
 * A backend of `device` is made for the call (threads: the CPU backend's team) and freed after it, so a device
 * holds the scene only while it renders. */
static PyObject *py_gs_render(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[7];
    int H, W, threads;
    float bg[3], near_plane;
    const char *device = "cpu";
    if (!PyArg_ParseTuple(args, "OOOOOOOii(fff)fi|s:gs_render", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &H,
                          &W, &bg[0], &bg[1], &bg[2], &near_plane, &threads, &device))
        return NULL;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return PyErr_Format(PyExc_ValueError, "device: '%s' is not allowed; expected 'cpu' or 'cuda'", device);
    static const char *names[7] = {"means", "scales", "rotations", "harmonics", "opacities", "w2c", "K"};
    static const int nd[7] = {2, 2, 2, 3, 1, 3, 3};
    PyArrayObject *a[7] = {0}, *rgb = NULL, *al = NULL, *dp = NULL;
    PyObject *result = NULL;
    for (int i = 0; i < 7; i++)
        if (!(a[i] = lyra_py_array(o[i], NPY_FLOAT32, nd[i], names[i]))) goto finally;
    npy_intp N = PyArray_DIMS(a[0])[0], T = PyArray_DIMS(a[5])[0];
    npy_intp d_sh = PyArray_DIMS(a[3])[2];
    int deg = d_sh == 1 ? 0 : d_sh == 4 ? 1 : d_sh == 9 ? 2 : -1;
    if (PyArray_DIMS(a[0])[1] != 3 || PyArray_DIMS(a[1])[0] != N || PyArray_DIMS(a[1])[1] != 3 ||
        PyArray_DIMS(a[2])[0] != N || PyArray_DIMS(a[2])[1] != 4 || PyArray_DIMS(a[3])[0] != N ||
        PyArray_DIMS(a[3])[1] != 3 || deg < 0 || PyArray_DIMS(a[4])[0] != N) {
        PyErr_SetString(PyExc_ValueError, "gs_render: expected means (N,3), scales (N,3), rotations (N,4), "
                        "harmonics (N,3,1|4|9), opacities (N)");
        goto finally;
    }
    if (PyArray_DIMS(a[5])[1] != 4 || PyArray_DIMS(a[5])[2] != 4 || PyArray_DIMS(a[6])[0] != T ||
        PyArray_DIMS(a[6])[1] != 3 || PyArray_DIMS(a[6])[2] != 3) {
        PyErr_SetString(PyExc_ValueError, "gs_render: expected w2c (T,4,4) and K (T,3,3)");
        goto finally;
    }
    if (H < 1 || W < 1) {
        PyErr_Format(PyExc_ValueError, "size: %dx%d is not allowed; height and width must be >= 1", H, W);
        goto finally;
    }
    npy_intp d3[4] = {T, H, W, 3}, d2[3] = {T, H, W};
    rgb = (PyArrayObject *)PyArray_SimpleNew(4, d3, NPY_FLOAT32);
    al = (PyArrayObject *)PyArray_SimpleNew(3, d2, NPY_FLOAT32);
    dp = (PyArrayObject *)PyArray_SimpleNew(3, d2, NPY_FLOAT32);
    if (!rgb || !al || !dp) goto finally;
    lyra_gs_scene sc = {.n = N, .means = PyArray_DATA(a[0]), .scales = PyArray_DATA(a[1]),
                        .rotations = PyArray_DATA(a[2]), .harmonics = PyArray_DATA(a[3]),
                        .opacities = PyArray_DATA(a[4]), .sh_degree = deg};
    const float *w2c = PyArray_DATA(a[5]), *K = PyArray_DATA(a[6]);
    lyra_splat_camera *cams = PyMem_Calloc((size_t)(T > 0 ? T : 1), sizeof *cams);
    if (!cams) {
        PyErr_NoMemory();
        goto finally;
    }
    for (npy_intp t = 0; t < T; t++) {
        cams[t].near_plane = near_plane;
        memcpy(cams[t].background, bg, sizeof bg);
        memcpy(cams[t].w2c, w2c + 16 * t, sizeof cams[t].w2c);
        memcpy(cams[t].K, K + 9 * t, sizeof cams[t].K);
    }
    lyra_status s;
    Py_BEGIN_ALLOW_THREADS
    lyra_backend be;
    s = lyra_backend_init(&be, strcmp(device, "cuda") ? LYRA_DEVICE_CPU : LYRA_DEVICE_CUDA,
                          strcmp(device, "cuda") ? threads : 0);
    if (s == LYRA_OK)
        s = lyra_gs_render(&be, &sc, cams, T, W, H, PyArray_DATA(rgb), PyArray_DATA(al), PyArray_DATA(dp));
    lyra_backend_free(&be);
    Py_END_ALLOW_THREADS
    PyMem_Free(cams);
    if (s != LYRA_OK) {
        lyra_py_raise(s);
        goto finally;
    }
    result = Py_BuildValue("(OOO)", rgb, al, dp);
finally:
    for (int i = 0; i < 7; i++) Py_XDECREF(a[i]);
    Py_XDECREF(rgb);
    Py_XDECREF(al);
    Py_XDECREF(dp);
    return result;
}

/* video_read(path, max_frames) -> (frames uint8 (T, H, W, 3), fps float) */
static PyObject *py_video_read(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj, *bytes = NULL;
    long long max_frames = 0;
    if (!PyArg_ParseTuple(args, "O|L:video_read", &path_obj, &max_frames)) return NULL;
    if (!PyUnicode_FSConverter(path_obj, &bytes)) return NULL;
    lyra_video_frames f;
    lyra_status s;
    const char *path = PyBytes_AS_STRING(bytes);
    Py_BEGIN_ALLOW_THREADS
    s = lyra_video_read(path, max_frames, &f);
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    if (s != LYRA_OK) return lyra_py_raise(s);
    npy_intp dims[4] = {(npy_intp)f.t, f.h, f.w, 3};
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_UINT8);
    PyObject *result = NULL;
    if (a) {
        memcpy(PyArray_DATA(a), f.rgb, (size_t)f.t * (size_t)f.h * (size_t)f.w * 3);
        result = Py_BuildValue("(Od)", a, f.fps);
        Py_DECREF(a);
    }
    lyra_video_frames_free(&f);
    return result;
}

static PyMethodDef render_methods[] = {
    {"video_read", py_video_read, METH_VARARGS, "video_read(path, max_frames=0) -> (frames uint8 (T,H,W,3), fps)"},
    {"gs_render", py_gs_render, METH_VARARGS,
     "gs_render(means, scales, rotations, harmonics, opacities, w2c, K, height, width, background, near, threads, "
     "device='cpu') -> (rgb, alpha, depth)"},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_render(PyObject *m) { return PyModule_AddFunctions(m, render_methods); }
