"""The worker: pops order refs off Redis and places them with the third-party order API."""
