/*
 * vision_cuda: the Qwen3-VL vision tower on the GPU in bf16 (spec §5), following transformers'
 * Qwen3VLVisionModel run with the model in bf16 — every activation a bf16 tensor, every kernel
 * computing in fp32 and rounding its output once (gemm.h, layernorm.h, gelu.h, vision_rope.h,
 * vision_pos_embed.h, vision_attention.h say exactly how).
 *
 * Sizes: N patches of one item (t·h·w), Dv vision width, K = C·Tp·P·P, H heads of hd = Dv/H,
 * Iv MLP width, m merge size, T = N/m² tokens, Dm = m²·Dv, D = out_hidden_size, n_ds taps.
 *
 *   pixel_values (N, K) fp32 host ─ bf16 on the host (transformers casts to the conv dtype) ─▶ pix
 *   x   = pix · Wpeᵀ + bpe                                 kn_gemm_bias        (N, Dv)
 *   x  += pos-embed(t, h, w)                               kn_vision_pos_embed
 *   for each block b:
 *     a   = LN(x; norm1)                                   kn_layernorm        (N, Dv)
 *     qkv = a · Wqkvᵀ + bqkv                               kn_gemm_bias        (N, 3Dv)
 *     q, k rotated in place                                kn_vision_rope
 *     a   = attention(qkv), per temporal slice             kn_vision_attention (N, Dv)
 *     x   = a · Wprojᵀ + bproj + x                         kn_gemm_bias (residual, in place)
 *     a   = LN(x; norm2)
 *     hb  = gelu_tanh(a · W1ᵀ + b1)                        kn_gemm_bias, kn_gelu (N, Iv)
 *     x   = hb · W2ᵀ + b2 + x
 *     tap k (b == deepstack_visual_indexes[k]):
 *       a = LN_Dm(x viewed (T, Dm)); hb = gelu_erf(a·W1ᵀ + b1); ds_k = hb·W2ᵀ + b2    (T, D)
 *   main: a = LN_Dv(x); hb = gelu_erf(a viewed (T, Dm) · W1ᵀ + b1); main = hb·W2ᵀ + b2 (T, D)
 *
 * Rows are in merge-window order, so "view (N, Dv) as (T, Dm)" is free. The residual adds are
 * fused into the projections' epilogue (one rounding of Linear + residual where transformers
 * rounds twice; at most one bf16 ulp of the residual stream apart, and closer to exact).
 *
 * Scratch layout (each part 256-byte aligned), for an item of N patches:
 *
 *   [ pix (N,K) | x (N,Dv) | a (N,Dv) | qkv (N,3Dv) | hb (N,max(Iv,Dv)) | outs (1+n_ds,T,D) ]
 *
 * the last one bf16 merger outputs (or the caller's dev_out instead: the CUDA backend keeps
 * recent images' rows on the device for the prefill that reads them), downloaded at the end
 * and widened into the caller's fp32 (n_tokens, 1+n_ds, D) layout on the host.
 *
 * Measured (H100 80GB HBM3, tests/check_vision_cuda.c with QVL_VISION_BENCH=1): the 2B tower
 * on a 448x448 image (grid 1x28x28) takes 5.0-5.9 ms per encode end to end, of which ~1 ms is
 * the host rounding of the pixels to bf16 and ~1 ms the 24 attention calls; the rest is mostly
 * the cuBLASLt products (M = 784 rows is small for an H100) and the train of ~230 launches.
 *
 * Ownership: v owns its device weights (one cudaMalloc per tensor, listed in dev) and its pinned
 * host staging buffers (cudaMallocHost, grown to the largest item seen); the gemm ctx, the stream
 * and the scratch are borrowed.
 */
#include "vision_cuda.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "bf16.h"
#include "cuda_check.h"
#include "gelu.h"
#include "layernorm.h"
#include "log.h"
#include "parallel.h"
#include "vision_attention.h"
#include "vision_cpu.h"
#include "vision_pos_embed.h"
#include "vision_rope.h"

/* The largest item encoded at once, as vision_cpu: 2^20 patches. */
#define VISION_CUDA_MAX_PATCHES (1 << 20)
/* Vision LayerNorms have no eps in the config: transformers hard-codes 1e-6. */
#define VISION_CUDA_LN_EPS 1e-6f
#define VISION_CUDA_ALIGN 256

