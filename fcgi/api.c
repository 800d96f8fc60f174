/*
 * api: routing, authentication, request bodies, and the chat/completions/tokenize/metrics
 * handlers of qvl-fcgi (see api.h for the endpoints and the status mapping).
 *
 * A chat request, start to finish:
 *
 *   body ─► json ─► chat_request_parse_media (images: data: decoded, http(s)/file fetched by
 *   media_fetch) ─► prompt_build_chat (template, resize, hash, tokenize) ─► limits ─► SUBMIT
 *   ─► frames from qvld: TOKENS per choice ─► detok (stop strings) ─► content deltas (and tool
 *      calls, logprobs) ─► SSE chunks, or one chat.completion at FINISH of every choice
 *
 * At debug level each chat request logs where its time went between those stages (req.at:
 * routing, body, parse, media, prompt, first tokens, end).
 *
 * A choice that meets a stop string is finished here; once every choice is finished the
 * request is cancelled in qvld (its remaining FINISH frames, reason abort, are read and
 * dropped so the connection stays in step). A client that goes away (a failed flush, or the
 * web server closing the FastCGI connection while we wait) cancels the request at once. While
 * no token comes, a streaming response gets an SSE comment every heartbeat_ms, so that a
 * vanished client is noticed during a long prefill too.
 *
 * Image bodies: a chat body is mostly base64 (a 448x448 PNG is 800 KB of it), and json-c
 * copies a string a byte at a time (~1 ms for that much). So before parsing, each
 * "url": "data:image/…;base64,PAYLOAD" value is cut out of the text (body_media) and replaced
 * by a short placeholder that fetch_media resolves, decoding PAYLOAD in place. Only what the
 * JSON means is unchanged is taken this way: the payload holds no quote or backslash, so the
 * text's strings begin and end where they did, and the value must be consumed as an image URL
 * by chat_request_parse_media. Anything else (a placeholder left unused, a request that fails to
 * parse or to decode) sends the request down the plain path: the whole text parsed as it came,
 * so a client sees exactly what it would without the shortcut.
 *
 * State: api_ctx holds what every thread shares (options, the model's tokenizer and
 * preprocessor settings, loaded once from the model directory the daemon announces, under a
 * mutex); api_thread holds one thread's connection to qvld, re-made by the next request when it
 * dies (see thread_conn).
 */
#include "api.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "alloc.h"
#include "chat_request.h"
#include "chat_template.h"
#include "daemon_client.h"
#include "detok.h"
#include "jsonx.h"
#include "log.h"
#include "media_fetch.h"
#include "model_config.h"
#include "openai_format.h"
#include "prompt.h"
#include "strbuf.h"
#include "tokenizer.h"
#include "wire.h"

#define CONNECT_TIMEOUT_MS 2000
#define MAX_BACKOFF_MS 5000
#define MAX_CHOICES 128
/* Request bodies are read READ_CHUNK bytes or more at a time, into a buffer sized up front from
 * CONTENT_LENGTH up to BODY_RESERVE_MAX (a larger body grows as it comes). */
#define READ_CHUNK 65536
#define BODY_RESERVE_MAX ((size_t)16 << 20)

/* ---- shared and per-thread state ---- */

typedef struct loaded_model {
	char *dir;                     /* owned */
	tokenizer *tok;                /* owned */
	model_config mc;
	preprocessor_config pc;
	struct loaded_model *next;     /* older ones stay loaded: threads may still use them */
} loaded_model;

struct api_ctx {
	api_opts o;
	pthread_mutex_t mu;
	loaded_model *models;          /* (mu) the newest first */
	dclient_model info;            /* (mu) the daemon's MODEL_INFO, last seen */
	bool have_info;
	int64_t created;               /* /v1/models "created" */
};

struct api_thread {
	api_ctx *a;
	dclient *dc;                   /* owned; NULL until connected */
	uint64_t next_id;
	long long retry_at_ms;         /* no warning about qvld being away before this */
	int backoff_ms;
};

/* What one request sees of the model (copied under the lock; pointers stay valid for the
 * process's life). */
