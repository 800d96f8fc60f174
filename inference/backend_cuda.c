/*
 * backend_cuda: the CUDA backend — the vision tower (vision_cuda.c) and the text decoder with
 * its paged KV pool (text_cuda.c: bf16 weights, 16-bit operands — fp16 for q/k/v and gate/up
 * where bounded —, fp32 residual stream; a bf16 or fp8 KV cache) on one GPU, behind the backend
 * interface (backend.h).
 *
 * Threads: one worker thread per GPU owns that GPU's context, stream, cuBLASLt context and
 * model shard; the engine thread hands it one job at a time (encode or step) and waits for the
 * answer. An encode answers once the tower is queued: its rows stay on the device (enc_ring) for
 * the prefill that reads them, and their host copy (the engine's encoder cache) is written only
 * if the ring must let them go first — off the image request's critical path. With one GPU that is a hand-off per step; it is the shape tensor parallelism needs
 * (every worker runs its shard of the same step, NCCL between them), so the engine will not
 * change when a second GPU arrives.
 *
 * Memory plan (vLLM's): the process may use gpu_memory_utilization × the card's memory. Weights
 * go first, then the activation buffers for the largest step (max_num_batched_tokens new
 * positions of max_num_seqs sequences, the attention workspace for max_model_len, the vision
 * scratch for the largest image), a reserve for the CUDA graphs, and the KV pool takes the rest
 * (or kv_cache_memory_bytes, or n_blocks when given). Every device allocation happens here at
 * start-up; a request never allocates device memory. The plan is logged — the 2b checkpoint
 * on an H100 (bench_decode_cuda's settings: max_model_len 4096, gpu_memory_utilization 0.85):
 *
 *   device 0: NVIDIA H100 80GB HBM3 (79.2 GiB), gpu_memory_utilization 0.85 → 67.3 GiB
 *   weights 3.96 GiB (text 3.20, vision 0.76), activations 1.02 GiB (8192 tokens, 256
 *   sequences, max_model_len 4096), vision scratch and encoder rows 1.81 GiB
 *   KV cache 59.70 GiB (bfloat16) = 34935 blocks of 16 = 558960 tokens in flight (136.5
 *   sequences of 4096); 35 decode graphs; 67.09 GiB in use, 12.09 GiB free
 */
#include "backend.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend_impl.h"
#include "log.h"

#ifdef QVL_HAVE_CUDA

#include <cuda_runtime_api.h>

#include "cuda_check.h"
#include "gemm.h"
#include "text_cuda.h"
#include "vision_cuda.h"

/* Device memory kept back from the plan for what is not ours to size exactly: the captured
 * graphs, cuBLASLt's own buffers, the CUDA context growing. */
#define GRAPH_RESERVE ((size_t)256 << 20)
#define GEMM_WORKSPACE ((size_t)32 << 20)
/* The largest image: Qwen3-VL's default max_pixels (4096 × 4096) in 16-pixel patches. */
#define DEFAULT_MAX_PATCHES 65536

typedef enum job_kind {
	JOB_NONE, JOB_INIT, JOB_ENCODE, JOB_SYNC, JOB_FORGET, JOB_STEP, JOB_LAUNCH, JOB_WAIT,
	JOB_QUIT
} job_kind;

typedef struct job {
	job_kind kind;
	/* encode */
	const float *pixel_values;
	int grid_t, grid_h, grid_w;
	float *out;
	/* step */
	const backend_seq *seqs;
	int n_seqs;
	float *logits;
	/* launch, wait */
	const backend_sample_row *rows;
	int32_t *ids;
	sampler_logprobs *lps;
	/* result */
	int rc;
	qerr e;
} job;

/* The rows of recent encodes, kept on the device for the prefill that reads them: a ring over
 * one allocation, an entry per encode keyed by the host rows the encode was given (the engine's
 * encoder-cache entry, which the step's backend_seq.vis points into). The host rows are not
 * written at encode time — widening 6.4 MB of fp32 per 448x448 image into fresh memory took
 * 4-5 ms on the H100 host, longer than the prefill — but only when the entry must leave the
 * ring while its host rows live (a later encode needs the space) or at backend_sync. An entry
 * leaves without a host copy when the engine forgets its rows (the encoder cache frees them) or
 * a new encode is given the same host memory. Until it leaves, a step reads the device rows. */
