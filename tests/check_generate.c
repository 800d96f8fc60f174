/*
 * generate and chat_request: request parsing errors (each with its code and a message naming
 * the field), and whole requests run on the `tiny` golden checkpoint (mkmodel seed 1, f32)
 * against tests/data/model-golden/golden.jsonl: greedy ids, prompt length with a data: URL
 * image, logprobs against a log_softmax computed here from a backend_step of our own, stop
 * strings, max_tokens, seeded sampling and token-id formatting.
 *
 * The model is made once in an unchecked fixture (the parent process), so forked tests share it.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"
#include "chat_request.h"
#include "generate.h"
#include "jsonx.h"
#include "mkmodel.h"
#include "testutil.h"

static char *model_dir;
static generate_model *model;

static const char *srcdir(void)
{
	const char *s = getenv("srcdir");
	return s && *s ? s : ".";
}

static void setup(void)
{
	model_dir = tu_mkdtemp("generate-model");
	char cfg[1024];
	snprintf(cfg, sizeof(cfg), "%s/tests/data/model-golden/configs/tiny.json", srcdir());
	mkmodel_opts o = { .config_path = cfg, .out_dir = model_dir, .seed = 1, .dtype = ST_F32 };
	qerr e = { 0 };
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
	ck_assert_msg(generate_model_load(model_dir, 1, &model, &e) == 0, "%s", e.msg);
}

static void teardown(void)
{
	generate_model_free(model);
	tu_rmdir(model_dir);
	free(model_dir);
}

/* The golden line of the tiny config for a prompt (owned by the caller). */
static json_object *golden(const char *prompt)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/model-golden/golden.jsonl", srcdir());
	char *text = tu_read(path, NULL), *save = NULL;
	ck_assert_ptr_nonnull(text);
	json_object *found = NULL;
	for (char *line = strtok_r(text, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
		json_object *g;
		ck_assert_int_eq(jsonx_parse(line, strlen(line), "golden", &g, NULL), 0);
		if (!strcmp(json_object_get_string(jsonx_member(g, "config")), "tiny") &&
		    !strcmp(json_object_get_string(jsonx_member(g, "prompt")), prompt))
			found = g;
		else
			json_object_put(g);
	}
	free(text);
	ck_assert_msg(found != NULL, "no tiny/%s line", prompt);
	return found;
}

static json_object *parse_json(const char *s)
{
	json_object *o;
	qerr e = { 0 };
	ck_assert_msg(jsonx_parse(s, strlen(s), "test", &o, &e) == 0, "%s", e.msg);
	return o;
}

/* The text prompt's messages plus extra fields (JSON members, no braces). */
static json_object *text_request(const char *extra)
{
	char *s = xasprintf("{\"messages\": [{\"role\": \"system\", \"content\": \"You are a helpful "
			    "assistant.\"}, {\"role\": \"user\", \"content\": \"What is the capital of "
			    "France? Answer in one word.\"}]%s%s}", *extra ? ", " : "", extra);
	json_object *o = parse_json(s);
	free(s);
	return o;
}

/* Parse and run body; the response (owned). */
static json_object *run(json_object *body)
{
	chat_request r;
	qerr e = { 0 };
	ck_assert_msg(chat_request_parse(body, true, &r, &e) == 0, "%s", e.msg);
	json_object *out;
	ck_assert_msg(generate_run(model, &r, &out, &e) == 0, "%s", e.msg);
	chat_request_deinit(&r);
	return out;
}

static json_object *choice(json_object *resp)
{
	return json_object_array_get_idx(jsonx_member(resp, "choices"), 0);
}

static const char *content(json_object *resp)
{
	return json_object_get_string(jsonx_member(jsonx_member(choice(resp), "message"), "content"));
}

static const char *finish(json_object *resp)
{
	return json_object_get_string(jsonx_member(choice(resp), "finish_reason"));
}

static int64_t usage(json_object *resp, const char *key)
{
	return json_object_get_int64(jsonx_member(jsonx_member(resp, "usage"), key));
}

/* The text of the golden greedy ids (heap). */
static char *golden_text(json_object *g, int n)
{
	int32_t ids[8];
	for (int i = 0; i < n; i++)
		ids[i] = json_object_get_int(json_object_array_get_idx(jsonx_member(g, "greedy_ids"), i));
	size_t len;
	return tok_decode(model->tok, ids, (size_t)n, true, &len);
}

