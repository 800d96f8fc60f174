/*
 * Tests of openai_format: every builder's text is parsed back with json-c and its keys and
 * values checked exactly; SSE framing byte for byte; Qwen3 tool-call parsing one-shot and
 * streamed (every split of sample texts gives the one-shot result); Prometheus text checked by
 * the exposition format's line rules and its cumulative buckets; logprobs with the vendored
 * Qwen3 tokenizer (found through datadir_find, i.e. $QVL_DATADIR in the test harness).
 */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datadir.h"
#include "metrics.h"
#include "openai_format.h"
#include "strbuf.h"
#include "testutil.h"
#include "tokenizer.h"
#include "utf8.h"

static tokenizer *tok;

static void load(void)
{
	char path[1024];
	qerr e = { 0 };
	ck_assert_msg(datadir_find("qwen3-vl/tokenizer.json", path, sizeof(path), &e) == 0, "%s",
		      e.msg);
	ck_assert_msg(tok_load(path, &tok, &e) == 0, "%s", e.msg);
}

static void unload(void)
{
	tok_free(tok);
}

/* ---- helpers ---- */

/* Serialise o (then drop it) and parse the text back: what a client would see. */
static json_object *roundtrip(json_object *o, strbuf *text)
{
	strbuf t = { 0 };
	oai_json_append(&t, o);
	json_object_put(o);
	json_object *p = json_tokener_parse(strbuf_str(&t));
	ck_assert_msg(p != NULL, "not JSON: %s", strbuf_str(&t));
	if (text)
		*text = t;
	else
		strbuf_deinit(&t);
	return p;
}

static json_object *member(json_object *o, const char *key)
{
	json_object *v = NULL;
	ck_assert_msg(json_object_object_get_ex(o, key, &v), "no key %s in %s", key,
		      json_object_to_json_string(o));
	return v;
}

/* o is an object with exactly the keys listed (NULL-terminated). */
static void assert_keys(json_object *o, const char *const *keys)
{
	ck_assert_msg(json_object_is_type(o, json_type_object), "not an object: %s",
		      json_object_to_json_string(o));
	int n = 0;
	for (; keys[n]; n++)
		ck_assert_msg(json_object_object_get_ex(o, keys[n], NULL), "key %s missing in %s",
			      keys[n], json_object_to_json_string(o));
	ck_assert_msg(json_object_object_length(o) == n, "extra keys in %s",
		      json_object_to_json_string(o));
}
#define KEYS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void assert_str(json_object *o, const char *key, const char *want)
{
	json_object *v = member(o, key);
	ck_assert_msg(json_object_is_type(v, json_type_string), "%s is not a string", key);
	ck_assert_str_eq(json_object_get_string(v), want);
}

static void assert_int(json_object *o, const char *key, int64_t want)
{
	json_object *v = member(o, key);
	ck_assert_msg(json_object_is_type(v, json_type_int), "%s is not an integer", key);
	ck_assert_int_eq(json_object_get_int64(v), want);
}

static void assert_null(json_object *o, const char *key)
{
	ck_assert_msg(member(o, key) == NULL, "%s is not null", key);
}

static void assert_double(json_object *o, const char *key, double want)
{
	json_object *v = member(o, key);
	ck_assert_msg(json_object_is_type(v, json_type_double) ||
		      json_object_is_type(v, json_type_int), "%s is not a number", key);
	ck_assert_double_eq(json_object_get_double(v), want);
}

static void assert_hex_id(const char *id, const char *prefix)
{
	size_t k = strlen(prefix);
	ck_assert_uint_eq(strlen(id), k + 32);
	ck_assert_int_eq(strncmp(id, prefix, k), 0);
	for (size_t i = k; i < k + 32; i++)
		ck_assert_msg(isdigit((unsigned char)id[i]) || (id[i] >= 'a' && id[i] <= 'f'),
			      "bad id %s", id);
}

static void assert_call_id(const char *id)
{
	ck_assert_uint_eq(strlen(id), 29);
	ck_assert_int_eq(strncmp(id, "call_", 5), 0);
	for (int i = 5; i < 29; i++)
		ck_assert_msg(isalnum((unsigned char)id[i]), "bad call id %s", id);
}

static oai_meta meta(oai_kind kind)
{
	oai_meta m;
	oai_meta_init(&m, kind, "qwen3-vl-2b");
	return m;
}

static void assert_head(json_object *o, const oai_meta *m, const char *object)
{
	assert_str(o, "id", m->id);
	assert_str(o, "object", object);
	assert_int(o, "created", m->created);
	assert_str(o, "model", m->model);
}

static void assert_usage(json_object *u, int64_t p, int64_t c, int64_t cached)
{
	assert_keys(u, KEYS("prompt_tokens", "total_tokens", "completion_tokens",
			    "prompt_tokens_details"));
	assert_int(u, "prompt_tokens", p);
	assert_int(u, "completion_tokens", c);
	assert_int(u, "total_tokens", p + c);
	json_object *d = member(u, "prompt_tokens_details");
	assert_keys(d, KEYS("cached_tokens"));
	assert_int(d, "cached_tokens", cached);
}

/* ---- errors, ids, SSE ---- */

START_TEST(test_openai_format_error_object)
{
	json_object *o = roundtrip(oai_error(400, "temperature: \"-1\" is below 0", "temperature"),
				   NULL);
	assert_keys(o, KEYS("error"));
	json_object *e = member(o, "error");
	assert_keys(e, KEYS("message", "type", "param", "code"));
	assert_str(e, "message", "temperature: \"-1\" is below 0");
	assert_str(e, "type", "BadRequestError");
	assert_str(e, "param", "temperature");
	assert_int(e, "code", 400);
	json_object_put(o);

	o = roundtrip(oai_error(500, "backend failure", NULL), NULL);
	e = member(o, "error");
	assert_keys(e, KEYS("message", "type", "param", "code"));
	assert_str(e, "type", "InternalServerError");
	assert_null(e, "param");
	assert_int(e, "code", 500);
	json_object_put(o);

	static const struct {
		int status;
		const char *type;
	} t[] = {
		{ 400, "BadRequestError" }, { 401, "AuthenticationError" },
		{ 403, "PermissionDeniedError" }, { 404, "NotFoundError" },
		{ 413, "BadRequestError" }, { 422, "UnprocessableEntityError" },
		{ 429, "RateLimitError" }, { 500, "InternalServerError" },
		{ 501, "NotImplementedError" }, { 502, "InternalServerError" },
		{ 503, "ServiceUnavailableError" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		ck_assert_str_eq(oai_error_type(t[i].status), t[i].type);
}
END_TEST

START_TEST(test_openai_format_ids_and_meta)
{
	oai_meta a = meta(OAI_CHAT), b = meta(OAI_CHAT), c = meta(OAI_COMPLETION);
	assert_hex_id(a.id, "chatcmpl-");
	assert_hex_id(b.id, "chatcmpl-");
	assert_hex_id(c.id, "cmpl-");
	ck_assert_str_ne(a.id, b.id);
	int64_t now = (int64_t)time(NULL);
	ck_assert(a.created <= now && a.created >= now - 5);
	ck_assert_str_eq(a.model, "qwen3-vl-2b");
	char x[OAI_TOOL_CALL_ID_SIZE], y[OAI_TOOL_CALL_ID_SIZE];
	oai_tool_call_id(x);
	oai_tool_call_id(y);
	assert_call_id(x);
	assert_call_id(y);
	ck_assert_str_ne(x, y);
}
END_TEST

START_TEST(test_openai_format_sse_framing)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "a", json_object_new_string("x/y é\n"));
	json_object_object_add(o, "b", json_object_new_int(1));
	strbuf s = { 0 };
	oai_sse_data(&s, o);
	oai_sse_ping(&s);
	oai_sse_data(&s, NULL);
	oai_sse_done(&s);
	const char want[] = "data: {\"a\":\"x/y é\\n\",\"b\":1}\n\n"
			    ": ping\n\n"
			    "data: null\n\n"
			    "data: [DONE]\n\n";
	ck_assert_uint_eq(s.len, sizeof(want) - 1);
	ck_assert_mem_eq(s.s, want, s.len);
	/* the object stays the caller's */
	ck_assert_int_eq(json_object_object_length(o), 2);
	json_object_put(o);
	strbuf_deinit(&s);
}
END_TEST

