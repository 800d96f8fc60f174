/*
 * bench: the load generator behind `qvl bench` (see bench.h for the method).
 *
 *   main thread: parse flags → readiness (models / HELLO, one test prompt) → arrivals →
 *                W workers (W = max_concurrency, or num_prompts) → join → metrics → table/JSON
 *   worker:      take the next request index k, build its body (prompt, image), sleep until
 *                arrival[k], send it, timestamp each token event as it arrives, store result k
 *
 * A request's body is built before its arrival time, so PNG encoding is not timed. Results are
 * written only by the worker that owns index k; the index counter is the only shared state
 * (under a mutex). The response of HTTP and FastCGI goes through one parser (resp_*): CGI
 * headers (FastCGI only), then SSE lines `data: {json}` until `data: [DONE]`.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json.h>
#include <png.h>

#include "alloc.h"
#include "fcgi_client.h"
#include "rng.h"
#include "strbuf.h"
#include "wire.h"

#define BENCH_MAX_WORKERS 1024
#define BENCH_ERRBODY_MAX 512
#define BENCH_CHAT_PATH "/v1/chat/completions"
#define BENCH_WIRE_MAX_ID 150000   /* Qwen's special ids start at 151643 */

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_results_free(bench_result *r, size_t n)
{
	if (!r)
		return;
	for (size_t i = 0; i < n; i++) {
		free(r[i].events);
		free(r[i].error);
	}
	free(r);
}

static void result_event(bench_result *r, double t)
{
	if (r->n_events == r->cap_events) {
		r->cap_events = r->cap_events ? 2 * r->cap_events : 64;
		r->events = xrealloc(r->events, r->cap_events * sizeof(double));
	}
	r->events[r->n_events++] = t;
}

static void result_fail(bench_result *r, const char *msg)
{
	r->ok = false;
	if (!r->error)
		r->error = xstrdup(msg);
}

/* ---- metrics ---- */

double bench_percentile(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	double rank = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)floor(rank), hi = lo + 1 < n ? lo + 1 : lo;
	double f = rank - (double)lo;
	return sorted[lo] + (sorted[hi] - sorted[lo]) * f;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void bench_stat_of(double *v, size_t n, bench_stat *s)
{
	memset(s, 0, sizeof(*s));
	if (n == 0)
		return;
	qsort(v, n, sizeof(double), cmp_double);
	double sum = 0, sq = 0;
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	double mean = sum / (double)n;
	for (size_t i = 0; i < n; i++)
		sq += (v[i] - mean) * (v[i] - mean);
	s->mean = mean * 1e3;
	s->std = sqrt(sq / (double)n) * 1e3;
	s->median = bench_percentile(v, n, 50) * 1e3;
	s->p99 = bench_percentile(v, n, 99) * 1e3;
}

void bench_metrics_compute(const bench_result *r, size_t n, double duration, bench_metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->duration = duration;
	size_t n_itl = 0;
	for (size_t i = 0; i < n; i++)
		if (r[i].ok && r[i].n_events > 1)
			n_itl += r[i].n_events - 1;
	double *ttft = xcalloc(n + 1, sizeof(double)), *tpot = xcalloc(n + 1, sizeof(double));
	double *e2el = xcalloc(n + 1, sizeof(double)), *itl = xcalloc(n_itl + 1, sizeof(double));
	size_t n_tpot = 0, k = 0;
	double t_end = 0;
	for (size_t i = 0; i < n; i++) {
		const bench_result *q = &r[i];
		if (!q->ok) {
			m->failed++;
			continue;
		}
		ttft[m->completed] = q->ttft;
		e2el[m->completed] = q->latency;
		m->completed++;
		m->total_input += q->prompt_tokens;
		m->total_cached += q->cached_tokens;
		m->total_output += q->output_tokens;
		if (q->output_tokens > 1)
			tpot[n_tpot++] = (q->latency - q->ttft) / (double)(q->output_tokens - 1);
		for (size_t j = 1; j < q->n_events; j++)
			itl[k++] = q->events[j] - q->events[j - 1];
		if (q->start + q->latency > t_end)
			t_end = q->start + q->latency;
	}
	if (duration > 0) {
		m->request_throughput = m->completed / duration;
		m->output_throughput = (double)m->total_output / duration;
		m->total_token_throughput = (double)(m->total_input + m->total_output) / duration;
	}
	/* peak token events per 1 s bucket of the benchmark */
	size_t nb = (size_t)ceil(t_end) + 1;
	int *buckets = xcalloc(nb, sizeof(int));
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; r[i].ok && j < r[i].n_events; j++) {
			double t = r[i].start + r[i].events[j];
			size_t b = t < 0 ? 0 : (size_t)t;
			if (b < nb)
				buckets[b]++;
		}
	}
	for (size_t b = 0; b < nb; b++)
		if (buckets[b] > m->max_output_tokens_per_s)
			m->max_output_tokens_per_s = buckets[b];
	/* peak requests in flight: the most whose [start, start + latency) holds another's start
	 * (O(n²), n is num_prompts) */
	for (size_t i = 0; i < n; i++) {
		if (!r[i].ok)
			continue;
		int c = 0;
		for (size_t j = 0; j < n; j++)
			if (r[j].ok && r[j].start <= r[i].start &&
			    r[j].start + r[j].latency > r[i].start)
				c++;
		if (c > m->max_concurrent_requests)
			m->max_concurrent_requests = c;
	}
	bench_stat_of(ttft, (size_t)m->completed, &m->ttft);
	bench_stat_of(tpot, n_tpot, &m->tpot);
	bench_stat_of(itl, k, &m->itl);
	bench_stat_of(e2el, (size_t)m->completed, &m->e2el);
	free(ttft);
	free(tpot);
	free(e2el);
	free(itl);
	free(buckets);
}

