"""Running an entry: callers use the front door, ``predict(entry, images, Limits(...)) -> Prediction``
(``prediction``), which hands each set over in a secret order (``order``) to the entry's own process (``process``),
in the bubblewrap sandbox where it works (``sandbox``, its command line ``sandbox_command``, the server inside it
``sandbox_server``), under limits (``limits``), through a file protocol (``exchange``: images handed over at
``go``) to the ``worker`` that runs the model.

``predict``, ``Limits`` and ``Prediction`` are imported on first use: the sandbox's server and the worker import
modules of this package inside the entry's process, which must not pay for the host side (psutil, multiprocessing).
"""

_FRONT_DOOR = ("predict", "Limits", "Prediction", "Progress", "resolve_device")


def __getattr__(name: str):
    if name in _FRONT_DOOR:
        from harness.isolation import prediction
        return getattr(prediction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_FRONT_DOOR)
