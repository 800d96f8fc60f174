/*
 * Tests of text_cpu (the fp32 CPU text decoder) and mrope (3-D positions).
 *
 * The decoder is checked against ref_forward below: a deliberately naive double-precision
 * forward written from the spec (§7) — plain arrays, no BLAS, no paging, weights read element by
 * element from the safetensors mapping — on random-weight models made by mkmodel (F32, so both
 * sides see the same weights). Paging, chunking and batching are checked against text_cpu's own
 * one-shot logits, positions against the spec's worked example, and the whole decoder against
 * the lead's golden file (transformers logits) for the text-only prompts. Batch-invariant mode
 * is checked bit for bit (memcmp): a sequence alone vs sharing steps, prefilled in one chunk vs
 * many, decoding alone vs beside others — on 4 OpenBLAS threads, so that gemv's thread splits
 * are exercised — and against the default mode and the reference within the usual tolerance.
 */
#include <check.h>
#include <json.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "mkmodel.h"
#include "model_config.h"
#include "model_weights.h"
#include "mrope.h"
#include "rng.h"
#include "testutil.h"
#include "text_cpu.h"

/* ---- fixture: a tiny qwen3_vl and a dense qwen3, F32 -------------------------------------- */

typedef struct model {
	char *dir;
	model_config mc;
	model_weights w;
} model;

static model tiny, dense;

static const char *dense_config =
	"{\"architectures\": [\"Qwen3ForCausalLM\"], \"model_type\": \"qwen3\",\n"
	" \"hidden_size\": 96, \"intermediate_size\": 160, \"num_hidden_layers\": 3,\n"
	" \"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 24,\n"
	" \"vocab_size\": 151936, \"rope_theta\": 1000000, \"rms_norm_eps\": 1e-06,\n"
	" \"tie_word_embeddings\": false, \"max_position_embeddings\": 40960,\n"
	" \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"hidden_act\": \"silu\",\n"
	" \"attention_bias\": false, \"rope_scaling\": null}\n";

static void model_make(model *m, const char *tag, const char *preset, const char *config_path,
		       uint64_t seed)
{
	m->dir = tu_mkdtemp(tag);
	mkmodel_opts o = { .preset = preset, .config_path = config_path, .out_dir = m->dir,
			   .seed = seed, .dtype = ST_F32 };
	qerr e = {0};
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
	ck_assert_msg(model_config_load_dir(m->dir, &m->mc, NULL, NULL, &e) == 0, "%s", e.msg);
	ck_assert_msg(model_weights_open(m->dir, &m->mc, &m->w, &e) == 0, "%s", e.msg);
}

static void model_drop(model *m)
{
	model_weights_deinit(&m->w);
	tu_rmdir(m->dir);
	free(m->dir);
	m->dir = NULL;
}

static void setup(void)
{
	model_make(&tiny, "tc-tiny", "tiny", NULL, 7);
	char *cdir = tu_mkdtemp("tc-cfg");
	char path[1024];
	snprintf(path, sizeof(path), "%s/config.json", cdir);
	tu_write(path, dense_config, strlen(dense_config));
	model_make(&dense, "tc-dense", NULL, path, 11);
	tu_rmdir(cdir);
	free(cdir);
}

static void teardown(void)
{
	model_drop(&tiny);
	model_drop(&dense);
}

/* ---- the naive reference ------------------------------------------------------------------ */

static double wt(const st_tensor *t, size_t i)
{
	switch (t->dtype) {
	case ST_F32: return ((const float *)t->data)[i];
	case ST_BF16: return bf16_to_f32(((const uint16_t *)t->data)[i]);
	case ST_F16: return f16_to_f32(((const uint16_t *)t->data)[i]);
	}
	return NAN;
}

/* y (rows) = W (rows, cols) · x (cols) */
static void ref_linear(const st_tensor *W, const double *x, int rows, int cols, double *y)
{
	for (int r = 0; r < rows; r++) {
		double s = 0;
		for (int c = 0; c < cols; c++)
			s += wt(W, (size_t)r * cols + c) * x[c];
		y[r] = s;
	}
}

static void ref_rmsnorm(double *x, const st_tensor *w, int n, double eps)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	double r = 1.0 / sqrt(ss / n + eps);
	for (int i = 0; i < n; i++)
		x[i] = x[i] * r * wt(w, (size_t)i);
}

/* transformers' rotary: freqs per axis, then the interleave overwrites H and W slots
 * (apply_interleaved_mrope); θ is one fp32 multiply of the position and the fp32 inv_freq. */
static void ref_rope(double *v, int hd, const model_config *mc, const int32_t p3[3])
{
	int half = hd / 2;
	for (int j = 0; j < half; j++) {
		float inv = 1.0f / powf((float)mc->text.rope_theta, (float)(2 * j) / (float)hd);
		int axis = 0;
		if (mc->text.mrope)
			for (int dim = 1; dim <= 2; dim++)
				for (int k = dim; k < mc->text.mrope_section[dim] * 3; k += 3)
					if (k == j)
						axis = dim;
		double th = (double)((float)p3[axis] * inv);
		double a = v[j], b = v[j + half];
		v[j] = a * cos(th) - b * sin(th);
		v[j + half] = b * cos(th) + a * sin(th);
	}
}

