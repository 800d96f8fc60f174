/*
 * gemm: the projections of the model, y = x · Wᵀ (+ residual), bf16 in, fp32 accumulation, bf16
 * out (kn_gemm, kn_gemm_bias: the vision tower and the LM head) or fp32 out (kn_gemm_f32: the
 * text decoder's layers).
 *
 *   x (M, K) bf16 row-major    W (N, K) bf16 row-major, as the checkpoint stores a Linear weight
 *   residual (M, N) bf16 or NULL                         y (M, N) bf16 row-major
 *
 *   y[m][n] = bf16( Σ_k x[m][k]·W[n][k]  +  residual[m][n] )    one rounding; the sum in fp32 on
 *                                                               the GPU (double in the ref), the
 *                                                               residual added before rounding
 *
 * The residual is cuBLASLt's C matrix with beta = 1 (beta = 0 and C unused when NULL). y may
 * alias residual (in place: y += x·Wᵀ); y must not alias x or W.
 *
 * kn_gemm_cuda goes through cuBLASLt with CUBLAS_COMPUTE_32F. A kn_gemm_ctx holds the cuBLASLt
 * handle, one workspace allocated at creation, and a small table of the algorithms chosen by
 * cublasLtMatmulAlgoGetHeuristic per (M, N, K, residual?, bias?, output type, pointer alignment),
 * so a repeated shape does not query again. A ctx is not thread-safe: one per thread (or per
 * stream owner). The workspace is shared by every call on the ctx, so calls on one ctx must go
 * to one stream (or be ordered between streams by the caller).
 *
 * For M ≤ 4 kn_gemm_cuda (and kn_gemm_f32_cuda) runs its own GEMV (gemm.cu), launched with PDL
 * (pdl.cuh): it starts while the previous kernel of the stream still runs and reads its first
 * rows of W before waiting for it (x and residual only after). So W must not be written by the
 * kernel just before the call on the same stream; the model's weights, written once at
 * start-up, never are. (A copy, an event wait or a kernel launched without PDL in between makes
 * it safe again.)
 *
 * For 5 ≤ M ≤ 128 (decode steps of 5-128 sequences) kn_gemm_f32(_f16)_cuda and kn_gemm_f16_cuda
 * may run gemm_wgmma.cu's Hopper kernel instead of cuBLASLt, under the same PDL contract on W:
 * only for a key whose plan kn_gemm_*_tune timed it faster on (kn_gemm_ctx_wgmma says whether
 * the device has it). Its sums are fp32 in another order than cuBLASLt's (the same accuracy
 * class, not the same last bits); with the residual in place and K split, the splits are added
 * into y atomically in arrival order, so those last bits may also differ between runs.
 *
 * kn_gemm_ref is the plain-C reference (always built); kn_gemm_cuda takes the same arguments in
 * the same order after the ctx, plus a stream, with device pointers.
 *
 * kn_gemm_f32: the decoder's projections, whose outputs feed fp32 elementwise work (qkv →
 * qk_norm_rope, gate_up → silu_mul) or the fp32 residual stream itself (o_proj, down_proj add
 * into x in place). The decoder keeps x in fp32 and rounds to bf16 only the GEMM inputs, the KV
 * cache and attention (text_cuda.c):
 *
 *   x (M, K) bf16    W (N, K) bf16    residual (M, N) fp32 or NULL    y (M, N) fp32
 *   y[m][n] = Σ_k x[m][k]·W[n][k]  +  residual[m][n]       fp32 accumulation on the GPU (double
 *                                                          in the ref), NO rounding to bf16
 *
 * Same aliasing (y may alias residual: in place y += x·Wᵀ), same paths (cuBLASLt with fp32 C/D;
 * the GEMV for M ≤ 4, with the same sums as kn_gemm_cuda's, so bf16(y) there is bit for bit
 * kn_gemm_cuda's y when the residual holds bf16 values) and the same PDL contract on W.
 * kn_gemm_f32_ref rounds the double sum once, to float.
 *
 * kn_gemm_f32_f16: kn_gemm_f32 with x and W in IEEE fp16 (binary16) instead of bf16, for the
 * decoder's qkv and gate/up projections when their weights are held in fp16 (text_cuda.c: every
 * bf16 weight of them is then the same value, and x, the RMSNorm output, keeps 11 significant
 * bits instead of 8). Same formula, paths (the GEMV widens fp16 pieces instead of bf16 ones, the
 * sums are the same code; cuBLASLt takes CUDA_R_16F A and B), aliasing and PDL contract.
 *
 * kn_gemm_f16: fp16 operands and fp16 output, no residual, for the decoder's gate/up projection
 * on steps of more than 4 rows when a load-time bound proves fp16 holds the outputs
 * (text_cuda.c):   y[m][n] = fp16( Σ_k x[m][k]·W[n][k] )   fp32 sum, one rounding (the ref:
 * the double sum to float, then to fp16). Same paths, aliasing and PDL contract.
 *
 * kn_gemm_f32_rmsnorm: the decoder's RMSNorm and the projection after it, in one call:
 *
 *   x (M, K) fp32 rows of the residual stream    norm_w (K) bf16    W (N, K) bf16, or fp16 if f16
 *   h = rmsnorm(x; norm_w, eps) rounded to bf16, or to fp16 if f16      (kn_rmsnorm(_f16)_ref)
 *   y (M, N) fp32 = h · Wᵀ                                             (kn_gemm_f32(_f16)_ref)
 *
 * h (M, K, 16-bit) is the caller's scratch: the GPU either writes h there and runs the two
 * kernels, or (M ≤ 4, K ≤ 2048, the decode of a few sequences) runs one GEMV that normalises
 * the rows in shared memory with rmsnorm.cu's own code and leaves h untouched; y is the same
 * bits either way when h is 16-byte aligned (else the two kernels would take cuBLASLt). y must
 * not alias x or h. PDL contract: W's and norm_w's (gemm.cu).
 */