static void assert_request_error(const char *body, int code, const char *substr)
{
	json_object *o = parse_json(body);
	chat_request r;
	qerr e = { 0 };
	int rc = chat_request_parse(o, false, &r, &e);
	ck_assert_msg(rc == -code, "%s: rc %d (%s), wanted %d", body, rc, e.msg, -code);
	ck_assert_msg(strstr(e.msg, substr) != NULL, "%s: message '%s' lacks '%s'", body, e.msg, substr);
	chat_request_deinit(&r);
	json_object_put(o);
}

START_TEST(test_generate_request_errors_name_the_field)
{
	const char *m = "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]";
	char b[1024];
#define ERR(extra, code, sub)                                          \
	do {                                                           \
		snprintf(b, sizeof(b), "{%s, %s}", m, extra);          \
		assert_request_error(b, code, sub);                            \
	} while (0)
	assert_request_error("{}", QERR_MISSING, "messages");
	assert_request_error("{\"messages\": {}}", QERR_FORMAT, "messages");
	ERR("\"temperature\": \"hot\"", QERR_FORMAT, "temperature");
	ERR("\"temperature\": -1", QERR_INVALID, "temperature");
	ERR("\"max_tokens\": \"8\"", QERR_FORMAT, "max_tokens");
	ERR("\"max_tokens\": 1.5", QERR_INVALID, "max_tokens");
	ERR("\"max_tokens\": 0", QERR_INVALID, "max_tokens");
	ERR("\"top_p\": 0", QERR_INVALID, "top_p");
	ERR("\"top_k\": -2", QERR_INVALID, "top_k");
	ERR("\"logprobs\": 1", QERR_FORMAT, "logprobs");
	ERR("\"stop\": 5", QERR_FORMAT, "stop");
	ERR("\"stop\": [\"a\", 1]", QERR_FORMAT, "stop[1]");
	ERR("\"stop_token_ids\": [-1]", QERR_INVALID, "stop_token_ids[0]");
	ERR("\"n\": 2", QERR_OK, "");
	ERR("\"n\": 129", QERR_INVALID, "n");
	ERR("\"n\": 0", QERR_INVALID, "n");
	ERR("\"presence_penalty\": 1.5", QERR_OK, "");
	ERR("\"presence_penalty\": 2.5", QERR_INVALID, "presence_penalty");
	ERR("\"frequency_penalty\": -3", QERR_INVALID, "frequency_penalty");
	ERR("\"frequency_penalty\": \"x\"", QERR_FORMAT, "frequency_penalty");
	ERR("\"repetition_penalty\": 1", QERR_OK, "");
	ERR("\"repetition_penalty\": 0", QERR_INVALID, "repetition_penalty");
	ERR("\"logprobs\": true, \"top_logprobs\": 21", QERR_INVALID, "top_logprobs");
	ERR("\"top_logprobs\": 3", QERR_INVALID, "needs logprobs");
	ERR("\"mm_processor_kwargs\": {\"max_pixels\": \"big\"}", QERR_FORMAT, "max_pixels");
	ERR("\"chat_template_kwargs\": {\"add_vision_id\": 1}", QERR_FORMAT, "add_vision_id");
	ERR("\"max_tokens\": 4, \"min_tokens\": 5", QERR_INVALID, "min_tokens");
#undef ERR
	const char *pre = "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"x\"}, ";
	snprintf(b, sizeof(b), "%s{\"type\": \"image_url\", \"image_url\": {\"url\": "
		 "\"data:image/png;base64,iVBO*w==\"}}]}]}", pre);
	assert_request_error(b, QERR_FORMAT, "messages[0].content[1]: base64: invalid character");
	snprintf(b, sizeof(b), "%s{\"type\": \"image_url\", \"image_url\": {\"url\": "
		 "\"data:image/png;base64,iVBOw\"}}]}]}", pre);
	assert_request_error(b, QERR_FORMAT, "multiple of 4");
	snprintf(b, sizeof(b), "%s{\"type\": \"image_url\", \"image_url\": {\"url\": "
		 "\"https://example.com/cat.png\"}}]}]}", pre);
	assert_request_error(b, QERR_UNSUPPORTED, "qvl-fcgi");
	snprintf(b, sizeof(b), "%s{\"type\": \"image\", \"image\": \"/etc/passwd\"}]}]}", pre);
	assert_request_error(b, QERR_UNSUPPORTED, "local image paths");
	snprintf(b, sizeof(b), "%s{\"type\": \"video\", \"video\": \"a.mp4\"}]}]}", pre);
	assert_request_error(b, QERR_UNSUPPORTED, "videos");
}
END_TEST

