"""``Llama.create_chat_completion``: pick the formatter or handler, complete, reshape into chat dicts.

With tools (and no logprobs) the call goes to :meth:`ikllama.LLM.create_chat_completion`, which
renders them with the model's template and parses the calls; otherwise the prompt is rendered
(the model's template, or ``chat_format``'s) and completed by ``Llama.create_completion``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..llm import _grammar_for
from ._completion import native_seed

if TYPE_CHECKING:
    from .llama import Llama
    from .llama_chat_format import ChatFormatterResponse

_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "typical_p", "seed", "max_tokens", "presence_penalty",
             "frequency_penalty", "repeat_penalty", "tfs_z", "mirostat_mode", "mirostat_tau", "mirostat_eta",
             "logits_processor", "logit_bias", "model")
_LLM_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "typical_p", "seed", "max_tokens", "presence_penalty",
                 "frequency_penalty", "repeat_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta", "logit_bias")


def create_chat_completion(llama: Llama, messages: list[dict[str, Any]], functions: Any = None,
                           function_call: Any = None, tools: Any = None, tool_choice: Any = None,
                           temperature: float = 0.2, top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05,
                           typical_p: float = 1.0, stream: bool = False, stop: Any = None, seed: int | None = None,
                           response_format: Any = None, max_tokens: int | None = None,
                           presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                           repeat_penalty: float = 1.0, tfs_z: float = 1.0, mirostat_mode: int = 0,
                           mirostat_tau: float = 5.0, mirostat_eta: float = 0.1, model: str | None = None,
                           logits_processor: Any = None, grammar: Any = None, logit_bias: Any = None,
                           logprobs: bool | None = None, top_logprobs: int | None = None) -> Any:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    if functions and not tools:  # the legacy OpenAI form
        tools = [{"type": "function", "function": f} for f in functions]
        if isinstance(function_call, dict):
            tool_choice = {"type": "function", "function": function_call}
        elif function_call is not None:
            tool_choice = function_call
    kwargs = dict(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, typical_p=typical_p,
                  stream=stream, stop=stop, seed=seed, response_format=response_format, max_tokens=max_tokens,
                  presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                  repeat_penalty=repeat_penalty, tfs_z=tfs_z, mirostat_mode=mirostat_mode,
                  mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, model=model,
                  logits_processor=logits_processor, grammar=grammar, logit_bias=logit_bias, logprobs=logprobs,
                  top_logprobs=top_logprobs, tools=tools, tool_choice=tool_choice)
    handler = llama.chat_handler
    if handler is None and llama.chat_format is not None:
        from .llama_chat_format import get_chat_completion_handler

        handler = get_chat_completion_handler(llama.chat_format)
    if handler is not None:
        return handler(llama=llama, messages=list(messages), **kwargs)
    llama._need_ctx()
    if tools and not logprobs and logits_processor is None:
        return _via_llm(llama, list(messages), kwargs)
    from .llama_chat_format import ChatFormatterResponse

    formatter = llama._llm.formatter
    prompt = formatter.format(list(messages), add_generation_prompt=True, tools=list(tools) if tools else None)
    rendered = ChatFormatterResponse(prompt=prompt, stop=list(formatter.stop_strings) or None,
                                     added_special=bool(formatter.bos_token and prompt.startswith(formatter.bos_token)))
    return complete_formatted(llama, rendered, **kwargs)


def _via_llm(llama: Llama, messages: list[dict[str, Any]], kw: dict[str, Any]) -> Any:
    g = kw["grammar"]
    args = {k: kw[k] for k in _LLM_SAMPLING}
    args["seed"] = native_seed(llama._next_seed(kw["seed"]))
    out = llama._llm.create_chat_completion(messages, tools=kw["tools"], tool_choice=kw["tool_choice"],
                                            response_format=kw["response_format"], stop=kw["stop"],
                                            stream=kw["stream"], grammar=getattr(g, "_grammar", g), **args)
    name = kw["model"] or llama.model_path
    if not kw["stream"]:
        out["model"] = name
        return out
    return ({**chunk, "model": name} for chunk in out)


def complete_formatted(llama: Llama, rendered: ChatFormatterResponse, **kw: Any) -> Any:
    """Complete a rendered chat prompt and return chat-shaped output (used by handlers too)."""
    llama._need_ctx()
    stops = [kw["stop"]] if isinstance(kw.get("stop"), str) else list(kw.get("stop") or [])
    extra = rendered.stop
    stops += [extra] if isinstance(extra, str) else list(extra or [])
    g = kw.get("grammar")
    rf = kw.get("response_format")
    if rf is not None:
        g = _grammar_for(rf, getattr(g, "_grammar", g))
    bos = llama.token_bos()
    bos_text = llama._model.token_to_piece(bos, True).decode("utf-8", "replace") if bos >= 0 else ""
    add_bos = llama._model.add_bos and not rendered.added_special and not (bos_text and
                                                                          rendered.prompt.startswith(bos_text))
    tokens = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=add_bos, special=True)
    criteria = rendered.stopping_criteria
    if kw.get("stopping_criteria") is not None:
        criteria = kw["stopping_criteria"] if criteria is None else _both(criteria, kw["stopping_criteria"])
    args = {k: kw[k] for k in _SAMPLING if k in kw}
    top = kw.get("top_logprobs")
    completion = llama.create_completion(tokens, stop=stops, stream=bool(kw.get("stream")), grammar=g,
                                         stopping_criteria=criteria,
                                         logprobs=(top or 0) if kw.get("logprobs") else None, **args)
    if kw.get("stream"):
        return _chat_chunks(completion)
    return _chat_result(completion)


def _both(a: Any, b: Any) -> Any:
    return lambda ids, logits: bool(a(ids, logits) or b(ids, logits))


def _chat_logprobs(lp: dict[str, Any] | None) -> dict[str, Any] | None:
    if lp is None:
        return None
    content = []
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        content.append({"token": token, "bytes": None, "logprob": logprob,
                        "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in (top or {}).items()]})
    return {"content": content, "refusal": None}


def _chat_result(completion: dict[str, Any]) -> dict[str, Any]:
    choice = completion["choices"][0]
    return {"id": "chat" + completion["id"], "object": "chat.completion", "created": completion["created"],
            "model": completion["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["text"]},
                         "logprobs": _chat_logprobs(choice["logprobs"]), "finish_reason": choice["finish_reason"]}],
            "usage": completion["usage"]}


def _chat_chunks(chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    first = True
    for chunk in chunks:
        head = {"id": "chat" + chunk["id"], "model": chunk["model"], "created": chunk["created"],
                "object": "chat.completion.chunk"}
        if first:
            yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None,
                                        "finish_reason": None}]}
            first = False
        choice = chunk["choices"][0]
        if choice["finish_reason"] is None and not choice["text"]:
            continue
        delta = {"content": choice["text"]} if choice["finish_reason"] is None else {}
        yield {**head, "choices": [{"index": 0, "delta": delta, "logprobs": _chat_logprobs(choice["logprobs"]),
                                    "finish_reason": choice["finish_reason"]}]}
