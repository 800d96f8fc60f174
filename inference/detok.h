/*
 * detok: incremental detokenization for streaming, with stop strings.
 *
 * Generated ids arrive a few at a time; text must leave as soon as it is final, and only as
 * complete UTF-8 — an emoji whose bytes span three tokens comes out whole, once. The text the
 * caller receives, concatenated, is exactly tok_decode(all ids) (ill-formed bytes become U+FFFD
 * by the same rule), cut at a stop string if one matched.
 *
 *   ids ─► token bytes ─► pending ──complete chars──► text ──released──► caller
 *          (special tokens      (held: an incomplete   (held back: the last
 *           dropped when         character)             longest-stop − 1 bytes,
 *           skip_special)                                which may start a stop)
 *
 * Stop strings follow vLLM: they are looked for in the output text once more than min_tokens
 * tokens were generated, in the region the newest text could complete; the first stop string in
 * list order that is found ends generation, and the text is cut before it (or after it with
 * include_stop_str_in_output). While running, the last (longest stop − 1) bytes are held back so
 * a stop string is never streamed and then retracted.
 *
 * spaces_between_special_tokens: vLLM honours it only for slow (Python) tokenizers; with the
 * fast Qwen tokenizer its output never depends on it, and neither does this one's — the field
 * is accepted for compatibility.
 *
 * Threads: a detok belongs to one request; the tokenizer it borrows may be shared.
 */
#ifndef QVL_DETOK_H
#define QVL_DETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qerr.h"
#include "strbuf.h"
#include "tokenizer.h"

#define DETOK_MAX_STOPS 16
#define DETOK_MAX_STOP_BYTES 1024

typedef struct detok_opts {
	bool skip_special_tokens;          /* default true in requests */
	bool include_stop_str_in_output;
	const char *const *stop;           /* borrowed for detok_new only (copied) */
	size_t n_stop;
	int64_t min_tokens;                /* stop strings are checked only after this many tokens */
} detok_opts;

typedef struct detok detok;

/* Fails (QERR_INVALID) for an empty stop string, more than DETOK_MAX_STOPS, or one longer than
 * DETOK_MAX_STOP_BYTES. t is borrowed and must outlive d. */
int detok_new(const tokenizer *t, const detok_opts *o, detok **out, qerr *e);
void detok_free(detok *d);

/* Feed generated ids; append the newly released text to out. Returns true once a stop string
 * has matched (later calls release nothing). */
bool detok_push(detok *d, const int32_t *ids, size_t n, strbuf *out);

/* Generation ended: release everything still held (an incomplete character becomes U+FFFD). */
void detok_finish(detok *d, strbuf *out);

/* The index of the stop string that matched, or -1. */
int detok_stop_index(const detok *d);
/* All output text so far (released or held), cut at a stop. */
const char *detok_text(const detok *d, size_t *len);

#endif
