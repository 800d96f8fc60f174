/*
 * Tests of the sampler against vLLM V1's semantics (sampler.h), each against something computed
 * here in double from the definition:
 *   - greedy: the arg max, lowest id on ties, no draw taken;
 *   - seeds: the same (seed, index) repeats its draws whatever else runs; index 1 differs; the
 *     state is splitmix64 of seed + index;
 *   - distributions: chi-square of 100k seeded draws against softmax(l/T) after min_p, top_k and
 *     top_p (a plain sort-based reference), with a p < 1e-6 critical value: deterministic given
 *     the seeds, yet loose enough to hold for any correct sampler;
 *   - the kept set at scale (V of thousands, not a multiple of the block): draws never leave it;
 *   - penalties: a logit's exact value after them, pinned by a greedy probe (a higher id set to
 *     the expected value loses the tie; set one float above, it wins);
 *   - min_tokens, ignore_eos, stop ids; logprobs of the raw logits; parameter checks; -inf, NaN
 *     and +inf logits.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "testutil.h"

/* ---- helpers ---- */

static sampling_params plain(void)
{
	return (sampling_params){ .temperature = 1, .top_p = 1, .repetition_penalty = 1,
				  .has_seed = true, .seed = 1234, .logprobs = -1 };
}

static uint64_t trng = 0x9e3779b97f4a7c15ull;

/* Test-side random numbers (xorshift64*), independent of the sampler's. */
static double tuniform(void)
{
	trng ^= trng >> 12;
	trng ^= trng << 25;
	trng ^= trng >> 27;
	return (double)((trng * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
}

static double tnormal(void)
{
	double u = tuniform(), v = tuniform();
	return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static float *random_logits(int V, double sigma, uint64_t seed)
{
	trng = seed * 0x9e3779b97f4a7c15ull + 1;
	float *l = malloc((size_t)V * sizeof(float));
	for (int i = 0; i < V; i++)
		l[i] = (float)(sigma * tnormal());
	return l;
}

/* One call on a copy of logits (the sampler writes into them). */
static int32_t sample_copy(const sampling_params *p, sampler_state *s, const float *logits, int V,
			   sampler_scratch *sc, sampler_logprobs *lp)
{
	float *l = malloc((size_t)V * sizeof(float));
	memcpy(l, logits, (size_t)V * sizeof(float));
	int32_t id = sampler_sample(p, s, l, V, sc, lp);
	free(l);
	ck_assert_int_ge(id, 0);
	ck_assert_int_lt(id, V);
	return id;
}

/* n draws of one seeded sequence into counts (V). */
static void draw_counts(const sampling_params *p, const float *logits, int V, int n, long *counts)
{
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	sampler_state_init(&s, p, 0, NULL, 0);
	float *l = malloc((size_t)V * sizeof(float));
	memset(counts, 0, (size_t)V * sizeof(long));
	for (int i = 0; i < n; i++) {
		memcpy(l, logits, (size_t)V * sizeof(float));
		int32_t id = sampler_sample(p, &s, l, V, sc, NULL);
		ck_assert_int_ge(id, 0);
		ck_assert_int_lt(id, V);
		counts[id]++;
	}
	free(l);
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
}

typedef struct ord {
	double x;
	int id;
} ord;

static int ord_desc(const void *a, const void *b)
{
	const ord *x = a, *y = b;
	if (x->x != y->x)
		return x->x > y->x ? -1 : 1;
	return x->id - y->id;
}

/* The reference: the distribution vLLM samples from (no penalties), in double with full sorts:
 * softmax(l/T), min_p, top_k (ties with the k-th kept), top_p (heavier first, ties lower id first,
 * keep while the mass before is < top_p), renormalised. amb[i] (if not NULL) is set where the
 * keep decision is within 1e-5 of its bound (either outcome is right then). */
static void ref_dist(const sampling_params *p, const float *l, int V, double *prob, bool *amb)
{
	double T = p->temperature, mx = -INFINITY;
	double *x = malloc((size_t)V * sizeof(double));
	bool *keep = malloc((size_t)V);
	ord *o = malloc((size_t)V * sizeof(ord));
	for (int i = 0; i < V; i++) {
		x[i] = isnan(l[i]) ? -INFINITY : l[i] / T;
		mx = x[i] > mx ? x[i] : mx;
		if (amb)
			amb[i] = false;
	}
	for (int i = 0; i < V; i++) {
		keep[i] = x[i] > -INFINITY;
		if (p->min_p > 0) {
			double r = exp(x[i] - mx);
			keep[i] = keep[i] && r >= p->min_p;
			if (amb && fabs(r - p->min_p) <= 1e-5 * p->min_p)
				amb[i] = true;
		}
	}
	if (p->top_k > 0 && p->top_k < V) {
		for (int i = 0; i < V; i++)
			o[i] = (ord){ keep[i] ? x[i] : -INFINITY, i };
		qsort(o, (size_t)V, sizeof(ord), ord_desc);
		double kth = o[p->top_k - 1].x;
		for (int i = 0; i < V; i++)
			keep[i] = keep[i] && x[i] >= kth;
	}
	if (p->top_p < 1) {
		double z = 0;
		int n = 0;
		for (int i = 0; i < V; i++)
			if (keep[i]) {
				z += exp(x[i] - mx);
				o[n++] = (ord){ x[i], i };
			}
		qsort(o, (size_t)n, sizeof(ord), ord_desc);
		double cum = 0;
		for (int j = 0; j < n; j++) {
			if (amb && fabs(cum - p->top_p * z) <= 1e-5 * z)
				amb[o[j].id] = true;
			if (cum >= p->top_p * z)
				keep[o[j].id] = false;
			cum += exp(o[j].x - mx);
		}
	}
	double z = 0;
	for (int i = 0; i < V; i++)
		z += prob[i] = keep[i] ? exp(x[i] - mx) : 0;
	for (int i = 0; i < V; i++)
		prob[i] /= z;
	free(x);
	free(keep);
	free(o);
}

/* Chi-square of counts (n draws) against prob: no draw where prob is 0, and the statistic under
 * the p = 1e-6 critical value (Wilson-Hilferty). */
static void assert_fits(const long *counts, const double *prob, int V, long n)
{
	double chi = 0;
	int cells = 0;
	for (int i = 0; i < V; i++) {
		if (prob[i] == 0) {
			ck_assert_msg(counts[i] == 0, "id %d drawn %ld times but has probability 0", i,
				      counts[i]);
			continue;
		}
		double e = prob[i] * (double)n, d = (double)counts[i] - e;
		chi += d * d / e;
		cells++;
	}
	if (cells < 2)
		return;
	double df = cells - 1, z = 4.7534, h = 2 / (9 * df);
	double crit = df * pow(1 - h + z * sqrt(h), 3);
	ck_assert_msg(chi < crit, "chi-square %.2f over %d cells exceeds %.2f", chi, cells, crit);
}

/* Draws from p on logits against the reference distribution. */
static void assert_distribution(const sampling_params *p, const float *logits, int V, long n)
{
	long *counts = malloc((size_t)V * sizeof(long));
	double *prob = malloc((size_t)V * sizeof(double));
	draw_counts(p, logits, V, (int)n, counts);
	ref_dist(p, logits, V, prob, NULL);
	assert_fits(counts, prob, V, n);
	free(counts);
	free(prob);
}

/* Draws under p on logits never leave the reference's kept set, and each token of reference
 * probability ≥ 3% shows up. */
static void assert_kept_set(const sampling_params *p, const float *l, int V, int n, const char *what)
{
	double *prob = malloc((size_t)V * sizeof(double));
	bool *amb = malloc((size_t)V);
	long *counts = malloc((size_t)V * sizeof(long));
	ref_dist(p, l, V, prob, amb);
	draw_counts(p, l, V, n, counts);
	for (int i = 0; i < V; i++) {
		ck_assert_msg(!counts[i] || prob[i] > 0 || amb[i], "%s: id %d drawn outside the kept "
			      "set", what, i);
		if (prob[i] >= 0.03)
			ck_assert_msg(counts[i] > 0, "%s: id %d (p %.3f) never drawn", what, i,
				      prob[i]);
	}
	free(prob);
	free(amb);
	free(counts);
}

/* n seeded draws under p and q are the same sequence. */
static void assert_same_draws(const sampling_params *p, const sampling_params *q, const float *logits,
			      int V, int n)
{
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state a, b;
	sampler_state_init(&a, p, 0, NULL, 0);
	sampler_state_init(&b, q, 0, NULL, 0);
	for (int i = 0; i < n; i++) {
		int32_t x = sample_copy(p, &a, logits, V, sc, NULL);
		ck_assert_int_eq(x, sample_copy(q, &b, logits, V, sc, NULL));
	}
	sampler_state_deinit(&a);
	sampler_state_deinit(&b);
	sampler_scratch_free(sc);
}

/* After the penalties of s under p, logit `id` of logits (V ≥ 3; the last id is free for a probe
 * and must not be penalised) is exactly `want`: every other logit is pushed far down, then a
 * probe at the last id ties with want (the lower id wins the tie) and, one float higher, wins. */
static void assert_logit_after(const sampling_params *p, sampler_state *s, const float *logits, int V,
			       int32_t id, float want)
{
	sampling_params g = *p;
	g.temperature = 0;
	float *l = malloc((size_t)V * sizeof(float));
	sampler_scratch *sc = sampler_scratch_new(V);
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < V; i++)
			l[i] = i == id ? logits[i] : -1e4f;
		l[V - 1] = k == 0 ? want : nextafterf(want, INFINITY);
		int32_t got = sampler_sample(&g, s, l, V, sc, NULL);
		ck_assert_msg(got == (k == 0 ? id : V - 1), "logit %d after penalties: expected exactly "
			      "%.9g (probe %s: got id %d)", id, (double)want, k ? "above" : "equal", got);
	}
	free(l);
	sampler_scratch_free(sc);
}

static uint64_t ref_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- greedy ---- */

START_TEST(test_sampler_greedy_arg_max_lowest_id_on_ties)
{
	sampling_params p = plain();
	p.temperature = 0;
	sampler_scratch *sc = sampler_scratch_new(4);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	const float a[] = { 1, 3, 2, 3 };
	ck_assert_int_eq(sample_copy(&p, &s, a, 4, sc, NULL), 1);
	const float one[] = { -5 };
	ck_assert_int_eq(sample_copy(&p, &s, one, 1, sc, NULL), 0);
	/* sizes around the vector and block widths, the max placed everywhere */
	const int sizes[] = { 2, 3, 7, 8, 9, 31, 33, 63, 64, 65, 130, 1000, 151936 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int V = sizes[k];
		float *l = random_logits(V, 2, (uint64_t)V);
		for (int at = 0; at < V; at += V > 200 ? V / 7 + 1 : 1) {
			float keep = l[at];
			l[at] = 100;
			ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), at);
			/* a tie further on loses; one before wins */
			if (at + 1 < V) {
				float t = l[V - 1];
				l[V - 1] = 100;
				ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), at);
				l[V - 1] = t;
			}
			l[at] = keep;
		}
		free(l);
	}
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
}
END_TEST

