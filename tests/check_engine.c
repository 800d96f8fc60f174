/*
 * check_engine: the engine on the tiny checkpoint (CPU backend, batch-invariant), in-process.
 *
 * What is checked: a batch of greedy requests gives exactly the outputs of running each alone;
 * a pool too small for everyone forces preemption and still gives those outputs; a seeded
 * request samples the same tokens alone and in a crowd, and choice i of an n > 1 request equals
 * a single request seeded with seed + i; a repeated prompt is served from the prefix cache
 * (cached_tokens) with the same output; a repeated image is served from the encoder cache;
 * cancel frees every block at once; submit refuses what cannot be served, naming why; async
 * scheduling (the default: step N+1 planned and launched before step N's tokens are taken)
 * gives exactly the outputs of waiting for every step, over a mix of greedy, seeded, penalised
 * (which must wait), stopped and n > 1 requests.
 *
 * The model is made once in an unchecked fixture (the parent process) and shared by the forks.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "alloc.h"
#include "backend.h"
#include "engine.h"
#include "img_preprocess.h"
#include "mkmodel.h"
#include "model_config.h"
#include "model_weights.h"
#include "testutil.h"

#define MAX_REQ 80
#define MAX_OUT 64
#define MAX_CHOICES 4

static char *model_dir;
static bool sync_scheduling;   /* harness_init's engines wait for every step */
static model_config mc;
static generation_config gc;
static preprocessor_config pc;
static model_weights w;
static tokenizer *tok;

static void setup(void)
{
	model_dir = tu_mkdtemp("engine-model");
	mkmodel_opts o = { .preset = "tiny", .out_dir = model_dir, .seed = 7 };
	qerr e = { 0 };
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
	ck_assert_msg(model_config_load_dir(model_dir, &mc, &gc, &pc, &e) == 0, "%s", e.msg);
	ck_assert_msg(model_weights_open(model_dir, &mc, &w, &e) == 0, "%s", e.msg);
	char path[1024];
	snprintf(path, sizeof(path), "%s/tokenizer.json", model_dir);
	ck_assert_msg(tok_load(path, &tok, &e) == 0, "%s", e.msg);
}

static void teardown(void)
{
	model_weights_deinit(&w);
	tok_free(tok);
	tu_rmdir(model_dir);
	free(model_dir);
}

/* ---- a harness: one engine, outputs collected per request and choice ---- */

typedef struct result {
	int32_t ids[MAX_CHOICES][MAX_OUT];
	int n[MAX_CHOICES];
	int finished[MAX_CHOICES];
	int reason[MAX_CHOICES];
	int64_t cached[MAX_CHOICES];
	int error;
} result;

typedef struct harness {
	backend *b;
	engine *en;
	result res[MAX_REQ];
	int n_blocks;
} harness;

static void collect(void *ctx, const engine_output *o)
{
	harness *h = ctx;
	result *r = &h->res[o->id];
	ck_assert_uint_lt(o->index, MAX_CHOICES);
	ck_assert(!r->finished[o->index]);
	for (int i = 0; i < o->n; i++) {
		ck_assert_int_lt(r->n[o->index], MAX_OUT);
		r->ids[o->index][r->n[o->index]++] = o->ids[i];
	}
	if (o->error)
		r->error = o->error;
	if (o->finished) {
		r->finished[o->index] = 1;
		r->reason[o->index] = o->reason;
		r->cached[o->index] = o->cached_tokens;
		ck_assert_int_eq(o->completion_tokens, r->n[o->index]);
	}
}

static void harness_init(harness *h, int n_blocks, int max_seqs, int budget)
{
	memset(h, 0, sizeof(*h));
	h->n_blocks = n_blocks;
	qerr e = { 0 };
	backend_opts bo = { .block_size = 16, .n_blocks = n_blocks, .n_threads = 1,
			    .batch_invariant = true };
	ck_assert_msg(backend_cpu_new(&mc, &w, &bo, &h->b, &e) == 0, "%s", e.msg);
	engine_opts eo = { .max_num_seqs = max_seqs, .max_num_batched_tokens = budget,
			   .max_model_len = 4096, .block_size = 16, .n_blocks = n_blocks,
			   .enable_prefix_caching = true, .encoder_cache_tokens = 4096, .tok = tok,
			   .sync_scheduling = sync_scheduling };
	ck_assert_msg(engine_new(h->b, &mc, &gc, &eo, &h->en, &e) == 0, "%s", e.msg);
}

