/*
 * metrics: the counters and histograms qvld keeps for /metrics, with vLLM's names and buckets
 * (notes/serving-anchors.md §2), and their JSON form for the STATS_REPLY frame.
 *
 * A histogram has fixed upper bounds (le) and cumulative-free counts per bucket plus +Inf, a
 * sum and a count; the responder turns them into Prometheus text. Bucket sets:
 *   METRICS_B_TTFT   time_to_first_token_seconds: 0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25
 *                    0.5 0.75 1 2.5 5 7.5 10 20 40 80 160 640 2560
 *   METRICS_B_ITL    inter_token_latency_seconds: 0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4
 *                    0.5 0.75 1 2.5 5 7.5 10 20 40 80
 *   METRICS_B_REQ    e2e / queue / inference / prefill / decode seconds: 0.3 0.5 0.8 1 1.5 2 2.5
 *                    5 10 15 20 30 40 50 60 120 240 480 960 1920 7680
 *   METRICS_B_TOKENS request_prompt_tokens / generation_tokens: 1 2 5 10 20 50 100 … (1-2-5 up to
 *                    max_model_len)
 *   METRICS_B_ITER   iteration_tokens_total: 1 8 16 32 64 128 256 512 1024 2048 4096 8192 16384
 *
 * Threads: a metrics struct belongs to the engine thread; readers take a snapshot under the
 * owner's lock (metrics_copy).
 */
#ifndef QVL_METRICS_H
#define QVL_METRICS_H

#include <stdint.h>

#include <json.h>

#define METRICS_MAX_BUCKETS 40

typedef enum metrics_buckets {
	METRICS_B_TTFT = 0,
	METRICS_B_ITL,
	METRICS_B_REQ,
	METRICS_B_TOKENS,
	METRICS_B_ITER,
} metrics_buckets;

typedef struct metrics_hist {
	int n;                         /* finite buckets */
	double le[METRICS_MAX_BUCKETS];
	uint64_t counts[METRICS_MAX_BUCKETS + 1];  /* per bucket (not cumulative); last is +Inf */
	double sum;
	uint64_t count;
} metrics_hist;

/* max_model_len bounds the METRICS_B_TOKENS series. */
void metrics_hist_init(metrics_hist *h, metrics_buckets kind, int64_t max_model_len);
/* v goes to the first bucket with v <= le, else +Inf; NaN and ±Inf are ignored (an infinite sum
 * could not be written as JSON). */
void metrics_hist_observe(metrics_hist *h, double v);
/* {"buckets":[le…],"counts":[…, +Inf],"sum":s,"count":c} */
json_object *metrics_hist_json(const metrics_hist *h);

typedef struct metrics {
	/* counters (monotonic) */
	uint64_t prompt_tokens, generation_tokens;
	uint64_t prompt_tokens_cached;
	uint64_t num_preemptions;
	uint64_t prefix_cache_queries, prefix_cache_hits;  /* tokens */
	uint64_t mm_cache_queries, mm_cache_hits;          /* images (encoder cache) */
	uint64_t success_stop, success_length, success_abort, success_error;
	/* histograms */
	metrics_hist ttft, itl, e2e, queue, inference, prefill, decode;
	metrics_hist prompt_len, generation_len, iteration_tokens;
} metrics;

void metrics_init(metrics *m, int64_t max_model_len);
/* A snapshot (a plain copy: a metrics struct owns no memory). */
void metrics_copy(metrics *dst, const metrics *src);

/* Gauges are supplied by the caller at snapshot time. */
typedef struct metrics_gauges {
	int num_requests_running, num_requests_waiting;
	double kv_cache_usage_perc;    /* 0..1 */
	int kv_blocks_total, kv_blocks_free;
} metrics_gauges;

/* The STATS_REPLY object (keys in docs/protocol.md); g may be NULL (all gauges 0). */
json_object *metrics_json(const metrics *m, const metrics_gauges *g);

#endif
