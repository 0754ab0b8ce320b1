"""apibalance-exporter: Prometheus exporter for the money and quota left on paid API accounts."""

__version__ = "0.1.0"
