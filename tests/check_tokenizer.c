/*
 * Tests of the tokenizer (tokenizer.c, pretok.c, bpe.c): the ids Hugging Face tokenizers gives for
 * every line of the committed corpus (tests/data/tokenizer, made by tests/golden/make_tokenizer_*.js), decoding,
 * round trips, added tokens, both merge formats, invalid UTF-8, 4 MB inputs on a small stack,
 * concurrent use, the pre-tokenizer against PCRE2 running the same regex, BPE against a naive
 * reference, and tokenizer.json files that are broken or unsupported.
 *
 * Synthetic tokenizers are written to a temporary directory: the 256 byte tokens, five merges
 * (h e, l l, he ll, hell o, Ġ w → ids 256–260) and "€x" (261), with the real file's pipeline.
 * Their expected ids and texts were checked against tokenizers 0.23.2.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <check.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "bpe.h"
#include "jsonx.h"
#include "pretok.h"
#include "testutil.h"
#include "tokenizer.h"
#include "utf8.h"

/* ---- fixtures: the real tokenizer and the corpus, loaded once in the parent ---- */

struct text {
	char *s;   /* owned */
	size_t n;
};

struct idvec {
	int32_t *v;   /* owned */
	size_t n;
};

static tokenizer *tok;
static char tok_path[1024];
static struct text *corpus;
static struct idvec *golden;
static size_t ncorpus;

static const char *srcdir(void)
{
	const char *s = getenv("srcdir");
	return s && *s ? s : ".";
}

static void data_path(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/tests/data/tokenizer/%s", srcdir(), name);
}

/* The lines of a JSON-lines file, parsed (an array of owned objects). */
static json_object **read_jsonl(const char *name, size_t *count)
{
	char path[1024];
	data_path(path, sizeof(path), name);
	size_t len;
	char *text = tu_read(path, &len);
	ck_assert_msg(text != NULL, "cannot read %s", path);
	json_object **v = NULL;
	size_t n = 0, cap = 0;
	for (char *line = text, *end; line < text + len; line = end + 1) {
		end = memchr(line, '\n', (size_t)(text + len - line));
		if (!end)
			end = text + len;
		if (end == line)
			continue;
		qerr e = { 0 };
		json_object *o;
		ck_assert_msg(jsonx_parse(line, (size_t)(end - line), path, &o, &e) == 0, "%s", e.msg);
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			v = realloc(v, cap * sizeof(*v));
		}
		v[n++] = o;
	}
	free(text);
	*count = n;
	return v;
}

static void free_jsonl(json_object **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_object_put(v[i]);
	free(v);
}

static struct idvec ids_of(json_object *arr)
{
	struct idvec r = { 0 };
	r.n = json_object_array_length(arr);
	r.v = malloc((r.n ? r.n : 1) * sizeof(int32_t));
	for (size_t i = 0; i < r.n; i++)
		r.v[i] = (int32_t)json_object_get_int64(json_object_array_get_idx(arr, i));
	return r;
}

static void load_fixture(void)
{
	const char *dd = getenv("QVL_DATADIR");
	snprintf(tok_path, sizeof(tok_path), "%s/qwen3-vl/tokenizer.json", dd && *dd ? dd : "share");
	qerr e = { 0 };
	ck_assert_msg(tok_load(tok_path, &tok, &e) == 0, "%s", e.msg);
	size_t nc, ng;
	json_object **c = read_jsonl("corpus.jsonl", &nc), **g = read_jsonl("golden.jsonl", &ng);
	ck_assert_uint_eq(nc, ng);
	ck_assert_uint_ge(nc, 2000);
	corpus = calloc(nc, sizeof(*corpus));
	golden = calloc(nc, sizeof(*golden));
	for (size_t i = 0; i < nc; i++) {
		corpus[i].n = (size_t)json_object_get_string_len(c[i]);
		corpus[i].s = malloc(corpus[i].n + 1);
		memcpy(corpus[i].s, json_object_get_string(c[i]), corpus[i].n + 1);
		golden[i] = ids_of(g[i]);
	}
	ncorpus = nc;
	free_jsonl(c, nc);
	free_jsonl(g, ng);
}

static void unload_fixture(void)
{
	for (size_t i = 0; i < ncorpus; i++) {
		free(corpus[i].s);
		free(golden[i].v);
	}
	free(corpus);
	free(golden);
	tok_free(tok);
}

/* Fail with the first difference between ids and the expected ones. */
static void assert_ids(const tok_ids *got, const int32_t *want, size_t nwant, const char *what, size_t line)
{
	size_t i = 0;
	while (i < got->n && i < nwant && got->v[i] == want[i])
		i++;
	ck_assert_msg(i == got->n && i == nwant,
		      "%s line %zu: %zu ids, want %zu; first difference at %zu: got %d, want %d", what, line,
		      got->n, nwant, i, i < got->n ? got->v[i] : -1, i < nwant ? want[i] : -1);
}

/* xorshift64, seeded per test */
static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

/* ---- goldens ---- */

START_TEST(test_tokenizer_corpus_matches_golden)
{
	/* twice: the first pass fills the word cache, the second reads it */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < ncorpus; i++) {
			tok_ids ids = { 0 };
			tok_encode(tok, corpus[i].s, corpus[i].n, &ids);
			assert_ids(&ids, golden[i].v, golden[i].n, "corpus.jsonl", i + 1);
			tok_ids_deinit(&ids);
		}
	}
}
END_TEST

static char *unhex(const char *h, size_t *n)
{
	size_t len = strlen(h) / 2;
	char *b = malloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		unsigned x;
		ck_assert_int_eq(sscanf(h + 2 * i, "%2x", &x), 1);
		b[i] = (char)x;
	}
	*n = len;
	return b;
}

START_TEST(test_tokenizer_byte_strings_match_golden)
{
	size_t nb, ng;
	json_object **b = read_jsonl("corpus_bytes.jsonl", &nb), **g = read_jsonl("golden_bytes.jsonl", &ng);
	ck_assert_uint_eq(nb, ng);
	ck_assert_uint_ge(nb, 100);
	for (size_t i = 0; i < nb; i++) {
		size_t n;
		char *bytes = unhex(json_object_get_string(b[i]), &n);
		struct idvec want = ids_of(g[i]);
		tok_ids ids = { 0 };
		tok_encode(tok, bytes, n, &ids);
		assert_ids(&ids, want.v, want.n, "corpus_bytes.jsonl", i + 1);
		/* the same as encoding the repaired text */
		size_t fn;
		char *fixed = utf8_lossy(bytes, n, &fn);
		tok_ids ids2 = { 0 };
		tok_encode(tok, fixed, fn, &ids2);
		assert_ids(&ids2, want.v, want.n, "corpus_bytes.jsonl (repaired)", i + 1);
		tok_ids_deinit(&ids);
		tok_ids_deinit(&ids2);
		free(want.v);
		free(fixed);
		free(bytes);
	}
	free_jsonl(b, nb);
	free_jsonl(g, ng);
}
END_TEST

