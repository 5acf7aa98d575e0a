import pickle

import numpy as np
import pytest
import torch
from factories import write_store
from torch.utils.data import DataLoader

from aunet.data.augment import AugmentConfig, Resize, TrainAugmentation
from aunet.data.dataset import FrameDataset, collate_frames
from aunet.data.store import FrameStore


@pytest.fixture
def store_path(tmp_path):
    return write_store(tmp_path / "s.h5", ["SN001", "SN002", "SN003"], 4, image_size=24)


def batches(dataset, num_workers=0, batch_size=5):
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_frames
    )
    return list(loader)


def test_samples_are_the_store_rows_they_index(store_path):
    store = FrameStore(store_path)
    dataset = FrameDataset(store, indices=[5, 2])
    assert len(dataset) == 2
    sample = dataset[0]
    assert sample["index"] == 5
    np.testing.assert_array_equal(sample["image"], store.image(5))
    np.testing.assert_array_equal(sample["landmarks"], store.landmarks(5))
    np.testing.assert_array_equal(sample["au"], store.au(5))


def test_batch_format(store_path):
    store = FrameStore(store_path)
    dataset = FrameDataset(store_path, transform=Resize(16))
    batch = batches(dataset)[0]
    assert set(batch) == {"image", "landmarks", "au", "index"}
    assert batch["image"].dtype == torch.uint8
    assert batch["image"].shape == (5, 3, 16, 16)
    assert batch["landmarks"].dtype == torch.float32
    assert batch["landmarks"].shape == (5, 68, 2)
    assert batch["au"].dtype == torch.float32
    assert batch["au"].shape == (5, len(store.au_names))
    assert batch["index"].dtype == torch.int64
    assert batch["index"].tolist() == [0, 1, 2, 3, 4]
    # Channel c of pixel (y, x) is the crop's, and landmarks are in the resized crop's pixels.
    image, points = Resize(16)(store.image(3), store.landmarks(3))
    np.testing.assert_array_equal(batch["image"][3].permute(1, 2, 0).numpy(), image)
    np.testing.assert_allclose(batch["landmarks"][3].numpy(), points)
    assert batch["image"].float().div(255).shape == (5, 3, 16, 16)


def test_landmark_only_samples_have_an_empty_au(store_path):
    batch = batches(FrameDataset(store_path, with_au=False))[0]
    assert batch["au"].shape == (5, 0)


def test_jpeg_store(tmp_path):
    path = write_store(tmp_path / "j.h5", ["SN001"], 2, image_size=24, encoding="jpeg")
    batch = batches(FrameDataset(path))[0]
    assert batch["image"].shape == (2, 3, 24, 24)
    assert batch["image"].float().std() > 10  # decoded faces, not blank


def test_the_file_is_opened_lazily_and_never_pickled_open(store_path):
    dataset = FrameDataset(store_path)
    assert dataset.store._handle is None
    dataset[0]
    assert dataset.store._handle is not None
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.store._handle is None
    np.testing.assert_array_equal(copy[1]["image"], dataset[1]["image"])


def test_rows_outside_the_store_are_refused_naming_it(store_path):
    with pytest.raises(IndexError, match=r"s\.h5.*\[12\]"):
        FrameDataset(store_path, indices=[0, 12])


def test_two_workers_load_the_same_batches_as_the_main_process(store_path):
    dataset = FrameDataset(store_path, transform=Resize(16))
    alone, workers = batches(dataset), batches(dataset, num_workers=2)
    assert len(alone) == len(workers) == 3
    for one, other in zip(alone, workers, strict=True):
        for key in one:
            torch.testing.assert_close(one[key], other[key], equal_nan=True)


def test_workers_augment_differently_and_reproducibly_given_the_seed(store_path):
    # Eight copies of one row: two forked workers must not repeat each other's augmentations,
    # and the same torch seed must give the same augmentations again.
    augment = TrainAugmentation(16, AugmentConfig(occlusion=0.0))
    dataset = FrameDataset(store_path, indices=[0] * 8, transform=augment)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(torch.cat([b["landmarks"] for b in batches(dataset, 2, batch_size=2)]))
    torch.testing.assert_close(runs[0], runs[1])
    # Batches alternate between the workers; their first samples were drawn from each one's
    # first random numbers.
    first_of_worker_0, first_of_worker_1 = runs[0][0], runs[0][2]
    assert not torch.allclose(first_of_worker_0, first_of_worker_1)
