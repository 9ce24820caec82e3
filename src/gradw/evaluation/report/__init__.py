"""The benchmark report of an evaluation: tables (:mod:`~gradw.evaluation.report.tables`), figures
(:mod:`~gradw.evaluation.report.plots`) and the Markdown document that holds them
(:mod:`~gradw.evaluation.report.document`)."""
