"""The config profiles: one name per file ``configs/profiles/<name>.yaml`` (a test checks they agree).

A profile changes sizes only (DESIGN.md): ``smoke`` runs the whole DAG at toy sizes in minutes, ``default``
gives meaningful numbers on a 2-core CPU, ``paper`` is full scale.  This module imports nothing, so the
data sets, the config and the CLI all read the names from here.
"""

PROFILES = ("smoke", "default", "paper")