typedef struct enc_entry {
	float *host;           /* (n_tok, 1 + n_ds, D) fp32, written only once host_written */
	size_t off;            /* elements into the ring: (1 + n_ds, n_tok, D) bf16 */
	int n_tok;
	bool host_written;
} enc_entry;

typedef struct enc_ring {
	uint16_t *base;        /* device, owned */
	size_t cap, head;      /* elements */
	size_t tok_elems;      /* (1 + n_ds) · D */
	int D;
	enc_entry *e;          /* owned, n of cap_e */
	int n, cap_e;
} enc_ring;

typedef struct gpu_worker {
	int device;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	job j;
	bool pending, done;
	/* owned by the worker thread */
	cudaStream_t stream;
	kn_gemm_ctx *gemm;
	text_cuda *text;
	vision_cuda *vision;
	void *vis_scratch;
	size_t vis_scratch_bytes;
	enc_ring enc;
} gpu_worker;

typedef struct backend_cuda {
	const model_config *mc;
	const model_weights *w;
	backend_opts o;
	int n_blocks;
	gpu_worker worker;   /* one GPU; tensor parallelism adds more */
} backend_cuda;

static double gib(size_t b)
{
	return (double)b / (double)(1u << 30);
}

static void enc_drop(enc_ring *r, int i)
{
	r->e[i] = r->e[--r->n];
}

/* Write entry i's host rows from its device rows (bf16 widened), unless written already. */
static void enc_widen(enc_ring *r, int i, cudaStream_t st)
{
	enc_entry *en = &r->e[i];
	if (en->host_written)
		return;
	size_t T = (size_t)en->n_tok, n = T * r->tok_elems;
	uint16_t *tmp = xmalloc(n * sizeof(uint16_t));
	CUDA_CHECK(cudaMemcpyAsync(tmp, r->base + en->off, n * sizeof(uint16_t),
				   cudaMemcpyDeviceToHost, st));
	CUDA_CHECK(cudaStreamSynchronize(st));
	vision_cuda_rows_to_host(en->host, tmp, T, (int)(r->tok_elems / (size_t)r->D), r->D);
	free(tmp);
	en->host_written = true;
}

/* Device rows for an encode of n_tok tokens given host rows at host: an entry on the same host
 * memory is dropped (that memory is being reused), one on the device range chosen leaves after
 * its host rows are written. NULL when the ring is too small (the encode then writes the host
 * rows at once and steps narrow them as before). */
static uint16_t *enc_place(enc_ring *r, const float *host, int64_t n_tok, cudaStream_t st)
{
	uintptr_t h = (uintptr_t)host, hend = h + (size_t)n_tok * r->tok_elems * sizeof(float);
	for (int i = r->n - 1; i >= 0; i--) {
		uintptr_t h0 = (uintptr_t)r->e[i].host;
		uintptr_t h1 = h0 + (size_t)r->e[i].n_tok * r->tok_elems * sizeof(float);
		if (h0 < hend && h < h1)
			enc_drop(r, i);
	}
	size_t need = (size_t)n_tok * r->tok_elems;
	if (!r->base || n_tok < 1 || need > r->cap)
		return NULL;
	if (r->head + need > r->cap)
		r->head = 0;
	size_t lo = r->head, hi = lo + need;
	for (int i = r->n - 1; i >= 0; i--) {
		size_t a = r->e[i].off, b = a + (size_t)r->e[i].n_tok * r->tok_elems;
		if (a < hi && lo < b) {
			enc_widen(r, i, st);
			enc_drop(r, i);
		}
	}
	return r->base + lo;
}

static void enc_record(enc_ring *r, float *host, const uint16_t *dev, int n_tok)
{
	if (r->n == r->cap_e) {
		r->cap_e = r->cap_e ? 2 * r->cap_e : 16;
		r->e = xrealloc(r->e, (size_t)r->cap_e * sizeof(*r->e));
	}
	size_t off = (size_t)(dev - r->base);
	r->e[r->n++] = (enc_entry){ .host = host, .off = off, .n_tok = n_tok };
	r->head = off + (size_t)n_tok * r->tok_elems;
}

