/*
 * safetensors: read and write Hugging Face safetensors files (see safetensors.h for the layout
 * and the public contract).
 *
 * Why: qvld maps the checkpoint once at start-up and uploads tensors straight from the mapping;
 * `qvl mkmodel` writes converted checkpoints. A checkpoint is input like any other, so every
 * byte of the header is validated before a tensor is handed out, and a bad file becomes one
 * line naming the file, the tensor and the problem.
 *
 * How reading works:
 *   1. st_open_file maps the whole file read-only (MAP_PRIVATE), reads N (little-endian u64),
 *      checks N against ST_MAX_HEADER_BYTES and the file size, and hands the N header bytes and
 *      the size of the data area to st_parse_header.
 *   2. st_parse_header parses the JSON (jsonx), checks __metadata__ (an object of strings, kept
 *      as key/value copies), and turns every other member into an st_tensor: dtype, shape
 *      (integers ≥ 0, at most ST_MAX_DIMS), element count and byte count with overflow checks,
 *      data_offsets (two integers, begin ≤ end ≤ data size, end − begin == byte count), and
 *      alignment of the tensor's position in the file to its element size.
 *   3. The tensors are sorted by (begin, end) and walked once: each must start exactly where
 *      the previous one ended (earlier is an overlap, later a hole) and the last must end at
 *      the end of the data area; this is the rule of the reference implementation.
 *   4. An index of tensor pointers sorted by name serves st_set_find by binary search.
 *   st_open_dir reads model.safetensors.index.json, opens every shard it names (in order of
 *   first appearance in weight_map), checks every weight_map entry against its shard, merges
 *   the shards' tensors into one set and refuses a name present in two shards. Tensors present
 *   in a shard but not listed in weight_map are kept (transformers loads them too).
 *
 * How writing works: st_writer_open validates the spec list (dtypes, ranks, dims, overflow,
 * duplicate names, alignment: contiguous data cannot pad, so a tensor whose offset is not a
 * multiple of its element size is refused), lays the tensors out in list order, builds the
 * header with json-c ({"__metadata__":{"format":"pt"}, name: {dtype, shape, data_offsets}, …}),
 * pads it with spaces so that 8 + N is a multiple of 8 and writes it. Data goes through an 8 MiB
 * buffer; a chunk at least as large as the buffer is written straight from the caller's memory
 * once the buffer is drained, so multi-GB checkpoints are written with few large write(2)s.
 *
 * Invariants of an st_set:
 *   - tensors[] holds every tensor, shard by shard (file_index ascending), each shard's by
 *     ascending offset; the tensors of one file cover its data area exactly.
 *   - by_name[] holds a pointer to every tensor, sorted by strcmp of the names; no two names
 *     are equal.
 *   - data pointers are NULL for a set from st_parse_header, else inside files[file_index]'s
 *     mapping, which lives until st_set_free.
 * Ownership: the set owns its tensors, their names, the index, the metadata copies, the file
 * paths and the mappings. Callers borrow everything they get from the accessors.
 *
 * Threads: an open set is immutable, so any thread may read it. A writer belongs to one thread.
 * A file truncated by someone else while mapped would raise SIGBUS on access; checkpoints are
 * not modified in place while qvld runs, so that is not guarded against.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json.h>

#include "alloc.h"
#include "jsonx.h"

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
/* An index lists one entry per tensor; 64 MB is far beyond any real one. */
#define ST_MAX_INDEX_BYTES (64u * 1000u * 1000u)
/* More shards than this is not a checkpoint but an attack on the O(tensors × shards) scan. */
#define ST_MAX_SHARDS 4096
/* Writer buffer: large enough that write(2) overhead vanishes, small enough to not matter. */
#define ST_WRITE_BUF (8u << 20)
/* How much of a tensor name a message shows. */
#define ST_NAME_SHOW 96

typedef struct st_file {
	char *path;            /* owned */
	void *map;             /* owned mapping of map_len bytes; NULL when parsed from memory */
	size_t map_len;
} st_file;

struct st_set {
	st_tensor *tensors;    /* owned, n entries; names owned */
	size_t n;
	const st_tensor **by_name; /* owned array of n pointers into tensors, sorted by name */
	st_file *files;        /* owned, nfiles entries */
	int nfiles;
	char **meta;           /* owned: nmeta (key, value) pairs of the first file's __metadata__ */
	size_t nmeta;
};

struct st_writer {
	char *path;            /* owned */
	int fd;
	uint64_t total;        /* data bytes the header promises */
	uint64_t written;      /* data bytes accepted so far (buffered or written) */
	unsigned char *buf;    /* owned, ST_WRITE_BUF bytes */
	size_t used;           /* bytes waiting in buf */
	int failed;            /* the QERR code of the first failure; sticky, so that a close
				* after a failed write cannot leave a file that looks complete */
};

/* ---------------------------------------------------------------------------------------- */
/* dtypes */

static const char *const st_dtype_names[] = { "BF16", "F16", "F32" };
static const size_t st_dtype_sizes[] = { 2, 2, 4 };