static void harness_deinit(harness *h)
{
	engine_free(h->en);
	backend_free(h->b);
}

static void run_all(harness *h)
{
	qerr e = { 0 };
	for (int step = 0; step < 100000 && engine_num_live(h->en); step++)
		ck_assert_msg(engine_step(h->en, collect, h, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(engine_num_live(h->en), 0);
}

/* A text prompt of n ids, different for each k (ids kept below the special tokens). */
static void prompt(int k, int n, int32_t *out)
{
	for (int i = 0; i < n; i++)
		out[i] = (int32_t)((k * 7907 + i * 131 + (i * i) % 97) % 150000);
}

static sampling_params greedy(void)
{
	sampling_params sp = { .temperature = 0, .top_p = 1, .repetition_penalty = 1, .logprobs = -1 };
	return sp;
}

static int submit(harness *h, uint64_t id, const int32_t *ids, int n, sampling_params sp,
		  int max_tokens, uint32_t choices, qerr *e)
{
	engine_request r = { .id = id, .n_ids = n, .sp = sp, .max_tokens = max_tokens, .n = choices };
	r.ids = xmalloc((size_t)n * sizeof(int32_t));
	memcpy(r.ids, ids, (size_t)n * sizeof(int32_t));
	int rc = engine_submit(h->en, &r, e);
	free(r.ids);                   /* NULL when the engine took it */
	return rc;
}

static void assert_same(const result *a, int ca, const result *b, int cb)
{
	ck_assert_int_eq(a->n[ca], b->n[cb]);
	for (int i = 0; i < a->n[ca]; i++)
		ck_assert_msg(a->ids[ca][i] == b->ids[cb][i], "token %d: %d vs %d", i, a->ids[ca][i],
			      b->ids[cb][i]);
	ck_assert_int_eq(a->reason[ca], b->reason[cb]);
}

/* One request alone on a fresh engine. */
static void run_alone(const int32_t *ids, int n, sampling_params sp, int max_tokens, result *out)
{
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 256, 8, 512);
	qerr e = { 0 };
	ck_assert_msg(submit(h, 0, ids, n, sp, max_tokens, 1, &e) == 0, "%s", e.msg);
	run_all(h);
	*out = h->res[0];
	harness_deinit(h);
	free(h);
}

START_TEST(test_engine_batch_equals_alone)
{
	enum { N = 12 };
	int32_t ids[N][200];
	int len[N];
	result *alone = xcalloc(N, sizeof(*alone));
	for (int k = 0; k < N; k++) {
		len[k] = 5 + (k * 37) % 150;
		prompt(k, len[k], ids[k]);
		run_alone(ids[k], len[k], greedy(), 6 + k % 5, &alone[k]);
	}
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 512, 16, 64);  /* small budget: prompts are chunked and mixed with decodes */
	qerr e = { 0 };
	for (int k = 0; k < N; k++)
		ck_assert_msg(submit(h, (uint64_t)k, ids[k], len[k], greedy(), 6 + k % 5, 1, &e) == 0,
			      "%s", e.msg);
	run_all(h);
	for (int k = 0; k < N; k++) {
		ck_assert(h->res[k].finished[0]);
		assert_same(&h->res[k], 0, &alone[k], 0);
	}
	harness_deinit(h);
	free(h);
	free(alone);
}
END_TEST

START_TEST(test_engine_preemption_same_output)
{
	enum { N = 6 };
	int32_t ids[N][64];
	result *alone = xcalloc(N, sizeof(*alone));
	for (int k = 0; k < N; k++) {
		prompt(100 + k, 40, ids[k]);
		run_alone(ids[k], 40, greedy(), 24, &alone[k]);
	}
	/* each needs 4 blocks (64 positions); 10 blocks cannot hold six */
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 10, 8, 256);
	qerr e = { 0 };
	for (int k = 0; k < N; k++)
		ck_assert_msg(submit(h, (uint64_t)k, ids[k], 40, greedy(), 24, 1, &e) == 0, "%s", e.msg);
	run_all(h);
	json_object *st = engine_stats_json(h->en), *pre = NULL;
	ck_assert(json_object_object_get_ex(st, "num_preemptions", &pre));
	ck_assert_int_gt(json_object_get_int64(pre), 0);
	json_object_put(st);
	for (int k = 0; k < N; k++)
		assert_same(&h->res[k], 0, &alone[k], 0);
	harness_deinit(h);
	free(h);
	free(alone);
}
END_TEST

