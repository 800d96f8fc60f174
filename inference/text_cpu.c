/*
 * text_cpu: the Qwen3-VL / Qwen3 text decoder in fp32 on the CPU (see text_cpu.h).
 *
 * What: embedding (or vision row 0) → L × [RMSNorm → q,k,v → per-head RMSNorm of q,k → (M)RoPE →
 * causal GQA attention over the paged cache → o → residual → RMSNorm → SwiGLU MLP → residual →
 * deepstack row added at vision positions after layers 0..n_ds-1] → final RMSNorm → LM head, for
 * the rows that want logits only. Spec: qwen3-vl.md §6, §7.
 *
 * Why this shape (the default mode): every projection is one cblas_sgemm over all new tokens of all sequences of
 * the step at once (T rows, the ragged batch flattened), so prefill runs at BLAS speed and
 * decode of a batch shares each weight read. Attention is per sequence and kv head: K and V of
 * its context are gathered from the blocks into contiguous (ctx, hd) rows, then two sgemm per
 * query head and tile of 128 query rows (scores, then scores·V), so long prefills run at BLAS
 * speed too (O(ctx²) memory is avoided by the tiling: the score buffer is (128, ctx)).
 *
 * Shapes (T = Σ n_new of the step, D hidden, Hq/KV heads, hd head_dim, F MLP width):
 *   x (T, D) residual  h (T, D) normed  qkv (T, (Hq+2KV)·hd)  att (T, Hq·hd)  gu (T, 2F)
 *   act (T, F)  Weights row-major (out, in) as in the checkpoint; q,k,v rows stacked into one
 *   (Hq·hd + 2·KV·hd, D) matrix and gate, up into one (2F, D), converted to fp32 once at load.
 *
 * Paged KV pool (fp32; K after k_norm and rope, V raw), block-major so that one block holds
 * every layer of its block_size positions (backend.h):
 *
 *   pool ─► block 0 ─┬─ layer 0 ─┬─ K: slot 0 (KV·hd) │ slot 1 │ … │ slot bs-1
 *                    │           └─ V: slot 0 (KV·hd) │ slot 1 │ … │ slot bs-1
 *                    ├─ layer 1 ─┬─ K …
 *                    │           └─ V …
 *                    └─ layer L-1
 *           block 1 ─ …
 *
 *   position p of a sequence ─► block_table[p / bs], slot p % bs
 *   float offset = (((block · L + layer) · 2 + {0:K, 1:V}) · bs + slot) · KV·hd
 *
 * Rope: pair j of a head is (j, j + hd/2); with MRoPE it reads the H position when j%3 == 1 and
 * j < 3·section[1], W when j%3 == 2 and j < 3·section[2], else T (interleaved, §7.2); for dense
 * Qwen3 every pair reads T. θ = pos · inv_freq[j] is one fp32 multiply as in transformers; its
 * cos and sin are taken in double and rounded.
 *
 * Batch-invariant mode (text_cpu_set_batch_invariant): the shapes above make a row's result
 * depend on its neighbours — sgemm's blocking, edge kernels and thread split follow the step's
 * row count T (and T == 1 takes sgemv instead); an attention tile's sgemm is shaped by the
 * tile's first and last rows, which chunked prefill moves. Two runs of one prompt, alone and
 * in a batch, or prefilled in one chunk and in several, then differ in the last bits, and
 * greedy decoding can pick another token. With the mode on, every product is a matrix-vector
 * product whose shapes are those of one position, whatever else is in the step:
 *
 *   projections, LM head   per row i:  y (N) = W (N, K) · x_i        sgemv NoTrans, W fixed
 *   attention              per query row i of head h, ctx = n_cached + i + 1 (its own context):
 *                            s (ctx)  = K[0..ctx) (ctx, hd) · q · scale   sgemv NoTrans
 *                            softmax of s as in the tiled path (expf, sum in double)
 *                            o (hd)   = V[0..ctx)ᵀ · s                    sgemv Trans
 *
 * OpenBLAS splits a gemv over threads by its shapes and thread count only (rows of the output
 * for NoTrans; for Trans output rows, or, when there are too few, the context with the partial
 * sums added in thread order after the join), so the same call on the same data gives the same
 * bits. Every vector goes through scratch whose start is 64-byte aligned (struct abuf), so a
 * kernel sees the same alignment for the same position in every step and every instance. The
 * rest (RMSNorm, rope, SwiGLU, softmax, residual adds) is per-row plain C already. The cost:
 * every weight is read once per row instead of once per step, so prefill and batched decode
 * run at matrix-vector speed (3-5x slower on the tiny model); decode of one sequence does not
 * change.
 *
 * Precision: fp32 storage and BLAS; RMSNorm sums of squares and softmax sums in double.
 * Ownership: everything in struct text_cpu is owned. One thread calls at a time.
 * Speed: OpenBLAS must use the CPU's own kernels (see the warning in text_cpu_new).
 */
