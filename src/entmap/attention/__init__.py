"""Cross-attention shift: where image queries meet text keys, the base and a personalized model compared.

tokens.py (each text position's token and class), capture.py (the probabilities of every text
attention layer during seed-matched denoising, outputs untouched), reduce.py (|Delta A| reduced on
the fly), selection.py (a model's most and least disrupted prompts), stage.py (one model's job),
summary.py (the run's tables). Explained in docs/attention.md.
"""
