"""One module per experiment of the book; each holds its per-profile sizes and a ``run`` function."""
