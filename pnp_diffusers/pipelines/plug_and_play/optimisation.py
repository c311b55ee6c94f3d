"""What the optimisation methods share: their common settings, the weight schedule and the batched loop.

Every sample of a batch is optimised independently: per-sample losses are summed, so each sample's
gradient is exactly its own (the UNet mixes nothing across the batch), and the optimisers are
elementwise (Adam, SGD). A sample whose loss becomes NaN/inf is frozen and reported; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ...constraints import masked_gradient
from ...utils import broadcast_to_sample
from .registry import MethodSettings, check_positive_int, check_real

OPTIMIZERS = ("adam", "sgd")
WEIGHT_SCHEDULES = ("constant", "linear-decay")


@dataclass(frozen=True)
class OptimisationSettings(MethodSettings):
    """Settings every optimisation method has.

    Attributes:
        num_iterations: optimisation steps N.
        learning_rate: the optimiser's step size.
        optimizer: "adam" or "sgd" (plain gradient descent).
        constraint_weight: scale of the constraint term.
        weight_schedule: "linear-decay" (multiplier (N - i) / N, the paper's), "constant" (1), or a
            callable ``(i, N) -> float`` multiplier.
    """

    num_iterations: int = 1000
    learning_rate: float = 0.01
    optimizer: str = "adam"
    constraint_weight: float = 0.01
    weight_schedule: str | Callable[[int, int], float] = "linear-decay"

    def validate(self, num_train_timesteps: int) -> None:
        check_positive_int(self.num_iterations, "num_iterations")
        check_real(self.learning_rate, "learning_rate", positive=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        check_real(self.constraint_weight, "constraint_weight")
        if not callable(self.weight_schedule) and self.weight_schedule not in WEIGHT_SCHEDULES:
            raise ValueError(
                f"`weight_schedule` must be one of {WEIGHT_SCHEDULES} or a callable (i, N) -> float, "
                f"got {self.weight_schedule!r}."
            )


def constraint_weight_at(
    iteration: int, num_iterations: int, constraint_weight: float, weight_schedule: str | Callable
) -> float:
    """The constraint weight ``w_i`` of iteration ``i``: ``constraint_weight`` times the schedule's multiplier.

    "linear-decay": ``(N - i) / N`` (the paper's ``0.01 * (N - i) / N`` with ``constraint_weight=0.01``);
    "constant": 1; a callable ``(i, N) -> float`` gives the multiplier directly.
    """
    if callable(weight_schedule):
        multiplier = float(weight_schedule(iteration, num_iterations))
    elif weight_schedule == "linear-decay":
        multiplier = (num_iterations - iteration) / num_iterations
    else:
        multiplier = 1.0
    return float(constraint_weight) * multiplier


def make_optimizer(name: str, parameter: torch.Tensor, learning_rate: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam([parameter], lr=learning_rate)
    return torch.optim.SGD([parameter], lr=learning_rate)


@dataclass
class OptimisationTrace:
    """What :func:`optimise` records: per-sample iterations (B,), NaN-stopped flags (B,), last prior (B,), (N, B) history."""

    iterations: torch.Tensor
    nan_stopped: torch.Tensor
    last_prior: torch.Tensor
    history: torch.Tensor


def optimise(
    parameter: torch.Tensor,
    settings: OptimisationSettings,
    loss_fn: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    timesteps_for_callback: Sequence[int],
    callback: Callable[[int, int, torch.Tensor], torch.Tensor | None] | None,
    progress_bar,
) -> OptimisationTrace:
    """Minimise ``loss_fn`` over ``parameter`` (B, ...) for ``settings.num_iterations`` steps, per sample.

    ``loss_fn(i)`` returns (total per-sample loss (B,), prior/regulariser part (B,)). Samples whose
    total loss is not finite are frozen at their current value (their gradient zeroed and any
    optimiser move undone), marked ``nan_stopped`` and left out of later updates. ``callback(i, t, x)``
    runs after every step; a tensor it returns replaces the parameter.
    """
    batch, n, device = parameter.shape[0], settings.num_iterations, parameter.device
    optimizer = make_optimizer(settings.optimizer, parameter, settings.learning_rate)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    iterations = torch.zeros(batch, dtype=torch.long, device=device)
    last_prior = torch.full((batch,), float("nan"), device=device)
    history = torch.full((n, batch), float("nan"))
    with progress_bar(total=n) as bar:
        for i in range(n):
            loss, prior = loss_fn(i)
            active = active & torch.isfinite(loss)
            last_prior = torch.where(active, prior.detach(), last_prior)
            history[i] = torch.where(active, loss.detach(), torch.nan).cpu()
            optimizer.zero_grad(set_to_none=True)
            if active.any():
                before = parameter.detach().clone()
                mask = broadcast_to_sample(active.float(), parameter)
                parameter.grad = masked_gradient(loss, parameter, active) * mask
                optimizer.step()
                with torch.no_grad():  # Adam's momentum would still move a frozen sample: put it back
                    parameter.copy_(torch.where(mask.bool(), parameter, before))
                iterations += active.long()
            if callback is not None:
                replacement = callback(i, int(timesteps_for_callback[i]), parameter.detach())
                if replacement is not None:
                    with torch.no_grad():
                        parameter.copy_(replacement)
            bar.update()
    return OptimisationTrace(iterations, ~active, last_prior, history)
