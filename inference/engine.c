/*
 * engine: requests in, tokens out, one ragged batch per step (see engine.h for the flow).
 *
 * State and who touches it:
 *
 *   inbox (mu)      new requests and cancel ids, pushed by any thread, taken whole at the start
 *                   of each step by the engine thread
 *   live list       every request the engine thread has taken and not yet finished, with its
 *                   n sequences (one per choice) inside the scheduler
 *   metrics (smu)   counters and histograms, written by the engine thread under smu, read by
 *                   engine_stats_json under smu; gauges are refreshed after every step
 *
 * One step's batch, for items a (prefill chunk of 5 with an image), b and c (decodes):
 *
 *   backend_seq  a: ids[5] pos(3,5) vis[5]→encoder rows  n_cached ca  table  logits 0|1 row
 *                b: ids[1] pos(3,1)                       n_cached cb  table  1 row
 *                c: …
 *   logits (rows of the items that reached their end, in item order, V floats each)
 *
 * Positions: prompt positions are the MRoPE positions computed at submit; a position p past
 * the prompt is p + rope_delta on all three axes.
 */
#include "engine.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "encoder_cache.h"
#include "json_guide.h"
#include "kv_blocks.h"
#include "log.h"
#include "metrics.h"
#include "mrope.h"

#define ENGINE_MAX_N 128

typedef struct ereq {
	sched_req r;
	sched_seq *seqs;               /* owned: r.n */
	json_guide *guides;            /* owned: r.n when guided, else NULL */
	struct ereq *prev, *next;      /* the live list */
	int n_inflight;                /* items of the launched step that are its sequences */
	bool dead;                     /* finished and off the live list; freed when n_inflight is 0 */
} ereq;

/* The request a sched_req is the first member of. */
static ereq *req_of(sched_req *r)
{
	return (ereq *)r;
}

typedef struct cancel_list {
	uint64_t *ids;
	int n, cap;
} cancel_list;

struct engine {
	backend *b;                    /* borrowed */
	const model_config *mc;        /* borrowed */
	const generation_config *gc;   /* borrowed */
	engine_opts o;
	int V;
	int64_t row_floats;            /* encoder output floats per image token */
	int64_t encoder_budget;
	kv_blocks *kb;                 /* owned */
	encoder_cache *ec;             /* owned; NULL without vision */
	sched *s;                      /* owned */
	sampler_scratch *sc;           /* owned */
	/* guided decoding: every token's bytes (opts.tok), and the token of each single byte */
	const char **tok_bytes;        /* owned array of borrowed pointers: V */
	uint16_t *tok_len;             /* owned: V */
	uint8_t *tok_special;          /* owned: V (special or added tokens: never in JSON) */
	int32_t byte_token[256];       /* -1 where no token is that one byte */
	size_t max_tok_len;

	/* step scratch (owned, grown as needed) */
	backend_seq *bseqs;
	int32_t *pos, *logit_rows;
	const float **vis;
	float *logits;
	size_t cap_seqs, cap_tok, cap_logits;
	backend_sample_row *srows;     /* device sampling (backend_step_sample): a row per logit row */
	int32_t *sids;
	sampler_logprobs *slps;
	size_t cap_srows;

	ereq *live_head, *live_tail;   /* engine thread */
	int n_live;

	pthread_mutex_t mu;            /* inbox */
	pthread_cond_t cv;
	ereq *inbox_head, *inbox_tail;
	int n_inbox;
	cancel_list cancels;
	bool cancel_all, woken;
	int n_waiting_seen;            /* waiting sequences after the last step (for BUSY) */
	int n_live_seen;
	double t_last_step;            /* when the last engine_step ended (debug timings) */

	/* async scheduling: the launched step whose answers are not taken yet (fl_n items, a copy
	 * of its plan's; fl_active), and the buffer the next launch's items are copied into */
	sched_item *fl_items, *fl_next;
	size_t cap_fl;
	int fl_n;
	bool fl_active;

