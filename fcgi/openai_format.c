/*
 * openai_format: OpenAI/vLLM response bodies, SSE framing, Qwen3 tool-call parsing and
 * Prometheus text (see openai_format.h for the shapes and why they are vLLM's).
 *
 * How it works:
 *   - JSON is built as json-c objects and written compactly without escaping "/", as
 *     pydantic's model_dump_json writes it. Doubles are stored with their Python repr text
 *     (json_object_new_double_s): the fewest digits that read back as the same double, which is
 *     what vLLM writes (json-c's default would be 17 digits).
 *   - Tool calls: a block scanner over the whole text (oai_tool_parse) and the same scanner run
 *     incrementally (oai_tool_stream), which differs only in what it holds back. Both send
 *     their content through the same rule: leading whitespace dropped, trailing whitespace held
 *     until more content follows, so any split of the text gives the one-shot result.
 *
 *       text:   "Sure.\n<tool_call>\n{…}\n</tool_call>\n<tool_c|all>…"
 *                ^^^^^ content  ^^^^^^^^^^^^^^^^^^^^^^ call 0    ^ a delta ends here: the
 *                                                                  partial tag is held back
 *   - Prometheus: the STATS_REPLY object is walked key by key; per-bucket histogram counts are
 *     summed into the cumulative le buckets Prometheus wants.
 *
 * Invariants: every builder returns a fresh object; no state outside the caller's structs.
 */
#include "openai_format.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "jsonx.h"
#include "rng.h"
#include "utf8.h"

#define FLT_SIZE 64                /* a formatted double, with room to spare */
#define LOGPROB_FLOOR -9999.0      /* vLLM's clamp: -inf is not JSON */

static const char TAG_OPEN[] = "<tool_call>";
static const char TAG_CLOSE[] = "</tool_call>";
#define OPEN_LEN (sizeof(TAG_OPEN) - 1)
#define CLOSE_LEN (sizeof(TAG_CLOSE) - 1)

/* ---- numbers ---- */

/* Python's repr(float) of a finite d: the fewest significant digits that read back as d, in
 * fixed notation for decimal exponents -4..15 ("0.001", "2560.0"), else "1.5e+16", "1e-05". */
static void fmt_pyrepr(double d, char out[FLT_SIZE])
{
	if (!isfinite(d)) {   /* Python's spelling; callers keep these out of JSON */
		strcpy(out, isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
		return;
	}
	if (d == 0) {
		strcpy(out, signbit(d) ? "-0.0" : "0.0");
		return;
	}
	char e[FLT_SIZE];
	for (int p = 1; p <= 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p - 1, d);
		if (strtod(e, NULL) == d)
			break;
	}
	/* e is "[-]D[.DDD]e±XX"; the separator may be locale's, so take digits only */
	const char *s = e;
	bool neg = *s == '-';
	if (neg)
		s++;
	char dig[24];
	int nd = 0;
	for (; *s && *s != 'e'; s++)
		if (isdigit((unsigned char)*s) && nd < (int)sizeof(dig))
			dig[nd++] = *s;
	int x = *s == 'e' ? atoi(s + 1) : 0;
	while (nd > 1 && dig[nd - 1] == '0')
		nd--;
	char *o = out;
	if (neg)
		*o++ = '-';
	if (x >= -4 && x < 16) {
		if (x >= 0) {
			for (int i = 0; i <= x; i++)
				*o++ = i < nd ? dig[i] : '0';
			*o++ = '.';
			if (nd > x + 1)
				for (int i = x + 1; i < nd; i++)
					*o++ = dig[i];
			else
				*o++ = '0';
		} else {
			*o++ = '0';
			*o++ = '.';
			for (int i = 0; i < -x - 1; i++)
				*o++ = '0';
			for (int i = 0; i < nd; i++)
				*o++ = dig[i];
		}
		*o = 0;
	} else {
		*o++ = dig[0];
		if (nd > 1) {
			*o++ = '.';
			for (int i = 1; i < nd; i++)
				*o++ = dig[i];
		}
		int ax = x < 0 ? -x : x;
		if (ax > 999)   /* doubles stop at 1e±324; the bound tells the compiler so */
			ax = 999;
		snprintf(o, 8, "e%c%02d", x < 0 ? '-' : '+', ax);
	}
}

/* prometheus_client's floatToGoString: Python's repr, except "+Inf", "-Inf", "NaN", and
 * positive numbers with more than six integer digits in exponent form ("1e+06"). */
static void fmt_go(double d, char out[FLT_SIZE])
{
	if (isnan(d)) {
		strcpy(out, "NaN");
		return;
	}
	if (isinf(d)) {
		strcpy(out, d > 0 ? "+Inf" : "-Inf");
		return;
	}
	fmt_pyrepr(d, out);
	const char *dot = strchr(out, '.');
	if (d > 0 && dot && dot - out > 6 && !strchr(out, 'e')) {
		char m[FLT_SIZE];
		size_t k = 0;
		m[k++] = out[0];
		m[k++] = '.';
		for (const char *p = out + 1; p < dot; p++)
			m[k++] = *p;
		for (const char *p = dot + 1; *p; p++)
			m[k++] = *p;
		while (k > 0 && (m[k - 1] == '0' || m[k - 1] == '.'))
			k--;
		m[k] = 0;
		int x = (int)(dot - out) - 1;
		char t[FLT_SIZE + 16];
		snprintf(t, sizeof(t), "%se+0%d", m, x);   /* Python writes "e+0" then the exponent */
		snprintf(out, FLT_SIZE, "%.*s", FLT_SIZE - 1, t);
	}
}

