"""Text-to-image attention probabilities of every layer where text meets image, during denoising.

For a layer with H heads of width d, image queries q (Q positions) and text keys k (the prompt's
J positions), the recorded probabilities are the head mean

    A[i, j] = (1/H) sum_h softmax_j( q_h[i] . k_h[j] / sqrt(d) ),      sum_j A[i, j] = 1,

computed in float32 from the layer's own projections of the inputs it receives, for the
conditional half of a classifier-free-guidance batch only (the unconditional half first, as every
supported pipeline stacks it).

* UNet cross-attention (``attn2``, diffusers' ``AttnProcessor2_0``): q = to_q(x), k = to_k(text),
  with the layer's group norm, cross norm and q/k norms where it has them; exactly the attention.
* SD3 joint attention (``JointAttnProcessor2_0``): q = norm_q(to_q(x)) of the image tokens,
  k = norm_added_k(add_k_proj(text)). The softmax runs over text keys only. This is the text block
  of the joint softmax renormalized to sum 1: exp(s_ij) / sum_{j' in text} exp(s_ij').
* Flux (``FluxAttnProcessor``): the same with Flux's RMS q/k norms and its rotary position
  embedding (applied per position, so the image rows and text rows of the joint sequence's
  frequencies are applied to each). Double-stream blocks receive text and image apart;
  single-stream blocks receive their concatenation, text first, of which the first J positions are
  the text.

The capture wraps each layer's processor: it computes A from the processor's inputs and then calls
the original processor with exactly those inputs, so the layer's output, and the image, are those
of a run without capture (tested byte for byte). The originals are restored on exit.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from entmap.models.families import family_of_pipeline

#: (layer index, step index, probabilities (n, Q, J) float32) -> None
Sink = Callable[[int, int, torch.Tensor], None]

CROSS, JOINT, FLUX = "cross", "joint", "flux"
#: diffusers' default processors whose attention entmap reproduces
PROCESSOR_KINDS: dict[str, str] = {"AttnProcessor2_0": CROSS, "JointAttnProcessor2_0": JOINT, "FluxAttnProcessor": FLUX}


def text_attention_layers(pipe, patterns: list[str] | None = None) -> dict[str, torch.nn.Module]:
    """The denoiser's attention modules where image queries meet text keys, in the order data flows through them.

    ``patterns`` (regular expressions, ``re.search``) keep the layers whose name any of them
    matches; a pattern that matches no such layer is an error naming the layers there are.
    """
    family = family_of_pipeline(pipe)
    denoiser = getattr(pipe, family.denoiser)
    rule = re.compile(family.text_attention)
    found = [(name, m) for name, m in denoiser.named_modules() if rule.search(name) and hasattr(m, "processor")]
    layers = dict(sorted(found, key=lambda item: flow_position(item[0])))
    if not layers:
        raise ValueError(f"{family.name}: no attention layer where text meets image ({family.text_attention})")
    if not patterns:
        return layers
    unmatched = [p for p in patterns if not any(re.search(p, name) for name in layers)]
    if unmatched:
        raise ValueError(
            f"attention.layers: {unmatched} match no layer where text meets image; the layers are {list(layers)}"
        )
    return {name: m for name, m in layers.items() if any(re.search(p, name) for p in patterns)}


def flow_position(name: str) -> int:
    """A UNet layer's place in the data flow: down blocks, then the middle block, then up blocks
    (``named_modules`` lists the middle block last); transformer blocks keep their order."""
    return 1 if name.startswith("mid_block") else 2 if name.startswith("up_blocks") else 0


def head_mean_softmax(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """(1/H) sum_h softmax(q_h k_h^T / sqrt(d)) in float32; query (n, H, Q, d), key (n, H, J, d) -> (n, Q, J).

    One head at a time, so the memory is that of one (n, Q, J) block.
    """
    scale = 1.0 / math.sqrt(query.shape[-1])
    total = None
    for head in range(query.shape[1]):
        scores = query[:, head].float() @ key[:, head].float().transpose(-1, -2)
        probabilities = torch.softmax(scores * scale, dim=-1)
        total = probabilities if total is None else total + probabilities
    return total / query.shape[1]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(n, S, H * d) -> (n, H, S, d)."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def cross_probabilities(attn, hidden_states, encoder_hidden_states, attention_mask=None, temb=None) -> torch.Tensor:
    """A of a UNet cross-attention layer, as ``AttnProcessor2_0`` computes its attention."""
    if attention_mask is not None:
        raise ValueError("entmap captures cross-attention without an attention mask (the pipelines pass none)")
    if encoder_hidden_states is None:
        raise ValueError("a text attention layer was called without text (self-attention?)")
    x = hidden_states
    if attn.spatial_norm is not None:
        x = attn.spatial_norm(x, temb)
    if x.ndim == 4:
        n, channels, height, width = x.shape
        x = x.view(n, channels, height * width).transpose(1, 2)
    if attn.group_norm is not None:
        x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
    text = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
    query, key = _heads(attn.to_q(x), attn.heads), _heads(attn.to_k(text), attn.heads)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return head_mean_softmax(query, key)


def joint_probabilities(attn, hidden_states, encoder_hidden_states) -> torch.Tensor:
    """A of an SD3 joint-attention layer: image queries against text keys (``JointAttnProcessor2_0``'s projections)."""
    if encoder_hidden_states is None:
        raise ValueError("an SD3 joint-attention layer was called without text")
    query, key = (
        _heads(attn.to_q(hidden_states), attn.heads),
        _heads(attn.add_k_proj(encoder_hidden_states), attn.heads),
    )
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_added_k is not None:
        key = attn.norm_added_k(key)
    return head_mean_softmax(query, key)


def flux_probabilities(attn, hidden_states, encoder_hidden_states, image_rotary_emb, text_length: int) -> torch.Tensor:
    """A of a Flux block (``FluxAttnProcessor``): image queries against text keys, RoPE applied.

    Double-stream: ``hidden_states`` are the image tokens, ``encoder_hidden_states`` the text.
    Single-stream: ``hidden_states`` is text (the first ``text_length`` positions) then image.
    """
    from diffusers.models.embeddings import apply_rotary_emb

    if getattr(attn, "fused_projections", False):
        raise ValueError("entmap captures Flux attention with unfused projections only")
    head_dim = attn.head_dim
    if encoder_hidden_states is not None:
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (-1, head_dim)))
        key = attn.norm_added_k(attn.add_k_proj(encoder_hidden_states).unflatten(-1, (-1, head_dim)))
    else:
        query = attn.norm_q(attn.to_q(hidden_states[:, text_length:]).unflatten(-1, (-1, head_dim)))
        key = attn.norm_k(attn.to_k(hidden_states[:, :text_length]).unflatten(-1, (-1, head_dim)))
    if key.shape[1] != text_length:
        raise ValueError(f"Flux layer read {key.shape[1]} text positions, the prompt has {text_length}")
    if image_rotary_emb is not None:
        cos, sin = image_rotary_emb
        query = apply_rotary_emb(query, (cos[text_length:], sin[text_length:]), sequence_dim=1)
        key = apply_rotary_emb(key, (cos[:text_length], sin[:text_length]), sequence_dim=1)
    return head_mean_softmax(query.transpose(1, 2), key.transpose(1, 2))


