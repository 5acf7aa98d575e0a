from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from factories import write_store
from torch.utils.data import DistributedSampler

from aunet.aus import DATASET_AUS
from aunet.data.datamodule import AUDataModule, LandmarkDataModule
from aunet.data.folds import DISFA_FOLDS, DISFA_SUBJECTS

FAST = {"num_workers": 0, "batch_size": 4, "image_size": 16}


@pytest.fixture(scope="module")
def disfa(tmp_path_factory):
    """All 27 DISFA subjects, two frames each; row 0 (SN001, part 1) has no landmarks and
    row 6 (SN004, part 3) no labels."""
    path = tmp_path_factory.mktemp("disfa") / "disfa.h5"
    return write_store(
        path, DISFA_SUBJECTS, 2, dataset="disfa", image_size=24, no_landmarks=[0], no_labels=[6]
    )


def subjects_of(data, stage):
    return set(data.store.subjects[data.rows(stage)])


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_disfa_folds_are_subject_exclusive_and_hold_out_part_k(disfa, fold):
    data = AUDataModule(disfa, fold=fold, **FAST)
    data.setup("fit")
    held_out = subjects_of(data, "val")
    assert held_out == set(DISFA_FOLDS[fold - 1])
    assert subjects_of(data, "test") == subjects_of(data, "predict") == held_out
    assert not subjects_of(data, "train") & held_out
    assert subjects_of(data, "train") | held_out == set(DISFA_SUBJECTS)
    assert data.protocol == "folds"
    assert data.au_names == DATASET_AUS["disfa"]
    assert data.dataset_name == "disfa"


def test_every_frame_is_held_out_by_exactly_one_fold(disfa):
    held_out = np.concatenate([AUDataModule(disfa, fold=k, **FAST).rows("test") for k in (1, 2, 3)])
    assert sorted(held_out.tolist()) == list(range(2 * 27))


def test_frames_without_landmarks_or_labels_are_left_out_of_training_only(disfa):
    fold_of_sn001, fold_of_sn004 = 1, 3
    for row, held_out_in in ((0, fold_of_sn001), (6, fold_of_sn004)):
        for fold in (1, 2, 3):
            data = AUDataModule(disfa, fold=fold, **FAST)
            assert row not in data.rows("train")
            if fold == held_out_in:
                for stage in ("val", "test", "predict"):
                    assert row in data.rows(stage)
    # Their partner frames (rows 1 and 7) do train.
    assert {1, 7} <= set(AUDataModule(disfa, fold=2, **FAST).rows("train").tolist())


def test_synthetic_subjects_with_their_own_names_get_round_robin_folds(tmp_path):
    names = [f"S{i:02d}" for i in range(7)]
    path = write_store(tmp_path / "syn.h5", names, 1, dataset="synthetic", image_size=16)
    held_out = [subjects_of(AUDataModule(path, fold=k, **FAST), "val") for k in (1, 2, 3)]
    assert held_out == [{"S00", "S03", "S06"}, {"S01", "S04"}, {"S02", "S05"}]


def test_an_empty_fold_names_the_file_and_the_missing_subjects(tmp_path):
    path = write_store(tmp_path / "two_parts.h5", DISFA_FOLDS[0] + DISFA_FOLDS[1], 1)
    AUDataModule(path, fold=1, **FAST)  # part 3 missing from training is fine
    with pytest.raises(ValueError, match=r"two_parts\.h5: no frames for the held-out .*SN003"):
        AUDataModule(path, fold=3, **FAST)
    with pytest.raises(ValueError, match=r"fold must be one of 1\.\.3"):
        AUDataModule(path, fold=4, **FAST)


@pytest.mark.parametrize("with_test", [False, True])
def test_partition_protocol(tmp_path, with_test):
    partitions = {"F001": "train", "F002": "train", "M001": "devel", "M002": "test"}
    if not with_test:
        partitions["M002"] = "devel"
    dataset = "fera2017" if with_test else "fera2015"
    path = write_store(
        tmp_path / "p.h5", list(partitions), 2, dataset=dataset, partitions=partitions
    )
    data = AUDataModule(path, **FAST)
    assert data.protocol == "partition"
    assert subjects_of(data, "train") == {"F001", "F002"}
    assert subjects_of(data, "val") == ({"M001"} if with_test else {"M001", "M002"})
    expected_test = {"M002"} if with_test else {"M001", "M002"}
    assert subjects_of(data, "test") == subjects_of(data, "predict") == expected_test
    rows = data.held_out_rows()
    assert set(rows["partition"]) == ({"test"} if with_test else {"devel"})


