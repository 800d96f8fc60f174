/*
 * model_config: config.json, generation_config.json and preprocessor_config.json read into
 * validated plain structs (model_config.h lists the accepted forms).
 *
 * How: each file is parsed with json-c (jsonx), then read through tables of fields — key, kind,
 * offset in the target struct, required or not, allowed range — so that one loop gives every
 * plain field the same treatment:
 *
 *   absent or null   -> the default already stored in the struct, or QERR_MISSING if required
 *   wrong JSON type  -> QERR_FORMAT (a non-integral number where an integer belongs counts too)
 *   out of range     -> QERR_INVALID
 *
 * What a table cannot say (the two rope forms, activations, arrays, checks across fields)
 * follows the tables in code. Every message reads "<file>: <field path>: <problem>", e.g.
 *
 *   config.json: text_config.num_key_value_heads: 3 does not divide num_attention_heads 16
 *
 * Defaults, where transformers has one and the field does not fix a tensor shape:
 *   text    num_key_value_heads 32 (null: num_attention_heads); head_dim 128 — transformers'
 *           defaults, not derived from the other sizes; rms_norm_eps 1e-6;
 *           attention_bias false; hidden_act silu; max_position_embeddings 128000 (qwen3_vl) or
 *           32768 (qwen3); bos/eos -1; tie_word_embeddings: the top-level key, else
 *           text_config's (qwen3_vl), else false
 *   vision  in_channels 3; hidden_act gelu_pytorch_tanh
 *   ids     image 151655, video 151656, vision_start 151652, vision_end 151653
 *
 * Rope: text_config.rope_parameters (transformers v5) is preferred over rope_scaling +
 * rope_theta (4.57); rope_theta may sit inside rope_parameters or beside it. The rope type key is
 * "rope_type" ("type" in older files) and must be "default" ("mrope", Qwen2-VL's old spelling
 * that transformers rewrites to "default", is accepted for qwen3_vl); an absent type means
 * default. mrope_interleaved is not read: transformers ignores it and always interleaves.
 *
 * Invariants: the parse and load functions write their outputs only on success, so a caller's
 * structs never hold half a file. Token ids that are present lie below text vocab_size.
 * Threads: no state; any thread may call in.
 */
#include "model_config.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "jsonx.h"
#include "log.h"

/* No config file comes near this; a larger one is refused before it is read. */
#define CONFIG_MAX_BYTES (1u << 20)

/* Sanity caps: far above any real model, low enough that products of two of them fit in 64
 * bits many times over. */
#define CAP_LAYERS 1024
#define CAP_HIDDEN 65536
#define CAP_FFN (1 << 20)
#define CAP_HEADS 1024
#define CAP_HEAD_DIM 1024
#define CAP_VOCAB (1 << 22)
#define CAP_POSITIONS (1 << 30)
#define CAP_PATCH 1024
#define CAP_MERGE 64
#define CAP_CHANNELS 64
#define CAP_POS_EMB (1 << 24)
#define CAP_PIXELS ((int64_t)1 << 40)
#define CAP_TOKEN_ID INT32_MAX

/* ---- where a field is, for messages ---- */

/* The file, the dotted path of the object being read, and the error to fill in. */
typedef struct loc {
	const char *file;  /* borrowed */
	char path[96];     /* "" at the top level, else e.g. "text_config.rope_scaling" */
	qerr *e;           /* borrowed; may be NULL */
} loc;

static void loc_init(loc *l, const char *file, qerr *e)
{
	l->file = file;
	l->path[0] = 0;
	l->e = e;
}

/* child = parent's path + "." + key (truncated to fit: only messages would lose the tail). */
static void loc_child(const loc *parent, const char *key, loc *child)
{
	size_t n = strlen(parent->path), k = strlen(key), cap = sizeof(child->path) - 1;
	memmove(child->path, parent->path, n);
	child->file = parent->file;
	child->e = parent->e;
	if (n && n < cap)
		child->path[n++] = '.';
	if (k > cap - n)
		k = cap - n;
	memcpy(child->path + n, key, k);
	child->path[n + k] = 0;
}

