/*
 * chat_template: the Qwen3-VL-Instruct chat template rendered in C (contract in chat_template.h).
 *
 * Why: the server must build exactly the prompt transformers builds — same bytes, hence the
 * same tokens — without embedding a Jinja interpreter. One template is implemented, and
 * chat_template_check refuses a model directory whose template is any other.
 *
 * How: the renderer walks the template's control flow statement by statement, appending to one
 * growable buffer. Jinja runs with trim_blocks, lstrip_blocks and `{%-`/`-%}` on every tag, so
 * no template whitespace reaches the output; what is emitted is exactly the `{{ }}` expressions
 * and the two literal vision lines (L48/L52, L102/L106), whose surrounding newlines are eaten
 * by `-%}` before and `{%-` after. The map, by line of chat_template.jinja:
 *
 *   L1–20    if tools: system turn, messages[0] system text, <tools> block  render_preamble
 *   L3–13    messages[0] system content (string, or the text of its parts)  put_text_content
 *   L16–19   for tool in tools: "\n" + tool | tojson                         json_dump
 *   L21–34   else: system turn only when messages[0].role == 'system'        render_preamble
 *   L36–37   image_count / video_count namespaces                            render.n_images/n_videos
 *   L38      for message in messages                                         chat_render
 *   L39–58   user: content string, or parts (image | video | text)          put_vision_content
 *   L45–48   image part: count, "Picture k: " if add_vision_id, vision line put_vision_content
 *   L49–52   video part: same with "Video k: " and <|video_pad|>             put_vision_content
 *   L59–69   assistant: content string, or the text of its parts            put_text_content
 *   L70–88   assistant tool_calls: "\n" separators, function unwrapping,     render_tool_calls
 *            name, arguments raw (string) or tojson
 *   L90–115  tool: open a user turn unless the previous message is a tool,   render_tool_message
 *            <tool_response> around the content (as for user, L98–110),
 *            close the turn unless the next message is a tool
 *   L118–120 add_generation_prompt: "<|im_start|>assistant\n"                chat_render
 *
 * Jinja semantics kept (checked against Python jinja2 3.1.2 by tests/golden/make_chat_golden.py):
 *   - `x.key` on a non-object is Undefined: a message that is not an object, or has no role, or
 *     an unknown role ("developer", "function", a system message after messages[0]) is skipped
 *     silently. Undefined prints as "" (a tool call with no "name" prints `"name": ""`) and
 *     iterates as nothing (a message without "content" renders an empty turn).
 *   - `'image' in part` tests key presence: {"image": null} is an image. A part of any other
 *     kind without a "text" key ({"type": "video_url", …}, {"type": "input_audio", …}) renders
 *     as nothing and is not counted: callers normalise such parts to {"type": "video"} first.
 *   - the `is string` test and `if x` truthiness are Python's (py_truthy).
 *   - printed numbers and booleans are Python's str(): 3, 1.5, 1e-05, True, False.
 *   - empty messages fails (messages[0].role on an empty list raises UndefinedError).
 *   - iterating a number or boolean, `'text' in` a number/boolean/null part, and tojson of an
 *     Undefined tool_call.arguments (missing, or a tool call that is not an object, or a
 *     truthy "function" or truthy "tool_calls" of the wrong type) raise: errors here too.
 *     Falsy tool_calls (null, [], "", 0, false, {}) and a falsy "function" are ignored, as
 *     `if` does; values in messages the template drops are never looked at, so never fail.
 *
 * Deliberate differences (each one where Jinja raises or prints a Python-ism; the golden cases
 * record both Jinja's result and ours):
 *   - content null renders as empty, like an absent content (Jinja raises "'NoneType' object is
 *     not iterable"). This is what vLLM does: it turns None content into [] before rendering, so
 *     an assistant message {"content": null, "tool_calls": […]} renders as tool calls alone.
 *   - a printed value (content string, part text, tool-call name) that is null, an array or an
 *     object is an error: Jinja would print Python's None / ['a', 1] / {'k': 'v'}.
 *   - content that is an object is an error (Jinja would iterate its keys as parts); a part that
 *     is a string or an array is an error (Jinja would test `'image' in "my image"` as a
 *     substring and count an image).
 *   - messages must be an array and tools null or an array (Jinja would iterate a dict's keys).
 *   - json-c limits: integers beyond int64/uint64 are saturated by json-c before they reach us
 *     (Python keeps them exact); a lone surrogate "\ud800" becomes U+FFFD in json-c.
 *
 * Invariants: output only on success (*out is NULL after an error); the counts are of the
 * <|image_pad|>/<|video_pad|> placeholders the template emitted (image parts of system and
 * assistant messages are not rendered, so not counted). Input objects are borrowed and never
 * modified. No state: any thread may call in.
 */
