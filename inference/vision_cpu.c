/*
 * vision_cpu: the Qwen3-VL vision tower in fp32 on the CPU (spec §5), written to match
 * transformers' Qwen3VLVisionModel run in fp32 to ~1e-5 relative.
 *
 * Why: it is the encoder of the CPU backend and the reference the CUDA kernels are checked
 * against, so it follows the PyTorch operation order wherever rounding could show (position
 * embedding weights, rotary angles) and computes the rest straightforwardly in fp32 with
 * OpenBLAS products; reductions that PyTorch does in fp32 (LayerNorm moments, softmax sums) are
 * done in double here, which is closer to the exact value than either.
 *
 * Sizes: N patches of one item (t·h·w), Dv vision width, K = C·Tp·P·P patch vector, H heads of
 * hd = Dv/H, Iv MLP width, m merge size, Dm = m²·Dv, D = out_hidden_size, n_ds deepstack taps.
 *
 *   pixel_values (N, K)   rows in merge-window order (img_preprocess.c has the diagram)
 *        │  · Wpeᵀ + bpe                                    patch embedding (Conv3d as a matmul)
 *        ▼
 *   x (N, Dv)  += pos (N, Dv)       learned 48x48 table, align-corners bilinear to h x w, then
 *        │                          repeated per temporal slice and permuted to window order
 *        ▼
 *   ┌─ block b = 0 .. depth-1 ──────────────────────────────────────────────────────────────┐
 *   │ a = LN(x; norm1)                                                     (N, Dv)          │
 *   │ qkv = a · Wqkvᵀ + bqkv                                               (N, 3Dv) q|k|v   │
 *   │ q, k rotated by the 2-D rope (patch row on the first hd/4 pairs, column on the next)  │
 *   │ o = softmax(q kᵀ / √hd) v  per head, per temporal slice (h·w rows), bidirectional     │
 *   │ x += o · Wprojᵀ + bproj                                                               │
 *   │ x += fc2(act(fc1(LN(x; norm2))))          act = vision hidden_act (gelu tanh)         │
 *   │ if b == deepstack_visual_indexes[k]:                                                  │
 *   │     out[:, 1+k] = fc2(gelu_erf(fc1(LN_Dm(view x as (N/m², Dm)))))   post-shuffle norm │
 *   └───────────────────────────────────────────────────────────────────────────────────────┘
 *        ▼
 *   out[:, 0] = fc2(gelu_erf(fc1(view LN_Dv(x) as (N/m², Dm))))            pre-shuffle norm
 *
 *   out (n_tokens, 1 + n_ds, D):  token j → [ main | ds 0 | ds 1 | … ], tokens in window order
 *
 * Because rows come in merge-window order, the m² rows of one window are consecutive and the
 * "shuffle" (view (N, Dv) as (N/m², Dm)) is free: feature k·Dv + d of a token is feature d of
 * the window's k-th patch (k = ih·m + iw).
 *
 * Ownership: vision_cpu owns its fp32 weight copies (listed in `owned`) and scratch buffers;
 * fp32 tensors of the checkpoint are borrowed from the model_weights mapping. Scratch grows to
 * the largest item seen and is reused. Precision note: the position-embedding weights are meant
 * to be rounded product by product as in PyTorch; a build that contracts a*b+c into FMA (e.g.
 * -march=native) moves them by an ulp, which is harmless.
 */
#include "vision_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bf16.h"

/* The largest item encoded at once: 2^20 patches (a 4096x4096 image is 2^16). */
#define VISION_CPU_MAX_PATCHES (1 << 20)
/* Attention scores are formed for a chunk of queries at a time: at most this many floats. */
#define VISION_CPU_SCORE_FLOATS (1 << 20)
/* Vision LayerNorms have no eps in the config: transformers hard-codes 1e-6. */
#define VISION_CPU_LN_EPS 1e-6
#define VISION_CPU_ROPE_THETA 10000.0f

typedef struct vblock {
	const float *n1w, *n1b;      /* (Dv) */
	const float *qkv_w, *qkv_b;  /* (3Dv, Dv), (3Dv) */
	const float *proj_w, *proj_b;/* (Dv, Dv), (Dv) */
	const float *n2w, *n2b;      /* (Dv) */
	const float *fc1_w, *fc1_b;  /* (Iv, Dv), (Iv) */
	const float *fc2_w, *fc2_b;  /* (Dv, Iv), (Dv) */
} vblock;

