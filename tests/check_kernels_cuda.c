/*
 * CUDA kernels against their plain-C references, on seeded random inputs (never zeros), with
 * the output poisoned with NaN first so that an unwritten element fails. Exits 77 (automake's
 * SKIP) when no GPU is visible.
 *
 * The suite runs with CK_NOFORK: main() touches CUDA to look for a GPU, and a child forked
 * after that cannot use CUDA ("initialization error").
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "cuda_check.h"
#include "embedding.h"
#include "fp8.h"
#include "gelu.h"
#include "gemm.h"
#include "gemm_glu_tma.h"
#include "gemm_qkv_tma.h"
#include "gemm_wgmma.h"
#include "kernel_testutil.h"
#include "layernorm.h"
#include "logits_topk.h"
#include "paged_attention.h"
#include "qk_norm_rope.h"
#include "rmsnorm.h"
#include "rows.h"
#include "silu_mul.h"

/* Fraction of the n bf16 values of got that equal ref bit for bit. */
static double exact_rate(const uint16_t *got, const uint16_t *ref, size_t n)
{
	size_t same = 0;
	for (size_t i = 0; i < n; i++)
		same += got[i] == ref[i];
	return n ? (double)same / (double)n : 1.0;
}

/* A device buffer of n bf16 plus one spare element (for the misaligned cases), filled with
 * NaN (0xffff), or with host data when src is non-NULL (at element offset off). */
static uint16_t *dev_bf16(const uint16_t *src, size_t n, int off)
{
	uint16_t *d;
	CUDA_CHECK(cudaMalloc((void **)&d, (n + 1) * 2));
	CUDA_CHECK(cudaMemset(d, 0xff, (n + 1) * 2));
	if (src)
		CUDA_CHECK(cudaMemcpy(d + off, src, n * 2, cudaMemcpyHostToDevice));
	return d;
}

/* The same for n floats (0xffffffff is a float NaN). */
static float *dev_f32(const float *src, size_t n, int off)
{
	float *d;
	CUDA_CHECK(cudaMalloc((void **)&d, (n + 1) * 4));
	CUDA_CHECK(cudaMemset(d, 0xff, (n + 1) * 4));
	if (src)
		CUDA_CHECK(cudaMemcpy(d + off, src, n * 4, cudaMemcpyHostToDevice));
	return d;
}

/* Random fp32 values (not bf16 ones: the decoder's fp32 activations use all 24 bits). */
static void fill_f32(float *p, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		p[i] = frand(lo, hi);
}

/* ‖got − ref‖ / ‖ref‖ over n floats; NaN anywhere in got gives +inf. Prints the first
 * mismatches beyond tol_abs (and the NaN). */
static double rel_l2_f32(const float *got, const float *ref, size_t n, double tol_abs)
{
	double num = 0, den = 0;
	int shown = 0;
	for (size_t i = 0; i < n; i++) {
		double g = got[i], r = ref[i];
		if (isnan(g)) {
			fprintf(stderr, "  NaN at %zu (want %g)\n", i, r);
			return INFINITY;
		}
		num += (g - r) * (g - r);
		den += r * r;
		if (fabs(g - r) > tol_abs && shown++ < 5)
			fprintf(stderr, "  mismatch at %zu: got %.9g want %.9g\n", i, g, r);
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Sizes: {rows, cols, misaligned}. misaligned shifts every buffer by one element so that the
 * vector paths are refused and the element paths run on shapes they would otherwise not see
 * (as do cols not a multiple of 4). The vector paths: registers up to 2048 columns (2052 and
 * 4096: the 4-vector register form), a loop beyond (8192). x is fp32 with an offset, as a residual stream has. */
START_TEST(test_kernels_cuda_rmsnorm)
{
	static const int sizes[][3] = { { 1, 1, 0 },	{ 1, 128, 0 },	  { 7, 3, 0 },
					{ 5, 2048, 0 },	{ 64, 128, 0 },	  { 3, 4099, 0 },
					{ 300, 2048, 0 }, { 5, 2048, 1 }, { 2, 6, 0 },
					{ 4, 2052, 0 },	{ 3, 4096, 0 },	  { 2, 8192, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int rows = sizes[s][0], cols = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)rows * cols;
		float *x = malloc(n * 4);
		uint16_t *w = malloc((size_t)cols * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		fill_f32(x, n, -2.f, 4.f);
		fill_bf16(w, (size_t)cols, 0.5f, 1.5f);
		kn_rmsnorm_ref(ref, x, w, rows, cols, 1e-6f);

		float *dx = dev_f32(x, n, off);
		uint16_t *dw = dev_bf16(w, (size_t)cols, off), *dy = dev_bf16(NULL, n, 0);
		kn_rmsnorm_cuda(dy + off, dx + off, dw + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.02);
		fprintf(stderr, "rmsnorm %dx%d%s: rel L2 %.3g, exact %.6f\n", rows, cols,
			off ? " misaligned" : "", err, exact_rate(got, ref, n));
		/* one bf16 rounding of a product that the kernel's fp32 and the reference's double
		 * agree on to ~1e-7: a rounding flips now and then, nothing more */
		ck_assert_msg(err <= 1e-3, "rmsnorm %dx%d: rel L2 error %g", rows, cols, err);
		/* the fp16 form on the same rows: one rounding to 11 bits (the output poisoned
		 * again: 0xffff is an fp16 NaN too) */
		kn_rmsnorm_f16_ref(ref, x, w, rows, cols, 1e-6f);
		CUDA_CHECK(cudaMemset(dy, 0xff, (n + 1) * 2));
		kn_rmsnorm_f16_cuda(dy + off, dx + off, dw + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		float *gf = malloc(n * 4), *rf = malloc(n * 4);
		size_t same = 0;
		for (size_t i = 0; i < n; i++) {
			gf[i] = f16_to_f32(got[i]);
			rf[i] = f16_to_f32(ref[i]);
			same += got[i] == ref[i];
		}
		double e16 = rel_l2_f32(gf, rf, n, 0.01);
		fprintf(stderr, "rmsnorm f16 %dx%d%s: rel L2 %.3g, exact %.6f\n", rows, cols,
			off ? " misaligned" : "", e16, (double)same / (double)n);
		ck_assert_msg(e16 <= 1.5e-4 && same * 100 >= n * 99, "rmsnorm f16 %dx%d: rel L2 %g, "
			      "%zu of %zu exact", rows, cols, e16, same, n);
		free(gf);
		free(rf);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		free(x);
		free(w);
		free(ref);
		free(got);
	}
}
END_TEST

/* Sizes: {rows, cols, misaligned}, as above. */
START_TEST(test_kernels_cuda_embedding)
{
	enum { V = 4099 };
	static const int sizes[][3] = { { 1, 1, 0 },    { 1, 2048, 0 }, { 7, 3, 0 },
					{ 5, 13, 0 },   { 3, 8, 0 },    { 37, 2048, 0 },
					{ 300, 2048, 0 }, { 9, 2048, 1 }, { 4, 6144, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], D = sizes[s][1], off = sizes[s][2];
		size_t nt = (size_t)V * D, n = (size_t)T * D;
		uint16_t *table = malloc(nt * 2);
		float *ref = malloc(n * 4), *got = malloc(n * 4);
		int32_t *ids = malloc((size_t)T * 4);
		fill_bf16(table, nt, -2.f, 2.f);
		for (int t = 0; t < T; t++)
			ids[t] = (int32_t)frand(0.f, (float)V - 0.5f);
		ids[0] = V - 1;   /* the last row, the one most likely to be read out of bounds */
		kn_embedding_ref(ref, table, ids, T, D);

		uint16_t *dt = dev_bf16(table, nt, off);
		float *dy = dev_f32(NULL, n, 0);
		int32_t *di;
		CUDA_CHECK(cudaMalloc((void **)&di, (size_t)T * 4));
		CUDA_CHECK(cudaMemcpy(di, ids, (size_t)T * 4, cudaMemcpyHostToDevice));
		kn_embedding_cuda(dy + off, dt + off, di, T, D, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 4, cudaMemcpyDeviceToHost));
		fprintf(stderr, "embedding T=%d D=%d%s: rel L2 %.3g\n", T, D, off ? " misaligned" : "",
			rel_l2_f32(got, ref, n, 0));
		/* widening is exact: bit for bit */
		ck_assert_msg(memcmp(got, ref, n * 4) == 0, "embedding T=%d D=%d: not bit-exact", T, D);
		CUDA_CHECK(cudaFree(dt));
		CUDA_CHECK(cudaFree(dy));
		CUDA_CHECK(cudaFree(di));
		free(table);
		free(ref);
		free(got);
		free(ids);
	}
}
END_TEST

/* gather (bf16), scatter and scatter-add (bf16 rows into fp32 rows) of whole rows: bit-exact
 * against the reference (distinct indexes in random order, odd widths, a destination whose
 * other rows must stay untouched) */
START_TEST(test_kernels_cuda_rows)
{
	static const int sizes[][3] = { { 1, 1, 1 }, { 5, 3, 2 }, { 40, 2048, 17 }, { 9, 130, 9 },
					{ 300, 2048, 256 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int R = sizes[s][0], C = sizes[s][1], n = sizes[s][2];
		size_t nr = (size_t)R * C, nn = (size_t)n * C;
		uint16_t *big = malloc(nr * 2), *small = malloc(nn * 2), *gref = malloc(nn * 2),
			 *ggot = malloc(nn * 2);
		float *x = malloc(nr * 4), *ref = malloc(nr * 4), *got = malloc(nr * 4);
		int32_t *idx = malloc((size_t)R * 4);
		fill_bf16(big, nr, -2.f, 2.f);
		fill_bf16(small, nn, -2.f, 2.f);
		fill_f32(x, nr, -3.f, 3.f);
		kt_shuffled_ids(idx, R);   /* the first n are distinct rows */
		uint16_t *dbig = dev_bf16(big, nr, 0), *dsmall = dev_bf16(small, nn, 0),
			 *dg = dev_bf16(NULL, nn, 0);
		float *dx = dev_f32(NULL, nr, 0);
		int32_t *di;
		CUDA_CHECK(cudaMalloc((void **)&di, (size_t)n * 4));
		CUDA_CHECK(cudaMemcpy(di, idx, (size_t)n * 4, cudaMemcpyHostToDevice));

		kn_rows_gather_ref(gref, big, idx, n, C);
		kn_rows_gather_cuda(dg, dbig, di, n, C, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(ggot, dg, nn * 2, cudaMemcpyDeviceToHost));
		ck_assert_msg(memcmp(ggot, gref, nn * 2) == 0, "rows gather R=%d C=%d n=%d: not "
			      "bit-exact", R, C, n);
		for (int mode = 1; mode < 3; mode++) {
			memcpy(ref, x, nr * 4);
			CUDA_CHECK(cudaMemcpy(dx, x, nr * 4, cudaMemcpyHostToDevice));
			if (mode == 1) {
				kn_rows_scatter_ref(ref, small, idx, n, C);
				kn_rows_scatter_cuda(dx, dsmall, di, n, C, 0);
			} else {
				kn_rows_scatter_add_ref(ref, small, idx, n, C);
				kn_rows_scatter_add_cuda(dx, dsmall, di, n, C, 0);
			}
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(got, dx, nr * 4, cudaMemcpyDeviceToHost));
			ck_assert_msg(memcmp(got, ref, nr * 4) == 0, "rows %s R=%d C=%d n=%d: not "
				      "bit-exact", mode == 1 ? "scatter" : "scatter_add", R, C, n);
		}
		CUDA_CHECK(cudaFree(dbig));
		CUDA_CHECK(cudaFree(dsmall));
		CUDA_CHECK(cudaFree(dg));
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(di));
		free(big);
		free(small);
		free(gref);
		free(ggot);
		free(x);
		free(ref);
		free(got);
		free(idx);
	}
}
END_TEST

/* Sizes: {T, F, misaligned}; F % 4 != 0 and the misaligned case take the element path. */
START_TEST(test_kernels_cuda_silu_mul)
{
	static const int sizes[][3] = { { 1, 1, 0 },     { 1, 6144, 0 }, { 7, 3, 0 },
					{ 5, 13, 0 },    { 37, 6144, 0 }, { 300, 6144, 0 },
					{ 3, 2048, 0 },  { 4, 6144, 1 }, { 17, 1000, 0 },
					{ 2, 6, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], F = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)T * F;
		float *gu = malloc(2 * n * 4);
		uint16_t *ref = malloc(n * 2), *got = malloc(n * 2);
		fill_f32(gu, 2 * n, -6.f, 6.f);
		kn_silu_mul_ref(ref, gu, T, F);

		float *dg = dev_f32(gu, 2 * n, off);
		uint16_t *dy = dev_bf16(NULL, n, 0);
		kn_silu_mul_cuda(dy + off, dg + off, T, F, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.05);
		fprintf(stderr, "silu_mul T=%d F=%d%s: rel L2 %.3g, exact %.6f\n", T, F,
			off ? " misaligned" : "", err, exact_rate(got, ref, n));
		ck_assert_msg(err <= 1e-3, "silu_mul T=%d F=%d: rel L2 error %g", T, F, err);
		CUDA_CHECK(cudaFree(dg));
		CUDA_CHECK(cudaFree(dy));
		free(gu);
		free(ref);
		free(got);
	}
}
END_TEST

/* Sizes: {rows, cols, misaligned}; cols 1024 = Dv (blocks, main merger), 4096 = Dm (deepstack
 * mergers). x is offset from zero so that the mean matters. */
START_TEST(test_kernels_cuda_layernorm)
{
	static const int sizes[][3] = { { 1, 1, 0 },      { 1, 1024, 0 },  { 7, 3, 0 },
					{ 5, 13, 0 },     { 64, 1024, 0 }, { 300, 1024, 0 },
					{ 16, 4096, 0 },  { 5, 1024, 1 },  { 3, 4096, 1 },
					{ 3, 4099, 0 },   { 33, 1000, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int rows = sizes[s][0], cols = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)rows * cols;
		uint16_t *x = malloc(n * 2), *w = malloc((size_t)cols * 2),
			 *b = malloc((size_t)cols * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		fill_bf16(x, n, -2.f, 4.f);
		fill_bf16(w, (size_t)cols, 0.5f, 1.5f);
		fill_bf16(b, (size_t)cols, -0.5f, 0.5f);
		kn_layernorm_ref(ref, x, w, b, rows, cols, 1e-6f);

		uint16_t *dx = dev_bf16(x, n, off), *dw = dev_bf16(w, (size_t)cols, off),
			 *db = dev_bf16(b, (size_t)cols, off), *dy = dev_bf16(NULL, n, 0);
		kn_layernorm_cuda(dy + off, dx + off, dw + off, db + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.05);
		fprintf(stderr, "layernorm %dx%d%s: rel L2 %.3g, exact %.6f\n", rows, cols,
			off ? " misaligned" : "", err, exact_rate(got, ref, n));
		ck_assert_msg(err <= 1e-2, "layernorm %dx%d: rel L2 error %g", rows, cols, err);

		/* in place: out aliasing x */
		kn_layernorm_cuda(dx + off, dx + off, dw + off, db + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaMemcpy(got, dx + off, n * 2, cudaMemcpyDeviceToHost));
		err = rel_l2_bf16(got, ref, n, 0.05);
		ck_assert_msg(err <= 1e-2, "layernorm %dx%d in place: rel L2 error %g", rows, cols,
			      err);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(db));
		CUDA_CHECK(cudaFree(dy));
		free(x);
		free(w);
		free(b);
		free(ref);
		free(got);
	}
}
END_TEST

/* Sizes: {n, misaligned}; n = rows·4096 (the vision MLP / merger width) plus odd tails. The
 * error is relative to max(‖ref‖, 0.01 an element) (rel_l2_bf16_floor): the tanh form (torch's,
 * gelu.cu) cancels for x < -4, where 1 + tanh(u) is below 4e-5, so its absolute error there is
 * ~1e-7 and gelu(-5.5) comes out as 0 against the reference's -6e-9, which a plain relative
 * measure of a short vector of such inputs (n = 1) would call a 100% error. */
START_TEST(test_kernels_cuda_gelu)
{
	static const long sizes[][2] = { { 1, 0 },        { 7, 0 },         { 13, 0 },
					 { 1024, 0 },     { 4096, 0 },      { 37L * 4096, 0 },
					 { 64L * 4096 + 5, 0 }, { 3L * 4096, 1 }, { 1001, 1 } };
	static const kn_gelu_mode modes[2] = { KN_GELU_TANH, KN_GELU_ERF };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		long n = sizes[s][0];
		int off = (int)sizes[s][1];
		uint16_t *x = malloc((size_t)n * 2), *ref = malloc((size_t)n * 2),
			 *got = malloc((size_t)n * 2);
		fill_bf16(x, (size_t)n, -6.f, 6.f);
		for (int m = 0; m < 2; m++) {
			const char *name = modes[m] == KN_GELU_TANH ? "tanh" : "erf";
			kn_gelu_ref(ref, x, n, modes[m]);
			uint16_t *dx = dev_bf16(x, (size_t)n, off), *dy = dev_bf16(NULL, (size_t)n, 0);
			kn_gelu_cuda(dy + off, dx + off, n, modes[m], 0);
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(got, dy + off, (size_t)n * 2, cudaMemcpyDeviceToHost));
			double err = rel_l2_bf16_floor(got, ref, (size_t)n, 0.05, 0.01);
			fprintf(stderr, "gelu_%s n=%ld%s: rel L2 %.3g, exact %.6f\n", name, n,
				off ? " misaligned" : "", err, exact_rate(got, ref, (size_t)n));
			ck_assert_msg(err <= 1e-2, "gelu_%s n=%ld: rel L2 error %g", name, n, err);

			/* in place */
			kn_gelu_cuda(dx + off, dx + off, n, modes[m], 0);
			CUDA_CHECK(cudaMemcpy(got, dx + off, (size_t)n * 2, cudaMemcpyDeviceToHost));
			err = rel_l2_bf16_floor(got, ref, (size_t)n, 0.05, 0.01);
			ck_assert_msg(err <= 1e-2, "gelu_%s n=%ld in place: rel L2 error %g", name, n,
				      err);
			CUDA_CHECK(cudaFree(dx));
			CUDA_CHECK(cudaFree(dy));
		}
		free(x);
		free(ref);
		free(got);
	}
}
END_TEST

