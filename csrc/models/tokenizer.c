/* umT5 tokenizer (see tokenizer.h): vocabulary hash, added-token split, Metaspace, unigram Viterbi. */
#include "models/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/normalizer.h"
#include "models/spm_model.h"
#include "models/strbuf.h"

#define LYRA_UNK_PENALTY 10.0 /* HF Unigram's K_UNK_PENALTY */
#define LYRA_MAX_EXTRA_IDS 10000

struct lyra_tokenizer {
    lyra_spm_model model;
    lyra_charsmap charsmap;
    int has_charsmap;
    int byte_fallback;
    int32_t n_vocab;       /* pieces + extra ids */
    const char **text;     /* (n_vocab,) */
    uint32_t *len;         /* (n_vocab,) */
    double *score;         /* (n_vocab,) HF keeps the f32 scores as f64 */
    char *extra_blob;      /* text of the extra ids */
    /* open-addressing hash of vocabulary strings -> id; a repeated string maps to its last id, as HF's
     * token_to_ids map does */
    int32_t *slot_id;      /* (n_slots,) -1 = empty */
    uint64_t *slot_hash;   /* (n_slots,) */
    size_t slot_mask;
    uint32_t max_len;      /* longest vocabulary string in bytes */
    double min_score;
    int32_t *added;        /* (n_added,) ids of the strings cut out of raw text */
    size_t n_added;
    uint8_t added_first[256]; /* first bytes of added strings */
    int32_t byte_id[256];  /* <0xXX> piece ids, -1 when absent */
};

static uint64_t fnv_step(uint64_t h, uint8_t c) { return (h ^ c) * 0x100000001b3ull; }
#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = FNV_INIT;
    for (size_t i = 0; i < n; i++) h = fnv_step(h, (uint8_t)s[i]);
    return h;
}

/* Id of the vocabulary string s[0..n) with hash h, or -1. */
static int32_t vocab_find(const lyra_tokenizer *t, const char *s, size_t n, uint64_t h) {
    for (size_t i = (size_t)h & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        int32_t id = t->slot_id[i];
        if (id < 0) return -1;
        if (t->slot_hash[i] == h && t->len[id] == n && memcmp(t->text[id], s, n) == 0) return id;
    }
}

static void vocab_insert(lyra_tokenizer *t, int32_t id) {
    uint64_t h = fnv(t->text[id], t->len[id]);
    for (size_t i = (size_t)h & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        int32_t old = t->slot_id[i];
        if (old < 0 || (t->slot_hash[i] == h && t->len[old] == t->len[id] &&
                        memcmp(t->text[old], t->text[id], t->len[id]) == 0)) {
            t->slot_id[i] = id;
            t->slot_hash[i] = h;
            return;
        }
    }
}