#include "text_cpu.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "backend_impl.h"
#include "bf16.h"
#include "log.h"

#define ATT_TILE 128    /* query rows per attention sgemm: bounds the score buffer */

/* A float buffer whose first element is 64-byte aligned, whatever malloc returned: BLAS kernels
 * may take different paths for different alignments, and batch-invariant mode needs the same
 * path for the same position in every step and every text_cpu. */
typedef struct abuf {
	void *raw;          /* owned: what xmalloc returned */
	float *p;           /* borrowed from raw: raw rounded up to 64 bytes */
} abuf;

typedef struct layer32 {
	float *in_norm;     /* (D) */
	float *wqkv;        /* (Hq·hd + 2·KV·hd, D) */
	float *q_norm;      /* (hd) */
	float *k_norm;      /* (hd) */
	float *wo;          /* (D, Hq·hd) */
	float *post_norm;   /* (D) */
	float *wgu;         /* (2F, D): gate rows then up rows */
	float *wd;          /* (D, F) */
} layer32;

struct text_cpu {
	int D, F, L, Hq, KV, hd, V, n_ds;
	bool has_vision;
	bool batch_invariant;   /* see the top of this file */
	float eps;
	float scale;            /* 1/√hd */
	float *embed;           /* owned (V, D) */
	float *lm_head;         /* owned (V, D), or == embed when tied (then not freed twice) */
	float *norm;            /* owned (D) */
	layer32 *layers;        /* owned (L) */
	float *inv_freq;        /* owned (hd/2) */
	uint8_t *axis;          /* owned (hd/2): 0 T, 1 H, 2 W */
	int bs, n_blocks;
	size_t kvd;             /* KV·hd floats per position and layer */
	float *pool;            /* owned: n_blocks · L · 2 · bs · kvd */
	/* scratch, grown on demand */
	size_t cap_t;           /* tokens the per-token buffers hold */
	float *x, *h, *qkv, *att, *gu, *act;
	size_t cap_ctx;
	abuf scores;            /* (ATT_TILE, cap_ctx) */
	abuf kbuf, vbuf;        /* (cap_ctx, hd): one kv head's K and V gathered from the blocks */
	size_t cap_l;
	float *hl;              /* (cap_l, D) rows that want logits */
	/* batch-invariant mode only, allocated when it is turned on and never moved */
	abuf vin;               /* (max(D, F, Hq·hd)) the row a gemv reads */
	abuf vout;              /* (max((Hq+2KV)·hd, 2F, V)) the row a gemv writes */
};

static void abuf_grow(abuf *b, size_t n)
{
	free(b->raw);
	b->raw = xmalloc(n * sizeof(float) + 64);
	b->p = (float *)(((uintptr_t)b->raw + 63) & ~(uintptr_t)63);
}

/* ---- load ---------------------------------------------------------------------------------- */

