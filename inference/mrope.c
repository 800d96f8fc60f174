/*
 * mrope: get_rope_index for prompts and decode positions (see mrope.h for the contract).
 *
 * One pass over the prompt with a cursor st and the next free scalar position `next`: text runs
 * take next, next+1, … on all axes; each image run takes the grid layout of §7.3. Positions are
 * computed in int64 and checked against INT32_MAX before they are stored.
 */
#include "mrope.h"

static void put(int32_t *pos, size_t n, size_t i, int64_t t, int64_t h, int64_t w)
{
	pos[i] = (int32_t)t;
	pos[n + i] = (int32_t)h;
	pos[2 * n + i] = (int32_t)w;
}

int mrope_positions(const model_config *mc, const int32_t *ids, size_t n, const int32_t (*grids)[3],
		    size_t n_grids, int32_t *pos, int64_t *rope_delta, qerr *e)
{
	if (n == 0)
		return qerr_set(e, QERR_INVALID, "mrope: empty prompt");
	if (n > (size_t)INT32_MAX / 2)
		return qerr_set(e, QERR_LIMIT, "mrope: prompt of %zu tokens is too long", n);
	if (n_grids > 0 && (!mc->has_vision || !grids))
		return qerr_set(e, QERR_INVALID, "mrope: %zu image grids for a model without vision",
				n_grids);
	if (!mc->has_vision) {
		for (size_t i = 0; i < n; i++)
			put(pos, n, i, (int64_t)i, (int64_t)i, (int64_t)i);
		*rope_delta = 0;
		return 0;
	}
	const int m = mc->vision.spatial_merge_size;
	const int32_t img = mc->image_token_id, vid = mc->video_token_id;

	/* Validate everything first: outputs are written only on success. */
	size_t st = 0, g = 0;
	int64_t next = 0;
	for (;;) {
		size_t ed = st;
		while (ed < n && ids[ed] != img && ids[ed] != vid)
			ed++;
		if (ed == n)
			break;
		if (ids[ed] == vid)
			return qerr_set(e, QERR_UNSUPPORTED,
					"mrope: video token at %zu: video positions are not supported yet", ed);
		if (g == n_grids)
			return qerr_set(e, QERR_INVALID,
					"mrope: image token at %zu but only %zu image grids given", ed, n_grids);
		int64_t t = grids[g][0], h = grids[g][1], w = grids[g][2];
		if (t <= 0 || h <= 0 || w <= 0 || h % m || w % m)
			return qerr_set(e, QERR_INVALID,
					"mrope: image %zu: grid (%lld, %lld, %lld) is not positive with h, w "
					"multiples of %d", g, (long long)t, (long long)h, (long long)w, m);
		int64_t H = h / m, W = w / m, cnt = t * H * W;
		if (t > INT32_MAX || H > INT32_MAX || W > INT32_MAX || cnt > (int64_t)(n - ed))
			return qerr_set(e, QERR_INVALID,
					"mrope: image %zu needs %lld tokens from %zu, the prompt has %zu left",
					g, (long long)(t * H * W), ed, n - ed);
		for (int64_t k = 0; k < cnt; k++)
			if (ids[ed + (size_t)k] != img)
				return qerr_set(e, QERR_INVALID,
						"mrope: image %zu needs %lld image tokens from %zu, token %lld is %d",
						g, (long long)cnt, ed, (long long)(ed + (size_t)k), ids[ed + (size_t)k]);
		int64_t s = next + (int64_t)(ed - st);
		int64_t mx = t - 1;
		if (H - 1 > mx)
			mx = H - 1;
		if (W - 1 > mx)
			mx = W - 1;
		next = s + mx + 1;
		if (next > INT32_MAX)
			return qerr_set(e, QERR_LIMIT, "mrope: positions exceed int32 at image %zu", g);
		st = ed + (size_t)cnt;
		g++;
	}
	if (g != n_grids)
		return qerr_set(e, QERR_INVALID, "mrope: %zu image grids given, the prompt has %zu images",
				n_grids, g);
	if (next + (int64_t)(n - st) > INT32_MAX)
		return qerr_set(e, QERR_LIMIT, "mrope: positions exceed int32");

	/* Second pass: write. */
	st = 0;
	g = 0;
	next = 0;
	int64_t maxpos = -1;
	for (;;) {
		size_t ed = st;
		while (ed < n && ids[ed] != img)
			ed++;
		for (size_t i = st; i < ed; i++) {
			int64_t p = next + (int64_t)(i - st);
			put(pos, n, i, p, p, p);
			maxpos = p;
		}
		if (ed == n)
			break;
		int64_t t = grids[g][0], H = grids[g][1] / m, W = grids[g][2] / m;
		int64_t s = next + (int64_t)(ed - st);
		size_t i = ed;
		for (int64_t ti = 0; ti < t; ti++)
			for (int64_t r = 0; r < H; r++)
				for (int64_t c = 0; c < W; c++)
					put(pos, n, i++, s + ti, s + r, s + c);
		int64_t mx = t - 1;
		if (H - 1 > mx)
			mx = H - 1;
		if (W - 1 > mx)
			mx = W - 1;
		next = s + mx + 1;
		maxpos = next - 1;
		st = i;
		g++;
	}
	*rope_delta = maxpos + 1 - (int64_t)n;
	return 0;
}

int mrope_decode_positions(int64_t first, int n, int64_t rope_delta, int32_t *pos, qerr *e)
{
	if (n < 0)
		return qerr_set(e, QERR_INVALID, "mrope: %d decode positions", n);
	if (first < 0 || first + rope_delta < 0)
		return qerr_set(e, QERR_INVALID, "mrope: cache index %lld with delta %lld gives a "
				"negative position", (long long)first, (long long)rope_delta);
	if (first + rope_delta + n > (int64_t)INT32_MAX)
		return qerr_set(e, QERR_LIMIT, "mrope: decode position beyond int32");
	for (int i = 0; i < n; i++) {
		int32_t p = (int32_t)(first + i + rope_delta);
		pos[i] = pos[n + i] = pos[2 * n + i] = p;
	}
	return 0;
}
