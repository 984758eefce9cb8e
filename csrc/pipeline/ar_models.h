/* The networks of one generate run, loaded from a converted checkpoint folder (lyra2/checkpoint.py FILES), and
 * the two encoders the driver calls per prompt and per chunk (upstream M:568-671, CONDM:462-486, CL2:37-55).
 *
 * Every component is read from its safetensors file through the C loaders (strict name / shape checks, errors
 * name the file and the tensor). The DiT's FramePack layout is given (the released one unless a test says
 * otherwise). Its LoRA adapters, in upstream's loading order (Z:173-176 then Z:464-486): the style LoRAs with
 * fixed weights (the zoom-GS script's realism_boost and detail_enhancer at 0.4 each, upstream ML:74-92, Z:464-486,
 * CTI:181-199), then the optional DMD distillation LoRA (weight set per run: 1 with use_dmd, else 0). CPU runs
 * evaluate them as adapters, unfolded, as upstream does; a device run folds the run's fixed set into the DiT's
 * weights once, at placement (lyra_ar_models_place), so the device holds no adapter (docs/PRECISION.md). */
#ifndef LYRA_PIPELINE_AR_MODELS_H
#define LYRA_PIPELINE_AR_MODELS_H

#include "core/arena.h"
#include "models/clip.h"
#include "models/dit.h"
#include "models/tokenizer.h"
#include "models/umt5.h"
#include "models/vae.h"
#include "nn/backend.h"

#define LYRA_AR_TEXT_LEN 512
#define LYRA_AR_TEXT_CACHE 8      /* caption embeddings kept between runs */
#define LYRA_AR_MAX_STYLE_LORAS 4 /* + the DMD LoRA: within LYRA_DIT_MAX_ADAPTERS */

typedef struct lyra_ar_style_lora {
    const char *path;
    const char *name;       /* adapter name, e.g. "realism_boost" */
    float weight;           /* activation weight in every run */
} lyra_ar_style_lora;

typedef struct lyra_ar_paths {
    const char *dit, *vae, *umt5, *tokenizer, *clip, *negative_prompt;
    const char *lora_dmd;   /* NULL when the folder has none (use_dmd then fails with a message) */
    lyra_ar_style_lora style[LYRA_AR_MAX_STYLE_LORAS];
    int n_style;
    const char *layout;     /* FramePack layout of the DiT */
    int n_threads;          /* 0 = all cores */
    /* random weights of the real shapes instead of the dit / umt5 file (lyra2.testing.random_weights): the tensors'
     * names, shapes and dtypes (data unused), filled per models/dit.h lyra_dit_load_random and text_weights.h; the
     * path is then unused */
    const lyra_dit_named *dit_random;
    int dit_random_n;
    uint64_t dit_random_seed;
    const lyra_dit_named *umt5_random;
    int umt5_random_n;
    uint64_t umt5_random_seed;
    int random_defer;       /* filled on the device at placement, the host blocks never written */
} lyra_ar_paths;

/* A random-weights umT5 (names, shapes, dtypes; the models' own copy): a device run loads umT5 for its captions
 * and frees it (ar_text.c), each time filled on the device. */
typedef struct lyra_ar_random_spec {
    int n;
    char **names;
    lyra_tensor *t;         /* t[i].name == names[i]; data NULL */
    uint64_t seed;
} lyra_ar_random_spec;

typedef struct lyra_ar_models {
    lyra_dit dit;
    lyra_vae *vae;
    lyra_umt5 umt5;
    lyra_clip clip;
    lyra_tokenizer *tok;
    float *negative;        /* (512, text_dim) f32 in the memory of lyra_ar_backend(m) */
    int text_dim;
    int dmd_adapter;        /* index of the DMD LoRA among dit.adapters, or -1 (none, or folded) */
    int folded_dmd;         /* -1: the LoRAs are adapters; 0/1: folded into the DiT's weights without / with the
                               DMD LoRA (lyra_ar_models_fold_loras): the models serve runs of that use_dmd only */
    struct {                /* the style LoRAs as loaded (their adapters are gone once folded) */
        char name[96];
        float weight;
    } style[LYRA_AR_MAX_STYLE_LORAS];
    int n_style;
    lyra_backend be;        /* CPU backend of the text and image encoders until placement */
    lyra_arena arena;       /* their activations, in the memory of lyra_ar_backend(m) */
    int n_threads;          /* CPU threads of every network (0 = all cores) */
    int loaded;
    char *umt5_path;        /* the umT5 file: a device run loads it for its captions and frees it (ar_text.c) */
    lyra_ar_random_spec umt5_random; /* or random umT5 weights (n > 0) instead of the file */
    struct {                /* caption -> embedding (512, text_dim) host f32, of the device and precision used */
        char *caption;
        float *emb;
        lyra_device device;
        lyra_dtype policy;
    } text_cache[LYRA_AR_TEXT_CACHE];
    int text_cache_next;    /* the entry replaced next (round robin) */
} lyra_ar_models;

