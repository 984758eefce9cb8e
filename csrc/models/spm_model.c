/* Reader for the SentencePiece ModelProto subset described in spm_model.h.
 *
 * Protobuf wire format: each field is a varint key (field number << 3 | wire type) followed by a varint
 * (type 0), 8 bytes (1), a varint length and that many bytes (2) or 4 bytes (5). Groups (3, 4) are not
 * used by sentencepiece_model.proto and are rejected. int32 fields hold negative values as 10-byte
 * sign-extended varints, so they are read as uint64 and truncated to 32 bits. */
#include "models/spm_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct pb_reader {
    const uint8_t *p, *end;
} pb_reader;

typedef struct pb_field {
    uint32_t number;
    int wire;
    uint64_t varint;            /* wire 0 */
    uint32_t fixed32;           /* wire 5 */
    const uint8_t *bytes;       /* wire 2 */
    size_t len;                 /* wire 2 */
} pb_field;

static lyra_status pb_varint(pb_reader *r, uint64_t *v, const char *what, const char *field) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return lyra_error(LYRA_ERR_FORMAT, "%s: truncated varint in %s", what, field);
        uint8_t b = *r->p++;
        if (shift == 63 && (b & 0x7e)) break; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return LYRA_OK;
        }
    }
    return lyra_error(LYRA_ERR_FORMAT, "%s: varint longer than 64 bits in %s", what, field);
}

/* Reads the next field of the message in r (r->p < r->end). */
static lyra_status pb_next(pb_reader *r, pb_field *f, const char *what, const char *msg) {
    uint64_t key = 0;
    LYRA_TRY(pb_varint(r, &key, what, msg));
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return lyra_error(LYRA_ERR_FORMAT, "%s: invalid field number in %s", what, msg);
    f->number = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    size_t left;
    switch (f->wire) {
    case 0: return pb_varint(r, &f->varint, what, msg);
    case 1:
        if (r->end - r->p < 8) return lyra_error(LYRA_ERR_FORMAT, "%s: truncated 64-bit field in %s", what, msg);
        r->p += 8;
        return LYRA_OK;
    case 2: {
        uint64_t n = 0;
        LYRA_TRY(pb_varint(r, &n, what, msg));
        left = (size_t)(r->end - r->p);
        if (n > left)
            return lyra_error(LYRA_ERR_FORMAT, "%s: field %u of %s claims %llu bytes, only %zu remain", what,
                              f->number, msg, (unsigned long long)n, left);
        f->bytes = r->p;
        f->len = (size_t)n;
        r->p += n;
        return LYRA_OK;
    }
    case 5:
        if (r->end - r->p < 4) return lyra_error(LYRA_ERR_FORMAT, "%s: truncated 32-bit field in %s", what, msg);
        f->fixed32 = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
        r->p += 4;
        return LYRA_OK;
    default:
        return lyra_error(LYRA_ERR_FORMAT, "%s: unsupported protobuf wire type %d in %s (field %u)", what, f->wire,
                          msg, f->number);
    }
}

static lyra_status pb_expect(const pb_field *f, int wire, const char *what, const char *name) {
    if (f->wire == wire) return LYRA_OK;
    return lyra_error(LYRA_ERR_FORMAT, "%s: field %s has wire type %d, expected %d", what, name, f->wire, wire);
}

int lyra_utf8_char_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int len;
    uint32_t min;
    if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    uint32_t cp = lyra_utf8_decode(s, len);
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

uint32_t lyra_utf8_decode(const uint8_t *s, int len) {
    switch (len) {
    case 1: return s[0];
    case 2: return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    case 3: return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    default:
        return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 |
               (s[3] & 0x3f);
    }
}

int lyra_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int l = lyra_utf8_char_len(s + i, n - i);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

