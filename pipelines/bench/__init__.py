"""opsmap's benchmark suite (`make bench`): speed goals live here, measured as ratios, never in tests.

Sections (`pipelines/bench/<module>.py`), each figure the median of several runs with its min–max
and its ratio to a reference measured in the same runs:

- `extraction`: rows/s per source from the sandbox at scale 1 and 10, against DuckDB reading the
  same payload bytes from disk;
- `mixpanel`: the Mixpanel ingestion path (rows/s, MB/s) against DuckDB `read_json` (goal ≥ 0.5);
- `runs`: the full `opsmap run` at scale 1 and 10 (wall, peak memory, share per kind of step), the
  nightly incremental run after one simulated day (requests and wall time as shares of the full
  run, goal ≤ 5 %), and Dagster's own overhead (the same models through Dagster vs plain SQL);
- `large_world`: marts and KPIs rebuilt on a large world generated straight into the raw tables
  (100 M events, 10 M builds): wall, peak memory (goal < 8 GiB), rows/s;
- `api_bench`: the product-ops API under concurrent load.

`suite.py` runs them and writes the JSON summary; see its docstring for the knobs.
"""
