/*
 * bench_sampler: µs per sampler_sample call at the real vocabulary (V = 151936), one thread, for
 * the parameter sets the engine meets, on three shapes of random logits (fixed seed):
 *   flat     N(0, 1) everywhere: top_p 0.9 keeps most of the vocabulary (a hard case);
 *   wide     N(0, 3²): top_p 0.9 keeps a few thousand;
 *   peaked   N(0, 2²) plus five tokens at +12…+16, as a language model's logits mostly look.
 * Method: CLOCK_MONOTONIC around each call; the logits are copied back before each call (the
 * sampler writes into them; the copy is not timed); 5 warm-up calls, then the median of N.
 *
 *   usage: bench_sampler [N=200]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sampler.h"

#define V 151936

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static uint64_t rs = 0x243f6a8885a308d3ull;

static double uniform(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return (double)((rs * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
}

static double normal(void)
{
	return sqrt(-2 * log(uniform() + 1e-300)) * cos(2 * M_PI * uniform());
}

static void cpu_name(char *out, size_t n)
{
	snprintf(out, n, "unknown CPU");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "model name", 10)) {
			char *c = strchr(line, ':');
			if (c) {
				c += 1 + (c[1] == ' ');
				c[strcspn(c, "\n")] = 0;
				snprintf(out, n, "%s", c);
			}
			break;
		}
	fclose(f);
}

/* Median µs per call of p on logits (a fresh state each run of N, penalised like an ongoing
 * request when p asks for penalties). */
static double run(const sampling_params *p, const float *logits, int n, sampler_scratch *sc,
		  const int32_t *prompt, size_t n_prompt)
{
	float *l = malloc(V * sizeof(float));
	double *t = malloc((size_t)n * sizeof(double));
	sampler_state s;
	sampler_state_init(&s, p, 0, prompt, n_prompt);
	for (int i = 0; i < 500; i++)
		sampler_state_accept(&s, p, (int32_t)((i * 7919u) % V));
	for (int i = -5; i < n; i++) {
		memcpy(l, logits, V * sizeof(float));
		sampler_logprobs lp;
		double t0 = now_us();
		int32_t id = sampler_sample(p, &s, l, V, sc, &lp);
		double dt = now_us() - t0;
		if (id < 0 || id >= V)
			abort();
		if (i >= 0)
			t[i] = dt;
	}
	qsort(t, (size_t)n, sizeof(double), cmp);
	double med = t[n / 2];
	sampler_state_deinit(&s);
	free(t);
	free(l);
	return med;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200;
	if (n < 1)
		n = 1;
	static const char *shape_names[] = { "flat", "wide", "peaked" };
	float *shapes[3];
	for (int k = 0; k < 3; k++) {
		shapes[k] = malloc(V * sizeof(float));
		double sigma = k == 0 ? 1 : k == 1 ? 3 : 2;
		for (int i = 0; i < V; i++)
			shapes[k][i] = (float)(sigma * normal());
	}
	for (int j = 0; j < 5; j++)
		shapes[2][(j * 30011 + 17) % V] = 12.0f + (float)j;
	int32_t *prompt = malloc(2000 * sizeof(int32_t));
	for (int i = 0; i < 2000; i++)
		prompt[i] = (int32_t)((i * 104729u + 3) % V);

	const sampling_params base = { .temperature = 0.8, .top_p = 1, .repetition_penalty = 1,
				       .has_seed = true, .seed = 1, .logprobs = -1 };
	struct {
		const char *name;
		sampling_params p;
	} rows[8];
	int nr = 0;
	rows[nr].name = "greedy";
	rows[nr].p = base;
	rows[nr++].p.temperature = 0;
	rows[nr].name = "greedy + logprobs 5";
	rows[nr].p = base;
	rows[nr].p.temperature = 0;
	rows[nr++].p.logprobs = 5;
	rows[nr].name = "temperature 0.8";
	rows[nr++].p = base;
	rows[nr].name = "top_k 50";
	rows[nr].p = base;
	rows[nr++].p.top_k = 50;
	rows[nr].name = "top_p 0.9";
	rows[nr].p = base;
	rows[nr++].p.top_p = 0.9;
	rows[nr].name = "min_p 0.05";
	rows[nr].p = base;
	rows[nr++].p.min_p = 0.05;
	rows[nr].name = "top_k 20 + top_p 0.8";
	rows[nr].p = base;
	rows[nr].p.top_k = 20;
	rows[nr++].p.top_p = 0.8;
	rows[nr].name = "top_p 0.9 + penalties";
	rows[nr].p = base;
	rows[nr].p.top_p = 0.9;
	rows[nr].p.repetition_penalty = 1.1;
	rows[nr].p.frequency_penalty = 0.5;
	rows[nr++].p.presence_penalty = 0.5;

	char cpu[256];
	cpu_name(cpu, sizeof(cpu));
	const char *kernel = "generic vectors";
#if defined(__x86_64__) && defined(__GNUC__)
	kernel = __builtin_cpu_supports("avx2") ? "AVX2 exp kernel" : "SSE2 exp kernel";
#endif
	printf("# bench_sampler: V=%d, %s (%s), 1 thread, cc %s; µs per sampler_sample, "
	       "CLOCK_MONOTONIC per call, logits reset before each call (untimed), 5 warm-up + median "
	       "of %d; T=0.8 unless greedy; penalties: rep 1.1, freq 0.5, pres 0.5, 2000 prompt ids, "
	       "500 made\n", V, cpu, kernel, __VERSION__, n);
	printf("%-24s", "params \\ logits");
	for (int k = 0; k < 3; k++)
		printf(" %10s", shape_names[k]);
	printf("\n");
	sampler_scratch *sc = sampler_scratch_new(V);
	for (int r = 0; r < nr; r++) {
		printf("%-24s", rows[r].name);
		for (int k = 0; k < 3; k++)
			printf(" %10.1f", run(&rows[r].p, shapes[k], n, sc, prompt, 2000));
		printf("\n");
		fflush(stdout);
	}
	sampler_scratch_free(sc);
	for (int k = 0; k < 3; k++)
		free(shapes[k]);
	free(prompt);
	return 0;
}
