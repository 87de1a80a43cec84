"""The registry: an HTTP catalog of artifacts with content-addressed blobs.

Modules, one noun each: ``errors``, ``storage`` (blob store), ``db`` (engine
factory), ``tables`` (SQL rows), ``convert`` (rows to wire documents),
``tokens``, ``service`` (the logic), ``blobresponse`` and ``http_api`` (HTTP),
``web`` (the catalog pages), ``server`` (uvicorn), ``client`` (publishing),
``export`` (static mirrors), ``testing`` (loopback server and test manifests
for tests) and ``cli``.

Imports :mod:`phi_get.manifests` only, never the resolver or the builders.
This package's ``__init__`` imports nothing, so ``phi-get --help`` stays light.
"""

from __future__ import annotations

__all__: list[str] = []
