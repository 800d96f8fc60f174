/*
 * tokenizer: the Qwen3 byte-level BPE tokenizer, read from a Hugging Face tokenizer.json, giving
 * exactly the ids Hugging Face tokenizers gives.
 *
 * Encoding, as tokenizers runs this tokenizer.json:
 *   1. added tokens (special and non-special, e.g. <|im_start|>, <think>) are found first as exact
 *      substrings of the raw text, leftmost-longest; the text between them goes through 2–4;
 *   2. NFC normalisation;
 *   3. the Split pre-tokenizer regex (contractions, letters, single digits, punctuation runs,
 *      newlines, whitespace with the look-ahead \s+(?!\S)), each piece mapped to the byte-level
 *      alphabet (GPT-2 bytes_to_unicode);
 *   4. BPE by merge rank (merges read as "a b" strings or ["a","b"] pairs).
 * No BOS/EOS is added. Input bytes that are not valid UTF-8 are first replaced by U+FFFD, one per
 * maximal invalid subsequence (a lone surrogate's CESU bytes, a stray continuation byte…), so any
 * byte string encodes; NUL bytes are ordinary characters.
 *
 * Decoding maps ids back to bytes (the byte-level alphabet reversed; added tokens by their
 * content) and turns invalid UTF-8 into U+FFFD the way Rust's String::from_utf8_lossy does,
 * which is what tokenizers' ByteLevel decoder uses.
 *
 * Threads: a loaded tokenizer is immutable apart from an internal cache guarded for concurrent
 * use; any thread may encode and decode at once.
 */
#ifndef QVL_TOKENIZER_H
#define QVL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qerr.h"

typedef struct tokenizer tokenizer;

/* A growable id array; tok_ids_deinit frees it. */
typedef struct tok_ids {
	int32_t *v;   /* owned */
	size_t n, cap;
} tok_ids;

void tok_ids_push(tok_ids *ids, int32_t id);
void tok_ids_deinit(tok_ids *ids);

/* Load tokenizer.json (model type BPE with a ByteLevel pre-tokenizer/decoder as Qwen2/Qwen3 use;
 * anything else is QERR_UNSUPPORTED naming what). Errors name the file. An added token whose id in
 * the file is not the one tokenizers would give it (tokenizers silently renumbers) is
 * QERR_INVALID; lstrip, rstrip and single_word added tokens are QERR_UNSUPPORTED. */
int tok_load(const char *path, tokenizer **out, qerr *e);
void tok_free(tokenizer *t);

/* Append the ids of text[0..len) to *ids. Never fails on any input; allocation failure aborts
 * (as does a single pre-token of 4 GiB or more, which would need ~50 GiB). Stack use does not
 * depend on len. */
void tok_encode(const tokenizer *t, const char *text, size_t len, tok_ids *ids);

/* Number of ids (the largest id + 1, added tokens included). */
int32_t tok_vocab_size(const tokenizer *t);
/* The token's bytes after byte-level decoding; NULL for an id that is not a token. *len gets the
 * byte count. The bytes need not be valid UTF-8 alone. As tokenizers' ByteLevel decoder does it,
 * for added tokens too: a token all of whose characters are in the byte-level alphabet gives the
 * bytes they stand for (an added token "<|im_start|>" its content, but "<Ġ>" would give "< >"),
 * any other token its own UTF-8. */
const char *tok_id_bytes(const tokenizer *t, int32_t id, size_t *len);
/* The token as the vocabulary spells it (byte-level alphabet), e.g. "Ġhello"; NULL if none. */
const char *tok_id_to_token(const tokenizer *t, int32_t id);
/* Id of a token spelled as in the vocabulary or of an added token's content; -1 if none. */
int32_t tok_token_to_id(const tokenizer *t, const char *token);
/* Whether id is an added token marked special (skipped by skip_special_tokens). */
bool tok_is_special(const tokenizer *t, int32_t id);
/* Whether id is an added token (special or not). */
bool tok_is_added(const tokenizer *t, int32_t id);

/* Decode ids to text (heap, NUL-terminated, *len without the NUL). Unknown ids are skipped.
 * skip_special drops added tokens marked special. */
char *tok_decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *len);

/* The text the model part of the tokenizer sees (heap, NUL-terminated, *out_len without the NUL):
 * invalid UTF-8 replaced, then NFC (as tokenizers computes it) applied to each span between added
 * tokens, the added tokens kept as they are. decode(encode(text)) equals this. */
char *tok_normalize(const tokenizer *t, const char *text, size_t len, size_t *out_len);

#endif
