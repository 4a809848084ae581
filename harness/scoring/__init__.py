"""From stored predictions to a ranked board: pure ``metrics``, who counts (``standings``), the order
(``ranking``), the terminal/JSON ``report``, and which versions keep their files (``retention``), under the
competition's rules (``harness.common.competition``, which every layer reads)."""
