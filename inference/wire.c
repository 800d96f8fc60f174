/*
 * wire: encoding and decoding of the qvl wire protocol, version 1 (wire.h has the framing,
 * docs/protocol.md every field of every frame).
 *
 * Writing: a frame is built in the caller's strbuf, header first (its length computed
 * beforehand, so nothing is patched afterwards), then the fields in order. Every value is
 * turned into little-endian bytes by shifts (floats through memcpy into an integer), never
 * stored through a cast pointer, so neither alignment nor the host's byte order matters. Fields
 * go through a small stack buffer (wr) so that a SUBMIT of a million ids is not a million
 * strbuf_add calls.
 *
 * Reading: a reader (rd: position, end) walks the payload; every read first checks that its
 * bytes are there. A failure is QERR_FORMAT with a message naming the frame and the field:
 *
 *   SUBMIT: ids: truncated: 40 bytes needed, 12 left
 *   SUBMIT: images[2].rgb: 1000 bytes, 1200 expected
 *   SUBMIT: 5 trailing bytes
 *
 * Decoding runs in two passes over what it read:
 *   1. structure (QERR_FORMAT): truncation, counts over the limits, booleans other than 0/1,
 *      doubles that are not finite, image fields (sizes, pixel bytes, placeholder positions),
 *      trailing bytes — what a correct peer never sends;
 *   2. values (QERR_INVALID): ids against the vocabulary, n, max_tokens, logprobs and
 *      sampling_params_check — what a correct responder may pass through from a user, which
 *      the daemon answers with a request-level ERROR instead of closing the connection.
 * So a payload cut anywhere is always QERR_FORMAT.
 *
 * Ownership: decoded SUBMIT ids are copied into an owned, aligned buffer (ids_buf); images'
 * rgb pointers borrow the payload. Threads: no state; any thread may call in.
 */
#include "wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

/* Fixed sizes of the SUBMIT parts (docs/protocol.md has the tables). */
#define SUBMIT_IMAGE_FIXED 64      /* start 8, grid 3x4, size 2x4, hash 32, rgb_len 4 */
#define SUBMIT_SAMPLING_FIXED 75   /* 6 f64, top_k, has_seed, seed, min_tokens, ignore_eos,
				    * n_stop_ids, logprobs, guided */
#define SUBMIT_TAIL 16             /* max_tokens, n, arrival */

