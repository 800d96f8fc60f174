/*
 * backend_cpu: the reference backend — the vision tower (vision_cpu.c) and the text decoder
 * with its paged KV pool (text_cpu.c) behind the backend interface (backend.h). fp32 math on
 * weights of any stored dtype, OpenBLAS for matrix products. It is what every test runs in CI
 * and what the CUDA backend is checked against. backend_opts.batch_invariant reaches the text
 * decoder only (text_cpu.h): the vision tower runs one image at a time, so no other request
 * can change its results.
 */
#include "backend.h"

#include <stdlib.h>

#include "alloc.h"
#include "text_cpu.h"
#include "vision_cpu.h"

struct backend {
	text_cpu *text;        /* owned */
	vision_cpu *vision;    /* owned; NULL for text-only models */
};

int backend_cpu_new(const model_config *mc, const model_weights *w, const backend_opts *o,
		    backend **out, qerr *e)
{
	*out = NULL;
	backend *b = xcalloc(1, sizeof(*b));
	int rc = text_cpu_new(mc, w, o->block_size, o->n_blocks, o->n_threads, &b->text, e);
	if (!rc)
		text_cpu_set_batch_invariant(b->text, o->batch_invariant);
	if (!rc && mc->has_vision)
		rc = vision_cpu_new(mc, w, o->n_threads, &b->vision, e);
	if (rc) {
		backend_free(b);
		return rc;
	}
	*out = b;
	return 0;
}

void backend_free(backend *b)
{
	if (!b)
		return;
	text_cpu_free(b->text);
	vision_cpu_free(b->vision);
	free(b);
}

int backend_encode(backend *b, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		   float *out, qerr *e)
{
	if (!b->vision)
		return qerr_set(e, QERR_UNSUPPORTED, "this model has no vision tower");
	return vision_cpu_encode(b->vision, pixel_values, grid_t, grid_h, grid_w, out, e);
}

int backend_step(backend *b, const backend_seq *seqs, int n_seqs, float *logits, qerr *e)
{
	return text_cpu_step(b->text, seqs, n_seqs, logits, e);
}
