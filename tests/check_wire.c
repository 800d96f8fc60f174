/*
 * Tests of the wire protocol (wire.c): every frame type survives put → header parse → decode
 * unchanged, from any payload alignment; the header's bytes are pinned; and every malformed
 * input is refused with the right code and a message naming the field — truncation at every
 * byte offset, trailing bytes, counts over the limits, booleans other than 0/1, doubles that
 * are not finite, ids outside the vocabulary, image sizes that do not match their pixels
 * (overflow included), unknown types, bad magic, version, length and reserved field.
 * Malformed payloads are made by patching a valid one at the offsets docs/protocol.md gives.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "testutil.h"

#define V_TEST 1000

/* ---- helpers ---- */

static void patch32(uint8_t *p, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

static void patch64(uint8_t *p, size_t off, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

static void patchf64(uint8_t *p, size_t off, double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	patch64(p, off, u);
}

static void patchf32(uint8_t *p, size_t off, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	patch32(p, off, u);
}

/* The one frame in b: checks its header (type, id, length = the rest of b) and returns a
 * malloc'd copy of its payload placed `misalign` bytes into the allocation (*base is what to
 * free), so that decoders are run on unaligned payloads and ASan sees reads past the end. */
static uint8_t *assert_frame(const strbuf *b, uint16_t type, uint64_t id, size_t misalign,
			     size_t *len, uint8_t **base)
{
	ck_assert_uint_ge(b->len, WIRE_HEADER_SIZE);
	wire_header h;
	qerr e = { 0 };
	ck_assert_msg(wire_header_parse((const uint8_t *)b->s, &h, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(h.version, WIRE_VERSION);
	ck_assert_uint_eq(h.type, type);
	ck_assert_uint_eq(h.id, id);
	ck_assert_uint_eq(h.length, b->len - WIRE_HEADER_SIZE);
	*len = h.length;
	*base = malloc(h.length + misalign + 1);
	memcpy(*base + misalign, b->s + WIRE_HEADER_SIZE, h.length);
	return *base + misalign;
}

/* p[0..len) in an allocation of exactly len bytes (ASan catches any read past it). */
static uint8_t *exact_copy(const uint8_t *p, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);
	memcpy(c, p, len);
	return c;
}

static void assert_fails(int rc, const qerr *e, int code, const char *want)
{
	ck_assert_msg(rc == -code, "rc %d, expected %d (%s)", rc, -code, e->msg);
	ck_assert_int_eq(e->code, code);
	ck_assert_msg(strstr(e->msg, want) != NULL, "message \"%s\" lacks \"%s\"", e->msg, want);
	ck_assert_ptr_null(strchr(e->msg, '\n'));
}

/* ---- a sample SUBMIT: 40 ids, two images, every sampling field set ---- */

#define S_IDS 40
#define IMG0_W 20
#define IMG0_H 20
#define IMG1_W 32
#define IMG1_H 16
static int32_t s_ids[S_IDS];
static uint8_t s_rgb0[IMG0_W * IMG0_H * 3], s_rgb1[IMG1_W * IMG1_H * 3];

static wire_submit sample_submit(void)
{
	wire_submit s;
	memset(&s, 0, sizeof(s));
	for (int i = 0; i < S_IDS; i++)
		s_ids[i] = (i * 37 + 11) % V_TEST;
	for (size_t i = 0; i < sizeof(s_rgb0); i++)
		s_rgb0[i] = (uint8_t)(i * 7 + 3);
	for (size_t i = 0; i < sizeof(s_rgb1); i++)
		s_rgb1[i] = (uint8_t)(i * 13 + 5);
	s.n_ids = S_IDS;
	s.ids = s_ids;
	s.n_images = 2;
	s.images[0] = (wire_image){ .start = 3, .grid_t = 1, .grid_h = 2, .grid_w = 2,
				    .width = IMG0_W, .height = IMG0_H, .rgb = s_rgb0 };
	s.images[1] = (wire_image){ .start = 20, .grid_t = 1, .grid_h = 1, .grid_w = 2,
				    .width = IMG1_W, .height = IMG1_H, .rgb = s_rgb1 };
	for (int i = 0; i < 32; i++) {
		s.images[0].hash[i] = (uint8_t)(0xa0 + i);
		s.images[1].hash[i] = (uint8_t)(0x10 * i + 1);
	}
	s.sp = (sampling_params){
		.temperature = 0.7, .top_p = 0.9, .top_k = 50, .min_p = 0.05,
		.repetition_penalty = 1.1, .presence_penalty = -0.5, .frequency_penalty = 0.25,
		.has_seed = true, .seed = 0x0123456789abcdefull, .min_tokens = 3,
		.ignore_eos = true, .n_stop_ids = 3, .stop_ids = { 7, 99, 998 }, .logprobs = 5,
	};
	s.max_tokens = 256;
	s.n = 4;
	s.arrival = 1722000000.125;
	return s;
}

/* Offsets in the sample's payload (docs/protocol.md, SUBMIT). */
static size_t off_image(const wire_submit *s, uint32_t k)
{
	size_t o = 4 + 4 * (size_t)s->n_ids + 4;
	for (uint32_t i = 0; i < k; i++)
		o += 64 + (size_t)s->images[i].width * s->images[i].height * 3;
	return o;
}

enum {
	IM_START = 0, IM_GRID_T = 8, IM_GRID_H = 12, IM_GRID_W = 16, IM_WIDTH = 20, IM_HEIGHT = 24,
	IM_HASH = 28, IM_RGB_LEN = 60, IM_RGB = 64,
};

static size_t off_sampling(const wire_submit *s)
{
	return off_image(s, s->n_images);
}

enum {
	SP_TEMPERATURE = 0, SP_TOP_P = 8, SP_MIN_P = 16, SP_REPETITION = 24, SP_PRESENCE = 32,
	SP_FREQUENCY = 40, SP_TOP_K = 48, SP_HAS_SEED = 52, SP_SEED = 53, SP_MIN_TOKENS = 61,
	SP_IGNORE_EOS = 65, SP_N_STOP = 66, SP_STOP_IDS = 70,
};

/* After the stop ids: logprobs, guided, max_tokens, n, arrival. */
static size_t off_tail(const wire_submit *s)
{
	return off_sampling(s) + SP_STOP_IDS + 4 * (size_t)s->sp.n_stop_ids;
}

enum { T_LOGPROBS = 0, T_GUIDED = 4, T_MAX_TOKENS = 5, T_N = 9, T_ARRIVAL = 13, T_END = 21 };

/* The sample's payload, malloc'd (free it), and the sample itself in *s. */
static uint8_t *sample_payload(wire_submit *s, size_t *len)
{
	*s = sample_submit();
	strbuf b = { 0 };
	wire_submit_put(&b, 42, s);
	uint8_t *base;
	uint8_t *p = assert_frame(&b, WIRE_T_SUBMIT, 42, 0, len, &base);
	ck_assert_ptr_eq(p, base);
	ck_assert_uint_eq(*len, wire_submit_size(s));
	ck_assert_uint_eq(*len, off_tail(s) + T_END);
	strbuf_deinit(&b);
	return p;
}

static void assert_submit_eq(const wire_submit *a, const wire_submit *b)
{
	ck_assert_uint_eq(a->n_ids, b->n_ids);
	for (uint32_t i = 0; i < a->n_ids; i++)
		ck_assert_int_eq(a->ids[i], b->ids[i]);
	ck_assert_uint_eq(a->n_images, b->n_images);
	for (uint32_t i = 0; i < a->n_images; i++) {
		const wire_image *x = &a->images[i], *y = &b->images[i];
		ck_assert_int_eq(x->start, y->start);
		ck_assert_int_eq(x->grid_t, y->grid_t);
		ck_assert_int_eq(x->grid_h, y->grid_h);
		ck_assert_int_eq(x->grid_w, y->grid_w);
		ck_assert_int_eq(x->width, y->width);
		ck_assert_int_eq(x->height, y->height);
		ck_assert_mem_eq(x->hash, y->hash, 32);
		ck_assert_mem_eq(x->rgb, y->rgb, (size_t)x->width * x->height * 3);
	}
	const sampling_params *p = &a->sp, *q = &b->sp;
	ck_assert_mem_eq(&p->temperature, &q->temperature, 8);
	ck_assert_mem_eq(&p->top_p, &q->top_p, 8);
	ck_assert_mem_eq(&p->min_p, &q->min_p, 8);
	ck_assert_mem_eq(&p->repetition_penalty, &q->repetition_penalty, 8);
	ck_assert_mem_eq(&p->presence_penalty, &q->presence_penalty, 8);
	ck_assert_mem_eq(&p->frequency_penalty, &q->frequency_penalty, 8);
	ck_assert_int_eq(p->top_k, q->top_k);
	ck_assert_int_eq(p->has_seed, q->has_seed);
	ck_assert_uint_eq(p->seed, q->seed);
	ck_assert_int_eq(p->min_tokens, q->min_tokens);
	ck_assert_int_eq(p->ignore_eos, q->ignore_eos);
	ck_assert_int_eq(p->n_stop_ids, q->n_stop_ids);
	for (int i = 0; i < p->n_stop_ids; i++)
		ck_assert_int_eq(p->stop_ids[i], q->stop_ids[i]);
	ck_assert_int_eq(p->logprobs, q->logprobs);
	ck_assert_uint_eq(p->guided, q->guided);
	ck_assert_int_eq(a->max_tokens, b->max_tokens);
	ck_assert_uint_eq(a->n, b->n);
	ck_assert_mem_eq(&a->arrival, &b->arrival, 8);
}

/* Decode p[0..len) (copied to an exact-size buffer): must fail with code, naming want. */
static void assert_submit_fails(const uint8_t *p, size_t len, int code, const char *want)
{
	uint8_t *c = exact_copy(p, len);
	wire_submit out;
	qerr e = { 0 };
	int rc = wire_submit_decode(c, len, V_TEST, &out, &e);
	assert_fails(rc, &e, code, want);
	ck_assert_ptr_null(out.ids_buf);
	ck_assert_uint_eq(out.n_ids, 0);
	ck_assert_msg(strncmp(e.msg, "SUBMIT: ", 8) == 0, "%s", e.msg);
	wire_submit_deinit(&out);
	free(c);
}

/* ---- header ---- */

START_TEST(test_wire_header_bytes_are_pinned)
{
	strbuf b = { 0 };
	wire_header_put(&b, WIRE_T_SUBMIT, 0x0102030405060708ull, 0x11223344);
	static const uint8_t want[WIRE_HEADER_SIZE] = {
		'Q', 'V', 'L', 'W', 1, 0, 3, 0, 8, 7, 6, 5, 4, 3, 2, 1,
		0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0,
	};
	ck_assert_uint_eq(b.len, WIRE_HEADER_SIZE);
	ck_assert_mem_eq(b.s, want, WIRE_HEADER_SIZE);
	strbuf_deinit(&b);
}
END_TEST

START_TEST(test_wire_header_round_trip_every_type)
{
	for (uint16_t t = WIRE_T_HELLO; t <= WIRE_T_STATS_REPLY; t++) {
		const bool empty = t == WIRE_T_HELLO || t == WIRE_T_CANCEL || t == WIRE_T_STATS;
		const uint32_t len = empty ? 0 : (t == WIRE_T_SUBMIT ? WIRE_MAX_PAYLOAD : 77u * t);
		strbuf b = { 0 };
		strbuf_addc(&b, 'x');   /* parse from an odd address */
		wire_header_put(&b, t, 0xfedcba9876543210ull + t, len);
		wire_header h;
		qerr e = { 0 };
		ck_assert_msg(wire_header_parse((const uint8_t *)b.s + 1, &h, &e) == 0, "%s",
			      e.msg);
		ck_assert_uint_eq(h.version, WIRE_VERSION);
		ck_assert_uint_eq(h.type, t);
		ck_assert_uint_eq(h.id, 0xfedcba9876543210ull + t);
		ck_assert_uint_eq(h.length, len);
		strbuf_deinit(&b);
	}
}
END_TEST

/* Parse a header made by wire_header_put with one field changed afterwards. */
static int parse_patched(uint16_t type, uint32_t length, size_t off, const uint8_t *bytes,
			 size_t n, qerr *e)
{
	strbuf b = { 0 };
	wire_header_put(&b, type, 9, length);
	memcpy(b.s + off, bytes, n);
	wire_header h;
	int rc = wire_header_parse((const uint8_t *)b.s, &h, e);
	strbuf_deinit(&b);
	return rc;
}

START_TEST(test_wire_header_rejects_malformed)
{
	qerr e = { 0 };
	int rc = parse_patched(WIRE_T_SUBMIT, 10, 0, (const uint8_t *)"QVLX", 4, &e);
	assert_fails(rc, &e, QERR_FORMAT, "wire: magic 0x584c5651");
	rc = parse_patched(WIRE_T_SUBMIT, 10, 0, (const uint8_t *)"WLVQ", 4, &e);
	assert_fails(rc, &e, QERR_FORMAT, "magic");
	rc = parse_patched(WIRE_T_SUBMIT, 10, 4, (const uint8_t *)"\x07\x00", 2, &e);
	assert_fails(rc, &e, QERR_UNSUPPORTED, "wire: version 7, this daemon speaks 1");
	ck_assert_str_eq(e.msg, "wire: version 7, this daemon speaks 1");
	rc = parse_patched(WIRE_T_SUBMIT, 10, 4, (const uint8_t *)"\x00\x01", 2, &e);
	assert_fails(rc, &e, QERR_UNSUPPORTED, "version 256");
	rc = parse_patched(WIRE_T_SUBMIT, 10, 6, (const uint8_t *)"\x00\x00", 2, &e);
	assert_fails(rc, &e, QERR_FORMAT, "type 0 is unknown");
	rc = parse_patched(WIRE_T_SUBMIT, 10, 6, (const uint8_t *)"\x0a\x00", 2, &e);
	assert_fails(rc, &e, QERR_FORMAT, "type 10 is unknown");
	rc = parse_patched(WIRE_T_SUBMIT, 10, 6, (const uint8_t *)"\x03\x01", 2, &e);
	assert_fails(rc, &e, QERR_FORMAT, "type 259");
	rc = parse_patched(WIRE_T_SUBMIT, 10, 20, (const uint8_t *)"\x00\x00\x00\x80", 4, &e);
	assert_fails(rc, &e, QERR_FORMAT, "reserved field 0x80000000");
	rc = parse_patched(WIRE_T_TOKENS, 10, 21, (const uint8_t *)"\x01", 1, &e);
	assert_fails(rc, &e, QERR_FORMAT, "TOKENS: reserved");
	rc = parse_patched(WIRE_T_SUBMIT, WIRE_MAX_PAYLOAD + 1, 0, (const uint8_t *)"Q", 1, &e);
	assert_fails(rc, &e, QERR_FORMAT, "length 268435457 over WIRE_MAX_PAYLOAD");
	rc = parse_patched(WIRE_T_MODEL_INFO, 0xffffffffu, 0, (const uint8_t *)"Q", 1, &e);
	assert_fails(rc, &e, QERR_FORMAT, "MODEL_INFO: length 4294967295");
	const uint16_t empty[] = { WIRE_T_HELLO, WIRE_T_CANCEL, WIRE_T_STATS };
	for (int i = 0; i < 3; i++) {
		rc = parse_patched(empty[i], 1, 0, (const uint8_t *)"Q", 1, &e);
		assert_fails(rc, &e, QERR_FORMAT, "expected 0 (no payload)");
		ck_assert_ptr_nonnull(strstr(e.msg, wire_type_name(empty[i])));
	}
}
END_TEST

START_TEST(test_wire_type_names)
{
	static const char *names[] = { "unknown", "HELLO", "MODEL_INFO", "SUBMIT", "TOKENS",
				       "FINISH", "ERROR", "CANCEL", "STATS", "STATS_REPLY" };
	for (uint16_t t = 0; t < 10; t++)
		ck_assert_str_eq(wire_type_name(t), names[t]);
	ck_assert_str_eq(wire_type_name(10), "unknown");
	ck_assert_str_eq(wire_type_name(0xffff), "unknown");
}
END_TEST

START_TEST(test_wire_text_frames_round_trip)
{
	const char *json = "{\"version\":1,\"model\":\"qwen3-vl\"}";
	strbuf b = { 0 };
	wire_put_frame(&b, WIRE_T_MODEL_INFO, 0, json, strlen(json));
	size_t len;
	uint8_t *base;
	uint8_t *p = assert_frame(&b, WIRE_T_MODEL_INFO, 0, 3, &len, &base);
	ck_assert_uint_eq(len, strlen(json));
	ck_assert_mem_eq(p, json, len);
	free(base);
	strbuf_truncate(&b, 0);
	wire_put_frame(&b, WIRE_T_HELLO, 0, NULL, 0);
	p = assert_frame(&b, WIRE_T_HELLO, 0, 0, &len, &base);
	ck_assert_uint_eq(len, 0);
	free(base);
	strbuf_truncate(&b, 0);
	wire_put_frame(&b, WIRE_T_CANCEL, 77, NULL, 0);
	p = assert_frame(&b, WIRE_T_CANCEL, 77, 0, &len, &base);
	ck_assert_uint_eq(len, 0);
	free(base);
	strbuf_deinit(&b);
}
END_TEST

/* ---- SUBMIT ---- */

START_TEST(test_wire_submit_round_trip_any_alignment)
{
	wire_submit s = sample_submit();
	s.sp.n_eos = 2;          /* not sent */
	s.sp.eos_ids[0] = 5;
	for (size_t mis = 0; mis < 8; mis++) {
		strbuf b = { 0 };
		wire_submit_put(&b, 1234 + mis, &s);
		size_t len;
		uint8_t *base;
		uint8_t *p = assert_frame(&b, WIRE_T_SUBMIT, 1234 + mis, mis, &len, &base);
		ck_assert_uint_eq(len, wire_submit_size(&s));
		wire_submit out;
		qerr e = { 0 };
		ck_assert_msg(wire_submit_decode(p, len, V_TEST, &out, &e) == 0, "%s", e.msg);
		assert_submit_eq(&s, &out);
		ck_assert_ptr_eq(out.ids, out.ids_buf);
		ck_assert_uint_eq((uintptr_t)out.ids % _Alignof(int32_t), 0);
		ck_assert_int_eq(out.sp.n_eos, 0);
		/* pixels are borrowed from the payload */
		ck_assert_ptr_eq(out.images[0].rgb, p + off_image(&s, 0) + IM_RGB);
		ck_assert_ptr_eq(out.images[1].rgb, p + off_image(&s, 1) + IM_RGB);
		wire_submit_deinit(&out);
		ck_assert_ptr_null(out.ids_buf);
		free(base);
		strbuf_deinit(&b);
	}
}
END_TEST

START_TEST(test_wire_submit_round_trip_plain_request)
{
	int32_t ids[1] = { V_TEST - 1 };
	wire_submit s;
	memset(&s, 0, sizeof(s));
	s.n_ids = 1;
	s.ids = ids;
	s.sp = (sampling_params){ .temperature = 0, .top_p = 1, .repetition_penalty = 1,
				  .logprobs = -1, .presence_penalty = -0.0 };
	s.max_tokens = 1;
	s.n = WIRE_MAX_N;
	s.arrival = 0;
	strbuf b = { 0 };
	wire_submit_put(&b, 1, &s);
	size_t len;
	uint8_t *base;
	uint8_t *p = assert_frame(&b, WIRE_T_SUBMIT, 1, 1, &len, &base);
	ck_assert_uint_eq(len, 4 + 4 + 4 + 75 + 16);
	wire_submit out;
	qerr e = { 0 };
	ck_assert_msg(wire_submit_decode(p, len, V_TEST, &out, &e) == 0, "%s", e.msg);
	assert_submit_eq(&s, &out);
	ck_assert(signbit(out.sp.presence_penalty));
	wire_submit_deinit(&out);
	free(base);
	strbuf_deinit(&b);
}
END_TEST

START_TEST(test_wire_submit_truncation_at_every_offset)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	for (size_t k = 0; k < len; k++)
		assert_submit_fails(p, k, QERR_FORMAT, "truncated");
	/* and the field is named: a cut inside the second image's pixels */
	assert_submit_fails(p, off_image(&s, 1) + IM_RGB + 10, QERR_FORMAT,
			    "SUBMIT: images[1].rgb: truncated: 1536 bytes needed, 10 left");
	assert_submit_fails(p, 6, QERR_FORMAT, "SUBMIT: ids: truncated: 160 bytes needed, 2 left");
	assert_submit_fails(p, off_tail(&s) + T_ARRIVAL + 3, QERR_FORMAT, "SUBMIT: arrival");
	free(p);
}
END_TEST

START_TEST(test_wire_submit_trailing_bytes)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	uint8_t *q = malloc(len + 5);
	memcpy(q, p, len);
	memset(q + len, 0, 5);
	assert_submit_fails(q, len + 5, QERR_FORMAT, "SUBMIT: 5 trailing bytes");
	assert_submit_fails(q, len + 1, QERR_FORMAT, "SUBMIT: 1 trailing bytes");
	free(q);
	free(p);
}
END_TEST

START_TEST(test_wire_submit_bad_counts)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	uint8_t *q = malloc(len);
	const size_t sp = off_sampling(&s);

	memcpy(q, p, len);
	patch32(q, 0, 0);
	assert_submit_fails(q, len, QERR_FORMAT, "SUBMIT: n_ids: 0 not in 1..4194304");
	patch32(q, 0, WIRE_MAX_TOKENS + 1);
	assert_submit_fails(q, len, QERR_FORMAT, "SUBMIT: n_ids: 4194305 not in 1..4194304");
	patch32(q, 0, 0xffffffffu);
	assert_submit_fails(q, len, QERR_FORMAT, "n_ids: 4294967295");
	patch32(q, 0, S_IDS + 1000);   /* within the limit, but the bytes are not there */
	assert_submit_fails(q, len, QERR_FORMAT, "SUBMIT: ids: truncated");

	memcpy(q, p, len);
	patch32(q, off_image(&s, 0) - 4, WIRE_MAX_IMAGES + 1);
	assert_submit_fails(q, len, QERR_FORMAT, "SUBMIT: n_images: 65 over WIRE_MAX_IMAGES (64)");
	patch32(q, off_image(&s, 0) - 4, 3);
	assert_submit_fails(q, len, QERR_FORMAT, "SUBMIT: images[2].");

	memcpy(q, p, len);
	patch32(q, sp + SP_N_STOP, SAMPLER_MAX_STOP_IDS + 1);
	assert_submit_fails(q, len, QERR_FORMAT,
			    "SUBMIT: n_stop_ids: 65 over SAMPLER_MAX_STOP_IDS (64)");
	patch32(q, sp + SP_N_STOP, 4);   /* one more than sent: everything after shifts */
	assert_submit_fails(q, len, QERR_FORMAT, "truncated");
	free(q);
	free(p);
}
END_TEST

