"""A graph-mode ``UNet2DModel`` forward for sampling: one TorchScript trace per input signature.

Why: at the batch sizes this project samples with on a CPU (8-64 MNIST images), a mnist-small forward is ~35 ms on
one thread, and some 10-15% of it is Python: diffusers' module tree, shape checks and argument handling run again at
every step. A trace records the forward's ATen calls once and replays them without that Python, with the same
kernels in the same order, so the float32 outputs are bit-identical to eager (``tests/test_sampling_pipeline.py``).

A trace fixes every Python decision taken while tracing: diffusers' shape checks and the timestep broadcast see
constant shapes, and a class-conditional call traces the class-embedding branch. That is why each distinct
``(shape, dtype, timestep dtype, with or without class labels, device)`` gets its own trace (0.2-1 s for mnist-small,
paid at its first call), and why a forward with autograd on (plug-and-play, guidance gradients through the UNet)
runs eagerly instead.

It is part of the fast path (``enable_fast_cpu_inference()``, unless ``compile=True``), never of the plain
pipeline: a traced forward does not see hooks or modules swapped in after the trace. ``torch.jit.trace`` is
deprecated in favour of ``torch.compile``/``torch.export`` but works in the pinned torch; ``compile=True``
(inductor) is faster where its tens of seconds of compile pay off, and ``trace=False`` turns the trace off.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
from diffusers.models.unets.unet_2d import UNet2DOutput


class _ForwardWithoutDict(torch.nn.Module):
    """``unet(sample, timestep[, class_labels])`` returning the tensor (a trace takes tensors and tuples only)."""

    def __init__(self, unet: torch.nn.Module, with_labels: bool):
        super().__init__()
        self.unet, self.with_labels = unet, with_labels

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, *class_labels: torch.Tensor) -> torch.Tensor:
        kwargs = {"class_labels": class_labels[0]} if self.with_labels else {}
        return self.unet(sample, timesteps, return_dict=False, **kwargs)[0]


class TracedUNet(torch.nn.Module):
    """Call like a ``UNet2DModel``; no-grad forwards go through a cached trace of ``unet`` per input signature.

    Args:
        unet: the ``UNet2DModel`` to run (its parameters are shared, not copied: in-place weight updates show).
        max_traces: traces kept; the oldest is dropped beyond it (a sampling run uses one or two signatures).

    ``forward(sample, timestep, class_labels=None)``: ``sample`` ``(B, C, H, W)`` in the UNet's dtype, ``timestep`` an
    int, a 0-d tensor or a ``(B,)`` tensor, ``class_labels`` ``(B,)`` long or None. Returns a ``UNet2DOutput`` whose
    ``sample`` is ``(B, C, H, W)``, the same values as ``unet(sample, timestep, class_labels=...)``.
    """

    def __init__(self, unet: torch.nn.Module, max_traces: int = 8):
        super().__init__()
        self.unet, self.max_traces = unet, max_traces
        self._traces: OrderedDict[tuple, torch.jit.ScriptModule] = OrderedDict()

    @property
    def num_traces(self) -> int:
        return len(self._traces)

    @staticmethod
    def batch_timesteps(timestep: torch.Tensor | int | float, sample: torch.Tensor) -> torch.Tensor:
        """``(B,)`` timesteps, as ``UNet2DModel.forward`` broadcasts them (a Python number becomes int64)."""
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], dtype=torch.long, device=sample.device)
        return timestep.reshape(-1).to(sample.device).expand(sample.shape[0])

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int | float, class_labels: torch.Tensor | None = None
    ) -> UNet2DOutput:
        if torch.is_grad_enabled():  # traces are recorded without autograd; gradients take the eager module
            kwargs = {} if class_labels is None else {"class_labels": class_labels}
            return self.unet(sample, timestep, **kwargs)
        timesteps = self.batch_timesteps(timestep, sample)
        inputs = (sample, timesteps) if class_labels is None else (sample, timesteps, class_labels)
        key = (tuple(sample.shape), sample.dtype, timesteps.dtype, class_labels is not None, sample.device)
        return UNet2DOutput(sample=self._trace_for(key, inputs)(*inputs))

    def _trace_for(self, key: tuple, inputs: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
        if key in self._traces:
            self._traces.move_to_end(key)
            return self._traces[key]
        with warnings.catch_warnings():
            # the tracer warns at each shape check it turns into a constant, and that the API is deprecated; both
            # are the reason for one trace per signature (see the module docstring), not news at every call
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            wrapper = _ForwardWithoutDict(self.unet, with_labels=len(inputs) == 3)
            traced = torch.jit.trace(wrapper, inputs, check_trace=False)
        self._traces[key] = traced
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
        return traced
