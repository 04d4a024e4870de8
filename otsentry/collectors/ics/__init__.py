"""OT protocols beyond Modbus: DNP3, IEC 60870-5-104, S7comm / S7comm-plus and EtherNet/IP + CIP.

Structure declared as data (``*_names``), one parser per protocol (pure functions over one unit), one framer for
all (``framing``), one stateful decoder (``decoder``) that reassembles streams as the Modbus path does and pairs
requests with responses into the protocol-independent ``OperationEvent``. Connections in the common case (whole
units in order) take a vectorised fast path instead (``fastpath``, ``fastunits``, ``fast_dnp3``, ``fastpair``,
``fastops``), with the same results; their operations are built when read (``lazy``).
"""

__all__ = ["counts", "decoder", "dnp3_app", "dnp3_link", "dnp3_names", "dnp3_objects", "dnp3_transport", "effects",
    "enip", "enip_names", "fast_dnp3", "fastops", "fastpair", "fastpath", "fastunits", "found", "framing", "iec104",
    "iec104_names", "lazy", "link", "message", "pairing", "ports", "s7_names", "s7comm", "signatures", "units"]
