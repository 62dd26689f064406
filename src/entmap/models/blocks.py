"""The block partition of a pipeline: the parts an adapter can be switched off in, one family at a time.

Every module of the denoiser and of the text encoders belongs to exactly one block:

* UNet families (SD 1.x, SDXL): ``down_blocks.0`` ... ``down_blocks.{n-1}``, ``mid_block``,
  ``up_blocks.0`` ... ``up_blocks.{n-1}``, in the order the UNet runs them (A1111's "IN", "MID",
  "OUT" blocks of the LoRA Block Weight extension, at diffusers' granularity);
* SD3: the ``transformer_blocks`` stack cut into ``groups`` contiguous groups, named by their first
  and last index (``transformer_blocks.0-5``; one index when a group holds one block);
* Flux: the double-stream ``transformer_blocks`` and the single-stream ``single_transformer_blocks``,
  each stack cut into ``groups`` contiguous groups;
* ``other``: the denoiser's modules outside those blocks (``conv_in``, the time embedding,
  ``conv_out``; the transformers' patch and text embedders, ``norm_out``, ``proj_out``);
* one block per text encoder, named by its pipeline attribute (``text_encoder``, ``text_encoder_2``,
  ...).

A stack of n blocks cut into g groups gets groups of ceil(n/g) or floor(n/g) blocks, the larger
ones first (numpy's ``array_split``), and never more groups than blocks.

Explained in docs/blocks.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from entmap.models.families import family_of_pipeline

#: adapter kind -> why it has no blocks to switch off
NO_BLOCKS: dict[str, str] = {
    "ti": (
        "Textual Inversion changes one embedding row of the text encoders, which only prompts with its token "
        "use; no block of the denoiser or of a text encoder carries it, so there is nothing to switch off"
    ),
    "checkpoint": (
        "a full checkpoint replaces every weight of the pipeline; it has no adapter to switch off block by "
        "block, so it is not measured"
    ),
}

#: the block of the denoiser's modules outside every named block
OTHER = "other"
#: the denoiser's block stacks per family: (attribute of the module list, whether it is grouped)
_STACKS = {
    "unet": (("down_blocks", False), ("mid_block", False), ("up_blocks", False)),
    "sd3": (("transformer_blocks", True),),
    "flux": (("transformer_blocks", True), ("single_transformer_blocks", True)),
}


@dataclass(frozen=True)
class Block:
    """A named part of a pipeline: modules of one ``component`` (a pipeline attribute) under ``prefixes``.

    ``prefixes`` are module names inside the component; a module belongs to the block when its name
    is a prefix or starts with one followed by a dot. A block without prefixes holds the component's
    modules that no other block of the partition holds: the whole of a text encoder, the denoiser's
    rest for ``other``.
    """

    name: str
    component: str
    prefixes: tuple[str, ...]

    def holds(self, module_name: str) -> bool:
        """Whether ``module_name`` (inside ``component``) lies under one of the block's prefixes."""
        return any(module_name == p or module_name.startswith(p + ".") for p in self.prefixes)


def group_ranges(n: int, groups: int) -> list[range]:
    """Cut ``range(n)`` into min(groups, n) contiguous ranges of sizes differing by at most one, larger first."""
    if groups < 1:
        raise ValueError(f"groups must be at least 1, not {groups}")
    count = min(groups, n)
    size, extra = divmod(n, count) if count else (0, 0)
    ranges, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def _stack_blocks(denoiser, component: str, attribute: str, grouped: bool, groups: int) -> list[Block]:
    stack = getattr(denoiser, attribute, None)
    if stack is None:
        return []
    if not hasattr(stack, "__len__"):  # mid_block: one module
        return [Block(attribute, component, (attribute,))]
    if not grouped:
        return [Block(f"{attribute}.{i}", component, (f"{attribute}.{i}",)) for i in range(len(stack))]
    blocks = []
    for indices in group_ranges(len(stack), groups):
        first, last = indices[0], indices[-1]
        name = f"{attribute}.{first}" if first == last else f"{attribute}.{first}-{last}"
        blocks.append(Block(name, component, tuple(f"{attribute}.{i}" for i in indices)))
    return blocks


def block_partition(pipe, groups: int = 4) -> list[Block]:
    """The blocks of ``pipe``: the denoiser's blocks in forward order, ``other``, then each text encoder.

    ``groups``: how many groups each transformer stack (SD3, Flux) is cut into; UNet blocks are
    never grouped.
    """
    family = family_of_pipeline(pipe)
    component = family.denoiser
    denoiser = getattr(pipe, component)
    stacks = _STACKS["unet"] if component == "unet" else _STACKS[family.name]
    blocks = [
        block
        for attribute, grouped in stacks
        for block in _stack_blocks(denoiser, component, attribute, grouped, groups)
    ]
    blocks.append(Block(OTHER, component, ()))
    blocks += [Block(name, name, ()) for name in family.text_encoders if getattr(pipe, name, None) is not None]
    return blocks


def block_of(blocks: list[Block], component: str, module_name: str) -> Block | None:
    """The block holding module ``module_name`` of ``component``: the one whose prefix it lies under,
    else the component's block without prefixes (``other``, a text encoder); None for a component
    outside the partition (the VAE)."""
    rest = None
    for block in blocks:
        if block.component != component:
            continue
        if not block.prefixes:
            rest = block
        elif block.holds(module_name):
            return block
    return rest


def unswitchable_reason(kind: str) -> str | None:
    """Why an adapter of ``kind`` (ti, lora, cd, checkpoint) cannot be switched off by block, or None."""
    return NO_BLOCKS.get(kind)
