/*
 * generate: the offline path for one request (see generate.h for the pipeline).
 *
 * Stopping, as vLLM does it:
 *   - an eos id of generation_config (unless ignore_eos) or a stop_token_id ends with "stop";
 *     its text is left out of the content unless include_stop_str_in_output; before min_tokens
 *     tokens exist those ids are masked out of sampling (vLLM's min_tokens processor), so they
 *     cannot end generation early;
 *   - a stop string (detok) ends with "stop", the text cut before it;
 *   - max_tokens, or the end of the context, ends with "length".
 * The ending token is counted in usage.completion_tokens and gets a logprobs entry.
 *
 * Sampling and batching are the engine's (engine.h, sampler.h): the request runs on an engine of
 * its own whose KV pool holds every choice at once, so n > 1 choices decode together and share
 * the prompt through the prefix cache. Parameters the request leaves out take
 * generation_config's values, as vLLM does; greedy when the temperature is 0, or when the request
 * gives none and generation_config has do_sample false. Logprobs come from the raw distribution
 * (log_softmax of the unmodified logits).
 */
#include "generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "backend.h"
#include "detok.h"
#include "engine.h"
#include "img_preprocess.h"
#include "prompt.h"
#include "rng.h"
#include "sampler.h"
#include "strbuf.h"
#include "utf8.h"

#define BLOCK_SIZE 16

int generate_model_load(const char *dir, int n_threads, generate_model **out, qerr *e)
{
	*out = NULL;
	generate_model *m = xcalloc(1, sizeof(*m));
	m->dir = xstrdup(dir);
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	size_t start = len;
	while (start > 0 && dir[start - 1] != '/')
		start--;
	m->name = xasprintf("%.*s", (int)(len - start), dir + start);
	m->n_threads = n_threads;
	int rc = model_config_load_dir(dir, &m->mc, &m->gc, &m->pc, e);
	if (!rc)
		rc = chat_template_check(dir, e);
	if (!rc)
		rc = model_weights_open(dir, &m->mc, &m->w, e);
	bool have_w = !rc;
	if (!rc) {
		char *path = xasprintf("%s/tokenizer.json", dir);
		rc = tok_load(path, &m->tok, e);
		free(path);
	}
	if (rc) {
		if (have_w)
			model_weights_deinit(&m->w);
		free(m->dir);
		free(m->name);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void generate_model_free(generate_model *m)
{
	if (!m)
		return;
	model_weights_deinit(&m->w);
	tok_free(m->tok);
	free(m->dir);
	free(m->name);
	free(m);
}

/* ---- logprobs ---- */

/* The token as logprobs shows it: "token_id:N", or its bytes as lossy UTF-8 (+ the bytes). */
static void add_token(json_object *o, const tokenizer *t, int32_t id, bool as_ids)
{
	size_t len = 0;
	const char *b = tok_id_bytes(t, id, &len);
	if (as_ids) {
		char s[32];
		snprintf(s, sizeof(s), "token_id:%d", id);
		json_object_object_add(o, "token", json_object_new_string(s));
	} else {
		size_t ol;
		char *text = utf8_lossy(b ? b : "", b ? len : 0, &ol);
		json_object_object_add(o, "token", json_object_new_string_len(text, (int)ol));
		free(text);
	}
}

static void add_bytes(json_object *o, const tokenizer *t, int32_t id)
{
	size_t len = 0;
	const char *b = tok_id_bytes(t, id, &len);
	json_object *a = json_object_new_array();
	for (size_t i = 0; b && i < len; i++)
		json_object_array_add(a, json_object_new_int((unsigned char)b[i]));
	json_object_object_add(o, "bytes", a);
}

/* One logprobs.content entry from the sampler's logprobs of a token. */
static json_object *logprob_entry(const tokenizer *t, const sampler_logprobs *lp, bool as_ids)
{
	json_object *o = json_object_new_object();
	add_token(o, t, lp->id, as_ids);
	json_object_object_add(o, "logprob", json_object_new_double(lp->logprob));
	add_bytes(o, t, lp->id);
	json_object *arr = json_object_new_array();
	for (int i = 0; i < lp->n_top; i++) {
		json_object *a = json_object_new_object();
		add_token(a, t, lp->top_ids[i], as_ids);
		json_object_object_add(a, "logprob", json_object_new_double(lp->top_logprobs[i]));
		add_bytes(a, t, lp->top_ids[i]);
		json_object_array_add(arr, a);
	}
	json_object_object_add(o, "top_logprobs", arr);
	return o;
}

/* ---- the response ---- */

static void completion_id(char out[42])
{
	uint8_t r[16];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)getpid();
		for (int i = 0; i < 16; i += 8) {
			uint64_t v = rng_mix64(x += 0x9e3779b97f4a7c15ull);
			memcpy(r + i, &v, 8);
		}
	}
	memcpy(out, "chatcmpl-", 9);
	for (int i = 0; i < 16; i++)
		snprintf(out + 9 + 2 * i, 3, "%02x", r[i]);
}

