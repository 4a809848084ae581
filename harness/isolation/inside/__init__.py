"""What runs inside the entry's process (and the sandbox around it), apart from the host side of isolation.

The bubblewrap sandbox's fork server (``sandbox_server``) and a warm entry's process (``warm_server``) start here;
the entry's process applies its OS resource limits (``rlimits``) and runs the model (``worker``), telling the host
its phase and progress through files (``exchange``, read by the host too); without the sandbox, the entry's process
(``unsandboxed``) is forked from a fork server that adopts what it leaves running (``reaper``).

This is the security boundary: nothing here imports the host side (``harness.isolation``'s other modules), the
store, the scoring or the dashboard (a ``forbidden`` contract in pyproject.toml), so that what an entry's process
holds in memory is only what it needs to run the model.
"""