START_TEST(test_tokenizer_decode_matches_golden)
{
	size_t n;
	json_object **d = read_jsonl("decode.jsonl", &n);
	ck_assert_uint_ge(n, 300);
	for (size_t i = 0; i < n; i++) {
		struct idvec ids = ids_of(jsonx_member(d[i], "ids"));
		for (int skip = 0; skip < 2; skip++) {
			json_object *w = jsonx_member(d[i], skip ? "text_skip" : "text");
			const char *want = w ? json_object_get_string(w) : "";
			size_t wn = w ? (size_t)json_object_get_string_len(w) : 0, len;
			char *got = tok_decode(tok, ids.v, ids.n, skip, &len);
			ck_assert_msg(len == wn && memcmp(got, want, wn) == 0 && got[len] == 0,
				      "decode.jsonl line %zu (skip_special %d): \"%s\", want \"%s\"", i + 1, skip,
				      got, want);
			free(got);
		}
		free(ids.v);
	}
	free_jsonl(d, n);
}
END_TEST

/* ---- round trips and NFC ---- */

START_TEST(test_tokenizer_round_trip)
{
	for (size_t i = 0; i < ncorpus; i++) {
		size_t nn, dn;
		char *norm = tok_normalize(tok, corpus[i].s, corpus[i].n, &nn);
		char *dec = tok_decode(tok, golden[i].v, golden[i].n, false, &dn);
		ck_assert_msg(dn == nn && memcmp(dec, norm, nn) == 0, "corpus line %zu does not round-trip", i + 1);
		free(dec);
		free(norm);
	}
}
END_TEST

static bool has_flag(const pretok *p, const char *s, size_t n, unsigned flag)
{
	for (size_t i = 0; i < n;) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		ck_assert_int_gt(k, 0);
		if (pretok_flags(p, (uint32_t)cp) & flag)
			return true;
		i += (size_t)k;
	}
	return false;
}

/* tok_normalize is utf8proc's NFC wherever tokenizers' older Unicode data does not differ (no
 * barrier code points) and no added token splits the text; with barriers, NFC applies to the
 * parts between them. */
START_TEST(test_tokenizer_nfc)
{
	pretok *p = pretok_new();
	size_t checked = 0;
	for (size_t i = 0; i < ncorpus; i++) {
		const char *s = corpus[i].s;
		size_t n = corpus[i].n;
		if (has_flag(p, s, n, PRETOK_NFC_BARRIER) || memchr(s, '<', n))
			continue;
		size_t nn;
		char *norm = tok_normalize(tok, s, n, &nn);
		utf8proc_uint8_t *ref = NULL;
		utf8proc_ssize_t rn = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &ref,
						   UTF8PROC_STABLE | UTF8PROC_COMPOSE);
		ck_assert_int_ge(rn, 0);
		ck_assert_msg((size_t)rn == nn && memcmp(ref, norm, nn) == 0, "corpus line %zu: NFC differs", i + 1);
		free(ref);
		free(norm);
		checked++;
	}
	ck_assert_uint_gt(checked, 1500);
	/* long runs of marks in every order (tokenizer.c sorts them itself) */
	rng_state = 99;
	static const char *marks[] = { "\xcc\x81", "\xcc\xa3", "\xd6\xb0", "\xcd\x85", "\xcc\xb4", "e", "\xe1\x84\x80" };
	for (int k = 0; k < 200; k++) {
		char buf[4096];
		size_t n = 0, len = 1 + rnd(k < 20 ? 1500 : 60);
		for (size_t i = 0; i < len; i++) {
			const char *m = marks[rnd(k % 2 ? 5 : 7)];
			memcpy(buf + n, m, strlen(m));
			n += strlen(m);
		}
		size_t nn;
		char *norm = tok_normalize(tok, buf, n, &nn);
		utf8proc_uint8_t *ref = NULL;
		utf8proc_ssize_t rn = utf8proc_map((const utf8proc_uint8_t *)buf, (utf8proc_ssize_t)n, &ref,
						   UTF8PROC_STABLE | UTF8PROC_COMPOSE);
		ck_assert_msg((size_t)rn == nn && memcmp(ref, norm, nn) == 0, "mark run %d: NFC differs", k);
		free(ref);
		free(norm);
	}
	/* a barrier mark (U+1DF6, ccc 232 in Unicode 10) is a starter to tokenizers: no reordering
	 * with U+0301 (ccc 230) after it, which utf8proc would do */
	size_t nn;
	char *norm = tok_normalize(tok, "x\xe1\xb7\xb6\xcc\x81", 6, &nn);
	ck_assert_str_eq(norm, "x\xe1\xb7\xb6\xcc\x81");
	free(norm);
	/* an added token is matched before NFC: '>' + U+0338 would compose to U+226F */
	norm = tok_normalize(tok, "<think>\xcc\xb8", 9, &nn);
	ck_assert_str_eq(norm, "<think>\xcc\xb8");
	free(norm);
	norm = tok_normalize(tok, "a>\xcc\xb8 e\xcc\x81", 9, &nn);
	ck_assert_str_eq(norm, "a\xe2\x89\xaf \xc3\xa9");
	free(norm);
	/* nothing in ASCII ever needs NFC */
	for (uint32_t c = 0; c < 0x80; c++)
		ck_assert_uint_eq(pretok_flags(p, c) & (PRETOK_NFC_CHECK | PRETOK_NFC_BARRIER), 0);
	pretok_free(p);
}
END_TEST

