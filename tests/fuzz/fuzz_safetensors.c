/*
 * fuzz_safetensors: libFuzzer target for the safetensors header parser.
 *
 * The input is a whole safetensors file image: a little-endian u64 N, N header bytes, then the
 * data area. When N fits in the input, st_parse_header validates the header against the size of
 * the data area (the same call st_open_file makes on a mapped file). Besides "never crash, never
 * read out of bounds, never leak" (ASan and UBSan report those), the target checks what a
 * success promises and what a failure promises, and aborts when a promise is broken:
 *   - success: tensors sorted by offset, tiling [0, data size) exactly; each tensor's numel and
 *     nbytes agree with its shape and dtype; each name found by st_set_find is that tensor;
 *   - failure: a negative code, a message that is one non-empty line, no set returned.
 * Seeds: tests/data/safetensors-seeds/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* Abort (a crash libFuzzer reports) when a promise of the parser is broken. */
static void require(int ok)
{
	if (!ok)
		abort();
}

/* Check every invariant a successfully parsed set promises. */
static void check_set(const st_set *s, uint64_t data_size)
{
	uint64_t end = 0;
	for (size_t i = 0; i < st_set_count(s); i++) {
		const st_tensor *t = st_set_tensor(s, i);
		require(t != NULL && t->data == NULL && t->file_index == 0);
		require(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
		uint64_t numel = 1;
		int zero = 0;
		for (int d = 0; d < t->ndim; d++) {
			require(t->shape[d] >= 0);
			zero |= t->shape[d] == 0;
		}
		for (int d = 0; d < t->ndim && !zero; d++)
			require(!__builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel));
		require(t->numel == (zero ? 0 : numel));
		require(t->nbytes == t->numel * st_dtype_size(t->dtype));
		require(t->offset == end);
		end = t->offset + t->nbytes;
		require(st_set_find(s, t->name) == t);
	}
	require(end == data_size);
	require(st_set_tensor(s, st_set_count(s)) == NULL);
	(void)st_set_metadata(s, "format");
}

/* libFuzzer's entry point (declared here: libFuzzer ships no header for it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | data[i];
	if (n > size - 8)
		return 0;
	/* A copy of exactly the header bytes, so that ASan sees any read past them. */
	char *header = malloc(n ? (size_t)n : 1);
	if (!header)
		return 0;
	memcpy(header, data + 8, (size_t)n);
	uint64_t data_size = size - 8 - n;
	qerr e;
	memset(&e, 0, sizeof(e));
	st_set *s = NULL;
	int rc = st_parse_header(header, (size_t)n, data_size, "fuzz", &s, &e);
	if (rc == 0) {
		require(s != NULL);
		check_set(s, data_size);
		st_set_free(s);
	} else {
		require(rc < 0 && s == NULL && e.code == -rc);
		require(e.msg[0] != 0 && strchr(e.msg, '\n') == NULL);
	}
	free(header);
	return 0;
}