/* Whole-sequence forward: ids (n), vis (n) NULL or rows (1+n_ds, D), pos (3, n) → logits (n, V). */
static void ref_forward(const model *m, int n, const int32_t *ids, const float *const *vis,
			const int32_t *pos, double *logits)
{
	const text_config *tc = &m->mc.text;
	const model_weights *w = &m->w;
	const int D = tc->hidden_size, F = tc->intermediate_size, Hq = tc->num_attention_heads;
	const int KV = tc->num_key_value_heads, hd = tc->head_dim, V = tc->vocab_size;
	const int n_ds = m->mc.has_vision ? m->mc.vision.n_deepstack : 0;
	const double eps = tc->rms_norm_eps;
	double *x = calloc((size_t)n * D, sizeof(double));
	double *h = calloc(D, sizeof(double));
	double *q = calloc((size_t)n * Hq * hd, sizeof(double));
	double *k = calloc((size_t)n * KV * hd, sizeof(double));
	double *v = calloc((size_t)n * KV * hd, sizeof(double));
	double *o = calloc((size_t)Hq * hd, sizeof(double));
	double *y = calloc(D, sizeof(double));
	double *g = calloc(F, sizeof(double)), *u = calloc(F, sizeof(double));
	double *sc = calloc(n, sizeof(double));
	for (int i = 0; i < n; i++)
		for (int c = 0; c < D; c++)
			x[(size_t)i * D + c] = vis && vis[i] ? vis[i][c] :
					       wt(w->embed_tokens, (size_t)ids[i] * D + c);
	for (int l = 0; l < tc->num_hidden_layers; l++) {
		const text_layer_weights *L = &w->layers[l];
		for (int i = 0; i < n; i++) {
			memcpy(h, x + (size_t)i * D, D * sizeof(double));
			ref_rmsnorm(h, L->input_layernorm, D, eps);
			ref_linear(L->q_proj, h, Hq * hd, D, q + (size_t)i * Hq * hd);
			ref_linear(L->k_proj, h, KV * hd, D, k + (size_t)i * KV * hd);
			ref_linear(L->v_proj, h, KV * hd, D, v + (size_t)i * KV * hd);
			int32_t p3[3] = { pos[i], pos[n + i], pos[2 * n + i] };
			for (int hh = 0; hh < Hq; hh++) {
				double *qh = q + ((size_t)i * Hq + hh) * hd;
				ref_rmsnorm(qh, L->q_norm, hd, eps);
				ref_rope(qh, hd, &m->mc, p3);
			}
			for (int hh = 0; hh < KV; hh++) {
				double *kh = k + ((size_t)i * KV + hh) * hd;
				ref_rmsnorm(kh, L->k_norm, hd, eps);
				ref_rope(kh, hd, &m->mc, p3);
			}
		}
		for (int i = 0; i < n; i++) {
			for (int hh = 0; hh < Hq; hh++) {
				int kv = hh / (Hq / KV);
				const double *qh = q + ((size_t)i * Hq + hh) * hd;
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j <= i; j++) {
					const double *kh = k + ((size_t)j * KV + kv) * hd;
					double d = 0;
					for (int c = 0; c < hd; c++)
						d += qh[c] * kh[c];
					sc[j] = d / sqrt((double)hd);
					if (sc[j] > mx)
						mx = sc[j];
				}
				for (int j = 0; j <= i; j++)
					sum += (sc[j] = exp(sc[j] - mx));
				for (int c = 0; c < hd; c++) {
					double a = 0;
					for (int j = 0; j <= i; j++)
						a += sc[j] * v[((size_t)j * KV + kv) * hd + c];
					o[(size_t)hh * hd + c] = a / sum;
				}
			}
			ref_linear(L->o_proj, o, D, Hq * hd, y);
			for (int c = 0; c < D; c++)
				x[(size_t)i * D + c] += y[c];
		}
		for (int i = 0; i < n; i++) {
			memcpy(h, x + (size_t)i * D, D * sizeof(double));
			ref_rmsnorm(h, L->post_attention_layernorm, D, eps);
			ref_linear(L->gate_proj, h, F, D, g);
			ref_linear(L->up_proj, h, F, D, u);
			for (int c = 0; c < F; c++)
				g[c] = g[c] / (1 + exp(-g[c])) * u[c];
			ref_linear(L->down_proj, g, D, F, y);
			for (int c = 0; c < D; c++)
				x[(size_t)i * D + c] += y[c];
			if (l < n_ds && vis && vis[i])
				for (int c = 0; c < D; c++)
					x[(size_t)i * D + c] += vis[i][(size_t)(1 + l) * D + c];
		}
	}
	for (int i = 0; i < n; i++) {
		memcpy(h, x + (size_t)i * D, D * sizeof(double));
		ref_rmsnorm(h, w->norm, D, eps);
		ref_linear(w->lm_head, h, V, D, logits + (size_t)i * V);
	}
	free(x); free(h); free(q); free(k); free(v); free(o); free(y); free(g); free(u); free(sc);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static double rel_l2(const float *a, const double *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		if (isnan(a[i]))
			return INFINITY;
		num += (a[i] - ref[i]) * (a[i] - ref[i]);
		den += ref[i] * ref[i];
	}
	return sqrt(num / den);
}

static double rel_l2f(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		if (isnan(a[i]) || isnan(b[i]))
			return INFINITY;
		num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
		den += (double)b[i] * b[i];
	}
	return sqrt(num / den);
}

static float *nan_floats(size_t n)
{
	float *p = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		p[i] = NAN;
	return p;
}

/* A test prompt: ids, positions, optional vision rows (owned). */
typedef struct prompt {
	int n;
	int32_t *ids;
	int32_t *pos;           /* (3, n) */
	const float **vis;      /* (n) or NULL */
	float *rows;            /* backing of vis */
	int64_t delta;
} prompt;

/* n_text1 text tokens, then (if grid) <vs> image <ve>, then n_text2 text tokens. */
static prompt make_prompt(const model *m, uint64_t seed, int n_text1, const int32_t *grid,
			  int n_text2)
{
	const int D = m->mc.text.hidden_size, n_ds = m->mc.has_vision ? m->mc.vision.n_deepstack : 0;
	int n_img = grid ? grid[0] * (grid[1] / 2) * (grid[2] / 2) : 0;
	prompt p = {0};
	p.n = n_text1 + (grid ? n_img + 2 : 0) + n_text2;
	p.ids = malloc((size_t)p.n * sizeof(int32_t));
	p.pos = malloc(3 * (size_t)p.n * sizeof(int32_t));
	uint64_t key = rng_key(seed, 1);
	int k = 0;
	for (int i = 0; i < n_text1; i++, k++)
		p.ids[k] = (int32_t)(rng_u64(key, (uint64_t)k) % 151000);
	if (grid) {
		p.ids[k++] = m->mc.vision_start_token_id;
		for (int i = 0; i < n_img; i++)
			p.ids[k++] = m->mc.image_token_id;
		p.ids[k++] = m->mc.vision_end_token_id;
	}
	for (int i = 0; i < n_text2; i++, k++)
		p.ids[k] = (int32_t)(rng_u64(key, (uint64_t)k) % 151000);
	qerr e = {0};
	const int32_t (*g)[3] = (const int32_t (*)[3])grid;
	ck_assert_msg(mrope_positions(&m->mc, p.ids, (size_t)p.n, g, grid ? 1 : 0, p.pos, &p.delta,
				      &e) == 0, "%s", e.msg);
	if (grid) {
		size_t rl = (size_t)(1 + n_ds) * D;
		p.rows = malloc((size_t)n_img * rl * sizeof(float));
		uint64_t vk = rng_key(seed, 2);
		for (size_t i = 0; i < (size_t)n_img * rl; i++)
			p.rows[i] = 0.5f * rng_sym_unit((uint32_t)rng_u64(vk, i));
		p.vis = calloc((size_t)p.n, sizeof(*p.vis));
		int r = 0;
		for (int i = 0; i < p.n; i++)
			if (p.ids[i] == m->mc.image_token_id)
				p.vis[i] = p.rows + (size_t)r++ * rl;
	}
	return p;
}

static void prompt_free(prompt *p)
{
	free(p->ids);
	free(p->pos);
	free(p->vis);
	free(p->rows);
}

/* A text_cpu on n_threads OpenBLAS threads, batch-invariant mode as asked. */
static text_cpu *new_tc_mode(const model *m, int bs, int n_blocks, int n_threads, bool invariant)
{
	text_cpu *t;
	qerr e = {0};
	ck_assert_msg(text_cpu_new(&m->mc, &m->w, bs, n_blocks, n_threads, &t, &e) == 0, "%s",
		      e.msg);
	text_cpu_set_batch_invariant(t, invariant);
	return t;
}

static text_cpu *new_tc(const model *m, int bs, int n_blocks)
{
	return new_tc_mode(m, bs, n_blocks, 1, false);
}

/* One step with the whole prompt, contiguous blocks, logits of every row → (n, V); on
 * n_threads threads, batch-invariant mode as asked. */