/* Shapes {T, Hq, KV, hd}. Tokens go to distinct slots of a cache whose blocks are shuffled (as
 * a block table would scatter them); about one token in eight has slot -1. Positions go up to
 * 100000 with distinct T/H/W rows, every third token dense (equal rows). Caches start as NaN:
 * written slots are compared with the reference, all others must still be NaN afterwards. */
START_TEST(test_kernels_cuda_qk_norm_rope)
{
	static const int cases[][4] = { { 1, 16, 8, 128 }, { 7, 16, 8, 128 }, { 300, 16, 8, 128 },
					{ 1, 4, 2, 32 },   { 7, 4, 2, 32 },   { 300, 4, 2, 32 } };
	enum { BS = 16 };
	for (size_t cs = 0; cs < sizeof(cases) / sizeof(cases[0]); cs++) {
		int T = cases[cs][0], Hq = cases[cs][1], KV = cases[cs][2], hd = cases[cs][3];
		int sec[3] = { hd == 128 ? 24 : 6, hd == 128 ? 20 : 5, hd == 128 ? 20 : 5 };
		float theta = hd == 128 ? 5e6f : 1e6f;
		int nb = (T + BS - 1) / BS + 3, nslot = nb * BS;
		size_t nqkv = (size_t)T * (Hq + 2 * KV) * hd, nq = (size_t)T * Hq * hd;
		size_t nc = (size_t)nslot * KV * hd, kvd = (size_t)KV * hd;
		float *qkv = malloc(nqkv * 4);
		uint16_t *qw = malloc((size_t)hd * 2),
			 *kw = malloc((size_t)hd * 2), *qref = malloc(nq * 2), *qgot = malloc(nq * 2),
			 *kref = malloc(nc * 2), *vref = malloc(nc * 2), *kgot = malloc(nc * 2),
			 *vgot = malloc(nc * 2);
		int32_t *pos = malloc((size_t)3 * T * 4), *slots = malloc((size_t)T * 4),
			*perm = malloc((size_t)nb * 4);
		for (size_t i = 0; i < nqkv; i++)
			qkv[i] = frand(-3.f, 3.f);
		fill_bf16(qw, (size_t)hd, 0.5f, 1.5f);
		fill_bf16(kw, (size_t)hd, 0.5f, 1.5f);
		kt_shuffled_ids(perm, nb);
		for (int t = 0; t < T; t++) {
			slots[t] = perm[t / BS] * BS + t % BS;
			if (T > 1 && frand(0.f, 1.f) < 0.125f)
				slots[t] = -1;
			for (int a = 0; a < 3; a++)
				pos[a * T + t] = (int32_t)frand(0.f, 100000.f);
			if (t % 3 == 2)
				pos[T + t] = pos[2 * T + t] = pos[t];
		}
		pos[0] = 100000;
		memset(kref, 0xff, nc * 2);
		memset(vref, 0xff, nc * 2);
		kn_qk_norm_rope_ref(qref, kref, vref, qkv, qw, kw, pos, slots, T, Hq, KV, hd, sec,
				    theta, 1e-6f);

		float *dqkv = dev_f32(qkv, nqkv, 0);
		uint16_t *dqw = dev_bf16(qw, (size_t)hd, 0),
			 *dkw = dev_bf16(kw, (size_t)hd, 0), *dq = dev_bf16(NULL, nq, 0),
			 *dk = dev_bf16(NULL, nc, 0), *dv = dev_bf16(NULL, nc, 0);
		int32_t *dpos, *dslots;
		CUDA_CHECK(cudaMalloc((void **)&dpos, (size_t)3 * T * 4));
		CUDA_CHECK(cudaMalloc((void **)&dslots, (size_t)T * 4));
		CUDA_CHECK(cudaMemcpy(dpos, pos, (size_t)3 * T * 4, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dslots, slots, (size_t)T * 4, cudaMemcpyHostToDevice));
		kn_qk_norm_rope_cuda(dq, dk, dv, dqkv, dqw, dkw, dpos, dslots, T, Hq, KV, hd, sec,
				     theta, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(qgot, dq, nq * 2, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(kgot, dk, nc * 2, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(vgot, dv, nc * 2, cudaMemcpyDeviceToHost));

		/* written k rows gathered next to q for one error figure; v must match bit for bit */
		size_t nk = 0, untouched_bad = 0;
		uint16_t *all_got = malloc((nq + (size_t)T * kvd) * 2),
			 *all_ref = malloc((nq + (size_t)T * kvd) * 2);
		memcpy(all_got, qgot, nq * 2);
		memcpy(all_ref, qref, nq * 2);
		for (int sl = 0; sl < nslot; sl++) {
			int written = 0;
			for (int t = 0; t < T; t++)
				written |= slots[t] == sl;
			const size_t o = (size_t)sl * kvd;
			if (written) {
				memcpy(all_got + nq + nk, kgot + o, kvd * 2);
				memcpy(all_ref + nq + nk, kref + o, kvd * 2);
				nk += kvd;
				ck_assert_msg(!memcmp(vgot + o, vref + o, kvd * 2),
					      "qk_norm_rope: v of slot %d differs", sl);
			} else {
				for (size_t i = 0; i < kvd; i++)
					untouched_bad += kgot[o + i] != 0xffff || vgot[o + i] != 0xffff;
			}
		}
		double err = rel_l2_bf16(all_got, all_ref, nq + nk, 0.05);
		double exact = exact_rate(all_got, all_ref, nq + nk);
		fprintf(stderr,
			"qk_norm_rope T %d Hq %d KV %d hd %d: rel L2 %.3g, exact %.5f (%zu q + %zu k "
			"values)\n",
			T, Hq, KV, hd, err, exact, nq, nk);
		ck_assert_msg(untouched_bad == 0, "qk_norm_rope: %zu untouched cache values changed",
			      untouched_bad);
		ck_assert_msg(err <= 1e-2, "qk_norm_rope: rel L2 error %g", err);

		CUDA_CHECK(cudaFree(dqkv));
		CUDA_CHECK(cudaFree(dqw));
		CUDA_CHECK(cudaFree(dkw));
		CUDA_CHECK(cudaFree(dq));
		CUDA_CHECK(cudaFree(dk));
		CUDA_CHECK(cudaFree(dv));
		CUDA_CHECK(cudaFree(dpos));
		CUDA_CHECK(cudaFree(dslots));
		free(qkv);
		free(qw);
		free(kw);
		free(qref);
		free(qgot);
		free(kref);
		free(vref);
		free(kgot);
		free(vgot);
		free(pos);
		free(slots);
		free(perm);
		free(all_got);
		free(all_ref);
	}
}
END_TEST

/* Byte equality of two fp8 arrays where NaN equals NaN (the encoders may disagree on a NaN's
 * sign bit, which nothing reads); the number of differing bytes, the first few printed. */
static size_t fp8_diff(const uint8_t *got, const uint8_t *want, size_t n, const char *what)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (got[i] == want[i] || ((got[i] & 0x7f) == 0x7f && (want[i] & 0x7f) == 0x7f))
			continue;
		if (bad++ < 5)
			fprintf(stderr, "  %s: byte %zu is 0x%02x, want 0x%02x\n", what, i, got[i],
				want[i]);
	}
	return bad;
}

/* The fp8 cache write, against the bf16 kernel on the same inputs and against the reference:
 * q_out is the bf16 kernel's bit for bit; every k byte is f32_to_fp8e4m3 of the bf16 kernel's
 * k value times 1/k_scale, and every v byte the reference's (both exact); the k bytes also
 * match the reference's wherever the bf16 kernel's k does, and decode close to it elsewhere;
 * slots not written keep their poison (0xff, an fp8 NaN). Scales 1, non-powers of two, and
 * ones that saturate. The shape of case 0 puts every bf16 bit pattern (T 64 · KV 8 · hd 128 =
 * 2^16 values: zeros, subnormals, exact fp8 ties, ±inf, NaN) in the v heads, and the v scales
 * 1 ± 2^-22 move each tie just above and below itself: an exhaustive test of fp8_encode on
 * bf16 inputs and of its rounding next to every tie. */
