/*
 * Tests of chat_template: every case of tests/data/chat/cases.jsonl rendered in C and compared
 * byte for byte with what Python Jinja2 renders (tests/data/chat/golden.jsonl, made by
 * tests/golden/make_chat_golden.py), including the declared differences; the template check on
 * temporary model directories; placeholder expansion; and chat_tojson against json.dumps.
 * Fixtures are found under $srcdir (default ".").
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "jsonx.h"
#include "testutil.h"

static char *src_path(const char *rel)
{
	const char *srcdir = getenv("srcdir");
	size_t n = strlen(rel) + (srcdir ? strlen(srcdir) : 1) + 2;
	char *p = malloc(n);
	snprintf(p, n, "%s/%s", srcdir && *srcdir ? srcdir : ".", rel);
	return p;
}

/* The lines of a JSON-lines fixture as one JSON array (the caller puts it). */
static json_object *load_jsonl(const char *rel)
{
	char *path = src_path(rel);
	size_t n;
	char *text = tu_read(path, &n);
	ck_assert_msg(text != NULL, "cannot read %s", path);
	json_object *arr = json_object_new_array();
	char *line = text, *end = text + n;
	size_t lineno = 0;
	while (line < end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
		lineno++;
		if (len > 0) {
			json_object *o;
			qerr e = {0};
			ck_assert_msg(jsonx_parse(line, len, path, &o, &e) == 0, "%s:%zu: %s", path, lineno, e.msg);
			json_object_array_add(arr, o);
		}
		line += len + 1;
	}
	free(text);
	free(path);
	return arr;
}

static const char *str_member(json_object *o, const char *key)
{
	json_object *v = jsonx_member(o, key);
	return v ? json_object_get_string(v) : NULL;
}

static size_t count_occurrences(const char *s, size_t n, const char *needle)
{
	size_t c = 0, nl = strlen(needle);
	const char *end = s + n, *hit;
	while ((hit = memmem(s, (size_t)(end - s), needle, nl))) {
		c++;
		s = hit + nl;
	}
	return c;
}

/* Print where two renderings part, with some context; false when they differ. */
static bool same_text(const char *name, const char *want, size_t wn, const char *got, size_t gn)
{
	if (wn == gn && memcmp(want, got, wn) == 0)
		return true;
	size_t i = 0;
	while (i < wn && i < gn && want[i] == got[i])
		i++;
	size_t from = i > 40 ? i - 40 : 0;
	fprintf(stderr, "case %s: differs at byte %zu (want %zu bytes, got %zu)\n  want: …%.*s…\n  got:  …%.*s…\n",
		name, i, wn, gn, (int)((wn < i + 40 ? wn : i + 40) - from), want + from,
		(int)((gn < i + 40 ? gn : i + 40) - from), got + from);
	return false;
}