/* Convert tensor t (numel elements expected) into dst (fp32). */
static int convert(const st_tensor *t, const char *what, uint64_t numel, float *dst, qerr *e)
{
	if (!t || !t->data)
		return qerr_set(e, QERR_INVALID, "text_cpu: tensor %s has no data", what);
	if (t->numel != numel)
		return qerr_set(e, QERR_INVALID, "text_cpu: tensor %s has %llu elements, want %llu",
				what, (unsigned long long)t->numel, (unsigned long long)numel);
	switch (t->dtype) {
	case ST_F32:
		memcpy(dst, t->data, numel * sizeof(float));
		return 0;
	case ST_BF16: {
		const uint16_t *s = t->data;
		for (uint64_t i = 0; i < numel; i++)
			dst[i] = bf16_to_f32(s[i]);
		return 0;
	}
	case ST_F16: {
		const uint16_t *s = t->data;
		for (uint64_t i = 0; i < numel; i++)
			dst[i] = f16_to_f32(s[i]);
		return 0;
	}
	}
	return qerr_set(e, QERR_UNSUPPORTED, "text_cpu: tensor %s has an unsupported dtype", what);
}

static float *convert_new(const st_tensor *t, const char *what, uint64_t numel, int *rc, qerr *e)
{
	float *p = xmalloc(numel * sizeof(float));
	if (*rc == 0)
		*rc = convert(t, what, numel, p, e);
	return p;
}

static void build_rope(text_cpu *t, const model_config *mc)
{
	const int half = t->hd / 2;
	const float base = (float)mc->text.rope_theta;
	t->inv_freq = xmalloc((size_t)half * sizeof(float));
	t->axis = xmalloc((size_t)half);
	for (int j = 0; j < half; j++) {
		/* transformers: 1 / base ** (arange(0, hd, 2).float() / hd), all fp32 */
		t->inv_freq[j] = 1.0f / powf(base, (float)(2 * j) / (float)t->hd);
		uint8_t a = 0;
		if (mc->text.mrope) {
			if (j % 3 == 1 && j < 3 * mc->text.mrope_section[1])
				a = 1;
			else if (j % 3 == 2 && j < 3 * mc->text.mrope_section[2])
				a = 2;
		}
		t->axis[j] = a;
	}
}