/* The engine frees rows: their entry leaves without a host copy. */
static void enc_forget(enc_ring *r, const float *rows)
{
	for (int i = r->n - 1; i >= 0; i--)
		if (r->e[i].host == rows)
			enc_drop(r, i);
}

/* text_cuda_vis_find_fn over the ring. */
static const uint16_t *enc_find(void *ctx, const float *row, size_t *plane_stride)
{
	const enc_ring *r = ctx;
	for (int i = 0; i < r->n; i++) {
		const enc_entry *en = &r->e[i];
		uintptr_t h0 = (uintptr_t)en->host, p = (uintptr_t)row;
		if (p < h0 || p >= h0 + (size_t)en->n_tok * r->tok_elems * sizeof(float))
			continue;
		size_t d = (size_t)(p - h0) / sizeof(float);
		if ((p - h0) % (r->tok_elems * sizeof(float)))
			return NULL;   /* not the start of a token's rows */
		*plane_stride = (size_t)en->n_tok * r->D;
		return r->base + en->off + d / r->tok_elems * (size_t)r->D;
	}
	return NULL;
}

/* Load, plan, allocate: runs on the worker thread. */
static int worker_init(backend_cuda *bc, gpu_worker *g, qerr *e)
{
	const backend_opts *o = &bc->o;
	int n_dev = 0;
	if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
		cudaGetLastError();
		return qerr_set(e, QERR_UNSUPPORTED, "--backend cuda: no CUDA device is visible");
	}
	if (g->device < 0 || g->device >= n_dev)
		return qerr_set(e, QERR_INVALID, "--backend cuda: device %d does not exist (%d visible)",
				g->device, n_dev);
	CUDA_CHECK(cudaSetDevice(g->device));
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, g->device));
	CUDA_CHECK(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
	g->gemm = kn_gemm_ctx_new(GEMM_WORKSPACE);
	int rc = text_cuda_new(bc->mc, bc->w, g->gemm, g->stream, o->kv_cache_fp8, &g->text, e);
	if (!rc && bc->mc->has_vision)
		rc = vision_cuda_new(bc->mc, bc->w, g->gemm, g->stream, &g->vision, e);
	if (rc)
		return rc;
	size_t vbytes = 0;
	if (g->vision) {
		int mp = o->max_image_patches > 0 ? o->max_image_patches : DEFAULT_MAX_PATCHES;
		g->vis_scratch_bytes = vision_cuda_scratch_bytes(g->vision, mp);
		if (g->vis_scratch_bytes == 0)
			return qerr_set(e, QERR_INVALID, "--backend cuda: %d image patches is outside "
					"1 .. 2^20", mp);
		if (cudaMalloc(&g->vis_scratch, g->vis_scratch_bytes) != cudaSuccess) {
			cudaGetLastError();
			return qerr_set(e, QERR_LIMIT, "--backend cuda: the vision scratch for images of "
					"%d patches needs %.2f GiB that is not free", mp,
					gib(g->vis_scratch_bytes));
		}
		vbytes = g->vis_scratch_bytes;
		/* the device encoder rows: twice the encoder budget (a step's images) */
		enc_ring *r = &g->enc;
		r->D = bc->mc->text.hidden_size;
		r->tok_elems = (size_t)(1 + bc->mc->vision.n_deepstack) * (size_t)r->D;
		r->cap = 2 * (size_t)o->max_num_batched_tokens * r->tok_elems;
		if (cudaMalloc((void **)&r->base, r->cap * 2) != cudaSuccess) {
			cudaGetLastError();
			return qerr_set(e, QERR_LIMIT, "--backend cuda: the device encoder rows for %d "
					"image tokens need %.2f GiB that is not free",
					2 * o->max_num_batched_tokens, gib(r->cap * 2));
		}
		vbytes += r->cap * 2;
		text_cuda_set_vis_find(g->text, enc_find, r);
	}
	text_cuda_limits lim = { .max_tokens = o->max_num_batched_tokens,
				 .max_seqs = o->max_num_seqs, .max_ctx = o->max_model_len,
				 .block_size = o->block_size };
	size_t act = text_cuda_act_bytes(g->text, &lim);
	size_t block = text_cuda_block_bytes(g->text, o->block_size);
	size_t free_b = 0, total_b = 0;
	CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
	double util = o->gpu_memory_utilization > 0 ? o->gpu_memory_utilization : 0.9;
	size_t budget = (size_t)(util * (double)total_b);
	size_t used = total_b - free_b;   /* context, weights, vision scratch, other processes */
	int64_t n_blocks = o->n_blocks;
	if (n_blocks <= 0) {
		int64_t kv;
		if (o->kv_cache_memory_bytes > 0)
			kv = o->kv_cache_memory_bytes;
		else
			kv = (int64_t)budget - (int64_t)used - (int64_t)act - (int64_t)GRAPH_RESERVE;
		if (kv < (int64_t)block)
			return qerr_set(e, QERR_LIMIT, "--backend cuda: no memory left for the KV cache: "
					"%.2f GiB allowed (--gpu-memory-utilization %.2f of %.2f GiB), "
					"%.2f GiB in use after loading the weights, activations need "
					"%.2f GiB; raise --gpu-memory-utilization or lower "
					"--max-num-batched-tokens / --max-num-seqs / --max-model-len",
					gib(budget), util, gib(total_b), gib(used), gib(act));
		n_blocks = kv / (int64_t)block;
		if (n_blocks > INT32_MAX / 2 / o->block_size)
			n_blocks = INT32_MAX / 2 / o->block_size;
	}
	int64_t need = ((int64_t)o->max_model_len + o->block_size - 1) / o->block_size;
	if (n_blocks < need)
		return qerr_set(e, QERR_LIMIT, "--backend cuda: the KV cache holds %lld tokens, fewer "
				"than one sequence of --max-model-len %d; lower --max-model-len or raise "
				"--gpu-memory-utilization", (long long)n_blocks * o->block_size,
				o->max_model_len);
	rc = text_cuda_alloc(g->text, &lim, (int)n_blocks, o->enforce_eager, e);
	if (rc)
		return rc;
	bc->n_blocks = (int)n_blocks;
	size_t free_after = 0;
	CUDA_CHECK(cudaMemGetInfo(&free_after, &total_b));
	log_msg(LOG_LEVEL_INFO, "cuda", "device %d: %s (%.1f GiB), gpu_memory_utilization %.2f → "
		"%.1f GiB", g->device, prop.name, gib(total_b), util, gib(budget));
	size_t wt = text_cuda_weight_bytes(g->text);
	size_t wv = g->vision ? vision_cuda_weight_bytes(g->vision) : 0;
	log_msg(LOG_LEVEL_INFO, "cuda", "weights %.2f GiB (text %.2f, vision %.2f), activations "
		"%.2f GiB (%d tokens, %d sequences, max_model_len %d), vision scratch and encoder "
		"rows %.2f GiB",
		gib(wt + wv), gib(wt), gib(wv), gib(act), lim.max_tokens, lim.max_seqs, lim.max_ctx,
		gib(vbytes));
	log_msg(LOG_LEVEL_INFO, "cuda", "KV cache %.2f GiB (%s) = %lld blocks of %d = %lld tokens "
		"in flight (%.1f sequences of %d); %d decode graphs%s; %.2f GiB in use, %.2f GiB free",
		gib(block * (size_t)n_blocks), o->kv_cache_fp8 ? "fp8_e4m3" : "bfloat16",
		(long long)n_blocks, o->block_size,
		(long long)n_blocks * o->block_size,
		(double)n_blocks * o->block_size / (double)o->max_model_len, o->max_model_len,
		text_cuda_n_graphs(g->text), o->enforce_eager ? " (--enforce-eager)" : "",
		gib(total_b - free_after), gib(free_after));
	return 0;
}