/* A JSON double that prints as Python's repr (finite d only). */
static json_object *new_double(double d)
{
	char b[FLT_SIZE];
	fmt_pyrepr(d, b);
	return json_object_new_double_s(d, b);
}

static double clamp_logprob(double v)
{
	return isfinite(v) && v > LOGPROB_FLOOR ? v : LOGPROB_FLOOR;
}

static json_object *new_str(const char *s, size_t n)
{
	if (!s)
		n = 0;
	return json_object_new_string_len(s ? s : "", n > INT_MAX ? INT_MAX : (int)n);
}

/* ---- serialising ---- */

void oai_json_append(strbuf *out, json_object *o)
{
	size_t n = 0;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	strbuf_add(out, s, n);
}

void oai_sse_data(strbuf *out, json_object *o)
{
	strbuf_adds(out, "data: ");
	oai_json_append(out, o);
	strbuf_adds(out, "\n\n");
}

void oai_sse_done(strbuf *out)
{
	strbuf_adds(out, "data: [DONE]\n\n");
}

void oai_sse_ping(strbuf *out)
{
	strbuf_adds(out, ": ping\n\n");
}

/* ---- errors ---- */

const char *oai_error_type(int status)
{
	switch (status) {
	case 400: return "BadRequestError";
	case 401: return "AuthenticationError";
	case 403: return "PermissionDeniedError";
	case 404: return "NotFoundError";
	case 422: return "UnprocessableEntityError";
	case 429: return "RateLimitError";
	case 501: return "NotImplementedError";
	case 503: return "ServiceUnavailableError";
	default: return status >= 400 && status < 500 ? "BadRequestError" : "InternalServerError";
	}
}

json_object *oai_error(int status, const char *message, const char *param)
{
	json_object *e = json_object_new_object();
	json_object_object_add(e, "message", json_object_new_string(message ? message : ""));
	json_object_object_add(e, "type", json_object_new_string(oai_error_type(status)));
	json_object_object_add(e, "param", param ? json_object_new_string(param) : NULL);
	json_object_object_add(e, "code", json_object_new_int(status));
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", e);
	return o;
}

/* ---- ids ---- */

/* n random bytes: getrandom, or (if the kernel refuses) a clock/pid/address mix, which is
 * unique enough for ids, which are not secrets. */
static void random_bytes(uint8_t *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(p + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got == n)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)getpid() << 48 ^
		     (uint64_t)(uintptr_t)p;
	for (size_t i = got; i < n; i++)
		p[i] = (uint8_t)rng_mix64(x += 0x9e3779b97f4a7c15ull);
}

/* prefix + 32 lowercase hex digits into out (OAI_ID_SIZE). */
static void hex_id(char out[OAI_ID_SIZE], const char *prefix)
{
	uint8_t r[16];
	random_bytes(r, sizeof(r));
	size_t k = strlen(prefix);
	memcpy(out, prefix, k);
	for (int i = 0; i < 16; i++)
		snprintf(out + k + 2 * i, 3, "%02x", r[i]);
}

void oai_meta_init(oai_meta *m, oai_kind kind, const char *model)
{
	memset(m, 0, sizeof(*m));
	hex_id(m->id, kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
	m->created = (int64_t)time(NULL);
	m->model = model;
}

void oai_tool_call_id(char out[OAI_TOOL_CALL_ID_SIZE])
{
	static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	memcpy(out, "call_", 5);
	size_t k = 5;
	while (k < OAI_TOOL_CALL_ID_SIZE - 1) {
		uint8_t r[32];
		random_bytes(r, sizeof(r));
		/* 248 = 4·62: taking only bytes below it keeps the characters uniform */
		for (size_t i = 0; i < sizeof(r) && k < OAI_TOOL_CALL_ID_SIZE - 1; i++)
			if (r[i] < 248)
				out[k++] = alnum[r[i] % 62];
	}
	out[k] = 0;
}

/* ---- common pieces ---- */

json_object *oai_usage_json(const oai_usage *u)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "prompt_tokens", json_object_new_int64(u->prompt_tokens));
	json_object_object_add(o, "total_tokens",
			       json_object_new_int64(u->prompt_tokens + u->completion_tokens));
	json_object_object_add(o, "completion_tokens", json_object_new_int64(u->completion_tokens));
	json_object *d = json_object_new_object();
	json_object_object_add(d, "cached_tokens", json_object_new_int64(u->cached_tokens));
	json_object_object_add(o, "prompt_tokens_details", d);
	return o;
}

static json_object *head(const oai_meta *m, const char *object)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(m->id));
	json_object_object_add(o, "object", json_object_new_string(object));
	json_object_object_add(o, "created", json_object_new_int64(m->created));
	json_object_object_add(o, "model", json_object_new_string(m->model ? m->model : ""));
	return o;
}

