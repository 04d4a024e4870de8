"""Collectors: capture bytes -> packets -> TCP streams -> Modbus ADUs -> ModbusEvent / FlowEvent."""

__all__ = ["capture", "chunks", "collector", "defrag", "device_id", "events", "extract", "fastpath", "flows",
    "formats", "grouping", "halves", "ics", "live", "mbap", "modbus_names", "modbus_pdu", "operations", "overlap",
    "packets", "pairing", "pcap_format", "pcapng_format", "pcapwalk", "reassembly", "ring", "rolling", "source",
    "stats", "tshark", "tshark_ot", "tshark_ot_objects", "types", "zeek_conn", "zeek_dnp3_ext", "zeek_dnp3_names",
    "zeek_dnp3_rows", "zeek_enip", "zeek_enip_names", "zeek_enip_rows", "zeek_ics", "zeek_s7", "zeek_s7_names",
    "zeek_s7_rows"]
