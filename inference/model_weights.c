/*
 * model_weights: the manifest of a Qwen3 / Qwen3-VL checkpoint and its binding to a
 * safetensors set (see model_weights.h).
 *
 * The manifest is built by a small appender (add()) called once per tensor; shapes are written
 * with the config's symbols so this file reads like spec/qwen3-vl.md §2:
 *
 *   D = text hidden, I = MLP width, H/KV = q/kv heads, hd = head_dim, V = vocab,
 *   Dv = vision hidden, Iv = vision MLP width, Dm = Dv * merge^2, P = patch, Tp = temporal patch.
 */
#include "model_weights.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"

typedef struct manifest {
	weight_spec *v;
	size_t n, cap;
} manifest;

static void add(manifest *m, const st_tensor **slot, weight_kind kind, int64_t fan_in, int ndim,
		const int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void add(manifest *m, const st_tensor **slot, weight_kind kind, int64_t fan_in, int ndim,
		const int64_t *shape, const char *fmt, ...)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->v = xrealloc(m->v, m->cap * sizeof(*m->v));
	}
	weight_spec *s = &m->v[m->n++];
	memset(s, 0, sizeof(*s));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->name, sizeof(s->name), fmt, ap);
	va_end(ap);
	s->ndim = ndim;
	memcpy(s->shape, shape, (size_t)ndim * sizeof(int64_t));
	s->kind = kind;
	s->fan_in = fan_in;
	s->slot = slot;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* a linear layer's weight (out, in) */
#define LINEAR(slot, kind, out, in, ...) add(m, slot, kind, in, 2, SHAPE(out, in), __VA_ARGS__)
/* a vector (norm scale, bias) */
#define VECTOR(slot, kind, len, ...) add(m, slot, kind, 0, 1, SHAPE(len), __VA_ARGS__)

static void text_manifest(manifest *m, const model_config *mc, model_weights *w, const char *pre)
{
	const text_config *t = &mc->text;
	int64_t D = t->hidden_size, I = t->intermediate_size, V = t->vocab_size, hd = t->head_dim;
	int64_t Hq = (int64_t)t->num_attention_heads * hd, Hkv = (int64_t)t->num_key_value_heads * hd;

	add(m, &w->embed_tokens, WEIGHT_EMBED, 0, 2, SHAPE(V, D), "%sembed_tokens.weight", pre);
	w->n_layers = t->num_hidden_layers;
	w->layers = xcalloc((size_t)w->n_layers, sizeof(*w->layers));
	for (int l = 0; l < w->n_layers; l++) {
		text_layer_weights *L = &w->layers[l];
		VECTOR(&L->input_layernorm, WEIGHT_NORM, D, "%slayers.%d.input_layernorm.weight", pre, l);
		LINEAR(&L->q_proj, WEIGHT_LINEAR_IN, Hq, D, "%slayers.%d.self_attn.q_proj.weight", pre, l);
		LINEAR(&L->k_proj, WEIGHT_LINEAR_IN, Hkv, D, "%slayers.%d.self_attn.k_proj.weight", pre, l);
		LINEAR(&L->v_proj, WEIGHT_LINEAR_IN, Hkv, D, "%slayers.%d.self_attn.v_proj.weight", pre, l);
		LINEAR(&L->o_proj, WEIGHT_LINEAR_OUT, D, Hq, "%slayers.%d.self_attn.o_proj.weight", pre, l);
		VECTOR(&L->q_norm, WEIGHT_NORM, hd, "%slayers.%d.self_attn.q_norm.weight", pre, l);
		VECTOR(&L->k_norm, WEIGHT_NORM, hd, "%slayers.%d.self_attn.k_norm.weight", pre, l);
		VECTOR(&L->post_attention_layernorm, WEIGHT_NORM, D,
		       "%slayers.%d.post_attention_layernorm.weight", pre, l);
		LINEAR(&L->gate_proj, WEIGHT_LINEAR_IN, I, D, "%slayers.%d.mlp.gate_proj.weight", pre, l);
		LINEAR(&L->up_proj, WEIGHT_LINEAR_IN, I, D, "%slayers.%d.mlp.up_proj.weight", pre, l);
		LINEAR(&L->down_proj, WEIGHT_LINEAR_OUT, D, I, "%slayers.%d.mlp.down_proj.weight", pre, l);
	}
	VECTOR(&w->norm, WEIGHT_NORM, D, "%snorm.weight", pre);
	if (!t->tie_word_embeddings)
		add(m, &w->lm_head, WEIGHT_EMBED, 0, 2, SHAPE(V, D), "lm_head.weight");
}

