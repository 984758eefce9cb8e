/* Python glue for media I/O (csrc/io/media.h): image decode, resize, alpha flattening, MP4 writing.
 * The public, validated surface is lyra2/media.py; these functions check what the C needs and
 * release the GIL around decoding, converting, resizing and encoding. */
#include "py_common.h"

#include "io/media.h"

/* A C-contiguous uint8 view of `obj`, which must be a uint8 ndarray with ndim in [min_nd, max_nd]
 * (new reference), or NULL with TypeError / ValueError naming `what`. No silent dtype conversion:
 * a float image passed as uint8 would be a bug on the caller's side. */
static PyArrayObject *uint8_array(PyObject *obj, int min_nd, int max_nd, const char *what) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a numpy uint8 array, got %s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_UINT8) {
        PyErr_Format(PyExc_TypeError, "%s: expected dtype uint8, got %s", what, PyArray_DESCR(a)->typeobj->tp_name);
        return NULL;
    }
    if (PyArray_NDIM(a) < min_nd || PyArray_NDIM(a) > max_nd) {
        if (min_nd == max_nd)
            PyErr_Format(PyExc_ValueError, "%s: expected %d dimensions, got %d", what, min_nd, PyArray_NDIM(a));
        else
            PyErr_Format(PyExc_ValueError, "%s: expected %d to %d dimensions, got %d", what, min_nd, max_nd,
                         PyArray_NDIM(a));
        return NULL;
    }
    return (PyArrayObject *)PyArray_GETCONTIGUOUS(a);
}

static PyObject *py_image_decode(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"data", "max_pixels", NULL};
    Py_buffer buf = {0};
    long long max_pixels = LYRA_IMAGE_MAX_PIXELS;
    PyObject *result = NULL;
    lyra_image *img = NULL;
    lyra_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|L:image_decode", kwlist, &buf, &max_pixels)) return NULL;
    if (max_pixels < 1 || max_pixels > LYRA_IMAGE_MAX_PIXELS) {
        PyErr_Format(PyExc_ValueError, "max_pixels: must be in 1..%lld, got %lld", LYRA_IMAGE_MAX_PIXELS, max_pixels);
        goto finally;
    }
    Py_BEGIN_ALLOW_THREADS
    st = lyra_image_decode(buf.buf, (size_t)buf.len, max_pixels, &img);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    int h, w;
    lyra_image_size(img, &h, &w);
    npy_intp dims[3] = {h, w, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (!out) goto finally;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_image_to_rgb(img, PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        Py_DECREF(out);
        lyra_py_raise(st);
        goto finally;
    }
    result = (PyObject *)out;
finally:
    lyra_image_free(img);
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *py_image_resize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *obj;
    int h, w;
    if (!PyArg_ParseTuple(args, "Oii:image_resize", &obj, &h, &w)) return NULL;
    PyArrayObject *src = uint8_array(obj, 2, 3, "image");
    if (!src) return NULL;
    PyArrayObject *out = NULL;
    int nd = PyArray_NDIM(src);
    npy_intp h0 = PyArray_DIM(src, 0), w0 = PyArray_DIM(src, 1), c = nd == 3 ? PyArray_DIM(src, 2) : 1;
    if (c < 1 || c > 4 || h0 < 1 || w0 < 1 || h0 > INT32_MAX || w0 > INT32_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "image: expected shape (H, W) or (H, W, C) with H, W >= 1 and C in 1..4, got H=%ld W=%ld C=%ld",
                     (long)h0, (long)w0, (long)c);
        goto finally;
    }
    if (h < 1 || w < 1) {
        PyErr_Format(PyExc_ValueError, "size: height and width must be positive, got %dx%d", h, w);
        goto finally;
    }
    npy_intp dims[3] = {h, w, c};
    out = (PyArrayObject *)PyArray_SimpleNew(nd, dims, NPY_UINT8);
    if (!out) goto finally;
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_image_resize(PyArray_DATA(src), (int)h0, (int)w0, (int)c, PyArray_DATA(out), h, w);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        Py_CLEAR(out);
        lyra_py_raise(st);
    }
finally:
    Py_DECREF(src);
    return (PyObject *)out;
}

