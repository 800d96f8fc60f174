/*
 * logits_topk CUDA kernel (order, masks and outputs in logits_topk.h; reference
 * kn_logits_topk_ref).
 *
 * Launch: one block of 256 threads per row (B = 256 decode rows: 256 blocks, all resident at
 * 4 blocks per SM, so the whole logits tensor streams in one wave). Chosen over a split of V
 * across blocks because the decode batch is what matters for bandwidth; for B = 1 one SM reads
 * 608 KB, a few microseconds, which a split (a second pass and a workspace) would not repay.
 *
 * Pass: each thread walks a strided slice of the row in increasing id order (16-byte float4
 * vectors when V % 4 == 0 and the logits are 16-byte aligned, else single floats) and keeps
 *   - a sorted top-K list in registers (K a template constant ≥ max(k, 1): 1, 4, 8 or 20); since
 *     its ids increase, a new value enters only when it beats the K-th entry, and ties keep the
 *     lower id first; empty slots hold the sentinel (-inf, INT_MAX), which ranks below any
 *     real -inf logit;
 *   - an online log-sum-exp (m, s) with s = Σ exp(x − m) in fp32, rescaled when m grows;
 *     -inf (and NaN, read as -inf) logits are skipped.
 * Merge: max(k, 1) rounds of a block-wide arg best over each thread's list head (warp shuffles,
 * then 8 warp slots in shared memory); the winning thread (unique: ties on value and id, only
 * between sentinels, go to the lower thread) shifts its list up. Round 0 is the argmax. The
 * (m, s) pairs are combined with the same shuffle/slot pattern.
 *
 * Memory-bound: 4 bytes read per logit, nothing else of size.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_check.h"
#include "logits_topk.h"

#define LOGITS_TOPK_THREADS 256
#define LOGITS_TOPK_WARPS (LOGITS_TOPK_THREADS / 32)
#define SENTINEL_ID 0x7fffffff

/* (a, ai) ranks before (b, bi): larger value, or equal value and lower id. */
static __device__ __forceinline__ bool ranks_before(float a, int ai, float b, int bi)
{
	return a > b || (a == b && ai < bi);
}

template <int K> struct TopList {
	float v[K];
	int id[K];

	__device__ __forceinline__ void init()
	{
#pragma unroll
		for (int j = 0; j < K; j++) {
			v[j] = -INFINITY;
			id[j] = SENTINEL_ID;
		}
	}
	/* x, i rank after everything already in the list except what it beats. */
	__device__ __forceinline__ void push(float x, int i)
	{
		if (!ranks_before(x, i, v[K - 1], id[K - 1]))
			return;
		v[K - 1] = x;
		id[K - 1] = i;
#pragma unroll
		for (int j = K - 1; j > 0; j--)
			if (ranks_before(v[j], id[j], v[j - 1], id[j - 1])) {
				float tv = v[j];
				int ti = id[j];
				v[j] = v[j - 1];
				id[j] = id[j - 1];
				v[j - 1] = tv;
				id[j - 1] = ti;
			}
	}
	__device__ __forceinline__ void pop()
	{
#pragma unroll
		for (int j = 0; j < K - 1; j++) {
			v[j] = v[j + 1];
			id[j] = id[j + 1];
		}
		v[K - 1] = -INFINITY;
		id[K - 1] = SENTINEL_ID;
	}
};

/* Online log-sum-exp: s = Σ exp(x − m) over the non-masked x seen. */
struct Lse {
	float m, s;
	__device__ __forceinline__ void add(float x)
	{
		if (x == -INFINITY)
			return;
		if (x > m) {
			s = s * expf(m - x) + 1.f;   /* m = -inf: s = 0, exp(-inf) = 0 */
			m = x;
		} else {
			s += expf(x - m);
		}
	}
	__device__ __forceinline__ void merge(float om, float os)
	{
		float nm = fmaxf(m, om);
		if (nm == -INFINITY)
			return;
		s = (m == -INFINITY ? 0.f : s * expf(m - nm)) + (om == -INFINITY ? 0.f : os * expf(om - nm));
		m = nm;
	}
};

static __device__ __forceinline__ float unmask_nan(float x)
{
	return isnan(x) ? -INFINITY : x;
}

