"""Running an entry: its own process (``process``), in the bubblewrap sandbox where it works (``sandbox``, its command
line ``sandbox_command``, the server inside it ``sandbox_server``), under limits (``limits``), fed through a file
protocol (``exchange``: images handed over at ``go``; ``order``: a secret order) to the ``worker`` that runs the
model. Callers use the front door, :func:`harness.isolation.predict.predict`."""
