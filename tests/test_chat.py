"""Chat formatting: real GGUF templates, ik's built-in formats, the Jinja sandbox, thinking, families."""

from __future__ import annotations

import json
import logging

import pytest

from ikllama import TemplateError
from ikllama.chat import DynamicFormatter, Formatter, Message, Role, builtin_templates, split_thinking

CONVERSATION = [
    Message(Role.SYSTEM, "You are terse."),
    Message(Role.USER, "Hi there"),
    Message(Role.ASSISTANT, "Hello."),
    Message(Role.USER, "Capital of France?"),
]

CHATML_EXPECTED = (
    "<|im_start|>system\nYou are terse.<|im_end|>\n"
    "<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\nHello.<|im_end|>\n"
    "<|im_start|>user\nCapital of France?<|im_end|>\n"
    "<|im_start|>assistant\n"
)

# Gemma has no system turn: the system prompt opens the first user turn; "assistant" is "model".
GEMMA_EXPECTED = (
    "<start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n"
    "<start_of_turn>model\nHello.<end_of_turn>\n"
    "<start_of_turn>user\nCapital of France?<end_of_turn>\n"
    "<start_of_turn>model\n"
)

# A Gemma-3 style template written for these tests (the Gemma GGUF under test carries none).
GEMMA3_JINJA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim
   + '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"""


def ik_render(name: str, messages, add_ass: bool = True) -> str:
    """ik's built-in format, straight through llama_chat_apply_template."""
    from ikllama.chat import _apply_builtin

    out = _apply_builtin(name, messages, add_ass)
    assert out is not None
    return out


# -- real models ----------------------------------------------------------------------------------
def test_smollm_gguf_template_renders_chatml_like_ik(smollm):
    fmt = Formatter.for_model(smollm)
    assert fmt.family == "chatml" and fmt.template == smollm.chat_template()
    assert "{%" in fmt.template  # rendered by Jinja, not by ik
    text = fmt.format(CONVERSATION)
    assert text == CHATML_EXPECTED
    assert text == ik_render("chatml", CONVERSATION)
    assert fmt.format(CONVERSATION, add_generation_prompt=False) == CHATML_EXPECTED.removesuffix(
        "<|im_start|>assistant\n")
    # The SmolLM2 template adds its own system prompt when there is none.
    assert fmt.format([Message(Role.USER, "x")]).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n")
    assert fmt.stop_strings == ("<|im_end|>",)
    assert smollm.tokenize("<|im_end|>", add_special=False, parse_special=True) == [smollm.token_eos]


def test_gemma_without_gguf_template_uses_ik_gemma_format(gemma):
    assert gemma.chat_template() is None
    fmt = Formatter.for_model(gemma)
    assert fmt.family == "gemma" and fmt.template == "gemma"
    assert fmt.format(CONVERSATION) == GEMMA_EXPECTED
    assert fmt.format(CONVERSATION) == ik_render("gemma", CONVERSATION)
    assert fmt.stop_strings == ("<end_of_turn>",)
    assert fmt.bos_token == "<bos>"
    assert gemma.is_eog(gemma.tokenize("<end_of_turn>", add_special=False, parse_special=True)[0])


def test_gemma3_jinja_template_agrees_with_ik(gemma):
    fmt = Formatter.for_model(gemma, template=GEMMA3_JINJA)
    assert fmt.family == "gemma" and "jinja" in repr(fmt)
    text = fmt.format(CONVERSATION)
    assert text == "<bos>" + GEMMA_EXPECTED
    assert text.removeprefix("<bos>") == ik_render("gemma", CONVERSATION)
    assert text.removeprefix("<bos>") == ik_render(GEMMA3_JINJA, CONVERSATION)  # ik detects it too
    with pytest.raises(TemplateError, match="roles must alternate"):
        fmt.format([Message(Role.USER, "a"), Message(Role.USER, "b")])


def test_dynamic_formatter_picks_family_of_both_models(smollm, gemma):
    assert DynamicFormatter.family_of(smollm) == "chatml"
    assert DynamicFormatter.family_of(gemma) == "gemma"
    assert DynamicFormatter.for_model(smollm).format(CONVERSATION) == CHATML_EXPECTED
    assert DynamicFormatter.for_model(gemma).format(CONVERSATION) == GEMMA_EXPECTED


def test_dynamic_formatter_registered_factory_wins(gemma):
    made = []

    def factory(model):
        made.append(model)
        return Formatter.for_model(model, template=GEMMA3_JINJA)

    previous = DynamicFormatter.register("gemma", factory)
    try:
        assert DynamicFormatter.for_model(gemma).format(CONVERSATION) == "<bos>" + GEMMA_EXPECTED
        assert made == [gemma]
    finally:
        DynamicFormatter.register("gemma", previous)
    assert DynamicFormatter.for_model(gemma).format(CONVERSATION) == GEMMA_EXPECTED
    with pytest.raises(ValueError):
        DynamicFormatter.register("", factory)


