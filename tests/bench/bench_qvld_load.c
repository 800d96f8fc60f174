/*
 * bench_qvld_load: a bounded closed-loop load test of a running qvld over its Unix socket.
 *
 *   bench_qvld_load --socket PATH [--requests N] [--concurrency C] [--prompt-len L]
 *                   [--max-tokens T] [--shared-prefix P]
 *
 * C client threads, each with its own connection, send greedy text requests one after another
 * (random prompt ids of L tokens, the first P of them shared by every request, T tokens out,
 * ignore_eos so every request makes exactly T) until N requests have completed. Time to first
 * token and end-to-end latency are measured by the client (CLOCK_MONOTONIC, from the SUBMIT
 * write to the first TOKENS frame / the FINISH frame). Prints one table: requests per second,
 * output tokens per second, p50/p90/p99 of both latencies, and the prefix-cache hit rate read
 * from STATS before and after.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "alloc.h"
#include "rng.h"
#include "strbuf.h"
#include "wire.h"

typedef struct bench {
	const char *socket;
	int requests, concurrency, prompt_len, max_tokens, shared;
	uint64_t seed;                 /* prompts: a fresh run never repeats an earlier one's */
	pthread_mutex_t mu;
	int issued, done, failed;
	double *ttft, *e2e;            /* owned: per completed request */
} bench;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int dial(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		fprintf(stderr, "bench: connect %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
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

/* Read one frame into *buf (grown); returns its header or type 0 on failure. */
static wire_header read_frame(int fd, uint8_t **buf, size_t *cap)
{
	uint8_t h[WIRE_HEADER_SIZE];
	wire_header hd = { 0 };
	if (read_all(fd, h, sizeof(h)) || wire_header_parse(h, &hd, NULL))
		return (wire_header){ 0 };
	if (hd.length + 1 > *cap) {
		*cap = hd.length + 1;
		*buf = xrealloc(*buf, *cap);
	}
	if (read_all(fd, *buf, hd.length))
		return (wire_header){ 0 };
	return hd;
}

static void *client(void *arg)
{
	bench *b = arg;
	int fd = dial(b->socket);
	int32_t *ids = xmalloc((size_t)b->prompt_len * sizeof(int32_t));
	uint8_t *buf = NULL;
	size_t cap = 0;
	strbuf out = { 0 };
	for (;;) {
		pthread_mutex_lock(&b->mu);
		int k = b->issued < b->requests ? b->issued++ : -1;
		pthread_mutex_unlock(&b->mu);
		if (k < 0)
			break;
		/* request k's own tokens after the shared prefix: distinct for every request */
		uint64_t key = rng_key(b->seed, (uint64_t)k);
		for (int i = 0; i < b->prompt_len; i++)
			ids[i] = i < b->shared ? (int32_t)(1000 + i * 37 % 50000)
					       : (int32_t)(rng_u64(key, (uint64_t)i) % 150000);
		wire_submit s;
		memset(&s, 0, sizeof(s));
		s.n_ids = (uint32_t)b->prompt_len;
		s.ids = ids;
		s.sp = (sampling_params){ .temperature = 0, .top_p = 1, .repetition_penalty = 1,
					  .ignore_eos = true, .logprobs = -1 };
		s.max_tokens = b->max_tokens;
		s.n = 1;
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		s.arrival = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
		strbuf_truncate(&out, 0);
		wire_submit_put(&out, (uint64_t)k, &s);
		double t0 = mono(), first = 0;
		bool ok = write_all(fd, out.s, out.len) == 0, done = false;
		while (ok && !done) {
			wire_header h = read_frame(fd, &buf, &cap);
			if (h.type == WIRE_T_TOKENS && first == 0)
				first = mono();
			else if (h.type == WIRE_T_FINISH)
				done = true;
			else if (h.type != WIRE_T_TOKENS)
				ok = false;
		}
		double t1 = mono();
		pthread_mutex_lock(&b->mu);
		if (ok) {
			b->ttft[b->done] = first - t0;
			b->e2e[b->done] = t1 - t0;
			b->done++;
		} else {
			b->failed++;
		}
		pthread_mutex_unlock(&b->mu);
		if (!ok)
			break;
	}
	close(fd);
	free(ids);
	free(buf);
	strbuf_deinit(&out);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
	if (n == 0)
		return 0;
	int i = (int)(p * (n - 1) + 0.5);
	return v[i];
}

static void stats(const char *socket, double *queries, double *hits)
{
	int fd = dial(socket);
	strbuf o = { 0 };
	wire_put_frame(&o, WIRE_T_STATS, 0, NULL, 0);
	uint8_t *buf = NULL;
	size_t cap = 0;
	*queries = *hits = 0;
	if (!write_all(fd, o.s, o.len)) {
		wire_header h = read_frame(fd, &buf, &cap);
		if (h.type == WIRE_T_STATS_REPLY) {
			buf[h.length] = 0;
			json_object *j = json_tokener_parse((char *)buf), *v;
			if (j && json_object_object_get_ex(j, "prefix_cache_queries", &v))
				*queries = json_object_get_double(v);
			if (j && json_object_object_get_ex(j, "prefix_cache_hits", &v))
				*hits = json_object_get_double(v);
			json_object_put(j);
		}
	}
	free(buf);
	strbuf_deinit(&o);
	close(fd);
}

int main(int argc, char **argv)
{
	bench b = { .requests = 256, .concurrency = 16, .prompt_len = 64, .max_tokens = 16 };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "requests", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "prompt-len", required_argument, NULL, 'p' },
		{ "max-tokens", required_argument, NULL, 't' },
		{ "shared-prefix", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's': b.socket = optarg; break;
		case 'n': b.requests = atoi(optarg); break;
		case 'c': b.concurrency = atoi(optarg); break;
		case 'p': b.prompt_len = atoi(optarg); break;
		case 't': b.max_tokens = atoi(optarg); break;
		case 'x': b.shared = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_qvld_load --socket PATH [--requests N] "
				"[--concurrency C] [--prompt-len L] [--max-tokens T] [--shared-prefix P]\n");
			return 2;
		}
	}
	if (!b.socket || b.requests < 1 || b.concurrency < 1 || b.prompt_len < 1 || b.max_tokens < 1) {
		fprintf(stderr, "bench_qvld_load: --socket is required; counts must be positive\n");
		return 2;
	}
	pthread_mutex_init(&b.mu, NULL);
	b.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	b.ttft = xcalloc((size_t)b.requests, sizeof(double));
	b.e2e = xcalloc((size_t)b.requests, sizeof(double));
	double q0, h0, q1, h1;
	stats(b.socket, &q0, &h0);
	pthread_t *th = xcalloc((size_t)b.concurrency, sizeof(*th));
	double t0 = mono();
	for (int i = 0; i < b.concurrency; i++)
		pthread_create(&th[i], NULL, client, &b);
	for (int i = 0; i < b.concurrency; i++)
		pthread_join(th[i], NULL);
	double wall = mono() - t0;
	stats(b.socket, &q1, &h1);
	qsort(b.ttft, (size_t)b.done, sizeof(double), cmp_double);
	qsort(b.e2e, (size_t)b.done, sizeof(double), cmp_double);
	printf("qvld load test: %d requests, %d concurrent, prompt %d (shared %d), %d tokens out, "
	       "greedy; client-side CLOCK_MONOTONIC\n", b.requests, b.concurrency, b.prompt_len,
	       b.shared, b.max_tokens);
	printf("| completed | failed | wall s | req/s | out tok/s | TTFT p50 ms | p90 | p99 | "
	       "e2e p50 ms | p90 | p99 | prefix hit %% |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	printf("| %d | %d | %.2f | %.1f | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n",
	       b.done, b.failed, wall, b.done / wall, b.done * (double)b.max_tokens / wall,
	       1e3 * pct(b.ttft, b.done, 0.5), 1e3 * pct(b.ttft, b.done, 0.9),
	       1e3 * pct(b.ttft, b.done, 0.99), 1e3 * pct(b.e2e, b.done, 0.5),
	       1e3 * pct(b.e2e, b.done, 0.9), 1e3 * pct(b.e2e, b.done, 0.99),
	       q1 > q0 ? 100.0 * (h1 - h0) / (q1 - q0) : 0.0);
	free(th);
	free(b.ttft);
	free(b.e2e);
	return b.failed ? 1 : 0;
}
