"""HDF5 feature stores (schema v1): safe reading and crash-safe writing.

A store is one HDF5 file per stage output::

    /                      root attributes: mexkit_schema, stage, mexkit_version,
                           params (JSON), created (ISO 8601), upstream (JSON),
                           store_id, content_hash, failures (JSON)
    /samples/<quoted id>   one group per sample; attributes sample_id, subject,
                           clip, dataset, fps, label, emotion, onset, apex,
                           offset, cache_key, data_hash, ...; numeric datasets
                           (frames, landmarks, flow, pairs, strain, ...)

Datasets are chunked per frame, gzip-compressed with the shuffle filter and
carry fletcher32 checksums.  Only numeric arrays, strings and JSON text are
stored; never pickles.

The file starts with a 512-byte HDF5 *user block* (ignored by every HDF5
reader) that holds a magic line, the file length and the SHA-256 of all bytes
after the user block.  :func:`open_store` checks it before HDF5 parses a single
byte, so a truncated or bit-flipped store is refused with a :class:`StoreError`
instead of reaching the HDF5 C library.  Structural checks (no external or soft
links on any path component, no external storage, no virtual datasets, only
the gzip/lzf/shuffle/fletcher32 filters, no object, reference, opaque or
compound data) follow, still before any data is read.

Before any data is read, every dataset's declared size is compared with
:class:`StoreLimits` and with the bytes it really stores (decompression and
fill-value bombs are refused), attributes per object are bounded and JSON
attributes may not nest deeper than 64 levels.  The root ``content_hash``
(``hash_version`` 2) covers every sample's id, attributes and data hash and
the failures; ``attrs_hash`` covers the root attributes.  Stores without
``hash_version`` (written before) are checked as version 1.

Writing goes through :class:`StoreWriter`: every finished sample is written
to its own small file in a staging folder beside the output (temporary name,
fsync, rename: :mod:`mexkit.io.atomic`), and the store is assembled from
those into a temporary file that is renamed into place.  A killed job
therefore keeps its finished samples, and a resumed job computes only the
rest.  The staging folder is created by mexkit (mode 0700, with a marker
file); a link, another user's folder or a folder of other files is refused,
and only mexkit's own files are ever removed from it.  An existing store is
never opened for writing; a second writer on the same output is refused.

The package holds three modules, one idea each; this one is the public face
and re-exports their public names, so ``from mexkit.io.store import
open_store`` is how callers use it:

- :mod:`mexkit.io.store.format`: the file format and its safety checks (the
  sealed user block, :class:`StoreLimits`, structural checks, attribute
  encoding and hashing);
- :mod:`mexkit.io.store.read`: :func:`open_store`, :class:`Store`,
  :class:`SampleView`, :func:`validate_store`;
- :mod:`mexkit.io.store.write`: :class:`StoreWriter`, the staging folder,
  :func:`write_staged_sample`, :func:`remove_store`.
"""
from __future__ import annotations

from .format import (
    DEFAULT_LIMITS,
    HASH_VERSION,
    SCHEMA_VERSION,
    USERBLOCK_SIZE,
    StoreLimits,
    canonical_json,
    hash_arrays,
    quote_id,
    unquote_id,
)
from .read import SampleView, Store, open_store, validate_store
from .write import (
    StoreWriter,
    check_output,
    prepare_staging,
    remove_store,
    staged_name,
    write_staged_sample,
)

__all__ = [
    "SCHEMA_VERSION",
    "HASH_VERSION",
    "USERBLOCK_SIZE",
    "StoreLimits",
    "DEFAULT_LIMITS",
    "Store",
    "SampleView",
    "StoreWriter",
    "open_store",
    "validate_store",
    "hash_arrays",
    "canonical_json",
    "quote_id",
    "unquote_id",
    "check_output",
    "prepare_staging",
    "remove_store",
    "staged_name",
    "write_staged_sample",
]
