#!/usr/bin/env python
"""Time to quality: sample quality against CPU minutes of training, train/train.py against the plain diffusers loop.

    python benchmarks/bench_time_to_quality.py                       # 3 x 20 minutes of training + scoring
    python benchmarks/bench_time_to_quality.py --minutes 10 --plain_minutes 40 --loops plain-ema,train.py
    python benchmarks/bench_time_to_quality.py --loops train.py --train_args "--snr_gamma 5" --tag snr5   # a sweep row

Loop by loop (each loop's checkpoints and scores are kept in --work_dir/<loop>/row.json), e.g. training
pinned to one core while the other scores, or spread over several sessions:

    taskset -c 0 python benchmarks/bench_time_to_quality.py --loops train.py --no_score
    taskset -c 0 python benchmarks/bench_time_to_quality.py --loops plain,plain-ema --no_score
    taskset -c 1 python benchmarks/bench_time_to_quality.py --reuse --include_tags snr5   # score and tabulate

One after the other, on the same machine, for the same wall-clock budget of training (``--minutes``), with
the same UNet preset, batch size and data, it trains

* ``plain``: the loop of diffusers' ``examples/unconditional_image_generation/train_unconditional.py`` at
  its defaults: a ``datasets`` split decoded per batch by ``set_transform`` (PIL -> tensor, normalised to
  [-1, 1]), ``UNet2DModel`` in fp32, ``DDPMScheduler.add_noise``, epsilon MSE, ``torch.optim.AdamW``
  (lr 1e-4, betas 0.95/0.999, weight decay 1e-6, eps 1e-8), diffusers' cosine schedule over the script's
  100 epochs with 500 warmup steps, gradient clipping at 1;
* ``plain-ema``: the same with its ``--use_ema`` settings (``EMAModel``: max decay 0.9999, warmup with
  inv_gamma 1 and power 3/4);
* ``train.py``: ``train/train.py`` at this project's defaults (plus ``--train_args``), launched
  ``--checkpoints`` times with ``--max_train_minutes minutes/checkpoints --resume_from_checkpoint latest``:
  its minute-planned schedule spans the whole budget across the launches, and each launch ends by saving
  the pipeline it would ship.

Each run keeps its weights (EMA weights where the loop has EMA) at every ``1/checkpoints`` of its budget;
only training time counts, not scoring or start-up. Each checkpoint is then scored with DDIM
``--sample_steps`` at ``--num_samples``: the Frechet distance in the judge classifier's features against the
dataset's test split (MNIST, or CIFAR-10 with ``--dataset`` and its ``--judge``), beside the real-data
floor at the same n. Prints a table and the time-to-quality ratio:
the minutes the plain loop needs to reach train.py's final FD (linear interpolation between its
checkpoints) divided by the budget, "> N" when it never gets there. Writes a JSON and a PNG plot.
``--plain_minutes`` lets the plain loops run longer to pin that ratio down.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from pnp_diffusers import DiffusionSamplingPipeline
from pnp_diffusers.classifiers import load_classifier
from pnp_diffusers.data import crop_padding
from pnp_diffusers.figures import curves_plot, relative_change_plot
from pnp_diffusers.metrics import extract_features, frechet_distance, reference_features_and_floor
from pnp_diffusers.models import UNET_PRESETS, create_unet

REPO = Path(__file__).resolve().parents[1]
LOOPS = ("plain", "plain-ema", "train.py")
PLAIN_EPOCHS = 100  # train_unconditional.py's --num_epochs default: the length of its cosine schedule


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="Training budget of each loop, in minutes.")
    parser.add_argument("--plain_minutes", type=float, default=None, help="Budget of the plain loops (default --minutes).")
    parser.add_argument("--checkpoints", type=int, default=4, help="Checkpoints per run, evenly spaced in time.")
    parser.add_argument("--loops", default=",".join(LOOPS), help=f"Comma-separated subset of {LOOPS}.")
    parser.add_argument("--model", default="mnist-small", help=f"UNet preset, one of {sorted(UNET_PRESETS)}.")
    parser.add_argument("--model_config", default=None, help="A UNet2DModel config.json instead of --model (tests).")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--train_args", default="", help="Extra train/train.py arguments, as one quoted string; write a single flag "
                             "with '=' (--train_args=--torch_compile), or argparse reads it as an option of its own.")
    parser.add_argument("--tag", default=None, help="Name of the train.py row (default 'train.py').")
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--judge", default=str(REPO / "pipelines" / "mnist-classifier-judge"))
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--sample_steps", type=int, default=50)
    parser.add_argument("--sample_batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast_cpu_inference", action="store_true",
                        help="Score with bf16 UNet forwards (the pipeline's fast path, ~1.45x faster on this CPU); the same "
                             "for every loop, so the comparison stays fair, but FDs differ slightly from float32 scoring.")
    parser.add_argument("--work_dir", default=str(REPO / "runs" / "time_to_quality"))
    parser.add_argument("--output_json", default=str(REPO / "benchmarks" / "results" / "time_to_quality.json"))
    parser.add_argument("--plot", default=None, help="PNG of FD against minutes (default: the JSON's name, .png).")
    parser.add_argument("--reuse", action="store_true",
                        help="Keep a loop's checkpoints (and scores) from an earlier run with the same budget in "
                             "--work_dir instead of training it again: a long benchmark can be run loop by loop.")
    parser.add_argument("--no_score", action="store_true",
                        help="Train (or reuse) the loops and stop before scoring; score later with --reuse.")
    parser.add_argument("--include_tags", default="",
                        help="Comma-separated tags of earlier train.py rows in --work_dir (a sweep) to score and "
                             "tabulate beside --loops.")
    parser.add_argument("--sweep_score_every", type=int, default=1,
                        help="Score only every k-th checkpoint of the --include_tags rows (the last one always): a sweep "
                             "decided on its rows' final FDs costs 1/k of the scoring. The --loops rows keep every checkpoint.")
    args = parser.parse_args(argv)
    loops = [name.strip() for name in args.loops.split(",") if name.strip()]
    if not loops or any(name not in LOOPS for name in loops):
        raise ValueError(f"`--loops` must name some of {LOOPS}, got {args.loops!r}.")
    args.loops = loops
    args.plain_minutes = args.plain_minutes or args.minutes
    for name in ("minutes", "plain_minutes"):
        if not getattr(args, name) > 0:
            raise ValueError(f"`--{name}` must be a positive number of minutes, got {getattr(args, name)}.")
    if args.checkpoints < 1 or args.batch_size < 1 or args.num_samples < 2:
        raise ValueError("`--checkpoints` and `--batch_size` must be >= 1 and `--num_samples` >= 2.")
    if args.model_config is None and args.model not in UNET_PRESETS:
        raise ValueError(f"`--model` must be one of {sorted(UNET_PRESETS)}, got {args.model!r}.")
    args.plot = args.plot or str(Path(args.output_json).with_suffix(".png"))
    args.include_tags = [tag.strip() for tag in args.include_tags.split(",") if tag.strip()]
    if args.sweep_score_every < 1:
        raise ValueError(f"`--sweep_score_every` must be a positive integer, got {args.sweep_score_every}.")
    return args


# ----------------------------------------------------------------------------------------------
# The plain diffusers loop
# ----------------------------------------------------------------------------------------------
def build_model(args) -> UNet2DModel:
    if args.model_config is not None:
        return UNet2DModel.from_config(UNet2DModel.load_config(args.model_config))
    return create_unet(args.model)


def plain_loader(args, num_channels: int):
    """train_unconditional.py's data path: datasets + a per-batch transform to [-1, 1] (no flips, its default).

    The image column is found as ``load_image_dataset`` finds it (MNIST's "image", CIFAR-10's "img"), and
    images are decoded as grey or RGB to match the UNet's ``in_channels``.
    """
    import datasets

    from pnp_diffusers.data import find_image_column

    split = "train" if args.max_train_samples is None else f"train[:{args.max_train_samples}]"
    ds = datasets.load_dataset(args.dataset, split=split)
    column = find_image_column(ds, args.dataset)
    mode = "L" if num_channels == 1 else "RGB"

    def transform(examples):
        arrays = [np.asarray(im.convert(mode), dtype=np.float32) / 127.5 - 1.0 for im in examples[column]]
        return {"input": [torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()) for a in arrays]}

    ds.set_transform(transform)
    return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True)


def train_plain(args, use_ema: bool, out_dir: Path) -> list[dict]:
    """Run the plain loop for --plain_minutes; save its (EMA) weights at each checkpoint time."""
    torch.manual_seed(args.seed)
    unet = build_model(args)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    loader = plain_loader(args, int(unet.config.in_channels))
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=500,
                                 num_training_steps=len(loader) * PLAIN_EPOCHS)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4) if use_ema else None
    budget = 60 * args.plain_minutes
    marks = [budget * (k + 1) / args.checkpoints for k in range(args.checkpoints)]
    saved, trained, step = [], 0.0, 0
    progress = tqdm(total=round(budget), desc="plain" + ("-ema" if use_ema else ""), unit="s")
    while marks:
        for batch in loader:
            start = time.perf_counter()
            clean = batch["input"]
            noise = torch.randn(clean.shape)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (clean.shape[0],)).long()
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            loss = F.mse_loss(unet(noisy, timesteps).sample, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            lr_scheduler.step()
            if ema is not None:
                ema.step(unet.parameters())
            optimizer.zero_grad(set_to_none=True)
            step += 1
            elapsed = time.perf_counter() - start
            trained += elapsed
            progress.update(max(0.0, min(elapsed, budget - progress.n)))
            if trained >= marks[0]:
                marks.pop(0)
                saved.append(save_plain_checkpoint(unet, ema, noise_scheduler, out_dir / f"ckpt-{len(saved) + 1}", step, trained))
                if not marks:
                    break
    progress.close()
    return saved


def save_plain_checkpoint(unet, ema, noise_scheduler, path: Path, step: int, seconds: float) -> dict:
    model = unet
    if ema is not None:
        model = build_like(unet)
        ema.copy_to(model.parameters())
    DiffusionSamplingPipeline(unet=model, scheduler=noise_scheduler).save_pretrained(path)
    return {"path": str(path), "step": step, "minutes": seconds / 60}


def build_like(unet: UNet2DModel) -> UNet2DModel:
    clone = UNet2DModel.from_config(unet.config)
    clone.load_state_dict(unet.state_dict())
    return clone


# ----------------------------------------------------------------------------------------------
# train/train.py
# ----------------------------------------------------------------------------------------------
def train_project(args, out_dir: Path) -> list[dict]:
    """train.py in --checkpoints launches of minutes/checkpoints each, resumed; copy each launch's pipeline."""
    run_dir = out_dir / "run"
    model = ["--model_config", args.model_config] if args.model_config else ["--model", args.model]
    base = [sys.executable, str(REPO / "train" / "train.py"), "--dataset", args.dataset, *model,
            "--train_batch_size", str(args.batch_size), "--seed", str(args.seed), "--output_dir", str(run_dir),
            "--max_train_steps", "10000000", "--checkpointing_steps", "10000000", "--checkpoints_total_limit", "1",
            "--lr_schedule_minutes", str(args.minutes), "--resume_from_checkpoint", "latest",
            "--max_train_minutes", str(args.minutes / args.checkpoints)]
    if args.max_train_samples is not None:
        base += ["--max_train_samples", str(args.max_train_samples)]
    base += shlex.split(args.train_args)
    saved = finished_launches(out_dir)
    if saved:
        print(f"  resuming after launch {len(saved)}/{args.checkpoints} ({saved[-1]['minutes']:.2f} training minutes)")
    for k in range(len(saved), args.checkpoints):
        result = subprocess.run(base, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"train/train.py failed:\n{result.stderr[-3000:]}")
        saved.append(keep_launch(run_dir, out_dir / f"ckpt-{k + 1}"))
        print(f"  train.py launch {k + 1}/{args.checkpoints}: step {saved[-1]['step']}, "
              f"{saved[-1]['minutes']:.2f} training minutes")
    saved.append({"command": " ".join(shlex.quote(a) for a in base[1:])})
    return saved


