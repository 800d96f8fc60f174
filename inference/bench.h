/*
 * bench: `qvl bench`, a serving load generator after `vllm bench serve` (the random dataset,
 * streaming chat completions), against qvl over HTTP (libcurl), FastCGI (qvl-fcgi without a web
 * server, fcgi_client) or the wire protocol (qvld directly, inference/wire.h).
 *
 * Method (docs: /work/shared/notes/serving-anchors.md §3):
 *   - one readiness request first (GET /v1/models over HTTP/FastCGI, HELLO over the wire, then a
 *     single test prompt, request number num_prompts's, which no timed request of the run
 *     repeats, so that no timed prompt or image is in the server's caches beforehand: runs
 *     against one server need seeds of their own); when it fails the target is reported
 *     unreachable and nothing is timed
 *   - N requests, each sent at its arrival time: Poisson arrivals at --request-rate (gaps
 *     -ln(1-u)/rate, seeded), or all at t=0 for inf; at most --max-concurrency in flight (a pool
 *     of that many worker threads is the semaphore)
 *   - prompts: about --input-len random words (HTTP/FastCGI; usage gives the exact count) or
 *     random token ids (wire); an optional random RGB PNG per request as a data: URL (not sent
 *     over the wire mode, which would need the image processor in the client)
 *   - streaming with stream_options.include_usage; every SSE event that carries content (or
 *     every TOKENS frame) is timestamped on arrival (CLOCK_MONOTONIC):
 *       TTFT = first token event − send, ITL = every gap between successive token events,
 *       TPOT = (E2EL − TTFT)/(out − 1) per request with out > 1, E2EL = last byte − send
 *   - metrics and their names as vLLM's calculate_metrics: mean/median/std/p99 (numpy's linear
 *     percentile), throughputs over the benchmark duration (first send → last finish); also
 *     the prompt tokens the server's prefix cache served (usage.prompt_tokens_details
 *     .cached_tokens, the wire's FINISH frame), so a prefill figure can be seen to be one
 *
 * Ownership: bench_result arrays are owned by whoever ran them (bench_results_free). Threads:
 * bench_run starts and joins its own workers; everything else is single-threaded.
 */
#ifndef QVL_BENCH_H
#define QVL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qerr.h"

typedef enum bench_mode {
	BENCH_MODE_HTTP = 1,
	BENCH_MODE_FCGI = 2,
	BENCH_MODE_WIRE = 3,
} bench_mode;

typedef struct bench_opts {
	bench_mode mode;
	const char *target;            /* borrowed: base URL, FastCGI target or qvld socket */
	const char *model;             /* borrowed; NULL: the server's first model */
	const char *api_key;           /* borrowed; NULL: none */
	int num_prompts;               /* ≥ 1 */
	int input_len, output_len;     /* ≥ 1 */
	int image_w, image_h;          /* 0: no image */
	double request_rate;           /* requests/s, > 0; INFINITY: all at once */
	int max_concurrency;           /* 0: unlimited */
	bool ignore_eos;
	uint64_t seed;
	const char *result_json;       /* borrowed; NULL: none */
} bench_opts;

/* One request's outcome; times in seconds. */
typedef struct bench_result {
	bool ok;
	double start;                  /* send time, relative to the benchmark start */
	double ttft, latency;          /* from send */
	int64_t prompt_tokens, output_tokens;
	int64_t cached_tokens;         /* of prompt_tokens, those the server's prefix cache held
					* (usage.prompt_tokens_details.cached_tokens) */
	double *events;                /* owned: token event times relative to send, ascending */
	size_t n_events, cap_events;
	char *error;                   /* owned; NULL when ok */
} bench_result;

void bench_results_free(bench_result *r, size_t n);

typedef struct bench_stat {
	double mean, median, std, p99;  /* ms */
} bench_stat;

typedef struct bench_metrics {
	int completed, failed;
	double duration;               /* s */
	int64_t total_input, total_output;
	int64_t total_cached;          /* prompt tokens served from the prefix cache */
	double request_throughput, output_throughput, total_token_throughput;
	double max_output_tokens_per_s;  /* peak over 1 s buckets of token events */
	int max_concurrent_requests;
	bench_stat ttft, tpot, itl, e2el;
} bench_metrics;

/* The p-th percentile (0..100) of sorted[0..n) with linear interpolation (numpy's default);
 * 0 for n == 0. */
double bench_percentile(const double *sorted, size_t n, double p);

/* Mean, median, population std and p99 of v[0..n) seconds, reported in ms (v is sorted in
 * place). All 0 for n == 0, as vLLM's `np.mean(x or 0)`. */
void bench_stat_of(double *v, size_t n, bench_stat *s);

/* Metrics of n results over a benchmark of duration seconds (> 0). Failed results count only
 * in failed. */
void bench_metrics_compute(const bench_result *r, size_t n, double duration, bench_metrics *m);

/* Arrival times t[0..n) in seconds from the start: all 0 when rate is infinite, else cumulative
 * exponential gaps of mean 1/rate drawn from seed (the same seed, the same schedule). */
void bench_arrivals(uint64_t seed, double rate, size_t n, double *t);

/* Print the result table as vllm bench serve does. */
void bench_print_table(FILE *f, const bench_opts *o, const bench_metrics *m);

/* Write the results as vLLM's --save-result JSON (its key names). QERR_IO naming the path. */
int bench_write_json(const char *path, const bench_opts *o, const char *model,
		     const bench_result *r, size_t n, const bench_metrics *m, qerr *e);

/* Encode w×h RGB pixels (rgb, h·w·3 bytes) as a PNG into *out (owned by the caller, *len
 * bytes). QERR_INVALID when libpng fails. */
int bench_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len, qerr *e);

/* Run the benchmark: the readiness check, then every request. On success *out holds
 * o->num_prompts results, *duration the benchmark time and *model (owned) the model name.
 * QERR_IO when the target cannot be reached or the readiness request fails (the message says
 * why); individual failures afterwards are results, not errors. */
int bench_run(const bench_opts *o, bench_result **out, double *duration, char **model, qerr *e);

/* `qvl bench ARGS…` (argv[0] is "bench"): 0 done, 1 the target failed, 2 bad usage. */
int bench_main(int argc, char **argv);

#endif