/* Record "<file>: <path>.<key>: <what>" (key NULL: the object itself); returns -code. */
static int fail(const loc *l, const char *key, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(const loc *l, const char *key, int code, const char *fmt, ...)
{
	char what[QERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (!key)
		key = "";
	const char *sep = l->path[0] && key[0] ? "." : "";
	if (!l->path[0] && !key[0])
		return qerr_set(l->e, code, "%s: %s", l->file, what);
	return qerr_set(l->e, code, "%s: %s%s%s: %s", l->file, l->path, sep, key, what);
}

static int missing(const loc *l, const char *key)
{
	return fail(l, key, QERR_MISSING, "required field is missing");
}

static const char *type_name(json_object *v)
{
	return json_type_to_name(json_object_get_type(v));
}

/* ---- typed values: 0 on success, a negative code otherwise ---- */

/* v (labelled `label` in messages) as an integer in [lo, hi]. */
static int val_int(const loc *l, const char *label, json_object *v, int64_t lo, int64_t hi,
		   int64_t *out)
{
	int64_t x;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return fail(l, label, QERR_FORMAT, "expected an integer, got %s", type_name(v));
	if (!jsonx_as_int(v, INT64_MIN, INT64_MAX, &x))
		return fail(l, label, QERR_FORMAT, "%s is not a 64-bit integer",
			    json_object_to_json_string(v));
	if (x < lo || x > hi)
		return fail(l, label, QERR_INVALID, "%lld is out of range [%lld, %lld]",
			    (long long)x, (long long)lo, (long long)hi);
	*out = x;
	return 0;
}

/* v as a finite number in [lo, hi], or (lo, hi] when lo_open. */
static int val_num(const loc *l, const char *label, json_object *v, double lo, double hi,
		   bool lo_open, double *out)
{
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return fail(l, label, QERR_FORMAT, "expected a number, got %s", type_name(v));
	double x = json_object_get_double(v);
	if (!isfinite(x))
		return fail(l, label, QERR_INVALID, "not a finite number");
	if (x < lo || (lo_open && x == lo) || x > hi) {
		if (isinf(hi))
			return fail(l, label, QERR_INVALID, "%.15g must be %s %.15g", x,
				    lo_open ? ">" : ">=", lo);
		return fail(l, label, QERR_INVALID, "%.15g is out of range %c%.15g, %.15g]", x,
			    lo_open ? '(' : '[', lo, hi);
	}
	*out = x;
	return 0;
}

/* ---- members: 0 present and valid, 1 absent or null (*out untouched), <0 error ---- */

static int get_int(const loc *l, json_object *obj, const char *key, int64_t lo, int64_t hi,
		   int64_t *out)
{
	json_object *v = jsonx_member(obj, key);
	return v ? val_int(l, key, v, lo, hi, out) : 1;
}

static int get_num(const loc *l, json_object *obj, const char *key, double lo, double hi,
		   bool lo_open, double *out)
{
	json_object *v = jsonx_member(obj, key);
	return v ? val_num(l, key, v, lo, hi, lo_open, out) : 1;
}

static int get_bool(const loc *l, json_object *obj, const char *key, bool *out)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, json_type_boolean))
		return fail(l, key, QERR_FORMAT, "expected true or false, got %s", type_name(v));
	*out = json_object_get_boolean(v);
	return 0;
}

/* A string, an object or an array (type), borrowed from obj. */
static int get_typed(const loc *l, json_object *obj, const char *key, json_type type,
		     json_object **out)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, type))
		return fail(l, key, QERR_FORMAT, "expected %s %s, got %s",
			    type == json_type_array || type == json_type_object ? "an" : "a",
			    json_type_to_name(type), type_name(v));
	*out = v;
	return 0;
}

static int get_string(const loc *l, json_object *obj, const char *key, const char **out)
{
	json_object *v = NULL;
	int rc = get_typed(l, obj, key, json_type_string, &v);
	if (rc == 0)
		*out = json_object_get_string(v);
	return rc;
}

/* The array's length n against [min_n, max_n]. */
static int check_count(const loc *l, const char *key, size_t n, size_t min_n, size_t max_n)
{
	if (n >= min_n && n <= max_n)
		return 0;
	if (min_n == max_n)
		return fail(l, key, QERR_INVALID, "has %zu entries, expected %zu", n, min_n);
	return fail(l, key, QERR_INVALID, "has %zu entries, expected %zu to %zu", n, min_n, max_n);
}

/* key as an array of min_n..max_n integers in [lo, hi] into out[], the count into *n.
 * Absent: QERR_MISSING when required, else 1. */
static int read_int_array(const loc *l, json_object *obj, const char *key, bool required,
			  size_t min_n, size_t max_n, int64_t lo, int64_t hi, int *out, int *n)
{
	json_object *arr = NULL;
	int rc = get_typed(l, obj, key, json_type_array, &arr);
	if (rc == 1 && required)
		return missing(l, key);
	if (rc)
		return rc;
	size_t len = json_object_array_length(arr);
	if ((rc = check_count(l, key, len, min_n, max_n)))
		return rc;
	for (size_t i = 0; i < len; i++) {
		char label[80];
		int64_t v;
		snprintf(label, sizeof(label), "%s[%zu]", key, i);
		if ((rc = val_int(l, label, json_object_array_get_idx(arr, i), lo, hi, &v)))
			return rc;
		out[i] = (int)v;
	}
	*n = (int)len;
	return 0;
}

/* key as 3 numbers (one per RGB channel) or one number for all three, each in [lo, ∞) or
 * (lo, ∞) when lo_open. Absent: 1. */