/* Dtypes the format defines that we do not implement (safetensors' Dtype enum). */
static const char *const st_dtype_other[] = {
	"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
	"I16", "U16", "I32", "U32", "I64", "U64", "F64", "C64",
};

/* Bytes per element; 0 for a value outside the enum (never a valid size). */
size_t st_dtype_size(st_dtype t)
{
	return (unsigned)t < 3 ? st_dtype_sizes[t] : 0;
}

/* The safetensors name of a dtype; "?" for a value outside the enum. */
const char *st_dtype_name(st_dtype t)
{
	return (unsigned)t < 3 ? st_dtype_names[t] : "?";
}

/* Copy s into buf (ST_NAME_SHOW + 4 bytes) for a message: control bytes become '?', so the
 * message stays one line, and a long name is cut with "...". */
static const char *show(const char *s, char *buf)
{
	size_t i = 0;
	for (; s[i] && i < ST_NAME_SHOW; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (s[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = 0;
	return buf;
}

/* Exact, case-sensitive match of s against the supported names; *out is untouched on
 * failure: QERR_UNSUPPORTED for another dtype of the format, QERR_FORMAT for anything else. */
int st_dtype_parse(const char *s, st_dtype *out, const char *where, qerr *e)
{
	char shown[ST_NAME_SHOW + 4];
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, st_dtype_names[i]) == 0) {
			*out = (st_dtype)i;
			return 0;
		}
	}
	for (size_t i = 0; i < sizeof(st_dtype_other) / sizeof(st_dtype_other[0]); i++)
		if (strcmp(s, st_dtype_other[i]) == 0)
			return qerr_set(e, QERR_UNSUPPORTED,
					"%s: dtype %s is not supported (only BF16, F16, F32)", where, s);
	return qerr_set(e, QERR_FORMAT, "%s: unknown dtype \"%s\"", where, show(s, shown));
}

/* ---------------------------------------------------------------------------------------- */
/* sets */

