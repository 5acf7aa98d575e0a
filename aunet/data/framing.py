"""How a face is framed for the network: the store's own crop, or face-alignment's.

A frozen FAN gives good features only at the framing it was pre-trained on. aunet's stores hold
square crops of ``1 + margin`` times the landmarks' bounding box (:mod:`aunet.faces.crop`), the
framing aunet's own FAN is pre-trained on. The public face-alignment package trains and runs its
2DFAN-4 on another one, made from a face detector's box ``(x0, y0, x1, y1)``
(``face_alignment/api.py`` and ``utils.py``): the centre moved up by 0.12 of the box's height,
a square side of ``200 * s`` with ``s = (w + h) / 195``, resampled to 256 x 256.

:class:`Reframe` turns a stored crop into that framing, with the landmarks' bounding box standing
in for the detector's box (a store keeps landmarks, not detector boxes; the two agree to within a
few percent for the 68 iBUG points, which span the face from the brows to the chin as a face
detector's box does). The new box is about 1.37 times the stored crop for the default margin, so
its border beyond the stored crop is black (face-alignment also pads with zeros beyond the
image). Training, validation, cross-validation predictions, the robustness study and
``aunet-predict`` all reframe the same way, so a model sees one framing throughout, and no store
has to be converted again.

Which framing a run uses is its data's ``framing`` (``auto`` by default): ``face_alignment`` when
the run's strategy uses the FAN's layers and the FAN file is face-alignment's own (its state dict
or TorchScript archive), ``store`` otherwise (aunet's FAN, ``scratch``, ``resnet18``). The choice
is resolved before the run starts, written to its ``config.yaml`` and kept in its checkpoints.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

import numpy as np

from aunet.data.augment import Transform
from aunet.faces.crop import CropBox, FaceCrop, crop_face

Framing = Literal["store", "face_alignment"]
FRAMINGS: tuple[str, ...] = get_args(Framing)
#: face-alignment's reference scale: a box of w + h = 195 pixels spans 200 pixels of the crop.
REFERENCE_SCALE = 195.0
#: Its crop side in units of the scale ``s``.
SIDE_PER_SCALE = 200.0
#: The centre's upward shift, as a fraction of the box's height.
CENTRE_SHIFT = 0.12


def face_alignment_box(landmarks: np.ndarray) -> CropBox:
    """face-alignment's crop box for a face whose box is its landmarks' bounding box.

    Args:
        landmarks: P x 2 (x, y) points; NaN points are ignored.

    Raises:
        ValueError: if no landmark is finite.

    Example:
        >>> face_alignment_box(np.array([[0.0, 0.0], [100.0, 100.0]]))
        CropBox(x=50.0, y=38.0, side=205.12820512820514)
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise ValueError("cannot frame a face: no finite landmark")
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    scale = ((x1 - x0) + (y1 - y0)) / REFERENCE_SCALE
    centre_y = (y0 + y1) / 2 - CENTRE_SHIFT * (y1 - y0)
    return CropBox(float((x0 + x1) / 2), float(centre_y), float(SIDE_PER_SCALE * scale))


class Reframe:
    """A crop and its landmarks in a framing, at the crop's own size (a dataset transform).

    ``store`` returns its inputs; ``face_alignment`` re-crops around :func:`face_alignment_box`.
    A crop with no known landmark keeps the store's framing (it has nothing to frame by).

    Args:
        framing: ``store`` or ``face_alignment``.

    Raises:
        ValueError: for another framing, listing the known ones.
    """

    def __init__(self, framing: str) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
        self.framing = framing

    def _reframed(self, image: np.ndarray, landmarks: np.ndarray) -> FaceCrop | None:
        """The crop in this framing, or None where it stays as it is."""
        if self.framing == "store" or not np.isfinite(landmarks).all(axis=-1).any():
            return None
        box = face_alignment_box(landmarks)
        return crop_face(image, landmarks, size=image.shape[0], box=box)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reframed S x S crop and its landmarks (float32, crop pixels)."""
        crop = self._reframed(image, landmarks)
        return (image, landmarks) if crop is None else (crop.image, crop.landmarks)

    def face_crop(self, face: FaceCrop) -> FaceCrop:
        """A source image's :class:`~aunet.faces.crop.FaceCrop` reframed, its affine composed.

        The crop is reframed exactly as a stored crop is (so inference sees what training
        saw), and the returned ``affine`` still maps source pixels to the final crop's.
        """
        reframed = self._reframed(face.image, face.landmarks)
        if reframed is None:
            return face
        second = np.vstack([reframed.affine, [0.0, 0.0, 1.0]])
        first = np.vstack([face.affine, [0.0, 0.0, 1.0]])
        return FaceCrop(reframed.image, reframed.landmarks, (second @ first)[:2])


def framing_for(fan: str | os.PathLike | None, uses_fan: bool) -> Framing:
    """The framing a run needs: face-alignment's for its FAN files under a FAN strategy.

    Args:
        fan: the FAN file given to the run, if any.
        uses_fan: whether the run's strategy runs the FAN's layers (transfers from it, or
            copies its architecture as ``random_backbone`` does).
    """
    from aunet.models.fan_io import is_face_alignment_file  # the data layer needs no models

    if fan is None or not uses_fan:
        return "store"
    return "face_alignment" if is_face_alignment_file(fan) else "store"


class Framed:
    """A dataset transform applied to reframed crops: :class:`Reframe`, then ``transform``.

    Args:
        framing: see :class:`Reframe`.
        transform: e.g. :class:`aunet.data.augment.TrainAugmentation` or ``Resize``.
    """

    def __init__(self, framing: str, transform: Transform) -> None:
        self.reframe = Reframe(framing)
        self.transform = transform

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The transformed crop of the reframed crop."""
        return self.transform(*self.reframe(image, landmarks))