#include "chat_template.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "jsonx.h"
#include "sha256.h"
#include "strbuf.h"

/* Largest template file read (the template is 5 KB), and the largest JSON file holding one
 * (tokenizer_config.json lists added tokens; a few MB at most in practice). */
#define CHAT_TEMPLATE_FILE_MAX ((size_t)1 << 20)
#define CHAT_CONFIG_FILE_MAX ((size_t)64 << 20)
/* Largest prompt chat_expand_pads builds. */
#define CHAT_PROMPT_MAX ((size_t)1 << 30)
/* Room for a field path such as "messages[12].tool_calls[3].function.arguments". */
#define CHAT_PATH_MAX 128

/* ---------------------------------------------------------------------------------------- */
/* Python's formatting of numbers: repr(float), str(int), json.dumps of both. */

/* Shortest decimal digits that read back as x (x finite, > 0), as Python's repr finds them
 * (David Gay's dtoa, mode 0): digits[0..*nd) without trailing zeros, and the decimal exponent
 * such that x = 0.d1d2d3… × 10^*decpt.
 *
 * How: for p = 1…17, printf's correctly rounded p-digit value is the p-digit decimal nearest
 * to x; the first p at which it reads back as x gives the shortest digits, and the nearest
 * among them, as dtoa does. Where x is a power of two its rounding interval is narrower below
 * than above, so the nearest p-digit decimal may miss while the next one up still reads back:
 * both neighbours are tried before moving to p+1. */
static void shortest_digits(double x, char digits[24], int *nd, int *decpt)
{
	char buf[40];
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, sizeof(buf), "%.*e", p - 1, x);
		/* buf is "d.ddde±XX" (or "de±XX" when p == 1) */
		char d[24];
		int n = 0;
		const char *s = buf;
		for (; *s && *s != 'e'; s++)
			if (*s != '.')
				d[n++] = *s;
		int exp10 = atoi(s + 1);
		for (int delta = 0; delta < 3; delta++) {
			char c[24];
			int cn = n, cexp = exp10;
			memcpy(c, d, (size_t)n);
			if (delta == 1 || delta == 2) {
				/* the neighbour above (delta 1) or below (delta 2) in the last digit */
				int k = cn - 1;
				if (delta == 1) {
					while (k >= 0 && c[k] == '9')
						c[k--] = '0';
					if (k < 0) {   /* 99…9 + 1 = 100…0: one more power of ten */
						c[0] = '1';
						cexp++;
					} else {
						c[k]++;
					}
				} else {
					while (k >= 0 && c[k] == '0')
						c[k--] = '9';
					if (k < 0)
						continue;
					c[k]--;
					if (c[0] == '0')
						continue;   /* 10…0 - 1 has one digit less: not a p-digit value */
				}
			}
			char t[48];
			int tl = 0;
			t[tl++] = c[0];
			t[tl++] = '.';
			for (int i = 1; i < cn; i++)
				t[tl++] = c[i];
			snprintf(t + tl, sizeof(t) - (size_t)tl, "e%d", cexp);
			if (strtod(t, NULL) == x) {
				while (cn > 1 && c[cn - 1] == '0')
					cn--;
				memcpy(digits, c, (size_t)cn);
				*nd = cn;
				*decpt = cexp + 1;
				return;
			}
		}
	}
	/* %.16e always reads back: not reached */
	abort();
}

/* repr(x) as Python prints a float; json selects json.dumps' spelling of the non-finite values
 * (NaN, Infinity) over str()'s (nan, inf). Fixed notation when -4 < decpt <= 16, as
 * float_repr_style 'short' does: 1e-05, 0.0001, 1e+16, 1000000000000000.0, 1.5, -0.0. */