static void add_stop_reason(json_object *o, const oai_stop_reason *s)
{
	json_object *v = s->str ? json_object_new_string(s->str)
			 : s->has_id ? json_object_new_int(s->id) : NULL;
	json_object_object_add(o, "stop_reason", v);
}

static void add_opt_string(json_object *o, const char *key, const char *s)
{
	json_object_object_add(o, key, s ? json_object_new_string(s) : NULL);
}

/* {"content": entries} for a borrowed array, or NULL (JSON null). */
static json_object *chat_logprobs(json_object *entries)
{
	if (!entries)
		return NULL;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "content", json_object_get(entries));
	return o;
}

/* tool_calls items; streamed ones carry their index among the choice's calls first. */
static json_object *tool_calls_json(const oai_tool_call *c, size_t n, bool streamed,
				    size_t index0)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_new_object();
		if (streamed)
			json_object_object_add(t, "index", json_object_new_int64((int64_t)(index0 + i)));
		json_object_object_add(t, "id", json_object_new_string(c[i].id));
		json_object_object_add(t, "type", json_object_new_string("function"));
		json_object *f = json_object_new_object();
		json_object_object_add(f, "name", json_object_new_string(c[i].name ? c[i].name : ""));
		json_object_object_add(f, "arguments",
				       json_object_new_string(c[i].arguments ? c[i].arguments : "{}"));
		json_object_object_add(t, "function", f);
		json_object_array_add(a, t);
	}
	return a;
}

/* ---- logprobs ---- */

void oai_token_text(const tokenizer *t, int32_t id, bool as_ids, strbuf *out)
{
	if (as_ids) {
		strbuf_addf(out, "token_id:%" PRId32, id);
		return;
	}
	size_t len = 0;
	const char *b = tok_id_bytes(t, id, &len);
	if (!b)
		return;
	size_t n = 0;
	char *s = utf8_lossy(b, len, &n);
	strbuf_add(out, s, n);
	free(s);
}

static json_object *token_json(const tokenizer *t, int32_t id, bool as_ids)
{
	strbuf s = { 0 };
	oai_token_text(t, id, as_ids, &s);
	json_object *o = new_str(s.s, s.len);
	strbuf_deinit(&s);
	return o;
}

static json_object *bytes_json(const tokenizer *t, int32_t id)
{
	size_t len = 0;
	const char *b = tok_id_bytes(t, id, &len);
	json_object *a = json_object_new_array_ext(b ? (int)len : 0);
	for (size_t i = 0; b && i < len; i++)
		json_object_array_add(a, json_object_new_int((unsigned char)b[i]));
	return a;
}

static json_object *logprob_item(const tokenizer *t, int32_t id, float lp, bool as_ids)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "token", token_json(t, id, as_ids));
	json_object_object_add(o, "logprob", new_double(clamp_logprob(lp)));
	json_object_object_add(o, "bytes", bytes_json(t, id));
	return o;
}

json_object *oai_logprob_entry(const tokenizer *t, const sampler_logprobs *lp, bool as_ids)
{
	json_object *o = logprob_item(t, lp->id, lp->logprob, as_ids);
	int n_top = lp->n_top < 0 ? 0 : lp->n_top > SAMPLER_MAX_LOGPROBS ? SAMPLER_MAX_LOGPROBS
									     : lp->n_top;
	json_object *top = json_object_new_array_ext(n_top);
	for (int i = 0; i < n_top; i++)
		json_object_array_add(top, logprob_item(t, lp->top_ids[i], lp->top_logprobs[i], as_ids));
	json_object_object_add(o, "top_logprobs", top);
	return o;
}

void oai_text_logprobs_init(oai_text_logprobs *l, int64_t offset)
{
	l->text_offset = json_object_new_array();
	l->token_logprobs = json_object_new_array();
	l->tokens = json_object_new_array();
	l->top_logprobs = json_object_new_array();
	l->offset = offset;
}

/* Code points of valid UTF-8: the bytes that do not continue a character. */
static int64_t n_chars(const char *s, size_t n)
{
	int64_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

static void top_add(json_object *top, const tokenizer *t, int32_t id, float lp, bool as_ids)
{
	strbuf s = { 0 };
	oai_token_text(t, id, as_ids, &s);
	const char *key = strbuf_str(&s);
	if (!json_object_object_get_ex(top, key, NULL))
		json_object_object_add(top, key, new_double(clamp_logprob(lp)));
	strbuf_deinit(&s);
}

void oai_text_logprobs_add(oai_text_logprobs *l, const tokenizer *t, const sampler_logprobs *lp,
			   bool as_ids)
{
	strbuf s = { 0 };
	oai_token_text(t, lp->id, as_ids, &s);
	json_object_array_add(l->tokens, new_str(s.s, s.len));
	json_object_array_add(l->token_logprobs, new_double(clamp_logprob(lp->logprob)));
	json_object_array_add(l->text_offset, json_object_new_int64(l->offset));
	l->offset += n_chars(strbuf_str(&s), s.len);
	strbuf_deinit(&s);
	json_object *top = json_object_new_object();
	top_add(top, t, lp->id, lp->logprob, as_ids);
	for (int i = 0; i < lp->n_top && i < SAMPLER_MAX_LOGPROBS; i++)
		top_add(top, t, lp->top_ids[i], lp->top_logprobs[i], as_ids);
	json_object_array_add(l->top_logprobs, top);
}

json_object *oai_text_logprobs_take(oai_text_logprobs *l)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "text_offset", l->text_offset);
	json_object_object_add(o, "token_logprobs", l->token_logprobs);
	json_object_object_add(o, "tokens", l->tokens);
	json_object_object_add(o, "top_logprobs", l->top_logprobs);
	oai_text_logprobs_init(l, l->offset);
	return o;
}

