/*
 * sd_notify: systemd's service notification protocol, without libsystemd.
 *
 * When NOTIFY_SOCKET is set (Type=notify units), state lines go to that AF_UNIX datagram socket
 * (a path, or '@' for the abstract namespace): "READY=1" after loading, "STATUS=…" as things
 * change, "WATCHDOG=1" at least every WATCHDOG_USEC/2 when the unit has WatchdogSec=, and
 * "STOPPING=1" on shutdown. Without NOTIFY_SOCKET every call is a no-op that succeeds.
 *
 * Threads: any thread; each call opens, sends one datagram and closes (no shared state).
 */
#ifndef QVL_SD_NOTIFY_H
#define QVL_SD_NOTIFY_H

#include <stdint.h>

#include "qerr.h"

/* Send state (e.g. "READY=1\nSTATUS=serving"). Returns 0, or QERR_IO naming the socket when
 * NOTIFY_SOCKET is set but the datagram cannot be sent (callers log it and go on), QERR_INVALID
 * for a NOTIFY_SOCKET value that is not an absolute path or '@' name. */
int sd_notify_send(const char *state, qerr *e);
int sd_notify_sendf(qerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The watchdog interval in microseconds from WATCHDOG_USEC (honouring WATCHDOG_PID when set:
 * 0 unless it names this process), or 0 when there is none or the value is malformed. */
uint64_t sd_notify_watchdog_usec(void);

#endif