@pytest.mark.parametrize("template, family", [
    ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}", "chatml"),
    ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}", "qwen"),
    ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
     "{{ m.content }}<|eot_id|>{% endfor %}", "llama3"),
    ("{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}", "gemma"),
    ("{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}", "mistral"),
    ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}<|assistant|>\n", "phi3"),
    ("{% for m in messages %}<|user|>\n{{ m.content }}</s>\n<|assistant|>\n{% endfor %}", "zephyr"),
    ("{% for m in messages %}<｜User｜>{{ m.content }}<｜Assistant｜>{% endfor %}", "deepseek"),
    ("{% for m in messages %}<|start|>{{ m.role }}<|channel|>final<|message|>{{ m.content }}<|end|>"
     "{% endfor %}", "gpt-oss"),
    ("{% for m in messages %}{{ m.content }}{% endfor %}", None),
])
def test_dynamic_formatter_detects_template_families(template, family):
    assert DynamicFormatter.detect(template) == family
    fmt = DynamicFormatter.for_template(template)
    assert fmt.family == family
    assert "hello" in fmt.format([Message(Role.USER, "hello")])


def test_family_from_architecture_and_builtin_names():
    assert DynamicFormatter.detect(None, "gemma3") == "gemma"
    assert DynamicFormatter.detect(None, "qwen3") == "qwen"
    assert DynamicFormatter.detect(None, "no-such-arch") is None
    assert DynamicFormatter.detect("mistral-v7") == "mistral"
    assert {"chatml", "gemma", "llama3", "phi3", "zephyr", "gpt-oss"} <= set(builtin_templates())
    assert Formatter("llama3").stop_strings == ("<|eot_id|>", "<|eom_id|>")
    assert Formatter("gemma").thinking_tags == ("<think>", "</think>")
    assert Formatter("gpt-oss").thinking_tags == ("<|channel|>analysis<|message|>", "<|end|>")
    assert Formatter("llama3").format([Message(Role.USER, "hi")]) == (
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


# -- roles and messages ---------------------------------------------------------------------------
def test_roles():
    assert [str(r) for r in (Role.SYSTEM, Role.USER, Role.ASSISTANT)] == ["system", "user", "assistant"]
    tool = Role.tool("get_weather")
    assert str(tool) == "tool" and tool.name == "get_weather" and tool == Role("tool", "get_weather")
    for bad in ("", None, 3):
        with pytest.raises(ValueError):
            Role.tool(bad)
    with pytest.raises(ValueError, match="role must be one of"):
        Role("wizard")
    with pytest.raises(ValueError, match="message content"):
        Message(Role.USER, None)
    assert Message("user", "x").role == Role.USER


def test_tool_role_renders_in_chatml_and_with_its_name(smollm):
    result = Message(Role.tool("get_weather"), '{"temp": 21}', tool_call_id="call_1")
    text = Formatter.for_model(smollm).format([Message(Role.USER, "Weather?"), result], add_generation_prompt=False)
    assert text.endswith('<|im_start|>tool\n{"temp": 21}<|im_end|>\n')
    named = Formatter("{% for m in messages %}[{{ m.role }}:{{ m.name }}:{{ m.tool_call_id }}]{{ m.content }}"
                      "{% endfor %}")
    assert named.format([result], add_generation_prompt=False) == '[tool:get_weather:call_1]{"temp": 21}'


def test_openai_round_trip():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    dicts = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "ann"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "1", "name": "f", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "ok", "reasoning_content": "because"},
    ]
    msgs = [Message.from_openai(d) for d in dicts]
    assert msgs[1].content == "ab" and msgs[1].role == Role("user", "ann")
    assert msgs[2].content == "" and msgs[2].tool_calls == [call]
    assert msgs[3].role == Role.tool("f") and msgs[3].tool_call_id == "call_1"
    assert msgs[4].thinking == "because"
    assert Message.from_openai({"role": "developer", "content": "d"}).role == Role.SYSTEM
    assert [m.to_openai() for m in msgs] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "ab", "name": "ann"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "1", "name": "f", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "ok", "reasoning_content": "because"},
    ]
    assert all(Message.from_openai(m.to_openai()) == m for m in msgs)
    # A Formatter takes the dicts as they are; templates see tool-call arguments as objects.
    fmt = Formatter("{% for m in messages %}{% for c in m.tool_calls or [] %}{{ c.function.arguments.x }}"
                    "{{ c.function.arguments | tojson }}{% endfor %}{% endfor %}")
    assert fmt.format(dicts, add_generation_prompt=False) == '1{"x": 1}'