typedef struct vcblock {
	const uint16_t *n1w, *n1b;       /* (Dv) */
	const uint16_t *qkv_w, *qkv_b;   /* (3Dv, Dv), (3Dv) */
	const uint16_t *proj_w, *proj_b; /* (Dv, Dv), (Dv) */
	const uint16_t *n2w, *n2b;       /* (Dv) */
	const uint16_t *fc1_w, *fc1_b;   /* (Iv, Dv), (Iv) */
	const uint16_t *fc2_w, *fc2_b;   /* (Dv, Iv), (Dv) */
} vcblock;

typedef struct vcmerger {
	const uint16_t *nw, *nb;         /* (Dv) main, (Dm) deepstack */
	const uint16_t *fc1_w, *fc1_b;   /* (Dm, Dm), (Dm) */
	const uint16_t *fc2_w, *fc2_b;   /* (D, Dm), (D) */
} vcmerger;

struct vision_cuda {
	vision_dims dm;
	kn_gelu_mode act;
	kn_gemm_ctx *gemm;               /* borrowed */
	cudaStream_t stream;             /* borrowed */
	const uint16_t *pe_w, *pe_b;     /* device: (Dv, K), (Dv) */
	const uint16_t *pos;             /* device: (side², Dv) */
	vcblock *blk;                    /* owned, depth (device pointers inside) */
	vcmerger main;
	vcmerger ds[MODEL_MAX_DEEPSTACK];
	void **dev;                      /* owned: every device weight allocation */
	size_t n_dev, cap_dev;
	size_t wbytes;                   /* their bytes */
	uint16_t *hpix, *hout;           /* owned pinned host staging, cap_pix, cap_out elements */
	size_t cap_pix, cap_out;
	cudaEvent_t pix_read;            /* owned: recorded after the last pixel upload from hpix */
};

/* ---- weights ---------------------------------------------------------------------------- */

/* A device bf16 copy of t (numel elements expected), owned by v. */
static const uint16_t *upload(vision_cuda *v, const st_tensor *t, uint64_t numel,
			      const char *what, qerr *e)
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
	size_t bytes;
	if (!size_mul((size_t)numel, sizeof(uint16_t), &bytes)) {
		qerr_set(e, QERR_LIMIT, "vision tower: %s is too large", t->name);
		return NULL;
	}
	const void *src = t->data;
	uint16_t *conv = NULL;
	if (t->dtype != ST_BF16) {
		conv = xmalloc(bytes ? bytes : 1);
		const uint8_t *p = t->data;
		for (uint64_t i = 0; i < numel; i++) {
			uint16_t h;
			float f;
			if (t->dtype == ST_F16) {
				memcpy(&h, p + 2 * i, 2);
				f = f16_to_f32(h);
			} else {
				memcpy(&f, p + 4 * i, 4);
			}
			conv[i] = f32_to_bf16(f);
		}
		src = conv;
	}
	void *d = NULL;
	CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 2));
	CUDA_CHECK(cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice));
	v->wbytes += bytes;
	free(conv);
	if (v->n_dev == v->cap_dev) {
		v->cap_dev = v->cap_dev ? 2 * v->cap_dev : 64;
		v->dev = xrealloc(v->dev, v->cap_dev * sizeof(*v->dev));
	}
	v->dev[v->n_dev++] = d;
	return d;
}

#define LOAD(dst, t, n, what)                                                                 \
	do {                                                                                  \
		if (!((dst) = upload(v, (t), (uint64_t)(n), (what), e)))                      \
			goto fail;                                                            \
	} while (0)

