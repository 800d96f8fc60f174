/*
 * qvl: the offline command line — the libraries of the server, run in-process.
 *
 *   qvl mkmodel (--preset tiny|2b | --config FILE) [--seed N] [--dtype bf16|f32] --out DIR
 *   qvl inspect [--model] DIR
 *   qvl tokenize --model DIR [--chat]      (standard input: text, or a chat request with --chat)
 *   qvl detokenize --model DIR [--skip-special-tokens]   (standard input: a JSON array of ids)
 *   qvl image [--model DIR] [--min-pixels N] [--max-pixels N] [--dump-pixels OUT] FILE
 *   qvl generate --model DIR [--backend cpu|cuda] [--max-tokens N]   (standard input: a chat request)
 *   qvl bench (--url URL | --fcgi TARGET | --socket PATH) [...]  (a load generator: bench.h)
 *
 * Each subcommand parses its own flags and calls library code; nothing here is needed by the
 * daemon or the responders. Exit status: 0 success, 1 the work failed (the message names the
 * file and the problem), 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json.h>

#include "alloc.h"
#include "bench.h"
#include "chat_request.h"
#include "chat_template.h"
#include "generate.h"
#include "img_decode.h"
#include "img_preprocess.h"
#include "jsonx.h"
#include "log.h"
#include "mkmodel.h"
#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"
#include "safetensors.h"
#include "strbuf.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
	fputs("usage: qvl COMMAND [ARGS]\n"
	      "\n"
	      "commands:\n"
	      "  mkmodel (--preset tiny|2b | --config FILE) [--seed N] [--dtype bf16|f32] --out DIR\n"
	      "          make a Hugging Face-style model directory with random weights\n"
	      "  inspect [--model] DIR\n"
	      "          load a model directory (config, weights, shapes) and print a summary\n"
	      "  tokenize --model DIR [--chat]\n"
	      "          print the token ids of standard input as a JSON array; with --chat, read an\n"
	      "          OpenAI chat-completions request and print the rendered prompt and its ids\n"
	      "  detokenize --model DIR [--skip-special-tokens]\n"
	      "          read a JSON array of ids and print their text\n"
	      "  image [--model DIR] [--min-pixels N] [--max-pixels N] [--dump-pixels OUT] FILE\n"
	      "          decode and preprocess an image as the Qwen3-VL processor does; print its\n"
	      "          sizes, grid and token count; --dump-pixels writes pixel_values as float32\n"
	      "  generate --model DIR [--backend cpu|cuda] [--max-tokens N]\n"
	      "          run an OpenAI chat-completions request from standard input in-process and\n"
	      "          print the chat.completion response as one line of JSON\n"
	      "  bench (--url http://HOST:PORT | --fcgi PATH|HOST:PORT | --socket QVLD_SOCKET) [...]\n"
	      "          load a running server like vllm bench serve (qvl bench --help)\n"
	      "\n"
	      "QVL_LOG_LEVEL=debug|info|warn|err sets the log level.\n",
	      f);
}

static int fail(const qerr *e)
{
	fprintf(stderr, "qvl: %s\n", e->msg);
	return 1;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int cmd_mkmodel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "preset", required_argument, NULL, 'p' }, { "config", required_argument, NULL, 'c' },
		{ "seed", required_argument, NULL, 's' },   { "dtype", required_argument, NULL, 'd' },
		{ "out", required_argument, NULL, 'o' },    { "threads", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	mkmodel_opts o = { .dtype = ST_BF16 };
	uint64_t v;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': o.preset = optarg; break;
		case 'c': o.config_path = optarg; break;
		case 'o': o.out_dir = optarg; break;
		case 's':
			if (parse_u64(optarg, &o.seed)) {
				fprintf(stderr, "qvl mkmodel: --seed: '%s' is not a non-negative integer\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (parse_u64(optarg, &v) || v > 1024) {
				fprintf(stderr, "qvl mkmodel: --threads: '%s' is not a thread count\n", optarg);
				return 2;
			}
			o.threads = (int)v;
			break;
		case 'd':
			if (!strcmp(optarg, "bf16") || !strcmp(optarg, "bfloat16"))
				o.dtype = ST_BF16;
			else if (!strcmp(optarg, "f32") || !strcmp(optarg, "float32"))
				o.dtype = ST_F32;
			else if (!strcmp(optarg, "f16") || !strcmp(optarg, "float16"))
				o.dtype = ST_F16;
			else {
				fprintf(stderr, "qvl mkmodel: --dtype: '%s' is not bf16, f16 or f32\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !o.out_dir || (!o.preset == !o.config_path)) {
		fprintf(stderr, "qvl mkmodel: give exactly one of --preset or --config, and --out DIR\n");
		return 2;
	}
	qerr e = {0};
	if (mkmodel_run(&o, &e))
		return fail(&e);
	return 0;
}

static const char *arch_name(model_arch a)
{
	return a == MODEL_ARCH_QWEN3_VL ? "qwen3_vl" : "qwen3";
}

static int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!dir && optind < argc)
		dir = argv[optind++];
	if (!dir || optind != argc) {
		fprintf(stderr, "qvl inspect: give one model directory\n");
		return 2;
	}
	qerr e = {0};
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	model_weights w;
	if (model_config_load_dir(dir, &mc, &gc, &pc, &e))
		return fail(&e);
	if (model_weights_open(dir, &mc, &w, &e))
		return fail(&e);

	uint64_t params = 0, bytes = 0;
	int dtypes = 0;
	for (size_t i = 0; i < st_set_count(w.st); i++) {
		const st_tensor *t = st_set_tensor(w.st, i);
		params += t->numel;
		bytes += t->nbytes;
		dtypes |= 1 << t->dtype;
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "model", json_object_new_string(dir));
	json_object_object_add(o, "model_type", json_object_new_string(arch_name(mc.arch)));
	json_object_object_add(o, "tensors", json_object_new_int64((int64_t)st_set_count(w.st)));
	json_object_object_add(o, "parameters", json_object_new_int64((int64_t)params));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bytes));
	json_object *dt = json_object_new_array();
	for (int d = ST_BF16; d <= ST_F32; d++)
		if (dtypes & (1 << d))
			json_object_array_add(dt, json_object_new_string(st_dtype_name((st_dtype)d)));
	json_object_object_add(o, "dtypes", dt);
	json_object_object_add(o, "tied_embeddings", json_object_new_boolean(w.lm_head == w.embed_tokens));
	json_object *t = json_object_new_object();
	json_object_object_add(t, "layers", json_object_new_int(mc.text.num_hidden_layers));
	json_object_object_add(t, "hidden_size", json_object_new_int(mc.text.hidden_size));
	json_object_object_add(t, "heads", json_object_new_int(mc.text.num_attention_heads));
	json_object_object_add(t, "kv_heads", json_object_new_int(mc.text.num_key_value_heads));
	json_object_object_add(t, "head_dim", json_object_new_int(mc.text.head_dim));
	json_object_object_add(t, "vocab_size", json_object_new_int(mc.text.vocab_size));
	json_object_object_add(o, "text", t);
	if (mc.has_vision) {
		json_object *v = json_object_new_object();
		json_object_object_add(v, "depth", json_object_new_int(mc.vision.depth));
		json_object_object_add(v, "hidden_size", json_object_new_int(mc.vision.hidden_size));
		json_object_object_add(v, "heads", json_object_new_int(mc.vision.num_heads));
		json_object *ds = json_object_new_array();
		for (int k = 0; k < mc.vision.n_deepstack; k++)
			json_object_array_add(ds, json_object_new_int(mc.vision.deepstack_visual_indexes[k]));
		json_object_object_add(v, "deepstack_visual_indexes", ds);
		json_object_object_add(o, "vision", v);
	}
	json_object *eos = json_object_new_array();
	for (int k = 0; k < gc.n_eos; k++)
		json_object_array_add(eos, json_object_new_int(gc.eos_token_ids[k]));
	json_object_object_add(o, "eos_token_ids", eos);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	model_weights_deinit(&w);
	return 0;
}

/* Requests and id lists read from standard input are capped (the web server caps bodies too). */
#define MAX_STDIN_BYTES (256u << 20)