START_TEST(test_sampler_greedy_ignores_rng)
{
	sampling_params p = plain();
	p.temperature = 1e-6;                 /* under SAMPLER_GREEDY_EPS: greedy */
	p.top_k = 3;
	p.top_p = 0.5;
	sampler_scratch *sc = sampler_scratch_new(1000);
	float *l = random_logits(1000, 1, 5);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	uint64_t before[4];
	memcpy(before, s.rng, sizeof(before));
	float best = -INFINITY;
	int32_t arg = 0;
	for (int i = 0; i < 1000; i++)
		if (l[i] > best) {
			best = l[i];
			arg = i;
		}
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(sample_copy(&p, &s, l, 1000, sc, NULL), arg);
	ck_assert_mem_eq(before, s.rng, sizeof(before));
	/* without a seed too: the same arg max */
	p.has_seed = false;
	sampler_state u;
	sampler_state_init(&u, &p, 0, NULL, 0);
	ck_assert_int_eq(sample_copy(&p, &u, l, 1000, sc, NULL), arg);
	sampler_state_deinit(&u);
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
	free(l);
}
END_TEST

/* ---- seeds ---- */

START_TEST(test_sampler_seed_is_splitmix_of_seed_plus_index)
{
	sampling_params p = plain();
	p.seed = 42;
	sampler_state s;
	sampler_state_init(&s, &p, 3, NULL, 0);
	uint64_t x = 45;
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(s.rng[i], ref_splitmix64(&x));
	ck_assert_ptr_null(s.prompt_ids);
	ck_assert_ptr_null(s.out_ids);
	ck_assert_int_eq(s.n_out, 0);
	sampler_state_deinit(&s);
	/* unseeded states differ from each other */
	p.has_seed = false;
	sampler_state a, b;
	sampler_state_init(&a, &p, 0, NULL, 0);
	sampler_state_init(&b, &p, 0, NULL, 0);
	ck_assert(memcmp(a.rng, b.rng, sizeof(a.rng)) != 0);
	sampler_state_deinit(&a);
	sampler_state_deinit(&b);
}
END_TEST

