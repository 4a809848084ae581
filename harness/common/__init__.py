"""What every layer of the harness (and the dashboard) may import: what an entry's process may use (``limits``).

Nothing here imports another subpackage of the harness.
"""
