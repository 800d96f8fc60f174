/*
 * check_bench: the load generator's arithmetic and its FastCGI client, without a server.
 *
 *   - metrics on synthetic timestamps: numpy's percentile, TTFT/TPOT/ITL/E2EL, throughputs,
 *     failures excluded, single-token requests left out of TPOT
 *   - Poisson arrivals: the mean rate of a seeded schedule, determinism, rate inf
 *   - FastCGI records against hand-built bytes, and the reply parser fed split records
 *   - the PNG encoder's output signature
 * (tests/bench_cli.test runs the whole thing against qvld and qvl-fcgi.)
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "fcgi_client.h"
#include "strbuf.h"
#include "testutil.h"

static void assert_near(double got, double want, double tol)
{
	ck_assert_msg(fabs(got - want) <= tol, "got %.9g, want %.9g (±%g)", got, want, tol);
}

static void assert_bytes(const strbuf *b, const uint8_t *want, size_t n)
{
	ck_assert_uint_eq(b->len, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg((uint8_t)b->s[i] == want[i], "byte %zu: 0x%02x, want 0x%02x", i,
			      (uint8_t)b->s[i], want[i]);
}

START_TEST(test_bench_percentile_linear)
{
	double v[] = { 1, 2, 3, 4, 5 };
	assert_near(bench_percentile(v, 5, 50), 3, 1e-12);
	assert_near(bench_percentile(v, 5, 99), 4.96, 1e-12);   /* np.percentile(v, 99) */
	assert_near(bench_percentile(v, 5, 0), 1, 1e-12);
	assert_near(bench_percentile(v, 5, 100), 5, 1e-12);
	assert_near(bench_percentile(v, 1, 99), 1, 1e-12);
	assert_near(bench_percentile(v, 0, 50), 0, 1e-12);
	double w[] = { 10, 20, 30, 40 };
	assert_near(bench_percentile(w, 4, 50), 25, 1e-12);
}
END_TEST

START_TEST(test_bench_stat_mean_median_std)
{
	double v[] = { 0.3, 0.1, 0.2 };   /* unsorted on purpose */
	bench_stat s;
	bench_stat_of(v, 3, &s);
	assert_near(s.mean, 200, 1e-9);
	assert_near(s.median, 200, 1e-9);
	assert_near(s.std, sqrt(2.0 / 3.0) * 100, 1e-9);   /* population std, as np.std */
	assert_near(s.p99, 298, 1e-9);
	bench_stat_of(v, 0, &s);
	assert_near(s.mean + s.median + s.std + s.p99, 0, 0);
}
END_TEST

START_TEST(test_bench_metrics_synthetic)
{
	bench_result *r = calloc(3, sizeof(bench_result));
	double e0[] = { 0.1, 0.2, 0.35 }, e1[] = { 0.2, 0.3 };
	r[0] = (bench_result){ .ok = true, .start = 0, .ttft = 0.1, .latency = 0.4,
			       .prompt_tokens = 10, .output_tokens = 3, .cached_tokens = 4,
			       .n_events = 3 };
	r[1] = (bench_result){ .ok = true, .start = 0.5, .ttft = 0.2, .latency = 0.5,
			       .prompt_tokens = 20, .output_tokens = 2, .n_events = 2 };
	r[2] = (bench_result){ .ok = false, .start = 0.2, .latency = 0.05, .prompt_tokens = 99,
			       .cached_tokens = 7 };
	r[0].events = malloc(sizeof(e0));
	memcpy(r[0].events, e0, sizeof(e0));
	r[1].events = malloc(sizeof(e1));
	memcpy(r[1].events, e1, sizeof(e1));
	r[2].error = strdup("HTTP 503");
	bench_metrics m;
	bench_metrics_compute(r, 3, 2.0, &m);
	ck_assert_int_eq(m.completed, 2);
	ck_assert_int_eq(m.failed, 1);
	ck_assert_int_eq(m.total_input, 30);
	ck_assert_int_eq(m.total_cached, 4);   /* the failed request's count is not summed */
	ck_assert_int_eq(m.total_output, 5);
	assert_near(m.request_throughput, 1.0, 1e-12);
	assert_near(m.output_throughput, 2.5, 1e-12);
	assert_near(m.total_token_throughput, 17.5, 1e-12);
	assert_near(m.ttft.mean, 150, 1e-9);
	assert_near(m.e2el.mean, 450, 1e-9);
	/* TPOT: (0.4 − 0.1)/2 = 150 ms and (0.5 − 0.2)/1 = 300 ms */
	assert_near(m.tpot.mean, 225, 1e-9);
	assert_near(m.tpot.median, 225, 1e-9);
	/* ITL pooled: 100, 150, 100 ms */
	assert_near(m.itl.mean, 350.0 / 3, 1e-9);
	assert_near(m.itl.median, 100, 1e-9);
	assert_near(m.itl.p99, 149, 1e-9);
	ck_assert_int_eq(m.max_concurrent_requests, 1);
	assert_near(m.max_output_tokens_per_s, 5, 0);
	bench_results_free(r, 3);
}
END_TEST