static lyra_status build(lyra_tokenizer *t, const lyra_tokenizer_options *opt, const char *what) {
    const lyra_spm_model *m = &t->model;
    if (m->model_type != 1)
        return lyra_error(LYRA_ERR_UNSUPPORTED, "%s: model_type %d is not a unigram model (umT5's spiece.model is)",
                          what, m->model_type);
    if (m->unk_id < 0 || m->eos_id < 0 || m->pad_id < 0)
        return lyra_error(LYRA_ERR_FORMAT, "%s: the model needs unk, eos and pad pieces (unk_id=%d eos_id=%d pad_id=%d)",
                          what, (int)m->unk_id, (int)m->eos_id, (int)m->pad_id);
    if (m->charsmap_len) {
        LYRA_TRY(lyra_charsmap_init(m->charsmap, m->charsmap_len, what, &t->charsmap));
        t->has_charsmap = 1;
    }
    int32_t extra = opt ? opt->extra_ids : 0;
    t->byte_fallback = opt ? opt->byte_fallback != 0 : 0;
    t->n_vocab = m->n_pieces + extra;
    t->text = calloc((size_t)t->n_vocab, sizeof *t->text);
    t->len = calloc((size_t)t->n_vocab, sizeof *t->len);
    t->score = calloc((size_t)t->n_vocab, sizeof *t->score);
    t->extra_blob = malloc((size_t)extra * 24 + 1);
    size_t n_slots = 16;
    while (n_slots < 2 * (size_t)t->n_vocab) n_slots *= 2;
    t->slot_id = malloc(n_slots * sizeof *t->slot_id);
    t->slot_hash = malloc(n_slots * sizeof *t->slot_hash);
    t->added = malloc(((size_t)m->n_pieces + (size_t)extra) * sizeof *t->added);
    if (!t->text || !t->len || !t->score || !t->extra_blob || !t->slot_id || !t->slot_hash || !t->added)
        return lyra_error(LYRA_ERR_OOM, "%s: out of memory for a vocabulary of %d", what, (int)t->n_vocab);
    t->slot_mask = n_slots - 1;
    memset(t->slot_id, 0xff, n_slots * sizeof *t->slot_id);

    for (int32_t i = 0; i < m->n_pieces; i++) {
        t->text[i] = m->pieces[i].text;
        t->len[i] = m->pieces[i].len;
        t->score[i] = (double)m->pieces[i].score;
    }
    /* T5Converter.vocab appends <extra_id_{N-1}> .. <extra_id_0> with score 0 */
    char *p = t->extra_blob;
    for (int32_t k = 0; k < extra; k++) {
        int32_t id = m->n_pieces + k;
        int n = snprintf(p, 24, "<extra_id_%d>", (int)(extra - 1 - k));
        t->text[id] = p;
        t->len[id] = (uint32_t)n;
        t->score[id] = 0.0;
        p += n;
    }
    t->min_score = 0.0;
    t->max_len = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        vocab_insert(t, i);
        if (i == 0 || t->score[i] < t->min_score) t->min_score = t->score[i];
        if (t->len[i] > t->max_len) t->max_len = t->len[i];
    }

    /* Added tokens: CONTROL and USER_DEFINED pieces (SpmConverter), the unk piece and the extra ids
     * (T5TokenizerFast's special tokens). Their id is whatever the vocabulary maps their text to. */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int is_added = i >= m->n_pieces || i == m->unk_id || m->pieces[i].type == LYRA_SPM_CONTROL ||
                       m->pieces[i].type == LYRA_SPM_USER_DEFINED;
        if (!is_added) continue;
        int32_t id = vocab_find(t, t->text[i], t->len[i], fnv(t->text[i], t->len[i]));
        if (id != i) continue; /* a repeated string: keep the one the vocabulary maps to */
        t->added[t->n_added++] = id;
        t->added_first[(uint8_t)t->text[id][0]] = 1;
    }

    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = vocab_find(t, name, 6, fnv(name, 6));
    }
    return LYRA_OK;
}

