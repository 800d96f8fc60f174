/*
 * vision_pos_embed reference: plain C, one patch row at a time (formulas and rounding in
 * vision_pos_embed.h). Every value transformers holds in a fixed dtype is rounded to that dtype
 * here; the volatile temporaries keep a compiler from contracting a product and a sum into an
 * FMA (torch rounds them separately).
 */
#include "vision_pos_embed.h"

#include <stddef.h>

#include "bf16.h"

static float bf16r(float v)
{
	return bf16_to_f32(f32_to_bf16(v));
}

/* Element i of torch.linspace(0, b, n) in fp32 (CPU scalar form). */
static float linspace_at(float b, int n, int i)
{
	if (n == 1)
		return 0.0f;
	float step = b / (float)(n - 1);
	volatile float p = i < n / 2 ? step * (float)i : step * (float)(n - 1 - i);
	return i < n / 2 ? 0.0f + p : b - p;
}

void kn_vision_pos_embed_ref(uint16_t *x, const uint16_t *table, int side, int dv, int merge,
			     int grid_t, int grid_h, int grid_w)
{
	int L = grid_h * grid_w, N = grid_t * L;
	for (int n = 0; n < N; n++) {
		int r = n % L, win = r / (merge * merge), in = r % (merge * merge);
		int row = (win / (grid_w / merge)) * merge + in / merge;
		int col = (win % (grid_w / merge)) * merge + in % merge;
		float hi = linspace_at((float)(side - 1), grid_h, row);
		float wi = linspace_at((float)(side - 1), grid_w, col);
		int h0 = (int)hi, w0 = (int)wi;
		int h1 = h0 + 1 < side ? h0 + 1 : side - 1, w1 = w0 + 1 < side ? w0 + 1 : side - 1;
		float dh = hi - (float)h0, dw = wi - (float)w0;
		float w00 = bf16r((1.0f - dh) * (1.0f - dw)), w01 = bf16r((1.0f - dh) * dw);
		float w10 = bf16r(dh * (1.0f - dw)), w11 = bf16r(dh * dw);
		const uint16_t *p00 = table + ((size_t)h0 * side + w0) * dv;
		const uint16_t *p01 = table + ((size_t)h0 * side + w1) * dv;
		const uint16_t *p10 = table + ((size_t)h1 * side + w0) * dv;
		const uint16_t *p11 = table + ((size_t)h1 * side + w1) * dv;
		uint16_t *o = x + (size_t)n * dv;
		for (int d = 0; d < dv; d++) {
			float t0 = bf16r(bf16_to_f32(p00[d]) * w00);
			float t1 = bf16r(bf16_to_f32(p01[d]) * w01);
			float t2 = bf16r(bf16_to_f32(p10[d]) * w10);
			float t3 = bf16r(bf16_to_f32(p11[d]) * w11);
			float e = bf16r(bf16r(bf16r(t0 + t1) + t2) + t3);
			o[d] = f32_to_bf16(bf16_to_f32(o[d]) + e);
		}
	}
}
