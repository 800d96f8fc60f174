/*
 * Decoding + Qwen3-VL preprocessing against Hugging Face's processor: every line of
 * tests/data/img-golden.jsonl (made on the GPU machine by tests/golden/make_image_golden.py from
 * the images in tests/data/images and tests/data/images-large, opened with PIL and processed by
 * transformers' torchvision processor under several min/max-pixel settings) must give the same
 * grid, resized size, token count and pixel_values — compared as the sha256 of the float32
 * little-endian bytes, i.e. bit for bit.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img_decode.h"
#include "img_preprocess.h"
#include "jsonx.h"
#include "sha256.h"
#include "testutil.h"

static char *find_image(const char *srcdir, const char *name, size_t *len)
{
	static const char *dirs[] = { "tests/data/images", "tests/data/images-large" };
	for (size_t i = 0; i < 2; i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s/%s", srcdir, dirs[i], name);
		char *data = tu_read(path, len);
		if (data)
			return data;
	}
	return NULL;
}

static int64_t setting(json_object *settings, const char *key)
{
	int64_t v = 0;   /* null: the config's own bound */
	json_object *x = jsonx_member(settings, key);
	if (x)
		ck_assert(jsonx_as_int(x, 1, INT64_MAX, &v));
	return v;
}

START_TEST(test_img_golden_matches_hugging_face)
{
	const char *srcdir = getenv("srcdir");
	if (!srcdir)
		srcdir = ".";
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/img-golden.jsonl", srcdir);
	size_t n;
	char *text = tu_read(path, &n);
	ck_assert_msg(text != NULL, "cannot read %s", path);
	preprocessor_config pc;
	preprocessor_config_defaults(&pc);
	int lines = 0, files = 0;
	char last[256] = "";
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		json_object *g;
		qerr e = { 0 };
		ck_assert_int_eq(jsonx_parse(line, strlen(line), "golden", &g, &e), 0);
		const char *file = json_object_get_string(jsonx_member(g, "file"));
		json_object *settings = jsonx_member(g, "settings");
		size_t len;
		char *data = find_image(srcdir, file, &len);
		ck_assert_msg(data != NULL, "golden image %s not found", file);
		img_rgb im = { 0 };
		img_limits lim = { 0 };
		ck_assert_msg(img_decode(data, len, &lim, &im, &e) == 0, "%s: %s", file, e.msg);
		img_patches p = { 0 };
		ck_assert_msg(img_preprocess(&im, &pc, setting(settings, "min_pixels"),
					     setting(settings, "max_pixels"), &p, &e) == 0, "%s: %s", file, e.msg);
		json_object *grid = jsonx_member(g, "grid_thw"), *rs = jsonx_member(g, "resized");
		const char *where = json_object_get_string(jsonx_member(settings, "name"));
		ck_assert_msg(p.grid_t == json_object_get_int(json_object_array_get_idx(grid, 0)) &&
			      p.grid_h == json_object_get_int(json_object_array_get_idx(grid, 1)) &&
			      p.grid_w == json_object_get_int(json_object_array_get_idx(grid, 2)),
			      "%s (%s): grid %d,%d,%d differs from %s", file, where, p.grid_t, p.grid_h,
			      p.grid_w, json_object_to_json_string(grid));
		ck_assert_int_eq(p.resized_height, json_object_get_int(json_object_array_get_idx(rs, 0)));
		ck_assert_int_eq(p.resized_width, json_object_get_int(json_object_array_get_idx(rs, 1)));
		ck_assert_int_eq(p.n_tokens, json_object_get_int64(jsonx_member(g, "n_tokens")));
		uint8_t d[32];
		char hex[65];
		sha256(p.pixel_values, p.rows * p.cols * sizeof(float), d);   /* x86-64: little-endian */
		sha256_hex(d, hex);
		ck_assert_msg(!strcmp(hex, json_object_get_string(jsonx_member(g, "sha256"))),
			      "%s (%s): pixel_values differ from Hugging Face's (first value %.9g)", file,
			      where, (double)p.pixel_values[0]);
		img_patches_deinit(&p);
		img_rgb_deinit(&im);
		free(data);
		if (strcmp(last, file)) {
			files++;
			snprintf(last, sizeof(last), "%s", file);
		}
		json_object_put(g);
		lines++;
	}
	ck_assert_int_ge(files, 25);
	fprintf(stderr, "%d images, %d (image, setting) cases identical to Hugging Face\n", files, lines);
	free(text);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("img_golden");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_img_golden_matches_hugging_face);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
