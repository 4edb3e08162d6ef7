"""The demo's one app: tenants, their users and their orders, and the live dashboard."""