START_TEST(test_generate_base64_is_strict)
{
	char *out;
	size_t n;
	ck_assert_int_eq(chat_base64_decode("aGVsbG8=", 8, 100, &out, &n, NULL), 0);
	ck_assert_uint_eq(n, 5);
	ck_assert_str_eq(out, "hello");
	free(out);
	ck_assert_int_eq(chat_base64_decode("", 0, 100, &out, &n, NULL), 0);
	ck_assert_uint_eq(n, 0);
	free(out);
	ck_assert_int_eq(chat_base64_decode("aGVsbG9=", 8, 100, &out, &n, NULL), -QERR_FORMAT);  /* bits */
	ck_assert_int_eq(chat_base64_decode("aG=sbG8=", 8, 100, &out, &n, NULL), -QERR_FORMAT);  /* '=' inside */
	ck_assert_int_eq(chat_base64_decode("aGVs bG8", 8, 100, &out, &n, NULL), -QERR_FORMAT);
	ck_assert_int_eq(chat_base64_decode("aGVsbG8=", 8, 4, &out, &n, NULL), -QERR_LIMIT);
	ck_assert_ptr_null(out);
}
END_TEST

START_TEST(test_generate_greedy_text_matches_golden_with_logprobs)
{
	json_object *g = golden("text");
	json_object *req = text_request("\"max_tokens\": 8, \"ignore_eos\": true, \"temperature\": 0, "
					"\"logprobs\": true, \"top_logprobs\": 5, \"model\": \"m1\"");
	json_object *resp = run(req);
	char *want = golden_text(g, 8);
	ck_assert_str_eq(content(resp), want);
	ck_assert_str_eq(finish(resp), "length");
	ck_assert_str_eq(json_object_get_string(jsonx_member(resp, "model")), "m1");
	ck_assert_str_eq(json_object_get_string(jsonx_member(resp, "object")), "chat.completion");
	const char *id = json_object_get_string(jsonx_member(resp, "id"));
	ck_assert_uint_eq(strlen(id), 9 + 32);
	ck_assert_int_eq(strncmp(id, "chatcmpl-", 9), 0);
	json_object *gids = jsonx_member(g, "prompt_ids");
	int n = (int)json_object_array_length(gids);
	ck_assert_int_eq(usage(resp, "prompt_tokens"), n);
	ck_assert_int_eq(usage(resp, "completion_tokens"), 8);
	ck_assert_int_eq(usage(resp, "total_tokens"), n + 8);

	json_object *lp = jsonx_member(jsonx_member(choice(resp), "logprobs"), "content");
	ck_assert_uint_eq(json_object_array_length(lp), 8);
	for (int s = 0; s < 8; s++) {
		json_object *ent = json_object_array_get_idx(lp, s), *top = jsonx_member(ent, "top_logprobs");
		ck_assert_uint_eq(json_object_array_length(top), 5);
		ck_assert_str_eq(json_object_get_string(jsonx_member(json_object_array_get_idx(top, 0), "token")),
				 json_object_get_string(jsonx_member(ent, "token")));
		ck_assert(json_object_get_double(jsonx_member(ent, "logprob")) <= 0);
		int32_t gid = json_object_get_int(json_object_array_get_idx(jsonx_member(g, "greedy_ids"), s));
		size_t bl;
		const char *bytes = tok_id_bytes(model->tok, gid, &bl);
		json_object *jb = jsonx_member(ent, "bytes");
		ck_assert_uint_eq(json_object_array_length(jb), bl);
		for (size_t k = 0; k < bl; k++)
			ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(jb, k)), (unsigned char)bytes[k]);
	}

	/* step 0 independently: the golden prompt ids through the backend, log_softmax here */
	const model_config *mc = &model->mc;
	int V = mc->text.vocab_size, nb = n / 16 + 1;
	int32_t *ids = xcalloc((size_t)n, sizeof(int32_t)), *pos = xcalloc(3 * (size_t)n, sizeof(int32_t));
	int32_t *table = xcalloc((size_t)nb, sizeof(int32_t)), last = n - 1;
	for (int i = 0; i < n; i++) {
		ids[i] = json_object_get_int(json_object_array_get_idx(gids, i));
		pos[i] = pos[n + i] = pos[2 * n + i] = i;   /* text only: delta 0 */
	}
	for (int i = 0; i < nb; i++)
		table[i] = i;
	backend_opts bo = { .block_size = 16, .n_blocks = nb, .n_threads = 1 };
	backend *b;
	qerr e = { 0 };
	ck_assert_msg(backend_cpu_new(mc, &model->w, &bo, &b, &e) == 0, "%s", e.msg);
	float *logits = xcalloc((size_t)V, sizeof(float));
	backend_seq q = { .n_new = n, .ids = ids, .pos = pos, .block_table = table, .n_logits = 1,
			  .logit_rows = &last };
	ck_assert_msg(backend_step(b, &q, 1, logits, &e) == 0, "%s", e.msg);
	double mx = -INFINITY, sum = 0;
	for (int v = 0; v < V; v++)
		mx = fmax(mx, logits[v]);
	for (int v = 0; v < V; v++)
		sum += exp((double)logits[v] - mx);
	double lse = mx + log(sum);
	/* the 5 best by selection, ties to the lower id */
	int best[5];
	for (int k = 0; k < 5; k++) {
		best[k] = -1;
		for (int v = 0; v < V; v++) {
			bool used = false;
			for (int j = 0; j < k; j++)
				used |= best[j] == v;
			if (!used && (best[k] < 0 || logits[v] > logits[best[k]]))
				best[k] = v;
		}
	}
	json_object *ent = json_object_array_get_idx(lp, 0), *top = jsonx_member(ent, "top_logprobs");
	int32_t gid0 = json_object_get_int(json_object_array_get_idx(jsonx_member(g, "greedy_ids"), 0));
	ck_assert_int_eq(best[0], gid0);
	ck_assert_double_eq_tol(json_object_get_double(jsonx_member(ent, "logprob")), logits[gid0] - lse, 1e-5);
	for (int k = 0; k < 5; k++) {
		json_object *a = json_object_array_get_idx(top, k);
		ck_assert_double_eq_tol(json_object_get_double(jsonx_member(a, "logprob")), logits[best[k]] - lse, 1e-5);
		size_t bl;
		const char *bytes = tok_id_bytes(model->tok, best[k], &bl);
		ck_assert_uint_eq(json_object_array_length(jsonx_member(a, "bytes")), bl);
		for (size_t i = 0; i < bl; i++)
			ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(jsonx_member(a, "bytes"), i)),
					 (unsigned char)bytes[i]);
	}
	backend_free(b);
	free(logits);
	free(ids);
	free(pos);
	free(table);
	free(want);
	json_object_put(resp);
	json_object_put(req);
	json_object_put(g);
}
END_TEST

