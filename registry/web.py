"""The registry's web catalog: pages a person can browse.

Routes (HTML, read-only, public, no JavaScript)::

    GET      /                                   catalog: models, latest version, counts; ?q= searches names
    GET      /models/{name}                      versions (yanked ones with their reason), the chosen
                                                 version's variants by hardware target, quality vs size; ?version=
    GET      /models/{name}/{version}/{variant}  files, provenance, quality, install / lock / sync commands
    GET|POST /device                             what fits my device: a sample or a pasted profile
    GET      /static/catalog.css                 the one stylesheet

The pages read only what a token-less client reads (search, the model index,
manifests, download stats) through :class:`~.service.Registry`, and reading
a manifest for a page never counts a download.  Everything shown goes
through Jinja2 with autoescaping on (model data is publisher input); every
page is sent with a Content-Security-Policy that allows no script at all.

"What fits my device" shows the resolution of an injected
:class:`~.advice.Advisor`, the client's own resolver as wired by the root
layer; the registry never imports the resolver.

Bad input (a bad name or version, a form that is not a device profile, a
body over :data:`MAX_FORM_BYTES`) gets a page with a readable message and a
4xx status, never a 500.

Imports fastapi/starlette, jinja2, the registry and :mod:`phi_get.manifests`.
"""

from __future__ import annotations

import json
import math
import shlex
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from packaging.version import Version
from phi_get.manifests.device import DeviceProfile, parse_device_profile
from phi_get.manifests.display import human_bytes
from phi_get.manifests.errors import PhiGetError
from phi_get.manifests.index import IndexEntry, ModelIndex, parse_model_index
from phi_get.manifests.manifest import Manifest, parse_manifest
from phi_get.manifests.names import check_variant_id, check_version

from .advice import Advice, Advisor
from .convert import latest_version
from .errors import NotFoundError, RegistryError
from .service import Registry
from .tuf_repo import signing_status

__all__ = ["MAX_FORM_BYTES", "MEMORY_CONTEXTS", "Chart", "quality_chart", "web_router"]

#: The largest device form accepted (a pasted profile, URL-encoded); the
#: profile itself is then held to the device profile's own limit.
MAX_FORM_BYTES: Final = 1 << 20
#: A body over the limit is still read (and dropped) up to this size, so a
#: browser gets the page that says so instead of a reset connection.
_DRAIN_BYTES: Final = 8 << 20
#: The context lengths whose memory the model page shows.
MEMORY_CONTEXTS: Final = (4096, 32768)
_MAX_QUERY: Final = 128
_SEARCH_LIMIT: Final = 200
_FOLDER: Final = Path(__file__).parent
_CSP: Final = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
               "base-uri 'none'; frame-ancestors 'none'")
_HEADERS: Final = {"content-security-policy": _CSP, "x-content-type-options": "nosniff",
                   "referrer-policy": "same-origin", "cache-control": "no-cache"}

#: Hardware families the model page groups variants by, in the order shown (accelerators first, the
#: CPU last): (label, tag stem); a tag belongs when it is the stem or the stem plus ``-...`` (cuda-sm80).
_FAMILIES: Final = (
    ("NVIDIA GPU (CUDA)", "cuda"), ("AMD GPU (ROCm)", "rocm"), ("Apple GPU (Metal)", "metal"),
    ("Intel GPU", "intel-gpu"), ("Qualcomm NPU", "qnn-npu"), ("Intel NPU", "intel-npu"),
    ("Any GPU on Windows (DirectML)", "directml"), ("Any GPU (WebGPU)", "webgpu"),
    ("x86-64 CPU", "cpu-x86_64"), ("Arm64 CPU", "cpu-arm64"),
)
#: Chart colours per format (WCAG AA contrast on white), with a shape each so colour is not the only cue.
_FORMAT_STYLE: Final = {
    "gguf": ("#1f5fa8", "circle"), "onnx": ("#b3261e", "square"), "openvino": ("#1b7a3a", "diamond"),
    "mlx": ("#6b3fa0", "triangle"), "safetensors": ("#7a5200", "circle"),
}


