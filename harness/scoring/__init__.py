"""From stored predictions to a ranked board: pure ``metrics``, the ``competition`` rules, who counts (``standings``),
the order (``ranking``) and the terminal/JSON ``report``."""
