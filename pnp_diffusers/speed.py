"""How fast the hardware could go: model FLOPs (``torch.utils.flop_counter``) and this machine's matmul peak.

The benchmarks divide a UNet's counted FLOPs per second by the dense matmul rate measured in the same run,
so that a speed-up is read against what the CPU can do, not only against another loop.
"""

from __future__ import annotations

import copy
import time

import torch


def has_fast_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matmuls and convolutions run natively (not emulated) on ``device``.

    On CUDA: ``torch.cuda.is_bf16_supported()``. On the CPU, oneDNN's own check: it needs AVX512 (with the
    BF16/AMX extensions it is fast). On an AVX2-only CPU, such as one kind of this project's 2-core machines
    (AMD EPYC, Zen 3), bf16 is emulated and a mnist-small forward measured 20x slower than float32, so the
    fast path and ``train.py``'s default precision stay in float32 there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_mixed_precision(mixed_precision: str, device: torch.device | str | None = None) -> str:
    """The one rule behind every ``--mixed_precision auto`` (``train.py``, ``train_classifier.py``, ``bench_training.py``).

    ``auto`` is ``"bf16"`` where ``device`` runs bf16 natively (``has_fast_bf16``; default device: CUDA when present,
    else the CPU) and ``"no"`` elsewhere, because emulated bf16 is far slower than float32. ``"bf16"`` and ``"no"``
    pass through unchanged.
    """
    if mixed_precision != "auto":
        return mixed_precision
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16" if has_fast_bf16(device) else "no"


def unet_flops(unet, batch_size: int, backward: bool = False, mixed_precision: bool = False) -> int:
    """Model FLOPs of one UNet forward (and backward, for a training step) at ``batch_size``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, the UNet's bulk) on a
    float32 copy, so the count does not depend on the copy's dtype; bf16 autocast counts the same FLOPs.

    Args:
        unet: a ``UNet2DModel`` (class-conditional UNets get class 0).
        batch_size: images per call.
        backward: count the backward pass of a mean-squared loss too.
        mixed_precision: run the count under bf16 autocast (same count; checks that path runs).
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(unet).float().to(memory_format=torch.contiguous_format).train(backward)
    config = model.config
    x = torch.randn(batch_size, config.in_channels, config.sample_size, config.sample_size)
    t = torch.randint(0, 1000, (batch_size,))
    kwargs = {"class_labels": torch.zeros(batch_size, dtype=torch.long)} if config.num_class_embeds else {}
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision):
        if backward:
            model(x, t, **kwargs).sample.float().pow(2).mean().backward()
        else:
            with torch.no_grad():
                model(x, t, **kwargs)
    return int(counter.get_total_flops())


def matmul_peak_flops(dtype: torch.dtype, size: int = 1024, repeats: int = 20) -> float:
    """This machine's achieved dense ``size`` x ``size`` matmul rate (FLOP/s) in ``dtype``, with the current threads."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)
