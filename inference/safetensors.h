/*
 * safetensors: read (mmap, validate) and write Hugging Face safetensors files, one file or a
 * sharded set described by model.safetensors.index.json.
 *
 * File layout (all little-endian):
 *
 *   +----------------+----------------------------+-------------------------------------+
 *   | u64 N          | N bytes of JSON header     | data: tensors at [begin, end) each  |
 *   +----------------+----------------------------+-------------------------------------+
 *   0                8                            8+N                                   size
 *
 *   header = { "__metadata__": {str: str}?,  "<name>": {"dtype": "BF16", "shape": [..],
 *              "data_offsets": [begin, end]}, ... }      offsets relative to byte 8+N
 *
 * Reading validates everything before any tensor is used: N against the file size and a cap,
 * the JSON, each entry's fields, dtype, shape (element count × dtype size == end − begin, with
 * overflow checks), offsets within the data area, no two tensors overlapping, no holes (the data
 * area is exactly covered, as the reference implementation requires), each tensor aligned to its
 * element size. Any violation is an error naming the file, the tensor and the problem; nothing
 * is ever read out of bounds. Tensor data stays in the read-only private mapping (borrowed by
 * every st_tensor until the set is freed).
 *
 * Supported dtypes: BF16, F16, F32. Other dtypes the format defines (F64, I64, U8, F8_E4M3, …)
 * fail as QERR_UNSUPPORTED; anything else as QERR_FORMAT ("unknown dtype").
 *
 * Threads: an open set is immutable; any thread may read it concurrently.
 */
#ifndef QVL_SAFETENSORS_H
#define QVL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "qerr.h"

#define ST_MAX_DIMS 8
/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

typedef enum st_dtype {
	ST_BF16 = 0,
	ST_F16 = 1,
	ST_F32 = 2,
} st_dtype;

typedef struct st_tensor {
	const char *name;            /* borrowed: owned by the set */
	st_dtype dtype;
	int ndim;                    /* 0..ST_MAX_DIMS (0 = scalar, one element) */
	int64_t shape[ST_MAX_DIMS];
	uint64_t numel;
	const void *data;            /* borrowed: inside the file's mapping (NULL when parsing from memory) */
	uint64_t nbytes;
	uint64_t offset;             /* begin, relative to the data area */
	int file_index;              /* which shard (0 for one file) */
} st_tensor;

typedef struct st_set st_set;

/* Bytes per element of a dtype (2, 2, 4). */
size_t st_dtype_size(st_dtype t);
/* "BF16", "F16", "F32". */
const char *st_dtype_name(st_dtype t);
/* Parse a dtype name; 0 on success, -QERR_UNSUPPORTED for a known safetensors dtype we do not
 * support, -QERR_FORMAT for an unknown name (message in e names `where`). */
int st_dtype_parse(const char *s, st_dtype *out, const char *where, qerr *e);

/* Validate a header held in memory: `header` is the N JSON bytes, `data_size` the size of the
 * data area that follows it. On success *out is a set with no mapping (tensor data pointers are
 * NULL) — this is what the fuzzer drives. `where` names the source in messages. */
int st_parse_header(const char *header, size_t header_len, uint64_t data_size, const char *where,
		    st_set **out, qerr *e);

/* Open and map one .safetensors file. */
int st_open_file(const char *path, st_set **out, qerr *e);

/* Open a model directory: dir/model.safetensors.index.json when present (every shard it names
 * is opened; a name in weight_map must be in the shard it points to; a tensor in two shards is
 * an error; shard file names with '/' are refused), else dir/model.safetensors. Fails with
 * QERR_MISSING when neither exists. */
int st_open_dir(const char *dir, st_set **out, qerr *e);

void st_set_free(st_set *s);

size_t st_set_count(const st_set *s);
/* i-th tensor, in file order (shards in the order they first appear in weight_map, tensors by
 * ascending offset). */
const st_tensor *st_set_tensor(const st_set *s, size_t i);
/* Look up by exact name; NULL if absent. */
const st_tensor *st_set_find(const st_set *s, const char *name);
/* The value of a __metadata__ key of the first file, or NULL. */
const char *st_set_metadata(const st_set *s, const char *key);

/*
 * Writer: st_writer_open writes the header for the given tensor list (data laid out in list
 * order, header padded with spaces to a multiple of 8; a list whose contiguous layout would leave
 * a tensor unaligned to its element size — an odd count of 2-byte values before an F32 — is
 * refused with QERR_INVALID: put larger dtypes first), then the
 * caller streams exactly the tensors' bytes, in order, with st_writer_write (any chunking), and
 * st_writer_close checks the byte count and closes. __metadata__ is {"format":"pt"}, which
 * transformers expects.
 */
typedef struct st_spec {
	const char *name;            /* borrowed for the duration of st_writer_open */
	st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
} st_spec;

typedef struct st_writer st_writer;

int st_writer_open(const char *path, const st_spec *specs, size_t n, st_writer **out, qerr *e);
int st_writer_write(st_writer *w, const void *data, size_t nbytes, qerr *e);
/* Flushes and closes; fails if fewer or more bytes were written than the header promised.
 * Frees w in every case. */
int st_writer_close(st_writer *w, qerr *e);
/* Abandon a partly written file (closes and unlinks it); NULL is a no-op. */
void st_writer_abort(st_writer *w);

#endif