@dataclass
class Capture:
    """The state of one capture: the layers wrapped, the denoising step under way, what is kept."""

    layers: list[str]
    sink: Sink
    n_images: int
    text_length: int
    steps: frozenset[int] | None
    step: int = -1

    def keeps(self) -> bool:
        return self.step >= 0 and (self.steps is None or self.step in self.steps)

    def conditional(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """The conditional half of a CFG batch (the whole batch without CFG)."""
        if x is None:
            return None
        if x.shape[0] == 2 * self.n_images:
            return x[self.n_images :]
        if x.shape[0] == self.n_images:
            return x
        raise ValueError(f"attention batch of {x.shape[0]} for {self.n_images} images: neither CFG nor plain")


class CaptureProcessor:
    """Wraps a layer's processor: records A (:mod:`entmap.attention.capture`), then calls the original."""

    def __init__(self, original, layer: int, capture: Capture):
        name = type(original).__name__
        if name not in PROCESSOR_KINDS:
            raise ValueError(
                f"layer {capture.layers[layer]}: processor {name} is not one entmap can reproduce "
                f"({', '.join(PROCESSOR_KINDS)})"
            )
        self.original, self.layer, self.capture, self.kind = original, layer, capture, PROCESSOR_KINDS[name]
        self.signature = inspect.signature(original.__call__)
        # diffusers passes a processor only the keyword arguments its __call__ names: show it the original's
        self.__call__ = original.__call__

    def probabilities(self, attn, arguments: dict) -> torch.Tensor:
        c = self.capture
        hidden, text = c.conditional(arguments["hidden_states"]), c.conditional(arguments.get("encoder_hidden_states"))
        if self.kind == CROSS:
            return cross_probabilities(attn, hidden, text, arguments.get("attention_mask"), arguments.get("temb"))
        if text is not None and text.shape[1] != c.text_length:
            raise ValueError(f"layer {c.layers[self.layer]} read {text.shape[1]} text positions, not {c.text_length}")
        if self.kind == JOINT:
            return joint_probabilities(attn, hidden, text)
        return flux_probabilities(attn, hidden, text, arguments.get("image_rotary_emb"), c.text_length)

    def __call__(self, attn, hidden_states, *args, **kwargs):
        capture = self.capture
        if capture.keeps():
            bound = self.signature.bind(attn, hidden_states, *args, **kwargs)
            bound.apply_defaults()
            with torch.no_grad():
                probabilities = self.probabilities(attn, dict(bound.arguments))
            if probabilities.shape[-1] != capture.text_length:
                raise ValueError(
                    f"{probabilities.shape[-1]} text positions recorded, the prompt has {capture.text_length}"
                )
            capture.sink(self.layer, capture.step, probabilities)
        return self.original(attn, hidden_states, *args, **kwargs)


@contextmanager
def capture_attention(
    pipe,
    sink: Sink,
    n_images: int,
    text_length: int,
    steps: list[int] | None = None,
    layers: list[str] | None = None,
) -> Iterator[Capture]:
    """Within the block, every ``pipe(...)`` call of ``n_images`` images hands ``sink`` the probabilities
    A (n_images, Q, J) of each chosen layer (``layers`` patterns; None: all) at each kept step
    (``steps``, 0 = the first denoiser call; None: all). One ``pipe`` call per block: the step
    counter counts the denoiser's calls from the block's start."""
    family = family_of_pipeline(pipe)
    denoiser = getattr(pipe, family.denoiser)
    chosen = text_attention_layers(pipe, layers)
    capture = Capture(list(chosen), sink, n_images, text_length, frozenset(steps) if steps is not None else None)
    originals = {name: module.processor for name, module in chosen.items()}

    def count_step(module, args, kwargs):
        capture.step += 1

    hook = None
    try:
        for index, (name, module) in enumerate(chosen.items()):
            module.set_processor(CaptureProcessor(originals[name], index, capture))
        hook = denoiser.register_forward_pre_hook(count_step, with_kwargs=True)
        yield capture
    finally:
        if hook is not None:
            hook.remove()
        for name, module in chosen.items():
            module.set_processor(originals[name])