static float *one_shot_mode(const model *m, const prompt *p, int n_threads, bool invariant)
{
	const int bs = 16, nb = (p->n + bs - 1) / bs;
	text_cpu *t = new_tc_mode(m, bs, nb, n_threads, invariant);
	int32_t *bt = malloc((size_t)nb * sizeof(int32_t));
	int32_t *rows = malloc((size_t)p->n * sizeof(int32_t));
	for (int i = 0; i < nb; i++)
		bt[i] = i;
	for (int i = 0; i < p->n; i++)
		rows[i] = i;
	backend_seq s = { .n_new = p->n, .ids = p->ids, .vis = (const float *const *)p->vis,
			  .pos = p->pos, .n_cached = 0, .block_table = bt, .n_logits = p->n,
			  .logit_rows = rows };
	float *lg = nan_floats((size_t)p->n * m->mc.text.vocab_size);
	qerr e = {0};
	ck_assert_msg(text_cpu_step(t, &s, 1, lg, &e) == 0, "%s", e.msg);
	text_cpu_free(t);
	free(bt);
	free(rows);
	return lg;
}

static float *one_shot(const model *m, const prompt *p)
{
	return one_shot_mode(m, p, 1, false);
}

static void assert_matches_ref(const model *m, const prompt *p, const char *what)
{
	const size_t V = (size_t)m->mc.text.vocab_size;
	float *got = one_shot(m, p);
	double *ref = calloc((size_t)p->n * V, sizeof(double));
	ref_forward(m, p->n, p->ids, (const float *const *)p->vis, p->pos, ref);
	double worst = 0;
	for (int i = 0; i < p->n; i++) {
		double r = rel_l2(got + i * V, ref + i * V, V);
		if (r > worst)
			worst = r;
	}
	double all = rel_l2(got, ref, (size_t)p->n * V);
	printf("%s: %d tokens, relative L2 vs double reference %.3g (worst row %.3g)\n", what, p->n,
	       all, worst);
	ck_assert_msg(worst <= 1e-5, "%s: worst row relative L2 %g", what, worst);
	free(got);
	free(ref);
}

/* ---- (a) against the naive reference ------------------------------------------------------ */

START_TEST(test_text_cpu_text_matches_reference)
{
	prompt p = make_prompt(&tiny, 1, 19, NULL, 0);
	ck_assert_int_eq(p.delta, 0);
	assert_matches_ref(&tiny, &p, "tiny text");
	prompt_free(&p);
}
END_TEST

START_TEST(test_text_cpu_vision_rows_match_reference)
{
	const int32_t grid[3] = { 1, 6, 8 };   /* 3 x 4 tokens after merging */
	prompt p = make_prompt(&tiny, 2, 4, grid, 6);
	ck_assert_int_eq(p.delta, 4 + 1 + 4 + 1 + 6 - p.n);   /* image spans max(3,4) = 4 */
	assert_matches_ref(&tiny, &p, "tiny vision rows");
	prompt_free(&p);
}
END_TEST

/* ---- (d) dense qwen3 ---------------------------------------------------------------------- */

START_TEST(test_text_cpu_dense_qwen3_matches_reference)
{
	ck_assert(!dense.mc.has_vision && !dense.mc.text.mrope);
	ck_assert(dense.w.lm_head != dense.w.embed_tokens);
	prompt p = make_prompt(&dense, 3, 21, NULL, 0);
	assert_matches_ref(&dense, &p, "dense qwen3");
	prompt_free(&p);
}
END_TEST

/* ---- (b) chunks, decode, scattered blocks, ragged batches ---------------------------------- */

/* Run prompts ps together in steps: sequence s takes chunk sizes sched[s][0], [1], … (the last
 * one repeating) until done; every new row asks for logits; compare each to want[s]. */
static void assert_chunked_matches(const model *m, int bs, const prompt *ps, int n_ps, const int *const *sched,
			float *const *want, uint64_t seed, const char *what)
{
	const size_t V = (size_t)m->mc.text.vocab_size;
	int total_blocks = 0;
	for (int s = 0; s < n_ps; s++)
		total_blocks += (ps[s].n + bs - 1) / bs;
	int n_blocks = total_blocks + 5;   /* a few never used */
	/* shuffled block ids, dealt out to the sequences */
	int32_t *perm = malloc((size_t)n_blocks * sizeof(int32_t));
	for (int i = 0; i < n_blocks; i++)
		perm[i] = i;
	uint64_t key = rng_key(seed, 99);
	for (int i = n_blocks - 1; i > 0; i--) {
		int j = (int)(rng_u64(key, (uint64_t)i) % (uint64_t)(i + 1));
		int32_t tmp = perm[i];
		perm[i] = perm[j];
		perm[j] = tmp;
	}
	int32_t *bts[8];
	int used = 0;
	for (int s = 0; s < n_ps; s++) {
		bts[s] = perm + used;
		used += (ps[s].n + bs - 1) / bs;
	}
	text_cpu *t = new_tc(m, bs, n_blocks);
	int done[8] = {0}, step_i[8] = {0};
	int32_t *rows = malloc(4096 * sizeof(int32_t));
	for (int i = 0; i < 4096; i++)
		rows[i] = i;
	double worst = 0;
	int steps = 0;
	for (;;) {
		backend_seq seqs[8];
		int idx[8], ns = 0;
		int32_t *pos[8];
		size_t nl = 0;
		for (int s = 0; s < n_ps; s++) {
			if (done[s] == ps[s].n)
				continue;
			int c = sched[s][step_i[s]];
			if (sched[s][step_i[s] + 1])
				step_i[s]++;
			if (c > ps[s].n - done[s])
				c = ps[s].n - done[s];
			pos[ns] = malloc(3 * (size_t)c * sizeof(int32_t));
			for (int a = 0; a < 3; a++)
				memcpy(pos[ns] + a * c, ps[s].pos + a * ps[s].n + done[s],
				       (size_t)c * sizeof(int32_t));
			seqs[ns] = (backend_seq){ .n_new = c, .ids = ps[s].ids + done[s],
				.vis = ps[s].vis ? (const float *const *)ps[s].vis + done[s] : NULL,
				.pos = pos[ns], .n_cached = done[s], .block_table = bts[s],
				.n_logits = c, .logit_rows = rows };
			idx[ns++] = s;
			nl += (size_t)c;
		}
		if (ns == 0)
			break;
		float *lg = nan_floats(nl * V);
		qerr e = {0};
		ck_assert_msg(text_cpu_step(t, seqs, ns, lg, &e) == 0, "%s", e.msg);
		size_t off = 0;
		for (int k = 0; k < ns; k++) {
			int s = idx[k];
			for (int i = 0; i < seqs[k].n_new; i++, off++) {
				double r = rel_l2f(lg + off * V, want[s] + (size_t)(done[s] + i) * V, V);
				if (r > worst)
					worst = r;
				ck_assert_msg(r <= 1e-5, "%s: sequence %d position %d: relative L2 %g",
					      what, s, done[s] + i, r);
			}
			done[s] += seqs[k].n_new;
			free(pos[k]);
		}
		free(lg);
		steps++;
	}
	printf("%s: %d steps, worst relative L2 vs one-shot %.3g\n", what, steps, worst);
	text_cpu_free(t);
	free(rows);
	free(perm);
}