START_TEST(test_bench_metrics_tpot_skips_single_token)
{
	bench_result r[2] = {
		{ .ok = true, .start = 0, .ttft = 0.1, .latency = 0.1, .output_tokens = 1 },
		{ .ok = true, .start = 0, .ttft = 0.1, .latency = 0.5, .output_tokens = 5 },
	};
	bench_metrics m;
	bench_metrics_compute(r, 2, 1.0, &m);
	assert_near(m.tpot.mean, 100, 1e-9);      /* only the second: 0.4 / 4 */
	assert_near(m.itl.mean, 0, 0);           /* no events recorded */
	ck_assert_int_eq(m.max_concurrent_requests, 2);
}
END_TEST

START_TEST(test_bench_poisson_mean_rate)
{
	enum { N = 20000 };
	double *t = malloc(N * sizeof(double)), *u = malloc(N * sizeof(double));
	bench_arrivals(42, 10.0, N, t);
	assert_near(t[0], 0, 0);
	for (int i = 1; i < N; i++)
		ck_assert(t[i] >= t[i - 1]);
	/* N − 1 gaps of mean 0.1 s; the sample mean's sd is 0.1/√N ≈ 0.0007 */
	assert_near(t[N - 1] / (N - 1), 0.1, 0.004);
	/* exponential gaps: the fraction shorter than the mean is 1 − 1/e */
	int below = 0;
	for (int i = 1; i < N; i++)
		below += t[i] - t[i - 1] < 0.1;
	assert_near((double)below / (N - 1), 1 - exp(-1), 0.015);
	bench_arrivals(42, 10.0, N, u);
	ck_assert(memcmp(t, u, N * sizeof(double)) == 0);
	bench_arrivals(43, 10.0, N, u);
	ck_assert(memcmp(t, u, N * sizeof(double)) != 0);
	bench_arrivals(42, INFINITY, N, u);
	for (int i = 0; i < N; i++)
		ck_assert(u[i] == 0);
	free(t);
	free(u);
}
END_TEST

START_TEST(test_bench_fcgi_record_bytes)
{
	strbuf b = { 0 };
	fcgi_put_record(&b, FCGI_STDIN, 1, "abc", 3);
	static const uint8_t want[] = { 1, 5, 0, 1, 0, 3, 5, 0, 'a', 'b', 'c', 0, 0, 0, 0, 0 };
	assert_bytes(&b, want, sizeof(want));
	strbuf_truncate(&b, 0);
	fcgi_put_record(&b, FCGI_PARAMS, 0x1234, NULL, 0);
	static const uint8_t empty[] = { 1, 4, 0x12, 0x34, 0, 0, 0, 0 };
	assert_bytes(&b, empty, sizeof(empty));
	/* a name-value pair: short lengths in one byte, ≥ 128 in four with the top bit */
	strbuf_truncate(&b, 0);
	char v[201];
	memset(v, 'v', 200);
	v[200] = 0;
	fcgi_put_pair(&b, "AB", v);
	ck_assert_uint_eq(b.len, 1 + 4 + 2 + 200);
	static const uint8_t head[] = { 2, 0x80, 0, 0, 200, 'A', 'B', 'v' };
	for (size_t i = 0; i < sizeof(head); i++)
		ck_assert_uint_eq((uint8_t)b.s[i], head[i]);
	strbuf_deinit(&b);
}
END_TEST

START_TEST(test_bench_fcgi_request_bytes)
{
	strbuf b = { 0 };
	fcgi_param p[] = { { "REQUEST_METHOD", "POST" } };
	fcgi_put_request(&b, 1, p, 1, "{}", 2);
	static const uint8_t want[] = {
		1, 1, 0, 1, 0, 8, 0, 0,   0, 1, 0, 0, 0, 0, 0, 0,           /* BEGIN: responder */
		1, 4, 0, 1, 0, 20, 4, 0,  14, 4, 'R', 'E', 'Q', 'U', 'E', 'S', 'T', '_', 'M', 'E',
		'T', 'H', 'O', 'D', 'P', 'O', 'S', 'T', 0, 0, 0, 0,          /* PARAMS + padding */
		1, 4, 0, 1, 0, 0, 0, 0,                                      /* end of params */
		1, 5, 0, 1, 0, 2, 6, 0,   '{', '}', 0, 0, 0, 0, 0, 0,        /* STDIN */
		1, 5, 0, 1, 0, 0, 0, 0,                                      /* end of stdin */
	};
	assert_bytes(&b, want, sizeof(want));
	/* a body over 65535 bytes spans records */
	strbuf_truncate(&b, 0);
	size_t n = 70000;
	char *body = calloc(1, n);
	fcgi_put_request(&b, 1, NULL, 0, body, n);
	/* BEGIN 16 + empty PARAMS 8 + STDIN 65535 (+1 pad) + STDIN 4465 (+7 pad) + empty STDIN */
	ck_assert_uint_eq(b.len, 16 + 8 + (8 + 65536) + (8 + 4472) + 8);
	free(body);
	strbuf_deinit(&b);
}
END_TEST