typedef struct vmerger {
	const float *nw, *nb;        /* (Dv) main, (Dm) deepstack */
	const float *fc1_w, *fc1_b;  /* (Dm, Dm), (Dm) */
	const float *fc2_w, *fc2_b;  /* (D, Dm), (D) */
} vmerger;

struct vision_cpu {
	vision_dims dm;
	model_act act;
	const float *pe_w, *pe_b;    /* (Dv, K), (Dv) */
	const float *pos;            /* (side², Dv) */
	vblock *blk;                 /* owned, depth */
	vmerger main;
	vmerger ds[MODEL_MAX_DEEPSTACK];
	float **owned;               /* owned: converted weights */
	size_t n_owned, cap_owned;
	/* scratch (owned), sized for cap_n patches and cap_s score floats */
	size_t cap_n, cap_s;
	float *x, *a, *qkv, *o, *hbuf, *g, *cosb, *sinb, *sc;
};

/* ---- weights ---------------------------------------------------------------------------- */

/* An fp32 view of t (numel elements expected): borrowed when already fp32 and aligned, else a
 * converted copy that v owns. */
static const float *weight_f32(vision_cpu *v, const st_tensor *t, uint64_t numel, const char *what,
			       qerr *e)
{
	if (!t || !t->data) {
		qerr_set(e, QERR_MISSING, "vision tower: tensor %s is not bound", what);
		return NULL;
	}
	if (t->numel != numel) {
		qerr_set(e, QERR_INVALID, "vision tower: %s has %llu elements, expected %llu",
			 t->name, (unsigned long long)t->numel, (unsigned long long)numel);
		return NULL;
	}
	if (t->dtype == ST_F32 && ((uintptr_t)t->data & 3u) == 0)
		return t->data;
	size_t bytes;
	if (!size_mul((size_t)numel, sizeof(float), &bytes)) {
		qerr_set(e, QERR_LIMIT, "vision tower: %s is too large", t->name);
		return NULL;
	}
	float *f = xmalloc(bytes ? bytes : 1);
	const uint8_t *src = t->data;
	for (uint64_t i = 0; i < numel; i++) {
		uint16_t h;
		switch (t->dtype) {
		case ST_BF16:
			memcpy(&h, src + 2 * i, 2);
			f[i] = bf16_to_f32(h);
			break;
		case ST_F16:
			memcpy(&h, src + 2 * i, 2);
			f[i] = f16_to_f32(h);
			break;
		default:
			memcpy(&f[i], src + 4 * i, 4);
			break;
		}
	}
	if (v->n_owned == v->cap_owned) {
		v->cap_owned = v->cap_owned ? 2 * v->cap_owned : 64;
		v->owned = xrealloc(v->owned, v->cap_owned * sizeof(*v->owned));
	}
	v->owned[v->n_owned++] = f;
	return f;
}

#define LOAD(dst, t, n, what)                                                                 \
	do {                                                                                  \
		if (!((dst) = weight_f32(v, (t), (uint64_t)(n), (what), e)))                  \
			goto fail;                                                            \
	} while (0)

static int load_merger(vision_cpu *v, vmerger *m, const merger_weights *mw, int norm_dim,
		       const char *what, qerr *e)
{
	uint64_t Dm = (uint64_t)v->dm.Dm;
	LOAD(m->nw, mw->norm_w, norm_dim, what);
	LOAD(m->nb, mw->norm_b, norm_dim, what);
	LOAD(m->fc1_w, mw->fc1_w, Dm * Dm, what);
	LOAD(m->fc1_b, mw->fc1_b, Dm, what);
	LOAD(m->fc2_w, mw->fc2_w, (uint64_t)v->dm.D * Dm, what);
	LOAD(m->fc2_b, mw->fc2_b, v->dm.D, what);
	return 0;
fail:
	return -e->code;
}

