/*
 * check_safetensors: tests of the safetensors reader and writer (inference/safetensors.c).
 *
 * What: round trips through the writer and the reader (every supported dtype, a scalar, empty
 * tensors, large chunked writes, many names), sharded directories, and one test per kind of
 * malformed file, each asserting the error code and a distinctive part of the one-line message
 * (the file, the tensor, the problem).
 *
 * How: every test makes its own directory with mkdtemp under $TMPDIR (or /tmp), writes files
 * there, either with the writer or byte by byte (write_st: u64 header length, header text,
 * data bytes), and removes the directory at the end. Malformed headers go through both
 * st_open_file and st_parse_header, so the in-memory parser the fuzzer drives is tested too.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

#define PATH_LEN 1024

/* ---------------------------------------------------------------------------------------- */
/* helpers */

/* Make a fresh directory under $TMPDIR or /tmp; its path goes to dir (PATH_LEN bytes). */
static void tmp_make(char *dir)
{
	const char *t = getenv("TMPDIR");
	if (!t || !*t)
		t = "/tmp";
	snprintf(dir, PATH_LEN, "%s/check_st.XXXXXX", t);
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Remove dir and the plain files in it (tests make no subdirectories). */
static void tmp_remove(const char *dir)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	struct dirent *de;
	char p[PATH_LEN * 2];
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		ck_assert_int_eq(unlink(p), 0);
	}
	closedir(d);
	ck_assert_int_eq(rmdir(dir), 0);
}

static void join(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, PATH_LEN, "%s/%s", dir, name);
	ck_assert(n > 0 && n < PATH_LEN);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	if (n)
		ck_assert_uint_eq(fwrite(p, 1, n, f), n);
	ck_assert_int_eq(fclose(f), 0);
}

/* Byte j of the data area of a test file (never all zeros, so offsets show in comparisons). */
static unsigned char pattern(size_t j)
{
	return (unsigned char)(j * 7 + 1);
}

/* Write a safetensors file byte by byte: the u64 `hlen`, the header text (strlen bytes), then
 * `ndata` data bytes. hlen need not match the text (for the truncation cases). */
static void write_st(const char *path, uint64_t hlen, const char *header, size_t ndata)
{
	size_t h = strlen(header), n = 8 + h + ndata;
	unsigned char *buf = malloc(n);
	ck_assert_ptr_nonnull(buf);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(hlen >> (8 * i));
	memcpy(buf + 8, header, h);
	for (size_t j = 0; j < ndata; j++)
		buf[8 + h + j] = pattern(j);
	write_bytes(path, buf, n);
	free(buf);
}

/* The header padded with spaces so that 8 + N is a multiple of 8 (as real files are), into a
 * fresh heap string. */
static char *pad_header(const char *header)
{
	size_t h = strlen(header), p = (h + 7) & ~(size_t)7;
	char *s = malloc(p + 1);
	ck_assert_ptr_nonnull(s);
	memcpy(s, header, h);
	memset(s + h, ' ', p - h);
	s[p] = 0;
	return s;
}

/* Write dir/name with the padded header and ndata data bytes. */
static void write_padded(const char *path, const char *header, size_t ndata)
{
	char *h = pad_header(header);
	write_st(path, strlen(h), h, ndata);
	free(h);
}

/* Assert that e holds a one-line message containing every non-NULL needle. */
static void assert_msg(const qerr *e, const char *a, const char *b)
{
	ck_assert_msg(strchr(e->msg, '\n') == NULL, "message has a newline: %s", e->msg);
	ck_assert_msg(!a || strstr(e->msg, a), "message \"%s\" lacks \"%s\"", e->msg, a);
	ck_assert_msg(!b || strstr(e->msg, b), "message \"%s\" lacks \"%s\"", e->msg, b);
}

/* st_open_file(path) must fail with code, naming the file and `what`. */
static void assert_open_fails(const char *path, int code, const char *what)
{
	qerr e = { 0 };
	st_set *s = (st_set *)&e; /* any non-NULL value: the call must reset it */
	int rc = st_open_file(path, &s, &e);
	ck_assert_msg(rc == -code, "rc %d, expected %d (%s)", rc, -code, e.msg);
	ck_assert_int_eq(e.code, code);
	ck_assert_ptr_null(s);
	assert_msg(&e, path, what);
}

/* A malformed header, padded and followed by ndata bytes: st_open_file must fail with code and
 * a message naming the file, `what` and `what2` (the tensor, say); st_parse_header on the same
 * bytes must fail the same way, naming its `where`. */
static void assert_bad_header(const char *header, size_t ndata, int code, const char *what,
		       const char *what2)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "bad.safetensors");
	write_padded(path, header, ndata);
	assert_open_fails(path, code, what);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_int_eq(st_open_file(path, &s, &e), -code);
	assert_msg(&e, what2, NULL);

	char *h = pad_header(header);
	s = (st_set *)&e;
	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(st_parse_header(h, strlen(h), ndata, "in-memory", &s, &e), -code);
	ck_assert_ptr_null(s);
	assert_msg(&e, "in-memory", what);
	assert_msg(&e, what2, NULL);
	free(h);
	tmp_remove(dir);
}

