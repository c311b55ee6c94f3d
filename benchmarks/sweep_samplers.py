#!/usr/bin/env python
"""Model calls against quality for sampler settings: the sweep that picks Langevin's and PC's defaults.

    OMP_NUM_THREADS=2 python benchmarks/sweep_samplers.py                 # the default grid, n=1000 each
    python benchmarks/sweep_samplers.py --configs '[{"sampler": "langevin", "levels": 50, "n_steps_each": 4, "snr": 0.1}]'
    python benchmarks/sweep_samplers.py --reuse --num_samples 1000       # go on where a killed sweep stopped

Each config is a dict: ``sampler`` ("ddim", "ddpm", "langevin" or "pc"), ``levels`` (the
``num_inference_steps`` the pipeline gets: DDIM/DDPM steps or noise levels) and any config field of that
scheduler (``n_steps_each``, ``snr``, ``step_size_rule``, ``denoise_final`` for Langevin;
``n_corrector_steps``, ``snr`` for predictor-corrector; ``timestep_spacing`` ...), set with
``from_config(<the shipped scheduler's config>, **fields)``. Every row counts the model calls per image (with a
callback, not a formula), draws ``--num_samples`` images of the unconditional pipeline from one seed and
scores the Frechet distance in the judge's features against the MNIST test split, beside the real-data
floor at the same n, and against DDIM 50's distance (the issue's target for Langevin: <= 1.5x DDIM 50
within 500 calls).

Writes the rows as they land to ``--output_json`` (``--reuse`` skips rows already there), a Markdown
table beside it (``.md``) and a plot of FD against model calls, one line per sampler family (``.png``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pnp_diffusers import AnnealedLangevinScheduler, DiffusionSamplingPipeline, PredictorCorrectorScheduler
from pnp_diffusers.classifiers import load_classifier
from pnp_diffusers.metrics import extract_features, frechet_distance, reference_features_and_floor

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "langevin": AnnealedLangevinScheduler,
            "pc": PredictorCorrectorScheduler}
REFERENCE = {"sampler": "ddim", "levels": 50}
# Langevin: levels x steps per level (+1 final denoise) <= 500 calls, the snr rule at three snrs and the
# sigma-ratio rule; PC: the corrector's snr and steps at equal calls; DDPM at the same calls for the PC question.
DEFAULT_CONFIGS = (
    [REFERENCE, {"sampler": "ddpm", "levels": 100}, {"sampler": "ddpm", "levels": 200}]
    + [{"sampler": "langevin", "levels": levels, "n_steps_each": each, "snr": snr}
       for levels, each in ((50, 2), (100, 2), (50, 4), (100, 4), (250, 2))
       for snr in (0.05, 0.1, 0.16)]
    + [{"sampler": "langevin", "levels": 100, "n_steps_each": 4, "step_size_rule": "sigma_ratio", "epsilon": eps}
       for eps in (2e-5, 1e-4)]
    + [{"sampler": "pc", "levels": levels, "n_corrector_steps": steps, "snr": snr}
       for levels, steps in ((50, 1), (100, 1)) for snr in (0.05, 0.1, 0.16)]
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=str(REPO / "pipelines" / "ddpm-mnist"))
    parser.add_argument("--judge", default=str(REPO / "pipelines" / "mnist-classifier-judge"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--configs", default=None, help="JSON list of configs (default: the grid in DEFAULT_CONFIGS).")
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast_cpu_inference", action="store_true", help="The pipeline's fast path (bf16 UNet forwards where the CPU runs bf16 natively).")
    parser.add_argument("--reuse", action="store_true", help="Skip configs already in --output_json.")
    parser.add_argument("--output_json", default=str(REPO / "benchmarks" / "results" / "sweep_samplers.json"))
    args = parser.parse_args(argv)
    try:
        configs = DEFAULT_CONFIGS if args.configs is None else json.loads(args.configs)
    except json.JSONDecodeError as error:
        raise ValueError(f"`--configs` must be a JSON list of dicts, got {args.configs!r}.") from error
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise ValueError("`--configs` must be a JSON list of dicts.")
    for config in configs:
        if config.get("sampler") not in SAMPLERS or not isinstance(config.get("levels"), int) or config["levels"] < 1:
            raise ValueError(f"`--configs`: every config needs 'sampler' in {sorted(SAMPLERS)} and a positive int "
                             f"'levels', got {config}.")
    if REFERENCE not in configs:
        configs = [REFERENCE] + list(configs)  # every row is compared with DDIM 50
    args.configs = configs
    if args.num_samples < 2 or args.batch_size < 1:
        raise ValueError("`--num_samples` must be >= 2 and `--batch_size` >= 1.")
    return args


def config_name(config: dict) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("sampler", "levels"))
    return f"{config['sampler']} {config['levels']}" + (f" ({extra})" if extra else "")


def sample(pipe: DiffusionSamplingPipeline, config: dict, args, shipped_config) -> tuple[torch.Tensor, int, float]:
    """(images (n, C, H, W) in [-1, 1], model calls per image, seconds) for one config.

    The scheduler is built from the pipeline's shipped ``shipped_config``, not the previous row's: a PC row after
    a Langevin one would otherwise inherit its ``snr``."""
    fields = {k: v for k, v in config.items() if k not in ("sampler", "levels")}
    pipe.scheduler = SAMPLERS[config["sampler"]].from_config(shipped_config, **fields)
    generator = torch.Generator().manual_seed(args.seed)
    calls, images = [], []
    start = time.perf_counter()
    for begin in range(0, args.num_samples, args.batch_size):
        size = min(args.batch_size, args.num_samples - begin)
        counted = []
        out = pipe(batch_size=size, num_inference_steps=config["levels"], generator=generator, output_type="pt",
                   callback_on_step_end=lambda p, i, t, kw: counted.append(i) or {})
        calls.append(len(counted))
        images.append(out.images.float() * 2 - 1)
    return torch.cat(images), calls[0], time.perf_counter() - start


def draw_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for family in SAMPLERS:
        points = sorted((r["model_calls"], r["frechet_distance"]) for r in rows if r["config"]["sampler"] == family)
        if points:
            ax.plot(*zip(*points), marker="o", linestyle="none" if family in ("langevin", "pc") else "-", label=family)
    reference = next(r for r in rows if r["config"] == REFERENCE)
    ax.axhline(1.5 * reference["frechet_distance"], color="grey", linestyle=":", label="1.5x DDIM 50")
    ax.axhline(rows[0]["real_data_floor"], color="grey", linestyle="--", label="real-data floor")
    ax.axvline(500, color="lightgrey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model calls per image")
    ax.set_ylabel(f"FD (judge features, n={rows[0]['num_samples']})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(rows: list[dict], output: Path, args) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"pipeline": args.pipeline, "num_samples": args.num_samples, "seed": args.seed,
                                  "threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")
    reference = next((r for r in rows if r["config"] == REFERENCE), None)
    lines = ["| sampler | model calls | FD | x floor | x DDIM 50 | s/image |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["config"]["sampler"], r["model_calls"])):
        versus = f"{r['frechet_distance'] / reference['frechet_distance']:.2f}" if reference else "-"
        lines.append(f"| {r['name']} | {r['model_calls']} | {r['frechet_distance']:.3f} | {r['ratio_to_floor']:.2f} | "
                     f"{versus} | {r['seconds_per_image']:.3f} |")
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if reference is not None:
        draw_plot(rows, output.with_suffix(".png"))


def main(argv=None) -> dict:
    args = parse_args(argv)
    output = Path(args.output_json)
    rows = json.loads(output.read_text())["rows"] if args.reuse and output.exists() else []
    done = {json.dumps(r["config"], sort_keys=True) for r in rows if r["num_samples"] == args.num_samples}
    judge = load_classifier(args.judge, "--judge")
    pipe = DiffusionSamplingPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    if args.fast_cpu_inference:
        pipe.enable_fast_cpu_inference()
    resolution = int(pipe.unet.config.sample_size)
    reference_features, floor = reference_features_and_floor(judge, args.dataset, resolution, args.num_samples, args.seed)
    print(f"real-data floor (n={args.num_samples}): {floor:.4f}")
    shipped_config = pipe.scheduler.config
    for config in args.configs:
        if json.dumps(config, sort_keys=True) in done:
            continue
        images, calls, seconds = sample(pipe, config, args, shipped_config)
        distance = frechet_distance(extract_features(judge, images, 500), reference_features)
        rows.append({"name": config_name(config), "config": config, "model_calls": calls, "num_samples": args.num_samples,
                     "frechet_distance": distance, "real_data_floor": floor, "ratio_to_floor": distance / floor,
                     "seconds_per_image": seconds / args.num_samples})
        print(f"{config_name(config):<60} {calls:5d} calls  FD {distance:.4f} ({distance / floor:.2f}x floor)  "
              f"{seconds / args.num_samples:.3f} s/image", flush=True)
        write_outputs(rows, output, args)
    write_outputs(rows, output, args)
    return {"rows": rows, "real_data_floor": floor}


if __name__ == "__main__":
    main()