void bench_arrivals(uint64_t seed, double rate, size_t n, double *t)
{
	uint64_t key = rng_key(seed, 0x617272ull);   /* "arr" */
	double now = 0;
	for (size_t i = 0; i < n; i++) {
		t[i] = now;
		if (isinf(rate))
			continue;
		double u = (double)(rng_u64(key, i) >> 11) * (1.0 / 9007199254740992.0);  /* [0,1) */
		now += -log1p(-u) / rate;
	}
}

/* ---- output ---- */

static void centered(FILE *f, const char *s, char c)
{
	int pad = 50 - (int)strlen(s), left = pad / 2;
	for (int i = 0; i < left; i++)
		fputc(c, f);
	fputs(s, f);
	for (int i = left; i < pad; i++)
		fputc(c, f);
	fputc('\n', f);
}

static void stat_rows(FILE *f, const char *title, const char *abbr, const bench_stat *s)
{
	char k[64];
	centered(f, title, '-');
	snprintf(k, sizeof(k), "Mean %s (ms):", abbr);
	fprintf(f, "%-40s %-10.2f\n", k, s->mean);
	snprintf(k, sizeof(k), "Median %s (ms):", abbr);
	fprintf(f, "%-40s %-10.2f\n", k, s->median);
	snprintf(k, sizeof(k), "P99 %s (ms):", abbr);
	fprintf(f, "%-40s %-10.2f\n", k, s->p99);
}

void bench_print_table(FILE *f, const bench_opts *o, const bench_metrics *m)
{
	centered(f, " Serving Benchmark Result ", '=');
	fprintf(f, "%-40s %-10d\n", "Successful requests:", m->completed);
	fprintf(f, "%-40s %-10d\n", "Failed requests:", m->failed);
	if (o->max_concurrency > 0)
		fprintf(f, "%-40s %-10d\n", "Maximum request concurrency:", o->max_concurrency);
	if (!isinf(o->request_rate))
		fprintf(f, "%-40s %-10.2f\n", "Request rate configured (RPS):", o->request_rate);
	fprintf(f, "%-40s %-10.2f\n", "Benchmark duration (s):", m->duration);
	fprintf(f, "%-40s %-10lld\n", "Total input tokens:", (long long)m->total_input);
	if (m->total_cached)   /* a benchmark of prefill wants to know its prompts were computed */
		fprintf(f, "%-40s %-10lld\n", "Prefix-cached input tokens:",
			(long long)m->total_cached);
	fprintf(f, "%-40s %-10lld\n", "Total generated tokens:", (long long)m->total_output);
	fprintf(f, "%-40s %-10.2f\n", "Request throughput (req/s):", m->request_throughput);
	fprintf(f, "%-40s %-10.2f\n", "Output token throughput (tok/s):", m->output_throughput);
	fprintf(f, "%-40s %-10.2f\n", "Peak output token throughput (tok/s):",
		m->max_output_tokens_per_s);
	fprintf(f, "%-40s %-10.2f\n", "Peak concurrent requests:",
		(double)m->max_concurrent_requests);
	fprintf(f, "%-40s %-10.2f\n", "Total Token throughput (tok/s):", m->total_token_throughput);
	stat_rows(f, "Time to First Token", "TTFT", &m->ttft);
	stat_rows(f, "Time per Output Token (excl. 1st token)", "TPOT", &m->tpot);
	stat_rows(f, "Inter-token Latency", "ITL", &m->itl);
	stat_rows(f, "End-to-end Latency", "E2EL", &m->e2el);
	centered(f, "", '=');
}

static void put_stat(json_object *j, const char *name, const bench_stat *s)
{
	char k[64];
	snprintf(k, sizeof(k), "mean_%s_ms", name);
	json_object_object_add(j, k, json_object_new_double(s->mean));
	snprintf(k, sizeof(k), "median_%s_ms", name);
	json_object_object_add(j, k, json_object_new_double(s->median));
	snprintf(k, sizeof(k), "std_%s_ms", name);
	json_object_object_add(j, k, json_object_new_double(s->std));
	snprintf(k, sizeof(k), "p99_%s_ms", name);
	json_object_object_add(j, k, json_object_new_double(s->p99));
}

