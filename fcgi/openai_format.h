/*
 * openai_format: the JSON and text that qvl-fcgi sends back to OpenAI clients, built from what
 * the daemon returned (token ids, logprobs, finish reasons, STATS_REPLY). Pure formatting: no
 * sockets, no libfcgi, no request state beyond the small structs below.
 *
 * Shapes follow vLLM's OpenAI server, since qvl's users come from vLLM (notes/serving-anchors.md
 * §1). Where OpenAI and vLLM differ this module takes vLLM's side, except where noted:
 *
 *   error         {"error":{"message","type","param","code"}}: vLLM's ErrorResponse (type the
 *                 exception class name, "BadRequestError"…; code the HTTP status as an integer),
 *                 not OpenAI's ("invalid_request_error", code a string or null).
 *   chat.completion / chat.completion.chunk / text_completion: vLLM's fields, including its
 *                 stop_reason (the stop string, or the stop_token_ids id, or null) and
 *                 usage.prompt_tokens_details.cached_tokens (always present here).
 *   logprobs      "bytes" are the token's raw bytes (OpenAI's meaning, so that characters split
 *                 over tokens can be rebuilt); vLLM sends the bytes of the lossy text instead.
 *                 Logprobs below -9999 (and -inf, NaN) are written as -9999.0, as vLLM does.
 *   tool calls    Qwen3 (Hermes) <tool_call> blocks; ids "call_<24 alnum>" as OpenAI writes
 *                 them (vLLM writes "chatcmpl-tool-<uuid>"); content is all text outside the
 *                 blocks, trimmed (vLLM keeps only the text before the first block).
 *   /v1/models    vLLM's ModelCard, owned_by "qvl", with vLLM's one model_permission entry.
 *   /metrics      Prometheus text 0.0.4 as prometheus_client writes it for vLLM: names
 *                 "vllm:<name>", labels model_name then engine="0", counters named with
 *                 "_total" in HELP/TYPE and samples, le values formatted as Python does
 *                 ("0.001", "1.0", "2560.0", "1e+06"). Integer values are written as integers.
 *
 * Layout of a stream (one chat choice; n > 1 interleaves chunks of index 0..n-1):
 *
 *   data: {…"choices":[{"index":0,"delta":{"role":"assistant","content":""},…}]}\n\n   role
 *   data: {…"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}…\n\n        text
 *   data: {…"delta":{"tool_calls":[{"index":0,"id":"call_…","type":"function",
 *                                   "function":{"name":"f","arguments":"{…}"}}]}…}\n\n   tools
 *   data: {…"delta":{},"logprobs":null,"finish_reason":"stop","stop_reason":null}…\n\n  finish
 *   data: {…"choices":[],"usage":{…}}\n\n                    stream_options.include_usage
 *   data: [DONE]\n\n
 *   : ping\n\n          a comment, at any point between events, to keep proxies from timing out
 *
 * Ownership: builders return a new json_object the caller owns (json_object_put). json_object
 * inputs (logprobs arrays) are borrowed: a builder takes a reference of its own. Strings in the
 * input structs are borrowed for the call only. Allocation failure aborts (alloc.h).
 *
 * Threads: no shared state; every function may run in any thread at once. Ids come from
 * getrandom(2) (a clock-seeded fallback if that fails).
 */
#ifndef QVL_OPENAI_FORMAT_H
#define QVL_OPENAI_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json.h>

#include "sampler.h"
#include "strbuf.h"
#include "tokenizer.h"

/* ---- serialising ---- */

/* Append o as compact JSON (no spaces, "/" not escaped, non-ASCII as UTF-8) to out. o stays the
 * caller's. A NULL o is JSON null. */
void oai_json_append(strbuf *out, json_object *o);

/* One Server-Sent Event: "data: <json>\n\n". o stays the caller's. */
void oai_sse_data(strbuf *out, json_object *o);
/* The stream's terminator "data: [DONE]\n\n". */
void oai_sse_done(strbuf *out);
/* A heartbeat: the SSE comment ": ping\n\n", which clients ignore. */
void oai_sse_ping(strbuf *out);

/* ---- errors ---- */

/* vLLM's error type for an HTTP status: 400 "BadRequestError", 401 "AuthenticationError",
 * 403 "PermissionDeniedError", 404 "NotFoundError", 422 "UnprocessableEntityError",
 * 429 "RateLimitError", 501 "NotImplementedError", 503 "ServiceUnavailableError", any other
 * 4xx "BadRequestError", anything else "InternalServerError". A static string. */
