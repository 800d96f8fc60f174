/*
 * bench_decode_cuda: where the time of a decode step of Qwen3-VL-2B goes on one GPU.
 *
 *   usage: bench_decode_cuda [--model DIR] [--steps N] [--skip-backend] [--skip-kernels]
 *                            [--kv-cache-dtype fp8]
 *   exits 77 when no GPU is visible (or the build has no CUDA)
 *
 * Table 1: whole steps through the backend interface (backend.h), as the engine drives it.
 *   The model is a random bf16 checkpoint of preset "2b" made by mkmodel in a temp dir (removed
 *   at the end), or --model DIR. backend_cuda_new with block_size 16, max_num_batched_tokens
 *   8192, max_num_seqs 256, max_model_len 4096, gpu_memory_utilization 0.85, once with CUDA
 *   graphs and once eager (one backend alive at a time: each plans its KV pool from 85 % of the
 *   card). 256 sequences of 512 random tokens are prefilled in steps of 16 sequences (8192
 *   tokens); then for B = 1, 8, 32, 64, 128, 256 the first B of them decode: 5 warm-up + N (50)
 *   timed steps of one new token each, one logit row each, greedy on the device
 *   (backend_step_sample), every step restarting at context 512 (positions 512.. are simply
 *   rewritten; the prompt's KV stays). Wall clock (CLOCK_MONOTONIC) around each call, which
 *   returns the ids on the host and so synchronises. Also prefill of one 512- and one
 *   4096-token prompt (one logit row, median of 3 after the batched prefill warmed up).
 *
 *   Then mixed steps: the first 128 sequences decode while one other computes the last 64, 128,
 *   256 or 384 positions of its prompt over its cached rest (the chunks small token budgets
 *   make), or 1, 2, 4, 8 or 15 others prefill their 512-token prompt again in the same step (the
 *   engine's usual step under load), and what a prompt token adds to the 128-decode step. With
 *   QVL_PROFILE=1 the backends log each eager step's phases (inference/step_profile.h) when
 *   they are freed.
 *
 * Table 2: the kernels of one decode step called directly (the kernels/ headers) on random device
 *   buffers with the 2b shapes (D 2048, F 6144, Hq 16, KV 8, hd 128, V 151936, 28 layers), B = 1
 *   and 128 sequences of context 640. The step is the decoder's (text_cuda.c), with its residual
 *   stream x in fp32 and 16 bits only at GEMM inputs (fp16 for qkv and gate/up), KV and
 *   attention:
 *     x = embedding (fp32); per layer: h = rmsnorm(x); qkv = gemm_f32_f16(h) (fp16 operands,
 *     fp32 out); qk_norm_rope; paged_attention; x += gemm_f32(att) (o_proj, in place on x);
 *     h = rmsnorm(x); gu = gemm_f32_f16(h) (fp32 (B, 2F)); act = silu_mul(gu) (bf16) — above
 *     4 sequences gu = gemm_f16(h) (fp16 (B, 2F)) and silu_mul_f16 through kn_gemm_glu, as the
 *     decoder runs them: one fused launch (gemm_wgmma's or gemm_glu_tma's) where
 *     kn_gemm_glu_tune, run first for the B, keeps it (QVL_GEMM_GLU=0: not tuned, so the two
 *     launches; their rows are also timed alone, count 0);
 *     x += gemm_f32(act) (down, in place); then h = rmsnorm(x) (final), LM head (bf16
 *     logits) straight from h (a decode graph's rows are its logit rows, in order: the
 *     rows_gather of other steps is timed alone, count 0), sampling. rmsnorm counts 2 per
 *     layer + 1 (timed in its bf16 form: the fp16 one, which feeds qkv and gate/up, is the
 *     same kernel with another final rounding).
 *     The random weights are bf16 bit patterns, read as fp16 by the fp16 projections (finite
 *     values either way: the time does not depend on them).
 *   Under --kv-cache-dtype fp8 the fp8 attention and qk_norm_rope rows ("fp8 KV") replace the
 *   bf16 ones in the step. They read half of each rotated bf16-sized copy, so at B = 1 a graph's
 *   20 launches touch ~26 MB of K/V, which the L2 may partly hold: that B = 1 time is optimistic.
 *   Up to 4 sequences the step runs the RMSNorm before qkv and gate/up inside those
 *   projections' GEMV (kn_gemm_f32_rmsnorm_cuda, rows "rmsnorm+…"; QVL_FUSE_RMSNORM=0: the
 *   separate kernels): the counts say which rows make the step. The four projections are also
 *   timed in their former bf16-output form (kn_gemm_cuda, "old" rows, count 0) for comparison.
 *   Each kernel: median of 50 single launches between a CUDA
 *   event pair (includes the launch latency the GPU sees), and median of 50 launches of a CUDA
 *   graph of 20 back-to-back launches / 20 (the kernel's own time, as inside the decode graph).
 *   Weights and KV caches rotate over enough copies (≥ 160 MB, ≤ 64 copies) that consecutive
 *   launches do not find them in the 50 MB L2 — as in a real step, where each layer's weights
 *   are cold; activations are single buffers (in a step they come warm from the last kernel).
 *   Bytes moved = weights + KV + activations read and written once (a lower bound of traffic);
 *   GB/s = bytes / graph time. Share = count × graph time / the sum of one whole step
 *   (embedding + 28 × per-layer kernels + final norm + gather + LM head + sampling).
 *   Then the floor (weight bytes [+ KV bytes] / 3.35 TB/s, H100 SXM HBM3) and the sum of kernel
 *   times against the measured graph step of table 1 (the gap: launch gaps inside the graph,
 *   host work of the step, input upload and ids download). Table 1 decodes at contexts
 *   517..566, so the sums are also given (one line each) at its mean context, where the gap
 *   compares like with like.
 *
 * Everything is printed; nothing is asserted (a benchmark, not a test).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "backend.h"
#include "embedding.h"
#include "gemm.h"
#include "mkmodel.h"
#include "model_config.h"
#include "model_weights.h"
#include "paged_attention.h"
#include "qk_norm_rope.h"
#include "rmsnorm.h"
#include "rows.h"
#include "sampler.h"
#include "sampling.h"
#include "silu_mul.h"

#define CK(call)                                                                           \
	do {                                                                               \
		cudaError_t err_ = (call);                                                 \
		if (err_ != cudaSuccess) {                                                 \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,      \
				cudaGetErrorString(err_));                                 \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t lcg = 0x9e3779b97f4a7c15ull;
static uint32_t urand(void)
{
	lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(lcg >> 33);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* ---- table 1: whole steps through the backend ------------------------------------------------ */