static void merger_manifest(manifest *m, merger_weights *mw, int64_t norm_dim, int64_t Dm,
			    int64_t Dout, const char *pre)
{
	VECTOR(&mw->norm_w, WEIGHT_NORM, norm_dim, "%s.norm.weight", pre);
	VECTOR(&mw->norm_b, WEIGHT_NORM_BIAS, norm_dim, "%s.norm.bias", pre);
	LINEAR(&mw->fc1_w, WEIGHT_LINEAR_IN, Dm, Dm, "%s.linear_fc1.weight", pre);
	VECTOR(&mw->fc1_b, WEIGHT_BIAS, Dm, "%s.linear_fc1.bias", pre);
	LINEAR(&mw->fc2_w, WEIGHT_LINEAR_OUT, Dout, Dm, "%s.linear_fc2.weight", pre);
	VECTOR(&mw->fc2_b, WEIGHT_BIAS, Dout, "%s.linear_fc2.bias", pre);
}

static void vision_manifest(manifest *m, const model_config *mc, model_weights *w)
{
	const vision_config *v = &mc->vision;
	const char *pre = "model.visual.";
	int64_t Dv = v->hidden_size, Iv = v->intermediate_size, C = v->in_channels;
	int64_t P = v->patch_size, Tp = v->temporal_patch_size;
	int64_t Dm = Dv * v->spatial_merge_size * v->spatial_merge_size, Dout = v->out_hidden_size;

	add(m, &w->patch_embed_w, WEIGHT_LINEAR_IN, C * Tp * P * P, 5, SHAPE(Dv, C, Tp, P, P),
	    "%spatch_embed.proj.weight", pre);
	VECTOR(&w->patch_embed_b, WEIGHT_BIAS, Dv, "%spatch_embed.proj.bias", pre);
	add(m, &w->pos_embed, WEIGHT_POS_EMBED, 0, 2, SHAPE(v->num_position_embeddings, Dv),
	    "%spos_embed.weight", pre);
	w->n_blocks = v->depth;
	w->blocks = xcalloc((size_t)w->n_blocks, sizeof(*w->blocks));
	for (int i = 0; i < w->n_blocks; i++) {
		vision_block_weights *B = &w->blocks[i];
		VECTOR(&B->norm1_w, WEIGHT_NORM, Dv, "%sblocks.%d.norm1.weight", pre, i);
		VECTOR(&B->norm1_b, WEIGHT_NORM_BIAS, Dv, "%sblocks.%d.norm1.bias", pre, i);
		LINEAR(&B->qkv_w, WEIGHT_LINEAR_IN, 3 * Dv, Dv, "%sblocks.%d.attn.qkv.weight", pre, i);
		VECTOR(&B->qkv_b, WEIGHT_BIAS, 3 * Dv, "%sblocks.%d.attn.qkv.bias", pre, i);
		LINEAR(&B->proj_w, WEIGHT_LINEAR_OUT, Dv, Dv, "%sblocks.%d.attn.proj.weight", pre, i);
		VECTOR(&B->proj_b, WEIGHT_BIAS, Dv, "%sblocks.%d.attn.proj.bias", pre, i);
		VECTOR(&B->norm2_w, WEIGHT_NORM, Dv, "%sblocks.%d.norm2.weight", pre, i);
		VECTOR(&B->norm2_b, WEIGHT_NORM_BIAS, Dv, "%sblocks.%d.norm2.bias", pre, i);
		LINEAR(&B->fc1_w, WEIGHT_LINEAR_IN, Iv, Dv, "%sblocks.%d.mlp.linear_fc1.weight", pre, i);
		VECTOR(&B->fc1_b, WEIGHT_BIAS, Iv, "%sblocks.%d.mlp.linear_fc1.bias", pre, i);
		LINEAR(&B->fc2_w, WEIGHT_LINEAR_OUT, Dv, Iv, "%sblocks.%d.mlp.linear_fc2.weight", pre, i);
		VECTOR(&B->fc2_b, WEIGHT_BIAS, Dv, "%sblocks.%d.mlp.linear_fc2.bias", pre, i);
	}
	merger_manifest(m, &w->merger, Dv, Dm, Dout, "model.visual.merger");
	w->n_deepstack = v->n_deepstack;
	w->deepstack = xcalloc((size_t)(w->n_deepstack ? w->n_deepstack : 1), sizeof(*w->deepstack));
	for (int k = 0; k < w->n_deepstack; k++) {
		char pfx[64];
		snprintf(pfx, sizeof(pfx), "model.visual.deepstack_merger_list.%d", k);
		merger_manifest(m, &w->deepstack[k], Dm, Dm, Dout, pfx);
	}
}

