/*
 * Tests of the plain-C kernel references and the float conversions they are built on. These run
 * everywhere; the CUDA kernels are compared with these references in check_kernels_cuda.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "add_rmsnorm.h"
#include "bf16.h"
#include "embedding.h"
#include "gelu.h"
#include "gemm.h"
#include "layernorm.h"
#include "logits_topk.h"
#include "paged_attention.h"
#include "qk_norm_rope.h"
#include "rmsnorm.h"
#include "silu_mul.h"
#include "testutil.h"

START_TEST(test_bf16_round_trip_and_rounding)
{
	/* every bf16 value survives bf16 → f32 → bf16 */
	for (uint32_t h = 0; h < 65536; h++) {
		float f = bf16_to_f32((uint16_t)h);
		if (isnan(f))
			continue;
		ck_assert_uint_eq(f32_to_bf16(f), h);
	}
	/* ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
	ck_assert_uint_eq(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	ck_assert_uint_eq(f32_to_bf16(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82);
	ck_assert_uint_eq(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	ck_assert(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}
END_TEST

START_TEST(test_f16_matches_compiler_conversion)
{
	/* decode: all 65536 values against the compiler's _Float16 */
	for (uint32_t h = 0; h < 65536; h++) {
		_Float16 g;
		uint16_t hh = (uint16_t)h;
		memcpy(&g, &hh, 2);
		float ref = (float)g, got = f16_to_f32(hh);
		if (isnan(ref)) {
			ck_assert(isnan(got));
			continue;
		}
		ck_assert_mem_eq(&got, &ref, 4);
	}
	/* encode: a strided sweep of all float bit patterns, subnormals and overflow included */
	for (uint64_t i = 0; i < (1ull << 32); i += 4099) {
		uint32_t u = (uint32_t)i;
		float f;
		memcpy(&f, &u, 4);
		if (isnan(f))
			continue;
		_Float16 g = (_Float16)f;
		uint16_t want;
		memcpy(&want, &g, 2);
		ck_assert_msg(f32_to_f16(f) == want, "f32 %08x -> %04x, want %04x", u, f32_to_f16(f), want);
	}
}
END_TEST

START_TEST(test_rmsnorm_ref_constant_row)
{
	/* a row of equal values c normalises to sign(c) (up to eps), then times w */
	enum { C = 40 };
	uint16_t x[2 * C], w[C], y[2 * C];
	for (int c = 0; c < C; c++) {
		x[c] = f32_to_bf16(3.0f);
		x[C + c] = f32_to_bf16(-0.5f);
		w[c] = f32_to_bf16(0.25f * (float)(c % 5 + 1));
	}
	kn_rmsnorm_ref(y, x, w, 2, C, 1e-6f);
	for (int c = 0; c < C; c++) {
		ck_assert_float_eq_tol(bf16_to_f32(y[c]), bf16_to_f32(w[c]), 1e-2);
		ck_assert_float_eq_tol(bf16_to_f32(y[C + c]), -bf16_to_f32(w[c]), 1e-2);
	}
}
END_TEST

START_TEST(test_rmsnorm_ref_matches_formula)
{
	/* against an independent float64 evaluation of the same formula, on seeded random rows */
	enum { R = 3, C = 129 };
	uint16_t x[R * C], w[C], y[R * C];
	srand(7);
	for (int i = 0; i < R * C; i++)
		x[i] = f32_to_bf16((float)rand() / RAND_MAX * 4.0f - 2.0f);
	for (int c = 0; c < C; c++)
		w[c] = f32_to_bf16(0.5f + (float)rand() / RAND_MAX);
	kn_rmsnorm_ref(y, x, w, R, C, 1e-6f);
	for (int r = 0; r < R; r++) {
		double ss = 0;
		for (int c = 0; c < C; c++)
			ss += (double)bf16_to_f32(x[r * C + c]) * bf16_to_f32(x[r * C + c]);
		double inv = 1.0 / sqrt(ss / C + 1e-6);
		for (int c = 0; c < C; c++) {
			double want = bf16_to_f32(w[c]) * bf16_to_f32(x[r * C + c]) * inv;
			/* two bf16 roundings: within 2^-7 relative */
			ck_assert_double_eq_tol(bf16_to_f32(y[r * C + c]), want, fabs(want) * 0x1p-7 + 1e-30);
		}
	}
	/* in place gives the same result */
	uint16_t z[R * C];
	memcpy(z, x, sizeof(z));
	kn_rmsnorm_ref(z, z, w, R, C, 1e-6f);
	ck_assert_mem_eq(z, y, sizeof(z));
}
END_TEST

