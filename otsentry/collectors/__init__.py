"""Collectors: capture bytes -> packets -> TCP streams -> Modbus ADUs -> ModbusEvent / FlowEvent."""
