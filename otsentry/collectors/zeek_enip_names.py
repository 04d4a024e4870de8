"""The names ICSNPP-ENIP (Zeek) prints in ``enip.log``, ``cip.log`` and ``cip_identity.log``, declared as data.

They are the ODVA specification's names as that plugin spells them; a code not listed prints as the plugin's
default (``unknown``, ``Unknown CIP Status-0x..``). The vendor table holds the first ODVA vendor ids only (the
full list has some 1,500): others print ``Unknown Vendor-0x..``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["CIP_CLASSES", "CIP_DEVICE_TYPES", "CIP_EXT_STATUS", "CIP_SERVICES", "CIP_STATUSES", "CIP_VENDORS",
           "ENIP_COMMANDS", "ENIP_STATUSES"]

ENIP_COMMANDS: Mapping[int, str] = MappingProxyType({
    0x00: "NOP", 0x04: "List Services", 0x63: "List Identity", 0x64: "List Interfaces", 0x65: "Register Session",
    0x66: "Unregister Session", 0x6F: "Send RR Data", 0x70: "Send Unit Data", 0x72: "Indicate Status",
    0x73: "Cancel"})
ENIP_STATUSES: Mapping[int, str] = MappingProxyType({
    0x00: "Success", 0x01: "Invalid/Unsupported Command", 0x02: "Insufficient Memory Resources",
    0x03: "Malformed or Incorrect Data", 0x64: "Invalid Session Handle", 0x65: "Invalid Length",
    0x69: "Unsupported Protocol Version", 0x6A: "CIP Service Not Allowed"})
CIP_SERVICES: Mapping[int, str] = MappingProxyType({
    0x01: "Get Attributes All", 0x02: "Set Attributes All", 0x03: "Get Attribute List", 0x04: "Set Attribute List",
    0x05: "Reset", 0x06: "Start", 0x07: "Stop", 0x08: "Create", 0x09: "Delete", 0x0A: "Multiple Service Packet",
    0x0D: "Apply Attributes", 0x0E: "Get Attributes Single", 0x10: "Set Attributes Single",
    0x11: "Find Next Object Instance", 0x15: "Restore", 0x16: "Save", 0x17: "No Forward Open", 0x18: "Get Member",
    0x19: "Set Member", 0x1A: "Insert Member", 0x1B: "Remove Member", 0x1C: "Group Sync",
    0x1D: "Get Connection Point Member List", 0x4B: "Execute PCCC Service", 0x4C: "Read Data", 0x4D: "Write Data",
    0x4E: "Read Write Modify Data", 0x52: "Read Data Fragmented", 0x53: "Write Data Fragmented",
    0x54: "Forward Open"})
CIP_STATUSES: Mapping[int, str] = MappingProxyType({
    0x00: "Success", 0x01: "Connection Failure", 0x02: "Resource Unavailable", 0x03: "Invalid Parameter Value",
    0x04: "Path Segment Error", 0x05: "Path Destination Unknown", 0x06: "Partial Transfer", 0x07: "Connection Lost",
    0x08: "Service Not Supported", 0x09: "Invalid Attribute Value", 0x0A: "Attribute List Error",
    0x0B: "Already In Requested Mode/State", 0x0C: "Object State Conflict", 0x0D: "Object Already Exists",
    0x0E: "Attribute Not Settable", 0x0F: "Privilege Violation", 0x10: "Device State Conflict",
    0x11: "Reply Data Too Large", 0x12: "Fragmentation Of A Primitive Value", 0x13: "Not Enough Data",
    0x14: "Attribute Not Supported", 0x15: "Too Much Data", 0x16: "Object Does Not Exist",
    0x17: "Service Fragmentation Sequence Not In Progress", 0x18: "No Stored Attribute Data",
    0x19: "Store Operation Failure", 0x1A: "Routing Failure, Request Packet Too Large",
    0x1B: "Routing Failure, Response Packet Too Large", 0x1C: "Missing Attribute List Entry Data",
    0x1D: "Invalid Attribute Value List", 0x1E: "Embedded Service Error", 0x1F: "Vendor Specific Error",
    0x20: "Invalid Parameter", 0x21: "Write-Once Value Or Medium Already Written", 0x22: "Invalid Reply Received",
    0x23: "Buffer Overflow", 0x24: "Invalid Message Format", 0x25: "Key Failure In Path", 0x26: "Path Size Invalid",
    0x27: "Unexpected Attribute In List", 0x28: "Invalid Member ID", 0x29: "Member Not Settable",
    0x2A: "Group 2 Only Server General Failure", 0x2B: "Unknown Modbus Error", 0x2C: "Attribute Not Gettable",
    0xFF: "Still Processing"})
CIP_EXT_STATUS: Mapping[int, str] = MappingProxyType({
    0x100: "Connection in use or duplicate Forward Open",
    0x103: "Transport class and trigger combination not supported",
    0x106: "Ownership conflict", 0x107: "Target connection not found", 0x108: "Invalid network connection parameter",
    0x109: "Invalid connection size", 0x110: "Target for connection not configured", 0x111: "RPI not supported",
    0x112: "RPI value(s) not acceptable", 0x113: "Out of connections", 0x114: "Vendor ID or product code mismatch",
    0x115: "Device type mismatch", 0x116: "Revision mismatch",
    0x117: "Invalid produced or consumed application path",
    0x118: "Invalid or inconsistent configuration application path", 0x119: "Non-listen only connection not opened",
    0x11A: "Target object out of connections", 0x11B: "RPI is smaller than the production inhibit time",
    0x11C: "Transport class not supported", 0x11D: "Production trigger not supported", 0x11E: "Direction not supported",
    0x11F: "Invalid O->T Fixed/Variable", 0x120: "Invalid T->O Fixed/Variable", 0x121: "Invalid O->T Priority",
    0x122: "Invalid T->O Priority", 0x123: "Invalid O->T connection type", 0x124: "Invalid T->O connection type",
    0x125: "Invalid O->T redundant owner", 0x126: "Invalid configuration size", 0x127: "Invalid O->T size",
    0x128: "Invalid T->O size", 0x129: "Invalid configuration application path",
    0x12A: "Invalid consuming application path", 0x12B: "Invalid producing application path",
    0x12C: "Configuration symbol does not exist", 0x12D: "Consuming symbol does not exist",
    0x12E: "Producing symbol does not exist", 0x12F: "Inconsistent application path combination",
    0x130: "Inconsistent consume data format", 0x131: "Inconsistent produce data format",
    0x132: "NULL ForwardOpen not supported", 0x203: "Connection timed out", 0x204: "Unconnected request timed out",
    0x205: "Parameter error in unconnected request", 0x206: "Message too large for UnconnectedSend",
    0x207: "Unconnected acknowledged without reply", 0x301: "No buffer memory available",
    0x302: "Network bandwidth not available for data", 0x303: "No consumed connection ID filter available",
    0x304: "Not configured to send scheduled priority data", 0x305: "Schedule signature mismatch",
    0x306: "Schedule signature validation not possible", 0x311: "Port not available", 0x312: "Link address not valid",
    0x315: "Invalid segment in connection path", 0x316: "ForwardClose connection path mismatch",
    0x317: "Scheduling not specified", 0x318: "Link address to self invalid", 0x319: "Secondary resources unavailable",
    0x31A: "Rack connection already established", 0x31B: "Module connection already established",
    0x31C: "Miscellaneous", 0x31D: "Redundant connection mismatch",
    0x31E: "No more user configurable link consumer resources available in the producing module",
    0x31F: "No more user configurable link consumer resources configured in the producing module",
    0x800: "Network link offline", 0x801: "Incompatible Multicast RPI", 0x802: "Invalid Safety Connection Size",
    0x803: "Invalid Safety Connection Format", 0x804: "Invalid Time Correction Connection Parameters",
    0x805: "Invalid Ping Interval EPI Multiplier", 0x806: "Time Coordination Msg Min Multiplier",
    0x807: "Network Time Expectation Multiplier", 0x808: "Timeout Multiplier", 0x809: "Invalid Max Consumer Number",
    0x80A: "Invalid CPCRC", 0x80B: "Time Correction Connection ID Invalid", 0x80C: "SCID Mismatch",
    0x80D: "TUNID not set", 0x80E: "TUNID Mismatch", 0x80F: "Configuration operation not allowed",
    0x810: "No target application data available", 0x811: "No originator application data available",
    0x812: "Node address has changed since the network was scheduled",
    0x813: "Not configured for off-subnet multicast", 0x814: "Invalid produce/consume data format"})
CIP_CLASSES: Mapping[int, str] = MappingProxyType({
    0x00: "", 0x01: "Identity", 0x02: "Message Router", 0x03: "DeviceNet", 0x04: "Assembly", 0x05: "Connection",
    0x06: "Connection Manager", 0x07: "Register", 0x08: "Discrete Input Point", 0x09: "Discrete Output Point",
    0x0A: "Analog Input Point", 0x0B: "Analog Output Point", 0x0E: "Presence Sensing", 0x0F: "Parameter",
    0x10: "Parameter Group", 0x12: "Group", 0x1D: "Discrete Input Group", 0x1E: "Discrete Output Group",
    0x1F: "Discrete Group", 0x20: "Analog Input Group", 0x21: "Analog Output Group", 0x22: "Analog Group",
    0x23: "Position Sensor", 0x24: "Position Controller Supervisor", 0x25: "Position Controller",
    0x26: "Block Sequencer", 0x27: "Command Block", 0x28: "Motor Data", 0x29: "Control Supervisor",
    0x2A: "AC/DC Drive", 0x2B: "Acknowledge Handler", 0x2C: "Overload", 0x2D: "Softstart", 0x2E: "Selection",
    0x30: "S-Device Supervisor", 0x31: "S-Analog Sensor", 0x32: "S-Analog Actuator",
    0x33: "S-Single Stage Controller", 0x34: "S-Gas Calibration", 0x35: "Trip Point", 0x37: "File",
    0x38: "S-Partial Pressure", 0x39: "Safety Supervisor", 0x3A: "Safety Validator",
    0x3B: "Safety Discrete Output Point", 0x3C: "Safety Discrete Output Group", 0x3D: "Safety Discrete Input Point",
    0x3E: "Safety Discrete Input Group", 0x3F: "Safety Dual Channel Output", 0x40: "S-Sensor Calibration",
    0x41: "Event Log", 0x42: "Motion Device Axis", 0x43: "Time Sync", 0x44: "Modbus",
    0x45: "Originator Connection List", 0x46: "Modbus Serial Link", 0x47: "Device Level Ring (DLR)", 0x48: "QoS",
    0x49: "Safety Analog Input Point", 0x4A: "Safety Analog Input Group", 0x4B: "Safety Dual Channel Analog Input",
    0x4C: "SERCOS III Link", 0x4D: "Target Connection List", 0x4E: "Base Energy", 0x4F: "Electrical Energy",
    0x50: "Non-Electrical Energy", 0x51: "Base Switch", 0x52: "SNMP", 0x53: "Power Management",
    0x54: "RSTP Bridge", 0x55: "RSTP Port", 0x56: "PRP/HSR Protocol", 0x57: "PRP/HSR Nodes Table",
    0x58: "Safety Feedback", 0x59: "Safety Dual Channel Feedback", 0x5A: "Safety Stop Functions",
    0x5B: "Safety Limit Functions", 0x5C: "Power Curtailment", 0x5D: "CIP Security", 0x5E: "EtherNet/IP Security",
    0x5F: "Certificate Management", 0x67: "PCCC Class", 0xF0: "ControlNet", 0xF1: "ControlNet Keeper",
    0xF2: "ControlNet Scheduling", 0xF3: "Connection Configuration", 0xF4: "Port", 0xF5: "TCP/IP Interface",
    0xF6: "Ethernet Link", 0xF7: "CompoNet", 0xF8: "CompoNet Repeater"})
CIP_VENDORS: Mapping[int, str] = MappingProxyType({
    0: "Reserved", 1: "Rockwell Automation/Allen-Bradley", 2: "Namco Controls Corp.", 3: "Honeywell Inc.",
    4: "Parker Hannifin Corp. (Veriflo Division)", 5: "Rockwell Automation/Reliance Elec.", 6: "Reserved",
    7: "SMC Corporation", 8: "Molex Incorporated", 9: "Western Reserve Controls Corp.",
    10: "Advanced Micro Controls Inc. (AMCI)", 11: "ASCO Pneumatic Controls", 12: "Banner Engineering Corp.",
    13: "Belden Wire & Cable Company", 14: "Cooper Interconnect", 15: "Reserved",
    16: "Daniel Woodhead Co. (Woodhead Connectivity)", 17: "Dearborn Group Inc.", 18: "Reserved",
    19: "Helm Instrument Company", 20: "Huron Net Works", 21: "Lumberg Inc.",
    22: "Online Development Inc.(Automation Value)"})
CIP_DEVICE_TYPES: Mapping[int, str] = MappingProxyType({
    0: "Generic Device (deprecated)", 1: "Control Station (deprecated)", 2: "AC Drive Device", 3: "Motor Overload",
    4: "Limit Switch", 5: "Inductive Proximity Switch", 6: "Photoelectric Sensor", 7: "General Purpose Discrete I/O",
    8: "Encoder (deprecated)", 9: "Resolver", 10: "General Purpose Analog I/O (deprecated)",
    12: "Communications Adapter", 13: "Barcode Scanner (deprecated)", 14: "Programmable Logic Controller",
    16: "Position Controller", 17: "Weigh Scale (deprecated)", 18: "Message Display (deprecated)", 19: "DC Drive",
    20: "Servo Drives (deprecated)", 21: "Contactor", 22: "Motor Starter", 23: "Softstart Starter",
    24: "Human-Machine Interface", 25: "Pneumatic Valve(s) (deprecated)", 26: "Mass Flow Controller",
    27: "Pneumatic Valve(s)", 28: "Vacuum Pressure Gauge", 29: "Process Control Value", 30: "Residual Gas Analyzer",
    31: "DC Power Generator", 32: "RF Power Generator", 33: "Turbomolecular Vacuum Pump", 34: "Encoder",
    35: "Safety Discrete I/O Device", 36: "Fluid Flow Controller", 37: "CIP Motion Drive", 38: "CompoNet Repeater",
    39: "Mass Flow Controller Enhanced", 40: "CIP Modbus Device", 41: "CIP Modbus Translator",
    42: "Safety Analog I/O Device", 43: "Generic Device (keyable)", 44: "Managed Ethernet Switch",
    45: "CIP Motion Safety Drive Device", 46: "Safety Drive Device", 47: "CIP Motion Encoder",
    48: "CIP Motion Converter", 49: "CIP Motion I/O", 50: "ControlNet Physical Layer Component",
    100: "In-Sight 2000 Series", 150: "PowerFlex 525", 200: "Embedded Component", 773: "DataMan Series Reader"})
