"""The store's faster writing paths (issue 32) give what h5py and HDF5 give.

Each path is checked against HDF5 itself: the checksum HDF5's Fletcher-32
filter writes, HDF5 decoding the chunks mexkit encodes, h5py's own attribute
writing, and the content hash recomputed from the stored attributes by
``validate_store``.
"""
from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from mexkit.io.store import StoreWriter, open_store, validate_store, write_staged_sample
from mexkit.io.store.chunks import encode_chunk, encodes_itself, fletcher32, write_array
from mexkit.io.store.format import _clean_attr, _hash_attrs, attrs_digest
from mexkit.io.store.write import _set_attrs


def _hdf5_chunk(array: np.ndarray) -> bytes:
    """The stored bytes of a one-chunk array as HDF5 writes it (shuffle, gzip, Fletcher-32)."""
    with h5py.File(io.BytesIO(), "w") as fh:
        ds = fh.create_dataset("a", data=array, chunks=array.shape, shuffle=True,
                               compression="gzip", compression_opts=4, fletcher32=True)
        return ds.id.read_direct_chunk((0,) * array.ndim)[1]


@pytest.mark.parametrize("n_bytes", [2, 3, 7, 360 * 2, 360 * 2 + 1, 5000, 100_001, 5_000_001])
def test_fletcher32_is_the_checksum_hdf5_writes(n_bytes):
    rng = np.random.default_rng(n_bytes)
    for data in (rng.integers(0, 256, n_bytes, dtype=np.uint8),
                 np.full(n_bytes, 255, np.uint8)):  # sums that are multiples of 65535
        stored = _hdf5_chunk(data)
        payload, checksum = stored[:-4], int.from_bytes(stored[-4:], "little")
        assert fletcher32(payload) == checksum


def test_fletcher32_of_nothing_and_of_zeros():
    assert fletcher32(b"") == 0
    assert fletcher32(bytes(10)) == 0
    # one word 0x0102: sum1 = 258, sum2 = 258
    assert fletcher32(b"\x01\x02") == (258 << 16) | 258


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_encoded_chunks_read_back_exactly(dtype):
    rng = np.random.default_rng(1)
    flow = (rng.standard_normal((3, 2, 64, 96)) * 2).astype(dtype)
    flow[1, 0, :5] = 0.0  # runs, as deflate's run-length matching finds them
    with h5py.File(io.BytesIO(), "w") as fh:
        ds = write_array(fh, "flow", flow, (1, 2, 64, 96))
        assert ds.compression == "gzip" and ds.shuffle and ds.fletcher32
        assert np.array_equal(ds[()], flow)  # HDF5 decodes and checks every chunk
        stored = ds.id.read_direct_chunk((1, 0, 0, 0))[1]
    assert stored == encode_chunk(flow[1])


