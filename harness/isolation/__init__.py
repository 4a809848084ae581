"""Running an entry: callers use the front door, ``predict(entry, images, Limits(...)) -> Prediction``
(``prediction``), which hands each set over in a secret order (``order``) to the entry's own process (``process``),
in the bubblewrap sandbox where it works (``sandbox``, its command line ``sandbox_command``), in a cgroup of its own
where the host allows it (``cgroups``) and, unsandboxed under a root harness, as a user of its own (``users``).
``WarmPool`` (``warm``) keeps entries loaded, each in a sandbox of its own, for repeated small requests such as the
dashboard's drawings; ``cluster`` runs the same predict on a Dask cluster's worker.

What runs inside the entry's process is in ``inside/`` (the sandbox's server, a warm entry's server, the OS resource
limits, the file protocol ``exchange`` with its images handed over at ``go``, and the ``worker`` that runs the
model); it imports nothing from the host side here.

``predict``, ``Limits`` and ``Prediction`` are imported on first use: importing a module of ``inside/`` runs this
file inside the entry's process, which must not pay for the host side (psutil, multiprocessing).

How an entry is run and what it may do: docs/scoring.md.
"""

_FRONT_DOOR = ("predict", "Limits", "Prediction", "Progress", "resolve_device", "limits_hit")
_WARM = ("WarmPool",)  # entries kept loaded for repeated small requests (``warm``: the dashboard's drawings)


def __getattr__(name: str):
    if name in _FRONT_DOOR:
        from harness.isolation import prediction
        return getattr(prediction, name)
    if name in _WARM:
        from harness.isolation import warm
        return getattr(warm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_FRONT_DOOR + _WARM)