START_TEST(test_sampler_seeded_draws_repeat_whatever_runs_beside)
{
	const int V = 5000, n = 300;
	float *l = random_logits(V, 1.5, 9);
	sampling_params p = plain();
	p.seed = 77;
	p.top_p = 0.95;
	int32_t *first = malloc(n * sizeof(int32_t));
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	for (int i = 0; i < n; i++)
		first[i] = sample_copy(&p, &s, l, V, sc, NULL);
	sampler_state_deinit(&s);

	/* again, interleaved with another sequence (other params, its own unseeded state) on the
	 * same scratch, and with a second scratch */
	sampling_params q = plain();
	q.has_seed = false;
	q.top_k = 40;
	q.repetition_penalty = 1.3;
	sampler_scratch *sc2 = sampler_scratch_new(V);
	sampler_state a, other;
	sampler_state_init(&a, &p, 0, NULL, 0);
	const int32_t prompt[] = { 1, 2, 3 };
	sampler_state_init(&other, &q, 0, prompt, 3);
	int same = 0;
	for (int i = 0; i < n; i++) {
		sampler_state_accept(&other, &q, sample_copy(&q, &other, l, V, sc, NULL));
		ck_assert_int_eq(sample_copy(&p, &a, l, V, i % 2 ? sc : sc2, NULL), first[i]);
	}
	sampler_state_deinit(&a);

	/* index 1 is another sequence */
	sampler_state_init(&a, &p, 1, NULL, 0);
	for (int i = 0; i < n; i++)
		same += sample_copy(&p, &a, l, V, sc, NULL) == first[i];
	ck_assert_int_lt(same, n / 2);
	sampler_state_deinit(&a);
	sampler_state_deinit(&other);
	sampler_scratch_free(sc);
	sampler_scratch_free(sc2);
	free(first);
	free(l);
}
END_TEST

/* ---- distributions ---- */

START_TEST(test_sampler_chi_square_matches_softmax)
{
	const float l[10] = { 1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.5f, 1.2f, 0.7f, -2.5f, 1.9f };
	sampling_params p = plain();
	p.seed = 2024;
	for (int k = 0; k < 3; k++) {
		p.temperature = k == 0 ? 1.0 : k == 1 ? 0.7 : 2.5;
		assert_distribution(&p, l, 10, 100000);
	}
	/* a huge temperature is uniform (1/T underflows a float) */
	double uni[10];
	long cu[10];
	for (int i = 0; i < 10; i++)
		uni[i] = 0.1;
	p.temperature = 1e300;
	draw_counts(&p, l, 10, 100000, cu);
	assert_fits(cu, uni, 10, 100000);
	/* the exact softmax at T = 0.7, written out */
	double prob[10], z = 0;
	for (int i = 0; i < 10; i++)
		z += prob[i] = exp(l[i] / 0.7);
	for (int i = 0; i < 10; i++)
		prob[i] /= z;
	long counts[10];
	p.temperature = 0.7;
	draw_counts(&p, l, 10, 100000, counts);
	assert_fits(counts, prob, 10, 100000);
}
END_TEST

START_TEST(test_sampler_top_k_one_is_greedy)
{
	const int V = 7000;
	sampling_params p = plain(), g = plain();
	p.top_k = 1;
	p.temperature = 1.7;
	g.temperature = 0;
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	for (uint64_t seed = 1; seed <= 20; seed++) {
		float *l = random_logits(V, 3, seed);
		int32_t want = sample_copy(&g, &s, l, V, sc, NULL);
		ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), want);
		free(l);
	}
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
}
END_TEST

START_TEST(test_sampler_top_k_at_least_vocab_is_no_op)
{
	float *l = random_logits(10, 1, 3);
	sampling_params p = plain(), q = plain();
	q.top_k = 10;
	assert_same_draws(&p, &q, l, 10, 2000);
	q.top_k = 1000000;
	assert_same_draws(&p, &q, l, 10, 2000);
	q.top_k = -1;
	assert_same_draws(&p, &q, l, 10, 2000);
	free(l);
}
END_TEST

START_TEST(test_sampler_top_k_keeps_ties_with_the_kth)
{
	const float l[6] = { 3, 1, 2, 2, 0, 2 };
	sampling_params p = plain();
	p.top_k = 2;                          /* the 2nd largest is 2: ids 2, 3, 5 stay with 0 */
	long counts[6];
	draw_counts(&p, l, 6, 20000, counts);
	ck_assert(counts[0] && counts[2] && counts[3] && counts[5]);
	ck_assert(!counts[1] && !counts[4]);
	assert_distribution(&p, l, 6, 100000);
}
END_TEST

START_TEST(test_sampler_top_p_tiny_is_arg_max)
{
	const int V = 3000;
	float *l = random_logits(V, 1, 4);
	sampling_params p = plain(), g = plain();
	p.top_p = 1e-9;
	g.temperature = 0;
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	int32_t want = sample_copy(&g, &s, l, V, sc, NULL);
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), want);
	/* tied maxima: the lower id, as greedy */
	l[100] = l[2000] = 50;
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), 100);
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
	free(l);
}
END_TEST

START_TEST(test_sampler_top_p_one_is_no_op)
{
	float *l = random_logits(300, 2, 6);
	sampling_params p = plain(), q = plain();
	p.temperature = q.temperature = 0.8;
	q.top_p = 1;
	assert_same_draws(&p, &q, l, 300, 3000);
	free(l);
}
END_TEST

