/*
 * Tests of qvld_config: defaults; every flag in both "--flag value" and "--flag=value" forms;
 * the configuration file (comments, quotes, booleans, whitespace) and flags overriding it;
 * every rejected value with a message naming the flag or file:line; --config, $QVL_CONFIG and
 * the shipped etc/qvld.conf (found under $srcdir, which is the top of the tree under `make check`
 * and may also be tests/).
 *
 * A checked fixture sets QVL_CONFIG to "" (no file) in each forked test, so a
 * /etc/qvl/qvld.conf on the machine cannot change the results.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qvld_config.h"
#include "testutil.h"

#define ARGS(...) ((char *[]){ "qvld", __VA_ARGS__, NULL })

static int argc_of(char **argv)
{
	int n = 0;
	while (argv[n])
		n++;
	return n;
}

/* Parse argv, which must succeed without --help. */
static void assert_parses(char **argv, qvld_config *c)
{
	qerr e = { 0 };
	bool help = true;
	int rc = qvld_config_parse(argc_of(argv), argv, c, &help, &e);
	ck_assert_msg(rc == 0, "parse failed: %s", e.msg);
	ck_assert(!help);
}

/* Parse argv, which must fail with code and a message containing want. */
static void assert_fails(char **argv, int code, const char *want)
{
	qvld_config c;
	qerr e = { 0 };
	bool help = false;
	int rc = qvld_config_parse(argc_of(argv), argv, &c, &help, &e);
	ck_assert_msg(rc == -code, "%s %s: rc %d (want %d), msg \"%s\"", argv[1],
		      argv[2] ? argv[2] : "", rc, -code, e.msg);
	ck_assert_int_eq(e.code, code);
	ck_assert_msg(strstr(e.msg, want) != NULL, "message \"%s\" lacks \"%s\"", e.msg, want);
	ck_assert(!help);
	ck_assert_ptr_null(c.model);   /* deinitialized on failure */
	qvld_config_deinit(&c);         /* and safe to deinit again */
}

static char *write_conf(const char *dir, const char *name, const char *text)
{
	char *path = malloc(1024);
	snprintf(path, 1024, "%s/%s", dir, name);
	tu_write(path, text, strlen(text));
	return path;
}

static void no_config_file(void)
{
	setenv("QVL_CONFIG", "", 1);
}

/* Every field but model, served_model_names and config_path at its default. */
static void assert_defaults_except_model(const qvld_config *c)
{
	ck_assert_int_eq(c->backend, QVLD_BACKEND_AUTO);
	ck_assert_str_eq(c->socket_path, QVLD_DEFAULT_SOCKET);
	ck_assert_int_eq(c->socket_mode, 0660);
	ck_assert_ptr_null(c->socket_group);
	ck_assert_int_eq(c->max_model_len, 0);
	ck_assert_int_eq(c->max_num_seqs, 256);
	ck_assert_int_eq(c->max_num_batched_tokens, 8192);
	ck_assert_int_eq(c->block_size, 16);
	ck_assert(c->enable_prefix_caching);
	ck_assert_int_eq(c->num_gpu_blocks_override, 0);
	ck_assert_int_eq(c->kv_cache_memory_bytes, 0);
	ck_assert(c->gpu_memory_utilization == 0.9);
	ck_assert_int_eq(c->tensor_parallel_size, 1);
	ck_assert(!c->enforce_eager);
	ck_assert(c->async_scheduling);
	ck_assert_str_eq(c->generation_config, "auto");
	ck_assert_int_eq(c->max_waiting, 1024);
	ck_assert(c->shutdown_timeout == 30);
	ck_assert_int_eq(c->cpu_threads, 0);
	ck_assert_int_eq(c->limit_images_per_prompt, 64);
	ck_assert_ptr_null(c->mm_processor_kwargs);
	ck_assert_int_eq(c->encoder_cache_tokens, 0);
	ck_assert_ptr_null(c->allowed_local_media_path);
	ck_assert_ptr_null(c->api_key);
	ck_assert(!c->batch_invariant);
	ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
}

START_TEST(test_qvld_config_defaults)
{
	qvld_config c;
	assert_parses(ARGS("--model", "/models/Qwen3-VL-2B-Instruct/"), &c);
	ck_assert_str_eq(c.model, "/models/Qwen3-VL-2B-Instruct/");
	ck_assert_int_eq(c.n_served_model_names, 1);
	ck_assert_str_eq(c.served_model_names[0], "Qwen3-VL-2B-Instruct");
	ck_assert_ptr_null(c.config_path);
	assert_defaults_except_model(&c);
	qvld_config_deinit(&c);
	assert_parses(ARGS("--model", "m"), &c);
	ck_assert_str_eq(c.served_model_names[0], "m");
	qvld_config_deinit(&c);
	assert_parses(ARGS("--model", "/"), &c);
	ck_assert_str_eq(c.served_model_names[0], "/");
	qvld_config_deinit(&c);
}
END_TEST

