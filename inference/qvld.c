/*
 * qvld: the inference daemon — loads the model once, owns the backend, batches every request
 * of every responder connection (engine.h) behind one Unix socket (qvld_server.h).
 *
 *   qvld --model DIR [--served-model-name NAME] [--backend auto|cpu|cuda] [--socket PATH] …
 *
 * Start-up: settings (/etc/qvl/qvld.conf, then flags: qvld_config.h) ─► configs, weights and the
 * tokenizer (token bytes for guided decoding) ─►
 * backend with its KV pool ─► engine ─► socket ─► READY=1 to systemd ─► serve until SIGTERM.
 *
 * Backend: --backend cuda (or auto in a CUDA build with a GPU visible) plans GPU memory itself
 * (backend_cuda.c: --gpu-memory-utilization, weights, activations, KV pool) and logs the plan;
 * --backend cpu (auto otherwise) takes --num-gpu-blocks-override when given, else
 * --kv-cache-memory-bytes (default QVLD_CPU_KV_DEFAULT) divided by the bytes of one block.
 *
 * Exit status: 0 after a clean shutdown, 1 when start-up or the engine failed (the message names
 * what), 2 for bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "alloc.h"
#include "backend.h"
#include "engine.h"
#include "log.h"
#include "model_config.h"
#include "model_weights.h"
#include "qvld_config.h"
#include "qvld_server.h"
#include "sd_notify.h"
#include "tokenizer.h"

#define QVLD_CPU_KV_DEFAULT ((int64_t)4 << 30)

typedef struct daemon_model {
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	model_weights w;
	bool have_w;
	tokenizer *tok;                /* owned: token bytes for guided decoding */
} daemon_model;

static int load_model(const qvld_config *c, daemon_model *m, qerr *e)
{
	int rc = model_config_load_dir(c->model, &m->mc, &m->gc, &m->pc, e);
	if (rc)
		return rc;
	if (!strcmp(c->generation_config, "vllm")) {
		/* vLLM's neutral defaults; the eos ids stay the model's */
		generation_config d;
		generation_config_defaults(&m->mc, &d);
		memcpy(d.eos_token_ids, m->gc.eos_token_ids, sizeof(d.eos_token_ids));
		d.n_eos = m->gc.n_eos;
		m->gc = d;
	} else if (strcmp(c->generation_config, "auto")) {
		char *path = xasprintf("%s/generation_config.json", c->generation_config);
		rc = generation_config_load(path, &m->mc, &m->gc, e);
		free(path);
		if (rc)
			return rc;
	}
	rc = model_weights_open(c->model, &m->mc, &m->w, e);
	m->have_w = !rc;
	if (!rc) {
		char *path = xasprintf("%s/tokenizer.json", c->model);
		rc = tok_load(path, &m->tok, e);
		free(path);
	}
	return rc;
}

/* Bytes of one KV block of the cpu backend: fp32 K and V of every layer. */
static int64_t cpu_block_bytes(const model_config *mc, int block_size)
{
	return (int64_t)block_size * mc->text.num_hidden_layers * 2 * mc->text.num_key_value_heads *
	       mc->text.head_dim * (int64_t)sizeof(float);
}

