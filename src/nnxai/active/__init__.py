"""Active interpretability interventions (survey Sec. IV): networks trained to be interpretable.

An active method changes *training*, so it is a model variant, not a pass over a trained model.  One
module per method, in a subfolder by the type of the explanation the trained network gives of itself
(survey Table III, active rows):

- ``rule/`` — tree regularisation [119] and regional tree regularisation [118];
- ``hidden_semantics/`` — the interpretable CNN's "one filter, one part" loss [70];
- ``attribution/`` — ExpO [120], the deep attribution prior [121], dual-net feature ranking [122];
- ``example/`` — the prototype autoencoder [76] and ProtoPNet [123].

Each module holds, in one file: an :class:`~nnxai.active.base.ActiveMethod` (the network changes, the loss
term, the training hooks, the extra modules saved with the checkpoint), registered with
:func:`~nnxai.active.base.register_active`, which also registers its model variant; and the method class
that reads the trained network's own explanation, registered with the catalogue id and
``only_models = frozenset({id})``.  The config lists the variant under ``models`` and its hyperparameters
under ``active_params.<id>``.  ``tests/test_extension_recipes.py`` follows the recipe on a toy.

Every registry that reads these modules imports this package lazily, the first time it is read.
"""
