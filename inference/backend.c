/*
 * backend: dispatch of the backend interface (backend.h) to the implementation's ops table
 * (backend_impl.h), and launch/wait of sampling steps for backends that have none of their own:
 * a launch runs the step at once (ops->step, then sampler_sample per row on the host) and keeps
 * its answers in a ring of BACKEND_MAX_IN_FLIGHT until waited for; a chained id (-1 - r) is
 * the last launch's row r. The engine drives every backend the same way, and the cpu backend
 * shows in CI that the chaining is right, while only the cuda backend overlaps anything.
 */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend_impl.h"

backend *backend_wrap(const backend_ops *ops, void *impl, int vocab)
{
	backend *b = xcalloc(1, sizeof(*b));
	b->ops = ops;
	b->impl = impl;
	b->vocab = vocab;
	return b;
}

void backend_free(backend *b)
{
	if (!b)
		return;
	b->ops->free(b->impl);
	for (int i = 0; i < BACKEND_MAX_IN_FLIGHT; i++) {
		free(b->ans[i].ids);
		free(b->ans[i].lps);
	}
	free(b->logits);
	sampler_scratch_free(b->sc);
	free(b->tmp_seqs);
	free(b->tmp_ids);
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

void backend_forget_rows(backend *b, const float *rows)
{
	if (b->ops->forget)
		b->ops->forget(b->impl, rows);
}

int backend_step(backend *b, const backend_seq *seqs, int n_seqs, float *logits, qerr *e)
{
	return b->ops->step(b->impl, seqs, n_seqs, logits, e);
}

int backend_step_sample(backend *b, const backend_seq *seqs, int n_seqs,
			const backend_sample_row *rows, int32_t *ids, sampler_logprobs *lps,
			qerr *e)
{
	if (b->n_in_flight)
		return qerr_set(e, QERR_INVALID, "backend_step_sample: %d launched steps not waited "
				"for", b->n_in_flight);
	int rc = backend_step_sample_launch(b, seqs, n_seqs, rows, e);
	return rc ? rc : backend_step_sample_wait(b, ids, lps, e);
}

/* The seqs with chained ids replaced by the last launch's answers (seqs itself when none is
 * chained); NULL after setting e when a chained id is not one of them. */
static const backend_seq *resolve_chained(backend *b, const backend_seq *seqs, int n_seqs,
					  qerr *e)
{
	int n_chained = 0;
	for (int i = 0; i < n_seqs; i++)
		n_chained += seqs[i].n_new >= 1 && seqs[i].ids && seqs[i].ids[0] < 0;
	if (!n_chained)
		return seqs;
	/* the last launch's answers: its slot stays in the ring until a later launch reuses it */
	const backend_answers *last =
		&b->ans[(b->ans_head + b->n_in_flight + BACKEND_MAX_IN_FLIGHT - 1) %
			BACKEND_MAX_IN_FLIGHT];
	if ((size_t)n_seqs > b->cap_tmp) {
		b->cap_tmp = 2 * (size_t)n_seqs;
		b->tmp_seqs = xrealloc(b->tmp_seqs, b->cap_tmp * sizeof(*b->tmp_seqs));
		b->tmp_ids = xrealloc(b->tmp_ids, b->cap_tmp * sizeof(*b->tmp_ids));
	}
	for (int i = 0; i < n_seqs; i++) {
		b->tmp_seqs[i] = seqs[i];
		if (seqs[i].n_new < 1 || !seqs[i].ids || seqs[i].ids[0] >= 0)
			continue;
		int64_t r = -1 - (int64_t)seqs[i].ids[0];
		if (seqs[i].n_new != 1 || r >= last->n) {
			qerr_set(e, QERR_INVALID, "%s: sequence %d: chained id %d with %d new positions; "
				 "the last launch answered %d rows", b->ops->name, i, seqs[i].ids[0],
				 seqs[i].n_new, last->n);
			return NULL;
		}
		b->tmp_ids[i] = last->ids[r];
		b->tmp_seqs[i].ids = &b->tmp_ids[i];
	}
	return b->tmp_seqs;
}

static int emulated_launch(backend *b, const backend_seq *seqs, int n_seqs,
			   const backend_sample_row *rows, qerr *e)
{
	const backend_seq *use = resolve_chained(b, seqs, n_seqs, e);
	if (!use)
		return -e->code;
	size_t n = 0;
	for (int i = 0; i < n_seqs; i++)
		n += seqs[i].n_logits > 0 ? (size_t)seqs[i].n_logits : 0;
	if (n > b->cap_logits) {
		b->cap_logits = 2 * n;
		free(b->logits);
		b->logits = xmalloc_huge(b->cap_logits * (size_t)b->vocab * sizeof(float));
	}
	int rc = b->ops->step(b->impl, use, n_seqs, b->logits, e);
	if (rc)
		return rc;
	if (!b->sc)
		b->sc = sampler_scratch_new(b->vocab);
	backend_answers *a = &b->ans[(b->ans_head + b->n_in_flight) % BACKEND_MAX_IN_FLIGHT];
	if (n > a->cap) {
		a->cap = 2 * n;
		a->ids = xrealloc(a->ids, a->cap * sizeof(*a->ids));
		a->lps = xrealloc(a->lps, a->cap * sizeof(*a->lps));
	}
	for (size_t r = 0; r < n; r++)
		a->ids[r] = sampler_sample(rows[r].sp, rows[r].ss, b->logits + r * (size_t)b->vocab,
					   b->vocab, b->sc, rows[r].sp->logprobs >= 0 ? &a->lps[r] : NULL);
	a->n = (int)n;
	return 0;
}

int backend_step_sample_launch(backend *b, const backend_seq *seqs, int n_seqs,
			       const backend_sample_row *rows, qerr *e)
{
	if (b->n_in_flight == BACKEND_MAX_IN_FLIGHT)
		return qerr_set(e, QERR_INVALID, "backend_step_sample_launch: %d steps in flight "
				"already", b->n_in_flight);
	int rc = b->ops->launch ? b->ops->launch(b->impl, seqs, n_seqs, rows, e)
				: emulated_launch(b, seqs, n_seqs, rows, e);
	if (!rc)
		b->n_in_flight++;
	return rc;
}

int backend_step_sample_wait(backend *b, int32_t *ids, sampler_logprobs *lps, qerr *e)
{
	if (!b->n_in_flight)
		return qerr_set(e, QERR_INVALID, "backend_step_sample_wait: no step in flight");
	b->n_in_flight--;
	if (b->ops->wait)
		return b->ops->wait(b->impl, ids, lps, e);
	const backend_answers *a = &b->ans[b->ans_head];
	b->ans_head = (b->ans_head + 1) % BACKEND_MAX_IN_FLIGHT;
	memcpy(ids, a->ids, (size_t)a->n * sizeof(*ids));
	if (lps)
		memcpy(lps, a->lps, (size_t)a->n * sizeof(*lps));
	return 0;
}

int backend_in_flight(const backend *b)
{
	return b->n_in_flight;
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
		bool chained = s->n_new == 1 && s->ids[i] < 0 && -1 - (int64_t)s->ids[i] < lim->chain_rows;
		if (!chained && (s->ids[i] < 0 || s->ids[i] >= lim->vocab))
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