static uint16_t rand_bf16(double lo, double hi)
{
	return f32_to_bf16((float)(lo + (hi - lo) * rand() / RAND_MAX));
}

/* |got − want| within two bf16 roundings (2^-7 relative) of a float64 value. */
static void assert_bf16_near(uint16_t got, double want, const char *what, int i)
{
	double g = bf16_to_f32(got);
	ck_assert_msg(fabs(g - want) <= fabs(want) * 0x1p-7 + 1e-30, "%s[%d]: got %.9g want %.9g",
		      what, i, g, want);
}

START_TEST(test_kernels_ref_embedding)
{
	/* out rows are the table rows named by ids, bit for bit, repeats and row 0/V-1 included */
	enum { V = 13 };
	static const int Ds[] = { 1, 7, 16 };
	srand(11);
	for (size_t s = 0; s < sizeof(Ds) / sizeof(Ds[0]); s++) {
		int D = Ds[s];
		uint16_t table[V * 16], out[6 * 16];
		int32_t ids[6] = { 0, V - 1, 5, 5, 2, 9 };
		for (int i = 0; i < V * D; i++)
			table[i] = rand_bf16(-2, 2);
		for (int T = 1; T <= 6; T += 5) {
			kn_embedding_ref(out, table, ids, T, D);
			for (int t = 0; t < T; t++)
				for (int c = 0; c < D; c++)
					ck_assert_uint_eq(out[t * D + c], table[ids[t] * D + c]);
		}
	}
}
END_TEST

START_TEST(test_kernels_ref_add_rmsnorm)
{
	/* ties of the bf16 add go to even: 1 + 2^-8 → 1, 1 + 3·2^-8 → 1 + 2^-6 */
	uint16_t r2[2] = { f32_to_bf16(1.0f), f32_to_bf16(1.0f) };
	uint16_t x2[2] = { f32_to_bf16(0x1p-8f), f32_to_bf16(3 * 0x1p-8f) };
	uint16_t w2[2] = { f32_to_bf16(1.0f), f32_to_bf16(1.0f) };
	uint16_t o2[2];
	kn_add_rmsnorm_ref(o2, r2, x2, w2, 1, 2, 1e-6f);
	ck_assert_uint_eq(r2[0], f32_to_bf16(1.0f));
	ck_assert_uint_eq(r2[1], f32_to_bf16(1.0f + 0x1p-6f));

	static const int sizes[][2] = { { 1, 1 }, { 2, 7 }, { 3, 129 } };
	srand(12);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int R = sizes[s][0], C = sizes[s][1], n = R * C;
		uint16_t res[3 * 129], res0[3 * 129], x[3 * 129], w[129], out[3 * 129];
		for (int i = 0; i < n; i++) {
			res[i] = res0[i] = rand_bf16(-3, 3);
			x[i] = rand_bf16(-1, 1);
		}
		for (int c = 0; c < C; c++)
			w[c] = rand_bf16(0.5, 1.5);
		kn_add_rmsnorm_ref(out, res, x, w, R, C, 1e-6f);
		for (int r = 0; r < R; r++) {
			double ss = 0, h[129];
			for (int c = 0; c < C; c++) {
				int i = r * C + c;
				/* the sum of two bf16 is exact in double: one rounding, to bf16 */
				double sum = (double)bf16_to_f32(res0[i]) + bf16_to_f32(x[i]);
				ck_assert_uint_eq(res[i], f32_to_bf16((float)sum));
				h[c] = bf16_to_f32(res[i]);
				ss += h[c] * h[c];
			}
			double inv = 1.0 / sqrt(ss / C + 1e-6);
			for (int c = 0; c < C; c++)
				assert_bf16_near(out[r * C + c], bf16_to_f32(w[c]) * h[c] * inv, "out",
						 r * C + c);
		}
		/* out may alias x */
		memcpy(res, res0, sizeof(res));
		uint16_t xo[3 * 129];
		memcpy(xo, x, sizeof(xo));
		kn_add_rmsnorm_ref(xo, res, xo, w, R, C, 1e-6f);
		ck_assert_mem_eq(xo, out, (size_t)n * 2);
	}
}
END_TEST

