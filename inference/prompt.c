/*
 * prompt: chat request → ids and resized images (see prompt.h for the pipeline).
 *
 * Images are decoded and resized one at a time, in request order, and kept only as resized
 * uint8 RGB (3 bytes a pixel): the float pixel_values (24 bytes a pixel of the grid) are made
 * later, by whoever runs the encoder. The placeholder runs are found in the encoded ids rather
 * than predicted from the text: <|image_pad|> is a special token, so each expanded run is
 * exactly n_tokens ids of image_token_id, in order.
 *
 * Hashing while decoding: an image that will not be resampled (its size is on the grid already,
 * as clients that resize to the model's grid send it) is hashed from its decoded rows on a
 * thread of its own while the decoder produces the rest, so the two mostly overlap (a 448x448
 * PNG: ~0.7 ms to decode, ~0.45 ms to hash). The resize keeps such an image's pixels as they
 * are, so the hash is img_preprocess_hash's; it is used only when the resized size really is
 * the decoded size, else the image is hashed after the resize as before.
 */
#include "prompt.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "chat_template.h"
#include "img_decode.h"
#include "sha256.h"

void prompt_deinit(prompt *p)
{
	if (!p)
		return;
	tok_ids_deinit(&p->ids);
	for (size_t i = 0; i < p->n_images; i++)
		img_rgb_deinit(&p->images[i].resized);
	free(p->images);
	free(p->text);
	memset(p, 0, sizeof(*p));
}

/* ---- hashing rows while they are decoded ---- */

/* Smaller images are hashed after decoding: a thread costs tens of microseconds. */
#define ROW_HASH_MIN_BYTES ((size_t)128 << 10)
/* A waiting hasher is woken once this many new rows are there (or the last one). */
#define ROW_HASH_BATCH 16

typedef struct row_hasher {
	/* set up by load_image */
	const preprocessor_config *pc; /* borrowed */
	int64_t min_pixels, max_pixels;
	/* decoder thread only */
	bool started, declined;
	pthread_t th;
	const img_rgb *img;            /* borrowed from the decoder until end */
	/* (mu) shared */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int published;                 /* rows [0, published) are final */
	int wait_at;                   /* the hasher waits having hashed this many rows */
	bool waiting, stop, abort;
	/* the hasher thread's until joined */
	sha256_ctx sha;
	int hashed;
	/* the result */
	bool have;
	uint8_t hash[32];
} row_hasher;

