/*
 * kn_prefill_attention_ref on the CPU against a naive dense computation written differently:
 * the paged cache copied out into contiguous (ctx, KV, hd) K and V, a full (len, ctx) score
 * matrix with an explicit causal mask, and a softmax over each masked row. Also: with one new
 * row per sequence it must equal the decode reference kn_paged_attention_ref. The fp8-cache
 * reference kn_prefill_attention_fp8_ref must equal the bf16 one run on bf16 caches holding the
 * decoded values times the scales (powers of two, so that those are exact). Seeded random
 * inputs with shuffled block tables; runs without CUDA.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "fp8.h"
#include "paged_attention.h"
#include "prefill_attention.h"

static uint64_t lcg = 0x2545f4914f6cdd1dull;
static float frand(float lo, float hi)
{
	lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
	return lo + (hi - lo) * (float)(lcg >> 40) / (float)(1u << 24);
}

static double rel_l2_bf16(const uint16_t *got, const uint16_t *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double g = bf16_to_f32(got[i]), r = bf16_to_f32(ref[i]);
		if (isnan(g))
			return INFINITY;
		num += (g - r) * (g - r);
		den += r * r;
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* A batch: n sequences of len[s] new rows after nc[s] cached positions, in a shuffled pool. */
struct rb {
	int n, T, Hq, KV, hd, bs, max_blocks;
	int32_t *q_start, *n_cached, *bt;
	uint16_t *q, *kc, *vc;
	size_t pool;   /* elements of each cache */
};