@pytest.mark.parametrize("bad, field", [
    ({"content": "x"}, "'role'"),
    ({"role": "robot", "content": "x"}, "'role'"),
    ({"role": "user", "content": 5}, "'content'"),
    ({"role": "user"}, "'content'"),
    ({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, r"'content\[0\]'"),
    ({"role": "user", "content": "x", "name": ""}, "'name'"),
    ({"role": "assistant", "content": "x", "tool_calls": {"id": 1}}, "'tool_calls'"),
    ({"role": "assistant", "content": "x", "tool_calls": ["f"]}, r"'tool_calls\[0\]'"),
    ({"role": "tool", "content": "x", "tool_call_id": 7}, "'tool_call_id'"),
    ({"role": "assistant", "content": "x", "reasoning_content": ["r"]}, "'reasoning_content'"),
])
def test_from_openai_names_the_bad_field(bad, field):
    with pytest.raises(ValueError, match=field):
        Message.from_openai(bad)
    with pytest.raises(ValueError):
        Message.from_openai(["role", "user"])


# -- delta ----------------------------------------------------------------------------------------
def test_delta_is_the_suffix_of_the_full_render(smollm, gemma):
    for fmt in (Formatter.for_model(smollm), Formatter.for_model(gemma),
                Formatter.for_model(gemma, template=GEMMA3_JINJA)):
        for cut in range(len(CONVERSATION)):
            before, new = CONVERSATION[:cut], CONVERSATION[cut:]
            delta = fmt.delta(before, new)
            full = fmt.format(CONVERSATION)
            assert delta and full.endswith(delta)
            assert fmt.format(before, add_generation_prompt=False) + delta == full
        assert fmt.delta(CONVERSATION, []) == fmt.format(CONVERSATION)[len(fmt.format(CONVERSATION, False)):]
    assert Formatter.for_model(smollm).delta(CONVERSATION[:2], CONVERSATION[2:]) == (
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_delta_refuses_a_template_that_rewrites_history():
    # Like Qwen3: only the last assistant turn keeps its thinking.
    fmt = Formatter("{% for m in messages %}<|im_start|>{{ m.role }}\n"
                    "{% if loop.last and m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}"
                    "{{ m.content }}<|im_end|>\n{% endfor %}")
    answer = Message(Role.ASSISTANT, "4", thinking="2+2")
    assert "<think>2+2</think>4" in fmt.format([Message(Role.USER, "2+2?"), answer])
    with pytest.raises(ValueError, match="re-render"):
        fmt.delta([Message(Role.USER, "2+2?"), answer], [Message(Role.USER, "and 3+3?")])


# -- tools and variables --------------------------------------------------------------------------
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Température actuelle <°C> & vent",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_tools_render_as_json_keeping_non_ascii():
    fmt = Formatter(TOOLS_TEMPLATE)
    text = fmt.format([Message(Role.USER, "Paris?")], tools=[WEATHER_TOOL])
    assert text == (f"<|im_start|>system\nTools:\n{json.dumps(WEATHER_TOOL, ensure_ascii=False)}\n<|im_end|>\n"
                    "<|im_start|>user\nParis?<|im_end|>\n<|im_start|>assistant\n")
    assert "Température actuelle <°C> & vent" in text
    assert fmt.format([Message(Role.USER, "Paris?")]) == "<|im_start|>user\nParis?<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(TemplateError, match="tools"):
        Formatter("gemma").format([Message(Role.USER, "x")], tools=[WEATHER_TOOL])


def test_template_variables_and_globals():
    fmt = Formatter("{{ bos_token }}{{ greeting }} {{ strftime_now('%Y') | length }}{{ eos_token }}",
                    bos_token="<s>", eos_token="</s>")
    assert fmt.format([], greeting="hey") == "<s>hey 4</s>"
    assert fmt.format([], greeting="hey", bos_token="") == "hey 4</s>"
    with pytest.raises(TemplateError, match="no thanks"):
        Formatter("{{ raise_exception('no thanks') }}<|im_start|>").format([])


# -- errors and fallback --------------------------------------------------------------------------
def test_syntax_error_is_a_template_error():
    with pytest.raises(TemplateError, match="does not compile"):
        Formatter("{% for m in messages %}{{ m.content }")
    with pytest.raises(TemplateError, match="failed"):
        Formatter("{{ messages[0].content.upper() }}").format([])
    with pytest.raises(ValueError):
        Formatter("")


def test_broken_template_of_a_known_format_falls_back_to_ik(caplog):
    broken = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }<|im_end|>\n"
    with caplog.at_level(logging.WARNING, logger="ikllama"):
        fmt = Formatter(broken)
        assert fmt.format(CONVERSATION) == CHATML_EXPECTED
    assert "does not compile" in caplog.text
    failing = "{{ messages[5].content.upper() }}<|im_start|>"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ikllama"):
        assert Formatter(failing).format(CONVERSATION) == CHATML_EXPECTED
    assert "using ik's built-in format" in caplog.text


# -- the sandbox (CVE-2024-34359) -----------------------------------------------------------------
SSTI_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ joiner.__init__.__globals__['os'].system('touch MARKER') }}",
    "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "{{ namespace.__init__.__globals__['__builtins__']['__import__']('os').system('touch MARKER') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch MARKER') }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{% if c.__name__ == 'catch_warnings' %}"
    "{{ c()._module.__builtins__['__import__']('os').system('touch MARKER') }}{% endif %}{% endfor %}",
    "{{ raise_exception.__globals__['os'].system('touch MARKER') }}",
    "{{ strftime_now.__globals__['__builtins__']['open']('MARKER', 'w').write('x') }}",
    "{{ '{0.__class__.__mro__[1].__subclasses__}'.format('') }}",
    "{{ messages.append({'role': 'system', 'content': 'x'}) }}{{ messages[0].update(role='system') }}",
    "{{ messages[0].content.__class__.__base__.__subclasses__() }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('touch MARKER').read() }}",
]


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_template_injection_never_executes(payload, tmp_path):
    marker = tmp_path / "pwned"
    # Wrapped in chatml markers: ik knows that format, yet a hostile template must not be rendered around.
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" + \
        payload.replace("MARKER", str(marker))
    try:
        text = Formatter(template).format([Message(Role.USER, "hi")])
    except TemplateError as exc:
        assert "unsafe" in str(exc) or "failed" in str(exc)
    else:  # rendered inertly: nothing of Python's internals leaks into the prompt
        assert "class" not in text and "function" not in text and "module" not in text
    assert not marker.exists()


def test_security_errors_are_reported_not_rendered_around():
    template = "<|im_start|>{{ cycler.__init__.__globals__ }}"
    with pytest.raises(TemplateError, match="unsafe"):
        Formatter(template).format([Message(Role.USER, "hi")])


# -- thinking -------------------------------------------------------------------------------------
QWEN3_LIKE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")


@pytest.mark.parametrize("text, expected", [
    ("<think>\nLet me add.\n</think>\n\nIt is 4.", ("Let me add.", "It is 4.")),
    ("<think>still going", ("still going", "")),
    ("<think></think>Just this.", ("", "Just this.")),
    ("Plain answer.", (None, "Plain answer.")),
    ("Reasoned here.</think>Answer.", ("Reasoned here.", "Answer.")),
    ("\n<think>a</think>b", ("a", "b")),
])
def test_split_think_tags(text, expected):
    assert split_thinking(text, "deepseek") == expected
    assert split_thinking(text) == expected


def test_split_thinking_when_the_prompt_opens_it(smollm):
    fmt = Formatter(QWEN3_LIKE)
    assert fmt.family == "qwen" and fmt.opens_thinking
    assert fmt.format([Message(Role.USER, "2+2?")]).endswith("<|im_start|>assistant\n<think>\n")
    assert split_thinking("Adding two and two.", fmt) == ("Adding two and two.", "")
    assert split_thinking("Adding.\n</think>\n\n4", fmt) == ("Adding.", "4")
    plain = Formatter.for_model(smollm)
    assert not plain.opens_thinking
    assert split_thinking("Adding two and two.", plain) == (None, "Adding two and two.")


def test_split_gpt_oss_channels():
    fmt = Formatter("gpt-oss")
    assert fmt.family == "gpt-oss" and fmt.stop_strings == ("<|return|>", "<|call|>")
    done = ("<|channel|>analysis<|message|>User asks 2+2. Easy.<|end|>"
            "<|start|>assistant<|channel|>final<|message|>4<|return|>")
    assert split_thinking(done, fmt) == ("User asks 2+2. Easy.", "4")
    assert split_thinking(done, "gpt-oss") == ("User asks 2+2. Easy.", "4")
    assert split_thinking("<|channel|>analysis<|message|>Thinking so f", fmt) == ("Thinking so f", "")
    assert split_thinking("<|channel|>final<|message|>Hi!", fmt) == (None, "Hi!")
    assert split_thinking("no channels", fmt) == (None, "no channels")
