"""Data-quality checks: key contracts, pandera schemas, Great Expectations suites, freshness."""
