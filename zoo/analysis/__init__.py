"""Analysis: what zoo concludes from finished runs, as pure functions over arrays and records.

Metrics of one run's test predictions, the statistics that compare runs on the same test images,
the verdict. Nothing here reads the store, trains or prints: callers load runs and pass them in,
so the runner (a race) and the CLI (a comparison) can both use it.
"""