	pthread_mutex_t smu;           /* metrics */
	metrics m;
	metrics_gauges g;
	kv_blocks_stats kbs;
	encoder_cache_stats ecs;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* encoder_cache_drop_fn: rows the backend may hold a copy of are being freed. */
static void forget_rows(void *backend_, const float *rows)
{
	backend_forget_rows(backend_, rows);
}

int engine_new(backend *b, const model_config *mc, const generation_config *gc,
	       const engine_opts *o, engine **out, qerr *e)
{
	*out = NULL;
	if (o->max_num_seqs < 1 || o->max_num_batched_tokens < 1 || o->block_size < 1 ||
	    o->n_blocks < 1 || o->max_model_len < 2 || o->max_waiting < 0)
		return qerr_set(e, QERR_INVALID, "engine: max_num_seqs %d, max_num_batched_tokens %d, "
				"block_size %d, blocks %d, max_model_len %lld, max_waiting %d: each must "
				"be positive (max_model_len at least 2)", o->max_num_seqs,
				o->max_num_batched_tokens, o->block_size, o->n_blocks,
				(long long)o->max_model_len, o->max_waiting);
	if (o->max_model_len > mc->text.max_position_embeddings)
		return qerr_set(e, QERR_INVALID, "engine: max_model_len %lld exceeds the model's "
				"max_position_embeddings %lld", (long long)o->max_model_len,
				(long long)mc->text.max_position_embeddings);
	engine *en = xcalloc(1, sizeof(*en));
	en->b = b;
	en->mc = mc;
	en->gc = gc;
	en->o = *o;
	en->V = mc->text.vocab_size;
	en->row_floats = mc->has_vision ? (int64_t)(1 + mc->vision.n_deepstack) * mc->text.hidden_size : 0;
	en->encoder_budget = o->max_num_batched_tokens;
	int64_t cache_tokens = o->encoder_cache_tokens > en->encoder_budget ? o->encoder_cache_tokens
									     : en->encoder_budget;
	en->kb = kv_blocks_new(o->n_blocks, o->block_size, o->enable_prefix_caching);
	if (mc->has_vision) {
		en->ec = encoder_cache_new((size_t)cache_tokens * (size_t)en->row_floats);
		encoder_cache_set_drop(en->ec, forget_rows, b);
	}
	sched_opts so = { .max_num_seqs = o->max_num_seqs,
			  .max_num_batched_tokens = o->max_num_batched_tokens,
			  .encoder_budget = en->encoder_budget, .row_floats = en->row_floats };
	en->s = sched_new(&so, en->kb, en->ec);
	en->sc = sampler_scratch_new(en->V);
	for (int i = 0; i < 256; i++)
		en->byte_token[i] = -1;
	if (o->tok) {
		en->tok_bytes = xcalloc((size_t)en->V, sizeof(*en->tok_bytes));
		en->tok_len = xcalloc((size_t)en->V, sizeof(*en->tok_len));
		en->tok_special = xcalloc((size_t)en->V, 1);
		for (int v = 0; v < en->V; v++) {
			size_t len = 0;
			const char *tb = tok_id_bytes(o->tok, v, &len);
			en->tok_special[v] = !tb || tok_is_special(o->tok, v) || len > UINT16_MAX;
			en->tok_bytes[v] = tb;
			en->tok_len[v] = (uint16_t)(en->tok_special[v] ? 0 : len);
			if (!en->tok_special[v] && len == 1 && en->byte_token[(uint8_t)tb[0]] < 0)
				en->byte_token[(uint8_t)tb[0]] = v;
			if (!en->tok_special[v] && len > en->max_tok_len)
				en->max_tok_len = len;
		}
	}
	pthread_mutex_init(&en->mu, NULL);
	pthread_cond_init(&en->cv, NULL);
	pthread_mutex_init(&en->smu, NULL);
	metrics_init(&en->m, o->max_model_len);
	en->g.kv_blocks_total = o->n_blocks;
	en->g.kv_blocks_free = o->n_blocks;
	*out = en;
	return 0;
}

static void ereq_free(ereq *q)
{
	if (!q)
		return;
	for (uint32_t i = 0; i < q->r.n && q->seqs; i++) {
		free(q->seqs[i].tokens);
		kv_seq_blocks_deinit(&q->seqs[i].blocks);
		sampler_state_deinit(&q->seqs[i].ss);
	}
	free(q->seqs);
	free(q->guides);
	free(q->r.ids);
	free(q->r.pos);
	for (int i = 0; i < q->r.n_images; i++)
		free(q->r.images[i].pixel_values);
	free(q->r.images);
	free(q->r.kv_images);
	free(q);
}

static void fl_release(const sched_item *items, int n);

void engine_free(engine *en)
{
	if (!en)
		return;
	if (en->fl_active) {           /* its answers are dropped; the requests it names go */
		qerr e = { 0 };
		backend_step_sample_wait(en->b, en->sids, en->slps, &e);
		fl_release(en->fl_items, en->fl_n);
	}
	for (ereq *q = en->live_head, *nx; q; q = nx) {
		nx = q->next;
		for (uint32_t i = 0; i < q->r.n; i++)
			if (q->seqs[i].state != SCHED_DONE)
				sched_remove(en->s, &q->seqs[i]);
		ereq_free(q);
	}
	for (ereq *q = en->inbox_head, *nx; q; q = nx) {
		nx = q->next;
		ereq_free(q);
	}
	sched_free(en->s);
	kv_blocks_free(en->kb);
	encoder_cache_free(en->ec);
	sampler_scratch_free(en->sc);
	free(en->tok_bytes);
	free(en->tok_len);
	free(en->tok_special);
	free(en->bseqs);
	free(en->pos);
	free(en->logit_rows);
	free(en->vis);
	free(en->logits);
	free(en->srows);
	free(en->sids);
	free(en->slps);
	free(en->fl_items);
	free(en->fl_next);
	free(en->cancels.ids);
	pthread_mutex_destroy(&en->mu);
	pthread_cond_destroy(&en->cv);
	pthread_mutex_destroy(&en->smu);
	free(en);
}

/* ---- submit ---- */

static int check_images(const engine *en, const engine_request *r, qerr *e)
{
	const model_config *mc = en->mc;
	if (r->n_images && !mc->has_vision)
		return qerr_set(e, QERR_UNSUPPORTED, "request: images given to a model without vision");
	int m = mc->has_vision ? mc->vision.spatial_merge_size : 1;
	int64_t pads = 0, in_runs = 0, prev_end = 0;
	for (int64_t i = 0; i < r->n_ids; i++)
		pads += r->ids[i] == mc->image_token_id;
	for (int i = 0; i < r->n_images; i++) {
		const sched_image *im = &r->images[i];
		if (im->grid_t < 1 || im->grid_h < 1 || im->grid_w < 1 || im->grid_h % m || im->grid_w % m)
			return qerr_set(e, QERR_INVALID, "request: images[%d]: grid (%d, %d, %d) is not a "
					"positive grid of whole %dx%d merge windows", i, im->grid_t,
					im->grid_h, im->grid_w, m, m);
		int64_t nt = (int64_t)im->grid_t * im->grid_h * im->grid_w / ((int64_t)m * m);
		if (im->n_tokens != nt)
			return qerr_set(e, QERR_INVALID, "request: images[%d]: %lld tokens, its grid makes "
					"%lld", i, (long long)im->n_tokens, (long long)nt);
		if (im->start < prev_end || im->start + nt > r->n_ids)
			return qerr_set(e, QERR_INVALID, "request: images[%d]: tokens [%lld, %lld) are out "
					"of order or outside the prompt", i, (long long)im->start,
					(long long)(im->start + nt));
		for (int64_t p = im->start; p < im->start + nt; p++)
			if (r->ids[p] != mc->image_token_id)
				return qerr_set(e, QERR_INVALID, "request: images[%d]: token %lld is %d, not "
						"the image pad %d", i, (long long)p, r->ids[p],
						mc->image_token_id);
		if (nt > en->encoder_budget)
			return qerr_set(e, QERR_LIMIT, "request: images[%d]: %lld image tokens exceed the "
					"encoder budget of %lld (--max-num-batched-tokens)", i,
					(long long)nt, (long long)en->encoder_budget);
		if (!im->pixel_values)
			return qerr_set(e, QERR_INVALID, "request: images[%d]: no pixels", i);
		in_runs += nt;
		prev_end = im->start + nt;
	}
	if (pads != in_runs)
		return qerr_set(e, QERR_INVALID, "request: %lld image pad tokens, the images account for "
				"%lld", (long long)pads, (long long)in_runs);
	return 0;
}

static int check_request(engine *en, engine_request *r, qerr *e)
{
	if (r->n_ids < 1)
		return qerr_set(e, QERR_INVALID, "request: the prompt is empty");
	for (int64_t i = 0; i < r->n_ids; i++)
		if (r->ids[i] < 0 || r->ids[i] >= en->V)
			return qerr_set(e, QERR_INVALID, "request: token %lld: id %d is outside the "
					"vocabulary (%d)", (long long)i, r->ids[i], en->V);
	if (r->max_tokens < 1)
		return qerr_set(e, QERR_INVALID, "request: max_tokens %d must be at least 1", r->max_tokens);
	if (r->n < 1 || r->n > ENGINE_MAX_N)
		return qerr_set(e, QERR_INVALID, "request: n %u must be 1..%d", r->n, ENGINE_MAX_N);
	if (r->n_ids + r->max_tokens > en->o.max_model_len)
		return qerr_set(e, QERR_LIMIT, "request: this model's maximum context length is %lld "
				"tokens; the prompt has %lld and max_tokens asks for %d more",
				(long long)en->o.max_model_len, (long long)r->n_ids, r->max_tokens);
	int64_t bs = en->o.block_size, blocks = (r->n_ids + r->max_tokens + bs - 1) / bs;
	if (blocks > en->o.n_blocks)
		return qerr_set(e, QERR_LIMIT, "request: %lld positions need %lld KV blocks, the pool "
				"holds %d", (long long)(r->n_ids + r->max_tokens), (long long)blocks,
				en->o.n_blocks);
	r->sp.n_eos = 0;
	for (int i = 0; i < en->gc->n_eos && i < SAMPLER_MAX_EOS; i++)
		if (en->gc->eos_token_ids[i] >= 0 && en->gc->eos_token_ids[i] < en->V)
			r->sp.eos_ids[r->sp.n_eos++] = en->gc->eos_token_ids[i];
	int rc = sampling_params_check(&r->sp, en->V, e);
	if (!rc && r->sp.guided && !en->tok_bytes)
		rc = qerr_set(e, QERR_UNSUPPORTED, "request: guided decoding (response_format) needs the "
			      "model's tokenizer, which this engine was not given");
	if (!rc)
		rc = check_images(en, r, e);
	return rc;
}

int engine_submit(engine *en, engine_request *r, qerr *e)
{
	int rc = check_request(en, r, e);
	if (rc)
		return rc;
	int32_t *pos = xmalloc(3 * (size_t)r->n_ids * sizeof(int32_t));
	int32_t(*grids)[3] = xcalloc((size_t)r->n_images + 1, sizeof(*grids));
	for (int i = 0; i < r->n_images; i++) {
		grids[i][0] = r->images[i].grid_t;
		grids[i][1] = r->images[i].grid_h;
		grids[i][2] = r->images[i].grid_w;
	}
	int64_t delta = 0;
	rc = mrope_positions(en->mc, r->ids, (size_t)r->n_ids, (const int32_t(*)[3])grids,
			     (size_t)r->n_images, pos, &delta, e);
	free(grids);
	if (rc) {
		free(pos);
		return qerr_prefix(e, "request");
	}

	pthread_mutex_lock(&en->mu);
	bool busy = en->o.max_waiting > 0 && en->n_inbox + en->n_waiting_seen >= en->o.max_waiting;
	pthread_mutex_unlock(&en->mu);
	if (busy) {
		free(pos);
		return ENGINE_BUSY;
	}

	ereq *q = xcalloc(1, sizeof(*q));
	sched_req *sr = &q->r;
	sr->id = r->id;
	sr->owner = r->owner;
	sr->ids = r->ids;
	sr->n_prompt = r->n_ids;
	sr->pos = pos;
	sr->rope_delta = delta;
	sr->images = r->images;
	sr->n_images = r->n_images;
	sr->kv_images = xcalloc((size_t)r->n_images + 1, sizeof(kv_image));
	for (int i = 0; i < r->n_images; i++) {
		sr->kv_images[i].start = r->images[i].start;
		sr->kv_images[i].n_tokens = r->images[i].n_tokens;
		memcpy(sr->kv_images[i].hash, r->images[i].hash, 32);
	}
	sr->sp = r->sp;
	sr->max_tokens = r->max_tokens;
	sr->n = sr->n_live = r->n;
	sr->arrival = r->arrival > 0 ? r->arrival : now_s();
	q->seqs = xcalloc(r->n, sizeof(*q->seqs));
	if (r->sp.guided) {
		q->guides = xcalloc(r->n, sizeof(*q->guides));
		for (uint32_t i = 0; i < r->n; i++)
			json_guide_init(&q->guides[i]);
	}
	for (uint32_t i = 0; i < r->n; i++) {
		sched_seq *s = &q->seqs[i];
		s->req = sr;
		s->index = i;
		s->cap = r->n_ids + (r->max_tokens < 256 ? r->max_tokens : 256);
		s->tokens = xmalloc((size_t)s->cap * sizeof(int32_t));
		memcpy(s->tokens, r->ids, (size_t)r->n_ids * sizeof(int32_t));
		s->n_tokens = r->n_ids;
		sampler_state_init(&s->ss, &sr->sp, i, r->ids, (size_t)r->n_ids);
	}
	r->ids = NULL;
	r->images = NULL;
	r->n_ids = 0;
	r->n_images = 0;

	pthread_mutex_lock(&en->mu);
	q->next = NULL;
	q->prev = en->inbox_tail;
	if (en->inbox_tail)
		en->inbox_tail->next = q;
	else
		en->inbox_head = q;
	en->inbox_tail = q;
	en->n_inbox++;
	pthread_cond_signal(&en->cv);
	pthread_mutex_unlock(&en->mu);
	return 0;
}

void engine_cancel(engine *en, uint64_t id)
{
	pthread_mutex_lock(&en->mu);
	cancel_list *c = &en->cancels;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->ids = xrealloc(c->ids, (size_t)c->cap * sizeof(uint64_t));
	}
	c->ids[c->n++] = id;
	pthread_cond_signal(&en->cv);
	pthread_mutex_unlock(&en->mu);
}