void oai_text_logprobs_deinit(oai_text_logprobs *l)
{
	json_object_put(l->text_offset);
	json_object_put(l->token_logprobs);
	json_object_put(l->tokens);
	json_object_put(l->top_logprobs);
	memset(l, 0, sizeof(*l));
}

/* ---- tool calls ---- */

void oai_tool_calls_deinit(oai_tool_calls *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].name);
		free(c->v[i].arguments);
	}
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* First occurrence of needle[0..nn) in h[0..hn) (texts may hold NUL bytes), or NULL. */
static const char *find(const char *h, size_t hn, const char *needle, size_t nn)
{
	if (!h || nn > hn)
		return NULL;
	for (const char *p = h, *end = h + hn - nn + 1; p < end; p++) {
		p = memchr(p, needle[0], (size_t)(end - p));
		if (!p)
			return NULL;
		if (!memcmp(p, needle, nn))
			return p;
	}
	return NULL;
}

/* Python's json.dumps(s, ensure_ascii=False) of a string. */
static void py_string(strbuf *b, const char *s, size_t n)
{
	strbuf_addc(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': strbuf_adds(b, "\\\""); break;
		case '\\': strbuf_adds(b, "\\\\"); break;
		case '\n': strbuf_adds(b, "\\n"); break;
		case '\r': strbuf_adds(b, "\\r"); break;
		case '\t': strbuf_adds(b, "\\t"); break;
		case '\b': strbuf_adds(b, "\\b"); break;
		case '\f': strbuf_adds(b, "\\f"); break;
		default:
			if (c < 0x20)
				strbuf_addf(b, "\\u%04x", c);
			else
				strbuf_addc(b, (char)c);
		}
	}
	strbuf_addc(b, '"');
}

/* Python's json.dumps(v, ensure_ascii=False): ", " and ": " separators, floats by repr.
 * Recursion is bounded by the parser's depth limit (jsonx). */
static void py_dumps(strbuf *b, json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		strbuf_adds(b, "null");
		break;
	case json_type_boolean:
		strbuf_adds(b, json_object_get_boolean(v) ? "true" : "false");
		break;
	case json_type_int: {
		int64_t i = json_object_get_int64(v);
		if (i == INT64_MAX)   /* json-c keeps larger values as uint64 */
			strbuf_addf(b, "%" PRIu64, json_object_get_uint64(v));
		else
			strbuf_addf(b, "%" PRId64, i);
		break;
	}
	case json_type_double: {
		double d = json_object_get_double(v);
		char f[FLT_SIZE];
		if (isnan(d))
			strcpy(f, "NaN");
		else if (isinf(d))
			strcpy(f, d > 0 ? "Infinity" : "-Infinity");   /* "1e999" parses to inf */
		else
			fmt_pyrepr(d, f);
		strbuf_adds(b, f);
		break;
	}
	case json_type_string:
		py_string(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(v);
		strbuf_addc(b, '[');
		for (size_t i = 0; i < n; i++) {
			if (i)
				strbuf_adds(b, ", ");
			py_dumps(b, json_object_array_get_idx(v, i));
		}
		strbuf_addc(b, ']');
		break;
	}
	case json_type_object: {
		bool first = true;
		strbuf_addc(b, '{');
		json_object_object_foreach(v, key, val) {
			if (!first)
				strbuf_adds(b, ", ");
			first = false;
			py_string(b, key, strlen(key));
			strbuf_adds(b, ": ");
			py_dumps(b, val);
		}
		strbuf_addc(b, '}');
		break;
	}
	}
}

/* The body of one <tool_call> block: a call appended to calls (true), or false when the block
 * is malformed. */
static bool parse_call(const char *body, size_t n, oai_tool_calls *calls)
{
	while (n && is_ws(*body))
		body++, n--;
	while (n && is_ws(body[n - 1]))
		n--;
	if (!n || *body != '{')
		return false;
	json_object *o = NULL;
	if (jsonx_parse(body, n, "tool_call", &o, NULL))
		return false;
	json_object *name = NULL, *args = NULL;
	bool ok = json_object_is_type(o, json_type_object) &&
		  json_object_object_get_ex(o, "name", &name) &&
		  json_object_is_type(name, json_type_string) && json_object_get_string_len(name) > 0;
	if (ok) {
		json_object_object_get_ex(o, "arguments", &args);   /* absent or null: {} */
		ok = !args || json_object_is_type(args, json_type_object);
	}
	if (ok) {
		if (calls->n == calls->cap) {
			calls->cap = calls->cap ? 2 * calls->cap : 4;
			calls->v = xrealloc(calls->v, calls->cap * sizeof(*calls->v));
		}
		oai_tool_call *c = &calls->v[calls->n++];
		memset(c, 0, sizeof(*c));
		oai_tool_call_id(c->id);
		c->name = xstrdup(json_object_get_string(name));
		strbuf a = { 0 };
		if (args)
			py_dumps(&a, args);
		else
			strbuf_adds(&a, "{}");
		c->arguments = strbuf_detach(&a, NULL);
	}
	json_object_put(o);
	return ok;
}