START_TEST(test_engine_seed_independent_of_batch)
{
	int32_t ids[30], other[50];
	prompt(7, 30, ids);
	sampling_params sp = greedy();
	sp.temperature = 1.0;
	sp.has_seed = true;
	sp.seed = 1234;
	result alone;
	run_alone(ids, 30, sp, 20, &alone);
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 256, 8, 64);
	qerr e = { 0 };
	for (int k = 1; k < 5; k++) {
		prompt(50 + k, 50, other);
		sampling_params so = sp;
		so.seed = (uint64_t)k;
		ck_assert(submit(h, (uint64_t)k, other, 50, so, 20, 1, &e) == 0);
	}
	ck_assert(submit(h, 0, ids, 30, sp, 20, 1, &e) == 0);
	run_all(h);
	assert_same(&h->res[0], 0, &alone, 0);
	harness_deinit(h);
	free(h);
}
END_TEST

START_TEST(test_engine_n_choices_follow_seeds)
{
	int32_t ids[25];
	prompt(9, 25, ids);
	sampling_params sp = greedy();
	sp.temperature = 0.8;
	sp.has_seed = true;
	sp.seed = 99;
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 256, 8, 256);
	qerr e = { 0 };
	ck_assert(submit(h, 0, ids, 25, sp, 12, 3, &e) == 0);
	run_all(h);
	for (int c = 0; c < 3; c++) {
		ck_assert(h->res[0].finished[c]);
		sampling_params si = sp;
		si.seed = 99 + (uint64_t)c;
		result alone;
		run_alone(ids, 25, si, 12, &alone);
		assert_same(&h->res[0], c, &alone, 0);
	}
	/* three different seeds: not all three choices are the same text */
	ck_assert(memcmp(h->res[0].ids[0], h->res[0].ids[1], sizeof(h->res[0].ids[0])) ||
		  memcmp(h->res[0].ids[0], h->res[0].ids[2], sizeof(h->res[0].ids[0])));
	harness_deinit(h);
	free(h);
}
END_TEST

START_TEST(test_engine_prefix_cache_hit)
{
	int32_t ids[100];
	prompt(3, 100, ids);
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 256, 8, 512);
	qerr e = { 0 };
	ck_assert(submit(h, 0, ids, 100, greedy(), 8, 1, &e) == 0);
	run_all(h);
	ck_assert(submit(h, 1, ids, 100, greedy(), 8, 1, &e) == 0);
	run_all(h);
	ck_assert_int_eq(h->res[0].cached[0], 0);
	ck_assert_int_eq(h->res[1].cached[0], 96);   /* 6 full blocks; the last token is computed */
	assert_same(&h->res[1], 0, &h->res[0], 0);
	json_object *st = engine_stats_json(h->en), *hits = NULL;
	ck_assert(json_object_object_get_ex(st, "prefix_cache_hits", &hits));
	ck_assert_int_eq(json_object_get_int64(hits), 96);
	json_object_put(st);
	harness_deinit(h);
	free(h);
}
END_TEST

/* A prompt "<vs> pad×n <ve> text" for a synthetic w×h image of pattern k. */
static int image_request(harness *h, uint64_t id, int k, int32_t *ids_out, int *n_out, qerr *e)
{
	img_rgb rs = { .w = 64, .h = 64 };
	rs.px = xmalloc(64 * 64 * 3);
	for (int i = 0; i < 64 * 64 * 3; i++)
		rs.px[i] = (uint8_t)(i * (k + 3) + k);
	img_patches p = { 0 };
	ck_assert_msg(img_preprocess_patches(&rs, &pc, &p, e) == 0, "%s", e->msg);
	free(rs.px);
	int n = 0;
	ids_out[n++] = 100;
	ids_out[n++] = mc.vision_start_token_id;
	int start = n;
	for (int i = 0; i < p.n_tokens; i++)
		ids_out[n++] = mc.image_token_id;
	ids_out[n++] = mc.vision_end_token_id;
	for (int i = 0; i < 5; i++)
		ids_out[n++] = 200 + i;
	*n_out = n;
	sched_image *im = xcalloc(1, sizeof(*im));
	*im = (sched_image){ .start = start, .n_tokens = p.n_tokens, .grid_t = p.grid_t,
			     .grid_h = p.grid_h, .grid_w = p.grid_w, .pixel_values = p.pixel_values };
	memcpy(im->hash, p.hash, 32);
	engine_request r = { .id = id, .n_ids = n, .sp = greedy(), .max_tokens = 6, .n = 1,
			     .images = im, .n_images = 1 };
	r.ids = xmalloc((size_t)n * sizeof(int32_t));
	memcpy(r.ids, ids_out, (size_t)n * sizeof(int32_t));
	int rc = engine_submit(h->en, &r, e);
	if (rc) {
		free(r.ids);
		free(im->pixel_values);
		free(im);
	}
	return rc;
}

