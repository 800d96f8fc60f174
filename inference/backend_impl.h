/*
 * backend_impl: what a backend implementation fills in (backend.h is what the engine sees).
 *
 * A backend is a struct backend whose ops table is the implementation's and whose impl points
 * at its own state; backend.c dispatches backend_encode/backend_step/backend_free through the
 * table, so the engine never knows which one runs underneath.
 */
#ifndef QVL_BACKEND_IMPL_H
#define QVL_BACKEND_IMPL_H

#include "backend.h"

typedef struct backend_ops {
	const char *name;      /* "cpu", "cuda" */
	void (*free)(void *impl);
	/* may return before out is written (backend_encode_async) */
	int (*encode)(void *impl, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		      float *out, qerr *e);
	/* NULL: encode is synchronous (and forget a no-op) */
	void (*sync)(void *impl);
	void (*forget)(void *impl, const float *rows);
	int (*step)(void *impl, const backend_seq *seqs, int n_seqs, float *logits, qerr *e);
	int (*n_blocks)(void *impl);
	/* Sampling steps on the backend's own device (backend_step_sample_launch / _wait). NULL:
	 * backend.c runs them with step and the host sampler, one launch at a time, chained ids
	 * resolved from the previous launch's answers (what the cpu backend does). */
	int (*launch)(void *impl, const backend_seq *seqs, int n_seqs,
		      const backend_sample_row *rows, qerr *e);
	int (*wait)(void *impl, int32_t *ids, sampler_logprobs *lps, qerr *e);
} backend_ops;

/* The answers of one launched step (backend.c's launch/wait for backends without their own). */
typedef struct backend_answers {
	int n;
	size_t cap;
	int32_t *ids;              /* owned: n */
	sampler_logprobs *lps;     /* owned: n (rows asking for none are left untouched) */
} backend_answers;

struct backend {
	const backend_ops *ops;
	void *impl;                /* owned through ops->free */
	int vocab;
	int n_in_flight;           /* launched, not yet waited for */
	/* backend.c's launch/wait when ops->launch is NULL */
	backend_answers ans[BACKEND_MAX_IN_FLIGHT];   /* ring: the oldest at ans_head */
	int ans_head;
	float *logits;             /* owned: (cap_logits rows, vocab) */
	size_t cap_logits;
	sampler_scratch *sc;       /* owned */
	backend_seq *tmp_seqs;     /* owned: copies with chained ids resolved */
	int32_t *tmp_ids;
	size_t cap_tmp;
};

/* What backend_check_seq checks a sequence against. */
typedef struct backend_seq_limits {
	const char *who;       /* message prefix: "text_cpu", "text_cuda" */
	int vocab;
	int chain_rows;        /* > 0: a one-position sequence may carry id -1 - r, r < chain_rows
				* (BACKEND_CHAINED_ID: the previous launch's row r) */
	int n_blocks, block_size;
	int max_positions;     /* n_cached + n_new may not exceed this */
	const char *max_what;  /* what max_positions is, for the message ("the pool") */
	bool has_vision;
} backend_seq_limits;

/* Check sequence si of a step against lim before anything is written: n_new ≥ 1, its arrays
 * present, n_cached + n_new within max_positions, the block table entries used inside the
 * pool, token ids in the vocabulary, positions non-negative, vision rows only for a model with
 * vision, logit rows inside the new positions. QERR_INVALID naming the sequence and value. */
int backend_check_seq(const backend_seq *s, int si, const backend_seq_limits *lim, qerr *e);

/* A new backend around impl (which it then owns), for a model of vocab token ids. */
backend *backend_wrap(const backend_ops *ops, void *impl, int vocab);

#endif