lyra_status lyra_tokenizer_from_memory(const uint8_t *data, size_t size, const char *what,
                                       const lyra_tokenizer_options *opt, lyra_tokenizer **out) {
    *out = NULL;
    if (opt && (opt->extra_ids < 0 || opt->extra_ids > LYRA_MAX_EXTRA_IDS))
        return lyra_error(LYRA_ERR_ARG, "extra_ids must be in 0..%d, got %d", LYRA_MAX_EXTRA_IDS, (int)opt->extra_ids);
    lyra_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return lyra_error(LYRA_ERR_OOM, "out of memory for a tokenizer");
    lyra_status st = lyra_spm_model_parse(data, size, what, &t->model);
    if (st == LYRA_OK) st = build(t, opt, what);
    if (st != LYRA_OK) {
        lyra_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LYRA_OK;
}

lyra_status lyra_tokenizer_load(const char *path, const lyra_tokenizer_options *opt, lyra_tokenizer **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lyra_error(LYRA_ERR_IO, "cannot open tokenizer model %s", path);
    lyra_strbuf buf = {0};
    lyra_status st = LYRA_OK;
    char chunk[65536];
    size_t got;
    while (st == LYRA_OK && (got = fread(chunk, 1, sizeof chunk, f)) > 0) st = lyra_strbuf_add(&buf, chunk, got);
    if (st == LYRA_OK && ferror(f)) st = lyra_error(LYRA_ERR_IO, "cannot read tokenizer model %s", path);
    fclose(f);
    if (st == LYRA_OK) st = lyra_tokenizer_from_memory((const uint8_t *)buf.data, buf.len, path, opt, out);
    lyra_strbuf_free(&buf);
    return st;
}

void lyra_tokenizer_free(lyra_tokenizer *t) {
    if (!t) return;
    if (t->has_charsmap) lyra_charsmap_free(&t->charsmap);
    lyra_spm_model_free(&t->model);
    free(t->text);
    free(t->len);
    free(t->score);
    free(t->extra_blob);
    free(t->slot_id);
    free(t->slot_hash);
    free(t->added);
    free(t);
}

int32_t lyra_tokenizer_vocab_size(const lyra_tokenizer *t) { return t->n_vocab; }

lyra_tokenizer_info lyra_tokenizer_get_info(const lyra_tokenizer *t) {
    lyra_tokenizer_info i = {t->model.n_pieces, t->model.unk_id, t->model.eos_id, t->model.pad_id,
                             t->byte_fallback,  t->model.byte_fallback, t->model.normalizer_name};
    return i;
}

const char *lyra_tokenizer_piece(const lyra_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    *len = t->len[id];
    return t->text[id];
}

/* Growable id list. */
typedef struct id_list {
    int32_t *v;
    size_t n, cap;
} id_list;

static lyra_status ids_push(id_list *l, int32_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return lyra_error(LYRA_ERR_OOM, "out of memory for %zu token ids", cap);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
    return LYRA_OK;
}

/* Best path ending at a byte position (HF's encode_optimized BestPathNode). */
typedef struct best_node {
    double score;
    int32_t id;
    int32_t start; /* -1: not reached yet */
} best_node;

/* Emits the token for the text w[s..e) of one path node or fused unknown run. */
static lyra_status emit(const lyra_tokenizer *t, const char *w, size_t s, size_t e, id_list *out) {
    int32_t id = vocab_find(t, w + s, e - s, fnv(w + s, e - s));
    if (id >= 0) return ids_push(out, id);
    if (t->byte_fallback) {
        int all = 1;
        for (size_t i = s; i < e; i++) all &= t->byte_id[(uint8_t)w[i]] >= 0;
        if (all) {
            for (size_t i = s; i < e; i++) LYRA_TRY(ids_push(out, t->byte_id[(uint8_t)w[i]]));
            return LYRA_OK;
        }
    }
    return ids_push(out, t->model.unk_id);
}

/* Unigram Viterbi of one word w[0..n) (valid UTF-8, n > 0); `best` has room for n + 1 nodes and `marks`
 * for n + 1 entries. Ties keep the first candidate, i.e. the one starting earliest (longest last piece). */
static lyra_status viterbi(const lyra_tokenizer *t, const char *w, size_t n, best_node *best, size_t *marks,
                           id_list *out) {
    const double unk_score = t->min_score - LYRA_UNK_PENALTY;
    for (size_t i = 0; i <= n; i++) best[i].start = -1;
    best[0].score = 0.0;
    best[0].start = 0;
    for (size_t s = 0; s < n;) {
        int mblen = lyra_utf8_char_len((const uint8_t *)w + s, n - s);
        LYRA_ASSERT(mblen > 0);
        const double base = best[s].score;
        int single = 0;
        uint64_t h = FNV_INIT;
        size_t lim = n - s < t->max_len ? n - s : t->max_len;
        for (size_t l = 1; l <= lim; l++) {
            h = fnv_step(h, (uint8_t)w[s + l - 1]);
            int32_t id = vocab_find(t, w + s, l, h);
            if (id < 0) continue;
            best_node *tn = &best[s + l];
            double cand = base + t->score[id];
            if (tn->start < 0 || cand > tn->score) {
                tn->score = cand;
                tn->start = (int32_t)s;
                tn->id = id;
            }
            if (l == (size_t)mblen) single = 1;
        }
        if (!single) {
            best_node *tn = &best[s + (size_t)mblen];
            double cand = base + unk_score;
            if (tn->start < 0 || cand > tn->score) {
                tn->score = cand;
                tn->start = (int32_t)s;
                tn->id = t->model.unk_id;
            }
        }
        s += (size_t)mblen;
    }
    /* Backtrack, recording node boundaries; a run of unknown nodes keeps only its outer boundaries. */
    size_t k = 0;
    int prev_unk = 0;
    for (size_t e = n; e > 0;) {
        const best_node *node = &best[e];
        int unk = node->id == t->model.unk_id;
        if (!(unk && prev_unk)) marks[k++] = e;
        prev_unk = unk;
        e = (size_t)node->start;
    }
    marks[k] = 0;
    for (size_t i = k; i > 0; i--) LYRA_TRY(emit(t, w, marks[i], marks[i - 1], out));
    return LYRA_OK;
}

/* Metaspace + unigram for one normalised segment. */
static lyra_status encode_segment(const lyra_tokenizer *t, const char *s, size_t n, lyra_strbuf *scratch,
                                  best_node **best, size_t **marks, size_t *cap, id_list *out) {
    static const char meta[] = "\xe2\x96\x81";
    if (n == 0) return LYRA_OK;
    scratch->len = 0;
    if (!(n >= 3 && memcmp(s, meta, 3) == 0) && s[0] != ' ') LYRA_TRY(lyra_strbuf_add(scratch, meta, 3));
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') LYRA_TRY(lyra_strbuf_add(scratch, meta, 3));
        else LYRA_TRY(lyra_strbuf_add(scratch, s + i, 1));
    }
    const char *w = scratch->data;
    size_t m = scratch->len;
    if (m + 1 > *cap) {
        best_node *b = realloc(*best, (m + 1) * sizeof *b);
        if (b) *best = b;
        size_t *k = realloc(*marks, (m + 1) * sizeof *k);
        if (k) *marks = k;
        if (!b || !k) return lyra_error(LYRA_ERR_OOM, "out of memory for a %zu-byte word", m);
        *cap = m + 1;
    }
    /* split before every "▁" (MergedWithNext) */
    for (size_t a = 0; a < m;) {
        size_t b = a + 3;
        while (b < m && !(m - b >= 3 && memcmp(w + b, meta, 3) == 0)) b++;
        if (b > m) b = m;
        LYRA_TRY(viterbi(t, w + a, b - a, *best, *marks, out));
        a = b;
    }
    return LYRA_OK;
}