weight_spec *model_weights_manifest(const model_config *mc, model_weights *w, size_t *n)
{
	manifest m = {0};
	model_weights scratch;
	if (!w) {
		memset(&scratch, 0, sizeof(scratch));
		w = &scratch;
	}
	if (mc->arch == MODEL_ARCH_QWEN3_VL) {
		text_manifest(&m, mc, w, "model.language_model.");
		vision_manifest(&m, mc, w);
	} else {
		text_manifest(&m, mc, w, "model.");
	}
	if (w == &scratch) {
		/* slots pointed into a struct that is going away */
		for (size_t i = 0; i < m.n; i++)
			m.v[i].slot = NULL;
		model_weights_deinit(&scratch);
	}
	*n = m.n;
	return m.v;
}

uint64_t model_weights_numel(const weight_spec *specs, size_t n)
{
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t e = 1;
		for (int d = 0; d < specs[i].ndim; d++)
			e *= (uint64_t)specs[i].shape[d];
		total += e;
	}
	return total;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
	size_t k = 0;
	k += (size_t)snprintf(buf + k, n - k, "[");
	for (int d = 0; d < ndim && k < n; d++)
		k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, d ? ", " : "", shape[d]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
}

int model_weights_bind(const model_config *mc, st_set *st, const char *where, model_weights *w,
		       qerr *e)
{
	memset(w, 0, sizeof(*w));
	w->st = st;
	size_t n;
	weight_spec *specs = model_weights_manifest(mc, w, &n);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		const weight_spec *s = &specs[i];
		const st_tensor *t = st_set_find(st, s->name);
		if (!t) {
			rc = qerr_set(e, QERR_MISSING, "%s: missing tensor %s (config.json implies it)",
				      where, s->name);
			break;
		}
		bool same = t->ndim == s->ndim;
		for (int d = 0; same && d < s->ndim; d++)
			same = t->shape[d] == s->shape[d];
		if (!same) {
			char got[128], want[128];
			shape_str(got, sizeof(got), t->ndim, t->shape);
			shape_str(want, sizeof(want), s->ndim, s->shape);
			rc = qerr_set(e, QERR_INVALID,
				      "%s: tensor %s has shape %s but config.json implies %s", where,
				      s->name, got, want);
			break;
		}
		*s->slot = t;
	}
	if (!rc) {
		if (mc->text.tie_word_embeddings)
			w->lm_head = w->embed_tokens;
		/* Tensors the manifest does not name (a tied lm_head.weight, say) are ignored, as
		 * transformers ignores them; say so once, naming the first. */
		size_t extra = 0;
		const char *first = NULL;
		for (size_t i = 0; i < st_set_count(st); i++) {
			const char *name = st_set_tensor(st, i)->name;
			size_t j = 0;
			while (j < n && strcmp(specs[j].name, name))
				j++;
			if (j == n && !extra++)
				first = name;
		}
		if (extra)
			log_msg(LOG_LEVEL_WARN, "weights", "%s: %zu tensor(s) not used by the model, e.g. %s",
				where, extra, first);
	}
	free(specs);
	if (rc)
		model_weights_deinit(w);
	return rc;
}

int model_weights_open(const char *dir, const model_config *mc, model_weights *w, qerr *e)
{
	st_set *st;
	memset(w, 0, sizeof(*w));
	int rc = st_open_dir(dir, &st, e);
	if (rc)
		return rc;
	return model_weights_bind(mc, st, dir, w, e);
}

void model_weights_deinit(model_weights *w)
{
	st_set_free(w->st);
	free(w->layers);
	free(w->blocks);
	free(w->deepstack);
	memset(w, 0, sizeof(*w));
}
