#!/usr/bin/env python
"""Sweep plug-and-play settings on the label task: accuracy against realism, one row per setting.

    OMP_NUM_THREADS=2 python benchmarks/sweep_pnp.py --n_per_digit 16 \
        --configs '[{"name": "fast"}, {"name": "t0=300", "final_denoise_t": 300, "final_denoise_steps": 20}]'

Each config is a dict of :class:`PlugAndPlayPipeline` call arguments (``preset`` defaults to "fast",
``method`` to "prior") plus a ``name``. For every config the label constraint targets each digit
``--n_per_digit`` times (guide classifier), and the script reports, in the judge classifier's
features against the real test digits:

- judge label accuracy;
- the Frechet distance and its ratio to the prior's unconstrained samples (DDIM 100) at the same n,
  the quantity of the plug-and-play realism target, biased upward at small n;
- the kernel distance (KID, unbiased at any n) and its ratio to the unconstrained samples', which ranks
  settings reliably from a few hundred samples;
- UNet forward + backward passes per sample and seconds per sample.

Rows are printed as they finish and the JSON (``--output_json``) is rewritten after each, so a killed
sweep keeps what it measured. Use ``benchmarks/eval_pnp.py`` at n=640 for the numbers to report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from eval_pnp import DEFAULT_DATASET, load_classifier  # noqa: E402
from pnp_diffusers import ClassifierConstraint, DiffusionSamplingPipeline, PlugAndPlayPipeline  # noqa: E402
from pnp_diffusers.metrics import (  # noqa: E402
    classifier_probabilities,
    extract_features,
    frechet_distance,
    kernel_distance,
)

MAX_KERNEL_REFERENCE = 5000  # real test digits in the kernel distance (its cost is quadratic)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=str, default=str(REPO_ROOT / "pipelines" / "ddpm-mnist"))
    parser.add_argument("--guide", type=str, default=str(REPO_ROOT / "pipelines" / "mnist-classifier-guide"))
    parser.add_argument("--judge", type=str, default=str(REPO_ROOT / "pipelines" / "mnist-classifier-judge"))
    parser.add_argument("--dataset", type=str, default=str(DEFAULT_DATASET))
    parser.add_argument("--configs", type=str, required=True,
                        help="JSON list of dicts (pipeline call arguments plus 'name'), or a path to such a file.")
    parser.add_argument("--n_per_digit", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=80)
    parser.add_argument("--uncond_steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_reference_samples", type=int, default=None, help="Real test digits used as reference.")
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_json", type=str, default=str(REPO_ROOT / "benchmarks" / "results" / "sweep_pnp.json"))
    args = parser.parse_args(argv)
    args.command = "python benchmarks/sweep_pnp.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = Path(args.configs).read_text() if Path(args.configs).is_file() else args.configs
    try:
        args.configs = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"`--configs` must be a JSON list of dicts or a file holding one: {error}") from None
    if not isinstance(args.configs, list) or not all(isinstance(c, dict) and "name" in c for c in args.configs):
        raise ValueError("`--configs` must be a JSON list of dicts, each with a 'name'.")
    if args.n_per_digit < 1 or args.batch_size < 1:
        raise ValueError("`--n_per_digit` and `--batch_size` must be positive.")
    return args


def generate(run_batch, n: int, batch_size: int) -> tuple[torch.Tensor, list]:
    """Images (n, C, H, W) in [-1, 1] from ``run_batch(first, size) -> output``, and the outputs."""
    images, outputs = [], []
    for first in range(0, n, batch_size):
        output = run_batch(first, min(batch_size, n - first))
        images.append(output.images.float() * 2 - 1)  # "pt" images are in [0, 1]
        outputs.append(output)
    return torch.cat(images), outputs


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    from diffusers import DDIMScheduler

    from pnp_diffusers.data import load_image_dataset

    pnp = PlugAndPlayPipeline.from_pretrained(args.prior).to(device)
    pnp.set_progress_bar_config(disable=True)
    guide = load_classifier(args.guide, "guide", device)
    judge = load_classifier(args.judge, "judge", device)
    resolution = int(pnp.unet.config.sample_size)
    reference = load_image_dataset(args.dataset, "test", resolution=resolution,
                                   max_samples=args.max_reference_samples, show_progress=False)
    reference_features = extract_features(judge, reference.images)
    n = 10 * args.n_per_digit
    targets = torch.tensor([i % 10 for i in range(n)])

    def distances(images: torch.Tensor) -> dict:
        features = extract_features(judge, images)
        return {"frechet_distance": frechet_distance(features, reference_features),
                "kernel_distance": kernel_distance(features, reference_features, MAX_KERNEL_REFERENCE)}

    sampler = DiffusionSamplingPipeline(unet=pnp.unet, scheduler=DDIMScheduler.from_config(pnp.scheduler.config))
    sampler.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(args.seed)
    uncond, _ = generate(lambda first, size: sampler(batch_size=size, num_inference_steps=args.uncond_steps,
                                                     generator=generator, output_type="pt"), n, args.batch_size)
    results = {"command": args.command, "n": n, "unconditional": distances(uncond), "configs": []}
    u = results["unconditional"]
    print(f"unconditional (DDIM {args.uncond_steps}, n={n}): FD {u['frechet_distance']:.3f}, "
          f"KID {1000 * u['kernel_distance']:.2f}e-3", flush=True)
    print("| config | label acc | FD | FD / uncond | KID / uncond | fwd+bwd / sample | s / sample |", flush=True)
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for config in args.configs:
        kwargs = {"preset": "fast", "method": "prior", **{k: v for k, v in config.items() if k != "name"}}
        generator = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        images, outputs = generate(
            lambda first, size: pnp(ClassifierConstraint(guide, targets[first:first + size].tolist()), batch_size=size,
                                    generator=generator, output_type="pt", **kwargs),
            n, args.batch_size)
        seconds = (time.perf_counter() - start) / n
        predicted = classifier_probabilities(judge, images).argmax(dim=-1).cpu()
        row = {"name": config["name"], "kwargs": kwargs, "accuracy": float((predicted == targets).double().mean()),
               **distances(images), "seconds_per_sample": seconds,
               "passes_per_sample": outputs[0].unet_forward_passes + outputs[0].unet_backward_passes}
        row["frechet_ratio"] = row["frechet_distance"] / u["frechet_distance"]
        row["kernel_ratio"] = row["kernel_distance"] / u["kernel_distance"]
        results["configs"].append(row)
        print(f"| {row['name']} | {row['accuracy']:.1%} | {row['frechet_distance']:.2f} | {row['frechet_ratio']:.2f} | "
              f"{row['kernel_ratio']:.2f} | {row['passes_per_sample']} | {seconds:.2f} |", flush=True)
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
