/*
 * jsonx: reading JSON documents and typed fields with json-c, with errors that name the field.
 *
 * json-c parses; this module adds what every reader of model files and requests needs: a size
 * cap before reading a file, a parse error that says where (line and column are not kept by
 * json-c, so the byte offset is reported), and getters that tell "missing" from "wrong type"
 * from "out of range". Getters never allocate; strings returned are borrowed from the object.
 *
 * Each getter returns 0 when the key is present and valid, 1 when it is absent (the output is
 * left untouched, so a caller may pre-set a default), or a negative QERR code with a message
 * "<where>: <key>: …" when it is present but of the wrong type or out of range. JSON null counts
 * as absent, as Hugging Face config loaders treat it.
 */
#ifndef QVL_JSONX_H
#define QVL_JSONX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json.h>

#include "qerr.h"

/* Parse len bytes of text. `where` names the source in messages. *out is owned by the caller
 * (json_object_put); the text `null` parses to *out == NULL, which json-c treats as JSON null
 * everywhere. Fails with QERR_FORMAT on invalid JSON (standard JSON only: no trailing commas,
 * no NaN) or trailing garbage. */
int jsonx_parse(const char *text, size_t len, const char *where, json_object **out, qerr *e);

/* Read and parse a file of at most max_bytes. Fails with QERR_MISSING when the file does not
 * exist, QERR_IO when it cannot be read, QERR_LIMIT when it is larger than max_bytes. */
int jsonx_parse_file(const char *path, size_t max_bytes, json_object **out, qerr *e);

/* Read a whole file into a NUL-terminated heap buffer (same failures as above). */
int jsonx_read_file(const char *path, size_t max_bytes, char **out, size_t *len, qerr *e);

/* The member key of obj (NULL when obj is not an object, the key is absent or null). */
json_object *jsonx_member(json_object *obj, const char *key);

int jsonx_get_int(json_object *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
		  const char *where, qerr *e);
int jsonx_get_double(json_object *obj, const char *key, double *out, const char *where, qerr *e);
int jsonx_get_bool(json_object *obj, const char *key, bool *out, const char *where, qerr *e);
/* *out borrowed from obj. */
int jsonx_get_string(json_object *obj, const char *key, const char **out, const char *where,
		     qerr *e);
/* An object member; *out borrowed. */
int jsonx_get_object(json_object *obj, const char *key, json_object **out, const char *where,
		     qerr *e);
/* An array member; *out borrowed. */
int jsonx_get_array(json_object *obj, const char *key, json_object **out, const char *where,
		    qerr *e);

/* An integer value (not a member): true when v is a JSON integer (or a double with an exact
 * integer value) within [lo, hi]. */
bool jsonx_as_int(json_object *v, int64_t lo, int64_t hi, int64_t *out);

#endif
