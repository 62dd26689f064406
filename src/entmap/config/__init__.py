"""The study config: schema and semantic validation, and the run plan derived from it."""