/* Write a file with the writer from specs; tensor i's byte j is (i * 31 + j * 7 + 1). */
static void write_specs(const char *path, const st_spec *specs, size_t n)
{
	qerr e = { 0 };
	st_writer *w = NULL;
	ck_assert_msg(st_writer_open(path, specs, n, &w, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < n; i++) {
		size_t numel = 1;
		for (int d = 0; d < specs[i].ndim; d++)
			numel *= (size_t)specs[i].shape[d];
		size_t nb = numel * st_dtype_size(specs[i].dtype);
		unsigned char *buf = malloc(nb ? nb : 1);
		ck_assert_ptr_nonnull(buf);
		for (size_t j = 0; j < nb; j++)
			buf[j] = (unsigned char)(i * 31 + j * 7 + 1);
		ck_assert_msg(st_writer_write(w, buf, nb, &e) == 0, "%s", e.msg);
		free(buf);
	}
	ck_assert_msg(st_writer_close(w, &e) == 0, "%s", e.msg);
}

/* Assert that tensor t matches spec i as written by write_specs. */
static void check_tensor(const st_tensor *t, const st_spec *sp, size_t i, int file_index)
{
	ck_assert_ptr_nonnull(t);
	ck_assert_str_eq(t->name, sp->name);
	ck_assert_int_eq(t->dtype, sp->dtype);
	ck_assert_int_eq(t->ndim, sp->ndim);
	ck_assert_int_eq(t->file_index, file_index);
	uint64_t numel = 1;
	for (int d = 0; d < sp->ndim; d++) {
		ck_assert_int_eq(t->shape[d], sp->shape[d]);
		numel *= (uint64_t)sp->shape[d];
	}
	ck_assert_uint_eq(t->numel, numel);
	ck_assert_uint_eq(t->nbytes, numel * st_dtype_size(sp->dtype));
	ck_assert_ptr_nonnull(t->data);
	ck_assert_uint_eq((uintptr_t)t->data % st_dtype_size(sp->dtype), 0);
	const unsigned char *p = t->data;
	for (size_t j = 0; j < t->nbytes; j++)
		ck_assert_uint_eq(p[j], (unsigned char)(i * 31 + j * 7 + 1));
}

static uint64_t file_u64(const char *path)
{
	unsigned char b[8];
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(b, 1, 8, f), 8);
	fclose(f);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | b[i];
	return n;
}

static long long file_size(const char *path)
{
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	return (long long)sb.st_size;
}

/* ---------------------------------------------------------------------------------------- */
/* dtypes */