int text_cpu_new(const model_config *mc, const model_weights *w, int block_size, int n_blocks,
		 int n_threads, text_cpu **out, qerr *e)
{
	*out = NULL;
	if (block_size <= 0 || n_blocks <= 0)
		return qerr_set(e, QERR_INVALID, "text_cpu: block_size %d and n_blocks %d must be positive",
				block_size, n_blocks);
	if (!w->embed_tokens || !w->lm_head || !w->norm || w->n_layers != mc->text.num_hidden_layers)
		return qerr_set(e, QERR_INVALID, "text_cpu: weights are not bound for this config");
	const text_config *tc = &mc->text;
	if (tc->num_key_value_heads <= 0 || tc->num_attention_heads % tc->num_key_value_heads ||
	    tc->head_dim % 2)
		return qerr_set(e, QERR_INVALID, "text_cpu: %d heads, %d kv heads, head_dim %d",
				tc->num_attention_heads, tc->num_key_value_heads, tc->head_dim);
	text_cpu *t = xcalloc(1, sizeof(*t));
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
	t->bs = block_size;
	t->n_blocks = n_blocks;
	t->kvd = (size_t)t->KV * (size_t)t->hd;

	size_t pool_n;
	if (!size_mul((size_t)n_blocks, (size_t)t->L * 2 * (size_t)block_size, &pool_n) ||
	    !size_mul(pool_n, t->kvd, &pool_n) || pool_n > SIZE_MAX / sizeof(float) ||
	    (uint64_t)n_blocks * (uint64_t)block_size > INT_MAX) {
		free(t);
		return qerr_set(e, QERR_LIMIT, "text_cpu: a pool of %d blocks of %d positions is too large",
				n_blocks, block_size);
	}

	const uint64_t D = (uint64_t)t->D, F = (uint64_t)t->F, hd = (uint64_t)t->hd;
	const uint64_t qd = (uint64_t)t->Hq * hd, kd = t->kvd;
	int rc = 0;
	t->embed = convert_new(w->embed_tokens, "embed_tokens", (uint64_t)t->V * D, &rc, e);
	if (w->lm_head == w->embed_tokens)
		t->lm_head = t->embed;
	else
		t->lm_head = convert_new(w->lm_head, "lm_head", (uint64_t)t->V * D, &rc, e);
	t->norm = convert_new(w->norm, "norm", D, &rc, e);
	t->layers = xcalloc((size_t)t->L, sizeof(layer32));
	for (int l = 0; l < t->L; l++) {
		const text_layer_weights *s = &w->layers[l];
		layer32 *d = &t->layers[l];
		d->in_norm = convert_new(s->input_layernorm, "input_layernorm", D, &rc, e);
		d->wqkv = xmalloc((qd + 2 * kd) * D * sizeof(float));
		if (rc == 0)
			rc = convert(s->q_proj, "q_proj", qd * D, d->wqkv, e);
		if (rc == 0)
			rc = convert(s->k_proj, "k_proj", kd * D, d->wqkv + qd * D, e);
		if (rc == 0)
			rc = convert(s->v_proj, "v_proj", kd * D, d->wqkv + (qd + kd) * D, e);
		d->q_norm = convert_new(s->q_norm, "q_norm", hd, &rc, e);
		d->k_norm = convert_new(s->k_norm, "k_norm", hd, &rc, e);
		d->wo = convert_new(s->o_proj, "o_proj", D * qd, &rc, e);
		d->post_norm = convert_new(s->post_attention_layernorm, "post_attention_layernorm", D,
					   &rc, e);
		d->wgu = xmalloc(2 * F * D * sizeof(float));
		if (rc == 0)
			rc = convert(s->gate_proj, "gate_proj", F * D, d->wgu, e);
		if (rc == 0)
			rc = convert(s->up_proj, "up_proj", F * D, d->wgu + F * D, e);
		d->wd = convert_new(s->down_proj, "down_proj", D * F, &rc, e);
	}
	if (rc) {
		text_cpu_free(t);
		return rc;
	}
	build_rope(t, mc);
	t->pool = xcalloc(pool_n, sizeof(float));
	if (n_threads > 0)
		openblas_set_num_threads(n_threads);
	/* OpenBLAS's DYNAMIC_ARCH falls back to its SSE3 "Prescott" kernels on CPUs it does not
	 * recognise (some VMs): 3-4x slower prefill. OPENBLAS_CORETYPE must be set before the
	 * library loads, so all we can do here is say so. */
	const char *core = openblas_get_corename();
	if (core && !strcasecmp(core, "prescott") && __builtin_cpu_supports("avx2"))
		log_msg(LOG_LEVEL_WARN, "text_cpu", "OpenBLAS uses its generic %s kernels on an AVX2 CPU; "
			"set OPENBLAS_CORETYPE=Haswell (or SkylakeX with AVX-512) for 3-4x faster prefill",
			core);
	*out = t;
	return 0;
}

void text_cpu_free(text_cpu *t)
{
	if (!t)
		return;
	if (t->lm_head != t->embed)
		free(t->lm_head);
	free(t->embed);
	free(t->norm);
	for (int l = 0; t->layers && l < t->L; l++) {
		layer32 *d = &t->layers[l];
		free(d->in_norm);
		free(d->wqkv);
		free(d->q_norm);
		free(d->k_norm);
		free(d->wo);
		free(d->post_norm);
		free(d->wgu);
		free(d->wd);
	}
	free(t->layers);
	free(t->inv_freq);
	free(t->axis);
	free(t->pool);
	free(t->x);
	free(t->h);
	free(t->qkv);
	free(t->att);
	free(t->gu);
	free(t->act);
	free(t->scores.raw);
	free(t->kbuf.raw);
	free(t->vbuf.raw);
	free(t->hl);
	free(t->vin.raw);
	free(t->vout.raw);
	free(t);
}