/* The umT5 encoder of a safetensors file, in host memory (free with lyra_umt5_free, also after a failure). */
lyra_status lyra_ar_umt5_load(lyra_umt5 *u, const char *path);
/* The umT5 encoder of the models: their file, or their random weights (filled now, or with defer by
 * lyra_umt5_place). */
lyra_status lyra_ar_umt5_load_models(const lyra_ar_models *m, lyra_umt5 *u, int defer);

/* Loads everything on the CPU; on failure *m is left freed. */
lyra_status lyra_ar_models_load(lyra_ar_models *m, const lyra_ar_paths *p);
void lyra_ar_models_free(lyra_ar_models *m);

/* Folds the LoRAs a run of `use_dmd` applies into the DiT's weights (W + Σ w_a·B_a·A_a and b + Σ w_a·bias_a in
 * f32, rounded once to W's dtype): the style LoRAs at their weights, the DMD LoRA at 1 with use_dmd, and left out
 * (dropped) without; the adapters are freed. on_device = 0: now, on the host (lyra_dit_lora_merge); 1: by the
 * placement, on the device (lyra_dit_lora_fold_at_placement). From then on the models serve runs of that use_dmd
 * only (lyra_ar_generate refuses the other: load them again). Before placement; a second call with the same use_dmd
 * does nothing. LYRA_ERR_UNSUPPORTED for use_dmd without a DMD LoRA, and for a .diff_b on a Linear without a bias. */
lyra_status lyra_ar_models_fold_loras(lyra_ar_models *m, int use_dmd, int on_device);

/* Makes the DiT's attention blocks fp8 (lyra_dit_quantize_fp8) for runs with use_dmd or without, the LoRAs folded
 * first (lyra_ar_models_fold_loras): an fp8 DiT serves only runs of that use_dmd. Before streaming and placement. */
lyra_status lyra_ar_models_dit_fp8(lyra_ar_models *m, int use_dmd);

/* Moves every network to `device` (LYRA_DEVICE_CUDA: the GPU, or the emulated device under
 * LYRA2_EMULATED_CUDA=1), each in upstream's GPU precision when `policy` is LYRA_DTYPE_BF16 (docs/PRECISION.md: the
 * DiT's bf16 policy, the Wan VAE in bf16, CLIP in f16) or everything in f32 with LYRA_DTYPE_F32 (the parity mode
 * that isolates the placement from the precision). With the bf16 policy the LoRAs of a run of `use_dmd` are folded
 * into the DiT's weights as they are placed, on the device (lyra_ar_models_fold_loras: no adapter stays there, the
 * models then serve runs of that use_dmd only); the parity mode keeps them as adapters, as the CPU runs them. The
 * DiT gets its own backend, which the CLIP encoder then
 * shares (one stream: its tokens feed the DiT with no synchronisation), the negative-prompt embedding is uploaded
 * once, the Wan VAE gets its backend (lyra_vae_place). umT5 is not placed: its host copy is freed and a device run
 * loads it for its new captions only (lyra_ar_encode_texts). Block streaming
 * (lyra_dit_set_streaming) is set before. Irreversible (the host weights are freed); a no-op when already there.
 * On failure the models are unusable (the caller frees them): LYRA_ERR_OOM names the network. */
lyra_status lyra_ar_models_place(lyra_ar_models *m, lyra_device device, lyra_dtype policy, int use_dmd);

/* The backend whose memory holds the DiT's inputs (and the encoders' outputs): the CPU backend before placement,
 * the device backend after. */
lyra_backend *lyra_ar_backend(lyra_ar_models *m);

/* umT5 embeddings of n captions as Lyra feeds the DiT (upstream M:568-671, CONDM:462-486, CL2:37-55): cleaned,
 * tokenised to 512 with </s>, rows past the real tokens zero. out (n, 512, text_dim) host f32. Captions embedded
 * before on the same device and precision come from the models' cache; the others run through umT5 on `device`
 * with the precision `policy` (lyra_ar_models_place): on the CPU the loaded encoder, on a device an encoder loaded
 * from its file, placed on a backend of its own and freed before this returns, so umT5 (11 GB in bf16 at full
 * size) never stays beside the DiT (upstream runs it once per prompt and offloads it). *n_encoded: how many ran. */
lyra_status lyra_ar_encode_texts(lyra_ar_models *m, lyra_device device, lyra_dtype policy, int n,
                                 const char *const *captions, float *out, int *n_encoded);

/* How many distinct captions of the n a run would send through umT5 (not in the models' cache for device and
 * policy): nonzero means lyra_ar_encode_texts loads umT5 onto the device, beside whatever is placed there (the
 * caller's memory plan decides whether the placed networks may stay, lyra2.generate). */
int lyra_ar_texts_missing(const lyra_ar_models *m, lyra_device device, lyra_dtype policy, int n,
                          const char *const *captions);

/* CLIP tokens of a frame (1, 3, H, W) f32 in [−1, 1] (unclamped, as upstream passes it): out (1, tokens, width); both
 * in lyra_ar_backend's memory. */
lyra_status lyra_ar_encode_image(lyra_ar_models *m, const lyra_tensor *frame, lyra_tensor *out);

#endif
