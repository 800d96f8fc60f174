/*
 * fuzz_wire: a libFuzzer target for the wire protocol decoders (wire.c), the daemon's and the
 * responders' first contact with bytes from another process.
 *
 * The input is read as a frame: its first WIRE_HEADER_SIZE bytes go to wire_header_parse, and
 * the rest — whatever the header says — is decoded as every payload type in turn (SUBMIT with
 * a small and a large vocabulary, TOKENS with and without a logprobs array, FINISH, ERROR),
 * from an odd address in a buffer that ends where the payload does, so any read past it is
 * an ASan report. Seeds are frames of each type (wire_*_put output). Besides "never crash,
 * never read out of bounds, never leak", the target aborts when a promise of the API breaks:
 *   - header: success gives version 1, a known type and a length ≤ WIRE_MAX_PAYLOAD; failure
 *     is QERR_FORMAT or QERR_UNSUPPORTED;
 *   - decoders: success gives values within the documented limits, and encoding the result
 *     again gives back exactly the payload's bytes (the encoding is canonical); failure is
 *     QERR_FORMAT (or QERR_INVALID for SUBMIT's values), the same code in the qerr, and a
 *     message that is one non-empty line starting with the frame's name.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define FUZZ_TOKENS_CAP 64

static void require(int ok)
{
	if (!ok)
		abort();
}

static void require_failure(int rc, const qerr *e, const char *frame, bool invalid_ok)
{
	require(rc == -QERR_FORMAT || (invalid_ok && rc == -QERR_INVALID));
	require(e->code == -rc);
	require(e->msg[0] != '\0' && strchr(e->msg, '\n') == NULL);
	size_t n = strlen(frame);
	require(strncmp(e->msg, frame, n) == 0 && e->msg[n] == ':');
}

/* b holds one frame of type whose payload must equal p[0..len). */
static void require_same_frame(const strbuf *b, uint16_t type, const uint8_t *p, size_t len)
{
	wire_header h;
	require(b->len == WIRE_HEADER_SIZE + len);
	require(wire_header_parse((const uint8_t *)b->s, &h, NULL) == 0);
	require(h.type == type && h.length == len);
	require(memcmp(b->s + WIRE_HEADER_SIZE, p, len) == 0);
}

static void fuzz_header(const uint8_t *data, size_t size)
{
	if (size < WIRE_HEADER_SIZE)
		return;
	wire_header h;
	qerr e = { 0 };
	int rc = wire_header_parse(data, &h, &e);
	if (rc == 0) {
		require(h.version == WIRE_VERSION && h.length <= WIRE_MAX_PAYLOAD);
		require(strcmp(wire_type_name(h.type), "unknown") != 0);
		strbuf b = { 0 };
		wire_header_put(&b, h.type, h.id, h.length);
		require(b.len == WIRE_HEADER_SIZE && memcmp(b.s, data, WIRE_HEADER_SIZE) == 0);
		strbuf_deinit(&b);
	} else {
		require(rc == -QERR_FORMAT || rc == -QERR_UNSUPPORTED);
		require(e.code == -rc && e.msg[0] != '\0' && strchr(e.msg, '\n') == NULL);
	}
}

static void fuzz_submit(const uint8_t *p, size_t len, int V)
{
	wire_submit s;
	qerr e = { 0 };
	int rc = wire_submit_decode(p, len, V, &s, &e);
	if (rc) {
		require_failure(rc, &e, "SUBMIT", true);
		require(s.ids_buf == NULL && s.n_ids == 0);
		return;
	}
	require(s.n_ids >= 1 && s.n_ids <= WIRE_MAX_TOKENS && s.ids == s.ids_buf);
	for (uint32_t i = 0; i < s.n_ids; i++)
		require(s.ids[i] >= 0 && s.ids[i] < V);
	require(s.n_images <= WIRE_MAX_IMAGES);
	for (uint32_t i = 0; i < s.n_images; i++) {
		const wire_image *im = &s.images[i];
		require(im->start >= 0 && im->start < (int64_t)s.n_ids);
		require(i == 0 || im->start > s.images[i - 1].start);
		require(im->grid_t > 0 && im->grid_h > 0 && im->grid_w > 0);
		require(im->width > 0 && im->height > 0);
		const size_t n = (size_t)im->width * (size_t)im->height * 3;
		require(im->rgb >= p && n <= (size_t)(p + len - im->rgb));
	}
	require(s.sp.n_stop_ids >= 0 && s.sp.n_stop_ids <= SAMPLER_MAX_STOP_IDS);
	require(s.sp.logprobs >= -1 && s.sp.logprobs <= SAMPLER_MAX_LOGPROBS);
	require(s.sp.n_eos == 0);
	require(s.max_tokens >= 1 && s.n >= 1 && s.n <= WIRE_MAX_N);
	require(wire_submit_size(&s) == len);
	strbuf b = { 0 };
	wire_submit_put(&b, 1, &s);
	require_same_frame(&b, WIRE_T_SUBMIT, p, len);
	strbuf_deinit(&b);
	wire_submit_deinit(&s);
}