# ---- small value types the templates show --------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionRow:
    version: str
    variants: int
    yanked: int
    reasons: tuple[str, ...]
    downloads: int

    @property
    def all_yanked(self) -> bool:
        return self.yanked == self.variants


@dataclass(frozen=True, kw_only=True, slots=True)
class VariantRow:
    entry: IndexEntry
    downloads: int
    #: Bytes needed at each of :data:`MEMORY_CONTEXTS` (None: beyond the model's context).
    memory: tuple[int | None, ...]
    #: The tags of the group's family this variant declares.
    tags: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class TargetGroup:
    label: str
    variants: tuple[VariantRow, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChartPoint:
    x: float
    y: float
    variant: str
    format: str
    size: int
    agreement: float
    colour: str
    shape: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Chart:
    """Quality against size, laid out for an SVG drawn by the template (no script)."""

    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    points: tuple[ChartPoint, ...]
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]
    legend: tuple[tuple[str, str, str], ...]  # (format, colour, shape)
    #: Variants without a measured top-1 agreement (structural check only).
    unmeasured: tuple[str, ...]


def _size(n: int | None) -> str:
    """The one size convention (:func:`phi_get.manifests.display.human_bytes`); ``-`` for none."""
    return "-" if n is None else human_bytes(n)


def _nice_log_ticks(lo: float, hi: float) -> list[float]:
    """Byte values for a log axis from 10**lo to 10**hi: powers of ten, with 2x, 3x and 5x when the span is
    short, and the two ends (two significant digits, inside the span) when none of those falls in it."""
    ticks = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in ((1,) if hi - lo > 2 else (1, 2, 3, 5)):
            v = m * 10.0 ** k
            if 10 ** lo <= v <= 10 ** hi:
                ticks.append(v)
    if len(ticks) < 2:
        unit = 10.0 ** (math.floor(lo) - 1)
        ticks = sorted({*ticks, math.ceil(10 ** lo / unit) * unit, math.floor(10 ** hi / unit) * unit})
    return ticks


def quality_chart(entries: Sequence[IndexEntry], *, width: int = 640, height: int = 320) -> Chart:
    """Top-1 agreement with the reference model against download size (log scale)."""
    left, right, top, bottom = 64, 24, 16, 48
    pw, ph = width - left - right, height - top - bottom
    measured = [e for e in entries if "top1_agreement" in e.quality.metrics and e.size > 0]
    unmeasured = tuple(e.variant for e in entries if e not in measured)
    if not measured:
        return Chart(width=width, height=height, left=left, top=top, plot_width=pw, plot_height=ph, points=(),
                     x_ticks=(), y_ticks=(), legend=(), unmeasured=unmeasured)
    logs = [math.log10(e.size) for e in measured]
    lo, hi = min(logs), max(logs)
    pad = max(0.1, (hi - lo) * 0.08)
    lo, hi = lo - pad, hi + pad
    agreements = [min(1.0, max(0.0, e.quality.metrics["top1_agreement"])) for e in measured]
    y_lo = max(0.0, math.floor((min(agreements) - 0.02) * 10) / 10)
    y_hi = 1.0 if y_lo < 1.0 else 1.1

    def x_of(size: float) -> float:
        return round(left + (math.log10(size) - lo) / (hi - lo) * pw, 1)

    def y_of(a: float) -> float:
        return round(top + (1 - (a - y_lo) / (y_hi - y_lo)) * ph, 1)

    points = tuple(
        ChartPoint(x=x_of(e.size), y=y_of(a), variant=e.variant, format=str(e.format), size=e.size, agreement=a,
                   colour=_FORMAT_STYLE[str(e.format)][0], shape=_FORMAT_STYLE[str(e.format)][1])
        for e, a in zip(measured, agreements, strict=True)
    )
    steps = 5
    y_ticks = tuple((y_of(y_lo + (y_hi - y_lo) * i / steps), f"{(y_lo + (y_hi - y_lo) * i / steps) * 100:.0f} %")
                    for i in range(steps + 1))
    x_ticks = tuple((x_of(v), human_bytes(int(v))) for v in _nice_log_ticks(lo, hi))
    legend = tuple((f, *_FORMAT_STYLE[f]) for f in sorted({p.format for p in points}))
    return Chart(width=width, height=height, left=left, top=top, plot_width=pw, plot_height=ph, points=points,
                 x_ticks=x_ticks, y_ticks=y_ticks, legend=legend, unmeasured=unmeasured)


