/*
 * check_model_config: tests of inference/model_config.c.
 *
 * What: the published Qwen3-VL-2B config.json (every value against spec §1.2), the same in the
 * transformers v5 form, a dense Qwen3 config, the defaults transformers would apply, the
 * published generation_config.json and preprocessor_config.json (and their absence), and one
 * test per class of bad input, each asserting the return code, that the message starts with the
 * file name, and a distinctive part of the message (usually the field path).
 *
 * How: fixtures live in $srcdir/tests/data/configs/ (srcdir defaults to "."; run from the top
 * of the tree, as automake does). Bad inputs are made from a valid fixture by mutations
 * {dotted path, JSON value or DEL} applied with json-c, so each case names only what differs;
 * a few are whole inline strings.
 */
#include <check.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "jsonx.h"
#include "model_config.h"
#include "testutil.h"

#define VL "qwen3-vl-2b/config.json"
#define VL_V5 "qwen3-vl-2b-v5/config.json"
#define DENSE "qwen3-0.6b/config.json"
#define GEN "qwen3-vl-2b/generation_config.json"
#define PRE "qwen3-vl-2b/preprocessor_config.json"

/* ---- fixtures and mutations ---- */

static char *fixture_path(const char *rel)
{
	const char *srcdir = getenv("srcdir");
	return xasprintf("%s/tests/data/configs/%s", srcdir && *srcdir ? srcdir : ".", rel);
}

static char *fixture_text(const char *rel)
{
	char *path = fixture_path(rel), *text;
	size_t len;
	qerr e = { 0 };
	int rc = jsonx_read_file(path, 1 << 20, &text, &len, &e);
	ck_assert_msg(rc == 0, "%s", e.msg);
	free(path);
	return text;
}

/* One change to a fixture: the member at a dotted path set to a JSON value, or deleted. */
typedef struct mut {
	const char *path;
	const char *json; /* DEL: delete the member */
} mut;
#define DEL NULL

static void apply(json_object *root, const mut *m)
{
	char buf[256];
	char *key = buf, *dot;
	json_object *obj = root;
	snprintf(buf, sizeof(buf), "%s", m->path);
	while ((dot = strchr(key, '.'))) {
		*dot = 0;
		json_object *next = NULL;
		ck_assert_msg(json_object_object_get_ex(obj, key, &next) && next,
			      "fixture has no %s (in %s)", key, m->path);
		obj = next;
		key = dot + 1;
	}
	if (!m->json) {
		json_object_object_del(obj, key);
		return;
	}
	json_object *v = json_tokener_parse(m->json); /* NULL for "null" */
	ck_assert_msg(v || !strcmp(m->json, "null"), "bad test JSON %s", m->json);
	json_object_object_add(obj, key, v);
}

/* The fixture's text with the mutations m[] (ended by a NULL path) applied; caller frees. */
static char *mutated(const char *fixture, const mut *m)
{
	char *text = fixture_text(fixture);
	json_object *root = json_tokener_parse(text);
	free(text);
	ck_assert_ptr_nonnull(root);
	for (; m->path; m++)
		apply(root, m);
	char *out = xstrdup(json_object_to_json_string(root));
	json_object_put(root);
	return out;
}
#define MUT(fixture, ...) mutated(fixture, (const mut[]){ __VA_ARGS__, { NULL, NULL } })

static void load_2b(model_config *mc)
{
	char *path = fixture_path(VL);
	qerr e = { 0 };
	ck_assert_msg(model_config_load(path, mc, &e) == 0, "%s", e.msg);
	free(path);
}

static void assert_model_ok(const char *text, model_config *mc)
{
	qerr e = { 0 };
	int rc = model_config_parse(text, strlen(text), "config.json", mc, &e);
	ck_assert_msg(rc == 0, "rc %d: %s", rc, e.msg);
}

static void gen_ok(const char *text, generation_config *gc)
{
	model_config mc;
	qerr e = { 0 };
	load_2b(&mc);
	int rc = generation_config_parse(text, strlen(text), "generation_config.json", &mc, gc, &e);
	ck_assert_msg(rc == 0, "rc %d: %s", rc, e.msg);
}

static void pre_ok(const char *text, preprocessor_config *pc)
{
	qerr e = { 0 };
	int rc = preprocessor_config_parse(text, strlen(text), "preprocessor_config.json", pc, &e);
	ck_assert_msg(rc == 0, "rc %d: %s", rc, e.msg);
}

/* ---- expected errors ---- */

typedef enum which { W_MODEL, W_GEN, W_PRE } which;
static const char *const where_of[] = { "config.json", "generation_config.json",
					"preprocessor_config.json" };

/* Parse text as file kind w: the call must fail with code, a message that starts with the
 * file name and contains substr; the output must be untouched. */
static void assert_error_text(which w, const char *text, int code, const char *substr,
			      const char *label)
{
	model_config mc;
	generation_config gc, gc0;
	preprocessor_config pc, pc0;
	qerr e = { 0 };
	int rc = 0;
	bool untouched = false;
	const char *where = where_of[w];
	size_t len = strlen(text);
	switch (w) {
	case W_MODEL:
		memset(&mc, 0x5a, sizeof(mc));
		rc = model_config_parse(text, len, where, &mc, &e);
		untouched = mc.text.hidden_size == 0x5a5a5a5a;
		break;
	case W_GEN:
		load_2b(&mc);
		memset(&gc, 0x5a, sizeof(gc));
		memcpy(&gc0, &gc, sizeof(gc));
		rc = generation_config_parse(text, len, where, &mc, &gc, &e);
		untouched = !memcmp(&gc, &gc0, sizeof(gc));
		break;
	case W_PRE:
		memset(&pc, 0x5a, sizeof(pc));
		memcpy(&pc0, &pc, sizeof(pc));
		rc = preprocessor_config_parse(text, len, where, &pc, &e);
		untouched = !memcmp(&pc, &pc0, sizeof(pc));
		break;
	}
	ck_assert_msg(rc == -code, "%s: rc %d (%s), expected %d", label, rc, e.msg, -code);
	ck_assert_msg(untouched, "%s: output written on failure", label);
	ck_assert_int_eq(e.code, code);
	ck_assert_msg(!strncmp(e.msg, where, strlen(where)) && e.msg[strlen(where)] == ':',
		      "%s: message \"%s\" does not start with %s", label, e.msg, where);
	ck_assert_msg(strstr(e.msg, substr), "%s: message \"%s\" lacks \"%s\"", label, e.msg,
		      substr);
}