/* One case: render in C, compare with the golden line. Returns true when it matches. */
static bool run_case(json_object *c, json_object *g)
{
	const char *name = str_member(c, "name");
	json_object *dev = jsonx_member(c, "c");
	const char *c_error = str_member(dev, "error");
	json_object *want = jsonx_member(g, "c_prompt");
	if (!want)
		want = jsonx_member(g, "prompt");
	if (dev) {
		/* a declared difference must be one: Jinja renders where C refuses, or raises where
		 * C renders */
		if ((c_error && !jsonx_member(g, "prompt")) || (!c_error && !jsonx_member(g, "error"))) {
			fprintf(stderr, "case %s: declared as a difference, but Jinja agrees\n", name);
			return false;
		}
	}
	chat_opts o = { .add_generation_prompt = json_object_get_boolean(jsonx_member(c, "add_generation_prompt")),
			.add_vision_id = json_object_get_boolean(jsonx_member(c, "add_vision_id")) };
	char *out = (char *)1;
	size_t len = 7;
	int ni = -1, nv = -1;
	qerr e = {0};
	int rc = chat_render(jsonx_member(c, "messages"), jsonx_member(c, "tools"), &o, &out, &len, &ni, &nv, &e);
	bool ok = true;
	if (c_error || !want) {
		if (rc == 0) {
			fprintf(stderr, "case %s: rendered, expected an error (Jinja: %s)\n", name,
				str_member(g, "error") ? str_member(g, "error") : "renders");
			ok = false;
		} else if (out != NULL || rc > 0 || e.code != -rc || !e.msg[0]) {
			fprintf(stderr, "case %s: bad error return rc=%d code=%d\n", name, rc, e.code);
			ok = false;
		} else if (c_error && !strstr(e.msg, c_error)) {
			fprintf(stderr, "case %s: message \"%s\" lacks \"%s\"\n", name, e.msg, c_error);
			ok = false;
		}
	} else if (rc != 0) {
		fprintf(stderr, "case %s: error %s\n", name, e.msg);
		ok = false;
	} else {
		const char *w = json_object_get_string(want);
		size_t wn = (size_t)json_object_get_string_len(want);
		ok = same_text(name, w, wn, out, len) && out[len] == 0;
		size_t wi = count_occurrences(w, wn, "<|vision_start|><|image_pad|><|vision_end|>");
		size_t wv = count_occurrences(w, wn, "<|vision_start|><|video_pad|><|vision_end|>");
		if (ni < 0 || nv < 0 || (size_t)ni != wi || (size_t)nv != wv) {
			fprintf(stderr, "case %s: counts %d images %d videos, expected %zu and %zu\n", name,
				ni, nv, wi, wv);
			ok = false;
		}
	}
	if (rc == 0)
		free(out);
	return ok;
}

START_TEST(test_chat_template_golden_cases)
{
	json_object *cases = load_jsonl("tests/data/chat/cases.jsonl");
	json_object *golden = load_jsonl("tests/data/chat/golden.jsonl");
	size_t n = json_object_array_length(cases);
	ck_assert_uint_ge(n, 40);
	ck_assert_msg(json_object_array_length(golden) == n,
		      "golden.jsonl has %zu lines for %zu cases: run tests/golden/make_chat_golden.py",
		      json_object_array_length(golden), n);
	size_t failed = 0;
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(cases, i);
		json_object *g = json_object_array_get_idx(golden, i);
		ck_assert_str_eq(str_member(c, "name"), str_member(g, "name"));
		if (!run_case(c, g))
			failed++;
	}
	json_object_put(cases);
	json_object_put(golden);
	ck_assert_msg(failed == 0, "%zu of %zu cases differ from Jinja (see stderr)", failed, n);
}
END_TEST

static json_object *parse(const char *text)
{
	json_object *o = NULL;
	qerr e = {0};
	ck_assert_msg(jsonx_parse(text, strlen(text), "test", &o, &e) == 0, "%s", e.msg);
	return o;
}

/* Render a messages array given as JSON text; returns the prompt (caller frees) or NULL with
 * the error in *e. */
static char *render_text(const char *messages, const char *tools, bool agp, bool vid, qerr *e)
{
	json_object *m = parse(messages);
	json_object *t = tools ? parse(tools) : NULL;
	chat_opts o = { .add_generation_prompt = agp, .add_vision_id = vid };
	char *out = NULL;
	size_t len;
	int rc = chat_render(m, t, &o, &out, &len, NULL, NULL, e);
	json_object_put(m);
	json_object_put(t);
	if (rc)
		ck_assert_ptr_null(out);
	else
		ck_assert_uint_eq(strlen(out), len);
	return out;
}