/* Every field set by the flag lists below, whichever form they were written in. */
static void assert_all_set(const qvld_config *c)
{
	ck_assert_str_eq(c->model, "/m/qwen");
	ck_assert_int_eq(c->n_served_model_names, 2);
	ck_assert_str_eq(c->served_model_names[0], "qwen3-vl");
	ck_assert_str_eq(c->served_model_names[1], "gpt-4o");
	ck_assert_int_eq(c->backend, QVLD_BACKEND_CPU);
	ck_assert_str_eq(c->socket_path, "/tmp/q.sock");
	ck_assert_int_eq(c->socket_mode, 0600);
	ck_assert_str_eq(c->socket_group, "www-data");
	ck_assert_int_eq(c->max_model_len, 32768);
	ck_assert_int_eq(c->max_num_seqs, 8);
	ck_assert_int_eq(c->max_num_batched_tokens, 2048);
	ck_assert_int_eq(c->block_size, 32);
	ck_assert(!c->enable_prefix_caching);
	ck_assert_int_eq(c->num_gpu_blocks_override, 500);
	ck_assert_int_eq(c->kv_cache_memory_bytes, 1000000);
	ck_assert(c->kv_cache_fp8);
	ck_assert(c->gpu_memory_utilization == 0.5);
	ck_assert_int_eq(c->tensor_parallel_size, 2);
	ck_assert(c->enforce_eager);
	ck_assert_str_eq(c->generation_config, "vllm");
	ck_assert_int_eq(c->max_waiting, 0);
	ck_assert(c->shutdown_timeout == 2.5);
	ck_assert_int_eq(c->cpu_threads, 4);
	ck_assert_int_eq(c->limit_images_per_prompt, 4);
	ck_assert_str_eq(c->mm_processor_kwargs, "{\"max_pixels\": 1003520}");
	ck_assert_int_eq(c->encoder_cache_tokens, 16384);
	ck_assert_str_eq(c->allowed_local_media_path, "/srv/img");
	ck_assert_str_eq(c->api_key, "sk-123");
	ck_assert(c->batch_invariant);
	ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
}

START_TEST(test_qvld_config_every_flag_in_both_forms)
{
	qvld_config c;
	assert_parses(ARGS("--model", "/m/qwen", "--served-model-name", "qwen3-vl",
			   "--served-model-name", "gpt-4o", "--backend", "cpu", "--socket", "/tmp/q.sock",
			   "--socket-mode", "0600", "--socket-group", "www-data", "--max-model-len",
			   "32K", "--max-num-seqs", "8", "--max-num-batched-tokens", "2048",
			   "--block-size", "32", "--no-enable-prefix-caching",
			   "--num-gpu-blocks-override", "500", "--kv-cache-memory-bytes", "1m",
			   "--kv-cache-dtype", "fp8",
			   "--gpu-memory-utilization", "0.5", "--tensor-parallel-size", "2",
			   "--enforce-eager", "--generation-config", "vllm", "--max-waiting-requests",
			   "0", "--shutdown-timeout", "2.5", "--cpu-threads", "4",
			   "--limit-mm-per-prompt", "{\"image\": 4}", "--mm-processor-kwargs",
			   "{\"max_pixels\": 1003520}", "--encoder-cache-size", "16384",
			   "--allowed-local-media-path", "/srv/img", "--api-key", "sk-123",
			   "--batch-invariant", "--log-level", "debug"), &c);
	assert_all_set(&c);
	qvld_config_deinit(&c);
	assert_parses(ARGS("--model=/m/qwen", "--served-model-name=qwen3-vl",
			   "--served-model-name=gpt-4o", "--backend=cpu", "--socket=/tmp/q.sock",
			   "--socket-mode=600", "--socket-group=www-data", "--max-model-len=32768",
			   "--max-num-seqs=8", "--max-num-batched-tokens=2K", "--block-size=32",
			   "--enable-prefix-caching=no", "--num-gpu-blocks-override=500",
			   "--kv-cache-memory-bytes=1000000", "--kv-cache-dtype=fp8_e4m3",
			   "--gpu-memory-utilization=.5",
			   "--tensor-parallel-size=2", "--enforce-eager=true", "--generation-config=vllm",
			   "--max-waiting-requests=0", "--shutdown-timeout=2.5", "--cpu-threads=4",
			   "--limit-mm-per-prompt=image=4", "--mm-processor-kwargs={\"max_pixels\": 1003520}",
			   "--encoder-cache-size=16384", "--allowed-local-media-path=/srv/img",
			   "--api-key=sk-123", "--batch-invariant=1", "--log-level=7"), &c);
	assert_all_set(&c);
	ck_assert_ptr_null(c.config_path);
	qvld_config_deinit(&c);
}
END_TEST