START_TEST(test_text_cpu_chunked_prefill_matches_one_shot)
{
	const int32_t grid[3] = { 1, 4, 10 };
	prompt p = make_prompt(&tiny, 5, 9, grid, 40);
	float *want = one_shot(&tiny, &p);
	static const int s1[] = { 1, 3, 7, 16, 33, 0 };
	static const int s2[] = { 7, 1, 16, 3, 33, 5, 0 };
	static const int s3[] = { 64, 0 };
	const int *sc[] = { s1 };
	float *wants[] = { want };
	assert_chunked_matches(&tiny, 4, &p, 1, sc, wants, 1, "chunks 1,3,7,16,33 bs 4");
	sc[0] = s2;
	assert_chunked_matches(&tiny, 16, &p, 1, sc, wants, 2, "chunks 7,1,16,3,33,5 bs 16");
	sc[0] = s3;
	assert_chunked_matches(&tiny, 5, &p, 1, sc, wants, 3, "one chunk bs 5");
	free(want);
	prompt_free(&p);
}
END_TEST

START_TEST(test_text_cpu_prefill_then_decode_matches_one_shot)
{
	prompt p = make_prompt(&tiny, 6, 37, NULL, 0);
	float *want = one_shot(&tiny, &p);
	static const int s[] = { 20, 1, 0 };
	const int *sc[] = { s };
	float *wants[] = { want };
	assert_chunked_matches(&tiny, 4, &p, 1, sc, wants, 4, "prefill 20 then decode");
	free(want);
	prompt_free(&p);

	prompt q = make_prompt(&dense, 7, 30, NULL, 0);
	want = one_shot(&dense, &q);
	wants[0] = want;
	assert_chunked_matches(&dense, 8, &q, 1, sc, wants, 5, "dense: prefill 20 then decode");
	free(want);
	prompt_free(&q);
}
END_TEST

START_TEST(test_text_cpu_ragged_batch_matches_one_shot)
{
	const int32_t grid[3] = { 1, 8, 6 };
	prompt ps[4] = { make_prompt(&tiny, 8, 40, NULL, 0), make_prompt(&tiny, 9, 3, grid, 11),
			 make_prompt(&tiny, 10, 1, NULL, 0), make_prompt(&tiny, 11, 25, NULL, 30) };
	float *wants[4];
	for (int i = 0; i < 4; i++)
		wants[i] = one_shot(&tiny, &ps[i]);
	static const int a[] = { 1, 3, 7, 16, 33, 0 };
	static const int b[] = { 16, 1, 0 };
	static const int c[] = { 1, 0 };
	static const int d[] = { 33, 7, 3, 1, 0 };
	const int *sc[] = { a, b, c, d };
	assert_chunked_matches(&tiny, 4, ps, 4, sc, wants, 6, "ragged batch of 4, bs 4");
	assert_chunked_matches(&tiny, 3, ps, 4, sc, wants, 7, "ragged batch of 4, bs 3");
	for (int i = 0; i < 4; i++) {
		free(wants[i]);
		prompt_free(&ps[i]);
	}
}
END_TEST

/* ---- (c) positions ------------------------------------------------------------------------ */

START_TEST(test_text_cpu_mrope_spec_example)
{
	/* §7.3: <|im_start|>user\n<|vision_start|> + 64 image tokens (256x256) + <|vision_end|>
	 * Describe.<|im_end|>\n<|im_start|>assistant\n = 76 tokens */
	int32_t ids[76];
	int k = 0;
	ids[k++] = 151644; ids[k++] = 872; ids[k++] = 198; ids[k++] = 151652;
	for (int i = 0; i < 64; i++)
		ids[k++] = 151655;
	static const int32_t tail[8] = { 151653, 74785, 13, 151645, 198, 151644, 77091, 198 };
	for (int i = 0; i < 8; i++)
		ids[k++] = tail[i];
	ck_assert_int_eq(k, 76);
	const int32_t grid[1][3] = { { 1, 16, 16 } };
	int32_t pos[3 * 76];
	int64_t delta = 1;
	qerr e = {0};
	ck_assert_msg(mrope_positions(&tiny.mc, ids, 76, grid, 1, pos, &delta, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(delta, -56);
	for (int i = 0; i < 4; i++)
		for (int a = 0; a < 3; a++)
			ck_assert_int_eq(pos[a * 76 + i], i);
	for (int r = 0; r < 8; r++)
		for (int c = 0; c < 8; c++) {
			int i = 4 + r * 8 + c;
			ck_assert_int_eq(pos[i], 4);
			ck_assert_int_eq(pos[76 + i], 4 + r);
			ck_assert_int_eq(pos[152 + i], 4 + c);
		}
	for (int i = 68; i < 76; i++)
		for (int a = 0; a < 3; a++)
			ck_assert_int_eq(pos[a * 76 + i], 12 + (i - 68));
	int32_t dp[3 * 3];
	ck_assert_int_eq(mrope_decode_positions(76, 3, delta, dp, &e), 0);
	for (int a = 0; a < 3; a++)
		for (int i = 0; i < 3; i++)
			ck_assert_int_eq(dp[a * 3 + i], 20 + i);

	/* text only: 0..n-1, delta 0 */
	int32_t tp[3 * 5];
	ck_assert_int_eq(mrope_positions(&tiny.mc, tail, 5, NULL, 0, tp, &delta, &e), 0);
	ck_assert_int_eq(delta, 0);
	for (int a = 0; a < 3; a++)
		for (int i = 0; i < 5; i++)
			ck_assert_int_eq(tp[a * 5 + i], i);
	/* dense qwen3: plain positions */
	ck_assert_int_eq(mrope_positions(&dense.mc, ids, 76, NULL, 0, pos, &delta, &e), 0);
	ck_assert_int_eq(delta, 0);
	ck_assert_int_eq(pos[152 + 75], 75);
}
END_TEST

START_TEST(test_text_cpu_mrope_refuses_mismatches)
{
	int32_t ids[12] = { 1, 151652, 151655, 151655, 151655, 151655, 151653, 2, 3, 4, 5, 6 };
	int32_t pos[36];
	int64_t delta = 123;
	qerr e = {0};
	const int32_t g1[1][3] = { { 1, 4, 4 } };     /* 4 tokens: fits */
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 12, g1, 1, pos, &delta, &e), 0);
	ck_assert_int_eq(delta, 1 + 1 + 2 + 6 - 12);
	const int32_t g2[1][3] = { { 1, 4, 6 } };     /* 6 tokens: too few in the prompt */
	delta = 123;
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 12, g2, 1, pos, &delta, &e), -QERR_INVALID);
	ck_assert_int_eq(delta, 123);
	printf("mrope refusal: %s\n", e.msg);
	const int32_t g3[1][3] = { { 1, 2, 2 } };     /* 1 token: 3 left over */
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 12, g3, 1, pos, &delta, &e), -QERR_INVALID);
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 12, NULL, 0, pos, &delta, &e), -QERR_INVALID);
	const int32_t g4[2][3] = { { 1, 4, 4 }, { 1, 2, 2 } };
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 12, g4, 2, pos, &delta, &e), -QERR_INVALID);
	const int32_t g5[1][3] = { { 1, 3, 4 } };     /* odd h */
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 12, g5, 1, pos, &delta, &e), -QERR_INVALID);
	const int32_t g6[1][3] = { { 0, 4, 4 } };
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 12, g6, 1, pos, &delta, &e), -QERR_INVALID);
	ids[3] = 151656;                              /* a video token */
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids + 3, 9, NULL, 0, pos, &delta, &e),
			 -QERR_UNSUPPORTED);
	ck_assert_int_eq(mrope_positions(&tiny.mc, ids, 0, NULL, 0, pos, &delta, &e), -QERR_INVALID);
	ck_assert_int_eq(mrope_decode_positions(3, 1, -10, pos, &e), -QERR_INVALID);
}
END_TEST