static int cmp_by_offset(const void *a, const void *b)
{
	const st_tensor *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b)
{
	const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
	return strcmp(x->name, y->name);
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_key_name(const void *key, const void *el)
{
	return strcmp(key, (*(const st_tensor *const *)el)->name);
}

static const char *file_path(const st_set *s, int i)
{
	return i >= 0 && i < s->nfiles ? s->files[i].path : "?";
}

/* Build s->by_name; fails when two tensors share a name (only possible across shards, since
 * one JSON object keeps one member per key). `where` names the source in the message. */
static int build_name_index(st_set *s, const char *where, qerr *e)
{
	char shown[ST_NAME_SHOW + 4];
	free(s->by_name);
	s->by_name = xmalloc(s->n * sizeof(*s->by_name));
	for (size_t i = 0; i < s->n; i++)
		s->by_name[i] = &s->tensors[i];
	qsort(s->by_name, s->n, sizeof(*s->by_name), cmp_by_name);
	for (size_t i = 1; i < s->n; i++) {
		const st_tensor *a = s->by_name[i - 1], *b = s->by_name[i];
		if (strcmp(a->name, b->name) != 0)
			continue;
		if (a->file_index == b->file_index)
			return qerr_set(e, QERR_FORMAT, "%s: tensor '%s' appears twice", where,
					show(a->name, shown));
		return qerr_set(e, QERR_FORMAT, "%s: tensor '%s' is in both %s and %s", where,
				show(a->name, shown), file_path(s, a->file_index),
				file_path(s, b->file_index));
	}
	return 0;
}

/* Unmap every file and free everything the set owns; NULL is a no-op. Every pointer obtained
 * from the set (tensors, names, data, metadata) dies with it. */
void st_set_free(st_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free((char *)s->tensors[i].name);
	free(s->tensors);
	free(s->by_name);
	for (int i = 0; i < s->nfiles; i++) {
		if (s->files[i].map)
			munmap(s->files[i].map, s->files[i].map_len);
		free(s->files[i].path);
	}
	free(s->files);
	for (size_t i = 0; i < 2 * s->nmeta; i++)
		free(s->meta[i]);
	free(s->meta);
	free(s);
}

/* Number of tensors (all shards). */
size_t st_set_count(const st_set *s)
{
	return s->n;
}

/* The i-th tensor in file order, or NULL when i >= st_set_count(s). */
const st_tensor *st_set_tensor(const st_set *s, size_t i)
{
	return i < s->n ? &s->tensors[i] : NULL;
}

/* Binary search of the name index: O(log n), no allocation, safe from any thread. */
const st_tensor *st_set_find(const st_set *s, const char *name)
{
	if (!s->n)
		return NULL;
	const st_tensor *const *p = bsearch(name, s->by_name, s->n, sizeof(*s->by_name), cmp_key_name);
	return p ? *p : NULL;
}

/* Linear search of the first file's __metadata__ (a handful of keys); borrowed or NULL. */
const char *st_set_metadata(const st_set *s, const char *key)
{
	for (size_t i = 0; i < s->nmeta; i++)
		if (strcmp(s->meta[2 * i], key) == 0)
			return s->meta[2 * i + 1];
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* header validation */

/* A JSON integer in [0, INT64_MAX] (doubles are refused even when integral, as the reference
 * implementation's usize fields refuse them). */
static bool json_uint(json_object *v, int64_t *out)
{
	return v && json_object_is_type(v, json_type_int) && jsonx_as_int(v, 0, INT64_MAX, out);
}

/* Format shape dims as "[a, b, c]" into buf (for messages). */
static const char *shape_str(const st_tensor *t, char *buf, size_t len)
{
	size_t k = 0;
	k += (size_t)snprintf(buf + k, len - k, "[");
	for (int i = 0; i < t->ndim && k < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
	if (k < len)
		snprintf(buf + k, len - k, "]");
	return buf;
}

/* Validate __metadata__ (an object whose values are all strings) and copy it into s. */
static int parse_metadata(st_set *s, json_object *v, const char *where, qerr *e)
{
	char shown[ST_NAME_SHOW + 4];
	if (!v || !json_object_is_type(v, json_type_object))
		return qerr_set(e, QERR_FORMAT, "%s: __metadata__ is %s, not an object of strings",
				where, v ? json_type_to_name(json_object_get_type(v)) : "null");
	size_t n = (size_t)json_object_object_length(v);
	s->meta = xcalloc(n ? 2 * n : 1, sizeof(char *));
	json_object_object_foreach(v, key, val) {
		if (!val || !json_object_is_type(val, json_type_string))
			return qerr_set(e, QERR_FORMAT,
					"%s: __metadata__: value of '%s' is %s, not a string", where,
					show(key, shown),
					val ? json_type_to_name(json_object_get_type(val)) : "null");
		s->meta[2 * s->nmeta] = xstrdup(key);
		s->meta[2 * s->nmeta + 1] = xstrdup(json_object_get_string(val));
		s->nmeta++;
	}
	return 0;
}

/* Fill t from one header entry. `ctx` is "<where>: tensor '<name>'", `base` the file offset of
 * the data area (8 + N), used for the alignment test. t->name is set by the caller. */
static int parse_entry(json_object *v, const char *ctx, uint64_t data_size, uint64_t base,
		       st_tensor *t, qerr *e)
{
	char buf[160];
	if (!v || !json_object_is_type(v, json_type_object))
		return qerr_set(e, QERR_FORMAT, "%s: entry is %s, not an object", ctx,
				v ? json_type_to_name(json_object_get_type(v)) : "null");

	json_object *dt = jsonx_member(v, "dtype");
	if (!dt)
		return qerr_set(e, QERR_FORMAT, "%s: missing dtype", ctx);
	if (!json_object_is_type(dt, json_type_string))
		return qerr_set(e, QERR_FORMAT, "%s: dtype is %s, not a string", ctx,
				json_type_to_name(json_object_get_type(dt)));
	int rc = st_dtype_parse(json_object_get_string(dt), &t->dtype, ctx, e);
	if (rc)
		return rc;

	json_object *sh = jsonx_member(v, "shape");
	if (!sh)
		return qerr_set(e, QERR_FORMAT, "%s: missing shape", ctx);
	if (!json_object_is_type(sh, json_type_array))
		return qerr_set(e, QERR_FORMAT, "%s: shape is %s, not an array", ctx,
				json_type_to_name(json_object_get_type(sh)));
	size_t nd = json_object_array_length(sh);
	if (nd > ST_MAX_DIMS)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: shape has %zu dimensions, more than %d", ctx,
				nd, ST_MAX_DIMS);
	t->ndim = (int)nd;
	bool zero = false;
	for (size_t i = 0; i < nd; i++) {
		json_object *d = json_object_array_get_idx(sh, i);
		int64_t x;
		if (!json_uint(d, &x))
			return qerr_set(e, QERR_FORMAT, "%s: shape[%zu] = %.64s is %s", ctx, i,
					d ? json_object_to_json_string(d) : "null",
					d && json_object_is_type(d, json_type_int) &&
							json_object_get_int64(d) < 0
						? "negative"
						: "not an integer");
		t->shape[i] = x;
		zero |= x == 0;
	}
	/* A zero dim makes the tensor empty whatever the other dims are; test it first so that
	 * [2^40, 2^40, 0] is empty rather than an overflow. */
	uint64_t numel = 1;
	for (int i = 0; i < t->ndim && !zero; i++)
		if (!u64_mul(numel, (uint64_t)t->shape[i], &numel))
			return qerr_set(e, QERR_FORMAT, "%s: element count of shape %s overflows", ctx,
					shape_str(t, buf, sizeof(buf)));
	t->numel = zero ? 0 : numel;
	size_t esize = st_dtype_size(t->dtype);
	if (!u64_mul(t->numel, esize, &t->nbytes))
		return qerr_set(e, QERR_FORMAT, "%s: byte count of shape %s overflows", ctx,
				shape_str(t, buf, sizeof(buf)));

	json_object *off = jsonx_member(v, "data_offsets");
	if (!off)
		return qerr_set(e, QERR_FORMAT, "%s: missing data_offsets", ctx);
	int64_t b, en;
	if (!json_object_is_type(off, json_type_array) || json_object_array_length(off) != 2 ||
	    !json_uint(json_object_array_get_idx(off, 0), &b) ||
	    !json_uint(json_object_array_get_idx(off, 1), &en))
		return qerr_set(e, QERR_FORMAT, "%s: data_offsets %.64s is not 2 integers >= 0", ctx,
				json_object_to_json_string(off));
	if (b > en)
		return qerr_set(e, QERR_FORMAT, "%s: data_offsets begin %lld > end %lld", ctx,
				(long long)b, (long long)en);
	if ((uint64_t)en > data_size)
		return qerr_set(e, QERR_FORMAT,
				"%s: data_offsets [%lld, %lld] are outside the data area of %llu bytes",
				ctx, (long long)b, (long long)en, (unsigned long long)data_size);
	if ((uint64_t)(en - b) != t->nbytes)
		return qerr_set(e, QERR_FORMAT,
				"%s: data_offsets hold %llu bytes but %s %s needs %llu bytes", ctx,
				(unsigned long long)(en - b), st_dtype_name(t->dtype),
				shape_str(t, buf, sizeof(buf)), (unsigned long long)t->nbytes);
	/* The mapping is page-aligned, so the file offset decides the data pointer's alignment.
	 * No overflow: base ≤ 8 + ST_MAX_HEADER_BYTES and b ≤ INT64_MAX. An empty tensor is never
	 * read, so where it sits does not matter. */
	if (t->nbytes && (base + (uint64_t)b) % esize != 0)
		return qerr_set(e, QERR_FORMAT,
				"%s: data starts at file offset %llu, not aligned to %zu bytes", ctx,
				(unsigned long long)(base + (uint64_t)b), esize);
	t->offset = (uint64_t)b;
	return 0;
}

/* Check that the tensors, sorted by offset, tile [0, data_size) exactly. */
static int check_coverage(const st_set *s, const char *where, uint64_t data_size, qerr *e)
{
	char s1[ST_NAME_SHOW + 4], s2[ST_NAME_SHOW + 4];
	uint64_t end = 0;
	const st_tensor *prev = NULL;
	for (size_t i = 0; i < s->n; i++) {
		const st_tensor *t = &s->tensors[i];
		if (t->offset < end)
			return qerr_set(e, QERR_FORMAT,
					"%s: tensor '%s' at [%llu, %llu) overlaps tensor '%s' at [%llu, %llu)",
					where, show(t->name, s1), (unsigned long long)t->offset,
					(unsigned long long)(t->offset + t->nbytes), show(prev->name, s2),
					(unsigned long long)prev->offset, (unsigned long long)end);
		if (t->offset > end)
			return qerr_set(e, QERR_FORMAT,
					"%s: hole in the data area: bytes [%llu, %llu) before tensor '%s' belong to no tensor",
					where, (unsigned long long)end, (unsigned long long)t->offset,
					show(t->name, s1));
		end = t->offset + t->nbytes;
		prev = t;
	}
	if (end != data_size)
		return qerr_set(e, QERR_FORMAT,
				"%s: hole in the data area: bytes [%llu, %llu) at its end belong to no tensor",
				where, (unsigned long long)end, (unsigned long long)data_size);
	return 0;
}

/* The body of st_parse_header; on failure the caller frees the partly built *s. */
static int parse_header(const char *header, size_t header_len, uint64_t data_size,
			const char *where, st_set *s, qerr *e)
{
	char shown[ST_NAME_SHOW + 4];
	if (header_len > ST_MAX_HEADER_BYTES)
		return qerr_set(e, QERR_LIMIT, "%s: header length %zu exceeds the limit of %u bytes",
				where, header_len, ST_MAX_HEADER_BYTES);
	json_object *root;
	int rc = jsonx_parse(header, header_len, where, &root, e);
	if (rc)
		return rc;
	if (!json_object_is_type(root, json_type_object)) {
		rc = qerr_set(e, QERR_FORMAT, "%s: header is %s, not a JSON object", where,
			      json_type_to_name(json_object_get_type(root)));
		json_object_put(root);
		return rc;
	}
	size_t cap = (size_t)json_object_object_length(root);
	s->tensors = xcalloc(cap ? cap : 1, sizeof(st_tensor));
	uint64_t base = 8 + (uint64_t)header_len;
	json_object_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0) {
			rc = parse_metadata(s, val, where, e);
			if (rc)
				break;
			continue;
		}
		char ctx[QERR_MSG_MAX];
		snprintf(ctx, sizeof(ctx), "%s: tensor '%s'", where, show(key, shown));
		st_tensor *t = &s->tensors[s->n];
		memset(t, 0, sizeof(*t));
		rc = parse_entry(val, ctx, data_size, base, t, e);
		if (rc)
			break;
		t->name = xstrdup(key);
		s->n++;
	}
	json_object_put(root);
	if (rc)
		return rc;
	qsort(s->tensors, s->n, sizeof(st_tensor), cmp_by_offset);
	rc = check_coverage(s, where, data_size, e);
	if (rc)
		return rc;
	return build_name_index(s, where, e);
}

