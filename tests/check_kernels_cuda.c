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

#include "add_rmsnorm.h"
#include "bf16.h"
#include "cuda_check.h"
#include "embedding.h"
#include "gelu.h"
#include "gemm.h"
#include "kernel_testutil.h"
#include "layernorm.h"
#include "logits_topk.h"
#include "paged_attention.h"
#include "qk_norm_rope.h"
#include "rmsnorm.h"
#include "rows.h"
#include "silu_mul.h"

START_TEST(test_kernels_cuda_rmsnorm)
{
	static const int sizes[][2] = { { 1, 1 }, { 1, 128 }, { 7, 3 }, { 5, 2048 }, { 64, 128 },
					{ 3, 4099 }, { 300, 2048 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int rows = sizes[s][0], cols = sizes[s][1];
		size_t n = (size_t)rows * cols;
		uint16_t *x = malloc(n * 2), *w = malloc((size_t)cols * 2), *ref = malloc(n * 2),
			 *got = malloc(n * 2);
		for (size_t i = 0; i < n; i++)
			x[i] = f32_to_bf16(frand(-3.f, 3.f));
		for (int c = 0; c < cols; c++)
			w[c] = f32_to_bf16(frand(0.5f, 1.5f));
		kn_rmsnorm_ref(ref, x, w, rows, cols, 1e-6f);

		uint16_t *dx, *dw, *dy;
		CUDA_CHECK(cudaMalloc((void **)&dx, n * 2));
		CUDA_CHECK(cudaMalloc((void **)&dw, (size_t)cols * 2));
		CUDA_CHECK(cudaMalloc((void **)&dy, n * 2));
		CUDA_CHECK(cudaMemcpy(dx, x, n * 2, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dw, w, (size_t)cols * 2, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemset(dy, 0xff, n * 2)); /* 0xffff is a bf16 NaN */
		kn_rmsnorm_cuda(dy, dx, dw, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.02);
		fprintf(stderr, "rmsnorm %dx%d: rel L2 %.3g\n", rows, cols, err);
		/* bf16 output; the kernel's fp32 sum differs from the double reference only by
		 * rounding, which can flip a bf16 rounding now and then */
		ck_assert_msg(err < 2e-3, "rmsnorm %dx%d: rel L2 error %g", rows, cols, err);

		/* in place */
		CUDA_CHECK(cudaMemcpy(dy, x, n * 2, cudaMemcpyHostToDevice));
		kn_rmsnorm_cuda(dy, dy, dw, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaMemcpy(got, dy, n * 2, cudaMemcpyDeviceToHost));
		ck_assert(rel_l2_bf16(got, ref, n, 0.02) < 2e-3);
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

/* Sizes: {rows, cols, misaligned}. misaligned shifts every buffer by one bf16 so that the
 * vector paths are refused and the element paths run on shapes they would otherwise not see. */
START_TEST(test_kernels_cuda_embedding)
{
	enum { V = 4099 };
	static const int sizes[][3] = { { 1, 1, 0 },    { 1, 2048, 0 }, { 7, 3, 0 },
					{ 5, 13, 0 },   { 3, 8, 0 },    { 37, 2048, 0 },
					{ 300, 2048, 0 }, { 9, 2048, 1 }, { 4, 6144, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], D = sizes[s][1], off = sizes[s][2];
		size_t nt = (size_t)V * D, n = (size_t)T * D;
		uint16_t *table = malloc(nt * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		int32_t *ids = malloc((size_t)T * 4);
		fill_bf16(table, nt, -2.f, 2.f);
		for (int t = 0; t < T; t++)
			ids[t] = (int32_t)frand(0.f, (float)V - 0.5f);
		ids[0] = V - 1;   /* the last row, the one most likely to be read out of bounds */
		kn_embedding_ref(ref, table, ids, T, D);

		uint16_t *dt = dev_bf16(table, nt, off), *dy = dev_bf16(NULL, n, 0);
		int32_t *di;
		CUDA_CHECK(cudaMalloc((void **)&di, (size_t)T * 4));
		CUDA_CHECK(cudaMemcpy(di, ids, (size_t)T * 4, cudaMemcpyHostToDevice));
		kn_embedding_cuda(dy + off, dt + off, di, T, D, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double rate = exact_rate(got, ref, n);
		fprintf(stderr, "embedding T=%d D=%d%s: exact %.6f\n", T, D, off ? " misaligned" : "",
			rate);
		ck_assert_msg(memcmp(got, ref, n * 2) == 0, "embedding T=%d D=%d: not bit-exact", T, D);
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

/* gather, scatter and scatter-add of whole rows: bit-exact against the reference (distinct
 * indexes in random order, odd widths, a destination whose other rows must stay untouched) */
START_TEST(test_kernels_cuda_rows)
{
	static const int sizes[][3] = { { 1, 1, 1 }, { 5, 3, 2 }, { 40, 2048, 17 }, { 9, 130, 9 },
					{ 300, 2048, 256 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int R = sizes[s][0], C = sizes[s][1], n = sizes[s][2];
		size_t nr = (size_t)R * C, nn = (size_t)n * C;
		uint16_t *big = malloc(nr * 2), *small = malloc(nn * 2), *ref = malloc(nr * 2),
			 *got = malloc(nr * 2);
		int32_t *idx = malloc((size_t)R * 4);
		fill_bf16(big, nr, -2.f, 2.f);
		fill_bf16(small, nn, -2.f, 2.f);
		for (int i = 0; i < R; i++)
			idx[i] = i;
		for (int i = R - 1; i > 0; i--) {   /* shuffle: the first n are distinct rows */
			int j = (int)frand(0.f, (float)i + 0.999f);
			int32_t x = idx[i];
			idx[i] = idx[j];
			idx[j] = x;
		}
		uint16_t *dbig = dev_bf16(big, nr, 0), *dsmall = dev_bf16(small, nn, 0);
		uint16_t *dout = dev_bf16(NULL, nn > nr ? nn : nr, 0);
		int32_t *di;
		CUDA_CHECK(cudaMalloc((void **)&di, (size_t)n * 4));
		CUDA_CHECK(cudaMemcpy(di, idx, (size_t)n * 4, cudaMemcpyHostToDevice));
		for (int mode = 0; mode < 3; mode++) {
			size_t cnt = mode == 0 ? nn : nr;
			if (mode == 0) {
				kn_rows_gather_ref(ref, big, idx, n, C);
				kn_rows_gather_cuda(dout, dbig, di, n, C, 0);
			} else {
				memcpy(ref, big, nr * 2);
				CUDA_CHECK(cudaMemcpy(dout, big, nr * 2, cudaMemcpyHostToDevice));
				if (mode == 1) {
					kn_rows_scatter_ref(ref, small, idx, n, C);
					kn_rows_scatter_cuda(dout, dsmall, di, n, C, 0);
				} else {
					kn_rows_scatter_add_ref(ref, small, idx, n, C);
					kn_rows_scatter_add_cuda(dout, dsmall, di, n, C, 0);
				}
			}
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(got, dout, cnt * 2, cudaMemcpyDeviceToHost));
			ck_assert_msg(memcmp(got, ref, cnt * 2) == 0, "rows mode %d R=%d C=%d n=%d: not "
				      "bit-exact", mode, R, C, n);
		}
		CUDA_CHECK(cudaFree(dbig));
		CUDA_CHECK(cudaFree(dsmall));
		CUDA_CHECK(cudaFree(dout));
		CUDA_CHECK(cudaFree(di));
		free(big);
		free(small);
		free(ref);
		free(got);
		free(idx);
	}
}
END_TEST

START_TEST(test_kernels_cuda_add_rmsnorm)
{
	static const int sizes[][3] = { { 1, 1, 0 },     { 1, 2048, 0 }, { 7, 3, 0 },
					{ 5, 2048, 0 },  { 3, 4099, 0 }, { 64, 128, 0 },
					{ 300, 2048, 0 }, { 2, 6144, 0 }, { 5, 2048, 1 },
					{ 33, 1000, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int rows = sizes[s][0], cols = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)rows * cols;
		uint16_t *res = malloc(n * 2), *x = malloc(n * 2), *w = malloc((size_t)cols * 2),
			 *ref_res = malloc(n * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		fill_bf16(res, n, -3.f, 3.f);
		fill_bf16(x, n, -1.f, 1.f);
		fill_bf16(w, (size_t)cols, 0.5f, 1.5f);
		memcpy(ref_res, res, n * 2);
		kn_add_rmsnorm_ref(ref, ref_res, x, w, rows, cols, 1e-6f);

		uint16_t *dr = dev_bf16(res, n, off), *dx = dev_bf16(x, n, off),
			 *dw = dev_bf16(w, (size_t)cols, off), *dy = dev_bf16(NULL, n, 0);
		kn_add_rmsnorm_cuda(dy + off, dr + off, dx + off, dw + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		/* the residual add is one fp32 add and one rounding in both: bit-exact */
		CUDA_CHECK(cudaMemcpy(got, dr + off, n * 2, cudaMemcpyDeviceToHost));
		double rate_res = exact_rate(got, ref_res, n);
		ck_assert_msg(memcmp(got, ref_res, n * 2) == 0,
			      "add_rmsnorm %dx%d: residual not bit-exact (%.6f)", rows, cols, rate_res);
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.02);
		fprintf(stderr, "add_rmsnorm %dx%d%s: rel L2 %.3g, exact %.6f (residual exact %.6f)\n",
			rows, cols, off ? " misaligned" : "", err, exact_rate(got, ref, n), rate_res);
		ck_assert_msg(err <= 1e-2, "add_rmsnorm %dx%d: rel L2 error %g", rows, cols, err);

		/* out aliasing x */
		CUDA_CHECK(cudaMemcpy(dr + off, res, n * 2, cudaMemcpyHostToDevice));
		kn_add_rmsnorm_cuda(dx + off, dr + off, dx + off, dw + off, rows, cols, 1e-6f, 0);
		CUDA_CHECK(cudaMemcpy(got, dx + off, n * 2, cudaMemcpyDeviceToHost));
		err = rel_l2_bf16(got, ref, n, 0.02);
		ck_assert_msg(err <= 1e-2, "add_rmsnorm %dx%d in place: rel L2 error %g", rows, cols,
			      err);
		CUDA_CHECK(cudaFree(dr));
		CUDA_CHECK(cudaFree(dx));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		free(res);
		free(x);
		free(w);
		free(ref_res);
		free(ref);
		free(got);
	}
}
END_TEST

START_TEST(test_kernels_cuda_silu_mul)
{
	static const int sizes[][3] = { { 1, 1, 0 },     { 1, 6144, 0 }, { 7, 3, 0 },
					{ 5, 13, 0 },    { 37, 6144, 0 }, { 300, 6144, 0 },
					{ 3, 2048, 0 },  { 4, 6144, 1 }, { 17, 1000, 0 } };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], F = sizes[s][1], off = sizes[s][2];
		size_t n = (size_t)T * F;
		uint16_t *gu = malloc(2 * n * 2), *ref = malloc(n * 2), *got = malloc(n * 2);
		fill_bf16(gu, 2 * n, -6.f, 6.f);
		kn_silu_mul_ref(ref, gu, T, F);

		uint16_t *dg = dev_bf16(gu, 2 * n, off), *dy = dev_bf16(NULL, n, 0);
		kn_silu_mul_cuda(dy + off, dg + off, T, F, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy + off, n * 2, cudaMemcpyDeviceToHost));
		double err = rel_l2_bf16(got, ref, n, 0.05);
		fprintf(stderr, "silu_mul T=%d F=%d%s: rel L2 %.3g, exact %.6f\n", T, F,
			off ? " misaligned" : "", err, exact_rate(got, ref, n));
		ck_assert_msg(err <= 1e-2, "silu_mul T=%d F=%d: rel L2 error %g", T, F, err);
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

/* Sizes: {n, misaligned}; n = rows·4096 (the vision MLP / merger width) plus odd tails. */
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
			double err = rel_l2_bf16(got, ref, (size_t)n, 0.05);
			fprintf(stderr, "gelu_%s n=%ld%s: rel L2 %.3g, exact %.6f\n", name, n,
				off ? " misaligned" : "", err, exact_rate(got, ref, (size_t)n));
			ck_assert_msg(err <= 1e-2, "gelu_%s n=%ld: rel L2 error %g", name, n, err);

			/* in place */
			kn_gelu_cuda(dx + off, dx + off, n, modes[m], 0);
			CUDA_CHECK(cudaMemcpy(got, dx + off, (size_t)n * 2, cudaMemcpyDeviceToHost));
			err = rel_l2_bf16(got, ref, (size_t)n, 0.05);
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
		uint16_t *qkv = malloc(nqkv * 2), *qw = malloc((size_t)hd * 2),
			 *kw = malloc((size_t)hd * 2), *qref = malloc(nq * 2), *qgot = malloc(nq * 2),
			 *kref = malloc(nc * 2), *vref = malloc(nc * 2), *kgot = malloc(nc * 2),
			 *vgot = malloc(nc * 2);
		int32_t *pos = malloc((size_t)3 * T * 4), *slots = malloc((size_t)T * 4),
			*perm = malloc((size_t)nb * 4);
		fill_bf16(qkv, nqkv, -3.f, 3.f);
		fill_bf16(qw, (size_t)hd, 0.5f, 1.5f);
		fill_bf16(kw, (size_t)hd, 0.5f, 1.5f);
		for (int b = 0; b < nb; b++)
			perm[b] = b;
		for (int b = nb - 1; b > 0; b--) {
			int o = (int)frand(0.f, (float)b + 0.999f), tmp = perm[b];
			perm[b] = perm[o];
			perm[o] = tmp;
		}
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

		uint16_t *dqkv = dev_bf16(qkv, nqkv, 0), *dqw = dev_bf16(qw, (size_t)hd, 0),
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

/* A shuffled pool of n_blocks block ids dealt out to B sequences of ctx[b] positions, bs per
 * block; unused entries of the (B, max_blocks) table are -1, so reading one faults. */
static void pa_block_table(int32_t *bt, const int32_t *ctx, int B, int max_blocks, int bs,
			   int n_blocks)
{
	int32_t *perm = malloc((size_t)n_blocks * sizeof(*perm));
	for (int i = 0; i < n_blocks; i++)
		perm[i] = i;
	for (int i = n_blocks - 1; i > 0; i--) {
		int j = (int)frand(0.f, (float)i + 0.999f);
		int32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
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

START_TEST(test_kernels_cuda_paged_attention)
{
	/* ctx lengths 1, 15, 16, 17, 1000, 4096 mixed in every batch, starting at lens[o]; the
	 * batch sizes give 16 CTAs per (sequence, kv head) (B ≤ 2), 8 (B = 3), 4 (B = 6, 7),
	 * 2 (B = 13) and 1 (B ≥ 64) */
	static const int32_t lens[] = { 1, 15, 16, 17, 1000, 4096 };
	static const int cfg[][6] = { /* B, Hq, KV, hd, bs, o */
				      { 64, 16, 8, 128, 16, 0 }, { 64, 4, 2, 32, 16, 0 },
				      { 13, 8, 2, 64, 64, 0 },   { 7, 6, 2, 64, 32, 0 },
				      { 6, 8, 1, 128, 1, 0 },    { 6, 2, 2, 256, 8, 0 },
				      { 1, 16, 8, 128, 16, 4 },  { 1, 16, 8, 128, 16, 5 },
				      { 2, 12, 4, 128, 16, 1 },  { 3, 16, 2, 256, 16, 3 },
				      { 130, 4, 2, 64, 16, 2 },  { 600, 2, 1, 32, 16, 0 } };
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

START_TEST(test_kernels_cuda_paged_attention_timing)
{
	enum { B = 128, CTX = 576, HQ = 16, KV = 8, HD = 128, BS = 16, REPS = 20 };
	const int max_blocks = CTX / BS, n_blocks = B * max_blocks;
	const size_t nq = (size_t)B * HQ * HD, pool = (size_t)n_blocks * BS * KV * HD;
	const size_t tile = (size_t)1 << 22;
	uint16_t *h = malloc(tile * 2), *dk, *dv;
	int32_t ctx[B], *bt = malloc((size_t)B * max_blocks * sizeof(*bt));
	fill_bf16(h, tile, -2.f, 2.f);
	CUDA_CHECK(cudaMalloc((void **)&dk, pool * 2));
	CUDA_CHECK(cudaMalloc((void **)&dv, pool * 2));
	for (size_t off = 0; off < pool; off += tile) {
		size_t n = pool - off < tile ? pool - off : tile;
		CUDA_CHECK(cudaMemcpy(dk + off, h, n * 2, cudaMemcpyHostToDevice));
		CUDA_CHECK(cudaMemcpy(dv + off, h + (tile - n), n * 2, cudaMemcpyHostToDevice));
	}
	for (int b = 0; b < B; b++)
		ctx[b] = CTX;
	pa_block_table(bt, ctx, B, max_blocks, BS, n_blocks);
	uint16_t *dq = pa_dev(h, nq * 2), *dout = dev_bf16(NULL, nq, 0);
	int32_t *dbt = pa_dev(bt, (size_t)B * max_blocks * sizeof(*bt)), *dctx = pa_dev(ctx, sizeof(ctx));
	size_t wsb = kn_paged_attention_workspace_bytes(B, HQ, HD, CTX);
	void *ws;
	CUDA_CHECK(cudaMalloc(&ws, wsb));
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	float ms[REPS];
	for (int r = -3; r < REPS; r++) {
		CUDA_CHECK(cudaEventRecord(e0, 0));
		ck_assert_int_eq(kn_paged_attention_cuda(dout, dq, dk, dv, dbt, dctx, B, HQ, KV, HD, BS,
							 max_blocks, 0.0883883f, ws, wsb, 0),
				 0);
		CUDA_CHECK(cudaEventRecord(e1, 0));
		CUDA_CHECK(cudaEventSynchronize(e1));
		if (r >= 0)
			CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
	}
	double med = median_ms(ms, REPS);
	double bytes = 2.0 * B * CTX * KV * HD * 2;
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	fprintf(stderr,
		"paged_attention timing | %s | events, 3 warm-up, median of %d | B=%d ctx=%d Hq=%d "
		"KV=%d hd=%d bs=%d | %.1f us | K+V %.1f MB | %.0f GB/s\n",
		prop.name, REPS, B, CTX, HQ, KV, HD, BS, med * 1e3, bytes / 1e6, bytes / (med * 1e-3) / 1e9);
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	CUDA_CHECK(cudaFree(dk));
	CUDA_CHECK(cudaFree(dv));
	CUDA_CHECK(cudaFree(dq));
	CUDA_CHECK(cudaFree(dout));
	CUDA_CHECK(cudaFree(dbt));
	CUDA_CHECK(cudaFree(dctx));
	CUDA_CHECK(cudaFree(ws));
	free(h);
	free(bt);
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

/* The fused SiLU·down form against kn_gemm_silu_ref, and for M ≤ 4 with F % 8 == 0 bit for bit
 * against kn_silu_mul_cuda + kn_gemm_cuda, whose rounding and summation order it shares. Cases
 * {M, N, F, residual (0 none, 1 separate, 2 in place)}: odd N; F = 8, 2048 and 6144 (x in 1, 2
 * or 3 pieces a lane); the fallback through the scratch for F = 13 (F % 8), F = 16384 (past
 * 8192), M = 7 and 33; the model's 2048 × 6144. */
START_TEST(test_kernels_cuda_gemm_silu)
{
	static const int cases[][4] = { { 1, 2048, 6144, 0 }, { 2, 2047, 6144, 1 },
					{ 3, 1001, 2048, 2 }, { 4, 2049, 6144, 1 },
					{ 1, 1, 8, 0 },       { 4, 17, 13, 1 },
					{ 7, 2048, 6144, 0 }, { 33, 515, 1000, 2 },
					{ 4, 5, 16384, 0 } };
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	for (size_t s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
		int M = cases[s][0], N = cases[s][1], F = cases[s][2], res = cases[s][3];
		size_t ng = (size_t)M * 2 * F, na = (size_t)M * F, nw = (size_t)N * F,
		       ny = (size_t)M * N;
		uint16_t *gu = malloc(ng * 2), *w = malloc(nw * 2), *r = malloc(ny * 2),
			 *act = malloc(na * 2), *ref = malloc(ny * 2), *got = malloc(ny * 2),
			 *two = malloc(ny * 2);
		fill_bf16(gu, ng, -4.f, 4.f);
		fill_bf16(w, nw, -0.05f, 0.05f);
		fill_bf16(r, ny, -1.f, 1.f);
		kn_gemm_silu_ref(ref, gu, w, res ? r : NULL, act, M, N, F);

		uint16_t *dg = dev_bf16(gu, ng, 0), *dw = dev_bf16(w, nw, 0), *dy = dev_bf16(NULL, ny, 0),
			 *dsc = dev_bf16(NULL, na, 0), *dr = NULL;
		if (res == 1)
			dr = dev_bf16(r, ny, 0);
		if (res == 2) {
			CUDA_CHECK(cudaMemcpy(dy, r, ny * 2, cudaMemcpyHostToDevice));
			dr = dy;
		}
		kn_gemm_silu_cuda(ctx, dy, dg, dw, dr, dsc, M, N, F, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(got, dy, ny * 2, cudaMemcpyDeviceToHost));
		double e = rel_l2_bf16(got, ref, ny, 0.05);
		fprintf(stderr, "gemm_silu M=%d N=%d F=%d residual=%s: rel L2 %.3g, exact %.4f\n", M, N,
			F, res == 0 ? "none" : res == 1 ? "separate" : "in place", e,
			exact_rate(got, ref, ny));
		ck_assert_msg(e <= 1e-2, "gemm_silu M=%d N=%d F=%d res=%d: rel L2 %g", M, N, F, res, e);

		/* the unfused pair on the same inputs */
		if (res == 2)
			CUDA_CHECK(cudaMemcpy(dy, r, ny * 2, cudaMemcpyHostToDevice));
		else
			CUDA_CHECK(cudaMemset(dy, 0xff, ny * 2));
		kn_silu_mul_cuda(dsc, dg, M, F, 0);
		kn_gemm_cuda(ctx, dy, dsc, dw, dr, M, N, F, 0);
		CUDA_CHECK(cudaDeviceSynchronize());
		CUDA_CHECK(cudaMemcpy(two, dy, ny * 2, cudaMemcpyDeviceToHost));
		double same = exact_rate(got, two, ny);
		if (M <= 4 && F % 8 == 0) {
			for (size_t i = 0, shown = 0; i < ny && shown < 5; i++)
				if (got[i] != two[i]) {
					fprintf(stderr, "  [%zu] fused %04x, silu_mul + gemm %04x\n", i,
						got[i], two[i]);
					shown++;
				}
			ck_assert_msg(same == 1.0,
				      "gemm_silu M=%d N=%d F=%d: %.6f bit-equal to silu_mul + gemm",
				      M, N, F, same);
		}
		CUDA_CHECK(cudaFree(dg));
		CUDA_CHECK(cudaFree(dw));
		CUDA_CHECK(cudaFree(dy));
		CUDA_CHECK(cudaFree(dsc));
		if (res == 1)
			CUDA_CHECK(cudaFree(dr));
		free(gu);
		free(w);
		free(r);
		free(act);
		free(ref);
		free(got);
		free(two);
	}
	kn_gemm_ctx_free(ctx);
}
END_TEST

/* Not assertions: table lines for the 2B model's projections at decode (M=1) and M=128. */
START_TEST(test_kernels_cuda_gemm_timing)
{
	enum { REPS = 20 };
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
	uint16_t *dx, *dw, *dy;
	CUDA_CHECK(cudaMalloc((void **)&dw, maxw * 2));
	CUDA_CHECK(cudaMalloc((void **)&dx, maxx * 2));
	CUDA_CHECK(cudaMalloc((void **)&dy, maxy * 2));
	CUDA_CHECK(cudaMemcpy(dw, h, maxw * 2, cudaMemcpyHostToDevice));
	CUDA_CHECK(cudaMemcpy(dx, h, maxx * 2, cudaMemcpyHostToDevice));
	kn_gemm_ctx *ctx = kn_gemm_ctx_new((size_t)32 << 20);
	struct cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	fprintf(stderr, "gemm timing | %s | events, 3 warm-up, median of %d | 32 MiB workspace\n",
		prop.name, REPS);
	fprintf(stderr, "gemm timing | %-8s | %4s | %6s | %5s | %9s | %8s | %10s\n", "proj", "M",
		"N", "K", "us", "TFLOP/s", "GB/s (W)");
	for (size_t mi = 0; mi < sizeof(Ms) / sizeof(Ms[0]); mi++)
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
			int M = Ms[mi], N = shapes[s].N, K = shapes[s].K;
			float ms[REPS];
			for (int r = -3; r < REPS; r++) {
				CUDA_CHECK(cudaEventRecord(e0, 0));
				kn_gemm_cuda(ctx, dy, dx, dw, NULL, M, N, K, 0);
				CUDA_CHECK(cudaEventRecord(e1, 0));
				CUDA_CHECK(cudaEventSynchronize(e1));
				if (r >= 0)
					CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
			}
			double med = median_ms(ms, REPS) * 1e-3; /* seconds */
			ck_assert(med > 0 && isfinite(med));
			/* what was timed is a real answer: the first output row has no NaN */
			uint16_t *row = malloc((size_t)N * 2);
			CUDA_CHECK(cudaMemcpy(row, dy, (size_t)N * 2, cudaMemcpyDeviceToHost));
			for (int c = 0; c < N; c++)
				ck_assert(!isnan(bf16_to_f32(row[c])));
			free(row);
			double flop = 2.0 * M * N * K, wbytes = 2.0 * N * K;
			fprintf(stderr,
				"gemm timing | %-8s | %4d | %6d | %5d | %9.1f | %8.1f | %10.0f\n",
				shapes[s].name, M, N, K, med * 1e6, flop / med / 1e12,
				wbytes / med / 1e9);
		}
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	kn_gemm_ctx_free(ctx);
	CUDA_CHECK(cudaFree(dx));
	CUDA_CHECK(cudaFree(dw));
	CUDA_CHECK(cudaFree(dy));
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
	tcase_add_test(tc, test_kernels_cuda_add_rmsnorm);
	tcase_add_test(tc, test_kernels_cuda_silu_mul);
	tcase_add_test(tc, test_kernels_cuda_layernorm);
	tcase_add_test(tc, test_kernels_cuda_gelu);
	tcase_add_test(tc, test_kernels_cuda_paged_attention);
	tcase_add_test(tc, test_kernels_cuda_paged_attention_timing);
	tcase_add_test(tc, test_kernels_cuda_qk_norm_rope);
	tcase_add_test(tc, test_kernels_cuda_logits_topk);
	tcase_add_test(tc, test_kernels_cuda_logits_topk_timing);
	tcase_add_test(tc, test_kernels_cuda_gemm);
	tcase_add_test(tc, test_kernels_cuda_gemm_silu);
	tcase_add_test(tc, test_kernels_cuda_gemm_timing);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