START_TEST(test_kernels_ref_silu_mul)
{
	/* silu(1) = 0.7310586 rounds to the bf16 0.73046875 before the multiply */
	uint16_t gu1[2] = { f32_to_bf16(1.0f), f32_to_bf16(1.0f) }, o1;
	kn_silu_mul_ref(&o1, gu1, 1, 1);
	ck_assert_uint_eq(o1, f32_to_bf16(0.73046875f));
	/* a very negative gate gives zero, not NaN */
	gu1[0] = f32_to_bf16(-200.0f);
	kn_silu_mul_ref(&o1, gu1, 1, 1);
	ck_assert_double_eq(bf16_to_f32(o1), 0.0);

	static const int sizes[][2] = { { 1, 1 }, { 3, 7 }, { 2, 64 } };
	srand(13);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], F = sizes[s][1];
		uint16_t gu[3 * 2 * 64], out[3 * 64];
		for (int i = 0; i < T * 2 * F; i++)
			gu[i] = rand_bf16(-6, 6);
		kn_silu_mul_ref(out, gu, T, F);
		for (int t = 0; t < T; t++)
			for (int c = 0; c < F; c++) {
				double g = bf16_to_f32(gu[t * 2 * F + c]);
				double u = bf16_to_f32(gu[t * 2 * F + F + c]);
				assert_bf16_near(out[t * F + c], g / (1.0 + exp(-g)) * u, "silu_mul",
						 t * F + c);
			}
	}
}
END_TEST

START_TEST(test_kernels_ref_layernorm)
{
	/* a row of one (and a constant row) has x − mean = 0: out is the bias, bit for bit */
	uint16_t x1 = f32_to_bf16(3.5f), w1 = f32_to_bf16(0.75f), b1 = f32_to_bf16(-0.3f), o1;
	kn_layernorm_ref(&o1, &x1, &w1, &b1, 1, 1, 1e-6f);
	ck_assert_uint_eq(o1, b1);
	uint16_t xc[5], wc[5], bc[5], oc[5];
	for (int c = 0; c < 5; c++) {
		xc[c] = f32_to_bf16(-1.25f);
		wc[c] = f32_to_bf16(1.0f + 0.125f * c);
		bc[c] = f32_to_bf16(0.0625f * c - 0.1f);
	}
	kn_layernorm_ref(oc, xc, wc, bc, 1, 5, 1e-6f);
	for (int c = 0; c < 5; c++)
		ck_assert_uint_eq(oc[c], bc[c]);
	/* x = (0, 2), w = 1, b = 0: mean 1, variance 1, out ±1/√(1 + 1e-6), which rounds to ±1 */
	uint16_t x2[2] = { f32_to_bf16(0.f), f32_to_bf16(2.f) }, w2[2], b2[2] = { 0, 0 }, o2[2];
	w2[0] = w2[1] = f32_to_bf16(1.f);
	kn_layernorm_ref(o2, x2, w2, b2, 1, 2, 1e-6f);
	ck_assert_uint_eq(o2[0], f32_to_bf16(-1.f));
	ck_assert_uint_eq(o2[1], f32_to_bf16(1.f));

	/* against the textbook formula (variance as E[x²] − mean², fine in double) */
	static const int sizes[][2] = { { 1, 1 }, { 3, 7 }, { 2, 129 }, { 4, 64 } };
	srand(17);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int R = sizes[s][0], C = sizes[s][1];
		uint16_t x[4 * 129], w[129], b[129], out[4 * 129];
		for (int i = 0; i < R * C; i++)
			x[i] = rand_bf16(-3, 3);
		for (int c = 0; c < C; c++) {
			w[c] = rand_bf16(0.5, 1.5);
			b[c] = rand_bf16(-0.5, 0.5);
		}
		kn_layernorm_ref(out, x, w, b, R, C, 1e-6f);
		for (int r = 0; r < R; r++) {
			double s1 = 0, s2 = 0;
			for (int c = 0; c < C; c++) {
				double v = bf16_to_f32(x[r * C + c]);
				s1 += v;
				s2 += v * v;
			}
			double mean = s1 / C, var = s2 / C - mean * mean;
			if (var < 0)
				var = 0;
			for (int c = 0; c < C; c++) {
				double want = (bf16_to_f32(x[r * C + c]) - mean) / sqrt(var + 1e-6) *
						      bf16_to_f32(w[c]) +
					      bf16_to_f32(b[c]);
				assert_bf16_near(out[r * C + c], want, "layernorm", r * C + c);
			}
		}
	}
}
END_TEST