static int read_rgb(const loc *l, json_object *obj, const char *key, double lo, bool lo_open,
		    float out[3])
{
	json_object *v = jsonx_member(obj, key);
	double d[3];
	int rc;
	if (!v)
		return 1;
	if (json_object_is_type(v, json_type_array)) {
		if ((rc = check_count(l, key, json_object_array_length(v), 3, 3)))
			return rc;
		for (size_t i = 0; i < 3; i++) {
			char label[80];
			snprintf(label, sizeof(label), "%s[%zu]", key, i);
			rc = val_num(l, label, json_object_array_get_idx(v, i), lo, INFINITY,
				     lo_open, &d[i]);
			if (rc)
				return rc;
		}
	} else {
		if ((rc = val_num(l, key, v, lo, INFINITY, lo_open, &d[0])))
			return rc;
		d[1] = d[2] = d[0];
	}
	for (int i = 0; i < 3; i++)
		out[i] = (float)d[i];
	return 0;
}

/* ---- field tables ---- */

typedef enum field_kind { FK_INT, FK_I64, FK_NUM, FK_BOOL } field_kind;

typedef struct field {
	const char *key;
	field_kind kind;
	size_t off;      /* of an int, int64_t, double or bool member of the target struct */
	bool required;
	double lo, hi;   /* allowed range (numbers; exact for the integer caps used here) */
	bool lo_open;    /* lo itself is excluded (FK_NUM) */
} field;

/* offsetof(st, m), refused at compile time unless member m has type `type`. */
#define OFF(st, m, type) _Generic(((st *)0)->m, type: offsetof(st, m))
#define F_INT(st, m, req, lo, hi) { #m, FK_INT, OFF(st, m, int), req, lo, hi, false }
#define F_I64(st, m, req, lo, hi) { #m, FK_I64, OFF(st, m, int64_t), req, lo, hi, false }
#define F_NUM(st, m, lo, hi, open) { #m, FK_NUM, OFF(st, m, double), false, lo, hi, open }
#define F_BOOL(st, m) { #m, FK_BOOL, OFF(st, m, bool), false, 0, 0, false }
#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* Read the n fields of f from obj into the struct at base; absent optional fields keep the
 * value base already holds. */