START_TEST(test_sampler_top_p_distribution)
{
	/* mass (T = 1): 0.4, 0.25, 0.15, 0.1, 0.06, 0.04 — top_p 0.75 keeps the first three (0.65
	 * lies before the third, 0.8 before the fourth); top_p 0.5 keeps two */
	const double m[6] = { 0.4, 0.25, 0.15, 0.1, 0.06, 0.04 };
	float l[6];
	for (int i = 0; i < 6; i++)
		l[i] = (float)log(m[i]);
	sampling_params p = plain();
	p.top_p = 0.75;
	long counts[6];
	draw_counts(&p, l, 6, 30000, counts);
	ck_assert(counts[0] && counts[1] && counts[2] && !counts[3] && !counts[4] && !counts[5]);
	assert_distribution(&p, l, 6, 100000);
	p.top_p = 0.5;
	draw_counts(&p, l, 6, 30000, counts);
	ck_assert(counts[0] && counts[1] && !counts[2]);
}
END_TEST

START_TEST(test_sampler_min_p_one_keeps_only_the_max_and_its_ties)
{
	const float l[8] = { 0.5f, 2, 1.9999f, -1, 2, 0, 1, 2 };
	sampling_params p = plain();
	p.min_p = 1;
	p.temperature = 0.3;
	long counts[8];
	draw_counts(&p, l, 8, 30000, counts);
	for (int i = 0; i < 8; i++)
		ck_assert_msg((counts[i] > 0) == (l[i] == 2), "id %d drawn %ld times", i, counts[i]);
	assert_distribution(&p, l, 8, 60000);
}
END_TEST

START_TEST(test_sampler_min_p_edge)
{
	/* ratios to the max at T = 1: 1, 0.5·e^±0.002, 0.3; min_p 0.5 keeps the ratio just above */
	const float l[4] = { 0, (float)(log(0.5) + 2e-3), (float)(log(0.5) - 2e-3), (float)log(0.3) };
	sampling_params p = plain();
	p.min_p = 0.5;
	long counts[4];
	draw_counts(&p, l, 4, 30000, counts);
	ck_assert(counts[0] && counts[1] && !counts[2] && !counts[3]);
	assert_distribution(&p, l, 4, 100000);
	/* at T = 2 the ratios are square roots: 0.3 → 0.548 is kept, 0.5 → 0.707 too */
	p.temperature = 2;
	draw_counts(&p, l, 4, 30000, counts);
	ck_assert(counts[0] && counts[1] && counts[2] && counts[3]);
	assert_distribution(&p, l, 4, 100000);
	/* min_p 0 is off */
	sampling_params q = plain();
	p = plain();
	q.min_p = 0;
	assert_same_draws(&p, &q, l, 4, 1000);
}
END_TEST

START_TEST(test_sampler_top_k_top_p_distribution)
{
	const float l[12] = { 2.1f, -0.4f, 1.3f, 0.2f, 1.8f, -1.0f,
			      0.9f, 0.5f, 1.6f, -2.0f, 0.0f, 1.1f };
	sampling_params p = plain();
	p.temperature = 1.3;
	p.top_k = 6;                          /* ids 0, 4, 8, 2, 11, 6 */
	p.top_p = 0.8;
	p.seed = 99;
	double prob[12];
	ref_dist(&p, l, 12, prob, NULL);
	/* the reference keeps a strict subset of the top 6 here (the cut is not trivial) */
	int kept = 0;
	for (int i = 0; i < 12; i++)
		kept += prob[i] > 0;
	ck_assert_int_eq(kept, 5);
	ck_assert(prob[6] == 0 && prob[0] > 0 && prob[11] > 0);
	assert_distribution(&p, l, 12, 100000);
	/* with min_p as well */
	p.min_p = 0.45;
	assert_distribution(&p, l, 12, 100000);
}
END_TEST

/* Draws never leave the reference's kept set, at sizes where blocks and prefilters matter. */
START_TEST(test_sampler_filters_match_reference_at_scale)
{
	static const struct {
		int V;
		double sigma, T, top_p, min_p;
		int top_k, spikes;             /* spikes: that many logits at +12, +13, … */
	} cases[] = {
		{ 3001, 1, 1, 0.9, 0, 0, 0 },       { 3001, 3, 0.7, 0.5, 0, 0, 0 },
		{ 3001, 1, 1, 1, 0, 50, 0 },        { 3001, 2, 1.2, 0.8, 0, 20, 0 },
		{ 3001, 2, 0.5, 1, 0.01, 0, 0 },    { 3001, 2, 1, 0.95, 0.05, 100, 0 },
		{ 20000, 3, 1, 0.9, 0, 0, 0 },      { 20000, 3, 0.8, 0.7, 0, 40, 0 },
		{ 20000, 1, 1, 0.99, 0, 0, 0 },     { 20000, 1, 1, 1, 0, 5000, 0 },
		{ 20000, 1, 1, 0.95, 0, 8000, 0 },  { 777, 0.01, 1, 0.3, 0, 0, 0 },
		{ 777, 5, 3, 0.999, 0, 700, 0 },    { 151936, 1, 0.8, 0.9, 0, 0, 0 },
		{ 151936, 2, 0.8, 0.9, 0, 0, 5 },   { 151936, 3, 0.8, 0.9, 0.02, 0, 0 },
		{ 151936, 2, 0.7, 0.8, 0, 20, 3 },  { 151936, 2, 1, 0.999, 0, 0, 1 },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int V = cases[k].V;
		float *l = random_logits(V, cases[k].sigma, 100 + k);
		for (int j = 0; j < cases[k].spikes; j++)
			l[(j * 30011 + 17) % V] = 12.0f + (float)j;
		sampling_params p = plain();
		p.temperature = cases[k].T;
		p.top_p = cases[k].top_p;
		p.min_p = cases[k].min_p;
		p.top_k = cases[k].top_k;
		p.seed = k;
		char what[32];
		snprintf(what, sizeof(what), "case %zu", k);
		assert_kept_set(&p, l, V, V > 100000 ? 1500 : 3000, what);
		free(l);
	}
}
END_TEST

/* The top_p paths over the whole vocabulary: a sample that misleads the guess (every 16th token
 * heavy, the rest holding most of the mass), one token holding almost all of it (the block
 * bound decides), and equal logits (the cut falls among equals, lower ids first). */
