/*
 * qvld_server: qvld's socket side — the listening Unix socket, the responder connections, the
 * wire protocol (wire.h) and the engine thread.
 *
 *   main thread (I/O loop, poll):  accept ─► read frames ─► HELLO: MODEL_INFO
 *                                                          SUBMIT: decode, pixels → patches
 *                                                                  (hash checked) → engine_submit
 *                                                          CANCEL: engine_cancel
 *                                                          STATS:  engine_stats_json
 *                                  write queued frames; signals (self-pipe): SIGTERM/SIGINT drain
 *   engine thread:                 engine_wait ─► engine_step ─► emit: TOKENS / FINISH / ERROR
 *                                  frames appended to the connection's output, eventfd wakes I/O
 *
 * Connections and their open requests are shared by both threads under one mutex. A request
 * record lives until the engine has reported the end of each of its n choices, so a connection
 * that drops (all its requests cancelled at once) is freed only after the engine let go of it.
 * A malformed frame gets ERROR (id 0, WIRE_E_PROTOCOL) and the connection is closed once that
 * frame is written; nothing else is affected.
 *
 * Shutdown (SIGTERM, SIGINT): stop listening (the socket file is removed), refuse new SUBMITs
 * with WIRE_E_SHUTTING_DOWN, let running requests finish within shutdown_timeout, then cancel
 * what is left, flush, and return. A second signal cancels at once.
 *
 * systemd: STATUS lines as the load changes, WATCHDOG=1 while the engine thread is alive (when
 * WATCHDOG_USEC is set), STOPPING=1 on shutdown (sd_notify.h). READY=1 is the caller's, once the
 * socket is bound.
 */
#ifndef QVL_QVLD_SERVER_H
#define QVL_QVLD_SERVER_H

#include "engine.h"
#include "model_config.h"
#include "qerr.h"

typedef struct qvld_server_opts {
	const char *socket_path;
	int socket_mode;               /* chmod of the socket file */
	const char *socket_group;      /* chown group name, or NULL */
	engine *en;                    /* borrowed */
	const model_config *mc;        /* borrowed */
	const preprocessor_config *pc; /* borrowed: how SUBMIT's resized pixels become patches */
	const char *model_info;        /* borrowed: MODEL_INFO JSON text */
	double shutdown_timeout;       /* seconds */
	int limit_images;              /* images per request */
} qvld_server_opts;

typedef struct qvld_server qvld_server;

/* Bind and listen (a stale socket file is replaced; a live one — another daemon answering — is
 * an error), and take over SIGTERM and SIGINT: a handler turns them into bytes on a pipe that
 * the I/O loop reads (one server per process). QERR_IO naming the path. */
int qvld_server_new(const qvld_server_opts *o, qvld_server **out, qerr *e);

/* Run until shutdown is complete. Returns 0, or a negative code when the engine failed. */
int qvld_server_run(qvld_server *s, qerr *e);

void qvld_server_free(qvld_server *s);

#endif
