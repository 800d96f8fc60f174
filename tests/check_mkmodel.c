/*
 * Tests of `qvl mkmodel`'s library half: the directory it makes loads, its values follow the
 * documented formula, and the same seed gives the same bytes whatever the thread count.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "datadir.h"
#include "mkmodel.h"
#include "model_config.h"
#include "model_weights.h"
#include "testutil.h"

static char *tiny_dir;   /* made once by the unchecked fixture, shared read-only */

static void make_tiny(void)
{
	tiny_dir = tu_mkdtemp("mkmodel-tiny");
	mkmodel_opts o = { .preset = "tiny", .out_dir = tiny_dir, .seed = 1, .dtype = ST_BF16 };
	qerr e = {0};
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
}

static void remove_tiny(void)
{
	tu_rmdir(tiny_dir);
	free(tiny_dir);
}

START_TEST(test_mkmodel_tiny_directory_is_complete)
{
	static const char *files[] = { "config.json", "model.safetensors", "generation_config.json",
				       "preprocessor_config.json", "tokenizer.json",
				       "tokenizer_config.json", "chat_template.jinja" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		ck_assert_msg(tu_exists(tiny_dir, files[i]), "%s missing", files[i]);
	ck_assert(!tu_exists(tiny_dir, "model.safetensors.tmp"));

	/* config.json is the preset, byte for byte */
	char preset[4096], path[1024];
	ck_assert_int_eq(datadir_find("presets/tiny.json", preset, sizeof(preset), NULL), 0);
	size_t a = 0, b = 0;
	char *want = tu_read(preset, &a);
	snprintf(path, sizeof(path), "%s/config.json", tiny_dir);
	char *got = tu_read(path, &b);
	ck_assert_uint_eq(a, b);
	ck_assert_mem_eq(want, got, a);
	free(want);
	free(got);

	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	model_weights w;
	qerr e = {0};
	ck_assert_msg(model_config_load_dir(tiny_dir, &mc, &gc, &pc, &e) == 0, "%s", e.msg);
	ck_assert_int_le(mc.text.hidden_size, 128);
	ck_assert_int_eq(mc.text.vocab_size, 151936);
	ck_assert_int_lt(mc.text.num_key_value_heads, mc.text.num_attention_heads);  /* GQA */
	ck_assert(mc.has_vision);
	ck_assert_int_eq(mc.vision.n_deepstack, 3);
	ck_assert_msg(model_weights_open(tiny_dir, &mc, &w, &e) == 0, "%s", e.msg);
	size_t n;
	weight_spec *specs = model_weights_manifest(&mc, NULL, &n);
	ck_assert_uint_eq(st_set_count(w.st), n);
	for (size_t i = 0; i < st_set_count(w.st); i++)
		ck_assert_int_eq(st_set_tensor(w.st, i)->dtype, ST_BF16);
	ck_assert_ptr_eq(w.lm_head, w.embed_tokens);
	ck_assert_ptr_nonnull(w.layers[mc.text.num_hidden_layers - 1].down_proj);
	ck_assert_ptr_nonnull(w.deepstack[2].fc2_b);
	free(specs);
	model_weights_deinit(&w);
}
END_TEST

/* Every element of every tensor equals bf16(mkmodel_value(...)), and the spread is as designed. */
START_TEST(test_mkmodel_values_follow_the_formula)
{
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	model_weights w;
	qerr e = {0};
	ck_assert_int_eq(model_config_load_dir(tiny_dir, &mc, &gc, &pc, &e), 0);
	ck_assert_int_eq(model_weights_open(tiny_dir, &mc, &w, &e), 0);
	size_t n;
	weight_spec *specs = model_weights_manifest(&mc, NULL, &n);
	for (size_t k = 0; k < n; k++) {
		const st_tensor *t = st_set_find(w.st, specs[k].name);
		ck_assert_ptr_nonnull(t);
		const uint16_t *v = t->data;
		double sum = 0, sq = 0;
		uint64_t bad = 0, first_bad = 0;
		/* one assertion per tensor: Check's asserts are slow in a 20M-element loop */
		for (uint64_t i = 0; i < t->numel; i++) {
			float want = mkmodel_value(1, k, i, specs[k].kind, specs[k].fan_in,
						   mc.text.hidden_size);
			float x = bf16_to_f32(v[i]);
			if (v[i] != f32_to_bf16(want) || !isfinite(x))
				first_bad = bad++ ? first_bad : i;
			sum += x;
			sq += (double)x * x;
		}
		ck_assert_msg(bad == 0, "%s: %llu elements differ from the formula, first at %llu",
			      specs[k].name, (unsigned long long)bad, (unsigned long long)first_bad);
		double mean = sum / (double)t->numel, sd = sqrt(sq / (double)t->numel - mean * mean);
		if (specs[k].kind == WEIGHT_NORM && t->numel >= 64) {
			ck_assert_double_eq_tol(mean, 1.0, 0.06);
			ck_assert_double_gt(sd, 0.05);  /* random, not all ones */
		}
		if (specs[k].kind == WEIGHT_EMBED)
			ck_assert_double_eq_tol(sd, 3.0 / sqrt(mc.text.hidden_size), 0.01);
		if (specs[k].kind == WEIGHT_LINEAR_IN && t->numel >= 4096)
			ck_assert_double_eq_tol(sd * sqrt((double)specs[k].fan_in), 1.0, 0.05);
	}
	free(specs);
	model_weights_deinit(&w);
}
END_TEST

static char *make(const char *preset, const char *config, uint64_t seed, st_dtype dt, int threads,
		  const char *tag)
{
	char *dir = tu_mkdtemp(tag);
	mkmodel_opts o = { .preset = preset, .config_path = config, .out_dir = dir, .seed = seed,
			   .dtype = dt, .threads = threads };
	qerr e = {0};
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
	return dir;
}

START_TEST(test_mkmodel_same_seed_same_bytes)
{
	char *a = make("tiny", NULL, 1, ST_BF16, 1, "seed-a");
	char *c = make("tiny", NULL, 2, ST_BF16, 2, "seed-c");
	char pa[1024], pb[1024], pc[1024];
	snprintf(pa, sizeof(pa), "%s/model.safetensors", a);
	snprintf(pb, sizeof(pb), "%s/model.safetensors", tiny_dir);   /* seed 1, default threads */
	snprintf(pc, sizeof(pc), "%s/model.safetensors", c);
	size_t na = 0, nb = 0, nc = 0;
	char *da = tu_read(pa, &na), *db = tu_read(pb, &nb), *dc = tu_read(pc, &nc);
	ck_assert_uint_eq(na, nb);
	ck_assert(memcmp(da, db, na) == 0);
	ck_assert_uint_eq(na, nc);
	ck_assert(memcmp(da, dc, na) != 0);
	free(da);
	free(db);
	free(dc);
	tu_rmdir(a);
	tu_rmdir(c);
	free(a);
	free(c);
}
END_TEST

START_TEST(test_mkmodel_f32_holds_exact_values)
{
	char *dir = make("tiny", NULL, 5, ST_F32, 0, "f32");
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	model_weights w;
	qerr e = {0};
	ck_assert_int_eq(model_config_load_dir(dir, &mc, &gc, &pc, &e), 0);
	ck_assert_msg(model_weights_open(dir, &mc, &w, &e) == 0, "%s", e.msg);
	size_t n;
	weight_spec *specs = model_weights_manifest(&mc, NULL, &n);
	for (size_t k = 0; k < n; k += 7) {
		const st_tensor *t = st_set_find(w.st, specs[k].name);
		ck_assert_int_eq(t->dtype, ST_F32);
		const float *v = t->data;
		for (uint64_t i = 0; i < t->numel; i += 13)
			ck_assert(v[i] == mkmodel_value(5, k, i, specs[k].kind, specs[k].fan_in,
							mc.text.hidden_size));
	}
	free(specs);
	model_weights_deinit(&w);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_mkmodel_dense_qwen3_untied)
{
	char *cfgdir = tu_mkdtemp("qwen3cfg");
	char cfg[1024];
	snprintf(cfg, sizeof(cfg), "%s/config.json", cfgdir);
	const char *text = "{\"model_type\": \"qwen3\", \"architectures\": [\"Qwen3ForCausalLM\"],"
			   " \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 16,"
			   " \"vocab_size\": 151936, \"rope_theta\": 1000000, \"rms_norm_eps\": 1e-6,"
			   " \"tie_word_embeddings\": false, \"eos_token_id\": 151645}";
	tu_write(cfg, text, strlen(text));
	char *dir = make(NULL, cfg, 3, ST_BF16, 0, "qwen3");
	ck_assert(!tu_exists(dir, "preprocessor_config.json"));
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	model_weights w;
	qerr e = {0};
	ck_assert_int_eq(model_config_load_dir(dir, &mc, &gc, &pc, &e), 0);
	ck_assert_int_eq(mc.arch, MODEL_ARCH_QWEN3);
	ck_assert_msg(model_weights_open(dir, &mc, &w, &e) == 0, "%s", e.msg);
	ck_assert_ptr_nonnull(st_set_find(w.st, "lm_head.weight"));
	ck_assert_ptr_nonnull(st_set_find(w.st, "model.layers.1.mlp.down_proj.weight"));
	ck_assert_ptr_ne(w.lm_head, w.embed_tokens);
	ck_assert_ptr_null(w.pos_embed);
	model_weights_deinit(&w);
	tu_rmdir(dir);
	tu_rmdir(cfgdir);
	free(dir);
	free(cfgdir);
}
END_TEST

START_TEST(test_mkmodel_refuses_bad_input)
{
	char *dir = tu_mkdtemp("bad");
	char out[1024];
	snprintf(out, sizeof(out), "%s/m", dir);
	qerr e = {0};
	mkmodel_opts o = { .preset = "huge", .out_dir = out };
	ck_assert_int_eq(mkmodel_run(&o, &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "unknown preset 'huge'"));
	o.preset = "../presets/tiny";
	ck_assert_int_eq(mkmodel_run(&o, &e), -QERR_INVALID);

	char cfg[1024];
	snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
	const char *text = "{\"model_type\": \"qwen3\", \"num_hidden_layers\": 2}";
	tu_write(cfg, text, strlen(text));
	o = (mkmodel_opts){ .config_path = cfg, .out_dir = out };
	ck_assert_int_lt(mkmodel_run(&o, &e), 0);
	ck_assert_ptr_nonnull(strstr(e.msg, "hidden_size"));
	ck_assert(!tu_exists(out, "model.safetensors"));

	/* an output path that is a file */
	o = (mkmodel_opts){ .preset = "tiny", .out_dir = cfg };
	ck_assert_int_eq(mkmodel_run(&o, &e), -QERR_IO);
	ck_assert_ptr_nonnull(strstr(e.msg, "not a directory"));
	tu_rmdir(out);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mkmodel");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, make_tiny, remove_tiny);
	tcase_add_test(tc, test_mkmodel_tiny_directory_is_complete);
	tcase_add_test(tc, test_mkmodel_values_follow_the_formula);
	tcase_add_test(tc, test_mkmodel_same_seed_same_bytes);
	tcase_add_test(tc, test_mkmodel_f32_holds_exact_values);
	tcase_add_test(tc, test_mkmodel_dense_qwen3_untied);
	tcase_add_test(tc, test_mkmodel_refuses_bad_input);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
