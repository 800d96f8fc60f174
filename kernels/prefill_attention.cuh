/*
 * prefill_attention.cuh: the device pieces that prefill_attention.cu's mma.sync kernel and
 * prefill_attention_wgmma.cu's wgmma kernel share: where a CTA's work lies, and the exact
 * widening of E4M3 cache bytes to bf16.
 */
#ifndef QVL_KERNELS_PREFILL_ATTENTION_CUH
#define QVL_KERNELS_PREFILL_ATTENTION_CUH

#include <cuda_bf16.h>
#include <stdint.h>

/* A CTA's work: sequence s (rows row0 .. row0 + len − 1 of q), its query tile of `rows` rows
 * from row m0 of the sequence, the positions that exist (kv_len, n_cached nc) and its share
 * j0 .. j1 − 1 of the key tiles. */
struct pfa_work {
	int s, row0, m0, rows, nc, kv_len, j0, j1;
};

/*
 * CTA t (grid y) of split z of nsplit, with query tiles of bm rows and key tiles of bn
 * positions, tile_prefix from pfa_tiles_kernel: false past the batch's last tile. The
 * sequence is the largest s with tile_prefix[s] ≤ t (empty sequences share a prefix); within
 * it tiles count from the LAST one, so that the tiles with the most keys start first. The
 * tile's key tiles run to its last row's position (causal), at most kv_len − 1 (max_pos: the
 * most positions a block table holds); split z takes a contiguous share of them.
 */
static __device__ __forceinline__ bool pfa_locate(pfa_work &w, const int32_t *tile_prefix,
						  const int32_t *q_start, const int32_t *n_cached,
						  int n_seqs, int t, int z, int nsplit, int bm, int bn,
						  int max_pos)
{
	if (t >= tile_prefix[n_seqs])
		return false;
	int lo = 0, hi = n_seqs - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) >> 1;
		if (tile_prefix[mid] <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	w.s = lo;
	w.row0 = q_start[lo];
	const int len = q_start[lo + 1] - w.row0;
	w.m0 = (tile_prefix[lo + 1] - 1 - t) * bm;
	w.nc = max(n_cached[lo], 0);
	w.kv_len = min(w.nc + len, max_pos);
	w.rows = min(bm, len - w.m0);
	const int last_key = min(w.nc + w.m0 + w.rows - 1, w.kv_len - 1);
	const int n_kv = last_key / bn + 1;
	const int chunk = (n_kv + nsplit - 1) / nsplit;
	w.j0 = min(z * chunk, n_kv);
	w.j1 = min(w.j0 + chunk, n_kv);
	return true;
}

/*
 * Four E4M3 bytes (x, the lowest byte first) to four bf16 (lo: bytes 0, 1; hi: bytes 2, 3),
 * exact. A byte b = s.eeee.mmm placed as bf16 bits s.0000eeee.mmm0000 is the bf16 of exponent
 * field e and mantissa m/8, i.e. value · 2^-120 — subnormals included (e = 0: m·2^-3 · 2^-126
 * = m·2^-9 · 2^-120) — so one multiply by 2^120 (exact, no overflow: |value| ≤ 448) finishes.
 * Only the NaN codes differ from fp8x2_to_bf162: they come out as ±480.
 */
static __device__ __forceinline__ void pfa_fp8x4_to_bf16x4(uint32_t x, uint32_t &lo, uint32_t &hi)
{
	/* each byte into the high byte of a 16-bit half: t = b1 << 24 | b0 << 8 */
	const uint32_t t0 = __byte_perm(x, 0u, 0x1404), t1 = __byte_perm(x, 0u, 0x3424);
	/* sign stays at bit 15; eeee.mmm moves down four bits (its old sign bit masked off) */
	const uint32_t w0 = (t0 & 0x80008000u) | ((t0 >> 4) & 0x07f007f0u);
	const uint32_t w1 = (t1 & 0x80008000u) | ((t1 >> 4) & 0x07f007f0u);
	const __nv_bfloat162 two120 = __halves2bfloat162(__ushort_as_bfloat16(0x7b80),
							 __ushort_as_bfloat16(0x7b80));
	__nv_bfloat162 b0 = __hmul2(*(const __nv_bfloat162 *)&w0, two120);
	__nv_bfloat162 b1 = __hmul2(*(const __nv_bfloat162 *)&w1, two120);
	lo = *(uint32_t *)&b0;
	hi = *(uint32_t *)&b1;
}

#endif
