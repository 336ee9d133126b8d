/* ikllama's C helpers, compiled into the cffi extension next to the generated binding code. */
#ifndef IKL_HELPERS_H
#define IKL_HELPERS_H

#include <stdbool.h>
#include <stdint.h>
#include "llama.h"

bool ikl_abort_flag_cb(void * flag);
void ikl_flag_set(int * flag, int value);

/* Index of the largest of n logits (first one on ties, as llama_sample_token_greedy). */
int32_t ikl_argmax(const float * logits, int32_t n);

/* Defined in ik's src/llama.cpp by vendor/patches/0014 (kept out of llama.h, which every ik source includes):
   the backend buffers holding a model's weights / a context's KV cache. Returns the number of buffers; for
   0 <= i < that number sets *name (e.g. "CPU", "RPC0[ip:port]"; valid while the owner lives) and *size. */
int32_t llama_model_buffer_info(const struct llama_model * model, int32_t i, const char ** name, size_t * size);
int32_t llama_kv_cache_buffer_info(const struct llama_context * ctx, int32_t i, const char ** name, size_t * size);

#endif
