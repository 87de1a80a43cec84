"""The registry's web catalog in headless Chromium and over plain HTTP.

One real ``phi-get registry serve`` on loopback (the root CLI wires the
client's resolver into the device page), with small synthetic artifacts
published through the real publish path: several formats, precisions and
targets, a yanked version, a yanked variant, and publisher text carrying
``<script>``.  Every page is checked against what the wire documents say
(catalog, index, manifests, stats) and the device page against
:func:`phi_get.resolver.resolve.resolve` for the same inputs.

Attack and fault classes covered: stored and reflected script injection
(publisher text, pasted profiles, the search box, the URL path), bad and
huge form bodies (never a 500), a page that disagrees with the index or
with the client's resolver, a page that writes or counts anything or shows
what a token-less client could not read, and markup a screen reader cannot
use (axe-core in the same browser).

Chromium is Debian's ``chromium`` + ``chromium-driver`` (selenium never
downloads a driver); axe-core is npm's, installed by ``.ci/run`` into
``.artifacts/axe``.  Locally, missing pieces skip their tests; in CI
(``CI=true``) they fail.  Screenshots go to ``.artifacts/web-catalog/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.specifiers import SpecifierSet
from phi_get.demo import free_port, stop_process, wait_for_port
from phi_get.manifests.artifact import MANIFEST_FILENAME, file_entry
from phi_get.manifests.device import DeviceProfile, parse_device_profile
from phi_get.manifests.index import ModelIndex, parse_catalog, parse_model_index
from phi_get.manifests.manifest import (
    Format,
    MemoryNeeds,
    Precision,
    Provenance,
    Quality,
    QualityCheck,
    RuntimeRequirement,
    Source,
    parse_manifest,
)

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from phi_get.registry.testing import make_manifest
from phi_get.resolver.detect import sample_profiles
from phi_get.resolver.resolve import Requirement, Resolution, make_policy, resolve

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".artifacts" / "web-catalog"
AXE_JS = Path(os.environ.get("PHI_GET_AXE_JS", ROOT / ".artifacts" / "axe" / "node_modules" / "axe-core" / "axe.min.js"))
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI") == "true"
HOSTILE = "<script>window.__pwned=1</script>"
GB = 10**9
MODEL = "tiny-phi"
WAIT_S = 60  # generous: a loaded 2-core CI machine

# variant, format, precision, method, targets, runtime, provider, weights bytes, top-1 agreement, file bytes
MATRIX: tuple[tuple[Any, ...], ...] = (
    ("gguf-q4_k_m", "gguf", "int4", "q4_k_m", ("cpu-x86_64", "cpu-arm64", "cuda", "metal"), "llama-cpp-python",
     "cpu", int(2.3 * GB), 0.91, 3000),
    ("gguf-q8_0", "gguf", "int8", "q8_0", ("cpu-x86_64", "cpu-arm64", "cuda", "metal"), "llama-cpp-python",
     "cpu", int(4.1 * GB), 0.97, 5200),
    ("gguf-f16", "gguf", "fp16", "f16", ("cpu-x86_64", "cpu-arm64", "cuda", "metal"), "llama-cpp-python",
     "cpu", int(7.7 * GB), 0.995, 9100),
    ("gguf-q2_k", "gguf", "int4", "q2_k", ("cpu-x86_64", "cpu-arm64"), "llama-cpp-python", "cpu",
     int(1.4 * GB), 0.71, 1900),
    ("onnx-int4-cpu", "onnx", "int4", "int4-rtn-block32", ("cpu-x86_64", "cpu-arm64"), "onnxruntime-genai",
     "cpu", int(2.6 * GB), 0.93, 3400),
    ("onnx-int4-cuda", "onnx", "int4", "int4-awq-block128", ("cuda-sm80", "cuda"), "onnxruntime-genai-cuda",
     "cuda", int(2.5 * GB), 0.94, 3300),
    ("openvino-int4", "openvino", "int4", "int4-sym-g128", ("intel-gpu", "intel-npu", "cpu-x86_64"),
     "openvino-genai", "gpu", int(2.4 * GB), None, 3100),
    ("mlx-int4", "mlx", "int4", "mlx-4bit-g64", ("metal",), "mlx-lm", "metal", int(2.2 * GB), 0.92, 2900),
)


def write_variant(root: Path, name: str, version: str, spec: tuple[Any, ...]) -> Path:
    """An artifact folder as a builder writes it: files, then a real manifest listing them."""
    variant, fmt, precision, method, targets, dist, provider, weights, top1, nbytes = spec
    folder = root / f"{name}-{version}-{variant}"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes((f"{name}/{version}/{variant}/".encode() * (nbytes // 8 + 1))[:nbytes])
    (folder / "config.json").write_bytes(b'{"architectures": ["Phi3ForCausalLM"]}')
    files = [file_entry(folder, "config.json"), file_entry(folder, "model.bin")]
    metrics = {} if top1 is None else {"top1_agreement": top1, "perplexity": 12.0 / top1, "reference_perplexity": 12.0}
    manifest = dataclasses.replace(
        make_manifest([(f.path, f.size, f.sha256) for f in files], name=name, version=version, variant=variant,
                      targets=targets),
        format=Format(fmt), precision=Precision(precision), quantization=method,
        runtime=RuntimeRequirement(distribution=dist, specifier=SpecifierSet(">=0.3"), provider=provider),
        memory=MemoryNeeds(weights_bytes=weights, kv_bytes_per_token=98304,
                           max_context=16384 if fmt == "mlx" else 131072),
        quality=Quality(check=QualityCheck.STRUCTURAL if top1 is None else QualityCheck.RUNTIME, metrics=metrics,
                        evaluation={"text": "wikitext " + HOSTILE, "tokens": "512"}, note="measured " + HOSTILE),
        provenance=Provenance(source=Source(repo="microsoft/Phi-3.5-mini-instruct", revision="a" * 40),
                              recipe={"id": variant, "comment": HOSTILE}, builder="phi-get 0.1.0",
                              tools={"llama-cpp-python": "0.3.16", HOSTILE: "1"},
                              command=("phi-get", "build", "--variant", variant, HOSTILE),
                              created="2026-11-26T09:00:00Z"),
        architecture={"class": "Phi3ForCausalLM", "note": "</pre></code>" + HOSTILE},
    )
    (folder / MANIFEST_FILENAME).write_bytes(manifest.to_bytes())
    return folder


@dataclass(frozen=True)
class Site:
    url: str
    token: str

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=60, **kw)

    def index(self, name: str = MODEL) -> ModelIndex:
        return parse_model_index(self.get(f"/v1/models/{name}/index.json").content)

    def downloads(self, name: str = MODEL) -> dict[tuple[str, str], int]:
        stats = self.get(f"/v1/models/{name}/stats.json").json()
        return {(v["version"], v["variant"]): v["downloads"] for v in stats["variants"]}


def _phi_get(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "phi_get", *args], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`phi-get registry serve` on a free loopback port, with the synthetic matrix published and yanks made."""
    from phi_get.registry.client import publish_tree

    tmp = tmp_path_factory.mktemp("web")
    storage, db = tmp / "registry", f"sqlite:///{tmp / 'registry' / 'catalog.db'}"
    token = _phi_get("registry", "token", "create", "--db", db, "--storage", str(storage),
                     "--scope", "publish:*").strip()
    port = free_port()
    log = (tmp / "registry.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "phi_get", "registry", "serve", "--db", db, "--storage",
                             str(storage), "--port", str(port), "--no-access-log"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, timeout=60)
        s = Site(url=f"http://127.0.0.1:{port}", token=token)
        arts = tmp / "artifacts"
        for spec in MATRIX:
            write_variant(arts, MODEL, "0.2.0", spec)
        for spec in MATRIX[:2]:
            write_variant(arts, MODEL, "0.1.0", spec)
        write_variant(arts, "phi-3.5-mini", "1.0.0", MATRIX[0])
        publish_tree(arts, s.url, token, parallel=2)
        auth = {"authorization": f"Bearer {token}"}
        for path, reason in ((f"/v1/models/{MODEL}/versions/0.1.0/yank", {"reason": "wrong tokenizer " + HOSTILE}),
                             (f"/v1/models/{MODEL}/versions/0.2.0/yank", {"reason": "too lossy", "variant": "gguf-q2_k"})):
            s.post(path, json=reason, headers=auth).raise_for_status()
        q4 = next(e for e in s.index().entries if str(e.version) == "0.2.0" and e.variant == "gguf-q4_k_m")
        for _ in range(2):  # two real downloads of one manifest, for the download counts
            s.get(f"/v1/manifests/sha256/{q4.manifest.removeprefix('sha256:')}.json").raise_for_status()
        yield s
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through its own chromedriver; never a downloaded browser or driver."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        if IN_CI:
            pytest.fail(f"{', '.join(missing)} missing: .ci/run installs chromium and chromium-driver")
        pytest.skip(f"{', '.join(missing)} missing (apt-get install chromium chromium-driver)")
    import tempfile

    profile = tempfile.mkdtemp(prefix="phi-get-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1400"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(90)
    driver.set_script_timeout(90)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ---- browser helpers --------------------------------------------------------------------------


def _wait(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _wait_h1(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), text))