/* ---- logprobs (real tokenizer) ---- */

static tok_ids encode(const char *text)
{
	tok_ids ids = { 0 };
	tok_encode(tok, text, strlen(text), &ids);
	return ids;
}

static void assert_bytes(json_object *a, const char *want, size_t n)
{
	ck_assert(json_object_is_type(a, json_type_array));
	ck_assert_uint_eq(json_object_array_length(a), n);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(a, i)),
				 (unsigned char)want[i]);
}

START_TEST(test_openai_format_logprob_entry_real_tokenizer)
{
	tok_ids ids = encode("Hello world");
	ck_assert_uint_eq(ids.n, 2);
	sampler_logprobs lp = { .id = ids.v[1], .logprob = -0.5f, .n_top = 2,
				.top_ids = { ids.v[1], ids.v[0] }, .top_logprobs = { -0.5f, -1.25f } };
	strbuf text = { 0 };
	json_object *o = roundtrip(oai_logprob_entry(tok, &lp, false), &text);
	assert_keys(o, KEYS("token", "logprob", "bytes", "top_logprobs"));
	assert_str(o, "token", " world");
	assert_double(o, "logprob", -0.5);
	assert_bytes(member(o, "bytes"), " world", 6);
	ck_assert_ptr_nonnull(strstr(strbuf_str(&text), "\"logprob\":-0.5,"));
	json_object *top = member(o, "top_logprobs");
	ck_assert_uint_eq(json_object_array_length(top), 2);
	json_object *t1 = json_object_array_get_idx(top, 1);
	assert_keys(t1, KEYS("token", "logprob", "bytes"));
	assert_str(t1, "token", "Hello");
	assert_double(t1, "logprob", -1.25);
	assert_bytes(member(t1, "bytes"), "Hello", 5);
	json_object_put(o);
	strbuf_deinit(&text);

	/* return_tokens_as_token_ids */
	o = roundtrip(oai_logprob_entry(tok, &lp, true), NULL);
	char want[32];
	snprintf(want, sizeof(want), "token_id:%d", ids.v[1]);
	assert_str(o, "token", want);
	snprintf(want, sizeof(want), "token_id:%d", ids.v[0]);
	assert_str(json_object_array_get_idx(member(o, "top_logprobs"), 1), "token", want);
	assert_bytes(member(o, "bytes"), " world", 6);
	json_object_put(o);

	/* a lone byte of a split character: U+FFFD as text, the raw byte in bytes; -inf clamped;
	 * no top_logprobs asked for */
	int32_t byte_e4 = tok_token_to_id(tok, "\xc3\xa4");   /* "ä" = byte 0xE4 */
	ck_assert_int_ge(byte_e4, 0);
	sampler_logprobs lb = { .id = byte_e4, .logprob = -INFINITY };
	o = roundtrip(oai_logprob_entry(tok, &lb, false), NULL);
	assert_str(o, "token", UTF8_REPLACEMENT);
	assert_bytes(member(o, "bytes"), "\xe4", 1);
	assert_double(o, "logprob", -9999.0);
	ck_assert_uint_eq(json_object_array_length(member(o, "top_logprobs")), 0);
	json_object_put(o);
	tok_ids_deinit(&ids);
}
END_TEST

START_TEST(test_openai_format_text_logprobs_legacy)
{
	tok_ids ids = encode("Hi wörld, hi");
	ck_assert_uint_ge(ids.n, 3);
	oai_text_logprobs l;
	oai_text_logprobs_init(&l, 0);
	int64_t off = 0;
	int64_t want_off[16];
	char *want_tok[16];
	for (size_t i = 0; i < ids.n && i < 16; i++) {
		/* the chosen token is also the first alternative: the dict keeps one entry */
		sampler_logprobs lp = { .id = ids.v[i], .logprob = -0.25f * (float)(i + 1), .n_top = 2,
					.top_ids = { ids.v[i], ids.v[(i + 1) % ids.n] },
					.top_logprobs = { -0.25f * (float)(i + 1), -3.0f } };
		oai_text_logprobs_add(&l, tok, &lp, false);
		strbuf s = { 0 };
		oai_token_text(tok, ids.v[i], false, &s);
		want_off[i] = off;
		for (size_t k = 0; k < s.len; k++)
			off += ((unsigned char)s.s[k] & 0xc0) != 0x80;
		want_tok[i] = strbuf_detach(&s, NULL);
	}
	ck_assert_int_eq(l.offset, off);
	json_object *o = roundtrip(oai_text_logprobs_take(&l), NULL);
	assert_keys(o, KEYS("text_offset", "token_logprobs", "tokens", "top_logprobs"));
	json_object *to = member(o, "text_offset"), *tl = member(o, "token_logprobs");
	json_object *tk = member(o, "tokens"), *tp = member(o, "top_logprobs");
	ck_assert_uint_eq(json_object_array_length(tk), ids.n);
	for (size_t i = 0; i < ids.n; i++) {
		ck_assert_int_eq(json_object_get_int64(json_object_array_get_idx(to, i)), want_off[i]);
		ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(tk, i)), want_tok[i]);
		ck_assert_double_eq(json_object_get_double(json_object_array_get_idx(tl, i)),
				    (double)(-0.25f * (float)(i + 1)));
		json_object *d = json_object_array_get_idx(tp, i);
		ck_assert_int_eq(json_object_object_length(d), 2);
		assert_double(d, want_tok[i], (double)(-0.25f * (float)(i + 1)));
		assert_double(d, want_tok[(i + 1) % ids.n], -3.0);
	}
	json_object_put(o);
	/* "ö" is one character of two bytes: the offsets count characters */
	ck_assert_int_eq(off, (int64_t)strlen("Hi wörld, hi") - 1);

	/* take restarts the arrays; offsets go on */
	sampler_logprobs lp = { .id = ids.v[0], .logprob = 0.0f };
	oai_text_logprobs_add(&l, tok, &lp, true);
	o = roundtrip(oai_text_logprobs_take(&l), NULL);
	ck_assert_uint_eq(json_object_array_length(member(o, "tokens")), 1);
	ck_assert_int_eq(json_object_get_int64(json_object_array_get_idx(member(o, "text_offset"),
									  0)), off);
	char want[32];
	snprintf(want, sizeof(want), "token_id:%d", ids.v[0]);
	ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(member(o, "tokens"), 0)),
			 want);
	json_object_put(o);
	oai_text_logprobs_deinit(&l);
	for (size_t i = 0; i < ids.n && i < 16; i++)
		free(want_tok[i]);
	tok_ids_deinit(&ids);
}
END_TEST

/* ---- chat ---- */

static json_object *fake_entry(const char *token, double lp)
{
	json_object *e = json_object_new_object();
	json_object_object_add(e, "token", json_object_new_string(token));
	json_object_object_add(e, "logprob", json_object_new_double(lp));
	return e;
}

