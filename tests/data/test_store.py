import h5py
import numpy as np
import pytest
from skimage.data import astronaut

from aunet.data.store import SCHEMA_VERSION, FrameStore, StoreError, decode_jpeg, encode_jpeg
from aunet.data.store_writer import FrameStoreWriter, merge_stores

AUS = ("AU01", "AU12")


def rows(n, side=16, start=0, subject="SN001", **optional):
    rng = np.random.default_rng(start)
    return dict(
        images=rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8),
        landmarks=rng.uniform(0, side, (n, 68, 2)),
        au=rng.integers(0, 6, (n, len(AUS))).astype(float),
        subject=[subject] * n,
        frame=list(range(start + 1, start + n + 1)),
        **optional,
    )


def write(path, *blocks, encoding="raw", au_names=AUS, side=16):
    with FrameStoreWriter(path, "test", au_names, image_size=side, encoding=encoding) as writer:
        for block in blocks:
            writer.append(**block)
    return FrameStore(path)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_round_trip(tmp_path, encoding):
    first = rows(3, sequence=["a"] * 3, partition=["train"] * 3)
    second = rows(2, start=3, subject="SN002", sequence=["b"] * 2, partition=["devel"] * 2)
    store = write(tmp_path / "s.h5", first, second, encoding=encoding)
    assert len(store) == 5
    assert (store.dataset, store.au_names, store.image_size, store.encoding) == (
        "test",
        AUS,
        16,
        encoding,
    )
    assert store.subjects.tolist() == ["SN001"] * 3 + ["SN002"] * 2
    assert store.frames.tolist() == [1, 2, 3, 4, 5]
    assert store.sequences.tolist() == ["a", "a", "a", "b", "b"]
    assert store.partitions.tolist() == ["train"] * 3 + ["devel"] * 2
    np.testing.assert_allclose(store.landmarks(4), second["landmarks"][1], rtol=1e-6)
    np.testing.assert_array_equal(store.au(1), first["au"][1])
    np.testing.assert_array_equal(store.read_all("au")[3:], second["au"])
    if encoding == "raw":
        np.testing.assert_array_equal(store.image(4), second["images"][1])
    else:
        assert store.image(4).shape == (16, 16, 3)
        assert store.attrs["jpeg_quality"] == 95


def test_jpeg_keeps_colour_order_and_detail():
    face = astronaut()[64:320, 128:384]  # a 256 x 256 crop around her face
    decoded = decode_jpeg(encode_jpeg(face, quality=95))
    assert decoded.dtype == np.uint8
    assert decoded.shape == face.shape
    psnr = 10 * np.log10(255**2 / np.mean((decoded.astype(float) - face) ** 2))
    assert psnr > 35
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    assert decode_jpeg(encode_jpeg(red))[..., 0].min() > 240  # RGB stays RGB


def test_landmark_only_store_without_aus(tmp_path):
    block = rows(2)
    block["au"] = np.zeros((2, 0))
    store = write(tmp_path / "lm.h5", block, au_names=())
    assert store.au_names == ()
    assert store.au(1).shape == (0,)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"au": [[0.0, 7.0]] * 2}, r"au\[0, 'AU12'\] = 7.0; intensities must lie in 0-5"),
        ({"images": np.zeros((2, 8, 8, 3), np.uint8)}, "images must be uint8 N x 16 x 16 x 3"),
        ({"landmarks": np.zeros((2, 66, 2))}, "landmarks must be N x 68 x 2"),
        ({"partition": ["train", "valid"]}, r"partition values \['valid'\]"),
        ({"frame": [1]}, "field 'frame' has 1 rows, images 2"),
    ],
)
def test_writer_rejects_bad_rows(tmp_path, change, message):
    block = rows(2, **({"partition": ["train", "train"]} if "partition" in change else {}))
    block.update(change)
    with pytest.raises(StoreError, match=message):
        write(tmp_path / "bad.h5", block)


