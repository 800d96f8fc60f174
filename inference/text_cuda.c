/*
 * text_cuda: the Qwen3-VL text decoder on one GPU (see text_cuda.h).
 *
 * Precision: 16-bit only where the tensor cores need it — the GEMM inputs (the normed rows h, the
 * attention output, silu·up), q and the KV cache (bf16, or fp8 E4M3 with --kv-cache-dtype fp8)
 * — and fp32 everywhere else: the residual stream x, the projections' outputs (qkv, gate/up)
 * and the residual adds, which the o and down projections do in their epilogue (cuBLASLt's
 * C = residual, beta 1; the GEMV adds it before writing). Each value is rounded to 16 bits once
 * (bf16; fp16 where said below), where it becomes a GEMM or attention operand. This is not where
 * transformers in bf16 rounds (it keeps the residual stream and every Linear output in bf16):
 * the reference is the fp32 model, and keeping x in fp32 halves the distance to it (2b, whole
 * vocabulary, relative L2: 1.9e-2 → 9e-3 in a CPU emulation of both roundings; the bf16
 * transformers model is itself 1.9e-2 from fp32).
 *
 * fp16 operands for qkv and gate/up: two thirds of what remains is the rounding of h, the
 * RMSNorm output, to bf16's 8 significant bits where it enters those two projections. There h
 * is bounded (|x·r| ≤ sqrt(D), so |h| ≤ sqrt(D)·max|norm weight|), which lets it be IEEE fp16
 * (11 bits, 8x less rounding error) with their weights uploaded as fp16 holding the same bf16
 * values (exact from 2^-17 up, fp16 subnormals included; a smaller weight moves by at most
 * 2^-25, and the start-up log counts them), at the same tensor-core speed. f16_refusal checks
 * both bounds at load time and keeps bf16 otherwise. The o and down inputs (attention output,
 * silu·up) have no such bound and stay bf16, as do the final norm's output and the LM head
 * (tied to the bf16 embedding). The bf16 fallback measured 1.02e-2 from fp32 on 2b over the
 * whole vocabulary (just past the 1e-2 bar), and one tiny golden step (margin 0.103) flipped
 * there (tests/bench/PERF.md); tests/check_backend_cuda.c runs it against the CPU on tiny.
 *
 * One step, T = Σ n_new rows of the ragged batch flattened:
 *
 *   x  = embed[ids]; x[vision rows] = vision row 0     (fp32)      kn_embedding, kn_rows_scatter
 *   for each layer l:
 *     h   = RMSNorm(x; input norm)                     (fp16)      kn_gemm_f32_rmsnorm (one GEMV
 *     qkv = h · Wqkvᵀ                                  (fp32)      up to 4 rows; q,k,v stacked)
 *     q, K/V pool ← q/k RMSNorm + MRoPE, K and V written at slots  kn_qk_norm_rope(_fp8)
 *     att = attention(q, pool)   the leading one-row sequences (decodes): kn_paged_attention
 *                                (split-KV, one row a sequence); the rest: kn_prefill_attention
 *                                (causal, cached prefix too)
 *     x  += att · Woᵀ                                              kn_gemm_f32, residual x
 *     h   = RMSNorm(x; post norm)                      (fp16)      kn_gemm_f32_rmsnorm
 *     gu  = h · Wguᵀ                                   (fp32; fp16 when gu_f16 and T > 4:
 *                                                                  kn_gemm_glu: kn_gemm_f16 and
 *                                                                  kn_silu_mul_f16, or one
 *                                                                  fused launch where tuned)
 *     x  += silu(gate)·up · Wdᵀ                                    kn_silu_mul, kn_gemm_f32
 *     l < n_ds and vision rows: x[vision rows] += deepstack row l  kn_rows_scatter_add
 *   h = RMSNorm(x; final norm) (bf16); logits = gather(h, logit rows) · lm_headᵀ (bf16 logits)
 *   (fp16 as marked when f16_refusal allows it, else bf16: kn_gemm_f32_rmsnorm with f16 false)
 *
 * Prompt steps of QKV_TMA_MIN_ROWS rows or more (f16, sm_90a): h = RMSNorm (kn_rmsnorm_f16),
 * then the q/k/v projection with qk_norm_rope in its epilogue (gemm_qkv_tma: the fp32 qkv rows
 * never leave the registers), its rope table (kn_rope_table) computed once a step into the
 * unused qkv rows. H100, 8,192 rows, fp8 cache: 243 against 261 µs a layer (bench_gemm_cuda
 * --qkv).
 *
 * The last layer's tail for the logit rows alone (fwd_shape.trim, eager steps where fewer rows
 * want logits than the step has and they fit one LM head pass): after that layer's attention
 * (which wrote every row's K and V) only the rows that reach the LM head matter, so their x and
 * att rows are gathered into the qkv rows and o, the MLP and the final norm run on them; h row
 * i is then logit row i and the LM head needs no gather. A 16-prompt step of 8,192 rows skips
 * ~1 ms of its ~42. The same sums per row as untrimmed (the products' plans may differ with the
 * row count, as between any two batches). QVL_TRIM_TAIL=0 turns it off.
 *
 * Step inputs: the host packs ids, positions, slots, block tables, logit and vision row indexes
 * and the vision rows (as bf16) into one pinned staging buffer, copied with a cudaMemcpyAsync
 * per array into its device twin at fixed offsets (the layout is fixed by the limits, so a
 * captured graph reads the same addresses every replay). Vision rows the backend still holds on
 * the device from their encode (text_cuda_set_vis_find) skip the host: runs of them are copied
 * device to device into the vis rows instead.
 *
 *   ids (T) │ pos (3, T) │ slot (T) │ q_start (S+1) │ n_cached (S) │ ctx_len (S) │
 *   block_table (S, max_blocks) │ logit_idx (T) │ vis_idx (T) │ vis rows (1+n_ds, nv, D) bf16
 *
 * A mixed step (the decodes of running sequences and the prompt chunks of new ones, the usual
 * step under load) splits its attention: the scheduler lists running sequences first, so the
 * decodes are a leading run of one-row sequences, n_dec of them, and take the paged decode kernel
 * (memory-bound, split over the keys, every query head of a KV head from one read of it) while
 * the chunks after them take the prefill kernel, which would spend a 64-row query tile on each
 * decode row. prepare() writes q_start relative to row n_dec for the sequences from n_dec on, so
 * the prefill kernel sees a batch of its own starting at row 0 of q + n_dec rows. The two run
 * side by side (forked after qk_norm_rope by an event, joined before o), so the decode kernel's
 * DRAM-bound CTAs and the prefill kernel's tensor-core CTAs share the GPU instead of taking
 * turns: the prefill kernel first, on a second stream (t->side) of the highest priority, so
 * that its CTAs (one a multiprocessor, by their shared memory) are placed before the decode
 * kernel's fill the GPU, and the decode kernel on the step's stream. H100, fp8, 128
 * concurrent, output tok/s in pairs of runs: 19,158 / 19,658 / 19,586 against 18,947 (two
 * runs' mean) / 19,591 / 19,532 with the streams the other way round, the decode kernel first
 * on a side stream of the lowest priority (QVL_ATTN_OVERLAP=1, A/B; QVL_ATTN_OVERLAP=0: one
 * after the other). They write disjoint rows of att, and only the prefill kernel uses the
 * attention workspace.
 *
 * CUDA graphs (decode): a step whose sequences all have one new position and one logit row
 * runs a graph captured for the next batch size up in the ladder 1, 2, 4, 8, 16, 24, 32, …
 * (vLLM's), padded with rows that write no cache slot (slot −1) and attend to one position of
 * block 0; the padding rows' logits are computed and not copied back. Vision rows never occur
 * in decode (image tokens come from the prompt), so graphs have no vision path.
 */
#include "text_cuda.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend_impl.h"
#include "bf16.h"
#include "cuda_check.h"
#include "embedding.h"
#include "gemm.h"
#include "gemm_qkv_tma.h"
#include "log.h"
#include "paged_attention.h"
#include "prefill_attention.h"
#include "qk_norm_rope.h"
#include "rmsnorm.h"
#include "rows.h"
#include "sampling.h"
#include "silu_mul.h"
#include "step_profile.h"
#include "token_chain.h"

#define TEXT_CUDA_MAX_GRAPHS 64
/* Steps of this many rows or more take gemm_qkv_tma (its 128-row tiles in pairs leave most of
 * the GPU idle below; tests/bench/PERF.md). */
#define QKV_TMA_MIN_ROWS 1024
/* Penalty entries (ids of prompt ∪ output) of one sampled step, all rows together. */
#define SAMPLE_PEN_CAP (1 << 20)
#define SAMPLE_MASK_PER_ROW (SAMPLER_MAX_EOS + SAMPLER_MAX_STOP_IDS)

typedef struct layer16 {
	uint16_t *in_norm, *wqkv, *q_norm, *k_norm, *wo, *post_norm, *wgu, *wd;   /* device, borrowed
										    * from t->wbuf */
	void *k_cache, *v_cache;       /* device, borrowed from t->pool: bf16, or fp8 (kv_fp8) */
} layer16;

/* Offsets (bytes) of the step inputs inside the staging buffers. */
typedef struct stage_layout {
	size_t ids, pos, slot, q_start, n_cached, ctx_len, block_table, logit_idx, vis_idx, vis, chain;
	size_t bytes;
} stage_layout;

typedef struct decode_graph {
	int B;
	cudaGraphExec_t exec;
} decode_graph;

