"""Active interpretability interventions (survey Sec. IV): networks trained to be interpretable.

An active method changes *training*, so it is a model variant, not a pass over a trained model.  One
module here per method (subfolder by explanation type, as for the passive methods: ``rule`` — tree
regularisation [118], [119]; ``hidden_semantics`` — interpretable CNN filters [70]; ``attribution`` —
ExpO [120], DAPr [121], dual-net [122]; ``example`` — prototype networks [76], [123]) registers, in that
one file:

- its training loss in :data:`nnxai.training.penalties.PENALTIES` (called per batch as
  ``penalty(model, inputs, targets, logits)``, weighted by ``training.penalty_weight.<name>``),
- its model variant in :data:`nnxai.models.variants.VARIANTS` (``Variant(id, description, penalty=name)``),
  which the config lists under ``models`` so that the DAG trains it,
- and, where the network explains itself (a tree, prototypes, filter concepts), a method class registered
  with the catalogue id (``@register("tree_regularization")``) whose ``only_models`` names the variant.

Both registries import this package when first read, so a training job finds the variant and its loss
without importing anything else.  ``tests/test_extension_recipes.py`` exercises the recipe.
"""
