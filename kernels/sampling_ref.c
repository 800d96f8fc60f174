/*
 * sampling reference: the rules of sampling.h written out plainly, one row at a time: the values
 * after the mask and the penalties in a copy of the row, weights per id, top_k by a sort of the
 * values, top_p by a sort of (weight, id), the draw by a walk in id order, masses as exact
 * uint64. Logprobs in double (exp/log of the raw logits), the top list by insertion.
 *
 * The weight function is sampler.c's block_weights for one lane, operation for operation (no
 * fused multiply-add: x86-64 without -mfma has none to fuse into), so weights are bit-identical
 * to sampler.c's and to the kernel's (which spells each operation with __f*_rn).
 */
#include "sampling.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXED_ONE 0x1p44               /* W = floor(w·2^44) */

void kn_sample_row_init(kn_sample_row *r, double temperature, double top_p, int32_t top_k,
			double min_p, double repetition_penalty, double presence_penalty,
			double frequency_penalty)
{
	memset(r, 0, sizeof(*r));
	r->temperature = temperature;
	r->top_p = top_p;
	r->top_k = top_k;
	r->min_p = min_p;
	r->log_min_p = min_p > 0 ? log(min_p) : -INFINITY;
	r->repetition_penalty = (float)repetition_penalty;
	r->presence_penalty = (float)presence_penalty;
	r->frequency_penalty = (float)frequency_penalty;
	r->logprobs = -1;
}

static void *ref_alloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "<2>[sampling] out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

