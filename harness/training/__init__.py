"""The training kit behind ``python -m harness.train``: the ``loop``, ``architectures``, ``augment``ations, ``recipes``
(optimizers, schedules), ``model_setup`` and the ``entry_writer`` that packages a trained model as an entry."""
