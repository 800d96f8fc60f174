/*
 * model_config: the three JSON files of a Hugging Face model directory that say what to build
 * and how to run it — config.json, generation_config.json and preprocessor_config.json — read
 * into plain structs with every field validated.
 *
 * config.json, accepted forms:
 *   - model_type "qwen3_vl" (Qwen3VLForConditionalGeneration): text_config + vision_config +
 *     the vision token ids. Rope settings either in the transformers 4.57 form
 *     (text_config.rope_scaling {rope_type, mrope_section, mrope_interleaved} + rope_theta) or
 *     the v5 form (text_config.rope_parameters {rope_type, rope_theta, mrope_section, …}).
 *   - model_type "qwen3" (dense Qwen3ForCausalLM): the text fields at the top level, plain RoPE
 *     (rope_theta + rope_scaling null, or rope_parameters). has_vision is false; mrope is off.
 * Fields transformers gives defaults to take those defaults (listed in model_config.c); the
 * fields that fix tensor shapes are required. Anything missing, of the wrong type, out of range
 * or inconsistent (heads not dividing, mrope sections not summing to head_dim/2, deepstack index
 * beyond the vision depth, rope_type other than "default", an unknown activation, …) is an error
 * naming the file and the field.
 *
 * generation_config.json is optional: without it the defaults are greedy-neutral (temperature
 * 1, top_p 1, top_k 0 = off, repetition_penalty 1) and the eos ids come from config.json.
 * preprocessor_config.json is optional for text-only models; for qwen3_vl without it the
 * Qwen3-VL defaults apply (min_pixels 65536, max_pixels 16777216, mean = std = 0.5).
 *
 * Threads: the structs are plain values; load once, then read from anywhere.
 */
#ifndef QVL_MODEL_CONFIG_H
#define QVL_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qerr.h"

#define MODEL_MAX_DEEPSTACK 8
#define MODEL_MAX_EOS 8

typedef enum model_arch {
	MODEL_ARCH_QWEN3_VL = 0,  /* model_type "qwen3_vl" */
	MODEL_ARCH_QWEN3 = 1,     /* model_type "qwen3" (text only) */
} model_arch;

typedef enum model_act {
	MODEL_ACT_SILU = 0,       /* "silu" */
	MODEL_ACT_GELU_TANH = 1,  /* "gelu_pytorch_tanh" (also "gelu_new", same formula) */
	MODEL_ACT_GELU_ERF = 2,   /* "gelu" */
} model_act;

typedef struct text_config {
	int hidden_size;              /* D */
	int intermediate_size;        /* MLP width */
	int num_hidden_layers;
	int num_attention_heads;
	int num_key_value_heads;      /* default 32 as in transformers (null: num_attention_heads) */
	int head_dim;                 /* default 128 as in transformers */
	int vocab_size;
	int64_t max_position_embeddings;
	double rms_norm_eps;          /* default 1e-6 */
	double rope_theta;            /* required (either form) */
	bool mrope;                   /* true for qwen3_vl: 3-D interleaved MRoPE */
	int mrope_section[3];         /* T, H, W pair counts; sum == head_dim / 2 */
	bool attention_bias;          /* default false; true is refused (not in Qwen3) */
	model_act hidden_act;         /* must be silu */
	bool tie_word_embeddings;     /* the effective value (see model_config.c) */
	int bos_token_id;             /* -1 when absent */
	int eos_token_id;             /* -1 when absent */
} text_config;

typedef struct vision_config {
	int depth;
	int hidden_size;              /* Dv */
	int intermediate_size;
	int num_heads;                /* head_dim = hidden_size / num_heads, a multiple of 4 */
	int in_channels;              /* default 3; must be 3 */
	int patch_size;               /* 16 */
	int temporal_patch_size;      /* 2 */
	int spatial_merge_size;       /* 2 */
	int out_hidden_size;          /* == text hidden_size */
	int num_position_embeddings;  /* a perfect square (48*48) */
	model_act hidden_act;         /* default gelu_pytorch_tanh */
	int n_deepstack;
	int deepstack_visual_indexes[MODEL_MAX_DEEPSTACK];  /* ascending, < depth */
} vision_config;

typedef struct model_config {
	model_arch arch;
	text_config text;
	bool has_vision;              /* arch == MODEL_ARCH_QWEN3_VL */
	vision_config vision;
	int image_token_id;           /* -1 when !has_vision */
	int video_token_id;
	int vision_start_token_id;
	int vision_end_token_id;
} model_config;

typedef struct generation_config {
	int n_eos;
	int eos_token_ids[MODEL_MAX_EOS];
	int bos_token_id;             /* -1 when absent */
	int pad_token_id;             /* -1 when absent */
	bool do_sample;               /* default false */
	double temperature;           /* default 1.0 */
	double top_p;                 /* default 1.0 */
	int top_k;                    /* default 0 = off (HF's own default is 50, but only when
				       * do_sample; we keep 0 unless the file says so) */
	double min_p;                 /* default 0 = off */
	double repetition_penalty;    /* default 1.0 */
	int64_t max_new_tokens;       /* -1 when absent */
} generation_config;

typedef struct preprocessor_config {
	int64_t min_pixels;           /* size.shortest_edge, or min_pixels */
	int64_t max_pixels;           /* size.longest_edge, or max_pixels */
	int patch_size;
	int temporal_patch_size;
	int merge_size;
	float image_mean[3];
	float image_std[3];
	double rescale_factor;        /* default 1/255 */
	bool do_resize, do_rescale, do_normalize, do_convert_rgb;  /* default true */
} preprocessor_config;

/* Parse config.json text; `where` names the file in messages. */
int model_config_parse(const char *text, size_t len, const char *where, model_config *out, qerr *e);
/* Read and parse a config.json file (QERR_MISSING if it does not exist). */
int model_config_load(const char *path, model_config *out, qerr *e);

/* Parse/load generation_config.json. mc supplies the fallback eos id (text.eos_token_id). */
int generation_config_parse(const char *text, size_t len, const char *where,
			    const model_config *mc, generation_config *out, qerr *e);
/* A missing file is not an error: *out gets the defaults. */
int generation_config_load(const char *path, const model_config *mc, generation_config *out,
			   qerr *e);
void generation_config_defaults(const model_config *mc, generation_config *out);

int preprocessor_config_parse(const char *text, size_t len, const char *where,
			      preprocessor_config *out, qerr *e);
/* A missing file is not an error: *out gets the Qwen3-VL defaults. */
int preprocessor_config_load(const char *path, preprocessor_config *out, qerr *e);
void preprocessor_config_defaults(preprocessor_config *out);

/* Load all three from a model directory (dir/config.json required, the others optional).
 * gc or pc may be NULL to skip that file. Every parse/load function writes its outputs only on
 * success. */
int model_config_load_dir(const char *dir, model_config *mc, generation_config *gc,
			  preprocessor_config *pc, qerr *e);

#endif