/* ---- (e) bad inputs ----------------------------------------------------------------------- */

START_TEST(test_text_cpu_refuses_bad_input)
{
	text_cpu *t = NULL;
	qerr e = {0};
	ck_assert_int_eq(text_cpu_new(&tiny.mc, &tiny.w, 0, 4, 1, &t, &e), -QERR_INVALID);
	ck_assert_int_eq(text_cpu_new(&tiny.mc, &tiny.w, 4, 0, 1, &t, &e), -QERR_INVALID);
	ck_assert_int_eq(text_cpu_new(&tiny.mc, &tiny.w, 1 << 30, 1 << 30, 1, &t, &e), -QERR_LIMIT);
	ck_assert_ptr_null(t);
	text_cpu_free(NULL);

	prompt p = make_prompt(&tiny, 12, 6, NULL, 0);
	float *want = one_shot(&tiny, &p);
	t = new_tc(&tiny, 4, 4);
	const size_t V = (size_t)tiny.mc.text.vocab_size;
	float *lg = nan_floats(V);
	int32_t bt[4] = { 2, 0, 3, 1 }, row = 0, badrow = 6, bad_bt[2] = { 1, 4 };
	int32_t ids[6], pos[18];
	const float *vis[6] = {0};
	float visrow[4 * 128] = {0};
	struct { const char *what; int field; int32_t v; } cases[] = {
		{ "id = vocab", 0, (int32_t)V }, { "id < 0", 0, -1 }, { "position < 0", 1, -1 },
		{ "n_new 0", 2, 0 }, { "logit row past n_new", 3, 0 }, { "block id past pool", 4, 0 },
		{ "n_cached < 0", 5, -1 }, { "past the pool", 5, 11 }, { "no block table", 6, 0 },
		{ "n_logits < 0", 7, -1 }, { "logits NULL", 8, 0 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		memcpy(ids, p.ids, sizeof(ids));
		memcpy(pos, p.pos, sizeof(pos));
		backend_seq s = { .n_new = 6, .ids = ids, .pos = pos, .block_table = bt,
				  .n_logits = 1, .logit_rows = &row };
		float *out = lg;
		switch (cases[c].field) {
		case 0: ids[3] = cases[c].v; break;
		case 1: pos[6 + 2] = cases[c].v; break;
		case 2: s.n_new = 0; break;
		case 3: s.logit_rows = &badrow; break;
		case 4: s.block_table = bad_bt; break;
		case 5: s.n_cached = cases[c].v; break;
		case 6: s.block_table = NULL; break;
		case 7: s.n_logits = -1; break;
		case 8: out = NULL; break;
		}
		e = (qerr){0};
		ck_assert_msg(text_cpu_step(t, &s, 1, out, &e) == -QERR_INVALID, "%s accepted",
			      cases[c].what);
		ck_assert(strlen(e.msg) > 0);
		printf("refused %s: %s\n", cases[c].what, e.msg);
	}
	ck_assert_int_eq(text_cpu_step(t, NULL, 0, lg, &e), -QERR_INVALID);
	/* a good second sequence does not make a bad first one pass, and nothing was written:
	 * the sequence still computes its one-shot logits afterwards */
	backend_seq s = { .n_new = 6, .ids = p.ids, .pos = p.pos, .block_table = bt, .n_logits = 1,
			  .logit_rows = &row };
	row = 5;
	ck_assert_int_eq(text_cpu_step(t, &s, 1, lg, &e), 0);
	ck_assert_msg(rel_l2f(lg, want + 5 * V, V) <= 1e-5, "logits changed after refusals");
	text_cpu_free(t);

	/* vision rows for a model without vision */
	text_cpu *d = new_tc(&dense, 4, 4);
	vis[2] = visrow;
	s = (backend_seq){ .n_new = 6, .ids = p.ids, .vis = vis, .pos = p.pos, .block_table = bt,
			   .n_logits = 1, .logit_rows = &row };
	ck_assert_int_eq(text_cpu_step(d, &s, 1, lg, &e), -QERR_INVALID);
	printf("refused vision rows on qwen3: %s\n", e.msg);
	text_cpu_free(d);
	free(lg);
	free(want);
	prompt_free(&p);
}
END_TEST

/* ---- golden: transformers logits for the text-only prompts -------------------------------- */

static const char *srcdir(void)
{
	const char *s = getenv("srcdir");
	return s ? s : ".";
}

static int32_t argmax(const float *x, size_t n)
{
	size_t b = 0;
	for (size_t i = 1; i < n; i++)
		if (x[i] > x[b])
			b = i;
	return (int32_t)b;
}

static double logsumexp(const float *x, size_t n)
{
	double mx = -INFINITY, s = 0;
	for (size_t i = 0; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	for (size_t i = 0; i < n; i++)
		s += exp(x[i] - mx);
	return mx + log(s);
}

static void golden_line(json_object *o, model *m, const char *cfg, const char *prm)
{
	json_object *jids = json_object_object_get(o, "prompt_ids");
	json_object *steps = json_object_object_get(o, "steps");
	json_object *greedy = json_object_object_get(o, "greedy_ids");
	int n = (int)json_object_array_length(jids), ns = (int)json_object_array_length(steps);
	const size_t V = (size_t)m->mc.text.vocab_size;
	int32_t *ids = malloc((size_t)(n + ns) * sizeof(int32_t));
	for (int i = 0; i < n; i++)
		ids[i] = json_object_get_int(json_object_array_get_idx(jids, (size_t)i));
	for (int i = 0; i < ns; i++)
		ids[n + i] = json_object_get_int(json_object_array_get_idx(greedy, (size_t)i));
	int32_t *pos = malloc(3 * (size_t)n * sizeof(int32_t));
	int64_t delta;
	qerr e = {0};
	ck_assert_msg(mrope_positions(&m->mc, ids, (size_t)n, NULL, 0, pos, &delta, &e) == 0, "%s",
		      e.msg);
	json_object *jd = json_object_object_get(o, "rope_deltas");
	if (jd)
		ck_assert_int_eq(delta, json_object_get_int64(json_object_array_get_idx(jd, 0)));
	const int bs = 16, nb = (n + ns + bs - 1) / bs + 1;
	text_cpu *t = new_tc(m, bs, nb);
	int32_t *bt = malloc((size_t)nb * sizeof(int32_t));
	for (int i = 0; i < nb; i++)
		bt[i] = nb - 1 - i;
	float *lg = nan_floats(V);
	int32_t last = n - 1, zero = 0;
	backend_seq s = { .n_new = n, .ids = ids, .pos = pos, .n_cached = 0, .block_table = bt,
			  .n_logits = 1, .logit_rows = &last };
	double worst_l2 = 0, worst_lse = 0;
	int checked = 0;
	for (int k = 0; k < ns; k++) {
		int32_t dp[3];
		if (k > 0) {
			ck_assert_int_eq(mrope_decode_positions(n + k - 1, 1, delta, dp, &e), 0);
			s = (backend_seq){ .n_new = 1, .ids = ids + n + k - 1, .pos = dp,
					   .n_cached = n + k - 1, .block_table = bt, .n_logits = 1,
					   .logit_rows = &zero };
		}
		ck_assert_msg(text_cpu_step(t, &s, 1, lg, &e) == 0, "%s", e.msg);
		json_object *st = json_object_array_get_idx(steps, (size_t)k);
		json_object *ti = json_object_object_get(st, "top_ids");
		json_object *tl = json_object_object_get(st, "top_logits");
		int nt = (int)json_object_array_length(ti);
		double num = 0, den = 0;
		for (int j = 0; j < nt; j++) {
			int id = json_object_get_int(json_object_array_get_idx(ti, (size_t)j));
			double g = json_object_get_double(json_object_array_get_idx(tl, (size_t)j));
			num += (lg[id] - g) * (lg[id] - g);
			den += g * g;
		}
		double r = sqrt(num / den);
		double lse = logsumexp(lg, V);
		double dl = fabs(lse - json_object_get_double(json_object_object_get(st, "logsumexp")));
		if (r > worst_l2)
			worst_l2 = r;
		if (dl > worst_lse)
			worst_lse = dl;
		ck_assert_msg(r <= 1e-4, "%s/%s step %d: top-logit relative L2 %g", cfg, prm, k, r);
		ck_assert_msg(dl <= 1e-3, "%s/%s step %d: logsumexp off by %g", cfg, prm, k, dl);
		double margin = json_object_get_double(json_object_array_get_idx(tl, 0)) -
				json_object_get_double(json_object_array_get_idx(tl, 1));
		if (margin > 1e-3) {
			ck_assert_msg(argmax(lg, V) == ids[n + k], "%s/%s step %d: greedy %d, golden %d",
				      cfg, prm, k, argmax(lg, V), ids[n + k]);
			checked++;
		}
	}
	printf("golden %s/%s: %d prompt tokens, %d steps: worst top-50 relative L2 %.3g, "
	       "logsumexp %.3g, %d greedy ids checked\n", cfg, prm, n, ns, worst_l2, worst_lse,
	       checked);
	text_cpu_free(t);
	free(bt);
	free(lg);
	free(pos);
	free(ids);
}

/* rope_deltas of an image line from its prompt_ids and grids (any qwen3_vl config: only the
 * token ids and the merge size matter, and every golden config merges 2x2). */
static void golden_positions(json_object *o, json_object *grid, const char *cfg, const char *prm)
{
	json_object *jids = json_object_object_get(o, "prompt_ids");
	size_t n = json_object_array_length(jids), ng = json_object_array_length(grid);
	int32_t *ids = malloc(n * sizeof(int32_t)), *pos = malloc(3 * n * sizeof(int32_t));
	int32_t (*g)[3] = malloc((ng + 1) * sizeof(*g));
	for (size_t i = 0; i < n; i++)
		ids[i] = json_object_get_int(json_object_array_get_idx(jids, i));
	for (size_t i = 0; i < ng; i++)
		for (size_t a = 0; a < 3; a++)
			g[i][a] = json_object_get_int(json_object_array_get_idx(
				json_object_array_get_idx(grid, i), a));
	int64_t delta;
	qerr e = {0};
	ck_assert_msg(mrope_positions(&tiny.mc, ids, n, (const int32_t (*)[3])g, ng, pos, &delta,
				      &e) == 0, "%s/%s: %s", cfg, prm, e.msg);
	int64_t want = json_object_get_int64(json_object_array_get_idx(
		json_object_object_get(o, "rope_deltas"), 0));
	ck_assert_msg(delta == want, "%s/%s: rope_delta %lld, golden %lld", cfg, prm,
		      (long long)delta, (long long)want);
	printf("golden %s/%s: %zu tokens, %zu images, rope_delta %lld as in the golden\n", cfg, prm,
	       n, ng, (long long)delta);
	free(ids);
	free(pos);
	free(g);
}

START_TEST(test_text_cpu_golden_text_prompts)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/model-golden/golden.jsonl", srcdir());
	char *text = tu_read(path, NULL);
	ck_assert_msg(text != NULL, "cannot read %s", path);
	model cur = {0};
	char cur_cfg[128] = "";
	int lines = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		json_object *o = json_tokener_parse(line);
		ck_assert_ptr_nonnull(o);
		const char *cfg = json_object_get_string(json_object_object_get(o, "config"));
		const char *prm = json_object_get_string(json_object_object_get(o, "prompt"));
		json_object *grid;
		if (json_object_object_get_ex(o, "image_grid_thw", &grid) &&
		    !json_object_is_type(grid, json_type_null)) {
			/* image prompts need the vision tower; their positions can be checked */
			golden_positions(o, grid, cfg, prm);
			json_object_put(o);
			continue;
		}
		if (strcmp(cfg, cur_cfg)) {
			if (cur.dir)
				model_drop(&cur);
			char cpath[1024];
			snprintf(cpath, sizeof(cpath), "%s/tests/data/model-golden/configs/%s.json",
				 srcdir(), cfg);
			model_make(&cur, "tc-golden", NULL, cpath, 1);
			snprintf(cur_cfg, sizeof(cur_cfg), "%s", cfg);
		}
		golden_line(o, &cur, cfg, prm);
		json_object_put(o);
		lines++;
	}
	if (cur.dir)
		model_drop(&cur);
	free(text);
	ck_assert_int_gt(lines, 0);
}
END_TEST