/* One SentencePiece message; the text stays in the file buffer until copied by the caller. */
static lyra_status parse_piece(const uint8_t *data, size_t len, int32_t id, const char *what, const uint8_t **text,
                               size_t *text_len, lyra_spm_piece *out) {
    pb_reader r = {data, data + len};
    *text = NULL;
    *text_len = 0;
    out->score = 0.0f;
    out->type = LYRA_SPM_NORMAL;
    while (r.p < r.end) {
        pb_field f;
        LYRA_TRY(pb_next(&r, &f, what, "SentencePiece"));
        if (f.number == 1) {
            LYRA_TRY(pb_expect(&f, 2, what, "SentencePiece.piece"));
            *text = f.bytes;
            *text_len = f.len;
        } else if (f.number == 2) {
            LYRA_TRY(pb_expect(&f, 5, what, "SentencePiece.score"));
            memcpy(&out->score, &f.fixed32, 4);
        } else if (f.number == 3) {
            LYRA_TRY(pb_expect(&f, 0, what, "SentencePiece.type"));
            out->type = (int)(int32_t)f.varint;
        }
    }
    if (!*text || *text_len == 0 || *text_len > 0xffffffu)
        return lyra_error(LYRA_ERR_FORMAT, "%s: piece %d has an empty or missing string", what, (int)id);
    if (!utf8_valid(*text, *text_len))
        return lyra_error(LYRA_ERR_FORMAT, "%s: piece %d is not valid UTF-8", what, (int)id);
    if (!isfinite(out->score))
        return lyra_error(LYRA_ERR_FORMAT, "%s: piece %d has a non-finite score", what, (int)id);
    if (out->type < LYRA_SPM_NORMAL || out->type > LYRA_SPM_BYTE)
        return lyra_error(LYRA_ERR_FORMAT, "%s: piece %d has unknown type %d (allowed 1..6)", what, (int)id,
                          out->type);
    return LYRA_OK;
}

static lyra_status parse_trainer(const uint8_t *data, size_t len, const char *what, lyra_spm_model *m) {
    pb_reader r = {data, data + len};
    while (r.p < r.end) {
        pb_field f;
        LYRA_TRY(pb_next(&r, &f, what, "TrainerSpec"));
        int32_t *id = NULL;
        switch (f.number) {
        case 3:
            LYRA_TRY(pb_expect(&f, 0, what, "TrainerSpec.model_type"));
            m->model_type = (int)(int32_t)f.varint;
            break;
        case 35:
            LYRA_TRY(pb_expect(&f, 0, what, "TrainerSpec.byte_fallback"));
            m->byte_fallback = f.varint != 0;
            break;
        case 40: id = &m->unk_id; break;
        case 41: id = &m->bos_id; break;
        case 42: id = &m->eos_id; break;
        case 43: id = &m->pad_id; break;
        default: break;
        }
        if (id) {
            LYRA_TRY(pb_expect(&f, 0, what, "TrainerSpec special id"));
            *id = (int32_t)(uint32_t)f.varint;
        }
    }
    return LYRA_OK;
}

static lyra_status parse_normalizer(const uint8_t *data, size_t len, const char *what, lyra_spm_model *m) {
    pb_reader r = {data, data + len};
    while (r.p < r.end) {
        pb_field f;
        LYRA_TRY(pb_next(&r, &f, what, "NormalizerSpec"));
        switch (f.number) {
        case 1: {
            LYRA_TRY(pb_expect(&f, 2, what, "NormalizerSpec.name"));
            size_t n = f.len < sizeof m->normalizer_name - 1 ? f.len : sizeof m->normalizer_name - 1;
            memcpy(m->normalizer_name, f.bytes, n);
            m->normalizer_name[n] = '\0';
            break;
        }
        case 2:
            LYRA_TRY(pb_expect(&f, 2, what, "NormalizerSpec.precompiled_charsmap"));
            free(m->charsmap);
            m->charsmap = NULL;
            m->charsmap_len = 0;
            if (f.len) {
                m->charsmap = malloc(f.len);
                if (!m->charsmap) return lyra_error(LYRA_ERR_OOM, "%s: out of memory for the charsmap", what);
                memcpy(m->charsmap, f.bytes, f.len);
                m->charsmap_len = f.len;
            }
            break;
        case 3:
            LYRA_TRY(pb_expect(&f, 0, what, "NormalizerSpec.add_dummy_prefix"));
            m->add_dummy_prefix = f.varint != 0;
            break;
        case 4:
            LYRA_TRY(pb_expect(&f, 0, what, "NormalizerSpec.remove_extra_whitespaces"));
            m->remove_extra_whitespaces = f.varint != 0;
            break;
        case 5:
            LYRA_TRY(pb_expect(&f, 0, what, "NormalizerSpec.escape_whitespaces"));
            m->escape_whitespaces = f.varint != 0;
            break;
        default: break;
        }
    }
    return LYRA_OK;
}