START_TEST(test_kernels_cuda_qk_norm_rope_fp8)
{
	static const int cases[][4] = { { 64, 16, 8, 128 }, { 1, 16, 8, 128 }, { 7, 16, 8, 128 },
					{ 300, 16, 8, 128 }, { 5, 4, 2, 32 },  { 33, 8, 1, 64 } };
	static const float scales[][2] = { { 1.0f, 1.0f },
					   { 1.0f, 0x1.ffffcp-1f },  /* 1/v_scale: 1 + 2^-22 */
					   { 1.0f, 0x1.000004p+0f }, /* 1/v_scale ≈ 1 - 2^-22 */
					   { 0.37f, 3.0f },
					   { 0x1p-7f, 0x1p-8f } };   /* ×128, ×256: saturates */
	enum { BS = 16 };
	for (size_t cs = 0; cs < sizeof(cases) / sizeof(cases[0]); cs++) {
		const int T = cases[cs][0], Hq = cases[cs][1], KV = cases[cs][2], hd = cases[cs][3];
		int sec[3] = { hd / 4 - 8 * (hd == 128), hd / 8 + 4 * (hd == 128), hd / 8 + 4 * (hd == 128) };
		const float theta = 5e6f;
		const int nb = (T + BS - 1) / BS + 3, nslot = nb * BS, nh = Hq + 2 * KV;
		const size_t nqkv = (size_t)T * nh * hd, nq = (size_t)T * Hq * hd;
		const size_t nc = (size_t)nslot * KV * hd, kvd = (size_t)KV * hd;
		float *qkv = malloc(nqkv * 4);
		uint16_t *qw = malloc((size_t)hd * 2),
			 *kw = malloc((size_t)hd * 2), *q16 = malloc(nq * 2), *q8 = malloc(nq * 2),
			 *k16 = malloc(nc * 2), *qref = malloc(nq * 2);
		uint8_t *k8 = malloc(nc), *v8 = malloc(nc), *kref = malloc(nc), *vref = malloc(nc),
			*want = malloc(nc);
		int32_t *pos = malloc((size_t)3 * T * 4), *slots = malloc((size_t)T * 4),
			*perm = malloc((size_t)nb * 4);
		for (size_t i = 0; i < nqkv; i++)
			qkv[i] = frand(-3.f, 3.f);
		if (cs == 0)   /* every bf16 bit pattern in the v heads (widened: exact) */
			for (int t = 0; t < T; t++)
				for (size_t i = 0; i < kvd; i++)
					qkv[(size_t)t * nh * hd + (size_t)(Hq + KV) * hd + i] =
						bf16_to_f32((uint16_t)((size_t)t * kvd + i));
		fill_bf16(qw, (size_t)hd, 0.5f, 1.5f);
		fill_bf16(kw, (size_t)hd, 0.5f, 1.5f);
		kt_shuffled_ids(perm, nb);
		for (int t = 0; t < T; t++) {
			slots[t] = perm[t / BS] * BS + t % BS;
			if (cs != 0 && T > 1 && frand(0.f, 1.f) < 0.125f)
				slots[t] = -1;
			for (int a = 0; a < 3; a++)
				pos[a * T + t] = (int32_t)frand(0.f, 100000.f);
		}
		float *dqkv = dev_f32(qkv, nqkv, 0);
		uint16_t *dqw = dev_bf16(qw, (size_t)hd, 0),
			 *dkw = dev_bf16(kw, (size_t)hd, 0), *dq = dev_bf16(NULL, nq, 0),
			 *dk16 = dev_bf16(NULL, nc, 0), *dv16 = dev_bf16(NULL, nc, 0);
		uint8_t *dk8, *dv8;
		int32_t *dpos, *dslots;
		CUDA_CHECK(cudaMalloc((void **)&dpos, (size_t)3 * T * 4));
		CUDA_CHECK(cudaMalloc((void **)&dslots, (size_t)T * 4));
		CUDA_CHECK(cudaMemcpy(dpos, pos, (size_t)3 * T * 4, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dslots, slots, (size_t)T * 4, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMalloc((void **)&dk8, nc));
		CUDA_CHECK(cudaMalloc((void **)&dv8, nc));
		/* the bf16 kernel: q and k to compare with */
		kn_qk_norm_rope_cuda(dq, dk16, dv16, dqkv, dqw, dkw, dpos, dslots, T, Hq, KV, hd, sec,
				     theta, 1e-6f, 0);
		CUDA_CHECK(cudaMemcpy(q16, dq, nq * 2, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(k16, dk16, nc * 2, cudaMemcpyDeviceToHost));
		for (size_t si = 0; si < sizeof(scales) / sizeof(scales[0]); si++) {
			if (cs != 0 && si > 0 && si < 3)
				continue;   /* the tie sweeps need the bit-pattern v of case 0 */
			const float ks = scales[si][0], vs = scales[si][1], ik = 1.0f / ks;
			CUDA_CHECK(cudaMemset(dq, 0xff, nq * 2));
			CUDA_CHECK(cudaMemset(dk8, 0xff, nc));
			CUDA_CHECK(cudaMemset(dv8, 0xff, nc));
			kn_qk_norm_rope_fp8_cuda(dq, dk8, dv8, dqkv, dqw, dkw, dpos, dslots, T, Hq, KV,
						 hd, sec, theta, 1e-6f, ks, vs, 0);
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(q8, dq, nq * 2, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(k8, dk8, nc, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(v8, dv8, nc, cudaMemcpyDeviceToHost));
			memset(kref, 0xff, nc);
			memset(vref, 0xff, nc);
			kn_qk_norm_rope_fp8_ref(qref, kref, vref, qkv, qw, kw, pos, slots, T, Hq, KV,
						hd, sec, theta, 1e-6f, ks, vs);
			/* the expected k bytes: the bf16 kernel's k, encoded on the host; unwritten
			 * slots stay 0xff in all of k8, v8, kref, vref (the ref was poisoned too) */
			for (size_t i = 0; i < nc; i++)
				want[i] = k16[i] == 0xffff ? 0xff : f32_to_fp8e4m3(bf16_to_f32(k16[i]) * ik);
			size_t kbad = fp8_diff(k8, want, nc, "k vs bf16 kernel"),
			       vbad = fp8_diff(v8, vref, nc, "v vs ref");
			size_t ksame = 0;
			double num = 0, den = 0;
			for (size_t i = 0; i < nc; i++) {
				ksame += k8[i] == kref[i];
				double a = fp8e4m3_to_f32(k8[i]), r = fp8e4m3_to_f32(kref[i]);
				if (kref[i] != 0xff) {
					num += (a - r) * (a - r);
					den += r * r;
				}
			}
			const double kerr = den > 0 ? sqrt(num / den) : 0;
			fprintf(stderr,
				"qk_norm_rope_fp8 T %d Hq %d KV %d hd %d k_scale %g v_scale %.9g: k bytes "
				"off %zu (vs bf16 kernel), v bytes off %zu (vs ref), k = ref %.5f, k rel "
				"L2 vs ref %.3g\n",
				T, Hq, KV, hd, ks, vs, kbad, vbad, (double)ksame / (double)nc, kerr);
			ck_assert_msg(!memcmp(q8, q16, nq * 2), "qk_norm_rope_fp8: q differs from bf16");
			ck_assert_msg(kbad == 0 && vbad == 0, "qk_norm_rope_fp8: %zu k, %zu v bytes off",
				      kbad, vbad);
			ck_assert_msg(kerr <= 1e-2, "qk_norm_rope_fp8: k rel L2 %g vs ref", kerr);
		}
		CUDA_CHECK(cudaFree(dqkv));
		CUDA_CHECK(cudaFree(dqw));
		CUDA_CHECK(cudaFree(dkw));
		CUDA_CHECK(cudaFree(dq));
		CUDA_CHECK(cudaFree(dk16));
		CUDA_CHECK(cudaFree(dv16));
		CUDA_CHECK(cudaFree(dk8));
		CUDA_CHECK(cudaFree(dv8));
		CUDA_CHECK(cudaFree(dpos));
		CUDA_CHECK(cudaFree(dslots));
		free(qkv);
		free(qw);
		free(kw);
		free(q16);
		free(q8);
		free(k16);
		free(qref);
		free(k8);
		free(v8);
		free(kref);
		free(vref);
		free(want);
		free(pos);
		free(slots);
		free(perm);
	}
}
END_TEST

/* A shuffled pool of n_blocks block ids dealt out to B sequences of ctx[b] positions, bs per
 * block; unused entries of the (B, max_blocks) table are -1, so reading one faults. */
static void pa_block_table(int32_t *bt, const int32_t *ctx, int B, int max_blocks, int bs,
			   int n_blocks)
{
	int32_t *perm = malloc((size_t)n_blocks * sizeof(*perm));
	kt_shuffled_ids(perm, n_blocks);
	int next = 0;
	for (int b = 0; b < B; b++)
		for (int i = 0; i < max_blocks; i++)
			bt[(size_t)b * max_blocks + i] = i < (ctx[b] + bs - 1) / bs ? perm[next++] : -1;
	free(perm);
}

/* Device copy of n host bytes. */
static void *pa_dev(const void *src, size_t n)
{
	void *d;
	CUDA_CHECK(cudaMalloc(&d, n));
	CUDA_CHECK(cudaMemcpy(d, src, n, cudaMemcpyHostToDevice));
	return d;
}

/* A random E4M3 byte that is not NaN: every finite value, ±448 and ±0 included. */
static uint8_t rand_fp8_byte(void)
{
	uint8_t b;
	do
		b = (uint8_t)frand(0.f, 256.f);
	while ((b & 0x7f) == 0x7f);
	return b;
}

/* The fp8 kernel against kn_paged_attention_fp8_ref on the same bytes: the bf16 test's
 * batches (every split count, ragged contexts 1 … 4096, g = 1, 2, 3, 4, 8, hd 32 … 256, block
 * sizes 1 … 64) with two kinds of caches: encoded random values at scale 1, and random bytes
 * over the whole finite range (±448 included) with small scales. Output poisoned with NaN. */
START_TEST(test_kernels_cuda_paged_attention_fp8)
{
	static const int32_t lens[] = { 1, 15, 16, 17, 1000, 4096 };
	static const int cfg[][6] = { /* B, Hq, KV, hd, bs, o */
				      { 64, 16, 8, 128, 16, 0 }, { 64, 4, 2, 32, 16, 0 },
				      { 13, 8, 2, 64, 64, 0 },   { 7, 6, 2, 64, 32, 0 },
				      { 6, 8, 1, 128, 1, 0 },    { 6, 2, 2, 256, 8, 0 },
				      { 1, 16, 8, 128, 16, 4 },  { 1, 16, 8, 128, 16, 5 },
				      { 2, 12, 4, 128, 16, 1 },  { 3, 16, 2, 256, 16, 3 },
				      { 130, 4, 2, 64, 16, 2 },  { 600, 2, 1, 32, 16, 0 },
				      { 5, 8, 8, 128, 32, 1 },   { 9, 16, 4, 64, 16, 2 },
				      { 33, 16, 8, 128, 16, 3 }, { 17, 32, 4, 256, 8, 1 } };
	for (size_t ci = 0; ci < sizeof(cfg) / sizeof(cfg[0]); ci++)
		for (int raw = 0; raw < 2; raw++) {
			const int B = cfg[ci][0], Hq = cfg[ci][1], KV = cfg[ci][2], hd = cfg[ci][3],
				  bs = cfg[ci][4], o = cfg[ci][5];
			const int max_blocks = (4096 + bs - 1) / bs + 1;
			/* raw bytes: |k| ≤ 448·2^-7 = 3.5, |v| ≤ 448·2^-6 */
			const float ks = raw ? 0x1p-7f : 1.0f, vs = raw ? 0x1p-6f : 1.0f;
			int32_t *ctx = malloc((size_t)B * sizeof(*ctx));
			int need = 0;
			for (int b = 0; b < B; b++) {
				ctx[b] = lens[(b + o + b / 6 + raw) % 6];
				need += (ctx[b] + bs - 1) / bs;
			}
			const int n_blocks = need + 7;
			const size_t nq = (size_t)B * Hq * hd, pool = (size_t)n_blocks * bs * KV * hd;
			uint16_t *q = malloc(nq * 2), *ref = malloc(nq * 2), *got = malloc(nq * 2);
			uint8_t *kc = malloc(pool), *vc = malloc(pool);
			int32_t *bt = malloc((size_t)B * max_blocks * sizeof(*bt));
			fill_bf16(q, nq, -2.f, 2.f);
			for (size_t i = 0; i < pool; i++) {
				kc[i] = raw ? rand_fp8_byte() : f32_to_fp8e4m3(frand(-2.f, 2.f));
				vc[i] = raw ? rand_fp8_byte() : f32_to_fp8e4m3(frand(-2.f, 2.f));
			}
			pa_block_table(bt, ctx, B, max_blocks, bs, n_blocks);
			const float scale = 1.0f / sqrtf((float)hd);
			kn_paged_attention_fp8_ref(ref, q, kc, vc, bt, ctx, B, Hq, KV, hd, bs,
						   max_blocks, scale, ks, vs);

			uint16_t *dq = pa_dev(q, nq * 2);
			uint8_t *dk = pa_dev(kc, pool), *dv = pa_dev(vc, pool);
			int32_t *dbt = pa_dev(bt, (size_t)B * max_blocks * sizeof(*bt));
			int32_t *dctx = pa_dev(ctx, (size_t)B * sizeof(*ctx));
			uint16_t *dout = dev_bf16(NULL, nq, 0);
			size_t wsb = kn_paged_attention_workspace_bytes(B, Hq, hd, max_blocks * bs);
			void *ws;
			CUDA_CHECK(cudaMalloc(&ws, wsb));
			ck_assert_int_eq(kn_paged_attention_fp8_cuda(dout, dq, dk, dv, dbt, dctx, B, Hq,
								     KV, hd, bs, max_blocks, scale, ks,
								     vs, ws, wsb - 4, 0),
					 -1);
			ck_assert_int_eq(kn_paged_attention_fp8_cuda(dout, dq, dk, dv, dbt, dctx, B, Hq,
								     KV, hd, bs, max_blocks, scale, ks,
								     vs, ws, wsb, 0),
					 0);
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(got, dout, nq * 2, cudaMemcpyDeviceToHost));
			double err = rel_l2_bf16(got, ref, nq, 0.05);
			fprintf(stderr,
				"paged_attention_fp8 B=%d Hq=%d KV=%d hd=%d bs=%d %s: rel L2 %.3g, exact "
				"%.6f\n",
				B, Hq, KV, hd, bs, raw ? "raw bytes" : "encoded", err,
				exact_rate(got, ref, nq));
			ck_assert_msg(err <= 2e-3, "paged_attention_fp8 B=%d Hq=%d hd=%d: rel L2 %g", B,
				      Hq, hd, err);
			CUDA_CHECK(cudaFree(dq));
			CUDA_CHECK(cudaFree(dk));
			CUDA_CHECK(cudaFree(dv));
			CUDA_CHECK(cudaFree(dbt));
			CUDA_CHECK(cudaFree(dctx));
			CUDA_CHECK(cudaFree(dout));
			CUDA_CHECK(cudaFree(ws));
			free(ctx);
			free(q);
			free(kc);
			free(vc);
			free(ref);
			free(got);
			free(bt);
		}
}
END_TEST

/* Every one of the 256 E4M3 bytes through the kernel's decoder (fp8x2_to_float2): two
 * sequences of one position, whose v rows hold bytes 0 … 127 and 128 … 255 (k zero, so the
 * softmax weight is exactly 1), give out = bf16(v_scale · float(byte)) exactly — a bf16 holds
 * every E4M3 value — with NaN for the two NaN bytes. The sign of a zero is not compared (the
 * sums add +0 to it). */
/* Scales that are not positive and finite are refused before anything is launched or read. */
START_TEST(test_kernels_cuda_paged_attention_fp8_bad_scales)
{
	static const float bad[][3] = { { 0.088f, 0.f, 1.f },	   { 0.088f, -1.f, 1.f },
					{ 0.088f, 1.f, 0.f },	   { 0.088f, NAN, 1.f },
					{ 0.088f, 1.f, INFINITY }, { 0.f, 1.f, 1.f } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_int_eq(kn_paged_attention_fp8_cuda(NULL, NULL, NULL, NULL, NULL, NULL, 1,
							     16, 8, 128, 16, 1, bad[i][0],
							     bad[i][1], bad[i][2], NULL, 0, 0),
				 -1);
	/* each finite and positive, but the folded score scale 4 · 1e38 is not finite */
	ck_assert_int_eq(kn_paged_attention_fp8_cuda(NULL, NULL, NULL, NULL, NULL, NULL, 1, 16, 8,
						     128, 16, 1, 4.f, 1e38f, 1.f, NULL, 0, 0),
			 -1);
}
END_TEST

START_TEST(test_kernels_cuda_paged_attention_fp8_decode)
{
	enum { B = 2, HQ = 2, KV = 1, HD = 128, BS = 16 };
	static const float vscales[] = { 1.0f, 0x1p-5f, 4.0f };
	uint8_t kc[B * BS * HD] = { 0 }, vc[B * BS * HD];
	memset(vc, 0x11, sizeof(vc));
	for (int b = 0; b < B; b++)
		for (int d = 0; d < HD; d++)
			vc[(size_t)b * BS * HD + d] = (uint8_t)(b * HD + d);   /* block b, row 0 */
	int32_t bt[B] = { 0, 1 }, ctx[B] = { 1, 1 };
	uint16_t q[B * HQ * HD], got[B * HQ * HD];
	fill_bf16(q, B * HQ * HD, -2.f, 2.f);
	uint16_t *dq = pa_dev(q, sizeof(q)), *dout = dev_bf16(NULL, B * HQ * HD, 0);
	uint8_t *dk = pa_dev(kc, sizeof(kc)), *dv = pa_dev(vc, sizeof(vc));
	int32_t *dbt = pa_dev(bt, sizeof(bt)), *dctx = pa_dev(ctx, sizeof(ctx));
	size_t wsb = kn_paged_attention_workspace_bytes(B, HQ, HD, BS);
	void *ws;
	CUDA_CHECK(cudaMalloc(&ws, wsb));
	for (size_t si = 0; si < sizeof(vscales) / sizeof(vscales[0]); si++) {
		CUDA_CHECK(cudaMemset(dout, 0xff, sizeof(got)));
		ck_assert_int_eq(kn_paged_attention_fp8_cuda(dout, dq, dk, dv, dbt, dctx, B, HQ, KV,
							     HD, BS, 1, 0.1f, 1.0f, vscales[si], ws,
							     wsb, 0),
				 0);
		CUDA_CHECK(cudaMemcpy(got, dout, sizeof(got), cudaMemcpyDeviceToHost));
		int bad = 0;
		for (int b = 0; b < B; b++)
			for (int h = 0; h < HQ; h++)
				for (int d = 0; d < HD; d++) {
					const int byte = b * HD + d;
					const float want = fp8e4m3_to_f32((uint8_t)byte) * vscales[si];
					const float g = bf16_to_f32(got[(b * HQ + h) * HD + d]);
					if (isnan(want) ? !isnan(g) : g != want) {
						if (bad++ < 5)
							fprintf(stderr, "  byte 0x%02x: got %g want %g\n",
								byte, g, want);
					}
				}
		fprintf(stderr, "paged_attention_fp8 decode, v_scale %g: %d of 256 bytes off\n",
			vscales[si], bad / HQ);
		ck_assert_int_eq(bad, 0);
	}
	CUDA_CHECK(cudaFree(dq));
	CUDA_CHECK(cudaFree(dout));
	CUDA_CHECK(cudaFree(dk));
	CUDA_CHECK(cudaFree(dv));
	CUDA_CHECK(cudaFree(dbt));
	CUDA_CHECK(cudaFree(dctx));
	CUDA_CHECK(cudaFree(ws));
}
END_TEST

START_TEST(test_kernels_cuda_paged_attention)
{
	/* ctx lengths 1, 15, 16, 17, 1000, 4096 mixed in every batch, starting at lens[o]; the
	 * batch sizes give 16 CTAs per (sequence, kv head) (B ≤ 2), 8 (B = 3), 4 (B = 6, 7),
	 * 2 (B = 13, 17, 33) and 1 (B ≥ 64); from B = 8 the pipelined kernel (K/V through a
	 * shared-memory ring; the fp8 kernel always), whose new position lands in the ring's
	 * first pieces (ctx 15 … 17) or in a later one (1000, 4096) */
	static const int32_t lens[] = { 1, 15, 16, 17, 1000, 4096 };
	static const int cfg[][6] = { /* B, Hq, KV, hd, bs, o */
				      { 64, 16, 8, 128, 16, 0 }, { 64, 4, 2, 32, 16, 0 },
				      { 13, 8, 2, 64, 64, 0 },   { 7, 6, 2, 64, 32, 0 },
				      { 6, 8, 1, 128, 1, 0 },    { 6, 2, 2, 256, 8, 0 },
				      { 1, 16, 8, 128, 16, 4 },  { 1, 16, 8, 128, 16, 5 },
				      { 2, 12, 4, 128, 16, 1 },  { 3, 16, 2, 256, 16, 3 },
				      { 130, 4, 2, 64, 16, 2 },  { 600, 2, 1, 32, 16, 0 },
				      { 33, 16, 8, 128, 16, 3 }, { 17, 32, 4, 256, 8, 1 } };
	for (size_t ci = 0; ci < sizeof(cfg) / sizeof(cfg[0]); ci++) {
		const int B = cfg[ci][0], Hq = cfg[ci][1], KV = cfg[ci][2], hd = cfg[ci][3],
			  bs = cfg[ci][4], o = cfg[ci][5];
		const int max_blocks = (4096 + bs - 1) / bs + 1;
		int32_t *ctx = malloc((size_t)B * sizeof(*ctx));
		int need = 0;
		for (int b = 0; b < B; b++) {
			ctx[b] = lens[(b + o + b / 6) % 6];
			need += (ctx[b] + bs - 1) / bs;
		}
		const int n_blocks = need + 7;
		const size_t nq = (size_t)B * Hq * hd, pool = (size_t)n_blocks * bs * KV * hd;
		uint16_t *q = malloc(nq * 2), *kc = malloc(pool * 2), *vc = malloc(pool * 2),
			 *ref = malloc(nq * 2), *got = malloc(nq * 2);
		int32_t *bt = malloc((size_t)B * max_blocks * sizeof(*bt));
		fill_bf16(q, nq, -2.f, 2.f);
		fill_bf16(kc, pool, -2.f, 2.f);
		fill_bf16(vc, pool, -2.f, 2.f);
		pa_block_table(bt, ctx, B, max_blocks, bs, n_blocks);
		const float scale = 1.0f / sqrtf((float)hd);
		kn_paged_attention_ref(ref, q, kc, vc, bt, ctx, B, Hq, KV, hd, bs, max_blocks, scale);

		uint16_t *dq = pa_dev(q, nq * 2), *dk = pa_dev(kc, pool * 2), *dv = pa_dev(vc, pool * 2);
		int32_t *dbt = pa_dev(bt, (size_t)B * max_blocks * sizeof(*bt));
		int32_t *dctx = pa_dev(ctx, (size_t)B * sizeof(*ctx));
		uint16_t *dout = dev_bf16(NULL, nq, 0);
		size_t wsb = kn_paged_attention_workspace_bytes(B, Hq, hd, max_blocks * bs);
		void *ws;
		CUDA_CHECK(cudaMalloc(&ws, wsb));
		CUDA_CHECK(cudaMemset(ws, 0xff, wsb));
		ck_assert_int_eq(kn_paged_attention_cuda(dout, dq, dk, dv, dbt, dctx, B, Hq, KV, hd, bs,
							 max_blocks, scale, ws, wsb - 4, 0),
				 -1);
		ck_assert_int_eq(kn_paged_attention_cuda(dout, dq, dk, dv, dbt, dctx, B, Hq, KV, hd, bs,
							 max_blocks, scale, ws, wsb, 0),
				 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dout, nq * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, nq, 0.05), max_abs = 0;
		for (size_t i = 0; i < nq; i++)
			max_abs = fmax(max_abs, fabs(bf16_to_f32(got[i]) - bf16_to_f32(ref[i])));
		fprintf(stderr,
			"paged_attention B=%d Hq=%d KV=%d hd=%d bs=%d: rel L2 %.3g, max abs %.3g, "
			"exact %.6f\n",
			B, Hq, KV, hd, bs, err, max_abs, exact_rate(got, ref, nq));
		ck_assert_msg(err <= 1e-2, "paged_attention B=%d Hq=%d hd=%d: rel L2 error %g", B, Hq,
			      hd, err);
		CUDA_CHECK(cudaFree(dq));
		CUDA_CHECK(cudaFree(dk));
		CUDA_CHECK(cudaFree(dv));
		CUDA_CHECK(cudaFree(dbt));
		CUDA_CHECK(cudaFree(dctx));
		CUDA_CHECK(cudaFree(dout));
		CUDA_CHECK(cudaFree(ws));
		free(ctx);
		free(q);
		free(kc);
		free(vc);
		free(ref);
		free(got);
		free(bt);
	}
}
END_TEST

/* µs per launch of the decode attention (Qwen3-VL-2B's shape: Hq 16, KV 8, hd 128, bs 16) for
 * B sequences of ctx positions, fp8 or bf16 cache: a CUDA graph of REPS launches (PDL on, as
 * in the engine), each on its own copy of the K/V pool while the copies together exceed the
 * L2 (at most REPS copies), so every launch reads its K/V from DRAM; median over 10 graph
 * launches after 3 warm-up ones. out (B·16·128 bf16, host) receives what the last launch
 * wrote, for the caller to check. */
static double pa_time_us(int fp8, int B, int ctx, uint16_t *out)
{
	enum { HQ = 16, KV = 8, HD = 128, BS = 16, REPS = 20, RUNS = 10 };
	const int max_blocks = (ctx + BS - 1) / BS, nbc = B * max_blocks;
	const size_t esz = fp8 ? 1 : 2, row = (size_t)KV * HD;
	const size_t copy_bytes = (size_t)nbc * BS * row * esz;
	int copies = (int)((size_t)200000000 / (2 * copy_bytes)) + 1;
	copies = copies > REPS ? REPS : copies;
	const size_t pool = (size_t)copies * nbc * BS * row, nq = (size_t)B * HQ * HD;
	const size_t tile = (size_t)1 << 22;
	uint16_t *h = malloc(tile * 2);
	uint8_t *h8 = malloc(tile);
	fill_bf16(h, tile, -2.f, 2.f);
	for (size_t i = 0; i < tile; i++)
		h8[i] = f32_to_fp8e4m3(bf16_to_f32(h[i]));
	uint8_t *dk, *dv;
	CUDA_CHECK(cudaMalloc((void **)&dk, pool * esz));
	CUDA_CHECK(cudaMalloc((void **)&dv, pool * esz));
	for (size_t off = 0; off < pool * esz; off += tile * esz) {
		size_t n = pool * esz - off < tile * esz ? pool * esz - off : tile * esz;
		const uint8_t *src = fp8 ? h8 : (const uint8_t *)h;
		CUDA_CHECK(cudaMemcpy(dk + off, src, n, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dv + off, src + (tile * esz - n), n, cudaMemcpyHostToDevice));
	}
	int32_t *ctxs = malloc((size_t)B * sizeof(*ctxs)), *bt = malloc((size_t)copies * nbc * 4);
	for (int b = 0; b < B; b++)
		ctxs[b] = ctx;
	for (int c = 0; c < copies; c++) {
		pa_block_table(bt + (size_t)c * nbc, ctxs, B, max_blocks, BS, nbc);
		for (int i = 0; i < nbc; i++)
			bt[(size_t)c * nbc + i] += c * nbc;
	}
	uint16_t *dq = pa_dev(h, nq * 2), *dout = dev_bf16(NULL, nq, 0);
	int32_t *dbt = pa_dev(bt, (size_t)copies * nbc * 4), *dctx = pa_dev(ctxs, (size_t)B * 4);
	size_t wsb = kn_paged_attention_workspace_bytes(B, HQ, HD, ctx);
	void *ws;
	CUDA_CHECK(cudaMalloc(&ws, wsb));
	cudaStream_t st;
	CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
	for (int r = 0; r < REPS; r++) {
		const int32_t *btc = dbt + (size_t)(r % copies) * nbc;
		int rc = fp8 ? kn_paged_attention_fp8_cuda(dout, dq, dk, dv, btc, dctx, B, HQ, KV,
							  HD, BS, max_blocks, 0.0883883f, 1.0f,
							  1.0f, ws, wsb, st)
			     : kn_paged_attention_cuda(dout, dq, (const uint16_t *)dk,
						       (const uint16_t *)dv, btc, dctx, B, HQ, KV,
						       HD, BS, max_blocks, 0.0883883f, ws, wsb, st);
		ck_assert_int_eq(rc, 0);
	}
	CUDA_CHECK(cudaStreamEndCapture(st, &graph));
	CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	float ms[RUNS];
	for (int r = -3; r < RUNS; r++) {
		CUDA_CHECK(cudaEventRecord(e0, st));
		CUDA_CHECK(cudaGraphLaunch(exec, st));
		CUDA_CHECK(cudaEventRecord(e1, st));
		CUDA_CHECK(cudaEventSynchronize(e1));
		if (r >= 0)
			CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	const double us = median_ms(ms, RUNS) * 1e3 / REPS;
	CUDA_CHECK(cudaMemcpy(out, dout, nq * 2, cudaMemcpyDeviceToHost));
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	CUDA_CHECK(cudaGraphExecDestroy(exec));
	CUDA_CHECK(cudaGraphDestroy(graph));
	CUDA_CHECK(cudaStreamDestroy(st));
	CUDA_CHECK(cudaFree(dk));
	CUDA_CHECK(cudaFree(dv));
	CUDA_CHECK(cudaFree(dq));
	CUDA_CHECK(cudaFree(dout));
	CUDA_CHECK(cudaFree(dbt));
	CUDA_CHECK(cudaFree(dctx));
	CUDA_CHECK(cudaFree(ws));
	free(h);
	free(h8);
	free(ctxs);
	free(bt);
	return us;
}

/* Prints the bf16 and fp8 caches side by side (no assertion on the times); asserts that what
 * was timed is a real answer: every output finite, not all zero. */
START_TEST(test_kernels_cuda_paged_attention_timing)
{
	static const int cfg[][2] = { { 1, 640 },   { 2, 640 },   { 8, 640 },  { 32, 576 },
				      { 64, 576 },  { 128, 576 }, { 256, 576 } };
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	fprintf(stderr,
		"paged_attention timing | %s | graph of 20 launches, K/V copies rotated past L2, "
		"median of 10 | Hq=16 KV=8 hd=128 bs=16\n"
		"    B   ctx |  bf16 us   GB/s |   fp8 us   GB/s | fp8/bf16\n",
		prop.name);
	uint16_t *out = malloc((size_t)256 * 16 * 128 * 2);
	for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
		const int B = cfg[i][0], ctx = cfg[i][1];
		const size_t n = (size_t)B * 16 * 128;
		double t[2];
		for (int fp8 = 0; fp8 < 2; fp8++) {
			t[fp8] = pa_time_us(fp8, B, ctx, out);
			size_t nonzero = 0;
			for (size_t j = 0; j < n; j++) {
				const float v = bf16_to_f32(out[j]);
				ck_assert_msg(isfinite(v), "paged_attention%s B=%d: output %zu is %g",
					      fp8 ? "_fp8" : "", B, j, v);
				nonzero += v != 0.f;
			}
			ck_assert_msg(nonzero > 0, "paged_attention%s B=%d: all outputs zero",
				      fp8 ? "_fp8" : "", B);
		}
		const double t16 = t[0], t8 = t[1];
		const double kv16 = 2.0 * B * ctx * 8 * 128 * 2;   /* K + V bytes, bf16 */
		fprintf(stderr, "  %3d  %4d | %8.2f %6.0f | %8.2f %6.0f |   %.3f\n", B, ctx, t16,
			kv16 / (t16 * 1e3), t8, kv16 / 2 / (t8 * 1e3), t8 / t16);
	}
	free(out);
}
END_TEST

/* Planted rows for logits_topk: by b % 6, 1: a three-way tie at the max; 2: ties inside the
 * top 20; 3: about half the ids masked (-inf, some NaN); 4: all masked; else random. */
static void lt_fill(float *x, int B, int V)
{
	for (int b = 0; b < B; b++) {
		float *r = x + (size_t)b * V;
		for (int v = 0; v < V; v++)
			r[v] = frand(-12.f, 12.f);
		switch (b % 6) {
		case 1:
			for (int j = 0; j < 3; j++)
				r[(size_t)(V - 1) * j / 2] = 30.f;
			break;
		case 2:
			for (int j = 0; j < 12 && j < V; j++)
				r[(size_t)(V - 1) * j / 11] = 20.f + (float)(j % 3);
			break;
		case 3:
			for (int v = b % 2; v < V; v += 2)
				r[v] = v % 3 == 0 ? NAN : -INFINITY;
			break;
		case 4:
			for (int v = 0; v < V; v++)
				r[v] = -INFINITY;
			break;
		}
	}
}

START_TEST(test_kernels_cuda_logits_topk)
{
	static const int Bs[] = { 1, 7, 256 }, Vs[] = { 1, 5, 1000, 4099, 151936 },
			 ks[] = { 0, 1, 5, 20 };
	for (size_t bi = 0; bi < sizeof(Bs) / sizeof(Bs[0]); bi++)
		for (size_t vi = 0; vi < sizeof(Vs) / sizeof(Vs[0]); vi++) {
			int B = Bs[bi], V = Vs[vi];
			size_t n = (size_t)B * V, nk = (size_t)B * 20;
			float *x = malloc(n * sizeof(*x)), *lse = malloc(B * sizeof(float)),
			      *mv = malloc(B * sizeof(float)), *tv = malloc(nk * sizeof(float)),
			      *glse = malloc(B * sizeof(float)), *gmv = malloc(B * sizeof(float)),
			      *gtv = malloc(nk * sizeof(float));
			int32_t *am = malloc(B * sizeof(int32_t)), *ti = malloc(nk * sizeof(int32_t)),
				*gam = malloc(B * sizeof(int32_t)), *gti = malloc(nk * sizeof(int32_t));
			lt_fill(x, B, V);
			float *dx, *dlse, *dmv, *dtv;
			int32_t *dam, *dti;
			CUDA_CHECK(cudaMalloc((void **)&dx, n * sizeof(float)));
			CUDA_CHECK(cudaMalloc((void **)&dlse, B * sizeof(float)));
			CUDA_CHECK(cudaMalloc((void **)&dmv, B * sizeof(float)));
			CUDA_CHECK(cudaMalloc((void **)&dtv, nk * sizeof(float)));
			CUDA_CHECK(cudaMalloc((void **)&dam, B * sizeof(int32_t)));
			CUDA_CHECK(cudaMalloc((void **)&dti, nk * sizeof(int32_t)));
			CUDA_CHECK(cudaMemcpy(dx, x, n * sizeof(float), cudaMemcpyHostToDevice));
			for (size_t ki = 0; ki < sizeof(ks) / sizeof(ks[0]); ki++) {
				int k = ks[ki];
				size_t nt = (size_t)B * k;
				/* poison: NaN floats, 0x7f7f7f7f ids */
				CUDA_CHECK(cudaMemset(dlse, 0xff, B * sizeof(float)));
				CUDA_CHECK(cudaMemset(dmv, 0xff, B * sizeof(float)));
				CUDA_CHECK(cudaMemset(dtv, 0xff, nk * sizeof(float)));
				CUDA_CHECK(cudaMemset(dam, 0x7f, B * sizeof(int32_t)));
				CUDA_CHECK(cudaMemset(dti, 0x7f, nk * sizeof(int32_t)));
				kn_logits_topk_ref(am, mv, lse, ti, tv, x, B, V, k);
				kn_logits_topk_cuda(dam, dmv, dlse, dti, dtv, dx, B, V, k, 0);
				CUDA_CHECK(cudaDeviceSynchronize());
				CUDA_CHECK(cudaMemcpy(gam, dam, B * sizeof(int32_t), cudaMemcpyDeviceToHost));
				CUDA_CHECK(cudaMemcpy(gmv, dmv, B * sizeof(float), cudaMemcpyDeviceToHost));
				CUDA_CHECK(cudaMemcpy(glse, dlse, B * sizeof(float), cudaMemcpyDeviceToHost));
				CUDA_CHECK(cudaMemcpy(gti, dti, nk * sizeof(int32_t), cudaMemcpyDeviceToHost));
				CUDA_CHECK(cudaMemcpy(gtv, dtv, nk * sizeof(float), cudaMemcpyDeviceToHost));
				double max_rel = 0;
				for (int b = 0; b < B; b++) {
					ck_assert_msg(gam[b] == am[b], "logits_topk B=%d V=%d k=%d row %d: argmax %d want %d",
						      B, V, k, b, gam[b], am[b]);
					ck_assert_msg(gmv[b] == mv[b], "logits_topk B=%d V=%d k=%d row %d: max %g want %g",
						      B, V, k, b, gmv[b], mv[b]);
					if (isinf(lse[b])) {
						ck_assert_msg(glse[b] == lse[b], "logits_topk row %d: lse %g want %g", b, glse[b], lse[b]);
					} else {
						double rel = fabs((double)glse[b] - lse[b]) / fmax(1.0, fabs(lse[b]));
						max_rel = fmax(max_rel, rel);
						ck_assert_msg(rel <= 1e-5, "logits_topk B=%d V=%d k=%d row %d: lse %.9g want %.9g",
							      B, V, k, b, glse[b], lse[b]);
					}
				}
				for (size_t i = 0; i < nt; i++) {
					ck_assert_msg(gti[i] == ti[i], "logits_topk B=%d V=%d k=%d at %zu: id %d want %d",
						      B, V, k, i, gti[i], ti[i]);
					/* the values are copies of logits: exact (1e-5 relative asked) */
					ck_assert_msg(gtv[i] == tv[i], "logits_topk B=%d V=%d k=%d at %zu: val %g want %g",
						      B, V, k, i, gtv[i], tv[i]);
				}
				if (k == 20)
					fprintf(stderr, "logits_topk B=%d V=%d k=0,1,5,20: ids exact, lse max rel %.3g\n",
						B, V, max_rel);
			}
			CUDA_CHECK(cudaFree(dx));
			CUDA_CHECK(cudaFree(dlse));
			CUDA_CHECK(cudaFree(dmv));
			CUDA_CHECK(cudaFree(dtv));
			CUDA_CHECK(cudaFree(dam));
			CUDA_CHECK(cudaFree(dti));
			free(x);
			free(lse);
			free(mv);
			free(tv);
			free(glse);
			free(gmv);
			free(gtv);
			free(am);
			free(ti);
			free(gam);
			free(gti);
		}
}
END_TEST

/* Not an assertion: one table line for the decode batch over Qwen3-VL's vocabulary. */
START_TEST(test_kernels_cuda_logits_topk_timing)
{
	enum { B = 256, V = 151936, K = 20, REPS = 20 };
	const size_t n = (size_t)B * V;
	float *x = malloc(n * sizeof(*x)), *dx, *dlse, *dtv;
	int32_t *dam, *dti;
	lt_fill(x, B, V);
	CUDA_CHECK(cudaMalloc((void **)&dx, n * sizeof(float)));
	CUDA_CHECK(cudaMalloc((void **)&dlse, B * sizeof(float)));
	CUDA_CHECK(cudaMalloc((void **)&dtv, (size_t)B * K * sizeof(float)));
	CUDA_CHECK(cudaMalloc((void **)&dam, B * sizeof(int32_t)));
	CUDA_CHECK(cudaMalloc((void **)&dti, (size_t)B * K * sizeof(int32_t)));
	CUDA_CHECK(cudaMemcpy(dx, x, n * sizeof(float), cudaMemcpyHostToDevice));
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	float ms[REPS];
	for (int r = -3; r < REPS; r++) {
		CUDA_CHECK(cudaEventRecord(e0, 0));
		kn_logits_topk_cuda(dam, NULL, dlse, dti, dtv, dx, B, V, K, 0);
		CUDA_CHECK(cudaEventRecord(e1, 0));
		CUDA_CHECK(cudaEventSynchronize(e1));
		if (r >= 0)
			CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	double med = median_ms(ms, REPS);
	ck_assert(med > 0 && isfinite(med));
	/* what was timed is a real answer: every row's arg max is a valid id and its lse finite */
	int32_t *am = malloc(B * sizeof(int32_t));
	float *lse = malloc(B * sizeof(float));
	CUDA_CHECK(cudaMemcpy(am, dam, B * sizeof(int32_t), cudaMemcpyDeviceToHost));
	CUDA_CHECK(cudaMemcpy(lse, dlse, B * sizeof(float), cudaMemcpyDeviceToHost));
	for (int b = 0; b < B; b++) {
		ck_assert(am[b] >= 0 && am[b] < V);
		ck_assert(isfinite(lse[b]) || (isinf(lse[b]) && lse[b] < 0));
	}
	free(am);
	free(lse);
	double bytes = (double)n * sizeof(float);
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	fprintf(stderr,
		"logits_topk timing | %s | events, 3 warm-up, median of %d | B=%d V=%d k=%d | %.1f us "
		"| logits %.1f MB | %.0f GB/s\n",
		prop.name, REPS, B, V, K, med * 1e3, bytes / 1e6, bytes / (med * 1e-3) / 1e9);
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	CUDA_CHECK(cudaFree(dx));
	CUDA_CHECK(cudaFree(dlse));
	CUDA_CHECK(cudaFree(dtv));
	CUDA_CHECK(cudaFree(dam));
	CUDA_CHECK(cudaFree(dti));
	free(x);
}
END_TEST

/* ---- gemm ---- */

START_TEST(test_kernels_cuda_gemm)
{
	/* res: 0 none, 1 a separate residual, 2 in place (y is the residual) */
	static const int cases[][4] = { { 1, 1, 1, 0 },	       { 1, 2048, 2048, 0 },
					{ 7, 6144, 2048, 0 },  { 33, 2048, 6144, 0 },
					{ 300, 4096, 2048, 0 }, { 1, 151936, 2048, 0 },
					{ 5, 17, 13, 0 },      { 5, 17, 13, 1 },
					{ 7, 6144, 2048, 1 },  { 33, 2048, 6144, 2 },
					{ 1, 1, 1, 2 },        { 2, 12289, 2048, 0 },
					{ 3, 1001, 2048, 1 },  { 4, 4099, 6144, 2 },
					{ 4, 3, 8, 0 } };
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		int M = cases[s][0], N = cases[s][1], K = cases[s][2], res = cases[s][3];
		size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2), *r = malloc(ny * 2),
			 *ref = malloc(ny * 2), *got = malloc(ny * 2);
		for (size_t i = 0; i < nx; i++)
			x[i] = f32_to_bf16(frand(-1.f, 1.f));
		for (size_t i = 0; i < nw; i++)
			w[i] = f32_to_bf16(frand(-0.05f, 0.05f));
		for (size_t i = 0; i < ny; i++)
			r[i] = f32_to_bf16(frand(-1.f, 1.f));
		kn_gemm_ref(ref, x, w, res ? r : NULL, M, N, K);

		uint16_t *dx, *dw, *dy, *dr = NULL;
		CUDA_CHECK(cudaMalloc((void **)&dx, nx * 2));
		CUDA_CHECK(cudaMalloc((void **)&dw, nw * 2));
		CUDA_CHECK(cudaMalloc((void **)&dy, ny * 2));
		CUDA_CHECK(cudaMemcpy(dx, x, nx * 2, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dw, w, nw * 2, cudaMemcpyHostToDevice));
		if (res == 2) {
			CUDA_CHECK(cudaMemcpy(dy, r, ny * 2, cudaMemcpyHostToDevice));
			dr = dy;
		} else {
			CUDA_CHECK(cudaMemset(dy, 0xff, ny * 2)); /* 0xffff is a bf16 NaN */
			if (res == 1) {
				CUDA_CHECK(cudaMalloc((void **)&dr, ny * 2));
				CUDA_CHECK(cudaMemcpy(dr, r, ny * 2, cudaMemcpyHostToDevice));
			}
		}
		kn_gemm_cuda(ctx, dy, dx, dw, dr, M, N, K, 0);
		if (res != 2) /* again: the cached plan must give the same answer */
			kn_gemm_cuda(ctx, dy, dx, dw, dr, M, N, K, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, ny * 2, cudaMemcpyDeviceToHost));
		double e = rel_l2_bf16(got, ref, ny, 0.05);
		fprintf(stderr, "gemm M=%d N=%d K=%d residual=%s: rel L2 %.3g\n", M, N, K,
			res == 0 ? "none" : res == 1 ? "separate" : "in place", e);
		ck_assert_msg(e <= 1e-2, "gemm M=%d N=%d K=%d res=%d: rel L2 %g", M, N, K, res, e);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		if (res == 1)
			CUDA_CHECK(cudaFree(dr));
		free(x);
		free(w);
		free(r);
		free(ref);
		free(got);
	}
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* kn_gemm_f32_cuda against kn_gemm_f32_ref (fp32 out, fp32 residual): M = 1…4 on the GEMV,
 * M = 5, 37, 300 (and shapes the GEMV refuses: K % 8 != 0) on cuBLASLt, K = 0 (a copy or zeros),
 * with no residual, a separate one and in place (y is the residual, as o_proj and down_proj add
 * into the residual stream). With no residual the same shape also runs through kn_gemm_cuda on
 * the same ctx (the plan cache must keep the output types apart), and on the GEMV its bf16
 * result must be the fp32 one rounded, bit for bit (one kernel, one summation order).
 * Cases {M, N, K, residual (0 none, 1 separate, 2 in place)}. */
START_TEST(test_kernels_cuda_gemm_f32)
{
	static const int cases[][4] = {
		{ 1, 2048, 2048, 0 },  { 1, 4096, 2048, 1 },  { 1, 2048, 6144, 2 },
		{ 2, 4099, 2048, 0 },  { 2, 12288, 2048, 2 }, { 3, 1001, 6144, 1 },
		{ 3, 2048, 2048, 2 },  { 4, 12288, 2048, 0 }, { 4, 2049, 6144, 2 },
		{ 4, 3, 8, 1 },        { 1, 1, 1, 0 },        { 2, 5, 13, 2 },
		{ 5, 17, 13, 1 },      { 5, 2048, 2048, 2 },  { 5, 4096, 2048, 0 },
		{ 37, 4096, 2048, 0 }, { 37, 2048, 6144, 2 }, { 37, 12288, 2048, 1 },
		{ 300, 12288, 2048, 0 }, { 300, 2048, 2048, 1 }, { 300, 2048, 6144, 2 },
		{ 3, 5, 0, 1 },        { 3, 5, 0, 0 },        { 2, 7, 0, 2 },
	};
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		int M = cases[s][0], N = cases[s][1], K = cases[s][2], res = cases[s][3];
		size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		uint16_t *x = malloc(nx * 2 + 2), *w = malloc(nw * 2 + 2), *ref16 = malloc(ny * 2),
			 *got16 = malloc(ny * 2);
		float *r = malloc(ny * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4);
		fill_bf16(x, nx, -1.f, 1.f);
		fill_bf16(w, nw, -0.05f, 0.05f);
		fill_f32(r, ny, -1.f, 1.f);
		kn_gemm_f32_ref(ref, x, w, res ? r : NULL, M, N, K);

		uint16_t *dx = dev_bf16(x, nx, 0), *dw = dev_bf16(w, nw, 0);
		float *dy = dev_f32(res == 2 ? r : NULL, ny, 0), *dr = NULL;
		if (res == 1)
			dr = dev_f32(r, ny, 0);
		if (res == 2)
			dr = dy;
		kn_gemm_f32_cuda(ctx, dy, dx, dw, dr, M, N, K, 0);
		if (res != 2) /* again: the cached plan must give the same answer */
			kn_gemm_f32_cuda(ctx, dy, dx, dw, dr, M, N, K, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, ny * 4, cudaMemcpyDeviceToHost));
		double e = rel_l2_f32(got, ref, ny, 1e-4);
		fprintf(stderr, "gemm_f32 M=%d N=%d K=%d residual=%s: rel L2 %.3g\n", M, N, K,
			res == 0 ? "none" : res == 1 ? "separate" : "in place", e);
		/* fp32 sums of exact products against double: ~1e-7, far below 1e-4 */
		ck_assert_msg(e <= 1e-4, "gemm_f32 M=%d N=%d K=%d res=%d: rel L2 %g", M, N, K, res, e);

		if (res == 0) {
			uint16_t *dy16 = dev_bf16(NULL, ny, 0);
			kn_gemm_cuda(ctx, dy16, dx, dw, NULL, M, N, K, 0);
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(got16, dy16, ny * 2, cudaMemcpyDeviceToHost));
			kn_gemm_ref(ref16, x, w, NULL, M, N, K);
			double e16 = rel_l2_bf16(got16, ref16, ny, 0.05);
			ck_assert_msg(e16 <= 1e-2, "gemm (bf16) M=%d N=%d K=%d after gemm_f32: rel L2 %g",
				      M, N, K, e16);
			if (M <= 4 && K % 8 == 0 && K > 0) {   /* the GEMV: same sums */
				size_t same = 0;
				for (size_t i = 0; i < ny; i++)
					same += got16[i] == f32_to_bf16(got[i]);
				fprintf(stderr, "  bf16(gemm_f32) = gemm: %zu of %zu\n", same, ny);
				ck_assert_msg(same == ny, "gemm_f32 M=%d N=%d K=%d: bf16 of it differs "
					      "from kn_gemm_cuda in %zu places", M, N, K, ny - same);
			}
			CUDA_CHECK(cudaFree(dy16));
		}
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		if (res == 1)
			CUDA_CHECK(cudaFree(dr));
		free(x);
		free(w);
		free(ref16);
		free(got16);
		free(r);
		free(ref);
		free(got);
	}
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* kn_gemm_f32_f16_cuda against kn_gemm_f32_f16_ref: fp16 operands with all 11 bits used, on
 * the GEMV (M ≤ 4) and cuBLASLt (CUDA_R_16F), no residual, separate, in place; then the same
 * shape on fp16 copies of bf16 operands must give kn_gemm_f32_cuda's answer on the bf16 ones
 * (bit for bit on the GEMV: one summation order, the same products). Cases {M, N, K, res}. */