static char *model_info_json(const qvld_config *c, const daemon_model *m, int64_t max_model_len)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "model", json_object_new_string(c->served_model_names[0]));
	json_object *names = json_object_new_array();
	for (int i = 0; i < c->n_served_model_names; i++)
		json_object_array_add(names, json_object_new_string(c->served_model_names[i]));
	json_object_object_add(o, "served_model_names", names);
	json_object_object_add(o, "model_dir", json_object_new_string(c->model));
	json_object_object_add(o, "max_model_len", json_object_new_int64(max_model_len));
	json_object *eos = json_object_new_array();
	for (int i = 0; i < m->gc.n_eos; i++)
		json_object_array_add(eos, json_object_new_int(m->gc.eos_token_ids[i]));
	json_object_object_add(o, "eos_token_ids", eos);
	json_object_object_add(o, "vocab_size", json_object_new_int(m->mc.text.vocab_size));
	json_object_object_add(o, "image_token_id", json_object_new_int(m->mc.image_token_id));
	json_object_object_add(o, "vision", json_object_new_boolean(m->mc.has_vision));
	json_object *lim = json_object_new_object();
	json_object_object_add(lim, "image", json_object_new_int(m->mc.has_vision ? c->limit_images_per_prompt : 0));
	json_object_object_add(o, "limit_mm_per_prompt", lim);
	json_object *kw = c->mm_processor_kwargs ? json_tokener_parse(c->mm_processor_kwargs) : NULL;
	json_object_object_add(o, "mm_processor_kwargs", kw ? kw : json_object_new_object());
	json_object *g = json_object_new_object();
	json_object_object_add(g, "do_sample", json_object_new_boolean(m->gc.do_sample));
	json_object_object_add(g, "temperature", json_object_new_double(m->gc.temperature));
	json_object_object_add(g, "top_p", json_object_new_double(m->gc.top_p));
	json_object_object_add(g, "top_k", json_object_new_int(m->gc.top_k));
	json_object_object_add(g, "min_p", json_object_new_double(m->gc.min_p));
	json_object_object_add(g, "repetition_penalty", json_object_new_double(m->gc.repetition_penalty));
	json_object_object_add(g, "max_tokens", m->gc.max_new_tokens > 0
				? json_object_new_int64(m->gc.max_new_tokens) : NULL);
	json_object_object_add(o, "generation_defaults", g);
	if (c->allowed_local_media_path)
		json_object_object_add(o, "allowed_local_media_path",
				       json_object_new_string(c->allowed_local_media_path));
	if (c->api_key)
		json_object_object_add(o, "api_key", json_object_new_string(c->api_key));
	char *s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