struct text_cuda {
	int D, F, L, Hq, KV, hd, V, n_ds;
	bool has_vision;
	float eps, scale, theta;
	int section[3];
	bool kv_fp8;                    /* the KV pool in fp8 E4M3, scale 1 (else bf16) */
	bool f16;                       /* qkv and gate/up: weights and inputs in fp16 (else bf16) */
	bool gu_f16;                    /* gate/up output in fp16 for steps of > 4 rows (else fp32) */
	int n_glu_fused;                /* tuned sizes where gate/up and SwiGLU run fused */
	int n_glu_tma;                  /* of them, by gemm_glu_tma (else gemm_wgmma's epilogue) */
	kn_qkv_tma *qkv_tma;            /* owned; NULL without f16, off sm_90a, QVL_QKV_TMA=0 */
	int qkv_tma_min;                /* the fewest rows a step takes it for (QVL_QKV_TMA_MIN_ROWS) */
	bool trim_tail;                 /* eager steps run the last layer past its attention for
					 * the logit rows alone (QVL_TRIM_TAIL=0: every row) */
	kn_gemm_ctx *gemm;              /* borrowed */
	cudaStream_t stream;            /* borrowed */
	/* weights */
	void *wbuf;                     /* owned device: every weight */
	size_t wbytes;
	uint16_t *embed, *lm_head, *norm;
	layer16 *layers;                /* owned (L) */
	/* after text_cuda_alloc */
	bool allocated;
	text_cuda_limits lim;
	int max_blocks;                 /* block table row length: ⌈max_ctx / block_size⌉ */
	int n_blocks;
	void *pool;                     /* owned device: KV */
	void *act;                      /* owned device: activations */
	size_t act_bytes;
	float *x, *qkv, *gu;            /* fp32: residual stream, projection outputs */
	uint16_t *h, *q, *att, *mlp, *hl, *logits16;
	void *attn_ws;                  /* borrowed from act: attention workspace */
	size_t attn_ws_bytes;
	stage_layout sl;
	uint8_t *stage_h;               /* owned pinned host */
	uint8_t *stage_d;               /* borrowed from act */
	uint16_t *logits_h;             /* owned pinned host (max_seqs, V) bf16 */
	int max_lrows;                  /* logit rows per LM head pass: max_seqs */
	decode_graph graphs[TEXT_CUDA_MAX_GRAPHS];
	int n_graphs;
	/* sampling on the device (text_cuda_launch_sample): device arrays in smp_d, the inputs'
	 * pinned host twins in smp_h (the answers' in the slots below), both owned */
	void *smp_d, *smp_h;
	kn_sample_row *smp_rows_d, *smp_rows_h;
	kn_sample_pen *smp_pen_d, *smp_pen_h;
	int32_t *smp_mask_d, *smp_mask_h;
	int32_t *smp_ids_d, *smp_top_ids_d;
	float *smp_lp_d, *smp_top_lp_d;
	/* launched sampling steps (text_cuda_launch_sample): answers land in a slot's pinned
	 * buffers (slot 0: smp_h's, slot 1: smp_h2's), waited for oldest first */
	void *smp_h2;                   /* owned pinned host, smp_h's layout */
	struct out_slot {
		int32_t *ids, *top_ids;
		float *lp, *top_lp;
		int *n_lp;              /* owned host (max_seqs): each row's sp->logprobs */
		cudaEvent_t done;       /* owned: after its downloads */
		int NL;
		bool any_lp;
	} slots[2];
	int slot_head, n_flight;
	int last_NL;                    /* logit rows of the last launch: what a chained id may
					 * name (0: none, e.g. after text_cuda_step) */
	cudaEvent_t staged;             /* owned: after the last launch's uploads from staging */
	bool staged_pending;
	int32_t *smp_pen_ids, *smp_pen_counts;   /* owned host scratch (SAMPLE_PEN_CAP) */
	/* vision rows already on the device (text_cuda_set_vis_find): runs of consecutive rows
	 * copied device to device into the staged vis rows */
	text_cuda_vis_find_fn vis_find;
	void *vis_find_ctx;
	struct vis_run {
		const uint16_t *src;    /* plane 0 of the run's first row */
		size_t plane;           /* elements between planes at src */
		int row, n;             /* first vision row of the step, rows */
	} *vruns;                       /* owned host (max_tokens) */
	step_profile *prof;             /* owned; NULL unless QVL_PROFILE=1 (step_profile.h) */
	/* a mixed step's prefill attention runs on side, beside its decode attention on stream:
	 * owned, NULL with QVL_ATTN_OVERLAP=0 */
	cudaStream_t side;
	cudaEvent_t ev_fork, ev_join;   /* owned */
	bool prefill_side;              /* the prefill kernel on side (highest priority), first;
					 * false (QVL_ATTN_OVERLAP=1): the decode kernel there
					 * (lowest priority) */
};