static PyObject *py_image_flatten_alpha(PyObject *self, PyObject *arg) {
    (void)self;
    PyArrayObject *src = uint8_array(arg, 3, 3, "image");
    if (!src) return NULL;
    PyArrayObject *out = NULL;
    if (PyArray_DIM(src, 2) != 4) {
        PyErr_Format(PyExc_ValueError, "image: expected shape (H, W, 4), got %ld channels", (long)PyArray_DIM(src, 2));
        goto finally;
    }
    npy_intp dims[3] = {PyArray_DIM(src, 0), PyArray_DIM(src, 1), 3};
    out = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (!out) goto finally;
    Py_BEGIN_ALLOW_THREADS
    lyra_image_flatten_alpha(PyArray_DATA(src), (size_t)dims[0] * dims[1], PyArray_DATA(out));
    Py_END_ALLOW_THREADS
finally:
    Py_DECREF(src);
    return (PyObject *)out;
}

static PyObject *py_video_write(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *obj, *path_bytes = NULL;
    int fps, crf;
    const char *preset = "medium";
    if (!PyArg_ParseTuple(args, "OO&ii|s:video_write", &obj, PyUnicode_FSConverter, &path_bytes, &fps, &crf,
                          &preset))
        return NULL;
    PyObject *result = NULL;
    PyArrayObject *frames = uint8_array(obj, 4, 4, "frames");
    if (!frames) goto finally;
    npy_intp t = PyArray_DIM(frames, 0), h = PyArray_DIM(frames, 1), w = PyArray_DIM(frames, 2);
    if (PyArray_DIM(frames, 3) != 3) {
        PyErr_Format(PyExc_ValueError, "frames: expected shape (T, H, W, 3), got %ld channels",
                     (long)PyArray_DIM(frames, 3));
        goto finally;
    }
    if (t > INT32_MAX || h > INT32_MAX || w > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "frames: too large");
        goto finally;
    }
    const char *path = PyBytes_AS_STRING(path_bytes);
    lyra_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lyra_video_write(path, PyArray_DATA(frames), (int)t, (int)h, (int)w, fps, crf, preset);
    Py_END_ALLOW_THREADS
    if (st != LYRA_OK) {
        lyra_py_raise(st);
        goto finally;
    }
    result = Py_NewRef(Py_None);
finally:
    Py_XDECREF(frames);
    Py_XDECREF(path_bytes);
    return result;
}

static PyMethodDef media_methods[] = {
    {"image_decode", (PyCFunction)(void (*)(void))py_image_decode, METH_VARARGS | METH_KEYWORDS,
     "image_decode(data, max_pixels=IMAGE_MAX_PIXELS) -> uint8 (H, W, 3)\n\n"
     "Decodes PNG/JPEG/WebP/... bytes (any buffer), EXIF orientation applied, alpha over white."},
    {"image_resize", py_image_resize, METH_VARARGS,
     "image_resize(image, height, width) -> uint8 array\n\n"
     "cv2.resize INTER_LINEAR on a uint8 (H, W) or (H, W, C) array, bit-exact (upstream's input resize)."},
    {"image_flatten_alpha", py_image_flatten_alpha, METH_O,
     "image_flatten_alpha(rgba) -> uint8 (H, W, 3): alpha composited over white."},
    {"video_write", py_video_write, METH_VARARGS,
     "video_write(frames, path, fps, crf) -> None\n\n"
     "Writes uint8 (T, H, W, 3) frames as H.264 yuv420p MP4 (temp file + rename)."},
    {NULL, NULL, 0, NULL},
};

int lyra_py_add_media(PyObject *m) {
    if (PyModule_AddFunctions(m, media_methods) < 0) return -1;
    if (PyModule_AddIntConstant(m, "IMAGE_MAX_PIXELS", (long)LYRA_IMAGE_MAX_PIXELS) < 0) return -1;
    if (PyModule_AddIntConstant(m, "VIDEO_FPS_MIN", LYRA_VIDEO_FPS_MIN) < 0) return -1;
    if (PyModule_AddIntConstant(m, "VIDEO_FPS_MAX", LYRA_VIDEO_FPS_MAX) < 0) return -1;
    if (PyModule_AddIntConstant(m, "VIDEO_CRF_DEFAULT", LYRA_VIDEO_CRF_DEFAULT) < 0) return -1;
    if (PyModule_AddIntConstant(m, "VIDEO_MAX_SIDE", LYRA_VIDEO_MAX_SIDE) < 0) return -1;
    return 0;
}