START_TEST(test_engine_encoder_cache_hit)
{
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 256, 8, 512);
	int32_t ids[64];
	int n = 0;
	qerr e = { 0 };
	ck_assert_msg(image_request(h, 0, 1, ids, &n, &e) == 0, "%s", e.msg);
	run_all(h);
	ck_assert_msg(image_request(h, 1, 1, ids, &n, &e) == 0, "%s", e.msg);
	ck_assert_msg(image_request(h, 2, 2, ids, &n, &e) == 0, "%s", e.msg);
	run_all(h);
	assert_same(&h->res[1], 0, &h->res[0], 0);
	json_object *st = engine_stats_json(h->en), *q = NULL, *hit = NULL;
	ck_assert(json_object_object_get_ex(st, "mm_cache_queries", &q));
	ck_assert(json_object_object_get_ex(st, "mm_cache_hits", &hit));
	ck_assert_int_ge(json_object_get_int64(hit), 1);
	ck_assert_int_ge(json_object_get_int64(q), 3);
	json_object_put(st);
	harness_deinit(h);
	free(h);
}
END_TEST

START_TEST(test_engine_cancel_frees_blocks)
{
	int32_t ids[80];
	prompt(11, 80, ids);
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 64, 8, 512);
	qerr e = { 0 };
	ck_assert(submit(h, 0, ids, 80, greedy(), 40, 1, &e) == 0);
	for (int i = 0; i < 3; i++)
		ck_assert(engine_step(h->en, collect, h, &e) == 0);
	json_object *st = engine_stats_json(h->en), *fr = NULL;
	ck_assert(json_object_object_get_ex(st, "kv_blocks_free", &fr));
	ck_assert_int_lt(json_object_get_int(fr), 64);
	json_object_put(st);
	engine_cancel(h->en, 0);
	ck_assert(engine_step(h->en, collect, h, &e) == 0);
	ck_assert(h->res[0].finished[0]);
	ck_assert_int_eq(h->res[0].reason[0], ENGINE_FINISH_ABORT);
	st = engine_stats_json(h->en);
	ck_assert(json_object_object_get_ex(st, "kv_blocks_free", &fr));
	ck_assert_int_eq(json_object_get_int(fr), 64);
	json_object_put(st);
	ck_assert_int_eq(engine_num_live(h->en), 0);
	harness_deinit(h);
	free(h);
}
END_TEST

/* The mix of test_engine_async_equals_sync on one engine; stop[k] is a token that request k
 * (k % 4 == 3) stops at. */
enum { MIX_N = 12 };

static void run_mix(const int32_t stop[MIX_N], result *out)
{
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 256, 8, 48);
	qerr e = { 0 };
	for (int k = 0; k < MIX_N; k++) {
		int32_t ids[128];
		int n = 5 + (k * 53) % 90;
		prompt(300 + k, n, ids);
		sampling_params sp = greedy();
		uint32_t choices = 1;
		if (k % 4 == 1) {                      /* seeded sampling, chained on the device */
			sp.temperature = 0.9;
			sp.top_p = 0.9;
			sp.has_seed = true;
			sp.seed = 100 + (uint64_t)k;
			choices = k == 5 ? 2 : 1;
		} else if (k % 4 == 2) {               /* penalties: the host's counts, no chaining */
			sp.presence_penalty = 0.5;
		} else if (k % 4 == 3) {               /* stops while its next step is in flight */
			sp.n_stop_ids = 1;
			sp.stop_ids[0] = stop[k];
		}
		ck_assert_msg(submit(h, (uint64_t)k, ids, n, sp, 4 + k % 7, choices, &e) == 0, "%s",
			      e.msg);
	}
	run_all(h);
	memcpy(out, h->res, MIX_N * sizeof(*out));
	harness_deinit(h);
	free(h);
}