void engine_cancel_all(engine *en)
{
	pthread_mutex_lock(&en->mu);
	en->cancel_all = true;
	pthread_cond_signal(&en->cv);
	pthread_mutex_unlock(&en->mu);
}

void engine_wake(engine *en)
{
	pthread_mutex_lock(&en->mu);
	en->woken = true;
	pthread_cond_signal(&en->cv);
	pthread_mutex_unlock(&en->mu);
}

void engine_wait(engine *en, int timeout_ms)
{
	pthread_mutex_lock(&en->mu);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	if (timeout_ms >= 0) {
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
	}
	while (!en->woken && !en->n_inbox && !en->cancels.n && !en->cancel_all && !en->n_live) {
		if (timeout_ms < 0)
			pthread_cond_wait(&en->cv, &en->mu);
		else if (pthread_cond_timedwait(&en->cv, &en->mu, &dl))
			break;
	}
	en->woken = false;
	pthread_mutex_unlock(&en->mu);
}

int engine_num_live(engine *en)
{
	pthread_mutex_lock(&en->mu);
	int n = en->n_live_seen + en->n_inbox;
	pthread_mutex_unlock(&en->mu);
	return n;
}

/* ---- finishing ---- */

static void live_unlink(engine *en, ereq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		en->live_head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		en->live_tail = q->prev;
	en->n_live--;
}

