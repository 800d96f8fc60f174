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
#include "backend_impl.h"
#include "text_cpu.h"
#include "vision_cpu.h"

typedef struct backend_cpu {
	text_cpu *text;        /* owned */
	vision_cpu *vision;    /* owned; NULL for text-only models */
	int n_blocks;
} backend_cpu;

static void cpu_free(void *impl)
{
	backend_cpu *c = impl;
	if (!c)
		return;
	text_cpu_free(c->text);
	vision_cpu_free(c->vision);
	free(c);
}

static int cpu_encode(void *impl, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		      float *out, qerr *e)
{
	backend_cpu *c = impl;
	if (!c->vision)
		return qerr_set(e, QERR_UNSUPPORTED, "this model has no vision tower");
	return vision_cpu_encode(c->vision, pixel_values, grid_t, grid_h, grid_w, out, e);
}

static int cpu_step(void *impl, const backend_seq *seqs, int n_seqs, float *logits, qerr *e)
{
	return text_cpu_step(((backend_cpu *)impl)->text, seqs, n_seqs, logits, e);
}

static int cpu_n_blocks(void *impl)
{
	return ((backend_cpu *)impl)->n_blocks;
}

static const backend_ops cpu_ops = {
	.name = "cpu", .free = cpu_free, .encode = cpu_encode, .step = cpu_step,
	.n_blocks = cpu_n_blocks,
};

int backend_cpu_new(const model_config *mc, const model_weights *w, const backend_opts *o,
		    backend **out, qerr *e)
{
	*out = NULL;
	if (o->kv_cache_fp8)
		return qerr_set(e, QERR_UNSUPPORTED, "--kv-cache-dtype fp8 needs the cuda backend; the "
				"cpu backend keeps its KV cache in fp32");
	backend_cpu *c = xcalloc(1, sizeof(*c));
	c->n_blocks = o->n_blocks;
	int rc = text_cpu_new(mc, w, o->block_size, o->n_blocks, o->n_threads, &c->text, e);
	if (!rc)
		text_cpu_set_batch_invariant(c->text, o->batch_invariant);
	if (!rc && mc->has_vision)
		rc = vision_cpu_new(mc, w, o->n_threads, &c->vision, e);
	if (rc) {
		cpu_free(c);
		return rc;
	}
	*out = backend_wrap(&cpu_ops, c, mc->text.vocab_size);
	return 0;
}
