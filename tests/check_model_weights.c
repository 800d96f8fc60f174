/*
 * Tests of model_weights: binding a checkpoint checks every tensor's presence and shape against
 * config.json, handles tied and untied LM heads, and reads sharded checkpoints. Broken
 * checkpoints are derived from a tiny mkmodel checkpoint by rewriting its safetensors.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datadir.h"
#include "mkmodel.h"
#include "model_config.h"
#include "model_weights.h"
#include "testutil.h"

static char *tiny_dir;

static void make_tiny(void)
{
	tiny_dir = tu_mkdtemp("weights-tiny");
	mkmodel_opts o = { .preset = "tiny", .out_dir = tiny_dir, .seed = 9, .dtype = ST_BF16 };
	qerr e = {0};
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
}

static void remove_tiny(void)
{
	tu_rmdir(tiny_dir);
	free(tiny_dir);
}

/* A copy of the tiny checkpoint's directory files except the weights, in a new directory. */
static char *copy_dir_without_weights(void)
{
	static const char *files[] = { "config.json", "generation_config.json",
				       "preprocessor_config.json", "tokenizer_config.json" };
	char *dir = tu_mkdtemp("weights-case");
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char src[1024], dst[1024];
		size_t n;
		snprintf(src, sizeof(src), "%s/%s", tiny_dir, files[i]);
		snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
		char *data = tu_read(src, &n);
		ck_assert_ptr_nonnull(data);
		tu_write(dst, data, n);
		free(data);
	}
	return dir;
}

typedef enum edit { EDIT_NONE, EDIT_DROP, EDIT_RESHAPE, EDIT_ADD_LM_HEAD } edit;

/* Write the tensors of the tiny checkpoint with indexes [lo, hi) to path, with one edit applied
 * to the tensor named `target`. */