void oai_tool_parse(const char *text, size_t len, strbuf *content, oai_tool_calls *calls)
{
	strbuf c = { 0 };
	size_t pos = 0;
	while (pos < len) {
		const char *open = find(text + pos, len - pos, TAG_OPEN, OPEN_LEN);
		if (!open) {
			strbuf_add(&c, text + pos, len - pos);
			break;
		}
		size_t k = (size_t)(open - text), body = k + OPEN_LEN;
		strbuf_add(&c, text + pos, k - pos);
		const char *close = find(text + body, len - body, TAG_CLOSE, CLOSE_LEN);
		size_t body_end = close ? (size_t)(close - text) : len;
		size_t end = close ? body_end + CLOSE_LEN : len;
		if (!parse_call(text + body, body_end - body, calls))
			strbuf_add(&c, text + k, end - k);
		pos = end;
	}
	size_t a = 0, b = c.len;
	while (a < b && is_ws(c.s[a]))
		a++;
	while (b > a && is_ws(c.s[b - 1]))
		b--;
	if (b > a)
		strbuf_add(content, c.s + a, b - a);
	strbuf_deinit(&c);
}

void oai_tool_stream_init(oai_tool_stream *s)
{
	memset(s, 0, sizeof(*s));
}

void oai_tool_stream_deinit(oai_tool_stream *s)
{
	strbuf_deinit(&s->buf);
	strbuf_deinit(&s->ws);
	memset(s, 0, sizeof(*s));
}

/* Release content: leading whitespace of the whole content is dropped, and trailing whitespace
 * waits in s->ws until content that is not whitespace follows (or is dropped at the end).
 * Applying it to a text piece by piece gives what applying it to the whole does. */
static void emit(oai_tool_stream *s, const char *p, size_t n, strbuf *content)
{
	if (!s->any_content) {
		while (n && is_ws(*p))
			p++, n--;
		if (!n)
			return;
		s->any_content = true;
	}
	size_t body = n;
	while (body && is_ws(p[body - 1]))
		body--;
	if (body) {
		if (s->ws.len)
			strbuf_add(content, s->ws.s, s->ws.len);
		strbuf_truncate(&s->ws, 0);
		strbuf_add(content, p, body);
	}
	if (n > body)
		strbuf_add(&s->ws, p + body, n - body);
}

/* Drop the first n bytes of b. */
static void consume(strbuf *b, size_t n)
{
	if (!n)
		return;
	memmove(b->s, b->s + n, b->len - n);
	strbuf_truncate(b, b->len - n);
}

/* Length of the longest proper prefix of the open tag that ends s[0..n). */
static size_t partial_tag(const char *s, size_t n)
{
	for (size_t k = OPEN_LEN - 1; k > 0; k--)
		if (k <= n && !memcmp(s + n - k, TAG_OPEN, k))
			return k;
	return 0;
}

/* The open block's body is buf[0..body_len), the block ends at buf[end]: a call, or content. */
static void close_block(oai_tool_stream *s, size_t body_len, size_t end, strbuf *content,
			oai_tool_calls *calls)
{
	if (!parse_call(s->buf.s, body_len, calls)) {
		emit(s, TAG_OPEN, OPEN_LEN, content);
		emit(s, s->buf.s, end, content);
	}
	consume(&s->buf, end);
	s->in_block = false;
	s->scan = 0;
}

void oai_tool_stream_feed(oai_tool_stream *s, const char *delta, size_t len, strbuf *content,
			  oai_tool_calls *calls)
{
	if (len)
		strbuf_add(&s->buf, delta, len);
	for (;;) {
		const char *b = s->buf.s;
		size_t n = s->buf.len;
		if (!s->in_block) {
			const char *open = find(b, n, TAG_OPEN, OPEN_LEN);
			if (!open) {
				size_t keep = partial_tag(b, n);
				emit(s, b, n - keep, content);
				consume(&s->buf, n - keep);
				return;
			}
			size_t k = (size_t)(open - b);
			emit(s, b, k, content);
			consume(&s->buf, k + OPEN_LEN);
			s->in_block = true;
			s->scan = 0;
		} else {
			const char *close = find(b + s->scan, n - s->scan, TAG_CLOSE, CLOSE_LEN);
			if (!close) {
				/* a later match must end past n: start where it still could */
				s->scan = n >= CLOSE_LEN ? n - CLOSE_LEN + 1 : 0;
				return;
			}
			size_t k = (size_t)(close - b);
			close_block(s, k, k + CLOSE_LEN, content, calls);
		}
	}
}

