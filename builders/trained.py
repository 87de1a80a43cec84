"""The trained tiny Phi checkpoint: the reference the quality figures and the quality gate are measured on.

The random-weight tiny checkpoint (``tiny.py``) predicts the evaluation text
about as well as a uniform guess over its 512 tokens, so what quantization
costs it is noise.  This one is the same ``Phi3ForCausalLM`` (the
phi3 style: hidden 256, intermediate 512, 2 layers, the tiny sentencepiece
tokenizer) trained on text phi-get ships: :func:`training_text`, the
tokenizer's corpus (``tiny.corpus_text``) plus sentences composed from a
small grammar of the same subject.  The evaluation text (``eval_text.py``)
is held out: no sentence or clause of it occurs in the training text
(:func:`training_text` refuses to return one that does).

The weights are **shipped**, not trained on demand: ``data/tiny-phi-trained
.safetensors``, bf16 (3.1 MB; Phi-3 and Phi-4 are published in bf16, so
the unquantized variants hold every bit of their source as they do for the
real models), recorded with their sha256 (:data:`WEIGHTS_SHA256`) and that of
the tokenizer they were trained for (:data:`TOKENIZER_SHA256`), both checked
every time the checkpoint is written.  Training is deterministic on one
machine (fixed seeds, one thread, ``torch.use_deterministic_algorithms``:
two runs give the same bytes), but floating-point kernels differ between
CPUs and torch builds, so a digest of weights trained on demand would hold
only where they were trained; shipping them makes every machine measure the
same model, and costs the test suite no training.  :func:`train` is the
code that made them (``python -m phi_get.builders.trained --train FILE``,
4 to 8 minutes on one core of a shared 2-core machine; two runs gave the same
bytes).

Imports torch, transformers and safetensors inside functions only.
"""

from __future__ import annotations

import json
import math
import random
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Final

from phi_get.manifests.artifact import sha256_file

from .errors import BuildError
from .eval_text import EVAL_TEXT
from .tiny import TinySpec, corpus_text, make_tiny_phi

__all__ = [
    "TOKENIZER_SHA256",
    "TRAINED_SPEC",
    "TRAINING",
    "WEIGHTS_SHA256",
    "make_trained_phi",
    "train",
    "training_text",
]

#: The tiny checkpoint the weights fit (its config, tokenizer and tensor names); the
#: random weights it would draw are replaced.  init_std 0.02 is Phi-3's initializer.
TRAINED_SPEC: Final = TinySpec(init_std=0.02)

#: The training run, recorded in phi-get-tiny.json: AdamW, linear warm-up then cosine decay.
TRAINING: Final = {"steps": 500, "batch": 16, "context": 128, "lr": 3e-3, "warmup": 50, "weight_decay": 0.1,
                   "grammar_sentences": 6000, "seed": 0}

WEIGHTS_FILE: Final = "data/tiny-phi-trained.safetensors"
#: sha256 of the shipped weights and of the tiny tokenizer.model they were trained with.
WEIGHTS_SHA256: Final = "62f5082101214e5a3c20bac20c80f9e7a91f5270448941d6106b32d3d4c05cae"
TOKENIZER_SHA256: Final = "2da7ce232e93425d35b031e04b2f2b1330240b388e9b47a7de3dc2bdef1d2711"


# -- the training text -------------------------------------------------------------------------------------------