void text_cpu_set_batch_invariant(text_cpu *t, bool on)
{
	t->batch_invariant = on;
	if (!on || t->vin.raw)
		return;
	size_t in = (size_t)t->D, out = (size_t)t->V;
	if ((size_t)t->F > in)
		in = (size_t)t->F;
	if ((size_t)t->Hq * (size_t)t->hd > in)
		in = (size_t)t->Hq * (size_t)t->hd;
	if ((size_t)(t->Hq + 2 * t->KV) * (size_t)t->hd > out)
		out = (size_t)(t->Hq + 2 * t->KV) * (size_t)t->hd;
	if (2 * (size_t)t->F > out)
		out = 2 * (size_t)t->F;
	abuf_grow(&t->vin, in);
	abuf_grow(&t->vout, out);
}

/* ---- math ---------------------------------------------------------------------------------- */

/* out (n) = w ⊙ x · rsqrt(mean(x²) + eps); out may be x. */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	double ss = 0.0;
	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	float r = (float)(1.0 / sqrt(ss / n + (double)eps));
	for (int i = 0; i < n; i++)
		out[i] = w[i] * (x[i] * r);
}

/* C (M, N) = A (M, K) · B (N, K)ᵀ + beta · C, all row-major. M == 1 goes through gemv, which
 * OpenBLAS streams B for without packing it (decode is bound by reading the weights). */
static void matmul_bt(float *C, const float *A, const float *B, int M, int N, int K, float beta)
{
	if (M == 1)
		cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, B, K, A, 1, beta, C, 1);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, beta,
			    C, N);
}

/* C (M, N) = A (M, K) · B (N, K)ᵀ, plus C when accumulate. Off: matmul_bt over all M rows at
 * once. Batch-invariant: one sgemv per row, through the fixed scratch rows vin → vout, so row
 * i's bits depend on row i and B only (B's shape and address are the same in every step). */
static void project(text_cpu *t, float *C, const float *A, const float *B, int M, int N, int K,
		    bool accumulate)
{
	if (!t->batch_invariant) {
		matmul_bt(C, A, B, M, N, K, accumulate ? 1.0f : 0.0f);
		return;
	}
	float *in = t->vin.p, *out = t->vout.p;
	for (int i = 0; i < M; i++) {
		float *c = C + (size_t)i * N;
		memcpy(in, A + (size_t)i * K, (size_t)K * sizeof(float));
		cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, B, K, in, 1, 0.0f, out, 1);
		if (accumulate)
			for (int j = 0; j < N; j++)
				c[j] += out[j];
		else
			memcpy(c, out, (size_t)N * sizeof(float));
	}
}

/* Rotate pairs (j, j+half) of each of n_heads heads of v (n_heads, hd) by cos/sin (half). */
static void rope_apply(float *v, int n_heads, int hd, const float *c, const float *s)
{
	const int half = hd / 2;
	for (int h = 0; h < n_heads; h++) {
		float *p = v + (size_t)h * hd;
		for (int j = 0; j < half; j++) {
			float a = p[j], b = p[j + half];
			p[j] = a * c[j] - b * s[j];
			p[j + half] = b * c[j] + a * s[j];
		}
	}
}

static inline float *kv_at(const text_cpu *t, int32_t block, int layer, int which, int slot)
{
	size_t off = (((size_t)block * (size_t)t->L + (size_t)layer) * 2 + (size_t)which) *
		     (size_t)t->bs + (size_t)slot;
	return t->pool + off * t->kvd;
}

/* ---- step ---------------------------------------------------------------------------------- */

static void grow(float **p, size_t n)
{
	free(*p);
	*p = xmalloc(n * sizeof(float));
}

static int check_seq(const text_cpu *t, const backend_seq *s, int si, qerr *e)
{
	const backend_seq_limits lim = { .who = "text_cpu", .vocab = t->V, .n_blocks = t->n_blocks,
					 .block_size = t->bs, .max_positions = t->n_blocks * t->bs,
					 .max_what = "the pool", .has_vision = t->has_vision };
	return backend_check_seq(s, si, &lim, e);
}