static int read_fields(const loc *l, json_object *obj, const field *f, size_t n, void *base)
{
	for (; n; n--, f++) {
		char *dst = (char *)base + f->off;
		int64_t iv = 0;
		double dv = 0;
		bool bv = false;
		int rc = 1;
		switch (f->kind) {
		case FK_INT:
		case FK_I64:
			rc = get_int(l, obj, f->key, (int64_t)f->lo, (int64_t)f->hi, &iv);
			if (rc == 0 && f->kind == FK_INT)
				*(int *)dst = (int)iv;
			else if (rc == 0)
				*(int64_t *)dst = iv;
			break;
		case FK_NUM:
			rc = get_num(l, obj, f->key, f->lo, f->hi, f->lo_open, &dv);
			if (rc == 0)
				*(double *)dst = dv;
			break;
		case FK_BOOL:
			rc = get_bool(l, obj, f->key, &bv);
			if (rc == 0)
				*(bool *)dst = bv;
			break;
		}
		if (rc == 1 && f->required)
			return missing(l, f->key);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A token id that is present (>= 0) must index the embedding table. */
static int check_token(const loc *l, const char *key, int id, int vocab_size)
{
	if (id >= vocab_size)
		return fail(l, key, QERR_INVALID, "%d is not below vocab_size %d", id, vocab_size);
	return 0;
}

/* ---- activations ---- */

static const struct act_name {
	const char *name;
	model_act act;
} act_names[] = {
	{ "silu", MODEL_ACT_SILU },
	{ "swish", MODEL_ACT_SILU },              /* transformers' alias of silu */
	{ "gelu_pytorch_tanh", MODEL_ACT_GELU_TANH },
	{ "gelu_new", MODEL_ACT_GELU_TANH },      /* same tanh formula */
	{ "gelu", MODEL_ACT_GELU_ERF },
};

#define ACT_BIT(a) (1u << (a))

/* obj.hidden_act into *out (absent: *out keeps its default); only activations whose bit is in
 * `allowed` are accepted, `expected` says which in the message. */
static int read_act(const loc *l, json_object *obj, unsigned allowed, const char *expected,
		    model_act *out)
{
	const char *s;
	int rc = get_string(l, obj, "hidden_act", &s);
	if (rc)
		return rc < 0 ? rc : 0;
	for (size_t i = 0; i < NFIELDS(act_names); i++) {
		if (!strcmp(s, act_names[i].name) && (allowed & ACT_BIT(act_names[i].act))) {
			*out = act_names[i].act;
			return 0;
		}
	}
	return fail(l, "hidden_act", QERR_UNSUPPORTED, "\"%s\" is not supported (expected %s)", s,
		    expected);
}

/* ---- config.json: text ---- */

static const field text_fields[] = {
	F_INT(text_config, hidden_size, true, 1, CAP_HIDDEN),
	F_INT(text_config, intermediate_size, true, 1, CAP_FFN),
	F_INT(text_config, num_hidden_layers, true, 1, CAP_LAYERS),
	F_INT(text_config, num_attention_heads, true, 1, CAP_HEADS),
	F_INT(text_config, num_key_value_heads, false, 1, CAP_HEADS),
	F_INT(text_config, head_dim, false, 1, CAP_HEAD_DIM),
	F_INT(text_config, vocab_size, true, 1, CAP_VOCAB),
	F_I64(text_config, max_position_embeddings, false, 1, CAP_POSITIONS),
	F_NUM(text_config, rms_norm_eps, 0, 1, true),
	F_BOOL(text_config, attention_bias),
	F_INT(text_config, bos_token_id, false, 0, CAP_TOKEN_ID),
	F_INT(text_config, eos_token_id, false, 0, CAP_TOKEN_ID),
};

/* Rope settings of the text object tobj (at tl) into t; mrope: whether the model needs the
 * 3-D sections (qwen3_vl). Needs t->head_dim. */
static int read_rope(const loc *tl, json_object *tobj, bool mrope, text_config *t)
{
	static const char *const forms[] = { "rope_parameters", "rope_scaling" }; /* v5 first */
	json_object *rp = NULL;
	loc rl;
	int rc = 1;
	for (size_t i = 0; i < NFIELDS(forms) && rc == 1; i++) {
		if ((rc = get_typed(tl, tobj, forms[i], json_type_object, &rp)) < 0)
			return rc;
		loc_child(tl, forms[i], &rl); /* left at rope_scaling when neither is there */
	}
	if (rc == 1)
		rp = NULL;

	rc = get_num(tl, tobj, "rope_theta", 0, INFINITY, true, &t->rope_theta);
	if (rc < 0)
		return rc;
	bool have_theta = rc == 0;
	if (rp) {
		if ((rc = get_num(&rl, rp, "rope_theta", 0, INFINITY, true, &t->rope_theta)) < 0)
			return rc;
		have_theta |= rc == 0;
	}
	if (!have_theta)
		return missing(tl, "rope_theta");

	const char *type = "default", *type_key = "rope_type";
	if (rp) {
		rc = get_string(&rl, rp, type_key, &type);
		if (rc == 1) {
			type_key = "type";
			rc = get_string(&rl, rp, type_key, &type);
		}
		if (rc < 0)
			return rc;
	}
	if (strcmp(type, "default") && !(mrope && !strcmp(type, "mrope")))
		return fail(&rl, type_key, QERR_UNSUPPORTED,
			    "rope type \"%s\" is not supported (only \"default\")", type);

	t->mrope = mrope;
	if (!mrope)
		return 0;
	if (!rp)
		return missing(&rl, "mrope_section");
	int n, *s = t->mrope_section;
	rc = read_int_array(&rl, rp, "mrope_section", true, 3, 3, 1, CAP_HEAD_DIM, s, &n);
	if (rc)
		return rc;
	if (s[0] + s[1] + s[2] != t->head_dim / 2)
		return fail(&rl, "mrope_section", QERR_INVALID,
			    "[%d, %d, %d] sums to %d, expected head_dim/2 = %d", s[0], s[1], s[2],
			    s[0] + s[1] + s[2], t->head_dim / 2);
	return 0;
}

/* The text model from tobj (text_config for qwen3_vl, the top level for qwen3). */
static int parse_text(const loc *tl, json_object *tobj, model_arch arch, text_config *t)
{
	int rc;
	memset(t, 0, sizeof(*t));
	t->rms_norm_eps = 1e-6;
	/* transformers' own defaults (Qwen3VLTextConfig, Qwen3Config): note that an absent
	 * num_key_value_heads is 32 and an absent head_dim 128, whatever the other sizes; only an
	 * explicit null kv-head count means "as many as the query heads". */
	t->max_position_embeddings = arch == MODEL_ARCH_QWEN3_VL ? 128000 : 32768;
	t->num_key_value_heads = 32;
	t->head_dim = 128;
	t->hidden_act = MODEL_ACT_SILU;
	t->bos_token_id = t->eos_token_id = -1;
	if ((rc = read_fields(tl, tobj, text_fields, NFIELDS(text_fields), t)))
		return rc;
	if ((rc = read_act(tl, tobj, ACT_BIT(MODEL_ACT_SILU), "\"silu\"", &t->hidden_act)))
		return rc;

	json_object *kv;
	if (json_object_object_get_ex(tobj, "num_key_value_heads", &kv) && !kv)
		t->num_key_value_heads = t->num_attention_heads;
	if (t->num_attention_heads % t->num_key_value_heads)
		return fail(tl, "num_key_value_heads", QERR_INVALID,
			    "%d does not divide num_attention_heads %d", t->num_key_value_heads,
			    t->num_attention_heads);
	if (t->head_dim % 2)
		return fail(tl, "head_dim", QERR_INVALID,
			    "%d is odd (rotary embedding rotates pairs)", t->head_dim);
	if (t->attention_bias)
		return fail(tl, "attention_bias", QERR_UNSUPPORTED,
			    "true is not supported (Qwen3 attention has no biases)");
	bool sliding = false;
	if ((rc = get_bool(tl, tobj, "use_sliding_window", &sliding)) < 0)
		return rc;
	if (sliding)
		return fail(tl, "use_sliding_window", QERR_UNSUPPORTED,
			    "true is not supported (only full attention)");
	if ((rc = check_token(tl, "bos_token_id", t->bos_token_id, t->vocab_size)) ||
	    (rc = check_token(tl, "eos_token_id", t->eos_token_id, t->vocab_size)))
		return rc;
	return read_rope(tl, tobj, arch == MODEL_ARCH_QWEN3_VL, t);
}

/* ---- config.json: vision ---- */

static const field vision_fields[] = {
	F_INT(vision_config, depth, true, 1, CAP_LAYERS),
	F_INT(vision_config, hidden_size, true, 1, CAP_HIDDEN),
	F_INT(vision_config, intermediate_size, true, 1, CAP_FFN),
	F_INT(vision_config, num_heads, true, 1, CAP_HEADS),
	F_INT(vision_config, in_channels, false, 1, CAP_CHANNELS),
	F_INT(vision_config, patch_size, true, 1, CAP_PATCH),
	F_INT(vision_config, temporal_patch_size, true, 1, CAP_MERGE),
	F_INT(vision_config, spatial_merge_size, true, 1, CAP_MERGE),
	F_INT(vision_config, out_hidden_size, true, 1, CAP_HIDDEN),
	F_INT(vision_config, num_position_embeddings, true, 1, CAP_POS_EMB),
};

static bool is_square(int n)
{
	int64_t r = llround(sqrt((double)n));
	return r * r == n;
}

/* The vision tower from vobj (at vl); t is the text model it feeds. */
static int parse_vision(const loc *vl, json_object *vobj, const text_config *t, vision_config *v)
{
	int rc;
	memset(v, 0, sizeof(*v));
	v->in_channels = 3;
	v->hidden_act = MODEL_ACT_GELU_TANH;
	if ((rc = read_fields(vl, vobj, vision_fields, NFIELDS(vision_fields), v)))
		return rc;
	rc = read_act(vl, vobj, ACT_BIT(MODEL_ACT_GELU_TANH) | ACT_BIT(MODEL_ACT_GELU_ERF),
		      "\"gelu_pytorch_tanh\", \"gelu_new\" or \"gelu\"", &v->hidden_act);
	if (rc)
		return rc;
	if (v->in_channels != 3)
		return fail(vl, "in_channels", QERR_INVALID, "%d is not 3 (images are RGB)",
			    v->in_channels);
	if (v->hidden_size % v->num_heads)
		return fail(vl, "num_heads", QERR_INVALID, "%d does not divide hidden_size %d",
			    v->num_heads, v->hidden_size);
	if ((v->hidden_size / v->num_heads) % 4)
		return fail(vl, "num_heads", QERR_INVALID,
			    "%d gives a head_dim of %d, not a multiple of 4 (2-D rotary embedding)",
			    v->num_heads, v->hidden_size / v->num_heads);
	if (v->out_hidden_size != t->hidden_size)
		return fail(vl, "out_hidden_size", QERR_INVALID,
			    "%d does not equal text hidden_size %d", v->out_hidden_size,
			    t->hidden_size);
	if (!is_square(v->num_position_embeddings))
		return fail(vl, "num_position_embeddings", QERR_INVALID,
			    "%d is not a perfect square", v->num_position_embeddings);

	const char *dkey = "deepstack_visual_indexes";
	int *d = v->deepstack_visual_indexes;
	rc = read_int_array(vl, vobj, dkey, true, 0, MODEL_MAX_DEEPSTACK, 0, v->depth - 1, d,
			    &v->n_deepstack);
	if (rc)
		return rc;
	for (int i = 1; i < v->n_deepstack; i++)
		if (d[i] <= d[i - 1])
			return fail(vl, dkey, QERR_INVALID,
				    "not strictly ascending (%d follows %d)", d[i], d[i - 1]);
	/* Deepstack feature k is added after text layer k. */
	if (v->n_deepstack > t->num_hidden_layers)
		return fail(vl, dkey, QERR_INVALID,
			    "%d entries but the text model has only %d layers (num_hidden_layers)",
			    v->n_deepstack, t->num_hidden_layers);
	return 0;
}

/* ---- config.json: the whole ---- */

static const struct arch_name {
	const char *name;
	model_arch arch;
} arch_names[] = {
	{ "qwen3_vl", MODEL_ARCH_QWEN3_VL },
	{ "qwen3", MODEL_ARCH_QWEN3 },
};

static const char *arch_name(model_arch arch)
{
	for (size_t i = 0; i < NFIELDS(arch_names); i++)
		if (arch_names[i].arch == arch)
			return arch_names[i].name;
	return "?";
}

static const field vl_token_fields[] = {
	F_INT(model_config, image_token_id, false, 0, CAP_TOKEN_ID),
	F_INT(model_config, video_token_id, false, 0, CAP_TOKEN_ID),
	F_INT(model_config, vision_start_token_id, false, 0, CAP_TOKEN_ID),
	F_INT(model_config, vision_end_token_id, false, 0, CAP_TOKEN_ID),
};

/* The three files as one type, so that one routine can parse and load each of them. */
typedef union any_config {
	model_config m;
	generation_config g;
	preprocessor_config p;
} any_config;

/* Reads the object root of one kind of file (top: its location) into out; mc is the model
 * config for generation_config.json (may be NULL), unused otherwise. */
typedef int (*config_reader)(json_object *root, const loc *top, const model_config *mc,
			     any_config *out);

static int read_model(json_object *root, const loc *top, const model_config *unused,
		      any_config *out)
{
	model_config *mc = &out->m;
	loc tl, vl;
	const char *type;
	int rc;

	(void)unused;
	if ((rc = get_string(top, root, "model_type", &type)))
		return rc == 1 ? missing(top, "model_type") : rc;
	size_t a = 0;
	while (a < NFIELDS(arch_names) && strcmp(type, arch_names[a].name))
		a++;
	if (a == NFIELDS(arch_names))
		return fail(top, "model_type", QERR_UNSUPPORTED,
			    "\"%s\" is not supported (expected \"qwen3_vl\" or \"qwen3\")", type);

	memset(mc, 0, sizeof(*mc));
	mc->arch = arch_names[a].arch;
	mc->has_vision = mc->arch == MODEL_ARCH_QWEN3_VL;

	json_object *tobj = root;
	tl = *top;
	if (mc->has_vision) {
		rc = get_typed(top, root, "text_config", json_type_object, &tobj);
		if (rc)
			return rc == 1 ? missing(top, "text_config") : rc;
		loc_child(top, "text_config", &tl);
	}
	if ((rc = parse_text(&tl, tobj, mc->arch, &mc->text)))
		return rc;

	bool tie = false;
	rc = get_bool(top, root, "tie_word_embeddings", &tie);
	if (rc == 1 && tobj != root)
		rc = get_bool(&tl, tobj, "tie_word_embeddings", &tie);
	if (rc < 0)
		return rc;
	mc->text.tie_word_embeddings = tie;

	if (!mc->has_vision) {
		mc->image_token_id = mc->video_token_id = -1;
		mc->vision_start_token_id = mc->vision_end_token_id = -1;
		return 0;
	}
	mc->image_token_id = 151655;
	mc->video_token_id = 151656;
	mc->vision_start_token_id = 151652;
	mc->vision_end_token_id = 151653;
	if ((rc = read_fields(top, root, vl_token_fields, NFIELDS(vl_token_fields), mc)))
		return rc;
	for (size_t i = 0; i < NFIELDS(vl_token_fields); i++) {
		const field *f = &vl_token_fields[i];
		rc = check_token(top, f->key, *(const int *)((const char *)mc + f->off),
				 mc->text.vocab_size);
		if (rc)
			return rc;
	}

	json_object *vobj = NULL;
	rc = get_typed(top, root, "vision_config", json_type_object, &vobj);
	if (rc)
		return rc == 1 ? missing(top, "vision_config") : rc;
	loc_child(top, "vision_config", &vl);
	return parse_vision(&vl, vobj, &mc->text, &mc->vision);
}

/* ---- generation_config.json ---- */

static const field gen_fields[] = {
	F_INT(generation_config, bos_token_id, false, 0, CAP_TOKEN_ID),
	F_INT(generation_config, pad_token_id, false, 0, CAP_TOKEN_ID),
	F_BOOL(generation_config, do_sample),
	F_NUM(generation_config, temperature, 0, INFINITY, false),
	F_NUM(generation_config, top_p, 0, 1, true),
	F_INT(generation_config, top_k, false, 0, INT32_MAX),
	F_NUM(generation_config, min_p, 0, 1, false),
	F_NUM(generation_config, repetition_penalty, 0, INFINITY, true),
	F_I64(generation_config, max_new_tokens, false, 1, CAP_POSITIONS),
};

/* eos_token_id: one id or a list of ids; absent keeps g's defaults. */
static int read_eos(const loc *l, json_object *obj, generation_config *g)
{
	const char *key = "eos_token_id";
	json_object *v = jsonx_member(obj, key);
	int64_t id;
	int rc;
	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_array))
		return read_int_array(l, obj, key, true, 1, MODEL_MAX_EOS, 0, CAP_TOKEN_ID,
				      g->eos_token_ids, &g->n_eos);
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return fail(l, key, QERR_FORMAT, "expected an integer or a list of integers, got %s",
			    type_name(v));
	if ((rc = val_int(l, key, v, 0, CAP_TOKEN_ID, &id)))
		return rc;
	g->eos_token_ids[0] = (int)id;
	g->n_eos = 1;
	return 0;
}

