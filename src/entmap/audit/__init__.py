"""Auditing an adapter before it is published (``entmap audit``, docs/audit.md).

* :mod:`~entmap.audit.describe`: what a file says about itself (kind, family, trigger, epoch) and
  which files are checkpoints of one training;
* :mod:`~entmap.audit.study_config`: the study config ``entmap audit`` writes and runs;
* :mod:`~entmap.audit.strength`: the strength sweep (images at adapter scales) and its numbers;
* :mod:`~entmap.audit.leakage`: the adapter's look on unrelated prompts (CLIP-I shift);
* :mod:`~entmap.audit.checkpoints`: per-checkpoint numbers and the recommended checkpoint;
* :mod:`~entmap.audit.verdict`: pass / warn / fail from declared thresholds;
* :mod:`~entmap.audit.model_card`: the Markdown block for a model card;
* :mod:`~entmap.audit.summary`: results/audit/ from the run's tables.
"""