START_TEST(test_openai_format_chat_completion)
{
	oai_meta m = meta(OAI_CHAT);
	json_object *lps = json_object_new_array();
	json_object_array_add(lps, fake_entry("Hi", -0.1));
	oai_tool_call call = { .name = "get_weather", .arguments = "{\"city\": \"Paris\"}" };
	oai_tool_call_id(call.id);
	oai_chat_choice c[3] = {
		{ .content = "Hi there", .content_len = 8, .logprobs = lps, .finish_reason = "stop" },
		{ .tool_calls = &call, .n_tool_calls = 1, .finish_reason = "tool_calls",
		  .stop = { .has_id = true, .id = 151645 } },
		{ .content = "x\0y", .content_len = 3, .finish_reason = "stop", .stop = { .str = "###" } },
	};
	oai_usage u = { .prompt_tokens = 10, .completion_tokens = 5, .cached_tokens = 4 };
	json_object *o = roundtrip(oai_chat_completion(&m, c, 3, &u), NULL);
	json_object_put(lps);   /* the response took its own reference */
	assert_keys(o, KEYS("id", "object", "created", "model", "choices", "usage"));
	assert_head(o, &m, "chat.completion");
	assert_usage(member(o, "usage"), 10, 5, 4);
	json_object *ch = member(o, "choices");
	ck_assert_uint_eq(json_object_array_length(ch), 3);

	json_object *c0 = json_object_array_get_idx(ch, 0);
	assert_keys(c0, KEYS("index", "message", "logprobs", "finish_reason", "stop_reason"));
	assert_int(c0, "index", 0);
	assert_keys(member(c0, "message"), KEYS("role", "content"));
	assert_str(member(c0, "message"), "role", "assistant");
	assert_str(member(c0, "message"), "content", "Hi there");
	json_object *lp = member(c0, "logprobs");
	assert_keys(lp, KEYS("content"));
	ck_assert_uint_eq(json_object_array_length(member(lp, "content")), 1);
	assert_str(json_object_array_get_idx(member(lp, "content"), 0), "token", "Hi");
	assert_str(c0, "finish_reason", "stop");
	assert_null(c0, "stop_reason");

	json_object *c1 = json_object_array_get_idx(ch, 1);
	assert_keys(c1, KEYS("index", "message", "logprobs", "finish_reason", "stop_reason"));
	assert_int(c1, "index", 1);
	json_object *msg = member(c1, "message");
	assert_keys(msg, KEYS("role", "content", "tool_calls"));
	assert_null(msg, "content");
	json_object *tc = member(msg, "tool_calls");
	ck_assert_uint_eq(json_object_array_length(tc), 1);
	json_object *t0 = json_object_array_get_idx(tc, 0);
	assert_keys(t0, KEYS("id", "type", "function"));
	assert_str(t0, "id", call.id);
	assert_str(t0, "type", "function");
	assert_keys(member(t0, "function"), KEYS("name", "arguments"));
	assert_str(member(t0, "function"), "name", "get_weather");
	assert_str(member(t0, "function"), "arguments", "{\"city\": \"Paris\"}");
	assert_null(c1, "logprobs");
	assert_str(c1, "finish_reason", "tool_calls");
	assert_int(c1, "stop_reason", 151645);

	json_object *c2 = json_object_array_get_idx(ch, 2);
	json_object *cv = member(member(c2, "message"), "content");
	ck_assert_int_eq(json_object_get_string_len(cv), 3);
	ck_assert_mem_eq(json_object_get_string(cv), "x\0y", 3);
	assert_str(c2, "stop_reason", "###");
	json_object_put(o);
}
END_TEST

START_TEST(test_openai_format_chat_stream_chunks)
{
	oai_meta m = meta(OAI_CHAT);
	/* first chunk */
	json_object *o = roundtrip(oai_chat_chunk_role(&m, 1), NULL);
	assert_keys(o, KEYS("id", "object", "created", "model", "choices"));
	assert_head(o, &m, "chat.completion.chunk");
	json_object *c = json_object_array_get_idx(member(o, "choices"), 0);
	ck_assert_uint_eq(json_object_array_length(member(o, "choices")), 1);
	assert_keys(c, KEYS("index", "delta", "logprobs", "finish_reason"));
	assert_int(c, "index", 1);
	assert_keys(member(c, "delta"), KEYS("role", "content"));
	assert_str(member(c, "delta"), "role", "assistant");
	assert_str(member(c, "delta"), "content", "");
	assert_null(c, "logprobs");
	assert_null(c, "finish_reason");
	json_object_put(o);

	/* content with logprobs */
	json_object *lps = json_object_new_array();
	json_object_array_add(lps, fake_entry("Hel", -0.2));
	oai_chat_delta d = { .content = "Hel", .content_len = 3, .logprobs = lps };
	o = roundtrip(oai_chat_chunk(&m, 0, &d, NULL), NULL);
	json_object_put(lps);
	assert_head(o, &m, "chat.completion.chunk");
	c = json_object_array_get_idx(member(o, "choices"), 0);
	assert_keys(c, KEYS("index", "delta", "logprobs", "finish_reason"));
	assert_keys(member(c, "delta"), KEYS("content"));
	assert_str(member(c, "delta"), "content", "Hel");
	json_object *lp = member(c, "logprobs");
	assert_keys(lp, KEYS("content"));
	assert_str(json_object_array_get_idx(member(lp, "content"), 0), "token", "Hel");
	json_object_put(o);

	/* tool call deltas: index among the choice's calls, id, type, function */
	oai_tool_call calls[2] = { { .name = "a", .arguments = "{}" },
				   { .name = "b", .arguments = "{\"x\": 1}" } };
	oai_tool_call_id(calls[0].id);
	oai_tool_call_id(calls[1].id);
	d = (oai_chat_delta){ .tool_calls = calls, .n_tool_calls = 2, .tool_index = 3 };
	o = roundtrip(oai_chat_chunk(&m, 0, &d, NULL), NULL);
	c = json_object_array_get_idx(member(o, "choices"), 0);
	assert_keys(member(c, "delta"), KEYS("tool_calls"));
	json_object *tc = member(member(c, "delta"), "tool_calls");
	ck_assert_uint_eq(json_object_array_length(tc), 2);
	for (int i = 0; i < 2; i++) {
		json_object *t = json_object_array_get_idx(tc, (size_t)i);
		assert_keys(t, KEYS("index", "id", "type", "function"));
		assert_int(t, "index", 3 + i);
		assert_str(t, "id", calls[i].id);
		assert_str(t, "type", "function");
		assert_keys(member(t, "function"), KEYS("name", "arguments"));
		assert_str(member(t, "function"), "name", calls[i].name);
		assert_str(member(t, "function"), "arguments", calls[i].arguments);
	}
	json_object_put(o);

	/* finish chunk: empty delta, finish_reason and stop_reason */
	d = (oai_chat_delta){ .finish_reason = "stop", .stop = { .str = "</end>" } };
	o = roundtrip(oai_chat_chunk(&m, 0, &d, NULL), NULL);
	c = json_object_array_get_idx(member(o, "choices"), 0);
	assert_keys(c, KEYS("index", "delta", "logprobs", "finish_reason", "stop_reason"));
	assert_keys(member(c, "delta"), KEYS(NULL));
	assert_str(c, "finish_reason", "stop");
	assert_str(c, "stop_reason", "</end>");
	json_object_put(o);
	d = (oai_chat_delta){ .finish_reason = "length" };
	o = roundtrip(oai_chat_chunk(&m, 0, &d, NULL), NULL);
	c = json_object_array_get_idx(member(o, "choices"), 0);
	assert_str(c, "finish_reason", "length");
	assert_null(c, "stop_reason");
	json_object_put(o);

	/* usage: the include_usage chunk, and continuous usage on a chunk */
	oai_usage u = { .prompt_tokens = 7, .completion_tokens = 3, .cached_tokens = 0 };
	o = roundtrip(oai_chat_chunk_usage(&m, &u), NULL);
	assert_keys(o, KEYS("id", "object", "created", "model", "choices", "usage"));
	assert_head(o, &m, "chat.completion.chunk");
	ck_assert_uint_eq(json_object_array_length(member(o, "choices")), 0);
	assert_usage(member(o, "usage"), 7, 3, 0);
	json_object_put(o);
	d = (oai_chat_delta){ .content = "x", .content_len = 1 };
	o = roundtrip(oai_chat_chunk(&m, 0, &d, &u), NULL);
	assert_keys(o, KEYS("id", "object", "created", "model", "choices", "usage"));
	json_object_put(o);
}
END_TEST