/* Rope the q and k heads of one token's qkv row in place, normalising each head first. */
static void qk_norm_rope(const text_cpu *t, const layer32 *lw, float *row, const int32_t *pos3,
			 float *cs)
{
	const int half = t->hd / 2;
	float *c = cs, *s = cs + half;
	for (int j = 0; j < half; j++) {
		float th = (float)pos3[t->axis[j]] * t->inv_freq[j];
		c[j] = (float)cos((double)th);
		s[j] = (float)sin((double)th);
	}
	float *q = row, *k = row + (size_t)t->Hq * t->hd;
	for (int h = 0; h < t->Hq; h++)
		rmsnorm(q + (size_t)h * t->hd, q + (size_t)h * t->hd, lw->q_norm, t->hd, t->eps);
	for (int h = 0; h < t->KV; h++)
		rmsnorm(k + (size_t)h * t->hd, k + (size_t)h * t->hd, lw->k_norm, t->hd, t->eps);
	rope_apply(q, t->Hq, t->hd, c, s);
	rope_apply(k, t->KV, t->hd, c, s);
}

/* K and V of kv head kvh for positions 0..n_all-1 of sequence s in layer l, gathered from the
 * blocks into kbuf and vbuf as (n_all, hd) rows. */
static void gather_kv(text_cpu *t, const backend_seq *s, int l, int kvh, int n_all)
{
	const int hd = t->hd;
	for (int p = 0; p < n_all; p++) {
		int32_t blk = s->block_table[p / t->bs];
		memcpy(t->kbuf.p + (size_t)p * hd, kv_at(t, blk, l, 0, p % t->bs) + (size_t)kvh * hd,
		       (size_t)hd * sizeof(float));
		memcpy(t->vbuf.p + (size_t)p * hd, kv_at(t, blk, l, 1, p % t->bs) + (size_t)kvh * hd,
		       (size_t)hd * sizeof(float));
	}
}

/* row[0..valid) ← softmax(row[0..valid)): max subtracted, expf in fp32, the sum in double. */
static void softmax_row(float *row, int valid)
{
	float mx = -INFINITY;
	for (int p = 0; p < valid; p++)
		if (row[p] > mx)
			mx = row[p];
	double sum = 0.0;
	for (int p = 0; p < valid; p++) {
		row[p] = expf(row[p] - mx);
		sum += row[p];
	}
	const float inv = (float)(1.0 / sum);
	for (int p = 0; p < valid; p++)
		row[p] *= inv;
}

/* Attention of sequence s's new tokens (rows r0.. of qkv/att) in layer l; their K/V are in the
 * pool already. Per kv head, K and V of the whole context are gathered from the blocks into
 * (n_ctx, hd) rows, so that scores and outputs are two sgemm per query head and tile of
 * ATT_TILE query rows: S (m, ctx) = Q·Kᵀ·scale, causal softmax by rows, O (m, hd) = S·V. A
 * tile only looks at the context its last row can see. */
static void attend(text_cpu *t, const backend_seq *s, int l, size_t r0)
{
	const int hd = t->hd, group = t->Hq / t->KV, n_new = s->n_new;
	const int n_all = s->n_cached + n_new;
	const size_t qkvw = (size_t)(t->Hq + 2 * t->KV) * hd, attw = (size_t)t->Hq * hd;
	for (int kvh = 0; kvh < t->KV; kvh++) {
		gather_kv(t, s, l, kvh, n_all);
		for (int h = kvh * group; h < (kvh + 1) * group; h++) {
			for (int i0 = 0; i0 < n_new; i0 += ATT_TILE) {
				const int m = n_new - i0 < ATT_TILE ? n_new - i0 : ATT_TILE;
				const int ctx = s->n_cached + i0 + m;
				const float *q = t->qkv + (r0 + (size_t)i0) * qkvw + (size_t)h * hd;
				float *o = t->att + (r0 + (size_t)i0) * attw + (size_t)h * hd;
				float *sc = t->scores.p;
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, ctx, hd, t->scale, q,
					    (int)qkvw, t->kbuf.p, hd, 0.0f, sc, ctx);
				for (int i = 0; i < m; i++) {
					float *row = sc + (size_t)i * ctx;
					const int valid = s->n_cached + i0 + i + 1;
					softmax_row(row, valid);
					for (int p = valid; p < ctx; p++)
						row[p] = 0.0f;
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, ctx, 1.0f, sc, ctx,
					    t->vbuf.p, hd, 0.0f, o, (int)attw);
			}
		}
	}
}

