/*
 * sampling CUDA kernel (rules, lists and outputs in sampling.h; reference kn_sample_ref).
 *
 * Launch: one CTA of 1024 threads per row (B CTAs, one wave for B ≤ #SMs), nothing written to
 * global memory but the outputs. The row (V bf16, 304 KB at V = 151936) is read once from HBM
 * and then again from L2 by each of the passes below; no pass keeps it on chip.
 *
 * Layout of a pass over the row: iteration i covers ids [i·8192, (i+1)·8192); thread t takes the
 * 8 ids from i·8192 + 8t (one 16-byte load when V % 8 == 0, else 8 bounded scalar loads), so
 * warp w covers 256 consecutive ids (a quarter of a 1024-id chunk) and the threads of an
 * iteration are in id order.
 *
 * The mask and the penalties change a few ids: two bitmaps in shared memory (V bits each) mark
 * the ids of the row's pen list and of its mask list. The main loop of an "effective values" pass
 * skips marked ids; the pen entries then come one per thread with their value recomputed from
 * the raw logit (masked: -inf), and the masked ids outside the pen list as -inf (a duplicate
 * mask id is visited twice: a -inf weighs 0 and ranks last, so it changes nothing below).
 *
 * Passes (each a block-wide reduction; a pass is skipped when its row does not need it):
 *   1   raw max / arg max, effective max / arg max (greedy ends here)
 *   2-5 top_k: radix select of the k-th largest value, 8 bits a level, over an order-preserving
 *       uint32 key of the float (count histograms of 256 bins)
 *   6   Z = Σ W over S, and top_p's first level: the masses of S per top byte of w's bits
 *   7-9 top_p: the next bytes of w's bits, among the tokens whose bits match so far: the bin
 *       where the running mass (heaviest first) reaches T names θ = the cut weight, the mass
 *       above it, and so j = how many tokens of weight θ (lowest ids first) are kept
 *   10  per 1024-id chunk: the kept mass above θ and the count of θ-ties; one thread walks the
 *       chunks to the one where the running kept mass passes t
 *   11  inside that chunk, one id per thread (pen and mask values patched in shared memory): two
 *       block scans (tie ranks, then kept masses) find the token.
 *   logprobs: Σ exp(x - max) in fp32 per thread, summed in double; the top list by a two-level
 *   radix select on the 16-bit key of the bf16 logits, then one pass in id order that gathers
 *   the values above the k-th and, by block scans, the lowest ids equal to it.
 *
 * Histogram adds: __match_any_sync groups the lanes that hit the same bin, and one lane adds for
 * all (logits bunch into a few top-byte bins; plain shared atomics would serialise 32-way).
 * Masses are uint64 fixed point (sampling.h), so every sum is exact and order-free: the kernel
 * picks the reference's token bit for bit. Weights use __f*_rn so that nothing is fused.
 *
 * Block reductions: warp butterflies, one slot per warp in shared memory, then warp 0 over the
 * slots (the arg best: a butterfly again). An earlier arg best in which every thread looped over
 * the 32 slots lost warps 25-27 of each CTA on an H100 (per-thread values and slots checked
 * correct by a dump; cause not found): keep to this form.
 *
 * Shared memory: 2·ceil(V/32)·4 bytes of bitmaps + 12 bytes per chunk (dynamic: ~40 KB at
 * V = 151936) + ~17 KB static. 64 registers (1024 threads), a few bytes spilled.
 *
 * H100 SXM, B = 128, V = 151936, one parameter set for all rows (tests/check_sampling_cuda.c,
 * events, median of 20): greedy 23 µs; T 1 alone 110 µs; greedy + 20 logprobs 169 µs;
 * T 0.8 top_k 50 top_p 0.9: 386 µs; T 0.8 top_p 0.9: 572 µs. The histogram passes are the
 * cost (a __match_any_sync per id per pass); a bound on top_p's cut that drops the light tail
 * before the first mass histogram (as sampler.c does) would be the next step.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "cuda_check.h"
#include "pdl.cuh"
#include "sampling.h"

#define NT 1024
#define NWARP (NT / 32)
#define GROUP 8                        /* ids per thread per iteration */
#define STEP (NT * GROUP)
#define CHUNK NT                       /* ids per draw chunk: one per thread in pass 11 */
#define FULL 0xffffffffu

typedef unsigned long long u64;

struct Ctx {
	float m_eff, m_raw;
	int arg_eff, arg_raw;
	float c, lo, kth, theta;
	int topk_on, chunk, pick, top_n;
	unsigned radix_key, radix_rank, radix_total;
	u64 Z, above, w_theta, zk, t, chunk_cum;
	unsigned j_ties, chunk_rem;
	double lse_sum, n_inf;
};