START_TEST(test_openai_format_chat_stream_text_is_sse)
{
	oai_meta m;
	oai_meta_init(&m, OAI_CHAT, "m/x");
	m.created = 1700000000;
	memcpy(m.id, "chatcmpl-0123456789abcdef0123456789abcdef", 42);
	strbuf s = { 0 };
	json_object *o = oai_chat_chunk_role(&m, 0);
	oai_sse_data(&s, o);
	json_object_put(o);
	oai_chat_delta d = { .content = "a\"b", .content_len = 3 };
	o = oai_chat_chunk(&m, 0, &d, NULL);
	oai_sse_data(&s, o);
	json_object_put(o);
	oai_sse_done(&s);
	const char want[] =
		"data: {\"id\":\"chatcmpl-0123456789abcdef0123456789abcdef\",\"object\":"
		"\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m/x\",\"choices\":"
		"[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
		"\"finish_reason\":null}]}\n\n"
		"data: {\"id\":\"chatcmpl-0123456789abcdef0123456789abcdef\",\"object\":"
		"\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m/x\",\"choices\":"
		"[{\"index\":0,\"delta\":{\"content\":\"a\\\"b\"},\"logprobs\":null,"
		"\"finish_reason\":null}]}\n\n"
		"data: [DONE]\n\n";
	ck_assert_str_eq(strbuf_str(&s), want);
	strbuf_deinit(&s);
}
END_TEST

/* ---- completions ---- */

START_TEST(test_openai_format_text_completion)
{
	oai_meta m = meta(OAI_COMPLETION);
	json_object *lp = json_object_new_object();
	json_object_object_add(lp, "tokens", json_object_new_array());
	oai_text_choice c[2] = {
		{ .text = "Paris.", .text_len = 6, .logprobs = lp, .finish_reason = "stop",
		  .stop = { .str = "\n" } },
		{ .text = "Lyon", .text_len = 4, .finish_reason = "length" },
	};
	oai_usage u = { .prompt_tokens = 3, .completion_tokens = 9, .cached_tokens = 2 };
	json_object *o = roundtrip(oai_completion(&m, c, 2, &u), NULL);
	assert_keys(o, KEYS("id", "object", "created", "model", "choices", "usage"));
	assert_head(o, &m, "text_completion");
	assert_usage(member(o, "usage"), 3, 9, 2);
	json_object *ch = member(o, "choices");
	ck_assert_uint_eq(json_object_array_length(ch), 2);
	json_object *c0 = json_object_array_get_idx(ch, 0);
	assert_keys(c0, KEYS("index", "text", "logprobs", "finish_reason", "stop_reason"));
	assert_int(c0, "index", 0);
	assert_str(c0, "text", "Paris.");
	assert_keys(member(c0, "logprobs"), KEYS("tokens"));
	assert_str(c0, "finish_reason", "stop");
	assert_str(c0, "stop_reason", "\n");
	json_object *c1 = json_object_array_get_idx(ch, 1);
	assert_int(c1, "index", 1);
	assert_null(c1, "logprobs");
	assert_str(c1, "finish_reason", "length");
	assert_null(c1, "stop_reason");
	json_object_put(o);

	/* a stream chunk before the end, then the usage chunk */
	oai_text_choice k = { .text = " Par", .text_len = 4, .logprobs = lp };
	o = roundtrip(oai_completion_chunk(&m, 1, &k, NULL), NULL);
	json_object_put(lp);
	assert_keys(o, KEYS("id", "object", "created", "model", "choices"));
	assert_head(o, &m, "text_completion");
	json_object *k0 = json_object_array_get_idx(member(o, "choices"), 0);
	assert_keys(k0, KEYS("index", "text", "logprobs", "finish_reason", "stop_reason"));
	assert_int(k0, "index", 1);
	assert_str(k0, "text", " Par");
	assert_null(k0, "finish_reason");
	assert_null(k0, "stop_reason");
	json_object_put(o);
	o = roundtrip(oai_completion_chunk_usage(&m, &u), NULL);
	assert_keys(o, KEYS("id", "object", "created", "model", "choices", "usage"));
	ck_assert_uint_eq(json_object_array_length(member(o, "choices")), 0);
	assert_usage(member(o, "usage"), 3, 9, 2);
	json_object_put(o);
}
END_TEST

/* ---- /v1/models ---- */

START_TEST(test_openai_format_models_list)
{
	const char *names[] = { "qwen3-vl-2b", "Qwen/Qwen3-VL-2B-Instruct" };
	json_object *o = roundtrip(oai_models(names, 2, "qwen3-vl-2b", 32768, 1700000000), NULL);
	assert_keys(o, KEYS("object", "data"));
	assert_str(o, "object", "list");
	json_object *d = member(o, "data");
	ck_assert_uint_eq(json_object_array_length(d), 2);
	for (size_t i = 0; i < 2; i++) {
		json_object *c = json_object_array_get_idx(d, i);
		assert_keys(c, KEYS("id", "object", "created", "owned_by", "root", "parent",
				    "max_model_len", "permission"));
		assert_str(c, "id", names[i]);
		assert_str(c, "object", "model");
		assert_int(c, "created", 1700000000);
		assert_str(c, "owned_by", "qvl");
		assert_str(c, "root", "qwen3-vl-2b");
		assert_null(c, "parent");
		assert_int(c, "max_model_len", 32768);
		json_object *p = member(c, "permission");
		ck_assert_uint_eq(json_object_array_length(p), 1);
		json_object *p0 = json_object_array_get_idx(p, 0);
		assert_keys(p0, KEYS("id", "object", "created", "allow_create_engine",
				     "allow_sampling", "allow_logprobs", "allow_search_indices",
				     "allow_view", "allow_fine_tuning", "organization", "group",
				     "is_blocking"));
		assert_hex_id(json_object_get_string(member(p0, "id")), "modelperm-");
		assert_str(p0, "object", "model_permission");
		ck_assert(!json_object_get_boolean(member(p0, "allow_create_engine")));
		ck_assert(json_object_get_boolean(member(p0, "allow_logprobs")));
		assert_str(p0, "organization", "*");
		assert_null(p0, "group");
	}
	json_object_put(o);
}
END_TEST

/* ---- tool calls ---- */

typedef struct parsed {
	strbuf content;
	oai_tool_calls calls;
} parsed;

static void parsed_deinit(parsed *p)
{
	strbuf_deinit(&p->content);
	oai_tool_calls_deinit(&p->calls);
}

static parsed one_shot(const char *text)
{
	parsed p = { 0 };
	oai_tool_parse(text, strlen(text), &p.content, &p.calls);
	return p;
}

/* Feed text in pieces ending at cuts[0..n) (ascending), then finish. */
static parsed streamed(const char *text, const size_t *cuts, size_t n)
{
	parsed p = { 0 };
	oai_tool_stream s;
	oai_tool_stream_init(&s);
	size_t len = strlen(text), at = 0;
	for (size_t i = 0; i <= n; i++) {
		size_t end = i < n ? cuts[i] : len;
		oai_tool_stream_feed(&s, text + at, end - at, &p.content, &p.calls);
		at = end;
	}
	oai_tool_stream_finish(&s, &p.content, &p.calls);
	oai_tool_stream_deinit(&s);
	return p;
}

