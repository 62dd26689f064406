"""entmap: Concept Entanglement Maps for personalized text-to-image diffusion models.

The package holds all logic; the Snakemake workflow only calls it, and it never imports snakemake.
Its subpackages follow the workflow's stages (see the module map in README.md).
"""

from entmap.core.provenance import __version__

__all__ = ["__version__"]