/* Fill the usage and timing fields of a finishing sequence's output and record its metrics. */
static void finish_seq(engine *en, sched_seq *s, int reason, engine_output *out)
{
	double t = now_s();
	const sched_req *r = s->req;
	if (s->n_tokens > r->n_prompt && s->tokens[s->n_tokens - 1] < 0)
		s->n_tokens--;         /* a placeholder for a token in flight that it will not get */
	out->finished = true;
	out->reason = reason;
	out->prompt_tokens = r->n_prompt;
	out->completion_tokens = s->n_tokens - r->n_prompt;
	out->cached_tokens = s->n_cached;
	out->queue_s = s->t_scheduled > 0 ? s->t_scheduled - r->t_added : t - r->t_added;
	out->ttft_s = s->t_first_token > 0 ? s->t_first_token - r->arrival : 0;
	out->e2e_s = t - r->arrival;
	pthread_mutex_lock(&en->smu);
	metrics *m = &en->m;
	if (reason == ENGINE_FINISH_STOP)
		m->success_stop++;
	else if (reason == ENGINE_FINISH_LENGTH)
		m->success_length++;
	else
		m->success_abort++;
	metrics_hist_observe(&m->e2e, out->e2e_s);
	metrics_hist_observe(&m->queue, out->queue_s);
	if (s->t_scheduled > 0) {
		metrics_hist_observe(&m->inference, t - s->t_scheduled);
		if (s->t_first_token > 0) {
			metrics_hist_observe(&m->prefill, s->t_first_token - s->t_scheduled);
			metrics_hist_observe(&m->decode, t - s->t_first_token);
		}
	}
	metrics_hist_observe(&m->prompt_len, (double)r->n_prompt);
	metrics_hist_observe(&m->generation_len, (double)out->completion_tokens);
	m->prompt_tokens_cached += (uint64_t)s->n_cached;
	pthread_mutex_unlock(&en->smu);
	sched_remove(en->s, s);
}

static void release_if_done(engine *en, ereq *q)
{
	if (q->r.n_live)
		return;
	live_unlink(en, q);
	if (q->n_inflight)
		q->dead = true;        /* the launched step still names its sequences */
	else
		ereq_free(q);
}

static void abort_req(engine *en, ereq *q, engine_emit_fn emit, void *ctx, int error,
		      const char *message)
{
	for (uint32_t i = 0; i < q->r.n; i++) {
		sched_seq *s = &q->seqs[i];
		if (s->state == SCHED_DONE)
			continue;
		engine_output o = { .id = q->r.id, .owner = q->r.owner, .index = i, .stop_id = -1,
				    .error = error, .message = message };
		finish_seq(en, s, ENGINE_FINISH_ABORT, &o);
		q->r.n_live--;
		if (emit)
			emit(ctx, &o);
	}
	release_if_done(en, q);
}

/* ---- the step ---- */