static void assert_error(which w, const char *fixture, int code, const char *substr,
			 const mut *m)
{
	char *text = mutated(fixture, m);
	char label[300];
	snprintf(label, sizeof(label), "%s %s=%s%s", fixture, m[0].path,
		 m[0].json ? m[0].json : "(deleted)", m[1].path ? " …" : "");
	assert_error_text(w, text, code, substr, label);
	free(text);
}
#define assert_err(w, fixture, code, substr, ...) \
	assert_error(w, fixture, code, substr, (const mut[]){ __VA_ARGS__, { NULL, NULL } })
#define assert_vl_err(code, substr, ...) assert_err(W_MODEL, VL, code, substr, __VA_ARGS__)
#define assert_gen_err(code, substr, ...) assert_err(W_GEN, GEN, code, substr, __VA_ARGS__)
#define assert_pre_err(code, substr, ...) assert_err(W_PRE, PRE, code, substr, __VA_ARGS__)

/* ---- config.json: accepted files ---- */

/* Every value of the published 2B config (spec §1.1, §1.2). */
static void assert_2b(const model_config *mc)
{
	const text_config *t = &mc->text;
	const vision_config *v = &mc->vision;
	ck_assert_int_eq(mc->arch, MODEL_ARCH_QWEN3_VL);
	ck_assert(mc->has_vision);
	ck_assert_int_eq(t->hidden_size, 2048);
	ck_assert_int_eq(t->intermediate_size, 6144);
	ck_assert_int_eq(t->num_hidden_layers, 28);
	ck_assert_int_eq(t->num_attention_heads, 16);
	ck_assert_int_eq(t->num_key_value_heads, 8);
	ck_assert_int_eq(t->head_dim, 128);
	ck_assert_int_eq(t->vocab_size, 151936);
	ck_assert_int_eq(t->max_position_embeddings, 262144);
	ck_assert_double_eq(t->rms_norm_eps, 1e-6);
	ck_assert_double_eq(t->rope_theta, 5000000.0);
	ck_assert(t->mrope);
	ck_assert_int_eq(t->mrope_section[0], 24);
	ck_assert_int_eq(t->mrope_section[1], 20);
	ck_assert_int_eq(t->mrope_section[2], 20);
	ck_assert(!t->attention_bias);
	ck_assert_int_eq(t->hidden_act, MODEL_ACT_SILU);
	ck_assert(t->tie_word_embeddings);
	ck_assert_int_eq(t->bos_token_id, 151643);
	ck_assert_int_eq(t->eos_token_id, 151645);

	ck_assert_int_eq(v->depth, 24);
	ck_assert_int_eq(v->hidden_size, 1024);
	ck_assert_int_eq(v->intermediate_size, 4096);
	ck_assert_int_eq(v->num_heads, 16);
	ck_assert_int_eq(v->hidden_size / v->num_heads, 64);
	ck_assert_int_eq(v->in_channels, 3);
	ck_assert_int_eq(v->patch_size, 16);
	ck_assert_int_eq(v->temporal_patch_size, 2);
	ck_assert_int_eq(v->spatial_merge_size, 2);
	ck_assert_int_eq(v->out_hidden_size, 2048);
	ck_assert_int_eq(v->num_position_embeddings, 48 * 48);
	ck_assert_int_eq(v->hidden_act, MODEL_ACT_GELU_TANH);
	ck_assert_int_eq(v->n_deepstack, 3);
	ck_assert_int_eq(v->deepstack_visual_indexes[0], 5);
	ck_assert_int_eq(v->deepstack_visual_indexes[1], 11);
	ck_assert_int_eq(v->deepstack_visual_indexes[2], 17);

	ck_assert_int_eq(mc->image_token_id, 151655);
	ck_assert_int_eq(mc->video_token_id, 151656);
	ck_assert_int_eq(mc->vision_start_token_id, 151652);
	ck_assert_int_eq(mc->vision_end_token_id, 151653);
}

START_TEST(test_model_config_published_2b)
{
	model_config mc;
	load_2b(&mc);
	assert_2b(&mc);
}
END_TEST

START_TEST(test_model_config_v5_form)
{
	model_config mc;
	char *path = fixture_path(VL_V5);
	qerr e = { 0 };
	ck_assert_msg(model_config_load(path, &mc, &e) == 0, "%s", e.msg);
	free(path);
	assert_2b(&mc);
}
END_TEST

START_TEST(test_model_config_rope_parameters_preferred)
{
	model_config mc;
	/* Both forms: rope_parameters wins. */
	char *t = MUT(VL, { "text_config.rope_parameters",
			    "{\"rope_type\": \"default\", \"rope_theta\": 1000000,"
			    " \"mrope_section\": [16, 24, 24]}" });
	assert_model_ok(t, &mc);
	free(t);
	ck_assert_double_eq(mc.text.rope_theta, 1000000.0);
	ck_assert_int_eq(mc.text.mrope_section[0], 16);
	ck_assert_int_eq(mc.text.mrope_section[2], 24);
	/* rope_theta beside rope_parameters rather than inside. */
	t = MUT(VL_V5, { "text_config.rope_parameters.rope_theta", DEL },
		{ "text_config.rope_theta", "250000" });
	assert_model_ok(t, &mc);
	free(t);
	ck_assert_double_eq(mc.text.rope_theta, 250000.0);
}
END_TEST

START_TEST(test_model_config_rope_type_spellings)
{
	static const mut cases[][3] = {
		{ { "text_config.rope_scaling.rope_type", DEL },
		  { "text_config.rope_scaling.type", "\"default\"" }, { NULL, NULL } },
		{ { "text_config.rope_scaling.rope_type", "\"mrope\"" }, { NULL, NULL } },
		{ { "text_config.rope_scaling.rope_type", DEL }, { NULL, NULL } },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		model_config mc;
		char *t = mutated(VL, cases[i]);
		assert_model_ok(t, &mc);
		free(t);
		assert_2b(&mc);
	}
}
END_TEST

