/*
 * Tests of the plain-C kernel references and the float conversions they are built on. These run
 * everywhere; the CUDA kernels are compared with these references in check_kernels_cuda.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "embedding.h"
#include "fp8.h"
#include "gelu.h"
#include "gemm.h"
#include "layernorm.h"
#include "logits_topk.h"
#include "paged_attention.h"
#include "qk_norm_rope.h"
#include "rmsnorm.h"
#include "rows.h"
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

/* bf16_to_f16's short path against the general one, on all 65536 bf16 patterns (NaN: NaN) */
START_TEST(test_bf16_to_f16_all_patterns)
{
	int short_path = 0;
	for (uint32_t b = 0; b < 65536; b++) {
		uint16_t want = f32_to_f16(bf16_to_f32((uint16_t)b)), got = bf16_to_f16((uint16_t)b);
		if (isnan(bf16_to_f32((uint16_t)b))) {
			ck_assert(isnan(f16_to_f32(got)));
			continue;
		}
		ck_assert_msg(got == want, "bf16 %04x -> f16 %04x, want %04x", b, got, want);
		uint32_t e = (b >> 7) & 0xffu;
		if (e >= 113 && e <= 142) {
			short_path++;   /* and exact: the fp16 holds the bf16's value */
			ck_assert(f16_to_f32(got) == bf16_to_f32((uint16_t)b));
		}
	}
	ck_assert_int_eq(short_path, 2 * 30 * 128);
}
END_TEST