def test_a_damaged_encoded_chunk_fails_its_checksum():
    flow = np.random.default_rng(2).standard_normal((1, 2, 32, 32)).astype(np.float32)
    chunk = bytearray(encode_chunk(flow[0]))
    chunk[len(chunk) // 2] ^= 0xFF
    with h5py.File(io.BytesIO(), "w") as fh:
        ds = fh.create_dataset("flow", shape=flow.shape, dtype=flow.dtype, chunks=flow.shape,
                               compression="gzip", shuffle=True, fletcher32=True)
        ds.id.write_direct_chunk((0, 0, 0, 0), bytes(chunk), 0)
        with pytest.raises(OSError):
            ds[()]


def test_only_large_float_arrays_chunked_per_frame_are_encoded_here():
    big = np.zeros((2, 2, 64, 64), np.float32)
    assert encodes_itself(big, (1, 2, 64, 64), "gzip")
    assert not encodes_itself(big, (1, 2, 64, 64), "lzf")
    assert not encodes_itself(big.astype(np.uint8), (1, 2, 64, 64), "gzip")
    assert not encodes_itself(big[:, :, :8, :8], (1, 2, 8, 8), "gzip")  # small: HDF5 writes
    assert not encodes_itself(big.astype(">f4"), (1, 2, 64, 64), "gzip")
    assert not encodes_itself(big, (2, 2, 64, 64), "gzip")


VALUES = {"text": "annotation", "empty_text": "", "accented": "sujet ünï", "int": 3,
          "big_int": np.int64(2 ** 40), "float": 2.5, "nan": float("nan"), "flag": True,
          "np_flag": np.bool_(False), "vector": np.arange(3, dtype=np.float32),
          "matrix": np.eye(2, dtype=np.int16), "listed": [1, "a", None], "mapping": {"k": 1},
          "none": None, "f32": np.float32(0.1), "u8": np.uint8(7)}


def _stored(setter) -> dict:
    with h5py.File(io.BytesIO(), "w") as fh:
        g = fh.create_group("s")
        setter(g)
        out = {}
        for name in g.attrs:
            attr = g.attrs.get_id(name)
            t = attr.get_type()
            cset = t.get_cset() if t.get_class() == h5py.h5t.STRING else None
            out[name] = (attr.dtype, attr.shape, t.get_class(), cset, g.attrs[name])
        h = __import__("hashlib").sha256()
        _hash_attrs(h, g)
        return out, h.hexdigest()


def test_attributes_are_stored_as_h5py_stores_them():
    ours, our_hash = _stored(lambda g: _set_attrs(g, VALUES))
    theirs, their_hash = _stored(lambda g: [g.attrs.__setitem__(k, _clean_attr(v))
                                           for k, v in VALUES.items()
                                           if _clean_attr(v) is not None])
    assert ours.keys() == theirs.keys() == {k for k, v in VALUES.items() if v is not None}
    for name in ours:
        a, b = ours[name], theirs[name]
        assert a[:4] == b[:4], name
        assert type(a[4]) is type(b[4]), name
        np.testing.assert_array_equal(np.asarray(a[4]), np.asarray(b[4]), err_msg=name)
    assert our_hash == their_hash


def test_the_attribute_digest_from_values_is_the_one_read_back():
    clean = {k: _clean_attr(v) for k, v in VALUES.items()}
    _, read_back = _stored(lambda g: _set_attrs(g, clean))
    assert attrs_digest(clean) == read_back


@pytest.mark.parametrize("odd", ["nul\x00inside", np.zeros(0, np.float32),
                                 np.arange(3, dtype=">i4"), "surrogate \udcff"])
def test_values_whose_stored_form_is_uncertain_are_read_back_instead(odd):
    assert attrs_digest({"fine": "x", "odd": _clean_attr(odd)}) is None


def test_a_store_from_staged_samples_validates(tmp_path):
    # the content hash is assembled from the digests the staged files carry;
    # validate_store recomputes it from the stored attributes
    rng = np.random.default_rng(3)
    out = tmp_path / "x.flow.h5"
    with StoreWriter(out, stage="flow", params={"p": 1}) as writer:
        for i, odd in enumerate(["plain", np.arange(3, dtype=">i4")]):
            writer.write_sample(f"s{i}", f"key{i}", {
                "flow": rng.standard_normal((2, 2, 80, 80)).astype(np.float32),
                "pairs": np.array([[0, 1], [1, 2]])}, {"note": odd, "subject": f"p{i}"})
        writer.finalize([f"s{i}" for i in range(2)], {f"s{i}": f"key{i}" for i in range(2)})
    assert validate_store(out) == []
    with open_store(out) as store:
        assert store["s0"].attrs["note"] == "plain"
        assert store["s1"].attrs["note"].tolist() == [0, 1, 2]
        assert store["s1"].read("flow").shape == (2, 2, 80, 80)


def test_a_staged_file_without_its_digest_is_read_back(tmp_path):
    # staged by an earlier version (no digest attribute): assembly reads its attributes
    from mexkit.io.store.write import _DIGEST_ATTR, _DIGEST_VERSION_ATTR

    out = tmp_path / "y.flow.h5"
    with StoreWriter(out, stage="flow", params={}) as writer:
        staged = write_staged_sample(writer.staging, "s0", "k0",
                                     {"flow": np.ones((1, 2, 70, 70), np.float32)},
                                     {"subject": "p0"})
        with h5py.File(staged, "r+") as fh:
            del fh.attrs[_DIGEST_ATTR]
            del fh.attrs[_DIGEST_VERSION_ATTR]
        writer.register("s0", "k0", staged)
        writer.finalize(["s0"], {"s0": "k0"})
    assert validate_store(out) == []


def test_sample_attributes_read_while_checking_equal_h5py_reading(tmp_path):
    # open_store reads each sample's attributes while it checks their types; a sample
    # view's attributes are what decoding h5py's own reading gives
    from mexkit.io.store.format import _decode_attrs, quote_id

    out = tmp_path / "z.flow.h5"
    values = {k: v for k, v in VALUES.items() if k not in ("nan",)}
    with StoreWriter(out, stage="flow", params={}) as writer:
        writer.write_sample("a/b", "k", {"flow": np.zeros((1, 2, 8, 8), np.float32)}, values)
        writer.finalize(["a/b"], {"a/b": "k"})
    with open_store(out) as store:
        view = store["a/b"].attrs
    with h5py.File(out, "r") as fh:
        direct = _decode_attrs(fh["samples"][quote_id("a/b")], "here")
    assert view.keys() == direct.keys()
    for name in direct:
        np.testing.assert_array_equal(np.asarray(view[name]), np.asarray(direct[name]))
        assert type(view[name]) is type(direct[name]), name


def test_whole_array_reads_equal_h5py_reads(tmp_path):
    # SampleView.read of a whole array goes through h5py's low-level read
    from mexkit.io.store.read import _read_whole

    arrays = {"scalar": np.float64(2.5), "empty": np.zeros((0, 3), np.float32),
              "frames": np.arange(2 * 5 * 4 * 3, dtype=np.uint8).reshape(2, 5, 4, 3),
              "nan": np.array([np.nan, 1.0], np.float32), "big_endian": np.arange(4, dtype=">i4")}
    with h5py.File(tmp_path / "a.h5", "w") as fh:
        for name, value in arrays.items():
            fh.create_dataset(name, data=value)
    with h5py.File(tmp_path / "a.h5", "r") as fh:
        for name in arrays:
            ours, theirs = _read_whole(fh, name), np.asarray(fh[name][...])
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
