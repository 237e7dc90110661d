"""The machine's network backends: passt.py, user-mode networking without root."""