#define PROF(t, ph)                                                                         \
	do {                                                                                \
		if ((t)->prof)                                                              \
			step_profile_mark((t)->prof, STEP_PROFILE_##ph);                    \
	} while (0)

/* ---- weights ------------------------------------------------------------------------------- */

/* Bytes rounded up so that every array starts 256-byte aligned (cuBLASLt's fast paths and the
 * kernels' 16-byte vector loads). */
static size_t al256(size_t n)
{
	return (n + 255) & ~(size_t)255;
}

static int tensor_check(const st_tensor *s, const char *what, uint64_t numel, qerr *e)
{
	if (!s || !s->data)
		return qerr_set(e, QERR_INVALID, "text_cuda: tensor %s has no data", what);
	if (s->numel != numel)
		return qerr_set(e, QERR_INVALID, "text_cuda: tensor %s has %llu elements, want %llu",
				what, (unsigned long long)s->numel, (unsigned long long)numel);
	if (s->dtype != ST_BF16 && s->dtype != ST_F16 && s->dtype != ST_F32)
		return qerr_set(e, QERR_UNSUPPORTED, "text_cuda: tensor %s has an unsupported dtype",
				what);
	return 0;
}

/* Element i of tensor s as the bf16 the decoder uses (the checkpoint's bf16, or its f16/f32
 * rounded to bf16). */
static inline uint16_t tensor_bf16(const st_tensor *s, uint64_t i)
{
	if (s->dtype == ST_BF16)
		return ((const uint16_t *)s->data)[i];
	if (s->dtype == ST_F16)
		return f32_to_bf16(f16_to_f32(((const uint16_t *)s->data)[i]));
	return f32_to_bf16(((const float *)s->data)[i]);
}

/* The largest |value| of tensor s (numel elements, as bf16; NaN: NaN); adds to *n_tiny the
 * non-zero values below 2^-17 (bf16 exponent < 110), which fp16 does not hold exactly. With
 * row_norm (rows of cols elements), *row_norm becomes the largest L2 norm of a row if larger. */
static float tensor_max_abs(const st_tensor *s, uint64_t numel, uint64_t *n_tiny, uint64_t cols,
			    double *row_norm)
{
	uint16_t m = 0;   /* |bf16| orders as its bits */
	uint64_t tiny = 0;
	const uint64_t step = row_norm && cols ? cols : numel;   /* one row at a time */
	for (uint64_t r0 = 0; r0 < numel; r0 += step) {
		const uint64_t r1 = numel - r0 < step ? numel : r0 + step;
		double ss = 0;
		for (uint64_t i = r0; i < r1; i++) {
			uint16_t b = tensor_bf16(s, i), a = b & 0x7fffu;
			m = a > m ? a : m;
			tiny += a != 0 && a < (110u << 7);
			if (row_norm) {
				double v = bf16_to_f32(b);
				ss += v * v;
			}
		}
		const double rn = sqrt(ss);
		if (row_norm && r1 - r0 == cols && rn > *row_norm)
			*row_norm = rn;
	}
	*n_tiny += tiny;
	return bf16_to_f32(m);
}

/* Upload tensor s (numel elements) to dev as bf16, or as fp16 holding those bf16 values
 * (to_f16), converting on the host through tmp. */
static void upload(uint16_t *dev, const st_tensor *s, uint64_t numel, bool to_f16, uint16_t *tmp,
		   size_t tmp_n, cudaStream_t st)
{
	for (uint64_t at = 0; at < numel; at += tmp_n) {
		uint64_t n = numel - at < tmp_n ? numel - at : tmp_n;
		if (s->dtype == ST_BF16 && !to_f16)
			memcpy(tmp, (const uint16_t *)s->data + at, n * 2);
		else if (to_f16)
			for (uint64_t i = 0; i < n; i++)
				tmp[i] = bf16_to_f16(tensor_bf16(s, at + i));
		else
			for (uint64_t i = 0; i < n; i++)
				tmp[i] = tensor_bf16(s, at + i);
		CUDA_CHECK(cudaMemcpyAsync(dev + at, tmp, n * 2, cudaMemcpyHostToDevice, st));
		CUDA_CHECK(cudaStreamSynchronize(st));   /* tmp is reused */
	}
}

typedef struct wplan {
	const st_tensor *src[3];        /* stacked sources (q,k,v or gate,up), NULL-terminated */
	uint64_t numel[3];
	uint16_t **dst;
	size_t off;
	bool f16;                       /* uploaded as fp16 (qkv, gate/up when t->f16) */
	bool gu;                        /* the gate/up entry */
} wplan;

/* Whether the qkv and gate/up projections can run on fp16 operands with the checkpoint's
 * values: their inputs are RMSNorm outputs, |x·r| ≤ sqrt(D), so max|norm weight|·sqrt(D) must
 * stay below fp16's 65504; their bf16 weights (the np plans' entries marked f16) must be below
 * it too (those of magnitude 2^-17 … 65280 are then exact in fp16; smaller ones move by at most
 * 2^-25: *n_tiny counts them). Returns the reason when not (NULL: yes). QVL_FP16_OPERANDS=0 in
 * the environment keeps bf16 (A/B). Also *gu_row_norm: the largest L2 norm of a gate or up
 * row, which bounds the gate/up outputs with the norm weights (gu_f16 below). */
static const char *f16_refusal(const text_cuda *t, const model_weights *w, const wplan *pl,
			       size_t np, float *norm_max, float *w_max, uint64_t *n_tiny,
			       double *gu_row_norm)
{
	const char *env = getenv("QVL_FP16_OPERANDS");
	*norm_max = *w_max = 0;
	*n_tiny = 0;
	*gu_row_norm = 0;
	if (env && *env == '0')
		return "QVL_FP16_OPERANDS=0";
	for (int l = 0; l < t->L; l++) {
		const st_tensor *norms[2] = { w->layers[l].input_layernorm,
					      w->layers[l].post_attention_layernorm };
		for (int i = 0; i < 2; i++) {
			uint64_t unused = 0;
			float m = tensor_max_abs(norms[i], (uint64_t)t->D, &unused, 0, NULL);
			*norm_max = m > *norm_max ? m : *norm_max;
		}
	}
	for (size_t i = 0; i < np; i++)
		for (int k = 0; k < 3 && pl[i].f16 && pl[i].src[k]; k++) {
			float m = tensor_max_abs(pl[i].src[k], pl[i].numel[k], n_tiny,
						 (uint64_t)t->D, pl[i].gu ? gu_row_norm : NULL);
			*w_max = m > *w_max ? m : *w_max;
		}
	if (!(*norm_max * sqrtf((float)t->D) <= 65504.0f))
		return "a norm weight times sqrt(hidden_size) is not finite or exceeds fp16's range";
	if (!(*w_max <= 65504.0f))
		return "a qkv or gate/up weight is not finite or exceeds fp16's range";
	return NULL;
}

int text_cuda_new(const model_config *mc, const model_weights *w, kn_gemm_ctx *gemm,
		  cudaStream_t stream, bool kv_fp8, text_cuda **out, qerr *e)
{
	*out = NULL;
	const text_config *tc = &mc->text;
	if (!w->embed_tokens || !w->lm_head || !w->norm || w->n_layers != tc->num_hidden_layers)
		return qerr_set(e, QERR_INVALID, "text_cuda: weights are not bound for this config");
	if (tc->num_key_value_heads <= 0 || tc->num_attention_heads % tc->num_key_value_heads ||
	    tc->num_attention_heads / tc->num_key_value_heads > 8 ||
	    (tc->head_dim != 32 && tc->head_dim != 64 && tc->head_dim != 128))
		return qerr_set(e, QERR_UNSUPPORTED, "text_cuda: %d heads, %d kv heads, head_dim %d "
				"(the attention kernels take head_dim 32, 64 or 128 and at most 8 query "
				"heads per kv head)", tc->num_attention_heads, tc->num_key_value_heads,
				tc->head_dim);
	text_cuda *t = xcalloc(1, sizeof(*t));
	t->D = tc->hidden_size;
	t->F = tc->intermediate_size;
	t->L = tc->num_hidden_layers;
	t->Hq = tc->num_attention_heads;
	t->KV = tc->num_key_value_heads;
	t->hd = tc->head_dim;
	t->V = tc->vocab_size;
	t->has_vision = mc->has_vision;
	t->n_ds = mc->has_vision ? mc->vision.n_deepstack : 0;
	t->eps = (float)tc->rms_norm_eps;
	t->scale = 1.0f / sqrtf((float)t->hd);
	t->theta = (float)tc->rope_theta;
	if (tc->mrope) {
		memcpy(t->section, tc->mrope_section, sizeof(t->section));
	} else {
		t->section[0] = t->hd / 2;
		t->section[1] = t->section[2] = 0;
	}
	t->gemm = gemm;
	t->stream = stream;
	t->prof = step_profile_new(stream);
	const char *ov = getenv("QVL_ATTN_OVERLAP");
	if (!(ov && *ov == '0')) {
		t->prefill_side = !(ov && *ov == '1');
		int lo = 0, hi = 0;
		CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
		CUDA_CHECK(cudaStreamCreateWithPriority(&t->side, cudaStreamNonBlocking,
							t->prefill_side ? hi : lo));
		CUDA_CHECK(cudaEventCreateWithFlags(&t->ev_fork, cudaEventDisableTiming));
		CUDA_CHECK(cudaEventCreateWithFlags(&t->ev_join, cudaEventDisableTiming));
	}
	t->kv_fp8 = kv_fp8;

	const uint64_t D = (uint64_t)t->D, F = (uint64_t)t->F, hd = (uint64_t)t->hd;
	const uint64_t qd = (uint64_t)t->Hq * hd, kd = (uint64_t)t->KV * hd, V = (uint64_t)t->V;
	const bool tied = w->lm_head == w->embed_tokens;
	size_t n_plans = 3 + 8 * (size_t)t->L;
	wplan *pl = xcalloc(n_plans, sizeof(*pl));
	t->layers = xcalloc((size_t)t->L, sizeof(layer16));
	size_t np = 0;
#define PLAN1(dstp, s, n) pl[np++] = (wplan){ .src = { (s) }, .numel = { (n) }, .dst = (dstp) }
	PLAN1(&t->embed, w->embed_tokens, V * D);
	if (!tied)
		PLAN1(&t->lm_head, w->lm_head, V * D);
	PLAN1(&t->norm, w->norm, D);
	for (int l = 0; l < t->L; l++) {
		const text_layer_weights *s = &w->layers[l];
		layer16 *d = &t->layers[l];
		PLAN1(&d->in_norm, s->input_layernorm, D);
		pl[np++] = (wplan){ .src = { s->q_proj, s->k_proj, s->v_proj },
				    .numel = { qd * D, kd * D, kd * D }, .dst = &d->wqkv, .f16 = true };
		PLAN1(&d->q_norm, s->q_norm, hd);
		PLAN1(&d->k_norm, s->k_norm, hd);
		PLAN1(&d->wo, s->o_proj, D * qd);
		PLAN1(&d->post_norm, s->post_attention_layernorm, D);
		pl[np++] = (wplan){ .src = { s->gate_proj, s->up_proj },
				    .numel = { F * D, F * D }, .dst = &d->wgu, .f16 = true,
				    .gu = true };
		PLAN1(&d->wd, s->down_proj, D * F);
	}
#undef PLAN1
	static const char *const names[] = { "a text weight" };
	int rc = 0;
	size_t total = 0;
	for (size_t i = 0; i < np && !rc; i++) {
		pl[i].off = total;
		uint64_t n = 0;
		for (int k = 0; k < 3 && pl[i].src[k]; k++) {
			char what[64];
			snprintf(what, sizeof(what), "%s (#%zu.%d)", names[0], i, k);
			rc = tensor_check(pl[i].src[k], what, pl[i].numel[k], e);
			n += pl[i].numel[k];
		}
		total += al256(n * 2);
	}
	if (!rc && cudaMalloc(&t->wbuf, total) != cudaSuccess) {
		cudaGetLastError();
		rc = qerr_set(e, QERR_LIMIT, "text_cuda: the weights need %.2f GiB of GPU memory, which "
			      "the device does not have free", (double)total / (1 << 30));
	}
	if (rc) {
		free(pl);
		text_cuda_free(t);
		return rc;
	}
	t->wbytes = total;
	float norm_max, w_max;
	uint64_t n_tiny;
	double gu_row;
	const char *no_f16 = f16_refusal(t, w, pl, np, &norm_max, &w_max, &n_tiny, &gu_row);
	t->f16 = !no_f16;
	/* |gate/up output j| ≤ ‖h‖₂·‖W_j‖₂ ≤ sqrt(D)·max|norm weight|·max‖W_j‖₂ (‖x·r‖₂ ≤ sqrt(D));
	 * 1% over it for h's fp16 rounding and the fp32 sums */
	const double gu_bound = sqrt((double)t->D) * norm_max * gu_row * 1.01;
	const char *gu_env = getenv("QVL_GU_FP16");
	t->gu_f16 = t->f16 && gu_bound <= 65504.0 && !(gu_env && *gu_env == '0');
	log_msg(LOG_LEVEL_INFO, "text_cuda", "gate/up output: %s (bound %g on |gate|, |up|)",
		t->gu_f16 ? "fp16 for steps of more than 4 rows" : "fp32", gu_bound);
	if (no_f16)
		log_msg(LOG_LEVEL_INFO, "text_cuda", "qkv and gate/up operands: bf16 (%s)", no_f16);
	else
		log_msg(LOG_LEVEL_INFO, "text_cuda", "qkv and gate/up operands: fp16 holding the bf16 "
			"weights (max |weight| %g, max |norm weight| %g: inputs within ±%g; %llu "
			"weights below 2^-17 move by at most 2^-25)", w_max, norm_max,
			norm_max * sqrtf((float)t->D), (unsigned long long)n_tiny);
	const char *tt = getenv("QVL_TRIM_TAIL");
	t->trim_tail = !(tt && *tt == '0');
	if (t->f16) {
		t->qkv_tma = kn_qkv_tma_new();
		const char *mr = getenv("QVL_QKV_TMA_MIN_ROWS");
		t->qkv_tma_min = mr && *mr ? atoi(mr) : QKV_TMA_MIN_ROWS;
		if (t->qkv_tma)
			log_msg(LOG_LEVEL_INFO, "text_cuda", "q/k/v projection with qk_norm_rope in "
				"its epilogue (gemm_qkv_tma) for steps of %d rows or more",
				t->qkv_tma_min);
	}
	const size_t tmp_n = (size_t)8 << 20;   /* 16 MiB of bf16 per upload */
	uint16_t *tmp;
	CUDA_CHECK(cudaHostAlloc((void **)&tmp, tmp_n * 2, cudaHostAllocDefault));
	for (size_t i = 0; i < np; i++) {
		uint16_t *dst = (uint16_t *)((uint8_t *)t->wbuf + pl[i].off);
		*pl[i].dst = dst;
		for (int k = 0; k < 3 && pl[i].src[k]; k++) {
			upload(dst, pl[i].src[k], pl[i].numel[k], pl[i].f16 && t->f16, tmp, tmp_n,
			       stream);
			dst += pl[i].numel[k];
		}
	}
	CUDA_CHECK(cudaFreeHost(tmp));
	free(pl);
	if (tied)
		t->lm_head = t->embed;
	*out = t;
	return 0;
}

static void graphs_free(text_cuda *t)
{
	for (int i = 0; i < t->n_graphs; i++)
		CUDA_CHECK(cudaGraphExecDestroy(t->graphs[i].exec));
	t->n_graphs = 0;
}

void text_cuda_free(text_cuda *t)
{
	if (!t)
		return;
	if (t->stream)
		CUDA_CHECK(cudaStreamSynchronize(t->stream));
	graphs_free(t);
	step_profile_report(t->prof);
	step_profile_free(t->prof);
	if (t->side) {
		CUDA_CHECK(cudaStreamSynchronize(t->side));
		CUDA_CHECK(cudaStreamDestroy(t->side));
		CUDA_CHECK(cudaEventDestroy(t->ev_fork));
		CUDA_CHECK(cudaEventDestroy(t->ev_join));
	}
	kn_qkv_tma_free(t->qkv_tma);
	CUDA_CHECK(cudaFree(t->wbuf));
	CUDA_CHECK(cudaFree(t->pool));
	CUDA_CHECK(cudaFree(t->act));
	CUDA_CHECK(cudaFreeHost(t->stage_h));
	CUDA_CHECK(cudaFreeHost(t->logits_h));
	free(t->vruns);
	CUDA_CHECK(cudaFree(t->smp_d));
	CUDA_CHECK(cudaFreeHost(t->smp_h));
	CUDA_CHECK(cudaFreeHost(t->smp_h2));
	for (int i = 0; i < 2; i++) {
		free(t->slots[i].n_lp);
		if (t->slots[i].done)
			CUDA_CHECK(cudaEventDestroy(t->slots[i].done));
	}
	if (t->staged)
		CUDA_CHECK(cudaEventDestroy(t->staged));
	free(t->smp_pen_ids);
	free(t->smp_pen_counts);
	free(t->layers);
	free(t);
}

size_t text_cuda_weight_bytes(const text_cuda *t)
{
	return t->wbytes;
}

/* Bytes of one K or V element in the pool. */
static size_t kv_elem(const text_cuda *t)
{
	return t->kv_fp8 ? 1 : 2;
}

size_t text_cuda_block_bytes(const text_cuda *t, int block_size)
{
	return (size_t)t->L * 2 * (size_t)block_size * (size_t)t->KV * (size_t)t->hd * kv_elem(t);
}

int text_cuda_n_graphs(const text_cuda *t)
{
	return t->n_graphs;
}

/* ---- activations and staging ---------------------------------------------------------------- */

static int max_blocks_of(const text_cuda_limits *lim)
{
	return (lim->max_ctx + lim->block_size - 1) / lim->block_size;
}

static stage_layout stage_layout_of(const text_cuda *t, const text_cuda_limits *lim)
{
	const size_t T = (size_t)lim->max_tokens, S = (size_t)lim->max_seqs;
	stage_layout s;
	size_t o = 0;
#define TAKE(field, bytes) do { s.field = o; o += al256(bytes); } while (0)
	TAKE(ids, T * 4);
	TAKE(pos, 3 * T * 4);
	TAKE(slot, T * 4);
	TAKE(q_start, (S + 1) * 4);
	TAKE(n_cached, S * 4);
	TAKE(ctx_len, S * 4);
	TAKE(block_table, S * (size_t)max_blocks_of(lim) * 4);
	TAKE(logit_idx, T * 4);
	TAKE(vis_idx, T * 4);
	TAKE(vis, t->has_vision ? (size_t)(1 + t->n_ds) * T * (size_t)t->D * 2 : 0);
	TAKE(chain, 2 * S * 4);
#undef TAKE
	s.bytes = o;
	return s;
}

static size_t attn_ws_bytes_of(const text_cuda *t, const text_cuda_limits *lim)
{
	size_t a = kn_paged_attention_workspace_bytes(lim->max_seqs, t->Hq, t->hd, lim->max_ctx);
	size_t b = kn_prefill_attention_workspace_bytes(lim->max_tokens, lim->max_seqs, t->Hq,
							 t->hd, lim->max_ctx);
	return a > b ? a : b;
}

/* Activation arrays in order; sizes in bytes. */
enum { A_X, A_H, A_QKV, A_Q, A_ATT, A_GU, A_MLP, A_HL, A_LOGITS, A_N };

static void act_sizes(const text_cuda *t, const text_cuda_limits *lim, size_t n[A_N])
{
	const size_t T = (size_t)lim->max_tokens, D = (size_t)t->D, F = (size_t)t->F;
	const size_t qd = (size_t)t->Hq * t->hd, kd = (size_t)t->KV * t->hd;
	const size_t R = (size_t)lim->max_seqs;
	n[A_X] = T * D * 4;
	n[A_H] = T * D * 2;
	n[A_QKV] = T * (qd + 2 * kd) * 4;
	n[A_Q] = T * qd * 2;
	n[A_ATT] = T * qd * 2;
	n[A_GU] = T * 2 * F * 4;
	n[A_MLP] = T * F * 2;
	n[A_HL] = R * D * 2;
	n[A_LOGITS] = R * (size_t)t->V * 2;
}

/* The sampling arrays of R rows, in order; returns the total bytes (each part 256-aligned). */
static size_t smp_layout(int R, size_t off[7])
{
	const size_t K = KN_SAMPLE_MAX_LOGPROBS, r = (size_t)R;
	const size_t sz[7] = { r * sizeof(kn_sample_row), (size_t)SAMPLE_PEN_CAP * sizeof(kn_sample_pen),
			       r * SAMPLE_MASK_PER_ROW * 4, r * 4, r * 4, r * K * 4, r * K * 4 };
	size_t total = 0;
	for (int i = 0; i < 7; i++) {
		off[i] = total;
		total += al256(sz[i]);
	}
	return total;
}

size_t text_cuda_act_bytes(const text_cuda *t, const text_cuda_limits *lim)
{
	size_t soff[7];
	size_t smp = smp_layout(lim->max_seqs, soff);
	size_t n[A_N], total = 0;
	act_sizes(t, lim, n);
	for (int i = 0; i < A_N; i++)
		total += al256(n[i]);
	return total + al256(attn_ws_bytes_of(t, lim)) + stage_layout_of(t, lim).bytes + smp;
}

static int capture_graphs(text_cuda *t, qerr *e);

/* The four projections of a step of M rows get the fastest of cuBLASLt's candidates instead of
 * its first guess (kn_gemm_f32_tune), timed on the activation buffers, which hold nothing yet,
 * and on every layer's weights in turn (so each launch reads its weight from device memory, as
 * in a step): at start-up for M = max_tokens (every step while prompts wait to be prefilled)
 * and for each decode graph of more than 4 rows before it is captured. Adds the first guesses'
 * and the kept ones' times to *sum_first and *sum_best (ms); logs them when log.
 * For the fp16 gate/up it then times kn_gemm_glu's fused launch against the product and
 * silu_mul apart (QVL_GEMM_GLU=0: not, so they stay apart; A/B).
 * QVL_GEMM_TUNE=0 in the environment keeps the first guesses, QVL_GEMM_TUNE_LAYERS=n times on
 * the first n layers' weights only (1: the same weight every launch, L2-hot; A/B). */
static void tune_projections(text_cuda *t, int M, bool log, double *sum_first, double *sum_best)
{
	const char *env = getenv("QVL_GEMM_TUNE");
	if (M <= 4 || (env && *env == '0'))
		return;
	const char *env_l = getenv("QVL_GEMM_TUNE_LAYERS"), *env_glu = getenv("QVL_GEMM_GLU");
	const bool glu_on = !(env_glu && *env_glu == '0');
	int n_l = env_l ? atoi(env_l) : t->L;
	if (n_l < 1 || n_l > t->L)
		n_l = t->L;
	const int qd = t->Hq * t->hd, qkvw = (t->Hq + 2 * t->KV) * t->hd;
	const uint16_t **ws = xcalloc(4 * (size_t)n_l, sizeof(*ws));
	for (int l = 0; l < n_l; l++) {
		ws[l] = t->layers[l].wqkv;
		ws[n_l + l] = t->layers[l].wo;
		ws[2 * n_l + l] = t->layers[l].wgu;
		ws[3 * n_l + l] = t->layers[l].wd;
	}
	struct {
		const char *name;
		float *y;
		const uint16_t *x;
		const float *res;
		int N, K;
		bool f16;
	} p[4] = {
		{ "qkv", t->qkv, t->h, NULL, qkvw, t->D, t->f16 },
		{ "o", t->x, t->att, t->x, t->D, qd, false },
		{ "gate_up", t->gu, t->h, NULL, 2 * t->F, t->D, t->f16 },
		{ "down", t->x, t->mlp, t->x, t->D, t->F, false },
	};
	char line[512];
	int len = snprintf(line, sizeof(line), "cuBLASLt at %d rows, first guess → kept:", M),
	    tuned = 0;
	for (int i = 0; i < 4; i++) {
		float first, best;
		int k = i == 2 && t->gu_f16 ?
				kn_gemm_f16_tune(t->gemm, (uint16_t *)p[i].y, p[i].x, ws + i * n_l,
						 n_l, M, p[i].N, p[i].K, t->stream, &first, &best) :
				kn_gemm_f32_tune(t->gemm, p[i].y, p[i].x, ws + i * n_l, n_l,
						 p[i].res, M, p[i].N, p[i].K, p[i].f16, t->stream,
						 &first, &best);
		tuned += k >= 0;
		float unfused = 0, fused = 0;
		const int glu = i == 2 && t->gu_f16 && glu_on ?
				kn_gemm_glu_tune(t->gemm, t->mlp, (uint16_t *)p[i].y, p[i].x,
						 ws + i * n_l, n_l, M, t->F, p[i].K, t->stream,
						 &unfused, &fused) : -1;
		t->n_glu_fused += glu > 0;
		t->n_glu_tma += glu == KN_GEMM_GLU_TMA;
		if (k >= 0) {
			*sum_first += first;
			*sum_best += best;
		}
		if (k >= 0 && len < (int)sizeof(line)) {
			char kept[32];
			if (k == KN_GEMM_TUNE_WGMMA)
				snprintf(kept, sizeof(kept), "gemm_wgmma");
			else
				snprintf(kept, sizeof(kept), "candidate %d", k);
			len += snprintf(line + len, sizeof(line) - (size_t)len,
					" %s %.3f → %.3f ms (%s)", p[i].name, first, best, kept);
		}
		if (glu >= 0 && fused > 0 && len < (int)sizeof(line))
			len += snprintf(line + len, sizeof(line) - (size_t)len,
					" gate_up+silu %.3f, fused %.3f ms (%s)", unfused, fused,
					glu == KN_GEMM_GLU_TMA ? "gemm_glu_tma" :
					glu ? "gemm_wgmma" : "apart");
	}
	free(ws);
	if (tuned && log)
		log_msg(LOG_LEVEL_INFO, "text_cuda", "%s", line);
}

/* The LM head of a decode step of M rows (a 151,936 × 2,048 product, the largest of the
 * step: ~240 us of a 3.7 ms step at 128 rows with cuBLASLt's first guess) gets the fastest of
 * cuBLASLt's candidates the same way (kn_gemm_tune; one weight of 622 MB, past L2 every launch),
 * for each decode graph of more than 4 rows (a mixed step's LM head, of other rows, keeps
 * the first guess). Adds the times to *sum_first and *sum_best (ms).
 * H100, the 35 sizes: 7.77 → 7.60 ms (2%, ~5 us a 128-row step; the served rows do not move
 * beyond their noise). QVL_GEMM_TUNE=0 or QVL_GEMM_TUNE_LM_HEAD=0 keeps the first guess (A/B). */
static void tune_lm_head(text_cuda *t, int M, double *sum_first, double *sum_best)
{
	const char *env = getenv("QVL_GEMM_TUNE"), *env_lm = getenv("QVL_GEMM_TUNE_LM_HEAD");
	if (M <= 4 || M > t->max_lrows || (env && *env == '0') || (env_lm && *env_lm == '0'))
		return;
	const uint16_t *ws[1] = { t->lm_head };
	float first, best;
	if (kn_gemm_tune(t->gemm, t->logits16, t->h, ws, 1, M, t->V, t->D, t->stream, &first,
			 &best) >= 0) {
		*sum_first += first;
		*sum_best += best;
	}
}

int text_cuda_alloc(text_cuda *t, const text_cuda_limits *lim, int n_blocks, bool eager,
		    qerr *e)
{
	if (t->allocated)
		return qerr_set(e, QERR_INVALID, "text_cuda: already allocated");
	if (lim->max_tokens < 1 || lim->max_seqs < 1 || lim->max_ctx < 1 || lim->block_size < 1 ||
	    (lim->block_size & (lim->block_size - 1)) || n_blocks < 1)
		return qerr_set(e, QERR_INVALID, "text_cuda: limits %d tokens, %d sequences, %d "
				"context, block size %d (a power of two), %d blocks", lim->max_tokens,
				lim->max_seqs, lim->max_ctx, lim->block_size, n_blocks);
	if ((uint64_t)n_blocks * (uint64_t)lim->block_size > INT_MAX)
		return qerr_set(e, QERR_LIMIT, "text_cuda: %d blocks of %d positions", n_blocks,
				lim->block_size);
	t->lim = *lim;
	t->max_blocks = max_blocks_of(lim);
	t->max_lrows = lim->max_seqs;
	t->n_blocks = n_blocks;
	size_t n[A_N], off[A_N], total = 0;
	act_sizes(t, lim, n);
	for (int i = 0; i < A_N; i++) {
		off[i] = total;
		total += al256(n[i]);
	}
	size_t ws_off = total;
	t->attn_ws_bytes = attn_ws_bytes_of(t, lim);
	total += al256(t->attn_ws_bytes);
	size_t st_off = total;
	t->sl = stage_layout_of(t, lim);
	total += t->sl.bytes;
	size_t pool_bytes = text_cuda_block_bytes(t, lim->block_size) * (size_t)n_blocks;
	if (cudaMalloc(&t->act, total) != cudaSuccess) {
		cudaGetLastError();
		return qerr_set(e, QERR_LIMIT, "text_cuda: activation buffers need %.2f GiB of GPU "
				"memory that is not free", (double)total / (1 << 30));
	}
	if (cudaMalloc(&t->pool, pool_bytes) != cudaSuccess) {
		cudaGetLastError();
		CUDA_CHECK(cudaFree(t->act));
		t->act = NULL;
		return qerr_set(e, QERR_LIMIT, "text_cuda: a KV pool of %d blocks needs %.2f GiB of "
				"GPU memory that is not free", n_blocks, (double)pool_bytes / (1 << 30));
	}
	t->act_bytes = total;
	void *base[A_N];
	for (int i = 0; i < A_N; i++)
		base[i] = (uint8_t *)t->act + off[i];
	t->x = base[A_X];
	t->h = base[A_H];
	t->qkv = base[A_QKV];
	t->q = base[A_Q];
	t->att = base[A_ATT];
	t->gu = base[A_GU];
	t->mlp = base[A_MLP];
	t->hl = base[A_HL];
	t->logits16 = base[A_LOGITS];
	t->attn_ws = (uint8_t *)t->act + ws_off;
	t->stage_d = (uint8_t *)t->act + st_off;
	CUDA_CHECK(cudaHostAlloc((void **)&t->stage_h, t->sl.bytes, cudaHostAllocDefault));
	memset(t->stage_h, 0, t->sl.bytes);
	t->vruns = xcalloc((size_t)lim->max_tokens, sizeof(*t->vruns));
	CUDA_CHECK(cudaHostAlloc((void **)&t->logits_h, (size_t)t->max_lrows * t->V * 2,
				 cudaHostAllocDefault));
	size_t soff[7], smp = smp_layout(lim->max_seqs, soff);
	if (cudaMalloc(&t->smp_d, smp) != cudaSuccess) {
		cudaGetLastError();
		return qerr_set(e, QERR_LIMIT, "text_cuda: the sampling buffers need %.1f MiB of GPU "
				"memory that is not free", (double)smp / (1 << 20));
	}
	CUDA_CHECK(cudaHostAlloc(&t->smp_h, smp, cudaHostAllocDefault));
#define SMP(i, field, type) do { t->field##_d = (type *)((uint8_t *)t->smp_d + soff[i]); \
		t->field##_h = (type *)((uint8_t *)t->smp_h + soff[i]); } while (0)
	SMP(0, smp_rows, kn_sample_row);
	SMP(1, smp_pen, kn_sample_pen);
	SMP(2, smp_mask, int32_t);
#undef SMP
	t->smp_ids_d = (int32_t *)((uint8_t *)t->smp_d + soff[3]);
	t->smp_lp_d = (float *)((uint8_t *)t->smp_d + soff[4]);
	t->smp_top_ids_d = (int32_t *)((uint8_t *)t->smp_d + soff[5]);
	t->smp_top_lp_d = (float *)((uint8_t *)t->smp_d + soff[6]);
	CUDA_CHECK(cudaHostAlloc(&t->smp_h2, smp, cudaHostAllocDefault));
	for (int i = 0; i < 2; i++) {
		uint8_t *h = (uint8_t *)(i ? t->smp_h2 : t->smp_h);
		struct out_slot *o = &t->slots[i];
		o->ids = (int32_t *)(h + soff[3]);
		o->lp = (float *)(h + soff[4]);
		o->top_ids = (int32_t *)(h + soff[5]);
		o->top_lp = (float *)(h + soff[6]);
		o->n_lp = xcalloc((size_t)lim->max_seqs, sizeof(int));
		CUDA_CHECK(cudaEventCreateWithFlags(&o->done, cudaEventDisableTiming));
	}
	CUDA_CHECK(cudaEventCreateWithFlags(&t->staged, cudaEventDisableTiming));
	t->smp_pen_ids = xmalloc((size_t)SAMPLE_PEN_CAP * sizeof(int32_t));
	t->smp_pen_counts = xmalloc((size_t)SAMPLE_PEN_CAP * sizeof(int32_t));
	const size_t per_layer = (size_t)n_blocks * lim->block_size * t->KV * t->hd * kv_elem(t);
	for (int l = 0; l < t->L; l++) {
		t->layers[l].k_cache = (uint8_t *)t->pool + (2 * (size_t)l) * per_layer;
		t->layers[l].v_cache = (uint8_t *)t->pool + (2 * (size_t)l + 1) * per_layer;
	}
	/* Zero the pool once: padding rows of a decode graph read one position of block 0, and
	 * uninitialised bf16 or fp8 may hold NaN patterns that sanitizers and softmax dislike. */
	CUDA_CHECK(cudaMemsetAsync(t->pool, 0, pool_bytes, t->stream));
	CUDA_CHECK(cudaMemsetAsync(t->stage_d, 0, t->sl.bytes, t->stream));
	CUDA_CHECK(cudaStreamSynchronize(t->stream));
	t->allocated = true;
	double first = 0, best = 0;
	tune_projections(t, lim->max_tokens, true, &first, &best);
	return eager ? 0 : capture_graphs(t, e);
}

/* ---- the forward ----------------------------------------------------------------------------- */

/* What one forward launch needs beyond the fixed buffers. */
typedef struct fwd_shape {
	int T;             /* rows */
	int S;             /* sequences */
	int n_dec;         /* sequences [0, n_dec) have one new row each: the paged decode kernel;
			    * [n_dec, S) the prefill kernel (q_start relative to row n_dec) */
	int n_vis;         /* vision rows */
	int n_logits;      /* rows wanting logits (≤ t->max_lrows, else the caller loops) */
	bool trim;         /* the last layer after its attention for the logit rows alone (then h
			    * row i is logit row i; run() decides) */
} fwd_shape;

#define ST(t, field, type) ((type *)((t)->stage_d + (t)->sl.field))
#define STH(t, field, type) ((type *)((t)->stage_h + (t)->sl.field))

/* The paged decode kernel for the leading nd one-row sequences. */
static int decode_attention(text_cuda *t, const layer16 *lw, int nd, cudaStream_t st)
{
	const int32_t *bt = ST(t, block_table, int32_t), *ctx = ST(t, ctx_len, int32_t);
	if (t->kv_fp8)
		return kn_paged_attention_fp8_cuda(t->att, t->q, lw->k_cache, lw->v_cache, bt, ctx,
						   nd, t->Hq, t->KV, t->hd, t->lim.block_size,
						   t->max_blocks, t->scale, 1.0f, 1.0f, t->attn_ws,
						   t->attn_ws_bytes, st);
	return kn_paged_attention_cuda(t->att, t->q, lw->k_cache, lw->v_cache, bt, ctx, nd, t->Hq,
				       t->KV, t->hd, t->lim.block_size, t->max_blocks, t->scale,
				       t->attn_ws, t->attn_ws_bytes, st);
}

/* The prefill kernel for the chunks: rows from nd on, sequences from nd on (S of them, T rows). */
static int chunk_attention(text_cuda *t, const layer16 *lw, int nd, int S, int T, cudaStream_t st)
{
	const size_t ro = (size_t)nd * t->Hq * t->hd;
	const int32_t *bt = ST(t, block_table, int32_t) + (size_t)nd * t->max_blocks;
	const int32_t *qs = ST(t, q_start, int32_t) + nd, *nc = ST(t, n_cached, int32_t) + nd;
	if (t->kv_fp8)
		return kn_prefill_attention_fp8_cuda(t->att + ro, t->q + ro, lw->k_cache,
						     lw->v_cache, bt, qs, nc, S, T, t->Hq, t->KV,
						     t->hd, t->lim.block_size, t->max_blocks,
						     t->scale, 1.0f, 1.0f, t->attn_ws,
						     t->attn_ws_bytes, st);
	return kn_prefill_attention_cuda(t->att + ro, t->q + ro, lw->k_cache, lw->v_cache, bt, qs,
					 nc, S, T, t->Hq, t->KV, t->hd, t->lim.block_size,
					 t->max_blocks, t->scale, t->attn_ws, t->attn_ws_bytes, st);
}

static void attention(text_cuda *t, const layer16 *lw, const fwd_shape *sh)
{
	int rc = 0;
	const int nd = sh->n_dec, S = sh->S - nd, T = sh->T - nd;
	if (nd && S && t->side) {
		/* both kinds side by side, forked after qk_norm_rope and joined before o: the one
		 * launched first on t->side (the chunks, whose side stream has the highest priority
		 * so that their CTAs are placed first; the decodes with QVL_ATTN_OVERLAP=1) */
		CUDA_CHECK(cudaEventRecord(t->ev_fork, t->stream));
		CUDA_CHECK(cudaStreamWaitEvent(t->side, t->ev_fork, 0));
		if (t->prefill_side) {
			rc = chunk_attention(t, lw, nd, S, T, t->side);
			rc = rc ? rc : decode_attention(t, lw, nd, t->stream);
		} else {
			rc = decode_attention(t, lw, nd, t->side);
			rc = rc ? rc : chunk_attention(t, lw, nd, S, T, t->stream);
		}
		CUDA_CHECK(cudaEventRecord(t->ev_join, t->side));
		CUDA_CHECK(cudaStreamWaitEvent(t->stream, t->ev_join, 0));
		PROF(t, ATTN_BOTH);
	} else {
		if (nd) {
			rc = decode_attention(t, lw, nd, t->stream);
			PROF(t, ATTN_DECODE);
		}
		if (!rc && S) {
			rc = chunk_attention(t, lw, nd, S, T, t->stream);
			PROF(t, ATTN_PREFILL);
		}
	}
	if (rc) {
		/* the shapes were checked at text_cuda_new and the workspace sized for the limits:
		 * a refusal here is a programming error */
		log_msg(LOG_LEVEL_CRIT, "text_cuda", "attention refused the step: T %d, S %d, %d "
			"decodes", sh->T, sh->S, nd);
		abort();
	}
}

/* y (T, N) fp32 = RMSNorm(x; norm_w) · Wᵀ, the q/k/v or the gate/up projection with its norm: on
 * fp16 operands when t->f16, else bf16 (h holds the normed rows either way). */
static void norm_project(text_cuda *t, float *y, const float *x, const uint16_t *norm_w,
			 const uint16_t *W, int T, int N)
{
	kn_gemm_f32_rmsnorm_cuda(t->gemm, y, t->h, x, norm_w, t->eps, W, T, N, t->D, t->f16,
				 t->stream);
}

/* q/k norm, rope and the K/V cache write (bf16 or fp8) from the fp32 q/k/v rows in t->qkv. */
static void qk_norm_rope(text_cuda *t, const layer16 *lw, int T)
{
	const int32_t *pos = ST(t, pos, int32_t), *slot = ST(t, slot, int32_t);
	if (t->kv_fp8)
		kn_qk_norm_rope_fp8_cuda(t->q, lw->k_cache, lw->v_cache, t->qkv, lw->q_norm,
					 lw->k_norm, pos, slot, T, t->Hq, t->KV, t->hd, t->section,
					 t->theta, t->eps, 1.0f, 1.0f, t->stream);
	else
		kn_qk_norm_rope_cuda(t->q, lw->k_cache, lw->v_cache, t->qkv, lw->q_norm, lw->k_norm,
				     pos, slot, T, t->Hq, t->KV, t->hd, t->section, t->theta,
				     t->eps, t->stream);
}

/* Everything up to the final norm (h holds the normed rows). Only stream work: capturable (the
 * decode graphs' steps have no prompt chunks, so attention never forks onto t->side there). */
static void forward(text_cuda *t, const fwd_shape *sh)
{
	const int D = t->D, F = t->F, hd = t->hd;
	int T = sh->T;              /* rows: sh->T, then n_logits after a trim */
	float *x = t->x;            /* the residual stream: t->x, then the logit rows' copy */
	uint16_t *att = t->att;
	const int qkvw = (t->Hq + 2 * t->KV) * hd, qd = t->Hq * hd;
	cudaStream_t st = t->stream;
	kn_embedding_cuda(t->x, t->embed, ST(t, ids, int32_t), T, D, st);
	const uint16_t *vis = ST(t, vis, uint16_t);
	const size_t vis_plane = (size_t)sh->n_vis * D;
	if (sh->n_vis)
		kn_rows_scatter_cuda(t->x, vis, ST(t, vis_idx, int32_t), sh->n_vis, D, st);
	/* gemm_qkv_tma's rope table, once a step, in the fp32 qkv rows it leaves unused */
	const bool fused_qkv = T >= t->qkv_tma_min &&
			       kn_qkv_tma_fits(t->qkv_tma, t->h, t->layers[0].wqkv, T, t->Hq, t->KV,
					       hd, D);
	float *rope_cs = t->qkv, *rope_sn = t->qkv + (size_t)T * (hd / 2);
	if (fused_qkv)
		kn_rope_table_cuda(rope_cs, rope_sn, ST(t, pos, int32_t), T, hd, t->section,
				   t->theta, st);
	PROF(t, EMBED);
	for (int l = 0; l < t->L; l++) {
		const layer16 *lw = &t->layers[l];
		if (fused_qkv) {
			kn_rmsnorm_f16_cuda(t->h, t->x, lw->in_norm, T, D, t->eps, st);
			kn_qkv_tma_run(t->qkv_tma, t->q, lw->k_cache, lw->v_cache, t->kv_fp8, t->h,
				       lw->wqkv, lw->q_norm, lw->k_norm, rope_cs, rope_sn,
				       ST(t, slot, int32_t), T, t->Hq, t->KV, D, t->eps, 1.0f,
				       1.0f, st);
			PROF(t, NORM_QKV);
		} else {
			norm_project(t, t->qkv, t->x, lw->in_norm, lw->wqkv, T, qkvw);
			PROF(t, NORM_QKV);
			qk_norm_rope(t, lw, T);
		}
		PROF(t, QK_ROPE);
		attention(t, lw, sh);
		if (sh->trim && l == t->L - 1) {
			/* past its attention the last layer's rows matter only where logits are
			 * wanted: their x (fp32 rows copied as twice as many 16-bit halves) and att
			 * rows, in logit order, into the qkv rows, which nothing reads any more */
			const int32_t *lidx = ST(t, logit_idx, int32_t);
			float *xl = t->qkv;
			uint16_t *al = (uint16_t *)(xl + (size_t)sh->n_logits * D);
			kn_rows_gather_cuda((uint16_t *)xl, (const uint16_t *)t->x, lidx, sh->n_logits,
					    2 * D, st);
			kn_rows_gather_cuda(al, t->att, lidx, sh->n_logits, qd, st);
			x = xl;
			att = al;
			T = sh->n_logits;
		}
		kn_gemm_f32_cuda(t->gemm, x, att, lw->wo, x, T, D, qd, st);
		PROF(t, O);
		if (T > 4 && t->gu_f16) {   /* gu holds fp16 then: half the bytes */
			kn_rmsnorm_f16_cuda(t->h, x, lw->post_norm, T, D, t->eps, st);
			PROF(t, NORM_POST);
			/* gate/up and silu·up in one launch where the tuning kept that */
			kn_gemm_glu_cuda(t->gemm, t->mlp, (uint16_t *)t->gu, t->h, lw->wgu, T, F, D,
					 st);
			PROF(t, GATE_UP);
		} else {
			norm_project(t, t->gu, x, lw->post_norm, lw->wgu, T, 2 * F);
			PROF(t, GATE_UP);
			kn_silu_mul_cuda(t->mlp, t->gu, T, F, st);
		}
		PROF(t, SILU);
		kn_gemm_f32_cuda(t->gemm, x, t->mlp, lw->wd, x, T, D, F, st);
		PROF(t, DOWN);
		if (l < t->n_ds && sh->n_vis) {   /* never the trimmed layer (run() checks) */
			kn_rows_scatter_add_cuda(t->x, vis + (size_t)(1 + l) * vis_plane,
						 ST(t, vis_idx, int32_t), sh->n_vis, D, st);
			PROF(t, DEEPSTACK);
		}
	}
	kn_rmsnorm_cuda(t->h, x, t->norm, T, D, t->eps, st);
	PROF(t, FINAL_NORM);
}

/* LM head over logit rows [first, first + n) of the step's logit_idx; after a trimmed forward
 * (first 0) h's rows are those rows already, in order. */
static void lm_head(text_cuda *t, int first, int n, bool trimmed)
{
	if (trimmed) {
		kn_gemm_cuda(t->gemm, t->logits16, t->h, t->lm_head, NULL, n, t->V, t->D,
			     t->stream);
		return;
	}
	kn_rows_gather_cuda(t->hl, t->h, ST(t, logit_idx, int32_t) + first, n, t->D, t->stream);
	kn_gemm_cuda(t->gemm, t->logits16, t->hl, t->lm_head, NULL, n, t->V, t->D, t->stream);
}

/* The LM head of a decode graph of B rows: every row is its sequence's logit row, in order
 * (prepare() takes a graph only when each sequence has one new row and one logit row; padding
 * rows have logit_idx i too), so the head reads h itself and no gather runs (~3.5 us a
 * 128-row step, H100). */
static void lm_head_decode(text_cuda *t, int B)
{
	kn_gemm_cuda(t->gemm, t->logits16, t->h, t->lm_head, NULL, B, t->V, t->D, t->stream);
}

/* ---- graphs ---------------------------------------------------------------------------------- */

/* vLLM's capture sizes: 1, 2, 4, then 8 to 256 in steps of 8, capped at max_seqs (which is
 * always included). */
static int graph_ladder(int max_seqs, int *sizes)
{
	int n = 0;
	for (int b = 1; b <= max_seqs && n < TEXT_CUDA_MAX_GRAPHS - 1; b = b < 8 ? b * 2 : b + 8) {
		if (b > 4 && b < 8)
			b = 8;
		if (b > max_seqs)
			break;
		sizes[n++] = b;
		if (b >= 8 && b + 8 > 256)
			break;
	}
	if (n == 0 || sizes[n - 1] != max_seqs) {
		if (max_seqs <= 256 || n == 0)
			sizes[n++] = max_seqs;
	}
	return n;
}

/* Fill the staging of a padded decode step of B rows whose first `real` rows are already there:
 * rows real..B-1 read token 0, write no slot, attend to position 0 of block 0. */
static void pad_decode(text_cuda *t, int real, int B)
{
	int32_t *ids = STH(t, ids, int32_t), *pos = STH(t, pos, int32_t);
	int32_t *slot = STH(t, slot, int32_t), *ctx = STH(t, ctx_len, int32_t);
	int32_t *bt = STH(t, block_table, int32_t), *lidx = STH(t, logit_idx, int32_t);
	for (int i = real; i < B; i++) {
		ids[i] = 0;
		slot[i] = -1;
		ctx[i] = 1;
		bt[(size_t)i * t->max_blocks] = 0;
		lidx[i] = i;
	}
	/* pos is (3, B): rows of B; the caller wrote rows of `real`, so rebuild with stride B */
	for (int a = 2; a >= 0; a--) {
		for (int i = real - 1; i >= 0; i--)
			pos[(size_t)a * B + i] = pos[(size_t)a * real + i];
	}
	for (int a = 0; a < 3; a++)
		for (int i = real; i < B; i++)
			pos[(size_t)a * B + i] = 0;
}

static void decode_shape(fwd_shape *sh, int B)
{
	*sh = (fwd_shape){ .T = B, .S = B, .n_dec = B, .n_vis = 0, .n_logits = B };
}

static int capture_graphs(text_cuda *t, qerr *e)
{
	int sizes[TEXT_CUDA_MAX_GRAPHS];
	int n = graph_ladder(t->lim.max_seqs < t->lim.max_tokens ? t->lim.max_seqs :
			     t->lim.max_tokens, sizes);
	/* Tuned projections and a warm-up step first: cuBLASLt picks its algorithms (host work)
	 * outside the capture. */
	double first = 0, best = 0, lm_first = 0, lm_best = 0;
	for (int i = 0; i < n; i++) {
		int B = sizes[i];
		tune_projections(t, B, false, &first, &best);
		tune_lm_head(t, B, &lm_first, &lm_best);
		pad_decode(t, 0, B);
		CUDA_CHECK(cudaMemcpyAsync(t->stage_d, t->stage_h, t->sl.bytes, cudaMemcpyHostToDevice,
					   t->stream));
		fwd_shape sh;
		decode_shape(&sh, B);
		forward(t, &sh);
		lm_head_decode(t, B);
		CUDA_CHECK(cudaStreamSynchronize(t->stream));
		cudaGraph_t g;
		CUDA_CHECK(cudaStreamBeginCapture(t->stream, cudaStreamCaptureModeThreadLocal));
		forward(t, &sh);
		lm_head_decode(t, B);
		CUDA_CHECK(cudaStreamEndCapture(t->stream, &g));
		cudaError_t ce = cudaGraphInstantiate(&t->graphs[t->n_graphs].exec, g, 0);
		CUDA_CHECK(cudaGraphDestroy(g));
		if (ce != cudaSuccess) {
			cudaGetLastError();
			graphs_free(t);
			return qerr_set(e, QERR_LIMIT, "text_cuda: capturing the decode graph of %d "
					"sequences failed: %s", B, cudaGetErrorString(ce));
		}
		t->graphs[t->n_graphs++].B = B;
	}
	if (first > 0)
		log_msg(LOG_LEVEL_INFO, "text_cuda", "cuBLASLt for the decode graphs: the four "
			"projections of one layer summed over the %d sizes, first guess %.3f ms → "
			"kept %.3f ms; gate/up and SwiGLU fused at %d of them (%d by gemm_glu_tma)", n,
			first, best, t->n_glu_fused, t->n_glu_tma);
	if (lm_first > 0)
		log_msg(LOG_LEVEL_INFO, "text_cuda", "cuBLASLt for the decode graphs' LM head, "
			"summed over the sizes: first guess %.3f ms → kept %.3f ms", lm_first,
			lm_best);
	return 0;
}

/* ---- the step -------------------------------------------------------------------------------- */

static int check_seq(const text_cuda *t, const backend_seq *s, int si, int chain_rows, qerr *e)
{
	const backend_seq_limits lim = { .who = "text_cuda", .vocab = t->V, .chain_rows = chain_rows,
					 .n_blocks = t->n_blocks,
					 .block_size = t->lim.block_size,
					 .max_positions = t->lim.max_ctx,
					 .max_what = "the longest sequence", .has_vision = t->has_vision };
	return backend_check_seq(s, si, &lim, e);
}

/* Copy the used part of each staging array to the device: rows = positions (stride of pos),
 * S sequences with nb block-table entries each, n_lidx logit rows, nv vision rows (their rows
 * themselves only when vis_rows: some were narrowed on the host; the rest come from the
 * device, copied after this). */
static void stage_upload(text_cuda *t, int rows, int S, int nb, int n_lidx, int nv,
			 bool vis_rows)
{
	cudaStream_t st = t->stream;
	const stage_layout *sl = &t->sl;
#define UP(field, bytes) CUDA_CHECK(cudaMemcpyAsync(t->stage_d + sl->field, \
		t->stage_h + sl->field, (bytes), cudaMemcpyHostToDevice, st))
	UP(ids, (size_t)rows * 4);
	UP(pos, 3 * (size_t)rows * 4);
	UP(slot, (size_t)rows * 4);
	UP(q_start, ((size_t)S + 1) * 4);
	UP(n_cached, (size_t)S * 4);
	UP(ctx_len, (size_t)S * 4);
	UP(logit_idx, (size_t)n_lidx * 4);
	if (nv)
		UP(vis_idx, (size_t)nv * 4);
	if (nv && vis_rows)
		UP(vis, (size_t)(1 + t->n_ds) * nv * t->D * 2);