static lyra_status check_id(int32_t id, int32_t n, const char *what, const char *name) {
    if (id >= -1 && id < n) return LYRA_OK;
    return lyra_error(LYRA_ERR_FORMAT, "%s: trainer_spec.%s = %d is outside the vocabulary of %d pieces", what,
                      name, (int)id, (int)n);
}

static lyra_status parse_model(const uint8_t *data, size_t size, const char *what, lyra_spm_model *m) {
    /* Pass 1: count the pieces and their bytes, parse the two specs. */
    pb_reader r = {data, data + size};
    size_t n_pieces = 0, text_bytes = 0;
    while (r.p < r.end) {
        pb_field f;
        LYRA_TRY(pb_next(&r, &f, what, "ModelProto"));
        if (f.number == 1) {
            LYRA_TRY(pb_expect(&f, 2, what, "ModelProto.pieces"));
            n_pieces++;
            text_bytes += f.len; /* the piece string is shorter than its message */
        } else if (f.number == 2) {
            LYRA_TRY(pb_expect(&f, 2, what, "ModelProto.trainer_spec"));
            LYRA_TRY(parse_trainer(f.bytes, f.len, what, m));
        } else if (f.number == 3) {
            LYRA_TRY(pb_expect(&f, 2, what, "ModelProto.normalizer_spec"));
            LYRA_TRY(parse_normalizer(f.bytes, f.len, what, m));
        }
    }
    if (n_pieces == 0) return lyra_error(LYRA_ERR_FORMAT, "%s: no pieces (not a SentencePiece model?)", what);
    if (n_pieces > 0x7fffffff) return lyra_error(LYRA_ERR_FORMAT, "%s: too many pieces", what);
    m->pieces = calloc(n_pieces, sizeof *m->pieces);
    m->text_blob = malloc(text_bytes + 1);
    if (!m->pieces || !m->text_blob) return lyra_error(LYRA_ERR_OOM, "%s: out of memory for %zu pieces", what, n_pieces);

    /* Pass 2: the pieces, copied so the model does not keep the file buffer. */
    r.p = data;
    size_t used = 0;
    int32_t id = 0;
    while (r.p < r.end) {
        pb_field f;
        LYRA_TRY(pb_next(&r, &f, what, "ModelProto"));
        if (f.number != 1) continue;
        const uint8_t *text;
        size_t len;
        LYRA_TRY(parse_piece(f.bytes, f.len, id, what, &text, &len, &m->pieces[id]));
        memcpy(m->text_blob + used, text, len);
        m->pieces[id].text = m->text_blob + used;
        m->pieces[id].len = (uint32_t)len;
        used += len;
        id++;
    }
    m->n_pieces = id;

    if (m->model_type < 1 || m->model_type > 4)
        return lyra_error(LYRA_ERR_FORMAT, "%s: unknown trainer_spec.model_type %d", what, m->model_type);
    LYRA_TRY(check_id(m->unk_id, m->n_pieces, what, "unk_id"));
    LYRA_TRY(check_id(m->bos_id, m->n_pieces, what, "bos_id"));
    LYRA_TRY(check_id(m->eos_id, m->n_pieces, what, "eos_id"));
    LYRA_TRY(check_id(m->pad_id, m->n_pieces, what, "pad_id"));
    return LYRA_OK;
}

lyra_status lyra_spm_model_parse(const uint8_t *data, size_t size, const char *what, lyra_spm_model *out) {
    memset(out, 0, sizeof *out);
    /* proto2 defaults of sentencepiece_model.proto */
    out->model_type = 1;
    out->unk_id = 0;
    out->bos_id = 1;
    out->eos_id = 2;
    out->pad_id = -1;
    out->add_dummy_prefix = out->remove_extra_whitespaces = out->escape_whitespaces = 1;
    lyra_status st = parse_model(data, size, what, out);
    if (st != LYRA_OK) lyra_spm_model_free(out);
    return st;
}

void lyra_spm_model_free(lyra_spm_model *m) {
    free(m->pieces);
    free(m->text_blob);
    free(m->charsmap);
    memset(m, 0, sizeof *m);
}