static void *row_hasher_main(void *arg)
{
	row_hasher *r = arg;
	const size_t row = (size_t)r->img->w * 3;
	int done = 0;
	pthread_mutex_lock(&r->mu);
	while (!r->abort && done < r->img->h) {
		if (r->published == done) {
			if (r->stop)
				break;         /* decoding ended short of the last row */
			r->waiting = true;
			r->wait_at = done;
			pthread_cond_wait(&r->cv, &r->mu);
			r->waiting = false;
			continue;
		}
		int n = r->published;
		pthread_mutex_unlock(&r->mu);
		sha256_update(&r->sha, r->img->px + (size_t)done * row, (size_t)(n - done) * row);
		done = n;
		pthread_mutex_lock(&r->mu);
	}
	r->hashed = done;
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* img_row_sink.rows: the first call decides (and starts the hasher); later ones publish. */
static void row_hasher_rows(void *ctx, const img_rgb *img, int n)
{
	row_hasher *r = ctx;
	if (r->declined)
		return;
	if (!r->started) {
		/* all rows at once (WebP, interlaced PNG): nothing left to overlap with */
		r->declined = n >= img->h || (size_t)img->w * (size_t)img->h * 3 < ROW_HASH_MIN_BYTES ||
			      !img_preprocess_keeps_size(img->w, img->h, r->pc, r->min_pixels,
							 r->max_pixels);
		if (r->declined)
			return;
		r->img = img;
		img_preprocess_hash_begin(&r->sha, img->w, img->h, r->pc);
		r->published = n;
		if (pthread_create(&r->th, NULL, row_hasher_main, r)) {
			r->declined = true;
			return;
		}
		r->started = true;
		return;
	}
	pthread_mutex_lock(&r->mu);
	r->published = n;
	if (r->waiting && (n - r->wait_at >= ROW_HASH_BATCH || n >= img->h))
		pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* img_row_sink.end: stop (on failure) or finish, and join, before the decoder frees the rows. */
static void row_hasher_end(void *ctx, bool ok)
{
	row_hasher *r = ctx;
	if (!r->started)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	r->abort = !ok;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->th, NULL);
	r->started = false;
	if (ok && r->hashed == r->img->h) {
		sha256_final(&r->sha, r->hash);
		r->have = true;
	}
}

/* Decode, resize and hash image i of r into im. */
static int load_image(const chat_request *r, size_t i, const preprocessor_config *pc,
		      prompt_image *im, qerr *e)
{
	img_rgb rgb = { 0 };
	img_limits lim = { 0 };
	snprintf(im->where, sizeof(im->where), "%s", r->images[i].where);
	row_hasher rh = { .pc = pc, .min_pixels = r->min_pixels, .max_pixels = r->max_pixels };
	pthread_mutex_init(&rh.mu, NULL);
	pthread_cond_init(&rh.cv, NULL);
	img_row_sink sink = { .rows = row_hasher_rows, .end = row_hasher_end, .ctx = &rh };
	int rc = img_decode_rows(r->images[i].data, r->images[i].len, &lim, &rgb, &sink, e);
	pthread_mutex_destroy(&rh.mu);
	pthread_cond_destroy(&rh.cv);
	if (!rc)
		rc = img_preprocess_resize(&rgb, pc, r->min_pixels, r->max_pixels, &im->resized, e);
	/* the resize copies pixels it does not resample: same size, same pixels, same hash */
	bool hashed = rh.have && im->resized.w == rgb.w && im->resized.h == rgb.h;
	img_rgb_deinit(&rgb);
	if (rc)
		return qerr_prefix(e, "%s", r->images[i].where);
	im->grid_t = 1;
	im->grid_h = im->resized.h / pc->patch_size;
	im->grid_w = im->resized.w / pc->patch_size;
	im->n_tokens = (int64_t)im->grid_t * im->grid_h * im->grid_w /
		       ((int64_t)pc->merge_size * pc->merge_size);
	if (hashed)
		memcpy(im->hash, rh.hash, 32);
	else
		img_preprocess_hash(&im->resized, pc, im->hash);
	return 0;
}

int prompt_build_chat(const tokenizer *t, const model_config *mc, const preprocessor_config *pc,
		      const chat_request *r, prompt *out, qerr *e)
{
	memset(out, 0, sizeof(*out));
	int n_rendered = 0;
	int rc = chat_render(r->messages, r->tools, &r->chat, &out->text, &out->text_len, &n_rendered,
			     NULL, e);
	if (!rc && (size_t)n_rendered != r->n_images)
		rc = qerr_set(e, QERR_UNSUPPORTED,
			      "request: %zu image part(s) but the chat template renders %d: images are "
			      "supported in user and tool messages only", r->n_images, n_rendered);
	if (!rc && r->n_images && !mc->has_vision)
		rc = qerr_set(e, QERR_UNSUPPORTED, "request: images given to a model without vision");
	if (rc)
		return rc;
	out->images = xcalloc(r->n_images + 1, sizeof(*out->images));
	int64_t *counts = xcalloc(r->n_images + 1, sizeof(*counts));
	for (size_t i = 0; !rc && i < r->n_images; i++) {
		rc = load_image(r, i, pc, &out->images[i], e);
		if (!rc) {
			out->n_images++;
			counts[i] = out->images[i].n_tokens;
		}
	}
	char *expanded = NULL;
	size_t elen = 0;
	if (!rc)
		rc = chat_expand_pads(out->text, out->text_len, "<|image_pad|>", counts, r->n_images,
				      &expanded, &elen, e);
	if (!rc)
		tok_encode(t, expanded, elen, &out->ids);
	/* the placeholder runs, in order */
	size_t p = 0;
	for (size_t i = 0; !rc && i < out->n_images; i++) {
		while (p < out->ids.n && out->ids.v[p] != mc->image_token_id)
			p++;
		size_t end = p;
		while (end < out->ids.n && out->ids.v[end] == mc->image_token_id)
			end++;
		if ((int64_t)(end - p) != out->images[i].n_tokens)
			rc = qerr_set(e, QERR_INVALID, "%s: %zu image tokens in the prompt, %lld expected "
				      "(does a text part contain <|image_pad|>?)", out->images[i].where,
				      end - p, (long long)out->images[i].n_tokens);
		out->images[i].start = (int64_t)p;
		p = end;
	}
	free(expanded);
	free(counts);
	return rc;
}

int prompt_image_patches(const prompt_image *im, const preprocessor_config *pc, img_patches *out,
			 qerr *e)
{
	return img_preprocess_patches(&im->resized, pc, out, e);
}