#ifndef QVL_KERNELS_GEMM_H
#define QVL_KERNELS_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kn_gemm_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *residual,
		 int M, int N, int K);

/* The same with a bias (the vision tower's Linear layers), still one rounding:
 *   y[m][n] = bf16( Σ_k x[m][k]·W[n][k] + bias[n] + residual[m][n] )      bias (N) bf16
 * as torch's bf16 Linear with bias (cuBLASLt's bias epilogue). With a residual, transformers
 * would round the Linear output first and then the sum (two roundings); the fused form differs
 * from it by at most a bf16 ulp of the sum, and is the more accurate of the two. On the GPU the
 * bias goes through CUBLASLT_EPILOGUE_BIAS (bias pointer 16-byte aligned is best). */
void kn_gemm_bias_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, const uint16_t *bias,
		      const uint16_t *residual, int M, int N, int K);

void kn_gemm_f32_ref(float *y, const uint16_t *x, const uint16_t *W, const float *residual, int M,
		     int N, int K);
void kn_gemm_f32_f16_ref(float *y, const uint16_t *x, const uint16_t *W, const float *residual,
			 int M, int N, int K);
void kn_gemm_f16_ref(uint16_t *y, const uint16_t *x, const uint16_t *W, int M, int N, int K);
void kn_gemm_f32_rmsnorm_ref(float *y, const float *x, const uint16_t *norm_w, float eps,
			     const uint16_t *W, int M, int N, int K, bool f16);

#ifdef QVL_HAVE_CUDA
#include <cuda_runtime_api.h>

typedef struct kn_gemm_ctx kn_gemm_ctx;

/* workspace_bytes: cuBLASLt scratch (32 MiB is ample on Hopper; 0 allowed). Aborts on failure. */
kn_gemm_ctx *kn_gemm_ctx_new(size_t workspace_bytes);
void kn_gemm_ctx_free(kn_gemm_ctx *ctx);   /* NULL is a no-op; synchronises the device first */

void kn_gemm_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *W,
		  const uint16_t *residual, int M, int N, int K, cudaStream_t stream);

void kn_gemm_bias_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *W,
		       const uint16_t *bias, const uint16_t *residual, int M, int N, int K,
		       cudaStream_t stream);

void kn_gemm_f32_cuda(kn_gemm_ctx *ctx, float *y, const uint16_t *x, const uint16_t *W,
		      const float *residual, int M, int N, int K, cudaStream_t stream);
void kn_gemm_f32_f16_cuda(kn_gemm_ctx *ctx, float *y, const uint16_t *x, const uint16_t *W,
			  const float *residual, int M, int N, int K, cudaStream_t stream);
void kn_gemm_f16_cuda(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *W, int M,
		      int N, int K, cudaStream_t stream);
void kn_gemm_f32_rmsnorm_cuda(kn_gemm_ctx *ctx, float *y, uint16_t *h, const float *x,
			      const uint16_t *norm_w, float eps, const uint16_t *W, int M, int N,
			      int K, bool f16, cudaStream_t stream);

/* Tunes the cuBLASLt plan that kn_gemm_f32_cuda (f16: kn_gemm_f32_f16_cuda) uses for exactly
 * these arguments' key (shape, types, pointer alignment, the weight's being Ws[0]'s): after 20
 * untimed runs of the first guess, times up to 16 candidate algorithms (cuBLASLt's first 8,
 * then up to 8 more configurations of the first one's algorithm id, duplicates dropped; one
 * warm-up and 5 runs each) and keeps the fastest for later calls (the first guess stays unless
 * another is more than 2% faster); the tuned plan is never evicted from the ctx's cache.
 * Ws: n_W weights of that shape (a decoder passes one per layer); the launches take them in
 * turn, so that each reads its weight from device memory as a step does, not from L2. The
 * first 64 are used, and of those only the ones aligned at least as the plan's key (the
 * smallest alignment of y, x, Ws[0] and residual). The products run on y (and on residual when
 * y is it): their contents are garbage afterwards. Synchronises the stream. Returns the index
 * of the candidate kept (0: the heuristic's own first choice; KN_GEMM_TUNE_WGMMA: gemm_wgmma,
 * timed the same way where it fits every weight, kept when it is more than 2% faster than the
 * best cuBLASLt candidate) with *ms_first and *ms_best (its time and the kept one's), or -1
 * (nothing done) when the GEMV would run the shape (M ≤ 4), n_W < 1, Ws[0] is NULL or the
 * stream is capturing. An untuned key of more than 128 rows borrows the algorithm (and the
 * fused gate/up choice of kn_gemm_glu_tune) kept for the
 * nearest tuned M above it (at most twice its rows; same N, K, types and alignment) where
 * cuBLASLt accepts it: a prompt step a few rows short of the tuned max_num_batched_tokens. Timing
 * picks the algorithm, so
 * two start-ups may keep different ones for a shape (the same accuracy class; not the same
 * last bits). */