START_TEST(test_sampler_top_p_guess_bound_and_ties)
{
	const int V = 20000;
	float *l = random_logits(V, 0.5, 31);
	for (int i = 0; i < V; i += 16)
		l[i] = 3;
	sampling_params p = plain();
	p.top_p = 0.9;
	assert_kept_set(&p, l, V, 3000, "misleading sample");
	free(l);

	l = random_logits(V, 2, 32);
	l[12345] = 25;
	p.top_p = 0.9;
	assert_kept_set(&p, l, V, 500, "one heavy token");
	l[777] = 24.5f;
	assert_kept_set(&p, l, V, 3000, "two heavy tokens");
	free(l);

	const int E = 1000;
	float *eq = calloc(E, sizeof(float));
	p.top_p = 0.5;                        /* the mass before id 500 is exactly 0.5: ids 0..499 */
	long *counts = malloc(E * sizeof(long));
	draw_counts(&p, eq, E, 20000, counts);
	for (int i = 0; i < E; i++)
		ck_assert_msg((counts[i] > 0) == (i < 500), "id %d drawn %ld times", i, counts[i]);
	p.top_p = 0.0105;                     /* 0.01 lies before id 10: ids 0..10 */
	draw_counts(&p, eq, E, 20000, counts);
	for (int i = 0; i < E; i++)
		ck_assert_msg((counts[i] > 0) == (i <= 10), "id %d drawn %ld times", i, counts[i]);
	/* small: sorted, not partitioned; 0.5 is reached exactly at id 4 */
	p.top_p = 0.5;
	draw_counts(&p, eq, 10, 20000, counts);
	for (int i = 0; i < 10; i++)
		ck_assert_msg((counts[i] > 0) == (i < 5), "id %d drawn %ld times", i, counts[i]);
	/* weights 1 and 1/2 exactly (T = log2 e makes them powers of two): 20 heavy tokens (ids
	 * 40..59) hold exactly half of the mass, so top_p 0.5 keeps just them; with top_k the cut
	 * is partitioned, the lighter ones first in id order */
	float two[60];
	for (int i = 0; i < 60; i++)
		two[i] = i < 40 ? -1 : 0;
	p.temperature = M_LOG2E;
	for (int k = 0; k < 2; k++) {
		p.top_k = k ? 59 : 0;
		draw_counts(&p, two, 60, 20000, counts);
		for (int i = 0; i < 60; i++)
			ck_assert_msg((counts[i] > 0) == (i >= 40), "top_k %d: id %d drawn %ld times",
				      p.top_k, i, counts[i]);
	}
	/* top_k among equals keeps them all (ties with the k-th) */
	p = plain();
	p.top_k = 10;
	draw_counts(&p, eq, E, 20000, counts);
	int seen = 0;
	for (int i = 0; i < E; i++)
		seen += counts[i] > 0;
	ck_assert_int_gt(seen, 990);
	free(counts);
	free(eq);
}
END_TEST

/* ---- penalties ---- */

START_TEST(test_sampler_repetition_penalty_prompt_and_output)
{
	const int V = 10;
	const float l[10] = { 2, -1, 3, -2, 1.5f, 0.7f, 0, 0, 0, 0 };
	sampling_params p = plain();
	p.repetition_penalty = 1.5;
	const float r = 1.5f;
	const int32_t prompt[] = { 0, 1, 0, 4 };
	sampler_state s;
	sampler_state_init(&s, &p, 0, prompt, 4);
	ck_assert_uint_eq(s.n_prompt_ids, 3);                   /* distinct: 0, 1, 4 */
	/* prompt ids: positive / r, negative · r; others unchanged */
	assert_logit_after(&p, &s, l, V, 0, 2 / r);
	assert_logit_after(&p, &s, l, V, 1, -1 * r);
	assert_logit_after(&p, &s, l, V, 2, 3);
	assert_logit_after(&p, &s, l, V, 3, -2);
	/* output ids join; an id in both is penalised once; counts do not matter */
	sampler_state_accept(&s, &p, 2);
	sampler_state_accept(&s, &p, 3);
	sampler_state_accept(&s, &p, 4);
	sampler_state_accept(&s, &p, 2);
	assert_logit_after(&p, &s, l, V, 2, 3 / r);
	assert_logit_after(&p, &s, l, V, 3, -2 * r);
	assert_logit_after(&p, &s, l, V, 4, 1.5f / r);
	assert_logit_after(&p, &s, l, V, 5, 0.7f);
	/* it flips a greedy choice: 2.5 (id 2, made before) / 1.5 falls under 2 (id 5, new) */
	sampling_params g = p;
	g.temperature = 0;
	sampler_scratch *sc = sampler_scratch_new(V);
	const float m[10] = { 0, 0, 2.5f, 0, 0, 2, 0, 0, 0, 0 };
	ck_assert_int_eq(sample_copy(&g, &s, m, V, sc, NULL), 5);
	g.repetition_penalty = 1;
	ck_assert_int_eq(sample_copy(&g, &s, m, V, sc, NULL), 2);
	sampler_scratch_free(sc);
	sampler_state_deinit(&s);
}
END_TEST

START_TEST(test_sampler_frequency_presence_output_only)
{
	const int V = 10;
	const float l[10] = { 2, -1, 3, -2, 1.5f, 0.7f, 0, 0, 0, 0 };
	sampling_params p = plain();
	p.frequency_penalty = 0.5;
	p.presence_penalty = 0.25;
	const int32_t prompt[] = { 0, 1 };
	sampler_state s;
	sampler_state_init(&s, &p, 0, prompt, 2);
	ck_assert_ptr_null(s.prompt_ids);     /* no repetition penalty: the prompt is not kept */
	ck_assert_ptr_nonnull(s.out_ids);
	/* nothing made yet: nothing changes, prompt ids included */
	assert_logit_after(&p, &s, l, V, 0, 2);
	assert_logit_after(&p, &s, l, V, 2, 3);
	sampler_state_accept(&s, &p, 2);
	assert_logit_after(&p, &s, l, V, 2, 3 - 0.5f - 0.25f);
	sampler_state_accept(&s, &p, 2);
	sampler_state_accept(&s, &p, 2);
	sampler_state_accept(&s, &p, 3);
	assert_logit_after(&p, &s, l, V, 2, (3 - 0.5f * 3) - 0.25f);
	assert_logit_after(&p, &s, l, V, 3, (-2 - 0.5f) - 0.25f);
	assert_logit_after(&p, &s, l, V, 0, 2);
	ck_assert_int_eq(s.n_out, 4);
	ck_assert_uint_eq(s.n_out_distinct, 2);
	/* negative penalties encourage */
	p.frequency_penalty = -1;
	p.presence_penalty = -2;
	assert_logit_after(&p, &s, l, V, 2, (3 + 1.0f * 3) + 2);
	sampler_state_deinit(&s);
}
END_TEST

