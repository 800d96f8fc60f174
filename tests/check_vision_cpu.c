/*
 * Tests of vision_cpu, the fp32 Qwen3-VL vision tower.
 *
 * What: the whole forward against a deliberately naive double-precision reference written here
 * (straight loops, no BLAS, position embedding by the direct align-corners formula, rotary angles
 * from the formula), on random checkpoints from mkmodel (the "tiny" preset in bf16 and the
 * tiny-mha-hd64 golden config in f32: head_dim 16 and 48, 48x48 and 24x24 tables, 3 and 2
 * deepstack taps) with random pixel values, square and non-square grids and a two-slice item;
 * the position-embedding resample and the rotary tables on their own; the independence of
 * temporal slices; bad grids; and, where tests/data/model-golden/golden.jsonl exists, the
 * merged embeddings and deepstack norms transformers computed for the golden prompts' images.
 *
 * Fixtures: $QVL_DATADIR for mkmodel's presets, $srcdir (default ".") for tests/data.
 */
#include <check.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bf16.h"
#include "img_decode.h"
#include "img_preprocess.h"
#include "jsonx.h"
#include "mkmodel.h"
#include "model_config.h"
#include "model_weights.h"
#include "testutil.h"
#include "vision_cpu.h"

/* ---- fixtures --------------------------------------------------------------------------- */

typedef struct model {
	char *dir;
	model_config mc;
	model_weights w;
} model;

static const char *srcdir(void)
{
	const char *s = getenv("srcdir");
	return s && *s ? s : ".";
}

static void model_make(model *m, const char *preset, const char *config_path, st_dtype dt)
{
	m->dir = tu_mkdtemp("vision");
	mkmodel_opts o = { .preset = preset, .config_path = config_path, .out_dir = m->dir,
			   .seed = 1, .dtype = dt };
	qerr e = { 0 };
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
	ck_assert_msg(model_config_load_dir(m->dir, &m->mc, NULL, NULL, &e) == 0, "%s", e.msg);
	memset(&m->w, 0, sizeof(m->w));
	ck_assert_msg(model_weights_open(m->dir, &m->mc, &m->w, &e) == 0, "%s", e.msg);
}

static void model_drop(model *m)
{
	model_weights_deinit(&m->w);
	tu_rmdir(m->dir);
	free(m->dir);
}

/* Uniform values in [-1, 1) from a seeded xorshift (never all zeros). */
static void fill_random(float *x, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
	}
}

/* ---- the naive double reference --------------------------------------------------------- */

static double *tensor_d(const st_tensor *t)
{
	double *d = xmalloc(t->numel * sizeof(double));
	const uint8_t *p = t->data;
	for (uint64_t i = 0; i < t->numel; i++) {
		uint16_t h;
		float f;
		if (t->dtype == ST_BF16) {
			memcpy(&h, p + 2 * i, 2);
			d[i] = bf16_to_f32(h);
		} else if (t->dtype == ST_F16) {
			memcpy(&h, p + 2 * i, 2);
			d[i] = f16_to_f32(h);
		} else {
			memcpy(&f, p + 4 * i, 4);
			d[i] = f;
		}
	}
	return d;
}

/* y (n, out) = x (n, in) · W(out, in)ᵀ + b */
static void ref_linear(const double *x, int n, int in, const st_tensor *wt, const st_tensor *bt,
		       int out, double *y)
{
	double *W = tensor_d(wt), *b = tensor_d(bt);
	for (int i = 0; i < n; i++)
		for (int o = 0; o < out; o++) {
			double s = b[o];
			for (int k = 0; k < in; k++)
				s += x[(size_t)i * in + k] * W[(size_t)o * in + k];
			y[(size_t)i * out + o] = s;
		}
	free(W);
	free(b);
}

