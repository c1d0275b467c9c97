"""Date formats that name the time zone, for the admin (``FORMAT_MODULE_PATH``)."""
