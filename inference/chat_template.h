/*
 * chat_template: a native renderer of the Qwen3-VL-Instruct chat template, byte-identical to
 * what transformers' Jinja rendering of that template produces.
 *
 * Only this one template is implemented (chat_template.jinja, sha256 3636d0f0…89e4): a model
 * directory whose template differs is refused with an error that says so (chat_template_check),
 * never rendered silently wrong. The renderer follows the template's control flow statement by
 * statement (see chat_template.c), including its quirks: no default system prompt, a system
 * message honoured only as messages[0], parts concatenated with no separator, consecutive tool
 * messages grouped into one user turn, tool calls rendered with `tojson` exactly as
 * json.dumps(ensure_ascii=False) formats them.
 *
 * Input is the request's JSON (json-c objects, borrowed): messages — an array of
 * {role, content (string | array of parts | null), tool_calls?} — and tools (array or NULL).
 * A part is an image if its type is "image" or it has an "image" or "image_url" key; a video if
 * its type is "video" or it has a "video" key; otherwise its "text" is emitted. Values the
 * template would print must be strings (numbers and booleans are printed as Python's str()
 * prints them); anything Jinja would fail on is an error naming the message and field, with one
 * exception: a null content renders as empty (as an absent one does), where Jinja fails — vLLM
 * turns null content into [] before rendering. chat_template.c lists every such decision.
 */
#ifndef QVL_CHAT_TEMPLATE_H
#define QVL_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json.h>

#include "qerr.h"

#define CHAT_TEMPLATE_SHA256 "3636d0f0bd6bef02654cdffdc447b79cb2cef8ab02cc75267345946291a489e4"

typedef struct chat_opts {
	bool add_generation_prompt;
	bool add_vision_id;
} chat_opts;

/* Render messages (+ tools) to the prompt text (heap, NUL-terminated; *len its length).
 * Counts of image and video parts go to *n_images / *n_videos (either may be NULL).
 * The counts are of the placeholders emitted (images in system or assistant content are not
 * rendered, hence not counted). o may be NULL (both options false); len may be NULL.
 * Fails with QERR_FORMAT when a value has the wrong type ("messages[2].content[1].text:
 * expected a string, got null"; messages not an array, tools neither null nor an array) and
 * QERR_INVALID when messages is empty; *out is NULL then. */
int chat_render(json_object *messages, json_object *tools, const chat_opts *o, char **out,
		size_t *len, int *n_images, int *n_videos, qerr *e);

/* Verify that the model directory's chat template is the one this renderer implements: the
 * first of dir/chat_template.jinja, dir/chat_template.json ("chat_template" key) and
 * dir/tokenizer_config.json ("chat_template" key) that exists must hash to
 * CHAT_TEMPLATE_SHA256. QERR_UNSUPPORTED "…: chat template sha256 … is not the Qwen3-VL
 * template this server implements" otherwise; QERR_MISSING if none has a template.
 * A JSON file without the key (or with null) is passed over; the list form
 * [{"name", "template"}, …] is read as its "default" entry (QERR_UNSUPPORTED when it has none);
 * an unreadable or malformed file fails with QERR_IO / QERR_FORMAT. */
int chat_template_check(const char *dir, qerr *e);

/* Python's json.dumps(v, ensure_ascii=False) with default separators (", ", ": ") — the
 * template's `tojson` — appended to a heap string; returns it (NUL-terminated), *len its length
 * (len may be NULL). v NULL is JSON null. Never fails (aborts only on out-of-memory). */
char *chat_tojson(json_object *v, size_t *len);

/* Expand the image placeholders of a rendered prompt: the k-th "<|image_pad|>" becomes
 * counts[k] copies of it (counts[k] = t·h·w / merge² from the k-th image's grid). Fails with
 * QERR_INVALID when the number of placeholders differs from n. Same for videos with
 * "<|video_pad|>" through a separate call (pad names the token text).
 * Also QERR_INVALID for a count below 1 or an empty pad, QERR_LIMIT when the result would
 * exceed 1 GiB; *out is NULL after any failure, *out_len (may be NULL) the result's length.
 * A pad typed literally in user text counts as a placeholder, so it shows up as a mismatch. */
int chat_expand_pads(const char *prompt, size_t len, const char *pad, const int64_t *counts,
		     size_t n, char **out, size_t *out_len, qerr *e);

#endif