void oai_tool_stream_finish(oai_tool_stream *s, strbuf *content, oai_tool_calls *calls)
{
	if (s->in_block)
		close_block(s, s->buf.len, s->buf.len, content, calls);
	else
		emit(s, s->buf.s, s->buf.len, content);
	strbuf_truncate(&s->buf, 0);
	strbuf_truncate(&s->ws, 0);
	s->in_block = false;
	s->any_content = false;
	s->scan = 0;
}

/* ---- /v1/chat/completions ---- */

json_object *oai_chat_completion(const oai_meta *m, const oai_chat_choice *c, size_t n,
				 const oai_usage *u)
{
	json_object *o = head(m, "chat.completion");
	json_object *choices = json_object_new_array_ext((int)n);
	for (size_t i = 0; i < n; i++) {
		json_object *msg = json_object_new_object();
		json_object_object_add(msg, "role", json_object_new_string("assistant"));
		json_object_object_add(msg, "content", c[i].content ? new_str(c[i].content,
									       c[i].content_len)
									: NULL);
		if (c[i].n_tool_calls)
			json_object_object_add(msg, "tool_calls", tool_calls_json(c[i].tool_calls,
										  c[i].n_tool_calls,
										  false, 0));
		json_object *ch = json_object_new_object();
		json_object_object_add(ch, "index", json_object_new_int64((int64_t)i));
		json_object_object_add(ch, "message", msg);
		json_object_object_add(ch, "logprobs", chat_logprobs(c[i].logprobs));
		add_opt_string(ch, "finish_reason", c[i].finish_reason);
		add_stop_reason(ch, &c[i].stop);
		json_object_array_add(choices, ch);
	}
	json_object_object_add(o, "choices", choices);
	json_object_object_add(o, "usage", oai_usage_json(u));
	return o;
}

json_object *oai_chat_chunk(const oai_meta *m, uint32_t index, const oai_chat_delta *d,
			    const oai_usage *u)
{
	json_object *o = head(m, "chat.completion.chunk");
	json_object *delta = json_object_new_object();
	if (d->role)
		json_object_object_add(delta, "role", json_object_new_string("assistant"));
	if (d->content)
		json_object_object_add(delta, "content", new_str(d->content, d->content_len));
	if (d->n_tool_calls)
		json_object_object_add(delta, "tool_calls", tool_calls_json(d->tool_calls,
									    d->n_tool_calls, true,
									    d->tool_index));
	json_object *ch = json_object_new_object();
	json_object_object_add(ch, "index", json_object_new_int64(index));
	json_object_object_add(ch, "delta", delta);
	json_object_object_add(ch, "logprobs", chat_logprobs(d->logprobs));
	add_opt_string(ch, "finish_reason", d->finish_reason);
	if (d->finish_reason)
		add_stop_reason(ch, &d->stop);
	json_object *choices = json_object_new_array_ext(1);
	json_object_array_add(choices, ch);
	json_object_object_add(o, "choices", choices);
	if (u)
		json_object_object_add(o, "usage", oai_usage_json(u));
	return o;
}

json_object *oai_chat_chunk_role(const oai_meta *m, uint32_t index)
{
	oai_chat_delta d = { .role = true, .content = "", .content_len = 0 };
	return oai_chat_chunk(m, index, &d, NULL);
}

static json_object *usage_chunk(const oai_meta *m, const char *object, const oai_usage *u)
{
	json_object *o = head(m, object);
	json_object_object_add(o, "choices", json_object_new_array());
	json_object_object_add(o, "usage", oai_usage_json(u));
	return o;
}

json_object *oai_chat_chunk_usage(const oai_meta *m, const oai_usage *u)
{
	return usage_chunk(m, "chat.completion.chunk", u);
}

/* ---- /v1/completions ---- */

static json_object *text_choice(uint32_t index, const oai_text_choice *c)
{
	json_object *ch = json_object_new_object();
	json_object_object_add(ch, "index", json_object_new_int64(index));
	json_object_object_add(ch, "text", new_str(c->text, c->text_len));
	json_object_object_add(ch, "logprobs", c->logprobs ? json_object_get(c->logprobs) : NULL);
	add_opt_string(ch, "finish_reason", c->finish_reason);
	add_stop_reason(ch, &c->stop);
	return ch;
}

json_object *oai_completion(const oai_meta *m, const oai_text_choice *c, size_t n,
			    const oai_usage *u)
{
	json_object *o = head(m, "text_completion");
	json_object *choices = json_object_new_array_ext((int)n);
	for (size_t i = 0; i < n; i++)
		json_object_array_add(choices, text_choice((uint32_t)i, &c[i]));
	json_object_object_add(o, "choices", choices);
	json_object_object_add(o, "usage", oai_usage_json(u));
	return o;
}

json_object *oai_completion_chunk(const oai_meta *m, uint32_t index, const oai_text_choice *c,
				  const oai_usage *u)
{
	json_object *o = head(m, "text_completion");
	json_object *choices = json_object_new_array_ext(1);
	json_object_array_add(choices, text_choice(index, c));
	json_object_object_add(o, "choices", choices);
	if (u)
		json_object_object_add(o, "usage", oai_usage_json(u));
	return o;
}

json_object *oai_completion_chunk_usage(const oai_meta *m, const oai_usage *u)
{
	return usage_chunk(m, "text_completion", u);
}

