"""The trained tiny checkpoint is the quality reference, and the gate judges by its figures.

Attacks and faults covered: shipped weights that were damaged or replaced
(digest), a tokenizer that is not the one the weights were trained for, a
training text that would contain the evaluation text, a training run that
is not reproducible, a checkpoint that predicts the text no better than a
guess, quantization loss that is not ordered as on real models (measured,
not assumed), and an artifact much worse than its label (a Q2_K GGUF
posing as q4_k_m) that the gate must refuse while every honest variant
passes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from phi_get.builders import trained
from phi_get.builders.base import Outcome
from phi_get.builders.errors import BuildError
from phi_get.builders.evaluate import KL_LIMIT, quality_gate
from phi_get.builders.tiny import EVAL_TEXT
from phi_get.manifests.artifact import find_artifact_folders, load_artifact_folder
from phi_get.manifests.manifest import Precision
from phi_get.manifests.recipe import load_recipe

pytest.importorskip("torch")

RECIPE = load_recipe("tiny-phi")
#: The GGUF ladder, built once from the trained checkpoint (about 10 s).
LADDER = "gguf-f16,gguf-q8_0,gguf-q5_k_m,gguf-q4_k_m,gguf-q4_0"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# -- the checkpoint --------------------------------------------------------------------------------------------


def test_trained_checkpoint_predicts_the_held_out_text(trained_phi: Path, tmp_path: Path) -> None:
    """The shipped bf16 weights, checked by digest, give a perplexity on the evaluation text far below 512."""
    from phi_get.builders.checkpoint import open_source
    from phi_get.builders.evaluate import load_reference, score_logits

    record = json.loads((trained_phi / "phi-get-tiny.json").read_text())
    assert record["weights_sha256"] == trained.WEIGHTS_SHA256 and record["trained"] == trained.TRAINING
    assert open_source(trained_phi).source.precision is Precision.BF16  # as Phi-3's published weights
    reference = load_reference(trained_phi, tmp_path / "ref")
    ppl = score_logits(reference.logits(), reference)["reference_perplexity"]
    assert ppl < 20, ppl  # measured 11.04; a uniform guess over the 512 tokens is 512, the random weights ~600


@pytest.mark.slow
def test_the_command_writes_the_same_bytes(trained_phi: Path, tmp_path: Path) -> None:
    def phi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "phi_get", "tiny-phi", *args], capture_output=True,
                              text=True, timeout=300, check=False)

    proc = phi(str(tmp_path / "again"), "--trained", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["trained"] is True
    assert _digests(tmp_path / "again") == _digests(trained_phi)
    refused = phi(str(tmp_path / "other"), "--trained", "--layers", "4")
    assert refused.returncode != 0 and not (tmp_path / "other").exists()
    assert "--trained writes the one trained checkpoint phi-get ships; --layers cannot change it" in refused.stderr


def test_damaged_weights_and_a_foreign_tokenizer_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = hashlib.sha256(Path(trained.__file__).with_name("data").joinpath(
        "tiny-phi-trained.safetensors").read_bytes()).hexdigest()
    monkeypatch.setattr(trained, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(BuildError) as info:
        trained.make_trained_phi(tmp_path / "a")
    assert str(info.value) == (f"the trained weights data/tiny-phi-trained.safetensors have sha256 {shipped}, not the "
                               f"recorded {'0' * 64}: the file is damaged or was replaced")
    monkeypatch.setattr(trained, "WEIGHTS_SHA256", shipped)
    monkeypatch.setattr(trained, "TOKENIZER_SHA256", "1" * 64)
    with pytest.raises(BuildError, match=r"^this machine's tiny tokenizer \(tokenizer.model sha256 [0-9a-f]{64}\) is "
                                         r"not the one the trained weights were made for \(1{64}\)"):
        trained.make_trained_phi(tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-written


def test_the_training_text_holds_out_the_evaluation_text(monkeypatch: pytest.MonkeyPatch) -> None:
    text = trained.training_text().lower()
    for sentence in EVAL_TEXT.lower().split(". "):
        assert sentence.rstrip(".") not in text
    assert "checks every byte" in trained.training_text(sentences=0)  # the corpus shares words, not sentences
    leaky = EVAL_TEXT.split(", and ")[1]  # "the memory must also hold the cache. The registry ..."
    monkeypatch.setattr(trained, "corpus_text", lambda seed: leaky)
    with pytest.raises(BuildError, match="^the training text contains the held-out evaluation text: "):
        trained.training_text()


@pytest.mark.slow
def test_training_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of the training code (3 steps of the real loop) give the same bytes, and the weights load."""
    from phi_get.builders.tiny import make_tiny_phi
    from safetensors.torch import save_file

    monkeypatch.setitem(trained.TRAINING, "steps", 3)
    base = make_tiny_phi(tmp_path / "base", trained.TRAINED_SPEC)
    files = []
    for run in ("one", "two"):
        files.append(tmp_path / f"{run}.safetensors")
        save_file(trained.train(base), str(files[-1]), metadata={"format": "pt"})
    assert files[0].read_bytes() == files[1].read_bytes()
    folder = trained.make_trained_phi(tmp_path / "ckpt", weights=files[0])
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"