START_TEST(test_model_config_dense_qwen3)
{
	model_config mc;
	char *path = fixture_path(DENSE);
	qerr e = { 0 };
	ck_assert_msg(model_config_load(path, &mc, &e) == 0, "%s", e.msg);
	free(path);
	ck_assert_int_eq(mc.arch, MODEL_ARCH_QWEN3);
	ck_assert(!mc.has_vision);
	ck_assert_int_eq(mc.text.hidden_size, 1024);
	ck_assert_int_eq(mc.text.intermediate_size, 3072);
	ck_assert_int_eq(mc.text.num_hidden_layers, 28);
	ck_assert_int_eq(mc.text.num_attention_heads, 16);
	ck_assert_int_eq(mc.text.num_key_value_heads, 8);
	ck_assert_int_eq(mc.text.head_dim, 128); /* not hidden/heads = 64 */
	ck_assert_int_eq(mc.text.vocab_size, 151936);
	ck_assert_int_eq(mc.text.max_position_embeddings, 40960);
	ck_assert_double_eq(mc.text.rms_norm_eps, 1e-6);
	ck_assert_double_eq(mc.text.rope_theta, 1000000.0);
	ck_assert(!mc.text.mrope);
	ck_assert_int_eq(mc.text.mrope_section[0] | mc.text.mrope_section[1] |
			 mc.text.mrope_section[2], 0);
	ck_assert(mc.text.tie_word_embeddings);
	ck_assert_int_eq(mc.text.hidden_act, MODEL_ACT_SILU);
	ck_assert_int_eq(mc.text.bos_token_id, 151643);
	ck_assert_int_eq(mc.text.eos_token_id, 151645);
	ck_assert_int_eq(mc.image_token_id, -1);
	ck_assert_int_eq(mc.video_token_id, -1);
	ck_assert_int_eq(mc.vision_start_token_id, -1);
	ck_assert_int_eq(mc.vision_end_token_id, -1);
}
END_TEST