START_TEST(test_safetensors_dtype_helpers)
{
	qerr e = { 0 };
	st_dtype t = ST_F32;
	ck_assert_uint_eq(st_dtype_size(ST_BF16), 2);
	ck_assert_uint_eq(st_dtype_size(ST_F16), 2);
	ck_assert_uint_eq(st_dtype_size(ST_F32), 4);
	ck_assert_str_eq(st_dtype_name(ST_BF16), "BF16");
	ck_assert_str_eq(st_dtype_name(ST_F16), "F16");
	ck_assert_str_eq(st_dtype_name(ST_F32), "F32");
	ck_assert_int_eq(st_dtype_parse("BF16", &t, "x", &e), 0);
	ck_assert_int_eq(t, ST_BF16);
	ck_assert_int_eq(st_dtype_parse("F16", &t, "x", &e), 0);
	ck_assert_int_eq(t, ST_F16);
	ck_assert_int_eq(st_dtype_parse("F32", &t, "x", &e), 0);
	ck_assert_int_eq(t, ST_F32);
	ck_assert_int_eq(st_dtype_parse("F64", &t, "ctx", &e), -QERR_UNSUPPORTED);
	assert_msg(&e, "ctx", "F64");
	ck_assert_int_eq(st_dtype_parse("bf16", &t, "ctx", &e), -QERR_FORMAT);
	assert_msg(&e, "ctx", "unknown dtype");
	ck_assert_int_eq(st_dtype_parse("", &t, "ctx", NULL), -QERR_FORMAT);
	ck_assert_int_eq(t, ST_F32); /* untouched on failure */
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* round trips */

START_TEST(test_safetensors_round_trip)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "rt.safetensors");
	const st_spec specs[] = {
		{ "model.a.weight", ST_BF16, 2, { 3, 5 } },
		{ "model.b.weight", ST_F16, 1, { 7 } },
		{ "model.c", ST_F32, 3, { 2, 3, 4 } },
		{ "scalar", ST_F32, 0, { 0 } },
		{ "empty", ST_BF16, 2, { 0, 4 } },
		{ "after.empty", ST_F32, 1, { 1 } },
		{ "f32.before.odd", ST_F32, 2, { 1, 3 } },
		{ "bf16.odd", ST_BF16, 1, { 1 } },
	};
	size_t n = sizeof(specs) / sizeof(specs[0]);
	write_specs(path, specs, n);

	uint64_t hlen = file_u64(path);
	ck_assert_uint_eq((8 + hlen) % 8, 0);
	uint64_t total = 3 * 5 * 2 + 7 * 2 + 24 * 4 + 4 + 0 + 4 + 3 * 4 + 2;
	ck_assert_int_eq(file_size(path), (long long)(8 + hlen + total));

	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), n);
	ck_assert_str_eq(st_set_metadata(s, "format"), "pt");
	ck_assert_ptr_null(st_set_metadata(s, "missing"));
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		/* The writer lays tensors out in list order, so file order is list order. */
		const st_tensor *t = st_set_tensor(s, i);
		check_tensor(t, &specs[i], i, 0);
		ck_assert_uint_eq(t->offset, off);
		off += t->nbytes;
		ck_assert_ptr_eq(st_set_find(s, specs[i].name), t);
	}
	ck_assert_ptr_null(st_set_tensor(s, n));
	const st_tensor *sc = st_set_find(s, "scalar");
	ck_assert_int_eq(sc->ndim, 0);
	ck_assert_uint_eq(sc->numel, 1);
	const st_tensor *em = st_set_find(s, "empty");
	ck_assert_uint_eq(em->numel, 0);
	ck_assert_uint_eq(em->nbytes, 0);
	st_set_free(s);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_no_tensors)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "none.safetensors");
	write_specs(path, NULL, 0);
	ck_assert_uint_eq((8 + file_u64(path)) % 8, 0);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), 0);
	ck_assert_ptr_null(st_set_find(s, "x"));
	ck_assert_str_eq(st_set_metadata(s, "format"), "pt");
	st_set_free(s);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_large_chunks)
{
	/* 24 MiB + 4 bytes, written in chunks that straddle the writer's buffer in every way:
	 * tiny, unaligned, one larger than the buffer while data waits, and the rest in one go. */
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "big.safetensors");
	const st_spec specs[] = {
		{ "small", ST_BF16, 1, { 2 } },
		{ "big", ST_F32, 2, { 3, 1 << 21 } },
	};
	size_t total = 4 + (size_t)3 * (1 << 21) * 4;
	unsigned char *data = malloc(total);
	ck_assert_ptr_nonnull(data);
	for (size_t j = 0; j < total; j++)
		data[j] = (unsigned char)(j * 131 + (j >> 16));
	qerr e = { 0 };
	st_writer *w = NULL;
	ck_assert_msg(st_writer_open(path, specs, 2, &w, &e) == 0, "%s", e.msg);
	size_t chunks[] = { 1, 4095, 9u << 20, 1, 0 };
	size_t done = 0;
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		ck_assert_msg(st_writer_write(w, data + done, chunks[c], &e) == 0, "%s", e.msg);
		done += chunks[c];
	}
	ck_assert_msg(st_writer_write(w, data + done, total - done, &e) == 0, "%s", e.msg);
	ck_assert_msg(st_writer_close(w, &e) == 0, "%s", e.msg);

	st_set *s = NULL;
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	const st_tensor *b = st_set_find(s, "big");
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(b->numel, (uint64_t)3 << 21);
	ck_assert_uint_eq(b->offset, 4);
	ck_assert_int_eq(memcmp(st_set_find(s, "small")->data, data, 4), 0);
	ck_assert_int_eq(memcmp(b->data, data + 4, total - 4), 0);
	st_set_free(s);
	free(data);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_too_few_bytes)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "short.safetensors");
	const st_spec specs[] = { { "w", ST_F32, 1, { 4 } } };
	qerr e = { 0 };
	st_writer *w = NULL;
	ck_assert_int_eq(st_writer_open(path, specs, 1, &w, &e), 0);
	float x[3] = { 1, 2, 3 };
	ck_assert_int_eq(st_writer_write(w, x, sizeof(x), &e), 0);
	ck_assert_int_eq(st_writer_close(w, &e), -QERR_INVALID);
	assert_msg(&e, path, "12 data bytes written, the header promises 16");
	/* A file that does not match its header is removed. */
	ck_assert_int_eq(access(path, F_OK), -1);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_too_many_bytes)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "long.safetensors");
	const st_spec specs[] = { { "w", ST_BF16, 1, { 2 } } };
	qerr e = { 0 };
	st_writer *w = NULL;
	ck_assert_int_eq(st_writer_open(path, specs, 1, &w, &e), 0);
	unsigned char x[6] = { 0 };
	ck_assert_int_eq(st_writer_write(w, x, 2, &e), 0);
	ck_assert_int_eq(st_writer_write(w, x, 6, &e), -QERR_INVALID);
	assert_msg(&e, path, "exceed");
	/* The failure is sticky: later writes fail too. */
	ck_assert_int_eq(st_writer_write(w, x, 1, &e), -QERR_INVALID);
	assert_msg(&e, path, "an earlier write failed");
	ck_assert_int_eq(access(path, F_OK), 0);
	st_writer_abort(w);
	ck_assert_int_eq(access(path, F_OK), -1);
	st_writer_abort(NULL);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_close_after_failure)
{
	/* The byte count is right, but an earlier write failed: close must not keep the file. */
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "failed.safetensors");
	const st_spec specs[] = { { "w", ST_BF16, 1, { 2 } } };
	qerr e = { 0 };
	st_writer *w = NULL;
	ck_assert_int_eq(st_writer_open(path, specs, 1, &w, &e), 0);
	unsigned char x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	ck_assert_int_eq(st_writer_write(w, x, 8, &e), -QERR_INVALID);
	ck_assert_int_eq(st_writer_close(w, &e), -QERR_INVALID);
	assert_msg(&e, path, "an earlier write failed");
	ck_assert_int_eq(access(path, F_OK), -1);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_duplicate_names)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "dup.safetensors");
	const st_spec specs[] = {
		{ "a", ST_F32, 1, { 1 } },
		{ "dup.name", ST_F32, 1, { 1 } },
		{ "b", ST_F32, 1, { 1 } },
		{ "dup.name", ST_BF16, 1, { 2 } },
	};
	qerr e = { 0 };
	st_writer *w = (st_writer *)&e;
	ck_assert_int_eq(st_writer_open(path, specs, 4, &w, &e), -QERR_INVALID);
	ck_assert_ptr_null(w);
	assert_msg(&e, "'dup.name'", "twice");
	ck_assert_int_eq(access(path, F_OK), -1);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_bad_specs)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "bad.safetensors");
	qerr e = { 0 };
	st_writer *w = NULL;
	const st_spec neg[] = { { "neg", ST_F32, 2, { 2, -1 } } };
	ck_assert_int_eq(st_writer_open(path, neg, 1, &w, &e), -QERR_INVALID);
	assert_msg(&e, "'neg'", "negative");
	const st_spec big[] = { { "huge", ST_F32, 2, { (int64_t)1 << 40, (int64_t)1 << 40 } } };
	ck_assert_int_eq(st_writer_open(path, big, 1, &w, &e), -QERR_INVALID);
	assert_msg(&e, "'huge'", "overflow");
	const st_spec rank[] = { { "rank", ST_F32, ST_MAX_DIMS + 1, { 1 } } };
	ck_assert_int_eq(st_writer_open(path, rank, 1, &w, &e), -QERR_INVALID);
	assert_msg(&e, "'rank'", "rank");
	const st_spec meta[] = { { "__metadata__", ST_F32, 1, { 1 } } };
	ck_assert_int_eq(st_writer_open(path, meta, 1, &w, &e), -QERR_INVALID);
	assert_msg(&e, path, "name");
	ck_assert_int_eq(access(path, F_OK), -1);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_unaligned_layout)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "unaligned.safetensors");
	const st_spec specs[] = {
		{ "h", ST_BF16, 1, { 3 } },
		{ "empty.ok", ST_F32, 1, { 0 } },
		{ "f", ST_F32, 1, { 1 } },
	};
	qerr e = { 0 };
	st_writer *w = NULL;
	ck_assert_int_eq(st_writer_open(path, specs, 3, &w, &e), -QERR_INVALID);
	ck_assert_ptr_null(w);
	assert_msg(&e, "'f'", "not aligned to 4 bytes");
	ck_assert_int_eq(access(path, F_OK), -1);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_writer_io_error)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "no/such/dir.safetensors");
	const st_spec specs[] = { { "w", ST_F32, 1, { 1 } } };
	qerr e = { 0 };
	st_writer *w = NULL;
	ck_assert_int_eq(st_writer_open(path, specs, 1, &w, &e), -QERR_IO);
	ck_assert_ptr_null(w);
	assert_msg(&e, path, strerror(ENOENT));
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_find_many)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "many.safetensors");
	enum { N = 700 };
	st_spec *specs = calloc(N, sizeof(*specs));
	char (*names)[32] = calloc(N, 32);
	ck_assert(specs && names);
	for (int i = 0; i < N; i++) {
		/* Names in an order unrelated to file order, to exercise the name index. */
		snprintf(names[i], 32, "layers.%d.w", (i * 379) % N);
		/* Even element counts keep every offset a multiple of 4, whatever the dtypes. */
		specs[i] = (st_spec){ names[i], (st_dtype)(i % 3), 1, { 2 * (1 + i % 5) } };
	}
	write_specs(path, specs, N);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), N);
	for (int i = 0; i < N; i++)
		check_tensor(st_set_find(s, names[i]), &specs[i], (size_t)i, 0);
	ck_assert_ptr_null(st_set_find(s, "layers.700.w"));
	ck_assert_ptr_null(st_set_find(s, "layers.1"));
	ck_assert_ptr_null(st_set_find(s, ""));
	ck_assert_ptr_null(st_set_find(s, "zzz"));
	st_set_free(s);
	free(specs);
	free(names);
	tmp_remove(dir);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* reading valid hand-made files */