START_TEST(test_kernels_ref_gelu)
{
	/* known values: gelu(0) = 0; gelu(1) = 0.8413447 (erf), 0.8411920 (tanh), both the bf16
	 * 0.83984375; far tails give −0 and z, not NaN */
	static const kn_gelu_mode modes[2] = { KN_GELU_TANH, KN_GELU_ERF };
	for (int m = 0; m < 2; m++) {
		uint16_t in[4] = { f32_to_bf16(0.f), f32_to_bf16(1.f), f32_to_bf16(-200.f),
				   f32_to_bf16(200.f) },
			 o[4];
		kn_gelu_ref(o, in, 4, modes[m]);
		ck_assert_double_eq(bf16_to_f32(o[0]), 0.0);
		ck_assert_uint_eq(o[1], f32_to_bf16(0.83984375f));
		ck_assert_double_eq(bf16_to_f32(o[2]), 0.0);
		ck_assert_uint_eq(o[3], in[3]);
	}
	/* the modes differ in the tail: at z = −3, −0.00404969 (erf) vs −0.00363739 (tanh) */
	uint16_t z3 = f32_to_bf16(-3.f), ot, oe;
	kn_gelu_ref(&ot, &z3, 1, KN_GELU_TANH);
	kn_gelu_ref(&oe, &z3, 1, KN_GELU_ERF);
	ck_assert_uint_ne(ot, oe);

	static const long sizes[] = { 1, 7, 129, 1000 };
	srand(19);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		long n = sizes[s];
		uint16_t x[1000], out[1000];
		for (long i = 0; i < n; i++)
			x[i] = rand_bf16(-6, 6);
		for (int m = 0; m < 2; m++) {
			kn_gelu_ref(out, x, n, modes[m]);
			for (long i = 0; i < n; i++) {
				double z = bf16_to_f32(x[i]);
				double want = modes[m] == KN_GELU_TANH
						      ? 0.5 * z *
								(1 + tanh(sqrt(2 / M_PI) *
									  (z + 0.044715 * pow(z, 3))))
						      : 0.5 * z * (1 + erf(z / sqrt(2.0)));
				assert_bf16_near(out[i], want, modes[m] == KN_GELU_TANH ? "gelu_tanh"
											: "gelu_erf",
						 (int)i);
			}
		}
	}
}
END_TEST

/* transformers' Qwen3VLTextRotaryEmbedding + apply_rotary_pos_emb, spelled out literally for one
 * token: freqs per axis, apply_interleaved_mrope (overwrite slices 1::3 up to 3·sec[1] with H and
 * 2::3 up to 3·sec[2] with W), emb = cat(freqs, freqs), cos/sin to bf16, then per head
 * x·cos + rotate_half(x)·sin with bf16 tensors. The head is normalised by kn_rmsnorm_ref. */
static void qknr_direct_head(uint16_t *out, const uint16_t *x, const uint16_t *w, int hd,
			     const int32_t p3[3], const int sec[3], float theta)
{
	float freqs[3][256], f[256], cosv[512], sinv[512];
	uint16_t n[512];
	int half = hd / 2;
	for (int a = 0; a < 3; a++)
		for (int j = 0; j < half; j++) {
			float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
			freqs[a][j] = (float)p3[a] * inv;
		}
	memcpy(f, freqs[0], (size_t)half * sizeof(float));
	for (int dim = 1; dim <= 2; dim++)
		for (int j = dim; j < 3 * sec[dim]; j += 3)
			f[j] = freqs[dim][j];
	for (int i = 0; i < hd; i++) {
		cosv[i] = bf16_to_f32(f32_to_bf16((float)cos((double)f[i % half])));
		sinv[i] = bf16_to_f32(f32_to_bf16((float)sin((double)f[i % half])));
	}
	kn_rmsnorm_ref(n, x, w, 1, hd, 1e-6f);
	for (int i = 0; i < hd; i++) {
		float xi = bf16_to_f32(n[i]);
		float rot = i < half ? -bf16_to_f32(n[i + half]) : bf16_to_f32(n[i - half]);
		float a = bf16_to_f32(f32_to_bf16(xi * cosv[i]));
		float b = bf16_to_f32(f32_to_bf16(rot * sinv[i]));
		out[i] = f32_to_bf16(a + b);
	}
}

/* The rope of one normalised head in double, no roundings but the inputs': a check of the
 * semantics independent of where the roundings sit. */
