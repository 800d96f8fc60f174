/*
 * metrics: qvld's counters and histograms with vLLM's names and buckets (see metrics.h), and
 * their JSON form for STATS_REPLY.
 *
 * A histogram keeps one count per bucket, not cumulative counts: observing is one increment, and
 * the responder adds them up when it writes Prometheus' cumulative `_bucket{le=…}` lines. Bucket
 * i holds the values v with le[i-1] < v <= le[i] (Prometheus' rule: a value equal to a bound
 * belongs to that bound's bucket); counts[n] is +Inf, the values above le[n-1].
 *
 *   le:      [ 0.001 | 0.005 | … | 2560 ]
 *   counts:  [   c0  |   c1  | … | c21  | c+Inf ]     count = Σ counts, sum = Σ values
 *
 * Non-finite values are dropped: NaN belongs to no bucket, and an infinity would make the sum
 * infinite, which JSON cannot carry. Durations and token counts are always finite; one that is
 * not is a caller's bug that must not poison the series.
 *
 * Threads: none here; a metrics struct belongs to its owner (the engine thread), and readers
 * copy it under the owner's lock (metrics_copy) before formatting.
 */
#include "metrics.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

static const double b_ttft[] = {
	0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
	20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
};
static const double b_itl[] = {
	0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
	20.0, 40.0, 80.0,
};
static const double b_req[] = {
	0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
	240.0, 480.0, 960.0, 1920.0, 7680.0,
};
static const double b_iter[] = {
	1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
};

static void set_bounds(metrics_hist *h, const double *le, int n)
{
	memcpy(h->le, le, (size_t)n * sizeof(*le));
	h->n = n;
}

/* The bounds are fixed by kind; METRICS_B_TOKENS is 1, 2, 5, 10, 20, 50, … up to and including
 * the first bound >= max_model_len (a max_model_len below 1 counts as 1), at most
 * METRICS_MAX_BUCKETS bounds. All counts start at zero. */
void metrics_hist_init(metrics_hist *h, metrics_buckets kind, int64_t max_model_len)
{
	memset(h, 0, sizeof(*h));
	switch (kind) {
	case METRICS_B_TTFT:
		set_bounds(h, b_ttft, (int)(sizeof(b_ttft) / sizeof(b_ttft[0])));
		break;
	case METRICS_B_ITL:
		set_bounds(h, b_itl, (int)(sizeof(b_itl) / sizeof(b_itl[0])));
		break;
	case METRICS_B_REQ:
		set_bounds(h, b_req, (int)(sizeof(b_req) / sizeof(b_req[0])));
		break;
	case METRICS_B_ITER:
		set_bounds(h, b_iter, (int)(sizeof(b_iter) / sizeof(b_iter[0])));
		break;
	case METRICS_B_TOKENS: {
		static const int mant[3] = { 1, 2, 5 };
		/* 40 bounds reach 1e13, far inside int64 and exact in a double */
		int64_t decade = 1;
		while (h->n < METRICS_MAX_BUCKETS) {
			int64_t v = mant[h->n % 3] * decade;
			h->le[h->n++] = (double)v;
			if (v >= max_model_len)
				break;
			if (h->n % 3 == 0)
				decade *= 10;
		}
		break;
	}
	}
}

/* Count v in the first bucket with v <= le, else +Inf; add it to sum and count. Non-finite
 * values are ignored (see the file comment). */
