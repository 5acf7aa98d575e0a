import numpy as np
import pytest
from raw_datasets import FACE_68, flat_frame, grey_level, make_300w_lp

from aunet.data.store import FrameStore
from aunet.faces.crop import crop_face
from data_prep.__main__ import run
from data_prep.common import ConversionError


def test_converts_faces_with_landmark_files(tmp_path, capsys):
    root = make_300w_lp(tmp_path / "300W_LP")
    run(["300w-lp", "--root", str(root), "--out", str(tmp_path / "lp.h5"), "--workers", "1"])
    store = FrameStore(tmp_path / "lp.h5")
    assert store.dataset == "300w-lp"
    assert store.au_names == ()
    assert store.subjects.tolist() == ["AFW", "AFW"]  # AFW_2_0 has no landmarks: left out
    assert store.sequences.tolist() == ["AFW_1_0", "AFW_3_0"]
    assert store.frames.tolist() == [1, 3]
    assert abs(store.image(1).mean() - grey_level(3)) < 4
    reference = crop_face(flat_frame(1), FACE_68).landmarks
    np.testing.assert_allclose(store.landmarks(0), reference, atol=1e-3)
    out = capsys.readouterr().out
    assert "skipping subsets without a landmarks/ folder: AFW_Flip" in out
    assert "AFW            2         0             1           0               0  converted" in out


def test_missing_landmarks_folder_is_named(tmp_path):
    (tmp_path / "AFW").mkdir()
    with pytest.raises(ConversionError, match=r"landmarks: folder missing; expected the 300W-LP"):
        run(["300w-lp", "--root", str(tmp_path), "--out", str(tmp_path / "lp.h5")])


def test_bad_landmark_file_is_named(tmp_path, capsys):
    from scipy.io import savemat

    root = make_300w_lp(tmp_path / "300W_LP")
    savemat(root / "landmarks" / "AFW" / "AFW_3_0_pts.mat", {"pts_3d": FACE_68})
    with pytest.raises(ConversionError, match="1 of 1 subject"):
        run(["300w-lp", "--root", str(root), "--out", str(tmp_path / "lp.h5"), "--workers", "1"])
    assert "AFW_3_0_pts.mat: no 'pts_2d' array (found: pts_3d)" in capsys.readouterr().out