# -- quantization on the trained reference ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ladder_out(trained_phi: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of the GGUF ladder built from the trained checkpoint (every variant built, through the gate)."""
    pytest.importorskip("llama_cpp")
    from phi_get.builders.build import build_recipe

    out = tmp_path_factory.mktemp("trained-ladder")
    results = build_recipe("tiny-phi", trained_phi, out, only=LADDER)
    assert {r.variant: (str(r.outcome), r.reason) for r in results} == dict.fromkeys(LADDER.split(","), ("built", ""))
    return out


@pytest.fixture(scope="module")
def ladder(ladder_out: Path) -> dict[str, dict[str, float]]:
    """The ladder's measured figures, by variant."""
    return {m.variant: dict(m.quality.metrics) for m in map(load_artifact_folder, find_artifact_folders(ladder_out))}


@pytest.mark.slow
def test_trained_manifests_record_the_figures_and_the_text(ladder_out: Path) -> None:
    """Every manifest of the ladder: all the metrics, KL mean <= p99, the text's digest, the bf16 source."""
    from phi_get.builders.evaluate import METRICS

    folders = list(find_artifact_folders(ladder_out))
    assert len(folders) == len(LADDER.split(","))
    text_sha = hashlib.sha256(EVAL_TEXT.encode()).hexdigest()
    for m in map(load_artifact_folder, folders):
        q = m.quality.metrics
        assert METRICS <= set(q) and 0.0 <= q["kl_divergence"] <= q["kl_divergence_p99"], (m.variant, q)
        assert q["reference_perplexity"] < 20 and m.quality.evaluation["text_sha256"] == text_sha
        assert m.provenance.source.precision is Precision.BF16


@pytest.mark.slow
def test_quantization_loss_is_ordered_as_on_real_models(ladder: dict[str, dict[str, float]]) -> None:
    """Measured KL: f16 < q8_0 < q5_k_m < q4_k_m < q4_0, llama.cpp's order for real models (builders/README.md)."""
    order = [ladder[v]["kl_divergence"] for v in LADDER.split(",")]
    assert order == sorted(order) and len(set(order)) == len(order), dict(zip(LADDER.split(","), order, strict=True))
    top1 = [ladder[v]["top1_agreement"] for v in ("gguf-q8_0", "gguf-q4_k_m")]
    assert top1[0] >= top1[1], top1


@pytest.mark.slow
def test_gate_refuses_a_2_bit_gguf_posing_as_q4_k_m(
        trained_phi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp's Q2_K written as gguf-q4_k_m: honest rounding, far more loss than 4 bits allow: refused."""
    pytest.importorskip("llama_cpp")
    from phi_get.builders import gguf
    from phi_get.builders.build import build_recipe

    monkeypatch.setitem(gguf.FILE_TYPES, "q4_k_m", 10)  # LLAMA_FTYPE_MOSTLY_Q2_K
    (result,) = build_recipe("tiny-phi", trained_phi, tmp_path, only="gguf-q4_k_m")
    assert (result.outcome, result.folder) == (Outcome.FAILED, None)
    assert result.reason.startswith("quality gate refused gguf-q4_k_m: kl_divergence "), result.reason
    assert f"is above the int4 limit {KL_LIMIT['int4'][0]:g} (it loses more than int4 does" in result.reason


@pytest.mark.slow
def test_the_honest_ladder_passes_the_gate(ladder: dict[str, dict[str, float]]) -> None:
    from phi_get.manifests.manifest import Quality, QualityCheck

    for variant, metrics in ladder.items():
        quality_gate(RECIPE.variant(variant), Quality(check=QualityCheck.RUNTIME, metrics=metrics,
                                                      evaluation={}, note=""))