const char *oai_error_type(int status);

/* {"error":{"message":message,"type":oai_error_type(status),"param":param or null,
 * "code":status}}. message NULL is "". In a stream the same object is sent as one event
 * (oai_sse_data) before [DONE], as vLLM does. */
json_object *oai_error(int status, const char *message, const char *param);

/* ---- ids, usage, stop reasons ---- */

#define OAI_ID_SIZE 48             /* "chatcmpl-" + 32 hex + NUL fits */

typedef enum oai_kind {
	OAI_CHAT,                  /* ids "chatcmpl-<32 hex>" */
	OAI_COMPLETION,            /* ids "cmpl-<32 hex>" */
} oai_kind;

/* What every response and every chunk of one stream repeats. */
typedef struct oai_meta {
	char id[OAI_ID_SIZE];
	int64_t created;           /* Unix seconds */
	const char *model;         /* borrowed: the name the request asked for (or the first
				    * served name); must outlive the builders' calls */
} oai_meta;

/* A fresh id of the kind, created = now, model borrowed. One per request: every chunk of a
 * stream is built from the same oai_meta. */
void oai_meta_init(oai_meta *m, oai_kind kind, const char *model);

typedef struct oai_usage {
	int64_t prompt_tokens;
	int64_t completion_tokens; /* all choices together */
	int64_t cached_tokens;     /* prompt tokens served by the prefix cache */
} oai_usage;

/* {"prompt_tokens","total_tokens","completion_tokens","prompt_tokens_details":
 * {"cached_tokens"}} (total = prompt + completion). */
json_object *oai_usage_json(const oai_usage *u);

/* vLLM's stop_reason: the stop string that ended a choice, or the stop_token_ids id, or null
 * (an eos token, max_tokens, abort). A zeroed struct is null; str wins over has_id. */
typedef struct oai_stop_reason {
	const char *str;           /* borrowed, or NULL */
	bool has_id;
	int32_t id;
} oai_stop_reason;

/* ---- logprobs ---- */

/* The token as logprobs show it, appended to out: "token_id:<id>" when as_ids (vLLM's
 * return_tokens_as_token_ids), else the token's bytes as lossy UTF-8 (U+FFFD for bytes that are
 * part of a character split over tokens; "" for an id that is not a token). */
void oai_token_text(const tokenizer *t, int32_t id, bool as_ids, strbuf *out);

/* One chat logprobs.content entry:
 *   {"token":…, "logprob":lp->logprob, "bytes":[raw bytes of the token],
 *    "top_logprobs":[{"token","logprob","bytes"} × lp->n_top, most likely first]}
 * The caller collects entries in an array (json_object_array_add) per choice or per chunk. */
json_object *oai_logprob_entry(const tokenizer *t, const sampler_logprobs *lp, bool as_ids);

/* /v1/completions' legacy logprobs, built token by token:
 *   {"text_offset":[…],"token_logprobs":[…],"tokens":[…],"top_logprobs":[{tok: lp, …}, …]}
 * Each top_logprobs dict holds the chosen token then its lp->n_top alternatives (a token text
 * that occurs twice keeps its first value), as vLLM builds it. text_offset of a token is the
 * offset of the one before plus that one's length in characters (code points of its token
 * text), starting at `offset`. */
typedef struct oai_text_logprobs {
	json_object *text_offset;      /* owned */
	json_object *token_logprobs;   /* owned */
	json_object *tokens;           /* owned */
	json_object *top_logprobs;     /* owned */
	int64_t offset;                /* text_offset of the next token; a stream may set it to the
					* characters already sent before adding a chunk's tokens */
} oai_text_logprobs;

void oai_text_logprobs_init(oai_text_logprobs *l, int64_t offset);
void oai_text_logprobs_add(oai_text_logprobs *l, const tokenizer *t, const sampler_logprobs *lp,
			   bool as_ids);
/* The object of the tokens added since init or the last take (the caller owns it); the arrays
 * start again empty, offset goes on. */
json_object *oai_text_logprobs_take(oai_text_logprobs *l);
void oai_text_logprobs_deinit(oai_text_logprobs *l);

/* ---- tool calls (Qwen3 / Hermes) ---- */

#define OAI_TOOL_CALL_ID_SIZE 30   /* "call_" + 24 alphanumerics + NUL */