START_TEST(test_qvld_config_boolean_switches)
{
	qvld_config c;
	assert_parses(ARGS("--model", "m", "--no-enable-prefix-caching", "--enable-prefix-caching",
			   "--enforce-eager", "--no-enforce-eager", "--batch-invariant",
			   "--no-async-scheduling"), &c);
	ck_assert(c.enable_prefix_caching);
	ck_assert(!c.enforce_eager);
	ck_assert(!c.async_scheduling);
	ck_assert(c.batch_invariant);
	qvld_config_deinit(&c);
	assert_parses(ARGS("--model", "m", "--enable-prefix-caching=FALSE", "--batch-invariant=on",
			   "--no-batch-invariant"), &c);
	ck_assert(!c.enable_prefix_caching);
	ck_assert(!c.batch_invariant);
	qvld_config_deinit(&c);
	/* a switch takes no separate value: "yes" here is a stray argument */
	assert_fails(ARGS("--model", "m", "--enforce-eager", "yes"), QERR_INVALID,
		     "unexpected argument \"yes\"");
	assert_fails(ARGS("--model", "m", "--no-enable-prefix-caching=1"), QERR_INVALID,
		     "--no-enable-prefix-caching takes no value");
	assert_fails(ARGS("--model", "m", "--enforce-eager=maybe"), QERR_INVALID,
		     "--enforce-eager: \"maybe\" is not a boolean");
	assert_fails(ARGS("--model", "m", "--no-model"), QERR_INVALID, "unknown flag --no-model");
}
END_TEST

START_TEST(test_qvld_config_served_model_names)
{
	qvld_config c;
	/* vLLM's nargs form, space-separated in one value, and repeated */
	assert_parses(ARGS("--served-model-name", "a", "b", "--model", "m", "--served-model-name",
			   "c  d\te", "--served-model-name=f"), &c);
	ck_assert_int_eq(c.n_served_model_names, 6);
	const char *want[] = { "a", "b", "c", "d", "e", "f" };
	for (int i = 0; i < 6; i++)
		ck_assert_str_eq(c.served_model_names[i], want[i]);
	qvld_config_deinit(&c);
	assert_fails(ARGS("--model", "m", "--served-model-name", "a", "a"), QERR_INVALID,
		     "--served-model-name: \"a\" is given twice");
	assert_fails(ARGS("--model", "m", "--served-model-name", "1 2 3 4 5 6 7 8 9"), QERR_INVALID,
		     "--served-model-name: more than 8 names");
	assert_fails(ARGS("--model", "m", "--served-model-name", "  "), QERR_INVALID,
		     "--served-model-name: empty value");
	assert_fails(ARGS("--model", "m", "--served-model-name", "a\001b"), QERR_INVALID,
		     "control characters");
}
END_TEST

START_TEST(test_qvld_config_human_readable_sizes)
{
	qvld_config c;
	assert_parses(ARGS("--model", "m", "--max-model-len", "32k", "--kv-cache-memory-bytes", "4G",
			   "--max-num-batched-tokens", "16K"), &c);
	ck_assert_int_eq(c.max_model_len, 32000);
	ck_assert_int_eq(c.kv_cache_memory_bytes, INT64_C(4) << 30);
	ck_assert_int_eq(c.max_num_batched_tokens, 16384);
	qvld_config_deinit(&c);
	/* only where vLLM takes them */
	assert_fails(ARGS("--model", "m", "--max-num-seqs", "1k"), QERR_INVALID,
		     "--max-num-seqs: \"1k\" is not an integer");
	assert_fails(ARGS("--model", "m", "--max-model-len", "32kk"), QERR_INVALID,
		     "--max-model-len: \"32kk\" is not an integer");
}
END_TEST

START_TEST(test_qvld_config_limit_mm_per_prompt)
{
	qvld_config c;
	assert_parses(ARGS("--model", "m", "--limit-mm-per-prompt", "{\"image\": 0, \"video\": 0}"),
		      &c);
	ck_assert_int_eq(c.limit_images_per_prompt, 0);
	qvld_config_deinit(&c);
	assert_parses(ARGS("--model", "m", "--limit-mm-per-prompt", "image=12,video=0"), &c);
	ck_assert_int_eq(c.limit_images_per_prompt, 12);
	qvld_config_deinit(&c);
	assert_parses(ARGS("--model", "m", "--limit-mm-per-prompt", "{}"), &c);
	ck_assert_int_eq(c.limit_images_per_prompt, 64);
	qvld_config_deinit(&c);
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "{\"image\": 4, \"video\": 1}"),
		     QERR_INVALID, "--limit-mm-per-prompt: videos are not supported");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "video=2"), QERR_INVALID,
		     "videos are not supported");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "{\"audio\": 1}"), QERR_INVALID,
		     "--limit-mm-per-prompt: unknown modality \"audio\"");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "{\"image\": -1}"), QERR_INVALID,
		     "--limit-mm-per-prompt: image must be an integer");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "{\"image\": \"4\"}"),
		     QERR_INVALID, "image must be an integer");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "{\"image\": 4,}"), QERR_INVALID,
		     "--limit-mm-per-prompt: invalid JSON");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "[4]"), QERR_INVALID,
		     "--limit-mm-per-prompt: \"[4]\" is neither JSON");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "image=x"), QERR_INVALID,
		     "--limit-mm-per-prompt: \"x\" is not an integer");
	assert_fails(ARGS("--model", "m", "--limit-mm-per-prompt", "4"), QERR_INVALID,
		     "is neither JSON");
}
END_TEST