/* attend in batch-invariant mode: one query row at a time over exactly the context it sees
 * (ctx = n_cached + i + 1), scores and output each one sgemv (top of file), so every shape is
 * a function of the row's position alone — not of the chunk it came in or the rows beside it.
 * q goes through vin and o through vout so that the kernels see the same addresses. */
static void attend_rows(text_cpu *t, const backend_seq *s, int l, size_t r0)
{
	const int hd = t->hd, group = t->Hq / t->KV, n_new = s->n_new;
	const size_t qkvw = (size_t)(t->Hq + 2 * t->KV) * hd, attw = (size_t)t->Hq * hd;
	float *qv = t->vin.p, *ov = t->vout.p, *sc = t->scores.p;
	for (int kvh = 0; kvh < t->KV; kvh++) {
		gather_kv(t, s, l, kvh, s->n_cached + n_new);
		for (int h = kvh * group; h < (kvh + 1) * group; h++) {
			for (int i = 0; i < n_new; i++) {
				const int ctx = s->n_cached + i + 1;
				memcpy(qv, t->qkv + (r0 + (size_t)i) * qkvw + (size_t)h * hd,
				       (size_t)hd * sizeof(float));
				cblas_sgemv(CblasRowMajor, CblasNoTrans, ctx, hd, t->scale, t->kbuf.p, hd, qv,
					    1, 0.0f, sc, 1);
				softmax_row(sc, ctx);
				cblas_sgemv(CblasRowMajor, CblasTrans, ctx, hd, 1.0f, t->vbuf.p, hd, sc, 1,
					    0.0f, ov, 1);
				memcpy(t->att + (r0 + (size_t)i) * attw + (size_t)h * hd, ov,
				       (size_t)hd * sizeof(float));
			}
		}
	}
}