START_TEST(test_wire_submit_bad_booleans)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	const size_t sp = off_sampling(&s);
	p[sp + SP_HAS_SEED] = 2;
	assert_submit_fails(p, len, QERR_FORMAT, "SUBMIT: has_seed: 2 is not a boolean (0 or 1)");
	p[sp + SP_HAS_SEED] = 0;
	p[sp + SP_IGNORE_EOS] = 255;
	assert_submit_fails(p, len, QERR_FORMAT, "SUBMIT: ignore_eos: 255 is not a boolean");
	p[sp + SP_IGNORE_EOS] = 0;
	wire_submit out;
	qerr e = { 0 };
	ck_assert_msg(wire_submit_decode(p, len, V_TEST, &out, &e) == 0, "%s", e.msg);
	ck_assert(!out.sp.has_seed && !out.sp.ignore_eos);
	wire_submit_deinit(&out);
	free(p);
}
END_TEST

START_TEST(test_wire_submit_non_finite_doubles)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	uint8_t *q = malloc(len);
	const size_t sp = off_sampling(&s), tail = off_tail(&s);
	const struct { size_t off; const char *name; } fields[] = {
		{ sp + SP_TEMPERATURE, "temperature" }, { sp + SP_TOP_P, "top_p" },
		{ sp + SP_MIN_P, "min_p" }, { sp + SP_REPETITION, "repetition_penalty" },
		{ sp + SP_PRESENCE, "presence_penalty" },
		{ sp + SP_FREQUENCY, "frequency_penalty" }, { tail + T_ARRIVAL, "arrival" },
	};
	const double bad[] = { NAN, -NAN, INFINITY, -INFINITY };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		for (size_t j = 0; j < 4; j++) {
			memcpy(q, p, len);
			patchf64(q, fields[i].off, bad[j]);
			char want[64];
			snprintf(want, sizeof(want), "SUBMIT: %s: ", fields[i].name);
			assert_submit_fails(q, len, QERR_FORMAT, want);
			assert_submit_fails(q, len, QERR_FORMAT, "is not finite");
		}
	free(q);
	free(p);
}
END_TEST

