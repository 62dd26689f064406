"""Switching an adapter off in chosen blocks of a pipeline, and back on exactly.

What "off" means depends on how the adapter sits in the pipeline:

* **LoRA** (trained, or an audited LoRA file: peft layers in the denoiser and text encoders): every
  peft layer under the block is disabled with peft's own per-layer switch
  (``BaseTunerLayer.enable_adapters(False)``), so it computes ``base_layer(x)`` and nothing else,
  exactly what the base model's layer computes. Switching back re-enables the layer and restores
  each of its parameters' ``requires_grad``. A fused (merged) LoRA has no separate base weight to
  fall back to and is refused.
* **Weight replacement** (Custom Diffusion, the planted-effect control, an audited Custom Diffusion
  file): the weights where text meets image that the adapter replaced are copied back from the base
  model's values, and the adapter's values are copied in again afterwards. Both copies are kept, so
  restoring is bitwise. The modifier token's embedding row is not switched: like a Textual
  Inversion row it only enters prompts that contain the token.
* **Textual Inversion** and **full checkpoints** have no blocks to switch:
  :func:`entmap.models.blocks.unswitchable_reason`
  says why, and :func:`open_switchable` refuses them with that reason.

With every block off the pipeline is the base model, and with none off it is the adapter's model,
image for image (tested per family).

Explained in docs/blocks.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from entmap.core.runtime import configure_torch, resolve_device, resolve_dtype
from entmap.models.adapter_formats import text_kv_parameters
from entmap.models.blocks import Block, block_of, block_partition, unswitchable_reason
from entmap.models.families import family_of_pipeline
from entmap.models.loading import adapter_source, apply_source, load_pipeline


class NoBlocksError(ValueError):
    """An adapter without blocks to switch off (Textual Inversion, a full checkpoint); the message says why."""


@dataclass
class _LoraLayer:
    """One peft layer: switched off with peft's per-layer switch, restored with its grad flags."""

    module: torch.nn.Module
    _saved: tuple[bool, list[bool]] | None = field(default=None, init=False)

    def off(self) -> None:
        self._saved = (self.module.disable_adapters, [p.requires_grad for p in self.module.parameters()])
        self.module.enable_adapters(False)

    def restore(self) -> None:
        was_disabled, grads = self._saved
        self.module.enable_adapters(not was_disabled)
        for parameter, flag in zip(self.module.parameters(), grads, strict=True):
            parameter.requires_grad_(flag)
        self._saved = None


@dataclass
class _Weight:
    """One replaced weight: the base model's value copied in, the adapter's copied back."""

    parameter: torch.nn.Parameter
    base: torch.Tensor
    adapted: torch.Tensor

    def off(self) -> None:
        with torch.no_grad():
            self.parameter.copy_(self.base)

    def restore(self) -> None:
        with torch.no_grad():
            self.parameter.copy_(self.adapted)


class BlockSwitch:
    """An adapter in a pipeline, by block: which modules of each block it changes, and switching it off.

    ``modules[block]`` lists the adapted modules of a block as ``component.module`` names (empty
    when the adapter changes nothing there).
    """

    def __init__(self, blocks: list[Block], units: dict[str, list[tuple[str, _LoraLayer | _Weight]]]) -> None:
        self.blocks = blocks
        self._units = units
        self.modules = {b.name: sorted({name for name, _ in units.get(b.name, [])}) for b in blocks}

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    @classmethod
    def for_lora(cls, pipe, blocks: list[Block]) -> BlockSwitch:
        """The peft layers of the denoiser and text encoders, by block; fused layers are refused."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        units: dict[str, list] = {}
        for component in dict.fromkeys(b.component for b in blocks):
            for name, module in getattr(pipe, component).named_modules():
                if not isinstance(module, BaseTunerLayer):
                    continue
                if module.merged:
                    raise ValueError(f"{component}.{name}: a fused LoRA layer cannot be switched off by block")
                block = block_of(blocks, component, name)
                units.setdefault(block.name, []).append((f"{component}.{name}", _LoraLayer(module)))
        if not units:
            raise ValueError("no LoRA layer found in the pipeline's denoiser or text encoders")
        return cls(blocks, units)

    @classmethod
    def for_weights(cls, pipe, blocks: list[Block], base: dict[str, torch.Tensor]) -> BlockSwitch:
        """The denoiser weights whose values differ from ``base`` (their base values by parameter name)."""
        component = family_of_pipeline(pipe).denoiser
        parameters = dict(getattr(pipe, component).named_parameters())
        units: dict[str, list] = {}
        for name, value in sorted(base.items()):
            parameter = parameters[name]
            if torch.equal(parameter.detach(), value):
                continue
            module = name.rsplit(".", 1)[0]
            block = block_of(blocks, component, module)
            unit = _Weight(parameter, value.to(parameter.device, parameter.dtype), parameter.detach().clone())
            units.setdefault(block.name, []).append((f"{component}.{module}", unit))
        return cls(blocks, units)

    @contextlib.contextmanager
    def off(self, names: Iterable[str]) -> Iterator[None]:
        """Switch the adapter off in the blocks ``names`` for the duration of the ``with`` block.

        Unknown names are an error. Everything switched is restored on exit, also after an exception.
        """
        names = list(dict.fromkeys(names))
        unknown = sorted(set(names) - set(self.modules))
        if unknown:
            raise KeyError(f"unknown blocks {unknown}; the partition has {self.names}")
        units = [unit for name in names for _, unit in self._units.get(name, [])]
        done = []
        try:
            for unit in units:
                unit.off()
                done.append(unit)
            yield
        finally:
            for unit in reversed(done):
                unit.restore()


def open_switchable(
    base_model: str, adapter_dir: str | os.PathLike[str], device: str, dtype: str, threads: int, groups: int = 4
):
    """(pipeline, :class:`BlockSwitch`) of a personalized model of the map.

    The base pipeline is loaded, its text key/value weights are kept when the adapter replaces
    weights (``cd`` files), and the adapter is applied as :func:`entmap.models.loading.load_model`
    applies it. ``groups``: transformer block groups per stack (:func:`entmap.models.blocks.block_partition`).
    Textual Inversion and full checkpoints raise :class:`NoBlocksError`.
    """
    source = adapter_source(adapter_dir)
    reason = unswitchable_reason(source.kind)
    if reason:
        raise NoBlocksError(f"{adapter_dir}: {reason}")
    configure_torch(threads)
    torch_device = resolve_device(device)
    pipe = load_pipeline(base_model, torch_device, resolve_dtype(dtype, torch_device))
    blocks = block_partition(pipe, groups)
    if source.kind == "cd":
        _, parameters = text_kv_parameters(pipe)
        base = {name: p.detach().clone() for name, p in parameters.items()}
        apply_source(pipe, source)
        return pipe, BlockSwitch.for_weights(pipe, blocks, base)
    if source.kind != "lora":
        raise ValueError(f"{adapter_dir}: unknown adapter kind {source.kind!r}")
    apply_source(pipe, source)
    return pipe, BlockSwitch.for_lora(pipe, blocks)
