"""One sampling loop for every sampler: DDPM, DDIM, annealed Langevin, predictor-corrector, with
classifier-free guidance, DDIM latent interpolation and DDIM inversion.

The scheduler *is* the sampler. A sampler that needs several model calls per noise level repeats
that timestep in ``scheduler.timesteps``, so the loop below calls the model once per entry and the
progress bar, callbacks and guidance are right for all of them. Swapping samplers is one line::

    pipe.scheduler = PredictorCorrectorScheduler.from_config(pipe.scheduler.config)
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from typing import Any, Callable, Sequence

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ...hub import RemoteCodePipelineMixin
from ...models import is_class_conditional, null_class_label
from ...speed import has_fast_bf16
from ...utils import postprocess_images
from ..pipeline_utils import (
    check_call_inputs,
    check_strength,
    image_shape,
    img2img_begin_index,
    prepare_class_labels,
    preprocess_image,
)

logger = logging.getLogger(__name__)

from .classifier_guidance import check_classifier_guidance, classifier_guided_output, classifier_target_labels
from .interpolation import DEFAULT_DDIM_STEPS, INVERTIBLE_SPACINGS, InterpolationMixin  # noqa: F401
from .traced_unet import TracedUNet


class DiffusionSamplingPipeline(InterpolationMixin, RemoteCodePipelineMixin, DiffusionPipeline):
    """Unconditional or class-conditional image sampling with any scheduler.

    Args:
        unet: a noise predictor with the :class:`~diffusers.UNet2DModel` interface
            ``unet(sample, timestep, class_labels=None).sample``. Class-conditional when its config has
            ``num_class_embeds`` (= number of classes + 1; the last index is the null class).
        scheduler: :class:`~diffusers.DDPMScheduler`, :class:`~diffusers.DDIMScheduler`, or a scheduler of
            this package (:class:`AnnealedLangevinScheduler`, :class:`PredictorCorrectorScheduler`,
            :class:`DDIMSkipScheduler`); any diffusers scheduler with the usual ``set_timesteps``/``step`` works.

    Saving: ``save_pretrained`` writes the stock ``unet/`` and ``scheduler/`` folders (a scheduler of this
    package is saved as the ``DDPMScheduler`` with the same noise schedule), the ``pipeline.py`` remote-code
    shim and a model card; see :mod:`pnp_diffusers.hub`.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "noise_pred"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        # fast path (enable_fast_cpu_inference): a prepared copy of the UNet and the dtype it runs in
        self._fast_unet: Callable | None = None
        self._fast_dtype: torch.dtype | None = None

    # ------------------------------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int | None = None,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        image: Any = None,
        strength: float | None = None,
        classifier: torch.nn.Module | None = None,
        classifier_guidance_scale: float | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Draw ``batch_size`` images, from noise or (``image``, ``strength``) from a noised input image.

        Args:
            batch_size: number of images.
            num_inference_steps: the scheduler's number of steps (noise levels). Default: the number of
                training timesteps for DDPM (1000), 50 for DDIM, the scheduler's ``default_num_inference_steps``
                otherwise. The model is called ``len(scheduler.timesteps)`` times (more than this for
                Langevin and predictor-corrector, which repeat timesteps).
            class_labels: for a class-conditional UNet: an int (the same class for all images), a list or a
                ``(batch_size,)`` tensor of ints in ``[0, num_classes)``. ``None`` samples unconditionally
                through the null class.
            guidance_scale: classifier-free guidance weight ``w`` (Ho & Salimans 2022):
                ``eps = eps_uncond + w (eps_cond - eps_uncond)``; needs ``class_labels``. ``None`` or 1 is the
                conditional model alone, 0 the unconditional model alone (one forward each); any other
                ``w >= 0`` runs conditional and unconditional inputs as one batched forward.
            generator: a ``torch.Generator`` or one per image; the only source of randomness.
            latents: ``(batch_size, C, H, W)`` initial noise ``x_T``; drawn from ``generator`` if ``None``.
            eta: DDIM's eta in [0, 1], passed to schedulers whose ``step`` takes it.
            output_type: ``"pil"`` (list of PIL images), ``"np"`` (``(B, H, W, C)`` float array in [0, 1]) or
                ``"pt"`` (``(B, C, H, W)`` float tensor in [0, 1]).
            return_dict: return an :class:`ImagePipelineOutput` rather than a tuple.
            callback_on_step_end: ``fn(pipe, step_index, timestep, callback_kwargs) -> dict`` called after
                every model call; it may return a replacement ``"latents"``.
            callback_on_step_end_tensor_inputs: names passed in ``callback_kwargs`` (``"latents"``, ``"noise_pred"``).
            image: img2img / SDEdit (Meng et al. 2022) input, values in [0, 1]: a PIL image or a list, a numpy
                ``(H, W[, C])``/``(B, H, W, C)`` array or a ``(C, H, W)``/``(B, C, H, W)`` tensor at the UNet's size.
                It is noised to the level ``strength`` picks and denoised from there by the pipeline's scheduler
                (any of them, with CFG too). One image with ``batch_size > 1`` gives that many completions.
            strength: share of the ``num_inference_steps`` noise levels run, in [0, 1] (default 0.8, as diffusers'
                img2img pipelines): the run starts at ``timesteps[t_start * order]`` with
                ``t_start = num_inference_steps - int(num_inference_steps * strength)``. 0 returns ``image``;
                1 ignores it and is exactly plain sampling from the same generator.
            classifier: a noise-aware classifier (``train/train_classifier.py --noise_aware``) for classifier
                guidance (Dhariwal & Nichol 2021) towards ``class_labels``, with any scheduler, on a conditional or
                unconditional UNet, with or without CFG: ``eps -= s sqrt(1 - abar_t) grad log p(y | x_t, t)``
                (:mod:`.classifier_guidance`). One classifier forward and backward per model call.
            classifier_guidance_scale: s >= 0 (default 1 when a ``classifier`` is given).

        Returns:
            :class:`~diffusers.pipelines.pipeline_utils.ImagePipelineOutput` with ``images``.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        init_image, batch_size = self.prepare_image(image, strength, latents, batch_size)
        self.check_inputs(
            batch_size, num_inference_steps, generator, latents, eta, output_type, callback_on_step_end_tensor_inputs
        )
        device = self._execution_device
        classifier_scale = check_classifier_guidance(classifier, classifier_guidance_scale, class_labels)
        unet_labels = class_labels if classifier is None or is_class_conditional(self.unet) else None
        labels = self.prepare_class_labels(unet_labels, guidance_scale, batch_size, device)
        guidance = None
        if classifier is not None:
            guidance = (classifier, classifier_scale, classifier_target_labels(classifier, class_labels, batch_size, device))
        latents = self.prepare_latents(batch_size, generator, latents, device, self.unet.dtype)
        num_inference_steps = num_inference_steps or default_num_inference_steps(self.scheduler)
        begin_index = 0
        if init_image is not None:
            latents, begin_index = self.noise_image(init_image.to(device, self.unet.dtype), latents, num_inference_steps,
                                                    0.8 if strength is None else strength)
        latents = self.denoise(
            latents,
            self.scheduler,
            num_inference_steps,
            class_labels=labels,
            guidance_scale=guidance_scale,
            generator=generator,
            eta=eta,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            begin_index=begin_index,
            classifier_guidance=guidance,
        )
        images = self.postprocess(latents, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def denoise(
        self,
        latents: torch.Tensor,
        scheduler: SchedulerMixin,
        num_inference_steps: int,
        *,
        class_labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float = 0.0,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        begin_index: int = 0,
        classifier_guidance: tuple | None = None,
    ) -> torch.Tensor:
        """The sampling loop: one model call and one ``scheduler.step`` per entry of ``scheduler.timesteps``.

        Args:
            latents: ``(B, C, H, W)`` starting noise (already scaled by ``init_noise_sigma``), or the noised
                image at ``timesteps[begin_index]``.
            scheduler: the sampler; ``set_timesteps(num_inference_steps)`` is called here.
            class_labels: ``(B,)`` long tensor from :meth:`prepare_class_labels`, or ``None``.
            begin_index: the first entry of ``timesteps`` to run (img2img), passed to ``set_begin_index``
                for schedulers that keep a step index.
            classifier_guidance: ``(classifier, scale, target labels (B,))`` to shift each model output by
                classifier guidance, or None.

        Returns:
            ``(B, C, H, W)`` final samples in model space (about [-1, 1]).
        """
        scheduler.set_timesteps(num_inference_steps, device=latents.device)
        timesteps = scheduler.timesteps[begin_index:]
        if begin_index and len(timesteps) and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin_index)
        step_kwargs = self.prepare_extra_step_kwargs(scheduler, generator, eta)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                model_input = scheduler.scale_model_input(latents, t)
                noise_pred = self.predict_noise(model_input, t, class_labels, guidance_scale)
                if classifier_guidance is not None:
                    classifier, scale, targets = classifier_guidance
                    noise_pred = classifier_guided_output(noise_pred, model_input, t, targets, classifier, scale, scheduler)
                latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
                if callback_on_step_end is not None:
                    step_tensors = {"latents": latents, "noise_pred": noise_pred}
                    callback_kwargs = {name: step_tensors[name] for name in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                progress_bar.update()
        return latents

    def predict_noise(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        class_labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """The model output at ``(sample, timestep)``, with classifier-free guidance when asked.

        Ho & Salimans 2022: ``eps = eps_uncond + w (eps_cond - eps_uncond)``, the unconditional branch being
        the null class. ``w`` of ``None`` or 1 calls the conditional model only and 0 the unconditional one
        only (exactly those models); otherwise both halves go through the UNet as one batch of ``2B``.

        Args:
            sample: ``(B, C, H, W)`` noisy images.
            timestep: scalar timestep.
            class_labels: ``(B,)`` long tensor (the null class for unconditional sampling) or ``None``
                for an unconditional UNet.

        Returns:
            ``(B, C, H, W)`` model output in ``sample``'s dtype.
        """
        if class_labels is None:
            return self.run_unet(sample, timestep)
        if guidance_scale is None or guidance_scale == 1:
            return self.run_unet(sample, timestep, class_labels)
        null_labels = torch.full_like(class_labels, null_class_label(self.unet))
        if guidance_scale == 0:
            return self.run_unet(sample, timestep, null_labels)
        both = self.run_unet(torch.cat([sample, sample]), timestep, torch.cat([class_labels, null_labels]))
        eps_cond, eps_uncond = both.chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    def run_unet(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One UNet forward (through the fast-path copy if enabled); returns the output in ``sample``'s dtype."""
        kwargs = {} if class_labels is None else {"class_labels": class_labels}
        if self._fast_unet is None:
            return self.unet(sample, timestep, **kwargs).sample
        model_input = sample.to(self._fast_dtype) if self._fast_dtype is not None else sample
        output = self._fast_unet(model_input, timestep, **kwargs).sample
        return output.to(dtype=sample.dtype, memory_format=torch.contiguous_format)

    # -------------------------------------------------------------------------------------- fast path

    def enable_fast_cpu_inference(
        self, bf16: bool | None = None, channels_last: bool = False, compile: bool = False, trace: bool | None = None
    ) -> "DiffusionSamplingPipeline":
        """Run the UNet forwards through a faster copy of the UNet; the sampler's arithmetic (scheduler steps,
        guidance) stays in the UNet's own dtype, float32 by default.

        Args:
            bf16: the copy holds bfloat16 weights and takes bfloat16 inputs; its outputs are cast back.
                On a CPU with AVX512-BF16 a mnist-small forward is about 1.45x faster; images change
                slightly (``benchmarks/bench_sampling.py`` measures speed and pixel difference). ``None``
                (default): bf16 only where the UNet's device runs it natively (``pnp_diffusers.speed.has_fast_bf16``);
                on an AVX2-only CPU bf16 is emulated, 20x slower, and the pipeline stays in float32.
                ``True`` forces the bf16 copy (with a warning where it is emulated).
            channels_last: NHWC memory layout for the copy (slower for the small MNIST UNets measured here,
                it may help larger ones).
            compile: wrap the copy in ``torch.compile`` with inductor's weight freezing (the copy's weights are
                constants until the next call of this method): the first call compiles for tens of seconds, then a
                bf16 mnist-small forward ran about 1.85x faster than float32 eager (AVX512-BF16); on an AVX2-only
                CPU, one thread, freezing took a mnist-small forward from 1.11x to 1.18x eager at batch 8.
            trace: replay the copy's forward from a TorchScript trace, one per input shape (0.2-1 s each, at its
                first call), without diffusers' per-module Python: the same kernels, so the images are bit-identical
                to the copy run eagerly (to float32 eager with ``bf16=False``). On one AMX core a mnist-small DDIM
                run was 1.17x faster in float32 and 1.22x in bf16 at batch 8, 1.06x at batch 64
                (``benchmarks/bench_sampling.py`` measures it). Autograd calls run eagerly. ``None`` (default): on
                unless ``compile`` (both take the Python out; they do not combine). See :mod:`.traced_unet`.

        The copy is taken now: call this again after changing the UNet's weights, and after moving the
        pipeline to another device. ``save_pretrained`` and everything else use the registered float32 UNet.

        Returns:
            The pipeline itself.
        """
        native_bf16 = has_fast_bf16(self.unet.device)
        if bf16 is None:
            bf16 = native_bf16
        elif bf16 and not native_bf16:
            logger.warning(
                "enable_fast_cpu_inference(bf16=True): %s has no native bfloat16 kernels, so the bf16 copy will be "
                "emulated and slower than float32; pass bf16=None to let the pipeline decide.", self.unet.device
            )
        if trace and compile:
            raise ValueError("`trace` and `compile` are two ways to take Python out of the forward; pick one.")
        if trace is None:
            trace = not compile
        if not (bf16 or channels_last or compile or trace):
            self._fast_unet, self._fast_dtype = None, None
            return self
        fast_unet = copy.deepcopy(self.unet).eval().requires_grad_(False)
        if bf16:
            # nn.Module.to: diffusers' ModelMixin.to warns about keep-in-fp32 modules, which UNet2DModel has none of
            torch.nn.Module.to(fast_unet, torch.bfloat16)
        if channels_last:
            fast_unet = fast_unet.to(memory_format=torch.channels_last)
        # freezing folds the constant weights into the graph (inductor applies it to no-grad calls only, which
        # __call__ is; a call under autograd compiles without it)
        if compile:
            fast_unet = torch.compile(fast_unet, options={"freezing": True})
        elif trace:
            fast_unet = TracedUNet(fast_unet)
        self._fast_unet = fast_unet
        self._fast_dtype = torch.bfloat16 if bf16 else None
        return self

    def disable_fast_cpu_inference(self) -> "DiffusionSamplingPipeline":
        """Back to plain forwards of the registered UNet."""
        return self.enable_fast_cpu_inference(bf16=False, channels_last=False, compile=False, trace=False)

    # --------------------------------------------------------------------------------- input handling

    def sample_shape(self, batch_size: int) -> tuple[int, ...]:
        """``(batch_size, C, H, W)`` from the UNet's config."""
        return (batch_size, *image_shape(self.unet))

    def check_inputs(
        self,
        batch_size: Any,
        num_inference_steps: Any,
        generator: Any,
        latents: Any,
        eta: Any,
        output_type: Any,
        callback_on_step_end_tensor_inputs: Any,
    ) -> None:
        """Raise a ``ValueError`` naming the first bad argument.

        The checks every pipeline shares (``batch_size``, ``generator``, ``latents`` of shape ``(B, C, H, W)``
        and finite, ``output_type``, callback tensor names) are :func:`~..pipeline_utils.check_call_inputs`;
        ``num_inference_steps`` (a positive integer or None) and ``eta`` (in [0, 1]) are this pipeline's own.
        """
        check_call_inputs(self, batch_size, output_type, latents, generator, callback_on_step_end_tensor_inputs)
        if num_inference_steps is not None and (
            not isinstance(num_inference_steps, int) or isinstance(num_inference_steps, bool) or num_inference_steps < 1
        ):
            raise ValueError(f"`num_inference_steps` must be a positive integer or None, got {num_inference_steps!r}.")
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
            raise ValueError(f"`eta` must be a number in [0, 1], got {eta!r}.")

    def prepare_class_labels(
        self,
        class_labels: int | Sequence[int] | torch.Tensor | None,
        guidance_scale: float | None,
        batch_size: int,
        device: torch.device,
    ) -> torch.Tensor | None:
        """Validate labels and guidance; return a ``(batch_size,)`` long tensor, or ``None`` for an unconditional UNet.

        A conditional UNet without labels gets the null class (unconditional sampling).
        """
        conditional = is_class_conditional(self.unet)
        if guidance_scale is not None:
            if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
                raise ValueError(f"`guidance_scale` must be a number or None, got {guidance_scale!r}.")
            if not math.isfinite(guidance_scale) or guidance_scale < 0:
                raise ValueError(f"`guidance_scale` must be a finite number >= 0, got {guidance_scale!r}.")
        if not conditional and guidance_scale is not None:
            raise ValueError(
                "`class_labels` and `guidance_scale` need a class-conditional UNet (built with `num_class_embeds`); "
                "this UNet is unconditional."
            )
        if conditional and class_labels is None and guidance_scale is not None:
            raise ValueError("`guidance_scale` needs `class_labels` (the class to guide towards).")
        return prepare_class_labels(self.unet, class_labels, batch_size, device)

    def prepare_image(self, image: Any, strength: Any, latents: Any, batch_size: Any) -> tuple[torch.Tensor | None, Any]:
        """Validate the img2img inputs; return the image in model space ``(B, C, H, W)`` (or None) and the batch size.

        One image serves any ``batch_size``; a batch of ``B`` images sets ``batch_size = B``.
        """
        if image is None:
            if strength is not None:
                raise ValueError("`strength` needs an `image` to start from (img2img); drop it to sample from noise.")
            return None, batch_size
        if strength is not None:
            check_strength(strength)
        if latents is not None:
            raise ValueError("Pass either `image` (img2img: its noise is drawn from `generator`) or `latents`, not both.")
        init = preprocess_image(image, self.sample_shape(1)[1:], "image")
        if init.shape[0] == 1 and isinstance(batch_size, int) and batch_size > 1:
            init = init.expand(batch_size, -1, -1, -1)
        elif batch_size not in (1, init.shape[0]):
            raise ValueError(f"`batch_size`={batch_size} but `image` holds {init.shape[0]} images: pass one image or batch_size 1.")
        return init, int(init.shape[0])

    def noise_image(
        self, image: torch.Tensor, noise: torch.Tensor, num_inference_steps: int, strength: float
    ) -> tuple[torch.Tensor, int]:
        """SDEdit's start (Meng et al. 2022): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` at the entry level.

        Returns the starting latents and the index in ``scheduler.timesteps`` to start from. At strength 1 the
        start is the noise itself (plain sampling); at strength 0 no level runs and the image is returned.
        """
        self.scheduler.set_timesteps(num_inference_steps, device=image.device)
        begin_index = img2img_begin_index(self.scheduler, num_inference_steps, strength)
        if strength == 1:
            return noise, 0
        if begin_index >= len(self.scheduler.timesteps):
            return image, begin_index
        start = self.scheduler.timesteps[begin_index].repeat(image.shape[0])
        return self.scheduler.add_noise(image, noise / self.scheduler.init_noise_sigma, start), begin_index

    def prepare_latents(
        self,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Initial noise ``x_T ~ N(0, I)`` from ``generator`` (or the given ``latents``), times ``init_noise_sigma``."""
        if latents is None:
            latents = randn_tensor(self.sample_shape(batch_size), generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    @staticmethod
    def prepare_extra_step_kwargs(
        scheduler: SchedulerMixin, generator: torch.Generator | list[torch.Generator] | None, eta: float
    ) -> dict[str, Any]:
        """``generator``, ``eta`` and ``use_clipped_model_output`` for ``scheduler.step``, when it takes them.

        With x0 clamping on (``clip_sample`` or ``thresholding``), DDIM-type steps get
        ``use_clipped_model_output=True``: the direction term of DDIM's update (Song et al. 2021, eq. 12)
        then uses the noise consistent with the clamped x0 rather than the raw prediction. diffusers'
        default (the raw noise) mixes two inconsistent estimates; under classifier-free guidance, whose
        extrapolated noise drives x0 far outside [-1, 1], that breaks the samples (examples/quickstart.py's
        CFG DDIM 50 grid at w=3: 12% guide-classifier agreement with the raw noise, 100% with the clamped one).
        """
        parameters = inspect.signature(scheduler.step).parameters
        kwargs: dict[str, Any] = {}
        clamps_x0 = bool(getattr(scheduler.config, "clip_sample", False) or getattr(scheduler.config, "thresholding", False))
        if "use_clipped_model_output" in parameters and clamps_x0:
            kwargs["use_clipped_model_output"] = True
        if "generator" in parameters:
            kwargs["generator"] = generator
        if "eta" in parameters:
            kwargs["eta"] = eta
        elif eta != 0:
            raise ValueError(
                f"`eta`={eta} is only used by DDIM-type schedulers; {type(scheduler).__name__}.step takes no eta."
            )
        return kwargs

    def postprocess(self, samples: torch.Tensor, output_type: str) -> Any:
        """Model-space samples (about [-1, 1]) to images in [0, 1] as ``output_type``."""
        return postprocess_images(samples, output_type)


# ------------------------------------------------------------------------------------------- helpers


def default_num_inference_steps(scheduler: SchedulerMixin) -> int:
    """A sensible number of steps per sampler: all training timesteps for DDPM, 50 for DDIM and other
    diffusers schedulers, the scheduler's own ``default_num_inference_steps`` when it defines one
    (never more than the number of training timesteps)."""
    num_train_timesteps = int(scheduler.config.num_train_timesteps)
    own_default = getattr(scheduler, "default_num_inference_steps", None)
    if own_default is not None:
        return min(int(own_default), num_train_timesteps)
    if isinstance(scheduler, DDPMScheduler):
        return num_train_timesteps
    return min(DEFAULT_DDIM_STEPS, num_train_timesteps)
