"""Rate limits and concurrency slots shared by every API process through Redis."""
