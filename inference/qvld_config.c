/*
 * qvld_config: qvld's settings from defaults, a configuration file and the command line (see
 * qvld_config.h for the accepted forms).
 *
 * How: one table lists every setting — its name (vLLM's flag without the dashes, which is also
 * the file key), how its value is read, where it is stored and its range. The command line and
 * the file both end in the same call, apply(), so a value means the same thing wherever it is
 * written and every message has one shape:
 *
 *   --max-num-seqs: "abc" is not an integer
 *   /etc/qvl/qvld.conf:12: max-num-seqs: "0" must be at least 1
 *
 * Order of work in qvld_config_parse:
 *
 *   1. argv is tokenized into (setting, value) items without applying anything. This finds
 *      --help anywhere (even after a bad flag, like argparse) and --config before the file is
 *      read; unknown flags and missing values are reported here.
 *   2. the file: --config PATH, else $QVL_CONFIG (empty: no file), else QVLD_DEFAULT_CONFIG when
 *      it exists. Its lines are applied in order.
 *   3. the items of step 1 are applied on top (flags win); each value is checked as it is
 *      applied. Last come the check that needs the whole configuration (--model present) and
 *      the derived default (served model name = basename of the model directory).
 *
 * --served-model-name appends within one source (repeated, or several names in one value,
 * or vLLM's `--served-model-name a b`), and names given on the command line replace the file's.
 *
 * Ownership: every char * in qvld_config is owned and freed by qvld_config_deinit; on failure the
 * output is already deinitialized (zeroed), so deinit is always safe. The api key is never
 * echoed in a message.
 * Threads: start-up only (qvld_config_parse reads the environment).
 */
#include "qvld_config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "alloc.h"
#include "jsonx.h"
#include "log.h"

/* No sensible configuration file comes near this; a larger one is refused before it is read. */
#define CONFIG_MAX_BYTES (1u << 20)
/* Longest served model name: names appear in every response and metric label. */
#define NAME_MAX_LEN 256

/* Defaults (also written in the usage text and etc/qvld.conf). */
#define DEF_SOCKET_MODE 0660
#define DEF_MAX_NUM_SEQS 256
#define DEF_MAX_NUM_BATCHED_TOKENS 8192
#define DEF_BLOCK_SIZE 16
#define DEF_GPU_MEMORY_UTILIZATION 0.9
#define DEF_MAX_WAITING 1024
#define DEF_SHUTDOWN_TIMEOUT 30.0
#define DEF_LIMIT_IMAGES 64

typedef enum opt_kind {
	OPT_STRING,   /* owned char *, non-empty */
	OPT_INT,      /* int within [lo, hi] */
	OPT_INT64,    /* int64_t within [lo, hi] */
	OPT_BOOL,     /* bool: a switch on the command line, true/false/… in the file */
	OPT_CUSTOM,   /* o->set reads the value */
} opt_kind;

/* Where a value comes from: the file, then the command line. */
enum { SRC_NONE = 0, SRC_FILE = 1, SRC_FLAGS = 2 };

typedef struct parse_state {
	int src;        /* SRC_* being applied */
	int names_src;  /* the source the served model names so far came from */
} parse_state;

typedef struct opt opt;
struct opt {
	const char *name;
	opt_kind kind;
	size_t off;          /* offset of the field in qvld_config */
	int64_t lo, hi;      /* OPT_INT / OPT_INT64 range */
	bool human;          /* OPT_INT / OPT_INT64: vLLM's k/m/g (×10^3…), K/M/G (×2^10…) */
	int (*set)(qvld_config *c, parse_state *st, const char *where, const char *v, qerr *e);
};

