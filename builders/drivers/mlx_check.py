"""Run an MLX artifact with mlx-lm: logits for given token ids, a greedy generation, the KV-cache dtype.

Usage: python mlx_check.py ARTIFACT IDS_JSON PROMPT_IDS_JSON MAX_TOKENS LOGITS_NPY
Prints one JSON object: {"text": ..., "tokens": n, "kv_dtype": ..., "mlx_lm": version}.
Runs inside the MLX environment only; imports nothing of phi_get.
"""

import json
import sys
from importlib import metadata

import mlx.core as mx
import numpy as np
from mlx_lm import load, stream_generate
from mlx_lm.models.cache import make_prompt_cache


def main(argv):
    folder, ids_json, prompt_json, max_tokens, out = argv
    model, tokenizer = load(folder)
    ids = json.loads(ids_json)
    logits = model(mx.array([ids]))[0].astype(mx.float32)
    np.save(out, np.array(logits))
    prompt = json.loads(prompt_json)
    cache = make_prompt_cache(model)
    model(mx.array([prompt]), cache=cache)
    kv_dtype = str(cache[0].state[0].dtype).removeprefix("mlx.core.")
    text, tokens = "", 0
    for response in stream_generate(model, tokenizer, prompt=prompt, max_tokens=int(max_tokens)):
        text += response.text
        tokens += 1
    print(json.dumps({"text": text, "tokens": tokens, "kv_dtype": kv_dtype, "mlx_lm": metadata.version("mlx-lm")}))


if __name__ == "__main__":
    main(sys.argv[1:])