START_TEST(test_kernels_cuda_gemm_f32_f16)
{
	static const int cases[][4] = {
		{ 1, 4096, 2048, 0 },  { 1, 12288, 2048, 0 }, { 2, 4099, 2048, 1 },
		{ 4, 12288, 2048, 2 }, { 3, 5, 13, 1 },       { 5, 4096, 2048, 0 },
		{ 37, 12288, 2048, 2 }, { 300, 4096, 2048, 1 },
	};
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		int M = cases[s][0], N = cases[s][1], K = cases[s][2], res = cases[s][3];
		size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2);
		float *r = malloc(ny * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4);
		for (size_t i = 0; i < nx; i++)
			x[i] = f32_to_f16(frand(-4.f, 4.f));
		for (size_t i = 0; i < nw; i++)
			w[i] = f32_to_f16(frand(-0.05f, 0.05f));
		fill_f32(r, ny, -1.f, 1.f);
		kn_gemm_f32_f16_ref(ref, x, w, res ? r : NULL, M, N, K);
		uint16_t *dx = dev_bf16(x, nx, 0), *dw = dev_bf16(w, nw, 0);
		float *dy = dev_f32(res == 2 ? r : NULL, ny, 0), *dr = res == 1 ? dev_f32(r, ny, 0) :
								  res == 2 ? dy : NULL;
		kn_gemm_f32_f16_cuda(ctx, dy, dx, dw, dr, M, N, K, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, ny * 4, cudaMemcpyDeviceToHost));
		double e = rel_l2_f32(got, ref, ny, 1e-4);
		fprintf(stderr, "gemm_f32_f16 M=%d N=%d K=%d residual=%s: rel L2 %.3g\n", M, N, K,
			res == 0 ? "none" : res == 1 ? "separate" : "in place", e);
		ck_assert_msg(e <= 1e-5, "gemm_f32_f16 M=%d N=%d K=%d res=%d: rel L2 %g", M, N, K, res,
			      e);
		/* bf16 operands and their fp16 copies: the same products (magnitudes ≥ 1e-3, well
		 * inside the 2^-17 … 65280 where every bf16 is an fp16) */
		for (size_t i = 0; i < nx; i++) {
			float v = frand(-4.f, 4.f);
			x[i] = f32_to_bf16(fabsf(v) < 1e-3f ? 1e-3f : v);
		}
		for (size_t i = 0; i < nw; i++) {
			float v = frand(-0.05f, 0.05f);
			w[i] = f32_to_bf16(fabsf(v) < 1e-3f ? -1e-3f : v);
		}
		uint16_t *dxb = dev_bf16(x, nx, 0), *dwb = dev_bf16(w, nw, 0);
		for (size_t i = 0; i < nx; i++)
			x[i] = bf16_to_f16(x[i]);
		for (size_t i = 0; i < nw; i++)
			w[i] = bf16_to_f16(w[i]);
		uint16_t *dxh = dev_bf16(x, nx, 0), *dwh = dev_bf16(w, nw, 0);
		float *db = dev_f32(NULL, ny, 0), *dh = dev_f32(NULL, ny, 0);
		kn_gemm_f32_cuda(ctx, db, dxb, dwb, NULL, M, N, K, 0);
		kn_gemm_f32_f16_cuda(ctx, dh, dxh, dwh, NULL, M, N, K, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(ref, db, ny * 4, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(got, dh, ny * 4, cudaMemcpyDeviceToHost));
		double eb = rel_l2_f32(got, ref, ny, 1e-4);
		ck_assert_msg(eb <= 1e-6, "gemm_f32_f16 on fp16 copies of bf16 M=%d N=%d K=%d: rel L2 %g",
			      M, N, K, eb);
		if (M <= 4 && K % 8 == 0)
			ck_assert_msg(!memcmp(got, ref, ny * 4), "gemm_f32_f16 M=%d N=%d K=%d: the GEMV "
				      "differs from the bf16 one on the same values", M, N, K);
		CUDA_CHECK(cudaFree(dxb));
		CUDA_CHECK(cudaFree(dwb));
		CUDA_CHECK(cudaFree(dxh));
		CUDA_CHECK(cudaFree(dwh));
		CUDA_CHECK(cudaFree(db));
		CUDA_CHECK(cudaFree(dh));
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		if (res == 1)
			CUDA_CHECK(cudaFree(dr));
		free(x);
		free(w);
		free(r);
		free(ref);
		free(got);
	}
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* gemm_wgmma (the Hopper kernel that kn_gemm_f32(_f16)_cuda and kn_gemm_f16_cuda run for 5-128
 * rows on an sm_90 device where the start-up tuning timed it faster than cuBLASLt; gemm_tune
 * below checks that path) called directly, against the references: every K split it chooses
 * (S = 8 for N = 2048, 4 for 4096, 1 for 12288; S = 8 with two tiles at N = 256), both batch
 * widths (BN 64 up to 64 rows, 128 above) with batch rows past M padding the tile, fp32 output with
 * the residual in place (the splits added into y atomically), with a separate residual and
 * without one (the splits summed in a fixed order: twice over, bit for bit), fp16 output.
 * Elsewhere the same calls run cuBLASLt and the test checks that path. Cases {M, N, K, kind}:
 * kind 0 bf16 operands, fp32 out += residual in place; 1 fp16 operands, fp32 out; 2 fp16 out;
 * 3 bf16 operands, fp32 out = residual (another buffer) + product. */
