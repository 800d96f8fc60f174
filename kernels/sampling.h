/*
 * sampling: the next token of every sequence of a decode batch, chosen on the GPU from the LM
 * head's bf16 logits, with the semantics of inference/sampler.c's sampler_sample (vLLM V1), so
 * that only (B) ids (and the logprobs asked for) come back to the host instead of (B, V) fp32.
 *
 *   logits (B, V) bf16            rows (B) kn_sample_row        pen (…) kn_sample_pen
 *   mask (…) int32                ->  ids (B) int32, logprob (B) fp32,
 *                                     top_ids (B, KN_SAMPLE_MAX_LOGPROBS) int32,
 *                                     top_logprobs (B, KN_SAMPLE_MAX_LOGPROBS) fp32
 *
 * Per row (x the raw logits, v the values sampled from):
 *   v = x; v[id] = -inf for id in mask (min_tokens: eos + stop ids); then for each pen entry
 *   (id, count): v = v > 0 ? v / r : v·r (r = repetition_penalty), and when count > 0 and a
 *   frequency/presence penalty is set, v = (v - f·count) - p; all in float, as sampler.c.
 *   greedy (temperature < KN_SAMPLE_GREEDY_EPS): arg max v, lowest id on ties; if every v is
 *   -inf (or NaN), the arg max of x (0 if that too is all -inf).
 *   otherwise, with m = max v (NaN ignored; m = -inf: arg max x; m = +inf: the lowest +inf id):
 *     c  = float(log2(e) / T) (≥ FLT_MIN), lo = the smallest float ≥ m + T·log(min_p) (min_p > 0)
 *     w  = 2^((v - m)·c) by sampler.c's exp2 polynomial, bit for bit; 0 where v < lo, where
 *          (v - m)·c < -125, and for NaN / -inf
 *     S  = {w > 0} ∩ (top_k on: {v ≥ the k-th largest non-NaN v}, ties with it kept)
 *     W  = floor(w·2^44) as uint64: masses are fixed-point integers, so sums are exact and the
 *          same in any order (the reference and the kernel agree bit for bit)
 *     top_p < 1: order S by w descending, ties lower id first; the cut is the first token at
 *          which the running ΣW reaches T = min(Z, ceil(top_p·Z)), Z = Σ_S W; kept = the order
 *          up to the cut. Else kept = S.
 *     draw: t = floor(u53·Zk / 2^53) (u53 = floor(u·2^53), Zk = Σ_kept W, exact 128-bit
 *          product); the token is the lowest kept id whose running ΣW (ids ascending) exceeds t.
 *   sampler.c runs the same rules with float block sums and double totals; the two agree except
 *   where u·Zk (or top_p·Z) sits within float rounding of a boundary (tests/check_sampling_ref.c
 *   checks that on random rows against sampler_sample itself).
 *
 * Logprobs (row.logprobs ≥ 0) are those of the raw distribution, log_softmax(x) (NaN as -inf),
 * as sampler_logprobs: logprob[b] = the chosen id's; for logprobs = k > 0 the first min(k, V) of
 * x ordered by value descending, ties lower id first, in top_ids/top_logprobs[b][0..). A row with
 * logprobs = -1 leaves logprob and top_* alone; top_* slots past min(k, V) are left alone too.
 * If x has +inf the +inf ids share the mass; if every x is -inf each logprob is -log V.
 *
 * The draw u is one 53-bit uniform from the sequence's own generator, taken by the host for
 * every non-greedy row (sampler.c takes exactly one per non-greedy call, before anything else).
 *
 * Lists: pen[pen_start .. pen_start+pen_count) are the row's ids of prompt ∪ output, distinct
 * (count = times in the output, 0 for prompt-only ids; prompt ids only when repetition_penalty
 * != 1, as sampler_state keeps them); mask[mask_start .. +mask_count) the ids masked this step
 * (duplicates allowed). Ids outside [0, V) are ignored. Lists are only read for rows that use
 * them, so a row without penalties may give pen_count 0.
 *
 * kn_sample_ref is the plain-C reference (always built); kn_sample_cuda takes the same
 * arguments in the same order plus a stream, with device pointers (rows, pen and mask too). One
 * CTA of 1024 threads per row; no workspace; V ≤ KN_SAMPLE_MAX_V (it returns -1, launching
 * nothing, otherwise). logprob/top_ids/top_logprobs may be NULL when no row asks for logprobs.
 */
#ifndef QVL_KERNELS_SAMPLING_H
#define QVL_KERNELS_SAMPLING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KN_SAMPLE_GREEDY_EPS 1e-5      /* sampler.h's SAMPLER_GREEDY_EPS */
#define KN_SAMPLE_MAX_LOGPROBS 20
#define KN_SAMPLE_MAX_V 262144         /* masses stay under 2^62; smem bitmaps of V bits */

typedef struct kn_sample_row {
	double temperature;            /* < KN_SAMPLE_GREEDY_EPS: greedy (and u unused) */
	double top_p;                  /* (0, 1]; 1 is off */
	double min_p;                  /* [0, 1]; 0 is off */
	double log_min_p;              /* log(min_p) by the host's libm (kn_sample_row_init) */
	double u;                      /* [0, 1): the row's draw */
	int32_t top_k;                 /* ≤ 0 or ≥ V is off */
	int32_t logprobs;              /* -1 none; 0 the chosen token's; k ≤ 20 and the top k */
	float repetition_penalty;      /* 1 is off */
	float presence_penalty;        /* 0 is off */
	float frequency_penalty;       /* 0 is off */
	int32_t pen_start, pen_count;  /* this row's entries of pen */
	int32_t mask_start, mask_count;/* this row's entries of mask */
} kn_sample_row;

typedef struct kn_sample_pen {
	int32_t id;
	int32_t count;                 /* in the output so far; 0: in the prompt only */
} kn_sample_pen;

/* Fill the parameters of a row as sampler.c reads sampling_params (the penalties as floats,
 * log(min_p)); u = 0, no lists, logprobs -1. */
void kn_sample_row_init(kn_sample_row *r, double temperature, double top_p, int32_t top_k,
			double min_p, double repetition_penalty, double presence_penalty,
			double frequency_penalty);

void kn_sample_ref(int32_t *ids, float *logprob, int32_t *top_ids, float *top_logprobs,
		   const uint16_t *logits, const kn_sample_row *rows, const kn_sample_pen *pen,
		   const int32_t *mask, int B, int V);

/* For tests: how close row b's draw came to a boundary, in units of the kept mass Zk: the
 * distance from t to the nearest end of the chosen token's interval, and (top_p on) from T to
 * the running mass just before and at the cut, over Z (1 when there is no draw / no cut).
 * Computes the row as kn_sample_ref does and returns its id. */
int32_t kn_sample_ref_margins(const uint16_t *logits, const kn_sample_row *row,
			      const kn_sample_pen *pen, const int32_t *mask, int V,
			      double *draw_margin, double *cut_margin);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>
int kn_sample_cuda(int32_t *ids, float *logprob, int32_t *top_ids, float *top_logprobs,
		   const uint16_t *logits, const kn_sample_row *rows, const kn_sample_pen *pen,
		   const int32_t *mask, int B, int V, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif

#endif