/* All of standard input, byte-exact. */
static int read_stdin(strbuf *b, qerr *e)
{
	char buf[65536];
	for (;;) {
		ssize_t r = read(0, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return qerr_set(e, QERR_IO, "standard input: %s", strerror(errno));
		if (r == 0)
			return 0;
		if (b->len + (size_t)r > MAX_STDIN_BYTES)
			return qerr_set(e, QERR_LIMIT, "standard input: more than %u bytes", MAX_STDIN_BYTES);
		strbuf_add(b, buf, (size_t)r);
	}
}

static int load_tokenizer(const char *dir, tokenizer **t, qerr *e)
{
	char *path = xasprintf("%s/tokenizer.json", dir);
	int rc = tok_load(path, t, e);
	free(path);
	return rc;
}

static void print_ids(strbuf *out, const tok_ids *ids)
{
	strbuf_addc(out, '[');
	for (size_t i = 0; i < ids->n; i++)
		strbuf_addf(out, i ? ", %d" : "%d", ids->v[i]);
	strbuf_addc(out, ']');
}

/* A chat request: the prompt the template renders and its ids. Images and videos need the
 * image preprocessing (their grids decide the placeholder counts), which this command does
 * not do yet: such requests are refused, naming the part. */
static int tokenize_chat(const char *dir, const tokenizer *t, const strbuf *in, strbuf *out,
			 qerr *e)
{
	json_object *req = NULL, *messages = NULL, *tools = NULL, *kwargs = NULL;
	int rc = chat_template_check(dir, e);
	if (!rc)
		rc = jsonx_parse(strbuf_str(in), in->len, "request", &req, e);
	if (!rc && !json_object_is_type(req, json_type_object))
		rc = qerr_set(e, QERR_FORMAT, "request: expected a JSON object");
	if (!rc) {
		rc = jsonx_get_array(req, "messages", &messages, "request", e);
		if (rc == 1)
			rc = qerr_set(e, QERR_MISSING, "request: messages: missing");
	}
	if (!rc && jsonx_get_array(req, "tools", &tools, "request", e) < 0)
		rc = -e->code;
	chat_opts o = { .add_generation_prompt = true };
	if (!rc && jsonx_get_bool(req, "add_generation_prompt", &o.add_generation_prompt, "request", e) < 0)
		rc = -e->code;
	if (!rc && jsonx_get_object(req, "chat_template_kwargs", &kwargs, "request", e) < 0)
		rc = -e->code;
	if (!rc && kwargs && jsonx_get_bool(kwargs, "add_vision_id", &o.add_vision_id,
					    "request: chat_template_kwargs", e) < 0)
		rc = -e->code;
	char *prompt = NULL;
	size_t plen = 0;
	int n_images = 0, n_videos = 0;
	if (!rc)
		rc = chat_render(messages, tools, &o, &prompt, &plen, &n_images, &n_videos, e);
	if (!rc && (n_images || n_videos))
		rc = qerr_set(e, QERR_UNSUPPORTED,
			      "request: %d image(s) and %d video(s): placeholders need image "
			      "preprocessing, which qvl tokenize does not do yet", n_images, n_videos);
	if (!rc) {
		tok_ids ids = { 0 };
		tok_encode(t, prompt, plen, &ids);
		json_object *p = json_object_new_string_len(prompt, (int)plen);
		strbuf_adds(out, "{\"prompt\": ");
		strbuf_adds(out, json_object_to_json_string_ext(p, JSON_C_TO_STRING_NOSLASHESCAPE));
		strbuf_adds(out, ", \"prompt_token_ids\": ");
		print_ids(out, &ids);
		strbuf_adds(out, "}\n");
		json_object_put(p);
		tok_ids_deinit(&ids);
	}
	free(prompt);
	json_object_put(req);
	return rc;
}

static int cmd_tokenize(int argc, char **argv, bool decode)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "chat", no_argument, NULL, 'c' },
		{ "skip-special-tokens", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool chat = false, skip = false;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': dir = optarg; break;
		case 'c': chat = true; break;
		case 's': skip = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!dir || optind != argc || (decode && chat) || (!decode && skip)) {
		fprintf(stderr, "qvl %s: usage: qvl %s\n", decode ? "detokenize" : "tokenize",
			decode ? "detokenize --model DIR [--skip-special-tokens]"
			       : "tokenize --model DIR [--chat]");
		return 2;
	}
	qerr e = { 0 };
	tokenizer *t = NULL;
	strbuf in = { 0 }, out = { 0 };
	int rc = load_tokenizer(dir, &t, &e);
	if (!rc)
		rc = read_stdin(&in, &e);
	if (!rc && decode) {
		json_object *arr = NULL;
		rc = jsonx_parse(strbuf_str(&in), in.len, "standard input", &arr, &e);
		if (!rc && !json_object_is_type(arr, json_type_array))
			rc = qerr_set(&e, QERR_FORMAT, "standard input: expected a JSON array of token ids");
		tok_ids ids = { 0 };
		for (size_t i = 0; !rc && i < json_object_array_length(arr); i++) {
			int64_t id;
			if (!jsonx_as_int(json_object_array_get_idx(arr, i), 0, tok_vocab_size(t) - 1, &id) ||
			    !tok_id_bytes(t, (int32_t)id, &(size_t){ 0 }))
				rc = qerr_set(&e, QERR_INVALID, "standard input: [%zu]: %s is not a token id",
					      i, json_object_to_json_string(json_object_array_get_idx(arr, i)));
			else
				tok_ids_push(&ids, (int32_t)id);
		}
		if (!rc) {
			size_t len;
			char *text = tok_decode(t, ids.v, ids.n, skip, &len);
			strbuf_add(&out, text, len);
			free(text);
		}
		tok_ids_deinit(&ids);
		json_object_put(arr);
	} else if (!rc && chat) {
		rc = tokenize_chat(dir, t, &in, &out, &e);
	} else if (!rc) {
		tok_ids ids = { 0 };
		tok_encode(t, strbuf_str(&in), in.len, &ids);
		print_ids(&out, &ids);
		strbuf_addc(&out, '\n');
		tok_ids_deinit(&ids);
	}
	if (!rc && fwrite(strbuf_str(&out), 1, out.len, stdout) != out.len)
		rc = qerr_set(&e, QERR_IO, "standard output: %s", strerror(errno));
	strbuf_deinit(&in);
	strbuf_deinit(&out);
	tok_free(t);
	return rc ? fail(&e) : 0;
}