START_TEST(test_generate_image_data_url_matches_golden)
{
	json_object *g = golden("one-image");
	char path[1024];
	size_t len;
	snprintf(path, sizeof(path), "%s/tests/data/images-large/vga_640x480.webp", srcdir());
	char *img = tu_read(path, &len);
	ck_assert_ptr_nonnull(img);
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	strbuf b64 = { 0 };
	for (size_t i = 0; i < len; i += 3) {
		uint32_t w = (uint32_t)(unsigned char)img[i] << 16;
		if (i + 1 < len)
			w |= (uint32_t)(unsigned char)img[i + 1] << 8;
		if (i + 2 < len)
			w |= (unsigned char)img[i + 2];
		strbuf_addc(&b64, al[w >> 18 & 63]);
		strbuf_addc(&b64, al[w >> 12 & 63]);
		strbuf_addc(&b64, i + 1 < len ? al[w >> 6 & 63] : '=');
		strbuf_addc(&b64, i + 2 < len ? al[w & 63] : '=');
	}
	char *body = xasprintf("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
			       "\"image_url\": {\"url\": \"data:image/webp;base64,%s\"}}, {\"type\": \"text\", "
			       "\"text\": \"Describe this image.\"}]}], \"max_tokens\": 8, \"ignore_eos\": true, "
			       "\"temperature\": 0}", strbuf_str(&b64));
	json_object *req = parse_json(body);
	json_object *resp = run(req);
	ck_assert_int_eq(usage(resp, "prompt_tokens"), (int64_t)json_object_array_length(jsonx_member(g, "prompt_ids")));
	char *want = golden_text(g, 8);
	ck_assert_str_eq(content(resp), want);
	ck_assert(json_object_is_type(jsonx_member(choice(resp), "logprobs"), json_type_null));
	free(want);
	free(body);
	free(img);
	strbuf_deinit(&b64);
	json_object_put(req);
	json_object_put(resp);
	json_object_put(g);
}
END_TEST