static void take_inbox(engine *en, engine_emit_fn emit, void *ctx)
{
	pthread_mutex_lock(&en->mu);
	ereq *in = en->inbox_head;
	en->inbox_head = en->inbox_tail = NULL;
	/* the taken requests stay counted as live for engine_num_live: a reader must never see a
	 * request in neither place */
	en->n_live_seen += en->n_inbox;
	en->n_inbox = 0;
	cancel_list c = en->cancels;
	en->cancels = (cancel_list){ 0 };
	bool all = en->cancel_all;
	en->cancel_all = false;
	pthread_mutex_unlock(&en->mu);

	double t = now_s();
	for (ereq *q = in, *nx; q; q = nx) {
		nx = q->next;
		q->r.t_added = t;
		q->next = NULL;
		q->prev = en->live_tail;
		if (en->live_tail)
			en->live_tail->next = q;
		else
			en->live_head = q;
		en->live_tail = q;
		en->n_live++;
		for (uint32_t i = 0; i < q->r.n; i++)
			sched_add(en->s, &q->seqs[i]);
	}
	for (int i = 0; i < c.n; i++)
		for (ereq *q = en->live_head; q; q = q->next)
			if (q->r.id == c.ids[i]) {
				abort_req(en, q, emit, ctx, 0, NULL);
				break;
			}
	free(c.ids);
	if (all)
		while (en->live_head)
			abort_req(en, en->live_head, emit, ctx, 0, NULL);
}

static void grow_scratch(engine *en, size_t n_seqs, size_t n_tok)
{
	if (n_seqs > en->cap_seqs) {
		en->cap_seqs = n_seqs * 2;
		en->bseqs = xrealloc(en->bseqs, en->cap_seqs * sizeof(*en->bseqs));
		en->logit_rows = xrealloc(en->logit_rows, en->cap_seqs * sizeof(int32_t));
	}
	if (n_tok > en->cap_tok) {
		en->cap_tok = n_tok * 2;
		en->pos = xrealloc(en->pos, 3 * en->cap_tok * sizeof(int32_t));
		en->vis = xrealloc(en->vis, en->cap_tok * sizeof(*en->vis));
	}
	if (n_seqs > en->cap_srows) {
		en->cap_srows = n_seqs * 2;
		en->srows = xrealloc(en->srows, en->cap_srows * sizeof(*en->srows));
		en->sids = xrealloc(en->sids, en->cap_srows * sizeof(*en->sids));
		en->slps = xrealloc(en->slps, en->cap_srows * sizeof(*en->slps));
	}
	if (n_seqs > en->cap_logits) {
		en->cap_logits = n_seqs * 2;
		free(en->logits);
		en->logits = xmalloc_huge(en->cap_logits * (size_t)en->V * sizeof(float));
	}
}

static const float *enc_rows(const sched_plan *p, const uint8_t hash[32])
{
	for (int i = 0; i < p->n_encs; i++)
		if (!memcmp(p->encs[i].req->images[p->encs[i].image].hash, hash, 32))
			return p->encs[i].rows;
	return NULL;
}

/* Fill the backend batch for plan p. */
static void build_batch(engine *en, const sched_plan *p)
{
	size_t off = 0;
	for (int i = 0; i < p->n_items; i++) {
		const sched_item *it = &p->items[i];
		sched_seq *s = it->seq;
		const sched_req *r = s->req;
		int64_t a = s->n_computed, n = it->n_new;
		int32_t *pos = en->pos + 3 * off;
		const float **vis = en->vis + off;
		for (int64_t j = 0; j < n; j++) {
			int64_t p_ = a + j;
			vis[j] = NULL;
			for (int row = 0; row < 3; row++)
				pos[row * n + j] = p_ < r->n_prompt ? r->pos[row * r->n_prompt + p_]
								    : (int32_t)(p_ + r->rope_delta);
		}
		for (int m = 0; m < r->n_images; m++) {
			const sched_image *im = &r->images[m];
			int64_t lo = im->start > a ? im->start : a;
			int64_t hi = im->start + im->n_tokens < a + n ? im->start + im->n_tokens : a + n;
			if (lo >= hi)
				continue;
			const float *rows = enc_rows(p, im->hash);
			for (int64_t q = lo; q < hi; q++)
				vis[q - a] = rows + (q - im->start) * en->row_floats;
		}
		en->logit_rows[i] = (int32_t)(n - 1);
		en->bseqs[i] = (backend_seq){ .n_new = (int)n, .ids = s->tokens + a,
					      .vis = r->n_images ? vis : NULL, .pos = pos,
					      .n_cached = (int)a, .block_table = s->blocks.ids,
					      .n_logits = it->logits ? 1 : 0,
					      .logit_rows = &en->logit_rows[i] };
		off += (size_t)n;
	}
}

