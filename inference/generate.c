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
 * Sampling (the offline sampler; the batched one belongs to the scheduler): greedy (arg max,
 * lowest id on ties) when the temperature is 0, or when the request gives none and
 * generation_config has do_sample false. Otherwise logits / temperature, then top-k, top-p,
 * min-p, and one draw from xoshiro256** seeded by splitmix64(seed) (the clock when there is no
 * seed). Parameters the request leaves out take generation_config's values, as vLLM does.
 * Candidates are sorted in full each step (O(V log V)): simple, fine offline.
 *
 * Logprobs come from the raw distribution, log_softmax of the unmodified logits, in double.
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
#include "img_decode.h"
#include "img_preprocess.h"
#include "mrope.h"
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

/* ---- the prompt ---- */

typedef struct prompt {
	tok_ids ids;
	img_patches *im;               /* owned: n_img */
	size_t n_img;
	int32_t *pos;                  /* owned: (3, ids.n) */
	int64_t rope_delta;
} prompt;

static void prompt_deinit(prompt *p)
{
	tok_ids_deinit(&p->ids);
	for (size_t i = 0; i < p->n_img; i++)
		img_patches_deinit(&p->im[i]);
	free(p->im);
	free(p->pos);
}

static int build_prompt(const generate_model *m, const chat_request *r, prompt *p, qerr *e)
{
	char *text = NULL, *expanded = NULL;
	size_t tlen = 0, elen = 0;
	int n_images = 0;
	int rc = chat_render(r->messages, r->tools, &r->chat, &text, &tlen, &n_images, NULL, e);
	if (!rc && (size_t)n_images != r->n_images)
		rc = qerr_set(e, QERR_UNSUPPORTED,
			      "request: %zu image part(s) but the chat template renders %d: images are "
			      "supported in user and tool messages only", r->n_images, n_images);
	if (!rc && r->n_images && !m->mc.has_vision)
		rc = qerr_set(e, QERR_UNSUPPORTED, "request: images given to a model without vision");
	p->im = xcalloc(r->n_images + 1, sizeof(*p->im));
	int64_t *counts = xcalloc(r->n_images + 1, sizeof(*counts));
	int32_t(*grids)[3] = xcalloc(r->n_images + 1, sizeof(*grids));
	for (size_t i = 0; !rc && i < r->n_images; i++) {
		img_rgb rgb = { 0 };
		img_limits lim = { 0 };
		rc = img_decode(r->images[i].data, r->images[i].len, &lim, &rgb, e);
		if (!rc)
			rc = img_preprocess(&rgb, &m->pc, r->min_pixels, r->max_pixels, &p->im[i], e);
		img_rgb_deinit(&rgb);
		if (rc) {
			qerr_prefix(e, "%s", r->images[i].where);
			break;
		}
		p->n_img++;
		counts[i] = p->im[i].n_tokens;
		grids[i][0] = p->im[i].grid_t;
		grids[i][1] = p->im[i].grid_h;
		grids[i][2] = p->im[i].grid_w;
	}
	if (!rc)
		rc = chat_expand_pads(text, tlen, "<|image_pad|>", counts, r->n_images, &expanded, &elen, e);
	if (!rc)
		tok_encode(m->tok, expanded, elen, &p->ids);
	if (!rc && (int64_t)p->ids.n >= m->mc.text.max_position_embeddings)
		rc = qerr_set(e, QERR_LIMIT, "request: the prompt has %zu tokens, the context holds %lld",
			      p->ids.n, (long long)m->mc.text.max_position_embeddings);
	if (!rc) {
		p->pos = xcalloc(3 * p->ids.n, sizeof(int32_t));
		rc = mrope_positions(&m->mc, p->ids.v, p->ids.n, (const int32_t(*)[3])grids, r->n_images,
				     p->pos, &p->rope_delta, e);
	}
	free(text);
	free(expanded);
	free(counts);
	free(grids);
	return rc;
}

/* ---- sampling ---- */

typedef struct sampler {
	bool greedy;
	double temperature, top_p, min_p;
	int64_t top_k;
	uint64_t s[4];                 /* xoshiro256** state */
} sampler;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