#undef UP
	size_t pitch = (size_t)t->max_blocks * 4;
	CUDA_CHECK(cudaMemcpy2DAsync(t->stage_d + sl->block_table, pitch,
				     t->stage_h + sl->block_table, pitch, (size_t)nb * 4, (size_t)S,
				     cudaMemcpyHostToDevice, st));
}

/* Copy n logit rows (bf16 on the device at logits16) out as fp32 into dst. */
static void logits_out(text_cuda *t, int n, float *dst)
{
	size_t cnt = (size_t)n * t->V;
	CUDA_CHECK(cudaMemcpyAsync(t->logits_h, t->logits16, cnt * 2, cudaMemcpyDeviceToHost,
				   t->stream));
	CUDA_CHECK(cudaStreamSynchronize(t->stream));
	for (size_t i = 0; i < cnt; i++)
		dst[i] = bf16_to_f32(t->logits_h[i]);
}

void text_cuda_set_vis_find(text_cuda *t, text_cuda_vis_find_fn find, void *ctx)
{
	t->vis_find = find;
	t->vis_find_ctx = ctx;
}

/* Whether vision row `row` of the step (host pointer hrow) is on the device; if so it joins
 * the last run when it continues it, else starts run *n_runs. */
static bool vis_on_device(text_cuda *t, const float *hrow, int row, int *n_runs)
{
	size_t plane = 0;
	const uint16_t *d = t->vis_find ? t->vis_find(t->vis_find_ctx, hrow, &plane) : NULL;
	if (!d)
		return false;
	struct vis_run *last = *n_runs ? &t->vruns[*n_runs - 1] : NULL;
	if (last && last->plane == plane && last->row + last->n == row &&
	    last->src + (size_t)last->n * t->D == d) {
		last->n++;
		return true;
	}
	t->vruns[(*n_runs)++] = (struct vis_run){ .src = d, .plane = plane, .row = row, .n = 1 };
	return true;
}