int vision_dims_of(const model_config *mc, const model_weights *w, vision_dims *d, qerr *e)
{
	memset(d, 0, sizeof(*d));
	if (!mc->has_vision)
		return qerr_set(e, QERR_INVALID, "vision tower: the model has no vision_config");
	const vision_config *vc = &mc->vision;
	int side = (int)lround(sqrt((double)vc->num_position_embeddings));
	if (vc->hidden_size <= 0 || vc->num_heads <= 0 || vc->hidden_size % vc->num_heads ||
	    (vc->hidden_size / vc->num_heads) % 4 || vc->depth <= 0 || vc->spatial_merge_size <= 0 ||
	    vc->intermediate_size <= 0 || vc->out_hidden_size <= 0 || vc->patch_size <= 0 ||
	    vc->temporal_patch_size <= 0 || vc->in_channels <= 0 || side < 1 ||
	    side * side != vc->num_position_embeddings || vc->n_deepstack < 0 ||
	    vc->n_deepstack > MODEL_MAX_DEEPSTACK)
		return qerr_set(e, QERR_INVALID, "vision tower: inconsistent vision_config");
	if (w->n_blocks != vc->depth || w->n_deepstack != vc->n_deepstack || !w->blocks)
		return qerr_set(e, QERR_MISSING, "vision tower: weights have %d blocks and %d "
				"deepstack mergers, the config %d and %d", w->n_blocks,
				w->n_deepstack, vc->depth, vc->n_deepstack);
	d->Dv = vc->hidden_size;
	d->Iv = vc->intermediate_size;
	d->H = vc->num_heads;
	d->hd = d->Dv / d->H;
	d->depth = vc->depth;
	d->K = vc->in_channels * vc->temporal_patch_size * vc->patch_size * vc->patch_size;
	d->merge = vc->spatial_merge_size;
	d->side = side;
	d->Dm = d->Dv * d->merge * d->merge;
	d->D = vc->out_hidden_size;
	d->n_ds = vc->n_deepstack;
	for (int k = 0; k < d->n_ds; k++) {
		d->ds_idx[k] = vc->deepstack_visual_indexes[k];
		if (d->ds_idx[k] < 0 || d->ds_idx[k] >= d->depth)
			return qerr_set(e, QERR_INVALID, "vision tower: deepstack index %d beyond depth %d",
					d->ds_idx[k], d->depth);
	}
	return 0;
}

int vision_cpu_new(const model_config *mc, const model_weights *w, int n_threads, vision_cpu **out,
		   qerr *e)
{
	qerr local = {0};
	if (!e)
		e = &local;
	*out = NULL;
	vision_dims dm;
	int rc = vision_dims_of(mc, w, &dm, e);
	if (rc)
		return rc;
	vision_cpu *v = xcalloc(1, sizeof(*v));
	v->dm = dm;
	v->act = mc->vision.hidden_act;
	const int side = dm.side;
	uint64_t Dv = (uint64_t)v->dm.Dv, Iv = (uint64_t)v->dm.Iv;
	LOAD(v->pe_w, w->patch_embed_w, Dv * (uint64_t)v->dm.K, "patch_embed.proj.weight");
	LOAD(v->pe_b, w->patch_embed_b, Dv, "patch_embed.proj.bias");
	LOAD(v->pos, w->pos_embed, (uint64_t)side * side * Dv, "pos_embed.weight");
	v->blk = xcalloc((size_t)v->dm.depth, sizeof(*v->blk));
	for (int i = 0; i < v->dm.depth; i++) {
		const vision_block_weights *bw = &w->blocks[i];
		vblock *b = &v->blk[i];
		LOAD(b->n1w, bw->norm1_w, Dv, "blocks.norm1.weight");
		LOAD(b->n1b, bw->norm1_b, Dv, "blocks.norm1.bias");
		LOAD(b->qkv_w, bw->qkv_w, 3 * Dv * Dv, "blocks.attn.qkv.weight");
		LOAD(b->qkv_b, bw->qkv_b, 3 * Dv, "blocks.attn.qkv.bias");
		LOAD(b->proj_w, bw->proj_w, Dv * Dv, "blocks.attn.proj.weight");
		LOAD(b->proj_b, bw->proj_b, Dv, "blocks.attn.proj.bias");
		LOAD(b->n2w, bw->norm2_w, Dv, "blocks.norm2.weight");
		LOAD(b->n2b, bw->norm2_b, Dv, "blocks.norm2.bias");
		LOAD(b->fc1_w, bw->fc1_w, Iv * Dv, "blocks.mlp.linear_fc1.weight");
		LOAD(b->fc1_b, bw->fc1_b, Iv, "blocks.mlp.linear_fc1.bias");
		LOAD(b->fc2_w, bw->fc2_w, Dv * Iv, "blocks.mlp.linear_fc2.weight");
		LOAD(b->fc2_b, bw->fc2_b, Dv, "blocks.mlp.linear_fc2.bias");
	}
	if (load_merger(v, &v->main, &w->merger, v->dm.Dv, "merger", e) < 0)
		goto fail;
	for (int k = 0; k < v->dm.n_ds; k++)
		if (load_merger(v, &v->ds[k], &w->deepstack[k], v->dm.Dm, "deepstack_merger_list", e) < 0)
			goto fail;
	if (n_threads > 0)
		openblas_set_num_threads(n_threads);
	*out = v;
	return 0;
fail:
	vision_cpu_free(v);
	return -e->code;
}

