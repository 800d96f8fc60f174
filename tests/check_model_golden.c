/*
 * The whole CPU model against transformers: for every line of tests/data/model-golden/golden.jsonl
 * (made on the GPU machine by tests/golden/make_model_golden.py — Qwen3VLForConditionalGeneration
 * in fp32, TF32 off, on `qvl mkmodel --config … --seed 1 --dtype f32` checkpoints of several
 * shapes and on text, image, multi-image, multi-turn, text-around-image and 2,388-token prompts),
 * build the prompt as the server will (chat template, image decoding and preprocessing,
 * placeholder expansion, tokenizer), run the vision tower and the decoder through the backend
 * interface, and compare:
 *   - the prompt ids and the rope delta: identical;
 *   - the vision tower's merged embeddings (first 16 values, L2 norm) and deepstack norms;
 *   - at each of 8 greedy steps, the logits at the reference's top-50 ids (relative L2 ≤ 1e-4)
 *     and the log-sum-exp of all logits; the greedy id wherever the reference's top-1 margin
 *     exceeds 1e-3 (decoding follows the reference's ids so that one close call cannot derail
 *     the remaining steps).
 *
 * Built a second time with -DGOLDEN_CUDA as check_model_golden_cuda: the same cases through the
 * CUDA backend (bf16 weights, fp16 or bf16 GEMM operands, fp32 residual stream: text_cuda.c),
 * which exits 77 without a GPU and skips the configs whose head sizes its kernels do not take
 * (head_dim 16). Bars, the issue's: top-50 logits within relative L2 1e-2 (measured on an H100:
 * ≤ 3.7e-3 tiny, ≤ 4.9e-3 2b), log-sum-exp within 1e-2 relative, vision embeddings within 3e-2
 * (the vision tower keeps transformers' bf16 roundings), and the greedy id wherever the
 * reference's margin exceeds 0.05 (the closest case, tiny/text step 0, margin 0.103 on a top
 * logit of 13.1, flipped while the qkv and gate/up operands were bf16). For scale: transformers
 * itself in bf16 is 1.2e-2 (tiny) to 1.9e-2 (2b) from these goldens in last-position logits
 * over the whole vocabulary (tests/golden/hf_bf16_floor.py).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"
#include "chat_template.h"
#include "img_decode.h"
#include "img_preprocess.h"
#include "jsonx.h"
#include "mkmodel.h"
#include "mrope.h"
#include "testutil.h"
#include "tokenizer.h"

#define MAX_IMAGES 8

#ifdef GOLDEN_CUDA
#define TOL_LOGITS 1e-2
#define TOL_LSE 1e-2
#define TOL_VISION 3e-2
#define TOL_NORM 3e-2
#define GREEDY_MARGIN 0.05
#else
#define TOL_LOGITS 1e-4
#define TOL_LSE 1e-4
#define TOL_VISION 1e-4
#define TOL_NORM 1e-5
#define GREEDY_MARGIN 1e-3
#endif

static int skipped;   /* cases the backend cannot run (GOLDEN_CUDA: head sizes) */

/* the largest errors seen, printed at the end for the record */
static double worst_logits, worst_vision, worst_lse;

static const char *srcdir(void)
{
	const char *s = getenv("srcdir");
	return s && *s ? s : ".";
}

static json_object *read_json(const char *fmt, const char *name)
{
	char path[1024];
	snprintf(path, sizeof(path), fmt, srcdir(), name);
	json_object *o;
	qerr e = { 0 };
	ck_assert_msg(jsonx_parse_file(path, 1 << 24, &o, &e) == 0, "%s", e.msg);
	return o;
}

static double rel_l2(const double *a, const double *b, int n)
{
	double num = 0, den = 0;
	for (int i = 0; i < n; i++) {
		num += (a[i] - b[i]) * (a[i] - b[i]);
		den += b[i] * b[i];
	}
	return sqrt(num / (den > 0 ? den : 1));
}

typedef struct loaded {
	char name[128];
	char *dir;
	model_config mc;
	model_weights w;
	tokenizer *tok;
} loaded;

static void load_model(loaded *m, const char *config)
{
	if (m->dir && !strcmp(m->name, config))
		return;
	if (m->dir) {
		model_weights_deinit(&m->w);
		tok_free(m->tok);
		tu_rmdir(m->dir);
		free(m->dir);
	}
	snprintf(m->name, sizeof(m->name), "%s", config);
	m->dir = tu_mkdtemp("golden-model");
	char cfg[1024];
	snprintf(cfg, sizeof(cfg), "%s/tests/data/model-golden/configs/%s.json", srcdir(), config);
	mkmodel_opts o = { .config_path = cfg, .out_dir = m->dir, .seed = 1, .dtype = ST_F32 };
	qerr e = { 0 };
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
	generation_config gc;
	preprocessor_config pc;
	ck_assert_msg(model_config_load_dir(m->dir, &m->mc, &gc, &pc, &e) == 0, "%s", e.msg);
	ck_assert_msg(model_weights_open(m->dir, &m->mc, &m->w, &e) == 0, "%s", e.msg);
	char tp[1024];
	snprintf(tp, sizeof(tp), "%s/tokenizer.json", m->dir);
	ck_assert_msg(tok_load(tp, &m->tok, &e) == 0, "%s", e.msg);
}

