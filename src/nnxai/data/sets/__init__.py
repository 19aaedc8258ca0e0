"""One module per data set (or family of sets); each registers its entries in :data:`nnxai.data.DATASETS`.

A new data set is one module here: a :class:`~nnxai.data.base.Dataset` subclass with its ``build`` and
a ``DATASETS.register(name, entry)`` call; nothing else lists the sets.
"""