static void put_py_float(strbuf *b, double x, bool json)
{
	if (isnan(x)) {
		strbuf_adds(b, json ? "NaN" : "nan");
		return;
	}
	if (isinf(x)) {
		strbuf_adds(b, x < 0 ? (json ? "-Infinity" : "-inf") : (json ? "Infinity" : "inf"));
		return;
	}
	if (signbit(x))
		strbuf_adds(b, "-");
	x = fabs(x);
	char d[24];
	int nd, decpt;
	if (x == 0) {
		d[0] = '0';
		nd = 1;
		decpt = 1;
	} else {
		shortest_digits(x, d, &nd, &decpt);
	}
	if (decpt <= -4 || decpt > 16) {
		strbuf_add(b, d, 1);
		if (nd > 1) {
			strbuf_adds(b, ".");
			strbuf_add(b, d + 1, (size_t)nd - 1);
		}
		int ex = decpt - 1;
		strbuf_addf(b, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
	} else if (decpt <= 0) {
		strbuf_adds(b, "0.");
		for (int i = 0; i < -decpt; i++)
			strbuf_adds(b, "0");
		strbuf_add(b, d, (size_t)nd);
	} else if (decpt >= nd) {
		strbuf_add(b, d, (size_t)nd);
		for (int i = nd; i < decpt; i++)
			strbuf_adds(b, "0");
		strbuf_adds(b, ".0");
	} else {
		strbuf_add(b, d, (size_t)decpt);
		strbuf_adds(b, ".");
		strbuf_add(b, d + decpt, (size_t)(nd - decpt));
	}
}

/* A json-c integer in decimal. json-c keeps values above INT64_MAX as uint64 and saturates
 * get_int64 there. */
static void put_int(strbuf *b, json_object *v)
{
	int64_t x = json_object_get_int64(v);
	if (x == INT64_MAX)
		strbuf_addf(b, "%" PRIu64, json_object_get_uint64(v));
	else
		strbuf_addf(b, "%" PRId64, x);
}

/* A string as json.dumps(ensure_ascii=False) writes it: only '"', '\\' and the control
 * characters below 0x20 are escaped (\n \r \t \b \f by name, the rest \u00xx lower-case);
 * DEL and everything non-ASCII are copied as they are. */
static void put_json_string(strbuf *b, const char *s, size_t n)
{
	strbuf_adds(b, "\"");
	size_t run = 0;   /* start of the pending unescaped run */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[8];
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		default:
			if (c < 0x20) {
				snprintf(u, sizeof(u), "\\u%04x", c);
				esc = u;
			}
		}
		if (!esc)
			continue;
		strbuf_add(b, s + run, i - run);
		strbuf_adds(b, esc);
		run = i + 1;
	}
	strbuf_add(b, s + run, n - run);
	strbuf_adds(b, "\"");
}

/* json.dumps(v, ensure_ascii=False): separators ", " and ": ", keys in insertion order (json-c
 * keeps it; a duplicate key keeps its first place and last value, as a Python dict does). */
static void json_dump(strbuf *b, json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		strbuf_adds(b, "null");
		break;
	case json_type_boolean:
		strbuf_adds(b, json_object_get_boolean(v) ? "true" : "false");
		break;
	case json_type_int:
		put_int(b, v);
		break;
	case json_type_double:
		put_py_float(b, json_object_get_double(v), true);
		break;
	case json_type_string:
		put_json_string(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(v);
		strbuf_adds(b, "[");
		for (size_t i = 0; i < n; i++) {
			if (i)
				strbuf_adds(b, ", ");
			json_dump(b, json_object_array_get_idx(v, i));
		}
		strbuf_adds(b, "]");
		break;
	}
	case json_type_object: {
		struct json_object_iterator it = json_object_iter_begin(v);
		struct json_object_iterator end = json_object_iter_end(v);
		bool first = true;
		strbuf_adds(b, "{");
		while (!json_object_iter_equal(&it, &end)) {
			if (!first)
				strbuf_adds(b, ", ");
			first = false;
			const char *k = json_object_iter_peek_name(&it);
			put_json_string(b, k, strlen(k));
			strbuf_adds(b, ": ");
			json_dump(b, json_object_iter_peek_value(&it));
			json_object_iter_next(&it);
		}
		strbuf_adds(b, "}");
		break;
	}
	}
}