START_TEST(test_generate_stop_string_cuts_the_text)
{
	json_object *g = golden("text");
	char *three = golden_text(g, 3);   /* the greedy token repeats: three copies of its text */
	char *extra = xasprintf("\"max_tokens\": 8, \"ignore_eos\": true, \"temperature\": 0, \"stop\": [\"%s\"]", three);
	json_object *req = text_request(extra), *resp = run(req);
	ck_assert_str_eq(finish(resp), "stop");
	ck_assert_str_eq(content(resp), "");
	ck_assert_int_eq(usage(resp, "completion_tokens"), 3);
	json_object_put(req);
	json_object_put(resp);
	free(extra);

	extra = xasprintf("\"max_tokens\": 8, \"ignore_eos\": true, \"temperature\": 0, \"stop\": \"%s\", "
			  "\"include_stop_str_in_output\": true", three);
	req = text_request(extra);
	resp = run(req);
	ck_assert_str_eq(finish(resp), "stop");
	ck_assert_str_eq(content(resp), three);
	json_object_put(req);
	json_object_put(resp);
	free(extra);
	free(three);
	json_object_put(g);
}
END_TEST

START_TEST(test_generate_stop_token_id_and_max_tokens)
{
	json_object *g = golden("text");
	int32_t gid = json_object_get_int(json_object_array_get_idx(jsonx_member(g, "greedy_ids"), 0));
	char *extra = xasprintf("\"max_tokens\": 3, \"temperature\": 0, \"stop_token_ids\": [%d]", gid);
	json_object *req = text_request(extra), *resp = run(req);
	ck_assert_str_eq(finish(resp), "stop");
	ck_assert_str_eq(content(resp), "");
	ck_assert_int_eq(usage(resp, "completion_tokens"), 1);
	json_object_put(req);
	json_object_put(resp);
	free(extra);

	req = text_request("\"max_completion_tokens\": 2, \"temperature\": 0, \"ignore_eos\": true");
	resp = run(req);
	ck_assert_str_eq(finish(resp), "length");
	ck_assert_int_eq(usage(resp, "completion_tokens"), 2);
	char *want = golden_text(g, 2);
	ck_assert_str_eq(content(resp), want);
	free(want);
	json_object_put(req);
	json_object_put(resp);
	json_object_put(g);
}
END_TEST

START_TEST(test_generate_same_seed_same_output)
{
	const char *extra = "\"max_tokens\": 6, \"temperature\": 0.8, \"seed\": 1234, \"ignore_eos\": true, "
			    "\"return_tokens_as_token_ids\": true, \"logprobs\": true";
	json_object *req = text_request(extra), *a = run(req), *b = run(req);
	ck_assert_str_eq(content(a), content(b));
	json_object *la = jsonx_member(jsonx_member(choice(a), "logprobs"), "content");
	json_object *lb = jsonx_member(jsonx_member(choice(b), "logprobs"), "content");
	ck_assert_uint_eq(json_object_array_length(la), 6);
	for (size_t i = 0; i < 6; i++)
		ck_assert_str_eq(json_object_get_string(jsonx_member(json_object_array_get_idx(la, i), "token")),
				 json_object_get_string(jsonx_member(json_object_array_get_idx(lb, i), "token")));
	json_object_put(a);
	json_object_put(b);
	json_object_put(req);
}
END_TEST

START_TEST(test_generate_tokens_as_token_ids)
{
	json_object *g = golden("text");
	json_object *req = text_request("\"max_tokens\": 2, \"temperature\": 0, \"ignore_eos\": true, "
					"\"logprobs\": true, \"top_logprobs\": 2, \"return_tokens_as_token_ids\": true");
	json_object *resp = run(req);
	char want[32];
	snprintf(want, sizeof(want), "token_id:%d",
		 json_object_get_int(json_object_array_get_idx(jsonx_member(g, "greedy_ids"), 0)));
	json_object *ent = json_object_array_get_idx(jsonx_member(jsonx_member(choice(resp), "logprobs"), "content"), 0);
	ck_assert_str_eq(json_object_get_string(jsonx_member(ent, "token")), want);
	json_object *t0 = json_object_array_get_idx(jsonx_member(ent, "top_logprobs"), 0);
	ck_assert_str_eq(json_object_get_string(jsonx_member(t0, "token")), want);
	ck_assert_int_eq(strncmp(json_object_get_string(jsonx_member(json_object_array_get_idx(
				     jsonx_member(ent, "top_logprobs"), 1), "token")), "token_id:", 9), 0);
	json_object_put(req);
	json_object_put(resp);
	json_object_put(g);
}
END_TEST