typedef struct model_view {
	const loaded_model *lm;
	char model[256];
	char *names[DCLIENT_MAX_NAMES];  /* owned copies */
	int n_names;
	int64_t max_model_len;
	int n_eos;
	int32_t eos[SAMPLER_MAX_EOS];
	int limit_images;
	int64_t min_pixels, max_pixels;
	bool do_sample;
	double temperature, top_p, min_p, repetition_penalty;
	int top_k;
	int64_t max_tokens;
	char api_key[256];
	bool has_api_key;
	char local_media[1024];        /* the daemon's --allowed-local-media-path, or "" */
} model_view;

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic milliseconds, fractional: the debug timing of a chat request (req.at). */
static double mono_msf(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static double now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

api_ctx *api_ctx_new(const api_opts *o)
{
	api_ctx *a = xcalloc(1, sizeof(*a));
	a->o = *o;
	if (a->o.heartbeat_ms <= 0)
		a->o.heartbeat_ms = 1000;
	pthread_mutex_init(&a->mu, NULL);
	a->created = (int64_t)time(NULL);
	return a;
}

void api_ctx_free(api_ctx *a)
{
	if (!a)
		return;
	for (loaded_model *m = a->models, *nx; m; m = nx) {
		nx = m->next;
		tok_free(m->tok);
		free(m->dir);
		free(m);
	}
	if (a->have_info)
		dclient_model_deinit(&a->info);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

api_thread *api_thread_new(api_ctx *a)
{
	api_thread *t = xcalloc(1, sizeof(*t));
	t->a = a;
	t->next_id = 1;
	return t;
}

void api_thread_free(api_thread *t)
{
	if (!t)
		return;
	dclient_free(t->dc);
	free(t);
}

/* Load the tokenizer and settings of the model directory the daemon serves (once). mu held. */
static int load_model_dir(api_ctx *a, const char *dir, qerr *e)
{
	if (a->models && !strcmp(a->models->dir, dir))
		return 0;
	loaded_model *m = xcalloc(1, sizeof(*m));
	int rc = model_config_load_dir(dir, &m->mc, NULL, &m->pc, e);
	if (!rc)
		rc = chat_template_check(dir, e);
	if (!rc) {
		char *path = xasprintf("%s/tokenizer.json", dir);
		rc = tok_load(path, &m->tok, e);
		free(path);
	}
	if (rc) {
		free(m);
		return rc;
	}
	m->dir = xstrdup(dir);
	m->next = a->models;
	a->models = m;
	return 0;
}

/* A live connection to qvld for this thread, connecting when needed. Every request that finds
 * none tries once: a refused connect(2) on a Unix socket costs microseconds, and the first
 * request after qvld is back must be served. What backs off is the warning: logged again only
 * after a period that doubles (100 ms … 5 s) while qvld stays away. */
static int thread_conn(api_thread *t, qerr *e)
{
	if (t->dc && !dclient_dead(t->dc))
		return 0;
	dclient_free(t->dc);
	t->dc = NULL;
	long long now = mono_ms();
	dclient_model info;
	memset(&info, 0, sizeof(info));
	qerr local = { 0 };
	if (!e)
		e = &local;
	int rc = dclient_connect(t->a->o.daemon_socket, CONNECT_TIMEOUT_MS, &t->dc, &info, e);
	if (!rc) {
		pthread_mutex_lock(&t->a->mu);
		rc = load_model_dir(t->a, info.model_dir, e);
		if (!rc) {
			if (t->a->have_info)
				dclient_model_deinit(&t->a->info);
			t->a->info = info;
			t->a->have_info = true;
		}
		pthread_mutex_unlock(&t->a->mu);
		if (rc) {
			dclient_model_deinit(&info);
			dclient_free(t->dc);
			t->dc = NULL;
		}
	}
	if (rc) {
		if (now >= t->retry_at_ms) {
			log_msg(LOG_LEVEL_WARN, "fcgi", "%s", e->msg);
			t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : 100;
			if (t->backoff_ms > MAX_BACKOFF_MS)
				t->backoff_ms = MAX_BACKOFF_MS;
			t->retry_at_ms = now + t->backoff_ms;
		}
		return rc;
	}
	if (t->backoff_ms)
		log_msg(LOG_LEVEL_NOTICE, "fcgi", "connected to qvld at %s again", t->a->o.daemon_socket);
	t->backoff_ms = 0;
	t->retry_at_ms = 0;
	return 0;
}

static void view_of(api_ctx *a, model_view *v)
{
	memset(v, 0, sizeof(*v));
	pthread_mutex_lock(&a->mu);
	const dclient_model *m = &a->info;
	v->lm = a->models;
	snprintf(v->model, sizeof(v->model), "%s", m->model ? m->model : "");
	for (int i = 0; i < m->n_names; i++)
		v->names[v->n_names++] = xstrdup(m->names[i]);
	v->max_model_len = m->max_model_len;
	v->n_eos = m->n_eos;
	memcpy(v->eos, m->eos_ids, sizeof(v->eos));
	v->limit_images = m->limit_images;
	v->min_pixels = m->min_pixels;
	v->max_pixels = m->max_pixels;
	v->do_sample = m->do_sample;
	v->temperature = m->temperature;
	v->top_p = m->top_p;
	v->min_p = m->min_p;
	v->repetition_penalty = m->repetition_penalty;
	v->top_k = m->top_k;
	v->max_tokens = m->max_tokens;
	if (m->api_key) {
		snprintf(v->api_key, sizeof(v->api_key), "%s", m->api_key);
		v->has_api_key = true;
	}
	if (m->allowed_local_media_path)
		snprintf(v->local_media, sizeof(v->local_media), "%s", m->allowed_local_media_path);
	pthread_mutex_unlock(&a->mu);
}

static void view_deinit(model_view *v)
{
	for (int i = 0; i < v->n_names; i++)
		free(v->names[i]);
}

/* ---- responses ---- */

/* Where a chat request's time went, for the debug log (mono_msf stamps; 0: not reached). */
enum req_mark { AT_BEGIN, AT_READ, AT_BODY, AT_PARSED, AT_MEDIA, AT_PROMPT, AT_FIRST, AT_END, AT_N };

typedef struct req {
	api_thread *t;
	const api_io *io;
	bool headers_sent;
	bool client_gone;
	double at[AT_N];
} req;

static void req_mark(req *r, enum req_mark m)
{
	if (!r->at[m] && LOG_ENABLED(LOG_LEVEL_DEBUG))
		r->at[m] = mono_msf();
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

static void out_write(req *r, const char *s, size_t n)
{
	if (!r->client_gone && r->io->write(r->io->ctx, s, n) < 0)
		r->client_gone = true;
}

static void out_flush(req *r)
{
	if (!r->client_gone && r->io->flush(r->io->ctx) < 0)
		r->client_gone = true;
}

static void send_headers(req *r, int status, const char *type, const char *extra)
{
	strbuf h = { 0 };
	strbuf_addf(&h, "Status: %d %s\r\nContent-Type: %s\r\n%s\r\n", status, status_text(status),
		    type, extra ? extra : "");
	out_write(r, h.s, h.len);
	strbuf_deinit(&h);
	r->headers_sent = true;
}

static void send_json(req *r, int status, json_object *o, const char *extra)
{
	send_headers(r, status, "application/json", extra);
	strbuf b = { 0 };
	oai_json_append(&b, o);
	out_write(r, b.s, b.len);
	strbuf_deinit(&b);
}

/* The one place where problems become HTTP errors. */
static void api_fail(req *r, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void api_fail(req *r, int status, const char *param, const char *fmt, ...)
{
	char msg[QERR_MSG_MAX + 128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object *o = oai_error(status, msg, param);
	if (r->headers_sent) {
		/* a stream already started: the error is its last event */
		strbuf b = { 0 };
		oai_sse_data(&b, o);
		oai_sse_done(&b);
		out_write(r, b.s, b.len);
		strbuf_deinit(&b);
	} else {
		send_json(r, status, o, status == 503 ? "Retry-After: 1\r\n" : NULL);
	}
	json_object_put(o);
	if (status >= 500)
		log_msg(LOG_LEVEL_WARN, "fcgi", "%d: %s", status, msg);
}

/* ---- request bodies ---- */

static bool content_type_json(const char *ct)
{
	if (!ct || !*ct)
		return true;               /* absent: take it as JSON, as vLLM does */
	size_t n = strcspn(ct, ";");
	while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return (n == 16 && !strncasecmp(ct, "application/json", 16)) ||
	       (n > 5 && !strncasecmp(ct + n - 5, "+json", 5));
}

/* Read the body into b; on failure the error response is sent, b is empty and false returned. */
static bool read_text(req *r, strbuf *b)
{
	const api_io *io = r->io;
	size_t max = r->t->a->o.max_request_bytes;
	if (!content_type_json(io->param(io->ctx, "CONTENT_TYPE"))) {
		api_fail(r, 415, NULL, "the request body must be JSON (Content-Type: application/json), "
			 "not %s", io->param(io->ctx, "CONTENT_TYPE"));
		return false;
	}
	const char *cl = io->param(io->ctx, "CONTENT_LENGTH");
	if (cl && *cl) {
		char *end = NULL;
		unsigned long long n = strtoull(cl, &end, 10);
		if (*end || n > max) {
			api_fail(r, 413, NULL, "the request body (%s bytes) is over the limit of %zu "
				 "bytes", cl, max);
			return false;
		}
		/* the announced size at once (a body with an image is ~1 MB: no regrowing) */
		strbuf_reserve(b, n < BODY_RESERVE_MAX ? (size_t)n : BODY_RESERVE_MAX);
	}
	/* read straight into b, never more than max + 1 bytes in all */
	for (;;) {
		strbuf_reserve(b, READ_CHUNK);
		b->s[b->len] = 0;          /* a fresh buffer's first byte */
		size_t room = b->cap - b->len - 1;
		if (room > max + 1 - b->len)
			room = max + 1 - b->len;
		long got = io->read(io->ctx, b->s + b->len, room);
		if (got < 0) {
			strbuf_deinit(b);
			r->client_gone = true;
			return false;
		}
		if (got == 0)
			break;
		if (b->len + (size_t)got > max) {
			strbuf_deinit(b);
			api_fail(r, 413, NULL, "the request body is over the limit of %zu bytes", max);
			return false;
		}
		b->len += (size_t)got;
		b->s[b->len] = 0;
	}
	if (!b->len) {
		strbuf_deinit(b);
		api_fail(r, 400, NULL, "the request body is empty; a JSON object is expected");
		return false;
	}
	return true;
}

/* Parse a body read by read_text; on failure the error response is sent and NULL returned. */
static json_object *parse_body(req *r, const char *text, size_t len)
{
	qerr e = { 0 };
	json_object *o = NULL;
	if (jsonx_parse(text, len, "request body", &o, &e)) {
		api_fail(r, 400, NULL, "%s", e.msg);
		return NULL;
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		api_fail(r, 400, NULL, "the request body must be a JSON object");
		return NULL;
	}
	return o;
}

/* ---- data URLs cut out of a chat body (see the top of the file) ---- */

/* Payloads shorter than this stay in the text: cutting them out saves nothing. */
#define BODY_MEDIA_MIN 4096

typedef struct body_media {
	char prefix[48];               /* "qvl-body:<nonce>:", then the run's index */
	size_t prefix_len;
	size_t n;
	struct {
		const char *p;         /* borrowed from the body text: the base64 payload */
		size_t len;
		bool used;             /* resolved by fetch_media */
	} run[CHAT_REQUEST_MAX_IMAGES];
} body_media;

static bool json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* If the ";base64," at text[at] ends the header of a "url" value
 *   "url" ws : ws "data:image/TYPE;base64,PAYLOAD"
 * (the header without '"', '\\' or ','; PAYLOAD without '"' or '\\', at least BODY_MEDIA_MIN
 * bytes), set [*vs, *ve) to the value's text between its quotes and [*ps, *ps + *pl) to PAYLOAD. */
static bool data_url_at(const char *text, size_t len, size_t at, size_t *vs, size_t *ve,
			size_t *ps, size_t *pl)
{
	/* back over the header to the value's opening quote */
	size_t q = at;
	while (q > 0 && at - q < 256 && text[q - 1] != '"' && text[q - 1] != '\\' &&
	       text[q - 1] != ',')
		q--;
	if (q < 1 || text[q - 1] != '"' || at - q < 11 || memcmp(text + q, "data:image/", 11))
		return false;
	/* ws : ws "url", the key's opening quote not escaped */
	size_t k = q - 1;
	while (k > 0 && json_space(text[k - 1]))
		k--;
	if (k < 1 || text[k - 1] != ':')
		return false;
	k--;
	while (k > 0 && json_space(text[k - 1]))
		k--;
	if (k < 6 || text[k - 5] != '"' || memcmp(text + k - 4, "url\"", 4) || text[k - 6] == '\\')
		return false;
	size_t p0 = at + 8;
	const char *end = memchr(text + p0, '"', len - p0);
	if (!end || (size_t)(end - text) - p0 < BODY_MEDIA_MIN ||
	    memchr(text + p0, '\\', (size_t)(end - text) - p0))
		return false;
	*vs = q;
	*ve = (size_t)(end - text);
	*ps = p0;
	*pl = *ve - p0;
	return true;
}

/* The chat body text with its data URL payloads cut out into m (placeholders in their place),
 * or NULL when there is none to cut (m->n == 0). */
static char *body_media_cut(const char *text, size_t len, body_media *m, size_t *out_len)
{
	memset(m, 0, sizeof(*m));
	static const char key[] = ";base64,";
	strbuf b = { 0 };
	size_t from = 0, at = 0;
	while (m->n < CHAT_REQUEST_MAX_IMAGES && at < len) {
		const char *hit = memmem(text + at, len - at, key, sizeof(key) - 1);
		if (!hit)
			break;
		at = (size_t)(hit - text);
		size_t vs, ve, ps, pl;
		if (!data_url_at(text, len, at, &vs, &ve, &ps, &pl)) {
			at += sizeof(key) - 1;
			continue;
		}
		if (!m->n) {
			uint64_t nonce = (uint64_t)mono_ms() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&b;
			if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != (ssize_t)sizeof(nonce)) {
				/* the time and an address will do: a guessed nonce only lets a client
				 * name its own payloads */
			}
			m->prefix_len = (size_t)snprintf(m->prefix, sizeof(m->prefix), "qvl-body:%016llx:",
							 (unsigned long long)nonce);
		}
		strbuf_add(&b, text + from, vs - from);
		strbuf_addf(&b, "%s%zu", m->prefix, m->n);
		m->run[m->n].p = text + ps;
		m->run[m->n].len = pl;
		m->n++;
		from = ve;
		at = ve;
	}
	if (!m->n) {
		strbuf_deinit(&b);
		return NULL;
	}
	strbuf_add(&b, text + from, len - from);
	*out_len = b.len;
	return strbuf_detach(&b, NULL);
}

/* Decode the payload a placeholder names: 1 when url is one of m's (*data, *len set, or the
 * decoder's error), 0 when it is not. */
static int body_media_fetch(body_media *m, const char *url, char **data, size_t *len, int *rc,
			    qerr *e)
{
	if (!m || !m->n || strncmp(url, m->prefix, m->prefix_len))
		return 0;
	char *end = NULL;
	unsigned long long i = strtoull(url + m->prefix_len, &end, 10);
	if (*end || i >= m->n)
		return 0;
	m->run[i].used = true;
	*rc = chat_base64_decode(m->run[i].p, m->run[i].len, CHAT_REQUEST_MAX_IMAGE_BYTES, data, len,
				 e);
	return 1;
}

static bool body_media_all_used(const body_media *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (!m->run[i].used)
			return false;
	return true;
}

/* A chat body: parsed with its data URLs cut out into m when that parses to an object, else
 * (m->n = 0) as parse_body parses it. */
static json_object *parse_chat_body(req *r, const strbuf *text, body_media *m)
{
	size_t cut_len = 0;
	char *cut = body_media_cut(text->s, text->len, m, &cut_len);
	if (cut) {
		json_object *o = NULL;
		int rc = jsonx_parse(cut, cut_len, "request body", &o, NULL);
		free(cut);
		if (!rc && json_object_is_type(o, json_type_object))
			return o;
		json_object_put(o);
		m->n = 0;
	}
	return parse_body(r, text->s, text->len);
}

/* Constant-time comparison of the bearer token with the key. */
static bool key_ok(const char *auth, const char *key)
{
	if (!auth || strncasecmp(auth, "Bearer ", 7))
		return false;
	const char *tok = auth + 7;
	size_t a = strlen(tok), b = strlen(key);
	unsigned char d = (unsigned char)(a != b);
	for (size_t i = 0; i < b; i++)
		d |= (unsigned char)(tok[i < a ? i : 0] ^ key[i]);
	return d == 0;
}

/* ---- sampling parameters and limits ---- */

/* The request's sampling parameters over the model's defaults (vLLM: request, then
 * generation_config). */
static sampling_params params_of(const model_view *v, const chat_request *cr)
{
	sampling_params sp = { 0 };
	bool greedy = cr->has_temperature ? cr->temperature == 0 : (!v->do_sample || v->temperature == 0);
	sp.temperature = greedy ? 0 : (cr->has_temperature ? cr->temperature : v->temperature);
	sp.top_p = cr->has_top_p ? cr->top_p : (v->top_p > 0 ? v->top_p : 1);
	sp.top_k = (int32_t)(cr->has_top_k ? cr->top_k : v->top_k);
	sp.min_p = cr->has_min_p ? cr->min_p : v->min_p;
	sp.repetition_penalty = cr->has_repetition_penalty ? cr->repetition_penalty
		: (v->repetition_penalty > 0 ? v->repetition_penalty : 1);
	sp.presence_penalty = cr->presence_penalty;
	sp.frequency_penalty = cr->frequency_penalty;
	sp.has_seed = cr->has_seed;
	sp.seed = cr->seed;
	sp.min_tokens = (int32_t)cr->min_tokens;
	sp.ignore_eos = cr->ignore_eos;
	sp.n_stop_ids = (int32_t)cr->n_stop_token_ids;
	memcpy(sp.stop_ids, cr->stop_token_ids, cr->n_stop_token_ids * sizeof(int32_t));
	sp.logprobs = cr->logprobs ? cr->top_logprobs : -1;
	return sp;
}

/* max_tokens for a prompt of n ids: the request's (an error when it cannot fit, as vLLM), else
 * the model's default capped by the room left. 0 with the error response sent. */
static int32_t max_tokens_for(req *r, const model_view *v, int64_t asked, int64_t n)
{
	int64_t room = v->max_model_len - n;
	if (room < 1) {
		api_fail(r, 400, "messages", "This model's maximum context length is %lld tokens. "
			 "However, your request has %lld input tokens. Please reduce the length of the "
			 "input messages.", (long long)v->max_model_len, (long long)n);
		return 0;
	}
	if (asked >= 0 && asked > room) {
		api_fail(r, 400, "max_tokens", "This model's maximum context length is %lld tokens. "
			 "However, you requested %lld tokens (%lld in the messages, %lld in the "
			 "completion). Please reduce the length of the messages or completion.",
			 (long long)v->max_model_len, (long long)(n + asked), (long long)n,
			 (long long)asked);
		return 0;
	}
	int64_t m = asked >= 0 ? asked : (v->max_tokens > 0 && v->max_tokens < room ? v->max_tokens : room);
	return (int32_t)(m > INT32_MAX ? INT32_MAX : m);
}

/* ---- running a request on qvld ---- */

typedef struct choice {
	detok *d;                      /* owned */
	strbuf text;                   /* all released text (non-streaming content) */
	strbuf delta;                  /* released since the last chunk */
	json_object *lp;               /* owned: logprob entries not yet sent (or all) */
	oai_text_logprobs tlp;         /* /v1/completions logprobs */
	oai_tool_stream ts;
	oai_tool_calls calls;
	size_t calls_sent;
	int64_t n_tokens;
	bool role_sent, done, finish_sent;
	const char *finish;            /* "stop" | "length" */
	oai_stop_reason stop;
} choice;

typedef struct run {
	req *r;
	const model_view *v;
	const chat_request *cr;        /* chat: the request; completions: its parsed fields too */
	bool chat, stream, include_usage, tools;
	uint64_t id;
	uint32_t n;
	choice *ch;                    /* owned: n */
	uint32_t n_done, n_final;      /* finished here; FINISH/ERROR frames read */
	oai_meta meta;
	oai_usage usage;
	bool cancelled, failed;
} run;

static bool is_stop_token(const run *u, int32_t id)
{
	if (!u->cr->ignore_eos)
		for (int i = 0; i < u->v->n_eos; i++)
			if (u->v->eos[i] == id)
				return true;
	for (size_t i = 0; i < u->cr->n_stop_token_ids; i++)
		if (u->cr->stop_token_ids[i] == id)
			return true;
	return false;
}

static bool is_stop_id(const run *u, int32_t id)
{
	for (size_t i = 0; i < u->cr->n_stop_token_ids; i++)
		if (u->cr->stop_token_ids[i] == id)
			return true;
	return false;
}

/* Send the chunk of choice i with what it has released since the last one. */
static void send_chunk(run *u, uint32_t i, bool final)
{
	choice *c = &u->ch[i];
	strbuf b = { 0 };
	if (u->chat) {
		if (!c->role_sent) {
			json_object *o = oai_chat_chunk_role(&u->meta, i);
			oai_sse_data(&b, o);
			json_object_put(o);
			c->role_sent = true;
		}
		strbuf content = { 0 };
		size_t calls_before = c->calls.n;
		if (u->tools) {
			oai_tool_stream_feed(&c->ts, c->delta.s ? c->delta.s : "", c->delta.len, &content,
					     &c->calls);
			if (final)
				oai_tool_stream_finish(&c->ts, &content, &c->calls);
		} else {
			strbuf_add(&content, c->delta.s ? c->delta.s : "", c->delta.len);
		}
		bool any = content.len || c->calls.n > calls_before ||
			   (c->lp && json_object_array_length(c->lp));
		if (any) {
			oai_chat_delta d = { .content = content.len ? content.s : NULL,
					     .content_len = content.len,
					     .tool_calls = c->calls.v + calls_before,
					     .n_tool_calls = c->calls.n - calls_before,
					     .tool_index = calls_before, .logprobs = c->lp };
			json_object *o = oai_chat_chunk(&u->meta, i, &d, NULL);
			oai_sse_data(&b, o);
			json_object_put(o);
		}
		if (final) {
			oai_chat_delta d = { .finish_reason = c->calls.n ? "tool_calls" : c->finish,
					     .stop = c->stop };
			json_object *o = oai_chat_chunk(&u->meta, i, &d, NULL);
			oai_sse_data(&b, o);
			json_object_put(o);
			c->finish_sent = true;
		}
		strbuf_deinit(&content);
	} else {
		json_object *lp = u->cr->logprobs ? oai_text_logprobs_take(&c->tlp) : NULL;
		if (c->delta.len || final) {
			oai_text_choice t = { .text = c->delta.s ? c->delta.s : "", .text_len = c->delta.len,
					      .logprobs = lp, .finish_reason = final ? c->finish : NULL,
					      .stop = c->stop };
			json_object *o = oai_completion_chunk(&u->meta, i, &t, NULL);
			oai_sse_data(&b, o);
			json_object_put(o);
		}
		json_object_put(lp);
		if (final)
			c->finish_sent = true;
	}
	if (c->lp) {
		json_object_put(c->lp);
		c->lp = json_object_new_array();
	}
	strbuf_truncate(&c->delta, 0);
	out_write(u->r, b.s, b.len);
	strbuf_deinit(&b);
}

/* A choice ended (here or in qvld): remember why. */
static void choice_done(run *u, choice *c, const char *finish)
{
	if (c->done)
		return;
	c->done = true;
	c->finish = finish;
	detok_finish(c->d, &c->delta);
	u->n_done++;
}

static void on_tokens(run *u, const dclient_event *ev)
{
	if (ev->index >= u->n)
		return;
	choice *c = &u->ch[ev->index];
	for (uint32_t k = 0; k < ev->n && !c->done; k++) {
		int32_t id = ev->ids[k];
		c->n_tokens++;
		if (ev->lp) {
			if (u->chat && c->lp)
				json_object_array_add(c->lp, oai_logprob_entry(u->v->lm->tok,
									       &ev->lp[k],
									       u->cr->return_tokens_as_token_ids));
			else if (!u->chat)
				oai_text_logprobs_add(&c->tlp, u->v->lm->tok, &ev->lp[k],
						      u->cr->return_tokens_as_token_ids);
		}
		bool stop_tok = is_stop_token(u, id);
		if (stop_tok && is_stop_id(u, id)) {
			c->stop.has_id = true;
			c->stop.id = id;
		}
		size_t before = c->delta.len;
		if ((!stop_tok || u->cr->include_stop_str_in_output) && detok_push(c->d, &id, 1, &c->delta)) {
			int si = detok_stop_index(c->d);
			c->stop.str = si >= 0 ? u->cr->stop[si] : NULL;
			choice_done(u, c, "stop");
		}
		strbuf_add(&c->text, c->delta.s ? c->delta.s + before : "", c->delta.len - before);
	}
}

static void on_finish(run *u, const dclient_event *ev)
{
	u->n_final++;
	if (ev->index >= u->n)
		return;
	choice *c = &u->ch[ev->index];
	u->usage.prompt_tokens = ev->finish.prompt_tokens;
	if (ev->index == 0)
		u->usage.cached_tokens = ev->finish.cached_tokens;
	if (!c->done) {
		size_t before = c->delta.len;
		choice_done(u, c, ev->finish.reason == WIRE_FINISH_LENGTH ? "length" : "stop");
		strbuf_add(&c->text, c->delta.s ? c->delta.s + before : "", c->delta.len - before);
	}
}

/* Read frames until every choice has its FINISH (or the request an ERROR), streaming chunks
 * as they come. Returns 0, or the HTTP status of a failure (the response not yet sent). */
static int pump(run *u)
{
	api_thread *t = u->r->t;
	int heartbeat = t->a->o.heartbeat_ms;
	while (u->n_final < u->n) {
		if (!u->cancelled && (u->r->client_gone || u->r->io->gone(u->r->io->ctx) ||
				      u->n_done == u->n)) {
			/* nobody listens any more, or every choice ended here: stop qvld's work */
			u->cancelled = true;
			u->r->client_gone |= u->n_done < u->n;
			dclient_cancel(t->dc, u->id, NULL);
		}
		dclient_event ev;
		qerr e = { 0 };
		int rc = dclient_next(t->dc, heartbeat, &ev, &e);
		if (rc < 0) {
			log_msg(LOG_LEVEL_WARN, "fcgi", "qvld connection lost: %s", e.msg);
			u->failed = true;
			return 503;
		}
		if (rc == 0) {
			if (u->stream && !u->r->client_gone) {
				strbuf b = { 0 };
				oai_sse_ping(&b);
				out_write(u->r, b.s, b.len);
				strbuf_deinit(&b);
				out_flush(u->r);
			}
			continue;
		}
		if (ev.id != u->id)
			continue;              /* a late frame of an earlier, cancelled request */
		if (ev.type == DCLIENT_ERROR) {
			u->failed = true;
			int st = ev.error.code == WIRE_E_BUSY || ev.error.code == WIRE_E_SHUTTING_DOWN ? 503
			       : ev.error.code == WIRE_E_INTERNAL ? 500 : 400;
			api_fail(u->r, st, NULL, "%s", ev.error.message);
			return -1;
		}
		if (ev.type == DCLIENT_TOKENS) {
			req_mark(u->r, AT_FIRST);
			on_tokens(u, &ev);
		}
		else if (ev.type == DCLIENT_FINISH)
			on_finish(u, &ev);
		if (u->stream && !u->r->client_gone) {
			for (uint32_t i = 0; i < u->n; i++) {
				choice *c = &u->ch[i];
				if (c->finish_sent)
					continue;
				if (c->delta.len || c->done || (c->lp && json_object_array_length(c->lp)) ||
				    !c->role_sent)
					send_chunk(u, i, c->done);
			}
			out_flush(u->r);
		}
	}
	return 0;
}

static void run_init(run *u, req *r, const model_view *v, const chat_request *cr, bool chat,
		     uint32_t n)
{
	memset(u, 0, sizeof(*u));
	u->r = r;
	u->v = v;
	u->cr = cr;
	u->chat = chat;
	u->n = n;
	u->ch = xcalloc(n, sizeof(*u->ch));
	detok_opts dop = { .skip_special_tokens = cr->skip_special_tokens,
			   .include_stop_str_in_output = cr->include_stop_str_in_output,
			   .stop = cr->stop, .n_stop = cr->n_stop, .min_tokens = cr->min_tokens };
	for (uint32_t i = 0; i < n; i++) {
		/* the stop strings were checked when the request was parsed */
		detok_new(v->lm->tok, &dop, &u->ch[i].d, NULL);
		u->ch[i].lp = cr->logprobs ? json_object_new_array() : NULL;
		oai_text_logprobs_init(&u->ch[i].tlp, 0);
		oai_tool_stream_init(&u->ch[i].ts);
	}
	oai_meta_init(&u->meta, chat ? OAI_CHAT : OAI_COMPLETION, cr->model ? cr->model : v->model);
}

static void run_deinit(run *u)
{
	for (uint32_t i = 0; i < u->n; i++) {
		choice *c = &u->ch[i];
		detok_free(c->d);
		strbuf_deinit(&c->text);
		strbuf_deinit(&c->delta);
		json_object_put(c->lp);
		oai_text_logprobs_deinit(&c->tlp);
		oai_tool_stream_deinit(&c->ts);
		oai_tool_calls_deinit(&c->calls);
	}
	free(u->ch);
}

/* The whole response of a finished non-streaming run. */
static void send_final(run *u)
{
	u->usage.completion_tokens = 0;
	for (uint32_t i = 0; i < u->n; i++)
		u->usage.completion_tokens += u->ch[i].n_tokens;
	json_object *o;
	if (u->chat) {
		oai_chat_choice *cc = xcalloc(u->n, sizeof(*cc));
		strbuf *content = xcalloc(u->n, sizeof(*content));
		for (uint32_t i = 0; i < u->n; i++) {
			choice *c = &u->ch[i];
			const char *text = c->text.s ? c->text.s : "";
			cc[i] = (oai_chat_choice){ .content = text, .content_len = c->text.len,
						   .logprobs = c->lp, .finish_reason = c->finish,
						   .stop = c->stop };
			if (u->tools) {
				oai_tool_parse(text, c->text.len, &content[i], &c->calls);
				cc[i].content = content[i].len ? content[i].s : NULL;
				cc[i].content_len = content[i].len;
				cc[i].tool_calls = c->calls.v;
				cc[i].n_tool_calls = c->calls.n;
				if (c->calls.n)
					cc[i].finish_reason = "tool_calls";
			}
		}
		o = oai_chat_completion(&u->meta, cc, u->n, &u->usage);
		for (uint32_t i = 0; i < u->n; i++)
			strbuf_deinit(&content[i]);
		free(content);
		free(cc);
	} else {
		oai_text_choice *tc = xcalloc(u->n, sizeof(*tc));
		json_object **lps = xcalloc(u->n, sizeof(*lps));
		for (uint32_t i = 0; i < u->n; i++) {
			choice *c = &u->ch[i];
			lps[i] = u->cr->logprobs ? oai_text_logprobs_take(&c->tlp) : NULL;
			tc[i] = (oai_text_choice){ .text = c->text.s ? c->text.s : "", .text_len = c->text.len,
						   .logprobs = lps[i], .finish_reason = c->finish,
						   .stop = c->stop };
		}
		o = oai_completion(&u->meta, tc, u->n, &u->usage);
		for (uint32_t i = 0; i < u->n; i++)
			json_object_put(lps[i]);
		free(lps);
		free(tc);
	}
	send_json(u->r, 200, o, NULL);
	json_object_put(o);
}

/* Submit s and answer the client, streaming or not. */
static void execute(run *u, wire_submit *s)
{
	api_thread *t = u->r->t;
	qerr e = { 0 };
	u->id = t->next_id++;
	if (wire_submit_size(s) > WIRE_MAX_PAYLOAD) {
		api_fail(u->r, 413, NULL, "the prompt and its images are too large to send (%llu bytes "
			 "after resizing; the limit is %u)", (unsigned long long)wire_submit_size(s),
			 WIRE_MAX_PAYLOAD);
		return;
	}
	if (dclient_submit(t->dc, u->id, s, &e)) {
		/* the connection died since the last request (qvld restarted): nothing was started,
		 * so connect again and send it once more */
		if (thread_conn(t, &e) || dclient_submit(t->dc, u->id, s, &e)) {
			api_fail(u->r, 503, NULL, "the inference daemon is not available: %s", e.msg);
			return;
		}
	}
	if (u->stream) {
		send_headers(u->r, 200, "text/event-stream",
			     "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
		out_flush(u->r);
	}
	int st = pump(u);
	if (st > 0) {
		api_fail(u->r, st, NULL, "the connection to qvld was lost during the request");
		return;
	}
	if (st < 0 || u->r->client_gone)
		return;
	if (!u->stream) {
		send_final(u);
		return;
	}
	strbuf b = { 0 };
	if (u->include_usage) {
		u->usage.completion_tokens = 0;
		for (uint32_t i = 0; i < u->n; i++)
			u->usage.completion_tokens += u->ch[i].n_tokens;
		json_object *o = u->chat ? oai_chat_chunk_usage(&u->meta, &u->usage)
					 : oai_completion_chunk_usage(&u->meta, &u->usage);
		oai_sse_data(&b, o);
		json_object_put(o);
	}
	oai_sse_done(&b);
	out_write(u->r, b.s, b.len);
	out_flush(u->r);
	strbuf_deinit(&b);
}

/* ---- handlers ---- */

typedef struct fetch_ctx {
	api_ctx *a;
	const char *local_media;       /* borrowed: the daemon's, when the responder has none */
	body_media *bm;                /* borrowed: payloads cut out of the body, or NULL */
} fetch_ctx;

static int fetch_media(void *ctx, const char *url, char **data, size_t *len, qerr *e)
{
	fetch_ctx *f = ctx;
	int rc;
	if (body_media_fetch(f->bm, url, data, len, &rc, e))
		return rc;
	media_opts mo;
	media_opts_init(&mo);
	mo.allowed_domains = f->a->o.allowed_media_domains;
	mo.allow_private = f->a->o.allow_private_media;
	mo.allowed_local_media_path = f->a->o.allowed_local_media_path ? f->a->o.allowed_local_media_path
					: f->local_media && *f->local_media ? f->local_media : NULL;
	return media_fetch(url, &mo, data, len, e);
}

/* "model", when given, must be a served name. */
static bool model_ok(req *r, const model_view *v, const char *model)
{
	if (!model)
		return true;
	for (int i = 0; i < v->n_names; i++)
		if (!strcmp(model, v->names[i]))
			return true;
	api_fail(r, 404, "model", "The model `%s` does not exist.", model);
	return false;
}

/* stream and stream_options.include_usage. */
static int stream_opts(req *r, json_object *body, bool *stream, bool *usage)
{
	qerr e = { 0 };
	*stream = *usage = false;
	int rc = jsonx_get_bool(body, "stream", stream, "request", &e);
	json_object *so = NULL;
	if (rc >= 0)
		rc = jsonx_get_object(body, "stream_options", &so, "request", &e);
	if (rc >= 0 && so)
		rc = jsonx_get_bool(so, "include_usage", usage, "request: stream_options", &e);
	if (rc < 0) {
		api_fail(r, 400, NULL, "%s", e.msg);
		return -1;
	}
	return 0;
}

/* response_format: "text", or "json_object" (guided JSON: *guided set). json_schema needs a
 * schema-driven grammar, which this server does not have yet. */
static int response_format(req *r, json_object *body, bool *guided)
{
	json_object *rf = NULL, *type = NULL;
	*guided = false;
	if (!json_object_object_get_ex(body, "response_format", &rf) || !rf)
		return 0;
	if (!json_object_is_type(rf, json_type_object) ||
	    !json_object_object_get_ex(rf, "type", &type) || !json_object_is_type(type, json_type_string)) {
		api_fail(r, 400, "response_format", "response_format must be an object with a type");
		return -1;
	}
	const char *t = json_object_get_string(type);
	if (!strcmp(t, "json_object")) {
		*guided = true;
		return 0;
	}
	if (strcmp(t, "text")) {
		api_fail(r, 400, "response_format", "response_format type '%s' is not supported: use "
			 "\"text\" or \"json_object\"", t);
		return -1;
	}
	return 0;
}

static void fill_submit(wire_submit *s, const prompt *p, sampling_params sp, int32_t max_tokens,
			uint32_t n)
{
	memset(s, 0, sizeof(*s));
	s->n_ids = (uint32_t)p->ids.n;
	s->ids = p->ids.v;
	s->n_images = (uint32_t)p->n_images;
	for (size_t i = 0; i < p->n_images; i++) {
		const prompt_image *im = &p->images[i];
		s->images[i] = (wire_image){ .start = im->start, .grid_t = im->grid_t,
					     .grid_h = im->grid_h, .grid_w = im->grid_w,
					     .width = im->resized.w, .height = im->resized.h,
					     .rgb = im->resized.px };
		memcpy(s->images[i].hash, im->hash, 32);
	}
	s->sp = sp;
	s->max_tokens = max_tokens;
	s->n = n;
	s->arrival = now_real();
}

/* handle_chat's answer when the body must be parsed again without its payloads cut out (bm):
 * nothing has been sent. */
#define CHAT_RETRY 1

static int handle_chat(req *r, json_object *body, body_media *bm)
{
	api_thread *t = r->t;
	qerr e = { 0 };
	if (thread_conn(t, &e)) {
		api_fail(r, 503, NULL, "the inference daemon is not available: %s", e.msg);
		return 0;
	}
	int ret = 0;
	model_view v;
	view_of(t->a, &v);
	bool stream, usage, guided;
	chat_request cr;
	memset(&cr, 0, sizeof(cr));
	prompt p;
	memset(&p, 0, sizeof(p));
	fetch_ctx fc = { .a = t->a, .local_media = v.local_media, .bm = bm };
	chat_media cm = { .fetch = fetch_media, .ctx = &fc };
	if (stream_opts(r, body, &stream, &usage) || response_format(r, body, &guided))
		goto out;
	int rc = chat_request_parse_media(body, &cm, &cr, &e);
	req_mark(r, AT_MEDIA);
	if (bm && (rc || !body_media_all_used(bm))) {
		/* a failure is reported from the body as sent; a payload not taken as an image
		 * URL was a string of some other meaning */
		ret = CHAT_RETRY;
		goto out;
	}
	if (rc) {
		api_fail(r, 400, NULL, "%s", e.msg);
		goto out;
	}
	if (!model_ok(r, &v, cr.model))
		goto out;
	if ((int64_t)cr.n_images > v.limit_images) {
		api_fail(r, 400, "messages", "At most %d image(s) may be provided in one request; %zu "
			 "were given", v.limit_images, cr.n_images);
		goto out;
	}
	preprocessor_config pc = v.lm->pc;
	if (v.min_pixels > 0)
		pc.min_pixels = v.min_pixels;
	if (v.max_pixels > 0)
		pc.max_pixels = v.max_pixels;
	rc = prompt_build_chat(v.lm->tok, &v.lm->mc, &pc, &cr, &p, &e);
	req_mark(r, AT_PROMPT);
	if (rc) {
		api_fail(r, 400, "messages", "%s", e.msg);
		goto out;
	}
	int32_t max_tokens = max_tokens_for(r, &v, cr.max_tokens, (int64_t)p.ids.n);
	if (!max_tokens)
		goto out;
	for (size_t i = 0; i < cr.n_stop_token_ids; i++)
		if (cr.stop_token_ids[i] >= v.lm->mc.text.vocab_size) {
			api_fail(r, 400, "stop_token_ids", "stop_token_ids[%zu]: %d is not a token id", i,
				 cr.stop_token_ids[i]);
			goto out;
		}
	wire_submit s;
	fill_submit(&s, &p, params_of(&v, &cr), max_tokens, cr.n ? cr.n : 1);
	s.sp.guided = guided ? SAMPLER_GUIDED_JSON : SAMPLER_GUIDED_NONE;
	run u;
	run_init(&u, r, &v, &cr, true, s.n);
	u.stream = stream;
	u.include_usage = usage;
	json_object *tc = NULL;
	u.tools = cr.tools && json_object_array_length(cr.tools) > 0 &&
		  !(json_object_object_get_ex(body, "tool_choice", &tc) &&
		    json_object_is_type(tc, json_type_string) && !strcmp(json_object_get_string(tc), "none"));
	execute(&u, &s);
	run_deinit(&u);
out:
	prompt_deinit(&p);
	chat_request_deinit(&cr);
	view_deinit(&v);
	return ret;
}

/* /v1/completions: "prompt" as a string or an array of token ids. */
static void handle_completions(req *r, json_object *body)
{
	api_thread *t = r->t;
	qerr e = { 0 };
	if (thread_conn(t, &e)) {
		api_fail(r, 503, NULL, "the inference daemon is not available: %s", e.msg);
		return;
	}
	model_view v;
	view_of(t->a, &v);
	bool stream, usage;
	chat_request cr;
	memset(&cr, 0, sizeof(cr));
	prompt p;
	memset(&p, 0, sizeof(p));
	/* the sampling fields are the chat ones: parse them through a copy with empty messages */
	json_object *copy = NULL, *pr = NULL;
	if (stream_opts(r, body, &stream, &usage))
		goto out;
	if (!json_object_object_get_ex(body, "prompt", &pr) || !pr) {
		api_fail(r, 400, "prompt", "prompt: missing");
		goto out;
	}
	json_object_deep_copy(body, &copy, NULL);
	json_object_object_add(copy, "messages", json_object_new_array());
	json_object_object_del(copy, "tools");
	int rc = chat_request_parse(copy, false, &cr, &e);
	if (rc) {
		api_fail(r, 400, NULL, "%s", e.msg);
		goto out;
	}
	if (!model_ok(r, &v, cr.model))
		goto out;
	if (json_object_is_type(pr, json_type_string)) {
		tok_encode(v.lm->tok, json_object_get_string(pr), (size_t)json_object_get_string_len(pr),
			   &p.ids);
	} else if (json_object_is_type(pr, json_type_array) && json_object_array_length(pr) > 0 &&
		   !json_object_is_type(json_object_array_get_idx(pr, 0), json_type_string) &&
		   !json_object_is_type(json_object_array_get_idx(pr, 0), json_type_array)) {
		size_t n = json_object_array_length(pr);
		p.ids.v = xmalloc(n * sizeof(int32_t));
		for (size_t i = 0; i < n; i++) {
			int64_t id;
			if (!jsonx_as_int(json_object_array_get_idx(pr, i), 0, v.lm->mc.text.vocab_size - 1, &id)) {
				api_fail(r, 400, "prompt", "prompt[%zu]: expected a token id below %d", i,
					 v.lm->mc.text.vocab_size);
				goto out;
			}
			p.ids.v[p.ids.n++] = (int32_t)id;
		}
	} else {
		api_fail(r, 400, "prompt", "prompt: expected a string or an array of token ids (one "
			 "prompt per request)");
		goto out;
	}
	if (!p.ids.n) {
		api_fail(r, 400, "prompt", "prompt: empty");
		goto out;
	}
	for (size_t i = 0; i < p.ids.n; i++)
		if (p.ids.v[i] == v.lm->mc.image_token_id) {
			api_fail(r, 400, "prompt", "prompt: image tokens need images; use "
				 "/v1/chat/completions");
			goto out;
		}
	int32_t max_tokens = max_tokens_for(r, &v, cr.max_tokens >= 0 ? cr.max_tokens : 16,
					    (int64_t)p.ids.n);
	if (!max_tokens)
		goto out;
	wire_submit s;
	fill_submit(&s, &p, params_of(&v, &cr), max_tokens, cr.n ? cr.n : 1);
	run u;
	run_init(&u, r, &v, &cr, false, s.n);
	u.stream = stream;
	u.include_usage = usage;
	execute(&u, &s);
	run_deinit(&u);
out:
	json_object_put(copy);
	prompt_deinit(&p);
	chat_request_deinit(&cr);
	view_deinit(&v);
}

/* /tokenize: {"prompt": text} or {"messages": […]} → vLLM's {"count","max_model_len","tokens"}. */
static void handle_tokenize(req *r, json_object *body)
{
	api_thread *t = r->t;
	qerr e = { 0 };
	if (thread_conn(t, &e)) {
		api_fail(r, 503, NULL, "the inference daemon is not available: %s", e.msg);
		return;
	}
	model_view v;
	view_of(t->a, &v);
	chat_request cr;
	memset(&cr, 0, sizeof(cr));
	prompt p;
	memset(&p, 0, sizeof(p));
	json_object *pr = NULL, *msgs = NULL;
	if (json_object_object_get_ex(body, "prompt", &pr) && json_object_is_type(pr, json_type_string)) {
		tok_encode(v.lm->tok, json_object_get_string(pr), (size_t)json_object_get_string_len(pr),
			   &p.ids);
	} else if (json_object_object_get_ex(body, "messages", &msgs)) {
		fetch_ctx fc = { .a = t->a, .local_media = v.local_media };
		chat_media cm = { .fetch = fetch_media, .ctx = &fc };
		int rc = chat_request_parse_media(body, &cm, &cr, &e);
		if (!rc)
			rc = prompt_build_chat(v.lm->tok, &v.lm->mc, &v.lm->pc, &cr, &p, &e);
		if (rc) {
			api_fail(r, 400, NULL, "%s", e.msg);
			goto out;
		}
	} else {
		api_fail(r, 400, "prompt", "expected \"prompt\" (a string) or \"messages\"");
		goto out;
	}
	json_object *o = json_object_new_object(), *arr = json_object_new_array();
	for (size_t i = 0; i < p.ids.n; i++)
		json_object_array_add(arr, json_object_new_int(p.ids.v[i]));
	json_object_object_add(o, "count", json_object_new_int64((int64_t)p.ids.n));
	json_object_object_add(o, "max_model_len", json_object_new_int64(v.max_model_len));
	json_object_object_add(o, "tokens", arr);
	json_object_object_add(o, "token_strs", NULL);
	send_json(r, 200, o, NULL);
	json_object_put(o);
out:
	prompt_deinit(&p);
	chat_request_deinit(&cr);
	view_deinit(&v);
}

/* /detokenize: {"tokens": [ids]} → {"prompt": text}. */
static void handle_detokenize(req *r, json_object *body)
{
	api_thread *t = r->t;
	qerr e = { 0 };
	if (thread_conn(t, &e)) {
		api_fail(r, 503, NULL, "the inference daemon is not available: %s", e.msg);
		return;
	}
	model_view v;
	view_of(t->a, &v);
	json_object *toks = NULL;
	if (!json_object_object_get_ex(body, "tokens", &toks) || !json_object_is_type(toks, json_type_array)) {
		api_fail(r, 400, "tokens", "tokens: expected an array of token ids");
		view_deinit(&v);
		return;
	}
	size_t n = json_object_array_length(toks);
	int32_t *ids = xmalloc((n + 1) * sizeof(int32_t));
	for (size_t i = 0; i < n; i++) {
		int64_t id;
		if (!jsonx_as_int(json_object_array_get_idx(toks, i), 0, v.lm->mc.text.vocab_size - 1, &id)) {
			api_fail(r, 400, "tokens", "tokens[%zu]: expected a token id below %d", i,
				 v.lm->mc.text.vocab_size);
			free(ids);
			view_deinit(&v);
			return;
		}
		ids[i] = (int32_t)id;
	}
	size_t len = 0;
	char *text = tok_decode(v.lm->tok, ids, n, false, &len);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "prompt", json_object_new_string_len(text, (int)len));
	send_json(r, 200, o, NULL);
	json_object_put(o);
	free(text);
	free(ids);
	view_deinit(&v);
}

static void handle_models(req *r)
{
	qerr e = { 0 };
	if (thread_conn(r->t, &e)) {
		api_fail(r, 503, NULL, "the inference daemon is not available: %s", e.msg);
		return;
	}
	model_view v;
	view_of(r->t->a, &v);
	json_object *o = oai_models((const char *const *)v.names, (size_t)v.n_names,
				    v.n_names ? v.names[0] : NULL,
				    v.max_model_len, r->t->a->created);
	send_json(r, 200, o, NULL);
	json_object_put(o);
	view_deinit(&v);
}

static void handle_health(req *r)
{
	qerr e = { 0 };
	if (thread_conn(r->t, &e)) {
		api_fail(r, 503, NULL, "the inference daemon is not available: %s", e.msg);
		return;
	}
	send_headers(r, 200, "application/json", NULL);
}

static void handle_version(req *r)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
	send_json(r, 200, o, NULL);
	json_object_put(o);
}

static void handle_metrics(req *r)
{
	qerr e = { 0 };
	json_object *st = NULL;
	if (thread_conn(r->t, &e) || dclient_stats(r->t->dc, CONNECT_TIMEOUT_MS, &st, &e)) {
		api_fail(r, 503, NULL, "the inference daemon is not available: %s", e.msg);
		return;
	}
	model_view v;
	view_of(r->t->a, &v);
	strbuf b = { 0 };
	oai_prometheus(&b, st, v.model);
	send_headers(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
	out_write(r, b.s ? b.s : "", b.len);
	strbuf_deinit(&b);
	json_object_put(st);
	view_deinit(&v);
}

/* ---- routing ---- */

typedef enum route_id {
	R_NONE, R_MODELS, R_CHAT, R_COMPLETIONS, R_HEALTH, R_VERSION, R_METRICS, R_TOKENIZE,
	R_DETOKENIZE,
} route_id;

static const struct route {
	const char *path;
	route_id id;
	const char *method;
	bool auth;
} routes[] = {
	{ "/v1/models", R_MODELS, "GET", true },
	{ "/v1/chat/completions", R_CHAT, "POST", true },
	{ "/v1/completions", R_COMPLETIONS, "POST", true },
	{ "/health", R_HEALTH, "GET", false },
	{ "/version", R_VERSION, "GET", false },
	{ "/metrics", R_METRICS, "GET", false },
	{ "/tokenize", R_TOKENIZE, "POST", true },
	{ "/detokenize", R_DETOKENIZE, "POST", true },
};

/* The request path without the query: REQUEST_URI, else SCRIPT_NAME + PATH_INFO. */
static void request_path(const api_io *io, char *out, size_t n)
{
	const char *uri = io->param(io->ctx, "REQUEST_URI");
	if (uri && *uri) {
		size_t len = strcspn(uri, "?#");
		snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), uri);
	} else {
		const char *sn = io->param(io->ctx, "SCRIPT_NAME"), *pi = io->param(io->ctx, "PATH_INFO");
		snprintf(out, n, "%s%s", sn ? sn : "", pi ? pi : "");
	}
	size_t len = strlen(out);
	while (len > 1 && out[len - 1] == '/')
		out[--len] = 0;
}

void api_handle(api_thread *t, const api_io *io)
{
	req r = { .t = t, .io = io };
	req_mark(&r, AT_BEGIN);
	char path[1024];
	request_path(io, path, sizeof(path));
	const char *method = io->param(io->ctx, "REQUEST_METHOD");
	if (!method)
		method = "GET";
	const struct route *rt = NULL;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (!strcmp(path, routes[i].path))
			rt = &routes[i];
	if (!rt) {
		api_fail(&r, 404, NULL, "%s: no such route", path);
		out_flush(&r);
		return;
	}
	if (strcmp(method, rt->method) && !(rt->method[0] == 'G' && !strcmp(method, "HEAD"))) {
		api_fail(&r, 405, NULL, "%s takes %s, not %s", path, rt->method, method);
		out_flush(&r);
		return;
	}
	if (rt->auth) {
		const char *key = t->a->o.api_key;
		model_view v;
		bool daemon_key = false;
		char dkey[256] = "";
		if (!key) {
			/* the daemon's --api-key counts too: learn it (a failed connection is the
			 * handler's 503 below) */
			thread_conn(t, NULL);
			view_of(t->a, &v);
			daemon_key = v.has_api_key;
			snprintf(dkey, sizeof(dkey), "%s", v.api_key);
			view_deinit(&v);
		}
		if ((key || daemon_key) && !key_ok(io->param(io->ctx, "HTTP_AUTHORIZATION"), key ? key : dkey)) {
			api_fail(&r, 401, NULL, "Unauthorized: a valid API key is required "
				 "(Authorization: Bearer <key>)");
			out_flush(&r);
			return;
		}
	}
	json_object *body = NULL;
	strbuf text = { 0 };
	body_media bm;
	bm.n = 0;
	if (!strcmp(rt->method, "POST")) {
		req_mark(&r, AT_READ);
		if (!read_text(&r, &text)) {
			out_flush(&r);
			return;
		}
		req_mark(&r, AT_BODY);
		body = rt->id == R_CHAT ? parse_chat_body(&r, &text, &bm) : parse_body(&r, text.s, text.len);
		req_mark(&r, AT_PARSED);
		if (!body || rt->id != R_CHAT)
			strbuf_deinit(&text);   /* a chat body's text is kept: bm points into it */
		if (!body) {
			out_flush(&r);
			return;
		}
	}
	switch (rt->id) {
	case R_MODELS: handle_models(&r); break;
	case R_CHAT:
		if (handle_chat(&r, body, bm.n ? &bm : NULL) == CHAT_RETRY) {
			json_object_put(body);
			/* the timing counts the plain parse and what follows it, not the first try */
			r.at[AT_PARSED] = r.at[AT_MEDIA] = 0;
			body = parse_body(&r, text.s, text.len);
			req_mark(&r, AT_PARSED);
			if (body)
				handle_chat(&r, body, NULL);
		}
		break;
	case R_COMPLETIONS: handle_completions(&r, body); break;
	case R_HEALTH: handle_health(&r); break;
	case R_VERSION: handle_version(&r); break;
	case R_METRICS: handle_metrics(&r); break;
	case R_TOKENIZE: handle_tokenize(&r, body); break;
	case R_DETOKENIZE: handle_detokenize(&r, body); break;
	case R_NONE: break;
	}
	json_object_put(body);
	strbuf_deinit(&text);
	out_flush(&r);
	if (rt->id == R_CHAT && r.at[AT_BEGIN]) {
		req_mark(&r, AT_END);
		const double *a = r.at;
		double ms[AT_N];               /* each mark's time after the previous one reached */
		for (int m = AT_READ, prev = AT_BEGIN; m < AT_N; m++)
			if (a[m]) {
				ms[m] = a[m] - a[prev];
				prev = m;
			} else {
				ms[m] = -1;
			}
		log_msg(LOG_LEVEL_DEBUG, "fcgi", "chat request: %.2f ms routing and authenticating, "
			"%.2f reading the body, %.2f parsing it, %.2f decoding its media, %.2f building "
			"the prompt, %.2f until the first tokens from qvld, %.2f more to the end; %.2f in "
			"all (-1: not reached)", ms[AT_READ], ms[AT_BODY], ms[AT_PARSED], ms[AT_MEDIA],
			ms[AT_PROMPT], ms[AT_FIRST], ms[AT_END], a[AT_END] - a[AT_BEGIN]);
	}
}
