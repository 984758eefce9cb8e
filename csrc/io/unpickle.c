/* Restricted pickle VM (see unpickle.h): binary opcodes only, allow-listed globals with fixed meanings. */
#include "io/unpickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES ((size_t)1 << 24)
#define MAX_LINE 256

/* The allow-list (docs/REFERENCES.md#pytorch-checkpoint-formats and docs/REFERENCES.md#pytorch-checkpoint-formats).
 * Anything not here is refused at GLOBAL time. */
static const lyra_pk_global allowed[] = {
    {"collections", "OrderedDict", LYRA_PK_ROLE_DICT, -1},
    {"builtins", "dict", LYRA_PK_ROLE_DICT, -1},
    {"torch._utils", "_rebuild_tensor_v2", LYRA_PK_ROLE_REBUILD_TENSOR_V2, -1},
    {"torch._utils", "_rebuild_tensor", LYRA_PK_ROLE_REBUILD_TENSOR, -1},
    {"torch._utils", "_rebuild_parameter", LYRA_PK_ROLE_REBUILD_PARAMETER, -1},
    {"torch._utils", "_rebuild_parameter_with_state", LYRA_PK_ROLE_REBUILD_PARAMETER, -1},
    {"torch", "Size", LYRA_PK_ROLE_SIZE, -1},
    {"torch", "device", LYRA_PK_ROLE_DEVICE, -1},
    {"torch", "strided", LYRA_PK_ROLE_LAYOUT, -1},
    {"torch.serialization", "_get_layout", LYRA_PK_ROLE_IDENTITY, -1}, /* _get_layout("torch.strided") */
    {"_codecs", "encode", LYRA_PK_ROLE_CODECS_ENCODE, -1},
    {"torch", "FloatStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_F32},
    {"torch", "DoubleStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_F64},
    {"torch", "HalfStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_F16},
    {"torch", "BFloat16Storage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_BF16},
    {"torch", "LongStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_I64},
    {"torch", "IntStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_I32},
    {"torch", "ShortStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_I16},
    {"torch", "CharStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_I8},
    {"torch", "ByteStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_U8},
    {"torch", "BoolStorage", LYRA_PK_ROLE_STORAGE_CLASS, LYRA_ST_BOOL},
    {"torch", "float32", LYRA_PK_ROLE_DTYPE, LYRA_ST_F32},
    {"torch", "float", LYRA_PK_ROLE_DTYPE, LYRA_ST_F32},
    {"torch", "float64", LYRA_PK_ROLE_DTYPE, LYRA_ST_F64},
    {"torch", "double", LYRA_PK_ROLE_DTYPE, LYRA_ST_F64},
    {"torch", "float16", LYRA_PK_ROLE_DTYPE, LYRA_ST_F16},
    {"torch", "half", LYRA_PK_ROLE_DTYPE, LYRA_ST_F16},
    {"torch", "bfloat16", LYRA_PK_ROLE_DTYPE, LYRA_ST_BF16},
    {"torch", "int64", LYRA_PK_ROLE_DTYPE, LYRA_ST_I64},
    {"torch", "long", LYRA_PK_ROLE_DTYPE, LYRA_ST_I64},
    {"torch", "int32", LYRA_PK_ROLE_DTYPE, LYRA_ST_I32},
    {"torch", "int", LYRA_PK_ROLE_DTYPE, LYRA_ST_I32},
    {"torch", "int16", LYRA_PK_ROLE_DTYPE, LYRA_ST_I16},
    {"torch", "short", LYRA_PK_ROLE_DTYPE, LYRA_ST_I16},
    {"torch", "int8", LYRA_PK_ROLE_DTYPE, LYRA_ST_I8},
    {"torch", "uint8", LYRA_PK_ROLE_DTYPE, LYRA_ST_U8},
    {"torch", "uint16", LYRA_PK_ROLE_DTYPE, LYRA_ST_U16},
    {"torch", "uint32", LYRA_PK_ROLE_DTYPE, LYRA_ST_U32},
    {"torch", "uint64", LYRA_PK_ROLE_DTYPE, LYRA_ST_U64},
    {"torch", "bool", LYRA_PK_ROLE_DTYPE, LYRA_ST_BOOL},
    {"torch", "float8_e4m3fn", LYRA_PK_ROLE_DTYPE, LYRA_ST_F8_E4M3},
    {"torch", "float8_e5m2", LYRA_PK_ROLE_DTYPE, LYRA_ST_F8_E5M2},
    {"torch", "complex64", LYRA_PK_ROLE_DTYPE, -1},
    {"torch", "complex128", LYRA_PK_ROLE_DTYPE, -1},
    {"torch.distributed.checkpoint.metadata", "Metadata", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed.checkpoint.metadata", "TensorStorageMetadata", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed.checkpoint.metadata", "ChunkStorageMetadata", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed.checkpoint.metadata", "BytesStorageMetadata", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed.checkpoint.metadata", "MetadataIndex", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed.checkpoint.metadata", "StorageMeta", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed.checkpoint.metadata", "TensorProperties", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING", LYRA_PK_ROLE_IDENTITY, -1},
    {"torch.distributed.checkpoint.filesystem", "_StorageInfo", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed._shard.sharded_tensor.metadata", "TensorProperties", LYRA_PK_ROLE_STUB_CLASS, -1},
    {"torch.distributed._shard.sharded_tensor.metadata", "MEM_FORMAT_ENCODING", LYRA_PK_ROLE_IDENTITY, -1},
    {"pathlib", "PosixPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib", "PurePosixPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib", "WindowsPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib", "PureWindowsPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib", "Path", LYRA_PK_ROLE_PATH, -1},
    {"pathlib._local", "PosixPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib._local", "PurePosixPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib._local", "WindowsPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib._local", "PureWindowsPath", LYRA_PK_ROLE_PATH, -1},
    {"pathlib._local", "Path", LYRA_PK_ROLE_PATH, -1},
};

void lyra_pk_global_qualname(const lyra_pk_global *g, char *buf, size_t size) {
    snprintf(buf, size, "%s.%s", g->module, g->name);
}

typedef struct memo_entry {
    uint32_t key;
    uint32_t used;
    lyra_pk_value *v;
} memo_entry;

typedef struct vm {
    const uint8_t *begin, *p, *end;
    const char *what;
    size_t op_at;                 /* offset of the current opcode, for messages */
    lyra_pk_result *res;
    lyra_pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    memo_entry *memo;
    size_t memo_cap, memo_count;
} vm;

static lyra_status bad(vm *m, const char *fmt, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail ? detail : "");
    return lyra_error(LYRA_ERR_FORMAT, "%s: pickle: %s (opcode at byte %zu)", m->what, msg, m->op_at);
}

static lyra_status oom(vm *m) { return lyra_error(LYRA_ERR_OOM, "%s: pickle: out of memory", m->what); }

static lyra_status new_node(vm *m, lyra_pk_kind kind, lyra_pk_value **out) {
    if (m->res->n_nodes >= MAX_NODES) return bad(m, "more than 16M objects%s", NULL);
    lyra_pk_value *v = calloc(1, sizeof *v);
    if (!v) return oom(m);
    v->kind = kind;
    v->dtype = -1;
    v->next_alloc = m->res->all;
    m->res->all = v;
    m->res->n_nodes++;
    *out = v;
    return LYRA_OK;
}

static lyra_status grow(vm *m, void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return LYRA_OK;
    size_t c = *cap ? *cap : 8;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return oom(m);
        c *= 2;
    }
    void *nb = realloc(*buf, c * elem);
    if (!nb) return oom(m);
    *buf = nb;
    *cap = c;
    return LYRA_OK;
}

static lyra_status add_item(vm *m, lyra_pk_value *c, lyra_pk_value *item) {
    LYRA_TRY(grow(m, (void **)&c->items, &c->cap, c->n + 1, sizeof *c->items));
    c->items[c->n++] = item;
    return LYRA_OK;
}

static lyra_status push(vm *m, lyra_pk_value *v) {
    LYRA_TRY(grow(m, (void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack));
    m->stack[m->sp++] = v;
    return LYRA_OK;
}

static size_t stack_base(const vm *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static lyra_status pop(vm *m, lyra_pk_value **out) {
    if (m->sp <= stack_base(m)) return bad(m, "stack underflow%s", NULL);
    *out = m->stack[--m->sp];
    return LYRA_OK;
}

static lyra_status top(vm *m, lyra_pk_value **out) {
    if (m->sp <= stack_base(m)) return bad(m, "stack underflow%s", NULL);
    *out = m->stack[m->sp - 1];
    return LYRA_OK;
}

/* Pops back to the last MARK; the popped values are m->stack[*base .. *base + *count). */
static lyra_status pop_mark(vm *m, size_t *base, size_t *count) {
    if (m->n_marks == 0) return bad(m, "MARK expected on the stack%s", NULL);
    *base = m->marks[--m->n_marks];
    *count = m->sp - *base;
    m->sp = *base;
    return LYRA_OK;
}

static lyra_status take(vm *m, size_t n, const uint8_t **out) {
    if ((size_t)(m->end - m->p) < n) return bad(m, "truncated stream%s", NULL);
    *out = m->p;
    m->p += n;
    return LYRA_OK;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- memo (open addressing, uint32 keys) ------------------------------------------------------- */

static lyra_pk_value **memo_slot(vm *m, uint32_t key, int insert) {
    if (insert && (m->memo_count + 1) * 2 > m->memo_cap) {
        size_t cap = m->memo_cap ? m->memo_cap * 2 : 64;
        memo_entry *nm = calloc(cap, sizeof *nm);
        if (!nm) return NULL;
        for (size_t i = 0; i < m->memo_cap; i++) {
            if (!m->memo[i].used) continue;
            size_t h = (m->memo[i].key * 2654435761u) & (cap - 1);
            while (nm[h].used) h = (h + 1) & (cap - 1);
            nm[h] = m->memo[i];
        }
        free(m->memo);
        m->memo = nm;
        m->memo_cap = cap;
    }
    if (m->memo_cap == 0) return NULL;
    size_t h = (key * 2654435761u) & (m->memo_cap - 1);
    while (m->memo[h].used) {
        if (m->memo[h].key == key) return &m->memo[h].v;
        h = (h + 1) & (m->memo_cap - 1);
    }
    if (!insert) return NULL;
    m->memo[h].used = 1;
    m->memo[h].key = key;
    m->memo_count++;
    return &m->memo[h].v;
}

static lyra_status memo_put(vm *m, uint64_t key) {
    if (key > UINT32_MAX) return bad(m, "memo index too large%s", NULL);
    lyra_pk_value *v = NULL;
    LYRA_TRY(top(m, &v));
    lyra_pk_value **slot = memo_slot(m, (uint32_t)key, 1);
    if (!slot) return oom(m);
    *slot = v;
    return LYRA_OK;
}

static lyra_status memo_get(vm *m, uint64_t key) {
    lyra_pk_value **slot = key > UINT32_MAX ? NULL : memo_slot(m, (uint32_t)key, 0);
    if (!slot) {
        char d[32];
        snprintf(d, sizeof d, "%llu", (unsigned long long)key);
        return bad(m, "memo entry %s was never stored", d);
    }
    return push(m, *slot);
}

/* ---- value helpers ----------------------------------------------------------------------------- */

static lyra_status make_str(vm *m, lyra_pk_kind kind, const uint8_t *s, size_t n) {
    lyra_pk_value *v = NULL;
    LYRA_TRY(new_node(m, kind, &v));
    v->str = malloc(n + 1);
    if (!v->str) return oom(m);
    memcpy(v->str, s, n);
    v->str[n] = '\0';
    v->len = n;
    return push(m, v);
}

static lyra_status make_int(vm *m, lyra_pk_kind kind, int64_t i) {
    lyra_pk_value *v = NULL;
    LYRA_TRY(new_node(m, kind, &v));
    v->i = i;
    return push(m, v);
}

static lyra_status make_seq(vm *m, lyra_pk_kind kind, lyra_pk_value **items, size_t n, lyra_pk_value **out) {
    lyra_pk_value *v = NULL;
    LYRA_TRY(new_node(m, kind, &v));
    if (n) {
        v->items = malloc(n * sizeof *v->items);
        if (!v->items) return oom(m);
        memcpy(v->items, items, n * sizeof *v->items);
    }
    v->n = v->cap = n;
    *out = v;
    return LYRA_OK;
}

static const char *kind_name(const lyra_pk_value *v) {
    static const char *names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict",
                                  "global", "storage", "tensor", "object"};
    return names[v->kind];
}

static lyra_status global_error(vm *m, const lyra_pk_global *g, const char *fmt) {
    char q[300];
    lyra_pk_global_qualname(g, q, sizeof q);
    return bad(m, fmt, q);
}

/* Reads a non-negative int tuple (torch.Size / tuple / list of INT) into dims. */
static lyra_status int_list(vm *m, const lyra_pk_value *v, const char *what, int64_t *dims, int *n) {
    if (!v || (v->kind != LYRA_PK_TUPLE && v->kind != LYRA_PK_LIST)) return bad(m, "tensor %s is not a tuple", what);
    if (v->n > LYRA_PK_MAX_DIMS) return bad(m, "tensor %s has more than 8 dims", what);
    for (size_t k = 0; k < v->n; k++) {
        if (v->items[k]->kind != LYRA_PK_INT || v->items[k]->i < 0)
            return bad(m, "tensor %s holds a value that is not a non-negative int", what);
        dims[k] = v->items[k]->i;
    }
    *n = (int)v->n;
    return LYRA_OK;
}

/* _rebuild_tensor(_v2)(storage, storage_offset, size, stride, ...): checks that every element the
 * view can address lies inside the storage, so the Python side can slice the bytes without checks. */
static lyra_status rebuild_tensor(vm *m, lyra_pk_value *args, lyra_pk_value **out) {
    if (args->n < 4) return bad(m, "_rebuild_tensor needs at least 4 arguments%s", NULL);
    lyra_pk_value *storage = args->items[0], *offset = args->items[1];
    if (storage->kind != LYRA_PK_STORAGE) return bad(m, "_rebuild_tensor argument 0 is a %s, not a storage",
                                                     kind_name(storage));
    if (offset->kind != LYRA_PK_INT || offset->i < 0)
        return bad(m, "_rebuild_tensor storage offset is not a non-negative int%s", NULL);
    lyra_pk_value *t = NULL;
    LYRA_TRY(new_node(m, LYRA_PK_TENSOR, &t));
    int nd_size, nd_stride;
    LYRA_TRY(int_list(m, args->items[2], "size", t->shape, &nd_size));
    LYRA_TRY(int_list(m, args->items[3], "stride", t->stride, &nd_stride));
    if (nd_size != nd_stride) return bad(m, "tensor size and stride have different lengths%s", NULL);
    t->ndim = nd_size;
    t->storage = storage;
    t->offset = offset->i;
    t->dtype = storage->dtype;
    int64_t numel = 1, last = offset->i;
    for (int d = 0; d < t->ndim; d++) {
        if (__builtin_mul_overflow(numel, t->shape[d], &numel)) return bad(m, "tensor size overflows%s", NULL);
        if (t->shape[d] > 0) {
            int64_t span;
            if (__builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &span) || __builtin_add_overflow(last, span, &last))
                return bad(m, "tensor view overflows%s", NULL);
        }
    }
    if (numel > 0 && last >= storage->i) {
        char d[96];
        snprintf(d, sizeof d, "element %lld but the storage '%.40s' has %lld", (long long)last, storage->str,
                 (long long)storage->i);
        return bad(m, "tensor view reaches %s", d);
    }
    if (numel == 0 && offset->i > storage->i) return bad(m, "tensor storage offset is past the storage end%s", NULL);
    if (numel > (int64_t)1 << 56) return bad(m, "tensor too large%s", NULL);
    *out = t;
    return LYRA_OK;
}

static lyra_status call_global(vm *m, const lyra_pk_global *g, lyra_pk_value *args, lyra_pk_value **out) {
    lyra_pk_value *v = NULL;
    switch (g->role) {
    case LYRA_PK_ROLE_DICT:
        LYRA_TRY(new_node(m, LYRA_PK_DICT, &v));
        if (args->n == 1 && args->items[0]->kind == LYRA_PK_DICT) {
            for (size_t k = 0; k < args->items[0]->n; k++) LYRA_TRY(add_item(m, v, args->items[0]->items[k]));
        } else if (args->n == 1 && (args->items[0]->kind == LYRA_PK_LIST || args->items[0]->kind == LYRA_PK_TUPLE)) {
            for (size_t k = 0; k < args->items[0]->n; k++) {
                lyra_pk_value *pair = args->items[0]->items[k];
                if ((pair->kind != LYRA_PK_TUPLE && pair->kind != LYRA_PK_LIST) || pair->n != 2)
                    return global_error(m, g, "%s() needs (key, value) pairs");
                LYRA_TRY(add_item(m, v, pair->items[0]));
                LYRA_TRY(add_item(m, v, pair->items[1]));
            }
        } else if (args->n != 0) {
            return global_error(m, g, "unsupported arguments to %s()");
        }
        *out = v;
        return LYRA_OK;
    case LYRA_PK_ROLE_REBUILD_TENSOR_V2:
        if (args->n != 6 && args->n != 7) return global_error(m, g, "%s needs 6 or 7 arguments");
        return rebuild_tensor(m, args, out);
    case LYRA_PK_ROLE_REBUILD_TENSOR:
        if (args->n != 4) return global_error(m, g, "%s needs 4 arguments");
        return rebuild_tensor(m, args, out);
    case LYRA_PK_ROLE_REBUILD_PARAMETER:
        if ((args->n != 3 && args->n != 4) || args->items[0]->kind != LYRA_PK_TENSOR)
            return global_error(m, g, "%s needs (tensor, requires_grad, hooks[, state])");
        *out = args->items[0];
        return LYRA_OK;
    case LYRA_PK_ROLE_SIZE:
        if (args->n != 1 || (args->items[0]->kind != LYRA_PK_TUPLE && args->items[0]->kind != LYRA_PK_LIST))
            return global_error(m, g, "%s() needs one tuple of ints");
        for (size_t k = 0; k < args->items[0]->n; k++)
            if (args->items[0]->items[k]->kind != LYRA_PK_INT) return global_error(m, g, "%s() needs ints");
        return make_seq(m, LYRA_PK_TUPLE, args->items[0]->items, args->items[0]->n, out);
    case LYRA_PK_ROLE_DEVICE: {
        if (args->n < 1 || args->n > 2 || args->items[0]->kind != LYRA_PK_STR)
            return global_error(m, g, "%s() needs a device string");
        LYRA_TRY(new_node(m, LYRA_PK_STR, &v));
        char buf[96];
        if (args->n == 2 && args->items[1]->kind == LYRA_PK_INT)
            snprintf(buf, sizeof buf, "%.60s:%lld", args->items[0]->str, (long long)args->items[1]->i);
        else
            snprintf(buf, sizeof buf, "%.60s", args->items[0]->str);
        v->len = strlen(buf);
        v->str = malloc(v->len + 1);
        if (!v->str) return oom(m);
        memcpy(v->str, buf, v->len + 1);
        *out = v;
        return LYRA_OK;
    }
    case LYRA_PK_ROLE_CODECS_ENCODE: {
        /* _codecs.encode(text, 'latin1'): protocol 2's spelling of a bytes object. Each code point of
         * the UTF-8 text must be < 256 and becomes one byte. */
        if (args->n != 2 || args->items[0]->kind != LYRA_PK_STR || args->items[1]->kind != LYRA_PK_STR ||
            (strcmp(args->items[1]->str, "latin1") != 0 && strcmp(args->items[1]->str, "latin-1") != 0))
            return global_error(m, g, "%s() is only allowed as encode(str, 'latin1')");
        const uint8_t *s = (const uint8_t *)args->items[0]->str;
        size_t n = args->items[0]->len, k = 0;
        LYRA_TRY(new_node(m, LYRA_PK_BYTES, &v));
        v->str = malloc(n + 1);
        if (!v->str) return oom(m);
        for (size_t i = 0; i < n; i++) {
            if (s[i] < 0x80) v->str[k++] = (char)s[i];
            else if ((s[i] == 0xC2 || s[i] == 0xC3) && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
                v->str[k++] = (char)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3F));
                i++;
            } else {
                return global_error(m, g, "%s(): text is not latin-1");
            }
        }
        v->str[k] = '\0';
        v->len = k;
        *out = v;
        return LYRA_OK;
    }
    case LYRA_PK_ROLE_STUB_CLASS:
        LYRA_TRY(new_node(m, LYRA_PK_OBJECT, &v));
        v->global = g;
        v->args = args;
        *out = v;
        return LYRA_OK;
    case LYRA_PK_ROLE_IDENTITY:
        if (args->n != 1) return global_error(m, g, "%s() needs one argument");
        *out = args->items[0];
        return LYRA_OK;
    case LYRA_PK_ROLE_PATH: {
        size_t total = 1;
        for (size_t k = 0; k < args->n; k++) {
            if (args->items[k]->kind != LYRA_PK_STR) return global_error(m, g, "%s() needs strings");
            total += args->items[k]->len + 1;
        }
        LYRA_TRY(new_node(m, LYRA_PK_STR, &v));
        v->str = malloc(total);
        if (!v->str) return oom(m);
        size_t k = 0;
        for (size_t a = 0; a < args->n; a++) {
            if (k > 0 && v->str[k - 1] != '/') v->str[k++] = '/';
            memcpy(v->str + k, args->items[a]->str, args->items[a]->len);
            k += args->items[a]->len;
        }
        v->str[k] = '\0';
        v->len = k;
        *out = v;
        return LYRA_OK;
    }
    case LYRA_PK_ROLE_STORAGE_CLASS:
        return global_error(m, g, "%s may only appear inside a persistent id");
    case LYRA_PK_ROLE_DTYPE:
    case LYRA_PK_ROLE_LAYOUT:
        return global_error(m, g, "%s is not callable");
    }
    return global_error(m, g, "%s: unknown role");
}

static lyra_status op_global(vm *m, const char *module, size_t mlen, const char *name, size_t nlen) {
    for (size_t k = 0; k < sizeof allowed / sizeof allowed[0]; k++) {
        const lyra_pk_global *g = &allowed[k];
        if (strlen(g->module) == mlen && strlen(g->name) == nlen && memcmp(g->module, module, mlen) == 0 &&
            memcmp(g->name, name, nlen) == 0) {
            lyra_pk_value *v = NULL;
            LYRA_TRY(new_node(m, LYRA_PK_GLOBAL, &v));
            v->global = g;
            v->dtype = g->dtype;
            return push(m, v);
        }
    }
    char q[260];
    snprintf(q, sizeof q, "%.*s.%.*s", (int)(mlen > 120 ? 120 : mlen), module, (int)(nlen > 120 ? 120 : nlen), name);
    for (char *c = q; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7F) *c = '?';
    return bad(m, "global '%s' is not allowed in a checkpoint (only tensors, storages, OrderedDict, plain "
                  "containers and torch checkpoint metadata are); refusing to load", q);
}

static lyra_status read_line(vm *m, const char **s, size_t *n) {
    const uint8_t *nl = memchr(m->p, '\n', (size_t)(m->end - m->p) < MAX_LINE ? (size_t)(m->end - m->p) : MAX_LINE);
    if (!nl) return bad(m, "GLOBAL name not terminated by a newline within 256 bytes%s", NULL);
    *s = (const char *)m->p;
    *n = (size_t)(nl - m->p);
    m->p = nl + 1;
    return LYRA_OK;
}

static lyra_status persistent_load(vm *m, lyra_pk_value *pid) {
    if (pid->kind != LYRA_PK_TUPLE || pid->n != 5 || pid->items[0]->kind != LYRA_PK_STR ||
        strcmp(pid->items[0]->str, "storage") != 0)
        return bad(m, "persistent id is not ('storage', class, key, location, numel)%s", NULL);
    lyra_pk_value *cls = pid->items[1], *key = pid->items[2], *loc = pid->items[3], *numel = pid->items[4];
    if (cls->kind != LYRA_PK_GLOBAL || cls->global->role != LYRA_PK_ROLE_STORAGE_CLASS)
        return bad(m, "persistent id does not name a torch storage class%s", NULL);
    if (key->kind != LYRA_PK_STR || loc->kind != LYRA_PK_STR || numel->kind != LYRA_PK_INT || numel->i < 0)
        return bad(m, "persistent id has a bad key, location or size%s", NULL);
    lyra_pk_value *v = NULL;
    LYRA_TRY(new_node(m, LYRA_PK_STORAGE, &v));
    v->dtype = cls->global->dtype;
    v->str = key->str; /* owned by `key`, which lives as long as the result */
    v->len = key->len;
    v->i = numel->i;
    return push(m, v);
}

static lyra_status set_items(vm *m, lyra_pk_value *dict, lyra_pk_value **kv, size_t n) {
    if (dict->kind != LYRA_PK_DICT) return bad(m, "SETITEM(S) on a %s (only dicts are allowed)", kind_name(dict));
    if (n % 2) return bad(m, "SETITEMS with an odd number of values%s", NULL);
    for (size_t k = 0; k < n; k++) LYRA_TRY(add_item(m, dict, kv[k]));
    return LYRA_OK;
}

static lyra_status step(vm *m, int *done) {
    const uint8_t *a = NULL;
    lyra_pk_value *v = NULL, *w = NULL, *x = NULL;
    size_t base = 0, count = 0;
    m->op_at = (size_t)(m->p - m->begin);
    LYRA_TRY(take(m, 1, &a));
    uint8_t op = a[0];
    switch (op) {
    case 0x80: /* PROTO */
        LYRA_TRY(take(m, 1, &a));
        if (a[0] > 5) return bad(m, "unsupported pickle protocol%s", NULL);
        return LYRA_OK;
    case 0x95: return take(m, 8, &a); /* FRAME: framing is only a read-ahead hint */
    case '.': /* STOP */
        LYRA_TRY(pop(m, &v));
        m->res->root = v;
        *done = 1;
        return LYRA_OK;
    case '(': /* MARK */
        LYRA_TRY(grow(m, (void **)&m->marks, &m->marks_cap, m->n_marks + 1, sizeof *m->marks));
        m->marks[m->n_marks++] = m->sp;
        return LYRA_OK;
    case '0': /* POP */
        if (m->sp > stack_base(m)) {
            m->sp--;
            return LYRA_OK;
        }
        return pop_mark(m, &base, &count);
    case '1': return pop_mark(m, &base, &count); /* POP_MARK */
    case '2': LYRA_TRY(top(m, &v)); return push(m, v); /* DUP */
    case 'N': return make_int(m, LYRA_PK_NONE, 0);
    case 0x88: return make_int(m, LYRA_PK_BOOL, 1);
    case 0x89: return make_int(m, LYRA_PK_BOOL, 0);
    case 'J': LYRA_TRY(take(m, 4, &a)); return make_int(m, LYRA_PK_INT, (int32_t)(uint32_t)le(a, 4));
    case 'K': LYRA_TRY(take(m, 1, &a)); return make_int(m, LYRA_PK_INT, a[0]);
    case 'M': LYRA_TRY(take(m, 2, &a)); return make_int(m, LYRA_PK_INT, (int64_t)le(a, 2));
    case 0x8a: /* LONG1 */
    case 0x8b: { /* LONG4 */
        uint64_t n;
        if (op == 0x8a) { LYRA_TRY(take(m, 1, &a)); n = a[0]; }
        else { LYRA_TRY(take(m, 4, &a)); n = le(a, 4); }
        if (n > 8) return bad(m, "integer wider than 64 bits%s", NULL);
        LYRA_TRY(take(m, (size_t)n, &a));
        uint64_t u = le(a, (int)n);
        if (n > 0 && n < 8 && (a[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        return make_int(m, LYRA_PK_INT, (int64_t)u);
    }
    case 'G': { /* BINFLOAT: big-endian double */
        LYRA_TRY(take(m, 8, &a));
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | a[i];
        LYRA_TRY(new_node(m, LYRA_PK_FLOAT, &v));
        memcpy(&v->f, &u, 8);
        return push(m, v);
    }
    case 'X': case 0x8c: case 0x8d: /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
    case 'T': case 'U':             /* BINSTRING, SHORT_BINSTRING (decoded as text by Python 3) */
    case 'B': case 'C': case 0x8e: case 0x96: { /* BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8 */
        int width = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 4;
        LYRA_TRY(take(m, (size_t)width, &a));
        uint64_t n = le(a, width);
        if (op == 'T' && (n >> 31)) return bad(m, "negative string length%s", NULL);
        if (n > (uint64_t)(m->end - m->p)) return bad(m, "string runs past the end of the stream%s", NULL);
        LYRA_TRY(take(m, (size_t)n, &a));
        int is_text = op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U';
        return make_str(m, is_text ? LYRA_PK_STR : LYRA_PK_BYTES, a, (size_t)n);
    }
    case ')': LYRA_TRY(make_seq(m, LYRA_PK_TUPLE, NULL, 0, &v)); return push(m, v);
    case 't': /* TUPLE */
        LYRA_TRY(pop_mark(m, &base, &count));
        LYRA_TRY(make_seq(m, LYRA_PK_TUPLE, m->stack + base, count, &v));
        return push(m, v);
    case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
        size_t n = (size_t)(op - 0x84);
        if (m->sp < stack_base(m) + n) return bad(m, "stack underflow%s", NULL);
        m->sp -= n;
        LYRA_TRY(make_seq(m, LYRA_PK_TUPLE, m->stack + m->sp, n, &v));
        return push(m, v);
    }
    case ']': case 0x8f: /* EMPTY_LIST, EMPTY_SET (a set becomes a list) */
        LYRA_TRY(make_seq(m, LYRA_PK_LIST, NULL, 0, &v));
        return push(m, v);
    case 'l': /* LIST */
        LYRA_TRY(pop_mark(m, &base, &count));
        LYRA_TRY(make_seq(m, LYRA_PK_LIST, m->stack + base, count, &v));
        return push(m, v);
    case 0x91: /* FROZENSET -> tuple */
        LYRA_TRY(pop_mark(m, &base, &count));
        LYRA_TRY(make_seq(m, LYRA_PK_TUPLE, m->stack + base, count, &v));
        return push(m, v);
    case 'a': /* APPEND */
        LYRA_TRY(pop(m, &w));
        LYRA_TRY(top(m, &v));
        if (v->kind != LYRA_PK_LIST) return bad(m, "APPEND to a %s (only lists are allowed)", kind_name(v));
        return add_item(m, v, w);
    case 'e': case 0x90: /* APPENDS, ADDITEMS */
        LYRA_TRY(pop_mark(m, &base, &count));
        LYRA_TRY(top(m, &v));
        if (v->kind != LYRA_PK_LIST) return bad(m, "APPENDS to a %s (only lists are allowed)", kind_name(v));
        for (size_t k = 0; k < count; k++) LYRA_TRY(add_item(m, v, m->stack[base + k]));
        return LYRA_OK;
    case '}': /* EMPTY_DICT */
        LYRA_TRY(make_seq(m, LYRA_PK_DICT, NULL, 0, &v));
        return push(m, v);
    case 'd': /* DICT */
        LYRA_TRY(pop_mark(m, &base, &count));
        LYRA_TRY(make_seq(m, LYRA_PK_DICT, NULL, 0, &v));
        LYRA_TRY(set_items(m, v, m->stack + base, count));
        return push(m, v);
    case 's': /* SETITEM */
        LYRA_TRY(pop(m, &x));
        LYRA_TRY(pop(m, &w));
        LYRA_TRY(top(m, &v));
        {
            lyra_pk_value *kv[2] = {w, x};
            return set_items(m, v, kv, 2);
        }
    case 'u': /* SETITEMS */
        LYRA_TRY(pop_mark(m, &base, &count));
        LYRA_TRY(top(m, &v));
        return set_items(m, v, m->stack + base, count);
    case 'c': { /* GLOBAL "module\nname\n" */
        const char *mod = NULL, *name = NULL;
        size_t ml = 0, nl = 0;
        LYRA_TRY(read_line(m, &mod, &ml));
        LYRA_TRY(read_line(m, &name, &nl));
        return op_global(m, mod, ml, name, nl);
    }
    case 0x93: /* STACK_GLOBAL */
        LYRA_TRY(pop(m, &w));
        LYRA_TRY(pop(m, &v));
        if (v->kind != LYRA_PK_STR || w->kind != LYRA_PK_STR) return bad(m, "STACK_GLOBAL needs two strings%s", NULL);
        return op_global(m, v->str, v->len, w->str, w->len);
    case 'R': /* REDUCE */
        LYRA_TRY(pop(m, &w));
        LYRA_TRY(pop(m, &v));
        if (v->kind != LYRA_PK_GLOBAL) return bad(m, "REDUCE of a %s (only allowed globals can be called)", kind_name(v));
        if (w->kind != LYRA_PK_TUPLE) return bad(m, "REDUCE arguments are a %s, not a tuple", kind_name(w));
        LYRA_TRY(call_global(m, v->global, w, &x));
        return push(m, x);
    case 0x81: /* NEWOBJ */
    case 0x92: /* NEWOBJ_EX */
        if (op == 0x92) {
            LYRA_TRY(pop(m, &x));
            if (x->kind != LYRA_PK_DICT || x->n != 0) return bad(m, "NEWOBJ_EX with keyword arguments%s", NULL);
        }
        LYRA_TRY(pop(m, &w));
        LYRA_TRY(pop(m, &v));
        if (v->kind != LYRA_PK_GLOBAL) return bad(m, "NEWOBJ of a %s (only allowed classes)", kind_name(v));
        if (w->kind != LYRA_PK_TUPLE) return bad(m, "NEWOBJ arguments are a %s, not a tuple", kind_name(w));
        if (v->global->role == LYRA_PK_ROLE_DICT) {
            LYRA_TRY(make_seq(m, LYRA_PK_DICT, NULL, 0, &x));
            return push(m, x);
        }
        if (v->global->role != LYRA_PK_ROLE_STUB_CLASS) return global_error(m, v->global, "NEWOBJ of %s is not allowed");
        LYRA_TRY(call_global(m, v->global, w, &x));
        return push(m, x);
    case 'b': /* BUILD */
        LYRA_TRY(pop(m, &w));
        LYRA_TRY(top(m, &v));
        if (v->kind == LYRA_PK_OBJECT) {
            v->state = w;
            return LYRA_OK;
        }
        /* A state_dict's `_metadata` attribute (and tensor-side python state) is dropped. */
        if (v->kind == LYRA_PK_DICT || v->kind == LYRA_PK_TENSOR) return LYRA_OK;
        return bad(m, "BUILD on a %s is not allowed", kind_name(v));
    case 'Q': /* BINPERSID */
        LYRA_TRY(pop(m, &v));
        return persistent_load(m, v);
    case 'q': LYRA_TRY(take(m, 1, &a)); return memo_put(m, a[0]);
    case 'r': LYRA_TRY(take(m, 4, &a)); return memo_put(m, le(a, 4));
    case 0x94: return memo_put(m, m->memo_count); /* MEMOIZE */
    case 'h': LYRA_TRY(take(m, 1, &a)); return memo_get(m, a[0]);
    case 'j': LYRA_TRY(take(m, 4, &a)); return memo_get(m, le(a, 4));
    case 'i': case 'o': case 0x82: case 0x83: case 0x84: case 0x97: case 0x98: {
        char d[8];
        snprintf(d, sizeof d, "0x%02x", op);
        return bad(m, "opcode %s (INST/OBJ/EXT/out-of-band buffer) is refused by the restricted reader", d);
    }
    default: {
        char d[8];
        snprintf(d, sizeof d, "0x%02x", op);
        return bad(m, "opcode %s is not supported (text-mode pickle, or not a pickle)", d);
    }
    }
}

lyra_status lyra_pk_load(const uint8_t *data, size_t len, const char *what, lyra_pk_result *res) {
    memset(res, 0, sizeof *res);
    vm m = {data, data, data + len, what, 0, res, NULL, 0, 0, NULL, 0, 0, NULL, 0, 0};
    /* The stack is never NULL, so `m.stack + base` is always a valid pointer, even for empty ranges. */
    lyra_status s = grow(&m, (void **)&m.stack, &m.stack_cap, 64, sizeof *m.stack);
    int done = 0;
    while (!done && s == LYRA_OK) {
        if (m.p >= m.end) {
            m.op_at = len;
            s = bad(&m, "stream ended without STOP%s", NULL);
            break;
        }
        s = step(&m, &done);
    }
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (s != LYRA_OK) res->root = NULL;
    return s;
}

void lyra_pk_free(lyra_pk_result *res) {
    lyra_pk_value *v = res->all;
    while (v) {
        lyra_pk_value *next = v->next_alloc;
        if (v->kind != LYRA_PK_STORAGE) free(v->str);
        free(v->items);
        free(v);
        v = next;
    }
    memset(res, 0, sizeof *res);
}
