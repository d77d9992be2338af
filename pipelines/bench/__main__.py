"""`python -m pipelines.bench`: run the benchmark suite (what `make bench` runs)."""

from pipelines.bench.suite import main

if __name__ == "__main__":
    main()
