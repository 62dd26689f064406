"""SAGE's geometry-preserving regularizer as a training option of every method.

With ``geometry_regularizer`` in a method's settings, each training step adds

    lambda_spread * max(0, spread(Z_0) - spread(Z_theta)) + lambda_structure * (1 - r)

(:func:`entmap.geometry.measures.geometry_penalty`) on a batch of anchor prompts, averaged over the
feature sets the method can move: the text encoders' outputs when a text-encoder weight trains
(Textual Inversion, Custom Diffusion's token, text-encoder LoRA) and the keys and values of every
cross-attention layer when a weight there trains (Custom Diffusion, LoRA on ``to_k``/``to_v``). Z_0
are the anchors' features before training (the frozen base: every method starts from it), taken
once; Z_theta are recomputed with gradients at every step. The anchors come from a prompt suite held
out from evaluation (the config check refuses any overlap with the evaluated prompts).

Explained in docs/geometry.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from entmap.geometry.features import cross_attention_features, text_encoder_features
from entmap.geometry.measures import NEIGHBOURS, geometry_penalty
from entmap.inputs.prompt_suites import anchor_prompts
from entmap.models.families import family_of_pipeline

#: SAGE's weights
LAMBDA_SPREAD, LAMBDA_STRUCTURE = 2.0, 0.1


def _trains(modules) -> bool:
    return any(p.requires_grad for module in modules for p in module.parameters())


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
        kv_modules = family.text_kv_modules(getattr(pipe, family.denoiser)).values()
        text_level, kv_level = _trains(encoders), family.denoiser == "unet" and _trains(kv_modules)
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
        with torch.no_grad():
            regularizer.base = {k: v.detach().clone() for k, v in regularizer.features().items()}
        return regularizer

    def features(self) -> dict[str, torch.Tensor]:
        """The anchors' current features at the levels this method moves, with gradients."""
        features: dict[str, torch.Tensor] = {}
        if self.text_level:
            features |= {f"text:{k}": v for k, v in text_encoder_features(self.pipe, self.anchors, grad=True).items()}
        if self.kv_level:
            features |= {f"kv:{k}": v for k, v in cross_attention_features(self.pipe, self.anchors, grad=True).items()}
        return features

    def penalty(self) -> torch.Tensor:
        """The mean of SAGE's penalty over every feature set (differentiable in the trained weights)."""
        terms = [
            geometry_penalty(
                value.float(), self.base[name].float(), self.lambda_spread, self.lambda_structure, self.neighbours
            )
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
