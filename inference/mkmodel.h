/*
 * mkmodel: make a complete Hugging Face-style model directory with random weights.
 *
 * Real weights cannot be downloaded where qvl is developed and tested, so every test and
 * benchmark runs on checkpoints made here: the same files, names, shapes and dtypes as the
 * published Qwen3-VL-2B-Instruct (preset "2b"), a test-sized model of the same architecture
 * (preset "tiny"), or any config.json given. The directory holds config.json (the preset or file,
 * verbatim), model.safetensors, generation_config.json, preprocessor_config.json (qwen3_vl only),
 * tokenizer.json, tokenizer_config.json and chat_template.jinja (the vendored Qwen3-VL files).
 *
 * Weights: value i of tensor k is a function of (seed, k, i) alone (rng.h), so the same seed
 * gives byte-identical files. Distributions are uniform with a standard deviation chosen per
 * kind so that activations stay finite and logits spread (see mkmodel.c).
 */
#ifndef QVL_MKMODEL_H
#define QVL_MKMODEL_H

#include <stdint.h>

#include "qerr.h"
#include "safetensors.h"

typedef struct mkmodel_opts {
	const char *preset;       /* "tiny", "2b" (a file presets/<name>.json in the data dir), or NULL */
	const char *config_path;  /* a config.json to use instead of a preset */
	const char *out_dir;      /* created if absent (its parent must exist) */
	uint64_t seed;            /* default 0 */
	st_dtype dtype;           /* ST_BF16 (default) or ST_F32 (ST_F16 also works) */
	int threads;              /* generator threads; 0 = one per online CPU (max 16) */
} mkmodel_opts;

/* Make the model directory. Fails naming the problem (unknown preset, invalid config, an
 * unwritable directory, a full disk); a failed run leaves no model.safetensors behind. */
int mkmodel_run(const mkmodel_opts *o, qerr *e);

/* The random value (before dtype rounding) that mkmodel writes at element i of the tensor with
 * manifest index k, for a parameter of the given kind and fan-in — exposed so tests can check
 * files element by element. `kind` is a weight_kind. */
float mkmodel_value(uint64_t seed, uint64_t k, uint64_t i, int kind, int64_t fan_in,
		    int64_t hidden_size);

#endif
