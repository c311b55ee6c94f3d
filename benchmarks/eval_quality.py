#!/usr/bin/env python
"""Sample quality of a saved pipeline, measured offline in the features of the project's judge classifier.

    OMP_NUM_THREADS=1 python benchmarks/eval_quality.py pipelines/ddpm-mnist --sampler ddim \
        --num_inference_steps 50 --num_samples 10000

    # class-conditional pipeline with classifier-free guidance, labels 0..9 in turn
    python benchmarks/eval_quality.py pipelines/ddpm-mnist-cfg --sampler ddim --num_inference_steps 50 \
        --guidance_scale 2.0 --num_samples 1000

Prints a table and writes the same numbers as JSON (``--output_json``, default under
``benchmarks/results/``). Every Frechet distance is printed beside the real-data floor: the
distance from ``n`` train images to the same test reference, at the same ``n`` as the samples,
because the estimator is biased upward at small ``n``. The distances are in the judge
classifier's penultimate features and are not comparable with Inception FID; ``--features inception``
adds the standard Inception-v3 FID (torchmetrics, with torch-fidelity and its weights), the only number
that compares with the literature (CIFAR-10, 50k samples: DDPM 3.17, DDIM-50 4.67, EDM 1.97).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from pnp_diffusers.classifiers import load_classifier  # noqa: E402
from pnp_diffusers.metrics import (  # noqa: E402
    classifier_score,
    extract_features,
    frechet_distance,
    label_accuracy,
    real_data_floor,
    symmetry_error,
)

logger = logging.getLogger("eval_quality")

SAMPLERS = ("ddpm", "ddim", "pc", "langevin")
DEFAULT_CLASSIFIER = REPO_ROOT / "pipelines" / "mnist-classifier-judge"
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "mnist"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", type=str, help="Saved pipeline folder (or Hub id) for DiffusionSamplingPipeline.")
    parser.add_argument("--sampler", type=str, default="ddpm", help=f"One of {SAMPLERS}.")
    parser.add_argument("--num_inference_steps", type=int, default=None,
                        help="Sampler steps (noise levels); default: the pipeline's (DDPM 1000, DDIM 50, else the scheduler's).")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic).")
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--guidance_scale", type=float, default=None,
                        help="Classifier-free guidance scale for class-conditional pipelines (default 1: none).")
    parser.add_argument("--labels", type=str, default="balanced",
                        help="Class-conditional pipelines: 'balanced' (0..K-1 in turn), 'none' (the null class), "
                             "or a comma-separated list cycled over the samples.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", type=str, default=str(DEFAULT_CLASSIFIER),
                        help="Judge classifier folder (AutoModelForImageClassification).")
    parser.add_argument("--dataset", type=str, default=str(DEFAULT_DATASET))
    parser.add_argument("--reference_split", type=str, default="test", help="Reference real images.")
    parser.add_argument("--floor_split", type=str, default="train", help="Real images for the floor (n of them).")
    parser.add_argument("--max_reference_samples", type=int, default=None)
    parser.add_argument("--max_floor_samples", type=int, default=None, help="Read only this many floor-split images.")
    parser.add_argument("--feature_batch_size", type=int, default=500)
    parser.add_argument("--features", choices=("judge", "inception"), default="judge",
                        help="judge: the project's classifier (offline). inception: also the standard Inception-v3 FID "
                             "(torchmetrics + torch-fidelity, `pip install pnp-diffusers[inception]`); only these "
                             "numbers compare with the literature.")
    parser.add_argument("--inception_weights", type=str, default=None,
                        help="Local pt_inception-2015-12-05-6726825d.pth for --features inception, where the machine "
                             "cannot download it.")
    parser.add_argument("--output_json", type=str, default=None)
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/eval_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.sampler not in SAMPLERS:
        raise ValueError(f"`--sampler` must be one of {SAMPLERS}, got {args.sampler!r}.")
    if args.num_samples < 2:
        raise ValueError(f"`--num_samples` must be at least 2 (a covariance needs two samples), got {args.num_samples}.")
    if args.batch_size <= 0:
        raise ValueError(f"`--batch_size` must be positive, got {args.batch_size}.")
    if args.num_inference_steps is not None and args.num_inference_steps <= 0:
        raise ValueError(f"`--num_inference_steps` must be positive, got {args.num_inference_steps}.")
    return args


def scheduler_class(sampler: str):
    """The scheduler class that implements ``sampler``; every sampler is a diffusers-style scheduler."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if sampler == "ddpm":
        return DDPMScheduler
    if sampler == "ddim":
        return DDIMScheduler
    import pnp_diffusers

    name = {"pc": "PredictorCorrectorScheduler", "langevin": "AnnealedLangevinScheduler"}[sampler]
    if not hasattr(pnp_diffusers, name):
        raise ValueError(f"`--sampler {sampler}` needs pnp_diffusers.{name}, which this installation lacks.")
    return getattr(pnp_diffusers, name)