static void ref_ln(const double *x, int n, int d, const st_tensor *wt, const st_tensor *bt,
		   double *y)
{
	double *w = tensor_d(wt), *b = tensor_d(bt);
	for (int i = 0; i < n; i++) {
		double mean = 0, var = 0;
		for (int j = 0; j < d; j++)
			mean += x[(size_t)i * d + j] / d;
		for (int j = 0; j < d; j++)
			var += (x[(size_t)i * d + j] - mean) * (x[(size_t)i * d + j] - mean) / d;
		for (int j = 0; j < d; j++)
			y[(size_t)i * d + j] = (x[(size_t)i * d + j] - mean) / sqrt(var + 1e-6) * w[j] + b[j];
	}
	free(w);
	free(b);
}

/* Patch n of an item (merge-window order) → its (row, col), by division. */
static void ref_patch_pos(int n, int gh, int gw, int m, int *row, int *col)
{
	int per_slice = gh * gw, r = n % per_slice;
	int win = r / (m * m), in = r % (m * m);
	*row = (win / (gw / m)) * m + in / m;
	*col = (win % (gw / m)) * m + in % m;
}

/* Align-corners bilinear sample of the (side, side, dv) table at patch (row, col) of gh x gw. */
static void ref_pos(const double *tab, int side, int dv, int gh, int gw, int row, int col,
		    double *o)
{
	double y = gh > 1 ? (double)row * (side - 1) / (gh - 1) : 0;
	double x = gw > 1 ? (double)col * (side - 1) / (gw - 1) : 0;
	int y0 = (int)floor(y), x0 = (int)floor(x);
	int y1 = y0 + 1 < side ? y0 + 1 : side - 1, x1 = x0 + 1 < side ? x0 + 1 : side - 1;
	double fy = y - y0, fx = x - x0;
	for (int d = 0; d < dv; d++)
		o[d] = tab[((size_t)y0 * side + x0) * dv + d] * (1 - fy) * (1 - fx) +
		       tab[((size_t)y0 * side + x1) * dv + d] * (1 - fy) * fx +
		       tab[((size_t)y1 * side + x0) * dv + d] * fy * (1 - fx) +
		       tab[((size_t)y1 * side + x1) * dv + d] * fy * fx;
}

static double ref_gelu_tanh(double z)
{
	return 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
}

static double ref_gelu_erf(double z)
{
	return 0.5 * z * (1 + erf(z / sqrt(2)));
}

static void ref_merger(const model *m, const merger_weights *mw, const double *x, int N, bool post,
		       double *out /* (N/m², D) */)
{
	const vision_config *vc = &m->mc.vision;
	int Dv = vc->hidden_size, mm = vc->spatial_merge_size * vc->spatial_merge_size;
	int Dm = Dv * mm, T = N / mm, D = vc->out_hidden_size;
	double *g = xmalloc((size_t)N * Dv * sizeof(double));
	double *h = xmalloc((size_t)T * Dm * sizeof(double));
	if (post)
		ref_ln(x, T, Dm, mw->norm_w, mw->norm_b, g);
	else
		ref_ln(x, N, Dv, mw->norm_w, mw->norm_b, g);
	ref_linear(g, T, Dm, mw->fc1_w, mw->fc1_b, Dm, h);
	for (size_t i = 0; i < (size_t)T * Dm; i++)
		h[i] = ref_gelu_erf(h[i]);
	ref_linear(h, T, Dm, mw->fc2_w, mw->fc2_b, D, out);
	free(g);
	free(h);
}