START_TEST(test_engine_async_equals_sync)
{
	/* the stop tokens: the third greedy token of each stopping request, alone */
	int32_t stop[MIX_N] = { 0 };
	for (int k = 3; k < MIX_N; k += 4) {
		int32_t ids[128];
		int n = 5 + (k * 53) % 90;
		prompt(300 + k, n, ids);
		result r;
		run_alone(ids, n, greedy(), 8, &r);
		ck_assert_int_ge(r.n[0], 3);
		stop[k] = r.ids[0][2];
	}
	result *sync = xcalloc(MIX_N, sizeof(*sync)), *async = xcalloc(MIX_N, sizeof(*async));
	sync_scheduling = true;
	run_mix(stop, sync);
	sync_scheduling = false;
	run_mix(stop, async);
	for (int k = 0; k < MIX_N; k++)
		for (int c = 0; c < (k == 5 ? 2 : 1); c++) {
			ck_assert(sync[k].finished[c] && async[k].finished[c]);
			assert_same(&async[k], c, &sync[k], c);
			if (k % 4 == 3)
				ck_assert_int_eq(sync[k].ids[c][sync[k].n[c] - 1], stop[k]);
		}
	free(sync);
	free(async);
}
END_TEST

START_TEST(test_engine_stop_ids_and_max_tokens)
{
	int32_t ids[20];
	prompt(21, 20, ids);
	result alone;
	run_alone(ids, 20, greedy(), 10, &alone);
	ck_assert_int_eq(alone.reason[0], ENGINE_FINISH_LENGTH);
	ck_assert_int_eq(alone.n[0], 10);
	/* stopping on the 4th greedy token: 4 tokens, reason stop */
	sampling_params sp = greedy();
	sp.n_stop_ids = 1;
	sp.stop_ids[0] = alone.ids[0][3];
	int first = 0;
	while (alone.ids[0][first] != sp.stop_ids[0])
		first++;
	result r;
	run_alone(ids, 20, sp, 10, &r);
	ck_assert_int_eq(r.reason[0], ENGINE_FINISH_STOP);
	ck_assert_int_eq(r.n[0], first + 1);
	/* min_tokens masks the stop id until 6 tokens exist */
	sp.min_tokens = 6;
	run_alone(ids, 20, sp, 10, &r);
	ck_assert_int_ge(r.n[0], 6);
}
END_TEST

START_TEST(test_engine_submit_refusals)
{
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 8, 8, 512);       /* 8 blocks = 128 positions */
	qerr e = { 0 };
	int32_t ids[200];
	prompt(1, 200, ids);
	ck_assert_int_eq(submit(h, 0, ids, 100, greedy(), 4000, 1, &e), -QERR_LIMIT);
	ck_assert_msg(strstr(e.msg, "maximum context length"), "%s", e.msg);
	ck_assert_int_eq(submit(h, 0, ids, 120, greedy(), 20, 1, &e), -QERR_LIMIT);
	ck_assert_msg(strstr(e.msg, "KV blocks"), "%s", e.msg);
	int32_t bad[3] = { 1, 999999, 2 };
	ck_assert_int_eq(submit(h, 0, bad, 3, greedy(), 2, 1, &e), -QERR_INVALID);
	ck_assert_msg(strstr(e.msg, "999999"), "%s", e.msg);
	int32_t pad[3] = { 1, mc.image_token_id, 2 };
	ck_assert_int_eq(submit(h, 0, pad, 3, greedy(), 2, 1, &e), -QERR_INVALID);
	ck_assert_msg(strstr(e.msg, "image pad"), "%s", e.msg);
	sampling_params sp = greedy();
	sp.top_p = 0;
	ck_assert_int_eq(submit(h, 0, ids, 10, sp, 2, 1, &e), -QERR_INVALID);
	ck_assert_msg(strstr(e.msg, "top_p"), "%s", e.msg);
	ck_assert_int_eq(submit(h, 0, ids, 0, greedy(), 2, 1, &e), -QERR_INVALID);
	ck_assert_int_eq(submit(h, 0, ids, 10, greedy(), 0, 1, &e), -QERR_INVALID);
	ck_assert_int_eq(engine_num_live(h->en), 0);
	harness_deinit(h);
	free(h);
}
END_TEST

