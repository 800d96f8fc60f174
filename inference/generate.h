/*
 * generate: one chat-completions request run in-process, start to finish — the offline path
 * (`qvl generate`) and the library the responder will share for building prompts and answers.
 *
 *   request ─► chat_render ─► images: decode, preprocess (per-request min/max pixels)
 *           ─► chat_expand_pads ─► tok_encode ─► engine_submit (MRoPE positions, checks)
 *           ─► engine_step until every choice ended: the engine encodes the images, prefills,
 *              decodes and samples; detok per choice (stop strings) ─► chat.completion JSON
 *
 * The request runs on an engine and CPU backend of its own, with a KV pool just large enough for
 * its n choices of prompt + max_tokens: the same engine qvld runs, one request at a time.
 *
 * Ownership: a generate_model owns everything it loads; generate_run borrows it and the
 * request. Threads: one generate_run at a time per model (the backend it makes uses threads).
 */
#ifndef QVL_GENERATE_H
#define QVL_GENERATE_H

#include <json.h>

#include "chat_request.h"
#include "model_config.h"
#include "model_weights.h"
#include "qerr.h"
#include "tokenizer.h"

/* max_tokens when neither the request nor generation_config gives one (capped further by the
 * context left after the prompt). */
#define GENERATE_DEFAULT_MAX_TOKENS 1024

typedef struct generate_model {
	char *dir;                     /* owned */
	char *name;                    /* owned: the served name, the directory's basename */
	model_config mc;
	generation_config gc;
	preprocessor_config pc;
	model_weights w;               /* owned (model_weights_deinit) */
	tokenizer *tok;                /* owned */
	int n_threads;                 /* backend CPU threads (0: one per core) */
	bool cuda;                     /* run on the GPU (backend_cuda) instead of the CPU */
} generate_model;

/* Load config, generation and preprocessor configs, weights and tokenizer from dir, and check
 * that its chat template is the one chat_template renders. Fails with the loaders' errors
 * (each names the file); *out is NULL then. */
int generate_model_load(const char *dir, int n_threads, generate_model **out, qerr *e);
void generate_model_free(generate_model *m);

/* Run r on m and return the OpenAI chat.completion object (*out owned by the caller,
 * json_object_put). Fails on a request the model cannot serve — an image that does not decode
 * (QERR_FORMAT/UNSUPPORTED/LIMIT, message naming the part), image parts the template does not
 * render, a prompt longer than the context (QERR_LIMIT), a stop token id outside the vocabulary
 * (QERR_INVALID) — or a backend failure; *out is NULL then. */
int generate_run(generate_model *m, const chat_request *r, json_object **out, qerr *e);

#endif
