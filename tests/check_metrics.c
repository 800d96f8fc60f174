/*
 * Tests of metrics: bucket sets exactly as vLLM's, Prometheus' bucket rule (a value equal to a
 * bound counts in that bound's bucket; above the last, +Inf), sum and count, NaN dropped, the
 * 1-2-5 token buckets for a given max_model_len, and the keys of the STATS_REPLY object.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "metrics.h"
#include "testutil.h"

static void assert_bounds(const metrics_hist *h, const double *want, int n)
{
	ck_assert_int_eq(h->n, n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(h->le[i] == want[i], "le[%d] = %g, want %g", i, h->le[i], want[i]);
}

static uint64_t total(const metrics_hist *h)
{
	uint64_t t = 0;
	for (int i = 0; i <= h->n; i++)
		t += h->counts[i];
	return t;
}

START_TEST(test_metrics_bucket_sets_match_vllm)
{
	static const double ttft[] = { 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
				       0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560 };
	static const double itl[] = { 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
				      1, 2.5, 5, 7.5, 10, 20, 40, 80 };
	static const double req[] = { 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60,
				      120, 240, 480, 960, 1920, 7680 };
	static const double iter[] = { 1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
				       16384 };
	metrics m;
	metrics_init(&m, 4096);
	assert_bounds(&m.ttft, ttft, 22);
	assert_bounds(&m.itl, itl, 19);
	const metrics_hist *reqs[] = { &m.e2e, &m.queue, &m.inference, &m.prefill, &m.decode };
	for (int i = 0; i < 5; i++)
		assert_bounds(reqs[i], req, 21);
	assert_bounds(&m.iteration_tokens, iter, 13);
	ck_assert_uint_eq(total(&m.ttft), 0);
	ck_assert_uint_eq(m.ttft.count, 0);
	ck_assert(m.ttft.sum == 0);
}
END_TEST

START_TEST(test_metrics_value_on_a_bound_goes_into_that_bucket)
{
	metrics_hist h;
	metrics_hist_init(&h, METRICS_B_REQ, 0);
	for (int i = 0; i < h.n; i++)
		metrics_hist_observe(&h, h.le[i]);
	for (int i = 0; i < h.n; i++)
		ck_assert_msg(h.counts[i] == 1, "value %g counted in bucket %d %llu times", h.le[i], i,
			      (unsigned long long)h.counts[i]);
	ck_assert_uint_eq(h.counts[h.n], 0);
	/* just above a bound goes to the next bucket; below the first bound, the first */
	metrics_hist_init(&h, METRICS_B_TTFT, 0);
	metrics_hist_observe(&h, nextafter(0.001, 1));
	metrics_hist_observe(&h, 0.0);
	metrics_hist_observe(&h, -1.0);
	metrics_hist_observe(&h, 0.001);
	ck_assert_uint_eq(h.counts[0], 3);
	ck_assert_uint_eq(h.counts[1], 1);
	ck_assert_uint_eq(h.count, 4);
}
END_TEST

START_TEST(test_metrics_above_the_last_bound_is_inf)
{
	metrics_hist h;
	metrics_hist_init(&h, METRICS_B_ITER, 0);
	metrics_hist_observe(&h, 16384);
	metrics_hist_observe(&h, 16385);
	metrics_hist_observe(&h, 1e12);
	ck_assert_uint_eq(h.counts[h.n - 1], 1);
	ck_assert_uint_eq(h.counts[h.n], 2);
	ck_assert_uint_eq(total(&h), 3);
}
END_TEST

START_TEST(test_metrics_sum_count_and_nan)
{
	metrics_hist h;
	metrics_hist_init(&h, METRICS_B_ITL, 0);
	double vals[] = { 0.02, 0.02, 0.5, 3.0, 100.0 };
	for (int i = 0; i < 5; i++)
		metrics_hist_observe(&h, vals[i]);
	metrics_hist_observe(&h, NAN);
	metrics_hist_observe(&h, INFINITY);
	metrics_hist_observe(&h, -INFINITY);
	ck_assert_uint_eq(h.count, 5);
	ck_assert_uint_eq(total(&h), 5);
	ck_assert_double_eq_tol(h.sum, 103.54, 1e-12);
	ck_assert_uint_eq(h.counts[1], 2);    /* 0.02 <= 0.025 */
	ck_assert_uint_eq(h.counts[9], 1);    /* 0.5 */
	ck_assert_uint_eq(h.counts[13], 1);   /* 3.0 <= 5 */
	ck_assert_uint_eq(h.counts[h.n], 1);  /* 100 > 80 */
}
END_TEST