/* The tower in double, straight from spec §5 → out (N/m², 1+n_ds, D). */
static void ref_encode(const model *m, const float *pv, int gt, int gh, int gw, double *out)
{
	const vision_config *vc = &m->mc.vision;
	int Dv = vc->hidden_size, H = vc->num_heads, hd = Dv / H, Iv = vc->intermediate_size;
	int mg = vc->spatial_merge_size, K = 3 * vc->temporal_patch_size * vc->patch_size * vc->patch_size;
	int N = gt * gh * gw, L = gh * gw, D = vc->out_hidden_size, nds = vc->n_deepstack;
	int side = (int)lround(sqrt(vc->num_position_embeddings)), T = N / (mg * mg);
	double *X = xmalloc((size_t)N * K * sizeof(double));
	for (size_t i = 0; i < (size_t)N * K; i++)
		X[i] = pv[i];
	double *x = xmalloc((size_t)N * Dv * sizeof(double));
	double *a = xmalloc((size_t)N * Dv * sizeof(double));
	double *qkv = xmalloc((size_t)N * 3 * Dv * sizeof(double));
	double *o = xmalloc((size_t)N * Dv * sizeof(double));
	double *hb = xmalloc((size_t)N * Iv * sizeof(double));
	double *tmp = xmalloc((size_t)T * D * sizeof(double));
	double *p = xmalloc((size_t)L * sizeof(double));
	ref_linear(X, N, K, m->w.patch_embed_w, m->w.patch_embed_b, Dv, x);
	double *tab = tensor_d(m->w.pos_embed);
	for (int n = 0; n < N; n++) {
		int r, c;
		ref_patch_pos(n, gh, gw, mg, &r, &c);
		ref_pos(tab, side, Dv, gh, gw, r, c, a);
		for (int d = 0; d < Dv; d++)
			x[(size_t)n * Dv + d] += a[d];
	}
	free(tab);
	for (int b = 0; b < vc->depth; b++) {
		const vision_block_weights *bw = &m->w.blocks[b];
		ref_ln(x, N, Dv, bw->norm1_w, bw->norm1_b, a);
		ref_linear(a, N, Dv, bw->qkv_w, bw->qkv_b, 3 * Dv, qkv);
		for (int n = 0; n < N; n++) {
			int r, c;
			ref_patch_pos(n, gh, gw, mg, &r, &c);
			for (int part = 0; part < 2; part++)
				for (int h = 0; h < H; h++) {
					double *v = qkv + (size_t)n * 3 * Dv + part * Dv + h * hd;
					for (int i = 0; i < hd / 2; i++) {
						int k = i % (hd / 4);
						double f = pow(10000.0, -2.0 * k / (hd / 2));
						double th = (i < hd / 4 ? r : c) * f;
						double u = v[i], w = v[i + hd / 2];
						v[i] = u * cos(th) - w * sin(th);
						v[i + hd / 2] = w * cos(th) + u * sin(th);
					}
				}
		}
		for (int n = 0; n < N; n++) {
			int seg = n / L;
			for (int h = 0; h < H; h++) {
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j < L; j++) {
					int k = seg * L + j;
					double s = 0;
					for (int d = 0; d < hd; d++)
						s += qkv[(size_t)n * 3 * Dv + h * hd + d] *
						     qkv[(size_t)k * 3 * Dv + Dv + h * hd + d];
					p[j] = s / sqrt(hd);
					mx = fmax(mx, p[j]);
				}
				for (int j = 0; j < L; j++)
					sum += (p[j] = exp(p[j] - mx));
				for (int d = 0; d < hd; d++) {
					double s = 0;
					for (int j = 0; j < L; j++)
						s += p[j] / sum * qkv[(size_t)(seg * L + j) * 3 * Dv + 2 * Dv + h * hd + d];
					o[(size_t)n * Dv + h * hd + d] = s;
				}
			}
		}
		ref_linear(o, N, Dv, bw->proj_w, bw->proj_b, Dv, a);
		for (size_t i = 0; i < (size_t)N * Dv; i++)
			x[i] += a[i];
		ref_ln(x, N, Dv, bw->norm2_w, bw->norm2_b, a);
		ref_linear(a, N, Dv, bw->fc1_w, bw->fc1_b, Iv, hb);
		for (size_t i = 0; i < (size_t)N * Iv; i++)
			hb[i] = vc->hidden_act == MODEL_ACT_GELU_TANH ? ref_gelu_tanh(hb[i]) : ref_gelu_erf(hb[i]);
		ref_linear(hb, N, Iv, bw->fc2_w, bw->fc2_b, Dv, a);
		for (size_t i = 0; i < (size_t)N * Dv; i++)
			x[i] += a[i];
		for (int k = 0; k < nds; k++) {
			if (vc->deepstack_visual_indexes[k] != b)
				continue;
			ref_merger(m, &m->w.deepstack[k], x, N, true, tmp);
			for (int t = 0; t < T; t++)
				memcpy(out + ((size_t)t * (1 + nds) + 1 + k) * D, tmp + (size_t)t * D,
				       (size_t)D * sizeof(double));
		}
	}
	ref_merger(m, &m->w.merger, x, N, false, tmp);
	for (int t = 0; t < T; t++)
		memcpy(out + (size_t)t * (1 + nds) * D, tmp + (size_t)t * D, (size_t)D * sizeof(double));
	free(X);
	free(x);
	free(a);
	free(qkv);
	free(o);
	free(hb);
	free(tmp);
	free(p);
}

