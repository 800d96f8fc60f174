/*
 * backend: dispatch of the backend interface (backend.h) to the implementation's ops table
 * (backend_impl.h).
 */
#include "backend.h"

#include <stdlib.h>

#include "alloc.h"
#include "backend_impl.h"

backend *backend_wrap(const backend_ops *ops, void *impl)
{
	backend *b = xcalloc(1, sizeof(*b));
	b->ops = ops;
	b->impl = impl;
	return b;
}

void backend_free(backend *b)
{
	if (!b)
		return;
	b->ops->free(b->impl);
	free(b);
}

const char *backend_name(const backend *b)
{
	return b->ops->name;
}

int backend_n_blocks(const backend *b)
{
	return b->ops->n_blocks(b->impl);
}

int backend_encode(backend *b, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		   float *out, qerr *e)
{
	int rc = b->ops->encode(b->impl, pixel_values, grid_t, grid_h, grid_w, out, e);
	backend_sync(b);
	return rc;
}

int backend_encode_async(backend *b, const float *pixel_values, int grid_t, int grid_h,
			 int grid_w, float *out, qerr *e)
{
	return b->ops->encode(b->impl, pixel_values, grid_t, grid_h, grid_w, out, e);
}

void backend_sync(backend *b)
{
	if (b->ops->sync)
		b->ops->sync(b->impl);
}

int backend_step(backend *b, const backend_seq *seqs, int n_seqs, float *logits, qerr *e)
{
	return b->ops->step(b->impl, seqs, n_seqs, logits, e);
}

bool backend_samples(const backend *b)
{
	return b->ops->step_sample != NULL;
}

int backend_step_sample(backend *b, const backend_seq *seqs, int n_seqs,
			const backend_sample_row *rows, int32_t *ids, sampler_logprobs *lps,
			qerr *e)
{
	if (!b->ops->step_sample)
		return qerr_set(e, QERR_UNSUPPORTED, "the %s backend does not sample", b->ops->name);
	return b->ops->step_sample(b->impl, seqs, n_seqs, rows, ids, lps, e);
}

int backend_check_seq(const backend_seq *s, int si, const backend_seq_limits *lim, qerr *e)
{
	const char *who = lim->who;
	const int bs = lim->block_size;
	if (s->n_new < 1)
		return qerr_set(e, QERR_INVALID, "%s: sequence %d: n_new %d < 1", who, si, s->n_new);
	if (!s->ids || !s->pos || !s->block_table)
		return qerr_set(e, QERR_INVALID, "%s: sequence %d: ids, pos or block_table is NULL",
				who, si);
	if (s->n_cached < 0 || s->n_cached > lim->max_positions - s->n_new)
		return qerr_set(e, QERR_INVALID, "%s: sequence %d: %d cached + %d new positions exceed "
				"%s of %d", who, si, s->n_cached, s->n_new, lim->max_what,
				lim->max_positions);
	int nb = (s->n_cached + s->n_new + bs - 1) / bs;
	for (int b = 0; b < nb; b++)
		if (s->block_table[b] < 0 || s->block_table[b] >= lim->n_blocks)
			return qerr_set(e, QERR_INVALID, "%s: sequence %d: block_table[%d] = %d outside "
					"the pool of %d blocks", who, si, b, s->block_table[b],
					lim->n_blocks);
	for (int i = 0; i < s->n_new; i++) {
		if (s->ids[i] < 0 || s->ids[i] >= lim->vocab)
			return qerr_set(e, QERR_INVALID, "%s: sequence %d: token %d id %d outside the "
					"vocabulary of %d", who, si, i, s->ids[i], lim->vocab);
		for (int a = 0; a < 3; a++)
			if (s->pos[(size_t)a * (size_t)s->n_new + (size_t)i] < 0)
				return qerr_set(e, QERR_INVALID, "%s: sequence %d: token %d position[%d] "
						"= %d is negative", who, si, i, a,
						s->pos[(size_t)a * (size_t)s->n_new + (size_t)i]);
		if (s->vis && s->vis[i] && !lim->has_vision)
			return qerr_set(e, QERR_INVALID, "%s: sequence %d: token %d has vision rows but "
					"the model has no vision", who, si, i);
	}
	if (s->n_logits < 0 || (s->n_logits > 0 && !s->logit_rows))
		return qerr_set(e, QERR_INVALID, "%s: sequence %d: n_logits %d without rows", who, si,
				s->n_logits);
	for (int i = 0; i < s->n_logits; i++)
		if (s->logit_rows[i] < 0 || s->logit_rows[i] >= s->n_new)
			return qerr_set(e, QERR_INVALID, "%s: sequence %d: logit row %d outside its %d new "
					"positions", who, si, s->logit_rows[i], s->n_new);
	return 0;
}
