"""The plug-and-play methods behind :class:`PlugAndPlayPipeline`, and how a call's settings are resolved.

A method is one module that defines its settings dataclass, its presets and its ``run`` function, and
ends with one ``register_method(...)`` line; the package's ``__init__`` imports it. ``run`` gets the
pipeline, the constraint, the starting tensor and the resolved settings, and returns a
:class:`MethodResult`. The pipeline does the rest (inputs, class labels, output).

    @dataclass(frozen=True)
    class MySettings(MethodSettings):
        num_iterations: int = 10

    def run_mine(pipe, constraint, start, settings, class_labels, generator, callback): ...

    register_method(PlugAndPlayMethod("mine", MySettings, run_mine, presets={"mine": MySettings()}))
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import torch


# --------------------------------------------------------------------------------------------- checks


def check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def check_real(value, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be a finite real number, got {value!r}.")
    if positive and not float(value) > 0:
        raise ValueError(f"`{name}` must be positive, got {value!r}.")
    return float(value)


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class MethodSettings:
    """Base of every method's settings: a frozen dataclass; presets are instances."""

    def with_overrides(self, overrides: dict[str, Any]) -> "MethodSettings":
        """These settings with a call's non-None overrides applied (a method may give some values a meaning)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self, num_train_timesteps: int) -> None:
        """Raise a ValueError naming the first setting that is out of range."""


@dataclass(frozen=True)
class MethodResult:
    """What a method's ``run`` returns.

    Attributes:
        images: (B, C, H, W) final images in model space (about [-1, 1]).
        prior_loss: (B,) the method's prior/regulariser term at the end.
        iterations: (B,) long, optimisation steps each sample ran.
        nan_stopped: (B,) bool, samples frozen because their loss became NaN/inf.
        loss_history: (N, B) total loss per iteration (NaN once a sample stopped).
        unet_forward_passes, unet_backward_passes: UNet passes per sample, the whole run.
    """

    images: torch.Tensor
    prior_loss: torch.Tensor
    iterations: torch.Tensor
    nan_stopped: torch.Tensor
    loss_history: torch.Tensor
    unet_forward_passes: int
    unet_backward_passes: int


@dataclass(frozen=True)
class PlugAndPlayMethod:
    """A registered method.

    Attributes:
        name: the ``method=`` value.
        settings_class: its :class:`MethodSettings` dataclass; a call's keyword settings must be its fields.
        run: ``(pipe, constraint, start (B, C, H, W), settings, class_labels, generator, callback) -> MethodResult``,
            where ``callback(i, t, parameter)`` must be called after every optimisation step and may
            return a replacement for the parameter.
        presets: named settings instances of ``settings_class``.
        default_preset: the preset used when the call names none.
        description: one line for error messages and docs.
    """

    name: str
    settings_class: type
    run: Callable[..., MethodResult]
    presets: dict[str, MethodSettings]
    default_preset: str
    description: str = ""

    def __post_init__(self):
        if not (isinstance(self.settings_class, type) and issubclass(self.settings_class, MethodSettings)):
            raise TypeError(f"`settings_class` of method {self.name!r} must subclass MethodSettings.")
        if self.default_preset not in self.presets:
            raise ValueError(f"`default_preset` {self.default_preset!r} of method {self.name!r} is not one of its presets.")
        for preset_name, preset in self.presets.items():
            if not isinstance(preset, self.settings_class):
                raise TypeError(f"Preset {preset_name!r} of method {self.name!r} must be a {self.settings_class.__name__}.")

    @property
    def setting_names(self) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(self.settings_class))


PLUG_AND_PLAY_METHODS: dict[str, PlugAndPlayMethod] = {}
PLUG_AND_PLAY_PRESETS: dict[str, MethodSettings] = {}
PRESET_OWNERS: dict[str, str] = {}  # preset name -> method name


def register_method(method: PlugAndPlayMethod) -> PlugAndPlayMethod:
    """Make ``method`` available as ``PlugAndPlayPipeline(...)(constraint, method=method.name)``."""
    for preset_name in method.presets:
        owner = PRESET_OWNERS.get(preset_name)
        if owner is not None and owner != method.name:
            raise ValueError(f"Preset name {preset_name!r} of method {method.name!r} is taken by method {owner!r}.")
    PLUG_AND_PLAY_METHODS[method.name] = method
    for preset_name, preset in method.presets.items():
        PLUG_AND_PLAY_PRESETS[preset_name] = preset
        PRESET_OWNERS[preset_name] = method.name
    return method


def get_method(name: str) -> PlugAndPlayMethod:
    if name not in PLUG_AND_PLAY_METHODS:
        raise ValueError(f"`method` must be one of {sorted(PLUG_AND_PLAY_METHODS)}, got {name!r}.")
    return PLUG_AND_PLAY_METHODS[name]


def resolve_settings(method: PlugAndPlayMethod, preset, overrides: dict[str, Any]) -> MethodSettings:
    """The preset (a name, a settings instance or None for the method's default) with the call's overrides.

    Raises a ValueError when the preset belongs to another method, or when an override is not one of
    the method's settings (naming the method it does belong to, if any).
    """
    if preset is None:
        preset = method.default_preset
    if isinstance(preset, str):
        if preset not in method.presets:
            owner = PRESET_OWNERS.get(preset)
            where = f" (it is a preset of method {owner!r})" if owner else ""
            raise ValueError(f"`preset` for method {method.name!r} must be one of {sorted(method.presets)} "
                             f"or a {method.settings_class.__name__}, got {preset!r}{where}.")
        preset = method.presets[preset]
    if not isinstance(preset, method.settings_class):
        raise ValueError(f"`preset` for method {method.name!r} must be a preset name or a "
                         f"{method.settings_class.__name__}, got {type(preset).__name__}.")
    unknown = [name for name in overrides if name not in method.setting_names]
    if unknown:
        owners = {other.name for other in PLUG_AND_PLAY_METHODS.values() for name in unknown if name in other.setting_names}
        hint = f"; {', '.join(f'`{n}`' for n in unknown)} belong{'s' if len(unknown) == 1 else ''} to " \
               f"{' or '.join(f'method {o!r}' for o in sorted(owners))}" if owners else ""
        raise ValueError(f"{', '.join(f'`{n}`' for n in unknown)} do{'es' if len(unknown) == 1 else ''} not apply to "
                         f"method {method.name!r}{hint}. Method {method.name!r} takes: {', '.join(method.setting_names)}.")
    return preset.with_overrides(overrides)