#define PROMPT 512
#define N_WARM 5
#define MAX_STEPS 200
#define N_B 6
static const int B_LIST[N_B] = { 1, 8, 32, 64, 128, 256 };
#define MAXB_SEQ ((PROMPT + N_WARM + MAX_STEPS + 15) / 16)   /* blocks per decoding sequence */

#define N_MIX 9
#define MIX_DEC 128   /* the decodes of a mixed step */
#define MIX_B_IDX 4   /* B_LIST[MIX_B_IDX] == MIX_DEC (checked below) */
/* its prompt tokens: below PROMPT, the last MIX_P tokens of one prompt (a chunk reading the
 * cached rest, as small --max-num-batched-tokens budgets make them); from PROMPT on, whole
 * prompts */
static const int MIX_P[N_MIX] = { 64, 128, 256, 384, 512, 1024, 2048, 4096, 7680 };

typedef struct step_res {
	double mix_ms[N_MIX];      /* MIX_DEC decodes + MIX_P[i] prompt tokens, mean ms a step */
	double dec_ms[N_B];        /* mean ms per decode step */
	double dec_med_ms[N_B];    /* median */
	double pf_batch_tps;       /* batched prefill of 256 × 512 */
	double pf_ms[2];           /* one prompt of 512, 4096 */
	bool ok;
} step_res;

static void die_qerr(const char *what, const qerr *e)
{
	fprintf(stderr, "%s: %s\n", what, e->msg);
	exit(1);
}

static bool kv_fp8;   /* --kv-cache-dtype fp8: table 1's backends cache K/V in fp8 E4M3 */

/* Sequences 0 … B-1 each decode one token at position p: q[i] takes the id sampled last for
 * it (ids[i], kept in last[i]) at context p, one logit row. */
static void decode_seqs(backend_seq *q, int32_t *last, const int32_t *ids, int32_t *dpos,
			const int32_t *bt, int B, int p)
{
	static const int32_t lr0 = 0;
	for (int i = 0; i < B; i++) {
		for (int a = 0; a < 3; a++)
			dpos[3 * i + a] = p;
		last[i] = ids[i];
		q[i] = (backend_seq){ .n_new = 1, .ids = &last[i], .pos = &dpos[3 * i],
				      .n_cached = p, .block_table = bt + (size_t)i * MAXB_SEQ,
				      .n_logits = 1, .logit_rows = &lr0 };
	}
}

