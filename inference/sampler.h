/*
 * sampler: turns one sequence's logits into its next token, as vLLM V1's Sampler does, with
 * every parameter per sequence so that a batch may mix greedy, seeded and penalised requests.
 *
 *   raw logits ─┬─► logprobs (log_softmax of the raw logits, in double: what is reported)
 *               └─► min_tokens mask (eos + stop ids → -inf while n_out < min_tokens)
 *                   ─► penalties: repetition (prompt ∪ output ids: x>0 ? x/r : x·r),
 *                                 frequency and presence (output ids: x -= f·count + p·[count>0])
 *                   ─► greedy? arg max (lowest id on ties)
 *                   ─► / temperature ─► min_p (drop p < min_p·p_max) ─► top_k ─► top_p
 *                   ─► one draw from the sequence's own generator
 *
 * top_p keeps the smallest set of most likely tokens whose probability reaches top_p (at least
 * one). Greedy means temperature < SAMPLER_GREEDY_EPS (vLLM's _SAMPLING_EPS).
 *
 * Seeds: each sequence owns a xoshiro256** state seeded from (seed, sequence index) with
 * splitmix64, so its draws depend on nothing else in the batch: the same seed gives the same
 * output whatever runs beside it. Without a seed the state comes from getrandom(2).
 *
 * Penalty state: the distinct prompt ids (sorted, for the repetition penalty) and an
 * open-addressing count table of the output ids; both are built only when a penalty is not
 * neutral, so a plain request pays nothing.
 *
 * Ownership: a sampler_state is owned by its sequence; scratch belongs to the caller (one per
 * engine thread). Threads: no shared state; one thread per sampler_state at a time.
 */
#ifndef QVL_SAMPLER_H
#define QVL_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qerr.h"

#define SAMPLER_GREEDY_EPS 1e-5
#define SAMPLER_MAX_LOGPROBS 20
#define SAMPLER_MAX_STOP_IDS 64
#define SAMPLER_MAX_EOS 8

typedef struct sampling_params {
	double temperature;            /* ≥ 0; < SAMPLER_GREEDY_EPS is greedy */
	double top_p;                  /* (0, 1]; 1 is off */
	int32_t top_k;                 /* ≤ 0 is off */
	double min_p;                  /* [0, 1]; 0 is off */
	double repetition_penalty;     /* > 0; 1 is off */
	double presence_penalty;       /* [-2, 2]; 0 is off */
	double frequency_penalty;      /* [-2, 2]; 0 is off */
	bool has_seed;
	uint64_t seed;
	int32_t min_tokens;            /* eos and stop ids are masked until this many were made */
	bool ignore_eos;
	int32_t n_eos;                 /* the model's eos ids (generation_config) */
	int32_t eos_ids[SAMPLER_MAX_EOS];
	int32_t n_stop_ids;            /* stop_token_ids of the request */
	int32_t stop_ids[SAMPLER_MAX_STOP_IDS];
	int32_t logprobs;              /* -1: none; 0: the chosen token's only; k ≤ 20: and the top k */
	uint8_t guided;                /* SAMPLER_GUIDED_*: output constrained by the engine (the
					* sampler itself only checks the value) */
} sampling_params;

enum {
	SAMPLER_GUIDED_NONE = 0,
	SAMPLER_GUIDED_JSON = 1,       /* response_format json_object: one JSON object */
};

/* Check p against vocab size V (ids in range, values in the ranges above). QERR_INVALID naming
 * the field ("sampling: top_p: …"). */
int sampling_params_check(const sampling_params *p, int V, qerr *e);

typedef struct sampler_state {
	uint64_t rng[4];               /* xoshiro256** */
	int32_t *prompt_ids;           /* owned: distinct prompt ids, sorted (repetition penalty) */
	size_t n_prompt_ids;
	int32_t *out_ids;              /* owned: count table keys (-1 empty), capacity cap */
	int32_t *out_counts;           /* owned */
	size_t cap, n_out_distinct;
	int64_t n_out;                 /* output tokens accepted so far */
} sampler_state;

/* Prepare the state of sequence `index` (0..n-1 of a request with n > 1: the seed used is
 * seed + index, as vLLM gives its child requests) with prompt ids (used only when
 * repetition_penalty != 1). */
void sampler_state_init(sampler_state *s, const sampling_params *p, uint32_t index,
			const int32_t *prompt, size_t n_prompt);
void sampler_state_deinit(sampler_state *s);

/* Record an output token (call once per token made, in order, after sampler_sample). */
void sampler_state_accept(sampler_state *s, const sampling_params *p, int32_t id);

typedef struct sampler_logprobs {
	int32_t id;                    /* the chosen token */
	float logprob;                 /* its log probability under the raw distribution */
	int32_t n_top;                 /* p->logprobs when > 0 */
	int32_t top_ids[SAMPLER_MAX_LOGPROBS];     /* most likely first; ties: lower id first */
	float top_logprobs[SAMPLER_MAX_LOGPROBS];
} sampler_logprobs;

typedef struct sampler_scratch sampler_scratch;
sampler_scratch *sampler_scratch_new(int V);
void sampler_scratch_free(sampler_scratch *sc);

/* Choose the next token of one sequence from its logits (V floats; modified in place: they are
 * this step's scratch). lp, when p->logprobs ≥ 0 and lp is non-NULL, receives the logprobs of
 * the raw logits. Never fails: when every id is masked (only possible with min_tokens and a
 * vocabulary of eos ids) the arg max of the raw logits is returned. */
int32_t sampler_sample(const sampling_params *p, sampler_state *s, float *logits, int V,
		       sampler_scratch *sc, sampler_logprobs *lp);

/* ---- sampling elsewhere (the GPU: kernels/sampling.h) with the same state ---- */

/* The uniform draw sampler_sample would take for a non-greedy call (advances the generator
 * exactly as it does; greedy calls take none). */
double sampler_draw(sampler_state *s);

/* Whether eos and stop ids are masked for the next token (n_out < min_tokens), and whether any
 * penalty applies. */
bool sampler_masks_stops(const sampling_params *p, const sampler_state *s);
bool sampler_penalised(const sampling_params *p);

/* The penalty entries of s: every distinct id of the output with its count, then (repetition
 * penalty on) every prompt id not in the output with count 0. Writes at most cap entries and
 * returns how many there are (call with cap 0 to size). */
size_t sampler_penalty_list(const sampling_params *p, const sampler_state *s, int32_t *ids,
			    int32_t *counts, size_t cap);

#endif
