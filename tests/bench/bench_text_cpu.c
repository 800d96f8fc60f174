/*
 * bench_text_cpu: tokens/s of text_cpu for prefill (one step of P tokens, logits of the last
 * row) and batch-1 decode (N steps of one token after the prefill, logits each step).
 * Method: CLOCK_MONOTONIC; prefill: 1 warm-up + median of R; decode: median of N steps.
 *
 *   usage: bench_text_cpu MODEL_DIR [P=128] [N=16] [THREADS=0] [R=3]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model_config.h"
#include "model_weights.h"
#include "text_cpu.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s MODEL_DIR [P] [N] [THREADS] [R]\n", argv[0]);
		return 2;
	}
	int P = argc > 2 ? atoi(argv[2]) : 128, N = argc > 3 ? atoi(argv[3]) : 16;
	int th = argc > 4 ? atoi(argv[4]) : 0, R = argc > 5 ? atoi(argv[5]) : 3;
	model_config mc;
	model_weights w;
	qerr e = {0};
	double t0 = now_s();
	if (model_config_load_dir(argv[1], &mc, NULL, NULL, &e) ||
	    model_weights_open(argv[1], &mc, &w, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	const int bs = 16, nb = (P + N + bs) / bs + 1;
	text_cpu *t;
	if (text_cpu_new(&mc, &w, bs, nb, th, &t, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	double t_load = now_s() - t0;
	int32_t *ids = malloc((size_t)(P + N) * sizeof(int32_t));
	int32_t *pos = malloc(3 * (size_t)P * sizeof(int32_t));
	int32_t *bt = malloc((size_t)nb * sizeof(int32_t));
	for (int i = 0; i < P + N; i++)
		ids[i] = (int32_t)((i * 7919u + 13u) % 150000u);
	for (int a = 0; a < 3; a++)
		for (int i = 0; i < P; i++)
			pos[a * P + i] = i;
	for (int i = 0; i < nb; i++)
		bt[i] = i;
	float *lg = malloc((size_t)mc.text.vocab_size * sizeof(float));
	int32_t last = P - 1, zero = 0;
	double *tp = malloc((size_t)(R + 1) * sizeof(double));
	for (int r = 0; r <= R; r++) {
		backend_seq s = { .n_new = P, .ids = ids, .pos = pos, .block_table = bt, .n_logits = 1,
				  .logit_rows = &last };
		double a = now_s();
		if (text_cpu_step(t, &s, 1, lg, &e)) {
			fprintf(stderr, "%s\n", e.msg);
			return 1;
		}
		tp[r] = now_s() - a;
	}
	qsort(tp + 1, (size_t)R, sizeof(double), cmp);
	double *td = malloc((size_t)N * sizeof(double));
	for (int k = 0; k < N; k++) {
		int32_t p3[3] = { P + k, P + k, P + k };
		backend_seq s = { .n_new = 1, .ids = ids + P + k, .pos = p3, .n_cached = P + k,
				  .block_table = bt, .n_logits = 1, .logit_rows = &zero };
		double a = now_s();
		if (text_cpu_step(t, &s, 1, lg, &e)) {
			fprintf(stderr, "%s\n", e.msg);
			return 1;
		}
		td[k] = now_s() - a;
	}
	qsort(td, (size_t)N, sizeof(double), cmp);
	printf("model %s  D %d  layers %d  vocab %d  threads %d\n", argv[1], mc.text.hidden_size,
	       mc.text.num_hidden_layers, mc.text.vocab_size, th);
	printf("load+convert   %8.2f s\n", t_load);
	printf("prefill P=%-4d %8.3f s  %8.1f tok/s  (median of %d)\n", P, tp[1 + R / 2],
	       P / tp[1 + R / 2], R);
	printf("decode  b=1    %8.4f s  %8.2f tok/s  (median of %d, cache %d..%d)\n", td[N / 2],
	       1.0 / td[N / 2], N, P, P + N);
	text_cpu_free(t);
	model_weights_deinit(&w);
	free(ids); free(pos); free(bt); free(lg); free(tp); free(td);
	return 0;
}