void metrics_hist_observe(metrics_hist *h, double v)
{
	if (!isfinite(v))
		return;
	/* binary search for the first le >= v; the bounds are strictly increasing */
	int lo = 0, hi = h->n;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (v <= h->le[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	h->counts[lo]++;
	h->sum += v;
	h->count++;
}

json_object *metrics_hist_json(const metrics_hist *h)
{
	json_object *o = json_object_new_object();
	json_object *b = json_object_new_array_ext(h->n);
	for (int i = 0; i < h->n; i++)
		json_object_array_add(b, json_object_new_double(h->le[i]));
	json_object *c = json_object_new_array_ext(h->n + 1);
	for (int i = 0; i <= h->n; i++)
		json_object_array_add(c, json_object_new_uint64(h->counts[i]));
	json_object_object_add(o, "buckets", b);
	json_object_object_add(o, "counts", c);
	json_object_object_add(o, "sum", json_object_new_double(h->sum));
	json_object_object_add(o, "count", json_object_new_uint64(h->count));
	return o;
}

void metrics_init(metrics *m, int64_t max_model_len)
{
	memset(m, 0, sizeof(*m));
	metrics_hist_init(&m->ttft, METRICS_B_TTFT, max_model_len);
	metrics_hist_init(&m->itl, METRICS_B_ITL, max_model_len);
	metrics_hist_init(&m->e2e, METRICS_B_REQ, max_model_len);
	metrics_hist_init(&m->queue, METRICS_B_REQ, max_model_len);
	metrics_hist_init(&m->inference, METRICS_B_REQ, max_model_len);
	metrics_hist_init(&m->prefill, METRICS_B_REQ, max_model_len);
	metrics_hist_init(&m->decode, METRICS_B_REQ, max_model_len);
	metrics_hist_init(&m->prompt_len, METRICS_B_TOKENS, max_model_len);
	metrics_hist_init(&m->generation_len, METRICS_B_TOKENS, max_model_len);
	metrics_hist_init(&m->iteration_tokens, METRICS_B_ITER, max_model_len);
}

void metrics_copy(metrics *dst, const metrics *src)
{
	memcpy(dst, src, sizeof(*dst));
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

/* The STATS_REPLY object: gauges (g may be NULL: all zero), counters, then the histograms under
 * "histograms" with vLLM's metric names (without the "vllm:" prefix). */
json_object *metrics_json(const metrics *m, const metrics_gauges *g)
{
	static const metrics_gauges zero;
	if (!g)
		g = &zero;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "num_requests_running",
			       json_object_new_int(g->num_requests_running));
	json_object_object_add(o, "num_requests_waiting",
			       json_object_new_int(g->num_requests_waiting));
	/* a NaN would print as a bare NaN, which no JSON parser takes */
	double usage = isfinite(g->kv_cache_usage_perc) ? g->kv_cache_usage_perc : 0.0;
	json_object_object_add(o, "kv_cache_usage_perc", json_object_new_double(usage));
	json_object_object_add(o, "kv_blocks_total", json_object_new_int(g->kv_blocks_total));
	json_object_object_add(o, "kv_blocks_free", json_object_new_int(g->kv_blocks_free));
	add_u64(o, "num_preemptions", m->num_preemptions);
	add_u64(o, "prefix_cache_queries", m->prefix_cache_queries);
	add_u64(o, "prefix_cache_hits", m->prefix_cache_hits);
	add_u64(o, "prompt_tokens", m->prompt_tokens);
	add_u64(o, "prompt_tokens_cached", m->prompt_tokens_cached);
	add_u64(o, "generation_tokens", m->generation_tokens);
	add_u64(o, "mm_cache_queries", m->mm_cache_queries);
	add_u64(o, "mm_cache_hits", m->mm_cache_hits);

	json_object *rs = json_object_new_object();
	add_u64(rs, "stop", m->success_stop);
	add_u64(rs, "length", m->success_length);
	add_u64(rs, "abort", m->success_abort);
	add_u64(rs, "error", m->success_error);
	json_object_object_add(o, "request_success", rs);

	static const struct {
		const char *name;
		size_t off;
	} hists[] = {
		{ "time_to_first_token_seconds", offsetof(metrics, ttft) },
		{ "inter_token_latency_seconds", offsetof(metrics, itl) },
		{ "e2e_request_latency_seconds", offsetof(metrics, e2e) },
		{ "request_queue_time_seconds", offsetof(metrics, queue) },
		{ "request_inference_time_seconds", offsetof(metrics, inference) },
		{ "request_prefill_time_seconds", offsetof(metrics, prefill) },
		{ "request_decode_time_seconds", offsetof(metrics, decode) },
		{ "request_prompt_tokens", offsetof(metrics, prompt_len) },
		{ "request_generation_tokens", offsetof(metrics, generation_len) },
		{ "iteration_tokens_total", offsetof(metrics, iteration_tokens) },
	};
	json_object *hs = json_object_new_object();
	for (size_t i = 0; i < sizeof(hists) / sizeof(hists[0]); i++) {
		const metrics_hist *h = (const metrics_hist *)((const char *)m + hists[i].off);
		json_object_object_add(hs, hists[i].name, metrics_hist_json(h));
	}
	json_object_object_add(o, "histograms", hs);
	return o;
}
