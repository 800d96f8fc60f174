/*
 * vision_rope reference: plain C, one patch row and one head at a time (formulas in
 * vision_rope.h). θ and every product are fp32 as in transformers; cos/sin are taken in double
 * and rounded to fp32, like vision_cpu_rope_tables. The volatile products keep a compiler from
 * contracting a product and the sum into an FMA (torch rounds them separately). Obviously
 * correct first, fast never.
 */
#include "vision_rope.h"

#include <math.h>

#include "bf16.h"

enum { VROPE_MAX_Q = 128 };   /* hd ≤ 512 */

void kn_vision_rope_ref(uint16_t *qkv, int N, int H, int hd, int merge, int grid_h, int grid_w)
{
	int half = hd / 2, q = hd / 4, L = grid_h * grid_w, Dv = H * hd;
	float f[VROPE_MAX_Q];
	for (int k = 0; k < q; k++)
		f[k] = 1.0f / powf(10000.0f, (float)(2 * k) / (float)half);
	for (int n = 0; n < N; n++) {
		int r = n % L, win = r / (merge * merge), in = r % (merge * merge);
		float row = (float)((win / (grid_w / merge)) * merge + in / merge);
		float col = (float)((win % (grid_w / merge)) * merge + in % merge);
		for (int part = 0; part < 2; part++)
			for (int h = 0; h < H; h++) {
				uint16_t *p = qkv + (size_t)n * 3 * Dv + (size_t)part * Dv +
					      (size_t)h * hd;
				for (int i = 0; i < half; i++) {
					float th = i < q ? row * f[i] : col * f[i - q];
					float c = (float)cos((double)th), s = (float)sin((double)th);
					float a = bf16_to_f32(p[i]), b = bf16_to_f32(p[i + half]);
					volatile float ac = a * c, bs = b * s, bc = b * c, as = a * s;
					p[i] = f32_to_bf16(ac - bs);
					p[i + half] = f32_to_bf16(bc + as);
				}
			}
	}
}