static int load_merger(vision_cuda *v, vcmerger *m, const merger_weights *mw, int norm_dim,
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

int vision_cuda_new(const model_config *mc, const model_weights *w, kn_gemm_ctx *gemm,
		    cudaStream_t stream, vision_cuda **out, qerr *e)
{
	qerr local = {0};
	if (!e)
		e = &local;
	*out = NULL;
	vision_dims dm;
	int rc = vision_dims_of(mc, w, &dm, e);
	if (rc)
		return rc;
	const vision_config *vc = &mc->vision;
	if (dm.hd % 16 || dm.hd > 128)
		return qerr_set(e, QERR_UNSUPPORTED, "vision tower: head_dim %d is not supported on "
				"the GPU (16, 32, 48, 64, 80, 96, 128 are)", dm.hd);
	if (vc->hidden_act != MODEL_ACT_GELU_TANH && vc->hidden_act != MODEL_ACT_GELU_ERF)
		return qerr_set(e, QERR_UNSUPPORTED, "vision tower: the GPU blocks support GELU "
				"activations only");

	vision_cuda *v = xcalloc(1, sizeof(*v));
	v->dm = dm;
	v->act = vc->hidden_act == MODEL_ACT_GELU_TANH ? KN_GELU_TANH : KN_GELU_ERF;
	v->gemm = gemm;
	v->stream = stream;
	const int side = dm.side;
	uint64_t Dv = (uint64_t)v->dm.Dv, Iv = (uint64_t)v->dm.Iv;
	LOAD(v->pe_w, w->patch_embed_w, Dv * (uint64_t)v->dm.K, "patch_embed.proj.weight");
	LOAD(v->pe_b, w->patch_embed_b, Dv, "patch_embed.proj.bias");
	LOAD(v->pos, w->pos_embed, (uint64_t)side * side * Dv, "pos_embed.weight");
	v->blk = xcalloc((size_t)v->dm.depth, sizeof(*v->blk));
	for (int i = 0; i < v->dm.depth; i++) {
		const vision_block_weights *bw = &w->blocks[i];
		vcblock *b = &v->blk[i];
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
	CUDA_CHECK(cudaEventCreateWithFlags(&v->pix_read, cudaEventDisableTiming));
	*out = v;
	return 0;
fail:
	vision_cuda_free(v);
	return -e->code;
}

#undef LOAD

void vision_cuda_free(vision_cuda *v)
{
	if (!v)
		return;
	CUDA_CHECK(cudaStreamSynchronize(v->stream));
	for (size_t i = 0; i < v->n_dev; i++)
		CUDA_CHECK(cudaFree(v->dev[i]));
	free(v->dev);
	free(v->blk);
	CUDA_CHECK(cudaFreeHost(v->hpix));
	CUDA_CHECK(cudaFreeHost(v->hout));
	if (v->pix_read)
		CUDA_CHECK(cudaEventDestroy(v->pix_read));
	free(v);
}

/* ---- scratch ---------------------------------------------------------------------------- */

typedef struct vscratch {
	uint16_t *pix, *x, *a, *qkv, *hb, *outs;
	size_t bytes;
} vscratch;

static size_t align_up(size_t n)
{
	return (n + VISION_CUDA_ALIGN - 1) / VISION_CUDA_ALIGN * VISION_CUDA_ALIGN;
}

/* The parts of a scratch for N patches (N ≤ 2^20, so no product overflows), carved from base
 * (NULL: sizes only). */
static vscratch scratch_layout(const vision_cuda *v, size_t N, void *base)
{
	size_t T = N / ((size_t)v->dm.merge * v->dm.merge), Dv = (size_t)v->dm.Dv;
	size_t wide = (size_t)(v->dm.Iv > v->dm.Dv ? v->dm.Iv : v->dm.Dv);
	size_t sz[6] = { N * (size_t)v->dm.K, N * Dv, N * Dv, N * 3 * Dv, N * wide,
			 (size_t)(1 + v->dm.n_ds) * T * (size_t)v->dm.D };
	uint16_t *p[6];
	size_t off = 0;
	for (int i = 0; i < 6; i++) {
		p[i] = base ? (uint16_t *)((char *)base + off) : NULL;
		off += align_up(sz[i] * sizeof(uint16_t));
	}
	vscratch s = { p[0], p[1], p[2], p[3], p[4], p[5], off };
	return s;
}

size_t vision_cuda_weight_bytes(const vision_cuda *v)
{
	return v->wbytes;
}

size_t vision_cuda_scratch_bytes(const vision_cuda *v, int max_patches)
{
	if (max_patches <= 0 || max_patches > VISION_CUDA_MAX_PATCHES)
		return 0;
	return scratch_layout(v, (size_t)max_patches, NULL).bytes;
}

/* ---- forward ---------------------------------------------------------------------------- */

/* A patch merger on x (N, Dv) → out (T, D). post: the deepstack form (LayerNorm over Dm after
 * grouping), else the main one (over Dv before). */
static void merger(vision_cuda *v, const vcmerger *m, const vscratch *s, size_t N, bool post,
		   uint16_t *out)
{
	int T = (int)(N / ((size_t)v->dm.merge * v->dm.merge));
	if (post)
		kn_layernorm_cuda(s->a, s->x, m->nw, m->nb, T, v->dm.Dm, VISION_CUDA_LN_EPS, v->stream);
	else
		kn_layernorm_cuda(s->a, s->x, m->nw, m->nb, (int)N, v->dm.Dv, VISION_CUDA_LN_EPS,
				  v->stream);
	kn_gemm_bias_cuda(v->gemm, s->hb, s->a, m->fc1_w, m->fc1_b, NULL, T, v->dm.Dm, v->dm.Dm,
			  v->stream);
	kn_gelu_cuda(s->hb, s->hb, (long)T * v->dm.Dm, KN_GELU_ERF, v->stream);
	kn_gemm_bias_cuda(v->gemm, out, s->hb, m->fc2_w, m->fc2_b, NULL, T, v->dm.D, v->dm.Dm,
			  v->stream);
}

/* Pixels to bf16 on the host: a 448x448 image is 1.2 M values, ~1.7 ms on one core of the H100
 * host with the scalar loop and on the image request's critical path, so big items are cut
 * over a few threads, each rounding with bf16_round_array (AVX2 where the CPU has it: ~3x the
 * scalar loop on the dev machine; the same bits). qvld's debug log put the 4-thread scalar
 * rounding at 0.72-0.93 ms of an image step on the H100 machine (session 17). */
typedef struct round_part {
	uint16_t *dst;
	const float *src;
	size_t n;
} round_part;

static void *round_main(void *arg)
{
	const round_part *p = arg;
	bf16_round_array(p->dst, p->src, p->n);
	return NULL;
}

static void round_pixels(uint16_t *dst, const float *src, size_t n)
{
	enum { PARTS = 4, MIN_PART = 1 << 17 };
	round_part p[PARTS];
	int parts = n >= (size_t)PARTS * MIN_PART ? PARTS : 1;
	size_t per = (n + (size_t)parts - 1) / (size_t)parts;
	for (int k = 0; k < parts; k++) {
		size_t a = (size_t)k * per, b = a + per < n ? a + per : n;
		p[k] = (round_part){ .dst = dst + a, .src = src + a, .n = b - a };
	}
	parallel_run(round_main, p, sizeof(p[0]), parts, 0);
}

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void vision_cuda_rows_to_host(float *out, const uint16_t *planes, size_t T, int n_planes, int D)
{
	for (int k = 0; k < n_planes; k++)
		for (size_t j = 0; j < T; j++) {
			const uint16_t *src = planes + ((size_t)k * T + j) * (size_t)D;
			float *dst = out + (j * (size_t)n_planes + (size_t)k) * (size_t)D;
			for (int d = 0; d < D; d++)
				dst[d] = bf16_to_f32(src[d]);
		}
}

int vision_cuda_encode(vision_cuda *v, const float *pixel_values, int grid_t, int grid_h,
		       int grid_w, void *scratch, size_t scratch_bytes, uint16_t *dev_out, float *out,
		       qerr *e)
{
	if (!out && !dev_out)
		return qerr_set(e, QERR_INVALID, "vision: an encode with neither host nor device "
				"output");
	if (grid_t <= 0 || grid_h <= 0 || grid_w <= 0 || grid_h % v->dm.merge || grid_w % v->dm.merge)
		return qerr_set(e, QERR_INVALID, "vision: grid (%d, %d, %d) is not positive with h, w "
				"multiples of %d", grid_t, grid_h, grid_w, v->dm.merge);
	int64_t N64 = (int64_t)grid_t * grid_h * grid_w;
	if (N64 > VISION_CUDA_MAX_PATCHES)
		return qerr_set(e, QERR_LIMIT, "vision: %lld patches exceed the limit of %d",
				(long long)N64, VISION_CUDA_MAX_PATCHES);
	size_t N = (size_t)N64, T = N / ((size_t)v->dm.merge * v->dm.merge), L = (size_t)grid_h * grid_w;
	vscratch s = scratch_layout(v, N, scratch);
	if (!scratch || scratch_bytes < s.bytes)
		return qerr_set(e, QERR_LIMIT, "vision: %lld patches need %zu bytes of scratch, "
				"%zu given", (long long)N64, s.bytes, scratch_bytes);
	int n = (int)N, Dv = v->dm.Dv, stride = 1 + v->dm.n_ds;
	cudaStream_t st = v->stream;
	uint16_t *outs = dev_out ? dev_out : s.outs;

	/* pixels: bf16 on the host (half the upload), as transformers casts them to the conv's
	 * dtype before the patch embedding */
	size_t npix = N * (size_t)v->dm.K, nout = (size_t)stride * T * v->dm.D;
	if (npix > v->cap_pix) {   /* pinned: the copies are real DMA, not staged by the driver */
		CUDA_CHECK(cudaStreamSynchronize(st));
		CUDA_CHECK(cudaFreeHost(v->hpix));
		CUDA_CHECK(cudaMallocHost((void **)&v->hpix, npix * sizeof(uint16_t)));
		v->cap_pix = npix;
	}
	if (out && nout > v->cap_out) {
		CUDA_CHECK(cudaFreeHost(v->hout));
		CUDA_CHECK(cudaMallocHost((void **)&v->hout, nout * sizeof(uint16_t)));
		v->cap_out = nout;
	}
	CUDA_CHECK(cudaEventSynchronize(v->pix_read));   /* the last upload is done with hpix */
	double t0 = mono_ms();
	round_pixels(v->hpix, pixel_values, npix);
	double t1 = mono_ms();
	CUDA_CHECK(cudaMemcpyAsync(s.pix, v->hpix, npix * sizeof(uint16_t), cudaMemcpyHostToDevice,
				   st));
	CUDA_CHECK(cudaEventRecord(v->pix_read, st));

	kn_gemm_bias_cuda(v->gemm, s.x, s.pix, v->pe_w, v->pe_b, NULL, n, Dv, v->dm.K, st);
	kn_vision_pos_embed_cuda(s.x, v->pos, v->dm.side, Dv, v->dm.merge, grid_t, grid_h, grid_w, st);
	for (int b = 0; b < v->dm.depth; b++) {
		const vcblock *bl = &v->blk[b];
		kn_layernorm_cuda(s.a, s.x, bl->n1w, bl->n1b, n, Dv, VISION_CUDA_LN_EPS, st);
		kn_gemm_bias_cuda(v->gemm, s.qkv, s.a, bl->qkv_w, bl->qkv_b, NULL, n, 3 * Dv, Dv, st);
		kn_vision_rope_cuda(s.qkv, n, v->dm.H, v->dm.hd, v->dm.merge, grid_h, grid_w, st);
		kn_vision_attention_cuda(s.a, s.qkv, grid_t, (int)L, v->dm.H, v->dm.hd, st);
		kn_gemm_bias_cuda(v->gemm, s.x, s.a, bl->proj_w, bl->proj_b, s.x, n, Dv, Dv, st);
		kn_layernorm_cuda(s.a, s.x, bl->n2w, bl->n2b, n, Dv, VISION_CUDA_LN_EPS, st);
		kn_gemm_bias_cuda(v->gemm, s.hb, s.a, bl->fc1_w, bl->fc1_b, NULL, n, v->dm.Iv, Dv, st);
		kn_gelu_cuda(s.hb, s.hb, (long)n * v->dm.Iv, v->act, st);
		kn_gemm_bias_cuda(v->gemm, s.x, s.hb, bl->fc2_w, bl->fc2_b, s.x, n, Dv, v->dm.Iv, st);
		for (int k = 0; k < v->dm.n_ds; k++)
			if (v->dm.ds_idx[k] == b)
				merger(v, &v->ds[k], &s, N, true, outs + (size_t)(1 + k) * T * v->dm.D);
	}
	merger(v, &v->main, &s, N, false, outs);

	if (log_get_level() >= LOG_LEVEL_DEBUG)
		log_msg(LOG_LEVEL_DEBUG, "vision", "encode of %zu patches: %.2f ms rounding the pixels, "
			"%.2f ms queueing the tower", N, t1 - t0, mono_ms() - t1);
	if (out) {
		CUDA_CHECK(cudaMemcpyAsync(v->hout, outs, nout * sizeof(uint16_t),
					   cudaMemcpyDeviceToHost, st));
		CUDA_CHECK(cudaStreamSynchronize(st));
		vision_cuda_rows_to_host(out, v->hout, T, stride, v->dm.D);
	}
	return 0;
}