static void fuzz_tokens(const uint8_t *p, size_t len, bool want_lp)
{
	static int32_t ids[FUZZ_TOKENS_CAP];
	static sampler_logprobs lp[FUZZ_TOKENS_CAP];
	uint32_t index = 0, n = 99;
	bool has = false;
	qerr e = { 0 };
	int rc = wire_tokens_decode(p, len, &index, ids, want_lp ? lp : NULL, &has,
				    FUZZ_TOKENS_CAP, &n, &e);
	if (rc) {
		require_failure(rc, &e, "TOKENS", false);
		require(n == 0);
		return;
	}
	require(n >= 1 && n <= FUZZ_TOKENS_CAP && index < WIRE_MAX_N);
	for (uint32_t i = 0; i < n; i++)
		require(ids[i] >= 0);
	if (has && !want_lp)
		return;   /* the logprobs were dropped: nothing to re-encode from */
	for (uint32_t i = 0; has && i < n; i++)
		require(lp[i].id == ids[i] && lp[i].n_top >= 0 &&
			lp[i].n_top <= SAMPLER_MAX_LOGPROBS);
	wire_tokens t = { .index = index, .n = n, .ids = ids, .has_logprobs = has, .lp = lp };
	strbuf b = { 0 };
	wire_tokens_put(&b, 1, &t);
	require_same_frame(&b, WIRE_T_TOKENS, p, len);
	strbuf_deinit(&b);
}

static void fuzz_finish(const uint8_t *p, size_t len)
{
	wire_finish f;
	qerr e = { 0 };
	int rc = wire_finish_decode(p, len, &f, &e);
	if (rc) {
		require_failure(rc, &e, "FINISH", false);
		return;
	}
	require(f.reason >= WIRE_FINISH_STOP && f.reason <= WIRE_FINISH_ABORT);
	strbuf b = { 0 };
	wire_finish_put(&b, 1, &f);
	require_same_frame(&b, WIRE_T_FINISH, p, len);
	strbuf_deinit(&b);
}

static void fuzz_error(const uint8_t *p, size_t len)
{
	static wire_error w;
	qerr e = { 0 };
	int rc = wire_error_decode(p, len, &w, &e);
	if (rc) {
		require_failure(rc, &e, "ERROR", false);
		return;
	}
	require(w.code >= WIRE_E_BAD_REQUEST && w.code <= WIRE_E_CANCELLED);
	const size_t n = strlen(w.message);
	require(n <= WIRE_MAX_MESSAGE && n + 8 <= len);
	if (n + 8 == len) {   /* no NUL inside: put gives the same bytes back */
		strbuf b = { 0 };
		wire_error_put(&b, 1, w.code, w.message);
		require_same_frame(&b, WIRE_T_ERROR, p, len);
		strbuf_deinit(&b);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_header(data, size);
	const size_t skip = size < WIRE_HEADER_SIZE ? size : WIRE_HEADER_SIZE;
	const size_t len = size - skip;
	/* the payload at an odd address, the buffer ending with it */
	uint8_t *buf = malloc(len + 1);
	uint8_t *p = buf + 1;
	memcpy(p, data + skip, len);
	fuzz_submit(p, len, 1000);
	fuzz_submit(p, len, 1 << 20);
	fuzz_tokens(p, len, true);
	fuzz_tokens(p, len, false);
	fuzz_finish(p, len);
	fuzz_error(p, len);
	free(buf);
	return 0;
}