/* ---- little-endian bytes ---- */

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t le64(const uint8_t *b)
{
	return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

static void put_le32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

static void put_le64(uint8_t *b, uint64_t v)
{
	put_le32(b, (uint32_t)v);
	put_le32(b + 4, (uint32_t)(v >> 32));
}

/* ---- writer: a stack buffer in front of the strbuf ---- */

typedef struct wr {
	strbuf *out;               /* borrowed */
	size_t n;
	uint8_t buf[4096];
} wr;

static void wr_flush(wr *w)
{
	strbuf_add(w->out, w->buf, w->n);
	w->n = 0;
}

static void wr_bytes(wr *w, const void *p, size_t n)
{
	if (n > sizeof(w->buf) - w->n) {
		wr_flush(w);
		if (n > sizeof(w->buf)) {
			strbuf_add(w->out, p, n);
			return;
		}
	}
	memcpy(w->buf + w->n, p, n);
	w->n += n;
}

static void wr_u8(wr *w, uint8_t v)
{
	wr_bytes(w, &v, 1);
}

static void wr_u32(wr *w, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	wr_bytes(w, b, 4);
}

static void wr_u64(wr *w, uint64_t v)
{
	uint8_t b[8];
	put_le64(b, v);
	wr_bytes(w, b, 8);
}

static void wr_i32(wr *w, int32_t v)
{
	wr_u32(w, (uint32_t)v);
}

static void wr_f32(wr *w, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	wr_u32(w, u);
}

static void wr_f64(wr *w, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	wr_u64(w, u);
}

/* What *_put is given is the program's own data, never a peer's: a frame the peer would have
 * to refuse (a payload over the limit, which the responder checks with wire_submit_size first;
 * counts over the arrays they index) is a bug, and sending it would desynchronise the stream
 * or read out of bounds. Log and abort, as alloc.h does on out-of-memory. */
static void require_put(bool ok, uint16_t type, const char *what)
{
	if (!ok) {
		log_msg(LOG_LEVEL_CRIT, "wire", "%s: cannot put: %s", wire_type_name(type), what);
		abort();
	}
}

static void require_payload_size(uint16_t type, uint64_t len)
{
	require_put(len <= WIRE_MAX_PAYLOAD, type, "payload over WIRE_MAX_PAYLOAD");
}

/* ---- reader: position, end, and the field path for messages ---- */

typedef struct rd {
	const uint8_t *p, *end;
	const char *frame;         /* "SUBMIT" */
	char where[32];            /* "images[2]." while inside an element, else "" */
	qerr *e;
} rd;

static void rd_init(rd *r, const uint8_t *p, size_t len, const char *frame, qerr *e)
{
	r->p = p;
	r->end = p + len;
	r->frame = frame;
	r->where[0] = 0;
	r->e = e;
}

/* Record "FRAME: where<message>" with code; returns -code. */
__attribute__((format(printf, 3, 4)))
static int rd_fail(rd *r, int code, const char *fmt, ...)
{
	char msg[QERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	qerr_set(r->e, code, "%s: %s%s", r->frame, r->where, msg);
	return -code;
}

static size_t rd_left(const rd *r)
{
	return (size_t)(r->end - r->p);
}

/* The next n bytes (*out points at them, unaligned) or QERR_FORMAT naming field. */
static int rd_take(rd *r, size_t n, const char *field, const uint8_t **out)
{
	*out = r->p;
	if (rd_left(r) < n)
		return rd_fail(r, QERR_FORMAT, "%s: truncated: %zu bytes needed, %zu left", field, n,
			       rd_left(r));
	r->p += n;
	return 0;
}

static int rd_u8(rd *r, const char *field, uint8_t *v)
{
	const uint8_t *b;
	int rc = rd_take(r, 1, field, &b);
	if (!rc)
		*v = b[0];
	return rc;
}

static int rd_u32(rd *r, const char *field, uint32_t *v)
{
	const uint8_t *b;
	int rc = rd_take(r, 4, field, &b);
	if (!rc)
		*v = le32(b);
	return rc;
}

static int rd_i32(rd *r, const char *field, int32_t *v)
{
	uint32_t u = 0;
	int rc = rd_u32(r, field, &u);
	*v = (int32_t)u;
	return rc;
}

static int rd_u64(rd *r, const char *field, uint64_t *v)
{
	const uint8_t *b;
	int rc = rd_take(r, 8, field, &b);
	if (!rc)
		*v = le64(b);
	return rc;
}

static int rd_i64(rd *r, const char *field, int64_t *v)
{
	uint64_t u = 0;
	int rc = rd_u64(r, field, &u);
	*v = (int64_t)u;
	return rc;
}

/* A u8 that must be 0 or 1. */
static int rd_bool(rd *r, const char *field, bool *v)
{
	uint8_t b = 0;
	int rc = rd_u8(r, field, &b);
	if (rc)
		return rc;
	if (b > 1)
		return rd_fail(r, QERR_FORMAT, "%s: %u is not a boolean (0 or 1)", field, b);
	*v = b == 1;
	return 0;
}

/* An f64 that must be finite. */
static int rd_f64(rd *r, const char *field, double *v)
{
	uint64_t u = 0;
	int rc = rd_u64(r, field, &u);
	if (rc)
		return rc;
	memcpy(v, &u, 8);
	if (!isfinite(*v))
		return rd_fail(r, QERR_FORMAT, "%s: %g is not finite", field, *v);
	return 0;
}

/* An f32 log probability: finite or -inf (a token the distribution excludes); NaN and +inf
 * are refused. */
static int rd_logprob(rd *r, const char *field, float *v)
{
	uint32_t u = 0;
	int rc = rd_u32(r, field, &u);
	if (rc)
		return rc;
	memcpy(v, &u, 4);
	if (isnan(*v) || *v == INFINITY)
		return rd_fail(r, QERR_FORMAT, "%s: %g is not a log probability", field,
			       (double)*v);
	return 0;
}

static int rd_done(rd *r)
{
	r->where[0] = 0;
	if (r->p != r->end)
		return rd_fail(r, QERR_FORMAT, "%zu trailing bytes", rd_left(r));
	return 0;
}

/* ---- header ---- */

const char *wire_type_name(uint16_t type)
{
	switch (type) {
	case WIRE_T_HELLO: return "HELLO";
	case WIRE_T_MODEL_INFO: return "MODEL_INFO";
	case WIRE_T_SUBMIT: return "SUBMIT";
	case WIRE_T_TOKENS: return "TOKENS";
	case WIRE_T_FINISH: return "FINISH";
	case WIRE_T_ERROR: return "ERROR";
	case WIRE_T_CANCEL: return "CANCEL";
	case WIRE_T_STATS: return "STATS";
	case WIRE_T_STATS_REPLY: return "STATS_REPLY";
	default: return "unknown";
	}
}

/* Checks in wire order: magic, version, type, reserved, length; then the empty-payload rule
 * of HELLO, CANCEL and STATS. */
int wire_header_parse(const uint8_t *buf, wire_header *h, qerr *e)
{
	memset(h, 0, sizeof(*h));
	const uint32_t magic = le32(buf);
	const uint16_t version = (uint16_t)(buf[4] | buf[5] << 8);
	const uint16_t type = (uint16_t)(buf[6] | buf[7] << 8);
	const uint64_t id = le64(buf + 8);
	const uint32_t length = le32(buf + 16), reserved = le32(buf + 20);
	if (magic != WIRE_MAGIC)
		return qerr_set(e, QERR_FORMAT, "wire: magic 0x%08x, expected 0x%08x (\"QVLW\")",
				magic, WIRE_MAGIC);
	if (version != WIRE_VERSION)
		return qerr_set(e, QERR_UNSUPPORTED, "wire: version %u, this daemon speaks %d",
				version, WIRE_VERSION);
	if (type < WIRE_T_HELLO || type > WIRE_T_STATS_REPLY)
		return qerr_set(e, QERR_FORMAT, "wire: type %u is unknown", type);
	if (reserved != 0)
		return qerr_set(e, QERR_FORMAT, "wire: %s: reserved field 0x%08x, expected 0",
				wire_type_name(type), reserved);
	if (length > WIRE_MAX_PAYLOAD)
		return qerr_set(e, QERR_FORMAT,
				"wire: %s: length %u over WIRE_MAX_PAYLOAD (%u)",
				wire_type_name(type), length, WIRE_MAX_PAYLOAD);
	if (length != 0 && (type == WIRE_T_HELLO || type == WIRE_T_CANCEL ||
			    type == WIRE_T_STATS))
		return qerr_set(e, QERR_FORMAT, "wire: %s: length %u, expected 0 (no payload)",
				wire_type_name(type), length);
	h->version = version;
	h->type = type;
	h->id = id;
	h->length = length;
	return 0;
}

void wire_header_put(strbuf *out, uint16_t type, uint64_t id, uint32_t length)
{
	uint8_t b[WIRE_HEADER_SIZE];
	put_le32(b, WIRE_MAGIC);
	b[4] = (uint8_t)WIRE_VERSION;
	b[5] = (uint8_t)(WIRE_VERSION >> 8);
	b[6] = (uint8_t)type;
	b[7] = (uint8_t)(type >> 8);
	put_le64(b + 8, id);
	put_le32(b + 16, length);
	put_le32(b + 20, 0);
	strbuf_add(out, b, sizeof(b));
}

void wire_put_frame(strbuf *out, uint16_t type, uint64_t id, const void *payload, size_t len)
{
	require_payload_size(type, len);
	wire_header_put(out, type, id, (uint32_t)len);
	if (len)
		strbuf_add(out, payload, len);
}

/* ---- SUBMIT ---- */

uint64_t wire_submit_size(const wire_submit *s)
{
	uint64_t n = 4 + 4 * (uint64_t)s->n_ids + 4;
	for (uint32_t i = 0; i < s->n_images && i < WIRE_MAX_IMAGES; i++) {
		const wire_image *im = &s->images[i];
		n += SUBMIT_IMAGE_FIXED;
		if (im->width > 0 && im->height > 0)
			n += (uint64_t)im->width * (uint64_t)im->height * 3;
	}
	n += SUBMIT_SAMPLING_FIXED + 4 * (uint64_t)(s->sp.n_stop_ids > 0 ? s->sp.n_stop_ids : 0);
	return n + SUBMIT_TAIL;
}

void wire_submit_put(strbuf *out, uint64_t id, const wire_submit *s)
{
	require_put(s->n_images <= WIRE_MAX_IMAGES, WIRE_T_SUBMIT, "n_images over WIRE_MAX_IMAGES");
	require_put(s->sp.n_stop_ids >= 0 && s->sp.n_stop_ids <= SAMPLER_MAX_STOP_IDS,
		    WIRE_T_SUBMIT, "n_stop_ids out of range");
	const uint64_t len = wire_submit_size(s);
	require_payload_size(WIRE_T_SUBMIT, len);
	wire_header_put(out, WIRE_T_SUBMIT, id, (uint32_t)len);
	wr w = { .out = out };
	wr_u32(&w, s->n_ids);
	for (uint32_t i = 0; i < s->n_ids; i++)
		wr_i32(&w, s->ids[i]);
	wr_u32(&w, s->n_images);
	for (uint32_t i = 0; i < s->n_images; i++) {
		const wire_image *im = &s->images[i];
		const size_t rgb = (size_t)im->width * (size_t)im->height * 3;
		wr_u64(&w, (uint64_t)im->start);
		wr_i32(&w, im->grid_t);
		wr_i32(&w, im->grid_h);
		wr_i32(&w, im->grid_w);
		wr_i32(&w, im->width);
		wr_i32(&w, im->height);
		wr_bytes(&w, im->hash, 32);
		wr_u32(&w, (uint32_t)rgb);
		wr_bytes(&w, im->rgb, rgb);
	}
	const sampling_params *sp = &s->sp;
	wr_f64(&w, sp->temperature);
	wr_f64(&w, sp->top_p);
	wr_f64(&w, sp->min_p);
	wr_f64(&w, sp->repetition_penalty);
	wr_f64(&w, sp->presence_penalty);
	wr_f64(&w, sp->frequency_penalty);
	wr_i32(&w, sp->top_k);
	wr_u8(&w, sp->has_seed ? 1 : 0);
	wr_u64(&w, sp->seed);
	wr_i32(&w, sp->min_tokens);
	wr_u8(&w, sp->ignore_eos ? 1 : 0);
	wr_u32(&w, (uint32_t)sp->n_stop_ids);
	for (int32_t i = 0; i < sp->n_stop_ids; i++)
		wr_i32(&w, sp->stop_ids[i]);
	wr_i32(&w, sp->logprobs);
	wr_u8(&w, sp->guided);
	wr_i32(&w, s->max_tokens);
	wr_u32(&w, s->n);
	wr_f64(&w, s->arrival);
	wr_flush(&w);
}

/* One image's fields (r->where names it). Structure only: sizes positive, the pixel bytes
 * exactly width*height*3 (computed in 64 bits: two positive int32 give at most 2^62, times 3
 * below 2^64), the placeholder inside the prompt and after the previous image's. */
static int submit_image(rd *r, uint32_t n_ids, int64_t prev_start, wire_image *im)
{
	int rc;
	const uint8_t *hash;
	uint32_t rgb_len = 0;
	if ((rc = rd_i64(r, "start", &im->start)) || (rc = rd_i32(r, "grid_t", &im->grid_t)) ||
	    (rc = rd_i32(r, "grid_h", &im->grid_h)) || (rc = rd_i32(r, "grid_w", &im->grid_w)) ||
	    (rc = rd_i32(r, "width", &im->width)) || (rc = rd_i32(r, "height", &im->height)) ||
	    (rc = rd_take(r, 32, "hash", &hash)) || (rc = rd_u32(r, "rgb_len", &rgb_len)))
		return rc;
	memcpy(im->hash, hash, 32);
	if (im->start < 0 || im->start >= (int64_t)n_ids)
		return rd_fail(r, QERR_FORMAT, "start: %lld not in [0, n_ids %u)",
			       (long long)im->start, n_ids);
	if (im->start <= prev_start)
		return rd_fail(r, QERR_FORMAT, "start: %lld not after the previous image's %lld",
			       (long long)im->start, (long long)prev_start);
	if (im->grid_t < 1 || im->grid_h < 1 || im->grid_w < 1)
		return rd_fail(r, QERR_FORMAT, "grid: %d x %d x %d is not positive", im->grid_t,
			       im->grid_h, im->grid_w);
	if (im->width < 1 || im->height < 1)
		return rd_fail(r, QERR_FORMAT, "size: %d x %d is not positive", im->width,
			       im->height);
	const uint64_t expect = (uint64_t)im->width * (uint64_t)im->height * 3;
	if (rgb_len != expect)
		return rd_fail(r, QERR_FORMAT, "rgb: %u bytes, %llu expected", rgb_len,
			       (unsigned long long)expect);
	return rd_take(r, rgb_len, "rgb", &im->rgb);
}

/* Pass 1: every field, structure only (see the file comment). Leaves the prompt ids in the
 * payload (*ids) for pass 2. */
static int submit_structure(rd *r, wire_submit *s, const uint8_t **ids)
{
	int rc;
	if ((rc = rd_u32(r, "n_ids", &s->n_ids)))
		return rc;
	if (s->n_ids < 1 || s->n_ids > WIRE_MAX_TOKENS)
		return rd_fail(r, QERR_FORMAT, "n_ids: %u not in 1..%u", s->n_ids, WIRE_MAX_TOKENS);
	if ((rc = rd_take(r, (size_t)s->n_ids * 4, "ids", ids)))
		return rc;
	if ((rc = rd_u32(r, "n_images", &s->n_images)))
		return rc;
	if (s->n_images > WIRE_MAX_IMAGES)
		return rd_fail(r, QERR_FORMAT, "n_images: %u over WIRE_MAX_IMAGES (%d)",
			       s->n_images, WIRE_MAX_IMAGES);
	int64_t prev = -1;
	for (uint32_t i = 0; i < s->n_images; i++) {
		snprintf(r->where, sizeof(r->where), "images[%u].", i);
		if ((rc = submit_image(r, s->n_ids, prev, &s->images[i])))
			return rc;
		prev = s->images[i].start;
	}
	r->where[0] = 0;

	sampling_params *sp = &s->sp;
	uint32_t n_stop = 0;
	const uint8_t *stop;
	if ((rc = rd_f64(r, "temperature", &sp->temperature)) ||
	    (rc = rd_f64(r, "top_p", &sp->top_p)) || (rc = rd_f64(r, "min_p", &sp->min_p)) ||
	    (rc = rd_f64(r, "repetition_penalty", &sp->repetition_penalty)) ||
	    (rc = rd_f64(r, "presence_penalty", &sp->presence_penalty)) ||
	    (rc = rd_f64(r, "frequency_penalty", &sp->frequency_penalty)) ||
	    (rc = rd_i32(r, "top_k", &sp->top_k)) || (rc = rd_bool(r, "has_seed", &sp->has_seed)) ||
	    (rc = rd_u64(r, "seed", &sp->seed)) || (rc = rd_i32(r, "min_tokens", &sp->min_tokens)) ||
	    (rc = rd_bool(r, "ignore_eos", &sp->ignore_eos)) ||
	    (rc = rd_u32(r, "n_stop_ids", &n_stop)))
		return rc;
	if (n_stop > SAMPLER_MAX_STOP_IDS)
		return rd_fail(r, QERR_FORMAT, "n_stop_ids: %u over SAMPLER_MAX_STOP_IDS (%d)",
			       n_stop, SAMPLER_MAX_STOP_IDS);
	if ((rc = rd_take(r, (size_t)n_stop * 4, "stop_ids", &stop)))
		return rc;
	sp->n_stop_ids = (int32_t)n_stop;
	for (uint32_t i = 0; i < n_stop; i++)
		sp->stop_ids[i] = (int32_t)le32(stop + 4 * i);
	if ((rc = rd_i32(r, "logprobs", &sp->logprobs)) || (rc = rd_u8(r, "guided", &sp->guided)) ||
	    (rc = rd_i32(r, "max_tokens", &s->max_tokens)) || (rc = rd_u32(r, "n", &s->n)) ||
	    (rc = rd_f64(r, "arrival", &s->arrival)))
		return rc;
	return rd_done(r);
}

/* Pass 2: the values (QERR_INVALID), and the aligned copy of the ids. */
static int submit_values(rd *r, wire_submit *s, const uint8_t *ids, int V)
{
	s->ids_buf = xmalloc((size_t)s->n_ids * sizeof(int32_t));
	s->ids = s->ids_buf;
	for (uint32_t i = 0; i < s->n_ids; i++) {
		const int32_t id = (int32_t)le32(ids + 4 * (size_t)i);
		if (id < 0 || id >= V)
			return rd_fail(r, QERR_INVALID, "ids[%u]: %d not in [0, %d)", i, id, V);
		s->ids_buf[i] = id;
	}
	if (s->max_tokens < 1)
		return rd_fail(r, QERR_INVALID, "max_tokens: %d is not positive", s->max_tokens);
	if (s->n < 1 || s->n > WIRE_MAX_N)
		return rd_fail(r, QERR_INVALID, "n: %u not in 1..%d", s->n, WIRE_MAX_N);
	if (s->sp.logprobs < -1 || s->sp.logprobs > SAMPLER_MAX_LOGPROBS)
		return rd_fail(r, QERR_INVALID, "logprobs: %d not in -1..%d", s->sp.logprobs,
			       SAMPLER_MAX_LOGPROBS);
	s->sp.n_eos = 0;   /* not sent: the daemon fills the model's */
	int rc = sampling_params_check(&s->sp, V, r->e);
	if (rc)
		qerr_prefix(r->e, "%s", r->frame);
	return rc;
}

int wire_submit_decode(const uint8_t *p, size_t len, int V, wire_submit *out, qerr *e)
{
	memset(out, 0, sizeof(*out));
	rd r;
	rd_init(&r, p, len, "SUBMIT", e);
	const uint8_t *ids = NULL;
	int rc = submit_structure(&r, out, &ids);
	if (!rc)
		rc = submit_values(&r, out, ids, V);
	if (rc)
		wire_submit_deinit(out);
	return rc;
}

void wire_submit_deinit(wire_submit *s)
{
	if (!s)
		return;
	free(s->ids_buf);
	memset(s, 0, sizeof(*s));
}

/* ---- TOKENS ---- */

void wire_tokens_put(strbuf *out, uint64_t id, const wire_tokens *t)
{
	uint64_t len = 4 + 4 + 1 + 4 * (uint64_t)t->n;
	if (t->has_logprobs)
		for (uint32_t i = 0; i < t->n; i++) {
			require_put(t->lp[i].n_top <= SAMPLER_MAX_LOGPROBS, WIRE_T_TOKENS,
				    "n_top over SAMPLER_MAX_LOGPROBS");
			len += 8 + 8 * (uint64_t)(t->lp[i].n_top > 0 ? t->lp[i].n_top : 0);
		}
	require_payload_size(WIRE_T_TOKENS, len);
	wire_header_put(out, WIRE_T_TOKENS, id, (uint32_t)len);
	wr w = { .out = out };
	wr_u32(&w, t->index);
	wr_u32(&w, t->n);
	wr_u8(&w, t->has_logprobs ? 1 : 0);
	for (uint32_t i = 0; i < t->n; i++)
		wr_i32(&w, t->ids[i]);
	if (t->has_logprobs) {
		for (uint32_t i = 0; i < t->n; i++) {
			const sampler_logprobs *lp = &t->lp[i];
			const int32_t k = lp->n_top > 0 ? lp->n_top : 0;
			wr_f32(&w, lp->logprob);
			wr_u32(&w, (uint32_t)k);
			for (int32_t j = 0; j < k; j++) {
				wr_i32(&w, lp->top_ids[j]);
				wr_f32(&w, lp->top_logprobs[j]);
			}
		}
	}
	wr_flush(&w);
}

/* One token's logprobs (r->where names it); into *lp when non-NULL. */
static int tokens_logprobs(rd *r, int32_t id, sampler_logprobs *lp)
{
	sampler_logprobs tmp;
	sampler_logprobs *o = lp ? lp : &tmp;
	memset(o, 0, sizeof(*o));
	o->id = id;
	uint32_t k = 0;
	const uint8_t *top;
	int rc;
	if ((rc = rd_logprob(r, "logprob", &o->logprob)) || (rc = rd_u32(r, "n_top", &k)))
		return rc;
	if (k > SAMPLER_MAX_LOGPROBS)
		return rd_fail(r, QERR_FORMAT, "n_top: %u over %d", k, SAMPLER_MAX_LOGPROBS);
	if ((rc = rd_take(r, (size_t)k * 8, "top", &top)))
		return rc;
	o->n_top = (int32_t)k;
	for (uint32_t j = 0; j < k; j++) {
		const uint32_t lpbits = le32(top + 8 * j + 4);
		o->top_ids[j] = (int32_t)le32(top + 8 * j);
		memcpy(&o->top_logprobs[j], &lpbits, 4);
		if (o->top_ids[j] < 0)
			return rd_fail(r, QERR_FORMAT, "top[%u].id: %d is negative", j,
				       o->top_ids[j]);
		if (isnan(o->top_logprobs[j]) || o->top_logprobs[j] == INFINITY)
			return rd_fail(r, QERR_FORMAT, "top[%u].logprob: %g is not a log probability",
				       j, (double)o->top_logprobs[j]);
	}
	return 0;
}

int wire_tokens_decode(const uint8_t *p, size_t len, uint32_t *index, int32_t *ids,
		       sampler_logprobs *lp, bool *has_logprobs, uint32_t cap, uint32_t *n, qerr *e)
{
	*n = 0;
	rd r;
	rd_init(&r, p, len, "TOKENS", e);
	uint32_t idx = 0, count = 0;
	bool has = false;
	const uint8_t *raw;
	int rc;
	if ((rc = rd_u32(&r, "index", &idx)) || (rc = rd_u32(&r, "n", &count)) ||
	    (rc = rd_bool(&r, "has_logprobs", &has)))
		return rc;
	if (idx >= WIRE_MAX_N)
		return rd_fail(&r, QERR_FORMAT, "index: %u not below WIRE_MAX_N (%d)", idx,
			       WIRE_MAX_N);
	if (count < 1)
		return rd_fail(&r, QERR_FORMAT, "n: 0 (a TOKENS frame carries at least one)");
	if (count > cap)
		return rd_fail(&r, QERR_FORMAT, "n: %u over the capacity %u", count, cap);
	if ((rc = rd_take(&r, (size_t)count * 4, "ids", &raw)))
		return rc;
	for (uint32_t i = 0; i < count; i++) {
		ids[i] = (int32_t)le32(raw + 4 * (size_t)i);
		if (ids[i] < 0)
			return rd_fail(&r, QERR_FORMAT, "ids[%u]: %d is negative", i, ids[i]);
	}
	for (uint32_t i = 0; has && i < count; i++) {
		snprintf(r.where, sizeof(r.where), "logprobs[%u].", i);
		if ((rc = tokens_logprobs(&r, ids[i], lp ? &lp[i] : NULL)))
			return rc;
	}
	if ((rc = rd_done(&r)))
		return rc;
	*index = idx;
	*has_logprobs = has;
	*n = count;
	return 0;
}

/* ---- FINISH ---- */

#define FINISH_SIZE 48

void wire_finish_put(strbuf *out, uint64_t id, const wire_finish *f)
{
	wire_header_put(out, WIRE_T_FINISH, id, FINISH_SIZE);
	wr w = { .out = out };
	wr_u32(&w, f->index);
	wr_u32(&w, f->reason);
	wr_i32(&w, f->stop_id);
	wr_u32(&w, f->prompt_tokens);
	wr_u32(&w, f->completion_tokens);
	wr_u32(&w, f->cached_tokens);
	wr_f64(&w, f->queue_s);
	wr_f64(&w, f->ttft_s);
	wr_f64(&w, f->e2e_s);
	wr_flush(&w);
}

int wire_finish_decode(const uint8_t *p, size_t len, wire_finish *out, qerr *e)
{
	memset(out, 0, sizeof(*out));
	rd r;
	rd_init(&r, p, len, "FINISH", e);
	wire_finish f = { 0 };
	int rc;
	if ((rc = rd_u32(&r, "index", &f.index)) || (rc = rd_u32(&r, "reason", &f.reason)) ||
	    (rc = rd_i32(&r, "stop_id", &f.stop_id)) ||
	    (rc = rd_u32(&r, "prompt_tokens", &f.prompt_tokens)) ||
	    (rc = rd_u32(&r, "completion_tokens", &f.completion_tokens)) ||
	    (rc = rd_u32(&r, "cached_tokens", &f.cached_tokens)) ||
	    (rc = rd_f64(&r, "queue_s", &f.queue_s)) || (rc = rd_f64(&r, "ttft_s", &f.ttft_s)) ||
	    (rc = rd_f64(&r, "e2e_s", &f.e2e_s)) || (rc = rd_done(&r)))
		return rc;
	if (f.index >= WIRE_MAX_N)
		return rd_fail(&r, QERR_FORMAT, "index: %u not below WIRE_MAX_N (%d)", f.index,
			       WIRE_MAX_N);
	if (f.reason < WIRE_FINISH_STOP || f.reason > WIRE_FINISH_ABORT)
		return rd_fail(&r, QERR_FORMAT, "reason: %u not in 1..3", f.reason);
	if (f.stop_id < -1)
		return rd_fail(&r, QERR_FORMAT, "stop_id: %d (an id or -1)", f.stop_id);
	*out = f;
	return 0;
}

/* ---- ERROR ---- */

void wire_error_put(strbuf *out, uint64_t id, uint32_t code, const char *message)
{
	if (!message)
		message = "";
	size_t n = strlen(message);
	if (n > WIRE_MAX_MESSAGE) {
		/* Cut before a UTF-8 character that would not fit whole (at most 3 continuation
		 * bytes to step back over; anything else is not UTF-8 and is cut where it is). */
		n = WIRE_MAX_MESSAGE;
		for (int k = 0; k < 3 && n > 0 && ((uint8_t)message[n] & 0xc0) == 0x80; k++)
			n--;
		if (((uint8_t)message[n] & 0xc0) == 0x80)
			n = WIRE_MAX_MESSAGE;
	}
	wire_header_put(out, WIRE_T_ERROR, id, (uint32_t)(8 + n));
	wr w = { .out = out };
	wr_u32(&w, code);
	wr_u32(&w, (uint32_t)n);
	wr_bytes(&w, message, n);
	wr_flush(&w);
}

int wire_error_decode(const uint8_t *p, size_t len, wire_error *out, qerr *e)
{
	memset(out, 0, sizeof(*out));
	rd r;
	rd_init(&r, p, len, "ERROR", e);
	uint32_t code = 0, n = 0;
	const uint8_t *msg;
	int rc;
	if ((rc = rd_u32(&r, "code", &code)) || (rc = rd_u32(&r, "len", &n)))
		return rc;
	if (code < WIRE_E_BAD_REQUEST || code > WIRE_E_CANCELLED)
		return rd_fail(&r, QERR_FORMAT, "code: %u not in 1..%d", code, WIRE_E_CANCELLED);
	if (n > WIRE_MAX_MESSAGE)
		return rd_fail(&r, QERR_FORMAT, "len: %u over WIRE_MAX_MESSAGE (%d)", n,
			       WIRE_MAX_MESSAGE);
	if ((rc = rd_take(&r, n, "message", &msg)) || (rc = rd_done(&r)))
		return rc;
	out->code = code;
	memcpy(out->message, msg, n);
	out->message[n] = 0;
	return 0;
}
