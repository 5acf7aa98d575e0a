"""The FAN shipped for the CPU demo: what its record says holds, and shipping writes such a pair."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from aunet import shipped_fan
from aunet.models import FAN, LIGHT_FAN_CONFIG, load_fan, save_fan
from aunet.synthetic.draw import write_store


@pytest.fixture(scope="module")
def landmark_store(tmp_path_factory):
    """Synthetic landmark faces drawn as `make fan`'s store is (128 px), a few per subject."""
    path = tmp_path_factory.mktemp("landmarks") / "synthetic_landmarks.h5"
    write_store(path, subjects=40, frames_per_subject=10, size=128, landmark_only=True, workers=1)
    return path


def test_the_shipped_fan_is_the_recorded_light_fan_and_locates_landmarks_as_recorded(
    landmark_store,
):
    record = shipped_fan.read_provenance()
    assert record["sha256"] == shipped_fan.sha256(shipped_fan.SHIPPED_FAN)
    assert record["file"] == shipped_fan.SHIPPED_FAN.name
    # The one weights file the repository may hold stays small (int8 filters: 1.8 MiB).
    assert record["bytes"] == shipped_fan.SHIPPED_FAN.stat().st_size < 2 * 2**20
    fan = load_fan(shipped_fan.SHIPPED_FAN)
    assert fan.config == LIGHT_FAN_CONFIG
    assert record["architecture"] == dataclasses.asdict(LIGHT_FAN_CONFIG)
    # Faces drawn now by the current renderer, none of them the record's validation frames: a
    # renderer or decoding change that the shipped FAN no longer fits shows up here (an
    # untrained FAN scores 1.20 on these faces, the shipped one 0.057).
    nme = shipped_fan.validation_nme(fan, landmark_store)
    assert nme < 1.5 * record["val_nme"], (nme, record["val_nme"])


def test_shipping_writes_int8_filters_scoring_as_the_checkpoint_and_their_record(
    tmp_path, landmark_store
):
    config = dataclasses.replace(LIGHT_FAN_CONFIG, width=16, depth=2)
    source = tmp_path / "fan.pt"
    save_fan(FAN(config).eval(), source)
    target = tmp_path / "assets" / "fan_synthetic.pt"
    record = shipped_fan.ship(source, landmark_store, target, command="make fan", commit="0123abc")

    stored = torch.load(target, weights_only=True)
    assert {v.dtype for v in stored["state_dict"].values() if v.is_floating_point()} == {
        torch.float16
    }
    assert {entry["values"].dtype for entry in stored["int8"].values()} == {torch.int8}
    assert record["storage"] == "int8"
    assert record == json.loads(target.with_suffix(".json").read_text())
    assert record["sha256"] == shipped_fan.sha256(target)
    assert record["architecture"] == dataclasses.asdict(config)
    assert record["command"] == "make fan" and record["training"] == {}
    assert record["commit"] == "0123abc"
    original = shipped_fan.validation_nme(load_fan(source), landmark_store)
    assert record["val_nme"] == pytest.approx(original, rel=0.02)
    assert not list(target.parent.glob(".*.tmp"))
    assert shipped_fan.describe(target.with_suffix(".json")).startswith(
        "`make fan` at commit 0123abc"
    )


def test_a_record_without_its_fields_names_the_file_and_what_it_lacks(tmp_path):
    path = tmp_path / "fan_synthetic.json"
    path.write_text(json.dumps({"file": "fan_synthetic.pt", "sha256": "0"}))
    with pytest.raises(ValueError, match=r"fan_synthetic\.json: provenance record without command"):
        shipped_fan.read_provenance(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not a readable provenance record"):
        shipped_fan.read_provenance(path)