def inception_fid_metric(weights_path: str | None):
    """torchmetrics' FrechetInceptionDistance on Inception-v3 pool features (2048), or a ValueError saying what is missing."""
    if weights_path is not None and not Path(weights_path).is_file():
        raise ValueError(f"`--inception_weights` {weights_path!r} is not a file.")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights_path)
    except ModuleNotFoundError as error:
        raise ValueError(
            "`--features inception` needs torch-fidelity (`pip install 'pnp-diffusers[inception]'`); "
            f"without it use `--features judge`. ({error})"
        ) from error
    except Exception as error:  # the weights download (urllib / torch.hub) failed
        raise ValueError(
            "`--features inception` could not load the Inception-v3 weights: this machine cannot download them "
            "(pt_inception-2015-12-05-6726825d.pth from the torch-fidelity releases). Copy the file here and pass "
            f"`--inception_weights PATH`, or use `--features judge`. ({type(error).__name__}: {error})"
        ) from error


def inception_fid(metric, samples: torch.Tensor, reference: torch.Tensor, batch_size: int) -> float:
    """Inception FID of samples ([-1, 1] float) against reference images (uint8), grey repeated to RGB."""
    def rgb01(images):
        images = images.float() / 255 if images.dtype == torch.uint8 else (images.float() + 1) / 2
        return images.repeat(1, 3 // images.shape[1], 1, 1).clamp(0, 1)

    metric.reset()
    for start in range(0, reference.shape[0], batch_size):
        metric.update(rgb01(reference[start:start + batch_size]), real=True)
    for start in range(0, samples.shape[0], batch_size):
        metric.update(rgb01(samples[start:start + batch_size]), real=False)
    return float(metric.compute())


def load_judge(path: str):
    return load_classifier(path, "--classifier")


def sample_labels(spec: str, num_samples: int, num_classes: int | None) -> torch.Tensor | None:
    """Class labels (num_samples,) for a conditional pipeline, or None for an unconditional one."""
    if num_classes is None:
        if spec not in ("balanced", "none"):
            raise ValueError("`--labels` applies to class-conditional pipelines only; this one is unconditional.")
        return None
    if spec == "balanced":
        return torch.arange(num_samples) % num_classes
    if spec == "none":
        return torch.full((num_samples,), num_classes)  # the null class: unconditional samples
    try:
        values = [int(v) for v in spec.split(",")]
    except ValueError as error:
        raise ValueError(f"`--labels` must be 'balanced', 'none' or integers like '3,5', got {spec!r}.") from error
    if not values or min(values) < 0 or max(values) >= num_classes:
        raise ValueError(f"`--labels` must lie in [0, {num_classes}), got {spec!r}.")
    return torch.tensor(values).repeat(math.ceil(num_samples / len(values)))[:num_samples]


def generate(pipe, args, labels: torch.Tensor | None) -> torch.Tensor:
    """Samples (N, C, H, W) in [-1, 1], drawn batch by batch from one seeded generator."""
    from tqdm.auto import tqdm

    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    pipe.set_progress_bar_config(disable=True)
    batches = []
    for start in tqdm(range(0, args.num_samples, args.batch_size), desc=f"sampling ({args.sampler})",
                      disable=args.no_progress):
        size = min(args.batch_size, args.num_samples - start)
        kwargs = {}
        if labels is not None:
            kwargs["class_labels"] = labels[start : start + size]
            if args.guidance_scale is not None:
                kwargs["guidance_scale"] = args.guidance_scale
        output = pipe(batch_size=size, num_inference_steps=args.num_inference_steps, generator=generator,
                      eta=args.eta, output_type="pt", **kwargs)
        batches.append(output.images.float().cpu() * 2 - 1)  # "pt" images are in [0, 1]
    return torch.cat(batches)


def evaluate(args: argparse.Namespace) -> dict:
    from pnp_diffusers import DiffusionSamplingPipeline, num_classes_of
    from pnp_diffusers.data import load_image_dataset

    pipe = DiffusionSamplingPipeline.from_pretrained(args.pipeline)
    pipe.scheduler = scheduler_class(args.sampler).from_config(pipe.scheduler.config)
    if args.num_inference_steps is None:
        from pnp_diffusers.pipelines.sampling.pipeline_sampling import default_num_inference_steps

        args.num_inference_steps = default_num_inference_steps(pipe.scheduler)
    num_classes = num_classes_of(pipe.unet)
    labels = sample_labels(args.labels, args.num_samples, num_classes)
    if args.guidance_scale is not None and num_classes is None:
        raise ValueError("`--guidance_scale` needs a class-conditional pipeline.")
    judge = load_judge(args.classifier)
    inception = inception_fid_metric(args.inception_weights) if args.features == "inception" else None  # fail early
    show = not args.no_progress

    # Real data at the pipeline's resolution (MNIST 28 -> 32 is padded), so both sides see the same preprocessing.
    resolution = int(pipe.unet.config.sample_size)
    reference = load_image_dataset(args.dataset, args.reference_split, resolution=resolution,
                                   max_samples=args.max_reference_samples, show_progress=show)
    floor_set = load_image_dataset(args.dataset, args.floor_split, resolution=resolution,
                                   max_samples=args.max_floor_samples, show_progress=show)
    if floor_set.images.shape[0] < args.num_samples:
        raise ValueError(f"`--num_samples` {args.num_samples} exceeds the {args.floor_split!r} split; the floor needs as many real images.")

    start = time.time()
    samples = generate(pipe, args, labels)
    sampling_seconds = time.time() - start

    reference_features = extract_features(judge, reference.images, args.feature_batch_size, show)
    sample_features = extract_features(judge, samples, args.feature_batch_size, show)
    distance = frechet_distance(sample_features, reference_features)
    floor = real_data_floor(judge, floor_set.images, None, args.num_samples, args.feature_batch_size,
                            generator=torch.Generator().manual_seed(args.seed),
                            reference_features=reference_features, show_progress=show)
    real_n = floor_set.images[: args.num_samples]
    results = {
        "pipeline": args.pipeline,
        "sampler": args.sampler,
        "scheduler_class": type(pipe.scheduler).__name__,
        "num_inference_steps": args.num_inference_steps,
        "eta": args.eta if args.sampler == "ddim" else None,
        "num_samples": args.num_samples,
        "guidance_scale": args.guidance_scale,
        "labels": args.labels if num_classes is not None else None,
        "seed": args.seed,
        "judge_classifier": args.classifier,
        "reference": f"{args.dataset}:{args.reference_split} ({len(reference)} images)",
        "frechet_distance": distance,
        "real_data_floor": floor,
        "ratio_to_floor": distance / floor if floor > 0 else float("inf"),
        "classifier_score": classifier_score(judge, samples, args.feature_batch_size),
        "classifier_score_real": classifier_score(judge, real_n, args.feature_batch_size),
        "symmetry_error_horizontal": float(symmetry_error(samples, "horizontal").mean()),
        "symmetry_error_horizontal_real": float(symmetry_error(real_n, "horizontal").mean()),
        "sampling_seconds": sampling_seconds,
        "seconds_per_sample": sampling_seconds / args.num_samples,
        "command": args.command,
    }
    if labels is not None and args.labels != "none":
        results["label_accuracy"] = label_accuracy(judge, samples, labels, args.feature_batch_size)
    if inception is not None:  # the literature's metric; the floor at the same n as for the judge
        results["inception_fid"] = inception_fid(inception, samples, reference.images, args.feature_batch_size)
        floor_index = torch.randperm(floor_set.images.shape[0], generator=torch.Generator().manual_seed(args.seed))
        results["inception_fid_floor"] = inception_fid(inception, floor_set.images[floor_index[: args.num_samples]],
                                                       reference.images, args.feature_batch_size)
    return results


def print_table(results: dict) -> None:
    rows = [
        ("pipeline", results["pipeline"]),
        ("sampler", f"{results['sampler']} ({results['scheduler_class']}), {results['num_inference_steps']} steps"),
        ("samples", results["num_samples"]),
        ("guidance scale", results["guidance_scale"]),
        ("Frechet distance (judge features)", f"{results['frechet_distance']:.3f}"),
        ("real-data floor at same n", f"{results['real_data_floor']:.3f}"),
        ("ratio to floor", f"{results['ratio_to_floor']:.2f}x"),
        ("classifier score (real)", f"{results['classifier_score']:.3f} ({results['classifier_score_real']:.3f})"),
        ("symmetry error, horizontal (real)",
         f"{results['symmetry_error_horizontal']:.4f} ({results['symmetry_error_horizontal_real']:.4f})"),
        ("seconds per sample", f"{results['seconds_per_sample']:.3f}"),
    ]
    if "label_accuracy" in results:
        rows.append(("label accuracy", f"{100 * results['label_accuracy']:.2f}%"))
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


def default_output_path(args: argparse.Namespace) -> Path:
    name = Path(args.pipeline.rstrip("/")).name
    guidance = f"_gs{args.guidance_scale:g}" if args.guidance_scale is not None else ""
    return REPO_ROOT / "benchmarks" / "results" / f"quality_{name}_{args.sampler}{args.num_inference_steps}_n{args.num_samples}{guidance}.json"


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    results = evaluate(args)
    print_table(results)
    output = Path(args.output_json) if args.output_json else default_output_path(args)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return results


if __name__ == "__main__":
    main()
