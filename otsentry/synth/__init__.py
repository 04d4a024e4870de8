"""Synthetic traffic: pcap writing and a Modbus/TCP traffic generator for tests, demos and benchmarks."""
