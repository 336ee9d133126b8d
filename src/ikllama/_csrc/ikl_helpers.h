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

#endif