# ---- reading what the public routes serve ----------------------------------------


def _versions(index: ModelIndex, downloads: Mapping[tuple[str, str], int]) -> list[VersionRow]:
    grouped: dict[Version, list[IndexEntry]] = defaultdict(list)
    for e in index.entries:
        grouped[e.version].append(e)
    return [
        VersionRow(version=str(v), variants=len(es), yanked=sum(e.yanked is not None for e in es),
                   reasons=tuple(dict.fromkeys(e.yanked for e in es if e.yanked is not None)),
                   downloads=sum(downloads.get((str(v), e.variant), 0) for e in es))
        for v, es in sorted(grouped.items(), reverse=True)
    ]


def _groups(entries: Iterable[IndexEntry], downloads: Mapping[tuple[str, str], int]) -> list[TargetGroup]:
    """The variants under each hardware family they declare (one variant may run on several)."""
    groups = []
    ordered = sorted(entries, key=lambda e: (-e.precision.bits, e.size, e.variant))
    for label, stem in _FAMILIES:
        rows = []
        for e in ordered:
            tags = tuple(t for t in e.targets if t == stem or t.startswith(stem + "-"))
            if tags:
                memory = tuple(e.memory.total_bytes(c) if c <= e.memory.max_context else None
                               for c in MEMORY_CONTEXTS)
                rows.append(VariantRow(entry=e, downloads=downloads.get((str(e.version), e.variant), 0),
                                       memory=memory, tags=tags))
        if rows:
            groups.append(TargetGroup(label=label, variants=tuple(rows)))
    return groups


def _commands(base: str, m: Manifest, siblings: int) -> dict[str, str]:
    """Copyable client commands that select this variant (by exact version, format and precision)."""
    req = shlex.quote(f"{m.name}=={m.version}")
    return {
        "install": f"phi-get install {req} --format {m.format} --precision {m.precision} --registry {base}",
        "toml": (f'[project]\nregistries = ["{base}"]\n\n[models]\n"{m.name}" = {{ version = "=={m.version}", '
                 f'format = "{m.format}", precision = "{m.precision}" }}\n\n[device-classes]\n'
                 f'this-device = "gpu-server"   # a profile file or a sample name'),
        "lock": "phi-get lock --project .",
        "sync": "phi-get sync --locked --project . --device-class this-device",
        "siblings": str(siblings),
    }


def _profile_summary(p: DeviceProfile) -> dict[str, Any]:
    return {
        "os": str(p.os), "arch": str(p.arch), "cores": p.cores, "memory": p.memory_bytes,
        "description": str(p.extra.get("description", ""))[:300],
        "accelerators": [(str(a.type), str(a.vendor), a.name, a.memory_bytes) for a in p.accelerators],
        "runtimes": sorted(p.runtimes.items()),
    }