/* The rendered strings of the spec (qwen3-vl.md §9.2), independent of the golden file. */
START_TEST(test_chat_template_spec_examples)
{
	static const struct { const char *messages; bool vid; const char *want; } ex[] = {
		{ "[{\"role\":\"user\",\"content\":[{\"type\":\"image\"},{\"type\":\"text\",\"text\":\"Describe this image.\"}]}]", false,
		  "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n<|im_start|>assistant\n" },
		{ "[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},{\"role\":\"user\",\"content\":\"What is 2+2?\"},"
		  "{\"role\":\"assistant\",\"content\":\"2+2 equals 4.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"And this one?\"},{\"type\":\"image\"}]}]", false,
		  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n2+2 equals 4.<|im_end|>\n<|im_start|>user\nAnd this one?<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n" },
		{ "[{\"role\":\"user\",\"content\":[{\"type\":\"image\"},{\"type\":\"image\"},{\"type\":\"text\",\"text\":\"Compare.\"}]}]", true,
		  "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>Picture 2: <|vision_start|><|image_pad|><|vision_end|>Compare.<|im_end|>\n<|im_start|>assistant\n" },
		{ "[{\"role\":\"user\",\"content\":[{\"type\":\"video\"},{\"type\":\"text\",\"text\":\"What happens?\"}]}]", false,
		  "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What happens?<|im_end|>\n<|im_start|>assistant\n" },
	};
	for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
		qerr e = {0};
		char *out = render_text(ex[i].messages, NULL, true, ex[i].vid, &e);
		ck_assert_msg(out != NULL, "%s", e.msg);
		ck_assert_str_eq(out, ex[i].want);
		free(out);
	}
}
END_TEST

START_TEST(test_chat_template_counts_and_defaults)
{
	json_object *m = parse("[{\"role\":\"user\",\"content\":[{\"type\":\"image\"},{\"video\":\"v\"},{\"image_url\":{}},{\"text\":\"x\"}]},"
			       "{\"role\":\"assistant\",\"content\":[{\"type\":\"image\"},{\"text\":\"y\"}]}]");
	char *out;
	size_t len;
	int ni = -1, nv = -1;
	qerr e = {0};
	/* NULL options: no generation prompt, no vision ids; image parts of assistant messages are
	 * not rendered, so not counted */
	ck_assert_int_eq(chat_render(m, NULL, NULL, &out, &len, &ni, &nv, &e), 0);
	ck_assert_int_eq(ni, 2);
	ck_assert_int_eq(nv, 1);
	ck_assert_str_eq(out, "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|video_pad|><|vision_end|>"
			      "<|vision_start|><|image_pad|><|vision_end|>x<|im_end|>\n<|im_start|>assistant\ny<|im_end|>\n");
	free(out);
	/* counts and len are optional */
	ck_assert_int_eq(chat_render(m, NULL, NULL, &out, NULL, NULL, NULL, &e), 0);
	free(out);
	json_object_put(m);
}
END_TEST

START_TEST(test_chat_template_errors_name_the_field)
{
	static const struct { const char *messages; const char *tools; int code; const char *msg; } bad[] = {
		{ "{\"role\":\"user\"}", NULL, QERR_FORMAT, "messages: expected an array, got object" },
		{ "[]", NULL, QERR_INVALID, "messages: empty" },
		{ "[{\"role\":\"user\",\"content\":\"x\"}]", "{\"a\":1}", QERR_FORMAT, "tools: expected an array or null, got object" },
		{ "[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\",\"content\":7}]", NULL, QERR_FORMAT,
		  "messages[1].content: expected a string, an array of parts or null, got int" },
		{ "[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\",\"content\":[{\"text\":\"a\"},{\"type\":\"text\",\"text\":null}]}]", NULL,
		  QERR_FORMAT, "messages[1].content[1].text: expected a string, got null" },
		{ "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":{\"a\":1}}]", NULL, QERR_FORMAT,
		  "messages[0].tool_calls: expected an array, got object" },
		{ "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}},3]}]", NULL,
		  QERR_FORMAT, "messages[0].tool_calls[1]: expected an object, got int" },
		{ "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":[1]}]}]", NULL, QERR_FORMAT,
		  "messages[0].tool_calls[0].function: expected an object, got array" },
		{ "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]", NULL, QERR_FORMAT,
		  "messages[0].tool_calls[0].function.arguments: missing" },
		{ "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"name\":[\"f\"],\"arguments\":{}}]}]", NULL, QERR_FORMAT,
		  "messages[0].tool_calls[0].name: expected a string, got array" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		qerr e = {0};
		char *out = render_text(bad[i].messages, bad[i].tools, true, false, &e);
		ck_assert_ptr_null(out);
		ck_assert_int_eq(e.code, bad[i].code);
		ck_assert_msg(strstr(e.msg, bad[i].msg) == e.msg, "case %zu: \"%s\" does not start with \"%s\"", i, e.msg, bad[i].msg);
	}
	/* NULL messages is refused, not dereferenced */
	char *out;
	qerr e = {0};
	ck_assert_int_eq(chat_render(NULL, NULL, NULL, &out, NULL, NULL, NULL, &e), -QERR_FORMAT);
	ck_assert_ptr_null(out);
	/* a dropped message is not looked into (Jinja never evaluates it) */
	out = render_text("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"system\",\"content\":7},{\"role\":\"other\",\"content\":[null]}]",
			  NULL, false, false, &e);
	ck_assert_str_eq(out, "<|im_start|>user\nx<|im_end|>\n");
	free(out);
}
END_TEST