/* ---- the run: one request through an engine of its own ---- */

typedef struct choice {
	detok *d;                      /* owned */
	strbuf text;                   /* released text */
	json_object *lp;               /* owned: logprobs.content, or NULL */
	int64_t n_out;                 /* tokens counted in usage */
	bool done;                     /* finished (engine) or stopped by a stop string */
	const char *finish;            /* "stop" or "length" */
} choice;

typedef struct run {
	generate_model *m;
	const chat_request *r;
	engine *en;
	choice *ch;                    /* owned: r->n */
	uint32_t n_done;
	int64_t prompt_tokens, cached_tokens;
	int error;
	char message[QERR_MSG_MAX];
} run;

static bool is_stop_token(const run *u, int32_t id)
{
	const chat_request *r = u->r;
	if (!r->ignore_eos)
		for (int i = 0; i < u->m->gc.n_eos; i++)
			if (u->m->gc.eos_token_ids[i] == id)
				return true;
	for (size_t i = 0; i < r->n_stop_token_ids; i++)
		if (r->stop_token_ids[i] == id)
			return true;
	return false;
}

/* engine_emit_fn: detokenize, match stop strings, collect logprobs. */
static void on_output(void *ctx, const engine_output *o)
{
	run *u = ctx;
	choice *c = &u->ch[o->index];
	if (o->error && !u->error) {
		u->error = o->error;
		snprintf(u->message, sizeof(u->message), "%s", o->message ? o->message : "backend failure");
	}
	if (o->finished) {
		u->prompt_tokens = o->prompt_tokens;
		if (o->index == 0)
			u->cached_tokens = o->cached_tokens;
	}
	if (c->done)
		return;
	for (int i = 0; i < o->n; i++) {
		int32_t id = o->ids[i];
		if (c->lp && o->lp)
			json_object_array_add(c->lp, logprob_entry(u->m->tok, &o->lp[i],
								   u->r->return_tokens_as_token_ids));
		c->n_out++;
		bool stop_id = o->finished && o->reason == ENGINE_FINISH_STOP && is_stop_token(u, id);
		if ((!stop_id || u->r->include_stop_str_in_output) && detok_push(c->d, &id, 1, &c->text)) {
			c->done = true;
			c->finish = "stop";
			break;
		}
	}
	if (!c->done && o->finished) {
		c->done = true;
		c->finish = o->reason == ENGINE_FINISH_STOP ? "stop" : "length";
	}
	if (c->done && ++u->n_done == u->r->n)
		engine_cancel(u->en, 0);   /* stop strings may end every choice before the engine */
}