def test_partition_errors_name_the_file(tmp_path):
    path = write_store(
        tmp_path / "nodev.h5", ["F001"], 2, dataset="bp4d", partitions={"F001": "train"}
    )
    with pytest.raises(ValueError, match=r"nodev\.h5: no frames for partition 'devel'"):
        AUDataModule(path, **FAST)
    path = write_store(
        tmp_path / "p.h5",
        ["F001", "M001"],
        1,
        dataset="bp4d",
        partitions={"F001": "train", "M001": "devel"},
    )
    with pytest.raises(ValueError, match="leave fold at 1"):
        AUDataModule(path, fold=2, **FAST)
    path = write_store(tmp_path / "odd.h5", ["A"], 1, dataset="mine", au_names=["AU12"])
    with pytest.raises(ValueError, match=r"odd\.h5: dataset 'mine' has no 'partition'"):
        AUDataModule(path, **FAST)


def test_batches_from_every_loader(disfa):
    data = AUDataModule(disfa, fold=2, **FAST)
    data.setup("fit")
    for loader in (data.train_dataloader(), data.val_dataloader(), data.predict_dataloader()):
        batch = next(iter(loader))
        assert batch["image"].dtype == torch.uint8
        assert batch["image"].shape == (4, 3, 16, 16)
        assert batch["landmarks"].shape == (4, 68, 2)
        assert batch["au"].shape == (4, 12)
        assert batch["index"].dtype == torch.int64


def test_evaluation_loaders_keep_every_frame_in_order(disfa):
    data = AUDataModule(disfa, fold=1, **{**FAST, "batch_size": 5})  # 18 frames: 5+5+5+3
    for loader in (data.val_dataloader(), data.test_dataloader(), data.predict_dataloader()):
        seen = torch.cat([batch["index"] for batch in loader]).numpy()
        np.testing.assert_array_equal(seen, data.rows("test"))
    train = data.train_dataloader()
    assert train.drop_last  # ... while training drops a last short batch


def test_two_workers_give_the_same_rows_as_the_main_process(disfa):
    def epoch(loader):
        torch.manual_seed(0)  # the same shuffle
        return torch.cat([batch["index"] for batch in loader])

    alone = AUDataModule(disfa, fold=3, **FAST)
    workers = AUDataModule(disfa, fold=3, **{**FAST, "num_workers": 2})
    assert workers.val_dataloader().persistent_workers
    for one, other in zip(alone.val_dataloader(), workers.val_dataloader(), strict=True):
        for key in one:
            torch.testing.assert_close(one[key], other[key], equal_nan=True)
    torch.testing.assert_close(epoch(alone.train_dataloader()), epoch(workers.train_dataloader()))


def test_subsampling_for_quick_runs(disfa):
    full = AUDataModule(disfa, fold=1, **FAST)
    every = AUDataModule(disfa, fold=1, train_every=2, val_every=3, **FAST)
    np.testing.assert_array_equal(every.rows("train"), full.rows("train")[::2])
    np.testing.assert_array_equal(every.rows("val"), full.rows("val")[::3])
    np.testing.assert_array_equal(every.rows("test"), full.rows("test"))
    capped = AUDataModule(disfa, fold=1, max_train_frames=5, **FAST).rows("train")
    assert len(capped) == 5
    assert capped[0] == full.rows("train")[0]
    assert capped[-1] == full.rows("train")[-1]


def test_held_out_rows_map_predictions_to_subject_frame_and_fold(disfa):
    data = AUDataModule(disfa, fold=2, **FAST)
    rows = data.held_out_rows()
    batch = next(iter(data.predict_dataloader()))
    first = batch["index"][0].item()
    position = rows["index"].tolist().index(first)
    assert rows["subject"][position] == data.store.subjects[first]
    assert rows["frame"][position] == data.store.frames[first]
    assert set(rows["fold"]) == {2}
    assert len(rows["subject"]) == len(rows["index"]) == 18


