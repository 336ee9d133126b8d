/* Python callbacks reachable from C (cffi extern "Python"); see ikllama/_callbacks.py. Exceptions never
 * cross into C: each handler catches, stores and returns a safe value. */
extern "Python" void ikl_py_log(enum ggml_log_level level, const char * text, void * user_data);
extern "Python" bool ikl_py_progress(float progress, void * user_data);
