"""Training and evaluating the toy world's three models (scorer, VAE, text-to-image) and their model card."""