static void assert_same(const parsed *a, const parsed *b, const char *what)
{
	ck_assert_msg(a->content.len == b->content.len &&
		      !memcmp(strbuf_str(&a->content), strbuf_str(&b->content), a->content.len),
		      "%s: content [%s] vs [%s]", what, strbuf_str(&a->content),
		      strbuf_str(&b->content));
	ck_assert_msg(a->calls.n == b->calls.n, "%s: %zu vs %zu calls", what, a->calls.n,
		      b->calls.n);
	for (size_t i = 0; i < a->calls.n; i++) {
		ck_assert_str_eq(a->calls.v[i].name, b->calls.v[i].name);
		ck_assert_str_eq(a->calls.v[i].arguments, b->calls.v[i].arguments);
		assert_call_id(b->calls.v[i].id);
	}
}

static void assert_call(const oai_tool_calls *c, size_t i, const char *name, const char *args)
{
	ck_assert_uint_gt(c->n, i);
	ck_assert_str_eq(c->v[i].name, name);
	ck_assert_str_eq(c->v[i].arguments, args);
	assert_call_id(c->v[i].id);
}

START_TEST(test_openai_format_tool_parse_one)
{
	parsed p = one_shot("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
			    "{\"city\": \"Paris\", \"days\": 3}}\n</tool_call>");
	ck_assert_uint_eq(p.content.len, 0);
	ck_assert_uint_eq(p.calls.n, 1);
	assert_call(&p.calls, 0, "get_weather", "{\"city\": \"Paris\", \"days\": 3}");
	parsed_deinit(&p);

	/* compact JSON from the model comes out in json.dumps' spacing */
	p = one_shot("<tool_call>{\"name\":\"f\",\"arguments\":{\"a\":[1,2],\"b\":{}}}</tool_call>");
	assert_call(&p.calls, 0, "f", "{\"a\": [1, 2], \"b\": {}}");
	parsed_deinit(&p);

	/* no tool calls: the text is the content, trimmed; empty text → null content */
	p = one_shot("  Just text.\n");
	ck_assert_str_eq(strbuf_str(&p.content), "Just text.");
	ck_assert_uint_eq(p.calls.n, 0);
	parsed_deinit(&p);
	p = one_shot(" \n ");
	ck_assert_uint_eq(p.content.len, 0);
	parsed_deinit(&p);
}
END_TEST

START_TEST(test_openai_format_tool_parse_several_with_text_around)
{
	parsed p = one_shot("Let me check both.\n"
			    "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n"
			    "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"y\": \"z\"}}\n</tool_call>\n"
			    "Done.");
	ck_assert_str_eq(strbuf_str(&p.content), "Let me check both.\n\n\nDone.");
	ck_assert_uint_eq(p.calls.n, 2);
	assert_call(&p.calls, 0, "a", "{\"x\": 1}");
	assert_call(&p.calls, 1, "b", "{\"y\": \"z\"}");
	ck_assert_str_ne(p.calls.v[0].id, p.calls.v[1].id);
	parsed_deinit(&p);
}
END_TEST

START_TEST(test_openai_format_tool_parse_malformed_stays_content)
{
	const char *bad[] = {
		"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>",   /* bad JSON */
		"<tool_call>\n{\"arguments\": {}}\n</tool_call>",                         /* no name */
		"<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>",         /* empty name */
		"<tool_call>\n{\"name\": 3, \"arguments\": {}}\n</tool_call>",            /* not a string */
		"<tool_call>\n{\"name\": \"f\", \"arguments\": \"{}\"}\n</tool_call>",    /* args a string */
		"<tool_call>\n[\"f\"]\n</tool_call>",                                     /* not an object */
		"<tool_call></tool_call>",                                                /* empty */
		"<tool_call>\n{\"name\": \"f\", \"arguments\": {}} x\n</tool_call>",      /* trailing */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		parsed p = one_shot(bad[i]);
		ck_assert_msg(p.calls.n == 0, "bad[%zu] parsed", i);
		ck_assert_str_eq(strbuf_str(&p.content), bad[i]);
		parsed_deinit(&p);
	}
	/* a good block after a bad one still counts; arguments absent or null are {} */
	parsed p = one_shot("<tool_call>{oops}</tool_call> and <tool_call>{\"name\": \"g\"}</tool_call>"
			    "<tool_call>{\"name\": \"h\", \"arguments\": null}</tool_call>");
	ck_assert_str_eq(strbuf_str(&p.content), "<tool_call>{oops}</tool_call> and");
	ck_assert_uint_eq(p.calls.n, 2);
	assert_call(&p.calls, 0, "g", "{}");
	assert_call(&p.calls, 1, "h", "{}");
	parsed_deinit(&p);
	/* an unclosed last block: a call when complete JSON, else content */
	p = one_shot("ok <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n");
	ck_assert_str_eq(strbuf_str(&p.content), "ok");
	assert_call(&p.calls, 0, "f", "{\"a\": 1}");
	parsed_deinit(&p);
	p = one_shot("ok <tool_call>\n{\"name\": \"f\", \"argu");
	ck_assert_str_eq(strbuf_str(&p.content), "ok <tool_call>\n{\"name\": \"f\", \"argu");
	ck_assert_uint_eq(p.calls.n, 0);
	parsed_deinit(&p);
}
END_TEST

START_TEST(test_openai_format_tool_arguments_as_python_dumps)
{
	parsed p = one_shot("<tool_call>{\"name\": \"f\", \"arguments\": {\"url\": \"a/b\", "
			    "\"n\": [1, 2.50, -0.0, 1e20, 1E-7, true, false, null], "
			    "\"s\": \"caf\\u00e9\\n\\t\\\"\\\\\\u0001\", \"big\": 12345678901234567890, "
			    "\"o\": {\"k\": {}}, \"e\": []}}</tool_call>");
	ck_assert_uint_eq(p.calls.n, 1);
	assert_call(&p.calls, 0, "f",
		    "{\"url\": \"a/b\", \"n\": [1, 2.5, -0.0, 1e+20, 1e-07, true, false, null], "
		    "\"s\": \"café\\n\\t\\\"\\\\\\u0001\", \"big\": 12345678901234567890, "
		    "\"o\": {\"k\": {}}, \"e\": []}");
	parsed_deinit(&p);
}
END_TEST

static const char *const tool_samples[] = {
	"Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
	"</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}\n"
	"</tool_call>",
	"  lead <<tool_call>{\"name\": \"a\"}</tool_call> mid </tool_call> <tool_call>{bad}"
	"</tool_call>\n tail <tool_c",
	"<tool_call>{\"name\": \"x\", \"arguments\": {\"t\": \"<tool_call>\"}}</tool_call>\n\n"
	"after\n  \n",
	"no calls at all, just é text with <tool and </tool_call> bits  ",
	"x<tool_call>{\"name\": \"u\", \"arguments\": {\"v\": 1}}",
	"x<tool_call>{\"name\": \"u\", \"argu",
	"<tool_call><tool_call>{\"name\": \"n\"}</tool_call></tool_call>",
	" \n\t ",
	"",
};

START_TEST(test_openai_format_tool_stream_every_split_matches_one_shot)
{
	for (size_t k = 0; k < sizeof(tool_samples) / sizeof(tool_samples[0]); k++) {
		const char *text = tool_samples[k];
		size_t len = strlen(text);
		parsed want = one_shot(text);
		/* two pieces, cut at every byte */
		for (size_t i = 0; i <= len; i++) {
			parsed got = streamed(text, &i, 1);
			char what[64];
			snprintf(what, sizeof(what), "sample %zu cut %zu", k, i);
			assert_same(&want, &got, what);
			parsed_deinit(&got);
		}
		/* one byte at a time */
		size_t *cuts = malloc((len + 1) * sizeof(size_t));
		for (size_t i = 0; i < len; i++)
			cuts[i] = i + 1;
		parsed got = streamed(text, cuts, len);
		assert_same(&want, &got, "byte by byte");
		parsed_deinit(&got);
		free(cuts);
		parsed_deinit(&want);
	}
	/* three pieces, every pair of cuts, on the first sample */
	const char *text = tool_samples[1];
	size_t len = strlen(text);
	parsed want = one_shot(text);
	for (size_t i = 0; i <= len; i++)
		for (size_t j = i; j <= len; j++) {
			size_t cuts[2] = { i, j };
			parsed got = streamed(text, cuts, 2);
			assert_same(&want, &got, "three pieces");
			parsed_deinit(&got);
		}
	parsed_deinit(&want);
}
END_TEST