START_TEST(test_tokenizer_unicode_classes)
{
	pretok *p = pretok_new();
	static const struct { uint32_t cp; unsigned cls; } want[] = {
		{ 'a', PRETOK_LETTER }, { '0', PRETOK_NUMBER }, { ' ', PRETOK_SPACE }, { '\n', PRETOK_SPACE },
		{ '!', PRETOK_OTHER }, { 0, PRETOK_OTHER }, { 0x85, PRETOK_SPACE }, { 0xa0, PRETOK_SPACE },
		{ 0x180e, PRETOK_OTHER },   /* White_Space until Unicode 6.3; PCRE2's \s still has it */
		{ 0x200b, PRETOK_OTHER }, { 0x2028, PRETOK_SPACE }, { 0x3000, PRETOK_SPACE }, { 0xfeff, PRETOK_OTHER },
		{ 0x1c89, PRETOK_LETTER },  /* Unicode 16.0: unknown to utf8proc 2.8 and PCRE2 10.42 */
		{ 0x105c0, PRETOK_LETTER }, { 0x0301, PRETOK_OTHER }, { 0x2167, PRETOK_NUMBER }, { 0xbd, PRETOK_NUMBER },
		{ 0x4e2d, PRETOK_LETTER }, { 0xac00, PRETOK_LETTER }, { 0x1f600, PRETOK_OTHER }, { 0x10ffff, PRETOK_OTHER },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg((pretok_flags(p, want[i].cp) & PRETOK_CLASS_MASK) == want[i].cls, "U+%04X: class %u, want %u",
			      want[i].cp, pretok_flags(p, want[i].cp) & PRETOK_CLASS_MASK, want[i].cls);
	ck_assert(pretok_flags(p, 0x0301) & PRETOK_NFC_CHECK);
	ck_assert(pretok_flags(p, 0x1df6) & PRETOK_NFC_BARRIER);
	ck_assert(!(pretok_flags(p, 0xe9) & PRETOK_NFC_CHECK));
	ck_assert(pretok_flags(p, 0x1161) & PRETOK_NFC_CHECK);   /* Hangul vowel: composes */
	ck_assert(!(pretok_flags(p, 0xac00) & PRETOK_NFC_CHECK));
	ck_assert(pretok_flags(p, 0x212b) & PRETOK_NFC_CHECK);   /* ANGSTROM SIGN → Å */
	ck_assert_uint_eq(pretok_flags(p, 0x110000), 0);
	pretok_free(p);
}
END_TEST

/* ---- added tokens and token queries (real tokenizer) ---- */

static void assert_encodes(const tokenizer *t, const char *s, size_t n, const int32_t *want, size_t nwant)
{
	tok_ids ids = { 0 };
	tok_encode(t, s, n, &ids);
	assert_ids(&ids, want, nwant, s, 0);
	tok_ids_deinit(&ids);
}
#define assert_encodes(t, s, ...)                                                                   \
	do {                                                                                  \
		static const int32_t w_[] = { __VA_ARGS__ };                                 \
		assert_encodes(t, s, sizeof(s) - 1, w_, sizeof(w_) / sizeof(w_[0]));          \
	} while (0)

static bool contains_id(const tok_ids *ids, int32_t id)
{
	for (size_t i = 0; i < ids->n; i++)
		if (ids->v[i] == id)
			return true;
	return false;
}

START_TEST(test_tokenizer_added_tokens)
{
	assert_encodes(tok, "<|im_start|>", 151644);
	assert_encodes(tok, "<think></think>", 151667, 151668);
	assert_encodes(tok, "<|im_start|>user\n", 151644, 872, 198);
	assert_encodes(tok, "hello world", 14990, 1879);
	/* inside words, doubled, and their look-alikes */
	static const char *has[] = { "x<|endoftext|>y", "<<|im_end|>>", "<|im_start|><|im_start|>", "a<tool_call>b" };
	static const int32_t has_id[] = { 151643, 151645, 151644, 151657 };
	for (size_t i = 0; i < 4; i++) {
		tok_ids ids = { 0 };
		tok_encode(tok, has[i], strlen(has[i]), &ids);
		ck_assert_msg(contains_id(&ids, has_id[i]), "%s", has[i]);
		tok_ids_deinit(&ids);
	}
	static const char *not[] = { "<|im_start", "<|IM_START|>", "< |im_start|>", "<think", "|im_end|>" };
	for (size_t i = 0; i < 5; i++) {
		tok_ids ids = { 0 };
		tok_encode(tok, not[i], strlen(not[i]), &ids);
		for (size_t k = 0; k < ids.n; k++)
			ck_assert_msg(!tok_is_added(tok, ids.v[k]), "%s gave added token %d", not[i], ids.v[k]);
		tok_ids_deinit(&ids);
	}
	/* the table of spec §1.3: 151643–151656 special, 151657–151668 added but not special */
	for (int32_t id = 151643; id <= 151668; id++) {
		ck_assert(tok_is_added(tok, id));
		ck_assert_int_eq(tok_is_special(tok, id), id <= 151656);
		size_t n;
		const char *b = tok_id_bytes(tok, id, &n);
		ck_assert_ptr_nonnull(b);
		ck_assert_int_eq(tok_token_to_id(tok, tok_id_to_token(tok, id)), id);
		ck_assert_uint_eq(n, strlen(tok_id_to_token(tok, id)));
	}
	ck_assert(!tok_is_added(tok, 872));
	ck_assert(!tok_is_special(tok, 872));
}
END_TEST

START_TEST(test_tokenizer_token_queries)
{
	ck_assert_int_eq(tok_vocab_size(tok), 151669);
	ck_assert_str_eq(tok_id_to_token(tok, 872), "user");
	ck_assert_str_eq(tok_id_to_token(tok, 77091), "assistant");
	ck_assert_str_eq(tok_id_to_token(tok, 198), "\xc4\x8a");   /* Ċ */
	ck_assert_str_eq(tok_id_to_token(tok, 1879), "\xc4\xa0world");   /* Ġworld */
	ck_assert_int_eq(tok_token_to_id(tok, "\xc4\xa0world"), 1879);
	ck_assert_int_eq(tok_token_to_id(tok, "<|im_end|>"), 151645);
	ck_assert_int_eq(tok_token_to_id(tok, "</think>"), 151668);
	ck_assert_int_eq(tok_token_to_id(tok, " world"), -1);   /* spelled in the byte-level alphabet */
	ck_assert_int_eq(tok_token_to_id(tok, "no such token at all"), -1);
	ck_assert_int_eq(tok_token_to_id(tok, NULL), -1);
	size_t n;
	const char *b = tok_id_bytes(tok, 1879, &n);
	ck_assert_uint_eq(n, 6);
	ck_assert_mem_eq(b, " world", 6);
	b = tok_id_bytes(tok, 198, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(b[0], '\n');
	/* every single byte has a token, and its bytes are that byte */
	for (int c = 0; c < 256; c++) {
		char s[1] = { (char)c };
		tok_ids ids = { 0 };
		if (c < 0x80) {
			tok_encode(tok, s, 1, &ids);
			ck_assert_uint_eq(ids.n, 1);
			b = tok_id_bytes(tok, ids.v[0], &n);
			ck_assert_uint_eq(n, 1);
			ck_assert_int_eq((unsigned char)b[0], c);
		}
		tok_ids_deinit(&ids);
	}
	int32_t none[] = { -1, 151669, 151935, 1 << 30, INT32_MAX, INT32_MIN };
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		ck_assert_ptr_null(tok_id_bytes(tok, none[i], &n));
		ck_assert_ptr_null(tok_id_to_token(tok, none[i]));
		ck_assert(!tok_is_special(tok, none[i]));
		ck_assert(!tok_is_added(tok, none[i]));
	}
	/* unknown ids are skipped when decoding */
	int32_t ids[] = { 14990, -5, 999999, 1879 };
	char *s = tok_decode(tok, ids, 4, false, &n);
	ck_assert_str_eq(s, "hello world");
	free(s);
	s = tok_decode(tok, NULL, 0, true, &n);
	ck_assert_str_eq(s, "");
	ck_assert_uint_eq(n, 0);
	free(s);
}
END_TEST

/* ---- synthetic tokenizers ---- */

static const char qwen2_regex[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
	" ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* GPT-2's bytes_to_unicode, written out independently of tokenizer.c */
static void byte_char(int b, char out[4])
{
	int cp = b, n = 0;
	if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
		for (int x = 0; x < b; x++)
			if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
				n++;
		cp = 256 + n;
	}
	memset(out, 0, 4);
	utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
}

static json_object *jstr(const char *s)
{
	return json_object_new_string(s);
}

static json_object *added_token(int id, const char *content, bool special, bool normalized)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_int(id));
	json_object_object_add(o, "content", jstr(content));
	json_object_object_add(o, "single_word", json_object_new_boolean(0));
	json_object_object_add(o, "lstrip", json_object_new_boolean(0));
	json_object_object_add(o, "rstrip", json_object_new_boolean(0));
	json_object_object_add(o, "normalized", json_object_new_boolean(normalized));
	json_object_object_add(o, "special", json_object_new_boolean(special));
	return o;
}

