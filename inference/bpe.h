/*
 * bpe: byte-pair encoding of one pre-token by merge rank, as tokenizers' BPE model does it, with
 * a word cache.
 *
 * A word (the raw bytes of one pre-token) starts as one symbol per byte (the id of the token that
 * spells that byte in the byte-level alphabet); then, while some adjacent pair has a merge, the
 * pair with the lowest rank — the leftmost of equal ones — is replaced by the merged token. The
 * result goes to a cache keyed by the word's bytes.
 *
 * Threads: after the last bpe_add_merge, a bpe may be used by any number of threads at once; the
 * cache inside is lock-striped (a lookup or insert holds one of 64 mutexes for a few dozen
 * nanoseconds).
 */
#ifndef QVL_BPE_H
#define QVL_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

typedef struct bpe bpe;

/* A model whose words start as byte_ids[b] for each byte b. A byte whose id is -1 (no token for
 * it) becomes unk_id, several in a row one unk_id when fuse_unk, or is dropped when unk_id is -1 —
 * what tokenizers does for a character missing from the vocabulary. merges_hint sizes the merge
 * table. Allocation failure aborts. */
bpe *bpe_new(const int32_t byte_ids[256], int32_t unk_id, bool fuse_unk, size_t merges_hint);
void bpe_free(bpe *m);

/* Add the merge (a, b) → merged with rank `rank` (its place in the merges list). Adding a pair
 * again replaces the earlier entry, as tokenizers' map does. Not thread-safe. */
void bpe_add_merge(bpe *m, int32_t a, int32_t b, int32_t merged, uint32_t rank);

/* The merge of (a, b): true and *rank, *merged if there is one. */
bool bpe_merge_of(const bpe *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged);

/* Append the ids of word[0..n) to *out. Stack use is constant; memory is O(n). */
void bpe_encode(const bpe *m, const uint8_t *word, size_t n, tok_ids *out);

#endif
