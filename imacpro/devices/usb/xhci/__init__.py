"""The xHCI host controller: registers.py (the register map), trb.py, rings.py, contexts.py,
ports.py (the root hub), commands.py, transfers.py, controller.py (the PCI function)."""