static int set_backend(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_socket(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_socket_mode(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_names(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_block_size(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_gpu_util(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_kv_dtype(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_shutdown(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_limit_mm(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_mm_kwargs(qvld_config *, parse_state *, const char *, const char *, qerr *);
static int set_log_level(qvld_config *, parse_state *, const char *, const char *, qerr *);

#define F(field) offsetof(qvld_config, field)

/* Every setting, in the order of the usage text. */
static const opt opts[] = {
	{ "model", OPT_STRING, F(model), 0, 0, false, NULL },
	{ "served-model-name", OPT_CUSTOM, 0, 0, 0, false, set_names },
	{ "backend", OPT_CUSTOM, 0, 0, 0, false, set_backend },
	{ "socket", OPT_CUSTOM, 0, 0, 0, false, set_socket },
	{ "socket-mode", OPT_CUSTOM, 0, 0, 0, false, set_socket_mode },
	{ "socket-group", OPT_STRING, F(socket_group), 0, 0, false, NULL },
	{ "max-model-len", OPT_INT64, F(max_model_len), 0, INT32_MAX, true, NULL },
	{ "max-num-seqs", OPT_INT, F(max_num_seqs), 1, 1 << 20, false, NULL },
	{ "max-num-batched-tokens", OPT_INT, F(max_num_batched_tokens), 1, 1 << 30, true, NULL },
	{ "block-size", OPT_CUSTOM, 0, 0, 0, false, set_block_size },
	{ "enable-prefix-caching", OPT_BOOL, F(enable_prefix_caching), 0, 0, false, NULL },
	{ "num-gpu-blocks-override", OPT_INT, F(num_gpu_blocks_override), 0, INT32_MAX, false,
	  NULL },
	{ "kv-cache-memory-bytes", OPT_INT64, F(kv_cache_memory_bytes), 0, INT64_C(1) << 50, true,
	  NULL },
	{ "kv-cache-dtype", OPT_CUSTOM, 0, 0, 0, false, set_kv_dtype },
	{ "gpu-memory-utilization", OPT_CUSTOM, 0, 0, 0, false, set_gpu_util },
	{ "tensor-parallel-size", OPT_INT, F(tensor_parallel_size), 1, 64, false, NULL },
	{ "enforce-eager", OPT_BOOL, F(enforce_eager), 0, 0, false, NULL },
	{ "async-scheduling", OPT_BOOL, F(async_scheduling), 0, 0, false, NULL },
	{ "generation-config", OPT_STRING, F(generation_config), 0, 0, false, NULL },
	{ "max-waiting-requests", OPT_INT, F(max_waiting), 0, 1 << 24, false, NULL },
	{ "shutdown-timeout", OPT_CUSTOM, 0, 0, 0, false, set_shutdown },
	{ "cpu-threads", OPT_INT, F(cpu_threads), 0, 4096, false, NULL },
	{ "limit-mm-per-prompt", OPT_CUSTOM, 0, 0, 0, false, set_limit_mm },
	{ "mm-processor-kwargs", OPT_CUSTOM, 0, 0, 0, false, set_mm_kwargs },
	{ "encoder-cache-size", OPT_INT64, F(encoder_cache_tokens), 0, INT32_MAX, false, NULL },
	{ "allowed-local-media-path", OPT_STRING, F(allowed_local_media_path), 0, 0, false, NULL },
	{ "api-key", OPT_STRING, F(api_key), 0, 0, false, NULL },
	{ "batch-invariant", OPT_BOOL, F(batch_invariant), 0, 0, false, NULL },
	{ "log-level", OPT_CUSTOM, 0, 0, 0, false, set_log_level },
};

#undef F

static const char usage_text[] =
	"Usage: qvld --model DIR [options]\n"
	"\n"
	"Options (the file " QVLD_DEFAULT_CONFIG " takes the same names without dashes,\n"
	"`key = value`; flags given here win; --flag VALUE and --flag=VALUE both work):\n"
	"  --config PATH                   configuration file (default " QVLD_DEFAULT_CONFIG
	" if it exists;\n"
	"                                  $QVL_CONFIG names another, empty for none)\n"
	"  --model DIR                     model directory (required)\n"
	"  --served-model-name NAME...     names clients use (repeatable; default: DIR's name)\n"
	"  --backend auto|cpu|cuda         compute backend (auto)\n"
	"  --socket PATH                   listening socket (" QVLD_DEFAULT_SOCKET ")\n"
	"  --socket-mode OCTAL             socket permissions (0660)\n"
	"  --socket-group NAME             socket group (the process's)\n"
	"  --max-model-len N               context length (0: max_position_embeddings)\n"
	"  --max-num-seqs N                sequences per step (256)\n"
	"  --max-num-batched-tokens N      tokens per step (8192)\n"
	"  --block-size N                  KV block size in tokens: 1..128, a power of two (16)\n"
	"  --[no-]enable-prefix-caching    reuse KV blocks of shared prefixes (on)\n"
	"  --num-gpu-blocks-override N     KV blocks (0: planned from memory)\n"
	"  --kv-cache-memory-bytes N       KV cache size (0: planned; cpu backend 4 GiB)\n"
	"  --kv-cache-dtype auto|bfloat16|fp8|fp8_e4m3\n"
	"                                  KV cache element type; fp8 (E4M3, cuda) halves\n"
	"                                  its bytes (auto: the model's, bfloat16)\n"
	"  --gpu-memory-utilization F      fraction of GPU memory to use, 0 < F <= 1 (0.9)\n"
	"  --tensor-parallel-size N        GPUs per model (1)\n"
	"  --[no-]enforce-eager            no CUDA graphs (off)\n"
	"  --[no-]async-scheduling         plan step N+1 while step N runs (on)\n"
	"  --generation-config auto|vllm|DIR\n"
	"                                  sampling defaults: the model's, vLLM's or DIR's (auto)\n"
	"  --max-waiting-requests N        queued requests before SUBMIT is refused BUSY (1024)\n"
	"  --shutdown-timeout SECONDS      grace period for running requests on SIGTERM (30)\n"
	"  --cpu-threads N                 cpu backend threads (0: one per core)\n"
	"  --limit-mm-per-prompt JSON      images per prompt, '{\"image\": N}' or image=N (64)\n"
	"  --mm-processor-kwargs JSON      '{\"min_pixels\": N, \"max_pixels\": N}' (model's)\n"
	"  --encoder-cache-size N          image tokens cached (0: max-num-batched-tokens)\n"
	"  --allowed-local-media-path DIR  allow file:// images under DIR (none)\n"
	"  --api-key KEY                   bearer key clients must send (none)\n"
	"  --[no-]batch-invariant          results independent of batch shape (off)\n"
	"  --log-level LEVEL               crit, err, warn, notice, info or debug (info)\n"
	"  --help                          this text\n"
	"\n"
	"Numbers for --max-model-len, --max-num-batched-tokens and --kv-cache-memory-bytes\n"
	"may end in k, m, g (x1000) or K, M, G (x1024), as in vLLM.\n";

const char *qvld_config_usage(void)
{
	return usage_text;
}

static const opt *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strlen(opts[i].name) == len && !memcmp(opts[i].name, name, len))
			return &opts[i];
	return NULL;
}

/* qerr_set(e, QERR_INVALID, …): nearly every message here is about a bad value. */
static int bad(qerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(qerr *e, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->code = QERR_INVALID;
	}
	return -QERR_INVALID;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* ---- value readers ---------------------------------------------------------------------- */

/* A decimal integer (optional sign, digits, and with human a k/m/g/K/M/G suffix) within
 * [lo, hi]. Fails with QERR_INVALID "<where>: "<v>" is not an integer" or "… must be …". */
static int parse_int(const char *where, const char *v, int64_t lo, int64_t hi, bool human,
		     int64_t *out, qerr *e)
{
	const char *p = v;
	if (*p == '-' || *p == '+')
		p++;
	if (*p < '0' || *p > '9')
		return bad(e, "%s: \"%s\" is not an integer", where, v);
	errno = 0;
	char *end;
	long long x = strtoll(v, &end, 10);
	bool range = errno == ERANGE;
	int64_t mult = 1;
	if (human && *end && !end[1]) {
		switch (*end) {
		case 'k': mult = 1000; break;
		case 'm': mult = 1000000; break;
		case 'g': mult = 1000000000; break;
		case 'K': mult = 1 << 10; break;
		case 'M': mult = 1 << 20; break;
		case 'G': mult = 1 << 30; break;
		}
		if (mult != 1)
			end++;
	}
	if (*end)
		return bad(e, "%s: \"%s\" is not an integer", where, v);
	int64_t r;
	if (range || __builtin_mul_overflow((int64_t)x, mult, &r))
		return bad(e, "%s: \"%s\" is out of range", where, v);
	if (r < lo)
		return bad(e, "%s: \"%s\" must be at least %lld", where, v, (long long)lo);
	if (r > hi)
		return bad(e, "%s: \"%s\" must be at most %lld", where, v, (long long)hi);
	*out = r;
	return 0;
}

/* A finite decimal number. */
static int parse_double(const char *where, const char *v, double *out, qerr *e)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (!*v || is_space(*v) || *end || errno == ERANGE || !isfinite(x))
		return bad(e, "%s: \"%s\" is not a number", where, v);
	*out = x;
	return 0;
}

/* true/false/yes/no/on/off/1/0, any case. */
static int parse_bool(const char *where, const char *v, bool *out, qerr *e)
{
	static const char *yes[] = { "true", "yes", "on", "1" };
	static const char *no[] = { "false", "no", "off", "0" };
	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return bad(e, "%s: \"%s\" is not a boolean (true/false/yes/no/1/0)", where, v);
}

/* Strict JSON (jsonx_parse); a syntax error is reported as QERR_INVALID, like every other bad
 * value here. */
static int parse_json(const char *where, const char *v, json_object **out, qerr *e)
{
	int rc = jsonx_parse(v, strlen(v), where, out, e);
	if (rc && e)
		e->code = QERR_INVALID;
	return rc ? -QERR_INVALID : 0;
}

/* ---- custom setters: each reads v for one setting, writing c only on success ------------- */

static int set_backend(qvld_config *c, parse_state *st, const char *where, const char *v, qerr *e)
{
	(void)st;
	if (!strcmp(v, "auto"))
		c->backend = QVLD_BACKEND_AUTO;
	else if (!strcmp(v, "cpu"))
		c->backend = QVLD_BACKEND_CPU;
	else if (!strcmp(v, "cuda"))
		c->backend = QVLD_BACKEND_CUDA;
	else
		return bad(e, "%s: \"%s\" must be auto, cpu or cuda", where, v);
	return 0;
}

static int set_kv_dtype(qvld_config *c, parse_state *st, const char *where, const char *v,
			qerr *e)
{
	(void)st;
	if (!strcmp(v, "auto") || !strcmp(v, "bfloat16"))
		c->kv_cache_fp8 = false;
	else if (!strcmp(v, "fp8") || !strcmp(v, "fp8_e4m3"))
		c->kv_cache_fp8 = true;
	else if (!strcmp(v, "fp8_e5m2"))
		return bad(e, "%s: fp8_e5m2 is not supported (fp8 means fp8_e4m3, which is)", where);
	else
		return bad(e, "%s: \"%s\" must be auto, bfloat16, fp8 or fp8_e4m3", where, v);
	return 0;
}

static int set_socket(qvld_config *c, parse_state *st, const char *where, const char *v, qerr *e)
{
	(void)st;
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
	if (strlen(v) > max)
		return bad(e, "%s: \"%s\" is longer than %zu bytes", where, v, max);
	free(c->socket_path);
	c->socket_path = xstrdup(v);
	return 0;
}

/* Octal digits only ("660" or "0660"), at most 0777: no setuid/sticky bits on a socket. */
static int set_socket_mode(qvld_config *c, parse_state *st, const char *where, const char *v,
			   qerr *e)
{
	(void)st;
	long mode = 0;
	size_t n = strlen(v);
	if (n == 0 || n > 5)
		return bad(e, "%s: \"%s\" is not an octal mode", where, v);
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '7')
			return bad(e, "%s: \"%s\" is not an octal mode", where, v);
		mode = mode * 8 + (v[i] - '0');
	}
	if (mode > 0777)
		return bad(e, "%s: \"%s\" must be at most 0777", where, v);
	c->socket_mode = (int)mode;
	return 0;
}

static void free_names(qvld_config *c)
{
	for (int i = 0; i < c->n_served_model_names; i++) {
		free(c->served_model_names[i]);
		c->served_model_names[i] = NULL;
	}
	c->n_served_model_names = 0;
}

/* One or more names separated by spaces or tabs, appended to the names of the same source; the
 * first value from the command line drops the names the file gave. */
static int set_names(qvld_config *c, parse_state *st, const char *where, const char *v, qerr *e)
{
	const char *p = v;
	while (is_space(*p))
		p++;
	if (!*p)
		return bad(e, "%s: empty value", where);
	if (st->names_src != st->src) {
		free_names(c);
		st->names_src = st->src;
	}
	while (*p) {
		size_t n = 0;
		while (p[n] && !is_space(p[n]))
			n++;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				return bad(e, "%s: control characters are not allowed in names",
					   where);
		if (n > NAME_MAX_LEN)
			return bad(e, "%s: \"%.*s…\" is longer than %d bytes", where, 32, p,
				   NAME_MAX_LEN);
		for (int i = 0; i < c->n_served_model_names; i++)
			if (strlen(c->served_model_names[i]) == n &&
			    !memcmp(c->served_model_names[i], p, n))
				return bad(e, "%s: \"%.*s\" is given twice", where, (int)n, p);
		if (c->n_served_model_names == QVLD_MAX_NAMES)
			return bad(e, "%s: more than %d names", where, QVLD_MAX_NAMES);
		char *name = xmalloc(n + 1);
		memcpy(name, p, n);
		name[n] = 0;
		c->served_model_names[c->n_served_model_names++] = name;
		p += n;
		while (is_space(*p))
			p++;
	}
	return 0;
}

static int set_block_size(qvld_config *c, parse_state *st, const char *where, const char *v,
			  qerr *e)
{
	(void)st;
	int64_t x;
	int rc = parse_int(where, v, INT64_MIN, INT64_MAX, false, &x, e);
	if (rc)
		return rc;
	if (x < 1 || x > 128 || (x & (x - 1)))
		return bad(e, "%s: \"%s\" must be one of 1, 2, 4, 8, 16, 32, 64, 128", where, v);
	c->block_size = (int)x;
	return 0;
}

static int set_gpu_util(qvld_config *c, parse_state *st, const char *where, const char *v,
			qerr *e)
{
	(void)st;
	double x;
	int rc = parse_double(where, v, &x, e);
	if (rc)
		return rc;
	if (!(x > 0 && x <= 1))
		return bad(e, "%s: \"%s\" must be greater than 0 and at most 1", where, v);
	c->gpu_memory_utilization = x;
	return 0;
}

static int set_shutdown(qvld_config *c, parse_state *st, const char *where, const char *v,
			qerr *e)
{
	(void)st;
	double x;
	int rc = parse_double(where, v, &x, e);
	if (rc)
		return rc;
	if (!(x >= 0 && x <= 86400))
		return bad(e, "%s: \"%s\" must be between 0 and 86400 seconds", where, v);
	c->shutdown_timeout = x;
	return 0;
}

/* One modality of --limit-mm-per-prompt: image sets the limit; video may only be 0. */
static int limit_one(const char *where, const char *key, size_t klen, int64_t n, int *image,
		     qerr *e)
{
	if (klen == 5 && !memcmp(key, "image", 5)) {
		*image = (int)n;
		return 0;
	}
	if (klen == 5 && !memcmp(key, "video", 5)) {
		if (n != 0)
			return bad(e, "%s: videos are not supported (video must be 0)", where);
		return 0;
	}
	return bad(e, "%s: unknown modality \"%.*s\" (only image is supported)", where, (int)klen,
		   key);
}

#define LIMIT_IMAGES_MAX 65536

/* vLLM's JSON form '{"image": 4, "video": 0}', or the older "image=4,video=0". A modality left
 * out keeps its default. */
static int set_limit_mm(qvld_config *c, parse_state *st, const char *where, const char *v,
			qerr *e)
{
	(void)st;
	int image = DEF_LIMIT_IMAGES;
	const char *p = v;
	while (is_space(*p))
		p++;
	if (*p == '{') {
		json_object *obj;
		int rc = parse_json(where, v, &obj, e);
		if (rc)
			return rc;
		if (!json_object_is_type(obj, json_type_object)) {
			json_object_put(obj);
			return bad(e, "%s: must be a JSON object such as {\"image\": 4}", where);
		}
		/* keys belong to obj: messages are written before it is put */
		json_object_object_foreach(obj, key, val) {
			int64_t n;
			if (!jsonx_as_int(val, 0, LIMIT_IMAGES_MAX, &n)) {
				rc = bad(e, "%s: %s must be an integer between 0 and %d", where,
					 key, LIMIT_IMAGES_MAX);
				break;
			}
			rc = limit_one(where, key, strlen(key), n, &image, e);
			if (rc)
				break;
		}
		json_object_put(obj);
		if (rc)
			return rc;
	} else {
		/* key=N[,key=N…] */
		while (*p) {
			const char *eq = strchr(p, '=');
			const char *comma = strchr(p, ',');
			if (!comma)
				comma = p + strlen(p);
			if (!eq || eq > comma || eq == p)
				return bad(e, "%s: \"%s\" is neither JSON ({\"image\": 4}) nor "
					   "image=4", where, v);
			char num[32];
			size_t nl = (size_t)(comma - eq - 1);
			if (nl >= sizeof(num))
				nl = sizeof(num) - 1;   /* then not an integer anyway */
			memcpy(num, eq + 1, nl);
			num[nl] = 0;
			int64_t n;
			int rc = parse_int(where, num, 0, LIMIT_IMAGES_MAX, false, &n, e);
			if (rc)
				return rc;
			rc = limit_one(where, p, (size_t)(eq - p), n, &image, e);
			if (rc)
				return rc;
			p = *comma ? comma + 1 : comma;
		}
	}
	c->limit_images_per_prompt = image;
	return 0;
}

/* A JSON object with only min_pixels / max_pixels (positive integers, min <= max); the text is
 * kept as given for the image processor. */
static int set_mm_kwargs(qvld_config *c, parse_state *st, const char *where, const char *v,
			 qerr *e)
{
	(void)st;
	json_object *obj;
	int rc = parse_json(where, v, &obj, e);
	if (rc)
		return rc;
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return bad(e, "%s: must be a JSON object such as {\"max_pixels\": 1003520}", where);
	}
	int64_t minp = 0, maxp = 0;
	json_object_object_foreach(obj, key, val) {
		int64_t *dst = !strcmp(key, "min_pixels") ? &minp
			     : !strcmp(key, "max_pixels") ? &maxp : NULL;
		if (!dst) {
			rc = bad(e, "%s: unknown key \"%s\" (only min_pixels and max_pixels are "
				 "supported)", where, key);
			break;
		}
		if (!jsonx_as_int(val, 1, INT32_MAX, dst)) {
			rc = bad(e, "%s: %s must be an integer between 1 and %d", where, key,
				 INT32_MAX);
			break;
		}
	}
	json_object_put(obj);
	if (rc)
		return rc;
	if (minp && maxp && minp > maxp)
		return bad(e, "%s: min_pixels %lld is larger than max_pixels %lld", where,
			   (long long)minp, (long long)maxp);
	free(c->mm_processor_kwargs);
	c->mm_processor_kwargs = xstrdup(v);
	return 0;
}

static int set_log_level(qvld_config *c, parse_state *st, const char *where, const char *v,
			 qerr *e)
{
	(void)st;
	int l = log_parse_level(v);
	if (l < 0)
		return bad(e, "%s: \"%s\" must be one of crit, err, warn, notice, info, debug",
			   where, v);
	c->log_level = l;
	return 0;
}

/* Apply one value (v) to setting o. `where` leads every message ("--name" or "file:line: name").
 * Booleans get v parsed as true/false/…; every other kind refuses an empty value. */
static int apply(qvld_config *c, parse_state *st, const opt *o, const char *where, const char *v,
		 qerr *e)
{
	char *base = (char *)c;
	if (o->kind == OPT_BOOL)
		return parse_bool(where, v, (bool *)(base + o->off), e);
	if (!*v)
		return bad(e, "%s: empty value", where);
	int64_t x;
	int rc;
	switch (o->kind) {
	case OPT_STRING: {
		char **dst = (char **)(base + o->off);
		free(*dst);
		*dst = xstrdup(v);
		return 0;
	}
	case OPT_INT:
		rc = parse_int(where, v, o->lo, o->hi, o->human, &x, e);
		if (rc == 0)
			*(int *)(base + o->off) = (int)x;
		return rc;
	case OPT_INT64:
		rc = parse_int(where, v, o->lo, o->hi, o->human, &x, e);
		if (rc == 0)
			*(int64_t *)(base + o->off) = x;
		return rc;
	case OPT_CUSTOM:
		return o->set(c, st, where, v, e);
	case OPT_BOOL:
		break;
	}
	return 0;
}

/* ---- the configuration file ---------------------------------------------------------------- */

/* Parse one line in place: *key and *val point into line (NUL-terminated). Returns 1 for a blank
 * or comment line, 0 for a setting, or a QERR code with "<path>:<n>: …". */
static int split_line(char *line, const char *path, int lineno, char **key, char **val, qerr *e)
{
	char *p = line;
	while (is_space(*p))
		p++;
	if (!*p || *p == '#')
		return 1;
	*key = p;
	while (*p && *p != '=' && *p != '#' && !is_space(*p))
		p++;
	char *kend = p;
	while (is_space(*p))
		p++;
	if (*p != '=' || kend == *key)
		return bad(e, "%s:%d: expected \"key = value\"", path, lineno);
	*kend = 0;
	p++;
	while (is_space(*p))
		p++;
	*val = p;
	if (*p == '"' || *p == '\'') {
		/* "…" with \" and \\ escapes (other backslashes kept); '…' taken literally */
		char q = *p++;
		char *w = *val;
		while (*p && *p != q) {
			if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
				p++;
			*w++ = *p++;
		}
		if (*p != q)
			return bad(e, "%s:%d: %s: unterminated quoted value", path, lineno, *key);
		*w = 0;
		p++;
		while (is_space(*p))
			p++;
		if (*p && *p != '#')
			return bad(e, "%s:%d: %s: text after the closing quote", path, lineno,
				   *key);
		return 0;
	}
	char *end = strchr(p, '#');
	if (!end)
		end = p + strlen(p);
	while (end > p && is_space(end[-1]))
		end--;
	*end = 0;
	return 0;
}

/* Read path and apply its settings in order. QERR_MISSING when it does not exist, QERR_IO when it
 * cannot be read (both prefixed with label when there is one: "--config: <path>: …"),
 * QERR_INVALID for a bad line, unknown key or value ("<path>:<line>: …"). */
static int read_file(qvld_config *c, parse_state *st, const char *path, const char *label,
		     qerr *e)
{
	char *text;
	size_t len;
	int rc = jsonx_read_file(path, CONFIG_MAX_BYTES, &text, &len, e);
	if (rc && label)
		return qerr_prefix(e, "%s", label);   /* "--config: /x.conf: file not found" */
	if (rc)
		return rc;
	if (strlen(text) != len) {
		free(text);
		return bad(e, "%s: contains a NUL byte", path);
	}
	char *line = text;
	if (!strncmp(line, "\xef\xbb\xbf", 3))
		line += 3;   /* a UTF-8 byte order mark, as some editors write */
	int lineno = 0;
	while (line && rc == 0) {
		lineno++;
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		size_t n = strlen(line);
		if (n && line[n - 1] == '\r')
			line[n - 1] = 0;
		char *key = NULL, *val = NULL;
		int r = split_line(line, path, lineno, &key, &val, e);
		if (r < 0) {
			rc = r;
		} else if (r == 0) {
			const opt *o = find_opt(key, strlen(key));
			if (!o) {
				rc = bad(e, "%s:%d: unknown key \"%s\"", path, lineno, key);
			} else {
				char where[QERR_MSG_MAX];
				snprintf(where, sizeof(where), "%s:%d: %s", path, lineno, key);
				rc = apply(c, st, o, where, val, e);
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	free(text);
	return rc;
}

/* ---- the command line ---------------------------------------------------------------------- */

enum { ITEM_SET, ITEM_CONFIG };

typedef struct item {
	int type;          /* ITEM_* */
	const opt *o;      /* ITEM_SET */
	bool neg;          /* --no-<bool> */
	const char *value; /* borrowed from argv; NULL for a plain switch */
} item;

/* An argument that cannot be a value: "--something". "-1" and "-" are values. */
static bool is_flag(const char *a)
{
	return a[0] == '-' && a[1] == '-';
}

/* Tokenize argv into items (no settings applied). Sets *help for --help/-h/--version anywhere;
 * otherwise the first unknown flag, missing value or stray argument is the error. */
static int tokenize(int argc, char **argv, item *items, int *n_items, bool *help, qerr *e)
{
	int rc = 0;
	*n_items = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "--version")) {
			*help = true;
			continue;
		}
		if (rc)
			continue;   /* keep looking for --help only */
		if (!is_flag(a) || !a[2]) {
			rc = bad(e, "unexpected argument \"%s\" (the model is given with --model)",
				 a);
			continue;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		item it = { .type = ITEM_SET, .value = eq ? eq + 1 : NULL };
		if (nlen == 6 && !memcmp(name, "config", 6)) {
			it.type = ITEM_CONFIG;
		} else {
			it.o = find_opt(name, nlen);
			if (!it.o && nlen > 3 && !memcmp(name, "no-", 3)) {
				it.o = find_opt(name + 3, nlen - 3);
				if (it.o && it.o->kind != OPT_BOOL)
					it.o = NULL;
				it.neg = true;
			}
			if (!it.o) {
				rc = bad(e, "unknown flag --%.*s", (int)nlen, name);
				continue;
			}
		}
		if (it.type == ITEM_SET && it.o->kind == OPT_BOOL) {
			if (it.neg && eq) {
				rc = bad(e, "--no-%s takes no value", it.o->name);
				continue;
			}
			items[(*n_items)++] = it;
			continue;
		}
		if (!eq) {
			if (i + 1 >= argc || is_flag(argv[i + 1])) {
				rc = bad(e, "--%.*s: missing value", (int)nlen, name);
				continue;
			}
			it.value = argv[++i];
		}
		items[(*n_items)++] = it;
		/* vLLM's --served-model-name takes several arguments (argparse nargs='+') */
		if (it.type == ITEM_SET && it.o->set == set_names && !eq)
			while (i + 1 < argc && argv[i + 1][0] != '-') {
				it.value = argv[++i];
				items[(*n_items)++] = it;
			}
	}
	return rc;
}

static void set_defaults(qvld_config *c)
{
	memset(c, 0, sizeof(*c));
	c->backend = QVLD_BACKEND_AUTO;
	c->socket_path = xstrdup(QVLD_DEFAULT_SOCKET);
	c->socket_mode = DEF_SOCKET_MODE;
	c->max_num_seqs = DEF_MAX_NUM_SEQS;
	c->max_num_batched_tokens = DEF_MAX_NUM_BATCHED_TOKENS;
	c->block_size = DEF_BLOCK_SIZE;
	c->enable_prefix_caching = true;
	c->async_scheduling = true;
	c->gpu_memory_utilization = DEF_GPU_MEMORY_UTILIZATION;
	c->tensor_parallel_size = 1;
	c->generation_config = xstrdup("auto");
	c->max_waiting = DEF_MAX_WAITING;
	c->shutdown_timeout = DEF_SHUTDOWN_TIMEOUT;
	c->limit_images_per_prompt = DEF_LIMIT_IMAGES;
	c->log_level = LOG_LEVEL_INFO;
}

/* Which file to read: *path (borrowed) and a label for messages about it, or *path NULL. */
static int choose_file(const char *flag_path, const char **path, const char **label, qerr *e)
{
	*path = NULL;
	*label = NULL;
	if (flag_path) {
		if (!*flag_path)
			return bad(e, "--config: empty value");
		*path = flag_path;
		*label = "--config";
		return 0;
	}
	const char *env = getenv("QVL_CONFIG");
	if (env) {
		if (*env) {
			*path = env;
			*label = "QVL_CONFIG";
		}
		return 0;
	}
	struct stat sb;
	if (stat(QVLD_DEFAULT_CONFIG, &sb) == 0 || (errno != ENOENT && errno != ENOTDIR))
		*path = QVLD_DEFAULT_CONFIG;   /* exists, or stat failed oddly: reading says why */
	return 0;
}

/* The default served model name: the last component of the model directory. */
static char *model_basename(const char *model)
{
	size_t n = strlen(model);
	while (n > 1 && model[n - 1] == '/')
		n--;
	size_t s = n;
	while (s > 0 && model[s - 1] != '/')
		s--;
	if (s == n)   /* "/" */
		return xstrdup(model);
	char *r = xmalloc(n - s + 1);
	memcpy(r, model + s, n - s);
	r[n - s] = 0;
	return r;
}

int qvld_config_parse(int argc, char **argv, qvld_config *out, bool *help, qerr *e)
{
	*help = false;
	set_defaults(out);
	item *items = xcalloc(argc > 0 ? (size_t)argc : 1, sizeof(*items));
	int n_items = 0;
	int rc = tokenize(argc, argv, items, &n_items, help, e);
	if (*help) {
		free(items);
		return 0;
	}
	parse_state st = { 0 };
	const char *flag_path = NULL;
	for (int i = 0; i < n_items; i++)
		if (items[i].type == ITEM_CONFIG)
			flag_path = items[i].value;
	const char *path = NULL, *label = NULL;
	if (rc == 0)
		rc = choose_file(flag_path, &path, &label, e);
	if (rc == 0 && path) {
		st.src = SRC_FILE;
		rc = read_file(out, &st, path, label, e);
		if (rc == 0)
			out->config_path = xstrdup(path);
	}
	st.src = SRC_FLAGS;
	for (int i = 0; rc == 0 && i < n_items; i++) {
		const item *it = &items[i];
		if (it->type != ITEM_SET)
			continue;
		char where[128];
		snprintf(where, sizeof(where), "--%s%s", it->neg ? "no-" : "", it->o->name);
		if (it->o->kind == OPT_BOOL && !it->value)
			*(bool *)((char *)out + it->o->off) = !it->neg;
		else
			rc = apply(out, &st, it->o, where, it->value, e);
	}
	free(items);
	if (rc == 0 && !out->model)
		rc = qerr_set(e, QERR_MISSING, "--model is required");
	if (rc == 0 && out->n_served_model_names == 0) {
		out->served_model_names[0] = model_basename(out->model);
		out->n_served_model_names = 1;
	}
	if (rc)
		qvld_config_deinit(out);
	return rc;
}

void qvld_config_deinit(qvld_config *c)
{
	if (!c)
		return;
	free(c->config_path);
	free(c->model);
	free_names(c);
	free(c->socket_path);
	free(c->socket_group);
	free(c->generation_config);
	free(c->mm_processor_kwargs);
	free(c->allowed_local_media_path);
	free(c->api_key);
	memset(c, 0, sizeof(*c));
}