START_TEST(test_sampler_all_penalties_together_and_table_growth)
{
	const int V = 5000;
	float *l = random_logits(V, 1, 8);
	sampling_params p = plain();
	p.repetition_penalty = 1.2;
	p.frequency_penalty = 0.3;
	p.presence_penalty = 0.1;
	int32_t prompt[200];
	for (int i = 0; i < 200; i++)
		prompt[i] = 2 * i;
	sampler_state s;
	sampler_state_init(&s, &p, 0, prompt, 200);
	/* 1500 distinct outputs (the table grows from 16), id 7 three more times */
	for (int i = 0; i < 1500; i++)
		sampler_state_accept(&s, &p, i);
	for (int i = 0; i < 3; i++)
		sampler_state_accept(&s, &p, 7);
	ck_assert_uint_eq(s.n_out_distinct, 1500);
	ck_assert_int_eq(s.n_out, 1503);
	ck_assert_uint_ge(s.cap, 3000);
	const float r = 1.2f, f = 0.3f, pr = 0.1f;
	int32_t ids[] = { 7, 8, 1499, 398, 1500, 4000 };
	for (size_t k = 0; k < sizeof(ids) / sizeof(ids[0]); k++) {
		int32_t id = ids[k];
		float x = l[id];
		bool in_prompt = id % 2 == 0 && id < 400, in_out = id < 1500;
		int cnt = id == 7 ? 4 : in_out;
		if (in_prompt || in_out)
			x = x > 0 ? x / r : x * r;
		if (in_out) {
			x -= f * (float)cnt;
			x -= pr;
		}
		assert_logit_after(&p, &s, l, V, id, x);
	}
	sampler_state_deinit(&s);
	free(l);
}
END_TEST

START_TEST(test_sampler_neutral_penalties_build_nothing)
{
	sampling_params p = plain();
	const int32_t prompt[] = { 1, 2, 3 };
	sampler_state s;
	sampler_state_init(&s, &p, 0, prompt, 3);
	ck_assert_ptr_null(s.prompt_ids);
	ck_assert_ptr_null(s.out_ids);
	ck_assert_ptr_null(s.out_counts);
	sampler_state_accept(&s, &p, 2);
	ck_assert_int_eq(s.n_out, 1);
	const float l[5] = { 0, 1, 2, 0.5f, 0 };
	assert_logit_after(&p, &s, l, 5, 2, 2);
	sampler_state_deinit(&s);
}
END_TEST

/* ---- min_tokens ---- */

START_TEST(test_sampler_min_tokens_masks_eos_and_stop_ids)
{
	const int V = 6;
	const float l[6] = { 0, 1, 5, 4, 3, 2 };     /* 2 > 3 > 4 > 5 > 1 > 0 */
	sampling_params p = plain();
	p.temperature = 0;
	p.min_tokens = 2;
	p.n_eos = 1;
	p.eos_ids[0] = 2;
	p.n_stop_ids = 1;
	p.stop_ids[0] = 3;
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), 4);
	sampler_state_accept(&s, &p, 4);
	ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), 4);
	sampler_state_accept(&s, &p, 4);
	ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), 2);
	sampler_state_deinit(&s);

	/* ignore_eos: eos ids are not masked, stop ids still are */
	p.ignore_eos = true;
	p.eos_ids[0] = 3;
	p.stop_ids[0] = 2;
	sampler_state_init(&s, &p, 0, NULL, 0);
	ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, NULL), 3);
	sampler_state_deinit(&s);

	/* in the random path too: the masked ids are never drawn */
	p = plain();
	p.min_tokens = 1;
	p.n_eos = 2;
	p.eos_ids[0] = 2;
	p.eos_ids[1] = 3;
	long counts[6];
	draw_counts(&p, l, V, 20000, counts);
	ck_assert(!counts[2] && !counts[3] && counts[4] && counts[0]);
	sampler_scratch_free(sc);
}
END_TEST

START_TEST(test_sampler_everything_masked_gives_raw_arg_max)
{
	const float l[3] = { 1, 3, 2 };
	sampling_params p = plain();
	p.min_tokens = 5;
	p.n_eos = 2;
	p.eos_ids[0] = 0;
	p.eos_ids[1] = 1;
	p.n_stop_ids = 1;
	p.stop_ids[0] = 2;
	p.logprobs = 1;
	sampler_scratch *sc = sampler_scratch_new(3);
	for (int greedy = 0; greedy < 2; greedy++) {
		p.temperature = greedy ? 0 : 1;
		sampler_state s;
		sampler_state_init(&s, &p, 0, NULL, 0);
		sampler_logprobs lp;
		ck_assert_int_eq(sample_copy(&p, &s, l, 3, sc, &lp), 1);
		double lse = log(exp(1.0) + exp(3.0) + exp(2.0));
		ck_assert_double_eq_tol(lp.logprob, 3 - lse, 1e-6);
		sampler_state_deinit(&s);
	}
	sampler_scratch_free(sc);
}
END_TEST

/* ---- logprobs ---- */