char *chat_tojson(json_object *v, size_t *len)
{
	strbuf b = {0};
	json_dump(&b, v);
	return strbuf_detach(&b, len);
}

/* ---------------------------------------------------------------------------------------- */
/* Jinja's view of JSON values. */

/* Python's bool(x) of a value (NULL: None or Undefined, both false). NaN is true in Python. */
static bool py_truthy(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return false;
	case json_type_boolean: return json_object_get_boolean(v);
	case json_type_int: return json_object_get_int64(v) != 0;
	case json_type_double: return json_object_get_double(v) != 0.0;
	case json_type_string: return json_object_get_string_len(v) > 0;
	case json_type_array: return json_object_array_length(v) > 0;
	case json_type_object: return json_object_object_length(v) > 0;
	}
	return false;
}

/* `key in obj` for a dict: the key is present, whatever its value (null included). */
static bool has_key(json_object *obj, const char *key)
{
	return json_object_is_type(obj, json_type_object) && json_object_object_get_ex(obj, key, NULL);
}

/* `obj.key == s`: a string member equal to s (never true for other types or a non-object). */
static bool member_is(json_object *obj, const char *key, const char *s)
{
	json_object *v = jsonx_member(obj, key);
	return json_object_is_type(v, json_type_string) &&
	       (size_t)json_object_get_string_len(v) == strlen(s) &&
	       memcmp(json_object_get_string(v), s, strlen(s)) == 0;
}

static const char *type_name(json_object *v)
{
	return json_type_to_name(json_object_get_type(v));
}

/* ---------------------------------------------------------------------------------------- */
/* The renderer. */

typedef struct render {
	strbuf out;
	json_object *messages;   /* borrowed */
	const chat_opts *o;      /* borrowed */
	int n_images;            /* image_count.value */
	int n_videos;            /* video_count.value */
	qerr *e;
} render;

/* {{ v }} for a value the template prints: Python's str(). Strings verbatim, integers in
 * decimal, floats as repr, booleans True/False; null, arrays and objects are refused (where
 * Jinja would print None or a Python repr) with "<path>: expected a string, got <type>". */