START_TEST(test_safetensors_sorted_by_offset)
{
	/* The header lists tensors in an order unrelated to their offsets. */
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "order.safetensors");
	write_padded(path,
		     "{\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
		     "\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
		     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		     "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}",
		     12);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), 3);
	ck_assert_str_eq(st_set_tensor(s, 0)->name, "a");
	ck_assert_str_eq(st_set_tensor(s, 1)->name, "b");
	ck_assert_str_eq(st_set_tensor(s, 2)->name, "c");
	ck_assert_str_eq(st_set_metadata(s, "k"), "v");
	const unsigned char *c = st_set_find(s, "c")->data;
	ck_assert_uint_eq(c[0], pattern(8));
	ck_assert_uint_eq(c[3], pattern(11));
	st_set_free(s);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_empty_tensors_valid)
{
	/* Empty tensors anywhere (start, between, end), one whose other dims would overflow, and a
	 * file that is nothing but empty tensors with no data at all. */
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "empty.safetensors");
	write_padded(path,
		     "{\"e0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
		     "\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
		     "\"e1\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,0],\"data_offsets\":[2,2]},"
		     "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[2,4]},"
		     "\"e2\":{\"dtype\":\"F16\",\"shape\":[3,0],\"data_offsets\":[4,4]}}",
		     4);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), 5);
	ck_assert_uint_eq(st_set_find(s, "e1")->numel, 0);
	ck_assert_int_eq(st_set_find(s, "e1")->shape[0], (int64_t)1 << 40);
	ck_assert_uint_eq(st_set_find(s, "e2")->offset, 4);
	st_set_free(s);

	write_padded(path, "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 0);
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), 1);
	ck_assert_ptr_null(st_set_metadata(s, "format"));
	st_set_free(s);
	st_set_free(NULL);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_parse_header_in_memory)
{
	const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
			"\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
			"\"v\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}";
	char *p = pad_header(h);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_parse_header(p, strlen(p), 12, "mem", &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), 2);
	const st_tensor *w = st_set_find(s, "w");
	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_null(w->data);
	ck_assert_uint_eq(w->numel, 4);
	ck_assert_uint_eq(w->nbytes, 8);
	ck_assert_int_eq(w->file_index, 0);
	ck_assert_uint_eq(st_set_find(s, "v")->offset, 8);
	ck_assert_str_eq(st_set_metadata(s, "format"), "pt");
	st_set_free(s);

	/* The same header against the wrong data size. */
	ck_assert_int_eq(st_parse_header(p, strlen(p), 16, "mem", &s, &e), -QERR_FORMAT);
	assert_msg(&e, "mem", "hole");
	ck_assert_int_eq(st_parse_header(p, strlen(p), 10, "mem", &s, &e), -QERR_FORMAT);
	assert_msg(&e, "'v'", "outside");
	/* A header above the cap is refused before it is parsed. */
	ck_assert_int_eq(st_parse_header(p, (size_t)ST_MAX_HEADER_BYTES + 1, 0, "mem", &s, &e),
			 -QERR_LIMIT);
	assert_msg(&e, "mem", "limit");
	ck_assert_ptr_null(s);
	free(p);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* malformed files */