static void run_backend(const model_config *mc, const model_weights *w, bool eager, int steps,
			step_res *r)
{
	backend_opts o = { .block_size = 16, .n_blocks = 0, .max_num_batched_tokens = 8192,
			   .max_num_seqs = 256, .max_model_len = 4096, .max_image_patches = 0,
			   .gpu_memory_utilization = 0.85, .enforce_eager = eager,
			   .kv_cache_fp8 = kv_fp8 };
	backend *b;
	qerr e = { 0 };
	double t0 = now_s();
	if (backend_cuda_new(mc, w, &o, &b, &e))
		die_qerr("backend_cuda_new", &e);
	fprintf(stderr, "backend (%s) up in %.1f s, %d KV blocks\n", eager ? "eager" : "graphs",
		now_s() - t0, backend_n_blocks(b));
	const int NS = 256, V = mc->text.vocab_size;
	const int long_blocks = 4096 / 16;
	if (backend_n_blocks(b) < NS * MAXB_SEQ + long_blocks) {
		fprintf(stderr, "KV pool of %d blocks < %d needed\n", backend_n_blocks(b),
			NS * MAXB_SEQ + long_blocks);
		exit(1);
	}
	int32_t *bt = xmalloc(sizeof(int32_t) * (size_t)(NS * MAXB_SEQ + long_blocks));
	for (int i = 0; i < NS * MAXB_SEQ + long_blocks; i++)
		bt[i] = i;
	int32_t *tok = xmalloc(sizeof(int32_t) * (size_t)NS * PROMPT);
	for (int i = 0; i < NS * PROMPT; i++)
		tok[i] = (int32_t)(urand() % (uint32_t)V);
	int32_t *pos = xmalloc(sizeof(int32_t) * 3 * 4096);
	for (int a = 0; a < 3; a++)
		for (int i = 0; i < 4096; i++)
			pos[a * 4096 + i] = i;   /* rows of n_new: per chunk a copy below */
	int32_t *pos512 = xmalloc(sizeof(int32_t) * 3 * PROMPT);
	for (int a = 0; a < 3; a++)
		for (int i = 0; i < PROMPT; i++)
			pos512[a * PROMPT + i] = i;

	sampling_params sp;
	memset(&sp, 0, sizeof(sp));
	sp.temperature = 0;
	sp.top_p = 1;
	sp.repetition_penalty = 1;
	sp.logprobs = -1;
	sampler_state *ss = xmalloc(sizeof(sampler_state) * NS);
	for (int i = 0; i < NS; i++)
		sampler_state_init(&ss[i], &sp, 0, NULL, 0);
	backend_sample_row *rows = xmalloc(sizeof(backend_sample_row) * NS);
	for (int i = 0; i < NS; i++)
		rows[i] = (backend_sample_row){ &sp, &ss[i] };
	backend_seq *q = xmalloc(sizeof(backend_seq) * NS);
	int32_t *ids = xmalloc(sizeof(int32_t) * NS);
	int32_t *last = xmalloc(sizeof(int32_t) * NS);
	int32_t *dpos = xmalloc(sizeof(int32_t) * 3 * NS);
	const int32_t lr_last = PROMPT - 1;

	/* batched prefill: 16 sequences (8192 tokens) per step */
	const int per = 8192 / PROMPT;
	t0 = now_s();
	for (int s0 = 0; s0 < NS; s0 += per) {
		int n = s0 + per <= NS ? per : NS - s0;
		for (int i = 0; i < n; i++)
			q[i] = (backend_seq){ .n_new = PROMPT, .ids = tok + (size_t)(s0 + i) * PROMPT,
					      .pos = pos512, .n_cached = 0,
					      .block_table = bt + (size_t)(s0 + i) * MAXB_SEQ,
					      .n_logits = 1, .logit_rows = &lr_last };
		if (backend_step_sample(b, q, n, rows + s0, ids, NULL, &e))
			die_qerr("prefill", &e);
		memcpy(last + s0, ids, sizeof(int32_t) * (size_t)n);
	}
	double tp = now_s() - t0;
	r->pf_batch_tps = NS * PROMPT / tp;

	/* one prompt of 512 and of 4096 tokens, into the blocks after the decoding ones */
	int32_t *ltok = xmalloc(sizeof(int32_t) * 4096);
	for (int i = 0; i < 4096; i++)
		ltok[i] = (int32_t)(urand() % (uint32_t)V);
	const int plen[2] = { 512, 4096 };
	for (int k = 0; k < 2; k++) {
		int P = plen[k];
		int32_t *pp = xmalloc(sizeof(int32_t) * 3 * (size_t)P);
		for (int a = 0; a < 3; a++)
			for (int i = 0; i < P; i++)
				pp[a * P + i] = i;
		double tv[3];
		for (int rep = 0; rep < 4; rep++) {
			int done = 0;
			double ts = now_s();
			while (done < P) {   /* chunks of ≤ 8192: one step for both */
				int n = P - done < 8192 ? P - done : 8192;
				int32_t *cp = xmalloc(sizeof(int32_t) * 3 * (size_t)n);
				for (int a = 0; a < 3; a++)
					memcpy(cp + a * n, pp + a * P + done, sizeof(int32_t) * (size_t)n);
				int32_t lrc = n - 1;
				backend_seq one = { .n_new = n, .ids = ltok + done, .pos = cp,
						    .n_cached = done,
						    .block_table = bt + (size_t)NS * MAXB_SEQ,
						    .n_logits = done + n == P ? 1 : 0,
						    .logit_rows = &lrc };
				if (done + n == P) {
					if (backend_step_sample(b, &one, 1, rows, ids, NULL, &e))
						die_qerr("prefill one", &e);
				} else if (backend_step(b, &one, 1, NULL, &e)) {
					die_qerr("prefill one", &e);
				}
				free(cp);
				done += n;
			}
			if (rep)
				tv[rep - 1] = now_s() - ts;
		}
		r->pf_ms[k] = 1e3 * median(tv, 3);
		free(pp);
	}
	free(ltok);

	/* decode: the first B sequences, each step restarting at context PROMPT */
	double *tv = xmalloc(sizeof(double) * (size_t)steps);
	for (int bi = 0; bi < N_B; bi++) {
		int B = B_LIST[bi];
		memcpy(ids, last, sizeof(int32_t) * (size_t)B);
		double tsum = 0;
		for (int s = 0; s < N_WARM + steps; s++) {
			decode_seqs(q, last, ids, dpos, bt, B, PROMPT + s);
			double ts = now_s();
			if (backend_step_sample(b, q, B, rows, ids, NULL, &e))
				die_qerr("decode", &e);
			double dt = now_s() - ts;
			if (s >= N_WARM) {
				tv[s - N_WARM] = dt;
				tsum += dt;
			}
		}
		r->dec_ms[bi] = 1e3 * tsum / steps;
		r->dec_med_ms[bi] = 1e3 * median(tv, steps);
	}
	free(tv);

	/* mixed steps, as the engine makes them under load: the first MIX_DEC sequences decode
	 * (at context PROMPT + s) and MIX_P / PROMPT of the next ones prefill their whole prompt
	 * again (rewriting their own blocks), or below PROMPT one of them computes only its last
	 * MIX_P positions over its cached rest; one logit row each, sampled */
	int32_t *pos_tail = xmalloc(sizeof(int32_t) * 3 * PROMPT);
	for (int mi = 0; mi < N_MIX; mi++) {
		const bool chunk = MIX_P[mi] < PROMPT;
		const int np = chunk ? 1 : MIX_P[mi] / PROMPT, n = MIX_DEC + np;
		const int n_new = chunk ? MIX_P[mi] : PROMPT, skip = PROMPT - n_new;
		const int32_t lr_chunk = n_new - 1;
		for (int a = 0; a < 3; a++)
			for (int i = 0; i < n_new; i++)
				pos_tail[a * n_new + i] = skip + i;
		memcpy(ids, last, sizeof(int32_t) * MIX_DEC);
		double tsum = 0;
		const int warm = 3, reps = 10;
		for (int s = 0; s < warm + reps; s++) {
			decode_seqs(q, last, ids, dpos, bt, MIX_DEC, PROMPT + s);
			for (int k = 0; k < np; k++) {
				int si = MIX_DEC + k;
				q[MIX_DEC + k] = (backend_seq){ .n_new = n_new,
								.ids = tok + (size_t)si * PROMPT + skip,
								.pos = pos_tail, .n_cached = skip,
								.block_table = bt + (size_t)si * MAXB_SEQ,
								.n_logits = 1, .logit_rows = &lr_chunk };
			}
			double ts = now_s();
			if (backend_step_sample(b, q, n, rows, ids, NULL, &e))
				die_qerr("mixed", &e);
			if (s >= warm)
				tsum += now_s() - ts;
		}
		r->mix_ms[mi] = 1e3 * tsum / reps;
	}
	r->ok = true;
	for (int i = 0; i < NS; i++)
		sampler_state_deinit(&ss[i]);
	free(ss);
	free(rows);
	free(q);
	free(ids);
	free(last);
	free(dpos);
	free(pos);
	free(pos512);
	free(pos_tail);
	free(tok);
	free(bt);
	backend_free(b);
}

/* ---- table 2: the kernels of one decode step ---------------------------------------------- */

enum { D = 2048, F = 6144, HQ = 16, KVH = 8, HD = 128, V_ = 151936, L = 28, BS = 16 };
#define QKVW ((HQ + 2 * KVH) * HD)
#define ROT_BYTES (160.0 * 1024 * 1024)
#define MAX_ROT 64

