"""The evaluation sets: MNIST (``mnist``), the guest's digits (``guest``, through the same ``preprocess`` pipeline as a
photographed sheet, ``sheet``), and photo simulation for tests and previews (``photo_sim``)."""