static json_object *response(const run *u)
{
	const generate_model *m = u->m;
	const chat_request *r = u->r;
	char id[42];
	completion_id(id);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "object", json_object_new_string("chat.completion"));
	json_object_object_add(o, "created", json_object_new_int64((int64_t)time(NULL)));
	json_object_object_add(o, "model", json_object_new_string(r->model ? r->model : m->name));
	json_object *choices = json_object_new_array();
	int64_t n_out = 0;
	for (uint32_t i = 0; i < r->n; i++) {
		choice *c = &u->ch[i];
		detok_finish(c->d, &c->text);
		json_object *msg = json_object_new_object();
		json_object_object_add(msg, "role", json_object_new_string("assistant"));
		json_object_object_add(msg, "content", json_object_new_string_len(strbuf_str(&c->text),
										  (int)c->text.len));
		json_object *ch = json_object_new_object();
		json_object_object_add(ch, "index", json_object_new_int((int)i));
		json_object_object_add(ch, "message", msg);
		if (c->lp) {
			json_object *lp = json_object_new_object();
			json_object_object_add(lp, "content", c->lp);
			c->lp = NULL;
			json_object_object_add(ch, "logprobs", lp);
		} else {
			json_object_object_add(ch, "logprobs", NULL);
		}
		json_object_object_add(ch, "finish_reason", json_object_new_string(c->finish ? c->finish
												: "length"));
		json_object_array_add(choices, ch);
		n_out += c->n_out;
	}
	json_object_object_add(o, "choices", choices);
	json_object *us = json_object_new_object();
	json_object_object_add(us, "prompt_tokens", json_object_new_int64(u->prompt_tokens));
	json_object_object_add(us, "completion_tokens", json_object_new_int64(n_out));
	json_object_object_add(us, "total_tokens", json_object_new_int64(u->prompt_tokens + n_out));
	json_object *det = json_object_new_object();
	json_object_object_add(det, "cached_tokens", json_object_new_int64(u->cached_tokens));
	json_object_object_add(us, "prompt_tokens_details", det);
	json_object_object_add(o, "usage", us);
	return o;
}

/* The request's sampling parameters, generation_config filling what it leaves out (vLLM). */
static sampling_params request_params(const generate_model *m, const chat_request *r)
{
	const generation_config *gc = &m->gc;
	sampling_params sp = { 0 };
	bool greedy = r->has_temperature ? r->temperature == 0 : (!gc->do_sample || gc->temperature == 0);
	sp.temperature = greedy ? 0 : (r->has_temperature ? r->temperature : gc->temperature);
	sp.top_p = r->has_top_p ? r->top_p : gc->top_p;
	sp.top_k = (int32_t)(r->has_top_k ? r->top_k : gc->top_k);
	sp.min_p = r->has_min_p ? r->min_p : gc->min_p;
	sp.repetition_penalty = r->has_repetition_penalty ? r->repetition_penalty : gc->repetition_penalty;
	sp.presence_penalty = r->presence_penalty;
	sp.frequency_penalty = r->frequency_penalty;
	sp.has_seed = r->has_seed;
	sp.seed = r->seed;
	sp.min_tokens = (int32_t)r->min_tokens;
	sp.ignore_eos = r->ignore_eos;
	sp.n_stop_ids = (int32_t)r->n_stop_token_ids;
	memcpy(sp.stop_ids, r->stop_token_ids, r->n_stop_token_ids * sizeof(int32_t));
	sp.logprobs = r->logprobs ? r->top_logprobs : -1;
	return sp;
}