START_TEST(test_metrics_token_buckets_follow_max_model_len)
{
	metrics_hist h;
	static const double b4096[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 };
	metrics_hist_init(&h, METRICS_B_TOKENS, 4096);
	assert_bounds(&h, b4096, 12);
	/* a max_model_len on the series ends there */
	metrics_hist_init(&h, METRICS_B_TOKENS, 5000);
	assert_bounds(&h, b4096, 12);
	metrics_hist_init(&h, METRICS_B_TOKENS, 5001);
	ck_assert_int_eq(h.n, 13);
	ck_assert(h.le[12] == 10000);
	static const double b262k[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
					 20000, 50000, 100000, 200000, 500000 };
	metrics_hist_init(&h, METRICS_B_TOKENS, 262144);
	assert_bounds(&h, b262k, 18);
	metrics_hist_init(&h, METRICS_B_TOKENS, 1);
	ck_assert_int_eq(h.n, 1);
	ck_assert(h.le[0] == 1);
	metrics_hist_init(&h, METRICS_B_TOKENS, 0);
	ck_assert_int_eq(h.n, 1);
	/* capped */
	metrics_hist_init(&h, METRICS_B_TOKENS, INT64_MAX);
	ck_assert_int_eq(h.n, METRICS_MAX_BUCKETS);
	ck_assert(h.le[METRICS_MAX_BUCKETS - 1] == 1e13);
	for (int i = 1; i < h.n; i++)
		ck_assert(h.le[i] > h.le[i - 1]);
	/* a prompt of exactly max_model_len tokens has a finite bucket */
	metrics_hist_init(&h, METRICS_B_TOKENS, 4096);
	metrics_hist_observe(&h, 4096);
	ck_assert_uint_eq(h.counts[h.n - 1], 1);
	ck_assert_uint_eq(h.counts[h.n], 0);
}
END_TEST

START_TEST(test_metrics_hist_json_form)
{
	metrics_hist h;
	metrics_hist_init(&h, METRICS_B_ITER, 0);
	metrics_hist_observe(&h, 8);
	metrics_hist_observe(&h, 100000);
	json_object *o = metrics_hist_json(&h);
	json_object *b, *c;
	qerr e = { 0 };
	ck_assert_int_eq(jsonx_get_array(o, "buckets", &b, "hist", &e), 0);
	ck_assert_int_eq(jsonx_get_array(o, "counts", &c, "hist", &e), 0);
	ck_assert_uint_eq(json_object_array_length(b), 13);
	ck_assert_uint_eq(json_object_array_length(c), 14);
	ck_assert_int_eq(json_object_get_int64(json_object_array_get_idx(c, 1)), 1);
	ck_assert_int_eq(json_object_get_int64(json_object_array_get_idx(c, 13)), 1);
	ck_assert(json_object_get_double(json_object_array_get_idx(b, 12)) == 16384);
	double sum;
	int64_t count;
	ck_assert_int_eq(jsonx_get_double(o, "sum", &sum, "hist", &e), 0);
	ck_assert(sum == 100008);
	ck_assert_int_eq(jsonx_get_int(o, "count", 0, 100, &count, "hist", &e), 0);
	ck_assert_int_eq(count, 2);
	/* the text is standard JSON, and 0.001 comes back as 0.001 */
	metrics_hist_init(&h, METRICS_B_TTFT, 0);
	json_object_put(o);
	o = metrics_hist_json(&h);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	json_object *back;
	ck_assert_int_eq(jsonx_parse(text, strlen(text), "hist", &back, &e), 0);
	ck_assert_int_eq(jsonx_get_array(back, "buckets", &b, "hist", &e), 0);
	ck_assert(json_object_get_double(json_object_array_get_idx(b, 0)) == 0.001);
	json_object_put(back);
	json_object_put(o);
}
END_TEST