START_TEST(test_sampler_logprobs_are_raw_log_softmax)
{
	const int V = 1001;
	float *l = random_logits(V, 3, 12);
	l[500] = l[20] = l[900] = 12;           /* tied top three: ids 20, 500, 900 in that order */
	l[7] = 11.5f;
	sampling_params p = plain();
	p.logprobs = 5;
	p.temperature = 0.9;
	p.top_k = 10;
	p.repetition_penalty = 1.7;
	p.frequency_penalty = 1;
	p.min_tokens = 3;
	p.n_eos = 1;
	p.eos_ids[0] = 20;
	const int32_t prompt[] = { 500, 900, 7 };
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	sampler_state_init(&s, &p, 0, prompt, 3);
	sampler_state_accept(&s, &p, 500);
	double mx = 12, z = 0;
	for (int i = 0; i < V; i++)
		z += exp((double)l[i] - mx);
	double lse = mx + log(z);
	ord *o = malloc(V * sizeof(ord));
	for (int i = 0; i < V; i++)
		o[i] = (ord){ l[i], i };
	qsort(o, V, sizeof(ord), ord_desc);
	for (int step = 0; step < 50; step++) {
		sampler_logprobs lp;
		memset(&lp, 0x55, sizeof(lp));
		int32_t id = sample_copy(&p, &s, l, V, sc, &lp);
		ck_assert_int_eq(lp.id, id);
		ck_assert_double_eq_tol(lp.logprob, (double)l[id] - lse, 2e-6);
		ck_assert_int_eq(lp.n_top, 5);
		for (int j = 0; j < 5; j++) {
			ck_assert_int_eq(lp.top_ids[j], o[j].id);
			ck_assert_double_eq_tol(lp.top_logprobs[j], o[j].x - lse, 2e-6);
		}
	}
	ck_assert_int_eq(o[0].id, 20);
	ck_assert_int_eq(o[1].id, 500);
	ck_assert_int_eq(o[2].id, 900);
	ck_assert_int_eq(o[3].id, 7);

	/* 0: the chosen token only; -1: lp untouched; more than V: all of them */
	sampler_logprobs lp;
	p.logprobs = 0;
	int32_t id = sample_copy(&p, &s, l, V, sc, &lp);
	ck_assert_int_eq(lp.n_top, 0);
	ck_assert_int_eq(lp.id, id);
	ck_assert_double_eq_tol(lp.logprob, (double)l[id] - lse, 2e-6);
	p.logprobs = -1;
	memset(&lp, 0x55, sizeof(lp));
	sample_copy(&p, &s, l, V, sc, &lp);
	ck_assert_int_eq(lp.n_top, 0x55555555);
	const float small[3] = { 0, 1, 1 };
	p.logprobs = 20;
	sample_copy(&p, &s, small, 3, sc, &lp);
	ck_assert_int_eq(lp.n_top, 3);
	ck_assert_int_eq(lp.top_ids[0], 1);
	ck_assert_int_eq(lp.top_ids[1], 2);
	ck_assert_int_eq(lp.top_ids[2], 0);
	ck_assert_double_eq_tol(lp.top_logprobs[2], -log(1 + 2 * M_E), 1e-6);
	sampler_state_deinit(&s);

	/* the chosen token was penalised (and masked, then unmasked): its raw logprob */
	const float pen[3] = { 5, 1, 0 };
	const int32_t pp[] = { 0 };
	p = plain();
	p.temperature = 0;
	p.repetition_penalty = 1.2;
	p.logprobs = 1;
	sampler_state_init(&s, &p, 0, pp, 1);
	ck_assert_int_eq(sample_copy(&p, &s, pen, 3, sc, &lp), 0);
	ck_assert_double_eq_tol(lp.logprob, 5 - log(exp(5.0) + exp(1.0) + 1), 1e-6);
	ck_assert_double_eq_tol(lp.top_logprobs[0], lp.logprob, 1e-7);
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
	free(o);
	free(l);
}
END_TEST

START_TEST(test_sampler_logprobs_large_vocab)
{
	const int V = 151936;
	float *l = random_logits(V, 2.5, 13);
	sampling_params p = plain();
	p.logprobs = 20;
	p.temperature = 0;
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	sampler_logprobs lp;
	int32_t id = sample_copy(&p, &s, l, V, sc, &lp);
	double mx = -INFINITY, z = 0;
	for (int i = 0; i < V; i++)
		mx = l[i] > mx ? l[i] : mx;
	for (int i = 0; i < V; i++)
		z += exp((double)l[i] - mx);
	double lse = mx + log(z);
	ord *o = malloc(V * sizeof(ord));
	for (int i = 0; i < V; i++)
		o[i] = (ord){ l[i], i };
	qsort(o, V, sizeof(ord), ord_desc);
	ck_assert_int_eq(id, o[0].id);
	ck_assert_double_eq_tol(lp.logprob, o[0].x - lse, 2e-6);
	for (int j = 0; j < 20; j++) {
		ck_assert_int_eq(lp.top_ids[j], o[j].id);
		ck_assert_double_eq_tol(lp.top_logprobs[j], o[j].x - lse, 2e-6);
	}
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
	free(o);
	free(l);
}
END_TEST

/* ---- parameters ---- */

START_TEST(test_sampler_params_check_names_each_field)
{
	qerr e = { 0 };
	sampling_params ok = plain();
	ok.n_eos = 2;
	ok.eos_ids[0] = 0;
	ok.eos_ids[1] = 99;
	ok.n_stop_ids = 1;
	ok.stop_ids[0] = 5;
	ok.logprobs = 20;
	ok.min_p = 1;
	ok.presence_penalty = -2;
	ok.frequency_penalty = 2;
	ck_assert_int_eq(sampling_params_check(&ok, 100, &e), 0);
	static const struct {
		const char *field;
		int what;
		double v;
	} bad[] = {
		{ "temperature", 0, -0.1 },         { "temperature", 0, NAN },
		{ "temperature", 0, INFINITY },     { "top_p", 1, 0 },
		{ "top_p", 1, 1.01 },               { "top_p", 1, NAN },
		{ "min_p", 2, -0.01 },              { "min_p", 2, 1.5 },
		{ "repetition_penalty", 3, 0 },     { "repetition_penalty", 3, -1 },
		{ "repetition_penalty", 3, INFINITY }, { "presence_penalty", 4, 2.01 },
		{ "presence_penalty", 4, -3 },      { "frequency_penalty", 5, -2.5 },
		{ "frequency_penalty", 5, NAN },    { "min_tokens", 6, -1 },
		{ "n_eos", 7, 9 },                  { "n_eos", 7, -1 },
		{ "eos_ids[1]", 8, 100 },           { "eos_ids[1]", 8, -1 },
		{ "n_stop_ids", 9, 65 },            { "stop_ids[0]", 10, 100 },
		{ "logprobs", 11, 21 },             { "logprobs", 11, -2 },
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		sampling_params p = ok;
		double v = bad[k].v;
		switch (bad[k].what) {
		case 0: p.temperature = v; break;
		case 1: p.top_p = v; break;
		case 2: p.min_p = v; break;
		case 3: p.repetition_penalty = v; break;
		case 4: p.presence_penalty = v; break;
		case 5: p.frequency_penalty = v; break;
		case 6: p.min_tokens = (int32_t)v; break;
		case 7: p.n_eos = (int32_t)v; break;
		case 8: p.eos_ids[1] = (int32_t)v; break;
		case 9: p.n_stop_ids = (int32_t)v; break;
		case 10: p.stop_ids[0] = (int32_t)v; break;
		case 11: p.logprobs = (int32_t)v; break;
		}
		memset(&e, 0, sizeof(e));
		ck_assert_int_eq(sampling_params_check(&p, 100, &e), -QERR_INVALID);
		char want[64];
		snprintf(want, sizeof(want), "sampling: %s: ", bad[k].field);
		ck_assert_msg(strstr(e.msg, want) == e.msg, "case %zu: '%s' does not start with '%s'", k,
			      e.msg, want);
	}
	ck_assert_int_eq(sampling_params_check(&ok, 0, &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "sampling: vocabulary: "));
	/* top_k and the seed take any value */
	ok.top_k = -5;
	ok.seed = UINT64_MAX;
	ck_assert_int_eq(sampling_params_check(&ok, 100, NULL), 0);
}
END_TEST

