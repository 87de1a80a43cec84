"""The catalog's SQL tables (SQLModel rows); they never leave ``registry/``.

* ``models``: one row per model name, with ``revision`` bumped by every
  publish or yank (the index document's cache key).
* ``variants``: one row per published (name, version, variant), unique: the
  database itself decides which of two concurrent publishes wins.  ``entry``
  holds the index entry's JSON (without ``yanked``) so an index document is
  built without re-reading manifests.
* ``manifests``: canonical manifest bytes by digest.
* ``blob_refs``: which blobs each committed manifest references (gc keeps them).
* ``tokens``: publish/admin tokens, stored as sha256 of the secret only.

Imports sqlmodel only.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["BlobRefRow", "ManifestRow", "ModelRow", "TokenRow", "VariantRow"]


class ModelRow(SQLModel, table=True):
    __tablename__ = "models"

    name: str = Field(primary_key=True, max_length=128)
    revision: int = 0
    created: float


class ManifestRow(SQLModel, table=True):
    __tablename__ = "manifests"

    digest: str = Field(primary_key=True, max_length=71)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class VariantRow(SQLModel, table=True):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("model", "version", "variant", name="uq_variant"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(foreign_key="models.name", index=True, max_length=128)
    version: str = Field(max_length=64)
    variant: str = Field(max_length=96)
    manifest: str = Field(foreign_key="manifests.digest", unique=True, max_length=71)
    entry: str = Field(sa_column=Column(Text, nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    yanked: str | None = Field(default=None, max_length=1024)
    downloads: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created: float


class BlobRefRow(SQLModel, table=True):
    __tablename__ = "blob_refs"

    manifest: str = Field(foreign_key="manifests.digest", primary_key=True, max_length=71)
    sha256: str = Field(primary_key=True, index=True, max_length=64)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class TokenRow(SQLModel, table=True):
    __tablename__ = "tokens"

    id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(max_length=64)
    scopes: str = Field(max_length=4096)  # space-separated
    note: str = Field(default="", max_length=256)
    created: float
    expires: float | None = None
    revoked: bool = False