static void sampler_init(sampler *sp, const generation_config *gc, const chat_request *r)
{
	sp->temperature = r->has_temperature ? r->temperature : gc->temperature;
	sp->greedy = r->has_temperature ? r->temperature == 0 : (!gc->do_sample || gc->temperature == 0);
	sp->top_p = r->has_top_p ? r->top_p : gc->top_p;
	sp->top_k = r->has_top_k ? r->top_k : gc->top_k;
	sp->min_p = r->has_min_p ? r->min_p : gc->min_p;
	uint64_t x = r->seed;
	if (!r->has_seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
	}
	for (int i = 0; i < 4; i++)
		sp->s[i] = splitmix64(&x);
}

typedef struct cand {
	float logit;
	int32_t id;
} cand;

static int cand_desc(const void *a, const void *b)
{
	const cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit > y->logit ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Pick the next id from logits (V), which may hold -INFINITY for masked ids; c is scratch (V). */
static int32_t sample(sampler *sp, const float *logits, int V, cand *c)
{
	if (sp->greedy) {
		int32_t best = 0;
		for (int v = 1; v < V; v++)
			if (logits[v] > logits[best])
				best = v;
		return best;
	}
	int n = 0;
	for (int v = 0; v < V; v++)
		if (logits[v] != -INFINITY)
			c[n++] = (cand){ (float)(logits[v] / sp->temperature), v };
	if (n == 0)
		return 0;
	qsort(c, (size_t)n, sizeof(*c), cand_desc);
	if (sp->top_k > 0 && sp->top_k < n)
		n = (int)sp->top_k;
	/* probabilities of the survivors, then top-p over them, then min-p */
	double *p = xmalloc((size_t)n * sizeof(double)), sum = 0;
	for (int i = 0; i < n; i++)
		sum += p[i] = exp((double)c[i].logit - c[0].logit);
	if (sp->top_p < 1) {
		double cum = 0;
		int keep = n;
		for (int i = 0; i < n; i++) {
			cum += p[i] / sum;
			if (cum >= sp->top_p) {
				keep = i + 1;
				break;
			}
		}
		n = keep;
	}
	if (sp->min_p > 0) {
		/* p[0] is the largest: drop what is below min_p times it */
		int keep = 1;
		while (keep < n && p[keep] >= sp->min_p * p[0])
			keep++;
		n = keep;
	}
	sum = 0;
	for (int i = 0; i < n; i++)
		sum += p[i];
	double u = (double)(xoshiro_next(sp->s) >> 11) * 0x1.0p-53 * sum, cum = 0;
	int32_t id = c[n - 1].id;
	for (int i = 0; i < n; i++) {
		cum += p[i];
		if (u < cum) {
			id = c[i].id;
			break;
		}
	}
	free(p);
	return id;
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

/* One logprobs.content entry for the chosen id. */
static json_object *logprob_entry(const tokenizer *t, const float *logits, int V, int32_t id, int top,
				  bool as_ids)
{
	double mx = -INFINITY, sum = 0;
	for (int v = 0; v < V; v++)
		if (logits[v] > mx)
			mx = logits[v];
	for (int v = 0; v < V; v++)
		sum += exp((double)logits[v] - mx);
	double lse = mx + log(sum);
	json_object *o = json_object_new_object();
	add_token(o, t, id, as_ids);
	json_object_object_add(o, "logprob", json_object_new_double((double)logits[id] - lse));
	add_bytes(o, t, id);
	/* the top alternatives by insertion into a sorted list of at most 20 */
	int32_t best[CHAT_REQUEST_MAX_TOP_LOGPROBS];
	int nb = 0;
	for (int v = 0; v < V && top > 0; v++) {
		if (nb == top && logits[v] <= logits[best[nb - 1]])
			continue;
		int i = nb < top ? nb++ : nb - 1;
		while (i > 0 && logits[best[i - 1]] < logits[v]) {
			best[i] = best[i - 1];
			i--;
		}
		best[i] = v;
	}
	json_object *arr = json_object_new_array();
	for (int i = 0; i < nb; i++) {
		json_object *a = json_object_new_object();
		add_token(a, t, best[i], as_ids);
		json_object_object_add(a, "logprob", json_object_new_double((double)logits[best[i]] - lse));
		add_bytes(a, t, best[i]);
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
			uint64_t v = splitmix64(&x);
			memcpy(r + i, &v, 8);
		}
	}
	memcpy(out, "chatcmpl-", 9);
	for (int i = 0; i < 16; i++)
		snprintf(out + 9 + 2 * i, 3, "%02x", r[i]);
}

static json_object *response(const generate_model *m, const chat_request *r, const char *content,
			     size_t clen, bool stopped, json_object *logprobs, size_t n_prompt,
			     size_t n_out)
{
	char id[42];
	completion_id(id);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "object", json_object_new_string("chat.completion"));
	json_object_object_add(o, "created", json_object_new_int64((int64_t)time(NULL)));
	json_object_object_add(o, "model", json_object_new_string(r->model ? r->model : m->name));
	json_object *msg = json_object_new_object();
	json_object_object_add(msg, "role", json_object_new_string("assistant"));
	json_object_object_add(msg, "content", json_object_new_string_len(content, (int)clen));
	json_object *ch = json_object_new_object();
	json_object_object_add(ch, "index", json_object_new_int(0));
	json_object_object_add(ch, "message", msg);
	if (logprobs) {
		json_object *lp = json_object_new_object();
		json_object_object_add(lp, "content", logprobs);
		json_object_object_add(ch, "logprobs", lp);
	} else {
		json_object_object_add(ch, "logprobs", NULL);
	}
	json_object_object_add(ch, "finish_reason", json_object_new_string(stopped ? "stop" : "length"));
	json_object *choices = json_object_new_array();
	json_object_array_add(choices, ch);
	json_object_object_add(o, "choices", choices);
	json_object *u = json_object_new_object();
	json_object_object_add(u, "prompt_tokens", json_object_new_int64((int64_t)n_prompt));
	json_object_object_add(u, "completion_tokens", json_object_new_int64((int64_t)n_out));
	json_object_object_add(u, "total_tokens", json_object_new_int64((int64_t)(n_prompt + n_out)));
	json_object_object_add(o, "usage", u);
	return o;
}

