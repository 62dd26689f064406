"""Exact reuse of base images in a personalized shard, and the verification of the reuse.

A shard's jobs are its prompts in suite order times its seeds ascending, rendered in batches of
``batch_size`` (:func:`entmap.models.sampling.job_batches`), the base's layout. With U the prompts the
model renders exactly as the base (:func:`entmap.models.fingerprint.reusable_prompts`) and V the
verification sample:

    V             = the ``verify`` prompts of U with the smallest SHA-256("{model}\\n{prompt_id}")
                    (all of U when it has fewer; a different sample for each model)
    batch b is rendered  <=>  b holds a job of a prompt outside U, or of a prompt in V
    image of job j       =  rendered in its batch, composed exactly as a full run composes it,
                            if that batch is rendered (reused = False);
                            else the base shard's PNG bytes of (prompt, seed) (reused = True)
    verification         :  every rendered image of a prompt in U must equal the base's bytes;
                            any difference is a :class:`ReuseMismatchError` naming model, prompt and seed

Rendering whole batches keeps every rendered image what full generation draws (outputs may change
with batch composition), so the shard equals, byte for byte, a shard rendered without reuse.
Explained in docs/map.md ("Exact reuse of base images").
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import pandas as pd

from entmap.models.sampling import job_batches


class ReuseError(ValueError):
    """The base shard cannot stand in for this model's images (missing rows, other settings)."""


class ReuseMismatchError(ReuseError):
    """A prompt judged reusable rendered differently from the base image: the reuse would be wrong."""


def verification_sample(reusable: Iterable[str], model: str, count: int) -> set[str]:
    """V: the ``count`` reusable prompt ids with the smallest SHA-256 of "{model}\\n{prompt_id}"."""
    ranked = sorted(reusable, key=lambda pid: hashlib.sha256(f"{model}\n{pid}".encode()).hexdigest())
    return set(ranked[:count])


def batches_to_render(
    job_prompts: list[str], batch_size: int, reusable: Collection[str], verify: Collection[str]
) -> list[int]:
    """Indices of the batches that hold a job of a prompt outside ``reusable`` or inside ``verify``."""
    return [
        index
        for index, batch in enumerate(job_batches(len(job_prompts), batch_size))
        if any(job_prompts[j] not in reusable or job_prompts[j] in verify for j in batch)
    ]


@dataclass(frozen=True)
class BaseImage:
    """One base image of a shard: its PNG bytes and size."""

    png: bytes
    width: int
    height: int


def base_images_by_key(
    base: pd.DataFrame, keys: list[tuple[str, int]], settings_hash: str, source: str
) -> dict[tuple[str, int], BaseImage]:
    """The base shard's image of every (prompt_id, seed) of ``keys``, each once, with ``settings_hash``.

    Anything else (a missing or duplicated row, another settings hash) means the base shard is not
    the seed-matched counterpart of this shard and is refused, naming ``source``.
    """
    rows = base[base.set_index(["prompt_id", "seed"]).index.isin(keys)]
    if rows.duplicated(["prompt_id", "seed"]).any():
        row = rows[rows.duplicated(["prompt_id", "seed"])].iloc[0]
        raise ReuseError(f"{source}: duplicate base row prompt_id={row.prompt_id} seed={row.seed}")
    found = {(row.prompt_id, int(row.seed)): row for row in rows.itertuples(index=False)}
    missing = [key for key in keys if key not in found]
    if missing:
        raise ReuseError(f"{source}: no base image for {len(missing)} (prompt_id, seed) jobs, e.g. {missing[:3]}")
    other = sorted({row.settings_hash for row in found.values()} - {settings_hash})
    if other:
        raise ReuseError(
            f"{source}: base images have settings hash {other[0]}, this shard {settings_hash}: "
            "not seed-matched; regenerate the base shard with the same generation settings"
        )
    return {key: BaseImage(bytes(row.png), int(row.width), int(row.height)) for key, row in found.items()}


@dataclass(frozen=True)
class BaseReuse:
    """What a personalized shard takes from its base shard: U, V and the base images (see the module docstring)."""

    model: str
    source: str
    reusable: frozenset[str]
    verify: frozenset[str]
    images: dict[tuple[str, int], BaseImage]

    def batches(self, job_prompts: list[str], batch_size: int) -> list[int]:
        """The batches this shard renders (:func:`batches_to_render`)."""
        return batches_to_render(job_prompts, batch_size, self.reusable, self.verify)

    def check(self, prompt_id: str, seed: int, png: bytes) -> bool:
        """Raise :class:`ReuseMismatchError` if a rendered image of a reusable prompt differs from the base's.

        Returns whether the image was compared (its prompt is in U).
        """
        if prompt_id not in self.reusable:
            return False
        if png != self.images[(prompt_id, seed)].png:
            raise ReuseMismatchError(
                f"{self.model}: prompt {prompt_id} seed {seed} was judged reusable (denoiser, VAE, scheduler and "
                f"conditioning bitwise equal to the base's) but renders differently from the base image in "
                f"{self.source}; the base shard was drawn by another machine or software, or the proof missed "
                "an input: set generation.reuse.enabled: false to generate every image"
            )
        return True
