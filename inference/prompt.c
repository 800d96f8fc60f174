/*
 * prompt: chat request → ids and resized images (see prompt.h for the pipeline).
 *
 * Images are decoded and resized one at a time, in request order, and kept only as resized
 * uint8 RGB (3 bytes a pixel): the float pixel_values (24 bytes a pixel of the grid) are made
 * later, by whoever runs the encoder. The placeholder runs are found in the encoded ids rather
 * than predicted from the text: <|image_pad|> is a special token, so each expanded run is
 * exactly n_tokens ids of image_token_id, in order.
 */
#include "prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "chat_template.h"
#include "img_decode.h"

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

/* Decode, resize and hash image i of r into im. */
static int load_image(const chat_request *r, size_t i, const preprocessor_config *pc,
		      prompt_image *im, qerr *e)
{
	img_rgb rgb = { 0 };
	img_limits lim = { 0 };
	snprintf(im->where, sizeof(im->where), "%s", r->images[i].where);
	int rc = img_decode(r->images[i].data, r->images[i].len, &lim, &rgb, e);
	if (!rc)
		rc = img_preprocess_resize(&rgb, pc, r->min_pixels, r->max_pixels, &im->resized, e);
	img_rgb_deinit(&rgb);
	if (rc)
		return qerr_prefix(e, "%s", r->images[i].where);
	im->grid_t = 1;
	im->grid_h = im->resized.h / pc->patch_size;
	im->grid_w = im->resized.w / pc->patch_size;
	im->n_tokens = (int64_t)im->grid_t * im->grid_h * im->grid_w /
		       ((int64_t)pc->merge_size * pc->merge_size);
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
