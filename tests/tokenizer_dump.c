/*
 * tokenizer_dump: qvl's tokenizer on a file of inputs, one JSON result per line, for comparison
 * with what tests/golden/make_tokenizer_golden.js gets from Hugging Face tokenizers
 * (tests/tokenizer_npm.test compares the two).
 *
 *   tokenizer_dump encode     TOKENIZER.json CORPUS.jsonl   each line a JSON string → its ids
 *   tokenizer_dump encode-hex TOKENIZER.json BYTES.jsonl    each line a hex string of raw bytes
 *   tokenizer_dump decode     TOKENIZER.json DECODE.jsonl   each line {"ids": […], …} →
 *                                                           {"text": …, "text_skip": …}
 * Ids are printed as JSON arrays without spaces ("[1,2,3]"), as JSON.stringify writes them.
 * Exit status 0, or 1 with a message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "jsonx.h"
#include "tokenizer.h"

static void die(const char *msg)
{
	fprintf(stderr, "tokenizer_dump: %s\n", msg);
	exit(1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void print_ids(const tok_ids *ids)
{
	putchar('[');
	for (size_t i = 0; i < ids->n; i++)
		printf(i ? ",%d" : "%d", ids->v[i]);
	puts("]");
}

int main(int argc, char **argv)
{
	if (argc != 4)
		die("usage: tokenizer_dump encode|encode-hex|decode TOKENIZER.json INPUT.jsonl");
	const char *mode = argv[1];
	qerr e = { 0 };
	tokenizer *tok;
	if (tok_load(argv[2], &tok, &e))
		die(e.msg);
	char *text;
	size_t len;
	if (jsonx_read_file(argv[3], (size_t)1 << 30, &text, &len, &e))
		die(e.msg);
	size_t lineno = 0;
	for (char *line = text, *end; line < text + len; line = end + 1) {
		end = memchr(line, '\n', (size_t)(text + len - line));
		if (!end)
			end = text + len;
		*end = 0;
		lineno++;
		if (end == line)
			continue;
		json_object *o;
		char where[64];
		snprintf(where, sizeof(where), "line %zu", lineno);
		if (jsonx_parse(line, (size_t)(end - line), where, &o, &e))
			die(e.msg);
		tok_ids ids = { 0 };
		if (!strcmp(mode, "encode") && json_object_is_type(o, json_type_string)) {
			tok_encode(tok, json_object_get_string(o), (size_t)json_object_get_string_len(o), &ids);
			print_ids(&ids);
		} else if (!strcmp(mode, "encode-hex") && json_object_is_type(o, json_type_string)) {
			const char *h = json_object_get_string(o);
			size_t n = (size_t)json_object_get_string_len(o) / 2;
			char *b = xmalloc(n + 1);
			for (size_t i = 0; i < n; i++) {
				int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
				if (hi < 0 || lo < 0)
					die("bad hex string");
				b[i] = (char)(hi << 4 | lo);
			}
			tok_encode(tok, b, n, &ids);
			print_ids(&ids);
			free(b);
		} else if (!strcmp(mode, "decode") && jsonx_member(o, "ids")) {
			json_object *arr = jsonx_member(o, "ids");
			for (size_t i = 0; i < json_object_array_length(arr); i++)
				tok_ids_push(&ids, (int32_t)json_object_get_int64(json_object_array_get_idx(arr, i)));
			json_object *res = json_object_new_object();
			for (int skip = 0; skip < 2; skip++) {
				size_t n;
				char *s = tok_decode(tok, ids.v, ids.n, skip, &n);
				json_object_object_add(res, skip ? "text_skip" : "text", json_object_new_string_len(s, (int)n));
				free(s);
			}
			puts(json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
			json_object_put(res);
		} else {
			die("unknown mode or unexpected line");
		}
		tok_ids_deinit(&ids);
		json_object_put(o);
	}
	free(text);
	tok_free(tok);
	return 0;
}
