/*
 * prompt: an OpenAI chat request turned into what the model reads — token ids and, per image,
 * its resized pixels, grid, placeholder run and content hash. Shared by the offline command
 * (generate.c) and the responder (fcgi/), so both build exactly the same prompt.
 *
 *   messages ─► chat_render (native Qwen3-VL template) ─► text with one <|image_pad|> per image
 *   images   ─► img_decode ─► img_preprocess_resize (smart_resize, bicubic) ─► hash, grid
 *   text     ─► chat_expand_pads (n_tokens pads per image) ─► tok_encode ─► ids
 *
 *   ids     … <|vision_start|> pad pad … pad <|vision_end|> …
 *                              ^ images[i].start, images[i].n_tokens pads
 *
 * The resized uint8 pixels are what the wire protocol carries (the daemon patchifies them);
 * prompt_image_patches gives the pixel_values for an in-process engine.
 *
 * Ownership: a prompt owns everything in it; the request is borrowed. Threads: any; the
 * tokenizer may be shared.
 */
#ifndef QVL_PROMPT_H
#define QVL_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "chat_request.h"
#include "img.h"
#include "img_preprocess.h"
#include "model_config.h"
#include "qerr.h"
#include "tokenizer.h"

typedef struct prompt_image {
	img_rgb resized;               /* owned: the image after smart_resize and resampling */
	int32_t grid_t, grid_h, grid_w;  /* image_grid_thw, in patches */
	int64_t n_tokens;              /* placeholder tokens: grid_t·grid_h·grid_w / merge² */
	int64_t start;                 /* index in ids of its first placeholder */
	uint8_t hash[32];              /* img_preprocess_hash: the caches' key */
	char where[64];                /* "messages[1].content[0]", for error messages */
} prompt_image;

typedef struct prompt {
	tok_ids ids;                   /* owned */
	prompt_image *images;          /* owned: n_images, in prompt order */
	size_t n_images;
	char *text;                    /* owned: the rendered prompt (one pad per image) */
	size_t text_len;
} prompt;

/* Build the prompt of request r for a model (mc, pc) with tokenizer t. pc's min/max pixels are
 * the defaults that the request's mm_processor_kwargs override. Fails with the message naming
 * the part: QERR_UNSUPPORTED for images outside user/tool messages or given to a model without
 * vision, the decoders' and img_preprocess's codes for an image (prefixed with its place in
 * the request). Length limits are the caller's (it knows max_model_len). *out is zeroed first
 * and prompt_deinit is safe after any return. */
int prompt_build_chat(const tokenizer *t, const model_config *mc, const preprocessor_config *pc,
		      const chat_request *r, prompt *out, qerr *e);

/* pixel_values of image i (for backend_encode); out as img_preprocess_patches gives it. */
int prompt_image_patches(const prompt_image *im, const preprocessor_config *pc, img_patches *out,
			 qerr *e);

void prompt_deinit(prompt *p);

#endif