static void worker_deinit(gpu_worker *g)
{
	text_cuda_free(g->text);
	vision_cuda_free(g->vision);
	if (g->vis_scratch)
		CUDA_CHECK(cudaFree(g->vis_scratch));
	if (g->enc.base)
		CUDA_CHECK(cudaFree(g->enc.base));
	free(g->enc.e);
	kn_gemm_ctx_free(g->gemm);
	if (g->stream)
		CUDA_CHECK(cudaStreamDestroy(g->stream));
}

static int worker_encode(const backend_cuda *bc, gpu_worker *g, job *j)
{
	if (!g->vision)
		return qerr_set(&j->e, QERR_UNSUPPORTED, "this model has no vision tower");
	int m = bc->mc->vision.spatial_merge_size;
	int64_t n_tok = (int64_t)j->grid_t * j->grid_h * j->grid_w / ((int64_t)m * m);
	uint16_t *dev = enc_place(&g->enc, j->out, n_tok > 0 ? n_tok : 0, g->stream);
	if (!dev)
		return vision_cuda_encode(g->vision, j->pixel_values, j->grid_t, j->grid_h, j->grid_w,
					  g->vis_scratch, g->vis_scratch_bytes, NULL, j->out, &j->e);
	int rc = vision_cuda_encode(g->vision, j->pixel_values, j->grid_t, j->grid_h, j->grid_w,
				    g->vis_scratch, g->vis_scratch_bytes, dev, NULL, &j->e);
	if (!rc)
		enc_record(&g->enc, j->out, dev, (int)n_tok);
	return rc;
}