/* ---- non-finite logits ---- */

START_TEST(test_sampler_inf_and_nan_logits)
{
	const int V = 200;
	float *l = random_logits(V, 1, 14);
	for (int i = 0; i < V; i += 3)
		l[i] = NAN;
	for (int i = 1; i < V; i += 3)
		l[i] = -INFINITY;
	sampler_scratch *sc = sampler_scratch_new(V);
	sampler_state s;
	const sampling_params base = plain();
	sampling_params p;
	for (int k = 0; k < 5; k++) {
		p = base;
		p.temperature = k == 0 ? 0 : 1;
		p.top_k = k == 2 ? 30 : 0;
		p.top_p = k == 3 ? 0.9 : 1;
		p.min_p = k == 4 ? 0.1 : 0;
		p.logprobs = 3;
		sampler_state_init(&s, &p, 0, NULL, 0);
		for (int i = 0; i < 500; i++) {
			sampler_logprobs lp;
			int32_t id = sample_copy(&p, &s, l, V, sc, &lp);
			ck_assert_msg(id % 3 == 2, "case %d drew id %d (NaN or -inf)", k, id);
			ck_assert(isfinite(lp.logprob));
			for (int j = 0; j < 3; j++)
				ck_assert_int_eq(lp.top_ids[j] % 3, 2);
		}
		sampler_state_deinit(&s);
	}
	/* the logprob of a NaN id is -inf; all NaN: no crash, id 0, logprobs uniform */
	p = base;
	p.logprobs = 2;
	for (int i = 0; i < V; i++)
		l[i] = NAN;
	l[5] = 1;
	sampler_state_init(&s, &p, 0, NULL, 0);
	sampler_logprobs lp;
	ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, &lp), 5);
	ck_assert_double_eq_tol(lp.logprob, 0, 1e-7);
	ck_assert(isinf(lp.top_logprobs[1]) && lp.top_logprobs[1] < 0);
	l[5] = NAN;
	for (int greedy = 0; greedy < 2; greedy++) {
		p.temperature = greedy ? 0 : 1;
		ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, &lp), 0);
		ck_assert_double_eq_tol(lp.logprob, -log(V), 1e-6);
	}
	/* an empty vocabulary: 0, nothing touched */
	ck_assert_int_eq(sampler_sample(&p, &s, l, 0, sc, NULL), 0);
	/* +inf wins outright, the lowest such id */
	for (int i = 0; i < V; i++)
		l[i] = (float)i / V;
	l[50] = l[150] = INFINITY;
	p.logprobs = 2;
	for (int greedy = 0; greedy < 2; greedy++) {
		p.temperature = greedy ? 0 : 1;
		ck_assert_int_eq(sample_copy(&p, &s, l, V, sc, &lp), 50);
		ck_assert_double_eq_tol(lp.logprob, -log(2), 1e-6);
		ck_assert_int_eq(lp.top_ids[1], 150);
	}
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
	free(l);
}
END_TEST

START_TEST(test_sampler_scratch_grows_for_a_larger_vocab)
{
	sampling_params p = plain();
	p.top_p = 0.9;
	sampler_scratch *sc = sampler_scratch_new(10);
	sampler_state s;
	sampler_state_init(&s, &p, 0, NULL, 0);
	float *l = random_logits(5000, 2, 15);
	for (int i = 0; i < 20; i++)
		sample_copy(&p, &s, l, 5000, sc, NULL);
	ck_assert_int_ge(sample_copy(&p, &s, l, 7, sc, NULL), 0);
	sampler_state_deinit(&s);
	sampler_scratch_free(sc);
	sampler_scratch_free(NULL);
	free(l);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sampler");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_sampler_greedy_arg_max_lowest_id_on_ties);
	tcase_add_test(tc, test_sampler_greedy_ignores_rng);
	tcase_add_test(tc, test_sampler_seed_is_splitmix_of_seed_plus_index);
	tcase_add_test(tc, test_sampler_seeded_draws_repeat_whatever_runs_beside);
	tcase_add_test(tc, test_sampler_chi_square_matches_softmax);
	tcase_add_test(tc, test_sampler_top_k_one_is_greedy);
	tcase_add_test(tc, test_sampler_top_k_at_least_vocab_is_no_op);
	tcase_add_test(tc, test_sampler_top_k_keeps_ties_with_the_kth);
	tcase_add_test(tc, test_sampler_top_p_tiny_is_arg_max);
	tcase_add_test(tc, test_sampler_top_p_one_is_no_op);
	tcase_add_test(tc, test_sampler_top_p_distribution);
	tcase_add_test(tc, test_sampler_min_p_one_keeps_only_the_max_and_its_ties);
	tcase_add_test(tc, test_sampler_min_p_edge);
	tcase_add_test(tc, test_sampler_top_k_top_p_distribution);
	tcase_add_test(tc, test_sampler_filters_match_reference_at_scale);
	tcase_add_test(tc, test_sampler_top_p_guess_bound_and_ties);
	tcase_add_test(tc, test_sampler_repetition_penalty_prompt_and_output);
	tcase_add_test(tc, test_sampler_frequency_presence_output_only);
	tcase_add_test(tc, test_sampler_all_penalties_together_and_table_growth);
	tcase_add_test(tc, test_sampler_neutral_penalties_build_nothing);
	tcase_add_test(tc, test_sampler_min_tokens_masks_eos_and_stop_ids);
	tcase_add_test(tc, test_sampler_everything_masked_gives_raw_arg_max);
	tcase_add_test(tc, test_sampler_logprobs_are_raw_log_softmax);
	tcase_add_test(tc, test_sampler_logprobs_large_vocab);
	tcase_add_test(tc, test_sampler_params_check_names_each_field);
	tcase_add_test(tc, test_sampler_inf_and_nan_logits);
	tcase_add_test(tc, test_sampler_scratch_grows_for_a_larger_vocab);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