enum {
	K_EMBED, K_RMSNORM, K_QKV, K_QKNR, K_ATTN, K_O, K_GU, K_SILU, K_DOWN, K_GATHER, K_LM,
	K_SAMPLE, K_NQKV, K_NGU, K_QKV16, K_O16, K_GU16, K_DOWN16, K_ATTN8, K_QKNR8, K_GUH,
	K_SILUH, K_GLU, K_N
};
static const char *K_NAME[K_N] = { "embedding (fp32 x)", "rmsnorm (fp32 x)",
	"gemm_f32 qkv 4096x2048", "qk_norm_rope", "paged_attention", "gemm_f32 o += (in place)",
	"gemm_f32 gate_up 12288x2048", "silu_mul (fp32 gu)", "gemm_f32 down += (in place)",
	"rows_gather", "gemm lm_head 151936x2048", "sample (greedy)", "rmsnorm+qkv (one GEMV)",
	"rmsnorm+gate_up (one GEMV)", "old: gemm qkv bf16",
	"old: gemm o bf16", "old: gemm gate_up bf16", "old: gemm down bf16",
	"paged_attention fp8 KV", "qk_norm_rope fp8 KV", "gemm_f16 gate_up (fp16 out)",
	"silu_mul (fp16 gu)", "gate_up+silu (kn_gemm_glu)" };
/* Per step (the "old" bf16-output projections are timed for comparison only). Up to 4
 * sequences the decoder runs each RMSNorm before qkv and gate/up inside the projection's GEMV
 * (kn_gemm_f32_rmsnorm_cuda): then only the final norm is a kernel of its own. */
static const int K_COUNT_SPLIT[K_N] = { 1, 2 * L + 1, L, L, L, L, 0, 0, L, 0, 1, 1, 0, 0,
					 0, 0, 0, 0, 0, 0, 0, 0, L };
static const int K_COUNT_FUSED[K_N] = { 1, 1, 0, L, L, L, 0, L, L, 0, 1, 1, L, L,
					 0, 0, 0, 0, 0, 0, 0, 0, 0 };
static int K_COUNT[K_N];   /* one of the two, with the fp8 rows instead under --kv-cache-dtype fp8 */

typedef struct rot {
	void *p[MAX_ROT];
	int n;
} rot;

typedef struct kctx {
	int B, ctx, nbs;   /* sequences, context, blocks per sequence */
	kn_gemm_ctx *gemm;
	float *x, *qkv32, *gu;   /* the fp32 residual stream and the fp32 GEMM outputs */
	uint16_t *h, *tmp, *qkv, *gu16, *q, *att, *mlp, *hl, *logits, *normw, *qn, *kn;
	int32_t *ids, *pos, *slot, *bt, *ctx_len, *out_ids, *gidx;
	kn_sample_row *rows;
	void *ws;
	size_t ws_bytes;
	int nblocks;
	rot wqkv, wo, wgu, wd, kc, vc;
	uint16_t *lm;
} kctx;

static uint16_t *host_rand;
#define HOST_RAND_N (8u << 20)