/* The synthetic tokenizer.json (see the file comment). */
static json_object *synth_json(bool string_merges)
{
	json_object *root = json_object_new_object();
	json_object_object_add(root, "version", jstr("1.0"));
	json_object_object_add(root, "truncation", NULL);
	json_object_object_add(root, "padding", NULL);
	json_object_object_add(root, "added_tokens", json_object_new_array());
	json_object *nf = json_object_new_object();
	json_object_object_add(nf, "type", jstr("NFC"));
	json_object_object_add(root, "normalizer", nf);
	json_object *split = json_object_new_object(), *pat = json_object_new_object();
	json_object_object_add(split, "type", jstr("Split"));
	json_object_object_add(pat, "Regex", jstr(qwen2_regex));
	json_object_object_add(split, "pattern", pat);
	json_object_object_add(split, "behavior", jstr("Isolated"));
	json_object_object_add(split, "invert", json_object_new_boolean(0));
	json_object *bl[3];
	for (int i = 0; i < 3; i++) {
		bl[i] = json_object_new_object();
		json_object_object_add(bl[i], "type", jstr("ByteLevel"));
		json_object_object_add(bl[i], "add_prefix_space", json_object_new_boolean(0));
		json_object_object_add(bl[i], "trim_offsets", json_object_new_boolean(0));
		json_object_object_add(bl[i], "use_regex", json_object_new_boolean(0));
	}
	json_object *pre = json_object_new_object(), *list = json_object_new_array();
	json_object_object_add(pre, "type", jstr("Sequence"));
	json_object_array_add(list, split);
	json_object_array_add(list, bl[0]);
	json_object_object_add(pre, "pretokenizers", list);
	json_object_object_add(root, "pre_tokenizer", pre);
	json_object_object_add(root, "post_processor", bl[1]);
	json_object_object_add(root, "decoder", bl[2]);

	json_object *model = json_object_new_object(), *vocab = json_object_new_object();
	json_object_object_add(model, "type", jstr("BPE"));
	json_object_object_add(model, "dropout", NULL);
	json_object_object_add(model, "unk_token", NULL);
	json_object_object_add(model, "continuing_subword_prefix", jstr(""));
	json_object_object_add(model, "end_of_word_suffix", jstr(""));
	json_object_object_add(model, "fuse_unk", json_object_new_boolean(0));
	json_object_object_add(model, "byte_fallback", json_object_new_boolean(0));
	json_object_object_add(model, "ignore_merges", json_object_new_boolean(0));
	for (int b = 0; b < 256; b++) {
		char c[4];
		byte_char(b, c);
		json_object_object_add(vocab, c, json_object_new_int(b));
	}
	static const char *const merges[][2] = {
		{ "h", "e" }, { "l", "l" }, { "he", "ll" }, { "hell", "o" }, { "\xc4\xa0", "w" },
	};
	json_object *ml = json_object_new_array();
	for (int i = 0; i < 5; i++) {
		char cat[16];
		snprintf(cat, sizeof(cat), "%s%s", merges[i][0], merges[i][1]);
		json_object_object_add(vocab, cat, json_object_new_int(256 + i));
		if (string_merges) {
			snprintf(cat, sizeof(cat), "%s %s", merges[i][0], merges[i][1]);
			json_object_array_add(ml, jstr(cat));
		} else {
			json_object *pair = json_object_new_array();
			json_object_array_add(pair, jstr(merges[i][0]));
			json_object_array_add(pair, jstr(merges[i][1]));
			json_object_array_add(ml, pair);
		}
	}
	json_object_object_add(vocab, "\xe2\x82\xac" "x", json_object_new_int(261));   /* €x */
	json_object_object_add(model, "vocab", vocab);
	json_object_object_add(model, "merges", ml);
	json_object_object_add(root, "model", model);
	return root;
}

/* Write j (consumed) to dir/name and load it: 0 and *out, or the error. */
static int synth_load(json_object *j, const char *dir, const char *name, char *path, size_t pathsz,
		      tokenizer **out, qerr *e)
{
	snprintf(path, pathsz, "%s/%s", dir, name);
	ck_assert_int_eq(json_object_to_file_ext(path, j, JSON_C_TO_STRING_PLAIN), 0);
	json_object_put(j);
	return tok_load(path, out, e);
}

static tokenizer *synth_ok(json_object *j, const char *dir)
{
	char path[1024];
	tokenizer *t;
	qerr e = { 0 };
	ck_assert_msg(synth_load(j, dir, "ok.json", path, sizeof(path), &t, &e) == 0, "%s", e.msg);
	return t;
}

static void assert_decodes(const tokenizer *t, const int32_t *ids, size_t n, bool skip, const char *want)
{
	size_t len;
	char *s = tok_decode(t, ids, n, skip, &len);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_str_eq(s, want);
	free(s);
}