START_TEST(test_qvld_config_mm_processor_kwargs)
{
	qvld_config c;
	const char *kw = "{\"min_pixels\": 3136, \"max_pixels\": 12845056}";
	assert_parses(ARGS("--model", "m", "--mm-processor-kwargs", (char *)kw), &c);
	ck_assert_str_eq(c.mm_processor_kwargs, kw);
	qvld_config_deinit(&c);
	assert_fails(ARGS("--model", "m", "--mm-processor-kwargs", "{\"fps\": 2}"), QERR_INVALID,
		     "--mm-processor-kwargs: unknown key \"fps\"");
	assert_fails(ARGS("--model", "m", "--mm-processor-kwargs", "{\"max_pixels\": 1.5}"),
		     QERR_INVALID, "--mm-processor-kwargs: max_pixels must be an integer");
	assert_fails(ARGS("--model", "m", "--mm-processor-kwargs", "{\"max_pixels\": 0}"),
		     QERR_INVALID, "max_pixels must be an integer");
	assert_fails(ARGS("--model", "m", "--mm-processor-kwargs",
			  "{\"min_pixels\": 200, \"max_pixels\": 100}"), QERR_INVALID,
		     "min_pixels 200 is larger than max_pixels 100");
	assert_fails(ARGS("--model", "m", "--mm-processor-kwargs", "[1]"), QERR_INVALID,
		     "--mm-processor-kwargs: must be a JSON object");
	assert_fails(ARGS("--model", "m", "--mm-processor-kwargs", "null"), QERR_INVALID,
		     "--mm-processor-kwargs: must be a JSON object");
	assert_fails(ARGS("--model", "m", "--mm-processor-kwargs", "{max_pixels: 1}"), QERR_INVALID,
		     "--mm-processor-kwargs: invalid JSON");
}
END_TEST

START_TEST(test_qvld_config_generation_config)
{
	qvld_config c;
	assert_parses(ARGS("--model", "m", "--generation-config", "/etc/qvl/gen"), &c);
	ck_assert_str_eq(c.generation_config, "/etc/qvl/gen");
	qvld_config_deinit(&c);
	assert_parses(ARGS("--model", "m", "--generation-config", "auto"), &c);
	ck_assert_str_eq(c.generation_config, "auto");
	qvld_config_deinit(&c);
	assert_fails(ARGS("--model", "m", "--generation-config="), QERR_INVALID,
		     "--generation-config: empty value");
}
END_TEST

