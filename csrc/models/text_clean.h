/* Upstream's prompt cleaning before tokenisation (spec/encoders.md §2.7 Step A; Wan's
 * HuggingfaceTokenizer(clean="whitespace"): ftfy.fix_text, html.unescape twice, whitespace collapse). */
#ifndef LYRA_MODELS_TEXT_CLEAN_H
#define LYRA_MODELS_TEXT_CLEAN_H

#include <stddef.h>

#include "lyra2.h"

/* Cleans the valid UTF-8 text in[0..len) into *out (malloc'd, NUL-terminated, *out_len bytes; free()). */
lyra_status lyra_text_clean(const char *in, size_t len, char **out, size_t *out_len);

#endif
