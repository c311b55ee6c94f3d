"""Saving and sharing pnp-diffusers pipelines in the Hugging Face Hub layout.

A saved pipeline folder looks like this::

    model_index.json   {"_class_name": ["pipeline", "DiffusionSamplingPipeline"], "unet": ["diffusers", "UNet2DModel"],
                        "scheduler": ["diffusers", "DDPMScheduler"], ...}
    pipeline.py        a two-line remote-code shim: ``from pnp_diffusers import DiffusionSamplingPipeline``
    README.md          the model card (Hub metadata: library_name diffusers, datasets, tags)
    unet/              a stock diffusers UNet2DModel
    scheduler/         a stock diffusers DDPMScheduler (the training noise schedule)

Why the shim: diffusers 0.42 resolves a pipeline class that is not its own only through remote code.
``DiffusionPipeline.from_pretrained(path, trust_remote_code=True)`` sees ``_class_name`` as
``[module, class]``, finds ``<module>.py`` in the folder and imports the class from it. Our own classes
load the same folder directly (``DiffusionSamplingPipeline.from_pretrained(path)``, no remote code)
because :class:`RemoteCodePipelineMixin` reads ``["pipeline", X]`` back as the plain class name.

What diffusers 0.42 does NOT allow: as soon as a folder holds ``pipeline.py`` and names it in
``_class_name``, *every* ``from_pretrained`` that goes through diffusers' generic loader (also
``DDPMPipeline.from_pretrained(path)``) wants ``trust_remote_code=True`` and then returns our class.
Plain diffusers without pnp-diffusers therefore loads the stock components one by one (they are
untouched), or a folder saved with ``save_pretrained(..., remote_code=False)``, which has no shim
and loads with ``DDPMPipeline.from_pretrained(path)``.

Everything here is generic over the pipeline class: any pipeline of this package that mixes in
:class:`RemoteCodePipelineMixin` gets the shim under its own class name.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from diffusers import DDPMScheduler
from huggingface_hub import ModelCard, ModelCardData, create_repo, upload_folder

logger = logging.getLogger(__name__)

PACKAGE_NAME = "pnp_diffusers"
# Module name of the remote-code shim: `_class_name` becomes [REMOTE_CODE_MODULE, ClassName] and the
# file is REMOTE_CODE_MODULE + ".py". diffusers also always downloads "pipeline.py" from the Hub.
REMOTE_CODE_MODULE = "pipeline"
MODEL_INDEX = "model_index.json"
MODEL_CARD = "README.md"
DEFAULT_TAGS = ("pytorch", "diffusers", "pnp-diffusers")


# --------------------------------------------------------------------------------------------- shim


def remote_code_shim(class_name: str, package: str = PACKAGE_NAME) -> str:
    """Source text of the ``pipeline.py`` file that re-exports ``class_name`` from ``package``.

    It contains nothing but the import, so running it (``trust_remote_code=True``) runs only the
    installed package's own code.
    """
    if not class_name.isidentifier():
        raise ValueError(f"`class_name` must be a Python identifier, got {class_name!r}.")
    return (
        f'"""Remote-code entry point: `DiffusionPipeline.from_pretrained(path, trust_remote_code=True)` imports\n'
        f"{class_name} from the installed `{package}` package (pip install {package.replace('_', '-')}).\"\"\"\n\n"
        f"from {package} import {class_name}  # noqa: F401\n\n"
        f'__all__ = ["{class_name}"]\n'
    )


def write_remote_code_shim(save_directory: str | os.PathLike, class_name: str) -> Path:
    """Write ``pipeline.py`` into a saved pipeline folder and point ``model_index.json`` at it.

    Args:
        save_directory: a folder written by ``DiffusionPipeline.save_pretrained`` (has ``model_index.json``).
        class_name: the pipeline class the shim re-exports, e.g. ``"DiffusionSamplingPipeline"``.

    Returns:
        The path of the written ``pipeline.py``.
    """
    save_directory = Path(save_directory)
    index_path = save_directory / MODEL_INDEX
    if not index_path.is_file():
        raise ValueError(f"`save_directory` must hold a saved pipeline ({MODEL_INDEX}), got {str(save_directory)!r}.")
    shim_path = save_directory / f"{REMOTE_CODE_MODULE}.py"
    shim_path.write_text(remote_code_shim(class_name), encoding="utf-8")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["_class_name"] = [REMOTE_CODE_MODULE, class_name]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return shim_path


