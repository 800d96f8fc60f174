/*
 * mkmodel: random-weight model directories (see mkmodel.h).
 *
 * Scale of the random weights (uniform distributions, given by standard deviation σ):
 *
 *   embed / lm_head   σ = 3/√D       logits = RMSNorm(h)·Eᵀ then have σ ≈ 3: spread, not uniform
 *   projections in    σ = 1/√fan_in  unit-variance pre-activations (q·k stays ~N(0,1) after the
 *                                    q/k norms; GELU/SiLU inputs of order 1)
 *   projections out   σ = 0.5/√fan_in  each block adds less than the residual carries
 *   biases            U(−0.1, 0.1)
 *   norm scales       1 + U(−0.25, 0.25)   random, so a test that forgot the scale fails
 *   norm shifts       U(−0.1, 0.1)
 *   position table    σ = 0.5
 *
 * Work is split in chunks of CHUNK elements filled by a few threads and written in order; since
 * values depend only on (seed, tensor, index), the thread count does not change the file.
 */
#include "mkmodel.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "bf16.h"
#include "datadir.h"
#include "jsonx.h"
#include "log.h"
#include "model_config.h"
#include "model_weights.h"
#include "parallel.h"
#include "rng.h"

#define CHUNK (8u << 20)          /* elements generated per round */
#define MAX_THREADS 16
#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_DATA_FILE_BYTES (64u << 20)

/* Every value is offset + u·scale with u ~ U(-1, 1); the pair depends only on the parameter. */
static void kind_affine(int kind, int64_t fan_in, int64_t hidden_size, float *offset, float *scale)
{
	const float sqrt3 = 1.7320508f;  /* U(-a, a) has σ = a/√3 */
	*offset = 0.0f;
	switch ((weight_kind)kind) {
	case WEIGHT_EMBED: *scale = sqrt3 * 3.0f / sqrtf((float)hidden_size); return;
	case WEIGHT_LINEAR_IN: *scale = sqrt3 / sqrtf((float)fan_in); return;
	case WEIGHT_LINEAR_OUT: *scale = sqrt3 * 0.5f / sqrtf((float)fan_in); return;
	case WEIGHT_BIAS: *scale = 0.1f; return;
	case WEIGHT_NORM: *offset = 1.0f; *scale = 0.25f; return;
	case WEIGHT_NORM_BIAS: *scale = 0.1f; return;
	case WEIGHT_POS_EMBED: *scale = sqrt3 * 0.5f; return;
	}
	*scale = 0.0f;
}

/* Element i of stream key: the low half of 64-bit draw i/2 for even i, the high half for odd. */
static inline float draw(uint64_t key, uint64_t i)
{
	uint64_t r = rng_u64(key, i >> 1);
	return rng_sym_unit((uint32_t)(i & 1 ? r >> 32 : r));
}

float mkmodel_value(uint64_t seed, uint64_t k, uint64_t i, int kind, int64_t fan_in,
		    int64_t hidden_size)
{
	float offset, scale;
	kind_affine(kind, fan_in, hidden_size, &offset, &scale);
	return offset + draw(rng_key(seed, k), i) * scale;
}

typedef struct fill_job {
	uint64_t seed, k, first;  /* tensor index, first element of this slice */
	size_t count;
	const weight_spec *spec;
	int64_t hidden;
	st_dtype dtype;
	void *out;                /* borrowed: the slice of the chunk buffer */
} fill_job;

static void *fill(void *arg)
{
	fill_job *j = arg;
	float offset, scale;
	kind_affine(j->spec->kind, j->spec->fan_in, j->hidden, &offset, &scale);
	uint64_t key = rng_key(j->seed, j->k);
	for (size_t n = 0; n < j->count; n++) {
		/* the same expression as mkmodel_value, so the file holds exactly its values */
		float v = offset + draw(key, j->first + n) * scale;
		switch (j->dtype) {
		case ST_BF16: ((uint16_t *)j->out)[n] = f32_to_bf16(v); break;
		case ST_F16: ((uint16_t *)j->out)[n] = f32_to_f16(v); break;
		case ST_F32: ((float *)j->out)[n] = v; break;
		}
	}
	return NULL;
}

static int write_tensor(st_writer *w, const weight_spec *s, uint64_t k, const mkmodel_opts *o,
			int64_t hidden, int threads, void *buf, qerr *e)
{
	uint64_t numel = 1;
	for (int d = 0; d < s->ndim; d++)
		numel *= (uint64_t)s->shape[d];
	size_t esz = st_dtype_size(o->dtype);
	for (uint64_t first = 0; first < numel; first += CHUNK) {
		size_t count = numel - first < CHUNK ? (size_t)(numel - first) : CHUNK;
		int t_used = count < (1u << 16) ? 1 : threads;
		fill_job jobs[MAX_THREADS];
		size_t per = (count + (size_t)t_used - 1) / (size_t)t_used;
		for (int t = 0; t < t_used; t++) {
			size_t lo = (size_t)t * per, hi = lo + per < count ? lo + per : count;
			jobs[t] = (fill_job){ .seed = o->seed, .k = k, .first = first + lo,
					      .count = hi > lo ? hi - lo : 0, .spec = s, .hidden = hidden,
					      .dtype = o->dtype, .out = (char *)buf + lo * esz };
		}
		parallel_run(fill, jobs, sizeof(jobs[0]), t_used, 0);
		int rc = st_writer_write(w, buf, count * esz, e);
		if (rc)
			return rc;
	}
	return 0;
}