struct Shared {
	u64 hist_m[256];
	unsigned hist_c[256];
	u64 stage[NWARP][32];
	float ev[CHUNK];
	float red_f[NWARP], red_f2[NWARP];
	int red_i[NWARP], red_i2[NWARP];
	u64 red_u[NWARP];
	unsigned red_c[NWARP];
	double red_d[NWARP], red_d2[NWARP];
	float top_v[KN_SAMPLE_MAX_LOGPROBS];
	int top_id[KN_SAMPLE_MAX_LOGPROBS];
	Ctx ctx;
};

struct RowIn {
	const uint16_t *x;             /* the row */
	int V;
	const kn_sample_pen *pen;
	int pen_n;
	const int32_t *mask;
	int mask_n;
	const uint32_t *penbits, *maskbits;
	bool mods;
	float rp, fq, pr;
	bool fp;
};


static __device__ __forceinline__ float bf16_value(uint16_t h)
{
	return __uint_as_float((uint32_t)h << 16);
}

static __device__ __forceinline__ bool bit(const uint32_t *bits, int id)
{
	return (bits[id >> 5] >> (id & 31)) & 1;
}

/* Order-preserving key of a non-NaN float (-0 as +0). */
static __device__ __forceinline__ uint32_t okey(float v)
{
	uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ float key_value(uint32_t k)
{
	return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* sampler.c's weight, every operation rounded on its own (sampling_ref.c's weight()). */
static __device__ __forceinline__ float weight(float x, float m, float c, float lo)
{
	float t = __fmul_rn(__fsub_rn(x, m), c);
	bool ok = t >= -125.0f && x >= lo;
	if (!(t > -125.0f))
		t = -125.0f;
	float k = __fsub_rn(__fadd_rn(t, 12582912.0f), 12582912.0f);
	float f = __fsub_rn(t, k);
	float q = 1.535336188319500e-4f;
	q = __fadd_rn(__fmul_rn(q, f), 1.339887440266574e-3f);
	q = __fadd_rn(__fmul_rn(q, f), 9.618437357674640e-3f);
	q = __fadd_rn(__fmul_rn(q, f), 5.550332471162809e-2f);
	q = __fadd_rn(__fmul_rn(q, f), 2.402264791363012e-1f);
	q = __fadd_rn(__fmul_rn(q, f), 6.931472028550421e-1f);
	q = __fadd_rn(__fmul_rn(q, f), 1.0f);
	int e = ((int)k + 127) << 23;
	return ok ? __fmul_rn(q, __int_as_float(e)) : 0.0f;
}

static __device__ __forceinline__ u64 fixed_mass(float w)
{
	return __double2ull_rz(__dmul_rn((double)w, 0x1p44));
}

/* The value of pen entry (id, count) after the mask and the penalties (sampler.c's order). */
static __device__ __forceinline__ float pen_value(const RowIn &in, int id, int count)
{
	if (in.mods && bit(in.maskbits, id))
		return -INFINITY;
	float y = bf16_value(in.x[id]);
	y = y > 0 ? __fdiv_rn(y, in.rp) : __fmul_rn(y, in.rp);
	if (in.fp && count > 0) {
		y = __fsub_rn(y, __fmul_rn(in.fq, (float)count));
		y = __fsub_rn(y, in.pr);
	}
	return y;
}

/* The 8 raw logits of ids base.. (past V: -inf). */
template <bool VEC>
static __device__ __forceinline__ void load8(const RowIn &in, int base, float (&x)[GROUP])
{
	if (VEC && base + GROUP <= in.V) {
		uint4 q = *(const uint4 *)(in.x + base);
		uint32_t w[4] = { q.x, q.y, q.z, q.w };
#pragma unroll
		for (int j = 0; j < 4; j++) {
			x[2 * j] = __uint_as_float(w[j] << 16);
			x[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
		}
	} else {
#pragma unroll
		for (int e = 0; e < GROUP; e++)
			x[e] = base + e < in.V ? bf16_value(in.x[base + e]) : -INFINITY;
	}
}

/* Bit e set where id base+e is in range and not marked (its raw value is its value). */
static __device__ __forceinline__ unsigned plain_mask(const RowIn &in, int base)
{
	if (base >= in.V)
		return 0;
	unsigned m = in.V - base >= GROUP ? 0xffu : (1u << (in.V - base)) - 1;
	if (in.mods)
		m &= ~((in.penbits[base >> 5] | in.maskbits[base >> 5]) >> (base & 31));
	return m & 0xffu;
}

/* Every effective value once (masked duplicates aside), f(id, v, ok) called by all threads the
 * same number of times (ok false: nothing there), so f may use warp collectives. */
template <bool VEC, class F>
static __device__ __forceinline__ void visit_eff(const RowIn &in, F f)
{
	const int t = threadIdx.x;
	for (int base0 = 0; base0 < in.V; base0 += STEP) {
		int base = base0 + t * GROUP;
		float x[GROUP];
		load8<VEC>(in, base, x);
		unsigned ok = plain_mask(in, base);
#pragma unroll
		for (int e = 0; e < GROUP; e++)
			f(base + e, x[e], (ok >> e) & 1);
	}
	if (!in.mods)
		return;
	for (int e0 = 0; e0 < in.pen_n; e0 += NT) {
		int e = e0 + t, id = 0;
		float v = 0;
		bool ok = e < in.pen_n;
		if (ok) {
			kn_sample_pen p = in.pen[e];
			id = p.id;
			ok = id >= 0 && id < in.V;
			if (ok)
				v = pen_value(in, id, p.count);
		}
		f(id, v, ok);
	}
	for (int e0 = 0; e0 < in.mask_n; e0 += NT) {
		int e = e0 + t, id = e < in.mask_n ? in.mask[e] : -1;
		bool ok = id >= 0 && id < in.V && !bit(in.penbits, id);
		f(id, -INFINITY, ok);
	}
}

/* Every raw logit, f(id, x, in_range), all threads alike. */
template <bool VEC, class F>
static __device__ __forceinline__ void visit_raw(const RowIn &in, F f)
{
	const int t = threadIdx.x;
	for (int base0 = 0; base0 < in.V; base0 += STEP) {
		int base = base0 + t * GROUP;
		float x[GROUP];
		load8<VEC>(in, base, x);
#pragma unroll
		for (int e = 0; e < GROUP; e++)
			f(base + e, x[e], base + e < in.V);
	}
}

/* ---- warp and block collectives ---- */

/* arr[idx] += 1 for each lane with idx ≥ 0; one atomic per distinct idx. All lanes call. */
static __device__ __forceinline__ void agg_count(unsigned *arr, int idx)
{
	if (!__any_sync(FULL, idx >= 0))
		return;   /* the common case past the first radix level */
	unsigned peers = __match_any_sync(FULL, idx);
	if (idx >= 0 && (threadIdx.x & 31) == __ffs(peers) - 1)
		atomicAdd(&arr[idx], (unsigned)__popc(peers));
}

/* arr[idx] += w for each lane with idx ≥ 0 and w > 0; one atomic per distinct idx. */
static __device__ __forceinline__ void agg_mass(u64 *arr, int idx, u64 w, u64 *stage)
{
	const int lane = threadIdx.x & 31;
	if (w == 0)
		idx = -1;
	if (!__any_sync(FULL, idx >= 0))
		return;
	unsigned peers = __match_any_sync(FULL, idx);
	stage[lane] = w;
	__syncwarp();
	if (idx >= 0 && lane == __ffs(peers) - 1) {
		u64 s = 0;
		for (unsigned p = peers; p; p &= p - 1)
			s += stage[__ffs(p) - 1];
		atomicAdd(&arr[idx], s);
	}
	__syncwarp();
}

/* (v, id) ranks before (ov, oid): larger value, then lower id. */
static __device__ __forceinline__ bool better(float v, int id, float ov, int oid)
{
	return v > ov || (v == ov && id < oid);
}

/* The butterfly over the 32 lanes: every lane ends with the best of the warp. */
static __device__ __forceinline__ void warp_best2(float &v, int &id, float &v2, int &id2)
{
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(FULL, v, o), ov2 = __shfl_xor_sync(FULL, v2, o);
		int oid = __shfl_xor_sync(FULL, id, o), oid2 = __shfl_xor_sync(FULL, id2, o);
		if (better(ov, oid, v, id)) {
			v = ov;
			id = oid;
		}
		if (better(ov2, oid2, v2, id2)) {
			v2 = ov2;
			id2 = oid2;
		}
	}
}

/* Two block-wide arg bests at once: warps, then warp 0 over the warp slots; every thread
 * returns with both results. */
static __device__ void block_best2(Shared &sh, float &v, int &id, float &v2, int &id2)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	warp_best2(v, id, v2, id2);
	__syncthreads();
	if (lane == 0) {
		sh.red_f[warp] = v;
		sh.red_i[warp] = id;
		sh.red_f2[warp] = v2;
		sh.red_i2[warp] = id2;
	}
	__syncthreads();
	if (warp == 0) {
		v = sh.red_f[lane];
		id = sh.red_i[lane];
		v2 = sh.red_f2[lane];
		id2 = sh.red_i2[lane];
		warp_best2(v, id, v2, id2);
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		sh.red_f[0] = v;
		sh.red_i[0] = id;
		sh.red_f2[0] = v2;
		sh.red_i2[0] = id2;
	}
	__syncthreads();
	v = sh.red_f[0];
	id = sh.red_i[0];
	v2 = sh.red_f2[0];
	id2 = sh.red_i2[0];
}