static int write_all(const char *path, const void *data, size_t n, qerr *e)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return qerr_set(e, QERR_IO, "%s: %s", path, strerror(errno));
	size_t w = fwrite(data, 1, n, f);
	int bad = w != n || fclose(f) != 0;
	return bad ? qerr_set(e, QERR_IO, "%s: write failed", path) : 0;
}

static int cmd_image(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "min-pixels", required_argument, NULL, 'a' },
		{ "max-pixels", required_argument, NULL, 'b' },
		{ "dump-pixels", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *dump = NULL;
	uint64_t minp = 0, maxp = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': dir = optarg; break;
		case 'd': dump = optarg; break;
		case 'a':
		case 'b':
			if (parse_u64(optarg, c == 'a' ? &minp : &maxp) || (c == 'a' ? minp : maxp) > INT64_MAX) {
				fprintf(stderr, "qvl image: --%s: '%s' is not a pixel count\n",
					c == 'a' ? "min-pixels" : "max-pixels", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "qvl image: give one image file\n");
		return 2;
	}
	const char *file = argv[optind];
	qerr e = { 0 };
	preprocessor_config pc;
	int rc = 0;
	if (dir) {
		char *path = xasprintf("%s/preprocessor_config.json", dir);
		rc = preprocessor_config_load(path, &pc, &e);
		free(path);
	} else {
		preprocessor_config_defaults(&pc);
	}
	char *data = NULL;
	size_t len = 0;
	img_rgb im = { 0 };
	img_patches p = { 0 };
	img_limits lim = { 0 };
	if (!rc)
		rc = jsonx_read_file(file, IMG_DEFAULT_MAX_BYTES, &data, &len, &e);
	if (!rc && (rc = img_decode(data, len, &lim, &im, &e)))
		qerr_prefix(&e, "%s", file);
	if (!rc)
		rc = img_preprocess(&im, &pc, (int64_t)minp, (int64_t)maxp, &p, &e);
	if (!rc && dump)
		rc = write_all(dump, p.pixel_values, p.rows * p.cols * sizeof(float), &e);
	if (!rc)
		printf("{\"width\": %d, \"height\": %d, \"resized_width\": %d, \"resized_height\": %d, "
		       "\"grid_thw\": [%d, %d, %d], \"tokens\": %lld}\n",
		       p.width, p.height, p.resized_width, p.resized_height, p.grid_t, p.grid_h, p.grid_w,
		       (long long)p.n_tokens);
	img_patches_deinit(&p);
	img_rgb_deinit(&im);
	free(data);
	return rc ? fail(&e) : 0;
}

