"""The leaf layer: atomic writes, hashes, job logs, the torch runtime, the image codec, Parquet schemas,
provenance and the vocabulary of names. Imports nothing else of entmap."""