typedef struct oai_tool_call {
	char id[OAI_TOOL_CALL_ID_SIZE];
	char *name;                /* owned */
	char *arguments;           /* owned: the arguments object as JSON text, written as Python's
				    * json.dumps(ensure_ascii=False) writes it ({"a": 1, "b": [2, 3]}),
				    * so that it matches vLLM's hermes parser byte for byte */
} oai_tool_call;

typedef struct oai_tool_calls {
	oai_tool_call *v;          /* owned */
	size_t n, cap;
} oai_tool_calls;

void oai_tool_calls_deinit(oai_tool_calls *c);

/* A fresh tool call id "call_<24 of [A-Za-z0-9]>". */
void oai_tool_call_id(char out[OAI_TOOL_CALL_ID_SIZE]);

/* Split a finished assistant text into content and tool calls. The model writes
 *
 *   some text<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>\n<tool_call>…</tool_call>
 *
 * Each block from "<tool_call>" to the first "</tool_call>" after it whose body (trimmed) is a
 * JSON object with a non-empty string "name" and an object "arguments" (absent or null counts as
 * {}) becomes a call, appended to calls in order; any other block (bad JSON, no name, arguments
 * not an object) is malformed and stays in the content as written. A last block without
 * "</tool_call>" (generation cut short) is a call if its body parses, else content. The content
 * appended to `content` is the text outside the calls, concatenated, with leading and trailing
 * ASCII whitespace removed; nothing appended means the message's content is null. */
void oai_tool_parse(const char *text, size_t len, strbuf *content, oai_tool_calls *calls);

/* The same split made while streaming. Feed each text delta as it is released; the content that
 * may be sent now is appended to `content` and each call completed is appended to `calls`
 * (send the new ones as tool_call deltas; a call's index is its position in calls). Held back:
 * text after an unclosed "<tool_call>", a trailing partial "<tool_call" prefix, whitespace at
 * the start of the content and whitespace that might turn out to be its end. finish releases
 * what is left. For any split of a text into deltas, the concatenated content and the calls
 * equal oai_tool_parse's (ids aside). */
typedef struct oai_tool_stream {
	strbuf buf;                /* owned: received text not yet decided */
	strbuf ws;                 /* owned: whitespace held after the content sent so far */
	size_t scan;               /* in a block: where the next search for "</tool_call>" starts */
	bool in_block;             /* buf is the body of an open <tool_call> (the tag not kept) */
	bool any_content;          /* content other than whitespace was released */
} oai_tool_stream;

void oai_tool_stream_init(oai_tool_stream *s);
void oai_tool_stream_feed(oai_tool_stream *s, const char *delta, size_t len, strbuf *content,
			  oai_tool_calls *calls);
/* End of the text: decides an unclosed block, releases a held partial tag, drops trailing
 * whitespace. The stream may be fed again afterwards as a new text. */
void oai_tool_stream_finish(oai_tool_stream *s, strbuf *content, oai_tool_calls *calls);
void oai_tool_stream_deinit(oai_tool_stream *s);

/* ---- /v1/chat/completions ---- */

/* One finished choice. finish_reason is the caller's: "tool_calls" whenever calls were parsed
 * (vLLM reports it whatever ended generation), else "stop" or "length" from the daemon. */
typedef struct oai_chat_choice {
	const char *content;       /* borrowed: message text, or NULL for "content": null */
	size_t content_len;
	const oai_tool_call *tool_calls;   /* borrowed: n_tool_calls; none → no tool_calls key */
	size_t n_tool_calls;
	json_object *logprobs;     /* borrowed: array of oai_logprob_entry, or NULL when logprobs
				    * were not asked for ("logprobs": null) */
	const char *finish_reason; /* borrowed; NULL is written as null */
	oai_stop_reason stop;
} oai_chat_choice;

/* {"id","object":"chat.completion","created","model","choices":[{"index":i,
 *  "message":{"role":"assistant","content":…[,"tool_calls":[{"id","type":"function",
 *  "function":{"name","arguments"}}]]},"logprobs":{"content":[…]}|null,"finish_reason",
 *  "stop_reason"}…],"usage":{…}} with choice i = c[i]. */
json_object *oai_chat_completion(const oai_meta *m, const oai_chat_choice *c, size_t n,
				 const oai_usage *u);

/* What one chat.completion.chunk carries for one choice. Zeroed, it is the finish chunk's empty
 * delta {} with finish_reason null. */