int generate_run(generate_model *m, const chat_request *r, json_object **out, qerr *e)
{
	*out = NULL;
	const model_config *mc = &m->mc;
	int V = mc->text.vocab_size;
	for (size_t i = 0; i < r->n_stop_token_ids; i++)
		if (r->stop_token_ids[i] >= V)
			return qerr_set(e, QERR_INVALID, "request: stop_token_ids[%zu]: %d is not below the "
					"vocabulary size %d", i, r->stop_token_ids[i], V);
	prompt p;
	int rc = prompt_build_chat(m->tok, mc, &m->pc, r, &p, e);
	if (!rc && (int64_t)p.ids.n >= mc->text.max_position_embeddings)
		rc = qerr_set(e, QERR_LIMIT, "request: the prompt has %zu tokens, the context holds %lld",
			      p.ids.n, (long long)mc->text.max_position_embeddings);
	if (rc) {
		prompt_deinit(&p);
		return rc;
	}
	int64_t n = (int64_t)p.ids.n, room = mc->text.max_position_embeddings - n;
	int64_t max_tokens = r->max_tokens >= 0 ? r->max_tokens
			     : m->gc.max_new_tokens > 0 ? m->gc.max_new_tokens : GENERATE_DEFAULT_MAX_TOKENS;
	if (max_tokens > room)
		max_tokens = room;
	uint32_t n_choices = r->n ? r->n : 1;
	int64_t per = (n + max_tokens + BLOCK_SIZE - 1) / BLOCK_SIZE, blocks = per * n_choices;
	if (max_tokens > INT32_MAX || blocks > INT32_MAX / 2) {
		prompt_deinit(&p);
		return qerr_set(e, QERR_LIMIT, "request: %lld positions × %u choices are too many",
				(long long)(n + max_tokens), n_choices);
	}

	/* an engine of exactly this request's size: every choice fits at once */
	backend *b = NULL;
	run u = { .m = m, .r = r };
	u.ch = xcalloc(n_choices, sizeof(*u.ch));
	detok_opts dop = { .skip_special_tokens = r->skip_special_tokens,
			   .include_stop_str_in_output = r->include_stop_str_in_output,
			   .stop = r->stop, .n_stop = r->n_stop, .min_tokens = r->min_tokens };
	for (uint32_t i = 0; !rc && i < n_choices; i++) {
		rc = detok_new(m->tok, &dop, &u.ch[i].d, e);
		u.ch[i].lp = r->logprobs ? json_object_new_array() : NULL;
	}
	int64_t budget = n > 8192 ? n : 8192;
	backend_opts bo = { .block_size = BLOCK_SIZE, .n_blocks = (int)blocks, .n_threads = m->n_threads,
			    .max_num_batched_tokens = (int)budget, .max_num_seqs = (int)n_choices,
			    .max_model_len = (int)(blocks * BLOCK_SIZE), .gpu_memory_utilization = 0.9 };
	if (mc->has_vision)
		bo.max_image_patches = (int)(budget * mc->vision.spatial_merge_size *
					     mc->vision.spatial_merge_size);
	if (!rc)
		rc = m->cuda ? backend_cuda_new(mc, &m->w, &bo, &b, e) :
			       backend_cpu_new(mc, &m->w, &bo, &b, e);
	engine_opts eo = { .max_num_seqs = (int)n_choices, .max_num_batched_tokens = (int)budget,
			   .max_model_len = mc->text.max_position_embeddings, .block_size = BLOCK_SIZE,
			   .n_blocks = (int)blocks, .enable_prefix_caching = true,
			   .encoder_cache_tokens = budget };
	if (!rc)
		rc = engine_new(b, mc, &m->gc, &eo, &u.en, e);
	if (!rc) {
		engine_request er = { .id = 0, .n_ids = n, .sp = request_params(m, r),
				      .max_tokens = (int32_t)max_tokens, .n = n_choices };
		er.ids = p.ids.v;
		p.ids.v = NULL;
		p.ids.n = 0;
		er.images = xcalloc(p.n_images + 1, sizeof(sched_image));
		for (size_t i = 0; !rc && i < p.n_images; i++) {
			img_patches ip;
			rc = prompt_image_patches(&p.images[i], &m->pc, &ip, e);
			if (rc)
				break;
			er.images[i] = (sched_image){ .start = p.images[i].start, .n_tokens = ip.n_tokens,
						      .grid_t = ip.grid_t, .grid_h = ip.grid_h,
						      .grid_w = ip.grid_w, .pixel_values = ip.pixel_values };
			memcpy(er.images[i].hash, ip.hash, 32);
			er.n_images++;
		}
		if (!rc)
			rc = engine_submit(u.en, &er, e);
		if (rc) {
			free(er.ids);
			for (int i = 0; i < er.n_images; i++)
				free(er.images[i].pixel_values);
			free(er.images);
		}
	}
	while (!rc && engine_num_live(u.en) > 0)
		rc = engine_step(u.en, on_output, &u, e);
	if (!rc && u.error)
		rc = qerr_set(e, u.error, "%s", u.message);
	if (!rc)
		*out = response(&u);
	for (uint32_t i = 0; i < n_choices; i++) {
		detok_free(u.ch[i].d);
		strbuf_deinit(&u.ch[i].text);
		json_object_put(u.ch[i].lp);
	}
	free(u.ch);
	engine_free(u.en);
	backend_free(b);
	prompt_deinit(&p);
	return rc;
}
