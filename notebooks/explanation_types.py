# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The survey's four explanation types on one trained CNN
#
# Zhang et al. (2021) order explanations by how explicit they are: **rules** > **hidden semantics** >
# **attribution** > **examples** (Fig. 1, Table II).  This notebook loads the baseline CNN trained on the
# generated `shapes` data (label: *positive iff the object is striped and not a triangle*) and shows one
# explanation of each type, as produced by the pipeline.  Run the pipeline first
# (`snakemake --cores 2`, or `--config profile=smoke`); set `NNXAI_WORKDIR` to its work directory.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import nnxai
from nnxai.data import load_split
from nnxai.explanations import load_explanation

WORKDIR = Path(os.environ.get("NNXAI_WORKDIR", Path.cwd().parent if Path.cwd().name == "notebooks" else "."))
DATASET, MODEL = "shapes", "baseline"
model = nnxai.load_model(WORKDIR / f"data/checkpoints/{DATASET}/{MODEL}.pt")
test = load_split(DATASET, "test", WORKDIR)
train = load_split(DATASET, "train", WORKDIR)
with torch.no_grad():
    accuracy = (model(test.x).argmax(1) == test.y).float().mean().item()
print(f"{DATASET}/{MODEL}: test accuracy {accuracy:.3f}; rule of the data: {test.meta['rule']}")

# %% [markdown]
# ## Rule (passive, global): TREPAN [89] on concept features
# The tree is extracted from the network's answers to membership queries: new concept vectors are
# sampled under each node's constraints, rendered to images and labelled by the CNN.

# %%
rules = load_explanation(WORKDIR / f"data/explanations/{DATASET}/{MODEL}/trepan.json")
print(rules.to_text())
fidelity = (rules.predict(test.concepts) == model(test.x).argmax(1).numpy()).mean()
print(f"\nfidelity to the network on the test split: {fidelity:.3f}")

# %% [markdown]
# ## Hidden semantics (passive, global): Network Dissection [21]
# Each unit is labelled with the concept mask its thresholded activation overlaps most (IoU).

# %%
dissection = load_explanation(WORKDIR / f"data/explanations/{DATASET}/{MODEL}/network_dissection.json")
best = sorted(dissection.units, key=lambda u: -u["iou"])[:8]
for unit in best:
    print(f"{unit['layer']}:{unit['unit']:>3}  {unit['concept']:<16} IoU {unit['iou']:.3f}"
          f"{'  detector' if unit['detector'] else ''}")

# %% [markdown]
# ## Attribution (passive, semi-local): Integrated Gradients [114]
# Channel-max |attribution| beside the ground-truth class-evidence mask of the generator.

# %%
ig = load_explanation(WORKDIR / f"data/explanations/{DATASET}/{MODEL}/integrated_gradients.npz")
evidence = test.meta["mask_names"].index("evidence")
n = min(4, len(ig.indices))
fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 6.6), squeeze=False)
for j in range(n):
    i = ig.indices[j]
    axes[0, j].imshow(test.x[i].permute(1, 2, 0).numpy())
    axes[0, j].set_title(f"class {ig.targets[j]}")
    axes[1, j].imshow(np.abs(ig.attributions[j]).max(0), cmap="magma")
    axes[2, j].imshow(test.masks[i, evidence], cmap="gray")
for ax, label in zip(axes[:, 0], ("input", "|IG| (max over RGB)", "evidence mask")):
    ax.set_ylabel(label)
for ax in axes.flat:
    ax.set_xticks([]), ax.set_yticks([])
fig.tight_layout()

# %% [markdown]
# ## Explanation by example (passive, local): representer points [117]
# The training images with the largest representer values for the predicted class.

# %%
examples = load_explanation(WORKDIR / f"data/explanations/{DATASET}/{MODEL}/representer_points.json")
k = min(5, len(examples.examples[0]))
fig, axes = plt.subplots(1, k + 1, figsize=(2 * (k + 1), 2.3))
axes[0].imshow(test.x[examples.indices[0]].permute(1, 2, 0).numpy())
axes[0].set_title("test input")
for ax, idx, score in zip(axes[1:], examples.examples[0][:k], examples.scores[0][:k]):
    ax.imshow(train.x[idx].permute(1, 2, 0).numpy())
    ax.set_title(f"{score:+.2f}")
for ax in axes:
    ax.set_xticks([]), ax.set_yticks([])
fig.tight_layout()
