"""Collectors: capture bytes -> packets -> TCP streams -> Modbus ADUs -> ModbusEvent / FlowEvent."""

__all__ = ["capture", "collector", "defrag", "device_id", "events", "extract", "fastpath", "flows", "formats",
    "grouping", "halves", "live", "mbap", "modbus_names", "modbus_pdu", "operations", "overlap", "packets",
    "pairing", "pcapwalk", "reassembly", "ring", "rolling", "source", "tshark", "types", "zeek_ics"]