static double qknr_rel_err_double(const uint16_t *got, const uint16_t *x, const uint16_t *w,
				  int hd, const int32_t p3[3], const int sec[3], double theta)
{
	int half = hd / 2;
	double ss = 0, n[512], num = 0, den = 0;
	for (int i = 0; i < hd; i++)
		ss += (double)bf16_to_f32(x[i]) * bf16_to_f32(x[i]);
	for (int i = 0; i < hd; i++)
		n[i] = bf16_to_f32(w[i]) * bf16_to_f32(x[i]) / sqrt(ss / hd + 1e-6);
	for (int j = 0; j < half; j++) {
		int a = (j % 3 == 1 && j < 3 * sec[1]) ? 1 : (j % 3 == 2 && j < 3 * sec[2]) ? 2 : 0;
		double th = p3[a] * pow(theta, -2.0 * j / hd);
		double lo = n[j] * cos(th) - n[j + half] * sin(th);
		double hi = n[j + half] * cos(th) + n[j] * sin(th);
		num += pow(bf16_to_f32(got[j]) - lo, 2) + pow(bf16_to_f32(got[j + half]) - hi, 2);
		den += lo * lo + hi * hi;
	}
	return sqrt(num / den);
}

START_TEST(test_kernels_ref_qk_norm_rope)
{
	/* {Hq, KV, hd, dense}: MRoPE cases have distinct T/H/W rows, dense ones three equal rows */
	static const int cases[][4] = { { 4, 2, 32, 0 }, { 4, 2, 32, 1 }, { 2, 1, 128, 0 },
					{ 2, 1, 128, 1 } };
	enum { T = 3, NSLOT = 8, MAXH = 6, MAXD = 128 };
	srand(14);
	for (size_t cs = 0; cs < sizeof(cases) / sizeof(cases[0]); cs++) {
		int Hq = cases[cs][0], KV = cases[cs][1], hd = cases[cs][2], dense = cases[cs][3];
		int sec[3] = { hd == 128 ? 24 : 6, hd == 128 ? 20 : 5, hd == 128 ? 20 : 5 };
		int nh = Hq + 2 * KV;
		float theta = hd == 128 ? 5e6f : 1e4f;
		static uint16_t qkv[T * (MAXH + 2 * MAXH) * MAXD], qw[MAXD], kw[MAXD];
		static uint16_t q_out[T * MAXH * MAXD], kc[NSLOT * MAXH * MAXD],
			vc[NSLOT * MAXH * MAXD], want[MAXD];
		int32_t pos[3 * T], slots[T] = { 5, -1, 2 };
		for (int i = 0; i < T * nh * hd; i++)
			qkv[i] = rand_bf16(-3, 3);
		for (int i = 0; i < hd; i++) {
			qw[i] = rand_bf16(0.5, 1.5);
			kw[i] = rand_bf16(0.5, 1.5);
		}
		for (int t = 0; t < T; t++) {
			pos[t] = 1000 * t + 17;
			pos[T + t] = dense ? pos[t] : 99991 - 31 * t;
			pos[2 * T + t] = dense ? pos[t] : 3 + 7 * t;
		}
		memset(kc, 0xff, sizeof(kc));
		memset(vc, 0xff, sizeof(vc));
		kn_qk_norm_rope_ref(q_out, kc, vc, qkv, qw, kw, pos, slots, T, Hq, KV, hd, sec, theta,
				    1e-6f);
		for (int t = 0; t < T; t++) {
			int32_t p3[3] = { pos[t], pos[T + t], pos[2 * T + t] };
			const uint16_t *row = qkv + (size_t)t * nh * hd;
			for (int h = 0; h < Hq; h++) {
				const uint16_t *got = q_out + ((size_t)t * Hq + h) * hd;
				qknr_direct_head(want, row + h * hd, qw, hd, p3, sec, theta);
				ck_assert_mem_eq(got, want, (size_t)hd * 2);
				double e = qknr_rel_err_double(got, row + h * hd, qw, hd, p3, sec, theta);
				ck_assert_msg(e < 1e-2, "q head %d token %d: rel err %g vs double", h, t,
					      e);
			}
			if (slots[t] < 0)
				continue;
			for (int h = 0; h < KV; h++) {
				const uint16_t *got = kc + ((size_t)slots[t] * KV + h) * hd;
				qknr_direct_head(want, row + (Hq + h) * hd, kw, hd, p3, sec, theta);
				ck_assert_mem_eq(got, want, (size_t)hd * 2);
				ck_assert(qknr_rel_err_double(got, row + (Hq + h) * hd, kw, hd, p3, sec,
							      theta) < 1e-2);
			}
			ck_assert_mem_eq(vc + (size_t)slots[t] * KV * hd, row + (Hq + KV) * hd,
					 (size_t)KV * hd * 2);
		}
		/* slots not in slot_mapping (token 1 has -1) stay as they were */
		for (int sl = 0; sl < NSLOT; sl++) {
			if (sl == 5 || sl == 2)
				continue;
			for (int i = 0; i < KV * hd; i++) {
				ck_assert_uint_eq(kc[sl * KV * hd + i], 0xffff);
				ck_assert_uint_eq(vc[sl * KV * hd + i], 0xffff);
			}
		}
		/* dense: equal rows make the sections irrelevant (ordinary rope) */
		if (dense) {
			static uint16_t q2[T * MAXH * MAXD];
			int sec1[3] = { hd / 2, 0, 0 };
			kn_qk_norm_rope_ref(q2, kc, vc, qkv, qw, kw, pos, slots, T, Hq, KV, hd, sec1,
					    theta, 1e-6f);
			ck_assert_mem_eq(q2, q_out, (size_t)T * Hq * hd * 2);
		}
	}
}
END_TEST

