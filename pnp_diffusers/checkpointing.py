"""Training state that outlives a launch: atomic checkpoints, their discovery for ``--resume_from_checkpoint``,
the generator that makes a resumed run draw the same noise, the wall-clock budget, and EMA weight swaps.

Used by ``train/train.py``; a killed run loses at most the steps since its last checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel

from .training_utils import LEGACY_CHECKPOINT_RECIPE, RECIPE_KEYS, TrainingClock, adopt_settings

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINING_STATE_FILE = "training_state.json"


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints in ``output_dir`` as (step, path), oldest first.

    Only folders named exactly ``checkpoint-<step>`` count: they are renamed into place after the
    whole state is written, so partial writes (``*.tmp``) are never picked up.
    """
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isfile(os.path.join(path, TRAINING_STATE_FILE)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume_path(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The checkpoint folder ``--resume_from_checkpoint`` names: ``latest`` is the newest complete one in
    ``output_dir`` (None when there is none yet), any other value must be a complete checkpoint folder."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    path = resume_from_checkpoint
    if not os.path.isfile(os.path.join(path, TRAINING_STATE_FILE)):
        raise ValueError(f"`--resume_from_checkpoint` {path!r} is not a complete checkpoint (no {TRAINING_STATE_FILE}).")
    return path


def recipe_of_checkpoint(checkpoint_path: str, requested: dict) -> dict:
    """The recipe (``RECIPE_KEYS``: network, noise schedule and Min-SNR gamma, 0 for none) of a run resumed from
    ``checkpoint_path``: ``requested`` with every None filled from the checkpoint's record.

    Why: a resumed run must keep what its weights were trained for, whatever train.py's defaults have become since.
    A checkpoint that records no recipe was written before checkpoints did (session 26), when the defaults were
    epsilon prediction and the plain MSE (``LEGACY_CHECKPOINT_RECIPE``): those fill its unset values, without a
    clash check, since the flags of its first launch are unknown.

    Raises a ``ValueError`` naming each ``--key`` set to a value other than the recorded one.
    """
    with open(os.path.join(checkpoint_path, TRAINING_STATE_FILE)) as f:
        recorded = json.load(f).get("recipe")
    if recorded is None:
        return {key: LEGACY_CHECKPOINT_RECIPE.get(key) if value is None else value for key, value in requested.items()}
    return adopt_settings({key: recorded.get(key) for key in RECIPE_KEYS}, requested, "--resume_from_checkpoint",
                          checkpoint_path, "the checkpoint's")


def save_checkpoint(accelerator: Accelerator, output_dir: str, global_step: int, total_limit: int | None = None,
                    clock: TrainingClock | None = None, recipe: dict | None = None) -> None:
    """Write the full training state atomically: into ``<name>.tmp``, then a rename; keep ``total_limit`` in all.

    ``recipe`` (``{key: value}`` for ``RECIPE_KEYS``) is recorded beside the step, for ``recipe_of_checkpoint``."""
    final = os.path.join(output_dir, f"checkpoint-{global_step}")
    tmp = final + ".tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(tmp, TRAINING_STATE_FILE), "w") as f:
            json.dump({"global_step": global_step, "training_minutes": round(clock.minutes, 3) if clock else None,
                       "recipe": recipe}, f)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


def prune_checkpoints(output_dir: str, total_limit: int | None) -> None:
    """Keep at most ``total_limit - 1`` old checkpoints so the new one makes ``total_limit``."""
    if total_limit is None:
        return
    checkpoints = list_checkpoints(output_dir)
    for _, path in checkpoints[: max(0, len(checkpoints) - total_limit + 1)]:
        shutil.rmtree(path, ignore_errors=True)


class TrainingRNG:
    """The generator behind noise, timesteps and label dropout, saved in every checkpoint.

    A dedicated generator (rather than the global one, which DataLoader iterators also draw from)
    makes a resumed run draw exactly the noise the uninterrupted run would have drawn.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def time_budget_spent(accelerator: Accelerator, max_minutes: float | None, start_time: float) -> bool:
    """Whether this launch's wall-clock budget is spent; all processes stop together once any one has spent it."""
    if max_minutes is None:
        return False
    spent = torch.tensor(float(time.time() - start_time >= 60 * max_minutes), device=accelerator.device)
    if accelerator.num_processes > 1:
        spent = accelerator.reduce(spent, reduction="max")
    return bool(spent.item())


class ema_weights:
    """Context manager: the unwrapped UNet with EMA weights swapped in, restored on exit."""

    def __init__(self, ema: EMAModel | None, unet, accelerator: Accelerator):
        self.ema, self.model = ema, accelerator.unwrap_model(unet, keep_torch_compile=False)

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.model.parameters())
            self.ema.copy_to(self.model.parameters())
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.model.parameters())
        return False