/* What prepare() found out about a step. */
typedef struct step_info {
	size_t T, NL, NV;
	int n_seqs;
	int n_dec;               /* the leading run of sequences with one new row */
	bool decode;             /* every sequence one new row and one logit row, no vision */
	const decode_graph *g;   /* the graph that runs it, or NULL: eager */
} step_info;

/* Wait until the uploads of the last launch have read the staging buffers (they run first in
 * their step, so this is short even while that step computes). */
static void staging_free(text_cuda *t)
{
	if (t->staged_pending)
		CUDA_CHECK(cudaEventSynchronize(t->staged));
	t->staged_pending = false;
}

/* Check the step, pack its inputs into staging and copy them to the device; chained ids
 * (BACKEND_CHAINED_ID(r), r < chain_rows) are filled in on the device from the last launch's
 * sampled ids. */
static int prepare(text_cuda *t, const backend_seq *seqs, int n_seqs, int chain_rows,
		   step_info *si_out, qerr *e)
{
	if (!t->allocated)
		return qerr_set(e, QERR_INVALID, "text_cuda: step before text_cuda_alloc");
	if (n_seqs < 1 || !seqs)
		return qerr_set(e, QERR_INVALID, "text_cuda: %d sequences in a step", n_seqs);
	if (n_seqs > t->lim.max_seqs)
		return qerr_set(e, QERR_LIMIT, "text_cuda: %d sequences in a step, at most %d "
				"(--max-num-seqs)", n_seqs, t->lim.max_seqs);
	size_t T = 0, NL = 0, NV = 0;
	bool decode = true;
	int n_dec = 0;   /* the leading run of one-row sequences */
	for (int si = 0; si < n_seqs; si++) {
		int rc = check_seq(t, &seqs[si], si, chain_rows, e);
		if (rc)
			return rc;
		if (seqs[si].n_new == 1 && n_dec == si)
			n_dec++;
		T += (size_t)seqs[si].n_new;
		NL += (size_t)seqs[si].n_logits;
		if (seqs[si].n_new != 1 || seqs[si].n_logits != 1)
			decode = false;
		for (int i = 0; seqs[si].vis && i < seqs[si].n_new; i++)
			NV += seqs[si].vis[i] != NULL;
	}
	if (T > (size_t)t->lim.max_tokens)
		return qerr_set(e, QERR_LIMIT, "text_cuda: %zu new positions in a step, at most %d "
				"(--max-num-batched-tokens)", T, t->lim.max_tokens);
	if (NV)
		decode = false;

	int32_t *ids = STH(t, ids, int32_t), *pos = STH(t, pos, int32_t);
	int32_t *slot = STH(t, slot, int32_t), *qs = STH(t, q_start, int32_t);
	int32_t *nc = STH(t, n_cached, int32_t), *ctx = STH(t, ctx_len, int32_t);
	int32_t *bt = STH(t, block_table, int32_t), *lidx = STH(t, logit_idx, int32_t);
	int32_t *vidx = STH(t, vis_idx, int32_t), *chain = STH(t, chain, int32_t);
	uint16_t *vis = STH(t, vis, uint16_t);
	const int bs = t->lim.block_size, D = t->D;
	size_t r = 0, lr = 0, vr = 0;
	int nb_max = 1, n_runs = 0, n_chain = 0;
	bool host_rows = false;
	for (int si = 0; si < n_seqs; si++) {
		const backend_seq *s = &seqs[si];
		qs[si] = (int32_t)(si < n_dec ? r : r - (size_t)n_dec);   /* see attention() */
		nc[si] = s->n_cached;
		ctx[si] = s->n_cached + s->n_new;
		int nb = (s->n_cached + s->n_new + bs - 1) / bs;
		memcpy(bt + (size_t)si * t->max_blocks, s->block_table, (size_t)nb * 4);
		if (nb > nb_max)
			nb_max = nb;
		for (int i = 0; i < s->n_logits; i++)
			lidx[lr++] = (int32_t)r + s->logit_rows[i];
		for (int i = 0; i < s->n_new; i++, r++) {
			ids[r] = s->ids[i];
			if (s->ids[i] < 0) {   /* chained (check_seq allowed it) */
				ids[r] = 0;
				chain[2 * n_chain] = (int32_t)r;
				chain[2 * n_chain + 1] = -1 - s->ids[i];
				n_chain++;
			}
			for (int a = 0; a < 3; a++)
				pos[(size_t)a * T + r] = s->pos[(size_t)a * s->n_new + i];
			int p = s->n_cached + i;
			slot[r] = s->block_table[p / bs] * bs + p % bs;
			if (s->vis && s->vis[i]) {
				vidx[vr] = (int32_t)r;
				if (!vis_on_device(t, s->vis[i], (int)vr, &n_runs)) {
					host_rows = true;
					for (int k = 0; k <= t->n_ds; k++) {
						uint16_t *dst = vis + ((size_t)k * NV + vr) * D;
						const float *src = s->vis[i] + (size_t)k * D;
						for (int c = 0; c < D; c++)
							dst[c] = f32_to_bf16(src[c]);
					}
				}
				vr++;
			}
		}
	}
	qs[n_seqs] = (int32_t)(T - (size_t)(n_dec < n_seqs ? n_dec : 0));

	const decode_graph *g = NULL;
	int B = (int)T;
	if (decode)
		for (int i = 0; i < t->n_graphs; i++)
			if (t->graphs[i].B >= (int)T) {
				g = &t->graphs[i];
				B = g->B;
				break;
			}
	if (g)
		pad_decode(t, (int)T, B);
	stage_upload(t, B, g ? B : n_seqs, nb_max, g ? B : (int)NL, (int)NV, host_rows);
	if (n_chain) {
		CUDA_CHECK(cudaMemcpyAsync(t->stage_d + t->sl.chain, chain, (size_t)n_chain * 8,
					   cudaMemcpyHostToDevice, t->stream));
		kn_token_chain_cuda(ST(t, ids, int32_t), t->smp_ids_d, ST(t, chain, int32_t), n_chain,
				    t->stream);
	}
	/* the device-resident vision rows: each plane of a run is one span of n rows */
	for (int i = 0; i < n_runs; i++) {
		const struct vis_run *vr_ = &t->vruns[i];
		CUDA_CHECK(cudaMemcpy2DAsync(t->stage_d + t->sl.vis + (size_t)vr_->row * D * 2,
					     NV * D * 2, vr_->src, vr_->plane * 2,
					     (size_t)vr_->n * D * 2, (size_t)(1 + t->n_ds),
					     cudaMemcpyDeviceToDevice, t->stream));
	}
	*si_out = (step_info){ .T = T, .NL = NL, .NV = NV, .n_seqs = n_seqs, .n_dec = n_dec,
			       .decode = decode, .g = g };
	return 0;
}