static bool has_id(const int32_t *v, int n, int32_t id)
{
	for (int i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

static void fail_step(engine *en, const sched_plan *p, engine_emit_fn emit, void *ctx,
		      const qerr *e)
{
	/* every request with a sequence in the step fails (each once: aborting frees it) */
	ereq **qs = xcalloc((size_t)p->n_items + 1, sizeof(*qs));
	int n = 0;
	for (int i = 0; i < p->n_items; i++) {
		ereq *q = req_of(p->items[i].seq->req);
		bool seen = false;
		for (int j = 0; j < n && !seen; j++)
			seen = qs[j] == q;
		if (!seen)
			qs[n++] = q;
	}
	for (int j = 0; j < n; j++)
		abort_req(en, qs[j], emit, ctx, e && e->code ? e->code : QERR_IO,
			  e ? e->msg : "backend failure");
	free(qs);
	pthread_mutex_lock(&en->smu);
	en->m.success_error++;
	pthread_mutex_unlock(&en->smu);
}

static void refresh_gauges(engine *en)
{
	pthread_mutex_lock(&en->smu);
	kv_blocks_get_stats(en->kb, &en->kbs);
	if (en->ec)
		encoder_cache_get_stats(en->ec, &en->ecs);
	en->g.num_requests_running = sched_num_running(en->s);
	en->g.num_requests_waiting = sched_num_waiting(en->s);
	en->g.kv_blocks_total = en->kbs.n_blocks;
	en->g.kv_blocks_free = en->kbs.n_free;
	en->g.kv_cache_usage_perc = en->kbs.n_blocks
		? (double)(en->kbs.n_blocks - en->kbs.n_free) / en->kbs.n_blocks : 0;
	en->m.num_preemptions = sched_num_preemptions(en->s);
	en->m.prefix_cache_queries = en->kbs.queries;
	en->m.prefix_cache_hits = en->kbs.hits;
	en->m.mm_cache_queries = en->ecs.queries;
	en->m.mm_cache_hits = en->ecs.hits;
	pthread_mutex_unlock(&en->smu);
	pthread_mutex_lock(&en->mu);
	en->n_waiting_seen = sched_num_waiting(en->s);
	en->n_live_seen = en->n_live;
	pthread_mutex_unlock(&en->mu);
}

static bool is_ws_token(const engine *en, int32_t v)
{
	if (en->tok_special[v] || !en->tok_len[v])
		return false;
	for (uint16_t i = 0; i < en->tok_len[v]; i++) {
		char c = en->tok_bytes[v][i];
		if (c != ' ' && c != '\n' && c != '\t' && c != '\r')
			return false;
	}
	return true;
}

/* Guided JSON: mask (-inf) every token of row that cannot come next for guide g with `left`
 * tokens of budget after this one's. Invariant kept: the bytes needed to close the object fit
 * the budget — near the end each candidate is checked for that, and when the budget equals
 * them the next closing byte is forced. */
static void guide_mask(const engine *en, const sched_req *r, const json_guide *g, float *row,
		       int64_t left)
{
	int V = en->V;
	if (json_guide_done(g)) {
		/* complete: eos ends it; whitespace keeps it valid (eos masked by min_tokens) */
		for (int32_t v = 0; v < V; v++) {
			bool eos = false;
			for (int i = 0; i < r->sp.n_eos && !eos; i++)
				eos = r->sp.eos_ids[i] == v;
			if (!eos && !is_ws_token(en, v))
				row[v] = -INFINITY;
		}
		return;
	}
	char close[JSON_GUIDE_MAX_CLOSING];
	size_t need = json_guide_closing(g, close);
	int32_t forced = (int64_t)need > left ? en->byte_token[(uint8_t)close[0]] : -1;
	if (forced >= 0) {
		for (int32_t v = 0; v < V; v++)
			if (v != forced)
				row[v] = -INFINITY;
		return;
	}
	/* a token may add at most 6 closing bytes per byte ("{\"" needs "\":null}"): check the
	 * closing of each candidate only when that could overrun the budget */
	bool check_close = (int64_t)(need + 6 * en->max_tok_len) >= left;
	for (int32_t v = 0; v < V; v++) {
		if (row[v] == -INFINITY)
			continue;
		if (en->tok_special[v] || !en->tok_len[v]) {
			row[v] = -INFINITY;
			continue;
		}
		json_guide c = *g;
		if (!json_guide_feed(&c, en->tok_bytes[v], en->tok_len[v])) {
			row[v] = -INFINITY;
			continue;
		}
		if (check_close) {
			char tail[JSON_GUIDE_MAX_CLOSING];
			if ((int64_t)json_guide_closing(&c, tail) > left - 1)
				row[v] = -INFINITY;
		}
	}
}

/* ---- answers ---- */

/* Token id for sequence s of request r: record it, emit it, and finish s when it stops. A
 * placeholder at the end of s (BACKEND_CHAINED_ID: the launch that computed this token was
 * planned before the id was known) is replaced, otherwise the id is appended. */
static void take_token(engine *en, sched_seq *s, int32_t id, const sampler_logprobs *lp, double t,
		       engine_emit_fn emit, void *ctx)
{
	sched_req *r = s->req;
	json_guide *guide = r->sp.guided ? &req_of(r)->guides[s->index] : NULL;
	if (guide && !en->tok_special[id])
		json_guide_feed(guide, en->tok_bytes[id], en->tok_len[id]);
	sampler_state_accept(&s->ss, &r->sp, id);
	if (s->n_tokens > r->n_prompt && s->tokens[s->n_tokens - 1] < 0)
		s->tokens[s->n_tokens - 1] = id;
	else
		sched_seq_append(s, id);
	pthread_mutex_lock(&en->smu);
	en->m.generation_tokens++;
	if (s->t_first_token == 0) {
		s->t_first_token = t;
		en->m.prompt_tokens += (uint64_t)r->n_prompt;
		metrics_hist_observe(&en->m.ttft, t - r->arrival);
		if (log_get_level() >= LOG_LEVEL_DEBUG)
			log_msg(LOG_LEVEL_DEBUG, "engine", "request %llu: first token %.2f ms after its "
				"arrival, %.2f ms after the engine took it", (unsigned long long)r->id,
				(t - r->arrival) * 1e3, (t - r->t_added) * 1e3);
	} else {
		metrics_hist_observe(&en->m.itl, t - s->t_last_token);
	}
	pthread_mutex_unlock(&en->smu);
	s->t_last_token = t;

	engine_output o = { .id = r->id, .owner = r->owner, .index = s->index, .n = 1, .ids = &id,
			    .lp = lp, .stop_id = -1 };
	int64_t n_out = s->n_tokens - r->n_prompt;
	int reason = 0;
	if ((!r->sp.ignore_eos && has_id(r->sp.eos_ids, r->sp.n_eos, id)) ||
	    has_id(r->sp.stop_ids, r->sp.n_stop_ids, id)) {
		reason = ENGINE_FINISH_STOP;
		o.stop_id = id;
	} else if (n_out >= r->max_tokens || s->n_tokens >= en->o.max_model_len) {
		reason = ENGINE_FINISH_LENGTH;
	}
	if (reason) {
		finish_seq(en, s, reason, &o);
		r->n_live--;
	}
	if (emit)
		emit(ctx, &o);
	if (reason)
		release_if_done(en, req_of(r));
}

/* The answers of a step run to the end: logit row k of p gives its sequence's token, sampled
 * on the device (device: en->sids) or here from en->logits, a guide's masks first. */
static void take_answers(engine *en, const sched_plan *p, bool device, double t,
			 engine_emit_fn emit, void *ctx)
{
	int k = 0;
	for (int i = 0; i < p->n_items; i++) {
		if (!p->items[i].logits)
			continue;
		sched_seq *s = p->items[i].seq;
		sched_req *r = s->req;
		int row = k++;
		sampler_logprobs lp;
		const sampler_logprobs *lpp = NULL;
		int32_t id;
		if (device) {
			id = en->sids[row];
			lpp = r->sp.logprobs >= 0 ? &en->slps[row] : NULL;
		} else {
			float *logits = en->logits + (size_t)row * (size_t)en->V;
			if (r->sp.guided) {
				int64_t left = r->max_tokens - (s->n_tokens - r->n_prompt) - 1;
				if (en->o.max_model_len - s->n_tokens - 1 < left)
					left = en->o.max_model_len - s->n_tokens - 1;
				guide_mask(en, r, &req_of(r)->guides[s->index], logits, left);
			}
			id = sampler_sample(&r->sp, &s->ss, logits, en->V, en->sc,
					    r->sp.logprobs >= 0 ? &lp : NULL);
			lpp = r->sp.logprobs >= 0 ? &lp : NULL;
		}
		take_token(en, s, id, lpp, t, emit, ctx);
	}
}

/* Whether the token after this step can be sampled without the host having seen this step's:
 * no penalties (their counts are the host's), no guide, no min_tokens still masking stops (the
 * host's count of outputs lags by the token in flight). */
static bool chainable(const sched_seq *s)
{
	const sampling_params *sp = &s->req->sp;
	return !sp->guided && !sampler_penalised(sp) && s->ss.n_out >= sp->min_tokens;
}

/* The launched step's items no longer name their requests (answers taken, or dropped). */
static void fl_release(const sched_item *items, int n)
{
	for (int i = 0; i < n; i++) {
		ereq *q = req_of(items[i].seq->req);
		if (--q->n_inflight == 0 && q->dead)
			ereq_free(q);
	}
}

/* Take the answers of the launched step: each logit row's token to its sequence (rows of
 * sequences finished or cancelled since the launch are dropped). */
static int drain(engine *en, engine_emit_fn emit, void *ctx, qerr *e)
{
	en->fl_active = false;
	int rc = backend_step_sample_wait(en->b, en->sids, en->slps, e);
	double t = now_s();
	if (!rc) {
		int k = 0;
		for (int i = 0; i < en->fl_n; i++) {
			if (!en->fl_items[i].logits)
				continue;
			sched_seq *s = en->fl_items[i].seq;
			int row = k++;
			if (s->state == SCHED_DONE)
				continue;
			take_token(en, s, en->sids[row], s->req->sp.logprobs >= 0 ? &en->slps[row] : NULL,
				   t, emit, ctx);
		}
	}
	fl_release(en->fl_items, en->fl_n);
	en->fl_n = 0;
	return rc;
}

/* Drop from p the items whose sequence finished (after a drain); recount its tokens. */
static void plan_drop_done(sched_plan *p)
{
	int n = 0;
	p->n_tokens = 0;
	for (int i = 0; i < p->n_items; i++)
		if (p->items[i].seq->state != SCHED_DONE) {
			p->items[n++] = p->items[i];
			p->n_tokens += p->items[i].n_new;
		}
	p->n_items = n;
}

/* Fill en->srows for p's logit rows; false when a row is guided (its masks are the host's). */
static bool sample_rows(engine *en, const sched_plan *p, bool *chain)
{
	int k = 0;
	*chain = !en->o.sync_scheduling;
	for (int i = 0; i < p->n_items; i++) {
		if (!p->items[i].logits)
			continue;
		sched_seq *s = p->items[i].seq;
		if (s->req->sp.guided)
			return false;
		*chain = *chain && chainable(s);
		en->srows[k].sp = &s->req->sp;
		en->srows[k++].ss = &s->ss;
	}
	return true;
}

/* The step just launched (fl_items), after the one before it drained: each of its sequences
 * that goes on gets a placeholder for the token it samples (the next plan sees a decode to
 * launch; the backend fills the id in from those answers, BACKEND_CHAINED_ID). */
static void commit_launched(engine *en)
{
	int k = 0;
	for (int i = 0; i < en->fl_n; i++) {
		if (!en->fl_items[i].logits)
			continue;
		int row = k++;
		sched_seq *s = en->fl_items[i].seq;
		if (s->state == SCHED_DONE)
			continue;
		int64_t n_after = s->n_tokens + 1;   /* with p's token */
		if (n_after - s->req->n_prompt < s->req->max_tokens && n_after < en->o.max_model_len)
			sched_seq_append(s, BACKEND_CHAINED_ID(row));
	}
}

int engine_step(engine *en, engine_emit_fn emit, void *ctx, qerr *e)
{
	double t_start = now_s();
	take_inbox(en, emit, ctx);
	refresh_gauges(en);            /* cancels show in STATS before a long step */
	sched_plan p;
	sched_schedule(en->s, &p);
	/* every image the plan reserved is encoded, even when no chunk ends up reading it this
	 * step: its cache entry exists from now on */
	int rc = 0, n_encoded = 0;
	double t_plan = now_s();
	for (int i = 0; !rc && i < p.n_encs; i++) {
		if (!p.encs[i].encode)
			continue;
		n_encoded++;
		const sched_image *im = &p.encs[i].req->images[p.encs[i].image];
		rc = backend_encode_async(en->b, im->pixel_values, im->grid_t, im->grid_h,
					  im->grid_w, p.encs[i].rows, e);
		if (rc)
			for (int j = i; j < p.n_encs; j++)
				if (p.encs[j].encode)
					encoder_cache_discard(en->ec, p.encs[j].req->images[p.encs[j].image].hash);
	}
	double t_encoded = now_s();
	bool launched = false, done = false;   /* done: sched_step_done(p) was called */
	if (!rc && p.n_items) {
		grow_scratch(en, (size_t)p.n_items, (size_t)p.n_tokens);
		bool chain = false, device = sample_rows(en, &p, &chain);
		if (en->fl_active && !(device && chain)) {
			/* this step needs the tokens in flight on the host: take them first */
			rc = drain(en, emit, ctx, e);
			plan_drop_done(&p);
			device = device && p.n_items;
			bool unused;
			if (device)
				sample_rows(en, &p, &unused);   /* the rows of what is left */
		}
		if (!rc && p.n_items)
			build_batch(en, &p);
		if (!rc && device && chain) {
			rc = backend_step_sample_launch(en->b, en->bseqs, p.n_items, en->srows, e);
			launched = !rc;
		} else if (!rc && device) {
			qerr se = { 0 };
			rc = backend_step_sample(en->b, en->bseqs, p.n_items, en->srows, en->sids,
						 en->slps, &se);
			if (rc == -QERR_LIMIT && se.code == QERR_LIMIT) {
				device = false;   /* more rows than the device samples at once */
				rc = 0;
			} else if (rc && e) {
				*e = se;
			}
		}
		if (!rc && !device && p.n_items)
			rc = backend_step(en->b, en->bseqs, p.n_items, en->logits, e);
		if (!launched && !rc) {
			double t = now_s();
			sched_step_done(en->s, &p);
			done = true;
			take_answers(en, &p, device, t, emit, ctx);
		}
	}
	if (launched) {
		/* p runs on the device behind the step in flight: take that one's answers meanwhile,
		 * then p becomes the step in flight */
		if ((size_t)p.n_items > en->cap_fl) {
			en->cap_fl = 2 * (size_t)p.n_items;
			en->fl_items = xrealloc(en->fl_items, en->cap_fl * sizeof(*en->fl_items));
			en->fl_next = xrealloc(en->fl_next, en->cap_fl * sizeof(*en->fl_next));
		}
		memcpy(en->fl_next, p.items, (size_t)p.n_items * sizeof(*p.items));
		for (int i = 0; i < p.n_items; i++)
			req_of(p.items[i].seq->req)->n_inflight++;
		if (en->fl_active)
			rc = drain(en, emit, ctx, e);
		sched_item *tmp = en->fl_items;
		en->fl_items = en->fl_next;
		en->fl_next = tmp;
		en->fl_n = p.n_items;
		en->fl_active = true;
		plan_drop_done(&p);
		sched_step_done(en->s, &p);
		commit_launched(en);
		if (rc) {
			/* the backend failed a wait: nothing it runs is trusted (the engine stops) */
			log_msg(LOG_LEVEL_ERR, "engine", "step failed: %s", e ? e->msg : "backend error");
			en->fl_active = false;
			fail_step(en, &p, emit, ctx, e);
			fl_release(en->fl_items, en->fl_n);
			en->fl_n = 0;
		}
	} else if (!rc && !done) {     /* nothing to run: the step in flight still answers */
		sched_step_done(en->s, &p);
		if (en->fl_active)
			rc = drain(en, emit, ctx, e);
		done = true;
	}
	if (rc && !launched) {
		/* p's items keep their n_computed: they are failed and removed below */
		if (en->fl_active) {
			qerr ignored = { 0 };
			drain(en, emit, ctx, &ignored);
		}
		if (!done)
			sched_step_done(en->s, &p);
		log_msg(LOG_LEVEL_ERR, "engine", "step failed: %s", e ? e->msg : "backend error");
		fail_step(en, &p, emit, ctx, e);
	}
	if (!rc && p.n_items) {
		pthread_mutex_lock(&en->smu);
		metrics_hist_observe(&en->m.iteration_tokens, (double)p.n_tokens);
		pthread_mutex_unlock(&en->smu);
	}
	refresh_gauges(en);
	double t_end = now_s();
	if (log_get_level() >= LOG_LEVEL_DEBUG)
		log_msg(LOG_LEVEL_DEBUG, "engine", "step: %d sequences, %lld tokens, %d images encoded%s; "
			"%.2f ms: inbox and schedule %.2f, encode %.2f, the rest %.2f; %.2f ms since "
			"the last step", p.n_items, (long long)p.n_tokens, n_encoded,
			launched ? ", launched" : "", (t_end - t_start) * 1e3,
			(t_plan - t_start) * 1e3, (t_encoded - t_plan) * 1e3,
			(t_end - t_encoded) * 1e3,
			en->t_last_step > 0 ? (t_start - en->t_last_step) * 1e3 : 0.0);
	en->t_last_step = t_end;
	return rc;
}

json_object *engine_stats_json(engine *en)
{
	pthread_mutex_lock(&en->smu);
	metrics m = en->m;
	metrics_gauges g = en->g;
	pthread_mutex_unlock(&en->smu);
	pthread_mutex_lock(&en->mu);
	g.num_requests_waiting += en->n_inbox;
	pthread_mutex_unlock(&en->mu);
	return metrics_json(&m, &g);
}