#undef LOAD

void vision_cpu_free(vision_cpu *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n_owned; i++)
		free(v->owned[i]);
	free(v->owned);
	free(v->blk);
	free(v->x);
	free(v->a);
	free(v->qkv);
	free(v->o);
	free(v->hbuf);
	free(v->g);
	free(v->cosb);
	free(v->sinb);
	free(v->sc);
	free(v);
}

/* ---- tables ----------------------------------------------------------------------------- */

/* torch.linspace(a, b, n) in fp32 on the CPU: the two-sided formula of its scalar kernel. */
static void linspace_f32(float a, float b, int n, float *out)
{
	if (n == 1) {
		out[0] = a;
		return;
	}
	float step = (b - a) / (float)(n - 1);
	int half = n / 2;
	for (int i = 0; i < n; i++)
		out[i] = i < half ? a + step * (float)i : b - step * (float)(n - 1 - i);
}

void vision_cpu_pos_embed(const float *table, int side, int dv, int merge, int grid_t, int grid_h,
			  int grid_w, float *out)
{
	float *hi = xmalloc((size_t)grid_h * sizeof(float));
	float *wi = xmalloc((size_t)grid_w * sizeof(float));
	linspace_f32(0.0f, (float)(side - 1), grid_h, hi);
	linspace_f32(0.0f, (float)(side - 1), grid_w, wi);
	size_t n = 0;
	for (int t = 0; t < grid_t; t++)
		for (int bh = 0; bh < grid_h / merge; bh++)
			for (int bw = 0; bw < grid_w / merge; bw++)
				for (int ih = 0; ih < merge; ih++)
					for (int iw = 0; iw < merge; iw++, n++) {
		int r = bh * merge + ih, c = bw * merge + iw;
		int h0 = (int)hi[r], w0 = (int)wi[c];       /* .int(): truncation */
		int h1 = h0 + 1 < side ? h0 + 1 : side - 1;
		int w1 = w0 + 1 < side ? w0 + 1 : side - 1;
		float dh = hi[r] - (float)h0, dw = wi[c] - (float)w0;
		/* weights and terms rounded one by one, summed in this order (spec §5.2) */
		float w00 = (1.0f - dh) * (1.0f - dw), w01 = (1.0f - dh) * dw;
		float w10 = dh * (1.0f - dw), w11 = dh * dw;
		const float *p00 = table + ((size_t)h0 * side + w0) * dv;
		const float *p01 = table + ((size_t)h0 * side + w1) * dv;
		const float *p10 = table + ((size_t)h1 * side + w0) * dv;
		const float *p11 = table + ((size_t)h1 * side + w1) * dv;
		float *o = out + n * dv;
		for (int d = 0; d < dv; d++) {
			float t0 = p00[d] * w00, t1 = p01[d] * w01;
			float t2 = p10[d] * w10, t3 = p11[d] * w11;
			o[d] = ((t0 + t1) + t2) + t3;
		}
	}
	free(hi);
	free(wi);
}

