/*
 * json_guide: a byte-level JSON recognizer for guided decoding (response_format json_object):
 * it says which next bytes keep the output a prefix of one JSON object, and the shortest bytes
 * that finish it — so that the engine can mask every token that would break the JSON and, when
 * the token budget runs short, steer generation to a close.
 *
 *   state ─ where we are in the grammar (a value expected, in a string, a number, a literal, …)
 *   stack ─ the open containers, '{' or '[' (at most JSON_GUIDE_MAX_DEPTH)
 *
 *   prefix    {"a": [1, tr          closing  ue]}
 *   prefix    {"k                   closing  ":null}
 *
 * The grammar is RFC 8259 with the top level restricted to an object, and whitespace allowed
 * where JSON allows it. Strings take any byte ≥ 0x20 but '"' and '\' (escapes checked, \u with
 * four hex digits); UTF-8 validity is left to the detokenizer, which writes U+FFFD for bad
 * bytes, so the text stays valid JSON.
 *
 * Pure functions on a small value type: copy it to try bytes without committing. Any thread.
 */
#ifndef QVL_JSON_GUIDE_H
#define QVL_JSON_GUIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_GUIDE_MAX_DEPTH 32
/* The longest closing sequence: per level at most ":null}" or "null]" plus a string end. */
#define JSON_GUIDE_MAX_CLOSING (8 + 8 * JSON_GUIDE_MAX_DEPTH)

typedef struct json_guide {
	uint8_t state;
	uint8_t depth;
	uint8_t aux;                   /* literal: its index; string: escape/hex progress */
	uint8_t lit;                   /* which literal: 't', 'f' or 'n' */
	bool key;                      /* the current string is an object key */
	uint8_t stack[JSON_GUIDE_MAX_DEPTH];
} json_guide;

/* Expect one JSON object (leading whitespace allowed). */
void json_guide_init(json_guide *g);

/* Advance by one byte; false (and g left unchanged) when the byte cannot come next. */
bool json_guide_step(json_guide *g, uint8_t c);

/* Advance by n bytes; false when one of them cannot come (g is then in an unspecified state:
 * feed a copy to test). */
bool json_guide_feed(json_guide *g, const char *s, size_t n);

/* The object is complete (only whitespace may follow). */
bool json_guide_done(const json_guide *g);

/* The shortest bytes (ASCII) that complete the object from g, written to out (capacity at least
 * JSON_GUIDE_MAX_CLOSING); returns their number (0 when done). */
size_t json_guide_closing(const json_guide *g, char *out);

#endif