static __device__ u64 block_sum_u64(Shared &sh, u64 x)
{
	for (int o = 16; o > 0; o >>= 1)
		x += __shfl_xor_sync(FULL, x, o);
	__syncthreads();
	if ((threadIdx.x & 31) == 0)
		sh.red_u[threadIdx.x >> 5] = x;
	__syncthreads();
	u64 s = 0;
	for (int w = 0; w < NWARP; w++)
		s += sh.red_u[w];
	return s;
}

static __device__ void block_sum_2d(Shared &sh, double &a, double &b)
{
	for (int o = 16; o > 0; o >>= 1) {
		a += __shfl_xor_sync(FULL, a, o);
		b += __shfl_xor_sync(FULL, b, o);
	}
	__syncthreads();
	if ((threadIdx.x & 31) == 0) {
		sh.red_d[threadIdx.x >> 5] = a;
		sh.red_d2[threadIdx.x >> 5] = b;
	}
	__syncthreads();
	a = b = 0;
	for (int w = 0; w < NWARP; w++) {
		a += sh.red_d[w];
		b += sh.red_d2[w];
	}
}

/* Exclusive prefix sum over the threads in order; *total gets the sum of all. */
template <class T, class Slot>
static __device__ T block_scan(Slot *slots, T x, T *total)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	T inc = x;
	for (int o = 1; o < 32; o <<= 1) {
		T y = __shfl_up_sync(FULL, inc, o);
		if (lane >= o)
			inc += y;
	}
	__syncthreads();
	if (lane == 31)
		slots[warp] = inc;
	__syncthreads();
	T before = 0, all = 0;
	for (int w = 0; w < NWARP; w++) {
		if (w < warp)
			before += slots[w];
		all += slots[w];
	}
	*total = all;
	return before + inc - x;
}