/* Validate header_len bytes of header text (not NUL-terminated; never read past) against a
 * data area of data_size bytes. *out is NULL on failure; the set has no files, so every data
 * pointer is NULL and file_index 0. Fails with QERR_LIMIT above ST_MAX_HEADER_BYTES,
 * QERR_UNSUPPORTED for an unsupported dtype or too many dims, QERR_FORMAT for the rest. */
int st_parse_header(const char *header, size_t header_len, uint64_t data_size, const char *where,
		    st_set **out, qerr *e)
{
	*out = NULL;
	st_set *s = xcalloc(1, sizeof(*s));
	int rc = parse_header(header, header_len, data_size, where, s, e);
	if (rc) {
		st_set_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* opening files and directories */

/* Map path read-only and validate it. Fails with QERR_MISSING when it does not exist, QERR_IO
 * when it cannot be opened, is not a regular file or cannot be mapped, QERR_FORMAT when it is
 * shorter than 8 bytes or N exceeds it, QERR_LIMIT when N > ST_MAX_HEADER_BYTES, and as
 * st_parse_header otherwise. On success every tensor's data points into the mapping. */
int st_open_file(const char *path, st_set **out, qerr *e)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		return qerr_set(e, err == ENOENT ? QERR_MISSING : QERR_IO, "%s: %s", path,
				err == ENOENT ? "file not found" : strerror(err));
	}
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		int err = errno;
		close(fd);
		return qerr_set(e, QERR_IO, "%s: %s", path, strerror(err));
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return qerr_set(e, QERR_IO, "%s: not a regular file", path);
	}
	if (sb.st_size < 8) {
		close(fd);
		return qerr_set(e, QERR_FORMAT,
				"%s: truncated: %lld bytes, shorter than the 8-byte header length", path,
				(long long)sb.st_size);
	}
	if ((uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		return qerr_set(e, QERR_LIMIT, "%s: %lld bytes cannot be mapped", path,
				(long long)sb.st_size);
	}
	size_t size = (size_t)sb.st_size;
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	int err = errno;
	close(fd); /* the mapping keeps the file */
	if (map == MAP_FAILED)
		return qerr_set(e, QERR_IO, "%s: mmap: %s", path, strerror(err));

	const unsigned char *p = map;
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | p[i];
	int rc;
	st_set *s = NULL;
	if (n > ST_MAX_HEADER_BYTES)
		rc = qerr_set(e, QERR_LIMIT, "%s: header length %llu exceeds the limit of %u bytes",
			      path, (unsigned long long)n, ST_MAX_HEADER_BYTES);
	else if (n > size - 8)
		rc = qerr_set(e, QERR_FORMAT,
			      "%s: header length %llu exceeds the file (%zu bytes after the length)",
			      path, (unsigned long long)n, size - 8);
	else
		rc = st_parse_header((const char *)p + 8, (size_t)n, size - 8 - n, path, &s, e);
	if (rc) {
		munmap(map, size);
		return rc;
	}
	s->files = xcalloc(1, sizeof(st_file));
	s->nfiles = 1;
	s->files[0].path = xstrdup(path);
	s->files[0].map = map;
	s->files[0].map_len = size;
	for (size_t i = 0; i < s->n; i++)
		s->tensors[i].data = p + 8 + n + s->tensors[i].offset;
	*out = s;
	return 0;
}

