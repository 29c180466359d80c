"""dgnlib: Deep Gated Networks (Lakshminarayanan & Singh, 2020) in small, checked pieces."""

__version__ = "0.1.0"