/* ---- chat_template_check ---------------------------------------------------------------- */

static char *real_template(size_t *n)
{
	char *path = src_path("inference/data/qwen3-vl/chat_template.jinja");
	char *t = tu_read(path, n);
	ck_assert_msg(t != NULL, "cannot read %s", path);
	free(path);
	return t;
}

static void put_file(const char *dir, const char *name, const void *data, size_t n)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	tu_write(path, data, n);
}

static void put_str(const char *dir, const char *name, const char *text)
{
	put_file(dir, name, text, strlen(text));
}

/* A JSON file {"chat_template": <text>} (or the list form with a "default" entry). */
static void put_template_json(const char *dir, const char *name, const char *text, size_t n, bool list)
{
	json_object *doc = json_object_new_object();
	json_object *t = json_object_new_string_len(text, (int)n);
	if (list) {
		json_object *arr = json_object_new_array(), *tool = json_object_new_object(), *def = json_object_new_object();
		json_object_object_add(tool, "name", json_object_new_string("tool_use"));
		json_object_object_add(tool, "template", json_object_new_string("{{ x }}"));
		json_object_object_add(def, "name", json_object_new_string("default"));
		json_object_object_add(def, "template", t);
		json_object_array_add(arr, tool);
		json_object_array_add(arr, def);
		t = arr;
	}
	json_object_object_add(doc, "model_max_length", json_object_new_int(262144));
	json_object_object_add(doc, "chat_template", t);
	const char *s = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
	put_file(dir, name, s, strlen(s));
	json_object_put(doc);
}

START_TEST(test_chat_template_check_real_template)
{
	size_t n;
	char *t = real_template(&n);
	char *dir = tu_mkdtemp("chat");
	put_file(dir, "chat_template.jinja", t, n);
	qerr e = {0};
	ck_assert_msg(chat_template_check(dir, &e) == 0, "%s", e.msg);
	tu_rmdir(dir);
	free(dir);
	/* in chat_template.json, and in the list form of tokenizer_config.json */
	dir = tu_mkdtemp("chat");
	put_template_json(dir, "chat_template.json", t, n, false);
	ck_assert_msg(chat_template_check(dir, &e) == 0, "%s", e.msg);
	tu_rmdir(dir);
	free(dir);
	dir = tu_mkdtemp("chat");
	put_template_json(dir, "tokenizer_config.json", t, n, true);
	ck_assert_msg(chat_template_check(dir, &e) == 0, "%s", e.msg);
	tu_rmdir(dir);
	free(dir);
	free(t);
}
END_TEST