int main(int argc, char **argv)
{
	qvld_config c;
	bool help = false;
	qerr e = { 0 };
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--version")) {
			printf("qvld %s\n", PACKAGE_VERSION);
			return 0;
		}
	if (qvld_config_parse(argc, argv, &c, &help, &e)) {
		fprintf(stderr, "qvld: %s\n%s", e.msg, help ? "" : "try 'qvld --help'\n");
		qvld_config_deinit(&c);
		return 2;
	}
	if (help) {
		fputs(qvld_config_usage(), stdout);
		qvld_config_deinit(&c);
		return 0;
	}
	log_set_level(c.log_level);
	sd_notify_send("STATUS=loading the model", NULL);

	int status = 1;
	daemon_model m;
	memset(&m, 0, sizeof(m));
	backend *b = NULL;
	engine *en = NULL;
	qvld_server *srv = NULL;
	char *info = NULL;
	int rc = load_model(&c, &m, &e);
	if (!rc && c.tensor_parallel_size != 1)
		rc = qerr_set(&e, QERR_UNSUPPORTED, "--tensor-parallel-size %d: only 1 is supported "
			      "yet", c.tensor_parallel_size);
	int64_t max_len = c.max_model_len ? c.max_model_len : m.mc.text.max_position_embeddings;
	if (!rc && max_len > m.mc.text.max_position_embeddings)
		rc = qerr_set(&e, QERR_INVALID, "--max-model-len %lld exceeds the model's "
			      "max_position_embeddings %lld", (long long)max_len,
			      (long long)m.mc.text.max_position_embeddings);
	bool cuda = c.backend == QVLD_BACKEND_CUDA ||
		    (c.backend == QVLD_BACKEND_AUTO && backend_cuda_available());
	int n_blocks = 0;
	if (!rc && cuda) {
		backend_opts bo = { .block_size = c.block_size, .n_blocks = c.num_gpu_blocks_override,
				    .batch_invariant = c.batch_invariant,
				    .gpu_memory_utilization = c.gpu_memory_utilization,
				    .kv_cache_memory_bytes = c.kv_cache_memory_bytes,
				    .kv_cache_fp8 = c.kv_cache_fp8,
				    .max_num_batched_tokens = c.max_num_batched_tokens,
				    .max_num_seqs = c.max_num_seqs,
				    .max_model_len = max_len > INT32_MAX ? INT32_MAX : (int)max_len,
				    .enforce_eager = c.enforce_eager };
		/* the engine refuses images of more tokens than one step's budget (its encoder
		 * budget), so the vision scratch never needs more patches than that */
		if (m.mc.has_vision) {
			int64_t mm = (int64_t)m.mc.vision.spatial_merge_size *
				     m.mc.vision.spatial_merge_size;
			int64_t patches = (int64_t)c.max_num_batched_tokens * mm;
			bo.max_image_patches = patches > (1 << 20) ? (1 << 20) : (int)patches;
		}
		rc = backend_cuda_new(&m.mc, &m.w, &bo, &b, &e);
		if (!rc) {
			n_blocks = backend_n_blocks(b);
			log_msg(LOG_LEVEL_INFO, "qvld", "model %s: backend cuda, %d KV blocks of %d tokens, "
				"max_model_len %lld", c.model, n_blocks, c.block_size, (long long)max_len);
		}
	} else if (!rc) {
		int64_t per = cpu_block_bytes(&m.mc, c.block_size);
		int64_t mem = c.kv_cache_memory_bytes ? c.kv_cache_memory_bytes : QVLD_CPU_KV_DEFAULT;
		int64_t nb = c.num_gpu_blocks_override ? c.num_gpu_blocks_override : mem / per;
		if (nb > INT32_MAX / 2)
			nb = INT32_MAX / 2;
		n_blocks = (int)nb;
		if (n_blocks < 1)
			rc = qerr_set(&e, QERR_INVALID, "--kv-cache-memory-bytes %lld holds no KV block "
				      "(%lld bytes each)", (long long)mem, (long long)per);
	}
	if (!rc && !cuda) {
		log_msg(LOG_LEVEL_INFO, "qvld", "model %s: backend cpu, %d KV blocks of %d tokens, "
			"max_model_len %lld", c.model, n_blocks, c.block_size, (long long)max_len);
		backend_opts bo = { .block_size = c.block_size, .n_blocks = n_blocks,
				    .n_threads = c.cpu_threads, .batch_invariant = c.batch_invariant,
				    .kv_cache_fp8 = c.kv_cache_fp8 };   /* refused there */
		rc = backend_cpu_new(&m.mc, &m.w, &bo, &b, &e);
	}
	if (!rc) {
		engine_opts eo = { .max_num_seqs = c.max_num_seqs,
				   .max_num_batched_tokens = c.max_num_batched_tokens,
				   .max_model_len = max_len, .block_size = c.block_size,
				   .n_blocks = n_blocks, .enable_prefix_caching = c.enable_prefix_caching,
				   .encoder_cache_tokens = c.encoder_cache_tokens,
				   .max_waiting = c.max_waiting, .tok = m.tok,
				   .sync_scheduling = !c.async_scheduling };
		rc = engine_new(b, &m.mc, &m.gc, &eo, &en, &e);
	}
	if (!rc) {
		info = model_info_json(&c, &m, max_len);
		qvld_server_opts so = { .socket_path = c.socket_path, .socket_mode = c.socket_mode,
					.socket_group = c.socket_group, .en = en, .mc = &m.mc,
					.pc = &m.pc, .model_info = info,
					.shutdown_timeout = c.shutdown_timeout,
					.limit_images = c.limit_images_per_prompt };
		rc = qvld_server_new(&so, &srv, &e);
	}
	if (!rc) {
		log_msg(LOG_LEVEL_NOTICE, "qvld", "serving %s on %s", c.served_model_names[0], c.socket_path);
		qerr ne = { 0 };
		if (sd_notify_sendf(&ne, "READY=1\nSTATUS=serving %s", c.served_model_names[0]))
			log_msg(LOG_LEVEL_WARN, "qvld", "sd_notify: %s", ne.msg);
		rc = qvld_server_run(srv, &e);
	}
	if (rc)
		log_msg(LOG_LEVEL_ERR, "qvld", "%s", e.msg);
	else
		status = 0;
	qvld_server_free(srv);
	engine_free(en);
	backend_free(b);
	if (m.have_w)
		model_weights_deinit(&m.w);
	tok_free(m.tok);
	free(info);
	qvld_config_deinit(&c);
	if (!status)
		log_msg(LOG_LEVEL_NOTICE, "qvld", "stopped");
	return status;
}