START_TEST(test_kernels_cuda_gemm_wgmma)
{
	static const int cases[][4] = {
		{ 128, 2048, 2048, 0 }, { 128, 2048, 6144, 0 }, { 128, 4096, 2048, 1 },
		{ 128, 12288, 2048, 2 }, { 65, 2048, 2048, 0 }, { 64, 4096, 2048, 1 },
		{ 5, 256, 512, 0 },      { 100, 12288, 2048, 1 }, { 37, 2048, 6144, 2 },
		{ 77, 1024, 1024, 0 },   { 128, 2048, 6144, 3 }, { 70, 4096, 2048, 3 },
	};
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	kn_gemm_wgmma *g = kn_gemm_wgmma_new();
	fprintf(stderr, "gemm_wgmma: %s\n", g ? "on (sm_90)" :
				  "off here: the same calls check cuBLASLt");
	ck_assert_int_eq(g != NULL, kn_gemm_ctx_wgmma(ctx));
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		const int M = cases[s][0], N = cases[s][1], K = cases[s][2], kind = cases[s][3];
		const size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2), *h16 = malloc(ny * 2);
		float *r = malloc(ny * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4),
		      *again = malloc(ny * 4);
		const bool f16 = kind == 1 || kind == 2;
		for (size_t i = 0; i < nx; i++)
			x[i] = f16 ? f32_to_f16(frand(-4.f, 4.f)) : f32_to_bf16(frand(-4.f, 4.f));
		for (size_t i = 0; i < nw; i++)
			w[i] = f16 ? f32_to_f16(frand(-0.05f, 0.05f)) :
				     f32_to_bf16(frand(-0.05f, 0.05f));
		fill_f32(r, ny, -1.f, 1.f);
		if (kind == 0 || kind == 3)
			kn_gemm_f32_ref(ref, x, w, r, M, N, K);
		else if (kind == 1)
			kn_gemm_f32_f16_ref(ref, x, w, NULL, M, N, K);
		else {
			kn_gemm_f16_ref(h16, x, w, M, N, K);
			for (size_t i = 0; i < ny; i++)
				ref[i] = f16_to_f32(h16[i]);
		}
		uint16_t *dx = dev_bf16(x, nx, 0), *dw = dev_bf16(w, nw, 0);
		float *dy = dev_f32(NULL, ny, 0), *dr = kind == 3 ? dev_f32(r, ny, 0) : NULL;
		for (int run = 0; run < 2; run++) {
			float *dst = run ? again : got;
			if (kind == 0)
				CUDA_CHECK(cudaMemcpy(dy, r, ny * 4, cudaMemcpyHostToDevice));
			else
				CUDA_CHECK(cudaMemset(dy, 0xff, ny * 4));
			float *res = kind == 0 ? dy : dr;
			if (g) {
				ck_assert(kn_gemm_wgmma_fits(g, dy, dx, dw, res, M, N, K, kind == 2));
				kn_gemm_wgmma_run(g, dy, dx, dw, res, M, N, K, f16, kind == 2, 0);
			} else if (kind == 0 || kind == 3) {
				kn_gemm_f32_cuda(ctx, dy, dx, dw, res, M, N, K, 0);
			} else if (kind == 1) {
				kn_gemm_f32_f16_cuda(ctx, dy, dx, dw, NULL, M, N, K, 0);
			} else {
				kn_gemm_f16_cuda(ctx, (uint16_t *)dy, dx, dw, M, N, K, 0);
			}
			CUDA_CHECK(cudaDeviceSynchronize());
			if (kind == 2) {
				CUDA_CHECK(cudaMemcpy(h16, dy, ny * 2, cudaMemcpyDeviceToHost));
				for (size_t i = 0; i < ny; i++)
					dst[i] = f16_to_f32(h16[i]);
			} else {
				CUDA_CHECK(cudaMemcpy(dst, dy, ny * 4, cudaMemcpyDeviceToHost));
			}
		}
		const double e = rel_l2_f32(got, ref, ny, kind == 2 ? 1e-2 : 1e-4);
		fprintf(stderr, "gemm_wgmma M=%d N=%d K=%d kind %d: rel L2 %.3g\n", M, N, K, kind, e);
		ck_assert_msg(e <= (kind == 2 ? 1e-3 : 1e-5), "gemm_wgmma M=%d N=%d K=%d kind %d: "
			      "rel L2 %g", M, N, K, kind, e);
		if (kind != 0)
			ck_assert_msg(!memcmp(got, again, ny * 4), "gemm_wgmma M=%d N=%d K=%d kind %d: "
				      "a second run gave other bits", M, N, K, kind);
		else
			ck_assert_msg(rel_l2_f32(again, got, ny, 1e-4) <= 1e-6, "gemm_wgmma M=%d N=%d "
				      "K=%d in place: a second run differs beyond the order of its sums",
				      M, N, K);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		if (dr)
			CUDA_CHECK(cudaFree(dr));
		free(x);
		free(w);
		free(h16);
		free(r);
		free(ref);
		free(got);
		free(again);
	}
	if (g) {   /* what it refuses: too few or too many rows, N or K off the tiles, misalignment,
		    * fp16 output with a residual */
		const void *a = (const void *)(uintptr_t)256, *u = (const void *)(uintptr_t)258;
		const uint16_t *x = a, *w = a, *wu = u;
		const float *rf = a;
		ck_assert(kn_gemm_wgmma_fits(g, a, x, w, NULL, 64, 2048, 2048, false));
		ck_assert(!kn_gemm_wgmma_fits(g, a, x, w, NULL, 4, 2048, 2048, false));
		ck_assert(!kn_gemm_wgmma_fits(g, a, x, w, NULL, 129, 2048, 2048, false));
		ck_assert(!kn_gemm_wgmma_fits(g, a, x, w, NULL, 64, 2000, 2048, false));
		ck_assert(!kn_gemm_wgmma_fits(g, a, x, w, NULL, 64, 2048, 2000, false));
		ck_assert(!kn_gemm_wgmma_fits(g, a, x, wu, NULL, 64, 2048, 2048, false));
		ck_assert(!kn_gemm_wgmma_fits(g, a, x, w, rf, 64, 2048, 2048, true));
	}
	kn_gemm_wgmma_free(g);
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* kn_gemm_glu (gemm.h): the gate/up projection and SwiGLU in one call. Against the reference
 * (kn_gemm_f32_f16_ref's sums, then kn_silu_mul_ref): each fused form called directly on an
 * sm_90 device where it fits, gemm_wgmma's GLU epilogue (up to 128 rows, both batch widths)
 * and gemm_glu_tma (its decode shape up to 128 rows, its prompt shape above); rows past M pad
 * the tiles; one rounding (gemm_glu_tma's silu with __expf), so nearly the reference's bits;
 * twice over, bit for bit. Then kn_gemm_glu_cuda before any tuning, which must be the unfused
 * pair bit for bit (kn_gemm_f16_cuda, kn_silu_mul_f16_cuda; the GEMV's rows at M = 3); then
 * kn_gemm_glu_tune, and the call after it must give the bits of the form the tuning kept.
 * Cases {M, F, K}: gemm_glu_tma's decode shape takes F in steps of 96 (9, 37, 64, 100 and 128
 * rows: x boxes of M rounded up to 8 rows, the second CTA of a cluster copying none up to 64);
 * at M = 300 the second row block of its prompt shape's last cluster lies wholly past M; the
 * 1000- and 2000-row cases have more prompt tiles than an H100 has multiprocessors (its
 * persistent CTAs take several; at K = 64 the ring wraps every tile); at M = 65 the second
 * CTA's x box is 63 rows of zero fill, and F = 9600 gives the decode shape 100 units for the
 * ~66 clusters that fit at once (its persistent loop). */
START_TEST(test_kernels_cuda_gemm_glu)
{
	static const int cases[][3] = {
		{ 128, 6144, 2048 }, { 37, 384, 512 },  { 100, 192, 1024 }, { 5, 64, 256 },
		{ 64, 6144, 2048 },  { 3, 128, 256 },   { 129, 128, 256 },  { 300, 384, 512 },
		{ 9, 480, 256 },     { 1000, 640, 1024 }, { 1000, 4096, 512 }, { 2000, 2048, 64 },
		{ 65, 192, 256 },    { 100, 9600, 256 },
	};
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	kn_gemm_wgmma *g = kn_gemm_wgmma_new();
	kn_glu_tma *gt = kn_glu_tma_new();
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		const int M = cases[s][0], F = cases[s][1], K = cases[s][2];
		const size_t nx = (size_t)M * K, nw = (size_t)2 * F * K, na = (size_t)M * F;
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2), *ref = malloc(na * 2),
			 *fused[3] = { NULL, malloc(na * 2), malloc(na * 2) }, *again = malloc(na * 2),
			 *pair = malloc(na * 2), *call = malloc(na * 2);
		float *gu = malloc((size_t)M * 2 * F * 4);
		for (size_t i = 0; i < nx; i++)
			x[i] = f32_to_f16(frand(-4.f, 4.f));
		for (size_t i = 0; i < nw; i++)
			w[i] = f32_to_f16(frand(-0.05f, 0.05f));
		kn_gemm_f32_f16_ref(gu, x, w, NULL, M, 2 * F, K);
		kn_silu_mul_ref(ref, gu, M, F);
		uint16_t *dx = dev_bf16(x, nx, 0), *dw = dev_bf16(w, nw, 0), *dact = dev_bf16(NULL, na, 0),
			 *dgu = dev_bf16(NULL, (size_t)M * 2 * F, 0);
		bool direct[3] = { false, g && kn_gemm_wgmma_glu_fits(g, dact, dx, dw, M, F, K),
				   gt && kn_glu_tma_fits(gt, dact, dx, dw, M, F, K) };
		for (int f = KN_GEMM_GLU_WGMMA; f <= KN_GEMM_GLU_TMA; f++) {
			for (int run = 0; run < 2 && direct[f]; run++) {
				CUDA_CHECK(cudaMemset(dact, 0xff, na * 2));
				if (f == KN_GEMM_GLU_TMA)
					kn_glu_tma_run(gt, dact, dx, dw, M, F, K, 0);
				else
					kn_gemm_wgmma_glu_run(g, dact, dx, dw, M, F, K, 0);
				CUDA_CHECK(cudaMemcpy(run ? again : fused[f], dact, na * 2,
						      cudaMemcpyDeviceToHost));
			}
			if (!direct[f])
				continue;
			const char *name = f == KN_GEMM_GLU_TMA ? "gemm_glu_tma" : "gemm_wgmma";
			const double e = rel_l2_bf16(fused[f], ref, na, 1e-2);
			fprintf(stderr, "gemm_glu %s M=%d F=%d K=%d: rel L2 %.3g\n", name, M, F, K, e);
			ck_assert_msg(e <= 1e-3, "gemm_glu %s M=%d F=%d K=%d: rel L2 %g", name, M, F,
				      K, e);
			ck_assert_msg(!memcmp(fused[f], again, na * 2), "gemm_glu %s M=%d F=%d K=%d: "
				      "a second run gave other bits", name, M, F, K);
		}
		/* untuned: the unfused pair */
		kn_gemm_f16_cuda(ctx, dgu, dx, dw, M, 2 * F, K, 0);
		kn_silu_mul_f16_cuda(dact, dgu, M, F, 0);
		CUDA_CHECK(cudaMemcpy(pair, dact, na * 2, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemset(dact, 0xff, na * 2));
		kn_gemm_glu_cuda(ctx, dact, dgu, dx, dw, M, F, K, 0);
		CUDA_CHECK(cudaMemcpy(call, dact, na * 2, cudaMemcpyDeviceToHost));
		ck_assert_msg(!memcmp(call, pair, na * 2), "gemm_glu M=%d F=%d K=%d: untuned, not the "
			      "unfused pair's bits", M, F, K);
		const double eu = rel_l2_bf16(pair, ref, na, 1e-2);
		ck_assert_msg(eu <= 3e-3, "gemm_glu unfused M=%d F=%d K=%d: rel L2 %g", M, F, K, eu);
		/* tuned: the kept form's bits */
		const uint16_t *ws[1] = { dw };
		float ms_u, ms_f;
		const int kept = kn_gemm_glu_tune(ctx, dact, dgu, dx, ws, 1, M, F, K, 0, &ms_u, &ms_f);
		fprintf(stderr, "gemm_glu M=%d F=%d K=%d: tuning %d (apart %.4f ms, fused %.4f ms)\n",
			M, F, K, kept, ms_u, ms_f);
		ck_assert(M <= 4 ? kept == -1 : kept >= 0 && kept <= KN_GEMM_GLU_TMA);
		ck_assert(kept <= 0 || direct[kept]);
		CUDA_CHECK(cudaMemset(dact, 0xff, na * 2));
		kn_gemm_glu_cuda(ctx, dact, dgu, dx, dw, M, F, K, 0);
		CUDA_CHECK(cudaMemcpy(call, dact, na * 2, cudaMemcpyDeviceToHost));
		ck_assert_msg(!memcmp(call, kept > 0 ? fused[kept] : pair, na * 2), "gemm_glu M=%d "
			      "F=%d K=%d: after tuning (%d), not the kept form's bits", M, F, K, kept);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dact));
		CUDA_CHECK(cudaFree(dgu));
		free(x);
		free(w);
		free(ref);
		free(fused[1]);
		free(fused[2]);
		free(again);
		free(pair);
		free(call);
		free(gu);
	}
	if (g) {   /* what the fused launch refuses: rows, F or K off the tiles, misalignment */
		const uint16_t *a = (const uint16_t *)(uintptr_t)256, *u = (const uint16_t *)(uintptr_t)258;
		ck_assert(kn_gemm_wgmma_glu_fits(g, a, a, a, 128, 6144, 2048));
		ck_assert(!kn_gemm_wgmma_glu_fits(g, a, a, a, 4, 6144, 2048));
		ck_assert(!kn_gemm_wgmma_glu_fits(g, a, a, a, 129, 6144, 2048));
		ck_assert(!kn_gemm_wgmma_glu_fits(g, a, a, a, 64, 6000, 2048));
		ck_assert(!kn_gemm_wgmma_glu_fits(g, a, a, a, 64, 6144, 2000));
		ck_assert(!kn_gemm_wgmma_glu_fits(g, u, a, a, 64, 6144, 2048));
		ck_assert(!kn_gemm_wgmma_glu_fits(g, a, a, u, 64, 6144, 2048));
	}
	if (gt) {   /* gemm_glu_tma: F in steps of 96 up to 128 rows, of 128 above; K of 64 */
		const uint16_t *a = (const uint16_t *)(uintptr_t)256, *u = (const uint16_t *)(uintptr_t)258;
		ck_assert(kn_glu_tma_fits(gt, a, a, a, 128, 6144, 2048));
		ck_assert(kn_glu_tma_fits(gt, a, a, a, 8192, 6144, 2048));
		ck_assert(!kn_glu_tma_fits(gt, a, a, a, 128, 128, 256));
		ck_assert(kn_glu_tma_fits(gt, a, a, a, 129, 128, 256));
		ck_assert(kn_glu_tma_fits(gt, a, a, a, 9, 480, 256));
		ck_assert(!kn_glu_tma_fits(gt, a, a, a, 8192, 6144, 2000));
		ck_assert(!kn_glu_tma_fits(gt, a, a, a, 0, 6144, 2048));
		ck_assert(!kn_glu_tma_fits(gt, u, a, a, 8192, 6144, 2048));
	}
	kn_glu_tma_free(gt);
	kn_gemm_wgmma_free(g);
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* kn_rope_table_cuda against kn_rope_table_ref: the fp32 cos and sin of every (token, pair), for
 * hd 128 with interleaved MRoPE sections and for plain rope, positions up to 10^5. The device's
 * double cos and sin round to the reference's fp32 value but where they straddle a rounding
 * boundary of fp32: at most 1 ulp apart, in well under 0.1% of the values. */