static void *worker_main(void *arg)
{
	backend_cuda *bc = arg;
	gpu_worker *g = &bc->worker;
	for (;;) {
		pthread_mutex_lock(&g->mu);
		while (!g->pending)
			pthread_cond_wait(&g->cv, &g->mu);
		g->pending = false;
		job *j = &g->j;
		pthread_mutex_unlock(&g->mu);
		j->rc = 0;
		switch (j->kind) {
		case JOB_INIT:
			j->rc = worker_init(bc, g, &j->e);
			break;
		case JOB_ENCODE:
			j->rc = worker_encode(bc, g, j);
			break;
		case JOB_SYNC:
			for (int i = 0; i < g->enc.n; i++)
				enc_widen(&g->enc, i, g->stream);
			break;
		case JOB_FORGET:
			enc_forget(&g->enc, j->out);
			break;
		case JOB_STEP:
			j->rc = text_cuda_step(g->text, j->seqs, j->n_seqs, j->logits, &j->e);
			break;
		case JOB_LAUNCH:
			j->rc = text_cuda_launch_sample(g->text, j->seqs, j->n_seqs, j->rows, &j->e);
			break;
		case JOB_WAIT:
			j->rc = text_cuda_wait_sample(g->text, j->ids, j->lps, &j->e);
			break;
		case JOB_QUIT:
			worker_deinit(g);
			break;
		case JOB_NONE:
			break;
		}
		job_kind k = j->kind;
		pthread_mutex_lock(&g->mu);
		g->done = true;
		pthread_cond_broadcast(&g->cv);
		pthread_mutex_unlock(&g->mu);
		if (k == JOB_QUIT)
			return NULL;
	}
}

/* Hand j to the worker and wait for it; copies the result back into j. */
static int worker_run(gpu_worker *g, job *j, qerr *e)
{
	pthread_mutex_lock(&g->mu);
	g->j = *j;
	g->done = false;
	g->pending = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->done)
		pthread_cond_wait(&g->cv, &g->mu);
	*j = g->j;
	pthread_mutex_unlock(&g->mu);
	if (j->rc && e)
		*e = j->e;
	return j->rc;
}

static void cuda_free(void *impl)
{
	backend_cuda *bc = impl;
	if (!bc)
		return;
	if (bc->worker.started) {
		job j = { .kind = JOB_QUIT };
		worker_run(&bc->worker, &j, NULL);
		pthread_join(bc->worker.thread, NULL);
	}
	pthread_mutex_destroy(&bc->worker.mu);
	pthread_cond_destroy(&bc->worker.cv);
	free(bc);
}

static int cuda_encode(void *impl, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		       float *out, qerr *e)
{
	backend_cuda *bc = impl;
	job j = { .kind = JOB_ENCODE, .pixel_values = pixel_values, .grid_t = grid_t,
		  .grid_h = grid_h, .grid_w = grid_w, .out = out };
	return worker_run(&bc->worker, &j, e);
}