START_TEST(test_chat_template_check_modified_template)
{
	size_t n;
	char *t = real_template(&n);
	char *dir = tu_mkdtemp("chat");
	/* one byte changed: a trailing space on the last line */
	t[n - 1] = ' ';
	put_file(dir, "chat_template.jinja", t, n);
	qerr e = {0};
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_UNSUPPORTED);
	ck_assert_int_eq(e.code, QERR_UNSUPPORTED);
	ck_assert_msg(strstr(e.msg, "is not the Qwen3-VL template") != NULL, "%s", e.msg);
	ck_assert_msg(strstr(e.msg, "chat_template.jinja") != NULL, "%s", e.msg);
	/* the first file that has a template decides: a real one further down does not help */
	char *cfg_path = src_path("inference/data/qwen3-vl/tokenizer_config.json");
	size_t cn;
	char *cfg = tu_read(cfg_path, &cn);
	ck_assert_ptr_nonnull(cfg);
	put_file(dir, "tokenizer_config.json", cfg, cn);
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_UNSUPPORTED);
	tu_rmdir(dir);
	free(dir);
	/* a modified template in chat_template.json */
	dir = tu_mkdtemp("chat");
	put_template_json(dir, "chat_template.json", t, n, false);
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_UNSUPPORTED);
	ck_assert_msg(strstr(e.msg, "chat_template.json: chat template sha256") != NULL, "%s", e.msg);
	tu_rmdir(dir);
	free(dir);
	free(cfg);
	free(cfg_path);
	free(t);
}
END_TEST

START_TEST(test_chat_template_check_tokenizer_config_only)
{
	char *cfg_path = src_path("inference/data/qwen3-vl/tokenizer_config.json");
	size_t cn;
	char *cfg = tu_read(cfg_path, &cn);
	ck_assert_ptr_nonnull(cfg);
	char *dir = tu_mkdtemp("chat");
	put_file(dir, "tokenizer_config.json", cfg, cn);
	qerr e = {0};
	ck_assert_msg(chat_template_check(dir, &e) == 0, "%s", e.msg);
	/* a chat_template.json without the key is passed over */
	put_str(dir, "chat_template.json", "{}");
	ck_assert_msg(chat_template_check(dir, &e) == 0, "%s", e.msg);
	/* a broken one is an error, not passed over */
	put_str(dir, "chat_template.json", "{");
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_FORMAT);
	tu_rmdir(dir);
	free(dir);
	free(cfg);
	free(cfg_path);
}
END_TEST

START_TEST(test_chat_template_check_none)
{
	char *dir = tu_mkdtemp("chat");
	qerr e = {0};
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_MISSING);
	ck_assert_msg(strstr(e.msg, "no chat template") != NULL, "%s", e.msg);
	put_str(dir, "tokenizer_config.json", "{\"eos_token\": \"<|im_end|>\", \"chat_template\": null}");
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_MISSING);
	put_str(dir, "tokenizer_config.json", "{\"chat_template\": 5}");
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_FORMAT);
	put_str(dir, "tokenizer_config.json", "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}");
	ck_assert_int_eq(chat_template_check(dir, &e), -QERR_UNSUPPORTED);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* ---- chat_expand_pads ------------------------------------------------------------------- */

#define PAD "<|image_pad|>"
#define VIS(x) "<|vision_start|>" x "<|vision_end|>"

static char *expand(const char *prompt, const char *pad, const int64_t *counts, size_t n, int *rc, qerr *e)
{
	char *out = (char *)1;
	size_t len = 99;
	*rc = chat_expand_pads(prompt, strlen(prompt), pad, counts, n, &out, &len, e);
	if (*rc) {
		ck_assert_ptr_null(out);
		return NULL;
	}
	ck_assert_uint_eq(len, strlen(out));
	return out;
}

