"""The peer engine for `shopgraph bench llm`: llama.cpp (llama-cpp-python, CPU, two
threads) on the same GGUF file and the same chat messages, greedy, streamed.

    python peer_llm.py MODEL_GGUF PROBES_JSON OUT_JSON

PROBES_JSON is a list of {name, messages, max_tokens}; OUT_JSON receives the load
time and, per probe, the time to the first token, the whole time and the tokens.
"""
import json
import os
import sys
import time

from llama_cpp import Llama


def main() -> None:
    model, probes_file, out_file = sys.argv[1:4]
    with open(probes_file, encoding="utf-8") as f:
        probes = json.load(f)
    started = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=4096, n_threads=os.cpu_count() or 2, verbose=False)
    load_ms = (time.perf_counter() - started) * 1e3
    timings = []
    for probe in probes:
        started = time.perf_counter()
        first = None
        text = ""
        tokens = 0
        stream = llm.create_chat_completion(
            messages=probe["messages"],
            max_tokens=probe["max_tokens"],
            temperature=0.0,
            top_k=1,
            stream=True,
        )
        for chunk in stream:
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                if first is None:
                    first = time.perf_counter()
                text += delta
                tokens += 1
        total = time.perf_counter()
        first = first or total
        timings.append(
            {
                "name": probe["name"],
                "ttft_ms": (first - started) * 1e3,
                "total_ms": (total - started) * 1e3,
                "completion_tokens": tokens,
                "text": text,
            }
        )
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump({"load_ms": load_ms, "timings": timings}, f)


if __name__ == "__main__":
    main()