/* ‖got − want‖/‖want‖ and max |got − want| / max |want|; prints the first mismatches. */
static void compare(const char *what, const float *got, const double *want, size_t n,
		    double tol_rel, double tol_max)
{
	double num = 0, den = 0, maxe = 0, maxw = 0;
	int shown = 0;
	for (size_t i = 0; i < n; i++) {
		double d = got[i] - want[i];
		ck_assert_msg(isfinite(got[i]), "%s: value %zu is %g", what, i, got[i]);
		num += d * d;
		den += want[i] * want[i];
		maxe = fmax(maxe, fabs(d));
		maxw = fmax(maxw, fabs(want[i]));
		if (fabs(d) > tol_max * fmax(1, fabs(want[i])) && shown++ < 5)
			fprintf(stderr, "%s[%zu]: got %.9g want %.9g\n", what, i, got[i], want[i]);
	}
	double rel = sqrt(num / den), mrel = maxe / maxw;
	fprintf(stderr, "%s: %zu values, rel %.3g, max err %.3g (/max %.3g)\n", what, n, rel, maxe, mrel);
	ck_assert_msg(rel <= tol_rel && mrel <= tol_max, "%s: rel %g, max %g", what, rel, mrel);
}

static void assert_matches_ref(const model *m, int gt, int gh, int gw, uint64_t seed)
{
	const vision_config *vc = &m->mc.vision;
	int K = 3 * vc->temporal_patch_size * vc->patch_size * vc->patch_size;
	int N = gt * gh * gw, T = N / (vc->spatial_merge_size * vc->spatial_merge_size);
	size_t nout = (size_t)T * (1 + vc->n_deepstack) * vc->out_hidden_size;
	float *pv = xmalloc((size_t)N * K * sizeof(float));
	fill_random(pv, (size_t)N * K, seed);
	float *out = xmalloc(nout * sizeof(float));
	for (size_t i = 0; i < nout; i++)
		out[i] = NAN;
	double *want = xmalloc(nout * sizeof(double));
	vision_cpu *v;
	qerr e = { 0 };
	ck_assert_msg(vision_cpu_new(&m->mc, &m->w, 0, &v, &e) == 0, "%s", e.msg);
	ck_assert_msg(vision_cpu_encode(v, pv, gt, gh, gw, out, &e) == 0, "%s", e.msg);
	ref_encode(m, pv, gt, gh, gw, want);
	char what[128];
	snprintf(what, sizeof(what), "encode (%d,%d,%d) Dv %d", gt, gh, gw, vc->hidden_size);
	compare(what, out, want, nout, 1e-5, 1e-4);
	/* a second call reuses the scratch: same bytes */
	float *again = xmalloc(nout * sizeof(float));
	ck_assert_msg(vision_cpu_encode(v, pv, gt, gh, gw, again, &e) == 0, "%s", e.msg);
	ck_assert_mem_eq(out, again, nout * sizeof(float));
	vision_cpu_free(v);
	free(again);
	free(pv);
	free(out);
	free(want);
}

/* ---- tests ------------------------------------------------------------------------------ */