class _FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def _read_form(request: Request) -> dict[str, str]:
    """The URL-encoded fields of a POSTed form, at most :data:`MAX_FORM_BYTES` of it."""
    declared = request.headers.get("content-length", "")
    # ASCII digits, at most 19 ('²'.isdigit() is true; int() of thousands of digits raises).
    if declared.isascii() and declared.isdigit() and (len(declared) > 19 or int(declared) > _DRAIN_BYTES):
        raise _FormError(413, f"the form is {int(declared)} bytes; the limit is {MAX_FORM_BYTES} bytes")
    body = bytearray()
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total <= MAX_FORM_BYTES:
            body += chunk
        elif total > _DRAIN_BYTES:
            break
    if total > MAX_FORM_BYTES:
        raise _FormError(413, f"the form is over the limit of {MAX_FORM_BYTES} bytes "
                              "(a device profile is a few kilobytes)")
    media = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip()
    if media != "application/x-www-form-urlencoded":
        raise _FormError(415, f"send the form as application/x-www-form-urlencoded, not {media[:60]!r}")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except UnicodeDecodeError as exc:
        raise _FormError(400, f"the form is not UTF-8 (byte {exc.start})") from None
    except ValueError:
        raise _FormError(400, "the form has too many fields (at most 16)") from None
    return {k: v[0] for k, v in fields.items()}


# ---- the router -------------------------------------------------------------------------