static int put_py_str(render *r, json_object *v, const char *path, const char *field)
{
	switch (json_object_get_type(v)) {
	case json_type_string:
		strbuf_add(&r->out, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		return 0;
	case json_type_int:
		put_int(&r->out, v);
		return 0;
	case json_type_double:
		put_py_float(&r->out, json_object_get_double(v), false);
		return 0;
	case json_type_boolean:
		strbuf_adds(&r->out, json_object_get_boolean(v) ? "True" : "False");
		return 0;
	default:
		return qerr_set(r->e, QERR_FORMAT, "%s%s: expected a string, got %s", path, field,
				type_name(v));
	}
}

/* `{{ part.text }}` once `'text' in part` held: the member is present, possibly null. */
static int put_part_text(render *r, json_object *part, const char *path)
{
	json_object *t = NULL;
	json_object_object_get_ex(part, "text", &t);
	return put_py_str(r, t, path, ".text");
}

/* The content of message i as the template sees it at `if message.content is string … else
 * for content in message.content`: *str set for a string, *parts for an array; both NULL for
 * an absent or null content (rendered as nothing: see the file comment). Numbers and booleans
 * fail as Jinja does ("not iterable"); an object fails where Jinja would iterate its keys. */
static int get_content(render *r, json_object *msg, size_t i, json_object **str, json_object **parts)
{
	json_object *c = jsonx_member(msg, "content");
	*str = *parts = NULL;
	if (!c)
		return 0;
	if (json_object_is_type(c, json_type_string))
		*str = c;
	else if (json_object_is_type(c, json_type_array))
		*parts = c;
	else
		return qerr_set(r->e, QERR_FORMAT,
				"messages[%zu].content: expected a string, an array of parts or null, got %s",
				i, type_name(c));
	return 0;
}

/* Part j of an array content: Jinja's `in` tests need a dict (a number, boolean or null part
 * raises there; a string or array part would be searched as a sequence, which is refused). */
static int get_part(render *r, json_object *parts, size_t i, size_t j, json_object **part, char path[CHAT_PATH_MAX])
{
	*part = json_object_array_get_idx(parts, j);
	snprintf(path, CHAT_PATH_MAX, "messages[%zu].content[%zu]", i, j);
	if (!json_object_is_type(*part, json_type_object))
		return qerr_set(r->e, QERR_FORMAT, "%s: expected an object, got %s", path, type_name(*part));
	return 0;
}

/* L4–11, L24–31, L61–68: a content string verbatim, else the text of every part that has a
 * "text" key (images and videos in these places are not rendered and not counted). */
static int put_text_content(render *r, json_object *msg, size_t i)
{
	json_object *str, *parts;
	int rc = get_content(r, msg, i, &str, &parts);
	if (rc)
		return rc;
	if (str)
		return put_py_str(r, str, "", "");   /* a string: cannot fail */
	size_t n = parts ? json_object_array_length(parts) : 0;
	for (size_t j = 0; j < n; j++) {
		json_object *part;
		char path[CHAT_PATH_MAX];
		if ((rc = get_part(r, parts, i, j, &part, path)))
			return rc;
		if (has_key(part, "text") && (rc = put_part_text(r, part, path)))
			return rc;
	}
	return 0;
}

/* L41–57, L95–111: a content string verbatim, else each part in order: an image (type
 * "image", or an "image" or "image_url" key), a video (type "video", or a "video" key), else
 * its text if it has a "text" key, else nothing. Vision parts count and emit
 *
 *   [Picture k: ]<|vision_start|><|image_pad|><|vision_end|>
 *   [Video k: ]<|vision_start|><|video_pad|><|vision_end|>
 *
 * with the bracketed prefix only under add_vision_id (L47: `{% endif -%}` eats the newline and
 * indentation before the vision line, L49's `{%-` the newline after it). */
static int put_vision_content(render *r, json_object *msg, size_t i)
{
	json_object *str, *parts;
	int rc = get_content(r, msg, i, &str, &parts);
	if (rc)
		return rc;
	if (str)
		return put_py_str(r, str, "", "");
	size_t n = parts ? json_object_array_length(parts) : 0;
	for (size_t j = 0; j < n; j++) {
		json_object *part;
		char path[CHAT_PATH_MAX];
		if ((rc = get_part(r, parts, i, j, &part, path)))
			return rc;
		if (member_is(part, "type", "image") || has_key(part, "image") ||
		    has_key(part, "image_url")) {
			r->n_images++;
			if (r->o->add_vision_id)
				strbuf_addf(&r->out, "Picture %d: ", r->n_images);
			strbuf_adds(&r->out, "<|vision_start|><|image_pad|><|vision_end|>");
		} else if (member_is(part, "type", "video") || has_key(part, "video")) {
			r->n_videos++;
			if (r->o->add_vision_id)
				strbuf_addf(&r->out, "Video %d: ", r->n_videos);
			strbuf_adds(&r->out, "<|vision_start|><|video_pad|><|vision_end|>");
		} else if (has_key(part, "text")) {
			if ((rc = put_part_text(r, part, path)))
				return rc;
		}
	}
	return 0;
}

/* L1–35: the system turn, with the tool list when tools is non-empty. messages[0] exists
 * (checked by the caller). */
static int render_preamble(render *r, json_object *tools)
{
	json_object *m0 = json_object_array_get_idx(r->messages, 0);
	bool system = member_is(m0, "role", "system");
	int rc;
	if (tools && json_object_array_length(tools) > 0) {                 /* L1 */
		strbuf_adds(&r->out, "<|im_start|>system\n");
		if (system) {                                                /* L3 */
			if ((rc = put_text_content(r, m0, 0)))
				return rc;
			strbuf_adds(&r->out, "\n\n");
		}
		strbuf_adds(&r->out, "# Tools\n\nYou may call one or more functions to assist with the "
			"user query.\n\nYou are provided with function signatures within "
			"<tools></tools> XML tags:\n<tools>");
		size_t n = json_object_array_length(tools);
		for (size_t k = 0; k < n; k++) {                             /* L16 */
			strbuf_adds(&r->out, "\n");
			json_dump(&r->out, json_object_array_get_idx(tools, k));
		}
		strbuf_adds(&r->out, "\n</tools>\n\nFor each function call, return a json object with "
			"function name and arguments within <tool_call></tool_call> XML tags:\n"
			"<tool_call>\n{\"name\": <function-name>, \"arguments\": "
			"<args-json-object>}\n</tool_call><|im_end|>\n");
	} else if (system) {                                                 /* L22 */
		strbuf_adds(&r->out, "<|im_start|>system\n");
		if ((rc = put_text_content(r, m0, 0)))
			return rc;
		strbuf_adds(&r->out, "<|im_end|>\n");
	}
	return 0;
}

/* L70–88: the tool calls of assistant message i (msg.tool_calls truthy). Each one is
 *
 *   ["\n"]<tool_call>\n{"name": "<name>", "arguments": <arguments>}\n</tool_call>
 *
 * with the newline before every call but the first, and before the first when the content is
 * truthy (L72). A truthy "function" member replaces the call (L75–77, OpenAI's wrapper);
 * arguments are printed raw when a string, else as tojson. */
static int render_tool_calls(render *r, json_object *msg, size_t i, json_object *calls)
{
	if (!json_object_is_type(calls, json_type_array))
		return qerr_set(r->e, QERR_FORMAT, "messages[%zu].tool_calls: expected an array, got %s",
				i, type_name(calls));
	bool content = py_truthy(jsonx_member(msg, "content"));
	size_t n = json_object_array_length(calls);
	for (size_t j = 0; j < n; j++) {
		json_object *tc = json_object_array_get_idx(calls, j);
		char path[CHAT_PATH_MAX];
		snprintf(path, sizeof(path), "messages[%zu].tool_calls[%zu]", i, j);
		/* Jinja gets Undefined arguments from a non-object and fails at tojson (L84) */
		if (!json_object_is_type(tc, json_type_object))
			return qerr_set(r->e, QERR_FORMAT, "%s: expected an object, got %s", path,
					type_name(tc));
		if ((j == 0 && content) || j > 0)                            /* L72 */
			strbuf_adds(&r->out, "\n");
		json_object *fn = jsonx_member(tc, "function");
		if (py_truthy(fn)) {                                         /* L75 */
			size_t pl = strlen(path);
			snprintf(path + pl, sizeof(path) - pl, ".function");
			if (!json_object_is_type(fn, json_type_object))
				return qerr_set(r->e, QERR_FORMAT, "%s: expected an object, got %s",
						path, type_name(fn));
			tc = fn;
		}
		strbuf_adds(&r->out, "<tool_call>\n{\"name\": \"");
		json_object *name = NULL;
		if (json_object_object_get_ex(tc, "name", &name)) {          /* L79; absent prints "" */
			int rc = put_py_str(r, name, path, ".name");
			if (rc)
				return rc;
		}
		strbuf_adds(&r->out, "\", \"arguments\": ");
		json_object *args = NULL;
		if (!json_object_object_get_ex(tc, "arguments", &args))
			return qerr_set(r->e, QERR_FORMAT, "%s.arguments: missing", path);
		if (json_object_is_type(args, json_type_string))             /* L81 */
			strbuf_add(&r->out, json_object_get_string(args),
			       (size_t)json_object_get_string_len(args));
		else
			json_dump(&r->out, args);
		strbuf_adds(&r->out, "}\n</tool_call>");
	}
	return 0;
}

/* L90–115: tool message i of n; consecutive tool messages share one user turn. */
static int render_tool_message(render *r, json_object *msg, size_t i, size_t n)
{
	if (i == 0 || !member_is(json_object_array_get_idx(r->messages, i - 1), "role", "tool"))
		strbuf_adds(&r->out, "<|im_start|>user");
	strbuf_adds(&r->out, "\n<tool_response>\n");
	int rc = put_vision_content(r, msg, i);
	if (rc)
		return rc;
	strbuf_adds(&r->out, "\n</tool_response>");
	if (i + 1 == n || !member_is(json_object_array_get_idx(r->messages, i + 1), "role", "tool"))
		strbuf_adds(&r->out, "<|im_end|>\n");
	return 0;
}

/* L1–120: the whole template, in order, into r->out. */
static int render_all(render *r, json_object *tools)
{
	int rc = render_preamble(r, tools);
	if (rc)
		return rc;
	size_t n = json_object_array_length(r->messages);
	for (size_t i = 0; i < n; i++) {                                     /* L38 */
		json_object *msg = json_object_array_get_idx(r->messages, i);
		if (member_is(msg, "role", "user")) {                        /* L39 */
			strbuf_adds(&r->out, "<|im_start|>user\n");
			if ((rc = put_vision_content(r, msg, i)))
				return rc;
			strbuf_adds(&r->out, "<|im_end|>\n");
		} else if (member_is(msg, "role", "assistant")) {            /* L59 */
			strbuf_adds(&r->out, "<|im_start|>assistant\n");
			if ((rc = put_text_content(r, msg, i)))
				return rc;
			json_object *calls = jsonx_member(msg, "tool_calls");
			if (py_truthy(calls) && (rc = render_tool_calls(r, msg, i, calls)))
				return rc;
			strbuf_adds(&r->out, "<|im_end|>\n");
		} else if (member_is(msg, "role", "tool")) {                 /* L90 */
			if ((rc = render_tool_message(r, msg, i, n)))
				return rc;
		}
		/* any other role, or a message that is not an object: nothing (Undefined role) */
	}
	if (r->o->add_generation_prompt)                                     /* L118 */
		strbuf_adds(&r->out, "<|im_start|>assistant\n");
	return 0;
}

int chat_render(json_object *messages, json_object *tools, const chat_opts *o, char **out,
		size_t *len, int *n_images, int *n_videos, qerr *e)
{
	static const chat_opts defaults = { .add_generation_prompt = false, .add_vision_id = false };
	*out = NULL;
	if (len)
		*len = 0;
	if (!json_object_is_type(messages, json_type_array))
		return qerr_set(e, QERR_FORMAT, "messages: expected an array, got %s", type_name(messages));
	/* Jinja: messages[0].role on an empty list raises "list object has no element 0" */
	if (json_object_array_length(messages) == 0)
		return qerr_set(e, QERR_INVALID, "messages: empty; at least one message is needed");
	if (tools && !json_object_is_type(tools, json_type_array))
		return qerr_set(e, QERR_FORMAT, "tools: expected an array or null, got %s", type_name(tools));
	render r = { .messages = messages, .o = o ? o : &defaults, .e = e };
	int rc = render_all(&r, tools);
	if (rc) {
		strbuf_deinit(&r.out);
		return rc;
	}
	*out = strbuf_detach(&r.out, len);
	if (n_images)
		*n_images = r.n_images;
	if (n_videos)
		*n_videos = r.n_videos;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The template check. */

/* The "chat_template" of a JSON file: 0 with *tmpl and *tlen borrowed from *doc (the caller puts
 * it), 1 when the file does not exist or has no template. The list form transformers accepts,
 * [{"name": …, "template": …}, …], yields the entry named "default", as apply_chat_template
 * picks it when no name is given. */
static int template_from_json(const char *path, json_object **doc, const char **tmpl, size_t *tlen,
			      qerr *e)
{
	int rc = jsonx_parse_file(path, CHAT_CONFIG_FILE_MAX, doc, e);
	if (rc == -QERR_MISSING)
		return 1;
	if (rc)
		return rc;
	json_object *t = jsonx_member(*doc, "chat_template");
	if (!t)
		return 1;
	if (json_object_is_type(t, json_type_array)) {
		json_object *found = NULL;
		for (size_t k = 0; k < json_object_array_length(t); k++) {
			json_object *ent = json_object_array_get_idx(t, k);
			if (member_is(ent, "name", "default"))
				found = jsonx_member(ent, "template");
		}
		if (!found)
			return qerr_set(e, QERR_UNSUPPORTED,
					"%s: chat_template: no template named \"default\"", path);
		t = found;
	}
	if (!json_object_is_type(t, json_type_string))
		return qerr_set(e, QERR_FORMAT, "%s: chat_template: expected a string, got %s", path,
				type_name(t));
	*tmpl = json_object_get_string(t);
	*tlen = (size_t)json_object_get_string_len(t);
	return 0;
}

static int check_hash(const char *path, const void *text, size_t n, qerr *e)
{
	uint8_t d[32];
	char hex[65];
	sha256(text, n, d);
	sha256_hex(d, hex);
	if (strcmp(hex, CHAT_TEMPLATE_SHA256) != 0)
		return qerr_set(e, QERR_UNSUPPORTED,
				"%s: chat template sha256 %s is not the Qwen3-VL template this server "
				"implements (sha256 %s)", path, hex, CHAT_TEMPLATE_SHA256);
	return 0;
}

int chat_template_check(const char *dir, qerr *e)
{
	char *path = xasprintf("%s/chat_template.jinja", dir);
	char *text;
	size_t n;
	int rc = jsonx_read_file(path, CHAT_TEMPLATE_FILE_MAX, &text, &n, e);
	if (rc != -QERR_MISSING) {
		if (rc == 0) {
			rc = check_hash(path, text, n, e);
			free(text);
		}
		free(path);
		return rc;
	}
	static const char *const json_files[] = { "chat_template.json", "tokenizer_config.json" };
	for (size_t k = 0; k < sizeof(json_files) / sizeof(json_files[0]); k++) {
		free(path);
		path = xasprintf("%s/%s", dir, json_files[k]);
		json_object *doc = NULL;
		const char *t = NULL;
		rc = template_from_json(path, &doc, &t, &n, e);
		if (rc == 0)
			rc = check_hash(path, t, n, e);
		json_object_put(doc);
		if (rc != 1) {
			free(path);
			return rc;
		}
	}
	free(path);
	return qerr_set(e, QERR_MISSING,
			"%s: no chat template (none of chat_template.jinja, chat_template.json, "
			"tokenizer_config.json has one)", dir);
}

/* ---------------------------------------------------------------------------------------- */
/* Placeholder expansion. */

int chat_expand_pads(const char *prompt, size_t len, const char *pad, const int64_t *counts,
		     size_t n, char **out, size_t *out_len, qerr *e)
{
	*out = NULL;
	if (out_len)
		*out_len = 0;
	size_t pl = strlen(pad);
	if (pl == 0)
		return qerr_set(e, QERR_INVALID, "expand placeholders: empty placeholder text");
	/* count the placeholders, and the output size, before writing anything */
	size_t found = 0, total = len;
	const char *s = prompt, *end = prompt + len, *hit;
	while ((hit = memmem(s, (size_t)(end - s), pad, pl))) {
		if (found < n) {
			if (counts[found] < 1)
				return qerr_set(e, QERR_INVALID,
						"expand %s: count %zu is %" PRId64 ", expected at least 1",
						pad, found, counts[found]);
			size_t extra;
			if (counts[found] > (int64_t)CHAT_PROMPT_MAX ||
			    !size_mul((size_t)(counts[found] - 1), pl, &extra) ||
			    !size_add(total, extra, &total) || total > CHAT_PROMPT_MAX)
				return qerr_set(e, QERR_LIMIT, "expand %s: the prompt would exceed %zu bytes",
						pad, CHAT_PROMPT_MAX);
		}
		found++;
		s = hit + pl;
	}
	if (found != n)
		return qerr_set(e, QERR_INVALID, "expand %s: the prompt has %zu placeholders but %zu "
				"counts were given", pad, found, n);
	strbuf b = {0};
	strbuf_reserve(&b, total);   /* once: total is exact */
	s = prompt;
	for (size_t k = 0; k < n; k++) {
		hit = memmem(s, (size_t)(end - s), pad, pl);
		strbuf_add(&b, s, (size_t)(hit - s));
		for (int64_t c = 0; c < counts[k]; c++)
			strbuf_add(&b, pad, pl);
		s = hit + pl;
	}
	strbuf_add(&b, s, (size_t)(end - s));
	*out = strbuf_detach(&b, out_len);
	return 0;
}