static void rb_init(struct rb *b, int n, const int *len, const int *nc, int Hq, int KV, int hd,
		    int bs)
{
	b->n = n;
	b->Hq = Hq;
	b->KV = KV;
	b->hd = hd;
	b->bs = bs;
	b->q_start = malloc((size_t)(n + 1) * sizeof(int32_t));
	b->n_cached = malloc((size_t)n * sizeof(int32_t));
	int need = 0, max_ctx = 1;
	b->q_start[0] = 0;
	for (int s = 0; s < n; s++) {
		b->q_start[s + 1] = b->q_start[s] + len[s];
		b->n_cached[s] = nc[s];
		int ctx = nc[s] + len[s];
		need += (ctx + bs - 1) / bs;
		if (ctx > max_ctx)
			max_ctx = ctx;
	}
	b->T = b->q_start[n];
	b->max_blocks = (max_ctx + bs - 1) / bs;
	int n_blocks = need + 3;
	int32_t *perm = malloc((size_t)n_blocks * sizeof(*perm));
	for (int i = 0; i < n_blocks; i++)
		perm[i] = i;
	for (int i = n_blocks - 1; i > 0; i--) {
		int j = (int)frand(0.f, (float)i + 0.999f);
		int32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	b->bt = malloc((size_t)n * b->max_blocks * sizeof(int32_t));
	int next = 0;
	for (int s = 0; s < n; s++)
		for (int i = 0; i < b->max_blocks; i++)
			b->bt[(size_t)s * b->max_blocks + i] =
				i < (nc[s] + len[s] + bs - 1) / bs ? perm[next++] : -1;
	free(perm);
	size_t nq = (size_t)b->T * Hq * hd, pool = (size_t)n_blocks * bs * KV * hd;
	b->pool = pool;
	b->q = malloc(nq * 2 + 2);
	b->kc = malloc(pool * 2);
	b->vc = malloc(pool * 2);
	for (size_t i = 0; i < nq; i++)
		b->q[i] = f32_to_bf16(frand(-2.f, 2.f));
	for (size_t i = 0; i < pool; i++) {
		b->kc[i] = f32_to_bf16(frand(-2.f, 2.f));
		b->vc[i] = f32_to_bf16(frand(-2.f, 2.f));
	}
}

static void rb_free(struct rb *b)
{
	free(b->q_start);
	free(b->n_cached);
	free(b->bt);
	free(b->q);
	free(b->kc);
	free(b->vc);
}

/* The dense version: unpage K and V of each sequence, then masked softmax(Q Kᵀ) V per head. */
static void naive_dense(uint16_t *out, const struct rb *b, float scale)
{
	const int Hq = b->Hq, KV = b->KV, hd = b->hd, bs = b->bs, g = Hq / KV;
	for (int s = 0; s < b->n; s++) {
		const int len = b->q_start[s + 1] - b->q_start[s], ctx = b->n_cached[s] + len;
		float *K = malloc((size_t)ctx * KV * hd * sizeof(float) + 4);
		float *V = malloc((size_t)ctx * KV * hd * sizeof(float) + 4);
		for (int p = 0; p < ctx; p++) {
			long slot = (long)b->bt[(size_t)s * b->max_blocks + p / bs] * bs + p % bs;
			for (int e = 0; e < KV * hd; e++) {
				K[(size_t)p * KV * hd + e] = bf16_to_f32(b->kc[slot * KV * hd + e]);
				V[(size_t)p * KV * hd + e] = bf16_to_f32(b->vc[slot * KV * hd + e]);
			}
		}
		double *S = malloc((size_t)(len ? len : 1) * ctx * sizeof(double) + 8);
		for (int h = 0; h < Hq; h++) {
			for (int i = 0; i < len; i++) {
				const uint16_t *qr = b->q + ((size_t)(b->q_start[s] + i) * Hq + h) * hd;
				for (int p = 0; p < ctx; p++) {
					double d = 0;
					for (int e = 0; e < hd; e++)
						d += bf16_to_f32(qr[e]) *
						     (double)K[((size_t)p * KV + h / g) * hd + e];
					/* the mask: position p is visible from row i iff p ≤ n_cached + i */
					S[(size_t)i * ctx + p] = p <= b->n_cached[s] + i ? d * scale : -INFINITY;
				}
			}
			for (int i = 0; i < len; i++) {
				double *row = S + (size_t)i * ctx, mx = -INFINITY, sum = 0;
				for (int p = 0; p < ctx; p++)
					mx = fmax(mx, row[p]);
				for (int p = 0; p < ctx; p++) {
					row[p] = exp(row[p] - mx);
					sum += row[p];
				}
				uint16_t *o = out + ((size_t)(b->q_start[s] + i) * Hq + h) * hd;
				for (int e = 0; e < hd; e++) {
					double a = 0;
					for (int p = 0; p < ctx; p++)
						a += row[p] * V[((size_t)p * KV + h / g) * hd + e];
					o[e] = f32_to_bf16((float)(a / sum));
				}
			}
		}
		free(S);
		free(K);
		free(V);
	}
}

START_TEST(test_attention_ref_matches_dense)
{
	static const struct {
		int Hq, KV, hd, bs, n, len[4], nc[4];
	} cfg[] = { { 4, 2, 32, 16, 4, { 1, 37, 16, 5 }, { 0, 0, 21, 100 } },
		    { 2, 2, 64, 8, 2, { 70, 1 }, { 3, 40 } },
		    { 8, 2, 128, 16, 3, { 19, 0, 2 }, { 17, 5, 1 } } };
	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		struct rb b;
		rb_init(&b, cfg[c].n, cfg[c].len, cfg[c].nc, cfg[c].Hq, cfg[c].KV, cfg[c].hd,
			cfg[c].bs);
		size_t nq = (size_t)b.T * b.Hq * b.hd;
		uint16_t *ref = malloc(nq * 2 + 2), *dense = malloc(nq * 2 + 2);
		memset(ref, 0xff, nq * 2); /* NaN poison */
		const float scale = 1.0f / sqrtf((float)b.hd);
		kn_prefill_attention_ref(ref, b.q, b.kc, b.vc, b.bt, b.q_start, b.n_cached, b.n, b.T,
					 b.Hq, b.KV, b.hd, b.bs, b.max_blocks, scale);
		naive_dense(dense, &b, scale);
		double err = rel_l2_bf16(ref, dense, nq);
		fprintf(stderr, "prefill_attention_ref vs dense, T=%d Hq=%d KV=%d hd=%d: rel L2 %.3g\n",
			b.T, b.Hq, b.KV, b.hd, err);
		/* both in double: they differ at most by a rare bf16 rounding flip */
		ck_assert_msg(err <= 1e-3, "rel L2 %g", err);
		free(ref);
		free(dense);
		rb_free(&b);
	}
}
END_TEST

/*
 * fp8 cache: K in ±4, V in ±2 (real units), one element in 30 in ±700·scale so that the
 * encoding saturates, stored as fp8(x · (1/scale)); the bf16 caches then hold float(q)·scale.
 */
