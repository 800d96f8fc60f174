/*
 * model_weights: the tensors a model needs, by name and shape, bound to a safetensors set.
 *
 * One manifest, derived from the config alone, lists every tensor the architecture has — its
 * checkpoint name, its shape, what kind of parameter it is — and where it is bound in the
 * model_weights struct. Loading walks the manifest and binds each entry to the file's tensor of
 * that name after checking its shape; `qvl mkmodel` walks the same manifest to write random
 * weights. So the loader and the generator cannot disagree about names or shapes.
 *
 * Names (Hugging Face module paths, as in the published checkpoint):
 *   qwen3_vl: model.visual.*  and  model.language_model.*  (+ lm_head.weight when untied)
 *   qwen3:    model.*                                      (+ lm_head.weight when untied)
 * With tied embeddings lm_head is embed_tokens (a lm_head.weight in the file is then ignored,
 * as transformers ignores it). Tensors in the file that the manifest does not name are logged
 * and ignored.
 *
 * Ownership: model_weights owns the safetensors set it was bound to (st) and its layer arrays;
 * every `const st_tensor *` is borrowed from st. Immutable after binding: any thread may read.
 */
#ifndef QVL_MODEL_WEIGHTS_H
#define QVL_MODEL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "qerr.h"
#include "safetensors.h"

#define WEIGHT_NAME_MAX 96
#define WEIGHT_MAX_DIMS 5

/* What a parameter is; mkmodel picks its random distribution from this. */
typedef enum weight_kind {
	WEIGHT_EMBED,        /* token embedding / LM head rows */
	WEIGHT_LINEAR_IN,    /* a projection that reads the residual stream (q,k,v,gate,up,fc1) */
	WEIGHT_LINEAR_OUT,   /* a projection that writes back to it (o,down,proj,fc2) */
	WEIGHT_BIAS,
	WEIGHT_NORM,         /* RMSNorm / LayerNorm scale */
	WEIGHT_NORM_BIAS,    /* LayerNorm shift */
	WEIGHT_POS_EMBED,    /* vision learned position table */
} weight_kind;

typedef struct text_layer_weights {
	const st_tensor *input_layernorm;          /* (D) */
	const st_tensor *q_proj;                   /* (H*hd, D) */
	const st_tensor *k_proj;                   /* (KV*hd, D) */
	const st_tensor *v_proj;                   /* (KV*hd, D) */
	const st_tensor *o_proj;                   /* (D, H*hd) */
	const st_tensor *q_norm;                   /* (hd) */
	const st_tensor *k_norm;                   /* (hd) */
	const st_tensor *post_attention_layernorm; /* (D) */
	const st_tensor *gate_proj;                /* (I, D) */
	const st_tensor *up_proj;                  /* (I, D) */
	const st_tensor *down_proj;                /* (D, I) */
} text_layer_weights;

typedef struct vision_block_weights {
	const st_tensor *norm1_w, *norm1_b;        /* (Dv) */
	const st_tensor *qkv_w, *qkv_b;            /* (3*Dv, Dv), (3*Dv) */
	const st_tensor *proj_w, *proj_b;          /* (Dv, Dv), (Dv) */
	const st_tensor *norm2_w, *norm2_b;        /* (Dv) */
	const st_tensor *fc1_w, *fc1_b;            /* (Iv, Dv), (Iv) */
	const st_tensor *fc2_w, *fc2_b;            /* (Dv, Iv), (Dv) */
} vision_block_weights;

/* Patch merger: LayerNorm (over Dv before the 2x2 concat for the main merger, over Dm = 4*Dv
 * after it for the deepstack mergers), then fc1 (Dm, Dm), GELU(erf), fc2 (D, Dm). */
typedef struct merger_weights {
	const st_tensor *norm_w, *norm_b;
	const st_tensor *fc1_w, *fc1_b;
	const st_tensor *fc2_w, *fc2_b;
} merger_weights;

typedef struct model_weights {
	st_set *st;                          /* owned */
	const st_tensor *embed_tokens;       /* (V, D) */
	const st_tensor *lm_head;            /* (V, D); == embed_tokens when tied */
	const st_tensor *norm;               /* (D) final RMSNorm */
	int n_layers;
	text_layer_weights *layers;          /* owned, n_layers */
	/* vision tower (qwen3_vl only; NULL/0 otherwise) */
	const st_tensor *patch_embed_w;      /* (Dv, C, Tp, P, P) */
	const st_tensor *patch_embed_b;      /* (Dv) */
	const st_tensor *pos_embed;          /* (Npos, Dv) */
	int n_blocks;
	vision_block_weights *blocks;        /* owned, n_blocks */
	merger_weights merger;
	int n_deepstack;
	merger_weights *deepstack;           /* owned, n_deepstack */
} model_weights;

typedef struct weight_spec {
	char name[WEIGHT_NAME_MAX];
	int ndim;
	int64_t shape[WEIGHT_MAX_DIMS];
	weight_kind kind;
	int64_t fan_in;                      /* input features for linear/conv weights, else 0 */
	const st_tensor **slot;              /* where the tensor is bound in model_weights */
} weight_spec;

/* The manifest for mc, in a stable order (text first, then vision). Slots point into w, whose
 * layer arrays are allocated here (w may be a zeroed struct that is later bound or freed with
 * model_weights_deinit). The returned array is owned by the caller (free()). */
weight_spec *model_weights_manifest(const model_config *mc, model_weights *w, size_t *n);

/* Total element count of a manifest. */
uint64_t model_weights_numel(const weight_spec *specs, size_t n);

/* Bind every manifest tensor of mc in st (which w takes ownership of, also on failure).
 * Fails with QERR_MISSING naming the first missing tensor, or QERR_INVALID naming a tensor whose
 * shape differs from what config.json implies (both shapes in the message). `where` names the
 * checkpoint in messages. */
int model_weights_bind(const model_config *mc, st_set *st, const char *where, model_weights *w,
		       qerr *e);

/* Open dir's safetensors (one file or sharded) and bind them. */
int model_weights_open(const char *dir, const model_config *mc, model_weights *w, qerr *e);

/* Release what w owns; w is zeroed. */
void model_weights_deinit(model_weights *w);

#endif