def keep_launch(run_dir: Path, target: Path) -> dict:
    """Copy the pipeline a train.py launch saved into ``target``; its point (path, step, minutes) goes in point.json,
    written last, so that a launch counts as finished only once its copy is whole."""
    step, ckpt = latest_checkpoint(run_dir)
    state = json.loads((ckpt / "training_state.json").read_text())
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for part in ("unet", "scheduler", "model_index.json"):
        source = run_dir / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target / part)
    point = {"path": str(target), "step": step, "minutes": state["training_minutes"]}
    (target / "point.json").write_text(json.dumps(point))
    return point


def finished_launches(out_dir: Path) -> list[dict]:
    """The points of the launches an interrupted train.py row finished (ckpt-1, ckpt-2, ... with a point.json).

    train.py checkpoints only when a launch's minutes are spent, so a launch killed midway left nothing and the next
    one resumes from the last finished launch (only the interrupted launch's minutes are lost). A launch killed
    after its checkpoint but before its copy shows as a checkpoint newer than the last point: it is copied now."""
    points = []
    while (out_dir / f"ckpt-{len(points) + 1}" / "point.json").exists():
        points.append(json.loads((out_dir / f"ckpt-{len(points) + 1}" / "point.json").read_text()))
    run_dir = out_dir / "run"
    if run_dir.exists() and any(run_dir.glob("checkpoint-*")):
        if not points or latest_checkpoint(run_dir)[0] > points[-1]["step"]:
            points.append(keep_launch(run_dir, out_dir / f"ckpt-{len(points) + 1}"))
    return points