START_TEST(test_model_config_dense_rope_parameters)
{
	model_config mc;
	char *t = MUT(DENSE, { "rope_scaling", DEL }, { "rope_theta", DEL },
		      { "rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": 1e6}" });
	assert_model_ok(t, &mc);
	free(t);
	ck_assert_double_eq(mc.text.rope_theta, 1e6);
	ck_assert(!mc.text.mrope);
}
END_TEST

static const char minimal_vl[] =
	"{\"model_type\": \"qwen3_vl\","
	" \"text_config\": {\"hidden_size\": 1024, \"intermediate_size\": 3072,"
	"  \"num_hidden_layers\": 4, \"num_attention_heads\": 64, \"vocab_size\": 151936,"
	"  \"rope_theta\": 1000000, \"rope_scaling\": {\"mrope_section\": [24, 20, 20]}},"
	" \"vision_config\": {\"depth\": 4, \"hidden_size\": 256, \"intermediate_size\": 1024,"
	"  \"num_heads\": 4, \"out_hidden_size\": 1024, \"patch_size\": 16,"
	"  \"spatial_merge_size\": 2, \"temporal_patch_size\": 2,"
	"  \"num_position_embeddings\": 64, \"deepstack_visual_indexes\": [1, 2]}}";

START_TEST(test_model_config_defaults)
{
	model_config mc;
	assert_model_ok(minimal_vl, &mc);
	/* transformers' defaults, not derived from the other sizes (1024 / 64 would be 16) */
	ck_assert_int_eq(mc.text.num_key_value_heads, 32);
	ck_assert_int_eq(mc.text.head_dim, 128);
	ck_assert_double_eq(mc.text.rms_norm_eps, 1e-6);
	ck_assert(!mc.text.attention_bias);
	ck_assert_int_eq(mc.text.hidden_act, MODEL_ACT_SILU);
	ck_assert_int_eq(mc.text.max_position_embeddings, 128000);
	ck_assert(!mc.text.tie_word_embeddings);
	ck_assert_int_eq(mc.text.bos_token_id, -1);
	ck_assert_int_eq(mc.text.eos_token_id, -1);
	ck_assert_int_eq(mc.vision.in_channels, 3);
	ck_assert_int_eq(mc.vision.hidden_act, MODEL_ACT_GELU_TANH);
	ck_assert_int_eq(mc.vision.n_deepstack, 2);
	ck_assert_int_eq(mc.image_token_id, 151655);
	ck_assert_int_eq(mc.video_token_id, 151656);
	ck_assert_int_eq(mc.vision_start_token_id, 151652);
	ck_assert_int_eq(mc.vision_end_token_id, 151653);

	/* Dense: the qwen3 position default; an explicit null kv-head count means as many as the
	 * query heads; no eos anywhere -> generation has none. */
	static const char minimal_dense[] =
		"{\"model_type\": \"qwen3\", \"hidden_size\": 512, \"intermediate_size\": 1536,"
		" \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": null,"
		" \"vocab_size\": 1000, \"rope_theta\": 10000}";
	assert_model_ok(minimal_dense, &mc);
	ck_assert_int_eq(mc.text.max_position_embeddings, 32768);
	ck_assert_int_eq(mc.text.head_dim, 128);
	ck_assert_int_eq(mc.text.num_key_value_heads, 4);
	ck_assert(!mc.text.tie_word_embeddings);
	generation_config gc;
	generation_config_defaults(&mc, &gc);
	ck_assert_int_eq(gc.n_eos, 0);
}
END_TEST

START_TEST(test_model_config_tie_fallback)
{
	static const struct {
		mut m[3];
		bool tie;
	} cases[] = {
		/* only text_config says it */
		{ { { "tie_word_embeddings", DEL }, { NULL, NULL } }, true },
		/* the top level wins */
		{ { { "tie_word_embeddings", "false" }, { NULL, NULL } }, false },
		/* neither */
		{ { { "tie_word_embeddings", DEL }, { "text_config.tie_word_embeddings", DEL },
		    { NULL, NULL } }, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		model_config mc;
		char *t = mutated(VL, cases[i].m);
		assert_model_ok(t, &mc);
		free(t);
		ck_assert_msg(mc.text.tie_word_embeddings == cases[i].tie, "case %zu", i);
	}
}
END_TEST

START_TEST(test_model_config_vision_gelu_variants)
{
	static const struct {
		const char *json;
		model_act act;
	} cases[] = {
		{ "\"gelu\"", MODEL_ACT_GELU_ERF },
		{ "\"gelu_new\"", MODEL_ACT_GELU_TANH },
		{ "\"gelu_pytorch_tanh\"", MODEL_ACT_GELU_TANH },
		{ "null", MODEL_ACT_GELU_TANH },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		model_config mc;
		char *t = MUT(VL, { "vision_config.hidden_act", cases[i].json });
		assert_model_ok(t, &mc);
		free(t);
		ck_assert_int_eq(mc.vision.hidden_act, cases[i].act);
	}
}
END_TEST

START_TEST(test_model_config_deepstack_empty)
{
	model_config mc;
	char *t = MUT(VL, { "vision_config.deepstack_visual_indexes", "[]" });
	assert_model_ok(t, &mc);
	free(t);
	ck_assert_int_eq(mc.vision.n_deepstack, 0);
}
END_TEST

/* ---- directories and files ---- */

static void assert_2b_generation(const generation_config *gc)
{
	ck_assert_int_eq(gc->n_eos, 2);
	ck_assert_int_eq(gc->eos_token_ids[0], 151645);
	ck_assert_int_eq(gc->eos_token_ids[1], 151643);
	ck_assert_int_eq(gc->bos_token_id, 151643);
	ck_assert_int_eq(gc->pad_token_id, 151643);
	ck_assert(gc->do_sample);
	ck_assert_double_eq(gc->temperature, 0.7);
	ck_assert_double_eq(gc->top_p, 0.8);
	ck_assert_int_eq(gc->top_k, 20);
	ck_assert_double_eq(gc->min_p, 0.0);
	ck_assert_double_eq(gc->repetition_penalty, 1.0);
	ck_assert_int_eq(gc->max_new_tokens, -1);
}

static void assert_qwen3vl_preprocessor(const preprocessor_config *pc)
{
	ck_assert_int_eq(pc->min_pixels, 65536);
	ck_assert_int_eq(pc->max_pixels, 16777216);
	ck_assert_int_eq(pc->patch_size, 16);
	ck_assert_int_eq(pc->temporal_patch_size, 2);
	ck_assert_int_eq(pc->merge_size, 2);
	for (int i = 0; i < 3; i++) {
		ck_assert_float_eq(pc->image_mean[i], 0.5f);
		ck_assert_float_eq(pc->image_std[i], 0.5f);
	}
	ck_assert_double_eq(pc->rescale_factor, 1.0 / 255.0);
	ck_assert(pc->do_resize && pc->do_rescale && pc->do_normalize && pc->do_convert_rgb);
}

START_TEST(test_model_config_load_dir_published)
{
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	char *dir = fixture_path("qwen3-vl-2b");
	qerr e = { 0 };
	ck_assert_msg(model_config_load_dir(dir, &mc, &gc, &pc, &e) == 0, "%s", e.msg);
	free(dir);
	assert_2b(&mc);
	assert_2b_generation(&gc);
	assert_qwen3vl_preprocessor(&pc);
}
END_TEST

START_TEST(test_model_config_load_dir_defaults)
{
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	char *dir = fixture_path("qwen3-0.6b");
	qerr e = { 0 };
	ck_assert_msg(model_config_load_dir(dir, &mc, &gc, &pc, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(e.code, 0); /* the missing optional files left no error behind */
	ck_assert_int_eq(mc.arch, MODEL_ARCH_QWEN3);
	ck_assert_int_eq(gc.n_eos, 1);
	ck_assert_int_eq(gc.eos_token_ids[0], 151645);
	assert_qwen3vl_preprocessor(&pc);
	/* gc and pc may be left out. */
	ck_assert_msg(model_config_load_dir(dir, &mc, NULL, NULL, &e) == 0, "%s", e.msg);
	free(dir);
}
END_TEST

START_TEST(test_model_config_missing_config_json)
{
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	qerr e = { 0 };
	char *dir = fixture_path("no-such-model");
	int rc = model_config_load_dir(dir, &mc, &gc, &pc, &e);
	ck_assert_int_eq(rc, -QERR_MISSING);
	ck_assert_msg(strstr(e.msg, "no-such-model/config.json"), "%s", e.msg);
	free(dir);
	rc = model_config_load("/nonexistent/qvl/config.json", &mc, &e);
	ck_assert_int_eq(rc, -QERR_MISSING);
	ck_assert_msg(strstr(e.msg, "/nonexistent/qvl/config.json"), "%s", e.msg);
}
END_TEST

START_TEST(test_model_config_load_names_path)
{
	char path[] = "/tmp/check_model_config_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	static const char bad[] = "{\"model_type\": \"qwen3\", \"hidden_size\": \"big\"}";
	ck_assert_int_eq(write(fd, bad, sizeof(bad) - 1), (ssize_t)(sizeof(bad) - 1));
	close(fd);
	model_config mc;
	qerr e = { 0 };
	int rc = model_config_load(path, &mc, &e);
	unlink(path);
	ck_assert_int_eq(rc, -QERR_FORMAT);
	ck_assert_msg(!strncmp(e.msg, path, strlen(path)), "%s", e.msg);
	ck_assert_msg(strstr(e.msg, ": hidden_size: expected an integer, got string"), "%s", e.msg);
}
END_TEST

/* ---- config.json: errors ---- */

START_TEST(test_model_config_invalid_json)
{
	assert_error_text(W_MODEL, "{\"model_type\": ", QERR_FORMAT, "invalid JSON", "truncated");
	assert_error_text(W_MODEL, "{\"model_type\": \"qwen3\"} x", QERR_FORMAT,
			  "invalid JSON at byte 24", "trailing");
	assert_error_text(W_MODEL, "[1, 2]", QERR_FORMAT, "expected a JSON object, got array",
			  "array");
	assert_error_text(W_MODEL, "", QERR_FORMAT, "invalid JSON", "empty");
}
END_TEST

START_TEST(test_model_config_missing_required)
{
	static const char *const vl_fields[] = {
		"model_type",
		"text_config",
		"text_config.hidden_size",
		"text_config.intermediate_size",
		"text_config.num_hidden_layers",
		"text_config.num_attention_heads",
		"text_config.vocab_size",
		"text_config.rope_theta",
		"text_config.rope_scaling.mrope_section",
		"vision_config",
		"vision_config.depth",
		"vision_config.hidden_size",
		"vision_config.intermediate_size",
		"vision_config.num_heads",
		"vision_config.out_hidden_size",
		"vision_config.patch_size",
		"vision_config.spatial_merge_size",
		"vision_config.temporal_patch_size",
		"vision_config.num_position_embeddings",
		"vision_config.deepstack_visual_indexes",
	};
	for (size_t i = 0; i < sizeof(vl_fields) / sizeof(vl_fields[0]); i++) {
		char want[160];
		snprintf(want, sizeof(want), "config.json: %s: required field is missing",
			 vl_fields[i]);
		assert_err(W_MODEL, VL, QERR_MISSING, want, { vl_fields[i], DEL });
	}
	/* null counts as absent */
	assert_vl_err(QERR_MISSING, "text_config.hidden_size: required", { "text_config.hidden_size", "null" });
	/* no rope object at all: the sections are still needed */
	assert_vl_err(QERR_MISSING, "text_config.rope_scaling.mrope_section: required",
	       { "text_config.rope_scaling", DEL });
	/* v5: theta neither inside rope_parameters nor beside it */
	assert_err(W_MODEL, VL_V5, QERR_MISSING, "text_config.rope_theta: required",
		   { "text_config.rope_parameters.rope_theta", DEL });
	assert_err(W_MODEL, VL_V5, QERR_MISSING, "text_config.rope_parameters.mrope_section",
		   { "text_config.rope_parameters.mrope_section", DEL });
	/* dense: top-level paths */
	assert_err(W_MODEL, DENSE, QERR_MISSING, "config.json: vocab_size: required",
		   { "vocab_size", DEL });
	assert_err(W_MODEL, DENSE, QERR_MISSING, "config.json: rope_theta: required",
		   { "rope_theta", DEL });
}
END_TEST

START_TEST(test_model_config_wrong_type)
{
	static const struct {
		const char *path, *json, *want;
	} cases[] = {
		{ "model_type", "3", "model_type: expected a string, got int" },
		{ "text_config", "[]", "text_config: expected an object, got array" },
		{ "text_config.hidden_size", "\"2048\"",
		  "text_config.hidden_size: expected an integer, got string" },
		{ "text_config.num_hidden_layers", "28.5",
		  "text_config.num_hidden_layers: 28.5 is not a 64-bit integer" },
		{ "text_config.rms_norm_eps", "\"1e-6\"", "text_config.rms_norm_eps: expected a number" },
		{ "text_config.attention_bias", "0",
		  "text_config.attention_bias: expected true or false, got int" },
		{ "text_config.hidden_act", "[\"silu\"]", "text_config.hidden_act: expected a string" },
		{ "text_config.rope_theta", "true", "text_config.rope_theta: expected a number" },
		{ "text_config.rope_scaling", "\"default\"",
		  "text_config.rope_scaling: expected an object, got string" },
		{ "text_config.rope_scaling.rope_type", "1",
		  "text_config.rope_scaling.rope_type: expected a string" },
		{ "text_config.rope_scaling.mrope_section", "{\"t\": 24}",
		  "text_config.rope_scaling.mrope_section: expected an array, got object" },
		{ "text_config.rope_scaling.mrope_section", "[24, \"20\", 20]",
		  "text_config.rope_scaling.mrope_section[1]: expected an integer, got string" },
		{ "tie_word_embeddings", "\"true\"", "config.json: tie_word_embeddings: expected true" },
		{ "image_token_id", "\"151655\"", "config.json: image_token_id: expected an integer" },
		{ "vision_config", "1", "vision_config: expected an object, got int" },
		{ "vision_config.depth", "{}", "vision_config.depth: expected an integer, got object" },
		{ "vision_config.deepstack_visual_indexes", "[5, null, 17]",
		  "vision_config.deepstack_visual_indexes[1]: expected an integer, got null" },
		{ "vision_config.deepstack_visual_indexes", "5",
		  "vision_config.deepstack_visual_indexes: expected an array" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_err(W_MODEL, VL, QERR_FORMAT, cases[i].want, { cases[i].path, cases[i].json });
}
END_TEST

START_TEST(test_model_config_out_of_range)
{
	static const struct {
		const char *path, *json, *want;
	} cases[] = {
		{ "text_config.num_hidden_layers", "0",
		  "text_config.num_hidden_layers: 0 is out of range [1, 1024]" },
		{ "text_config.num_hidden_layers", "1025", "text_config.num_hidden_layers: 1025" },
		{ "text_config.hidden_size", "70000", "text_config.hidden_size: 70000 is out of range" },
		{ "text_config.intermediate_size", "-1", "text_config.intermediate_size: -1" },
		{ "text_config.num_attention_heads", "2000", "text_config.num_attention_heads: 2000" },
		{ "text_config.num_key_value_heads", "0", "text_config.num_key_value_heads: 0" },
		{ "text_config.head_dim", "0", "text_config.head_dim: 0 is out of range" },
		{ "text_config.vocab_size", "5000000", "text_config.vocab_size: 5000000" },
		{ "text_config.max_position_embeddings", "0", "text_config.max_position_embeddings: 0" },
		{ "text_config.rms_norm_eps", "0", "text_config.rms_norm_eps: 0 is out of range (0, 1]" },
		{ "text_config.rope_theta", "-5", "text_config.rope_theta: -5 must be > 0" },
		{ "text_config.bos_token_id", "-2", "text_config.bos_token_id: -2" },
		{ "vision_config.depth", "0", "vision_config.depth: 0 is out of range" },
		{ "vision_config.intermediate_size", "2000000", "vision_config.intermediate_size" },
		{ "vision_config.num_position_embeddings", "0", "vision_config.num_position_embeddings" },
		{ "video_token_id", "-1", "config.json: video_token_id: -1" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_err(W_MODEL, VL, QERR_INVALID, cases[i].want, { cases[i].path, cases[i].json });
	/* Beyond what an int64 holds (json-c saturates the text it keeps): a format error. */
	assert_vl_err(QERR_FORMAT, "text_config.hidden_size: 18446744073709551615 is not a 64-bit integer",
	       { "text_config.hidden_size", "9223372036854775807999" });
}
END_TEST

START_TEST(test_model_config_kv_heads_divide)
{
	assert_vl_err(QERR_INVALID,
	       "config.json: text_config.num_key_value_heads: 3 does not divide num_attention_heads 16",
	       { "text_config.num_key_value_heads", "3" });
}
END_TEST

START_TEST(test_model_config_head_dim_even)
{
	assert_vl_err(QERR_INVALID, "text_config.head_dim: 127 is odd", { "text_config.head_dim", "127" });
}
END_TEST

START_TEST(test_model_config_kv_heads_default_must_divide)
{
	/* an absent kv-head count is transformers' 32, which must divide the 16 query heads */
	assert_vl_err(QERR_INVALID, "text_config.num_key_value_heads: 32 does not divide num_attention_heads 16",
	       { "text_config.num_key_value_heads", DEL });
}
END_TEST

START_TEST(test_model_config_attention_bias_unsupported)
{
	assert_vl_err(QERR_UNSUPPORTED, "text_config.attention_bias: true is not supported",
	       { "text_config.attention_bias", "true" });
	assert_err(W_MODEL, DENSE, QERR_UNSUPPORTED, "config.json: attention_bias: true",
		   { "attention_bias", "true" });
}
END_TEST

START_TEST(test_model_config_text_act_silu)
{
	assert_vl_err(QERR_UNSUPPORTED, "text_config.hidden_act: \"gelu\" is not supported",
	       { "text_config.hidden_act", "\"gelu\"" });
	assert_vl_err(QERR_UNSUPPORTED, "text_config.hidden_act: \"relu\"",
	       { "text_config.hidden_act", "\"relu\"" });
}
END_TEST

START_TEST(test_model_config_sliding_window_unsupported)
{
	assert_err(W_MODEL, DENSE, QERR_UNSUPPORTED, "config.json: use_sliding_window: true",
		   { "use_sliding_window", "true" });
}
END_TEST

START_TEST(test_model_config_mrope_section)
{
	assert_vl_err(QERR_INVALID,
	       "text_config.rope_scaling.mrope_section: [24, 20, 19] sums to 63, expected head_dim/2 = 64",
	       { "text_config.rope_scaling.mrope_section", "[24, 20, 19]" });
	assert_vl_err(QERR_INVALID, "text_config.rope_scaling.mrope_section: has 2 entries, expected 3",
	       { "text_config.rope_scaling.mrope_section", "[24, 40]" });
	assert_vl_err(QERR_INVALID, "text_config.rope_scaling.mrope_section[0]: 0 is out of range",
	       { "text_config.rope_scaling.mrope_section", "[0, 44, 20]" });
	assert_err(W_MODEL, VL_V5, QERR_INVALID, "text_config.rope_parameters.mrope_section: [",
		   { "text_config.rope_parameters.mrope_section", "[16, 16, 16]" });
}
END_TEST

START_TEST(test_model_config_rope_type_unsupported)
{
	assert_vl_err(QERR_UNSUPPORTED,
	       "config.json: text_config.rope_scaling.rope_type: rope type \"yarn\" is not supported",
	       { "text_config.rope_scaling.rope_type", "\"yarn\"" });
	assert_vl_err(QERR_UNSUPPORTED, "text_config.rope_scaling.type: rope type \"linear\"",
	       { "text_config.rope_scaling.rope_type", DEL },
	       { "text_config.rope_scaling.type", "\"linear\"" });
	assert_err(W_MODEL, VL_V5, QERR_UNSUPPORTED,
		   "text_config.rope_parameters.rope_type: rope type \"dynamic\"",
		   { "text_config.rope_parameters.rope_type", "\"dynamic\"" });
	assert_err(W_MODEL, DENSE, QERR_UNSUPPORTED,
		   "config.json: rope_scaling.rope_type: rope type \"yarn\"",
		   { "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}" });
	/* "mrope" is only an alias where there is mrope */
	assert_err(W_MODEL, DENSE, QERR_UNSUPPORTED, "rope type \"mrope\"",
		   { "rope_scaling", "{\"type\": \"mrope\"}" });
}
END_TEST

START_TEST(test_model_config_unknown_model_type)
{
	assert_vl_err(QERR_UNSUPPORTED, "config.json: model_type: \"llama\" is not supported",
	       { "model_type", "\"llama\"" });
	assert_vl_err(QERR_UNSUPPORTED, "model_type: \"qwen3_vl_moe\"", { "model_type", "\"qwen3_vl_moe\"" });
}
END_TEST

START_TEST(test_model_config_vision_heads)
{
	assert_vl_err(QERR_INVALID, "vision_config.num_heads: 12 does not divide hidden_size 1024",
	       { "vision_config.num_heads", "12" });
	assert_vl_err(QERR_INVALID, "vision_config.num_heads: 512 gives a head_dim of 2, not a multiple of 4",
	       { "vision_config.num_heads", "512" });
}
END_TEST

START_TEST(test_model_config_vision_act)
{
	assert_vl_err(QERR_UNSUPPORTED, "vision_config.hidden_act: \"relu\" is not supported",
	       { "vision_config.hidden_act", "\"relu\"" });
	assert_vl_err(QERR_UNSUPPORTED, "vision_config.hidden_act: \"silu\"",
	       { "vision_config.hidden_act", "\"silu\"" });
}
END_TEST

START_TEST(test_model_config_in_channels)
{
	assert_vl_err(QERR_INVALID, "vision_config.in_channels: 4 is not 3",
	       { "vision_config.in_channels", "4" });
}
END_TEST

START_TEST(test_model_config_out_hidden_size)
{
	assert_vl_err(QERR_INVALID, "vision_config.out_hidden_size: 1024 does not equal text hidden_size 2048",
	       { "vision_config.out_hidden_size", "1024" });
}
END_TEST

START_TEST(test_model_config_position_embeddings_square)
{
	assert_vl_err(QERR_INVALID, "vision_config.num_position_embeddings: 2300 is not a perfect square",
	       { "vision_config.num_position_embeddings", "2300" });
}
END_TEST

START_TEST(test_model_config_deepstack)
{
	const char *k = "vision_config.deepstack_visual_indexes";
	assert_vl_err(QERR_INVALID, "deepstack_visual_indexes: not strictly ascending (5 follows 5)",
	       { k, "[5, 5, 17]" });
	assert_vl_err(QERR_INVALID, "deepstack_visual_indexes: not strictly ascending (11 follows 17)",
	       { k, "[5, 17, 11]" });
	assert_vl_err(QERR_INVALID, "vision_config.deepstack_visual_indexes[2]: 24 is out of range [0, 23]",
	       { k, "[5, 11, 24]" });
	assert_vl_err(QERR_INVALID, "deepstack_visual_indexes[0]: -1 is out of range", { k, "[-1]" });
	assert_vl_err(QERR_INVALID, "deepstack_visual_indexes: has 9 entries, expected 0 to 8",
	       { k, "[0, 1, 2, 3, 4, 5, 6, 7, 8]" });
	assert_vl_err(QERR_INVALID, "3 entries but the text model has only 2 layers",
	       { "text_config.num_hidden_layers", "2" });
}
END_TEST

START_TEST(test_model_config_patch_sizes)
{
	assert_vl_err(QERR_INVALID, "vision_config.patch_size: 0", { "vision_config.patch_size", "0" });
	assert_vl_err(QERR_INVALID, "vision_config.temporal_patch_size: 0",
	       { "vision_config.temporal_patch_size", "0" });
	assert_vl_err(QERR_INVALID, "vision_config.spatial_merge_size: 0",
	       { "vision_config.spatial_merge_size", "0" });
}
END_TEST

START_TEST(test_model_config_token_ids_in_vocab)
{
	assert_vl_err(QERR_INVALID, "config.json: image_token_id: 151936 is not below vocab_size 151936",
	       { "image_token_id", "151936" });
	assert_vl_err(QERR_INVALID, "text_config.eos_token_id: 200000 is not below vocab_size",
	       { "text_config.eos_token_id", "200000" });
}
END_TEST

/* ---- generation_config.json ---- */

START_TEST(test_model_config_generation_published)
{
	generation_config gc;
	char *t = fixture_text(GEN);
	gen_ok(t, &gc);
	free(t);
	assert_2b_generation(&gc);
}
END_TEST

START_TEST(test_model_config_generation_int_eos)
{
	generation_config gc;
	char *t = MUT(GEN, { "eos_token_id", "151643" }, { "max_new_tokens", "512" },
		      { "min_p", "0.05" });
	gen_ok(t, &gc);
	free(t);
	ck_assert_int_eq(gc.n_eos, 1);
	ck_assert_int_eq(gc.eos_token_ids[0], 151643);
	ck_assert_int_eq(gc.max_new_tokens, 512);
	ck_assert_double_eq(gc.min_p, 0.05);
	/* null eos: the model's */
	t = MUT(GEN, { "eos_token_id", "null" });
	gen_ok(t, &gc);
	free(t);
	ck_assert_int_eq(gc.n_eos, 1);
	ck_assert_int_eq(gc.eos_token_ids[0], 151645);
}
END_TEST

START_TEST(test_model_config_generation_missing_file)
{
	model_config mc;
	generation_config gc;
	qerr e = { 0 };
	load_2b(&mc);
	ck_assert_int_eq(generation_config_load("/nonexistent/generation_config.json", &mc, &gc, &e), 0);
	ck_assert_int_eq(e.code, 0);
	ck_assert_int_eq(gc.n_eos, 1);
	ck_assert_int_eq(gc.eos_token_ids[0], 151645);
	ck_assert_int_eq(gc.bos_token_id, -1);
	ck_assert_int_eq(gc.pad_token_id, -1);
	ck_assert(!gc.do_sample);
	ck_assert_double_eq(gc.temperature, 1.0);
	ck_assert_double_eq(gc.top_p, 1.0);
	ck_assert_int_eq(gc.top_k, 0);
	ck_assert_double_eq(gc.min_p, 0.0);
	ck_assert_double_eq(gc.repetition_penalty, 1.0);
	ck_assert_int_eq(gc.max_new_tokens, -1);
	generation_config_defaults(NULL, &gc);
	ck_assert_int_eq(gc.n_eos, 0);
}
END_TEST

START_TEST(test_model_config_generation_errors)
{
	assert_gen_err(QERR_INVALID, "generation_config.json: top_p: 0 is out of range (0, 1]",
		{ "top_p", "0" });
	assert_gen_err(QERR_INVALID, "top_p: 1.5 is out of range", { "top_p", "1.5" });
	assert_gen_err(QERR_INVALID, "temperature: -0.5 must be >= 0", { "temperature", "-0.5" });
	assert_gen_err(QERR_INVALID, "top_k: -1 is out of range", { "top_k", "-1" });
	assert_gen_err(QERR_INVALID, "min_p: 1.5 is out of range [0, 1]", { "min_p", "1.5" });
	assert_gen_err(QERR_INVALID, "repetition_penalty: 0 must be > 0", { "repetition_penalty", "0" });
	assert_gen_err(QERR_INVALID, "max_new_tokens: 0", { "max_new_tokens", "0" });
	assert_gen_err(QERR_FORMAT, "eos_token_id: expected an integer or a list of integers, got string",
		{ "eos_token_id", "\"<|im_end|>\"" });
	assert_gen_err(QERR_FORMAT, "eos_token_id[1]: expected an integer, got string",
		{ "eos_token_id", "[151645, \"x\"]" });
	assert_gen_err(QERR_INVALID, "eos_token_id: has 0 entries, expected 1 to 8", { "eos_token_id", "[]" });
	assert_gen_err(QERR_INVALID, "eos_token_id: has 9 entries",
		{ "eos_token_id", "[1, 2, 3, 4, 5, 6, 7, 8, 9]" });
	assert_gen_err(QERR_INVALID, "eos_token_id: 151936 is not below vocab_size 151936",
		{ "eos_token_id", "[151645, 151936]" });
	assert_gen_err(QERR_INVALID, "pad_token_id: 999999 is not below vocab_size",
		{ "pad_token_id", "999999" });
	assert_gen_err(QERR_FORMAT, "do_sample: expected true or false, got string",
		{ "do_sample", "\"yes\"" });
	assert_gen_err(QERR_FORMAT, "temperature: expected a number, got string",
		{ "temperature", "\"0.7\"" });
	assert_error_text(W_GEN, "{\"top_k\" 20}", QERR_FORMAT, "invalid JSON", "no colon");
	assert_error_text(W_GEN, "\"greedy\"", QERR_FORMAT, "expected a JSON object, got string",
			  "string");
}
END_TEST

/* ---- preprocessor_config.json ---- */

START_TEST(test_model_config_preprocessor_published)
{
	preprocessor_config pc;
	char *t = fixture_text(PRE);
	pre_ok(t, &pc);
	free(t);
	assert_qwen3vl_preprocessor(&pc);
}
END_TEST

START_TEST(test_model_config_preprocessor_older_form)
{
	/* Qwen2-VL's file: top-level min/max pixels, CLIP mean/std. */
	static const char qwen2vl[] =
		"{\"min_pixels\": 3136, \"max_pixels\": 12845056, \"patch_size\": 14,"
		" \"temporal_patch_size\": 2, \"merge_size\": 2,"
		" \"image_mean\": [0.48145466, 0.4578275, 0.40821073],"
		" \"image_std\": [0.26862954, 0.26130258, 0.27577711],"
		" \"rescale_factor\": 0.00392156862745098, \"do_normalize\": false,"
		" \"image_processor_type\": \"Qwen2VLImageProcessor\"}";
	preprocessor_config pc;
	pre_ok(qwen2vl, &pc);
	ck_assert_int_eq(pc.min_pixels, 3136);
	ck_assert_int_eq(pc.max_pixels, 12845056);
	ck_assert_int_eq(pc.patch_size, 14);
	ck_assert_float_eq(pc.image_mean[0], 0.48145466f);
	ck_assert_float_eq(pc.image_std[2], 0.27577711f);
	ck_assert_double_eq(pc.rescale_factor, 0.00392156862745098);
	ck_assert(!pc.do_normalize);
	ck_assert(pc.do_resize && pc.do_rescale && pc.do_convert_rgb);
}
END_TEST

START_TEST(test_model_config_preprocessor_size_wins)
{
	preprocessor_config pc;
	char *t = MUT(PRE, { "min_pixels", "3136" }, { "max_pixels", "12845056" },
		      { "image_mean", "0.25" });
	pre_ok(t, &pc);
	free(t);
	ck_assert_int_eq(pc.min_pixels, 65536);
	ck_assert_int_eq(pc.max_pixels, 16777216);
	for (int i = 0; i < 3; i++) /* one number stands for all three channels */
		ck_assert_float_eq(pc.image_mean[i], 0.25f);
}
END_TEST

START_TEST(test_model_config_preprocessor_missing_file)
{
	preprocessor_config pc;
	qerr e = { 0 };
	ck_assert_int_eq(preprocessor_config_load("/nonexistent/preprocessor_config.json", &pc, &e), 0);
	ck_assert_int_eq(e.code, 0);
	assert_qwen3vl_preprocessor(&pc);
}
END_TEST

START_TEST(test_model_config_preprocessor_errors)
{
	assert_pre_err(QERR_INVALID,
		"preprocessor_config.json: size: the minimum of 65536 pixels exceeds the maximum of 1024",
		{ "size.longest_edge", "1024" });
	assert_pre_err(QERR_INVALID, "min_pixels: the minimum of 4096 pixels exceeds the maximum of 1024",
		{ "size", DEL }, { "min_pixels", "4096" }, { "max_pixels", "1024" });
	assert_pre_err(QERR_MISSING, "size.longest_edge: required field is missing",
		{ "size.longest_edge", DEL });
	assert_pre_err(QERR_INVALID, "size.shortest_edge: 0 is out of range", { "size.shortest_edge", "0" });
	assert_pre_err(QERR_FORMAT, "size: expected an object, got array", { "size", "[256, 4096]" });
	assert_pre_err(QERR_INVALID, "image_std[1]: 0 must be > 0", { "image_std", "[0.5, 0, 0.5]" });
	assert_pre_err(QERR_INVALID, "image_std: -1 must be > 0", { "image_std", "-1" });
	assert_pre_err(QERR_INVALID, "image_mean: has 2 entries, expected 3", { "image_mean", "[0.5, 0.5]" });
	assert_pre_err(QERR_FORMAT, "image_mean: expected a number, got string", { "image_mean", "\"clip\"" });
	assert_pre_err(QERR_INVALID, "patch_size: 0 is out of range", { "patch_size", "0" });
	assert_pre_err(QERR_INVALID, "merge_size: 0", { "merge_size", "0" });
	assert_pre_err(QERR_INVALID, "rescale_factor: 0 must be > 0", { "rescale_factor", "0" });
	assert_pre_err(QERR_FORMAT, "do_resize: expected true or false, got string", { "do_resize", "\"true\"" });
	assert_error_text(W_PRE, "{\"size\": {", QERR_FORMAT, "invalid JSON", "truncated");
}
END_TEST

static Suite *model_config_suite(void)
{
	Suite *s = suite_create("model_config");
	TCase *ok = tcase_create("accepted");
	tcase_add_test(ok, test_model_config_published_2b);
	tcase_add_test(ok, test_model_config_v5_form);
	tcase_add_test(ok, test_model_config_rope_parameters_preferred);
	tcase_add_test(ok, test_model_config_rope_type_spellings);
	tcase_add_test(ok, test_model_config_dense_qwen3);
	tcase_add_test(ok, test_model_config_dense_rope_parameters);
	tcase_add_test(ok, test_model_config_defaults);
	tcase_add_test(ok, test_model_config_tie_fallback);
	tcase_add_test(ok, test_model_config_vision_gelu_variants);
	tcase_add_test(ok, test_model_config_deepstack_empty);
	tcase_add_test(ok, test_model_config_load_dir_published);
	tcase_add_test(ok, test_model_config_load_dir_defaults);
	tcase_add_test(ok, test_model_config_generation_published);
	tcase_add_test(ok, test_model_config_generation_int_eos);
	tcase_add_test(ok, test_model_config_generation_missing_file);
	tcase_add_test(ok, test_model_config_preprocessor_published);
	tcase_add_test(ok, test_model_config_preprocessor_older_form);
	tcase_add_test(ok, test_model_config_preprocessor_size_wins);
	tcase_add_test(ok, test_model_config_preprocessor_missing_file);
	suite_add_tcase(s, ok);

	TCase *bad = tcase_create("refused");
	tcase_add_test(bad, test_model_config_missing_config_json);
	tcase_add_test(bad, test_model_config_load_names_path);
	tcase_add_test(bad, test_model_config_invalid_json);
	tcase_add_test(bad, test_model_config_missing_required);
	tcase_add_test(bad, test_model_config_wrong_type);
	tcase_add_test(bad, test_model_config_out_of_range);
	tcase_add_test(bad, test_model_config_kv_heads_divide);
	tcase_add_test(bad, test_model_config_head_dim_even);
	tcase_add_test(bad, test_model_config_kv_heads_default_must_divide);
	tcase_add_test(bad, test_model_config_attention_bias_unsupported);
	tcase_add_test(bad, test_model_config_text_act_silu);
	tcase_add_test(bad, test_model_config_sliding_window_unsupported);
	tcase_add_test(bad, test_model_config_mrope_section);
	tcase_add_test(bad, test_model_config_rope_type_unsupported);
	tcase_add_test(bad, test_model_config_unknown_model_type);
	tcase_add_test(bad, test_model_config_vision_heads);
	tcase_add_test(bad, test_model_config_vision_act);
	tcase_add_test(bad, test_model_config_in_channels);
	tcase_add_test(bad, test_model_config_out_hidden_size);
	tcase_add_test(bad, test_model_config_position_embeddings_square);
	tcase_add_test(bad, test_model_config_deepstack);
	tcase_add_test(bad, test_model_config_patch_sizes);
	tcase_add_test(bad, test_model_config_token_ids_in_vocab);
	tcase_add_test(bad, test_model_config_generation_errors);
	tcase_add_test(bad, test_model_config_preprocessor_errors);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	return tu_run_suite(model_config_suite());
}
