"""The sample enterprise: a synthetic manufacturer's HR, CRM and ERP systems (enterprise.py, tables.py), the driver
that keeps changing them while the demo serves (activity.py), and the demo's data made ready and synced (demo.py)."""
