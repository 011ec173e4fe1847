"""The worker: BRPOPs order refs and places them with the third-party order API."""
