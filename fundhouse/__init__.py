"""orders-fundhouse: a simulator of the third-party order API, for development and tests."""