class _Pages:
    """The page handlers over one registry; holds the template environment and a parsed-index cache."""

    def __init__(self, registry: Registry, advisor: Advisor | None) -> None:
        self.registry = registry
        self.advisor = advisor
        self.env = Environment(loader=FileSystemLoader(_FOLDER / "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["bytes"] = _size
        self.env.filters["urlpart"] = lambda s: quote(str(s), safe="")
        self.env.filters["pretty"] = lambda d: json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False)
        self.env.filters["shell"] = lambda argv: shlex.join(argv)
        self.css = (_FOLDER / "static" / "catalog.css").read_bytes()
        #: name -> (etag, parsed index): one parse per catalog revision of a model.
        self._parsed: dict[str, tuple[str, ModelIndex]] = {}

    def page(self, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=http_status, headers=_HEADERS)

    def error(self, status: int, message: str) -> HTMLResponse:
        return self.page("error.html", status, title=f"Error {status}", status=status, message=message, crumbs=())

    def model_index(self, name: str) -> ModelIndex:
        body, etag = self.registry.index(name)
        hit = self._parsed.get(name)
        if hit is not None and hit[0] == etag:
            return hit[1]
        index = parse_model_index(body, document=f"index of {name}")
        if len(self._parsed) > 256:
            self._parsed.clear()
        self._parsed[index.name] = (etag, index)
        return index

    def downloads(self, name: str) -> dict[tuple[str, str], int]:
        variants = self.registry.stats(name)["variants"]
        assert isinstance(variants, list)
        return {(v["version"], v["variant"]): v["downloads"] for v in variants}

    def signing(self) -> dict[str, Any]:
        """Whether this registry's metadata is TUF-signed, and until when (registry/tuf_repo.py)."""
        tuf = self.registry.tuf
        status = signing_status(tuf.folder.parent) if tuf is not None else {"signed": False}
        return {"signed": bool(status["signed"]), "expires": status.get("timestamp_expires")}

    def publisher_signed(self, digests: Iterable[str]) -> frozenset[str]:
        """The manifest digests among ``digests`` that carry a publisher signature."""
        tuf = self.registry.tuf
        return frozenset(d for d in digests if tuf is not None and tuf.signature(d) is not None)

    # ---- pages ----

    def catalog(self, q: str) -> HTMLResponse:
        if len(q) > _MAX_QUERY:
            return self.error(400, f"the search is {len(q)} characters; at most {_MAX_QUERY}")
        hits = self.registry.search(q, limit=_SEARCH_LIMIT + 1)
        return self.page("catalog.html", title="Models", q=q, models=hits[:_SEARCH_LIMIT],
                         truncated=len(hits) > _SEARCH_LIMIT, crumbs=())

    def model(self, name: str, version: str | None) -> HTMLResponse:
        index = self.model_index(name)
        downloads = self.downloads(index.name)
        versions = _versions(index, downloads)
        if version is None:
            current = latest_version(index.entries) or (versions[0].version if versions else "")
        else:
            current = str(check_version(version, "version", "query"))
            if current not in {v.version for v in versions}:
                raise NotFoundError(f"{index.name} has no version {current}")
        entries = [e for e in index.entries if str(e.version) == current]
        return self.page(
            "model.html", title=index.name, name=index.name, current=current, versions=versions,
            groups=_groups(entries, downloads), chart=quality_chart(entries), entries=entries,
            contexts=MEMORY_CONTEXTS, total_downloads=sum(downloads.values()), signing=self.signing(),
            signed=self.publisher_signed(e.manifest for e in entries),
            crumbs=((f"/models/{quote(index.name)}", index.name),),
        )

    def variant(self, name: str, version: str, variant: str, base: str) -> HTMLResponse:
        index = self.model_index(name)
        v = check_version(version, "version", "request path")
        variant = check_variant_id(variant, "variant", "request path")
        entry = next((e for e in index.entries if e.version == v and e.variant == variant), None)
        if entry is None:
            raise NotFoundError(f"{index.name} {v} has no variant {variant}")
        manifest = parse_manifest(self.registry.manifest_bytes(entry.manifest, count=False),
                                  document=f"manifest {entry.manifest}")
        siblings = sum(1 for e in index.entries if e.version == v and e.format is entry.format
                       and e.precision is entry.precision)
        return self.page(
            "variant.html", title=f"{index.name} {v} {variant}", name=index.name, entry=entry, m=manifest,
            downloads=self.downloads(index.name).get((str(v), variant), 0), contexts=MEMORY_CONTEXTS,
            commands=_commands(base, manifest, siblings), signing=self.signing(),
            publisher_signed=bool(self.publisher_signed([entry.manifest])),
            crumbs=((f"/models/{quote(index.name)}", index.name),
                    (f"/models/{quote(index.name)}?version={quote(str(v))}", str(v)),
                    (f"/models/{quote(index.name)}/{quote(str(v))}/{quote(variant)}", variant)),
        )

    def device_context(self, fields: Mapping[str, str]) -> dict[str, Any]:
        """The device form, filled in with ``fields``."""
        models = self.registry.model_names()
        samples = list(self.advisor.samples()) if self.advisor is not None else []
        prefers = self.advisor.preferences() if self.advisor is not None else ()
        form = {"model": fields.get("model", "") or (models[0] if models else ""),
                "sample": fields.get("sample", ""), "profile": fields.get("profile", ""),
                "prefer": fields.get("prefer", "") or (prefers[0] if prefers else ""),
                "context": fields.get("context", "")}
        return {"title": "What fits my device", "models": models, "samples": samples, "prefers": prefers,
                "form": form, "advised": False, "problem": "", "crumbs": (("/device", "What fits my device"),)}

    def device(self, fields: Mapping[str, str], *, submitted: bool) -> HTMLResponse:
        context = self.device_context(fields)
        if not submitted:
            return self.page("device.html", **context)
        try:
            context.update(self._advise(context["form"]))
        except _FormError as exc:
            return self.page("device.html", exc.status, **{**context, "problem": exc.message})
        except RegistryError as exc:
            return self.page("device.html", exc.status, **{**context, "problem": exc.message})
        except (PhiGetError, ValueError) as exc:  # the pasted profile, or a value the advisor refused
            return self.page("device.html", 400, **{**context, "problem": str(exc)})
        return self.page("device.html", **context)

    def form_problem(self, exc: _FormError) -> HTMLResponse:
        """The empty device form with what was wrong with the request as a whole (size, encoding)."""
        return self.page("device.html", exc.status, **{**self.device_context({}), "problem": exc.message})

    def _advise(self, form: Mapping[str, str]) -> dict[str, Any]:
        if self.advisor is None:
            raise _FormError(501, "this registry was started without the resolver, so it cannot say what fits; "
                                  "run it with `phi-get registry serve`")
        samples = self.advisor.samples()
        pasted = form["profile"].strip()
        if pasted:
            device = parse_device_profile(pasted, document="pasted device profile")
            source = "the pasted profile"
        elif form["sample"]:
            if form["sample"] not in samples:
                raise _FormError(400, f"no sample device named {form['sample'][:64]!r}; "
                                      f"the samples are {', '.join(samples)}")
            device = samples[form["sample"]]
            source = f"the sample profile {form['sample']}"
        else:
            raise _FormError(400, "pick a sample device or paste the output of `phi-get device --json`")
        if not form["model"]:
            raise _FormError(400, "this registry has no models yet")
        context: int | None = None
        if form["context"].strip():
            text = form["context"].strip()
            if not text.isdigit() or not 1 <= int(text) <= 1 << 24:
                raise _FormError(400, f"the context length is a whole number of tokens from 1 to {1 << 24}, "
                                      f"not {text[:20]!r}")
            context = int(text)
        prefers = self.advisor.preferences()
        if form["prefer"] not in prefers:
            raise _FormError(400, f"prefer is one of {', '.join(prefers)}, not {form['prefer'][:20]!r}")
        index = self.model_index(form["model"])
        advice: Advice = self.advisor.advise(device, index, prefer=form["prefer"], context=context)
        entries = {(str(e.version), e.variant): e for e in index.entries}
        return {"advised": True, "advice": advice, "entries": entries, "name": index.name, "source": source,
                "device": _profile_summary(device)}


def web_router(registry: Registry, advisor: Advisor | None = None) -> APIRouter:
    """The catalog pages over ``registry``; ``advisor`` answers "what fits my device" (None: the page says so)."""
    pages = _Pages(registry, advisor)
    router = APIRouter(include_in_schema=False)

    def guarded(call: Callable[[], HTMLResponse]) -> HTMLResponse:
        """A page, or a page that says what was wrong (a 4xx, never a 500 for bad input)."""
        try:
            return call()
        except RegistryError as exc:
            return pages.error(exc.status, exc.message)
        except PhiGetError as exc:  # a bad name, version or variant id in the path or query
            return pages.error(400, str(exc))

    @router.get("/", response_class=HTMLResponse)
    def catalog(q: str = "") -> HTMLResponse:
        return guarded(lambda: pages.catalog(q))

    @router.get("/models/{name}", response_class=HTMLResponse)
    def model(name: str, version: str | None = None) -> HTMLResponse:
        return guarded(lambda: pages.model(name, version))

    @router.get("/models/{name}/{version}/{variant}", response_class=HTMLResponse)
    def variant(name: str, version: str, variant: str, request: Request) -> HTMLResponse:
        base = str(request.base_url).rstrip("/")
        return guarded(lambda: pages.variant(name, version, variant, base))

    @router.get("/device", response_class=HTMLResponse)
    def device_form(request: Request) -> HTMLResponse:
        """The form; with ``?sample=`` (a link, no form post) also the advice for that sample."""
        fields = {k: v for k, v in request.query_params.items() if k in ("model", "sample", "prefer", "context")}
        return guarded(lambda: pages.device(fields, submitted=bool(fields.get("sample"))))

    @router.post("/device", response_class=HTMLResponse)
    async def device_submit(request: Request) -> HTMLResponse:
        try:
            fields = await _read_form(request)
        except _FormError as exc:
            problem = exc
            return await run_in_threadpool(guarded, lambda: pages.form_problem(problem))
        return await run_in_threadpool(guarded, lambda: pages.device(fields, submitted=True))

    @router.get("/static/catalog.css")
    def stylesheet() -> Response:
        return Response(pages.css, media_type="text/css",
                        headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"})

    return router