START_TEST(test_openai_format_tool_stream_holds_back)
{
	oai_tool_stream s;
	oai_tool_stream_init(&s);
	strbuf c = { 0 };
	oai_tool_calls calls = { 0 };
	/* a possible tag start and the whitespace before it wait */
	oai_tool_stream_feed(&s, "\n Hello <tool_", 14, &c, &calls);
	ck_assert_str_eq(strbuf_str(&c), "Hello");
	/* inside an open block nothing comes out */
	const char *body = "call>\n{\"name\": \"f\", \"arguments\": {}}";
	oai_tool_stream_feed(&s, body, strlen(body), &c, &calls);
	ck_assert_str_eq(strbuf_str(&c), "Hello");
	ck_assert_uint_eq(calls.n, 0);
	/* the block closes: a call, no content */
	oai_tool_stream_feed(&s, "\n</tool_call>", 13, &c, &calls);
	ck_assert_uint_eq(calls.n, 1);
	assert_call(&calls, 0, "f", "{}");
	ck_assert_str_eq(strbuf_str(&c), "Hello");
	/* content after it: the held space comes with it */
	oai_tool_stream_feed(&s, " bye\n", 5, &c, &calls);
	ck_assert_str_eq(strbuf_str(&c), "Hello  bye");
	/* a "<" that does not become a tag is released with what follows */
	oai_tool_stream_feed(&s, "<", 1, &c, &calls);
	ck_assert_str_eq(strbuf_str(&c), "Hello  bye");
	oai_tool_stream_feed(&s, "b>", 2, &c, &calls);
	ck_assert_str_eq(strbuf_str(&c), "Hello  bye\n<b>");
	oai_tool_stream_finish(&s, &c, &calls);
	ck_assert_str_eq(strbuf_str(&c), "Hello  bye\n<b>");
	ck_assert_uint_eq(calls.n, 1);

	/* the stream can start again: an unclosed block is decided at finish */
	strbuf_truncate(&c, 0);
	oai_tool_stream_feed(&s, "<tool_call>{\"name\": \"g\"}", 24, &c, &calls);
	ck_assert_uint_eq(calls.n, 1);
	oai_tool_stream_finish(&s, &c, &calls);
	ck_assert_uint_eq(calls.n, 2);
	assert_call(&calls, 1, "g", "{}");
	ck_assert_uint_eq(c.len, 0);
	oai_tool_stream_feed(&s, "<tool_call>{\"name\"", 18, &c, &calls);
	ck_assert_uint_eq(c.len, 0);
	oai_tool_stream_finish(&s, &c, &calls);
	ck_assert_str_eq(strbuf_str(&c), "<tool_call>{\"name\"");
	ck_assert_uint_eq(calls.n, 2);
	oai_tool_stream_deinit(&s);
	oai_tool_calls_deinit(&calls);
	strbuf_deinit(&c);
}
END_TEST

/* ---- Prometheus ---- */

#define PROM_MAX 1024

typedef struct prom_line {
	char name[128];
	char labels[256];              /* the text between the braces, as written */
	char value[64];
} prom_line;

typedef struct prom_doc {
	prom_line s[PROM_MAX];
	int n;
	char types[64][2][128];        /* (name, type) of each # TYPE */
	int n_types;
	char helps[64][128];
	int n_helps;
} prom_doc;

static bool name_char(char c, bool first)
{
	return isalpha((unsigned char)c) || c == '_' || c == ':' || (!first && isdigit((unsigned char)c));
}

/* name is fam itself or fam_bucket, fam_count, fam_sum. */
static bool in_family(const char *name, const char *fam)
{
	size_t k = strlen(fam);
	if (strncmp(name, fam, k))
		return false;
	return !name[k] || !strcmp(name + k, "_bucket") || !strcmp(name + k, "_count") ||
	       !strcmp(name + k, "_sum");
}

static const char *type_of(const prom_doc *d, const char *name)
{
	for (int i = 0; i < d->n_types; i++)
		if (!strcmp(d->types[i][0], name))
			return d->types[i][1];
	return NULL;
}

/* Parse exposition text by the format's line rules; fail on any line that breaks them. */
static void prom_parse(const char *text, prom_doc *d)
{
	memset(d, 0, sizeof(*d));
	size_t len = strlen(text);
	ck_assert_msg(len == 0 || text[len - 1] == '\n', "text does not end with a newline");
	const char *p = text;
	while (*p) {
		const char *eol = strchr(p, '\n');
		char line[512];
		ck_assert((size_t)(eol - p) < sizeof(line));
		memcpy(line, p, (size_t)(eol - p));
		line[eol - p] = 0;
		p = eol + 1;
		char a[128], b[128];
		if (!strncmp(line, "# HELP ", 7)) {
			ck_assert_int_eq(sscanf(line + 7, "%127s", a), 1);
			for (int i = 0; i < d->n_helps; i++)
				ck_assert_msg(strcmp(d->helps[i], a), "second HELP for %s", a);
			ck_assert_int_lt(d->n_helps, 64);
			strcpy(d->helps[d->n_helps++], a);
			ck_assert_msg(strlen(line) > 8 + strlen(a), "empty HELP for %s", a);
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			ck_assert_int_eq(sscanf(line + 7, "%127s %127s", a, b), 2);
			ck_assert_msg(!type_of(d, a), "second TYPE for %s", a);
			ck_assert(!strcmp(b, "counter") || !strcmp(b, "gauge") ||
				  !strcmp(b, "histogram"));
			for (int i = 0; i < d->n; i++)   /* TYPE comes before the family's samples */
				ck_assert_msg(!in_family(d->s[i].name, a), "TYPE %s after samples", a);
			ck_assert_int_lt(d->n_types, 64);
			strcpy(d->types[d->n_types][0], a);
			strcpy(d->types[d->n_types++][1], b);
			continue;
		}
		ck_assert_msg(line[0] != '#', "unknown comment line: %s", line);
		ck_assert_int_lt(d->n, PROM_MAX);
		prom_line *s = &d->s[d->n++];
		const char *q = line;
		size_t k = 0;
		ck_assert_msg(name_char(*q, true), "bad metric name: %s", line);
		while (name_char(*q, false))
			s->name[k++] = *q++;
		s->name[k] = 0;
		if (*q == '{') {
			q++;
			const char *start = q;
			while (*q != '}') {
				ck_assert_msg(name_char(*q, true) && *q != ':', "bad label: %s", line);
				while (name_char(*q, false))
					q++;
				ck_assert_msg(q[0] == '=' && q[1] == '"', "bad label: %s", line);
				q += 2;
				while (*q != '"') {
					ck_assert_msg(*q, "unterminated label value: %s", line);
					if (*q == '\\') {
						ck_assert(q[1] == '\\' || q[1] == '"' || q[1] == 'n');
						q++;
					}
					q++;
				}
				q++;
				if (*q == ',')
					q++;
				else
					ck_assert_msg(*q == '}', "bad label list: %s", line);
			}
			memcpy(s->labels, start, (size_t)(q - start));
			s->labels[q - start] = 0;
			q++;
		}
		ck_assert_msg(*q == ' ', "no space before the value: %s", line);
		q++;
		ck_assert(strlen(q) < sizeof(s->value));
		strcpy(s->value, q);
		char *end;
		strtod(s->value, &end);
		ck_assert_msg(*s->value && !*end, "bad value: %s", line);
		/* the sample's family was declared */
		char fam[128];
		strcpy(fam, s->name);
		const char *t = type_of(d, fam);
		if (!t) {
			static const char *const suf[] = { "_bucket", "_count", "_sum" };
			for (int i = 0; i < 3 && !t; i++) {
				size_t n = strlen(s->name), m = strlen(suf[i]);
				if (n > m && !strcmp(s->name + n - m, suf[i])) {
					memcpy(fam, s->name, n - m);
					fam[n - m] = 0;
					t = type_of(d, fam);
					ck_assert(!t || !strcmp(t, "histogram"));
				}
			}
		}
		ck_assert_msg(t != NULL, "sample %s without TYPE", s->name);
		bool helped = false;
		for (int i = 0; i < d->n_helps; i++)
			helped |= !strcmp(d->helps[i], fam);
		ck_assert_msg(helped, "sample %s without HELP", s->name);
	}
}

