"""Run an MLX artifact with mlx-lm: logits for given token ids, a greedy generation, the KV-cache dtype.

Usage: python mlx_check.py ARTIFACT IDS_JSON PROMPT_IDS_JSON MAX_TOKENS LOGITS_NPY
Prints one JSON object: {"text": ..., "tokens": n, "kv_dtype": ..., "mlx_lm": version, "masked_ids": n}.
Runs inside the MLX environment only; imports nothing of phi_get.

The generation picks only ids the tokenizer has: a config's vocabulary is
padded past its tokenizer's (Phi-3.5-mini 32064 rows for 32011 ids,
Phi-4-mini 200064 for 200029), and mlx-lm 0.32's streaming detokenizers
index a list of the tokenizer's ids, so a padding id (which random weights
pick; a trained model practically never does) raised ``IndexError: list
index out of range`` in ``add_token``.  The padding rows are
masked out of the generation only; the logits scored are the model's own.
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
    n_ids = len(tokenizer._tokenizer)  # the Hugging Face tokenizer TokenizerWrapper wraps
    rows = logits.shape[-1]
    processors = []
    if n_ids < rows:
        known = mx.arange(rows) < n_ids

        def only_known_ids(tokens, scores):
            return mx.where(known, scores, -mx.inf)

        processors.append(only_known_ids)
    text, tokens = "", 0
    for response in stream_generate(model, tokenizer, prompt=prompt, max_tokens=int(max_tokens),
                                    logits_processors=processors):
        text += response.text
        tokens += 1
    print(json.dumps({"text": text, "tokens": tokens, "kv_dtype": kv_dtype, "mlx_lm": metadata.version("mlx-lm"),
                      "masked_ids": max(0, rows - n_ids)}))


if __name__ == "__main__":
    main(sys.argv[1:])