_SUBJECTS = (
    "the package manager", "the registry", "the resolver", "the lockfile", "the builder", "the runtime",
    "the device", "a phone", "a small board", "an old laptop", "a graphics card", "the processor",
    "the publisher", "the manifest", "each artifact", "every variant", "the quantized model", "the small model",
    "the user", "the installer", "the cache", "the catalog", "a fleet of machines", "the server",
)
_PREDICATES = (
    "checks the digest of every file", "downloads the artifact that fits the device",
    "records the size and the sha256 of each file", "keeps a catalog of models and versions",
    "picks the variant with the best quality that fits in memory", "explains why it chose the artifact",
    "needs enough memory for the weights and the key value cache", "runs the model on the processor",
    "loads the weights into memory", "reads the manifest before it installs anything",
    "refuses a file whose digest does not match", "stores every artifact under the digest of its content",
    "installs the same bytes on every machine", "holds the model in sixteen bits",
    "runs a four bit model", "answers a short prompt", "measures the perplexity of a fixed text",
    "counts how often the quantized model predicts the same token", "writes the lockfile for each kind of device",
    "publishes the variants of a new version", "keeps the cache small enough for the memory",
    "chooses eight bit weights for a laptop", "reports its memory and its accelerators",
    "builds a GGUF file for llama.cpp", "builds an ONNX graph for onnxruntime", "converts the checkpoint",
    "verifies the signature of the index", "serves the index to every client",
)
_MODIFIERS = (
    "", "", "", " before it runs the model", " for every device", " with four bit weights",
    " in a few seconds", " on a phone", " from the registry", " without a graphics card",
    " for each version", " and explains its choice", " when the memory is small", " at every install",
)
_FACTS = (
    "four bit weights make the model eight times smaller", "eight bit weights keep more of the accuracy",
    "the cache grows with every token of context", "a yanked version is no longer chosen",
    "the lockfile names the exact artifact", "the digest proves the bytes are the same",
    "the memory must hold the weights and the cache", "sixteen bits keep almost every detail",
    "the quantized model loses a little accuracy", "the registry refuses a different file under the same version",
)


def _sentence(rng: random.Random) -> str:
    subject, predicate = rng.choice(_SUBJECTS), rng.choice(_PREDICATES)
    text = f"{subject} {predicate}{rng.choice(_MODIFIERS)}"
    roll = rng.random()
    if roll < 0.3:
        text += f", and {rng.choice(_SUBJECTS)} {rng.choice(_PREDICATES)}"
    elif roll < 0.5:
        text += f", because {rng.choice(_FACTS)}"
    elif roll < 0.6:
        text = f"{rng.choice(_FACTS)}, so {text}"
    return text[0].upper() + text[1:] + "."


def _held_out_clauses() -> list[str]:
    """The evaluation text's sentences and clauses, lower-case: none may occur in the training text."""
    clauses = []
    for sentence in EVAL_TEXT.split(". "):
        sentence = sentence.strip().rstrip(".").lower()
        clauses += [sentence, *(c.strip() for c in sentence.split(", and "))]
    return clauses


def training_text(seed: int = 0, sentences: int = TRAINING["grammar_sentences"]) -> str:
    """What the weights were trained on: the tokenizer's corpus and ``sentences`` grammar sentences."""
    rng = random.Random(seed)
    text = corpus_text(seed) + "\n".join(_sentence(rng) for _ in range(sentences)) + "\n"
    lower = text.lower()
    leaked = [c for c in _held_out_clauses() if c in lower]
    if leaked:  # a change to the corpus or the grammar must not train on the evaluation text
        raise BuildError(f"the training text contains the held-out evaluation text: {leaked[0]!r}")
    return text


# -- training ----------------------------------------------------------------------------------------------------


def _lr(step: int) -> float:
    warm = min(1.0, (step + 1) / TRAINING["warmup"])
    return TRAINING["lr"] * warm * 0.5 * (1.0 + math.cos(math.pi * step / TRAINING["steps"]))