START_TEST(test_metrics_json_has_every_key)
{
	metrics m, snap;
	metrics_init(&m, 32768);
	m.prompt_tokens = 1234;
	m.generation_tokens = 56;
	m.success_stop = 3;
	m.success_length = 1;
	m.success_error = 2;
	m.mm_cache_hits = 9;
	metrics_hist_observe(&m.ttft, 0.2);
	metrics_copy(&snap, &m);
	metrics_gauges g = { .num_requests_running = 4, .num_requests_waiting = 2,
			     .kv_cache_usage_perc = 0.25, .kv_blocks_total = 1000,
			     .kv_blocks_free = 750 };
	json_object *o = metrics_json(&snap, &g);
	static const char *keys[] = {
		"num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
		"kv_blocks_total", "kv_blocks_free", "num_preemptions", "prefix_cache_queries",
		"prefix_cache_hits", "prompt_tokens", "prompt_tokens_cached", "generation_tokens",
		"mm_cache_queries", "mm_cache_hits", "request_success", "histograms",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(jsonx_member(o, keys[i]) != NULL, "no %s", keys[i]);
	ck_assert_uint_eq((size_t)json_object_object_length(o), sizeof(keys) / sizeof(keys[0]));
	qerr e = { 0 };
	int64_t v;
	ck_assert_int_eq(jsonx_get_int(o, "prompt_tokens", 0, INT64_MAX, &v, "stats", &e), 0);
	ck_assert_int_eq(v, 1234);
	ck_assert_int_eq(jsonx_get_int(o, "kv_blocks_free", 0, INT64_MAX, &v, "stats", &e), 0);
	ck_assert_int_eq(v, 750);
	ck_assert_int_eq(jsonx_get_int(o, "num_requests_running", 0, INT64_MAX, &v, "stats", &e), 0);
	ck_assert_int_eq(v, 4);
	double d;
	ck_assert_int_eq(jsonx_get_double(o, "kv_cache_usage_perc", &d, "stats", &e), 0);
	ck_assert(d == 0.25);

	json_object *rs = jsonx_member(o, "request_success");
	static const char *reasons[] = { "stop", "length", "abort", "error" };
	static const int64_t want[] = { 3, 1, 0, 2 };
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(jsonx_get_int(rs, reasons[i], 0, INT64_MAX, &v, "rs", &e), 0);
		ck_assert_int_eq(v, want[i]);
	}
	json_object *hs = jsonx_member(o, "histograms");
	static const char *hists[] = {
		"time_to_first_token_seconds", "inter_token_latency_seconds",
		"e2e_request_latency_seconds", "request_queue_time_seconds",
		"request_inference_time_seconds", "request_prefill_time_seconds",
		"request_decode_time_seconds", "request_prompt_tokens", "request_generation_tokens",
		"iteration_tokens_total",
	};
	for (size_t i = 0; i < sizeof(hists) / sizeof(hists[0]); i++) {
		json_object *h = jsonx_member(hs, hists[i]);
		ck_assert_msg(h != NULL, "no histogram %s", hists[i]);
		ck_assert_ptr_nonnull(jsonx_member(h, "buckets"));
		ck_assert_ptr_nonnull(jsonx_member(h, "counts"));
		ck_assert_ptr_nonnull(jsonx_member(h, "sum"));
		ck_assert_ptr_nonnull(jsonx_member(h, "count"));
	}
	ck_assert_uint_eq((size_t)json_object_object_length(hs), sizeof(hists) / sizeof(hists[0]));
	json_object *ttft = jsonx_member(hs, "time_to_first_token_seconds");
	ck_assert_int_eq(jsonx_get_int(ttft, "count", 0, INT64_MAX, &v, "ttft", &e), 0);
	ck_assert_int_eq(v, 1);
	json_object *pl = jsonx_member(jsonx_member(hs, "request_prompt_tokens"), "buckets");
	ck_assert_uint_eq(json_object_array_length(pl), 15);   /* 1 … 50000 for 32768 */
	json_object_put(o);

	/* no gauges, and a NaN usage, still give valid JSON */
	g.kv_cache_usage_perc = NAN;
	o = metrics_json(&m, &g);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	json_object *back;
	ck_assert_int_eq(jsonx_parse(text, strlen(text), "stats", &back, &e), 0);
	json_object_put(back);
	json_object_put(o);
	o = metrics_json(&m, NULL);
	ck_assert_int_eq(jsonx_get_int(o, "kv_blocks_total", 0, INT64_MAX, &v, "stats", &e), 0);
	ck_assert_int_eq(v, 0);
	json_object_put(o);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_metrics_bucket_sets_match_vllm);
	tcase_add_test(tc, test_metrics_value_on_a_bound_goes_into_that_bucket);
	tcase_add_test(tc, test_metrics_above_the_last_bound_is_inf);
	tcase_add_test(tc, test_metrics_sum_count_and_nan);
	tcase_add_test(tc, test_metrics_token_buckets_follow_max_model_len);
	tcase_add_test(tc, test_metrics_hist_json_form);
	tcase_add_test(tc, test_metrics_json_has_every_key);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