START_TEST(test_safetensors_truncated)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "trunc.safetensors");
	const unsigned char b[7] = { 2, 0, 0, 0, 0, 0, 0 };
	for (size_t n = 0; n < 8; n++) {
		write_bytes(path, b, n);
		assert_open_fails(path, QERR_FORMAT, "truncated");
	}
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_header_beyond_file)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "beyond.safetensors");
	write_st(path, 100, "{}", 0);
	assert_open_fails(path, QERR_FORMAT, "header length 100 exceeds the file");
	write_st(path, 3, "{}", 0); /* one byte past the end */
	assert_open_fails(path, QERR_FORMAT, "exceeds the file");
	write_st(path, UINT64_MAX - 4, "{}", 0);
	assert_open_fails(path, QERR_LIMIT, "limit");
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_header_too_large)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "huge.safetensors");
	write_st(path, (uint64_t)ST_MAX_HEADER_BYTES + 1, "{}", 0);
	assert_open_fails(path, QERR_LIMIT, "exceeds the limit");
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_invalid_json)
{
	assert_bad_header("{\"w\":{\"dtype\":\"F32\"", 0, QERR_FORMAT, "invalid JSON", NULL);
	assert_bad_header("{} trailing", 0, QERR_FORMAT, "invalid JSON", NULL);
	assert_bad_header("", 0, QERR_FORMAT, "invalid JSON", NULL);
}
END_TEST

START_TEST(test_safetensors_header_not_object)
{
	assert_bad_header("[1,2]", 0, QERR_FORMAT, "not a JSON object", "array");
	assert_bad_header("\"str\"", 0, QERR_FORMAT, "not a JSON object", NULL);
	assert_bad_header("42", 0, QERR_FORMAT, "not a JSON object", NULL);
}
END_TEST

START_TEST(test_safetensors_entry_not_object)
{
	assert_bad_header("{\"w\":3}", 0, QERR_FORMAT, "'w'", "not an object");
	assert_bad_header("{\"w\":[1]}", 0, QERR_FORMAT, "'w'", "not an object");
	assert_bad_header("{\"w\":null}", 0, QERR_FORMAT, "'w'", "not an object");
}
END_TEST

START_TEST(test_safetensors_missing_dtype)
{
	assert_bad_header("{\"w\":{\"shape\":[2],\"data_offsets\":[0,4]}}", 4, QERR_FORMAT,
		   "missing dtype", "'w'");
}
END_TEST

START_TEST(test_safetensors_dtype_wrong_type)
{
	assert_bad_header("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,4]}}", 4, QERR_FORMAT,
		   "dtype is int", "'w'");
}
END_TEST

START_TEST(test_safetensors_missing_shape)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"data_offsets\":[0,4]}}", 4, QERR_FORMAT,
		   "missing shape", "'w'");
}
END_TEST

START_TEST(test_safetensors_shape_wrong_type)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":\"2\",\"data_offsets\":[0,4]}}", 4,
		   QERR_FORMAT, "shape is string", "'w'");
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":{\"0\":2},\"data_offsets\":[0,4]}}", 4,
		   QERR_FORMAT, "shape is object", "'w'");
}
END_TEST

START_TEST(test_safetensors_missing_data_offsets)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2]}}", 4, QERR_FORMAT,
		   "missing data_offsets", "'w'");
}
END_TEST

START_TEST(test_safetensors_data_offsets_wrong_type)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":{\"a\":0}}}", 4,
		   QERR_FORMAT, "data_offsets", "not 2 integers");
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":\"0,4\"}}", 4,
		   QERR_FORMAT, "data_offsets", "not 2 integers");
}
END_TEST

START_TEST(test_safetensors_negative_dim)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,-2],\"data_offsets\":[0,4]}}", 4,
		   QERR_FORMAT, "shape[1] = -2 is negative", "'w'");
}
END_TEST

START_TEST(test_safetensors_non_integer_dim)
{
	static const char *const dims[] = { "2.5", "2.0", "\"2\"", "true", "null", "[2]", "1e3",
					     "18446744073709551615" };
	for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
		char h[256];
		snprintf(h, sizeof(h),
			 "{\"w\":{\"dtype\":\"BF16\",\"shape\":[%s],\"data_offsets\":[0,4]}}", dims[i]);
		assert_bad_header(h, 4, QERR_FORMAT, "shape[0]", "not an integer");
	}
}
END_TEST

START_TEST(test_safetensors_data_offsets_not_two_integers)
{
	static const char *const offs[] = { "[0]", "[]", "[0,4,8]", "[0,\"4\"]", "[0,4.0]",
					     "[-1,4]", "[0,null]", "[0,18446744073709551615]" };
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		char h[256];
		snprintf(h, sizeof(h),
			 "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":%s}}", offs[i]);
		assert_bad_header(h, 4, QERR_FORMAT, "not 2 integers", "'w'");
	}
}
END_TEST

START_TEST(test_safetensors_begin_after_end)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
		   QERR_FORMAT, "begin 4 > end 0", "'w'");
}
END_TEST

START_TEST(test_safetensors_offsets_out_of_range)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 4,
		   QERR_FORMAT, "outside the data area of 4 bytes", "'w'");
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[9,9]}}", 4,
		   QERR_FORMAT, "outside", "'w'");
}
END_TEST

