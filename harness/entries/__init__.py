"""What an entry is: its folder found and described (``discovery``), its model built from ``model.py`` and weights or a
``.pt2`` archive (``loading``, inside the entry's own process), and its parameter count as the host reads it from its
files (``parameters``). The input adapter members use is part of the contract: ``harness/adapters.py``."""