typedef struct oai_chat_delta {
	bool role;                 /* add "role":"assistant" (the choice's first chunk) */
	const char *content;       /* borrowed: NULL → no content key */
	size_t content_len;
	const oai_tool_call *tool_calls;   /* borrowed: n_tool_calls new calls */
	size_t n_tool_calls;
	size_t tool_index;         /* the index of tool_calls[0] among the choice's calls */
	json_object *logprobs;     /* borrowed: entries of this chunk's tokens, or NULL → null */
	const char *finish_reason; /* borrowed: set on the choice's last chunk only */
	oai_stop_reason stop;      /* written as stop_reason only when finish_reason is set */
} oai_chat_delta;

/* {"id","object":"chat.completion.chunk","created","model","choices":[{"index",
 *  "delta":{…},"logprobs":{"content":[…]}|null,"finish_reason":…[,"stop_reason":…]}]
 *  [,"usage":{…}]}. u non-NULL adds usage (vLLM's continuous_usage_stats). */
json_object *oai_chat_chunk(const oai_meta *m, uint32_t index, const oai_chat_delta *d,
			    const oai_usage *u);
/* The first chunk of a choice: delta {"role":"assistant","content":""}. */
json_object *oai_chat_chunk_role(const oai_meta *m, uint32_t index);
/* The usage chunk of stream_options.include_usage: "choices":[] and "usage", after every
 * choice's finish chunk and before [DONE]. */
json_object *oai_chat_chunk_usage(const oai_meta *m, const oai_usage *u);

/* ---- /v1/completions ---- */

typedef struct oai_text_choice {
	const char *text;          /* borrowed (NULL is "") */
	size_t text_len;
	json_object *logprobs;     /* borrowed: from oai_text_logprobs_take, or NULL → null */
	const char *finish_reason; /* borrowed: NULL → null (stream chunks before the last) */
	oai_stop_reason stop;
} oai_text_choice;

/* {"id","object":"text_completion","created","model","choices":[{"index","text","logprobs",
 *  "finish_reason","stop_reason"}…],"usage":{…}} */
json_object *oai_completion(const oai_meta *m, const oai_text_choice *c, size_t n,
			    const oai_usage *u);
/* A stream chunk: the same object with one choice of index `index` (text = the delta);
 * u non-NULL adds usage. */
json_object *oai_completion_chunk(const oai_meta *m, uint32_t index, const oai_text_choice *c,
				  const oai_usage *u);
/* "choices":[] and "usage" (stream_options.include_usage). */
json_object *oai_completion_chunk_usage(const oai_meta *m, const oai_usage *u);

/* ---- /v1/models ---- */

/* {"object":"list","data":[{"id":names[i],"object":"model","created","owned_by":"qvl",
 *  "root":root,"parent":null,"max_model_len","permission":[{"id":"modelperm-<32 hex>",
 *  "object":"model_permission","created","allow_create_engine":false,"allow_sampling":true,
 *  "allow_logprobs":true,"allow_search_indices":false,"allow_view":true,
 *  "allow_fine_tuning":false,"organization":"*","group":null,"is_blocking":false}]}…]}.
 * root (NULL → null) is what vLLM reports as the model path: the model directory, or
 * names[0] to keep the directory private. */
json_object *oai_models(const char *const *names, size_t n, const char *root,
			int64_t max_model_len, int64_t created);

/* ---- /metrics ---- */

/* Prometheus text exposition (format 0.0.4) of a STATS_REPLY object (docs/protocol.md),
 * appended to out; every sample labelled {model_name="<model_name>",engine="0"} (the value
 * escaped as the format requires). Written, each with # HELP and # TYPE, when its key holds a
 * number:
 *   gauges    vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc
 *   counters  vllm:num_preemptions_total, vllm:prompt_tokens_total,
 *             vllm:generation_tokens_total, vllm:prefix_cache_queries_total,
 *             vllm:prefix_cache_hits_total, vllm:prompt_tokens_cached_total,
 *             vllm:mm_cache_queries_total, vllm:mm_cache_hits_total,
 *             vllm:request_success_total{finished_reason="stop|length|abort|error"}
 *   histograms  every entry of "histograms" whose name is a valid metric name:
 *             vllm:<name>_bucket{…,le="…"} with the per-bucket counts added up, le="+Inf" =
 *             count, then _count and _sum. A histogram whose buckets are not ascending finite
 *             numbers, whose counts are not len(buckets)+1 non-negative integers, or whose
 *             counts do not add up to count is left out.
 * Absent keys and keys of another type are skipped; unknown keys (kv_blocks_*, connections,
 * draining…) are ignored. A stats that is not an object gives nothing. */
void oai_prometheus(strbuf *out, json_object *stats, const char *model_name);

#endif
