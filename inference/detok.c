/*
 * detok: incremental detokenization with stop strings (see detok.h for the contract and the
 * data flow). Invariants:
 *   pending        bytes of tokens not yet turned into text: always a valid, incomplete prefix
 *                  of one character (at most 3 bytes), or empty
 *   text           everything decoded so far; released ≤ text.len, and released always falls on
 *                  a character boundary
 *   stopped        once true, text ends where the stop rule cut it and everything is released
 */
#include "detok.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "utf8.h"

struct detok {
	const tokenizer *tok;               /* borrowed */
	bool skip_special, include_stop;
	char *stop[DETOK_MAX_STOPS];        /* owned copies */
	size_t stop_len[DETOK_MAX_STOPS];
	size_t n_stop, max_stop;
	int64_t min_tokens, n_tokens;
	strbuf pending;
	strbuf text;
	size_t released;
	bool stopped;
	int stop_index;
};

int detok_new(const tokenizer *t, const detok_opts *o, detok **out, qerr *e)
{
	*out = NULL;
	if (o->n_stop > DETOK_MAX_STOPS)
		return qerr_set(e, QERR_INVALID, "stop: at most %d stop strings, got %zu", DETOK_MAX_STOPS,
				o->n_stop);
	for (size_t i = 0; i < o->n_stop; i++) {
		size_t n = strlen(o->stop[i]);
		if (n == 0)
			return qerr_set(e, QERR_INVALID, "stop[%zu]: empty stop string", i);
		if (n > DETOK_MAX_STOP_BYTES)
			return qerr_set(e, QERR_INVALID, "stop[%zu]: longer than %d bytes", i,
					DETOK_MAX_STOP_BYTES);
	}
	detok *d = xcalloc(1, sizeof(*d));
	d->tok = t;
	d->skip_special = o->skip_special_tokens;
	d->include_stop = o->include_stop_str_in_output;
	d->min_tokens = o->min_tokens;
	d->stop_index = -1;
	for (size_t i = 0; i < o->n_stop; i++) {
		d->stop[i] = xstrdup(o->stop[i]);
		d->stop_len[i] = strlen(d->stop[i]);
		if (d->stop_len[i] > d->max_stop)
			d->max_stop = d->stop_len[i];
	}
	d->n_stop = o->n_stop;
	*out = d;
	return 0;
}

void detok_free(detok *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n_stop; i++)
		free(d->stop[i]);
	strbuf_deinit(&d->pending);
	strbuf_deinit(&d->text);
	free(d);
}

/* Move every decidable character of pending into text; at_end turns an incomplete tail into
 * U+FFFD too. */
static void drain_pending(detok *d, bool at_end)
{
	const uint8_t *p = (const uint8_t *)strbuf_str(&d->pending);
	size_t len = d->pending.len, i = 0;
	if (!len)
		return;
	while (i < len) {
		size_t n;
		uint32_t cp;
		utf8_step st = utf8_next(p + i, len - i, &n, &cp);
		if (st == UTF8_INCOMPLETE && !at_end)
			break;
		if (st == UTF8_VALID)
			strbuf_add(&d->text, p + i, n);
		else
			strbuf_adds(&d->text, UTF8_REPLACEMENT);
		i += n;
	}
	memmove(d->pending.s, d->pending.s + i, len - i);
	strbuf_truncate(&d->pending, len - i);
}

/* The stop rule over text that grew from old_len (vLLM's check_stop_strings): look where a stop
 * string could end in the new text, stop strings in list order. */
static void check_stops(detok *d, size_t old_len)
{
	if (!d->n_stop || d->n_tokens <= d->min_tokens || d->text.len == old_len)
		return;
	for (size_t k = 0; k < d->n_stop; k++) {
		size_t sl = d->stop_len[k];
		size_t from = old_len + 1 > sl ? old_len + 1 - sl : 0;
		const char *hit = memmem(d->text.s + from, d->text.len - from, d->stop[k], sl);
		if (!hit)
			continue;
		size_t at = (size_t)(hit - d->text.s);
		strbuf_truncate(&d->text, d->include_stop ? at + sl : at);
		d->stopped = true;
		d->stop_index = (int)k;
		return;
	}
}

/* Release text up to `upto` (moved back to a character boundary). */
static void release(detok *d, size_t upto, strbuf *out)
{
	while (upto > d->released && upto < d->text.len && ((uint8_t)d->text.s[upto] & 0xc0) == 0x80)
		upto--;
	if (upto > d->released) {
		strbuf_add(out, d->text.s + d->released, upto - d->released);
		d->released = upto;
	}
}

bool detok_push(detok *d, const int32_t *ids, size_t n, strbuf *out)
{
	for (size_t i = 0; i < n && !d->stopped; i++) {
		d->n_tokens++;
		if (d->skip_special && tok_is_special(d->tok, ids[i]))
			continue;
		size_t blen;
		const char *bytes = tok_id_bytes(d->tok, ids[i], &blen);
		if (!bytes)
			continue;
		size_t old = d->text.len;
		strbuf_add(&d->pending, bytes, blen);
		drain_pending(d, false);
		check_stops(d, old);
	}
	if (d->stopped) {
		release(d, d->text.len, out);
		return true;
	}
	size_t hold = d->include_stop || !d->max_stop ? 0 : d->max_stop - 1;
	release(d, d->text.len > hold ? d->text.len - hold : 0, out);
	return false;
}

void detok_finish(detok *d, strbuf *out)
{
	if (!d->stopped) {
		size_t old = d->text.len;
		drain_pending(d, true);
		check_stops(d, old);
	}
	release(d, d->text.len, out);
}

int detok_stop_index(const detok *d)
{
	return d->stop_index;
}

const char *detok_text(const detok *d, size_t *len)
{
	if (len)
		*len = d->text.len;
	return strbuf_str(&d->text);
}
