"""|Delta A| reduced on the fly: the base's probabilities of a batch kept, the model's compared as they come.

For image n (prompt p, seed k), kept layer l, kept step t, image query i and text position j:

    D[n, l, t, i, j] = | A_model[n, l, t, i, j] - A_base[n, l, t, i, j] |

Only per-query means are kept: shift[n, l, t, j] = (1/Q_l) sum_i D[n, l, t, i, j], and likewise the
mean attention of each model, base[n, l, t, j] and model[n, l, t, j] (the share of the layer's
text attention on position j). Every other number is a mean of these (:func:`class_means`): over
seeds, then over layers, steps and positions, each layer weighing the same whatever its Q_l.

The heat maps of image n at the first seed: per text position j, the attention over the Q_l image
queries laid out as their sqrt(Q_l) x sqrt(Q_l) grid, brought to the largest grid by nearest-neighbour
upsampling (repetition) and averaged over the kept layers and steps:

    map[n, j] = (1 / (L T)) sum_{l, t} up_l( A[n, l, t, :, j] ).

Memory: the base's probabilities of one batch at the kept layers and steps in host memory (written
to disk between the passes), one layer's block of them on the device at a time, the per-query
means, and the heat maps of the first seed's images.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from entmap.attention.tokens import TOKEN_CLASSES


def query_side(queries: int) -> int:
    """The side of the square grid of ``queries`` image positions."""
    side = math.isqrt(queries)
    if side * side != queries:
        raise ValueError(f"{queries} image queries are not a square grid")
    return side


class BatchStore:
    """The base pass's sink: keeps each (layer, step)'s probabilities of one batch, then saves them."""

    def __init__(self) -> None:
        self.probabilities: dict[tuple[int, int], torch.Tensor] = {}

    def sink(self, layer: int, step: int, probabilities: torch.Tensor) -> None:
        if (layer, step) in self.probabilities:
            raise ValueError(f"layer {layer} ran twice at step {step}")
        self.probabilities[(layer, step)] = probabilities.cpu()  # the device holds one layer's block at a time

    def save(self, path: str | os.PathLike[str]) -> None:
        torch.save(self.probabilities, path)


def load_batch(path: str | os.PathLike[str]) -> dict[tuple[int, int], torch.Tensor]:
    """A batch's base probabilities, on the CPU (each block goes to the device when its layer runs)."""
    return torch.load(path, map_location="cpu", weights_only=True)


class ShiftAccumulator:
    """The model pass's sink: reduces |A_model - A_base| and both attentions against one batch's base.

    ``steps``: the kept step indices (their order is the t axis); ``map_positions``: the text
    positions whose heat maps are kept; ``n_maps``: how many images have heat maps.
    """

    def __init__(
        self,
        n_images: int,
        n_layers: int,
        steps: list[int],
        text_length: int,
        map_positions: list[int],
        n_maps: int,
        device: torch.device,
    ) -> None:
        shape = (n_images, n_layers, len(steps), text_length)
        self.shift, self.base, self.model = (np.zeros(shape) for _ in range(3))
        self.step_index = {step: t for t, step in enumerate(steps)}
        self.queries = np.zeros(n_layers, dtype=np.int64)
        self.seen = np.zeros(shape[:3], dtype=bool)
        self.map_positions = torch.tensor(map_positions, dtype=torch.long, device=device)
        self.n_maps, self.device = n_maps, device
        self.maps_base: dict[int, torch.Tensor] = {}  # grid side -> (n_maps, K, side, side), summed
        self.maps_model: dict[int, torch.Tensor] = {}
        self.batch: dict[tuple[int, int], torch.Tensor] = {}
        self.images: list[int] = []
        self.map_rows: list[tuple[int, int]] = []

    def begin_batch(
        self, base: dict[tuple[int, int], torch.Tensor], images: list[int], map_rows: list[tuple[int, int]]
    ):
        """``base``: the base's probabilities of this batch; ``images``: each batch row's image index;
        ``map_rows``: (batch row, heat-map index) of the images whose heat maps are kept."""
        self.batch, self.images, self.map_rows = base, images, map_rows

    def sink(self, layer: int, step: int, probabilities: torch.Tensor) -> None:
        base = self.batch.get((layer, step))
        if base is None or base.shape != probabilities.shape:
            got = None if base is None else tuple(base.shape)
            raise ValueError(f"layer {layer}, step {step}: the base has {got}, the model {tuple(probabilities.shape)}")
        base = base.to(probabilities.device)
        t = self.step_index[step]
        rows = self.images
        if self.seen[rows, layer, t].any():
            raise ValueError(f"layer {layer} ran twice at step {step}")
        self.seen[rows, layer, t] = True
        self.queries[layer] = probabilities.shape[1]
        self.shift[rows, layer, t] = (probabilities - base).abs().mean(dim=1).double().cpu().numpy()
        self.base[rows, layer, t] = base.mean(dim=1).double().cpu().numpy()
        self.model[rows, layer, t] = probabilities.mean(dim=1).double().cpu().numpy()
        if self.map_rows:
            side = query_side(probabilities.shape[1])
            batch_rows = torch.tensor([r for r, _ in self.map_rows], device=probabilities.device)
            targets = torch.tensor([m for _, m in self.map_rows], device=self.device)
            for store, values in ((self.maps_base, base), (self.maps_model, probabilities)):
                if side not in store:
                    store[side] = torch.zeros(self.n_maps, len(self.map_positions), side, side, device=self.device)
                chosen = values[batch_rows][:, :, self.map_positions.to(values.device)]  # (r, Q, K)
                grids = chosen.transpose(1, 2).reshape(len(batch_rows), -1, side, side).to(self.device)
                store[side].index_add_(0, targets, grids)

    def complete(self) -> bool:
        return bool(self.seen.all())

    def heat_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(base, model) heat maps (n_maps, K, G, G), G the largest grid: the mean over kept layers and steps."""
        count = self.shift.shape[1] * self.shift.shape[2]
        return tuple(upsampled_mean(store, count) for store in (self.maps_base, self.maps_model))


def upsampled_mean(by_side: dict[int, torch.Tensor], count: int) -> np.ndarray:
    """The sum over grid sizes of each size's sums, brought to the largest grid (nearest), divided by ``count``."""
    side = max(by_side)
    total = sum(torch.nn.functional.interpolate(grids, size=(side, side), mode="nearest") for grids in by_side.values())
    return (total / count).double().cpu().numpy()


def class_means(values: np.ndarray, classes: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """Mean over the last axis (text positions) of the positions of each class, and of all of them ("all").

    A class with no position gives NaN.
    """
    classes = np.asarray(classes)
    out = {"all": values.mean(axis=-1)}
    for name in TOKEN_CLASSES:
        chosen = classes == name
        out[name] = values[..., chosen].mean(axis=-1) if chosen.any() else np.full(values.shape[:-1], np.nan)
    return out