int bench_write_json(const char *path, const bench_opts *o, const char *model,
		     const bench_result *r, size_t n, const bench_metrics *m, qerr *e)
{
	json_object *j = json_object_new_object();
	char date[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(date, sizeof(date), "%Y%m%d-%H%M%S", localtime_r(&now, &tm));
	static const char *const backends[] = { "", "openai-chat", "qvl-fcgi", "qvl-wire" };
	json_object_object_add(j, "date", json_object_new_string(date));
	json_object_object_add(j, "endpoint_type", json_object_new_string(backends[o->mode]));
	json_object_object_add(j, "backend", json_object_new_string(backends[o->mode]));
	json_object_object_add(j, "model_id", json_object_new_string(model ? model : ""));
	json_object_object_add(j, "num_prompts", json_object_new_int(o->num_prompts));
	json_object_object_add(j, "request_rate", isinf(o->request_rate)
				? json_object_new_string("inf") : json_object_new_double(o->request_rate));
	json_object_object_add(j, "burstiness", json_object_new_double(1.0));
	json_object_object_add(j, "max_concurrency", o->max_concurrency > 0
				? json_object_new_int(o->max_concurrency) : NULL);
	json_object_object_add(j, "duration", json_object_new_double(m->duration));
	json_object_object_add(j, "completed", json_object_new_int(m->completed));
	json_object_object_add(j, "failed", json_object_new_int(m->failed));
	json_object_object_add(j, "total_input_tokens", json_object_new_int64(m->total_input));
	json_object_object_add(j, "total_cached_tokens", json_object_new_int64(m->total_cached));
	json_object_object_add(j, "total_output_tokens", json_object_new_int64(m->total_output));
	json_object_object_add(j, "request_throughput", json_object_new_double(m->request_throughput));
	json_object_object_add(j, "output_throughput", json_object_new_double(m->output_throughput));
	json_object_object_add(j, "total_token_throughput",
			       json_object_new_double(m->total_token_throughput));
	json_object_object_add(j, "max_output_tokens_per_s",
			       json_object_new_double(m->max_output_tokens_per_s));
	json_object_object_add(j, "max_concurrent_requests",
			       json_object_new_int(m->max_concurrent_requests));
	json_object *in = json_object_new_array(), *out = json_object_new_array();
	json_object *cached = json_object_new_array();
	json_object *ttfts = json_object_new_array(), *itls = json_object_new_array();
	json_object *errs = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		json_object_array_add(in, json_object_new_int64(r[i].prompt_tokens));
		json_object_array_add(out, json_object_new_int64(r[i].output_tokens));
		json_object_array_add(cached, json_object_new_int64(r[i].cached_tokens));
		json_object_array_add(ttfts, json_object_new_double(r[i].ok ? r[i].ttft : 0));
		json_object *g = json_object_new_array();
		for (size_t k = 1; r[i].ok && k < r[i].n_events; k++)
			json_object_array_add(g, json_object_new_double(r[i].events[k] -
									r[i].events[k - 1]));
		json_object_array_add(itls, g);
		json_object_array_add(errs, json_object_new_string(r[i].error ? r[i].error : ""));
	}
	json_object_object_add(j, "input_lens", in);
	json_object_object_add(j, "output_lens", out);
	json_object_object_add(j, "cached_lens", cached);
	json_object_object_add(j, "ttfts", ttfts);
	json_object_object_add(j, "itls", itls);
	json_object_object_add(j, "errors", errs);
	put_stat(j, "ttft", &m->ttft);
	put_stat(j, "tpot", &m->tpot);
	put_stat(j, "itl", &m->itl);
	put_stat(j, "e2el", &m->e2el);
	int rc = 0;
	FILE *f = fopen(path, "w");
	if (!f || fputs(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN), f) < 0 ||
	    fputc('\n', f) < 0)
		rc = qerr_set(e, QERR_IO, "%s: %s", path, strerror(errno));
	if (f && fclose(f) && !rc)
		rc = qerr_set(e, QERR_IO, "%s: %s", path, strerror(errno));
	json_object_put(j);
	return rc;
}

/* ---- request generation ---- */

static void png_write_cb(png_structp png, png_bytep data, png_size_t len)
{
	strbuf_add(png_get_io_ptr(png), data, len);
}

static void png_flush_cb(png_structp png)
{
	(void)png;
}

int bench_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len, qerr *e)
{
	strbuf *volatile sb = xcalloc(1, sizeof(strbuf));
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	if (!png || !info || setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		strbuf_deinit(sb);
		free(sb);
		return qerr_set(e, QERR_INVALID, "png: encoding a %dx%d image failed", w, h);
	}
	png_set_write_fn(png, sb, png_write_cb, png_flush_cb);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int y = 0; y < h; y++)
		png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
	png_write_end(png, info);
	png_destroy_write_struct(&png, &info);
	*len = sb->len;
	*out = (uint8_t *)strbuf_detach(sb, NULL);
	free(sb);
	return 0;
}

static void base64(strbuf *out, const uint8_t *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		char q[4] = { tab[v >> 18 & 63], tab[v >> 12 & 63],
			      i + 1 < n ? tab[v >> 6 & 63] : '=', i + 2 < n ? tab[v & 63] : '=' };
		strbuf_add(out, q, 4);
	}
}

