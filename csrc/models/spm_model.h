/* A SentencePiece model file (`spiece.model`, protobuf ModelProto) read without a protobuf library.
 *
 * Only the fields the umT5 tokenizer needs are kept (field numbers from sentencepiece_model.proto,
 * upstream T5:62-102, T5:77-80, T5:36-45): ModelProto.pieces (1) {piece 1, score 2, type 3}, trainer_spec (2)
 * {model_type 3, byte_fallback 35, unk_id 40, bos_id 41, eos_id 42, pad_id 43} and normalizer_spec (3)
 * {name 1, precompiled_charsmap 2, add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5}.
 * Every other field is skipped by wire type. Absent fields take the proto2 defaults of that file.
 *
 * Parsing is strict and bounded: every length is checked against the bytes that remain, so a truncated
 * or corrupt file gives LYRA_ERR_FORMAT with a message naming the field, never a read out of bounds. */
#ifndef LYRA_MODELS_SPM_MODEL_H
#define LYRA_MODELS_SPM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "lyra2.h"

/* SentencePiece.Type values as stored in the file. */
typedef enum lyra_spm_type {
    LYRA_SPM_NORMAL = 1,
    LYRA_SPM_UNKNOWN = 2,
    LYRA_SPM_CONTROL = 3,
    LYRA_SPM_USER_DEFINED = 4,
    LYRA_SPM_UNUSED = 5,
    LYRA_SPM_BYTE = 6
} lyra_spm_type;

typedef struct lyra_spm_piece {
    const char *text; /* UTF-8, not NUL-terminated inside the blob; `len` bytes (> 0) */
    uint32_t len;
    float score;      /* log probability (finite) */
    int type;         /* lyra_spm_type */
} lyra_spm_piece;

typedef struct lyra_spm_model {
    int32_t n_pieces;
    lyra_spm_piece *pieces;  /* (n_pieces,), id order = file order */
    char *text_blob;         /* owns every piece's bytes */
    int model_type;          /* 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR */
    int byte_fallback;
    int32_t unk_id, bos_id, eos_id, pad_id; /* -1 = none */
    char normalizer_name[64];
    uint8_t *charsmap;       /* precompiled_charsmap bytes (NULL when empty) */
    size_t charsmap_len;
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} lyra_spm_model;

/* Parses `size` bytes of a ModelProto into `out` (zeroed first). On failure `out` holds nothing to free.
 * `what` names the source in messages (a path). Checks: every piece non-empty valid UTF-8 with a finite
 * score and a known type, model_type known, special ids inside the vocabulary or -1. */
lyra_status lyra_spm_model_parse(const uint8_t *data, size_t size, const char *what, lyra_spm_model *out);

void lyra_spm_model_free(lyra_spm_model *m);

/* Length of the UTF-8 character starting at s[0] (1..4), or 0 when s[0..n) does not start with a valid
 * UTF-8 encoding (overlong forms, surrogates and code points above U+10FFFF are invalid). */
int lyra_utf8_char_len(const uint8_t *s, size_t n);

/* Decodes the valid UTF-8 character at s (length from lyra_utf8_char_len). */
uint32_t lyra_utf8_decode(const uint8_t *s, int len);

/* Writes code point cp as UTF-8 to out (room for 4 bytes); returns the byte count. */
int lyra_utf8_encode(uint32_t cp, char *out);

#endif
