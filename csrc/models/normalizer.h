/* The umT5 text normaliser as Hugging Face's fast tokenizer builds it from `spiece.model`
 * (transformers' SpmConverter.normalizer, upstream T5:62-102, T5:77-80, T5:36-45):
 *   Precompiled(precompiled_charsmap) -> Strip(right) -> Replace(" {2,}", "▁").
 *
 * The precompiled charsmap (SentencePiece's nmt_nfkc rules) is a blob: a little-endian uint32 byte size S
 * of a darts-clone double-array trie, S bytes of trie units, then a pool of NUL-terminated replacement
 * strings that the trie's leaf values index. A darts-clone unit packs: has_leaf = bit 8, value = the low
 * 31 bits, label = unit & (bit 31 | 0xFF), offset = (unit >> 10) << ((unit & bit 9) >> 6).
 *
 * HF applies it with a quirk that differs from the sentencepiece library (which takes the longest match
 * at every position): for each extended grapheme cluster shorter than 6 bytes, the *first* (shortest)
 * prefix match of the cluster replaces the *whole* cluster (so "Ａ" + U+0301 becomes "A"); otherwise each
 * code point is replaced by its own match or kept. The trie walk stops at a NUL byte. */
#ifndef LYRA_MODELS_NORMALIZER_H
#define LYRA_MODELS_NORMALIZER_H

#include <stddef.h>
#include <stdint.h>

#include "lyra2.h"
#include "models/strbuf.h"

typedef struct lyra_charsmap {
    uint32_t *units;   /* (n_units,) trie units, host order */
    size_t n_units;
    const char *pool;  /* replacement strings (points into the model's charsmap bytes) */
    size_t pool_len;
} lyra_charsmap;

/* Builds the trie view of a precompiled_charsmap blob (`len` bytes, kept alive by the caller);
 * LYRA_ERR_FORMAT naming `what` when the sizes do not fit. */
lyra_status lyra_charsmap_init(const uint8_t *blob, size_t len, const char *what, lyra_charsmap *out);
void lyra_charsmap_free(lyra_charsmap *cm);

/* HF's transform(): the replacement of the first (shortest) trie key that is a prefix of s[0..n).
 * Returns 1 and sets *repl and *repl_len on a match, 0 when none, -1 (with a message) for a corrupt trie. */
int lyra_charsmap_first_match(const lyra_charsmap *cm, const char *s, size_t n, const char **repl, size_t *repl_len);

/* Appends the HF-normalised form of the valid UTF-8 text s[0..n) to out (cm may be NULL: no charsmap,
 * then only Strip and Replace run, as the converter does for an empty charsmap). */
lyra_status lyra_hf_normalize(const lyra_charsmap *cm, const char *s, size_t n, lyra_strbuf *out);

#endif
