/*
 * datadir: locate installed or build-tree data files (see datadir.h).
 */
#include "datadir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PKGDATADIR
#define PKGDATADIR "/usr/local/share/qvl"
#endif

static int exists(const char *dir, const char *rel, char *buf, size_t n)
{
	int len = snprintf(buf, n, "%s/%s", dir, rel);
	return len > 0 && (size_t)len < n && access(buf, R_OK) == 0;
}

int datadir_find(const char *rel, char *buf, size_t n, qerr *e)
{
	const char *env = getenv("QVL_DATADIR");
	if (env && *env && exists(env, rel, buf, n))
		return 0;

	char exe[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char tree[PATH_MAX + 8] = "";
	if (k > 0) {
		exe[k] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(tree, sizeof(tree), "%s/share", exe);
			if (exists(tree, rel, buf, n))
				return 0;
		}
	}
	if (exists(PKGDATADIR, rel, buf, n))
		return 0;
	return qerr_set(e, QERR_MISSING,
			"data file %s not found (looked in $QVL_DATADIR=%s, %s, %s); is qvl installed?",
			rel, env ? env : "(unset)", *tree ? tree : "(no executable path)", PKGDATADIR);
}