/* The forward of a prepared step, and the LM head for logit rows [0, min(NL, max_lrows)). */
static void run(text_cuda *t, const step_info *si)
{
	if (si->g) {
		CUDA_CHECK(cudaGraphLaunch(si->g->exec, t->stream));
		return;
	}
	fwd_shape sh = { .T = (int)si->T, .S = si->n_seqs, .n_dec = si->n_dec,
			 .n_vis = (int)si->NV, .n_logits = (int)si->NL };
	/* the last layer's tail for the logit rows alone where they are fewer than the rows (a
	 * prompt's other positions feed only the KV cache, which that layer's attention has
	 * written) and fit one LM head pass; never where a deepstack add touches that layer */
	const size_t qd = (size_t)t->Hq * t->hd, kd = (size_t)t->KV * t->hd;
	sh.trim = t->trim_tail && si->NL > 0 && si->NL < si->T &&
		  si->NL <= (size_t)t->max_lrows && (t->L - 1 >= t->n_ds || !si->NV) &&
		  si->NL * (4 * (size_t)t->D + 2 * qd) <= (size_t)t->lim.max_tokens * (qd + 2 * kd) * 4;
	step_profile_begin(t->prof, sh.T, sh.n_dec);
	forward(t, &sh);
	if (si->NL)
		lm_head(t, 0, si->NL < (size_t)t->max_lrows ? (int)si->NL : t->max_lrows, sh.trim);
	PROF(t, LM_HEAD);
	step_profile_end(t->prof);
}