static void cuda_sync(void *impl)
{
	backend_cuda *bc = impl;
	job j = { .kind = JOB_SYNC };
	worker_run(&bc->worker, &j, NULL);
}

static void cuda_forget(void *impl, const float *rows)
{
	backend_cuda *bc = impl;
	job j = { .kind = JOB_FORGET, .out = (float *)rows };
	worker_run(&bc->worker, &j, NULL);
}

static int cuda_step(void *impl, const backend_seq *seqs, int n_seqs, float *logits, qerr *e)
{
	backend_cuda *bc = impl;
	job j = { .kind = JOB_STEP, .seqs = seqs, .n_seqs = n_seqs, .logits = logits };
	return worker_run(&bc->worker, &j, e);
}

static int cuda_launch(void *impl, const backend_seq *seqs, int n_seqs,
		       const backend_sample_row *rows, qerr *e)
{
	backend_cuda *bc = impl;
	job j = { .kind = JOB_LAUNCH, .seqs = seqs, .n_seqs = n_seqs, .rows = rows };
	return worker_run(&bc->worker, &j, e);
}

static int cuda_wait(void *impl, int32_t *ids, sampler_logprobs *lps, qerr *e)
{
	backend_cuda *bc = impl;
	job j = { .kind = JOB_WAIT, .ids = ids, .lps = lps };
	return worker_run(&bc->worker, &j, e);
}

static int cuda_n_blocks(void *impl)
{
	return ((backend_cuda *)impl)->n_blocks;
}

static const backend_ops cuda_ops = {
	.name = "cuda", .free = cuda_free, .encode = cuda_encode, .sync = cuda_sync,
	.forget = cuda_forget,
	.step = cuda_step,
	.n_blocks = cuda_n_blocks, .launch = cuda_launch, .wait = cuda_wait,
};

bool backend_cuda_available(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError();
		return false;
	}
	return n > 0;
}

int backend_cuda_new(const model_config *mc, const model_weights *w, const backend_opts *o,
		     backend **out, qerr *e)
{
	*out = NULL;
	if (o->block_size < 1 || o->max_num_batched_tokens < 1 || o->max_num_seqs < 1 ||
	    o->max_model_len < 1)
		return qerr_set(e, QERR_INVALID, "--backend cuda: block size %d, %d batched tokens, "
				"%d sequences, max_model_len %d must be positive", o->block_size,
				o->max_num_batched_tokens, o->max_num_seqs, o->max_model_len);
	if (o->batch_invariant)
		return qerr_set(e, QERR_UNSUPPORTED, "--batch-invariant is not supported by the cuda "
				"backend yet; use --backend cpu");
	backend_cuda *bc = xcalloc(1, sizeof(*bc));
	bc->mc = mc;
	bc->w = w;
	bc->o = *o;
	bc->worker.device = o->device;
	pthread_mutex_init(&bc->worker.mu, NULL);
	pthread_cond_init(&bc->worker.cv, NULL);
	if (pthread_create(&bc->worker.thread, NULL, worker_main, bc)) {
		cuda_free(bc);
		return qerr_set(e, QERR_LIMIT, "--backend cuda: cannot start the GPU worker thread");
	}
	bc->worker.started = true;
	job j = { .kind = JOB_INIT };
	int rc = worker_run(&bc->worker, &j, e);
	if (rc) {
		cuda_free(bc);
		return rc;
	}
	*out = backend_wrap(&cuda_ops, bc, mc->text.vocab_size);
	return 0;
}

#else /* !QVL_HAVE_CUDA */

bool backend_cuda_available(void)
{
	return false;
}

int backend_cuda_new(const model_config *mc, const model_weights *w, const backend_opts *o,
		     backend **out, qerr *e)
{
	(void)mc;
	(void)w;
	(void)o;
	*out = NULL;
	return qerr_set(e, QERR_UNSUPPORTED, "--backend cuda: this build has no CUDA (configure "
			"found no nvcc); use --backend cpu");
}

#endif
