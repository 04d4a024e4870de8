"""otsentry: passive security monitoring for Modbus/TCP industrial networks."""

__version__ = "0.1.0"