static int read_generation(json_object *root, const loc *top, const model_config *mc,
			   any_config *out)
{
	generation_config *g = &out->g;
	int rc;
	generation_config_defaults(mc, g);
	if ((rc = read_fields(top, root, gen_fields, NFIELDS(gen_fields), g)) ||
	    (rc = read_eos(top, root, g)))
		return rc;
	if (!mc)
		return 0;
	int vocab = mc->text.vocab_size;
	for (int i = 0; i < g->n_eos; i++)
		if ((rc = check_token(top, "eos_token_id", g->eos_token_ids[i], vocab)))
			return rc;
	if ((rc = check_token(top, "bos_token_id", g->bos_token_id, vocab)) ||
	    (rc = check_token(top, "pad_token_id", g->pad_token_id, vocab)))
		return rc;
	return 0;
}

/* ---- preprocessor_config.json ---- */

static const field pre_fields[] = {
	F_I64(preprocessor_config, min_pixels, false, 1, CAP_PIXELS),
	F_I64(preprocessor_config, max_pixels, false, 1, CAP_PIXELS),
	F_INT(preprocessor_config, patch_size, false, 1, CAP_PATCH),
	F_INT(preprocessor_config, temporal_patch_size, false, 1, CAP_MERGE),
	F_INT(preprocessor_config, merge_size, false, 1, CAP_MERGE),
	F_NUM(preprocessor_config, rescale_factor, 0, INFINITY, true),
	F_BOOL(preprocessor_config, do_resize),
	F_BOOL(preprocessor_config, do_rescale),
	F_BOOL(preprocessor_config, do_normalize),
	F_BOOL(preprocessor_config, do_convert_rgb),
};

