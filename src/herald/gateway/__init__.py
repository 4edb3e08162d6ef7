"""The gateway: holds client connections, verifies grants, fans publications out."""