/* ---- radix selection ---- */

/* The k-th largest (1 ≤ k) of the keys that keyf(id, v, ok, &key) accepts, among bits levels·8
 * wide (levels ≤ 4), over the effective values (EFF) or the raw logits: into ctx.radix_key, the
 * rank among equal keys into ctx.radix_rank (1-based), the number of keys into
 * ctx.radix_total (counted at the first level; when it is < k, nothing else is set). */
template <bool VEC, bool EFF, class KeyF>
static __device__ void radix_select(Shared &sh, const RowIn &in, KeyF keyf, int levels, unsigned k)
{
	uint32_t prefix = 0;
	unsigned rank = k;
	for (int lv = levels - 1; lv >= 0; lv--) {
		const int shift = 8 * lv, top = 8 * levels;
		__syncthreads();
		for (int i = threadIdx.x; i < 256; i += NT)
			sh.hist_c[i] = 0;
		__syncthreads();
		auto f = [&](int id, float v, bool ok) {
			uint32_t key = 0;
			ok = ok && keyf(v, &key);
			bool match = ok && (shift + 8 >= top || (key >> (shift + 8)) == prefix);
			agg_count(sh.hist_c, match ? (int)((key >> shift) & 255) : -1);
		};
		if (EFF)
			visit_eff<VEC>(in, f);
		else
			visit_raw<VEC>(in, f);
		__syncthreads();
		if (threadIdx.x == 0) {
			if (lv == levels - 1) {
				unsigned all = 0;
				for (int i = 0; i < 256; i++)
					all += sh.hist_c[i];
				sh.ctx.radix_total = all;
			}
			if (sh.ctx.radix_total >= k) {
				unsigned cum = 0;
				int bin = 0;
				for (int i = 255; i >= 0; i--) {
					if (cum + sh.hist_c[i] >= rank) {
						bin = i;
						break;
					}
					cum += sh.hist_c[i];
				}
				sh.ctx.radix_rank = rank - cum;
				sh.ctx.radix_key = (prefix << 8) | (uint32_t)bin;
			}
		}
		__syncthreads();
		if (sh.ctx.radix_total < k)
			return;
		prefix = sh.ctx.radix_key;
		rank = sh.ctx.radix_rank;
	}
}

/* ---- logprobs ---- */

