"""KPI computations: DORA, the nine success metrics, and the business-value driver model."""
