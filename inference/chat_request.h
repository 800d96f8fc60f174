/*
 * chat_request: an OpenAI chat-completions request body (a json-c object) read into one struct
 * with every field this server honours validated, and its images collected and loaded.
 *
 * What is read (anything else in the body is ignored, as vLLM ignores unknown fields):
 *   messages (required array), tools, model, max_completion_tokens (else max_tokens),
 *   temperature, top_p, top_k, min_p, seed, n (1..128), presence_penalty, frequency_penalty,
 *   repetition_penalty, stop (string or list of strings),
 *   stop_token_ids, ignore_eos, min_tokens, logprobs, top_logprobs (0..20, needs logprobs),
 *   skip_special_tokens, include_stop_str_in_output, return_tokens_as_token_ids,
 *   mm_processor_kwargs {min_pixels, max_pixels}, chat_template_kwargs {add_vision_id},
 *   add_generation_prompt.
 * A field that is present with the wrong type or out of range is an error naming the field
 * ("request: top_logprobs: …"); JSON null counts as absent. Codes: QERR_FORMAT for a wrong type
 * or undecodable data, QERR_INVALID for a value out of range, QERR_UNSUPPORTED for what this
 * server does not do (videos, http(s) image URLs), QERR_MISSING for an absent messages
 * array or image file, QERR_LIMIT for an image over CHAT_REQUEST_MAX_IMAGE_BYTES, QERR_IO for
 * an unreadable file. All of them mean "bad request" (HTTP 400) to a server.
 *
 * Images are collected from every message's content parts in message order:
 *   {"type": "image_url", "image_url": {"url": U}}   (OpenAI; "image_url": U also accepted)
 *   {"type": "image", "image": U}
 * where U is a data URL (data:image/...;base64,..., decoded strictly: the standard alphabet,
 * padding required, no whitespace) or, when the caller allows it, a local path (file:///abs or
 * a plain path). http(s) URLs are refused here: the server (qvl-fcgi) fetches them before the
 * request reaches this code. The chat template renders image parts of user and tool messages
 * only; the generator checks that the rendered count equals the collected one.
 *
 * Ownership: messages, tools, model and the stop strings are borrowed from the body, which must
 * outlive the struct; the decoded image bytes are owned (chat_request_deinit frees them).
 * Threads: plain data; no shared state.
 */
#ifndef QVL_CHAT_REQUEST_H
#define QVL_CHAT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json.h>

#include "chat_template.h"
#include "detok.h"
#include "qerr.h"

#define CHAT_REQUEST_MAX_TOP_LOGPROBS 20
#define CHAT_REQUEST_MAX_STOP_TOKEN_IDS 64
#define CHAT_REQUEST_MAX_IMAGES 64
#define CHAT_REQUEST_MAX_N 128
/* The most encoded bytes of one image (a data URL's payload or a file). */
#define CHAT_REQUEST_MAX_IMAGE_BYTES (64u << 20)

typedef struct chat_image {
	char *data;                    /* owned: the encoded image (PNG, JPEG, WebP…) */
	size_t len;
	char where[64];                /* "messages[1].content[0]", for error messages */
} chat_image;

typedef struct chat_request {
	json_object *messages;         /* borrowed */
	json_object *tools;            /* borrowed; NULL when absent */
	const char *model;             /* borrowed; NULL when absent */

	int64_t max_tokens;            /* -1: not given */
	bool has_temperature, has_top_p, has_top_k, has_min_p, has_seed;
	double temperature;            /* ≥ 0; 0 is greedy */
	double top_p;                  /* (0, 1] */
	int64_t top_k;                 /* -1 or 0: off; else ≥ 1 */
	double min_p;                  /* [0, 1] */
	uint64_t seed;                 /* any int64, used as its bit pattern */
	double presence_penalty;       /* [-2, 2], default 0 */
	double frequency_penalty;      /* [-2, 2], default 0 */
	bool has_repetition_penalty;
	double repetition_penalty;     /* > 0 */
	uint32_t n;                    /* choices, 1..CHAT_REQUEST_MAX_N */

	const char *stop[DETOK_MAX_STOPS];   /* borrowed */
	size_t n_stop;
	int32_t stop_token_ids[CHAT_REQUEST_MAX_STOP_TOKEN_IDS];
	size_t n_stop_token_ids;
	bool ignore_eos;
	int64_t min_tokens;            /* ≥ 0, ≤ max_tokens when both are given */

	bool logprobs;
	int top_logprobs;              /* 0..20; > 0 only with logprobs */
	bool skip_special_tokens;      /* default true */
	bool include_stop_str_in_output;
	bool return_tokens_as_token_ids;

	int64_t min_pixels, max_pixels;  /* mm_processor_kwargs; 0: the processor's */
	chat_opts chat;                /* add_generation_prompt (default true), add_vision_id */

	chat_image *images;            /* owned: n_images of them, in message order */
	size_t n_images;
} chat_request;

/* Read body into *out (zeroed first; deinit is safe after any return). allow_local_paths:
 * whether image URLs may name local files (the offline command allows it; a server must not
 * without a configured root). Fails as the file comment says, with the message naming the
 * field. */
int chat_request_parse(json_object *body, bool allow_local_paths, chat_request *out, qerr *e);

/* How a server loads image URLs other than data: URLs. With fetch set, every such URL (http(s),
 * file://, a path) goes to it: it returns the bytes (heap, owned by the request afterwards) or
 * an error naming the URL; without it they are refused unless allow_local_paths. */
typedef struct chat_media {
	bool allow_local_paths;
	int (*fetch)(void *ctx, const char *url, char **data, size_t *len, qerr *e);
	void *ctx;                     /* borrowed: the fetcher's */
} chat_media;

/* chat_request_parse with a media policy (m may be NULL: data: URLs only). */
int chat_request_parse_media(json_object *body, const chat_media *m, chat_request *out, qerr *e);
void chat_request_deinit(chat_request *r);

/* Strict base64 (RFC 4648 §4, padded, no whitespace) of s[0, len) into a heap buffer; *out_len
 * the decoded size. QERR_FORMAT naming the offset of the first bad character or a bad length,
 * QERR_LIMIT when the result would exceed max_bytes. *out is NULL after a failure. */
int chat_base64_decode(const char *s, size_t len, size_t max_bytes, char **out, size_t *out_len,
		       qerr *e);

#endif