template <bool VEC>
static __device__ void raw_logprobs(Shared &sh, const RowIn &in, int n_top)
{
	const float m = sh.ctx.m_raw;
	double s = 0, ninf = 0;
	{
		float fs = 0, fi = 0;
		visit_raw<VEC>(in, [&](int, float x, bool ok) {
			if (!ok || isnan(x))
				return;
			if (isfinite(m))
				fs += expf(x - m);
			else
				fi += x == INFINITY;
		});
		s = fs;
		ninf = fi;
	}
	block_sum_2d(sh, s, ninf);
	if (threadIdx.x == 0) {
		sh.ctx.lse_sum = s;
		sh.ctx.n_inf = ninf;
		sh.ctx.top_n = 0;
	}
	if (n_top <= 0)
		return;
	/* 16-bit keys of the bf16 logits, NaN as -inf */
	auto key16 = [](float x, uint32_t *key) {
		*key = okey(isnan(x) ? -INFINITY : x) >> 16;
		return true;
	};
	radix_select<VEC, false>(sh, in, key16, 2, (unsigned)n_top);
	const uint32_t K = sh.ctx.radix_key;
	const unsigned want_eq = sh.ctx.radix_rank;   /* ties with K to take, lowest ids first */
	unsigned taken = 0;
	const int t = threadIdx.x;
	for (int base0 = 0; base0 < in.V; base0 += STEP) {
		int base = base0 + t * GROUP;
		float x[GROUP];
		load8<VEC>(in, base, x);
		uint32_t k16[GROUP];
		unsigned n_eq = 0;
#pragma unroll
		for (int e = 0; e < GROUP; e++) {
			key16(x[e], &k16[e]);
			if (base + e >= in.V)
				k16[e] = 0;   /* below any real key (-inf is 0x007f) */
			n_eq += k16[e] == K;
			if (k16[e] > K) {
				int at = atomicAdd(&sh.ctx.top_n, 1);
				sh.top_v[at] = isnan(x[e]) ? -INFINITY : x[e];
				sh.top_id[at] = base + e;
			}
		}
		unsigned tile;
		unsigned rank = block_scan(sh.red_c, n_eq, &tile);
#pragma unroll
		for (int e = 0; e < GROUP; e++)
			if (k16[e] == K) {
				if (taken + rank < want_eq) {
					int at = atomicAdd(&sh.ctx.top_n, 1);
					sh.top_v[at] = isnan(x[e]) ? -INFINITY : x[e];
					sh.top_id[at] = base + e;
				}
				rank++;
			}
		taken += tile;
	}
	__syncthreads();
	if (t == 0) {
		int n = sh.ctx.top_n;
		for (int i = 1; i < n; i++)
			for (int j = i; j > 0 && better(sh.top_v[j], sh.top_id[j], sh.top_v[j - 1],
							sh.top_id[j - 1]); j--) {
				float tv = sh.top_v[j];
				int ti = sh.top_id[j];
				sh.top_v[j] = sh.top_v[j - 1];
				sh.top_id[j] = sh.top_id[j - 1];
				sh.top_v[j - 1] = tv;
				sh.top_id[j - 1] = ti;
			}
	}
}

/* log p of raw value x (NaN as -inf), as sampler.c's raw_logprob. */
static __device__ float raw_logprob(const Ctx &c, float x, int V)
{
	if (isnan(x))
		x = -INFINITY;
	double m = c.m_raw;
	if (isfinite(m))
		return (float)((double)x - m - log(c.lse_sum));
	if (m > 0)
		return x == INFINITY ? (float)-log(c.n_inf) : -INFINITY;
	return (float)-log((double)V);
}

/* ---- the draw ---- */

static __device__ __forceinline__ float float_at_least(double x)
{
	float f = __double2float_rn(x);
	if ((double)f < x)
		f = nextafterf(f, INFINITY);
	return f;
}

