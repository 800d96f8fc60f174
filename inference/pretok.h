/*
 * pretok: the Qwen2 pre-tokenizer — the Split regex of Qwen2/Qwen3 tokenizer.json as a hand-written
 * scanner — and the per-code-point Unicode properties it and the NFC step need, as Hugging Face
 * tokenizers 0.23 (its Oniguruma: Unicode 16.0; unicode-normalization-alignments: Unicode 9.0) has
 * them rather than as the system's libraries do.
 *
 * The regex (exactly this text is recognised by pretok_is_qwen2_regex):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Its alternatives match somewhere at every position, so the text is covered by consecutive
 * pieces and pretok_piece_end gives where the piece that starts at a position ends.
 *
 * Threads: a pretok is immutable after pretok_new; any thread may use it.
 */
#ifndef QVL_PRETOK_H
#define QVL_PRETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The class of a code point for the regex (the low two bits of pretok_flags). \s is Unicode
 * White_Space as Oniguruma has it (no U+180E, unlike PCRE2); \p{L} and \p{N} are General_Category
 * L* and N* of Unicode 16.0. */
enum {
	PRETOK_OTHER = 0,
	PRETOK_LETTER = 1,
	PRETOK_NUMBER = 2,
	PRETOK_SPACE = 3,
	PRETOK_CLASS_MASK = 3,
	/* NFC may change the text around this code point: it has a non-zero combining class, is not
	 * its own NFC, or can be the second of a canonical composition (utf8proc's data). A text
	 * without such code points is already in NFC. */
	PRETOK_NFC_CHECK = 4,
	/* Unknown to tokenizers' NFC (Unicode 9.0 data) although newer Unicode gives it a combining
	 * class or a composition: tokenizers treats it as a starter that composes with nothing, so
	 * NFC must pass it through untouched and normalise the text on either side apart. */
	PRETOK_NFC_BARRIER = 8,
};

typedef struct pretok pretok;

/* Build the property table (a few tens of KiB; computed from the static ranges and utf8proc in
 * some tens of milliseconds). Allocation failure aborts. */
pretok *pretok_new(void);
void pretok_free(pretok *p);

/* PRETOK_* class and flags of a code point (0 for anything above U+10FFFF). */
unsigned pretok_flags(const pretok *p, uint32_t cp);

/* End (byte offset) of the piece of text[0..len) that starts at byte i < len. text must be valid
 * UTF-8 (NUL bytes allowed); i must be a character boundary. Constant stack, no allocation. */
size_t pretok_piece_end(const pretok *p, const char *text, size_t len, size_t i);

/* Whether pattern is the Qwen2 Split regex this module implements. */
bool pretok_is_qwen2_regex(const char *pattern);

#endif