/* ---- the run ---- */

static bool is_eos(const generation_config *gc, int32_t id)
{
	for (int i = 0; i < gc->n_eos; i++)
		if (gc->eos_token_ids[i] == id)
			return true;
	return false;
}

static bool is_stop_id(const chat_request *r, int32_t id)
{
	for (size_t i = 0; i < r->n_stop_token_ids; i++)
		if (r->stop_token_ids[i] == id)
			return true;
	return false;
}

/* Encode every image and point each image token of the prompt at its vision rows. */
static int encode_images(backend *b, const model_config *mc, const prompt *p, float **vis,
			 const float ***vp, qerr *e)
{
	int nds = mc->has_vision ? mc->vision.n_deepstack : 0;
	size_t row = (size_t)(1 + nds) * (size_t)mc->text.hidden_size, total = 0;
	for (size_t i = 0; i < p->n_img; i++)
		total += (size_t)p->im[i].n_tokens;
	*vis = xcalloc(total * row + 1, sizeof(float));
	*vp = xcalloc(p->ids.n, sizeof(**vp));
	size_t off = 0;
	for (size_t i = 0; i < p->n_img; i++) {
		int rc = backend_encode(b, p->im[i].pixel_values, p->im[i].grid_t, p->im[i].grid_h,
					p->im[i].grid_w, *vis + off * row, e);
		if (rc)
			return rc;
		off += (size_t)p->im[i].n_tokens;
	}
	size_t next = 0;
	for (size_t i = 0; i < p->ids.n && total; i++)
		if (p->ids.v[i] == mc->image_token_id)
			(*vp)[i] = *vis + (next++) * row;
	return 0;
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
	prompt p = { 0 };
	int rc = build_prompt(m, r, &p, e);
	if (rc) {
		prompt_deinit(&p);
		return rc;
	}
	int64_t n = (int64_t)p.ids.n, room = mc->text.max_position_embeddings - n;
	int64_t max_tokens = r->max_tokens >= 0 ? r->max_tokens
			     : m->gc.max_new_tokens > 0 ? m->gc.max_new_tokens : GENERATE_DEFAULT_MAX_TOKENS;
	if (max_tokens > room)
		max_tokens = room;
	if (n + max_tokens > INT32_MAX - BLOCK_SIZE) {
		prompt_deinit(&p);
		return qerr_set(e, QERR_LIMIT, "request: %lld positions are too many", (long long)(n + max_tokens));
	}

	/* a pool of exactly the blocks this request can use, in order */
	int n_blocks = (int)((n + max_tokens + BLOCK_SIZE - 1) / BLOCK_SIZE);
	backend_opts bo = { .block_size = BLOCK_SIZE, .n_blocks = n_blocks, .n_threads = m->n_threads };
	backend *b = NULL;
	detok *d = NULL;
	float *vis = NULL, *logits = xmalloc((size_t)V * sizeof(float)), *masked = NULL;
	const float **vp = NULL;
	int32_t *table = xmalloc((size_t)n_blocks * sizeof(int32_t));
	for (int i = 0; i < n_blocks; i++)
		table[i] = i;
	cand *scratch = xmalloc((size_t)V * sizeof(cand));
	strbuf text = { 0 };
	json_object *lp = r->logprobs ? json_object_new_array() : NULL;
	detok_opts dop = { .skip_special_tokens = r->skip_special_tokens,
			   .include_stop_str_in_output = r->include_stop_str_in_output,
			   .stop = r->stop, .n_stop = r->n_stop, .min_tokens = r->min_tokens };
	rc = backend_cpu_new(mc, &m->w, &bo, &b, e);
	if (!rc)
		rc = detok_new(m->tok, &dop, &d, e);
	if (!rc)
		rc = encode_images(b, mc, &p, &vis, &vp, e);
	if (!rc) {
		int32_t last = (int32_t)n - 1;
		backend_seq q = { .n_new = (int)n, .ids = p.ids.v, .vis = vp, .pos = p.pos, .n_cached = 0,
				  .block_table = table, .n_logits = 1, .logit_rows = &last };
		rc = backend_step(b, &q, 1, logits, e);
	}
	sampler sp;
	sampler_init(&sp, &m->gc, r);
	int64_t n_out = 0;
	bool stopped = false;
	while (!rc && n_out < max_tokens && !stopped) {
		/* before min_tokens the ids that would end generation cannot be drawn */
		const float *pick = logits;
		if (n_out < r->min_tokens) {
			if (!masked)
				masked = xmalloc((size_t)V * sizeof(float));
			memcpy(masked, logits, (size_t)V * sizeof(float));
			for (int i = 0; !r->ignore_eos && i < m->gc.n_eos; i++)
				if (m->gc.eos_token_ids[i] >= 0 && m->gc.eos_token_ids[i] < V)
					masked[m->gc.eos_token_ids[i]] = -INFINITY;
			for (size_t i = 0; i < r->n_stop_token_ids; i++)
				masked[r->stop_token_ids[i]] = -INFINITY;
			pick = masked;
		}
		int32_t id = sample(&sp, pick, V, scratch);
		if (lp)
			json_object_array_add(lp, logprob_entry(m->tok, logits, V, id, r->top_logprobs,
								r->return_tokens_as_token_ids));
		n_out++;
		bool stop_id = (!r->ignore_eos && is_eos(&m->gc, id)) || is_stop_id(r, id);
		if (!stop_id || r->include_stop_str_in_output)
			stopped = detok_push(d, &id, 1, &text);
		if (stop_id) {
			stopped = true;
			break;
		}
		if (stopped || n_out == max_tokens)
			break;
		int32_t pos3[3], zero = 0;
		rc = mrope_decode_positions(n + n_out - 1, 1, p.rope_delta, pos3, e);
		if (!rc) {
			backend_seq q = { .n_new = 1, .ids = &id, .pos = pos3, .n_cached = (int)(n + n_out - 1),
					  .block_table = table, .n_logits = 1, .logit_rows = &zero };
			rc = backend_step(b, &q, 1, logits, e);
		}
	}
	if (!rc) {
		detok_finish(d, &text);
		*out = response(m, r, strbuf_str(&text), text.len, stopped, lp, p.ids.n, (size_t)n_out);
		lp = NULL;
	}
	json_object_put(lp);
	strbuf_deinit(&text);
	detok_free(d);
	backend_free(b);
	free(scratch);
	free(table);
	free(masked);
	free(logits);
	free(vis);
	free(vp);
	prompt_deinit(&p);
	return rc;
}