static void json_str(strbuf *out, const char *s)
{
	json_object *j = json_object_new_string(s);
	strbuf_adds(out, json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
	json_object_put(j);
}

/* Common words, each one token with its leading space in Qwen's vocabulary. */
static const char *const words[] = {
	"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
	"by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but",
	"have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
	"has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "time",
	"people", "water", "house", "light", "river", "green", "small", "world", "music", "city",
	"school", "night", "story", "table", "window",
};

/* The chat request body of request k (text prompt, optional image). */
static char *chat_body(const bench_opts *o, const char *model, uint64_t k, qerr *e)
{
	uint64_t key = rng_key(o->seed, 1000 + k);
	strbuf b = { 0 };
	strbuf_adds(&b, "{\"model\":");
	json_str(&b, model);
	strbuf_adds(&b, ",\"messages\":[{\"role\":\"user\",\"content\":");
	if (o->image_w > 0) {
		size_t np = (size_t)o->image_w * (size_t)o->image_h * 3;
		uint8_t *rgb = xmalloc(np), *png = NULL;
		uint64_t ikey = rng_key(o->seed, 0x696d67000000ull + k);
		for (size_t i = 0; i < np; i += 8) {
			uint64_t v = rng_u64(ikey, i / 8);
			for (size_t j = 0; j < 8 && i + j < np; j++)
				rgb[i + j] = (uint8_t)(v >> (8 * j));
		}
		size_t len = 0;
		int rc = bench_png_encode(rgb, o->image_w, o->image_h, &png, &len, e);
		free(rgb);
		if (rc) {
			strbuf_deinit(&b);
			return NULL;
		}
		strbuf_adds(&b, "[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,");
		base64(&b, png, len);
		free(png);
		strbuf_adds(&b, "\"}},{\"type\":\"text\",\"text\":\"");
	} else {
		strbuf_addc(&b, '"');
	}
	for (int i = 0; i < o->input_len; i++) {
		if (i)
			strbuf_addc(&b, ' ');
		strbuf_adds(&b, words[rng_u64(key, (uint64_t)i) % (sizeof(words) / sizeof(words[0]))]);
	}
	strbuf_adds(&b, o->image_w > 0 ? "\"}]" : "\"");
	strbuf_addf(&b, "}],\"max_tokens\":%d,\"temperature\":0,\"stream\":true,"
		    "\"stream_options\":{\"include_usage\":true}%s}", o->output_len,
		    o->ignore_eos ? ",\"ignore_eos\":true" : "");
	return strbuf_detach(&b, NULL);
}

/* ---- responses: CGI headers (FastCGI), then SSE ---- */

typedef struct resp {
	bench_result *r;
	double t_send;                 /* mono() at send */
	bool cgi;                      /* CGI headers come first (FastCGI) */
	bool in_body, done, have_usage;
	int status;                    /* HTTP status (0: not known yet) */
	void *curl;                    /* borrowed: HTTP mode, to read the status */
	strbuf hdr, line, errbody;     /* owned */
} resp;

static void resp_deinit(resp *p)
{
	strbuf_deinit(&p->hdr);
	strbuf_deinit(&p->line);
	strbuf_deinit(&p->errbody);
}

static void resp_event(resp *p, const char *data, double t)
{
	if (!strcmp(data, "[DONE]")) {
		p->done = true;
		return;
	}
	json_object *j = json_tokener_parse(data), *v, *c0, *d, *x;
	if (!j) {
		result_fail(p->r, "malformed SSE event");
		return;
	}
	if (json_object_object_get_ex(j, "error", &v)) {
		json_object *msg;
		result_fail(p->r, json_object_object_get_ex(v, "message", &msg)
				  ? json_object_get_string(msg) : json_object_to_json_string(v));
	}
	/* a token event: a choice whose delta carries content (the first chunk's bare role and
	 * the last chunk's finish_reason are not tokens) */
	if (json_object_object_get_ex(j, "choices", &v) && json_object_is_type(v, json_type_array) &&
	    json_object_array_length(v) > 0 && (c0 = json_object_array_get_idx(v, 0)) &&
	    json_object_object_get_ex(c0, "delta", &d) &&
	    ((json_object_object_get_ex(d, "content", &x) && json_object_is_type(x, json_type_string) &&
	      json_object_get_string_len(x) > 0) ||
	     json_object_object_get_ex(d, "tool_calls", &x) ||
	     json_object_object_get_ex(d, "reasoning_content", &x)))
		result_event(p->r, t);
	if (json_object_object_get_ex(j, "usage", &v) && json_object_is_type(v, json_type_object)) {
		if (json_object_object_get_ex(v, "prompt_tokens", &x))
			p->r->prompt_tokens = json_object_get_int64(x);
		if (json_object_object_get_ex(v, "completion_tokens", &x))
			p->r->output_tokens = json_object_get_int64(x);
		json_object *det;
		if (json_object_object_get_ex(v, "prompt_tokens_details", &det) &&
		    json_object_is_type(det, json_type_object) &&
		    json_object_object_get_ex(det, "cached_tokens", &x))
			p->r->cached_tokens = json_object_get_int64(x);
		p->have_usage = true;
	}
	json_object_put(j);
}

static void resp_body(resp *p, const char *s, size_t n, double t)
{
	if (p->status != 200) {
		if (p->errbody.len < BENCH_ERRBODY_MAX)
			strbuf_add(&p->errbody, s, n < BENCH_ERRBODY_MAX ? n : BENCH_ERRBODY_MAX);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\n') {
			strbuf_addc(&p->line, s[i]);
			continue;
		}
		size_t l = p->line.len;
		if (l && p->line.s[l - 1] == '\r')
			strbuf_truncate(&p->line, --l);
		const char *ln = strbuf_str(&p->line);
		if (!strncmp(ln, "data:", 5))
			resp_event(p, ln + 5 + (ln[5] == ' '), t);
		strbuf_truncate(&p->line, 0);
	}
}

/* Feed response bytes that arrived at t (seconds since send). */
static void resp_feed(resp *p, const char *s, size_t n, double t)
{
	if (p->cgi && !p->in_body) {
		strbuf_add(&p->hdr, s, n);
		const char *h = strbuf_str(&p->hdr), *end = strstr(h, "\r\n\r\n");
		size_t skip = 4;
		if (!end) {
			end = strstr(h, "\n\n");
			skip = 2;
		}
		if (!end)
			return;
		p->in_body = true;
		p->status = 200;
		const char *st = strstr(h, "Status:");
		if (st && st < end)
			p->status = atoi(st + 7);
		size_t off = (size_t)(end - h) + skip;
		strbuf rest = { 0 };
		strbuf_add(&rest, h + off, p->hdr.len - off);
		resp_body(p, rest.s ? rest.s : "", rest.len, t);
		strbuf_deinit(&rest);
		return;
	}
	resp_body(p, s, n, t);
}

/* Decide a finished response: ok only for status 200, [DONE] and no error event. */
static void resp_finish(resp *p, double t)
{
	bench_result *r = p->r;
	r->latency = t;
	if (p->status != 200 && !r->error) {
		char msg[BENCH_ERRBODY_MAX + 64];
		snprintf(msg, sizeof(msg), "HTTP %d: %.*s", p->status, (int)p->errbody.len,
			 p->errbody.s ? p->errbody.s : "");
		result_fail(r, msg);
	} else if (!r->error && !p->done) {
		result_fail(r, "the stream ended without [DONE]");
	}
	if (r->error)
		return;
	r->ok = true;
	r->ttft = r->n_events ? r->events[0] : t;
	if (!p->have_usage)
		r->output_tokens = (int64_t)r->n_events;
}

/* ---- transports ---- */

typedef struct runner {
	const bench_opts *o;
	const char *model;             /* borrowed */
	char *url;                     /* owned: HTTP chat URL */
	int vocab;                     /* wire: ids drawn below min(vocab, BENCH_WIRE_MAX_ID) */
	int32_t avoid[SAMPLER_MAX_EOS + 1];
	int n_avoid;
	double t0;                     /* mono() at the benchmark start */
	const double *arrival;
	bench_result *res;
	pthread_mutex_t mu;
	int next;
} runner;

