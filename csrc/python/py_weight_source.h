/* A network's `weights` argument as a table of named tensor descriptors for the model loaders (DiT, VAE, umT5,
 * CLIP, MoGe, DA3).
 *
 * The argument is either a path (str, bytes, os.PathLike) to a safetensors file, opened over an mmap by the C
 * reader so a bf16/f16 checkpoint keeps its storage and is copied only once (by the loader, into its carved
 * allocation), or a mapping name -> array, snapshotted by lyra_py_named_arrays. The descriptors point into that
 * mmap or into the snapshot's arrays, so they are valid until lyra_py_wsource_free; loaders copy what they keep.
 * Which dtypes and ranks a network accepts is the loader's business: a dtype or rank the runtime cannot
 * describe is marked LYRA_DTYPE_COUNT and reported by name when (and only when) the network needs that tensor.
 *
 * A third kind: random weights of given shapes (lyra2.testing.RandomWeights, any object with a
 * `_lyra2_random_weights` attribute = (seed, [(name, shape, dtype)]), dtype "f32", "bf16" or "f16"): descriptors
 * with names, shapes and dtypes but no data (data NULL, `random` set); only loaders that fill random weights
 * themselves (models/dit.h lyra_dit_load_random) accept them. */
#ifndef LYRA_PY_WEIGHT_SOURCE_H
#define LYRA_PY_WEIGHT_SOURCE_H

#include "py_common.h"

#include "io/safetensors.h"
#include "models/text_weights.h"

typedef struct lyra_py_wsource {
    lyra_text_wsource src;  /* lookup / ctx / names / n_names, ready to hand to a loader (ctx = this struct) */
    Py_ssize_t n;           /* number of tensors */
    lyra_tensor *tensors;   /* [n] contiguous descriptors; tensors[i].name == names[i] */
    const char **names;     /* [n] lookup names (prefix stripped), pointing into `file` or `items` */
    lyra_st_file *file;     /* from a path: the open file, entry i is file->tensors[i]; else NULL */
    PyObject *items;        /* from a mapping: the (str, ndarray) list of lyra_py_named_arrays, entry i is
                               items[i]; else NULL */
    int random;             /* random weights: the descriptors have no data, `seed` picks the values */
    uint64_t seed;
} lyra_py_wsource;

/* Fills *ws from `weights` (a path or a mapping, see above). `what` names the argument in messages ("weights",
 * "LoRA"); narrow_f64 converts float64 arrays of a mapping to float32; strip_prefix (or NULL) is removed from
 * the front of every name that starts with it (checkpoints saved with a wrapper's "model." prefix). The GIL is
 * released while the file is opened. Returns 0, or -1 with a Python exception set and *ws empty (safe to free). */
int lyra_py_wsource_open(lyra_py_wsource *ws, PyObject *weights, const char *what, int narrow_f64,
                         const char *strip_prefix);

/* The same, also accepting random weights (ws->random: descriptors without data) for a loader that fills them. */
int lyra_py_wsource_open_random(lyra_py_wsource *ws, PyObject *weights, const char *what, int narrow_f64,
                                const char *strip_prefix);

/* The descriptor named `name` (ctx is a lyra_py_wsource), or NULL; a lyra_tensor_lookup_fn. Linear search: the
 * loaders look each tensor up once. */
const lyra_tensor *lyra_py_wsource_lookup(void *ctx, const char *name);

/* Releases the table, the file and the snapshot (needs the GIL); leaves *ws zeroed. */
void lyra_py_wsource_free(lyra_py_wsource *ws);

#endif
