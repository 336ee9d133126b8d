// ik allocates its adaptive-p sampler state with `new` and exports neither a destructor nor a copy,
// so the only correct way to free or fork it is C++ that sees the struct (src/llama-sampling.h).
#include "llama-sampling.h"

extern "C" void ikl_adaptive_p_free(llama_sampler_adaptive_p * p) {
    delete p;
}

extern "C" llama_sampler_adaptive_p * ikl_adaptive_p_clone(const llama_sampler_adaptive_p * p) {
    return p ? new llama_sampler_adaptive_p(*p) : nullptr;
}
