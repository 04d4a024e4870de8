"""otsentry: passive security monitoring for Modbus/TCP industrial networks."""

__all__ = ["__version__"]

__version__ = "0.1.0"