static const char *prom_get(const prom_doc *d, const char *name, const char *labels)
{
	for (int i = 0; i < d->n; i++)
		if (!strcmp(d->s[i].name, name) && !strcmp(d->s[i].labels, labels))
			return d->s[i].value;
	return NULL;
}

static bool prom_has(const prom_doc *d, const char *prefix)
{
	for (int i = 0; i < d->n; i++)
		if (!strncmp(d->s[i].name, prefix, strlen(prefix)))
			return true;
	return false;
}

static void assert_sample(const prom_doc *d, const char *name, const char *labels,
			  const char *want)
{
	const char *v = prom_get(d, name, labels);
	ck_assert_msg(v != NULL, "no sample %s{%s}", name, labels);
	ck_assert_msg(!strcmp(v, want), "%s{%s} = %s, want %s", name, labels, v, want);
}

#define L "model_name=\"q\\\"w\\\\e\",engine=\"0\""

START_TEST(test_openai_format_prometheus_text)
{
	const char *stats =
		"{\"num_requests_running\":3,\"num_requests_waiting\":0,"
		"\"kv_cache_usage_perc\":0.125,\"prefix_cache_queries\":123456,"
		"\"prefix_cache_hits\":65536,\"prompt_tokens\":123456,\"generation_tokens\":45678,"
		"\"request_success\":{\"stop\":90,\"length\":7,\"abort\":3,\"error\":0,\"weird\":1},"
		"\"kv_blocks_total\":16384,\"kv_blocks_free\":14336,\"connections\":4,"
		"\"draining\":false,\"num_preemptions\":\"not a number\",\"future_key\":{},"
		"\"histograms\":{"
		"\"time_to_first_token_seconds\":{\"buckets\":[0.001,0.5,1,2560],"
		"\"counts\":[1,2,0,3,4],\"sum\":5.75,\"count\":10},"
		"\"request_prompt_tokens\":{\"buckets\":[1,2,5],\"counts\":[0,0,0,0],\"sum\":0,"
		"\"count\":0},"
		"\"e2e_request_latency_seconds\":{\"buckets\":[0.3,0.5],\"counts\":[1,1,1],"
		"\"sum\":2,\"count\":4},"
		"\"request_queue_time_seconds\":{\"buckets\":[0.3,0.5],\"counts\":[1,1],"
		"\"sum\":2,\"count\":2},"
		"\"request_decode_time_seconds\":{\"buckets\":[0.5,0.3],\"counts\":[1,1,0],"
		"\"sum\":2,\"count\":2},"
		"\"bad name\":{\"buckets\":[1],\"counts\":[0,0],\"sum\":0,\"count\":0}}}";
	json_object *o = json_tokener_parse(stats);
	ck_assert_ptr_nonnull(o);
	strbuf out = { 0 };
	oai_prometheus(&out, o, "q\"w\\e");
	json_object_put(o);
	static prom_doc d;
	prom_parse(strbuf_str(&out), &d);

	ck_assert_str_eq(type_of(&d, "vllm:num_requests_running"), "gauge");
	ck_assert_str_eq(type_of(&d, "vllm:kv_cache_usage_perc"), "gauge");
	ck_assert_str_eq(type_of(&d, "vllm:prompt_tokens_total"), "counter");
	ck_assert_str_eq(type_of(&d, "vllm:request_success_total"), "counter");
	ck_assert_str_eq(type_of(&d, "vllm:time_to_first_token_seconds"), "histogram");
	assert_sample(&d, "vllm:num_requests_running", L, "3");
	assert_sample(&d, "vllm:num_requests_waiting", L, "0");
	assert_sample(&d, "vllm:kv_cache_usage_perc", L, "0.125");
	assert_sample(&d, "vllm:prefix_cache_queries_total", L, "123456");
	assert_sample(&d, "vllm:prefix_cache_hits_total", L, "65536");
	assert_sample(&d, "vllm:prompt_tokens_total", L, "123456");
	assert_sample(&d, "vllm:generation_tokens_total", L, "45678");
	assert_sample(&d, "vllm:request_success_total", L ",finished_reason=\"stop\"", "90");
	assert_sample(&d, "vllm:request_success_total", L ",finished_reason=\"length\"", "7");
	assert_sample(&d, "vllm:request_success_total", L ",finished_reason=\"abort\"", "3");
	assert_sample(&d, "vllm:request_success_total", L ",finished_reason=\"error\"", "0");
	ck_assert_ptr_null(prom_get(&d, "vllm:request_success_total", L ",finished_reason=\"weird\""));

	/* cumulative buckets: 1, 1+2, +0, +3; +Inf = count */
	const char *T = "vllm:time_to_first_token_seconds";
	char n[128];
	snprintf(n, sizeof(n), "%s_bucket", T);
	assert_sample(&d, n, L ",le=\"0.001\"", "1");
	assert_sample(&d, n, L ",le=\"0.5\"", "3");
	assert_sample(&d, n, L ",le=\"1.0\"", "3");
	assert_sample(&d, n, L ",le=\"2560.0\"", "6");
	assert_sample(&d, n, L ",le=\"+Inf\"", "10");
	snprintf(n, sizeof(n), "%s_count", T);
	assert_sample(&d, n, L, "10");
	snprintf(n, sizeof(n), "%s_sum", T);
	assert_sample(&d, n, L, "5.75");
	/* the bucket lines of a family come in le order, +Inf last, and never decrease */
	double prev = -1;
	int seen = 0;
	for (int i = 0; i < d.n; i++) {
		if (strcmp(d.s[i].name, "vllm:time_to_first_token_seconds_bucket"))
			continue;
		double v = strtod(d.s[i].value, NULL);
		ck_assert(v >= prev);
		prev = v;
		seen++;
		if (seen == 5)
			ck_assert_ptr_nonnull(strstr(d.s[i].labels, "le=\"+Inf\""));
	}
	ck_assert_int_eq(seen, 5);
	/* an empty histogram is still written */
	assert_sample(&d, "vllm:request_prompt_tokens_bucket", L ",le=\"5.0\"", "0");
	assert_sample(&d, "vllm:request_prompt_tokens_count", L, "0");

	/* left out: counts not adding up to count, wrong length, descending buckets, bad names,
	 * keys of another type, unknown keys */
	ck_assert(!prom_has(&d, "vllm:e2e_request_latency_seconds"));
	ck_assert(!prom_has(&d, "vllm:request_queue_time_seconds"));
	ck_assert(!prom_has(&d, "vllm:request_decode_time_seconds"));
	ck_assert(!prom_has(&d, "vllm:bad"));
	ck_assert(!prom_has(&d, "vllm:num_preemptions"));
	ck_assert(!prom_has(&d, "vllm:kv_blocks"));
	ck_assert(!prom_has(&d, "vllm:connections"));
	ck_assert(!prom_has(&d, "vllm:draining"));
	ck_assert(!prom_has(&d, "vllm:future_key"));
	ck_assert(!prom_has(&d, "vllm:mm_cache"));
	ck_assert_ptr_null(strstr(strbuf_str(&out), "e2e_request_latency"));
	ck_assert_ptr_nonnull(strstr(strbuf_str(&out),
				     "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
				     "# TYPE vllm:prompt_tokens_total counter\n"
				     "vllm:prompt_tokens_total{" L "} 123456\n"));
	strbuf_deinit(&out);

	/* not an object: nothing */
	json_object *arr = json_object_new_array();
	oai_prometheus(&out, arr, "m");
	oai_prometheus(&out, NULL, "m");
	ck_assert_uint_eq(out.len, 0);
	json_object_put(arr);
}
END_TEST