START_TEST(test_tokenizer_added_tokens_leftmost_longest)
{
	char *dir = tu_mkdtemp("tok");
	json_object *j = synth_json(false);
	json_object *at = jsonx_member(j, "added_tokens");
	json_object_array_add(at, added_token(262, "<\xc4\xa0>", false, false));           /* <Ġ> */
	json_object_array_add(at, added_token(263, "<\xe2\x82\xac\xc4\xa0>", true, false)); /* <€Ġ> */
	json_object_array_add(at, added_token(264, "<s>", true, false));
	json_object_array_add(at, added_token(265, "<s>x", true, false));
	json_object_array_add(at, added_token(266, "s>x", true, false));
	tokenizer *t = synth_ok(j, dir);
	assert_encodes(t, "a<\xc4\xa0>b<\xe2\x82\xac\xc4\xa0>", 97, 262, 98, 263);
	assert_encodes(t, "<s<s>x<s>y", 60, 115, 265, 264, 121);
	assert_encodes(t, "<s>", 264);
	assert_encodes(t, "hello world", 259, 260, 111, 114, 108, 100);
	/* added tokens go through the ByteLevel decoder too: "<Ġ>" is "< >"; "<€Ġ>" is not all in
	 * the alphabet and stays as it is */
	int32_t ids[] = { 262, 263, 104, 264 };
	assert_decodes(t, ids, 4, false, "< ><\xe2\x82\xac\xc4\xa0>h<s>");
	assert_decodes(t, ids, 4, true, "< >h");
	int32_t cut[] = { 226, 130, 32, 172 };
	assert_decodes(t, cut, 2, false, "\xef\xbf\xbd");
	assert_decodes(t, cut, 4, false, "\xef\xbf\xbd \xef\xbf\xbd");
	ck_assert_int_eq(tok_vocab_size(t), 267);
	tok_free(t);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_tokenizer_added_tokens_in_vocab_and_normalized)
{
	char *dir = tu_mkdtemp("tok");
	json_object *j = synth_json(false);
	json_object *at = jsonx_member(j, "added_tokens");
	json_object_array_add(at, added_token(262, "<s>", true, false));
	json_object_array_add(at, added_token(261, "\xe2\x82\xac" "x", false, false));   /* €x, in the vocab */
	json_object_array_add(at, added_token(0, "\xc4\x80", false, false));             /* Ā = byte 0 */
	json_object_array_add(at, added_token(259, "hello", true, false));
	json_object_array_add(at, added_token(233, "\xc3\xa9", false, true));            /* é, normalized */
	tokenizer *t = synth_ok(j, dir);
	assert_encodes(t, "<s>x\xe2\x82\xac" "x\xc4\x80", 262, 120, 261, 0);
	assert_encodes(t, "hello world", 259, 260, 111, 114, 108, 100);
	/* e + U+0301 is é after NFC, and then the normalized added token */
	assert_encodes(t, "e\xcc\x81 \xc3\xa9", 233, 32, 233);
	int32_t ids[] = { 257, 259, 261 };
	assert_decodes(t, ids, 3, false, "llhello\xe2\x82\xac" "x");
	assert_decodes(t, ids, 3, true, "ll\xe2\x82\xac" "x");
	int32_t zero[] = { 0, 999, 104 };
	size_t len;
	char *s = tok_decode(t, zero, 3, false, &len);
	ck_assert_uint_eq(len, 2);
	ck_assert_int_eq(s[0], 0);
	ck_assert_int_eq(s[1], 'h');
	free(s);
	ck_assert(tok_is_special(t, 259));
	ck_assert(tok_is_added(t, 0) && !tok_is_special(t, 0));
	tok_free(t);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* ignore_merges: a piece that is a vocabulary token is that token, merges or not */
START_TEST(test_tokenizer_ignore_merges)
{
	char *dir = tu_mkdtemp("tok");
	for (int im = 0; im < 2; im++) {
		json_object *j = synth_json(false);
		json_object *model = jsonx_member(j, "model"), *vocab = jsonx_member(model, "vocab");
		json_object_object_add(vocab, "lo", json_object_new_int(262));
		json_object_object_add(vocab, "\xc4\xa0wor", json_object_new_int(263));   /* Ġwor */
		json_object_object_add(model, "ignore_merges", json_object_new_boolean(im));
		tokenizer *t = synth_ok(j, dir);
		if (im) {
			assert_encodes(t, "lo", 262);
			assert_encodes(t, " wor", 263);
		} else {
			assert_encodes(t, "lo", 108, 111);
			assert_encodes(t, " wor", 260, 111, 114);
		}
		assert_encodes(t, "lolo", 108, 111, 108, 111);
		assert_encodes(t, "hello", 259);
		tok_free(t);
	}
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_tokenizer_merge_formats_agree)
{
	char *dir = tu_mkdtemp("tok");
	tokenizer *pairs = synth_ok(synth_json(false), dir), *strs = synth_ok(synth_json(true), dir);
	static const char *in[] = { "hello world", "hellohello", "he ll o", " wwhello", "ollehhello\n" };
	for (size_t i = 0; i < 5; i++) {
		tok_ids a = { 0 }, b = { 0 };
		tok_encode(pairs, in[i], strlen(in[i]), &a);
		tok_encode(strs, in[i], strlen(in[i]), &b);
		assert_ids(&b, a.v, a.n, in[i], 0);
		tok_ids_deinit(&a);
		tok_ids_deinit(&b);
	}
	assert_encodes(strs, "hellohello", 259, 259);   /* h e l l o → he ll o → hell o → hello */
	tok_free(pairs);
	tok_free(strs);

	/* the real tokenizer.json with its merges rewritten as "a b" strings gives the same ids */
	json_object *real;
	qerr e = { 0 };
	ck_assert_msg(jsonx_parse_file(tok_path, (size_t)1 << 30, &real, &e) == 0, "%s", e.msg);
	json_object *merges = jsonx_member(jsonx_member(real, "model"), "merges");
	size_t nm = json_object_array_length(merges);
	ck_assert_uint_gt(nm, 150000);
	for (size_t i = 0; i < nm; i++) {
		json_object *m = json_object_array_get_idx(merges, i);
		ck_assert(json_object_is_type(m, json_type_array));
		char buf[512];
		snprintf(buf, sizeof(buf), "%s %s", json_object_get_string(json_object_array_get_idx(m, 0)),
			 json_object_get_string(json_object_array_get_idx(m, 1)));
		json_object_array_put_idx(merges, i, jstr(buf));
	}
	char path[1024];
	tokenizer *t;
	ck_assert_msg(synth_load(real, dir, "strings.json", path, sizeof(path), &t, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < ncorpus; i += 3) {
		tok_ids ids = { 0 };
		tok_encode(t, corpus[i].s, corpus[i].n, &ids);
		assert_ids(&ids, golden[i].v, golden[i].n, "corpus.jsonl (string merges)", i + 1);
		tok_ids_deinit(&ids);
	}
	tok_free(t);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* A broken or unsupported file: tok_load fails with code and a message naming the file. */
static void assert_refused(json_object *j, const char *dir, int code, const char *what, const char *why)
{
	char path[1024];
	tokenizer *t = (tokenizer *)1;
	qerr e = { 0 };
	int rc = synth_load(j, dir, "bad.json", path, sizeof(path), &t, &e);
	ck_assert_msg(rc == -code, "%s: rc %d (want %d), message: %s", why, rc, -code, e.msg);
	ck_assert_ptr_null(t);
	ck_assert_msg(strstr(e.msg, path) == e.msg, "%s: message does not start with the file: %s", why, e.msg);
	ck_assert_msg(strstr(e.msg, what) != NULL, "%s: message does not say \"%s\": %s", why, what, e.msg);
}

static json_object *model_of(json_object *j)
{
	return jsonx_member(j, "model");
}

START_TEST(test_tokenizer_bad_files_name_the_file)
{
	char *dir = tu_mkdtemp("tok");
	char path[1024];
	snprintf(path, sizeof(path), "%s/absent.json", dir);
	tokenizer *t = (tokenizer *)1;
	qerr e = { 0 };
	ck_assert_int_eq(tok_load(path, &t, &e), -QERR_MISSING);
	ck_assert_ptr_null(t);
	ck_assert_ptr_nonnull(strstr(e.msg, path));
	snprintf(path, sizeof(path), "%s/broken.json", dir);
	tu_write(path, "{\"model\": {", 11);
	ck_assert_int_eq(tok_load(path, &t, &e), -QERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(e.msg, path));
	tu_write(path, "[1, 2]", 6);
	ck_assert_int_eq(tok_load(path, &t, &e), -QERR_FORMAT);

	json_object *j = synth_json(false);
	json_object_object_del(j, "model");
	assert_refused(j, dir, QERR_MISSING, "model", "no model");

	j = synth_json(false);
	json_object_object_add(model_of(j), "type", jstr("WordPiece"));
	assert_refused(j, dir, QERR_UNSUPPORTED, "WordPiece", "not BPE");

	j = synth_json(false);
	json_object_object_del(model_of(j), "merges");
	assert_refused(j, dir, QERR_MISSING, "merges", "no merges");

	j = synth_json(false);
	json_object_object_del(model_of(j), "vocab");
	assert_refused(j, dir, QERR_MISSING, "vocab", "no vocab");

	j = synth_json(false);
	json_object_object_add(model_of(j), "vocab", json_object_new_array());
	assert_refused(j, dir, QERR_FORMAT, "vocab", "vocab not an object");

	j = synth_json(false);
	json_object_object_add(jsonx_member(model_of(j), "vocab"), "zz", jstr("7"));
	assert_refused(j, dir, QERR_FORMAT, "zz", "string id");

	j = synth_json(false);
	json_object_object_add(jsonx_member(model_of(j), "vocab"), "zz", json_object_new_int(7));
	assert_refused(j, dir, QERR_FORMAT, "id 7", "id used twice");

	/* malformed merges: one part, no space, a number, a part or a result not in the vocab */
	static const char *bad_merges[] = { "[\"h\"]", "\"he\"", "42", "[\"h\", \"zq\"]", "\"h zq\"", "[\"e\", \"h\"]",
					    "[\"h\", 7]" };
	for (size_t i = 0; i < sizeof(bad_merges) / sizeof(bad_merges[0]); i++) {
		j = synth_json(false);
		json_object_array_add(jsonx_member(model_of(j), "merges"), json_tokener_parse(bad_merges[i]));
		assert_refused(j, dir, QERR_FORMAT, "merges[5]", bad_merges[i]);
	}
	j = synth_json(false);
	json_object_object_add(model_of(j), "merges", json_object_new_object());
	assert_refused(j, dir, QERR_FORMAT, "merges", "merges not an array");

	j = synth_json(false);
	json_object_array_add(jsonx_member(j, "added_tokens"), added_token(300, "<s>", true, false));
	assert_refused(j, dir, QERR_INVALID, "id 262", "added token with the wrong id");

	j = synth_json(false);
	json_object *a = added_token(262, "<s>", true, false);
	json_object_object_add(a, "lstrip", json_object_new_boolean(1));
	json_object_array_add(jsonx_member(j, "added_tokens"), a);
	assert_refused(j, dir, QERR_UNSUPPORTED, "lstrip", "lstrip");

	j = synth_json(false);
	json_object_array_add(jsonx_member(j, "added_tokens"), added_token(262, "", true, false));
	assert_refused(j, dir, QERR_FORMAT, "added_tokens[0]", "empty added token");

	j = synth_json(false);
	json_object_object_add(jsonx_member(j, "normalizer"), "type", jstr("Lowercase"));
	assert_refused(j, dir, QERR_UNSUPPORTED, "normalizer", "normalizer");

	j = synth_json(false);
	json_object *split = json_object_array_get_idx(jsonx_member(jsonx_member(j, "pre_tokenizer"), "pretokenizers"), 0);
	json_object_object_add(jsonx_member(split, "pattern"), "Regex", jstr("\\s+"));
	assert_refused(j, dir, QERR_UNSUPPORTED, "Qwen2 regex", "other regex");

	j = synth_json(false);
	json_object_object_del(j, "decoder");
	assert_refused(j, dir, QERR_UNSUPPORTED, "decoder", "no decoder");

	j = synth_json(false);
	json_object_object_add(model_of(j), "dropout", json_object_new_double(0.1));
	assert_refused(j, dir, QERR_UNSUPPORTED, "dropout", "dropout");

	j = synth_json(false);
	json_object_object_add(model_of(j), "unk_token", jstr("<unk>"));
	assert_refused(j, dir, QERR_INVALID, "unk_token", "unk not in vocab");

	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* ---- BPE against a naive reference ---- */

/* tokenizers' rule, the slow obvious way: merge the leftmost pair of lowest rank until none. */
static size_t reference_bpe(const bpe *m, int32_t *ids, size_t n)
{
	for (;;) {
		size_t best = SIZE_MAX;
		uint32_t best_rank = UINT32_MAX, r;
		int32_t merged = -1, mg;
		for (size_t i = 0; i + 1 < n; i++)
			if (bpe_merge_of(m, ids[i], ids[i + 1], &r, &mg) && r < best_rank) {
				best = i;
				best_rank = r;
				merged = mg;
			}
		if (best == SIZE_MAX)
			return n;
		ids[best] = merged;
		memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof(*ids));
		n--;
	}
}

START_TEST(test_tokenizer_bpe_matches_reference)
{
	/* bytes 'a'..'d' and random merges over the tokens made so far; some pairs repeated later
	 * (the later rank wins), and the same merged token reachable two ways */
	int32_t byte_ids[256];
	for (int b = 0; b < 256; b++)
		byte_ids[b] = b;
	rng_state = 0x9e3779b97f4a7c15ull;
	bpe *m = bpe_new(byte_ids, -1, false, 16);
	int32_t tokens[2000];
	size_t ntok = 0;
	for (int c = 'a'; c <= 'd'; c++)
		tokens[ntok++] = c;
	int32_t next = 256;
	for (uint32_t rank = 0; rank < 1500; rank++) {
		int32_t a = tokens[rnd((uint32_t)ntok)], b = tokens[rnd((uint32_t)ntok)];
		uint32_t r;
		int32_t mg;
		if (bpe_merge_of(m, a, b, &r, &mg) && rnd(2))
			continue;
		bpe_add_merge(m, a, b, next, rank);
		tokens[ntok++] = next++;
	}
	uint32_t r;
	int32_t mg;
	bpe_add_merge(m, 'a', 'b', 9999, 5000);
	ck_assert(bpe_merge_of(m, 'a', 'b', &r, &mg) && r == 5000 && mg == 9999);
	ck_assert(!bpe_merge_of(m, 'a', 'z', &r, &mg));
	for (int round = 0; round < 3; round++) {   /* again from the cache, and after evictions */
		rng_state = 12345;
		for (int w = 0; w < 4000; w++) {
			size_t n = 1 + rnd(w % 10 == 0 ? 600 : 40);
			uint8_t word[600];
			int32_t ref[600];
			for (size_t i = 0; i < n; i++)
				ref[i] = word[i] = (uint8_t)('a' + rnd(4));
			size_t nref = reference_bpe(m, ref, n);
			tok_ids got = { 0 };
			bpe_encode(m, word, n, &got);
			assert_ids(&got, ref, nref, "random word", (size_t)w);
			tok_ids_deinit(&got);
		}
		/* many distinct short words: the cache evicts */
		for (int w = 0; w < 40000 && round == 1; w++) {
			uint8_t word[12];
			for (int i = 0; i < 12; i++)
				word[i] = (uint8_t)('a' + rnd(4));
			tok_ids got = { 0 };
			bpe_encode(m, word, 12, &got);
			tok_ids_deinit(&got);
		}
	}
	/* unknown bytes: dropped without unk, one unk per byte or per run with fuse_unk */
	byte_ids['x'] = -1;
	bpe *nounk = bpe_new(byte_ids, -1, false, 0), *unk = bpe_new(byte_ids, 7, false, 0),
	    *fuse = bpe_new(byte_ids, 7, true, 0);
	tok_ids a = { 0 }, b = { 0 }, c = { 0 };
	bpe_encode(nounk, (const uint8_t *)"axxb", 4, &a);
	bpe_encode(unk, (const uint8_t *)"axxb", 4, &b);
	bpe_encode(fuse, (const uint8_t *)"axxb", 4, &c);
	int32_t wa[] = { 'a', 'b' }, wb[] = { 'a', 7, 7, 'b' }, wc[] = { 'a', 7, 'b' };
	assert_ids(&a, wa, 2, "no unk", 0);
	assert_ids(&b, wb, 4, "unk", 0);
	assert_ids(&c, wc, 3, "fused unk", 0);
	tok_ids_deinit(&a);
	tok_ids_deinit(&b);
	tok_ids_deinit(&c);
	bpe_free(nounk);
	bpe_free(unk);
	bpe_free(fuse);
	bpe_free(m);
}
END_TEST

/* ---- invalid UTF-8 ---- */

START_TEST(test_tokenizer_invalid_utf8)
{
	static const struct { const char *in; size_t n; const char *out; size_t nout; } cases[] = {
#define C(in, out) { in, sizeof(in) - 1, out, sizeof(out) - 1 }
		C("a\x80" "b", "a\xef\xbf\xbd" "b"),
		C("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),   /* lone surrogate, CESU-8 */
		C("\xe2\x82", "\xef\xbf\xbd"),                                /* truncated: one subpart */
		C("\xe2\x82" "A", "\xef\xbf\xbd" "A"),
		C("\xf0\x9f\x98" "A", "\xef\xbf\xbd" "A"),
		C("\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"),                    /* overlong NUL */
		C("\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
		C("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
		C("\xf5\xff\xfe", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
		C("\x00\xc3\xa9\x00", "\x00\xc3\xa9\x00"),                     /* NULs are characters */
		C("", ""),
#undef C
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;
		char *s = utf8_lossy(cases[i].in, cases[i].n, &n);
		ck_assert_msg(n == cases[i].nout && memcmp(s, cases[i].out, n) == 0 && s[n] == 0, "case %zu", i);
		free(s);
	}
	/* a lone surrogate encodes as three U+FFFD (as tokenizers sees the repaired text), and NUL is
	 * an ordinary character */
	tok_ids ids = { 0 };
	tok_encode(tok, "\xed\xa0\x80", 3, &ids);
	size_t n;
	char *s = tok_decode(tok, ids.v, ids.n, false, &n);
	ck_assert_str_eq(s, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	tok_ids_deinit(&ids);
	tok_encode(tok, "a\0b", 3, &ids);
	s = tok_decode(tok, ids.v, ids.n, false, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(s, "a\0b", 3);
	free(s);
	tok_ids_deinit(&ids);
}
END_TEST

/* ---- 4 MB inputs on a small stack ---- */

struct huge_job {
	const char *s;
	size_t n;
	size_t nids;
	bool ok;
};

static void *huge_run(void *arg)
{
	struct huge_job *j = arg;
	tok_ids ids = { 0 };
	tok_encode(tok, j->s, j->n, &ids);
	size_t dn, nn;
	char *dec = tok_decode(tok, ids.v, ids.n, false, &dn);
	char *norm = tok_normalize(tok, j->s, j->n, &nn);
	j->ok = dn == nn && memcmp(dec, norm, nn) == 0;
	j->nids = ids.n;
	free(dec);
	free(norm);
	tok_ids_deinit(&ids);
	return NULL;
}

START_TEST(test_tokenizer_huge_inputs)
{
	const size_t big = (size_t)4 << 20;
	char *s = malloc(big + 16);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	/* far below 4 MB: stack use must not grow with the input */
	pthread_attr_setstacksize(&attr, 256 << 10);
	for (int kind = 0; kind < 6; kind++) {
		size_t n = 0;
		rng_state = 777;
		switch (kind) {
		case 0:   /* the corpus, over and over */
			for (size_t i = 0; n < big; i = (i + 1) % ncorpus) {
				size_t k = corpus[i].n < big - n ? corpus[i].n : big - n;
				memcpy(s + n, corpus[i].s, k);
				n += k;
			}
			break;
		case 1:   /* one word of 4 MB */
			memset(s, 'a', big);
			n = big;
			break;
		case 2:   /* random bytes, mostly invalid UTF-8 */
			for (; n < big; n++)
				s[n] = (char)rnd(256);
			break;
		case 3:   /* white space of several kinds */
			for (; n < big; n++)
				s[n] = " \t \n\r "[rnd(6)];
			break;
		case 4:   /* combining marks: all NFC work and one piece */
			for (; n + 2 <= big; n += 2)
				memcpy(s + n, n % 6 ? "\xcc\x81" : "\xcc\xa3", 2);
			break;
		default:   /* punctuation and NULs */
			for (; n < big; n++)
				s[n] = "!?.\0-="[rnd(6)];
			break;
		}
		struct huge_job j = { s, n, 0, false };
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, &attr, huge_run, &j), 0);
		pthread_join(th, NULL);
		ck_assert_msg(j.ok, "4 MB input %d does not round-trip", kind);
		ck_assert_uint_gt(j.nids, 0);
	}
	pthread_attr_destroy(&attr);
	free(s);
}
END_TEST

/* ---- concurrent use ---- */

static void *encode_corpus(void *arg)
{
	size_t *bad = arg, start = *bad;
	*bad = 0;
	for (size_t k = 0; k < ncorpus; k++) {
		size_t i = (k + start) % ncorpus;   /* each thread in another order */
		tok_ids ids = { 0 };
		tok_encode(tok, corpus[i].s, corpus[i].n, &ids);
		if (ids.n != golden[i].n || (ids.n && memcmp(ids.v, golden[i].v, ids.n * sizeof(int32_t)) != 0))
			(*bad)++;
		tok_ids_deinit(&ids);
	}
	return NULL;
}

START_TEST(test_tokenizer_concurrent_encode)
{
	enum { N = 4 };
	pthread_t th[N];
	size_t bad[N];
	for (int i = 0; i < N; i++) {
		bad[i] = (size_t)i * ncorpus / N;
		ck_assert_int_eq(pthread_create(&th[i], NULL, encode_corpus, &bad[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(bad[i] == 0, "thread %d: %zu corpus lines differ", i, bad[i]);
	}
}
END_TEST

/* ---- the pre-tokenizer against PCRE2 ---- */

/* The Qwen2 regex for PCRE2, with \s spelled out as Oniguruma's White_Space (PCRE2's own \s also
 * matches U+180E). PCRE2 10.42 has Unicode 14, so code points whose L/N class differs from the
 * table (letters new in 15.0/16.0) are left out of the inputs. */
#define WS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
static const char pcre2_qwen2[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|"
	"[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static pcre2_code *compile(const char *pat)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
	ck_assert_msg(re != NULL, "pcre2_compile error %d at %zu", err, (size_t)off);
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* optional: the interpreter gives the same */
	return re;
}

static unsigned pcre2_class(pcre2_code *const cls[3], pcre2_match_data *md, uint32_t cp)
{
	uint8_t u[4];
	utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)cp, u);
	static const unsigned map[3] = { PRETOK_LETTER, PRETOK_NUMBER, PRETOK_SPACE };
	for (int i = 0; i < 3; i++)
		if (pcre2_match(cls[i], u, (size_t)k, 0, 0, md, NULL) >= 0)
			return map[i];
	return PRETOK_OTHER;
}

/* Compare the pieces of s[0..n) (valid UTF-8); returns false if they differ. */
static bool same_pieces(const pretok *p, pcre2_code *re, pcre2_match_data *md, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		int rc = pcre2_match(re, (PCRE2_SPTR)s, n, i, PCRE2_NO_UTF_CHECK, md, NULL);
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t e = pretok_piece_end(p, s, n, i);
		if (rc < 0 || ov[0] != i || ov[1] != e) {
			fprintf(stderr, "pieces differ at byte %zu of \"%.*s\": pcre2 [%zu, %zu), pretok [%zu, %zu)\n", i,
				(int)n, s, rc < 0 ? 0 : (size_t)ov[0], rc < 0 ? 0 : (size_t)ov[1], i, e);
			return false;
		}
		i = e;
	}
	return true;
}

START_TEST(test_tokenizer_split_matches_pcre2)
{
	pretok *p = pretok_new();
	pcre2_code *re = compile(pcre2_qwen2);
	pcre2_code *cls[3] = { compile("^\\p{L}$"), compile("^\\p{N}$"), compile("^[" WS "]$") };
	pcre2_match_data *md = pcre2_match_data_create(8, NULL);

	/* the alphabet: ASCII, the regex's tricky characters, and random code points, keeping only
	 * those whose class PCRE2 and the table agree on */
	static const uint32_t tricky[] = { 0xe9, 0xdf, 0x17f, 0x212a, 0x2019, 0x301, 0x308, 0x345, 0x2167, 0xbd,
		0x661, 0x966, 0x4e2d, 0xd55c, 0x3042, 0x30a2, 0x30fc, 0x3005, 0x42f, 0x3b1, 0x627, 0x5e9, 0xe01,
		0xe31, 0x1f600, 0x1f3fd, 0x200d, 0xfe0f, 0x180e, 0x200b, 0x85, 0xa0, 0x1680, 0x2000, 0x2028,
		0x2029, 0x3000, 0xfeff, 0x1c89, 0x10ffff, 0xe0041, 0xb, 0xc, 0x1c, 0x1f };
	uint32_t pool[700];
	size_t np = 0, dropped = 0;
	for (uint32_t c = 0; c < 0x80; c++)
		pool[np++] = c;
	rng_state = 4242;
	for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]) + 400; i++) {
		uint32_t c = i < sizeof(tricky) / sizeof(tricky[0]) ? tricky[i] : rnd(0x110000);
		if (c >= 0xd800 && c < 0xe000)
			continue;
		if (pcre2_class(cls, md, c) != (pretok_flags(p, c) & PRETOK_CLASS_MASK)) {
			dropped++;
			continue;
		}
		pool[np++] = c;
	}
	ck_assert_uint_lt(dropped, 40);   /* 0x180e, 0x1c89 and a few new letters */
	static const char hot[] = " \n\r\t'sStTlLeErRvVmMdD!.";
	char s[256];
	for (int k = 0; k < 30000; k++) {
		size_t n = 0, len = 1 + rnd(24);
		for (size_t i = 0; i < len; i++) {
			uint32_t c = rnd(10) < 4 ? (uint32_t)hot[rnd(sizeof(hot) - 1)] : pool[rnd((uint32_t)np)];
			n += (size_t)utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)s + n);
		}
		ck_assert_msg(same_pieces(p, re, md, s, n), "random string %d", k);
	}
	/* and the (normalised) corpus, where PCRE2 knows every character */
	size_t compared = 0;
	for (size_t i = 0; i < ncorpus; i++) {
		size_t nn;
		char *norm = tok_normalize(tok, corpus[i].s, corpus[i].n, &nn);
		bool agree = true;
		for (size_t b = 0; b < nn && agree;) {
			utf8proc_int32_t cp;
			utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)norm + b, (utf8proc_ssize_t)(nn - b), &cp);
			agree = pcre2_class(cls, md, (uint32_t)cp) == (pretok_flags(p, (uint32_t)cp) & PRETOK_CLASS_MASK);
			b += (size_t)k;
		}
		if (agree) {
			ck_assert_msg(same_pieces(p, re, md, norm, nn), "corpus line %zu", i + 1);
			compared++;
		}
		free(norm);
	}
	ck_assert_uint_gt(compared, 2000);
	pcre2_match_data_free(md);
	for (int i = 0; i < 3; i++)
		pcre2_code_free(cls[i]);
	pcre2_code_free(re);
	pretok_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tokenizer");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 600);
	tcase_add_unchecked_fixture(tc, load_fixture, unload_fixture);
	tcase_add_test(tc, test_tokenizer_corpus_matches_golden);
	tcase_add_test(tc, test_tokenizer_byte_strings_match_golden);
	tcase_add_test(tc, test_tokenizer_decode_matches_golden);
	tcase_add_test(tc, test_tokenizer_round_trip);
	tcase_add_test(tc, test_tokenizer_nfc);
	tcase_add_test(tc, test_tokenizer_unicode_classes);
	tcase_add_test(tc, test_tokenizer_added_tokens);
	tcase_add_test(tc, test_tokenizer_token_queries);
	tcase_add_test(tc, test_tokenizer_added_tokens_leftmost_longest);
	tcase_add_test(tc, test_tokenizer_added_tokens_in_vocab_and_normalized);
	tcase_add_test(tc, test_tokenizer_ignore_merges);
	tcase_add_test(tc, test_tokenizer_merge_formats_agree);
	tcase_add_test(tc, test_tokenizer_bad_files_name_the_file);
	tcase_add_test(tc, test_tokenizer_bpe_matches_reference);
	tcase_add_test(tc, test_tokenizer_invalid_utf8);
	tcase_add_test(tc, test_tokenizer_huge_inputs);
	tcase_add_test(tc, test_tokenizer_concurrent_encode);
	tcase_add_test(tc, test_tokenizer_split_matches_pcre2);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