int text_cpu_step(text_cpu *t, const backend_seq *seqs, int n_seqs, float *logits, qerr *e)
{
	if (n_seqs < 1 || !seqs)
		return qerr_set(e, QERR_INVALID, "text_cpu: %d sequences in a step", n_seqs);
	size_t T = 0, NL = 0, max_ctx = 0;
	for (int si = 0; si < n_seqs; si++) {
		int rc = check_seq(t, &seqs[si], si, e);
		if (rc)
			return rc;
		T += (size_t)seqs[si].n_new;
		NL += (size_t)seqs[si].n_logits;
		size_t ctx = (size_t)seqs[si].n_cached + (size_t)seqs[si].n_new;
		if (ctx > max_ctx)
			max_ctx = ctx;
	}
	if (NL > 0 && !logits)
		return qerr_set(e, QERR_INVALID, "text_cpu: %zu logit rows asked for but logits is NULL",
				NL);
	if (T > (size_t)INT_MAX / 4)
		return qerr_set(e, QERR_LIMIT, "text_cpu: %zu tokens in one step", T);

	const int D = t->D, hd = t->hd, F = t->F;
	const size_t qkvw = (size_t)(t->Hq + 2 * t->KV) * hd, attw = (size_t)t->Hq * hd;
	if (T > t->cap_t) {
		grow(&t->x, T * (size_t)D);
		grow(&t->h, T * (size_t)D);
		grow(&t->qkv, T * qkvw);
		grow(&t->att, T * attw);
		grow(&t->gu, T * 2 * (size_t)F);
		grow(&t->act, T * (size_t)F);
		t->cap_t = T;
	}
	if (max_ctx > t->cap_ctx) {
		abuf_grow(&t->scores, ATT_TILE * max_ctx);
		abuf_grow(&t->kbuf, max_ctx * (size_t)hd);
		abuf_grow(&t->vbuf, max_ctx * (size_t)hd);
		t->cap_ctx = max_ctx;
	}
	if (NL > t->cap_l) {
		grow(&t->hl, NL * (size_t)D);
		t->cap_l = NL;
	}

	/* Embeddings: token row, or the vision row 0 at image positions. */
	size_t r = 0;
	for (int si = 0; si < n_seqs; si++) {
		const backend_seq *s = &seqs[si];
		for (int i = 0; i < s->n_new; i++, r++) {
			const float *src = s->vis && s->vis[i] ? s->vis[i] :
					   t->embed + (size_t)s->ids[i] * D;
			memcpy(t->x + r * D, src, (size_t)D * sizeof(float));
		}
	}

	float *cs = xmalloc((size_t)hd * sizeof(float));   /* cos, sin of one token (hd/2 each) */

	const int Ti = (int)T;
	for (int l = 0; l < t->L; l++) {
		const layer32 *lw = &t->layers[l];
		for (size_t i = 0; i < T; i++)
			rmsnorm(t->h + i * D, t->x + i * D, lw->in_norm, D, t->eps);
		project(t, t->qkv, t->h, lw->wqkv, Ti, (int)qkvw, D, false);
		/* q/k norm + rope, and K/V into the pool, for every sequence before any attention. */
		r = 0;
		for (int si = 0; si < n_seqs; si++) {
			const backend_seq *s = &seqs[si];
			for (int i = 0; i < s->n_new; i++, r++) {
				int32_t p3[3];
				for (int a = 0; a < 3; a++)
					p3[a] = s->pos[(size_t)a * (size_t)s->n_new + (size_t)i];
				float *row = t->qkv + r * qkvw;
				qk_norm_rope(t, lw, row, p3, cs);
				int p = s->n_cached + i;
				int32_t blk = s->block_table[p / t->bs];
				memcpy(kv_at(t, blk, l, 0, p % t->bs), row + attw, t->kvd * sizeof(float));
				memcpy(kv_at(t, blk, l, 1, p % t->bs), row + attw + t->kvd,
				       t->kvd * sizeof(float));
			}
		}
		r = 0;
		for (int si = 0; si < n_seqs; si++) {
			if (t->batch_invariant)
				attend_rows(t, &seqs[si], l, r);
			else
				attend(t, &seqs[si], l, r);
			r += (size_t)seqs[si].n_new;
		}
		project(t, t->x, t->att, lw->wo, Ti, D, (int)attw, true);

		for (size_t i = 0; i < T; i++)
			rmsnorm(t->h + i * D, t->x + i * D, lw->post_norm, D, t->eps);
		project(t, t->gu, t->h, lw->wgu, Ti, 2 * F, D, false);
		for (size_t i = 0; i < T; i++) {
			const float *g = t->gu + i * 2 * F, *u = g + F;
			float *a = t->act + i * F;
			for (int c = 0; c < F; c++)
				a[c] = g[c] / (1.0f + expf(-g[c])) * u[c];
		}
		project(t, t->x, t->act, lw->wd, Ti, D, F, true);

		/* DeepStack: after layer l < n_ds, vision positions get their row 1 + l. */
		if (l < t->n_ds) {
			r = 0;
			for (int si = 0; si < n_seqs; si++) {
				const backend_seq *s = &seqs[si];
				for (int i = 0; i < s->n_new; i++, r++) {
					if (!s->vis || !s->vis[i])
						continue;
					const float *ds = s->vis[i] + (size_t)(1 + l) * D;
					float *x = t->x + r * D;
					for (int c = 0; c < D; c++)
						x[c] += ds[c];
				}
			}
		}
	}
	free(cs);

	/* Final norm on the rows that want logits only, then the LM head. */
	if (NL == 0)
		return 0;
	size_t k = 0;
	r = 0;
	for (int si = 0; si < n_seqs; si++) {
		const backend_seq *s = &seqs[si];
		for (int i = 0; i < s->n_logits; i++, k++)
			rmsnorm(t->hl + k * D, t->x + (r + (size_t)s->logit_rows[i]) * D, t->norm, D,
				t->eps);
		r += (size_t)s->n_new;
	}
	project(t, logits, t->hl, t->lm_head, (int)NL, t->V, D, false);
	return 0;
}