START_TEST(test_openai_format_prometheus_number_format)
{
	const char *stats =
		"{\"kv_cache_usage_perc\":0.1,\"num_requests_running\":1e20,"
		"\"prompt_tokens\":18446744073709551615,"
		"\"histograms\":{\"h\":{\"buckets\":[1e-05,0.25,100000,1000000,12345678,1e17],"
		"\"counts\":[0,1,0,0,0,0,0],\"sum\":0.25,\"count\":1}}}";
	json_object *o = json_tokener_parse(stats);
	ck_assert_ptr_nonnull(o);
	strbuf out = { 0 };
	oai_prometheus(&out, o, "m");
	json_object_put(o);
	static prom_doc d;
	prom_parse(strbuf_str(&out), &d);
#define M "model_name=\"m\",engine=\"0\""
	assert_sample(&d, "vllm:kv_cache_usage_perc", M, "0.1");
	assert_sample(&d, "vllm:num_requests_running", M, "1e+20");
	assert_sample(&d, "vllm:prompt_tokens_total", M, "18446744073709551615");
	assert_sample(&d, "vllm:h_bucket", M ",le=\"1e-05\"", "0");
	assert_sample(&d, "vllm:h_bucket", M ",le=\"0.25\"", "1");
	assert_sample(&d, "vllm:h_bucket", M ",le=\"100000.0\"", "1");
	assert_sample(&d, "vllm:h_bucket", M ",le=\"1e+06\"", "1");
	assert_sample(&d, "vllm:h_bucket", M ",le=\"1.2345678e+07\"", "1");
	assert_sample(&d, "vllm:h_bucket", M ",le=\"1e+17\"", "1");
	assert_sample(&d, "vllm:h_sum", M, "0.25");
	ck_assert_ptr_nonnull(strstr(strbuf_str(&out), "# HELP vllm:h Histogram h.\n"));
#undef M
	strbuf_deinit(&out);
}
END_TEST

/* The daemon's own STATS_REPLY object (metrics_json) comes out whole: every histogram written,
 * its +Inf bucket equal to its count and its buckets cumulative. */
START_TEST(test_openai_format_prometheus_from_daemon_metrics)
{
	static metrics mt;
	metrics_init(&mt, 32768);
	for (int i = 0; i < 50; i++) {
		double x = 0.003 * (i * i + 1);
		metrics_hist_observe(&mt.ttft, x);
		metrics_hist_observe(&mt.itl, x / 10);
		metrics_hist_observe(&mt.e2e, 40 * x);
		metrics_hist_observe(&mt.prompt_len, 17.0 * i * i);
		metrics_hist_observe(&mt.iteration_tokens, 1000.0 * i);
	}
	mt.prompt_tokens = 1234;
	mt.success_stop = 40;
	mt.success_length = 10;
	metrics_gauges g = { .num_requests_running = 2, .kv_cache_usage_perc = 0.5 };
	json_object *o = metrics_json(&mt, &g);
	strbuf out = { 0 };
	oai_prometheus(&out, o, "qwen3-vl-2b");
	json_object_put(o);
	static prom_doc d;
	prom_parse(strbuf_str(&out), &d);
#define M "model_name=\"qwen3-vl-2b\",engine=\"0\""
	static const char *const hists[] = {
		"time_to_first_token_seconds", "inter_token_latency_seconds",
		"e2e_request_latency_seconds", "request_queue_time_seconds",
		"request_inference_time_seconds", "request_prefill_time_seconds",
		"request_decode_time_seconds", "request_prompt_tokens", "request_generation_tokens",
		"iteration_tokens_total",
	};
	for (size_t h = 0; h < sizeof(hists) / sizeof(hists[0]); h++) {
		char fam[128], name[160];
		snprintf(fam, sizeof(fam), "vllm:%s", hists[h]);
		ck_assert_msg(type_of(&d, fam) && !strcmp(type_of(&d, fam), "histogram"), "%s", fam);
		snprintf(name, sizeof(name), "%s_bucket", fam);
		uint64_t prev = 0;
		int n = 0;
		for (int i = 0; i < d.n; i++) {
			if (strcmp(d.s[i].name, name))
				continue;
			uint64_t v = strtoull(d.s[i].value, NULL, 10);
			ck_assert_uint_ge(v, prev);
			prev = v;
			n++;
		}
		ck_assert_int_gt(n, 1);
		snprintf(name, sizeof(name), "%s_count", fam);
		const char *count = prom_get(&d, name, M);
		ck_assert_ptr_nonnull(count);
		snprintf(name, sizeof(name), "%s_bucket", fam);
		assert_sample(&d, name, M ",le=\"+Inf\"", count);
	}
	assert_sample(&d, "vllm:time_to_first_token_seconds_count", M, "50");
	assert_sample(&d, "vllm:request_prompt_tokens_count", M, "50");
	assert_sample(&d, "vllm:prompt_tokens_total", M, "1234");
	assert_sample(&d, "vllm:num_requests_running", M, "2");
	assert_sample(&d, "vllm:kv_cache_usage_perc", M, "0.5");
	assert_sample(&d, "vllm:request_success_total", M ",finished_reason=\"stop\"", "40");
	assert_sample(&d, "vllm:request_success_total", M ",finished_reason=\"length\"", "10");
	assert_sample(&d, "vllm:time_to_first_token_seconds_bucket", M ",le=\"0.001\"", "0");
	assert_sample(&d, "vllm:time_to_first_token_seconds_bucket", M ",le=\"0.005\"", "1");
#undef M
	strbuf_deinit(&out);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("openai_format");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_openai_format_error_object);
	tcase_add_test(tc, test_openai_format_ids_and_meta);
	tcase_add_test(tc, test_openai_format_sse_framing);
	tcase_add_test(tc, test_openai_format_chat_completion);
	tcase_add_test(tc, test_openai_format_chat_stream_chunks);
	tcase_add_test(tc, test_openai_format_chat_stream_text_is_sse);
	tcase_add_test(tc, test_openai_format_text_completion);
	tcase_add_test(tc, test_openai_format_models_list);
	tcase_add_test(tc, test_openai_format_tool_parse_one);
	tcase_add_test(tc, test_openai_format_tool_parse_several_with_text_around);
	tcase_add_test(tc, test_openai_format_tool_parse_malformed_stays_content);
	tcase_add_test(tc, test_openai_format_tool_arguments_as_python_dumps);
	tcase_add_test(tc, test_openai_format_tool_stream_every_split_matches_one_shot);
	tcase_add_test(tc, test_openai_format_tool_stream_holds_back);
	tcase_add_test(tc, test_openai_format_prometheus_text);
	tcase_add_test(tc, test_openai_format_prometheus_number_format);
	tcase_add_test(tc, test_openai_format_prometheus_from_daemon_metrics);
	suite_add_tcase(s, tc);
	TCase *tt = tcase_create("tokenizer");
	tcase_set_timeout(tt, 120);
	tcase_add_unchecked_fixture(tt, load, unload);
	tcase_add_test(tt, test_openai_format_logprob_entry_real_tokenizer);
	tcase_add_test(tt, test_openai_format_text_logprobs_legacy);
	suite_add_tcase(s, tt);
	return tu_run_suite(s);
}