START_TEST(test_safetensors_overlap)
{
	assert_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
		   12, QERR_FORMAT, "overlap", "'b'");
	/* Two tensors sharing the same bytes. */
	assert_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
		   4, QERR_FORMAT, "overlap", "'a'");
	/* An empty tensor strictly inside another. */
	assert_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
		   8, QERR_FORMAT, "overlap", "'e'");
}
END_TEST

START_TEST(test_safetensors_hole)
{
	assert_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
		   12, QERR_FORMAT, "hole", "[4, 8)");
	assert_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
		   QERR_FORMAT, "hole", "[0, 4)");
	/* Trailing bytes after the last tensor. */
	assert_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
		   QERR_FORMAT, "hole", "at its end");
	assert_bad_header("{}", 1, QERR_FORMAT, "hole", "[0, 1)");
}
END_TEST

START_TEST(test_safetensors_byte_count_mismatch)
{
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4,
		   QERR_FORMAT, "needs 6 bytes", "'w'");
	assert_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
		   QERR_FORMAT, "needs 4 bytes", "'w'");
}
END_TEST

START_TEST(test_safetensors_shape_overflow)
{
	/* 2^40 × 2^40 elements overflow the element count; 2^62 F32 elements the byte count. */
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1099511627776,1099511627776],"
		   "\"data_offsets\":[0,4]}}",
		   4, QERR_FORMAT, "element count", "overflows");
	assert_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
		   "\"data_offsets\":[0,4]}}",
		   4, QERR_FORMAT, "byte count", "overflows");
	/* No overflow, but 2^62 BF16 elements do not fit the 4-byte data area. */
	assert_bad_header("{\"w\":{\"dtype\":\"BF16\",\"shape\":[4611686018427387904],"
		   "\"data_offsets\":[0,4]}}",
		   4, QERR_FORMAT, "needs 9223372036854775808 bytes", "'w'");
}
END_TEST

START_TEST(test_safetensors_unaligned)
{
	assert_bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
		   6, QERR_FORMAT, "not aligned to 4 bytes", "'b'");
	assert_bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[1,3]},"
		   "\"b\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[0,0]}}",
		   3, QERR_FORMAT, "not aligned to 2 bytes", "'a'");

	/* A header that is not padded puts the whole data area off alignment. */
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "unpadded.safetensors");
	const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
	ck_assert_uint_ne((8 + strlen(h)) % 4, 0);
	write_st(path, strlen(h), h, 4);
	assert_open_fails(path, QERR_FORMAT, "not aligned");
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_unknown_dtype)
{
	assert_bad_header("{\"w\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
		   QERR_FORMAT, "unknown dtype \"Q7\"", "'w'");
	assert_bad_header("{\"w\":{\"dtype\":\"bf16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
		   QERR_FORMAT, "unknown dtype", "'w'");
}
END_TEST

START_TEST(test_safetensors_unsupported_dtype)
{
	static const char *const dts[] = { "F64", "I64", "U8", "BOOL", "F8_E4M3", "I32", "F8_E5M2" };
	for (size_t i = 0; i < sizeof(dts) / sizeof(dts[0]); i++) {
		char h[256];
		snprintf(h, sizeof(h),
			 "{\"w\":{\"dtype\":\"%s\",\"shape\":[8],\"data_offsets\":[0,8]}}", dts[i]);
		assert_bad_header(h, 8, QERR_UNSUPPORTED, dts[i], "'w'");
	}
}
END_TEST

START_TEST(test_safetensors_too_many_dims)
{
	assert_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
		   4, QERR_UNSUPPORTED, "9 dimensions", "'w'");
	/* ST_MAX_DIMS itself is fine. */
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "dims.safetensors");
	write_padded(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
		     8);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_file(path, &s, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(st_set_find(s, "w")->ndim, ST_MAX_DIMS);
	st_set_free(s);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_bad_metadata)
{
	assert_bad_header("{\"__metadata__\":\"pt\"}", 0, QERR_FORMAT, "__metadata__", "not an object");
	assert_bad_header("{\"__metadata__\":[\"pt\"]}", 0, QERR_FORMAT, "__metadata__", "not an object");
	assert_bad_header("{\"__metadata__\":null}", 0, QERR_FORMAT, "__metadata__", "not an object");
	assert_bad_header("{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", 0, QERR_FORMAT, "__metadata__",
		   "'n'");
	assert_bad_header("{\"__metadata__\":{\"o\":{}}}", 0, QERR_FORMAT, "'o'", "not a string");
}
END_TEST

START_TEST(test_safetensors_control_chars_in_name)
{
	/* A name with a newline still gives a one-line message. */
	assert_bad_header("{\"a\\nb\":{\"dtype\":\"Q\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
		   QERR_FORMAT, "'a?b'", "unknown dtype");
}
END_TEST

START_TEST(test_safetensors_missing_file)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "absent.safetensors");
	assert_open_fails(path, QERR_MISSING, "not found");
	/* A directory is not a safetensors file. */
	assert_open_fails(dir, QERR_IO, "not a regular file");
	tmp_remove(dir);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* directories */

