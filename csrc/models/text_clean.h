/* Upstream's prompt cleaning before tokenisation (upstream T5:62-102, T5:77-80, T5:36-45; Wan's
 * HuggingfaceTokenizer(clean="whitespace") in get_t5_emb.py): ftfy.fix_text (ftfy 6.3 defaults),
 * html.unescape twice, strip, every whitespace run -> one space.
 *
 * ftfy.fix_text works line by line (a line ends after '\n') and repeats on each line, until it stops
 * changing: HTML entities (skipped for a line holding '<' and every line after it), C1 controls as
 * Windows-1252, Latin ligatures, full/half width forms, curly quotes, line breaks, ANSI escapes, control
 * characters, NFC. Not reproduced (documented divergences, they only act on unusual text): ftfy's
 * mojibake repair (fix_encoding, a heuristic that does not fire on clean text), the final NFC
 * (the tokenizer's nmt_nfkc charsmap composes the common decomposed sequences itself) and Unicode
 * digits other than 0-9 inside ANSI escapes. */
#ifndef LYRA_MODELS_TEXT_CLEAN_H
#define LYRA_MODELS_TEXT_CLEAN_H

#include <stddef.h>

#include "lyra2.h"

/* Cleans the valid UTF-8 text in[0..len) into *out (malloc'd, NUL-terminated, *out_len bytes; free()).
 * LYRA_ERR_ARG for invalid UTF-8. */
lyra_status lyra_text_clean(const char *in, size_t len, char **out, size_t *out_len);

#endif
