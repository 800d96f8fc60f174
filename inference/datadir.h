/*
 * datadir: where qvl's read-only data lives (the vendored tokenizer and model files, the mkmodel
 * presets) — the installed $(pkgdatadir), or a build tree.
 *
 * Search order for a relative path such as "qwen3-vl/tokenizer.json":
 *   1. $QVL_DATADIR (the tests set it to the build tree's share/);
 *   2. <directory of the running executable>/share, which exists only in a build tree, so an
 *      uninstalled ./qvl finds the data it was built with;
 *   3. PKGDATADIR, fixed at configure time (/usr/local/share/qvl by default).
 * The first directory in which the file exists wins.
 */
#ifndef QVL_DATADIR_H
#define QVL_DATADIR_H

#include <stddef.h>

#include "qerr.h"

/* Resolve rel into buf (size n). 0 when found; -QERR_MISSING (message lists where it looked). */
int datadir_find(const char *rel, char *buf, size_t n, qerr *e);

#endif
