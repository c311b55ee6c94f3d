#!/usr/bin/env python
"""Figure: SDEdit (Meng et al. 2022) completions of corrupted and half-drawn digits at several strengths.

    python examples/img2img.py                         # the shipped MNIST prior, ~1 minute on 2 CPU cores
    python examples/img2img.py --strengths 0.3,0.5,0.7 --scheduler pc --output docs/img2img.png

Three real MNIST test digits are damaged three ways (the top half erased, heavy Gaussian noise,
only the left half drawn). Each is given to ``DiffusionSamplingPipeline(image=..., strength=...)``:
the image is noised to the level ``strength`` picks and denoised by the prior from there. Low strength
keeps the input (and its damage); high strength keeps little of it. Every completion is labelled with
the judge classifier's digit and confidence; the true digit is in the row label. Writes the figure and
prints a table (``--output_txt``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from pnp_diffusers import DiffusionSamplingPipeline, PredictorCorrectorScheduler
from pnp_diffusers.classifiers import load_classifier
from pnp_diffusers.data import load_image_dataset
from pnp_diffusers.metrics import classifier_probabilities

REPO = Path(__file__).resolve().parents[1]
CORRUPTIONS = ("top half erased", "noise sigma 0.5", "left half only")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=str(REPO / "pipelines" / "ddpm-mnist"))
    parser.add_argument("--judge", default=str(REPO / "pipelines" / "mnist-classifier-judge"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--digits", default="0,1,2", help="Indices into the MNIST test split.")
    parser.add_argument("--strengths", default="0.2,0.3,0.4,0.5,0.6",
                        help="On the linear schedule little of the input survives above 0.6 (sqrt(abar_600) = 0.16).")
    parser.add_argument("--scheduler", choices=["ddim", "pc"], default="ddim")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_fast", action="store_true", help="float32 UNet forwards (default: the CPU fast path, bf16 where native).")
    parser.add_argument("--output", default="outputs/img2img.png")
    parser.add_argument("--output_txt", default=None)
    args = parser.parse_args(argv)
    try:
        args.strengths = [float(s) for s in args.strengths.split(",") if s.strip()]
        args.digits = [int(s) for s in args.digits.split(",") if s.strip()]
    except ValueError as error:
        raise ValueError("`--strengths` and `--digits` must be comma-separated numbers.") from error
    if not args.strengths or any(not 0 <= s <= 1 for s in args.strengths):
        raise ValueError(f"`--strengths` must be numbers in [0, 1], got {args.strengths}.")
    return args


def corrupt(image: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """A damaged copy of a (1, H, W) image in [0, 1]."""
    damaged = image.clone()
    height, width = image.shape[-2:]
    if kind == "top half erased":
        damaged[..., : height // 2, :] = 0
    elif kind == "left half only":
        damaged[..., :, width // 2:] = 0
    else:
        damaged = (damaged + 0.5 * torch.randn(damaged.shape, generator=generator)).clamp(0, 1)
    return damaged


def draw_figure(inputs, outputs, labels, row_names, strengths, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(inputs), len(strengths) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols, 1.6 * rows + 0.3), squeeze=False)
    for r in range(rows):
        axes[r][0].imshow(inputs[r][0], cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_ylabel(row_names[r], fontsize=8)
        for c, strength in enumerate(strengths):
            ax = axes[r][c + 1]
            ax.imshow(outputs[r][c][0], cmap="gray", vmin=0, vmax=1)
            digit, confidence = labels[r][c]
            ax.set_xlabel(f"judge: {digit} ({confidence:.0%})", fontsize=8)
            if r == 0:
                ax.set_title(f"strength {strength:g}", fontsize=9)
        if r == 0:
            axes[r][0].set_title("input", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    pipe = DiffusionSamplingPipeline.from_pretrained(args.pipeline)
    if args.scheduler == "pc":
        pipe.scheduler = PredictorCorrectorScheduler.from_config(pipe.scheduler.config)
    else:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if not args.no_fast:
        pipe.enable_fast_cpu_inference()
    judge = load_classifier(args.judge, "--judge")
    size = int(pipe.unet.config.sample_size)
    test = load_image_dataset(args.dataset, "test", resolution=size, show_progress=False)
    generator = torch.Generator().manual_seed(args.seed)

    inputs, outputs, labels, row_names, table = [], [], [], [], []
    row_seed = args.seed
    for index in args.digits:
        clean = test.images[index].float() / 255.0
        truth = int(test.labels[index])
        for kind in CORRUPTIONS:
            damaged = corrupt(clean, kind, generator)
            completions = []
            row_seed += 1  # one noise per row, shared by its strengths: the columns differ only by strength
            for strength in args.strengths:
                out = pipe(image=damaged, strength=strength, num_inference_steps=args.num_inference_steps,
                           generator=torch.Generator().manual_seed(row_seed), output_type="pt").images
                completions.append(out[0])
            completions = torch.stack(completions)
            probabilities = classifier_probabilities(judge, completions * 2 - 1)
            confidence, digit = probabilities.max(dim=1)
            inputs.append(damaged)
            outputs.append(completions)
            labels.append(list(zip(digit.tolist(), confidence.tolist())))
            row_names.append(f"a {truth}, {kind}")
            table.append({"digit": truth, "corruption": kind, "judged": digit.tolist(),
                          "confidence": [round(c, 3) for c in confidence.tolist()]})
    draw_figure(inputs, outputs, labels, row_names, args.strengths, args.output)

    lines = [f"SDEdit with {args.scheduler.upper()} {args.num_inference_steps} on {args.pipeline} "
             f"(seed {args.seed}); judge's digit per strength {args.strengths}"]
    for row in table:
        right = sum(d == row["digit"] for d in row["judged"])
        lines.append(f"  a {row['digit']}, {row['corruption']:<16} judged {row['judged']}  ({right}/{len(row['judged'])} right)")
    for strength_index, strength in enumerate(args.strengths):
        right = sum(row["judged"][strength_index] == row["digit"] for row in table)
        lines.append(f"  strength {strength:g}: {right}/{len(table)} completions judged the true digit")
    text = "\n".join(lines)
    print(text)
    print(f"wrote {args.output}")
    if args.output_txt:
        Path(args.output_txt).write_text(text + "\n")
    return {"rows": table, "strengths": args.strengths}


if __name__ == "__main__":
    main()