START_TEST(test_kernels_cuda_rope_table)
{
	static const int cases[][5] = { { 1, 128, 24, 20, 20 }, { 300, 128, 24, 20, 20 },
					{ 77, 64, 32, 0, 0 },   { 1000, 128, 64, 0, 0 } };
	for (size_t cs = 0; cs < sizeof(cases) / sizeof(cases[0]); cs++) {
		const int T = cases[cs][0], hd = cases[cs][1], sec[3] = { cases[cs][2], cases[cs][3],
									  cases[cs][4] };
		const size_t n = (size_t)T * (hd / 2);
		int32_t *pos = malloc((size_t)3 * T * 4);
		float *c = malloc(n * 4), *sn = malloc(n * 4), *cr = malloc(n * 4), *sr = malloc(n * 4);
		for (int i = 0; i < 3 * T; i++)
			pos[i] = (int32_t)frand(0.f, 100000.f);
		kn_rope_table_ref(cr, sr, pos, T, hd, sec, 5e6f);
		int32_t *dpos;
		CUDA_CHECK(cudaMalloc((void **)&dpos, (size_t)3 * T * 4));
		CUDA_CHECK(cudaMemcpy(dpos, pos, (size_t)3 * T * 4, cudaMemcpyHostToDevice));
		float *dc = dev_f32(NULL, n, 0), *ds = dev_f32(NULL, n, 0);
		kn_rope_table_cuda(dc, ds, dpos, T, hd, sec, 5e6f, 0);
		CUDA_CHECK(cudaMemcpy(c, dc, n * 4, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(sn, ds, n * 4, cudaMemcpyDeviceToHost));
		size_t off = 0;
		float worst = 0;
		for (size_t i = 0; i < n; i++) {
			const float d = fmaxf(fabsf(c[i] - cr[i]), fabsf(sn[i] - sr[i]));
			off += d != 0;
			worst = fmaxf(worst, d);
		}
		fprintf(stderr, "rope_table T %d hd %d: %zu of %zu pairs off, worst %.3g\n", T, hd,
			off, n, worst);
		ck_assert_msg(worst <= 6e-8f && off * 1000 <= n + 999, "rope_table T %d hd %d: %zu "
			      "off, worst %g", T, hd, off, worst);
		CUDA_CHECK(cudaFree(dpos));
		CUDA_CHECK(cudaFree(dc));
		CUDA_CHECK(cudaFree(ds));
		free(pos);
		free(c);
		free(sn);
		free(cr);
		free(sr);
	}
}
END_TEST

/* Relative L2 of a bf16 cache over the elements ref wrote (ref not the 0xffff poison, a NaN);
 * got must hold the poison exactly there too, else +inf. */
static double rel_l2_written(const uint16_t *got, const uint16_t *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		if (ref[i] == 0xffff) {
			if (got[i] != 0xffff)
				return INFINITY;
			continue;
		}
		const double g = bf16_to_f32(got[i]), r = bf16_to_f32(ref[i]);
		if (isnan(g))
			return INFINITY;
		num += (g - r) * (g - r);
		den += r * r;
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* gemm_qkv_tma (the q/k/v projection with qk_norm_rope in its epilogue) against the two
 * kernels it stands for (kn_gemm_f32_f16_cuda, then kn_qk_norm_rope(_fp8)_cuda) and, where the
 * shape is small enough for the host, against their references (kn_gemm_f32_f16_ref, then
 * kn_qk_norm_rope(_fp8)_ref). Cases {M, Hq, KV, K, fp8}: rows below, at and past the 128-row
 * tiles and their pairs; Hq 6, KV 1 makes a tile of one k and one v head. Slots shuffled over
 * the blocks, some −1; the outputs poisoned (0xff), so unwritten slots must keep it. Two runs
 * must give the same bits. */
START_TEST(test_kernels_cuda_gemm_qkv_tma)
{
	static const int cases[][5] = { { 129, 16, 8, 256, 1 }, { 37, 16, 8, 128, 0 },
					{ 300, 6, 1, 512, 1 },  { 256, 16, 8, 2048, 0 },
					{ 1000, 16, 8, 2048, 1 }, { 2100, 16, 8, 2048, 0 },
					{ 8192, 16, 8, 2048, 1 } };
	kn_qkv_tma *qt = kn_qkv_tma_new();
	if (!qt) {
		fprintf(stderr, "gemm_qkv_tma: not available on this device (sm_90a only)\n");
		return;
	}
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	enum { BS = 16, HD = 128 };
	const int sec[3] = { 24, 20, 20 };
	const float theta = 5e6f, eps = 1e-6f, ks = 0.37f, vs = 3.0f;
	for (size_t cs = 0; cs < sizeof(cases) / sizeof(cases[0]); cs++) {
		const int M = cases[cs][0], Hq = cases[cs][1], KV = cases[cs][2], K = cases[cs][3];
		const bool fp8 = cases[cs][4];
		const int N = (Hq + 2 * KV) * HD, nb = (M + BS - 1) / BS + 3, nslot = nb * BS;
		const size_t nx = (size_t)M * K, nw = (size_t)N * K, nq = (size_t)M * Hq * HD;
		const size_t nc = (size_t)nslot * KV * HD, cb = nc * (fp8 ? 1 : 2);
		ck_assert(kn_qkv_tma_fits(qt, (const uint16_t *)(uintptr_t)256,
					  (const uint16_t *)(uintptr_t)256, M, Hq, KV, HD, K));
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2), *qn = malloc(HD * 2),
			 *kw = malloc(HD * 2), *q[3] = { malloc(nq * 2), malloc(nq * 2), malloc(nq * 2) };
		uint8_t *kc[3] = { malloc(cb), malloc(cb), malloc(cb) },
			*vc[3] = { malloc(cb), malloc(cb), malloc(cb) };
		int32_t *pos = malloc((size_t)3 * M * 4), *slots = malloc((size_t)M * 4),
			*perm = malloc((size_t)nb * 4);
		for (size_t i = 0; i < nx; i++)
			x[i] = f32_to_f16(frand(-2.f, 2.f));
		for (size_t i = 0; i < nw; i++)
			w[i] = f32_to_f16(frand(-0.05f, 0.05f));
		fill_bf16(qn, HD, 0.5f, 1.5f);
		fill_bf16(kw, HD, 0.5f, 1.5f);
		kt_shuffled_ids(perm, nb);
		for (int t = 0; t < M; t++) {
			slots[t] = frand(0.f, 1.f) < 0.1f ? -1 : perm[t / BS] * BS + t % BS;
			for (int a = 0; a < 3; a++)
				pos[a * M + t] = (int32_t)frand(0.f, 100000.f);
		}
		uint16_t *dx = dev_bf16(x, nx, 0), *dw = dev_bf16(w, nw, 0), *dqn = dev_bf16(qn, HD, 0),
			 *dkw = dev_bf16(kw, HD, 0), *dq = dev_bf16(NULL, nq, 0);
		float *dqkv = dev_f32(NULL, (size_t)M * N, 0), *dcs = dev_f32(NULL, (size_t)M * HD / 2, 0),
		      *dsn = dev_f32(NULL, (size_t)M * HD / 2, 0);
		void *dk, *dv;
		int32_t *dpos, *dslots;
		CUDA_CHECK(cudaMalloc(&dk, cb));
		CUDA_CHECK(cudaMalloc(&dv, cb));
		CUDA_CHECK(cudaMalloc((void **)&dpos, (size_t)3 * M * 4));
		CUDA_CHECK(cudaMalloc((void **)&dslots, (size_t)M * 4));
		CUDA_CHECK(cudaMemcpy(dpos, pos, (size_t)3 * M * 4, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dslots, slots, (size_t)M * 4, cudaMemcpyHostToDevice));
		kn_rope_table_cuda(dcs, dsn, dpos, M, HD, sec, theta, 0);
		/* 0: apart; 1, 2: fused, twice */
		for (int run = 0; run < 3; run++) {
			CUDA_CHECK(cudaMemset(dq, 0xff, nq * 2));
			CUDA_CHECK(cudaMemset(dk, 0xff, cb));
			CUDA_CHECK(cudaMemset(dv, 0xff, cb));
			if (run == 0) {
				kn_gemm_f32_f16_cuda(ctx, dqkv, dx, dw, NULL, M, N, K, 0);
				if (fp8)
					kn_qk_norm_rope_fp8_cuda(dq, dk, dv, dqkv, dqn, dkw, dpos, dslots,
								 M, Hq, KV, HD, sec, theta, eps, ks,
								 vs, 0);
				else
					kn_qk_norm_rope_cuda(dq, dk, dv, dqkv, dqn, dkw, dpos, dslots, M,
							     Hq, KV, HD, sec, theta, eps, 0);
			} else {
				kn_qkv_tma_run(qt, dq, dk, dv, fp8, dx, dw, dqn, dkw, dcs, dsn, dslots,
					       M, Hq, KV, K, eps, ks, vs, 0);
			}
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(q[run], dq, nq * 2, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(kc[run], dk, cb, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(vc[run], dv, cb, cudaMemcpyDeviceToHost));
		}
		ck_assert_msg(!memcmp(q[1], q[2], nq * 2) && !memcmp(kc[1], kc[2], cb) &&
			      !memcmp(vc[1], vc[2], cb), "gemm_qkv_tma M %d: a second run gave other "
			      "bits", M);
		/* against the kernels apart: q (and bf16 k, v) nearly all the same bits; the cache
		 * bytes of unwritten slots poisoned in both */
		const double eq = rel_l2_bf16(q[1], q[0], nq, 1e-1);
		const double xq = exact_rate(q[1], q[0], nq);
		size_t kbad = 0, vbad = 0, poison = 0;
		double kerr = 0, verr = 0, xk = 1, xv = 1;
		bool *used = calloc((size_t)nslot, 1);
		for (int r = 0; r < M; r++)
			if (slots[r] >= 0)
				used[slots[r]] = true;
		for (int t = 0; t < nslot; t++) {
			for (size_t i = 0; i < (size_t)KV * HD && !used[t]; i++) {
				const size_t e = (size_t)t * KV * HD + i;
				const bool p = fp8 ? kc[1][e] == 0xff && vc[1][e] == 0xff
						   : ((uint16_t *)kc[1])[e] == 0xffff &&
							     ((uint16_t *)vc[1])[e] == 0xffff;
				poison += !p;
			}
		}
		free(used);
		if (fp8) {
			for (size_t i = 0; i < nc; i++) {
				kbad += kc[1][i] != kc[0][i];
				vbad += vc[1][i] != vc[0][i];
			}
			xk = 1.0 - (double)kbad / (double)nc;
			xv = 1.0 - (double)vbad / (double)nc;
		} else {
			kerr = rel_l2_written((uint16_t *)kc[1], (uint16_t *)kc[0], nc);
			verr = rel_l2_written((uint16_t *)vc[1], (uint16_t *)vc[0], nc);
			xk = exact_rate((uint16_t *)kc[1], (uint16_t *)kc[0], nc);
			xv = exact_rate((uint16_t *)vc[1], (uint16_t *)vc[0], nc);
		}
		fprintf(stderr, "gemm_qkv_tma M %d Hq %d KV %d K %d %s: vs apart q rel L2 %.3g exact "
			"%.5f, k exact %.5f (rel L2 %.3g), v exact %.5f (rel L2 %.3g), %zu poisoned "
			"bytes overwritten\n", M, Hq, KV, K, fp8 ? "fp8" : "bf16", eq, xq, xk, kerr, xv,
			verr, poison);
		ck_assert_msg(eq <= 2e-3 && xq >= 0.98, "gemm_qkv_tma M %d: q vs apart %g, %g", M, eq,
			      xq);
		ck_assert_msg(xk >= 0.98 && xv >= 0.98 && kerr <= 2e-3 && verr <= 2e-3,
			      "gemm_qkv_tma M %d: k, v vs apart %g %g (%g %g)", M, xk, xv, kerr, verr);
		ck_assert_msg(poison == 0, "gemm_qkv_tma M %d: %zu bytes of unwritten slots changed",
			      M, poison);
		if ((double)M * N * K <= 4e8) {   /* against the references */
			float *qkv = malloc((size_t)M * N * 4);
			uint16_t *qr = malloc(nq * 2);
			uint8_t *kr = malloc(cb), *vr = malloc(cb);
			memset(kr, 0xff, cb);
			memset(vr, 0xff, cb);
			kn_gemm_f32_f16_ref(qkv, x, w, NULL, M, N, K);
			if (fp8)
				kn_qk_norm_rope_fp8_ref(qr, kr, vr, qkv, qn, kw, pos, slots, M, Hq, KV,
							HD, sec, theta, eps, ks, vs);
			else
				kn_qk_norm_rope_ref(qr, (uint16_t *)kr, (uint16_t *)vr, qkv, qn, kw,
						    pos, slots, M, Hq, KV, HD, sec, theta, eps);
			const double e = rel_l2_bf16(q[1], qr, nq, 1e-1);
			double ek, ev;
			if (fp8) {
				double nk = 0, dk2 = 0, nv = 0, dv2 = 0;
				for (size_t i = 0; i < nc; i++) {
					if (kr[i] == 0xff)
						continue;
					const double a = fp8e4m3_to_f32(kc[1][i]), r = fp8e4m3_to_f32(kr[i]);
					const double b = fp8e4m3_to_f32(vc[1][i]), u = fp8e4m3_to_f32(vr[i]);
					nk += (a - r) * (a - r);
					dk2 += r * r;
					nv += (b - u) * (b - u);
					dv2 += u * u;
				}
				ek = dk2 > 0 ? sqrt(nk / dk2) : 0;
				ev = dv2 > 0 ? sqrt(nv / dv2) : 0;
			} else {
				ek = rel_l2_written((uint16_t *)kc[1], (uint16_t *)kr, nc);
				ev = rel_l2_written((uint16_t *)vc[1], (uint16_t *)vr, nc);
			}
			fprintf(stderr, "gemm_qkv_tma M %d: vs reference q %.3g k %.3g v %.3g\n", M, e,
				ek, ev);
			ck_assert_msg(e <= 4e-3 && ek <= (fp8 ? 3e-2 : 4e-3) && ev <= (fp8 ? 3e-2 : 4e-3),
				      "gemm_qkv_tma M %d: vs reference q %g k %g v %g", M, e, ek, ev);
			free(qkv);
			free(qr);
			free(kr);
			free(vr);
		}
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dqn));
		CUDA_CHECK(cudaFree(dkw));
		CUDA_CHECK(cudaFree(dq));
		CUDA_CHECK(cudaFree(dqkv));
		CUDA_CHECK(cudaFree(dcs));
		CUDA_CHECK(cudaFree(dsn));
		CUDA_CHECK(cudaFree(dk));
		CUDA_CHECK(cudaFree(dv));
		CUDA_CHECK(cudaFree(dpos));
		CUDA_CHECK(cudaFree(dslots));
		free(x);
		free(w);
		free(qn);
		free(kw);
		for (int r = 0; r < 3; r++) {
			free(q[r]);
			free(kc[r]);
			free(vc[r]);
		}
		free(pos);
		free(slots);
		free(perm);
	}
	/* what it refuses: another head dim, an odd head count, K off the 64-wide k blocks,
	 * misaligned operands, no rows */
	const uint16_t *a = (const uint16_t *)(uintptr_t)256, *u = (const uint16_t *)(uintptr_t)258;
	ck_assert(!kn_qkv_tma_fits(qt, a, a, 8192, 16, 8, 64, 2048));
	ck_assert(!kn_qkv_tma_fits(qt, a, a, 8192, 15, 8, 128, 2048));
	ck_assert(!kn_qkv_tma_fits(qt, a, a, 8192, 16, 8, 128, 2000));
	ck_assert(!kn_qkv_tma_fits(qt, u, a, 8192, 16, 8, 128, 2048));
	ck_assert(!kn_qkv_tma_fits(qt, a, u, 8192, 16, 8, 128, 2048));
	ck_assert(!kn_qkv_tma_fits(qt, a, a, 0, 16, 8, 128, 2048));
	ck_assert(!kn_qkv_tma_fits(NULL, a, a, 8192, 16, 8, 128, 2048));
	kn_qkv_tma_free(qt);
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* kn_gemm_f32_rmsnorm_cuda (RMSNorm, then the projection) against kn_gemm_f32_rmsnorm_ref, bf16
 * and fp16 operands; and against the two kernels it stands for (kn_rmsnorm(_f16)_cuda, then
 * kn_gemm_f32(_f16)_cuda), bit for bit, where it fuses them into one GEMV (M ≤ 4, K ≤ 2048, N
 * with a partial last row group too). The other shapes (M = 5, 37; K > 2048) take the two
 * kernels. Cases {M, N, K, fp16}. */
START_TEST(test_kernels_cuda_gemm_rmsnorm)
{
	static const int cases[][4] = {
		{ 1, 4096, 2048, 1 },  { 1, 12288, 2048, 0 }, { 2, 4099, 2048, 1 },
		{ 3, 12288, 2048, 1 }, { 4, 4096, 2048, 0 },  { 4, 1001, 2048, 1 },
		{ 1, 256, 96, 0 },     { 2, 300, 1000, 1 },   { 5, 4096, 2048, 1 },
		{ 37, 12288, 2048, 0 }, { 2, 512, 3072, 1 },
	};
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	const float eps = 1e-6f;
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		int M = cases[s][0], N = cases[s][1], K = cases[s][2];
		bool f16 = cases[s][3];
		size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		float *x = malloc(nx * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4),
		      *two = malloc(ny * 4);
		uint16_t *nwt = malloc((size_t)K * 2), *w = malloc(nw * 2);
		fill_f32(x, nx, -2.f, 2.f);
		fill_bf16(nwt, K, 0.5f, 1.5f);
		for (size_t i = 0; i < nw; i++)
			w[i] = f16 ? f32_to_f16(frand(-0.05f, 0.05f)) : f32_to_bf16(frand(-0.05f, 0.05f));
		kn_gemm_f32_rmsnorm_ref(ref, x, nwt, eps, w, M, N, K, f16);
		float *dx = dev_f32(x, nx, 0), *dy = dev_f32(NULL, ny, 0), *dy2 = dev_f32(NULL, ny, 0);
		uint16_t *dn = dev_bf16(nwt, K, 0), *dw = dev_bf16(w, nw, 0), *dh = dev_bf16(NULL, nx, 0);
		CUDA_CHECK(cudaMemset(dh, 0xff, nx * 2));
		kn_gemm_f32_rmsnorm_cuda(ctx, dy, dh, dx, dn, eps, dw, M, N, K, f16, 0);
		const char *fz = getenv("QVL_FUSE_RMSNORM");
		if (M <= 4 && K <= 2048 && !(fz && *fz == '0')) {   /* the one GEMV ran: h untouched */
			uint16_t *hh = malloc(nx * 2);
			CUDA_CHECK(cudaMemcpy(hh, dh, nx * 2, cudaMemcpyDeviceToHost));
			size_t poison = 0;
			for (size_t i = 0; i < nx; i++)
				poison += hh[i] == 0xffff;
			free(hh);
			ck_assert_msg(poison == nx, "gemm_rmsnorm M=%d K=%d: the scratch was written, "
				      "so the fused GEMV did not run", M, K);
		}
		if (f16) {
			kn_rmsnorm_f16_cuda(dh, dx, dn, M, K, eps, 0);
			kn_gemm_f32_f16_cuda(ctx, dy2, dh, dw, NULL, M, N, K, 0);
		} else {
			kn_rmsnorm_cuda(dh, dx, dn, M, K, eps, 0);
			kn_gemm_f32_cuda(ctx, dy2, dh, dw, NULL, M, N, K, 0);
		}
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, ny * 4, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(two, dy2, ny * 4, cudaMemcpyDeviceToHost));
		double e = rel_l2_f32(got, ref, ny, 1e-4);
		size_t same = 0;
		for (size_t i = 0; i < ny; i++)
			same += !memcmp(&got[i], &two[i], 4);
		fprintf(stderr, "gemm_rmsnorm M=%d N=%d K=%d %s: rel L2 %.3g, the same as the two "
			"kernels in %zu of %zu\n", M, N, K, f16 ? "fp16" : "bf16", e, same, ny);
		ck_assert_msg(e <= 1e-4, "gemm_rmsnorm M=%d N=%d K=%d f16=%d: rel L2 %g", M, N, K,
			      f16, e);
		ck_assert_msg(same == ny, "gemm_rmsnorm M=%d N=%d K=%d f16=%d: %zu outputs differ from "
			      "rmsnorm + gemm", M, N, K, f16, ny - same);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dy));
		CUDA_CHECK(cudaFree(dy2));
		CUDA_CHECK(cudaFree(dn));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dh));
		free(x);
		free(ref);
		free(got);
		free(two);
		free(nwt);
		free(w);
	}
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* kn_gemm_f32_tune: it keeps the fastest of cuBLASLt's candidates for a call's key (never slower
 * than the first guess as it timed them), and the plan it leaves computes the product: after
 * tuning on garbage, kn_gemm_f32(_f16)_cuda on real operands with the same pointers matches the
 * reference. The timing takes three weights in turn, one of them 2 bytes off its buffer's
 * start (below the plan's alignment, so skipped: a plan must never run on a weight its
 * alignment does not allow). Shapes the GEMV runs (M ≤ 4), an empty weight list and a NULL
 * first weight are left alone (-1). The tuned plans survive more other keys than the cache
 * holds. Cases {M, N, K, residual (0 none, 2 in place), fp16}. */