START_TEST(test_rmsnorm_ref_constant_row)
{
	/* a row of equal values c normalises to sign(c) (up to eps), then times w */
	enum { C = 40 };
	float x[2 * C];
	uint16_t w[C], y[2 * C];
	for (int c = 0; c < C; c++) {
		x[c] = 3.0f;
		x[C + c] = -0.5f;
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
	/* against an independent float64 evaluation of the same formula, on seeded random fp32 rows
	 * (not bf16 values: the residual stream is fp32) */
	enum { R = 3, C = 129 };
	float x[R * C];
	uint16_t w[C], y[R * C];
	srand(7);
	for (int i = 0; i < R * C; i++)
		x[i] = (float)rand() / RAND_MAX * 4.0f - 2.0f;
	for (int c = 0; c < C; c++)
		w[c] = f32_to_bf16(0.5f + (float)rand() / RAND_MAX);
	/* one rounding to bf16 (8 significant bits: within half an ulp, 2^-8 relative) or to fp16
	 * (11 bits: 2^-11), and a hair for the float on the way */
	for (int f16 = 0; f16 < 2; f16++) {
		(f16 ? kn_rmsnorm_f16_ref : kn_rmsnorm_ref)(y, x, w, R, C, 1e-6f);
		float (*decode)(uint16_t) = f16 ? f16_to_f32 : bf16_to_f32;
		const double rel = f16 ? 0x1.01p-11 : 0x1.01p-8;
		for (int r = 0; r < R; r++) {
			double ss = 0;
			for (int c = 0; c < C; c++)
				ss += (double)x[r * C + c] * x[r * C + c];
			double inv = 1.0 / sqrt(ss / C + 1e-6);
			for (int c = 0; c < C; c++) {
				double want = bf16_to_f32(w[c]) * (x[r * C + c] * inv);
				ck_assert_double_eq_tol(decode(y[r * C + c]), want,
							fabs(want) * rel + (f16 ? 0x1p-25 : 1e-30));
			}
		}
	}
	/* one rounding, not two: x = (1.5, 0.25), r = 1/sqrt(1.15625) = 0.92998107, w[1] = 0.75:
	 * w·(x·r) = 0.17437146 → bf16 0.17480469, where rounding x·r first (0.23249528 →
	 * 0.23242188) would give 0.75·0.23242188 = 0.17431641 → 0.17382813 */
	float x2[2] = { 1.5f, 0.25f };
	uint16_t w2[2] = { f32_to_bf16(1.0078125f), f32_to_bf16(0.75f) }, y2[2];
	kn_rmsnorm_ref(y2, x2, w2, 1, 2, 0.f);
	double inv2 = 1.0 / sqrt((1.5 * 1.5 + 0.25 * 0.25) / 2);
	ck_assert_uint_eq(y2[0], f32_to_bf16((float)(1.0078125 * 1.5 * inv2)));
	ck_assert_uint_eq(y2[1], f32_to_bf16((float)(0.75 * 0.25 * inv2)));
	ck_assert_float_eq(bf16_to_f32(y2[1]), 0.1748046875f);
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
	/* out rows are the table rows named by ids, widened exactly, repeats and row 0/V-1 included */
	enum { V = 13 };
	static const int Ds[] = { 1, 7, 16 };
	srand(11);
	for (size_t s = 0; s < sizeof(Ds) / sizeof(Ds[0]); s++) {
		int D = Ds[s];
		uint16_t table[V * 16];
		float out[6 * 16];
		int32_t ids[6] = { 0, V - 1, 5, 5, 2, 9 };
		for (int i = 0; i < V * D; i++)
			table[i] = rand_bf16(-2, 2);
		for (int T = 1; T <= 6; T += 5) {
			kn_embedding_ref(out, table, ids, T, D);
			for (int t = 0; t < T; t++)
				for (int c = 0; c < D; c++) {
					ck_assert(out[t * D + c] == bf16_to_f32(table[ids[t] * D + c]));
					ck_assert_uint_eq(f32_to_bf16(out[t * D + c]),
							  table[ids[t] * D + c]);
				}
		}
	}
}
END_TEST

START_TEST(test_kernels_ref_rows)
{
	/* scatter widens bf16 rows into fp32 rows exactly; scatter_add adds in fp32 without a bf16
	 * rounding: 1 + 2^-8 stays 1 + 2^-8 (bf16 would round it to 1); other rows untouched */
	enum { R = 5, C = 7, N = 3 };
	const int32_t idx[N] = { 4, 0, 2 };
	uint16_t src[N * C];
	float dst[R * C], base[R * C];
	srand(12);
	for (int i = 0; i < N * C; i++)
		src[i] = rand_bf16(-2, 2);
	for (int i = 0; i < R * C; i++)
		base[i] = (float)rand() / RAND_MAX * 6.0f - 3.0f;
	for (int mode = 0; mode < 2; mode++) {
		memcpy(dst, base, sizeof(dst));
		if (mode == 0)
			kn_rows_scatter_ref(dst, src, idx, N, C);
		else
			kn_rows_scatter_add_ref(dst, src, idx, N, C);
		for (int r = 0; r < R; r++) {
			int i = -1;
			for (int k = 0; k < N; k++)
				if (idx[k] == r)
					i = k;
			for (int c = 0; c < C; c++) {
				float want = base[r * C + c];
				if (i >= 0)
					want = (mode ? want : 0.f) + bf16_to_f32(src[i * C + c]);
				ck_assert_msg(dst[r * C + c] == want, "rows mode %d [%d,%d]: %.9g, want %.9g",
					      mode, r, c, dst[r * C + c], want);
			}
		}
	}
	float one = 1.0f;
	uint16_t tiny = f32_to_bf16(0x1p-8f);
	int32_t zero = 0;
	kn_rows_scatter_add_ref(&one, &tiny, &zero, 1, 1);
	ck_assert(one == 1.0f + 0x1p-8f);

	/* gather stays bf16: a copy */
	uint16_t g[N * C], big[R * C];
	for (int i = 0; i < R * C; i++)
		big[i] = rand_bf16(-2, 2);
	kn_rows_gather_ref(g, big, idx, N, C);
	for (int k = 0; k < N; k++)
		ck_assert_mem_eq(g + k * C, big + idx[k] * C, C * 2);
}
END_TEST

/* kn_silu_mul_f16_ref: the fp16 gate and up widened exactly, then kn_silu_mul_ref's formula. */
START_TEST(test_kernels_ref_silu_mul_f16)
{
	static const int T = 3, F = 37;
	uint16_t gu[3 * 2 * 37], out[3 * 37], out32[3 * 37];
	float gu32[3 * 2 * 37];
	srand(17);
	for (int i = 0; i < T * 2 * F; i++) {
		gu[i] = f32_to_f16((float)rand() / RAND_MAX * 12.0f - 6.0f);
		gu32[i] = f16_to_f32(gu[i]);
	}
	kn_silu_mul_f16_ref(out, gu, T, F);
	kn_silu_mul_ref(out32, gu32, T, F);
	ck_assert_mem_eq(out, out32, sizeof(out));
}
END_TEST

START_TEST(test_kernels_ref_silu_mul)
{
	/* silu(1) = 0.7310586 → bf16 0.73046875 (one rounding of silu·1) */
	float gu1[2] = { 1.0f, 1.0f };
	uint16_t o1;
	kn_silu_mul_ref(&o1, gu1, 1, 1);
	ck_assert_uint_eq(o1, f32_to_bf16(0.73046875f));
	/* one rounding, not two: silu(0.5)·1.5 = 0.46684450 → 0.46679688, where rounding silu(0.5)
	 * = 0.31122967 to bf16 0.31054688 first would give 0.46582031 → 0.46484375 */
	gu1[0] = 0.5f;
	gu1[1] = 1.5f;
	kn_silu_mul_ref(&o1, gu1, 1, 1);
	ck_assert_float_eq(bf16_to_f32(o1), 0.466796875f);
	/* a very negative gate gives zero, not NaN */
	gu1[0] = -200.0f;
	kn_silu_mul_ref(&o1, gu1, 1, 1);
	ck_assert_double_eq(bf16_to_f32(o1), 0.0);

	static const int sizes[][2] = { { 1, 1 }, { 3, 7 }, { 2, 64 } };
	srand(13);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int T = sizes[s][0], F = sizes[s][1];
		float gu[3 * 2 * 64];
		uint16_t out[3 * 64];
		for (int i = 0; i < T * 2 * F; i++)
			gu[i] = (float)rand() / RAND_MAX * 12.0f - 6.0f;
		kn_silu_mul_ref(out, gu, T, F);
		for (int t = 0; t < T; t++)
			for (int c = 0; c < F; c++) {
				double g = gu[t * 2 * F + c], u = gu[t * 2 * F + F + c];
				double want = g / (1.0 + exp(-g)) * u;
				double got = bf16_to_f32(out[t * F + c]);
				/* one rounding: half a bf16 ulp */
				ck_assert_msg(fabs(got - want) <= fabs(want) * 0x1.01p-8 + 1e-30,
					      "silu_mul[%d]: got %.9g want %.9g", t * F + c, got, want);
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
 * 2::3 up to 3·sec[2] with W), emb = cat(freqs, freqs), cos/sin in fp32, then per head
 * x·cos + rotate_half(x)·sin — in double after the fp32 cos/sin, one rounding to bf16, with the
 * head normalised as qk_norm_rope.h says (double, no rounding). */
static void qknr_direct_head(uint16_t *out, const float *x, const uint16_t *w, int hd,
			     const int32_t p3[3], const int sec[3], float theta)
{
	float freqs[3][256], f[256], cosv[512], sinv[512];
	double n[512];
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
		cosv[i] = (float)cos((double)f[i % half]);
		sinv[i] = (float)sin((double)f[i % half]);
	}
	double ss = 0;
	for (int i = 0; i < hd; i++)
		ss += (double)x[i] * x[i];
	double inv = 1.0 / sqrt(ss / hd + 1e-6);
	for (int i = 0; i < hd; i++)
		n[i] = (double)bf16_to_f32(w[i]) * ((double)x[i] * inv);
	for (int i = 0; i < hd; i++) {
		double rot = i < half ? -n[i + half] : n[i - half];
		out[i] = f32_to_bf16((float)(n[i] * cosv[i] + rot * sinv[i]));
	}
}

/* The rope of one normalised head in double throughout (cos/sin too): a check of the semantics
 * independent of where the roundings sit. */
static double qknr_rel_err_double(const uint16_t *got, const float *x, const uint16_t *w,
				  int hd, const int32_t p3[3], const int sec[3], double theta)
{
	int half = hd / 2;
	double ss = 0, n[512], num = 0, den = 0;
	for (int i = 0; i < hd; i++)
		ss += (double)x[i] * x[i];
	for (int i = 0; i < hd; i++)
		n[i] = bf16_to_f32(w[i]) * (double)x[i] / sqrt(ss / hd + 1e-6);
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
		static float qkv[T * (MAXH + 2 * MAXH) * MAXD];
		static uint16_t qw[MAXD], kw[MAXD];
		static uint16_t q_out[T * MAXH * MAXD], kc[NSLOT * MAXH * MAXD],
			vc[NSLOT * MAXH * MAXD], want[MAXD];
		int32_t pos[3 * T], slots[T] = { 5, -1, 2 };
		for (int i = 0; i < T * nh * hd; i++)
			qkv[i] = bf16_to_f32(rand_bf16(-3, 3)) + (float)(rand() % 1000) * 1e-5f;
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
			const float *row = qkv + (size_t)t * nh * hd;
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
			for (int i = 0; i < KV * hd; i++)
				ck_assert_uint_eq(vc[(size_t)slots[t] * KV * hd + i],
						  f32_to_bf16(row[(Hq + KV) * hd + i]));
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

/* A random E4M3 byte that is not NaN (every finite value, ±448 and ±0 included). */
static uint8_t rand_fp8(void)
{
	uint8_t b;
	do
		b = (uint8_t)(rand() & 0xff);
	while ((b & 0x7f) == 0x7f);
	return b;
}

/* fp8.h's two conversions agree: every finite byte survives decode then encode, and encoding
 * the midpoint of two neighbours picks the one with the even mantissa. */
START_TEST(test_fp8_round_trip_and_ties)
{
	for (int b = 0; b < 256; b++) {
		if ((b & 0x7f) == 0x7f) {
			ck_assert(isnan(fp8e4m3_to_f32((uint8_t)b)));
			continue;
		}
		ck_assert_uint_eq(f32_to_fp8e4m3(fp8e4m3_to_f32((uint8_t)b)), b);
	}
	for (int b = 0; b < 0x7e; b++) {
		float mid = 0.5f * (fp8e4m3_to_f32((uint8_t)b) + fp8e4m3_to_f32((uint8_t)(b + 1)));
		ck_assert_uint_eq(f32_to_fp8e4m3(mid), (b & 1) ? b + 1 : b);
		ck_assert_uint_eq(f32_to_fp8e4m3(-mid), 0x80 | ((b & 1) ? b + 1 : b));
	}
	ck_assert_uint_eq(f32_to_fp8e4m3(1e30f), 0x7e);    /* saturates at 448 */
	ck_assert_uint_eq(f32_to_fp8e4m3(-INFINITY), 0xfe);
	ck_assert_uint_eq(f32_to_fp8e4m3(NAN) & 0x7f, 0x7f);
}
END_TEST

/* The fp8 reference is the bf16 one on the values the bytes stand for: caches of random bytes
 * (saturating ±448 included) with power-of-two scales, so that float(byte)·scale is exactly a
 * bf16 and the two walks do the same double arithmetic; the outputs must be equal bit for bit
 * (well inside the 1e-5 asked of them). */
START_TEST(test_kernels_ref_paged_attention_fp8)
{
	static const int cfg[][4] = { /* Hq, KV, hd, bs */ { 4, 2, 8, 4 }, { 3, 1, 16, 16 },
				      { 2, 2, 5, 1 }, { 8, 2, 32, 32 } };
	static const float scales[][2] = { { 1.0f, 1.0f }, { 0x1p-6f, 0.5f }, { 0x1p-9f, 0x1p-7f },
					   { 2.0f, 0x1p-3f } };
	static const int32_t ctx[] = { 1, 5, 16, 37, 4 };
	enum { B = 5, MAXC = 37 };
	srand(15);
	for (size_t ci = 0; ci < sizeof(cfg) / sizeof(cfg[0]); ci++) {
		const int Hq = cfg[ci][0], KV = cfg[ci][1], hd = cfg[ci][2], bs = cfg[ci][3];
		const float ks = scales[ci][0], vs = scales[ci][1];
		const int max_blocks = (MAXC + bs - 1) / bs, n_blocks = B * max_blocks + 3;
		const size_t nq = (size_t)B * Hq * hd, pool = (size_t)n_blocks * bs * KV * hd;
		uint16_t *q = malloc(nq * 2), *out8 = malloc(nq * 2), *out16 = malloc(nq * 2);
		uint16_t *kd = malloc(pool * 2), *vd = malloc(pool * 2);
		uint8_t *kc = malloc(pool), *vc = malloc(pool);
		int32_t *bt = malloc((size_t)B * max_blocks * sizeof(*bt));
		for (size_t i = 0; i < nq; i++)
			q[i] = rand_bf16(-2, 2);
		for (size_t i = 0; i < pool; i++) {
			kc[i] = rand_fp8();
			vc[i] = rand_fp8();
			kd[i] = f32_to_bf16(fp8e4m3_to_f32(kc[i]) * ks);
			vd[i] = f32_to_bf16(fp8e4m3_to_f32(vc[i]) * vs);
			ck_assert(bf16_to_f32(kd[i]) == fp8e4m3_to_f32(kc[i]) * ks);
		}
		shuffled_block_table(bt, ctx, B, max_blocks, bs, n_blocks);
		/* scores of random bytes up to 448 are huge: a small scale keeps the softmax soft */
		const float scale = 1.0f / (float)hd;
		memset(out8, 0xff, nq * 2);
		kn_paged_attention_fp8_ref(out8, q, kc, vc, bt, ctx, B, Hq, KV, hd, bs, max_blocks,
					   scale, ks, vs);
		kn_paged_attention_ref(out16, q, kd, vd, bt, ctx, B, Hq, KV, hd, bs, max_blocks,
				       scale);
		for (size_t i = 0; i < nq; i++)
			ck_assert_msg(out8[i] == out16[i], "paged_attention_fp8 cfg %zu [%zu]: %g vs %g",
				      ci, i, bf16_to_f32(out8[i]), bf16_to_f32(out16[i]));
		free(q);
		free(out8);
		free(out16);
		free(kd);
		free(vd);
		free(kc);
		free(vc);
		free(bt);
	}
}
END_TEST

/* The fp8 qk_norm_rope reference writes q exactly as the bf16 one and, into the caches, the
 * bytes f32_to_fp8e4m3(x · (1/scale)) of the bf16 one's k and v; other slots stay untouched. */
START_TEST(test_kernels_ref_qk_norm_rope_fp8)
{
	static const int cases[][2] = { /* Hq, KV; hd 32 and 128 each */ { 4, 2 }, { 2, 1 } };
	static const float scales[][2] = { { 1.0f, 1.0f }, { 0.37f, 2.5f }, { 0x1p-6f, 3.0f } };
	enum { T = 3, NSLOT = 8, MAXH = 4, MAXD = 128 };
	srand(16);
	for (size_t cs = 0; cs < sizeof(cases) / sizeof(cases[0]); cs++)
		for (int hd = 32; hd <= 128; hd *= 4)
			for (size_t si = 0; si < sizeof(scales) / sizeof(scales[0]); si++) {
				const int Hq = cases[cs][0], KV = cases[cs][1], nh = Hq + 2 * KV;
				const float ks = scales[si][0], vs = scales[si][1];
				int sec[3] = { hd / 4, hd / 8, hd / 8 };
				static float qkv[T * 3 * MAXH * MAXD];
				static uint16_t qw[MAXD], kw[MAXD];
				static uint16_t q16[T * MAXH * MAXD], q8[T * MAXH * MAXD],
					kc16[NSLOT * MAXH * MAXD], vc16[NSLOT * MAXH * MAXD];
				static uint8_t kc8[NSLOT * MAXH * MAXD], vc8[NSLOT * MAXH * MAXD];
				int32_t pos[3 * T], slots[T] = { 6, -1, 1 };
				for (int i = 0; i < T * nh * hd; i++)
					qkv[i] = bf16_to_f32(rand_bf16(-3, 3));
				/* v values that saturate, and one below the smallest E4M3 subnormal
				 * at every scale here (it encodes to -0) */
				qkv[(Hq + KV) * hd] = 2000.0f;
				qkv[(Hq + KV) * hd + 1] = -1e-5f;
				for (int i = 0; i < hd; i++) {
					qw[i] = rand_bf16(0.5, 1.5);
					kw[i] = rand_bf16(0.5, 1.5);
				}
				for (int t = 0; t < T; t++) {
					pos[t] = 700 * t + 3;
					pos[T + t] = 5000 - t;
					pos[2 * T + t] = 11 * t;
				}
				memset(kc16, 0xff, sizeof(kc16));
				memset(vc16, 0xff, sizeof(vc16));
				memset(kc8, 0xa5, sizeof(kc8));
				memset(vc8, 0xa5, sizeof(vc8));
				kn_qk_norm_rope_ref(q16, kc16, vc16, qkv, qw, kw, pos, slots, T, Hq, KV,
						    hd, sec, 1e6f, 1e-6f);
				kn_qk_norm_rope_fp8_ref(q8, kc8, vc8, qkv, qw, kw, pos, slots, T, Hq,
							KV, hd, sec, 1e6f, 1e-6f, ks, vs);
				ck_assert_mem_eq(q8, q16, (size_t)T * Hq * hd * 2);
				const float ik = 1.0f / ks, iv = 1.0f / vs;
				for (int sl = 0; sl < NSLOT; sl++)
					for (int i = 0; i < KV * hd; i++) {
						const int at = sl * KV * hd + i;
						if (sl != 6 && sl != 1) {
							ck_assert_uint_eq(kc8[at], 0xa5);
							ck_assert_uint_eq(vc8[at], 0xa5);
							continue;
						}
						ck_assert_uint_eq(kc8[at], f32_to_fp8e4m3(
										   bf16_to_f32(kc16[at]) * ik));
						ck_assert_uint_eq(vc8[at], f32_to_fp8e4m3(
										   bf16_to_f32(vc16[at]) * iv));
					}
				/* slot 6 is token 0's: its first v saturates */
				ck_assert_uint_eq(vc8[6 * KV * hd] & 0x7f,
						  f32_to_fp8e4m3(2000.0f * iv) & 0x7f);
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

/* kn_gemm_f32_ref: the double sum (+ fp32 residual) rounded once to float, in place too. */
START_TEST(test_kernels_ref_gemm_f32)
{
	static const int shapes[][3] = { { 1, 1, 1 }, { 1, 7, 13 }, { 3, 5, 7 }, { 5, 17, 13 },
					 { 2, 64, 129 } };
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
		uint16_t *x = malloc((size_t)M * K * 2), *W = malloc((size_t)N * K * 2);
		float *r = malloc((size_t)M * N * 4), *y = malloc((size_t)M * N * 4);
		for (int i = 0; i < M * K; i++)
			x[i] = rand_bf16(-2, 2);
		for (int i = 0; i < N * K; i++)
			W[i] = rand_bf16(-0.5, 0.5);
		for (int i = 0; i < M * N; i++)   /* fp32 values, not bf16 ones */
			r[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
		for (int res = 0; res < 3; res++) {   /* none, separate, in place */
			if (res == 2)
				memcpy(y, r, (size_t)M * N * 4);
			kn_gemm_f32_ref(y, x, W, res == 1 ? r : res == 2 ? y : NULL, M, N, K);
			for (int m = 0; m < M; m++)
				for (int n = 0; n < N; n++) {
					double acc = 0;
					for (int k = 0; k < K; k++)
						acc += (double)bf16_to_f32(x[m * K + k]) *
						       bf16_to_f32(W[n * K + k]);
					if (res)
						acc += r[m * N + n];
					ck_assert_msg(y[m * N + n] == (float)acc,
						      "gemm_f32 %dx%dx%d res=%d [%d,%d]: got %.9g want "
						      "%.9g", M, N, K, res, m, n, y[m * N + n], acc);
				}
		}
		free(x);
		free(W);
		free(r);
		free(y);
	}
	/* [1 2 3]·[4 5 6] = 32, + residual 2^-10: kept exactly (bf16 would drop it) */
	uint16_t x3[3] = { f32_to_bf16(1), f32_to_bf16(2), f32_to_bf16(3) };
	uint16_t w3[3] = { f32_to_bf16(4), f32_to_bf16(5), f32_to_bf16(6) };
	float y1 = 0x1p-10f;
	kn_gemm_f32_ref(&y1, x3, w3, &y1, 1, 1, 3);
	ck_assert_float_eq(y1, 32.0f + 0x1p-10f);
}
END_TEST

/* kn_gemm_f32_f16_ref: on fp16 copies of bf16 operands (exact: bf16_to_f16 of values in fp16's
 * normal range) it is kn_gemm_f32_ref bit for bit; on fp16 values with 11 significant bits it
 * is their own double sum, rounded once. */
START_TEST(test_kernels_ref_gemm_f32_f16)
{
	enum { M = 3, N = 17, K = 37 };
	uint16_t x[M * K], W[N * K], x16[M * K], W16[N * K];
	float r[M * N], y[M * N], y16[M * N];
	for (int i = 0; i < M * K; i++) {
		x[i] = rand_bf16(-2, 2);
		x16[i] = bf16_to_f16(x[i]);
	}
	for (int i = 0; i < N * K; i++) {
		W[i] = rand_bf16(-0.5, 0.5);
		W16[i] = bf16_to_f16(W[i]);
	}
	for (int i = 0; i < M * N; i++)
		r[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
	kn_gemm_f32_ref(y, x, W, r, M, N, K);
	kn_gemm_f32_f16_ref(y16, x16, W16, r, M, N, K);
	ck_assert_mem_eq(y, y16, sizeof(y));
	/* 11-bit operands: 1 + 2^-10 (not a bf16) times 3 = 3 + 3·2^-10, exactly */
	uint16_t a = f32_to_f16(1.0f + 0x1p-10f), b = f32_to_f16(3.0f);
	ck_assert(f16_to_f32(a) == 1.0f + 0x1p-10f);
	float y1 = 0;
	kn_gemm_f32_f16_ref(&y1, &a, &b, NULL, 1, 1, 1);
	ck_assert_float_eq(y1, 3.0f + 3 * 0x1p-10f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kernels_ref");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_bf16_round_trip_and_rounding);
	tcase_add_test(tc, test_f16_matches_compiler_conversion);
	tcase_add_test(tc, test_bf16_to_f16_all_patterns);
	tcase_add_test(tc, test_rmsnorm_ref_constant_row);
	tcase_add_test(tc, test_rmsnorm_ref_matches_formula);
	tcase_add_test(tc, test_kernels_ref_embedding);
	tcase_add_test(tc, test_kernels_ref_rows);
	tcase_add_test(tc, test_kernels_ref_silu_mul);
	tcase_add_test(tc, test_kernels_ref_silu_mul_f16);
	tcase_add_test(tc, test_kernels_ref_layernorm);
	tcase_add_test(tc, test_kernels_ref_gelu);
	tcase_add_test(tc, test_kernels_ref_paged_attention);
	tcase_add_test(tc, test_kernels_ref_qk_norm_rope);
	tcase_add_test(tc, test_fp8_round_trip_and_ties);
	tcase_add_test(tc, test_kernels_ref_paged_attention_fp8);
	tcase_add_test(tc, test_kernels_ref_qk_norm_rope_fp8);
	tcase_add_test(tc, test_kernels_ref_logits_topk);
	tcase_add_test(tc, test_kernels_ref_gemm);
	tcase_add_test(tc, test_kernels_ref_gemm_f32);
	tcase_add_test(tc, test_kernels_ref_gemm_f32_f16);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
