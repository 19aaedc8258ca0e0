"""Passive hidden semantics (survey Sec. III-B): what a unit, a channel or a direction of a hidden layer
stands for (Network Dissection [21], ...)."""