static void collect(void *ctx, const uint8_t *p, size_t n)
{
	strbuf_add(ctx, p, n);
}

START_TEST(test_bench_fcgi_parse_split_stdout)
{
	strbuf reply = { 0 }, got = { 0 };
	const char *a = "Status: 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {\"x\":1}\n\n";
	const char *c = "data: [DONE]\n\n";
	fcgi_put_record(&reply, FCGI_STDOUT, 1, a, strlen(a));
	fcgi_put_record(&reply, FCGI_STDERR, 1, "warn", 4);
	fcgi_put_record(&reply, FCGI_STDOUT, 1, c, strlen(c));
	fcgi_put_record(&reply, FCGI_STDOUT, 1, NULL, 0);
	uint8_t end[8] = { 0, 0, 0, 7, 0, 0, 0, 0 };
	fcgi_put_record(&reply, FCGI_END_REQUEST, 1, end, 8);
	/* byte by byte, then in chunks of 5: the same output, done only at the very end */
	for (size_t step = 1; step <= 5; step += 4) {
		fcgi_parser p;
		fcgi_parser_init(&p, 1);
		strbuf_truncate(&got, 0);
		int rc = 0;
		for (size_t i = 0; i < reply.len; i += step) {
			ck_assert_int_eq(rc, 0);
			size_t k = reply.len - i < step ? reply.len - i : step;
			rc = fcgi_parser_feed(&p, (const uint8_t *)reply.s + i, k, collect, &got, NULL);
		}
		ck_assert_int_eq(rc, 1);
		ck_assert_uint_eq(p.app_status, 7);
		ck_assert_uint_eq(got.len, strlen(a) + strlen(c));
		ck_assert(!memcmp(got.s, a, strlen(a)));
		ck_assert(!memcmp(got.s + strlen(a), c, strlen(c)));
	}
	strbuf_deinit(&reply);
	strbuf_deinit(&got);
}
END_TEST

START_TEST(test_bench_fcgi_parse_rejects_bad_records)
{
	qerr e = { 0 };
	fcgi_parser p;
	uint8_t bad_version[8] = { 2, FCGI_STDOUT, 0, 1, 0, 0, 0, 0 };
	fcgi_parser_init(&p, 1);
	ck_assert_int_eq(fcgi_parser_feed(&p, bad_version, 8, NULL, NULL, &e), -QERR_FORMAT);
	uint8_t other_id[8] = { 1, FCGI_STDOUT, 0, 2, 0, 0, 0, 0 };
	fcgi_parser_init(&p, 1);
	ck_assert_int_eq(fcgi_parser_feed(&p, other_id, 8, NULL, NULL, &e), -QERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(e.msg, "request 2"));
	uint8_t bad_type[8] = { 1, 11, 0, 1, 0, 0, 0, 0 };
	fcgi_parser_init(&p, 1);
	ck_assert_int_eq(fcgi_parser_feed(&p, bad_type, 8, NULL, NULL, &e), -QERR_FORMAT);
}
END_TEST

START_TEST(test_bench_png_signature)
{
	uint8_t rgb[2 * 3 * 3];
	for (size_t i = 0; i < sizeof(rgb); i++)
		rgb[i] = (uint8_t)(i * 37);
	uint8_t *png = NULL;
	size_t len = 0;
	ck_assert_int_eq(bench_png_encode(rgb, 3, 2, &png, &len, NULL), 0);
	static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	ck_assert_uint_gt(len, 40);
	ck_assert(!memcmp(png, sig, 8));
	ck_assert(!memcmp(png + 12, "IHDR", 4));
	ck_assert(png[19] == 3 && png[23] == 2);   /* width, height (big-endian u32) */
	free(png);
}
END_TEST

static Suite *bench_suite(void)
{
	Suite *s = suite_create("bench");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_bench_percentile_linear);
	tcase_add_test(tc, test_bench_stat_mean_median_std);
	tcase_add_test(tc, test_bench_metrics_synthetic);
	tcase_add_test(tc, test_bench_metrics_tpot_skips_single_token);
	tcase_add_test(tc, test_bench_poisson_mean_rate);
	tcase_add_test(tc, test_bench_fcgi_record_bytes);
	tcase_add_test(tc, test_bench_fcgi_request_bytes);
	tcase_add_test(tc, test_bench_fcgi_parse_split_stdout);
	tcase_add_test(tc, test_bench_fcgi_parse_rejects_bad_records);
	tcase_add_test(tc, test_bench_png_signature);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(bench_suite());
}