def remove_stale_shim(save_directory: str | os.PathLike, class_name: str) -> None:
    """Delete a ``pipeline.py`` we wrote earlier into a folder now saved without remote code."""
    shim_path = Path(save_directory) / f"{REMOTE_CODE_MODULE}.py"
    if shim_path.is_file() and shim_path.read_text(encoding="utf-8") == remote_code_shim(class_name):
        shim_path.unlink()


def is_own_remote_code_class_name(class_name: Any) -> bool:
    """True for a ``_class_name`` of the form ``["pipeline", "SomeClass"]`` written by :func:`write_remote_code_shim`."""
    return (
        isinstance(class_name, (list, tuple))
        and len(class_name) == 2
        and class_name[0] == REMOTE_CODE_MODULE
        and isinstance(class_name[1], str)
    )


# ----------------------------------------------------------------------------------------- model card


def write_model_card(
    save_directory: str | os.PathLike,
    *,
    title: str,
    description: str = "",
    metrics: Mapping[str, Any] | None = None,
    commands: Mapping[str, str] | None = None,
    datasets: Sequence[str] = (),
    tags: Sequence[str] = (),
    class_name: str | None = None,
    pipeline_tag: str = "unconditional-image-generation",
    library_name: str = "diffusers",
    usage: str | None = None,
) -> Path:
    """Write ``README.md`` (a Hub model card) into ``save_directory``, replacing any existing one.

    Args:
        save_directory: the pipeline folder.
        title: the card's heading.
        description: free Markdown text under the heading (what was trained, on what, how long).
        metrics: measured numbers, ``{"name": value}``; rendered as a table. Values are written as given.
        commands: ``{"what it does": "shell command"}``, e.g. the training command; rendered as code blocks.
        datasets: Hub dataset ids for the metadata (e.g. ``["mnist"]``).
        tags: extra Hub tags, added to ``pytorch, diffusers, pnp-diffusers``.
        class_name: the pipeline class whose loading the card shows; by default the one named by the
            folder's ``model_index.json`` (no usage section when there is none). The usage shown depends on
            whether the folder carries the ``pipeline.py`` shim.
        pipeline_tag: the Hub task, ``"unconditional-image-generation"`` by default.
        library_name: the Hub library of the folder, ``"diffusers"`` (a pipeline) or ``"transformers"``
            (a classifier from ``train/train_classifier.py``).
        usage: Markdown of the usage section, in place of the pipeline usage ``class_name`` gives.

    Returns:
        The path of ``README.md``.
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"`title` must be a non-empty string, got {title!r}.")
    for argument, value in (("metrics", metrics), ("commands", commands)):
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"`{argument}` must be a dict or None, got {type(value).__name__}.")
    for argument, value in (("datasets", datasets), ("tags", tags)):
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"`{argument}` must be a list of strings, got {value!r}.")

    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    saved_class_name, has_shim = _saved_class_name(save_directory)
    class_name = class_name or saved_class_name
    all_tags = list(dict.fromkeys([*DEFAULT_TAGS, *tags]))
    card_data = ModelCardData(
        library_name=library_name,
        datasets=list(datasets) or None,
        tags=all_tags,
        pipeline_tag=pipeline_tag,
    )
    sections = [f"# {title.strip()}", description.strip()]
    if usage is not None:
        sections.append(usage.strip())
    elif class_name is not None:
        sections.append(_usage_section(class_name, has_shim))
    if metrics:
        rows = "\n".join(f"| {name} | {value} |" for name, value in metrics.items())
        sections.append(f"## Metrics\n\n| metric | value |\n|---|---|\n{rows}")
    if commands:
        blocks = "\n\n".join(f"{what}:\n\n```bash\n{command}\n```" for what, command in commands.items())
        sections.append(f"## Commands\n\n{blocks}")
    body = "\n\n".join(s for s in sections if s) + "\n"
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    path = save_directory / MODEL_CARD
    card.save(path)
    return path


def _saved_class_name(save_directory: Path) -> tuple[str | None, bool]:
    """(pipeline class named by the folder's model_index.json, whether it is our remote-code shim form)."""
    index_path = save_directory / MODEL_INDEX
    if not index_path.is_file():
        return None, False
    class_name = json.loads(index_path.read_text(encoding="utf-8")).get("_class_name")
    if is_own_remote_code_class_name(class_name):
        return class_name[1], (save_directory / f"{REMOTE_CODE_MODULE}.py").is_file()
    return (class_name if isinstance(class_name, str) else None), False


def _usage_section(class_name: str, has_shim: bool) -> str:
    lines = ["## Usage", "", "```python", "import torch"]
    if has_shim:
        lines += [
            "from diffusers import DiffusionPipeline",
            "",
            "# 1. with pnp-diffusers installed (pip install pnp-diffusers): the folder's pipeline.py imports it",
            'pipe = DiffusionPipeline.from_pretrained("PATH_OR_REPO_ID", trust_remote_code=True)',
            "# 2. the same class directly, no remote code",
        ]
    else:
        lines += ["", "# 1. with pnp-diffusers installed (pip install pnp-diffusers)"]
    lines += [
        f"from pnp_diffusers import {class_name}",
        f'pipe = {class_name}.from_pretrained("PATH_OR_REPO_ID")',
        "images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0)).images",
        "",
        f"# {3 if has_shim else 2}. plain diffusers, no pnp-diffusers: unet/ and scheduler/ are stock components",
    ]
    if has_shim:
        lines += [
            "from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel",
            "pipe = DDPMPipeline(",
            '    unet=UNet2DModel.from_pretrained("PATH_OR_REPO_ID", subfolder="unet"),',
            '    scheduler=DDPMScheduler.from_pretrained("PATH_OR_REPO_ID", subfolder="scheduler"),',
            ")",
        ]
    else:
        lines += ["from diffusers import DDPMPipeline", 'pipe = DDPMPipeline.from_pretrained("PATH_OR_REPO_ID")']
    lines += ["```"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ pushing


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    ignore_patterns: Sequence[str] | None = None,
) -> Any:
    """Upload a saved pipeline (or classifier) folder to the Hub exactly as it is (model card and ``pipeline.py`` included).

    ``ignore_patterns`` (glob patterns) leaves files out, e.g. train.py's checkpoints and preview grids.

    Args:
        folder: a folder written by ``save_pretrained``: a pipeline (``model_index.json``) or a
            transformers model (``config.json``, e.g. a classifier).
        repo_id: ``"user/name"``; the model repository is created if missing.

    Returns:
        What ``huggingface_hub.upload_folder`` returns (the commit info).
    """
    folder = Path(folder)
    if not ((folder / MODEL_INDEX).is_file() or (folder / "config.json").is_file()):
        raise ValueError(f"`folder` must hold a saved pipeline ({MODEL_INDEX}) or model (config.json), got {str(folder)!r}.")
    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"`repo_id` must be a non-empty string like 'user/name', got {repo_id!r}.")
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    logger.info("Uploading %s to %s", folder, repo_id)
    return upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        token=token,
        commit_message=commit_message or f"Upload {repo_id.split('/')[-1]}",
        create_pr=create_pr,
        **({"ignore_patterns": list(ignore_patterns)} if ignore_patterns else {}),
    )