def latest_checkpoint(run_dir: Path) -> tuple[int, Path]:
    found = sorted((int(p.name.split("-")[1]), p) for p in run_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    if not found:
        raise RuntimeError(f"train/train.py left no checkpoint in {run_dir}.")
    return found[-1]


# ----------------------------------------------------------------------------------------------
# Scoring, the ratio and the plot
# ----------------------------------------------------------------------------------------------
def score_checkpoint(path: str, args, judge, reference_features, resolution: int) -> float:
    """DDIM-``sample_steps`` FD of a checkpoint's samples at the benchmark's ``resolution``. A row trained on
    padded grey data (``--train_args="--resolution 32"`` on MNIST) has its samples cropped back to the centre, so
    it meets the same reference features and floor as the other rows."""
    pipe = DiffusionSamplingPipeline.from_pretrained(path)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    if args.fast_cpu_inference:
        pipe.enable_fast_cpu_inference()
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(args.seed)
    images = []
    for begin in range(0, args.num_samples, args.sample_batch_size):
        size = min(args.sample_batch_size, args.num_samples - begin)
        out = pipe(batch_size=size, num_inference_steps=args.sample_steps, generator=generator, output_type="pt").images
        images.append(out.float() * 2 - 1)
    images = torch.cat(images)
    if images.shape[-1] != resolution:
        if images.shape[1] != 1 or images.shape[-1] < resolution:
            raise ValueError(f"{path}: its {images.shape[-1]}px samples cannot be scored against the {resolution}px "
                             "reference; only grey rows trained on padded data (a larger --resolution) are cropped back.")
        images = crop_padding(images, resolution)
    return frechet_distance(extract_features(judge, images, 500), reference_features)


def minutes_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """First time a curve [(minutes, FD), ...] reaches FD <= target, linearly interpolated; None if never."""
    previous = (0.0, math.inf)
    for minutes, fd in curve:
        if fd <= target:
            if math.isinf(previous[1]):
                return minutes
            share = (previous[1] - target) / max(previous[1] - fd, 1e-12)
            return previous[0] + share * (minutes - previous[0])
        previous = (minutes, fd)
    return None


def fd_at_step(points: list[dict], step: int) -> float | None:
    """A row's FD at ``step``, interpolated linearly in log-FD against log-steps between its checkpoints (None
    outside them)."""
    for before, after in zip(points, points[1:]):
        if before["step"] <= step <= after["step"]:
            share = (math.log(step) - math.log(before["step"])) / max(math.log(after["step"]) - math.log(before["step"]), 1e-12)
            return math.exp((1 - share) * math.log(before["frechet_distance"]) + share * math.log(after["frechet_distance"]))
    return None


def sweep_summary(table: dict, project_rows: list[str], baseline: str) -> list[dict]:
    """One line per train.py row: its final minutes, steps and FD against the baseline row's.

    ``vs_baseline`` compares at equal minutes (the benchmark's own question). ``vs_baseline_at_equal_steps``
    compares with the baseline's FD at the row's final step count, which factors out a row that got fewer steps
    per minute because the machine was busier while it trained; it is the fairer view for levers that do not
    change the cost of a step (loss weighting, prediction type, learning rate, EMA).
    """
    base = table[baseline]
    lines = []
    for name in project_rows:
        final = table[name][-1]
        at_steps = fd_at_step(base, final["step"])
        lines.append({"row": name, "minutes": final["minutes"], "steps": final["step"], "frechet_distance": final["frechet_distance"],
                      "vs_baseline": final["frechet_distance"] / base[-1]["frechet_distance"],
                      "baseline_fd_at_equal_steps": at_steps,
                      "vs_baseline_at_equal_steps": None if at_steps is None else final["frechet_distance"] / at_steps})
    return lines


def print_sweep_summary(lines: list[dict], baseline: str) -> None:
    print(f"\n| row | minutes | steps | FD | x {baseline}'s final FD | x {baseline}'s FD at the same steps |")
    print("|---|---:|---:|---:|---:|---:|")
    for line in lines:
        equal = "-" if line["vs_baseline_at_equal_steps"] is None else f"{line['vs_baseline_at_equal_steps']:.3f}"
        print(f"| {line['row']} | {line['minutes']:.1f} | {line['steps']} | {line['frechet_distance']:.3f} | "
              f"{line['vs_baseline']:.3f} | {equal} |")


def time_to_quality(plain_curve, target: float, budget: float, plain_budget: float) -> str:
    reached = minutes_to_reach(plain_curve, target)
    if reached is None:
        return f"> {plain_budget / budget:.2f}"
    return f"{reached / budget:.2f}"


def row_budget(args, loop: str) -> dict:
    """What a stored row must match to be reused: its loop's budget and checkpoints, model, batch and data."""
    minutes = args.minutes if loop == "train.py" else args.plain_minutes
    budget = {"minutes": minutes, "checkpoints": args.checkpoints, "model": args.model_config or args.model,
              "batch_size": args.batch_size, "max_train_samples": args.max_train_samples}
    if loop == "train.py":
        budget["train_args"] = args.train_args
    return budget


def train_or_reuse(args, loop: str, out_dir: Path) -> dict:
    """A loop's row {budget, points, command, threads}: from out_dir/row.json under --reuse, else trained now."""
    row_file = out_dir / "row.json"
    budget = row_budget(args, loop)
    if args.reuse and row_file.exists():
        row = json.loads(row_file.read_text())
        if row.get("budget") == budget:
            print(f"reusing {out_dir.name}: {len(row['points'])} checkpoints from {row_file}")
            return row
        print(f"not reusing {row_file}: it was trained with {row.get('budget')}, not {budget}")
    budget_file = out_dir / "budget.json"
    resumable = (args.reuse and loop == "train.py" and not row_file.exists() and budget_file.exists()
                 and json.loads(budget_file.read_text()) == budget)
    if not resumable:  # a train.py row interrupted under --reuse resumes at its last finished launch
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        budget_file.write_text(json.dumps(budget))
    print(f"training {out_dir.name} ...")
    command = None
    if loop == "train.py":
        points = train_project(args, out_dir)
        command = points.pop()["command"]
    else:
        points = train_plain(args, loop == "plain-ema", out_dir)
    row = {"loop": loop, "budget": budget, "points": points, "command": command, "threads": torch.get_num_threads()}
    row_file.write_text(json.dumps(row, indent=2))
    return row


def every_kth_point(points: list[dict], k: int) -> list[dict]:
    """Checkpoints k, 2k, ... (1-based) and always the last one: the points a sweep row is scored and shown at."""
    return [point for i, point in enumerate(points, 1) if i % k == 0 or i == len(points)]


def score_rows(rows: dict, shown: dict, args, judge, reference_features, floor: float, resolution: int) -> None:
    """Score the ``shown`` checkpoints of each row not yet scored at these sampling settings; save each score, in
    its whole row's file, as it lands."""
    settings = {"num_samples": args.num_samples, "sample_steps": args.sample_steps, "seed": args.seed,
                "bf16": bool(args.fast_cpu_inference)}
    for name, (row, row_file) in rows.items():
        for point in tqdm(shown[name], desc=f"scoring {name}"):
            if point.get("score_settings") != settings or "frechet_distance" not in point:
                point["frechet_distance"] = score_checkpoint(point["path"], args, judge, reference_features, resolution)
                point["score_settings"] = settings
                row_file.write_text(json.dumps(row, indent=2))
            point["ratio_to_floor"] = point["frechet_distance"] / floor


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(args.work_dir)
    tag = args.tag or "train.py"
    rows = {}
    for loop in args.loops:
        name = tag if loop == "train.py" else loop
        rows[name] = (train_or_reuse(args, loop, work / name), work / name / "row.json")
    for extra in args.include_tags:
        row_file = work / extra / "row.json"
        if not row_file.exists():
            raise ValueError(f"`--include_tags`: no trained row {row_file}; train it with --loops train.py --tag {extra}.")
        rows[extra] = (json.loads(row_file.read_text()), row_file)
    if args.no_score:
        print("trained; score with the same arguments plus --reuse")
        return {"rows": {name: row for name, (row, _) in rows.items()}}

    judge = load_classifier(args.judge, "--judge")
    resolution = int(build_model(args).config.sample_size)
    reference_features, floor = reference_features_and_floor(judge, args.dataset, resolution, args.num_samples, args.seed)
    print(f"real-data floor (n={args.num_samples}): {floor:.4f}  scoring threads {torch.get_num_threads()}")
    table = {name: every_kth_point(row["points"], args.sweep_score_every) if name in args.include_tags else row["points"]
             for name, (row, _) in rows.items()}
    score_rows(rows, table, args, judge, reference_features, floor, resolution)

    print(f"\n{'loop':<14} {'minutes':>8} {'steps':>7} {'FD':>8} {'x floor':>8}")
    for name, points in table.items():
        for p in points:
            print(f"{name:<14} {p['minutes']:8.2f} {p['step']:7d} {p['frechet_distance']:8.4f} {p['ratio_to_floor']:8.2f}")
    ratios = {}
    project_rows = [name for name, (row, _) in rows.items() if row["loop"] == "train.py"]
    for name in project_rows:
        final_fd = table[name][-1]["frechet_distance"]
        budget = rows[name][0]["budget"]["minutes"]
        for plain in ("plain-ema", "plain"):
            if plain in rows:
                curve = [(p["minutes"], p["frechet_distance"]) for p in table[plain]]
                plain_budget = rows[plain][0]["budget"]["minutes"]
                ratios.setdefault(name, {})[plain] = time_to_quality(curve, final_fd, budget, plain_budget)
                print(f"time to quality, {name} vs {plain}: {ratios[name][plain]}x (the {plain} loop's minutes to "
                      f"reach {name}'s final FD {final_fd:.4f}, divided by the {budget:g}-minute budget)")
    summary = []
    if tag in table and len(project_rows) > 1:  # a sweep: every lever against the baseline row
        summary = sweep_summary(table, project_rows, tag)
        print_sweep_summary(summary, tag)
    if tag in ratios:  # the headline row keeps the flat form {plain: ratio}
        ratios = {**ratios[tag], **{k: v for k, v in ratios.items() if k != tag}}
    result = {"config": {k: v for k, v in vars(args).items()}, "real_data_floor": floor, "rows": table,
              "time_to_quality": ratios, "sweep": summary,
              "train_commands": {name: row["command"] for name, (row, _) in rows.items() if row["command"]},
              "training_threads": {name: row["threads"] for name, (row, _) in rows.items()}}
    Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output_json).write_text(json.dumps(result, indent=2))
    curves_plot({name: [(p["minutes"], p["frechet_distance"]) for p in points] for name, points in table.items()},
                args.plot, xlabel="CPU minutes of training",
                ylabel=f"FD, DDIM {args.sample_steps} (n={args.num_samples}, judge features)",
                floor=(floor, f"real-data floor (n={args.num_samples})"))
    print(f"wrote {args.output_json} and {args.plot}")
    if summary:
        sweep_plot = str(Path(args.plot).with_name(Path(args.plot).stem + "_summary.png"))
        relative_change_plot([(line["row"], line["vs_baseline"], line["vs_baseline_at_equal_steps"]) for line in summary],
                             ("at equal minutes", "at equal steps"), sweep_plot,
                             xlabel=f"final FD / {tag}'s final FD (lower is better)", threshold=0.95)
        print(f"wrote {sweep_plot}")
    return result


if __name__ == "__main__":
    main()