def test_failed_write_leaves_neither_file_nor_partial(tmp_path):
    path = tmp_path / "s.h5"
    write(path, rows(2))
    before = path.read_bytes()

    def interrupted_write():
        with FrameStoreWriter(path, "test", AUS, 16) as writer:
            writer.append(**rows(3))
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted_write()
    assert path.read_bytes() == before  # the old store is untouched
    assert not (tmp_path / "s.h5.partial").exists()


def test_reader_names_a_missing_store_and_how_to_build_it(tmp_path):
    with pytest.raises(StoreError, match="no such frame store; build it with `make prep"):
        FrameStore(tmp_path / "none.h5")
    (tmp_path / "half.h5.parts").mkdir()
    with pytest.raises(StoreError, match=r"did not finish .* re-run the same"):
        FrameStore(tmp_path / "half.h5")


def test_reader_rejects_truncated_file(tmp_path):
    path = tmp_path / "s.h5"
    write(path, rows(4))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(StoreError, match=r"not a readable HDF5 file.*rebuild it with"):
        FrameStore(path)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (SCHEMA_VERSION + 1, "written by a newer aunet.*update aunet"),
        (SCHEMA_VERSION - 1, "older than this aunet's.*python -m data_prep test"),
    ],
)
def test_reader_checks_schema_version(tmp_path, version, message):
    path = tmp_path / "s.h5"
    write(path, rows(1))
    with h5py.File(path, "a") as file:
        file.attrs["schema_version"] = version
    with pytest.raises(StoreError, match=message):
        FrameStore(path)


def test_reader_names_missing_dataset(tmp_path):
    path = tmp_path / "s.h5"
    write(path, rows(1))
    with h5py.File(path, "a") as file:
        del file["landmarks"]
    with pytest.raises(StoreError, match=r"missing dataset\(s\) \['landmarks'\]"):
        FrameStore(path)


def test_merge_copies_rows_and_jpeg_bytes_unchanged(tmp_path):
    a = write(tmp_path / "a.h5", rows(2, partition=["train"] * 2), encoding="jpeg")
    empty = write(tmp_path / "empty.h5", encoding="jpeg")  # a subject with no usable frame
    b = write(
        tmp_path / "b.h5", rows(3, start=2, subject="F2", partition=["devel"] * 3), encoding="jpeg"
    )
    n = merge_stores([a.path, empty.path, b.path], tmp_path / "all.h5", attrs={"note": "x"})
    merged = FrameStore(tmp_path / "all.h5")
    assert n == len(merged) == 5
    assert merged.attrs["note"] == "x"
    assert merged.subjects.tolist() == ["SN001"] * 2 + ["F2"] * 3
    assert merged.partitions.tolist() == ["train"] * 2 + ["devel"] * 3
    with h5py.File(b.path) as source, h5py.File(merged.path) as result:
        assert source["images"][1].tobytes() == result["images"][3].tobytes()
    np.testing.assert_array_equal(merged.read_all("au")[2:], b.read_all("au"))


def test_merge_refuses_parts_that_disagree(tmp_path):
    a = write(tmp_path / "a.h5", rows(1))
    b = write(tmp_path / "b.h5", rows(1), encoding="jpeg")
    with pytest.raises(StoreError, match="cannot join"):
        merge_stores([a.path, b.path], tmp_path / "all.h5")
    assert not (tmp_path / "all.h5").exists()


def test_pickled_store_reopens_its_own_handle(tmp_path):
    import pickle

    store = write(tmp_path / "s.h5", rows(2), encoding="jpeg")
    store.image(0)  # opens this process's handle
    copy = pickle.loads(pickle.dumps(store))  # what a spawned DataLoader worker receives
    np.testing.assert_array_equal(copy.image(1), store.image(1))
    store.close()
    assert store.au(1).shape == (2,)  # reopens after close