void vision_cpu_rope_tables(int head_dim, int merge, int grid_t, int grid_h, int grid_w,
			    float *cos_out, float *sin_out)
{
	int half = head_dim / 2, q = head_dim / 4;
	float *f = xmalloc((size_t)(q > 0 ? q : 1) * sizeof(float));
	/* transformers: inv_freq = 1 / theta^(arange(0, dim, 2) / dim), dim = head_dim/2, fp32 */
	for (int k = 0; k < q; k++)
		f[k] = 1.0f / powf(VISION_CPU_ROPE_THETA, (float)(2 * k) / (float)half);
	size_t n = 0;
	for (int t = 0; t < grid_t; t++)
		for (int bh = 0; bh < grid_h / merge; bh++)
			for (int bw = 0; bw < grid_w / merge; bw++)
				for (int ih = 0; ih < merge; ih++)
					for (int iw = 0; iw < merge; iw++, n++) {
		float row = (float)(bh * merge + ih), col = (float)(bw * merge + iw);
		float *co = cos_out + n * half, *si = sin_out + n * half;
		for (int i = 0; i < half; i++) {
			float th = i < q ? row * f[i] : col * f[i - q];   /* fp32 product, as torch.outer */
			co[i] = (float)cos((double)th);
			si[i] = (float)sin((double)th);
		}
	}
	free(f);
}

/* ---- ops -------------------------------------------------------------------------------- */

/* y (n, out) with row stride ldy = x (n, in) · Wᵀ + b, W (out, in). */
static void linear(const float *x, int n, int in, const float *W, const float *b, int out,
		   float *y, int ldy)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, 0.0f,
		    y, ldy);
	for (int i = 0; i < n; i++) {
		float *r = y + (size_t)i * ldy;
		for (int j = 0; j < out; j++)
			r[j] += b[j];
	}
}

/* LayerNorm over rows of d (biased variance, eps 1e-6); moments in double. */
static void layer_norm(const float *x, int n, int d, const float *w, const float *b, float *y)
{
	for (int i = 0; i < n; i++) {
		const float *r = x + (size_t)i * d;
		float *o = y + (size_t)i * d;
		double s = 0, ss = 0;
		for (int j = 0; j < d; j++)
			s += r[j];
		double mean = s / d;
		for (int j = 0; j < d; j++) {
			double c = r[j] - mean;
			ss += c * c;
		}
		float rstd = (float)(1.0 / sqrt(ss / d + VISION_CPU_LN_EPS));
		float fm = (float)mean;
		for (int j = 0; j < d; j++)
			o[j] = (r[j] - fm) * rstd * w[j] + b[j];
	}
}

static void act_inplace(float *x, size_t n, model_act act)
{
	switch (act) {
	case MODEL_ACT_GELU_TANH: {
		/* torch's gelu(approximate='tanh'): 0.5 z (1 + tanh(u)), u = β(z + κz³). Since
		 * 1 + tanh(u) = 2 / (1 + e^(-2u)) this is z / (1 + e^(-2u)): same value to a few
		 * ulp, no cancellation, and expf is several times cheaper than glibc's tanhf. */
		const float beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
		for (size_t i = 0; i < n; i++) {
			float z = x[i];
			float u = beta * (z + kappa * (z * z * z));
			x[i] = z / (1.0f + expf(-2.0f * u));
		}
		break;
	}
	case MODEL_ACT_GELU_ERF:
		for (size_t i = 0; i < n; i++)
			x[i] = x[i] * 0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2));
		break;
	case MODEL_ACT_SILU:
		for (size_t i = 0; i < n; i++)
			x[i] = x[i] / (1.0f + expf(-x[i]));
		break;
	}
}

/* Rotate q and k of every head in qkv (N, 3Dv) by the tables (N, hd/2). */
static void rope_apply(const vision_cpu *v, float *qkv, size_t N)
{
	int hd = v->dm.hd, half = hd / 2;
	for (size_t n = 0; n < N; n++) {
		const float *co = v->cosb + n * half, *si = v->sinb + n * half;
		for (int part = 0; part < 2; part++)
			for (int h = 0; h < v->dm.H; h++) {
				float *p = qkv + n * 3 * v->dm.Dv + (size_t)part * v->dm.Dv + (size_t)h * hd;
				for (int i = 0; i < half; i++) {
					float a = p[i], b = p[i + half];
					p[i] = a * co[i] - b * si[i];
					p[i + half] = b * co[i] + a * si[i];
				}
			}
	}
}

/* s (L) = softmax(s) in place; the sum in double. Several partial maxima and sums break the
 * dependency chains that otherwise make this loop as slow as the products around it. */