START_TEST(test_vision_cpu_matches_reference_tiny)
{
	model m;
	model_make(&m, "tiny", NULL, ST_BF16);
	assert_matches_ref(&m, 1, 4, 6, 11);
	assert_matches_ref(&m, 1, 2, 2, 12);
	assert_matches_ref(&m, 1, 6, 2, 13);
	assert_matches_ref(&m, 2, 2, 4, 14);   /* two temporal slices: two attention segments */
	model_drop(&m);
}
END_TEST

START_TEST(test_vision_cpu_matches_reference_hd48)
{
	char cfg[1024];
	snprintf(cfg, sizeof(cfg), "%s/tests/data/model-golden/configs/tiny-mha-hd64.json", srcdir());
	model m;
	model_make(&m, NULL, cfg, ST_F32);   /* f32: the weights are borrowed from the mapping */
	ck_assert_int_eq(m.mc.vision.hidden_size / m.mc.vision.num_heads, 48);
	assert_matches_ref(&m, 1, 6, 4, 21);
	assert_matches_ref(&m, 1, 2, 30, 22);  /* wider than the 24x24 table */
	model_drop(&m);
}
END_TEST

START_TEST(test_vision_cpu_pos_embed_bilinear)
{
	static const int grids[][3] = { { 1, 2, 6 }, { 1, 6, 4 }, { 2, 4, 2 }, { 1, 2, 14 },
					{ 1, 10, 10 } };
	int side = 5, dv = 3;
	float tab[5 * 5 * 3];
	double tabd[5 * 5 * 3];
	fill_random(tab, sizeof(tab) / sizeof(tab[0]), 3);
	for (int i = 0; i < side * side * dv; i++)
		tabd[i] = tab[i];
	for (size_t g = 0; g < sizeof(grids) / sizeof(grids[0]); g++) {
		int gt = grids[g][0], gh = grids[g][1], gw = grids[g][2], N = gt * gh * gw;
		float *out = xmalloc((size_t)N * dv * sizeof(float));
		vision_cpu_pos_embed(tab, side, dv, 2, gt, gh, gw, out);
		for (int n = 0; n < N; n++) {
			int r, c;
			double want[3];
			ref_patch_pos(n, gh, gw, 2, &r, &c);
			ref_pos(tabd, side, dv, gh, gw, r, c, want);
			for (int d = 0; d < dv; d++)
				ck_assert_msg(fabs(out[n * dv + d] - want[d]) <= 1e-6,
					      "grid (%d,%d,%d) patch %d (%d,%d) d %d: %.9g vs %.9g", gt,
					      gh, gw, n, r, c, d, out[n * dv + d], want[d]);
			/* the corners are table rows exactly (align-corners) */
			if (r == 0 && c == 0)
				ck_assert_mem_eq(out + n * dv, tab, (size_t)dv * sizeof(float));
			if (r == gh - 1 && c == gw - 1)
				ck_assert_mem_eq(out + n * dv, tab + (side * side - 1) * dv,
						 (size_t)dv * sizeof(float));
		}
		free(out);
	}
}
END_TEST

START_TEST(test_vision_cpu_rope_tables)
{
	/* head_dim 64 (the 2b model): f_k = 10000^(-k/16) */
	int gh = 4, gw = 6, N = gh * gw;
	float *co = xmalloc((size_t)N * 32 * sizeof(float)), *si = xmalloc((size_t)N * 32 * sizeof(float));
	vision_cpu_rope_tables(64, 2, 1, gh, gw, co, si);
	/* patch n = 7 is window (0,1), in-window (1,1): row 1, col 3 */
	ck_assert_float_eq_tol(co[7 * 32 + 1], cosf(0.56234133f), 1e-7);
	ck_assert_float_eq_tol(co[7 * 32 + 16 + 1], cosf(3 * 0.56234133f), 1e-7);
	ck_assert_float_eq_tol(si[7 * 32 + 15], sinf(1.7782794e-4f), 1e-9);
	free(co);
	free(si);
	static const int hds[] = { 16, 48, 64, 128 };
	for (size_t h = 0; h < 4; h++) {
		int hd = hds[h], half = hd / 2, gt = 2;
		N = gt * gh * gw;
		co = xmalloc((size_t)N * half * sizeof(float));
		si = xmalloc((size_t)N * half * sizeof(float));
		vision_cpu_rope_tables(hd, 2, gt, gh, gw, co, si);
		for (int n = 0; n < N; n++) {
			int r, c;
			ref_patch_pos(n, gh, gw, 2, &r, &c);
			for (int i = 0; i < half; i++) {
				double f = pow(10000.0, -(double)(2 * (i % (hd / 4))) / half);
				double th = (i < hd / 4 ? r : c) * f;
				ck_assert_msg(fabs(co[n * half + i] - cos(th)) < 2e-6 &&
					      fabs(si[n * half + i] - sin(th)) < 2e-6,
					      "hd %d n %d i %d: %g %g vs %g %g", hd, n, i,
					      co[n * half + i], si[n * half + i], cos(th), sin(th));
			}
		}
		free(co);
		free(si);
	}
}
END_TEST