/* "size": despite the names, pixel-count bounds (Qwen2-VL-style processors). */
static const field pre_size_fields[] = {
	{ "shortest_edge", FK_I64, OFF(preprocessor_config, min_pixels, int64_t), true, 1,
	  CAP_PIXELS, false },
	{ "longest_edge", FK_I64, OFF(preprocessor_config, max_pixels, int64_t), true, 1,
	  CAP_PIXELS, false },
};

static int read_preprocessor(json_object *root, const loc *top, const model_config *unused,
			     any_config *out)
{
	preprocessor_config *p = &out->p;
	loc sl;
	json_object *size = NULL;
	int rc;
	(void)unused;
	preprocessor_config_defaults(p);
	/* The older top-level min_pixels/max_pixels first, so that "size" wins when both are
	 * there. */
	if ((rc = read_fields(top, root, pre_fields, NFIELDS(pre_fields), p)))
		return rc;
	if ((rc = get_typed(top, root, "size", json_type_object, &size)) < 0)
		return rc;
	bool sized = rc == 0;
	if (sized) {
		loc_child(top, "size", &sl);
		rc = read_fields(&sl, size, pre_size_fields, NFIELDS(pre_size_fields), p);
		if (rc)
			return rc;
	}
	if ((rc = read_rgb(top, root, "image_mean", -INFINITY, false, p->image_mean)) < 0 ||
	    (rc = read_rgb(top, root, "image_std", 0, true, p->image_std)) < 0)
		return rc;
	if (p->min_pixels > p->max_pixels)
		return fail(top, sized ? "size" : "min_pixels", QERR_INVALID,
			    "the minimum of %lld pixels exceeds the maximum of %lld",
			    (long long)p->min_pixels, (long long)p->max_pixels);
	return 0;
}

