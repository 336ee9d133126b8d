"""Start ``ikllama serve`` as a subprocess, talk to it with the official ``openai`` client, stop it.

    python examples/server_client.py [--model GGUF] [--port 8080]

Streams one chat answer, asks for JSON with a schema, streams a tool call (its arguments arrive in
fragments), embeds two sentences, then prints the server's prefix-cache use.
Needs ``pip install "ikllama[server]" openai``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import httpx
import openai


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit("the server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "ikllama", "serve", "--port", str(args.port), "-np", "4", "--log-level", "warning"]
    if args.model:
        cmd += ["-m", args.model]
    base = f"http://127.0.0.1:{args.port}"
    with subprocess.Popen(cmd) as proc:
        try:
            wait_ready(base, proc)
            client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
            messages = [{"role": "user", "content": "Name three colours."}]
            stream = client.chat.completions.create(model="local", messages=messages, max_tokens=32,
                                                    temperature=0, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
            print()
            schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
            answer = client.chat.completions.create(
                model="local", max_tokens=40, temperature=0,
                messages=[{"role": "user", "content": "What is the capital of France? Reply in JSON."}],
                response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
            print("json:", json.loads(answer.choices[0].message.content))
            weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
            call = {"name": None, "arguments": ""}
            for chunk in client.chat.completions.create(
                    model="local", max_tokens=64, temperature=0, tools=[weather], tool_choice="required", stream=True,
                    messages=[{"role": "user", "content": "What is the weather in Paris?"}]):
                for fragment in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    call["name"] = call["name"] or fragment.function.name
                    call["arguments"] += fragment.function.arguments or ""
            print("tool call:", call["name"], json.loads(call["arguments"]))
            vectors = client.embeddings.create(model="local", input=["a cat sleeps", "a kitten naps"]).data
            a, b = vectors[0].embedding, vectors[1].embedding
            print(f"embedding similarity: {sum(x * y for x, y in zip(a, b)):.3f}")
            again = client.chat.completions.create(model="local", messages=messages, max_tokens=8, temperature=0)
            print("cached prompt tokens on a repeat:", again.usage.prompt_tokens_details.cached_tokens,
                  "of", again.usage.prompt_tokens)
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