@pytest.mark.parametrize("stage", ["val_dataloader", "test_dataloader", "predict_dataloader"])
def test_evaluation_under_ddp_shards_without_repeats(disfa, stage):
    data = AUDataModule(disfa, fold=1, **{**FAST, "batch_size": 4})
    shards = []
    for rank in (0, 1):
        kwargs = {"num_replicas": 2, "rank": rank}
        data.trainer = SimpleNamespace(distributed_sampler_kwargs=kwargs)
        loader = getattr(data, stage)()
        # A DistributedSampler, so Lightning keeps it instead of injecting a padding one.
        assert isinstance(loader.sampler, DistributedSampler)
        shards.append(torch.cat([batch["index"] for batch in loader]).tolist())
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == data.rows("test").tolist()  # 18 frames, 9 + 9
    data.trainer = SimpleNamespace(distributed_sampler_kwargs=None)
    assert not isinstance(getattr(data, stage)().sampler, DistributedSampler)


def test_bad_settings_are_refused(disfa):
    with pytest.raises(ValueError, match="batch_size=0"):
        AUDataModule(disfa, batch_size=0)
    path = write_store(disfa.parent / "lm.h5", ["A", "B"], 1, dataset="300w-lp", au_names=[])
    with pytest.raises(ValueError, match="no AU labels"):
        AUDataModule(path, **FAST)


def test_landmark_datamodule_splits_subjects_deterministically(tmp_path):
    names = [f"img{i:03d}" for i in range(40)]
    path = write_store(
        tmp_path / "lm.h5", names, 2, dataset="300w-lp", au_names=[], no_landmarks=[0, 79]
    )
    data = LandmarkDataModule(path, val_fraction=0.1, **FAST)
    again = LandmarkDataModule(path, val_fraction=0.1, **FAST)
    assert data.au_names == ()
    assert len(data.val_subjects) == 4
    assert data.val_subjects == again.val_subjects
    assert not set(data.train_subjects) & set(data.val_subjects)
    assert subjects_of(data, "val") == set(data.val_subjects)
    assert set(data.train_subjects) | set(data.val_subjects) == set(names)
    used = set(data.rows("train").tolist()) | set(data.rows("val").tolist())
    assert used == set(range(1, 79))  # rows 0 and 79 have no landmarks
    batch = next(iter(data.train_dataloader()))
    assert batch["au"].shape == (4, 0)
    assert batch["image"].shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"one\.h5: .*two or more subjects"):
        LandmarkDataModule(write_store(tmp_path / "one.h5", ["A"], 3, au_names=[]), **FAST)


class _RecordIndices(pl.LightningModule):
    """Writes the store rows each rank validates on to ``<folder>/rank<r>.npy``."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def validation_step(self, batch, batch_idx):
        self.seen.append(batch["index"])

    def on_validation_epoch_end(self):
        seen = torch.cat(self.seen).numpy()
        np.save(self.folder / f"rank{self.global_rank}.npy", seen)


@pytest.mark.slow
def test_ddp_validation_sees_every_frame_once(tmp_path):
    path = write_store(tmp_path / "d.h5", DISFA_SUBJECTS, 1, dataset="disfa", image_size=16)
    data = AUDataModule(path, fold=2, **{**FAST, "batch_size": 2})  # 9 held-out frames
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(_RecordIndices(tmp_path), datamodule=data)
    shards = [np.load(tmp_path / f"rank{rank}.npy").tolist() for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == data.rows("val").tolist()
    assert len(shards[0]) + len(shards[1]) == 9  # a padding sampler would give 10


def test_the_package_exports_the_data_api():
    import aunet.data

    assert aunet.data.AUDataModule is AUDataModule
    assert aunet.data.DISFA_FOLDS is DISFA_FOLDS
    assert "FrameDataset" in dir(aunet.data)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        aunet.data.Nope  # noqa: B018