static uint16_t bf16_of(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void *dev_rand(size_t bytes)
{
	void *d;
	CK(cudaMalloc(&d, bytes));
	size_t off = 0, chunk = (size_t)HOST_RAND_N * 2;
	while (off < bytes) {
		size_t n = bytes - off < chunk ? bytes - off : chunk;
		size_t start = (urand() % (HOST_RAND_N / 2)) * 2;   /* vary the content a little */
		if (start + n > chunk)
			start = 0;
		CK(cudaMemcpy((char *)d + off, (const char *)host_rand + start, n,
			      cudaMemcpyHostToDevice));
		off += n;
	}
	return d;
}

static void rot_make(rot *r, size_t bytes)
{
	int n = (int)ceil(ROT_BYTES / (double)bytes);
	r->n = n < 1 ? 1 : n > MAX_ROT ? MAX_ROT : n;
	for (int i = 0; i < r->n; i++)
		r->p[i] = dev_rand(bytes);
}

static void rot_free(rot *r)
{
	for (int i = 0; i < r->n; i++)
		CK(cudaFree(r->p[i]));
	r->n = 0;
}

static int32_t *dev_i32(const int32_t *h, size_t n)
{
	int32_t *d;
	CK(cudaMalloc((void **)&d, n * sizeof(int32_t)));
	CK(cudaMemcpy(d, h, n * sizeof(int32_t), cudaMemcpyHostToDevice));
	return d;
}

static void kctx_make(kctx *c, int B, int ctx, kn_gemm_ctx *gemm)
{
	memset(c, 0, sizeof(*c));
	c->B = B;
	c->ctx = ctx;
	c->nbs = (ctx + BS - 1) / BS;
	const int NBLK_SEQ = c->nbs, CTX = ctx;
	c->gemm = gemm;
	const size_t b2 = 2;
	const size_t b4 = 4;   /* dev_rand's bf16 pairs read as floats are finite, |v| < 0.2 */
	c->x = dev_rand(b4 * B * D);
	c->h = dev_rand(b2 * B * D);
	c->tmp = dev_rand(b2 * B * D);
	c->qkv = dev_rand(b2 * B * QKVW);
	c->qkv32 = dev_rand(b4 * B * QKVW);
	c->q = dev_rand(b2 * B * HQ * HD);
	c->att = dev_rand(b2 * B * HQ * HD);
	c->gu = dev_rand(b4 * B * 2 * F);
	c->gu16 = dev_rand(b2 * B * 2 * F);
	c->mlp = dev_rand(b2 * B * F);
	c->hl = dev_rand(b2 * B * D);
	c->logits = dev_rand(b2 * (size_t)B * V_);
	c->normw = dev_rand(b2 * D);
	c->qn = dev_rand(b2 * HD);
	c->kn = dev_rand(b2 * HD);
	c->lm = dev_rand(b2 * (size_t)V_ * D);
	rot_make(&c->wqkv, b2 * QKVW * D);
	rot_make(&c->wo, b2 * D * HQ * HD);
	rot_make(&c->wgu, b2 * 2 * F * D);
	rot_make(&c->wd, b2 * D * F);
	c->nblocks = B * NBLK_SEQ;
	size_t cache_bytes = b2 * (size_t)c->nblocks * BS * KVH * HD;
	rot_make(&c->kc, cache_bytes);
	rot_make(&c->vc, cache_bytes);
	int32_t *h = xmalloc(sizeof(int32_t) * (size_t)B * NBLK_SEQ * 3);
	for (int i = 0; i < B; i++)
		h[i] = (int32_t)(urand() % V_);
	c->ids = dev_i32(h, (size_t)B);
	for (int i = 0; i < 3 * B; i++)
		h[i] = CTX - 1;
	c->pos = dev_i32(h, 3 * (size_t)B);
	for (int i = 0; i < B * NBLK_SEQ; i++)
		h[i] = i;   /* sequence i: blocks i·40 … i·40+39 */
	c->bt = dev_i32(h, (size_t)B * NBLK_SEQ);
	for (int i = 0; i < B; i++)
		h[i] = (i * NBLK_SEQ + (CTX - 1) / BS) * BS + (CTX - 1) % BS;   /* position CTX-1 */
	c->slot = dev_i32(h, (size_t)B);
	for (int i = 0; i < B; i++)
		h[i] = CTX;
	c->ctx_len = dev_i32(h, (size_t)B);
	c->out_ids = dev_i32(h, (size_t)B);
	for (int i = 0; i < B; i++)
		h[i] = i;   /* the gather before the LM head: every row */
	c->gidx = dev_i32(h, (size_t)B);
	free(h);
	kn_sample_row *hr = xmalloc(sizeof(kn_sample_row) * (size_t)B);
	for (int i = 0; i < B; i++)
		kn_sample_row_init(&hr[i], 0.0, 1.0, 0, 0.0, 1.0, 0.0, 0.0);
	CK(cudaMalloc((void **)&c->rows, sizeof(kn_sample_row) * (size_t)B));
	CK(cudaMemcpy(c->rows, hr, sizeof(kn_sample_row) * (size_t)B, cudaMemcpyHostToDevice));
	free(hr);
	c->ws_bytes = kn_paged_attention_workspace_bytes(B, HQ, HD, NBLK_SEQ * BS);
	CK(cudaMalloc(&c->ws, c->ws_bytes ? c->ws_bytes : 16));
}

static void kctx_free(kctx *c)
{
	void *bufs[] = { c->x, c->h, c->tmp, c->qkv, c->qkv32, c->gu16, c->q, c->att, c->gu, c->mlp,
			 c->hl, c->logits,
			 c->normw, c->qn, c->kn, c->lm, c->ids, c->pos, c->bt, c->slot, c->ctx_len,
			 c->out_ids, c->gidx, c->rows, c->ws };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		CK(cudaFree(bufs[i]));
	rot_free(&c->wqkv);
	rot_free(&c->wo);
	rot_free(&c->wgu);
	rot_free(&c->wd);
	rot_free(&c->kc);
	rot_free(&c->vc);
}

static const int SECTION[3] = { 24, 20, 20 };

static void launch(kctx *c, int k, int i, cudaStream_t s)
{
	const int B = c->B, NBLK_SEQ = c->nbs;
	const float eps = 1e-6f;
	switch (k) {
	case K_EMBED:
		kn_embedding_cuda(c->x, c->lm, c->ids, B, D, s);
		break;
	case K_RMSNORM:
		kn_rmsnorm_cuda(c->h, c->x, c->normw, B, D, eps, s);
		break;
	case K_QKV:
		kn_gemm_f32_f16_cuda(c->gemm, c->qkv32, c->h, c->wqkv.p[i % c->wqkv.n], NULL, B, QKVW,
				     D, s);
		break;
	case K_QKNR:
		kn_qk_norm_rope_cuda(c->q, c->kc.p[i % c->kc.n], c->vc.p[i % c->vc.n], c->qkv32, c->qn,
				     c->kn, c->pos, c->slot, B, HQ, KVH, HD, SECTION, 5e6f, eps, s);
		break;
	case K_ATTN:
		if (kn_paged_attention_cuda(c->att, c->q, c->kc.p[i % c->kc.n], c->vc.p[i % c->vc.n],
					    c->bt, c->ctx_len, B, HQ, KVH, HD, BS, NBLK_SEQ,
					    0.08838834764831845f, c->ws, c->ws_bytes, s)) {
			fprintf(stderr, "paged_attention refused the shape\n");
			exit(1);
		}
		break;
	case K_O:
		kn_gemm_f32_cuda(c->gemm, c->x, c->att, c->wo.p[i % c->wo.n], c->x, B, D, HQ * HD, s);
		break;
	case K_GU:
		kn_gemm_f32_f16_cuda(c->gemm, c->gu, c->h, c->wgu.p[i % c->wgu.n], NULL, B, 2 * F, D,
				     s);
		break;
	case K_SILU:
		kn_silu_mul_cuda(c->mlp, c->gu, B, F, s);
		break;
	case K_DOWN:
		kn_gemm_f32_cuda(c->gemm, c->x, c->mlp, c->wd.p[i % c->wd.n], c->x, B, D, F, s);
		break;
	case K_NQKV:
		kn_gemm_f32_rmsnorm_cuda(c->gemm, c->qkv32, c->h, c->x, c->normw, eps,
					 c->wqkv.p[i % c->wqkv.n], B, QKVW, D, true, s);
		break;
	case K_NGU:
		kn_gemm_f32_rmsnorm_cuda(c->gemm, c->gu, c->h, c->x, c->normw, eps,
					 c->wgu.p[i % c->wgu.n], B, 2 * F, D, true, s);
		break;
	case K_QKV16:
		kn_gemm_cuda(c->gemm, c->qkv, c->h, c->wqkv.p[i % c->wqkv.n], NULL, B, QKVW, D, s);
		break;
	case K_O16:
		kn_gemm_cuda(c->gemm, c->tmp, c->att, c->wo.p[i % c->wo.n], NULL, B, D, HQ * HD, s);
		break;
	case K_GU16:
		kn_gemm_cuda(c->gemm, c->gu16, c->h, c->wgu.p[i % c->wgu.n], NULL, B, 2 * F, D, s);
		break;
	case K_DOWN16:
		kn_gemm_cuda(c->gemm, c->tmp, c->mlp, c->wd.p[i % c->wd.n], NULL, B, D, F, s);
		break;
	case K_ATTN8:   /* the bf16 rotations hold twice the fp8 bytes: read as E4M3 */
		if (kn_paged_attention_fp8_cuda(c->att, c->q, c->kc.p[i % c->kc.n],
						c->vc.p[i % c->vc.n], c->bt, c->ctx_len, B, HQ, KVH, HD,
						BS, NBLK_SEQ, 0.08838834764831845f, 1.0f, 1.0f, c->ws,
						c->ws_bytes, s)) {
			fprintf(stderr, "paged_attention_fp8 refused the shape\n");
			exit(1);
		}
		break;
	case K_GUH:
		kn_gemm_f16_cuda(c->gemm, c->gu16, c->h, c->wgu.p[i % c->wgu.n], B, 2 * F, D, s);
		break;
	case K_SILUH:
		kn_silu_mul_f16_cuda(c->mlp, c->gu16, B, F, s);
		break;
	case K_GLU:
		kn_gemm_glu_cuda(c->gemm, c->mlp, c->gu16, c->h, c->wgu.p[i % c->wgu.n], B, F, D, s);
		break;
	case K_QKNR8:
		kn_qk_norm_rope_fp8_cuda(c->q, c->kc.p[i % c->kc.n], c->vc.p[i % c->vc.n], c->qkv32,
					 c->qn, c->kn, c->pos, c->slot, B, HQ, KVH, HD, SECTION, 5e6f,
					 eps, 1.0f, 1.0f, s);
		break;
	case K_GATHER:
		kn_rows_gather_cuda(c->hl, c->h, c->gidx, B, D, s);
		break;
	case K_LM:
		kn_gemm_cuda(c->gemm, c->logits, c->hl, c->lm, NULL, B, V_, D, s);
		break;
	case K_SAMPLE:
		if (kn_sample_cuda(c->out_ids, NULL, NULL, NULL, c->logits, c->rows, NULL, NULL, B, V_,
				   s)) {
			fprintf(stderr, "kn_sample_cuda refused the shape\n");
			exit(1);
		}
		break;
	}
}

static double k_bytes(int k, int B, int CTX)
{
	const int NBLK_SEQ = (CTX + BS - 1) / BS;
	const double b = B, e = 2, f = 4;   /* bytes of a bf16, of a float */
	switch (k) {
	case K_EMBED: return b * D * (e + f) + 4 * b;
	case K_RMSNORM: return b * D * (f + e) + D * e;
	case K_QKV: return (double)QKVW * D * e + b * D * e + b * QKVW * f;
	case K_QKNR: return b * QKVW * (f + e) + 2 * HD * e + 16 * b;   /* fp32 in, bf16 out */
	case K_ATTN: return b * CTX * KVH * HD * e * 2 + 2 * b * HQ * HD * e + b * NBLK_SEQ * 4 + 4 * b;
	case K_O: return (double)D * HQ * HD * e + b * HQ * HD * e + 2 * b * D * f;
	case K_GU: return 2.0 * F * D * e + b * D * e + b * 2 * F * f;
	case K_SILU: return b * 2 * F * f + b * F * e;
	case K_DOWN: return (double)D * F * e + b * F * e + 2 * b * D * f;
	case K_ATTN8: return b * CTX * KVH * HD * 2 + 2 * b * HQ * HD * e + b * NBLK_SEQ * 4 + 4 * b;
	case K_QKNR8: return b * QKVW * f + b * HQ * HD * e + 2 * b * KVH * HD + 2 * HD * e + 16 * b;
	case K_GUH: return 2.0 * F * D * e + b * D * e + b * 2 * F * e;
	case K_SILUH: return b * 2 * F * e + b * F * e;
	case K_GLU: return 2.0 * F * D * e + b * D * e + b * F * e;   /* fused: no gu */
	case K_GATHER: return 2 * b * D * e + 4 * b;
	case K_LM: return (double)V_ * D * e + b * D * e + b * V_ * e;
	case K_SAMPLE: return b * V_ * e + b * (sizeof(kn_sample_row) + 4);
	case K_NQKV: return (double)QKVW * D * e + b * D * f + D * e + b * QKVW * f;
	case K_NGU: return 2.0 * F * D * e + b * D * f + D * e + b * 2 * F * f;
	case K_QKV16: return (double)QKVW * D * e + b * D * e + b * QKVW * e;
	case K_O16: return (double)D * HQ * HD * e + b * HQ * HD * e + b * D * e;
	case K_GU16: return 2.0 * F * D * e + b * D * e + b * 2 * F * e;
	case K_DOWN16: return (double)D * F * e + b * F * e + b * D * e;
	}
	return 0;
}

#define N_REP 50
#define N_GRAPH 20

static void time_kernel(kctx *c, int k, cudaStream_t s, cudaEvent_t e0, cudaEvent_t e1,
			double *us_single, double *us_graph)
{
	double tv[N_REP];
	for (int w = 0; w < 5; w++)
		launch(c, k, w, s);
	CK(cudaStreamSynchronize(s));
	for (int r = 0; r < N_REP; r++) {
		CK(cudaEventRecord(e0, s));
		launch(c, k, r, s);
		CK(cudaEventRecord(e1, s));
		CK(cudaEventSynchronize(e1));
		float ms;
		CK(cudaEventElapsedTime(&ms, e0, e1));
		tv[r] = 1e3 * ms;
	}
	*us_single = median(tv, N_REP);
	cudaGraph_t g;
	cudaGraphExec_t ge;
	CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
	for (int j = 0; j < N_GRAPH; j++)
		launch(c, k, j, s);
	CK(cudaStreamEndCapture(s, &g));
	CK(cudaGraphInstantiate(&ge, g, 0));
	CK(cudaGraphLaunch(ge, s));
	CK(cudaStreamSynchronize(s));
	for (int r = 0; r < N_REP; r++) {
		CK(cudaEventRecord(e0, s));
		CK(cudaGraphLaunch(ge, s));
		CK(cudaEventRecord(e1, s));
		CK(cudaEventSynchronize(e1));
		float ms;
		CK(cudaEventElapsedTime(&ms, e0, e1));
		tv[r] = 1e3 * ms / N_GRAPH;
	}
	*us_graph = median(tv, N_REP);
	CK(cudaGraphExecDestroy(ge));
	CK(cudaGraphDestroy(g));
}

/* Table 2 for B sequences of context ctx; quiet: only the sums (one line). */
static void run_kernels(int B, int ctx, bool quiet, double graph_step_ms, double eager_step_ms,
			double hbm_tbs)
{
	kn_gemm_ctx *gemm = kn_gemm_ctx_new(32u << 20);
	kctx c;
	kctx_make(&c, B, ctx, gemm);
	cudaStream_t s;
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	const char *fz = getenv("QVL_FUSE_RMSNORM");
	memcpy(K_COUNT, B <= 4 && !(fz && *fz == '0') ? K_COUNT_FUSED : K_COUNT_SPLIT,
	       sizeof(K_COUNT));
	const char *gh = getenv("QVL_GU_FP16");
	if (K_COUNT[K_GLU] && (B <= 4 || (gh && *gh == '0'))) {
		/* QVL_FUSE_RMSNORM=0 up to 4 rows, or QVL_GU_FP16=0: the decoder's fp32 gate/up */
		K_COUNT[K_GU] = K_COUNT[K_SILU] = K_COUNT[K_GLU];
		K_COUNT[K_GLU] = 0;
	}
	const char *glu_env = getenv("QVL_GEMM_GLU");
	if (K_COUNT[K_GLU] && !(glu_env && *glu_env == '0')) {
		/* as text_cuda.c's start-up tuning: kn_gemm_glu runs fused where that is faster */
		float apart, fused;
		const int kept = kn_gemm_glu_tune(gemm, c.mlp, c.gu16, c.h,
						  (const uint16_t *const *)c.wgu.p, c.wgu.n, B, F, D,
						  s, &apart, &fused);
		if (!quiet)
			printf("kn_gemm_glu at B = %d: gate_up and silu_mul apart %.2f us, fused %.2f "
			       "us: %s\n", B, 1e3 * apart, 1e3 * fused,
			       kept == KN_GEMM_GLU_TMA ? "fused (gemm_glu_tma)" :
			       kept ? "fused (gemm_wgmma)" : "apart");
	}
	if (kv_fp8) {
		K_COUNT[K_ATTN8] = K_COUNT[K_ATTN], K_COUNT[K_ATTN] = 0;
		K_COUNT[K_QKNR8] = K_COUNT[K_QKNR], K_COUNT[K_QKNR] = 0;
	}
	double us1[K_N], usg[K_N];
	for (int k = 0; k < K_N; k++) {
		time_kernel(&c, k, s, e0, e1, &us1[k], &usg[k]);
	}
	double sum_g = 0, sum_1 = 0, bytes_all = 0;
	for (int k = 0; k < K_N; k++) {
		sum_g += K_COUNT[k] * usg[k];
		sum_1 += K_COUNT[k] * us1[k];
		bytes_all += K_COUNT[k] * k_bytes(k, B, ctx);
	}
	double kvbytes = (double)B * ctx * L * KVH * HD * 2 * (kv_fp8 ? 1 : 2);
	if (quiet) {
		printf("B = %d, context %d: sum of kernels (graph) %.3f ms (single launches %.3f ms); "
		       "attention %.2f us/layer",
		       B, ctx, sum_g / 1e3, sum_1 / 1e3, usg[kv_fp8 ? K_ATTN8 : K_ATTN]);
		if (graph_step_ms > 0)
			printf("; measured graph step %.3f ms, gap %.3f ms", graph_step_ms,
			       graph_step_ms - sum_g / 1e3);
		printf("\n");
		goto out;
	}
	printf("\nTable 2 (B = %d, context %d): kernels of one decode step, 2b shapes, KV cache %s\n",
	       B, ctx, kv_fp8 ? "fp8" : "bf16");
	printf("%-28s %5s %10s %10s %12s %9s %8s\n", "kernel", "count", "us/launch", "us (graph)",
	       "bytes", "GB/s", "share");
	for (int k = 0; k < K_N; k++) {
		double by = k_bytes(k, B, ctx);
		printf("%-28s %5d %10.2f %10.2f %12.0f %9.0f %7.1f%%\n", K_NAME[k], K_COUNT[k],
		       us1[k], usg[k], by, by / (usg[k] * 1e3),
		       100.0 * K_COUNT[k] * usg[k] / sum_g);
	}
	double wbytes = (double)L * ((double)QKVW * D + (double)D * HQ * HD + 2.0 * F * D +
				     (double)D * F) * 2 + (double)V_ * D * 2;
	printf("sum of kernels (graph)   %9.3f ms   (single launches: %.3f ms)\n", sum_g / 1e3,
	       sum_1 / 1e3);
	{
		/* what the fp32 outputs of the four projections cost a step over bf16 outputs */
		double d = L * (usg[K_QKV] + usg[K_O] + usg[K_GU] + usg[K_DOWN] - usg[K_QKV16] -
				usg[K_O16] - usg[K_GU16] - usg[K_DOWN16]);
		printf("  the four projections with fp32 output: %+.3f ms a step against bf16 output\n",
		       d / 1e3);
	}
	printf("bytes of one step        %9.3f GB    -> %.0f GB/s at the graph sum\n",
	       bytes_all / 1e9, bytes_all / (sum_g * 1e3));
	printf("floor: weights %.3f GB / %.2f TB/s = %.3f ms; + KV %.3f GB = %.3f ms\n", wbytes / 1e9,
	       hbm_tbs, wbytes / (hbm_tbs * 1e12) * 1e3, kvbytes / 1e9,
	       (wbytes + kvbytes) / (hbm_tbs * 1e12) * 1e3);
	if (graph_step_ms > 0)
		printf("measured step (table 1, median, context %d..%d): graphs %.3f ms, eager %.3f "
		       "ms; graphs - kernel sum = %.3f ms (%.0f%% of the step)\n",
		       PROMPT + N_WARM, PROMPT + N_WARM + 49, graph_step_ms, eager_step_ms, graph_step_ms - sum_g / 1e3,
		       100.0 * (graph_step_ms - sum_g / 1e3) / graph_step_ms);
out:
	CK(cudaEventDestroy(e0));
	CK(cudaEventDestroy(e1));
	CK(cudaStreamDestroy(s));
	kctx_free(&c);
	kn_gemm_ctx_free(gemm);
}

/* ---- main ------------------------------------------------------------------------------------- */

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	char path[1024];
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	const char *model = NULL;
	int steps = 50;
	bool do_backend = true, do_kernels = true;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--model") && i + 1 < argc)
			model = argv[++i];
		else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
			steps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--skip-backend"))
			do_backend = false;
		else if (!strcmp(argv[i], "--skip-kernels"))
			do_kernels = false;
		else if (!strcmp(argv[i], "--kv-cache-dtype") && i + 1 < argc &&
			 !strcmp(argv[i + 1], "fp8")) {
			kv_fp8 = true;
			i++;
		} else {
			fprintf(stderr, "usage: %s [--model DIR] [--steps N] [--skip-backend] "
				"[--skip-kernels] [--kv-cache-dtype fp8]\n", argv[0]);
			return 2;
		}
	}
	if (B_LIST[MIX_B_IDX] != MIX_DEC) {
		fprintf(stderr, "MIX_B_IDX does not name the B of MIX_DEC\n");
		return 2;
	}
	if (steps < 1 || steps > MAX_STEPS) {
		fprintf(stderr, "--steps: 1 … %d\n", MAX_STEPS);
		return 2;
	}
	if (!backend_cuda_available()) {
		fprintf(stderr, "no GPU: skipped\n");
		return 77;
	}
	struct cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	printf("device: %s, %.1f GiB, %d SMs\n", prop.name, prop.totalGlobalMem / 1073741824.0,
	       prop.multiProcessorCount);
	host_rand = xmalloc(sizeof(uint16_t) * HOST_RAND_N);
	for (size_t i = 0; i < HOST_RAND_N; i++)
		host_rand[i] = bf16_of(((float)urand() / 4294967296.0f - 0.5f) * 0.2f);

	step_res rg = { 0 }, re = { 0 };
	if (do_backend) {
		char dir[512] = { 0 };
		qerr e = { 0 };
		double t0 = now_s();
		if (!model) {
			const char *tmp = getenv("TMPDIR");
			snprintf(dir, sizeof(dir), "%s/qvl-bench-decode.XXXXXX",
				 tmp && *tmp ? tmp : "/tmp");
			if (!mkdtemp(dir)) {
				fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
				return 1;
			}
			mkmodel_opts o = { .preset = "2b", .out_dir = dir, .seed = 1, .dtype = ST_BF16 };
			if (mkmodel_run(&o, &e)) {
				rm_dir(dir);
				die_qerr("mkmodel 2b", &e);
			}
			model = dir;
			fprintf(stderr, "made the 2b model in %.1f s\n", now_s() - t0);
		}
		model_config mc;
		model_weights w;
		if (model_config_load_dir(model, &mc, NULL, NULL, &e) ||
		    model_weights_open(model, &mc, &w, &e))
			die_qerr(model, &e);
		run_backend(&mc, &w, false, steps, &rg);
		run_backend(&mc, &w, true, steps, &re);
		model_weights_deinit(&w);
		if (dir[0])
			rm_dir(dir);

		printf("\nTable 1: whole steps through backend_step_sample (2b, bf16, KV cache %s, "
		       "greedy), %d timed decode steps after %d warm-up, context %d..%d\n",
		       kv_fp8 ? "fp8" : "bf16", steps, N_WARM,
		       PROMPT + N_WARM, PROMPT + N_WARM + steps - 1);
		printf("%5s %12s %12s %12s %12s %12s\n", "B", "graphs ms", "(median)", "graphs tok/s",
		       "eager ms", "eager tok/s");
		for (int i = 0; i < N_B; i++)
			printf("%5d %12.3f %12.3f %12.0f %12.3f %12.0f\n", B_LIST[i], rg.dec_ms[i],
			       rg.dec_med_ms[i], B_LIST[i] * 1e3 / rg.dec_ms[i], re.dec_ms[i],
			       B_LIST[i] * 1e3 / re.dec_ms[i]);
		printf("prefill, one prompt (median of 3):   graphs        eager\n");
		printf("  512 tokens:  %8.2f ms %8.0f tok/s   %8.2f ms %8.0f tok/s\n", rg.pf_ms[0],
		       512e3 / rg.pf_ms[0], re.pf_ms[0], 512e3 / re.pf_ms[0]);
		printf("  4096 tokens: %8.2f ms %8.0f tok/s   %8.2f ms %8.0f tok/s\n", rg.pf_ms[1],
		       4096e3 / rg.pf_ms[1], re.pf_ms[1], 4096e3 / re.pf_ms[1]);
		printf("  batched 256 x 512 in steps of 8192: %.0f tok/s (graphs), %.0f tok/s (eager)\n",
		       rg.pf_batch_tps, re.pf_batch_tps);
		printf("mixed steps: %d decodes (context %d..%d) + whole 512-token prompts, or below 512 "
		       "the last tokens of one, mean of 10 (eager: a step with prompt tokens never "
		       "takes a graph):\n",
		       MIX_DEC, PROMPT + 3, PROMPT + 12);
		printf("  %14s %10s %10s %22s\n", "prompt tokens", "graphs ms", "eager ms",
		       "us a prompt token*");
		for (int i = 0; i < N_MIX; i++)
			printf("  %14d %10.3f %10.3f %22.2f\n", MIX_P[i], rg.mix_ms[i], re.mix_ms[i],
			       1e3 * (rg.mix_ms[i] - rg.dec_ms[MIX_B_IDX]) / MIX_P[i]);
		printf("  * (mixed step - the %d-decode graph step of table 1) / prompt tokens: what the "
		       "engine pays a prompt token, the decodes' eager-over-graph cost and the prompts' "
		       "logit rows included\n", MIX_DEC);
		fflush(stdout);
	}
	if (do_kernels) {
		/* B = 1 and 128 are entries 0 and 4 of B_LIST */
		for (int k = 0; k < 2; k++) {
			int bi = k ? 4 : 0;
			run_kernels(B_LIST[bi], 640, false, rg.ok ? rg.dec_med_ms[bi] : 0,
				    re.ok ? re.dec_med_ms[bi] : 0, 3.35);
		}
		/* the same sums at table 1's mean decode context, so the gap compares like with
		 * like */
		const int mid = PROMPT + N_WARM + (steps - 1) / 2;
		printf("\nAt table 1's mean decode context (%d):\n", mid);
		for (int k = 0; k < 2; k++) {
			int bi = k ? 4 : 0;
			run_kernels(B_LIST[bi], mid, true, rg.ok ? rg.dec_med_ms[bi] : 0,
				    re.ok ? re.dec_med_ms[bi] : 0, 3.35);
		}
	}
	free(host_rand);
	return 0;
}
