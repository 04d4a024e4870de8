"""Which transport port speaks which OT protocol, declared once: the decoded ones, and those only named.

The decoded protocols get a framer and a parser (``decoder``); the others (about a hundred: BACnet, OPC UA,
PROFINET, IEC 61850 MMS and R-GOOSE, Omron FINS, MELSEC, KNXnet/IP, LonWorks, C37.118, TriStation, ...) are named
by port so that alert wording and the asset inventory can say what they are (payloads name 19 of them whatever the
port: ``signatures``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["DECODED_TCP", "DECODED_UDP", "NAMED_PORTS", "PROTOCOL_LABELS", "service_name"]

# The decoded protocols' names as people write them (alert wording, asset roles).
PROTOCOL_LABELS: Mapping[str, str] = MappingProxyType({
    "dnp3": "DNP3", "iec104": "IEC 104", "s7comm": "S7comm", "s7commplus": "S7comm-plus", "enip": "EtherNet/IP"})

# port -> framer name (``framing.FRAMES``); the framer fixes the protocol (TPKT carries S7comm and S7comm-plus).
DECODED_TCP: Mapping[int, str] = MappingProxyType({20000: "dnp3", 2404: "iec104", 102: "tpkt", 44818: "enip"})
DECODED_UDP: Mapping[int, str] = MappingProxyType({20000: "dnp3", 44818: "enip", 2222: "enip_io"})

# (transport, port) -> protocol name, for the ones named only (Wireshark's and nDPI's usual assignments).
NAMED_PORTS: Mapping[tuple[str, int], str] = MappingProxyType({
    ("tcp", 502): "modbus", ("tcp", 802): "modbus-tls", ("tcp", 20000): "dnp3", ("udp", 20000): "dnp3",
    ("tcp", 19999): "dnp3-tls", ("tcp", 2404): "iec104", ("tcp", 102): "iso-tsap(s7comm/mms)",
    ("tcp", 44818): "enip", ("udp", 44818): "enip", ("udp", 2222): "enip-io", ("tcp", 2221): "cip-security",
    ("udp", 47808): "bacnet", ("tcp", 47808): "bacnet", ("tcp", 4840): "opcua", ("tcp", 4843): "opcua-tls",
    ("udp", 34962): "profinet-rt", ("udp", 34963): "profinet-rt", ("udp", 34964): "profinet-cm",
    ("tcp", 9600): "omron-fins", ("udp", 9600): "omron-fins", ("tcp", 5007): "melsec", ("udp", 5006): "melsec",
    ("tcp", 5006): "melsec", ("tcp", 18245): "ge-srtp", ("tcp", 18246): "ge-srtp", ("tcp", 2455): "codesys",
    ("tcp", 1200): "codesys", ("tcp", 11740): "codesys", ("tcp", 1911): "niagara-fox", ("tcp", 4911): "niagara-fox-tls",
    ("tcp", 5094): "hart-ip", ("udp", 5094): "hart-ip", ("tcp", 1962): "pcworx", ("tcp", 789): "redlion-crimson",
    ("tcp", 20547): "proconos", ("udp", 1089): "ff-hse", ("tcp", 1089): "ff-hse",
    ("udp", 1090): "ff-hse", ("tcp", 1091): "ff-hse", ("udp", 1541): "foxboro", ("tcp", 4000): "emerson-roc",
    ("tcp", 4713): "pcworx", ("tcp", 5450): "osisoft-pi", ("tcp", 5052): "telvent-oasys", ("tcp", 5065): "telvent-oasys",
    ("tcp", 12135): "telvent-oasys", ("tcp", 20256): "unitronics-pcom", ("tcp", 1153): "ansi-c12.22",
    ("udp", 1153): "ansi-c12.22", ("tcp", 3622): "ff-lr",
    ("tcp", 38000): "schneider-snc", ("tcp", 38001): "schneider-snc", ("tcp", 38011): "schneider-snc",
    ("tcp", 38012): "schneider-snc", ("tcp", 38014): "schneider-snc", ("tcp", 38015): "schneider-snc",
    ("tcp", 38200): "schneider-snc", ("tcp", 38210): "schneider-snc", ("tcp", 38301): "schneider-snc",
    ("tcp", 38400): "schneider-snc", ("tcp", 38700): "schneider-snc", ("tcp", 62900): "schneider-snc",
    ("tcp", 62911): "schneider-snc", ("tcp", 62924): "schneider-snc", ("tcp", 62930): "schneider-snc",
    ("tcp", 62938): "schneider-snc", ("tcp", 62956): "schneider-snc", ("tcp", 62957): "schneider-snc",
    ("tcp", 62963): "schneider-snc", ("tcp", 62981): "schneider-snc", ("tcp", 62982): "schneider-snc",
    ("tcp", 62985): "schneider-snc", ("tcp", 62992): "schneider-snc", ("tcp", 63012): "schneider-snc",
    ("tcp", 63027): "schneider-snc", ("tcp", 63041): "schneider-snc", ("tcp", 63075): "schneider-snc",
    ("tcp", 63079): "schneider-snc", ("tcp", 63082): "schneider-snc", ("tcp", 63088): "schneider-snc",
    ("tcp", 63094): "schneider-snc", ("tcp", 65443): "schneider-snc",
    ("tcp", 48898): "beckhoff-ads",
    ("udp", 48899): "beckhoff-ads-discovery", ("udp", 34980): "ethercat-udp",
    ("udp", 12289): "yokogawa-vnet", ("udp", 161): "snmp", ("udp", 162): "snmp-trap",
    ("tcp", 8883): "mqtt-tls", ("tcp", 1883): "mqtt", ("udp", 5683): "coap", ("tcp", 5672): "amqp",
    ("udp", 319): "ptp", ("udp", 320): "ptp", ("udp", 123): "ntp",
    ("udp", 102): "r-goose/r-sv(iec61850-90-5)", ("tcp", 135): "dcom(opc-da)",
    ("udp", 4000): "emerson-roc", ("udp", 20547): "proconos",
    # Building automation, grid, rail, motion, IIoT: Wireshark's dissector registrations and IANA's registry
    # (ICSNPP's for BSAP and Genisys, nmap's for VxWorks WDB, Nozomi's tricotools for TriStation).
    ("udp", 3671): "knxnet-ip", ("tcp", 3671): "knxnet-ip", ("udp", 1628): "lontalk-cnip",
    ("udp", 1629): "lontalk-cnip", ("tcp", 2540): "lonworks", ("udp", 2540): "lonworks", ("tcp", 2541): "lonworks",
    ("udp", 2541): "lonworks", ("tcp", 4712): "c37.118", ("udp", 4713): "c37.118", ("udp", 18246): "ge-egd",
    ("udp", 7937): "ge-egd", ("tcp", 5997): "elcom-90", ("udp", 6060): "saia-ether-s-io",
    ("udp", 5050): "saia-ether-s-bus", ("udp", 3250): "anybus-hicp", ("udp", 3956): "gige-vision-gvcp",
    ("udp", 3819): "powerlink-udp", ("udp", 9877): "opensafety", ("udp", 8755): "sercos3-udp",
    ("udp", 11898): "can-eth", ("udp", 6543): "adwin", ("tcp", 6543): "adwin", ("tcp", 6160): "emerson-ecmp",
    ("udp", 6160): "emerson-ecmp", ("udp", 19788): "thread-mle", ("udp", 17755): "zigbee-ip",
    ("tcp", 17755): "zigbee-ip", ("udp", 17756): "zigbee-ip-tls", ("tcp", 17756): "zigbee-ip-tls",
    ("udp", 5540): "matter", ("tcp", 5540): "matter", ("udp", 3610): "echonet-lite", ("tcp", 3610): "echonet-lite",
    ("udp", 2378): "dali-ip", ("tcp", 5084): "llrp", ("tcp", 5085): "llrp-tls", ("tcp", 4059): "dlms-cosem",
    ("udp", 4059): "dlms-cosem", ("tcp", 19998): "iec104-tls", ("tcp", 3782): "iso-tsap-tls(mms/iccp)",
    ("udp", 15118): "iso15118-sdp", ("udp", 5064): "epics-ca", ("tcp", 5064): "epics-ca",
    ("udp", 5065): "epics-ca-repeater", ("tcp", 5075): "epics-pva", ("udp", 5076): "epics-pva",
    ("udp", 7400): "dds-rtps", ("tcp", 7400): "dds-rtps", ("udp", 7401): "dds-rtps", ("udp", 7402): "dds-rtps",
    ("udp", 17224): "trdp-pd", ("udp", 17225): "trdp-md", ("tcp", 17225): "trdp-md",
    ("udp", 17185): "vxworks-wdb", ("udp", 1502): "triconex-tristation", ("udp", 1234): "bsap-ip",
    ("udp", 1235): "bsap-ip", ("tcp", 10001): "genisys/veeder-atg", ("tcp", 41794): "crestron-cip",
    ("udp", 41794): "crestron-cip", ("tcp", 41795): "crestron-ctp", ("tcp", 41796): "crestron-cip-tls",
    ("tcp", 41797): "crestron-ctp-tls", ("tcp", 1319): "amx-icsp", ("udp", 1319): "amx-icsp",
    ("tcp", 1320): "amx-axlink", ("tcp", 11001): "jci-metasys", ("udp", 11001): "jci-metasys",
    ("tcp", 22000): "opto22-snap", ("udp", 22000): "opto22-snap", ("tcp", 22001): "opto22-optocontrol",
    ("tcp", 5413): "aveva-suitelink", ("tcp", 3240): "trio-motion", ("tcp", 2223): "rockwell-csp2",
    ("tcp", 2222): "ab-cspv4", ("udp", 2362): "digi-addp", ("udp", 4800): "moxa-nport",
    ("udp", 30718): "lantronix-discovery", ("udp", 61450): "cc-link-ie-field-basic", ("udp", 55000): "fl-net",
    ("udp", 55001): "fl-net", ("udp", 55002): "fl-net", ("udp", 55003): "fl-net", ("tcp", 8193): "fanuc-focas",
    ("tcp", 2073): "aveva-plant-scada", ("tcp", 3073): "aveva-plant-scada", ("tcp", 2080): "aveva-plant-scada",
    ("tcp", 2082): "aveva-plant-scada", ("tcp", 2084): "aveva-plant-scada", ("tcp", 2085): "aveva-plant-scada",
    ("tcp", 4592): "advantech-webaccess", ("tcp", 14592): "advantech-webaccess", ("udp", 5684): "coaps",
    ("tcp", 5671): "amqps",
})


def service_name(transport: str, port: int) -> str | None:
    """The OT protocol usually found on this port, or None."""
    return NAMED_PORTS.get((transport, port))
