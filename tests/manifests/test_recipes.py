"""The shipped recipes and the variant catalog."""

from __future__ import annotations

import pytest
from phi_get.manifests import ManifestError
from phi_get.manifests.recipe import load_recipe, load_variant_catalog, parse_recipe, recipe_names


def test_shipped_recipes() -> None:
    assert recipe_names() == ["phi-3-mini-4k", "phi-3.5-mini", "phi-4-mini", "tiny-phi"]
    repos = {n: load_recipe(n).repo for n in recipe_names()}
    assert repos == {
        "phi-3-mini-4k": "microsoft/Phi-3-mini-4k-instruct",
        "phi-3.5-mini": "microsoft/Phi-3.5-mini-instruct",
        "phi-4-mini": "microsoft/Phi-4-mini-instruct",
        "tiny-phi": None,
    }


def test_matrix_covers_every_format_and_precision() -> None:
    recipe = load_recipe("phi-3.5-mini")
    assert {str(v.format) for v in recipe.variants} == {"gguf", "onnx", "openvino", "mlx", "safetensors"}
    assert {str(v.precision) for v in recipe.variants} == {"int4", "int8", "fp16", "bf16", "fp32"}
    assert len(recipe.variants) == 19
    assert "gguf-f32" not in {v.id for v in recipe.variants}  # reference-only
    tiny = load_recipe("tiny-phi")
    assert {v.id for v in tiny.variants} == {v.id for v in recipe.variants} | {"gguf-f32"}


def test_unknown_variant_is_named() -> None:
    with pytest.raises(ManifestError, match=r"recipe 'tiny-phi' has no variant 'gguf-q3'; its variants are: gguf-f16, "):
        load_recipe("tiny-phi").variant("gguf-q3")


def test_unknown_recipe_is_named() -> None:
    with pytest.raises(ManifestError, match=r"no such recipe; shipped recipes are: phi-3-mini-4k, phi-3.5-mini, phi-4-mini, tiny-phi"):
        load_recipe("phi-9")


def test_recipe_with_unknown_variant_id() -> None:
    text = """
schema = "phi-get.recipe/v1"
name = "x"
version = "1.0"
[source]
local = true
[matrix]
variants = ["gguf-q4_k_m", "gguf-q2"]
"""
    with pytest.raises(ManifestError, match=r"^invalid recipe at matrix\.variants: unknown variant id; known: .* \(got 'gguf-q2'\)$"):
        parse_recipe(text, load_variant_catalog())


def test_recipe_that_is_not_toml() -> None:
    with pytest.raises(ManifestError, match=r"^invalid recipe: not TOML: "):
        parse_recipe("name = ", load_variant_catalog())