template <bool VEC>
static __device__ int draw(Shared &sh, const RowIn &in, const kn_sample_row &r, u64 *chunk_mass,
			   unsigned *chunk_ties, int nchunks)
{
	const int t = threadIdx.x;
	Ctx &cx = sh.ctx;
	if (t == 0) {
		float c = __double2float_rn(__ddiv_rn(M_LOG2E, r.temperature));
		if (!(c >= FLT_MIN))
			c = FLT_MIN;
		cx.c = c;
		cx.lo = r.min_p > 0 ? float_at_least(__dadd_rn((double)cx.m_eff,
								__dmul_rn(r.temperature, r.log_min_p)))
				    : -INFINITY;
		cx.topk_on = 0;
		cx.kth = -INFINITY;
	}
	__syncthreads();
	if (r.top_k > 0 && r.top_k < in.V) {
		auto keyf = [](float v, uint32_t *key) {
			if (isnan(v))
				return false;
			*key = okey(v);
			return true;
		};
		radix_select<VEC, true>(sh, in, keyf, 4, (unsigned)r.top_k);
		if (t == 0 && cx.radix_total > (unsigned)r.top_k) {
			cx.topk_on = 1;
			cx.kth = key_value(cx.radix_key);
		}
		__syncthreads();
	}
	const float m = cx.m_eff, c = cx.c, lo = cx.lo, kth = cx.kth;
	const bool topk_on = cx.topk_on, top_p_on = r.top_p < 1;
	/* w of a value, 0 outside S */
	auto wS = [=](float v, bool ok) {
		if (!ok)
			return 0.0f;
		float w = weight(v, m, c, lo);
		return w > 0 && (!topk_on || v >= kth) ? w : 0.0f;
	};

	/* Z, and top_p's first level */
	for (int i = t; i < 256; i += NT)
		sh.hist_m[i] = 0;
	__syncthreads();
	u64 z = 0;
	u64 *stage = sh.stage[t >> 5];
	visit_eff<VEC>(in, [&](int, float v, bool ok) {
		float w = wS(v, ok);
		u64 W = fixed_mass(w);
		z += W;
		if (top_p_on)
			agg_mass(sh.hist_m, (int)(__float_as_uint(w) >> 24), W, stage);
	});
	z = block_sum_u64(sh, z);
	if (t == 0) {
		cx.Z = z;
		cx.theta = 0;
		cx.above = 0;
		cx.j_ties = 0;
		cx.w_theta = 0;
		cx.zk = z;
		if (top_p_on) {
			u64 T = (u64)ceil(__dmul_rn(r.top_p, __ull2double_rn(z)));
			cx.t = T < z ? T : z;   /* T, until the cut is known */
		}
	}
	if (top_p_on) {
		uint32_t prefix = 0;
		for (int lv = 3; lv >= 0; lv--) {
			if (lv < 3) {
				__syncthreads();
				for (int i = t; i < 256; i += NT)
					sh.hist_m[i] = 0;
				__syncthreads();
				const int shift = 8 * lv;
				visit_eff<VEC>(in, [&](int, float v, bool ok) {
					float w = wS(v, ok);
					uint32_t bits = __float_as_uint(w);
					bool match = w > 0 && (bits >> (shift + 8)) == prefix;
					agg_mass(sh.hist_m, match ? (int)((bits >> shift) & 255) : -1,
						 fixed_mass(w), stage);
				});
			}
			__syncthreads();
			if (t == 0) {
				/* cx.t holds what is still to reach below the bins above */
				u64 cum = 0;
				int bin = 0;
				for (int i = 255; i >= 0; i--) {
					if (cum + sh.hist_m[i] >= cx.t) {
						bin = i;
						break;
					}
					cum += sh.hist_m[i];
				}
				cx.above += cum;
				cx.t -= cum;
				cx.radix_key = (prefix << 8) | (uint32_t)bin;
			}
			__syncthreads();
			prefix = cx.radix_key;
		}
		if (t == 0) {
			float th = __uint_as_float(prefix);
			u64 wt = fixed_mass(th), rest = cx.t;
			cx.theta = th;
			cx.w_theta = wt;
			cx.j_ties = wt ? (unsigned)((rest + wt - 1) / wt) : 0;
			cx.zk = cx.above + (u64)cx.j_ties * wt;
		}
		__syncthreads();
	}
	if (t == 0) {
		u64 u53 = __double2ull_rz(__dmul_rn(r.u, 0x1p53)), zk = cx.zk;
		cx.t = (__umul64hi(u53, zk) << 11) | ((u53 * zk) >> 53);
		cx.pick = -1;
	}
	for (int i = t; i < nchunks; i += NT) {
		chunk_mass[i] = 0;
		chunk_ties[i] = 0;
	}
	__syncthreads();
	const float theta = cx.theta;
	/* pass 10: kept mass above θ and θ-ties per chunk */
	{
		for (int base0 = 0; base0 < in.V; base0 += STEP) {
			int base = base0 + t * GROUP;
			float x[GROUP];
			load8<VEC>(in, base, x);
			unsigned ok = plain_mask(in, base), ties = 0;
			u64 mass = 0;
#pragma unroll
			for (int e = 0; e < GROUP; e++) {
				float w = wS(x[e], (ok >> e) & 1);
				if (w > theta)
					mass += fixed_mass(w);
				ties += w > 0 && w == theta;
			}
			/* the warp's 256 ids lie in one chunk: warp sums, one atomic each */
			for (int o = 16; o > 0; o >>= 1) {
				mass += __shfl_xor_sync(FULL, mass, o);
				ties += __shfl_xor_sync(FULL, ties, o);
			}
			int ch = (base0 + (t >> 5) * 32 * GROUP) / CHUNK;
			if ((t & 31) == 0 && mass)
				atomicAdd(&chunk_mass[ch], mass);
			if ((t & 31) == 0 && ties)
				atomicAdd(&chunk_ties[ch], ties);
		}
		if (in.mods) {
			auto single = [&](int id, float v, bool ok) {
				float w = wS(v, ok);
				int ch = ok ? id / CHUNK : -1;
				agg_mass(chunk_mass, w > theta ? ch : -1, fixed_mass(w), stage);
				agg_count(chunk_ties, w > 0 && w == theta ? ch : -1);
			};
			for (int e0 = 0; e0 < in.pen_n; e0 += NT) {
				int e = e0 + t, id = 0;
				float v = 0;
				bool ok = e < in.pen_n;
				if (ok) {
					kn_sample_pen p = in.pen[e];
					id = p.id;
					ok = id >= 0 && id < in.V;
					if (ok)
						v = pen_value(in, id, p.count);
				}
				single(id, v, ok);
			}
			/* masked ids weigh 0: nothing to add */
		}
	}
	__syncthreads();
	if (t == 0) {
		u64 cum = 0, target = cx.t;
		unsigned rem = cx.j_ties;
		cx.chunk = -1;
		for (int ch = 0; ch < nchunks; ch++) {
			unsigned nt = chunk_ties[ch] < rem ? chunk_ties[ch] : rem;
			u64 kept = chunk_mass[ch] + (u64)nt * cx.w_theta;
			if (cum + kept > target) {
				cx.chunk = ch;
				cx.chunk_cum = cum;
				cx.chunk_rem = rem;
				break;
			}
			cum += kept;
			rem -= nt;
		}
	}
	__syncthreads();
	const int ch = cx.chunk;
	if (ch < 0)
		return cx.arg_eff;   /* not reached: t < Zk */
	/* pass 11: the chunk, one id per thread, values patched in shared memory */
	const int id = ch * CHUNK + t;
	sh.ev[t] = id < in.V ? bf16_value(in.x[id]) : NAN;
	__syncthreads();
	if (in.mods) {
		for (int e = t; e < in.pen_n; e += NT) {
			kn_sample_pen p = in.pen[e];
			if (p.id >= ch * CHUNK && p.id < ch * CHUNK + CHUNK && p.id < in.V)
				sh.ev[p.id - ch * CHUNK] = pen_value(in, p.id, p.count);
		}
		for (int e = t; e < in.mask_n; e += NT) {
			int mid = in.mask[e];
			if (mid < ch * CHUNK || mid >= ch * CHUNK + CHUNK || mid >= in.V ||
			    bit(in.penbits, mid))
				continue;
			bool first = true;   /* one write per id */
			for (int e2 = 0; e2 < e && first; e2++)
				first = in.mask[e2] != mid;
			if (first)
				sh.ev[mid - ch * CHUNK] = -INFINITY;
		}
	}
	__syncthreads();
	float w = wS(sh.ev[t], id < in.V && !isnan(sh.ev[t]));
	bool tie = w > 0 && w == theta;
	unsigned n_ties;
	unsigned tie_rank = block_scan(sh.red_c, (unsigned)tie, &n_ties);
	bool kept = w > theta || (tie && tie_rank < cx.chunk_rem);
	u64 W = kept ? fixed_mass(w) : 0, all;
	u64 before = cx.chunk_cum + block_scan(sh.red_u, W, &all);
	if (W > 0 && before <= cx.t && before + W > cx.t)
		cx.pick = id;
	__syncthreads();
	return cx.pick >= 0 ? cx.pick : cx.arg_eff;
}

