"""RITM's published checkpoints by name: a registry, a download cache and the name → checkpoint resolver.

    edgeclick weights list | get NAME | add NAME FILE
    resolve_checkpoint("ritm-hrnet18s")  # → the imported edgeclick checkpoint in the cache (never downloads)

registry.py  the names, files, URLs, published sizes and NoC (RITM's README)
cache.py     the cache folder, its layout, the sha256 record, resolve_checkpoint
download.py  HTTP download into a `.part`, resumed with Range requests
install.py   get / add: checks, atomic rename, record, import-ritm
cli.py       `edgeclick weights`
"""
from __future__ import annotations

from .cache import CACHE_ENV, CachePaths, Record, cache_root, is_cached, resolve_checkpoint
from .registry import REGISTRY, URL_BASE_ENV, WeightsEntry, WeightsError, lookup

__all__ = ["CACHE_ENV", "CachePaths", "REGISTRY", "Record", "URL_BASE_ENV", "WeightsEntry", "WeightsError",
           "cache_root", "is_cached", "lookup", "resolve_checkpoint"]
