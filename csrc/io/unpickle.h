/* A restricted pickle reader for PyTorch checkpoints: it never imports or calls anything.
 *
 * It interprets the binary pickle opcodes (protocols 2-5; the text opcodes of protocol 0/1 and the
 * extension registry are refused) and builds a value graph of plain nodes. GLOBAL / STACK_GLOBAL may
 * only name the (module, name) pairs of the allow-list below (docs/REFERENCES.md#pytorch-checkpoint-formats); any other
 * global - os.system, builtins.eval, numpy's reconstructors - stops the load with LYRA_ERR_FORMAT
 * naming it, before anything else happens. REDUCE / NEWOBJ / BUILD act only on allowed globals, each
 * with a fixed, checked meaning:
 *   collections.OrderedDict (and builtins.dict)  -> DICT (a BUILD state such as `_metadata` is dropped)
 *   torch.<X>Storage (typed storage classes)     -> via BINPERSID ('storage', cls, key, location, numel)
 *                                                   -> STORAGE {dtype, key, numel}
 *   torch._utils._rebuild_tensor_v2 / _rebuild_tensor
 *                                                -> TENSOR {storage, offset, shape, stride}, bounds
 *                                                   checked against the storage's numel
 *   torch._utils._rebuild_parameter(_with_state) -> the tensor argument
 *   torch.Size                                   -> TUPLE of its argument
 *   torch.<dtype>, torch.strided, torch.device    -> GLOBAL value nodes (dtype tokens, strings)
 *   _codecs.encode(str, 'latin1')                -> BYTES (how protocol 2 pickles bytes)
 *   DCP metadata dataclasses (Metadata, TensorStorageMetadata, ChunkStorageMetadata,
 *   BytesStorageMetadata, MetadataIndex, StorageMeta, TensorProperties, _StorageInfo)
 *                                                -> OBJECT {class, args, state} (NEWOBJ + BUILD)
 *   _MEM_FORMAT_ENCODING(v), torch.serialization._get_layout(name)
 *                                                -> its argument
 *   pathlib.PosixPath(...) and friends           -> STR, the parts joined by '/'
 * Limits (all user-causable, all errors): nodes, memo entries, containers and input are bounded;
 * malformed or truncated streams give LYRA_ERR_FORMAT with the byte offset. */
#ifndef LYRA_IO_UNPICKLE_H
#define LYRA_IO_UNPICKLE_H

#include "io/safetensors.h"
#include "lyra2.h"

typedef enum lyra_pk_kind {
    LYRA_PK_NONE = 0,
    LYRA_PK_BOOL,     /* i = 0/1 */
    LYRA_PK_INT,      /* i */
    LYRA_PK_FLOAT,    /* f */
    LYRA_PK_STR,      /* str, len: the raw bytes (UTF-8 expected; the Python glue decodes), NUL-terminated */
    LYRA_PK_BYTES,    /* str, len */
    LYRA_PK_TUPLE,    /* items[n] */
    LYRA_PK_LIST,     /* items[n] */
    LYRA_PK_DICT,     /* items[2n]: key, value, key, value ... (insertion order; later duplicates win) */
    LYRA_PK_GLOBAL,   /* global: an allowed global used as a value (dtype token, class, function) */
    LYRA_PK_STORAGE,  /* dtype, str = key, i = numel (elements) */
    LYRA_PK_TENSOR,   /* storage, offset, ndim, shape, stride (elements) */
    LYRA_PK_OBJECT    /* global = class; args (TUPLE or NULL); state (any or NULL) */
} lyra_pk_kind;

typedef enum lyra_pk_role {
    LYRA_PK_ROLE_DICT = 0,
    LYRA_PK_ROLE_STORAGE_CLASS,
    LYRA_PK_ROLE_REBUILD_TENSOR_V2,
    LYRA_PK_ROLE_REBUILD_TENSOR,
    LYRA_PK_ROLE_REBUILD_PARAMETER,
    LYRA_PK_ROLE_SIZE,
    LYRA_PK_ROLE_DTYPE,
    LYRA_PK_ROLE_LAYOUT,
    LYRA_PK_ROLE_DEVICE,
    LYRA_PK_ROLE_CODECS_ENCODE,
    LYRA_PK_ROLE_STUB_CLASS,
    LYRA_PK_ROLE_IDENTITY,
    LYRA_PK_ROLE_PATH
} lyra_pk_role;

typedef struct lyra_pk_global {
    const char *module;
    const char *name;
    lyra_pk_role role;
    int dtype;            /* lyra_st_dtype for storage classes and dtypes; -1 if none */
} lyra_pk_global;

#define LYRA_PK_MAX_DIMS 8

typedef struct lyra_pk_value lyra_pk_value;
struct lyra_pk_value {
    lyra_pk_kind kind;
    int64_t i;
    double f;
    char *str;
    size_t len;
    lyra_pk_value **items;
    size_t n, cap;
    const lyra_pk_global *global;
    lyra_pk_value *storage, *args, *state;
    int dtype;
    int ndim;
    int64_t offset;
    int64_t shape[LYRA_PK_MAX_DIMS], stride[LYRA_PK_MAX_DIMS];
    /* private */
    lyra_pk_value *next_alloc;
    int mark;             /* scratch for graph walkers (0 when returned) */
};

typedef struct lyra_pk_result {
    lyra_pk_value *root;
    lyra_pk_value *all;   /* every node, for freeing */
    size_t n_nodes;
} lyra_pk_result;

/* Reads one pickle from data[0..len). `what` names the source in messages. On success res->root is
 * the unpickled object; free with lyra_pk_free (also safe after a failure). */
lyra_status lyra_pk_load(const uint8_t *data, size_t len, const char *what, lyra_pk_result *res);
void lyra_pk_free(lyra_pk_result *res);

/* "module.name" of a global, for messages and for the Python side ("torch.bfloat16" etc). */
void lyra_pk_global_qualname(const lyra_pk_global *g, char *buf, size_t size);

#endif