/* ---- (f) batch-invariant mode ------------------------------------------------------------- */

#define BI_THREADS 4   /* OpenBLAS threads for these tests: gemv splits its work over them */

/* a and b (n floats) are the same bits; else print the first mismatches and fail. */
static void assert_same_bits(const float *a, const float *b, size_t n, size_t V, const char *what)
{
	if (memcmp(a, b, n * sizeof(float)) == 0)
		return;
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		if (memcmp(&a[i], &b[i], sizeof(float)) && bad++ < 5)
			printf("%s: row %zu column %zu: %.9g vs %.9g\n", what, i / V, i % V, a[i], b[i]);
	ck_assert_msg(0, "%s: %zu of %zu logits differ in their bits", what, bad, n);
}

/* How many of n floats differ in their bits (for the mode-off comparisons, which may). */
static size_t count_diff_bits(const float *a, const float *b, size_t n)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
	return bad;
}

/* A sequence fed to a text_cpu by hand: prompt p (its tail may stand in for decoded tokens),
 * its block table, and how many of its positions are in the pool. */
typedef struct feed {
	const prompt *p;
	int32_t bt[64];
	int done;
} feed;

/* p's blocks are first_block .. first_block + ⌈n/bs⌉ - 1, handed out backwards. */
static feed feed_at(const prompt *p, int first_block, int bs)
{
	feed f = { .p = p };
	const int nb = (p->n + bs - 1) / bs;
	ck_assert_int_le(nb, 64);
	for (int i = 0; i < nb; i++)
		f.bt[i] = first_block + nb - 1 - i;
	return f;
}

/* One step in which fs[k] gives its next n[k] positions, every new row asking for logits;
 * each done advances. Returns the logits (Σ n[k], V) in step order, malloc'd. */
