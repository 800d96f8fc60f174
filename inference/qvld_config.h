/*
 * qvld_config: qvld's settings, from /etc/qvl/qvld.conf and the command line (flags win).
 *
 * Flags keep vLLM's names (DESIGN.md "Names and flags"); the configuration file uses the same
 * names without the leading dashes, one `key = value` per line ('#' starts a comment, blank
 * lines ignored, values may be "double quoted"); boolean flags take true/false/yes/no/1/0 in the
 * file (`enable-prefix-caching = false`) and are plain switches on the command line, with
 * `--no-<name>` for the negation where vLLM has one. Every error names the file and line or the
 * flag, and the value. Like vLLM, --max-model-len, --max-num-batched-tokens and
 * --kv-cache-memory-bytes accept k/m/g (x1000) and K/M/G (x1024) suffixes ("32k", "4G").
 *
 * The default file is read only when it exists; a file named with --config must exist. The
 * environment variable QVL_CONFIG, when set, replaces the default: a non-empty value names a
 * file that must exist, an empty one means no file at all (tests use it); --config wins over it.
 * Threads: start-up only.
 */
#ifndef QVL_QVLD_CONFIG_H
#define QVL_QVLD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "qerr.h"

/* $(sysconfdir)/qvl/qvld.conf: /etc/qvl/qvld.conf for a build configured with
 * --sysconfdir=/etc (distribution packages), /usr/local/etc/qvl/qvld.conf by default. */
#ifdef SYSCONFDIR
#define QVLD_DEFAULT_CONFIG SYSCONFDIR "/qvl/qvld.conf"
#else
#define QVLD_DEFAULT_CONFIG "/etc/qvl/qvld.conf"
#endif
#define QVLD_DEFAULT_SOCKET "/run/qvl/qvld.sock"
#define QVLD_MAX_NAMES 8

typedef enum qvld_backend {
	QVLD_BACKEND_AUTO = 0,         /* cuda when built with it and a GPU is visible, else cpu */
	QVLD_BACKEND_CPU = 1,
	QVLD_BACKEND_CUDA = 2,
} qvld_backend;

typedef struct qvld_config {
	char *config_path;             /* owned: the file read, or NULL */
	char *model;                   /* owned: --model DIR (required) */
	char *served_model_names[QVLD_MAX_NAMES];  /* owned: --served-model-name (repeatable or
						    * space-separated); default: basename of model */
	int n_served_model_names;
	qvld_backend backend;          /* --backend auto|cpu|cuda */
	char *socket_path;             /* owned: --socket (default QVLD_DEFAULT_SOCKET) */
	int socket_mode;               /* --socket-mode octal (default 0660) */
	char *socket_group;            /* owned: --socket-group NAME (NULL: the process's) */
	int64_t max_model_len;         /* --max-model-len (0: the model's max_position_embeddings) */
	int max_num_seqs;              /* --max-num-seqs (256) */
	int max_num_batched_tokens;    /* --max-num-batched-tokens (8192) */
	int block_size;                /* --block-size (16) */
	bool enable_prefix_caching;    /* --enable-prefix-caching / --no-enable-prefix-caching (on) */
	int num_gpu_blocks_override;   /* --num-gpu-blocks-override (0: planned) */
	int64_t kv_cache_memory_bytes; /* --kv-cache-memory-bytes (0: planned; cpu default 4 GiB) */
	bool kv_cache_fp8;             /* --kv-cache-dtype fp8|fp8_e4m3 (auto|bfloat16: off) */
	double gpu_memory_utilization; /* --gpu-memory-utilization (0.9) */
	int tensor_parallel_size;      /* --tensor-parallel-size (1) */
	bool enforce_eager;            /* --enforce-eager */
	bool async_scheduling;         /* --async-scheduling / --no-async-scheduling (on) */
	char *generation_config;       /* owned: --generation-config auto|vllm|DIR (default "auto") */
	int max_waiting;               /* --max-waiting-requests (1024): beyond, SUBMIT gets BUSY */
	double shutdown_timeout;       /* --shutdown-timeout seconds (30): SIGTERM grace period */
	int cpu_threads;               /* --cpu-threads (0: one per core) */
	int limit_images_per_prompt;   /* --limit-mm-per-prompt '{"image":N}' (default 64) */
	char *mm_processor_kwargs;     /* owned: --mm-processor-kwargs JSON object text, or NULL */
	int64_t encoder_cache_tokens;  /* --encoder-cache-size image tokens (0: max-num-batched-tokens,
					* at least the largest image) */
	char *allowed_local_media_path;  /* owned: --allowed-local-media-path, or NULL */
	char *api_key;                 /* owned: --api-key, or NULL */
	bool batch_invariant;          /* --batch-invariant: results independent of batch shape */
	int log_level;                 /* --log-level crit|err|warn|notice|info|debug (info) */
} qvld_config;

/* Parse argv (argv[0] skipped) over the defaults and the configuration file: --config PATH (or
 * the default file if it exists) is read first, then the flags applied on top. --help and
 * --version are handled by the caller before (they are not errors here: *help is set, as for
 * -h, wherever they stand, and nothing else is read). QERR_INVALID / QERR_MISSING / QERR_IO naming
 * the flag or file:line (QERR_LIMIT for a file over 1 MiB). On failure *out is already
 * deinitialized; qvld_config_deinit may still be called. */
int qvld_config_parse(int argc, char **argv, qvld_config *out, bool *help, qerr *e);
void qvld_config_deinit(qvld_config *c);

/* The usage text (flags, defaults, one line each). */
const char *qvld_config_usage(void);

#endif
