/*
 * bench_tokenizer: encoding speed of qvl's tokenizer on one thread, as a table.
 *
 *   bench_tokenizer [-t tokenizer.json] [-n passes] [FILE]
 *
 * FILE is a corpus in JSON lines (one JSON string per line; the default is
 * $srcdir/tests/data/tokenizer/corpus.jsonl) or, for any other name, a text file whose lines are
 * the strings. The strings are encoded one call each ("per string"), first right after loading
 * (an empty word cache: "cold") and then `passes` more times ("warm", the median pass); then all of
 * them joined by '\n' as one call ("one string", median of `passes`). tests/bench/bench_tokenizer_hf.js
 * does the same with Hugging Face tokenizers. MB/s counts input bytes (10^6 per MB).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "jsonx.h"
#include "tokenizer.h"

struct text {
	char *s;   /* owned */
	size_t n;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Lines of a file: JSON strings when the name ends in .jsonl, else raw lines. */
static struct text *read_inputs(const char *path, size_t *count)
{
	char *buf;
	size_t len;
	qerr e = { 0 };
	if (jsonx_read_file(path, (size_t)1 << 31, &buf, &len, &e)) {
		fprintf(stderr, "bench_tokenizer: %s\n", e.msg);
		exit(1);
	}
	size_t pl = strlen(path);
	int jsonl = pl > 6 && strcmp(path + pl - 6, ".jsonl") == 0;
	struct text *v = NULL;
	size_t n = 0, cap = 0;
	for (char *line = buf, *end; line < buf + len; line = end + 1) {
		end = memchr(line, '\n', (size_t)(buf + len - line));
		if (!end)
			end = buf + len;
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			v = xrealloc(v, cap * sizeof(*v));
		}
		if (jsonl) {
			if (end == line)
				continue;
			json_object *o;
			if (jsonx_parse(line, (size_t)(end - line), path, &o, &e) || !json_object_is_type(o, json_type_string)) {
				fprintf(stderr, "bench_tokenizer: %s: a line is not a JSON string\n", path);
				exit(1);
			}
			v[n].n = (size_t)json_object_get_string_len(o);
			v[n].s = xmalloc(v[n].n + 1);
			memcpy(v[n].s, json_object_get_string(o), v[n].n + 1);
			json_object_put(o);
		} else {
			v[n].n = (size_t)(end - line);
			v[n].s = xmalloc(v[n].n + 1);
			memcpy(v[n].s, line, v[n].n);
			v[n].s[v[n].n] = 0;
		}
		n++;
	}
	free(buf);
	*count = n;
	return v;
}

static void row(const char *mode, size_t bytes, size_t tokens, double sec)
{
	printf("%-22s %12zu %10zu %9.4f %9.2f %10.0f\n", mode, bytes, tokens, sec, (double)bytes / sec / 1e6,
	       (double)tokens / sec);
}

int main(int argc, char **argv)
{
	const char *tpath = NULL, *file = NULL;
	int passes = 5;
	char defpath[1024], deftok[1024];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc)
			tpath = argv[++i];
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			passes = atoi(argv[++i]);
		else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else {
			fprintf(stderr, "usage: bench_tokenizer [-t tokenizer.json] [-n passes] [FILE]\n");
			return 2;
		}
	}
	if (passes < 1)
		passes = 1;
	if (!tpath) {
		const char *dd = getenv("QVL_DATADIR");
		snprintf(deftok, sizeof(deftok), "%s/qwen3-vl/tokenizer.json", dd && *dd ? dd : "share");
		tpath = deftok;
	}
	if (!file) {
		const char *sd = getenv("srcdir");
		snprintf(defpath, sizeof(defpath), "%s/tests/data/tokenizer/corpus.jsonl", sd && *sd ? sd : ".");
		file = defpath;
	}
	size_t n;
	struct text *in = read_inputs(file, &n);
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += in[i].n;

	tokenizer *tok;
	qerr e = { 0 };
	double t0 = now();
	if (tok_load(tpath, &tok, &e)) {
		fprintf(stderr, "bench_tokenizer: %s\n", e.msg);
		return 1;
	}
	double tload = now() - t0;
	printf("qvl tokenizer, one thread: %s (%zu strings, %zu bytes); load %.3f s\n", file, n, bytes, tload);
	printf("%-22s %12s %10s %9s %9s %10s\n", "mode", "bytes", "tokens", "seconds", "MB/s", "tokens/s");

	tok_ids ids = { 0 };
	double *t = xmalloc((size_t)passes * sizeof(*t));
	size_t tokens = 0;
	for (int p = -1; p < passes; p++) {
		tokens = 0;
		double a = now();
		for (size_t i = 0; i < n; i++) {
			ids.n = 0;
			tok_encode(tok, in[i].s, in[i].n, &ids);
			tokens += ids.n;
		}
		double sec = now() - a;
		if (p < 0)
			row("per string, cold", bytes, tokens, sec);
		else
			t[p] = sec;
	}
	qsort(t, (size_t)passes, sizeof(*t), cmp_double);
	row("per string, warm", bytes, tokens, t[passes / 2]);

	char *all = xmalloc(bytes + n + 1);
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(all + len, in[i].s, in[i].n);
		len += in[i].n;
		all[len++] = '\n';
	}
	for (int p = 0; p < passes; p++) {
		ids.n = 0;
		double a = now();
		tok_encode(tok, all, len, &ids);
		t[p] = now() - a;
	}
	qsort(t, (size_t)passes, sizeof(*t), cmp_double);
	row("one string, warm", len, ids.n, t[passes / 2]);

	tok_ids_deinit(&ids);
	free(all);
	free(t);
	for (size_t i = 0; i < n; i++)
		free(in[i].s);
	free(in);
	tok_free(tok);
	return 0;
}
