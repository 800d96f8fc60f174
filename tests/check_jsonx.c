/*
 * Tests of jsonx: parse errors that say where, and typed getters that tell absent from wrong.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonx.h"
#include "testutil.h"

static json_object *parse_ok(const char *text)
{
	json_object *o = NULL;
	qerr e = {0};
	ck_assert_int_eq(jsonx_parse(text, strlen(text), "t.json", &o, &e), 0);
	ck_assert_ptr_nonnull(o);
	return o;
}

START_TEST(test_jsonx_parse_errors_name_the_source)
{
	static const char *bad[] = { "{\"a\": 1", "{\"a\": }", "[1, 2] x", "", "nul" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_object *o = (json_object *)1;
		qerr e = {0};
		int rc = jsonx_parse(bad[i], strlen(bad[i]), "cfg.json", &o, &e);
		ck_assert_int_eq(rc, -QERR_FORMAT);
		ck_assert_ptr_null(o);
		ck_assert_msg(strstr(e.msg, "cfg.json: invalid JSON") == e.msg, "message: %s", e.msg);
	}
	json_object *o = parse_ok(" {\"a\": [1, 2]}\n ");
	json_object_put(o);
	/* a bare top-level number is complete at the end of input */
	o = parse_ok("7");
	ck_assert_int_eq(json_object_get_int(o), 7);
	json_object_put(o);
	/* the text null is JSON null, which json-c represents as NULL */
	qerr en = {0};
	o = (json_object *)1;
	ck_assert_int_eq(jsonx_parse("null", 4, "n", &o, &en), 0);
	ck_assert_ptr_null(o);
	/* standard JSON only */
	static const char *lax[] = { "{\"a\": 1,}", "[1, 2,]" };
	for (size_t i = 0; i < sizeof(lax) / sizeof(lax[0]); i++) {
		qerr e = {0};
		ck_assert_msg(jsonx_parse(lax[i], strlen(lax[i]), "x", &o, &e) == -QERR_FORMAT, "%s", lax[i]);
	}
}
END_TEST

START_TEST(test_jsonx_parse_refuses_deep_nesting)
{
	char buf[400];
	memset(buf, '[', 200);
	memset(buf + 200, ']', 200);
	json_object *o;
	qerr e = {0};
	ck_assert_int_eq(jsonx_parse(buf, sizeof(buf), "deep", &o, &e), -QERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(e.msg, "deep"));
}
END_TEST

START_TEST(test_jsonx_getters)
{
	json_object *o = parse_ok("{\"i\": 7, \"big\": 18446744073709551615, \"d\": 2.5, \"di\": 3.0,"
				  " \"b\": true, \"s\": \"x\", \"n\": null, \"o\": {}, \"a\": []}");
	qerr e = {0};
	int64_t i = -1;
	double d = 0;
	bool b = false;
	const char *s = NULL;
	json_object *sub = NULL;
	ck_assert_int_eq(jsonx_get_int(o, "i", 0, 10, &i, "f", &e), 0);
	ck_assert_int_eq(i, 7);
	ck_assert_int_eq(jsonx_get_int(o, "di", 0, 10, &i, "f", &e), 0);
	ck_assert_int_eq(i, 3);
	/* absent and null leave the default alone */
	i = 42;
	ck_assert_int_eq(jsonx_get_int(o, "missing", 0, 10, &i, "f", &e), 1);
	ck_assert_int_eq(jsonx_get_int(o, "n", 0, 10, &i, "f", &e), 1);
	ck_assert_int_eq(i, 42);
	/* out of range, non-integral, wrong type */
	ck_assert_int_eq(jsonx_get_int(o, "i", 0, 5, &i, "f", &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "f: i: 7 is not an integer in [0, 5]"));
	ck_assert_int_eq(jsonx_get_int(o, "d", 0, 5, &i, "f", &e), -QERR_INVALID);
	ck_assert_int_eq(jsonx_get_int(o, "big", 0, INT64_MAX - 1, &i, "f", &e), -QERR_INVALID);
	ck_assert_int_eq(jsonx_get_int(o, "s", 0, 5, &i, "f", &e), -QERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(e.msg, "expected an integer, got string"));
	ck_assert_int_eq(jsonx_get_double(o, "d", &d, "f", &e), 0);
	ck_assert(d == 2.5);
	ck_assert_int_eq(jsonx_get_double(o, "b", &d, "f", &e), -QERR_FORMAT);
	ck_assert_int_eq(jsonx_get_bool(o, "b", &b, "f", &e), 0);
	ck_assert(b);
	ck_assert_int_eq(jsonx_get_bool(o, "i", &b, "f", &e), -QERR_FORMAT);
	ck_assert_int_eq(jsonx_get_string(o, "s", &s, "f", &e), 0);
	ck_assert_str_eq(s, "x");
	ck_assert_int_eq(jsonx_get_string(o, "i", &s, "f", &e), -QERR_FORMAT);
	ck_assert_int_eq(jsonx_get_object(o, "o", &sub, "f", &e), 0);
	ck_assert_int_eq(jsonx_get_object(o, "a", &sub, "f", &e), -QERR_FORMAT);
	ck_assert_int_eq(jsonx_get_array(o, "a", &sub, "f", &e), 0);
	ck_assert_int_eq(jsonx_get_array(o, "o", &sub, "f", &e), -QERR_FORMAT);
	json_object_put(o);
}
END_TEST

START_TEST(test_jsonx_file_limits)
{
	char dir[] = "/tmp/check_jsonx.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/x.json", dir);
	json_object *o;
	qerr e = {0};
	ck_assert_int_eq(jsonx_parse_file(path, 100, &o, &e), -QERR_MISSING);
	ck_assert_ptr_nonnull(strstr(e.msg, "file not found"));
	FILE *f = fopen(path, "w");
	fputs("{\"k\": \"0123456789\"}", f);
	fclose(f);
	ck_assert_int_eq(jsonx_parse_file(path, 10, &o, &e), -QERR_LIMIT);
	ck_assert_ptr_nonnull(strstr(e.msg, "exceeds the limit"));
	ck_assert_int_eq(jsonx_parse_file(path, 100, &o, &e), 0);
	json_object_put(o);
	ck_assert_int_eq(jsonx_parse_file(dir, 100, &o, &e), -QERR_IO);
	unlink(path);
	rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("jsonx");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_jsonx_parse_errors_name_the_source);
	tcase_add_test(tc, test_jsonx_parse_refuses_deep_nesting);
	tcase_add_test(tc, test_jsonx_getters);
	tcase_add_test(tc, test_jsonx_file_limits);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