START_TEST(test_engine_busy_when_queue_full)
{
	qerr e = { 0 };
	backend *b = NULL;
	engine *en = NULL;
	backend_opts bo = { .block_size = 16, .n_blocks = 64, .n_threads = 1 };
	ck_assert(backend_cpu_new(&mc, &w, &bo, &b, &e) == 0);
	engine_opts eo = { .max_num_seqs = 4, .max_num_batched_tokens = 64, .max_model_len = 512,
			   .block_size = 16, .n_blocks = 64, .enable_prefix_caching = true,
			   .max_waiting = 3 };
	ck_assert(engine_new(b, &mc, &gc, &eo, &en, &e) == 0);
	int32_t ids[10];
	prompt(2, 10, ids);
	int busy = 0;
	for (int k = 0; k < 5; k++) {
		engine_request r = { .id = (uint64_t)k, .n_ids = 10, .sp = greedy(), .max_tokens = 2, .n = 1 };
		r.ids = xmalloc(sizeof(ids));
		memcpy(r.ids, ids, sizeof(ids));
		int rc = engine_submit(en, &r, &e);
		ck_assert(rc == 0 || rc == ENGINE_BUSY);
		busy += rc == ENGINE_BUSY;
		free(r.ids);
	}
	ck_assert_int_eq(busy, 2);
	engine_free(en);
	backend_free(b);
}
END_TEST

START_TEST(test_engine_guided_json_is_valid)
{
	/* random weights and any budget: the output is one JSON object (ignore_eos keeps the
	 * budget in play: the object must be closed before max_tokens) */
	int32_t ids[20];
	prompt(31, 20, ids);
	harness *h = xcalloc(1, sizeof(*h));
	harness_init(h, 512, 8, 512);
	qerr e = { 0 };
	const int budgets[] = { 2, 3, 7, 16, 40 };
	uint64_t id = 0;
	for (size_t b = 0; b < sizeof(budgets) / sizeof(budgets[0]); b++)
		for (int seeded = 0; seeded < 2; seeded++) {
			sampling_params sp = greedy();
			sp.guided = SAMPLER_GUIDED_JSON;
			sp.ignore_eos = b % 2;
			if (seeded) {
				sp.temperature = 1.0;
				sp.has_seed = true;
				sp.seed = 100 + b;
			}
			ck_assert_msg(submit(h, id++, ids, 20, sp, budgets[b], 1, &e) == 0, "%s", e.msg);
		}
	run_all(h);
	for (uint64_t k = 0; k < id; k++) {
		size_t len = 0;
		char *text = tok_decode(tok, h->res[k].ids[0], (size_t)h->res[k].n[0], true, &len);
		json_object *o = json_tokener_parse(text);
		ck_assert_msg(o && json_object_is_type(o, json_type_object),
			      "request %llu (%d tokens): not a JSON object: %s", (unsigned long long)k,
			      h->res[k].n[0], text);
		json_object_put(o);
		free(text);
	}
	/* without a tokenizer the engine refuses guided requests */
	harness_deinit(h);
	free(h);
	backend *b = NULL;
	engine *en = NULL;
	backend_opts bo = { .block_size = 16, .n_blocks = 32, .n_threads = 1 };
	ck_assert(backend_cpu_new(&mc, &w, &bo, &b, &e) == 0);
	engine_opts eo = { .max_num_seqs = 4, .max_num_batched_tokens = 64, .max_model_len = 256,
			   .block_size = 16, .n_blocks = 32 };
	ck_assert(engine_new(b, &mc, &gc, &eo, &en, &e) == 0);
	engine_request r = { .id = 1, .n_ids = 20, .sp = greedy(), .max_tokens = 4, .n = 1 };
	r.sp.guided = SAMPLER_GUIDED_JSON;
	r.ids = xmalloc(sizeof(ids));
	memcpy(r.ids, ids, sizeof(ids));
	ck_assert_int_eq(engine_submit(en, &r, &e), -QERR_UNSUPPORTED);
	ck_assert_msg(strstr(e.msg, "guided"), "%s", e.msg);
	free(r.ids);
	engine_free(en);
	backend_free(b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("tiny");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_engine_batch_equals_alone);
	tcase_add_test(tc, test_engine_preemption_same_output);
	tcase_add_test(tc, test_engine_seed_independent_of_batch);
	tcase_add_test(tc, test_engine_n_choices_follow_seeds);
	tcase_add_test(tc, test_engine_prefix_cache_hit);
	tcase_add_test(tc, test_engine_encoder_cache_hit);
	tcase_add_test(tc, test_engine_cancel_frees_blocks);
	tcase_add_test(tc, test_engine_stop_ids_and_max_tokens);
	tcase_add_test(tc, test_engine_async_equals_sync);
	tcase_add_test(tc, test_engine_submit_refusals);
	tcase_add_test(tc, test_engine_busy_when_queue_full);
	tcase_add_test(tc, test_engine_guided_json_is_valid);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(suite());
}