/* ---- /v1/models ---- */

json_object *oai_models(const char *const *names, size_t n, const char *root,
			int64_t max_model_len, int64_t created)
{
	json_object *data = json_object_new_array_ext((int)n);
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_new_object();
		json_object_object_add(c, "id", json_object_new_string(names[i] ? names[i] : ""));
		json_object_object_add(c, "object", json_object_new_string("model"));
		json_object_object_add(c, "created", json_object_new_int64(created));
		json_object_object_add(c, "owned_by", json_object_new_string("qvl"));
		add_opt_string(c, "root", root);
		json_object_object_add(c, "parent", NULL);
		json_object_object_add(c, "max_model_len", json_object_new_int64(max_model_len));
		char id[OAI_ID_SIZE];
		hex_id(id, "modelperm-");
		json_object *p = json_object_new_object();
		json_object_object_add(p, "id", json_object_new_string(id));
		json_object_object_add(p, "object", json_object_new_string("model_permission"));
		json_object_object_add(p, "created", json_object_new_int64(created));
		json_object_object_add(p, "allow_create_engine", json_object_new_boolean(0));
		json_object_object_add(p, "allow_sampling", json_object_new_boolean(1));
		json_object_object_add(p, "allow_logprobs", json_object_new_boolean(1));
		json_object_object_add(p, "allow_search_indices", json_object_new_boolean(0));
		json_object_object_add(p, "allow_view", json_object_new_boolean(1));
		json_object_object_add(p, "allow_fine_tuning", json_object_new_boolean(0));
		json_object_object_add(p, "organization", json_object_new_string("*"));
		json_object_object_add(p, "group", NULL);
		json_object_object_add(p, "is_blocking", json_object_new_boolean(0));
		json_object *perm = json_object_new_array_ext(1);
		json_object_array_add(perm, p);
		json_object_object_add(c, "permission", perm);
		json_object_array_add(data, c);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "object", json_object_new_string("list"));
	json_object_object_add(o, "data", data);
	return o;
}

/* ---- /metrics ---- */

typedef struct prom_family {
	const char *key;           /* STATS_REPLY key = vLLM name without "vllm:" */
	const char *help;          /* vLLM's documentation string */
} prom_family;

static const prom_family prom_gauges[] = {
	{ "num_requests_running", "Number of requests in model execution batches." },
	{ "num_requests_waiting", "Number of requests waiting to be processed." },
	{ "kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage." },
};

static const prom_family prom_counters[] = {
	{ "num_preemptions", "Cumulative number of preemption from the engine." },
	{ "prompt_tokens", "Number of prefill tokens processed." },
	{ "generation_tokens", "Number of generation tokens processed." },
	{ "prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens." },
	{ "prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens." },
	{ "prompt_tokens_cached", "Number of cached prompt tokens (local + external)." },
	{ "mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items." },
	{ "mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items." },
};

static const prom_family prom_histograms[] = {
	{ "time_to_first_token_seconds", "Histogram of time to first token in seconds." },
	{ "inter_token_latency_seconds", "Histogram of inter-token latency in seconds." },
	{ "time_per_output_token_seconds", "Histogram of time per output token in seconds." },
	{ "e2e_request_latency_seconds", "Histogram of e2e request latency in seconds." },
	{ "request_queue_time_seconds", "Histogram of time spent in WAITING phase for request." },
	{ "request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request." },
	{ "request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request." },
	{ "request_decode_time_seconds", "Histogram of time spent in DECODE phase for request." },
	{ "request_prompt_tokens", "Number of prefill tokens processed." },
	{ "request_generation_tokens", "Number of generation tokens processed." },
	{ "iteration_tokens_total", "Histogram of number of tokens per engine_step." },
};

static const char *const prom_reasons[] = { "stop", "length", "abort", "error" };

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* A JSON number as a sample value: integers exactly, doubles as prometheus_client writes
 * them. False for anything else. */
static bool prom_value(json_object *v, char out[FLT_SIZE])
{
	if (json_object_is_type(v, json_type_int)) {
		int64_t i = json_object_get_int64(v);
		if (i == INT64_MAX)
			snprintf(out, FLT_SIZE, "%" PRIu64, json_object_get_uint64(v));
		else
			snprintf(out, FLT_SIZE, "%" PRId64, i);
		return true;
	}
	if (json_object_is_type(v, json_type_double)) {
		fmt_go(json_object_get_double(v), out);
		return true;
	}
	return false;
}

/* A non-negative JSON integer. */
static bool prom_u64(json_object *v, uint64_t *out)
{
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return false;
	*out = json_object_get_uint64(v);
	return true;
}

static void prom_head(strbuf *o, const char *name, const char *suffix, const char *help,
		      const char *type)
{
	strbuf_addf(o, "# HELP vllm:%s%s %s\n", name, suffix, help);
	strbuf_addf(o, "# TYPE vllm:%s%s %s\n", name, suffix, type);
}