START_TEST(test_attention_ref_fp8_is_decoded_bf16)
{
	static const struct {
		int Hq, KV, hd, bs, n, len[4], nc[4];
		float k_scale, v_scale;
	} cfg[] = { { 4, 2, 32, 16, 4, { 1, 37, 16, 5 }, { 0, 0, 21, 100 }, 1.f, 1.f },
		    { 2, 2, 64, 8, 2, { 70, 1 }, { 3, 40 }, 0.5f, 4.f },
		    { 8, 2, 128, 16, 3, { 19, 0, 2 }, { 17, 5, 1 }, 0.125f, 0.25f } };
	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		struct rb b;
		rb_init(&b, cfg[c].n, cfg[c].len, cfg[c].nc, cfg[c].Hq, cfg[c].KV, cfg[c].hd,
			cfg[c].bs);
		const float ks = cfg[c].k_scale, vs = cfg[c].v_scale;
		const float inv_k = 1.0f / ks, inv_v = 1.0f / vs;
		const size_t pool = b.pool;
		uint8_t *kc8 = malloc(pool), *vc8 = malloc(pool);
		int saturated = 0;
		for (size_t i = 0; i < pool; i++) {
			float k = frand(-4.f, 4.f), v = frand(-2.f, 2.f);
			if (frand(0.f, 1.f) < 1.f / 30)
				k = frand(-700.f, 700.f) * ks;
			if (frand(0.f, 1.f) < 1.f / 30)
				v = frand(-700.f, 700.f) * vs;
			kc8[i] = f32_to_fp8e4m3(k * inv_k);
			vc8[i] = f32_to_fp8e4m3(v * inv_v);
			saturated += (kc8[i] & 0x7f) == 0x7e;
			b.kc[i] = f32_to_bf16(fp8e4m3_to_f32(kc8[i]) * ks);
			b.vc[i] = f32_to_bf16(fp8e4m3_to_f32(vc8[i]) * vs);
			/* exact: E4M3 values are bf16s, and the scales powers of two */
			ck_assert(bf16_to_f32(b.kc[i]) == fp8e4m3_to_f32(kc8[i]) * ks);
		}
		size_t nq = (size_t)b.T * b.Hq * b.hd;
		uint16_t *r8 = malloc(nq * 2 + 2), *r16 = malloc(nq * 2 + 2);
		memset(r8, 0xff, nq * 2); /* NaN poison */
		memset(r16, 0xff, nq * 2);
		const float scale = 1.0f / sqrtf((float)b.hd);
		kn_prefill_attention_fp8_ref(r8, b.q, kc8, vc8, b.bt, b.q_start, b.n_cached, b.n,
					     b.T, b.Hq, b.KV, b.hd, b.bs, b.max_blocks, scale, ks, vs);
		kn_prefill_attention_ref(r16, b.q, b.kc, b.vc, b.bt, b.q_start, b.n_cached, b.n, b.T,
					 b.Hq, b.KV, b.hd, b.bs, b.max_blocks, scale);
		double err = rel_l2_bf16(r8, r16, nq);
		fprintf(stderr,
			"prefill_attention_fp8_ref vs bf16 ref on the decoded cache, T=%d Hq=%d KV=%d "
			"hd=%d k_scale=%g v_scale=%g (%d saturated K codes): rel L2 %.3g\n",
			b.T, b.Hq, b.KV, b.hd, ks, vs, saturated, err);
		ck_assert_int_gt(saturated, 0);
		ck_assert_msg(err <= 1e-5, "rel L2 %g", err);
		free(r8);
		free(r16);
		free(kc8);
		free(vc8);
		rb_free(&b);
	}
}
END_TEST

START_TEST(test_attention_ref_one_row_is_decode)
{
	enum { N = 6, HQ = 8, KV = 4, HD = 64, BS = 16 };
	static const int len[N] = { 1, 1, 1, 1, 1, 1 }, nc[N] = { 0, 14, 15, 16, 99, 300 };
	struct rb b;
	rb_init(&b, N, len, nc, HQ, KV, HD, BS);
	size_t nq = (size_t)N * HQ * HD;
	uint16_t *pf = malloc(nq * 2), *dec = malloc(nq * 2);
	memset(pf, 0xff, nq * 2);
	int32_t ctx[N];
	for (int s = 0; s < N; s++)
		ctx[s] = nc[s] + 1;
	kn_prefill_attention_ref(pf, b.q, b.kc, b.vc, b.bt, b.q_start, b.n_cached, N, b.T, HQ, KV,
				 HD, BS, b.max_blocks, 0.125f);
	kn_paged_attention_ref(dec, b.q, b.kc, b.vc, b.bt, ctx, N, HQ, KV, HD, BS, b.max_blocks,
			       0.125f);
	double err = rel_l2_bf16(pf, dec, nq);
	fprintf(stderr, "prefill_attention_ref one row vs paged_attention_ref: rel L2 %.3g\n", err);
	ck_assert_msg(err <= 1e-6, "rel L2 %g", err);
	free(pf);
	free(dec);
	rb_free(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("attention_ref");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_attention_ref_matches_dense);
	tcase_add_test(tc, test_attention_ref_one_row_is_decode);
	tcase_add_test(tc, test_attention_ref_fp8_is_decoded_bf16);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