START_TEST(test_chat_template_expand_pads)
{
	int rc;
	qerr e = {0};
	/* no images */
	char *out = expand("<|im_start|>user\nhi<|im_end|>\n", PAD, NULL, 0, &rc, &e);
	ck_assert_str_eq(out, "<|im_start|>user\nhi<|im_end|>\n");
	free(out);
	/* one image of 4 tokens */
	int64_t one[] = { 4 };
	out = expand("a" VIS(PAD) "b", PAD, one, 1, &rc, &e);
	ck_assert_str_eq(out, "a" VIS(PAD PAD PAD PAD) "b");
	free(out);
	/* three images, the k-th pad gets counts[k]; video pads are left alone */
	int64_t three[] = { 1, 3, 2 };
	out = expand(VIS(PAD) "x" VIS("<|video_pad|>") VIS(PAD) VIS(PAD), PAD, three, 3, &rc, &e);
	ck_assert_str_eq(out, VIS(PAD) "x" VIS("<|video_pad|>") VIS(PAD PAD PAD) VIS(PAD PAD));
	free(out);
	int64_t two[] = { 2 };
	out = expand(VIS("<|video_pad|>"), "<|video_pad|>", two, 1, &rc, &e);
	ck_assert_str_eq(out, VIS("<|video_pad|><|video_pad|>"));
	free(out);
	/* placeholders and counts disagree, both ways */
	out = expand(VIS(PAD) VIS(PAD), PAD, three, 3, &rc, &e);
	ck_assert_int_eq(rc, -QERR_INVALID);
	ck_assert_msg(strstr(e.msg, "2 placeholders but 3 counts") != NULL, "%s", e.msg);
	out = expand(VIS(PAD) VIS(PAD), PAD, one, 1, &rc, &e);
	ck_assert_int_eq(rc, -QERR_INVALID);
	out = expand("no pads", PAD, one, 1, &rc, &e);
	ck_assert_int_eq(rc, -QERR_INVALID);
	/* counts below 1 and sizes past the limit */
	int64_t zero[] = { 0 }, huge[] = { INT64_MAX };
	out = expand(VIS(PAD), PAD, zero, 1, &rc, &e);
	ck_assert_int_eq(rc, -QERR_INVALID);
	out = expand(VIS(PAD), PAD, huge, 1, &rc, &e);
	ck_assert_int_eq(rc, -QERR_LIMIT);
	out = expand(VIS(PAD), "", one, 1, &rc, &e);
	ck_assert_int_eq(rc, -QERR_INVALID);
}
END_TEST

/* ---- chat_tojson -------------------------------------------------------------------------- */

static void tojson_is(json_object *v, const char *want)
{
	size_t len;
	char *s = chat_tojson(v, &len);
	ck_assert_str_eq(s, want);
	ck_assert_uint_eq(len, strlen(want));
	free(s);
}

/* tojson of a JSON text (as json-c reads it) */
static void assert_tojson_is(const char *text, const char *want)
{
	json_object *v = parse(text);
	tojson_is(v, want);
	json_object_put(v);
}

START_TEST(test_chat_template_tojson_escapes)
{
	/* json.dumps(s, ensure_ascii=False) */
	assert_tojson_is("\"a\\\"b\\\\c/d\"", "\"a\\\"b\\\\c/d\"");
	assert_tojson_is("\"\\n\\r\\t\\b\\f\"", "\"\\n\\r\\t\\b\\f\"");
	assert_tojson_is("\"\\u0000\\u0001\\u001b\\u001f \\u007f\"", "\"\\u0000\\u0001\\u001b\\u001f \x7f\"");
	assert_tojson_is("\"caf\\u00e9 \\u2028 \\ud83d\\ude00 日本\"", "\"café \xe2\x80\xa8 \xf0\x9f\x98\x80 日本\"");
	assert_tojson_is("\"\"", "\"\"");
	assert_tojson_is("{\"k\\n\\\"\": \"v\"}", "{\"k\\n\\\"\": \"v\"}");
	tojson_is(NULL, "null");
	assert_tojson_is("true", "true");
	assert_tojson_is("false", "false");
}
END_TEST

