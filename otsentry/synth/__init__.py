"""Synthetic traffic: pcap writing and a Modbus/TCP traffic generator for tests, demos and benchmarks."""

__all__ = ["actor", "attacks", "background", "campaign", "evasion", "frames", "ics_frames", "ics_traffic", "library", "modbus", "pcapwriter",
           "plant", "polling", "scenarios", "sessions", "sim", "tcp", "truth", "veth"]