/* ---- the kernel ---- */

template <bool VEC>
static __global__ void __launch_bounds__(NT, 1)
sample_kernel(int32_t *ids, float *logprob, int32_t *top_ids, float *top_logprobs,
	      const uint16_t *logits, const kn_sample_row *rows, const kn_sample_pen *pen,
	      const int32_t *mask, int V)
{
	kn_pdl_wait();
	kn_pdl_trigger();
	extern __shared__ __align__(16) uint32_t dyn[];
	__shared__ Shared sh;
	const int b = blockIdx.x, t = threadIdx.x;
	const kn_sample_row r = rows[b];
	const int nwords = ((V + 31) / 32 + 1) & ~1, nchunks = (V + CHUNK - 1) / CHUNK;
	uint32_t *penbits = dyn, *maskbits = dyn + nwords;
	u64 *chunk_mass = (u64 *)(maskbits + nwords);
	unsigned *chunk_ties = (unsigned *)(chunk_mass + nchunks);

	RowIn in;
	in.x = logits + (size_t)b * V;
	in.V = V;
	in.pen = pen + r.pen_start;
	in.pen_n = r.pen_count > 0 ? r.pen_count : 0;
	in.mask = mask + r.mask_start;
	in.mask_n = r.mask_count > 0 ? r.mask_count : 0;
	in.penbits = penbits;
	in.maskbits = maskbits;
	in.mods = in.pen_n > 0 || in.mask_n > 0;
	in.rp = r.repetition_penalty;
	in.fq = r.frequency_penalty;
	in.pr = r.presence_penalty;
	in.fp = in.fq != 0 || in.pr != 0;
	if (in.mods) {
		for (int i = t; i < 2 * nwords; i += NT)
			dyn[i] = 0;
		__syncthreads();
		for (int e = t; e < in.pen_n; e += NT) {
			int id = in.pen[e].id;
			if (id >= 0 && id < V)
				atomicOr(&penbits[id >> 5], 1u << (id & 31));
		}
		for (int e = t; e < in.mask_n; e += NT) {
			int id = in.mask[e];
			if (id >= 0 && id < V)
				atomicOr(&maskbits[id >> 5], 1u << (id & 31));
		}
		__syncthreads();
	}

	/* pass 1: raw and effective maxima, lowest id on ties; NaN never wins */
	float ev = -INFINITY, rv = -INFINITY;
	int ei = INT_MAX, ri = INT_MAX;
	for (int base0 = 0; base0 < V; base0 += STEP) {
		int base = base0 + t * GROUP;
		float x[GROUP];
		load8<VEC>(in, base, x);
		unsigned ok = plain_mask(in, base);
#pragma unroll
		for (int e = 0; e < GROUP; e++) {
			if (x[e] > rv) {   /* ids ascend within a thread */
				rv = x[e];
				ri = base + e;
			}
			if (((ok >> e) & 1) && x[e] > ev) {
				ev = x[e];
				ei = base + e;
			}
		}
	}
	if (in.mods) {
		for (int e = t; e < in.pen_n; e += NT) {
			kn_sample_pen p = in.pen[e];
			if (p.id < 0 || p.id >= V)
				continue;
			float v = pen_value(in, p.id, p.count);
			if (better(v, p.id, ev, ei)) {
				ev = v;
				ei = p.id;
			}
		}
		/* masked ids are -inf: they only matter when everything is, and then the raw arg max
		 * is taken */
	}
	block_best2(sh, ev, ei, rv, ri);
	if (t == 0) {
		sh.ctx.m_eff = ev;
		sh.ctx.arg_eff = ev == -INFINITY ? 0 : ei;
		sh.ctx.m_raw = rv;
		sh.ctx.arg_raw = rv == -INFINITY ? 0 : ri;
	}
	__syncthreads();

	int id;
	if (sh.ctx.m_eff == -INFINITY)
		id = sh.ctx.arg_raw;
	else if (!(r.temperature >= KN_SAMPLE_GREEDY_EPS) || sh.ctx.m_eff == INFINITY)
		id = sh.ctx.arg_eff;
	else
		id = draw<VEC>(sh, in, r, chunk_mass, chunk_ties, nchunks);

	if (r.logprobs >= 0 && logprob) {
		int n_top = r.logprobs < V ? r.logprobs : V;
		if (!top_ids || !top_logprobs)
			n_top = 0;
		raw_logprobs<VEC>(sh, in, n_top);
		__syncthreads();
		if (t < n_top) {
			top_ids[(size_t)b * KN_SAMPLE_MAX_LOGPROBS + t] = sh.top_id[t];
			top_logprobs[(size_t)b * KN_SAMPLE_MAX_LOGPROBS + t] =
				raw_logprob(sh.ctx, sh.top_v[t], V);
		}
		if (t == 0)
			logprob[b] = raw_logprob(sh.ctx, bf16_value(in.x[id]), V);
	}
	if (t == 0)
		ids[b] = id;
}