static int write_file(const char *path, const char *data, size_t len, qerr *e)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return qerr_set(e, QERR_IO, "%s: %s", path, strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t r = write(fd, data + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;
			close(fd);
			return qerr_set(e, QERR_IO, "%s: %s", path, strerror(err));
		}
		done += (size_t)r;
	}
	if (close(fd) != 0)
		return qerr_set(e, QERR_IO, "%s: %s", path, strerror(errno));
	return 0;
}

/* Copy the vendored data file rel (e.g. "qwen3-vl/tokenizer.json") to dir/name. */
static int copy_data_file(const char *rel, const char *dir, const char *name, qerr *e)
{
	char src[4096];
	int rc = datadir_find(rel, src, sizeof(src), e);
	if (rc)
		return rc;
	char *text;
	size_t len;
	rc = jsonx_read_file(src, MAX_DATA_FILE_BYTES, &text, &len, e);
	if (rc)
		return rc;
	char *dst = xasprintf("%s/%s", dir, name);
	rc = write_file(dst, text, len, e);
	free(dst);
	free(text);
	return rc;
}

static int load_config_text(const mkmodel_opts *o, char **text, size_t *len, char **where, qerr *e)
{
	if (o->config_path) {
		*where = xstrdup(o->config_path);
		return jsonx_read_file(o->config_path, MAX_CONFIG_BYTES, text, len, e);
	}
	const char *p = o->preset ? o->preset : "";
	bool ok = *p != 0;
	for (const char *c = p; *c; c++)
		ok = ok && ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_');
	if (!ok)
		return qerr_set(e, QERR_INVALID, "unknown preset '%s' (presets: tiny, 2b)", p);
	char rel[128], path[4096];
	snprintf(rel, sizeof(rel), "presets/%s.json", p);
	if (datadir_find(rel, path, sizeof(path), NULL) != 0)
		return qerr_set(e, QERR_INVALID, "unknown preset '%s' (presets: tiny, 2b)", p);
	*where = xasprintf("preset %s (%s)", p, path);
	return jsonx_read_file(path, MAX_CONFIG_BYTES, text, len, e);
}

static int make_dir(const char *dir, qerr *e)
{
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return qerr_set(e, QERR_IO, "%s: exists and is not a directory", dir);
		return 0;
	}
	if (mkdir(dir, 0755) != 0)
		return qerr_set(e, QERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
	return 0;
}

static int write_weights(const mkmodel_opts *o, const model_config *mc, qerr *e)
{
	size_t n;
	weight_spec *specs = model_weights_manifest(mc, NULL, &n);
	st_spec *ss = xcalloc(n, sizeof(*ss));
	for (size_t i = 0; i < n; i++) {
		ss[i].name = specs[i].name;
		ss[i].dtype = o->dtype;
		ss[i].ndim = specs[i].ndim;
		memcpy(ss[i].shape, specs[i].shape, sizeof(int64_t) * (size_t)specs[i].ndim);
	}
	char *tmp = xasprintf("%s/model.safetensors.tmp", o->out_dir);
	char *final = xasprintf("%s/model.safetensors", o->out_dir);
	int threads = o->threads;
	if (threads <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		threads = c > 0 ? (int)c : 1;
	}
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	void *buf = xmalloc((size_t)CHUNK * st_dtype_size(o->dtype));
	st_writer *w;
	int rc = st_writer_open(tmp, ss, n, &w, e);
	for (size_t k = 0; k < n && !rc; k++)
		rc = write_tensor(w, &specs[k], k, o, mc->text.hidden_size, threads, buf, e);
	if (!rc) {
		rc = st_writer_close(w, e);
		if (!rc && rename(tmp, final) != 0)
			rc = qerr_set(e, QERR_IO, "%s: %s", final, strerror(errno));
	} else if (w) {
		st_writer_abort(w);
	}
	if (rc)
		unlink(tmp);
	else
		log_msg(LOG_LEVEL_INFO, "mkmodel", "%s: %zu tensors, %llu parameters, %s", final, n,
			(unsigned long long)model_weights_numel(specs, n), st_dtype_name(o->dtype));
	free(buf);
	free(tmp);
	free(final);
	free(ss);
	free(specs);
	return rc;
}

int mkmodel_run(const mkmodel_opts *o, qerr *e)
{
	if (!o->out_dir || !*o->out_dir)
		return qerr_set(e, QERR_INVALID, "no output directory given (--out DIR)");
	char *text = NULL, *where = NULL;
	size_t len = 0;
	model_config mc = {0};
	int rc = load_config_text(o, &text, &len, &where, e);
	if (!rc)
		rc = model_config_parse(text, len, where, &mc, e);
	if (!rc)
		rc = make_dir(o->out_dir, e);
	if (!rc) {
		char *p = xasprintf("%s/config.json", o->out_dir);
		rc = write_file(p, text, len, e);
		free(p);
	}
	static const struct {
		const char *rel, *name;
		bool vision_only;
	} files[] = {
		{ "qwen3-vl/generation_config.json", "generation_config.json", false },
		{ "qwen3-vl/preprocessor_config.json", "preprocessor_config.json", true },
		{ "qwen3-vl/video_preprocessor_config.json", "video_preprocessor_config.json", true },
		{ "qwen3-vl/tokenizer.json", "tokenizer.json", false },
		{ "qwen3-vl/tokenizer_config.json", "tokenizer_config.json", false },
		{ "qwen3-vl/chat_template.jinja", "chat_template.jinja", false },
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && !rc; i++)
		if (mc.has_vision || !files[i].vision_only)
			rc = copy_data_file(files[i].rel, o->out_dir, files[i].name, e);
	if (!rc)
		rc = write_weights(o, &mc, e);
	free(text);
	free(where);
	return rc;
}
