"""The contracts layer: flags and their bits, window keys and order, and the protocol-independent operation event
with Modbus as its first producer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from otsentry.collectors.modbus_names import ZEEK_FUNCTION_CODES
from otsentry.collectors.operations import MODBUS_OPERATION_CLASSES, modbus_operation, modbus_operations, operation_class
from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import decode_capture
from otsentry.contracts.events import OPERATION_CLASSES, OperationEvent
from otsentry.contracts.flags import ALL_FLAGS, FLAG_BITS, MALFORMED_FLAGS, MALFORMED_MASK, flags_to_mask, mask_to_flags
from otsentry.contracts.network import IP_TRANSPORTS, transport_name
from otsentry.contracts.windows import alert_order, partition_key, score_key, window_identity, window_order
from otsentry.records import ModbusEvent

DEMO = Path(__file__).resolve().parents[3] / "replays" / "demo-polling.pcap"


@given(st.sets(st.sampled_from(ALL_FLAGS)))
def test_flag_masks_round_trip(names):
    assert set(mask_to_flags(flags_to_mask(frozenset(names)))) == names


def test_every_flag_has_its_own_bit_and_malformed_is_a_subset():
    assert len(set(FLAG_BITS.values())) == len(ALL_FLAGS)
    assert set(mask_to_flags(MALFORMED_MASK)) == set(MALFORMED_FLAGS) < set(ALL_FLAGS)


def test_transport_names_spell_known_protocols_and_numbers_otherwise():
    assert [transport_name(p) for p in (6, 17, 2, 58, 132)] == ["tcp", "udp", "igmp", "icmp6", "132"]
    assert set(IP_TRANSPORTS.values()) == {"tcp", "udp", "icmp", "igmp", "icmp6"}


class _W:
    def __init__(self, kind="pair", start=10.0, client="10.0.0.1", server="10.0.0.2", unit=1, port=502,
                 transport="tcp"):
        self.kind, self.window_start, self.window_end = kind, start, start + 10.0
        self.client_ip, self.server_ip, self.unit_id, self.port, self.transport = client, server, unit, port, transport


def test_partition_keys_keep_one_pair_or_conversation_together():
    assert partition_key(_W()) == b"10.0.0.1|10.0.0.2|1"
    assert partition_key(_W(kind="flow", port=80)) == b"10.0.0.1|10.0.0.2|80/tcp"
    assert partition_key(_W(kind="sensor", client="", server="")) == b"sensor|||502/tcp"
    assert partition_key(_W(start=20.0)) == partition_key(_W(start=30.0))  # time is not part of the key


def test_identity_order_and_score_key_of_windows():
    a, b = _W(start=10.0), _W(kind="flow", start=10.0)
    assert window_identity(a) != window_identity(b) and window_identity(a) == window_identity(_W(start=10.0))
    assert sorted([b, a], key=window_order) == [a, b]  # pair windows first within a time
    assert score_key(_W(start=10.0000001)) == score_key(_W(start=10.0))


def test_alert_order_is_by_time_then_pair_then_rule():
    class A:
        def __init__(self, start, rule, id_):
            self.window_start, self.client_ip, self.server_ip, self.unit_id = start, "a", "b", 1
            self.rule_id, self.id = rule, id_
    alerts = [A(20.0, "policy.x", "2"), A(10.0, "policy.y", "1"), A(10.0, "policy.a", "3")]
    assert [a.id for a in sorted(alerts, key=alert_order)] == ["3", "1", "2"]


def _event(**kw) -> ModbusEvent:
    base = dict(ts=1.5, client_ip="10.0.0.1", client_port=50000, server_ip="10.0.0.2", server_port=502, unit_id=1,
                transaction_id=7, function_code=3, function_name="READ_HOLDING_REGISTERS", start_address=100,
                quantity=10, values=tuple(range(10)), request_frame=4, response_frame=5, response_ts=1.51,
                latency_s=0.01)
    return ModbusEvent(**{**base, **kw})


def test_a_modbus_read_as_an_operation_event():
    op = modbus_operation(_event())
    assert (op.protocol, op.station, op.operation, op.operation_name, op.operation_class) == \
        ("modbus", 1, 3, "READ_HOLDING_REGISTERS", "read")
    assert op.objects == ("100-109",) and op.values == tuple(range(10)) and op.status is None
    assert (op.latency_s, op.request_frame, op.response_frame) == (0.01, 4, 5)


def test_a_modbus_exception_and_a_single_write():
    op = modbus_operation(_event(function_code=6, function_name="WRITE_SINGLE_REGISTER", quantity=None,
                                 values=(9999,), exception_code=2))
    assert op.operation_class == "write" and op.objects == ("100",) and op.status == "ILLEGAL_DATA_ADDRESS"
    assert modbus_operation(_event(exception_code=99)).status == "unknown-99"
    assert modbus_operation(_event(start_address=None, quantity=None)).objects == ()


def test_every_function_code_has_a_class_and_unknown_codes_are_other():
    assert set(MODBUS_OPERATION_CLASSES.values()) <= set(OPERATION_CLASSES)
    assert all(operation_class(code) in OPERATION_CLASSES for code in range(256))
    assert {operation_class(c) for c in (5, 6, 15, 16)} == {"write"} and operation_class(8) == "diagnostic"
    assert operation_class(0x5A) == "program" and operation_class(0x41) == "other"  # reserved, not an error
    assert set(ZEEK_FUNCTION_CODES) - set(MODBUS_OPERATION_CLASSES) <= {0x0A, 0x0E, 0x29, 0x5B, 0x7F}


def test_every_event_of_a_capture_converts_and_round_trips():
    run = decode_capture(DEMO, CollectorConfig())
    events = [e for batch in run for e in batch.modbus.events(run.conns)]
    ops = list(modbus_operations(events))
    assert len(ops) == len(events) > 1000
    assert {op.operation_class for op in ops} >= {"read", "write"}
    assert all(OperationEvent.from_dict(op.to_dict()) == op for op in ops[:500])


def test_operation_events_refuse_what_they_do_not_understand():
    op = modbus_operation(_event())
    with pytest.raises(ValueError, match="operation_class 'wipe'"):
        OperationEvent.from_dict({**op.to_dict(), "operation_class": "wipe"})
    with pytest.raises(ValueError, match="event_version"):
        OperationEvent.from_dict({**op.to_dict(), "event_version": 99})
    with pytest.raises(ValueError, match="unexpected keyword"):
        OperationEvent.from_dict({**op.to_dict(), "colour": "red"})
