/* A small strict JSON parser (RFC 8259) for the safetensors header: a DOM allocated from one arena.
 *
 * Strings are decoded to UTF-8 (escapes resolved, surrogate pairs joined) and NUL-terminated; their
 * byte length is kept too because JSON allows "\u0000". Numbers keep their text form's integer value
 * when they are integers that fit int64 (is_int = 1); other numbers are only validated (the header
 * never needs them). Object members keep file order and duplicate keys are NOT detected here (the
 * caller sorts keys when it cares). Nesting depth is capped so hostile input cannot exhaust the stack. */
#ifndef LYRA_IO_JSON_H
#define LYRA_IO_JSON_H

#include "lyra2.h"

typedef enum lyra_json_kind {
    LYRA_JSON_NULL = 0,
    LYRA_JSON_BOOL,
    LYRA_JSON_NUMBER,
    LYRA_JSON_STRING,
    LYRA_JSON_ARRAY,
    LYRA_JSON_OBJECT
} lyra_json_kind;

typedef struct lyra_json lyra_json;
struct lyra_json {
    lyra_json_kind kind;
    int boolean;          /* BOOL */
    int is_int;           /* NUMBER: 1 when an integer that fits int64 */
    int64_t integer;      /* NUMBER with is_int */
    const char *str;      /* STRING: decoded UTF-8, NUL-terminated */
    size_t len;           /* STRING: byte length (may contain NUL) */
    const char *key;      /* member name when this value sits in an object (NUL-terminated) */
    size_t key_len;
    lyra_json **items;    /* ARRAY elements / OBJECT member values (each carries its key) */
    size_t n;
};

typedef struct lyra_json_doc lyra_json_doc;

#define LYRA_JSON_MAX_DEPTH 64

/* Parses text[0..len) as exactly one JSON value (surrounding whitespace allowed). On failure returns
 * LYRA_ERR_FORMAT with a message "<what>: <problem> at byte <offset>" and *out = NULL. */
lyra_status lyra_json_parse(const char *text, size_t len, const char *what, lyra_json_doc **out);
const lyra_json *lyra_json_root(const lyra_json_doc *doc);
void lyra_json_free(lyra_json_doc *doc);

#endif
