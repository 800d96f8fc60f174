/*
 * jsonx: json-c parsing and typed getters (see jsonx.h for the contract).
 */
#include "jsonx.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

/* Nesting deeper than this is refused: no model file or request needs it, and json-c recurses. */
#define JSONX_MAX_DEPTH 64

int jsonx_parse(const char *text, size_t len, const char *where, json_object **out, qerr *e)
{
	*out = NULL;
	if (len > (size_t)INT32_MAX)
		return qerr_set(e, QERR_LIMIT, "%s: JSON text of %zu bytes is too large", where, len);
	json_tokener *tok = json_tokener_new_ex(JSONX_MAX_DEPTH);
	if (!tok)
		return qerr_set(e, QERR_IO, "%s: cannot allocate a JSON parser", where);
	/* Strict: standard JSON only (no trailing commas, NaN literals or single quotes). */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		/* A top-level number is only known to be complete at a terminator: give it one.
		 * Input that really is cut short stays json_tokener_continue. */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		end = len;   /* the first call consumed all of text */
	}
	json_tokener_free(tok);
	if (jerr == json_tokener_continue) {
		json_object_put(obj);
		return qerr_set(e, QERR_FORMAT, "%s: invalid JSON: unexpected end of input", where);
	}
	if (jerr != json_tokener_success) {
		json_object_put(obj);
		return qerr_set(e, QERR_FORMAT, "%s: invalid JSON at byte %zu: %s", where, end,
				json_tokener_error_desc(jerr));
	}
	for (size_t i = end; i < len; i++) {
		char c = text[i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			json_object_put(obj);
			return qerr_set(e, QERR_FORMAT, "%s: invalid JSON: trailing data at byte %zu",
					where, i);
		}
	}
	*out = obj;
	return 0;
}

int jsonx_read_file(const char *path, size_t max_bytes, char **out, size_t *len, qerr *e)
{
	*out = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qerr_set(e, errno == ENOENT ? QERR_MISSING : QERR_IO, "%s: %s", path,
				errno == ENOENT ? "file not found" : strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int err = errno;
		close(fd);
		return qerr_set(e, QERR_IO, "%s: %s", path, strerror(err));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return qerr_set(e, QERR_IO, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max_bytes) {
		close(fd);
		return qerr_set(e, QERR_LIMIT, "%s: %lld bytes exceeds the limit of %zu", path,
				(long long)st.st_size, max_bytes);
	}
	size_t n = (size_t)st.st_size, got = 0;
	char *buf = xmalloc(n + 1);
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int err = errno;
			free(buf);
			close(fd);
			return qerr_set(e, QERR_IO, "%s: %s", path, r == 0 ? "file shrank while reading" : strerror(err));
		}
		got += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

int jsonx_parse_file(const char *path, size_t max_bytes, json_object **out, qerr *e)
{
	char *text;
	size_t len;
	*out = NULL;
	int rc = jsonx_read_file(path, max_bytes, &text, &len, e);
	if (rc)
		return rc;
	rc = jsonx_parse(text, len, path, out, e);
	free(text);
	return rc;
}

json_object *jsonx_member(json_object *obj, const char *key)
{
	json_object *v = NULL;
	if (!obj || !json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v; /* NULL when the value is JSON null */
}

bool jsonx_as_int(json_object *v, int64_t lo, int64_t hi, int64_t *out)
{
	int64_t x;
	if (json_object_is_type(v, json_type_int)) {
		/* json-c keeps values above INT64_MAX as uint64 and saturates get_int64; a saturated
		 * value is then refused by the range test unless hi is INT64_MAX. */
		x = json_object_get_int64(v);
		if (x == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
			return false;
	} else if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
			return false;
		x = (int64_t)d;
	} else {
		return false;
	}
	if (x < lo || x > hi)
		return false;
	*out = x;
	return true;
}

int jsonx_get_int(json_object *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
		  const char *where, qerr *e)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return qerr_set(e, QERR_FORMAT, "%s: %s: expected an integer, got %s", where, key,
				json_type_to_name(json_object_get_type(v)));
	if (!jsonx_as_int(v, lo, hi, out))
		return qerr_set(e, QERR_INVALID, "%s: %s: %s is not an integer in [%lld, %lld]", where,
				key, json_object_to_json_string(v), (long long)lo, (long long)hi);
	return 0;
}

int jsonx_get_double(json_object *obj, const char *key, double *out, const char *where, qerr *e)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return qerr_set(e, QERR_FORMAT, "%s: %s: expected a number, got %s", where, key,
				json_type_to_name(json_object_get_type(v)));
	double d = json_object_get_double(v);
	if (!isfinite(d))
		return qerr_set(e, QERR_INVALID, "%s: %s: not a finite number", where, key);
	*out = d;
	return 0;
}

int jsonx_get_bool(json_object *obj, const char *key, bool *out, const char *where, qerr *e)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, json_type_boolean))
		return qerr_set(e, QERR_FORMAT, "%s: %s: expected true or false, got %s", where, key,
				json_type_to_name(json_object_get_type(v)));
	*out = json_object_get_boolean(v);
	return 0;
}

int jsonx_get_string(json_object *obj, const char *key, const char **out, const char *where,
		     qerr *e)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, json_type_string))
		return qerr_set(e, QERR_FORMAT, "%s: %s: expected a string, got %s", where, key,
				json_type_to_name(json_object_get_type(v)));
	*out = json_object_get_string(v);
	return 0;
}

int jsonx_get_object(json_object *obj, const char *key, json_object **out, const char *where,
		     qerr *e)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, json_type_object))
		return qerr_set(e, QERR_FORMAT, "%s: %s: expected an object, got %s", where, key,
				json_type_to_name(json_object_get_type(v)));
	*out = v;
	return 0;
}

int jsonx_get_array(json_object *obj, const char *key, json_object **out, const char *where,
		    qerr *e)
{
	json_object *v = jsonx_member(obj, key);
	if (!v)
		return 1;
	if (!json_object_is_type(v, json_type_array))
		return qerr_set(e, QERR_FORMAT, "%s: %s: expected an array, got %s", where, key,
				json_type_to_name(json_object_get_type(v)));
	*out = v;
	return 0;
}