int text_cuda_step(text_cuda *t, const backend_seq *seqs, int n_seqs, float *logits, qerr *e)
{
	step_info si;
	staging_free(t);
	int rc = prepare(t, seqs, n_seqs, 0, &si, e);
	if (rc)
		return rc;
	t->last_NL = 0;   /* nothing to chain from: its ids are not sampled here */
	if (si.NL > 0 && !logits)
		return qerr_set(e, QERR_INVALID, "text_cuda: %zu logit rows asked for but logits is "
				"NULL", si.NL);
	run(t, &si);
	for (size_t first = 0; first < si.NL; first += (size_t)t->max_lrows) {
		int n = si.NL - first < (size_t)t->max_lrows ? (int)(si.NL - first) : t->max_lrows;
		if (first)   /* (a step of more logit rows than one pass is never trimmed) */
			lm_head(t, (int)first, n, false);
		logits_out(t, n, logits + first * t->V);
	}
	if (!si.NL)
		CUDA_CHECK(cudaStreamSynchronize(t->stream));
	return 0;
}

/* ---- sampling on the device ------------------------------------------------------------------ */

int text_cuda_launch_sample(text_cuda *t, const backend_seq *seqs, int n_seqs,
			    const backend_sample_row *rows, qerr *e)
{
	if (t->n_flight == 2)
		return qerr_set(e, QERR_INVALID, "text_cuda: two sampling steps in flight already");
	size_t NL = 0;
	for (int i = 0; i < n_seqs && seqs; i++)
		NL += seqs[i].n_logits > 0 ? (size_t)seqs[i].n_logits : 0;
	if (NL > (size_t)t->max_lrows)
		return qerr_set(e, QERR_LIMIT, "text_cuda: %zu rows to sample, at most %d at once", NL,
				t->max_lrows);
	staging_free(t);
	/* the rows' parameters and lists, before anything runs (a refusal leaves no trace) */
	kn_sample_row *kr = t->smp_rows_h;
	kn_sample_pen *pen = t->smp_pen_h;
	int32_t *mask = t->smp_mask_h;
	size_t n_pen = 0, n_mask = 0;
	bool any_lp = false;
	for (size_t r = 0; r < NL; r++) {
		const sampling_params *p = rows[r].sp;
		sampler_state *ss = rows[r].ss;
		size_t np = sampler_penalty_list(p, ss, t->smp_pen_ids, t->smp_pen_counts,
						 SAMPLE_PEN_CAP - n_pen);
		if (np > SAMPLE_PEN_CAP - n_pen)
			return qerr_set(e, QERR_LIMIT, "text_cuda: the rows' penalty lists hold more than "
					"%d ids", SAMPLE_PEN_CAP);
		kn_sample_row_init(&kr[r], p->temperature, p->top_p, p->top_k, p->min_p,
				   p->repetition_penalty, p->presence_penalty, p->frequency_penalty);
		kr[r].logprobs = p->logprobs;
		any_lp |= p->logprobs >= 0;
		kr[r].pen_start = (int32_t)n_pen;
		kr[r].pen_count = (int32_t)np;
		for (size_t k = 0; k < np; k++)
			pen[n_pen + k] = (kn_sample_pen){ .id = t->smp_pen_ids[k],
							  .count = t->smp_pen_counts[k] };
		n_pen += np;
		kr[r].mask_start = (int32_t)n_mask;
		if (sampler_masks_stops(p, ss)) {
			for (int k = 0; !p->ignore_eos && k < p->n_eos; k++)
				mask[n_mask++] = p->eos_ids[k];
			for (int k = 0; k < p->n_stop_ids; k++)
				mask[n_mask++] = p->stop_ids[k];
		}
		kr[r].mask_count = (int32_t)n_mask - kr[r].mask_start;
	}
	step_info si;
	int rc = prepare(t, seqs, n_seqs, t->last_NL, &si, e);
	if (rc)
		return rc;
	/* the draws last: a refusal above must not have advanced any generator */
	for (size_t r = 0; r < NL; r++)
		kr[r].u = rows[r].sp->temperature >= SAMPLER_GREEDY_EPS ? sampler_draw(rows[r].ss) : 0;
	cudaStream_t st = t->stream;
	CUDA_CHECK(cudaMemcpyAsync(t->smp_rows_d, kr, NL * sizeof(*kr), cudaMemcpyHostToDevice, st));
	if (n_pen)
		CUDA_CHECK(cudaMemcpyAsync(t->smp_pen_d, pen, n_pen * sizeof(*pen),
					   cudaMemcpyHostToDevice, st));
	if (n_mask)
		CUDA_CHECK(cudaMemcpyAsync(t->smp_mask_d, mask, n_mask * 4, cudaMemcpyHostToDevice, st));
	CUDA_CHECK(cudaEventRecord(t->staged, st));
	t->staged_pending = true;
	run(t, &si);
	struct out_slot *o = &t->slots[(t->slot_head + t->n_flight) % 2];
	o->NL = (int)NL;
	o->any_lp = any_lp;
	for (size_t r = 0; r < NL; r++)
		o->n_lp[r] = rows[r].sp->logprobs;
	if (NL) {
		const int K = KN_SAMPLE_MAX_LOGPROBS;
		if (kn_sample_cuda(t->smp_ids_d, any_lp ? t->smp_lp_d : NULL,
				   any_lp ? t->smp_top_ids_d : NULL, any_lp ? t->smp_top_lp_d : NULL,
				   t->logits16, t->smp_rows_d, t->smp_pen_d, t->smp_mask_d, (int)NL,
				   t->V, st)) {
			log_msg(LOG_LEVEL_CRIT, "text_cuda", "sampling refused a vocabulary of %d", t->V);
			abort();
		}
		CUDA_CHECK(cudaMemcpyAsync(o->ids, t->smp_ids_d, NL * 4, cudaMemcpyDeviceToHost, st));
		if (any_lp) {
			CUDA_CHECK(cudaMemcpyAsync(o->lp, t->smp_lp_d, NL * 4, cudaMemcpyDeviceToHost,
						   st));
			CUDA_CHECK(cudaMemcpyAsync(o->top_ids, t->smp_top_ids_d, NL * K * 4,
						   cudaMemcpyDeviceToHost, st));
			CUDA_CHECK(cudaMemcpyAsync(o->top_lp, t->smp_top_lp_d, NL * K * 4,
						   cudaMemcpyDeviceToHost, st));
		}
	}
	CUDA_CHECK(cudaEventRecord(o->done, st));
	t->n_flight++;
	t->last_NL = (int)NL;
	return 0;
}

int text_cuda_wait_sample(text_cuda *t, int32_t *ids, sampler_logprobs *lps, qerr *e)
{
	if (!t->n_flight)
		return qerr_set(e, QERR_INVALID, "text_cuda: no sampling step in flight");
	struct out_slot *o = &t->slots[t->slot_head];
	t->slot_head = (t->slot_head + 1) % 2;
	t->n_flight--;
	CUDA_CHECK(cudaEventSynchronize(o->done));
	for (int r = 0; r < o->NL; r++) {
		ids[r] = o->ids[r];
		if (o->n_lp[r] < 0 || !lps)
			continue;
		sampler_logprobs *lp = &lps[r];
		lp->id = ids[r];
		lp->logprob = o->lp[r];
		lp->n_top = o->n_lp[r] > 0 ? (o->n_lp[r] < t->V ? o->n_lp[r] : t->V) : 0;
		for (int k = 0; k < lp->n_top; k++) {
			lp->top_ids[k] = o->top_ids[r * KN_SAMPLE_MAX_LOGPROBS + k];
			lp->top_logprobs[k] = o->top_lp[r * KN_SAMPLE_MAX_LOGPROBS + k];
		}
	}
	return 0;
}
