"""What every layer of the harness (and the dashboard) may import: the competition's rules from
``competition.toml`` (``competition``), removing folder trees an entry may have made hostile (``trees``) and
temporary folders named after their owner process, with whether a process is gone (``tempfolders``).

Nothing here imports another subpackage of the harness (only ``harness.errors``): the store, the scoring and
running an entry all read the rules and clean up folders, and none of them should import another to do it.
"""