template <int K, bool VEC>
static __global__ void __launch_bounds__(LOGITS_TOPK_THREADS, 4)
logits_topk_kernel(int32_t *argmax, float *max_val, float *lse, int32_t *top_ids,
		   float *top_vals, const float *logits, int V, int k)
{
	__shared__ float slot_v[LOGITS_TOPK_WARPS], slot_s[LOGITS_TOPK_WARPS];
	__shared__ int slot_id[LOGITS_TOPK_WARPS], slot_t[LOGITS_TOPK_WARPS];
	__shared__ float win_v;
	__shared__ int win_id, win_t;

	const int b = blockIdx.x, t = threadIdx.x, lane = t & 31, warp = t >> 5;
	const float *x = logits + (long)b * V;
	TopList<K> top;
	top.init();
	Lse acc = { -INFINITY, 0.f };
	if (VEC) {
		const float4 *x4 = (const float4 *)x;
		for (int i = t; i < V / 4; i += LOGITS_TOPK_THREADS) {
			float4 q = __ldcs(&x4[i]);   /* read once: stream past L2 */
			float e[4] = { unmask_nan(q.x), unmask_nan(q.y), unmask_nan(q.z), unmask_nan(q.w) };
#pragma unroll
			for (int c = 0; c < 4; c++) {
				acc.add(e[c]);
				top.push(e[c], 4 * i + c);
			}
		}
	} else {
		for (int i = t; i < V; i += LOGITS_TOPK_THREADS) {
			float e = unmask_nan(__ldcs(&x[i]));
			acc.add(e);
			top.push(e, i);
		}
	}

	/* log-sum-exp: warp, then the warp slots */
	for (int o = 16; o > 0; o >>= 1) {
		float om = __shfl_xor_sync(0xffffffffu, acc.m, o);
		float os = __shfl_xor_sync(0xffffffffu, acc.s, o);
		acc.merge(om, os);
	}
	if (lane == 0) {
		slot_v[warp] = acc.m;
		slot_s[warp] = acc.s;
	}
	__syncthreads();
	if (t == 0) {
		Lse all = { -INFINITY, 0.f };
		for (int w = 0; w < LOGITS_TOPK_WARPS; w++)
			all.merge(slot_v[w], slot_s[w]);
		lse[b] = all.m == -INFINITY ? -INFINITY : all.m + logf(all.s);
	}

	const int rounds = k > 0 ? k : 1;
	for (int r = 0; r < rounds; r++) {
		__syncthreads();   /* slots free: the previous round (or the lse pass) has read them */
		float bv = top.v[0];
		int bid = top.id[0], bt = t;
		for (int o = 16; o > 0; o >>= 1) {
			float ov = __shfl_xor_sync(0xffffffffu, bv, o);
			int oid = __shfl_xor_sync(0xffffffffu, bid, o);
			int ot = __shfl_xor_sync(0xffffffffu, bt, o);
			if (ranks_before(ov, oid, bv, bid) || (ov == bv && oid == bid && ot < bt)) {
				bv = ov;
				bid = oid;
				bt = ot;
			}
		}
		if (lane == 0) {
			slot_v[warp] = bv;
			slot_id[warp] = bid;
			slot_t[warp] = bt;
		}
		__syncthreads();
		if (t == 0) {
			/* warps in increasing order: strict ranks_before keeps the lower thread */
			for (int w = 1; w < LOGITS_TOPK_WARPS; w++)
				if (ranks_before(slot_v[w], slot_id[w], bv, bid)) {
					bv = slot_v[w];
					bid = slot_id[w];
					bt = slot_t[w];
				}
			win_v = bv;
			win_id = bid;
			win_t = bt;
			int out_id = bid == SENTINEL_ID ? -1 : bid;
			if (r == 0) {
				argmax[b] = bv == -INFINITY && bid == SENTINEL_ID ? 0 : out_id;
				if (max_val)
					max_val[b] = bv;
			}
			if (r < k) {
				top_ids[(long)b * k + r] = out_id;
				top_vals[(long)b * k + r] = bv;
			}
		}
		__syncthreads();
		if (t == win_t)
			top.pop();
	}
}

template <int K>
static void launch(int32_t *argmax, float *max_val, float *lse, int32_t *top_ids,
		   float *top_vals, const float *logits, int B, int V, int k, cudaStream_t stream)
{
	if (V % 4 == 0 && (uintptr_t)logits % 16 == 0)
		logits_topk_kernel<K, true><<<B, LOGITS_TOPK_THREADS, 0, stream>>>(
			argmax, max_val, lse, top_ids, top_vals, logits, V, k);
	else
		logits_topk_kernel<K, false><<<B, LOGITS_TOPK_THREADS, 0, stream>>>(
			argmax, max_val, lse, top_ids, top_vals, logits, V, k);
}

extern "C" void kn_logits_topk_cuda(int32_t *argmax, float *max_val, float *lse, int32_t *top_ids,
				    float *top_vals, const float *logits, int B, int V, int k,
				    cudaStream_t stream)
{
	if (B <= 0 || V <= 0 || k < 0 || k > KN_LOGITS_TOPK_MAX)
		return;
	if (k <= 1)
		launch<1>(argmax, max_val, lse, top_ids, top_vals, logits, B, V, k, stream);
	else if (k <= 4)
		launch<4>(argmax, max_val, lse, top_ids, top_vals, logits, B, V, k, stream);
	else if (k <= 8)
		launch<8>(argmax, max_val, lse, top_ids, top_vals, logits, B, V, k, stream);
	else
		launch<KN_LOGITS_TOPK_MAX>(argmax, max_val, lse, top_ids, top_vals, logits, B, V, k,
					   stream);
	KN_CHECK_LAUNCH();
}