int kn_gemm_f32_tune(kn_gemm_ctx *ctx, float *y, const uint16_t *x, const uint16_t *const *Ws,
		     int n_W, const float *residual, int M, int N, int K, bool f16,
		     cudaStream_t stream, float *ms_first, float *ms_best);
/* Whether the ctx runs gemm_wgmma.cu's kernel for 5-128 rows (an sm_90 device with this
 * build's sm_90a code, QVL_GEMM_WGMMA not 0): fp32 and fp16 outputs, N % 128 == 0, K % 64 ==
 * 0, 16-byte aligned operands; kn_gemm_*_tune times it against cuBLASLt's candidates and keeps
 * the faster (returning KN_GEMM_TUNE_WGMMA as the candidate when it is this kernel). */
#define KN_GEMM_TUNE_WGMMA 16
bool kn_gemm_ctx_wgmma(const kn_gemm_ctx *ctx);
/* How many of the ctx's cached plans are tuned ones (they stay, whatever else is cached). */
int kn_gemm_ctx_n_tuned(const kn_gemm_ctx *ctx);
/* The same for kn_gemm_f16_cuda's plan of these arguments. */
int kn_gemm_f16_tune(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *const *Ws,
		     int n_W, int M, int N, int K, cudaStream_t stream, float *ms_first,
		     float *ms_best);
/* The same for kn_gemm_cuda's plan (bf16 output, no residual) of these arguments: the LM head
 * of the decode steps. gemm_wgmma takes no bf16 output, so only cuBLASLt's candidates are
 * timed. */
int kn_gemm_tune(kn_gemm_ctx *ctx, uint16_t *y, const uint16_t *x, const uint16_t *const *Ws,
		 int n_W, int M, int N, int K, cudaStream_t stream, float *ms_first,
		 float *ms_best);
/* kn_gemm_glu: the decoder's gate/up projection and SwiGLU (silu_mul.h) in one call, for its
 * fp16 form (text_cuda.c: steps of more than 4 rows with gu_f16):
 *
 *   x (M, K) fp16    W (2F, K) fp16: the F gate rows, then the F up rows    act (M, F) bf16
 *
 *   unfused: gu = kn_gemm_f16(x, W) into the caller's scratch gu (M, 2F), act =
 *            kn_silu_mul_f16(gu): gate and up rounded to fp16, then act to bf16
 *   fused:   act = bf16(silu(g)·u) straight from the fp32 sums, one rounding, and gu neither
 *            written nor read, in one of two forms: KN_GEMM_GLU_WGMMA, gemm_wgmma's GLU
 *            epilogue (kn_gemm_wgmma_glu_run, up to 128 rows), or KN_GEMM_GLU_TMA,
 *            gemm_glu_tma (kn_glu_tma_run, any rows)
 *
 * The fused form runs only where kn_gemm_glu_tune kept it for the key of the unfused product
 * (its plan carries the choice); elsewhere, and before any tuning, the call is the unfused
 * pair. Same PDL contract on W. act must not overlap gu, x or W. */
void kn_gemm_glu_cuda(kn_gemm_ctx *ctx, uint16_t *act, uint16_t *gu, const uint16_t *x,
		      const uint16_t *W, int M, int F, int K, cudaStream_t stream);
#define KN_GEMM_GLU_WGMMA 1
#define KN_GEMM_GLU_TMA 2
/* Times the forms for exactly these arguments' key (the unfused product as its own tuning left
 * it, then silu_mul; each fused form that fits every weight), on Ws in turn as kn_gemm_f32_tune
 * does, and keeps the fastest fused one when it is more than 2% faster than the unfused. Where
 * no fused form fits (no sm_90, F or K off their tiles) nothing is timed and the unfused form
 * stays. Returns the form kept (KN_GEMM_GLU_WGMMA or KN_GEMM_GLU_TMA), 0 (unfused) or -1
 * (nothing done: the GEMV's rows, no weight, a capturing stream), with *ms_unfused and
 * *ms_fused (the fastest fused form's; 0 where not timed). act and gu hold garbage after a
 * timing. Synchronises the stream. */
int kn_gemm_glu_tune(kn_gemm_ctx *ctx, uint16_t *act, uint16_t *gu, const uint16_t *x,
		     const uint16_t *const *Ws, int n_W, int M, int F, int K, cudaStream_t stream,
		     float *ms_unfused, float *ms_fused);
#endif

#ifdef __cplusplus
}
#endif

#endif