static float *feed_step(text_cpu *t, const model *m, feed *const *fs, const int *n, int ns)
{
	const size_t V = (size_t)m->mc.text.vocab_size;
	backend_seq seqs[8];
	int32_t *pos[8], rows[256];
	size_t nl = 0;
	ck_assert_int_le(ns, 8);
	for (int i = 0; i < 256; i++)
		rows[i] = i;
	for (int k = 0; k < ns; k++) {
		const prompt *p = fs[k]->p;
		const int c = n[k], d = fs[k]->done;
		ck_assert(c >= 1 && c <= 256 && d + c <= p->n);
		pos[k] = malloc(3 * (size_t)c * sizeof(int32_t));
		for (int a = 0; a < 3; a++)
			memcpy(pos[k] + a * c, p->pos + a * p->n + d, (size_t)c * sizeof(int32_t));
		seqs[k] = (backend_seq){ .n_new = c, .ids = p->ids + d,
			.vis = p->vis ? (const float *const *)p->vis + d : NULL, .pos = pos[k],
			.n_cached = d, .block_table = fs[k]->bt, .n_logits = c, .logit_rows = rows };
		nl += (size_t)c;
	}
	float *lg = nan_floats(nl * V);
	qerr e = {0};
	ck_assert_msg(text_cpu_step(t, seqs, ns, lg, &e) == 0, "%s", e.msg);
	for (int k = 0; k < ns; k++) {
		fs[k]->done += n[k];
		free(pos[k]);
	}
	return lg;
}

/* Feed p in chunks sched[0], sched[1], … (the last one repeating) with block size bs; when
 * other is given, it shares every step, 3 positions at a time, until it is done. Returns the
 * logits of every position of p (p->n, V). */
static float *run_schedule(const model *m, const prompt *p, int bs, const int *sched,
			   const prompt *other, bool invariant)
{
	const size_t V = (size_t)m->mc.text.vocab_size;
	const int nb_p = (p->n + bs - 1) / bs, nb_o = other ? (other->n + bs - 1) / bs : 0;
	text_cpu *t = new_tc_mode(m, bs, nb_p + nb_o + 2, BI_THREADS, invariant);
	feed fp = feed_at(p, 1, bs), fo = {0};
	if (other)
		fo = feed_at(other, 1 + nb_p, bs);
	float *out = nan_floats((size_t)p->n * V);
	for (int k = 0; fp.done < p->n;) {
		int c = sched[k];
		if (sched[k + 1])
			k++;
		if (c > p->n - fp.done)
			c = p->n - fp.done;
		const int at = fp.done;
		feed *fs[2] = { &fo, &fp };
		int n[2] = { other ? other->n - fo.done : 0, c };
		if (n[0] > 3)
			n[0] = 3;
		const int first = n[0] > 0 ? 0 : 1;   /* the other sequence goes first while it lasts */
		float *lg = feed_step(t, m, fs + first, n + first, 2 - first);
		memcpy(out + (size_t)at * V, lg + (size_t)n[0] * V, (size_t)c * V * sizeof(float));
		free(lg);
	}
	text_cpu_free(t);
	return out;
}

/* Prompt a alone in one step, and again in a step shared with the last 15 positions of a
 * 40-token prompt (its first 25 cached a step earlier) before it and a 7-token one after it;
 * block sizes 16 and 4. Returns a's logits (a->n, V) of each run. */
static void alone_and_batched(const prompt *a, bool invariant, float **alone, float **batched)
{
	const size_t V = (size_t)tiny.mc.text.vocab_size;
	prompt b = make_prompt(&tiny, 22, 40, NULL, 0), c = make_prompt(&tiny, 23, 7, NULL, 0);
	text_cpu *t1 = new_tc_mode(&tiny, 16, 8, BI_THREADS, invariant);
	feed fa = feed_at(a, 0, 16);
	*alone = feed_step(t1, &tiny, (feed *[]){ &fa }, (int[]){ a->n }, 1);
	text_cpu *t2 = new_tc_mode(&tiny, 4, 40, BI_THREADS, invariant);
	feed ga = feed_at(a, 0, 4), gb = feed_at(&b, 12, 4), gc = feed_at(&c, 30, 4);
	free(feed_step(t2, &tiny, (feed *[]){ &gb }, (int[]){ 25 }, 1));
	float *lg = feed_step(t2, &tiny, (feed *[]){ &gb, &ga, &gc }, (int[]){ 15, a->n, 7 }, 3);
	*batched = malloc((size_t)a->n * V * sizeof(float));
	memcpy(*batched, lg + 15 * V, (size_t)a->n * V * sizeof(float));
	free(lg);
	text_cpu_free(t1);
	text_cpu_free(t2);
	prompt_free(&b);
	prompt_free(&c);
}

START_TEST(test_text_cpu_batch_invariant_alone_equals_batched)
{
	const int32_t grid[3] = { 1, 4, 6 };
	prompt a = make_prompt(&tiny, 21, 3, grid, 11);   /* text, image rows, text: 22 positions */
	const size_t n = (size_t)a.n * (size_t)tiny.mc.text.vocab_size;
	float *alone, *batched;
	alone_and_batched(&a, true, &alone, &batched);
	assert_same_bits(alone, batched, n, (size_t)tiny.mc.text.vocab_size,
			 "invariant: alone vs batched");
	free(alone);
	free(batched);
	/* the default mode only agrees within rounding (printed to show what the mode buys) */
	alone_and_batched(&a, false, &alone, &batched);
	double r = rel_l2f(batched, alone, n);
	printf("default mode, alone vs batched: %zu of %zu logits differ in their bits, relative "
	       "L2 %.3g\n", count_diff_bits(alone, batched, n), n, r);
	ck_assert_msg(r <= 1e-5, "default mode: alone vs batched relative L2 %g", r);
	free(alone);
	free(batched);
	prompt_free(&a);
}
END_TEST

START_TEST(test_text_cpu_batch_invariant_chunked_prefill)
{
	const size_t V = (size_t)tiny.mc.text.vocab_size;
	const int32_t grid[3] = { 1, 4, 10 };
	/* 5 text + <vs> 10 image <ve> + 32 text = 49 positions: a 43-token prompt, then 6 tokens
	 * fed one step each as decode would */
	prompt p = make_prompt(&tiny, 24, 5, grid, 32), other = make_prompt(&tiny, 25, 11, NULL, 0);
	const int n_pre = p.n - 6;
	ck_assert_int_eq(n_pre, 43);
	const int one[] = { n_pre, 1, 0 };
	const int chunks[] = { 5, 1, 7, 3, 16, 11, 1, 0 };   /* splits the image too */
	const int small[] = { 2, 1, 0 };
	float *want = run_schedule(&tiny, &p, 16, one, NULL, true);
	float *got = run_schedule(&tiny, &p, 4, chunks, NULL, true);
	/* every prefill position (the last one included) and the decodes after it */
	assert_same_bits(want + (size_t)(n_pre - 1) * V, got + (size_t)(n_pre - 1) * V, V, V,
			 "invariant: last prompt position, one chunk vs 5,1,7,3,16,11");
	assert_same_bits(want, got, (size_t)p.n * V, V, "invariant: one chunk vs 5,1,7,3,16,11");
	free(got);
	got = run_schedule(&tiny, &p, 3, small, &other, true);
	assert_same_bits(want, got, (size_t)p.n * V, V,
			 "invariant: one chunk vs chunks of 2,1 beside another prompt");
	ck_assert_int_eq(argmax(want + (size_t)(p.n - 1) * V, V),
			 argmax(got + (size_t)(p.n - 1) * V, V));
	free(got);
	free(want);
	want = run_schedule(&tiny, &p, 16, one, NULL, false);
	got = run_schedule(&tiny, &p, 4, chunks, NULL, false);
	const size_t n = (size_t)p.n * V;
	double r = rel_l2f(got, want, n);
	printf("default mode, one chunk vs 5,1,7,3,16,11: %zu of %zu logits differ in their bits, "
	       "relative L2 %.3g\n", count_diff_bits(want, got, n), n, r);
	ck_assert_msg(r <= 1e-5, "default mode: chunked relative L2 %g", r);
	free(got);
	free(want);
	prompt_free(&p);
	prompt_free(&other);
}
END_TEST