def _all(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def _one(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def _shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _navigate(driver: Any, go: Any, h1: str) -> None:
    """Do ``go()`` (a click, back) and wait until the old page is gone and the new one's h1 says ``h1``."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    old = _one(driver, "main")
    go()
    WebDriverWait(driver, WAIT_S).until(ec.staleness_of(old))
    _wait_h1(driver, h1)


def _click_and_wait(driver: Any, element: Any, h1: str) -> None:
    _navigate(driver, element.click, h1)


def _samples() -> dict[str, DeviceProfile]:
    return {n: parse_device_profile(p.read_bytes()) for n, p in sample_profiles().items()}


def _verdicts(res: Resolution) -> list[tuple[str, str, str]]:
    return [(str(c.entry.version), c.entry.variant, str(c.verdict)) for c in res.candidates]


def _shown_verdicts(driver: Any) -> list[tuple[str, str, str]]:
    return [(r.get_attribute("data-version"), r.get_attribute("data-variant"), r.get_attribute("data-verdict"))
            for r in _all(driver, "#candidates tbody tr")]


def _submit_device_form(driver: Any, *, model: str = MODEL, sample: str = "", profile: str | None = None,
                        prefer: str | None = None, context: str = "") -> None:
    """Fill the form as a person would (``prefer`` None: leave the resolver's default selected) and send it."""
    from selenium.webdriver.support.ui import Select

    Select(_one(driver, "#model")).select_by_value(model)
    Select(_one(driver, "#sample")).select_by_value(sample)
    if prefer is not None:
        Select(_one(driver, "#prefer")).select_by_value(prefer)
    area = _one(driver, "#profile")
    area.clear()
    if profile is not None:
        if len(profile) > 4000:  # typing megabytes takes minutes: set it as a paste would
            driver.execute_script("arguments[0].value = arguments[1];", area, profile)
        else:
            area.send_keys(profile)
    ctx = _one(driver, "#context")
    ctx.clear()
    ctx.send_keys(context)
    _navigate(driver, _one(driver, "#advise").click, "What fits my device")


# ---- the tests ----------------------------------------------------------------------------------


def test_catalog_page_shows_what_the_catalog_and_index_say(site: Site, browser: Any) -> None:
    """A catalog page that disagrees with /v1/models.json, the index or the stats; search by name."""
    browser.get(site.url + "/")
    _wait(browser, "#models")
    catalog = parse_catalog(site.get("/v1/models.json").content)
    rows = {r.get_attribute("data-model"): r for r in _all(browser, "#models tbody tr")}
    assert sorted(rows) == sorted(n for n, _ in catalog.models)
    for name, latest in catalog.models:
        index, downloads = site.index(name), site.downloads(name)
        row = rows[name]
        assert _one(row, ".latest").text == latest
        assert int(_one(row, ".versions").text) == len({e.version for e in index.entries})
        assert int(_one(row, ".variants").text) == len(index.entries)
        assert int(_one(row, ".downloads").text) == sum(downloads.values())
    assert rows[MODEL].find_element("css selector", ".latest").text == "0.2.0"  # 0.1.0 is yanked
    assert int(rows[MODEL].find_element("css selector", ".downloads").text) == 2
    _shot(browser, "catalog")

    box = _one(browser, "#q")
    box.send_keys("phi-3")
    _navigate(browser, box.submit, "Models")
    assert "matching" in _one(browser, "#result-count").text
    assert [r.get_attribute("data-model") for r in _all(browser, "#models tbody tr")] == ["phi-3.5-mini"]


def test_user_follows_catalog_model_variant_and_back(site: Site, browser: Any) -> None:
    """Navigation a person does (catalog -> model -> variant -> back -> another version -> catalog),
    each page checked against the index, the manifest, the memory formula and the download counts."""
    from selenium.webdriver.common.by import By

    index, downloads = site.index(), site.downloads()
    browser.get(site.url + "/")
    _click_and_wait(browser, browser.find_element(By.LINK_TEXT, MODEL), MODEL)

    versions = [r.get_attribute("data-version") for r in _all(browser, "#versions tbody tr")]
    assert versions == [str(v) for v in sorted({e.version for e in index.entries}, reverse=True)]
    yanked = _one(browser, '#versions tr[data-version="0.1.0"]')
    assert "yanked" in yanked.get_attribute("class") and "wrong tokenizer " + HOSTILE in yanked.text
    assert "1 of 8 variants yanked: too lossy" in _one(browser, '#versions tr[data-version="0.2.0"]').text
    assert _one(browser, "#current-version").text == "0.2.0"

    current = {e.variant: e for e in index.entries if str(e.version) == "0.2.0"}
    seen: set[str] = set()
    for table in _all(browser, "table.variants"):
        group = table.get_attribute("data-group")
        for row in _all(table, "tbody tr"):
            e = current[row.get_attribute("data-variant")]
            seen.add(e.variant)
            assert int(_one(row, ".size").get_attribute("data-bytes")) == e.size
            assert int(_one(row, ".downloads").text) == downloads[("0.2.0", e.variant)]
            shown = [c.get_attribute("data-bytes") for c in _all(row, ".memory")]
            expected = [str(e.memory.total_bytes(c)) if c <= e.memory.max_context else "" for c in (4096, 32768)]
            assert shown == expected, e.variant
            assert _one(row, ".format").text == str(e.format) and _one(row, ".precision").text == str(e.precision)
        if group == "NVIDIA GPU (CUDA)":
            assert {r.get_attribute("data-variant") for r in _all(table, "tbody tr")} == {
                v for v, e in current.items() if any(t.startswith("cuda") for t in e.targets)}
    assert seen == set(current)
    assert "yanked" in _one(browser, 'table.variants tr[data-variant="gguf-q2_k"]').get_attribute("class")
    points = {p.get_attribute("data-variant"): int(p.get_attribute("data-size"))
              for p in _all(browser, "#quality-chart g.point")}
    assert points == {v: e.size for v, e in current.items() if "top1_agreement" in e.quality.metrics}
    assert "openvino-int4" in _one(browser, "#quality-chart figcaption").text  # measured nothing: listed, not drawn
    _shot(browser, "model")

    link = _one(browser, 'table.variants tr[data-variant="gguf-q4_k_m"] th a')
    _click_and_wait(browser, link, "gguf-q4_k_m")
    entry = current["gguf-q4_k_m"]
    manifest = parse_manifest(site.get(f"/v1/manifests/sha256/{entry.manifest.removeprefix('sha256:')}.json").content)
    files = [(r.find_element(By.TAG_NAME, "th").text, int(r.find_elements(By.TAG_NAME, "td")[0].get_attribute("data-bytes")),
              r.find_elements(By.TAG_NAME, "td")[1].text) for r in _all(browser, "#files tbody tr")]
    assert files == [(f.path, f.size, f.sha256) for f in manifest.files]
    assert int(_one(browser, "#size").get_attribute("data-bytes")) == entry.size == manifest.size
    assert int(_one(browser, "#downloads").text) == downloads[("0.2.0", "gguf-q4_k_m")]
    install = _one(browser, "#cmd-install").text
    assert install == f"phi-get install tiny-phi==0.2.0 --format gguf --precision int4 --registry {site.url}"
    assert '"tiny-phi" = { version = "==0.2.0", format = "gguf", precision = "int4" }' in _one(browser, "#cmd-toml").text
    assert "phi-get sync --locked" in _one(browser, "#cmd-sync").text
    assert "microsoft/Phi-3.5-mini-instruct@" + "a" * 40 in _one(browser, "#provenance").text
    _shot(browser, "variant")

    _navigate(browser, browser.back, MODEL)
    assert browser.current_url == f"{site.url}/models/{MODEL}"
    _click_and_wait(browser, _one(browser, '#versions tr[data-version="0.1.0"] th a'), MODEL)
    assert _one(browser, "#current-version").text == "0.1.0"
    assert "This version is yanked" in _one(browser, "main").text
    _click_and_wait(browser, _one(browser, ".crumbs li a"), "Models")
    assert browser.current_url == site.url + "/"


def test_device_form_with_each_sample_matches_the_resolver(site: Site, browser: Any) -> None:
    """The device page's choice and verdicts are exactly phi_get.resolver.resolve's for every sample
    profile (a second, drifting resolution on the server would fail here)."""
    index = site.index()
    browser.get(site.url + "/device")
    _wait(browser, "#advise")
    for n, (name, device) in enumerate(sorted(_samples().items())):
        if n == 0:  # the form itself once; the other samples through the form's own GET link shape
            _submit_device_form(browser, sample=name)
        else:
            browser.get(f"{site.url}/device?model={MODEL}&sample={name}")
        _wait(browser, "#advice")
        res = resolve(Requirement(name=MODEL), device, index.entries, make_policy())
        if res.chosen is None:
            assert _all(browser, "#no-match"), name
        else:
            chosen = _one(browser, "#chosen")
            assert (chosen.get_attribute("data-version"), chosen.get_attribute("data-variant"),
                    chosen.get_attribute("data-target")) == (str(res.chosen.entry.version), res.chosen.entry.variant,
                                                             res.chosen.target.tag if res.chosen.target else ""), name
        assert _shown_verdicts(browser) == _verdicts(res), name
        assert len(_shown_verdicts(browser)) == len(index.entries)
        if name == "gpu-server":
            _shot(browser, "device-sample")


def test_device_form_with_pasted_profile_matches_the_resolver(site: Site, browser: Any) -> None:
    """A pasted `phi-get device --json` (with a hostile description), prefer=size and a 32K context:
    the same choice as resolve() with the same policy, and the description shown as text."""
    doc = json.loads(sample_profiles()["pi-board"].read_bytes())
    doc.update({"memory_bytes": 8 * 2**30, "description": "my board " + HOSTILE})
    pasted = json.dumps(doc, indent=1)
    browser.get(site.url + "/device")
    _wait(browser, "#advise")
    _submit_device_form(browser, profile=pasted, prefer="size", context="32768")
    _wait(browser, "#advice")
    res = resolve(Requirement(name=MODEL), parse_device_profile(pasted), site.index().entries,
                  make_policy(prefer="size", context=32768))
    assert res.chosen is not None
    chosen = _one(browser, "#chosen")
    assert (chosen.get_attribute("data-version"), chosen.get_attribute("data-variant")) == (
        str(res.chosen.entry.version), res.chosen.entry.variant)
    assert _shown_verdicts(browser) == _verdicts(res)
    assert "the pasted profile" in _one(browser, "#advice-h").text
    assert "my board " + HOSTILE in _one(browser, ".description").text
    assert browser.execute_script("return window.__pwned === undefined")
    _shot(browser, "device-pasted")


@pytest.mark.parametrize(("profile", "message"), [
    ("this is not json", "not JSON"),
    ('{"schema": "phi-get.device/v9", "os": "linux"}', "schema"),
    ('{"schema": "phi-get.device/v1", "os": "plan9", "arch": "x86_64", "memory_bytes": 1}', "os"),
    ("x" * (2 << 20), "limit"),
], ids=["not-json", "wrong-schema", "bad-field", "huge"])
def test_device_form_bad_input_shows_a_readable_message(site: Site, browser: Any, profile: str, message: str) -> None:
    """Bad input pasted into the form (not JSON, a wrong schema, a bad field, 2 MiB): the form again with a
    message naming the problem, never a server error page or a reset connection."""
    browser.get(site.url + "/device")
    _wait(browser, "#advise")
    _submit_device_form(browser, profile=profile)
    problem = _wait(browser, "#problem")
    assert message in problem.text, _one(browser, "main").text[:2000]
    assert _one(browser, "h1").text == "What fits my device"
    assert "Internal Server Error" not in browser.page_source
    if message == "limit":
        _shot(browser, "device-huge")


def _assert_readable(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    assert message in r.text, r.text[:2000]
    assert "Traceback" not in r.text


def test_device_form_bad_input_over_plain_http(site: Site) -> None:
    """The same bad input without a browser, plus what a browser cannot send: a 4xx page with a message
    for each, never a 500."""
    form = {"model": MODEL, "sample": "", "context": ""}
    profile = sample_profiles()["gpu-server"].read_text()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": {**form, "profile": "{not json"}}, 400, "not JSON"),
        ({"data": {**form, "profile": '{"schema": "x/v1"}'}}, 400, "schema"),
        ({"data": {**form, "profile": json.dumps({"schema": "phi-get.device/v1", "pad": "x" * (300 << 10)})}},
         400, "the limit is"),                                                      # a profile over 256 KiB
        ({"data": {**form, "profile": "x" * (2 << 20)}}, 413, "limit"),            # a form over 1 MiB
        ({"content": b"profile=" + b"x" * (9 << 20),
          "headers": {"content-type": "application/x-www-form-urlencoded"}}, 413, "limit"),
        ({"content": b"profile=\xff\xfe", "headers": {"content-type": "application/x-www-form-urlencoded"}},
         400, "not UTF-8"),
        ({"files": {"profile": ("p.json", profile.encode())}}, 415, "application/x-www-form-urlencoded"),
        ({"content": "&".join(f"f{i}=1" for i in range(40)).encode(),
          "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400, "too many fields"),
        ({"data": {**form, "profile": profile, "context": "-1"}}, 400, "context length"),
        ({"data": {**form, "profile": profile, "prefer": "fastest"}}, 400, "prefer is one of"),
        ({"data": {**form, "sample": "toaster"}}, 400, "no sample device named"),
        ({"data": {**form, "profile": profile, "model": "no-such-model"}}, 404, "no model named"),
        ({"data": {**form, "profile": profile, "model": "<b>x</b>"}}, 400, "a model name is"),
        ({"data": {}}, 400, "pick a sample device"),
    ]
    for kw, status, message in cases:
        _assert_readable(site.post("/device", **kw), status, message)
    _assert_readable(site.get("/device", params={"sample": "toaster"}), 400, "no sample device named")
    _assert_readable(site.get(f"/models/{MODEL}", params={"version": "not a version"}), 400, "PEP 440")
    _assert_readable(site.get(f"/models/{MODEL}", params={"version": "9.9"}), 404, "has no version 9.9")
    _assert_readable(site.get(f"/models/{MODEL}/0.2.0/no-such-variant"), 404, "has no variant")
    _assert_readable(site.get("/models/no-such-model"), 404, "no model named")
    _assert_readable(site.get("/", params={"q": "x" * 500}), 400, "at most 128")


def test_hostile_text_is_escaped_and_no_script_runs(site: Site, browser: Any) -> None:
    """Stored script injection (publisher text in manifests, yank reasons) and reflected injection (search box,
    URL path, pasted profile): shown as text, sent with a CSP that runs no script, and not run in Chromium."""
    index = site.index()
    q4 = next(e for e in index.entries if str(e.version) == "0.2.0" and e.variant == "gguf-q4_k_m")
    escaped = "&lt;script&gt;window.__pwned=1&lt;/script&gt;"
    pages = [f"/models/{MODEL}", f"/models/{MODEL}?version=0.1.0", f"/models/{MODEL}/0.2.0/{q4.variant}",
             f"/device?model={MODEL}&sample=gpu-server", "/?q=" + HOSTILE]
    for path in pages:
        r = site.get(path)
        assert r.status_code == 200, path
        assert HOSTILE not in r.text and escaped in r.text, path
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none': no script at all
        assert "default-src 'none'" in r.headers["content-security-policy"]
    r = site.get("/models/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")  # a bad model name, reflected in the message
    assert r.status_code == 400 and "<img" not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text
    pasted = json.dumps({**json.loads(sample_profiles()["pi-board"].read_bytes()), "description": HOSTILE})
    r = site.post("/device", data={"model": MODEL, "sample": "", "profile": pasted})
    assert r.status_code == 200 and HOSTILE not in r.text and escaped in r.text

    for path in pages:
        browser.get(site.url + path)
        _wait(browser, "main")
        assert browser.execute_script("return window.__pwned === undefined"), path
        assert browser.execute_script("return document.scripts.length") == 0, path  # no script: works without JS
    browser.get(site.url + pages[2])
    _wait(browser, "main")
    assert "measured " + HOSTILE in _one(browser, "main").text


def test_pages_are_public_read_only_and_count_nothing(site: Site) -> None:
    """Pages that need a login, change the catalog, count a download, or show a secret: every page answers
    without a token, viewing them leaves the index ETag and the download counts as they were, and writes
    through the page routes are refused."""
    before_etag = site.get(f"/v1/models/{MODEL}/index.json").headers["etag"]
    before = site.downloads()
    index = site.index()
    paths = ["/", "/?q=phi", f"/models/{MODEL}", "/device", f"/device?model={MODEL}&sample=pi-board",
             "/static/catalog.css"] + [f"/models/{MODEL}/{e.version}/{e.variant}" for e in index.entries]
    for path in paths:
        r = site.get(path)
        assert r.status_code == 200, path
        assert site.token not in r.text and site.token.split("_", 2)[2] not in r.text  # phig_<id>_<secret>; the secret may hold "_"
    site.post("/device", data={"model": MODEL, "sample": "gpu-server"})
    assert site.downloads() == before
    assert site.get(f"/v1/models/{MODEL}/index.json").headers["etag"] == before_etag
    for method, path in (("PUT", "/"), ("DELETE", f"/models/{MODEL}"), ("POST", f"/models/{MODEL}")):
        assert httpx.request(method, site.url + path, timeout=30).status_code == 405, (method, path)


def test_pages_pass_axe_core_without_serious_violations(site: Site, browser: Any) -> None:
    """Markup a screen-reader or keyboard user cannot use: axe-core (npm), run in the same Chromium on every
    page, finds no violation of impact serious or critical."""
    if not AXE_JS.is_file():
        if IN_CI:
            pytest.fail(f"{AXE_JS} missing: .ci/run installs axe-core from npm")
        pytest.skip(f"{AXE_JS} missing (npm install --prefix .artifacts/axe axe-core@4.14.1)")
    axe = AXE_JS.read_text(encoding="utf-8")
    pages = ["/", f"/models/{MODEL}", f"/models/{MODEL}/0.2.0/gguf-q4_k_m", "/device",
             f"/device?model={MODEL}&sample=apple-laptop", "/models/no-such-model"]
    problems = []
    for path in pages:
        browser.get(site.url + path)
        _wait(browser, "main")
        browser.execute_script(axe)  # WebDriver scripts are not subject to the page's CSP
        violations = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));")
        assert isinstance(violations, list), violations
        problems += [f"{path}: {v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
                     for v in violations if v["impact"] in ("serious", "critical")]
    assert not problems, "\n".join(problems)


def test_device_page_without_a_resolver_says_so(tmp_path: Path) -> None:
    """A registry app built without an advisor (registry code alone may not import the resolver): the device
    page explains it cannot advise (501) instead of guessing or failing with a 500."""
    from phi_get.registry.server import default_db_url, open_registry, running_server

    registry = open_registry(default_db_url(tmp_path / "s"), tmp_path / "s")
    try:
        with running_server(registry) as url:
            r = httpx.post(url + "/device", data={"model": "", "sample": "gpu-server"}, timeout=30)
            _assert_readable(r, 501, "started without the resolver")
            assert httpx.get(url + "/", timeout=30).status_code == 200
    finally:
        registry.engine.dispose()


def test_quality_chart_places_points_by_size_and_agreement() -> None:
    """A chart that misplaces points: bigger downloads lie further right, higher agreement higher up,
    everything inside the plot area, and unmeasured variants listed instead of drawn at zero."""
    from phi_get.manifests.index import IndexEntry
    from phi_get.registry.web import quality_chart

    with_metrics = [(3000, 0.91, "a"), (9000, 0.99, "b"), (30000, 0.95, "c")]
    entries = []
    for size, top1, variant in [*with_metrics, (5000, None, "d")]:
        base = make_manifest([("m.bin", size, "0" * 64)], variant=variant)
        q = Quality(check=QualityCheck.RUNTIME, metrics={"top1_agreement": top1}) if top1 else base.quality
        entries.append(IndexEntry.from_manifest(dataclasses.replace(base, quality=q)))
    chart = quality_chart(entries)
    pts = {p.variant: p for p in chart.points}
    assert set(pts) == {"a", "b", "c"} and chart.unmeasured == ("d",)
    assert pts["a"].x < pts["b"].x < pts["c"].x
    assert pts["b"].y < pts["c"].y < pts["a"].y  # SVG y grows downwards
    for p in chart.points:
        assert chart.left <= p.x <= chart.left + chart.plot_width
        assert chart.top <= p.y <= chart.top + chart.plot_height
    assert quality_chart(entries[3:]).points == ()
    single = quality_chart(entries[:1])  # one point: the axis still has labelled ticks either side of it
    assert len(single.x_ticks) >= 2
    assert min(x for x, _ in single.x_ticks) < single.points[0].x < max(x for x, _ in single.x_ticks)


# The demo keeps its registry log open for the life of its process (demo.py): not a leak of this test.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_demo_prints_the_web_catalog_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A demo that hides where to look: its registry step prints the web catalog's URL, and that URL answers
    with the catalog page while the registry is up."""
    import re

    from phi_get.demo import Demo

    demo = Demo(work=tmp_path)
    demo.env = {k: v for k, v in os.environ.items() if not k.startswith("PHI_GET_")}
    try:
        demo.registry()
        found = re.search(r"web catalog: (http://127\.0\.0\.1:\d+/)", capsys.readouterr().out)
        assert found, "the demo did not print the web catalog's URL"
        r = httpx.get(found.group(1), timeout=30)
        assert r.status_code == 200 and "<h1>Models</h1>" in r.text
    finally:
        demo.stop_all()
