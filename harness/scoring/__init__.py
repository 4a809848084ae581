"""From stored predictions to a ranked board: pure ``metrics``, the ``competition`` rules, who counts (``standings``),
the order (``ranking``), the terminal/JSON ``report``, and which versions keep their files (``retention``)."""
