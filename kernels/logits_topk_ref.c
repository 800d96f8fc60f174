/*
 * logits_topk reference: one pass per row keeping a sorted top list (insertion), and the
 * log-sum-exp in double. See logits_topk.h for the order, the masks and the outputs.
 */
#include "logits_topk.h"

#include <math.h>

/* a ranks before (a_id) b (b_id): larger value, or equal value and lower id. */
static int ranks_before(float a, int32_t a_id, float b, int32_t b_id)
{
	return a > b || (a == b && a_id < b_id);
}

void kn_logits_topk_ref(int32_t *argmax, float *max_val, float *lse, int32_t *top_ids,
			float *top_vals, const float *logits, int B, int V, int k)
{
	for (int b = 0; b < B; b++) {
		const float *x = logits + (long)b * V;
		float best = -INFINITY;
		int32_t best_id = 0;
		int n = 0;   /* filled entries of the top list */
		for (int v = 0; v < V; v++) {
			float f = isnan(x[v]) ? -INFINITY : x[v];
			if (f > best) {
				best = f;
				best_id = v;
			}
			if (k == 0 || (n == k && !ranks_before(f, v, top_vals[(long)b * k + k - 1],
							      top_ids[(long)b * k + k - 1])))
				continue;
			int j = n < k ? n++ : k - 1;
			float *tv = top_vals + (long)b * k;
			int32_t *ti = top_ids + (long)b * k;
			for (; j > 0 && ranks_before(f, v, tv[j - 1], ti[j - 1]); j--) {
				tv[j] = tv[j - 1];
				ti[j] = ti[j - 1];
			}
			tv[j] = f;
			ti[j] = v;
		}
		for (int j = n; j < k; j++) {
			top_vals[(long)b * k + j] = -INFINITY;
			top_ids[(long)b * k + j] = -1;
		}
		argmax[b] = best_id;
		if (max_val)
			max_val[b] = best;
		if (best == -INFINITY) {
			lse[b] = -INFINITY;
			continue;
		}
		double s = 0;
		for (int v = 0; v < V; v++)
			if (!isnan(x[v]))
				s += exp((double)x[v] - best);
		lse[b] = (float)(best + log(s));
	}
}
