/*
 * Tests of the streaming detokenizer: streamed text equals one-shot decoding in any chunking,
 * characters split over tokens come out whole, stop strings are found across token boundaries
 * and are never streamed before being cut. Uses the real Qwen3 tokenizer and the tokenizer test
 * corpus (tests/data/tokenizer/corpus.jsonl).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detok.h"
#include "utf8.h"
#include "jsonx.h"
#include "tokenizer.h"
#include "testutil.h"

static tokenizer *tok;

static void load(void)
{
	const char *dd = getenv("QVL_DATADIR");
	char path[1024];
	snprintf(path, sizeof(path), "%s/qwen3-vl/tokenizer.json", dd && *dd ? dd : "share");
	qerr e = { 0 };
	ck_assert_msg(tok_load(path, &tok, &e) == 0, "%s", e.msg);
}

static void unload(void)
{
	tok_free(tok);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* Stream ids in random chunks; returns the concatenated output (heap). Checks on the way that
 * every release is whole UTF-8 and that the output so far is a prefix of the final text. */
static char *stream(const int32_t *ids, size_t n, const detok_opts *o, size_t *len, int *stop)
{
	detok *d;
	qerr e = { 0 };
	ck_assert_msg(detok_new(tok, o, &d, &e) == 0, "%s", e.msg);
	strbuf out = { 0 };
	size_t i = 0;
	while (i < n) {
		size_t k = 1 + rnd(4);
		if (k > n - i)
			k = n - i;
		size_t before = out.len;
		bool stopped = detok_push(d, ids + i, k, &out);
		/* each release ends on a character boundary */
		size_t m;
		const char *rel = strbuf_str(&out) + before;
		char *chunk = utf8_lossy(rel, out.len - before, &m);
		ck_assert_uint_eq(m, out.len - before);
		ck_assert_mem_eq(chunk, rel, m);
		free(chunk);
		i += k;
		if (stopped)
			break;
	}
	detok_finish(d, &out);
	size_t tl;
	const char *text = detok_text(d, &tl);
	ck_assert_uint_eq(tl, out.len);
	ck_assert_mem_eq(text, strbuf_str(&out), tl);
	*stop = detok_stop_index(d);
	detok_free(d);
	return strbuf_detach(&out, len);
}

START_TEST(test_detok_streaming_equals_one_shot_on_corpus)
{
	char path[1024];
	const char *srcdir = getenv("srcdir");
	snprintf(path, sizeof(path), "%s/tests/data/tokenizer/corpus.jsonl", srcdir ? srcdir : ".");
	size_t n;
	char *corpus = tu_read(path, &n);
	ck_assert_msg(corpus != NULL, "cannot read %s", path);
	int lines = 0;
	for (char *line = strtok(corpus, "\n"); line; line = strtok(NULL, "\n")) {
		json_object *s;
		qerr e = { 0 };
		ck_assert_int_eq(jsonx_parse(line, strlen(line), "corpus", &s, &e), 0);
		tok_ids ids = { 0 };
		tok_encode(tok, json_object_get_string(s), (size_t)json_object_get_string_len(s), &ids);
		for (int skip = 0; skip <= 1; skip++) {
			size_t want_len, got_len;
			char *want = tok_decode(tok, ids.v, ids.n, skip, &want_len);
			detok_opts o = { .skip_special_tokens = skip };
			int stop;
			char *got = stream(ids.v, ids.n, &o, &got_len, &stop);
			ck_assert_msg(got_len == want_len && !memcmp(got, want, want_len),
				      "corpus line %d (skip_special %d) streams differently", lines + 1, skip);
			ck_assert_int_eq(stop, -1);
			free(got);
			free(want);
		}
		tok_ids_deinit(&ids);
		json_object_put(s);
		lines++;
	}
	ck_assert_int_ge(lines, 2000);
	free(corpus);
}
END_TEST

START_TEST(test_detok_emoji_split_over_tokens_comes_out_whole)
{
	const char *s = "robot 🤖 done";
	tok_ids ids = { 0 };
	tok_encode(tok, s, strlen(s), &ids);
	detok_opts o = { .skip_special_tokens = true };
	detok *d;
	qerr e = { 0 };
	ck_assert_int_eq(detok_new(tok, &o, &d, &e), 0);
	strbuf out = { 0 };
	int partial_steps = 0;
	for (size_t i = 0; i < ids.n; i++) {
		size_t before = out.len;
		detok_push(d, &ids.v[i], 1, &out);
		size_t bl;
		tok_id_bytes(tok, ids.v[i], &bl);
		if (out.len == before && bl > 0)
			partial_steps++;   /* a token whose bytes are only part of a character */
		ck_assert(strstr(strbuf_str(&out), "\xf0\x9f") == NULL || strstr(strbuf_str(&out), "🤖"));
	}
	detok_finish(d, &out);
	ck_assert_str_eq(strbuf_str(&out), s);
	ck_assert_int_ge(partial_steps, 1);   /* the emoji really is split across tokens */
	strbuf_deinit(&out);
	detok_free(d);
	tok_ids_deinit(&ids);
}
END_TEST