/* ---- parsing and loading, shared by the three files ---- */

/* Parse text as one JSON object and read it with fn; *out written only on success. */
static int parse_config(const char *text, size_t len, const char *where, config_reader fn,
			const model_config *mc, any_config *out, qerr *e)
{
	json_object *root = NULL;
	any_config c;
	loc top;
	int rc = jsonx_parse(text, len, where, &root, e);
	if (rc)
		return rc;
	loc_init(&top, where, e);
	if (!json_object_is_type(root, json_type_object))
		rc = fail(&top, NULL, QERR_FORMAT, "expected a JSON object, got %s",
			  type_name(root));
	else
		rc = fn(root, &top, mc, &c);
	json_object_put(root);
	if (rc == 0)
		*out = c;
	return rc;
}

/* Read and parse the file at path; 1 (e untouched) when it does not exist and `optional`. */
static int load_config(const char *path, bool optional, config_reader fn,
		       const model_config *mc, any_config *out, qerr *e)
{
	qerr tmp = { 0 };
	char *text;
	size_t len;
	int rc = jsonx_read_file(path, CONFIG_MAX_BYTES, &text, &len, &tmp);
	if (rc == -QERR_MISSING && optional)
		return 1;
	if (rc) {
		if (e)
			*e = tmp;
		return rc;
	}
	rc = parse_config(text, len, path, fn, mc, out, e);
	free(text);
	return rc;
}

/* ---- public ---- */

