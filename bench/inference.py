"""Time ``aunet-predict`` end to end on a 640 x 480 video.

A test-made video (``skimage.data.astronaut()`` moving and growing over a grey background,
640 x 480, 1,500 frames at 25 fps: one minute) goes through :func:`aunet.inference.predict.predict`
at batch 64 with two models of random weights (speed does not depend on the weights): the synthetic
demo's (``reparam`` over the light FAN, folded, 64 x 64 input) and the paper's size (the same at
256 x 256). Reported: frames/s (wall clock), seconds per stage (decode, detect, crop, forward,
write), CPU time, and "network alone": :class:`aunet.inference.predictor.AUPredictor` on batches of
``--batch-size`` ready crops (uint8 to float, the folded network, reading intensities off the
maps; best of 3), at 256 px against Table 5's 0.016 s/image for reparametrisation. Both run in
the precision ``aunet-predict`` chooses on this CPU
(:func:`aunet.training.precision.choose_precision`), and both rates are printed beside their
limit P/F (:class:`bench.common.Limit`): F the folded network's counted GFLOPs per image, P
this process's best matrix product in that precision (:func:`bench.common.cpu_peaks`).

``--redetect-every 1 10`` times the video once per detector interval (dlib's detector on every
frame, then on one in 10 with the face followed between: :class:`aunet.faces.detect.FaceTracker`)
and gives each later interval's largest and mean difference of the predicted intensities from
the first's, on the frames where both found the face.

Run ``python -m bench.inference`` (``--quick``: 60 frames; ``--frames N``; ``--image-sizes``);
figures go to ``bench/BENCHMARKS.md`` under "Inference".
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.data import astronaut

from aunet.aus import DATASET_AUS
from aunet.inference.predict import predict
from aunet.inference.predictor import AUPredictor, load_predictor
from aunet.models import LIGHT_FAN_CONFIG
from aunet.models.complexity import inference_flops
from aunet.training import AUHeatmapModule
from aunet.training.precision import AUTO, choose_precision
from bench.common import Limit, best_time, cpu_peaks, record

SIZE = (640, 480)
PAPER_SIZE = 256
#: Table 5's seconds per image of the reparametrisation model (a GPU; the paper names none).
PAPER_REPARAM_SECONDS = 0.016
FPS = 25.0
#: The models' input sides and what the figures call them.
MODELS = {64: "64 px demo model", 256: "256 px light FAN"}


def write_video(path: Path, frames: int) -> Path:
    """The astronaut moving right and growing (face 90-125 px), every 50th frame blank."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    source = astronaut()
    for index in range(frames):
        if index % 50 == 49:
            frame = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
        else:
            t = index / max(frames - 1, 1)
            scale, dx = 1.0 + 0.4 * t, -80 + 160 * t
            affine = np.array([[scale, 0, 320 + dx - scale * 222], [0, scale, 200 - scale * 126]])
            frame = cv2.warpAffine(source, affine, SIZE, borderValue=(60, 60, 60))
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def checkpoint(path: Path, image_size: int) -> Path:
    """A ``reparam`` model over the light FAN with random weights, saved as ``aunet fit`` does."""
    module = AUHeatmapModule(
        "reparam",
        au_names=DATASET_AUS["disfa"],
        fan_config=dataclasses.asdict(LIGHT_FAN_CONFIG),
        image_size=image_size,
    )
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def network_rate(predictor: AUPredictor, batch: int) -> float:
    """Frames/s of the folded network alone on batches of ``batch`` crops."""
    side = predictor.image_size
    crops = np.random.default_rng(0).integers(0, 256, (batch, side, side, 3), np.uint8)
    return batch / best_time(lambda: predictor(crops), repeats=3)


def intensities(path: Path) -> dict[int, np.ndarray]:
    """The ``AU.._r`` values of each frame where a face was found, by frame number."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [name for name in rows[0] if name.endswith("_r")] if rows else []
    return {
        int(row["frame"]): np.array([float(row[name]) for name in columns])
        for row in rows
        if row["success"] == "1"
    }


def difference(first: Path, second: Path) -> str:
    """How far ``second``'s intensities lie from ``first``'s, on the frames both scored."""
    a, b = intensities(first), intensities(second)
    both = sorted(a.keys() & b.keys())
    if not both:
        return "no frame scored by both"
    gaps = np.abs(np.stack([a[f] for f in both]) - np.stack([b[f] for f in both]))
    models = gaps[:, ~np.isnan(gaps).all(axis=0)]
    return (
        f"intensities off by at most {np.nanmax(models):.3f} (mean {np.nanmean(models):.4f}) "
        f"on {len(both)} frames both scored; faces {len(b)} vs {len(a)}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 frames instead of 1,500")
    parser.add_argument("--frames", type=int, help="video length (default 1,500; --quick 60)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--image-sizes", type=int, nargs="+", default=tuple(MODELS), choices=tuple(MODELS),
        help="the models to time (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--redetect-every", type=int, nargs="+", default=[1], metavar="N",
        help="face detector intervals to time (aunet-predict --redetect-every; default 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = args.frames or (60 if args.quick else 1500)
    precision = choose_precision(AUTO, "cpu").precision  # as aunet-predict chooses here
    peak = cpu_peaks()[precision]
    figures = {"precision": precision}
    with tempfile.TemporaryDirectory() as folder:
        video = write_video(Path(folder) / "video.mp4", frames)
        for image_size in args.image_sizes:
            name = MODELS[image_size]
            model = checkpoint(Path(folder) / f"{image_size}.ckpt", image_size)
            predictor = load_predictor(model, "cpu", precision=precision)
            limit = Limit(peak, inference_flops(predictor.network, image_size) / 1e9)
            outputs = []
            for every in args.redetect_every:
                outputs.append(Path(folder) / f"au-{image_size}-{every}.csv")
                summary = predict(
                    [video], model, outputs[-1], batch_size=args.batch_size, device="cpu",
                    precision=precision, progress=False, redetect_every=every,
                )  # fmt: skip
                stages = ", ".join(f"{k} {v:.2f} s" for k, v in summary.stages.items())
                detector = "" if every == 1 else f", detector every {every} frames"
                figures[f"{name}, {frames} frames 640x480, batch {args.batch_size}{detector}"] = (
                    f"{limit.describe(summary.frames / summary.seconds, 'frames/s')} (wall); "
                    f"{summary.frames / summary.cpu_seconds:.1f} frames per CPU-second "
                    f"({summary.faces} faces; {stages})"
                    + ("" if len(outputs) == 1 else f"; {difference(outputs[0], outputs[-1])}")
                )
            rate = network_rate(predictor, args.batch_size)
            figures[f"{name}, network alone"] = (
                f"{limit.describe(rate, 'frames/s')} ({1 / rate:.3f} s/image)"
            )
            if image_size == PAPER_SIZE:
                figures["network alone / Table 5's reparam"] = (
                    f"{1 / rate / PAPER_REPARAM_SECONDS:.1f}x the paper's "
                    f"{PAPER_REPARAM_SECONDS} s/image (its GPU)"
                )
    # Every setting in the command, so that each row can be re-run as it was measured.
    command = (
        f"python -m bench.inference --threads {args.threads} --frames {frames} "
        f"--batch-size {args.batch_size} --image-sizes {' '.join(map(str, args.image_sizes))} "
        f"--redetect-every {' '.join(map(str, args.redetect_every))}"
    )
    record("Inference", figures, command=command)


if __name__ == "__main__":
    main()