/* Three prompts (the last 4 positions of each fed as decode steps): each alone, and all three
 * prefilled together and then decoding in the same steps. Returns how many logits of the
 * decode steps differ in their bits; asserts bit equality when invariant. */
static size_t assert_decode_alone_equals_batched(const model *m, bool invariant)
{
	const size_t V = (size_t)m->mc.text.vocab_size;
	prompt ps[3] = { make_prompt(m, 26, 34, NULL, 0), make_prompt(m, 27, 16, NULL, 0),
			 make_prompt(m, 28, 54, NULL, 0) };
	const int bs = 8;
	float *alone[3];
	for (int s = 0; s < 3; s++) {
		const int sched[] = { ps[s].n - 4, 1, 0 };
		alone[s] = run_schedule(m, &ps[s], bs, sched, NULL, invariant);
	}
	text_cpu *t = new_tc_mode(m, bs, 20, BI_THREADS, invariant);
	feed f[3] = { feed_at(&ps[0], 0, bs), feed_at(&ps[1], 6, bs), feed_at(&ps[2], 9, bs) };
	free(feed_step(t, m, (feed *[]){ &f[0], &f[1], &f[2] },
		       (int[]){ ps[0].n - 4, ps[1].n - 4, ps[2].n - 4 }, 3));
	size_t bad = 0;
	for (int k = 0; k < 4; k++) {
		/* decode order c, a, b: a's row is not the first of the step */
		float *lg = feed_step(t, m, (feed *[]){ &f[2], &f[0], &f[1] }, (int[]){ 1, 1, 1 }, 3);
		const int order[3] = { 2, 0, 1 };
		for (int j = 0; j < 3; j++) {
			const int s = order[j];
			const float *want = alone[s] + (size_t)(ps[s].n - 4 + k) * V;
			if (invariant) {
				char what[96];
				snprintf(what, sizeof(what), "invariant: decode %d of prompt %d alone vs "
					 "batched", k, s);
				assert_same_bits(want, lg + (size_t)j * V, V, V, what);
			}
			double r = rel_l2f(lg + (size_t)j * V, want, V);
			ck_assert_msg(r <= 1e-5, "decode %d of prompt %d: relative L2 %g", k, s, r);
			bad += count_diff_bits(want, lg + (size_t)j * V, V);
		}
		free(lg);
	}
	text_cpu_free(t);
	for (int s = 0; s < 3; s++) {
		free(alone[s]);
		prompt_free(&ps[s]);
	}
	return bad;
}

START_TEST(test_text_cpu_batch_invariant_decode_alone_equals_batched)
{
	ck_assert_uint_eq(assert_decode_alone_equals_batched(&tiny, true), 0);
	ck_assert_uint_eq(assert_decode_alone_equals_batched(&dense, true), 0);
	printf("default mode, decode alone vs batched: %zu of %zu logits differ in their bits\n",
	       assert_decode_alone_equals_batched(&tiny, false),
	       (size_t)12 * (size_t)tiny.mc.text.vocab_size);
}
END_TEST

/* The mode changes the order of sums only: it agrees with the default mode, and with the
 * double-precision reference, as closely as the default mode does. */
static void assert_invariant_matches_default(const model *m, const prompt *p, const char *what)
{
	const size_t V = (size_t)m->mc.text.vocab_size;
	float *on = one_shot_mode(m, p, BI_THREADS, true), *off = one_shot_mode(m, p, 1, false);
	double *ref = calloc((size_t)p->n * V, sizeof(double));
	ref_forward(m, p->n, p->ids, (const float *const *)p->vis, p->pos, ref);
	double worst_off = 0, worst_ref = 0;
	for (int i = 0; i < p->n; i++) {
		double a = rel_l2f(on + (size_t)i * V, off + (size_t)i * V, V);
		double b = rel_l2(on + (size_t)i * V, ref + (size_t)i * V, V);
		worst_off = a > worst_off ? a : worst_off;
		worst_ref = b > worst_ref ? b : worst_ref;
	}
	printf("%s: invariant vs default worst row relative L2 %.3g, vs double reference %.3g\n",
	       what, worst_off, worst_ref);
	ck_assert_msg(worst_off <= 1e-5, "%s: invariant vs default relative L2 %g", what, worst_off);
	ck_assert_msg(worst_ref <= 1e-5, "%s: invariant vs reference relative L2 %g", what,
		      worst_ref);
	free(on);
	free(off);
	free(ref);
}

START_TEST(test_text_cpu_batch_invariant_matches_default)
{
	const int32_t grid[3] = { 1, 6, 8 };
	prompt p = make_prompt(&tiny, 29, 4, grid, 9);
	assert_invariant_matches_default(&tiny, &p, "tiny vision rows");
	prompt_free(&p);
	p = make_prompt(&dense, 30, 23, NULL, 0);
	assert_invariant_matches_default(&dense, &p, "dense qwen3");
	prompt_free(&p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("text_cpu");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 600);
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_text_cpu_text_matches_reference);
	tcase_add_test(tc, test_text_cpu_vision_rows_match_reference);
	tcase_add_test(tc, test_text_cpu_dense_qwen3_matches_reference);
	tcase_add_test(tc, test_text_cpu_chunked_prefill_matches_one_shot);
	tcase_add_test(tc, test_text_cpu_prefill_then_decode_matches_one_shot);
	tcase_add_test(tc, test_text_cpu_ragged_batch_matches_one_shot);
	tcase_add_test(tc, test_text_cpu_mrope_spec_example);
	tcase_add_test(tc, test_text_cpu_mrope_refuses_mismatches);
	tcase_add_test(tc, test_text_cpu_refuses_bad_input);
	tcase_add_test(tc, test_text_cpu_batch_invariant_alone_equals_batched);
	tcase_add_test(tc, test_text_cpu_batch_invariant_chunked_prefill);
	tcase_add_test(tc, test_text_cpu_batch_invariant_decode_alone_equals_batched);
	tcase_add_test(tc, test_text_cpu_batch_invariant_matches_default);
	suite_add_tcase(s, tc);
	TCase *tg = tcase_create("golden");
	tcase_set_timeout(tg, 900);
	tcase_add_unchecked_fixture(tg, setup, teardown);
	tcase_add_test(tg, test_text_cpu_golden_text_prompts);
	suite_add_tcase(s, tg);
	return tu_run_suite(s);
}
