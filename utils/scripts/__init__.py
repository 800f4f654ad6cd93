"""Programs, run with ``python -m utils.scripts.<name>``: the pipeline that executes the notebooks, the reports and
studies that write ``chart/`` and the numbers in the README and docs, and the benchmarks. The library never imports
them."""
