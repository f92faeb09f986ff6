"""Helper package of the companion book to *Just One Layer Norm Guarantees Stable Extrapolation*.

Ziomek, Whittle and Osborne (NeurIPS 2025, arXiv:2505.14512). The chapters of the book import
everything they compute from here; nothing is pasted into the notebooks.

Modules
-------
===========================  ========================================================================
``companion.profile``        the ``ci``/``full`` switch that sizes every experiment
``companion.arch``           :class:`~companion.arch.MLPSpec`, the one description of an architecture
``companion.models``         flax networks built from an :class:`~companion.arch.MLPSpec`
``companion.normalisation``  LayerNorm, RMSNorm and Dynamic Tanh layers for the models
``companion.transformer``    the small decoder-only transformer of the paper's Fig. 7
``companion.train``          optax training, ``jax.vmap``-ed over seeds
``companion.stats``          mean and 95% confidence interval over seeds
``companion.plotting``       the book's figure style
``companion.nt``             neural-tangents, importable on the pinned JAX without TensorFlow
``companion.kernels``        infinite-width NNGP and NTK (LayerNorm anywhere), kernel regression, Thm 3.3
``companion.data``           where data sets live, and the data sets
``companion.experiments``    one module per experiment of the book
===========================  ========================================================================
"""

__version__ = "0.1.0"
