"""The asset inventory: hosts, roles with evidence, device identity and MAC vendors, learned from traffic."""

from otsentry.assets.capture import inventory_from_captures
from otsentry.assets.inventory import Inventory
from otsentry.assets.vendors import vendors

__all__ = ["Inventory", "inventory_from_captures", "vendors"]
