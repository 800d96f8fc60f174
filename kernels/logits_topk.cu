/*
 * logits_topk CUDA kernel (order, masks and outputs in logits_topk.h; reference
 * kn_logits_topk_ref).
 *
 * Launch: one block of 256 threads per row, at most 2 blocks per SM (80 registers for K = 20,
 * no spills; B = 256 rows fit the 264 slots of an H100/H200 in one wave). Chosen over a split of
 * V across blocks because the decode batch is what matters for bandwidth; for B = 1 one SM reads
 * 608 KB, a few microseconds, which a split (a second pass and a workspace) would not repay.
 *
 * Pass: each thread walks a strided slice of the row (4 float4 loads in flight per thread when
 * V % 4 == 0 and the logits are 16-byte aligned, then single float4s for the tail; else single
 * floats), one chunk of logits at a time, and keeps
 *   - a sorted top-K list in registers (K a template constant ≥ max(k, 1): 1, 4, 8 or 20);
 *     push compares value then id, so arrival order does not matter; empty slots hold the
 *     sentinel (-inf, INT_MAX), which ranks below any real -inf logit;
 *   - a log-sum-exp (m, s), s = Σ exp(x − m) in fp32: per chunk one max, at most one rescale,
 *     one __expf per logit; all-masked chunks skipped (-inf and NaN, read as -inf, add 0).
 * Rejection before any insertion work: a chunk enters push only where its max reaches
 * max(the thread's K-th value, the warp floor). The warp floor (warp_kth_floor, refreshed every
 * chunk in the float4 loop) is the K-th largest of the 32 lanes' running maxima: K distinct
 * logits are ≥ it, so a logit strictly below it is outside the row's top K. Without it the
 * lanes' insertions diverge and the warp runs the insertion for nearly every logit (381 µs for
 * 256 × 151936 on an H100; 383 → 167 µs on an H200 with it).
 * Merge: max(k, 1) rounds of a block-wide arg best over each thread's list head (warp shuffles,
 * then 8 warp slots in shared memory); the winning thread (unique: ties on value and id, only
 * between sentinels, go to the lower thread) shifts its list up. Round 0 is the argmax. The
 * (m, s) pairs are combined with the same shuffle/slot pattern.
 *
 * 4 bytes read per logit, nothing else of size; at 167 µs (930 GB/s) still short of the
 * ~55 µs bandwidth floor: probably (not profiled) the insertions that pass the floor (still
 * divergent within a warp), the per-chunk floor sort and the 20-round merge.
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

/* Log-sum-exp: s = Σ exp(x − m) over the non-masked x seen, m the running max. */
struct Lse {
	float m, s;
	/* A chunk of N logits (NaN already read as -inf): one max, at most one rescale, then
	 * one __expf per logit (ex2.approx; masked -inf gives exp(-inf) = 0). An all-masked
	 * chunk is skipped, so m = -inf never meets -inf − -inf. */
	template <int N> __device__ __forceinline__ void add_chunk(const float (&e)[N])
	{
		float cm = e[0];
#pragma unroll
		for (int c = 1; c < N; c++)
			cm = fmaxf(cm, e[c]);
		if (cm == -INFINITY)
			return;
		if (cm > m) {
			s *= __expf(m - cm);   /* m = -inf: s = 0 stays 0 */
			m = cm;
		}
		float a = 0.f;
#pragma unroll
		for (int c = 0; c < N; c++)
			a += __expf(e[c] - m);
		s += a;
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

/* Top-K for a chunk: a logit below the list's K-th value cannot enter (push compares value then
 * id, so the order in which ids arrive does not matter); only a chunk holding a value ≥ that
 * threshold takes the insertion path. */
template <int K, int N>
static __device__ __forceinline__ void push_chunk(TopList<K> &top, const float (&e)[N],
						  const int (&id)[N], float floor_v)
{
	float cm = e[0];
#pragma unroll
	for (int c = 1; c < N; c++)
		cm = fmaxf(cm, e[c]);
	if (cm < fmaxf(top.v[K - 1], floor_v))
		return;
#pragma unroll
	for (int c = 0; c < N; c++)
		if (e[c] >= fmaxf(top.v[K - 1], floor_v))
			top.push(e[c], id[c]);
}

/* The K-th largest of the 32 lanes' m (each lane's running max: a logit of that lane, or -inf).
 * At least K distinct logits of the row are ≥ it, so any logit strictly below it is outside
 * the top K of the row and may be dropped by every lane of the warp. Bitonic sort, descending;
 * all 32 lanes must call it. */
template <int K>
static __device__ __forceinline__ float warp_kth_floor(float m, int lane)
{
#pragma unroll
	for (int size = 2; size <= 32; size <<= 1)
#pragma unroll
		for (int stride = size / 2; stride > 0; stride >>= 1) {
			float o = __shfl_xor_sync(0xffffffffu, m, stride);
			bool keep_max = ((lane & size) == 0) == ((lane & stride) == 0);
			m = keep_max ? fmaxf(m, o) : fminf(m, o);
		}
	return __shfl_sync(0xffffffffu, m, K - 1);
}

#define LOGITS_TOPK_UNROLL 4   /* float4 loads in flight per thread */

template <int K, bool VEC>
static __global__ void __launch_bounds__(LOGITS_TOPK_THREADS, 2)
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
		const int n4 = V / 4;
		constexpr int U = LOGITS_TOPK_UNROLL, STEP = U * LOGITS_TOPK_THREADS;
		int i = t;
		float floor_v = -INFINITY;   /* warp-wide drop bound, see warp_kth_floor */
		/* warp-uniform bound (lane 31's test) so that the shuffles see all 32 lanes */
		for (; i - lane + 31 + (U - 1) * LOGITS_TOPK_THREADS < n4; i += STEP) {
			float4 q[U];
#pragma unroll
			for (int u = 0; u < U; u++)
				q[u] = __ldcs(&x4[i + u * LOGITS_TOPK_THREADS]);   /* read once: stream past L2 */
			float e[4 * U];
			int id[4 * U];
#pragma unroll
			for (int u = 0; u < U; u++) {
				const int base = 4 * (i + u * LOGITS_TOPK_THREADS);
				e[4 * u + 0] = unmask_nan(q[u].x);
				e[4 * u + 1] = unmask_nan(q[u].y);
				e[4 * u + 2] = unmask_nan(q[u].z);
				e[4 * u + 3] = unmask_nan(q[u].w);
#pragma unroll
				for (int c = 0; c < 4; c++)
					id[4 * u + c] = base + c;
			}
			acc.add_chunk(e);
			push_chunk(top, e, id, floor_v);
			floor_v = warp_kth_floor<K>(acc.m, lane);
		}
		for (; i < n4; i += LOGITS_TOPK_THREADS) {
			float4 q = __ldcs(&x4[i]);
			float e[4] = { unmask_nan(q.x), unmask_nan(q.y), unmask_nan(q.z), unmask_nan(q.w) };
			int id[4] = { 4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3 };
			acc.add_chunk(e);
			push_chunk(top, e, id, floor_v);
		}
	} else {
		for (int i = t; i < V; i += LOGITS_TOPK_THREADS) {
			float e[1] = { unmask_nan(__ldcs(&x[i])) };
			int id[1] = { i };
			acc.add_chunk(e);
			push_chunk(top, e, id, -INFINITY);
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
