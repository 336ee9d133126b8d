# ik's own command-line tools, built from the same tree and flags as the library.
set(IKLLAMA_TOOL_DIRS llama-bench batched-bench perplexity main simple quantize rpc)
set(IKLLAMA_TOOL_TARGETS llama-bench llama-batched-bench llama-perplexity llama-cli llama-simple llama-quantize rpc-server)
foreach(_d ${IKLLAMA_TOOL_DIRS})
    add_subdirectory("${IK_DIR}/examples/${_d}" "tools/${_d}" EXCLUDE_FROM_ALL)
endforeach()
add_custom_target(ikllama_tools DEPENDS ${IKLLAMA_TOOL_TARGETS})