START_TEST(test_kernels_cuda_gemm_tune)
{
	static const int cases[][5] = {
		{ 300, 2048, 2048, 2, 0 }, { 37, 4096, 2048, 0, 1 }, { 1024, 1536, 512, 0, 0 },
	};
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		int M = cases[s][0], N = cases[s][1], K = cases[s][2], res = cases[s][3];
		bool f16 = cases[s][4];
		size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2);
		float *r = malloc(ny * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4);
		uint16_t *dx = dev_bf16(NULL, nx, 0), *dw = dev_bf16(NULL, nw, 0);
		float *dy = dev_f32(NULL, ny, 0);
		CUDA_CHECK(cudaMemset(dx, 0x3c, nx * 2));   /* garbage, but finite */
		CUDA_CHECK(cudaMemset(dw, 0x3c, nw * 2));
		CUDA_CHECK(cudaMemset(dy, 0, ny * 4));
		uint16_t *dw2 = dev_bf16(NULL, nw + 1, 0);
		CUDA_CHECK(cudaMemset(dw2, 0x3c, (nw + 1) * 2));
		const uint16_t *ws[3] = { dw, dw2 + 1, dw2 };
		float first = -1, best = -1;
		int k = kn_gemm_f32_tune(ctx, dy, dx, ws, 3, res ? dy : NULL, M, N, K, f16, 0, &first,
					 &best);
		fprintf(stderr, "gemm tune M=%d N=%d K=%d: candidate %d, %.3f → %.3f ms\n", M, N, K, k,
			first, best);
		CUDA_CHECK(cudaFree(dw2));
		ck_assert_msg(k >= 0 && k <= KN_GEMM_TUNE_WGMMA, "gemm tune M=%d N=%d K=%d: "
			      "candidate %d", M, N, K, k);
		ck_assert_msg(best > 0 && best <= first, "gemm tune: kept %g ms against %g", best, first);
		for (size_t i = 0; i < nx; i++)
			x[i] = f16 ? f32_to_f16(frand(-2.f, 2.f)) : f32_to_bf16(frand(-1.f, 1.f));
		for (size_t i = 0; i < nw; i++)
			w[i] = f16 ? f32_to_f16(frand(-0.05f, 0.05f)) : f32_to_bf16(frand(-0.05f, 0.05f));
		fill_f32(r, ny, -1.f, 1.f);
		if (f16)
			kn_gemm_f32_f16_ref(ref, x, w, res ? r : NULL, M, N, K);
		else
			kn_gemm_f32_ref(ref, x, w, res ? r : NULL, M, N, K);
		CUDA_CHECK(cudaMemcpy(dx, x, nx * 2, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dw, w, nw * 2, cudaMemcpyHostToDevice));
		/* all M rows with the tuned plan; then, past 128, three quarters of them, which
		 * borrow the tuned M's algorithm (gemm.cu) */
		const int rows[2] = { M, M > 128 ? M * 3 / 4 : 0 };
		for (int j = 0; j < 2 && rows[j] > 0; j++) {
			const int m = rows[j];
			CUDA_CHECK(cudaMemcpy(dy, r, ny * 4, cudaMemcpyHostToDevice));
			if (f16)
				kn_gemm_f32_f16_cuda(ctx, dy, dx, dw, res ? dy : NULL, m, N, K, 0);
			else
				kn_gemm_f32_cuda(ctx, dy, dx, dw, res ? dy : NULL, m, N, K, 0);
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(got, dy, (size_t)m * N * 4, cudaMemcpyDeviceToHost));
			const double e = rel_l2_f32(got, ref, (size_t)m * N, 1e-4);
			ck_assert_msg(e <= 1e-5, "gemm after tune M=%d N=%d K=%d, %d rows: rel L2 %g",
				      M, N, K, m, e);
		}
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		free(x);
		free(w);
		free(r);
		free(ref);
		free(got);
	}
	float a, b;
	const uint16_t *none[1] = { NULL };
	ck_assert_int_eq(kn_gemm_f32_tune(ctx, NULL, NULL, none, 1, NULL, 4, 2048, 2048, false, 0,
					  &a, &b), -1);
	ck_assert_int_eq(kn_gemm_f32_tune(ctx, NULL, NULL, none, 0, NULL, 300, 2048, 2048, false, 0,
					  &a, &b), -1);
	ck_assert_int_eq(kn_gemm_f32_tune(ctx, NULL, NULL, none, 1, NULL, 300, 2048, 2048, false, 0,
					  &a, &b), -1);
	/* 300 other keys (more than the cache holds) evict untuned plans only */
	ck_assert_int_eq(kn_gemm_ctx_n_tuned(ctx), 3);
	uint16_t *sx = dev_bf16(NULL, 304 * 64, 0), *sw = dev_bf16(NULL, 128 * 64, 0);
	float *sy = dev_f32(NULL, 304 * 128, 0);
	CUDA_CHECK(cudaMemset(sx, 0, 304 * 64 * 2));
	CUDA_CHECK(cudaMemset(sw, 0, 128 * 64 * 2));
	for (int m = 5; m < 305; m++)
		kn_gemm_f32_cuda(ctx, sy, sx, sw, NULL, m, 128, 64, 0);
	CUDA_CHECK(cudaDeviceSynchronize());
	ck_assert_int_eq(kn_gemm_ctx_n_tuned(ctx), 3);
	CUDA_CHECK(cudaFree(sx));
	CUDA_CHECK(cudaFree(sw));
	CUDA_CHECK(cudaFree(sy));
	/* kn_gemm_tune: the bf16-output plan (the decode steps' LM head), then kn_gemm_cuda with
	 * it against kn_gemm_ref: the same values up to the sums' order (one bf16 rounding) */
	{
		const int M = 128, N = 4096, K = 2048;
		const size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2), *ref = malloc(ny * 2),
			 *got = malloc(ny * 2);
		fill_bf16(x, nx, -1.f, 1.f);
		fill_bf16(w, nw, -0.05f, 0.05f);
		uint16_t *dx = dev_bf16(x, nx, 0), *dw = dev_bf16(w, nw, 0), *dy = dev_bf16(NULL, ny, 0);
		const uint16_t *ws[1] = { dw };
		float first = -1, best = -1;
		const int k = kn_gemm_tune(ctx, dy, dx, ws, 1, M, N, K, 0, &first, &best);
		fprintf(stderr, "gemm tune bf16 M=%d N=%d K=%d: candidate %d, %.3f → %.3f ms\n", M, N,
			K, k, first, best);
		ck_assert_msg(k >= 0 && k < KN_GEMM_TUNE_WGMMA, "gemm tune bf16: candidate %d", k);
		ck_assert_msg(best > 0 && best <= first, "gemm tune bf16: kept %g ms against %g", best,
			      first);
		ck_assert_int_eq(kn_gemm_ctx_n_tuned(ctx), 4);
		kn_gemm_cuda(ctx, dy, dx, dw, NULL, M, N, K, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, ny * 2, cudaMemcpyDeviceToHost));
		kn_gemm_ref(ref, x, w, NULL, M, N, K);
		const double e = rel_l2_bf16(got, ref, ny, 1e-2);
		ck_assert_msg(e <= 4e-3, "gemm bf16 after tune: rel L2 %g", e);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		free(x);
		free(w);
		free(ref);
		free(got);
	}
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* kn_silu_mul_f16_cuda against kn_silu_mul_f16_ref, and against kn_silu_mul_cuda on the same
 * values widened to fp32 (the same code after the exact widening: the same bits). Sizes {T, F,
 * misaligned}: F % 4 != 0 and the misaligned case take the element path. */