def train(base: Path, log: Any = None) -> dict[str, Any]:
    """Train the tiny checkpoint at ``base`` (as ``make_tiny_phi(base, TRAINED_SPEC)`` writes it): bf16 tensors.

    Deterministic: one thread, deterministic algorithms, every random draw
    from generators seeded by ``TRAINING["seed"]``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(TRAINING["seed"])
    gen = torch.Generator().manual_seed(TRAINING["seed"])
    tok = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    ids = torch.tensor(tok(training_text(TRAINING["seed"]))["input_ids"])
    opt = torch.optim.AdamW(model.parameters(), lr=TRAINING["lr"], betas=(0.9, 0.95),
                            weight_decay=TRAINING["weight_decay"])
    model.train()
    ctx, steps = TRAINING["context"], TRAINING["steps"]
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step)
        starts = torch.randint(0, len(ids) - ctx - 1, (TRAINING["batch"],), generator=gen)
        batch = torch.stack([ids[s:s + ctx] for s in starts.tolist()])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(f"step {step}: loss {loss.item():.3f}")
    return {k: v.detach().to(torch.bfloat16).contiguous() for k, v in sorted(model.state_dict().items())}


# -- the checkpoint ----------------------------------------------------------------------------------------------


def _shipped_weights() -> Path:
    path = Path(str(resources.files("phi_get.builders").joinpath(WEIGHTS_FILE)))
    if not path.is_file():
        raise BuildError(f"the trained weights {WEIGHTS_FILE} are missing from this phi-get installation")
    if (digest := sha256_file(path)) != WEIGHTS_SHA256:
        raise BuildError(f"the trained weights {WEIGHTS_FILE} have sha256 {digest}, not the recorded "
                         f"{WEIGHTS_SHA256}: the file is damaged or was replaced")
    return path


def make_trained_phi(out: Path, *, force: bool = False, weights: Path | None = None) -> Path:
    """Write the trained tiny checkpoint to ``out`` (atomically, as ``make_tiny_phi``) and return it.

    ``weights``: a safetensors file from :func:`train` instead of the shipped
    one (the training command's own check); its digest is not checked.
    """
    from phi_get.manifests.atomic import replacing

    out = Path(out)
    if out.exists() and not force and any(out.iterdir()):
        from .errors import OutputExistsError

        raise OutputExistsError(f"{out} exists and is not empty; pass --force to replace it")
    weights = _shipped_weights() if weights is None else weights
    with replacing(out, folder=True) as tmp:
        make_tiny_phi(tmp, TRAINED_SPEC, force=True)
        _put_weights(tmp, weights)
    return out


def _put_weights(folder: Path, weights: Path) -> None:
    """Replace the random weights of a ``TRAINED_SPEC`` checkpoint with ``weights`` (bf16) and say so."""
    from safetensors.torch import load_file, save_file

    if (digest := sha256_file(folder / "tokenizer.model")) != TOKENIZER_SHA256:
        raise BuildError(f"this machine's tiny tokenizer (tokenizer.model sha256 {digest}) is not the one the "
                         f"trained weights were made for ({TOKENIZER_SHA256}): its sentencepiece trains differently")
    tensors = load_file(str(weights))
    model_path = folder / "model.safetensors"
    if set(tensors) != set(load_file(str(model_path))):
        raise BuildError(f"the trained weights {weights} do not have the tiny checkpoint's tensors")
    save_file(tensors, str(model_path), metadata={"format": "pt"})
    for name, update in (
            ("config.json", {"dtype": "bfloat16"}),  # the weights are bf16, as Phi-3's and Phi-4's published ones
            ("phi-get-tiny.json", {"generator": "phi-get tiny-phi --trained", "trained": TRAINING,
                                   "weights_sha256": sha256_file(weights)})):
        path = folder / name
        data = json.loads(path.read_text("utf-8")) | update
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    model_path.chmod(0o644)


def _main(argv: list[str]) -> int:
    """``python -m phi_get.builders.trained --train FILE``: train the weights again and print their digests."""
    import tempfile

    from safetensors.torch import save_file

    if len(argv) != 2 or argv[0] != "--train":
        print("usage: python -m phi_get.builders.trained --train FILE.safetensors", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        base = make_tiny_phi(Path(tmp) / "base", TRAINED_SPEC)
        tensors = train(base, log=lambda line: print(line, file=sys.stderr, flush=True))
        save_file(tensors, argv[1], metadata={"format": "pt"})
        print(f"weights sha256 {sha256_file(Path(argv[1]))}\ntokenizer sha256 {sha256_file(base / 'tokenizer.model')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