START_TEST(test_safetensors_dir_single_file)
{
	char dir[PATH_LEN], path[PATH_LEN];
	tmp_make(dir);
	join(path, dir, "model.safetensors");
	const st_spec specs[] = { { "x", ST_BF16, 1, { 4 } }, { "y", ST_F32, 1, { 2 } } };
	write_specs(path, specs, 2);
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_dir(dir, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), 2);
	check_tensor(st_set_find(s, "x"), &specs[0], 0, 0);
	check_tensor(st_set_find(s, "y"), &specs[1], 1, 0);
	st_set_free(s);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_dir_empty)
{
	char dir[PATH_LEN], sub[PATH_LEN];
	tmp_make(dir);
	qerr e = { 0 };
	st_set *s = (st_set *)&e;
	ck_assert_int_eq(st_open_dir(dir, &s, &e), -QERR_MISSING);
	ck_assert_ptr_null(s);
	assert_msg(&e, dir, "neither model.safetensors nor model.safetensors.index.json");
	join(sub, dir, "nonexistent");
	ck_assert_int_eq(st_open_dir(sub, &s, &e), -QERR_MISSING);
	assert_msg(&e, sub, "not found");
	tmp_remove(dir);
}
END_TEST

/* The specs of the two shards the sharded tests use. */
static const st_spec shard1[] = {
	{ "model.embed", ST_BF16, 2, { 4, 3 } },
	{ "model.layers.0.w", ST_F32, 1, { 5 } },
};
static const st_spec shard2[] = {
	{ "lm_head", ST_F16, 2, { 2, 2 } },
	{ "model.norm", ST_F32, 0, { 0 } },
};

/* Write dir/a.safetensors (shard1), dir/b.safetensors (shard2) and the index text given. */
static void write_sharded(const char *dir, const char *index)
{
	char p[PATH_LEN];
	join(p, dir, "a.safetensors");
	write_specs(p, shard1, 2);
	join(p, dir, "b.safetensors");
	write_specs(p, shard2, 2);
	join(p, dir, "model.safetensors.index.json");
	write_bytes(p, index, strlen(index));
}

/* st_open_dir(dir) must fail with code and a message containing a and b. */
static void assert_dir_fails(const char *dir, int code, const char *a, const char *b)
{
	qerr e = { 0 };
	st_set *s = (st_set *)&e;
	int rc = st_open_dir(dir, &s, &e);
	ck_assert_msg(rc == -code, "rc %d, expected %d (%s)", rc, -code, e.msg);
	ck_assert_ptr_null(s);
	assert_msg(&e, a, b);
}

START_TEST(test_safetensors_dir_sharded)
{
	char dir[PATH_LEN];
	tmp_make(dir);
	/* b is listed first: shards are opened in order of first appearance in weight_map. */
	write_sharded(dir, "{\"metadata\":{\"total_size\":52},\"weight_map\":{"
			   "\"lm_head\":\"b.safetensors\","
			   "\"model.embed\":\"a.safetensors\","
			   "\"model.layers.0.w\":\"a.safetensors\","
			   "\"model.norm\":\"b.safetensors\"}}");
	qerr e = { 0 };
	st_set *s = NULL;
	ck_assert_msg(st_open_dir(dir, &s, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st_set_count(s), 4);
	check_tensor(st_set_tensor(s, 0), &shard2[0], 0, 0);
	check_tensor(st_set_tensor(s, 1), &shard2[1], 1, 0);
	check_tensor(st_set_tensor(s, 2), &shard1[0], 0, 1);
	check_tensor(st_set_tensor(s, 3), &shard1[1], 1, 1);
	ck_assert_ptr_eq(st_set_find(s, "model.embed"), st_set_tensor(s, 2));
	ck_assert_ptr_eq(st_set_find(s, "lm_head"), st_set_tensor(s, 0));
	ck_assert_ptr_eq(st_set_find(s, "model.norm"), st_set_tensor(s, 1));
	ck_assert_ptr_null(st_set_find(s, "model"));
	ck_assert_str_eq(st_set_metadata(s, "format"), "pt");
	st_set_free(s);
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_dir_shard_name_refused)
{
	static const char *const names[] = { "../a.safetensors", "sub/a.safetensors", ".", "..",
					     "/etc/passwd", "" };
	char dir[PATH_LEN];
	tmp_make(dir);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char idx[512];
		snprintf(idx, sizeof(idx),
			 "{\"weight_map\":{\"model.embed\":\"a.safetensors\",\"evil\":\"%s\"}}",
			 names[i]);
		write_sharded(dir, idx);
		assert_dir_fails(dir, QERR_FORMAT, "refused", "'evil'");
	}
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_dir_tensor_not_in_shard)
{
	char dir[PATH_LEN];
	tmp_make(dir);
	write_sharded(dir, "{\"weight_map\":{\"model.embed\":\"a.safetensors\","
			   "\"lm_head\":\"a.safetensors\",\"model.norm\":\"b.safetensors\"}}");
	assert_dir_fails(dir, QERR_FORMAT, "'lm_head'", "a.safetensors, which does not hold it");
	write_sharded(dir, "{\"weight_map\":{\"model.embed\":\"a.safetensors\","
			   "\"ghost\":\"b.safetensors\"}}");
	assert_dir_fails(dir, QERR_FORMAT, "'ghost'", "does not hold");
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_dir_tensor_in_two_shards)
{
	char dir[PATH_LEN], p[PATH_LEN];
	tmp_make(dir);
	write_sharded(dir, "{\"weight_map\":{\"x\":\"a.safetensors\","
			   "\"dup\":\"b.safetensors\"}}");
	const st_spec c[] = { { "x", ST_F32, 1, { 1 } }, { "dup", ST_F32, 1, { 1 } } };
	const st_spec d[] = { { "dup", ST_BF16, 1, { 2 } } };
	join(p, dir, "a.safetensors");
	write_specs(p, c, 2);
	join(p, dir, "b.safetensors");
	write_specs(p, d, 1);
	assert_dir_fails(dir, QERR_FORMAT, "'dup' is in both", "a.safetensors");
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_dir_bad_index)
{
	char dir[PATH_LEN];
	tmp_make(dir);
	write_sharded(dir, "{\"metadata\":{}}");
	assert_dir_fails(dir, QERR_FORMAT, "model.safetensors.index.json", "weight_map");
	write_sharded(dir, "{\"weight_map\":{}}");
	assert_dir_fails(dir, QERR_FORMAT, "weight_map", "empty");
	write_sharded(dir, "{\"weight_map\":[\"a.safetensors\"]}");
	assert_dir_fails(dir, QERR_FORMAT, "weight_map", "expected an object");
	write_sharded(dir, "{\"weight_map\":{\"model.embed\":1}}");
	assert_dir_fails(dir, QERR_FORMAT, "'model.embed'", "not a string");
	write_sharded(dir, "{\"weight_map\":");
	assert_dir_fails(dir, QERR_FORMAT, "model.safetensors.index.json", "invalid JSON");
	write_sharded(dir, "[]");
	assert_dir_fails(dir, QERR_FORMAT, "model.safetensors.index.json", "not a JSON object");
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_dir_missing_shard)
{
	char dir[PATH_LEN];
	tmp_make(dir);
	write_sharded(dir, "{\"weight_map\":{\"model.embed\":\"a.safetensors\","
			   "\"w\":\"c.safetensors\"}}");
	assert_dir_fails(dir, QERR_MISSING, "c.safetensors", "not found");
	tmp_remove(dir);
}
END_TEST

