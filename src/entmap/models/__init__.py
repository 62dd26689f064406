"""Models: loading a pipeline, seed-matched sampling, adapter file formats and their metadata, the audit of
adapters someone else trained, and the tiny random-weight builders."""