START_TEST(test_kernels_cuda_silu_mul_f16)
{
	static const int sizes[][3] = { { 1, 1, 0 },  { 1, 6144, 0 }, { 7, 3, 0 },   { 37, 6144, 0 },
					{ 300, 6144, 0 }, { 4, 6144, 1 }, { 17, 1000, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], F = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)T * F;
		uint16_t *gu = malloc((2 * n + 1) * 2), *ref = malloc(n * 2), *got = malloc(n * 2),
			 *got32 = malloc(n * 2);
		float *gu32 = malloc(2 * n * 4);
		gu[2 * n] = 0;
		for (size_t i = 0; i < 2 * n; i++) {
			gu[i] = f32_to_f16(frand(-6.f, 6.f));
			gu32[i] = f16_to_f32(gu[i]);
		}
		kn_silu_mul_f16_ref(ref, gu, T, F);
		uint16_t *dg = dev_bf16(gu, 2 * n + 1, 0), *dy = dev_bf16(NULL, n + 1, 0),
			 *dy32 = dev_bf16(NULL, n, 0);
		if (off) {   /* one element in: 2-byte aligned only */
			CUDA_CHECK(cudaMemcpy(dg + 1, gu, 2 * n * 2, cudaMemcpyHostToDevice));
			CUDA_CHECK(cudaMemset(dy, 0xff, (n + 1) * 2));
		}
		float *dg32 = dev_f32(gu32, 2 * n, 0);
		kn_silu_mul_f16_cuda(dy + off, dg + off, T, F, 0);
		kn_silu_mul_cuda(dy32, dg32, T, F, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(got32, dy32, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.05);
		fprintf(stderr, "silu_mul_f16 T=%d F=%d%s: rel L2 %.3g, exact %.6f\n", T, F,
			off ? " misaligned" : "", err, exact_rate(got, ref, n));
		ck_assert_msg(err <= 1e-3, "silu_mul_f16 T=%d F=%d: rel L2 error %g", T, F, err);
		ck_assert_msg(!memcmp(got, got32, n * 2),
			      "silu_mul_f16 T=%d F=%d: not the fp32 kernel's bits on the same values",
			      T, F);
		CUDA_CHECK(cudaFree(dg));
		CUDA_CHECK(cudaFree(dy));
		CUDA_CHECK(cudaFree(dy32));
		CUDA_CHECK(cudaFree(dg32));
		free(gu);
		free(ref);
		free(got);
		free(got32);
		free(gu32);
	}
}
END_TEST

/* kn_gemm_f16_cuda (fp16 operands and output) against kn_gemm_f16_ref: the GEMV (M ≤ 4) and
 * cuBLASLt; and its output is kn_gemm_f32_f16_cuda's rounded to fp16 where both take the GEMV
 * (one summation). Cases {M, N, K}. */
START_TEST(test_kernels_cuda_gemm_f16)
{
	static const int cases[][3] = {
		{ 1, 12288, 2048 }, { 3, 4099, 2048 }, { 5, 12288, 2048 }, { 37, 1000, 96 },
		{ 300, 12288, 2048 },
	};
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		int M = cases[s][0], N = cases[s][1], K = cases[s][2];
		size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
		uint16_t *x = malloc(nx * 2), *w = malloc(nw * 2), *ref = malloc(ny * 2),
			 *got = malloc(ny * 2);
		float *got32 = malloc(ny * 4), *ref32 = malloc(ny * 4), *gotw = malloc(ny * 4);
		for (size_t i = 0; i < nx; i++)
			x[i] = f32_to_f16(frand(-4.f, 4.f));
		for (size_t i = 0; i < nw; i++)
			w[i] = f32_to_f16(frand(-0.05f, 0.05f));
		kn_gemm_f16_ref(ref, x, w, M, N, K);
		uint16_t *dx = dev_bf16(x, nx, 0), *dw = dev_bf16(w, nw, 0), *dy = dev_bf16(NULL, ny, 0);
		float *dy32 = dev_f32(NULL, ny, 0);
		kn_gemm_f16_cuda(ctx, dy, dx, dw, M, N, K, 0);
		kn_gemm_f32_f16_cuda(ctx, dy32, dx, dw, NULL, M, N, K, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, ny * 2, cudaMemcpyDeviceToHost));
		CUDA_CHECK(cudaMemcpy(got32, dy32, ny * 4, cudaMemcpyDeviceToHost));
		for (size_t i = 0; i < ny; i++) {
			gotw[i] = f16_to_f32(got[i]);
			ref32[i] = f16_to_f32(ref[i]);
		}
		double e = rel_l2_f32(gotw, ref32, ny, 1e-4);
		size_t same = 0;
		for (size_t i = 0; i < ny; i++)
			same += got[i] == f32_to_f16(got32[i]);
		fprintf(stderr, "gemm_f16 M=%d N=%d K=%d: rel L2 %.3g, fp16(gemm_f32_f16) in %zu of %zu\n",
			M, N, K, e, same, ny);
		/* the fp16 rounding of the output: ≤ 2^-11 relative */
		ck_assert_msg(e <= 1e-3, "gemm_f16 M=%d N=%d K=%d: rel L2 %g", M, N, K, e);
		if (M <= 4)
			ck_assert_msg(same == ny, "gemm_f16 M=%d N=%d K=%d: %zu outputs are not the fp32 "
				      "GEMV's rounded", M, N, K, ny - same);
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		CUDA_CHECK(cudaFree(dy32));
		free(x);
		free(w);
		free(ref);
		free(got);
		free(got32);
		free(ref32);
		free(gotw);
	}
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* The median of REPS timed calls (after 3 warm-up) of the (M, N, K) projection with bf16
 * (kn_gemm_cuda) or fp32 (kn_gemm_f32_cuda) output into dy, in seconds. */
static double gemm_time_s(kn_gemm_ctx *ctx, int f32, void *dy, const uint16_t *dx,
			  const uint16_t *dw, int M, int N, int K, cudaEvent_t e0, cudaEvent_t e1)
{
	enum { REPS = 20 };
	float ms[REPS];
	for (int r = -3; r < REPS; r++) {
		CUDA_CHECK(cudaEventRecord(e0, 0));
		if (f32)
			kn_gemm_f32_cuda(ctx, dy, dx, dw, NULL, M, N, K, 0);
		else
			kn_gemm_cuda(ctx, dy, dx, dw, NULL, M, N, K, 0);
		CUDA_CHECK(cudaEventRecord(e1, 0));
		CUDA_CHECK(cudaEventSynchronize(e1));
		if (r >= 0)
			CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	return median_ms(ms, REPS) * 1e-3;
}

/* Table lines for the 2B model's projections at decode (M=1) and M=128, with bf16
 * (kn_gemm_cuda) and fp32 (kn_gemm_f32_cuda) output (no assertion on the times). One weight
 * buffer, so the small projections find W warm in L2 here; bench_decode_cuda times them cold,
 * as in a step. What was timed is checked to be a real answer: the first output row of the two
 * forms finite and within bf16 rounding of each other. */
START_TEST(test_kernels_cuda_gemm_timing)
{
	static const struct {
		const char *name;
		int N, K;
	} shapes[] = { { "qkv", 4096, 2048 },	 { "o", 2048, 2048 },	  { "gate_up", 12288, 2048 },
		       { "down", 2048, 6144 },	 { "lm_head", 151936, 2048 } };
	static const int Ms[] = { 1, 128 };
	const size_t maxw = (size_t)151936 * 2048, maxx = (size_t)128 * 6144,
		     maxy = (size_t)128 * 151936;
	uint16_t *h = malloc(maxw * 2);
	for (size_t i = 0; i < maxw; i++)
		h[i] = f32_to_bf16(frand(-0.05f, 0.05f));
	uint16_t *dx, *dw, *dy16, *row16 = malloc((size_t)151936 * 2);
	float *dy32, *row32 = malloc((size_t)151936 * 4);
	CUDA_CHECK(cudaMalloc((void **)&dw, maxw * 2));
	CUDA_CHECK(cudaMalloc((void **)&dx, maxx * 2));
	CUDA_CHECK(cudaMalloc((void **)&dy16, maxy * 2));
	CUDA_CHECK(cudaMalloc((void **)&dy32, maxy * 4));
	CUDA_CHECK(cudaMemcpy(dw, h, maxw * 2, cudaMemcpyHostToDevice));
	CUDA_CHECK(cudaMemcpy(dx, h, maxx * 2, cudaMemcpyHostToDevice));
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	fprintf(stderr, "gemm timing | %s | events, 3 warm-up, median of 20 | 32 MiB workspace\n",
		prop.name);
	fprintf(stderr, "gemm timing | %-8s | %4s | %6s | %5s | %9s | %9s | %8s | %10s\n", "proj",
		"M", "N", "K", "us bf16", "us fp32", "TFLOP/s", "GB/s (W)");
	for (size_t mi = 0; mi < sizeof(Ms) / sizeof(Ms[0]); mi++)
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
			int M = Ms[mi], N = shapes[s].N, K = shapes[s].K;
			double t16 = gemm_time_s(ctx, 0, dy16, dx, dw, M, N, K, e0, e1);
			double t32 = gemm_time_s(ctx, 1, dy32, dx, dw, M, N, K, e0, e1);
			CUDA_CHECK(cudaMemcpy(row16, dy16, (size_t)N * 2, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(row32, dy32, (size_t)N * 4, cudaMemcpyDeviceToHost));
			double num = 0, den = 0;
			for (int c = 0; c < N; c++) {
				ck_assert_msg(isfinite(row32[c]), "gemm %s M=%d: y[0][%d] = %g",
					      shapes[s].name, M, c, row32[c]);
				double d = bf16_to_f32(row16[c]) - (double)row32[c];
				num += d * d;
				den += (double)row32[c] * row32[c];
			}
			ck_assert_msg(den > 0 && sqrt(num / den) <= 1e-2,
				      "gemm %s M=%d: bf16 and fp32 outputs differ (rel L2 %g)",
				      shapes[s].name, M, den > 0 ? sqrt(num / den) : INFINITY);
			double flop = 2.0 * M * N * K, wbytes = 2.0 * N * K;
			fprintf(stderr,
				"gemm timing | %-8s | %4d | %6d | %5d | %9.1f | %9.1f | %8.1f | %10.0f\n",
				shapes[s].name, M, N, K, t16 * 1e6, t32 * 1e6, flop / t32 / 1e12,
				wbytes / t32 / 1e9);
		}
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	kn_gemm_ctx_free(ctx);
	CUDA_CHECK(cudaFree(dx));
	CUDA_CHECK(cudaFree(dw));
	CUDA_CHECK(cudaFree(dy16));
	CUDA_CHECK(cudaFree(dy32));
	free(row16);
	free(row32);
	free(h);
}
END_TEST

int main(void)
{
	kt_seed(88172645463325252ull);
	int count = 0;
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
		fprintf(stderr, "no CUDA device visible: skipping\n");
		return 77;
	}
	Suite *s = suite_create("kernels_cuda");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_kernels_cuda_rmsnorm);
	tcase_add_test(tc, test_kernels_cuda_embedding);
	tcase_add_test(tc, test_kernels_cuda_rows);
	tcase_add_test(tc, test_kernels_cuda_silu_mul);
	tcase_add_test(tc, test_kernels_cuda_layernorm);
	tcase_add_test(tc, test_kernels_cuda_gelu);
	tcase_add_test(tc, test_kernels_cuda_paged_attention);
	tcase_add_test(tc, test_kernels_cuda_qk_norm_rope);
	tcase_add_test(tc, test_kernels_cuda_rope_table);
	tcase_add_test(tc, test_kernels_cuda_logits_topk);
	tcase_add_test(tc, test_kernels_cuda_logits_topk_timing);
	tcase_add_test(tc, test_kernels_cuda_gemm);
	tcase_add_test(tc, test_kernels_cuda_gemm_f32);
	tcase_add_test(tc, test_kernels_cuda_gemm_timing);
	suite_add_tcase(s, tc);
	/* the fp8 KV cache (CK_RUN_CASE=fp8 runs only these), and the decode attention timing
	 * (CK_RUN_CASE=pa_timing), bf16 and fp8 */
	TCase *tc8 = tcase_create("fp8");
	tcase_add_test(tc8, test_kernels_cuda_qk_norm_rope_fp8);
	tcase_add_test(tc8, test_kernels_cuda_paged_attention_fp8);
	tcase_add_test(tc8, test_kernels_cuda_paged_attention_fp8_decode);
	tcase_add_test(tc8, test_kernels_cuda_paged_attention_fp8_bad_scales);
	suite_add_tcase(s, tc8);
	/* the fp16-operand projections, the GEMV with the RMSNorm inside and the plan tuning
	 * (CK_RUN_CASE=gemm16: these alone, e.g. under memcheck; racecheck does not finish
	 * gemm_tune's hundreds of cuBLASLt plans: run it on f16out) */
	TCase *tc16 = tcase_create("gemm16");
	tcase_add_test(tc16, test_kernels_cuda_gemm_f32_f16);
	tcase_add_test(tc16, test_kernels_cuda_gemm_rmsnorm);
	tcase_add_test(tc16, test_kernels_cuda_gemm_tune);
	suite_add_tcase(s, tc16);
	/* gemm_wgmma, the Hopper kernel of the decode steps' projections (CK_RUN_CASE=wgmma) */
	TCase *tcw = tcase_create("wgmma");
	tcase_add_test(tcw, test_kernels_cuda_gemm_wgmma);
	tcase_add_test(tcw, test_kernels_cuda_gemm_glu);
	suite_add_tcase(s, tcw);
	/* gemm_qkv_tma, the prompt steps' q/k/v projection with qk_norm_rope (CK_RUN_CASE=qkv_tma:
	 * alone, e.g. under racecheck, which does not finish the wgmma case's GLU shapes) */
	TCase *tcq = tcase_create("qkv_tma");
	tcase_add_test(tcq, test_kernels_cuda_gemm_qkv_tma);
	suite_add_tcase(s, tcq);
	/* kn_gemm_f16 (the fp16-output GEMV instance up to 4 rows, cuBLASLt above; the decoder
	 * calls it above 4 rows) and silu_mul_f16 (CK_RUN_CASE=f16out: these alone, e.g. under
	 * racecheck) */
	TCase *tcf = tcase_create("f16out");
	tcase_add_test(tcf, test_kernels_cuda_gemm_f16);
	tcase_add_test(tcf, test_kernels_cuda_silu_mul_f16);
	suite_add_tcase(s, tcf);
	TCase *tct = tcase_create("pa_timing");
	tcase_add_test(tct, test_kernels_cuda_paged_attention_timing);
	suite_add_tcase(s, tct);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
