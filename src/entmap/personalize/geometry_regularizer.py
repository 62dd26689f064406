"""SAGE's geometry-preserving regularizer as a training option of every method.

With ``geometry_regularizer`` in a method's settings, each training step adds

    lambda_spread * max(0, spread(Z_0) - spread(Z_theta)) + lambda_structure * (1 - r)

(:func:`entmap.geometry.measures.geometry_penalty`) on a batch of anchor prompts, averaged over the
feature sets the method can move: the text encoders' outputs when a text-encoder weight trains
(Textual Inversion, Custom Diffusion's token, text-encoder LoRA) and the keys and values where text
meets image (:func:`entmap.geometry.features.kv_features`) when a weight that shapes them trains:
in the UNet families a cross-attention ``to_k``/``to_v`` (Custom Diffusion, LoRA on them); in SD3
and Flux any denoiser weight (Custom Diffusion's ``add_k_proj``/``add_v_proj``, LoRA), because the
joint-attention keys and values are taken in a forward pass of the denoiser at its fixed reference
latent and timestep, past the first block through every block before. That reference input is the
same at every step, so the penalty is a deterministic function of the weights. Z_0 are the
anchors' features before training (the frozen base: every method starts from it), taken once
without gradients; Z_theta are recomputed with gradients at every step. The anchors come from a
prompt suite held out from evaluation (the config check refuses any overlap with the evaluated
prompts).

Explained in docs/geometry.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from entmap.geometry.features import kv_features, text_encoder_features
from entmap.geometry.measures import NEIGHBOURS, geometry_penalty
from entmap.inputs.prompt_suites import anchor_prompts
from entmap.models.families import family_of_pipeline

#: SAGE's weights
LAMBDA_SPREAD, LAMBDA_STRUCTURE = 2.0, 0.1


def _trains(modules) -> bool:
    return any(p.requires_grad for module in modules for p in module.parameters())


def _kv_shapers(pipe) -> list[torch.nn.Module]:
    """The modules whose weights move the keys and values :func:`kv_features` measures.

    UNet families: the cross-attention key/value projections, applied to the conditioning directly.
    SD3 and Flux: the whole denoiser, whose forward pass at the reference input makes them.
    """
    family = family_of_pipeline(pipe)
    denoiser = getattr(pipe, family.denoiser)
    return list(family.text_kv_modules(denoiser).values()) if family.denoiser == "unet" else [denoiser]


@dataclass
class GeometryRegularizer:
    pipe: Any
    anchors: list[str]
    lambda_spread: float
    lambda_structure: float
    neighbours: int
    text_level: bool
    kv_level: bool
    base: dict[str, torch.Tensor]

    @classmethod
    def build(cls, pipe, settings: dict[str, Any]) -> GeometryRegularizer | None:
        """The regularizer ``settings`` asks for (None without ``geometry_regularizer``).

        Call it once the trained weights are marked ``requires_grad`` and before the first step.
        """
        spec = settings.get("geometry_regularizer")
        if not spec:
            return None
        family = family_of_pipeline(pipe)
        encoders = [getattr(pipe, name) for name in family.text_encoders if getattr(pipe, name, None) is not None]
        text_level, kv_level = _trains(encoders), _trains(_kv_shapers(pipe))
        if not (text_level or kv_level):
            raise ValueError(
                "geometry_regularizer: this method trains neither a text encoder nor a cross-attention key/value "
                f"projection of this {family.name} model, so there is no prompt geometry for it to preserve"
            )
        regularizer = cls(
            pipe,
            anchor_prompts(spec["anchor_suite"], spec.get("anchor_count")),
            spec.get("lambda_spread", LAMBDA_SPREAD),
            spec.get("lambda_structure", LAMBDA_STRUCTURE),
            spec.get("neighbours", NEIGHBOURS),
            text_level,
            kv_level,
            {},
        )
        device = getattr(pipe, family.denoiser).device
        regularizer.base = {k: v.to(device, torch.float32) for k, v in regularizer.features(grad=False).items()}
        return regularizer

    def features(self, grad: bool = True) -> dict[str, torch.Tensor]:
        """The anchors' current features at the levels this method moves.

        ``grad=True``: differentiable, in the models' dtype and device; ``grad=False``: computed
        without a graph, float64 on the CPU (the feature functions' diagnostics form).
        """
        features: dict[str, torch.Tensor] = {}
        if self.text_level:
            features |= {f"text:{k}": v for k, v in text_encoder_features(self.pipe, self.anchors, grad).items()}
        if self.kv_level:
            features |= {f"kv:{k}": v for k, v in kv_features(self.pipe, self.anchors, grad).items()}
        return features

    def penalty(self) -> torch.Tensor:
        """The mean of SAGE's penalty over every feature set (differentiable in the trained weights)."""
        terms = [
            geometry_penalty(value.float(), self.base[name], self.lambda_spread, self.lambda_structure, self.neighbours)
            for name, value in self.features().items()
        ]
        return torch.stack(terms).mean()


def regularized(compute_loss: Callable[[], torch.Tensor], regularizer: GeometryRegularizer | None):
    """``compute_loss`` plus the regularizer's penalty (``compute_loss`` itself without one)."""
    if regularizer is None:
        return compute_loss

    def loss() -> torch.Tensor:
        return compute_loss() + regularizer.penalty()

    return loss