static float bf16_value(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* sampler.c's weight of one logit: 2^((x - m)·c) where x ≥ lo and (x - m)·c ≥ -125, else 0. */
static float weight(float x, float m, float c, float lo)
{
	float t = (x - m) * c;
	int ok = t >= -125.0f && x >= lo;
	if (!(t > -125.0f))
		t = -125.0f;
	float k = (t + 12582912.0f) - 12582912.0f;
	float f = t - k;
	float q = 1.535336188319500e-4f;
	q = q * f + 1.339887440266574e-3f;
	q = q * f + 9.618437357674640e-3f;
	q = q * f + 5.550332471162809e-2f;
	q = q * f + 2.402264791363012e-1f;
	q = q * f + 6.931472028550421e-1f;
	q = q * f + 1.0f;
	int32_t e = ((int32_t)k + 127) << 23;
	float s;
	memcpy(&s, &e, sizeof(s));
	return ok ? q * s : 0.0f;
}

static uint64_t fixed_mass(float w)
{
	return (uint64_t)((double)w * FIXED_ONE);
}

static float float_at_least(double x)
{
	float f = (float)x;
	if ((double)f < x)
		f = nextafterf(f, INFINITY);
	return f;
}

static int cmp_desc(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x > y ? -1 : x < y;
}

typedef struct wid {
	float w;
	int32_t id;
} wid;

static int cmp_wid(const void *a, const void *b)
{
	const wid *x = a, *y = b;
	if (x->w != y->w)
		return x->w > y->w ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The first id holding the max of l (NaN ignored); 0 when every value is -inf or NaN. */
static int32_t first_max(const float *l, int V, float *max)
{
	float m = -INFINITY;
	int32_t id = 0;
	for (int i = 0; i < V; i++)
		if (l[i] > m) {
			m = l[i];
			id = i;
		}
	*max = m;
	return id;
}

/* The values sampled from: mask, then penalties (sampler.c's mask_stops, apply_penalties). */
static void row_values(float *v, const float *x, const kn_sample_row *r, const kn_sample_pen *pen,
		       const int32_t *mask, int V)
{
	memcpy(v, x, (size_t)V * sizeof(float));
	for (int i = 0; i < r->mask_count; i++) {
		int32_t id = mask[r->mask_start + i];
		if (id >= 0 && id < V)
			v[id] = -INFINITY;
	}
	float rp = r->repetition_penalty, f = r->frequency_penalty, pr = r->presence_penalty;
	int fp = f != 0 || pr != 0;
	for (int i = 0; i < r->pen_count; i++) {
		kn_sample_pen e = pen[r->pen_start + i];
		if (e.id < 0 || e.id >= V)
			continue;
		float y = v[e.id];
		y = y > 0 ? y / rp : y * rp;
		if (fp && e.count > 0) {
			y -= f * (float)e.count;
			y -= pr;
		}
		v[e.id] = y;
	}
}

/* The random path of one row (temperature ≥ eps, m = max v finite). */
static int32_t draw_row(const float *v, float m, const kn_sample_row *r, int V, double *draw_margin,
			double *cut_margin)
{
	double T = r->temperature;
	float c = (float)(M_LOG2E / T);
	if (!(c >= FLT_MIN))
		c = FLT_MIN;
	float lo = r->min_p > 0 ? float_at_least((double)m + T * r->log_min_p) : -INFINITY;

	int topk = r->top_k > 0 && r->top_k < V;
	float kth = -INFINITY;
	float *sel = ref_alloc((size_t)V * sizeof(float));
	if (topk) {
		size_t n = 0;
		for (int i = 0; i < V; i++)
			if (!isnan(v[i]))
				sel[n++] = v[i];
		if (n > (size_t)r->top_k) {
			qsort(sel, n, sizeof(float), cmp_desc);
			kth = sel[r->top_k - 1];
		} else {
			topk = 0;
		}
	}
	float *w = sel;   /* reused: the weights of S, 0 outside it */
	uint64_t Z = 0;
	for (int i = 0; i < V; i++) {
		float y = weight(v[i], m, c, lo);
		w[i] = y > 0 && (!topk || v[i] >= kth) ? y : 0;
		Z += fixed_mass(w[i]);
	}

	wid cut = { 0, -1 };   /* kept: w > cut.w, or w == cut.w and id ≤ cut.id */
	*cut_margin = 1;
	if (r->top_p < 1) {
		wid *a = ref_alloc((size_t)V * sizeof(wid));
		size_t n = 0;
		for (int i = 0; i < V; i++)
			if (w[i] > 0)
				a[n++] = (wid){ w[i], i };
		qsort(a, n, sizeof(wid), cmp_wid);
		double tr = r->top_p * (double)Z;
		uint64_t target = (uint64_t)ceil(tr);
		target = target < Z ? target : Z;
		uint64_t run = 0;
		for (size_t i = 0; i < n; i++) {
			uint64_t before = run;
			run += fixed_mass(a[i].w);
			if (run >= target) {
				cut = a[i];
				double d0 = fabs(tr - (double)before), d1 = fabs((double)run - tr);
				*cut_margin = (d0 < d1 ? d0 : d1) / (double)Z;
				break;
			}
		}
		free(a);
	}

	uint64_t Zk = 0;
	for (int i = 0; i < V; i++) {
		if (w[i] > cut.w || (w[i] == cut.w && i <= cut.id))
			Zk += fixed_mass(w[i]);
		else
			w[i] = 0;
	}
	uint64_t u53 = (uint64_t)(r->u * 0x1p53);
	uint64_t t = (uint64_t)(((unsigned __int128)u53 * Zk) >> 53);
	double tr = r->u * (double)Zk;
	uint64_t run = 0;
	int32_t pick = -1;
	for (int i = 0; i < V; i++) {
		uint64_t before = run;
		run += fixed_mass(w[i]);
		if (run > t) {
			pick = i;
			double d0 = fabs(tr - (double)before), d1 = fabs((double)run - tr);
			*draw_margin = (d0 < d1 ? d0 : d1) / (double)Zk;
			break;
		}
	}
	free(sel);
	return pick;
}

/* Raw logprobs: top list (by insertion: value desc, NaN as -inf, ties lower id) and the log
 * normaliser. */
typedef struct rawdist {
	double m, lnz, n_inf;
	int V;
} rawdist;

static double raw_logprob(const rawdist *d, float x)
{
	if (isnan(x))
		x = -INFINITY;
	if (isfinite(d->m))
		return (double)x - d->m - d->lnz;
	if (d->m > 0)
		return x == INFINITY ? -log(d->n_inf) : -INFINITY;
	return -log((double)d->V);
}

static void raw_dist(rawdist *d, const float *x, int V)
{
	float m;
	first_max(x, V, &m);
	*d = (rawdist){ .m = m, .V = V };
	if (isfinite(m)) {
		double s = 0;
		for (int i = 0; i < V; i++)
			if (!isnan(x[i]))
				s += exp((double)x[i] - m);
		d->lnz = log(s);
	} else if (m > 0) {
		for (int i = 0; i < V; i++)
			d->n_inf += x[i] == INFINITY;
	}
}

static void raw_top(int32_t *ids, float *lps, const rawdist *d, const float *x, int V, int k)
{
	float val[KN_SAMPLE_MAX_LOGPROBS];
	int n = 0;
	for (int i = 0; i < V; i++) {
		float y = isnan(x[i]) ? -INFINITY : x[i];
		if (n == k && !(y > val[k - 1]))
			continue;
		int j = n < k ? n++ : k - 1;
		for (; j > 0 && val[j - 1] < y; j--) {
			val[j] = val[j - 1];
			ids[j] = ids[j - 1];
		}
		val[j] = y;
		ids[j] = i;
	}
	for (int j = 0; j < n; j++)
		lps[j] = (float)raw_logprob(d, val[j]);
}

static int32_t sample_row(int32_t *top_ids, float *top_lps, float *lp, const uint16_t *logits,
			  const kn_sample_row *r, const kn_sample_pen *pen, const int32_t *mask,
			  int V, double *draw_margin, double *cut_margin)
{
	float *x = ref_alloc((size_t)V * sizeof(float)), *v = ref_alloc((size_t)V * sizeof(float));
	for (int i = 0; i < V; i++)
		x[i] = bf16_value(logits[i]);
	row_values(v, x, r, pen, mask, V);
	*draw_margin = 1;
	*cut_margin = 1;
	float m, rm;
	int32_t id = first_max(v, V, &m), raw_id = first_max(x, V, &rm);
	if (m == -INFINITY)
		id = raw_id;
	else if (r->temperature >= KN_SAMPLE_GREEDY_EPS && m != INFINITY)
		id = draw_row(v, m, r, V, draw_margin, cut_margin);
	if (r->logprobs >= 0) {
		rawdist d;
		raw_dist(&d, x, V);
		if (lp)
			*lp = (float)raw_logprob(&d, x[id]);
		if (r->logprobs > 0 && top_ids)
			raw_top(top_ids, top_lps, &d, x, V, r->logprobs < V ? r->logprobs : V);
	}
	free(x);
	free(v);
	return id;
}

void kn_sample_ref(int32_t *ids, float *logprob, int32_t *top_ids, float *top_logprobs,
		   const uint16_t *logits, const kn_sample_row *rows, const kn_sample_pen *pen,
		   const int32_t *mask, int B, int V)
{
	for (int b = 0; b < B; b++) {
		double dm, cm;
		size_t at = (size_t)b * KN_SAMPLE_MAX_LOGPROBS;
		ids[b] = sample_row(top_ids ? top_ids + at : NULL, top_logprobs ? top_logprobs + at : NULL,
				    logprob ? logprob + b : NULL, logits + (size_t)b * V, &rows[b], pen,
				    mask, V, &dm, &cm);
	}
}

int32_t kn_sample_ref_margins(const uint16_t *logits, const kn_sample_row *row,
			      const kn_sample_pen *pen, const int32_t *mask, int V,
			      double *draw_margin, double *cut_margin)
{
	kn_sample_row r = *row;
	r.logprobs = -1;
	return sample_row(NULL, NULL, NULL, logits, &r, pen, mask, V, draw_margin, cut_margin);
}
