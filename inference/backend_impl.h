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
	/* NULL: encode is synchronous */
	void (*sync)(void *impl);
	int (*step)(void *impl, const backend_seq *seqs, int n_seqs, float *logits, qerr *e);
	int (*n_blocks)(void *impl);
	/* NULL: the backend does not sample (backend_samples) */
	int (*step_sample)(void *impl, const backend_seq *seqs, int n_seqs,
			   const backend_sample_row *rows, int32_t *ids, sampler_logprobs *lps,
			   qerr *e);
} backend_ops;

struct backend {
	const backend_ops *ops;
	void *impl;            /* owned through ops->free */
};

/* What backend_check_seq checks a sequence against. */
typedef struct backend_seq_limits {
	const char *who;       /* message prefix: "text_cpu", "text_cuda" */
	int vocab;
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

/* A new backend around impl (which it then owns). */
backend *backend_wrap(const backend_ops *ops, void *impl);

#endif
