"""Dramatiq actors and the worker process (`foundry worker`)."""
