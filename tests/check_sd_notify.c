/*
 * Tests of sd_notify: datagrams reach a socket bound at a path in a temporary directory and at an
 * abstract name, byte for byte; an unset NOTIFY_SOCKET is a no-op; bad values and an absent
 * listener are errors naming the socket; WATCHDOG_USEC / WATCHDOG_PID are read as systemd means.
 * Each test runs in its own forked child (Check's default), so setenv does not leak.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd_notify.h"
#include "testutil.h"

/* A datagram socket bound to addr (a path, or "@name" for the abstract namespace), with a
 * receive timeout so a lost datagram fails the test instead of hanging it. */
static int listen_at(const char *addr)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(addr);
	ck_assert_uint_lt(n, sizeof(sa.sun_path));
	memcpy(sa.sun_path, addr, n);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	if (addr[0] == '@') {
		sa.sun_path[0] = 0;
		len--;   /* abstract: exactly the name, no terminator */
	}
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	struct timeval tv = { .tv_sec = 5 };
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static void assert_receives(int fd, const char *want)
{
	char buf[8192];
	ssize_t k = recv(fd, buf, sizeof(buf), 0);
	ck_assert_int_ge(k, 0);
	ck_assert_uint_eq((size_t)k, strlen(want));
	ck_assert_mem_eq(buf, want, (size_t)k);
}

START_TEST(test_sd_notify_sends_states_to_a_path_socket)
{
	char *dir = tu_mkdtemp("sdn");
	char path[600];
	snprintf(path, sizeof(path), "%s/notify.sock", dir);
	int fd = listen_at(path);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
	qerr e = { 0 };
	ck_assert_int_eq(sd_notify_send("READY=1\nSTATUS=serving Qwen3-VL-2B", &e), 0);
	assert_receives(fd, "READY=1\nSTATUS=serving Qwen3-VL-2B");
	ck_assert_int_eq(sd_notify_sendf(&e, "STATUS=%d running, %d waiting", 3, 7), 0);
	assert_receives(fd, "STATUS=3 running, 7 waiting");
	ck_assert_int_eq(sd_notify_send("WATCHDOG=1", &e), 0);
	assert_receives(fd, "WATCHDOG=1");
	ck_assert_int_eq(sd_notify_send("STOPPING=1", &e), 0);
	assert_receives(fd, "STOPPING=1");
	/* a state longer than sendf's stack buffer */
	char longs[2000] = "STATUS=";
	memset(longs + 7, 'x', sizeof(longs) - 8);
	longs[sizeof(longs) - 1] = 0;
	ck_assert_int_eq(sd_notify_sendf(&e, "%s", longs), 0);
	assert_receives(fd, longs);
	close(fd);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_sd_notify_abstract_socket)
{
	char name[64];
	snprintf(name, sizeof(name), "@qvl-test-sdn-%ld", (long)getpid());
	int fd = listen_at(name);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", name, 1), 0);
	qerr e = { 0 };
	ck_assert_int_eq(sd_notify_send("READY=1", &e), 0);
	assert_receives(fd, "READY=1");
	ck_assert_int_eq(sd_notify_send("STOPPING=1", &e), 0);
	assert_receives(fd, "STOPPING=1");
	close(fd);
}
END_TEST

START_TEST(test_sd_notify_unset_is_a_no_op)
{
	ck_assert_int_eq(unsetenv("NOTIFY_SOCKET"), 0);
	qerr e = { 0 };
	ck_assert_int_eq(sd_notify_send("READY=1", &e), 0);
	ck_assert_int_eq(sd_notify_sendf(&e, "STATUS=%s", "x"), 0);
	ck_assert_int_eq(e.code, 0);
	ck_assert_int_eq(sd_notify_send("READY=1", NULL), 0);
}
END_TEST

START_TEST(test_sd_notify_bad_values_are_errors)
{
	qerr e = { 0 };
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", "relative/notify.sock", 1), 0);
	ck_assert_int_eq(sd_notify_send("READY=1", &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "relative/notify.sock"));
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", "", 1), 0);
	ck_assert_int_eq(sd_notify_send("READY=1", &e), -QERR_INVALID);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", "@", 1), 0);
	ck_assert_int_eq(sd_notify_send("READY=1", &e), -QERR_INVALID);
	char longp[200] = "/";
	memset(longp + 1, 'a', 150);
	longp[151] = 0;
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", longp, 1), 0);
	ck_assert_int_eq(sd_notify_send("READY=1", &e), -QERR_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "longer than"));
	longp[0] = '@';
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", longp, 1), 0);
	ck_assert_int_eq(sd_notify_send("READY=1", &e), -QERR_INVALID);
	/* well-formed, but nobody listens there */
	char *dir = tu_mkdtemp("sdn");
	char path[600];
	snprintf(path, sizeof(path), "%s/absent.sock", dir);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
	ck_assert_int_eq(sd_notify_send("READY=1", &e), -QERR_IO);
	ck_assert_ptr_nonnull(strstr(e.msg, path));
	ck_assert_ptr_nonnull(strstr(e.msg, "sendto"));
	/* an empty state is refused when there is a socket */
	ck_assert_int_eq(sd_notify_send("", &e), -QERR_INVALID);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_sd_notify_watchdog_usec)
{
	char pid[32], other[32];
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	snprintf(other, sizeof(other), "%ld", (long)getpid() + 1);
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	ck_assert_uint_eq(sd_notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	ck_assert_uint_eq(sd_notify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_uint_eq(sd_notify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_PID", other, 1);
	ck_assert_uint_eq(sd_notify_watchdog_usec(), 0);
	setenv("WATCHDOG_PID", "abc", 1);
	ck_assert_uint_eq(sd_notify_watchdog_usec(), 0);
	setenv("WATCHDOG_PID", "", 1);
	ck_assert_uint_eq(sd_notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	static const char *bad[] = { "", "0", "-5", "abc", "12x", " 12", "1.5",
				     "99999999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("WATCHDOG_USEC", bad[i], 1);
		ck_assert_msg(sd_notify_watchdog_usec() == 0, "WATCHDOG_USEC=\"%s\" accepted", bad[i]);
	}
	setenv("WATCHDOG_USEC", "18446744073709551615", 1);
	ck_assert_uint_eq(sd_notify_watchdog_usec(), UINT64_MAX);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sd_notify");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_sd_notify_sends_states_to_a_path_socket);
	tcase_add_test(tc, test_sd_notify_abstract_socket);
	tcase_add_test(tc, test_sd_notify_unset_is_a_no_op);
	tcase_add_test(tc, test_sd_notify_bad_values_are_errors);
	tcase_add_test(tc, test_sd_notify_watchdog_usec);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
