"""Run an OpenVINO IR artifact: logits through OpenVINO's runtime, a greedy generation through openvino-genai.

Usage: python openvino_check.py ARTIFACT IDS_JSON PROMPT_IDS_JSON MAX_TOKENS LOGITS_NPY
Prints one JSON object: {"text": ..., "tokens": n, "kv_dtype": ..., "openvino_genai": version}.
Runs inside the OpenVINO environment only; imports nothing of phi_get.
"""

import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai as ovg


def logits_of(folder, ids):
    core = ov.Core()
    compiled = core.compile_model(str(Path(folder) / "openvino_model.xml"), "CPU")
    n = len(ids)
    feed = {
        "input_ids": np.array([ids], dtype=np.int64),
        "attention_mask": np.ones((1, n), dtype=np.int64),
        "position_ids": np.arange(n, dtype=np.int64)[None, :],
        "beam_idx": np.zeros((1,), dtype=np.int32),
    }
    names = {name for port in compiled.inputs for name in port.get_names()}
    request = compiled.create_infer_request()
    request.reset_state()
    request.infer({k: v for k, v in feed.items() if k in names})
    logits = np.array(request.get_tensor("logits").data[0], dtype=np.float32)
    kv = compiled.get_property("KV_CACHE_PRECISION").get_type_name()
    return logits, kv


def main(argv):
    folder, ids_json, prompt_json, max_tokens, out = argv
    logits, kv = logits_of(folder, json.loads(ids_json))
    np.save(out, logits)
    pipe = ovg.LLMPipeline(folder, "CPU")
    config = ovg.GenerationConfig()
    config.max_new_tokens = int(max_tokens)
    config.do_sample = False
    prompt = np.array([json.loads(prompt_json)], dtype=np.int64)
    result = pipe.generate(ov.Tensor(prompt), config)
    tokens = list(result.tokens[0])
    text = pipe.get_tokenizer().decode(tokens)
    print(json.dumps({"text": text, "tokens": len(tokens), "kv_dtype": kv.lower(),
                      "openvino_genai": metadata.version("openvino-genai")}))


if __name__ == "__main__":
    main(sys.argv[1:])
