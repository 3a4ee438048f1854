"""The merchandiser console at ``/console``: one route module per page group, all of them clients of
the admin API (``admin.py``), behind an admin-key sign-in (``sessions.py``)."""