static size_t curl_write(char *p, size_t size, size_t n, void *ctx)
{
	resp *r = ctx;
	double t = mono() - r->t_send;
	if (!r->status) {
		long code = 0;
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
		r->status = (int)code;
	}
	resp_feed(r, p, size * n, t);
	return size * n;
}

static void http_request(runner *R, const char *body, bench_result *r)
{
	resp p = { .r = r };
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char *auth = NULL;
	if (R->o->api_key) {
		auth = xasprintf("Authorization: Bearer %s", R->o->api_key);
		h = curl_slist_append(h, auth);
	}
	char err[CURL_ERROR_SIZE] = "";
	p.curl = c;
	curl_easy_setopt(c, CURLOPT_URL, R->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &p);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	p.t_send = mono();
	r->start = p.t_send - R->t0;
	CURLcode rc = curl_easy_perform(c);
	double t = mono() - p.t_send;
	if (rc != CURLE_OK) {
		char msg[CURL_ERROR_SIZE + 64];
		snprintf(msg, sizeof(msg), "%s: %s", R->url, err[0] ? err : curl_easy_strerror(rc));
		result_fail(r, msg);
		r->latency = t;
	} else {
		if (!p.status) {
			long code = 0;
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
			p.status = (int)code;
		}
		resp_finish(&p, t);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(auth);
	resp_deinit(&p);
}

static void fcgi_out(void *ctx, const uint8_t *s, size_t n)
{
	resp *p = ctx;
	resp_feed(p, (const char *)s, n, mono() - p->t_send);
}

/* One FastCGI request; *p is set up by the caller (its result), the reply fed into it. */
static int fcgi_call(const bench_opts *o, const char *method, const char *path, const char *body,
		     resp *p, qerr *e)
{
	char clen[32], *auth = NULL;
	size_t blen = body ? strlen(body) : 0;
	snprintf(clen, sizeof(clen), "%zu", blen);
	fcgi_param params[10] = {
		{ "GATEWAY_INTERFACE", "CGI/1.1" }, { "REQUEST_METHOD", method },
		{ "REQUEST_URI", path },            { "SCRIPT_NAME", path },
		{ "QUERY_STRING", "" },             { "SERVER_PROTOCOL", "HTTP/1.1" },
		{ "CONTENT_TYPE", "application/json" }, { "CONTENT_LENGTH", clen },
	};
	size_t np = 8;
	if (o->api_key) {
		auth = xasprintf("Bearer %s", o->api_key);
		params[np++] = (fcgi_param){ "HTTP_AUTHORIZATION", auth };
	}
	p->cgi = true;
	p->t_send = mono();
	int rc = fcgi_request(o->target, params, np, body, blen, fcgi_out, p, e);
	free(auth);
	return rc;
}

static void fcgi_chat(runner *R, const char *body, bench_result *r)
{
	resp p = { .r = r };
	qerr e = { 0 };
	int rc = fcgi_call(R->o, "POST", BENCH_CHAT_PATH, body, &p, &e);
	double t = mono() - p.t_send;
	r->start = p.t_send - R->t0;
	if (rc) {
		result_fail(r, e.msg);
		r->latency = t;
	} else {
		resp_finish(&p, t);
	}
	resp_deinit(&p);
}

/* wire mode: a connection per worker */

static int write_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Read one frame (payload NUL-terminated in *buf); type 0 on failure. */
static wire_header read_frame(int fd, uint8_t **buf, size_t *cap)
{
	uint8_t h[WIRE_HEADER_SIZE];
	wire_header hd = { 0 };
	if (read_all(fd, h, sizeof(h)) || wire_header_parse(h, &hd, NULL))
		return (wire_header){ 0 };
	if ((size_t)hd.length + 1 > *cap) {
		*cap = (size_t)hd.length + 1;
		*buf = xrealloc(*buf, *cap);
	}
	if (read_all(fd, *buf, hd.length))
		return (wire_header){ 0 };
	(*buf)[hd.length] = 0;
	return hd;
}

/* Connect to qvld and read MODEL_INFO; returns the fd or a negative code. With R, fills its
 * vocabulary and ids to avoid; with model, the first served name (owned). */
static int wire_connect(const char *path, runner *R, char **model, qerr *e)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return qerr_set(e, QERR_IO, "qvld at %s: socket path too long", path);
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return qerr_set(e, QERR_IO, "qvld at %s: %s", path, strerror(err));
	}
	strbuf o = { 0 };
	wire_put_frame(&o, WIRE_T_HELLO, 0, NULL, 0);
	int rc = write_all(fd, o.s, o.len);
	strbuf_deinit(&o);
	uint8_t *buf = NULL;
	size_t cap = 0;
	wire_header h = rc ? (wire_header){ 0 } : read_frame(fd, &buf, &cap);
	json_object *j = h.type == WIRE_T_MODEL_INFO ? json_tokener_parse((char *)buf) : NULL, *v;
	free(buf);
	if (!j) {
		close(fd);
		return qerr_set(e, QERR_IO, "qvld at %s: no MODEL_INFO after HELLO", path);
	}
	if (R) {
		R->vocab = json_object_object_get_ex(j, "vocab_size", &v) ? json_object_get_int(v) : 0;
		R->n_avoid = 0;
		if (json_object_object_get_ex(j, "image_token_id", &v))
			R->avoid[R->n_avoid++] = json_object_get_int(v);
		if (json_object_object_get_ex(j, "eos_token_ids", &v) &&
		    json_object_is_type(v, json_type_array))
			for (size_t i = 0; i < json_object_array_length(v) && R->n_avoid <= SAMPLER_MAX_EOS; i++)
				R->avoid[R->n_avoid++] = json_object_get_int(json_object_array_get_idx(v, i));
	}
	if (model)
		*model = xstrdup(json_object_object_get_ex(j, "model", &v) ? json_object_get_string(v)
									 : "");
	json_object_put(j);
	if (R && R->vocab < 2) {
		close(fd);
		return qerr_set(e, QERR_IO, "qvld at %s: MODEL_INFO has no vocab_size", path);
	}
	return fd;
}

