"""Action Unit catalogues and the AU <-> facial landmark geometry of the paper's Table 1.

Every AU of the paper is drawn as up to three Gaussians, on the left, right and centre of the
face, each placed at the mean of a few of the 68 iBUG landmarks (0-based indices, as in 300-W).
This module holds those correspondences, the AU lists of each dataset, the left/right landmark
permutation that a horizontal flip needs, and one vectorised function that turns a batch of
landmarks into AU centres.

Example:
    >>> import torch
    >>> centres, valid = au_centres(torch.zeros(2, 68, 2), ("AU01", "AU12", "AU25"))
    >>> centres.shape, valid.shape
    (torch.Size([2, 3, 3, 2]), torch.Size([2, 3, 3]))
    >>> valid[0].tolist()  # AU01: left, right, centre; AU12: left, right; AU25: centre only
    [[True, True, True], [True, True, False], [False, False, True]]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

NUM_LANDMARKS = 68
#: AU intensities live on FACS' 0-5 scale (A = 1 to E = 5; 0 = not present).
MAX_INTENSITY = 5.0
#: The three Gaussian slots of an AU, in the order of the second axis of :func:`au_centres`.
SLOTS = ("left", "right", "centre")


def au_name(number: int) -> str:
    """Return the canonical name of an AU number, e.g. ``au_name(1) == "AU01"``."""
    return f"AU{number:02d}"


@dataclass(frozen=True)
class AULocation:
    """Landmarks whose mean places each of an AU's Gaussians; an empty tuple means no Gaussian.

    "Left" and "right" are the columns of Table 1 (landmark 21 is the inner end of the brow on the
    image's left); a flip permutes the landmarks, so the two slots follow the face, not the image.
    """

    left: tuple[int, ...]
    right: tuple[int, ...]
    centre: tuple[int, ...]

    def slots(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """The landmark tuples in :data:`SLOTS` order."""
        return (self.left, self.right, self.centre)


# Table 1 exactly as printed: 0-based iBUG indices. The mouth-interior points of AU25/AU26
# (61, 64) are in the 66-point convention of the iCCR tracker that produced the DISFA/BP4D
# landmarks the paper used; `_from_66_point` below converts them.
_TABLE_1: dict[int, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    1: ((21,), (22,), (21, 22, 27)),
    2: ((18,), (25,), ()),
    4: ((21,), (22,), (21, 22, 27)),
    5: ((37, 38), (43, 44), ()),
    6: ((1, 41, 31), (15, 46, 35), ()),
    9: ((31,), (35,), (28,)),
    10: ((31,), (35,), (51,)),
    12: ((48,), (54,), ()),
    14: ((48,), (54,), ()),
    15: ((48,), (54,), ()),
    17: ((57,), (8,), ()),
    20: ((48,), (54,), (51,)),
    25: ((), (), (61, 64)),
    26: ((), (), (61, 64)),
}

# The 66-point scheme is the 68-point one without the two inner mouth corners (68-point indices
# 60 and 64), so its inner-lip points 60..65 are the 68-point points 61, 62, 63, 65, 66, 67.
# Table 1's "61, 64" for AU25/26 are therefore the inner-lip midpoints 62 (upper) and 66 (lower):
# the centre of the open mouth, which is where lips-apart and jaw-drop show. Read literally as
# 68-point indices they would be the upper-right inner lip and the right inner mouth corner.
#: 68-point indices of the 66-point scheme's inner-lip points 60..65.
INNER_LIP_66_TO_68 = (61, 62, 63, 65, 66, 67)


def _from_66_point(index: int) -> int:
    """Convert a 66-point iBUG index to the 68-point scheme (identical below 60)."""
    return index if index < 60 else INNER_LIP_66_TO_68[index - 60]


#: Table 1 in 68-point indices, keyed by AU name. This is the table the code uses.
AU_LOCATIONS: dict[str, AULocation] = {
    au_name(number): AULocation(
        *(tuple(_from_66_point(i) for i in slot) for slot in slots)  # mouth-interior fix
    )
    for number, slots in _TABLE_1.items()
}

#: AU lists of each dataset, in label-file order.
DATASET_AUS: dict[str, tuple[str, ...]] = {
    "disfa": tuple(au_name(n) for n in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)),
    "fera2015": tuple(au_name(n) for n in (6, 10, 12, 14, 17)),
    "fera2017": tuple(au_name(n) for n in (1, 4, 6, 10, 12, 14, 17)),
}
DATASET_AUS["bp4d"] = DATASET_AUS["fera2015"]  # FERA2015 intensity is BP4D's labelled subset
DATASET_AUS["synthetic"] = DATASET_AUS["disfa"]  # the synthetic faces mimic DISFA


def _mirror_68() -> tuple[int, ...]:
    """The landmark each of the 68 iBUG points becomes after a horizontal flip."""
    pairs = [(i, 16 - i) for i in range(8)]  # jaw line
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nose base
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    permutation = list(range(NUM_LANDMARKS))  # midline points (8, 27-30, 33, 51, 57, 62, 66) stay
    for a, b in pairs:
        permutation[a], permutation[b] = b, a
    return tuple(permutation)


#: ``flipped[:, i] = mirrored[:, FLIP_PERMUTATION[i]]``: after mirroring x, landmark i of the
#: flipped face is the mirror image of landmark ``FLIP_PERMUTATION[i]`` of the original.
FLIP_PERMUTATION: tuple[int, ...] = _mirror_68()


def dataset_aus(dataset: str) -> tuple[str, ...]:
    """Return the AU names annotated in a dataset.

    Raises:
        ValueError: for a dataset name not in :data:`DATASET_AUS`, listing the known ones.
    """
    try:
        return DATASET_AUS[dataset]
    except KeyError:
        known = ", ".join(sorted(DATASET_AUS))
        raise ValueError(f"unknown dataset {dataset!r}; expected one of: {known}") from None


def check_au_names(au_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return ``au_names`` as a tuple after checking each has a Table 1 location.

    Raises:
        ValueError: naming the AUs that Table 1 does not place, and the ones it does.
    """
    unknown = [name for name in au_names if name not in AU_LOCATIONS]
    if unknown:
        known = ", ".join(AU_LOCATIONS)
        raise ValueError(f"AU(s) {unknown} have no location in Table 1; expected some of: {known}")
    if len(set(au_names)) != len(au_names):
        raise ValueError(f"AU names repeat: {list(au_names)}")
    return tuple(au_names)


@cache
def _centre_weights(
    au_names: tuple[str, ...], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """K x 3 x 68 averaging weights: row (k, s) averages the landmarks of AU k's slot s.

    Cached per device and dtype: the attention strategy calls this every forward, and a fresh
    host-to-device copy each time would stall a GPU.
    """
    weights = torch.zeros(len(au_names), len(SLOTS), NUM_LANDMARKS, dtype=dtype)
    for k, name in enumerate(check_au_names(au_names)):
        for s, landmarks in enumerate(AU_LOCATIONS[name].slots()):
            if landmarks:
                weights[k, s, list(landmarks)] = 1.0 / len(landmarks)
    return weights.to(device)


def au_centres(
    landmarks: torch.Tensor, au_names: tuple[str, ...] | list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Place every AU's Gaussians from a batch of 68-point landmarks, as in Table 1.

    Args:
        landmarks: B x 68 x 2 (x, y) in any unit (image or heatmap pixels); NaN = unknown.
        au_names: the K AUs, e.g. ``DATASET_AUS["disfa"]``.

    Returns:
        ``(centres, valid)``: B x K x 3 x 2 centres in the unit of ``landmarks`` (slots left,
        right, centre) and a B x K x 3 boolean mask, True where the AU has that Gaussian and all
        its landmarks are known. Invalid centres are 0, never NaN.
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be B x 68 x 2, got {tuple(landmarks.shape)}")
    weights = _centre_weights(tuple(au_names), landmarks.device, landmarks.dtype)
    unknown = landmarks.isnan().any(dim=-1).to(landmarks.dtype)  # B x 68
    used = weights > 0  # K x 3 x 68
    # A slot is valid when it has landmarks and none of them is unknown.
    touches_unknown = torch.einsum("ksl,bl->bks", used.to(landmarks.dtype), unknown) > 0
    valid = used.any(dim=-1).unsqueeze(0) & ~touches_unknown
    centres = torch.einsum("ksl,bld->bksd", weights, landmarks.nan_to_num(0.0))
    return centres * valid.unsqueeze(-1), valid