# ---------------------------------------------------------------------------------------- the mixin


def _is_diffusers_class(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "diffusers"


def stock_scheduler_for_saving(scheduler: Any) -> Any:
    """The scheduler to write into ``scheduler/``: stock diffusers schedulers as they are, ours as the
    :class:`DDPMScheduler` with the same noise schedule (their extra sampler settings are not saved)."""
    if _is_diffusers_class(scheduler):
        return scheduler
    ddpm_keys = set(inspect.signature(DDPMScheduler.__init__).parameters) - {"self", "kwargs"}
    config = {k: v for k, v in scheduler.config.items() if k in ddpm_keys}
    return DDPMScheduler.from_config(config)


class RemoteCodePipelineMixin:
    """Adds Hub-friendly saving to a :class:`diffusers.DiffusionPipeline` subclass (put it first in the bases).

    - ``save_pretrained`` writes the stock folder, the ``pipeline.py`` shim and a model card;
    - ``push_to_hub`` saves that same folder and uploads it as it is;
    - ``from_pretrained`` on the class itself reads ``["pipeline", X]`` as ``X``, so no remote code runs.
    """

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict:
        # diffusers' loader turns a list `_class_name` into a remote-code import (needs trust_remote_code)
        # even when the class asked for is this very one; reading it back as the plain name loads the
        # folder with `cls` itself. Only our own shim's form is rewritten.
        config = super()._dict_from_json_file(json_file)  # type: ignore[misc]
        if is_own_remote_code_class_name(config.get("_class_name")):
            config["_class_name"] = config["_class_name"][1]
        return config

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        *,
        remote_code: bool = True,
        model_card: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Save the pipeline in the Hub layout (see the module docstring).

        Args:
            save_directory: target folder (created if missing).
            safe_serialization, variant, max_shard_size: as in ``DiffusionPipeline.save_pretrained``.
            push_to_hub: also upload the folder (``repo_id``, ``token``, ``private``, ``commit_message``,
                ``create_pr`` are taken from ``kwargs``; ``repo_id`` defaults to the folder name).
            remote_code: write the ``pipeline.py`` shim and ``_class_name = ["pipeline", ClassName]``
                (``DiffusionPipeline.from_pretrained(path, trust_remote_code=True)`` works). With ``False``
                the folder is diffusers' default one, loadable by ``DDPMPipeline.from_pretrained(path)``.
            model_card: keyword arguments of :func:`write_model_card`; without it a short default card
                is written unless the folder already has a ``README.md``.

        A scheduler of this package set on the pipeline is saved as the ``DDPMScheduler`` holding the
        same noise schedule, so ``scheduler/`` stays stock; set the sampler again after loading.
        """
        if model_card is not None and not isinstance(model_card, Mapping):
            raise ValueError(f"`model_card` must be a dict of write_model_card arguments, got {type(model_card).__name__}.")
        push_kwargs = {k: kwargs.pop(k) for k in ("repo_id", "token", "private", "commit_message", "create_pr") if k in kwargs}
        if kwargs:
            raise ValueError(f"Unexpected keyword arguments for `save_pretrained`: {sorted(kwargs)}.")
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        scheduler = getattr(self, "scheduler", None)
        stock = stock_scheduler_for_saving(scheduler) if scheduler is not None else None
        swapped = stock is not scheduler
        if swapped:
            logger.info("Saving %s as DDPMScheduler (same noise schedule).", type(scheduler).__name__)
            self.scheduler = stock
        try:
            super().save_pretrained(  # type: ignore[misc]
                save_directory,
                safe_serialization=safe_serialization,
                variant=variant,
                max_shard_size=max_shard_size,
                push_to_hub=False,
            )
        finally:
            if swapped:
                self.scheduler = scheduler
        class_name = type(self).__name__
        if remote_code:
            write_remote_code_shim(save_directory, class_name)
        else:
            remove_stale_shim(save_directory, class_name)
        if model_card is not None:
            write_model_card(save_directory, **{"class_name": class_name, **dict(model_card)})
        elif not (save_directory / MODEL_CARD).exists():
            write_model_card(save_directory, **self._default_model_card())
        if push_to_hub:
            repo_id = push_kwargs.pop("repo_id", save_directory.resolve().name)
            push_folder_to_hub(save_directory, repo_id, **push_kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        *,
        remote_code: bool = True,
        model_card: Mapping[str, Any] | None = None,
    ) -> Any:
        """Save the pipeline into a temporary folder with :meth:`save_pretrained` and upload that folder.

        The Hub repository then holds exactly what ``save_pretrained`` writes: ``model_index.json``,
        ``pipeline.py``, ``README.md``, ``unet/``, ``scheduler/``.
        """
        with tempfile.TemporaryDirectory() as tmpdir:
            self.save_pretrained(
                tmpdir,
                safe_serialization=safe_serialization,
                variant=variant,
                remote_code=remote_code,
                model_card=model_card,
            )
            return push_folder_to_hub(
                tmpdir, repo_id, token=token, private=private, commit_message=commit_message, create_pr=create_pr
            )

    def _default_model_card(self) -> dict[str, Any]:
        """Arguments of :func:`write_model_card` for a card written when the caller gave none."""
        class_name = type(self).__name__
        unet = getattr(self, "unet", None)
        description = f"A `{class_name}` saved by pnp-diffusers."
        tags: list[str] = []
        if unet is not None:
            config = unet.config
            conditional = getattr(config, "num_class_embeds", None) is not None
            description += (
                f" UNet: {config.get('in_channels')} channel(s), {config.get('sample_size')} px, "
                f"{'class-conditional (' + str(config.num_class_embeds - 1) + ' classes + null class)' if conditional else 'unconditional'}."
            )
            if conditional:
                tags.append("class-conditional")
        return dict(title=class_name, description=description, tags=tags, class_name=class_name)