START_TEST(test_vision_cpu_slices_are_independent)
{
	/* Two temporal slices holding the same pixels encode to the same tokens as one slice:
	 * attention does not cross slices and both get the same positions. */
	model m;
	model_make(&m, "tiny", NULL, ST_BF16);
	const vision_config *vc = &m.mc.vision;
	int K = 3 * vc->temporal_patch_size * vc->patch_size * vc->patch_size, L = 4 * 6;
	size_t row = (size_t)(1 + vc->n_deepstack) * vc->out_hidden_size, T = (size_t)L / 4;
	float *pv = xmalloc(2 * (size_t)L * K * sizeof(float));
	fill_random(pv, (size_t)L * K, 5);
	memcpy(pv + (size_t)L * K, pv, (size_t)L * K * sizeof(float));
	float *one = xmalloc(T * row * sizeof(float)), *two = xmalloc(2 * T * row * sizeof(float));
	vision_cpu *v;
	qerr e = { 0 };
	ck_assert_msg(vision_cpu_new(&m.mc, &m.w, 1, &v, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(vision_cpu_encode(v, pv, 1, 4, 6, one, &e), 0);
	ck_assert_int_eq(vision_cpu_encode(v, pv, 2, 4, 6, two, &e), 0);
	for (size_t i = 0; i < T * row; i++) {
		ck_assert_float_eq_tol(two[i], one[i], 1e-5 * fmax(1, fabs(one[i])));
		ck_assert_float_eq_tol(two[T * row + i], one[i], 1e-5 * fmax(1, fabs(one[i])));
	}
	vision_cpu_free(v);
	free(pv);
	free(one);
	free(two);
	model_drop(&m);
}
END_TEST

START_TEST(test_vision_cpu_rejects_bad_input)
{
	model m;
	model_make(&m, "tiny", NULL, ST_BF16);
	vision_cpu *v;
	qerr e = { 0 };
	ck_assert_msg(vision_cpu_new(&m.mc, &m.w, 0, &v, &e) == 0, "%s", e.msg);
	float pv[1] = { 0 }, out[1];
	ck_assert_int_eq(vision_cpu_encode(v, pv, 1, 3, 4, out, &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "multiples of 2"));
	ck_assert_int_eq(vision_cpu_encode(v, pv, 0, 2, 2, out, &e), -QERR_INVALID);
	ck_assert_int_eq(vision_cpu_encode(v, pv, 1, 2, -2, out, &e), -QERR_INVALID);
	ck_assert_int_eq(vision_cpu_encode(v, pv, 1, 2048, 1024, out, &e), -QERR_LIMIT);
	vision_cpu_free(v);
	vision_cpu_free(NULL);

	model_config text = m.mc;
	text.has_vision = false;
	ck_assert_int_eq(vision_cpu_new(&text, &m.w, 0, &v, &e), -QERR_INVALID);
	ck_assert_ptr_null(v);
	model_weights w = m.w;
	w.n_blocks = 2;
	ck_assert_int_eq(vision_cpu_new(&m.mc, &w, 0, &v, &e), -QERR_MISSING);
	w = m.w;
	w.patch_embed_b = NULL;
	ck_assert_int_eq(vision_cpu_new(&m.mc, &w, 0, &v, &e), -QERR_MISSING);
	ck_assert_ptr_nonnull(strstr(e.msg, "patch_embed.proj.bias"));
	model_drop(&m);
}
END_TEST

/* ---- goldens from transformers ---------------------------------------------------------- */

static char *find_image(const char *name, size_t *len)
{
	static const char *dirs[] = { "tests/data/images", "tests/data/images-large" };
	for (size_t i = 0; i < 2; i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s/%s", srcdir(), dirs[i], name);
		char *data = tu_read(path, len);
		if (data)
			return data;
	}
	return NULL;
}

/* Encode every image of a prompt file in order; main rows → *emb (n_tok, D), deepstack sums of
 * squares → ds_ss[k]. */
static void encode_prompt(vision_cpu *v, const model *m, const char *prompt, float **emb,
			  size_t *n_tok, double *ds_ss)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/model-golden/prompts/%s.json", srcdir(), prompt);
	json_object *req;
	qerr e = { 0 };
	ck_assert_msg(jsonx_parse_file(path, 1 << 20, &req, &e) == 0, "%s", e.msg);
	preprocessor_config pc;
	preprocessor_config_defaults(&pc);
	const vision_config *vc = &m->mc.vision;
	int D = vc->out_hidden_size, nds = vc->n_deepstack;
	*emb = NULL;
	*n_tok = 0;
	json_object *msgs = jsonx_member(req, "messages");
	for (size_t i = 0; i < json_object_array_length(msgs); i++) {
		json_object *content = jsonx_member(json_object_array_get_idx(msgs, i), "content");
		if (!content || !json_object_is_type(content, json_type_array))
			continue;
		for (size_t j = 0; j < json_object_array_length(content); j++) {
			json_object *part = json_object_array_get_idx(content, j);
			const char *type = json_object_get_string(jsonx_member(part, "type"));
			if (!type || strcmp(type, "image"))
				continue;
			const char *name = json_object_get_string(jsonx_member(part, "image"));
			size_t len;
			char *data = find_image(name, &len);
			ck_assert_msg(data != NULL, "image %s not found", name);
			img_rgb im = { 0 };
			ck_assert_msg(img_decode(data, len, NULL, &im, &e) == 0, "%s: %s", name, e.msg);
			img_patches p = { 0 };
			ck_assert_msg(img_preprocess(&im, &pc, 0, 0, &p, &e) == 0, "%s: %s", name, e.msg);
			size_t T = (size_t)p.n_tokens;
			float *out = xmalloc(T * (1 + nds) * D * sizeof(float));
			ck_assert_msg(vision_cpu_encode(v, p.pixel_values, p.grid_t, p.grid_h, p.grid_w,
							out, &e) == 0, "%s: %s", name, e.msg);
			*emb = xrealloc(*emb, (*n_tok + T) * D * sizeof(float));
			for (size_t t = 0; t < T; t++) {
				const float *r = out + t * (1 + nds) * D;
				memcpy(*emb + (*n_tok + t) * D, r, (size_t)D * sizeof(float));
				for (int k = 0; k < nds; k++)
					for (int d = 0; d < D; d++)
						ds_ss[k] += (double)r[(1 + k) * D + d] * r[(1 + k) * D + d];
			}
			*n_tok += T;
			free(out);
			img_patches_deinit(&p);
			img_rgb_deinit(&im);
			free(data);
		}
	}
	json_object_put(req);
}

START_TEST(test_vision_cpu_matches_transformers_golden)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/model-golden/golden.jsonl", srcdir());
	size_t n;
	char *text = tu_read(path, &n);
	if (!text) {
		fprintf(stderr, "%s absent: golden comparison skipped\n", path);
		return;
	}
	model m = { 0 };
	char current[256] = "";
	vision_cpu *v = NULL;
	int checked = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_object *g;
		qerr e = { 0 };
		ck_assert_int_eq(jsonx_parse(line, strlen(line), "golden", &g, &e), 0);
		json_object *vis = jsonx_member(g, "vision");
		const char *cfg = json_object_get_string(jsonx_member(g, "config"));
		const char *prompt = json_object_get_string(jsonx_member(g, "prompt"));
		if (!vis) {
			json_object_put(g);
			continue;
		}
		if (strcmp(cfg, current)) {
			if (v) {
				vision_cpu_free(v);
				model_drop(&m);
			}
			char cpath[1024];
			snprintf(cpath, sizeof(cpath), "%s/tests/data/model-golden/configs/%s.json",
				 srcdir(), cfg);
			model_make(&m, NULL, cpath, ST_F32);
			ck_assert_msg(vision_cpu_new(&m.mc, &m.w, 0, &v, &e) == 0, "%s", e.msg);
			snprintf(current, sizeof(current), "%s", cfg);
		}
		int D = m.mc.vision.out_hidden_size, nds = m.mc.vision.n_deepstack;
		double ds_ss[MODEL_MAX_DEEPSTACK] = { 0 };
		float *emb;
		size_t n_tok;
		encode_prompt(v, &m, prompt, &emb, &n_tok, ds_ss);
		ck_assert_int_eq((int64_t)n_tok, json_object_get_int64(jsonx_member(vis, "n_tokens")));
		json_object *head = jsonx_member(vis, "embeds_head"), *dsn = jsonx_member(vis, "deepstack_norms");
		ck_assert_int_eq(json_object_array_length(head), 16);
		ck_assert_int_eq((int)json_object_array_length(dsn), nds);
		double num = 0, den = 0, ss = 0;
		for (int i = 0; i < 16; i++) {
			double w = json_object_get_double(json_object_array_get_idx(head, i));
			num += (emb[i] - w) * (emb[i] - w);
			den += w * w;
		}
		for (size_t i = 0; i < n_tok * D; i++)
			ss += (double)emb[i] * emb[i];
		double want_norm = json_object_get_double(jsonx_member(vis, "embeds_norm"));
		double head_rel = sqrt(num / den), norm_rel = fabs(sqrt(ss) - want_norm) / want_norm;
		double ds_rel = 0;
		for (int k = 0; k < nds; k++) {
			double w = json_object_get_double(json_object_array_get_idx(dsn, k));
			ds_rel = fmax(ds_rel, fabs(sqrt(ds_ss[k]) - w) / w);
		}
		fprintf(stderr, "golden %s/%s: %zu tokens, head rel %.3g, norm rel %.3g, deepstack "
			"norm rel %.3g\n", cfg, prompt, n_tok, head_rel, norm_rel, ds_rel);
		ck_assert_msg(head_rel <= 1e-4, "%s/%s: embeds_head rel %g", cfg, prompt, head_rel);
		ck_assert_msg(norm_rel <= 1e-5, "%s/%s: embeds_norm rel %g", cfg, prompt, norm_rel);
		ck_assert_msg(ds_rel <= 1e-5, "%s/%s: deepstack_norms rel %g", cfg, prompt, ds_rel);
		checked++;
		free(emb);
		json_object_put(g);
	}
	if (v) {
		vision_cpu_free(v);
		model_drop(&m);
	}
	free(text);
	ck_assert_int_gt(checked, 0);
}
END_TEST

static Suite *vision_cpu_suite(void)
{
	Suite *s = suite_create("vision_cpu");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_vision_cpu_pos_embed_bilinear);
	tcase_add_test(tc, test_vision_cpu_rope_tables);
	tcase_add_test(tc, test_vision_cpu_matches_reference_tiny);
	tcase_add_test(tc, test_vision_cpu_matches_reference_hd48);
	tcase_add_test(tc, test_vision_cpu_slices_are_independent);
	tcase_add_test(tc, test_vision_cpu_rejects_bad_input);
	tcase_add_test(tc, test_vision_cpu_matches_transformers_golden);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(vision_cpu_suite());
}