START_TEST(test_safetensors_dir_bad_shard)
{
	/* A malformed shard fails with that shard's own message. */
	char dir[PATH_LEN], p[PATH_LEN];
	tmp_make(dir);
	write_sharded(dir, "{\"weight_map\":{\"model.embed\":\"a.safetensors\","
			   "\"lm_head\":\"b.safetensors\"}}");
	join(p, dir, "b.safetensors");
	write_padded(p, "{\"lm_head\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8);
	assert_dir_fails(dir, QERR_UNSUPPORTED, "b.safetensors", "F64");
	tmp_remove(dir);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */

static Suite *safetensors_suite(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_safetensors_dtype_helpers);
	tcase_add_test(tc, test_safetensors_round_trip);
	tcase_add_test(tc, test_safetensors_writer_no_tensors);
	tcase_add_test(tc, test_safetensors_writer_large_chunks);
	tcase_add_test(tc, test_safetensors_writer_too_few_bytes);
	tcase_add_test(tc, test_safetensors_writer_too_many_bytes);
	tcase_add_test(tc, test_safetensors_writer_close_after_failure);
	tcase_add_test(tc, test_safetensors_writer_duplicate_names);
	tcase_add_test(tc, test_safetensors_writer_bad_specs);
	tcase_add_test(tc, test_safetensors_writer_unaligned_layout);
	tcase_add_test(tc, test_safetensors_writer_io_error);
	tcase_add_test(tc, test_safetensors_find_many);
	tcase_add_test(tc, test_safetensors_sorted_by_offset);
	tcase_add_test(tc, test_safetensors_empty_tensors_valid);
	tcase_add_test(tc, test_safetensors_parse_header_in_memory);
	tcase_add_test(tc, test_safetensors_truncated);
	tcase_add_test(tc, test_safetensors_header_beyond_file);
	tcase_add_test(tc, test_safetensors_header_too_large);
	tcase_add_test(tc, test_safetensors_invalid_json);
	tcase_add_test(tc, test_safetensors_header_not_object);
	tcase_add_test(tc, test_safetensors_entry_not_object);
	tcase_add_test(tc, test_safetensors_missing_dtype);
	tcase_add_test(tc, test_safetensors_dtype_wrong_type);
	tcase_add_test(tc, test_safetensors_missing_shape);
	tcase_add_test(tc, test_safetensors_shape_wrong_type);
	tcase_add_test(tc, test_safetensors_missing_data_offsets);
	tcase_add_test(tc, test_safetensors_data_offsets_wrong_type);
	tcase_add_test(tc, test_safetensors_negative_dim);
	tcase_add_test(tc, test_safetensors_non_integer_dim);
	tcase_add_test(tc, test_safetensors_data_offsets_not_two_integers);
	tcase_add_test(tc, test_safetensors_begin_after_end);
	tcase_add_test(tc, test_safetensors_offsets_out_of_range);
	tcase_add_test(tc, test_safetensors_overlap);
	tcase_add_test(tc, test_safetensors_hole);
	tcase_add_test(tc, test_safetensors_byte_count_mismatch);
	tcase_add_test(tc, test_safetensors_shape_overflow);
	tcase_add_test(tc, test_safetensors_unaligned);
	tcase_add_test(tc, test_safetensors_unknown_dtype);
	tcase_add_test(tc, test_safetensors_unsupported_dtype);
	tcase_add_test(tc, test_safetensors_too_many_dims);
	tcase_add_test(tc, test_safetensors_bad_metadata);
	tcase_add_test(tc, test_safetensors_control_chars_in_name);
	tcase_add_test(tc, test_safetensors_missing_file);
	tcase_add_test(tc, test_safetensors_dir_single_file);
	tcase_add_test(tc, test_safetensors_dir_empty);
	tcase_add_test(tc, test_safetensors_dir_sharded);
	tcase_add_test(tc, test_safetensors_dir_shard_name_refused);
	tcase_add_test(tc, test_safetensors_dir_tensor_not_in_shard);
	tcase_add_test(tc, test_safetensors_dir_tensor_in_two_shards);
	tcase_add_test(tc, test_safetensors_dir_bad_index);
	tcase_add_test(tc, test_safetensors_dir_missing_shard);
	tcase_add_test(tc, test_safetensors_dir_bad_shard);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(safetensors_suite());
}