static void rewrite(const char *path, size_t lo, size_t hi, edit ed, const char *target)
{
	st_set *st;
	char src[1024];
	qerr e = {0};
	snprintf(src, sizeof(src), "%s/model.safetensors", tiny_dir);
	ck_assert_int_eq(st_open_file(src, &st, &e), 0);
	if (hi > st_set_count(st))
		hi = st_set_count(st);
	st_spec *specs = calloc(hi - lo + 1, sizeof(*specs));
	const void **data = calloc(hi - lo + 1, sizeof(*data));
	size_t *len = calloc(hi - lo + 1, sizeof(*len));
	size_t n = 0;
	for (size_t i = lo; i < hi; i++) {
		const st_tensor *t = st_set_tensor(st, i);
		if (ed == EDIT_DROP && !strcmp(t->name, target))
			continue;
		st_spec *s = &specs[n];
		s->name = t->name;
		s->dtype = t->dtype;
		s->ndim = t->ndim;
		memcpy(s->shape, t->shape, sizeof(s->shape));
		if (ed == EDIT_RESHAPE && !strcmp(t->name, target)) {
			/* same bytes, rows and columns swapped: (out, in) -> (in, out) */
			s->shape[0] = t->shape[1];
			s->shape[1] = t->shape[0];
		}
		data[n] = t->data;
		len[n] = t->nbytes;
		n++;
		if (ed == EDIT_ADD_LM_HEAD && !strcmp(t->name, target)) {
			specs[n] = specs[n - 1];
			specs[n].name = "lm_head.weight";
			data[n] = t->data;
			len[n] = t->nbytes;
			n++;
		}
	}
	st_writer *w;
	ck_assert_msg(st_writer_open(path, specs, n, &w, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(st_writer_write(w, data[i], len[i], &e), 0);
	ck_assert_msg(st_writer_close(w, &e) == 0, "%s", e.msg);
	free(specs);
	free(data);
	free(len);
	st_set_free(st);
}

/* A copy of s with every `from` replaced by `to`. */
static char *replace_all(const char *s, const char *from, const char *to)
{
	size_t nf = strlen(from), nt = strlen(to), cap = strlen(s) * 2 + 64, k = 0;
	char *out = malloc(cap);
	while (*s) {
		if (!strncmp(s, from, nf)) {
			memcpy(out + k, to, nt);
			k += nt;
			s += nf;
		} else {
			out[k++] = *s++;
		}
	}
	out[k] = 0;
	return out;
}

/* Load dir's config.json and bind dir's weights. */
static int open_case(const char *dir, model_weights *w, qerr *e)
{
	model_config mc;
	char cfg[1024];
	snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
	ck_assert_int_eq(model_config_load(cfg, &mc, e), 0);
	return model_weights_open(dir, &mc, w, e);
}

static char *weights_path(const char *dir, const char *name)
{
	char *p = malloc(1024);
	snprintf(p, 1024, "%s/%s", dir, name);
	return p;
}

START_TEST(test_model_weights_missing_tensor)
{
	char *dir = copy_dir_without_weights();
	char *p = weights_path(dir, "model.safetensors");
	rewrite(p, 0, SIZE_MAX, EDIT_DROP, "model.language_model.layers.1.self_attn.k_norm.weight");
	model_weights w;
	qerr e = {0};
	ck_assert_int_eq(open_case(dir, &w, &e), -QERR_MISSING);
	ck_assert_msg(strstr(e.msg, "missing tensor model.language_model.layers.1.self_attn.k_norm.weight"),
		      "%s", e.msg);
	ck_assert_msg(strstr(e.msg, dir) == e.msg, "message should start with the checkpoint: %s", e.msg);
	free(p);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_model_weights_wrong_shape)
{
	char *dir = copy_dir_without_weights();
	char *p = weights_path(dir, "model.safetensors");
	rewrite(p, 0, SIZE_MAX, EDIT_RESHAPE, "model.visual.blocks.2.mlp.linear_fc1.weight");
	model_weights w;
	qerr e = {0};
	ck_assert_int_eq(open_case(dir, &w, &e), -QERR_INVALID);
	ck_assert_msg(strstr(e.msg, "model.visual.blocks.2.mlp.linear_fc1.weight has shape [64, 128] "
				    "but config.json implies [128, 64]"), "%s", e.msg);
	free(p);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_model_weights_tied_head_in_file_is_ignored)
{
	char *dir = copy_dir_without_weights();
	char *p = weights_path(dir, "model.safetensors");
	rewrite(p, 0, SIZE_MAX, EDIT_ADD_LM_HEAD, "model.language_model.embed_tokens.weight");
	model_weights w;
	qerr e = {0};
	ck_assert_msg(open_case(dir, &w, &e) == 0, "%s", e.msg);
	ck_assert_ptr_eq(w.lm_head, w.embed_tokens);
	model_weights_deinit(&w);
	free(p);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_model_weights_untied_needs_lm_head)
{
	char *dir = copy_dir_without_weights();
	/* the same config with untied embeddings */
	char *cfg = weights_path(dir, "config.json");
	size_t n;
	char *text = tu_read(cfg, &n);
	char *untied = replace_all(text, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
	free(text);
	text = untied;
	tu_write(cfg, text, strlen(text));
	free(text);
	char *p = weights_path(dir, "model.safetensors");
	rewrite(p, 0, SIZE_MAX, EDIT_NONE, "");
	model_weights w;
	qerr e = {0};
	ck_assert_int_eq(open_case(dir, &w, &e), -QERR_MISSING);
	ck_assert_msg(strstr(e.msg, "missing tensor lm_head.weight"), "%s", e.msg);
	/* with an lm_head.weight it binds, and the head is its own tensor */
	rewrite(p, 0, SIZE_MAX, EDIT_ADD_LM_HEAD, "model.language_model.embed_tokens.weight");
	ck_assert_msg(open_case(dir, &w, &e) == 0, "%s", e.msg);
	ck_assert_ptr_ne(w.lm_head, w.embed_tokens);
	model_weights_deinit(&w);
	free(cfg);
	free(p);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_model_weights_sharded_checkpoint)
{
	char *dir = copy_dir_without_weights();
	char *p1 = weights_path(dir, "model-00001-of-00002.safetensors");
	char *p2 = weights_path(dir, "model-00002-of-00002.safetensors");
	rewrite(p1, 0, 20, EDIT_NONE, "");
	rewrite(p2, 20, SIZE_MAX, EDIT_NONE, "");
	/* the index maps every tensor to its shard */
	st_set *a, *b;
	qerr e = {0};
	ck_assert_int_eq(st_open_file(p1, &a, &e), 0);
	ck_assert_int_eq(st_open_file(p2, &b, &e), 0);
	size_t cap = 1 << 20, len = 0;
	char *idx = malloc(cap);
	len += (size_t)snprintf(idx + len, cap - len, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
	for (int f = 0; f < 2; f++) {
		st_set *s = f ? b : a;
		for (size_t i = 0; i < st_set_count(s); i++)
			len += (size_t)snprintf(idx + len, cap - len, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
						len > 60 ? ", " : "", st_set_tensor(s, i)->name, f + 1);
	}
	len += (size_t)snprintf(idx + len, cap - len, "}}");
	char *ip = weights_path(dir, "model.safetensors.index.json");
	tu_write(ip, idx, len);
	st_set_free(a);
	st_set_free(b);
	model_weights w;
	ck_assert_msg(open_case(dir, &w, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(w.embed_tokens->file_index, 0);
	ck_assert_int_eq(w.deepstack[2].fc2_b->file_index, 1);
	model_weights_deinit(&w);
	free(idx);
	free(ip);
	free(p1);
	free(p2);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_model_weights_no_weights_file)
{
	char *dir = copy_dir_without_weights();
	model_weights w;
	qerr e = {0};
	ck_assert_int_eq(open_case(dir, &w, &e), -QERR_MISSING);
	ck_assert_msg(strstr(e.msg, "model.safetensors"), "%s", e.msg);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

/* The 2b preset's manifest is the published checkpoint: 625 tensors, 2,127,532,032 parameters
 * (spec/qwen3-vl.md §2), no lm_head.weight. */
START_TEST(test_model_weights_2b_manifest_matches_published)
{
	char path[4096];
	model_config mc;
	qerr e = {0};
	ck_assert_int_eq(datadir_find("presets/2b.json", path, sizeof(path), &e), 0);
	ck_assert_msg(model_config_load(path, &mc, &e) == 0, "%s", e.msg);
	size_t n;
	weight_spec *specs = model_weights_manifest(&mc, NULL, &n);
	ck_assert_uint_eq(n, 625);
	ck_assert_uint_eq(model_weights_numel(specs, n), 2127532032ull);
	uint64_t vision = 0;
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_ne(specs[i].name, "lm_head.weight");
		if (!strncmp(specs[i].name, "model.visual.", 13))
			vision += model_weights_numel(&specs[i], 1);
	}
	ck_assert_uint_eq(vision, 406957056ull);
	free(specs);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("model_weights");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, make_tiny, remove_tiny);
	tcase_add_test(tc, test_model_weights_missing_tensor);
	tcase_add_test(tc, test_model_weights_wrong_shape);
	tcase_add_test(tc, test_model_weights_tied_head_in_file_is_ignored);
	tcase_add_test(tc, test_model_weights_untied_needs_lm_head);
	tcase_add_test(tc, test_model_weights_sharded_checkpoint);
	tcase_add_test(tc, test_model_weights_no_weights_file);
	tcase_add_test(tc, test_model_weights_2b_manifest_matches_published);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