static int32_t *wire_ids(const runner *R, uint64_t k)
{
	uint64_t key = rng_key(R->o->seed, 1000 + k);
	int hi = R->vocab < BENCH_WIRE_MAX_ID ? R->vocab : BENCH_WIRE_MAX_ID;
	int32_t *ids = xmalloc((size_t)R->o->input_len * sizeof(int32_t));
	for (int i = 0; i < R->o->input_len; i++) {
		for (uint64_t t = 0;; t++) {
			int32_t id = (int32_t)(rng_u64(key, (uint64_t)i * 64 + t) % (uint64_t)hi);
			bool bad = false;
			for (int a = 0; a < R->n_avoid; a++)
				bad |= id == R->avoid[a];
			if (!bad || t == 63) {
				ids[i] = id;
				break;
			}
		}
	}
	return ids;
}

/* One request over the wire on *fd (connecting when < 0; closed and set to -1 on failure). */
static void wire_request(runner *R, int *fd, const int32_t *ids, uint64_t id, bench_result *r)
{
	qerr e = { 0 };
	double t_send = mono();
	r->start = t_send - R->t0;
	if (*fd < 0 && (*fd = wire_connect(R->o->target, NULL, NULL, &e)) < 0) {
		result_fail(r, e.msg);
		return;
	}
	wire_submit s;
	memset(&s, 0, sizeof(s));
	s.n_ids = (uint32_t)R->o->input_len;
	s.ids = ids;
	s.sp = (sampling_params){ .temperature = 0, .top_p = 1, .repetition_penalty = 1,
				  .ignore_eos = R->o->ignore_eos, .logprobs = -1 };
	s.max_tokens = R->o->output_len;
	s.n = 1;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	s.arrival = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
	strbuf out = { 0 };
	wire_submit_put(&out, id, &s);
	t_send = mono();
	r->start = t_send - R->t0;
	bool ok = write_all(*fd, out.s, out.len) == 0;
	strbuf_deinit(&out);
	uint8_t *buf = NULL;
	size_t cap = 0;
	if (!ok)
		result_fail(r, "qvld: send failed");
	while (ok) {
		wire_header h = read_frame(*fd, &buf, &cap);
		double t = mono() - t_send;
		if (h.type == WIRE_T_TOKENS && h.id == id) {
			result_event(r, t);
		} else if (h.type == WIRE_T_FINISH && h.id == id) {
			wire_finish f;
			if (wire_finish_decode(buf, h.length, &f, &e)) {
				result_fail(r, e.msg);
				ok = false;
				break;
			}
			r->latency = t;
			r->prompt_tokens = f.prompt_tokens;
			r->output_tokens = f.completion_tokens;
			r->cached_tokens = f.cached_tokens;
			r->ttft = r->n_events ? r->events[0] : t;
			r->ok = true;
			break;
		} else if (h.type == WIRE_T_ERROR) {
			wire_error we;
			if (wire_error_decode(buf, h.length, &we, &e))
				result_fail(r, e.msg);
			else
				result_fail(r, we.message);
			r->latency = t;
			ok = h.id != 0;
			break;
		} else {
			result_fail(r, "qvld: connection lost or unexpected frame");
			r->latency = t;
			ok = false;
		}
	}
	free(buf);
	if (!ok) {
		close(*fd);
		*fd = -1;
	}
}

/* Run request slot k (its arrival time and result) with the prompt (and image) of request number
 * `prompt`: build its body, wait for its arrival, send it. The timed requests have prompt = k;
 * the readiness check uses one no timed request uses. */
static void run_one(runner *R, int k, uint64_t prompt, int *wire_fd)
{
	bench_result *r = &R->res[k];
	qerr e = { 0 };
	char *body = NULL;
	int32_t *ids = NULL;
	if (R->o->mode == BENCH_MODE_WIRE)
		ids = wire_ids(R, prompt);
	else if (!(body = chat_body(R->o, R->model, prompt, &e))) {
		result_fail(r, e.msg);
		return;
	}
	double wait = R->t0 + R->arrival[k] - mono();
	if (wait > 0) {
		struct timespec ts = { (time_t)wait, (long)((wait - floor(wait)) * 1e9) };
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
	}
	switch (R->o->mode) {
	case BENCH_MODE_HTTP: http_request(R, body, r); break;
	case BENCH_MODE_FCGI: fcgi_chat(R, body, r); break;
	case BENCH_MODE_WIRE: wire_request(R, wire_fd, ids, (uint64_t)k + 1, r); break;
	}
	free(body);
	free(ids);
}

