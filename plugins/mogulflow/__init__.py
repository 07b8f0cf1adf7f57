"""mogulflow: keep ChartMogul leads and trials true to your warehouse."""

__version__ = "0.1.0"