/* Id of the longest added token starting at s[0..n), and its length; -1 when none. */
static int32_t match_added(const lyra_tokenizer *t, const char *s, size_t n, size_t *len) {
    int32_t best = -1;
    *len = 0;
    if (!t->added_first[(uint8_t)s[0]]) return -1;
    for (size_t i = 0; i < t->n_added; i++) {
        int32_t id = t->added[i];
        size_t l = t->len[id];
        if (l > *len && l <= n && memcmp(s, t->text[id], l) == 0) {
            best = id;
            *len = l;
        }
    }
    return best;
}

static lyra_status tokenize(const lyra_tokenizer *t, const char *text, size_t len, id_list *out) {
    for (size_t i = 0; i < len;) {
        int l = lyra_utf8_char_len((const uint8_t *)text + i, len - i);
        if (!l) return lyra_error(LYRA_ERR_ARG, "text is not valid UTF-8 (byte %zu)", i);
        i += (size_t)l;
    }
    lyra_strbuf norm = {0}, scratch = {0};
    best_node *best = NULL;
    size_t *marks = NULL, cap = 0;
    lyra_status st = LYRA_OK;
    size_t seg = 0;
    for (size_t i = 0; i <= len && st == LYRA_OK;) {
        size_t alen = 0;
        int32_t added = i < len ? match_added(t, text + i, len - i, &alen) : -1;
        if (i < len && added < 0) {
            i++;
            continue;
        }
        /* text[seg..i) is a plain segment */
        norm.len = 0;
        st = lyra_hf_normalize(t->has_charsmap ? &t->charsmap : NULL, text + seg, i - seg, &norm);
        if (st == LYRA_OK) st = encode_segment(t, norm.data, norm.len, &scratch, &best, &marks, &cap, out);
        if (st == LYRA_OK && added >= 0) st = ids_push(out, added);
        if (i == len) break;
        i += alen;
        seg = i;
    }
    lyra_strbuf_free(&norm);
    lyra_strbuf_free(&scratch);
    free(best);
    free(marks);
    return st;
}

lyra_status lyra_tokenizer_tokenize(const lyra_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                    size_t *n) {
    id_list l = {0};
    lyra_status st = tokenize(t, text, len, &l);
    if (st != LYRA_OK) {
        free(l.v);
        *ids = NULL;
        *n = 0;
        return st;
    }
    *ids = l.v;
    *n = l.n;
    return LYRA_OK;
}

lyra_status lyra_tokenizer_encode(const lyra_tokenizer *t, const char *text, size_t len, int64_t seq_len,
                                  int64_t *ids, int64_t *mask) {
    if (seq_len < 1) return lyra_error(LYRA_ERR_ARG, "seq_len must be >= 1, got %lld", (long long)seq_len);
    id_list l = {0};
    LYRA_TRY(tokenize(t, text, len, &l));
    /* HF truncation reserves room for the EOS the post-processor adds (upstream T5:62-102, T5:77-80, T5:36-45) */
    size_t keep = l.n < (size_t)(seq_len - 1) ? l.n : (size_t)(seq_len - 1);
    for (size_t i = 0; i < (size_t)seq_len; i++) {
        ids[i] = i < keep ? l.v[i] : i == keep ? t->model.eos_id : t->model.pad_id;
        mask[i] = i <= keep;
    }
    free(l.v);
    return LYRA_OK;
}