START_TEST(test_generate_n_choices_and_usage)
{
	/* n = 3 seeded choices: three entries indexed 0..2; choice i is what a single request
	 * seeded with seed + i gives (vLLM's child seeds); usage sums the three */
	json_object *req = text_request("\"max_tokens\": 5, \"temperature\": 1.0, \"seed\": 77, "
					"\"ignore_eos\": true, \"n\": 3");
	json_object *resp = run(req);
	json_object *choices = jsonx_member(resp, "choices");
	ck_assert_uint_eq(json_object_array_length(choices), 3);
	for (int i = 0; i < 3; i++) {
		json_object *c = json_object_array_get_idx(choices, (size_t)i);
		ck_assert_int_eq(json_object_get_int(jsonx_member(c, "index")), i);
		ck_assert_str_eq(json_object_get_string(jsonx_member(c, "finish_reason")), "length");
		char extra[160];
		snprintf(extra, sizeof(extra), "\"max_tokens\": 5, \"temperature\": 1.0, \"seed\": %d, "
			 "\"ignore_eos\": true", 77 + i);
		json_object *one_req = text_request(extra), *one = run(one_req);
		ck_assert_str_eq(json_object_get_string(jsonx_member(jsonx_member(c, "message"), "content")),
				 content(one));
		json_object_put(one);
		json_object_put(one_req);
	}
	json_object *u = jsonx_member(resp, "usage");
	ck_assert_int_eq(json_object_get_int(jsonx_member(u, "completion_tokens")), 15);
	ck_assert_ptr_nonnull(jsonx_member(jsonx_member(u, "prompt_tokens_details"), "cached_tokens"));
	json_object_put(resp);
	json_object_put(req);
}
END_TEST

START_TEST(test_generate_penalties_change_greedy_output)
{
	/* a strong repetition penalty cannot leave greedy decoding untouched over 12 tokens of a
	 * random model that repeats itself; the raw logprobs of the first token do not move */
	const char *base = "\"max_tokens\": 12, \"temperature\": 0, \"ignore_eos\": true, "
			   "\"return_tokens_as_token_ids\": true, \"logprobs\": true";
	char extra[256];
	json_object *req = text_request(base), *plain = run(req);
	snprintf(extra, sizeof(extra), "%s, \"repetition_penalty\": 50, \"frequency_penalty\": 2", base);
	json_object *preq = text_request(extra), *pen = run(preq);
	json_object *la = jsonx_member(jsonx_member(choice(plain), "logprobs"), "content");
	json_object *lb = jsonx_member(jsonx_member(choice(pen), "logprobs"), "content");
	bool differs = false;
	for (size_t i = 0; i < 12; i++)
		differs |= strcmp(json_object_get_string(jsonx_member(json_object_array_get_idx(la, i), "token")),
				  json_object_get_string(jsonx_member(json_object_array_get_idx(lb, i), "token"))) != 0;
	ck_assert_msg(differs, "penalties left greedy decoding unchanged");
	/* no token repeats under the penalties */
	for (size_t i = 0; i < 12; i++)
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(json_object_get_string(jsonx_member(json_object_array_get_idx(lb, i), "token")),
					 json_object_get_string(jsonx_member(json_object_array_get_idx(lb, j), "token")));
	ck_assert_double_eq_tol(json_object_get_double(jsonx_member(json_object_array_get_idx(la, 0), "logprob")),
				json_object_get_double(jsonx_member(json_object_array_get_idx(lb, 0), "logprob")),
				1e-9);
	json_object_put(plain);
	json_object_put(pen);
	json_object_put(req);
	json_object_put(preq);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("generate");
	TCase *tc = tcase_create("request");
	tcase_add_test(tc, test_generate_request_errors_name_the_field);
	tcase_add_test(tc, test_generate_base64_is_strict);
	suite_add_tcase(s, tc);
	tc = tcase_create("model");
	tcase_set_timeout(tc, 600);
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_generate_greedy_text_matches_golden_with_logprobs);
	tcase_add_test(tc, test_generate_image_data_url_matches_golden);
	tcase_add_test(tc, test_generate_stop_string_cuts_the_text);
	tcase_add_test(tc, test_generate_stop_token_id_and_max_tokens);
	tcase_add_test(tc, test_generate_same_seed_same_output);
	tcase_add_test(tc, test_generate_tokens_as_token_ids);
	tcase_add_test(tc, test_generate_n_choices_and_usage);
	tcase_add_test(tc, test_generate_penalties_change_greedy_output);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