static void check_line(loaded *m, json_object *g)
{
	const char *config = json_object_get_string(jsonx_member(g, "config"));
	const char *prompt = json_object_get_string(jsonx_member(g, "prompt"));
	load_model(m, config);
	const model_config *mc = &m->mc;
	qerr e = { 0 };

	/* the prompt, as the server builds it */
	json_object *req = read_json("%s/tests/data/model-golden/prompts/%s.json", prompt);
	json_object *messages = jsonx_member(req, "messages");
	img_patches im[MAX_IMAGES] = { 0 };
	int n_img = 0;
	preprocessor_config pc;
	preprocessor_config_defaults(&pc);
	for (size_t i = 0; i < json_object_array_length(messages); i++) {
		json_object *content = jsonx_member(json_object_array_get_idx(messages, i), "content");
		if (!json_object_is_type(content, json_type_array))
			continue;
		for (size_t k = 0; k < json_object_array_length(content); k++) {
			json_object *part = json_object_array_get_idx(content, k);
			const char *type = json_object_get_string(jsonx_member(part, "type"));
			if (!type || strcmp(type, "image"))
				continue;
			const char *file = json_object_get_string(jsonx_member(part, "image"));
			char path[1024];
			size_t len;
			snprintf(path, sizeof(path), "%s/tests/data/images/%s", srcdir(), file);
			char *data = tu_read(path, &len);
			if (!data) {
				snprintf(path, sizeof(path), "%s/tests/data/images-large/%s", srcdir(), file);
				data = tu_read(path, &len);
			}
			ck_assert_msg(data != NULL, "image %s", file);
			img_rgb rgb = { 0 };
			img_limits lim = { 0 };
			ck_assert_int_eq(img_decode(data, len, &lim, &rgb, &e), 0);
			ck_assert_int_lt(n_img, MAX_IMAGES);
			ck_assert_int_eq(img_preprocess(&rgb, &pc, 0, 0, &im[n_img++], &e), 0);
			img_rgb_deinit(&rgb);
			free(data);
		}
	}
	chat_opts co = { .add_generation_prompt = true };
	char *text, *expanded;
	size_t tlen, elen;
	int n_images = 0;
	ck_assert_msg(chat_render(messages, NULL, &co, &text, &tlen, &n_images, NULL, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(n_images, n_img);
	int64_t counts[MAX_IMAGES];
	int32_t grids[MAX_IMAGES][3];
	for (int i = 0; i < n_img; i++) {
		counts[i] = im[i].n_tokens;
		grids[i][0] = im[i].grid_t;
		grids[i][1] = im[i].grid_h;
		grids[i][2] = im[i].grid_w;
	}
	ck_assert_int_eq(chat_expand_pads(text, tlen, "<|image_pad|>", counts, (size_t)n_img, &expanded,
					  &elen, &e), 0);
	tok_ids ids = { 0 };
	tok_encode(m->tok, expanded, elen, &ids);
	json_object *gids = jsonx_member(g, "prompt_ids");
	ck_assert_uint_eq(ids.n, json_object_array_length(gids));
	for (size_t i = 0; i < ids.n; i++)
		ck_assert_msg(ids.v[i] == json_object_get_int(json_object_array_get_idx(gids, i)),
			      "%s/%s: prompt id %zu differs", config, prompt, i);

	/* positions */
	int n = (int)ids.n, steps = 8, D = mc->text.hidden_size;
	int32_t *pos = xcalloc((size_t)3 * (size_t)n, sizeof(int32_t));
	int64_t delta = 0;
	ck_assert_msg(mrope_positions(mc, ids.v, ids.n, (const int32_t(*)[3])grids, (size_t)n_img, pos,
				      &delta, &e) == 0, "%s", e.msg);
	json_object *gd = jsonx_member(g, "rope_deltas");
	if (gd)
		ck_assert_int_eq(delta, json_object_get_int64(json_object_array_get_idx(gd, 0)));

	/* the backend */
	int block = 16, n_blocks = (n + steps) / block + 2;
	backend_opts bo = { .block_size = block, .n_blocks = n_blocks };
	backend *b;
#ifdef GOLDEN_CUDA
	bo.max_num_batched_tokens = n > 2048 ? n : 2048;
	bo.max_num_seqs = 4;
	bo.max_model_len = n_blocks * block;
	bo.max_image_patches = 16384;
	bo.gpu_memory_utilization = 0.9;
	int brc = backend_cuda_new(mc, &m->w, &bo, &b, &e);
	if (brc == -QERR_UNSUPPORTED) {
		fprintf(stderr, "%s/%s: skipped (%s)\n", config, prompt, e.msg);
		skipped++;
		for (int i = 0; i < n_img; i++)
			img_patches_deinit(&im[i]);
		free(pos);
		free(text);
		free(expanded);
		tok_ids_deinit(&ids);
		json_object_put(req);
		return;
	}
	ck_assert_msg(brc == 0, "%s", e.msg);
#else
	ck_assert_msg(backend_cpu_new(mc, &m->w, &bo, &b, &e) == 0, "%s", e.msg);
#endif
	int32_t *table = xcalloc((size_t)n_blocks, sizeof(int32_t));
	for (int i = 0; i < n_blocks; i++)
		table[i] = n_blocks - 1 - i;   /* scattered on purpose */

	/* vision */
	int nds = mc->has_vision ? mc->vision.n_deepstack : 0;
	size_t row = (size_t)(1 + nds) * (size_t)D;
	int64_t vis_tokens = 0;
	for (int i = 0; i < n_img; i++)
		vis_tokens += im[i].n_tokens;
	float *vis = xcalloc((size_t)vis_tokens * row + 1, sizeof(float));
	const float **vp = xcalloc((size_t)n, sizeof(*vp));
	int64_t off = 0;
	for (int i = 0; i < n_img; i++) {
		ck_assert_msg(backend_encode(b, im[i].pixel_values, im[i].grid_t, im[i].grid_h, im[i].grid_w,
					     vis + (size_t)off * row, &e) == 0, "%s", e.msg);
		off += im[i].n_tokens;
	}
	json_object *gv = jsonx_member(g, "vision");
	if (gv) {
		double head[16], want[16], norm = 0, dsn[MODEL_MAX_DEEPSTACK] = { 0 };
		for (int64_t t = 0; t < vis_tokens; t++)
			for (int k = 0; k <= nds; k++)
				for (int c = 0; c < D; c++) {
					double x = vis[(size_t)t * row + (size_t)k * (size_t)D + (size_t)c];
					if (k == 0) {
						norm += x * x;
						if (t * D + c < 16)
							head[t * D + c] = x;
					} else {
						dsn[k - 1] += x * x;
					}
				}
		for (int i = 0; i < 16; i++)
			want[i] = json_object_get_double(json_object_array_get_idx(jsonx_member(gv, "embeds_head"), i));
		if (rel_l2(head, want, 16) > worst_vision)
			worst_vision = rel_l2(head, want, 16);
		ck_assert_msg(rel_l2(head, want, 16) < TOL_VISION, "%s/%s: vision embeddings differ (rel %g)", config,
			      prompt, rel_l2(head, want, 16));
		double gn = json_object_get_double(jsonx_member(gv, "embeds_norm"));
		ck_assert_msg(fabs(sqrt(norm) - gn) <= TOL_NORM * gn, "%s/%s: vision norm %g vs %g", config, prompt,
			      sqrt(norm), gn);
		for (int k = 0; k < nds; k++) {
			double w = json_object_get_double(json_object_array_get_idx(jsonx_member(gv, "deepstack_norms"), k));
			ck_assert_msg(fabs(sqrt(dsn[k]) - w) <= TOL_NORM * w, "%s/%s: deepstack %d norm %g vs %g",
				      config, prompt, k, sqrt(dsn[k]), w);
		}
	}
	int64_t next_vis = 0;
	for (int i = 0; i < n; i++)
		if (mc->has_vision && ids.v[i] == mc->image_token_id)
			vp[i] = vis + (size_t)(next_vis++) * row;
	ck_assert_int_eq(next_vis, vis_tokens);

	/* prefill, then 8 greedy steps following the reference's ids */
	int V = mc->text.vocab_size;
	float *logits = xcalloc((size_t)V, sizeof(float));
	json_object *gsteps = jsonx_member(g, "steps"), *ggreedy = jsonx_member(g, "greedy_ids");
	for (int s = 0; s < steps; s++) {
		backend_seq q = { 0 };
		int32_t last = n - 1, zero = 0;
		int32_t tok, p3[3];
		if (s == 0) {
			q = (backend_seq){ .n_new = n, .ids = ids.v, .vis = vp, .pos = pos, .n_cached = 0,
					   .block_table = table, .n_logits = 1, .logit_rows = &last };
		} else {
			tok = json_object_get_int(json_object_array_get_idx(ggreedy, s - 1));
			p3[0] = p3[1] = p3[2] = (int32_t)(n + s - 1 + delta);
			q = (backend_seq){ .n_new = 1, .ids = &tok, .pos = p3, .n_cached = n + s - 1,
					   .block_table = table, .n_logits = 1, .logit_rows = &zero };
		}
		ck_assert_msg(backend_step(b, &q, 1, logits, &e) == 0, "%s", e.msg);
		json_object *st = json_object_array_get_idx(gsteps, s);
		json_object *tid = jsonx_member(st, "top_ids"), *tlg = jsonx_member(st, "top_logits");
		double got[50], want[50];
		for (int k = 0; k < 50; k++) {
			got[k] = logits[json_object_get_int(json_object_array_get_idx(tid, k))];
			want[k] = json_object_get_double(json_object_array_get_idx(tlg, k));
		}
		double err = rel_l2(got, want, 50);
		if (err > worst_logits)
			worst_logits = err;
		ck_assert_msg(err <= TOL_LOGITS, "%s/%s step %d: top-50 logits rel L2 %g", config, prompt, s, err);
		double mx = -INFINITY, sum = 0;
		int arg = 0;
		for (int v = 0; v < V; v++)
			if (logits[v] > mx) {
				mx = logits[v];
				arg = v;
			}
		for (int v = 0; v < V; v++)
			sum += exp((double)logits[v] - mx);
		double lse = mx + log(sum), glse = json_object_get_double(jsonx_member(st, "logsumexp"));
		if (fabs(lse - glse) > worst_lse)
			worst_lse = fabs(lse - glse);
		ck_assert_msg(fabs(lse - glse) <= TOL_LSE * fabs(glse) + TOL_LSE, "%s/%s step %d: logsumexp %g vs %g",
			      config, prompt, s, lse, glse);
#ifdef GOLDEN_CUDA
		fprintf(stderr, "%s/%s step %d: top-50 rel L2 %.2e, logsumexp %+.2e, top logit %.3f, "
			"margin %.3f, greedy %s\n", config, prompt, s, err, lse - glse, want[0],
			want[0] - want[1],
			arg == json_object_get_int(json_object_array_get_idx(ggreedy, s)) ? "same" :
			"differs");
#endif
		if (want[0] - want[1] > GREEDY_MARGIN)
			ck_assert_msg(arg == json_object_get_int(json_object_array_get_idx(ggreedy, s)),
				      "%s/%s step %d: greedy id %d, reference %d", config, prompt, s, arg,
				      json_object_get_int(json_object_array_get_idx(ggreedy, s)));
	}
	backend_free(b);
	for (int i = 0; i < n_img; i++)
		img_patches_deinit(&im[i]);
	free(logits);
	free(vis);
	free(vp);
	free(table);
	free(pos);
	free(text);
	free(expanded);
	tok_ids_deinit(&ids);
	json_object_put(req);
}

START_TEST(test_model_golden_matches_transformers)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/model-golden/golden.jsonl", srcdir());
	size_t n;
	char *text = tu_read(path, &n);
	ck_assert_msg(text != NULL, "cannot read %s", path);
	loaded m = { 0 };
	int lines = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_object *g;
		qerr e = { 0 };
		ck_assert_int_eq(jsonx_parse(line, strlen(line), "golden", &g, &e), 0);
		check_line(&m, g);
		json_object_put(g);
		lines++;
	}
	fprintf(stderr, "%d (model, prompt) cases agree with transformers (%d skipped); largest errors: "
		"top-50 logits rel L2 %.2e, vision embeddings rel L2 %.2e, logsumexp abs %.2e\n",
		lines - skipped, skipped, worst_logits, worst_vision, worst_lse);
	/* the committed set has 20 cases; QVL_GOLDEN_MIN_CASES lowers the bar for other sets (the
	 * 2b check on the GPU machine runs two) */
	const char *min = getenv("QVL_GOLDEN_MIN_CASES");
#ifdef GOLDEN_CUDA
	ck_assert_int_ge(lines - skipped, min ? atoi(min) : 12);
#else
	ck_assert_int_ge(lines, min ? atoi(min) : 20);
#endif
	if (m.dir) {
		model_weights_deinit(&m.w);
		tok_free(m.tok);
		tu_rmdir(m.dir);
		free(m.dir);
	}
	free(text);
}
END_TEST

int main(void)
{
#ifdef GOLDEN_CUDA
	if (!backend_cuda_available()) {
		fprintf(stderr, "no CUDA device: skipped\n");
		return 77;
	}
#endif
	Suite *s = suite_create("model_golden");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 1200);
	tcase_add_test(tc, test_model_golden_matches_transformers);
	suite_add_tcase(s, tc);
#ifdef GOLDEN_CUDA
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);   /* CUDA does not survive fork */
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
#else
	return tu_run_suite(s);
#endif
}
