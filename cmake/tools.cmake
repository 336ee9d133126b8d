# ik's own command-line tools, built from the same tree and flags as the library.
set(IKLLAMA_TOOLS_OUTPUT_DIR "${CMAKE_BINARY_DIR}/bin" CACHE PATH "where scripts/build_tools.sh puts ik's tools")
set(IKLLAMA_TOOL_DIRS llama-bench batched-bench perplexity main simple quantize rpc mtmd)
set(IKLLAMA_TOOL_TARGETS llama-bench llama-batched-bench llama-perplexity llama-cli llama-simple llama-quantize rpc-server
    llama-server)
foreach(_d ${IKLLAMA_TOOL_DIRS})
    add_subdirectory("${IK_DIR}/examples/${_d}" "tools/${_d}" EXCLUDE_FROM_ALL)
endforeach()
# llama-server (for scripts/bench_server.py): it embeds its web UI with ${PROJECT_SOURCE_DIR}/scripts/xxd.cmake
# and includes src/llama-impl.h relative to the source root, both of which mean ik's tree here, not ours.
set(_ikllama_project_dir "${PROJECT_SOURCE_DIR}")
set(PROJECT_SOURCE_DIR "${IK_DIR}")
add_subdirectory("${IK_DIR}/examples/server" "tools/server" EXCLUDE_FROM_ALL)
set(PROJECT_SOURCE_DIR "${_ikllama_project_dir}")
target_include_directories(llama-server PRIVATE "${IK_DIR}")
# The binaries go to one directory and find libllama/libggml where this tree built them (absolute build RPATH),
# so the package's own tree can serve both the wheel and the tools without moving its libraries.
set_target_properties(${IKLLAMA_TOOL_TARGETS} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${IKLLAMA_TOOLS_OUTPUT_DIR}")
add_custom_target(ikllama_tools DEPENDS ${IKLLAMA_TOOL_TARGETS})
# What the test suite runs (tests/conftest.py's ik_tools): everything but llama-server and its mtmd/clip code.
set(IKLLAMA_TEST_TOOL_TARGETS ${IKLLAMA_TOOL_TARGETS})
list(REMOVE_ITEM IKLLAMA_TEST_TOOL_TARGETS llama-server)
add_custom_target(ikllama_test_tools DEPENDS ${IKLLAMA_TEST_TOOL_TARGETS})
