#!/usr/bin/env python
"""Quality against the number of model calls, for every sampler, on trained MNIST pipelines.

    python benchmarks/eval_samplers.py --num_samples 200         # ~20 minutes on 2 CPU cores
    python benchmarks/eval_samplers.py --num_samples 10000       # the full table (GPU recommended)

Unconditional pipeline (``--unconditional``): DDPM with 1000 and 100 steps, DDIM 10/20/50/100,
predictor-corrector at 100 model calls (50 noise levels x (1 predictor + 1 corrector), snr 0.16) and annealed
Langevin at its defaults (249 levels x 2 steps at snr 0.3 + a final denoise: 499 model calls).
Class-conditional pipeline (``--conditional``): classifier-free guidance at several scales with
DDIM 50, with the label accuracy the judge classifier gives. ``--rows cg``: classifier guidance of the
unconditional pipeline by a noise-aware classifier (``--noise_aware_classifier``) at ``--classifier_scales``,
the same DDIM steps and labels, for the comparison with CFG.

Every row reports the Frechet distance in the judge classifier's penultimate features against the
MNIST test split, beside the real-data floor measured the same way at the same n (train images
against the same test reference), and their ratio. These distances are not Inception FIDs. Beside it, in
the same features: precision, recall, density and coverage (k=5) against n random test images
(:mod:`pnp_diffusers.fidelity_diversity`), with what n random train images score; coverage is the
"varied, not a few repeated images" number.
Writes ``benchmarks/results/eval_samplers_n<N>.json`` next to the printed table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from eval_quality import load_judge  # noqa: E402
from pnp_diffusers import (  # noqa: E402
    AnnealedLangevinScheduler, DiffusionSamplingPipeline, PredictorCorrectorScheduler, precision_recall_density_coverage,
)
from pnp_diffusers.data import load_image_dataset  # noqa: E402
from pnp_diffusers.metrics import (  # noqa: E402
    extract_features, frechet_distance, label_accuracy, label_balanced_floor, reference_features_and_floor,
)

# (row name, scheduler factory, num_inference_steps, model calls per image)
UNCONDITIONAL_ROWS = [
    ("DDPM 1000", lambda c: DDPMScheduler.from_config(c), 1000, 1000),
    ("DDPM 100", lambda c: DDPMScheduler.from_config(c), 100, 100),
    ("DDIM 10", lambda c: DDIMScheduler.from_config(c), 10, 10),
    ("DDIM 20", lambda c: DDIMScheduler.from_config(c), 20, 20),
    ("DDIM 50", lambda c: DDIMScheduler.from_config(c), 50, 50),
    ("DDIM 100", lambda c: DDIMScheduler.from_config(c), 100, 100),
    ("PC 50 levels x (1 pred + 1 corr)", lambda c: PredictorCorrectorScheduler.from_config(c, n_corrector_steps=1), 50, 100),
    ("Langevin 249 levels x 2 steps (default)", lambda c: AnnealedLangevinScheduler.from_config(c), 249, 499),
]
GUIDANCE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unconditional", default=str(REPO / "pipelines" / "ddpm-mnist"))
    parser.add_argument("--conditional", default=str(REPO / "pipelines" / "ddpm-mnist-cfg"))
    parser.add_argument("--judge", default=str(REPO / "pipelines" / "mnist-classifier-judge"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--num_samples", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=200)
    parser.add_argument("--rows", default="all", help="Comma-separated row names to run (default: all), e.g. 'DDIM 10,DDIM 50'.")
    parser.add_argument("--guidance_scales", default=",".join(f"{g:g}" for g in GUIDANCE_SCALES))
    parser.add_argument("--cfg_steps", type=int, default=50, help="DDIM steps of the guidance rows.")
    parser.add_argument("--noise_aware_classifier", default=str(REPO / "pipelines" / "mnist-classifier-noise-aware"),
                        help="Classifier of x_t for the classifier-guidance rows ('cg' in --rows) on the unconditional pipeline.")
    parser.add_argument("--classifier_scales", default="1,3,10", help="Classifier-guidance scales s of the 'cg' rows.")
    parser.add_argument("--timestep_spacing", default=None, choices=("leading", "linspace", "trailing"),
                        help="Override the shipped scheduler's timestep_spacing in every row (default: keep it). "
                             "'trailing' starts every sampler at t=T-1 (Lin et al. 2023, Table 2).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="Where the pipelines and the judge run (the noise is drawn on the CPU either way).")
    parser.add_argument("--fast_cpu_inference", action="store_true",
                        help="The fast CPU path (DiffusionSamplingPipeline.enable_fast_cpu_inference): bf16 UNet forwards where the CPU runs bf16 natively, float32 elsewhere.")
    args = parser.parse_args(argv)
    if args.num_samples < 2 or args.batch_size < 1:
        raise ValueError("`--num_samples` must be >= 2 and `--batch_size` >= 1.")
    return args


def load_pipeline(path: str, args: argparse.Namespace) -> DiffusionSamplingPipeline:
    """A saved pipeline on ``--device``, with the fast CPU path under ``--fast_cpu_inference``."""
    pipe = DiffusionSamplingPipeline.from_pretrained(path).to(args.device)
    if args.fast_cpu_inference:
        pipe.enable_fast_cpu_inference()
    return pipe


def with_spacing(config, timestep_spacing):
    """The scheduler config with ``timestep_spacing`` replaced (None: unchanged)."""
    return config if timestep_spacing is None else {**config, "timestep_spacing": timestep_spacing}


def draw(pipe, n: int, batch_size: int, steps: int, seed: int, **kwargs) -> tuple[torch.Tensor, float]:
    """n samples (n, C, H, W) in [-1, 1] and the seconds it took."""
    generator = torch.Generator().manual_seed(seed)
    labels = kwargs.pop("class_labels", None)
    out, start = [], time.perf_counter()
    for begin in range(0, n, batch_size):
        size = min(batch_size, n - begin)
        extra = dict(kwargs)
        if labels is not None:
            extra["class_labels"] = labels[begin : begin + size]
        images = pipe(batch_size=size, num_inference_steps=steps, generator=generator, output_type="pt", **extra).images
        out.append(images.float().cpu() * 2 - 1)
    return torch.cat(out), time.perf_counter() - start


def main(argv=None) -> dict:
    args = parse_args(argv)
    judge = load_judge(args.judge).to(args.device)
    uncond = load_pipeline(args.unconditional, args)
    resolution = int(uncond.unet.config.sample_size)
    # the train split: the floor's real side, and that of the diversity baseline and the label-balanced floors below
    pool = load_image_dataset(args.dataset, "train", resolution=resolution, show_progress=False)
    reference_features, floor = reference_features_and_floor(judge, args.dataset, resolution, args.num_samples, args.seed,
                                                             train_pool=pool)
    print(f"real-data floor (n={args.num_samples} train images vs the {len(reference_features)} test images): {floor:.3f}")
    balanced_floors = {}

    # Precision/recall/density/coverage against n random test images (the k-NN metrics want equal set sizes), and the
    # same for n random train images: what real data scores, beside which the rows' numbers read.
    generator = torch.Generator().manual_seed(args.seed)
    real_subset = reference_features[torch.randperm(len(reference_features), generator=generator)[: args.num_samples]]
    train_slice = pool.images[torch.randperm(len(pool.images), generator=generator)[: args.num_samples]]
    real_diversity = precision_recall_density_coverage(real_subset, extract_features(judge, train_slice, 500))
    print("real data (train vs test images): " + ", ".join(f"{key} {value:.3f}" for key, value in real_diversity.items()))

    def balanced_floor(labels: torch.Tensor) -> float:
        key = tuple(labels.tolist())
        if key not in balanced_floors:
            balanced_floors[key] = label_balanced_floor(judge, pool.images, pool.labels, labels, reference_features, args.seed)
        return balanced_floors[key]

    def score(name: str, images: torch.Tensor, seconds: float, calls: int, labels=None, **extra) -> dict:
        features = extract_features(judge, images, 500)
        distance = frechet_distance(features, reference_features)
        row = {"sampler": name, "model_calls_per_image": calls, "frechet_distance": distance,
               "real_data_floor": floor, "ratio_to_floor": distance / floor, "seconds": seconds,
               **precision_recall_density_coverage(real_subset, features), **extra}
        if labels is not None:
            row["label_accuracy"] = label_accuracy(judge, images, labels, 500)
            # guided rows are label-balanced: the CFG target is against real digits with the same labels
            row["label_balanced_floor"] = balanced_floor(labels)
            row["ratio_to_label_balanced_floor"] = distance / row["label_balanced_floor"]
        print(f"  {name:<40} calls {calls:>5}  FD {distance:8.3f}  ({distance / floor:5.2f}x floor)"
              + (f"  label acc {100 * row['label_accuracy']:.1f}%  ({row['ratio_to_label_balanced_floor']:.2f}x the "
                 f"label-balanced floor {row['label_balanced_floor']:.3f})" if labels is not None else "") + f"  precision {row['precision']:.2f} recall {row['recall']:.2f} coverage {row['coverage']:.2f}  {seconds:.0f} s")
        return row

    wanted = None if args.rows == "all" else {r.strip() for r in args.rows.split(",")}
    rows = []
    print(f"Unconditional: {args.unconditional}")
    # Every row starts from the shipped scheduler's config: a row built from the previous row's config would
    # inherit its fields (Langevin would take PC's snr 0.16).
    shipped_config = with_spacing(uncond.scheduler.config, args.timestep_spacing)
    for name, factory, steps, calls in UNCONDITIONAL_ROWS:
        if wanted is not None and name not in wanted:
            continue
        uncond.scheduler = factory(shipped_config)
        uncond.set_progress_bar_config(desc=name, leave=False)
        images, seconds = draw(uncond, args.num_samples, args.batch_size, steps, args.seed)
        rows.append(score(name, images, seconds, calls))

    if args.conditional and Path(args.conditional).exists() and (wanted is None or "cfg" in wanted):
        cond = load_pipeline(args.conditional, args)
        cond.scheduler = DDIMScheduler.from_config(with_spacing(cond.scheduler.config, args.timestep_spacing))
        labels = torch.arange(args.num_samples) % 10
        print(f"Classifier-free guidance, DDIM {args.cfg_steps}: {args.conditional}")
        for scale in (float(s) for s in args.guidance_scales.split(",")):
            cond.set_progress_bar_config(desc=f"CFG w={scale:g}", leave=False)
            images, seconds = draw(cond, args.num_samples, args.batch_size // 2 or 1, args.cfg_steps, args.seed,
                                   class_labels=labels, guidance_scale=scale)
            calls = args.cfg_steps * (1 if scale in (0.0, 1.0) else 2)  # w=0 and w=1 need one branch only
            rows.append(score(f"CFG w={scale:g} (DDIM {args.cfg_steps})", images, seconds, calls, labels=labels,
                              guidance_scale=scale))

    if wanted is not None and "cg" in wanted:  # classifier guidance (Dhariwal & Nichol 2021) on the unconditional prior
        classifier = load_judge(args.noise_aware_classifier).to(args.device)
        uncond.scheduler = DDIMScheduler.from_config(shipped_config)
        labels = torch.arange(args.num_samples) % 10
        print(f"Classifier guidance, DDIM {args.cfg_steps}: {args.unconditional} + {args.noise_aware_classifier}")
        for scale in (float(s) for s in args.classifier_scales.split(",")):
            uncond.set_progress_bar_config(desc=f"CG s={scale:g}", leave=False)
            images, seconds = draw(uncond, args.num_samples, args.batch_size, args.cfg_steps, args.seed,
                                   class_labels=labels, classifier=classifier, classifier_guidance_scale=scale)
            # one UNet forward a step, plus one classifier forward and backward (a far smaller network)
            rows.append(score(f"CG s={scale:g} (DDIM {args.cfg_steps})", images, seconds, args.cfg_steps, labels=labels,
                              classifier_guidance_scale=scale, classifier_calls_per_image=args.cfg_steps))

    results = {"num_samples": args.num_samples, "real_data_floor": floor, "real_data_diversity": real_diversity, "judge": args.judge,
               "device": torch.cuda.get_device_name(args.device) if str(args.device).startswith("cuda") else "cpu",
               "command": "python benchmarks/eval_samplers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "rows": rows}
    output = Path(args.output_json or REPO / "benchmarks" / "results" / f"eval_samplers_n{args.num_samples}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print_markdown(results)
    print(f"wrote {output}")
    return results


def print_markdown(results: dict) -> None:
    real = results["real_data_diversity"]
    print(f"\n| sampler | model calls / image | Frechet distance (judge) | x real-data floor ({results['real_data_floor']:.2f}) | "
          f"label accuracy | precision / recall / coverage (real data: {real['precision']:.2f} / {real['recall']:.2f} / "
          f"{real['coverage']:.2f}) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in results["rows"]:
        accuracy = (f"{100 * row['label_accuracy']:.1f}% ({row['ratio_to_label_balanced_floor']:.2f}x the label-balanced "
                    f"floor {row['label_balanced_floor']:.3f})" if "label_accuracy" in row else "-")
        print(f"| {row['sampler']} | {row['model_calls_per_image']} | {row['frechet_distance']:.2f} | "
              f"{row['ratio_to_floor']:.2f}x | {accuracy} | {row['precision']:.2f} / {row['recall']:.2f} / {row['coverage']:.2f} |")


if __name__ == "__main__":
    main()