START_TEST(test_qvld_config_bad_numbers_name_the_flag)
{
	static const struct {
		const char *flag, *value, *msg;
	} cases[] = {
		{ "--max-num-seqs", "abc", "--max-num-seqs: \"abc\" is not an integer" },
		{ "--max-num-seqs", "0", "--max-num-seqs: \"0\" must be at least 1" },
		{ "--max-num-seqs", "4.5", "--max-num-seqs: \"4.5\" is not an integer" },
		{ "--max-num-seqs", "", "--max-num-seqs: empty value" },
		{ "--max-num-seqs", "99999999999999999999", "--max-num-seqs: \"99999999999999999999\" "
		  "is out of range" },
		{ "--max-num-seqs", "2000000", "--max-num-seqs: \"2000000\" must be at most" },
		{ "--max-num-batched-tokens", "0", "--max-num-batched-tokens: \"0\" must be at least 1" },
		{ "--block-size", "24", "--block-size: \"24\" must be one of 1, 2, 4, 8, 16, 32, 64, 128" },
		{ "--block-size", "256", "--block-size: \"256\" must be one of" },
		{ "--block-size", "0", "--block-size: \"0\" must be one of" },
		{ "--block-size", "x", "--block-size: \"x\" is not an integer" },
		{ "--max-model-len", "-1", "--max-model-len: \"-1\" must be at least 0" },
		{ "--gpu-memory-utilization", "0", "--gpu-memory-utilization: \"0\" must be greater "
		  "than 0 and at most 1" },
		{ "--gpu-memory-utilization", "1.01", "--gpu-memory-utilization: \"1.01\" must be" },
		{ "--gpu-memory-utilization", "nan", "--gpu-memory-utilization: \"nan\" is not a number" },
		{ "--gpu-memory-utilization", "0.9x", "\"0.9x\" is not a number" },
		{ "--tensor-parallel-size", "0", "--tensor-parallel-size: \"0\" must be at least 1" },
		{ "--shutdown-timeout", "-1", "--shutdown-timeout: \"-1\" must be between 0 and" },
		{ "--shutdown-timeout", "inf", "--shutdown-timeout: \"inf\" is not a number" },
		{ "--max-waiting-requests", "-1", "--max-waiting-requests: \"-1\" must be at least 0" },
		{ "--cpu-threads", "-2", "--cpu-threads: \"-2\" must be at least 0" },
		{ "--num-gpu-blocks-override", "-1", "--num-gpu-blocks-override: \"-1\" must be at least 0" },
		{ "--kv-cache-memory-bytes", "-1", "--kv-cache-memory-bytes: \"-1\" must be at least 0" },
		{ "--encoder-cache-size", "-1", "--encoder-cache-size: \"-1\" must be at least 0" },
		{ "--socket-mode", "0999", "--socket-mode: \"0999\" is not an octal mode" },
		{ "--socket-mode", "1777", "--socket-mode: \"1777\" must be at most 0777" },
		{ "--socket-mode", "rw", "--socket-mode: \"rw\" is not an octal mode" },
		{ "--backend", "tpu", "--backend: \"tpu\" must be auto, cpu or cuda" },
		{ "--kv-cache-dtype", "int8",
		  "--kv-cache-dtype: \"int8\" must be auto, bfloat16, fp8 or fp8_e4m3" },
		{ "--kv-cache-dtype", "fp8_e5m2", "--kv-cache-dtype: fp8_e5m2 is not supported" },
		{ "--log-level", "loud", "--log-level: \"loud\" must be one of crit" },
		{ "--model", "", "--model: empty value" },
		{ "--api-key", "", "--api-key: empty value" },
		{ "--socket", "/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock", "is longer than 107 bytes" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* both forms give the same message */
		assert_fails(ARGS("--model", "m", (char *)cases[i].flag, (char *)cases[i].value),
			     QERR_INVALID, cases[i].msg);
		char joined[256];
		snprintf(joined, sizeof(joined), "%s=%s", cases[i].flag, cases[i].value);
		assert_fails(ARGS("--model", "m", joined), QERR_INVALID, cases[i].msg);
	}
}
END_TEST

START_TEST(test_qvld_config_bad_arguments)
{
	assert_fails(ARGS("--model", "m", "--max-num-seq", "4"), QERR_INVALID,
		     "unknown flag --max-num-seq");
	assert_fails(ARGS("--model", "m", "--trust-remote-code=1"), QERR_INVALID,
		     "unknown flag --trust-remote-code");
	assert_fails(ARGS("--model", "m", "-x"), QERR_INVALID, "unexpected argument \"-x\"");
	assert_fails(ARGS("/models/qwen"), QERR_INVALID, "unexpected argument \"/models/qwen\"");
	assert_fails(ARGS("--model", "m", "--"), QERR_INVALID, "unexpected argument \"--\"");
	assert_fails(ARGS("--model", "m", "--max-num-seqs"), QERR_INVALID,
		     "--max-num-seqs: missing value");
	assert_fails(ARGS("--model", "--max-num-seqs", "4"), QERR_INVALID, "--model: missing value");
	assert_fails(ARGS("--max-num-seqs", "4"), QERR_MISSING, "--model is required");
	/* a value may start with a single dash */
	qvld_config c;
	assert_parses(ARGS("--model", "m", "--api-key", "-secret-"), &c);
	ck_assert_str_eq(c.api_key, "-secret-");
	qvld_config_deinit(&c);
}
END_TEST

START_TEST(test_qvld_config_help)
{
	char **cases[] = {
		ARGS("--help"),
		ARGS("-h"),
		ARGS("--model", "m", "--help"),
		ARGS("--bogus", "--help"),             /* like argparse: help wins */
		ARGS("--config", "/nonexistent/qvld.conf", "--help"),
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		qvld_config c;
		qerr e = { 0 };
		bool help = false;
		ck_assert_int_eq(qvld_config_parse(argc_of(cases[i]), cases[i], &c, &help, &e), 0);
		ck_assert(help);
		qvld_config_deinit(&c);
	}
	/* "-h" as a value is a value */
	qvld_config c;
	assert_parses(ARGS("--model", "m", "--api-key", "-h"), &c);
	ck_assert_str_eq(c.api_key, "-h");
	qvld_config_deinit(&c);
	const char *u = qvld_config_usage();
	static const char *flags[] = {
		"--config", "--model", "--served-model-name", "--backend", "--socket ",
		"--socket-mode", "--socket-group", "--max-model-len", "--max-num-seqs",
		"--max-num-batched-tokens", "--block-size", "enable-prefix-caching",
		"--num-gpu-blocks-override", "--kv-cache-memory-bytes", "--kv-cache-dtype",
		"--gpu-memory-utilization",
		"--tensor-parallel-size", "enforce-eager", "--generation-config",
		"--max-waiting-requests", "--shutdown-timeout", "--cpu-threads",
		"--limit-mm-per-prompt", "--mm-processor-kwargs", "--encoder-cache-size",
		"--allowed-local-media-path", "--api-key", "batch-invariant", "--log-level", "--help",
	};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		ck_assert_msg(strstr(u, flags[i]) != NULL, "usage lacks %s", flags[i]);
}
END_TEST

START_TEST(test_qvld_config_file_syntax)
{
	char *dir = tu_mkdtemp("qvldcfg");
	char *path = write_conf(dir, "a.conf",
		"\xef\xbb\xbf# a comment\n"
		"\n"
		"   # an indented comment\n"
		"model = /models/Qwen3-VL-2B-Instruct\n"
		"served-model-name=\"qwen main\"   # two names, quoted\n"
		"\tmax-num-seqs\t=\t16\t\r\n"
		"max-model-len = 8k\n"
		"socket = \"/tmp/with # hash.sock\"\n"
		"api-key = \"say \\\"hi\\\" \\\\ \\n\"\n"
		"limit-mm-per-prompt = {\"image\": 2}\n"
		"mm-processor-kwargs = '{\"max_pixels\": 1000000}'  # single quotes: literal\n"
		"enforce-eager = yes\n"
		"enable-prefix-caching = Off\n"
		"batch-invariant = 1\n"
		"log-level = warn\n"
		"generation-config=vllm\n"
		"gpu-memory-utilization = 0.85 # inline comment\n"
		"backend = cuda");   /* no final newline */
	setenv("QVL_CONFIG", path, 1);
	qvld_config c;
	assert_parses(ARGS("--socket-mode", "0666"), &c);
	ck_assert_str_eq(c.config_path, path);
	ck_assert_str_eq(c.model, "/models/Qwen3-VL-2B-Instruct");
	ck_assert_int_eq(c.n_served_model_names, 2);
	ck_assert_str_eq(c.served_model_names[0], "qwen");
	ck_assert_str_eq(c.served_model_names[1], "main");
	ck_assert_int_eq(c.max_num_seqs, 16);
	ck_assert_int_eq(c.max_model_len, 8000);
	ck_assert_str_eq(c.socket_path, "/tmp/with # hash.sock");
	ck_assert_str_eq(c.api_key, "say \"hi\" \\ \\n");
	ck_assert_int_eq(c.limit_images_per_prompt, 2);
	ck_assert_str_eq(c.mm_processor_kwargs, "{\"max_pixels\": 1000000}");
	ck_assert(c.enforce_eager);
	ck_assert(!c.enable_prefix_caching);
	ck_assert(c.batch_invariant);
	ck_assert_int_eq(c.log_level, LOG_LEVEL_WARN);
	ck_assert_str_eq(c.generation_config, "vllm");
	ck_assert(c.gpu_memory_utilization == 0.85);
	ck_assert_int_eq(c.backend, QVLD_BACKEND_CUDA);
	ck_assert_int_eq(c.socket_mode, 0666);
	qvld_config_deinit(&c);
	/* an empty file, and one of comments only, are fine */
	char *empty = write_conf(dir, "empty.conf", "");
	setenv("QVL_CONFIG", empty, 1);
	assert_parses(ARGS("--model", "m"), &c);
	assert_defaults_except_model(&c);
	ck_assert_str_eq(c.config_path, empty);
	qvld_config_deinit(&c);
	tu_rmdir(dir);
	free(path);
	free(empty);
	free(dir);
}
END_TEST

START_TEST(test_qvld_config_flags_override_file)
{
	char *dir = tu_mkdtemp("qvldcfg");
	char *path = write_conf(dir, "a.conf",
		"model = /from/file\n"
		"served-model-name = file-a file-b\n"
		"max-num-seqs = 16\n"
		"enforce-eager = true\n"
		"enable-prefix-caching = false\n"
		"limit-mm-per-prompt = image=3\n"
		"api-key = from-file\n");
	qvld_config c;
	assert_parses(ARGS("--config", path, "--model", "/from/flags", "--max-num-seqs=32",
			   "--no-enforce-eager", "--served-model-name", "flag-a"), &c);
	ck_assert_str_eq(c.model, "/from/flags");
	ck_assert_int_eq(c.max_num_seqs, 32);
	ck_assert(!c.enforce_eager);
	ck_assert(!c.enable_prefix_caching);   /* from the file, not overridden */
	ck_assert_int_eq(c.limit_images_per_prompt, 3);
	ck_assert_str_eq(c.api_key, "from-file");
	ck_assert_int_eq(c.n_served_model_names, 1);   /* the flags' names replace the file's */
	ck_assert_str_eq(c.served_model_names[0], "flag-a");
	ck_assert_str_eq(c.config_path, path);
	qvld_config_deinit(&c);
	/* without --served-model-name the file's names stay */
	assert_parses(ARGS("--config", path), &c);
	ck_assert_int_eq(c.n_served_model_names, 2);
	ck_assert_str_eq(c.served_model_names[0], "file-a");
	ck_assert_str_eq(c.served_model_names[1], "file-b");
	ck_assert_str_eq(c.model, "/from/file");
	qvld_config_deinit(&c);
	tu_rmdir(dir);
	free(path);
	free(dir);
}
END_TEST

START_TEST(test_qvld_config_file_errors_name_file_and_line)
{
	char *dir = tu_mkdtemp("qvldcfg");
	static const struct {
		const char *text, *msg;
	} cases[] = {
		{ "model = m\n\nmax-num-seqs = abc\n", ":3: max-num-seqs: \"abc\" is not an integer" },
		{ "model = m\nmax-num-seqs = 0\n", ":2: max-num-seqs: \"0\" must be at least 1" },
		{ "# c\nmax-num-sequences = 4\n", ":2: unknown key \"max-num-sequences\"" },
		{ "no-enable-prefix-caching = true\n", ":1: unknown key \"no-enable-prefix-caching\"" },
		{ "config = /x\n", ":1: unknown key \"config\"" },
		{ "--model = m\n", ":1: unknown key \"--model\"" },
		{ "model m\n", ":1: expected \"key = value\"" },
		{ "= m\n", ":1: expected \"key = value\"" },
		{ "model = \"m\n", ":1: model: unterminated quoted value" },
		{ "model = \"m\" x\n", ":1: model: text after the closing quote" },
		{ "model =\n", ":1: model: empty value" },
		{ "model = \"\"\n", ":1: model: empty value" },
		{ "enforce-eager = maybe\n", ":1: enforce-eager: \"maybe\" is not a boolean" },
		{ "enforce-eager =\n", ":1: enforce-eager: \"\" is not a boolean" },
		{ "block-size = 12\n", ":1: block-size: \"12\" must be one of" },
		{ "gpu-memory-utilization = 2\n", ":1: gpu-memory-utilization: \"2\" must be greater" },
		{ "socket-mode = 8\n", ":1: socket-mode: \"8\" is not an octal mode" },
		{ "limit-mm-per-prompt = {\"video\": 2}\n", ":1: limit-mm-per-prompt: videos are not "
		  "supported" },
		{ "mm-processor-kwargs = {\"size\": 1}\n", ":1: mm-processor-kwargs: unknown key \"size\"" },
		{ "a\0b = 1\n", "contains a NUL byte" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/bad%zu.conf", dir, i);
		size_t len = strlen(cases[i].text);
		if (strstr(cases[i].msg, "NUL"))
			len = 8;
		tu_write(path, cases[i].text, len);
		char want[1200];
		snprintf(want, sizeof(want), "%s%s", path, cases[i].msg);
		if (strstr(cases[i].msg, "NUL"))
			snprintf(want, sizeof(want), "%s: %s", path, cases[i].msg);
		assert_fails(ARGS("--config", path, "--model", "m"), QERR_INVALID, want);
		/* the same through QVL_CONFIG */
		setenv("QVL_CONFIG", path, 1);
		assert_fails(ARGS("--model", "m"), QERR_INVALID, want);
		setenv("QVL_CONFIG", "", 1);
	}
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_qvld_config_config_file_choice)
{
	char *dir = tu_mkdtemp("qvldcfg");
	char *a = write_conf(dir, "a.conf", "model = /a\n");
	char *b = write_conf(dir, "b.conf", "model = /b\n");
	char missing[1100];
	snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
	qvld_config c;
	/* QVL_CONFIG names the file */
	setenv("QVL_CONFIG", a, 1);
	assert_parses(ARGS("--max-num-seqs", "2"), &c);
	ck_assert_str_eq(c.model, "/a");
	ck_assert_str_eq(c.config_path, a);
	qvld_config_deinit(&c);
	/* --config wins over QVL_CONFIG, wherever it stands; the last one counts */
	assert_parses(ARGS("--max-num-seqs", "2", "--config", a, "--config", b), &c);
	ck_assert_str_eq(c.model, "/b");
	ck_assert_str_eq(c.config_path, b);
	qvld_config_deinit(&c);
	/* a named file must exist */
	char want[1200];
	snprintf(want, sizeof(want), "--config: %s: file not found", missing);
	assert_fails(ARGS("--model", "m", "--config", missing), QERR_MISSING, want);
	setenv("QVL_CONFIG", missing, 1);
	snprintf(want, sizeof(want), "QVL_CONFIG: %s: file not found", missing);
	assert_fails(ARGS("--model", "m"), QERR_MISSING, want);
	/* a directory is not a configuration file */
	snprintf(want, sizeof(want), "--config: %s: not a regular file", dir);
	assert_fails(ARGS("--model", "m", "--config", dir), QERR_IO, want);
	assert_fails(ARGS("--model", "m", "--config="), QERR_INVALID, "--config: empty value");
	assert_fails(ARGS("--model", "m", "--config"), QERR_INVALID, "--config: missing value");
	/* QVL_CONFIG empty: no file at all */
	setenv("QVL_CONFIG", "", 1);
	assert_parses(ARGS("--model", "m"), &c);
	ck_assert_ptr_null(c.config_path);
	qvld_config_deinit(&c);
	tu_rmdir(dir);
	free(a);
	free(b);
	free(dir);
}
END_TEST

/* The shipped sample: $srcdir/etc/qvld.conf (srcdir = the top of the tree) or
 * $srcdir/../etc/qvld.conf (srcdir = tests/). */
static char *shipped_conf(void)
{
	const char *srcdir = getenv("srcdir");
	const char *rel[] = { "etc/qvld.conf", "../etc/qvld.conf" };
	for (int i = 0; i < 2; i++) {
		char *p = malloc(1200);
		snprintf(p, 1200, "%s/%s", srcdir && *srcdir ? srcdir : ".", rel[i]);
		if (access(p, R_OK) == 0)
			return p;
		free(p);
	}
	ck_abort_msg("etc/qvld.conf not found under $srcdir (%s)", srcdir ? srcdir : "unset");
	return NULL;
}

START_TEST(test_qvld_config_shipped_sample_parses)
{
	char *path = shipped_conf();
	qvld_config c;
	/* as shipped: everything commented out, so the defaults */
	assert_parses(ARGS("--config", path, "--model", "/models/Qwen3-VL-2B-Instruct"), &c);
	ck_assert_str_eq(c.config_path, path);
	ck_assert_str_eq(c.served_model_names[0], "Qwen3-VL-2B-Instruct");
	assert_defaults_except_model(&c);
	qvld_config_deinit(&c);

	/* every setting line ("#key = value") uncommented parses too, and every key is there */
	size_t n;
	char *text = tu_read(path, &n);
	ck_assert_ptr_nonnull(text);
	char *out = malloc(n + 1);
	size_t w = 0;
	int settings = 0;
	for (size_t i = 0; i < n;) {
		bool bol = i == 0 || text[i - 1] == '\n';
		if (bol && text[i] == '#' && i + 1 < n && text[i + 1] >= 'a' && text[i + 1] <= 'z') {
			i++;   /* drop the '#' */
			settings++;
			continue;
		}
		out[w++] = text[i++];
	}
	out[w] = 0;
	static const char *keys[] = {
		"model", "served-model-name", "backend", "socket", "socket-mode", "socket-group",
		"max-model-len", "max-num-seqs", "max-num-batched-tokens", "block-size",
		"enable-prefix-caching", "num-gpu-blocks-override", "kv-cache-memory-bytes",
		"kv-cache-dtype", "gpu-memory-utilization", "tensor-parallel-size", "enforce-eager", "generation-config",
		"max-waiting-requests", "shutdown-timeout", "cpu-threads", "limit-mm-per-prompt",
		"mm-processor-kwargs", "encoder-cache-size", "allowed-local-media-path", "api-key",
		"batch-invariant", "log-level",
	};
	ck_assert_int_eq(settings, (int)(sizeof(keys) / sizeof(keys[0])));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char line[128];
		snprintf(line, sizeof(line), "\n%s = ", keys[i]);
		ck_assert_msg(strstr(out, line) != NULL, "etc/qvld.conf lacks \"#%s = …\"", keys[i]);
	}
	char *dir = tu_mkdtemp("qvldcfg");
	char *all = write_conf(dir, "all.conf", out);
	assert_parses(ARGS("--config", all), &c);
	ck_assert_str_eq(c.model, "/var/lib/qvl/models/Qwen3-VL-2B-Instruct");
	ck_assert_str_eq(c.served_model_names[0], "Qwen3-VL-2B-Instruct");
	ck_assert_int_eq(c.max_num_seqs, 256);
	ck_assert_int_eq(c.limit_images_per_prompt, 64);
	ck_assert_str_eq(c.api_key, "replace with a long random string");
	ck_assert(c.enable_prefix_caching);
	ck_assert(c.gpu_memory_utilization == 0.9);
	ck_assert_int_eq(c.log_level, LOG_LEVEL_INFO);
	qvld_config_deinit(&c);
	tu_rmdir(dir);
	free(all);
	free(dir);
	free(out);
	free(text);
	free(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qvld_config");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, no_config_file, NULL);
	tcase_add_test(tc, test_qvld_config_defaults);
	tcase_add_test(tc, test_qvld_config_every_flag_in_both_forms);
	tcase_add_test(tc, test_qvld_config_boolean_switches);
	tcase_add_test(tc, test_qvld_config_served_model_names);
	tcase_add_test(tc, test_qvld_config_human_readable_sizes);
	tcase_add_test(tc, test_qvld_config_limit_mm_per_prompt);
	tcase_add_test(tc, test_qvld_config_mm_processor_kwargs);
	tcase_add_test(tc, test_qvld_config_generation_config);
	tcase_add_test(tc, test_qvld_config_bad_numbers_name_the_flag);
	tcase_add_test(tc, test_qvld_config_bad_arguments);
	tcase_add_test(tc, test_qvld_config_help);
	tcase_add_test(tc, test_qvld_config_file_syntax);
	tcase_add_test(tc, test_qvld_config_flags_override_file);
	tcase_add_test(tc, test_qvld_config_file_errors_name_file_and_line);
	tcase_add_test(tc, test_qvld_config_config_file_choice);
	tcase_add_test(tc, test_qvld_config_shipped_sample_parses);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
