"""Pure decisions over one homenet's spec and state: paths, class choices, probe estimates, BGP announcements."""