/* config.json text -> *out (see the file comment for defaults and checks). */
int model_config_parse(const char *text, size_t len, const char *where, model_config *out,
		       qerr *e)
{
	any_config c;
	int rc = parse_config(text, len, where, read_model, NULL, &c, e);
	if (rc == 0)
		*out = c.m;
	return rc;
}

/* generation_config.json text -> *out; eos falls back to mc's text eos (mc may be NULL). */
int generation_config_parse(const char *text, size_t len, const char *where,
			    const model_config *mc, generation_config *out, qerr *e)
{
	any_config c;
	int rc = parse_config(text, len, where, read_generation, mc, &c, e);
	if (rc == 0)
		*out = c.g;
	return rc;
}

/* preprocessor_config.json text -> *out; "size" wins over top-level min/max_pixels. */
int preprocessor_config_parse(const char *text, size_t len, const char *where,
			      preprocessor_config *out, qerr *e)
{
	any_config c;
	int rc = parse_config(text, len, where, read_preprocessor, NULL, &c, e);
	if (rc == 0)
		*out = c.p;
	return rc;
}

/* Greedy-neutral sampling; eos = mc->text.eos_token_id when there is one. */
void generation_config_defaults(const model_config *mc, generation_config *out)
{
	memset(out, 0, sizeof(*out));
	if (mc && mc->text.eos_token_id >= 0)
		out->eos_token_ids[out->n_eos++] = mc->text.eos_token_id;
	out->bos_token_id = -1;
	out->pad_token_id = -1;
	out->do_sample = false;
	out->temperature = 1.0;
	out->top_p = 1.0;
	out->top_k = 0;
	out->min_p = 0.0;
	out->repetition_penalty = 1.0;
	out->max_new_tokens = -1;
}

/* The Qwen3-VL image processor's values (spec §1.5). */
void preprocessor_config_defaults(preprocessor_config *out)
{
	memset(out, 0, sizeof(*out));
	out->min_pixels = 65536;     /* 256 * 256 */
	out->max_pixels = 16777216;  /* 4096 * 4096 */
	out->patch_size = 16;
	out->temporal_patch_size = 2;
	out->merge_size = 2;
	for (int i = 0; i < 3; i++)
		out->image_mean[i] = out->image_std[i] = 0.5f;
	out->rescale_factor = 1.0 / 255.0;
	out->do_resize = out->do_rescale = out->do_normalize = out->do_convert_rgb = true;
}

/* Read and parse path; QERR_MISSING when it does not exist. */
int model_config_load(const char *path, model_config *out, qerr *e)
{
	any_config c;
	int rc = load_config(path, false, read_model, NULL, &c, e);
	if (rc == 0)
		*out = c.m;
	return rc;
}

/* Read and parse path; a missing file gives the defaults (and logs it). */
int generation_config_load(const char *path, const model_config *mc, generation_config *out,
			   qerr *e)
{
	any_config c;
	int rc = load_config(path, true, read_generation, mc, &c, e);
	if (rc == 1) {
		log_msg(LOG_LEVEL_DEBUG, "config", "%s: not found; greedy-neutral defaults", path);
		generation_config_defaults(mc, &c.g);
		rc = 0;
	}
	if (rc == 0)
		*out = c.g;
	return rc;
}

/* Read and parse path; a missing file gives the Qwen3-VL defaults (and logs it). */
int preprocessor_config_load(const char *path, preprocessor_config *out, qerr *e)
{
	any_config c;
	int rc = load_config(path, true, read_preprocessor, NULL, &c, e);
	if (rc == 1) {
		log_msg(LOG_LEVEL_DEBUG, "config", "%s: not found; Qwen3-VL defaults", path);
		preprocessor_config_defaults(&c.p);
		rc = 0;
	}
	if (rc == 0)
		*out = c.p;
	return rc;
}

/* dir/config.json (required) and the two optional files; all outputs or none. */
int model_config_load_dir(const char *dir, model_config *mc, generation_config *gc,
			  preprocessor_config *pc, qerr *e)
{
	model_config m;
	generation_config g;
	preprocessor_config p;
	char *path = xasprintf("%s/config.json", dir);
	int rc = model_config_load(path, &m, e);
	free(path);
	if (rc == 0 && gc) {
		path = xasprintf("%s/generation_config.json", dir);
		rc = generation_config_load(path, &m, &g, e);
		free(path);
	}
	if (rc == 0 && pc) {
		path = xasprintf("%s/preprocessor_config.json", dir);
		rc = preprocessor_config_load(path, &p, e);
		free(path);
	}
	if (rc)
		return rc;
	log_msg(LOG_LEVEL_DEBUG, "config",
		"%s: %s, %d layers, hidden %d, heads %d/%d x %d, vocab %d%s", dir,
		arch_name(m.arch), m.text.num_hidden_layers, m.text.hidden_size,
		m.text.num_attention_heads, m.text.num_key_value_heads, m.text.head_dim,
		m.text.vocab_size, m.has_vision ? ", vision" : "");
	*mc = m;
	if (gc)
		*gc = g;
	if (pc)
		*pc = p;
	return 0;
}