static void softmax_row(float *s, int L)
{
	float m[4] = { s[0], s[0], s[0], s[0] };
	int j = 0;
	for (; j + 4 <= L; j += 4)
		for (int u = 0; u < 4; u++)
			m[u] = s[j + u] > m[u] ? s[j + u] : m[u];
	for (; j < L; j++)
		m[0] = s[j] > m[0] ? s[j] : m[0];
	float mx = fmaxf(fmaxf(m[0], m[1]), fmaxf(m[2], m[3]));
	double sum[4] = { 0, 0, 0, 0 };
	for (j = 0; j + 4 <= L; j += 4)
		for (int u = 0; u < 4; u++) {
			s[j + u] = expf(s[j + u] - mx);
			sum[u] += s[j + u];
		}
	for (; j < L; j++) {
		s[j] = expf(s[j] - mx);
		sum[0] += s[j];
	}
	float inv = (float)(1.0 / ((sum[0] + sum[1]) + (sum[2] + sum[3])));
	for (j = 0; j < L; j++)
		s[j] *= inv;
}

/* o (L, Dv) = bidirectional attention of one segment: rows [base, base+L) of qkv. */
static void attention(vision_cpu *v, size_t base, int L)
{
	int hd = v->dm.hd, ld = 3 * v->dm.Dv;
	float scale = (float)(1.0 / sqrt((double)hd));
	int chunk = (int)(VISION_CPU_SCORE_FLOATS / (size_t)L);
	if (chunk < 1)
		chunk = 1;
	if (chunk > L)
		chunk = L;
	for (int h = 0; h < v->dm.H; h++) {
		const float *k = v->qkv + base * ld + v->dm.Dv + (size_t)h * hd;
		const float *val = v->qkv + base * ld + 2 * (size_t)v->dm.Dv + (size_t)h * hd;
		for (int q0 = 0; q0 < L; q0 += chunk) {
			int cq = L - q0 < chunk ? L - q0 : chunk;
			const float *q = v->qkv + (base + q0) * ld + (size_t)h * hd;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cq, L, hd, scale, q, ld,
				    k, ld, 0.0f, v->sc, L);
			for (int i = 0; i < cq; i++)
				softmax_row(v->sc + (size_t)i * L, L);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cq, hd, L, 1.0f, v->sc,
				    L, val, ld, 0.0f, v->o + (base + q0) * v->dm.Dv + (size_t)h * hd,
				    v->dm.Dv);
		}
	}
}

/* A patch merger on x (N, Dv) → rows of out with stride ldo (N/m² rows of D). post: the
 * deepstack form (LayerNorm over Dm after grouping), else the main one (over Dv before). */
static void merger(vision_cpu *v, const vmerger *m, size_t N, bool post, float *out, int ldo)
{
	int T = (int)(N / ((size_t)v->dm.merge * v->dm.merge));
	if (post)
		layer_norm(v->x, T, v->dm.Dm, m->nw, m->nb, v->g);
	else
		layer_norm(v->x, (int)N, v->dm.Dv, m->nw, m->nb, v->g);
	linear(v->g, T, v->dm.Dm, m->fc1_w, m->fc1_b, v->dm.Dm, v->hbuf, v->dm.Dm);
	act_inplace(v->hbuf, (size_t)T * v->dm.Dm, MODEL_ACT_GELU_ERF);
	linear(v->hbuf, T, v->dm.Dm, m->fc2_w, m->fc2_b, v->dm.D, out, ldo);
}