/* vllm:<name><suffix>{<labels>[,<k>="<v>"]} <value> */
static void prom_sample(strbuf *o, const char *name, const char *suffix, const char *labels,
			const char *k, const char *v, const char *value)
{
	strbuf_addf(o, "vllm:%s%s{%s", name, suffix, labels);
	if (k)
		strbuf_addf(o, ",%s=\"%s\"", k, v);
	strbuf_addf(o, "} %s\n", value);
}

static bool prom_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != ':')
			return false;
	return true;
}

static void prom_histogram(strbuf *o, const char *name, const char *help, json_object *h,
			   const char *labels)
{
	json_object *bk = jsonx_member(h, "buckets"), *cn = jsonx_member(h, "counts");
	json_object *sum = jsonx_member(h, "sum"), *count = jsonx_member(h, "count");
	uint64_t total = 0, n_obs;
	char sum_text[FLT_SIZE];
	if (!json_object_is_type(bk, json_type_array) || !json_object_is_type(cn, json_type_array) ||
	    !prom_value(sum, sum_text) || !prom_u64(count, &n_obs))
		return;
	size_t nb = json_object_array_length(bk);
	if (json_object_array_length(cn) != nb + 1)
		return;
	/* check everything before writing anything */
	double prev = -INFINITY;
	for (size_t i = 0; i <= nb; i++) {
		uint64_t c;
		if (!prom_u64(json_object_array_get_idx(cn, i), &c) || __builtin_add_overflow(total, c, &total))
			return;
		if (i == nb)
			break;
		json_object *b = json_object_array_get_idx(bk, i);
		if (!json_object_is_type(b, json_type_int) && !json_object_is_type(b, json_type_double))
			return;
		double le = json_object_get_double(b);
		if (!isfinite(le) || le <= prev)
			return;
		prev = le;
	}
	if (total != n_obs)
		return;
	prom_head(o, name, "", help, "histogram");
	uint64_t cum = 0;
	char le[FLT_SIZE], v[FLT_SIZE];
	for (size_t i = 0; i < nb; i++) {
		uint64_t c = 0;
		prom_u64(json_object_array_get_idx(cn, i), &c);
		cum += c;
		fmt_go(json_object_get_double(json_object_array_get_idx(bk, i)), le);
		snprintf(v, sizeof(v), "%" PRIu64, cum);
		prom_sample(o, name, "_bucket", labels, "le", le, v);
	}
	snprintf(v, sizeof(v), "%" PRIu64, n_obs);
	prom_sample(o, name, "_bucket", labels, "le", "+Inf", v);
	prom_sample(o, name, "_count", labels, NULL, NULL, v);
	prom_sample(o, name, "_sum", labels, NULL, NULL, sum_text);
}

void oai_prometheus(strbuf *out, json_object *stats, const char *model_name)
{
	if (!json_object_is_type(stats, json_type_object))
		return;
	/* label values escape backslash, double quote and newline */
	strbuf labels = { 0 };
	strbuf_adds(&labels, "model_name=\"");
	for (const char *p = model_name ? model_name : ""; *p; p++) {
		if (*p == '\\')
			strbuf_adds(&labels, "\\\\");
		else if (*p == '"')
			strbuf_adds(&labels, "\\\"");
		else if (*p == '\n')
			strbuf_adds(&labels, "\\n");
		else
			strbuf_addc(&labels, *p);
	}
	strbuf_adds(&labels, "\",engine=\"0\"");
	const char *lb = strbuf_str(&labels);
	char v[FLT_SIZE];

	for (size_t i = 0; i < N_OF(prom_gauges); i++) {
		if (!prom_value(jsonx_member(stats, prom_gauges[i].key), v))
			continue;
		prom_head(out, prom_gauges[i].key, "", prom_gauges[i].help, "gauge");
		prom_sample(out, prom_gauges[i].key, "", lb, NULL, NULL, v);
	}
	for (size_t i = 0; i < N_OF(prom_counters); i++) {
		if (!prom_value(jsonx_member(stats, prom_counters[i].key), v))
			continue;
		prom_head(out, prom_counters[i].key, "_total", prom_counters[i].help, "counter");
		prom_sample(out, prom_counters[i].key, "_total", lb, NULL, NULL, v);
	}
	json_object *rs = jsonx_member(stats, "request_success");
	bool headed = false;
	for (size_t i = 0; i < N_OF(prom_reasons); i++) {
		if (!prom_value(jsonx_member(rs, prom_reasons[i]), v))
			continue;
		if (!headed)
			prom_head(out, "request_success", "_total",
				  "Count of successfully processed requests.", "counter");
		headed = true;
		prom_sample(out, "request_success", "_total", lb, "finished_reason", prom_reasons[i], v);
	}
	json_object *hs = jsonx_member(stats, "histograms");
	if (json_object_is_type(hs, json_type_object)) {
		json_object_object_foreach(hs, name, h) {
			if (!prom_name_ok(name))
				continue;
			const char *help = NULL;
			for (size_t i = 0; i < N_OF(prom_histograms) && !help; i++)
				if (!strcmp(prom_histograms[i].key, name))
					help = prom_histograms[i].help;
			char generic[256];
			if (!help) {
				snprintf(generic, sizeof(generic), "Histogram %.200s.", name);
				help = generic;
			}
			prom_histogram(out, name, help, h, lb);
		}
	}
	strbuf_deinit(&labels);
}
