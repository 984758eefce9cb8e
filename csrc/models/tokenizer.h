/* The umT5 tokenizer as upstream runs it: Hugging Face's T5TokenizerFast converted from `spiece.model`
 * by transformers 4.57 (upstream T5:62-102, T5:77-80, T5:36-45), in C.
 *
 * Pipeline for one text (valid UTF-8):
 *   1. added tokens (the model's CONTROL and USER_DEFINED pieces, its <unk> piece, and <extra_id_0..N-1>)
 *      are cut out of the raw text, leftmost-longest, and emitted as their ids;
 *   2. every other segment is normalised (normalizer.h), its spaces become "▁" (U+2581), a "▁" is
 *      prepended unless it already starts with one (Metaspace, prepend_scheme "always" = T5's legacy
 *      default), and it is split before every "▁" into words;
 *   3. each word is segmented by unigram Viterbi over all vocabulary strings (pieces of every type and the
 *      extra ids) with their scores; a character no single-character piece covers is an unknown node of
 *      score min_score - 10; consecutive unknowns fuse into one token, looked up by its text (normally
 *      <unk>); with byte_fallback that text becomes its <0xXX> byte pieces instead;
 *   4. lyra_tokenizer_encode keeps at most seq_len - 1 tokens, appends EOS, pads with the pad id.
 *
 * The tokenizer is immutable after loading and may be used from several threads at once. */
#ifndef LYRA_MODELS_TOKENIZER_H
#define LYRA_MODELS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "lyra2.h"

typedef struct lyra_tokenizer lyra_tokenizer;

typedef struct lyra_tokenizer_options {
    int32_t extra_ids;  /* <extra_id_N> tokens appended after the pieces (umT5: 300), ids in reverse order */
    int byte_fallback;  /* 0: unknowns -> <unk> as HF's T5 converter does (upstream); 1: <0xXX> pieces */
} lyra_tokenizer_options;

/* Loads a SentencePiece unigram model from a file or from memory (data is copied). LYRA_ERR_IO when the
 * file cannot be read, LYRA_ERR_FORMAT for a corrupt model, LYRA_ERR_UNSUPPORTED for a non-unigram one,
 * LYRA_ERR_ARG for extra_ids outside 0..10000. With byte_fallback, a fused unknown whose bytes are not all
 * <0xXX> pieces stays <unk> (as HF does). */
lyra_status lyra_tokenizer_load(const char *path, const lyra_tokenizer_options *opt, lyra_tokenizer **out);
lyra_status lyra_tokenizer_from_memory(const uint8_t *data, size_t size, const char *what,
                                       const lyra_tokenizer_options *opt, lyra_tokenizer **out);
void lyra_tokenizer_free(lyra_tokenizer *tok);

/* Number of ids: pieces + extra ids. */
int32_t lyra_tokenizer_vocab_size(const lyra_tokenizer *tok);
/* Text of id (not NUL-terminated, *len bytes), or NULL when id is out of range. */
const char *lyra_tokenizer_piece(const lyra_tokenizer *tok, int32_t id, size_t *len);

typedef struct lyra_tokenizer_info {
    int32_t n_pieces, unk_id, eos_id, pad_id;
    int byte_fallback;          /* the option in use */
    int model_byte_fallback;    /* trainer_spec.byte_fallback of the file */
    const char *normalizer_name;
} lyra_tokenizer_info;

lyra_tokenizer_info lyra_tokenizer_get_info(const lyra_tokenizer *tok);

/* Ids of text[0..len) without EOS, truncation or padding: *ids (malloc'd, *n entries; free() it). */
lyra_status lyra_tokenizer_tokenize(const lyra_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                                    size_t *n);

/* Fixed-length encoding: ids (seq_len,) and mask (seq_len,) = the first min(n, seq_len - 1) tokens, EOS,
 * then pad ids; mask 1 on the tokens and EOS, 0 on padding. seq_len >= 1. */
lyra_status lyra_tokenizer_encode(const lyra_tokenizer *tok, const char *text, size_t len, int64_t seq_len,
                                  int64_t *ids, int64_t *mask);

#endif