static int cmd_generate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "backend", required_argument, NULL, 'b' },
		{ "max-tokens", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	uint64_t max_tokens = 0;
	bool cuda = false;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': dir = optarg; break;
		case 'b':
			if (!strcmp(optarg, "cuda")) {
				cuda = true;
			} else if (strcmp(optarg, "cpu")) {
				fprintf(stderr, "qvl generate: --backend: '%s' is not a backend (cpu, cuda)\n", optarg);
				return 2;
			}
			break;
		case 'n':
			if (parse_u64(optarg, &max_tokens) || max_tokens < 1 || max_tokens > INT32_MAX) {
				fprintf(stderr, "qvl generate: --max-tokens: '%s' is not a token count\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!dir || optind != argc) {
		fprintf(stderr, "qvl generate: usage: qvl generate --model DIR [--backend cpu|cuda] [--max-tokens N]\n");
		return 2;
	}
	qerr e = { 0 };
	strbuf in = { 0 };
	json_object *body = NULL, *resp = NULL;
	chat_request r = { 0 };
	generate_model *m = NULL;
	int rc = read_stdin(&in, &e);
	if (!rc)
		rc = jsonx_parse(strbuf_str(&in), in.len, "request", &body, &e);
	/* the offline command may read images from local paths; the server will not */
	if (!rc)
		rc = chat_request_parse(body, true, &r, &e);
	if (!rc && max_tokens) {
		r.max_tokens = (int64_t)max_tokens;
		if (r.min_tokens > r.max_tokens)
			rc = qerr_set(&e, QERR_INVALID, "request: min_tokens: %lld exceeds --max-tokens %llu",
				      (long long)r.min_tokens, (unsigned long long)max_tokens);
	}
	if (!rc)
		rc = generate_model_load(dir, 0, &m, &e);
	if (!rc) {
		m->cuda = cuda;
		rc = generate_run(m, &r, &resp, &e);
	}
	if (!rc && puts(json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE)) < 0)
		rc = qerr_set(&e, QERR_IO, "standard output: %s", strerror(errno));
	json_object_put(resp);
	generate_model_free(m);
	chat_request_deinit(&r);
	json_object_put(body);
	strbuf_deinit(&in);
	return rc ? fail(&e) : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		puts(PACKAGE_STRING);
		return 0;
	}
	if (!strcmp(cmd, "mkmodel"))
		return cmd_mkmodel(argc - 1, argv + 1);
	if (!strcmp(cmd, "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	if (!strcmp(cmd, "tokenize"))
		return cmd_tokenize(argc - 1, argv + 1, false);
	if (!strcmp(cmd, "detokenize"))
		return cmd_tokenize(argc - 1, argv + 1, true);
	if (!strcmp(cmd, "image"))
		return cmd_image(argc - 1, argv + 1);
	if (!strcmp(cmd, "bench"))
		return bench_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "generate"))
		return cmd_generate(argc - 1, argv + 1);
	fprintf(stderr, "qvl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