/* A block table for B sequences of ctx[b] positions in a pool of n_blocks blocks of bs
 * positions: each sequence's blocks drawn from a shuffled pool, unused entries -1. */
static void shuffled_block_table(int32_t *bt, const int32_t *ctx, int B, int max_blocks, int bs,
				 int n_blocks)
{
	int32_t *perm = malloc((size_t)n_blocks * sizeof(*perm));
	for (int i = 0; i < n_blocks; i++)
		perm[i] = i;
	for (int i = n_blocks - 1; i > 0; i--) {
		int j = rand() % (i + 1);
		int32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	int next = 0;
	for (int b = 0; b < B; b++)
		for (int i = 0; i < max_blocks; i++)
			bt[b * max_blocks + i] = i < (ctx[b] + bs - 1) / bs ? perm[next++] : -1;
	ck_assert_int_le(next, n_blocks);
	free(perm);
}

START_TEST(test_kernels_ref_paged_attention)
{
	/* against a direct softmax(q·Kᵀ·scale)·V over contiguous K/V, copied into the pool through
	 * a shuffled block table; ctx 1, multiples of the block size and not */
	static const int cfg[][4] = { /* Hq, KV, hd, bs */ { 4, 2, 8, 4 }, { 3, 1, 16, 16 },
				      { 2, 2, 5, 1 } };
	static const int32_t ctx[] = { 1, 5, 16, 37, 4 };
	enum { B = 5, MAXC = 37 };
	srand(14);
	for (size_t ci = 0; ci < sizeof(cfg) / sizeof(cfg[0]); ci++) {
		const int Hq = cfg[ci][0], KV = cfg[ci][1], hd = cfg[ci][2], bs = cfg[ci][3];
		const int g = Hq / KV, max_blocks = (MAXC + bs - 1) / bs;
		const int n_blocks = B * max_blocks + 3;
		const size_t row = (size_t)KV * hd, pool = (size_t)n_blocks * bs * row;
		uint16_t *q = malloc((size_t)B * Hq * hd * 2), *out = malloc((size_t)B * Hq * hd * 2);
		uint16_t *kc = malloc(pool * 2), *vc = malloc(pool * 2);
		uint16_t *k = malloc((size_t)B * MAXC * row * 2), *v = malloc((size_t)B * MAXC * row * 2);
		int32_t *bt = malloc((size_t)B * max_blocks * sizeof(*bt));
		for (size_t i = 0; i < (size_t)B * Hq * hd; i++)
			q[i] = rand_bf16(-2, 2);
		for (size_t i = 0; i < pool; i++) {
			kc[i] = rand_bf16(-2, 2);
			vc[i] = rand_bf16(-2, 2);
		}
		for (size_t i = 0; i < (size_t)B * MAXC * row; i++) {
			k[i] = rand_bf16(-2, 2);
			v[i] = rand_bf16(-2, 2);
		}
		shuffled_block_table(bt, ctx, B, max_blocks, bs, n_blocks);
		for (int b = 0; b < B; b++)
			for (int p = 0; p < ctx[b]; p++) {
				size_t dst = ((size_t)bt[b * max_blocks + p / bs] * bs + p % bs) * row;
				memcpy(kc + dst, k + ((size_t)b * MAXC + p) * row, row * 2);
				memcpy(vc + dst, v + ((size_t)b * MAXC + p) * row, row * 2);
			}
		const float scale = 1.0f / sqrtf((float)hd);
		kn_paged_attention_ref(out, q, kc, vc, bt, ctx, B, Hq, KV, hd, bs, max_blocks, scale);
		for (int b = 0; b < B; b++)
			for (int h = 0; h < Hq; h++) {
				const uint16_t *qh = q + ((size_t)b * Hq + h) * hd;
				double sc[MAXC], mx = -INFINITY, sum = 0;
				for (int p = 0; p < ctx[b]; p++) {
					const uint16_t *kp = k + ((size_t)b * MAXC + p) * row + (size_t)(h / g) * hd;
					sc[p] = 0;
					for (int d = 0; d < hd; d++)
						sc[p] += (double)bf16_to_f32(qh[d]) * bf16_to_f32(kp[d]);
					sc[p] *= scale;
					mx = fmax(mx, sc[p]);
				}
				for (int p = 0; p < ctx[b]; p++)
					sum += sc[p] = exp(sc[p] - mx);
				for (int d = 0; d < hd; d++) {
					double want = 0;
					for (int p = 0; p < ctx[b]; p++)
						want += sc[p] / sum *
							bf16_to_f32(v[((size_t)b * MAXC + p) * row +
								      (size_t)(h / g) * hd + d]);
					int i = (b * Hq + h) * hd + d;
					assert_bf16_near(out[i], want, "paged_attention", i);
					/* one position: the output is that position's V, exactly */
					if (ctx[b] == 1)
						ck_assert_uint_eq(out[i], v[(size_t)b * MAXC * row +
									    (size_t)(h / g) * hd + d]);
				}
			}
		free(q);
		free(out);
		free(kc);
		free(vc);
		free(k);
		free(v);
		free(bt);
	}
}
END_TEST

struct lt_entry {
	float v;
	int32_t id;
};

/* the logits_topk order: value descending, ties lower id first */
static int lt_cmp(const void *a, const void *b)
{
	const struct lt_entry *x = a, *y = b;
	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* kn_logits_topk_ref against a full sort of each row: planted ties at the max and inside the
 * top-k, -inf masks and NaN, an all -inf row, V = 1, k = V and k > V. */
START_TEST(test_kernels_ref_logits_topk)
{
	static const int shapes[][3] = { { 1, 1, 1 }, { 3, 1, 0 },  { 2, 3, 5 },  { 4, 5, 5 },
					 { 6, 7, 3 }, { 5, 64, 20 }, { 3, 1000, 20 }, { 2, 257, 1 } };
	uint64_t seed = 12345;
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int B = shapes[s][0], V = shapes[s][1], k = shapes[s][2];
		float *x = malloc((size_t)B * V * sizeof(*x)), *lse = malloc((size_t)B * sizeof(*lse)),
		      *mv = malloc((size_t)B * sizeof(*mv)),
		      *tv = malloc((size_t)(B * k + 1) * sizeof(*tv));
		int32_t *am = malloc((size_t)B * sizeof(*am)),
			*ti = malloc((size_t)(B * k + 1) * sizeof(*ti));
		struct lt_entry *e = malloc((size_t)V * sizeof(*e));
		for (int b = 0; b < B; b++) {
			float *r = x + (long)b * V;
			for (int v = 0; v < V; v++) {
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				/* few distinct values: many ties */
				r[v] = (float)((seed >> 33) % 16) * 0.5f - 4.f;
			}
			if (b % 3 == 1) /* masks, a NaN among them */
				for (int v = 0; v < V; v += 2)
					r[v] = v % 4 == 0 ? -INFINITY : NAN;
			if (b % 3 == 2 || V == 1) /* an all-masked row */
				for (int v = 0; v < V; v++)
					r[v] = -INFINITY;
			if (b == 0 && V >= 3) /* a tie at the max */
				r[V - 1] = r[1] = 100.f;
		}
		kn_logits_topk_ref(am, mv, lse, ti, tv, x, B, V, k);
		for (int b = 0; b < B; b++) {
			const float *r = x + (long)b * V;
			for (int v = 0; v < V; v++)
				e[v] = (struct lt_entry){ isnan(r[v]) ? -INFINITY : r[v], v };
			qsort(e, (size_t)V, sizeof(*e), lt_cmp);
			ck_assert_int_eq(am[b], e[0].id);
			ck_assert(mv[b] == e[0].v);
			for (int j = 0; j < k; j++) {
				ck_assert_int_eq(ti[b * k + j], j < V ? e[j].id : -1);
				ck_assert(tv[b * k + j] == (j < V ? e[j].v : -INFINITY));
			}
			if (e[0].v == -INFINITY) {
				ck_assert_int_eq(am[b], 0);
				ck_assert(lse[b] == -INFINITY);
				continue;
			}
			double sum = 0; /* smallest first: a different order from the ref */
			for (int v = V - 1; v >= 0; v--)
				sum += exp((double)e[v].v - e[0].v);
			double want = e[0].v + log(sum);
			ck_assert_msg(fabs(lse[b] - want) <= 1e-6 * fmax(1, fabs(want)),
				      "logits_topk B=%d V=%d row %d: lse %g want %g", B, V, b, lse[b],
				      want);
			if (b == 0 && V >= 3) {
				ck_assert_int_eq(am[b], 1);
				if (k >= 2)
					ck_assert_int_eq(ti[1], V - 1);
			}
		}
		free(x);
		free(lse);
		free(mv);
		free(tv);
		free(am);
		free(ti);
		free(e);
	}
}
END_TEST

/* ---- gemm ---- */

/* y = x·Wᵀ (+ residual) by a direct triple loop, for the reference to match exactly. */
START_TEST(test_kernels_ref_gemm)
{
	static const int shapes[][3] = { { 1, 1, 1 }, { 1, 7, 13 }, { 1, 33, 5 }, { 3, 5, 7 },
					 { 5, 17, 13 }, { 1, 64, 129 } };
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
		uint16_t *x = malloc((size_t)M * K * 2), *W = malloc((size_t)N * K * 2),
			 *r = malloc((size_t)M * N * 2), *y = malloc((size_t)M * N * 2);
		for (int i = 0; i < M * K; i++)
			x[i] = rand_bf16(-2, 2);
		for (int i = 0; i < N * K; i++)
			W[i] = rand_bf16(-0.5, 0.5);
		for (int i = 0; i < M * N; i++)
			r[i] = rand_bf16(-1, 1);
		for (int res = 0; res < 2; res++) {
			kn_gemm_ref(y, x, W, res ? r : NULL, M, N, K);
			for (int m = 0; m < M; m++)
				for (int n = 0; n < N; n++) {
					double acc = 0;
					for (int k = 0; k < K; k++)
						acc += (double)bf16_to_f32(x[m * K + k]) *
						       bf16_to_f32(W[n * K + k]);
					if (res)
						acc += bf16_to_f32(r[m * N + n]);
					ck_assert_msg(y[m * N + n] == f32_to_bf16((float)acc),
						      "gemm %dx%dx%d res=%d [%d,%d]: got %g want %g", M,
						      N, K, res, m, n, bf16_to_f32(y[m * N + n]), acc);
					assert_bf16_near(y[m * N + n], acc, "gemm", m * N + n);
				}
		}
		free(x);
		free(W);
		free(r);
		free(y);
	}
	/* a hand-checked value: [1 2 3]·[4 5 6] = 32, + residual 0.5 */
	uint16_t x3[3] = { f32_to_bf16(1), f32_to_bf16(2), f32_to_bf16(3) };
	uint16_t w3[3] = { f32_to_bf16(4), f32_to_bf16(5), f32_to_bf16(6) };
	uint16_t r1 = f32_to_bf16(0.5f), y1;
	kn_gemm_ref(&y1, x3, w3, &r1, 1, 1, 3);
	ck_assert_float_eq(bf16_to_f32(y1), 32.5f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kernels_ref");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_bf16_round_trip_and_rounding);
	tcase_add_test(tc, test_f16_matches_compiler_conversion);
	tcase_add_test(tc, test_rmsnorm_ref_constant_row);
	tcase_add_test(tc, test_rmsnorm_ref_matches_formula);
	tcase_add_test(tc, test_kernels_ref_embedding);
	tcase_add_test(tc, test_kernels_ref_add_rmsnorm);
	tcase_add_test(tc, test_kernels_ref_silu_mul);
	tcase_add_test(tc, test_kernels_ref_layernorm);
	tcase_add_test(tc, test_kernels_ref_gelu);
	tcase_add_test(tc, test_kernels_ref_paged_attention);
	tcase_add_test(tc, test_kernels_ref_qk_norm_rope);
	tcase_add_test(tc, test_kernels_ref_logits_topk);
	tcase_add_test(tc, test_kernels_ref_gemm);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