static size_t dyn_bytes(int V)
{
	size_t nwords = (size_t)(((V + 31) / 32 + 1) & ~1), nchunks = (size_t)(V + CHUNK - 1) / CHUNK;
	return 2 * nwords * 4 + nchunks * (8 + 4);
}

extern "C" int kn_sample_cuda(int32_t *ids, float *logprob, int32_t *top_ids, float *top_logprobs,
			      const uint16_t *logits, const kn_sample_row *rows,
			      const kn_sample_pen *pen, const int32_t *mask, int B, int V,
			      cudaStream_t stream)
{
	if (V <= 0 || V > KN_SAMPLE_MAX_V)
		return -1;
	if (B <= 0)
		return 0;
	size_t smem = dyn_bytes(V);
	if (V % GROUP == 0 && (uintptr_t)logits % 16 == 0) {
		CUDA_CHECK(cudaFuncSetAttribute(sample_kernel<true>,
						cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
		kn_launch(sample_kernel<true>, B, NT, smem, stream, ids, logprob, top_ids, top_logprobs,
							     logits, rows, pen, mask, V);
	} else {
		CUDA_CHECK(cudaFuncSetAttribute(sample_kernel<false>,
						cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
		kn_launch(sample_kernel<false>, B, NT, smem, stream, ids, logprob, top_ids, top_logprobs,
							      logits, rows, pen, mask, V);
	}
	KN_CHECK_LAUNCH();
	return 0;
}