static void scratch(vision_cpu *v, size_t N, size_t L)
{
	size_t chunk = VISION_CPU_SCORE_FLOATS / L;
	if (chunk < 1)
		chunk = 1;
	if (chunk > L)
		chunk = L;
	size_t s = chunk * L;
	if (s > v->cap_s) {
		free(v->sc);
		v->sc = xmalloc(s * sizeof(float));
		v->cap_s = s;
	}
	if (N <= v->cap_n)
		return;
	size_t Dv = (size_t)v->dm.Dv, wide = (size_t)(v->dm.Iv > v->dm.Dv ? v->dm.Iv : v->dm.Dv);
	free(v->x);
	free(v->a);
	free(v->qkv);
	free(v->o);
	free(v->hbuf);
	free(v->g);
	free(v->cosb);
	free(v->sinb);
	/* sizes fit: N ≤ 2^20 and every width is an int */
	v->x = xmalloc(N * Dv * sizeof(float));
	v->a = xmalloc(N * Dv * sizeof(float));
	v->qkv = xmalloc(N * 3 * Dv * sizeof(float));
	v->o = xmalloc(N * Dv * sizeof(float));
	v->hbuf = xmalloc(N * wide * sizeof(float));   /* MLP hidden; merger fc1 (N/m², Dm) */
	v->g = xmalloc(N * Dv * sizeof(float));
	v->cosb = xmalloc(N * (size_t)(v->dm.hd / 2) * sizeof(float));
	v->sinb = xmalloc(N * (size_t)(v->dm.hd / 2) * sizeof(float));
	v->cap_n = N;
}

/* ---- forward ---------------------------------------------------------------------------- */

int vision_cpu_encode(vision_cpu *v, const float *pixel_values, int grid_t, int grid_h, int grid_w,
		      float *out, qerr *e)
{
	if (grid_t <= 0 || grid_h <= 0 || grid_w <= 0 || grid_h % v->dm.merge || grid_w % v->dm.merge)
		return qerr_set(e, QERR_INVALID, "vision: grid (%d, %d, %d) is not positive with h, w "
				"multiples of %d", grid_t, grid_h, grid_w, v->dm.merge);
	int64_t N64 = (int64_t)grid_t * grid_h * grid_w;
	if (N64 > VISION_CPU_MAX_PATCHES)
		return qerr_set(e, QERR_LIMIT, "vision: %lld patches exceed the limit of %d",
				(long long)N64, VISION_CPU_MAX_PATCHES);
	size_t N = (size_t)N64, L = (size_t)grid_h * grid_w, Dv = (size_t)v->dm.Dv;
	scratch(v, N, L);

	/* patch embedding + position embedding */
	linear(pixel_values, (int)N, v->dm.K, v->pe_w, v->pe_b, v->dm.Dv, v->x, v->dm.Dv);
	vision_cpu_pos_embed(v->pos, v->dm.side, v->dm.Dv, v->dm.merge, grid_t, grid_h, grid_w, v->a);
	for (size_t i = 0; i < N * Dv; i++)
		v->x[i] += v->a[i];
	vision_cpu_rope_tables(v->dm.hd, v->dm.merge, grid_t, grid_h, grid_w, v->cosb, v->sinb);

	int stride = (1 + v->dm.n_ds) * v->dm.D;
	for (int b = 0; b < v->dm.depth; b++) {
		const vblock *bl = &v->blk[b];
		layer_norm(v->x, (int)N, v->dm.Dv, bl->n1w, bl->n1b, v->a);
		linear(v->a, (int)N, v->dm.Dv, bl->qkv_w, bl->qkv_b, 3 * v->dm.Dv, v->qkv, 3 * v->dm.Dv);
		rope_apply(v, v->qkv, N);
		for (int t = 0; t < grid_t; t++)
			attention(v, (size_t)t * L, (int)L);
		linear(v->o, (int)N, v->dm.Dv, bl->proj_w, bl->proj_b, v->dm.Dv, v->a, v->dm.Dv);
		for (size_t i = 0; i < N * Dv; i++)
			v->x[i] += v->a[i];
		layer_norm(v->x, (int)N, v->dm.Dv, bl->n2w, bl->n2b, v->a);
		linear(v->a, (int)N, v->dm.Dv, bl->fc1_w, bl->fc1_b, v->dm.Iv, v->hbuf, v->dm.Iv);
		act_inplace(v->hbuf, N * (size_t)v->dm.Iv, v->act);
		linear(v->hbuf, (int)N, v->dm.Iv, bl->fc2_w, bl->fc2_b, v->dm.Dv, v->a, v->dm.Dv);
		for (size_t i = 0; i < N * Dv; i++)
			v->x[i] += v->a[i];
		for (int k = 0; k < v->dm.n_ds; k++)
			if (v->dm.ds_idx[k] == b)
				merger(v, &v->ds[k], N, true, out + (size_t)(1 + k) * v->dm.D, stride);
	}
	merger(v, &v->main, N, false, out, stride);
	return 0;
}
