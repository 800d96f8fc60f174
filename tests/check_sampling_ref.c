/*
 * check_sampling_ref: kernels/sampling_ref.c (the definition the GPU sampler is held to) against
 * inference/sampler.c's sampler_sample (what the engine does today), on thousands of random rows:
 * bf16 logits (normal, coarse with many ties, some -inf / NaN / +inf, all masked), every
 * parameter mixed (greedy, temperature, top_k, top_p, min_p, the three penalties from a real
 * sampler_state, the min_tokens mask, logprobs).
 *
 * The draw: sampler.c takes one 53-bit uniform from the sequence's xoshiro256** per non-greedy
 * call; the test computes that same u from a copy of the state (and checks that sampler_sample
 * advanced the state exactly so), and gives it to the reference. The ids must be equal, except
 * where the reference says its draw (or its top_p cut) lies within 1e-5 of the kept mass of a
 * boundary: sampler.c sums weights in float blocks, the reference in exact fixed point. Such
 * rows are counted and must stay rare. Logprobs: top ids equal, values within 1e-5.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "sampling.h"
#include "sampling_testgen.h"

#define NEAR 1e-5

/* xoshiro256** as sampler.c steps it. */
static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xo_next(uint64_t s[4])
{
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* The penalty list of a sampler_state: prompt ∪ output ids, distinct, with output counts. */
static int penalty_list(const sampler_state *s, kn_sample_pen *out)
{
	int n = 0;
	for (size_t i = 0; s->out_ids && i < s->cap; i++)
		if (s->out_ids[i] >= 0)
			out[n++] = (kn_sample_pen){ s->out_ids[i], s->out_counts[i] };
	int n_out = n;
	for (size_t i = 0; i < s->n_prompt_ids; i++) {
		int32_t id = s->prompt_ids[i], seen = 0;
		for (int j = 0; j < n_out && !seen; j++)
			seen = out[j].id == id;
		if (!seen)
			out[n++] = (kn_sample_pen){ id, 0 };
	}
	return n;
}

static const int sizes[] = { 1, 2, 3, 7, 64, 65, 200, 1000, 4099, 151936 };

START_TEST(test_sampling_ref_matches_sampler)
{
	const int N = 4000;
	int max_v = 151936;
	uint16_t *h = malloc((size_t)max_v * sizeof(uint16_t));
	float *xf = malloc((size_t)max_v * sizeof(float));
	kn_sample_pen *pen = malloc(4096 * sizeof(kn_sample_pen));
	int32_t mask[SAMPLER_MAX_EOS + SAMPLER_MAX_STOP_IDS];
	sampler_scratch *sc = sampler_scratch_new(1);
	int draws = 0, near = 0, exact = 0, shown = 0;
	for (int n = 0; n < N; n++) {
		int V = sizes[n % 50 == 49 ? 9 : irand(9)];
		sg_gen_logits(h, V, irand(7));
		sampling_params p = { .temperature = 1, .top_p = 1, .repetition_penalty = 1 };
		int kind = irand(10);
		if (kind < 2)
			p.temperature = irand(2) ? 0 : 5e-6;
		else
			p.temperature = 0.05 + 2 * urand();
		if (irand(2))
			p.top_p = irand(4) ? 0.02 + 0.97 * urand() : 0.9;
		if (irand(2))
			p.top_k = irand(4) ? 1 + irand(V < 300 ? V + 2 : 300) : V + irand(3);
		if (irand(4) == 0)
			p.min_p = irand(5) ? 0.3 * urand() : 1;
		if (irand(4) == 0)
			p.repetition_penalty = 0.5 + 1.5 * urand();
		if (irand(4) == 0)
			p.frequency_penalty = 4 * urand() - 2;
		if (irand(4) == 0)
			p.presence_penalty = 4 * urand() - 2;
		p.has_seed = true;
		p.seed = rnd64();
		if (irand(4) == 0) {
			p.min_tokens = 1000;
			p.ignore_eos = irand(4) == 0;
			p.n_eos = 1 + irand(2);
			for (int i = 0; i < p.n_eos; i++)
				p.eos_ids[i] = irand(V);
			p.n_stop_ids = irand(4);
			for (int i = 0; i < p.n_stop_ids; i++)
				p.stop_ids[i] = irand(V);
		}
		p.logprobs = irand(3) ? -1 : irand(SAMPLER_MAX_LOGPROBS + 1);
		qerr e = { 0 };
		ck_assert_int_eq(sampling_params_check(&p, V, &e), 0);

		int32_t prompt[64];
		int n_prompt = irand(64);
		for (int i = 0; i < n_prompt; i++)
			prompt[i] = irand(V);
		sampler_state s;
		sampler_state_init(&s, &p, (uint32_t)irand(4), prompt, (size_t)n_prompt);
		int n_out = irand(40);
		for (int i = 0; i < n_out; i++)
			sampler_state_accept(&s, &p, irand(3) ? irand(V) : irand(V < 8 ? V : 8));

		kn_sample_row row;
		kn_sample_row_init(&row, p.temperature, p.top_p, p.top_k, p.min_p,
				   p.repetition_penalty, p.presence_penalty, p.frequency_penalty);
		row.logprobs = p.logprobs;
		if (p.repetition_penalty != 1 || p.frequency_penalty != 0 || p.presence_penalty != 0)
			row.pen_count = penalty_list(&s, pen);
		if (s.n_out < p.min_tokens) {
			for (int i = 0; !p.ignore_eos && i < p.n_eos; i++)
				mask[row.mask_count++] = p.eos_ids[i];
			for (int i = 0; i < p.n_stop_ids; i++)
				mask[row.mask_count++] = p.stop_ids[i];
		}
		bool greedy = !(p.temperature >= SAMPLER_GREEDY_EPS);
		uint64_t rng[4];
		memcpy(rng, s.rng, sizeof(rng));
		if (!greedy)
			row.u = (double)(xo_next(rng) >> 11) * 0x1p-53;

		for (int i = 0; i < V; i++)
			xf[i] = bf16_to_f32(h[i]);
		sampler_logprobs lp;
		memset(&lp, 0, sizeof(lp));
		int32_t want = sampler_sample(&p, &s, xf, V, sc, &lp);
		ck_assert_msg(!memcmp(rng, s.rng, sizeof(rng)), "case %d: the sampler took %s draws",
			      n, greedy ? "unexpected" : "other");

		double dm, cm;
		int32_t got = kn_sample_ref_margins(h, &row, pen, mask, V, &dm, &cm);
		int32_t ids[1], top_ids[KN_SAMPLE_MAX_LOGPROBS];
		float lp1 = NAN, top_lps[KN_SAMPLE_MAX_LOGPROBS];
		kn_sample_ref(ids, &lp1, top_ids, top_lps, h, &row, pen, mask, 1, V);
		ck_assert_int_eq(ids[0], got);
		if (!greedy)
			draws++;
		if (got != want) {
			ck_assert_msg(dm < NEAR || cm < NEAR,
				      "case %d (V %d, T %g, top_p %g, top_k %d, min_p %g): ref %d, "
				      "sampler %d, margins %g %g",
				      n, V, p.temperature, p.top_p, p.top_k, p.min_p, got, want, dm, cm);
			near++;
			if (shown++ < 5)
				printf("near a boundary: case %d V %d ref %d sampler %d margins %.2e %.2e\n",
				       n, V, got, want, dm, cm);
		} else {
			exact++;
		}
		if (p.logprobs >= 0) {
			int k = p.logprobs < V ? p.logprobs : V;
			ck_assert_int_eq(lp.n_top, k);
			for (int j = 0; j < k; j++) {
				ck_assert_msg(top_ids[j] == lp.top_ids[j], "case %d: top %d: %d vs %d", n,
					      j, top_ids[j], lp.top_ids[j]);
				float a = top_lps[j], b = lp.top_logprobs[j];
				ck_assert_msg(a == b || fabsf(a - b) < 1e-5f, "case %d: top lp %d: %g vs %g",
					      n, j, a, b);
			}
			if (got == want)
				ck_assert_msg(lp1 == lp.logprob || fabsf(lp1 - lp.logprob) < 1e-5f,
					      "case %d: logprob %g vs %g", n, lp1, lp.logprob);
		}
		sampler_state_deinit(&s);
	}
	printf("check_sampling_ref: %d rows (%d random draws): %d equal, %d near a boundary\n", N,
	       draws, exact, near);
	ck_assert_int_le(near, draws / 100 + 1);
	sampler_scratch_free(sc);
	free(h);
	free(xf);
	free(pen);
}
END_TEST

/* u near 1 and near 0, flat rows: the draw ends stay inside the kept set. */
START_TEST(test_sampling_ref_draw_ends)
{
	int V = 1000;
	uint16_t *h = malloc((size_t)V * sizeof(uint16_t));
	for (int i = 0; i < V; i++)
		h[i] = f32_to_bf16(i % 3 == 0 ? 2.0f : -1.0f);
	kn_sample_row row;
	kn_sample_row_init(&row, 1.0, 1.0, 0, 0, 1, 0, 0);
	double dm, cm;
	row.u = 0;
	ck_assert_int_eq(kn_sample_ref_margins(h, &row, NULL, NULL, V, &dm, &cm), 0);
	row.u = 1 - 0x1p-53;
	ck_assert_int_eq(kn_sample_ref_margins(h, &row, NULL, NULL, V, &dm, &cm), V - 1);
	/* top_k 3 of equal values keeps every tie (334 ids ≡ 0 mod 3) */
	kn_sample_row_init(&row, 1.0, 1.0, 3, 0, 1, 0, 0);
	row.u = 1 - 0x1p-53;
	ck_assert_int_eq(kn_sample_ref_margins(h, &row, NULL, NULL, V, &dm, &cm), 999);
	/* top_p reached by one of the equal heavy tokens keeps the lowest id of them */
	kn_sample_row_init(&row, 1.0, 1e-3, 0, 0, 1, 0, 0);
	row.u = 1 - 0x1p-53;
	ck_assert_int_eq(kn_sample_ref_margins(h, &row, NULL, NULL, V, &dm, &cm), 0);
	free(h);
}
END_TEST

int main(void)
{
	sg_seed(0x1234567887654321ull);
	Suite *s = suite_create("sampling_ref");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_sampling_ref_matches_sampler);
	tcase_add_test(tc, test_sampling_ref_draw_ends);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