START_TEST(test_wire_submit_ids_out_of_range)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	patch32(p, 4 + 4 * 2, V_TEST);
	assert_submit_fails(p, len, QERR_INVALID, "SUBMIT: ids[2]: 1000 not in [0, 1000)");
	patch32(p, 4 + 4 * 2, 0);
	patch32(p, 4 + 4 * (S_IDS - 1), (uint32_t)-1);
	assert_submit_fails(p, len, QERR_INVALID, "SUBMIT: ids[39]: -1 not in [0, 1000)");
	patch32(p, 4 + 4 * (S_IDS - 1), V_TEST - 1);
	wire_submit out;
	qerr e = { 0 };
	ck_assert_msg(wire_submit_decode(p, len, V_TEST, &out, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(out.ids[2], 0);
	ck_assert_int_eq(out.ids[S_IDS - 1], V_TEST - 1);
	wire_submit_deinit(&out);
	/* the vocabulary is the caller's: the same frame with a smaller V */
	int rc = wire_submit_decode(p, len, 500, &out, &e);
	assert_fails(rc, &e, QERR_INVALID, "not in [0, 500)");
	free(p);
}
END_TEST

START_TEST(test_wire_submit_bad_values)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	uint8_t *q = malloc(len);
	const size_t sp = off_sampling(&s), tail = off_tail(&s);
	const struct { size_t off; uint32_t v; const char *want; } cases[] = {
		{ tail + T_MAX_TOKENS, 0, "SUBMIT: max_tokens: 0 is not positive" },
		{ tail + T_MAX_TOKENS, (uint32_t)-5, "SUBMIT: max_tokens: -5 is not positive" },
		{ tail + T_N, 0, "SUBMIT: n: 0 not in 1..128" },
		{ tail + T_N, WIRE_MAX_N + 1, "SUBMIT: n: 129 not in 1..128" },
		{ tail + T_LOGPROBS, (uint32_t)-2, "SUBMIT: logprobs: -2 not in -1..20" },
		{ tail + T_LOGPROBS, 21, "SUBMIT: logprobs: 21 not in -1..20" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(q, p, len);
		patch32(q, cases[i].off, cases[i].v);
		assert_submit_fails(q, len, QERR_INVALID, cases[i].want);
	}
	/* guided: 0 or 1 */
	memcpy(q, p, len);
	q[tail + T_GUIDED] = 1;
	wire_submit g;
	qerr ge = { 0 };
	ck_assert_msg(wire_submit_decode(q, len, V_TEST, &g, &ge) == 0, "%s", ge.msg);
	ck_assert_uint_eq(g.sp.guided, SAMPLER_GUIDED_JSON);
	wire_submit_deinit(&g);
	q[tail + T_GUIDED] = 2;
	assert_submit_fails(q, len, QERR_INVALID, "guided");
	/* sampling_params_check runs on what was decoded (its messages name the field) */
	memcpy(q, p, len);
	patchf64(q, sp + SP_TOP_P, 0.0);
	assert_submit_fails(q, len, QERR_INVALID, "top_p");
	memcpy(q, p, len);
	patchf64(q, sp + SP_TEMPERATURE, -1.0);
	assert_submit_fails(q, len, QERR_INVALID, "temperature");
	memcpy(q, p, len);
	patch32(q, sp + SP_STOP_IDS + 4, V_TEST);
	assert_submit_fails(q, len, QERR_INVALID, "SUBMIT: ");
	/* the boundaries are accepted */
	memcpy(q, p, len);
	patch32(q, tail + T_N, WIRE_MAX_N);
	patch32(q, tail + T_LOGPROBS, SAMPLER_MAX_LOGPROBS);
	patch32(q, tail + T_MAX_TOKENS, 1);
	wire_submit out;
	qerr e = { 0 };
	ck_assert_msg(wire_submit_decode(q, len, V_TEST, &out, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(out.n, WIRE_MAX_N);
	wire_submit_deinit(&out);
	free(q);
	free(p);
}
END_TEST

START_TEST(test_wire_submit_bad_images)
{
	wire_submit s;
	size_t len;
	uint8_t *p = sample_payload(&s, &len);
	uint8_t *q = malloc(len);
	const size_t i0 = off_image(&s, 0), i1 = off_image(&s, 1);
	const struct { size_t off; int wide; uint64_t v; const char *want; } cases[] = {
		{ i0 + IM_START, 8, (uint64_t)-1, "SUBMIT: images[0].start: -1 not in [0, n_ids 40)" },
		{ i0 + IM_START, 8, S_IDS, "SUBMIT: images[0].start: 40 not in [0, n_ids 40)" },
		{ i1 + IM_START, 8, 3, "SUBMIT: images[1].start: 3 not after the previous image's 3" },
		{ i1 + IM_START, 8, 2, "SUBMIT: images[1].start: 2 not after" },
		{ i0 + IM_GRID_T, 4, 0, "SUBMIT: images[0].grid: 0 x 2 x 2 is not positive" },
		{ i1 + IM_GRID_H, 4, (uint32_t)-1, "SUBMIT: images[1].grid: 1 x -1 x 2" },
		{ i1 + IM_GRID_W, 4, 0, "SUBMIT: images[1].grid" },
		{ i0 + IM_WIDTH, 4, 0, "SUBMIT: images[0].size: 0 x 20 is not positive" },
		{ i1 + IM_HEIGHT, 4, (uint32_t)-16, "SUBMIT: images[1].size: 32 x -16" },
		{ i0 + IM_RGB_LEN, 4, 1000, "SUBMIT: images[0].rgb: 1000 bytes, 1200 expected" },
		{ i1 + IM_RGB_LEN, 4, 1537, "SUBMIT: images[1].rgb: 1537 bytes, 1536 expected" },
		{ i0 + IM_WIDTH, 4, 21, "SUBMIT: images[0].rgb: 1200 bytes, 1260 expected" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(q, p, len);
		if (cases[i].wide == 8)
			patch64(q, cases[i].off, cases[i].v);
		else
			patch32(q, cases[i].off, (uint32_t)cases[i].v);
		assert_submit_fails(q, len, QERR_FORMAT, cases[i].want);
	}
	/* width*height*3 far beyond 32 bits (and int): computed without overflow */
	memcpy(q, p, len);
	patch32(q, i0 + IM_WIDTH, 0x7fffffff);
	patch32(q, i0 + IM_HEIGHT, 0x7fffffff);
	assert_submit_fails(q, len, QERR_FORMAT,
			    "SUBMIT: images[0].rgb: 1200 bytes, 13835058042397261827 expected");
	/* a product that 32-bit arithmetic would wrap to rgb_len: 65536 x 21846 x 3 = 2^32 + 131072 */
	memcpy(q, p, len);
	patch32(q, i0 + IM_WIDTH, 65536);
	patch32(q, i0 + IM_HEIGHT, 21846);
	patch32(q, i0 + IM_RGB_LEN, (uint32_t)(65536ull * 21846 * 3));
	assert_submit_fails(q, len, QERR_FORMAT, "SUBMIT: images[0].rgb: ");
	free(q);
	free(p);
}
END_TEST

/* ---- TOKENS ---- */

static sampler_logprobs sample_lp(int32_t id, int k)
{
	sampler_logprobs lp;
	memset(&lp, 0, sizeof(lp));
	lp.id = id;
	lp.logprob = -0.25f * (float)(id % 7);
	lp.n_top = k;
	for (int j = 0; j < k; j++) {
		lp.top_ids[j] = id + j;
		lp.top_logprobs[j] = j == 19 ? -INFINITY : -0.125f * (float)j;
	}
	return lp;
}

static void assert_lp_eq(const sampler_logprobs *a, const sampler_logprobs *b)
{
	ck_assert_int_eq(a->id, b->id);
	ck_assert_mem_eq(&a->logprob, &b->logprob, 4);
	ck_assert_int_eq(a->n_top, b->n_top);
	for (int j = 0; j < a->n_top; j++) {
		ck_assert_int_eq(a->top_ids[j], b->top_ids[j]);
		ck_assert_mem_eq(&a->top_logprobs[j], &b->top_logprobs[j], 4);
	}
}

/* The sample TOKENS payload: 3 tokens, with logprobs (0, 5 and 20 alternatives). */
static uint8_t *tokens_payload(size_t *len, int32_t ids[3], sampler_logprobs lp[3])
{
	ids[0] = 17;
	ids[1] = 0;
	ids[2] = 151935;
	lp[0] = sample_lp(ids[0], 0);
	lp[1] = sample_lp(ids[1], 5);
	lp[2] = sample_lp(ids[2], 20);
	wire_tokens t = { .index = 2, .n = 3, .ids = ids, .has_logprobs = true, .lp = lp };
	strbuf b = { 0 };
	wire_tokens_put(&b, 99, &t);
	uint8_t *base;
	uint8_t *p = assert_frame(&b, WIRE_T_TOKENS, 99, 0, len, &base);
	ck_assert_uint_eq(*len, 9 + 12 + 3 * 8 + (0 + 5 + 20) * 8);
	strbuf_deinit(&b);
	return p;
}

static void assert_tokens_fails(const uint8_t *p, size_t len, uint32_t cap, const char *want)
{
	uint8_t *c = exact_copy(p, len);
	uint32_t index = 7, n = 7;
	int32_t ids[8];
	sampler_logprobs lp[8];
	bool has;
	qerr e = { 0 };
	int rc = wire_tokens_decode(c, len, &index, ids, lp, &has, cap, &n, &e);
	assert_fails(rc, &e, QERR_FORMAT, want);
	ck_assert_uint_eq(n, 0);
	ck_assert_msg(strncmp(e.msg, "TOKENS: ", 8) == 0, "%s", e.msg);
	free(c);
}

START_TEST(test_wire_tokens_round_trip_with_logprobs)
{
	int32_t ids[3];
	sampler_logprobs lp[3];
	size_t len;
	uint8_t *p0 = tokens_payload(&len, ids, lp);
	for (size_t mis = 0; mis < 4; mis++) {
		uint8_t *base = malloc(len + mis);
		memcpy(base + mis, p0, len);
		uint32_t index, n;
		int32_t got[3];
		sampler_logprobs glp[3];
		bool has = false;
		qerr e = { 0 };
		ck_assert_msg(wire_tokens_decode(base + mis, len, &index, got, glp, &has, 3, &n,
						 &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(index, 2);
		ck_assert_uint_eq(n, 3);
		ck_assert(has);
		for (int i = 0; i < 3; i++) {
			ck_assert_int_eq(got[i], ids[i]);
			assert_lp_eq(&lp[i], &glp[i]);
		}
		/* lp NULL: logprobs checked and dropped */
		ck_assert_msg(wire_tokens_decode(base + mis, len, &index, got, NULL, &has, 3, &n,
						 &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(n, 3);
		free(base);
	}
	free(p0);
}
END_TEST

START_TEST(test_wire_tokens_round_trip_plain)
{
	int32_t ids[1] = { 42 };
	wire_tokens t = { .index = WIRE_MAX_N - 1, .n = 1, .ids = ids };
	strbuf b = { 0 };
	wire_tokens_put(&b, 5, &t);
	size_t len;
	uint8_t *base;
	uint8_t *p = assert_frame(&b, WIRE_T_TOKENS, 5, 1, &len, &base);
	ck_assert_uint_eq(len, 13);
	uint32_t index, n;
	int32_t got[1];
	bool has = true;
	qerr e = { 0 };
	ck_assert_msg(wire_tokens_decode(p, len, &index, got, NULL, &has, 1, &n, &e) == 0, "%s",
		      e.msg);
	ck_assert_uint_eq(index, WIRE_MAX_N - 1);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(got[0], 42);
	ck_assert(!has);
	free(base);
	strbuf_deinit(&b);
}
END_TEST

START_TEST(test_wire_tokens_malformed)
{
	int32_t ids[3];
	sampler_logprobs lp[3];
	size_t len;
	uint8_t *p = tokens_payload(&len, ids, lp);
	for (size_t k = 0; k < len; k++)
		assert_tokens_fails(p, k, 8, "truncated");
	uint8_t *q = malloc(len + 2);
	memcpy(q, p, len);
	q[len] = q[len + 1] = 0;
	assert_tokens_fails(q, len + 2, 8, "TOKENS: 2 trailing bytes");
	assert_tokens_fails(p, len, 2, "TOKENS: n: 3 over the capacity 2");

	/* offsets: index 0, n 4, has_logprobs 8, ids 9; token 0's logprobs at 21, token 1's at
	 * 29 (its n_top at 33, top[0] at 37), token 2's at 29 + 8 + 40 = 77 */
	const struct { size_t off; int width; uint32_t v; const char *want; } cases[] = {
		{ 0, 4, WIRE_MAX_N, "TOKENS: index: 128 not below WIRE_MAX_N (128)" },
		{ 4, 4, 0, "TOKENS: n: 0" },
		{ 8, 1, 2, "TOKENS: has_logprobs: 2 is not a boolean" },
		{ 13, 4, (uint32_t)-3, "TOKENS: ids[1]: -3 is negative" },
		{ 33, 4, 21, "TOKENS: logprobs[1].n_top: 21 over 20" },
		{ 37, 4, (uint32_t)-1, "TOKENS: logprobs[1].top[0].id: -1 is negative" },
		{ 4, 4, 2, "TOKENS: " },   /* fewer tokens than sent: misparsed, then trailing */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(q, p, len);
		if (cases[i].width == 1)
			q[cases[i].off] = (uint8_t)cases[i].v;
		else
			patch32(q, cases[i].off, cases[i].v);
		assert_tokens_fails(q, len, 8, cases[i].want);
	}
	const float badf[] = { NAN, INFINITY };
	for (int j = 0; j < 2; j++) {
		memcpy(q, p, len);
		patchf32(q, 29, badf[j]);
		assert_tokens_fails(q, len, 8, "TOKENS: logprobs[1].logprob: ");
		assert_tokens_fails(q, len, 8, "is not a log probability");
		memcpy(q, p, len);
		patchf32(q, 37 + 4 + 8, badf[j]);
		assert_tokens_fails(q, len, 8, "TOKENS: logprobs[1].top[1].logprob: ");
	}
	/* has_logprobs cleared: the logprob bytes become trailing */
	memcpy(q, p, len);
	q[8] = 0;
	assert_tokens_fails(q, len, 8, "trailing bytes");
	free(q);
	free(p);
}
END_TEST

/* ---- FINISH ---- */

static wire_finish sample_finish(void)
{
	return (wire_finish){ .index = 3, .reason = WIRE_FINISH_STOP, .stop_id = 151645,
			      .prompt_tokens = 1234, .completion_tokens = 56,
			      .cached_tokens = 1024, .queue_s = 0.0015, .ttft_s = 0.055,
			      .e2e_s = 1.25 };
}

static void assert_finish_fails(const uint8_t *p, size_t len, const char *want)
{
	uint8_t *c = exact_copy(p, len);
	wire_finish f;
	qerr e = { 0 };
	int rc = wire_finish_decode(c, len, &f, &e);
	assert_fails(rc, &e, QERR_FORMAT, want);
	ck_assert_msg(strncmp(e.msg, "FINISH: ", 8) == 0, "%s", e.msg);
	free(c);
}

START_TEST(test_wire_finish_round_trip)
{
	const uint32_t reasons[] = { WIRE_FINISH_STOP, WIRE_FINISH_LENGTH, WIRE_FINISH_ABORT };
	for (int r = 0; r < 3; r++) {
		wire_finish f = sample_finish();
		f.reason = reasons[r];
		f.stop_id = r == 0 ? 7 : -1;
		strbuf b = { 0 };
		wire_finish_put(&b, 8, &f);
		size_t len;
		uint8_t *base;
		uint8_t *p = assert_frame(&b, WIRE_T_FINISH, 8, (size_t)r + 1, &len, &base);
		ck_assert_uint_eq(len, 48);
		wire_finish g;
		qerr e = { 0 };
		ck_assert_msg(wire_finish_decode(p, len, &g, &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(g.index, f.index);
		ck_assert_uint_eq(g.reason, f.reason);
		ck_assert_int_eq(g.stop_id, f.stop_id);
		ck_assert_uint_eq(g.prompt_tokens, f.prompt_tokens);
		ck_assert_uint_eq(g.completion_tokens, f.completion_tokens);
		ck_assert_uint_eq(g.cached_tokens, f.cached_tokens);
		ck_assert_mem_eq(&g.queue_s, &f.queue_s, 8);
		ck_assert_mem_eq(&g.ttft_s, &f.ttft_s, 8);
		ck_assert_mem_eq(&g.e2e_s, &f.e2e_s, 8);
		free(base);
		strbuf_deinit(&b);
	}
}
END_TEST

START_TEST(test_wire_finish_malformed)
{
	wire_finish f = sample_finish();
	strbuf b = { 0 };
	wire_finish_put(&b, 8, &f);
	size_t len;
	uint8_t *base;
	uint8_t *p = assert_frame(&b, WIRE_T_FINISH, 8, 0, &len, &base);
	for (size_t k = 0; k < len; k++)
		assert_finish_fails(p, k, "truncated");
	assert_finish_fails(p, 2, "FINISH: index: truncated: 4 bytes needed, 2 left");
	uint8_t q[49];
	memcpy(q, p, len);
	q[48] = 0;
	assert_finish_fails(q, 49, "FINISH: 1 trailing bytes");
	const struct { size_t off; uint32_t v; const char *want; } cases[] = {
		{ 0, WIRE_MAX_N, "FINISH: index: 128 not below WIRE_MAX_N" },
		{ 4, 0, "FINISH: reason: 0 not in 1..3" },
		{ 4, 4, "FINISH: reason: 4 not in 1..3" },
		{ 8, (uint32_t)-2, "FINISH: stop_id: -2" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(q, p, len);
		patch32(q, cases[i].off, cases[i].v);
		assert_finish_fails(q, len, cases[i].want);
	}
	const struct { size_t off; const char *name; } times[] = {
		{ 24, "FINISH: queue_s: " }, { 32, "FINISH: ttft_s: " }, { 40, "FINISH: e2e_s: " },
	};
	for (size_t i = 0; i < 3; i++) {
		memcpy(q, p, len);
		patchf64(q, times[i].off, NAN);
		assert_finish_fails(q, len, times[i].name);
		patchf64(q, times[i].off, -INFINITY);
		assert_finish_fails(q, len, "is not finite");
	}
	free(base);
	strbuf_deinit(&b);
}
END_TEST

/* ---- ERROR ---- */

static void assert_error_round_trip(uint32_t code, const char *msg, const char *want)
{
	strbuf b = { 0 };
	wire_error_put(&b, 11, code, msg);
	size_t len;
	uint8_t *base;
	uint8_t *p = assert_frame(&b, WIRE_T_ERROR, 11, 1, &len, &base);
	ck_assert_uint_eq(len, 8 + strlen(want));
	wire_error w;
	qerr e = { 0 };
	ck_assert_msg(wire_error_decode(p, len, &w, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(w.code, code);
	ck_assert_str_eq(w.message, want);
	free(base);
	strbuf_deinit(&b);
}

static void assert_error_fails(const uint8_t *p, size_t len, const char *want)
{
	uint8_t *c = exact_copy(p, len);
	wire_error w;
	qerr e = { 0 };
	int rc = wire_error_decode(c, len, &w, &e);
	assert_fails(rc, &e, QERR_FORMAT, want);
	ck_assert_msg(strncmp(e.msg, "ERROR: ", 7) == 0, "%s", e.msg);
	free(c);
}

START_TEST(test_wire_error_round_trip)
{
	for (uint32_t c = WIRE_E_BAD_REQUEST; c <= WIRE_E_CANCELLED; c++)
		assert_error_round_trip(c, "prompt: 40000 tokens, max_model_len 32768",
					"prompt: 40000 tokens, max_model_len 32768");
	assert_error_round_trip(WIRE_E_BUSY, "", "");
	assert_error_round_trip(WIRE_E_BUSY, NULL, "");
	/* too long: cut at WIRE_MAX_MESSAGE, never inside a UTF-8 character */
	char *longmsg = malloc(2 * WIRE_MAX_MESSAGE + 1);
	memset(longmsg, 'x', 2 * WIRE_MAX_MESSAGE);
	longmsg[2 * WIRE_MAX_MESSAGE] = 0;
	char *want = strndup(longmsg, WIRE_MAX_MESSAGE);
	assert_error_round_trip(WIRE_E_INTERNAL, longmsg, want);
	memcpy(longmsg + WIRE_MAX_MESSAGE - 1, "\xc3\xa9", 2);   /* é across the limit */
	want[WIRE_MAX_MESSAGE - 1] = 0;
	assert_error_round_trip(WIRE_E_INTERNAL, longmsg, want);
	memcpy(longmsg + WIRE_MAX_MESSAGE - 2, "\xf0\x9f\x98\x80", 4);   /* an emoji */
	want[WIRE_MAX_MESSAGE - 2] = 0;
	assert_error_round_trip(WIRE_E_INTERNAL, longmsg, want);
	memcpy(longmsg + WIRE_MAX_MESSAGE - 2, "\xc3\xa9xx", 4);   /* one that fits exactly */
	memcpy(want + WIRE_MAX_MESSAGE - 2, "\xc3\xa9", 3);
	assert_error_round_trip(WIRE_E_INTERNAL, longmsg, want);
	free(want);
	free(longmsg);
}
END_TEST

START_TEST(test_wire_error_any_bytes_and_malformed)
{
	/* a message with a NUL and invalid UTF-8 inside: decoded as sent, NUL-terminated */
	uint8_t p[8 + WIRE_MAX_MESSAGE + 1];
	patch32(p, 0, WIRE_E_BAD_REQUEST);
	patch32(p, 4, 5);
	memcpy(p + 8, "a\0\xff\xfe" "b", 5);
	wire_error w;
	qerr e = { 0 };
	ck_assert_msg(wire_error_decode(p, 13, &w, &e) == 0, "%s", e.msg);
	ck_assert_mem_eq(w.message, "a\0\xff\xfe" "b", 6);
	for (size_t k = 0; k < 13; k++)
		assert_error_fails(p, k, "truncated");
	assert_error_fails(p, 9, "ERROR: message: truncated: 5 bytes needed, 1 left");
	p[13] = 'z';
	assert_error_fails(p, 14, "ERROR: 1 trailing bytes");
	patch32(p, 0, 0);
	assert_error_fails(p, 13, "ERROR: code: 0 not in 1..7");
	patch32(p, 0, 8);
	assert_error_fails(p, 13, "ERROR: code: 8 not in 1..7");
	patch32(p, 0, WIRE_E_PROTOCOL);
	patch32(p, 4, WIRE_MAX_MESSAGE + 1);
	memset(p + 8, 'm', WIRE_MAX_MESSAGE + 1);
	assert_error_fails(p, sizeof(p), "ERROR: len: 1025 over WIRE_MAX_MESSAGE (1024)");
	patch32(p, 4, WIRE_MAX_MESSAGE);
	ck_assert_msg(wire_error_decode(p, sizeof(p) - 1, &w, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(strlen(w.message), WIRE_MAX_MESSAGE);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_wire_header_bytes_are_pinned);
	tcase_add_test(tc, test_wire_header_round_trip_every_type);
	tcase_add_test(tc, test_wire_header_rejects_malformed);
	tcase_add_test(tc, test_wire_type_names);
	tcase_add_test(tc, test_wire_text_frames_round_trip);
	tcase_add_test(tc, test_wire_submit_round_trip_any_alignment);
	tcase_add_test(tc, test_wire_submit_round_trip_plain_request);
	tcase_add_test(tc, test_wire_submit_truncation_at_every_offset);
	tcase_add_test(tc, test_wire_submit_trailing_bytes);
	tcase_add_test(tc, test_wire_submit_bad_counts);
	tcase_add_test(tc, test_wire_submit_bad_booleans);
	tcase_add_test(tc, test_wire_submit_non_finite_doubles);
	tcase_add_test(tc, test_wire_submit_ids_out_of_range);
	tcase_add_test(tc, test_wire_submit_bad_values);
	tcase_add_test(tc, test_wire_submit_bad_images);
	tcase_add_test(tc, test_wire_tokens_round_trip_with_logprobs);
	tcase_add_test(tc, test_wire_tokens_round_trip_plain);
	tcase_add_test(tc, test_wire_tokens_malformed);
	tcase_add_test(tc, test_wire_finish_round_trip);
	tcase_add_test(tc, test_wire_finish_malformed);
	tcase_add_test(tc, test_wire_error_round_trip);
	tcase_add_test(tc, test_wire_error_any_bytes_and_malformed);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