/* Move every tensor, file and (when dst has none yet) the metadata of src into dst, src's
 * tensors becoming file file_index of dst. src is freed. */
static void set_absorb(st_set *dst, st_set *src)
{
	int fi = dst->nfiles;
	dst->tensors = xrealloc(dst->tensors, (dst->n + src->n) * sizeof(st_tensor));
	for (size_t i = 0; i < src->n; i++) {
		dst->tensors[dst->n + i] = src->tensors[i];
		dst->tensors[dst->n + i].file_index = fi;
	}
	dst->n += src->n;
	src->n = 0;
	dst->files = xrealloc(dst->files, (size_t)(dst->nfiles + src->nfiles) * sizeof(st_file));
	memcpy(dst->files + dst->nfiles, src->files, (size_t)src->nfiles * sizeof(st_file));
	dst->nfiles += src->nfiles;
	src->nfiles = 0;
	if (fi == 0) {
		dst->meta = src->meta;
		dst->nmeta = src->nmeta;
		src->meta = NULL;
		src->nmeta = 0;
	}
	st_set_free(src);
}

/* A shard name must be a plain file name inside the model directory. */
static bool shard_name_ok(const char *s)
{
	return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* The index of f in shards[0..n), or n. Consecutive weight_map entries usually name the same
 * shard, so *hint (the last match) is tried first. */
static size_t shard_find(const char **shards, size_t n, const char *f, size_t *hint)
{
	if (*hint < n && strcmp(shards[*hint], f) == 0)
		return *hint;
	for (size_t k = 0; k < n; k++)
		if (strcmp(shards[k], f) == 0)
			return *hint = k;
	return n;
}

/* Open a sharded checkpoint described by the index at idx_path in dir. */
static int open_index(const char *dir, const char *idx_path, st_set **out, qerr *e)
{
	char s1[ST_NAME_SHOW + 4], s2[ST_NAME_SHOW + 4];
	json_object *root = NULL, *wm = NULL;
	int rc = jsonx_parse_file(idx_path, ST_MAX_INDEX_BYTES, &root, e);
	if (rc)
		return rc;
	const char **shards = NULL;  /* borrowed from root, distinct, in order of appearance */
	st_set **sets = NULL;
	size_t nshards = 0, hint = 0;
	st_set *all = NULL;
	if (!json_object_is_type(root, json_type_object)) {
		rc = qerr_set(e, QERR_FORMAT, "%s: not a JSON object", idx_path);
		goto out;
	}
	rc = jsonx_get_object(root, "weight_map", &wm, idx_path, e);
	if (rc == 1 || (rc == 0 && json_object_object_length(wm) == 0))
		rc = qerr_set(e, QERR_FORMAT, "%s: weight_map is missing or empty", idx_path);
	if (rc)
		goto out;
	size_t nw = (size_t)json_object_object_length(wm);
	shards = xmalloc(nw * sizeof(*shards));
	json_object_object_foreach(wm, tname, fval) {
		if (!fval || !json_object_is_type(fval, json_type_string)) {
			rc = qerr_set(e, QERR_FORMAT, "%s: weight_map: value of '%s' is not a string",
				      idx_path, show(tname, s1));
			goto out;
		}
		const char *f = json_object_get_string(fval);
		if (!shard_name_ok(f)) {
			rc = qerr_set(e, QERR_FORMAT,
				      "%s: weight_map: shard file name '%s' (of tensor '%s') is refused: it must be a plain file name",
				      idx_path, show(f, s1), show(tname, s2));
			goto out;
		}
		if (shard_find(shards, nshards, f, &hint) == nshards) {
			if (nshards == ST_MAX_SHARDS) {
				rc = qerr_set(e, QERR_LIMIT, "%s: more than %d shard files", idx_path,
					      ST_MAX_SHARDS);
				goto out;
			}
			shards[nshards++] = f;
		}
	}
	sets = xcalloc(nshards, sizeof(*sets));
	for (size_t k = 0; k < nshards; k++) {
		char *p = xasprintf("%s/%s", dir, shards[k]);
		rc = st_open_file(p, &sets[k], e);
		free(p);
		if (rc)
			goto out;
	}
	json_object_object_foreach(wm, tn, fv) {
		const char *f = json_object_get_string(fv);
		size_t k = shard_find(shards, nshards, f, &hint); /* always found: listed above */
		if (!st_set_find(sets[k], tn)) {
			rc = qerr_set(e, QERR_FORMAT,
				      "%s: weight_map puts tensor '%s' in %s, which does not hold it",
				      idx_path, show(tn, s1), show(f, s2));
			goto out;
		}
	}
	all = xcalloc(1, sizeof(*all));
	for (size_t k = 0; k < nshards; k++) {
		set_absorb(all, sets[k]);
		sets[k] = NULL;
	}
	rc = build_name_index(all, dir, e);
	if (rc == 0) {
		*out = all;
		all = NULL;
	}
out:
	for (size_t k = 0; sets && k < nshards; k++)
		st_set_free(sets[k]);
	free(sets);
	st_set_free(all);
	free(shards);
	json_object_put(root);
	return rc;
}

/* The index when dir has one, else dir/model.safetensors. QERR_MISSING when dir does not exist
 * or holds neither; QERR_FORMAT for a bad index (invalid JSON, weight_map missing, empty or not
 * an object of strings, a refused shard name, a listed tensor absent from its shard, a tensor
 * in two shards); a shard's own error (naming the shard) when one fails to open. */
int st_open_dir(const char *dir, st_set **out, qerr *e)
{
	*out = NULL;
	struct stat sb;
	if (stat(dir, &sb) != 0) {
		int err = errno;
		return qerr_set(e, err == ENOENT ? QERR_MISSING : QERR_IO, "%s: %s", dir,
				err == ENOENT ? "directory not found" : strerror(err));
	}
	if (!S_ISDIR(sb.st_mode))
		return qerr_set(e, QERR_IO, "%s: not a directory", dir);
	char *idx = xasprintf("%s/%s", dir, ST_INDEX_NAME);
	int rc;
	if (stat(idx, &sb) == 0) {
		rc = open_index(dir, idx, out, e);
	} else if (errno != ENOENT) {
		rc = qerr_set(e, QERR_IO, "%s: %s", idx, strerror(errno));
	} else {
		char *one = xasprintf("%s/%s", dir, ST_SINGLE_NAME);
		if (stat(one, &sb) != 0 && errno == ENOENT)
			rc = qerr_set(e, QERR_MISSING, "%s: neither %s nor %s found", dir,
				      ST_SINGLE_NAME, ST_INDEX_NAME);
		else
			rc = st_open_file(one, out, e);
		free(one);
	}
	free(idx);
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* writer */

/* Write all of p to fd, retrying short writes and EINTR. */
static int write_all(int fd, const void *p, size_t n, const char *path, qerr *e)
{
	const unsigned char *c = p;
	while (n) {
		ssize_t r = write(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return qerr_set(e, QERR_IO, "%s: write: %s", path,
					r == 0 ? "wrote nothing" : strerror(errno));
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Validate the specs and build the header text (padded); *hlen is its length N. */
static int writer_header(const char *path, const st_spec *specs, size_t n, char **text,
			 size_t *hlen, uint64_t *total, qerr *e)
{
	char shown[ST_NAME_SHOW + 4];
	for (size_t i = 0; i < n; i++) {
		const st_spec *sp = &specs[i];
		if (!sp->name || strcmp(sp->name, "__metadata__") == 0)
			return qerr_set(e, QERR_INVALID, "%s: tensor %zu has no usable name", path, i);
		if (st_dtype_size(sp->dtype) == 0 || sp->ndim < 0 || sp->ndim > ST_MAX_DIMS)
			return qerr_set(e, QERR_INVALID, "%s: tensor '%s': bad dtype or rank", path,
					show(sp->name, shown));
	}
	/* Duplicates: sort a copy of the name pointers. */
	const char **names = xmalloc((n ? n : 1) * sizeof(*names));
	for (size_t i = 0; i < n; i++)
		names[i] = specs[i].name;
	qsort(names, n, sizeof(*names), cmp_str_ptr);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(names[i - 1], names[i]) == 0) {
			int rc = qerr_set(e, QERR_INVALID, "%s: tensor '%s' is listed twice", path,
					  show(names[i], shown));
			free(names);
			return rc;
		}
	}
	free(names);

	json_object *root = json_object_new_object();
	json_object *meta = json_object_new_object();
	json_object_object_add(meta, "format", json_object_new_string("pt"));
	json_object_object_add(root, "__metadata__", meta);
	uint64_t off = 0;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		const st_spec *sp = &specs[i];
		uint64_t numel = 1, nb;
		bool zero = false;
		for (int d = 0; d < sp->ndim; d++) {
			if (sp->shape[d] < 0) {
				rc = qerr_set(e, QERR_INVALID, "%s: tensor '%s': negative dim", path,
					      show(sp->name, shown));
				break;
			}
			zero |= sp->shape[d] == 0;
		}
		for (int d = 0; d < sp->ndim && !rc && !zero; d++)
			if (!u64_mul(numel, (uint64_t)sp->shape[d], &numel))
				rc = qerr_set(e, QERR_INVALID, "%s: tensor '%s': size overflows", path,
					      show(sp->name, shown));
		if (rc)
			break;
		if (zero)
			numel = 0;
		if (!u64_mul(numel, st_dtype_size(sp->dtype), &nb) || nb > (uint64_t)INT64_MAX - off) {
			rc = qerr_set(e, QERR_INVALID, "%s: tensor '%s': size overflows", path,
				      show(sp->name, shown));
			break;
		}
		/* Contiguous list order cannot pad, and the reader refuses an unaligned tensor (as
		 * mmap users must): the caller lists larger dtypes first, as the reference does. */
		if (nb && off % st_dtype_size(sp->dtype) != 0) {
			rc = qerr_set(e, QERR_INVALID,
				      "%s: tensor '%s' would start at data offset %llu, not aligned to %zu bytes (list larger dtypes first)",
				      path, show(sp->name, shown), (unsigned long long)off,
				      st_dtype_size(sp->dtype));
			break;
		}
		json_object *t = json_object_new_object();
		json_object_object_add(t, "dtype", json_object_new_string(st_dtype_name(sp->dtype)));
		json_object *sh = json_object_new_array();
		for (int d = 0; d < sp->ndim; d++)
			json_object_array_add(sh, json_object_new_int64(sp->shape[d]));
		json_object_object_add(t, "shape", sh);
		json_object *o = json_object_new_array();
		json_object_array_add(o, json_object_new_int64((int64_t)off));
		json_object_array_add(o, json_object_new_int64((int64_t)(off + nb)));
		json_object_object_add(t, "data_offsets", o);
		json_object_object_add(root, sp->name, t);
		off += nb;
	}
	if (!rc) {
		size_t len;
		const char *j = json_object_to_json_string_length(
			root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
		size_t padded = (len + 7) & ~(size_t)7; /* 8 + padded is then a multiple of 8 */
		if (padded > ST_MAX_HEADER_BYTES) {
			rc = qerr_set(e, QERR_LIMIT, "%s: header of %zu bytes exceeds the limit", path,
				      padded);
		} else {
			*text = xmalloc(padded);
			memcpy(*text, j, len);
			memset(*text + len, ' ', padded - len);
			*hlen = padded;
			*total = off;
		}
	}
	json_object_put(root);
	return rc;
}

/* Validate the specs (QERR_INVALID: no name or "__metadata__", bad dtype or rank, negative
 * dim, size overflow, unaligned layout, a name listed twice; QERR_LIMIT: header too large),
 * then create or truncate path (mode 0644) and write the length and header (QERR_IO with the
 * path and errno). Nothing is left at path when it fails after creating it. */
int st_writer_open(const char *path, const st_spec *specs, size_t n, st_writer **out, qerr *e)
{
	*out = NULL;
	char *text = NULL;
	size_t hlen = 0;
	uint64_t total = 0;
	int rc = writer_header(path, specs, n, &text, &hlen, &total, e);
	if (rc)
		return rc;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = qerr_set(e, QERR_IO, "%s: %s", path, strerror(errno));
		free(text);
		return rc;
	}
	st_writer *w = xcalloc(1, sizeof(*w));
	w->path = xstrdup(path);
	w->fd = fd;
	w->total = total;
	w->buf = xmalloc(ST_WRITE_BUF);
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	rc = write_all(fd, len8, 8, path, e);
	if (!rc)
		rc = write_all(fd, text, hlen, path, e);
	free(text);
	if (rc) {
		st_writer_abort(w);
		return rc;
	}
	*out = w;
	return 0;
}

/* Write out whatever waits in the buffer. */
static int writer_flush(st_writer *w, qerr *e)
{
	int rc = write_all(w->fd, w->buf, w->used, w->path, e);
	w->used = 0;
	return rc;
}

/* Fail with the sticky error of an earlier failure. */
static int writer_failed(const st_writer *w, qerr *e)
{
	return qerr_set(e, w->failed, "%s: an earlier write failed (%s)", w->path,
			qerr_name(w->failed));
}

/* The body of st_writer_write; the caller records a failure. */
static int writer_write(st_writer *w, const unsigned char *p, size_t nbytes, qerr *e)
{
	if (nbytes > w->total - w->written)
		return qerr_set(e, QERR_INVALID,
				"%s: %zu more bytes would exceed the %llu data bytes of the header",
				w->path, nbytes, (unsigned long long)w->total);
	w->written += nbytes;
	while (nbytes) {
		/* A large chunk goes straight from the caller's memory once the buffer is empty. */
		if (w->used == 0 && nbytes >= ST_WRITE_BUF)
			return write_all(w->fd, p, nbytes, w->path, e);
		size_t k = ST_WRITE_BUF - w->used;
		if (k > nbytes)
			k = nbytes;
		memcpy(w->buf + w->used, p, k);
		w->used += k;
		p += k;
		nbytes -= k;
		if (w->used == ST_WRITE_BUF) {
			int rc = writer_flush(w, e);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Append nbytes of tensor data. QERR_INVALID when it would pass the promised total, QERR_IO
 * with errno when a write fails. A failure is sticky: later writes and close fail too, and the
 * caller is expected to st_writer_abort. */
int st_writer_write(st_writer *w, const void *data, size_t nbytes, qerr *e)
{
	if (w->failed)
		return writer_failed(w, e);
	int rc = writer_write(w, data, nbytes, e);
	if (rc)
		w->failed = -rc;
	return rc;
}

/* Release w's memory (not the file). */
static void writer_release(st_writer *w)
{
	free(w->buf);
	free(w->path);
	free(w);
}

/* Flush and close. On any failure (a byte count that differs from the header, an earlier
 * failed write, a failed flush or close) the file is unlinked as well. Frees w in every case.
 * No fsync: durability is the caller's business (a converter may sync once at the end). */
int st_writer_close(st_writer *w, qerr *e)
{
	int rc = 0;
	if (w->failed)
		rc = writer_failed(w, e);
	else if (w->written != w->total)
		rc = qerr_set(e, QERR_INVALID, "%s: %llu data bytes written, the header promises %llu",
			      w->path, (unsigned long long)w->written, (unsigned long long)w->total);
	if (!rc)
		rc = writer_flush(w, e);
	if (!rc) {
		/* Linux releases the descriptor even when close fails (a late write-back error). */
		int c = close(w->fd);
		w->fd = -1;
		if (c != 0)
			rc = qerr_set(e, QERR_IO, "%s: close: %s", w->path, strerror(errno));
	}
	if (rc) {
		/* A file that does not match its header must not be left to be loaded later. */
		st_writer_abort(w);
		return rc;
	}
	writer_release(w);
	return 0;
}

/* Close and unlink the file, free w; NULL is a no-op. */
void st_writer_abort(st_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	unlink(w->path);
	writer_release(w);
}