START_TEST(test_detok_stop_strings_across_tokens)
{
	const char *s = "The answer is forty-two. Then more text follows here.";
	tok_ids ids = { 0 };
	tok_encode(tok, s, strlen(s), &ids);
	/* "forty-two. Then" spans several tokens */
	const char *stops[] = { "nowhere", "two. Th" };
	for (int include = 0; include <= 1; include++) {
		for (int round = 0; round < 20; round++) {
			detok_opts o = { .skip_special_tokens = true, .include_stop_str_in_output = include,
					 .stop = stops, .n_stop = 2 };
			size_t len;
			int stop;
			char *got = stream(ids.v, ids.n, &o, &len, &stop);
			ck_assert_int_eq(stop, 1);
			ck_assert_str_eq(got, include ? "The answer is forty-two. Th" : "The answer is forty-");
			free(got);
		}
	}
	/* list order decides between two stops, as in vLLM; min_tokens delays the check */
	const char *two[] = { "more", "answer" };
	detok_opts o = { .skip_special_tokens = true, .stop = two, .n_stop = 2 };
	size_t len;
	int stop;
	char *got = stream(ids.v, ids.n, &o, &len, &stop);
	ck_assert_int_eq(stop, 1);
	ck_assert_str_eq(got, "The ");
	free(got);
	o.min_tokens = (int64_t)ids.n - 3;
	got = stream(ids.v, ids.n, &o, &len, &stop);
	ck_assert_int_eq(stop, -1);   /* both stops were complete before min_tokens */
	ck_assert_str_eq(got, s);
	free(got);
	tok_ids_deinit(&ids);
}
END_TEST

START_TEST(test_detok_holds_back_a_possible_stop)
{
	const char *s = "abc END";
	tok_ids ids = { 0 };
	tok_encode(tok, s, strlen(s), &ids);
	const char *stops[] = { "ENDX" };
	detok_opts o = { .skip_special_tokens = true, .stop = stops, .n_stop = 1 };
	detok *d;
	qerr e = { 0 };
	ck_assert_int_eq(detok_new(tok, &o, &d, &e), 0);
	strbuf out = { 0 };
	ck_assert(!detok_push(d, ids.v, ids.n, &out));
	/* " END" might become "ENDX": the last 3 bytes are held until the end */
	ck_assert_str_eq(strbuf_str(&out), "abc ");
	detok_finish(d, &out);
	ck_assert_str_eq(strbuf_str(&out), s);
	strbuf_deinit(&out);
	detok_free(d);
	tok_ids_deinit(&ids);
}
END_TEST

START_TEST(test_detok_special_tokens_and_bad_bytes)
{
	int32_t im_end = tok_token_to_id(tok, "<|im_end|>");
	ck_assert_int_ge(im_end, 0);
	tok_ids ids = { 0 };
	tok_encode(tok, "hi", 2, &ids);
	tok_ids_push(&ids, im_end);
	for (int skip = 0; skip <= 1; skip++) {
		detok_opts o = { .skip_special_tokens = skip };
		size_t len;
		int stop;
		char *got = stream(ids.v, ids.n, &o, &len, &stop);
		ck_assert_str_eq(got, skip ? "hi" : "hi<|im_end|>");
		free(got);
	}
	tok_ids_deinit(&ids);
	/* a token that is only the first bytes of a character, then the end: U+FFFD */
	ids = (tok_ids){ 0 };
	tok_encode(tok, "🫠", 4, &ids);
	ck_assert_uint_ge(ids.n, 2);
	detok_opts o = { .skip_special_tokens = true };
	size_t len;
	int stop;
	char *got = stream(ids.v, 1, &o, &len, &stop);
	ck_assert_str_eq(got, UTF8_REPLACEMENT);
	free(got);
	tok_ids_deinit(&ids);
}
END_TEST

START_TEST(test_detok_rejects_bad_stop_lists)
{
	detok *d;
	qerr e = { 0 };
	const char *empty[] = { "ok", "" };
	detok_opts o = { .stop = empty, .n_stop = 2 };
	ck_assert_int_eq(detok_new(tok, &o, &d, &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "stop[1]: empty"));
	const char *many[DETOK_MAX_STOPS + 1];
	for (int i = 0; i <= DETOK_MAX_STOPS; i++)
		many[i] = "x";
	o = (detok_opts){ .stop = many, .n_stop = DETOK_MAX_STOPS + 1 };
	ck_assert_int_eq(detok_new(tok, &o, &d, &e), -QERR_INVALID);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("detok");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, load, unload);
	tcase_add_test(tc, test_detok_streaming_equals_one_shot_on_corpus);
	tcase_add_test(tc, test_detok_emoji_split_over_tokens_comes_out_whole);
	tcase_add_test(tc, test_detok_stop_strings_across_tokens);
	tcase_add_test(tc, test_detok_holds_back_a_possible_stop);
	tcase_add_test(tc, test_detok_special_tokens_and_bad_bytes);
	tcase_add_test(tc, test_detok_rejects_bad_stop_lists);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
