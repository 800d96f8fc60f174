/*
 * check_json_guide: the recognizer of guided JSON decoding against json-c's parser.
 *
 * Valid objects are accepted byte by byte and end done; invalid texts are refused at the byte
 * where they stop being a prefix of an object; and from thousands of random valid prefixes
 * (random walks over the bytes the guide allows) the closing sequence always completes a text
 * that json-c parses as an object.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "json_guide.h"
#include "rng.h"
#include "testutil.h"

/* Feed s; returns the index of the first refused byte, or -1. */
static long refused_at(const char *s)
{
	json_guide g;
	json_guide_init(&g);
	for (size_t i = 0; s[i]; i++)
		if (!json_guide_step(&g, (uint8_t)s[i]))
			return (long)i;
	return -1;
}

static void assert_object(const char *s)
{
	json_guide g;
	json_guide_init(&g);
	ck_assert_msg(json_guide_feed(&g, s, strlen(s)), "refused: %s", s);
	ck_assert_msg(json_guide_done(&g), "not done: %s", s);
	json_object *o = json_tokener_parse(s);
	ck_assert_msg(o && json_object_is_type(o, json_type_object), "json-c disagrees: %s", s);
	json_object_put(o);
}

START_TEST(test_json_guide_accepts_objects)
{
	assert_object("{}");
	assert_object("  {\"a\": 1}");
	assert_object("{\"a\":[1,2.5,-3e+2,0,0.0e-1,true,false,null,\"x\"],\"b\":{\"c\":{}}}\n");
	assert_object("{\"s\": \"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9\\uD83D\"}");
	assert_object("{\"k\" : [ [], [ {} ] , \"\\u0000\" ] }");
	assert_object("{\"utf8\": \"h\xc3\xa9llo \xf0\x9f\x9a\x80\"}");
}
END_TEST

START_TEST(test_json_guide_refuses_at_the_right_byte)
{
	ck_assert_int_eq(refused_at("[1]"), 0);           /* the top level is an object */
	ck_assert_int_eq(refused_at("\"x\""), 0);
	ck_assert_int_eq(refused_at("{a}"), 1);           /* keys are strings */
	ck_assert_int_eq(refused_at("{\"a\" 1}"), 5);
	ck_assert_int_eq(refused_at("{\"a\":01}"), 6);    /* no leading zeros */
	ck_assert_int_eq(refused_at("{\"a\":1.}"), 7);
	ck_assert_int_eq(refused_at("{\"a\":-}"), 6);
	ck_assert_int_eq(refused_at("{\"a\":tru}"), 8);
	ck_assert_int_eq(refused_at("{\"a\":[1,]}"), 8);
	ck_assert_int_eq(refused_at("{\"a\":1,}"), 7);
	ck_assert_int_eq(refused_at("{\"a\":\"\\x\"}"), 7); /* bad escape */
	ck_assert_int_eq(refused_at("{\"a\":\"\\u12g4\"}"), 10);
	ck_assert_int_eq(refused_at("{\"a\":\"tab\there\"}"), 9); /* control characters */
	ck_assert_int_eq(refused_at("{\"a\":1]"), 6);
	ck_assert_int_eq(refused_at("{} {}"), 3);          /* one object only */
	ck_assert_int_eq(refused_at("{\"a\":1e}"), 7);
}
END_TEST

START_TEST(test_json_guide_depth_limit)
{
	json_guide g;
	json_guide_init(&g);
	ck_assert(json_guide_step(&g, '{'));
	ck_assert(json_guide_feed(&g, "\"a\":", 4));
	for (int i = 1; i < JSON_GUIDE_MAX_DEPTH; i++)
		ck_assert(json_guide_step(&g, '['));
	ck_assert(!json_guide_step(&g, '['));           /* one level too deep */
	ck_assert(!json_guide_step(&g, '{'));
	char close[JSON_GUIDE_MAX_CLOSING];
	size_t n = json_guide_closing(&g, close);
	ck_assert(json_guide_feed(&g, close, n));
	ck_assert(json_guide_done(&g));
}
END_TEST

START_TEST(test_json_guide_closing_completes_random_prefixes)
{
	static const char alphabet[] = "{}[]:,\" \n-0123456789.eE+tfnrulsa\\/bu\xc3\xa9xyz";
	for (uint64_t round = 0; round < 3000; round++) {
		uint64_t key = rng_key(42, round);
		json_guide g;
		json_guide_init(&g);
		char text[2048];
		size_t n = 0;
		size_t len = (size_t)(rng_u64(key, 0) % 200);
		for (uint64_t k = 1; n < len && k < 100000; k++) {
			uint8_t c = (uint8_t)alphabet[rng_u64(key, k) % (sizeof(alphabet) - 1)];
			if (json_guide_step(&g, c))
				text[n++] = (char)c;
		}
		char close[JSON_GUIDE_MAX_CLOSING];
		size_t m = json_guide_closing(&g, close);
		ck_assert(n + m < sizeof(text));
		memcpy(text + n, close, m);
		text[n + m] = 0;
		assert_object(text);
		/* and the closing is minimal where it is forced: nothing after done */
		json_guide d;
		json_guide_init(&d);
		ck_assert(json_guide_feed(&d, text, n + m));
		char again[JSON_GUIDE_MAX_CLOSING];
		ck_assert_uint_eq(json_guide_closing(&d, again), 0);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("json_guide");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_json_guide_accepts_objects);
	tcase_add_test(tc, test_json_guide_refuses_at_the_right_byte);
	tcase_add_test(tc, test_json_guide_depth_limit);
	tcase_add_test(tc, test_json_guide_closing_completes_random_prefixes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(suite());
}