static void *worker(void *arg)
{
	runner *R = arg;
	int fd = -1;
	for (;;) {
		pthread_mutex_lock(&R->mu);
		int k = R->next < R->o->num_prompts ? R->next++ : -1;
		pthread_mutex_unlock(&R->mu);
		if (k < 0)
			break;
		run_one(R, k, (uint64_t)k, &fd);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static size_t curl_collect(char *p, size_t size, size_t n, void *ctx)
{
	strbuf_add(ctx, p, size * n);
	return size * n;
}

static void fcgi_collect(void *ctx, const uint8_t *s, size_t n)
{
	strbuf_add(ctx, s, n);
}

/* GET /v1/models over HTTP or FastCGI: the first model id (owned). QERR_IO when the target
 * does not answer 200 with a model list. */
static int first_model(const runner *R, char **model, qerr *e)
{
	const bench_opts *o = R->o;
	strbuf b = { 0 };
	int status = 0, rc = 0;
	const char *body = "";
	if (o->mode == BENCH_MODE_HTTP) {
		char *url = xasprintf("%s/v1/models", o->target), *auth = NULL;
		char err[CURL_ERROR_SIZE] = "";
		CURL *c = curl_easy_init();
		struct curl_slist *h = NULL;
		if (o->api_key) {
			auth = xasprintf("Authorization: Bearer %s", o->api_key);
			h = curl_slist_append(h, auth);
		}
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
		CURLcode cc = curl_easy_perform(c);
		long code = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		status = (int)code;
		if (cc != CURLE_OK)
			rc = qerr_set(e, QERR_IO, "%s: %s", url, err[0] ? err : curl_easy_strerror(cc));
		curl_slist_free_all(h);
		curl_easy_cleanup(c);
		free(url);
		free(auth);
		body = strbuf_str(&b);
	} else {
		char *auth = NULL;
		fcgi_param params[8] = {
			{ "GATEWAY_INTERFACE", "CGI/1.1" }, { "REQUEST_METHOD", "GET" },
			{ "REQUEST_URI", "/v1/models" },    { "SCRIPT_NAME", "/v1/models" },
			{ "QUERY_STRING", "" },             { "SERVER_PROTOCOL", "HTTP/1.1" },
		};
		size_t np = 6;
		if (o->api_key) {
			auth = xasprintf("Bearer %s", o->api_key);
			params[np++] = (fcgi_param){ "HTTP_AUTHORIZATION", auth };
		}
		rc = fcgi_request(o->target, params, np, NULL, 0, fcgi_collect, &b, e);
		free(auth);
		const char *h = strbuf_str(&b), *end = strstr(h, "\r\n\r\n"), *st = strstr(h, "Status:");
		status = 200;
		if (st && (!end || st < end))
			status = atoi(st + 7);
		body = end ? end + 4 : "";
	}
	json_object *j = NULL, *d, *m0, *id;
	if (!rc && status != 200)
		rc = qerr_set(e, QERR_IO, "%s: GET /v1/models answered %d: %.200s", o->target, status,
			      body);
	if (!rc && (!(j = json_tokener_parse(body)) || !json_object_object_get_ex(j, "data", &d) ||
		    !json_object_is_type(d, json_type_array) || json_object_array_length(d) < 1 ||
		    !(m0 = json_object_array_get_idx(d, 0)) ||
		    !json_object_object_get_ex(m0, "id", &id)))
		rc = qerr_set(e, QERR_IO, "%s: GET /v1/models did not list a model", o->target);
	if (!rc)
		*model = xstrdup(json_object_get_string(id));
	json_object_put(j);
	strbuf_deinit(&b);
	return rc;
}

int bench_run(const bench_opts *o, bench_result **out, double *duration, char **model, qerr *e)
{
	runner R = { .o = o };
	char *served = NULL;
	int rc = 0;
	*out = NULL;
	*model = NULL;
	if (o->mode == BENCH_MODE_WIRE) {
		int fd = wire_connect(o->target, &R, &served, e);
		if (fd < 0)
			return fd;
		close(fd);
	} else {
		if (o->mode == BENCH_MODE_HTTP)
			R.url = xasprintf("%s%s", o->target, BENCH_CHAT_PATH);
		if ((rc = first_model(&R, &served, e))) {
			free(R.url);
			return rc;
		}
	}
	R.model = o->model ? o->model : served;
	/* the readiness check, untimed: a request of the same shape as the timed ones with the
	 * prompt (and image) of request number num_prompts, which no timed request has. (vllm bench
	 * serve sends request 0's own prompt, which then finds its blocks in the server's prefix
	 * cache, and its image in an encoder cache, when it is timed: with a few requests a row, as
	 * in a TTFT or prefill measurement, that one cached request moves the mean and even the
	 * median.) */
	double zero = 0;
	bench_result test = { 0 };
	int fd = -1;
	R.arrival = &zero;
	R.res = &test;
	R.t0 = mono();
	run_one(&R, 0, (uint64_t)o->num_prompts, &fd);
	if (fd >= 0)
		close(fd);
	if (!test.ok) {
		rc = qerr_set(e, QERR_IO, "%s: the initial test request failed: %s", o->target,
			      test.error ? test.error : "?");
		free(test.events);
		free(test.error);
		free(R.url);
		free(served);
		return rc;
	}
	free(test.events);
	free(test.error);

	size_t n = (size_t)o->num_prompts;
	double *arrival = xcalloc(n, sizeof(double));
	bench_arrivals(o->seed, o->request_rate, n, arrival);
	R.arrival = arrival;
	R.res = xcalloc(n, sizeof(bench_result));
	R.next = 0;
	pthread_mutex_init(&R.mu, NULL);
	int nw = o->max_concurrency > 0 && o->max_concurrency < o->num_prompts ? o->max_concurrency
									       : o->num_prompts;
	if (nw > BENCH_MAX_WORKERS)
		nw = BENCH_MAX_WORKERS;
	pthread_t *th = xcalloc((size_t)nw, sizeof(pthread_t));
	R.t0 = mono();
	int started = 0;
	for (; started < nw; started++)
		if (pthread_create(&th[started], NULL, worker, &R))
			break;
	if (started == 0)
		worker(&R);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	*duration = mono() - R.t0;
	pthread_mutex_destroy(&R.mu);
	free(th);
	free(arrival);
	free(R.url);
	*out = R.res;
	*model = o->model ? xstrdup(o->model) : served;
	if (o->model)
		free(served);
	return 0;
}

/* ---- the command line ---- */

static void bench_usage(FILE *f)
{
	fputs("usage: qvl bench (--url http://HOST:PORT | --fcgi PATH|HOST:PORT | --socket QVLD_SOCKET)\n"
	      "                 [--model NAME] [--num-prompts 100] [--input-len 512] [--output-len 128]\n"
	      "                 [--image-size WxH] [--request-rate inf] [--max-concurrency N]\n"
	      "                 [--ignore-eos] [--seed 0] [--api-key KEY] [--result-json FILE]\n",
	      f);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

int bench_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "fcgi", required_argument, NULL, 'f' },
		{ "socket", required_argument, NULL, 's' },
		{ "model", required_argument, NULL, 'm' },
		{ "num-prompts", required_argument, NULL, 'n' },
		{ "input-len", required_argument, NULL, 'i' },
		{ "output-len", required_argument, NULL, 'o' },
		{ "image-size", required_argument, NULL, 'I' },
		{ "request-rate", required_argument, NULL, 'r' },
		{ "max-concurrency", required_argument, NULL, 'c' },
		{ "ignore-eos", no_argument, NULL, 'E' },
		{ "seed", required_argument, NULL, 'S' },
		{ "api-key", required_argument, NULL, 'k' },
		{ "result-json", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bench_opts o = { .num_prompts = 100, .input_len = 512, .output_len = 128,
			 .request_rate = INFINITY };
	int c, n_targets = 0;
	char *end;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'u': o.mode = BENCH_MODE_HTTP; o.target = optarg; n_targets++; break;
		case 'f': o.mode = BENCH_MODE_FCGI; o.target = optarg; n_targets++; break;
		case 's': o.mode = BENCH_MODE_WIRE; o.target = optarg; n_targets++; break;
		case 'm': o.model = optarg; break;
		case 'k': o.api_key = optarg; break;
		case 'j': o.result_json = optarg; break;
		case 'E': o.ignore_eos = true; break;
		case 'n':
			if (parse_int(optarg, 1, 10000000, &o.num_prompts)) {
				fprintf(stderr, "qvl bench: --num-prompts: '%s' is not a count ≥ 1\n", optarg);
				return 2;
			}
			break;
		case 'i':
		case 'o':
			if (parse_int(optarg, 1, 1 << 22, c == 'i' ? &o.input_len : &o.output_len)) {
				fprintf(stderr, "qvl bench: --%s-len: '%s' is not a length ≥ 1\n",
					c == 'i' ? "input" : "output", optarg);
				return 2;
			}
			break;
		case 'c':
			if (parse_int(optarg, 1, 1 << 20, &o.max_concurrency)) {
				fprintf(stderr, "qvl bench: --max-concurrency: '%s' is not a count ≥ 1\n",
					optarg);
				return 2;
			}
			break;
		case 'I': {
			if (!strcmp(optarg, "0")) {
				o.image_w = o.image_h = 0;
				break;
			}
			long w = strtol(optarg, &end, 10), h = 0;
			if (*end == 'x')
				h = strtol(end + 1, &end, 10);
			if (*end || w < 1 || h < 1 || w > 8192 || h > 8192) {
				fprintf(stderr, "qvl bench: --image-size: '%s' is not WxH (1..8192) or 0\n",
					optarg);
				return 2;
			}
			o.image_w = (int)w;
			o.image_h = (int)h;
			break;
		}
		case 'r':
			errno = 0;
			if (!strcmp(optarg, "inf")) {
				o.request_rate = INFINITY;
				break;
			}
			o.request_rate = strtod(optarg, &end);
			if (!*optarg || *end || errno || !(o.request_rate > 0) || isinf(o.request_rate)) {
				fprintf(stderr, "qvl bench: --request-rate: '%s' is not a rate > 0 or inf\n",
					optarg);
				return 2;
			}
			break;
		case 'S': {
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 0);
			if (!*optarg || *end || errno || *optarg == '-') {
				fprintf(stderr, "qvl bench: --seed: '%s' is not a non-negative integer\n",
					optarg);
				return 2;
			}
			o.seed = v;
			break;
		}
		case 'h': bench_usage(stdout); return 0;
		default: bench_usage(stderr); return 2;
		}
	}
	if (optind != argc || n_targets != 1) {
		fprintf(stderr, "qvl bench: give exactly one of --url, --fcgi or --socket\n");
		bench_usage(stderr);
		return 2;
	}
	char *base = NULL;
	if (o.mode == BENCH_MODE_HTTP) {
		if (strncmp(o.target, "http://", 7) && strncmp(o.target, "https://", 8)) {
			fprintf(stderr, "qvl bench: --url: '%s' is not http://HOST:PORT\n", o.target);
			return 2;
		}
		base = xstrdup(o.target);
		size_t l = strlen(base);
		while (l && base[l - 1] == '/')
			base[--l] = 0;
		o.target = base;
		curl_global_init(CURL_GLOBAL_DEFAULT);
	}
	if (o.mode == BENCH_MODE_WIRE && o.image_w > 0) {
		fprintf(stderr, "qvl bench: --socket: images are not sent in wire mode (it would need "
			"the image processor); running text only\n");
		o.image_w = o.image_h = 0;
	}
	fprintf(stderr, "qvl bench: %d prompts, input %d, output %d, request rate %g, "
		"max concurrency %d (0: none)\n", o.num_prompts, o.input_len, o.output_len,
		o.request_rate, o.max_concurrency);
	bench_result *res = NULL;
	double duration = 0;
	char *model = NULL;
	qerr e = { 0 };
	int rc = 0;
	if (bench_run(&o, &res, &duration, &model, &e)) {
		fprintf(stderr, "qvl bench: %s\n", e.msg);
		rc = 1;
	} else {
		bench_metrics m;
		bench_metrics_compute(res, (size_t)o.num_prompts, duration, &m);
		for (int i = 0, shown = 0; i < o.num_prompts && shown < 3; i++)
			if (!res[i].ok) {
				fprintf(stderr, "qvl bench: request %d failed: %s\n", i, res[i].error);
				shown++;
			}
		bench_print_table(stdout, &o, &m);
		if (o.result_json &&
		    bench_write_json(o.result_json, &o, model, res, (size_t)o.num_prompts, &m, &e)) {
			fprintf(stderr, "qvl bench: %s\n", e.msg);
			rc = 1;
		}
	}
	bench_results_free(res, (size_t)o.num_prompts);
	free(model);
	free(base);
	if (o.mode == BENCH_MODE_HTTP)
		curl_global_cleanup();
	return rc;
}