START_TEST(test_chat_template_tojson_numbers)
{
	/* json.dumps of ints and of floats (repr): shortest round-trip digits, exponent form when
	 * the decimal exponent is below -4 or at least 16 */
	static const char *const pairs[][2] = {
		{ "0", "0" }, { "-0", "0" }, { "7", "7" }, { "-3", "-3" },
		{ "9223372036854775807", "9223372036854775807" }, { "-9223372036854775808", "-9223372036854775808" },
		{ "18446744073709551615", "18446744073709551615" },
		{ "1.0", "1.0" }, { "1.50", "1.5" }, { "1e5", "100000.0" }, { "1E5", "100000.0" },
		{ "0.0", "0.0" }, { "-0.0", "-0.0" }, { "0.1", "0.1" }, { "0.30000000000000004", "0.30000000000000004" },
		{ "1e-5", "1e-05" }, { "1e-05", "1e-05" }, { "0.0001", "0.0001" }, { "0.00012", "0.00012" },
		{ "1.2e-5", "1.2e-05" }, { "1e16", "1e+16" }, { "1.5e16", "1.5e+16" }, { "1e15", "1000000000000000.0" },
		{ "9999999999999998.0", "9999999999999998.0" }, { "12345678901234567890", "12345678901234567890" },
		{ "123456789012345678901.0", "1.2345678901234568e+20" }, { "3.14159265358979", "3.14159265358979" },
		{ "5e-324", "5e-324" }, { "1.7976931348623157e308", "1.7976931348623157e+308" },
		{ "2.2250738585072014e-308", "2.2250738585072014e-308" }, { "1e22", "1e+22" }, { "1e23", "1e+23" },
		{ "9007199254740993.0", "9007199254740992.0" }, { "1e400", "Infinity" }, { "-1e400", "-Infinity" },
		{ "2.5e-5", "2.5e-05" }, { "100.0", "100.0" }, { "1e100", "1e+100" }, { "-1.25e-7", "-1.25e-07" },
	};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		assert_tojson_is(pairs[i][0], pairs[i][1]);
	/* powers of two, where the rounding interval is lopsided (repr from Python) */
	static const struct { double x; const char *want; } p2[] = {
		{ 0x1p-1022, "2.2250738585072014e-308" }, { 0x1p-1074, "5e-324" }, { 0x1p60, "1.152921504606847e+18" },
		{ 0x1p-20, "9.5367431640625e-07" }, { 0x1p1023, "8.98846567431158e+307" }, { 0x1p54, "1.8014398509481984e+16" },
		/* the nearest 16-digit decimal misses, the one above reads back */
		{ 0x1p544, "5.758609657015292e+163" }, { 0x1p-652, "5.351097043477547e-197" },
	};
	for (size_t i = 0; i < sizeof(p2) / sizeof(p2[0]); i++) {
		json_object *v = json_object_new_double(p2[i].x);
		tojson_is(v, p2[i].want);
		json_object_put(v);
	}
	json_object *v_nan = json_object_new_double(NAN);
	tojson_is(v_nan, "NaN");
	json_object_put(v_nan);
}
END_TEST

START_TEST(test_chat_template_tojson_nested)
{
	assert_tojson_is("{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
		       "\"properties\":{\"a\":{\"type\":\"number\",\"default\":1.0,\"enum\":[1,2.5,null,true]}},\"required\":[]}}}",
		       "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", "
		       "\"properties\": {\"a\": {\"type\": \"number\", \"default\": 1.0, \"enum\": [1, 2.5, null, true]}}, \"required\": []}}}");
	assert_tojson_is("[]", "[]");
	assert_tojson_is("{}", "{}");
	assert_tojson_is("[[[]],{\"\":{}}]", "[[[]], {\"\": {}}]");
	/* key order is insertion order; a repeated key keeps its first place and its last value */
	assert_tojson_is("{\"z\":1,\"a\":2,\"z\":3}", "{\"z\": 3, \"a\": 2}");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("chat_template");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_chat_template_golden_cases);
	tcase_add_test(tc, test_chat_template_spec_examples);
	tcase_add_test(tc, test_chat_template_counts_and_defaults);
	tcase_add_test(tc, test_chat_template_errors_name_the_field);
	tcase_add_test(tc, test_chat_template_check_real_template);
	tcase_add_test(tc, test_chat_template_check_modified_template);
	tcase_add_test(tc, test_chat_template_check_tokenizer_config_only);
	tcase_add_test(tc, test_chat_template_check_none);
	tcase_add_test(tc, test_chat_template_expand_pads);
	tcase_add_test(tc, test_chat_template_tojson_escapes);
	tcase_add_test(tc, test_chat_template_tojson_numbers);
	tcase_add_test(tc, test_chat_template_tojson_nested);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
