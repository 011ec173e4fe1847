"""Clients of the orders service: orderctl and example watchers."""
